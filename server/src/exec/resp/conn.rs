//! Connection commands: PING ECHO QUIT HELLO AUTH SELECT RESET CLIENT.

use std::sync::atomic::Ordering;

use shoal_client::resp::Proto;

use super::{eq, parse_i64, sanitize, Ctx, ReplyMode, Req};
use crate::shared::{ClientHandle, Protocol};

/// The Redis version Shoal's RESP behaviour follows (reported by HELLO/INFO so
/// clients enable the right features).
pub const REDIS_COMPAT_VERSION: &str = "7.0.15";

pub fn ping(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    if req.len() <= 2 && ctx.conn.subscriptions > 0 && ctx.conn.proto == Proto::Resp2 {
        // RESP2 subscribed mode: a push-shaped `pong` with the argument (or "").
        let arg = if req.len() == 2 { req.arg(1) } else { b"" };
        let mut w = ctx.w();
        w.array(2);
        w.bulk(b"pong");
        w.bulk(arg);
        return;
    }
    match req.len() {
        1 => ctx.w().simple(b"PONG"),
        2 => ctx.w().bulk(req.arg(1)),
        _ => super::arity_error(ctx, "ping"),
    }
}

pub fn echo(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    ctx.w().bulk(req.arg(1));
}

pub fn quit(ctx: &mut Ctx<'_>, _req: &Req<'_>) {
    ctx.w().ok();
    ctx.conn.close = true;
}

/// Checks a password; writes the error reply itself on failure.
fn check_auth(ctx: &mut Ctx<'_>, user: Option<&[u8]>, pass: &[u8]) -> bool {
    let required = ctx.shared.settings.requirepass.read().clone();
    let ok = match (&required, user) {
        (_, Some(u)) if u != b"default" => false,
        (Some(p), _) => p.as_bytes() == pass,
        // No password configured: the default user accepts any password in AUTH user pass form.
        (None, Some(_)) => true,
        (None, None) => {
            ctx.err("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?");
            return false;
        }
    };
    if ok {
        ctx.conn.authed = true;
    } else {
        ctx.err("WRONGPASS invalid username-password pair or user is disabled.");
    }
    ok
}

pub fn auth(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let ok = match req.len() {
        2 => check_auth(ctx, None, req.arg(1)),
        3 => check_auth(ctx, Some(req.arg(1)), req.arg(2)),
        _ => {
            ctx.syntax();
            return;
        }
    };
    if ok {
        ctx.w().ok();
    }
}

fn valid_name(n: &[u8]) -> bool {
    n.iter().all(|&c| (b'!'..=b'~').contains(&c))
}

/// HELLO [protover [AUTH username password] [SETNAME clientname]]
pub fn hello(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let mut ver = None;
    if req.len() >= 2 {
        match parse_i64(req.arg(1)) {
            Some(v) if v == 2 || v == 3 => ver = Some(v),
            Some(_) => return ctx.err("NOPROTO unsupported protocol version"),
            None => return ctx.err("ERR Protocol version is not an integer or out of range"),
        }
    }
    let mut name = None;
    let mut auth = None;
    let mut i = 2;
    while i < req.len() {
        let a = req.arg(i);
        let more = req.len() - i - 1;
        if eq(a, "auth") && more >= 2 {
            auth = Some((req.arg(i + 1), req.arg(i + 2)));
            i += 3;
        } else if eq(a, "setname") && more >= 1 {
            name = Some(req.arg(i + 1));
            i += 2;
        } else {
            let msg = sanitize(format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(a)
            ));
            return ctx.err(&msg);
        }
    }
    if let Some((u, p)) = auth {
        if !check_auth(ctx, Some(u), p) {
            return;
        }
    }
    if !ctx.conn.authed {
        return ctx.err("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
    }
    if let Some(n) = name {
        if !valid_name(n) {
            return ctx
                .err("ERR Client names cannot contain spaces, newlines or special characters.");
        }
        ctx.conn.handle.info.lock().name = n.to_vec();
    }
    if let Some(v) = ver {
        ctx.conn.proto = if v == 3 { Proto::Resp3 } else { Proto::Resp2 };
        ctx.conn.handle.info.lock().resp = v as u8;
    }
    let id = ctx.conn.id as i64;
    let proto = if ctx.conn.proto == Proto::Resp3 { 3 } else { 2 };
    let mut w = ctx.w();
    w.map(7);
    w.bulk(b"server");
    w.bulk(b"redis");
    w.bulk(b"version");
    w.bulk(REDIS_COMPAT_VERSION.as_bytes());
    w.bulk(b"proto");
    w.int(proto);
    w.bulk(b"id");
    w.int(id);
    w.bulk(b"mode");
    w.bulk(b"standalone");
    w.bulk(b"role");
    w.bulk(b"master");
    w.bulk(b"modules");
    w.array(0);
}

