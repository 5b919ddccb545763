//! Primary side: PSYNC, the full-sync snapshot, and the per-replica feeder.
//!
//! Full sync without fork and without a second copy of the data:
//!
//! ```text
//!  under the repl lock at offset O:  every shard marked "pending"
//!  any thread locking a pending shard ─► hook serializes the shard (SHOAL.RESTORE
//!                                        records) into the queue, then proceeds
//!  background dumper thread ─► locks each shard once (forces the rest), pausing
//!                              while the queue holds more than SNAPSHOT_QUEUE bytes
//!  feeder ─► +FULLRESYNC replid O, the records, SHOAL.SNAPSHOT.END <cas>, then the
//!            backlog from O+1
//! ```
//! Every change after O happens after its shard was serialized, so the records
//! are the keyspace at O exactly; the replica applies the stream from O+1.
//! Memory: the queue is bounded for the background dumper; a shard that a
//! writer touches first is serialized at once (at most once per shard per sync).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use parking_lot::Mutex;
use shoal_client::resp::{decode_request, Args, Decoded, Limits};
use shoal_keyspace::ShardGuard;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{frame, frame_into, ConnRepl, ReplicaPeer};
use crate::shared::{now_ms, ClientHandle, Shared};

/// Serialized snapshot bytes the background dumper lets queue up.
const SNAPSHOT_QUEUE: usize = 8 * 1024 * 1024;
const SEND_CHUNK: usize = 256 * 1024;

#[derive(Default)]
struct SnapQueue {
    q: Mutex<VecDeque<Vec<u8>>>,
    bytes: AtomicUsize,
    done: AtomicBool,
    cancel: AtomicBool,
    notify: tokio::sync::Notify,
}

impl SnapQueue {
    fn push(&self, v: Vec<u8>) {
        if v.is_empty() {
            return;
        }
        self.bytes.fetch_add(v.len(), Ordering::AcqRel);
        self.q.lock().push_back(v);
        self.notify.notify_one();
    }

    fn pop(&self, max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut q = self.q.lock();
        while out.len() < max {
            match q.pop_front() {
                Some(v) => {
                    self.bytes.fetch_sub(v.len(), Ordering::AcqRel);
                    if out.is_empty() {
                        out = v;
                    } else {
                        out.extend_from_slice(&v);
                    }
                }
                None => break,
            }
        }
        out
    }
}

/// Serializes one shard as SHOAL.RESTORE records (expired entries included:
/// the primary deletes them later through the stream).
fn dump_shard(g: &ShardGuard<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut b1 = itoa::Buffer::new();
    let mut b2 = itoa::Buffer::new();
    let mut b3 = itoa::Buffer::new();
    g.for_each(0, |e| {
        let payload = crate::dump::encode(e);
        frame_into(
            &mut out,
            &[
                b"SHOAL.RESTORE",
                e.key(),
                &payload,
                b1.format(e.expire_at().unwrap_or(0)).as_bytes(),
                b2.format(e.flags()).as_bytes(),
                b3.format(e.cas()).as_bytes(),
            ],
        );
    });
    out
}

enum Plan {
    Partial { from: u64, replid: String },
    Full,
}

