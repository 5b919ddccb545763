//! Generic key commands (DEL, EXPIRE, SCAN, RENAME, DUMP/RESTORE...).

use shoal_keyspace::Entry;

use super::{eq, parse_i64, Ctx, Req};
use crate::dump;
use crate::glob;

pub fn del(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let now = ctx.now;
    let mut n = 0;
    for key in req.rest(1) {
        if ctx.ks.lock(key).remove(key, now).is_some() {
            n += 1;
        }
    }
    ctx.w().int(n);
}

pub fn exists(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let now = ctx.now;
    let mut n = 0;
    for key in req.rest(1) {
        if ctx.ks.lock(key).lookup_read(key, now, true).is_some() {
            n += 1;
        }
    }
    ctx.w().int(n);
}

pub fn touch(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let now = ctx.now;
    let no_touch = ctx.conn.no_touch;
    let mut n = 0;
    for key in req.rest(1) {
        if ctx.ks.lock(key).lookup_read(key, now, no_touch).is_some() {
            n += 1;
        }
    }
    ctx.w().int(n);
}

const NX: u8 = 1;
const XX: u8 = 2;
const GT: u8 = 4;
const LT: u8 = 8;

/// EXPIRE/PEXPIRE/EXPIREAT/PEXPIREAT key time [NX|XX|GT|LT], as Redis 7.0's
/// `expireGenericCommand`.
fn expire_generic(ctx: &mut Ctx<'_>, req: &Req<'_>, cmd: &str, unit_ms: bool, absolute: bool) {
    let mut flag = 0u8;
    for a in req.rest(3) {
        if eq(a, "nx") {
            flag |= NX;
        } else if eq(a, "xx") {
            flag |= XX;
        } else if eq(a, "gt") {
            flag |= GT;
        } else if eq(a, "lt") {
            flag |= LT;
        } else {
            let msg = super::sanitize(format!(
                "ERR Unsupported option {}",
                String::from_utf8_lossy(a)
            ));
            ctx.err(&msg);
            return;
        }
    }
    if flag & NX != 0 && flag & (XX | GT | LT) != 0 {
        ctx.err("ERR NX and XX, GT or LT options at the same time are not compatible");
        return;
    }
    if flag & GT != 0 && flag & LT != 0 {
        ctx.err("ERR GT and LT options at the same time are not compatible");
        return;
    }
    let Some(mut when) = parse_i64(req.arg(2)) else {
        ctx.not_int();
        return;
    };
    let invalid = format!("ERR invalid expire time in '{cmd}' command");
    if !unit_ms {
        if !(i64::MIN / 1000..=i64::MAX / 1000).contains(&when) {
            ctx.err(&invalid);
            return;
        }
        when *= 1000;
    }
    let base = if absolute { 0 } else { ctx.now as i64 };
    let Some(when) = when.checked_add(base) else {
        ctx.err(&invalid);
        return;
    };
    let key = req.arg(1);
    let now = ctx.now;
    let mut g = ctx.ks.lock(key);
    let Some(e) = g.lookup(key, now) else {
        ctx.w().int(0);
        return;
    };
    let current = e.expire_at().map_or(-1, |t| t as i64);
    let refuse = (flag & NX != 0 && current != -1)
        || (flag & XX != 0 && current == -1)
        || (flag & GT != 0 && (when <= current || current == -1))
        || (flag & LT != 0 && current != -1 && when >= current);
    if refuse {
        ctx.w().int(0);
        return;
    }
    if when <= now as i64 {
        g.remove(key, now);
    } else {
        g.update_meta(key, now, false, |m| m.expire_at = Some(when as u64));
    }
    ctx.w().int(1);
}

pub fn expire(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    expire_generic(ctx, req, "expire", false, false);
}

pub fn pexpire(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    expire_generic(ctx, req, "pexpire", true, false);
}

pub fn expireat(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    expire_generic(ctx, req, "expireat", false, true);
}

pub fn pexpireat(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    expire_generic(ctx, req, "pexpireat", true, true);
}

/// Looks a key up for TTL-style commands: -2 when missing.
fn with_expiry(ctx: &mut Ctx<'_>, key: &[u8]) -> Option<Option<u64>> {
    let mut g = ctx.ks.lock(key);
    g.lookup_read(key, ctx.now, true).map(|e| e.expire_at())
}

