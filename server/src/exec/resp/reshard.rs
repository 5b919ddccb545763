//! Live resharding commands (docs/resharding-server.md): SHOAL.ASK,
//! SHOAL.MIGRATE, SHOAL.IMPORT, SHOAL.WAITALL. The machinery lives in
//! `crate::reshard`; this is the command surface and the key positions of
//! every command (what SHOAL.ASK checks).

use std::sync::LazyLock;
use std::time::Duration;

use super::{eq, parse_i64, Ctx, Req, Spec, COMMANDS};
use super::{ADMIN, DENYOOM, EXCLUSIVE, NK, READONLY, WRAPPER, WRITE};
use crate::reshard::{self, MigrateJob, ScanJob, Verdict};

/// This module's command table rows.
pub(super) fn table() -> Vec<Spec> {
    super::rows! {
        "shoal.ask", -2, WRAPPER, NK, wrapper_only;
        "shoal.migrate", -6, ADMIN, NK, migrate;
        "shoal.import", -6, WRITE | DENYOOM, (1, -1, 5), import;
        "shoal.waitall", 2, 0, NK, waitall;
        "shoal.scan", -8, READONLY, NK, scan;
    }
}

/// Where a command's keys are, beyond what the table's (first, last, step) says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyRule {
    /// The table's (first, last, step).
    Table,
    /// `numkeys` at this index, the keys right after it (ZUNION, LMPOP...).
    NumKeys(usize),
    /// A destination key at 1, `numkeys` at 2, the keys after it (ZUNIONSTORE...).
    DestNumKeys,
}

static RULES: LazyLock<Vec<KeyRule>> = LazyLock::new(|| {
    COMMANDS
        .iter()
        .map(|s| match s.name {
            "sintercard" | "zunion" | "zinter" | "zdiff" | "zintercard" | "lmpop" | "zmpop" => {
                KeyRule::NumKeys(1)
            }
            "blmpop" | "bzmpop" => KeyRule::NumKeys(2),
            "zunionstore" | "zinterstore" | "zdiffstore" => KeyRule::DestNumKeys,
            _ => KeyRule::Table,
        })
        .collect()
});

/// Argument positions of a request's keys: `extra` (a destination) and
/// `first..end` by `step`. Positions past the request are never produced;
/// an unparsable `numkeys` yields no keys (the command then replies its own error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeyPositions {
    extra: Option<usize>,
    first: usize,
    end: usize,
    step: usize,
}

impl KeyPositions {
    /// The positions, in order.
    pub(crate) fn iter(self) -> impl Iterator<Item = usize> {
        self.extra
            .into_iter()
            .chain((self.first..self.end).step_by(self.step))
    }
}

/// Key positions of `req` (a request for `spec`, arity already checked).
pub(crate) fn key_positions(spec: &Spec, req: &Req<'_>) -> KeyPositions {
    let len = req.len();
    // The end of `numkeys` keys after index `at` (no keys when they do not fit).
    let numkeys_end = |at: usize| -> usize {
        if at >= len {
            return 0;
        }
        std::str::from_utf8(req.arg(at))
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .and_then(|n| (at + 1).checked_add(n))
            .filter(|end| *end <= len)
            .unwrap_or(0)
    };
    let none = KeyPositions {
        extra: None,
        first: 0,
        end: 0,
        step: 1,
    };
    match RULES.get(spec.id).copied().unwrap_or(KeyRule::Table) {
        KeyRule::NumKeys(at) => KeyPositions {
            first: at + 1,
            end: numkeys_end(at),
            ..none
        },
        KeyRule::DestNumKeys => KeyPositions {
            extra: (len > 1).then_some(1),
            first: 3,
            end: numkeys_end(2),
            step: 1,
        },
        KeyRule::Table => {
            let (first, last, step) = spec.keys;
            if first <= 0 {
                return none;
            }
            let last = if last < 0 {
                len as i64 + i64::from(last)
            } else {
                i64::from(last)
            };
            if last < i64::from(first) {
                return none;
            }
            KeyPositions {
                extra: None,
                first: first as usize,
                end: ((last + 1) as usize).min(len),
                step: step.max(1) as usize,
            }
        }
    }
}

