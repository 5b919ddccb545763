//! Transactions: MULTI EXEC DISCARD WATCH UNWATCH.
//!
//! MULTI makes `dispatch` queue raw request frames in `Conn::multi`; EXEC takes
//! every worker's gate (nothing else runs anywhere meanwhile), checks WATCHed
//! keys, and runs the queued frames through `dispatch` again with `in_exec` set.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use shoal_client::resp::{decode_request, Args, Decoded, Limits};
use shoal_keyspace::Keyspace;

use super::{Conn, Ctx, Req, Spec};
use super::{EXCLUSIVE, FAST, KALL, NK};
use crate::shared::Shared;

/// This module's command table rows.
pub(super) fn table() -> Vec<Spec> {
    super::rows! {
        "multi", 1, FAST, NK, multi;
        "exec", 1, EXCLUSIVE, NK, exec;
        "discard", 1, FAST, NK, discard;
        "watch", -2, FAST, KALL, watch;
        "unwatch", 1, FAST, NK, unwatch;
    }
}

/// Drops every WATCH of this connection and clears its dirty flag.
fn unwatch_all(ks: &Keyspace, conn: &mut Conn) {
    if conn.watched.is_empty() {
        // Never registered since the last unwatch: the flag is still clear.
        return;
    }
    for key in conn.watched.drain(..) {
        ks.lock(&key).unwatch(&key, conn.id);
    }
    // No shard holds the old flag any more: start clean.
    conn.watch_dirty = Arc::new(AtomicBool::new(false));
}

/// Leaves MULTI state (queued commands dropped) and unwatches everything.
fn discard_transaction(ks: &Keyspace, conn: &mut Conn) {
    conn.multi = None;
    conn.multi_dirty = false;
    unwatch_all(ks, conn);
}

/// Redis' `execCommandAbort`: EXEC itself was rejected by a dispatch check
/// (arity, NOAUTH, OOM, RESP2 subscribed mode). The transaction is discarded
/// and the error becomes `EXECABORT Transaction discarded because of: <msg>`
/// (`msg` without its `ERR ` prefix). For `dispatch` to call instead of
/// replying `msg` when the rejected command is `exec`.
pub(super) fn exec_abort(ctx: &mut Ctx<'_>, msg: &str) {
    discard_transaction(ctx.ks, ctx.conn);
    let why = msg.strip_prefix("ERR ").unwrap_or(msg);
    ctx.err(&format!(
        "EXECABORT Transaction discarded because of: {why}"
    ));
}

/// RESET: discard any transaction and unwatch all keys.
pub(super) fn reset(ctx: &mut Ctx<'_>) {
    discard_transaction(ctx.ks, ctx.conn);
}

/// Releases this connection's state in shared structures.
pub(super) fn on_disconnect(shared: &Shared, conn: &mut Conn) {
    discard_transaction(&shared.keyspace, conn);
}

pub fn multi(ctx: &mut Ctx<'_>, _req: &Req<'_>) {
    if ctx.conn.multi.is_some() {
        return ctx.err("ERR MULTI calls can not be nested");
    }
    ctx.conn.multi = Some(Vec::new());
    ctx.conn.multi_dirty = false;
    ctx.w().ok();
}

pub fn discard(ctx: &mut Ctx<'_>, _req: &Req<'_>) {
    if ctx.conn.multi.is_none() {
        return ctx.err("ERR DISCARD without MULTI");
    }
    discard_transaction(ctx.ks, ctx.conn);
    ctx.w().ok();
}

pub fn watch(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    if ctx.conn.multi.is_some() {
        return ctx.err("ERR WATCH inside MULTI is not allowed");
    }
    let id = ctx.conn.id;
    for key in req.rest(1) {
        if ctx.conn.watched.iter().any(|k| k.as_slice() == key) {
            continue;
        }
        let mut g = ctx.ks.lock(key);
        // Reclaim the key first if it already expired: that is not a change
        // made after WATCH.
        let _ = g.lookup(key, ctx.now);
        g.watch(key, id, ctx.conn.watch_dirty.clone());
        drop(g);
        ctx.conn.watched.push(key.to_vec());
    }
    ctx.w().ok();
}

pub fn unwatch(ctx: &mut Ctx<'_>, _req: &Req<'_>) {
    unwatch_all(ctx.ks, ctx.conn);
    ctx.w().ok();
}

/// Whether a queued command changes the subscription count.
fn is_subscription_cmd(name: &[u8]) -> bool {
    ["subscribe", "unsubscribe", "psubscribe", "punsubscribe"]
        .iter()
        .any(|n| super::eq(name, n))
}

pub fn exec(ctx: &mut Ctx<'_>, _req: &Req<'_>) {
    let Some(queue) = ctx.conn.multi.take() else {
        return ctx.err("ERR EXEC without MULTI");
    };
    let aborted = std::mem::take(&mut ctx.conn.multi_dirty);
    // Every worker's gate: no command runs anywhere until the transaction is done.
    let _all = ctx.shared.exclusive();
    if aborted {
        unwatch_all(ctx.ks, ctx.conn);
        return ctx.err("EXECABORT Transaction discarded because of previous errors.");
    }
    // A WATCHed key that expired since WATCH counts as modified (Redis 7.0):
    // reclaiming it now sets the dirty flag.
    for key in &ctx.conn.watched {
        let _ = ctx.ks.lock(key).lookup(key, ctx.now);
    }
    let dirty = ctx.conn.watch_dirty.load(Ordering::Acquire);
    unwatch_all(ctx.ks, ctx.conn);
    if dirty {
        ctx.w().null_array();
        return;
    }
    let limits = Limits {
        max_bulk_len: ctx
            .shared
            .settings
            .proto_max_bulk_len
            .load(Ordering::Relaxed) as usize,
        ..Limits::default()
    };
    let mut args = Args::new();
    ctx.w().array(queue.len());
    ctx.conn.in_exec = true;
    // Queued commands are not subject to the RESP2 subscribed-mode restriction
    // (Redis checks it when queueing, not inside EXEC).
    let subs = std::mem::take(&mut ctx.conn.subscriptions);
    let mut resubscribed = false;
    for frame in &queue {
        match decode_request(frame, &limits, &mut args) {
            Ok(Decoded::Frame { .. }) if !args.is_empty() => {
                let req = Req::new(frame, &args);
                super::dispatch(ctx, &req);
                resubscribed |= is_subscription_cmd(req.arg(0));
                ctx.conn.subscriptions = 0;
            }
            // Frames were validated when queued; keep the reply count right regardless.
            _ => ctx.err("ERR Protocol error: invalid queued command"),
        }
    }
    ctx.conn.subscriptions = if resubscribed {
        ctx.shared.pubsub.count(ctx.conn.id)
    } else {
        subs
    };
    ctx.conn.in_exec = false;
}
