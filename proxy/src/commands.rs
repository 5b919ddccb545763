//! How the proxy routes each Redis command: by which key(s), whether it writes, whether it
//! blocks, or whether the proxy answers it itself.

use foldhash::HashMap;
use std::sync::OnceLock;

/// Where a command's keys are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keys {
    /// No key.
    None,
    /// One key at this argument index.
    At(usize),
    /// Keys from `first` to `len - 1 - skip_last`, every `step`-th argument.
    Range {
        /// First key index.
        first: usize,
        /// Arguments after the last key (e.g. BLPOP's timeout).
        skip_last: usize,
        /// Distance between keys (2 for key/value pairs).
        step: usize,
    },
    /// `numkeys` at index `pos`, keys right after it (ZUNION, EVAL…), plus optionally a
    /// destination key at index 1 (ZUNIONSTORE).
    NumKeys {
        /// Index of the numkeys argument.
        pos: usize,
        /// Whether argument 1 is also a key (a destination).
        dest: bool,
    },
    /// SORT / SORT_RO: the key at 1; SORT's `STORE destination` is a key too, and its
    /// `BY`/`GET` patterns name keys (see [`shoal_client::resp::SortArgs`]).
    Sort {
        /// Whether `STORE` is allowed (SORT, not SORT_RO).
        store: bool,
    },
}

/// What the proxy does with a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Forward to the server owning its key(s); every key must be on one server.
    Keyed,
    /// Split per server and gather (MGET, DEL, EXISTS, TOUCH, UNLINK, MSET).
    Split(Merge),
    /// Answered by the proxy (PING, ECHO, HELLO, AUTH, SELECT, CLIENT, QUIT, INFO…).
    Local,
    /// Sent to every server, replies merged.
    Broadcast(Merge),
    /// Sent to one server, any (TIME, COMMAND, LASTSAVE…).
    Any,
    /// Transaction / session commands handled by the session logic.
    Session,
    /// Pub/sub.
    PubSub,
    /// Refused through the proxy.
    Unsupported,
}

/// How split or broadcast replies are merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// MGET: one array, elements in key order.
    Values,
    /// DEL/EXISTS/TOUCH/UNLINK, DBSIZE: sum of integers.
    Sum,
    /// MSET, FLUSHALL: `+OK` when all say OK, else the first error.
    AllOk,
    /// KEYS: arrays concatenated.
    Concat,
    /// SCAN: the cursor walks the servers one after the other.
    Scan,
    /// SCRIPT LOAD / CONFIG SET: the first reply, after all succeeded.
    First,
    /// WAIT: the smallest count.
    Min,
}

/// Routing facts about one command.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// Routing.
    pub route: Route,
    /// Where the keys are.
    pub keys: Keys,
    /// Whether the command writes (reads may go to replicas).
    pub write: bool,
    /// Whether it may block (runs on a dedicated backend connection).
    pub blocking: bool,
    /// The command's name (upper case), for metrics.
    pub name: &'static str,
    /// Dense id (index into [`names`]), for per-command counters.
    pub id: u16,
}

const fn spec(route: Route, keys: Keys, write: bool) -> Spec {
    Spec {
        route,
        keys,
        write,
        blocking: false,
        name: "",
        id: 0,
    }
}

const R1: Spec = spec(Route::Keyed, Keys::At(1), false);
const W1: Spec = spec(Route::Keyed, Keys::At(1), true);
const LOCAL: Spec = spec(Route::Local, Keys::None, false);
const ALL: Keys = Keys::Range {
    first: 1,
    skip_last: 0,
    step: 1,
};

