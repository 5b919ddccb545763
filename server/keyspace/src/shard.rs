//! One lock-protected slice of the keyspace and the operations done under its lock.
//!
//! A [`ShardGuard`] is what the command layer holds while it reads and writes keys
//! of one shard: lookups lazily reclaim expired entries, every write goes through
//! [`ShardGuard::insert`] / [`ShardGuard::remove`] so memory accounting (and, with
//! replication, the write stream) has exactly one place to hook.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hashbrown::raw::RawTable;
use parking_lot::MutexGuard;

use crate::entry::{Entry, Meta};
use crate::object::Object;
use crate::policy::{self, EvictionPolicy};
use crate::Keyspace;

/// Bytes of memory an entry allocation of `len` bytes costs: the chunk glibc's
/// malloc hands out (8 bytes of header, 16-byte granularity, 32 bytes minimum).
pub fn alloc_cost(len: usize) -> usize {
    ((len + 8 + 15) & !15).max(32)
}

/// Accounted bytes of one entry: its allocation plus its collection, if any.
pub fn entry_cost(e: &Entry) -> usize {
    alloc_cost(e.alloc_len()) + e.object_mem()
}

/// Bytes one table slot costs (pointer + control byte).
const SLOT_COST: usize = std::mem::size_of::<Entry>() + 1;

/// Something waiting for a key to change (a blocked BLPOP-style client).
/// Implementations must be cheap and must not take shard locks.
pub trait Wake: Send + Sync {
    /// Called (under the shard lock) when the key this waiter waits on was written.
    fn wake(&self);
}

type WaiterMap =
    std::collections::HashMap<Box<[u8]>, std::collections::VecDeque<(u64, u64, Arc<dyn Wake>)>>;

type WatcherMap = std::collections::HashMap<Box<[u8]>, Vec<(u64, Arc<AtomicBool>)>>;

/// Per-key registrations of blocked clients and WATCHing transactions. Kept
/// out of line so a shard without any costs one pointer check per write.
#[derive(Default)]
pub(crate) struct Interest {
    /// Blocked clients per key in ticket order (first blocked, first served):
    /// (ticket, client id, waker).
    waiters: WaiterMap,
    /// WATCHed keys: (client id, dirty flag) set by any write to the key.
    watchers: WatcherMap,
}

/// The data of one shard.
pub struct Shard {
    pub(crate) interest: Option<Box<Interest>>,
    pub(crate) table: RawTable<Entry>,
    /// Bytes of entries plus table, as accounted in [`Keyspace::used_memory`].
    pub(crate) used: usize,
    /// Entries with an expiry.
    pub(crate) volatile: usize,
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) expired: u64,
    pub(crate) evicted: u64,
    /// Next bucket the active-expiry sweep looks at.
    pub(crate) expire_cursor: usize,
    /// Times the table was rebuilt (grown, rehashed in place or replaced): entries may
    /// have changed buckets, so a SCAN cursor from before must restart this shard.
    pub(crate) layout: u64,
}

impl Shard {
    pub(crate) fn new() -> Shard {
        Shard {
            interest: None,
            table: RawTable::new(),
            used: 0,
            volatile: 0,
            hits: 0,
            misses: 0,
            expired: 0,
            evicted: 0,
            expire_cursor: 0,
            layout: 0,
        }
    }

    pub(crate) fn table_cost(&self) -> usize {
        if self.table.buckets() <= 1 && self.table.is_empty() {
            0
        } else {
            self.table.buckets() * SLOT_COST
        }
    }
}

/// Exclusive access to one shard.
pub struct ShardGuard<'a> {
    pub(crate) shard: MutexGuard<'a, Shard>,
    pub(crate) ks: &'a Keyspace,
    pub(crate) index: usize,
}

/// Why a key left the keyspace (other than an explicit delete).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// Deleted by a command.
    Deleted,
    /// Reclaimed because its TTL passed.
    Expired,
    /// Evicted under memory pressure.
    Evicted,
}

impl<'a> ShardGuard<'a> {
    /// Index of this shard.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Number of keys (including expired ones not yet reclaimed).
    pub fn len(&self) -> usize {
        self.shard.table.len()
    }

