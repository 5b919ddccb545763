//! Replication within a shard: one primary, any number of replicas (docs/replication.md).
//!
//! ```text
//!  primary                                            replica
//!  write cmd ─► dispatch ─► [repl lock] execute ─► frame ─► backlog ─► feeder ─TCP─► link task
//!  memcache write ──────────► [repl lock] execute ─► SHOAL.PUT / DEL ─┘              │ apply via dispatch
//!  expiry / eviction ─► removal queue ─► DEL (drained by the next writer / cron)      └► own backlog (same offsets)
//! ```
//!
//! * **One ordered stream.** Every keyspace write on a primary with replication
//!   active runs under one mutex (the repl lock) and appends what it did to the
//!   backlog before releasing it, so stream order is apply order across worker
//!   threads. Reads never take it. Until the first replica attaches the lock is
//!   not taken at all (`active` is false).
//! * **Determinism.** Redis commands are propagated as received, preceded by a
//!   `SHOAL.CLOCK <unix ms>` record whenever the command clock changes, so relative
//!   TTLs resolve to the same absolute times; SPOP becomes SREM of what it popped;
//!   memcache writes become the resulting item state (`SHOAL.PUT`, or `DEL`).
//!   Expired and evicted keys are deleted only by the thread that holds the repl
//!   lock (keyspace "guarded" mode) and reach replicas as `DEL`s; replicas never
//!   expire or evict on their own clock.
//! * **Full sync without fork.** See [`primary`]: shards are serialized on first
//!   touch after the sync point, so the snapshot is the keyspace at one offset.

mod backlog;
pub mod primary;
pub mod replica;
mod state;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard, RwLock};

pub use backlog::Backlog;

use crate::config::ServerConfig;
use crate::exec::resp::ConnWaker;
use crate::shared::{now_ms, ClientHandle, Shared};

/// Backlog bytes kept beyond `repl-backlog-size` for a replica still catching
/// up (a full sync in progress, a slow link); a replica further behind than
/// this is disconnected (Redis' `client-output-buffer-limit replica` hard limit).
pub const REPLICA_BUFFER_LIMIT: usize = 256 * 1024 * 1024;

/// `-READONLY` text.
pub const READONLY_ERR: &str = "READONLY You can't write against a read only replica.";
/// `-MASTERDOWN` text.
pub const MASTERDOWN_ERR: &str =
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.";
/// `-NOREPLICAS` text.
pub const NOREPLICAS_ERR: &str = "NOREPLICAS Not enough good replicas to write.";
/// `-LOADING` text.
pub const LOADING_ERR: &str = "LOADING Redis is loading the dataset in memory";

/// Per-connection replication state of a RESP client (REPLCONF, PSYNC, WAIT, EXEC).
#[derive(Default, Debug)]
pub struct ConnRepl {
    /// REPLCONF listening-port.
    pub listening_port: u16,
    /// REPLCONF shoal-epoch sent by a replica.
    pub peer_epoch: u64,
    /// Set by PSYNC/SYNC: the connection loop hands the socket to the feeder.
    pub psync: Option<Psync>,
    /// WAIT: the offset to be acknowledged (kept across re-runs).
    pub wait_offset: Option<u64>,
    /// Inside EXEC: a MULTI was already propagated for this transaction.
    pub in_tx: bool,
}

/// A replica's PSYNC request.
#[derive(Debug, Clone)]
pub struct Psync {
    /// Replication id it has ("?" = none).
    pub replid: String,
    /// First offset it lacks (-1 = none).
    pub offset: i64,
}

/// Replication ids (PSYNC2).
#[derive(Clone, Debug)]
pub struct Ids {
    /// Current replication id.
    pub replid: String,
    /// Previous id (before the last promotion), or 40 zeros.
    pub replid2: String,
    /// Up to which offset `replid2` is valid (-1 = none).
    pub second_offset: i64,
}

/// State of a replica's link to its primary (ROLE's words).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum LinkState {
    /// Not connected, will connect.
    Connect = 0,
    /// TCP connect / handshake in progress.
    Connecting = 1,
    /// Receiving the snapshot.
    Sync = 2,
    /// Streaming.
    Connected = 3,
}

impl LinkState {
    fn from_u8(v: u8) -> LinkState {
        match v {
            1 => LinkState::Connecting,
            2 => LinkState::Sync,
            3 => LinkState::Connected,
            _ => LinkState::Connect,
        }
    }

    /// ROLE's name.
    pub fn name(self) -> &'static str {
        match self {
            LinkState::Connect => "connect",
            LinkState::Connecting => "connecting",
            LinkState::Sync => "sync",
            LinkState::Connected => "connected",
        }
    }
}

/// The primary this server replicates from.
pub struct Master {
    /// Host as configured.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Link generation: the link task exits when it no longer matches.
    pub generation: u64,
    /// Wakes the link task (REPLICAOF change, CLIENT KILL TYPE master).
    pub kill: Arc<tokio::sync::Notify>,
}

