//! The Redis frontend: one task per client connection.
//!
//! Each wake reads what the client sent, routes every complete request (forwarding its
//! bytes unchanged to the owning server's shared connection, splitting multi-key commands
//! per server, or answering locally), waits once for all replies of the batch, and writes
//! them back in request order with one write.
//!
//! Ordering: requests to one server travel on one connection, so they execute in the order
//! the client sent them. A request that must use another connection to the same server (a
//! dedicated one for MULTI/EXEC, WATCH or a blocking command, or the shared one again
//! after it) first lets the batch before it complete — a "lane change" barrier.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::io::{read_some, write_all, Conn};
use bytes::{BufMut, Bytes, BytesMut};
use shoal_client::resp::scan::{array_header, integer, reply_len};
use shoal_client::resp::{
    decode_request, encode_command, Args, Decoded, Limits, Proto, ReplyWriter,
};

use crate::ask::Ask;
use crate::backend::{BackendConn, Batch, Failure, Reply, Wire};
use crate::commands::{self, Keys, Merge, Route, Spec};
use crate::config::{BackendKind, ReadPolicy};
use crate::metrics::{self, Stats};
use crate::topology::PoolView;
use crate::worker::{pick_addr, Worker};

const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";
/// A SORT `BY`/`GET` pattern whose keys may live on another server than the sorted key.
const SORT_PATTERN: &str = "ERR BY/GET option of SORT denied through the proxy when keys formed by the pattern may be on another server (use a hash tag that routes with the key)";
/// Requests routed per batch before replies are awaited (bounds memory per client).
const MAX_BATCH: usize = 1024;
/// Bytes read per batch.
const READ_CHUNK: usize = 64 * 1024;

/// How one request's reply is produced.
enum Out {
    /// Bytes in the local buffer.
    Local(std::ops::Range<usize>),
    /// One backend reply, forwarded as is.
    Slot(u32),
    /// Several backend replies merged.
    Gather(Box<Gather>),
}

struct Gather {
    merge: Merge,
    /// (slot, server index) of each part.
    parts: Vec<(u32, usize)>,
    /// MGET: part index of each original key.
    order: Vec<u16>,
}

/// Per-connection session state.
struct Session {
    id: u64,
    proto: Proto,
    authed: bool,
    name: Option<Bytes>,
    closing: bool,
    /// Inside MULTI.
    multi: bool,
    /// A queued command failed: EXEC must abort.
    multi_aborted: bool,
    /// The dedicated connection of a WATCH/MULTI (server index, connection).
    pinned: Option<(usize, Rc<BackendConn>)>,
    /// Held while `pinned` is set (see `topology::OwnedRouteTicket`).
    pin_ticket: Option<crate::topology::OwnedRouteTicket>,
    /// The dedicated connections of pub/sub, per server index.
    subs: Vec<Option<Rc<BackendConn>>>,
    subscribed: bool,
    /// Subscribed channels, patterns and shard channels, in subscription order.
    channels: Vec<Bytes>,
    patterns: Vec<Bytes>,
    shard_channels: Vec<Bytes>,
    /// Blocking commands' connections, returned after the batch.
    held: Vec<Rc<BackendConn>>,
    /// Servers written since the last WAIT.
    written: Vec<bool>,
    /// Servers written in the current batch.
    batch_writes: Vec<usize>,
    /// When this client's last write to each server completed (read-your-writes).
    last_write_us: Vec<u64>,
    /// The lane of the last routed request: None = shared connections.
    lane: Option<usize>,
    /// Requests of this batch sent to a moving key's old owner, resolved after it.
    asks: Vec<Ask>,
    /// One of them is a blocking command (resolved on dedicated connections).
    blocking_asks: bool,
    /// Index of the output being routed.
    out_idx: usize,
    /// Scratch for wrapped requests.
    wrap: BytesMut,
    /// Names of the pool's servers the per-server vectors above are indexed by.
    names: Vec<String>,
    /// Keys this session pulled to their new owner during a reshard (see
    /// [`crate::pull`]), with that owner: routed there directly while it is their new owner.
    pulled: Vec<(Vec<u8>, usize)>,
}

impl Session {
    fn sub_set(&self, k: SubKind) -> &Vec<Bytes> {
        match k {
            SubKind::Channel => &self.channels,
            SubKind::Pattern => &self.patterns,
            SubKind::Shard => &self.shard_channels,
        }
    }

    fn sub_set_mut(&mut self, k: SubKind) -> &mut Vec<Bytes> {
        match k {
            SubKind::Channel => &mut self.channels,
            SubKind::Pattern => &mut self.patterns,
            SubKind::Shard => &mut self.shard_channels,
        }
    }

    /// Redis' count in a confirmation: channels + patterns, or shard channels.
    fn sub_count(&self, k: SubKind) -> usize {
        match k {
            SubKind::Shard => self.shard_channels.len(),
            _ => self.channels.len() + self.patterns.len(),
        }
    }

    fn sub_total(&self) -> usize {
        self.channels.len() + self.patterns.len() + self.shard_channels.len()
    }

    fn has_sub_conns(&self) -> bool {
        self.subs.iter().any(Option::is_some)
    }
}

