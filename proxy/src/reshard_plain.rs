//! Live resharding of pools whose servers are plain `redis-server` (`backend: redis`) or
//! plain `memcached` (`backend: memcached`): the backend-specific steps of the reshard
//! control loop of [`crate::reshard`] (enumerating a source, moving a batch, counting keys,
//! checking the servers before a plan) and of the request path of [`crate::ask`] (how a
//! request on a moving key is sent and resolved without `SHOAL.ASK`). What each backend
//! guarantees, and why: docs/resharding.md, "Plain redis-server and memcached pools".
//!
//! * **redis** (the same guarantees as a Shoal pool). A moving key's request goes to its
//!   old owner as `EVALSHA` of [`ASK_SCRIPT`]: the command runs there if every key exists,
//!   `-SHOALMOVED` if none does (the plain request then goes to the new owner). The
//!   migrator moves batches with Redis's own `MIGRATE … KEYS`, which copies (with the
//!   TTL) and deletes atomically while the source is blocked, so no key is ever "in
//!   flight". What a script cannot run exactly (blocking commands, `EVAL`/`FCALL`, counters
//!   whose replies a Lua number would round, RESP3 sessions, very long requests, keys
//!   split between the owners) is moved on demand: `MIGRATE … REPLACE KEYS` of the
//!   request's keys on the old owner, then the plain request on the new owner.
//! * **memcached** (best effort). Reads go to the new owner first and to the old owner on a
//!   miss; writes go to the new owner (after copying the key there when the write needs
//!   the current item: `add`, `incr`, `append`, `cas`, `touch`…); deletes go to both. The
//!   migrator enumerates a source with `lru_crawler metadump hash` and copies each moving
//!   key with meta commands: `mg` on the source, an add-only `ms … ME` on the destination
//!   (a newer write that already reached it wins), then an `md … C<cas>` on the source.

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use shoal_client::memcache::scan::response_len;
use shoal_client::resp::{decode_reply, encode_command, Proto, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::warn;

use super::{split_addr, Member, Rpc, MIGRATE_TIMEOUT_MS};
use crate::ask::{Ask, AskKind};
use crate::commands::{self, Keys};
use crate::config::{BackendKind, PoolConfig};
use crate::topology::PoolView;

// ---------------------------------------------------------------------------------------
// request path: backend: redis

/// The ask of a plain redis-server, run with `EVALSHA sha numkeys <keys> <command…>`: the
/// command (ARGV) runs if every key exists here; `-SHOALMOVED` if none does; `-TRYAGAIN`
/// if some do (the proxy then moves them with `MIGRATE` and goes to the new owner).
/// `redis.pcall` keeps the command's own error replies as they are.
pub const ASK_SCRIPT: &str = "local n = 0\n\
if #KEYS > 0 then n = redis.call('EXISTS', unpack(KEYS)) end\n\
if n == #KEYS then return redis.pcall(unpack(ARGV)) end\n\
if n == 0 then return {err = 'SHOALMOVED'} end\n\
return {err = 'TRYAGAIN shoal-proxy: keys are split across servers while resharding'}\n";

/// SHA-1 of [`ASK_SCRIPT`] (checked against `SCRIPT LOAD` before every reshard).
pub const ASK_SHA: &str = "01d43d448ddd204986357644aaa5ddc0e762a6fc";

/// Longest request (arguments) run inside the script: Lua's `unpack` stops near 8,000.
const MAX_SCRIPT_ARGS: usize = 7_000;

/// Commands moved on demand instead of run in the script: not allowed in scripts
/// (`EVAL`/`FCALL`, blocking commands), or with replies a script changes (integers
/// beyond 2^53 go through a Lua double; `GEOPOS`'s null arrays become null strings).
const MIGRATE_FIRST: &[&[u8]] = &[
    b"EVAL",
    b"EVALSHA",
    b"EVAL_RO",
    b"EVALSHA_RO",
    b"FCALL",
    b"FCALL_RO",
    b"BLPOP",
    b"BRPOP",
    b"BLMOVE",
    b"BRPOPLPUSH",
    b"BZPOPMIN",
    b"BZPOPMAX",
    b"BLMPOP",
    b"BZMPOP",
    b"INCR",
    b"DECR",
    b"INCRBY",
    b"DECRBY",
    b"HINCRBY",
    b"BITFIELD",
    b"BITFIELD_RO",
    b"GEOPOS",
];

/// The arguments of a multibulk request (`*N\r\n$len\r\n…`), as the proxy builds them.
fn multibulk(req: &[u8]) -> Option<Vec<&[u8]>> {
    fn number(b: &[u8], at: usize) -> Option<(usize, usize)> {
        let eol = at + memchr::memchr(b'\r', b.get(at..)?)?;
        let n = std::str::from_utf8(&b[at..eol]).ok()?.parse().ok()?;
        Some((n, eol + 2))
    }
    if req.first() != Some(&b'*') {
        return None;
    }
    let (n, mut at) = number(req, 1)?;
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        if req.get(at) != Some(&b'$') {
            return None;
        }
        let (len, start) = number(req, at + 1)?;
        args.push(req.get(start..start + len)?);
        at = start + len + 2;
    }
    Some(args)
}

/// The key arguments of a request, by the proxy's command table.
fn request_keys<'a>(args: &[&'a [u8]]) -> Vec<&'a [u8]> {
    let Some(spec) = args.first().and_then(|n| commands::lookup(n)) else {
        return Vec::new();
    };
    let numkeys = match spec.keys {
        Keys::NumKeys { pos, .. } if pos > 0 => args
            .get(pos)
            .and_then(|a| std::str::from_utf8(a).ok())
            .and_then(|s| s.parse::<i64>().ok()),
        _ => None,
    };
    let mut idx = Vec::new();
    commands::key_indices(spec.keys, args.len(), numkeys, &mut idx);
    if let Keys::Sort { store } = spec.keys {
        idx.extend(shoal_client::resp::SortArgs::parse(args.len(), |i| args[i], store).store);
    }
    idx.iter().filter_map(|&i| args.get(i).copied()).collect()
}

/// Whether the script runs `args` exactly as the server would without it.
fn script_safe(args: &[&[u8]], resp3: bool) -> bool {
    let Some(name) = args.first() else {
        return false;
    };
    !resp3
        && args.len() <= MAX_SCRIPT_ARGS
        && !MIGRATE_FIRST.iter().any(|c| c.eq_ignore_ascii_case(name))
}

/// `EVALSHA` (or, after a `NOSCRIPT`, `EVAL`) of [`ASK_SCRIPT`] around `args`.
fn script_request(args: &[&[u8]], keys: &[&[u8]], eval: bool, out: &mut BytesMut) {
    out.clear();
    let nkeys = keys.len().to_string();
    let mut v: Vec<&[u8]> = Vec::with_capacity(3 + keys.len() + args.len());
    if eval {
        v.push(b"EVAL");
        v.push(ASK_SCRIPT.as_bytes());
    } else {
        v.push(b"EVALSHA");
        v.push(ASK_SHA.as_bytes());
    }
    v.push(nkeys.as_bytes());
    v.extend_from_slice(keys);
    v.extend_from_slice(args);
    encode_command(&v, out);
}