/// One replica attached to this server (primary side).
pub struct ReplicaPeer {
    /// Client id of its connection.
    pub id: u64,
    /// Its connection (CLIENT KILL TYPE replica).
    pub handle: Arc<ClientHandle>,
    /// Address it connected from.
    pub ip: String,
    /// REPLCONF listening-port.
    pub port: u16,
    /// Last acknowledged offset.
    pub ack: AtomicU64,
    /// When the last ACK arrived (unix ms).
    pub ack_ms: AtomicU64,
    /// Next offset the feeder will send (backlog trimming keeps it).
    pub need: AtomicU64,
    /// 0 = wait_bgsave, 1 = send_bulk, 2 = online.
    pub state: AtomicU8,
}

impl ReplicaPeer {
    fn state_name(&self) -> &'static str {
        match self.state.load(Ordering::Relaxed) {
            0 => "wait_bgsave",
            1 => "send_bulk",
            _ => "online",
        }
    }

    /// Seconds since the last ACK.
    pub fn lag_secs(&self) -> u64 {
        now_ms().saturating_sub(self.ack_ms.load(Ordering::Relaxed)) / 1000
    }
}

/// What the repl lock protects besides ordering.
#[derive(Default)]
pub struct StreamState {
    /// Last `SHOAL.CLOCK` written to the stream (0 = none since the sync point).
    pub last_clock: u64,
    /// A GETACK was appended and no write followed it yet.
    pub getack_pending: bool,
}

/// FAILOVER progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FailoverState {
    /// None.
    None,
    /// Writes paused, waiting for the target to catch up.
    WaitingForSync,
    /// Handing over.
    InProgress,
}

/// All replication state of one server.
pub struct Repl {
    /// The repl lock: held by every write while it executes and appends.
    pub stream: Mutex<StreamState>,
    active: AtomicBool,
    /// The backlog (its own lock: feeders read it without the repl lock).
    pub backlog: Mutex<Backlog>,
    /// Wakes feeders waiting for the backlog to grow (see [`Repl::append`]).
    grew: tokio::sync::Notify,
    /// The backlog's end offset as of the last append.
    grew_end: AtomicU64,
    /// A feeder is (about to be) waiting on `grew`.
    feeder_waiting: AtomicBool,
    /// Replication ids.
    pub ids: Mutex<Ids>,
    replica: AtomicBool,
    /// The primary, when this is a replica.
    pub master: Mutex<Option<Master>>,
    link_state: AtomicU8,
    /// Unix ms of the last byte from the primary.
    pub last_io_ms: AtomicU64,
    /// Unix ms when the link went down (for master_link_down_since_seconds).
    pub down_since_ms: AtomicU64,
    /// Offset processed from the primary (slave_repl_offset).
    pub applied: AtomicU64,
    /// Replica: the last `SHOAL.CLOCK` of the stream applied here (0 = none).
    /// Frames that follow it without a new record (same millisecond) run at this
    /// clock, also after a partial resync and on a sub-replica's full sync.
    pub stream_clock: AtomicU64,
    /// Replicas attached here.
    pub replicas: Mutex<Vec<Arc<ReplicaPeer>>>,
    removed: Mutex<Vec<Vec<u8>>>,
    /// `removed` may be non-empty (checked without its lock on every write).
    removed_any: AtomicBool,
    /// Configuration epoch (fencing).
    pub epoch: AtomicU64,
    /// repl-backlog-size.
    pub backlog_size: AtomicU64,
    /// replica-serve-stale-data.
    pub serve_stale: AtomicBool,
    /// min-replicas-to-write.
    pub min_replicas: AtomicU64,
    /// min-replicas-max-lag.
    pub min_lag: AtomicU64,
    /// repl-timeout, seconds.
    pub timeout: AtomicU64,
    /// masterauth.
    pub masterauth: RwLock<Option<String>>,
    /// INFO stats counters.
    pub sync_full: AtomicU64,
    /// Partial resyncs accepted.
    pub sync_partial_ok: AtomicU64,
    /// Partial resyncs refused.
    pub sync_partial_err: AtomicU64,
    /// Stream bytes sent to replicas.
    pub bytes_sent: AtomicU64,
    /// Stream bytes received from the primary.
    pub bytes_received: AtomicU64,
    waiters: Mutex<Vec<Arc<ConnWaker>>>,
    /// Writes refused until the fencing check finds out who the primary is.
    pub fenced: AtomicBool,
    /// Loading a snapshot (commands get -LOADING).
    pub loading: AtomicBool,
    /// Addresses (`ip:port`) of servers that replicated from here (fencing probes).
    pub peers: Mutex<BTreeSet<String>>,
    /// One full-sync snapshot at a time.
    pub snapshot_busy: tokio::sync::Mutex<()>,
    /// FAILOVER state, a [`FailoverState`] as u8 (every write reads it: no lock).
    failover: AtomicU8,
    /// Cancels a FAILOVER in progress.
    pub failover_abort: AtomicBool,
    me: OnceLock<Weak<Shared>>,
    rt: OnceLock<tokio::runtime::Handle>,
    dir: String,
}