/// Serves one client connection of pool `pool_idx` until it closes.
pub async fn serve<S>(stream: S, worker: Rc<Worker>, pool_idx: usize)
where
    S: Conn,
{
    let limits = Limits::default();
    let mut rbuf = BytesMut::with_capacity(16 * 1024);
    let mut wbuf = BytesMut::with_capacity(16 * 1024);
    let mut local = BytesMut::new();
    let mut args = Args::new();
    let mut outs: Vec<Out> = Vec::new();
    let batch = Rc::new(Batch::default());
    let topo0 = worker.topology();
    let nservers = topo0.pools[pool_idx].servers.len();
    let mut sess = Session {
        id: worker.client_id(),
        proto: Proto::Resp2,
        authed: topo0.pools[pool_idx].cfg.redis_auth.is_none(),
        name: None,
        closing: false,
        multi: false,
        multi_aborted: false,
        pinned: None,
        pin_ticket: None,
        subs: vec![None; nservers],
        subscribed: false,
        channels: Vec::new(),
        patterns: Vec::new(),
        shard_channels: Vec::new(),
        held: Vec::new(),
        written: vec![false; nservers],
        batch_writes: Vec::new(),
        last_write_us: vec![0; nservers],
        lane: None,
        asks: Vec::new(),
        blocking_asks: false,
        out_idx: 0,
        wrap: BytesMut::new(),
        pulled: Vec::new(),
        names: topo0.pools[pool_idx]
            .servers
            .iter()
            .map(|s| s.name.clone())
            .collect(),
    };
    let mut scratch = BytesMut::new();
    let mut key_idx = Vec::new();
    let mut ids: Vec<(u16, bool)> = Vec::new();
    let mut need_read = true;
    let (mut pool, mut pool_version) = {
        let t = worker.topology();
        (t.pools[pool_idx].clone(), t.version)
    };
    'conn: loop {
        if need_read {
            if rbuf.capacity() - rbuf.len() < 4096 {
                rbuf.reserve(READ_CHUNK);
            }
            let n = if sess.has_sub_conns() {
                tokio::select! {
                    r = read_some(&stream, &mut rbuf) => r,
                    () = pushed(&batch) => {
                        wbuf.clear();
                        forward_pushed(&batch, &mut wbuf);
                        if !wbuf.is_empty() && write_all(&stream, &wbuf).await.is_err() {
                            break 'conn;
                        }
                        wbuf.clear();
                        continue 'conn;
                    }
                }
            } else {
                read_some(&stream, &mut rbuf).await
            };
            match n {
                Ok(0) | Err(_) => break 'conn,
                Ok(_) => need_read = false,
            }
        }
        let started = Instant::now();
        // Held until this batch's replies are in (see topology::RouteGate).
        let _ticket = worker.route_ticket();
        // A pinned session (transaction, WATCH) routes with the view it pinned under until
        // it unpins; its pin ticket holds back the reshard's next phase meanwhile (see
        // topology::OwnedRouteTicket).
        if sess.pinned.is_none() && worker.shared.version() != pool_version {
            let topo = worker.topology();
            pool = topo.pools[pool_idx].clone();
            pool_version = topo.version;
            if pool.moving.is_none() {
                sess.pulled.clear();
            }
        }
        if !same_servers(&sess.names, &pool) {
            // A reload or a reshard changed the pool's servers.
            remap_servers(&mut sess, &pool);
        }
        // Routing below is synchronous: every shared connection it picks is this client's.
        worker.set_affinity(sess.id);
        batch.reset();
        outs.clear();
        local.clear();
        let mut consumed_total = 0;
        let mut n = 0;
        let mut fatal: Option<&'static [u8]> = None;
        while n < MAX_BATCH && !sess.closing {
            let buf = &rbuf[consumed_total..];
            let consumed = match decode_request(buf, &limits, &mut args) {
                Ok(Decoded::Frame { consumed }) => consumed,
                Ok(Decoded::Incomplete { .. }) => {
                    need_read = true;
                    break;
                }
                Err(e) => {
                    fatal = Some(e.reply());
                    break;
                }
            };
            if args.is_empty() {
                consumed_total += consumed;
                continue;
            }
            let raw_is_multibulk = buf[0] == b'*';
            let ctx = Ctx {
                worker: &worker,
                pool: &pool,
                pool_idx,
                batch: &batch,
                buf,
                raw: &buf[..consumed],
                raw_is_multibulk,
                args: &args,
            };
            // Lane barrier: a request for another connection waits for the batch so far.
            let spec = commands::lookup(args.get(buf, 0));
            if let Some((src, dst, keys)) = pull_needed(&ctx, spec, &sess, &mut key_idx) {
                // A transaction or WATCH on keys a reshard is moving: move them first
                // (after the batch so far), then route as if they had always been there.
                if n > 0 {
                    break;
                }
                if crate::pull::pull(&worker, &pool, pool_idx, src, dst, &keys).await {
                    if sess.pulled.len() >= 4096 {
                        sess.pulled.clear();
                    }
                    sess.pulled.extend(keys.into_iter().map(|k| (k, dst)));
                }
            }
            let lane = lane_of(&ctx, spec, &sess);
            if lane != sess.lane && n > 0 {
                break;
            }
            sess.out_idx = outs.len();
            let out = route(
                &ctx,
                spec,
                &mut sess,
                &mut local,
                &mut scratch,
                &mut key_idx,
            );
            sess.lane = lane_after(&sess, lane);
            let is_err_local = matches!(&out, Out::Local(r) if local.get(r.start) == Some(&b'-'));
            ids.push((spec.map_or(0, |s| s.id), is_err_local));
            outs.push(out);
            consumed_total += consumed;
            n += 1;
        }
        let _ = rbuf.split_to(consumed_total);
        if n == 0 && fatal.is_none() && !sess.closing {
            continue;
        }
        Stats::add(&worker.stats.requests, n as u64);
        if sess.held.is_empty() {
            batch.wait().await;
        } else {
            // A blocking command waits on a dedicated connection. If the client goes away
            // meanwhile, closing that connection makes the server cancel the wait, so it
            // does not pop an element for a dead socket. Bytes the client pipelines
            // meanwhile stay in the buffer for the next batch.
            let gone = loop {
                if rbuf.capacity() - rbuf.len() < 4096 {
                    rbuf.reserve(READ_CHUNK);
                }
                tokio::select! {
                    () = batch.wait() => break false,
                    r = read_some(&stream, &mut rbuf) => match r {
                        Ok(0) | Err(_) => break true,
                        Ok(_) => {}
                    },
                }
            };
            if gone {
                for c in sess.held.drain(..) {
                    c.close();
                }
                break 'conn;
            }
        }
        if !sess.asks.is_empty() {
            resolve_asks(&worker, &pool, pool_idx, &batch, &mut sess, &mut outs).await;
        }
        metrics::record_batch(pool_idx, &ids, started);
        ids.clear();
        if !sess.batch_writes.is_empty() {
            let now = crate::topology::now_us();
            for s in sess.batch_writes.drain(..) {
                if let Some(t) = sess.last_write_us.get_mut(s) {
                    *t = now;
                }
            }
        }
        for c in sess.held.drain(..) {
            worker.checkin(pool_idx, c, wire_of(sess.proto));
        }
        assemble(
            &outs,
            &batch,
            &local,
            &pool,
            sess.proto,
            &mut wbuf,
            &worker.stats,
        );
        if sess.has_sub_conns() {
            forward_pushed(&batch, &mut wbuf);
        }
        if let Some(reply) = fatal {
            wbuf.extend_from_slice(reply);
            sess.closing = true;
        }
        if !wbuf.is_empty() {
            if write_all(&stream, &wbuf).await.is_err() {
                break;
            }
            wbuf.clear();
        }
        if sess.closing {
            break;
        }
        if rbuf.capacity() > 1 << 20 && rbuf.is_empty() {
            rbuf = BytesMut::with_capacity(16 * 1024);
        }
    }
    drop(stream);
    if let Some((_, c)) = sess.pinned.take() {
        c.close();
    }
    for c in sess.subs.iter().flatten() {
        c.close();
    }
    for c in sess.held.drain(..) {
        c.close();
    }
}

/// Whether `names` are the servers of `pool`, in order.
fn same_servers(names: &[String], pool: &PoolView) -> bool {
    names.len() == pool.servers.len() && names.iter().zip(&pool.servers).all(|(n, s)| *n == s.name)
}

/// Re-indexes the session's per-server state (written since WAIT, last write times,
/// pub/sub connections) by server name after the pool's server list changed: a server
/// removed from the middle must not hand its state to the one after it.
fn remap_servers(sess: &mut Session, pool: &PoolView) {
    let n = pool.servers.len();
    let mut written = vec![false; n];
    let mut last = vec![0; n];
    let mut subs: Vec<Option<Rc<BackendConn>>> = vec![None; n];
    for (i, old) in sess.names.iter().enumerate() {
        match pool.servers.iter().position(|s| s.name == *old) {
            Some(j) => {
                written[j] = sess.written.get(i).copied().unwrap_or(false);
                last[j] = sess.last_write_us.get(i).copied().unwrap_or(0);
                subs[j] = sess.subs.get_mut(i).and_then(Option::take);
            }
            None => {
                if let Some(c) = sess.subs.get_mut(i).and_then(Option::take) {
                    c.close();
                }
            }
        }
    }
    sess.written = written;
    sess.last_write_us = last;
    sess.subs = subs;
    sess.names = pool.servers.iter().map(|s| s.name.clone()).collect();
}

/// Sends moving keys' requests on to their new owners (or asks again) until every one
/// has its final reply (see [`crate::ask`]).
async fn resolve_asks(
    worker: &Rc<Worker>,
    pool: &Arc<PoolView>,
    pool_idx: usize,
    batch: &Rc<Batch>,
    sess: &mut Session,
    outs: &mut [Out],
) {
    let mut asks = std::mem::take(&mut sess.asks);
    let wire = wire_of(sess.proto);
    let blocking = std::mem::take(&mut sess.blocking_asks);
    let held = &mut sess.held;
    crate::ask::resolve(
        &mut asks,
        batch,
        pool,
        false,
        |a, to_new, bytes| {
            let idx = if to_new { a.dst } else { a.src };
            let addr = &pool.servers[idx].primary;
            let slot = batch.slot();
            if blocking {
                // Blocking commands of the batch wait on dedicated connections.
                let conn = worker.checkout(pool_idx, &pool.cfg, addr, wire);
                conn.enqueue(bytes, batch, slot);
                held.push(conn);
            } else {
                worker
                    .conn(pool_idx, &pool.cfg, addr, wire)
                    .enqueue(bytes, batch, slot);
            }
            slot
        },
        |out, part, slot| match &mut outs[out] {
            Out::Slot(s) => *s = slot,
            Out::Gather(g) => {
                if let Some(p) = g.parts.get_mut(part) {
                    p.0 = slot;
                }
            }
            Out::Local(_) => {}
        },
    )
    .await;
}

