//! RESP command execution: the command table, argument checks, dispatch.
//!
//! Request path: `net::resp_conn` decodes a frame into [`Req`] (argument offsets
//! into the read buffer, nothing copied) → [`dispatch`] looks the name up,
//! checks arity and auth → the handler runs against the keyspace and writes its
//! reply into the connection's output buffer. Handlers never see sockets.

mod admin;
mod bits;
mod conn;
mod hashes;
mod keys;
mod lists;
mod longdouble;
mod pubsub;
mod repl;
mod reshard;
mod sets;
mod sort;
mod strings;
mod tx;
mod zsets;

pub use admin::rss_bytes;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use shoal_client::resp::{Args, Proto, ReplyWriter};
use shoal_keyspace::{Entry, Keyspace, ObjectKind, ShardGuard, Wake};

use crate::shared::{ClientHandle, Shared};
use crate::stats;

/// One decoded request: arguments are slices of the connection's read buffer.
pub struct Req<'a> {
    buf: &'a [u8],
    args: &'a Args,
    /// Arguments skipped: 0, or 1 for the command wrapped by `SHOAL.ASK`.
    skip: usize,
}

impl<'a> Req<'a> {
    /// Wraps decoded arguments.
    pub fn new(buf: &'a [u8], args: &'a Args) -> Self {
        Req { buf, args, skip: 0 }
    }

    /// The request made of arguments `1..` (the command a wrapper carries).
    pub fn inner(&self) -> Req<'a> {
        Req {
            buf: self.buf,
            args: self.args,
            skip: self.skip + 1,
        }
    }

    /// Argument `i` (0 is the command name).
    #[inline]
    pub fn arg(&self, i: usize) -> &'a [u8] {
        self.args.get(self.buf, i + self.skip)
    }

    /// Number of arguments including the name.
    #[inline]
    pub fn len(&self) -> usize {
        self.args.len() - self.skip
    }

    /// Always false for a dispatched request (it has a name).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The request as a RESP frame: the bytes as received (MULTI queues them
    /// verbatim, replication propagates them), re-encoded for a wrapped command.
    pub fn raw(&self) -> std::borrow::Cow<'a, [u8]> {
        if self.skip == 0 {
            std::borrow::Cow::Borrowed(self.buf)
        } else {
            let args: Vec<&[u8]> = (0..self.len()).map(|i| self.arg(i)).collect();
            std::borrow::Cow::Owned(crate::repl::frame(&args))
        }
    }

    /// Arguments `from..`.
    pub fn rest(&self, from: usize) -> impl Iterator<Item = &'a [u8]> + '_ {
        (from..self.len()).map(move |i| self.arg(i))
    }
}

/// CLIENT REPLY mode.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReplyMode {
    /// Normal.
    On,
    /// Replies suppressed.
    Off,
    /// Suppress the next command's reply only.
    Skip,
}

/// Per-connection RESP state.
pub struct Conn {
    /// Client id.
    pub id: u64,
    /// Protocol version.
    pub proto: Proto,
    /// Authenticated (or no password required).
    pub authed: bool,
    /// Registry entry.
    pub handle: Arc<ClientHandle>,
    /// CLIENT REPLY.
    pub reply_mode: ReplyMode,
    /// CLIENT NO-EVICT.
    pub no_evict: bool,
    /// CLIENT NO-TOUCH.
    pub no_touch: bool,
    /// Close after flushing (QUIT, CLIENT KILL of self).
    pub close: bool,
    /// Wakes this connection when a key it is blocked on is written.
    pub waker: Arc<ConnWaker>,
    /// Set by a blocking command that found nothing to serve: the connection
    /// suspends and re-runs the command when woken.
    pub block: Option<Block>,
    /// Deadline of the blocking command being retried (kept across re-runs).
    pub block_deadline: Option<Option<Instant>>,
    /// Queue position of the blocking command being retried (kept across re-runs).
    pub block_ticket: Option<u64>,
    /// Inside EXEC: blocking commands must not block.
    pub in_exec: bool,
    /// MULTI state: the raw frames queued so far (None outside MULTI).
    pub multi: Option<Vec<Vec<u8>>>,
    /// A command was rejected while queueing: EXEC must abort.
    pub multi_dirty: bool,
    /// WATCHed keys.
    pub watched: Vec<Vec<u8>>,
    /// Set by any write to a WATCHed key.
    pub watch_dirty: Arc<AtomicBool>,
    /// Number of channel + pattern subscriptions (RESP2 subscribed mode when > 0).
    pub subscriptions: usize,
    /// Messages for this subscriber (pub/sub), already encoded.
    pub push_rx: Option<tokio::sync::mpsc::Receiver<bytes::Bytes>>,
    /// This is the replica's link applying its primary's stream.
    pub master_link: bool,
    /// Replication state of this client (REPLCONF, PSYNC, WAIT).
    pub repl: crate::repl::ConnRepl,
    /// Set by a command that finishes in a task (SHOAL.MIGRATE): the
    /// connection waits for its reply before running the next command.
    pub pending: Option<tokio::sync::oneshot::Receiver<AsyncReply>>,
}