    /// Whether the shard holds no keys.
    pub fn is_empty(&self) -> bool {
        self.shard.table.is_empty()
    }

    fn find_index(&self, hash: u64, key: &[u8]) -> Option<usize> {
        let b = self.shard.table.find(hash, |e| e.key() == key)?;
        // SAFETY: the bucket was just returned by this table and the table is unchanged.
        Some(unsafe { self.shard.table.bucket_index(&b) })
    }

    fn entry_at(&self, idx: usize) -> &Entry {
        // SAFETY: `idx` is a full bucket of this table (from `find_index`) and the
        // table has not been mutated since.
        unsafe { self.shard.table.bucket(idx).as_ref() }
    }

    fn entry_at_mut(&mut self, idx: usize) -> &mut Entry {
        // SAFETY: as in `entry_at`, with exclusive access through `&mut self`.
        unsafe { self.shard.table.bucket(idx).as_mut() }
    }

    /// Signals watchers and blocked clients of `key` that it was written.
    #[inline]
    fn touched(&mut self, key: &[u8]) {
        if let Some(int) = self.shard.interest.as_mut() {
            if let Some(ws) = int.watchers.get(key) {
                for (_, flag) in ws {
                    flag.store(true, Ordering::Release);
                }
            }
            if let Some(q) = int.waiters.get_mut(key) {
                // Wake the longest-waiting client only: it retries its command and,
                // if it cannot use the change, passes the wake-up on.
                if let Some((_, _, w)) = q.pop_front() {
                    w.wake();
                }
                if q.is_empty() {
                    int.waiters.remove(key);
                }
            }
            if int.waiters.is_empty() && int.watchers.is_empty() {
                self.shard.interest = None;
            }
        }
    }

    /// Wakes the first client blocked on `key` (used to pass a wake-up on).
    pub fn wake_one(&mut self, key: &[u8]) {
        if let Some(int) = self.shard.interest.as_mut() {
            if let Some(q) = int.waiters.get_mut(key) {
                if let Some((_, _, w)) = q.pop_front() {
                    w.wake();
                }
                if q.is_empty() {
                    int.waiters.remove(key);
                }
            }
        }
    }

    /// Registers client `id` as blocked on `key`. Waiters are served in
    /// `ticket` order: a client keeps its ticket while it re-blocks after a
    /// wake-up it could not use, so it keeps its place in the queue.
    pub fn add_waiter(&mut self, key: &[u8], id: u64, ticket: u64, w: Arc<dyn Wake>) {
        let int = self.shard.interest.get_or_insert_with(Default::default);
        let q = int.waiters.entry(key.into()).or_default();
        let at = q.partition_point(|(t, _, _)| *t < ticket);
        q.insert(at, (ticket, id, w));
    }

    /// Removes client `id`'s registration on `key`, if any.
    pub fn remove_waiter(&mut self, key: &[u8], id: u64) {
        if let Some(int) = self.shard.interest.as_mut() {
            if let Some(q) = int.waiters.get_mut(key) {
                q.retain(|(_, i, _)| *i != id);
                if q.is_empty() {
                    int.waiters.remove(key);
                }
            }
            if int.waiters.is_empty() && int.watchers.is_empty() {
                self.shard.interest = None;
            }
        }
    }

    /// WATCH: `flag` is set by any later write to `key` (including expiry,
    /// eviction and flush).
    pub fn watch(&mut self, key: &[u8], id: u64, flag: Arc<AtomicBool>) {
        let int = self.shard.interest.get_or_insert_with(Default::default);
        let v = int.watchers.entry(key.into()).or_default();
        if !v.iter().any(|(i, _)| *i == id) {
            v.push((id, flag));
        }
    }

    /// Removes client `id`'s WATCH on `key`.
    pub fn unwatch(&mut self, key: &[u8], id: u64) {
        if let Some(int) = self.shard.interest.as_mut() {
            if let Some(v) = int.watchers.get_mut(key) {
                v.retain(|(i, _)| *i != id);
                if v.is_empty() {
                    int.watchers.remove(key);
                }
            }
            if int.waiters.is_empty() && int.watchers.is_empty() {
                self.shard.interest = None;
            }
        }
    }

