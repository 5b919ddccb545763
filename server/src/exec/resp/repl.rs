//! Replication commands: REPLICAOF/SLAVEOF, ROLE, WAIT, FAILOVER, REPLCONF,
//! PSYNC/SYNC, DEBUG DIGEST, and the internal SHOAL.* records of the stream.
//! The machinery lives in `crate::repl`; this is the command surface.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{eq, parse_i64, Ctx, Req, Spec, TimeoutReply};
use super::{ADMIN, EXCLUSIVE, FAST, K1, NK, NOAUTH, READONLY, WRITE};
use crate::repl::{self, frame_into, FailoverState, Psync, WriteScope};
use shoal_keyspace::{Entry, Kind, Meta, Object};

/// This module's command table rows.
pub(super) fn table() -> Vec<Spec> {
    super::rows! {
        "replicaof", 3, ADMIN | EXCLUSIVE | NOAUTH, NK, replicaof;
        "slaveof", 3, ADMIN | EXCLUSIVE | NOAUTH, NK, replicaof;
        "role", 1, FAST, NK, role;
        "wait", 3, 0, NK, wait;
        "failover", -1, ADMIN | EXCLUSIVE, NK, failover;
        "replconf", -1, ADMIN, NK, replconf;
        "psync", -3, ADMIN, NK, psync;
        "sync", 1, ADMIN, NK, sync;
        "debug", -2, ADMIN, NK, debug;
        "shoal.epoch", 1, FAST, NK, shoal_epoch;
        "shoal.promote", 2, ADMIN | EXCLUSIVE, NK, shoal_promote;
        "shoal.clock", 2, FAST, NK, shoal_clock;
        "shoal.put", 7, WRITE, K1, shoal_put;
        "shoal.restore", 6, WRITE, K1, shoal_restore;
        "shoal.snapshot.end", 2, FAST, NK, shoal_clock;
    }
}

fn shared_arc(ctx: &Ctx<'_>) -> Option<Arc<crate::shared::Shared>> {
    ctx.shared.repl.shared()
}

pub fn replicaof(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    if ctx.conn.multi.is_some() || ctx.conn.in_exec {
        return ctx.err("ERR Command is not allowed inside a transaction");
    }
    if !ctx.conn.authed {
        return ctx.err("NOAUTH Authentication required.");
    }
    let Some(sh) = shared_arc(ctx) else {
        return ctx.err("ERR replication is not running");
    };
    let (a, b) = (req.arg(1), req.arg(2));
    if eq(a, "no") && eq(b, "one") {
        if sh.repl.is_replica() {
            repl::replica::become_primary(&sh, 0);
        }
        return ctx.w().ok();
    }
    let Some(port) = std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|p| *p != 0)
    else {
        return ctx.err("ERR Invalid master port");
    };
    let host = String::from_utf8_lossy(a).to_string();
    let same = sh
        .repl
        .master
        .lock()
        .as_ref()
        .is_some_and(|m| m.host == host && m.port == port);
    if same && sh.repl.is_replica() {
        return ctx.w().simple(b"OK Already connected to specified master");
    }
    repl::replica::become_replica(&sh, host, port);
    ctx.w().ok();
}

pub fn role(ctx: &mut Ctx<'_>, _req: &Req<'_>) {
    let r = &ctx.shared.repl;
    if r.is_replica() {
        let (host, port) = r
            .master
            .lock()
            .as_ref()
            .map(|m| (m.host.clone(), m.port))
            .unwrap_or_default();
        let st = r.link_state();
        let off = if st == repl::LinkState::Connected || r.applied.load(Ordering::Relaxed) > 0 {
            r.offset() as i64
        } else {
            -1
        };
        let mut w = ctx.w();
        w.array(5);
        w.bulk(b"slave");
        w.bulk(host.as_bytes());
        w.int(i64::from(port));
        w.bulk(st.name().as_bytes());
        w.int(off);
    } else {
        let off = r.offset();
        let replicas = r.replicas.lock().clone();
        let mut w = ctx.w();
        w.array(3);
        w.bulk(b"master");
        w.int(off as i64);
        w.array(replicas.len());
        for p in replicas {
            w.array(3);
            w.bulk(p.ip.as_bytes());
            w.bulk(p.port.to_string().as_bytes());
            w.bulk(p.ack.load(Ordering::Relaxed).to_string().as_bytes());
        }
    }
}

