//! The RESP connection loop: read → decode every complete frame → execute →
//! one write per read batch (pipelined requests get one syscall for all replies).
//!
//! Two things suspend the loop besides reading: a blocking command (BLPOP & co.)
//! waits for a wake-up, its deadline, a kill, or the client going away, and then
//! re-runs the same frame; pub/sub messages for a subscriber arrive on a channel
//! and are written as they come.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use shoal_client::resp::{decode_request, Args, Decoded, Limits, ReplyWriter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::Receiver;

use crate::exec::resp::{dispatch, on_disconnect, Block, Conn, Ctx, ReplyMode, Req, TimeoutReply};
use crate::shared::{ClientHandle, Shared};

const READ_CHUNK: usize = 16 * 1024;
/// Output above this is written before decoding more input, bounding memory
/// for clients that pipeline many large reads.
const OUT_HIGH_WATER: usize = 4 * 1024 * 1024;

/// Next pub/sub message, or never when not subscribed.
///
/// # Cancel safety
/// `Receiver::recv` is cancel safe.
async fn next_push(rx: &mut Option<Receiver<Bytes>>) -> Option<Bytes> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

pub(crate) async fn run(shared: &Arc<Shared>, mut stream: TcpStream, handle: &Arc<ClientHandle>) {
    let mut conn = Conn::new(handle.clone(), !shared.auth_required());
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut out = BytesMut::with_capacity(READ_CHUNK);
    let mut args = Args::new();
    let mut args_next = Args::new();
    let mut args_next2 = Args::new();
    // Cancel safety: `read_buf`, `Notified` and `recv` are all cancel safe; the
    // kill future is created once so a kill is never missed between reads.
    let killed = handle.kill.notified();
    tokio::pin!(killed);
    let mut need: usize = 0;
    // Set when a blocked command was woken: decode again without reading.
    let mut rerun = false;
    'conn: loop {
        if handle.killed.load(Ordering::SeqCst) {
            break;
        }
        if !rerun {
            let spare = rbuf.capacity() - rbuf.len();
            if spare < READ_CHUNK / 4 {
                // Grow toward a known frame size in bounded steps, never by a declared length alone.
                let want = need.saturating_sub(rbuf.len()).clamp(READ_CHUNK, 1 << 20);
                rbuf.reserve(want);
            }
            let timeout = shared.settings.timeout.load(Ordering::Relaxed);
            let idle = conn.subscriptions == 0 && timeout > 0;
            let read = async {
                if idle {
                    match tokio::time::timeout(
                        Duration::from_secs(timeout),
                        stream.read_buf(&mut rbuf),
                    )
                    .await
                    {
                        Ok(r) => r,
                        Err(_) => Ok(0),
                    }
                } else {
                    stream.read_buf(&mut rbuf).await
                }
            };
            let n = tokio::select! {
                biased;
                r = read => match r { Ok(n) => n, Err(_) => break },
                _ = &mut killed => break,
                m = next_push(&mut conn.push_rx) => {
                    match m {
                        Some(msg) => {
                            // A subscriber killed for its output backlog must not stay
                            // stuck writing to a peer that never reads.
                            let w = write_pushes(shared, &mut stream, &mut out, msg, &mut conn.push_rx);
                            tokio::select! {
                                ok = w => if !ok { break },
                                _ = &mut killed => break,
                            }
                        }
                        None => conn.push_rx = None,
                    }
                    continue;
                }
            };
            if n == 0 {
                break;
            }
            shared
                .counters()
                .net_input_bytes
                .fetch_add(n as u64, Ordering::Relaxed);
            if rbuf.len() as u64 > shared.settings.query_buffer_limit.load(Ordering::Relaxed) {
                tracing::warn!(
                    client = handle.id,
                    "closing client that reached max query buffer length"
                );
                break;
            }
            if rbuf.len() < need {
                continue;
            }
        }
        rerun = false;
        let limits = Limits {
            max_bulk_len: shared.settings.proto_max_bulk_len.load(Ordering::Relaxed) as usize,
            ..Limits::default()
        };
        let (batch, now) = crate::shared::batch_clock();
        let wakes = crate::repl::FeederWakes::open(shared);
        handle.last_ms.store(now, Ordering::Relaxed);
        let mut pos = 0;
        let mut commands = 0u64;
        let mut fatal = false;
        let mut blocked: Option<(Block, usize)> = None;
        // Two frames of lookahead: before a frame runs, the one after it has its
        // key's table slot read and entry prefetched, and the one after that its
        // slot prefetched, so the cache misses of random keys overlap with
        // earlier commands instead of stalling each one in turn.
        let mut cur = decode_request(&rbuf[pos..], &limits, &mut args);
        let mut p1 = pos;
        let mut r1 = None;
        if let Ok(Decoded::Frame { consumed }) = cur {
            p1 = pos + consumed;
            let r = decode_request(&rbuf[p1..], &limits, &mut args_next);
            if let Ok(Decoded::Frame { consumed: c }) = r {
                prefetch_key(shared, &rbuf[p1..p1 + c], &args_next, false);
            }
            r1 = Some(r);
        }
        loop {
            match cur {
                Ok(Decoded::Frame { consumed }) => {
                    let next = r1.take().unwrap_or(Ok(Decoded::Incomplete { need: None }));
                    let mut p2 = p1;
                    if let Ok(Decoded::Frame { consumed: c1 }) = next {
                        prefetch_key(shared, &rbuf[p1..p1 + c1], &args_next, true);
                        p2 = p1 + c1;
                        let r = decode_request(&rbuf[p2..], &limits, &mut args_next2);
                        if let Ok(Decoded::Frame { consumed: c2 }) = r {
                            prefetch_key(shared, &rbuf[p2..p2 + c2], &args_next2, false);
                        }
                        r1 = Some(r);
                    }
                    if !args.is_empty() {
                        let req = Req::new(&rbuf[pos..pos + consumed], &args);
                        execute(shared, &mut conn, &mut out, &req, now);
                        commands += 1;
                        if let Some(b) = conn.block.take() {
                            // Leave the frame unconsumed: it runs again when woken.
                            blocked = Some((b, consumed));
                            break;
                        }
                        conn.block_deadline = None;
                        conn.block_ticket = None;
                    }
                    pos += consumed;
                    need = 0;
                    // Rotate the lookahead window: next becomes current.
                    std::mem::swap(&mut args, &mut args_next);
                    std::mem::swap(&mut args_next, &mut args_next2);
                    cur = next;
                    p1 = p2;
                    if conn.close || conn.repl.psync.is_some() || conn.pending.is_some() {
                        break;
                    }
                    if out.len() >= OUT_HIGH_WATER {
                        if stream.write_all(&out).await.is_err() {
                            fatal = true;
                            break;
                        }
                        shared
                            .counters()
                            .net_output_bytes
                            .fetch_add(out.len() as u64, Ordering::Relaxed);
                        out.clear();
                    }
                }
                Ok(Decoded::Incomplete { need: n }) => {
                    need = n.map_or(0, |n| n + pos);
                    break;
                }
                Err(e) => {
                    out.extend_from_slice(e.reply());
                    shared
                        .counters()
                        .total_error_replies
                        .fetch_add(1, Ordering::Relaxed);
                    fatal = true;
                    break;
                }
            }
        }
        crate::stats::end_batch(batch);
        drop(wakes);
        rbuf.advance(pos);
        need = need.saturating_sub(pos);
        if commands > 0 {
            shared
                .counters()
                .total_commands
                .fetch_add(commands, Ordering::Relaxed);
        }
        let limit = shared.settings.query_buffer_limit.load(Ordering::Relaxed) as usize;
        if rbuf.len() > limit {
            tracing::warn!(
                client = handle.id,
                "closing client that reached max query buffer length"
            );
            fatal = true;
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                break;
            }
            shared
                .counters()
                .net_output_bytes
                .fetch_add(out.len() as u64, Ordering::Relaxed);
            out.clear();
            if out.capacity() > 1 << 20 {
                out = BytesMut::with_capacity(READ_CHUNK);
            }
        }
        if rbuf.is_empty() && rbuf.capacity() > 1 << 20 {
            rbuf = BytesMut::with_capacity(READ_CHUNK);
        }
        if fatal || conn.close {
            break;
        }
        if conn.repl.psync.is_some() {
            // PSYNC/SYNC: this connection now carries the replication stream.
            let rest = rbuf.split();
            crate::repl::primary::serve_replica(shared, stream, rest, handle, &conn.repl).await;
            on_disconnect(shared, &mut conn);
            return;
        }
        if let Some(rx) = conn.pending.take() {
            // A command finishing in a task (SHOAL.MIGRATE): its reply comes
            // before anything pipelined after it.
            let Some(reply) =
                wait_pending(shared, &mut stream, &mut rbuf, rx, killed.as_mut()).await
            else {
                break 'conn;
            };
            if conn.reply_mode != ReplyMode::Off {
                let mut w = ReplyWriter::new(&mut out, conn.proto);
                match reply {
                    Ok(v) if v.len() == 1 => w.int(v[0]),
                    Ok(v) => {
                        w.array(v.len());
                        for n in v {
                            w.int(n);
                        }
                    }
                    Err(e) => {
                        w.error(e.as_bytes());
                        shared
                            .counters()
                            .total_error_replies
                            .fetch_add(1, Ordering::Relaxed);
                        crate::stats::count_error();
                    }
                }
                if stream.write_all(&out).await.is_err() {
                    break 'conn;
                }
                shared
                    .counters()
                    .net_output_bytes
                    .fetch_add(out.len() as u64, Ordering::Relaxed);
                out.clear();
            }
            rerun = !rbuf.is_empty();
        }
        if let Some((block, consumed)) = blocked {
            match wait_unblocked(
                shared,
                &mut stream,
                &mut rbuf,
                &mut conn,
                &block,
                killed.as_mut(),
            )
            .await
            {
                Wakeup::Woken => rerun = true,
                Wakeup::TimedOut if block.on_timeout == TimeoutReply::Rerun => rerun = true,
                Wakeup::TimedOut => {
                    let mut w = ReplyWriter::new(&mut out, conn.proto);
                    match block.on_timeout {
                        TimeoutReply::NullArray => w.null_array(),
                        TimeoutReply::NullBulk => w.null(),
                        TimeoutReply::Rerun => {}
                    }
                    conn.block_deadline = None;
                    conn.block_ticket = None;
                    rbuf.advance(consumed);
                    // Pipelined commands after the blocked one run now.
                    rerun = !rbuf.is_empty();
                    if stream.write_all(&out).await.is_err() {
                        break 'conn;
                    }
                    out.clear();
                }
                Wakeup::Gone => {
                    conn.block = Some(block);
                    break 'conn;
                }
            }
        }
    }
    on_disconnect(shared, &mut conn);
    let _ = stream.shutdown().await;
}

