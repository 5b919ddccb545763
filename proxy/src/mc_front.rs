//! The memcache frontend (text and meta protocol): one task per client connection, the
//! same batch discipline as the Redis frontend.
//!
//! Every request reaching a backend gets exactly one reply there, so replies can be
//! matched by order: `noreply` and the meta `q` flag are stripped on the way out and their
//! suppression is applied by the proxy (memcached's own rules: `q` hides `EN` for `mg` and
//! the success replies `HD`/`VA` of `ms`, `md`, `ma`). `mn` is answered in place.
//! A multi-key `get`/`gets`/`gat`/`gats` becomes one request per backend, and the `VALUE`
//! blocks are merged back in the client's key order.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use crate::io::{read_some, write_all, Conn};
use bytes::{BufMut, Bytes, BytesMut};
use shoal_client::memcache::scan::value_block;
use shoal_client::memcache::{decode, McDecoded, McLimits, MetaCmd, Request};

use crate::ask::{Ask, AskKind};
use crate::backend::{Batch, Failure, Reply, Wire};
use crate::config::BackendKind;
use crate::metrics::{self, Stats};
use crate::topology::PoolView;
use crate::worker::{pick_addr, Worker};

const MAX_BATCH: usize = 1024;

/// Sends (key, is_write, request bytes) to the key's server; returns the reply slot.
type SendFn<'a> = dyn Fn(&[u8], bool, &[u8]) -> u32 + 'a;

/// Which success replies the proxy hides (the client asked for quiet/noreply).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hide {
    Nothing,
    /// `noreply`: everything.
    All,
    /// `mg q`: `EN`.
    Miss,
    /// `ms`/`md`/`ma` with `q`: `HD` and `VA`.
    Success,
}

enum Out {
    Local(std::ops::Range<usize>),
    Slot(u32, Hide),
    /// Multi-get: (slot per part), part of each key, the keys.
    Get {
        parts: Vec<u32>,
        order: Vec<u16>,
        keys: Vec<Bytes>,
    },
    /// flush_all broadcast.
    All {
        parts: Vec<u32>,
        hide: bool,
    },
}

