//! Redis sorted set values.
//!
//! Two representations, switched at Redis 7.0's thresholds (`zset-max-listpack-entries`
//! 128, `zset-max-listpack-value` 64), never switched back (like Redis, whose only way
//! back to a listpack is building a new value):
//!
//! * `listpack`: one byte buffer of `[member len: u8][member][score: f64 LE]` entries
//!   sorted by (score, member). Every operation is a linear scan over at most 128
//!   entries of at most 64 bytes.
//! * `skiplist`: an order-statistic B+ tree of slot indices ordered by (score, member),
//!   where every inner node keeps each child's element count (for ranks) and the
//!   index of its largest element (for descent), plus a hash table member → slot.
//!   Slots (`score`, `member`) live in one vector with a free list, so the tree and the
//!   table hold 4-byte indices and each member is stored once. Rank, score-range and
//!   lookup operations are O(log n); a range of k elements is visited in O(log n + k).
//!
//! Scores compare with `<`/`==` like Redis (`-0` equals `0`); NaN is never stored
//! (the command layer rejects it).

use std::cmp::Ordering;
use std::hash::BuildHasher;

use foldhash::fast::FixedState;
use hashbrown::HashTable;

use crate::shard::alloc_cost;

/// `zset-max-listpack-entries`.
pub const MAX_LISTPACK_ENTRIES: usize = 128;
/// `zset-max-listpack-value`.
pub const MAX_LISTPACK_VALUE: usize = 64;

const LEAF_CAP: usize = 64;
const LEAF_MIN: usize = 16;
const INNER_CAP: usize = 32;
const INNER_MIN: usize = 8;

/// A sorted set value.
#[derive(Clone, Debug, Default)]
pub struct ZSet {
    repr: Repr,
}

#[derive(Clone, Debug)]
enum Repr {
    Pack(Pack),
    Big(Box<Big>),
}

impl Default for Repr {
    fn default() -> Self {
        Repr::Pack(Pack::default())
    }
}

// ---------------------------------------------------------------------------------------
// listpack

#[derive(Clone, Debug, Default)]
struct Pack {
    buf: Vec<u8>,
    len: usize,
}

/// Total order of (score, member) pairs: score by `<`, ties by bytes.
#[inline]
fn key_cmp(s1: f64, m1: &[u8], s2: f64, m2: &[u8]) -> Ordering {
    if s1 < s2 {
        Ordering::Less
    } else if s1 > s2 {
        Ordering::Greater
    } else {
        m1.cmp(m2)
    }
}

struct PackIter<'a> {
    buf: &'a [u8],
    off: usize,
}

impl<'a> Iterator for PackIter<'a> {
    /// (offset of the entry, member, score)
    type Item = (usize, &'a [u8], f64);

    fn next(&mut self) -> Option<Self::Item> {
        if self.off >= self.buf.len() {
            return None;
        }
        let at = self.off;
        let n = self.buf[at] as usize;
        let m = &self.buf[at + 1..at + 1 + n];
        let s = f64::from_le_bytes(
            self.buf[at + 1 + n..at + 9 + n]
                .try_into()
                .expect("8 bytes"),
        );
        self.off = at + 9 + n;
        Some((at, m, s))
    }
}

impl Pack {
    fn iter(&self) -> PackIter<'_> {
        PackIter {
            buf: &self.buf,
            off: 0,
        }
    }

    fn find(&self, member: &[u8]) -> Option<(usize, f64)> {
        self.iter()
            .find(|(_, m, _)| *m == member)
            .map(|(o, _, s)| (o, s))
    }

    fn remove_at(&mut self, off: usize) {
        let n = self.buf[off] as usize;
        self.buf.drain(off..off + 9 + n);
        self.len -= 1;
    }

    fn insert(&mut self, member: &[u8], score: f64) {
        debug_assert!(member.len() <= u8::MAX as usize);
        // Redis stores listpack scores as text where -0 prints as "0".
        let score = if score == 0.0 { 0.0 } else { score };
        let pos = self
            .iter()
            .find(|(_, m, s)| key_cmp(*s, m, score, member) == Ordering::Greater)
            .map_or(self.buf.len(), |(o, _, _)| o);
        let mut e = Vec::with_capacity(member.len() + 9);
        e.push(member.len() as u8);
        e.extend_from_slice(member);
        e.extend_from_slice(&score.to_le_bytes());
        self.buf.splice(pos..pos, e);
        self.len += 1;
    }

    fn nth(&self, rank: usize) -> Option<(&[u8], f64)> {
        self.iter().nth(rank).map(|(_, m, s)| (m, s))
    }
}

// ---------------------------------------------------------------------------------------
// skiplist (B+ tree + hash table)

#[derive(Clone, Debug)]
struct Slot {
    score: f64,
    member: Box<[u8]>,
}