/// `MIGRATE <new owner> "" <db> <timeout> REPLACE [AUTH pw] KEYS <keys>` for the old owner.
/// `REPLACE`: while the old owner has a key, its copy is the live one (a key reaches the
/// new owner only once the old owner lacks it), so a copy already on the new owner is a
/// leftover (docs/resharding.md).
pub(crate) fn migrate_request(pool: &PoolView, dst: usize, keys: &[&[u8]], out: &mut BytesMut) {
    out.clear();
    let (host, port) = split_addr(&pool.servers[dst].primary);
    let port = port.to_string();
    let db = pool.cfg.redis_db.to_string();
    let timeout = pool
        .cfg
        .timeout_ms
        .unwrap_or(1000)
        .clamp(100, 5000)
        .to_string();
    let mut v: Vec<&[u8]> = vec![
        b"MIGRATE",
        host.as_bytes(),
        port.as_bytes(),
        b"",
        db.as_bytes(),
        timeout.as_bytes(),
        b"REPLACE",
    ];
    if let Some(pw) = pool.cfg.redis_auth.as_deref() {
        v.push(b"AUTH");
        v.push(pw.as_bytes());
    }
    v.push(b"KEYS");
    v.extend_from_slice(keys);
    encode_command(&v, out);
}

/// Wraps `req` (a multibulk request whose keys move to server `dst` of a `backend: redis`
/// pool) for the keys' old owner: the ask script, or a `MIGRATE` of its keys when the
/// script cannot run it exactly (see [`MIGRATE_FIRST`]). Returns how to read the reply.
pub fn wrap_redis(
    pool: &PoolView,
    dst: usize,
    req: &[u8],
    resp3: bool,
    out: &mut BytesMut,
) -> AskKind {
    let args = multibulk(req).unwrap_or_default();
    let keys = request_keys(&args);
    if script_safe(&args, resp3) {
        script_request(&args, &keys, false, out);
        AskKind::Script
    } else {
        migrate_request(pool, dst, &keys, out);
        AskKind::Migrate
    }
}

// ---------------------------------------------------------------------------------------
// request path: backend: memcached

/// The verb, the key token and whether the key is base64 (`b` flag of a meta command).
fn mc_parts(req: &[u8]) -> Option<(&[u8], &[u8], bool)> {
    let eol = memchr::memchr(b'\n', req).unwrap_or(req.len());
    let line = req[..eol].strip_suffix(b"\r").unwrap_or(&req[..eol]);
    let mut toks = line.split(|&c| c == b' ').filter(|t| !t.is_empty());
    let verb = toks.next()?;
    let key = toks.next()?;
    let meta = verb.len() == 2 && verb[0] == b'm';
    let b64 = meta && toks.any(|t| t == b"b");
    Some((verb, key, b64))
}

/// Whether a meta request has a flag token starting with `flag` (`N30`, `ME`…).
fn meta_flag(req: &[u8], flag: u8) -> Option<u8> {
    let eol = memchr::memchr(b'\n', req).unwrap_or(req.len());
    let line = req[..eol].strip_suffix(b"\r").unwrap_or(&req[..eol]);
    line.split(|&c| c == b' ')
        .filter(|t| !t.is_empty())
        .skip(2)
        .find(|t| t.first() == Some(&flag))
        .map(|t| t.get(1).copied().unwrap_or(0))
}

/// How a memcache request on a key moving to its new owner is sent (see the module docs):
/// `out` gets the first request, the bool says whether it goes to the new owner (else to
/// the old one), and the kind how its reply is resolved (None: it is final, for a write
/// that replaces the item: `set`, `ms` in set mode without a CAS).
pub fn mc_first(req: &[u8], out: &mut BytesMut) -> (Option<AskKind>, bool) {
    out.clear();
    let Some((verb, key, b64)) = mc_parts(req) else {
        out.put_slice(req);
        return (Some(AskKind::McWrite), true);
    };
    let replaces = match verb {
        b"set" => true,
        b"ms" => {
            matches!(meta_flag(req, b'M'), None | Some(b'S' | b's'))
                && meta_flag(req, b'C').is_none()
        }
        _ => false,
    };
    if replaces {
        // The new owner keeps it: the migrator's add-only copy never overwrites it.
        out.put_slice(req);
        return (None, true);
    }
    let kind = match verb {
        b"get" | b"gets" | b"gat" | b"gats" | b"me" => AskKind::McRead,
        // `mg … N` creates the item on a miss: the current one must be there first.
        b"mg" if meta_flag(req, b'N').is_some() => AskKind::McFetch,
        b"mg" => AskKind::McRead,
        b"delete" | b"md" => AskKind::McDelete,
        // Adds must fail when the item exists, wherever it is.
        b"add" => AskKind::McFetch,
        b"ms" if matches!(meta_flag(req, b'M'), Some(b'E' | b'e')) => AskKind::McFetch,
        _ => AskKind::McWrite,
    };
    if kind == AskKind::McFetch {
        mc_fetch_request(key, b64, out);
        return (Some(kind), false);
    }
    out.put_slice(req);
    (Some(kind), true)
}

/// `mg <key> v f t c` (value, client flags, remaining TTL, CAS id).
fn mc_fetch_request(key: &[u8], b64: bool, out: &mut BytesMut) {
    out.clear();
    out.put_slice(b"mg ");
    out.put_slice(key);
    out.put_slice(b" v f t c");
    if b64 {
        out.put_slice(b" b");
    }
    out.put_slice(b"\r\n");
}

/// A meta `VA` reply: the value and the item's metadata.
#[derive(Debug, PartialEq, Eq)]
struct Fetched<'a> {
    data: &'a [u8],
    flags: u32,
    /// Remaining seconds; -1 when the item never expires.
    ttl: i64,
    cas: u64,
}

/// Parses `VA <len> f<flags> t<ttl> c<cas>\r\n<data>\r\n` (flags in any order).
fn parse_va(reply: &[u8]) -> Option<Fetched<'_>> {
    let eol = memchr::memchr(b'\n', reply)?;
    let line = reply[..eol].strip_suffix(b"\r")?;
    let mut toks = line.split(|&c| c == b' ').filter(|t| !t.is_empty());
    if toks.next()? != b"VA" {
        return None;
    }
    let len: usize = std::str::from_utf8(toks.next()?).ok()?.parse().ok()?;
    let data = reply.get(eol + 1..eol + 1 + len)?;
    let mut f = Fetched {
        data,
        flags: 0,
        ttl: -1,
        cas: 0,
    };
    for t in toks {
        let v = std::str::from_utf8(&t[1..]).ok();
        match t[0] {
            b'f' => f.flags = v?.parse().ok()?,
            b't' => f.ttl = v?.parse().ok()?,
            b'c' => f.cas = v?.parse().ok()?,
            _ => {}
        }
    }
    Some(f)
}

/// Largest relative exptime memcached takes; larger ones are absolute unix times.
const RELATIVE_MAX: i64 = 30 * 24 * 3600;