/// Serves a replica that sent PSYNC/SYNC on this connection until it goes away.
pub async fn serve_replica(
    shared: &Arc<Shared>,
    mut stream: TcpStream,
    mut rbuf: BytesMut,
    handle: &Arc<ClientHandle>,
    cr: &ConnRepl,
) {
    let repl = &shared.repl;
    let Some(psync) = cr.psync.clone() else {
        return;
    };
    repl.activate(shared);
    let ip = handle.addr.ip().to_string();
    let port = if cr.listening_port != 0 {
        cr.listening_port
    } else {
        handle.addr.port()
    };
    let peer = Arc::new(ReplicaPeer {
        id: handle.id,
        handle: handle.clone(),
        ip: ip.clone(),
        port,
        ack: 0.into(),
        ack_ms: now_ms().into(),
        need: u64::MAX.into(),
        state: 0.into(),
    });
    // Decide under the repl lock: nothing is appended meanwhile.
    let plan = {
        let _st = repl.stream.lock();
        let ids = repl.ids.lock().clone();
        let b = repl.backlog.lock();
        let from = psync.offset.max(0) as u64;
        let ok = psync.offset > 0
            && !repl.is_replica_loading()
            && ((psync.replid == ids.replid && b.can_serve(from))
                || (psync.replid == ids.replid2
                    && ids.second_offset > 0
                    && from <= ids.second_offset as u64
                    && b.can_serve(from)));
        if ok {
            peer.need.store(from, Ordering::Relaxed);
            peer.state.store(2, Ordering::Relaxed);
            repl.replicas.lock().push(peer.clone());
            Plan::Partial {
                from,
                replid: ids.replid,
            }
        } else {
            Plan::Full
        }
    };
    if repl.peers.lock().insert(format!("{ip}:{port}")) {
        repl.persist();
    }
    let from = match plan {
        Plan::Partial { from, replid } => {
            repl.sync_partial_ok.fetch_add(1, Ordering::Relaxed);
            tracing::info!("replica {ip}:{port} partially resynced from offset {from}");
            if stream
                .write_all(format!("+CONTINUE {replid}\r\n").as_bytes())
                .await
                .is_err()
            {
                remove_peer(shared, &peer);
                return;
            }
            from
        }
        Plan::Full => {
            if psync.replid != "?" {
                repl.sync_partial_err.fetch_add(1, Ordering::Relaxed);
            }
            repl.sync_full.fetch_add(1, Ordering::Relaxed);
            match full_sync(shared, &mut stream, &mut rbuf, handle, &peer).await {
                Some(from) => from,
                None => {
                    remove_peer(shared, &peer);
                    return;
                }
            }
        }
    };
    peer.state.store(2, Ordering::Relaxed);
    feed(shared, &mut stream, &mut rbuf, handle, &peer, from).await;
    remove_peer(shared, &peer);
    let _ = stream.shutdown().await;
}

fn remove_peer(shared: &Shared, peer: &Arc<ReplicaPeer>) {
    shared
        .repl
        .replicas
        .lock()
        .retain(|r| !Arc::ptr_eq(r, peer));
    shared.repl.wake_waiters();
}

/// Sends the snapshot; returns the offset the stream continues from.
async fn full_sync(
    shared: &Arc<Shared>,
    stream: &mut TcpStream,
    rbuf: &mut BytesMut,
    handle: &Arc<ClientHandle>,
    peer: &Arc<ReplicaPeer>,
) -> Option<u64> {
    let repl = &shared.repl;
    let _busy = repl.snapshot_busy.lock().await;
    let q = Arc::new(SnapQueue::default());
    let (offset, replid, cas) = {
        let mut st = repl.stream.lock();
        // Deletes already decided belong before the sync point.
        repl.emit(&mut st, None, b"");
        st.last_clock = 0;
        let offset = repl.backlog.lock().end();
        peer.need.store(offset + 1, Ordering::Relaxed);
        peer.state.store(1, Ordering::Relaxed);
        repl.replicas.lock().push(peer.clone());
        // A replica serving a sub-replica forwards its primary's stream, whose
        // frames after `offset` may rely on a clock record sent before it.
        let clock = repl.stream_clock.load(Ordering::Relaxed);
        if repl.is_replica() && clock != 0 {
            let mut b = itoa::Buffer::new();
            q.push(frame(&[b"SHOAL.CLOCK", b.format(clock).as_bytes()]));
        }
        let qh = q.clone();
        shared
            .keyspace
            .begin_snapshot(Arc::new(move |g: &ShardGuard<'_>| {
                if !qh.cancel.load(Ordering::Relaxed) {
                    qh.push(dump_shard(g));
                }
            }));
        let replid = repl.ids.lock().replid.clone();
        (offset, replid, shared.keyspace.cas_counter())
    };
    tracing::info!(
        "full resync of replica {}:{} at offset {offset}",
        peer.ip,
        peer.port
    );
    let ks = shared.keyspace.clone();
    let qd = q.clone();
    let dumper = std::thread::Builder::new()
        .name("shoal-snapshot".into())
        .spawn(move || {
            for s in 0..ks.shard_count() {
                let mut spins = 0u32;
                while qd.bytes.load(Ordering::Acquire) > SNAPSHOT_QUEUE
                    && !qd.cancel.load(Ordering::Relaxed)
                {
                    spins += 1;
                    std::thread::sleep(Duration::from_millis(if spins < 10 { 1 } else { 5 }));
                }
                if qd.cancel.load(Ordering::Relaxed) {
                    break;
                }
                drop(ks.lock_shard(s));
            }
            qd.done.store(true, Ordering::Release);
            qd.notify.notify_one();
        });
    if dumper.is_err() {
        shared.keyspace.end_snapshot();
        return None;
    }
    let ok = async {
        stream
            .write_all(format!("+FULLRESYNC {replid} {offset}\r\n").as_bytes())
            .await
            .ok()?;
        let killed = handle.kill.notified();
        tokio::pin!(killed);
        loop {
            let chunk = q.pop(SEND_CHUNK);
            if !chunk.is_empty() {
                repl.bytes_sent
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                stream.write_all(&chunk).await.ok()?;
                continue;
            }
            if q.done.load(Ordering::Acquire) && q.q.lock().is_empty() {
                break;
            }
            if handle.killed.load(Ordering::SeqCst) {
                return None;
            }
            tokio::select! {
                _ = q.notify.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = &mut killed => return None,
                r = stream.read_buf(rbuf) => match r {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => rbuf.clear(),
                },
            }
        }
        let mut b = itoa::Buffer::new();
        let end = frame(&[b"SHOAL.SNAPSHOT.END", b.format(cas).as_bytes()]);
        stream.write_all(&end).await.ok()?;
        Some(offset + 1)
    }
    .await;
    if ok.is_none() {
        q.cancel.store(true, Ordering::Relaxed);
    }
    shared.keyspace.end_snapshot();
    ok
}