/// Resolves when a subscribed connection has frames for the client.
async fn pushed(batch: &Batch) {
    std::future::poll_fn(|cx| {
        if batch.pushed.borrow().is_empty() {
            batch.register(cx.waker());
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
}

fn wire_of(p: Proto) -> Wire {
    match p {
        Proto::Resp2 => Wire::Resp2,
        Proto::Resp3 => Wire::Resp3,
    }
}

struct Ctx<'a> {
    worker: &'a Rc<Worker>,
    pool: &'a Arc<PoolView>,
    pool_idx: usize,
    batch: &'a Rc<Batch>,
    buf: &'a [u8],
    raw: &'a [u8],
    raw_is_multibulk: bool,
    args: &'a Args,
}

impl Ctx<'_> {
    fn arg(&self, i: usize) -> &[u8] {
        self.args.get(self.buf, i)
    }

    fn argc(&self) -> usize {
        self.args.len()
    }

    /// The request in multibulk form (inline requests are re-encoded).
    fn request<'b>(&'b self, scratch: &'b mut BytesMut) -> &'b [u8] {
        if self.raw_is_multibulk {
            return self.raw;
        }
        scratch.clear();
        let v: Vec<&[u8]> = self.args.iter(self.buf).collect();
        encode_command(&v, scratch);
        &scratch[..]
    }
}

/// The connection lane a request will use: None = shared, Some(server) = dedicated.
fn lane_of(ctx: &Ctx<'_>, spec: Option<&Spec>, sess: &Session) -> Option<usize> {
    if let Some((s, _)) = &sess.pinned {
        return Some(*s);
    }
    let spec = spec?;
    // WAIT on a Shoal pool runs on a dedicated connection too (see `session_command`).
    let shared_wait = eq(ctx.arg(0), b"WAIT") && ctx.pool.cfg.backend != BackendKind::Shoal;
    if spec.blocking || matches!(spec.route, Route::Session) && !shared_wait {
        // The server is not known before routing; any dedicated lane is a barrier.
        return Some(usize::MAX);
    }
    None
}

fn lane_after(sess: &Session, lane: Option<usize>) -> Option<usize> {
    match &sess.pinned {
        Some((s, _)) => Some(*s),
        None => lane,
    }
}

fn eq(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn local_reply(local: &mut BytesMut, f: impl FnOnce(&mut ReplyWriter<'_>), proto: Proto) -> Out {
    let start = local.len();
    let mut w = ReplyWriter::new(local, proto);
    f(&mut w);
    Out::Local(start..local.len())
}

fn local_error(local: &mut BytesMut, msg: &str) -> Out {
    let start = local.len();
    local.put_u8(b'-');
    local.put_slice(msg.as_bytes());
    local.put_slice(b"\r\n");
    Out::Local(start..local.len())
}

fn wrong_args(local: &mut BytesMut, name: &[u8]) -> Out {
    let msg = format!(
        "ERR wrong number of arguments for '{}' command",
        String::from_utf8_lossy(name).to_ascii_lowercase()
    );
    local_error(local, &msg)
}

/// `TRYAGAIN` for a transaction or WATCH on a key a reshard is moving.
const MOVING: &str =
    "TRYAGAIN shoal-proxy: a key of this transaction is being resharded, retry shortly";

/// For a request that will run on a pinned connection (WATCH, inside MULTI or after a
/// WATCH) on keys a reshard is moving and the session has not pulled yet: (old owner, new
/// owner, the keys) to pull before it is routed (see [`crate::pull`]).
fn pull_needed(
    ctx: &Ctx<'_>,
    spec: Option<&Spec>,
    sess: &Session,
    key_idx: &mut Vec<usize>,
) -> Option<(usize, usize, Vec<Vec<u8>>)> {
    let spec = spec?;
    if ctx.pool.moving.is_none() || !crate::pull::supported(ctx.pool) {
        return None;
    }
    let watch = eq(ctx.arg(0), b"WATCH");
    if !(watch || sess.multi || sess.pinned.is_some()) {
        return None;
    }
    if !watch && !matches!(spec.route, Route::Keyed | Route::Split(_)) {
        return None;
    }
    match keys_owners(ctx, spec, key_idx, &sess.pulled) {
        Ok(Some((s, d))) if s != d => {
            Some((s, d, key_idx.iter().map(|&i| ctx.arg(i).to_vec()).collect()))
        }
        _ => None,
    }
}

/// The (old, new) owners shared by every key of the request (equal unless a reshard moves
/// them; a key in `pulled` with its new owner counts as moved); Ok(None) for a keyless
/// request, Err(message) when the keys are on several servers (or a SORT pattern's keys
/// may be).
fn keys_owners(
    ctx: &Ctx<'_>,
    spec: &Spec,
    key_idx: &mut Vec<usize>,
    pulled: &[(Vec<u8>, usize)],
) -> Result<Option<(usize, usize)>, &'static str> {
    let numkeys = match spec.keys {
        Keys::NumKeys { pos, .. } if pos > 0 && pos < ctx.argc() => {
            std::str::from_utf8(ctx.arg(pos))
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
        }
        _ => None,
    };
    if !commands::key_indices(spec.keys, ctx.argc(), numkeys, key_idx) {
        return Ok(None);
    }
    let mut patterns = Vec::new();
    if let Keys::Sort { store } = spec.keys {
        let o = shoal_client::resp::SortArgs::parse(ctx.argc(), |i| ctx.arg(i), store);
        key_idx.extend(o.store);
        patterns = o.key_patterns(|i| ctx.arg(i));
    }
    let mut owners = None;
    for &i in key_idx.iter() {
        let k = ctx.arg(i);
        let mut o = ctx.pool.route(k);
        if o.0 != o.1 && pulled.iter().any(|(p, d)| *d == o.1 && p.as_slice() == k) {
            o.0 = o.1;
        }
        match owners {
            None => owners = Some(o),
            Some(p) if p != o => return Err(CROSSSLOT),
            _ => {}
        }
    }
    // SORT's BY/GET patterns: the keys they form must be where the sorted key is, which
    // only a hash tag can promise (Redis Cluster refuses them the same way).
    for i in patterns {
        let Some(tag) = commands::pattern_tag(ctx.arg(i), ctx.pool.cfg.hash_tag) else {
            return Err(SORT_PATTERN);
        };
        if owners.is_some_and(|o| o != ctx.pool.route(tag)) {
            return Err(SORT_PATTERN);
        }
    }
    Ok(owners)
}

/// The server owning every key of a request that needs one server for a while
/// (transactions, WATCH): Err(message) when the keys are on several, or moving.
fn keys_server(
    ctx: &Ctx<'_>,
    spec: &Spec,
    key_idx: &mut Vec<usize>,
    pulled: &[(Vec<u8>, usize)],
) -> Result<Option<usize>, &'static str> {
    match keys_owners(ctx, spec, key_idx, pulled) {
        Ok(Some((s, d))) if s == d => Ok(Some(s)),
        Ok(Some(_)) => Err(MOVING),
        Ok(None) => Ok(None),
        Err(m) => Err(m),
    }
}

fn random_live(pool: &PoolView) -> usize {
    use rand::Rng;
    let live: Vec<usize> = (0..pool.servers.len())
        .filter(|&i| pool.servers[i].live)
        .collect();
    if live.is_empty() {
        0
    } else {
        live[rand::thread_rng().gen_range(0..live.len())]
    }
}

fn first_live(pool: &PoolView) -> usize {
    pool.servers.iter().position(|s| s.live).unwrap_or(0)
}

/// Sends `req` to server `idx` on the shared connection; returns its slot.
fn send(ctx: &Ctx<'_>, sess: &mut Session, idx: usize, write: bool, req: &[u8]) -> u32 {
    let addr = pick_addr(
        &ctx.worker.shared,
        ctx.pool,
        idx,
        write,
        sess.last_write_us[idx],
    );
    let conn = ctx
        .worker
        .conn(ctx.pool_idx, &ctx.pool.cfg, addr, wire_of(sess.proto));
    let slot = ctx.batch.slot();
    if write {
        sess.written[idx] = true;
        if ctx.pool.cfg.read_policy == ReadPolicy::ReadYourWrites {
            sess.batch_writes.push(idx);
        }
    }
    conn.enqueue(req, ctx.batch, slot);
    slot
}

/// Sends `req` for a key with owners `(old, new)`: plainly when they agree, else wrapped
/// in `SHOAL.ASK` to the old owner's primary (see [`crate::ask`]); returns its slot.
fn send_to(
    ctx: &Ctx<'_>,
    sess: &mut Session,
    (src, dst): (usize, usize),
    part: usize,
    write: bool,
    req: &[u8],
) -> u32 {
    if src == dst {
        return send(ctx, sess, src, write, req);
    }
    if write {
        // Either owner may apply it: a later WAIT waits for both.
        sess.written[src] = true;
        sess.written[dst] = true;
    }
    let kind = ask_wrap(ctx, sess.proto, dst, req, &mut sess.wrap);
    let conn = ctx.worker.conn(
        ctx.pool_idx,
        &ctx.pool.cfg,
        &ctx.pool.servers[src].primary,
        wire_of(sess.proto),
    );
    let slot = ctx.batch.slot();
    conn.enqueue(&sess.wrap, ctx.batch, slot);
    sess.asks.push(Ask {
        out: sess.out_idx,
        part,
        src,
        dst,
        plain: Bytes::copy_from_slice(req),
        slot,
        kind,
    });
    slot
}

/// Wraps a request on keys moving to `dst` for their old owner: `SHOAL.ASK` on Shoal
/// pools, the plain-redis ask (see [`crate::reshard::plain`]) on redis pools.
fn ask_wrap(
    ctx: &Ctx<'_>,
    proto: Proto,
    dst: usize,
    req: &[u8],
    out: &mut BytesMut,
) -> crate::ask::AskKind {
    if ctx.pool.cfg.backend == BackendKind::Redis {
        let resp3 = proto == Proto::Resp3;
        return crate::reshard::plain::wrap_redis(ctx.pool, dst, req, resp3, out);
    }
    crate::ask::wrap_resp(req, out);
    crate::ask::AskKind::Shoal
}

fn route(
    ctx: &Ctx<'_>,
    spec: Option<&'static Spec>,
    sess: &mut Session,
    local: &mut BytesMut,
    scratch: &mut BytesMut,
    key_idx: &mut Vec<usize>,
) -> Out {
    let name = ctx.arg(0);
    let Some(spec) = spec else {
        if sess.pinned.is_some() {
            // Inside a transaction the backend answers (and flags) unknown commands.
            return pinned_send(ctx, sess, scratch);
        }
        if sess.multi {
            // Queued before the transaction has a server: EXEC must abort, as in Redis.
            sess.multi_aborted = true;
        }
        let mut shown = String::new();
        for a in ctx.args.iter(ctx.buf).skip(1) {
            shown.push('\'');
            shown.push_str(&String::from_utf8_lossy(a));
            shown.push_str("' ");
        }
        let msg = format!(
            "ERR unknown command '{}', with args beginning with: {}",
            String::from_utf8_lossy(name),
            shown
        );
        return local_error(local, &msg);
    };
    if !(sess.authed || eq(name, b"AUTH") || eq(name, b"HELLO") || eq(name, b"QUIT")) {
        return local_error(local, "NOAUTH Authentication required.");
    }
    // Only RESP2 restricts a subscribed connection (RESP3 carries pushes out of band).
    if sess.subscribed && sess.proto == Proto::Resp2 && !is_subscribe_ok(name) {
        let msg = format!(
            "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
            String::from_utf8_lossy(name).to_ascii_lowercase()
        );
        return local_error(local, &msg);
    }
    if sess.multi && !matches!(spec.route, Route::Session) {
        return queue_in_multi(ctx, sess, spec, local, scratch, key_idx);
    }
    match spec.route {
        Route::Keyed => {
            let (server, dst) = match keys_owners(ctx, spec, key_idx, &sess.pulled) {
                Ok(Some(o)) => o,
                Ok(None) => {
                    let s = first_live(ctx.pool);
                    (s, s)
                }
                Err(m) => return local_error(local, m),
            };
            if let Some((p, _)) = &sess.pinned {
                if server != dst {
                    return local_error(local, MOVING);
                }
                if *p != server {
                    return local_error(local, CROSSSLOT);
                }
                return pinned_send(ctx, sess, scratch);
            }
            if spec.blocking {
                let addr = ctx.pool.servers[server].primary.clone();
                let conn =
                    ctx.worker
                        .checkout(ctx.pool_idx, &ctx.pool.cfg, &addr, wire_of(sess.proto));
                let slot = ctx.batch.slot();
                let req = ctx.request(scratch);
                if server == dst {
                    conn.enqueue(req, ctx.batch, slot);
                } else {
                    let mut w = BytesMut::new();
                    let kind = ask_wrap(ctx, sess.proto, dst, req, &mut w);
                    conn.enqueue(&w, ctx.batch, slot);
                    sess.asks.push(Ask {
                        out: sess.out_idx,
                        part: usize::MAX,
                        src: server,
                        dst,
                        plain: Bytes::copy_from_slice(req),
                        slot,
                        kind,
                    });
                    sess.blocking_asks = true;
                }
                sess.written[server] = true;
                sess.held.push(conn);
                return Out::Slot(slot);
            }
            let req = ctx.request(scratch);
            Out::Slot(send_to(
                ctx,
                sess,
                (server, dst),
                usize::MAX,
                spec.write,
                req,
            ))
        }
        Route::Split(merge) => split(ctx, sess, spec, merge, local, key_idx),
        Route::Broadcast(merge) => broadcast(ctx, sess, spec, merge, local, scratch),
        Route::Any => {
            let req = ctx.request(scratch);
            let idx = if eq(name, b"RANDOMKEY") {
                random_live(ctx.pool)
            } else {
                first_live(ctx.pool)
            };
            Out::Slot(send(ctx, sess, idx, false, req))
        }
        Route::Local => local_command(ctx, sess, local),
        Route::Session => session_command(ctx, sess, spec, local, scratch, key_idx),
        Route::PubSub => pubsub(ctx, sess, local, scratch),
        Route::Unsupported => {
            let msg = format!(
                "ERR command '{}' is not supported through shoal-proxy",
                String::from_utf8_lossy(name).to_ascii_lowercase()
            );
            local_error(local, &msg)
        }
    }
}

fn is_subscribe_ok(name: &[u8]) -> bool {
    [
        &b"SUBSCRIBE"[..],
        b"PSUBSCRIBE",
        b"UNSUBSCRIBE",
        b"PUNSUBSCRIBE",
        b"SSUBSCRIBE",
        b"SUNSUBSCRIBE",
        b"PING",
        b"QUIT",
        b"RESET",
    ]
    .iter()
    .any(|n| eq(name, n))
}

fn split(
    ctx: &Ctx<'_>,
    sess: &mut Session,
    spec: &Spec,
    merge: Merge,
    local: &mut BytesMut,
    key_idx: &mut Vec<usize>,
) -> Out {
    let argc = ctx.argc();
    let step = if merge == Merge::AllOk { 2 } else { 1 };
    if argc < 2 || (step == 2 && argc % 2 == 0) {
        return wrong_args(local, ctx.arg(0));
    }
    commands::key_indices(spec.keys, argc, None, key_idx);
    let n = ctx.pool.servers.len();
    // Group key indices per server, keeping their order.
    let mut per: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut order: Vec<u16> = Vec::with_capacity(key_idx.len());
    let mut part_of_server: Vec<i32> = vec![-1; n];
    let mut parts_servers: Vec<usize> = Vec::new();
    let mut parts = Vec::with_capacity(4);
    let name = ctx.arg(0);
    let mut req = BytesMut::new();
    for &i in key_idx.iter() {
        let (s, dst) = ctx.pool.route(ctx.arg(i));
        if s != dst {
            // A moving key is asked about on its own.
            req.clear();
            if step == 2 {
                encode_command(&[name, ctx.arg(i), ctx.arg(i + 1)], &mut req);
            } else {
                encode_command(&[name, ctx.arg(i)], &mut req);
            }
            order.push((parts_servers.len() + parts.len()) as u16);
            let part = order[order.len() - 1] as usize;
            parts.push((
                part,
                send_to(ctx, sess, (s, dst), part, spec.write, &req),
                s,
            ));
            continue;
        }
        if part_of_server[s] < 0 {
            part_of_server[s] = (parts_servers.len() + parts.len()) as i32;
            parts_servers.push(s);
        }
        per[s].push(i);
        order.push(part_of_server[s] as u16);
    }
    let total = parts_servers.len() + parts.len();
    let mut all: Vec<(u32, usize)> = vec![(0, 0); total];
    for (p, slot, s) in parts {
        all[p] = (slot, s);
    }
    for &s in &parts_servers {
        req.clear();
        let idxs = &per[s];
        let mut v: Vec<&[u8]> = Vec::with_capacity(1 + idxs.len() * step);
        v.push(name);
        for &i in idxs {
            v.push(ctx.arg(i));
            if step == 2 {
                v.push(ctx.arg(i + 1));
            }
        }
        encode_command(&v, &mut req);
        let slot = send(ctx, sess, s, spec.write, &req);
        all[part_of_server[s] as usize] = (slot, s);
    }
    if all.len() == 1 && merge != Merge::Values {
        // A single part: its ask (if any) points at the whole output.
        if let Some(a) = sess.asks.last_mut().filter(|a| a.out == sess.out_idx) {
            a.part = usize::MAX;
        }
        return Out::Slot(all[0].0);
    }
    Out::Gather(Box::new(Gather {
        merge,
        parts: all,
        order,
    }))
}

fn broadcast(
    ctx: &Ctx<'_>,
    sess: &mut Session,
    spec: &Spec,
    merge: Merge,
    local: &mut BytesMut,
    scratch: &mut BytesMut,
) -> Out {
    if merge == Merge::Scan {
        return scan(ctx, sess, local);
    }
    let req = ctx.request(scratch).to_vec();
    let mut parts = Vec::new();
    for (i, s) in ctx.pool.servers.iter().enumerate() {
        if !s.live {
            continue;
        }
        parts.push((send(ctx, sess, i, spec.write, &req), i));
    }
    if parts.is_empty() {
        return local_error(local, "ERR no live server in the pool");
    }
    Out::Gather(Box::new(Gather {
        merge,
        parts,
        order: Vec::new(),
    }))
}

/// SCAN through the proxy: the cursor's low 10 bits are the server index, the rest is
/// that server's own cursor. Servers are walked one after the other.
fn scan(ctx: &Ctx<'_>, sess: &mut Session, local: &mut BytesMut) -> Out {
    if ctx.argc() < 2 {
        return wrong_args(local, ctx.arg(0));
    }
    let Some(cursor) = std::str::from_utf8(ctx.arg(1))
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return local_error(local, "ERR invalid cursor");
    };
    let n = ctx.pool.servers.len();
    let server = (cursor & 1023) as usize;
    if server >= n {
        return local_error(local, "ERR invalid cursor");
    }
    let inner = (cursor >> 10).to_string();
    let mut v: Vec<&[u8]> = ctx.args.iter(ctx.buf).collect();
    v[1] = inner.as_bytes();
    let mut req = BytesMut::new();
    encode_command(&v, &mut req);
    let slot = send(ctx, sess, server, false, &req);
    Out::Gather(Box::new(Gather {
        merge: Merge::Scan,
        parts: vec![(slot, server)],
        order: Vec::new(),
    }))
}