/// A fresh random 40-hex replication id.
pub fn new_replid() -> String {
    (0..40)
        .map(|_| char::from_digit(u32::from(rand::random::<u8>() % 16), 16).unwrap_or('0'))
        .collect()
}

/// Encodes a command as a RESP multibulk request.
pub fn frame(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    frame_into(&mut out, args);
    out
}

/// Appends a RESP multibulk request to `out`.
pub fn frame_into(out: &mut Vec<u8>, args: &[&[u8]]) {
    let mut b = itoa::Buffer::new();
    out.push(b'*');
    out.extend_from_slice(b.format(args.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(b.format(a.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

impl Repl {
    /// Replication state for a configuration (role is set by [`start`]).
    pub fn new(config: &ServerConfig) -> Repl {
        Repl {
            stream: Mutex::new(StreamState::default()),
            active: AtomicBool::new(false),
            backlog: Mutex::new(Backlog::default()),
            grew: tokio::sync::Notify::new(),
            grew_end: AtomicU64::new(0),
            feeder_waiting: AtomicBool::new(false),
            ids: Mutex::new(Ids {
                replid: new_replid(),
                replid2: "0".repeat(40),
                second_offset: -1,
            }),
            replica: AtomicBool::new(false),
            master: Mutex::new(None),
            link_state: AtomicU8::new(0),
            last_io_ms: AtomicU64::new(0),
            down_since_ms: AtomicU64::new(now_ms()),
            applied: AtomicU64::new(0),
            stream_clock: AtomicU64::new(0),
            replicas: Mutex::new(Vec::new()),
            removed: Mutex::new(Vec::new()),
            removed_any: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            backlog_size: AtomicU64::new(config.repl_backlog_size),
            serve_stale: AtomicBool::new(config.replica_serve_stale_data),
            min_replicas: AtomicU64::new(config.min_replicas_to_write),
            min_lag: AtomicU64::new(config.min_replicas_max_lag),
            timeout: AtomicU64::new(config.repl_timeout.max(1)),
            masterauth: RwLock::new(config.masterauth.clone().filter(|p| !p.is_empty())),
            sync_full: AtomicU64::new(0),
            sync_partial_ok: AtomicU64::new(0),
            sync_partial_err: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            waiters: Mutex::new(Vec::new()),
            fenced: AtomicBool::new(false),
            loading: AtomicBool::new(false),
            peers: Mutex::new(BTreeSet::new()),
            snapshot_busy: tokio::sync::Mutex::new(()),
            failover: AtomicU8::new(FailoverState::None as u8),
            failover_abort: AtomicBool::new(false),
            me: OnceLock::new(),
            rt: OnceLock::new(),
            dir: config.dir.clone(),
        }
    }

    /// Whether this server is a replica.
    #[inline]
    pub fn is_replica(&self) -> bool {
        self.replica.load(Ordering::Acquire)
    }

    /// Whether writes must take the repl lock (a backlog exists).
    #[inline]
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// master_repl_offset.
    pub fn offset(&self) -> u64 {
        self.backlog.lock().end()
    }

    /// Link state (replica side).
    pub fn link_state(&self) -> LinkState {
        LinkState::from_u8(self.link_state.load(Ordering::Relaxed))
    }

    pub(crate) fn set_link_state(&self, s: LinkState) {
        let old = self.link_state.swap(s as u8, Ordering::Relaxed);
        if s != LinkState::Connected && old == LinkState::Connected as u8 {
            self.down_since_ms.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// The server, for tasks that outlive a command.
    pub fn shared(&self) -> Option<Arc<Shared>> {
        self.me.get().and_then(Weak::upgrade)
    }

    /// The replication runtime (link tasks, cron).
    pub fn runtime(&self) -> Option<&tokio::runtime::Handle> {
        self.rt.get()
    }

    /// A future that completes once the backlog's end passes `next`, or at once (None)
    /// if it already has. Create it, then check, then await: an append between the two
    /// wakes it. Appends notify only when a feeder said it waits, so a write costs an
    /// atomic swap rather than a wake-up of every feeder (which was ~14 % of a primary's
    /// CPU under a pipelined SET load with two replicas).
    pub fn wait_for_growth(&self, next: u64) -> Option<tokio::sync::futures::Notified<'_>> {
        let notified = self.grew.notified();
        self.feeder_waiting.store(true, Ordering::SeqCst);
        if self.grew_end.load(Ordering::SeqCst) > next {
            return None;
        }
        Some(notified)
    }

    /// Appends stream bytes (caller holds the repl lock) and wakes feeders.
    pub fn append(&self, data: &[u8]) {
        self.append_parts(&[data]);
    }

    /// Appends several pieces of stream bytes under one backlog lock (caller
    /// holds the repl lock): a write's clock record and command go in without
    /// being joined in a buffer first. Feeders are woken at once, or at the end
    /// of the connection's batch when one is open (see [`FeederWakes`]).
    fn append_parts(&self, parts: &[&[u8]]) {
        if parts.iter().all(|p| p.is_empty()) {
            return;
        }
        {
            let mut b = self.backlog.lock();
            for p in parts {
                b.append(p);
            }
            let size = self.backlog_size.load(Ordering::Relaxed) as usize;
            if b.len() > size + 64 * 1024 {
                let end = b.end();
                let oldest_needed = self
                    .replicas
                    .lock()
                    .iter()
                    .map(|r| r.need.load(Ordering::Relaxed))
                    .min()
                    .unwrap_or(end + 1);
                let needed = (end + 1).saturating_sub(oldest_needed) as usize;
                b.trim(size.max(needed.min(REPLICA_BUFFER_LIMIT)));
            }
            // Under the lock, so it never goes backwards across threads.
            self.grew_end.store(b.end(), Ordering::Release);
        }
        if !FeederWakes::defer() {
            self.wake_feeders();
        }
    }

    /// Wakes the feeders if one waits. Pairs with [`Repl::wait_for_growth`]
    /// (store-buffering: each side stores, fences, then loads the other's flag),
    /// so an append is never missed by a feeder going to sleep.
    fn wake_feeders(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.feeder_waiting.load(Ordering::Relaxed)
            && self.feeder_waiting.swap(false, Ordering::SeqCst)
        {
            self.grew.notify_waiters();
        }
    }

    /// Queues a DEL for a key removed by expiry or eviction (keyspace observer).
    fn note_removed(&self, key: &[u8]) {
        if !self.is_replica() && self.is_active() {
            self.removed.lock().push(key.to_vec());
            self.removed_any.store(true, Ordering::Release);
        }
    }

    /// Appends queued DELs to `out` (caller holds the repl lock).
    fn drain_removed(&self, out: &mut Vec<u8>) {
        // Removals happen on the thread that holds the repl lock (the reclaim
        // permit), so a flag seen clear here has no DEL queued before this write.
        if !self.removed_any.load(Ordering::Acquire) {
            return;
        }
        let keys = {
            let mut r = self.removed.lock();
            self.removed_any.store(false, Ordering::Release);
            std::mem::take(&mut *r)
        };
        for k in keys {
            frame_into(out, &[b"DEL", &k]);
        }
    }

    /// Appends a clock record when `now` differs from the last one.
    fn clock(st: &mut StreamState, now: u64, out: &mut Vec<u8>) {
        if now != st.last_clock {
            let mut b = itoa::Buffer::new();
            frame_into(out, &[b"SHOAL.CLOCK", b.format(now).as_bytes()]);
            st.last_clock = now;
        }
    }

    /// Emits queued DELs, then `body` (with a clock record for `now` if given).
    /// Nothing is allocated unless there are DELs or the clock moved.
    pub fn emit(&self, st: &mut StreamState, now: Option<u64>, body: &[u8]) {
        let mut pre = Vec::new();
        self.drain_removed(&mut pre);
        if !body.is_empty() {
            if let Some(now) = now {
                Self::clock(st, now, &mut pre);
            }
            st.getack_pending = false;
        }
        self.append_parts(&[&pre, body]);
    }

    /// The FAILOVER state.
    pub fn failover(&self) -> FailoverState {
        match self.failover.load(Ordering::SeqCst) {
            x if x == FailoverState::WaitingForSync as u8 => FailoverState::WaitingForSync,
            x if x == FailoverState::InProgress as u8 => FailoverState::InProgress,
            _ => FailoverState::None,
        }
    }

    /// Sets the FAILOVER state.
    pub fn set_failover(&self, state: FailoverState) {
        self.failover.store(state as u8, Ordering::SeqCst);
    }

    /// Makes writes take the repl lock from now on (first replica, or becoming a
    /// replica). Waits until no command is running anywhere.
    pub fn activate(&self, shared: &Shared) {
        if self.is_active() {
            return;
        }
        let _all = shared.exclusive();
        let _st = self.stream.lock();
        if self.is_active() {
            return;
        }
        let end = self.backlog.lock().end();
        self.backlog.lock().reset(end);
        shared.keyspace.set_guarded_reclaim(true);
        self.active.store(true, Ordering::Release);
    }

    /// Registers a WAIT-ing client to be woken on the next ACK.
    pub fn add_waiter(&self, w: Arc<ConnWaker>) {
        self.waiters.lock().push(w);
    }

    /// Wakes every WAIT-ing client (an ACK arrived).
    pub fn wake_waiters(&self) {
        let ws = std::mem::take(&mut *self.waiters.lock());
        for w in ws {
            w.notify.notify_one();
        }
    }

    /// Replicas whose acknowledged offset is at least `offset`.
    pub fn acked(&self, offset: u64) -> usize {
        self.replicas
            .lock()
            .iter()
            .filter(|r| {
                r.state.load(Ordering::Relaxed) == 2 && r.ack.load(Ordering::Relaxed) >= offset
            })
            .count()
    }

    /// Replicas online with an ACK within `min-replicas-max-lag` seconds.
    pub fn good_replicas(&self) -> usize {
        let max = self.min_lag.load(Ordering::Relaxed);
        self.replicas
            .lock()
            .iter()
            .filter(|r| r.state.load(Ordering::Relaxed) == 2 && r.lag_secs() <= max)
            .count()
    }

    /// Appends `REPLCONF GETACK *` (at most one outstanding) so replicas ACK now.
    pub fn request_acks(&self) {
        if !self.is_active() || self.is_replica() {
            return;
        }
        let mut st = self.stream.lock();
        if st.getack_pending {
            return;
        }
        let f = frame(&[b"REPLCONF", b"GETACK", b"*"]);
        self.emit(&mut st, None, &f);
        st.getack_pending = true;
    }

    /// A replica in the middle of loading a snapshot (cannot feed sub-replicas).
    pub fn is_replica_loading(&self) -> bool {
        self.is_replica() && self.loading.load(Ordering::Relaxed)
    }

    /// Persists epoch, replid and peers when `dir` is set.
    pub fn persist(&self) {
        state::save(self);
    }
}

/// Installs replication on a started server: removal observer, persisted state,
/// the `shoal-repl` thread (cron, link tasks), and `replicaof` from the config.
///
/// # Errors
/// When the thread cannot be started.
pub fn start(
    shared: &Arc<Shared>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let repl = &shared.repl;
    let _ = repl.me.set(Arc::downgrade(shared));
    let weak = Arc::downgrade(shared);
    shared
        .keyspace
        .set_removal_observer(Some(Arc::new(move |key: &[u8], _why| {
            if let Some(sh) = weak.upgrade() {
                sh.repl.note_removed(key);
            }
        })));
    let restored = state::load(repl);
    let (tx, rx) = std::sync::mpsc::channel();
    let sh = shared.clone();
    let t = std::thread::Builder::new()
        .name("shoal-repl".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(anyhow::anyhow!("replication runtime: {e}")));
                    return;
                }
            };
            let _ = sh.repl.rt.set(rt.handle().clone());
            let _ = tx.send(Ok(()));
            rt.block_on(cron(sh, shutdown));
        })?;
    rx.recv()
        .map_err(|_| anyhow::anyhow!("replication thread failed to start"))??;
    if let Some((host, port)) = shared.config.replica_target() {
        replica::become_replica(shared, host, port);
    } else if restored.was_primary_with_peers {
        // A primary that restarts must first find out whether one of its
        // former replicas was promoted meanwhile (docs/replication.md, fencing).
        repl.fenced.store(true, Ordering::SeqCst);
    }
    Ok(t)
}

/// Once every 100 ms: deletes for expired/evicted keys, active expiry under the
/// repl lock; once a second: metrics, link timeouts, fencing probes.
async fn cron(shared: Arc<Shared>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut n = 0u64;
    let mut last_ping = Instant::now();
    let mut probing: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
        }
        n += 1;
        let repl = &shared.repl;
        if repl.is_active() && !repl.is_replica() {
            let mut st = repl.stream.lock();
            repl.emit(&mut st, None, b"");
            if last_ping.elapsed() >= Duration::from_secs(10) && !repl.replicas.lock().is_empty() {
                repl.emit(&mut st, None, &frame(&[b"PING"]));
                last_ping = Instant::now();
            }
        }
        if n % 10 == 0 {
            publish_metrics(&shared);
            let need_probe = repl.fenced.load(Ordering::Relaxed)
                || (!repl.is_replica() && !repl.peers.lock().is_empty());
            if need_probe && probing.as_ref().is_none_or(|p| p.is_finished()) {
                let sh = shared.clone();
                probing = Some(tokio::spawn(
                    async move { replica::fencing_probe(&sh).await },
                ));
            }
        }
    }
}

