//! Sorted set commands (ZADD and friends), Redis 7.0 semantics.
//!
//! Parsing mirrors `t_zset.c`: every argument is validated before the key is
//! touched (except where Redis looks the keys up first, e.g. ZUNION & co. check
//! key types before options), and error texts are Redis's.

use std::collections::HashMap;
use std::time::Duration;

use rand::seq::index;
use rand::Rng;
use shoal_client::resp::{format_double, Proto};
use shoal_keyspace::types::{Set, ZSet};
use shoal_keyspace::{Entry, Object, ObjectKind, ShardGuard};

use super::{eq, parse_i64, Ctx, Req, Spec, TimeoutReply};
use super::{DENYOOM, FAST, K1, K12, NK, READONLY, WRITE};

/// This module's command table rows.
pub(super) fn table() -> Vec<Spec> {
    super::rows! {
    "zadd", -4, WRITE | DENYOOM | FAST, K1, zadd;
    "zincrby", 4, WRITE | DENYOOM | FAST, K1, zincrby;
    "zrem", -3, WRITE | FAST, K1, zrem;
    "zcard", 2, READONLY | FAST, K1, zcard;
    "zcount", 4, READONLY | FAST, K1, zcount;
    "zlexcount", 4, READONLY | FAST, K1, zlexcount;
    "zscore", 3, READONLY | FAST, K1, zscore;
    "zmscore", -3, READONLY | FAST, K1, zmscore;
    "zrank", 3, READONLY | FAST, K1, zrank;
    "zrevrank", 3, READONLY | FAST, K1, zrevrank;
    "zrange", -4, READONLY, K1, zrange;
    "zrangestore", -5, WRITE | DENYOOM, K12, zrangestore;
    "zrevrange", -4, READONLY, K1, zrevrange;
    "zrangebyscore", -4, READONLY, K1, zrangebyscore;
    "zrevrangebyscore", -4, READONLY, K1, zrevrangebyscore;
    "zrangebylex", -4, READONLY, K1, zrangebylex;
    "zrevrangebylex", -4, READONLY, K1, zrevrangebylex;
    "zremrangebyrank", 4, WRITE, K1, zremrangebyrank;
    "zremrangebyscore", 4, WRITE, K1, zremrangebyscore;
    "zremrangebylex", 4, WRITE, K1, zremrangebylex;
    "zpopmin", -2, WRITE | FAST, K1, zpopmin;
    "zpopmax", -2, WRITE | FAST, K1, zpopmax;
    "zmpop", -4, WRITE, NK, zmpop;
    "bzpopmin", -3, WRITE | FAST, (1, -2, 1), bzpopmin;
    "bzpopmax", -3, WRITE | FAST, (1, -2, 1), bzpopmax;
    "bzmpop", -5, WRITE, NK, bzmpop;
    "zrandmember", -2, READONLY, K1, zrandmember;
    "zunion", -3, READONLY, NK, zunion;
    "zinter", -3, READONLY, NK, zinter;
    "zdiff", -3, READONLY, NK, zdiff;
    "zunionstore", -4, WRITE | DENYOOM, K1, zunionstore;
    "zinterstore", -4, WRITE | DENYOOM, K1, zinterstore;
    "zdiffstore", -4, WRITE | DENYOOM, K1, zdiffstore;
    "zintercard", -3, READONLY, NK, zintercard;
    "zscan", -3, READONLY, K1, zscan;
    }
}

// ---------------------------------------------------------------------------------------
// parsing helpers

/// glibc `strtod` on a NUL-free byte string: returns (value, bytes consumed, ERANGE).
/// Consumed is 0 when no conversion could be performed.
pub(super) fn strtod(s: &[u8]) -> (f64, usize, bool) {
    let mut i = 0;
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
        i += 1;
    }
    let start = i;
    let neg = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let sign = if neg { -1.0 } else { 1.0 };
    let rest = &s[i..];
    let lower = |n: usize| -> Vec<u8> { rest.iter().take(n).map(u8::to_ascii_lowercase).collect() };
    if lower(8) == b"infinity" {
        return (sign * f64::INFINITY, i + 8, false);
    }
    if lower(3) == b"inf" {
        return (sign * f64::INFINITY, i + 3, false);
    }
    if lower(3) == b"nan" {
        let mut n = i + 3;
        if s.get(n) == Some(&b'(') {
            let mut k = n + 1;
            while k < s.len() && (s[k].is_ascii_alphanumeric() || s[k] == b'_') {
                k += 1;
            }
            if s.get(k) == Some(&b')') {
                n = k + 1;
            }
        }
        return (f64::NAN, n, false);
    }
    // Hexadecimal floating point.
    if rest.len() > 2 && rest[0] == b'0' && (rest[1] | 0x20) == b'x' {
        let mut k = i + 2;
        let mut mant = 0f64;
        let mut exp: i64 = 0;
        let mut digits = 0;
        while k < s.len() && s[k].is_ascii_hexdigit() {
            mant = mant * 16.0 + (s[k] as char).to_digit(16).unwrap_or(0) as f64;
            digits += 1;
            k += 1;
        }
        if k < s.len() && s[k] == b'.' {
            k += 1;
            while k < s.len() && s[k].is_ascii_hexdigit() {
                mant = mant * 16.0 + (s[k] as char).to_digit(16).unwrap_or(0) as f64;
                exp -= 4;
                digits += 1;
                k += 1;
            }
        }
        if digits > 0 {
            if k < s.len() && (s[k] | 0x20) == b'p' {
                let mut e = k + 1;
                let eneg = match s.get(e) {
                    Some(b'-') => {
                        e += 1;
                        true
                    }
                    Some(b'+') => {
                        e += 1;
                        false
                    }
                    _ => false,
                };
                let ds = e;
                let mut ev: i64 = 0;
                while e < s.len() && s[e].is_ascii_digit() {
                    ev = (ev * 10 + (s[e] - b'0') as i64).min(100_000);
                    e += 1;
                }
                if e > ds {
                    exp += if eneg { -ev } else { ev };
                    k = e;
                }
            }
            let v = mant * 2f64.powi(exp.clamp(-10_000, 10_000) as i32);
            let erange = v.is_infinite() || (v == 0.0 && mant != 0.0);
            return (sign * v, k, erange);
        }
        // "0x" without digits parses as "0".
        return (sign * 0.0, i + 1, false);
    }
    let mut k = i;
    let mut digits = 0;
    let mut nonzero = false;
    while k < s.len() && s[k].is_ascii_digit() {
        nonzero |= s[k] != b'0';
        digits += 1;
        k += 1;
    }
    if k < s.len() && s[k] == b'.' {
        k += 1;
        while k < s.len() && s[k].is_ascii_digit() {
            nonzero |= s[k] != b'0';
            digits += 1;
            k += 1;
        }
    }
    if digits == 0 {
        let _ = start;
        return (0.0, 0, false);
    }
    if k < s.len() && (s[k] | 0x20) == b'e' {
        let mut e = k + 1;
        if e < s.len() && (s[e] == b'+' || s[e] == b'-') {
            e += 1;
        }
        let ds = e;
        while e < s.len() && s[e].is_ascii_digit() {
            e += 1;
        }
        if e > ds {
            k = e;
        }
    }
    let text = std::str::from_utf8(&s[i..k]).unwrap_or("0");
    let v: f64 = text.parse().unwrap_or(0.0);
    let erange = v.is_infinite() || (v == 0.0 && nonzero);
    (sign * v, k, erange)
}