pub fn select(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    match parse_i64(req.arg(1)) {
        Some(0) => ctx.w().ok(),
        // Shoal has one database per shard (like Redis Cluster); documented in the README.
        Some(_) => ctx.err("ERR DB index is out of range"),
        None => ctx.not_int(),
    }
}

pub fn reset(ctx: &mut Ctx<'_>, _req: &Req<'_>) {
    super::tx::reset(ctx);
    super::pubsub::reset(ctx);
    let c = &mut *ctx.conn;
    c.proto = Proto::Resp2;
    c.reply_mode = ReplyMode::On;
    c.no_evict = false;
    c.no_touch = false;
    c.authed = !ctx.shared.auth_required();
    {
        let mut info = c.handle.info.lock();
        info.name.clear();
        info.resp = 2;
    }
    ctx.w().simple(b"RESET");
}

fn client_line(h: &ClientHandle, now_ms: u64) -> String {
    let info = h.info.lock().clone();
    let age = h.since.elapsed().as_secs();
    let idle = now_ms.saturating_sub(h.last_ms.load(Ordering::Relaxed)) / 1000;
    let cmd = if info.last_cmd.is_empty() {
        "NULL"
    } else {
        info.last_cmd
    };
    format!(
        "id={} addr={} laddr={} fd=-1 name={} age={} idle={} flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={}",
        h.id,
        h.addr,
        h.laddr,
        String::from_utf8_lossy(&info.name),
        age,
        idle,
        cmd,
        if h.protocol == Protocol::Memcache { 0 } else { info.resp },
        String::from_utf8_lossy(&info.lib_name),
        String::from_utf8_lossy(&info.lib_ver),
    )
}

const CLIENT_HELP: &[&str] = &[
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are: ID, ADDR, LADDR, TYPE, USER, SKIPME.",
    "LIST [options ...]",
    "    Return information about client connections. Options: TYPE, ID.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction.",
    "NO-TOUCH (ON|OFF)",
    "    Will not touch LRU/LFU stats when this mode is on.",
    "REPLY (ON|OFF|SKIP)",
    "    Control the replies sent to the current connection.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "SETINFO <LIB-NAME|LIB-VER> <value>",
    "    Set client library name and version.",
    "HELP",
    "    Print this help.",
];

fn on_off(ctx: &mut Ctx<'_>, a: &[u8]) -> Option<bool> {
    if eq(a, "on") {
        Some(true)
    } else if eq(a, "off") {
        Some(false)
    } else {
        ctx.syntax();
        None
    }
}

