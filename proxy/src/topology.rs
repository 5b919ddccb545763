//! The proxy's view of its pools: which servers exist, which address is each server's
//! primary, which are its replicas, which are ejected, and the ring over the live ones.
//!
//! A [`Topology`] is an immutable snapshot. Workers cache an `Arc` of it and compare a
//! version counter (one relaxed atomic load per batch) to notice a new one; the health
//! checker, failover and config reload publish new snapshots. Nothing on the request path
//! takes a lock.
//!
//! A [`RouteGate`] tells a publisher when every batch routed with an older snapshot has
//! been answered (the reshard waits for it before scanning: a write routed by the old
//! ring must land before the scan can see it).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::RwLock;
use shoal_client::ring::Ring;

use crate::config::{PoolConfig, ProxyConfig};

/// Health counters of one backend address, shared by every worker's connections to it.
#[derive(Debug, Default)]
pub struct ServerHealth {
    /// Consecutive failures (connect errors, broken connections, timeouts, failed probes).
    pub failures: AtomicU32,
    /// All failures since start.
    pub failures_total: AtomicU64,
    /// Successful connects since start.
    pub connects_total: AtomicU64,
    /// Whether the last probe answered.
    pub probe_ok: AtomicBool,
    /// Requests written to this address (all threads).
    pub requests_total: AtomicU64,
    /// Replication offset at the last sample (read-your-writes): a primary's
    /// `master_repl_offset`, or a replica's offset acknowledged to its primary.
    pub repl_offset: AtomicU64,
    /// When the primary's last sample was started ([`now_us`]); 0 = never.
    pub sample_at_us: AtomicU64,
}

/// Microseconds since the proxy started (a monotonic clock shared by all threads).
pub fn now_us() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_micros() as u64
        + 1
}

impl ServerHealth {
    /// Records a failure.
    pub fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.failures_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a successful connect (resets the consecutive count).
    pub fn connected(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.connects_total.fetch_add(1, Ordering::Relaxed);
    }
}

/// One server slot of a pool (a ring position): its current primary and replicas.
#[derive(Clone, Debug)]
pub struct ServerView {
    /// The server's name on the ring (its configured name, else `host:port`).
    pub name: String,
    /// `host:port` of the current primary.
    pub primary: String,
    /// `host:port` of each replica.
    pub replicas: Vec<String>,
    /// The replicas that answered their last probe: the ones reads may go to.
    pub readable: Vec<String>,
    /// False while ejected (`auto_eject_hosts`).
    pub live: bool,
    /// Replication epoch the proxy last promoted with (0: never).
    pub epoch: u64,
}

/// One pool.
pub struct PoolView {
    /// Its configuration.
    pub cfg: Arc<PoolConfig>,
    /// The ring over the live servers.
    pub ring: Ring,
    /// Server slots, in config order (ring indices). While a reshard runs: every server of
    /// the old ring and of the new one.
    pub servers: Vec<ServerView>,
    /// While a reshard runs: where keys are now and where they are going.
    pub moving: Option<Arc<Moving>>,
}

/// The two rings of a reshard in progress, both over [`PoolView::servers`] indices. A key
/// whose owners differ lives on its old owner until the migrator moves it, then on its
/// new owner (docs/resharding.md); `ring` routes by the old one for everything else.
pub struct Moving {
    pub old: Ring,
    pub new: Ring,
    /// Phased moves (ketama Shoal pools): `(groups, current)`. The key-hash space is cut
    /// in `groups` equal parts moved one after the other; a moving key of a part before
    /// `current` is on its new owner, after it still on its old owner (both are routed
    /// there directly), and only the keys of part `current` are asked about. None: every
    /// moving key is asked about (always correct, wherever the key is).
    pub phase: Option<(usize, usize)>,
}

/// Which of `groups` equal parts of the 32-bit key-hash space `h` is in.
#[inline]
pub fn hash_group(h: u32, groups: usize) -> usize {
    ((u64::from(h) * groups as u64) >> 32) as usize
}

/// The inclusive key-hash range of part `g` of `groups` (see [`hash_group`]).
pub fn group_bounds(g: usize, groups: usize) -> (u32, u32) {
    let start = |g: usize| ((g as u64) << 32).div_ceil(groups as u64);
    let lo = start(g);
    let hi = if g + 1 >= groups {
        u64::from(u32::MAX)
    } else {
        start(g + 1) - 1
    };
    (lo as u32, hi as u32)
}

impl PoolView {
    /// Builds a pool view with every server live and its configured primary.
    pub fn from_config(cfg: Arc<PoolConfig>) -> PoolView {
        let servers: Vec<ServerView> = cfg
            .servers
            .iter()
            .map(|s| ServerView {
                name: s
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{}:{}", s.host, s.port)),
                primary: format!("{}:{}", s.host, s.port),
                replicas: s.replicas.iter().map(|(h, p)| format!("{h}:{p}")).collect(),
                readable: s.replicas.iter().map(|(h, p)| format!("{h}:{p}")).collect(),
                live: true,
                epoch: 0,
            })
            .collect();
        let ring = build_ring(&cfg, &servers);
        PoolView {
            cfg,
            ring,
            servers,
            moving: None,
        }
    }