/// Active expiry (the accept thread's 100 ms tick): under the repl lock with the
/// reclaim permit when replication is active, so the DELs are ordered; skipped
/// on replicas (their primary sends the DELs).
pub fn active_expire(shared: &Shared, now: u64) {
    let repl = &shared.repl;
    if repl.is_replica() {
        return;
    }
    if !repl.is_active() {
        shared.keyspace.active_expire_cycle(now, 256);
        return;
    }
    let mut st = repl.stream.lock();
    let prev = shoal_keyspace::set_reclaim_permit(true);
    shared.keyspace.active_expire_cycle(now, 256);
    shoal_keyspace::set_reclaim_permit(prev);
    repl.emit(&mut st, None, b"");
}

fn publish_metrics(shared: &Shared) {
    use metrics::{counter, gauge};
    let repl = &shared.repl;
    let off = repl.offset();
    gauge!("shoal_repl_offset").set(off as f64);
    gauge!("shoal_repl_epoch").set(repl.epoch.load(Ordering::Relaxed) as f64);
    gauge!("shoal_repl_is_replica").set(if repl.is_replica() { 1.0 } else { 0.0 });
    let replicas = repl.replicas.lock().clone();
    gauge!("shoal_repl_connected_replicas").set(replicas.len() as f64);
    let mut max_lag = 0u64;
    for r in &replicas {
        let lag = off.saturating_sub(r.ack.load(Ordering::Relaxed));
        max_lag = max_lag.max(lag);
        gauge!("shoal_repl_replica_lag_bytes", "replica" => format!("{}:{}", r.ip, r.port))
            .set(lag as f64);
    }
    if repl.is_replica() {
        let io = now_ms().saturating_sub(repl.last_io_ms.load(Ordering::Relaxed)) / 1000;
        gauge!("shoal_repl_lag_seconds").set(io as f64);
        gauge!("shoal_repl_link_up").set(if repl.link_state() == LinkState::Connected {
            1.0
        } else {
            0.0
        });
    } else {
        gauge!("shoal_repl_lag_bytes").set(max_lag as f64);
    }
    counter!("shoal_repl_bytes_sent_total").absolute(repl.bytes_sent.load(Ordering::Relaxed));
    counter!("shoal_repl_bytes_received_total")
        .absolute(repl.bytes_received.load(Ordering::Relaxed));
    counter!("shoal_repl_sync_full_total").absolute(repl.sync_full.load(Ordering::Relaxed));
    counter!("shoal_repl_sync_partial_ok_total")
        .absolute(repl.sync_partial_ok.load(Ordering::Relaxed));
    counter!("shoal_repl_sync_partial_err_total")
        .absolute(repl.sync_partial_err.load(Ordering::Relaxed));
}