/// Redis `getDoubleFromObject`: the whole string must be a float; no leading
/// space, no overflow/underflow to 0, no NaN.
fn parse_score(b: &[u8]) -> Option<f64> {
    if b.is_empty() || b[0].is_ascii_whitespace() || b[0] == 0x0b {
        return None;
    }
    let (v, n, erange) = strtod(b);
    if n != b.len() || (erange && (v.is_infinite() || v == 0.0)) || v.is_nan() {
        return None;
    }
    Some(v)
}

/// A C string view: Redis parses range items with `strtod` on the C string.
fn cstr(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(p) => &b[..p],
        None => b,
    }
}

/// A score range (`zrangespec`).
#[derive(Clone, Copy, Debug)]
struct ScoreRange {
    min: f64,
    max: f64,
    minex: bool,
    maxex: bool,
}

fn parse_score_item(b: &[u8]) -> Option<(f64, bool)> {
    let b = cstr(b);
    let (ex, s) = match b.first() {
        Some(b'(') => (true, &b[1..]),
        _ => (false, b),
    };
    let (v, n, _) = strtod(s);
    // No conversion leaves the end pointer at the start: valid only for "".
    if (n == 0 && !s.is_empty()) || (n != 0 && n != s.len()) || v.is_nan() {
        return None;
    }
    Some((v, ex))
}

fn parse_score_range(min: &[u8], max: &[u8]) -> Option<ScoreRange> {
    let (min, minex) = parse_score_item(min)?;
    let (max, maxex) = parse_score_item(max)?;
    Some(ScoreRange {
        min,
        max,
        minex,
        maxex,
    })
}

/// A lex range item (`zslParseLexRangeItem`).
#[derive(Clone, Debug)]
enum Lex {
    Min,
    Max,
    Incl(Vec<u8>),
    Excl(Vec<u8>),
}

fn parse_lex_item(b: &[u8]) -> Option<Lex> {
    match b.first() {
        Some(b'+') if b.len() == 1 || b[1] == 0 => Some(Lex::Max),
        Some(b'-') if b.len() == 1 || b[1] == 0 => Some(Lex::Min),
        Some(b'(') => Some(Lex::Excl(b[1..].to_vec())),
        Some(b'[') => Some(Lex::Incl(b[1..].to_vec())),
        _ => None,
    }
}

/// Ascending rank bounds `[lo, hi)` of the elements within a score range.
fn score_bounds(z: &ZSet, r: &ScoreRange) -> (usize, usize) {
    let lo = z.count_score_below(r.min, r.minex);
    let hi = z.count_score_below(r.max, !r.maxex);
    (lo, hi.max(lo))
}

/// Ascending rank bounds `[lo, hi)` of the elements within a lex range.
fn lex_bounds(z: &ZSet, min: &Lex, max: &Lex) -> (usize, usize) {
    let lo = match min {
        Lex::Min => 0,
        Lex::Max => z.len(),
        Lex::Incl(b) => z.count_while(|m, _| m < b.as_slice()),
        Lex::Excl(b) => z.count_while(|m, _| m <= b.as_slice()),
    };
    let hi = match max {
        Lex::Min => 0,
        Lex::Max => z.len(),
        Lex::Incl(b) => z.count_while(|m, _| m <= b.as_slice()),
        Lex::Excl(b) => z.count_while(|m, _| m < b.as_slice()),
    };
    (lo, hi.max(lo))
}

/// Redis `d2string`, used for ZSCAN scores: integral values within ±LLONG_MAX/2
/// print as integers (so -0 is "0"), everything else with `%.17g`.
fn d2string(d: f64) -> Vec<u8> {
    const HALF: f64 = (i64::MAX / 2) as f64;
    if (-HALF..=HALF).contains(&d) && (d as i64) as f64 == d {
        return (d as i64).to_string().into_bytes();
    }
    let mut v = Vec::with_capacity(24);
    format_double(d, &mut v);
    v
}

/// The zset at an entry: Ok(None) when absent, Err when another type.
fn as_zset(e: Option<&Entry>) -> Result<Option<&ZSet>, ()> {
    match e {
        None => Ok(None),
        Some(e) => e.object().and_then(ZSet::of).map(Some).ok_or(()),
    }
}

fn zset_mut(o: &mut Object) -> &mut ZSet {
    ZSet::of_mut(o).expect("type checked before")
}

fn resp3(ctx: &Ctx<'_>) -> bool {
    ctx.conn.proto == Proto::Resp3
}

/// Writes (member, score) pairs: RESP2 flat, RESP3 nested pairs when `withscores`.
fn reply_items(ctx: &mut Ctx<'_>, items: &[(Vec<u8>, f64)], withscores: bool) {
    let r3 = resp3(ctx);
    let mut w = ctx.w();
    w.array(if withscores && !r3 {
        items.len() * 2
    } else {
        items.len()
    });
    for (m, s) in items {
        if withscores && r3 {
            w.array(2);
        }
        w.bulk(m);
        if withscores {
            w.double(*s);
        }
    }
}

// ---------------------------------------------------------------------------------------
// ZADD / ZINCRBY / ZREM

const NX: u8 = 1;
const XX: u8 = 2;
const GT: u8 = 4;
const LT: u8 = 8;
const INCR: u8 = 16;

#[derive(Default)]
struct AddOut {
    added: usize,
    updated: usize,
    processed: usize,
    score: f64,
}

