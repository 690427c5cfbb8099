//! How long a change made outside the application takes to show: N inserts over a database
//! connection of the nemesis' own, each at a random moment, and on each instance the time from
//! the commit to the end of the first read that shows the new count (reads back to back).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cachewithredis::db::DbPool;
use cachewithredis::schema::students;
use diesel::prelude::*;
use rand::RngExt;

use crate::clients;
use crate::cluster::Instance;
use crate::Summary;

/// A read that has not shown the change after this counts as an error.
const GIVE_UP: Duration = Duration::from_secs(10);

/// The delay, and the `X-Cache` of the first read that showed the change.
async fn first_read_showing(
    instance: Arc<Instance>,
    count: i64,
    committed: Instant,
) -> Option<(Duration, String)> {
    let client = clients::client(Duration::from_secs(5));
    while committed.elapsed() < GIVE_UP {
        if let Ok((seen, _, cache)) =
            clients::read_once(&client, &instance, "/api/students/average-age").await
        {
            if seen == count {
                return Some((committed.elapsed(), cache));
            }
        }
    }
    None
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub async fn measure(
    instances: &[Arc<Instance>],
    db: &DbPool,
    changes: u64,
) -> anyhow::Result<Summary> {
    let mut delays: Vec<Vec<Duration>> = vec![Vec::new(); instances.len()];
    let mut shown_by: std::collections::BTreeMap<String, usize> = Default::default();
    let mut errors = 0;
    for n in 0..changes {
        // At a random point of the instances' rounds.
        let pause = rand::rng().random_range(100..600);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let count = tokio::task::block_in_place(|| -> anyhow::Result<i64> {
            let mut conn = db.get()?;
            diesel::insert_into(students::table)
                .values((
                    students::name.eq(format!("Outside {n}")),
                    students::age.eq(30),
                ))
                .execute(&mut conn)?;
            Ok(students::table.count().get_result(&mut conn)?)
        })?;
        let committed = Instant::now();
        let reads = instances.iter().map(|instance| {
            tokio::spawn(first_read_showing(Arc::clone(instance), count, committed))
        });
        for (i, read) in reads.enumerate() {
            match read.await? {
                Some((delay, cache)) => {
                    delays[i].push(delay);
                    *shown_by.entry(cache).or_default() += 1;
                }
                None => {
                    errors += 1;
                    println!("change {n}: instance {} never showed it", instances[i].name);
                }
            }
        }
    }
    for (instance, delays) in instances.iter().zip(&mut delays) {
        delays.sort();
        if delays.is_empty() {
            continue;
        }
        println!(
            "outside changes: instance {}: {} changes, median {:.0} ms, p90 {:.0} ms, max {:.0} ms",
            instance.name,
            delays.len(),
            percentile(delays, 0.5).as_secs_f64() * 1000.0,
            percentile(delays, 0.9).as_secs_f64() * 1000.0,
            delays.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        );
    }
    println!("outside changes: first reads showing them, by X-Cache: {shown_by:?}");
    Ok(Summary {
        reads: 0,
        writes: changes as usize,
        faults: 0,
        stale: 0,
        errors,
        lost: 0,
    })
}
