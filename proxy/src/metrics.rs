//! Proxy counters: process-wide atomics read by `INFO`, and per-thread per-command tallies
//! flushed to the `metrics` registry (Prometheus `/metrics`) once a second, so the request
//! path never touches the registry.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Process-wide counters.
#[derive(Debug)]
pub struct Stats {
    /// Start time.
    pub started: Instant,
    /// Client connections open now.
    pub clients: AtomicU64,
    /// Client connections accepted since start.
    pub clients_total: AtomicU64,
    /// Client connections refused (client_connections limit).
    pub clients_rejected: AtomicU64,
    /// Requests received.
    pub requests: AtomicU64,
    /// Requests answered with an error produced by the proxy (backend down, CROSSSLOT…).
    pub errors: AtomicU64,
    /// Requests that failed because a backend failed.
    pub backend_errors: AtomicU64,
    /// Replica promotions performed.
    pub failovers: AtomicU64,
    /// Server ejections.
    pub ejections: AtomicU64,
    /// Configuration reloads applied.
    pub reloads: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            clients: AtomicU64::new(0),
            clients_total: AtomicU64::new(0),
            clients_rejected: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            backend_errors: AtomicU64::new(0),
            failovers: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
        }
    }
}

impl Stats {
    /// Adds `n` to a counter.
    #[inline]
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

#[derive(Default, Clone)]
struct Tally {
    calls: u64,
    errors: u64,
    /// Latency samples in µs since the last flush (bounded).
    micros: Vec<u32>,
}

/// Ids of memcache commands start here (Redis commands use [`crate::commands::names`]).
pub const MC_BASE: u16 = 1000;

/// Labels of memcache command ids (`MC_BASE + i`).
pub const MC_NAMES: [&str; 19] = [
    "get",
    "gets",
    "gat",
    "store",
    "incr",
    "decr",
    "delete",
    "touch",
    "flush_all",
    "stats",
    "version",
    "verbosity",
    "quit",
    "mg",
    "ms",
    "md",
    "ma",
    "mn",
    "me",
];

thread_local! {
    static TALLIES: RefCell<Vec<Vec<Tally>>> = const { RefCell::new(Vec::new()) };
}

/// Records a batch of commands of pool `pool` on this thread: their ids, whether each
/// was answered with an error, and the batch's latency (one clock read per batch).
pub fn record_batch(pool: usize, ids: &[(u16, bool)], started: Instant) {
    if ids.is_empty() {
        return;
    }
    let us = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
    TALLIES.with(|t| {
        let mut t = t.borrow_mut();
        if t.len() <= pool {
            t.resize(pool + 1, Vec::new());
        }
        let row = &mut t[pool];
        for &(id, err) in ids {
            let id = id as usize;
            if row.len() <= id {
                row.resize(id + 1, Tally::default());
            }
            let e = &mut row[id];
            e.calls += 1;
            e.errors += u64::from(err);
            if e.micros.len() < 1024 {
                e.micros.push(us);
            }
        }
    });
}

fn label(id: usize) -> &'static str {
    if id >= MC_BASE as usize {
        MC_NAMES
            .get(id - MC_BASE as usize)
            .copied()
            .unwrap_or("other")
    } else {
        crate::commands::names().get(id).copied().unwrap_or("OTHER")
    }
}

/// Flushes this thread's tallies into the `metrics` registry.
pub fn flush(pool_names: &[String]) {
    TALLIES.with(|t| {
        for (pool, row) in t.borrow_mut().iter_mut().enumerate() {
            for (id, tally) in row.iter_mut().enumerate() {
                if tally.calls == 0 {
                    continue;
                }
                let pool = pool_names.get(pool).cloned().unwrap_or_default();
                let labels = [("pool", pool), ("cmd", label(id).to_string())];
                metrics::counter!("shoal_proxy_commands_total", &labels).increment(tally.calls);
                if tally.errors > 0 {
                    metrics::counter!("shoal_proxy_command_errors_total", &labels)
                        .increment(tally.errors);
                }
                let h = metrics::histogram!("shoal_proxy_command_duration_seconds", &labels);
                for us in tally.micros.drain(..) {
                    h.record(f64::from(us) / 1e6);
                }
                tally.calls = 0;
                tally.errors = 0;
            }
        }
    });
}
