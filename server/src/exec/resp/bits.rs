//! Bit commands on strings: SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP, BITFIELD
//! and BITFIELD_RO, with Redis 7.0 semantics (argument checks in the same order,
//! the same error texts, bit 0 being the most significant bit of byte 0).

use std::sync::atomic::Ordering;

use super::strings::string_entry;
use super::{eq, parse_i64, Ctx, Req, Spec};
use super::{DENYOOM, FAST, K1, READONLY, WRITE};

/// This module's command table rows.
pub(super) fn table() -> Vec<Spec> {
    super::rows! {
    "setbit", 4, WRITE | DENYOOM, K1, setbit;
    "getbit", 3, READONLY | FAST, K1, getbit;
    "bitcount", -2, READONLY, K1, bitcount;
    "bitpos", -3, READONLY, K1, bitpos;
    "bitop", -4, WRITE | DENYOOM, (2, -1, 1), bitop;
    "bitfield", -2, WRITE | DENYOOM, K1, bitfield;
    "bitfield_ro", -2, READONLY | FAST, K1, bitfield_ro;
    }
}

const OFFSET_ERR: &str = "ERR bit offset is not an integer or out of range";
const BIT_ERR: &str = "ERR bit is not an integer or out of range";
const TYPE_ERR: &str = "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.";

// ---------------------------------------------------------------------------------------
// Bit helpers (pure, unit-tested below).

/// Number of set bits, eight bytes at a time.
pub fn popcount(buf: &[u8]) -> u64 {
    let mut chunks = buf.chunks_exact(8);
    let mut n: u64 = 0;
    for c in &mut chunks {
        let w = u64::from_ne_bytes(c.try_into().expect("chunk of 8"));
        n += u64::from(w.count_ones());
    }
    n + chunks
        .remainder()
        .iter()
        .map(|b| u64::from(b.count_ones()))
        .sum::<u64>()
}

/// Index of the first byte of `buf` that is not `skip`, scanning eight bytes at a time.
fn first_byte_not(buf: &[u8], skip: u8) -> Option<usize> {
    let word = u64::from_ne_bytes([skip; 8]);
    let mut i = 0;
    let mut chunks = buf.chunks_exact(8);
    for c in &mut chunks {
        if u64::from_ne_bytes(c.try_into().expect("chunk of 8")) != word {
            break;
        }
        i += 8;
    }
    buf[i..].iter().position(|&b| b != skip).map(|p| p + i)
}

/// First bit equal to `bit` in the inclusive bit range `[from, to]` of `buf`
/// (which must cover the range), as an absolute bit position.
pub fn find_bit(buf: &[u8], from: u64, to: u64, bit: bool) -> Option<u64> {
    if from > to {
        return None;
    }
    let (fb, tb) = ((from >> 3) as usize, (to >> 3) as usize);
    let flip = if bit { 0u8 } else { 0xFF };
    // Bits of the first byte before `from`, and of the last byte after `to`, masked off.
    let first_mask = 0xFFu8 >> (from & 7);
    let last_mask = 0xFFu8 << (7 - (to & 7));
    let at = |b: usize| -> u8 {
        let mut v = buf[b] ^ flip;
        if b == fb {
            v &= first_mask;
        }
        if b == tb {
            v &= last_mask;
        }
        v
    };
    let hit = |b: usize, v: u8| Some(b as u64 * 8 + u64::from(v.leading_zeros()));
    let v = at(fb);
    if v != 0 {
        return hit(fb, v);
    }
    if tb == fb {
        return None;
    }
    if tb > fb + 1 {
        if let Some(p) = first_byte_not(&buf[fb + 1..tb], flip) {
            let b = fb + 1 + p;
            return hit(b, buf[b] ^ flip);
        }
    }
    let v = at(tb);
    (v != 0).then(|| tb as u64 * 8 + u64::from(v.leading_zeros()))
}

/// Reads `bits` (1..=64) bits at bit `offset`, most significant first; bits past
/// the end of `buf` read as zero.
pub fn get_unsigned(buf: &[u8], offset: u64, bits: u32) -> u64 {
    let mut v: u64 = 0;
    for i in 0..u64::from(bits) {
        let pos = offset + i;
        let byte = (pos >> 3) as usize;
        let b = buf.get(byte).map_or(0, |&x| (x >> (7 - (pos & 7))) & 1);
        v = (v << 1) | u64::from(b);
    }
    v
}