fn table() -> HashMap<&'static [u8], Spec> {
    let mut m: HashMap<&'static [u8], Spec> = HashMap::default();
    let reads: &[&str] = &[
        "GET",
        "STRLEN",
        "GETRANGE",
        "SUBSTR",
        "TTL",
        "PTTL",
        "EXPIRETIME",
        "PEXPIRETIME",
        "TYPE",
        "DUMP",
        "HGET",
        "HMGET",
        "HGETALL",
        "HKEYS",
        "HVALS",
        "HLEN",
        "HEXISTS",
        "HSTRLEN",
        "HRANDFIELD",
        "HSCAN",
        "LLEN",
        "LRANGE",
        "LINDEX",
        "LPOS",
        "SCARD",
        "SISMEMBER",
        "SMISMEMBER",
        "SMEMBERS",
        "SRANDMEMBER",
        "SSCAN",
        "ZCARD",
        "ZCOUNT",
        "ZLEXCOUNT",
        "ZRANGE",
        "ZRANGEBYSCORE",
        "ZRANGEBYLEX",
        "ZREVRANGE",
        "ZREVRANGEBYSCORE",
        "ZREVRANGEBYLEX",
        "ZRANK",
        "ZREVRANK",
        "ZSCORE",
        "ZMSCORE",
        "ZRANDMEMBER",
        "ZSCAN",
        "GETBIT",
        "BITCOUNT",
        "BITPOS",
        "BITFIELD_RO",
        "GEOPOS",
        "GEODIST",
        "GEOHASH",
        "GEORADIUS_RO",
        "GEORADIUSBYMEMBER_RO",
        "GEOSEARCH",
        "XLEN",
        "XRANGE",
        "XREVRANGE",
    ];
    for r in reads {
        m.insert(r.as_bytes(), R1);
    }
    let writes: &[&str] = &[
        "SET",
        "SETNX",
        "SETEX",
        "PSETEX",
        "GETSET",
        "GETDEL",
        "GETEX",
        "APPEND",
        "INCR",
        "DECR",
        "INCRBY",
        "DECRBY",
        "INCRBYFLOAT",
        "SETRANGE",
        "EXPIRE",
        "PEXPIRE",
        "EXPIREAT",
        "PEXPIREAT",
        "PERSIST",
        "RESTORE",
        "HSET",
        "HSETNX",
        "HMSET",
        "HDEL",
        "HINCRBY",
        "HINCRBYFLOAT",
        "LPUSH",
        "RPUSH",
        "LPUSHX",
        "RPUSHX",
        "LPOP",
        "RPOP",
        "LSET",
        "LREM",
        "LTRIM",
        "LINSERT",
        "SADD",
        "SREM",
        "SPOP",
        "ZADD",
        "ZINCRBY",
        "ZREM",
        "ZREMRANGEBYSCORE",
        "ZREMRANGEBYRANK",
        "ZREMRANGEBYLEX",
        "ZPOPMIN",
        "ZPOPMAX",
        "SETBIT",
        "BITFIELD",
        "PFADD",
        "GEOADD",
        "XADD",
        "XTRIM",
        "XDEL",
    ];
    for w in writes {
        m.insert(w.as_bytes(), W1);
    }
    for (name, merge, write) in [
        ("MGET", Merge::Values, false),
        ("EXISTS", Merge::Sum, false),
        ("DEL", Merge::Sum, true),
        ("UNLINK", Merge::Sum, true),
        ("TOUCH", Merge::Sum, false),
    ] {
        m.insert(name.as_bytes(), spec(Route::Split(merge), ALL, write));
    }
    let pairs = Keys::Range {
        first: 1,
        skip_last: 0,
        step: 2,
    };
    m.insert(b"MSET", spec(Route::Split(Merge::AllOk), pairs, true));
    m.insert(b"MSETNX", spec(Route::Keyed, pairs, true));
    let two = Keys::Range {
        first: 1,
        skip_last: 0,
        step: 1,
    };
    for name in [
        "RENAME",
        "RENAMENX",
        "COPY",
        "SMOVE",
        "LMOVE",
        "RPOPLPUSH",
        "LCS",
        "ZRANGESTORE",
    ] {
        let keys = match name {
            // Trailing non-key arguments would be hashed too: only the first two count.
            "COPY" | "SMOVE" | "LMOVE" | "LCS" | "ZRANGESTORE" => {
                Keys::NumKeys { pos: 0, dest: true }
            }
            _ => two,
        };
        m.insert(name.as_bytes(), spec(Route::Keyed, keys, name != "LCS"));
    }
    for name in ["SINTER", "SUNION", "SDIFF", "PFCOUNT"] {
        m.insert(name.as_bytes(), spec(Route::Keyed, ALL, false));
    }
    for name in ["SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE", "PFMERGE"] {
        m.insert(name.as_bytes(), spec(Route::Keyed, ALL, true));
    }
    m.insert(
        b"BITOP",
        spec(
            Route::Keyed,
            Keys::Range {
                first: 2,
                skip_last: 0,
                step: 1,
            },
            true,
        ),
    );
    for (name, dest, write) in [
        ("ZUNIONSTORE", true, true),
        ("ZINTERSTORE", true, true),
        ("ZDIFFSTORE", true, true),
        ("ZUNION", false, false),
        ("ZINTER", false, false),
        ("ZDIFF", false, false),
        ("ZINTERCARD", false, false),
        ("SINTERCARD", false, false),
        ("LMPOP", false, true),
        ("ZMPOP", false, true),
        ("EVAL", true, true),
        ("EVALSHA", true, true),
        ("EVAL_RO", true, false),
        ("EVALSHA_RO", true, false),
        ("FCALL", true, true),
        ("FCALL_RO", true, false),
    ] {
        let pos = if dest { 2 } else { 1 };
        // EVAL script numkeys k...: numkeys at 2, no destination.
        let dest = dest && name.starts_with('Z');
        m.insert(
            name.as_bytes(),
            spec(Route::Keyed, Keys::NumKeys { pos, dest }, write),
        );
    }
    let mut blocking = |name: &'static str, keys: Keys| {
        let mut s = spec(Route::Keyed, keys, true);
        s.blocking = true;
        m.insert(name.as_bytes(), s);
    };
    let all_but_timeout = Keys::Range {
        first: 1,
        skip_last: 1,
        step: 1,
    };
    for name in ["BLPOP", "BRPOP", "BZPOPMIN", "BZPOPMAX"] {
        blocking(name, all_but_timeout);
    }
    blocking("BLMOVE", Keys::NumKeys { pos: 0, dest: true });
    blocking("BRPOPLPUSH", Keys::NumKeys { pos: 0, dest: true });
    blocking(
        "BLMPOP",
        Keys::NumKeys {
            pos: 2,
            dest: false,
        },
    );
    blocking(
        "BZMPOP",
        Keys::NumKeys {
            pos: 2,
            dest: false,
        },
    );
    for name in [
        "PING",
        "ECHO",
        "QUIT",
        "HELLO",
        "AUTH",
        "SELECT",
        "CLIENT",
        "INFO",
        "RESET",
        "SHOAL",
        "READONLY",
        "READWRITE",
    ] {
        m.insert(name.as_bytes(), LOCAL);
    }
    for name in ["MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH", "WAIT"] {
        m.insert(name.as_bytes(), spec(Route::Session, Keys::None, false));
    }
    m.get_mut(&b"WATCH"[..]).expect("inserted").keys = ALL;
    for name in [
        "SUBSCRIBE",
        "PSUBSCRIBE",
        "UNSUBSCRIBE",
        "PUNSUBSCRIBE",
        "PUBLISH",
        "PUBSUB",
        "SSUBSCRIBE",
        "SUNSUBSCRIBE",
        "SPUBLISH",
    ] {
        m.insert(name.as_bytes(), spec(Route::PubSub, Keys::None, false));
    }
    m.insert(
        b"DBSIZE",
        spec(Route::Broadcast(Merge::Sum), Keys::None, false),
    );
    m.insert(
        b"FLUSHALL",
        spec(Route::Broadcast(Merge::AllOk), Keys::None, true),
    );
    m.insert(
        b"FLUSHDB",
        spec(Route::Broadcast(Merge::AllOk), Keys::None, true),
    );
    m.insert(
        b"KEYS",
        spec(Route::Broadcast(Merge::Concat), Keys::None, false),
    );
    m.insert(
        b"SCAN",
        spec(Route::Broadcast(Merge::Scan), Keys::None, false),
    );
    m.insert(
        b"SCRIPT",
        spec(Route::Broadcast(Merge::First), Keys::None, true),
    );
    for name in [
        "TIME",
        "COMMAND",
        "LASTSAVE",
        "LOLWUT",
        "RANDOMKEY",
        "CONFIG",
    ] {
        m.insert(name.as_bytes(), spec(Route::Any, Keys::None, false));
    }
    for name in [
        "SHUTDOWN",
        "REPLICAOF",
        "SLAVEOF",
        "FAILOVER",
        "DEBUG",
        "MONITOR",
        "SYNC",
        "PSYNC",
        "REPLCONF",
        "SAVE",
        "BGSAVE",
        "BGREWRITEAOF",
        "MIGRATE",
        "MOVE",
        "SWAPDB",
        "CLUSTER",
        "OBJECT",
        "ACL",
        "MODULE",
        "SLOWLOG",
        "LATENCY",
        "FUNCTION",
    ] {
        m.insert(name.as_bytes(), spec(Route::Unsupported, Keys::None, false));
    }
    m.insert(
        b"SORT",
        spec(Route::Keyed, Keys::Sort { store: true }, true),
    );
    m.insert(
        b"SORT_RO",
        spec(Route::Keyed, Keys::Sort { store: false }, false),
    );
    // OBJECT <sub> <key>: routed by its key.
    m.insert(b"OBJECT", spec(Route::Keyed, Keys::At(2), false));
    // MEMORY USAGE <key>: routed by its key too (MEMORY STATS & co. have none: any server).
    m.insert(b"MEMORY", spec(Route::Keyed, Keys::At(2), false));
    let mut keys: Vec<&'static [u8]> = m.keys().copied().collect();
    keys.sort_unstable();
    for (i, k) in keys.iter().enumerate() {
        let s = m.get_mut(k).expect("present");
        s.name = std::str::from_utf8(k).unwrap_or("?");
        s.id = i as u16 + 1;
    }
    m
}

