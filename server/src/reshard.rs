//! Live resharding, server side (docs/resharding-server.md).
//!
//! While shoal-proxy moves keys from an old owner (src) to a new one (dst), a
//! moving key lives in exactly one of the two places:
//!
//! ```text
//!  proxy ── SHOAL.ASK <cmd> / "shoal.ask <mc line>" ──► src: [gate read]
//!            in flight? ─► TRYAGAIN    all keys here? ─► run it    none? ─► SHOALMOVED
//!  migrator ── SHOAL.MIGRATE dst keys ──► src: [gate write] mark in flight + serialize
//!            ─► dst: SHOAL.IMPORT records, SHOAL.WAITALL (dst's replicas have them)
//!            ─► src: DEL through the write path, wait for src's replicas, unmark
//! ```
//!
//! * **The gate.** One `RwLock` per worker thread. An asked command holds its
//!   worker's gate for reading around the in-flight check, the existence check
//!   and its own execution; the migrator takes every gate for writing while it
//!   marks keys in flight and serializes them. So an asked command either ran
//!   completely before the snapshot (its effect travels to dst) or sees the key
//!   in flight and is told to try again. Plain commands never take this gate.
//! * **In flight.** From serialization until the DEL at src is done (or the
//!   migration failed), a key answers TRYAGAIN to asked commands; after that it
//!   is either gone from src (SHOALMOVED: the proxy goes to dst, which has it)
//!   or, on failure, still at src (served there).
//! * **Marks are released by a guard** ([`Marks`]): the migration runs as its
//!   own task, bounded by the timeout at every step, whatever happens to the
//!   connection that asked for it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use crossbeam::utils::CachePadded;
use parking_lot::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use shoal_client::memcache::{MetaCmd, Request};
use shoal_keyspace::Keyspace;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::exec::memcache::{Flow, McConn};
use crate::exec::resp::ConnWaker;
use crate::shared::{now_ms, worker_index, Shared};

/// Most keys one SHOAL.MIGRATE may name.
pub const MAX_KEYS: usize = 10_000;
/// Most serialized bytes one SHOAL.MIGRATE may send.
pub const MAX_BATCH_BYTES: usize = 512 * 1024 * 1024;
/// RESP error: none of the keys is here (the proxy matches the prefix).
pub const MOVED_ERR: &str = "SHOALMOVED";
/// RESP error: a key is being migrated right now.
pub const MIGRATING_ERR: &str = "TRYAGAIN shoal: key is being migrated";
/// RESP error: some keys are here, some are not.
pub const SPLIT_ERR: &str = "TRYAGAIN shoal: keys are split across shards while resharding";
/// The memcache line prefix of an asked request.
pub const MC_ASK_PREFIX: &[u8] = b"shoal.ask ";
/// memcache reply: none of the keys is here.
pub const MC_MOVED: &[u8] = b"SHOAL_MOVED\r\n";
/// memcache reply: a key is being migrated, or the keys are split.
pub const MC_TRYAGAIN: &[u8] = b"SHOAL_TRYAGAIN\r\n";
/// Idle connections kept per target.
const CACHED_CONNS: usize = 4;

type KeySet = HashSet<Vec<u8>, foldhash::fast::RandomState>;
/// A target: host, port, AUTH password.
type DstKey = (String, u16, Option<Vec<u8>>);

/// Where the keys of an asked request are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every key exists here (or the command has no keys): run it.
    Here,
    /// No key exists here.
    Moved,
    /// Some keys exist here, some do not.
    Split,
    /// A key is in a migration batch right now.
    Migrating,
}

/// Resharding state of one server.
pub struct Reshard {
    /// One gate per worker thread (see the module docs).
    gates: Box<[CachePadded<RwLock<()>>]>,
    /// Keys in flight. Inserted only with every gate held for writing.
    inflight: RwLock<KeySet>,
    /// `inflight.len()`, read without the lock (0 = nothing to look up).
    inflight_n: AtomicUsize,
    /// Idle connections to migration targets.
    conns: Mutex<HashMap<DstKey, Vec<DstConn>>>,
}

