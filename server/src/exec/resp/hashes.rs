//! Hash commands (HSET and friends), Redis 7.0 semantics.

use rand::Rng;
use shoal_client::resp::Proto;
use shoal_keyspace::types::Hash;
use shoal_keyspace::{Object, ShardGuard};

use super::keys::parse_cursor;
use super::{arity_error, eq, longdouble, parse_i64, Ctx, Req, Spec};
use super::{DENYOOM, FAST, K1, READONLY, WRITE};
use crate::glob;

/// This module's command table rows.
pub(super) fn table() -> Vec<Spec> {
    super::rows! {
    "hset", -4, WRITE | DENYOOM | FAST, K1, hset;
    "hmset", -4, WRITE | DENYOOM | FAST, K1, hmset;
    "hsetnx", 4, WRITE | DENYOOM | FAST, K1, hsetnx;
    "hget", 3, READONLY | FAST, K1, hget;
    "hmget", -3, READONLY | FAST, K1, hmget;
    "hdel", -3, WRITE | FAST, K1, hdel;
    "hexists", 3, READONLY | FAST, K1, hexists;
    "hlen", 2, READONLY | FAST, K1, hlen;
    "hstrlen", 3, READONLY | FAST, K1, hstrlen;
    "hkeys", 2, READONLY, K1, hkeys;
    "hvals", 2, READONLY, K1, hvals;
    "hgetall", 2, READONLY, K1, hgetall;
    "hincrby", 4, WRITE | DENYOOM | FAST, K1, hincrby;
    "hincrbyfloat", 4, WRITE | DENYOOM | FAST, K1, hincrbyfloat;
    "hrandfield", -2, READONLY, K1, hrandfield;
    "hscan", -3, READONLY, K1, hscan;
    }
}

/// The hash at `key` for a read command (counts hit/miss).
fn read_hash<'g>(
    ctx: &mut Ctx<'_>,
    g: &'g mut ShardGuard<'_>,
    key: &[u8],
) -> Result<Option<&'g Hash>, ()> {
    super::typed(ctx, g, key, true)
}

/// The hash at `key` for a write command (no stats).
fn write_hash<'g>(
    ctx: &mut Ctx<'_>,
    g: &'g mut ShardGuard<'_>,
    key: &[u8],
) -> Result<Option<&'g Hash>, ()> {
    super::typed(ctx, g, key, false)
}

/// [`super::upsert`] for hashes.
fn upsert<R>(g: &mut ShardGuard<'_>, key: &[u8], now: u64, f: impl FnOnce(&mut Hash) -> R) -> R {
    super::upsert(g, key, now, f)
}

fn hset_impl(ctx: &mut Ctx<'_>, req: &Req<'_>, name: &str) {
    if req.len() % 2 == 1 {
        arity_error(ctx, name);
        return;
    }
    let (key, now) = (req.arg(1), ctx.now);
    let mut g = ctx.ks.lock(key);
    if write_hash(ctx, &mut g, key).is_err() {
        return;
    }
    let added = upsert(&mut g, key, now, |h| {
        (2..req.len())
            .step_by(2)
            .filter(|&i| h.insert(req.arg(i), req.arg(i + 1)))
            .count()
    });
    drop(g);
    if name == "hset" {
        ctx.w().int(added as i64);
    } else {
        ctx.w().ok();
    }
}

/// HSET key field value [field value ...]
pub fn hset(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    hset_impl(ctx, req, "hset");
}

/// HMSET key field value [field value ...]
pub fn hmset(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    hset_impl(ctx, req, "hmset");
}

/// HSETNX key field value
pub fn hsetnx(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let (key, field, now) = (req.arg(1), req.arg(2), ctx.now);
    let mut g = ctx.ks.lock(key);
    let Ok(h) = write_hash(ctx, &mut g, key) else {
        return;
    };
    if h.is_some_and(|h| h.contains(field)) {
        ctx.w().int(0);
        return;
    }
    upsert(&mut g, key, now, |h| h.insert(field, req.arg(3)));
    ctx.w().int(1);
}

/// HGET key field
pub fn hget(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let key = req.arg(1);
    let mut g = ctx.ks.lock(key);
    let Ok(h) = read_hash(ctx, &mut g, key) else {
        return;
    };
    match h.and_then(|h| h.get(req.arg(2))) {
        Some(v) => ctx.w().bulk(v),
        None => ctx.w().null(),
    }
}

/// HMGET key field [field ...]
pub fn hmget(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let key = req.arg(1);
    let mut g = ctx.ks.lock(key);
    let Ok(h) = read_hash(ctx, &mut g, key) else {
        return;
    };
    let mut w = ctx.w();
    w.array(req.len() - 2);
    for f in req.rest(2) {
        match h.and_then(|h| h.get(f)) {
            Some(v) => w.bulk(v),
            None => w.null(),
        }
    }
}