#[derive(Clone, Debug)]
struct Child {
    count: usize,
    max: u32,
    node: Node,
}

#[derive(Clone, Debug)]
enum Node {
    Leaf(Vec<u32>),
    Inner(Vec<Child>),
}

/// Bytes one tree node allocation costs.
const LEAF_BYTES: usize = (LEAF_CAP + 1) * 4 + 16;
const INNER_BYTES: usize = (INNER_CAP + 1) * std::mem::size_of::<Child>() + 16;

impl Node {
    fn new_leaf() -> Node {
        Node::Leaf(Vec::with_capacity(LEAF_CAP + 1))
    }

    fn new_inner() -> Node {
        Node::Inner(Vec::with_capacity(INNER_CAP + 1))
    }

    fn len(&self) -> usize {
        match self {
            Node::Leaf(v) => v.len(),
            Node::Inner(c) => c.len(),
        }
    }

    fn max(&self) -> u32 {
        match self {
            Node::Leaf(v) => *v.last().expect("non-empty leaf"),
            Node::Inner(c) => c.last().expect("non-empty inner").max,
        }
    }

    fn count(&self) -> usize {
        match self {
            Node::Leaf(v) => v.len(),
            Node::Inner(c) => c.iter().map(|c| c.count).sum(),
        }
    }
}

#[derive(Clone, Debug)]
struct Big {
    slots: Vec<Slot>,
    free: Vec<u32>,
    map: HashTable<u32>,
    root: Node,
    /// Sum of `alloc_cost` of every member allocation.
    member_bytes: usize,
    leaves: usize,
    inners: usize,
}

fn hasher() -> FixedState {
    FixedState::with_seed(0x5eed_2e75_0f5e_7a11)
}

#[inline]
fn member_cost(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        alloc_cost(len)
    }
}

/// Context for tree operations: the slots (to compare) and node counters.
struct Tcx<'a> {
    slots: &'a [Slot],
    leaves: &'a mut usize,
    inners: &'a mut usize,
}

impl Tcx<'_> {
    #[inline]
    fn cmp(&self, e: u32, score: f64, member: &[u8]) -> Ordering {
        let s = &self.slots[e as usize];
        key_cmp(s.score, &s.member, score, member)
    }
}

/// Where to split an overfull node of `len` items after an insert at `pos`: appends
/// at the right edge of the tree (and prepends at the left) leave a full node behind.
fn split_at(pos: usize, len: usize, leftmost: bool, rightmost: bool) -> usize {
    if rightmost && pos == len - 1 {
        len - 1
    } else if leftmost && pos == 0 {
        1
    } else {
        len / 2
    }
}

fn tree_insert(
    node: &mut Node,
    t: &mut Tcx<'_>,
    idx: u32,
    leftmost: bool,
    rightmost: bool,
) -> Option<Node> {
    let (score, member) = {
        let s = &t.slots[idx as usize];
        (s.score, &*s.member)
    };
    match node {
        Node::Leaf(v) => {
            let pos = v.partition_point(|&e| t.cmp(e, score, member) == Ordering::Less);
            v.insert(pos, idx);
            if v.len() <= LEAF_CAP {
                return None;
            }
            let k = split_at(pos, v.len(), leftmost, rightmost);
            let mut r = Vec::with_capacity(LEAF_CAP + 1);
            r.extend(v.drain(k..));
            *t.leaves += 1;
            Some(Node::Leaf(r))
        }
        Node::Inner(ch) => {
            let last = ch.len() - 1;
            let i = ch
                .partition_point(|c| t.cmp(c.max, score, member) == Ordering::Less)
                .min(last);
            let split = tree_insert(
                &mut ch[i].node,
                t,
                idx,
                leftmost && i == 0,
                rightmost && i == last,
            );
            ch[i].count += 1;
            if let Some(r) = split {
                let rc = r.count();
                let rmax = r.max();
                ch[i].count -= rc;
                ch.insert(
                    i + 1,
                    Child {
                        count: rc,
                        max: rmax,
                        node: r,
                    },
                );
            }
            ch[i].max = ch[i].node.max();
            if ch.len() <= INNER_CAP {
                return None;
            }
            let k = split_at(i + 1, ch.len(), leftmost, rightmost);
            let mut r = Vec::with_capacity(INNER_CAP + 1);
            r.extend(ch.drain(k..));
            *t.inners += 1;
            Some(Node::Inner(r))
        }
    }
}

