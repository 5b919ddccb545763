//! Live resharding: adding, removing or re-weighting servers of a pool while it serves,
//! without losing a write or failing a request (docs/resharding.md). Pools of plain
//! redis-server or memcached servers use the same control loop with their own steps
//! ([`plain`]: `MIGRATE` and an ask script; memcached's metadump and meta commands).
//!
//! ```text
//!  admin SHOAL RESHARD / config change ──► Control (plan) ──► control thread
//!      install both rings (PoolView::resharding) ─► workers route moving keys with
//!      SHOAL.ASK to the old owner, falling back to the new owner on SHOALMOVED
//!      every old owner at once: ketama Shoal pools send each source its moving hash
//!      ranges (SHOAL.MIGRATE … SCAN, 4 keyspace slices in parallel: the source finds
//!      and ships the keys); otherwise SCAN, pick keys whose owner changes, SHOAL.MIGRATE
//!      (or the plain backends' steps, reshard_plain.rs) them in batches (throttled)
//!      ─► all scanned: install the new ring alone, persist "done"
//! ```
//!
//! * **Phases.** A throttled move of a ketama Shoal pool moves the key-hash space in
//!   `PHASES` (4) parts, one after the other (`topology::Moving::phase`): only the part in
//!   progress is asked about. The part is persisted; cancel drops the phases.
//! * **Route gate.** After installing a view the control thread waits until every client
//!   batch routed with an earlier one is answered (`topology::RouteGate`) before scanning.
//!
//! * **One reshard at a time**, for a pool and its *siblings*: other Shoal pools whose
//!   servers have the same names, weights, hash, distribution and hash tag (a memcache
//!   pool over the same shards as a Redis pool) change together, since they share one
//!   keyspace.
//! * **Crash safety.** The plan (every server with its old and new weight), the direction
//!   (cancelled or not), pause and the sources already scanned are persisted to the state
//!   file before they take effect; a restarted proxy re-installs the two rings and scans
//!   the unfinished sources again. Scanning is idempotent: a key is on exactly one of its
//!   two owners whatever happened before.
//! * **Cancel** swaps the rings: keys moved so far go back the same way.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use shoal_client::resp::{decode_reply, encode_command, Proto, Value};
use shoal_client::ring::Ring;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{error, info, warn};

use crate::config::{BackendKind, PoolConfig, ServerConfig};
use crate::health::field;
use crate::topology::{PoolView, ServerView, Shared};
use shoal_client::ring::Distribution;

#[path = "reshard_plain.rs"]
pub mod plain;

/// Keys per `SCAN` of a source.
const SCAN_COUNT: &str = "4096";
/// Keys per `SHOAL.MIGRATE` (unthrottled; `SHOAL_RESHARD_BATCH` overrides it, for
/// benchmarks).
const BATCH: usize = 512;
/// Most keys per batch of a throttled move (`SHOAL_RESHARD_THROTTLED_BATCH` overrides it).
const THROTTLED_BATCH_DEFAULT: usize = 128;

/// `SHOAL.MIGRATE` calls in flight per source (`SHOAL_RESHARD_MOVERS` overrides it).
const MOVERS: usize = 4;

/// Keys per migration batch now: [`BATCH`] unthrottled; throttled, at most a tenth of a
/// second of rate and [`THROTTLED_BATCH_DEFAULT`] (clients asking for a key in flight
/// wait for its batch).
fn batch_size() -> usize {
    let rate = RATE_KEYS.load(Ordering::Relaxed);
    if rate == 0 {
        tuning().0
    } else {
        (rate as usize / 10).clamp(1, tuning().0.min(tuning().2))
    }
}

/// `SHOAL.MIGRATE host port timeout-ms [AUTH pw]`: the start of both forms.
pub(crate) fn migrate_head<'a>(
    host: &'a str,
    port: &'a str,
    timeout_ms: &'a str,
    auth: Option<&'a str>,
) -> Vec<&'a [u8]> {
    let mut args: Vec<&[u8]> = vec![
        b"SHOAL.MIGRATE",
        host.as_bytes(),
        port.as_bytes(),
        timeout_ms.as_bytes(),
    ];
    if let Some(pw) = auth {
        args.push(b"AUTH");
        args.push(pw.as_bytes());
    }
    args
}

/// The migration's batch size, movers per source and throttled batch size (read once; see
/// [`BATCH`]).
fn tuning() -> (usize, usize, usize) {
    static T: std::sync::OnceLock<(usize, usize, usize)> = std::sync::OnceLock::new();
    *T.get_or_init(|| {
        let env = |name: &str, default: usize, max: usize| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .map_or(default, |v| v.clamp(1, max))
        };
        (
            env("SHOAL_RESHARD_BATCH", BATCH, 10_000),
            env("SHOAL_RESHARD_MOVERS", MOVERS, 16),
            env(
                "SHOAL_RESHARD_THROTTLED_BATCH",
                THROTTLED_BATCH_DEFAULT,
                10_000,
            ),
        )
    })
}

/// A source's batches on their way from its scanner to its movers.
struct Feed {
    /// (new owner, keys), in scan order.
    queue: RefCell<VecDeque<(usize, Vec<Vec<u8>>)>>,
    /// A batch was queued (or the scan ended).
    more: tokio::sync::Notify,
    /// A batch was taken (or a mover stopped).
    room: tokio::sync::Notify,
    movers: usize,
    /// Why a mover stopped (pause is waited out inside; this is cancel or shutdown).
    stopped: RefCell<Option<Stop>>,
}

/// A destination and the key-hash ranges that move to it from one source.
type RangeGroup = (usize, Vec<(u32, u32)>);

/// The reshard state shared by the sources moving at once (never borrowed across an await).
type SavedCell<'a> = RefCell<&'a mut Saved>;
/// `SHOAL.MIGRATE` timeout given to the source (ms) and the call's own deadline.
const MIGRATE_TIMEOUT_MS: u64 = 10_000;
/// Pause between retries of a batch the source refused or could not move.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// One server of a plan, with its weight on the ring before and after (0: not on it).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Member {
    pub host: String,
    pub port: u16,
    pub name: Option<String>,
    pub replicas: Vec<(String, u16)>,
    pub old_weight: u32,
    pub new_weight: u32,
}

impl Member {
    fn config(&self, weight: u32) -> ServerConfig {
        ServerConfig {
            host: self.host.clone(),
            port: self.port,
            weight: weight.max(1),
            name: self.name.clone(),
            replicas: self.replicas.clone(),
            line: 0,
        }
    }

    fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn effective_name(&self) -> String {
        self.config(1).effective_name()
    }
}

/// The members of one pool of the reshard, in stable order (ring indices while moving).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PoolPlan {
    pub pool: String,
    pub members: Vec<Member>,
}

/// What the state file holds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Saved {
    /// Pools that change together; the first drives the migration.
    pub pools: Vec<PoolPlan>,
    /// The keys are going back (CANCEL): weights were swapped.
    pub cancelled: bool,
    pub paused: bool,
    /// Every key is on its new owner and the new ring alone is installed.
    pub done: bool,
    /// Names of the old owners scanned to the end in the current direction.
    pub sources_done: Vec<String>,
    pub keys_moved: u64,
    pub bytes_moved: u64,
    /// Throttle: keys and bytes per second (0: unlimited).
    pub rate_keys: u64,
    pub rate_bytes: u64,
    /// Parts of the key-hash space moved one after the other (1: all at once; see
    /// `topology::Moving::phase`), and the part being moved now.
    #[serde(default = "one")]
    pub phases: usize,
    #[serde(default)]
    pub phase: usize,
}

fn one() -> usize {
    1
}

/// Parts of a throttled move (a ketama Shoal pool): while one part moves, requests for
/// the others go straight to where their keys are, without the ask hop.
const PHASES: usize = 4;

