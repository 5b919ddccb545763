//! String commands (GET, SET and friends), Redis 7.0 semantics.

use shoal_keyspace::Entry;

use super::{eq, longdouble, parse_i64, Ctx, Req};

/// Passes a looked-up entry through if it is a string (or absent); replies
/// WRONGTYPE and returns Err when it holds a collection.
pub fn string_entry<'g>(ctx: &mut Ctx<'_>, e: Option<&'g Entry>) -> Result<Option<&'g Entry>, ()> {
    match e {
        Some(e) if !e.is_string() => {
            ctx.wrongtype();
            Err(())
        }
        other => Ok(other),
    }
}

/// Parsed expiry option of SET/GETEX.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expiry {
    None,
    At(u64),
    Keep,
    Persist,
}

/// Which expiry option was given (Redis' OBJ_EX/PX/EXAT/PXAT flags).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ExpKind {
    Ex,
    Px,
    ExAt,
    PxAt,
}

impl ExpKind {
    fn from(a: &[u8]) -> Option<ExpKind> {
        if eq(a, "ex") {
            Some(ExpKind::Ex)
        } else if eq(a, "px") {
            Some(ExpKind::Px)
        } else if eq(a, "exat") {
            Some(ExpKind::ExAt)
        } else if eq(a, "pxat") {
            Some(ExpKind::PxAt)
        } else {
            None
        }
    }
}

/// Options of SET / GETEX, parsed like Redis' `parseExtendedStringArgumentsOrReply`:
/// the same option may repeat (the last value wins), conflicting ones are a
/// syntax error, and the time value is only validated after all options parsed.
struct StringOpts<'a> {
    nx: bool,
    xx: bool,
    get: bool,
    keepttl: bool,
    persist: bool,
    exp: Option<(ExpKind, &'a [u8])>,
}

fn parse_string_opts<'a>(
    ctx: &mut Ctx<'_>,
    req: &Req<'a>,
    from: usize,
    getex: bool,
) -> Option<StringOpts<'a>> {
    let mut o = StringOpts {
        nx: false,
        xx: false,
        get: false,
        keepttl: false,
        persist: false,
        exp: None,
    };
    let mut i = from;
    while i < req.len() {
        let a = req.arg(i);
        let next = (i + 1 < req.len()).then(|| req.arg(i + 1));
        let other_exp = |k: ExpKind| o.exp.is_some_and(|(have, _)| have != k);
        if !getex && eq(a, "nx") && !o.xx {
            o.nx = true;
        } else if !getex && eq(a, "xx") && !o.nx {
            o.xx = true;
        } else if !getex && eq(a, "get") {
            o.get = true;
        } else if !getex && eq(a, "keepttl") && !o.persist && o.exp.is_none() {
            o.keepttl = true;
        } else if getex && eq(a, "persist") && !o.keepttl && o.exp.is_none() {
            o.persist = true;
        } else if let (Some(k), Some(v)) = (ExpKind::from(a), next) {
            if o.keepttl || o.persist || other_exp(k) {
                ctx.syntax();
                return None;
            }
            o.exp = Some((k, v));
            i += 1;
        } else {
            ctx.syntax();
            return None;
        }
        i += 1;
    }
    Some(o)
}

/// Converts an EX/PX/EXAT/PXAT value to an absolute unix-ms time, or the
/// `invalid expire time` error Redis gives (non-positive or overflowing).
fn expire_at(ctx: &mut Ctx<'_>, cmd: &str, v: &[u8], unit_ms: bool, absolute: bool) -> Option<u64> {
    let Some(n) = parse_i64(v) else {
        ctx.not_int();
        return None;
    };
    let invalid =
        |ctx: &mut Ctx<'_>| ctx.err(&format!("ERR invalid expire time in '{cmd}' command"));
    if n <= 0 || (!unit_ms && n > i64::MAX / 1000) {
        invalid(ctx);
        return None;
    }
    let ms = if unit_ms { n } else { n * 1000 };
    let at = if absolute {
        Some(ms)
    } else {
        ms.checked_add(ctx.now as i64)
    };
    match at {
        Some(at) => Some(at as u64),
        None => {
            invalid(ctx);
            None
        }
    }
}