/// Redis `zsetAdd` for one element. Err on a NaN result.
fn zset_add(
    z: &mut ZSet,
    member: &[u8],
    mut score: f64,
    flags: u8,
    out: &mut AddOut,
) -> Result<(), ()> {
    match z.score(member) {
        Some(cur) => {
            if flags & NX != 0 {
                return Ok(());
            }
            if flags & INCR != 0 {
                score += cur;
                if score.is_nan() {
                    return Err(());
                }
            }
            if (flags & LT != 0 && score >= cur) || (flags & GT != 0 && score <= cur) {
                return Ok(());
            }
            out.score = score;
            out.processed += 1;
            #[allow(clippy::float_cmp)]
            if score != cur {
                z.insert(member, score);
                out.updated += 1;
            }
            Ok(())
        }
        None => {
            if flags & XX != 0 {
                return Ok(());
            }
            z.insert(member, score);
            out.score = score;
            out.added += 1;
            out.processed += 1;
            Ok(())
        }
    }
}

fn zadd_generic(ctx: &mut Ctx<'_>, req: &Req<'_>, mut flags: u8) {
    let mut ch = false;
    let mut idx = 2;
    while idx < req.len() {
        let a = req.arg(idx);
        if eq(a, "nx") {
            flags |= NX;
        } else if eq(a, "xx") {
            flags |= XX;
        } else if eq(a, "ch") {
            ch = true;
        } else if eq(a, "incr") {
            flags |= INCR;
        } else if eq(a, "gt") {
            flags |= GT;
        } else if eq(a, "lt") {
            flags |= LT;
        } else {
            break;
        }
        idx += 1;
    }
    let elements = req.len() - idx;
    if elements % 2 != 0 || elements == 0 {
        ctx.syntax();
        return;
    }
    let n = elements / 2;
    let has = |f: u8| flags & f != 0;
    if has(NX) && has(XX) {
        ctx.err("ERR XX and NX options at the same time are not compatible");
        return;
    }
    if (has(GT) && has(NX)) || (has(LT) && has(NX)) || (has(GT) && has(LT)) {
        ctx.err("ERR GT, LT, and/or NX options at the same time are not compatible");
        return;
    }
    if has(INCR) && n > 1 {
        ctx.err("ERR INCR option supports a single increment-element pair");
        return;
    }
    let mut scores = Vec::with_capacity(n);
    for j in 0..n {
        match parse_score(req.arg(idx + 2 * j)) {
            Some(s) => scores.push(s),
            None => {
                ctx.err("ERR value is not a valid float");
                return;
            }
        }
    }
    let key = req.arg(1);
    let now = ctx.now;
    let mut g = ctx.ks.lock(key);
    let exists = match as_zset(g.lookup(key, now)) {
        Err(()) => {
            ctx.wrongtype();
            return;
        }
        Ok(z) => z.is_some(),
    };
    let apply = |z: &mut ZSet, out: &mut AddOut| -> Result<(), ()> {
        for (j, &s) in scores.iter().enumerate() {
            zset_add(z, req.arg(idx + 2 * j + 1), s, flags, out)?;
        }
        Ok(())
    };
    let mut out = AddOut::default();
    let res = if exists {
        g.with_object_mut(key, now, |o| apply(zset_mut(o), &mut out))
            .unwrap_or(Ok(()))
    } else if has(XX) {
        Ok(())
    } else {
        let first = req.arg(idx + 1);
        let mut z = if first.len() > ZSet::MAX_LISTPACK_VALUE {
            ZSet::new_skiplist()
        } else {
            ZSet::new()
        };
        let r = apply(&mut z, &mut out);
        if !z.is_empty() {
            g.insert_object(key, Object::ZSet(z), None, now);
        }
        r
    };
    drop(g);
    if res.is_err() {
        ctx.err("ERR resulting score is not a number (NaN)");
        return;
    }
    if has(INCR) {
        if out.processed > 0 {
            ctx.w().double(out.score);
        } else {
            ctx.w().null();
        }
    } else {
        let n = if ch {
            out.added + out.updated
        } else {
            out.added
        };
        ctx.w().int(n as i64);
    }
}

/// ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]
pub fn zadd(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    zadd_generic(ctx, req, 0);
}

/// ZINCRBY key increment member
pub fn zincrby(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    zadd_generic(ctx, req, INCR);
}

/// ZREM key member [member ...]
pub fn zrem(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let key = req.arg(1);
    let now = ctx.now;
    let mut g = ctx.ks.lock(key);
    match as_zset(g.lookup(key, now)) {
        Err(()) => return ctx.wrongtype(),
        Ok(None) => return ctx.w().int(0),
        Ok(Some(_)) => {}
    }
    let n = g
        .with_object_mut(key, now, |o| {
            let z = zset_mut(o);
            let mut n = 0;
            for m in req.rest(2) {
                if z.remove(m).is_some() {
                    n += 1;
                }
                if z.is_empty() {
                    break;
                }
            }
            n
        })
        .unwrap_or(0);
    drop(g);
    ctx.w().int(n);
}

// ---------------------------------------------------------------------------------------
// simple reads

/// Runs `f` on the zset at `key` (read lookup). Replies WRONGTYPE itself; `f`
/// gets None when the key is absent.
fn with_read<R>(ctx: &mut Ctx<'_>, key: &[u8], f: impl FnOnce(Option<&ZSet>) -> R) -> Option<R> {
    let no_touch = ctx.conn.no_touch;
    let mut g = ctx.ks.lock(key);
    match as_zset(g.lookup_read(key, ctx.now, no_touch)) {
        Err(()) => {
            drop(g);
            ctx.wrongtype();
            None
        }
        Ok(z) => Some(f(z)),
    }
}

/// ZCARD key
pub fn zcard(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    if let Some(n) = with_read(ctx, req.arg(1), |z| z.map_or(0, |z| z.len())) {
        ctx.w().int(n as i64);
    }
}

/// ZCOUNT key min max
pub fn zcount(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let Some(r) = parse_score_range(req.arg(2), req.arg(3)) else {
        return ctx.err("ERR min or max is not a float");
    };
    if let Some(n) = with_read(ctx, req.arg(1), |z| {
        z.map_or(0, |z| {
            let (lo, hi) = score_bounds(z, &r);
            hi - lo
        })
    }) {
        ctx.w().int(n as i64);
    }
}

/// ZLEXCOUNT key min max
pub fn zlexcount(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let (Some(min), Some(max)) = (parse_lex_item(req.arg(2)), parse_lex_item(req.arg(3))) else {
        return ctx.err("ERR min or max not valid string range item");
    };
    if let Some(n) = with_read(ctx, req.arg(1), |z| {
        z.map_or(0, |z| {
            let (lo, hi) = lex_bounds(z, &min, &max);
            hi - lo
        })
    }) {
        ctx.w().int(n as i64);
    }
}

/// ZSCORE key member
pub fn zscore(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    if let Some(s) = with_read(ctx, req.arg(1), |z| z.and_then(|z| z.score(req.arg(2)))) {
        match s {
            Some(s) => ctx.w().double(s),
            None => ctx.w().null(),
        }
    }
}

