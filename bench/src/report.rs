//! The human table, the JSON file and the one-line summary.

use std::path::Path;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::proto::Protocol;
use crate::run::{Config, KeyPattern, PhaseResult};
use crate::Args;

#[derive(Serialize)]
pub struct ConfigReport {
    label: String,
    host: String,
    port: u16,
    protocol: Protocol,
    connections: usize,
    threads: usize,
    pipeline: usize,
    ratio: String,
    data_size: usize,
    key_prefix: String,
    key_minimum: u64,
    key_maximum: u64,
    key_pattern: KeyPattern,
    requests_per_connection: Option<u64>,
    test_time_s: f64,
}

#[derive(Serialize)]
pub struct PrefillReport {
    pub keys: u64,
    pub seconds: f64,
    pub ops_per_sec: f64,
}

/// Latency percentiles in microseconds.
#[derive(Serialize, Clone, Copy, Default)]
pub struct Latency {
    mean: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Latency::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            mean: h.mean() / 1000.0,
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

#[derive(Serialize)]
pub struct OpReport {
    ops: u64,
    ops_per_sec: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    hits: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    misses: Option<u64>,
    latency_us: Latency,
}

#[derive(Serialize)]
pub struct CpuReport {
    pid: u32,
    clk_tck: u64,
    cpu_us: f64,
    us_per_op: f64,
}

impl CpuReport {
    pub fn new(pid: u32, ticks: u64, clk_tck: u64, ops: u64) -> Self {
        let cpu_us = ticks as f64 * 1e6 / clk_tck as f64;
        CpuReport {
            pid,
            clk_tck,
            cpu_us,
            us_per_op: if ops > 0 { cpu_us / ops as f64 } else { 0.0 },
        }
    }
}

#[derive(Serialize)]
pub struct Measured {
    elapsed_s: f64,
    sets: OpReport,
    gets: OpReport,
    totals: OpReport,
    error_replies: u64,
    connection_errors: Vec<String>,
    /// `--reconnect` only: connections that broke and were opened again, and
    /// the requests that got no reply because of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    reconnects: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lost_requests: Option<u64>,
}

#[derive(Serialize)]
pub struct Report {
    config: ConfigReport,
    prefill: Option<PrefillReport>,
    measured: Option<Measured>,
    server_cpu: Option<CpuReport>,
    /// shoal-bench's own CPU time over the measured phase, % of one core.
    loadgen_cpu_pct: Option<f64>,
}

fn config_report(a: &Args, c: &Config) -> ConfigReport {
    ConfigReport {
        label: a.label.clone(),
        host: c.addr.ip().to_string(),
        port: c.addr.port(),
        protocol: c.protocol,
        connections: c.connections,
        threads: c.threads,
        pipeline: c.pipeline,
        ratio: format!("{}:{}", c.ratio_set, c.ratio_get),
        data_size: c.data_size,
        key_prefix: c.key_prefix.clone(),
        key_minimum: c.key_min,
        key_maximum: c.key_max,
        key_pattern: c.key_pattern,
        requests_per_connection: c.requests,
        test_time_s: c.run_for.as_secs_f64(),
    }
}

impl Report {
    pub fn load_only(a: &Args, c: &Config, prefill: Option<PrefillReport>) -> Self {
        Report {
            config: config_report(a, c),
            prefill,
            measured: None,
            server_cpu: None,
            loadgen_cpu_pct: None,
        }
    }

    pub fn measured(
        a: &Args,
        c: &Config,
        prefill: Option<PrefillReport>,
        res: &PhaseResult,
        server_cpu: Option<CpuReport>,
        loadgen_cpu_pct: Option<f64>,
    ) -> Self {
        let secs = res.elapsed.as_secs_f64().max(1e-9);
        let s = &res.stats;
        let measured = Measured {
            elapsed_s: res.elapsed.as_secs_f64(),
            sets: OpReport {
                ops: s.sets,
                ops_per_sec: s.sets as f64 / secs,
                hits: None,
                misses: None,
                latency_us: Latency::of(&s.set_hist),
            },
            gets: OpReport {
                ops: s.gets,
                ops_per_sec: s.gets as f64 / secs,
                hits: Some(s.hits),
                misses: Some(s.misses),
                latency_us: Latency::of(&s.get_hist),
            },
            totals: OpReport {
                ops: s.ops(),
                ops_per_sec: s.ops() as f64 / secs,
                hits: None,
                misses: None,
                latency_us: Latency::of(&s.total_hist()),
            },
            error_replies: s.error_replies,
            connection_errors: res.connection_errors.clone(),
            reconnects: c.reconnect.then_some(s.reconnects),
            lost_requests: c.reconnect.then_some(s.lost_requests),
        };
        Report {
            config: config_report(a, c),
            prefill,
            measured: Some(measured),
            server_cpu,
            loadgen_cpu_pct,
        }
    }