/// Streams the backlog from `from` and reads ACKs until the link ends.
async fn feed(
    shared: &Arc<Shared>,
    stream: &mut TcpStream,
    rbuf: &mut BytesMut,
    handle: &Arc<ClientHandle>,
    peer: &Arc<ReplicaPeer>,
    mut next: u64,
) {
    let repl = &shared.repl;
    let killed = handle.kill.notified();
    tokio::pin!(killed);
    let mut args = Args::new();
    let limits = Limits::default();
    let mut data = Vec::new();
    // One timer for the link's life (re-armed when it fires), not one per wait.
    let timeout = || Duration::from_secs(repl.timeout.load(Ordering::Relaxed).max(1));
    let lag_check = tokio::time::sleep(timeout());
    tokio::pin!(lag_check);
    loop {
        if handle.killed.load(Ordering::SeqCst) {
            return;
        }
        if repl
            .backlog
            .lock()
            .read_into(next, SEND_CHUNK, &mut data)
            .is_err()
        {
            tracing::warn!(
                "replica {}:{} fell out of the backlog; dropping it",
                peer.ip,
                peer.port
            );
            return;
        }
        if !data.is_empty() {
            if stream.write_all(&data).await.is_err() {
                return;
            }
            next += data.len() as u64;
            peer.need.store(next, Ordering::Relaxed);
            repl.bytes_sent
                .fetch_add(data.len() as u64, Ordering::Relaxed);
            if data.capacity() > 4 * SEND_CHUNK {
                data = Vec::new();
            }
            continue;
        }
        let Some(grew) = repl.wait_for_growth(next) else {
            continue;
        };
        tokio::select! {
            () = grew => {
                // Let every client that is ready run its batch first, so one send
                // carries the writes of a whole scheduler tick (as Redis flushes
                // replica buffers once per event-loop turn), not one batch each.
                tokio::task::yield_now().await;
            }
            _ = &mut killed => return,
            () = &mut lag_check => {
                let t = timeout();
                if peer.lag_secs() >= t.as_secs() {
                    tracing::warn!("replica {}:{} timed out", peer.ip, peer.port);
                    return;
                }
                lag_check.as_mut().reset(tokio::time::Instant::now() + t);
            }
            r = stream.read_buf(rbuf) => match r {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    loop {
                        match decode_request(&rbuf[..], &limits, &mut args) {
                            Ok(Decoded::Frame { consumed }) => {
                                if args.len() >= 3
                                    && args.get(rbuf, 0).eq_ignore_ascii_case(b"replconf")
                                    && args.get(rbuf, 1).eq_ignore_ascii_case(b"ack")
                                {
                                    if let Some(off) = std::str::from_utf8(args.get(rbuf, 2))
                                        .ok()
                                        .and_then(|s| s.parse::<u64>().ok())
                                    {
                                        peer.ack.fetch_max(off, Ordering::Relaxed);
                                        peer.ack_ms.store(now_ms(), Ordering::Relaxed);
                                        repl.wake_waiters();
                                    }
                                }
                                rbuf.advance(consumed);
                            }
                            Ok(Decoded::Incomplete { .. }) => break,
                            Err(_) => return,
                        }
                    }
                }
            },
        }
    }
}