/// Moves items between two adjacent children so that both have at least the minimum,
/// or merges them (returns true: `right` must be dropped).
fn rebalance(left: &mut Child, right: &mut Child, t: &mut Tcx<'_>) -> bool {
    let total = left.node.len() + right.node.len();
    match (&mut left.node, &mut right.node) {
        (Node::Leaf(a), Node::Leaf(b)) => {
            if total <= LEAF_CAP {
                a.append(b);
                *t.leaves -= 1;
                left.count = a.len();
                right.count = 0;
                left.max = left.node.max();
                return true;
            }
            let want = total / 2;
            if a.len() < want {
                let n = want - a.len();
                a.extend(b.drain(..n));
            } else {
                let n = a.len() - want;
                let moved: Vec<u32> = a.drain(a.len() - n..).collect();
                b.splice(0..0, moved);
            }
            left.count = a.len();
            right.count = b.len();
        }
        (Node::Inner(a), Node::Inner(b)) => {
            if total <= INNER_CAP {
                a.append(b);
                *t.inners -= 1;
                left.count += right.count;
                right.count = 0;
                left.max = left.node.max();
                return true;
            }
            let want = total / 2;
            let moved_count: usize;
            if a.len() < want {
                let n = want - a.len();
                moved_count = b[..n].iter().map(|c| c.count).sum();
                a.extend(b.drain(..n));
                left.count += moved_count;
                right.count -= moved_count;
            } else {
                let n = a.len() - want;
                let from = a.len() - n;
                moved_count = a[from..].iter().map(|c| c.count).sum();
                let moved: Vec<Child> = a.drain(from..).collect();
                b.splice(0..0, moved);
                left.count -= moved_count;
                right.count += moved_count;
            }
        }
        _ => unreachable!("siblings are at the same depth"),
    }
    left.max = left.node.max();
    right.max = right.node.max();
    false
}

fn tree_remove(node: &mut Node, t: &mut Tcx<'_>, score: f64, member: &[u8]) -> bool {
    match node {
        Node::Leaf(v) => {
            let pos = v.partition_point(|&e| t.cmp(e, score, member) == Ordering::Less);
            if pos < v.len() && t.cmp(v[pos], score, member) == Ordering::Equal {
                v.remove(pos);
                true
            } else {
                false
            }
        }
        Node::Inner(ch) => {
            let i = ch.partition_point(|c| t.cmp(c.max, score, member) == Ordering::Less);
            if i == ch.len() || !tree_remove(&mut ch[i].node, t, score, member) {
                return false;
            }
            ch[i].count -= 1;
            let len = ch[i].node.len();
            if len > 0 {
                ch[i].max = ch[i].node.max();
            }
            let min = match ch[i].node {
                Node::Leaf(_) => LEAF_MIN,
                Node::Inner(_) => INNER_MIN,
            };
            if len < min && ch.len() > 1 {
                let l = i.saturating_sub(1);
                let (a, b) = ch.split_at_mut(l + 1);
                if rebalance(&mut a[l], &mut b[0], t) {
                    ch.remove(l + 1);
                }
            }
            true
        }
    }
}

/// Number of leading elements for which `pred` holds (`pred` must be monotone).
fn tree_count_while(node: &Node, pred: &impl Fn(u32) -> bool) -> usize {
    match node {
        Node::Leaf(v) => v.partition_point(|&e| pred(e)),
        Node::Inner(ch) => {
            let i = ch.partition_point(|c| pred(c.max));
            let before: usize = ch[..i].iter().map(|c| c.count).sum();
            if i == ch.len() {
                before
            } else {
                before + tree_count_while(&ch[i].node, pred)
            }
        }
    }
}

fn tree_get(node: &Node, mut rank: usize) -> u32 {
    match node {
        Node::Leaf(v) => v[rank],
        Node::Inner(ch) => {
            for c in ch {
                if rank < c.count {
                    return tree_get(&c.node, rank);
                }
                rank -= c.count;
            }
            unreachable!("rank within the tree")
        }
    }
}

/// Visits ranks `start..end` of `node` (ascending, or descending when `rev`).
fn tree_visit(node: &Node, start: usize, end: usize, rev: bool, f: &mut impl FnMut(u32)) {
    match node {
        Node::Leaf(v) => {
            if rev {
                v[start..end].iter().rev().for_each(|&e| f(e));
            } else {
                v[start..end].iter().for_each(|&e| f(e));
            }
        }
        Node::Inner(ch) => {
            let mut visit = |off: usize, c: &Child| {
                let (lo, hi) = (start.max(off), end.min(off + c.count));
                if lo < hi {
                    tree_visit(&c.node, lo - off, hi - off, rev, f);
                }
            };
            if rev {
                let mut off = node_count_inner(ch);
                for c in ch.iter().rev() {
                    off -= c.count;
                    if off + c.count <= start {
                        break;
                    }
                    visit(off, c);
                }
            } else {
                let mut off = 0;
                for c in ch {
                    if off >= end {
                        break;
                    }
                    visit(off, c);
                    off += c.count;
                }
            }
        }
    }
}

