//! `shoal-keyspace`: the storage of one Shoal shard member.
//!
//! Sits below the command layer (`shoal-server`'s `exec`), above nothing: no
//! tokio, no sockets, no protocol. Time is passed in (`now_ms`, unix
//! milliseconds) so tests can drive a virtual clock.
//!
//! ```text
//!  Keyspace
//!   ├─ shards: [CachePadded<Mutex<Shard>>; N]   key -> shard by hash bits 32..48
//!   │     └─ RawTable<Entry>                     one thin allocation per key
//!   ├─ used: AtomicIsize                         accounted bytes (entries + tables)
//!   ├─ maxmemory, policy                         eviction runs before writes
//!   └─ cas: AtomicU64                            memcache CAS ids, one sequence
//! ```
//!
//! Invariants: a key lives in exactly one shard; `used` equals the sum of every
//! shard's entry allocation costs and table sizes; an expired entry is never
//! returned by a lookup (it is reclaimed lazily on access and actively by
//! [`Keyspace::active_expire_cycle`]).
//!
//! Locking: one short `parking_lot` mutex per shard, never held across an await
//! (there are none here). Multi-key operations lock shards in index order via
//! [`Keyspace::lock_many`], so they cannot deadlock each other.

#![warn(missing_docs)]

mod entry;
mod object;
mod policy;
mod shard;
pub mod types;

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicIsize, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use crossbeam::utils::CachePadded;
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

pub use entry::{Entry, Kind, Meta};
pub use object::{Object, ObjectKind};
pub use policy::{EvictionPolicy, UnknownPolicy, LFU_INIT_VAL};
pub use shard::{alloc_cost, entry_cost, Removal, Shard, ShardGuard, Wake};

/// Default number of shards (locks). Enough that 16 threads rarely meet.
pub const DEFAULT_SHARDS: usize = 256;

/// Every [`Keyspace::scan`] cursor is below `2^SCAN_CURSOR_BITS`: a proxy that
/// spreads one SCAN over several servers keeps its server index in the bits above.
pub const SCAN_CURSOR_BITS: u32 = 54;
/// Bucket index bits of a scan cursor (a shard's table has fewer buckets).
const BUCKET_BITS: u64 = (1 << 32) - 1;
/// Table-rebuild count bits of a scan cursor (bits 40..54).
const LAYOUT_BITS: u64 = (1 << 14) - 1;

/// The keyspace shard a scan cursor is in.
pub fn scan_cursor_shard(cursor: u64) -> usize {
    ((cursor >> 32) & 0xff) as usize
}

/// The scan cursor that starts at `shard`'s first bucket.
pub fn scan_cursor_at_shard(shard: usize) -> u64 {
    ((shard as u64) & 0xff) << 32
}

/// Configuration of a [`Keyspace`].
#[derive(Clone, Debug)]
pub struct KeyspaceConfig {
    /// Number of shards; 1 to 256.
    pub shards: usize,
    /// Memory limit in bytes; 0 = unlimited.
    pub maxmemory: u64,
    /// What to evict when over `maxmemory`.
    pub policy: EvictionPolicy,
    /// Redis `lfu-log-factor`.
    pub lfu_log_factor: u32,
    /// Redis `lfu-decay-time`, minutes.
    pub lfu_decay_time: u32,
}

impl Default for KeyspaceConfig {
    fn default() -> Self {
        KeyspaceConfig {
            shards: DEFAULT_SHARDS,
            maxmemory: 0,
            policy: EvictionPolicy::NoEviction,
            lfu_log_factor: 10,
            lfu_decay_time: 1,
        }
    }
}

/// A write was refused because memory is full and nothing may be evicted.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
#[error("used memory above maxmemory and nothing can be evicted")]
pub struct OutOfMemory;

/// Called for every key removed by expiry or eviction (replication turns these into deletes).
pub type RemovalObserver = Arc<dyn Fn(&[u8], Removal) + Send + Sync>;