/// The reply of a command that finishes asynchronously: integers (one: an
/// integer reply; several: an array of them), or an error line without its `-`.
pub type AsyncReply = Result<Vec<i64>, String>;

impl Conn {
    /// Fresh state for a new RESP connection.
    pub fn new(handle: Arc<ClientHandle>, authed: bool) -> Conn {
        Conn {
            id: handle.id,
            proto: Proto::Resp2,
            authed,
            handle,
            reply_mode: ReplyMode::On,
            no_evict: false,
            no_touch: false,
            close: false,
            waker: Arc::new(ConnWaker::default()),
            block: None,
            block_deadline: None,
            block_ticket: None,
            in_exec: false,
            multi: None,
            multi_dirty: false,
            watched: Vec::new(),
            watch_dirty: Arc::new(AtomicBool::new(false)),
            subscriptions: 0,
            push_rx: None,
            master_link: false,
            repl: crate::repl::ConnRepl::default(),
            pending: None,
        }
    }
}

/// Wakes a blocked connection (registered with the keyspace per key).
#[derive(Default)]
pub struct ConnWaker {
    /// Notified once per wake; a permit is stored if the connection is not waiting yet.
    pub notify: tokio::sync::Notify,
}

impl Wake for ConnWaker {
    fn wake(&self) {
        self.notify.notify_one();
    }
}

/// What a blocked command replies when its timeout passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutReply {
    /// `*-1` (RESP2) / `_` (RESP3): every blocking command's timeout in Redis 7.0.
    NullArray,
    /// `$-1` (RESP2) / `_` (RESP3) (Redis 7.0 answers even BLMOVE's timeout
    /// with a null array; kept for commands that need it).
    NullBulk,
    /// Nothing: the command runs again and replies itself (WAIT checks its
    /// own deadline).
    Rerun,
}

/// A blocking command waiting for keys.
#[derive(Debug)]
pub struct Block {
    /// Keys the client is registered on.
    pub keys: Vec<Vec<u8>>,
    /// When to give up (None = wait forever).
    pub deadline: Option<Instant>,
    /// Reply on timeout.
    pub on_timeout: TimeoutReply,
}

/// Everything a handler may touch.
pub struct Ctx<'a> {
    /// Shared server state.
    pub shared: &'a Shared,
    /// The keyspace.
    pub ks: &'a Keyspace,
    /// This connection.
    pub conn: &'a mut Conn,
    /// Output buffer.
    pub out: &'a mut BytesMut,
    /// Unix ms, sampled once per read batch.
    pub now: u64,
}

