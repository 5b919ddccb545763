//! List commands (LPUSH and friends, the blocking BLPOP family), Redis 7.0 semantics.
//!
//! Argument errors come in Redis' order: most commands parse their numbers
//! before looking the key up (LRANGE, LTRIM, LREM, LPOS, LPOP's count), a few
//! look the key up first (LINDEX, LSET).
//!
//! Blocking commands follow the protocol of [`Ctx::block_on`]: try to serve;
//! inside EXEC reply like a timeout; otherwise register on the keys and check
//! once more (a push may have landed in between). A blocked command is re-run
//! from scratch when one of its keys is written; on a re-run a key holding
//! another type is skipped instead of answered with WRONGTYPE, because Redis
//! only wakes list waiters for list writes.

use std::time::Duration;

use shoal_keyspace::types::List;
use shoal_keyspace::{Object, ObjectKind, ShardGuard};

use super::{eq, longdouble, parse_i64, Ctx, Req, Spec, TimeoutReply};
use super::{DENYOOM, FAST, K1, K12, NK, READONLY, WRITE};

/// Keys 1..=-2 (BLPOP, BRPOP: the last argument is the timeout).
const KEYS_BUT_LAST: (i32, i32, i32) = (1, -2, 1);

/// This module's command table rows.
pub(super) fn table() -> Vec<Spec> {
    super::rows! {
    "lpush", -3, WRITE | DENYOOM | FAST, K1, lpush;
    "rpush", -3, WRITE | DENYOOM | FAST, K1, rpush;
    "lpushx", -3, WRITE | DENYOOM | FAST, K1, lpushx;
    "rpushx", -3, WRITE | DENYOOM | FAST, K1, rpushx;
    "lpop", -2, WRITE | FAST, K1, lpop;
    "rpop", -2, WRITE | FAST, K1, rpop;
    "llen", 2, READONLY | FAST, K1, llen;
    "lrange", 4, READONLY, K1, lrange;
    "lindex", 3, READONLY, K1, lindex;
    "lset", 4, WRITE | DENYOOM, K1, lset;
    "linsert", 5, WRITE | DENYOOM, K1, linsert;
    "lrem", 4, WRITE, K1, lrem;
    "ltrim", 4, WRITE, K1, ltrim;
    "lpos", -3, READONLY, K1, lpos;
    "lmove", 5, WRITE | DENYOOM, K12, lmove;
    "rpoplpush", 3, WRITE | DENYOOM, K12, rpoplpush;
    "lmpop", -4, WRITE, NK, lmpop;
    "blpop", -3, WRITE, KEYS_BUT_LAST, blpop;
    "brpop", -3, WRITE, KEYS_BUT_LAST, brpop;
    "blmove", 6, WRITE | DENYOOM, K12, blmove;
    "brpoplpush", 4, WRITE | DENYOOM, K12, brpoplpush;
    "blmpop", -5, WRITE, NK, blmpop;
    }
}

// ---------------------------------------------------------------------------
// keyspace helpers

/// What a key holds, for write paths.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Missing,
    List,
    Wrong,
}

fn probe(g: &mut ShardGuard<'_>, key: &[u8], now: u64) -> Slot {
    match g.lookup(key, now) {
        None => Slot::Missing,
        Some(e) => match e.object() {
            Some(Object::List(_)) => Slot::List,
            _ => Slot::Wrong,
        },
    }
}

/// The list at `key` without counting a hit (write paths).
fn peek<'g>(g: &'g mut ShardGuard<'_>, key: &[u8], now: u64) -> Option<&'g List> {
    match g.lookup(key, now)?.object() {
        Some(Object::List(l)) => Some(l),
        _ => None,
    }
}

/// Read commands: `Ok(None)` if missing, `Err` after replying WRONGTYPE.
fn read<'g>(
    ctx: &mut Ctx<'_>,
    g: &'g mut ShardGuard<'_>,
    key: &[u8],
) -> Result<Option<&'g List>, ()> {
    super::typed(ctx, g, key, true)
}