/// Sends a one-word command (MULTI, DISCARD, UNWATCH) whose reply the client never sees;
/// the batch still waits for it, so the connection is in step before it is returned.
fn send_hidden(ctx: &Ctx<'_>, conn: &BackendConn, cmd: &[u8]) {
    let mut b = BytesMut::new();
    encode_command(&[cmd], &mut b);
    let slot = ctx.batch.slot();
    conn.enqueue(&b, ctx.batch, slot);
}

fn pinned_send(ctx: &Ctx<'_>, sess: &mut Session, scratch: &mut BytesMut) -> Out {
    let (_, conn) = sess.pinned.as_ref().expect("pinned");
    let slot = ctx.batch.slot();
    conn.enqueue(ctx.request(scratch), ctx.batch, slot);
    Out::Slot(slot)
}

/// Pins a dedicated connection to `server` for a WATCH/MULTI session.
fn pin(ctx: &Ctx<'_>, sess: &mut Session, server: usize) -> Rc<BackendConn> {
    let addr = ctx.pool.servers[server].primary.clone();
    let conn = ctx
        .worker
        .checkout(ctx.pool_idx, &ctx.pool.cfg, &addr, wire_of(sess.proto));
    sess.pinned = Some((server, conn.clone()));
    sess.pin_ticket = Some(ctx.worker.pin_ticket());
    conn
}