/// The `T` token of an `ms` that keeps `ttl` seconds (`None`: the item is expiring now).
fn exptime_for(ttl: i64, now_unix: i64) -> Option<i64> {
    match ttl {
        -1 => Some(0),
        t if t <= 0 => None,
        t if t > RELATIVE_MAX => Some(now_unix + t),
        t => Some(t),
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `ms <key> <len> F<flags> T<exptime> ME[ c][ b]\r\n<data>\r\n`: stores a copy only where
/// the key is absent. False (nothing written) when the item is expiring.
fn mc_copy_request(key: &[u8], b64: bool, f: &Fetched<'_>, cas: bool, out: &mut BytesMut) -> bool {
    out.clear();
    let Some(exp) = exptime_for(f.ttl, now_unix()) else {
        return false;
    };
    out.put_slice(b"ms ");
    out.put_slice(key);
    out.put_slice(format!(" {} F{} T{exp} ME", f.data.len(), f.flags).as_bytes());
    if cas {
        out.put_slice(b" c");
    }
    if b64 {
        out.put_slice(b" b");
    }
    out.put_slice(b"\r\n");
    out.put_slice(f.data);
    out.put_slice(b"\r\n");
    true
}

/// `md <key> C<cas>[ b]`: deletes the item only if it is still that version.
fn mc_delete_request(key: &[u8], b64: bool, cas: u64, out: &mut BytesMut) {
    out.clear();
    out.put_slice(b"md ");
    out.put_slice(key);
    out.put_slice(format!(" C{cas}").as_bytes());
    if b64 {
        out.put_slice(b" b");
    }
    out.put_slice(b"\r\n");
}

/// A two-letter meta code (`NF`, `HD`…) at the start of a reply.
fn code(reply: &[u8], c: &[u8; 2]) -> bool {
    reply.starts_with(c) && matches!(reply.get(2), Some(b' ' | b'\r' | b'\n'))
}

/// A retrieval that found nothing: `END` alone (get/gets/gat/gats) or `EN` (mg/me).
fn read_missed(reply: &[u8]) -> bool {
    reply == b"END\r\n" || code(reply, b"EN")
}

/// A write that needs the item and found none.
fn write_missed(reply: &[u8]) -> bool {
    reply == b"NOT_FOUND\r\n"
        || reply == b"NOT_STORED\r\n"
        || code(reply, b"NF")
        || code(reply, b"NS")
}

fn deleted(reply: &[u8]) -> bool {
    reply == b"DELETED\r\n" || code(reply, b"HD")
}

// ---------------------------------------------------------------------------------------
// request path: resolving

/// What [`step`] decided for an ask.
pub enum Step {
    /// The ask has its final reply (or its final request is sent).
    Done,
    /// Look at it again after this round; `pause`: wait a little first (a retry).
    Again { pause: bool },
}

/// One round of resolving a plain-backend ask whose reply (None: the backend failed) is
/// in: sends the next request with `send(ask, to_new_owner, bytes)` and points the
/// client's output at the slot of its final reply with `set_slot(out, part, slot)`.
/// `may_retry`: the ask is young enough to retry a failed on-demand `MIGRATE`.
pub fn step(
    a: &mut Ask,
    reply: Option<&Bytes>,
    pool: &PoolView,
    may_retry: bool,
    send: &mut impl FnMut(&Ask, bool, &[u8]) -> u32,
    set_slot: &mut impl FnMut(usize, usize, u32),
    scratch: &mut BytesMut,
) -> Step {
    let Some(r) = reply else {
        return Step::Done;
    };
    let r = r.as_ref();
    match &a.kind {
        AskKind::Shoal => Step::Done,
        AskKind::Script => {
            if r.starts_with(b"-SHOALMOVED") {
                let slot = send(a, true, &a.plain);
                set_slot(a.out, a.part, slot);
                return Step::Done;
            }
            let args = multibulk(&a.plain).unwrap_or_default();
            let keys = request_keys(&args);
            if r.starts_with(b"-NOSCRIPT") {
                // The server lost its script cache (restart, SCRIPT FLUSH): EVAL loads it.
                script_request(&args, &keys, true, scratch);
            } else if r.starts_with(b"-TRYAGAIN")
                || (r.starts_with(b"-ERR") && memchr::memmem::find(r, b"from script").is_some())
            {
                // Keys split between the owners, or a command the script may not run:
                // move the keys now and run the request on the new owner.
                migrate_request(pool, a.dst, &keys, scratch);
                a.kind = AskKind::Migrate;
            } else {
                return Step::Done;
            }
            a.slot = send(a, false, scratch);
            set_slot(a.out, a.part, a.slot);
            Step::Again { pause: false }
        }
        AskKind::Migrate => {
            if r.starts_with(b"+") {
                // +OK or +NOKEY: the keys are on the new owner, or nowhere.
                let slot = send(a, true, &a.plain);
                set_slot(a.out, a.part, slot);
                return Step::Done;
            }
            if !r.starts_with(b"-") || !may_retry {
                return Step::Done;
            }
            let args = multibulk(&a.plain).unwrap_or_default();
            migrate_request(pool, a.dst, &request_keys(&args), scratch);
            a.slot = send(a, false, scratch);
            set_slot(a.out, a.part, a.slot);
            Step::Again { pause: true }
        }
        AskKind::McRead => {
            if !read_missed(r) {
                return Step::Done;
            }
            // Not copied yet, or copied and retired since the first read: ask the old
            // owner, then the new one again (McReadOld).
            a.slot = send(a, false, &a.plain);
            set_slot(a.out, a.part, a.slot);
            a.kind = AskKind::McReadOld;
            Step::Again { pause: false }
        }
        AskKind::McReadOld => {
            // A miss on both: the migrator may have copied the item to the new owner
            // after the first read and deleted it here before this one (it copies
            // before it deletes), so the new owner has the last word.
            if read_missed(r) {
                let slot = send(a, true, &a.plain);
                set_slot(a.out, a.part, slot);
            }
            Step::Done
        }
        AskKind::McDelete => {
            // The item may be on either owner: delete it on the old one too. The client
            // hears DELETED if any leg deleted it.
            let deleted_new = deleted(r);
            a.slot = send(a, false, &a.plain);
            if !deleted_new {
                set_slot(a.out, a.part, a.slot);
            }
            a.kind = AskKind::McDeleteOld { deleted_new };
            Step::Again { pause: false }
        }
        AskKind::McDeleteOld { deleted_new } => {
            // The migrator may have copied the item to the new owner since the first leg
            // (from the old owner, before this leg): delete it there again.
            let deleted_any = *deleted_new || deleted(r);
            let slot = send(a, true, &a.plain);
            if !deleted_any {
                set_slot(a.out, a.part, slot);
            }
            Step::Done
        }
        AskKind::McWrite => {
            if !write_missed(r) {
                return Step::Done;
            }
            // Not copied yet: copy it from the old owner, then write again.
            let Some((_, key, b64)) = mc_parts(&a.plain) else {
                return Step::Done;
            };
            mc_fetch_request(key, b64, scratch);
            a.kind = AskKind::McFetch;
            a.slot = send(a, false, scratch);
            Step::Again { pause: false }
        }
        AskKind::McFetch => {
            let fetched = parse_va(r);
            let parts = mc_parts(&a.plain);
            let (Some(f), Some((_, key, b64))) = (fetched, parts) else {
                // Not on the old owner (or not copyable): the write runs on the new one.
                let slot = send(a, true, &a.plain);
                set_slot(a.out, a.part, slot);
                return Step::Done;
            };
            if !mc_copy_request(key, b64, &f, false, scratch) {
                let slot = send(a, true, &a.plain);
                set_slot(a.out, a.part, slot);
                return Step::Done;
            }
            let copy = send(a, true, scratch);
            let slot = send(a, true, &a.plain);
            set_slot(a.out, a.part, slot);
            mc_delete_request(key, b64, f.cas, scratch);
            a.kind = AskKind::McCleanup {
                delete: Bytes::copy_from_slice(scratch),
            };
            a.slot = copy;
            Step::Again { pause: false }
        }
        AskKind::McCleanup { delete } => {
            // Only the copy that was stored retires the old item; if another copy got
            // there first, the migrator (which made it) deletes the old item itself.
            if code(r, b"HD") {
                let delete = delete.clone();
                send(a, false, &delete);
            }
            Step::Done
        }
    }
}

// ---------------------------------------------------------------------------------------
// control thread: connections

/// Where a memcached source's enumeration stands (kept on its connection).
#[derive(Default)]
pub(super) struct Dump {
    /// `lru_crawler metadump` was sent on this connection and its `END` not read yet.
    active: bool,
    /// Complete passes over the source on this connection.
    passes: u32,
    /// The current pass listed a key that moves.
    found: bool,
}

/// Passes over a memcached source: again until one lists no key to move (an item the
/// crawler missed shows up in the next), at most this many.
const MAX_PASSES: u32 = 8;

/// Keys per memcache pipeline round of the migrator (bounds memory: values may be 1 MB).
const MC_ROUND: usize = 64;

/// Connections to memcached servers the migrator keeps between batches.
#[derive(Default)]
pub(super) struct Conns(RefCell<Vec<Rpc>>);

impl Conns {
    /// The cached connection to `addr`, or a new one.
    async fn take(&self, addr: &str, cfg: &PoolConfig) -> anyhow::Result<Rpc> {
        let cached = {
            let mut v = self.0.borrow_mut();
            v.iter()
                .position(|c| c.addr == addr)
                .map(|i| v.swap_remove(i))
        };
        match cached {
            Some(c) => Ok(c),
            None => connect(addr, cfg).await,
        }
    }

    fn put(&self, c: Rpc) {
        self.0.borrow_mut().push(c);
    }

    /// Drops the connections to servers `pool` no longer has.
    fn retain(&self, pool: &PoolView) {
        self.0
            .borrow_mut()
            .retain(|c| pool.servers.iter().any(|s| s.primary == c.addr));
    }
}

/// A control-thread connection to a server of pool `cfg`: RESP with `AUTH` for Shoal, plus
/// `SELECT redis_db` for redis; a plain memcache text connection for memcached.
pub(super) async fn connect(addr: &str, cfg: &PoolConfig) -> anyhow::Result<Rpc> {
    match cfg.backend {
        BackendKind::Shoal => Rpc::connect(addr, cfg.redis_auth.as_deref()).await,
        BackendKind::Redis => {
            let mut c = Rpc::connect(addr, cfg.redis_auth.as_deref()).await?;
            if cfg.redis_db != 0 {
                let db = cfg.redis_db.to_string();
                if let Value::Error(e) = c.call(&[b"SELECT", db.as_bytes()]).await? {
                    anyhow::bail!("SELECT {db}: {}", String::from_utf8_lossy(&e));
                }
            }
            Ok(c)
        }
        BackendKind::Memcached => {
            let s =
                tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await??;
            s.set_nodelay(true)?;
            Ok(Rpc {
                s,
                buf: BytesMut::with_capacity(64 * 1024),
                out: BytesMut::new(),
                addr: addr.to_string(),
                dump: Dump::default(),
            })
        }
    }
}

fn deadline() -> Duration {
    Duration::from_millis(MIGRATE_TIMEOUT_MS * 2)
}

impl Rpc {
    /// Writes `self.out`.
    async fn flush_out(&mut self) -> anyhow::Result<()> {
        tokio::time::timeout(deadline(), self.s.write_all(&self.out)).await??;
        self.out.clear();
        Ok(())
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        let n = tokio::time::timeout(deadline(), self.s.read_buf(&mut self.buf)).await??;
        if n == 0 {
            anyhow::bail!("{} closed the connection", self.addr);
        }
        Ok(())
    }

    /// One RESP reply.
    async fn read_resp(&mut self) -> anyhow::Result<Value> {
        loop {
            if let Some(v) = decode_reply(&mut self.buf, Proto::Resp2)? {
                return Ok(v);
            }
            self.fill().await?;
        }
    }

    /// One memcache response (framed by [`response_len`]).
    async fn read_mc(&mut self) -> anyhow::Result<Bytes> {
        loop {
            if let Some(n) = response_len(&self.buf) {
                return Ok(self.buf.split_to(n).freeze());
            }
            self.fill().await?;
        }
    }

    /// One line, without its line end (metadump lines end in a bare `\n`).
    async fn read_line(&mut self) -> anyhow::Result<Bytes> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf) {
                let mut l = self.buf.split_to(i + 1);
                l.truncate(i);
                if l.last() == Some(&b'\r') {
                    l.truncate(i - 1);
                }
                return Ok(l.freeze());
            }
            self.fill().await?;
        }
    }

    /// Sends memcache requests as one write; returns their responses in order.
    async fn mc_round(&mut self, reqs: &[BytesMut]) -> anyhow::Result<Vec<Bytes>> {
        self.out.clear();
        for r in reqs {
            self.out.put_slice(r);
        }
        self.flush_out().await?;
        let mut v = Vec::with_capacity(reqs.len());
        for _ in reqs {
            v.push(self.read_mc().await?);
        }
        Ok(v)
    }
}