/// The `# Replication` section of INFO.
pub fn info_section(shared: &Shared) -> String {
    use std::fmt::Write as _;
    let repl = &shared.repl;
    let mut s = String::new();
    let ids = repl.ids.lock().clone();
    let (off, start, histlen) = {
        let b = repl.backlog.lock();
        (b.end(), b.start(), b.len())
    };
    if repl.is_replica() {
        let (host, port) = repl
            .master
            .lock()
            .as_ref()
            .map(|m| (m.host.clone(), m.port))
            .unwrap_or_default();
        let st = repl.link_state();
        let last_io = repl.last_io_ms.load(Ordering::Relaxed);
        let _ = write!(
            s,
            "role:slave\r\nmaster_host:{host}\r\nmaster_port:{port}\r\nmaster_link_status:{}\r\nmaster_last_io_seconds_ago:{}\r\nmaster_sync_in_progress:{}\r\nslave_read_repl_offset:{off}\r\nslave_repl_offset:{off}\r\n",
            if st == LinkState::Connected { "up" } else { "down" },
            if last_io == 0 || st != LinkState::Connected { -1 } else { (now_ms().saturating_sub(last_io) / 1000) as i64 },
            u8::from(st == LinkState::Sync),
        );
        if st != LinkState::Connected {
            let _ = write!(
                s,
                "master_link_down_since_seconds:{}\r\n",
                now_ms().saturating_sub(repl.down_since_ms.load(Ordering::Relaxed)) / 1000
            );
        }
        let _ = write!(
            s,
            "slave_priority:100\r\nslave_read_only:1\r\nreplica_announced:1\r\n"
        );
    } else {
        s.push_str("role:master\r\n");
    }
    let replicas = repl.replicas.lock().clone();
    let _ = write!(s, "connected_slaves:{}\r\n", replicas.len());
    for (i, r) in replicas.iter().enumerate() {
        let _ = write!(
            s,
            "slave{i}:ip={},port={},state={},offset={},lag={}\r\n",
            r.ip,
            r.port,
            r.state_name(),
            r.ack.load(Ordering::Relaxed),
            r.lag_secs()
        );
    }
    if !repl.is_replica() {
        let mr = repl.min_replicas.load(Ordering::Relaxed);
        if mr > 0 {
            let _ = write!(s, "min_slaves_good_slaves:{}\r\n", repl.good_replicas());
        }
    }
    let fo = match repl.failover() {
        FailoverState::None => "no-failover",
        FailoverState::WaitingForSync => "waiting-for-sync",
        FailoverState::InProgress => "failover-in-progress",
    };
    let _ = write!(
        s,
        "master_failover_state:{fo}\r\nmaster_replid:{}\r\nmaster_replid2:{}\r\nmaster_repl_offset:{off}\r\nsecond_repl_offset:{}\r\nrepl_backlog_active:{}\r\nrepl_backlog_size:{}\r\nrepl_backlog_first_byte_offset:{}\r\nrepl_backlog_histlen:{histlen}\r\nshoal_repl_epoch:{}\r\nshoal_repl_fenced:{}\r\n",
        ids.replid,
        ids.replid2,
        ids.second_offset,
        u8::from(repl.is_active()),
        repl.backlog_size.load(Ordering::Relaxed),
        if repl.is_active() { start } else { 0 },
        repl.epoch.load(Ordering::Relaxed),
        u8::from(repl.fenced.load(Ordering::Relaxed)),
    );
    s
}

