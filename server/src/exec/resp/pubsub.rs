//! Pub/Sub: SUBSCRIBE UNSUBSCRIBE PSUBSCRIBE PUNSUBSCRIBE PUBLISH PUBSUB.
//!
//! The registry lives in [`crate::pubsub`]; these handlers reply to the
//! subscribing connection (arrays in RESP2, push frames in RESP3) and keep
//! `Conn::subscriptions` in step with it.

use super::{eq, sanitize, Conn, Ctx, Req, Spec};
use super::{FAST, NK};
use crate::shared::Shared;

/// This module's command table rows.
pub(super) fn table() -> Vec<Spec> {
    super::rows! {
        "subscribe", -2, 0, NK, subscribe;
        "unsubscribe", -1, 0, NK, unsubscribe;
        "psubscribe", -2, 0, NK, psubscribe;
        "punsubscribe", -1, 0, NK, punsubscribe;
        "publish", 3, FAST, NK, publish;
        "pubsub", -2, 0, NK, pubsub;
    }
}

/// Releases this connection's state in shared structures.
pub(super) fn on_disconnect(shared: &Shared, conn: &mut Conn) {
    // Only connections that ever subscribed are in the registry (skip its lock otherwise).
    if conn.push_rx.is_some() || conn.subscriptions > 0 {
        shared.pubsub.remove_client(conn.id);
    }
    conn.subscriptions = 0;
}

/// RESET: unsubscribe from every channel and pattern without replies.
pub(super) fn reset(ctx: &mut Ctx<'_>) {
    ctx.shared.pubsub.unsubscribe_all(ctx.conn.id);
    ctx.conn.subscriptions = 0;
}

/// `(kind, name-or-nil, count)` as a push (an array in RESP2).
fn confirm(ctx: &mut Ctx<'_>, kind: &[u8], name: Option<&[u8]>, count: usize) {
    let mut w = ctx.w();
    w.push(3);
    w.bulk(kind);
    match name {
        Some(n) => w.bulk(n),
        None => w.null(),
    }
    w.int(count as i64);
}

fn do_subscribe(ctx: &mut Ctx<'_>, req: &Req<'_>, pattern: bool) {
    let kind: &[u8] = if pattern { b"psubscribe" } else { b"subscribe" };
    for name in req.rest(1) {
        let c = &mut *ctx.conn;
        let count = ctx
            .shared
            .pubsub
            .subscribe(c.id, &c.handle, &mut c.push_rx, name, pattern);
        c.subscriptions = count;
        confirm(ctx, kind, Some(name), count);
    }
}

fn do_unsubscribe(ctx: &mut Ctx<'_>, req: &Req<'_>, pattern: bool) {
    let kind: &[u8] = if pattern {
        b"punsubscribe"
    } else {
        b"unsubscribe"
    };
    let id = ctx.conn.id;
    let shared = ctx.shared;
    let ps = &shared.pubsub;
    if req.len() == 1 {
        let names = ps.subscriptions(id, pattern);
        if names.is_empty() {
            let count = ps.count(id);
            ctx.conn.subscriptions = count;
            return confirm(ctx, kind, None, count);
        }
        for name in names {
            let count = ps.unsubscribe(id, &name, pattern);
            ctx.conn.subscriptions = count;
            confirm(ctx, kind, Some(&name), count);
        }
        return;
    }
    for name in req.rest(1) {
        let count = ps.unsubscribe(id, name, pattern);
        ctx.conn.subscriptions = count;
        confirm(ctx, kind, Some(name), count);
    }
}

pub fn subscribe(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    do_subscribe(ctx, req, false);
}

pub fn psubscribe(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    do_subscribe(ctx, req, true);
}

pub fn unsubscribe(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    do_unsubscribe(ctx, req, false);
}

pub fn punsubscribe(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    do_unsubscribe(ctx, req, true);
}

pub fn publish(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let (channel, msg) = (req.arg(1), req.arg(2));
    let shared = ctx.shared;
    let me = ctx.conn.id;
    // A client publishing to itself gets the message ahead of the reply, as in Redis.
    let mut to_me = |pattern: Option<&[u8]>| {
        let mut w = ctx.w();
        match pattern {
            Some(p) => {
                w.push(4);
                w.bulk(b"pmessage");
                w.bulk(p);
            }
            None => {
                w.push(3);
                w.bulk(b"message");
            }
        }
        w.bulk(channel);
        w.bulk(msg);
    };
    let n = shared.pubsub.publish(channel, msg, me, &mut to_me);
    ctx.w().int(n as i64);
}

const PUBSUB_HELP: &[&str] = &[
    "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "SHARDCHANNELS [<pattern>]",
    "    Return the currently active shard level channels matching a <pattern> (default: '*').",
    "SHARDNUMSUB [<shardchannel> ...]",
    "    Return the number of subscribers for the specified shard level channel(s)",
    "HELP",
    "    Prints this help.",
];

pub fn pubsub(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let sub = req.arg(1);
    let n = req.len();
    // (name, Redis subcommand arity)
    let known = [
        ("channels", -2),
        ("numpat", 2),
        ("numsub", -2),
        ("help", 2),
        ("shardchannels", -2),
        ("shardnumsub", -2),
    ];
    let Some(&(name, arity)) = known.iter().find(|(k, _)| eq(sub, k)) else {
        let shown: String = String::from_utf8_lossy(sub).chars().take(128).collect();
        let msg = sanitize(format!(
            "ERR unknown subcommand '{shown}'. Try PUBSUB HELP."
        ));
        return ctx.err(&msg);
    };
    let bad_arity = if arity > 0 {
        n as i32 != arity
    } else {
        (n as i32) < -arity
    };
    if bad_arity {
        let msg = format!("ERR wrong number of arguments for 'pubsub|{name}' command");
        return ctx.err(&msg);
    }
    let shared = ctx.shared;
    let ps = &shared.pubsub;
    match name {
        "channels" | "shardchannels" => {
            if n > 3 {
                let shown: String = String::from_utf8_lossy(sub).chars().take(128).collect();
                let msg = sanitize(format!(
                    "ERR unknown subcommand or wrong number of arguments for '{shown}'. Try PUBSUB HELP."
                ));
                return ctx.err(&msg);
            }
            // Shard channels (SSUBSCRIBE) are not supported: there are none.
            let list = if name == "channels" {
                ps.channels((n == 3).then(|| req.arg(2)))
            } else {
                Vec::new()
            };
            let mut w = ctx.w();
            w.array(list.len());
            for c in &list {
                w.bulk(c);
            }
        }
        "numsub" | "shardnumsub" => {
            let counts: Vec<usize> = req
                .rest(2)
                .map(|c| if name == "numsub" { ps.numsub(c) } else { 0 })
                .collect();
            let mut w = ctx.w();
            w.array(counts.len() * 2);
            for (c, k) in req.rest(2).zip(counts) {
                w.bulk(c);
                w.int(k as i64);
            }
        }
        "numpat" => {
            let k = ps.numpat();
            ctx.w().int(k as i64);
        }
        _ => {
            let mut w = ctx.w();
            w.array(PUBSUB_HELP.len());
            for l in PUBSUB_HELP {
                w.simple(l.as_bytes());
            }
        }
    }
}
