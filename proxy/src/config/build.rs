//! From the YAML tree to [`ProxyConfig`], collecting every problem on the way.

use super::addr::{self, host_port};
use super::yaml::{Kind, Node};
use super::{
    clip, BackendKind, Distribution, HashKind, Listen, PoolConfig, Problem, ProxyConfig,
    ReadPolicy, ServerConfig, DEFAULT_BACKLOG, DEFAULT_FAILOVER_TIMEOUT_MS,
    DEFAULT_HEALTH_INTERVAL_MS, DEFAULT_SERVER_CONNECTIONS, DEFAULT_SERVER_FAILURE_LIMIT,
    DEFAULT_SERVER_RETRY_TIMEOUT_MS, MAX_NUMBER,
};
use std::collections::HashMap;
use std::fmt::Write as _;

/// nutcracker 0.5.0's pool keys (its `conf_commands` table plus `tcpkeepalive`).
pub(super) const TWEMPROXY_KEYS: [&str; 17] = [
    "listen",
    "hash",
    "hash_tag",
    "distribution",
    "timeout",
    "backlog",
    "client_connections",
    "tcpkeepalive",
    "redis",
    "redis_auth",
    "redis_db",
    "preconnect",
    "auto_eject_hosts",
    "server_connections",
    "server_retry_timeout",
    "server_failure_limit",
    "servers",
];

/// Shoal's extension keys.
pub(super) const SHOAL_KEYS: [&str; 6] = [
    "backend",
    "read_policy",
    "failover",
    "failover_timeout",
    "health_interval",
    "replicas",
];

fn known_key(key: &str) -> Option<&'static str> {
    TWEMPROXY_KEYS
        .iter()
        .chain(SHOAL_KEYS.iter())
        .copied()
        .find(|k| *k == key)
}

/// Levenshtein distance (small inputs only).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// The candidate closest to `word`, when it is close enough to be a likely typo.
pub(super) fn closest<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    if word.len() > 100 {
        return None;
    }
    // Case, `-` and `_` differences count for nothing: `FNV1A_64`, `fnv1a64`, `read-policy`.
    let norm = |s: &str| s.to_ascii_lowercase().replace(['-', '_'], "");
    let word_norm = norm(word);
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = if norm(c) == word_norm {
            0
        } else {
            distance(word, c)
        };
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    let (d, c) = best?;
    let len = word.chars().count().max(c.chars().count());
    (d <= (len / 3).max(1)).then_some(c)
}

fn did_you_mean(word: &str, candidates: &[&str]) -> String {
    match closest(word, candidates.iter().copied()) {
        Some(c) => format!("; did you mean `{c}`?"),
        None => String::new(),
    }
}

/// Checks a mapping's keys: each must be a non-empty scalar, none repeated. Returns the
/// good entries in order. `what` names the keys in messages ("key", "pool name", ...).
fn entries<'n>(
    pairs: &'n [(Node, Node)],
    prefix: &str,
    what: &str,
    errs: &mut Vec<Problem>,
) -> Vec<(&'n str, &'n Node, &'n Node)> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::new();
    for (k, v) in pairs {
        let name = match &k.kind {
            Kind::Invalid => continue,
            Kind::Scalar { text, .. } if !text.is_empty() => text.as_str(),
            _ => {
                errs.push(Problem {
                    line: k.line,
                    message: format!(
                        "{prefix}a {what} must be a plain word, got {}",
                        k.describe()
                    ),
                });
                continue;
            }
        };
        if let Some(first) = seen.get(name) {
            errs.push(Problem {
                line: k.line,
                message: format!(
                    "{prefix}duplicate {what} `{}` (first at line {first})",
                    clip(name)
                ),
            });
            continue;
        }
        seen.insert(name, k.line);
        out.push((name, k, v));
    }
    out
}