fn ttl_impl(ctx: &mut Ctx<'_>, req: &Req<'_>, ms: bool) {
    let reply = match with_expiry(ctx, req.arg(1)) {
        None => -2,
        Some(None) => -1,
        Some(Some(at)) => {
            let ttl = (at as i64 - ctx.now as i64).max(0);
            if ms {
                ttl
            } else {
                (ttl + 500) / 1000
            }
        }
    };
    ctx.w().int(reply);
}

pub fn ttl(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    ttl_impl(ctx, req, false);
}

pub fn pttl(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    ttl_impl(ctx, req, true);
}

fn expiretime_impl(ctx: &mut Ctx<'_>, req: &Req<'_>, ms: bool) {
    let reply = match with_expiry(ctx, req.arg(1)) {
        None => -2,
        Some(None) => -1,
        Some(Some(at)) => {
            if ms {
                at as i64
            } else {
                at as i64 / 1000
            }
        }
    };
    ctx.w().int(reply);
}

pub fn expiretime(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    expiretime_impl(ctx, req, false);
}

pub fn pexpiretime(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    expiretime_impl(ctx, req, true);
}

pub fn persist(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let key = req.arg(1);
    let now = ctx.now;
    let mut g = ctx.ks.lock(key);
    let has_ttl = g.lookup(key, now).is_some_and(|e| e.expire_at().is_some());
    if has_ttl {
        g.update_meta(key, now, false, |m| m.expire_at = None);
    }
    ctx.w().int(has_ttl as i64);
}

/// Redis type name of an entry.
pub fn type_name(e: &Entry) -> &'static str {
    e.kind().name()
}

pub fn type_(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let key = req.arg(1);
    let mut g = ctx.ks.lock(key);
    let t = g.lookup_read(key, ctx.now, true).map_or("none", type_name);
    ctx.w().simple(t.as_bytes());
}

pub fn keys(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let pattern = req.arg(1);
    let all = pattern == b"*";
    let mut found: Vec<Vec<u8>> = Vec::new();
    ctx.ks.for_each(ctx.now, |e| {
        let k = e.key();
        if all || glob::matches(pattern, k, false) {
            found.push(k.to_vec());
        }
    });
    ctx.w().array(found.len());
    for k in &found {
        ctx.w().bulk(k);
    }
}

