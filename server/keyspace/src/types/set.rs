//! Redis Set values.
//!
//! Like Redis 7.0: an "intset" (a sorted vector of integers) while every
//! member is an integer in canonical form and there are at most
//! [`MAX_INTSET_ENTRIES`] of them, a "hashtable" otherwise (never back).

use super::hash::{put_varint, Dense, Reader};
use crate::shard::alloc_cost;

/// `set-max-intset-entries`.
pub const MAX_INTSET_ENTRIES: usize = 512;

/// Redis' `string2ll`: canonical decimal integers only (no sign `+`, no
/// leading zeros, no `-0`, no spaces), fitting an i64.
pub fn parse_int(b: &[u8]) -> Option<i64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    let (neg, digits) = match b[0] {
        b'-' => (true, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || (digits[0] == b'0' && (digits.len() > 1 || neg)) {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        let d = i64::from(c - b'0');
        v = if neg {
            v.checked_mul(10)?.checked_sub(d)?
        } else {
            v.checked_mul(10)?.checked_add(d)?
        };
    }
    Some(v)
}

/// One member, as stored: an intset holds integers, a table byte strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Member<'a> {
    /// An intset member.
    Int(i64),
    /// A table member.
    Bytes(&'a [u8]),
}

impl Member<'_> {
    /// The member's bytes (integers in decimal).
    pub fn to_vec(self) -> Vec<u8> {
        match self {
            Member::Int(n) => n.to_string().into_bytes(),
            Member::Bytes(b) => b.to_vec(),
        }
    }

    /// Calls `f` with the member's bytes without allocating.
    pub fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        match self {
            Member::Int(n) => {
                let mut buf = [0u8; 20];
                f(int_bytes(n, &mut buf))
            }
            Member::Bytes(b) => f(b),
        }
    }
}

