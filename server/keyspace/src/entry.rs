//! One key and its value in a single thin heap allocation.
//!
//! The hash table stores one 8-byte pointer per slot, so per-key overhead is the
//! table slot (8 B + 1 control byte, at hashbrown's load factor) plus this header.
//! A fat `Box<[u8]>` would double the slot and a struct with separate key/value
//! boxes would triple the allocations; both were measured to miss the memory
//! target (≤ 0.8× redis-server RSS per 14 B key + 32 B value).
//!
//! Layout of the allocation (all integers little endian, unaligned):
//!
//! ```text
//! +------+--------+--------+--------+--------+------------+---------+-----+-------+
//! | tag  | access |  cas   | keylen | vallen | [expire_at]| [flags] | key | value |
//! | u8   | u32    |  u64   | varint | varint | u64 if bit | u32 ... |     |       |
//! +------+--------+--------+--------+--------+------------+---------+-----+-------+
//! tag: bit0 = has expire_at (unix ms), bit1 = has client flags,
//!      bit2 = "raw" (modified in place, for OBJECT ENCODING),
//!      bit3 = fetched (memcache `mg h`), bits 4..7 = kind,
//!      bit7 = key was given base64-encoded (memcache meta `b`)
//! ```
//!
//! Invariant: an `Entry` always points at an allocation of exactly
//! `Layout::from_size_align(total_len, 1)` that it owns, written by [`Entry::new`].

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ptr::NonNull;

use crate::object::Object;

const TAG_EXPIRE: u8 = 1;
const TAG_FLAGS: u8 = 2;
const TAG_RAW: u8 = 4;
const TAG_FETCHED: u8 = 8;
const KIND_MASK: u8 = 0x70;
const TAG_BINARY_KEY: u8 = 0x80;
const FIXED: usize = 1 + 4 + 8;

/// What kind of value an entry holds. Strings live inline in the entry; the
/// collections keep a `Box<Object>` whose pointer is stored as the value bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A byte string (Redis string, memcache item).
    String = 0,
    /// A Redis hash.
    Hash = 1,
    /// A Redis list.
    List = 2,
    /// A Redis set.
    Set = 3,
    /// A Redis sorted set.
    ZSet = 4,
}

impl Kind {
    fn from_bits(b: u8) -> Kind {
        match b {
            1 => Kind::Hash,
            2 => Kind::List,
            3 => Kind::Set,
            4 => Kind::ZSet,
            _ => Kind::String,
        }
    }

    /// The Redis `TYPE` name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Hash => "hash",
            Kind::List => "list",
            Kind::Set => "set",
            Kind::ZSet => "zset",
        }
    }
}

/// Metadata written with an entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Absolute expiry, unix milliseconds.
    pub expire_at: Option<u64>,
    /// memcache client flags (0 for Redis writes).
    pub flags: u32,
    /// CAS id.
    pub cas: u64,
    /// LRU clock / LFU counter word.
    pub access: u32,
}

/// An owned key + value + metadata in one allocation.
pub struct Entry(NonNull<u8>);

// SAFETY: an Entry exclusively owns its allocation (no aliasing, no interior
// mutability through shared references), so moving it between threads is sound.
unsafe impl Send for Entry {}
// SAFETY: `&Entry` only permits reads of the allocation.
unsafe impl Sync for Entry {}

