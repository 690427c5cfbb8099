//! The history of the run and its verdict. Writes are serialized, so the database goes through
//! known states S0, S1, ...; a read that started after write k answered must show some S_j with
//! j >= k, and j no later than the last write that started before the read ended.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The page shows the average to two decimals; the API gives it in full, so a read one write
/// behind cannot pass for the newer state there however many students there are.
const PAGE_TOLERANCE: f64 = 0.005 + 1e-9;
const API_TOLERANCE: f64 = 1e-9;
/// Stale reads printed in full; the rest are only counted.
const PRINTED_STALE: usize = 200;

/// The database after one write: its student count and the sum of their ages.
#[derive(Debug, Clone, Copy)]
pub struct State {
    pub count: i64,
    pub sum: i64,
    /// The sum of the ages on the list's first page.
    pub first_page: i64,
    started: Instant,
    /// When the write's response arrived; `None` if it never did (its effect, if any, is not
    /// owed to any read).
    answered: Option<Instant>,
}

impl State {
    fn average(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }

    /// What `route` shows besides the count: the average, or the list's first page's ages.
    fn shown_by(&self, route: &str) -> Option<f64> {
        if route == crate::clients::LIST_ROUTE {
            Some(self.first_page as f64)
        } else {
            self.average()
        }
    }
}

/// One answered read.
pub struct Read {
    pub instance: &'static str,
    pub route: &'static str,
    pub started: Instant,
    pub ended: Instant,
    pub count: i64,
    pub average: Option<f64>,
    pub cache: String,
}

/// A fault as it happened: what, from when, until when.
struct FaultSpan {
    what: String,
    from: Instant,
    until: Option<Instant>,
}

#[derive(Default)]
struct Recorded {
    states: Vec<State>,
    reads: Vec<Read>,
    errors: Vec<String>,
    faults: Vec<FaultSpan>,
}

/// Stale reads of one instance less than this apart belong to one window.
const WINDOW_GAP: Duration = Duration::from_secs(1);
/// A fault that ended less than this before a stale window is named as a suspect.
const SUSPECT_AFTER: Duration = Duration::from_secs(3);

pub struct History {
    pub t0: Instant,
    recorded: Mutex<Recorded>,
}

impl History {
    pub fn new(initial_count: i64, initial_sum: i64, initial_first_page: i64) -> History {
        let t0 = Instant::now();
        let s0 = State {
            count: initial_count,
            sum: initial_sum,
            first_page: initial_first_page,
            started: t0,
            answered: Some(t0),
        };
        History {
            t0,
            recorded: Mutex::new(Recorded {
                states: vec![s0],
                ..Default::default()
            }),
        }
    }

