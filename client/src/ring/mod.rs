//! Key placement that matches twemproxy (nutcracker 0.5.0) exactly.
//!
//! A [`Ring`] is built from a pool's servers (the `servers:` lines of a twemproxy YAML
//! pool, as [`RingNode`]s), the pool's `distribution:` ([`Distribution`]) and `hash:`
//! ([`HashKind`]); [`Ring::locate`] then answers which server owns a key, exactly as
//! twemproxy would, so a twemproxy pool can be replaced in place without a key moving.
//! The caller applies the pool's `hash_tag:` first with [`hash_tag`].
//!
//! ```
//! use shoal_client::ring::{hash_tag, Distribution, HashKind, Ring, RingNode};
//!
//! let nodes: Vec<RingNode> = ["10.0.0.1:6379:1 a", "10.0.0.2:6379:1 b", "10.0.0.3:6379:2"]
//!     .iter()
//!     .map(|line| line.parse().unwrap())
//!     .collect();
//! let ring = Ring::new(Distribution::Ketama, HashKind::Fnv1a_64, &nodes);
//! let owner = ring.locate(hash_tag(b"user:{42}:cart", Some(*b"{}"))).unwrap();
//! assert_eq!(ring.locate(b"42"), Some(owner));
//! ```
//!
//! # twemproxy's rules, as implemented here
//!
//! * **Server order.** twemproxy sorts a pool's servers by their *name* (shorter names
//!   first, equal lengths byte-wise) while validating the configuration, and every
//!   distribution works on that order. [`Ring`] does the same internally; the indices it
//!   returns always refer to the caller's `nodes` slice.
//! * **Name.** A server's name is the optional trailing word of its `servers:` line.
//!   Without one, the name is `host:port`, except that a server on port 11211 is named by
//!   its host alone (libmemcached compatibility). See [`RingNode::ketama_name`].
//! * **ketama.** With `n` live servers of total live weight `W`, a server of weight `w`
//!   gets `4 * floor(w / W * 40 * n)` points (computed in `f32` exactly like twemproxy,
//!   including its `+ 1e-10`), from the MD5 digests of `"{name}-{i}"` for `i` in
//!   `0..points/4`, each digest giving four little-endian `u32` points. Points are sorted
//!   (ties keep server order); a key belongs to the first point `>=` its hash, wrapping to
//!   the first point past the end.
//! * **modula.** The continuum is one slot per unit of weight, live servers in server
//!   order; a key belongs to slot `hash % W`.
//! * **random.** A uniformly random live server per request (weights are ignored).
//! * **Keys.** An empty key hashes to 0 (twemproxy never hashes empty keys); a pool of a
//!   single server always answers that server.
//! * **Ejection.** With `auto_eject_hosts`, twemproxy rebuilds the distribution from live
//!   servers only (counts and total weight over live servers): [`Ring::with_live`].

mod hash;
mod ketama;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::str::FromStr;

/// A pool's key hash: twemproxy's `hash:` setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum HashKind {
    /// `one_at_a_time`: Bob Jenkins' one-at-a-time hash.
    OneAtATime,
    /// `md5`: the first four bytes of the MD5 digest, little-endian.
    Md5,
    /// `crc16`: twemproxy 0.5.0's unmasked CRC-16/XMODEM variant (can exceed 16 bits).
    Crc16,
    /// `crc32`: libmemcached's 15-bit slice of CRC-32.
    Crc32,
    /// `crc32a`: the standard CRC-32.
    Crc32a,
    /// `fnv1_64`: 64-bit FNV-1 truncated to 32 bits.
    Fnv1_64,
    /// `fnv1a_64`: twemproxy's 32-bit FNV-1a with truncated 64-bit constants (its default).
    Fnv1a_64,
    /// `fnv1_32`: 32-bit FNV-1.
    Fnv1_32,
    /// `fnv1a_32`: 32-bit FNV-1a.
    Fnv1a_32,
    /// `hsieh`: Paul Hsieh's SuperFastHash.
    Hsieh,
    /// `murmur`: MurmurHash2 seeded with `0xdeadbeef * len`.
    Murmur,
    /// `jenkins`: Bob Jenkins' lookup3 `hashlittle`, initval 13.
    Jenkins,
}