fn table_ref() -> &'static HashMap<&'static [u8], Spec> {
    static TABLE: OnceLock<HashMap<&'static [u8], Spec>> = OnceLock::new();
    TABLE.get_or_init(table)
}

/// Command names by id (id 0 is "OTHER": unknown commands).
pub fn names() -> &'static [&'static str] {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut v = vec![""; table_ref().len() + 1];
        v[0] = "OTHER";
        for s in table_ref().values() {
            v[s.id as usize] = s.name;
        }
        v
    })
}

/// Looks a command up by name (any case).
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    let table = table_ref();
    let mut up = [0u8; 24];
    if name.len() > up.len() {
        return None;
    }
    for (d, s) in up.iter_mut().zip(name) {
        *d = s.to_ascii_uppercase();
    }
    table.get(&up[..name.len()])
}

/// Argument indices of the keys of a request with `argc` arguments whose numkeys argument
/// (for [`Keys::NumKeys`]) is `numkeys`. `None` when the arguments are malformed (the
/// backend then sees the request and answers with Redis's own error).
pub fn key_indices(keys: Keys, argc: usize, numkeys: Option<i64>, out: &mut Vec<usize>) -> bool {
    out.clear();
    match keys {
        Keys::None => true,
        Keys::At(i) => {
            if i < argc {
                out.push(i);
            }
            true
        }
        Keys::Range {
            first,
            skip_last,
            step,
        } => {
            let end = argc.saturating_sub(skip_last);
            let mut i = first;
            while i < end {
                out.push(i);
                i += step;
            }
            true
        }
        Keys::Sort { .. } => {
            if argc > 1 {
                out.push(1);
            }
            true
        }
        Keys::NumKeys { pos: 0, .. } => {
            // The two-key commands (COPY src dst ..., LMOVE src dst ...).
            out.extend((1..argc.min(3)).collect::<Vec<_>>());
            true
        }
        Keys::NumKeys { pos, dest } => {
            if dest && argc > 1 {
                out.push(1);
            }
            let Some(n) = numkeys else { return false };
            if n < 0 || pos + 1 + n as usize > argc {
                return false;
            }
            out.extend(pos + 1..pos + 1 + n as usize);
            true
        }
    }
}