impl Ctx<'_> {
    /// A reply writer in this connection's protocol.
    #[inline]
    pub fn w(&mut self) -> ReplyWriter<'_> {
        ReplyWriter::new(self.out, self.conn.proto)
    }

    /// `-msg` and count it.
    pub fn err(&mut self, msg: &str) {
        self.shared
            .counters()
            .total_error_replies
            .fetch_add(1, Ordering::Relaxed);
        stats::count_error();
        self.w().error(msg.as_bytes());
    }

    /// `ERR syntax error`.
    pub fn syntax(&mut self) {
        self.err("ERR syntax error");
    }

    /// `ERR value is not an integer or out of range`.
    pub fn not_int(&mut self) {
        self.err("ERR value is not an integer or out of range");
    }

    /// `WRONGTYPE ...`.
    pub fn wrongtype(&mut self) {
        self.err("WRONGTYPE Operation against a key holding the wrong kind of value");
    }

    /// Runs eviction before a write that may grow memory.
    /// Replies OOM and returns false when the write must be refused.
    pub fn make_room(&mut self) -> bool {
        if self.ks.make_room(self.now).is_ok() {
            true
        } else {
            self.err("OOM command not allowed when used memory > 'maxmemory'.");
            false
        }
    }

    /// Blocking commands: registers this client on `keys` and asks the connection
    /// to suspend; the command is re-run when one of the keys is written, or
    /// `on_timeout` is replied once `timeout` (None = forever) has passed since
    /// the command first blocked. After calling this, re-check the keys: if the
    /// command can be served now, serve it and call [`unblock`](Self::unblock).
    pub fn block_on(
        &mut self,
        keys: &[&[u8]],
        timeout: Option<Duration>,
        on_timeout: TimeoutReply,
    ) {
        static TICKETS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = self.conn.id;
        let ticket = *self
            .conn
            .block_ticket
            .get_or_insert_with(|| TICKETS.fetch_add(1, Ordering::Relaxed));
        for key in keys {
            let w: Arc<dyn Wake> = self.conn.waker.clone();
            self.ks.lock(key).add_waiter(key, id, ticket, w);
        }
        let deadline = *self
            .conn
            .block_deadline
            .get_or_insert_with(|| timeout.map(|t| Instant::now() + t));
        self.conn.block = Some(Block {
            keys: keys.iter().map(|k| k.to_vec()).collect(),
            deadline,
            on_timeout,
        });
    }

    /// Cancels [`block_on`](Self::block_on) (the command was served after all).
    pub fn unblock(&mut self) {
        if let Some(b) = self.conn.block.take() {
            for key in &b.keys {
                self.ks.lock(key).remove_waiter(key, self.conn.id);
            }
        }
    }

    /// Writes an entry's value as a bulk string.
    pub fn bulk_entry(&mut self, e: Option<&Entry>) {
        match e {
            Some(e) => self.w().bulk(e.value()),
            None => self.w().null(),
        }
    }
}

/// The collection of type `T` at `key`: `Ok(None)` when absent, `Err` after
/// replying WRONGTYPE when the key holds another type. `read` counts a keyspace
/// hit/miss and touches the LRU/LFU word (read commands).
pub(crate) fn typed<'g, T: ObjectKind>(
    ctx: &mut Ctx<'_>,
    g: &'g mut ShardGuard<'_>,
    key: &[u8],
    read: bool,
) -> Result<Option<&'g T>, ()> {
    let e = if read {
        let no_touch = ctx.conn.no_touch;
        g.lookup_read(key, ctx.now, no_touch)
    } else {
        g.lookup(key, ctx.now)
    };
    match e {
        None => Ok(None),
        Some(e) => match e.object().and_then(T::of) {
            Some(x) => Ok(Some(x)),
            None => {
                ctx.wrongtype();
                Err(())
            }
        },
    }
}

/// Runs `f` on the collection of type `T` at `key` (the caller checked the type
/// with [`typed`]), creating it when absent; an empty result is never stored
/// (Redis deletes empty collections).
pub(crate) fn upsert<T: ObjectKind, R>(
    g: &mut ShardGuard<'_>,
    key: &[u8],
    now: u64,
    f: impl FnOnce(&mut T) -> R,
) -> R {
    if g.lookup(key, now).is_some() {
        g.with_object_mut(key, now, |o| {
            f(T::of_mut(o).expect("type checked by the caller"))
        })
        .expect("key present")
    } else {
        let mut x = T::default();
        let r = f(&mut x);
        if !x.empty() {
            g.insert_object(key, x.wrap(), None, now);
        }
        r
    }
}