impl HashKind {
    /// Every hash, in twemproxy's order.
    pub const ALL: [HashKind; 12] = [
        HashKind::OneAtATime,
        HashKind::Md5,
        HashKind::Crc16,
        HashKind::Crc32,
        HashKind::Crc32a,
        HashKind::Fnv1_64,
        HashKind::Fnv1a_64,
        HashKind::Fnv1_32,
        HashKind::Fnv1a_32,
        HashKind::Hsieh,
        HashKind::Murmur,
        HashKind::Jenkins,
    ];

    /// Parses a twemproxy YAML hash name (`fnv1a_64`, `murmur`, ...). Exact, lowercase.
    pub fn from_name(s: &str) -> Option<HashKind> {
        HashKind::ALL.into_iter().find(|h| h.name() == s)
    }

    /// The twemproxy YAML name.
    pub fn name(self) -> &'static str {
        match self {
            HashKind::OneAtATime => "one_at_a_time",
            HashKind::Md5 => "md5",
            HashKind::Crc16 => "crc16",
            HashKind::Crc32 => "crc32",
            HashKind::Crc32a => "crc32a",
            HashKind::Fnv1_64 => "fnv1_64",
            HashKind::Fnv1a_64 => "fnv1a_64",
            HashKind::Fnv1_32 => "fnv1_32",
            HashKind::Fnv1a_32 => "fnv1a_32",
            HashKind::Hsieh => "hsieh",
            HashKind::Murmur => "murmur",
            HashKind::Jenkins => "jenkins",
        }
    }

    /// The hash of `key`, identical to twemproxy's function of that name on x86-64
    /// (where C's `char` is signed, which several of them depend on for bytes >= 0x80).
    pub fn hash(self, key: &[u8]) -> u32 {
        match self {
            HashKind::OneAtATime => hash::one_at_a_time(key),
            HashKind::Md5 => hash::md5_hash(key),
            HashKind::Crc16 => hash::crc16(key),
            HashKind::Crc32 => hash::crc32(key),
            HashKind::Crc32a => hash::crc32a(key),
            HashKind::Fnv1_64 => hash::fnv1_64(key),
            HashKind::Fnv1a_64 => hash::fnv1a_64(key),
            HashKind::Fnv1_32 => hash::fnv1_32(key),
            HashKind::Fnv1a_32 => hash::fnv1a_32(key),
            HashKind::Hsieh => hash::hsieh(key),
            HashKind::Murmur => hash::murmur(key),
            HashKind::Jenkins => hash::jenkins(key),
        }
    }
}

impl fmt::Display for HashKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A pool's key distribution: twemproxy's `distribution:` setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Distribution {
    /// `ketama`: consistent hashing, 160 points per server scaled by weight.
    Ketama,
    /// `modula`: `hash % total weight` over one slot per unit of weight.
    Modula,
    /// `random`: a random live server per request.
    Random,
}

impl Distribution {
    /// Every distribution, in twemproxy's order.
    pub const ALL: [Distribution; 3] = [
        Distribution::Ketama,
        Distribution::Modula,
        Distribution::Random,
    ];

    /// Parses a twemproxy YAML distribution name. Exact, lowercase.
    pub fn from_name(s: &str) -> Option<Distribution> {
        Distribution::ALL.into_iter().find(|d| d.name() == s)
    }

    /// The twemproxy YAML name.
    pub fn name(self) -> &'static str {
        match self {
            Distribution::Ketama => "ketama",
            Distribution::Modula => "modula",
            Distribution::Random => "random",
        }
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One server of a pool, as in a twemproxy `servers:` line `host:port:weight [name]`.
///
/// A Unix-socket server (`/path/to.sock:weight [name]`) has `host` = the path and
/// `port` = 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingNode {
    /// Host name or address as written (an IPv6 address keeps its brackets), or a socket path.
    pub host: String,
    /// TCP port (0 for a Unix socket).
    pub port: u16,
    /// Relative weight; twemproxy requires at least 1.
    pub weight: u32,
    /// The optional name after the address; it replaces the address in the hash ring.
    pub name: Option<String>,
}

/// The port whose servers are named by host alone (libmemcached's default port).
const KETAMA_DEFAULT_PORT: u16 = 11211;

impl RingNode {
    /// A server without a name.
    pub fn new(host: impl Into<String>, port: u16, weight: u32) -> RingNode {
        RingNode {
            host: host.into(),
            port,
            weight,
            name: None,
        }
    }