/// Serves one memcache client connection until it closes.
pub async fn serve<S>(stream: S, worker: Rc<Worker>, pool_idx: usize)
where
    S: Conn,
{
    let limits = McLimits::default();
    let mut rbuf = BytesMut::with_capacity(16 * 1024);
    let mut wbuf = BytesMut::with_capacity(16 * 1024);
    let mut local = BytesMut::new();
    let mut outs: Vec<Out> = Vec::new();
    let batch = Rc::new(Batch::default());
    let mut scratch = BytesMut::new();
    // Bytes still to discard (memcached swallowing a too-large value).
    let mut swallow = 0usize;
    // Picks this client's connection among `server_connections` (keeps its order).
    let client = worker.client_id();
    let mut ids: Vec<(u16, bool)> = Vec::new();
    let mut need_read = true;
    let (mut pool, mut pool_version) = {
        let t = worker.topology();
        (t.pools[pool_idx].clone(), t.version)
    };
    let asks: RefCell<Vec<Ask>> = RefCell::new(Vec::new());
    'conn: loop {
        if swallow > 0 && !rbuf.is_empty() {
            let n = swallow.min(rbuf.len());
            let _ = rbuf.split_to(n);
            swallow -= n;
        }
        if need_read || rbuf.is_empty() {
            if rbuf.capacity() - rbuf.len() < 4096 {
                rbuf.reserve(64 * 1024);
            }
            match read_some(&stream, &mut rbuf).await {
                Ok(0) | Err(_) => break 'conn,
                Ok(_) => {
                    need_read = false;
                    continue;
                }
            }
        }
        let started = Instant::now();
        // Held until this batch's replies are in (see topology::RouteGate).
        let _ticket = worker.route_ticket();
        if worker.shared.version() != pool_version {
            let topo = worker.topology();
            pool = topo.pools[pool_idx].clone();
            pool_version = topo.version;
        }
        // Routing below is synchronous: every shared connection it picks is this client's.
        worker.set_affinity(client);
        batch.reset();
        outs.clear();
        local.clear();
        let mut pos = 0;
        let mut n = 0;
        let mut close = false;
        while n < MAX_BATCH && pos < rbuf.len() {
            let buf = &rbuf[pos..];
            if buf.len() >= 6 && buf[..6].eq_ignore_ascii_case(b"shoal ") {
                // The proxy's admin commands (`shoal reshard …`), for pools without RESP.
                let Some(eol) = memchr::memchr(b'\n', buf) else {
                    need_read = true;
                    break;
                };
                let start = local.len();
                crate::admin::mc_shoal_command(&worker, pool_idx, &buf[6..eol], &mut local);
                outs.push(Out::Local(start..local.len()));
                pos += eol + 1;
                n += 1;
                continue;
            }
            match decode(buf, &limits) {
                McDecoded::Incomplete => {
                    need_read = true;
                    break;
                }
                McDecoded::Error {
                    reply,
                    consume,
                    close: c,
                } => {
                    let start = local.len();
                    local.put_slice(reply);
                    outs.push(Out::Local(start..local.len()));
                    if consume > buf.len() {
                        swallow = consume - buf.len();
                        pos = rbuf.len();
                    } else {
                        pos += consume;
                    }
                    if c {
                        close = true;
                        break;
                    }
                }
                McDecoded::Request { req, consumed } => {
                    let raw = &buf[..consumed];
                    pos += consumed;
                    n += 1;
                    if matches!(req, Request::Quit) {
                        close = true;
                        break;
                    }
                    ids.push((metrics::MC_BASE + req_id(&req), false));
                    let out = route(
                        &worker,
                        &pool,
                        pool_idx,
                        &batch,
                        req,
                        raw,
                        &mut local,
                        &mut scratch,
                        &asks,
                        outs.len(),
                    );
                    outs.push(out);
                    // A write that may first copy its item from a moving key's old owner
                    // ends the batch: what the client sends after it sees its effect.
                    let last = asks.borrow().last().map(|a| (a.out, a.kind.ends_batch()));
                    if last == Some((outs.len() - 1, true)) {
                        break;
                    }
                }
            }
        }
        let _ = rbuf.split_to(pos);
        if outs.is_empty() && !close {
            need_read = true;
            continue;
        }
        Stats::add(&worker.stats.requests, n as u64);
        batch.wait().await;
        if !asks.borrow().is_empty() {
            let mut list = std::mem::take(&mut *asks.borrow_mut());
            crate::ask::resolve(
                &mut list,
                &batch,
                &pool,
                true,
                |a, to_new, bytes| {
                    let idx = if to_new { a.dst } else { a.src };
                    let conn = worker.conn(
                        pool_idx,
                        &pool.cfg,
                        &pool.servers[idx].primary,
                        Wire::Memcache,
                    );
                    let slot = batch.slot();
                    conn.enqueue(bytes, &batch, slot);
                    slot
                },
                |out, part, slot| match &mut outs[out] {
                    Out::Slot(s, _) => *s = slot,
                    Out::Get { parts, .. } | Out::All { parts, .. } => {
                        if let Some(p) = parts.get_mut(part) {
                            *p = slot;
                        }
                    }
                    Out::Local(_) => {}
                },
            )
            .await;
        }
        metrics::record_batch(pool_idx, &ids, started);
        ids.clear();
        assemble(&outs, &batch, &local, &mut wbuf, &worker.stats);
        if !wbuf.is_empty() {
            if write_all(&stream, &wbuf).await.is_err() {
                break;
            }
            wbuf.clear();
        }
        if close {
            break;
        }
    }
    drop(stream);
}

/// Index of the request's label in [`metrics::MC_NAMES`].
fn req_id(req: &Request<'_>) -> u16 {
    match req {
        Request::Get { cas: false, .. } => 0,
        Request::Get { cas: true, .. } => 1,
        Request::Gat { .. } => 2,
        Request::Store { .. } => 3,
        Request::Incr { .. } => 4,
        Request::Decr { .. } => 5,
        Request::Delete { .. } => 6,
        Request::Touch { .. } => 7,
        Request::FlushAll { .. } => 8,
        Request::Stats { .. } => 9,
        Request::Version => 10,
        Request::Verbosity { .. } => 11,
        Request::Quit => 12,
        Request::Meta(m) => match m.cmd {
            MetaCmd::Get => 13,
            MetaCmd::Set => 14,
            MetaCmd::Delete => 15,
            MetaCmd::Arithmetic => 16,
            MetaCmd::Noop => 17,
            MetaCmd::Debug => 18,
        },
    }
}