/// Signed read: the top bit of the field is the sign.
pub fn get_signed(buf: &[u8], offset: u64, bits: u32) -> i64 {
    let mut v = get_unsigned(buf, offset, bits);
    if bits < 64 && v & (1u64 << (bits - 1)) != 0 {
        v |= u64::MAX << bits;
    }
    v as i64
}

/// Writes the low `bits` bits of `value` at bit `offset` (`buf` must cover them).
pub fn set_unsigned(buf: &mut [u8], offset: u64, bits: u32, value: u64) {
    for i in 0..u64::from(bits) {
        let bitval = (value >> (u64::from(bits) - 1 - i)) & 1;
        let pos = offset + i;
        let byte = (pos >> 3) as usize;
        let shift = 7 - (pos & 7);
        buf[byte] = (buf[byte] & !(1 << shift)) | ((bitval as u8) << shift);
    }
}

/// BITFIELD OVERFLOW behaviour.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Overflow {
    Wrap,
    Sat,
    Fail,
}

/// Redis' `checkUnsignedBitfieldOverflow`: whether `value + incr` leaves the range
/// of a `bits`-bit unsigned field, and the wrapped / saturated result.
pub fn unsigned_overflow(value: u64, incr: i64, bits: u32, ow: Overflow) -> (bool, u64) {
    let max = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let maxincr = max.wrapping_sub(value) as i64;
    let minincr = value.wrapping_neg() as i64;
    let wrap = || value.wrapping_add(incr as u64) & !(u64::MAX.checked_shl(bits).unwrap_or(0));
    if value > max || (incr > 0 && incr > maxincr) {
        let lim = match ow {
            Overflow::Wrap => wrap(),
            _ => max,
        };
        (true, lim)
    } else if incr < 0 && incr < minincr {
        let lim = match ow {
            Overflow::Wrap => wrap(),
            _ => 0,
        };
        (true, lim)
    } else {
        (false, 0)
    }
}

/// Redis' `checkSignedBitfieldOverflow`.
pub fn signed_overflow(value: i64, incr: i64, bits: u32, ow: Overflow) -> (bool, i64) {
    let max = if bits == 64 {
        i64::MAX
    } else {
        (1i64 << (bits - 1)) - 1
    };
    let min = -max - 1;
    let maxincr = (max as u64).wrapping_sub(value as u64) as i64;
    let minincr = min.wrapping_sub(value);
    let wrap = || {
        let mut c = (value as u64).wrapping_add(incr as u64);
        if bits < 64 {
            let mask = u64::MAX << bits;
            if c & (1u64 << (bits - 1)) != 0 {
                c |= mask;
            } else {
                c &= !mask;
            }
        }
        c as i64
    };
    if value > max || (bits != 64 && incr > maxincr) || (value >= 0 && incr > 0 && incr > maxincr) {
        let lim = match ow {
            Overflow::Wrap => wrap(),
            _ => max,
        };
        (true, lim)
    } else if value < min
        || (bits != 64 && incr < minincr)
        || (value < 0 && incr < 0 && incr < minincr)
    {
        let lim = match ow {
            Overflow::Wrap => wrap(),
            _ => min,
        };
        (true, lim)
    } else {
        (false, 0)
    }
}

// ---------------------------------------------------------------------------------------
// Argument parsing.

/// `getBitOffsetFromArgument`: a non-negative bit offset below proto-max-bulk-len
/// bytes; with `bits` (BITFIELD) a `#n` offset counts in fields of that width.
fn bit_offset(ctx: &mut Ctx<'_>, arg: &[u8], bits: Option<u32>) -> Option<u64> {
    let hash = bits.is_some() && arg.len() > 1 && arg[0] == b'#';
    let n = parse_i64(if hash { &arg[1..] } else { arg });
    let n = match (n, bits) {
        (Some(n), Some(b)) if hash => Some(n.wrapping_mul(i64::from(b))),
        (n, _) => n,
    };
    let max = ctx
        .shared
        .settings
        .proto_max_bulk_len
        .load(Ordering::Relaxed);
    match n {
        Some(n) if n >= 0 && ((n >> 3) as u64) < max => Some(n as u64),
        _ => {
            ctx.err(OFFSET_ERR);
            None
        }
    }
}