    /// A pool in the middle of a reshard: `cfg.servers` lists every server of either ring;
    /// `old_weight[i]` / `new_weight[i]` are server `i`'s weight on each ring (0: not on it).
    /// Ejection is suspended while keys move: both rings are fixed by membership.
    pub fn resharding(
        cfg: Arc<PoolConfig>,
        old_weight: &[u32],
        new_weight: &[u32],
        phase: Option<(usize, usize)>,
    ) -> PoolView {
        let base = PoolView::from_config(cfg);
        let ring_of = |w: &[u32]| {
            let nodes: Vec<_> = base
                .cfg
                .servers
                .iter()
                .zip(w)
                .map(|(s, &w)| {
                    let mut n = s.ring_node();
                    n.weight = w.max(1);
                    n
                })
                .collect();
            let live: Vec<bool> = w.iter().map(|&w| w > 0).collect();
            Ring::with_live(base.cfg.distribution, base.cfg.hash, &nodes, &live)
        };
        let moving = Moving {
            old: ring_of(old_weight),
            new: ring_of(new_weight),
            phase,
        };
        PoolView {
            ring: ring_of(old_weight),
            moving: Some(Arc::new(moving)),
            ..base
        }
    }

    /// A copy with different server views (and the ring rebuilt over the live ones).
    pub fn with_servers(&self, servers: Vec<ServerView>) -> PoolView {
        if let Some(m) = &self.moving {
            // Rings are fixed while keys move (see `resharding`).
            let ring = m.old.clone();
            return PoolView {
                cfg: self.cfg.clone(),
                ring,
                servers,
                moving: Some(m.clone()),
            };
        }
        let ring = build_ring(&self.cfg, &servers);
        PoolView {
            cfg: self.cfg.clone(),
            ring,
            servers,
            moving: None,
        }
    }

    /// Where a request for `key` goes: `(old owner, new owner)`, equal unless a reshard
    /// moves the key and it must be asked about on its old owner. In a phased move a key
    /// whose part of the hash space has moved already gets `(new, new)`, one whose part
    /// has not started `(old, old)` (see [`Moving::phase`]).
    #[inline]
    pub fn route(&self, key: &[u8]) -> (usize, usize) {
        let k = shoal_client::ring::hash_tag(key, self.cfg.hash_tag);
        match &self.moving {
            None => {
                let s = self.ring.locate(k).unwrap_or(0);
                (s, s)
            }
            Some(m) => {
                let (o, n) = (m.old.locate(k).unwrap_or(0), m.new.locate(k).unwrap_or(0));
                match m.phase {
                    Some((groups, current)) if o != n => {
                        let g = hash_group(m.old.key_hash(k), groups);
                        if g < current {
                            (n, n)
                        } else if g > current {
                            (o, o)
                        } else {
                            (o, n)
                        }
                    }
                    _ => (o, n),
                }
            }
        }
    }

    /// Server index for a key (hash tag applied here).
    #[inline]
    pub fn locate(&self, key: &[u8]) -> Option<usize> {
        let k = shoal_client::ring::hash_tag(key, self.cfg.hash_tag);
        self.ring.locate(k)
    }
}

fn build_ring(cfg: &PoolConfig, servers: &[ServerView]) -> Ring {
    let nodes: Vec<_> = cfg.servers.iter().map(|s| s.ring_node()).collect();
    let live: Vec<bool> = servers.iter().map(|s| s.live).collect();
    Ring::with_live(cfg.distribution, cfg.hash, &nodes, &live)
}

/// A snapshot of every pool.
pub struct Topology {
    /// Bumped on every change.
    pub version: u64,
    /// Pools in config order.
    pub pools: Vec<Arc<PoolView>>,
}

/// One worker thread's in-flight batch counters, by the parity of the epoch each batch
/// entered under.
#[derive(Default)]
pub struct GateCounts([AtomicU64; 2]);

/// Epoch-based quiescence for routing (RCU's grace period over batches): each batch
/// takes a [`RouteTicket`] *before* it reads the topology version and gives it back once
/// all its replies are in. [`RouteGate::quiesce`], called after publishing a snapshot,
/// flips the epoch and waits until no ticket of the previous epoch is left: every batch
/// that could have routed with an older snapshot has then been answered.
///
/// Why it is enough: a batch that read the old version took its ticket before that read,
/// and the read came before the publish, which comes before the flip and the wait's
/// first look at the counters (all `SeqCst`), so the wait sees the ticket. A batch that
/// took its ticket in the old epoch but read the version after the publish routes with
/// the new snapshot (it is waited for needlessly, which is harmless).
#[derive(Default)]
pub struct RouteGate {
    epoch: AtomicU64,
    workers: parking_lot::Mutex<Vec<Arc<GateCounts>>>,
}