fn unpin(ctx: &Ctx<'_>, sess: &mut Session) {
    sess.pin_ticket = None;
    if let Some((_, conn)) = sess.pinned.take() {
        ctx.worker.checkin(ctx.pool_idx, conn, wire_of(sess.proto));
    }
}

fn queue_in_multi(
    ctx: &Ctx<'_>,
    sess: &mut Session,
    spec: &Spec,
    local: &mut BytesMut,
    scratch: &mut BytesMut,
    key_idx: &mut Vec<usize>,
) -> Out {
    if matches!(spec.route, Route::Local) {
        let name = ctx.arg(0);
        if eq(name, b"QUIT") || eq(name, b"RESET") {
            return local_command(ctx, sess, local);
        }
    }
    let server = match spec.route {
        Route::Keyed | Route::Split(_) => match keys_server(ctx, spec, key_idx, &sess.pulled) {
            Ok(s) => s,
            Err(e) => {
                sess.multi_aborted = true;
                return local_error(local, e);
            }
        },
        _ => None,
    };
    if let Some((p, _)) = &sess.pinned {
        if server.is_some_and(|s| s != *p) {
            sess.multi_aborted = true;
            return local_error(local, CROSSSLOT);
        }
        return pinned_send(ctx, sess, scratch);
    }
    // First command of the transaction: pin its server and open the MULTI there.
    let server = server.unwrap_or_else(|| first_live(ctx.pool));
    let conn = pin(ctx, sess, server);
    send_hidden(ctx, &conn, b"MULTI");
    let slot = ctx.batch.slot();
    conn.enqueue(ctx.request(scratch), ctx.batch, slot);
    sess.written[server] = true;
    Out::Slot(slot)
}

