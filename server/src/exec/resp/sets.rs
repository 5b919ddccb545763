//! Set commands (SADD and friends), Redis 7.0 semantics.
//!
//! Commands over several keys lock every involved shard at once
//! (`lock_many`) and visit the sets one at a time, so they are atomic.

use rand::Rng;
use shoal_keyspace::types::Set;
use shoal_keyspace::{Object, ShardGuard};

use super::hashes::{parse_rand_count, parse_scan_opts, scan_reply};
use super::keys::parse_cursor;
use super::{parse_i64, Ctx, Req, Spec};
use super::{DENYOOM, FAST, K1, K12, KALL, READONLY, WRITE};
use crate::glob;

/// This module's command table rows.
pub(super) fn table() -> Vec<Spec> {
    super::rows! {
    "sadd", -3, WRITE | DENYOOM | FAST, K1, sadd;
    "srem", -3, WRITE | FAST, K1, srem;
    "smembers", 2, READONLY, K1, smembers;
    "sismember", 3, READONLY | FAST, K1, sismember;
    "smismember", -3, READONLY | FAST, K1, smismember;
    "scard", 2, READONLY | FAST, K1, scard;
    "spop", -2, WRITE | FAST, K1, spop;
    "srandmember", -2, READONLY, K1, srandmember;
    "smove", 4, WRITE | FAST, K12, smove;
    "sinter", -2, READONLY, KALL, sinter;
    "sintercard", -3, READONLY, (2, -1, 1), sintercard;
    "sunion", -2, READONLY, KALL, sunion;
    "sdiff", -2, READONLY, KALL, sdiff;
    "sinterstore", -3, WRITE | DENYOOM, KALL, sinterstore;
    "sunionstore", -3, WRITE | DENYOOM, KALL, sunionstore;
    "sdiffstore", -3, WRITE | DENYOOM, KALL, sdiffstore;
    "sscan", -3, READONLY, K1, sscan;
    }
}

/// The set at `key`: Ok(None) when absent, Err after replying WRONGTYPE.
/// `read` counts a keyspace hit/miss (read commands).
fn get_set<'g>(
    ctx: &mut Ctx<'_>,
    g: &'g mut ShardGuard<'_>,
    key: &[u8],
    read: bool,
) -> Result<Option<&'g Set>, ()> {
    super::typed(ctx, g, key, read)
}

/// [`super::upsert`] for sets.
fn upsert<R>(g: &mut ShardGuard<'_>, key: &[u8], now: u64, f: impl FnOnce(&mut Set) -> R) -> R {
    super::upsert(g, key, now, f)
}

/// Runs `f` on the existing set at `key` (type already checked).
fn modify<R: Default>(
    g: &mut ShardGuard<'_>,
    key: &[u8],
    now: u64,
    f: impl FnOnce(&mut Set) -> R,
) -> R {
    g.with_object_mut(key, now, |o| match o {
        Object::Set(s) => f(s),
        _ => R::default(),
    })
    .unwrap_or_default()
}

/// SADD key member [member ...]
pub fn sadd(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let (key, now) = (req.arg(1), ctx.now);
    let mut g = ctx.ks.lock(key);
    if get_set(ctx, &mut g, key, false).is_err() {
        return;
    }
    let n = upsert(&mut g, key, now, |s| {
        req.rest(2).filter(|m| s.insert(m)).count()
    });
    drop(g);
    ctx.w().int(n as i64);
}

/// SREM key member [member ...]
pub fn srem(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let (key, now) = (req.arg(1), ctx.now);
    let mut g = ctx.ks.lock(key);
    let Ok(s) = get_set(ctx, &mut g, key, false) else {
        return;
    };
    if !s.is_some_and(|s| req.rest(2).any(|m| s.contains(m))) {
        ctx.w().int(0);
        return;
    }
    let n = modify(&mut g, key, now, |s| {
        req.rest(2).filter(|m| s.remove(m)).count()
    });
    drop(g);
    ctx.w().int(n as i64);
}

/// SMEMBERS key
pub fn smembers(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let key = req.arg(1);
    let mut g = ctx.ks.lock(key);
    let Ok(s) = get_set(ctx, &mut g, key, true) else {
        return;
    };
    let mut w = ctx.w();
    w.set(s.map_or(0, Set::len));
    for m in s.into_iter().flat_map(Set::iter) {
        m.with_bytes(|b| w.bulk(b));
    }
}

/// SISMEMBER key member
pub fn sismember(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let key = req.arg(1);
    let mut g = ctx.ks.lock(key);
    let Ok(s) = get_set(ctx, &mut g, key, true) else {
        return;
    };
    let n = s.is_some_and(|s| s.contains(req.arg(2)));
    ctx.w().int(n as i64);
}