// ---------------------------------------------------------------------------------------
// control thread: enumerating a source

/// One step of enumerating old owner `src`'s keys on `c`: (next cursor, keys), "0" once
/// the source is done. Shoal and redis: `SCAN`. memcached: the next keys of a metadump
/// pass (the cursor is kept on the connection: a fresh connection starts a pass).
pub(super) async fn scan(
    pool: &PoolView,
    src: usize,
    c: &mut Rpc,
    cursor: &[u8],
) -> anyhow::Result<(Vec<u8>, Vec<Bytes>)> {
    if pool.cfg.backend == BackendKind::Memcached {
        return metadump_step(pool, src, c).await;
    }
    let reply = c
        .call(&[b"SCAN", cursor, b"COUNT", super::SCAN_COUNT.as_bytes()])
        .await?;
    let Value::Array(mut v) = reply else {
        anyhow::bail!("SCAN answered {reply:?}");
    };
    match (v.len(), v.pop(), v.pop()) {
        (2, Some(Value::Array(keys)), Some(Value::Bulk(next))) => Ok((
            next.to_vec(),
            keys.into_iter()
                .filter_map(|k| match k {
                    Value::Bulk(k) => Some(k),
                    _ => None,
                })
                .collect(),
        )),
        _ => anyhow::bail!("malformed SCAN reply"),
    }
}

/// The next keys of a `lru_crawler metadump hash` pass over `src` (see [`scan`]).
async fn metadump_step(
    pool: &PoolView,
    src: usize,
    c: &mut Rpc,
) -> anyhow::Result<(Vec<u8>, Vec<Bytes>)> {
    if !c.dump.active {
        c.out.clear();
        c.out.put_slice(b"lru_crawler metadump hash\r\n");
        c.flush_out().await?;
        c.dump.active = true;
        c.dump.found = false;
    }
    let want: usize = super::SCAN_COUNT.parse().unwrap_or(4096);
    let mut keys = Vec::new();
    while keys.len() < want {
        let line = c.read_line().await?;
        if line.as_ref() == b"END" {
            c.dump.active = false;
            c.dump.passes += 1;
            let again = c.dump.found && c.dump.passes < MAX_PASSES;
            if c.dump.found && !again {
                warn!(
                    "reshard: {} still lists keys to move after {MAX_PASSES} passes; finishing",
                    c.addr
                );
            }
            return Ok((if again { b"1".to_vec() } else { b"0".to_vec() }, keys));
        }
        let Some(key) = metadump_key(&line) else {
            // BUSY (another crawl runs), ERROR (crawler disabled)…: start over later.
            c.dump.active = false;
            anyhow::bail!("lru_crawler metadump: {}", String::from_utf8_lossy(&line));
        };
        let (o, n) = pool.route(&key);
        if o == src && n != src {
            c.dump.found = true;
        }
        keys.push(Bytes::from(key));
    }
    Ok((b"1".to_vec(), keys))
}

/// The key of a metadump line (`key=<url-encoded> exp=… la=… cas=… fetch=… cls=… size=…`).
fn metadump_key(line: &[u8]) -> Option<Vec<u8>> {
    let rest = line.strip_prefix(b"key=")?;
    let end = memchr::memchr(b' ', rest).unwrap_or(rest.len());
    url_decode(&rest[..end])
}

