//! Redis Hash values.
//!
//! Like Redis 7.0, a small hash is one compact buffer ("listpack": up to
//! [`MAX_PACK_ENTRIES`] pairs, each field and value at most [`MAX_PACK_VALUE`]
//! bytes), scanned linearly and kept in insertion order; anything larger is a
//! hash table ("hashtable"). A hash never converts back.
//!
//! The table ([`Dense`], shared with sets) keeps its entries in one dense
//! vector plus an index of positions, so random picks are O(1) and a cursor
//! scan that walks the vector from the top down gives Redis' SCAN guarantee
//! (every element present for the whole scan is returned at least once)
//! although deletions move the last entry into the hole.

use std::hash::BuildHasher;

use hashbrown::HashTable;

use crate::shard::alloc_cost;

/// `hash-max-listpack-entries`.
pub const MAX_PACK_ENTRIES: usize = 512;
/// `hash-max-listpack-value`.
pub const MAX_PACK_VALUE: usize = 64;

static HASHER: foldhash::fast::FixedState =
    foldhash::fast::FixedState::with_seed(0x5107_a1b2_c3d4_e5f6);

#[inline]
pub(crate) fn hash_bytes(b: &[u8]) -> u64 {
    HASHER.hash_one(b)
}

/// Bytes of a heap allocation of `n` bytes (nothing for an empty one).
#[inline]
fn heap(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        alloc_cost(n)
    }
}

/// A hash table of byte-string entries: a dense vector of boxed entries plus
/// an index (positions into the vector) keyed by the entry's key. With
/// `pairs`, an entry is `flen: u32 LE | field | value` and the key is the
/// field; otherwise the whole entry is the key (sets).
#[derive(Clone, Debug, Default)]
pub(crate) struct Dense {
    entries: Vec<Box<[u8]>>,
    index: HashTable<u32>,
    /// Sum of the allocation costs of the entries.
    heap: usize,
    pairs: bool,
}

#[inline]
fn key_of(pairs: bool, e: &[u8]) -> &[u8] {
    if pairs {
        let n = u32::from_le_bytes([e[0], e[1], e[2], e[3]]) as usize;
        &e[4..4 + n]
    } else {
        e
    }
}

impl Dense {
    pub(crate) fn with_capacity(n: usize, pairs: bool) -> Dense {
        Dense {
            entries: Vec::with_capacity(n),
            index: HashTable::with_capacity(n),
            heap: 0,
            pairs,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Approximate allocated bytes.
    pub(crate) fn mem(&self) -> usize {
        let cap = self.index.capacity();
        let index = if cap == 0 {
            0
        } else {
            // buckets: capacity is 7/8 of a power of two (or buckets - 1 when tiny)
            let buckets = (cap * 8 / 7).next_power_of_two();
            alloc_cost(buckets * (std::mem::size_of::<u32>() + 1) + 16)
        };
        heap(self.entries.capacity() * std::mem::size_of::<Box<[u8]>>()) + index + self.heap
    }

    pub(crate) fn find(&self, key: &[u8]) -> Option<usize> {
        let (pairs, entries) = (self.pairs, &self.entries);
        self.index
            .find(hash_bytes(key), |&i| {
                key_of(pairs, &entries[i as usize]) == key
            })
            .map(|&i| i as usize)
    }

    pub(crate) fn get(&self, i: usize) -> &[u8] {
        &self.entries[i]
    }

    /// Appends an entry whose key is not present.
    pub(crate) fn push(&mut self, entry: Box<[u8]>) {
        let pairs = self.pairs;
        let h = hash_bytes(key_of(pairs, &entry));
        self.heap += heap(entry.len());
        let idx = self.entries.len() as u32;
        self.entries.push(entry);
        let entries = &self.entries;
        self.index
            .insert_unique(h, idx, |&i| hash_bytes(key_of(pairs, &entries[i as usize])));
    }

    /// Replaces entry `i` with one of the same key.
    pub(crate) fn replace(&mut self, i: usize, entry: Box<[u8]>) {
        self.heap = self.heap + heap(entry.len()) - heap(self.entries[i].len());
        self.entries[i] = entry;
    }

    /// Removes entry `i`; the last entry moves into its place.
    pub(crate) fn remove_at(&mut self, i: usize) -> Box<[u8]> {
        let pairs = self.pairs;
        let h = hash_bytes(key_of(pairs, &self.entries[i]));
        if let Ok(e) = self.index.find_entry(h, |&j| j as usize == i) {
            e.remove();
        }
        let last = self.entries.len() - 1;
        let removed = self.entries.swap_remove(i);
        if i < last {
            let h2 = hash_bytes(key_of(pairs, &self.entries[i]));
            if let Some(slot) = self.index.find_mut(h2, |&j| j as usize == last) {
                *slot = i as u32;
            }
        }
        self.heap -= heap(removed.len());
        removed
    }

    pub(crate) fn iter(&self) -> std::slice::Iter<'_, Box<[u8]>> {
        self.entries.iter()
    }

    /// Cursor scan over the dense vector from the top down. Cursor 0 starts;
    /// a returned cursor `p > 0` means positions `0..p` remain. Calls `f` for
    /// up to `count` entries and returns the next cursor (0 when done).
    pub(crate) fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&[u8])) -> u64 {
        let n = self.entries.len();
        let mut p = if cursor == 0 {
            n
        } else {
            (cursor.min(n as u64)) as usize
        };
        let stop = p.saturating_sub(count.max(1));
        while p > stop {
            p -= 1;
            f(&self.entries[p]);
        }
        p as u64
    }
}

