//! Replica side: role changes, the link to the primary (handshake, snapshot
//! load, stream apply, ACKs), and the fencing probe.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use shoal_client::resp::{decode_request, Args, Decoded, Limits};
use shoal_keyspace::{Entry, Meta};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{frame, new_replid, LinkState, Master};
use crate::exec::resp::{dispatch, Conn, Ctx, Req};
use crate::shared::{now_ms, ClientHandle, ClientInfo, Protocol, Shared};

/// Disconnects every replica attached here (they reconnect and PSYNC again).
fn drop_replicas(shared: &Shared) {
    for r in shared.repl.replicas.lock().iter() {
        r.handle.killed.store(true, Ordering::SeqCst);
        r.handle.kill.notify_one();
    }
}

/// REPLICAOF host port: become (or re-point) a replica. Keeps the data, the
/// replication id and the backlog so the new primary can continue partially.
pub fn become_replica(shared: &Arc<Shared>, host: String, port: u16) {
    let repl = &shared.repl;
    repl.activate(shared);
    {
        let _all = shared.exclusive();
        let _st = repl.stream.lock();
        let mut m = repl.master.lock();
        let generation = m.as_ref().map_or(0, |m| m.generation) + 1;
        if let Some(old) = m.take() {
            old.kill.notify_one();
        }
        let kill = Arc::new(tokio::sync::Notify::new());
        *m = Some(Master {
            host: host.clone(),
            port,
            generation,
            kill: kill.clone(),
        });
        drop(m);
        let was_replica = repl.replica.swap(true, Ordering::AcqRel);
        shared.keyspace.set_evict_disabled(true);
        repl.removed.lock().clear();
        repl.set_link_state(LinkState::Connect);
        repl.fenced.store(false, Ordering::SeqCst);
        repl.set_failover(super::FailoverState::None);
        if !was_replica {
            // Redis disconnects sub-replicas when the role changes.
            drop_replicas(shared);
        }
        let sh = shared.clone();
        if let Some(rt) = repl.runtime() {
            rt.spawn(link_task(sh, host.clone(), port, generation, kill));
        }
    }
    repl.persist();
    tracing::info!("replicating from {host}:{port}");
}

/// REPLICAOF NO ONE / promotion: become a primary with a new replication id,
/// keeping the old one as replid2 so siblings can continue partially, and a
/// higher configuration epoch (persisted) that fences the old primary.
pub fn become_primary(shared: &Arc<Shared>, min_epoch: u64) {
    let repl = &shared.repl;
    {
        // Stream lock first: the apply loop holds it while an EXEC from the
        // stream takes every gate.
        let _st = repl.stream.lock();
        let _all = shared.exclusive();
        if let Some(old) = repl.master.lock().take() {
            old.kill.notify_one();
        }
        if repl.replica.swap(false, Ordering::AcqRel) {
            let off = repl.backlog.lock().end();
            let mut ids = repl.ids.lock();
            ids.replid2 = std::mem::replace(&mut ids.replid, new_replid());
            ids.second_offset = off as i64 + 1;
            drop(ids);
            drop_replicas(shared);
        }
        let e = (repl.epoch.load(Ordering::SeqCst) + 1).max(min_epoch);
        repl.epoch.store(e, Ordering::SeqCst);
        shared.keyspace.set_evict_disabled(false);
        repl.loading.store(false, Ordering::SeqCst);
        repl.fenced.store(false, Ordering::SeqCst);
        repl.set_link_state(LinkState::Connect);
    }
    repl.persist();
    tracing::info!(
        "promoted to primary, epoch {}",
        repl.epoch.load(Ordering::SeqCst)
    );
}

fn current(shared: &Shared, generation: u64) -> bool {
    shared
        .repl
        .master
        .lock()
        .as_ref()
        .is_some_and(|m| m.generation == generation)
}

async fn link_task(
    shared: Arc<Shared>,
    host: String,
    port: u16,
    generation: u64,
    kill: Arc<tokio::sync::Notify>,
) {
    loop {
        if !current(&shared, generation) {
            return;
        }
        shared.repl.set_link_state(LinkState::Connecting);
        if let Err(e) = run_link(&shared, &host, port, generation, &kill).await {
            tracing::warn!("replication link to {host}:{port}: {e}");
        }
        shared.repl.loading.store(false, Ordering::SeqCst);
        if !current(&shared, generation) {
            return;
        }
        shared.repl.set_link_state(LinkState::Connect);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = kill.notified() => {}
        }
    }
}