/// `%XX` decoding (memcached encodes every byte outside `[A-Za-z0-9._~-]`).
fn url_decode(s: &[u8]) -> Option<Vec<u8>> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hi = hex(*s.get(i + 1)?)?;
            let lo = hex(*s.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------
// control thread: moving a batch

/// Moves `keys` from server `src` to server `dst` of a plain pool; returns (keys moved,
/// bytes moved). redis uses `conn` (the source's connection, (re)made here); memcached
/// keeps its own connections in `conns` (`conn` carries the source's metadump).
pub(super) async fn migrate(
    conns: &Conns,
    pool: &PoolView,
    src: usize,
    dst: usize,
    keys: &[Vec<u8>],
    conn: &mut Option<Rpc>,
) -> anyhow::Result<(i64, i64)> {
    let src_addr = &pool.servers[src].primary;
    if pool.cfg.backend == BackendKind::Memcached {
        conns.retain(pool);
        let mut s = conns.take(src_addr, &pool.cfg).await?;
        let mut d = conns.take(&pool.servers[dst].primary, &pool.cfg).await?;
        let mut total = (0, 0);
        for chunk in keys.chunks(MC_ROUND) {
            let (k, b) = mc_move(&mut s, &mut d, chunk).await?;
            total.0 += k;
            total.1 += b;
        }
        conns.put(s);
        conns.put(d);
        return Ok(total);
    }
    if conn.as_ref().is_none_or(|c| c.addr != *src_addr) {
        *conn = Some(connect(src_addr, &pool.cfg).await?);
    }
    let c = conn.as_mut().expect("connected above");
    let res = redis_move(c, pool, dst, keys).await;
    if res.is_err() {
        *conn = None;
    }
    res
}

/// One batch with `MULTI; MEMORY USAGE k…; MIGRATE … KEYS k…; EXEC` on the source: the
/// sizes are taken in the same atomic step as the move, so the count is exact (keys that
/// existed and moved) and the bytes are Redis's estimate of their memory.
///
/// `MIGRATE` runs without `REPLACE` first: a `BUSYKEY` means the destination has a copy
/// while the source still has the key, which the routing never produces (a key reaches
/// the new owner only after the old owner lacked it, and nothing recreates it there), so
/// that copy is a leftover (a `MIGRATE` whose reply was lost after the destination
/// restored the keys, or data the server held before it joined) and the source's copy is
/// the live one: it is logged and the batch is sent again with `REPLACE`.
async fn redis_move(
    c: &mut Rpc,
    pool: &PoolView,
    dst: usize,
    keys: &[Vec<u8>],
) -> anyhow::Result<(i64, i64)> {
    let (host, port) = split_addr(&pool.servers[dst].primary);
    let port = port.to_string();
    let db = pool.cfg.redis_db.to_string();
    let timeout = MIGRATE_TIMEOUT_MS.to_string();
    let mut counted: Option<(i64, i64)> = None;
    for replace in [false, true] {
        c.out.clear();
        encode_command(&[b"MULTI"], &mut c.out);
        for k in keys {
            encode_command(&[b"MEMORY", b"USAGE", k], &mut c.out);
        }
        let mut v: Vec<&[u8]> = vec![
            b"MIGRATE",
            host.as_bytes(),
            port.as_bytes(),
            b"",
            db.as_bytes(),
            timeout.as_bytes(),
        ];
        if replace {
            v.push(b"REPLACE");
        }
        if let Some(pw) = pool.cfg.redis_auth.as_deref() {
            v.push(b"AUTH");
            v.push(pw.as_bytes());
        }
        v.push(b"KEYS");
        v.extend(keys.iter().map(Vec::as_slice));
        encode_command(&v, &mut c.out);
        encode_command(&[b"EXEC"], &mut c.out);
        c.flush_out().await?;
        // +OK, a QUEUED per command (or an error), then EXEC's array.
        let mut queue_err = None;
        for _ in 0..keys.len() + 2 {
            if let Value::Error(e) = c.read_resp().await? {
                queue_err.get_or_insert(e);
            }
        }
        let exec = c.read_resp().await?;
        if let Some(e) = queue_err {
            anyhow::bail!("MULTI: {}", String::from_utf8_lossy(&e));
        }
        let Value::Array(mut results) = exec else {
            anyhow::bail!("EXEC answered {exec:?}");
        };
        let Some(outcome) = results.pop() else {
            anyhow::bail!("EXEC answered an empty array");
        };
        let here = results.iter().fold((0, 0), |(n, b), r| match r {
            Value::Int(u) => (n + 1, b + u),
            _ => (n, b),
        });
        let total = *counted.get_or_insert(here);
        match outcome {
            Value::Simple(_) => return Ok(total),
            Value::Error(e) if !replace && memchr::memmem::find(&e, b"BUSYKEY").is_some() => {
                warn!(
                    "reshard: {} already holds some keys of a batch from {}; the source's copies are the live ones, moving them again with REPLACE",
                    pool.servers[dst].primary, c.addr
                );
            }
            Value::Error(e) => anyhow::bail!("MIGRATE: {}", String::from_utf8_lossy(&e)),
            other => anyhow::bail!("MIGRATE answered {other:?}"),
        }
    }
    unreachable!("the REPLACE round returns")
}

/// Whether `key` can be sent as a text token (else it goes base64 with the `b` flag).
fn text_safe(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= 250 && key.iter().all(|&c| c > b' ' && c != 0x7f)
}

fn key_token(key: &[u8]) -> (Vec<u8>, bool) {
    if text_safe(key) {
        (key.to_vec(), false)
    } else {
        let mut v = Vec::new();
        shoal_client::memcache::base64_encode(key, &mut v);
        (v, true)
    }
}

/// `HD c<cas>` of a stored `ms … c`: the new item's CAS id.
fn stored_cas(reply: &[u8]) -> Option<u64> {
    if !code(reply, b"HD") {
        return None;
    }
    let eol = memchr::memchr(b'\r', reply).unwrap_or(reply.len());
    reply[..eol]
        .split(|&c| c == b' ')
        .find_map(|t| t.strip_prefix(b"c"))
        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
        .or(Some(0))
}

/// Copies one round of memcache keys from `s` to `d`, then retires the source items:
///
/// 1. `mg k v f t c` on the source (misses: nothing to do);
/// 2. `ms k … F<flags> T<ttl> ME c` on the destination: add-only, so a write that reached
///    the new owner since the move began (it is newer) is kept;
/// 3. `md k C<cas>` on the source: deletes exactly the version copied;
/// 4. a copy whose source item vanished between 1 and 3 (a client's `delete` reached the
///    old owner) is deleted again on the destination with `md k C<its cas>`, so the delete
///    wins unless the key was written there since (then the write wins).
///
/// Returns (keys copied, value bytes copied).
async fn mc_move(s: &mut Rpc, d: &mut Rpc, keys: &[Vec<u8>]) -> anyhow::Result<(i64, i64)> {
    let toks: Vec<(Vec<u8>, bool)> = keys.iter().map(|k| key_token(k)).collect();
    let reqs: Vec<BytesMut> = toks
        .iter()
        .map(|(k, b64)| {
            let mut r = BytesMut::new();
            mc_fetch_request(k, *b64, &mut r);
            r
        })
        .collect();
    let got = s.mc_round(&reqs).await?;
    // (index, source CAS, value length); their store requests
    let mut copies: Vec<(usize, u64, usize)> = Vec::new();
    let mut stores = Vec::new();
    let mut expiring = Vec::new();
    for (i, r) in got.iter().enumerate() {
        let Some(f) = parse_va(r) else {
            continue; // EN: gone (expired, deleted, moved by a request)
        };
        let (k, b64) = &toks[i];
        let mut req = BytesMut::new();
        if mc_copy_request(k, *b64, &f, true, &mut req) {
            copies.push((i, f.cas, f.data.len()));
            stores.push(req);
        } else {
            expiring.push((i, f.cas));
        }
    }
    if copies.is_empty() && expiring.is_empty() {
        return Ok((0, 0));
    }
    let stored = d.mc_round(&stores).await?;
    // Retire the source items that were copied (HD) or that the new owner has a newer
    // version of (NS), and the expiring ones. A refused copy (an error: the item is too
    // large for the destination, say) keeps its source item.
    let mut deletes = Vec::new();
    let mut of_copy = Vec::new();
    let mut refused = 0;
    for (j, &(i, cas, _)) in copies.iter().enumerate() {
        if !(code(&stored[j], b"HD") || code(&stored[j], b"NS")) {
            refused += 1;
            continue;
        }
        let mut r = BytesMut::new();
        mc_delete_request(&toks[i].0, toks[i].1, cas, &mut r);
        deletes.push(r);
        of_copy.push(Some(j));
    }
    if refused > 0 {
        warn!(
            "reshard: {} refused {refused} copies from {} (first reply: {}); those items stay there",
            d.addr,
            s.addr,
            String::from_utf8_lossy(
                stored
                    .iter()
                    .find(|r| !code(r, b"HD") && !code(r, b"NS"))
                    .map_or(&b""[..], |r| r.as_ref())
            )
            .trim_end()
        );
    }
    for &(i, cas) in &expiring {
        let mut r = BytesMut::new();
        mc_delete_request(&toks[i].0, toks[i].1, cas, &mut r);
        deletes.push(r);
        of_copy.push(None);
    }
    let del = s.mc_round(&deletes).await?;
    let mut undo = Vec::new();
    let (mut moved, mut bytes) = (0i64, 0i64);
    for (x, j) in of_copy.iter().enumerate() {
        let Some(j) = *j else { continue };
        let (i, _, len) = copies[j];
        let Some(nc) = stored_cas(&stored[j]) else {
            continue; // NS: the new owner has a newer item; the old one is retired above
        };
        if code(&del[x], b"HD") {
            moved += 1;
            bytes += len as i64;
        } else {
            // NF: deleted meanwhile on the old owner; EX: changed there (it stays and the
            // next pass copies it again). Either way this copy must not stay.
            let mut r = BytesMut::new();
            mc_delete_request(&toks[i].0, toks[i].1, nc, &mut r);
            undo.push(r);
        }
    }
    if !undo.is_empty() {
        d.mc_round(&undo).await?;
    }
    Ok((moved, bytes))
}

// ---------------------------------------------------------------------------------------
// control thread: counting and checking

/// Keys on a source (for progress): `DBSIZE`, or memcached's `curr_items`.
pub(super) async fn count_keys(cfg: &PoolConfig, addr: &str) -> Option<u64> {
    let mut c = connect(addr, cfg).await.ok()?;
    if cfg.backend == BackendKind::Memcached {
        c.out.clear();
        c.out.put_slice(b"stats\r\n");
        c.flush_out().await.ok()?;
        let r = c.read_mc().await.ok()?;
        return stat(&r, "curr_items")?.parse().ok();
    }
    match c.call(&[b"DBSIZE"]).await.ok()? {
        Value::Int(n) => Some(n.max(0) as u64),
        _ => None,
    }
}

/// A `STAT <name> <value>` of a memcache `stats` response.
fn stat<'a>(resp: &'a [u8], name: &str) -> Option<&'a str> {
    std::str::from_utf8(resp).ok()?.lines().find_map(|l| {
        let rest = l.strip_prefix("STAT ")?.strip_prefix(name)?;
        rest.strip_prefix(' ').map(str::trim)
    })
}