pub fn wait(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let (Some(n), Some(timeout)) = (parse_i64(req.arg(1)), parse_i64(req.arg(2))) else {
        return ctx.not_int();
    };
    if timeout < 0 {
        return ctx.err("ERR timeout is negative");
    }
    if ctx.shared.repl.is_replica() {
        return ctx.err("ERR WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is configured to be writable (which is not the default) writes to replicas are just local and are not propagated.");
    }
    wait_acks(ctx, n, timeout);
}

/// WAIT's body (`timeout` checked, not a replica): replies how many replicas
/// acknowledged this connection's last write once `n` did, the timeout
/// (ms, 0 = forever) passed, or at once inside EXEC; otherwise suspends the
/// connection and is re-run on every ACK.
pub(super) fn wait_acks(ctx: &mut Ctx<'_>, n: i64, timeout: i64) {
    let r = &ctx.shared.repl;
    let target = *ctx.conn.repl.wait_offset.get_or_insert_with(|| r.offset());
    let acked = r.acked(target);
    let expired = matches!(ctx.conn.block_deadline, Some(Some(d)) if Instant::now() >= d);
    if acked as i64 >= n || ctx.conn.in_exec || expired {
        ctx.conn.repl.wait_offset = None;
        return ctx.w().int(acked as i64);
    }
    r.request_acks();
    r.add_waiter(ctx.conn.waker.clone());
    let t = (timeout > 0).then(|| Duration::from_millis(timeout as u64));
    ctx.block_on(&[], t, TimeoutReply::Rerun);
}

pub fn replconf(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    if req.len() % 2 == 0
        && !(req.len() >= 2 && (eq(req.arg(1), "getack") || eq(req.arg(1), "ack")))
    {
        return ctx.syntax();
    }
    let mut i = 1;
    while i + 1 < req.len() {
        let (k, v) = (req.arg(i), req.arg(i + 1));
        if eq(k, "listening-port") {
            match std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<u16>().ok())
            {
                Some(p) => ctx.conn.repl.listening_port = p,
                None => return ctx.not_int(),
            }
        } else if eq(k, "shoal-epoch") {
            let Some(e) = std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
            else {
                return ctx.not_int();
            };
            let r = &ctx.shared.repl;
            let mine = r.epoch.load(Ordering::SeqCst);
            if e > mine && !r.is_replica() {
                // Someone has seen a newer configuration: this primary is stale.
                r.fenced.store(true, Ordering::SeqCst);
                let msg = format!(
                    "ERR STALEPRIMARY this primary's epoch {mine} is older than the replica's {e}"
                );
                return ctx.err(&msg);
            }
            ctx.conn.repl.peer_epoch = e;
            return ctx.w().int(mine as i64);
        } else if eq(k, "ack") || eq(k, "getack") {
            // Outside a replication link there is nothing to acknowledge.
            return;
        } else if !(eq(k, "capa")
            || eq(k, "ip-address")
            || eq(k, "rdb-only")
            || eq(k, "rdb-filter-only"))
        {
            let msg = format!(
                "ERR Unrecognized REPLCONF option: {}",
                String::from_utf8_lossy(k)
            );
            return ctx.err(&super::sanitize(msg));
        }
        i += 2;
    }
    ctx.w().ok();
}

fn start_sync(ctx: &mut Ctx<'_>, replid: String, offset: i64) {
    if ctx.conn.multi.is_some() || ctx.conn.in_exec {
        return ctx.err("ERR Command is not allowed inside a transaction");
    }
    let r = &ctx.shared.repl;
    if r.is_replica() && r.link_state() != repl::LinkState::Connected {
        return ctx.err("NOMASTERLINK Can't SYNC while not connected with my master");
    }
    ctx.conn.repl.psync = Some(Psync { replid, offset });
}

pub fn psync(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let replid = String::from_utf8_lossy(req.arg(1)).to_string();
    let Some(off) = parse_i64(req.arg(2)) else {
        return ctx.not_int();
    };
    start_sync(ctx, replid, off);
}

pub fn sync(ctx: &mut Ctx<'_>, _req: &Req<'_>) {
    start_sync(ctx, "?".into(), -1);
}