fn node_count_inner(ch: &[Child]) -> usize {
    ch.iter().map(|c| c.count).sum()
}

impl Big {
    fn new() -> Big {
        Big {
            slots: Vec::new(),
            free: Vec::new(),
            map: HashTable::new(),
            root: Node::new_leaf(),
            member_bytes: 0,
            leaves: 1,
            inners: 0,
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn mem_usage(&self) -> usize {
        let cap = self.map.capacity();
        let buckets = if cap == 0 {
            0
        } else {
            (cap * 8 / 7).next_power_of_two()
        };
        std::mem::size_of::<Big>()
            + self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.free.capacity() * 4
            + buckets * 5
            + self.member_bytes
            + self.leaves * LEAF_BYTES
            + self.inners * INNER_BYTES
    }

    fn find(&self, member: &[u8]) -> Option<u32> {
        let h = hasher().hash_one(member);
        self.map
            .find(h, |&i| &*self.slots[i as usize].member == member)
            .copied()
    }

    fn tcx(&mut self) -> (Tcx<'_>, &mut Node) {
        (
            Tcx {
                slots: &self.slots,
                leaves: &mut self.leaves,
                inners: &mut self.inners,
            },
            &mut self.root,
        )
    }

    fn tree_add(&mut self, idx: u32) {
        let (mut t, root) = self.tcx();
        if let Some(right) = tree_insert(root, &mut t, idx, true, true) {
            let left = std::mem::replace(root, Node::new_inner());
            let Node::Inner(ch) = root else {
                unreachable!()
            };
            for n in [left, right] {
                ch.push(Child {
                    count: n.count(),
                    max: n.max(),
                    node: n,
                });
            }
            *t.inners += 1;
        }
    }

    fn tree_del(&mut self, idx: u32) {
        let Big {
            slots,
            root,
            leaves,
            inners,
            ..
        } = self;
        let s = &slots[idx as usize];
        let mut t = Tcx {
            slots,
            leaves,
            inners,
        };
        let found = tree_remove(root, &mut t, s.score, &s.member);
        debug_assert!(found, "element in the tree");
        if let Node::Inner(ch) = root {
            if ch.len() == 1 {
                let only = ch.pop().expect("one child").node;
                *root = only;
                *t.inners -= 1;
            }
        }
    }

    /// Adds a new member (must be absent).
    fn push_new(&mut self, member: &[u8], score: f64) {
        let slot = Slot {
            score,
            member: member.into(),
        };
        self.member_bytes += member_cost(member.len());
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        let h = hasher().hash_one(member);
        let slots = &self.slots;
        self.map
            .insert_unique(h, idx, |&i| hasher().hash_one(&*slots[i as usize].member));
        self.tree_add(idx);
    }

    fn insert(&mut self, member: &[u8], score: f64) -> Option<f64> {
        match self.find(member) {
            Some(idx) => {
                let old = self.slots[idx as usize].score;
                #[allow(clippy::float_cmp)]
                if old != score {
                    self.tree_del(idx);
                    self.slots[idx as usize].score = score;
                    self.tree_add(idx);
                }
                Some(old)
            }
            None => {
                self.push_new(member, score);
                None
            }
        }
    }

    fn remove(&mut self, member: &[u8]) -> Option<f64> {
        let idx = self.find(member)?;
        self.tree_del(idx);
        let h = hasher().hash_one(member);
        let slots = &self.slots;
        if let Ok(e) = self
            .map
            .find_entry(h, |&i| &*slots[i as usize].member == member)
        {
            e.remove();
        }
        let slot = &mut self.slots[idx as usize];
        let score = slot.score;
        self.member_bytes -= member_cost(slot.member.len());
        slot.member = Box::default();
        self.free.push(idx);
        Some(score)
    }

    fn count_while(&self, pred: impl Fn(&[u8], f64) -> bool) -> usize {
        let slots = &self.slots;
        tree_count_while(&self.root, &|e| {
            let s = &slots[e as usize];
            pred(&s.member, s.score)
        })
    }

    fn get(&self, rank: usize) -> (&[u8], f64) {
        let s = &self.slots[tree_get(&self.root, rank) as usize];
        (&s.member, s.score)
    }
}

// ---------------------------------------------------------------------------------------
// public API

impl ZSet {
    /// `zset-max-listpack-entries`.
    pub const MAX_LISTPACK_ENTRIES: usize = MAX_LISTPACK_ENTRIES;
    /// `zset-max-listpack-value`.
    pub const MAX_LISTPACK_VALUE: usize = MAX_LISTPACK_VALUE;

    /// An empty sorted set (listpack).
    pub fn new() -> ZSet {
        ZSet::default()
    }

    /// An empty sorted set already in the skiplist encoding (Redis creates one directly
    /// when a ZADD brings more than 128 elements or a member longer than 64 bytes).
    pub fn new_skiplist() -> ZSet {
        ZSet {
            repr: Repr::Big(Box::new(Big::new())),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Pack(p) => p.len,
            Repr::Big(b) => b.len(),
        }
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate allocated bytes (O(1)); 0 for an empty listpack.
    pub fn mem_usage(&self) -> usize {
        match &self.repr {
            Repr::Pack(p) => {
                if p.buf.capacity() == 0 {
                    0
                } else {
                    alloc_cost(p.buf.capacity())
                }
            }
            Repr::Big(b) => b.mem_usage(),
        }
    }

    /// OBJECT ENCODING name.
    pub fn encoding(&self) -> &'static str {
        match &self.repr {
            Repr::Pack(_) => "listpack",
            Repr::Big(_) => "skiplist",
        }
    }

    /// Whether the set uses the skiplist encoding.
    pub fn is_skiplist(&self) -> bool {
        matches!(self.repr, Repr::Big(_))
    }

    fn convert_to_skiplist(&mut self) {
        if let Repr::Pack(p) = &self.repr {
            let mut b = Big::new();
            for (_, m, s) in p.iter() {
                b.push_new(m, s);
            }
            self.repr = Repr::Big(Box::new(b));
        }
    }

    /// Converts to the skiplist encoding if the set has more than 128 elements or a
    /// member longer than 64 bytes (the check Redis makes when storing a computed set).
    pub fn convert_if_needed(&mut self) {
        if let Repr::Pack(p) = &self.repr {
            if p.len > MAX_LISTPACK_ENTRIES
                || p.iter().any(|(_, m, _)| m.len() > MAX_LISTPACK_VALUE)
            {
                self.convert_to_skiplist();
            }
        }
    }

    /// Builds a set from pairs (later duplicates overwrite), choosing the encoding by
    /// the final size and longest member like Redis does for computed results.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a [u8], f64)>) -> ZSet {
        let pairs: Vec<(&[u8], f64)> = pairs.into_iter().collect();
        let big = pairs.len() > MAX_LISTPACK_ENTRIES
            || pairs.iter().any(|(m, _)| m.len() > MAX_LISTPACK_VALUE);
        let mut z = if big {
            ZSet::new_skiplist()
        } else {
            ZSet::new()
        };
        for (m, s) in pairs {
            z.insert(m, s);
        }
        z
    }

    /// Score of `member`.
    pub fn score(&self, member: &[u8]) -> Option<f64> {
        match &self.repr {
            Repr::Pack(p) => p.find(member).map(|(_, s)| s),
            Repr::Big(b) => b.find(member).map(|i| b.slots[i as usize].score),
        }
    }

    /// Adds `member` or changes its score; returns the previous score. Converts to a
    /// skiplist when the listpack limits would be exceeded.
    pub fn insert(&mut self, member: &[u8], score: f64) -> Option<f64> {
        if let Repr::Pack(p) = &mut self.repr {
            match p.find(member) {
                Some((off, old)) => {
                    #[allow(clippy::float_cmp)]
                    if old != score {
                        p.remove_at(off);
                        p.insert(member, score);
                    }
                    return Some(old);
                }
                None => {
                    if p.len < MAX_LISTPACK_ENTRIES && member.len() <= MAX_LISTPACK_VALUE {
                        p.insert(member, score);
                        return None;
                    }
                    self.convert_to_skiplist();
                }
            }
        }
        match &mut self.repr {
            Repr::Big(b) => b.insert(member, score),
            Repr::Pack(_) => unreachable!("converted above"),
        }
    }

    /// Removes `member`; returns its score. An emptied set goes back to the empty state.
    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        let r = match &mut self.repr {
            Repr::Pack(p) => {
                let (off, s) = p.find(member)?;
                p.remove_at(off);
                Some(s)
            }
            Repr::Big(b) => b.remove(member),
        };
        if r.is_some() && self.is_empty() {
            self.repr = Repr::default();
        }
        r
    }