/// SMISMEMBER key member [member ...]
pub fn smismember(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let key = req.arg(1);
    let mut g = ctx.ks.lock(key);
    let Ok(s) = get_set(ctx, &mut g, key, true) else {
        return;
    };
    let mut w = ctx.w();
    w.array(req.len() - 2);
    for m in req.rest(2) {
        w.int(s.is_some_and(|s| s.contains(m)) as i64);
    }
}

/// SCARD key
pub fn scard(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let key = req.arg(1);
    let mut g = ctx.ks.lock(key);
    let Ok(s) = get_set(ctx, &mut g, key, true) else {
        return;
    };
    let n = s.map_or(0, Set::len);
    ctx.w().int(n as i64);
}

/// SPOP key [count]
pub fn spop(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let count = match req.len() {
        2 => None,
        3 => match parse_i64(req.arg(2)) {
            Some(n) if n >= 0 => Some(n as u64),
            _ => {
                ctx.err("ERR value is out of range, must be positive");
                return;
            }
        },
        _ => {
            ctx.syntax();
            return;
        }
    };
    let (key, now) = (req.arg(1), ctx.now);
    let mut g = ctx.ks.lock(key);
    let Ok(s) = get_set(ctx, &mut g, key, false) else {
        return;
    };
    let len = s.map_or(0, Set::len);
    let Some(count) = count else {
        if len == 0 {
            ctx.w().null();
            return;
        }
        let m = modify(&mut g, key, now, |s| {
            let i = rand::thread_rng().gen_range(0..s.len());
            s.remove_at(i)
        });
        drop(g);
        ctx.w().bulk(&m);
        return;
    };
    if len == 0 || count == 0 {
        drop(g);
        ctx.w().set(0);
        return;
    }
    let popped: Vec<Vec<u8>> = if count >= len as u64 {
        let all = s
            .map(|s| s.iter().map(|m| m.to_vec()).collect())
            .unwrap_or_default();
        g.remove(key, now);
        all
    } else {
        modify(&mut g, key, now, |s| {
            let mut rng = rand::thread_rng();
            (0..count)
                .map(|_| {
                    let i = rng.gen_range(0..s.len());
                    s.remove_at(i)
                })
                .collect()
        })
    };
    drop(g);
    let mut w = ctx.w();
    w.set(popped.len());
    for m in &popped {
        w.bulk(m);
    }
}

/// SRANDMEMBER key [count]
pub fn srandmember(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let count = match req.len() {
        2 => None,
        3 => match parse_rand_count(ctx, req.arg(2)) {
            Some(n) => Some(n),
            None => return,
        },
        _ => {
            ctx.syntax();
            return;
        }
    };
    let key = req.arg(1);
    let mut g = ctx.ks.lock(key);
    let Ok(s) = get_set(ctx, &mut g, key, true) else {
        return;
    };
    let mut rng = rand::thread_rng();
    let Some(count) = count else {
        match s {
            Some(s) => {
                let m = s.member_at(rng.gen_range(0..s.len()));
                m.with_bytes(|b| ctx.w().bulk(b));
            }
            None => ctx.w().null(),
        }
        return;
    };
    let Some(s) = s.filter(|_| count != 0) else {
        ctx.w().array(0);
        return;
    };
    let len = s.len();
    // Negative counts may repeat and are streamed (no index list is built).
    let n = if count < 0 {
        count.unsigned_abs() as usize
    } else {
        (count as u64).min(len as u64) as usize
    };
    let mut w = ctx.w();
    w.array(n);
    let mut emit = |i: usize| s.member_at(i).with_bytes(|b| w.bulk(b));
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

/// SMOVE source destination member
pub fn smove(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let (src, dst, m, now) = (req.arg(1), req.arg(2), req.arg(3), ctx.now);
    let mut mg = ctx.ks.lock_many([src, dst]);
    let Ok(s) = get_set(ctx, mg.shard(src), src, false) else {
        return;
    };
    let Some(s) = s else {
        drop(mg);
        ctx.w().int(0);
        return;
    };
    let is_member = s.contains(m);
    if get_set(ctx, mg.shard(dst), dst, false).is_err() {
        return;
    }
    if src == dst || !is_member {
        drop(mg);
        ctx.w().int(is_member as i64);
        return;
    }
    modify(mg.shard(src), src, now, |s| s.remove(m));
    upsert(mg.shard(dst), dst, now, |s| s.insert(m));
    drop(mg);
    ctx.w().int(1);
}

/// Which set algebra.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Inter,
    Union,
    Diff,
}