    /// Finds `key`, reclaiming it first if it has expired. No stats, no touch:
    /// for write paths and internal reads.
    pub fn lookup(&mut self, key: &[u8], now_ms: u64) -> Option<&Entry> {
        let hash = self.ks.hash(key);
        let idx = self.find_index(hash, key)?;
        if self.entry_at(idx).is_expired(now_ms) {
            if self.ks.may_reclaim() {
                self.remove_at(idx, Removal::Expired);
            }
            return None;
        }
        Some(self.entry_at(idx))
    }

    /// Like [`lookup`](Self::lookup) for read commands: counts a keyspace hit or
    /// miss and updates the LRU/LFU access word unless `no_touch`.
    pub fn lookup_read(&mut self, key: &[u8], now_ms: u64, no_touch: bool) -> Option<&Entry> {
        let hash = self.ks.hash(key);
        let Some(idx) = self.find_index(hash, key) else {
            self.shard.misses += 1;
            return None;
        };
        if self.entry_at(idx).is_expired(now_ms) {
            if self.ks.may_reclaim() {
                self.remove_at(idx, Removal::Expired);
            }
            self.shard.misses += 1;
            return None;
        }
        self.shard.hits += 1;
        if !no_touch {
            let ks = self.ks;
            let e = self.entry_at_mut(idx);
            let a = ks.touched_access(e.access(), now_ms);
            e.set_access(a);
        }
        Some(self.entry_at(idx))
    }

    /// Counts a keyspace miss without a lookup (e.g. a read of a key of the wrong kind).
    pub fn count_miss(&mut self) {
        self.shard.misses += 1;
    }

    /// Inserts or replaces `key` with the concatenation of `value_parts`, a fresh
    /// CAS id and the given expiry and client flags. Returns the CAS id.
    pub fn insert(
        &mut self,
        key: &[u8],
        value_parts: &[&[u8]],
        expire_at: Option<u64>,
        flags: u32,
        now_ms: u64,
    ) -> u64 {
        let cas = self.ks.next_cas();
        let meta = Meta {
            expire_at,
            flags,
            cas,
            access: policy::initial_access(self.ks.policy().is_lfu(), now_ms),
        };
        self.put(key, Entry::new(key, value_parts, &meta));
        cas
    }

    /// Sets the CAS id of `key` in place (replication keeps ids equal to the
    /// primary's); returns false if the key is absent.
    pub fn set_cas(&mut self, key: &[u8], cas: u64) -> bool {
        let hash = self.ks.hash(key);
        match self.find_index(hash, key) {
            Some(idx) => {
                self.entry_at_mut(idx).set_cas(cas);
                true
            }
            None => false,
        }
    }

    /// Marks `key` as stored under a base64 (binary) key.
    pub fn mark_binary_key(&mut self, key: &[u8]) {
        let hash = self.ks.hash(key);
        if let Some(idx) = self.find_index(hash, key) {
            self.entry_at_mut(idx).set_binary_key();
        }
    }

    /// Marks `key` fetched (memcache reads); returns whether it already was.
    pub fn mark_fetched(&mut self, key: &[u8]) -> bool {
        let hash = self.ks.hash(key);
        match self.find_index(hash, key) {
            Some(idx) => {
                let e = self.entry_at_mut(idx);
                let was = e.fetched();
                e.set_fetched();
                was
            }
            None => false,
        }
    }

    /// Marks `key`'s value as edited in place (OBJECT ENCODING `raw`).
    pub fn mark_raw(&mut self, key: &[u8]) {
        let hash = self.ks.hash(key);
        if let Some(idx) = self.find_index(hash, key) {
            self.entry_at_mut(idx).set_raw();
        }
    }

