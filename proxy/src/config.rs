//! The proxy's pool configuration: twemproxy's (nutcracker 0.5.0) YAML pool file, read
//! unchanged, plus a few Shoal keys.
//!
//! ```yaml
//! alpha:                          # pool name
//!   listen: 127.0.0.1:22121       # host:port, [v6]:port, or /path/to.sock [0666]
//!   hash: fnv1a_64
//!   distribution: ketama
//!   redis: true
//!   backend: shoal                # Shoal extension
//!   read_policy: replica-preferred
//!   servers:
//!    - 127.0.0.1:7001:1 shard0    # host:port:weight [name]
//!    - 127.0.0.1:7002:1 shard1
//!   replicas:                     # Shoal extension: server name (or host:port) -> replicas
//!     shard0: [127.0.0.1:7101, 127.0.0.1:7201]
//!     shard1:
//!       - 127.0.0.1:7102
//! ```
//!
//! [`ProxyConfig::parse`] reports **every** problem at once, each with the line of the node
//! at fault ([`ConfigError`]); things that work but are probably not what was meant are
//! [`ProxyConfig::warnings`].
//!
//! # twemproxy keys (nutcracker 0.5.0's command table; defaults as in its `nc_conf.h`)
//!
//! | key | type | default | notes |
//! |---|---|---|---|
//! | `listen` | address | required | `host:port` (IPv4, hostname, `[v6]` or bare v6 like twemproxy), or an absolute unix socket path with optional octal permissions `"/tmp/s 0666"` |
//! | `hash` | name | `fnv1a_64` | one_at_a_time md5 crc16 crc32 crc32a fnv1_64 fnv1a_64 fnv1_32 fnv1a_32 hsieh murmur jenkins |
//! | `hash_tag` | 2 bytes | none | e.g. `"{}"` |
//! | `distribution` | name | `ketama` | ketama modula random |
//! | `timeout` | ms | none (wait forever) | `0` also means no timeout, as in twemproxy (it ignores timeouts `<= 0`) |
//! | `backlog` | number | 512 | |
//! | `client_connections` | number | 0 = unlimited | |
//! | `tcpkeepalive` | bool | false | stored in [`PoolConfig::tcpkeepalive`] |
//! | `redis` | bool | false | the protocol the pool speaks (false = memcached) |
//! | `redis_auth` | string | none | error on a memcached pool (twemproxy: "only valid for a redis pool") |
//! | `redis_db` | number | 0 | on a memcached pool twemproxy ignores it silently; we warn |
//! | `preconnect` | bool | false | |
//! | `auto_eject_hosts` | bool | false | |
//! | `server_connections` | number | 1 | 0 is an error (as in twemproxy) |
//! | `server_retry_timeout` | ms | 30000 | |
//! | `server_failure_limit` | number | 2 | |
//! | `servers` | list | required, non-empty | `host:port:weight [name]` or `/path/sock:weight [name]` |
//!
//! Booleans are exactly `true` or `false` and numbers are plain decimal digits, as in
//! twemproxy (`True`, `yes`, `+5`, `0x10` are errors there too). Numbers are at most
//! 2147483647, twemproxy's `int`. twemproxy 0.5.0 has no `reuseport` key (it reports it
//! as unknown, and so do we). twemproxy resolves `listen` host names while reading the
//! file; we do not (a bad host name fails when the proxy binds).
//!
//! # Shoal keys (twemproxy has none of these)
//!
//! | key | values | default |
//! |---|---|---|
//! | `backend` | `shoal`, `redis`, `memcached` | `redis` when `redis: true`, else `memcached` |
//! | `read_policy` | `primary`, `replica-preferred`, `any`, `read-your-writes` | `primary` |
//! | `failover` | bool | true when `backend: shoal`, else false |
//! | `failover_timeout` | ms a primary must be down before a replica is promoted | 3000 |
//! | `health_interval` | ms between health probes | 1000 |
//! | `replicas` | mapping: server name (or `host:port` of an unnamed server) → list of `host:port` | none |
//!
//! `backend: shoal` speaks the pool's protocol (`redis:`) to Shoal servers, which speak
//! both. `backend: redis` implies `redis: true` when `redis` is not given and contradicts
//! `redis: false`; `backend: memcached` contradicts `redis: true`.
//!
//! # Validation rules beyond the per-key ones
//!
//! Errors: unknown keys (with the closest known key), duplicate keys in any mapping
//! (duplicate pool names included), pools sharing a listen address (same address, or the
//! same port on a wildcard host), a missing `listen`/`servers`, an empty server list,
//! duplicate server names within a pool (an unnamed server's name is its `host:port`, or
//! `host` for port 11211, as twemproxy names it), replicas naming no server of the pool, a
//! replica address that is also a server or another replica of the pool, replicas,
//! `failover: true` or a `read_policy` other than `primary` on a memcached backend
//! (memcached has no replication), `read-your-writes` on anything but `backend: shoal`,
//! `health_interval: 0`, an empty `redis_auth` (twemproxy refuses it too), more than one
//! YAML document, YAML aliases, nesting deeper than 16 levels. A YAML syntax error is
//! reported alone (the parser cannot go on after it).
//!
//! Beyond twemproxy's YAML subset we also accept flow style (`[a, b]`, `{k: v}`), a
//! leading `---` and quoted keys. A file twemproxy accepts is accepted here, except for
//! nonsense twemproxy lets through: a unix socket permission that is not octal
//! (`/tmp/s 999`, which twemproxy turns into 0), numbers above 2147483647 (twemproxy's
//! `int`: it rejects most of them but lets some wrap around), and hosts that are neither an
//! IP address nor a host name. Values are text as in twemproxy: `~` and `null` are not
//! YAML nulls (`redis_auth: null` is the password "null"); only an empty value is.
//!
//! Warnings (the pool works, but probably not as meant): two named servers on one address
//! (an error for `backend: shoal`, where two shards must be two servers), a
//! `read_policy` other than `primary` or an explicit `failover: true` in a pool without
//! replicas (reads/failover simply stay on the primaries), `redis_db` on a memcached pool,
//! `failover_timeout` shorter than `health_interval`.
//!
//! Mixing named and unnamed servers in one pool is allowed, as in twemproxy 0.5.0.