/// Resolves parsed options into an [`Expiry`] (validating the time value).
fn resolve_expiry(ctx: &mut Ctx<'_>, cmd: &str, o: &StringOpts<'_>) -> Option<Expiry> {
    if let Some((k, v)) = o.exp {
        let unit_ms = matches!(k, ExpKind::Px | ExpKind::PxAt);
        let absolute = matches!(k, ExpKind::ExAt | ExpKind::PxAt);
        return expire_at(ctx, cmd, v, unit_ms, absolute).map(Expiry::At);
    }
    Some(if o.keepttl {
        Expiry::Keep
    } else if o.persist {
        Expiry::Persist
    } else {
        Expiry::None
    })
}

pub fn get(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let key = req.arg(1);
    let no_touch = ctx.conn.no_touch;
    let mut g = ctx.ks.lock(key);
    let Ok(e) = string_entry(ctx, g.lookup_read(key, ctx.now, no_touch)) else {
        return;
    };
    match e {
        Some(e) => ctx.w().bulk(e.value()),
        None => ctx.w().null(),
    }
}

/// SET key value [NX|XX] [GET] [EX s|PX ms|EXAT t|PXAT t|KEEPTTL]
pub fn set(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    if req.len() == 3 {
        // Plain SET: one probe (insert replaces whatever is there, of any type).
        let (key, val) = (req.arg(1), req.arg(2));
        let now = ctx.now;
        ctx.ks.lock(key).insert(key, &[val], None, 0, now);
        ctx.w().ok();
        return;
    }
    let Some(o) = parse_string_opts(ctx, req, 3, false) else {
        return;
    };
    let Some(exp) = resolve_expiry(ctx, "set", &o) else {
        return;
    };
    let (nx, xx, get_old) = (o.nx, o.xx, o.get);
    let (key, val) = (req.arg(1), req.arg(2));
    let now = ctx.now;
    let mut g = ctx.ks.lock(key);
    let old = g.lookup(key, now);
    let exists = old.is_some();
    let old = if get_old {
        let Ok(old) = string_entry(ctx, old) else {
            return;
        };
        old
    } else {
        old
    };
    if get_old {
        match old {
            Some(e) => ctx.w().bulk(e.value()),
            None => ctx.w().null(),
        }
    }
    let old_expire = old.and_then(|e| e.expire_at());
    if (nx && exists) || (xx && !exists) {
        if !get_old {
            ctx.w().null();
        }
        return;
    }
    let expire = match exp {
        Expiry::At(at) => Some(at),
        Expiry::Keep => old_expire,
        _ => None,
    };
    if expire.is_some_and(|at| at <= now) {
        // An absolute time in the past: Redis stores then immediately deletes.
        g.remove(key, now);
    } else {
        g.insert(key, &[val], expire, 0, now);
    }
    if !get_old {
        ctx.w().ok();
    }
}

pub fn setnx(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let (key, val) = (req.arg(1), req.arg(2));
    let now = ctx.now;
    let mut g = ctx.ks.lock(key);
    if g.lookup(key, now).is_some() {
        ctx.w().int(0);
    } else {
        g.insert(key, &[val], None, 0, now);
        ctx.w().int(1);
    }
}

fn setex_impl(ctx: &mut Ctx<'_>, req: &Req<'_>, cmd: &str, unit_ms: bool) {
    let Some(at) = expire_at(ctx, cmd, req.arg(2), unit_ms, false) else {
        return;
    };
    let (key, val) = (req.arg(1), req.arg(3));
    let now = ctx.now;
    ctx.ks.lock(key).insert(key, &[val], Some(at), 0, now);
    ctx.w().ok();
}

pub fn setex(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    setex_impl(ctx, req, "setex", false);
}