    /// Rewrites the metadata of an existing key (expiry, flags) keeping its value.
    /// A new CAS id is assigned when `new_cas`. Returns false if the key is absent.
    pub fn update_meta(
        &mut self,
        key: &[u8],
        now_ms: u64,
        new_cas: bool,
        f: impl FnOnce(&mut Meta),
    ) -> bool {
        if self.lookup(key, now_ms).is_none() {
            return false;
        }
        let hash = self.ks.hash(key);
        let idx = self.find_index(hash, key).expect("present");
        let cas = if new_cas {
            Some(self.ks.next_cas())
        } else {
            None
        };
        let e = self.entry_at_mut(idx);
        let mut meta = e.meta();
        f(&mut meta);
        if let Some(c) = cas {
            meta.cas = c;
        }
        crate::bump_writes();
        let was_volatile = e.expire_at().is_some();
        let before = entry_cost(e);
        e.replace_meta(&meta);
        let after = entry_cost(e);
        let now_volatile = e.expire_at().is_some();
        let shard = &mut *self.shard;
        shard.volatile = shard.volatile + now_volatile as usize - was_volatile as usize;
        let delta = after as isize - before as isize;
        shard.used = (shard.used as isize + delta) as usize;
        self.ks.add_used(delta);
        if self.shard.interest.is_some() {
            self.touched(key);
        }
        true
    }

    /// Stores a collection under `key` (replacing any value). Returns the CAS id.
    pub fn insert_object(
        &mut self,
        key: &[u8],
        obj: Object,
        expire_at: Option<u64>,
        now_ms: u64,
    ) -> u64 {
        let cas = self.ks.next_cas();
        let meta = Meta {
            expire_at,
            flags: 0,
            cas,
            access: policy::initial_access(self.ks.policy().is_lfu(), now_ms),
        };
        self.put(key, Entry::new_object(key, Box::new(obj), &meta));
        cas
    }

    /// Stores an existing entry (e.g. one removed from another key) under `key`.
    pub fn insert_entry(&mut self, key: &[u8], entry: Entry) {
        let entry = if entry.key() == key {
            entry
        } else {
            entry.rekey(key)
        };
        self.put(key, entry);
    }

    /// Runs `f` on the collection stored at `key` (None if absent, expired or a
    /// string), keeps memory accounting exact, and deletes the key if `f` left
    /// the collection empty (Redis never keeps empty collections).
    pub fn with_object_mut<R>(
        &mut self,
        key: &[u8],
        now_ms: u64,
        f: impl FnOnce(&mut Object) -> R,
    ) -> Option<R> {
        self.lookup(key, now_ms)?;
        let hash = self.ks.hash(key);
        let idx = self.find_index(hash, key)?;
        let e = self.entry_at_mut(idx);
        let before = entry_cost(e);
        let obj = e.object_mut()?;
        let r = f(obj);
        crate::bump_writes();
        let empty = obj.is_empty();
        let after = entry_cost(self.entry_at(idx));
        let delta = after as isize - before as isize;
        let shard = &mut *self.shard;
        shard.used = (shard.used as isize + delta) as usize;
        self.ks.add_used(delta);
        if empty {
            self.remove_at(idx, Removal::Deleted);
        } else if self.shard.interest.is_some() {
            self.touched(key);
        }
        Some(r)
    }

    fn put(&mut self, key: &[u8], entry: Entry) {
        crate::bump_writes();
        let hash = self.ks.hash(key);
        let ks = self.ks;
        let new_cost = entry_cost(&entry);
        let new_volatile = entry.expire_at().is_some();
        let shard = &mut *self.shard;
        let before_table = shard.table_cost();
        let mut delta = new_cost as isize;
        if shard.table.len() == shard.table.capacity() {
            // No room left: the lookup below first grows or rehashes the table.
            shard.layout += 1;
        }
        match shard
            .table
            .find_or_find_insert_slot(hash, |e| e.key() == key, |e| ks.hash(e.key()))
        {
            Ok(bucket) => {
                // SAFETY: bucket is a full bucket of this table.
                let slot = unsafe { bucket.as_mut() };
                delta -= entry_cost(slot) as isize;
                if slot.expire_at().is_some() {
                    shard.volatile -= 1;
                }
                *slot = entry;
            }
            Err(slot) => {
                // SAFETY: slot came from find_or_find_insert_slot on this table with
                // no mutation in between.
                unsafe { shard.table.insert_in_slot(hash, slot, entry) };
            }
        }
        if new_volatile {
            shard.volatile += 1;
        }
        delta += shard.table_cost() as isize - before_table as isize;
        shard.used = (shard.used as isize + delta) as usize;
        ks.add_used(delta);
        if self.shard.interest.is_some() {
            self.touched(key);
        }
    }

