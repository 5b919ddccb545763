//! The RESP connection loop: read → decode every complete frame → execute →
//! one write per read batch (pipelined requests get one syscall for all replies).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use shoal_client::resp::{decode_request, Args, Decoded, Limits, Proto};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::exec::resp::{dispatch, Conn, Ctx, ReplyMode, Req};
use crate::shared::{now_ms, ClientHandle, Shared};

const READ_CHUNK: usize = 16 * 1024;
/// Output above this is written before decoding more input, bounding memory
/// for clients that pipeline many large reads.
const OUT_HIGH_WATER: usize = 4 * 1024 * 1024;

pub(crate) async fn run(shared: &Arc<Shared>, mut stream: TcpStream, handle: &Arc<ClientHandle>) {
    let mut conn = Conn {
        id: handle.id,
        proto: Proto::Resp2,
        authed: !shared.auth_required(),
        handle: handle.clone(),
        reply_mode: ReplyMode::On,
        no_evict: false,
        no_touch: false,
        close: false,
    };
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut out = BytesMut::with_capacity(READ_CHUNK);
    let mut args = Args::new();
    // Cancel safety: `read_buf` and `Notified` are both cancel safe; the
    // notified future is created once so a kill is never missed between reads.
    let killed = handle.kill.notified();
    tokio::pin!(killed);
    let mut need: usize = 0;
    loop {
        if handle.killed.load(Ordering::SeqCst) {
            break;
        }
        let spare = rbuf.capacity() - rbuf.len();
        if spare < READ_CHUNK / 4 {
            // Grow toward a known frame size in bounded steps, never by a declared length alone.
            let want = need.saturating_sub(rbuf.len()).clamp(READ_CHUNK, 1 << 20);
            rbuf.reserve(want);
        }
        let timeout = shared.settings.timeout.load(Ordering::Relaxed);
        let read = async {
            if timeout == 0 {
                stream.read_buf(&mut rbuf).await
            } else {
                match tokio::time::timeout(Duration::from_secs(timeout), stream.read_buf(&mut rbuf))
                    .await
                {
                    Ok(r) => r,
                    Err(_) => Ok(0),
                }
            }
        };
        let n = tokio::select! {
            r = read => match r { Ok(n) => n, Err(_) => break },
            _ = &mut killed => break,
        };
        if n == 0 {
            break;
        }
        shared
            .counters
            .net_input_bytes
            .fetch_add(n as u64, Ordering::Relaxed);
        if rbuf.len() < need {
            continue;
        }
        let limits = Limits {
            max_bulk_len: shared.settings.proto_max_bulk_len.load(Ordering::Relaxed) as usize,
            ..Limits::default()
        };
        let now = now_ms();
        handle.last_ms.store(now, Ordering::Relaxed);
        let mut pos = 0;
        let mut commands = 0u64;
        let batch = crate::stats::begin_batch();
        let mut fatal = false;
        loop {
            match decode_request(&rbuf[pos..], &limits, &mut args) {
                Ok(Decoded::Frame { consumed }) => {
                    if !args.is_empty() {
                        let req = Req::new(&rbuf[pos..pos + consumed], &args);
                        execute(shared, &mut conn, &mut out, &req, now);
                        commands += 1;
                    }
                    pos += consumed;
                    need = 0;
                    if conn.close {
                        break;
                    }
                    if out.len() >= OUT_HIGH_WATER {
                        if stream.write_all(&out).await.is_err() {
                            fatal = true;
                            break;
                        }
                        shared
                            .counters
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
                        .counters
                        .total_error_replies
                        .fetch_add(1, Ordering::Relaxed);
                    fatal = true;
                    break;
                }
            }
        }
        crate::stats::end_batch(batch);
        rbuf.advance(pos);
        need = need.saturating_sub(pos);
        if commands > 0 {
            shared
                .counters
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
                .counters
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
    }
    let _ = stream.shutdown().await;
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
