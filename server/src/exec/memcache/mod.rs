//! memcache command execution: memcached 1.6 text and meta semantics over the
//! shared keyspace.
//!
//! Request path: `net::mc_conn` decodes one [`Request`] (borrowed from its read
//! buffer) → [`execute`] runs it against the keyspace and appends the exact reply
//! bytes memcached 1.6.18 would send to the connection's output buffer. Nothing
//! here sees a socket; every reply was checked against a real memcached.
//!
//! ```text
//!   execute ─┬─ text.rs: get/gets/gat/gats, set/add/replace/append/prepend/cas,
//!            │           incr/decr, delete, touch, flush_all, stats, version, verbosity
//!            └─ meta.rs: mg ms md ma mn me
//! ```
//!
//! Invariants: a write takes the owning shard's lock once and never across an
//! await (there are none); `make_room` runs before a storing write without a lock
//! held; memcache counters are kept per connection in [`McConn`] and folded into
//! the shared atomics once per read batch ([`McConn::flush_stats`]), so a pipelined
//! batch costs no cross-core cache-line traffic per command.

mod meta;
mod text;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use shoal_client::memcache::Request;

use crate::shared::{McCounters, Shared};

/// What `version` and `stats` report. memcached clients parse `VERSION <x>`
/// and some compare the numeric prefix, so it starts with the protocol level
/// Shoal implements.
pub const VERSION: &str = "1.6.18-shoal";

/// memcached's `REALTIME_MAXDELTA`: exptimes above 30 days are absolute unix times.
pub const REALTIME_MAXDELTA: i64 = 60 * 60 * 24 * 30;

/// Whether the connection goes on after a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// Flush the output and close (`quit`).
    Close,
}

/// memcached `stats` counters counted locally by one connection.
#[derive(Default, Debug, Clone)]
pub(crate) struct LocalStats {
    cmd_get: u64,
    cmd_set: u64,
    cmd_flush: u64,
    cmd_touch: u64,
    get_hits: u64,
    get_misses: u64,
    get_expired: u64,
    delete_hits: u64,
    delete_misses: u64,
    incr_hits: u64,
    incr_misses: u64,
    decr_hits: u64,
    decr_misses: u64,
    cas_misses: u64,
    cas_hits: u64,
    cas_badval: u64,
    touch_hits: u64,
    touch_misses: u64,
    total_items: u64,
}

/// Per-connection memcache state.
#[derive(Default, Debug)]
pub struct McConn {
    stats: LocalStats,
    dirty: bool,
}

impl McConn {
    /// A fresh connection state.
    pub fn new() -> McConn {
        McConn::default()
    }

    /// Folds this connection's counters into the server-wide ones. Call once per
    /// read batch (and before anything reads the shared counters).
    pub fn flush_stats(&mut self, shared: &Shared) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        let s = std::mem::take(&mut self.stats);
        let c: &McCounters = &shared.counters().mc;
        let add = |a: &AtomicU64, n: u64| {
            if n != 0 {
                a.fetch_add(n, Ordering::Relaxed);
            }
        };
        add(&c.cmd_get, s.cmd_get);
        add(&c.cmd_set, s.cmd_set);
        add(&c.cmd_flush, s.cmd_flush);
        add(&c.cmd_touch, s.cmd_touch);
        add(&c.get_hits, s.get_hits);
        add(&c.get_misses, s.get_misses);
        add(&c.get_expired, s.get_expired);
        add(&c.delete_hits, s.delete_hits);
        add(&c.delete_misses, s.delete_misses);
        add(&c.incr_hits, s.incr_hits);
        add(&c.incr_misses, s.incr_misses);
        add(&c.decr_hits, s.decr_hits);
        add(&c.decr_misses, s.decr_misses);
        add(&c.cas_misses, s.cas_misses);
        add(&c.cas_hits, s.cas_hits);
        add(&c.cas_badval, s.cas_badval);
        add(&c.touch_hits, s.touch_hits);
        add(&c.touch_misses, s.touch_misses);
        add(&c.total_items, s.total_items);
    }

    #[inline]
    fn stats(&mut self) -> &mut LocalStats {
        self.dirty = true;
        &mut self.stats
    }
}