    /// 0-based ascending rank of `member`.
    pub fn rank(&self, member: &[u8]) -> Option<usize> {
        match &self.repr {
            Repr::Pack(p) => p.iter().position(|(_, m, _)| m == member),
            Repr::Big(b) => {
                let idx = b.find(member)?;
                let s = &b.slots[idx as usize];
                let (score, member) = (s.score, &*s.member);
                Some(b.count_while(|m, sc| key_cmp(sc, m, score, member) == Ordering::Less))
            }
        }
    }

    /// Element at ascending rank `rank`.
    pub fn get(&self, rank: usize) -> Option<(&[u8], f64)> {
        if rank >= self.len() {
            return None;
        }
        match &self.repr {
            Repr::Pack(p) => p.nth(rank),
            Repr::Big(b) => Some(b.get(rank)),
        }
    }

    /// Number of leading elements (in ascending order) for which `pred(member, score)`
    /// holds; `pred` must be true on a prefix and false after it.
    pub fn count_while(&self, pred: impl Fn(&[u8], f64) -> bool) -> usize {
        match &self.repr {
            Repr::Pack(p) => p.iter().take_while(|(_, m, s)| pred(m, *s)).count(),
            Repr::Big(b) => b.count_while(pred),
        }
    }

    /// Number of elements with a score below `bound` (`<`, or `<=` when `inclusive`).
    pub fn count_score_below(&self, bound: f64, inclusive: bool) -> usize {
        if inclusive {
            self.count_while(|_, s| s <= bound)
        } else {
            self.count_while(|_, s| s < bound)
        }
    }