/// Handler signature.
pub type Handler = fn(&mut Ctx<'_>, &Req<'_>);

/// Command flags (COMMAND INFO and dispatch decisions).
pub mod flags {
    /// Modifies the keyspace.
    pub const WRITE: u16 = 1;
    /// Reads the keyspace.
    pub const READONLY: u16 = 2;
    /// May grow memory: refused under OOM.
    pub const DENYOOM: u16 = 4;
    /// O(1) or O(log n).
    pub const FAST: u16 = 8;
    /// Allowed before AUTH.
    pub const NOAUTH: u16 = 16;
    /// Administrative.
    pub const ADMIN: u16 = 32;
    /// Connection-level.
    pub const CONN: u16 = 64;
    /// Runs without the shared gate (EXEC takes it exclusively itself).
    pub const EXCLUSIVE: u16 = 128;
    /// Wraps another command (SHOAL.ASK): `dispatch` hands it over after the
    /// arity and auth checks.
    pub const WRAPPER: u16 = 256;
}

/// A command table row.
pub struct Spec {
    /// Lowercase name.
    pub name: &'static str,
    /// Redis arity: n = exactly n args, -n = at least n.
    pub arity: i32,
    /// [`flags`] bits.
    pub flags: u16,
    /// First key index, last key index (-1 = last arg), step.
    pub keys: (i32, i32, i32),
    /// The handler.
    pub handler: Handler,
    /// Index into the per-thread stats arrays.
    pub id: usize,
}

/// Builds command table rows: `name, arity, flags, (first, last, step), handler;`.
/// Each command module lists its rows with this macro in a `table()` function.
macro_rules! rows {
    ($( $name:literal, $arity:expr, $flags:expr, $keys:expr, $h:path; )*) => {
        vec![$( $crate::exec::resp::Spec { name: $name, arity: $arity, flags: $flags, keys: $keys, handler: $h, id: 0 } ),*]
    };
}
pub(crate) use rows;

/// Every command this server implements. GET and SET must stay rows 0 and 1
/// (the lookup fast path relies on it).
pub static COMMANDS: LazyLock<Vec<Spec>> = LazyLock::new(|| {
    let mut v = core_table();
    v.extend(hashes::table());
    v.extend(lists::table());
    v.extend(sets::table());
    v.extend(zsets::table());
    v.extend(sort::table());
    v.extend(tx::table());
    v.extend(pubsub::table());
    v.extend(bits::table());
    v.extend(repl::table());
    v.extend(reshard::table());
    for (i, s) in v.iter_mut().enumerate() {
        s.id = i;
    }
    v
});

pub(crate) use flags::*;
/// No keys.
pub(crate) const NK: (i32, i32, i32) = (0, 0, 0);
/// One key at argument 1.
pub(crate) const K1: (i32, i32, i32) = (1, 1, 1);
/// Every argument from 1 is a key.
pub(crate) const KALL: (i32, i32, i32) = (1, -1, 1);
/// Keys at arguments 1 and 2.
pub(crate) const K12: (i32, i32, i32) = (1, 2, 1);