    fn remove_at(&mut self, idx: usize, why: Removal) -> Entry {
        let shard = &mut *self.shard;
        // SAFETY: idx is a full bucket of this table (caller found it just before).
        let (entry, _) = unsafe { shard.table.remove(shard.table.bucket(idx)) };
        let cost = entry_cost(&entry);
        if entry.expire_at().is_some() {
            shard.volatile -= 1;
        }
        match why {
            Removal::Expired => shard.expired += 1,
            Removal::Evicted => shard.evicted += 1,
            Removal::Deleted => crate::bump_writes(),
        }
        shard.used -= cost;
        self.ks.add_used(-(cost as isize));
        self.ks.notify_removal(entry.key(), why);
        if self.shard.interest.is_some() {
            self.touched(entry.key());
        }
        entry
    }

    /// Deletes `key`; returns the removed entry if it existed (and was not expired).
    pub fn remove(&mut self, key: &[u8], now_ms: u64) -> Option<Entry> {
        let hash = self.ks.hash(key);
        let idx = self.find_index(hash, key)?;
        if self.entry_at(idx).is_expired(now_ms) {
            if self.ks.may_reclaim() {
                self.remove_at(idx, Removal::Expired);
            }
            return None;
        }
        Some(self.remove_at(idx, Removal::Deleted))
    }

    /// Removes `key` because the eviction policy chose it.
    pub(crate) fn evict(&mut self, key: &[u8]) -> bool {
        let hash = self.ks.hash(key);
        match self.find_index(hash, key) {
            Some(idx) => {
                self.remove_at(idx, Removal::Evicted);
                true
            }
            None => false,
        }
    }

    /// How many times this shard's table was rebuilt (see [`Shard`]'s `layout`).
    pub fn layout(&self) -> u64 {
        self.shard.layout
    }

    /// Visits up to `max_buckets` buckets from `cursor` (a bucket index), calling
    /// `f` for each live entry; returns the next bucket index, 0 when done.
    pub fn scan_buckets(
        &mut self,
        cursor: usize,
        max_buckets: usize,
        now_ms: u64,
        mut f: impl FnMut(&Entry),
    ) -> usize {
        let buckets = self.shard.table.buckets();
        if self.shard.table.is_empty() || cursor >= buckets {
            return 0;
        }
        let end = (cursor + max_buckets.max(1)).min(buckets);
        for i in cursor..end {
            // SAFETY: i < buckets().
            if unsafe { self.shard.table.is_bucket_full(i) } {
                let e = self.entry_at(i);
                if !e.is_expired(now_ms) {
                    f(e);
                }
            }
        }
        if end >= buckets {
            0
        } else {
            end
        }
    }

    /// Calls `f` for every live entry.
    pub fn for_each(&self, now_ms: u64, mut f: impl FnMut(&Entry)) {
        // SAFETY: the iterator does not outlive `&self`, and the table is not
        // mutated while it runs.
        for b in unsafe { self.shard.table.iter() } {
            // SAFETY: buckets yielded by iter() are full.
            let e = unsafe { b.as_ref() };
            if !e.is_expired(now_ms) {
                f(e);
            }
        }
    }

    /// A random live entry, if the shard has any (bounded number of probes).
    pub fn random_entry(&mut self, now_ms: u64, rng: &mut impl rand::Rng) -> Option<&Entry> {
        let buckets = self.shard.table.buckets();
        if self.shard.table.is_empty() {
            return None;
        }
        for _ in 0..(buckets * 2).min(4096) {
            let i = rng.gen_range(0..buckets);
            // SAFETY: i < buckets().
            if unsafe { self.shard.table.is_bucket_full(i) } {
                if self.entry_at(i).is_expired(now_ms) {
                    if self.ks.may_reclaim() {
                        self.remove_at(i, Removal::Expired);
                    }
                    continue;
                }
                return Some(self.entry_at(i));
            }
        }
        // Sparse table: fall back to the first live entry in bucket order.
        let mut found = None;
        for i in 0..buckets {
            // SAFETY: i < buckets().
            if unsafe { self.shard.table.is_bucket_full(i) } && !self.entry_at(i).is_expired(now_ms)
            {
                found = Some(i);
                break;
            }
        }
        found.map(|i| self.entry_at(i))
    }

