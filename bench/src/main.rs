//! shoal-bench: a memtier-like closed-loop load generator for RESP and
//! memcached-text servers (Shoal, redis-server, memcached).
//!
//! See bench/README.md for the method and the comparison scripts.

mod cpu;
mod proto;
mod report;
mod run;
mod timeline;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;

use proto::{Protocol, Requests, KEY_NUMBER_MAX};
use run::{Config, KeyPattern, Phase};

/// Longest a phase may run, whatever the flags say.
const MAX_PHASE_SECS: f64 = 600.0;

#[derive(Parser, Debug)]
#[command(
    name = "shoal-bench",
    version,
    about = "Closed-loop RESP / memcache load generator (memtier-like)"
)]
pub struct Args {
    /// Server address: loopback only (127.0.0.0/8, ::1 or `localhost`).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 6379)]
    port: u16,
    #[arg(long, value_enum, default_value = "resp")]
    protocol: Protocol,
    /// Connections in total (spread over --threads).
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// Requests sent back to back per connection before waiting for replies.
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// SET:GET ratio, as memtier (`1:10` = one SET per ten GETs, `1:0` = SET only).
    #[arg(long, default_value = "1:10")]
    ratio: String,
    /// Value size in bytes.
    #[arg(long, default_value_t = 32)]
    data_size: usize,
    #[arg(long, default_value = "key:")]
    key_prefix: String,
    #[arg(long, default_value_t = 0)]
    key_minimum: u64,
    /// Highest key number (inclusive).
    #[arg(long, default_value_t = 100_000)]
    key_maximum: u64,
    /// R: uniform random keys; S: sequential per connection.
    #[arg(long, value_enum, default_value = "R")]
    key_pattern: KeyPattern,
    /// Requests per connection in the measured phase (0 with --prefill: load only).
    #[arg(long)]
    requests: Option<u64>,
    /// Length of the measured phase in seconds (default 10 unless --requests is
    /// given; never more than 600). `--duration` is the same flag.
    #[arg(long, visible_alias = "duration")]
    test_time: Option<f64>,
    /// SET every key of the range once (pipelined) before measuring.
    #[arg(long)]
    prefill: bool,
    /// Prefill and exit without a measured phase.
    #[arg(long)]
    load_only: bool,
    /// Pipeline depth of the prefill phase.
    #[arg(long, default_value_t = 64)]
    prefill_pipeline: usize,
    /// OS threads, each with its own current-thread tokio runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json_out: Option<std::path::PathBuf>,
    /// Measure this server process's CPU time (utime+stime) over the measured phase.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print one machine-readable `summary key=value ...` line at the end.
    #[arg(long)]
    summary: bool,
    /// Seed of the random key streams.
    #[arg(long, default_value_t = 0x5eed)]
    seed: u64,
    /// Free-form label copied into the JSON (e.g. the target's name).
    #[arg(long, default_value = "")]
    label: String,
    /// Write the measured phase as a CSV time series to this file, one row per
    /// --timeline-interval-ms: t_seconds, ops, ops_per_sec, p50_us, p99_us, max_us,
    /// gets, hits, misses, errors, unix_s.
    #[arg(long)]
    timeline: Option<std::path::PathBuf>,
    /// Interval of --timeline rows, in milliseconds.
    #[arg(long, default_value_t = 250)]
    timeline_interval_ms: u64,
    /// In the measured phase, count a broken connection (its unanswered requests as
    /// errors) and connect again instead of ending that connection's run.
    #[arg(long)]
    reconnect: bool,
    /// End the measured phase early, as at its deadline (batches in flight complete),
    /// once this file exists (checked every 100 ms); --test-time stays the bound.
    #[arg(long)]
    stop_file: Option<std::path::PathBuf>,
}

/// The rule of the project: load only ever targets this machine's loopback
/// (tests that need several hosts use network namespaces reached through a
/// loopback-bound forwarder, never a routed address).
fn resolve_host(host: &str, port: u16) -> Result<SocketAddr> {
    let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::from([127, 0, 0, 1])
    } else {
        host.parse()
            .with_context(|| format!("--host must be an IP address or localhost, got {host:?}"))?
    };
    let allowed = match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback(),
    };
    if !allowed {
        bail!("refusing --host {ip}: only loopback addresses may be load-tested");
    }
    Ok(SocketAddr::new(ip, port))
}