/// The table row of SHOAL.ASK: `dispatch` handles wrappers itself.
fn wrapper_only(ctx: &mut Ctx<'_>, _req: &Req<'_>) {
    ctx.err("ERR SHOAL.ASK must be dispatched as a wrapper");
}

/// SHOAL.ASK command [args...]: runs the command when all its keys are here
/// (exactly as if sent alone: same reply, the command itself replicated),
/// `-SHOALMOVED` when none is, `-TRYAGAIN` when some are or one is being
/// migrated. Called by `dispatch` after the arity and auth checks.
pub(super) fn ask(ctx: &mut Ctx<'_>, req: &Req<'_>, spec: &Spec) {
    if ctx.conn.multi.is_some() || ctx.conn.in_exec {
        return super::reject_cmd(
            ctx,
            Some(spec),
            "ERR SHOAL.ASK is not allowed inside a transaction",
        );
    }
    let inner = req.inner();
    let Some(ispec) = super::lookup(inner.arg(0)) else {
        // The unknown-command error of the inner command.
        return super::dispatch(ctx, &inner);
    };
    if ispec.flags & (WRAPPER | EXCLUSIVE) != 0 || ispec.name == "multi" {
        let msg = format!("ERR SHOAL.ASK cannot wrap '{}'", ispec.name);
        return ctx.err(&msg);
    }
    let n = inner.len() as i32;
    if (ispec.arity > 0 && n != ispec.arity) || (ispec.arity < 0 && n < -ispec.arity) {
        // The arity error of the inner command.
        return super::dispatch(ctx, &inner);
    }
    let r = &ctx.shared.reshard;
    let _gate = r.gate();
    let keys = key_positions(ispec, &inner).iter().map(|i| inner.arg(i));
    match r.verdict(ctx.ks, ctx.now, keys) {
        Verdict::Here => super::dispatch(ctx, &inner),
        Verdict::Moved => ctx.err(reshard::MOVED_ERR),
        Verdict::Split => ctx.err(reshard::SPLIT_ERR),
        Verdict::Migrating => ctx.err(reshard::MIGRATING_ERR),
    }
}

/// Most ranges one SHOAL.SCAN takes (a ketama ring has 160 points per server).
const MAX_RANGES: usize = 1 << 16;

/// SHOAL.SCAN cursor COUNT count HASH name TAG tag RANGES lo hi [lo hi ...]: SCAN
/// (same cursor, same guarantees) returning only the keys whose ring hash lies in one of
/// the inclusive `lo..=hi` ranges. The hash is a proxy ring hash (`fnv1a_64`, `murmur`,
/// ..., as in twemproxy's `hash:`) of the key's hash-tag part (`tag`: the two tag
/// characters, or empty for none); an empty key hashes to 0, as the proxy places it. The
/// proxy's migrator asks each old owner for just the keys a reshard moves, instead of
/// every key.
pub fn scan(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let Some(cursor) = super::keys::parse_cursor(req.arg(1)) else {
        return ctx.err("ERR invalid cursor");
    };
    if !eq(req.arg(2), "count") {
        return ctx.syntax();
    }
    let count = match parse_i64(req.arg(3)) {
        Some(n) if n >= 1 => n as usize,
        Some(_) => return ctx.syntax(),
        None => return ctx.not_int(),
    };
    let filter = match parse_filter(req, 4) {
        Ok(f) => f,
        Err(e) => return ctx.err(e),
    };
    let mut found: Vec<Vec<u8>> = Vec::new();
    let next = ctx.ks.scan(cursor, count, ctx.now, |e| {
        if filter.wants(e.key()) {
            found.push(e.key().to_vec());
        }
    });
    let mut w = ctx.w();
    w.array(2);
    w.bulk_int(next as i64);
    w.array(found.len());
    for k in &found {
        w.bulk(k);
    }
}