pub fn client(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let sub = req.arg(1);
    let n = req.len();
    let arity = |ctx: &mut Ctx<'_>, name: &str| super::arity_error(ctx, &format!("client|{name}"));
    if eq(sub, "id") {
        if n != 2 {
            return arity(ctx, "id");
        }
        let id = ctx.conn.id as i64;
        ctx.w().int(id);
    } else if eq(sub, "setname") {
        if n != 3 {
            return arity(ctx, "setname");
        }
        let name = req.arg(2);
        if !valid_name(name) {
            return ctx
                .err("ERR Client names cannot contain spaces, newlines or special characters.");
        }
        ctx.conn.handle.info.lock().name = name.to_vec();
        ctx.w().ok();
    } else if eq(sub, "getname") {
        if n != 2 {
            return arity(ctx, "getname");
        }
        let name = ctx.conn.handle.info.lock().name.clone();
        if name.is_empty() {
            ctx.w().null();
        } else {
            ctx.w().bulk(&name);
        }
    } else if eq(sub, "setinfo") {
        if n != 4 {
            return arity(ctx, "setinfo");
        }
        let (attr, val) = (req.arg(2), req.arg(3));
        if !val.iter().all(|&c| (b'!'..=b'~').contains(&c)) {
            let msg = format!(
                "ERR {} cannot contain spaces, newlines or special characters.",
                String::from_utf8_lossy(attr)
            );
            return ctx.err(&msg);
        }
        if eq(attr, "lib-name") {
            ctx.conn.handle.info.lock().lib_name = val.to_vec();
        } else if eq(attr, "lib-ver") {
            ctx.conn.handle.info.lock().lib_ver = val.to_vec();
        } else {
            let msg = sanitize(format!(
                "ERR Unrecognized option '{}'",
                String::from_utf8_lossy(attr)
            ));
            return ctx.err(&msg);
        }
        ctx.w().ok();
    } else if eq(sub, "info") {
        if n != 2 {
            return arity(ctx, "info");
        }
        let line = client_line(&ctx.conn.handle, ctx.now) + "\n";
        ctx.w().verbatim(b"txt", line.as_bytes());
    } else if eq(sub, "list") {
        client_list(ctx, req);
    } else if eq(sub, "kill") {
        client_kill(ctx, req);
    } else if eq(sub, "no-evict") {
        if n != 3 {
            return arity(ctx, "no-evict");
        }
        if let Some(v) = on_off(ctx, req.arg(2)) {
            ctx.conn.no_evict = v;
            ctx.w().ok();
        }
    } else if eq(sub, "no-touch") {
        if n != 3 {
            return arity(ctx, "no-touch");
        }
        if let Some(v) = on_off(ctx, req.arg(2)) {
            ctx.conn.no_touch = v;
            ctx.w().ok();
        }
    } else if eq(sub, "reply") {
        if n != 3 {
            return arity(ctx, "reply");
        }
        let a = req.arg(2);
        if eq(a, "on") {
            ctx.conn.reply_mode = ReplyMode::On;
            ctx.w().ok();
        } else if eq(a, "off") {
            ctx.conn.reply_mode = ReplyMode::Off;
        } else if eq(a, "skip") {
            ctx.conn.reply_mode = ReplyMode::Skip;
        } else {
            ctx.syntax();
        }
    } else if eq(sub, "help") {
        ctx.w().array(CLIENT_HELP.len());
        for l in CLIENT_HELP {
            ctx.w().simple(l.as_bytes());
        }
    } else {
        let msg = sanitize(format!(
            "ERR unknown subcommand '{}'. Try CLIENT HELP.",
            String::from_utf8_lossy(sub)
                .chars()
                .take(128)
                .collect::<String>()
        ));
        ctx.err(&msg);
    }
}