fn session_command(
    ctx: &Ctx<'_>,
    sess: &mut Session,
    spec: &Spec,
    local: &mut BytesMut,
    scratch: &mut BytesMut,
    key_idx: &mut Vec<usize>,
) -> Out {
    let name = ctx.arg(0);
    let argc = ctx.argc();
    if eq(name, b"MULTI") {
        if argc != 1 {
            return wrong_args(local, name);
        }
        if sess.multi {
            return local_error(local, "ERR MULTI calls can not be nested");
        }
        sess.multi = true;
        sess.multi_aborted = false;
        if let Some((_, conn)) = &sess.pinned {
            // WATCH pinned the server already: open the transaction there now.
            let slot = ctx.batch.slot();
            conn.enqueue(ctx.request(scratch), ctx.batch, slot);
            return Out::Slot(slot);
        }
        return local_reply(local, |w| w.ok(), sess.proto);
    }
    if eq(name, b"EXEC") || eq(name, b"DISCARD") {
        let exec = eq(name, b"EXEC");
        if argc != 1 && exec {
            // Redis rejects EXEC itself with EXECABORT and discards the transaction and
            // the watched keys, inside MULTI or not.
            if let Some(conn) = sess.pinned.as_ref().map(|(_, c)| c.clone()) {
                send_hidden(ctx, &conn, if sess.multi { b"DISCARD" } else { b"UNWATCH" });
                unpin(ctx, sess);
            }
            sess.multi = false;
            sess.multi_aborted = false;
            return local_error(
                local,
                "EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command",
            );
        }
        if argc != 1 {
            if sess.multi {
                sess.multi_aborted = true;
            }
            return wrong_args(local, name);
        }
        if !sess.multi {
            let msg = if exec {
                "ERR EXEC without MULTI"
            } else {
                "ERR DISCARD without MULTI"
            };
            return local_error(local, msg);
        }
        sess.multi = false;
        let aborted = std::mem::take(&mut sess.multi_aborted);
        if sess.pinned.is_none() {
            // Nothing was queued.
            return if exec && aborted {
                local_error(
                    local,
                    "EXECABORT Transaction discarded because of previous errors.",
                )
            } else if exec {
                local_reply(local, |w| w.array(0), sess.proto)
            } else {
                local_reply(local, |w| w.ok(), sess.proto)
            };
        }
        let out = if exec && aborted {
            let (_, conn) = sess.pinned.as_ref().expect("pinned");
            send_hidden(ctx, conn, b"DISCARD");
            local_error(
                local,
                "EXECABORT Transaction discarded because of previous errors.",
            )
        } else {
            pinned_send(ctx, sess, scratch)
        };
        unpin(ctx, sess);
        return out;
    }
    if eq(name, b"WATCH") {
        if sess.multi {
            return local_error(local, "ERR WATCH inside MULTI is not allowed");
        }
        if argc < 2 {
            return wrong_args(local, name);
        }
        let server = match keys_server(ctx, spec, key_idx, &sess.pulled) {
            Ok(s) => s.unwrap_or(0),
            Err(e) => return local_error(local, e),
        };
        if let Some((p, _)) = &sess.pinned {
            if *p != server {
                return local_error(local, CROSSSLOT);
            }
            return pinned_send(ctx, sess, scratch);
        }
        pin(ctx, sess, server);
        return pinned_send(ctx, sess, scratch);
    }
    if eq(name, b"UNWATCH") {
        if sess.pinned.is_some() && !sess.multi {
            let out = pinned_send(ctx, sess, scratch);
            unpin(ctx, sess);
            return out;
        }
        if sess.multi {
            return pinned_or_ok(ctx, sess, local, scratch);
        }
        return local_reply(local, |w| w.ok(), sess.proto);
    }
    // WAIT: to every server written since the last WAIT, on the connection that carried
    // the writes (so it waits for them), the smallest count wins.
    if argc != 3 {
        return wrong_args(local, name);
    }
    if sess.multi {
        return pinned_or_ok(ctx, sess, local, scratch);
    }
    let req = ctx.request(scratch).to_vec();
    let mut targets: Vec<usize> = (0..sess.written.len())
        .filter(|&i| sess.written[i])
        .collect();
    if targets.is_empty() {
        targets = vec![first_live(ctx.pool)];
    }
    sess.written.iter_mut().for_each(|w| *w = false);
    // Always a primary, whatever the read policy (a replica refuses WAIT). A Shoal
    // server's WAIT waits for its replicas to reach its current offset, which covers this
    // client's writes once their replies are in (the lane barrier before WAIT ensures
    // that): it runs on a dedicated connection, so other clients do not queue behind it.
    // redis-server's WAIT counts the calling connection's own writes, so there it must
    // use the shared connection that carried them.
    let dedicated = ctx.pool.cfg.backend == BackendKind::Shoal;
    let parts = targets
        .into_iter()
        .map(|s| {
            let addr = &ctx.pool.servers[s].primary;
            let wire = wire_of(sess.proto);
            let conn = if dedicated {
                ctx.worker.checkout(ctx.pool_idx, &ctx.pool.cfg, addr, wire)
            } else {
                ctx.worker.conn(ctx.pool_idx, &ctx.pool.cfg, addr, wire)
            };
            let slot = ctx.batch.slot();
            conn.enqueue(&req, ctx.batch, slot);
            if dedicated {
                sess.held.push(conn);
            }
            (slot, s)
        })
        .collect();
    Out::Gather(Box::new(Gather {
        merge: Merge::Min,
        parts,
        order: Vec::new(),
    }))
}

fn pinned_or_ok(
    ctx: &Ctx<'_>,
    sess: &mut Session,
    local: &mut BytesMut,
    scratch: &mut BytesMut,
) -> Out {
    if sess.pinned.is_some() {
        pinned_send(ctx, sess, scratch)
    } else {
        local_reply(local, |w| w.simple(b"QUEUED"), sess.proto)
    }
}

/// The three subscription spaces of a connection, as Redis keeps them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SubKind {
    Channel,
    Pattern,
    Shard,
}

fn pubsub(ctx: &Ctx<'_>, sess: &mut Session, local: &mut BytesMut, scratch: &mut BytesMut) -> Out {
    let name = ctx.arg(0);
    if eq(name, b"PUBLISH") || eq(name, b"SPUBLISH") {
        if ctx.argc() != 3 {
            return wrong_args(local, name);
        }
        let server = ctx.pool.locate(ctx.arg(1)).unwrap_or(0);
        let req = ctx.request(scratch);
        return Out::Slot(send(ctx, sess, server, false, req));
    }
    if eq(name, b"PUBSUB") {
        let req = ctx.request(scratch).to_vec();
        let idx = first_live(ctx.pool);
        return Out::Slot(send(ctx, sess, idx, false, &req));
    }
    let (kind, subscribe, reply_name): (SubKind, bool, &[u8]) = if eq(name, b"SUBSCRIBE") {
        (SubKind::Channel, true, b"subscribe")
    } else if eq(name, b"UNSUBSCRIBE") {
        (SubKind::Channel, false, b"unsubscribe")
    } else if eq(name, b"PSUBSCRIBE") {
        (SubKind::Pattern, true, b"psubscribe")
    } else if eq(name, b"PUNSUBSCRIBE") {
        (SubKind::Pattern, false, b"punsubscribe")
    } else if eq(name, b"SSUBSCRIBE") {
        (SubKind::Shard, true, b"ssubscribe")
    } else {
        (SubKind::Channel, false, b"sunsubscribe")
    };
    let kind = if reply_name == b"sunsubscribe" {
        SubKind::Shard
    } else {
        kind
    };
    if subscribe && ctx.argc() < 2 {
        return wrong_args(local, name);
    }
    // The confirmations are the proxy's own (one per argument, in order, counting this
    // connection's subscriptions, as one Redis would); the servers' are dropped when
    // their pushed frames are forwarded.
    let targets: Vec<Bytes> = if ctx.argc() > 1 {
        ctx.args
            .iter(ctx.buf)
            .skip(1)
            .map(Bytes::copy_from_slice)
            .collect()
    } else {
        sess.sub_set(kind).clone()
    };
    let start = local.len();
    let proto = sess.proto;
    if !subscribe && targets.is_empty() {
        let count = sess.sub_count(kind);
        let mut w = ReplyWriter::new(local, proto);
        push_header(&mut w);
        w.bulk(reply_name);
        w.null();
        w.int(count as i64);
    }
    // Channels live on the server their name hashes to (where PUBLISH goes); patterns
    // on every server.
    let n = ctx.pool.servers.len();
    let mut per: Vec<Vec<&[u8]>> = vec![Vec::new(); n];
    for t in &targets {
        let set = sess.sub_set_mut(kind);
        let present = set.iter().any(|c| c == t);
        let changed = if subscribe {
            if !present {
                set.push(t.clone());
            }
            !present
        } else {
            set.retain(|c| c != t);
            present
        };
        if changed {
            if kind == SubKind::Pattern {
                per.iter_mut().for_each(|p| p.push(t));
            } else {
                per[ctx.pool.locate(t).unwrap_or(0)].push(t);
            }
        }
        let count = sess.sub_count(kind);
        let mut w = ReplyWriter::new(local, proto);
        push_header(&mut w);
        w.bulk(reply_name);
        w.bulk(t);
        w.int(count as i64);
    }
    let mut req = BytesMut::new();
    for (i, chans) in per.iter().enumerate() {
        if chans.is_empty() || (!subscribe && sess.subs[i].is_none()) {
            continue;
        }
        let conn = match &sess.subs[i] {
            Some(c) => c.clone(),
            None => {
                let addr = ctx.pool.servers[i].primary.clone();
                let c = ctx
                    .worker
                    .checkout(ctx.pool_idx, &ctx.pool.cfg, &addr, wire_of(proto));
                *c.push_target.borrow_mut() = Some(ctx.batch.clone());
                sess.subs[i] = Some(c.clone());
                c
            }
        };
        req.clear();
        let mut v: Vec<&[u8]> = vec![name];
        v.extend(chans.iter().copied());
        encode_command(&v, &mut req);
        // One confirmation per channel comes back: the batch waits for them, so that a
        // subscription is active on its server before the client sees it confirmed.
        conn.enqueue_n(&req, ctx.batch, chans.len());
    }
    sess.subscribed = sess.sub_total() > 0;
    Out::Local(start..local.len())
}