pub fn failover(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let r = &ctx.shared.repl;
    let (mut to, mut force, mut abort, mut timeout) = (None, false, false, None);
    let mut i = 1;
    while i < req.len() {
        let a = req.arg(i);
        if eq(a, "to") && i + 2 < req.len() && to.is_none() {
            let Some(port) = std::str::from_utf8(req.arg(i + 2))
                .ok()
                .and_then(|s| s.parse::<u16>().ok())
            else {
                return ctx.err("ERR Invalid port");
            };
            to = Some((String::from_utf8_lossy(req.arg(i + 1)).to_string(), port));
            i += 3;
        } else if eq(a, "force") && !force {
            force = true;
            i += 1;
        } else if eq(a, "abort") && !abort {
            abort = true;
            i += 1;
        } else if eq(a, "timeout") && i + 1 < req.len() && timeout.is_none() {
            match parse_i64(req.arg(i + 1)) {
                Some(t) if t > 0 => timeout = Some(t as u64),
                _ => return ctx.err("ERR FAILOVER timeout must be greater than 0"),
            }
            i += 2;
        } else {
            return ctx.syntax();
        }
    }
    if abort {
        if to.is_some() || force || timeout.is_some() {
            return ctx.syntax();
        }
        if r.failover() == FailoverState::None {
            return ctx.err("ERR No failover in progress.");
        }
        r.failover_abort.store(true, Ordering::SeqCst);
        return ctx.w().ok();
    }
    if r.is_replica() {
        return ctx.err("ERR FAILOVER is not valid when server is a replica.");
    }
    if force && (to.is_none() || timeout.is_none()) {
        return ctx
            .err("ERR FAILOVER with force option requires both a timeout and target HOST and IP.");
    }
    if r.failover() != FailoverState::None {
        return ctx.err("ERR FAILOVER already in progress.");
    }
    let replicas = r.replicas.lock().clone();
    if replicas.is_empty() {
        return ctx.err("ERR FAILOVER requires connected replicas.");
    }
    let target = match &to {
        Some((h, p)) => replicas
            .iter()
            .find(|x| x.port == *p && (x.ip == *h || (h == "localhost" && x.ip == "127.0.0.1")))
            .cloned(),
        None => replicas
            .iter()
            .filter(|x| x.state.load(Ordering::Relaxed) == 2)
            .max_by_key(|x| x.ack.load(Ordering::Relaxed))
            .cloned(),
    };
    let Some(target) = target else {
        return ctx.err("ERR FAILOVER target HOST and PORT is not a replica.");
    };
    let Some(sh) = shared_arc(ctx) else {
        return ctx.err("ERR replication is not running");
    };
    {
        // Under the repl lock: writes already running finish first, later ones
        // are refused (-READONLY) until the handover is done or aborted.
        let _st = r.stream.lock();
        r.set_failover(FailoverState::WaitingForSync);
        r.failover_abort.store(false, Ordering::SeqCst);
    }
    let host = to.map_or_else(|| target.ip.clone(), |(h, _)| h);
    let port = target.port;
    if let Some(rt) = r.runtime() {
        rt.spawn(repl::failover_task(sh, target, host, port, timeout, force));
    }
    ctx.w().ok();
}

pub fn shoal_epoch(ctx: &mut Ctx<'_>, _req: &Req<'_>) {
    let r = &ctx.shared.repl;
    let (host, port) = if r.is_replica() {
        r.master
            .lock()
            .as_ref()
            .map(|m| (m.host.clone(), m.port))
            .unwrap_or_default()
    } else {
        (String::new(), 0)
    };
    let epoch = r.epoch.load(Ordering::SeqCst);
    let mut w = ctx.w();
    w.array(4);
    w.int(epoch as i64);
    w.bulk(if r.is_replica() { b"slave" } else { b"master" });
    w.bulk(host.as_bytes());
    w.int(i64::from(port));
}

pub fn shoal_promote(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let Some(e) = parse_i64(req.arg(1)).filter(|e| *e >= 0) else {
        return ctx.not_int();
    };
    let Some(sh) = shared_arc(ctx) else {
        return ctx.err("ERR replication is not running");
    };
    repl::replica::become_primary(&sh, e as u64);
    ctx.w().ok();
}

pub fn shoal_clock(ctx: &mut Ctx<'_>, _req: &Req<'_>) {
    ctx.err("ERR this record is only valid in a replication stream");
}

/// SHOAL.PUT key value flags pxat cas cas-counter: a memcache item's state.
pub fn shoal_put(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let num = |i: usize| {
        std::str::from_utf8(req.arg(i))
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
    };
    let (Some(flags), Some(at), Some(cas), Some(ctr)) = (num(3), num(4), num(5), num(6)) else {
        return ctx.not_int();
    };
    let key = req.arg(1);
    let meta = Meta {
        expire_at: (at != 0).then_some(at),
        flags: flags as u32,
        cas,
        access: ctx.ks.initial_access(ctx.now),
    };
    ctx.ks
        .lock(key)
        .insert_entry(key, Entry::new(key, &[req.arg(2)], &meta));
    ctx.ks.raise_cas_counter(ctr.max(cas));
    ctx.w().ok();
}

