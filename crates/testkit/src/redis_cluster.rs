//! A Redis Cluster of the caller's own: three masters and three replicas on free ports
//! (`cluster-node-timeout` 1000 ms, so a killed master's replica is promoted within a few
//! seconds), created with `redis-cli --cluster create` (`valkey-cli` for `valkey-server`).

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::redis_server::server_program;
use crate::{free_port, RedisServer};

/// How long a node waits without a reply before it calls another one failing.
pub const NODE_TIMEOUT_MS: u64 = 1000;
/// How long the cluster may take to agree on its slots after it is created.
const FORM_TIMEOUT: Duration = Duration::from_secs(30);

pub struct RedisCluster {
    /// In creation order: the first three were made masters, each of the last three a replica.
    pub nodes: Vec<Arc<RedisServer>>,
}

impl RedisCluster {
    /// Six nodes, three masters with a replica each, every slot covered, every node agreeing.
    pub fn start() -> anyhow::Result<RedisCluster> {
        let nodes = (0..6)
            .map(|_| {
                let bus = free_port()?.to_string();
                let timeout = NODE_TIMEOUT_MS.to_string();
                let node = RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus,
                    "--cluster-node-timeout",
                    &timeout,
                    // A replica that was cut off for a while may still be promoted: the tests
                    // decide what it missed, not the cluster's data-age guard.
                    "--cluster-replica-validity-factor",
                    "0",
                ])?;
                Ok(Arc::new(node))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let cli = server_program().replace("server", "cli");
        let status = Command::new(&cli)
            .args(["--cluster", "create"])
            .args(nodes.iter().map(|n| n.address()))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(std::process::Stdio::null())
            .status()
            .with_context(|| format!("{cli} is installed (scripts/install-deps --test)"))?;
        if !status.success() {
            bail!("{cli} --cluster create failed: {status}");
        }
        let cluster = RedisCluster { nodes };
        cluster.wait_until_formed()?;
        Ok(cluster)
    }

    /// `redis+cluster://` naming every node.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self.nodes.iter().map(|n| n.address()).collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// The slot `key` hashes to.
    pub fn slot_of(&self, key: &str) -> anyhow::Result<u16> {
        for node in &self.nodes {
            if let Ok(mut conn) = node.connection() {
                if let Ok(slot) = redis::cmd("CLUSTER")
                    .arg("KEYSLOT")
                    .arg(key)
                    .query(&mut conn)
                {
                    return Ok(slot);
                }
            }
        }
        bail!("no node answers CLUSTER KEYSLOT")
    }

    /// The node serving `slot` as master, as the live masters agree (`None` while they do not,
    /// or while it is not a master yet).
    pub fn master_of(&self, slot: u16) -> Option<&Arc<RedisServer>> {
        let mut named = None;
        for node in self.nodes.iter().filter(|n| n.role() == "master") {
            let port = slot_master_port(node, slot)?;
            if named.is_some_and(|p| p != port) {
                return None;
            }
            named = Some(port);
        }
        let port = named?;
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .filter(|n| n.role() == "master")
    }

    /// The replica of the master at `master_port`.
    pub fn replica_of(&self, master_port: u16) -> Option<&Arc<RedisServer>> {
        self.nodes.iter().find(|node| {
            node.connection()
                .and_then(|mut c| redis::cmd("ROLE").query::<redis::Value>(&mut c))
                .ok()
                .is_some_and(|role| match role {
                    redis::Value::Array(fields) => {
                        fields.first() == Some(&redis::Value::BulkString(b"slave".to_vec()))
                            && fields.get(2) == Some(&redis::Value::Int(i64::from(master_port)))
                    }
                    _ => false,
                })
        })
    }