impl Reshard {
    /// State for a server with `threads` workers.
    pub fn new(threads: usize) -> Reshard {
        Reshard {
            gates: (0..threads.max(1))
                .map(|_| CachePadded::new(RwLock::new(())))
                .collect(),
            inflight: RwLock::new(KeySet::default()),
            inflight_n: AtomicUsize::new(0),
            conns: Mutex::new(HashMap::new()),
        }
    }

    /// This worker's gate, for reading (an asked command).
    #[inline]
    pub fn gate(&self) -> RwLockReadGuard<'_, ()> {
        self.gates[worker_index() % self.gates.len()].read()
    }

    /// Every gate, for writing (the migrator's snapshot).
    fn gate_all(&self) -> Vec<RwLockWriteGuard<'_, ()>> {
        self.gates.iter().map(|g| g.write()).collect()
    }

    /// Number of keys in flight.
    pub fn in_flight(&self) -> usize {
        self.inflight_n.load(Ordering::Acquire)
    }

    /// Whether `key` is in flight.
    pub fn is_in_flight(&self, key: &[u8]) -> bool {
        self.in_flight() > 0 && self.inflight.read().contains(key)
    }

    /// Classifies the keys of an asked request. The caller holds [`gate`](Self::gate).
    pub fn verdict<'k>(
        &self,
        ks: &Keyspace,
        now: u64,
        keys: impl IntoIterator<Item = &'k [u8]>,
    ) -> Verdict {
        let flying = (self.in_flight() > 0).then(|| self.inflight.read());
        let (mut here, mut gone) = (false, false);
        for key in keys {
            if flying.as_ref().is_some_and(|s| s.contains(key)) {
                return Verdict::Migrating;
            }
            // `lookup`: no stats, no LRU touch; an expired key does not exist.
            if ks.lock(key).lookup(key, now).is_some() {
                here = true;
            } else {
                gone = true;
            }
        }
        match (here, gone) {
            (_, false) => Verdict::Here,
            (false, true) => Verdict::Moved,
            (true, true) => Verdict::Split,
        }
    }

    /// [`verdict`](Self::verdict) for a memcache request.
    pub fn mc_verdict(&self, ks: &Keyspace, now: u64, req: &Request<'_>) -> Verdict {
        match req {
            Request::Get { keys, .. } | Request::Gat { keys, .. } => {
                self.verdict(ks, now, keys.iter())
            }
            Request::Store { key, .. }
            | Request::Incr { key, .. }
            | Request::Decr { key, .. }
            | Request::Delete { key, .. }
            | Request::Touch { key, .. } => self.verdict(ks, now, [*key]),
            Request::Meta(m) if m.cmd != MetaCmd::Noop => self.verdict(ks, now, [&m.key[..]]),
            _ => Verdict::Here,
        }
    }

    fn take_conn(&self, key: &DstKey) -> Option<DstConn> {
        let mut conns = self.conns.lock();
        let list = conns.get_mut(key)?;
        while let Some(mut c) = list.pop() {
            if c.alive() {
                return Some(c);
            }
        }
        None
    }

    fn put_conn(&self, key: DstKey, conn: DstConn) {
        let mut conns = self.conns.lock();
        let list = conns.entry(key).or_default();
        if list.len() < CACHED_CONNS {
            list.push(conn);
        }
    }
}

/// Runs a memcache request that arrived as `shoal.ask <request>`: executed
/// when its keys are here, else `SHOAL_MOVED` / `SHOAL_TRYAGAIN` (also for
/// `noreply` and quiet meta requests). The data block was consumed by the codec.
pub fn mc_ask(
    shared: &Arc<Shared>,
    conn: &mut McConn,
    req: Request<'_>,
    out: &mut BytesMut,
    now: u64,
) -> Flow {
    let _gate = shared.reshard.gate();
    match shared.reshard.mc_verdict(&shared.keyspace, now, &req) {
        Verdict::Here => {
            let _g = shared.gate_read();
            crate::repl::mc_execute(shared, conn, req, out, now)
        }
        Verdict::Moved => {
            out.extend_from_slice(MC_MOVED);
            Flow::Continue
        }
        Verdict::Split | Verdict::Migrating => {
            out.extend_from_slice(MC_TRYAGAIN);
            Flow::Continue
        }
    }
}