pub(super) fn build(
    root: Option<&Node>,
    errs: &mut Vec<Problem>,
    warns: &mut Vec<Problem>,
) -> Vec<PoolConfig> {
    let no_pools = "no pools: the file must have at least one pool (`name:` followed by indented \
                    `listen:` and `servers:`)";
    let Some(root) = root else {
        errs.push(Problem {
            line: 1,
            message: no_pools.to_string(),
        });
        return Vec::new();
    };
    let pairs = match &root.kind {
        Kind::Map(pairs) => pairs,
        Kind::Invalid => return Vec::new(),
        _ => {
            errs.push(Problem {
                line: root.line,
                message: format!(
                    "the top level must be pools (`name:` followed by indented settings), got {}",
                    root.describe()
                ),
            });
            return Vec::new();
        }
    };
    if pairs.is_empty() {
        errs.push(Problem {
            line: root.line,
            message: no_pools.to_string(),
        });
    }
    let mut pools = Vec::new();
    let mut listens: Vec<(String, Listen, usize)> = Vec::new();
    for (name, key, body) in entries(pairs, "", "pool name", errs) {
        let mut b = PoolBuilder { name, errs, warns };
        if let Some((pool, listen_line)) = b.pool(key.line, body) {
            listens.push((pool.name.clone(), pool.listen.clone(), listen_line));
            pools.push(pool);
        } else if let Some(l) = b.listen_only(body) {
            listens.push((name.to_string(), l.0, l.1));
        }
    }
    // Pools must not share a listen address (twemproxy compares the strings; we compare
    // the parsed addresses and also catch a wildcard host overlapping a specific one).
    for (i, (name, listen, line)) in listens.iter().enumerate() {
        if let Some((other, ol, oline)) = listens[..i]
            .iter()
            .find(|(_, l, _)| listen_conflict(l, listen))
        {
            let how = if ol == listen { "is also" } else { "overlaps" };
            errs.push(Problem {
                line: *line,
                message: format!("{name}: listen address `{listen}` {how} pool `{other}`'s (`{ol}`, line {oline})"),
            });
        }
    }
    pools
}

fn is_wildcard(host: &str) -> bool {
    host == "0.0.0.0"
        || host == "::"
        || host
            .parse::<std::net::Ipv6Addr>()
            .is_ok_and(|a| a.is_unspecified())
}

fn listen_conflict(a: &Listen, b: &Listen) -> bool {
    match (a, b) {
        (Listen::Unix(pa, _), Listen::Unix(pb, _)) => pa == pb,
        (Listen::Tcp(ha, pa), Listen::Tcp(hb, pb)) => {
            pa == pb && (ha.eq_ignore_ascii_case(hb) || is_wildcard(ha) || is_wildcard(hb))
        }
        _ => false,
    }
}

struct PoolBuilder<'a> {
    name: &'a str,
    errs: &'a mut Vec<Problem>,
    warns: &'a mut Vec<Problem>,
}

/// A pool's keys as found: key name -> (key node, value node).
type Raw<'n> = HashMap<&'static str, (&'n Node, &'n Node)>;

