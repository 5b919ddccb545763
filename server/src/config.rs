//! `shoal-server` configuration: a TOML file (`--config`) overlaid by CLI flags.
//!
//! Every flag has a key of the same name (dashes become underscores) in the
//! file; unknown keys are rejected because a typo in a cache config is an outage.
//! Sizes accept plain bytes or Redis-style units (`100mb`, `1gb`, `512k`).

use std::path::PathBuf;

use clap::Parser;
use serde::Deserialize;
use shoal_keyspace::EvictionPolicy;

/// Default RESP port.
pub const DEFAULT_PORT: u16 = 6379;
/// Default memcache port.
pub const DEFAULT_MEMCACHE_PORT: u16 = 11211;
/// Redis `proto-max-bulk-len` default (512 MiB).
pub const DEFAULT_PROTO_MAX_BULK_LEN: u64 = 512 * 1024 * 1024;
/// Redis `client-query-buffer-limit` default (1 GiB).
pub const DEFAULT_QUERY_BUFFER_LIMIT: u64 = 1024 * 1024 * 1024;
/// memcached `-I` default (1 MiB).
pub const DEFAULT_MAX_ITEM_SIZE: u64 = 1024 * 1024;
/// Redis `maxclients` default.
pub const DEFAULT_MAXCLIENTS: u64 = 10_000;

/// Effective server configuration.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Addresses to listen on (space separated, like Redis' `bind`).
    pub bind: String,
    /// RESP port; 0 disables the RESP listener.
    pub port: u16,
    /// memcache port; 0 disables the memcache listener.
    pub memcache_port: u16,
    /// Memory limit in bytes (0 = unlimited).
    #[serde(deserialize_with = "de_size")]
    pub maxmemory: u64,
    /// Eviction policy name (Redis names).
    pub maxmemory_policy: String,
    /// Password for AUTH (none when empty).
    pub requirepass: Option<String>,
    /// Worker threads; 0 = one per core.
    pub threads: usize,
    /// Port of the Prometheus `/metrics` endpoint; 0 disables it.
    pub metrics_port: u16,
    /// Max simultaneous client connections (both protocols).
    pub maxclients: u64,
    /// Close clients idle for this many seconds (0 = never).
    pub timeout: u64,
    /// Largest memcache item value, bytes (memcached `-I`).
    #[serde(deserialize_with = "de_size")]
    pub max_item_size: u64,
    /// Largest RESP bulk string, bytes.
    #[serde(deserialize_with = "de_size")]
    pub proto_max_bulk_len: u64,
    /// Largest unprocessed input per client, bytes.
    #[serde(deserialize_with = "de_size")]
    pub client_query_buffer_limit: u64,
    /// Redis `lfu-log-factor`.
    pub lfu_log_factor: u32,
    /// Redis `lfu-decay-time` (minutes).
    pub lfu_decay_time: u32,
    /// Log filter (`info`, `debug`, `shoal_server=trace`...).
    pub loglevel: String,
    /// Replicate from this primary: `"host port"` (empty = this is a primary).
    pub replicaof: String,
    /// Password this replica sends to its primary (AUTH).
    pub masterauth: Option<String>,
    /// Replication backlog kept for partial resyncs, bytes.
    #[serde(deserialize_with = "de_size")]
    pub repl_backlog_size: u64,
    /// A replica whose link is down still serves reads (`no`: -MASTERDOWN).
    pub replica_serve_stale_data: bool,
    /// Refuse writes unless this many replicas are connected with a lag of at
    /// most `min_replicas_max_lag` seconds (0 = off).
    pub min_replicas_to_write: u64,
    /// Max replica lag, seconds, for `min_replicas_to_write`.
    pub min_replicas_max_lag: u64,
    /// Seconds without data from the other side before a replication link is dropped.
    pub repl_timeout: u64,
    /// Directory for the replication state file (epoch, replication id, peers);
    /// empty = not persisted (no fencing across restarts).
    pub dir: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: "127.0.0.1".into(),
            port: DEFAULT_PORT,
            memcache_port: DEFAULT_MEMCACHE_PORT,
            maxmemory: 0,
            maxmemory_policy: "noeviction".into(),
            requirepass: None,
            threads: 0,
            metrics_port: 0,
            maxclients: DEFAULT_MAXCLIENTS,
            timeout: 0,
            max_item_size: DEFAULT_MAX_ITEM_SIZE,
            proto_max_bulk_len: DEFAULT_PROTO_MAX_BULK_LEN,
            client_query_buffer_limit: DEFAULT_QUERY_BUFFER_LIMIT,
            lfu_log_factor: 10,
            lfu_decay_time: 1,
            loglevel: "info".into(),
            replicaof: String::new(),
            masterauth: None,
            repl_backlog_size: 1024 * 1024,
            replica_serve_stale_data: true,
            min_replicas_to_write: 0,
            min_replicas_max_lag: 10,
            repl_timeout: 60,
            dir: String::new(),
        }
    }
}