fn pair_entry(field: &[u8], value: &[u8]) -> Box<[u8]> {
    let mut v = Vec::with_capacity(4 + field.len() + value.len());
    v.extend_from_slice(&(field.len() as u32).to_le_bytes());
    v.extend_from_slice(field);
    v.extend_from_slice(value);
    v.into_boxed_slice()
}

fn split_pair(e: &[u8]) -> (&[u8], &[u8]) {
    let n = u32::from_le_bytes([e[0], e[1], e[2], e[3]]) as usize;
    (&e[4..4 + n], &e[4 + n..])
}

#[derive(Clone, Debug)]
enum Repr {
    /// `[flen u8][field][vlen u8][value]...` in insertion order; `len` pairs.
    Pack { buf: Vec<u8>, len: u32 },
    /// Hash table.
    Table(Box<Dense>),
}

impl Default for Repr {
    fn default() -> Self {
        Repr::Pack {
            buf: Vec::new(),
            len: 0,
        }
    }
}

/// A hash value.
#[derive(Clone, Debug, Default)]
pub struct Hash {
    repr: Repr,
}

/// Iterator over a hash's (field, value) pairs.
pub enum HashIter<'a> {
    /// Over a packed buffer.
    Pack(&'a [u8]),
    /// Over a table.
    Table(std::slice::Iter<'a, Box<[u8]>>),
}

impl<'a> Iterator for HashIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            HashIter::Pack(rest) => {
                if rest.is_empty() {
                    return None;
                }
                let b: &'a [u8] = std::mem::take(rest);
                let fl = b[0] as usize;
                let f = &b[1..1 + fl];
                let vl = b[1 + fl] as usize;
                let v = &b[2 + fl..2 + fl + vl];
                *rest = &b[2 + fl + vl..];
                Some((f, v))
            }
            HashIter::Table(it) => it.next().map(|e| split_pair(e)),
        }
    }
}

/// Position of a pair in a packed buffer: (start, value start, end).
fn pack_find(buf: &[u8], field: &[u8]) -> Option<(usize, usize, usize)> {
    let mut i = 0;
    while i < buf.len() {
        let fl = buf[i] as usize;
        let vs = i + 2 + fl;
        let end = vs + buf[i + 1 + fl] as usize;
        if &buf[i + 1..i + 1 + fl] == field {
            return Some((i, vs, end));
        }
        i = end;
    }
    None
}

impl Hash {
    /// An empty hash.
    pub fn new() -> Hash {
        Hash::default()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Pack { len, .. } => *len as usize,
            Repr::Table(t) => t.len(),
        }
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate allocated bytes.
    pub fn mem_usage(&self) -> usize {
        match &self.repr {
            Repr::Pack { buf, .. } => heap(buf.capacity()),
            Repr::Table(t) => alloc_cost(std::mem::size_of::<Dense>()) + t.mem(),
        }
    }

