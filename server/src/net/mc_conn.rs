//! The memcache connection loop: read → decode every complete request → execute
//! → one write per read batch.
//!
//! ```text
//!   read_buf (16 KiB steps) ─► decode ─► execute ─► out ─┐  (repeat while complete)
//!        ▲                                               │
//!        └──────────── one write_all per read ◄──────────┘
//! ```
//!
//! memcached swallows the data block of a rejected store (`SERVER_ERROR object
//! too large for cache`) even when it has not arrived yet: the codec reports how
//! many bytes to drop and the loop keeps discarding them across reads
//! (`swallow`). Unprocessed input is bounded by the codec (a command line past
//! 2048 bytes closes the connection; a value past the item size limit is
//! swallowed, never buffered), so the buffer never exceeds one item plus a read.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use shoal_client::memcache::{decode, McDecoded, McLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::exec::memcache::{command_name, Flow, McConn};
use crate::reshard::MC_ASK_PREFIX;
use crate::shared::{ClientHandle, Shared};

const READ_CHUNK: usize = 16 * 1024;
/// Output above this is written before decoding more input (a pipelined flood of
/// large gets must not buffer without bound).
const OUT_HIGH_WATER: usize = 4 * 1024 * 1024;

/// Serves one memcache connection until EOF, `quit`, a fatal protocol error, or
/// a kill (CLIENT KILL, shutdown).
///
/// # Cancel safety
/// `read_buf` and `Notified` are cancel safe, and input is consumed only after a
/// complete decode; the `Notified` future is created once so a kill arriving
/// between two reads is not lost.
pub(crate) async fn run(shared: &Arc<Shared>, mut stream: TcpStream, handle: &Arc<ClientHandle>) {
    let mut conn = McConn::new();
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut out = BytesMut::with_capacity(READ_CHUNK);
    let killed = handle.kill.notified();
    tokio::pin!(killed);
    // Bytes of a rejected value still to be discarded as they arrive.
    let mut swallow: usize = 0;
    'conn: loop {
        if handle.killed.load(Ordering::SeqCst) {
            break;
        }
        if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
            rbuf.reserve(READ_CHUNK);
        }
        let n = tokio::select! {
            biased;
            r = stream.read_buf(&mut rbuf) => match r { Ok(n) => n, Err(_) => break },
            _ = &mut killed => break,
        };
        if n == 0 {
            break;
        }
        shared
            .counters()
            .net_input_bytes
            .fetch_add(n as u64, Ordering::Relaxed);
        if swallow > 0 {
            let d = swallow.min(rbuf.len());
            rbuf.advance(d);
            swallow -= d;
            if rbuf.is_empty() {
                continue;
            }
        }
        let limits = McLimits {
            max_item_size: shared.settings.max_item_size.load(Ordering::Relaxed) as usize,
            ..McLimits::default()
        };
        let (batch, now) = crate::shared::batch_clock();
        let wakes = crate::repl::FeederWakes::open(shared);
        handle.last_ms.store(now, Ordering::Relaxed);
        let mut pos = 0;
        let mut commands = 0u64;
        let mut close = false;
        while pos < rbuf.len() {
            // `shoal.ask <request>`: the proxy asking while resharding.
            let prefix = if rbuf[pos..].starts_with(MC_ASK_PREFIX) {
                MC_ASK_PREFIX.len()
            } else {
                0
            };
            match decode(&rbuf[pos + prefix..], &limits) {
                McDecoded::Request { req, consumed } => {
                    let consumed = consumed + prefix;
                    let name = command_name(&req);
                    let flow = if prefix > 0 {
                        crate::reshard::mc_ask(shared, &mut conn, req, &mut out, now)
                    } else {
                        let _gate = shared.gate_read();
                        crate::repl::mc_execute(shared, &mut conn, req, &mut out, now)
                    };
                    crate::stats::record_mc(name);
                    commands += 1;
                    pos += consumed;
                    if flow == Flow::Close {
                        close = true;
                        break;
                    }
                    if out.len() >= OUT_HIGH_WATER {
                        if stream.write_all(&out).await.is_err() {
                            break 'conn;
                        }
                        shared
                            .counters()
                            .net_output_bytes
                            .fetch_add(out.len() as u64, Ordering::Relaxed);
                        out.clear();
                    }
                }
                McDecoded::Incomplete => break,
                McDecoded::Error {
                    reply,
                    consume,
                    close: fatal,
                } => {
                    if !reply.is_empty() {
                        out.extend_from_slice(reply);
                        shared
                            .counters()
                            .total_error_replies
                            .fetch_add(1, Ordering::Relaxed);
                        crate::stats::count_error();
                    }
                    let consume = consume + prefix;
                    let left = rbuf.len() - pos;
                    if consume > left {
                        swallow = consume - left;
                        pos = rbuf.len();
                    } else {
                        pos += consume;
                    }
                    if fatal {
                        close = true;
                        break;
                    }
                }
            }
        }
        crate::stats::end_batch(batch);
        drop(wakes);
        rbuf.advance(pos);
        conn.flush_stats(shared);
        if commands > 0 {
            shared
                .counters()
                .total_commands
                .fetch_add(commands, Ordering::Relaxed);
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
        if close {
            break;
        }
    }
    conn.flush_stats(shared);
    let _ = stream.shutdown().await;
}