/// `getBitfieldTypeFromArgument`: `i1`..`i64` or `u1`..`u63` → (signed, bits).
fn bitfield_type(ctx: &mut Ctx<'_>, arg: &[u8]) -> Option<(bool, u32)> {
    // Redis reads the type as a C string: anything after a NUL is ignored.
    let arg = arg.split(|&b| b == 0).next().unwrap_or_default();
    let parsed = match arg.first() {
        Some(b'i') => parse_i64(&arg[1..]).map(|n| (true, n)),
        Some(b'u') => parse_i64(&arg[1..]).map(|n| (false, n)),
        _ => None,
    };
    match parsed {
        Some((signed, n)) if n >= 1 && n <= if signed { 64 } else { 63 } => {
            Some((signed, n as u32))
        }
        _ => {
            ctx.err(TYPE_ERR);
            None
        }
    }
}

/// Normalises a BITCOUNT/BITPOS `start end` range (Redis' clamping) against a
/// length in units (bytes or bits). None = empty range.
fn clamp_range(mut start: i64, mut end: i64, total: i64) -> Option<(i64, i64)> {
    if start < 0 {
        start = start.saturating_add(total);
    }
    if end < 0 {
        end = end.saturating_add(total);
    }
    start = start.max(0);
    end = end.max(0);
    if end >= total {
        end = total - 1;
    }
    (start <= end).then_some((start, end))
}

/// Parses an optional BYTE|BIT unit argument; Some(is_bit), or None after a syntax error.
fn unit(ctx: &mut Ctx<'_>, arg: Option<&[u8]>) -> Option<bool> {
    match arg {
        None => Some(false),
        Some(a) if eq(a, "bit") => Some(true),
        Some(a) if eq(a, "byte") => Some(false),
        Some(_) => {
            ctx.syntax();
            None
        }
    }
}

// ---------------------------------------------------------------------------------------
// Commands.

/// SETBIT key offset 0|1
pub fn setbit(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let Some(offset) = bit_offset(ctx, req.arg(2), None) else {
        return;
    };
    let on = match parse_i64(req.arg(3)) {
        Some(v @ (0 | 1)) => v == 1,
        _ => {
            ctx.err(BIT_ERR);
            return;
        }
    };
    let key = req.arg(1);
    let now = ctx.now;
    let mut g = ctx.ks.lock(key);
    let Ok(cur) = string_entry(ctx, g.lookup(key, now)) else {
        return;
    };
    let byte = (offset >> 3) as usize;
    let (mut v, exp, flags) = cur.map_or((Vec::new(), None, 0), |e| {
        (e.value().to_vec(), e.expire_at(), e.flags())
    });
    if v.len() < byte + 1 {
        v.resize(byte + 1, 0);
    }
    let shift = 7 - (offset & 7);
    let old = (v[byte] >> shift) & 1;
    if on {
        v[byte] |= 1 << shift;
    } else {
        v[byte] &= !(1 << shift);
    }
    g.insert(key, &[&v], exp, flags, now);
    g.mark_raw(key);
    ctx.w().int(i64::from(old));
}

/// GETBIT key offset
pub fn getbit(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let Some(offset) = bit_offset(ctx, req.arg(2), None) else {
        return;
    };
    let key = req.arg(1);
    let no_touch = ctx.conn.no_touch;
    let mut g = ctx.ks.lock(key);
    let Ok(e) = string_entry(ctx, g.lookup_read(key, ctx.now, no_touch)) else {
        return;
    };
    let bit = e.map_or(0, |e| get_unsigned(e.value(), offset, 1));
    ctx.w().int(bit as i64);
}

/// BITCOUNT key [start end [BYTE|BIT]]
pub fn bitcount(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let key = req.arg(1);
    let no_touch = ctx.conn.no_touch;
    let mut g = ctx.ks.lock(key);
    // Redis 7.0 answers 0 for a missing key before looking at the other arguments.
    let Ok(e) = string_entry(ctx, g.lookup_read(key, ctx.now, no_touch)) else {
        return;
    };
    let Some(e) = e else {
        ctx.w().int(0);
        return;
    };
    let v = e.value();
    let count = match req.len() {
        2 => popcount(v),
        4 | 5 => {
            let (Some(start), Some(end)) = (parse_i64(req.arg(2)), parse_i64(req.arg(3))) else {
                ctx.not_int();
                return;
            };
            // Redis 7.0 answers an inverted negative range before reading the unit.
            if start < 0 && end < 0 && start > end {
                ctx.w().int(0);
                return;
            }
            let Some(is_bit) = unit(ctx, (req.len() == 5).then(|| req.arg(4))) else {
                return;
            };
            let total = v.len() as i64 * if is_bit { 8 } else { 1 };
            match clamp_range(start, end, total) {
                None => 0,
                Some((s, e)) if is_bit => {
                    let (sb, eb) = ((s >> 3) as usize, (e >> 3) as usize);
                    let mut n = popcount(&v[sb..=eb]);
                    // Bits of the edge bytes outside the range.
                    n -= u64::from((v[sb] & !(0xFFu8 >> (s & 7))).count_ones());
                    n -= u64::from((v[eb] & (0xFFu8 >> 1 >> (e & 7))).count_ones());
                    n
                }
                Some((s, e)) => popcount(&v[s as usize..=e as usize]),
            }
        }
        _ => {
            ctx.syntax();
            return;
        }
    };
    ctx.w().int(count as i64);
}