impl PoolBuilder<'_> {
    fn err(&mut self, line: usize, message: impl std::fmt::Display) {
        self.errs.push(Problem {
            line,
            message: format!("{}: {message}", self.name),
        });
    }

    fn warn(&mut self, line: usize, message: impl std::fmt::Display) {
        self.warns.push(Problem {
            line,
            message: format!("{}: {message}", self.name),
        });
    }

    /// The value of `key` as text; problems for a missing value or a list/mapping.
    /// `expected` says what it should be ("true or false", "a number of ms", ...).
    fn scalar<'n>(&mut self, key: &str, v: &'n Node, expected: &str) -> Option<&'n str> {
        match &v.kind {
            Kind::Invalid => None,
            Kind::Scalar { text, .. } if !v.is_null() => Some(text),
            _ => {
                self.err(
                    v.line,
                    format!("`{key}` must be {expected}, got {}", v.describe()),
                );
                None
            }
        }
    }

    /// A scalar naming one of `all` (hash, distribution, backend, read policy); an
    /// unknown name is reported with the closest valid one and the full list.
    fn named<T: Copy>(
        &mut self,
        key: &str,
        v: &Node,
        expected: &str,
        all: &[T],
        name: fn(T) -> &'static str,
        parse: fn(&str) -> Option<T>,
    ) -> Option<T> {
        let text = self.scalar(key, v, expected)?;
        let found = parse(text);
        if found.is_none() {
            let names: Vec<&str> = all.iter().map(|&x| name(x)).collect();
            let hint = did_you_mean(text, &names);
            self.err(
                v.line,
                format!(
                    "unknown {key} `{}`{hint} (valid: {})",
                    clip(text),
                    names.join(", ")
                ),
            );
        }
        found
    }

    fn number(&mut self, key: &str, v: &Node, unit: &str, min: u64) -> Option<u64> {
        let expected = format!("a whole number{unit}");
        let text = self.scalar(key, v, &expected)?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(text) {
            let msg = if text.strip_prefix('-').is_some_and(digits) {
                format!("`{key}` must not be negative, got `{}`", clip(text))
            } else {
                format!("`{key}` must be {expected}, got `{}`", clip(text))
            };
            self.err(v.line, msg);
            return None;
        }
        match text.parse::<u64>() {
            Ok(n) if n > MAX_NUMBER => {
                self.err(
                    v.line,
                    format!(
                        "`{key}` is too large: at most {MAX_NUMBER}, got `{}`",
                        clip(text)
                    ),
                );
                None
            }
            Ok(n) if n < min => {
                self.err(
                    v.line,
                    format!("`{key}` must be at least {min}, got `{text}`"),
                );
                None
            }
            Ok(n) => Some(n),
            Err(_) => {
                self.err(
                    v.line,
                    format!(
                        "`{key}` is too large: at most {MAX_NUMBER}, got `{}`",
                        clip(text)
                    ),
                );
                None
            }
        }
    }

    fn u32_key(&mut self, raw: &Raw<'_>, key: &'static str, default: u32, min: u64) -> u32 {
        raw.get(key)
            .and_then(|(_, v)| self.number(key, v, "", min))
            .map_or(default, |n| n as u32)
    }

    fn ms_key(&mut self, raw: &Raw<'_>, key: &'static str, default: u64, min: u64) -> u64 {
        raw.get(key)
            .and_then(|(_, v)| self.number(key, v, " of milliseconds", min))
            .unwrap_or(default)
    }

    fn boolean(&mut self, raw: &Raw<'_>, key: &'static str) -> Option<bool> {
        let (_, v) = raw.get(key)?;
        match self.scalar(key, v, "`true` or `false`")? {
            "true" => Some(true),
            "false" => Some(false),
            other => {
                self.err(
                    v.line,
                    format!("`{key}` must be `true` or `false`, got `{}`", clip(other)),
                );
                None
            }
        }
    }

    /// Just the listen address of a pool that failed (for the cross-pool duplicate check).
    fn listen_only(&mut self, body: &Node) -> Option<(Listen, usize)> {
        let Kind::Map(pairs) = &body.kind else {
            return None;
        };
        let (_, v) = pairs.iter().find(|(k, _)| k.as_str() == Some("listen"))?;
        addr::parse_listen(v.as_str()?).ok().map(|l| (l, v.line))
    }

    /// Builds one pool; `None` when it has errors (they are reported). Also returns the
    /// line of its `listen:` value.
    fn pool(&mut self, name_line: usize, body: &Node) -> Option<(PoolConfig, usize)> {
        let errors_before = self.errs.len();
        let pairs = match &body.kind {
            Kind::Map(pairs) => pairs,
            Kind::Invalid => return None,
            _ => {
                let hint = if known_key(self.name).is_some() {
                    format!(
                        " (`{}` is a pool setting: is it indented under its pool?)",
                        self.name
                    )
                } else {
                    String::new()
                };
                self.err(
                    name_line,
                    format!(
                        "a pool must be a mapping of settings (`listen:`, `servers:`, ...), got {}{hint}",
                        body.describe()
                    ),
                );
                return None;
            }
        };
        let prefix = format!("{}: ", self.name);
        let mut raw: Raw<'_> = HashMap::new();
        let all_keys: Vec<&str> = TWEMPROXY_KEYS
            .iter()
            .chain(SHOAL_KEYS.iter())
            .copied()
            .collect();
        for (key, k, v) in entries(pairs, &prefix, "key", self.errs) {
            match known_key(key) {
                Some(known) => {
                    raw.insert(known, (k, v));
                }
                None => {
                    let msg = match closest(key, all_keys.iter().copied()) {
                        Some(c) => format!("unknown key `{}`; did you mean `{c}`?", clip(key)),
                        None => format!(
                            "unknown key `{}` (known keys: {})",
                            clip(key),
                            all_keys.join(", ")
                        ),
                    };
                    self.err(k.line, msg);
                }
            }
        }

        // listen (required)
        let mut listen_line = name_line;
        let listen = match raw.get("listen") {
            None => {
                self.err(
                    name_line,
                    "`listen:` is missing (e.g. `listen: 127.0.0.1:22121`)",
                );
                None
            }
            Some((_, v)) => {
                listen_line = v.line;
                self.scalar("listen", v, "host:port or a unix socket path")
                    .and_then(|text| {
                        addr::parse_listen(text)
                            .map_err(|e| self.err(v.line, format!("listen: {e}")))
                            .ok()
                    })
            }
        };

        let hash = match raw.get("hash") {
            None => Some(default_hash()),
            Some((_, v)) => self.named(
                "hash",
                v,
                "a hash name",
                &HashKind::ALL,
                HashKind::name,
                HashKind::from_name,
            ),
        };

        let hash_tag = match raw.get("hash_tag") {
            None => None,
            Some((_, v)) => match &v.kind {
                Kind::Map(_) | Kind::Seq(_) => {
                    self.err(
                        v.line,
                        "`hash_tag` must be two characters in quotes, like `hash_tag: \"{}\"` (unquoted, `{}` is an empty YAML mapping)",
                    );
                    None
                }
                _ => self.scalar("hash_tag", v, "two characters like \"{}\"").and_then(|text| {
                    match <[u8; 2]>::try_from(text.as_bytes()) {
                        Ok(tag) => Some(tag),
                        Err(_) => {
                            self.err(
                                v.line,
                                format!("`hash_tag` must be exactly two characters, like \"{{}}\", got `{}`", clip(text)),
                            );
                            None
                        }
                    }
                }),
            },
        };

        let distribution = match raw.get("distribution") {
            None => Some(default_distribution()),
            Some((_, v)) => self.named(
                "distribution",
                v,
                "a distribution name",
                &Distribution::ALL,
                Distribution::name,
                Distribution::from_name,
            ),
        };

        // twemproxy ignores a timeout <= 0: 0 means "wait forever" like an absent key.
        let timeout_ms = raw
            .get("timeout")
            .and_then(|(_, v)| self.number("timeout", v, " of milliseconds", 0))
            .filter(|&t| t > 0);
        let backlog = self.u32_key(&raw, "backlog", DEFAULT_BACKLOG, 0);
        let client_connections = self.u32_key(&raw, "client_connections", 0, 0);
        let tcpkeepalive = self.boolean(&raw, "tcpkeepalive").unwrap_or(false);
        let redis_given = self.boolean(&raw, "redis");
        let preconnect = self.boolean(&raw, "preconnect").unwrap_or(false);
        let auto_eject_hosts = self.boolean(&raw, "auto_eject_hosts").unwrap_or(false);
        let server_connections = match raw.get("server_connections") {
            Some((_, v)) if v.as_str() == Some("0") => {
                self.err(
                    v.line,
                    "`server_connections` cannot be 0 (twemproxy refuses it too)",
                );
                DEFAULT_SERVER_CONNECTIONS
            }
            _ => self.u32_key(&raw, "server_connections", DEFAULT_SERVER_CONNECTIONS, 1),
        };
        let server_retry_timeout_ms = self.ms_key(
            &raw,
            "server_retry_timeout",
            DEFAULT_SERVER_RETRY_TIMEOUT_MS,
            0,
        );
        let server_failure_limit = self.u32_key(
            &raw,
            "server_failure_limit",
            DEFAULT_SERVER_FAILURE_LIMIT,
            0,
        );

        // backend and the pool's protocol
        let backend_given = raw.get("backend").and_then(|(_, v)| {
            self.named(
                "backend",
                v,
                "shoal, redis or memcached",
                &BackendKind::ALL,
                BackendKind::name,
                BackendKind::from_name,
            )
            .map(|b| (b, v.line))
        });
        let redis = redis_given.unwrap_or(matches!(backend_given, Some((BackendKind::Redis, _))));
        let redis_line = raw.get("redis").map_or(0, |(_, v)| v.line);
        match (backend_given, redis_given) {
            (Some((BackendKind::Memcached, line)), Some(true)) => self.err(
                line,
                format!("`backend: memcached` contradicts `redis: true` (line {redis_line}): memcached servers cannot serve a Redis pool"),
            ),
            (Some((BackendKind::Redis, line)), Some(false)) => self.err(
                line,
                format!("`backend: redis` contradicts `redis: false` (line {redis_line}): drop `redis: false`, or use `backend: memcached` or `shoal`"),
            ),
            _ => {}
        }
        let backend = backend_given.map_or(
            if redis {
                BackendKind::Redis
            } else {
                BackendKind::Memcached
            },
            |b| b.0,
        );

        let redis_auth = raw.get("redis_auth").and_then(|(k, v)| {
            let text = self.scalar("redis_auth", v, "a password")?;
            if text.is_empty() {
                self.err(
                    v.line,
                    "`redis_auth` is empty (twemproxy refuses it too); remove the key for no password",
                );
                return None;
            }
            if !redis {
                // twemproxy: `directive "redis_auth:" is only valid for a redis pool`.
                self.err(
                    k.line,
                    "`redis_auth` is only valid for a redis pool (`redis: true`)",
                );
            }
            Some(text.to_string())
        });
        let redis_db = self.u32_key(&raw, "redis_db", 0, 0);
        if let (false, Some((k, _))) = (redis, raw.get("redis_db")) {
            self.warn(
                k.line,
                "`redis_db` is ignored: this is a memcached pool (no `redis: true`)",
            );
        }

        let read_policy_given = raw.get("read_policy").and_then(|(_, v)| {
            self.named(
                "read_policy",
                v,
                "a read policy",
                &ReadPolicy::ALL,
                ReadPolicy::name,
                ReadPolicy::from_name,
            )
            .map(|p| (p, v.line))
        });
        let read_policy = read_policy_given.map_or(ReadPolicy::Primary, |p| p.0);
        let failover_given = self.boolean(&raw, "failover");
        let failover = failover_given.unwrap_or(backend == BackendKind::Shoal);
        let failover_timeout_ms =
            self.ms_key(&raw, "failover_timeout", DEFAULT_FAILOVER_TIMEOUT_MS, 0);
        let health_interval_ms = match raw.get("health_interval") {
            Some((_, v)) if v.as_str() == Some("0") => {
                self.err(
                    v.line,
                    "`health_interval` must be at least 1 ms (0 would probe without pause)",
                );
                DEFAULT_HEALTH_INTERVAL_MS
            }
            _ => self.ms_key(&raw, "health_interval", DEFAULT_HEALTH_INTERVAL_MS, 1),
        };

        let mut parsed = self.servers(name_line, raw.get("servers").copied(), backend);
        if let Some((k, v)) = raw.get("replicas") {
            if backend == BackendKind::Memcached {
                self.err(
                    k.line,
                    "`replicas` on a memcached backend: memcached has no replication (use `backend: shoal` or `redis`)",
                );
            } else if let Some((servers, complete)) = parsed.as_mut() {
                self.replicas(v, servers, *complete);
            }
        }
        let servers = parsed.and_then(|(servers, complete)| complete.then_some(servers));

        // Shoal rules that need several keys.
        let any_replicas = servers
            .as_ref()
            .is_some_and(|s| s.iter().any(|s| !s.replicas.is_empty()));
        if let Some((policy, line)) = read_policy_given {
            if policy == ReadPolicy::ReadYourWrites && backend != BackendKind::Shoal {
                self.err(
                    line,
                    format!("`read_policy: read-your-writes` needs `backend: shoal` (this pool's backend is {backend})"),
                );
            } else if policy != ReadPolicy::Primary && backend == BackendKind::Memcached {
                self.err(
                    line,
                    format!(
                        "`read_policy: {policy}` on a memcached backend: memcached has no replicas"
                    ),
                );
            } else if policy != ReadPolicy::Primary && servers.is_some() && !any_replicas {
                self.warn(
                    line,
                    format!("`read_policy: {policy}` has no effect: no server of this pool has `replicas`, reads go to the primaries"),
                );
            }
        }
        if let (Some(true), Some((k, _))) = (failover_given, raw.get("failover")) {
            if backend == BackendKind::Memcached {
                self.err(
                    k.line,
                    "`failover: true` on a memcached backend: memcached has no replicas to promote",
                );
            } else if servers.is_some() && !any_replicas {
                self.warn(k.line, "`failover: true` has no effect: no server of this pool has `replicas` to promote");
            }
        }
        if failover && any_replicas && failover_timeout_ms < health_interval_ms {
            let line = raw
                .get("failover_timeout")
                .or(raw.get("health_interval"))
                .map_or(name_line, |(k, _)| k.line);
            self.warn(
                line,
                format!("`failover_timeout` ({failover_timeout_ms} ms) is shorter than `health_interval` ({health_interval_ms} ms): one failed probe promotes a replica"),
            );
        }

        if self.errs.len() > errors_before {
            return None;
        }
        let pool = PoolConfig {
            name: self.name.to_string(),
            listen: listen?,
            hash: hash?,
            hash_tag,
            distribution: distribution?,
            timeout_ms,
            backlog,
            client_connections,
            tcpkeepalive,
            redis,
            redis_auth,
            redis_db,
            preconnect,
            auto_eject_hosts,
            server_connections,
            server_retry_timeout_ms,
            server_failure_limit,
            servers: servers?,
            backend,
            read_policy,
            failover,
            failover_timeout_ms,
            health_interval_ms,
            line: name_line,
        };
        Some((pool, listen_line))
    }

    /// `servers:` (required, non-empty). `None` when there is no usable list at all; else
    /// the servers that parsed, and whether that is all of them (no problems).
    fn servers(
        &mut self,
        name_line: usize,
        entry: Option<(&Node, &Node)>,
        backend: BackendKind,
    ) -> Option<(Vec<ServerConfig>, bool)> {
        let Some((k, v)) = entry else {
            self.err(
                name_line,
                "`servers:` is missing: a pool needs at least one `- host:port:weight [name]`",
            );
            return None;
        };
        let items = match &v.kind {
            Kind::Seq(items) => items,
            Kind::Invalid => return None,
            _ if v.is_null() => {
                self.err(
                    k.line,
                    "`servers` is empty: a pool needs at least one `- host:port:weight [name]`",
                );
                return None;
            }
            _ => {
                self.err(
                    v.line,
                    format!(
                        "`servers` must be a list of `- host:port:weight [name]` lines, got {}",
                        v.describe()
                    ),
                );
                return None;
            }
        };
        if items.is_empty() {
            self.err(
                v.line,
                "`servers` is empty: a pool needs at least one `- host:port:weight [name]`",
            );
            return None;
        }
        let mut ok = true;
        let mut servers = Vec::with_capacity(items.len());
        let mut names: HashMap<String, (usize, usize)> = HashMap::new();
        let mut addrs: HashMap<(String, u16), (usize, usize)> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let text = match &item.kind {
                Kind::Invalid => {
                    ok = false;
                    continue;
                }
                Kind::Scalar { text, .. } if !item.is_null() => text,
                _ => {
                    self.err(
                        item.line,
                        format!(
                            "servers[{i}] must be a line like `host:port:weight [name]`, got {}",
                            item.describe()
                        ),
                    );
                    ok = false;
                    continue;
                }
            };
            let line = match addr::parse_server(text) {
                Ok(l) => l,
                Err(e) => {
                    self.err(item.line, format!("servers[{i}]: {e}"));
                    ok = false;
                    continue;
                }
            };
            let server = ServerConfig {
                host: line.host,
                port: line.port,
                weight: line.weight,
                name: line.name,
                replicas: Vec::new(),
                line: item.line,
            };
            let name = server.effective_name();
            if let Some((j, l)) = names.get(&name) {
                let what = match &server.name {
                    Some(_) => format!("server name `{}`", clip(&name)),
                    None if server.is_unix() => format!("server `{}`", clip(&server.host)),
                    None => format!("server `{}`", host_port(&server.host, server.port)),
                };
                self.err(
                    item.line,
                    format!("servers[{i}]: duplicate {what} (also servers[{j}] at line {l})"),
                );
                ok = false;
            } else {
                names.insert(name, (i, item.line));
                let key = (server.host.to_ascii_lowercase(), server.port);
                if let Some((j, l)) = addrs.get(&key) {
                    let msg = format!(
                        "servers[{i}]: same address as servers[{j}] (line {l}) under another name: two ring nodes on one server"
                    );
                    if backend == BackendKind::Shoal {
                        self.err(
                            item.line,
                            format!(
                                "{msg}; with `backend: shoal` every shard must be its own server"
                            ),
                        );
                        ok = false;
                    } else {
                        self.warn(item.line, msg);
                    }
                } else {
                    addrs.insert(key, (i, item.line));
                }
            }
            servers.push(server);
        }
        Some((servers, ok))
    }

    /// `replicas:` — server name (or host:port of an unnamed server) -> replica addresses.
    /// `complete`: every `servers:` line parsed (else a key naming none of `servers` may
    /// name one that did not parse, and is not reported).
    fn replicas(&mut self, v: &Node, servers: &mut [ServerConfig], complete: bool) {
        let pairs = match &v.kind {
            Kind::Map(pairs) => pairs,
            Kind::Invalid => return,
            _ => {
                self.err(
                    v.line,
                    format!(
                        "`replicas` must map server names to lists of host:port, got {}",
                        v.describe()
                    ),
                );
                return;
            }
        };
        // Every address already in use in this pool: servers, then replicas as they come.
        let mut used: HashMap<(String, u16), String> = servers
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.is_unix())
            .map(|(i, s)| {
                (
                    (s.host.to_ascii_lowercase(), s.port),
                    format!("servers[{i}] (line {})", s.line),
                )
            })
            .collect();
        let mut claimed: HashMap<usize, usize> = HashMap::new();
        let prefix = format!("{}: replicas: ", self.name);
        for (key, k, list) in entries(pairs, &prefix, "server", self.errs) {
            let Some(idx) = self.replica_owner(key, k.line, servers, complete) else {
                continue;
            };
            if let Some(first) = claimed.get(&idx) {
                self.err(
                    k.line,
                    format!(
                        "replicas: `{}` is the same server as the key at line {first}",
                        clip(key)
                    ),
                );
                continue;
            }
            claimed.insert(idx, k.line);
            let items: Vec<&Node> = match &list.kind {
                Kind::Invalid => continue,
                Kind::Seq(items) => items.iter().collect(),
                Kind::Scalar { .. } if list.is_null() => Vec::new(),
                Kind::Scalar { .. } => vec![list],
                Kind::Map(_) => {
                    self.err(
                        list.line,
                        format!(
                            "replicas.{}: expected a list of host:port, got a mapping",
                            clip(key)
                        ),
                    );
                    continue;
                }
            };
            for (i, item) in items.into_iter().enumerate() {
                let at = format!("replicas.{}[{i}]", clip(key));
                let Some(text) = (match &item.kind {
                    Kind::Invalid => None,
                    Kind::Scalar { text, .. } if !item.is_null() => Some(text),
                    _ => {
                        self.err(
                            item.line,
                            format!("{at}: expected host:port, got {}", item.describe()),
                        );
                        None
                    }
                }) else {
                    continue;
                };
                match addr::parse_host_port(text) {
                    Err(e) => self.err(item.line, format!("{at}: {e}")),
                    Ok((host, port)) => {
                        let id = (host.to_ascii_lowercase(), port);
                        if let Some(other) = used.get(&id) {
                            self.err(
                                item.line,
                                format!("{at}: `{}` is already {other}", host_port(&host, port)),
                            );
                        } else {
                            used.insert(id, format!("{at} (line {})", item.line));
                            servers[idx].replicas.push((host, port));
                        }
                    }
                }
            }
        }
    }

    /// The server a `replicas:` key names: a server name, or the host:port of an unnamed server.
    fn replica_owner(
        &mut self,
        key: &str,
        line: usize,
        servers: &[ServerConfig],
        complete: bool,
    ) -> Option<usize> {
        if let Some(i) = servers.iter().position(|s| s.name.as_deref() == Some(key)) {
            return Some(i);
        }
        if let Ok((host, port)) = addr::parse_host_port(key) {
            let found = servers
                .iter()
                .position(|s| s.port == port && s.host.eq_ignore_ascii_case(&host));
            if let Some(i) = found {
                return match &servers[i].name {
                    None => Some(i),
                    Some(name) => {
                        let msg = format!(
                            "replicas: the server at `{}` is named `{name}`: use its name as the key",
                            clip(key)
                        );
                        self.err(line, msg);
                        None
                    }
                };
            }
        }
        if !complete {
            return None;
        }
        let names: Vec<String> = servers.iter().map(|s| s.effective_name()).collect();
        let hint = match closest(key, names.iter().map(String::as_str)) {
            Some(c) => format!("; did you mean `{c}`?"),
            None => format!(" (servers: {})", clip(&names.join(", "))),
        };
        self.err(
            line,
            format!(
                "replicas: `{}` is not a server of this pool{hint}",
                clip(key)
            ),
        );
        None
    }
}