    pub fn print_table(&self) {
        let c = &self.config;
        let Some(m) = &self.measured else { return };
        println!(
            "shoal-bench {:?} {}:{}  {} conns / {} threads  pipeline {}  SET:GET {}  {} B values  keys {}..={} ({:?})  {:.2} s",
            c.protocol,
            c.host,
            c.port,
            c.connections,
            c.threads,
            c.pipeline,
            c.ratio,
            c.data_size,
            c.key_minimum,
            c.key_maximum,
            c.key_pattern,
            m.elapsed_s
        );
        println!(
            "{:<8} {:>12} {:>12} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "Type",
            "Ops/sec",
            "Hits/sec",
            "Misses/sec",
            "Avg us",
            "p50 us",
            "p90 us",
            "p99 us",
            "p99.9 us",
            "max us"
        );
        let secs = m.elapsed_s.max(1e-9);
        let row = |name: &str, r: &OpReport| {
            let per =
                |v: Option<u64>| v.map_or("---".to_string(), |v| format!("{:.0}", v as f64 / secs));
            let l = r.latency_us;
            println!(
                "{:<8} {:>12.0} {:>12} {:>12} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
                name,
                r.ops_per_sec,
                per(r.hits),
                per(r.misses),
                l.mean,
                l.p50,
                l.p90,
                l.p99,
                l.p999,
                l.max
            );
        };
        row("Sets", &m.sets);
        row("Gets", &m.gets);
        row("Totals", &m.totals);
        if m.error_replies > 0 {
            println!("error replies: {}", m.error_replies);
        }
        if let (Some(n), Some(lost)) = (m.reconnects, m.lost_requests) {
            if n > 0 {
                println!("broken connections reopened: {n} ({lost} requests lost)");
            }
        }
        if let Some(cpu) = &self.server_cpu {
            println!(
                "server pid {}: {:.0} us CPU over the run, {:.3} us CPU per op",
                cpu.pid, cpu.cpu_us, cpu.us_per_op
            );
        }
        if let Some(pct) = self.loadgen_cpu_pct {
            println!("shoal-bench itself: {pct:.0} % of one core");
        }
    }

    /// `summary ops_per_sec=... p50_us=... ...`: one line for shell scripts.
    pub fn summary_line(&self) -> String {
        let mut s = String::from("summary");
        if let Some(p) = &self.prefill {
            s += &format!(" prefill_keys={} prefill_s={:.3}", p.keys, p.seconds);
        }
        if let Some(m) = &self.measured {
            let l = m.totals.latency_us;
            s += &format!(
                " ops={} ops_per_sec={:.0} sets={} gets={} hits={} misses={} errors={} p50_us={:.1} p90_us={:.1} p99_us={:.1} p999_us={:.1} max_us={:.1} elapsed_s={:.3}",
                m.totals.ops,
                m.totals.ops_per_sec,
                m.sets.ops,
                m.gets.ops,
                m.gets.hits.unwrap_or(0),
                m.gets.misses.unwrap_or(0),
                m.error_replies
                    + m.connection_errors.len() as u64
                    + m.lost_requests.unwrap_or(0),
                l.p50,
                l.p90,
                l.p99,
                l.p999,
                l.max,
                m.elapsed_s
            );
            if let (Some(n), Some(lost)) = (m.reconnects, m.lost_requests) {
                s += &format!(" reconnects={n} lost_requests={lost}");
            }
        }
        match &self.server_cpu {
            Some(c) => s += &format!(" cpu_us_per_op={:.3}", c.us_per_op),
            None => s += " cpu_us_per_op=na",
        }
        match self.loadgen_cpu_pct {
            Some(p) => s += &format!(" loadgen_cpu_pct={p:.0}"),
            None => s += " loadgen_cpu_pct=na",
        }
        s
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).context("encoding JSON")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }
}