/// Runs `f` on the list at `key` (accounting, deletion when emptied and
/// wake-ups are done by the keyspace). `None` if there is no list there.
fn with_list<R>(
    g: &mut ShardGuard<'_>,
    key: &[u8],
    now: u64,
    f: impl FnOnce(&mut List) -> R,
) -> Option<R> {
    g.with_object_mut(key, now, |o| List::of_mut(o).map(f))
        .flatten()
}

/// Pushes `elems` onto the list at `key`, creating it if missing (the caller
/// checked the type). Returns the new length.
fn push_all<'e>(
    g: &mut ShardGuard<'_>,
    key: &[u8],
    now: u64,
    left: bool,
    elems: impl IntoIterator<Item = &'e [u8]>,
) -> usize {
    if g.lookup(key, now).is_some() {
        with_list(g, key, now, |l| {
            for e in elems {
                l.push(left, e);
            }
            l.len()
        })
        .unwrap_or(0)
    } else {
        let mut l = List::new();
        for e in elems {
            l.push(left, e);
        }
        let n = l.len();
        g.insert_object(key, Object::List(l), None, now);
        n
    }
}

/// Pops up to `n` elements from one end.
fn pop_n(g: &mut ShardGuard<'_>, key: &[u8], now: u64, left: bool, n: usize) -> Vec<Vec<u8>> {
    with_list(g, key, now, |l| {
        let n = n.min(l.len());
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            if let Some(e) = l.pop(left) {
                v.push(e);
            }
        }
        v
    })
    .unwrap_or_default()
}

fn bulk_array(ctx: &mut Ctx<'_>, elems: &[Vec<u8>]) {
    ctx.w().array(elems.len());
    for e in elems {
        ctx.w().bulk(e);
    }
}

/// LEFT / RIGHT, case-insensitively; `None` after replying a syntax error.
fn parse_end(ctx: &mut Ctx<'_>, a: &[u8]) -> Option<bool> {
    if eq(a, "left") {
        Some(true)
    } else if eq(a, "right") {
        Some(false)
    } else {
        ctx.syntax();
        None
    }
}

/// Redis' `getRangeLongFromObjectOrReply` with a custom message for both a
/// non-integer and an out-of-range value.
fn parse_range(ctx: &mut Ctx<'_>, a: &[u8], min: i64, msg: &str) -> Option<i64> {
    match parse_i64(a) {
        Some(v) if v >= min => Some(v),
        _ => {
            ctx.err(msg);
            None
        }
    }
}

fn parse_int(ctx: &mut Ctx<'_>, a: &[u8]) -> Option<i64> {
    let v = parse_i64(a);
    if v.is_none() {
        ctx.not_int();
    }
    v
}

/// Longest timeout honoured; Redis accepts up to ~292 million years, which no
/// deadline arithmetic survives, and it blocks "forever" either way.
const MAX_TIMEOUT_MS: u64 = 100 * 365 * 24 * 3600 * 1000;

/// Redis' `getTimeoutFromObjectOrReply(UNIT_SECONDS)`: a long double number of
/// seconds, `ceill(seconds * 1000)` ms cast to a 64-bit integer (values out of
/// its range become LLONG_MIN, as the x87 conversion does, hence "negative").
/// `Ok(None)` = block forever (0).
fn parse_timeout(ctx: &mut Ctx<'_>, a: &[u8]) -> Result<Option<Duration>, ()> {
    let Some(v) = longdouble::parse(a) else {
        ctx.err("ERR timeout is not a float or out of range");
        return Err(());
    };
    let text = longdouble::format_human(v);
    match text_to_ms(&text) {
        Some(0) => Ok(None),
        Some(ms) if ms > 0 => Ok(Some(Duration::from_millis((ms as u64).min(MAX_TIMEOUT_MS)))),
        _ => {
            ctx.err("ERR timeout is negative");
            Err(())
        }
    }
}