    /// A server with a name.
    pub fn named(
        host: impl Into<String>,
        port: u16,
        weight: u32,
        name: impl Into<String>,
    ) -> RingNode {
        RingNode {
            name: Some(name.into()),
            ..RingNode::new(host, port, weight)
        }
    }

    /// The string twemproxy hashes for this server's ketama points (and sorts servers by):
    /// the name if given; else `host` alone on port 11211 (libmemcached compatibility);
    /// else `host:port`. A Unix socket without a name is named `path:` (twemproxy keeps the
    /// separator before the weight).
    pub fn ketama_name(&self) -> Cow<'_, str> {
        match &self.name {
            Some(name) => Cow::Borrowed(name),
            None if self.is_unix() => Cow::Owned(format!("{}:", self.host)),
            None if self.port == KETAMA_DEFAULT_PORT => Cow::Borrowed(&self.host),
            None => Cow::Owned(format!("{}:{}", self.host, self.port)),
        }
    }

    fn is_unix(&self) -> bool {
        self.host.starts_with('/')
    }
}

impl fmt::Display for RingNode {
    /// The `servers:` line form, `host:port:weight [name]` (or `path:weight [name]`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_unix() {
            write!(f, "{}:{}", self.host, self.weight)?;
        } else {
            write!(f, "{}:{}:{}", self.host, self.port, self.weight)?;
        }
        match &self.name {
            Some(name) => write!(f, " {name}"),
            None => Ok(()),
        }
    }
}

/// Why a `servers:` line did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid server {line:?}: {reason} (expected \"host:port:weight [name]\" or \"/path/to.sock:weight [name]\")")]
pub struct ParseNodeError {
    line: String,
    reason: &'static str,
}

impl FromStr for RingNode {
    type Err = ParseNodeError;

    /// Parses a twemproxy `servers:` entry the way twemproxy does: from the end, an
    /// optional name after the last space, then the weight after the last `:`, then (for
    /// TCP) the port after the next `:`; the rest is the host. The weight must be a positive
    /// number and the port a valid one. A port written non-canonically (`06379`) is
    /// hashed by twemproxy as written, so it is kept as the explicit name.
    fn from_str(line: &str) -> Result<RingNode, ParseNodeError> {
        let err = |reason| ParseNodeError {
            line: line.to_string(),
            reason,
        };
        let (addr, name) = match line.rsplit_once(' ') {
            Some((addr, name)) => (addr, Some(name)),
            None => (line, None),
        };
        if name == Some("") {
            return Err(err("empty name"));
        }
        let (rest, weight) = addr.rsplit_once(':').ok_or_else(|| err("missing weight"))?;
        let weight = parse_digits(weight)
            .and_then(|w| u32::try_from(w).ok())
            .ok_or_else(|| err("invalid weight"))?;
        if weight == 0 {
            return Err(err("zero weight"));
        }
        let (host, port, port_text) = if rest.starts_with('/') {
            (rest, 0, None)
        } else {
            let (host, port_text) = rest.rsplit_once(':').ok_or_else(|| err("missing port"))?;
            let port = parse_digits(port_text)
                .and_then(|p| u16::try_from(p).ok())
                .filter(|&p| p > 0)
                .ok_or_else(|| err("invalid port"))?;
            (host, port, Some(port_text))
        };
        if host.is_empty() {
            return Err(err("empty host"));
        }
        let mut node = RingNode {
            host: host.to_string(),
            port,
            weight,
            name: name.map(str::to_string),
        };
        if let (None, Some(text)) = (&node.name, port_text) {
            if port != KETAMA_DEFAULT_PORT && text != port.to_string() {
                node.name = Some(format!("{host}:{text}"));
            }
        }
        Ok(node)
    }
}

/// A non-empty run of ASCII digits, as a number (twemproxy's `nc_atoi`).
fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The part of `key` that twemproxy hashes under the pool's `hash_tag:` (two characters,
/// such as `"{}"`): find the first `open`; then the first `close` after it; if both exist
/// and at least one byte lies between them, that is the part; otherwise the whole key.
/// Only the first `open` is considered (`a{}{b}` hashes whole), and `open` may equal
/// `close` (`"$$"`).
pub fn hash_tag(key: &[u8], tag: Option<[u8; 2]>) -> &[u8] {
    let Some([open, close]) = tag else {
        return key;
    };
    let Some(start) = memchr::memchr(open, key) else {
        return key;
    };
    let inner = &key[start + 1..];
    match memchr::memchr(close, inner) {
        Some(len) if len > 0 => &inner[..len],
        _ => key,
    }
}