/// `a.b.c` as numbers (missing parts 0; a suffix such as `-rc1` ignored).
fn version(v: &str) -> (u32, u32, u32) {
    let mut it = v
        .split('.')
        .map(|p| p.split(|c: char| !c.is_ascii_digit()).next().unwrap_or(""))
        .map(|p| p.parse().unwrap_or(0));
    (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
    )
}

/// Before a plan of a plain pool: every member answers and can take part. redis-server
/// 4.0.7 or later (`MIGRATE … AUTH`, `MEMORY USAGE`), with the ask script loaded;
/// memcached 1.6.10 or later (the meta commands as used here, `metadump hash`) with the
/// LRU crawler on. Unix-socket servers cannot be `MIGRATE` targets.
pub(super) async fn preflight(cfg: &PoolConfig, members: &[Member]) -> Result<(), String> {
    for m in members {
        if m.host.starts_with('/') || m.port == 0 {
            return Err(format!(
                "ERR server {} is a unix socket; live resharding of a {} pool needs TCP servers",
                m.addr(),
                cfg.backend
            ));
        }
        let addr = m.addr();
        let mut c = connect(&addr, cfg)
            .await
            .map_err(|e| format!("ERR cannot reach {addr}: {e}"))?;
        let check = async {
            if cfg.backend == BackendKind::Memcached {
                c.out.clear();
                c.out.put_slice(b"version\r\nstats settings\r\n");
                c.flush_out().await?;
                let v = c.read_mc().await?;
                let settings = c.read_mc().await?;
                let v = String::from_utf8_lossy(&v);
                let v = v.trim().strip_prefix("VERSION ").unwrap_or("0");
                if version(v) < (1, 6, 10) {
                    anyhow::bail!("is memcached {v}; resharding needs 1.6.10 or later");
                }
                if stat(&settings, "lru_crawler") != Some("yes") {
                    anyhow::bail!("runs without the LRU crawler (-o lru_crawler)");
                }
                return Ok(());
            }
            let info = match c.call(&[b"INFO", b"server"]).await? {
                Value::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
                other => anyhow::bail!("INFO answered {other:?}"),
            };
            let v = crate::health::field(&info, "redis_version").unwrap_or("0");
            if version(v) < (4, 0, 7) {
                anyhow::bail!("is redis {v}; resharding needs 4.0.7 or later");
            }
            match c.call(&[b"SCRIPT", b"LOAD", ASK_SCRIPT.as_bytes()]).await? {
                Value::Bulk(sha) if sha.as_ref() == ASK_SHA.as_bytes() => Ok(()),
                other => anyhow::bail!("SCRIPT LOAD of the ask script answered {other:?}"),
            }
        };
        check.await.map_err(|e| format!("ERR {addr}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadump_lines() {
        assert_eq!(
            metadump_key(
                b"key=foo%2520bar exp=1795318349 la=1795318249 cas=1 fetch=no cls=1 size=75"
            ),
            Some(b"foo%20bar".to_vec())
        );
        assert_eq!(
            metadump_key(b"key=k%C3%A9%2Fx exp=-1 la=1 cas=2 fetch=yes cls=1 size=70"),
            Some("ké/x".as_bytes().to_vec())
        );
        assert_eq!(metadump_key(b"key=plain"), Some(b"plain".to_vec()));
        assert_eq!(
            metadump_key(b"BUSY currently processing crawler request"),
            None
        );
        assert_eq!(metadump_key(b"key=bad%4"), None);
        assert_eq!(metadump_key(b"key=bad%zz x"), None);
        assert_eq!(url_decode(b"%41%62c%7e"), Some(b"Abc~".to_vec()));
    }

    #[test]
    fn va_replies() {
        let f = parse_va(b"VA 3 f5 t98 c1\r\nabc\r\n").unwrap();
        assert_eq!(
            f,
            Fetched {
                data: b"abc",
                flags: 5,
                ttl: 98,
                cas: 1
            }
        );
        let f = parse_va(b"VA 0 c7 t-1 f0\r\n\r\n").unwrap();
        assert_eq!((f.data, f.ttl, f.cas), (&b""[..], -1, 7));
        assert!(parse_va(b"EN\r\n").is_none());
        assert!(parse_va(b"VA 5 f1\r\nab\r\n").is_none(), "short data");
    }

    #[test]
    fn copies_keep_flags_and_ttl() {
        let f = Fetched {
            data: b"hi",
            flags: 7,
            ttl: -1,
            cas: 3,
        };
        let mut out = BytesMut::new();
        assert!(mc_copy_request(b"k", false, &f, true, &mut out));
        assert_eq!(&out[..], b"ms k 2 F7 T0 ME c\r\nhi\r\n");
        assert!(mc_copy_request(
            b"aw==",
            true,
            &Fetched { ttl: 90, ..f },
            false,
            &mut out
        ));
        assert_eq!(&out[..], b"ms aw== 2 F7 T90 ME b\r\nhi\r\n");
        assert!(!mc_copy_request(
            b"k",
            false,
            &Fetched { ttl: 0, ..f },
            false,
            &mut out
        ));
        assert_eq!(
            exptime_for(RELATIVE_MAX + 5, 1000),
            Some(1000 + RELATIVE_MAX + 5)
        );
        assert_eq!(exptime_for(-1, 1000), Some(0));
        assert_eq!(exptime_for(-2, 1000), None);
        mc_delete_request(b"k", false, 42, &mut out);
        assert_eq!(&out[..], b"md k C42\r\n");
    }

    #[test]
    fn memcache_first_legs() {
        let mut out = BytesMut::new();
        let first = |req: &[u8], out: &mut BytesMut| match mc_first(req, out) {
            (Some(kind), to_new) => (kind, to_new),
            (None, to_new) => panic!("{req:?} needs no resolving (to new: {to_new})"),
        };
        assert_eq!(first(b"get k\r\n", &mut out), (AskKind::McRead, true));
        assert_eq!(&out[..], b"get k\r\n");
        assert_eq!(first(b"mg k v t\r\n", &mut out), (AskKind::McRead, true));
        // Writes that replace the item go to the new owner, final.
        for req in [
            &b"set k 0 0 1\r\nx\r\n"[..],
            b"ms k 1\r\nx\r\n",
            b"ms k 1 MS T9\r\nx\r\n",
        ] {
            assert_eq!(mc_first(req, &mut out), (None, true));
            assert_eq!(&out[..], req);
        }
        assert_eq!(
            first(b"ms k 1 C5\r\nx\r\n", &mut out),
            (AskKind::McWrite, true)
        );
        assert_eq!(first(b"incr k 1\r\n", &mut out), (AskKind::McWrite, true));
        assert_eq!(
            first(b"ms k 1 MA\r\nx\r\n", &mut out),
            (AskKind::McWrite, true)
        );
        assert_eq!(first(b"delete k\r\n", &mut out), (AskKind::McDelete, true));
        assert_eq!(first(b"md k\r\n", &mut out), (AskKind::McDelete, true));
        assert_eq!(
            first(b"add k 0 0 1\r\nx\r\n", &mut out),
            (AskKind::McFetch, false)
        );
        assert_eq!(&out[..], b"mg k v f t c\r\n");
        assert_eq!(
            first(b"ms aw== 1 ME b\r\nx\r\n", &mut out),
            (AskKind::McFetch, false)
        );
        assert_eq!(&out[..], b"mg aw== v f t c b\r\n");
        assert_eq!(
            first(b"mg k v N30\r\n", &mut out),
            (AskKind::McFetch, false)
        );
    }

    #[test]
    fn memcache_reply_classes() {
        assert!(read_missed(b"END\r\n"));
        assert!(read_missed(b"EN\r\n"));
        assert!(read_missed(b"EN kfoo O1\r\n"));
        assert!(!read_missed(b"VALUE k 0 1\r\nx\r\nEND\r\n"));
        assert!(!read_missed(b"ENDX\r\n"));
        assert!(write_missed(b"NOT_FOUND\r\n"));
        assert!(write_missed(b"NOT_STORED\r\n"));
        assert!(write_missed(b"NS c0\r\n"));
        assert!(write_missed(b"NF\r\n"));
        assert!(!write_missed(b"STORED\r\n"));
        assert!(!write_missed(b"EXISTS\r\n"));
        assert!(deleted(b"DELETED\r\n"));
        assert!(deleted(b"HD\r\n"));
        assert!(!deleted(b"NOT_FOUND\r\n"));
        assert_eq!(stored_cas(b"HD c4\r\n"), Some(4));
        assert_eq!(stored_cas(b"HD s2 c9\r\n"), Some(9));
        assert_eq!(stored_cas(b"NS c0\r\n"), None);
    }

    #[test]
    fn keys_as_tokens() {
        assert_eq!(key_token(b"plain:key"), (b"plain:key".to_vec(), false));
        assert_eq!(key_token(b"a b"), (b"YSBi".to_vec(), true));
        assert!(key_token(&[b'x'; 251]).1);
    }

    #[test]
    fn redis_wrapping() {
        let mut req = BytesMut::new();
        encode_command(&[b"SET", b"k", b"v"], &mut req);
        let args = multibulk(&req).unwrap();
        assert_eq!(args, vec![&b"SET"[..], b"k", b"v"]);
        assert_eq!(request_keys(&args), vec![&b"k"[..]]);
        assert!(script_safe(&args, false));
        assert!(
            !script_safe(&args, true),
            "RESP3 replies need the real command"
        );
        let mut out = BytesMut::new();
        script_request(&args, &request_keys(&args), false, &mut out);
        let mut want = BytesMut::new();
        encode_command(
            &[
                b"EVALSHA",
                ASK_SHA.as_bytes(),
                b"1",
                b"k",
                b"SET",
                b"k",
                b"v",
            ],
            &mut want,
        );
        assert_eq!(out, want);
        let mut eval = BytesMut::new();
        encode_command(&[b"EVAL", b"s", b"2", b"a", b"b", b"x"], &mut eval);
        let eargs = multibulk(&eval).unwrap();
        assert_eq!(request_keys(&eargs), vec![&b"a"[..], b"b"]);
        assert!(!script_safe(&eargs, false));
        let mut blpop = BytesMut::new();
        encode_command(&[b"blpop", b"a", b"0"], &mut blpop);
        assert!(!script_safe(&multibulk(&blpop).unwrap(), false));
        assert!(multibulk(b"*2\r\n$3\r\nGET\r\n").is_none());
    }

    /// Runs [`step`] over scripted replies: returns every request sent as (to the new
    /// owner, bytes), and the slot the client's output points at in the end.
    fn drive(kind: AskKind, plain: &[u8], replies: &[&[u8]]) -> (Vec<(bool, Vec<u8>)>, u32) {
        let cfg = crate::config::ProxyConfig::parse(
            "p:\n  listen: 127.0.0.1:1\n  servers:\n   - 127.0.0.1:7001:1 a\n   - 127.0.0.1:7002:1 b\n",
            "test.yml",
        )
        .expect("config");
        let pool = PoolView::from_config(std::sync::Arc::new(cfg.pools[0].clone()));
        let mut a = Ask {
            out: 0,
            part: usize::MAX,
            src: 0,
            dst: 1,
            plain: Bytes::copy_from_slice(plain),
            slot: 0,
            kind,
        };
        let mut sent = Vec::new();
        let mut out_slot = 0;
        let mut scratch = BytesMut::new();
        for r in replies {
            let reply = Bytes::copy_from_slice(r);
            let mut send = |_: &Ask, to_new: bool, b: &[u8]| {
                sent.push((to_new, b.to_vec()));
                sent.len() as u32
            };
            let mut set_slot = |_: usize, _: usize, s: u32| out_slot = s;
            let st = step(
                &mut a,
                Some(&reply),
                &pool,
                true,
                &mut send,
                &mut set_slot,
                &mut scratch,
            );
            if matches!(st, Step::Done) {
                break;
            }
        }
        (sent, out_slot)
    }

    #[test]
    fn memcache_reads_try_new_old_new() {
        let (sent, out) = drive(AskKind::McRead, b"get k\r\n", &[b"END\r\n", b"END\r\n"]);
        assert_eq!(
            sent,
            vec![
                (false, b"get k\r\n".to_vec()),
                (true, b"get k\r\n".to_vec())
            ]
        );
        assert_eq!(out, 2, "the last read answers");
        let (sent, out) = drive(
            AskKind::McRead,
            b"mg k v\r\n",
            &[b"EN\r\n", b"VA 1\r\nx\r\n"],
        );
        assert_eq!(sent.len(), 1);
        assert_eq!(out, 1, "the old owner's hit answers");
        let (sent, _) = drive(
            AskKind::McRead,
            b"get k\r\n",
            &[b"VALUE k 0 1\r\nx\r\nEND\r\n"],
        );
        assert!(sent.is_empty(), "a hit on the new owner is final");
    }

    #[test]
    fn memcache_deletes_hit_every_leg() {
        let plain = b"delete k\r\n";
        let (sent, out) = drive(
            AskKind::McDelete,
            plain,
            &[b"NOT_FOUND\r\n", b"DELETED\r\n"],
        );
        assert_eq!(sent, vec![(false, plain.to_vec()), (true, plain.to_vec())]);
        assert_eq!(out, 1, "DELETED from the old owner");
        let (sent, out) = drive(
            AskKind::McDelete,
            plain,
            &[b"DELETED\r\n", b"NOT_FOUND\r\n"],
        );
        assert_eq!(sent.len(), 2);
        assert_eq!(out, 0, "the first leg's DELETED stays");
        let (_, out) = drive(
            AskKind::McDelete,
            plain,
            &[b"NOT_FOUND\r\n", b"NOT_FOUND\r\n"],
        );
        assert_eq!(out, 2, "the repeated leg answers");
    }

    #[test]
    fn memcache_writes_copy_on_a_miss() {
        let plain = b"incr k 1\r\n";
        let (sent, out) = drive(
            AskKind::McWrite,
            plain,
            &[b"NOT_FOUND\r\n", b"VA 2 f3 t-1 c9\r\n41\r\n", b"HD\r\n"],
        );
        assert_eq!(
            sent,
            vec![
                (false, b"mg k v f t c\r\n".to_vec()),
                (true, b"ms k 2 F3 T0 ME\r\n41\r\n".to_vec()),
                (true, plain.to_vec()),
                (false, b"md k C9\r\n".to_vec()),
            ]
        );
        assert_eq!(out, 3, "the write answers");
        // Another copy got there first: the old item is left to the migrator.
        let (sent, _) = drive(
            AskKind::McWrite,
            plain,
            &[b"NOT_FOUND\r\n", b"VA 2 f3 t-1 c9\r\n41\r\n", b"NS\r\n"],
        );
        assert_eq!(sent.len(), 3);
        // Nothing on the old owner either: the write goes to the new one again.
        let (sent, out) = drive(AskKind::McWrite, plain, &[b"NOT_FOUND\r\n", b"EN\r\n"]);
        assert_eq!(sent.last(), Some(&(true, plain.to_vec())));
        assert_eq!(out, 2);
        let (sent, _) = drive(AskKind::McWrite, b"set k 0 0 1\r\nx\r\n", &[b"STORED\r\n"]);
        assert!(sent.is_empty());
    }

    #[test]
    fn redis_script_verdicts() {
        let mut plain = BytesMut::new();
        encode_command(&[b"GET", b"k"], &mut plain);
        let (sent, out) = drive(AskKind::Script, &plain, &[b"-SHOALMOVED\r\n"]);
        assert_eq!(sent, vec![(true, plain.to_vec())]);
        assert_eq!(out, 1);
        let (sent, _) = drive(AskKind::Script, &plain, &[b"$1\r\nv\r\n"]);
        assert!(sent.is_empty(), "the script's reply is final");
        // NOSCRIPT: EVAL loads it; a split or a command scripts refuse: MIGRATE first.
        let (sent, _) = drive(
            AskKind::Script,
            &plain,
            &[b"-NOSCRIPT No matching script\r\n"],
        );
        assert!(sent[0].1.starts_with(b"*6\r\n$4\r\nEVAL\r\n"));
        for r in [
            &b"-TRYAGAIN shoal-proxy: keys are split\r\n"[..],
            b"-ERR Wrong number of args calling Redis command from script\r\n",
        ] {
            let (sent, out) = drive(AskKind::Script, &plain, &[r, b"+NOKEY\r\n"]);
            assert_eq!(sent.len(), 2);
            assert!(!sent[0].0 && sent[0].1.starts_with(b"*9\r\n$7\r\nMIGRATE\r\n"));
            assert_eq!(sent[1], (true, plain.to_vec()));
            assert_eq!(out, 2);
        }
    }

    /// SHA-1 (FIPS 180-4), to check [`ASK_SHA`] against [`ASK_SCRIPT`].
    fn sha1_hex(msg: &[u8]) -> String {
        let mut h: [u32; 5] = [
            0x6745_2301,
            0xEFCD_AB89,
            0x98BA_DCFE,
            0x1032_5476,
            0xC3D2_E1F0,
        ];
        let mut m = msg.to_vec();
        m.push(0x80);
        while m.len() % 64 != 56 {
            m.push(0);
        }
        m.extend_from_slice(&((msg.len() as u64) * 8).to_be_bytes());
        for block in m.chunks(64) {
            let mut w = [0u32; 80];
            for (i, c) in block.chunks(4).enumerate() {
                w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
            }
            for i in 16..80 {
                w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
            }
            let [mut a, mut b, mut c, mut d, mut e] = h;
            for (i, wi) in w.iter().enumerate() {
                let (f, k) = match i {
                    0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                    20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                    40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                    _ => (b ^ c ^ d, 0xCA62_C1D6),
                };
                let t = a
                    .rotate_left(5)
                    .wrapping_add(f)
                    .wrapping_add(e)
                    .wrapping_add(k)
                    .wrapping_add(*wi);
                (e, d, c, b, a) = (d, c, b.rotate_left(30), a, t);
            }
            for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
                *x = x.wrapping_add(y);
            }
        }
        h.iter().map(|x| format!("{x:08x}")).collect()
    }

    #[test]
    fn script_sha_matches() {
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(sha1_hex(ASK_SCRIPT.as_bytes()), ASK_SHA);
    }

    #[test]
    fn versions() {
        assert!(version("1.6.18") >= (1, 6, 10));
        assert!(version("1.6.9") < (1, 6, 10));
        assert!(version("7.0.15") >= (4, 0, 7));
        assert!(version("4.0.10-rc1") >= (4, 0, 7));
        assert_eq!(version("junk"), (0, 0, 0));
        let s = b"STAT pid 1\r\nSTAT curr_items 12\r\nSTAT lru_crawler yes\r\nEND\r\n";
        assert_eq!(stat(s, "curr_items"), Some("12"));
        assert_eq!(stat(s, "lru_crawler"), Some("yes"));
        assert_eq!(stat(s, "curr"), None);
    }
}
