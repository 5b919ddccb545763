//! Redis List values.
//!
//! A list is a deque of compact chunks, like Redis' quicklist of listpacks:
//!
//! ```text
//!  List
//!   └─ chunks: VecDeque<Chunk>        O(1) push/pop of whole chunks at both ends
//!        └─ Chunk { buf, n }          up to ~8 KiB of packed entries
//!             entry = varint(len) · bytes · reversed varint(len)
//! ```
//!
//! The trailing reversed length lets an entry be read backwards from the end of
//! a chunk, so both ends pop without scanning. An element larger than a chunk
//! gets a chunk of its own. Index access walks whole chunks by their counts
//! from the nearer end, then entries inside one chunk.
//!
//! `mem_usage` is the allocator cost of every chunk buffer (kept up to date by
//! each mutation) plus the deque's own buffer (computed from its capacity).

use std::collections::VecDeque;

use crate::shard::alloc_cost;

/// Target size in bytes of one chunk (Redis' `list-max-listpack-size -2`).
const CHUNK_BYTES: usize = 8 * 1024;
/// Smallest capacity a fresh chunk buffer gets.
const MIN_CAP: usize = 32;

/// Bytes of the varint encoding of `n`.
#[inline]
fn varint_len(mut n: usize) -> usize {
    let mut l = 1;
    while n >= 0x80 {
        n >>= 7;
        l += 1;
    }
    l
}

/// Encoded size of an element of `len` bytes.
#[inline]
fn entry_size(len: usize) -> usize {
    len + 2 * varint_len(len)
}

/// Writes one encoded entry into `out`, which must be exactly `entry_size` long.
fn encode_into(out: &mut [u8], data: &[u8]) {
    let vl = varint_len(data.len());
    let mut n = data.len();
    for i in 0..vl {
        let more = if i + 1 < vl { 0x80 } else { 0 };
        let b = (n & 0x7f) as u8 | more;
        out[i] = b;
        // The suffix holds the same bytes in reverse order.
        out[out.len() - 1 - i] = b;
        n >>= 7;
    }
    out[vl..vl + data.len()].copy_from_slice(data);
}

fn push_entry(out: &mut Vec<u8>, data: &[u8]) {
    let at = out.len();
    out.resize(at + entry_size(data.len()), 0);
    encode_into(&mut out[at..], data);
}