impl RouteGate {
    /// Counters for a new worker thread.
    pub fn register(&self) -> Arc<GateCounts> {
        let c = Arc::new(GateCounts::default());
        self.workers.lock().push(c.clone());
        c
    }

    /// Enters a batch (take it before reading the topology version).
    #[inline]
    pub fn enter<'a>(&self, counts: &'a GateCounts) -> RouteTicket<'a> {
        let parity = (self.epoch.load(Ordering::SeqCst) & 1) as usize;
        let c = &counts.0[parity];
        c.fetch_add(1, Ordering::SeqCst);
        RouteTicket(c)
    }

    /// Waits (up to `max`) until every batch that entered before this call is answered;
    /// false if `max` passed first (a batch blocked in BLPOP, say). Call it after
    /// publishing the snapshot, and from one thread at a time.
    pub async fn quiesce(&self, max: std::time::Duration) -> bool {
        std::sync::atomic::fence(Ordering::SeqCst);
        let old = (self.epoch.fetch_add(1, Ordering::SeqCst) & 1) as usize;
        let deadline = std::time::Instant::now() + max;
        loop {
            let busy: u64 = self
                .workers
                .lock()
                .iter()
                .map(|w| w.0[old].load(Ordering::SeqCst))
                .sum();
            if busy == 0 {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
}

/// A session pinned to one server for a while (a transaction or WATCH), counted like a
/// batch in flight until it unpins, so a phased reshard does not move a key of the next
/// part of the hash space while a transaction that routed by the earlier phase is open
/// (see [`Moving::phase`]).
pub struct OwnedRouteTicket {
    counts: Arc<GateCounts>,
    parity: usize,
}

impl RouteGate {
    /// An [`OwnedRouteTicket`] on `counts`.
    pub fn enter_owned(&self, counts: &Arc<GateCounts>) -> OwnedRouteTicket {
        let parity = (self.epoch.load(Ordering::SeqCst) & 1) as usize;
        counts.0[parity].fetch_add(1, Ordering::SeqCst);
        OwnedRouteTicket {
            counts: counts.clone(),
            parity,
        }
    }
}

impl Drop for OwnedRouteTicket {
    fn drop(&mut self) {
        self.counts.0[self.parity].fetch_sub(1, Ordering::SeqCst);
    }
}

/// A batch in flight (see [`RouteGate`]); leaves on drop.
pub struct RouteTicket<'a>(&'a AtomicU64);

impl Drop for RouteTicket<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// State shared by every thread of the proxy.
pub struct Shared {
    /// Quiescence of batches routed with older snapshots.
    pub gate: RouteGate,
    /// The reshard controller (admin commands, reload and the control thread use it).
    pub reshard: Arc<crate::reshard::Control>,
    topo: RwLock<Arc<Topology>>,
    version: AtomicU64,
    health: DashMap<String, Arc<ServerHealth>>,
}

impl Shared {
    /// Initial topology from a configuration.
    pub fn new(cfg: &ProxyConfig) -> Shared {
        Shared::with_state_file(cfg, None)
    }

    /// Initial topology, with reshard state persisted to `state_file`.
    pub fn with_state_file(cfg: &ProxyConfig, state_file: Option<std::path::PathBuf>) -> Shared {
        let pools = cfg
            .pools
            .iter()
            .map(|p| Arc::new(PoolView::from_config(Arc::new(p.clone()))))
            .collect();
        Shared {
            reshard: Arc::new(crate::reshard::Control::new(state_file, &cfg.pools)),
            topo: RwLock::new(Arc::new(Topology { version: 1, pools })),
            gate: RouteGate::default(),
            version: AtomicU64::new(1),
            health: DashMap::new(),
        }
    }

    /// The current snapshot.
    pub fn topology(&self) -> Arc<Topology> {
        self.topo.read().clone()
    }

    /// Version of the current snapshot (cheap; compare with a cached snapshot's).
    #[inline]
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Replaces pool `idx`'s view.
    pub fn update_pool(&self, idx: usize, view: PoolView) {
        let mut t = self.topo.write();
        let mut pools = t.pools.clone();
        pools[idx] = Arc::new(view);
        let version = t.version + 1;
        *t = Arc::new(Topology { version, pools });
        self.version.store(version, Ordering::Release);
    }

    /// Replaces every pool (config reload keeping the listeners).
    pub fn replace_pools(&self, pools: Vec<Arc<PoolView>>) {
        let mut t = self.topo.write();
        let version = t.version + 1;
        *t = Arc::new(Topology { version, pools });
        self.version.store(version, Ordering::Release);
    }

    /// Every address's health counters (for `/metrics`).
    pub fn all_health(&self) -> Vec<(String, Arc<ServerHealth>)> {
        self.health
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect()
    }

    /// Health counters of one address.
    pub fn health(&self, addr: &str) -> Arc<ServerHealth> {
        if let Some(h) = self.health.get(addr) {
            return h.clone();
        }
        self.health
            .entry(addr.to_string())
            .or_insert_with(|| Arc::new(ServerHealth::default()))
            .clone()
    }
}