/// `HASH name TAG tag RANGES lo hi [lo hi ...]` from argument `at` to the end, as a
/// [`ScanJob`] over the whole keyspace (the caller sets cursor, slice and limit).
fn parse_filter(req: &Req<'_>, at: usize) -> Result<ScanJob, &'static str> {
    use shoal_client::ring::HashKind;
    const SYNTAX: &str = "ERR syntax error";
    if req.len() < at + 5 || !eq(req.arg(at), "hash") || !eq(req.arg(at + 2), "tag") {
        return Err(SYNTAX);
    }
    if !eq(req.arg(at + 4), "ranges") || (req.len() - at - 5) % 2 != 0 {
        return Err(SYNTAX);
    }
    let hash = std::str::from_utf8(req.arg(at + 1))
        .ok()
        .and_then(HashKind::from_name)
        .ok_or("ERR shoal scan: unknown hash")?;
    let tag = match req.arg(at + 3) {
        [] => None,
        [a, b] => Some([*a, *b]),
        _ => return Err("ERR shoal scan: a hash tag is two characters"),
    };
    let n = (req.len() - at - 5) / 2;
    if n > MAX_RANGES {
        return Err("ERR shoal scan: too many ranges");
    }
    let num = |a: &[u8]| {
        std::str::from_utf8(a)
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
    };
    let mut ranges = Vec::with_capacity(n);
    for i in 0..n {
        match (num(req.arg(at + 5 + 2 * i)), num(req.arg(at + 6 + 2 * i))) {
            (Some(lo), Some(hi)) if lo <= hi => ranges.push((lo, hi)),
            _ => return Err("ERR shoal scan: a range is two 32-bit numbers, low <= high"),
        }
    }
    ranges.sort_unstable();
    // Overlapping ranges merge, so a lookup sees disjoint ones.
    ranges.dedup_by(|next, prev| {
        if next.0 <= prev.1.saturating_add(1) {
            prev.1 = prev.1.max(next.1);
            true
        } else {
            false
        }
    });
    Ok(ScanJob {
        cursor: 0,
        first_shard: 0,
        end_shard: usize::MAX,
        limit: usize::MAX,
        hash,
        tag,
        ranges,
    })
}

/// SHOAL.MIGRATE host port timeout-ms [AUTH password] KEYS key [key ...]:
/// replies `*2 :<keys moved> :<bytes moved>` once they are at the target (and its replicas)
/// and deleted here, or `-IOERR shoal migrate: <reason>` with the keys still
/// here. Runs as a task; the connection waits for it without blocking its thread.
pub fn migrate(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    if ctx.conn.multi.is_some() || ctx.conn.in_exec {
        return ctx.err("ERR SHOAL.MIGRATE is not allowed inside a transaction");
    }
    let Ok(host) = std::str::from_utf8(req.arg(1)) else {
        return ctx.err("ERR shoal migrate: invalid host");
    };
    let Some(port) = std::str::from_utf8(req.arg(2))
        .ok()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|p| *p != 0)
    else {
        return ctx.err("ERR Invalid port");
    };
    let Some(timeout) = parse_i64(req.arg(3)) else {
        return ctx.not_int();
    };
    if timeout < 0 {
        return ctx.err("ERR timeout is negative");
    }
    // Redis' MIGRATE: a timeout of 0 means one second.
    let timeout = Duration::from_millis(if timeout == 0 { 1000 } else { timeout as u64 });
    let mut i = 4;
    let mut auth = None;
    if eq(req.arg(i), "auth") {
        if i + 1 >= req.len() {
            return ctx.syntax();
        }
        auth = Some(req.arg(i + 1).to_vec());
        i += 2;
    }
    // SCAN cursor LIMIT n SLICE i m HASH name TAG tag RANGES lo hi [lo hi ...]
    let scan = if i < req.len() && eq(req.arg(i), "scan") {
        match parse_scan_form(ctx.ks.shard_count(), req, i + 1) {
            Ok(job) => Some(job),
            Err(e) => return ctx.err(e),
        }
    } else {
        None
    };
    if scan.is_none() && (i + 1 >= req.len() || !eq(req.arg(i), "keys")) {
        return ctx.syntax();
    }
    if scan.is_none() && req.len() - (i + 1) > reshard::MAX_KEYS {
        let msg = format!(
            "ERR shoal migrate: at most {} keys per call",
            reshard::MAX_KEYS
        );
        return ctx.err(&msg);
    }
    if let Some(msg) = crate::repl::write_refusal(ctx.shared) {
        return ctx.err(msg);
    }
    if is_self(ctx.shared, host, port) {
        return ctx.err("ERR shoal migrate: the target is this server");
    }
    let (Some(sh), Some(rt)) = (ctx.shared.repl.shared(), ctx.shared.repl.runtime()) else {
        return ctx.err("ERR shoal migrate: the server is not running");
    };
    let job = MigrateJob {
        host: host.to_string(),
        port,
        timeout,
        auth,
        keys: if scan.is_some() {
            Vec::new()
        } else {
            req.rest(i + 1).map(<[u8]>::to_vec).collect()
        },
        scan,
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    rt.spawn(async move {
        let _ = tx.send(reshard::migrate(sh, job).await);
    });
    ctx.conn.pending = Some(rx);
}

/// The `SCAN` form's arguments from `at` (`cursor LIMIT n SLICE i m HASH ...`) over a
/// keyspace of `shards` shards.
fn parse_scan_form(shards: usize, req: &Req<'_>, at: usize) -> Result<ScanJob, &'static str> {
    const SYNTAX: &str = "ERR syntax error";
    if req.len() < at + 6 || !eq(req.arg(at + 1), "limit") || !eq(req.arg(at + 3), "slice") {
        return Err(SYNTAX);
    }
    let cursor = super::keys::parse_cursor(req.arg(at)).ok_or("ERR invalid cursor")?;
    let int = |a: &[u8]| parse_i64(a).ok_or("ERR value is not an integer or out of range");
    let limit = int(req.arg(at + 2))?;
    let (i, m) = (int(req.arg(at + 4))?, int(req.arg(at + 5))?);
    if !(1..=reshard::MAX_KEYS as i64).contains(&limit) {
        return Err("ERR shoal migrate: LIMIT must be 1..10000");
    }
    if m < 1 || i < 0 || i >= m {
        return Err("ERR shoal migrate: SLICE i m needs 0 <= i < m");
    }
    let mut job = parse_filter(req, at + 6)?;
    let (i, m) = (i as usize, m as usize);
    job.first_shard = i * shards / m;
    job.end_shard = (i + 1) * shards / m;
    job.limit = limit as usize;
    job.cursor = cursor;
    let shard = shoal_keyspace::scan_cursor_shard(cursor);
    if cursor != 0 && !(job.first_shard..job.end_shard).contains(&shard) {
        return Err("ERR shoal migrate: the cursor is outside the slice");
    }
    Ok(job)
}

/// Whether `host:port` is one of this server's own listeners (moving keys to
/// oneself would import them and then delete them).
fn is_self(shared: &crate::shared::Shared, host: &str, port: u16) -> bool {
    use std::net::{IpAddr, Ipv4Addr};
    let ip = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        match host.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => return false,
        }
    };
    let mine = |a: &std::net::SocketAddr| {
        a.port() == port
            && (a.ip() == ip
                || (ip.is_loopback() && (a.ip().is_loopback() || a.ip().is_unspecified())))
    };
    shared.resp_addrs.read().iter().any(mine) || shared.memcache_addrs.read().iter().any(mine)
}