fn core_table() -> Vec<Spec> {
    rows! {
    "get", 2, READONLY | FAST, K1, strings::get;
    "set", -3, WRITE | DENYOOM, K1, strings::set;
    "setnx", 3, WRITE | DENYOOM | FAST, K1, strings::setnx;
    "setex", 4, WRITE | DENYOOM, K1, strings::setex;
    "psetex", 4, WRITE | DENYOOM, K1, strings::psetex;
    "mget", -2, READONLY | FAST, KALL, strings::mget;
    "mset", -3, WRITE | DENYOOM, (1, -1, 2), strings::mset;
    "msetnx", -3, WRITE | DENYOOM, (1, -1, 2), strings::msetnx;
    "getset", 3, WRITE | DENYOOM | FAST, K1, strings::getset;
    "getdel", 2, WRITE | FAST, K1, strings::getdel;
    "getex", -2, WRITE | FAST, K1, strings::getex;
    "append", 3, WRITE | DENYOOM | FAST, K1, strings::append;
    "strlen", 2, READONLY | FAST, K1, strings::strlen;
    "incr", 2, WRITE | DENYOOM | FAST, K1, strings::incr;
    "decr", 2, WRITE | DENYOOM | FAST, K1, strings::decr;
    "incrby", 3, WRITE | DENYOOM | FAST, K1, strings::incrby;
    "decrby", 3, WRITE | DENYOOM | FAST, K1, strings::decrby;
    "incrbyfloat", 3, WRITE | DENYOOM | FAST, K1, strings::incrbyfloat;
    "getrange", 4, READONLY, K1, strings::getrange;
    "substr", 4, READONLY, K1, strings::getrange;
    "setrange", 4, WRITE | DENYOOM, K1, strings::setrange;
    "lcs", -3, READONLY, K12, strings::lcs;
    "del", -2, WRITE, KALL, keys::del;
    "unlink", -2, WRITE | FAST, KALL, keys::del;
    "exists", -2, READONLY | FAST, KALL, keys::exists;
    "expire", -3, WRITE | FAST, K1, keys::expire;
    "pexpire", -3, WRITE | FAST, K1, keys::pexpire;
    "expireat", -3, WRITE | FAST, K1, keys::expireat;
    "pexpireat", -3, WRITE | FAST, K1, keys::pexpireat;
    "ttl", 2, READONLY | FAST, K1, keys::ttl;
    "pttl", 2, READONLY | FAST, K1, keys::pttl;
    "expiretime", 2, READONLY | FAST, K1, keys::expiretime;
    "pexpiretime", 2, READONLY | FAST, K1, keys::pexpiretime;
    "persist", 2, WRITE | FAST, K1, keys::persist;
    "type", 2, READONLY | FAST, K1, keys::type_;
    "keys", 2, READONLY, NK, keys::keys;
    "scan", -2, READONLY, NK, keys::scan;
    "rename", 3, WRITE, K12, keys::rename;
    "renamenx", 3, WRITE | FAST, K12, keys::renamenx;
    "randomkey", 1, READONLY, NK, keys::randomkey;
    "touch", -2, READONLY | FAST, KALL, keys::touch;
    "copy", -3, WRITE | DENYOOM, K12, keys::copy;
    "object", -2, READONLY, (2, 2, 1), keys::object;
    "dump", 2, READONLY, K1, keys::dump;
    "restore", -4, WRITE | DENYOOM, K1, keys::restore;
    "ping", -1, FAST, NK, conn::ping;
    "echo", 2, FAST, NK, conn::echo;
    "quit", -1, NOAUTH | FAST | CONN, NK, conn::quit;
    "hello", -1, NOAUTH | FAST | CONN, NK, conn::hello;
    "auth", -2, NOAUTH | FAST | CONN, NK, conn::auth;
    "select", 2, FAST | CONN, NK, conn::select;
    "reset", 1, NOAUTH | FAST | CONN, NK, conn::reset;
    "client", -2, CONN, NK, conn::client;
    "command", -1, CONN, NK, admin::command;
    "config", -2, ADMIN, NK, admin::config;
    "info", -1, 0, NK, admin::info;
    "dbsize", 1, READONLY | FAST, NK, admin::dbsize;
    "flushdb", -1, WRITE, NK, admin::flushdb;
    "flushall", -1, WRITE, NK, admin::flushall;
    "time", 1, FAST, NK, admin::time;
    }
}

/// Number of commands (stats arrays are this long).
pub fn command_count() -> usize {
    COMMANDS.len()
}

type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::FixedState>;

static INDEX: LazyLock<FastMap<&'static [u8], usize>> = LazyLock::new(|| {
    COMMANDS
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_bytes(), i))
        .collect()
});