fn local_line(local: &mut BytesMut, line: &[u8]) -> Out {
    let start = local.len();
    local.put_slice(line);
    Out::Local(start..local.len())
}

#[allow(clippy::too_many_arguments)]
fn route(
    worker: &Rc<Worker>,
    pool: &std::sync::Arc<PoolView>,
    pool_idx: usize,
    batch: &Rc<Batch>,
    req: Request<'_>,
    raw: &[u8],
    local: &mut BytesMut,
    scratch: &mut BytesMut,
    asks: &RefCell<Vec<Ask>>,
    out_idx: usize,
) -> Out {
    let send = |key: &[u8], write: bool, bytes: &[u8]| -> u32 {
        let (idx, dst) = pool.route(key);
        let slot = batch.slot();
        if idx != dst {
            // A key a reshard is moving: ask its old owner (see crate::ask), or on a
            // plain memcached pool follow crate::reshard::plain's routing.
            let mut w = BytesMut::new();
            let (kind, to_new) = if pool.cfg.backend == BackendKind::Memcached {
                crate::reshard::plain::mc_first(bytes, &mut w)
            } else {
                crate::ask::wrap_memcache(bytes, &mut w);
                (Some(AskKind::Shoal), false)
            };
            let conn = worker.conn(
                pool_idx,
                &pool.cfg,
                &pool.servers[if to_new { dst } else { idx }].primary,
                Wire::Memcache,
            );
            conn.enqueue(&w, batch, slot);
            if let Some(kind) = kind {
                asks.borrow_mut().push(Ask {
                    out: out_idx,
                    part: usize::MAX,
                    src: idx,
                    dst,
                    plain: Bytes::copy_from_slice(bytes),
                    slot,
                    kind,
                });
            }
            return slot;
        }
        let addr = pick_addr(&worker.shared, pool, idx, write, u64::MAX);
        let conn = worker.conn(pool_idx, &pool.cfg, addr, Wire::Memcache);
        conn.enqueue(bytes, batch, slot);
        slot
    };
    match req {
        Request::Get { keys, cas } => {
            let verb: &[u8] = if cas { b"gets" } else { b"get" };
            multi_get(
                worker,
                pool,
                pool_idx,
                batch,
                verb,
                None,
                keys.iter().collect(),
                raw,
                &send,
                asks,
            )
        }
        Request::Gat { exptime, keys, cas } => {
            let verb: &[u8] = if cas { b"gats" } else { b"gat" };
            multi_get(
                worker,
                pool,
                pool_idx,
                batch,
                verb,
                Some(exptime),
                keys.iter().collect(),
                raw,
                &send,
                asks,
            )
        }
        Request::Store { key, noreply, .. } => {
            if !noreply {
                return Out::Slot(send(key, true, raw), Hide::Nothing);
            }
            strip_token(raw, b"noreply", 2, scratch);
            Out::Slot(send(key, true, scratch), Hide::All)
        }
        Request::Incr { key, noreply, .. }
        | Request::Decr { key, noreply, .. }
        | Request::Delete { key, noreply }
        | Request::Touch { key, noreply, .. } => {
            if !noreply {
                return Out::Slot(send(key, true, raw), Hide::Nothing);
            }
            strip_token(raw, b"noreply", 2, scratch);
            Out::Slot(send(key, true, scratch), Hide::All)
        }
        Request::FlushAll { noreply, .. } => {
            let bytes: Vec<u8> = if noreply {
                strip_token(raw, b"noreply", 1, scratch);
                scratch.to_vec()
            } else {
                raw.to_vec()
            };
            let mut parts = Vec::new();
            for (i, s) in pool.servers.iter().enumerate() {
                if !s.live {
                    continue;
                }
                let conn = worker.conn(
                    pool_idx,
                    &pool.cfg,
                    &pool.servers[i].primary,
                    Wire::Memcache,
                );
                let slot = batch.slot();
                conn.enqueue(&bytes, batch, slot);
                parts.push(slot);
            }
            Out::All {
                parts,
                hide: noreply,
            }
        }
        Request::Stats { group } => {
            if group.is_some() {
                return local_line(local, b"ERROR\r\n");
            }
            let st = &worker.stats;
            let start = local.len();
            let lines = [
                ("pid", std::process::id().to_string()),
                ("uptime", st.started.elapsed().as_secs().to_string()),
                ("version", env!("CARGO_PKG_VERSION").to_string()),
                ("curr_connections", Stats::get(&st.clients).to_string()),
                (
                    "total_connections",
                    Stats::get(&st.clients_total).to_string(),
                ),
                ("cmd_total", Stats::get(&st.requests).to_string()),
                ("backend_errors", Stats::get(&st.backend_errors).to_string()),
                ("pool", pool.cfg.name.clone()),
                ("servers", pool.servers.len().to_string()),
            ];
            for (k, v) in lines {
                shoal_client::memcache::reply::stat(local, k.as_bytes(), v.as_bytes());
            }
            local.put_slice(b"END\r\n");
            Out::Local(start..local.len())
        }
        Request::Version => {
            let line = format!("VERSION {}\r\n", env!("CARGO_PKG_VERSION"));
            local_line(local, line.as_bytes())
        }
        Request::Verbosity { noreply } => {
            if noreply {
                local_line(local, b"")
            } else {
                local_line(local, b"OK\r\n")
            }
        }
        Request::Quit => local_line(local, b""),
        Request::Meta(m) => {
            if m.cmd == MetaCmd::Noop {
                return local_line(local, b"MN\r\n");
            }
            let write = !matches!(m.cmd, MetaCmd::Get | MetaCmd::Debug);
            if !m.flags.has(b'q') {
                return Out::Slot(send(&m.key, write, raw), Hide::Nothing);
            }
            strip_token(raw, b"q", 2, scratch);
            let hide = if m.cmd == MetaCmd::Get {
                Hide::Miss
            } else {
                Hide::Success
            };
            Out::Slot(send(&m.key, write, scratch), hide)
        }
    }
}