fn parse_ratio(s: &str) -> Result<(u64, u64)> {
    let (a, b) = s
        .split_once(':')
        .with_context(|| format!("--ratio must be SET:GET, got {s:?}"))?;
    let set: u64 = a
        .trim()
        .parse()
        .with_context(|| format!("bad --ratio {s:?}"))?;
    let get: u64 = b
        .trim()
        .parse()
        .with_context(|| format!("bad --ratio {s:?}"))?;
    if set + get == 0 {
        bail!("--ratio {s:?} has no operations");
    }
    if set + get > 1_000_000 {
        bail!("--ratio {s:?} is too large");
    }
    Ok((set, get))
}

fn build_config(a: &Args) -> Result<Config> {
    let addr = resolve_host(&a.host, a.port)?;
    let (ratio_set, ratio_get) = parse_ratio(&a.ratio)?;
    if a.connections == 0 || a.connections > 10_000 {
        bail!("--connections must be 1..=10000");
    }
    if a.threads == 0 || a.threads > 256 {
        bail!("--threads must be 1..=256");
    }
    if a.pipeline == 0
        || a.pipeline > 10_000
        || a.prefill_pipeline == 0
        || a.prefill_pipeline > 10_000
    {
        bail!("--pipeline and --prefill-pipeline must be 1..=10000");
    }
    if a.data_size > 64 * 1024 * 1024 {
        bail!("--data-size is limited to 64 MiB");
    }
    if a.key_minimum > a.key_maximum || a.key_maximum > KEY_NUMBER_MAX {
        bail!("need --key-minimum <= --key-maximum <= {KEY_NUMBER_MAX}");
    }
    if a.key_prefix.bytes().any(|b| b <= b' ' || b == 0x7f) || a.key_prefix.len() > 200 {
        bail!("--key-prefix must be printable, without spaces, at most 200 bytes");
    }
    let test_time = match a.test_time {
        Some(t) if !(t > 0.0 && t <= MAX_PHASE_SECS) => {
            bail!("--test-time must be in (0, {MAX_PHASE_SECS}]")
        }
        Some(t) => t,
        None if a.requests.is_some() => MAX_PHASE_SECS,
        None => 10.0,
    };
    if !(10..=60_000).contains(&a.timeline_interval_ms) {
        bail!("--timeline-interval-ms must be 10..=60000");
    }
    Ok(Config {
        addr,
        protocol: a.protocol,
        connections: a.connections,
        threads: a.threads,
        pipeline: a.pipeline,
        prefill_pipeline: a.prefill_pipeline,
        ratio_set,
        ratio_get,
        data_size: a.data_size,
        key_prefix: a.key_prefix.clone(),
        key_min: a.key_minimum,
        key_max: a.key_maximum,
        key_pattern: a.key_pattern,
        requests: a.requests,
        run_for: Duration::from_secs_f64(test_time),
        prefill_for: Duration::from_secs_f64(MAX_PHASE_SECS),
        seed: a.seed,
        timeline: a
            .timeline
            .clone()
            .map(|p| (p, Duration::from_millis(a.timeline_interval_ms))),
        reconnect: a.reconnect,
        stop_file: a.stop_file.clone(),
    })
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("shoal-bench: error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let args = Args::parse();
    let cfg = Arc::new(build_config(&args)?);
    let reqs = Arc::new(Requests::new(cfg.protocol, &cfg.key_prefix, cfg.data_size));
    let load_only = args.load_only || args.requests == Some(0);
    if load_only && !args.prefill && !args.load_only {
        bail!("--requests 0 only makes sense with --prefill");
    }

    let mut prefill = None;
    if args.prefill || args.load_only {
        let res = run::run_phase(&cfg, &reqs, Phase::Prefill, || {})?;
        let keys = cfg.key_max - cfg.key_min + 1;
        let secs = res.elapsed.as_secs_f64();
        println!(
            "prefill: {} keys ({} B values) in {:.2} s, {:.0} SET/s, {} error replies, {} connection errors",
            res.stats.sets,
            cfg.data_size,
            secs,
            res.stats.sets as f64 / secs.max(1e-9),
            res.stats.error_replies,
            res.connection_errors.len()
        );
        for e in &res.connection_errors {
            eprintln!("prefill: {e}");
        }
        if !res.connection_errors.is_empty() || res.stats.sets != keys {
            bail!(
                "prefill incomplete: {} of {keys} keys stored",
                res.stats.sets
            );
        }
        if res.stats.error_replies > 0 {
            bail!(
                "prefill: the server refused {} SETs",
                res.stats.error_replies
            );
        }
        prefill = Some(report::PrefillReport {
            keys,
            seconds: secs,
            ops_per_sec: res.stats.sets as f64 / secs.max(1e-9),
        });
    }
    if load_only {
        let rep = report::Report::load_only(&args, &cfg, prefill);
        if let Some(path) = &args.json_out {
            rep.write_json(path)?;
        }
        if args.summary {
            println!("{}", rep.summary_line());
        }
        return Ok(());
    }

    let ticks_per_sec = cpu::clock_ticks_per_sec();
    let mut cpu_before = None;
    if let Some(pid) = args.server_pid {
        // Fail early on a wrong pid rather than after the run.
        cpu::process_ticks(pid)?;
    }
    let own_pid = std::process::id();
    let mut own_before = None;
    let res = run::run_phase(&cfg, &reqs, Phase::Measure, || {
        if let Some(pid) = args.server_pid {
            cpu_before = cpu::process_ticks(pid).ok();
        }
        own_before = cpu::process_ticks(own_pid).ok();
    })?;
    // The generator's own CPU over the run, as a share of one core: near 100 %
    // means the generator, not the server, may be the limit.
    let loadgen_cpu_pct = own_before.and_then(|before| {
        let after = cpu::process_ticks(own_pid).ok()?;
        let secs = res.elapsed.as_secs_f64();
        (secs > 0.0)
            .then(|| after.saturating_sub(before) as f64 / ticks_per_sec as f64 / secs * 100.0)
    });
    let server_cpu = match (args.server_pid, cpu_before) {
        (Some(pid), Some(before)) => {
            let after = cpu::process_ticks(pid).context("server CPU after the run")?;
            Some(report::CpuReport::new(
                pid,
                after.saturating_sub(before),
                ticks_per_sec,
                res.stats.ops(),
            ))
        }
        (Some(pid), None) => bail!("could not read /proc/{pid}/stat at the start of the run"),
        _ => None,
    };
    let rep = report::Report::measured(&args, &cfg, prefill, &res, server_cpu, loadgen_cpu_pct);
    rep.print_table();
    if let Some(path) = &args.json_out {
        rep.write_json(path)?;
    }
    if args.summary {
        println!("{}", rep.summary_line());
    }
    for e in &res.connection_errors {
        eprintln!("{e}");
    }
    for r in &res.reconnect_reasons {
        eprintln!("reconnected: {r}");
    }
    if res.stats.ops() == 0 {
        bail!("no request completed");
    }
    if !res.connection_errors.is_empty() {
        bail!(
            "{} connection(s) failed during the run",
            res.connection_errors.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_rule() {
        assert!(resolve_host("127.0.0.1", 1).is_ok());
        assert!(resolve_host("localhost", 1).is_ok());
        assert!(resolve_host("::1", 1).is_ok());
        assert!(resolve_host("127.0.0.2", 1).is_ok());
        assert!(resolve_host("10.1.2.3", 1).is_err());
        assert!(resolve_host("192.168.0.9", 1).is_err());
        assert!(resolve_host("8.8.8.8", 1).is_err());
        assert!(resolve_host("2001:db8::1", 1).is_err());
        assert!(resolve_host("example.com", 1).is_err());
    }

    #[test]
    fn ratios() {
        assert_eq!(parse_ratio("1:10").unwrap(), (1, 10));
        assert_eq!(parse_ratio("1:0").unwrap(), (1, 0));
        assert!(parse_ratio("0:0").is_err());
        assert!(parse_ratio("x").is_err());
    }
}