/// ZMSCORE key member [member ...]
pub fn zmscore(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let scores = with_read(ctx, req.arg(1), |z| {
        req.rest(2)
            .map(|m| z.and_then(|z| z.score(m)))
            .collect::<Vec<_>>()
    });
    if let Some(scores) = scores {
        let mut w = ctx.w();
        w.array(scores.len());
        for s in scores {
            match s {
                Some(s) => w.double(s),
                None => w.null(),
            }
        }
    }
}

fn zrank_generic(ctx: &mut Ctx<'_>, req: &Req<'_>, rev: bool) {
    let r = with_read(ctx, req.arg(1), |z| {
        z.and_then(|z| {
            z.rank(req.arg(2))
                .map(|r| if rev { z.len() - 1 - r } else { r })
        })
    });
    if let Some(r) = r {
        match r {
            Some(r) => ctx.w().int(r as i64),
            None => ctx.w().null(),
        }
    }
}

/// ZRANK key member
pub fn zrank(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    zrank_generic(ctx, req, false);
}

/// ZREVRANK key member
pub fn zrevrank(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    zrank_generic(ctx, req, true);
}

// ---------------------------------------------------------------------------------------
// ZRANGE family

#[derive(Clone, Copy, PartialEq, Eq)]
enum RangeType {
    Auto,
    Rank,
    Score,
    Lex,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Auto,
    Fwd,
    Rev,
}

enum Bounds {
    Rank(i64, i64),
    Score(ScoreRange),
    Lex(Lex, Lex),
}

/// Which ascending ranks a range query selects: `lo..hi`, visited in reverse when `rev`.
fn select(z: &ZSet, b: &Bounds, rev: bool, offset: i64, limit: i64) -> (usize, usize) {
    let len = z.len() as i64;
    match b {
        Bounds::Rank(start, end) => {
            let (mut s, mut e) = (*start, *end);
            if s < 0 {
                s += len;
            }
            if e < 0 {
                e += len;
            }
            if s < 0 {
                s = 0;
            }
            if s > e || s >= len {
                return (0, 0);
            }
            if e >= len {
                e = len - 1;
            }
            if rev {
                ((len - 1 - e) as usize, (len - s) as usize)
            } else {
                (s as usize, (e + 1) as usize)
            }
        }
        Bounds::Score(_) | Bounds::Lex(..) => {
            let (lo, hi) = match b {
                Bounds::Score(r) => score_bounds(z, r),
                Bounds::Lex(min, max) => lex_bounds(z, min, max),
                Bounds::Rank(..) => unreachable!(),
            };
            if offset < 0 || lo >= hi {
                return (0, 0);
            }
            let avail = (hi - lo) as u64;
            let off = offset as u64;
            if off >= avail {
                return (0, 0);
            }
            let take = if limit < 0 {
                avail - off
            } else {
                (limit as u64).min(avail - off)
            } as usize;
            let off = off as usize;
            if rev {
                (hi - off - take, hi - off)
            } else {
                (lo + off, lo + off + take)
            }
        }
    }
}

fn zrange_generic(
    ctx: &mut Ctx<'_>,
    req: &Req<'_>,
    start: usize,
    store: bool,
    mut rt: RangeType,
    mut dir: Dir,
) {
    let (mut minidx, mut maxidx) = (start + 1, start + 2);
    let mut withscores = false;
    let (mut offset, mut limit) = (0i64, -1i64);
    let mut j = start + 3;
    while j < req.len() {
        let left = req.len() - j - 1;
        let a = req.arg(j);
        if !store && eq(a, "withscores") {
            withscores = true;
        } else if eq(a, "limit") && left >= 2 {
            match (parse_i64(req.arg(j + 1)), parse_i64(req.arg(j + 2))) {
                (Some(o), Some(l)) => {
                    offset = o;
                    limit = l;
                }
                _ => return ctx.not_int(),
            }
            j += 2;
        } else if dir == Dir::Auto && eq(a, "rev") {
            dir = Dir::Rev;
        } else if rt == RangeType::Auto && eq(a, "bylex") {
            rt = RangeType::Lex;
        } else if rt == RangeType::Auto && eq(a, "byscore") {
            rt = RangeType::Score;
        } else {
            return ctx.syntax();
        }
        j += 1;
    }
    if dir == Dir::Auto {
        dir = Dir::Fwd;
    }
    if rt == RangeType::Auto {
        rt = RangeType::Rank;
    }
    if limit != -1 && rt == RangeType::Rank {
        return ctx.err(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        );
    }
    if withscores && rt == RangeType::Lex {
        return ctx.err("ERR syntax error, WITHSCORES not supported in combination with BYLEX");
    }
    let rev = dir == Dir::Rev;
    if rev && rt != RangeType::Rank {
        std::mem::swap(&mut minidx, &mut maxidx);
    }
    let bounds = match rt {
        RangeType::Rank => match (parse_i64(req.arg(minidx)), parse_i64(req.arg(maxidx))) {
            (Some(s), Some(e)) => Bounds::Rank(s, e),
            _ => return ctx.not_int(),
        },
        RangeType::Score => match parse_score_range(req.arg(minidx), req.arg(maxidx)) {
            Some(r) => Bounds::Score(r),
            None => return ctx.err("ERR min or max is not a float"),
        },
        _ => match (
            parse_lex_item(req.arg(minidx)),
            parse_lex_item(req.arg(maxidx)),
        ) {
            (Some(a), Some(b)) => Bounds::Lex(a, b),
            _ => return ctx.err("ERR min or max not valid string range item"),
        },
    };
    let key = req.arg(start);
    let now = ctx.now;
    let no_touch = ctx.conn.no_touch;
    if store {
        let dst = req.arg(1);
        let mut g = ctx.ks.lock_many([dst, key]);
        let items = match as_zset(g.shard(key).lookup_read(key, now, no_touch)) {
            Err(()) => {
                drop(g);
                return ctx.wrongtype();
            }
            Ok(None) => Vec::new(),
            Ok(Some(z)) => {
                let (lo, hi) = select(z, &bounds, rev, offset, limit);
                z.range_vec(lo, hi, rev)
            }
        };
        let n = items.len();
        if n == 0 {
            g.shard(dst).remove(dst, now);
        } else {
            // Redis sizes the destination by the rank range length up front
            // (`zsetTypeCreate`); score and lex ranges start as a listpack.
            let mut z = if rt == RangeType::Rank && n > ZSet::MAX_LISTPACK_ENTRIES {
                ZSet::new_skiplist()
            } else {
                ZSet::new()
            };
            for (m, s) in &items {
                z.insert(m, *s);
            }
            g.shard(dst).insert_object(dst, Object::ZSet(z), None, now);
        }
        drop(g);
        ctx.w().int(n as i64);
        return;
    }
    let r3 = resp3(ctx);
    let mut g = ctx.ks.lock(key);
    let z = match as_zset(g.lookup_read(key, now, no_touch)) {
        Err(()) => {
            drop(g);
            return ctx.wrongtype();
        }
        Ok(None) => {
            drop(g);
            return ctx.w().array(0);
        }
        Ok(Some(z)) => z,
    };
    let (lo, hi) = select(z, &bounds, rev, offset, limit);
    let n = hi.saturating_sub(lo);
    let mut w = ctx.w();
    w.array(if withscores && !r3 { n * 2 } else { n });
    z.range(lo, hi, rev, |m, s| {
        if withscores && r3 {
            w.array(2);
        }
        w.bulk(m);
        if withscores {
            w.double(s);
        }
    });
}