    /// Calls `f` on the elements of ascending ranks `start..end` (clamped), in
    /// ascending order, or descending when `rev`.
    pub fn range(&self, start: usize, end: usize, rev: bool, mut f: impl FnMut(&[u8], f64)) {
        let end = end.min(self.len());
        if start >= end {
            return;
        }
        match &self.repr {
            Repr::Pack(p) => {
                let items = p.iter().skip(start).take(end - start);
                if rev {
                    let v: Vec<_> = items.collect();
                    v.into_iter().rev().for_each(|(_, m, s)| f(m, s));
                } else {
                    items.for_each(|(_, m, s)| f(m, s));
                }
            }
            Repr::Big(b) => {
                let slots = &b.slots;
                tree_visit(&b.root, start, end, rev, &mut |e| {
                    let s = &slots[e as usize];
                    f(&s.member, s.score)
                });
            }
        }
    }

    /// Copies out the elements of ascending ranks `start..end`.
    pub fn range_vec(&self, start: usize, end: usize, rev: bool) -> Vec<(Vec<u8>, f64)> {
        let mut v = Vec::with_capacity(end.min(self.len()).saturating_sub(start));
        self.range(start, end, rev, |m, s| v.push((m.to_vec(), s)));
        v
    }

    /// Removes the elements of ascending ranks `start..end`; returns how many.
    pub fn remove_range(&mut self, start: usize, end: usize) -> usize {
        let end = end.min(self.len());
        if start >= end {
            return 0;
        }
        if start == 0 && end == self.len() {
            self.repr = Repr::default();
            return end;
        }
        let n = end - start;
        match &mut self.repr {
            Repr::Pack(p) => {
                let offs: Vec<usize> = p.iter().map(|(o, _, _)| o).collect();
                let from = offs[start];
                let to = offs.get(end).copied().unwrap_or(p.buf.len());
                p.buf.drain(from..to);
                p.len -= n;
            }
            Repr::Big(_) => {
                for (m, _) in self.range_vec(start, end, false) {
                    self.remove(&m);
                }
            }
        }
        n
    }

    /// Removes and returns the lowest (or highest, when `max`) element.
    pub fn pop(&mut self, max: bool) -> Option<(Vec<u8>, f64)> {
        let rank = if max { self.len().checked_sub(1)? } else { 0 };
        let (m, s) = self.get(rank).map(|(m, s)| (m.to_vec(), s))?;
        self.remove(&m);
        Some((m, s))
    }

    /// All elements in ascending order.
    pub fn to_vec(&self) -> Vec<(Vec<u8>, f64)> {
        self.range_vec(0, self.len(), false)
    }