/// Parses `100`, `100b`, `10k`, `10kb`, `100mb`, `1gb` (Redis: k=1000, kb=1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid size '{s}'"))?;
    let mul = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return Err(format!("invalid size unit in '{s}'")),
    };
    n.checked_mul(mul)
        .ok_or_else(|| format!("size '{s}' overflows"))
}

/// Parses a Redis boolean (`yes`/`no`).
pub fn parse_yes_no(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" => Ok(true),
        "no" | "false" | "0" => Ok(false),
        _ => Err(format!("expected yes or no, got '{s}'")),
    }
}

fn de_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        N(u64),
        S(String),
    }
    match Size::deserialize(d)? {
        Size::N(n) => Ok(n),
        Size::S(s) => parse_size(&s).map_err(serde::de::Error::custom),
    }
}

impl ServerConfig {
    /// Every problem with the configuration, at once.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errs = Vec::new();
        if self.maxmemory_policy.parse::<EvictionPolicy>().is_err() {
            errs.push(format!(
                "maxmemory_policy: unknown policy '{}'",
                self.maxmemory_policy
            ));
        }
        for a in self.bind.split_whitespace() {
            if a.parse::<std::net::IpAddr>().is_err() && a != "localhost" {
                errs.push(format!("bind: '{a}' is not an IP address"));
            }
        }
        if self.bind.split_whitespace().next().is_none() {
            errs.push("bind: no address".into());
        }
        if self.port != 0 && self.port == self.memcache_port {
            errs.push("port and memcache_port must differ".into());
        }
        if self.max_item_size < 1024 {
            errs.push("max_item_size: must be at least 1k".into());
        }
        if self.maxclients == 0 {
            errs.push("maxclients: must be at least 1".into());
        }
        if !self.replicaof.trim().is_empty() && self.replica_target().is_none() {
            errs.push(format!(
                "replicaof: expected \"host port\", got '{}'",
                self.replicaof
            ));
        }
        if self.repl_backlog_size < 16 * 1024 {
            errs.push("repl_backlog_size: must be at least 16kb".into());
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }

    /// The eviction policy (validated).
    pub fn policy(&self) -> EvictionPolicy {
        self.maxmemory_policy.parse().unwrap_or_default()
    }

    /// Worker threads after resolving 0 to the core count.
    pub fn worker_threads(&self) -> usize {
        if self.threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            self.threads
        }
    }

    /// The primary to replicate from (`replicaof`), if any.
    pub fn replica_target(&self) -> Option<(String, u16)> {
        let mut it = self.replicaof.split_whitespace();
        let host = it.next()?;
        let port = it.next()?.parse::<u16>().ok()?;
        if it.next().is_some() || port == 0 {
            return None;
        }
        Some((host.to_string(), port))
    }

    /// Bind addresses.
    pub fn bind_addrs(&self) -> Vec<std::net::IpAddr> {
        self.bind
            .split_whitespace()
            .filter_map(|a| {
                if a == "localhost" {
                    Some(std::net::IpAddr::from([127, 0, 0, 1]))
                } else {
                    a.parse().ok()
                }
            })
            .collect()
    }
}