/// Copies `raw` into `out` without the first-line token `tok`, leaving the first `keep`
/// tokens (the command and its key: `set noreply 0 0 1 noreply`, `mg q v q`) alone.
fn strip_token(raw: &[u8], tok: &[u8], keep: usize, out: &mut BytesMut) {
    out.clear();
    let eol = memchr::memchr(b'\n', raw).map_or(raw.len(), |i| i + 1);
    let line = &raw[..eol];
    let body = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))
        .unwrap_or(line);
    let mut first = true;
    for (i, t) in body
        .split(|&c| c == b' ')
        .filter(|t| !t.is_empty())
        .enumerate()
    {
        if i >= keep && t == tok {
            continue;
        }
        if !first {
            out.put_u8(b' ');
        }
        out.put_slice(t);
        first = false;
    }
    out.put_slice(b"\r\n");
    out.put_slice(&raw[eol..]);
}

#[allow(clippy::too_many_arguments)]
fn multi_get(
    worker: &Rc<Worker>,
    pool: &PoolView,
    pool_idx: usize,
    batch: &Rc<Batch>,
    verb: &[u8],
    exptime: Option<i64>,
    keys: Vec<&[u8]>,
    raw: &[u8],
    send: &SendFn<'_>,
    asks: &RefCell<Vec<Ask>>,
) -> Out {
    let write = exptime.is_some();
    if keys.len() == 1 {
        return Out::Slot(send(keys[0], write, raw), Hide::Nothing);
    }
    let n = pool.servers.len();
    let mut part_of: Vec<i32> = vec![-1; n];
    let mut servers: Vec<usize> = Vec::new();
    let mut order = Vec::with_capacity(keys.len());
    let mut reqs: Vec<BytesMut> = Vec::new();
    // A key a reshard is moving gets a part of its own (asked about on its old owner).
    let mut moving: Vec<Option<&[u8]>> = Vec::new();
    for k in &keys {
        let (s, dst) = pool.route(k);
        if s != dst || part_of[s] < 0 {
            if s == dst {
                part_of[s] = servers.len() as i32;
            }
            servers.push(s);
            moving.push((s != dst).then_some(*k));
            let mut r = BytesMut::with_capacity(64);
            r.put_slice(verb);
            if let Some(e) = exptime {
                r.put_slice(format!(" {e}").as_bytes());
            }
            reqs.push(r);
        }
        let p = if s == dst {
            part_of[s] as usize
        } else {
            servers.len() - 1
        };
        reqs[p].put_u8(b' ');
        reqs[p].put_slice(k);
        order.push(p as u16);
    }
    let mut parts = Vec::with_capacity(servers.len());
    for (p, &s) in servers.iter().enumerate() {
        reqs[p].put_slice(b"\r\n");
        if let Some(k) = moving[p] {
            parts.push(send(k, write, &reqs[p]));
            if let Some(a) = asks.borrow_mut().last_mut() {
                a.part = p;
            }
            continue;
        }
        let addr = pick_addr(&worker.shared, pool, s, write, u64::MAX);
        let conn = worker.conn(pool_idx, &pool.cfg, addr, Wire::Memcache);
        let slot = batch.slot();
        conn.enqueue(&reqs[p], batch, slot);
        parts.push(slot);
    }
    Out::Get {
        parts,
        order,
        keys: keys.iter().map(|k| Bytes::copy_from_slice(k)).collect(),
    }
}