/// The part of a SORT `BY`/`GET` pattern that decides where the keys it names live:
/// its hash tag (under the pool's `hash_tag:`), when it has one without glob
/// characters; `None` when the keys it forms may be anywhere.
pub fn pattern_tag(pattern: &[u8], tag: Option<[u8; 2]>) -> Option<&[u8]> {
    let [open, close] = tag?;
    let start = pattern.iter().position(|&c| c == open)? + 1;
    let len = pattern[start..].iter().position(|&c| c == close)?;
    let t = &pattern[start..start + len];
    (!t.is_empty() && !t.iter().any(|c| matches!(c, b'*' | b'?' | b'[' | b'\\'))).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive() {
        assert_eq!(lookup(b"get").map(|s| s.keys), Some(Keys::At(1)));
        assert_eq!(
            lookup(b"MgEt").map(|s| s.route),
            Some(Route::Split(Merge::Values))
        );
        assert!(lookup(b"nosuchcommandxxxxxxxxxxxxxxxxxxx").is_none());
        assert!(lookup(b"BLPOP").is_some_and(|s| s.blocking));
    }

    #[test]
    fn sort_keys() {
        let spec = lookup(b"sort").expect("known");
        let mut v = Vec::new();
        assert!(key_indices(spec.keys, 6, None, &mut v));
        assert_eq!(v, vec![1]);
    }

    #[test]
    fn pattern_tags() {
        let t = Some(*b"{}");
        assert_eq!(pattern_tag(b"w_{u1}_*", t), Some(&b"u1"[..]));
        assert_eq!(pattern_tag(b"w_*", t), None);
        assert_eq!(pattern_tag(b"w_{*}", t), None);
        assert_eq!(pattern_tag(b"w_{}_*", t), None);
        assert_eq!(pattern_tag(b"w_{u1}_*", None), None);
    }

    #[test]
    fn key_positions() {
        let mut v = Vec::new();
        let blpop = lookup(b"BLPOP").expect("known").keys;
        assert!(key_indices(blpop, 4, None, &mut v));
        assert_eq!(v, [1, 2]);
        let z = lookup(b"ZUNIONSTORE").expect("known").keys;
        assert!(key_indices(z, 6, Some(2), &mut v));
        assert_eq!(v, [1, 3, 4]);
        assert!(!key_indices(z, 4, Some(5), &mut v));
        let eval = lookup(b"EVAL").expect("known").keys;
        assert!(key_indices(eval, 5, Some(2), &mut v));
        assert_eq!(v, [3, 4]);
        let mset = lookup(b"MSET").expect("known").keys;
        assert!(key_indices(mset, 5, None, &mut v));
        assert_eq!(v, [1, 3]);
        let copy = lookup(b"COPY").expect("known").keys;
        assert!(key_indices(copy, 4, None, &mut v));
        assert_eq!(v, [1, 2]);
    }
}