/// Prefetches (stage 1: table slot, stage 2: entry) the key of a GET/SET-family frame.
#[inline]
fn prefetch_key(shared: &Shared, frame: &[u8], args: &Args, entry: bool) {
    if args.len() >= 2 {
        let name = args.get(frame, 0);
        if name.len() <= 6 && (name[0] | 0x20 == b'g' || name[0] | 0x20 == b's') {
            shared.keyspace.prefetch(args.get(frame, 1), entry);
        }
    }
}

enum Wakeup {
    Woken,
    TimedOut,
    Gone,
}

/// Waits until a key of `block` is written, its deadline passes, the client
/// disconnects or is killed. Always unregisters from the keys before returning.
async fn wait_unblocked(
    shared: &Shared,
    stream: &mut TcpStream,
    rbuf: &mut BytesMut,
    conn: &mut Conn,
    block: &Block,
    mut killed: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
) -> Wakeup {
    let deadline = block.deadline.map(tokio::time::Instant::from_std);
    let sleep = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sleep);
    let waker = conn.waker.clone();
    shared.blocked.fetch_add(1, Ordering::Relaxed);
    let outcome = loop {
        if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
            rbuf.reserve(READ_CHUNK);
        }
        tokio::select! {
            _ = waker.notify.notified() => break Wakeup::Woken,
            _ = &mut sleep => break Wakeup::TimedOut,
            _ = &mut killed => break Wakeup::Gone,
            // Keep reading so a disconnect is noticed; what arrives waits its turn.
            r = stream.read_buf(rbuf) => match r {
                Ok(0) | Err(_) => break Wakeup::Gone,
                Ok(n) => {
                    shared.counters().net_input_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    if rbuf.len() as u64 > shared.settings.query_buffer_limit.load(Ordering::Relaxed) {
                        break Wakeup::Gone;
                    }
                }
            },
        }
    };
    shared.blocked.fetch_sub(1, Ordering::Relaxed);
    if !matches!(outcome, Wakeup::Gone) {
        for key in &block.keys {
            let mut g = shared.keyspace.lock(key);
            g.remove_waiter(key, conn.id);
            if matches!(outcome, Wakeup::TimedOut) {
                // A wake-up may have raced with the timeout: pass it on.
                g.wake_one(key);
            }
        }
    }
    outcome
}