/// The stats/metrics name of a request (one of `crate::stats::MC_COMMANDS`).
pub fn command_name(req: &Request<'_>) -> &'static str {
    use shoal_client::memcache::{MetaCmd, StoreKind};
    match req {
        Request::Get { cas: false, .. } => "get",
        Request::Get { cas: true, .. } => "gets",
        Request::Gat { cas: false, .. } => "gat",
        Request::Gat { cas: true, .. } => "gats",
        Request::Store { kind, .. } => match kind {
            StoreKind::Set => "set",
            StoreKind::Add => "add",
            StoreKind::Replace => "replace",
            StoreKind::Append => "append",
            StoreKind::Prepend => "prepend",
            StoreKind::Cas => "cas",
        },
        Request::Incr { .. } => "incr",
        Request::Decr { .. } => "decr",
        Request::Delete { .. } => "delete",
        Request::Touch { .. } => "touch",
        Request::FlushAll { .. } => "flush_all",
        Request::Stats { .. } => "stats",
        Request::Version => "version",
        Request::Verbosity { .. } => "verbosity",
        Request::Quit => "quit",
        Request::Meta(m) => match m.cmd {
            MetaCmd::Get => "mg",
            MetaCmd::Set => "ms",
            MetaCmd::Delete => "md",
            MetaCmd::Arithmetic => "ma",
            MetaCmd::Noop => "mn",
            MetaCmd::Debug => "me",
        },
    }
}

/// Executes one decoded request, appending its reply (if any) to `out`.
/// `now_ms` is the batch's clock (unix ms), like memcached's coarse `current_time`.
pub fn execute(
    shared: &Arc<Shared>,
    conn: &mut McConn,
    req: Request<'_>,
    out: &mut BytesMut,
    now_ms: u64,
) -> Flow {
    match req {
        Request::Get { keys, cas } => text::get(shared, conn, keys, None, cas, out, now_ms),
        Request::Gat { exptime, keys, cas } => {
            text::get(shared, conn, keys, Some(exptime), cas, out, now_ms)
        }
        Request::Store {
            kind,
            key,
            flags,
            exptime,
            data,
            cas_unique,
            noreply,
        } => text::store(
            shared, conn, kind, key, flags, exptime, data, cas_unique, noreply, out, now_ms,
        ),
        Request::Incr {
            key,
            delta,
            noreply,
        } => text::incr_decr(shared, conn, key, true, delta, noreply, out, now_ms),
        Request::Decr {
            key,
            delta,
            noreply,
        } => text::incr_decr(shared, conn, key, false, delta, noreply, out, now_ms),
        Request::Delete { key, noreply } => text::delete(shared, conn, key, noreply, out, now_ms),
        Request::Touch {
            key,
            exptime,
            noreply,
        } => text::touch(shared, conn, key, exptime, noreply, out, now_ms),
        Request::FlushAll { delay, noreply } => {
            text::flush_all(shared, conn, delay, noreply, out, now_ms)
        }
        Request::Stats { group } => text::stats(shared, conn, group, out, now_ms),
        Request::Version => {
            shoal_client::memcache::reply::version(out, VERSION.as_bytes());
        }
        Request::Verbosity { noreply } => {
            if !noreply {
                out.extend_from_slice(shoal_client::memcache::reply::OK);
            }
        }
        Request::Quit => return Flow::Close,
        Request::Meta(m) => meta::execute(shared, conn, m, out, now_ms),
    }
    Flow::Continue
}

/// memcached's `realtime()` in unix ms: `None` = never expires; `Some(t)` with
/// `t <= now_ms` means already expired (negative exptimes, absolute times in the past).
pub(crate) fn expire_at(exptime: i64, now_ms: u64) -> Option<u64> {
    if exptime == 0 {
        None
    } else if exptime < 0 {
        Some(now_ms)
    } else if exptime > REALTIME_MAXDELTA {
        Some((exptime as u64).saturating_mul(1000))
    } else {
        Some(now_ms.saturating_add(exptime as u64 * 1000))
    }
}

/// Seconds of TTL left, as memcached's `t` flag reports them (`-1` = no expiry).
/// Rounded up so an item set with `T100` reports `t100` right away.
pub(crate) fn ttl_secs(expire_at: Option<u64>, now_ms: u64) -> i64 {
    match expire_at {
        None => -1,
        Some(at) => (at.saturating_sub(now_ms).div_ceil(1000)) as i64,
    }
}

fn c_isspace(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// memcached's `safe_strtoull` applied to an item's data (which memcached keeps
/// followed by `\r\n`): leading whitespace, an optional sign, digits, then
/// whitespace, a NUL or the end. `-N` is rejected when it wraps to a number with
/// the top bit set, exactly like the C code.
pub(crate) fn parse_counter(v: &[u8]) -> Option<u64> {
    let mut i = 0;
    while i < v.len() && c_isspace(v[i]) {
        i += 1;
    }
    let mut neg = false;
    if i < v.len() && (v[i] == b'+' || v[i] == b'-') {
        neg = v[i] == b'-';
        i += 1;
    }
    let start = i;
    let mut n: u64 = 0;
    let mut overflow = false;
    while i < v.len() && v[i].is_ascii_digit() {
        match n
            .checked_mul(10)
            .and_then(|m| m.checked_add(u64::from(v[i] - b'0')))
        {
            Some(m) => n = m,
            None => overflow = true,
        }
        i += 1;
    }
    if i == start || overflow {
        return None;
    }
    // The data is followed by "\r\n" in memcached, so the end counts as whitespace.
    if i < v.len() && !(c_isspace(v[i]) || v[i] == 0) {
        return None;
    }
    let n = if neg { n.wrapping_neg() } else { n };
    if neg && (n as i64) < 0 {
        return None;
    }
    Some(n)
}

/// Applies an incr/decr to a counter: 64-bit wrap on incr, floor at 0 on decr.
pub(crate) fn apply_delta(cur: u64, incr: bool, delta: u64) -> u64 {
    if incr {
        cur.wrapping_add(delta)
    } else {
        cur.saturating_sub(delta)
    }
}

/// The bytes memcached stores after incr/decr: when the new number is not longer
/// than the old value it is written in place, padded with spaces to the old
/// length (`set 100`, `decr 95` → `"5  "`); otherwise the item is replaced by
/// exactly the digits.
pub(crate) fn counter_bytes(old_len: usize, n: u64) -> Vec<u8> {
    let mut b = itoa::Buffer::new();
    let digits = b.format(n).as_bytes();
    let mut v = Vec::with_capacity(old_len.max(digits.len()));
    v.extend_from_slice(digits);
    if digits.len() <= old_len {
        v.resize(old_len, b' ');
    }
    v
}

/// memcached's item size: 48-byte header + 8-byte CAS + key + NUL + data + CRLF
/// (+ 4 bytes of client flags when non-zero).
pub(crate) fn item_size(key_len: usize, val_len: usize, flags: u32) -> usize {
    56 + key_len + 1 + val_len + 2 + if flags != 0 { 4 } else { 0 }
}

/// The slab class memcached 1.6 (`-n 48 -f 1.25`, 512 KiB chunk max) would put an
/// item of `size` bytes in (`me`'s `cls=`).
pub(crate) fn slab_class(size: usize) -> u32 {
    let mut chunk = 96usize;
    let mut cls = 1u32;
    while chunk < size && chunk as f64 <= 524_288.0 / 1.25 {
        chunk = ((chunk as f64 * 1.25) as usize + 7) & !7;
        cls += 1;
    }
    if chunk < size {
        cls + 1
    } else {
        cls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exptime_rules() {
        let now = 1_700_000_000_000;
        assert_eq!(expire_at(0, now), None);
        assert_eq!(expire_at(-1, now), Some(now));
        assert_eq!(expire_at(10, now), Some(now + 10_000));
        assert_eq!(
            expire_at(REALTIME_MAXDELTA, now),
            Some(now + REALTIME_MAXDELTA as u64 * 1000)
        );
        // Absolute, in the past: expired.
        assert!(expire_at(REALTIME_MAXDELTA + 1, now).unwrap() <= now);
        // Absolute, in the future.
        assert_eq!(expire_at(1_800_000_000, now), Some(1_800_000_000_000));
        assert_eq!(ttl_secs(None, now), -1);
        assert_eq!(ttl_secs(Some(now + 100_000), now), 100);
        assert_eq!(ttl_secs(Some(now + 99_001), now), 100);
        assert_eq!(ttl_secs(Some(now - 5), now), 0);
    }

    #[test]
    fn counter_parsing_matches_memcached() {
        // Each case was checked against memcached 1.6.18 (`set` then `incr n 1`).
        assert_eq!(parse_counter(b"100"), Some(100));
        assert_eq!(parse_counter(b" 12"), Some(12));
        assert_eq!(parse_counter(b"12 "), Some(12));
        assert_eq!(parse_counter(b"+5"), Some(5));
        assert_eq!(parse_counter(b"-0"), Some(0));
        assert_eq!(parse_counter(b" +7 "), Some(7));
        assert_eq!(parse_counter(b"\t3"), Some(3));
        assert_eq!(parse_counter(b"5\0"), Some(5));
        assert_eq!(parse_counter(b"12 34"), Some(12));
        assert_eq!(parse_counter(b"7\n"), Some(7));
        assert_eq!(parse_counter(&[b'0'; 100]), Some(0));
        assert_eq!(parse_counter(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_counter(b"18446744073709551616"), None);
        assert_eq!(parse_counter(b""), None);
        assert_eq!(parse_counter(b"  "), None);
        assert_eq!(parse_counter(b"ab"), None);
        assert_eq!(parse_counter(b"-1"), None);
        assert_eq!(parse_counter(b"12a"), None);
        assert_eq!(parse_counter(b"1e5"), None);
    }

    #[test]
    fn delta_arithmetic() {
        assert_eq!(apply_delta(u64::MAX, true, 1), 0);
        assert_eq!(apply_delta(5, true, u64::MAX), 4);
        assert_eq!(apply_delta(5, false, 10), 0);
        assert_eq!(apply_delta(100, false, 95), 5);
        assert_eq!(counter_bytes(3, 5), b"5  ");
        assert_eq!(counter_bytes(2, 100), b"100");
        assert_eq!(counter_bytes(20, 0), b"0                   ");
        assert_eq!(counter_bytes(0, 10), b"10");
    }

    #[test]
    fn item_sizes_and_classes() {
        // `me foo` after `ms foo 2` on memcached 1.6.18: size=64 cls=1.
        assert_eq!(item_size(3, 2, 0), 64);
        assert_eq!(slab_class(64), 1);
        assert_eq!(slab_class(96), 1);
        assert_eq!(slab_class(97), 2);
        assert_eq!(slab_class(121), 3);
        assert_eq!(slab_class(150), 3);
        assert_eq!(slab_class(153), 4);
    }
}