    /// OBJECT ENCODING name.
    pub fn encoding(&self) -> &'static str {
        match self.repr {
            Repr::Pack { .. } => "listpack",
            Repr::Table(_) => "hashtable",
        }
    }

    /// The value of `field`.
    pub fn get(&self, field: &[u8]) -> Option<&[u8]> {
        match &self.repr {
            Repr::Pack { buf, .. } => pack_find(buf, field).map(|(_, vs, end)| &buf[vs..end]),
            Repr::Table(t) => t.find(field).map(|i| split_pair(t.get(i)).1),
        }
    }

    /// Whether `field` exists.
    pub fn contains(&self, field: &[u8]) -> bool {
        self.get(field).is_some()
    }

    fn convert(&mut self) {
        if let Repr::Pack { buf, len } = &self.repr {
            let mut t = Dense::with_capacity(*len as usize + 1, true);
            for (f, v) in HashIter::Pack(buf) {
                t.push(pair_entry(f, v));
            }
            self.repr = Repr::Table(Box::new(t));
        }
    }

    /// Sets `field` to `value`; returns true if the field is new.
    pub fn insert(&mut self, field: &[u8], value: &[u8]) -> bool {
        if matches!(self.repr, Repr::Pack { .. })
            && (field.len() > MAX_PACK_VALUE || value.len() > MAX_PACK_VALUE)
        {
            self.convert();
        }
        match &mut self.repr {
            Repr::Pack { buf, len } => {
                if let Some((_, vs, end)) = pack_find(buf, field) {
                    let old = end - vs;
                    if value.len() > old {
                        buf.reserve_exact(value.len() - old);
                    }
                    buf[vs - 1] = value.len() as u8;
                    buf.splice(vs..end, value.iter().copied());
                    if value.len() < old {
                        shrink(buf);
                    }
                    return false;
                }
                buf.reserve_exact(2 + field.len() + value.len());
                buf.push(field.len() as u8);
                buf.extend_from_slice(field);
                buf.push(value.len() as u8);
                buf.extend_from_slice(value);
                *len += 1;
                if *len as usize > MAX_PACK_ENTRIES {
                    self.convert();
                }
                true
            }
            Repr::Table(t) => match t.find(field) {
                Some(i) => {
                    t.replace(i, pair_entry(field, value));
                    false
                }
                None => {
                    t.push(pair_entry(field, value));
                    true
                }
            },
        }
    }

    /// Deletes `field`; returns whether it existed.
    pub fn remove(&mut self, field: &[u8]) -> bool {
        let removed = match &mut self.repr {
            Repr::Pack { buf, len } => match pack_find(buf, field) {
                Some((start, _, end)) => {
                    buf.drain(start..end);
                    *len -= 1;
                    shrink(buf);
                    true
                }
                None => false,
            },
            Repr::Table(t) => match t.find(field) {
                Some(i) => {
                    t.remove_at(i);
                    true
                }
                None => false,
            },
        };
        if removed && self.is_empty() {
            self.repr = Repr::default();
        }
        removed
    }

    /// The (field, value) pairs: insertion order for a listpack.
    pub fn iter(&self) -> HashIter<'_> {
        match &self.repr {
            Repr::Pack { buf, .. } => HashIter::Pack(buf),
            Repr::Table(t) => HashIter::Table(t.iter()),
        }
    }

    /// The `i`th pair in iteration order (O(1) for a table, O(n) packed).
    pub fn pair_at(&self, i: usize) -> (&[u8], &[u8]) {
        match &self.repr {
            Repr::Pack { .. } => self.iter().nth(i).expect("index in range"),
            Repr::Table(t) => split_pair(t.get(i)),
        }
    }

    /// HSCAN step: a listpack returns everything with cursor 0; a table
    /// visits up to `count` pairs from `cursor`. Returns the next cursor.
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&[u8], &[u8])) -> u64 {
        match &self.repr {
            Repr::Pack { buf, .. } => {
                for (k, v) in HashIter::Pack(buf) {
                    f(k, v);
                }
                0
            }
            Repr::Table(t) => t.scan(cursor, count, |e| {
                let (k, v) = split_pair(e);
                f(k, v)
            }),
        }
    }

    /// Serializes for DUMP: `[count varint]` then `[flen][field][vlen][value]` pairs.
    pub fn dump(&self, out: &mut Vec<u8>) {
        put_varint(out, self.len() as u64);
        for (f, v) in self.iter() {
            put_varint(out, f.len() as u64);
            out.extend_from_slice(f);
            put_varint(out, v.len() as u64);
            out.extend_from_slice(v);
        }
    }

    /// Rebuilds a hash from [`dump`](Self::dump) output (the encoding follows
    /// the thresholds, like loading an RDB). None if malformed or empty.
    pub fn restore(buf: &[u8]) -> Option<Hash> {
        let mut r = Reader(buf);
        let n = r.varint()?;
        if n == 0 {
            return None;
        }
        let mut h = Hash::new();
        for _ in 0..n {
            let f = r.bytes()?;
            let v = r.bytes()?;
            if !h.insert(f, v) {
                return None;
            }
        }
        r.0.is_empty().then_some(h)
    }
}