/// Result of a set operation over locked shards.
enum Outcome {
    /// WRONGTYPE was replied.
    Failed,
    /// Members in reply order (SINTER: the smallest set's order).
    Members(Vec<Vec<u8>>),
    /// A freshly built set (SUNION / SDIFF / stores): its order is the reply order.
    Built(Set),
}

/// Computes `op` over `keys` with every involved shard locked in `mg`.
/// `read`: count keyspace hits/misses (non-STORE variants). `limit` caps an
/// intersection's size (SINTERCARD; 0 = none).
fn compute(
    ctx: &mut Ctx<'_>,
    mg: &mut shoal_keyspace::MultiGuard<'_>,
    keys: &[&[u8]],
    op: Op,
    read: bool,
    limit: usize,
) -> Outcome {
    // Pass 1: expiry, stats and type checks for every key (WRONGTYPE wins over empty).
    let mut lens = Vec::with_capacity(keys.len());
    for &k in keys {
        match get_set(ctx, mg.shard(k), k, read) {
            Err(()) => return Outcome::Failed,
            Ok(s) => lens.push(s.map(Set::len)),
        }
    }
    let now = ctx.now;
    match op {
        Op::Inter => {
            if lens.iter().any(Option::is_none) {
                return Outcome::Members(Vec::new());
            }
            // Start from the smallest set, then filter by each other set in turn.
            let smallest = (0..keys.len()).min_by_key(|&i| lens[i]).unwrap_or(0);
            let k0 = keys[smallest];
            let mut cand: Vec<Vec<u8>> = match mg.shard(k0).lookup(k0, now).and_then(|e| e.object())
            {
                Some(Object::Set(s)) => s.iter().map(|m| m.to_vec()).collect(),
                _ => Vec::new(),
            };
            for (i, &k) in keys.iter().enumerate() {
                if i == smallest || k == k0 || cand.is_empty() {
                    continue;
                }
                if let Some(Object::Set(s)) = mg.shard(k).lookup(k, now).and_then(|e| e.object()) {
                    cand.retain(|m| s.contains(m));
                }
            }
            if limit > 0 {
                cand.truncate(limit);
            }
            Outcome::Members(cand)
        }
        Op::Diff if keys[1..].contains(&keys[0]) || lens[0].is_none() => Outcome::Built(Set::new()),
        Op::Diff if diff_filters(&lens) => {
            // Redis' "algorithm 1": members of the first set missing from all the
            // others are added one by one (so the result's encoding follows them).
            let k0 = keys[0];
            let mut cand: Vec<Vec<u8>> = match mg.shard(k0).lookup(k0, now).and_then(|e| e.object())
            {
                Some(Object::Set(s)) => s.iter().map(|m| m.to_vec()).collect(),
                _ => Vec::new(),
            };
            for &k in &keys[1..] {
                if cand.is_empty() {
                    break;
                }
                if let Some(Object::Set(s)) = mg.shard(k).lookup(k, now).and_then(|e| e.object()) {
                    cand.retain(|m| !s.contains(m));
                }
            }
            let mut out = Set::new();
            for m in &cand {
                out.insert(m);
            }
            Outcome::Built(out)
        }
        Op::Union | Op::Diff => {
            // Union, or Redis' "algorithm 2" for a difference: add everything of
            // the first set, then remove the others' members.
            let mut out = Set::new();
            for (i, &k) in keys.iter().enumerate() {
                if lens[i].is_none() {
                    continue;
                }
                if op == Op::Diff && i > 0 && out.is_empty() {
                    break;
                }
                let Some(Object::Set(s)) = mg.shard(k).lookup(k, now).and_then(|e| e.object())
                else {
                    continue;
                };
                if op == Op::Union || i == 0 {
                    for m in s.iter() {
                        m.with_bytes(|b| out.insert(b));
                    }
                } else {
                    for m in s.iter() {
                        m.with_bytes(|b| out.remove(b));
                    }
                }
                if op == Op::Diff && i == 0 && out.is_empty() {
                    break;
                }
            }
            Outcome::Built(out)
        }
    }
}

/// Which SDIFF algorithm Redis 7.0 picks: true for "algorithm 1" (filter the
/// first set's members), when `|first| * sets / 2 <= sum of sizes`.
fn diff_filters(lens: &[Option<usize>]) -> bool {
    let Some(first) = lens[0] else {
        return true;
    };
    let present = lens.iter().filter(|l| l.is_some()).count();
    let one = first * present / 2;
    let two: usize = lens.iter().flatten().sum();
    one <= two
}