/// SHOAL.RESTORE key payload pxat flags cas: one snapshot record.
pub fn shoal_restore(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    if repl::replica::restore_record(ctx.shared, req, ctx.now) {
        ctx.w().ok();
    } else {
        ctx.err("ERR Bad data format");
    }
}

pub fn debug(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let sub = req.arg(1);
    if eq(sub, "digest") && req.len() == 2 {
        let d = digest(ctx);
        return ctx.w().simple(d.as_bytes());
    }
    if eq(sub, "digest-value") {
        let mut out = Vec::new();
        let keys: Vec<Vec<u8>> = req.rest(2).map(<[u8]>::to_vec).collect();
        for k in &keys {
            let mut acc = [0u64; 3];
            if let Some(e) = ctx.ks.lock(k).lookup(k, ctx.now) {
                acc = entry_hash(e);
            }
            out.push(hex(&acc));
        }
        let mut w = ctx.w();
        w.array(out.len());
        for h in out {
            w.simple(h.as_bytes());
        }
        return;
    }
    let msg = format!(
        "ERR unknown subcommand '{}'. Try DEBUG HELP.",
        String::from_utf8_lossy(sub)
            .chars()
            .take(128)
            .collect::<String>()
    );
    ctx.err(&super::sanitize(msg));
}

/// Three FNV-1a lanes with different bases, finished with a 64-bit mixer.
struct Lanes([u64; 3]);

impl Lanes {
    fn new(kind: u8) -> Lanes {
        let mut l = Lanes([
            0xcbf2_9ce4_8422_2325,
            0x9e37_79b9_7f4a_7c15,
            0xd6e8_feb8_6659_fd93,
        ]);
        l.feed(&[kind]);
        l
    }

    fn feed(&mut self, b: &[u8]) {
        for (i, lane) in self.0.iter_mut().enumerate() {
            let mut h = *lane;
            for &c in (b.len() as u64).to_le_bytes().iter().chain(b) {
                h ^= u64::from(c);
                h = h.wrapping_mul(0x0100_0000_01b3 + 2 * i as u64);
            }
            *lane = h;
        }
    }