pub fn psetex(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    setex_impl(ctx, req, "psetex", true);
}

pub fn mget(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    ctx.w().array(req.len() - 1);
    let no_touch = ctx.conn.no_touch;
    for key in req.rest(1) {
        let mut g = ctx.ks.lock(key);
        match g.lookup_read(key, ctx.now, no_touch) {
            Some(e) if e.is_string() => ctx.w().bulk(e.value()),
            _ => ctx.w().null(),
        }
    }
}

fn mset_impl(ctx: &mut Ctx<'_>, req: &Req<'_>, nx: bool) -> bool {
    if req.len() % 2 == 0 {
        super::arity_error(ctx, if nx { "msetnx" } else { "mset" });
        return false;
    }
    let now = ctx.now;
    // All keys' shards locked together: MSET is atomic for every other client.
    let mut g = ctx
        .ks
        .lock_many((1..req.len()).step_by(2).map(|i| req.arg(i)));
    if nx {
        for i in (1..req.len()).step_by(2) {
            let k = req.arg(i);
            if g.shard(k).lookup(k, now).is_some() {
                ctx.w().int(0);
                return false;
            }
        }
    }
    for i in (1..req.len()).step_by(2) {
        let (k, v) = (req.arg(i), req.arg(i + 1));
        g.shard(k).insert(k, &[v], None, 0, now);
    }
    true
}

pub fn mset(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    if mset_impl(ctx, req, false) {
        ctx.w().ok();
    }
}

pub fn msetnx(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    if req.len() % 2 == 0 {
        super::arity_error(ctx, "msetnx");
        return;
    }
    if mset_impl(ctx, req, true) {
        ctx.w().int(1);
    }
}

pub fn getset(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let (key, val) = (req.arg(1), req.arg(2));
    let now = ctx.now;
    let mut g = ctx.ks.lock(key);
    let Ok(old) = string_entry(ctx, g.lookup(key, now)) else {
        return;
    };
    ctx.bulk_entry(old);
    g.insert(key, &[val], None, 0, now);
}

pub fn getdel(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let key = req.arg(1);
    let now = ctx.now;
    let mut g = ctx.ks.lock(key);
    if string_entry(ctx, g.lookup(key, now)).is_err() {
        return;
    }
    let old = g.remove(key, now);
    ctx.bulk_entry(old.as_ref());
}

/// GETEX key [EX s|PX ms|EXAT t|PXAT t|PERSIST]
pub fn getex(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let Some(o) = parse_string_opts(ctx, req, 2, true) else {
        return;
    };
    let Some(exp) = resolve_expiry(ctx, "getex", &o) else {
        return;
    };
    let key = req.arg(1);
    let now = ctx.now;
    let no_touch = ctx.conn.no_touch;
    let mut g = ctx.ks.lock(key);
    let Ok(e) = string_entry(ctx, g.lookup_read(key, now, no_touch)) else {
        return;
    };
    let Some(e) = e else {
        ctx.w().null();
        return;
    };
    ctx.w().bulk(e.value());
    match exp {
        Expiry::At(at) if at <= now => {
            g.remove(key, now);
        }
        Expiry::At(at) => {
            g.update_meta(key, now, true, |m| m.expire_at = Some(at));
        }
        Expiry::Persist if e.expire_at().is_some() => {
            g.update_meta(key, now, true, |m| m.expire_at = None);
        }
        _ => {}
    }
}