/// Looks a command up by name, case-insensitively, without allocating.
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    // The two commands that dominate cache traffic skip the hash (table rows 0 and 1).
    if name.len() == 3 {
        if name.eq_ignore_ascii_case(b"get") {
            return Some(&COMMANDS[0]);
        }
        if name.eq_ignore_ascii_case(b"set") {
            return Some(&COMMANDS[1]);
        }
    }
    let mut lower = [0u8; 32];
    if name.len() > lower.len() {
        return None;
    }
    for (d, s) in lower.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    INDEX.get(&lower[..name.len()]).map(|&i| &COMMANDS[i])
}

/// Redis's unknown-command error text.
fn unknown_command(req: &Req<'_>) -> String {
    let mut args = String::new();
    for i in 1..req.len() {
        if args.len() >= 128 {
            break;
        }
        let a = String::from_utf8_lossy(req.arg(i));
        let room = 128 - args.len();
        let a: String = a.chars().take(room).collect();
        args.push_str(&format!("'{a}' "));
    }
    let name: String = String::from_utf8_lossy(req.arg(0))
        .chars()
        .take(128)
        .collect();
    sanitize(format!(
        "ERR unknown command '{name}', with args beginning with: {args}"
    ))
}

/// Error replies must be one line: Redis replaces CR/LF with spaces.
pub fn sanitize(s: String) -> String {
    if s.contains(['\r', '\n']) {
        s.replace(['\r', '\n'], " ")
    } else {
        s
    }
}

/// `ERR wrong number of arguments for '<name>' command`.
pub fn arity_error(ctx: &mut Ctx<'_>, name: &str) {
    ctx.err(&format!(
        "ERR wrong number of arguments for '{name}' command"
    ));
}

/// Commands allowed in RESP2 subscribed mode.
const SUBSCRIBED_OK: &[&str] = &[
    "ping",
    "subscribe",
    "ssubscribe",
    "unsubscribe",
    "sunsubscribe",
    "psubscribe",
    "punsubscribe",
    "quit",
    "reset",
];

/// Commands executed immediately even inside MULTI.
const NOT_QUEUED: &[&str] = &["exec", "discard", "multi", "watch", "quit", "reset"];

/// Rejects a command with an error; inside MULTI that also dooms the transaction
/// (EXEC will reply EXECABORT), as in Redis' `rejectCommand`.
fn reject(ctx: &mut Ctx<'_>, msg: &str) {
    reject_cmd(ctx, None, msg);
}

/// [`reject`] for a known command: a rejected EXEC aborts the transaction with
/// `EXECABORT Transaction discarded because of: ...` as in Redis.
fn reject_cmd(ctx: &mut Ctx<'_>, spec: Option<&Spec>, msg: &str) {
    // Redis' rejectCommand: EXEC is always answered through execCommandAbort,
    // in or out of MULTI.
    if spec.is_some_and(|s| s.name == "exec") {
        tx::exec_abort(ctx, msg);
        return;
    }
    if ctx.conn.multi.is_some() {
        ctx.conn.multi_dirty = true;
    }
    ctx.err(msg);
}

