//! Proxy counters: process-wide atomics read by `INFO`, and per-thread per-command tallies
//! flushed to the `metrics` registry (Prometheus `/metrics`) once a second, so the request
//! path never touches the registry.

use std::cell::RefCell;
use std::collections::HashMap;
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

#[derive(Default)]
struct Tally {
    calls: u64,
    errors: u64,
    /// Latency samples in µs of this second (bounded).
    micros: Vec<u32>,
}

thread_local! {
    static TALLIES: RefCell<HashMap<(usize, &'static str), Tally>> = RefCell::new(HashMap::new());
}

/// Records one command of pool `pool` on this thread.
#[inline]
pub fn record(pool: usize, cmd: &'static str, error: bool, started: Option<Instant>) {
    TALLIES.with(|t| {
        let mut t = t.borrow_mut();
        let e = t.entry((pool, cmd)).or_default();
        e.calls += 1;
        e.errors += u64::from(error);
        if let Some(s) = started {
            if e.micros.len() < 4096 {
                e.micros.push(s.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
            }
        }
    });
}

/// Flushes this thread's tallies into the `metrics` registry.
pub fn flush(pool_names: &[String]) {
    TALLIES.with(|t| {
        for ((pool, cmd), tally) in t.borrow_mut().iter_mut() {
            if tally.calls == 0 && tally.micros.is_empty() {
                continue;
            }
            let pool = pool_names.get(*pool).cloned().unwrap_or_default();
            let labels = [("pool", pool), ("cmd", (*cmd).to_string())];
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
    });
}