/// BITPOS key bit [start [end [BYTE|BIT]]]
pub fn bitpos(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let bit = match parse_i64(req.arg(2)) {
        Some(b @ (0 | 1)) => b == 1,
        Some(_) => {
            ctx.err("ERR The bit argument must be 1 or 0.");
            return;
        }
        None => {
            ctx.not_int();
            return;
        }
    };
    let key = req.arg(1);
    let no_touch = ctx.conn.no_touch;
    let mut g = ctx.ks.lock(key);
    let Ok(e) = string_entry(ctx, g.lookup_read(key, ctx.now, no_touch)) else {
        return;
    };
    // A missing key is an infinite run of zero bits.
    let Some(e) = e else {
        ctx.w().int(if bit { -1 } else { 0 });
        return;
    };
    let v = e.value();
    let (range, is_bit, end_given) = match req.len() {
        3 => (
            clamp_range(0, v.len() as i64 - 1, v.len() as i64),
            false,
            false,
        ),
        4..=6 => {
            let Some(start) = parse_i64(req.arg(3)) else {
                ctx.not_int();
                return;
            };
            let Some(is_bit) = unit(ctx, (req.len() == 6).then(|| req.arg(5))) else {
                return;
            };
            let total = v.len() as i64 * if is_bit { 8 } else { 1 };
            let end = if req.len() >= 5 {
                let Some(end) = parse_i64(req.arg(4)) else {
                    ctx.not_int();
                    return;
                };
                end
            } else {
                total - 1
            };
            (clamp_range(start, end, total), is_bit, req.len() >= 5)
        }
        _ => {
            ctx.syntax();
            return;
        }
    };
    let Some((s, e)) = range else {
        ctx.w().int(-1);
        return;
    };
    let (from, to) = if is_bit {
        (s as u64, e as u64)
    } else {
        (s as u64 * 8, e as u64 * 8 + 7)
    };
    let pos = match find_bit(v, from, to, bit) {
        Some(p) => p as i64,
        // No clear bit in the string: without an explicit end the string counts as
        // followed by zeros.
        None if !bit && !end_given => to as i64 + 1,
        None => -1,
    };
    ctx.w().int(pos);
}

/// BITOP AND|OR|XOR|NOT destkey key [key ...]
pub fn bitop(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    #[derive(PartialEq)]
    enum Op {
        And,
        Or,
        Xor,
        Not,
    }
    let name = req.arg(1);
    let op = if eq(name, "and") {
        Op::And
    } else if eq(name, "or") {
        Op::Or
    } else if eq(name, "xor") {
        Op::Xor
    } else if eq(name, "not") {
        Op::Not
    } else {
        ctx.syntax();
        return;
    };
    if op == Op::Not && req.len() != 4 {
        ctx.err("ERR BITOP NOT must be called with a single source key.");
        return;
    }
    let dest = req.arg(2);
    let now = ctx.now;
    let mut g = ctx.ks.lock_many(req.rest(2));
    let mut srcs: Vec<Option<Vec<u8>>> = Vec::with_capacity(req.len() - 3);
    for key in req.rest(3) {
        let Ok(e) = string_entry(ctx, g.shard(key).lookup(key, now)) else {
            return;
        };
        srcs.push(e.map(|e| e.value().to_vec()));
    }
    let maxlen = srcs.iter().flatten().map(Vec::len).max().unwrap_or(0);
    if maxlen == 0 {
        g.shard(dest).remove(dest, now);
        ctx.w().int(0);
        return;
    }
    let get =
        |s: &Option<Vec<u8>>, i: usize| s.as_ref().and_then(|v| v.get(i).copied()).unwrap_or(0);
    let mut res: Vec<u8> = (0..maxlen).map(|i| get(&srcs[0], i)).collect();
    match op {
        Op::Not => res.iter_mut().for_each(|b| *b = !*b),
        _ => {
            for s in &srcs[1..] {
                let s = s.as_deref().unwrap_or_default();
                let (body, tail) = res.split_at_mut(s.len().min(maxlen));
                for (r, x) in body.iter_mut().zip(s) {
                    match op {
                        Op::And => *r &= x,
                        Op::Or => *r |= x,
                        _ => *r ^= x,
                    }
                }
                // Missing bytes of a shorter source count as zero.
                if op == Op::And {
                    tail.fill(0);
                }
            }
        }
    }
    let d = g.shard(dest);
    d.insert(dest, &[&res], None, 0, now);
    d.mark_raw(dest);
    ctx.w().int(maxlen as i64);
}