/// One SHOAL.MIGRATE call.
#[derive(Debug, Clone)]
pub struct MigrateJob {
    /// Target host.
    pub host: String,
    /// Target port (RESP or memcache: both speak RESP).
    pub port: u16,
    /// Bound of every step (connect, each reply, the replica waits).
    pub timeout: Duration,
    /// AUTH password for the target.
    pub auth: Option<Vec<u8>>,
    /// Keys to move.
    pub keys: Vec<Vec<u8>>,
    /// Instead of `keys`: find the keys by scanning (the `SCAN` form).
    pub scan: Option<ScanJob>,
}

#[derive(Debug, Clone)]
/// The `SCAN` form of SHOAL.MIGRATE: scan a slice of the keyspace from a cursor and move
/// the keys whose ring hash is in `ranges`, up to `limit` of them.
pub struct ScanJob {
    /// Keyspace cursor (0: the slice's start).
    pub cursor: u64,
    /// First keyspace shard of the slice.
    pub first_shard: usize,
    /// End (exclusive) of the slice's keyspace shards.
    pub end_shard: usize,
    /// Most keys to move in one call.
    pub limit: usize,
    /// Ring hash of the keys (as the proxy places them).
    pub hash: shoal_client::ring::HashKind,
    /// Hash tag characters, if the pool has a hash tag.
    pub tag: Option<[u8; 2]>,
    /// Inclusive key-hash ranges, sorted and disjoint.
    pub ranges: Vec<(u32, u32)>,
}

impl ScanJob {
    /// Whether `key` is one to move.
    #[inline]
    pub fn wants(&self, key: &[u8]) -> bool {
        let h = if key.is_empty() {
            0
        } else {
            self.hash.hash(shoal_client::ring::hash_tag(key, self.tag))
        };
        let at = self.ranges.partition_point(|&(lo, _)| lo <= h);
        at > 0 && h <= self.ranges[at - 1].1
    }
}

/// Buckets one scanning step visits with every gate held (bounds the pause of other
/// clients); a call visits at most [`SCAN_BUDGET`] buckets.
const SCAN_STEP: usize = 256;
const SCAN_BUDGET: usize = 64 * 1024;

/// Keys this migration marked in flight; unmarked when dropped.
struct Marks {
    shared: Arc<Shared>,
    keys: Vec<Vec<u8>>,
}

impl Drop for Marks {
    fn drop(&mut self) {
        if self.keys.is_empty() {
            return;
        }
        let r = &self.shared.reshard;
        let mut set = r.inflight.write();
        for k in &self.keys {
            set.remove(k.as_slice());
        }
        r.inflight_n.store(set.len(), Ordering::Release);
    }
}