/// Gives back spare capacity of a packed buffer after it shrank a lot.
fn shrink(buf: &mut Vec<u8>) {
    if buf.is_empty() {
        *buf = Vec::new();
    } else if buf.capacity() - buf.len() >= 64 {
        buf.shrink_to_fit();
    }
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A cursor over DUMP payload bytes.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn varint(&mut self) -> Option<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.0.split_first()?;
            self.0 = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    pub(crate) fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.varint()?).ok()?;
        if n > self.0.len() {
            return None;
        }
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Debug, Clone)]
    enum Op {
        Set(u16, usize),
        Del(u16),
    }

    fn field(i: u16) -> Vec<u8> {
        format!("f{i}").into_bytes()
    }

    fn value(n: usize) -> Vec<u8> {
        vec![b'v'; n]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u16..700, prop_oneof![30 => 0usize..20, 1 => 60usize..70]).prop_map(|(f, n)| Op::Set(f, n)),
            1 => (0u16..700).prop_map(Op::Del),
        ]
    }

    fn check(h: &Hash, model: &HashMap<Vec<u8>, Vec<u8>>) {
        assert_eq!(h.len(), model.len());
        let got: HashMap<Vec<u8>, Vec<u8>> =
            h.iter().map(|(f, v)| (f.to_vec(), v.to_vec())).collect();
        assert_eq!(&got, model);
        for (f, v) in model {
            assert_eq!(h.get(f), Some(&v[..]));
        }
        let mut scanned = HashMap::new();
        let mut cursor = 0;
        loop {
            cursor = h.scan(cursor, 7, |f, v| {
                scanned.insert(f.to_vec(), v.to_vec());
            });
            if cursor == 0 {
                break;
            }
        }
        assert_eq!(&scanned, model);
        for i in 0..h.len() {
            let (f, v) = h.pair_at(i);
            assert_eq!(model.get(f).map(|x| &x[..]), Some(v));
        }
    }

    proptest! {
        #[test]
        fn matches_model(ops in proptest::collection::vec(op(), 0..1500)) {
            let mut h = Hash::new();
            let mut model: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
            let mut converted = false;
            for op in ops {
                match op {
                    Op::Set(f, n) => {
                        let (f, v) = (field(f), value(n));
                        if n > MAX_PACK_VALUE { converted = true; }
                        prop_assert_eq!(h.insert(&f, &v), model.insert(f, v).is_none());
                    }
                    Op::Del(f) => {
                        prop_assert_eq!(h.remove(&field(f)), model.remove(&field(f)).is_some());
                    }
                }
                if model.len() > MAX_PACK_ENTRIES { converted = true; }
                if model.is_empty() { converted = false; }
                prop_assert_eq!(h.encoding(), if converted { "hashtable" } else { "listpack" });
                if h.is_empty() {
                    prop_assert_eq!(h.mem_usage(), 0);
                }
            }
            check(&h, &model);
            let mut buf = Vec::new();
            h.dump(&mut buf);
            match Hash::restore(&buf) {
                Some(r) => check(&r, &model),
                None => prop_assert!(model.is_empty()),
            }
            // emptying returns memory to the base value
            let keys: Vec<Vec<u8>> = model.keys().cloned().collect();
            for k in keys {
                prop_assert!(h.remove(&k));
            }
            prop_assert_eq!(h.mem_usage(), Hash::new().mem_usage());
        }
    }

    #[test]
    fn listpack_keeps_insertion_order_and_converts() {
        let mut h = Hash::new();
        for i in 0..MAX_PACK_ENTRIES {
            h.insert(format!("f{i}").as_bytes(), b"x");
        }
        h.insert(b"f3", b"updated");
        h.remove(b"f0");
        let order: Vec<&[u8]> = h.iter().map(|(f, _)| f).collect();
        assert_eq!(order[0], b"f1");
        assert_eq!(h.get(b"f3"), Some(&b"updated"[..]));
        assert_eq!(h.encoding(), "listpack");
        h.insert(b"f0", b"x");
        assert_eq!(h.encoding(), "listpack");
        h.insert(b"one-more", b"x");
        assert_eq!(h.encoding(), "hashtable");
        assert_eq!(h.len(), MAX_PACK_ENTRIES + 1);
        let mut small = Hash::new();
        small.insert(b"a", &[b'x'; 65]);
        assert_eq!(small.encoding(), "hashtable");
        let mut small = Hash::new();
        small.insert(b"a", &[b'x'; 64]);
        assert_eq!(small.encoding(), "listpack");
    }

    #[test]
    fn table_scan_survives_deletions() {
        let mut h = Hash::new();
        for i in 0..1000 {
            h.insert(format!("f{i}").as_bytes(), b"v");
        }
        let mut seen = std::collections::HashSet::new();
        let mut cursor = 0;
        let mut round = 0;
        loop {
            cursor = h.scan(cursor, 10, |f, _| {
                seen.insert(f.to_vec());
            });
            // delete some fields (even ones) during the scan
            for j in 0..5 {
                let k = format!("f{}", (round * 10 + j * 2) % 1000);
                h.remove(k.as_bytes());
            }
            round += 1;
            if cursor == 0 {
                break;
            }
        }
        for (f, _) in h.iter() {
            assert!(seen.contains(f), "missed {:?}", f);
        }
    }
}