/// twemproxy's default hash, fnv1a_64 (`CONF_DEFAULT_HASH`).
fn default_hash() -> HashKind {
    HashKind::Fnv1a_64
}

/// twemproxy's default distribution, ketama (`CONF_DEFAULT_DIST`).
fn default_distribution() -> Distribution {
    Distribution::Ketama
}

/// A YAML double-quoted string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(super) fn to_yaml(cfg: &ProxyConfig) -> String {
    let mut o = String::new();
    for (i, p) in cfg.pools.iter().enumerate() {
        if i > 0 {
            o.push('\n');
        }
        let hash = p.hash.name();
        let dist = p.distribution.name();
        let _ = writeln!(o, "{}:", quote(&p.name));
        let _ = writeln!(o, "  listen: {}", quote(&p.listen.to_string()));
        let _ = writeln!(o, "  hash: {hash}");
        if let Some(tag) = p.hash_tag {
            let _ = writeln!(o, "  hash_tag: {}", quote(&String::from_utf8_lossy(&tag)));
        }
        let _ = writeln!(o, "  distribution: {dist}");
        if let Some(t) = p.timeout_ms {
            let _ = writeln!(o, "  timeout: {t}");
        }
        let _ = writeln!(o, "  backlog: {}", p.backlog);
        let _ = writeln!(o, "  client_connections: {}", p.client_connections);
        let _ = writeln!(o, "  tcpkeepalive: {}", p.tcpkeepalive);
        let _ = writeln!(o, "  redis: {}", p.redis);
        if let Some(auth) = &p.redis_auth {
            let _ = writeln!(o, "  redis_auth: {}", quote(auth));
        }
        if p.redis || p.redis_db != 0 {
            let _ = writeln!(o, "  redis_db: {}", p.redis_db);
        }
        let _ = writeln!(o, "  preconnect: {}", p.preconnect);
        let _ = writeln!(o, "  auto_eject_hosts: {}", p.auto_eject_hosts);
        let _ = writeln!(o, "  server_connections: {}", p.server_connections);
        let _ = writeln!(o, "  server_retry_timeout: {}", p.server_retry_timeout_ms);
        let _ = writeln!(o, "  server_failure_limit: {}", p.server_failure_limit);
        let _ = writeln!(o, "  backend: {}", p.backend);
        let _ = writeln!(o, "  read_policy: {}", p.read_policy);
        let _ = writeln!(o, "  failover: {}", p.failover);
        let _ = writeln!(o, "  failover_timeout: {}", p.failover_timeout_ms);
        let _ = writeln!(o, "  health_interval: {}", p.health_interval_ms);
        o.push_str("  servers:\n");
        for s in &p.servers {
            let _ = writeln!(o, "   - {}", quote(&s.to_string()));
        }
        if p.servers.iter().any(|s| !s.replicas.is_empty()) {
            o.push_str("  replicas:\n");
            for s in p.servers.iter().filter(|s| !s.replicas.is_empty()) {
                let key = s.name.clone().unwrap_or_else(|| host_port(&s.host, s.port));
                let list: Vec<String> = s
                    .replicas
                    .iter()
                    .map(|(h, port)| quote(&host_port(h, *port)))
                    .collect();
                let _ = writeln!(o, "    {}: [{}]", quote(&key), list.join(", "));
            }
        }
    }
    o
}