/// Holds the repl lock while a write command runs.
pub struct WriteScope<'a> {
    guard: MutexGuard<'a, StreamState>,
    writes: u64,
    permit: bool,
}

impl WriteScope<'_> {
    /// Whether the command wrote to the keyspace.
    pub fn wrote(&self) -> bool {
        shoal_keyspace::thread_writes() != self.writes
    }
}

impl Drop for WriteScope<'_> {
    fn drop(&mut self) {
        shoal_keyspace::set_reclaim_permit(self.permit);
    }
}

thread_local! {
    /// 0: wake feeders per append; 1: a batch is open; 2: open, and appended.
    static BATCH_WAKE: std::cell::Cell<u8> = const { std::cell::Cell::new(0) };
}

/// Defers feeder wake-ups to the end of a connection's batch: one wake (a fence
/// and a flag check) per batch of commands instead of per write. Open one for
/// the commands decoded from one read; dropping it wakes the feeders if anything
/// was appended meanwhile.
pub struct FeederWakes<'a> {
    repl: &'a Repl,
}

impl<'a> FeederWakes<'a> {
    /// Opens a batch on this thread.
    pub fn open(shared: &'a Shared) -> Self {
        // Never downgrade 2: another task's batch on this thread, suspended in
        // a write, may have appended; whichever batch closes first wakes for it.
        BATCH_WAKE.with(|b| b.set(b.get().max(1)));
        FeederWakes { repl: &shared.repl }
    }