/// Command-line interface (flags mirror redis-server / memcached naming).
#[derive(Parser, Debug, Default)]
#[command(
    name = "shoal-server",
    version,
    about = "Shoal shard server: Redis (RESP2/3) and memcached protocols over one keyspace"
)]
pub struct Cli {
    /// TOML config file; flags given on the command line override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Addresses to listen on (space separated) [default: 127.0.0.1].
    #[arg(long)]
    pub bind: Option<String>,
    /// RESP port, 0 disables [default: 6379].
    #[arg(long)]
    pub port: Option<u16>,
    /// memcache port, 0 disables [default: 11211].
    #[arg(long)]
    pub memcache_port: Option<u16>,
    /// Memory limit: bytes or 100mb / 1gb [default: 0 = unlimited].
    #[arg(long, value_parser = parse_size)]
    pub maxmemory: Option<u64>,
    /// noeviction, allkeys-lru, allkeys-lfu, allkeys-random, volatile-lru, volatile-lfu, volatile-random, volatile-ttl.
    #[arg(long)]
    pub maxmemory_policy: Option<String>,
    /// Require AUTH with this password.
    #[arg(long)]
    pub requirepass: Option<String>,
    /// Worker threads [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Prometheus /metrics port, 0 disables [default: 0].
    #[arg(long)]
    pub metrics_port: Option<u16>,
    /// Max client connections [default: 10000].
    #[arg(long)]
    pub maxclients: Option<u64>,
    /// Idle client timeout in seconds, 0 = never.
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Largest memcache item [default: 1mb].
    #[arg(long, value_parser = parse_size)]
    pub max_item_size: Option<u64>,
    /// Largest RESP bulk string [default: 512mb].
    #[arg(long, value_parser = parse_size)]
    pub proto_max_bulk_len: Option<u64>,
    /// Largest pending query buffer per client [default: 1gb].
    #[arg(long, value_parser = parse_size)]
    pub client_query_buffer_limit: Option<u64>,
    /// Log filter [default: info].
    #[arg(long)]
    pub loglevel: Option<String>,
    /// Replicate from a primary: "host port".
    #[arg(long)]
    pub replicaof: Option<String>,
    /// Password to AUTH with at the primary.
    #[arg(long)]
    pub masterauth: Option<String>,
    /// Replication backlog size [default: 1mb].
    #[arg(long, value_parser = parse_size)]
    pub repl_backlog_size: Option<u64>,
    /// Serve reads while the link to the primary is down (yes/no) [default: yes].
    #[arg(long, value_parser = parse_yes_no)]
    pub replica_serve_stale_data: Option<bool>,
    /// Refuse writes with fewer good replicas than this [default: 0 = off].
    #[arg(long)]
    pub min_replicas_to_write: Option<u64>,
    /// Lag (seconds) under which a replica counts as good [default: 10].
    #[arg(long)]
    pub min_replicas_max_lag: Option<u64>,
    /// Replication link timeout, seconds [default: 60].
    #[arg(long)]
    pub repl_timeout: Option<u64>,
    /// Directory for the replication state file (epoch fencing across restarts).
    #[arg(long)]
    pub dir: Option<String>,
    /// Check the configuration, print problems, and exit.
    #[arg(long)]
    pub check_config: bool,
    /// Print the effective configuration and exit.
    #[arg(long)]
    pub print_config: bool,
}

impl Cli {
    /// Reads the file (if any) and applies flags over it.
    pub fn resolve(&self) -> Result<ServerConfig, Vec<String>> {
        let mut cfg = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| vec![format!("{}: {e}", path.display())])?;
                toml::from_str::<ServerConfig>(&text)
                    .map_err(|e| vec![format!("{}: {e}", path.display())])?
            }
            None => ServerConfig::default(),
        };
        macro_rules! over {
            ($($f:ident),*) => { $( if let Some(v) = &self.$f { cfg.$f = v.clone().into(); } )* };
        }
        over!(
            bind,
            port,
            memcache_port,
            maxmemory,
            maxmemory_policy,
            threads,
            metrics_port,
            maxclients,
            timeout,
            max_item_size,
            proto_max_bulk_len,
            client_query_buffer_limit,
            loglevel,
            replicaof,
            repl_backlog_size,
            replica_serve_stale_data,
            min_replicas_to_write,
            min_replicas_max_lag,
            repl_timeout,
            dir
        );
        if let Some(p) = &self.requirepass {
            cfg.requirepass = Some(p.clone());
        }
        if let Some(p) = &self.masterauth {
            cfg.masterauth = Some(p.clone());
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("1kb").unwrap(), 1024);
        assert_eq!(parse_size("1k").unwrap(), 1000);
        assert_eq!(parse_size("100mb").unwrap(), 100 << 20);
        assert_eq!(parse_size("1GB").unwrap(), 1 << 30);
        assert!(parse_size("1xb").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn toml_rejects_unknown_keys_and_reads_sizes() {
        let c: ServerConfig = toml::from_str("port = 7000\nmaxmemory = \"100mb\"\n").unwrap();
        assert_eq!((c.port, c.maxmemory), (7000, 100 << 20));
        assert!(toml::from_str::<ServerConfig>("prot = 1").is_err());
    }

    #[test]
    fn validate_reports_all_problems() {
        let c = ServerConfig {
            maxmemory_policy: "lru".into(),
            bind: "nope".into(),
            maxclients: 0,
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().len(), 3);
    }

    #[test]
    fn sample_config_parses() {
        let text = include_str!("../../deploy/shoal.toml");
        let c: ServerConfig = toml::from_str(text).unwrap();
        c.validate().unwrap();
    }
}