/// Decimal text (`-12.345`, `inf`) of seconds → `ceil(seconds * 1000)` ms,
/// `None` when it does not fit in an i64.
///
/// The text is the value rounded to 17 decimals, so a product that is an
/// exact integer in decimal may sit just below or above it in binary. That
/// only changes behaviour at -0.001 s, which Redis turns into 0 (wait forever):
/// the x87 value of 0.001 is a little less than 1/1000.
fn text_to_ms(text: &str) -> Option<i64> {
    let (neg, body) = match text.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, text),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut ms: i128 = 0;
    for b in int.bytes() {
        ms = ms.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
        if ms > i128::from(i64::MAX) {
            return None;
        }
    }
    let digits = frac.as_bytes();
    for i in 0..3 {
        let d = digits.get(i).copied().unwrap_or(b'0');
        ms = ms * 10 + i128::from(d - b'0');
    }
    let rest_nonzero = digits.iter().skip(3).any(|&d| d != b'0');
    let ms = if neg {
        // ceil of a negative value: drop the fraction.
        if ms == 1 && !rest_nonzero {
            0
        } else {
            -ms
        }
    } else {
        ms + i128::from(rest_nonzero)
    };
    i64::try_from(ms).ok()
}

// ---------------------------------------------------------------------------
// push / pop

pub fn lpush(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    push_generic(ctx, req, true, false);
}

pub fn rpush(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    push_generic(ctx, req, false, false);
}

pub fn lpushx(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    push_generic(ctx, req, true, true);
}

pub fn rpushx(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    push_generic(ctx, req, false, true);
}

fn push_generic(ctx: &mut Ctx<'_>, req: &Req<'_>, left: bool, existing_only: bool) {
    let key = req.arg(1);
    let now = ctx.now;
    let mut g = ctx.ks.lock(key);
    match probe(&mut g, key, now) {
        Slot::Wrong => ctx.wrongtype(),
        Slot::Missing if existing_only => ctx.w().int(0),
        _ => {
            let n = push_all(&mut g, key, now, left, req.rest(2));
            ctx.w().int(n as i64);
        }
    }
}

pub fn lpop(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    pop_generic(ctx, req, true);
}

pub fn rpop(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    pop_generic(ctx, req, false);
}

/// LPOP/RPOP key [count].
fn pop_generic(ctx: &mut Ctx<'_>, req: &Req<'_>, left: bool) {
    if req.len() > 3 {
        let name = if left { "lpop" } else { "rpop" };
        super::arity_error(ctx, name);
        return;
    }
    let count = if req.len() == 3 {
        let Some(c) = parse_range(
            ctx,
            req.arg(2),
            0,
            "ERR value is out of range, must be positive",
        ) else {
            return;
        };
        Some(c as usize)
    } else {
        None
    };
    let key = req.arg(1);
    let now = ctx.now;
    let mut g = ctx.ks.lock(key);
    match probe(&mut g, key, now) {
        Slot::Missing => {
            if count.is_some() {
                ctx.w().null_array();
            } else {
                ctx.w().null();
            }
        }
        Slot::Wrong => ctx.wrongtype(),
        Slot::List => match count {
            Some(0) => ctx.w().array(0),
            Some(n) => {
                let v = pop_n(&mut g, key, now, left, n);
                bulk_array(ctx, &v);
            }
            None => {
                let v = pop_n(&mut g, key, now, left, 1);
                match v.first() {
                    Some(e) => ctx.w().bulk(e),
                    None => ctx.w().null(),
                }
            }
        },
    }
}

// ---------------------------------------------------------------------------
// reads and in-place edits

pub fn llen(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let key = req.arg(1);
    let mut g = ctx.ks.lock(key);
    if let Ok(l) = read(ctx, &mut g, key) {
        let n = l.map_or(0, |l| l.len());
        ctx.w().int(n as i64);
    }
}

/// Redis' LRANGE/LTRIM clamping: `Some((start, end))` with `start <= end < len`.
fn clamp_range(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let mut start = if start < 0 { len + start } else { start };
    let mut end = if end < 0 { len + end } else { end };
    if start < 0 {
        start = 0;
    }
    if start > end || start >= len {
        return None;
    }
    if end >= len {
        end = len - 1;
    }
    Some((start as usize, end as usize))
}

pub fn lrange(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let Some(start) = parse_int(ctx, req.arg(2)) else {
        return;
    };
    let Some(end) = parse_int(ctx, req.arg(3)) else {
        return;
    };
    let key = req.arg(1);
    let mut g = ctx.ks.lock(key);
    let Ok(l) = read(ctx, &mut g, key) else {
        return;
    };
    let Some(l) = l else {
        ctx.w().array(0);
        return;
    };
    match clamp_range(start, end, l.len()) {
        None => ctx.w().array(0),
        Some((s, e)) => {
            let n = e - s + 1;
            ctx.w().array(n);
            for v in l.iter_from(s).take(n) {
                ctx.w().bulk(v);
            }
        }
    }
}