/// ZRANGE key start stop [BYSCORE|BYLEX] [REV] [LIMIT offset count] [WITHSCORES]
pub fn zrange(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    zrange_generic(ctx, req, 1, false, RangeType::Auto, Dir::Auto);
}

/// ZRANGESTORE dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count]
pub fn zrangestore(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    zrange_generic(ctx, req, 2, true, RangeType::Auto, Dir::Auto);
}

/// ZREVRANGE key start stop [WITHSCORES]
pub fn zrevrange(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    zrange_generic(ctx, req, 1, false, RangeType::Rank, Dir::Rev);
}

/// ZRANGEBYSCORE key min max [WITHSCORES] [LIMIT offset count]
pub fn zrangebyscore(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    zrange_generic(ctx, req, 1, false, RangeType::Score, Dir::Fwd);
}

/// ZREVRANGEBYSCORE key max min [WITHSCORES] [LIMIT offset count]
pub fn zrevrangebyscore(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    zrange_generic(ctx, req, 1, false, RangeType::Score, Dir::Rev);
}

/// ZRANGEBYLEX key min max [LIMIT offset count]
pub fn zrangebylex(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    zrange_generic(ctx, req, 1, false, RangeType::Lex, Dir::Fwd);
}

/// ZREVRANGEBYLEX key max min [LIMIT offset count]
pub fn zrevrangebylex(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    zrange_generic(ctx, req, 1, false, RangeType::Lex, Dir::Rev);
}

fn zremrange_generic(ctx: &mut Ctx<'_>, req: &Req<'_>, rt: RangeType) {
    let bounds = match rt {
        RangeType::Rank => match (parse_i64(req.arg(2)), parse_i64(req.arg(3))) {
            (Some(s), Some(e)) => Bounds::Rank(s, e),
            _ => return ctx.not_int(),
        },
        RangeType::Score => match parse_score_range(req.arg(2), req.arg(3)) {
            Some(r) => Bounds::Score(r),
            None => return ctx.err("ERR min or max is not a float"),
        },
        _ => match (parse_lex_item(req.arg(2)), parse_lex_item(req.arg(3))) {
            (Some(a), Some(b)) => Bounds::Lex(a, b),
            _ => return ctx.err("ERR min or max not valid string range item"),
        },
    };
    let key = req.arg(1);
    let now = ctx.now;
    let mut g = ctx.ks.lock(key);
    match as_zset(g.lookup(key, now)) {
        Err(()) => {
            drop(g);
            return ctx.wrongtype();
        }
        Ok(None) => {
            drop(g);
            return ctx.w().int(0);
        }
        Ok(Some(_)) => {}
    }
    let n = g
        .with_object_mut(key, now, |o| {
            let z = zset_mut(o);
            let (lo, hi) = select(z, &bounds, false, 0, -1);
            z.remove_range(lo, hi)
        })
        .unwrap_or(0);
    drop(g);
    ctx.w().int(n as i64);
}

/// ZREMRANGEBYRANK key start stop
pub fn zremrangebyrank(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    zremrange_generic(ctx, req, RangeType::Rank);
}

/// ZREMRANGEBYSCORE key min max
pub fn zremrangebyscore(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    zremrange_generic(ctx, req, RangeType::Score);
}

/// ZREMRANGEBYLEX key min max
pub fn zremrangebylex(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    zremrange_generic(ctx, req, RangeType::Lex);
}

// ---------------------------------------------------------------------------------------
// pops

/// Pops up to `count` elements from the non-empty zset at `key` and writes the reply
/// in one of Redis's four shapes (`genericZpopCommand`).
fn pop_reply(
    ctx: &mut Ctx<'_>,
    g: &mut ShardGuard<'_>,
    key: &[u8],
    max: bool,
    count: usize,
    emitkey: bool,
    nested: bool,
) {
    let now = ctx.now;
    let items = g
        .with_object_mut(key, now, |o| {
            let z = zset_mut(o);
            let n = count.min(z.len());
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                if let Some(p) = z.pop(max) {
                    v.push(p);
                }
            }
            v
        })
        .unwrap_or_default();
    let n = items.len();
    let mut w = ctx.w();
    match (nested, emitkey) {
        (false, false) => w.array(n * 2),
        (true, false) => w.array(n),
        (false, true) => {
            w.array(n * 2 + 1);
            w.bulk(key);
        }
        (true, true) => {
            w.array(2);
            w.bulk(key);
            w.array(n);
        }
    }
    for (m, s) in &items {
        if nested {
            w.array(2);
        }
        w.bulk(m);
        w.double(*s);
    }
}

fn zpop_generic(ctx: &mut Ctx<'_>, req: &Req<'_>, max: bool) {
    if req.len() > 3 {
        return ctx.syntax();
    }
    let mut count: Option<usize> = None;
    if req.len() == 3 {
        match parse_i64(req.arg(2)) {
            Some(n) if n >= 0 => count = Some(n as usize),
            _ => return ctx.err("ERR value is out of range, must be positive"),
        }
    }
    let nested = resp3(ctx) && count.is_some();
    let key = req.arg(1);
    let now = ctx.now;
    let mut g = ctx.ks.lock(key);
    match as_zset(g.lookup(key, now)) {
        Err(()) => {
            drop(g);
            return ctx.wrongtype();
        }
        Ok(None) => {
            drop(g);
            return ctx.w().array(0);
        }
        Ok(Some(_)) => {}
    }
    if count == Some(0) {
        drop(g);
        return ctx.w().array(0);
    }
    pop_reply(ctx, &mut g, key, max, count.unwrap_or(1), false, nested);
}

/// ZPOPMIN key [count]
pub fn zpopmin(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    zpop_generic(ctx, req, false);
}