mod addr;
mod build;
mod yaml;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

use shoal_client::ring::{Distribution, HashKind, RingNode};

/// Default `listen` backlog (twemproxy `CONF_DEFAULT_LISTEN_BACKLOG`).
pub const DEFAULT_BACKLOG: u32 = 512;
/// Default `server_connections` (twemproxy).
pub const DEFAULT_SERVER_CONNECTIONS: u32 = 1;
/// Default `server_retry_timeout` in ms (twemproxy).
pub const DEFAULT_SERVER_RETRY_TIMEOUT_MS: u64 = 30_000;
/// Default `server_failure_limit` (twemproxy).
pub const DEFAULT_SERVER_FAILURE_LIMIT: u32 = 2;
/// Default `failover_timeout` in ms (Shoal).
pub const DEFAULT_FAILOVER_TIMEOUT_MS: u64 = 3_000;
/// Default `health_interval` in ms (Shoal).
pub const DEFAULT_HEALTH_INTERVAL_MS: u64 = 1_000;
/// Largest number any key takes: twemproxy's `int`.
pub const MAX_NUMBER: u64 = i32::MAX as u64;

/// The whole file: its pools in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    pub pools: Vec<PoolConfig>,
    /// Things that work but are probably not what was meant (see the module docs); the
    /// caller should log them.
    pub warnings: Vec<Problem>,
}

/// Where a pool accepts clients.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Listen {
    /// Host (IPv4, IPv6 without brackets, or a host name) and port.
    Tcp(String, u16),
    /// Unix socket path and optional permissions (`0o666`).
    Unix(PathBuf, Option<u32>),
}

/// One pool (one top-level key of the file).
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub name: String,
    pub listen: Listen,
    pub hash: HashKind,
    pub hash_tag: Option<[u8; 2]>,
    pub distribution: Distribution,
    /// `timeout` in ms; `None` = wait forever (unset or 0).
    pub timeout_ms: Option<u64>,
    pub backlog: u32,
    /// 0 = unlimited.
    pub client_connections: u32,
    /// twemproxy 0.5.0 `tcpkeepalive`: TCP keepalive on server connections.
    pub tcpkeepalive: bool,
    /// The pool speaks Redis (RESP) to clients; false = memcached.
    pub redis: bool,
    pub redis_auth: Option<String>,
    pub redis_db: u32,
    pub preconnect: bool,
    pub auto_eject_hosts: bool,
    pub server_connections: u32,
    pub server_retry_timeout_ms: u64,
    pub server_failure_limit: u32,
    pub servers: Vec<ServerConfig>,
    // ---- Shoal extensions ----
    pub backend: BackendKind,
    pub read_policy: ReadPolicy,
    pub failover: bool,
    pub failover_timeout_ms: u64,
    pub health_interval_ms: u64,
    /// Line of the pool's name.
    pub line: usize,
}

/// One `servers:` entry (a shard's primary) and its replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Host name or IP (IPv6 without brackets); for a unix-socket server (`/path:weight`)
    /// the socket path, with `port` 0.
    pub host: String,
    pub port: u16,
    pub weight: u32,
    /// The optional name after the address (used for ketama points instead of host:port).
    pub name: Option<String>,
    /// Replica addresses from the pool's `replicas:` key.
    pub replicas: Vec<(String, u16)>,
    pub line: usize,
}