fn int_bytes(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut u = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if n < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

#[derive(Clone, Debug)]
enum Repr {
    Ints(Vec<i64>),
    Table(Box<Dense>),
}

impl Default for Repr {
    fn default() -> Self {
        Repr::Ints(Vec::new())
    }
}

/// A set value.
#[derive(Clone, Debug, Default)]
pub struct Set {
    repr: Repr,
}

/// Iterator over a set's members (ascending for an intset).
pub enum SetIter<'a> {
    /// Intset.
    Ints(std::slice::Iter<'a, i64>),
    /// Table.
    Table(std::slice::Iter<'a, Box<[u8]>>),
}

impl<'a> Iterator for SetIter<'a> {
    type Item = Member<'a>;

    fn next(&mut self) -> Option<Member<'a>> {
        match self {
            SetIter::Ints(it) => it.next().map(|&n| Member::Int(n)),
            SetIter::Table(it) => it.next().map(|b| Member::Bytes(b)),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            SetIter::Ints(it) => it.size_hint(),
            SetIter::Table(it) => it.size_hint(),
        }
    }
}

impl Set {
    /// An empty set.
    pub fn new() -> Set {
        Set::default()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Ints(v) => v.len(),
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
            Repr::Ints(v) if v.capacity() == 0 => 0,
            Repr::Ints(v) => alloc_cost(v.capacity() * 8),
            Repr::Table(t) => alloc_cost(std::mem::size_of::<Dense>()) + t.mem(),
        }
    }

    /// OBJECT ENCODING name.
    pub fn encoding(&self) -> &'static str {
        match self.repr {
            Repr::Ints(_) => "intset",
            Repr::Table(_) => "hashtable",
        }
    }

    /// Whether `m` is a member.
    pub fn contains(&self, m: &[u8]) -> bool {
        match &self.repr {
            Repr::Ints(v) => parse_int(m).is_some_and(|n| v.binary_search(&n).is_ok()),
            Repr::Table(t) => t.find(m).is_some(),
        }
    }

    fn convert(&mut self, extra: usize) {
        if let Repr::Ints(v) = &self.repr {
            let mut t = Dense::with_capacity(v.len() + extra, false);
            for &n in v {
                let mut buf = [0u8; 20];
                t.push(int_bytes(n, &mut buf).into());
            }
            self.repr = Repr::Table(Box::new(t));
        }
    }

    /// Adds `m`; returns true if it was not a member.
    pub fn insert(&mut self, m: &[u8]) -> bool {
        if let Repr::Ints(v) = &mut self.repr {
            match parse_int(m) {
                Some(n) => {
                    let Err(pos) = v.binary_search(&n) else {
                        return false;
                    };
                    if v.len() == v.capacity() {
                        v.reserve_exact(1);
                    }
                    v.insert(pos, n);
                    if v.len() > MAX_INTSET_ENTRIES {
                        self.convert(0);
                    }
                    return true;
                }
                None => self.convert(1),
            }
        }
        let Repr::Table(t) = &mut self.repr else {
            unreachable!("converted above")
        };
        if t.find(m).is_some() {
            return false;
        }
        t.push(m.into());
        true
    }

    /// Removes `m`; returns whether it was a member.
    pub fn remove(&mut self, m: &[u8]) -> bool {
        let removed = match &mut self.repr {
            Repr::Ints(v) => match parse_int(m).map(|n| v.binary_search(&n)) {
                Some(Ok(pos)) => {
                    v.remove(pos);
                    true
                }
                _ => false,
            },
            Repr::Table(t) => match t.find(m) {
                Some(i) => {
                    t.remove_at(i);
                    true
                }
                None => false,
            },
        };
        if removed {
            self.after_remove();
        }
        removed
    }

    fn after_remove(&mut self) {
        if self.is_empty() {
            self.repr = Repr::default();
        } else if let Repr::Ints(v) = &mut self.repr {
            if v.capacity() - v.len() >= 16 {
                v.shrink_to_fit();
            }
        }
    }

    /// Members, ascending for an intset.
    pub fn iter(&self) -> SetIter<'_> {
        match &self.repr {
            Repr::Ints(v) => SetIter::Ints(v.iter()),
            Repr::Table(t) => SetIter::Table(t.iter()),
        }
    }

    /// The `i`th member in iteration order (O(1)).
    pub fn member_at(&self, i: usize) -> Member<'_> {
        match &self.repr {
            Repr::Ints(v) => Member::Int(v[i]),
            Repr::Table(t) => Member::Bytes(t.get(i)),
        }
    }

    /// Removes and returns the `i`th member in iteration order.
    pub fn remove_at(&mut self, i: usize) -> Vec<u8> {
        let m = match &mut self.repr {
            Repr::Ints(v) => Member::Int(v.remove(i)).to_vec(),
            Repr::Table(t) => t.remove_at(i).into_vec(),
        };
        self.after_remove();
        m
    }

    /// SSCAN step: an intset returns everything with cursor 0; a table
    /// visits up to `count` members from `cursor`. Returns the next cursor.
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(Member<'_>)) -> u64 {
        match &self.repr {
            Repr::Ints(v) => {
                for &n in v {
                    f(Member::Int(n));
                }
                0
            }
            Repr::Table(t) => t.scan(cursor, count, |b| f(Member::Bytes(b))),
        }
    }

    /// Serializes for DUMP: `[count varint]` then `[len varint][bytes]` members.
    pub fn dump(&self, out: &mut Vec<u8>) {
        put_varint(out, self.len() as u64);
        for m in self.iter() {
            m.with_bytes(|b| {
                put_varint(out, b.len() as u64);
                out.extend_from_slice(b);
            });
        }
    }

    /// Rebuilds a set from [`dump`](Self::dump) output. None if malformed or empty.
    pub fn restore(buf: &[u8]) -> Option<Set> {
        let mut r = Reader(buf);
        let n = r.varint()?;
        if n == 0 {
            return None;
        }
        let mut s = Set::new();
        for _ in 0..n {
            if !s.insert(r.bytes()?) {
                return None;
            }
        }
        r.0.is_empty().then_some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn member() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            6 => (-700i64..700).prop_map(|n| n.to_string().into_bytes()),
            1 => prop_oneof![Just(b"007".to_vec()), Just(b"-0".to_vec()), Just(b"+1".to_vec()), Just(b"x".to_vec()), Just(b"".to_vec())],
            1 => Just(i64::MIN.to_string().into_bytes()),
        ]
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add(Vec<u8>),
        Rem(Vec<u8>),
        PopAt(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => member().prop_map(Op::Add),
            1 => member().prop_map(Op::Rem),
            1 => any::<usize>().prop_map(Op::PopAt),
        ]
    }

    fn check(s: &Set, model: &HashSet<Vec<u8>>) {
        assert_eq!(s.len(), model.len());
        let got: HashSet<Vec<u8>> = s.iter().map(|m| m.to_vec()).collect();
        assert_eq!(&got, model);
        for m in model {
            assert!(s.contains(m));
        }
        if s.encoding() == "intset" {
            let v: Vec<i64> = s
                .iter()
                .map(|m| match m {
                    Member::Int(n) => n,
                    _ => panic!(),
                })
                .collect();
            assert!(v.windows(2).all(|w| w[0] < w[1]));
        }
        let mut scanned = HashSet::new();
        let mut cursor = 0;
        loop {
            cursor = s.scan(cursor, 5, |m| {
                scanned.insert(m.to_vec());
            });
            if cursor == 0 {
                break;
            }
        }
        assert_eq!(&scanned, model);
    }

    proptest! {
        #[test]
        fn matches_model(ops in proptest::collection::vec(op(), 0..1500)) {
            let mut s = Set::new();
            let mut model: HashSet<Vec<u8>> = HashSet::new();
            let mut converted = false;
            for op in ops {
                match op {
                    Op::Add(m) => {
                        if parse_int(&m).is_none() { converted = true; }
                        prop_assert_eq!(s.insert(&m), model.insert(m));
                    }
                    Op::Rem(m) => prop_assert_eq!(s.remove(&m), model.remove(&m)),
                    Op::PopAt(i) => {
                        if !s.is_empty() {
                            let m = s.remove_at(i % s.len());
                            prop_assert!(model.remove(&m));
                        }
                    }
                }
                if model.len() > MAX_INTSET_ENTRIES { converted = true; }
                if model.is_empty() { converted = false; }
                prop_assert_eq!(s.encoding(), if converted { "hashtable" } else { "intset" });
                if s.is_empty() {
                    prop_assert_eq!(s.mem_usage(), 0);
                }
            }
            check(&s, &model);
            let mut buf = Vec::new();
            s.dump(&mut buf);
            match Set::restore(&buf) {
                Some(r) => check(&r, &model),
                None => prop_assert!(model.is_empty()),
            }
            let ms: Vec<Vec<u8>> = model.iter().cloned().collect();
            for m in ms {
                prop_assert!(s.remove(&m));
            }
            prop_assert_eq!(s.mem_usage(), Set::new().mem_usage());
        }
    }

    #[test]
    fn parse_int_is_strict() {
        assert_eq!(parse_int(b"0"), Some(0));
        assert_eq!(parse_int(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b"-0"[..],
            b"01",
            b"+1",
            b" 1",
            b"",
            b"-",
            b"9223372036854775808",
            b"1.0",
        ] {
            assert_eq!(parse_int(bad), None);
        }
        let mut buf = [0u8; 20];
        assert_eq!(int_bytes(i64::MIN, &mut buf), b"-9223372036854775808");
        assert_eq!(int_bytes(0, &mut buf), b"0");
    }

    #[test]
    fn intset_threshold() {
        let mut s = Set::new();
        for i in 0..MAX_INTSET_ENTRIES {
            s.insert(i.to_string().as_bytes());
        }
        assert_eq!(s.encoding(), "intset");
        s.insert(b"100000");
        assert_eq!(s.encoding(), "hashtable");
        assert_eq!(s.len(), MAX_INTSET_ENTRIES + 1);
    }
}