/// ZPOPMAX key [count]
pub fn zpopmax(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    zpop_generic(ctx, req, true);
}

/// Parsed `numkeys key... MIN|MAX [COUNT n]`.
struct MpopArgs {
    first_key: usize,
    numkeys: usize,
    max: bool,
    count: usize,
}

fn parse_mpop(ctx: &mut Ctx<'_>, req: &Req<'_>, numkeys_idx: usize) -> Option<MpopArgs> {
    let numkeys = match parse_i64(req.arg(numkeys_idx)) {
        Some(n) if n >= 1 => n as usize,
        _ => {
            ctx.err("ERR numkeys should be greater than 0");
            return None;
        }
    };
    let where_idx = numkeys_idx.saturating_add(numkeys).saturating_add(1);
    if where_idx >= req.len() {
        ctx.syntax();
        return None;
    }
    let w = req.arg(where_idx);
    let max = if eq(w, "min") {
        false
    } else if eq(w, "max") {
        true
    } else {
        ctx.syntax();
        return None;
    };
    let mut count: Option<usize> = None;
    let mut j = where_idx + 1;
    while j < req.len() {
        let more = req.len() - 1 - j;
        if count.is_none() && eq(req.arg(j), "count") && more > 0 {
            j += 1;
            match parse_i64(req.arg(j)) {
                Some(n) if n >= 1 => count = Some(n as usize),
                _ => {
                    ctx.err("ERR count should be greater than 0");
                    return None;
                }
            }
        } else {
            ctx.syntax();
            return None;
        }
        j += 1;
    }
    Some(MpopArgs {
        first_key: numkeys_idx + 1,
        numkeys,
        max,
        count: count.unwrap_or(1),
    })
}

/// Serves a (B)ZMPOP / BZPOP from the first non-empty key. Returns false when no
/// key had anything (nothing replied).
fn try_mpop(ctx: &mut Ctx<'_>, keys: &[&[u8]], max: bool, count: usize, nested: bool) -> bool {
    let now = ctx.now;
    let mut g = ctx.ks.lock_many(keys.iter().copied());
    for &key in keys {
        let sg = g.shard(key);
        match as_zset(sg.lookup(key, now)) {
            Err(()) => {
                drop(g);
                ctx.wrongtype();
                return true;
            }
            Ok(None) => continue,
            Ok(Some(z)) if z.is_empty() => continue,
            Ok(Some(_)) => {
                pop_reply(ctx, sg, key, max, count, true, nested);
                return true;
            }
        }
    }
    false
}

/// ZMPOP numkeys key [key ...] MIN|MAX [COUNT count]
pub fn zmpop(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let Some(a) = parse_mpop(ctx, req, 1) else {
        return;
    };
    let keys: Vec<&[u8]> = (a.first_key..a.first_key + a.numkeys)
        .map(|i| req.arg(i))
        .collect();
    if !try_mpop(ctx, &keys, a.max, a.count, true) {
        ctx.w().null_array();
    }
}

/// Redis `getTimeoutFromObjectOrReply` in seconds: None = block forever.
fn parse_timeout(ctx: &mut Ctx<'_>, b: &[u8]) -> Result<Option<Duration>, ()> {
    let bad = b.is_empty() || b[0].is_ascii_whitespace() || b[0] == 0x0b;
    let (v, n, erange) = strtod(b);
    if bad || n != b.len() || (erange && (v.is_infinite() || v == 0.0)) || v.is_nan() {
        ctx.err("ERR timeout is not a float or out of range");
        return Err(());
    }
    let ms = (v * 1000.0).ceil();
    // Out of long long range converts to LLONG_MIN on x86: "negative".
    if !(0.0..9.2e18).contains(&ms) {
        ctx.err("ERR timeout is negative");
        return Err(());
    }
    Ok(if ms == 0.0 {
        None
    } else {
        Some(Duration::from_millis(ms as u64))
    })
}

/// The blocking protocol shared by BZPOPMIN/BZPOPMAX/BZMPOP.
fn blocking_pop(
    ctx: &mut Ctx<'_>,
    keys: &[&[u8]],
    timeout: Option<Duration>,
    max: bool,
    count: usize,
    nested: bool,
) {
    if try_mpop(ctx, keys, max, count, nested) {
        return;
    }
    if ctx.conn.in_exec {
        ctx.w().null_array();
        return;
    }
    ctx.block_on(keys, timeout, TimeoutReply::NullArray);
    if try_mpop(ctx, keys, max, count, nested) {
        ctx.unblock();
    }
}

fn bzpop_generic(ctx: &mut Ctx<'_>, req: &Req<'_>, max: bool) {
    let Ok(timeout) = parse_timeout(ctx, req.arg(req.len() - 1)) else {
        return;
    };
    let keys: Vec<&[u8]> = (1..req.len() - 1).map(|i| req.arg(i)).collect();
    blocking_pop(ctx, &keys, timeout, max, 1, false);
}

/// BZPOPMIN key [key ...] timeout
pub fn bzpopmin(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    bzpop_generic(ctx, req, false);
}

/// BZPOPMAX key [key ...] timeout
pub fn bzpopmax(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    bzpop_generic(ctx, req, true);
}

/// BZMPOP timeout numkeys key [key ...] MIN|MAX [COUNT count]
pub fn bzmpop(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let Some(a) = parse_mpop(ctx, req, 2) else {
        return;
    };
    let Ok(timeout) = parse_timeout(ctx, req.arg(1)) else {
        return;
    };
    let keys: Vec<&[u8]> = (a.first_key..a.first_key + a.numkeys)
        .map(|i| req.arg(i))
        .collect();
    blocking_pop(ctx, &keys, timeout, a.max, a.count, true);
}

// ---------------------------------------------------------------------------------------
// ZRANDMEMBER / ZSCAN