    /// Waits until a node other than `old_port` serves `slot` as master, and returns it.
    pub fn wait_for_new_master(
        &self,
        slot: u16,
        old_port: u16,
        within: Duration,
    ) -> anyhow::Result<&Arc<RedisServer>> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(master) = self.master_of(slot).filter(|m| m.port != old_port) {
                if cluster_ok(master) {
                    return Ok(master);
                }
            }
            if Instant::now() > deadline {
                bail!("no replica was promoted for slot {slot} within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Moves `slot` from its master to another master, one key at a time with `pause` between
    /// keys, then gives the slot to it on every master; returns the new master.
    ///
    /// A migration that fails halfway (the master changed under it) is abandoned: the slot is
    /// made stable again on every master, so that the cluster still agrees on who serves it;
    /// the keys already moved are lost, as a cache's copy may be.
    pub fn migrate_slot(&self, slot: u16, pause: Duration) -> anyhow::Result<Arc<RedisServer>> {
        let migrated = self.try_migrate_slot(slot, pause);
        if migrated.is_err() {
            for node in self.nodes.iter().filter(|n| n.role() == "master") {
                let _ = node.connection().and_then(|mut c| {
                    redis::cmd("CLUSTER")
                        .arg("SETSLOT")
                        .arg(slot)
                        .arg("STABLE")
                        .query::<()>(&mut c)
                });
            }
        }
        migrated
    }

    fn try_migrate_slot(&self, slot: u16, pause: Duration) -> anyhow::Result<Arc<RedisServer>> {
        let from = self
            .master_of(slot)
            .context("the slot has no master")?
            .clone();
        let to = self.begin_migration(slot)?;
        loop {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(1)
                .query(&mut from.connection()?)?;
            let Some(key) = keys.first() else { break };
            self.move_key(&from, &to, key)?;
            std::thread::sleep(pause);
        }
        self.end_migration(slot, &to)?;
        Ok(to)
    }

    /// Marks `slot` as migrating from its master to another master, which is returned.
    pub fn begin_migration(&self, slot: u16) -> anyhow::Result<Arc<RedisServer>> {
        let from = self
            .master_of(slot)
            .context("the slot has no master")?
            .clone();
        let to = self
            .nodes
            .iter()
            .find(|n| n.port != from.port && n.role() == "master")
            .context("no other master")?
            .clone();
        set_slot(&to, slot, "IMPORTING", &node_id(&from)?)?;
        set_slot(&from, slot, "MIGRATING", &node_id(&to)?)?;
        Ok(to)
    }

    /// `MIGRATE`s one key.
    pub fn move_key(&self, from: &RedisServer, to: &RedisServer, key: &str) -> anyhow::Result<()> {
        redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(to.port)
            .arg(key)
            .arg(0)
            .arg(5000)
            .query::<()>(&mut from.connection()?)?;
        Ok(())
    }

    /// Gives `slot` to `to`, on every master.
    pub fn end_migration(&self, slot: u16, to: &RedisServer) -> anyhow::Result<()> {
        let to_id = node_id(to)?;
        set_slot(to, slot, "NODE", &to_id)?;
        for node in self.nodes.iter().filter(|n| n.role() == "master") {
            set_slot(node, slot, "NODE", &to_id)?;
        }
        Ok(())
    }

    fn wait_until_formed(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + FORM_TIMEOUT;
        // Every node says ok and knows three masters with a replica each.
        while !self
            .nodes
            .iter()
            .all(|n| cluster_ok(n) && knows_whole_cluster(n))
        {
            if Instant::now() > deadline {
                bail!("the cluster did not form within {FORM_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

fn node_id(node: &RedisServer) -> anyhow::Result<String> {
    Ok(redis::cmd("CLUSTER")
        .arg("MYID")
        .query(&mut node.connection()?)?)
}

fn set_slot(node: &RedisServer, slot: u16, state: &str, owner: &str) -> anyhow::Result<()> {
    redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg(state)
        .arg(owner)
        .query::<()>(&mut node.connection()?)?;
    Ok(())
}

fn cluster_info(node: &RedisServer) -> String {
    node.connection()
        .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c))
        .unwrap_or_default()
}

fn cluster_ok(node: &RedisServer) -> bool {
    cluster_info(node).contains("cluster_state:ok")
}

fn knows_whole_cluster(node: &RedisServer) -> bool {
    let slots: Vec<redis::Value> = match node
        .connection()
        .and_then(|mut c| redis::cmd("CLUSTER").arg("SLOTS").query(&mut c))
    {
        Ok(slots) => slots,
        Err(_) => return false,
    };
    let ranges_with_replica = slots
        .iter()
        .filter(|range| matches!(range, redis::Value::Array(fields) if fields.len() >= 4))
        .count();
    ranges_with_replica == 3 && cluster_info(node).contains("cluster_known_nodes:6")
}

/// The port of the master `node` says serves `slot`.
fn slot_master_port(node: &RedisServer, slot: u16) -> Option<u16> {
    let slots: Vec<redis::Value> = node
        .connection()
        .and_then(|mut c| redis::cmd("CLUSTER").arg("SLOTS").query(&mut c))
        .ok()?;
    slots.iter().find_map(|range| {
        let redis::Value::Array(fields) = range else {
            return None;
        };
        let (redis::Value::Int(start), redis::Value::Int(end)) = (fields.first()?, fields.get(1)?)
        else {
            return None;
        };
        if !(*start..=*end).contains(&i64::from(slot)) {
            return None;
        }
        let redis::Value::Array(master) = fields.get(2)? else {
            return None;
        };
        match master.get(1)? {
            redis::Value::Int(port) => u16::try_from(*port).ok(),
            _ => None,
        }
    })
}