    /// Cursor iteration (ZSCAN): a listpack is returned whole (cursor 0); a skiplist
    /// visits about `count` slots from `cursor` (slot index) and returns the next cursor
    /// (0 when done). Members present for the whole scan are returned at least once.
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&[u8], f64)) -> u64 {
        match &self.repr {
            Repr::Pack(p) => {
                p.iter().for_each(|(_, m, s)| f(m, s));
                0
            }
            Repr::Big(b) => {
                let mut i = cursor as usize;
                let mut seen = 0;
                while i < b.slots.len() && seen < count.max(1) {
                    if b.find_slot_live(i) {
                        let s = &b.slots[i];
                        f(&s.member, s.score);
                        seen += 1;
                    }
                    i += 1;
                }
                if i >= b.slots.len() {
                    0
                } else {
                    i as u64
                }
            }
        }
    }

    /// Serialises the set for DUMP: `varint count`, then per element in ascending
    /// order `varint len, member, score (f64 LE)`.
    pub fn dump(&self, out: &mut Vec<u8>) {
        put_varint(out, self.len() as u64);
        self.range(0, self.len(), false, |m, s| {
            put_varint(out, m.len() as u64);
            out.extend_from_slice(m);
            out.extend_from_slice(&s.to_le_bytes());
        });
    }

    /// Parses a [`dump`](Self::dump) payload; None if malformed (truncated, trailing
    /// bytes, NaN scores, duplicate members, empty set).
    pub fn restore(buf: &[u8]) -> Option<ZSet> {
        let mut pos = 0;
        let n = get_varint(buf, &mut pos)? as usize;
        if n == 0 {
            return None;
        }
        let mut pairs = Vec::with_capacity(n.min(buf.len()));
        for _ in 0..n {
            let len = get_varint(buf, &mut pos)? as usize;
            let end = pos.checked_add(len)?;
            let m = buf.get(pos..end)?;
            let s = f64::from_le_bytes(buf.get(end..end + 8)?.try_into().ok()?);
            if s.is_nan() {
                return None;
            }
            pairs.push((m, s));
            pos = end + 8;
        }
        if pos != buf.len() {
            return None;
        }
        let z = ZSet::from_pairs(pairs);
        (z.len() == n).then_some(z)
    }

    /// Checks the internal invariants (tests).
    #[doc(hidden)]
    pub fn check(&self) {
        if let Repr::Big(b) = &self.repr {
            fn walk(n: &Node, depth: usize, leaf_depth: &mut Option<usize>) -> usize {
                match n {
                    Node::Leaf(v) => {
                        match leaf_depth {
                            Some(d) => assert_eq!(*d, depth),
                            None => *leaf_depth = Some(depth),
                        }
                        v.len()
                    }
                    Node::Inner(ch) => {
                        let mut total = 0;
                        for c in ch {
                            let cnt = walk(&c.node, depth + 1, leaf_depth);
                            assert_eq!(cnt, c.count);
                            assert_eq!(c.max, c.node.max());
                            assert!(cnt > 0);
                            total += cnt;
                        }
                        total
                    }
                }
            }
            let mut d = None;
            assert_eq!(walk(&b.root, 0, &mut d), b.len());
            let all = self.to_vec();
            for w in all.windows(2) {
                assert_eq!(key_cmp(w[0].1, &w[0].0, w[1].1, &w[1].0), Ordering::Less);
            }
            for (m, s) in &all {
                assert_eq!(self.score(m), Some(*s));
            }
        }
    }
}