/// A change asked for by an operator or by a new configuration file.
#[derive(Clone, Debug)]
pub enum Request {
    /// `SHOAL RESHARD ADD host:port[:weight] [name]`.
    Add {
        pool: usize,
        host: String,
        port: u16,
        weight: u32,
        name: Option<String>,
    },
    /// `SHOAL RESHARD REMOVE name`.
    Remove { pool: usize, name: String },
    /// `SHOAL RESHARD WEIGHT name weight`.
    Weight {
        pool: usize,
        name: String,
        weight: u32,
    },
    /// The configuration file lists other servers for these pools.
    Config(Vec<Arc<PoolConfig>>),
}

/// What `SHOAL RESHARD STATUS` reports besides the saved state.
#[derive(Default)]
struct Status {
    saved: Option<Saved>,
    state: &'static str,
    error: String,
    pending: Option<Request>,
    pause: bool,
    cancel: bool,
    keys_scanned: u64,
    keys_total: u64,
    started: Option<Instant>,
    /// Last configuration-file server lists per pool name (a reload compares with these).
    file_servers: Vec<(String, Vec<ServerConfig>)>,
}

/// The reshard controller shared by workers (admin commands), the health thread (reload)
/// and the control thread (the migration itself).
pub struct Control {
    st: Mutex<Status>,
    wake: tokio::sync::Notify,
    state_file: Option<PathBuf>,
    /// A reshard is installed (rings moving): reloads leave those pools alone.
    pub active: AtomicBool,
}

fn is_busy(state: &str) -> bool {
    matches!(state, "starting" | "running" | "paused" | "cancelling")
}

impl Control {
    /// A controller persisting to `state_file` (None: state kept in memory only).
    pub fn new(state_file: Option<PathBuf>, pools: &[PoolConfig]) -> Control {
        Control {
            st: Mutex::new(Status {
                state: "idle",
                file_servers: pools
                    .iter()
                    .map(|p| (p.name.clone(), p.servers.clone()))
                    .collect(),
                ..Status::default()
            }),
            wake: tokio::sync::Notify::new(),
            state_file,
            active: AtomicBool::new(false),
        }
    }

    /// Queues a change; fails when a reshard is already under way.
    pub fn request(&self, r: Request) -> Result<(), String> {
        let mut st = self.st.lock();
        if is_busy(st.state) || st.pending.is_some() {
            return Err("ERR a reshard is already in progress (SHOAL RESHARD STATUS)".into());
        }
        st.pending = Some(r);
        st.state = "starting";
        st.error.clear();
        drop(st);
        self.wake.notify_one();
        Ok(())
    }

    /// PAUSE / RESUME / CANCEL.
    pub fn control(&self, what: &str) -> Result<(), String> {
        let mut st = self.st.lock();
        if !is_busy(st.state) {
            return Err("ERR no reshard in progress".into());
        }
        match what {
            "PAUSE" => st.pause = true,
            "RESUME" => st.pause = false,
            "CANCEL" => {
                st.cancel = true;
                st.pause = false;
            }
            _ => return Err("ERR unknown reshard control".into()),
        }
        drop(st);
        self.wake.notify_one();
        Ok(())
    }

    /// RATE keys/s [bytes/s].
    pub fn set_rate(&self, keys: u64, bytes: Option<u64>) {
        let mut st = self.st.lock();
        if let Some(s) = st.saved.as_mut() {
            s.rate_keys = keys;
            if let Some(b) = bytes {
                s.rate_bytes = b;
            }
        }
        RATE_KEYS.store(keys, Ordering::Relaxed);
        if let Some(b) = bytes {
            RATE_BYTES.store(b, Ordering::Relaxed);
        }
    }