fn put_failure(wbuf: &mut BytesMut, f: Failure, stats: &Stats) {
    Stats::add(&stats.backend_errors, 1);
    wbuf.put_slice(b"SERVER_ERROR ");
    wbuf.put_slice(f.message().as_bytes());
    wbuf.put_slice(b"\r\n");
}

fn assemble(outs: &[Out], batch: &Batch, local: &BytesMut, wbuf: &mut BytesMut, stats: &Stats) {
    for out in outs {
        match out {
            Out::Local(r) => wbuf.extend_from_slice(&local[r.clone()]),
            Out::Slot(s, hide) => match batch.take(*s) {
                Reply::Data(b) => {
                    let hidden = match hide {
                        Hide::Nothing => false,
                        Hide::All => true,
                        // `EN\r\n`, or `EN k<key> O<opaque>` with the k/O flags.
                        Hide::Miss => b.starts_with(b"EN\r\n") || b.starts_with(b"EN "),
                        Hide::Success => b.starts_with(b"HD") || b.starts_with(b"VA "),
                    };
                    if !hidden {
                        wbuf.extend_from_slice(&b);
                    }
                }
                Reply::Failed(f) => {
                    if *hide != Hide::All {
                        put_failure(wbuf, f, stats);
                    }
                }
                Reply::Pending => put_failure(wbuf, Failure::Closed, stats),
            },
            Out::All { parts, hide } => {
                let mut first_err = None;
                for &p in parts {
                    match batch.take(p) {
                        Reply::Data(b) if b.starts_with(b"OK") => {}
                        Reply::Data(b) => first_err = first_err.or(Some(Ok(b))),
                        Reply::Failed(f) => first_err = first_err.or(Some(Err(f))),
                        Reply::Pending => first_err = first_err.or(Some(Err(Failure::Closed))),
                    }
                }
                match first_err {
                    None if *hide => {}
                    None => wbuf.put_slice(b"OK\r\n"),
                    Some(Ok(b)) => wbuf.extend_from_slice(&b),
                    Some(Err(f)) => put_failure(wbuf, f, stats),
                }
            }
            Out::Get { parts, order, keys } => {
                let replies: Vec<Reply> = parts.iter().map(|&p| batch.take(p)).collect();
                let mut datas: Vec<&Bytes> = Vec::with_capacity(replies.len());
                let mut failed = None;
                for r in &replies {
                    match r {
                        Reply::Data(b) if b.starts_with(b"VALUE ") || b.starts_with(b"END") => {
                            datas.push(b)
                        }
                        Reply::Data(b) => {
                            failed = Some(Ok(b.clone()));
                            break;
                        }
                        Reply::Failed(f) => {
                            failed = Some(Err(*f));
                            break;
                        }
                        Reply::Pending => {
                            failed = Some(Err(Failure::Closed));
                            break;
                        }
                    }
                }
                match failed {
                    Some(Ok(b)) => {
                        wbuf.extend_from_slice(&b);
                        continue;
                    }
                    Some(Err(f)) => {
                        put_failure(wbuf, f, stats);
                        continue;
                    }
                    None => {}
                }
                let mut cursors = vec![0usize; datas.len()];
                for (k, &p) in keys.iter().zip(order) {
                    let p = p as usize;
                    let d = datas[p];
                    if let Ok(Some(block)) = value_block(d, cursors[p]) {
                        if &d[block.key.0..block.key.1] == k.as_ref() {
                            wbuf.extend_from_slice(&d[cursors[p]..block.end]);
                            cursors[p] = block.end;
                        }
                    }
                }
                wbuf.put_slice(b"END\r\n");
            }
        }
    }
}