/// Decodes the entry starting at `pos`: (data start, data len, next entry).
#[inline]
fn read_fwd(buf: &[u8], pos: usize) -> (usize, usize, usize) {
    let (mut n, mut shift, mut i) = (0usize, 0u32, pos);
    loop {
        let b = buf[i];
        i += 1;
        n |= ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let vl = i - pos;
    (i, n, i + n + vl)
}

/// Decodes the entry ending at `end`: (entry start, data start, data len).
#[inline]
fn read_back(buf: &[u8], end: usize) -> (usize, usize, usize) {
    let (mut n, mut shift, mut i) = (0usize, 0u32, end);
    loop {
        i -= 1;
        let b = buf[i];
        n |= ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let vl = end - i;
    let start = end - vl - n - vl;
    (start, start + vl, n)
}

/// A run of packed entries.
#[derive(Clone, Debug, Default)]
struct Chunk {
    buf: Vec<u8>,
    n: usize,
}

impl Chunk {
    fn cost(&self) -> usize {
        if self.buf.capacity() == 0 {
            0
        } else {
            alloc_cost(self.buf.capacity())
        }
    }

    fn with_entry(data: &[u8]) -> Chunk {
        let sz = entry_size(data.len());
        let cap = if sz > CHUNK_BYTES {
            sz
        } else {
            sz.next_power_of_two().max(MIN_CAP)
        };
        let mut buf = Vec::with_capacity(cap);
        push_entry(&mut buf, data);
        Chunk { buf, n: 1 }
    }

    /// Whether `extra` more bytes fit without exceeding the chunk target.
    fn fits(&self, extra: usize) -> bool {
        self.buf.len() + extra <= CHUNK_BYTES
    }

    /// Reserves like a doubling Vec but never past the chunk target unless one
    /// entry alone is bigger.
    fn reserve(&mut self, extra: usize) {
        let need = self.buf.len() + extra;
        if need > self.buf.capacity() {
            let cap = need
                .next_power_of_two()
                .max(MIN_CAP)
                .min(CHUNK_BYTES.max(need));
            self.buf.reserve_exact(cap - self.buf.len());
        }
    }

    /// Gives memory back once the buffer is mostly empty.
    fn maybe_shrink(&mut self) {
        let cap = self.buf.capacity();
        if cap > MIN_CAP && self.buf.len() <= cap / 4 {
            let target = (self.buf.len() * 2).next_power_of_two().max(MIN_CAP);
            self.buf.shrink_to(target);
        }
    }

    fn push_back(&mut self, data: &[u8]) {
        self.reserve(entry_size(data.len()));
        push_entry(&mut self.buf, data);
        self.n += 1;
    }

    fn push_front(&mut self, data: &[u8]) {
        let sz = entry_size(data.len());
        self.reserve(sz);
        let old = self.buf.len();
        self.buf.resize(old + sz, 0);
        self.buf.copy_within(0..old, sz);
        encode_into(&mut self.buf[..sz], data);
        self.n += 1;
    }

    /// Byte offset of entry `i` (0-based), scanning from the nearer end.
    fn offset_of(&self, i: usize) -> usize {
        if i <= self.n / 2 {
            let mut pos = 0;
            for _ in 0..i {
                pos = read_fwd(&self.buf, pos).2;
            }
            pos
        } else {
            let mut end = self.buf.len();
            for _ in i..self.n {
                end = read_back(&self.buf, end).0;
            }
            end
        }
    }

    fn get(&self, i: usize) -> &[u8] {
        let (ds, dl, _) = read_fwd(&self.buf, self.offset_of(i));
        &self.buf[ds..ds + dl]
    }

    /// (entry start, data start, data len, entry end) of every entry.
    fn spans(&self) -> Vec<(usize, usize, usize, usize)> {
        let mut v = Vec::with_capacity(self.n);
        let mut pos = 0;
        while pos < self.buf.len() {
            let (ds, dl, next) = read_fwd(&self.buf, pos);
            v.push((pos, ds, dl, next));
            pos = next;
        }
        v
    }

    /// Splits off entries `at..` into a new chunk.
    fn split_off(&mut self, at: usize) -> Chunk {
        let off = self.offset_of(at);
        let tail = self.buf[off..].to_vec();
        self.buf.truncate(off);
        let moved = self.n - at;
        self.n = at;
        self.maybe_shrink();
        Chunk {
            buf: tail,
            n: moved,
        }
    }
}

/// A list value.
#[derive(Clone, Debug, Default)]
pub struct List {
    chunks: VecDeque<Chunk>,
    len: usize,
    /// Sum of the chunks' allocation costs.
    chunk_mem: usize,
}

impl List {
    /// An empty list.
    pub fn new() -> List {
        List::default()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Approximate allocated bytes.
    pub fn mem_usage(&self) -> usize {
        let deque = self.chunks.capacity() * std::mem::size_of::<Chunk>();
        self.chunk_mem + if deque == 0 { 0 } else { alloc_cost(deque) }
    }

    /// OBJECT ENCODING name (Redis 7.0 always reports quicklist for lists).
    pub fn encoding(&self) -> &'static str {
        "quicklist"
    }

    /// Runs `f` on chunk `ci`, keeping the memory count exact.
    fn edit<R>(&mut self, ci: usize, f: impl FnOnce(&mut Chunk) -> R) -> R {
        let c = &mut self.chunks[ci];
        let before = c.cost();
        let r = f(c);
        self.chunk_mem = self.chunk_mem + c.cost() - before;
        r
    }

    fn remove_chunk(&mut self, ci: usize) {
        if let Some(c) = self.chunks.remove(ci) {
            self.chunk_mem -= c.cost();
        }
    }

    fn insert_chunk(&mut self, ci: usize, c: Chunk) {
        self.chunk_mem += c.cost();
        self.chunks.insert(ci, c);
    }

    /// Adds to the head (`left`, Redis LEFT) or the tail.
    pub fn push(&mut self, left: bool, data: &[u8]) {
        if left {
            self.push_front(data)
        } else {
            self.push_back(data)
        }
    }

    /// Removes from the head (`left`) or the tail.
    pub fn pop(&mut self, left: bool) -> Option<Vec<u8>> {
        if left {
            self.pop_front()
        } else {
            self.pop_back()
        }
    }

    /// Prepends an element.
    pub fn push_front(&mut self, data: &[u8]) {
        let sz = entry_size(data.len());
        self.len += 1;
        if self.chunks.front().is_some_and(|c| c.fits(sz)) {
            self.edit(0, |c| c.push_front(data));
        } else {
            self.insert_chunk(0, Chunk::with_entry(data));
        }
    }

    /// Appends an element.
    pub fn push_back(&mut self, data: &[u8]) {
        let sz = entry_size(data.len());
        self.len += 1;
        if self.chunks.back().is_some_and(|c| c.fits(sz)) {
            let last = self.chunks.len() - 1;
            self.edit(last, |c| c.push_back(data));
        } else {
            let at = self.chunks.len();
            self.insert_chunk(at, Chunk::with_entry(data));
        }
    }

    /// Removes the first element.
    pub fn pop_front(&mut self) -> Option<Vec<u8>> {
        let c = self.chunks.front()?;
        if c.n == 1 {
            let (ds, dl, _) = read_fwd(&c.buf, 0);
            let v = c.buf[ds..ds + dl].to_vec();
            self.remove_chunk(0);
            self.len -= 1;
            return Some(v);
        }
        self.len -= 1;
        Some(self.edit(0, |c| {
            let (ds, dl, next) = read_fwd(&c.buf, 0);
            let v = c.buf[ds..ds + dl].to_vec();
            c.buf.drain(..next);
            c.n -= 1;
            c.maybe_shrink();
            v
        }))
    }

    /// Removes the last element.
    pub fn pop_back(&mut self) -> Option<Vec<u8>> {
        let last = self.chunks.len().checked_sub(1)?;
        let c = &self.chunks[last];
        if c.n == 1 {
            let (ds, dl, _) = read_fwd(&c.buf, 0);
            let v = c.buf[ds..ds + dl].to_vec();
            self.remove_chunk(last);
            self.len -= 1;
            return Some(v);
        }
        self.len -= 1;
        Some(self.edit(last, |c| {
            let (start, ds, dl) = read_back(&c.buf, c.buf.len());
            let v = c.buf[ds..ds + dl].to_vec();
            c.buf.truncate(start);
            c.n -= 1;
            c.maybe_shrink();
            v
        }))
    }

    /// (chunk index, index inside the chunk) of element `i < len`, walking from
    /// the nearer end.
    fn locate(&self, mut i: usize) -> (usize, usize) {
        debug_assert!(i < self.len);
        if i < self.len / 2 {
            for (ci, c) in self.chunks.iter().enumerate() {
                if i < c.n {
                    return (ci, i);
                }
                i -= c.n;
            }
        } else {
            let mut from_end = self.len - 1 - i;
            for (ci, c) in self.chunks.iter().enumerate().rev() {
                if from_end < c.n {
                    return (ci, c.n - 1 - from_end);
                }
                from_end -= c.n;
            }
        }
        unreachable!("index within len")
    }

    /// Resolves a Redis index (negative counts from the tail).
    pub fn resolve(&self, index: i64) -> Option<usize> {
        let i = if index < 0 {
            (self.len as i64).checked_add(index)?
        } else {
            index
        };
        (i >= 0 && (i as u64) < self.len as u64).then_some(i as usize)
    }

    /// Element at `i` (0-based).
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        if i >= self.len {
            return None;
        }
        let (ci, k) = self.locate(i);
        Some(self.chunks[ci].get(k))
    }

    /// Replaces element `i`; false if out of range.
    pub fn set(&mut self, i: usize, data: &[u8]) -> bool {
        if i >= self.len {
            return false;
        }
        let (ci, k) = self.locate(i);
        self.edit(ci, |c| {
            let off = c.offset_of(k);
            let (_, _, next) = read_fwd(&c.buf, off);
            let sz = entry_size(data.len());
            let mut enc = vec![0u8; sz];
            encode_into(&mut enc, data);
            c.buf.splice(off..next, enc);
            c.maybe_shrink();
        });
        self.fix_chunk(ci);
        true
    }

    /// Splits an oversized chunk and merges an undersized one with a neighbour.
    fn fix_chunk(&mut self, ci: usize) {
        let mut ci = ci;
        // Split while too big (an element bigger than a chunk stays alone).
        while self.chunks[ci].buf.len() > CHUNK_BYTES && self.chunks[ci].n > 1 {
            let c = &self.chunks[ci];
            // Split at the entry boundary closest to the middle, never empty.
            let half = c.buf.len() / 2;
            let mut at = 0;
            let mut pos = 0;
            while at < c.n - 1 {
                let next = read_fwd(&c.buf, pos).2;
                at += 1;
                pos = next;
                if pos >= half {
                    break;
                }
            }
            let tail = self.edit(ci, |c| c.split_off(at));
            self.insert_chunk(ci + 1, tail);
            if self.chunks[ci].buf.len() <= CHUNK_BYTES {
                ci += 1;
            }
        }
        self.merge_around(ci);
    }

    /// Merges chunk `ci` into a neighbour when both fit in one chunk.
    fn merge_around(&mut self, ci: usize) {
        if ci >= self.chunks.len() {
            return;
        }
        if self.chunks[ci].n == 0 {
            self.remove_chunk(ci);
            return;
        }
        if self.chunks[ci].buf.len() > CHUNK_BYTES / 4 {
            return;
        }
        for (a, b) in [(ci, ci + 1), (ci.wrapping_sub(1), ci)] {
            if a < self.chunks.len()
                && b < self.chunks.len()
                && self.chunks[a].buf.len() + self.chunks[b].buf.len() <= CHUNK_BYTES
            {
                let right = self.chunks.remove(b).expect("b in range");
                self.chunk_mem -= right.cost();
                self.edit(a, |c| {
                    c.reserve(right.buf.len());
                    c.buf.extend_from_slice(&right.buf);
                    c.n += right.n;
                });
                return;
            }
        }
    }

    /// Inserts `data` before (or after) the first element equal to `pivot`.
    /// Returns false when the pivot is absent.
    pub fn insert(&mut self, pivot: &[u8], data: &[u8], after: bool) -> bool {
        let mut found = None;
        'outer: for (ci, c) in self.chunks.iter().enumerate() {
            let mut pos = 0;
            while pos < c.buf.len() {
                let (ds, dl, next) = read_fwd(&c.buf, pos);
                if &c.buf[ds..ds + dl] == pivot {
                    found = Some((ci, if after { next } else { pos }));
                    break 'outer;
                }
                pos = next;
            }
        }
        let Some((ci, off)) = found else {
            return false;
        };
        let sz = entry_size(data.len());
        self.edit(ci, |c| {
            c.reserve(sz);
            let old = c.buf.len();
            c.buf.resize(old + sz, 0);
            c.buf.copy_within(off..old, off + sz);
            encode_into(&mut c.buf[off..off + sz], data);
            c.n += 1;
        });
        self.len += 1;
        self.fix_chunk(ci);
        true
    }

    /// Removes up to `count` elements equal to `elem` (0 = all; negative =
    /// from the tail). Returns how many were removed.
    pub fn remove(&mut self, elem: &[u8], count: i64) -> usize {
        let limit = if count == 0 {
            usize::MAX
        } else {
            count.unsigned_abs().min(usize::MAX as u64) as usize
        };
        let from_tail = count < 0;
        let mut removed = 0;
        let order: Vec<usize> = if from_tail {
            (0..self.chunks.len()).rev().collect()
        } else {
            (0..self.chunks.len()).collect()
        };
        let mut touched = Vec::new();
        for ci in order {
            if removed >= limit {
                break;
            }
            let spans = self.chunks[ci].spans();
            let buf = &self.chunks[ci].buf;
            let mut drop = vec![false; spans.len()];
            let mut any = false;
            let idx: Box<dyn Iterator<Item = usize>> = if from_tail {
                Box::new((0..spans.len()).rev())
            } else {
                Box::new(0..spans.len())
            };
            for i in idx {
                if removed >= limit {
                    break;
                }
                let (_, ds, dl, _) = spans[i];
                if &buf[ds..ds + dl] == elem {
                    drop[i] = true;
                    removed += 1;
                    any = true;
                }
            }
            if !any {
                continue;
            }
            self.edit(ci, |c| {
                let mut nb = Vec::with_capacity(c.buf.len());
                let mut kept = 0;
                for (i, &(s, _, _, e)) in spans.iter().enumerate() {
                    if !drop[i] {
                        nb.extend_from_slice(&c.buf[s..e]);
                        kept += 1;
                    }
                }
                c.buf = nb;
                c.n = kept;
                c.maybe_shrink();
            });
            touched.push(ci);
        }
        self.len -= removed;
        // Clean up from the highest index so earlier indexes stay valid.
        touched.sort_unstable_by(|a, b| b.cmp(a));
        for ci in touched {
            self.merge_around(ci);
        }
        removed
    }

    /// Removes `k` elements from the head.
    fn drop_front(&mut self, mut k: usize) {
        k = k.min(self.len);
        self.len -= k;
        while k > 0 {
            let n = self.chunks[0].n;
            if n <= k {
                self.remove_chunk(0);
                k -= n;
            } else {
                self.edit(0, |c| {
                    let off = c.offset_of(k);
                    c.buf.drain(..off);
                    c.n -= k;
                    c.maybe_shrink();
                });
                self.merge_around(0);
                k = 0;
            }
        }
    }

    /// Removes `k` elements from the tail.
    fn drop_back(&mut self, mut k: usize) {
        k = k.min(self.len);
        self.len -= k;
        while k > 0 {
            let last = self.chunks.len() - 1;
            let n = self.chunks[last].n;
            if n <= k {
                self.remove_chunk(last);
                k -= n;
            } else {
                self.edit(last, |c| {
                    let off = c.offset_of(n - k);
                    c.buf.truncate(off);
                    c.n -= k;
                    c.maybe_shrink();
                });
                self.merge_around(last);
                k = 0;
            }
        }
    }

    /// Keeps only elements `start..=end` (already clamped by the caller so that
    /// `start <= end < len`); with `None` removes everything.
    pub fn trim(&mut self, keep: Option<(usize, usize)>) {
        match keep {
            None => {
                self.chunks = VecDeque::new();
                self.chunk_mem = 0;
                self.len = 0;
            }
            Some((start, end)) => {
                let back = self.len - 1 - end.min(self.len - 1);
                self.drop_back(back);
                self.drop_front(start);
            }
        }
    }

    /// Iterates from the head.
    pub fn iter(&self) -> Iter<'_> {
        self.iter_from(0)
    }

    /// Iterates from element `i` towards the tail.
    pub fn iter_from(&self, i: usize) -> Iter<'_> {
        if i >= self.len {
            return Iter {
                list: self,
                ci: self.chunks.len(),
                pos: 0,
            };
        }
        let (ci, k) = self.locate(i);
        Iter {
            list: self,
            ci,
            pos: self.chunks[ci].offset_of(k),
        }
    }

    /// Iterates from the tail towards the head.
    pub fn iter_rev(&self) -> RevIter<'_> {
        RevIter {
            list: self,
            ci: self.chunks.len(),
            end: 0,
        }
    }

    /// Serializes for DUMP: varint count, then varint length and bytes of each element.
    pub fn dump(&self, out: &mut Vec<u8>) {
        write_varint(out, self.len);
        for e in self.iter() {
            write_varint(out, e.len());
            out.extend_from_slice(e);
        }
    }

    /// Parses what [`dump`](Self::dump) wrote; `None` if malformed (or empty:
    /// Redis never stores empty lists).
    pub fn restore(buf: &[u8]) -> Option<Self> {
        let mut pos = 0;
        let n = read_varint(buf, &mut pos)?;
        if n == 0 {
            return None;
        }
        let mut l = List::new();
        for _ in 0..n {
            let len = read_varint(buf, &mut pos)?;
            let end = pos.checked_add(len)?;
            l.push_back(buf.get(pos..end)?);
            pos = end;
        }
        (pos == buf.len()).then_some(l)
    }

    /// Builds a list from elements (head first).
    pub fn from_elems<'a>(elems: impl IntoIterator<Item = &'a [u8]>) -> List {
        let mut l = List::new();
        for e in elems {
            l.push_back(e);
        }
        l
    }

    /// Checks the internal invariants (tests).
    #[doc(hidden)]
    pub fn check(&self) {
        let mut total = 0;
        let mut mem = 0;
        for c in &self.chunks {
            assert!(c.n > 0, "empty chunk");
            assert_eq!(c.spans().len(), c.n);
            assert!(c.n == 1 || c.buf.len() <= CHUNK_BYTES, "oversized chunk");
            total += c.n;
            mem += c.cost();
        }
        assert_eq!(total, self.len);
        assert_eq!(mem, self.chunk_mem);
    }
}