/// A SCAN cursor as Redis reads it with `strtoul`: optional sign (a negative
/// value wraps), decimal digits, nothing else; the empty string is cursor 0.
pub fn parse_cursor(b: &[u8]) -> Option<u64> {
    if b.is_empty() {
        return Some(0);
    }
    let (neg, digits) = match b[0] {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: u64 = 0;
    for &c in digits {
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    Some(if neg { v.wrapping_neg() } else { v })
}

/// SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]
pub fn scan(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let Some(cursor) = parse_cursor(req.arg(1)) else {
        ctx.err("ERR invalid cursor");
        return;
    };
    let (mut pattern, mut count, mut typ): (Option<&[u8]>, usize, Option<&[u8]>) = (None, 10, None);
    let mut i = 2;
    while i < req.len() {
        let a = req.arg(i);
        let has_next = i + 1 < req.len();
        if eq(a, "count") && has_next {
            match parse_i64(req.arg(i + 1)) {
                Some(n) if n >= 1 => count = n as usize,
                Some(_) => {
                    ctx.syntax();
                    return;
                }
                None => {
                    ctx.not_int();
                    return;
                }
            }
        } else if eq(a, "match") && has_next {
            pattern = Some(req.arg(i + 1));
        } else if eq(a, "type") && has_next {
            typ = Some(req.arg(i + 1));
        } else {
            ctx.syntax();
            return;
        }
        i += 2;
    }
    let mut found: Vec<Vec<u8>> = Vec::new();
    let next = ctx.ks.scan(cursor, count, ctx.now, |e| {
        let k = e.key();
        if pattern.is_some_and(|p| p != b"*" && !glob::matches(p, k, false)) {
            return;
        }
        if typ.is_some_and(|t| !t.eq_ignore_ascii_case(type_name(e).as_bytes())) {
            return;
        }
        found.push(k.to_vec());
    });
    let mut w = ctx.w();
    w.array(2);
    w.bulk_int(next as i64);
    w.array(found.len());
    for k in &found {
        w.bulk(k);
    }
}

fn rename_impl(ctx: &mut Ctx<'_>, req: &Req<'_>, nx: bool) {
    let (src, dst) = (req.arg(1), req.arg(2));
    let now = ctx.now;
    let mut g = ctx.ks.lock_many([src, dst]);
    if g.shard(src).lookup(src, now).is_none() {
        ctx.err("ERR no such key");
        return;
    }
    if src == dst {
        if nx {
            ctx.w().int(0);
        } else {
            ctx.w().ok();
        }
        return;
    }
    if nx && g.shard(dst).lookup(dst, now).is_some() {
        ctx.w().int(0);
        return;
    }
    let Some(e) = g.shard(src).remove(src, now) else {
        return;
    };
    let exp = e.expire_at();
    // Collections move as objects; strings keep their bytes and memcache flags.
    match e.object() {
        Some(o) => {
            g.shard(dst).insert_object(dst, o.clone(), exp, now);
        }
        None => {
            g.shard(dst).insert(dst, &[e.value()], exp, e.flags(), now);
        }
    }
    if nx {
        ctx.w().int(1);
    } else {
        ctx.w().ok();
    }
}

pub fn rename(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    rename_impl(ctx, req, false);
}

pub fn renamenx(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    rename_impl(ctx, req, true);
}

pub fn randomkey(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let _ = req;
    match ctx.ks.random_key(ctx.now) {
        Some(k) => ctx.w().bulk(&k),
        None => ctx.w().null(),
    }
}

/// COPY source destination [DB destination-db] [REPLACE]
pub fn copy(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let mut replace = false;
    let mut i = 3;
    while i < req.len() {
        let a = req.arg(i);
        if eq(a, "replace") {
            replace = true;
        } else if eq(a, "db") && i + 1 < req.len() {
            match parse_i64(req.arg(i + 1)) {
                Some(0) => {}
                Some(_) => {
                    ctx.err("ERR DB index is out of range");
                    return;
                }
                None => {
                    ctx.not_int();
                    return;
                }
            }
            i += 1;
        } else {
            ctx.syntax();
            return;
        }
        i += 1;
    }
    let (src, dst) = (req.arg(1), req.arg(2));
    if src == dst {
        ctx.err("ERR source and destination objects are the same");
        return;
    }
    let now = ctx.now;
    let mut g = ctx.ks.lock_many([src, dst]);
    let Some(e) = g.shard(src).lookup(src, now) else {
        ctx.w().int(0);
        return;
    };
    let (v, exp, flags) = (e.value().to_vec(), e.expire_at(), e.flags());
    let obj = e.object().cloned();
    if !replace && g.shard(dst).lookup(dst, now).is_some() {
        ctx.w().int(0);
        return;
    }
    match obj {
        Some(o) => {
            g.shard(dst).insert_object(dst, o, exp, now);
        }
        None => {
            g.shard(dst).insert(dst, &[&v], exp, flags, now);
        }
    }
    ctx.w().int(1);
}

/// Redis' encoding name for a string value.
pub fn string_encoding(v: &[u8]) -> &'static str {
    if v.len() <= 20 && parse_i64(v).is_some() {
        "int"
    } else if v.len() <= 44 {
        "embstr"
    } else {
        "raw"
    }
}

pub fn object(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let sub = req.arg(1);
    if eq(sub, "help") {
        let lines: &[&str] = &[
            "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "ENCODING <key>",
            "    Return the kind of internal representation used in order to store the value",
            "    associated with a <key>.",
            "FREQ <key>",
            "    Return the access frequency index of the <key>. The returned integer is",
            "    proportional to the logarithm of the recent access frequency of the key.",
            "IDLETIME <key>",
            "    Return the idle time of the <key>, that is the approximated number of",
            "    seconds elapsed since the last access to the key.",
            "REFCOUNT <key>",
            "    Return the number of references of the value associated with the specified",
            "    <key>.",
            "HELP",
            "    Print this help.",
        ];
        ctx.w().array(lines.len());
        for l in lines {
            ctx.w().simple(l.as_bytes());
        }
        return;
    }
    let known = ["encoding", "freq", "idletime", "refcount"];
    let Some(name) = known.iter().find(|n| eq(sub, n)) else {
        let msg = super::sanitize(format!(
            "ERR unknown subcommand '{}'. Try OBJECT HELP.",
            String::from_utf8_lossy(sub)
                .chars()
                .take(128)
                .collect::<String>()
        ));
        ctx.err(&msg);
        return;
    };
    if req.len() != 3 {
        super::arity_error(ctx, &format!("object|{name}"));
        return;
    }
    let key = req.arg(2);
    let now = ctx.now;
    let policy = ctx.ks.policy();
    let ks = ctx.ks;
    let mut g = ks.lock(key);
    let Some(e) = g.lookup(key, now) else {
        ctx.w().null();
        return;
    };
    match *name {
        "encoding" => {
            let enc = match e.object() {
                Some(o) => o.encoding(),
                None if e.is_raw() => "raw",
                None => string_encoding(e.value()),
            };
            ctx.w().bulk(enc.as_bytes());
        }
        "refcount" => ctx.w().int(1),
        "freq" => {
            if !policy.is_lfu() {
                ctx.err("ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.");
                return;
            }
            let f = ks.lfu_freq(e, now);
            ctx.w().int(f as i64);
        }
        _ => {
            if policy.is_lfu() {
                ctx.err("ERR An LFU maxmemory policy is selected, idle time not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.");
                return;
            }
            let idle = ks.idle_seconds(e, now);
            ctx.w().int(idle as i64);
        }
    }
}

pub fn dump(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let key = req.arg(1);
    let mut g = ctx.ks.lock(key);
    match g.lookup_read(key, ctx.now, true) {
        Some(e) => {
            let payload = dump::encode(e);
            ctx.w().bulk(&payload);
        }
        None => ctx.w().null(),
    }
}

/// RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f]
pub fn restore(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let (mut replace, mut absttl) = (false, false);
    let (mut idle, mut freq): (Option<i64>, Option<i64>) = (None, None);
    let mut i = 4;
    while i < req.len() {
        let a = req.arg(i);
        let has_next = i + 1 < req.len();
        if eq(a, "replace") {
            replace = true;
        } else if eq(a, "absttl") {
            absttl = true;
        } else if eq(a, "idletime") && has_next && freq.is_none() {
            match parse_i64(req.arg(i + 1)) {
                Some(v) if v >= 0 => idle = Some(v),
                Some(_) => return ctx.err("ERR Invalid IDLETIME value, must be >= 0"),
                None => return ctx.not_int(),
            }
            i += 1;
        } else if eq(a, "freq") && has_next && idle.is_none() {
            match parse_i64(req.arg(i + 1)) {
                Some(v) if (0..=255).contains(&v) => freq = Some(v),
                Some(_) => return ctx.err("ERR Invalid FREQ value, must be >= 0 and <= 255"),
                None => return ctx.not_int(),
            }
            i += 1;
        } else {
            return ctx.syntax();
        }
        i += 1;
    }
    let Some(ttl) = parse_i64(req.arg(2)) else {
        return ctx.not_int();
    };
    if ttl < 0 {
        return ctx.err("ERR Invalid TTL value, must be >= 0");
    }
    let key = req.arg(1);
    let now = ctx.now;
    let mut g = ctx.ks.lock(key);
    if !replace && g.lookup(key, now).is_some() {
        return ctx.err("BUSYKEY Target key name already exists.");
    }
    let restored = match dump::decode(req.arg(3)) {
        Ok(v) => v,
        Err(dump::DumpError::Version) => {
            return ctx.err("ERR DUMP payload version or checksum are wrong")
        }
        Err(dump::DumpError::Format) => return ctx.err("ERR Bad data format"),
    };
    let expire = match ttl {
        0 => None,
        t if absttl => Some(t as u64),
        t => Some(now + t as u64),
    };
    if expire.is_some_and(|at| at <= now) {
        g.remove(key, now);
    } else {
        match restored {
            dump::Restored::String(v) => {
                g.insert(key, &[&v], expire, 0, now);
            }
            dump::Restored::Object(o) => {
                g.insert_object(key, o, expire, now);
            }
        }
    }
    ctx.w().ok();
}

#[cfg(test)]
mod tests {
    use super::parse_cursor;

    #[test]
    fn cursor_parses_like_strtoul() {
        assert_eq!(parse_cursor(b"0"), Some(0));
        assert_eq!(parse_cursor(b""), Some(0));
        assert_eq!(parse_cursor(b"-1"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"+5"), Some(5));
        assert_eq!(parse_cursor(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"18446744073709551616"), None);
        assert_eq!(parse_cursor(b" 1"), None);
        assert_eq!(parse_cursor(b"1x"), None);
        assert_eq!(parse_cursor(b"-"), None);
    }
}
