//! Meta commands (`mg ms md ma mn me`) with memcached 1.6.18's flag semantics.
//!
//! Return flags are rendered in request order, as memcached does; flags that
//! change the item (`T`, `N`) take effect at their position in that order, so
//! `mg k t T30` reports the old TTL and `mg k T30 t` the new one.
//!
//! `q` differs per command, exactly as in memcached 1.6.18: `mg` hides only
//! `EN`; `ms` hides only `HD`; `md` hides only `HD`; `ma` hides a successful
//! `HD`/`VA` (not `NF`/`NS`/`EX`, nor the reply of an auto-vivify).
//!
//! Stale / win state (`md I`, `ms I`, `mg N`/`R` → `W`, `X`, `Z`) lives in a
//! small side table keyed by key and CAS id (see [`ItemStates`]): the keyspace
//! entry has no spare bits for it, and any write gives the item a new CAS id,
//! which invalidates the side entry automatically.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use bytes::{BufMut, BytesMut};
use parking_lot::Mutex;
use shoal_client::memcache::reply::MetaReply;
use shoal_client::memcache::{MetaCmd, MetaFlags, MetaRequest, StoreKind};
use shoal_keyspace::Keyspace;

use super::text::{add_delta, do_store, put, Delta, StoreOp, Stored, OUT_OF_MEMORY};
use super::{counter_bytes, expire_at, item_size, slab_class, ttl_secs, McConn};
use crate::shared::Shared;

/// memcached's `MFLAG_MAX_OPAQUE_LENGTH`.
const MAX_OPAQUE: usize = 32;
const OPAQUE_TOO_LONG: &[u8] = b"CLIENT_ERROR opaque token too long\r\n";
const NON_NUMERIC: &[u8] = b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n";

/// Runs one meta command.
pub(super) fn execute(
    shared: &Arc<Shared>,
    conn: &mut McConn,
    m: MetaRequest<'_>,
    out: &mut BytesMut,
    now: u64,
) {
    if m.cmd == MetaCmd::Noop {
        out.extend_from_slice(b"MN\r\n");
        return;
    }
    if m.cmd != MetaCmd::Debug
        && m.flags
            .iter()
            .any(|(f, t)| f == b'O' && t.len() > MAX_OPAQUE)
    {
        out.extend_from_slice(OPAQUE_TOO_LONG);
        return;
    }
    match m.cmd {
        MetaCmd::Get => mg(shared, conn, &m, out, now),
        MetaCmd::Set => ms(shared, conn, &m, out, now),
        MetaCmd::Delete => md(shared, conn, &m, out, now),
        MetaCmd::Arithmetic => ma(shared, conn, &m, out, now),
        MetaCmd::Debug => me(shared, &m, out, now),
        MetaCmd::Noop => {}
    }
}

// --- item state side table -------------------------------------------------

const STALE: u8 = 1;
const TOKEN_SENT: u8 = 2;

/// Upper bound on remembered states; past it the table is cleared (states are
/// hints for recache races, losing one only costs an extra recache).
const MAX_STATES: usize = 100_000;

/// Stale / win-token bits of items, valid while the item keeps the CAS id they
/// were recorded with. Keyed by keyspace so servers in one process (tests) do not
/// mix; a dead keyspace's entries never match (its `Weak` is dead).
/// (keyspace address, key) → (its keyspace, CAS id, bits).
type StateMap = HashMap<(usize, Vec<u8>), (Weak<Keyspace>, u64, u8)>;

struct ItemStates {
    map: Mutex<StateMap>,
    len: AtomicUsize,
}

fn states() -> &'static ItemStates {
    static S: OnceLock<ItemStates> = OnceLock::new();
    S.get_or_init(|| ItemStates {
        map: Mutex::new(HashMap::new()),
        len: AtomicUsize::new(0),
    })
}

fn state_get(ks: &Arc<Keyspace>, key: &[u8], cas: u64) -> u8 {
    let s = states();
    // Hot path: nobody ever used stale/win features.
    if s.len.load(Ordering::Relaxed) == 0 {
        return 0;
    }
    let map = s.map.lock();
    match map.get(&(Arc::as_ptr(ks) as usize, key.to_vec())) {
        Some((w, c, bits)) if *c == cas && w.strong_count() > 0 => *bits,
        _ => 0,
    }
}