pub fn lindex(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let key = req.arg(1);
    let mut g = ctx.ks.lock(key);
    let Ok(l) = read(ctx, &mut g, key) else {
        return;
    };
    let Some(l) = l else {
        ctx.w().null();
        return;
    };
    let Some(index) = parse_int(ctx, req.arg(2)) else {
        return;
    };
    match l.resolve(index).and_then(|i| l.get(i)) {
        Some(v) => ctx.w().bulk(v),
        None => ctx.w().null(),
    }
}

pub fn lset(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let key = req.arg(1);
    let now = ctx.now;
    let mut g = ctx.ks.lock(key);
    match probe(&mut g, key, now) {
        Slot::Missing => return ctx.err("ERR no such key"),
        Slot::Wrong => return ctx.wrongtype(),
        Slot::List => {}
    }
    let Some(index) = parse_int(ctx, req.arg(2)) else {
        return;
    };
    let Some(i) = peek(&mut g, key, now).and_then(|l| l.resolve(index)) else {
        ctx.err("ERR index out of range");
        return;
    };
    let val = req.arg(3);
    with_list(&mut g, key, now, |l| l.set(i, val));
    ctx.w().ok();
}

pub fn linsert(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let where_ = req.arg(2);
    let after = if eq(where_, "after") {
        true
    } else if eq(where_, "before") {
        false
    } else {
        ctx.syntax();
        return;
    };
    let (key, pivot, val) = (req.arg(1), req.arg(3), req.arg(4));
    let now = ctx.now;
    let mut g = ctx.ks.lock(key);
    match probe(&mut g, key, now) {
        Slot::Missing => return ctx.w().int(0),
        Slot::Wrong => return ctx.wrongtype(),
        Slot::List => {}
    }
    // Look first so a missing pivot leaves the key untouched (no WATCH/wake signal).
    if !peek(&mut g, key, now).is_some_and(|l| l.iter().any(|e| e == pivot)) {
        ctx.w().int(-1);
        return;
    }
    let n = with_list(&mut g, key, now, |l| {
        l.insert(pivot, val, after);
        l.len()
    })
    .unwrap_or(0);
    ctx.w().int(n as i64);
}

pub fn lrem(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let Some(count) = parse_int(ctx, req.arg(2)) else {
        return;
    };
    let (key, elem) = (req.arg(1), req.arg(3));
    let now = ctx.now;
    let mut g = ctx.ks.lock(key);
    match probe(&mut g, key, now) {
        Slot::Missing => return ctx.w().int(0),
        Slot::Wrong => return ctx.wrongtype(),
        Slot::List => {}
    }
    if !peek(&mut g, key, now).is_some_and(|l| l.iter().any(|e| e == elem)) {
        ctx.w().int(0);
        return;
    }
    let n = with_list(&mut g, key, now, |l| l.remove(elem, count)).unwrap_or(0);
    ctx.w().int(n as i64);
}

pub fn ltrim(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let Some(start) = parse_int(ctx, req.arg(2)) else {
        return;
    };
    let Some(end) = parse_int(ctx, req.arg(3)) else {
        return;
    };
    let key = req.arg(1);
    let now = ctx.now;
    let mut g = ctx.ks.lock(key);
    match probe(&mut g, key, now) {
        Slot::Missing => return ctx.w().ok(),
        Slot::Wrong => return ctx.wrongtype(),
        Slot::List => {}
    }
    with_list(&mut g, key, now, |l| {
        let keep = clamp_range(start, end, l.len());
        l.trim(keep);
    });
    ctx.w().ok();
}

/// LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len]
pub fn lpos(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let (mut rank, mut count, mut maxlen) = (1i64, -1i64, 0i64);
    let mut j = 3;
    while j < req.len() {
        let opt = req.arg(j);
        let more = j + 1 < req.len();
        if eq(opt, "rank") && more {
            j += 1;
            let Some(r) = parse_int(ctx, req.arg(j)) else {
                return;
            };
            if r == 0 {
                ctx.err("ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list");
                return;
            }
            rank = r;
        } else if eq(opt, "count") && more {
            j += 1;
            let Some(c) = parse_range(ctx, req.arg(j), 0, "ERR COUNT can't be negative") else {
                return;
            };
            count = c;
        } else if eq(opt, "maxlen") && more {
            j += 1;
            let Some(m) = parse_range(ctx, req.arg(j), 0, "ERR MAXLEN can't be negative") else {
                return;
            };
            maxlen = m;
        } else {
            ctx.syntax();
            return;
        }
        j += 1;
    }
    // A negative rank searches from the tail. Like Redis, -LONG_MIN wraps and
    // stays negative, so every match then counts as reaching the rank.
    let from_tail = rank < 0;
    if from_tail {
        rank = rank.wrapping_neg();
    }
    let (key, elem) = (req.arg(1), req.arg(2));
    let mut g = ctx.ks.lock(key);
    let Ok(l) = read(ctx, &mut g, key) else {
        return;
    };
    let Some(l) = l else {
        if count != -1 {
            ctx.w().array(0);
        } else {
            ctx.w().null();
        }
        return;
    };
    let len = l.len() as i64;
    let mut found: Vec<i64> = Vec::new();
    let mut matches: i64 = 0;
    let mut single: Option<i64> = None;
    let iter: Box<dyn Iterator<Item = &[u8]>> = if from_tail {
        Box::new(l.iter_rev())
    } else {
        Box::new(l.iter())
    };
    for (index, e) in (0i64..).zip(iter) {
        if maxlen != 0 && index >= maxlen {
            break;
        }
        if e != elem {
            continue;
        }
        matches += 1;
        let at = if from_tail { len - index - 1 } else { index };
        if matches >= rank {
            if count != -1 {
                found.push(at);
                if count != 0 && matches.wrapping_sub(rank).wrapping_add(1) >= count {
                    break;
                }
            } else {
                single = Some(at);
                break;
            }
        }
    }
    if count != -1 {
        ctx.w().array(found.len());
        for i in found {
            ctx.w().int(i);
        }
    } else {
        match single {
            Some(i) => ctx.w().int(i),
            None => ctx.w().null(),
        }
    }
}

// ---------------------------------------------------------------------------
// moves

/// Moves one element from `src` to `dst` and replies it as a bulk string.
/// Returns false (nothing replied) when `src` has nothing to give — or holds
/// another type and `skip_wrong` is set (re-runs of a blocked BLMOVE).
fn serve_move(
    ctx: &mut Ctx<'_>,
    src: &[u8],
    dst: &[u8],
    from_left: bool,
    to_left: bool,
    skip_wrong: bool,
) -> bool {
    let now = ctx.now;
    let mut g = ctx.ks.lock_many([src, dst]);
    match probe(g.shard(src), src, now) {
        Slot::Missing => return false,
        Slot::Wrong if skip_wrong => return false,
        Slot::Wrong => {
            ctx.wrongtype();
            return true;
        }
        Slot::List => {}
    }
    if src == dst {
        // Rotation: pop and push inside one edit so the key (and its TTL) survive.
        let v = with_list(g.shard(src), src, now, |l| {
            let v = l.pop(from_left);
            if let Some(v) = &v {
                l.push(to_left, v);
            }
            v
        })
        .flatten();
        match v {
            Some(v) => ctx.w().bulk(&v),
            None => ctx.w().null(),
        }
        return true;
    }
    if probe(g.shard(dst), dst, now) == Slot::Wrong {
        ctx.wrongtype();
        return true;
    }
    let Some(v) = pop_n(g.shard(src), src, now, from_left, 1).pop() else {
        return false;
    };
    push_all(g.shard(dst), dst, now, to_left, [v.as_slice()]);
    ctx.w().bulk(&v);
    true
}

/// LMOVE source destination LEFT|RIGHT LEFT|RIGHT
pub fn lmove(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let Some(from_left) = parse_end(ctx, req.arg(3)) else {
        return;
    };
    let Some(to_left) = parse_end(ctx, req.arg(4)) else {
        return;
    };
    if !serve_move(ctx, req.arg(1), req.arg(2), from_left, to_left, false) {
        ctx.w().null();
    }
}