    fn finish(self) -> [u64; 3] {
        self.0.map(|mut z| {
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
    }
}

fn add(acc: &mut [u64; 3], h: [u64; 3]) {
    for (a, b) in acc.iter_mut().zip(h) {
        *a = a.wrapping_add(b);
    }
}

/// Hash of one key: key, type, expiry and the value in a canonical form
/// (hash fields and set members order-independent, list in order).
fn entry_hash(e: &Entry) -> [u64; 3] {
    let mut l = Lanes::new(e.kind() as u8);
    l.feed(e.key());
    l.feed(&e.expire_at().unwrap_or(0).to_le_bytes());
    let mut elems = [0u64; 3];
    match e.object() {
        None => l.feed(e.value()),
        Some(Object::Hash(h)) => {
            for (f, v) in h.iter() {
                let mut x = Lanes::new(1);
                x.feed(f);
                x.feed(v);
                add(&mut elems, x.finish());
            }
        }
        Some(Object::Set(s)) => {
            for m in s.iter() {
                let mut x = Lanes::new(3);
                m.with_bytes(|b| x.feed(b));
                add(&mut elems, x.finish());
            }
        }
        Some(Object::List(list)) => {
            for v in list.iter() {
                l.feed(v);
            }
        }
        Some(Object::ZSet(_)) => {
            debug_assert_eq!(e.kind(), Kind::ZSet);
            l.feed(&crate::dump::encode(e));
        }
    }
    for x in elems {
        l.feed(&x.to_le_bytes());
    }
    l.finish()
}

fn hex(acc: &[u64; 3]) -> String {
    if acc.iter().all(|x| *x == 0) {
        return "0".repeat(40);
    }
    format!("{:016x}{:016x}{:08x}", acc[0], acc[1], acc[2] >> 32)
}

/// DEBUG DIGEST: 40 hex chars over every live key (order-independent sum of
/// per-key hashes of key, type, value and expiry); all zeros when empty.
pub fn digest(ctx: &Ctx<'_>) -> String {
    let mut acc = [0u64; 3];
    ctx.ks.for_each(ctx.now, |e| add(&mut acc, entry_hash(e)));
    hex(&acc)
}

/// CLIENT KILL with TYPE master/replica/slave (the connections replication
/// owns). Returns false when the request is not one of those.
pub(super) fn client_kill(ctx: &mut Ctx<'_>, req: &Req<'_>) -> bool {
    if req.len() < 4 || !eq(req.arg(1), "kill") || req.len() % 2 != 0 {
        return false;
    }
    let mut typ = None;
    for i in (2..req.len()).step_by(2) {
        if eq(req.arg(i), "type") {
            typ = Some(req.arg(i + 1));
        }
    }
    let Some(t) = typ else { return false };
    let r = &ctx.shared.repl;
    if eq(t, "master") {
        let n = match r.master.lock().as_ref() {
            Some(m) if r.link_state() != repl::LinkState::Connect => {
                m.kill.notify_one();
                1
            }
            _ => 0,
        };
        ctx.w().int(n);
        true
    } else if eq(t, "replica") || eq(t, "slave") {
        let mut n = 0;
        for p in r.replicas.lock().iter() {
            p.handle.killed.store(true, Ordering::SeqCst);
            p.handle.kill.notify_one();
            n += 1;
        }
        ctx.w().int(n);
        true
    } else {
        false
    }
}

/// Checks before a command runs on a server with replication: read-only
/// replica, stale link, loading, min-replicas, fencing.
pub(super) fn refusal(ctx: &Ctx<'_>, spec: &Spec) -> Option<&'static str> {
    if spec.flags & WRITE != 0 {
        if let Some(m) = repl::write_refusal(ctx.shared) {
            return Some(m);
        }
    }
    if spec.flags & (READONLY | WRITE) != 0 {
        return repl::read_refusal(ctx.shared);
    }
    None
}

/// After a write ran under the repl lock: what goes into the stream.
pub(super) fn propagate(
    ctx: &mut Ctx<'_>,
    req: &Req<'_>,
    spec: &Spec,
    scope: WriteScope<'_>,
    mark: usize,
) {
    if !scope.wrote() {
        return repl::end_write(ctx.shared, scope, ctx.now, None);
    }
    let body = if spec.name == "spop" {
        match popped(&ctx.out[mark.min(ctx.out.len())..]) {
            Some(members) if !members.is_empty() => {
                let mut args: Vec<&[u8]> = vec![b"SREM", req.arg(1)];
                args.extend(members.iter().map(Vec::as_slice));
                let mut b = Vec::new();
                frame_into(&mut b, &args);
                std::borrow::Cow::Owned(b)
            }
            _ => req.raw(),
        }
    } else {
        req.raw()
    };
    repl::end_write(ctx.shared, scope, ctx.now, Some(&body));
}

/// Members in an SPOP reply: a bulk string, or an array/set of them.
fn popped(reply: &[u8]) -> Option<Vec<Vec<u8>>> {
    fn line(b: &[u8], pos: usize) -> Option<(&[u8], usize)> {
        let i = b[pos..].windows(2).position(|w| w == b"\r\n")?;
        Some((&b[pos..pos + i], pos + i + 2))
    }
    fn bulk(b: &[u8], pos: usize) -> Option<(Vec<u8>, usize)> {
        let (l, p) = line(b, pos)?;
        if l.first() != Some(&b'$') {
            return None;
        }
        let n: usize = std::str::from_utf8(&l[1..]).ok()?.parse().ok()?;
        Some((b.get(p..p + n)?.to_vec(), p + n + 2))
    }
    match reply.first()? {
        b'$' => bulk(reply, 0).map(|(v, _)| vec![v]),
        b'*' | b'~' => {
            let (l, mut p) = line(reply, 0)?;
            let n: usize = std::str::from_utf8(&l[1..]).ok()?.parse().ok()?;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                let (m, np) = bulk(reply, p)?;
                v.push(m);
                p = np;
            }
            Some(v)
        }
        _ => Some(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spop_replies() {
        assert_eq!(popped(b"$1\r\na\r\n").unwrap(), vec![b"a".to_vec()]);
        assert_eq!(
            popped(b"*2\r\n$1\r\na\r\n$2\r\nbc\r\n").unwrap(),
            vec![b"a".to_vec(), b"bc".to_vec()]
        );
        assert_eq!(popped(b"~1\r\n$1\r\nz\r\n").unwrap(), vec![b"z".to_vec()]);
        assert!(popped(b"$-1\r\n").is_none() || popped(b"$-1\r\n").unwrap().is_empty());
    }
}