/// HDEL key field [field ...]
pub fn hdel(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let (key, now) = (req.arg(1), ctx.now);
    let mut g = ctx.ks.lock(key);
    let Ok(h) = write_hash(ctx, &mut g, key) else {
        return;
    };
    if !h.is_some_and(|h| req.rest(2).any(|f| h.contains(f))) {
        ctx.w().int(0);
        return;
    }
    let n = g
        .with_object_mut(key, now, |o| match o {
            Object::Hash(h) => req.rest(2).filter(|f| h.remove(f)).count(),
            _ => 0,
        })
        .unwrap_or(0);
    ctx.w().int(n as i64);
}

/// HEXISTS key field
pub fn hexists(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let key = req.arg(1);
    let mut g = ctx.ks.lock(key);
    let Ok(h) = read_hash(ctx, &mut g, key) else {
        return;
    };
    let n = h.is_some_and(|h| h.contains(req.arg(2)));
    ctx.w().int(n as i64);
}

/// HLEN key
pub fn hlen(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let key = req.arg(1);
    let mut g = ctx.ks.lock(key);
    let Ok(h) = read_hash(ctx, &mut g, key) else {
        return;
    };
    let n = h.map_or(0, Hash::len);
    ctx.w().int(n as i64);
}

/// HSTRLEN key field
pub fn hstrlen(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let key = req.arg(1);
    let mut g = ctx.ks.lock(key);
    let Ok(h) = read_hash(ctx, &mut g, key) else {
        return;
    };
    let n = h.and_then(|h| h.get(req.arg(2))).map_or(0, <[u8]>::len);
    ctx.w().int(n as i64);
}

/// What HKEYS / HVALS / HGETALL emit.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Keys,
    Vals,
    All,
}

fn hgetall_impl(ctx: &mut Ctx<'_>, req: &Req<'_>, part: Part) {
    let key = req.arg(1);
    let mut g = ctx.ks.lock(key);
    let Ok(h) = read_hash(ctx, &mut g, key) else {
        return;
    };
    let mut w = ctx.w();
    let n = h.map_or(0, Hash::len);
    if part == Part::All {
        w.map(n);
    } else {
        w.array(n);
    }
    for (f, v) in h.into_iter().flat_map(Hash::iter) {
        if part != Part::Vals {
            w.bulk(f);
        }
        if part != Part::Keys {
            w.bulk(v);
        }
    }
}

/// HKEYS key
pub fn hkeys(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    hgetall_impl(ctx, req, Part::Keys);
}

/// HVALS key
pub fn hvals(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    hgetall_impl(ctx, req, Part::Vals);
}

/// HGETALL key
pub fn hgetall(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    hgetall_impl(ctx, req, Part::All);
}

/// HINCRBY key field increment
pub fn hincrby(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let Some(incr) = parse_i64(req.arg(3)) else {
        ctx.not_int();
        return;
    };
    let (key, field, now) = (req.arg(1), req.arg(2), ctx.now);
    let mut g = ctx.ks.lock(key);
    let Ok(h) = write_hash(ctx, &mut g, key) else {
        return;
    };
    let cur = match h.and_then(|h| h.get(field)) {
        None => 0,
        Some(v) => match parse_i64(v) {
            Some(n) => n,
            None => {
                ctx.err("ERR hash value is not an integer");
                return;
            }
        },
    };
    let Some(new) = cur.checked_add(incr) else {
        ctx.err("ERR increment or decrement would overflow");
        return;
    };
    let mut buf = itoa::Buffer::new();
    let text = buf.format(new);
    upsert(&mut g, key, now, |h| h.insert(field, text.as_bytes()));
    ctx.w().int(new);
}

/// HINCRBYFLOAT key field increment (x87 long double arithmetic, like Redis).
pub fn hincrbyfloat(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let Some(incr) = longdouble::parse(req.arg(3)) else {
        ctx.err("ERR value is not a valid float");
        return;
    };
    let zero = longdouble::parse(b"0").expect("zero parses");
    if longdouble::add(zero, incr).is_none() {
        ctx.err("ERR value is NaN or Infinity");
        return;
    }
    let (key, field, now) = (req.arg(1), req.arg(2), ctx.now);
    let mut g = ctx.ks.lock(key);
    let Ok(h) = write_hash(ctx, &mut g, key) else {
        return;
    };
    let cur = match h.and_then(|h| h.get(field)) {
        None => zero,
        Some(v) => match longdouble::parse(v) {
            Some(x) => x,
            None => {
                ctx.err("ERR hash value is not a float");
                return;
            }
        },
    };
    let Some(new) = longdouble::add(cur, incr) else {
        ctx.err("ERR increment would produce NaN or Infinity");
        return;
    };
    let text = longdouble::format_human(new);
    upsert(&mut g, key, now, |h| h.insert(field, text.as_bytes()));
    ctx.w().bulk(text.as_bytes());
}

/// Parses a HRANDFIELD / SRANDMEMBER count: an integer in ±(2^63-1).
pub(super) fn parse_rand_count(ctx: &mut Ctx<'_>, b: &[u8]) -> Option<i64> {
    match parse_i64(b) {
        None => {
            ctx.not_int();
            None
        }
        Some(i64::MIN) => {
            ctx.err("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807");
            None
        }
        Some(n) => Some(n),
    }
}