pub fn rpoplpush(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    if !serve_move(ctx, req.arg(1), req.arg(2), false, true, false) {
        ctx.w().null();
    }
}

/// Whether this run of a blocking command is a re-run after a wake-up.
fn is_rerun(ctx: &Ctx<'_>) -> bool {
    ctx.conn.block_deadline.is_some()
}

fn block_move(
    ctx: &mut Ctx<'_>,
    req: &Req<'_>,
    from_left: bool,
    to_left: bool,
    timeout: Option<Duration>,
) {
    let (src, dst) = (req.arg(1), req.arg(2));
    let rerun = is_rerun(ctx);
    if serve_move(ctx, src, dst, from_left, to_left, rerun) {
        return;
    }
    if ctx.conn.in_exec {
        ctx.w().null();
        return;
    }
    // Redis 7.0 answers a timed-out BLMOVE with a null *array* (`*-1`), unlike
    // the null bulk it gives inside EXEC.
    ctx.block_on(&[src], timeout, TimeoutReply::NullArray);
    if serve_move(ctx, src, dst, from_left, to_left, true) {
        ctx.unblock();
    }
}

/// BLMOVE source destination LEFT|RIGHT LEFT|RIGHT timeout
pub fn blmove(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let Some(from_left) = parse_end(ctx, req.arg(3)) else {
        return;
    };
    let Some(to_left) = parse_end(ctx, req.arg(4)) else {
        return;
    };
    let Ok(timeout) = parse_timeout(ctx, req.arg(5)) else {
        return;
    };
    block_move(ctx, req, from_left, to_left, timeout);
}

/// BRPOPLPUSH source destination timeout
pub fn brpoplpush(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let Ok(timeout) = parse_timeout(ctx, req.arg(3)) else {
        return;
    };
    block_move(ctx, req, false, true, timeout);
}

// ---------------------------------------------------------------------------
// multi-key pops

/// Pops from the first non-empty list among `keys`. With `count` replies
/// `[key, [elems...]]` (LMPOP), without `[key, elem]` (BLPOP). Returns false
/// when nothing was replied (all missing, or wrong-typed and `skip_wrong`).
fn serve_pop(
    ctx: &mut Ctx<'_>,
    keys: &[&[u8]],
    left: bool,
    count: Option<usize>,
    skip_wrong: bool,
) -> bool {
    let now = ctx.now;
    for &key in keys {
        let mut g = ctx.ks.lock(key);
        match probe(&mut g, key, now) {
            Slot::Missing => continue,
            Slot::Wrong if skip_wrong => continue,
            Slot::Wrong => {
                ctx.wrongtype();
                return true;
            }
            Slot::List => {}
        }
        let v = pop_n(&mut g, key, now, left, count.unwrap_or(1));
        if v.is_empty() {
            continue;
        }
        drop(g);
        ctx.w().array(2);
        ctx.w().bulk(key);
        match count {
            Some(_) => bulk_array(ctx, &v),
            None => ctx.w().bulk(&v[0]),
        }
        return true;
    }
    false
}

fn block_pop(
    ctx: &mut Ctx<'_>,
    keys: &[&[u8]],
    left: bool,
    count: Option<usize>,
    timeout: Option<Duration>,
) {
    let rerun = is_rerun(ctx);
    if serve_pop(ctx, keys, left, count, rerun) {
        return;
    }
    if ctx.conn.in_exec {
        ctx.w().null_array();
        return;
    }
    ctx.block_on(keys, timeout, TimeoutReply::NullArray);
    if serve_pop(ctx, keys, left, count, true) {
        ctx.unblock();
    }
}

pub fn blpop(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    bpop_generic(ctx, req, true);
}

pub fn brpop(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    bpop_generic(ctx, req, false);
}

/// BLPOP/BRPOP key [key ...] timeout
fn bpop_generic(ctx: &mut Ctx<'_>, req: &Req<'_>, left: bool) {
    let last = req.len() - 1;
    let Ok(timeout) = parse_timeout(ctx, req.arg(last)) else {
        return;
    };
    let keys: Vec<&[u8]> = (1..last).map(|i| req.arg(i)).collect();
    block_pop(ctx, &keys, left, None, timeout);
}