impl ServerConfig {
    /// A unix-socket server (`/path/sock:weight`)?
    pub fn is_unix(&self) -> bool {
        self.host.starts_with('/')
    }

    /// The ring's view of this server. An IPv6 host is passed without brackets whichever
    /// way it was written, so `[::1]:6379:1` and `::1:6379:1` (the only form twemproxy can
    /// connect to) get the same ketama name, `::1:6379`.
    pub fn ring_node(&self) -> RingNode {
        RingNode {
            host: self.host.clone(),
            port: self.port,
            weight: self.weight,
            name: self.name.clone(),
        }
    }

    /// The name twemproxy gives this server (what ketama hashes, and what must be unique
    /// within a pool): its `name`, else `host:port`, else `host` alone on port 11211.
    pub fn effective_name(&self) -> String {
        self.ring_node().ketama_name().into_owned()
    }
}

/// Which servers a pool's `servers:` are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// Shoal servers: replication, promotion, resharding.
    Shoal,
    Redis,
    Memcached,
}

impl BackendKind {
    pub const ALL: [BackendKind; 3] = [
        BackendKind::Shoal,
        BackendKind::Redis,
        BackendKind::Memcached,
    ];

    /// The config file's spelling.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Shoal => "shoal",
            BackendKind::Redis => "redis",
            BackendKind::Memcached => "memcached",
        }
    }

    pub fn from_name(name: &str) -> Option<BackendKind> {
        Self::ALL.into_iter().find(|b| b.name() == name)
    }
}

/// Where a pool's reads go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadPolicy {
    Primary,
    ReplicaPreferred,
    Any,
    /// A replica serves a client only once it has caught up to that client's last write.
    ReadYourWrites,
}

impl ReadPolicy {
    pub const ALL: [ReadPolicy; 4] = [
        ReadPolicy::Primary,
        ReadPolicy::ReplicaPreferred,
        ReadPolicy::Any,
        ReadPolicy::ReadYourWrites,
    ];

    /// The config file's spelling.
    pub fn name(self) -> &'static str {
        match self {
            ReadPolicy::Primary => "primary",
            ReadPolicy::ReplicaPreferred => "replica-preferred",
            ReadPolicy::Any => "any",
            ReadPolicy::ReadYourWrites => "read-your-writes",
        }
    }

    pub fn from_name(name: &str) -> Option<ReadPolicy> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for ReadPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Listen {
    /// As written in the file: `host:port`, `[v6]:port`, `/path` or `/path 0666`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Tcp(host, port) => f.write_str(&addr::host_port(host, *port)),
            Listen::Unix(path, None) => write!(f, "{}", path.display()),
            Listen::Unix(path, Some(perm)) => write!(f, "{} {:04o}", path.display(), perm),
        }
    }
}

impl fmt::Display for ServerConfig {
    /// twemproxy's server line: `host:port:weight [name]` or `/path:weight [name]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_unix() {
            write!(f, "{}:{}", self.host, self.weight)?;
        } else {
            write!(
                f,
                "{}:{}",
                addr::host_port(&self.host, self.port),
                self.weight
            )?;
        }
        if let Some(name) = &self.name {
            write!(f, " {name}")?;
        }
        Ok(())
    }
}

/// One problem: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line; 0 when the problem is not about a line (the file could not be read).
    pub line: usize,
    pub message: String,
}