/// HRANDFIELD key [count [WITHVALUES]]
pub fn hrandfield(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let key = req.arg(1);
    if req.len() == 2 {
        let mut g = ctx.ks.lock(key);
        let Ok(h) = read_hash(ctx, &mut g, key) else {
            return;
        };
        match h {
            Some(h) => {
                let i = rand::thread_rng().gen_range(0..h.len());
                let (f, _) = h.pair_at(i);
                ctx.w().bulk(f);
            }
            None => ctx.w().null(),
        }
        return;
    }
    let Some(count) = parse_rand_count(ctx, req.arg(2)) else {
        return;
    };
    let withvalues = match req.len() {
        3 => false,
        4 if eq(req.arg(3), "withvalues") => true,
        _ => {
            ctx.syntax();
            return;
        }
    };
    if withvalues && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&count) {
        ctx.err("ERR value is out of range");
        return;
    }
    let mut g = ctx.ks.lock(key);
    let Ok(h) = read_hash(ctx, &mut g, key) else {
        return;
    };
    let Some(h) = h.filter(|_| count != 0) else {
        ctx.w().array(0);
        return;
    };
    let resp3 = ctx.conn.proto == Proto::Resp3;
    let len = h.len();
    // Pairs to emit, as indexes into iteration order.
    // Positional access is linear in a listpack: materialize it (≤ 512 pairs).
    let pairs: Vec<(&[u8], &[u8])> = if h.encoding() == "listpack" {
        h.iter().collect()
    } else {
        Vec::new()
    };
    let pair = |i: usize| {
        if pairs.is_empty() {
            h.pair_at(i)
        } else {
            pairs[i]
        }
    };
    // Negative counts may repeat and are streamed (no index list is built).
    let n = if count < 0 {
        count.unsigned_abs() as usize
    } else {
        (count as u64).min(len as u64) as usize
    };
    let mut w = ctx.w();
    w.array(if withvalues && !resp3 { n * 2 } else { n });
    let mut emit = |i: usize| {
        let (f, v) = pair(i);
        if withvalues && resp3 {
            w.array(2);
        }
        w.bulk(f);
        if withvalues {
            w.bulk(v);
        }
    };
    let mut rng = rand::thread_rng();
    if count < 0 {
        for _ in 0..n {
            emit(rng.gen_range(0..len));
        }
    } else if n == len {
        (0..len).for_each(emit);
    } else {
        rand::seq::index::sample(&mut rng, len, n)
            .into_iter()
            .for_each(emit);
    }
}

/// Parsed `[MATCH pattern] [COUNT n]` of HSCAN / SSCAN; None after replying an error.
pub(super) fn parse_scan_opts<'a>(
    ctx: &mut Ctx<'_>,
    req: &Req<'a>,
    from: usize,
) -> Option<(Option<&'a [u8]>, usize)> {
    let (mut pattern, mut count) = (None, 10usize);
    let mut i = from;
    while i < req.len() {
        let a = req.arg(i);
        let has_next = i + 1 < req.len();
        if eq(a, "count") && has_next {
            match parse_i64(req.arg(i + 1)) {
                Some(n) if n >= 1 => count = n as usize,
                Some(_) => {
                    ctx.syntax();
                    return None;
                }
                None => {
                    ctx.not_int();
                    return None;
                }
            }
        } else if eq(a, "match") && has_next {
            let p = req.arg(i + 1);
            pattern = (p != b"*").then_some(p);
        } else {
            ctx.syntax();
            return None;
        }
        i += 2;
    }
    Some((pattern, count))
}

/// Writes a SCAN-style reply: `[cursor, [items...]]`.
pub(super) fn scan_reply(ctx: &mut Ctx<'_>, cursor: u64, items: &[Vec<u8>]) {
    let mut w = ctx.w();
    w.array(2);
    w.bulk_int(cursor as i64);
    w.array(items.len());
    for it in items {
        w.bulk(it);
    }
}

/// HSCAN key cursor [MATCH pattern] [COUNT count]
pub fn hscan(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let Some(cursor) = parse_cursor(req.arg(2)) else {
        ctx.err("ERR invalid cursor");
        return;
    };
    let key = req.arg(1);
    let mut g = ctx.ks.lock(key);
    let Ok(h) = read_hash(ctx, &mut g, key) else {
        return;
    };
    let Some(h) = h else {
        drop(g);
        scan_reply(ctx, 0, &[]);
        return;
    };
    // Options are only looked at once the key exists (like Redis).
    let Some((pattern, count)) = parse_scan_opts(ctx, req, 3) else {
        return;
    };
    let mut items = Vec::new();
    let next = h.scan(cursor, count, |f, v| {
        if pattern.is_none_or(|p| glob::matches(p, f, false)) {
            items.push(f.to_vec());
            items.push(v.to_vec());
        }
    });
    drop(g);
    scan_reply(ctx, next, &items);
}