/// Waits for the reply of a command running in a task, reading on so a
/// disconnect is noticed (what arrives waits its turn). None when the client
/// went away or was killed (the task finishes on its own).
async fn wait_pending(
    shared: &Shared,
    stream: &mut TcpStream,
    rbuf: &mut BytesMut,
    mut rx: tokio::sync::oneshot::Receiver<crate::exec::resp::AsyncReply>,
    mut killed: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
) -> Option<crate::exec::resp::AsyncReply> {
    loop {
        if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
            rbuf.reserve(READ_CHUNK);
        }
        tokio::select! {
            r = &mut rx => {
                return Some(r.unwrap_or_else(|_| Err("ERR the command's task ended without a reply".into())));
            }
            _ = &mut killed => return None,
            r = stream.read_buf(rbuf) => match r {
                Ok(0) | Err(_) => return None,
                Ok(n) => {
                    shared.counters().net_input_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    if rbuf.len() as u64 > shared.settings.query_buffer_limit.load(Ordering::Relaxed) {
                        return None;
                    }
                }
            },
        }
    }
}

/// Writes a pub/sub message plus any others already queued, in one write.
async fn write_pushes(
    shared: &Shared,
    stream: &mut TcpStream,
    out: &mut BytesMut,
    first: Bytes,
    rx: &mut Option<Receiver<Bytes>>,
) -> bool {
    out.extend_from_slice(&first);
    if let Some(r) = rx.as_mut() {
        while out.len() < OUT_HIGH_WATER {
            match r.try_recv() {
                Ok(m) => out.extend_from_slice(&m),
                Err(_) => break,
            }
        }
    }
    let ok = stream.write_all(out).await.is_ok();
    shared
        .counters()
        .net_output_bytes
        .fetch_add(out.len() as u64, Ordering::Relaxed);
    out.clear();
    ok
}

/// Runs one command, honouring CLIENT REPLY modes.
fn execute(shared: &Shared, conn: &mut Conn, out: &mut BytesMut, req: &Req<'_>, now: u64) {
    let mark = out.len();
    let mode = conn.reply_mode;
    let mut ctx = Ctx {
        shared,
        ks: &shared.keyspace,
        conn: &mut *conn,
        out: &mut *out,
        now,
    };
    dispatch(&mut ctx, req);
    match mode {
        ReplyMode::On => {}
        // CLIENT REPLY ON switches the mode back and is itself answered.
        ReplyMode::Off if conn.reply_mode == ReplyMode::Off => out.truncate(mark),
        ReplyMode::Off => {}
        ReplyMode::Skip => {
            out.truncate(mark);
            if conn.reply_mode == ReplyMode::Skip {
                conn.reply_mode = ReplyMode::On;
            }
        }
    }
}