    /// Samples up to `n` entries eligible under `policy` and returns the key and
    /// score (higher = better eviction candidate) of the best one.
    pub(crate) fn eviction_candidate(
        &mut self,
        policy: EvictionPolicy,
        n: usize,
        now_ms: u64,
        rng: &mut impl rand::Rng,
    ) -> Option<(Vec<u8>, u64)> {
        let buckets = self.shard.table.buckets();
        if self.shard.table.is_empty() || (policy.volatile_only() && self.shard.volatile == 0) {
            return None;
        }
        let mut best: Option<(usize, u64)> = None;
        let mut seen = 0;
        for _ in 0..n * 8 {
            if seen >= n {
                break;
            }
            let i = rng.gen_range(0..buckets);
            // SAFETY: i < buckets().
            if !unsafe { self.shard.table.is_bucket_full(i) } {
                continue;
            }
            let e = self.entry_at(i);
            if policy.volatile_only() && e.expire_at().is_none() {
                continue;
            }
            seen += 1;
            let score = match policy {
                EvictionPolicy::AllKeysLru | EvictionPolicy::VolatileLru => {
                    policy::idle_seconds(e.access(), now_ms)
                }
                EvictionPolicy::AllKeysLfu | EvictionPolicy::VolatileLfu => {
                    255 - policy::lfu_decayed(e.access(), now_ms, self.ks.lfu_decay_time()) as u64
                }
                EvictionPolicy::VolatileTtl => u64::MAX - e.expire_at().unwrap_or(u64::MAX),
                _ => rng.gen(),
            };
            if best.is_none_or(|(_, s)| score > s) {
                best = Some((i, score));
            }
        }
        best.map(|(i, s)| (self.entry_at(i).key().to_vec(), s))
    }

    /// Reclaims expired entries among the next `max_buckets` buckets of the sweep.
    /// Returns (entries looked at, entries expired).
    pub(crate) fn expire_step(&mut self, max_buckets: usize, now_ms: u64) -> (usize, usize) {
        let buckets = self.shard.table.buckets();
        if self.shard.volatile == 0 || self.shard.table.is_empty() || !self.ks.may_reclaim() {
            return (0, 0);
        }
        let mut cursor = self.shard.expire_cursor % buckets;
        let (mut looked, mut expired) = (0, 0);
        for _ in 0..max_buckets.min(buckets) {
            // SAFETY: cursor < buckets().
            if unsafe { self.shard.table.is_bucket_full(cursor) } {
                let e = self.entry_at(cursor);
                if e.expire_at().is_some() {
                    looked += 1;
                    if e.is_expired(now_ms) {
                        self.remove_at(cursor, Removal::Expired);
                        expired += 1;
                    }
                }
            }
            cursor = (cursor + 1) % buckets;
        }
        self.shard.expire_cursor = cursor;
        (looked, expired)
    }

    /// Removes every key; returns the old table so the caller can free it where it likes.
    pub(crate) fn take_all(&mut self) -> RawTable<Entry> {
        if let Some(int) = self.shard.interest.as_ref() {
            // Like Redis 7.0, FLUSH dirties WATCHes of keys that existed only.
            for (key, ws) in &int.watchers {
                let hash = self.ks.hash(key);
                if self
                    .shard
                    .table
                    .find(hash, |e| e.key() == &key[..])
                    .is_some()
                {
                    for (_, flag) in ws {
                        flag.store(true, Ordering::Release);
                    }
                }
            }
        }
        crate::bump_writes();
        let shard = &mut *self.shard;
        let old = std::mem::replace(&mut shard.table, RawTable::new());
        shard.layout += 1;
        self.ks.add_used(-(shard.used as isize));
        shard.used = 0;
        shard.volatile = 0;
        shard.expire_cursor = 0;
        old
    }
}