impl Big {
    fn find_slot_live(&self, i: usize) -> bool {
        let m = &self.slots[i].member;
        // A freed slot has an empty member; the empty member may also be live.
        !m.is_empty() || self.find(b"") == Some(i as u32)
    }
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn get_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeSet, HashMap};

    /// Model: member -> score plus the ordered (score, member) set.
    #[derive(Default)]
    struct Model {
        scores: HashMap<Vec<u8>, f64>,
    }

    impl Model {
        fn sorted(&self) -> Vec<(Vec<u8>, f64)> {
            let mut v: Vec<_> = self.scores.iter().map(|(m, s)| (m.clone(), *s)).collect();
            v.sort_by(|a, b| key_cmp(a.1, &a.0, b.1, &b.0));
            v
        }
    }

    fn member(i: u16) -> Vec<u8> {
        format!("m{i}").into_bytes()
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add(u16, i8),
        Rem(u16),
        PopMin,
        PopMax,
        RemRange(u16, u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u16..400, any::<i8>()).prop_map(|(m, s)| Op::Add(m, s)),
            3 => (0u16..400).prop_map(Op::Rem),
            1 => Just(Op::PopMin),
            1 => Just(Op::PopMax),
            1 => (0u16..300, 0u16..20).prop_map(|(a, n)| Op::RemRange(a, a + n)),
        ]
    }

    fn compare(z: &ZSet, m: &Model) {
        z.check();
        let want = m.sorted();
        assert_eq!(z.len(), want.len());
        assert_eq!(z.to_vec(), want);
        for (r, (mem, s)) in want.iter().enumerate() {
            assert_eq!(z.rank(mem), Some(r));
            assert_eq!(z.score(mem), Some(*s));
            assert_eq!(
                z.get(r).map(|(a, b)| (a.to_vec(), b)),
                Some((mem.clone(), *s))
            );
        }
        for b in [-200.0, -3.0, 0.0, 5.0, 200.0] {
            let lt = want.iter().filter(|(_, s)| *s < b).count();
            let le = want.iter().filter(|(_, s)| *s <= b).count();
            assert_eq!(z.count_score_below(b, false), lt);
            assert_eq!(z.count_score_below(b, true), le);
        }
        let n = want.len();
        if n > 3 {
            let (a, e) = (n / 3, n - 1);
            let mut got = Vec::new();
            z.range(a, e, true, |m, s| got.push((m.to_vec(), s)));
            let exp: Vec<_> = want[a..e].iter().rev().cloned().collect();
            assert_eq!(got, exp);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn matches_model(ops in proptest::collection::vec(op(), 1..600)) {
            let mut z = ZSet::new();
            let mut m = Model::default();
            for o in &ops {
                match *o {
                    Op::Add(i, s) => {
                        let old = z.insert(&member(i), s as f64);
                        assert_eq!(old, m.scores.insert(member(i), s as f64));
                    }
                    Op::Rem(i) => {
                        assert_eq!(z.remove(&member(i)), m.scores.remove(&member(i)));
                    }
                    Op::PopMin | Op::PopMax => {
                        let want = m.sorted();
                        let exp = if matches!(o, Op::PopMin) { want.first() } else { want.last() };
                        let got = z.pop(matches!(o, Op::PopMax));
                        assert_eq!(got.as_ref(), exp);
                        if let Some((mm, _)) = got { m.scores.remove(&mm); }
                    }
                    Op::RemRange(a, e) => {
                        let want = m.sorted();
                        let (a, e) = (a as usize, (e as usize).min(want.len()));
                        let n = z.remove_range(a, e);
                        assert_eq!(n, e.saturating_sub(a));
                        if a < e {
                            for (mm, _) in &want[a..e] { m.scores.remove(mm); }
                        }
                    }
                }
            }
            compare(&z, &m);
            if z.is_empty() {
                assert_eq!(z.mem_usage(), 0);
            }
        }
    }

    #[test]
    fn encoding_thresholds() {
        let mut z = ZSet::new();
        for i in 0..128 {
            z.insert(&member(i), i as f64);
        }
        assert_eq!(z.encoding(), "listpack");
        z.insert(&member(128), 1.5);
        assert_eq!(z.encoding(), "skiplist");
        z.check();
        z.remove(&member(128));
        assert_eq!(z.encoding(), "skiplist");
        let mut z = ZSet::new();
        z.insert(&[b'x'; 64], 1.0);
        assert_eq!(z.encoding(), "listpack");
        z.insert(&[b'x'; 65], 1.0);
        assert_eq!(z.encoding(), "skiplist");
        assert_eq!(z.rank(&[b'x'; 65]), Some(1));
    }

    #[test]
    fn large_sequential_and_random() {
        let mut z = ZSet::new();
        let mut m = Model::default();
        for i in 0..5000u32 {
            let mem = format!("k{i}").into_bytes();
            z.insert(&mem, i as f64);
            m.scores.insert(mem, i as f64);
        }
        compare(&z, &m);
        let mut x = 12345u64;
        for _ in 0..20000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let i = (x >> 33) % 6000;
            let mem = format!("k{i}").into_bytes();
            if (x >> 20) % 3 == 0 {
                assert_eq!(z.remove(&mem), m.scores.remove(&mem));
            } else {
                let s = ((x >> 40) % 1000) as f64 / 7.0;
                assert_eq!(z.insert(&mem, s), m.scores.insert(mem, s));
            }
        }
        compare(&z, &m);
        let all: BTreeSet<Vec<u8>> = m.scores.keys().cloned().collect();
        for mem in &all {
            z.remove(mem);
        }
        assert!(z.is_empty());
        assert_eq!(z.mem_usage(), 0);
    }

    #[test]
    fn mem_usage_tracks_growth_and_returns_to_zero() {
        let mut z = ZSet::new();
        assert_eq!(z.mem_usage(), 0);
        let mut last = 0;
        for i in 0..1000u16 {
            z.insert(&member(i), 0.0);
            if i % 100 == 99 {
                assert!(z.mem_usage() > last);
                last = z.mem_usage();
            }
        }
        assert!(z.mem_usage() < 1000 * 100);
        for i in 0..1000u16 {
            z.remove(&member(i));
        }
        assert_eq!(z.mem_usage(), 0);
    }

    #[test]
    fn dump_restore_round_trip() {
        for n in [1u16, 5, 128, 129, 1000] {
            let mut z = ZSet::new();
            for i in 0..n {
                z.insert(&member(i), (i as f64) * -0.5);
            }
            let mut out = Vec::new();
            z.dump(&mut out);
            let r = ZSet::restore(&out).expect("valid");
            assert_eq!(r.to_vec(), z.to_vec());
            assert_eq!(r.encoding(), z.encoding());
            assert!(ZSet::restore(&out[..out.len() - 1]).is_none());
        }
        assert!(ZSet::restore(&[0]).is_none());
    }

    #[test]
    fn scan_visits_everything() {
        let mut z = ZSet::new();
        for i in 0..500u16 {
            z.insert(&member(i), i as f64);
        }
        z.insert(b"", 3.0);
        for i in 0..100u16 {
            z.remove(&member(i * 3));
        }
        let mut seen = BTreeSet::new();
        let mut c = 0;
        loop {
            c = z.scan(c, 10, |m, _| {
                seen.insert(m.to_vec());
            });
            if c == 0 {
                break;
            }
        }
        assert_eq!(seen.len(), z.len());
    }
}