/// One parsed BITFIELD operation.
struct FieldOp {
    /// None = GET; Some((is_incrby, value)).
    write: Option<(bool, i64)>,
    signed: bool,
    bits: u32,
    offset: u64,
    overflow: Overflow,
}

/// BITFIELD key [GET type offset] [SET type offset value] [INCRBY type offset incr]
/// [OVERFLOW WRAP|SAT|FAIL] ...
pub fn bitfield(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    bitfield_impl(ctx, req, false);
}

/// BITFIELD_RO key [GET type offset] ...
pub fn bitfield_ro(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    bitfield_impl(ctx, req, true);
}

fn bitfield_impl(ctx: &mut Ctx<'_>, req: &Req<'_>, ro_cmd: bool) {
    let mut ops: Vec<FieldOp> = Vec::new();
    let mut overflow = Overflow::Wrap;
    // Last bit written by any SET/INCRBY: the string grows to cover it up front.
    let mut highest: Option<u64> = None;
    let mut j = 2;
    while j < req.len() {
        let remaining = req.len() - j - 1;
        let sub = req.arg(j);
        let write = if eq(sub, "get") && remaining >= 2 {
            false
        } else if (eq(sub, "set") || eq(sub, "incrby")) && remaining >= 3 {
            true
        } else if eq(sub, "overflow") && remaining >= 1 {
            let t = req.arg(j + 1);
            overflow = if eq(t, "wrap") {
                Overflow::Wrap
            } else if eq(t, "sat") {
                Overflow::Sat
            } else if eq(t, "fail") {
                Overflow::Fail
            } else {
                ctx.err("ERR Invalid OVERFLOW type specified");
                return;
            };
            j += 2;
            continue;
        } else {
            ctx.syntax();
            return;
        };
        let Some((signed, bits)) = bitfield_type(ctx, req.arg(j + 1)) else {
            return;
        };
        let Some(offset) = bit_offset(ctx, req.arg(j + 2), Some(bits)) else {
            return;
        };
        let write = if write {
            let last = offset + u64::from(bits) - 1;
            highest = Some(highest.map_or(last, |h| h.max(last)));
            let Some(v) = parse_i64(req.arg(j + 3)) else {
                ctx.not_int();
                return;
            };
            Some((eq(sub, "incrby"), v))
        } else {
            None
        };
        ops.push(FieldOp {
            write,
            signed,
            bits,
            offset,
            overflow,
        });
        j += if write.is_some() { 4 } else { 3 };
    }

    let key = req.arg(1);
    let now = ctx.now;
    let mut g = ctx.ks.lock(key);
    let Some(highest) = highest else {
        // Only GETs: a read; a missing key reads as zeros.
        let no_touch = ctx.conn.no_touch;
        let Ok(e) = string_entry(ctx, g.lookup_read(key, now, no_touch)) else {
            return;
        };
        let v = e.map_or(&[][..], |e| e.value());
        ctx.w().array(ops.len());
        for op in &ops {
            let r = if op.signed {
                get_signed(v, op.offset, op.bits)
            } else {
                get_unsigned(v, op.offset, op.bits) as i64
            };
            ctx.w().int(r);
        }
        return;
    };
    if ro_cmd {
        ctx.err("ERR BITFIELD_RO only supports the GET subcommand");
        return;
    }
    let Ok(cur) = string_entry(ctx, g.lookup(key, now)) else {
        return;
    };
    let (mut v, exp, flags) = cur.map_or((Vec::new(), None, 0), |e| {
        (e.value().to_vec(), e.expire_at(), e.flags())
    });
    let need = (highest >> 3) as usize + 1;
    if v.len() < need {
        v.resize(need, 0);
    }
    ctx.w().array(ops.len());
    for op in &ops {
        let Some((incr, arg)) = op.write else {
            let r = if op.signed {
                get_signed(&v, op.offset, op.bits)
            } else {
                get_unsigned(&v, op.offset, op.bits) as i64
            };
            ctx.w().int(r);
            continue;
        };
        let (failed, reply, newval) = if op.signed {
            let old = get_signed(&v, op.offset, op.bits);
            let (value, delta) = if incr { (old, arg) } else { (arg, 0) };
            let (of, lim) = signed_overflow(value, delta, op.bits, op.overflow);
            let new = if of { lim } else { value.wrapping_add(delta) };
            (
                of && op.overflow == Overflow::Fail,
                if incr { new } else { old },
                new as u64,
            )
        } else {
            let old = get_unsigned(&v, op.offset, op.bits);
            let (value, delta) = if incr { (old, arg) } else { (arg as u64, 0) };
            let (of, lim) = unsigned_overflow(value, delta, op.bits, op.overflow);
            let new = if of {
                lim
            } else {
                value.wrapping_add(delta as u64)
            };
            let reply = if incr { new } else { old };
            (of && op.overflow == Overflow::Fail, reply as i64, new)
        };
        if failed {
            ctx.w().null();
        } else {
            set_unsigned(&mut v, op.offset, op.bits, newval);
            ctx.w().int(reply);
        }
    }
    g.insert(key, &[&v], exp, flags, now);
    g.mark_raw(key);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn popcount_matches_naive() {
        let buf: Vec<u8> = (0..100u32).map(|i| (i * 37 + 11) as u8).collect();
        for len in 0..buf.len() {
            let naive: u64 = buf[..len].iter().map(|b| u64::from(b.count_ones())).sum();
            assert_eq!(popcount(&buf[..len]), naive);
        }
    }

    #[test]
    fn find_bit_matches_naive() {
        let mut buf = vec![0u8; 40];
        buf[3] = 0x10;
        buf[25] = 0x01;
        let bitat = |b: &[u8], i: u64| (b[(i / 8) as usize] >> (7 - i % 8)) & 1 == 1;
        for pass in 0..2 {
            let b: Vec<u8> = if pass == 0 {
                buf.clone()
            } else {
                buf.iter().map(|x| !x).collect()
            };
            for from in (0..320).step_by(7) {
                for to in (from..320).step_by(5) {
                    for bit in [false, true] {
                        let naive = (from..=to).find(|&i| bitat(&b, i) == bit);
                        assert_eq!(find_bit(&b, from, to, bit), naive, "{from} {to} {bit}");
                    }
                }
            }
        }
    }

    #[test]
    fn fields_roundtrip() {
        let mut buf = vec![0u8; 16];
        set_unsigned(&mut buf, 5, 13, 0x1ABC);
        assert_eq!(get_unsigned(&buf, 5, 13), 0x1ABC);
        assert_eq!(get_signed(&buf, 5, 13), 0x1ABC - 0x2000);
        set_unsigned(&mut buf, 3, 64, u64::MAX - 5);
        assert_eq!(get_signed(&buf, 3, 64), -6);
        assert_eq!(get_unsigned(&buf, 120, 16), 0);
    }

    #[test]
    fn overflow_rules() {
        assert_eq!(unsigned_overflow(250, 10, 8, Overflow::Wrap), (true, 4));
        assert_eq!(unsigned_overflow(250, 10, 8, Overflow::Sat), (true, 255));
        assert_eq!(unsigned_overflow(5, -10, 8, Overflow::Sat), (true, 0));
        assert!(!unsigned_overflow(5, -5, 8, Overflow::Sat).0);
        assert_eq!(signed_overflow(120, 10, 8, Overflow::Wrap), (true, -126));
        assert_eq!(signed_overflow(-120, -10, 8, Overflow::Sat), (true, -128));
        assert_eq!(
            signed_overflow(i64::MAX, 1, 64, Overflow::Wrap),
            (true, i64::MIN)
        );
        assert_eq!(
            signed_overflow(i64::MIN, -1, 64, Overflow::Sat),
            (true, i64::MIN)
        );
        assert!(!signed_overflow(-1, 1, 64, Overflow::Sat).0);
    }
}