/// Called (under the shard's lock) the first time a shard is locked after
/// [`Keyspace::begin_snapshot`]: replication serializes the shard there, before
/// anything can change it, which makes the snapshot consistent without a fork.
pub type SnapshotHook = Arc<dyn Fn(&ShardGuard<'_>) + Send + Sync>;

thread_local! {
    /// Keyspace writes made by this thread (put, delete, meta/collection edits,
    /// flush): replication compares it around a command to know whether it wrote.
    static WRITES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// Whether this thread may reclaim expired keys in guarded mode.
    static RECLAIM_PERMIT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Keyspace writes made by the calling thread so far (a cheap thread-local count).
#[inline]
pub fn thread_writes() -> u64 {
    WRITES.with(|w| w.get())
}

#[inline]
pub(crate) fn bump_writes() {
    WRITES.with(|w| w.set(w.get().wrapping_add(1)));
}

/// In guarded mode ([`Keyspace::set_guarded_reclaim`]) only a thread holding the
/// permit reclaims expired keys or evicts; returns the previous setting.
pub fn set_reclaim_permit(on: bool) -> bool {
    RECLAIM_PERMIT.with(|p| p.replace(on))
}

/// Totals over all shards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyspaceStats {
    /// Keys, including expired ones not yet reclaimed.
    pub keys: u64,
    /// Keys with a TTL.
    pub volatile: u64,
    /// Read lookups that found a key.
    pub hits: u64,
    /// Read lookups that found nothing.
    pub misses: u64,
    /// Keys reclaimed because their TTL passed.
    pub expired: u64,
    /// Keys evicted for memory.
    pub evicted: u64,
}

/// The sharded keyspace. Share it with `Arc`.
pub struct Keyspace {
    shards: Box<[CachePadded<Mutex<Shard>>]>,
    hasher: foldhash::fast::FixedState,
    used: CachePadded<AtomicIsize>,
    cas: CachePadded<AtomicU64>,
    maxmemory: AtomicU64,
    policy: AtomicU8,
    lfu_log_factor: AtomicU32,
    lfu_decay_time: AtomicU32,
    observer: parking_lot::RwLock<Option<RemovalObserver>>,
    has_observer: std::sync::atomic::AtomicBool,
    guarded: std::sync::atomic::AtomicBool,
    evict_disabled: std::sync::atomic::AtomicBool,
    snap_active: std::sync::atomic::AtomicBool,
    snap_pending: Box<[std::sync::atomic::AtomicBool]>,
    snap_hook: parking_lot::RwLock<Option<SnapshotHook>>,
}

impl Keyspace {
    /// Creates an empty keyspace.
    pub fn new(cfg: KeyspaceConfig) -> Keyspace {
        // SCAN cursors have 8 bits for the shard.
        let shards = (0..cfg.shards.clamp(1, 256))
            .map(|_| CachePadded::new(Mutex::new(Shard::new())))
            .collect();
        Keyspace {
            shards,
            hasher: foldhash::fast::FixedState::with_seed(rand::thread_rng().gen()),
            used: CachePadded::new(AtomicIsize::new(0)),
            cas: CachePadded::new(AtomicU64::new(0)),
            maxmemory: AtomicU64::new(cfg.maxmemory),
            policy: AtomicU8::new(cfg.policy as u8),
            lfu_log_factor: AtomicU32::new(cfg.lfu_log_factor),
            lfu_decay_time: AtomicU32::new(cfg.lfu_decay_time),
            observer: parking_lot::RwLock::new(None),
            has_observer: std::sync::atomic::AtomicBool::new(false),
            guarded: std::sync::atomic::AtomicBool::new(false),
            evict_disabled: std::sync::atomic::AtomicBool::new(false),
            snap_active: std::sync::atomic::AtomicBool::new(false),
            snap_pending: (0..cfg.shards.max(1))
                .map(|_| std::sync::atomic::AtomicBool::new(false))
                .collect(),
            snap_hook: parking_lot::RwLock::new(None),
        }
    }

    /// Guarded mode (replication): expired keys are reclaimed, and keys evicted,
    /// only by a thread holding the permit ([`set_reclaim_permit`]); others see
    /// an expired key as missing but leave it in place.
    pub fn set_guarded_reclaim(&self, on: bool) {
        self.guarded.store(on, Ordering::SeqCst);
    }

    /// Whether the calling thread may reclaim expired keys now.
    #[inline]
    pub(crate) fn may_reclaim(&self) -> bool {
        !self.guarded.load(Ordering::Relaxed) || RECLAIM_PERMIT.with(|p| p.get())
    }

    /// Disables eviction ([`make_room`](Self::make_room) always succeeds): replicas
    /// delete only what their primary deletes.
    pub fn set_evict_disabled(&self, on: bool) {
        self.evict_disabled.store(on, Ordering::SeqCst);
    }

    /// Starts a shard-granular copy-on-access snapshot: every shard is marked
    /// pending, and the first [`lock_shard`](Self::lock_shard) of a pending shard
    /// runs `hook` on it before the caller sees it.
    pub fn begin_snapshot(&self, hook: SnapshotHook) {
        *self.snap_hook.write() = Some(hook);
        for p in self.snap_pending.iter() {
            p.store(true, Ordering::SeqCst);
        }
        self.snap_active.store(true, Ordering::SeqCst);
    }

    /// Shards not yet passed to the snapshot hook.
    pub fn snapshot_pending(&self) -> usize {
        self.snap_pending
            .iter()
            .filter(|p| p.load(Ordering::Acquire))
            .count()
    }

    /// Ends (or cancels) the snapshot started by [`begin_snapshot`](Self::begin_snapshot).
    pub fn end_snapshot(&self) {
        self.snap_active.store(false, Ordering::SeqCst);
        for p in self.snap_pending.iter() {
            p.store(false, Ordering::SeqCst);
        }
        *self.snap_hook.write() = None;
    }

    /// The last CAS id handed out.
    pub fn cas_counter(&self) -> u64 {
        self.cas.load(Ordering::Relaxed)
    }

    /// Sets the CAS sequence to at least `v` (replicas follow their primary's).
    pub fn raise_cas_counter(&self, v: u64) {
        self.cas.fetch_max(v, Ordering::Relaxed);
    }

    /// Sets the CAS sequence to exactly `v` (a replica after a full sync).
    pub fn set_cas_counter(&self, v: u64) {
        self.cas.store(v, Ordering::Relaxed);
    }

    /// The access word a freshly written entry gets under the current policy.
    pub fn initial_access(&self, now_ms: u64) -> u32 {
        policy::initial_access(self.policy().is_lfu(), now_ms)
    }

    /// Installs the observer of expirations and evictions.
    pub fn set_removal_observer(&self, observer: Option<RemovalObserver>) {
        self.has_observer
            .store(observer.is_some(), Ordering::Release);
        *self.observer.write() = observer;
    }

    pub(crate) fn notify_removal(&self, key: &[u8], why: Removal) {
        if why != Removal::Deleted && self.has_observer.load(Ordering::Acquire) {
            if let Some(o) = self.observer.read().as_ref() {
                o(key, why);
            }
        }
    }

    #[inline]
    pub(crate) fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The shard that owns `key`.
    #[inline]
    pub fn shard_of(&self, key: &[u8]) -> usize {
        // Bits 32..48: hashbrown uses the low bits for the bucket and the top 7
        // for its control byte, so shard choice must not reuse either.
        (((self.hash(key) >> 32) & 0xffff) as usize) % self.shards.len()
    }

    /// Locks the shard owning `key`.
    #[inline]
    pub fn lock(&self, key: &[u8]) -> ShardGuard<'_> {
        self.lock_shard(self.shard_of(key))
    }

    /// Hints the CPU to load `key`'s entry into cache (no effect on contents).
    /// Used ahead of time in pipelined batches, in two stages: `prefetch(key,
    /// false)` two requests ahead brings in the table slot, `prefetch(key, true)`
    /// one request ahead reads the slot (now cached) and brings in the entry, so
    /// both misses of a random key overlap with earlier requests. Never waits
    /// for a lock.
    pub fn prefetch(&self, key: &[u8], entry: bool) {
        let hash = self.hash(key);
        let idx = (((hash >> 32) & 0xffff) as usize) % self.shards.len();
        if let Some(shard) = self.shards[idx].try_lock() {
            // SAFETY: the iterator and the bucket do not outlive `shard`, which
            // keeps the table borrowed and unmodified; the slot is only read
            // (stage 2) or its address prefetched (stage 1).
            unsafe {
                if let Some(b) = shard.table.iter_hash(hash).next() {
                    if entry {
                        b.as_ref().prefetch();
                    } else {
                        entry::prefetch_addr(b.as_ptr() as *const u8);
                    }
                }
            }
        }
    }

    /// Locks shard `index`.
    ///
    /// # Panics
    /// If `index >= shard_count()`.
    pub fn lock_shard(&self, index: usize) -> ShardGuard<'_> {
        let g = ShardGuard {
            shard: self.shards[index].lock(),
            ks: self,
            index,
        };
        if self.snap_active.load(Ordering::Acquire)
            && self.snap_pending[index].swap(false, Ordering::AcqRel)
        {
            let hook = self.snap_hook.read().clone();
            if let Some(h) = hook {
                h(&g);
            }
        }
        g
    }

    /// Locks every shard owning one of `keys`, in index order (deadlock-free).
    pub fn lock_many<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>) -> MultiGuard<'_> {
        let mut idx: Vec<usize> = keys.into_iter().map(|k| self.shard_of(k)).collect();
        idx.sort_unstable();
        idx.dedup();
        MultiGuard {
            guards: idx.into_iter().map(|i| self.lock_shard(i)).collect(),
            ks: self,
        }
    }

    pub(crate) fn next_cas(&self) -> u64 {
        self.cas.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn add_used(&self, delta: isize) {
        self.used.fetch_add(delta, Ordering::Relaxed);
    }

    /// Accounted memory in bytes (entries at allocator chunk size plus hash tables).
    pub fn used_memory(&self) -> u64 {
        self.used.load(Ordering::Relaxed).max(0) as u64
    }

    /// The memory limit (0 = none).
    pub fn maxmemory(&self) -> u64 {
        self.maxmemory.load(Ordering::Relaxed)
    }

    /// Changes the memory limit.
    pub fn set_maxmemory(&self, bytes: u64) {
        self.maxmemory.store(bytes, Ordering::Relaxed);
    }

    /// The eviction policy.
    pub fn policy(&self) -> EvictionPolicy {
        EvictionPolicy::from_u8(self.policy.load(Ordering::Relaxed))
    }

    /// Changes the eviction policy.
    pub fn set_policy(&self, p: EvictionPolicy) {
        self.policy.store(p as u8, Ordering::Relaxed);
    }

    /// `lfu-log-factor`.
    pub fn lfu_log_factor(&self) -> u32 {
        self.lfu_log_factor.load(Ordering::Relaxed)
    }

    /// `lfu-decay-time` in minutes.
    pub fn lfu_decay_time(&self) -> u32 {
        self.lfu_decay_time.load(Ordering::Relaxed)
    }

    /// Sets the LFU tuning knobs.
    pub fn set_lfu(&self, log_factor: u32, decay_time: u32) {
        self.lfu_log_factor.store(log_factor, Ordering::Relaxed);
        self.lfu_decay_time.store(decay_time, Ordering::Relaxed);
    }

    pub(crate) fn touched_access(&self, access: u32, now_ms: u64) -> u32 {
        policy::touch(
            access,
            self.policy().is_lfu(),
            now_ms,
            self.lfu_log_factor(),
            self.lfu_decay_time(),
        )
    }

    /// LFU counter of an entry (after decay), for `OBJECT FREQ`.
    pub fn lfu_freq(&self, e: &Entry, now_ms: u64) -> u8 {
        policy::lfu_decayed(e.access(), now_ms, self.lfu_decay_time())
    }

    /// Seconds since the entry was last accessed, for `OBJECT IDLETIME`.
    pub fn idle_seconds(&self, e: &Entry, now_ms: u64) -> u64 {
        policy::idle_seconds(e.access(), now_ms)
    }

    /// Whether accounted memory exceeds `maxmemory`.
    pub fn over_limit(&self) -> bool {
        let max = self.maxmemory();
        max != 0 && self.used_memory() > max
    }

    /// Evicts keys under the current policy until memory is within `maxmemory`.
    /// Call before a write, without holding a shard lock.
    ///
    /// # Errors
    /// [`OutOfMemory`] when over the limit and the policy forbids eviction or no
    /// eligible key is left.
    pub fn make_room(&self, now_ms: u64) -> Result<(), OutOfMemory> {
        if !self.over_limit() || self.evict_disabled.load(Ordering::Relaxed) || !self.may_reclaim()
        {
            return Ok(());
        }
        let policy = self.policy();
        if policy == EvictionPolicy::NoEviction {
            return Err(OutOfMemory);
        }
        let mut rng = SmallRng::from_rng(rand::thread_rng()).expect("thread rng");
        let mut failures = 0;
        while self.over_limit() {
            // Approximate like Redis: sample a few keys from a few shards, evict the best.
            let mut best: Option<(usize, Vec<u8>, u64)> = None;
            for _ in 0..4 {
                let s = rng.gen_range(0..self.shards.len());
                let mut g = self.lock_shard(s);
                if let Some((key, score)) = g.eviction_candidate(policy, 5, now_ms, &mut rng) {
                    if best.as_ref().is_none_or(|(_, _, b)| score > *b) {
                        best = Some((s, key, score));
                    }
                }
            }
            match best {
                Some((s, key, _)) => {
                    self.lock_shard(s).evict(&key);
                }
                None => {
                    failures += 1;
                    if failures > 16 {
                        // Sampling found nothing: do an exhaustive pass before giving up.
                        if !self.evict_any(policy, now_ms) {
                            return Err(OutOfMemory);
                        }
                        failures = 0;
                    }
                }
            }
        }
        Ok(())
    }

    fn evict_any(&self, policy: EvictionPolicy, now_ms: u64) -> bool {
        for s in 0..self.shards.len() {
            let mut g = self.lock_shard(s);
            let mut victim = None;
            g.for_each(now_ms, |e| {
                if victim.is_none() && (!policy.volatile_only() || e.expire_at().is_some()) {
                    victim = Some(e.key().to_vec());
                }
            });
            if let Some(k) = victim {
                g.evict(&k);
                return true;
            }
        }
        false
    }

    /// One round of active expiry: sweeps part of every shard that has volatile
    /// keys, and keeps sweeping a shard while more than a quarter of what it looks
    /// at has expired (Redis's heuristic). Returns the number of keys reclaimed.
    pub fn active_expire_cycle(&self, now_ms: u64, buckets_per_shard: usize) -> usize {
        let mut total = 0;
        for s in 0..self.shards.len() {
            let mut rounds = 0;
            loop {
                let (looked, expired) = self.lock_shard(s).expire_step(buckets_per_shard, now_ms);
                total += expired;
                rounds += 1;
                if looked == 0 || expired * 4 <= looked || rounds >= 16 {
                    break;
                }
            }
        }
        total
    }

    /// Cursor-based iteration (SCAN). The cursor encodes `layout << 40 | shard << 32 |
    /// bucket` (`layout`: the low 14 bits of the shard's table-rebuild count), so every
    /// cursor is below 2^54 and a proxy can add 10 bits of its own (see
    /// [`SCAN_CURSOR_BITS`]); visits
    /// about `count` buckets and returns the next cursor (0 when done). Every key present
    /// for the whole iteration is returned at least once, as in Redis: when the shard's
    /// table was grown or rehashed since the cursor was made, its entries may have moved
    /// between buckets, so that shard is walked again from its first bucket (keys seen
    /// before come again, which SCAN allows).
    pub fn scan(&self, cursor: u64, count: usize, now_ms: u64, f: impl FnMut(&Entry)) -> u64 {
        self.scan_shards(cursor, self.shards.len(), count, now_ms, f)
    }

    /// [`scan`](Self::scan) over shards below `end_shard` only: 0 once past the last.
    pub fn scan_shards(
        &self,
        cursor: u64,
        end_shard: usize,
        count: usize,
        now_ms: u64,
        mut f: impl FnMut(&Entry),
    ) -> u64 {
        let end_shard = end_shard.min(self.shards.len());
        let mut shard = scan_cursor_shard(cursor);
        let mut layout = Some((cursor >> 40) & LAYOUT_BITS);
        let mut bucket = (cursor & BUCKET_BITS) as usize;
        let mut budget = count.max(1);
        let mut at_layout = 0;
        while shard < end_shard {
            let mut g = self.lock_shard(shard);
            at_layout = g.layout() & LAYOUT_BITS;
            if layout.take().is_some_and(|l| l != at_layout) {
                bucket = 0;
            }
            if g.is_empty() {
                // Empty shards cost no budget, so small keyspaces scan in one call.
                drop(g);
                shard += 1;
                bucket = 0;
                continue;
            }
            let buckets = g.shard.table.buckets();
            let step = budget.min(buckets.saturating_sub(bucket)).max(1);
            let next = g.scan_buckets(bucket, step, now_ms, &mut f);
            drop(g);
            budget = budget.saturating_sub(step);
            if next == 0 {
                shard += 1;
                bucket = 0;
            } else {
                bucket = next;
            }
            if budget == 0 {
                break;
            }
        }
        if shard >= end_shard {
            0
        } else if bucket == 0 {
            scan_cursor_at_shard(shard)
        } else {
            (at_layout << 40) | scan_cursor_at_shard(shard) | (bucket as u64 & BUCKET_BITS)
        }
    }

    /// Calls `f` on every live entry, shard by shard (KEYS, snapshots).
    pub fn for_each(&self, now_ms: u64, mut f: impl FnMut(&Entry)) {
        for s in 0..self.shards.len() {
            self.lock_shard(s).for_each(now_ms, &mut f);
        }
    }

    /// A random live key (RANDOMKEY).
    pub fn random_key(&self, now_ms: u64) -> Option<Vec<u8>> {
        let mut rng = SmallRng::from_rng(rand::thread_rng()).expect("thread rng");
        let n = self.shards.len();
        let start = rng.gen_range(0..n);
        for i in 0..n {
            let mut g = self.lock_shard((start + i) % n);
            if let Some(e) = g.random_entry(now_ms, &mut rng) {
                return Some(e.key().to_vec());
            }
        }
        None
    }

    /// Removes every key. With `lazy`, the memory is freed on a background
    /// thread (FLUSHALL ASYNC) so the caller is not blocked.
    pub fn flush(&self, lazy: bool) {
        let mut old = Vec::with_capacity(self.shards.len());
        for s in 0..self.shards.len() {
            old.push(self.lock_shard(s).take_all());
        }
        if lazy {
            std::thread::Builder::new()
                .name("shoal-lazyfree".into())
                .spawn(move || drop(old))
                .map(|_| ())
                .unwrap_or(());
        }
    }

    /// Totals over all shards.
    pub fn stats(&self) -> KeyspaceStats {
        let mut st = KeyspaceStats::default();
        for s in self.shards.iter() {
            let g = s.lock();
            st.keys += g.table.len() as u64;
            st.volatile += g.volatile as u64;
            st.hits += g.hits;
            st.misses += g.misses;
            st.expired += g.expired;
            st.evicted += g.evicted;
        }
        st
    }

    /// Resets hit/miss/expired/evicted counters (CONFIG RESETSTAT).
    pub fn reset_stats(&self) {
        for s in self.shards.iter() {
            let mut g = s.lock();
            g.hits = 0;
            g.misses = 0;
            g.expired = 0;
            g.evicted = 0;
        }
    }

    /// Number of keys (DBSIZE).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().table.len()).sum()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Several shards locked at once, in index order.
pub struct MultiGuard<'a> {
    guards: Vec<ShardGuard<'a>>,
    ks: &'a Keyspace,
}

impl<'a> MultiGuard<'a> {
    /// The locked shard owning `key`.
    ///
    /// # Panics
    /// If `key`'s shard was not among the keys passed to [`Keyspace::lock_many`].
    pub fn shard(&mut self, key: &[u8]) -> &mut ShardGuard<'a> {
        let idx = self.ks.shard_of(key);
        let pos = self
            .guards
            .binary_search_by_key(&idx, |g| g.index)
            .expect("key's shard was locked by lock_many");
        &mut self.guards[pos]
    }
}

#[cfg(test)]
mod tests;