/// A pub/sub confirmation header: a push in RESP3, a 3-array in RESP2.
fn push_header(w: &mut ReplyWriter<'_>) {
    if w.proto == Proto::Resp3 {
        w.push(3);
    } else {
        w.array(3);
    }
}

/// Moves the frames pushed by subscribed server connections into `out`, without the
/// servers' own confirmations.
fn forward_pushed(batch: &Batch, out: &mut BytesMut) {
    let frames = batch.pushed.borrow_mut().split();
    let mut pos = 0;
    while pos < frames.len() {
        let Ok(Some(len)) = reply_len(&frames[pos..]) else {
            break;
        };
        let f = &frames[pos..pos + len];
        if !crate::backend::is_confirmation(f) {
            out.extend_from_slice(f);
        }
        pos += len;
    }
}

fn local_command(ctx: &Ctx<'_>, sess: &mut Session, local: &mut BytesMut) -> Out {
    let name = ctx.arg(0);
    let argc = ctx.argc();
    let proto = sess.proto;
    if eq(name, b"PING") {
        if argc > 2 {
            return wrong_args(local, name);
        }
        if sess.subscribed && proto == Proto::Resp2 {
            let msg = if argc == 2 {
                ctx.arg(1).to_vec()
            } else {
                Vec::new()
            };
            return local_reply(
                local,
                |w| {
                    w.array(2);
                    w.bulk(b"pong");
                    w.bulk(&msg);
                },
                proto,
            );
        }
        return if argc == 2 {
            let m = ctx.arg(1).to_vec();
            local_reply(local, |w| w.bulk(&m), proto)
        } else {
            local_reply(local, |w| w.simple(b"PONG"), proto)
        };
    }
    if eq(name, b"ECHO") {
        if argc != 2 {
            return wrong_args(local, name);
        }
        let m = ctx.arg(1).to_vec();
        return local_reply(local, |w| w.bulk(&m), proto);
    }
    if eq(name, b"QUIT") {
        sess.closing = true;
        return local_reply(local, |w| w.ok(), proto);
    }
    if eq(name, b"AUTH") {
        return auth(ctx, sess, local);
    }
    if eq(name, b"HELLO") {
        return hello(ctx, sess, local);
    }
    if eq(name, b"SELECT") {
        if argc != 2 {
            return wrong_args(local, name);
        }
        return match std::str::from_utf8(ctx.arg(1))
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
        {
            Some(0) => local_reply(local, |w| w.ok(), proto),
            Some(_) => local_error(local, "ERR DB index is out of range"),
            None => local_error(local, "ERR value is not an integer or out of range"),
        };
    }
    if eq(name, b"READONLY") || eq(name, b"READWRITE") {
        return local_reply(local, |w| w.ok(), proto);
    }
    if eq(name, b"RESET") {
        sess.multi = false;
        sess.multi_aborted = false;
        sess.pin_ticket = None;
        if let Some((_, c)) = sess.pinned.take() {
            c.close();
        }
        for c in sess.subs.iter_mut() {
            if let Some(c) = c.take() {
                c.close();
            }
        }
        sess.subscribed = false;
        sess.channels.clear();
        sess.patterns.clear();
        sess.shard_channels.clear();
        sess.proto = Proto::Resp2;
        sess.name = None;
        sess.authed = ctx.pool.cfg.redis_auth.is_none();
        return local_reply(local, |w| w.simple(b"RESET"), Proto::Resp2);
    }
    if eq(name, b"CLIENT") {
        return client_command(ctx, sess, local);
    }
    if eq(name, b"INFO") {
        let text = crate::admin::info(ctx.worker, ctx.pool_idx);
        return local_reply(local, |w| w.verbatim(b"txt", text.as_bytes()), proto);
    }
    if eq(name, b"SHOAL") {
        let start = local.len();
        crate::admin::shoal_command(ctx.worker, ctx.pool_idx, ctx.args, ctx.buf, local, proto);
        return Out::Local(start..local.len());
    }
    local_error(local, "ERR unknown command")
}

fn auth(ctx: &Ctx<'_>, sess: &mut Session, local: &mut BytesMut) -> Out {
    let argc = ctx.argc();
    if !(2..=3).contains(&argc) {
        return wrong_args(local, ctx.arg(0));
    }
    let Some(pw) = &ctx.pool.cfg.redis_auth else {
        // No password: the default user is `nopass` (any password), others do not exist.
        if argc == 3 {
            return if ctx.arg(1) == b"default" {
                local_reply(local, |w| w.ok(), sess.proto)
            } else {
                local_error(
                    local,
                    "WRONGPASS invalid username-password pair or user is disabled.",
                )
            };
        }
        return local_error(
            local,
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        );
    };
    let user_ok = argc == 2 || ctx.arg(1) == b"default";
    if user_ok && ctx.arg(argc - 1) == pw.as_bytes() {
        sess.authed = true;
        local_reply(local, |w| w.ok(), sess.proto)
    } else {
        local_error(
            local,
            "WRONGPASS invalid username-password pair or user is disabled.",
        )
    }
}

fn hello(ctx: &Ctx<'_>, sess: &mut Session, local: &mut BytesMut) -> Out {
    let argc = ctx.argc();
    let mut proto = sess.proto;
    let mut i = 1;
    if argc >= 2 {
        match std::str::from_utf8(ctx.arg(1))
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
        {
            Some(2) => proto = Proto::Resp2,
            Some(3) => proto = Proto::Resp3,
            Some(_) => return local_error(local, "NOPROTO unsupported protocol version"),
            None => {
                return local_error(
                    local,
                    "ERR Protocol version is not an integer or out of range",
                )
            }
        }
        i = 2;
    }
    let mut name = None;
    while i < argc {
        let opt = ctx.arg(i);
        if eq(opt, b"AUTH") && i + 2 < argc {
            let pw = ctx.arg(i + 2);
            match &ctx.pool.cfg.redis_auth {
                Some(p) if p.as_bytes() == pw && ctx.arg(i + 1) == b"default" => sess.authed = true,
                Some(_) => {
                    return local_error(
                        local,
                        "WRONGPASS invalid username-password pair or user is disabled.",
                    )
                }
                // No password: the default user is `nopass`, no other user exists.
                None if ctx.arg(i + 1) == b"default" => sess.authed = true,
                None => {
                    return local_error(
                        local,
                        "WRONGPASS invalid username-password pair or user is disabled.",
                    )
                }
            }
            i += 3;
        } else if eq(opt, b"SETNAME") && i + 1 < argc {
            name = Some(Bytes::copy_from_slice(ctx.arg(i + 1)));
            i += 2;
        } else {
            let msg = format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(opt)
            );
            return local_error(local, &msg);
        }
    }
    if !sess.authed {
        return local_error(local, "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
    }
    if name.is_some() {
        sess.name = name;
    }
    sess.proto = proto;
    let id = sess.id as i64;
    local_reply(
        local,
        |w| {
            w.map(7);
            w.bulk(b"server");
            w.bulk(b"redis");
            w.bulk(b"version");
            w.bulk(b"7.0.15");
            w.bulk(b"proto");
            w.int(if proto == Proto::Resp3 { 3 } else { 2 });
            w.bulk(b"id");
            w.int(id);
            w.bulk(b"mode");
            w.bulk(b"standalone");
            w.bulk(b"role");
            w.bulk(b"master");
            w.bulk(b"modules");
            w.array(0);
        },
        proto,
    )
}