struct Wire {
    stream: TcpStream,
    buf: BytesMut,
}

impl Wire {
    async fn line(&mut self, timeout: Duration) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let l = String::from_utf8_lossy(&self.buf[..i]).to_string();
                self.buf.advance(i + 2);
                return Ok(l);
            }
            if self.buf.len() > 64 * 1024 {
                anyhow::bail!("reply line too long");
            }
            let n = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf))
                .await
                .map_err(|_| anyhow::anyhow!("timed out"))??;
            if n == 0 {
                anyhow::bail!("connection closed");
            }
        }
    }

    async fn call(&mut self, args: &[&[u8]]) -> anyhow::Result<String> {
        self.stream.write_all(&frame(args)).await?;
        self.line(Duration::from_secs(5)).await
    }
}

/// The fake client that applies the primary's stream.
fn master_conn(shared: &Shared, peer: std::net::SocketAddr) -> Conn {
    let handle = Arc::new(ClientHandle {
        id: shared.next_client_id.fetch_add(1, Ordering::Relaxed),
        addr: peer,
        laddr: peer,
        protocol: Protocol::Resp,
        since: Instant::now(),
        last_ms: now_ms().into(),
        killed: false.into(),
        kill: tokio::sync::Notify::new(),
        info: parking_lot::Mutex::new(ClientInfo {
            resp: 2,
            ..Default::default()
        }),
    });
    let mut c = Conn::new(handle, true);
    c.master_link = true;
    c.no_evict = true;
    c
}