    fn recorded(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Seconds since the start, for messages.
    pub fn at(&self, t: Instant) -> String {
        format!("{:.3}s", t.saturating_duration_since(self.t0).as_secs_f64())
    }

    pub fn now(&self) -> String {
        self.at(Instant::now())
    }

    /// Records an error now (printed at once and counted).
    pub fn error(&self, message: String) {
        let line = format!("[{}] ERROR {message}", self.now());
        println!("{line}");
        self.recorded().errors.push(line);
    }

    /// A fault starts: returns its index, to be passed to [`History::fault_ended`].
    pub fn fault_started(&self, what: String) -> usize {
        let mut recorded = self.recorded();
        recorded.faults.push(FaultSpan {
            what,
            from: Instant::now(),
            until: None,
        });
        recorded.faults.len() - 1
    }

    pub fn fault_ended(&self, index: usize) {
        self.recorded().faults[index].until = Some(Instant::now());
    }

    /// Prints each window of stale reads on one instance with the faults that overlap it or
    /// ended just before it: where to start debugging.
    fn print_windows(&self, recorded: &Recorded, mut stale: Vec<(&'static str, Instant)>) {
        stale.sort();
        let mut windows: Vec<(&'static str, Instant, Instant, usize)> = Vec::new();
        for (instance, at) in stale {
            match windows.last_mut() {
                Some(w) if w.0 == instance && at.duration_since(w.2) < WINDOW_GAP => {
                    w.2 = at;
                    w.3 += 1;
                }
                _ => windows.push((instance, at, at, 1)),
            }
        }
        for (instance, from, until, reads) in windows {
            let suspects: Vec<String> = recorded
                .faults
                .iter()
                .filter(|f| {
                    f.from <= until && !matches!(f.until, Some(end) if end + SUSPECT_AFTER < from)
                })
                .map(|f| {
                    let end = f.until.map_or("…".to_string(), |end| self.at(end));
                    format!("{} {}–{end}", f.what, self.at(f.from))
                })
                .collect();
            println!(
                "stale window {}–{} on instance {instance}: {reads} reads; faults around it: {}",
                self.at(from),
                self.at(until),
                if suspects.is_empty() {
                    "none".to_string()
                } else {
                    suspects.join(", ")
                }
            );
        }
    }

    /// A write starts: returns its index, to be passed to [`History::write_ended`].
    pub fn write_started(&self) -> usize {
        let mut recorded = self.recorded();
        let previous = *recorded.states.last().expect("S0");
        recorded.states.push(State {
            started: Instant::now(),
            answered: None,
            ..previous
        });
        recorded.states.len() - 1
    }

    /// The write ended; `count` and `sum` are the database read right after it.
    pub fn write_ended(
        &self,
        k: usize,
        count: i64,
        sum: i64,
        first_page: i64,
        answered: Option<Instant>,
    ) {
        let mut recorded = self.recorded();
        let state = &mut recorded.states[k];
        state.count = count;
        state.sum = sum;
        state.first_page = first_page;
        state.answered = answered;
    }

    pub fn read(&self, read: Read) {
        self.recorded().reads.push(read);
    }

    pub fn counts(&self) -> (usize, usize) {
        let recorded = self.recorded();
        (recorded.reads.len(), recorded.states.len() - 1)
    }

    pub fn error_count(&self) -> usize {
        self.recorded().errors.len()
    }

    /// Checks every read; prints each stale one and returns how many there were.
    pub fn stale_reads(&self) -> usize {
        let recorded = self.recorded();
        let states = &recorded.states;
        let mut stale = 0;
        let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
        let mut stale_at = Vec::new();
        for read in &recorded.reads {
            // The last write answered before the read started, and the last one started
            // before it ended.
            let low = states
                .iter()
                .rposition(|s| s.answered.is_some_and(|a| a <= read.started))
                .unwrap_or(0);
            let high = states
                .iter()
                .rposition(|s| s.started <= read.ended)
                .unwrap_or(0)
                .max(low);
            let tolerance = if read.route.starts_with("/api/") {
                API_TOLERANCE
            } else {
                PAGE_TOLERANCE
            };
            let fits = states[low..=high].iter().any(|s| {
                s.count == read.count
                    && match (s.shown_by(read.route), read.average) {
                        (Some(a), Some(b)) => (a - b).abs() <= tolerance,
                        (None, None) => true,
                        _ => false,
                    }
            });
            if fits {
                continue;
            }
            stale += 1;
            stale_at.push((read.instance, read.started));
            *by_kind
                .entry(format!("{} {} {}", read.instance, read.route, read.cache))
                .or_default() += 1;
            if stale > PRINTED_STALE {
                continue;
            }
            let expected: Vec<String> = (low..=high)
                .map(|j| {
                    let s = &states[j];
                    format!("S{j}={} students avg {:?}", s.count, s.shown_by(read.route))
                })
                .collect();
            println!(
                "[{} .. {}] STALE instance {} {} X-Cache {}: got {} students avg {:?}; expected one of [{}]",
                self.at(read.started),
                self.at(read.ended),
                read.instance,
                read.route,
                read.cache,
                read.count,
                read.average,
                expected.join(", "),
            );
        }
        if stale > PRINTED_STALE {
            println!("... and {} more stale reads", stale - PRINTED_STALE);
        }
        self.print_windows(&recorded, stale_at);
        if stale > 0 {
            println!("stale reads by instance, route and X-Cache: {by_kind:?}");
        }
        stale
    }
}