fn client_command(ctx: &Ctx<'_>, sess: &mut Session, local: &mut BytesMut) -> Out {
    let argc = ctx.argc();
    let proto = sess.proto;
    if argc < 2 {
        return wrong_args(local, ctx.arg(0));
    }
    let sub = ctx.arg(1);
    if eq(sub, b"SETNAME") && argc == 3 {
        let n = ctx.arg(2);
        if n.iter().any(|&c| c <= b' ' || c > b'~') {
            return local_error(
                local,
                "ERR Client names cannot contain spaces, newlines or special characters.",
            );
        }
        sess.name = (!n.is_empty()).then(|| Bytes::copy_from_slice(n));
        return local_reply(local, |w| w.ok(), proto);
    }
    if eq(sub, b"GETNAME") && argc == 2 {
        return match sess.name.clone() {
            Some(n) => local_reply(local, |w| w.bulk(&n), proto),
            None => local_reply(local, |w| w.null(), proto),
        };
    }
    if eq(sub, b"ID") && argc == 2 {
        let id = sess.id as i64;
        return local_reply(local, |w| w.int(id), proto);
    }
    if eq(sub, b"SETINFO") && argc == 4 {
        return local_reply(local, |w| w.ok(), proto);
    }
    if (eq(sub, b"NO-EVICT") || eq(sub, b"NO-TOUCH") || eq(sub, b"REPLY")) && argc == 3 {
        return local_reply(local, |w| w.ok(), proto);
    }
    if eq(sub, b"INFO") && argc == 2 {
        let name = sess
            .name
            .as_ref()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        // Every field Redis 7.0 reports that clients parse as an integer (redis-py's
        // `client_info()` requires id age idle db sub psub multi qbuf qbuf-free obl
        // argv-mem oll omem tot-mem); the proxy has no values for most of them.
        let line = format!(
            "id={} name={} age=0 idle=0 flags=N db=0 sub=0 psub=0 ssub=0 multi={} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd=client|info user=default redir=-1 resp={}\n",
            sess.id,
            name,
            if sess.multi { 0 } else { -1 },
            if proto == Proto::Resp3 { 3 } else { 2 }
        );
        return local_reply(local, |w| w.verbatim(b"txt", line.as_bytes()), proto);
    }
    let msg = format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try CLIENT HELP.",
        String::from_utf8_lossy(sub)
    );
    local_error(local, &msg)
}

/// Writes every reply of the batch, in request order, into `wbuf`.
fn assemble(
    outs: &[Out],
    batch: &Batch,
    local: &BytesMut,
    pool: &PoolView,
    proto: Proto,
    wbuf: &mut BytesMut,
    stats: &Stats,
) {
    for out in outs {
        match out {
            Out::Local(r) => wbuf.extend_from_slice(&local[r.clone()]),
            Out::Slot(s) => put_reply(wbuf, batch.take(*s), stats),
            Out::Gather(g) => merge(g, batch, pool, proto, wbuf, stats),
        }
    }
}

fn put_failure(wbuf: &mut BytesMut, f: Failure, stats: &Stats) {
    Stats::add(&stats.backend_errors, 1);
    wbuf.put_slice(b"-ERR ");
    wbuf.put_slice(f.message().as_bytes());
    wbuf.put_slice(b"\r\n");
}

fn put_reply(wbuf: &mut BytesMut, r: Reply, stats: &Stats) {
    match r {
        Reply::Data(b) => wbuf.extend_from_slice(&b),
        Reply::Failed(f) => put_failure(wbuf, f, stats),
        Reply::Pending => put_failure(wbuf, Failure::Closed, stats),
    }
}

fn merge(
    g: &Gather,
    batch: &Batch,
    pool: &PoolView,
    proto: Proto,
    wbuf: &mut BytesMut,
    stats: &Stats,
) {
    let replies: Vec<Reply> = g.parts.iter().map(|(s, _)| batch.take(*s)).collect();
    // Any failure or error reply wins (the first one).
    for r in &replies {
        match r {
            Reply::Failed(f) => return put_failure(wbuf, *f, stats),
            Reply::Pending => return put_failure(wbuf, Failure::Closed, stats),
            Reply::Data(b) if b.first() == Some(&b'-') => return wbuf.extend_from_slice(b),
            Reply::Data(_) => {}
        }
    }
    let data: Vec<&Bytes> = replies
        .iter()
        .map(|r| match r {
            Reply::Data(b) => b,
            _ => unreachable!("checked above"),
        })
        .collect();
    let mut w = ReplyWriter::new(wbuf, proto);
    match g.merge {
        Merge::Min => {
            let min = data.iter().filter_map(|b| integer(b)).min().unwrap_or(0);
            w.int(min);
        }
        Merge::Sum => {
            let sum: i64 = data.iter().filter_map(|b| integer(b)).sum();
            w.int(sum);
        }
        Merge::AllOk | Merge::First => wbuf.extend_from_slice(data[0]),
        Merge::Values => {
            // Each part is an array of its keys' values, in key order.
            let mut cursors: Vec<usize> = Vec::with_capacity(data.len());
            for d in &data {
                match array_header(d) {
                    Some((_, h)) => cursors.push(h),
                    None => return wbuf.extend_from_slice(b"-ERR unexpected reply to MGET\r\n"),
                }
            }
            w.array(g.order.len());
            for &p in &g.order {
                let p = p as usize;
                let d = data[p];
                let at = cursors[p];
                match reply_len(&d[at..]) {
                    Ok(Some(len)) => {
                        wbuf.extend_from_slice(&d[at..at + len]);
                        cursors[p] = at + len;
                    }
                    _ => wbuf.extend_from_slice(b"$-1\r\n"),
                }
            }
        }
        Merge::Concat => {
            let mut total = 0;
            let mut bodies = Vec::new();
            for d in &data {
                if let Some((n, h)) = array_header(d) {
                    total += n;
                    bodies.push(&d[h..]);
                }
            }
            w.array(total);
            for b in bodies {
                wbuf.extend_from_slice(b);
            }
        }
        Merge::Scan => {
            // [next cursor, [keys]] from one server; re-encode the cursor.
            let d = data[0];
            let n = pool.servers.len() as u64;
            let server = g.parts[0].1 as u64;
            let Some((_, h)) = array_header(d) else {
                return wbuf.extend_from_slice(d);
            };
            let Ok(Some(clen)) = reply_len(&d[h..]) else {
                return wbuf.extend_from_slice(d);
            };
            let cur_frame = &d[h..h + clen];
            let inner: u64 = std::str::from_utf8(cur_frame)
                .ok()
                .and_then(|s| s.split("\r\n").nth(1))
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if inner >> 54 != 0 {
                // The server index would push the cursor past 64 bits (Shoal and
                // Redis cursors stay below 2^54): refuse rather than loop forever.
                return w.error(b"ERR a backend's SCAN cursor is too large for the proxy");
            }
            let next = if inner != 0 {
                (inner << 10) | server
            } else if server + 1 < n {
                server + 1
            } else {
                0
            };
            w.array(2);
            w.bulk(next.to_string().as_bytes());
            wbuf.extend_from_slice(&d[h + clen..]);
        }
    }
}