/// Executes one request and writes its reply. Checks run in Redis'
/// `processCommand` order: unknown command, arity, auth, OOM, subscribed
/// mode, then MULTI queueing.
pub fn dispatch(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let Some(spec) = lookup(req.arg(0)) else {
        let msg = unknown_command(req);
        reject(ctx, &msg);
        return;
    };
    let n = req.len() as i32;
    if (spec.arity > 0 && n != spec.arity) || (spec.arity < 0 && n < -spec.arity) {
        let msg = format!("ERR wrong number of arguments for '{}' command", spec.name);
        reject_cmd(ctx, Some(spec), &msg);
        return;
    }
    if !ctx.conn.authed && spec.flags & NOAUTH == 0 {
        reject_cmd(ctx, Some(spec), "NOAUTH Authentication required.");
        return;
    }
    if spec.flags & WRAPPER != 0 {
        reshard::ask(ctx, req, spec);
        stats::record(spec.id);
        return;
    }
    // Replication: refusals (read-only replica, stale link, min-replicas), and
    // the repl lock that orders this write into the stream (docs/replication.md).
    let mut repl_scope = None;
    if !ctx.conn.master_link && !crate::repl::idle(ctx.shared) {
        if let Some(msg) = repl::refusal(ctx, spec) {
            reject_cmd(ctx, Some(spec), msg);
            return;
        }
        if spec.flags & WRITE != 0 && ctx.conn.multi.is_none() {
            repl_scope = crate::repl::begin_write(ctx.shared);
        }
    }
    if spec.name == "client" && repl::client_kill(ctx, req) {
        return;
    }
    if spec.flags & DENYOOM != 0
        && !ctx.conn.no_evict
        && ctx.ks.over_limit()
        && ctx.ks.make_room(ctx.now).is_err()
    {
        reject_cmd(
            ctx,
            Some(spec),
            "OOM command not allowed when used memory > 'maxmemory'.",
        );
        return;
    }
    if ctx.conn.subscriptions > 0
        && ctx.conn.proto == Proto::Resp2
        && !SUBSCRIBED_OK.contains(&spec.name)
    {
        let msg = format!(
            "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
            spec.name
        );
        reject_cmd(ctx, Some(spec), &msg);
        return;
    }
    if let Some(queue) = ctx.conn.multi.as_mut() {
        if !NOT_QUEUED.contains(&spec.name) {
            queue.push(req.raw().into_owned());
            ctx.w().simple(b"QUEUED");
            return;
        }
    }
    let mark = ctx.out.len();
    if spec.flags & EXCLUSIVE != 0 || ctx.conn.in_exec {
        // EXEC takes every worker's gate itself, and its queued commands run under it.
        (spec.handler)(ctx, req);
    } else {
        let _gate = ctx.shared.gate_read();
        (spec.handler)(ctx, req);
    }
    if let Some(scope) = repl_scope {
        repl::propagate(ctx, req, spec, scope, mark);
    }
    stats::record(spec.id);
}

/// Parses a Redis integer argument (strict: no spaces, no `+`, fits i64).
pub fn parse_i64(b: &[u8]) -> Option<i64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    let (neg, digits) = match b[0] {
        b'-' => (true, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || (digits[0] == b'0' && digits.len() > 1) {
        return None;
    }
    if neg && digits == b"0" {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        let d = (c - b'0') as i64;
        v = if neg {
            v.checked_mul(10)?.checked_sub(d)?
        } else {
            v.checked_mul(10)?.checked_add(d)?
        };
    }
    Some(v)
}

/// Case-insensitive ASCII comparison with a lowercase literal.
#[inline]
pub fn eq(a: &[u8], lower: &str) -> bool {
    a.eq_ignore_ascii_case(lower.as_bytes())
}

/// Releases everything a RESP connection holds in shared structures (WATCHes,
/// blocked-key registrations, pub/sub subscriptions). Called once on disconnect.
pub fn on_disconnect(shared: &Shared, conn: &mut Conn) {
    if let Some(b) = conn.block.take() {
        for key in &b.keys {
            let mut g = shared.keyspace.lock(key);
            g.remove_waiter(key, conn.id);
            // A wake-up may have been meant for us: pass it on.
            g.wake_one(key);
        }
    }
    tx::on_disconnect(shared, conn);
    pubsub::on_disconnect(shared, conn);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_i64_is_strict() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"+1",
            b" 1",
            b"1 ",
            b"01",
            b"-0",
            b"9223372036854775808",
            b"1a",
            b"-",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn lookup_is_case_insensitive_and_complete() {
        assert_eq!(lookup(b"GeT").unwrap().name, "get");
        assert!(lookup(b"nosuchcommand").is_none());
        // The fast path in `lookup` relies on these two rows.
        assert_eq!((COMMANDS[0].name, COMMANDS[1].name), ("get", "set"));
        assert_eq!(lookup(b"SET").unwrap().name, "set");
        assert!(lookup(&[b'a'; 64]).is_none());
        for s in COMMANDS.iter() {
            assert_eq!(lookup(s.name.as_bytes()).unwrap().name, s.name);
        }
    }
}