fn client_list(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let mut ids: Option<Vec<u64>> = None;
    let mut i = 2;
    while i < req.len() {
        let a = req.arg(i);
        if eq(a, "type") && i + 1 < req.len() {
            let t = req.arg(i + 1);
            if !["normal", "master", "replica", "pubsub", "slave"]
                .iter()
                .any(|n| eq(t, n))
            {
                let msg = sanitize(format!(
                    "ERR Unknown client type '{}'",
                    String::from_utf8_lossy(t)
                ));
                return ctx.err(&msg);
            }
            if !eq(t, "normal") {
                ids = Some(Vec::new());
            }
            i += 2;
        } else if eq(a, "id") && i + 1 < req.len() {
            let mut v = Vec::new();
            for x in req.rest(i + 1) {
                match parse_i64(x) {
                    Some(id) if id > 0 => v.push(id as u64),
                    _ => return ctx.err("ERR Invalid client ID"),
                }
            }
            ids = Some(v);
            i = req.len();
        } else {
            return ctx.syntax();
        }
    }
    let mut handles: Vec<_> = ctx
        .shared
        .clients
        .iter()
        .map(|c| c.value().clone())
        .collect();
    handles.sort_by_key(|h| h.id);
    let mut text = String::new();
    for h in handles {
        if ids.as_ref().is_some_and(|v| !v.contains(&h.id)) {
            continue;
        }
        text.push_str(&client_line(&h, ctx.now));
        text.push('\n');
    }
    ctx.w().verbatim(b"txt", text.as_bytes());
}

fn client_kill(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let kill = |h: &ClientHandle| {
        h.killed.store(true, Ordering::SeqCst);
        h.kill.notify_one();
    };
    if req.len() == 3 {
        // Old form: CLIENT KILL ip:port
        let addr = String::from_utf8_lossy(req.arg(2)).to_string();
        let target = ctx
            .shared
            .clients
            .iter()
            .find(|c| c.addr.to_string() == addr)
            .map(|c| c.value().clone());
        match target {
            Some(h) => {
                kill(&h);
                if h.id == ctx.conn.id {
                    ctx.conn.close = true;
                }
                ctx.w().ok();
            }
            None => ctx.err("ERR No such client"),
        }
        return;
    }
    if req.len() % 2 != 0 {
        return ctx.syntax();
    }
    let (mut id, mut addr, mut laddr, mut skipme, mut typ) = (None, None, None, true, None);
    for i in (2..req.len()).step_by(2) {
        let (k, v) = (req.arg(i), req.arg(i + 1));
        if eq(k, "id") {
            match parse_i64(v) {
                Some(n) if n > 0 => id = Some(n as u64),
                _ => return ctx.err("ERR client-id should be greater than 0"),
            }
        } else if eq(k, "addr") {
            addr = Some(String::from_utf8_lossy(v).to_string());
        } else if eq(k, "laddr") {
            laddr = Some(String::from_utf8_lossy(v).to_string());
        } else if eq(k, "skipme") {
            if eq(v, "yes") {
                skipme = true;
            } else if eq(v, "no") {
                skipme = false;
            } else {
                return ctx.syntax();
            }
        } else if eq(k, "type") {
            typ = Some(String::from_utf8_lossy(v).to_ascii_lowercase());
        } else if eq(k, "user") {
            if v != b"default" {
                let msg = sanitize(format!("ERR No such user '{}'", String::from_utf8_lossy(v)));
                return ctx.err(&msg);
            }
        } else {
            return ctx.syntax();
        }
    }
    if let Some(t) = &typ {
        if !["normal", "master", "replica", "pubsub", "slave"].contains(&t.as_str()) {
            let msg = format!("ERR Unknown client type '{t}'");
            return ctx.err(&msg);
        }
    }
    let mut killed = 0;
    let handles: Vec<_> = ctx
        .shared
        .clients
        .iter()
        .map(|c| c.value().clone())
        .collect();
    for h in handles {
        if id.is_some_and(|i| i != h.id)
            || addr.as_ref().is_some_and(|a| *a != h.addr.to_string())
            || laddr.as_ref().is_some_and(|a| *a != h.laddr.to_string())
            || typ.as_ref().is_some_and(|t| t != "normal")
            || (skipme && h.id == ctx.conn.id)
        {
            continue;
        }
        kill(&h);
        if h.id == ctx.conn.id {
            ctx.conn.close = true;
        }
        killed += 1;
    }
    ctx.w().int(killed);
}