async fn run_link(
    shared: &Arc<Shared>,
    host: &str,
    port: u16,
    generation: u64,
    kill: &Arc<tokio::sync::Notify>,
) -> anyhow::Result<()> {
    let repl = &shared.repl;
    let stream = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect((host, port)))
        .await
        .map_err(|_| anyhow::anyhow!("connect timed out"))??;
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr()?;
    let mut w = Wire {
        stream,
        buf: BytesMut::with_capacity(64 * 1024),
    };
    let pong = w.call(&[b"PING"]).await?;
    if !(pong.starts_with('+') || pong.starts_with("-NOAUTH")) {
        anyhow::bail!("PING: {pong}");
    }
    let auth = repl.masterauth.read().clone();
    if let Some(pw) = auth {
        let r = w.call(&[b"AUTH", pw.as_bytes()]).await?;
        if !r.starts_with('+') {
            anyhow::bail!("AUTH: {r}");
        }
    }
    let my_port = shared
        .resp_addrs
        .read()
        .first()
        .map_or(0, |a| a.port())
        .to_string();
    let _ = w
        .call(&[b"REPLCONF", b"listening-port", my_port.as_bytes()])
        .await?;
    let _ = w
        .call(&[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"])
        .await?;
    let mine = repl.epoch.load(Ordering::SeqCst);
    let r = w
        .call(&[b"REPLCONF", b"shoal-epoch", mine.to_string().as_bytes()])
        .await?;
    if let Some(theirs) = r.strip_prefix(':').and_then(|s| s.parse::<u64>().ok()) {
        if theirs < mine {
            anyhow::bail!("primary's epoch {theirs} is older than ours ({mine}): refusing to follow a stale primary");
        }
        if theirs > mine {
            repl.epoch.store(theirs, Ordering::SeqCst);
            repl.persist();
        }
    } else if r.starts_with('-') {
        anyhow::bail!("REPLCONF shoal-epoch: {r}");
    }
    if !current(shared, generation) {
        return Ok(());
    }
    let (replid, offset) = {
        let _st = repl.stream.lock();
        let ids = repl.ids.lock().clone();
        (ids.replid, repl.backlog.lock().end() + 1)
    };
    // Nothing ever written or received: ask for a full sync like a fresh Redis replica.
    let (id_arg, off_arg) = if offset == 1 {
        ("?".to_string(), "-1".to_string())
    } else {
        (replid, offset.to_string())
    };
    w.stream
        .write_all(&frame(&[b"PSYNC", id_arg.as_bytes(), off_arg.as_bytes()]))
        .await?;
    let reply = w
        .line(Duration::from_secs(repl.timeout.load(Ordering::Relaxed)))
        .await?;
    let mut conn = master_conn(shared, peer);
    if let Some(rest) = reply.strip_prefix("+FULLRESYNC ") {
        let mut it = rest.split_whitespace();
        let id = it.next().unwrap_or_default().to_string();
        let off: u64 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        repl.set_link_state(LinkState::Sync);
        load_snapshot(shared, &mut w, &id, off, generation).await?;
    } else if let Some(rest) = reply.strip_prefix("+CONTINUE") {
        let new_id = rest.trim().to_string();
        let _st = repl.stream.lock();
        let mut ids = repl.ids.lock();
        if !new_id.is_empty() && new_id != ids.replid {
            ids.replid2 = std::mem::replace(&mut ids.replid, new_id);
            ids.second_offset = offset as i64;
            drop(ids);
            drop_replicas(shared);
        }
        tracing::info!("partial resync with {host}:{port} from offset {offset}");
    } else {
        anyhow::bail!("PSYNC: {reply}");
    }
    if !current(shared, generation) {
        return Ok(());
    }
    repl.set_link_state(LinkState::Connected);
    repl.last_io_ms.store(now_ms(), Ordering::Relaxed);
    stream_loop(shared, &mut w, &mut conn, generation, kill).await
}

/// Receives SHOAL.RESTORE records until SHOAL.SNAPSHOT.END.
async fn load_snapshot(
    shared: &Arc<Shared>,
    w: &mut Wire,
    replid: &str,
    offset: u64,
    generation: u64,
) -> anyhow::Result<()> {
    let repl = &shared.repl;
    let ks = &shared.keyspace;
    repl.loading.store(true, Ordering::SeqCst);
    repl.stream_clock.store(0, Ordering::Relaxed);
    {
        let _st = repl.stream.lock();
        let lazy = ks.len() > 65_536;
        ks.flush(lazy);
        drop_replicas(shared);
    }
    let limits = Limits {
        max_bulk_len: usize::MAX >> 1,
        ..Limits::default()
    };
    let mut args = Args::new();
    let now = now_ms();
    loop {
        if !current(shared, generation) {
            anyhow::bail!("replication target changed during sync");
        }
        let mut pos = 0;
        let mut end = None;
        loop {
            match decode_request(&w.buf[pos..], &limits, &mut args) {
                Ok(Decoded::Frame { consumed }) => {
                    let f = &w.buf[pos..pos + consumed];
                    let req = Req::new(f, &args);
                    let name = req.arg(0);
                    if name.eq_ignore_ascii_case(b"shoal.restore") && req.len() == 6 {
                        restore_record(shared, &req, now);
                    } else if name.eq_ignore_ascii_case(b"shoal.clock") {
                        // From a primary that is itself a replica: the stream
                        // clock at the sync point.
                        if let Some(t) = std::str::from_utf8(req.arg(1))
                            .ok()
                            .and_then(|s| s.parse::<u64>().ok())
                        {
                            repl.stream_clock.store(t, Ordering::Relaxed);
                        }
                    } else if name.eq_ignore_ascii_case(b"shoal.snapshot.end") {
                        end = Some(
                            std::str::from_utf8(req.arg(1))
                                .ok()
                                .and_then(|s| s.parse::<u64>().ok())
                                .unwrap_or(0),
                        );
                    }
                    pos += consumed;
                    if end.is_some() {
                        break;
                    }
                }
                Ok(Decoded::Incomplete { .. }) => break,
                Err(_) => anyhow::bail!("malformed snapshot record"),
            }
        }
        w.buf.advance(pos);
        repl.bytes_received.fetch_add(pos as u64, Ordering::Relaxed);
        if let Some(cas) = end {
            let _st = repl.stream.lock();
            ks.set_cas_counter(cas);
            let mut ids = repl.ids.lock();
            ids.replid = replid.to_string();
            ids.replid2 = "0".repeat(40);
            ids.second_offset = -1;
            drop(ids);
            repl.backlog.lock().reset(offset);
            repl.applied.store(offset, Ordering::Relaxed);
            repl.loading.store(false, Ordering::SeqCst);
            tracing::info!("full sync done: {} keys at offset {offset}", ks.len());
            return Ok(());
        }
        if w.buf.capacity() - w.buf.len() < 16 * 1024 {
            w.buf.reserve(64 * 1024);
        }
        let n = tokio::time::timeout(
            Duration::from_secs(repl.timeout.load(Ordering::Relaxed)),
            w.stream.read_buf(&mut w.buf),
        )
        .await
        .map_err(|_| anyhow::anyhow!("snapshot transfer timed out"))??;
        if n == 0 {
            anyhow::bail!("connection closed during sync");
        }
        repl.last_io_ms.store(now_ms(), Ordering::Relaxed);
    }
}

/// Applies one SHOAL.RESTORE record (key payload pxat flags cas).
pub fn restore_record(shared: &Shared, req: &Req<'_>, now: u64) -> bool {
    let Some((entry, cas)) = decode_record(
        shared,
        req.arg(1),
        req.arg(2),
        req.arg(3),
        req.arg(4),
        req.arg(5),
        now,
    ) else {
        return false;
    };
    let key = req.arg(1);
    shared.keyspace.lock(key).insert_entry(key, entry);
    shared.keyspace.raise_cas_counter(cas);
    true
}

/// Builds the entry a SHOAL.RESTORE / SHOAL.IMPORT record describes (key,
/// `crate::dump` payload, absolute expiry in unix ms or 0, memcache flags,
/// CAS); also returns the CAS. None when a field is malformed.
pub fn decode_record(
    shared: &Shared,
    key: &[u8],
    payload: &[u8],
    pxat: &[u8],
    flags: &[u8],
    cas: &[u8],
    now: u64,
) -> Option<(Entry, u64)> {
    let num = |b: &[u8]| std::str::from_utf8(b).ok()?.parse::<u64>().ok();
    let (at, flags, cas) = (num(pxat)?, num(flags)?, num(cas)?);
    let meta = Meta {
        expire_at: (at != 0).then_some(at),
        flags: u32::try_from(flags).ok()?,
        cas,
        access: shared.keyspace.initial_access(now),
    };
    let entry = match crate::dump::decode(payload).ok()? {
        crate::dump::Restored::String(v) => Entry::new(key, &[&v], &meta),
        crate::dump::Restored::Object(o) => Entry::new_object(key, Box::new(o), &meta),
    };
    Some((entry, cas))
}

async fn send_ack(w: &mut Wire, offset: u64) -> anyhow::Result<()> {
    w.stream
        .write_all(&frame(&[
            b"REPLCONF",
            b"ACK",
            offset.to_string().as_bytes(),
        ]))
        .await?;
    Ok(())
}

/// Applies the primary's stream until the link ends.
async fn stream_loop(
    shared: &Arc<Shared>,
    w: &mut Wire,
    conn: &mut Conn,
    generation: u64,
    kill: &Arc<tokio::sync::Notify>,
) -> anyhow::Result<()> {
    let repl = &shared.repl;
    let mut args = Args::new();
    let limits = Limits {
        max_bulk_len: usize::MAX >> 1,
        ..Limits::default()
    };
    // The stream continues where the last link (or the snapshot) left it: frames
    // before the next SHOAL.CLOCK belong to the last clock record applied.
    let mut clock = match repl.stream_clock.load(Ordering::Relaxed) {
        0 => now_ms(),
        t => t,
    };
    let mut out = BytesMut::with_capacity(4096);
    let mut ack_tick = tokio::time::interval(Duration::from_secs(1));
    {
        let off = repl.offset();
        send_ack(w, off).await?;
    }
    loop {
        // Apply every complete frame already buffered.
        let mut pos = 0;
        let mut want_ack = false;
        {
            let _st = repl.stream.lock();
            let prev = shoal_keyspace::set_reclaim_permit(true);
            loop {
                match decode_request(&w.buf[pos..], &limits, &mut args) {
                    Ok(Decoded::Frame { consumed }) => {
                        let f = &w.buf[pos..pos + consumed];
                        if !args.is_empty() {
                            let req = Req::new(f, &args);
                            let name = req.arg(0);
                            if name.eq_ignore_ascii_case(b"shoal.clock") {
                                if let Some(t) = std::str::from_utf8(req.arg(1))
                                    .ok()
                                    .and_then(|s| s.parse::<u64>().ok())
                                {
                                    clock = t;
                                    repl.stream_clock.store(t, Ordering::Relaxed);
                                }
                            } else if name.eq_ignore_ascii_case(b"replconf") {
                                want_ack |=
                                    req.len() >= 2 && req.arg(1).eq_ignore_ascii_case(b"getack");
                            } else if name.eq_ignore_ascii_case(b"ping") {
                            } else {
                                let mut ctx = Ctx {
                                    shared,
                                    ks: &shared.keyspace,
                                    conn: &mut *conn,
                                    out: &mut out,
                                    now: clock,
                                };
                                dispatch(&mut ctx, &req);
                                if ctx.conn.block.is_some() {
                                    ctx.unblock();
                                }
                                ctx.conn.block_deadline = None;
                                ctx.conn.block_ticket = None;
                                out.clear();
                            }
                        }
                        repl.append(f);
                        pos += consumed;
                    }
                    Ok(Decoded::Incomplete { .. }) => break,
                    Err(_) => {
                        shoal_keyspace::set_reclaim_permit(prev);
                        anyhow::bail!("malformed frame in the replication stream");
                    }
                }
            }
            shoal_keyspace::set_reclaim_permit(prev);
            repl.removed.lock().clear();
            repl.applied
                .store(repl.backlog.lock().end(), Ordering::Relaxed);
        }
        w.buf.advance(pos);
        repl.bytes_received.fetch_add(pos as u64, Ordering::Relaxed);
        if want_ack {
            {
                let off = repl.offset();
                send_ack(w, off).await?;
            }
        }
        if !current(shared, generation) {
            return Ok(());
        }
        if w.buf.capacity() - w.buf.len() < 16 * 1024 {
            w.buf.reserve(64 * 1024);
        }
        let timeout = Duration::from_secs(repl.timeout.load(Ordering::Relaxed));
        tokio::select! {
            r = w.stream.read_buf(&mut w.buf) => {
                match r {
                    Ok(0) => anyhow::bail!("primary closed the connection"),
                    Ok(_) => repl.last_io_ms.store(now_ms(), Ordering::Relaxed),
                    Err(e) => return Err(e.into()),
                }
            }
            _ = ack_tick.tick() => {
                let idle = now_ms().saturating_sub(repl.last_io_ms.load(Ordering::Relaxed));
                if idle > timeout.as_millis() as u64 {
                    anyhow::bail!("no data from the primary for {}s", timeout.as_secs());
                }
                {
            let off = repl.offset();
            send_ack(w, off).await?;
        }
            }
            _ = kill.notified() => return Ok(()),
        }
    }
}

/// Asks former replicas (and, when fenced, everyone known) which epoch and
/// primary they follow; a higher epoch means this primary is stale: it becomes
/// a replica of the current primary. A fenced server that finds no newer epoch
/// among the reachable peers starts taking writes.
pub async fn fencing_probe(shared: &Arc<Shared>) {
    let repl = &shared.repl;
    if repl.is_replica() {
        repl.fenced.store(false, Ordering::SeqCst);
        return;
    }
    let connected: Vec<String> = repl
        .replicas
        .lock()
        .iter()
        .map(|r| format!("{}:{}", r.ip, r.port))
        .collect();
    let peers: Vec<String> = repl
        .peers
        .lock()
        .iter()
        .filter(|p| !connected.contains(p))
        .cloned()
        .collect();
    let mine = repl.epoch.load(Ordering::SeqCst);
    for p in peers {
        let Some((host, port)) = p.rsplit_once(':') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        let Ok(Ok(info)) =
            tokio::time::timeout(Duration::from_millis(800), probe_one(shared, host, port)).await
        else {
            continue;
        };
        let (epoch, role, mhost, mport) = info;
        if epoch > mine {
            let (h, pt) = if role == "master" {
                (host.to_string(), port)
            } else if !mhost.is_empty() && mport != 0 {
                (mhost, mport)
            } else {
                continue;
            };
            tracing::warn!("fenced: {p} reports epoch {epoch} > ours ({mine}); following {h}:{pt}");
            become_replica(shared, h, pt);
            return;
        }
    }
    if repl.fenced.swap(false, Ordering::SeqCst) {
        tracing::info!("fencing check done: no newer epoch among reachable peers");
    }
}

async fn probe_one(
    shared: &Shared,
    host: &str,
    port: u16,
) -> anyhow::Result<(u64, String, String, u16)> {
    let stream = TcpStream::connect((host, port)).await?;
    let mut w = Wire {
        stream,
        buf: BytesMut::new(),
    };
    let auth = shared.repl.masterauth.read().clone();
    if let Some(pw) = auth {
        let _ = w.call(&[b"AUTH", pw.as_bytes()]).await?;
    }
    let head = w.call(&[b"SHOAL.EPOCH"]).await?;
    if !head.starts_with("*4") {
        anyhow::bail!("unexpected SHOAL.EPOCH reply {head}");
    }
    let epoch: u64 = w.line(Duration::from_secs(2)).await?[1..].parse()?;
    let _ = w.line(Duration::from_secs(2)).await?;
    let role = w.line(Duration::from_secs(2)).await?;
    let _ = w.line(Duration::from_secs(2)).await?;
    let mhost = w.line(Duration::from_secs(2)).await?;
    let mport: u16 = w.line(Duration::from_secs(2)).await?[1..]
        .parse()
        .unwrap_or(0);
    Ok((epoch, role, mhost, mport))
}