    /// Whether an append on this thread may leave the wake to the batch's end.
    fn defer() -> bool {
        BATCH_WAKE.with(|b| {
            let open = b.get() != 0;
            if open {
                b.set(2);
            }
            open
        })
    }
}

impl Drop for FeederWakes<'_> {
    fn drop(&mut self) {
        if BATCH_WAKE.with(|b| b.replace(0)) == 2 {
            self.repl.wake_feeders();
        }
    }
}

/// Takes the repl lock for a write (primary with replication active); also
/// lets this thread reclaim expired keys and evict, so every removal is ordered.
pub fn begin_write(shared: &Shared) -> Option<WriteScope<'_>> {
    let repl = &shared.repl;
    if !repl.is_active() || repl.is_replica() {
        return None;
    }
    let guard = repl.stream.lock();
    let permit = shoal_keyspace::set_reclaim_permit(true);
    Some(WriteScope {
        guard,
        writes: shoal_keyspace::thread_writes(),
        permit,
    })
}

/// Releases a [`WriteScope`], appending `body` (when the command wrote) after
/// the DELs of whatever it expired or evicted.
pub fn end_write(shared: &Shared, mut scope: WriteScope<'_>, now: u64, body: Option<&[u8]>) {
    let wrote = scope.wrote();
    let body = if wrote { body.unwrap_or(b"") } else { b"" };
    shared.repl.emit(&mut scope.guard, Some(now), body);
}

/// Writes refused on this server right now, if any (RESP and memcache alike).
pub fn write_refusal(shared: &Shared) -> Option<&'static str> {
    let repl = &shared.repl;
    if repl.is_replica() || repl.fenced.load(Ordering::Relaxed) {
        return Some(READONLY_ERR);
    }
    if repl.failover() != FailoverState::None {
        return Some(READONLY_ERR);
    }
    let min = repl.min_replicas.load(Ordering::Relaxed);
    if min > 0 && (repl.good_replicas() as u64) < min {
        return Some(NOREPLICAS_ERR);
    }
    None
}

/// Reads refused on this replica right now, if any.
pub fn read_refusal(shared: &Shared) -> Option<&'static str> {
    let repl = &shared.repl;
    if !repl.is_replica() {
        return None;
    }
    if repl.loading.load(Ordering::Relaxed) {
        return Some(LOADING_ERR);
    }
    if !repl.serve_stale.load(Ordering::Relaxed) && repl.link_state() != LinkState::Connected {
        return Some(MASTERDOWN_ERR);
    }
    None
}

/// Quick check for the dispatch hot path: nothing to check at all.
#[inline]
pub fn idle(shared: &Shared) -> bool {
    let r = &shared.repl;
    !r.is_active()
        && !r.is_replica()
        && !r.fenced.load(Ordering::Relaxed)
        && r.min_replicas.load(Ordering::Relaxed) == 0
}

/// `FLUSHALL` from memcache `flush_all` (now or when its delay passes).
pub fn mc_flush(shared: &Shared, lazy: bool) {
    match begin_write(shared) {
        Some(scope) => {
            shared.keyspace.flush(lazy);
            end_write(shared, scope, now_ms(), Some(&frame(&[b"FLUSHALL"])));
        }
        None => shared.keyspace.flush(lazy),
    }
}