impl Problem {
    /// `file:line: message` (or `file: message` for line 0).
    pub fn display_in<'a>(&'a self, file: &'a str) -> impl fmt::Display + 'a {
        struct D<'a>(&'a Problem, &'a str);
        impl fmt::Display for D<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                if self.0.line == 0 {
                    write!(f, "{}: {}", self.1, self.0.message)
                } else {
                    write!(f, "{}:{}: {}", self.1, self.0.line, self.0.message)
                }
            }
        }
        D(self, file)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Everything wrong with a file, sorted by line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name given to [`ProxyConfig::parse`] / [`ProxyConfig::load`].
    pub file: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    /// One problem per line: `pools.yml:12: alpha: servers[1]: weight must be ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}", p.display_in(&self.file))?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ProxyConfig {
    /// Parses and validates a pool file. `file_name` is only used in messages.
    pub fn parse(text: &str, file_name: &str) -> Result<ProxyConfig, ConfigError> {
        let error = |mut problems: Vec<Problem>| {
            problems.sort_by_key(|p| p.line);
            ConfigError {
                file: file_name.to_string(),
                problems,
            }
        };
        let parsed = yaml::parse(text).map_err(|p| error(vec![p]))?;
        let mut problems = parsed.problems;
        let mut warnings = Vec::new();
        let pools = build::build(parsed.root.as_ref(), &mut problems, &mut warnings);
        if problems.is_empty() {
            warnings.sort_by_key(|p| p.line);
            Ok(ProxyConfig { pools, warnings })
        } else {
            Err(error(problems))
        }
    }

    /// Reads and parses a pool file. An unreadable file is a problem at line 0; a file that
    /// is not UTF-8 is a problem at the line of the first bad byte.
    pub fn load(path: &Path) -> Result<ProxyConfig, ConfigError> {
        let file = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| ConfigError {
            file: file.clone(),
            problems: vec![Problem {
                line: 0,
                message: format!("cannot read the file: {e}"),
            }],
        })?;
        match std::str::from_utf8(&bytes) {
            Ok(text) => Self::parse(text, &file),
            Err(e) => {
                let good = &bytes[..e.valid_up_to()];
                let line = 1 + good.iter().filter(|&&b| b == b'\n').count();
                Err(ConfigError {
                    file,
                    problems: vec![Problem {
                        line,
                        message: format!(
                            "the file is not UTF-8 text (bad byte at offset {})",
                            e.valid_up_to()
                        ),
                    }],
                })
            }
        }
    }

    /// The pool named `name`.
    pub fn pool(&self, name: &str) -> Option<&PoolConfig> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// The configuration as a pool file, every key written out (defaults included), that
    /// parses back to an equal configuration (warnings aside). Comments are not kept.
    pub fn to_yaml(&self) -> String {
        build::to_yaml(self)
    }
}

/// Shortens a value for a message.
fn clip(s: &str) -> String {
    const MAX: usize = 60;
    let mut out = String::new();
    for c in s.chars().take(MAX) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if s.chars().count() > MAX {
        out.push_str("...");
    }
    out
}

/// A commented sample pool file (for `deploy/`); it parses without problems or warnings.
pub fn example() -> &'static str {
    EXAMPLE
}

const EXAMPLE: &str = r#"# shoal-proxy pools. The format is twemproxy's (nutcracker 0.5.0) pool file: a
# twemproxy nutcracker.yml works here unchanged. Keys marked "Shoal" are extensions
# that twemproxy does not know.
#
# One top-level key per pool; each pool listens on its own address and shards keys
# over its servers with a consistent-hash ring placed exactly as twemproxy places them.

# A Redis-protocol pool of Shoal shards, each with replicas.
cache:
  listen: 127.0.0.1:22121         # host:port, [::1]:port, or /path/to.sock [0666]
  hash: fnv1a_64                  # key hash (twemproxy names; default fnv1a_64)
  hash_tag: "{}"                  # hash only the part of the key inside {...}
  distribution: ketama            # ketama (default) | modula | random
  timeout: 400                    # ms to wait for a server; omit (or 0) to wait forever
  backlog: 1024                   # listen backlog (default 512)
  client_connections: 0           # 0 = unlimited
  redis: true                     # clients speak Redis (false/absent: memcached)
  redis_db: 0                     # database selected on server connections
  preconnect: true                # connect to every server at start-up
  auto_eject_hosts: false         # take failing servers off the ring (twemproxy style)
  server_connections: 2           # connections per server (pipelined)
  server_retry_timeout: 30000     # ms before retrying an ejected server
  server_failure_limit: 2         # consecutive failures before ejecting
  backend: shoal                  # Shoal: shoal | redis | memcached
  read_policy: replica-preferred  # Shoal: primary | replica-preferred | any | read-your-writes
  failover: true                  # Shoal: promote a replica when a primary is down
  failover_timeout: 3000          # Shoal: ms a primary must be down before promotion
  health_interval: 1000           # Shoal: ms between health probes
  servers:                        # host:port:weight [name]; the name (not the address)
   - 127.0.0.1:7001:1 shard0      # places keys on the ring, so a shard can move to
   - 127.0.0.1:7002:1 shard1      # another address without moving keys
   - 127.0.0.1:7003:1 shard2
  replicas:                       # Shoal: server name (or host:port) -> replicas
    shard0: [127.0.0.1:7101, 127.0.0.1:7201]
    shard1: [127.0.0.1:7102]
    shard2:
      - 127.0.0.1:7103

# A memcached-protocol pool in front of plain memcached servers, as twemproxy would run it.
sessions:
  listen: 127.0.0.1:22122
  hash: md5
  distribution: ketama
  timeout: 200
  auto_eject_hosts: true
  server_retry_timeout: 2000
  server_failure_limit: 3
  servers:
   - 127.0.0.1:11211:1
   - 127.0.0.1:11212:1
"#;