fn state_set(ks: &Arc<Keyspace>, key: &[u8], cas: u64, bits: u8) {
    let s = states();
    let mut map = s.map.lock();
    let k = (Arc::as_ptr(ks) as usize, key.to_vec());
    if bits == 0 {
        map.remove(&k);
    } else {
        if map.len() >= MAX_STATES {
            map.clear();
        }
        map.insert(k, (Arc::downgrade(ks), cas, bits));
    }
    s.len.store(map.len(), Ordering::Relaxed);
}

// --- token helpers ---------------------------------------------------------

/// A numeric token the codec already validated (C `strtol`/`strtoull` syntax).
fn tok_i64(t: &[u8]) -> i64 {
    let (neg, digits) = match t.first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut n: i64 = 0;
    for &c in digits.iter().take_while(|c| c.is_ascii_digit()) {
        n = n.saturating_mul(10).saturating_add(i64::from(c - b'0'));
    }
    if neg {
        -n
    } else {
        n
    }
}

fn tok_u64(t: &[u8]) -> u64 {
    let digits = t.strip_prefix(b"+").unwrap_or(t);
    let mut n: u64 = 0;
    for &c in digits.iter().take_while(|c| c.is_ascii_digit()) {
        n = n.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
    }
    if t.first() == Some(&b'-') {
        n.wrapping_neg()
    } else {
        n
    }
}