fn too_big(ctx: &mut Ctx<'_>, len: u64) -> bool {
    let max = ctx
        .shared
        .settings
        .proto_max_bulk_len
        .load(std::sync::atomic::Ordering::Relaxed);
    if len > max {
        ctx.err("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
        true
    } else {
        false
    }
}

pub fn append(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let (key, val) = (req.arg(1), req.arg(2));
    let now = ctx.now;
    let mut g = ctx.ks.lock(key);
    let Ok(cur) = string_entry(ctx, g.lookup(key, now)) else {
        return;
    };
    match cur {
        Some(e) => {
            let total = (e.value().len() + val.len()) as u64;
            if too_big(ctx, total) {
                return;
            }
            let (old, exp, flags) = (e.value().to_vec(), e.expire_at(), e.flags());
            g.insert(key, &[&old, val], exp, flags, now);
            g.mark_raw(key);
            ctx.w().int(total as i64);
        }
        None => {
            g.insert(key, &[val], None, 0, now);
            ctx.w().int(val.len() as i64);
        }
    }
}

pub fn strlen(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let key = req.arg(1);
    let mut g = ctx.ks.lock(key);
    let Ok(e) = string_entry(ctx, g.lookup_read(key, ctx.now, true)) else {
        return;
    };
    let n = e.map_or(0, |e| e.value().len());
    ctx.w().int(n as i64);
}

/// Shared by INCR/DECR/INCRBY/DECRBY (and memcache-independent).
fn incr_by(ctx: &mut Ctx<'_>, key: &[u8], delta: i64) {
    let now = ctx.now;
    let mut g = ctx.ks.lock(key);
    let Ok(cur) = string_entry(ctx, g.lookup(key, now)) else {
        return;
    };
    let (cur, exp, flags) = match cur {
        Some(e) => match parse_i64(e.value()) {
            Some(v) => (v, e.expire_at(), e.flags()),
            None => {
                ctx.not_int();
                return;
            }
        },
        None => (0, None, 0),
    };
    let Some(new) = cur.checked_add(delta) else {
        ctx.err("ERR increment or decrement would overflow");
        return;
    };
    let mut buf = itoa::Buffer::new();
    g.insert(key, &[buf.format(new).as_bytes()], exp, flags, now);
    ctx.w().int(new);
}

pub fn incr(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    incr_by(ctx, req.arg(1), 1);
}

pub fn decr(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    incr_by(ctx, req.arg(1), -1);
}

pub fn incrby(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    match parse_i64(req.arg(2)) {
        Some(d) => incr_by(ctx, req.arg(1), d),
        None => ctx.not_int(),
    }
}

pub fn decrby(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    match parse_i64(req.arg(2)) {
        Some(i64::MIN) => ctx.err("ERR decrement would overflow"),
        Some(d) => incr_by(ctx, req.arg(1), -d),
        None => ctx.not_int(),
    }
}

/// INCRBYFLOAT in software-emulated x87 `long double`, so every result is the
/// text redis-server prints (see `longdouble`).
pub fn incrbyfloat(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let key = req.arg(1);
    let now = ctx.now;
    let Some(incr) = longdouble::parse(req.arg(2)) else {
        ctx.err("ERR value is not a valid float");
        return;
    };
    let mut g = ctx.ks.lock(key);
    let Ok(cur) = string_entry(ctx, g.lookup(key, now)) else {
        return;
    };
    let (cur, exp, flags) = match cur {
        Some(e) => match longdouble::parse(e.value()) {
            Some(v) => (v, e.expire_at(), e.flags()),
            None => {
                ctx.err("ERR value is not a valid float");
                return;
            }
        },
        None => (longdouble::parse(b"0").expect("zero parses"), None, 0),
    };
    let Some(new) = longdouble::add(cur, incr) else {
        ctx.err("ERR increment would produce NaN or Infinity");
        return;
    };
    let text = longdouble::format_human(new);
    g.insert(key, &[text.as_bytes()], exp, flags, now);
    ctx.w().bulk(text.as_bytes());
}

pub fn getrange(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let (Some(mut start), Some(mut end)) = (parse_i64(req.arg(2)), parse_i64(req.arg(3))) else {
        ctx.not_int();
        return;
    };
    let key = req.arg(1);
    let mut g = ctx.ks.lock(key);
    let no_touch = ctx.conn.no_touch;
    let Ok(e) = string_entry(ctx, g.lookup_read(key, ctx.now, no_touch)) else {
        return;
    };
    let Some(e) = e else {
        ctx.w().bulk(b"");
        return;
    };
    let v = e.value();
    let len = v.len() as i64;
    if start < 0 && end < 0 && start > end {
        ctx.w().bulk(b"");
        return;
    }
    if start < 0 {
        start += len;
    }
    if end < 0 {
        end += len;
    }
    start = start.max(0);
    end = end.max(0);
    if end >= len {
        end = len - 1;
    }
    if start > end || len == 0 {
        ctx.w().bulk(b"");
        return;
    }
    ctx.w().bulk(&v[start as usize..=end as usize]);
}

pub fn setrange(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let Some(offset) = parse_i64(req.arg(2)) else {
        ctx.not_int();
        return;
    };
    if offset < 0 {
        ctx.err("ERR offset is out of range");
        return;
    }
    let (key, val) = (req.arg(1), req.arg(3));
    let now = ctx.now;
    let mut g = ctx.ks.lock(key);
    let Ok(cur) = string_entry(ctx, g.lookup(key, now)) else {
        return;
    };
    let cur_len = cur.map_or(0, |e| e.value().len());
    if val.is_empty() {
        ctx.w().int(cur_len as i64);
        return;
    }
    if too_big(ctx, offset as u64 + val.len() as u64) {
        return;
    }
    let (exp, flags) = cur.map_or((None, 0), |e| (e.expire_at(), e.flags()));
    let mut v = cur.map_or_else(Vec::new, |e| e.value().to_vec());
    let end = offset as usize + val.len();
    if v.len() < end {
        v.resize(end, 0);
    }
    v[offset as usize..end].copy_from_slice(val);
    g.insert(key, &[&v], exp, flags, now);
    g.mark_raw(key);
    ctx.w().int(v.len() as i64);
}

/// LCS key1 key2 [LEN] [IDX] [MINMATCHLEN n] [WITHMATCHLEN] — LEN and the plain
/// form; IDX is answered with an error (not implemented, see README).
pub fn lcs(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let mut len_only = false;
    let mut i = 3;
    while i < req.len() {
        let a = req.arg(i);
        if eq(a, "len") {
            len_only = true;
        } else if eq(a, "idx") || eq(a, "withmatchlen") || eq(a, "minmatchlen") {
            ctx.err("ERR LCS IDX is not supported by this server");
            return;
        } else {
            ctx.syntax();
            return;
        }
        i += 1;
    }
    let now = ctx.now;
    let a = ctx
        .ks
        .lock(req.arg(1))
        .lookup(req.arg(1), now)
        .map(|e| e.value().to_vec())
        .unwrap_or_default();
    let b = ctx
        .ks
        .lock(req.arg(2))
        .lookup(req.arg(2), now)
        .map(|e| e.value().to_vec())
        .unwrap_or_default();
    if (a.len() as u64).saturating_mul(b.len() as u64) > 1 << 28 {
        ctx.err("ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len");
        return;
    }
    // Classic DP table, then walk back for the string.
    let (n, m) = (a.len(), b.len());
    let mut dp = vec![0u32; (n + 1) * (m + 1)];
    for i in 1..=n {
        for j in 1..=m {
            dp[i * (m + 1) + j] = if a[i - 1] == b[j - 1] {
                dp[(i - 1) * (m + 1) + j - 1] + 1
            } else {
                dp[(i - 1) * (m + 1) + j].max(dp[i * (m + 1) + j - 1])
            };
        }
    }
    let total = dp[n * (m + 1) + m] as usize;
    if len_only {
        ctx.w().int(total as i64);
        return;
    }
    let mut out = vec![0u8; total];
    let (mut i, mut j, mut k) = (n, m, total);
    while k > 0 && i > 0 && j > 0 {
        if a[i - 1] == b[j - 1] {
            out[k - 1] = a[i - 1];
            k -= 1;
            i -= 1;
            j -= 1;
        } else if dp[(i - 1) * (m + 1) + j] > dp[i * (m + 1) + j - 1] {
            i -= 1;
        } else {
            j -= 1;
        }
    }
    ctx.w().bulk(&out);
}