/// ZRANDMEMBER key [count [WITHSCORES]]
pub fn zrandmember(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    if req.len() < 3 {
        let pick = with_read(ctx, req.arg(1), |z| {
            z.and_then(|z| {
                let i = rand::thread_rng().gen_range(0..z.len());
                z.get(i).map(|(m, _)| m.to_vec())
            })
        });
        if let Some(p) = pick {
            match p {
                Some(m) => ctx.w().bulk(&m),
                None => ctx.w().null(),
            }
        }
        return;
    }
    let Some(l) = parse_i64(req.arg(2)) else {
        return ctx.not_int();
    };
    if l == i64::MIN {
        return ctx.err(
            "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
        );
    }
    if req.len() > 4 || (req.len() == 4 && !eq(req.arg(3), "withscores")) {
        return ctx.syntax();
    }
    let withscores = req.len() == 4;
    if withscores && l < -(i64::MAX / 2) {
        return ctx.err("ERR value is out of range");
    }
    let items = with_read(ctx, req.arg(1), |z| {
        let Some(z) = z else {
            return Vec::new();
        };
        let size = z.len();
        let count = l.unsigned_abs() as usize;
        if count == 0 {
            return Vec::new();
        }
        let mut rng = rand::thread_rng();
        let at = |i: usize| {
            z.get(i)
                .map(|(m, s)| (m.to_vec(), s))
                .expect("rank in range")
        };
        if l < 0 || count == 1 {
            (0..count).map(|_| at(rng.gen_range(0..size))).collect()
        } else if count >= size {
            z.range_vec(0, size, true)
        } else {
            index::sample(&mut rng, size, count)
                .into_iter()
                .map(at)
                .collect()
        }
    });
    if let Some(items) = items {
        reply_items(ctx, &items, withscores);
    }
}

/// ZSCAN key cursor [MATCH pattern] [COUNT count]
pub fn zscan(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let Some(cursor) = super::keys::parse_cursor(req.arg(2)) else {
        return ctx.err("ERR invalid cursor");
    };
    let key = req.arg(1);
    let no_touch = ctx.conn.no_touch;
    let mut g = ctx.ks.lock(key);
    let z = match as_zset(g.lookup_read(key, ctx.now, no_touch)) {
        Err(()) => {
            drop(g);
            return ctx.wrongtype();
        }
        Ok(None) => {
            drop(g);
            let mut w = ctx.w();
            w.array(2);
            w.bulk(b"0");
            w.array(0);
            return;
        }
        Ok(Some(z)) => z,
    };
    let (mut pattern, mut count): (Option<&[u8]>, usize) = (None, 10);
    let mut i = 3;
    while i < req.len() {
        let a = req.arg(i);
        let has_next = i + 1 < req.len();
        if eq(a, "count") && has_next {
            match parse_i64(req.arg(i + 1)) {
                Some(n) if n >= 1 => count = n as usize,
                Some(_) => {
                    drop(g);
                    return ctx.syntax();
                }
                None => {
                    drop(g);
                    return ctx.not_int();
                }
            }
        } else if eq(a, "match") && has_next {
            pattern = Some(req.arg(i + 1));
        } else {
            drop(g);
            return ctx.syntax();
        }
        i += 2;
    }
    let skiplist = z.is_skiplist();
    let mut found: Vec<(Vec<u8>, f64)> = Vec::new();
    let next = z.scan(cursor, count, |m, s| {
        if pattern.is_some_and(|p| p != b"*" && !crate::glob::matches(p, m, false)) {
            return;
        }
        found.push((m.to_vec(), s));
    });
    drop(g);
    let mut w = ctx.w();
    w.array(2);
    w.bulk_int(next as i64);
    w.array(found.len() * 2);
    for (m, s) in &found {
        w.bulk(m);
        if skiplist {
            // Redis prints skiplist scores with `%.17Lg`.
            let mut v = Vec::with_capacity(24);
            format_double(*s, &mut v);
            w.bulk(&v);
        } else {
            w.bulk(&d2string(*s));
        }
    }
}

// ---------------------------------------------------------------------------------------
// ZUNION / ZINTER / ZDIFF (+STORE) / ZINTERCARD

#[derive(Clone, Copy, PartialEq, Eq)]
enum SetOp {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Agg {
    Sum,
    Min,
    Max,
}

/// One input: a sorted set, a plain set (scores 1), or a missing key.
enum Src {
    Missing,
    Z(ZSet),
    S(Set),
}

impl Src {
    fn len(&self) -> usize {
        match self {
            Src::Missing => 0,
            Src::Z(z) => z.len(),
            Src::S(s) => s.len(),
        }
    }

    fn find(&self, m: &[u8]) -> Option<f64> {
        match self {
            Src::Missing => None,
            Src::Z(z) => z.score(m),
            Src::S(s) => s.contains(m).then_some(1.0),
        }
    }