/// Appends one RESP bulk string.
fn bulk(out: &mut Vec<u8>, b: &[u8]) {
    out.push(b'$');
    out.extend_from_slice(itoa::Buffer::new().format(b.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
}

/// Appends one SHOAL.IMPORT record for entry `e` of `key`: key, `crate::dump` payload,
/// absolute expiry (unix ms, 0: none), memcache flags, CAS id.
fn push_record(body: &mut Vec<u8>, key: &[u8], e: &shoal_keyspace::Entry) {
    let mut n = itoa::Buffer::new();
    bulk(body, key);
    bulk(body, &crate::dump::encode(e));
    bulk(body, n.format(e.expire_at().unwrap_or(0)).as_bytes());
    bulk(body, n.format(e.flags()).as_bytes());
    bulk(body, n.format(e.cas()).as_bytes());
}

/// Step a: under every gate, marks the keys that exist and are not in flight
/// yet and serializes them as SHOAL.IMPORT records (key payload pxat flags cas,
/// like a full-sync snapshot's SHOAL.RESTORE records).
fn collect(shared: &Arc<Shared>, keys: Vec<Vec<u8>>) -> Result<(Marks, Vec<u8>), String> {
    let r = &shared.reshard;
    let mut marks = Marks {
        shared: shared.clone(),
        keys: Vec::with_capacity(keys.len()),
    };
    let mut body = Vec::new();
    let all = r.gate_all();
    let mut set = r.inflight.write();
    let now = now_ms();
    let mut too_big = false;
    for key in keys {
        if set.contains(key.as_slice()) {
            continue;
        }
        {
            let mut g = shared.keyspace.lock(&key);
            let Some(e) = g.lookup(&key, now) else {
                continue;
            };
            push_record(&mut body, &key, e);
        }
        set.insert(key.clone());
        marks.keys.push(key);
        if body.len() > MAX_BATCH_BYTES {
            too_big = true;
            break;
        }
    }
    r.inflight_n.store(set.len(), Ordering::Release);
    drop(set);
    drop(all);
    if too_big {
        // `marks` unmarks on the way out.
        return Err(format!(
            "ERR shoal migrate: the keys serialize to more than {} MB; migrate fewer keys per call",
            MAX_BATCH_BYTES >> 20
        ));
    }
    Ok((marks, body))
}

/// Step a, `SCAN` form: like [`collect`], for the keys a scan from `job.cursor` finds,
/// in steps of [`SCAN_STEP`] buckets (each under every gate) until `job.limit` keys are
/// marked, the slice ends or [`SCAN_BUDGET`] buckets were visited. Returns the marks, the
/// records, the next cursor (0: the slice is done) and how many keys were visited.
fn collect_scan(shared: &Arc<Shared>, job: &ScanJob) -> (Marks, Vec<u8>, u64, u64) {
    let r = &shared.reshard;
    let mut marks = Marks {
        shared: shared.clone(),
        keys: Vec::new(),
    };
    let mut body = Vec::new();
    let mut cursor = if job.cursor == 0 {
        shoal_keyspace::scan_cursor_at_shard(job.first_shard)
    } else {
        job.cursor
    };
    let (mut visited, mut buckets) = (0u64, 0usize);
    loop {
        let all = r.gate_all();
        let mut set = r.inflight.write();
        let now = now_ms();
        cursor = shared
            .keyspace
            .scan_shards(cursor, job.end_shard, SCAN_STEP, now, |e| {
                visited += 1;
                let key = e.key();
                if !job.wants(key) || set.contains(key) {
                    return;
                }
                push_record(&mut body, key, e);
                set.insert(key.to_vec());
                marks.keys.push(key.to_vec());
            });
        r.inflight_n.store(set.len(), Ordering::Release);
        drop(set);
        drop(all);
        buckets += SCAN_STEP;
        if cursor == 0
            || marks.keys.len() >= job.limit
            || buckets >= SCAN_BUDGET
            || body.len() >= MAX_BATCH_BYTES / 4
        {
            return (marks, body, cursor, visited);
        }
    }
}

/// Step d: deletes the moved keys through the write path (replicas get a DEL);
/// returns the replication offset to wait for.
fn delete_local(shared: &Shared, keys: &[Vec<u8>]) -> Result<u64, String> {
    // Like any command: EXEC's exclusivity holds, and the repl lock orders the DEL.
    let _g = shared.gate_read();
    let scope = crate::repl::begin_write(shared);
    if shared.repl.is_replica() {
        return Err("ERR shoal migrate: this server became a replica during the migration; the keys stay here".into());
    }
    let now = now_ms();
    for k in keys {
        shared.keyspace.lock(k).remove(k, now);
    }
    if let Some(scope) = scope {
        let mut args: Vec<&[u8]> = Vec::with_capacity(keys.len() + 1);
        args.push(b"DEL");
        args.extend(keys.iter().map(Vec::as_slice));
        crate::repl::end_write(shared, scope, now, Some(&crate::repl::frame(&args)));
    }
    Ok(shared.repl.offset())
}

/// Waits until every replica connected now acknowledged `offset`, or `deadline`.
async fn wait_replicas(shared: &Shared, offset: u64, deadline: Instant) {
    let repl = &shared.repl;
    let waker = Arc::new(ConnWaker::default());
    loop {
        let n = repl.replicas.lock().len();
        if n == 0 || repl.acked(offset) >= n || Instant::now() >= deadline {
            return;
        }
        repl.request_acks();
        repl.add_waiter(waker.clone());
        let step = (Instant::now() + Duration::from_millis(50)).min(deadline);
        let _ = tokio::time::timeout_at(step, waker.notify.notified()).await;
    }
}

/// Time allowed for sending and applying `bytes` bytes: the timeout plus one
/// millisecond per 64 KiB (a floor of 64 MB/s).
fn budget(timeout: Duration, bytes: usize) -> Duration {
    timeout + Duration::from_millis((bytes >> 16) as u64)
}

/// Why talking to the target failed.
struct Failure {
    reason: String,
    /// SHOAL.IMPORT may have been applied (its reply was not seen).
    maybe_applied: bool,
}

/// Step c: SHOAL.IMPORT on a (cached) connection, then SHOAL.WAITALL.
async fn send_import(
    shared: &Shared,
    job: &MigrateJob,
    header: &[u8],
    body: &[u8],
) -> Result<(), Failure> {
    let key: DstKey = (job.host.clone(), job.port, job.auth.clone());
    let connect = |maybe_applied: bool| async move {
        let deadline = Instant::now() + job.timeout;
        DstConn::connect(&job.host, job.port, job.auth.as_deref(), deadline)
            .await
            .map_err(|reason| Failure {
                reason,
                maybe_applied,
            })
    };
    let mut maybe_applied = false;
    let cached = shared.reshard.take_conn(&key);
    let mut retry = cached.is_some();
    let mut conn = match cached {
        Some(c) => c,
        None => connect(false).await?,
    };
    loop {
        let deadline = Instant::now() + budget(job.timeout, body.len());
        let sent = conn.send(&[header, body], deadline).await;
        let r = match sent {
            Ok(()) => {
                maybe_applied = true;
                conn.reply(deadline).await
            }
            // A frame never completed is never applied.
            Err(e) => Err(e),
        };
        match r {
            Ok(Reply::Simple(_)) => break,
            Ok(other) => {
                return Err(Failure {
                    reason: format!("SHOAL.IMPORT: {}", other.describe()),
                    maybe_applied,
                })
            }
            // A cached connection may have gone stale: SHOAL.IMPORT is idempotent
            // (the keys are in flight, nothing else writes them), so send it again
            // once on a fresh connection.
            Err(_) if retry => {
                retry = false;
                conn = connect(maybe_applied).await?;
            }
            Err(reason) => {
                return Err(Failure {
                    reason,
                    maybe_applied,
                })
            }
        }
    }
    let mut t = itoa::Buffer::new();
    let ms = t.format(job.timeout.as_millis() as u64).as_bytes();
    let deadline = Instant::now() + job.timeout * 2 + Duration::from_secs(1);
    match conn.call(&[b"SHOAL.WAITALL", ms], deadline).await {
        Ok(Reply::Int(_)) => {}
        Ok(other) => {
            return Err(Failure {
                reason: format!("SHOAL.WAITALL: {}", other.describe()),
                maybe_applied: true,
            })
        }
        Err(reason) => {
            return Err(Failure {
                reason,
                maybe_applied: true,
            })
        }
    }
    shared.reshard.put_conn(key, conn);
    Ok(())
}

/// Step e: best effort, removes what SHOAL.IMPORT may have stored at the target.
async fn rollback(job: &MigrateJob, keys: &[Vec<u8>]) {
    let deadline = Instant::now() + job.timeout;
    let r = async {
        let mut c = DstConn::connect(&job.host, job.port, job.auth.as_deref(), deadline).await?;
        let mut args: Vec<&[u8]> = Vec::with_capacity(keys.len() + 1);
        args.push(b"DEL");
        args.extend(keys.iter().map(Vec::as_slice));
        c.call(&args, deadline).await
    }
    .await;
    match r {
        Ok(Reply::Int(_)) => {}
        Ok(other) => tracing::warn!(
            "shoal migrate: rollback DEL at {}:{} refused ({}); {} keys may also exist there",
            job.host,
            job.port,
            other.describe(),
            keys.len()
        ),
        Err(e) => tracing::warn!(
            "shoal migrate: rollback DEL at {}:{} failed ({e}); {} keys may also exist there",
            job.host,
            job.port,
            keys.len()
        ),
    }
}

/// SHOAL.MIGRATE: moves the keys of `job` that exist here to the target.
/// Returns `[keys moved, bytes of their serialized records]`, or an error line
/// (without its `-`).
pub async fn migrate(shared: Arc<Shared>, mut job: MigrateJob) -> Result<Vec<i64>, String> {
    let internal = |_| "ERR shoal migrate: internal error".to_string();
    let keys = std::mem::take(&mut job.keys);
    let sh = shared.clone();
    let scan = job.scan.take();
    // The SCAN form adds the next cursor and the keys visited to the reply.
    let (marks, body, tail) = tokio::task::spawn_blocking(move || match scan {
        None => collect(&sh, keys).map(|(m, b)| (m, b, Vec::new())),
        Some(j) => {
            let (m, b, next, visited) = collect_scan(&sh, &j);
            Ok((m, b, vec![next as i64, visited as i64]))
        }
    })
    .await
    .map_err(internal)??;
    let n = marks.keys.len();
    let reply = |n: usize, bytes: usize| {
        let mut v = vec![n as i64, bytes as i64];
        v.extend_from_slice(&tail);
        v
    };
    if n == 0 {
        return Ok(reply(0, 0));
    }
    let bytes = body.len() as i64;
    let header = format!("*{}\r\n$12\r\nSHOAL.IMPORT\r\n", 1 + 5 * n);
    let sent = send_import(&shared, &job, header.as_bytes(), &body).await;
    drop(body);
    if let Err(f) = sent {
        if f.maybe_applied {
            rollback(&job, &marks.keys).await;
        }
        return Err(format!("IOERR shoal migrate: {}", f.reason));
    }
    let sh = shared.clone();
    let (marks, deleted) = tokio::task::spawn_blocking(move || {
        let r = delete_local(&sh, &marks.keys);
        (marks, r)
    })
    .await
    .map_err(internal)?;
    let offset = match deleted {
        Ok(o) => o,
        Err(e) => {
            rollback(&job, &marks.keys).await;
            return Err(e);
        }
    };
    wait_replicas(&shared, offset, Instant::now() + job.timeout).await;
    drop(marks);
    Ok(reply(n, bytes as usize))
}

/// A reply line from the target.
enum Reply {
    Simple(String),
    Int(i64),
    Error(String),
}

impl Reply {
    fn describe(&self) -> String {
        match self {
            Reply::Simple(s) => format!("unexpected reply +{s}"),
            Reply::Int(n) => format!("unexpected reply :{n}"),
            Reply::Error(e) => format!("target replied -{e}"),
        }
    }
}

/// A RESP connection to a migration target.
struct DstConn {
    stream: TcpStream,
    buf: BytesMut,
}

impl DstConn {
    async fn connect(
        host: &str,
        port: u16,
        auth: Option<&[u8]>,
        deadline: Instant,
    ) -> Result<DstConn, String> {
        let stream = tokio::time::timeout_at(deadline, TcpStream::connect((host, port)))
            .await
            .map_err(|_| format!("connecting to {host}:{port} timed out"))?
            .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let mut c = DstConn {
            stream,
            buf: BytesMut::with_capacity(4096),
        };
        if let Some(pw) = auth {
            match c.call(&[b"AUTH", pw], deadline).await? {
                Reply::Simple(_) => {}
                other => return Err(format!("AUTH: {}", other.describe())),
            }
        }
        Ok(c)
    }

    /// Whether the idle connection still looks usable (not closed, no stray bytes).
    fn alive(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    async fn send(&mut self, parts: &[&[u8]], deadline: Instant) -> Result<(), String> {
        for p in parts {
            tokio::time::timeout_at(deadline, self.stream.write_all(p))
                .await
                .map_err(|_| "timed out sending to the target".to_string())?
                .map_err(|e| format!("sending to the target: {e}"))?;
        }
        Ok(())
    }

    async fn call(&mut self, args: &[&[u8]], deadline: Instant) -> Result<Reply, String> {
        self.send(&[&crate::repl::frame(args)], deadline).await?;
        self.reply(deadline).await
    }

    /// Reads one single-line reply (`+`, `-` or `:`).
    async fn reply(&mut self, deadline: Instant) -> Result<Reply, String> {
        loop {
            if let Some(i) = memchr::memmem::find(&self.buf, b"\r\n") {
                let line = self.buf.split_to(i + 2);
                let text = String::from_utf8_lossy(&line[1.min(i)..i]).into_owned();
                return match line[0] {
                    b'+' => Ok(Reply::Simple(text)),
                    b'-' => Ok(Reply::Error(text)),
                    b':' => text
                        .parse()
                        .map(Reply::Int)
                        .map_err(|_| format!("malformed reply :{text}")),
                    _ => Err(format!(
                        "unexpected reply {:?}",
                        String::from_utf8_lossy(&line[..i])
                    )),
                };
            }
            if self.buf.len() > 64 * 1024 {
                return Err("reply line too long".into());
            }
            let n = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf))
                .await
                .map_err(|_| "timed out waiting for the target's reply".to_string())?
                .map_err(|e| format!("reading from the target: {e}"))?;
            if n == 0 {
                return Err("the target closed the connection".into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_encoding() {
        let mut v = Vec::new();
        bulk(&mut v, b"abc");
        bulk(&mut v, b"");
        assert_eq!(v, b"$3\r\nabc\r\n$0\r\n\r\n");
    }

    #[test]
    fn budget_grows_with_size() {
        let t = Duration::from_millis(100);
        assert_eq!(budget(t, 0), t);
        assert_eq!(budget(t, 64 << 20), t + Duration::from_millis(1024));
    }

    #[test]
    fn verdicts() {
        let ks = Keyspace::new(shoal_keyspace::KeyspaceConfig::default());
        let now = now_ms();
        ks.lock(b"a").insert(b"a", &[b"1"], None, 0, now);
        ks.lock(b"b").insert(b"b", &[b"1"], None, 0, now);
        ks.lock(b"old")
            .insert(b"old", &[b"1"], Some(now - 1), 0, now);
        let r = Reshard::new(2);
        let v = |keys: &[&[u8]]| r.verdict(&ks, now, keys.iter().copied());
        assert_eq!(v(&[]), Verdict::Here);
        assert_eq!(v(&[b"a", b"b", b"a"]), Verdict::Here);
        assert_eq!(v(&[b"x", b"y"]), Verdict::Moved);
        assert_eq!(v(&[b"old"]), Verdict::Moved);
        assert_eq!(v(&[b"a", b"x"]), Verdict::Split);
        r.inflight.write().insert(b"x".to_vec());
        r.inflight_n.store(1, Ordering::Release);
        assert!(r.is_in_flight(b"x"));
        assert!(!r.is_in_flight(b"a"));
        assert_eq!(v(&[b"a", b"x"]), Verdict::Migrating);
        assert_eq!(v(&[b"a"]), Verdict::Here);
    }
}