fn reply_members(ctx: &mut Ctx<'_>, o: Outcome) {
    let mut w = ctx.w();
    match o {
        Outcome::Failed => {}
        Outcome::Members(v) => {
            w.set(v.len());
            for m in &v {
                w.bulk(m);
            }
        }
        Outcome::Built(s) => {
            w.set(s.len());
            for m in s.iter() {
                m.with_bytes(|b| w.bulk(b));
            }
        }
    }
}

fn op_read(ctx: &mut Ctx<'_>, req: &Req<'_>, op: Op) {
    let keys: Vec<&[u8]> = req.rest(1).collect();
    let mut mg = ctx.ks.lock_many(keys.iter().copied());
    let o = compute(ctx, &mut mg, &keys, op, true, 0);
    drop(mg);
    reply_members(ctx, o);
}

fn op_store(ctx: &mut Ctx<'_>, req: &Req<'_>, op: Op) {
    let dst = req.arg(1);
    let keys: Vec<&[u8]> = req.rest(2).collect();
    let now = ctx.now;
    let mut mg = ctx.ks.lock_many(keys.iter().copied().chain([dst]));
    let set = match compute(ctx, &mut mg, &keys, op, false, 0) {
        Outcome::Failed => return,
        Outcome::Members(v) => {
            let mut s = Set::new();
            for m in &v {
                s.insert(m);
            }
            s
        }
        Outcome::Built(s) => s,
    };
    let n = set.len();
    let g = mg.shard(dst);
    if n == 0 {
        g.remove(dst, now);
    } else {
        g.insert_object(dst, Object::Set(set), None, now);
    }
    drop(mg);
    ctx.w().int(n as i64);
}

/// SINTER key [key ...]
pub fn sinter(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    op_read(ctx, req, Op::Inter);
}

/// SUNION key [key ...]
pub fn sunion(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    op_read(ctx, req, Op::Union);
}

/// SDIFF key [key ...]
pub fn sdiff(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    op_read(ctx, req, Op::Diff);
}

/// SINTERSTORE destination key [key ...]
pub fn sinterstore(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    op_store(ctx, req, Op::Inter);
}

/// SUNIONSTORE destination key [key ...]
pub fn sunionstore(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    op_store(ctx, req, Op::Union);
}

/// SDIFFSTORE destination key [key ...]
pub fn sdiffstore(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    op_store(ctx, req, Op::Diff);
}

/// SINTERCARD numkeys key [key ...] [LIMIT limit]
pub fn sintercard(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let numkeys = match parse_i64(req.arg(1)) {
        Some(n) if n > 0 => n as u64,
        _ => {
            ctx.err("ERR numkeys should be greater than 0");
            return;
        }
    };
    if numkeys > (req.len() - 2) as u64 {
        ctx.err("ERR Number of keys can't be greater than number of args");
        return;
    }
    let numkeys = numkeys as usize;
    let mut limit = 0usize;
    let mut i = 2 + numkeys;
    while i < req.len() {
        if super::eq(req.arg(i), "limit") && i + 1 < req.len() {
            match parse_i64(req.arg(i + 1)) {
                Some(n) if n >= 0 => limit = n as usize,
                _ => {
                    ctx.err("ERR LIMIT can't be negative");
                    return;
                }
            }
            i += 2;
        } else {
            ctx.syntax();
            return;
        }
    }
    let keys: Vec<&[u8]> = (2..2 + numkeys).map(|i| req.arg(i)).collect();
    let mut mg = ctx.ks.lock_many(keys.iter().copied());
    let o = compute(ctx, &mut mg, &keys, Op::Inter, true, limit);
    drop(mg);
    if let Outcome::Members(v) = o {
        ctx.w().int(v.len() as i64);
    }
}

/// SSCAN key cursor [MATCH pattern] [COUNT count]
pub fn sscan(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let Some(cursor) = parse_cursor(req.arg(2)) else {
        ctx.err("ERR invalid cursor");
        return;
    };
    let key = req.arg(1);
    let mut g = ctx.ks.lock(key);
    let Ok(s) = get_set(ctx, &mut g, key, true) else {
        return;
    };
    let Some(s) = s else {
        drop(g);
        scan_reply(ctx, 0, &[]);
        return;
    };
    let Some((pattern, count)) = parse_scan_opts(ctx, req, 3) else {
        return;
    };
    let mut items = Vec::new();
    let next = s.scan(cursor, count, |m| {
        m.with_bytes(|b| {
            if pattern.is_none_or(|p| glob::matches(p, b, false)) {
                items.push(b.to_vec());
            }
        })
    });
    drop(g);
    scan_reply(ctx, next, &items);
}