/// SHOAL.IMPORT key payload pxat flags cas [...]: stores every record (REPLACE
/// semantics, CAS and memcache flags kept, the CAS counter raised past them);
/// all or nothing: a malformed record refuses the whole command.
pub fn import(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    if (req.len() - 1) % 5 != 0 {
        return super::arity_error(ctx, "shoal.import");
    }
    let mut entries = Vec::with_capacity((req.len() - 1) / 5);
    let mut max_cas = 0;
    for i in (1..req.len()).step_by(5) {
        let rec = crate::repl::replica::decode_record(
            ctx.shared,
            req.arg(i),
            req.arg(i + 1),
            req.arg(i + 2),
            req.arg(i + 3),
            req.arg(i + 4),
            ctx.now,
        );
        let Some((entry, cas)) = rec else {
            return ctx.err("ERR Bad data format");
        };
        max_cas = max_cas.max(cas);
        entries.push((req.arg(i), entry));
    }
    for (key, entry) in entries {
        ctx.ks.lock(key).insert_entry(key, entry);
    }
    ctx.ks.raise_cas_counter(max_cas);
    ctx.w().ok();
}

/// SHOAL.WAITALL timeout-ms: WAIT for every replica connected now; replies
/// how many acknowledged (0 at once without replicas).
pub fn waitall(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let Some(timeout) = parse_i64(req.arg(1)) else {
        return ctx.not_int();
    };
    if timeout < 0 {
        return ctx.err("ERR timeout is negative");
    }
    if ctx.shared.repl.is_replica() {
        return ctx.err("ERR SHOAL.WAITALL cannot be used with replica instances");
    }
    let n = ctx.shared.repl.replicas.lock().len() as i64;
    super::repl::wait_acks(ctx, n, timeout);
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_client::resp::{decode_request, Args, Decoded, Limits};

    fn keys_of(cmdline: &str) -> Vec<String> {
        let words: Vec<&[u8]> = cmdline.split(' ').map(str::as_bytes).collect();
        let frame = crate::repl::frame(&words);
        let mut args = Args::new();
        let Ok(Decoded::Frame { .. }) = decode_request(&frame, &Limits::default(), &mut args)
        else {
            panic!("bad frame");
        };
        let req = Req::new(&frame, &args);
        let spec = super::super::lookup(req.arg(0)).expect("known command");
        key_positions(spec, &req)
            .iter()
            .map(|i| String::from_utf8_lossy(req.arg(i)).into_owned())
            .collect()
    }

    #[test]
    fn key_positions_of_commands() {
        let k = |s: &str| keys_of(s).join(" ");
        assert_eq!(k("GET a"), "a");
        assert_eq!(k("SET a 1 EX 10"), "a");
        assert_eq!(k("MGET a b c"), "a b c");
        assert_eq!(k("DEL a b"), "a b");
        assert_eq!(k("EXISTS a b"), "a b");
        assert_eq!(k("TOUCH a"), "a");
        assert_eq!(k("UNLINK a b"), "a b");
        assert_eq!(k("MSET a 1 b 2"), "a b");
        assert_eq!(k("MSETNX a 1 b 2 c 3"), "a b c");
        assert_eq!(k("RENAME a b"), "a b");
        assert_eq!(k("RENAMENX a b"), "a b");
        assert_eq!(k("COPY a b REPLACE"), "a b");
        assert_eq!(k("SMOVE a b m"), "a b");
        assert_eq!(k("LMOVE a b LEFT RIGHT"), "a b");
        assert_eq!(k("RPOPLPUSH a b"), "a b");
        assert_eq!(k("SINTER a b c"), "a b c");
        assert_eq!(k("SUNIONSTORE d a b"), "d a b");
        assert_eq!(k("SDIFF a b"), "a b");
        assert_eq!(k("ZUNIONSTORE d 2 a b WEIGHTS 1 2"), "d a b");
        assert_eq!(k("ZINTERSTORE d 1 a"), "d a");
        assert_eq!(k("ZUNION 2 a b WITHSCORES"), "a b");
        assert_eq!(k("ZDIFF 1 a"), "a");
        assert_eq!(k("ZINTERCARD 2 a b LIMIT 1"), "a b");
        assert_eq!(k("SINTERCARD 2 a b LIMIT 1"), "a b");
        assert_eq!(k("LMPOP 2 a b LEFT"), "a b");
        assert_eq!(k("BLMPOP 0 2 a b LEFT"), "a b");
        assert_eq!(k("BZMPOP 0 1 a MIN"), "a");
        assert_eq!(k("ZMPOP 1 a MIN"), "a");
        assert_eq!(k("ZMPOP 9 a MIN"), "");
        assert_eq!(k("ZUNION x a b"), "");
        assert_eq!(k("BLPOP a b 0"), "a b");
        assert_eq!(k("BZPOPMIN a b 0"), "a b");
        assert_eq!(k("BITOP AND d a b"), "d a b");
        assert_eq!(k("OBJECT ENCODING a"), "a");
        assert_eq!(k("ZRANGESTORE d s 0 -1"), "d s");
        assert_eq!(k("SHOAL.IMPORT a p 0 0 1 b p 0 0 2"), "a b");
        assert_eq!(k("PING"), "");
        assert_eq!(k("SCAN 0"), "");
        assert_eq!(k("INFO server"), "");
    }
}