fn write_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<usize> {
    let (mut n, mut shift) = (0usize, 0u32);
    loop {
        let b = *buf.get(*pos)?;
        *pos += 1;
        if shift > 56 {
            return None;
        }
        n |= ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            return Some(n);
        }
        shift += 7;
    }
}

/// Iterator over a list from some element towards the tail.
pub struct Iter<'a> {
    list: &'a List,
    ci: usize,
    pos: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            let c = self.list.chunks.get(self.ci)?;
            if self.pos < c.buf.len() {
                let (ds, dl, next) = read_fwd(&c.buf, self.pos);
                self.pos = next;
                return Some(&c.buf[ds..ds + dl]);
            }
            self.ci += 1;
            self.pos = 0;
        }
    }
}

/// Iterator over a list from the tail towards the head.
pub struct RevIter<'a> {
    list: &'a List,
    /// One past the chunk being read.
    ci: usize,
    /// End of the next entry to read inside chunk `ci - 1`.
    end: usize,
}

impl<'a> Iterator for RevIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if self.end == 0 {
                if self.ci == 0 {
                    return None;
                }
                self.ci -= 1;
                self.end = self.list.chunks[self.ci].buf.len();
                continue;
            }
            let c = &self.list.chunks[self.ci];
            let (start, ds, dl) = read_back(&c.buf, self.end);
            self.end = start;
            return Some(&c.buf[ds..ds + dl]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn model_check(l: &List, m: &VecDeque<Vec<u8>>) {
        l.check();
        assert_eq!(l.len(), m.len());
        let fwd: Vec<&[u8]> = l.iter().collect();
        let want: Vec<&[u8]> = m.iter().map(|v| v.as_slice()).collect();
        assert_eq!(fwd, want);
        let mut rev: Vec<&[u8]> = l.iter_rev().collect();
        rev.reverse();
        assert_eq!(rev, want);
    }

    #[derive(Clone, Debug)]
    enum Op {
        PushFront(Vec<u8>),
        PushBack(Vec<u8>),
        PopFront,
        PopBack,
        Set(usize, Vec<u8>),
        Insert(u8, Vec<u8>, bool),
        Remove(u8, i64),
        Trim(usize, usize),
        Get(usize),
        IterFrom(usize),
    }

    fn elem() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            8 => (0u8..6).prop_map(|b| vec![b'a' + b]),
            2 => proptest::collection::vec(any::<u8>(), 0..300),
            1 => (100usize..12000).prop_map(|n| vec![b'z'; n]),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => elem().prop_map(Op::PushFront),
            4 => elem().prop_map(Op::PushBack),
            2 => Just(Op::PopFront),
            2 => Just(Op::PopBack),
            1 => (any::<usize>(), elem()).prop_map(|(i, e)| Op::Set(i, e)),
            1 => (0u8..6, elem(), any::<bool>()).prop_map(|(p, e, a)| Op::Insert(p, e, a)),
            1 => (0u8..6, -3i64..4).prop_map(|(p, c)| Op::Remove(p, c)),
            1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Op::Trim(a, b)),
            1 => any::<usize>().prop_map(Op::Get),
            1 => any::<usize>().prop_map(Op::IterFrom),
        ]
    }

    fn run(ops: &[Op]) {
        let mut l = List::new();
        let mut m: VecDeque<Vec<u8>> = VecDeque::new();
        for op in ops {
            match op.clone() {
                Op::PushFront(e) => {
                    l.push_front(&e);
                    m.push_front(e);
                }
                Op::PushBack(e) => {
                    l.push_back(&e);
                    m.push_back(e);
                }
                Op::PopFront => assert_eq!(l.pop_front(), m.pop_front()),
                Op::PopBack => assert_eq!(l.pop_back(), m.pop_back()),
                Op::Set(i, e) => {
                    let i = if m.is_empty() { i } else { i % (m.len() + 1) };
                    let ok = l.set(i, &e);
                    assert_eq!(ok, i < m.len());
                    if ok {
                        m[i] = e;
                    }
                }
                Op::Insert(p, e, after) => {
                    let pivot = vec![b'a' + p];
                    let pos = m.iter().position(|x| *x == pivot);
                    assert_eq!(l.insert(&pivot, &e, after), pos.is_some());
                    if let Some(p) = pos {
                        m.insert(if after { p + 1 } else { p }, e);
                    }
                }
                Op::Remove(p, count) => {
                    let elem = vec![b'a' + p];
                    let limit = if count == 0 {
                        usize::MAX
                    } else {
                        count.unsigned_abs() as usize
                    };
                    let mut removed = 0;
                    let mut keep = vec![true; m.len()];
                    let idx: Vec<usize> = if count < 0 {
                        (0..m.len()).rev().collect()
                    } else {
                        (0..m.len()).collect()
                    };
                    for i in idx {
                        if removed < limit && m[i] == elem {
                            keep[i] = false;
                            removed += 1;
                        }
                    }
                    let mut it = keep.iter();
                    m.retain(|_| *it.next().unwrap());
                    assert_eq!(l.remove(&elem, count), removed);
                }
                Op::Trim(a, b) => {
                    if m.is_empty() {
                        l.trim(None);
                    } else {
                        let a = a % (m.len() + 1);
                        let b = b % m.len();
                        if a > b || a >= m.len() {
                            l.trim(None);
                            m.clear();
                        } else {
                            l.trim(Some((a, b)));
                            m.truncate(b + 1);
                            m.drain(..a);
                        }
                    }
                }
                Op::Get(i) => {
                    let i = if m.is_empty() { i } else { i % (m.len() + 1) };
                    assert_eq!(l.get(i), m.get(i).map(|v| v.as_slice()));
                }
                Op::IterFrom(i) => {
                    let i = if m.is_empty() { i } else { i % (m.len() + 1) };
                    let got: Vec<&[u8]> = l.iter_from(i).collect();
                    let want: Vec<&[u8]> = m.iter().skip(i).map(|v| v.as_slice()).collect();
                    assert_eq!(got, want);
                }
            }
            model_check(&l, &m);
        }
        let mut d = Vec::new();
        l.dump(&mut d);
        if m.is_empty() {
            assert!(List::restore(&d).is_none());
        } else {
            let r = List::restore(&d).expect("restore");
            model_check(&r, &m);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn matches_vecdeque_model(ops in proptest::collection::vec(op(), 0..200)) {
            run(&ops);
        }
    }

    #[test]
    fn many_small_elements_pack_densely() {
        let mut l = List::new();
        for i in 0..100_000u32 {
            l.push_back(i.to_string().as_bytes());
        }
        l.check();
        // ~7 bytes per element including chunk slack; far below a pointer per element.
        assert!(l.mem_usage() < 100_000 * 12, "{}", l.mem_usage());
        assert_eq!(l.get(54_321), Some(&b"54321"[..]));
        assert!(l.resolve(-1) == Some(99_999) && l.resolve(-100_001).is_none());
        for i in 0..100_000u32 {
            assert_eq!(l.pop_front().unwrap(), i.to_string().into_bytes());
        }
        assert!(l.is_empty());
        assert_eq!(
            l.mem_usage(),
            alloc_cost(l.chunks.capacity() * std::mem::size_of::<Chunk>())
        );
    }

    #[test]
    fn varint_lengths_round_trip() {
        for len in [0usize, 1, 127, 128, 16383, 16384, 70_000] {
            let data = vec![7u8; len];
            let mut buf = Vec::new();
            push_entry(&mut buf, &data);
            assert_eq!(buf.len(), entry_size(len));
            assert_eq!(read_fwd(&buf, 0), (varint_len(len), len, buf.len()));
            assert_eq!(read_back(&buf, buf.len()), (0, varint_len(len), len));
        }
    }

    #[test]
    fn restore_rejects_garbage() {
        assert!(List::restore(b"").is_none());
        assert!(List::restore(b"\x01").is_none());
        assert!(List::restore(b"\x01\x02a").is_none());
        assert!(List::restore(b"\x01\x01ab").is_none());
        assert!(List::restore(b"\x01\x01a").is_some());
    }
}