/// Parsed `numkeys key... LEFT|RIGHT [COUNT n]` starting at `numkeys_idx`.
struct MpopArgs<'a> {
    keys: Vec<&'a [u8]>,
    left: bool,
    count: usize,
}

fn parse_mpop<'a>(ctx: &mut Ctx<'_>, req: &Req<'a>, numkeys_idx: usize) -> Option<MpopArgs<'a>> {
    let numkeys = parse_range(
        ctx,
        req.arg(numkeys_idx),
        1,
        "ERR numkeys should be greater than 0",
    )?;
    let where_idx = (numkeys_idx as u64)
        .saturating_add(numkeys as u64)
        .saturating_add(1);
    if where_idx >= req.len() as u64 {
        ctx.syntax();
        return None;
    }
    let where_idx = where_idx as usize;
    let left = parse_end(ctx, req.arg(where_idx))?;
    let mut count: Option<i64> = None;
    let mut j = where_idx + 1;
    while j < req.len() {
        let more = j + 1 < req.len();
        if count.is_none() && eq(req.arg(j), "count") && more {
            j += 1;
            count = Some(parse_range(
                ctx,
                req.arg(j),
                1,
                "ERR count should be greater than 0",
            )?);
        } else {
            ctx.syntax();
            return None;
        }
        j += 1;
    }
    let keys = (numkeys_idx + 1..where_idx).map(|i| req.arg(i)).collect();
    Some(MpopArgs {
        keys,
        left,
        count: usize::try_from(count.unwrap_or(1)).unwrap_or(usize::MAX),
    })
}

/// LMPOP numkeys key [key ...] LEFT|RIGHT [COUNT count]
pub fn lmpop(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let Some(a) = parse_mpop(ctx, req, 1) else {
        return;
    };
    if !serve_pop(ctx, &a.keys, a.left, Some(a.count), false) {
        ctx.w().null_array();
    }
}

/// BLMPOP timeout numkeys key [key ...] LEFT|RIGHT [COUNT count]
pub fn blmpop(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let Some(a) = parse_mpop(ctx, req, 2) else {
        return;
    };
    let Ok(timeout) = parse_timeout(ctx, req.arg(1)) else {
        return;
    };
    block_pop(ctx, &a.keys, a.left, Some(a.count), timeout);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_text_to_ms() {
        assert_eq!(text_to_ms("0"), Some(0));
        assert_eq!(text_to_ms("1.5"), Some(1500));
        assert_eq!(text_to_ms("0.0105"), Some(11));
        assert_eq!(text_to_ms("0.001"), Some(1));
        assert_eq!(text_to_ms("0.0001"), Some(1));
        assert_eq!(text_to_ms("-0.0001"), Some(0));
        assert_eq!(text_to_ms("-0.001"), Some(0));
        assert_eq!(text_to_ms("-0.0015"), Some(-1));
        assert_eq!(text_to_ms("-0.002"), Some(-2));
        assert_eq!(text_to_ms("-1"), Some(-1000));
        assert_eq!(text_to_ms("inf"), None);
        assert_eq!(text_to_ms("-inf"), None);
        assert_eq!(
            text_to_ms("9223372036854775"),
            Some(9_223_372_036_854_775_000)
        );
        assert_eq!(text_to_ms("9223372036854776"), None);
        assert_eq!(text_to_ms(&"9".repeat(400)), None);
    }

    #[test]
    fn clamp_like_redis() {
        assert_eq!(clamp_range(0, -1, 3), Some((0, 2)));
        assert_eq!(clamp_range(-100, 100, 3), Some((0, 2)));
        assert_eq!(clamp_range(2, 1, 3), None);
        assert_eq!(clamp_range(3, 5, 3), None);
        assert_eq!(clamp_range(i64::MIN, i64::MAX, 3), Some((0, 2)));
        assert_eq!(clamp_range(-1, -1, 3), Some((2, 2)));
        assert_eq!(clamp_range(0, -4, 3), None);
    }
}