/// Prefetch hint for the cache line at `p` (never faults, reads nothing).
#[inline]
pub(crate) fn prefetch_addr(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch never faults and has no architectural effect; SSE is part
    // of the x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

fn varint_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

fn put_varint(out: &mut [u8], mut n: usize) -> usize {
    let mut i = 0;
    while n >= 0x80 {
        out[i] = (n as u8) | 0x80;
        n >>= 7;
        i += 1;
    }
    out[i] = n as u8;
    i + 1
}

/// Parsed view of the variable part of the header.
#[derive(Clone, Copy)]
struct Shape {
    tag: u8,
    key_off: usize,
    key_len: usize,
    val_len: usize,
    opt_off: usize,
}

impl Shape {
    fn total(&self) -> usize {
        self.key_off + self.key_len + self.val_len
    }
}

impl Entry {
    /// Number of bytes the allocation for this key/value/meta needs.
    pub fn size_for(key_len: usize, val_len: usize, meta: &Meta) -> usize {
        FIXED
            + varint_len(key_len)
            + varint_len(val_len)
            + if meta.expire_at.is_some() { 8 } else { 0 }
            + if meta.flags != 0 { 4 } else { 0 }
            + key_len
            + val_len
    }

    /// Builds a string entry by copying `key` and the concatenation of `value_parts`.
    pub fn new(key: &[u8], value_parts: &[&[u8]], meta: &Meta) -> Entry {
        Self::new_tagged(key, value_parts, meta, 0)
    }

    /// Builds a collection entry that owns `obj`.
    pub fn new_object(key: &[u8], obj: Box<Object>, meta: &Meta) -> Entry {
        let kind = obj.kind() as u8;
        let ptr = Box::into_raw(obj) as usize;
        Self::new_tagged(key, &[&ptr.to_le_bytes()], meta, kind << 4)
    }

    fn new_tagged(key: &[u8], value_parts: &[&[u8]], meta: &Meta, extra_tag: u8) -> Entry {
        let val_len: usize = value_parts.iter().map(|p| p.len()).sum();
        let total = Self::size_for(key.len(), val_len, meta);
        // Align 1: the header is read with unaligned little-endian loads.
        let layout = Layout::from_size_align(total, 1).expect("entry size overflows isize");
        // SAFETY: total > 0 (FIXED alone is 13 bytes).
        let ptr = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(ptr) else {
            handle_alloc_error(layout)
        };
        // SAFETY: `ptr` is a fresh allocation of `total` bytes, we initialise all of it.
        let buf = unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr(), total) };
        let mut tag = 0u8;
        if meta.expire_at.is_some() {
            tag |= TAG_EXPIRE;
        }
        if meta.flags != 0 {
            tag |= TAG_FLAGS;
        }
        buf[0] = tag | extra_tag;
        buf[1..5].copy_from_slice(&meta.access.to_le_bytes());
        buf[5..13].copy_from_slice(&meta.cas.to_le_bytes());
        let mut off = FIXED;
        off += put_varint(&mut buf[off..], key.len());
        off += put_varint(&mut buf[off..], val_len);
        if let Some(at) = meta.expire_at {
            buf[off..off + 8].copy_from_slice(&at.to_le_bytes());
            off += 8;
        }
        if meta.flags != 0 {
            buf[off..off + 4].copy_from_slice(&meta.flags.to_le_bytes());
            off += 4;
        }
        buf[off..off + key.len()].copy_from_slice(key);
        off += key.len();
        for part in value_parts {
            buf[off..off + part.len()].copy_from_slice(part);
            off += part.len();
        }
        debug_assert_eq!(off, total);
        Entry(ptr)
    }

    fn header(&self) -> &[u8] {
        // SAFETY: every allocation is at least FIXED + 2 bytes long (two varints).
        unsafe { std::slice::from_raw_parts(self.0.as_ptr(), FIXED + 2) }
    }

    fn shape(&self) -> Shape {
        let p = self.0.as_ptr();
        // SAFETY: reads stay within the header, whose varints were written by `new`;
        // each varint is at most 10 bytes and terminates (high bit clear).
        unsafe {
            let tag = *p;
            let mut off = FIXED;
            let mut read = || {
                let mut n = 0usize;
                let mut shift = 0;
                loop {
                    let b = *p.add(off);
                    off += 1;
                    n |= ((b & 0x7f) as usize) << shift;
                    if b & 0x80 == 0 {
                        break n;
                    }
                    shift += 7;
                }
            };
            let key_len = read();
            let val_len = read();
            let opt_off = off;
            let key_off = off
                + if tag & TAG_EXPIRE != 0 { 8 } else { 0 }
                + if tag & TAG_FLAGS != 0 { 4 } else { 0 };
            Shape {
                tag,
                key_off,
                key_len,
                val_len,
                opt_off,
            }
        }
    }

    fn bytes(&self) -> &[u8] {
        let total = self.shape().total();
        // SAFETY: the allocation is exactly `total` bytes (invariant of `new`).
        unsafe { std::slice::from_raw_parts(self.0.as_ptr(), total) }
    }

    /// The key.
    #[inline]
    pub fn key(&self) -> &[u8] {
        let s = self.shape();
        // SAFETY: key lies within the allocation (see layout).
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().add(s.key_off), s.key_len) }
    }

    /// The value bytes of a string entry (empty for collections: check [`kind`](Self::kind)).
    #[inline]
    pub fn value(&self) -> &[u8] {
        if (self.header()[0] >> 4) & 7 != 0 {
            return &[];
        }
        self.raw_value()
    }

    #[inline]
    fn raw_value(&self) -> &[u8] {
        let s = self.shape();
        // SAFETY: value lies within the allocation (see layout).
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().add(s.key_off + s.key_len), s.val_len) }
    }

    /// Key and value together (one header parse).
    #[inline]
    pub fn key_value(&self) -> (&[u8], &[u8]) {
        let b = self.bytes();
        let s = self.shape();
        (
            &b[s.key_off..s.key_off + s.key_len],
            &b[s.key_off + s.key_len..],
        )
    }

    /// Asks the CPU to bring this entry's first cache line in (a hint only).
    #[inline]
    pub fn prefetch(&self) {
        prefetch_addr(self.0.as_ptr());
    }

    /// The value kind.
    #[inline]
    pub fn kind(&self) -> Kind {
        Kind::from_bits((self.header()[0] >> 4) & 7)
    }

    /// Whether this is a string entry.
    #[inline]
    pub fn is_string(&self) -> bool {
        (self.header()[0] >> 4) & 7 == 0
    }

    fn object_ptr(&self) -> Option<*mut Object> {
        if self.is_string() {
            return None;
        }
        let v = self.raw_value();
        let addr = usize::from_le_bytes(v.try_into().expect("object entries hold a pointer"));
        Some(addr as *mut Object)
    }

    /// The collection, for non-string entries.
    pub fn object(&self) -> Option<&Object> {
        // SAFETY: the pointer came from Box::into_raw in `new_object` and is owned
        // by this entry until it is dropped; `&self` makes the borrow shared.
        self.object_ptr().map(|p| unsafe { &*p })
    }

    /// The collection, mutably.
    pub fn object_mut(&mut self) -> Option<&mut Object> {
        // SAFETY: as in `object`, and `&mut self` makes the borrow exclusive.
        self.object_ptr().map(|p| unsafe { &mut *p })
    }

    /// Bytes this entry costs beyond its own allocation (the collection).
    pub fn object_mem(&self) -> usize {
        self.object()
            .map_or(0, |o| o.mem_usage() + std::mem::size_of::<Object>() + 16)
    }

    /// Absolute expiry in unix ms, if any.
    pub fn expire_at(&self) -> Option<u64> {
        let s = self.shape();
        if s.tag & TAG_EXPIRE == 0 {
            return None;
        }
        let b = self.bytes();
        Some(u64::from_le_bytes(
            b[s.opt_off..s.opt_off + 8].try_into().expect("8 bytes"),
        ))
    }

    /// memcache client flags.
    pub fn flags(&self) -> u32 {
        let s = self.shape();
        if s.tag & TAG_FLAGS == 0 {
            return 0;
        }
        let off = s.opt_off + if s.tag & TAG_EXPIRE != 0 { 8 } else { 0 };
        let b = self.bytes();
        u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
    }

    /// CAS id.
    pub fn cas(&self) -> u64 {
        u64::from_le_bytes(self.header()[5..13].try_into().expect("8 bytes"))
    }

    /// LRU/LFU access word.
    pub fn access(&self) -> u32 {
        u32::from_le_bytes(self.header()[1..5].try_into().expect("4 bytes"))
    }

    /// Updates the access word in place.
    pub fn set_access(&mut self, access: u32) {
        // SAFETY: bytes 1..5 are inside the allocation; `&mut self` is exclusive.
        let hdr = unsafe { std::slice::from_raw_parts_mut(self.0.as_ptr(), FIXED) };
        hdr[1..5].copy_from_slice(&access.to_le_bytes());
    }

    /// Whether the value was built by in-place edits (APPEND/SETRANGE): Redis
    /// reports such strings as `raw` whatever their length.
    pub fn is_raw(&self) -> bool {
        self.header()[0] & TAG_RAW != 0
    }

    /// Sets the "raw" hint.
    pub fn set_raw(&mut self) {
        // SAFETY: byte 0 is inside the allocation; `&mut self` is exclusive.
        unsafe { *self.0.as_ptr() |= TAG_RAW }
    }

    /// Whether a memcache read has fetched this item since it was written.
    pub fn fetched(&self) -> bool {
        self.header()[0] & TAG_FETCHED != 0
    }

    /// Marks the item fetched.
    pub fn set_fetched(&mut self) {
        // SAFETY: byte 0 is inside the allocation; `&mut self` is exclusive.
        unsafe { *self.0.as_ptr() |= TAG_FETCHED }
    }

    /// Whether the key was stored through a base64 (`b`) meta command: memcached
    /// then echoes it base64-encoded with a `b` flag.
    pub fn binary_key(&self) -> bool {
        self.header()[0] & TAG_BINARY_KEY != 0
    }

    /// Marks the key as binary (see [`binary_key`](Self::binary_key)).
    pub fn set_binary_key(&mut self) {
        // SAFETY: byte 0 is inside the allocation; `&mut self` is exclusive.
        unsafe { *self.0.as_ptr() |= TAG_BINARY_KEY }
    }

    /// Updates the CAS id in place.
    pub fn set_cas(&mut self, cas: u64) {
        // SAFETY: bytes 5..13 are inside the allocation; `&mut self` is exclusive.
        let hdr = unsafe { std::slice::from_raw_parts_mut(self.0.as_ptr(), FIXED) };
        hdr[5..13].copy_from_slice(&cas.to_le_bytes());
    }

    /// All metadata.
    pub fn meta(&self) -> Meta {
        Meta {
            expire_at: self.expire_at(),
            flags: self.flags(),
            cas: self.cas(),
            access: self.access(),
        }
    }

    /// Whether the entry is expired at `now_ms`.
    #[inline]
    pub fn is_expired(&self, now_ms: u64) -> bool {
        match self.expire_at() {
            Some(at) => at <= now_ms,
            None => false,
        }
    }

    /// Size of the allocation in bytes.
    pub fn alloc_len(&self) -> usize {
        self.shape().total()
    }

    /// Rewrites the metadata (expiry, flags, CAS, access), keeping key, value,
    /// kind and collection; the entry is reallocated when its size changes.
    pub fn replace_meta(&mut self, meta: &Meta) {
        let keep = self.header()[0] & (0xf0 | TAG_RAW);
        let (k, v) = (self.key(), self.raw_value());
        let mut new = Entry::new_tagged(k, &[v], meta, keep);
        std::mem::swap(&mut self.0, &mut new.0);
        // `new` now holds the old allocation, whose collection pointer was moved.
        new.disown_object();
    }

    /// The same value (collection moved, string copied) under another key.
    pub fn rekey(mut self, key: &[u8]) -> Entry {
        let keep = self.header()[0] & (0xf0 | TAG_RAW);
        let meta = self.meta();
        let new = Entry::new_tagged(key, &[self.raw_value()], &meta, keep);
        self.disown_object();
        new
    }

    /// Forgets the collection pointer so Drop frees only the allocation.
    fn disown_object(&mut self) {
        // SAFETY: byte 0 is inside the allocation; `&mut self` is exclusive.
        unsafe { *self.0.as_ptr() &= !KIND_MASK }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(p) = self.object_ptr() {
            // SAFETY: the pointer came from Box::into_raw and this entry owns it
            // (moves clear the kind bits of the old owner via `disown_object`).
            drop(unsafe { Box::from_raw(p) });
        }
        let total = self.shape().total();
        // SAFETY: allocated in `new` with exactly this layout, dropped once.
        unsafe { dealloc(self.0.as_ptr(), Layout::from_size_align_unchecked(total, 1)) }
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("key", &String::from_utf8_lossy(self.key()))
            .field("kind", &self.kind())
            .field("value_len", &self.value().len())
            .field("meta", &self.meta())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_all_shapes() {
        for key_len in [0usize, 1, 14, 127, 128, 300] {
            for val_len in [0usize, 1, 32, 127, 128, 20_000] {
                for expire in [None, Some(1_700_000_000_123u64)] {
                    for flags in [0u32, 42, u32::MAX] {
                        let key: Vec<u8> = (0..key_len).map(|i| i as u8).collect();
                        let val: Vec<u8> = (0..val_len).map(|i| (i * 7) as u8).collect();
                        let meta = Meta {
                            expire_at: expire,
                            flags,
                            cas: 99,
                            access: 7,
                        };
                        let (a, b) = val.split_at(val_len / 3);
                        let mut e = Entry::new(&key, &[a, b], &meta);
                        assert_eq!(e.key(), &key[..]);
                        assert_eq!(e.value(), &val[..]);
                        assert_eq!(e.meta(), meta);
                        assert_eq!(e.alloc_len(), Entry::size_for(key_len, val_len, &meta));
                        e.set_access(123);
                        e.set_cas(456);
                        assert_eq!((e.access(), e.cas()), (123, 456));
                        assert_eq!(e.key_value(), (&key[..], &val[..]));
                    }
                }
            }
        }
    }

    #[test]
    fn objects_are_owned_moved_and_freed_once() {
        let h = crate::types::Hash::default();
        let meta = Meta::default();
        let mut e = Entry::new_object(b"k", Box::new(Object::Hash(h)), &meta);
        assert_eq!(e.kind(), Kind::Hash);
        assert!(e.value().is_empty());
        e.replace_meta(&Meta {
            expire_at: Some(5),
            ..meta
        });
        assert_eq!(e.expire_at(), Some(5));
        let e = e.rekey(b"other");
        assert_eq!(e.key(), b"other");
        assert_eq!(e.object().map(|o| o.kind()), Some(Kind::Hash));
    }

    #[test]
    fn compact_header_for_small_items() {
        // 14-byte key, 32-byte value, no TTL, no flags: 13 + 2 + 46 bytes.
        let e = Entry::new(b"key:0000000001", &[&[b'x'; 32]], &Meta::default());
        assert_eq!(e.alloc_len(), 61);
    }
}