/// The placement table of a built ring.
#[derive(Clone, Debug)]
enum Table {
    /// No live server.
    Empty,
    /// A pool of one server: twemproxy answers it without hashing.
    Single(u32),
    /// Sorted ketama points and, in parallel, the server index owning each;
    /// `index` narrows the search (see [`KetamaIndex`]).
    Ketama {
        points: Box<[u32]>,
        owners: Box<[u32]>,
        index: KetamaIndex,
    },
    /// modula: `ends[i]` is the exclusive end of server `owners[i]`'s run of slots, in
    /// server order; `hash % total` picks the run.
    Modula {
        ends: Box<[u64]>,
        owners: Box<[u32]>,
        total: u64,
    },
    /// random: the live servers.
    Random { live: Box<[u32]> },
}

/// A lookup table over a ketama continuum: `first[b]` is the index of the first
/// point ≥ the smallest hash of bucket `b` (the top `bits` bits of the hash), so
/// a lookup searches only the points of one bucket (`first[b]..first[b + 1]`),
/// mostly zero or one, instead of binary-searching every point: a 1000-key MGET
/// spent 14 % of the proxy's CPU in that search. About 8 buckets per point.
#[derive(Clone, Debug)]
struct KetamaIndex {
    bits: u32,
    first: Box<[u32]>,
}

impl KetamaIndex {
    fn new(points: &[u32]) -> KetamaIndex {
        let want = (points.len() * 8).next_power_of_two().clamp(2, 1 << 20);
        let bits = want.trailing_zeros();
        let buckets = 1usize << bits;
        let shift = 32 - bits;
        let mut first = Vec::with_capacity(buckets + 1);
        let mut at = 0usize;
        for b in 0..buckets {
            let lo = (b as u64) << shift;
            while at < points.len() && u64::from(points[at]) < lo {
                at += 1;
            }
            first.push(at as u32);
        }
        first.push(points.len() as u32);
        KetamaIndex {
            bits,
            first: first.into(),
        }
    }

    /// The index of the first point ≥ `h` (`points.len()` when none is).
    #[inline]
    fn first_at_or_above(&self, points: &[u32], h: u32) -> usize {
        let b = (h >> (32 - self.bits)) as usize;
        let (lo, hi) = (self.first[b] as usize, self.first[b + 1] as usize);
        lo + points[lo..hi].partition_point(|&p| p < h)
    }
}

/// A pool's key → server map, built once (all allocation happens here) and immutable;
/// [`Ring::locate`] does not allocate. Rebuild it when liveness or membership changes.
#[derive(Clone, Debug)]
pub struct Ring {
    dist: Distribution,
    hash: HashKind,
    len: usize,
    table: Table,
}

impl Ring {
    /// A ring over `nodes`, all live.
    pub fn new(dist: Distribution, hash: HashKind, nodes: &[RingNode]) -> Ring {
        Ring::with_live(dist, hash, nodes, &vec![true; nodes.len()])
    }

    /// A ring in which only the nodes with `live[i] == true` own keys, as twemproxy builds
    /// it after ejecting servers (`auto_eject_hosts`): server counts and total weight are
    /// over live servers only. Returned indices still refer to `nodes`.
    ///
    /// # Panics
    /// If `live.len() != nodes.len()`.
    pub fn with_live(
        dist: Distribution,
        hash: HashKind,
        nodes: &[RingNode],
        live: &[bool],
    ) -> Ring {
        assert_eq!(
            live.len(),
            nodes.len(),
            "Ring::with_live: one liveness flag per node"
        );
        let order = ketama::server_order(nodes);
        let live_order: Vec<usize> = order.into_iter().filter(|&i| live[i]).collect();
        let table = if live_order.is_empty() {
            Table::Empty
        } else if nodes.len() == 1 {
            Table::Single(0)
        } else {
            match dist {
                Distribution::Ketama => {
                    let (points, owners) = ketama::continuum(nodes, &live_order);
                    if points.is_empty() {
                        Table::Empty
                    } else {
                        let index = KetamaIndex::new(&points);
                        Table::Ketama {
                            points,
                            owners,
                            index,
                        }
                    }
                }
                Distribution::Modula => {
                    let mut total = 0u64;
                    let (mut ends, mut owners) = (Vec::new(), Vec::new());
                    for &i in &live_order {
                        if nodes[i].weight > 0 {
                            total += u64::from(nodes[i].weight);
                            ends.push(total);
                            owners.push(i as u32);
                        }
                    }
                    if total == 0 {
                        Table::Empty
                    } else {
                        Table::Modula {
                            ends: ends.into(),
                            owners: owners.into(),
                            total,
                        }
                    }
                }
                Distribution::Random => Table::Random {
                    live: live_order.iter().map(|&i| i as u32).collect(),
                },
            }
        };
        Ring {
            dist,
            hash,
            len: nodes.len(),
            table,
        }
    }

