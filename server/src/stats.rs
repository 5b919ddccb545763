//! Per-command metrics without contention on the hot path.
//!
//! Each worker thread counts calls, errors and a log2 latency histogram per
//! command in plain thread-local arrays; once a second (and at shutdown) the
//! deltas are published through the `metrics` facade, which
//! `metrics-exporter-prometheus` renders on `/metrics`. Handles with labels cost
//! a registry lookup each, so doing that per request would cost more than the
//! request itself at pipeline depth 16.

use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram};

use crate::exec::resp::COMMANDS;
use crate::shared::Shared;

/// memcache command names, in stats-slot order.
pub const MC_COMMANDS: &[&str] = &[
    "get",
    "gets",
    "gat",
    "gats",
    "set",
    "add",
    "replace",
    "append",
    "prepend",
    "cas",
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

const BUCKETS: usize = 24;

struct Local {
    calls: Vec<u64>,
    hist: Vec<[u64; BUCKETS]>,
    errors: u64,
    /// Stats slots of the commands run in the current batch.
    pending: Vec<u16>,
}

impl Local {
    fn new() -> Local {
        let n = COMMANDS.len() + MC_COMMANDS.len();
        Local {
            calls: vec![0; n],
            hist: vec![[0; BUCKETS]; n],
            errors: 0,
            pending: Vec::with_capacity(64),
        }
    }
}

thread_local! {
    static LOCAL: RefCell<Local> = RefCell::new(Local::new());
}

#[inline]
fn note(slot: usize) {
    LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        l.calls[slot] += 1;
        l.pending.push(slot as u16);
    });
}

/// Counts one RESP command (by table index) in the current batch.
#[inline]
pub fn record(id: usize) {
    note(id);
}

/// Counts one memcache command by name (see [`MC_COMMANDS`]) in the current batch.
#[inline]
pub fn record_mc(name: &'static str) {
    if let Some(i) = MC_COMMANDS.iter().position(|n| *n == name) {
        note(COMMANDS.len() + i);
    }
}

/// Ends a batch: attributes its elapsed time evenly to the commands it ran.
#[inline]
pub fn end_batch(start: Instant) {
    LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        if l.pending.is_empty() {
            return;
        }
        let us = start.elapsed().as_micros() as u64 / l.pending.len() as u64;
        let b = (64 - us.leading_zeros() as usize).min(BUCKETS - 1);
        let pending = std::mem::take(&mut l.pending);
        for &slot in &pending {
            l.hist[slot as usize][b] += 1;
        }
        l.pending = pending;
        l.pending.clear();
    });
}

/// Counts one error reply.
#[inline]
pub fn count_error() {
    LOCAL.with(|l| l.borrow_mut().errors += 1);
}

/// Publishes this thread's deltas to the metrics recorder.
pub fn flush_thread_local() {
    LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        let n = l.calls.len();
        for i in 0..n {
            let calls = std::mem::take(&mut l.calls[i]);
            if calls == 0 {
                continue;
            }
            let (proto, name) = if i < COMMANDS.len() {
                ("resp", COMMANDS[i].name)
            } else {
                ("memcache", MC_COMMANDS[i - COMMANDS.len()])
            };
            counter!("shoal_commands_total", "protocol" => proto, "command" => name).increment(calls);
            let h = histogram!("shoal_command_duration_seconds", "protocol" => proto, "command" => name);
            let hist = std::mem::replace(&mut l.hist[i], [0; BUCKETS]);
            for (b, &count) in hist.iter().enumerate() {
                if count > 0 {
                    // Bucket b holds durations in [2^(b-1), 2^b) µs: record its midpoint.
                    let mid_us = if b == 0 { 0.5 } else { 0.75 * (1u64 << b) as f64 };
                    h.record_many(mid_us / 1e6, count as usize);
                }
            }
        }
        let errors = std::mem::take(&mut l.errors);
        if errors > 0 {
            counter!("shoal_error_replies_total").increment(errors);
        }
    });
}

/// Flushes thread-local stats once a second until shutdown.
pub async fn flush_loop(mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => flush_thread_local(),
            _ = shutdown.changed() => break,
        }
    }
}

/// Publishes server-wide gauges and counters (called by the housekeeping loop).
pub fn publish_gauges(shared: &Shared) {
    let ks = &shared.keyspace;
    let st = ks.stats();
    gauge!("shoal_used_memory_bytes").set(ks.used_memory() as f64);
    gauge!("shoal_maxmemory_bytes").set(ks.maxmemory() as f64);
    gauge!("shoal_keys").set(st.keys as f64);
    gauge!("shoal_keys_with_expiry").set(st.volatile as f64);
    gauge!("shoal_connected_clients").set(shared.connected.load(Ordering::Relaxed) as f64);
    gauge!("shoal_rss_bytes").set(crate::exec::resp::rss_bytes() as f64);
    counter!("shoal_keyspace_hits_total").absolute(st.hits);
    counter!("shoal_keyspace_misses_total").absolute(st.misses);
    counter!("shoal_expired_keys_total").absolute(st.expired);
    counter!("shoal_evicted_keys_total").absolute(st.evicted);
    let c = &shared.counters_sum();
    counter!("shoal_connections_total").absolute(c.total_connections.load(Ordering::Relaxed));
    counter!("shoal_rejected_connections_total")
        .absolute(c.rejected_connections.load(Ordering::Relaxed));
    counter!("shoal_net_input_bytes_total").absolute(c.net_input_bytes.load(Ordering::Relaxed));
    counter!("shoal_net_output_bytes_total").absolute(c.net_output_bytes.load(Ordering::Relaxed));
}

static EXPORTER: OnceLock<Result<(), String>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder serving `/metrics` on the
/// configured port. The recorder is global, so only the first server started in
/// a process gets the endpoint; later ones share its metrics.
///
/// # Errors
/// When the listener cannot be set up.
pub fn install_exporter(config: &crate::config::ServerConfig) -> anyhow::Result<()> {
    let ip = config
        .bind_addrs()
        .first()
        .copied()
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    let port = config.metrics_port;
    let r = EXPORTER.get_or_init(|| {
        let buckets: Vec<f64> = (0..BUCKETS).map(|b| (1u64 << b) as f64 / 1e6).collect();
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener((ip, port))
            .set_buckets(&buckets)
            .map_err(|e| e.to_string())?
            .install()
            .map_err(|e| e.to_string())?;
        tracing::info!("ready to serve Prometheus metrics on http://{ip}:{port}/metrics");
        Ok(())
    });
    r.clone()
        .map_err(|e| anyhow::anyhow!("metrics exporter: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_are_unique() {
        let mut names: Vec<&str> = COMMANDS.iter().map(|c| c.name).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "duplicate RESP command in table");
        let mut mc = MC_COMMANDS.to_vec();
        mc.sort_unstable();
        mc.dedup();
        assert_eq!(mc.len(), MC_COMMANDS.len());
    }
}