/// Runs a memcache request with replication: refused writes on replicas,
/// the repl lock around writes, and the resulting item state propagated
/// (`SHOAL.PUT key value flags pxat cas cas-counter`, or `DEL key`).
pub fn mc_execute(
    shared: &Arc<Shared>,
    conn: &mut crate::exec::memcache::McConn,
    req: shoal_client::memcache::Request<'_>,
    out: &mut bytes::BytesMut,
    now: u64,
) -> crate::exec::memcache::Flow {
    use crate::exec::memcache::execute;
    use shoal_client::memcache::{MetaCmd, Request};
    if idle(shared) {
        return execute(shared, conn, req, out, now);
    }
    let (write, keys): (bool, Vec<Vec<u8>>) = match &req {
        Request::Store { key, .. }
        | Request::Incr { key, .. }
        | Request::Decr { key, .. }
        | Request::Delete { key, .. }
        | Request::Touch { key, .. } => (true, vec![key.to_vec()]),
        Request::Gat { keys, .. } => (true, keys.iter().map(<[u8]>::to_vec).collect()),
        Request::FlushAll { .. } => (true, Vec::new()),
        Request::Get { .. } => (false, Vec::new()),
        Request::Meta(m) => match m.cmd {
            MetaCmd::Set | MetaCmd::Delete | MetaCmd::Arithmetic => (true, vec![m.key.to_vec()]),
            MetaCmd::Get if m.flags.has(b'T') || m.flags.has(b'N') => (true, vec![m.key.to_vec()]),
            MetaCmd::Get => (false, Vec::new()),
            _ => return execute(shared, conn, req, out, now),
        },
        _ => return execute(shared, conn, req, out, now),
    };
    let refusal = if write { write_refusal(shared) } else { None }.or_else(|| read_refusal(shared));
    if let Some(msg) = refusal {
        out.extend_from_slice(b"SERVER_ERROR ");
        out.extend_from_slice(msg.as_bytes());
        out.extend_from_slice(b"\r\n");
        return crate::exec::memcache::Flow::Continue;
    }
    if !write || keys.is_empty() {
        // flush_all propagates itself (it may also run later, on a timer).
        return execute(shared, conn, req, out, now);
    }
    let Some(scope) = begin_write(shared) else {
        return execute(shared, conn, req, out, now);
    };
    let flow = execute(shared, conn, req, out, now);
    if !scope.wrote() {
        end_write(shared, scope, now, None);
        return flow;
    }
    let mut body = Vec::new();
    let mut b = [
        itoa::Buffer::new(),
        itoa::Buffer::new(),
        itoa::Buffer::new(),
        itoa::Buffer::new(),
    ];
    for key in &keys {
        let mut g = shared.keyspace.lock(key);
        match g.lookup(key, now).filter(|e| e.is_string()) {
            Some(e) => {
                let ctr = shared.keyspace.cas_counter();
                let [b0, b1, b2, b3] = &mut b;
                frame_into(
                    &mut body,
                    &[
                        b"SHOAL.PUT",
                        key,
                        e.value(),
                        b0.format(e.flags()).as_bytes(),
                        b1.format(e.expire_at().unwrap_or(0)).as_bytes(),
                        b2.format(e.cas()).as_bytes(),
                        b3.format(ctr).as_bytes(),
                    ],
                );
            }
            None => frame_into(&mut body, &[b"DEL", key]),
        }
    }
    end_write(shared, scope, now, Some(&body));
    flow
}

/// FAILOVER: waits (writes refused) until `target` has acknowledged everything,
/// tells it to promote itself with a higher epoch, then follows it.
pub async fn failover_task(
    shared: Arc<Shared>,
    target: Arc<ReplicaPeer>,
    host: String,
    port: u16,
    timeout_ms: Option<u64>,
    force: bool,
) {
    let repl = &shared.repl;
    let started = Instant::now();
    let abort = |why: &str| {
        tracing::warn!("FAILOVER aborted: {why}");
        repl.set_failover(FailoverState::None);
    };
    loop {
        if repl.failover_abort.swap(false, Ordering::SeqCst) {
            return abort("FAILOVER ABORT");
        }
        let end = repl.offset();
        if target.ack.load(Ordering::Relaxed) >= end {
            break;
        }
        if !repl.replicas.lock().iter().any(|r| Arc::ptr_eq(r, &target)) {
            return abort("target replica disconnected");
        }
        if timeout_ms.is_some_and(|t| started.elapsed() >= Duration::from_millis(t)) {
            if force {
                break;
            }
            return abort("timed out waiting for the target to catch up");
        }
        repl.request_acks();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    repl.set_failover(FailoverState::InProgress);
    let epoch = repl.epoch.load(Ordering::SeqCst) + 1;
    let auth = repl.masterauth.read().clone();
    let promote = async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
        let mut req = Vec::new();
        if let Some(pw) = &auth {
            frame_into(&mut req, &[b"AUTH", pw.as_bytes()]);
        }
        frame_into(&mut req, &[b"SHOAL.PROMOTE", epoch.to_string().as_bytes()]);
        s.write_all(&req).await?;
        let mut buf = Vec::new();
        let want = if auth.is_some() { 2 } else { 1 };
        let mut tmp = [0u8; 256];
        while buf.windows(2).filter(|w| w == b"\r\n").count() < want {
            let n = s.read(&mut tmp).await?;
            if n == 0 {
                anyhow::bail!("target closed the connection");
            }
            buf.extend_from_slice(&tmp[..n]);
        }
        if buf.ends_with(b"+OK\r\n") {
            Ok(())
        } else {
            anyhow::bail!("target refused: {}", String::from_utf8_lossy(&buf))
        }
    };
    match tokio::time::timeout(Duration::from_secs(5), promote).await {
        Ok(Ok(())) => {
            repl.epoch.fetch_max(epoch, Ordering::SeqCst);
            replica::become_replica(&shared, host, port);
        }
        Ok(Err(e)) => abort(&e.to_string()),
        Err(_) => abort("target did not answer"),
    }
}