    /// The `SHOAL RESHARD STATUS` / `INFO` text (`field:value` lines).
    pub fn status_text(&self) -> String {
        let st = self.st.lock();
        let mut s = String::new();
        let _ = write!(s, "state:{}\r\n", st.state);
        let (pool, moved, bytes, cancelled, done_src, total_src) = match &st.saved {
            Some(sv) => {
                let total = sv.pools[0]
                    .members
                    .iter()
                    .filter(|m| m.old_weight > 0)
                    .count();
                (
                    sv.pools
                        .iter()
                        .map(|p| p.pool.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    sv.keys_moved,
                    sv.bytes_moved,
                    sv.cancelled,
                    sv.sources_done.len(),
                    total,
                )
            }
            None => (String::new(), 0, 0, false, 0, 0),
        };
        let _ = write!(s, "pools:{pool}\r\n");
        if let Some(sv) = &st.saved {
            let ring = |f: fn(&Member) -> u32| {
                sv.pools[0]
                    .members
                    .iter()
                    .filter(|m| f(m) > 0)
                    .map(|m| format!("{}:{}", m.effective_name(), f(m)))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let _ = write!(
                s,
                "from:{}\r\nto:{}\r\n",
                ring(|m| m.old_weight),
                ring(|m| m.new_weight)
            );
        }
        let _ = write!(
            s,
            "cancelled:{}\r\nkeys_moved:{moved}\r\nbytes_moved:{bytes}\r\nkeys_scanned:{}\r\nkeys_total:{}\r\nsources_done:{done_src}\r\nsources_total:{total_src}\r\n",
            u8::from(cancelled),
            st.keys_scanned,
            st.keys_total,
        );
        let elapsed = st.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let eta = if st.state == "running" || st.state == "cancelling" {
            let left = st.keys_total.saturating_sub(st.keys_scanned) as f64;
            if st.keys_scanned > 0 {
                (elapsed / st.keys_scanned as f64 * left).ceil() as u64
            } else {
                0
            }
        } else {
            0
        };
        let _ = write!(
            s,
            "elapsed_seconds:{elapsed:.1}\r\neta_seconds:{eta}\r\nrate_keys:{}\r\nrate_bytes:{}\r\nerror:{}\r\n",
            RATE_KEYS.load(Ordering::Relaxed),
            RATE_BYTES.load(Ordering::Relaxed),
            st.error,
        );
        s
    }

    /// `shoal_proxy_reshard_*` gauges for `/metrics`.
    pub fn export_metrics(&self) {
        let st = self.st.lock();
        let (moved, bytes) = st
            .saved
            .as_ref()
            .map_or((0, 0), |s| (s.keys_moved, s.bytes_moved));
        metrics::gauge!("shoal_proxy_reshard_active").set(f64::from(u8::from(is_busy(st.state))));
        metrics::gauge!("shoal_proxy_reshard_paused")
            .set(f64::from(u8::from(st.state == "paused")));
        metrics::gauge!("shoal_proxy_reshard_keys_moved").set(moved as f64);
        metrics::gauge!("shoal_proxy_reshard_bytes_moved").set(bytes as f64);
        metrics::gauge!("shoal_proxy_reshard_keys_scanned").set(st.keys_scanned as f64);
        metrics::gauge!("shoal_proxy_reshard_keys_total").set(st.keys_total as f64);
    }

    /// True when a configuration reload must not touch pool `name` (it is resharding).
    pub fn pool_busy(&self, name: &str) -> bool {
        let st = self.st.lock();
        is_busy(st.state)
            && st
                .saved
                .as_ref()
                .is_some_and(|s| s.pools.iter().any(|p| p.pool == name))
    }

    /// The file's previous server list for a pool; records the new one.
    pub fn swap_file_servers(&self, name: &str, servers: &[ServerConfig]) -> Vec<ServerConfig> {
        let mut st = self.st.lock();
        match st.file_servers.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => std::mem::replace(v, servers.to_vec()),
            None => {
                st.file_servers.push((name.to_string(), servers.to_vec()));
                Vec::new()
            }
        }
    }

    fn set_state(&self, state: &'static str) {
        self.st.lock().state = state;
    }

    fn set_error(&self, e: String) {
        self.st.lock().error = e;
    }

    fn persist(&self, saved: &Saved) {
        self.st.lock().saved = Some(saved.clone());
        let Some(path) = &self.state_file else {
            return;
        };
        if let Err(e) = write_atomic(path, saved) {
            error!("reshard: cannot write state file {}: {e}", path.display());
        }
    }
}

static RATE_KEYS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static RATE_BYTES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn write_atomic(path: &Path, saved: &Saved) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let data = serde_json::to_vec_pretty(saved).map_err(std::io::Error::other)?;
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Reads the state file, if any.
pub fn load_state(path: &Path) -> anyhow::Result<Option<Saved>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(serde_json::from_slice(&b)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Pools that must reshard together with pool `idx`: Shoal pools with the same ring inputs
/// (server names and weights, hash, distribution, hash tag). `idx` comes first. A plain
/// redis or memcached pool has none: its keyspace is its own.
pub fn siblings(pools: &[Arc<PoolView>], idx: usize) -> Vec<usize> {
    if pools[idx].cfg.backend != BackendKind::Shoal {
        return vec![idx];
    }
    let key = |p: &PoolView| {
        let mut names: Vec<(String, u32)> = p
            .cfg
            .servers
            .iter()
            .map(|s| (s.effective_name(), s.weight))
            .collect();
        names.sort();
        (
            names,
            p.cfg.hash,
            p.cfg.distribution,
            p.cfg.hash_tag,
            p.cfg.backend,
        )
    };
    let me = key(&pools[idx]);
    let mut v = vec![idx];
    for (i, p) in pools.iter().enumerate() {
        if i != idx && p.moving.is_none() && key(p) == me {
            v.push(i);
        }
    }
    v
}

/// The members of a pool as it is now (every server on both rings, same weight).
fn current_members(view: &PoolView) -> Vec<Member> {
    view.cfg
        .servers
        .iter()
        .zip(&view.servers)
        .map(|(c, sv)| {
            let (host, port) = split_addr(&sv.primary);
            Member {
                host,
                port,
                name: c.name.clone(),
                replicas: c.replicas.clone(),
                old_weight: c.weight,
                new_weight: c.weight,
            }
        })
        .collect()
}

/// `host:port` as an owned host (brackets of an IPv6 host dropped) and a port.
fn split_addr(addr: &str) -> (String, u16) {
    let (h, p) = crate::health::split_addr(addr);
    (
        h.trim_matches(['[', ']']).to_string(),
        p.parse().unwrap_or(0),
    )
}

/// The pool view for a plan: both rings while moving, the new ring alone once done.
/// `current` supplies run-time server state (promoted primaries) by server name.
fn view_for(
    plan: &PoolPlan,
    base: &PoolConfig,
    current: &PoolView,
    done: bool,
    phase: Option<(usize, usize)>,
) -> PoolView {
    let mut cfg = base.clone();
    let members: Vec<&Member> = plan
        .members
        .iter()
        .filter(|m| !done || m.new_weight > 0)
        .collect();
    cfg.servers = members
        .iter()
        .map(|m| {
            m.config(if done {
                m.new_weight
            } else {
                m.old_weight.max(m.new_weight)
            })
        })
        .collect();
    let cfg = Arc::new(cfg);
    let fresh = if done {
        PoolView::from_config(cfg)
    } else {
        let old: Vec<u32> = members.iter().map(|m| m.old_weight).collect();
        let new: Vec<u32> = members.iter().map(|m| m.new_weight).collect();
        PoolView::resharding(cfg, &old, &new, phase)
    };
    // Keep what the proxy learned (failovers) for servers it already knew.
    let servers: Vec<ServerView> = fresh
        .servers
        .iter()
        .map(|s| {
            current
                .servers
                .iter()
                .find(|c| c.name == s.name)
                .cloned()
                .unwrap_or_else(|| s.clone())
        })
        .collect();
    fresh.with_servers(servers)
}

fn pool_index(shared: &Shared, name: &str) -> Option<usize> {
    shared
        .topology()
        .pools
        .iter()
        .position(|p| p.cfg.name == name)
}

/// Publishes the views of every pool of `saved`.
fn install(shared: &Shared, saved: &Saved, base: &[Arc<PoolConfig>]) {
    for (plan, cfg) in saved.pools.iter().zip(base) {
        let Some(pi) = pool_index(shared, &plan.pool) else {
            continue;
        };
        let current = shared.topology().pools[pi].clone();
        let phase = (saved.phases > 1).then_some((saved.phases, saved.phase));
        shared.update_pool(pi, view_for(plan, cfg, &current, saved.done, phase));
    }
}

/// Applies a state file at start-up: a finished reshard's membership, or the two rings of
/// an unfinished one (the control thread then resumes it).
pub fn restore(shared: &Shared, control: &Control) {
    let Some(path) = &control.state_file else {
        return;
    };
    let saved = match load_state(path) {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(e) => {
            error!(
                "reshard: ignoring unreadable state file {}: {e}",
                path.display()
            );
            return;
        }
    };
    if saved
        .pools
        .iter()
        .any(|p| pool_index(shared, &p.pool).is_none())
    {
        error!(
            "reshard: state file {} names pools this configuration lacks; ignoring it",
            path.display()
        );
        return;
    }
    let base: Vec<Arc<PoolConfig>> = saved
        .pools
        .iter()
        .map(|p| {
            let pi = pool_index(shared, &p.pool).unwrap_or(0);
            shared.topology().pools[pi].cfg.clone()
        })
        .collect();
    install(shared, &saved, &base);
    RATE_KEYS.store(saved.rate_keys, Ordering::Relaxed);
    RATE_BYTES.store(saved.rate_bytes, Ordering::Relaxed);
    let mut st = control.st.lock();
    if saved.done {
        info!(
            "reshard: pools {} use the membership of the finished reshard in {}",
            saved
                .pools
                .iter()
                .map(|p| p.pool.as_str())
                .collect::<Vec<_>>()
                .join(","),
            path.display()
        );
        st.state = "done";
    } else {
        info!(
            "reshard: resuming the reshard recorded in {}",
            path.display()
        );
        control.active.store(true, Ordering::Release);
        st.state = if saved.cancelled {
            "cancelling"
        } else if saved.paused {
            "paused"
        } else {
            "running"
        };
        st.pause = saved.paused;
    }
    st.saved = Some(saved);
}

/// A RESP connection of the control thread.
struct Rpc {
    s: TcpStream,
    buf: BytesMut,
    out: BytesMut,
    addr: String,
    /// A memcached source's enumeration on this connection.
    dump: plain::Dump,
}

impl Rpc {
    async fn connect(addr: &str, auth: Option<&str>) -> anyhow::Result<Rpc> {
        let s = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await??;
        s.set_nodelay(true)?;
        let mut r = Rpc {
            s,
            buf: BytesMut::with_capacity(64 * 1024),
            out: BytesMut::new(),
            addr: addr.to_string(),
            dump: plain::Dump::default(),
        };
        if let Some(pw) = auth {
            if let Value::Error(e) = r.call(&[b"AUTH", pw.as_bytes()]).await? {
                anyhow::bail!("AUTH: {}", String::from_utf8_lossy(&e));
            }
        }
        Ok(r)
    }

    async fn call(&mut self, args: &[&[u8]]) -> anyhow::Result<Value> {
        self.out.clear();
        encode_command(args, &mut self.out);
        let fut = async {
            self.s.write_all(&self.out).await?;
            loop {
                if let Some(v) = decode_reply(&mut self.buf, Proto::Resp2)? {
                    return Ok(v);
                }
                if self.s.read_buf(&mut self.buf).await? == 0 {
                    anyhow::bail!("{} closed the connection", self.addr);
                }
            }
        };
        tokio::time::timeout(Duration::from_millis(MIGRATE_TIMEOUT_MS * 2), fut).await?
    }
}

/// A port field of an `INFO` text (0: absent or not a port).
fn port_field(info: &str, name: &str) -> u16 {
    field(info, name).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Why the migration loop stopped early.
enum Stop {
    /// CANCEL: reverse the direction.
    Cancel,
    /// The proxy is shutting down.
    Shutdown,
}

/// The control thread: waits for a request, runs one reshard at a time.
pub fn run(shared: Arc<Shared>, control: Arc<Control>, stop: Arc<AtomicBool>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!("reshard runtime: {e}");
            return;
        }
    };
    rt.block_on(async move {
        let mut driver = Driver {
            shared,
            control,
            stop,
            plain: plain::Conns::default(),
        };
        driver.main().await;
    });
}

struct Driver {
    shared: Arc<Shared>,
    control: Arc<Control>,
    stop: Arc<AtomicBool>,
    /// The migrator's connections to memcached servers.
    plain: plain::Conns,
}

impl Driver {
    async fn main(&mut self) {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let (pending, resume) = {
                let mut st = self.control.st.lock();
                let resume = is_busy(st.state) && st.pending.is_none() && st.saved.is_some();
                (
                    st.pending.take(),
                    resume.then(|| st.saved.clone()).flatten(),
                )
            };
            let saved = if let Some(r) = pending {
                match self.plan(r).await {
                    Ok(Some(s)) => Some(s),
                    Ok(None) => {
                        self.control.set_state("done");
                        None
                    }
                    Err(e) => {
                        warn!("reshard refused: {e}");
                        self.control.set_error(e);
                        self.control.set_state("failed");
                        None
                    }
                }
            } else {
                resume
            };
            if let Some(s) = saved {
                self.drive(s).await;
                continue;
            }
            tokio::select! {
                () = self.control.wake.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    /// Turns a request into a plan over the pool and its siblings (None: nothing changes).
    async fn plan(&self, r: Request) -> Result<Option<Saved>, String> {
        let topo = self.shared.topology();
        let (idx, cfgs): (usize, Option<Vec<Arc<PoolConfig>>>) = match &r {
            Request::Add { pool, .. }
            | Request::Remove { pool, .. }
            | Request::Weight { pool, .. } => (*pool, None),
            Request::Config(c) => {
                let Some(first) = c.first() else {
                    return Ok(None);
                };
                let i = pool_index(&self.shared, &first.name).ok_or("pool vanished")?;
                (i, Some(c.clone()))
            }
        };
        let view = &topo.pools[idx];
        if view.moving.is_some() {
            return Err("ERR the pool is already resharding".into());
        }
        let group = match &cfgs {
            Some(c) => c
                .iter()
                .filter_map(|p| pool_index(&self.shared, &p.name))
                .collect(),
            None => siblings(&topo.pools, idx),
        };
        let mut pools = Vec::new();
        for &pi in &group {
            let v = &topo.pools[pi];
            let mut members = current_members(v);
            match &r {
                Request::Add {
                    host,
                    port,
                    weight,
                    name,
                    ..
                } => {
                    let new_name = ServerConfig {
                        host: host.clone(),
                        port: *port,
                        weight: 1,
                        name: name.clone(),
                        replicas: Vec::new(),
                        line: 0,
                    }
                    .effective_name();
                    if members.iter().any(|m| m.effective_name() == new_name) {
                        return Err(format!("ERR server {new_name} is already in the pool"));
                    }
                    if v.cfg.backend != BackendKind::Shoal {
                        // Checked with the others by `plain::preflight` below.
                        members.push(Member {
                            host: host.clone(),
                            port: *port,
                            name: name.clone(),
                            replicas: Vec::new(),
                            old_weight: 0,
                            new_weight: *weight,
                        });
                        pools.push(PoolPlan {
                            pool: v.cfg.name.clone(),
                            members,
                        });
                        continue;
                    }
                    let addr = format!("{host}:{port}");
                    let auth = topo.pools[idx].cfg.redis_auth.clone();
                    let info = Rpc::connect(&addr, auth.as_deref())
                        .await
                        .map_err(|e| format!("ERR cannot reach {addr}: {e}"))?
                        .call(&[b"INFO"])
                        .await
                        .map_err(|e| format!("ERR {addr}: {e}"))?;
                    let Value::Bulk(info) = info else {
                        return Err(format!("ERR {addr} did not answer INFO"));
                    };
                    let info = String::from_utf8_lossy(&info);
                    if field(&info, "shoal_version").is_none() {
                        return Err(format!("ERR {addr} is not a shoal-server"));
                    }
                    // A sibling speaking the other protocol reaches the same server on
                    // its other port.
                    let sib_port = if pi == idx || v.cfg.redis == topo.pools[idx].cfg.redis {
                        *port
                    } else if v.cfg.redis {
                        port_field(&info, "tcp_port")
                    } else {
                        port_field(&info, "memcache_port")
                    };
                    if sib_port == 0 {
                        return Err(format!(
                            "ERR {addr} has no port for sibling pool {}",
                            v.cfg.name
                        ));
                    }
                    let replicas = replicas_of(&info, v.cfg.redis == topo.pools[idx].cfg.redis);
                    members.push(Member {
                        host: host.clone(),
                        port: sib_port,
                        name: name.clone(),
                        replicas,
                        old_weight: 0,
                        new_weight: *weight,
                    });
                }
                Request::Remove { name, .. } | Request::Weight { name, .. } => {
                    let w = match &r {
                        Request::Weight { weight, .. } => *weight,
                        _ => 0,
                    };
                    let Some(m) = members
                        .iter_mut()
                        .find(|m| m.effective_name() == *name || m.addr() == *name)
                    else {
                        return Err(format!("ERR no server named {name} in the pool"));
                    };
                    m.new_weight = w;
                    if members.iter().all(|m| m.new_weight == 0) {
                        return Err("ERR cannot remove the last server of a pool".into());
                    }
                }
                Request::Config(c) => {
                    let Some(newcfg) = c.iter().find(|p| p.name == v.cfg.name) else {
                        continue;
                    };
                    for m in members.iter_mut() {
                        m.new_weight = 0;
                    }
                    for s in &newcfg.servers {
                        let n = s.effective_name();
                        match members.iter_mut().find(|m| m.effective_name() == n) {
                            Some(m) => m.new_weight = s.weight,
                            None => members.push(Member {
                                host: s.host.clone(),
                                port: s.port,
                                name: s.name.clone(),
                                replicas: s.replicas.clone(),
                                old_weight: 0,
                                new_weight: s.weight,
                            }),
                        }
                    }
                }
            }
            pools.push(PoolPlan {
                pool: v.cfg.name.clone(),
                members,
            });
        }
        if pools
            .iter()
            .all(|p| p.members.iter().all(|m| m.old_weight == m.new_weight))
        {
            return Ok(None);
        }
        let cfg = &topo.pools[idx].cfg;
        if cfg.backend != BackendKind::Shoal {
            if let Err(e) = plain::preflight(cfg, &pools[0].members).await {
                let Some(newcfg) = cfgs.iter().flatten().find(|p| p.name == cfg.name) else {
                    return Err(e);
                };
                // A file change that cannot move keys (a server down, too old) switches
                // rings at once, as twemproxy does: what the pool did before resharding.
                warn!(
                    "pool {}: servers changed but keys cannot move ({e}); switching to the new servers at once",
                    cfg.name
                );
                self.shared
                    .update_pool(idx, PoolView::from_config(newcfg.clone()));
                self.control
                    .set_error(format!("switched without moving keys: {e}"));
                return Ok(None);
            }
        }
        Ok(Some(Saved {
            pools,
            cancelled: false,
            paused: false,
            done: false,
            sources_done: Vec::new(),
            keys_moved: 0,
            bytes_moved: 0,
            rate_keys: RATE_KEYS.load(Ordering::Relaxed),
            rate_bytes: RATE_BYTES.load(Ordering::Relaxed),
            phases: if view.cfg.backend == BackendKind::Shoal
                && view.cfg.distribution == Distribution::Ketama
                && RATE_KEYS.load(Ordering::Relaxed) > 0
            {
                PHASES
            } else {
                1
            },
            phase: 0,
        }))
    }

    /// Base configurations of the plan's pools (settings other than servers).
    fn bases(&self, saved: &Saved) -> Vec<Arc<PoolConfig>> {
        let topo = self.shared.topology();
        saved
            .pools
            .iter()
            .map(|p| {
                let pi = pool_index(&self.shared, &p.pool).unwrap_or(0);
                topo.pools[pi].cfg.clone()
            })
            .collect()
    }

    async fn drive(&mut self, mut saved: Saved) {
        let bases = self.bases(&saved);
        {
            let mut st = self.control.st.lock();
            st.started = Some(Instant::now());
            st.keys_scanned = 0;
            st.cancel = false;
            st.state = if saved.cancelled {
                "cancelling"
            } else {
                "running"
            };
        }
        RATE_KEYS.store(saved.rate_keys, Ordering::Relaxed);
        RATE_BYTES.store(saved.rate_bytes, Ordering::Relaxed);
        self.control.persist(&saved);
        install(&self.shared, &saved, &bases);
        self.control.active.store(true, Ordering::Release);
        info!(
            "reshard of {} {}",
            saved.pools[0].pool,
            if saved.cancelled {
                "cancelling"
            } else {
                "started"
            }
        );
        // Requests routed with the previous ring may still be in flight; let them land
        // before the first scan so none creates a key behind the scan.
        let grace = Duration::from_millis(bases[0].timeout_ms.unwrap_or(500).clamp(200, 2000));
        self.quiesce(grace).await;
        loop {
            self.estimate_total(&saved).await;
            match self.move_all(&mut saved, grace).await {
                Ok(()) => break,
                Err(Stop::Shutdown) => return,
                Err(Stop::Cancel) => {
                    for p in &mut saved.pools {
                        for m in &mut p.members {
                            std::mem::swap(&mut m.old_weight, &mut m.new_weight);
                        }
                    }
                    saved.cancelled = !saved.cancelled;
                    saved.sources_done.clear();
                    saved.paused = false;
                    // Keys of every part may be on either owner now: all are asked about.
                    saved.phases = 1;
                    saved.phase = 0;
                    {
                        let mut st = self.control.st.lock();
                        st.cancel = false;
                        st.keys_scanned = 0;
                        st.state = if saved.cancelled {
                            "cancelling"
                        } else {
                            "running"
                        };
                    }
                    self.control.persist(&saved);
                    install(&self.shared, &saved, &bases);
                    info!("reshard of {} reversed", saved.pools[0].pool);
                    self.quiesce(grace).await;
                }
            }
        }
        saved.done = true;
        saved.paused = false;
        self.control.persist(&saved);
        install(&self.shared, &saved, &bases);
        self.control.active.store(false, Ordering::Release);
        self.control.set_state("done");
        info!(
            "reshard of {} finished: {} keys, {} bytes moved",
            saved.pools[0].pool, saved.keys_moved, saved.bytes_moved
        );
    }

    /// Waits until every client batch routed with an earlier ring is answered (at most
    /// `max`: a batch can sit in a blocking command; after `max` its request has either
    /// landed or is the client's timeout to deal with, as in twemproxy).
    async fn quiesce(&self, max: Duration) {
        let t = Instant::now();
        if self.shared.gate.quiesce(max).await {
            info!("reshard: earlier routing drained in {:?}", t.elapsed());
        } else {
            warn!("reshard: batches routed with the earlier ring still in flight after {max:?}; going on");
        }
    }

    /// Sums the old owners' key counts (for progress and ETA).
    async fn estimate_total(&self, saved: &Saved) {
        let topo = self.shared.topology();
        let Some(pi) = pool_index(&self.shared, &saved.pools[0].pool) else {
            return;
        };
        let pool = &topo.pools[pi];
        let mut total = 0;
        for (i, m) in saved.pools[0].members.iter().enumerate() {
            if m.old_weight == 0 || saved.sources_done.contains(&m.effective_name()) {
                continue;
            }
            let addr = &pool.servers[i].primary;
            total += plain::count_keys(&pool.cfg, addr).await.unwrap_or(0);
        }
        self.control.st.lock().keys_total = total;
    }

    /// Checks pause/cancel/stop between batches; waits while paused.
    async fn checkpoint(&self, saved: &SavedCell<'_>) -> Result<(), Stop> {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Err(Stop::Shutdown);
            }
            let (pause, cancel) = {
                let st = self.control.st.lock();
                (st.pause, st.cancel)
            };
            if cancel {
                return Err(Stop::Cancel);
            }
            {
                let mut saved = saved.borrow_mut();
                if pause != saved.paused {
                    saved.paused = pause;
                    self.control.persist(&saved);
                    self.control.set_state(if pause {
                        "paused"
                    } else if saved.cancelled {
                        "cancelling"
                    } else {
                        "running"
                    });
                }
            }
            if !pause {
                return Ok(());
            }
            tokio::select! {
                () = self.control.wake.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    /// Moves every unfinished source, all at once (each source's scan and its batches
    /// overlap too, see [`move_source`](Self::move_source)).
    /// Moves every part of the key-hash space in turn (one part unless the move is
    /// phased), persisting each finished part and installing the next.
    async fn move_all(&self, saved: &mut Saved, grace: Duration) -> Result<(), Stop> {
        loop {
            self.move_phase(saved).await?;
            if saved.phase + 1 >= saved.phases {
                return Ok(());
            }
            saved.phase += 1;
            saved.sources_done.clear();
            self.control.persist(saved);
            install(&self.shared, saved, &self.bases(saved));
            self.quiesce(grace).await;
        }
    }

    /// Moves the current part from every unfinished source, all at once.
    async fn move_phase(&self, saved: &mut Saved) -> Result<(), Stop> {
        let todo: Vec<usize> = saved.pools[0]
            .members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.old_weight != 0 && !saved.sources_done.contains(&m.effective_name()))
            .map(|(i, _)| i)
            .collect();
        let cell = RefCell::new(saved);
        let results = futures_util::future::join_all(todo.into_iter().map(|i| {
            let cell = &cell;
            async move {
                self.move_source(cell, i).await?;
                let mut saved = cell.borrow_mut();
                let name = saved.pools[0].members[i].effective_name();
                saved.sources_done.push(name);
                self.control.persist(&saved);
                Ok(())
            }
        }))
        .await;
        // Every source stops at its next checkpoint on a shutdown or cancel.
        let mut out = Ok(());
        for r in results {
            match r {
                Err(Stop::Shutdown) => return Err(Stop::Shutdown),
                Err(Stop::Cancel) => out = Err(Stop::Cancel),
                Ok(()) => {}
            }
        }
        out
    }

    /// Scans old owner `src` to the end, moving every key whose new owner is elsewhere:
    /// one scanner feeds batches to [`parallel`] movers, each with its own connection to
    /// the source, so scanning, serializing, importing and deleting overlap.
    async fn move_source(&self, saved: &SavedCell<'_>, src: usize) -> Result<(), Stop> {
        let pool_name = saved.borrow().pools[0].pool.clone();
        if let Some(groups) = self.source_ranges(&pool_name, src) {
            if groups.is_empty() {
                return Ok(()); // nothing of this source changes owner
            }
            if self.move_ranges(saved, &pool_name, src, &groups).await? {
                return Ok(());
            }
            warn!(
                "reshard: source {src} does not know SHOAL.MIGRATE ... SCAN; scanning it with SCAN"
            );
        }
        let movers = tuning().1;
        let feed = Feed {
            queue: RefCell::new(VecDeque::new()),
            more: tokio::sync::Notify::new(),
            room: tokio::sync::Notify::new(),
            movers,
            stopped: RefCell::new(None),
        };
        let Feed {
            queue,
            more,
            room,
            stopped,
            ..
        } = &feed;
        // Set when the scan is over (or stopped): movers leave once the queue is empty.
        let scan_over = std::cell::Cell::new(false);
        let scanner = async {
            let r = self.scan_source(saved, &pool_name, src, &feed).await;
            scan_over.set(true);
            more.notify_waiters();
            r
        };
        let mover = || async {
            let mut conn: Option<Rpc> = None;
            loop {
                if stopped.borrow().is_some() {
                    return;
                }
                let job = queue.borrow_mut().pop_front();
                let Some((dst, keys)) = job else {
                    if scan_over.get() {
                        return;
                    }
                    let wait = more.notified();
                    if queue.borrow().is_empty() && !scan_over.get() {
                        wait.await;
                    }
                    continue;
                };
                room.notify_one();
                if let Err(e) = self
                    .migrate(saved, &pool_name, src, dst, &keys, &mut conn)
                    .await
                {
                    stopped.borrow_mut().get_or_insert(e);
                    room.notify_waiters();
                    more.notify_waiters();
                    return;
                }
            }
        };
        let (scanned, _) = tokio::join!(
            scanner,
            futures_util::future::join_all((0..movers).map(|_| mover()))
        );
        if let Some(e) = stopped.borrow_mut().take() {
            return Err(e);
        }
        scanned
    }

    /// For a Shoal pool on a ketama ring: the key-hash ranges that move off `src`, grouped
    /// by destination. None: the source is moved by SCAN and key lists instead.
    fn source_ranges(&self, pool_name: &str, src: usize) -> Option<Vec<RangeGroup>> {
        let topo = self.shared.topology();
        let pool = &topo.pools[pool_index(&self.shared, pool_name)?];
        if pool.cfg.backend != BackendKind::Shoal {
            return None;
        }
        let m = pool.moving.as_ref()?;
        // A phased move takes the current part of the hash space only.
        let (plo, phi) = match m.phase {
            Some((groups, current)) => crate::topology::group_bounds(current, groups),
            None => (0, u32::MAX),
        };
        let mut groups: Vec<RangeGroup> = Vec::new();
        for (lo, hi, dst) in moving_ranges(&m.old, &m.new, src)? {
            let (lo, hi) = (lo.max(plo), hi.min(phi));
            if lo > hi {
                continue;
            }
            match groups.iter_mut().find(|g| g.0 == dst) {
                Some(g) => g.1.push((lo, hi)),
                None => groups.push((dst, vec![(lo, hi)])),
            }
        }
        Some(groups)
    }

    /// Moves the keys of `src` in `groups` (destination, hash ranges) with the `SCAN`
    /// form of `SHOAL.MIGRATE`: the source finds, serializes and sends the keys itself, so
    /// no key name travels through the proxy. Each destination's ranges are moved by
    /// [`MOVERS`] slices of the source's keyspace at once. Ok(false): the source does not
    /// know the form (an older shoal-server).
    async fn move_ranges(
        &self,
        saved: &SavedCell<'_>,
        pool_name: &str,
        src: usize,
        groups: &[RangeGroup],
    ) -> Result<bool, Stop> {
        let slices = tuning().1;
        for (dst, ranges) in groups {
            let results = futures_util::future::join_all(
                (0..slices)
                    .map(|i| self.move_slice(saved, pool_name, src, *dst, ranges, (i, slices))),
            )
            .await;
            for r in results {
                if !r? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// One slice of [`move_ranges`](Self::move_ranges): `SHOAL.MIGRATE … SCAN` calls from
    /// cursor 0 until the source says the slice is done. A failed-over source restarts the
    /// slice on its new primary (a cursor means nothing there; moved keys are gone, so a
    /// second pass only finds what is left).
    async fn move_slice(
        &self,
        saved: &SavedCell<'_>,
        pool_name: &str,
        src: usize,
        dst: usize,
        ranges: &[(u32, u32)],
        (slice, slices): (usize, usize),
    ) -> Result<bool, Stop> {
        let nums: Vec<String> = ranges
            .iter()
            .flat_map(|(lo, hi)| [lo.to_string(), hi.to_string()])
            .collect();
        let (slice_s, slices_s) = (slice.to_string(), slices.to_string());
        let timeout_s = MIGRATE_TIMEOUT_MS.to_string();
        let mut conn: Option<Rpc> = None;
        let mut cursor = 0u64;
        let mut scanned_on = String::new();
        loop {
            self.checkpoint(saved).await?;
            let topo = self.shared.topology();
            let Some(pi) = pool_index(&self.shared, pool_name) else {
                return Err(Stop::Shutdown);
            };
            let pool = &topo.pools[pi];
            let src_addr = pool.servers[src].primary.clone();
            if scanned_on != src_addr {
                cursor = 0;
                conn = None;
                scanned_on.clone_from(&src_addr);
            }
            if conn.is_none() {
                match Rpc::connect(&src_addr, pool.cfg.redis_auth.as_deref()).await {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        self.control.set_error(format!("source {src_addr}: {e}"));
                        tokio::time::sleep(RETRY_PAUSE * 4).await;
                        continue;
                    }
                }
            }
            let (host, port) = split_addr(&pool.servers[dst].primary);
            let port_s = port.to_string();
            let limit = batch_size();
            let limit_s = limit.to_string();
            // A throttled move reserves its keys before the call, so the slices of all
            // sources together never burst past the rate.
            let reserved = if RATE_KEYS.load(Ordering::Relaxed) == 0 {
                0
            } else {
                limit as u64
            };
            if reserved > 0 {
                throttle_keys(reserved).await;
            }
            let cursor_s = cursor.to_string();
            let tag = pool.cfg.hash_tag.map_or(Vec::new(), |t| t.to_vec());
            let mut args = migrate_head(&host, &port_s, &timeout_s, pool.cfg.redis_auth.as_deref());
            args.extend([
                &b"SCAN"[..],
                cursor_s.as_bytes(),
                b"LIMIT",
                limit_s.as_bytes(),
                b"SLICE",
                slice_s.as_bytes(),
                slices_s.as_bytes(),
                b"HASH",
                pool.cfg.hash.name().as_bytes(),
                b"TAG",
                &tag,
                b"RANGES",
            ]);
            args.extend(nums.iter().map(String::as_bytes));
            let c = conn.as_mut().expect("connected above");
            match c.call(&args).await {
                Ok(Value::Array(v)) if v.len() == 4 => {
                    let int = |i: usize| match v[i] {
                        Value::Int(n) => n.max(0) as u64,
                        _ => 0,
                    };
                    let (n, bytes, next, visited) = (int(0), int(1), int(2), int(3));
                    self.moved(saved, n as i64, bytes as i64);
                    self.control.st.lock().keys_scanned += visited;
                    // Settle the keys reserved before the call: give back what was not
                    // moved, or take what the last step moved beyond the limit.
                    if reserved > 0 {
                        settle_keys(reserved, n).await;
                    }
                    throttle_bytes(bytes).await;
                    if next == 0 {
                        return Ok(true);
                    }
                    cursor = next;
                    continue;
                }
                Ok(Value::Error(e))
                    if e.starts_with(b"ERR syntax")
                        || String::from_utf8_lossy(&e)
                            .to_ascii_lowercase()
                            .contains("unknown command") =>
                {
                    return Ok(false);
                }
                other => self.migrate_failed(other, &src_addr, &host, port, &mut conn),
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// The scanning half of [`move_source`](Self::move_source): SCANs the source, queues
    /// its moving keys grouped by new owner, keeping at most twice `movers` batches queued.
    async fn scan_source(
        &self,
        saved: &SavedCell<'_>,
        pool_name: &str,
        src: usize,
        feed: &Feed,
    ) -> Result<(), Stop> {
        let Feed {
            queue,
            more,
            room,
            movers,
            stopped,
        } = feed;
        let mut conn: Option<Rpc> = None;
        let mut cursor = b"0".to_vec();
        // The primary the cursor belongs to: after a failover the scan starts over.
        let mut scanned_on = String::new();
        let mut groups: Vec<Vec<Vec<u8>>> = Vec::new();
        loop {
            if stopped.borrow().is_some() {
                return Ok(());
            }
            self.checkpoint(saved).await?;
            let topo = self.shared.topology();
            let Some(pi) = pool_index(&self.shared, pool_name) else {
                return Err(Stop::Shutdown);
            };
            let pool = topo.pools[pi].clone();
            let addr = pool.servers[src].primary.clone();
            if scanned_on != addr {
                // The source failed over: its cursor means nothing on the new primary.
                conn = None;
                cursor = b"0".to_vec();
                scanned_on.clone_from(&addr);
            }
            if conn.is_none() {
                match plain::connect(&addr, &pool.cfg).await {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        self.control.set_error(format!("source {addr}: {e}"));
                        tokio::time::sleep(RETRY_PAUSE * 4).await;
                        continue;
                    }
                }
            }
            let c = conn.as_mut().expect("connected above");
            // SCAN (memcached: the next keys of a metadump pass).
            let (next, keys) = match plain::scan(&pool, src, c, &cursor).await {
                Ok(r) => r,
                Err(e) => {
                    self.control.set_error(format!("source {addr}: {e}"));
                    conn = None;
                    tokio::time::sleep(RETRY_PAUSE * 4).await;
                    continue;
                }
            };
            groups.clear();
            groups.resize(pool.servers.len(), Vec::new());
            let nkeys = keys.len() as u64;
            for k in keys {
                let (o, n) = pool.route(&k);
                if o == src && n != src {
                    groups[n].push(k.to_vec());
                }
            }
            let batch = batch_size();
            for (dst, keys) in groups.iter_mut().enumerate() {
                for chunk in keys.chunks(batch) {
                    loop {
                        if stopped.borrow().is_some() {
                            return Ok(());
                        }
                        let wait = room.notified();
                        if queue.borrow().len() < 2 * *movers {
                            break;
                        }
                        wait.await;
                    }
                    queue.borrow_mut().push_back((dst, chunk.to_vec()));
                    more.notify_one();
                }
            }
            self.control.st.lock().keys_scanned += nkeys;
            if next == b"0" {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// Counts a moved batch (in the state and in what STATUS shows).
    fn moved(&self, saved: &SavedCell<'_>, keys: i64, bytes: i64) {
        let mut saved = saved.borrow_mut();
        saved.keys_moved += keys.max(0) as u64;
        saved.bytes_moved += bytes.max(0) as u64;
        if let Some(s) = self.control.st.lock().saved.as_mut() {
            s.keys_moved = saved.keys_moved;
            s.bytes_moved = saved.bytes_moved;
        }
    }

    /// Moves one batch, retrying until it is moved (or the reshard is paused or cancelled).
    async fn migrate(
        &self,
        saved: &SavedCell<'_>,
        pool_name: &str,
        src: usize,
        dst: usize,
        keys: &[Vec<u8>],
        conn: &mut Option<Rpc>,
    ) -> Result<(), Stop> {
        throttle_keys(keys.len() as u64).await;
        loop {
            self.checkpoint(saved).await?;
            let topo = self.shared.topology();
            let Some(pi) = pool_index(&self.shared, pool_name) else {
                return Err(Stop::Shutdown);
            };
            let pool = &topo.pools[pi];
            let src_addr = pool.servers[src].primary.clone();
            if pool.cfg.backend != BackendKind::Shoal {
                // MIGRATE (redis) or copy-and-delete with meta commands (memcached).
                match plain::migrate(&self.plain, pool, src, dst, keys, conn).await {
                    Ok((n, b)) => {
                        self.moved(saved, n, b);
                        throttle_bytes(b.max(0) as u64).await;
                        return Ok(());
                    }
                    Err(e) => self
                        .control
                        .set_error(format!("{src_addr} -> {}: {e}", pool.servers[dst].primary)),
                }
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
            let (host, port) = split_addr(&pool.servers[dst].primary);
            if conn.as_ref().is_none_or(|c| c.addr != src_addr) {
                match plain::connect(&src_addr, &pool.cfg).await {
                    Ok(c) => *conn = Some(c),
                    Err(e) => {
                        self.control.set_error(format!("source {src_addr}: {e}"));
                        tokio::time::sleep(RETRY_PAUSE * 4).await;
                        continue;
                    }
                }
            }
            let port_s = port.to_string();
            let timeout_s = MIGRATE_TIMEOUT_MS.to_string();
            let mut args = migrate_head(&host, &port_s, &timeout_s, pool.cfg.redis_auth.as_deref());
            args.push(b"KEYS");
            args.extend(keys.iter().map(Vec::as_slice));
            let c = conn.as_mut().expect("connected above");
            match c.call(&args).await {
                Ok(Value::Int(n)) => {
                    self.moved(saved, n, 0);
                    return Ok(());
                }
                Ok(Value::Array(v)) if v.len() == 2 => {
                    if let (Value::Int(n), Value::Int(b)) = (&v[0], &v[1]) {
                        self.moved(saved, *n, *b);
                        throttle_bytes((*b).max(0) as u64).await;
                    }
                    return Ok(());
                }
                other => self.migrate_failed(other, &src_addr, &host, port, conn),
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// Records why a `SHOAL.MIGRATE` did not move its batch (a `TRYAGAIN` is no error:
    /// the keys were in another batch); drops the connection when the reply makes no sense
    /// or the link failed.
    fn migrate_failed(
        &self,
        reply: anyhow::Result<Value>,
        src_addr: &str,
        host: &str,
        port: u16,
        conn: &mut Option<Rpc>,
    ) {
        match reply {
            Ok(Value::Error(e)) => {
                let e = String::from_utf8_lossy(&e);
                if !e.starts_with("TRYAGAIN") {
                    self.control
                        .set_error(format!("{src_addr} -> {host}:{port}: {e}"));
                }
            }
            Ok(other) => {
                self.control
                    .set_error(format!("{src_addr}: SHOAL.MIGRATE answered {other:?}"));
                *conn = None;
            }
            Err(e) => {
                self.control.set_error(format!("{src_addr}: {e}"));
                *conn = None;
            }
        }
    }
}

/// The key-hash ranges (inclusive, in order) that `old` gives server `src` and `new`
/// gives another server, with that server: what a reshard moves off `src`, and where to.
/// None when a ring is not made of hash ranges (modula, random).
fn moving_ranges(old: &Ring, new: &Ring, src: usize) -> Option<Vec<(u32, u32, usize)>> {
    let (a, b) = (old.owner_ranges()?, new.owner_ranges()?);
    let (mut i, mut j) = (0, 0);
    let mut out: Vec<(u32, u32, usize)> = Vec::new();
    let mut lo = 0u32;
    // Both lists cover 0..=u32::MAX in order: sweep their intersections.
    while i < a.len() && j < b.len() {
        let hi = a[i].1.min(b[j].1);
        let dst = b[j].2;
        if a[i].2 == src && dst != src {
            match out.last_mut() {
                Some(last) if last.2 == dst && last.1.checked_add(1) == Some(lo) => last.1 = hi,
                _ => out.push((lo, hi, dst)),
            }
        }
        if hi == u32::MAX {
            break;
        }
        lo = hi + 1;
        if a[i].1 == hi {
            i += 1;
        }
        if b[j].1 == hi {
            j += 1;
        }
    }
    Some(out)
}

/// The replicas a shoal-server lists in `INFO replication` (`slaveN:ip=…,port=…`); only
/// meaningful for a pool speaking the same protocol as the address asked.
fn replicas_of(info: &str, same_protocol: bool) -> Vec<(String, u16)> {
    if !same_protocol {
        return Vec::new();
    }
    info.lines()
        .filter(|l| l.starts_with("slave") && l.contains("ip="))
        .filter_map(|l| {
            let fields = l.split_once(':')?.1;
            let get = |k: &str| {
                fields
                    .split(',')
                    .find_map(|f| f.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            };
            Some((get("ip")?.to_string(), get("port")?.parse().ok()?))
        })
        .collect()
}

/// Token bucket over keys/s (live setting; 0 = unlimited).
async fn throttle_keys(n: u64) {
    throttle(&KEY_BUCKET, RATE_KEYS.load(Ordering::Relaxed), n as f64).await;
}

async fn throttle_bytes(n: u64) {
    throttle(&BYTE_BUCKET, RATE_BYTES.load(Ordering::Relaxed), n as f64).await;
}

/// After a call that reserved `reserved` keys and moved `moved`: the difference goes back
/// to the bucket (or is taken from it).
async fn settle_keys(reserved: u64, moved: u64) {
    let rate = RATE_KEYS.load(Ordering::Relaxed);
    if moved > reserved {
        throttle(&KEY_BUCKET, rate, (moved - reserved) as f64).await;
    } else {
        throttle(&KEY_BUCKET, rate, -((reserved - moved) as f64)).await;
    }
}

static KEY_BUCKET: Mutex<Option<(Instant, f64)>> = Mutex::new(None);
static BYTE_BUCKET: Mutex<Option<(Instant, f64)>> = Mutex::new(None);

/// Takes `n` tokens (gives them back if negative) from a bucket refilled at `rate` per
/// second (burst: a tenth of a second of rate), sleeping as long as the debt requires.
async fn throttle(bucket: &Mutex<Option<(Instant, f64)>>, rate: u64, n: f64) {
    if rate == 0 {
        return;
    }
    let wait = {
        let mut b = bucket.lock();
        let now = Instant::now();
        let burst = (rate as f64 / 10.0).max(1.0);
        let (last, tokens) = b.unwrap_or((now, burst));
        let tokens = ((tokens + now.duration_since(last).as_secs_f64() * rate as f64).min(burst)
            - n)
            .min(burst);
        *b = Some((now, tokens));
        if tokens < 0.0 {
            Duration::from_secs_f64(-tokens / rate as f64)
        } else {
            Duration::ZERO
        }
    };
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_from_info() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\nslave0:ip=127.0.0.1,port=7101,state=online,offset=10,lag=0\r\nslave1:ip=127.0.0.2,port=7102,state=online,offset=10,lag=0\r\n";
        assert_eq!(
            replicas_of(info, true),
            vec![("127.0.0.1".into(), 7101), ("127.0.0.2".into(), 7102)]
        );
        assert!(replicas_of(info, false).is_empty());
    }

    #[test]
    fn port_fields() {
        let info = "# Server\r\ntcp_port:7001\r\nmemcache_port:11211\r\n";
        assert_eq!(port_field(info, "tcp_port"), 7001);
        assert_eq!(port_field(info, "memcache_port"), 11211);
        assert_eq!(port_field(info, "nope"), 0);
    }

    #[test]
    fn state_round_trips() {
        let s = Saved {
            pools: vec![PoolPlan {
                pool: "a".into(),
                members: vec![Member {
                    host: "127.0.0.1".into(),
                    port: 7001,
                    name: Some("s0".into()),
                    replicas: vec![("127.0.0.1".into(), 7101)],
                    old_weight: 1,
                    new_weight: 0,
                }],
            }],
            cancelled: false,
            paused: true,
            done: false,
            sources_done: vec!["s0".into()],
            keys_moved: 5,
            bytes_moved: 50,
            rate_keys: 100,
            rate_bytes: 0,
            phases: 4,
            phase: 2,
        };
        let dir = std::env::temp_dir().join(format!("shoal-reshard-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("state.json");
        write_atomic(&p, &s).unwrap();
        assert_eq!(load_state(&p).unwrap(), Some(s));
        // A state file from before phases: one part.
        std::fs::write(&p, r#"{"pools":[],"cancelled":false,"paused":false,"done":false,"sources_done":[],"keys_moved":0,"bytes_moved":0,"rate_keys":0,"rate_bytes":0}"#).unwrap();
        let old = load_state(&p).unwrap().expect("a state");
        assert_eq!((old.phases, old.phase), (1, 0));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(test)]
mod ring_tests {
    use super::moving_ranges;
    use shoal_client::ring::{Distribution, HashKind, Ring, RingNode};

    /// A ring over a subset of servers equals the ring over all of them with the others
    /// marked not live: the two rings of a reshard are built that way over one server list.
    #[test]
    fn masked_ring_equals_subset_ring() {
        let nodes: Vec<RingNode> = (0..5)
            .map(|i| {
                RingNode::named(
                    "127.0.0.1",
                    7000 + i,
                    1 + (i as u32 % 2),
                    format!("shard{i}"),
                )
            })
            .collect();
        for dist in [Distribution::Ketama, Distribution::Modula] {
            for mask in [
                [true, true, true, false, false],
                [true, false, true, true, true],
            ] {
                let subset: Vec<RingNode> = nodes
                    .iter()
                    .zip(mask)
                    .filter(|(_, m)| *m)
                    .map(|(n, _)| n.clone())
                    .collect();
                let idx: Vec<usize> = (0..5).filter(|&i| mask[i]).collect();
                let a = Ring::with_live(dist, HashKind::Fnv1a_64, &nodes, &mask);
                let b = Ring::new(dist, HashKind::Fnv1a_64, &subset);
                for k in 0..20_000 {
                    let key = format!("key:{k}");
                    assert_eq!(
                        a.locate(key.as_bytes()),
                        b.locate(key.as_bytes()).map(|i| idx[i]),
                        "{dist:?} {mask:?} {key}"
                    );
                }
            }
        }
    }

    #[test]
    fn moving_ranges_are_the_keys_that_move() {
        let nodes: Vec<RingNode> = (0..5)
            .map(|i| RingNode::named("127.0.0.1", 7000 + i, 1, format!("shard{i}")))
            .collect();
        // ADD (3 -> 4), REMOVE (4 -> 3 without shard1) and a weight change.
        let live =
            |m: [bool; 5]| Ring::with_live(Distribution::Ketama, HashKind::Fnv1a_64, &nodes, &m);
        let mut heavy = nodes.clone();
        heavy[2].weight = 3;
        let cases = [
            (
                live([true, true, true, false, false]),
                live([true, true, true, true, false]),
            ),
            (
                live([true, true, true, true, false]),
                live([true, false, true, true, false]),
            ),
            (
                live([true, true, true, false, false]),
                Ring::with_live(
                    Distribution::Ketama,
                    HashKind::Fnv1a_64,
                    &heavy,
                    &[true, true, true, false, false],
                ),
            ),
        ];
        for (n, (old, new)) in cases.iter().enumerate() {
            let mut moving = 0;
            for src in 0..5 {
                let r = moving_ranges(old, new, src).expect("ketama");
                for w in r.windows(2) {
                    assert!(w[0].1 < w[1].0, "case {n}: ranges overlap: {w:?}");
                }
                for k in 0..20_000 {
                    let key = format!("key:{k}");
                    let h = old.key_hash(key.as_bytes());
                    let to = r
                        .iter()
                        .find(|&&(lo, hi, _)| lo <= h && h <= hi)
                        .map(|r| r.2);
                    let o = old.locate(key.as_bytes());
                    let d = new.locate(key.as_bytes());
                    let moves = o == Some(src) && d != o;
                    assert_eq!(to.is_some(), moves, "case {n}, source {src}, {key}");
                    if moves {
                        assert_eq!(to, d, "case {n}, source {src}, {key}: destination");
                    }
                    moving += usize::from(moves);
                }
            }
            assert!(moving > 1_000, "case {n}: only {moving} keys move");
        }
        let modula = Ring::new(Distribution::Modula, HashKind::Fnv1a_64, &nodes);
        assert!(moving_ranges(&modula, &modula, 0).is_none());
    }

    #[test]
    fn hash_groups_and_bounds_agree() {
        use crate::topology::{group_bounds, hash_group};
        for groups in [1, 2, 3, 4, 7, 8] {
            let mut next = 0u64;
            for g in 0..groups {
                let (lo, hi) = group_bounds(g, groups);
                assert_eq!(
                    u64::from(lo),
                    next,
                    "{groups} parts: part {g} starts where {} ended",
                    g.max(1) - 1
                );
                assert!(lo <= hi);
                for h in [lo, hi, lo + (hi - lo) / 2] {
                    assert_eq!(hash_group(h, groups), g, "{groups} parts, hash {h}");
                }
                next = u64::from(hi) + 1;
            }
            assert_eq!(next, 1 << 32);
        }
    }
}