    /// Elements (sorted sets from the highest, like Redis's iterator).
    fn items(&self) -> Vec<(Vec<u8>, f64)> {
        match self {
            Src::Missing => Vec::new(),
            Src::Z(z) => z.range_vec(0, z.len(), true),
            Src::S(s) => s.iter().map(|m| (m.to_vec(), 1.0)).collect(),
        }
    }
}

fn aggregate(t: &mut f64, v: f64, a: Agg) {
    match a {
        Agg::Sum => {
            *t += v;
            if t.is_nan() {
                *t = 0.0;
            }
        }
        Agg::Min => {
            if v < *t {
                *t = v;
            }
        }
        Agg::Max => {
            if v > *t {
                *t = v;
            }
        }
    }
}

fn zsetop(
    ctx: &mut Ctx<'_>,
    req: &Req<'_>,
    numkeys_idx: usize,
    store: bool,
    op: SetOp,
    card_only: bool,
    name: &str,
) {
    let Some(setnum) = parse_i64(req.arg(numkeys_idx)) else {
        return ctx.not_int();
    };
    if setnum < 1 {
        return ctx.err(&format!(
            "ERR at least 1 input key is needed for '{name}' command"
        ));
    }
    if setnum as u64 > (req.len() - (numkeys_idx + 1)) as u64 {
        return ctx.syntax();
    }
    let setnum = setnum as usize;
    let keys: Vec<&[u8]> = (0..setnum).map(|i| req.arg(numkeys_idx + 1 + i)).collect();
    let dst = store.then(|| req.arg(1));
    let now = ctx.now;
    let no_touch = ctx.conn.no_touch;
    let mut g = ctx
        .ks
        .lock_many(keys.iter().copied().chain(dst.iter().copied()));
    let mut srcs = Vec::with_capacity(setnum);
    for &k in &keys {
        let src = match g.shard(k).lookup_read(k, now, no_touch) {
            None => Src::Missing,
            Some(e) => match e.object() {
                Some(Object::ZSet(z)) => Src::Z(z.clone()),
                Some(Object::Set(s)) => Src::S(s.clone()),
                _ => {
                    drop(g);
                    return ctx.wrongtype();
                }
            },
        };
        srcs.push(src);
    }
    let mut weights = vec![1.0f64; setnum];
    let mut agg = Agg::Sum;
    let mut withscores = false;
    let mut limit = 0usize;
    let mut j = numkeys_idx + 1 + setnum;
    while j < req.len() {
        let remaining = req.len() - j;
        let a = req.arg(j);
        if op != SetOp::Diff && !card_only && remaining > setnum && eq(a, "weights") {
            j += 1;
            for w in weights.iter_mut() {
                match parse_score(req.arg(j)) {
                    Some(v) => *w = v,
                    None => {
                        drop(g);
                        return ctx.err("ERR weight value is not a float");
                    }
                }
                j += 1;
            }
        } else if op != SetOp::Diff && !card_only && remaining >= 2 && eq(a, "aggregate") {
            let v = req.arg(j + 1);
            agg = if eq(v, "sum") {
                Agg::Sum
            } else if eq(v, "min") {
                Agg::Min
            } else if eq(v, "max") {
                Agg::Max
            } else {
                drop(g);
                return ctx.syntax();
            };
            j += 2;
        } else if !store && !card_only && eq(a, "withscores") {
            withscores = true;
            j += 1;
        } else if card_only && remaining >= 2 && eq(a, "limit") {
            match parse_i64(req.arg(j + 1)) {
                Some(n) if n >= 0 => limit = n as usize,
                _ => {
                    drop(g);
                    return ctx.err("ERR LIMIT can't be negative");
                }
            }
            j += 2;
        } else {
            drop(g);
            return ctx.syntax();
        }
    }
    let mut order: Vec<usize> = (0..setnum).collect();
    if op != SetOp::Diff {
        order.sort_by_key(|&i| srcs[i].len());
    }
    let mut result: Vec<(Vec<u8>, f64)> = Vec::new();
    let mut card = 0usize;
    match op {
        SetOp::Inter => {
            let first = order[0];
            if srcs[first].len() > 0 {
                for (m, s) in srcs[first].items() {
                    let mut score = weights[first] * s;
                    if score.is_nan() {
                        score = 0.0;
                    }
                    let mut all = true;
                    for &o in &order[1..] {
                        match srcs[o].find(&m) {
                            Some(v) => aggregate(&mut score, v * weights[o], agg),
                            None => {
                                all = false;
                                break;
                            }
                        }
                    }
                    if !all {
                        continue;
                    }
                    if card_only {
                        card += 1;
                        if limit != 0 && card >= limit {
                            break;
                        }
                    } else {
                        result.push((m, score));
                    }
                }
            }
        }
        SetOp::Union => {
            let mut acc: HashMap<Vec<u8>, f64> = HashMap::new();
            for &o in &order {
                for (m, s) in srcs[o].items() {
                    let mut score = weights[o] * s;
                    if score.is_nan() {
                        score = 0.0;
                    }
                    match acc.get_mut(&m) {
                        Some(t) => aggregate(t, score, agg),
                        None => {
                            acc.insert(m, score);
                        }
                    }
                }
            }
            result = acc.into_iter().collect();
        }
        SetOp::Diff => {
            if srcs[0].len() > 0 {
                for (m, s) in srcs[0].items() {
                    if srcs[1..].iter().all(|x| x.find(&m).is_none()) {
                        result.push((m, s));
                    }
                }
            }
        }
    }
    if card_only {
        drop(g);
        return ctx.w().int(card as i64);
    }
    if let Some(dst) = dst {
        let n = result.len();
        if n == 0 {
            g.shard(dst).remove(dst, now);
        } else {
            let z = ZSet::from_pairs(result.iter().map(|(m, s)| (m.as_slice(), *s)));
            g.shard(dst).insert_object(dst, Object::ZSet(z), None, now);
        }
        drop(g);
        return ctx.w().int(n as i64);
    }
    drop(g);
    result.sort_by(|a, b| {
        a.1.partial_cmp(&b.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.0.cmp(&b.0))
    });
    reply_items(ctx, &result, withscores);
}

/// ZUNION numkeys key [key ...] [WEIGHTS w ...] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]
pub fn zunion(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    zsetop(ctx, req, 1, false, SetOp::Union, false, "zunion");
}

/// ZINTER numkeys key [key ...] [WEIGHTS w ...] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]
pub fn zinter(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    zsetop(ctx, req, 1, false, SetOp::Inter, false, "zinter");
}

/// ZDIFF numkeys key [key ...] [WITHSCORES]
pub fn zdiff(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    zsetop(ctx, req, 1, false, SetOp::Diff, false, "zdiff");
}

/// ZUNIONSTORE dst numkeys key [key ...] [WEIGHTS w ...] [AGGREGATE SUM|MIN|MAX]
pub fn zunionstore(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    zsetop(ctx, req, 2, true, SetOp::Union, false, "zunionstore");
}

/// ZINTERSTORE dst numkeys key [key ...] [WEIGHTS w ...] [AGGREGATE SUM|MIN|MAX]
pub fn zinterstore(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    zsetop(ctx, req, 2, true, SetOp::Inter, false, "zinterstore");
}

/// ZDIFFSTORE dst numkeys key [key ...]
pub fn zdiffstore(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    zsetop(ctx, req, 2, true, SetOp::Diff, false, "zdiffstore");
}

/// ZINTERCARD numkeys key [key ...] [LIMIT limit]
pub fn zintercard(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    zsetop(ctx, req, 1, false, SetOp::Inter, true, "zintercard");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_parsing_matches_strtod_rules() {
        assert_eq!(parse_score(b"1.5"), Some(1.5));
        assert_eq!(parse_score(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_score(b"+Infinity"), Some(f64::INFINITY));
        assert_eq!(parse_score(b"0x10"), Some(16.0));
        assert!(parse_score(b"1e-310").is_some());
        assert_eq!(parse_score(b".5"), Some(0.5));
        assert_eq!(parse_score(b"5."), Some(5.0));
        for bad in [
            &b""[..],
            b" 1",
            b"1 ",
            b"nan",
            b"1e400",
            b"1e-400",
            b"abc",
            b"1e",
            b"--1",
        ] {
            assert_eq!(parse_score(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse_score_item(b"(1").map(|x| x.1), Some(true));
        assert_eq!(parse_score_item(b"").map(|x| x.0), Some(0.0));
        assert_eq!(parse_score_item(b"( 1").map(|x| x.0), Some(1.0));
        assert!(parse_score_item(b"[1").is_none());
        assert!(parse_score_item(b" ").is_none());
        assert_eq!(parse_score_item(b"1e400").map(|x| x.0), Some(f64::INFINITY));
    }

    #[test]
    fn lex_items() {
        assert!(matches!(parse_lex_item(b"+"), Some(Lex::Max)));
        assert!(matches!(parse_lex_item(b"-"), Some(Lex::Min)));
        assert!(parse_lex_item(b"+a").is_none());
        assert!(parse_lex_item(b"a").is_none());
        assert!(parse_lex_item(b"").is_none());
        assert!(matches!(parse_lex_item(b"("), Some(Lex::Excl(v)) if v.is_empty()));
    }
}