/// Standard base64 with padding, for echoing binary keys.
pub(crate) fn base64_encode(data: &[u8], out: &mut Vec<u8>) {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for ch in data.chunks(3) {
        let b = [
            ch[0],
            ch.get(1).copied().unwrap_or(0),
            ch.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(A[(n >> 18) as usize & 63]);
        out.push(A[(n >> 12) as usize & 63]);
        out.push(if ch.len() > 1 {
            A[(n >> 6) as usize & 63]
        } else {
            b'='
        });
        out.push(if ch.len() > 2 {
            A[n as usize & 63]
        } else {
            b'='
        });
    }
}

/// memcached's `META_KEY`: ` k<key>`, or ` k<base64> b` for binary keys.
fn key_flag(r: &mut MetaReply<'_>, key: &[u8], b64: bool) {
    if b64 {
        let mut enc = Vec::with_capacity(key.len().div_ceil(3) * 4);
        base64_encode(key, &mut enc);
        r.flag(b'k', &enc);
        r.flag(b'b', b"");
    } else {
        r.flag(b'k', key);
    }
}

/// Renders the `O` and `k` flags, the only ones a miss or a failure echoes.
fn echo_flags(r: &mut MetaReply<'_>, flags: &MetaFlags<'_>, key: &[u8], b64: bool) {
    for (f, tok) in flags.iter() {
        match f {
            b'O' => {
                r.flag(b'O', tok);
            }
            b'k' => key_flag(r, key, b64),
            _ => {}
        }
    }
}

// --- mg ----------------------------------------------------------------------

struct Snap {
    fetched: bool,
    binary_key: bool,
    flags: u32,
    cas: u64,
    at: Option<u64>,
    len: usize,
    idle: u64,
}

fn mg(shared: &Arc<Shared>, conn: &mut McConn, m: &MetaRequest<'_>, out: &mut BytesMut, now: u64) {
    let ks = &shared.keyspace;
    let key: &[u8] = &m.key;
    let f = m.flags;
    let want_v = f.has(b'v');
    // `h`/`l` report the state before this request: do not bump the item then.
    let no_touch = f.has(b'u') || f.has(b'l') || f.has(b'h');
    let mut g = ks.lock(key);
    let st = conn.stats();
    st.cmd_get += 1;
    let found = g
        .lookup_read(key, now, no_touch)
        .filter(|e| e.is_string())
        .map(|e| Snap {
            fetched: e.fetched(),
            binary_key: e.binary_key(),
            flags: e.flags(),
            cas: e.cas(),
            at: e.expire_at(),
            len: e.value().len(),
            idle: ks.idle_seconds(e, now),
        });
    if found.is_some() {
        if !f.has(b'u') {
            g.mark_fetched(key);
        }
        st.get_hits += 1;
    } else {
        st.get_misses += 1;
    }
    let mut created = false;
    let snap = match found {
        Some(s) => s,
        None => match f.get(b'N') {
            Some(n) => {
                // Vivify: an empty item with the N TTL; this client wins the recache.
                let at = expire_at(tok_i64(n), now);
                let cas = put(&mut g, key, &[], at, 0, now);
                created = true;
                Snap {
                    fetched: false,
                    binary_key: m.key_was_b64,
                    flags: 0,
                    cas,
                    at: None,
                    len: 0,
                    idle: 0,
                }
            }
            None => {
                drop(g);
                if !f.has(b'q') {
                    let mut r = MetaReply::start(out, b"EN");
                    echo_flags(&mut r, &f, key, m.key_was_b64);
                    r.finish();
                }
                return;
            }
        },
    };
    let bits = if created {
        0
    } else {
        state_get(ks, key, snap.cas)
    };
    let token_sent = bits & TOKEN_SENT != 0;
    let mut won = false;
    let mut exp = snap.at;
    let mut exp_changed = false;
    let mut r = if want_v {
        MetaReply::value(out, snap.len)
    } else {
        MetaReply::start(out, b"HD")
    };
    for (flag, tok) in f.iter() {
        match flag {
            b'T' => {
                exp = expire_at(tok_i64(tok), now);
                exp_changed = true;
            }
            b'N' if created => {
                exp = expire_at(tok_i64(tok), now);
                exp_changed = true;
                won = true;
            }
            b'R' if !token_sent
                && !created
                && exp.is_some()
                && ttl_secs(exp, now) < tok_i64(tok) =>
            {
                won = true;
            }
            b's' => {
                r.flag_uint(b's', snap.len as u64);
            }
            b't' => {
                r.flag_int(b't', ttl_secs(exp, now));
            }
            b'c' => {
                r.flag_uint(b'c', snap.cas);
            }
            b'f' => {
                r.flag_uint(b'f', u64::from(snap.flags));
            }
            b'l' => {
                r.flag_uint(b'l', snap.idle);
            }
            b'h' => {
                r.flag(b'h', if snap.fetched { b"1" } else { b"0" });
            }
            b'O' => {
                r.flag(b'O', tok);
            }
            b'k' => key_flag(&mut r, key, m.key_was_b64 || snap.binary_key),
            _ => {}
        }
    }
    if token_sent {
        r.flag(b'Z', b"");
    }
    if bits & STALE != 0 {
        r.flag(b'X', b"");
        if !token_sent {
            won = true;
        }
    }
    if won {
        r.flag(b'W', b"");
    }
    if exp_changed && exp != snap.at {
        // A new TTL keeps the CAS id, like memcached's touch.
        g.update_meta(key, now, false, |mm| mm.expire_at = exp);
    }
    if won {
        state_set(ks, key, snap.cas, bits | TOKEN_SENT);
    }
    if want_v {
        // Read the value back (TTL updates rewrite the entry); an item whose new
        // TTL is already past is still returned once, as memcached does.
        let probe = exp.map_or(now, |a| a.min(now).saturating_sub(1)).min(now);
        match g.lookup(key, probe) {
            Some(e) => r.finish_with_data(e.value()),
            None => r.finish_with_data(b""),
        }
        if exp.is_some_and(|a| a <= now) {
            g.remove(key, now);
        }
    } else {
        r.finish();
    }
}

// --- ms ----------------------------------------------------------------------

fn ms(shared: &Arc<Shared>, conn: &mut McConn, m: &MetaRequest<'_>, out: &mut BytesMut, now: u64) {
    let key: &[u8] = &m.key;
    let f = m.flags;
    let data = m.data.unwrap_or(&[]);
    let mut kind = match f.get(b'M').and_then(|t| t.first()) {
        None => StoreKind::Set,
        Some(b'E') => StoreKind::Add,
        Some(b'A') => StoreKind::Append,
        Some(b'P') => StoreKind::Prepend,
        Some(b'R') => StoreKind::Replace,
        Some(b'S') => StoreKind::Set,
        Some(_) => {
            out.extend_from_slice(b"CLIENT_ERROR invalid mode for ms M token\r\n");
            return;
        }
    };
    let cas_in = f.get(b'C').map_or(0, tok_u64);
    // A CAS turns set/replace into cas; append/prepend check it themselves.
    if f.has(b'C') && matches!(kind, StoreKind::Set | StoreKind::Replace) {
        kind = StoreKind::Cas;
    }
    if shared.keyspace.make_room(now).is_err() {
        out.extend_from_slice(OUT_OF_MEMORY);
        return;
    }
    let op = StoreOp {
        kind,
        key,
        flags: f.get(b'F').map_or(0, |t| tok_u64(t) as u32),
        at: f.get(b'T').and_then(|t| expire_at(tok_i64(t), now)),
        data,
        cas_in,
        set_stale: f.has(b'I'),
    };
    let ks = &shared.keyspace;
    let r = do_store(shared, conn, &op, now, |old_cas, new_cas| {
        let keep = state_get(ks, key, old_cas) & TOKEN_SENT;
        state_set(ks, key, new_cas, STALE | keep);
    });
    if m.key_was_b64 && matches!(r, Stored::Yes(_)) {
        ks.lock(key).mark_binary_key(key);
    }
    let (code, cas): (&[u8; 2], u64) = match r {
        Stored::Yes(c) => (b"HD", c),
        Stored::No => (b"NS", 0),
        Stored::Exists => (b"EX", 0),
        Stored::NotFound => (b"NF", 0),
    };
    if code == b"HD" && f.has(b'q') {
        return;
    }
    let mut rep = MetaReply::start(out, code);
    for (flag, tok) in f.iter() {
        match flag {
            b'c' => {
                rep.flag_uint(b'c', cas);
            }
            b'O' => {
                rep.flag(b'O', tok);
            }
            b'k' => key_flag(&mut rep, key, m.key_was_b64),
            _ => {}
        }
    }
    rep.finish();
}

// --- md ----------------------------------------------------------------------

fn md(shared: &Arc<Shared>, conn: &mut McConn, m: &MetaRequest<'_>, out: &mut BytesMut, now: u64) {
    let ks = &shared.keyspace;
    let key: &[u8] = &m.key;
    let f = m.flags;
    let mut g = ks.lock(key);
    let st = conn.stats();
    let code: &[u8; 2] = match g.lookup(key, now).map(|e| (e.cas(), e.expire_at())) {
        Some((cas, _)) if f.has(b'C') && f.get(b'C').map(tok_u64) != Some(cas) => {
            st.delete_misses += 1;
            b"EX"
        }
        Some((_, old_at)) if f.has(b'I') => {
            // Invalidate: keep the item, mark it stale, bump its CAS; T applies only here.
            let at = f.get(b'T').map_or(old_at, |t| expire_at(tok_i64(t), now));
            g.update_meta(key, now, true, |mm| mm.expire_at = at);
            if let Some(new_cas) = g.lookup(key, now).map(|e| e.cas()) {
                // The win token is cleared so the next reader can win the recache.
                state_set(ks, key, new_cas, STALE);
            }
            b"HD"
        }
        Some(_) => {
            g.remove(key, now);
            st.delete_hits += 1;
            b"HD"
        }
        None => {
            st.delete_misses += 1;
            b"NF"
        }
    };
    drop(g);
    if code == b"HD" && f.has(b'q') {
        return;
    }
    let mut r = MetaReply::start(out, code);
    echo_flags(&mut r, &f, key, m.key_was_b64);
    r.finish();
}

// --- ma ----------------------------------------------------------------------

fn ma(shared: &Arc<Shared>, conn: &mut McConn, m: &MetaRequest<'_>, out: &mut BytesMut, now: u64) {
    let ks = &shared.keyspace;
    let key: &[u8] = &m.key;
    let f = m.flags;
    let incr = match f.get(b'M').and_then(|t| t.first()) {
        None | Some(b'I' | b'+') => true,
        Some(b'D' | b'-') => false,
        Some(_) => {
            out.extend_from_slice(b"CLIENT_ERROR invalid mode for ma M token\r\n");
            return;
        }
    };
    let delta = f.get(b'D').map_or(1, tok_u64);
    let cas_in = f.get(b'C').map_or(0, tok_u64);
    let mut g = ks.lock(key);
    let mut created = false;
    let mut skip = false;
    let item: Result<(u64, u64, Option<u64>), &[u8; 2]> =
        match add_delta(&mut g, key, incr, delta, cas_in, now) {
            Delta::Ok { value, cas } => {
                let st = conn.stats();
                if incr {
                    st.incr_hits += 1;
                } else {
                    st.decr_hits += 1;
                }
                skip = f.has(b'q');
                let at = g.lookup(key, now).and_then(|e| e.expire_at());
                Ok((value, cas, at))
            }
            Delta::NonNumeric => {
                drop(g);
                out.extend_from_slice(NON_NUMERIC);
                return;
            }
            Delta::CasMismatch => Err(b"EX"),
            Delta::NotFound => match f.get(b'N') {
                Some(n) => {
                    let initial = f.get(b'J').map_or(0, tok_u64);
                    let digits = counter_bytes(0, initial);
                    let at = expire_at(tok_i64(n), now);
                    let cas = put(&mut g, key, &[&digits], at, 0, now);
                    created = true;
                    conn.stats().total_items += 1;
                    // memcached creates it without a TTL; `N` applies it in flag order.
                    Ok((initial, cas, None))
                }
                None => {
                    let st = conn.stats();
                    if incr {
                        st.incr_misses += 1;
                    } else {
                        st.decr_misses += 1;
                    }
                    Err(b"NF")
                }
            },
        };
    let (value, cas, at) = match item {
        Ok(i) => i,
        Err(code) => {
            drop(g);
            let mut r = MetaReply::start(out, code);
            echo_flags(&mut r, &f, key, m.key_was_b64);
            r.finish();
            return;
        }
    };
    let mut exp = at;
    let stored_at = if created {
        f.get(b'N').and_then(|n| expire_at(tok_i64(n), now))
    } else {
        at
    };
    let mut b = itoa::Buffer::new();
    let digits = b.format(value).as_bytes();
    let mut scratch = BytesMut::new();
    let dst = if skip { &mut scratch } else { &mut *out };
    let mut r = if f.has(b'v') {
        MetaReply::value(dst, digits.len())
    } else {
        MetaReply::start(dst, b"HD")
    };
    for (flag, tok) in f.iter() {
        match flag {
            b'c' => {
                r.flag_uint(b'c', cas);
            }
            b't' => {
                r.flag_int(b't', ttl_secs(exp, now));
            }
            b'T' => exp = expire_at(tok_i64(tok), now),
            b'N' if created => exp = expire_at(tok_i64(tok), now),
            b'O' => {
                r.flag(b'O', tok);
            }
            b'k' => key_flag(&mut r, key, m.key_was_b64),
            _ => {}
        }
    }
    if f.has(b'v') {
        r.finish_with_data(digits);
    } else {
        r.finish();
    }
    if exp != stored_at {
        g.update_meta(key, now, false, |mm| mm.expire_at = exp);
        if exp.is_some_and(|a| a <= now) {
            g.remove(key, now);
        }
    }
}

// --- me ----------------------------------------------------------------------

fn me(shared: &Arc<Shared>, m: &MetaRequest<'_>, out: &mut BytesMut, now: u64) {
    let ks = &shared.keyspace;
    let key: &[u8] = &m.key;
    let mut g = ks.lock(key);
    let Some(e) = g.lookup(key, now) else {
        out.extend_from_slice(b"EN\r\n");
        return;
    };
    let mut b = itoa::Buffer::new();
    let size = item_size(key.len(), e.value().len(), e.flags());
    out.put_slice(b"ME ");
    // memcached prints the raw key here, even for a base64 request.
    out.put_slice(key);
    out.put_slice(b" exp=");
    // memcached prints `current_time - exptime`: minus the TTL left.
    let exp = match e.expire_at() {
        None => -1,
        at => -ttl_secs(at, now),
    };
    out.put_slice(b.format(exp).as_bytes());
    out.put_slice(b" la=");
    out.put_slice(b.format(ks.idle_seconds(e, now)).as_bytes());
    out.put_slice(b" cas=");
    out.put_slice(b.format(e.cas()).as_bytes());
    out.put_slice(b" fetch=no cls=");
    out.put_slice(b.format(slab_class(size)).as_bytes());
    out.put_slice(b" size=");
    out.put_slice(b.format(size).as_bytes());
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert_eq!(tok_i64(b"30"), 30);
        assert_eq!(tok_i64(b"-1"), -1);
        assert_eq!(tok_i64(b"+7"), 7);
        assert_eq!(tok_u64(b"18446744073709551615"), u64::MAX);
        assert_eq!(tok_u64(b"4294967296") as u32, 0);
    }

    #[test]
    fn base64_echo() {
        let mut v = Vec::new();
        base64_encode(b"foo", &mut v);
        assert_eq!(v, b"Zm9v");
        v.clear();
        base64_encode(b"\x00\xff", &mut v);
        assert_eq!(v, b"AP8=");
    }

    #[test]
    fn meta_reply_rendering() {
        let mut out = BytesMut::new();
        let mut r = MetaReply::start(&mut out, b"HD");
        key_flag(&mut r, b"foo", true);
        r.flag(b'O', b"9");
        r.finish();
        assert_eq!(&out[..], b"HD kZm9v b O9\r\n");
        let mut out = BytesMut::new();
        let mut r = MetaReply::start(&mut out, b"EN");
        let flags = MetaFlags::new(b"O5 k v");
        echo_flags(&mut r, &flags, b"missing", false);
        r.finish();
        assert_eq!(&out[..], b"EN O5 kmissing\r\n");
    }
}