    /// The index (into the `nodes` the ring was built from) of the server owning `key`;
    /// the caller has already applied [`hash_tag`]. `None` only when no node is live.
    /// With [`Distribution::Random`], a random live server on every call.
    #[inline]
    pub fn locate(&self, key: &[u8]) -> Option<usize> {
        let index = match &self.table {
            Table::Empty => return None,
            Table::Single(i) => *i,
            Table::Ketama {
                points,
                owners,
                index,
            } => {
                let h = self.key_hash(key);
                let at = index.first_at_or_above(points, h);
                owners[if at == points.len() { 0 } else { at }]
            }
            Table::Modula {
                ends,
                owners,
                total,
            } => {
                let slot = u64::from(self.key_hash(key)) % total;
                owners[ends.partition_point(|&end| end <= slot)]
            }
            Table::Random { live } => live[random_below(live.len())],
        };
        Some(index as usize)
    }

    /// The value twemproxy looks `key` up with: the pool's hash of it, or 0 for an empty
    /// key (twemproxy does not hash empty keys).
    #[inline]
    pub fn key_hash(&self, key: &[u8]) -> u32 {
        if key.is_empty() {
            0
        } else {
            self.hash.hash(key)
        }
    }

    /// The pool's key hash.
    pub fn hash(&self) -> HashKind {
        self.hash
    }

    /// The pool's distribution.
    pub fn distribution(&self) -> Distribution {
        self.dist
    }

    /// Number of nodes the ring was built from, live or not.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the ring was built from no nodes at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// For a ketama ring (or one with a single live server): the owner of every key hash,
    /// as inclusive `(lo, hi, server)` ranges in order, covering `0..=u32::MAX` (the key
    /// hash is [`key_hash`](Self::key_hash) of the hash-tag part). `None` for modula and
    /// random, whose owners are not ranges of the hash, and for a ring with no live server.
    pub fn owner_ranges(&self) -> Option<Vec<(u32, u32, usize)>> {
        match &self.table {
            Table::Single(i) => Some(vec![(0, u32::MAX, *i as usize)]),
            Table::Ketama { points, owners, .. } => {
                // A hash belongs to the first point at or above it, past the last to the
                // first point's owner.
                let mut out = Vec::with_capacity(points.len() + 1);
                let mut lo = 0u32;
                for (&p, &o) in points.iter().zip(owners.iter()) {
                    if p < lo {
                        continue; // a repeated point: its range is empty
                    }
                    out.push((lo, p, o as usize));
                    if p == u32::MAX {
                        return Some(out);
                    }
                    lo = p + 1;
                }
                out.push((lo, u32::MAX, owners[0] as usize));
                Some(out)
            }
            _ => None,
        }
    }

    /// Number of ketama points (0 for other distributions).
    pub fn point_count(&self) -> usize {
        match &self.table {
            Table::Ketama { points, .. } => points.len(),
            _ => 0,
        }
    }
}

/// A uniformly distributed number below `n` (> 0) from a per-thread wyrand generator.
fn random_below(n: usize) -> usize {
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            use std::hash::BuildHasher;
            std::collections::hash_map::RandomState::new().hash_one(0x5ea1_u64)
        });
    }
    let r = STATE.with(|state| {
        let s = state.get().wrapping_add(0xa076_1d64_78bd_642f);
        state.set(s);
        let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    });
    ((u128::from(r) * n as u128) >> 64) as usize
}
