//! Software emulation of the x87 80-bit `long double` arithmetic Redis uses
//! for INCRBYFLOAT: `string2ld` (glibc `strtold`), one addition rounded to a
//! 64-bit significand, and `ld2string(..., LD_STR_HUMAN)` (`%.17Lf` with the
//! trailing zeros and dot stripped).
//!
//! A finite value is `mant * 2^exp` with a 64-bit `mant`. The exponent range
//! is the x87 one: the largest finite value is below 2^16384 and the smallest
//! denormal is 2^-16445, so every value is a multiple of 2^-16445.

use std::cmp::Ordering;

/// Exponent of the least significant bit of the smallest denormal.
const MIN_LSB_EXP: i64 = -16445;
/// Largest exponent the top set bit of a finite value may have.
const MAX_TOP_EXP: i64 = 16383;
/// `string2ld` refuses texts of `MAX_LONG_DOUBLE_CHARS` (5 KiB) or more.
const MAX_TEXT_LEN: usize = 5 * 1024;
/// 10^17: `%.17Lf` keeps 17 fractional digits.
const TEN_POW_17: u128 = 100_000_000_000_000_000;

/// One x87 extended-precision value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LongDouble {
    neg: bool,
    kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Zero,
    Inf,
    /// `mant * 2^exp`, `mant != 0`.
    Finite {
        mant: u64,
        exp: i32,
    },
}

/// Redis' `string2ld`: `Some(value)` when Redis would accept the text.
///
/// Infinities (`inf`, `infinity`) are accepted like `strtold` does; NaN,
/// overflow to infinity and underflow to zero are refused.
pub fn parse(text: &[u8]) -> Option<LongDouble> {
    if text.is_empty() || text.len() >= MAX_TEXT_LEN {
        return None;
    }
    // `strtold` must consume the whole text, so an embedded NUL (where it
    // stops) is refused like any other trailing garbage.
    let (neg, body) = match text[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let kind = if body.eq_ignore_ascii_case(b"inf") || body.eq_ignore_ascii_case(b"infinity") {
        Kind::Inf
    } else if body.len() > 2 && body[0] == b'0' && (body[1] | 0x20) == b'x' {
        parse_hex(&body[2..])?
    } else {
        parse_decimal(body)?
    };
    Some(LongDouble { neg, kind })
}

/// `a + b` rounded to the 64-bit significand (round half to even); `None`
/// when the result is NaN or infinite.
pub fn add(a: LongDouble, b: LongDouble) -> Option<LongDouble> {
    let (am, ae, bm, be) = match (a.kind, b.kind) {
        (Kind::Inf, _) | (_, Kind::Inf) => return None,
        (Kind::Zero, Kind::Zero) => {
            return Some(LongDouble {
                neg: a.neg && b.neg,
                kind: Kind::Zero,
            })
        }
        (Kind::Zero, _) => return Some(b),
        (_, Kind::Zero) => return Some(a),
        (Kind::Finite { mant: am, exp: ae }, Kind::Finite { mant: bm, exp: be }) => {
            (am, i64::from(ae), bm, i64::from(be))
        }
    };
    let a_top = ae + 63 - i64::from(am.leading_zeros());
    let b_top = be + 63 - i64::from(bm.leading_zeros());
    // An operand below a quarter of the other's last place cannot move the
    // rounded sum, even when a subtraction halves that place.
    if b_top < a_top - 66 {
        return Some(a);
    }
    if a_top < b_top - 66 {
        return Some(b);
    }
    let base = ae.min(be);
    let mut x = Big::from_u64(am);
    x.shl(shift_amount(ae - base));
    let mut y = Big::from_u64(bm);
    y.shl(shift_amount(be - base));
    let (neg, sum) = if a.neg == b.neg {
        x.add(&y);
        (a.neg, x)
    } else {
        match x.cmp(&y) {
            Ordering::Equal => {
                return Some(LongDouble {
                    neg: false,
                    kind: Kind::Zero,
                })
            }
            Ordering::Greater => {
                x.sub(&y);
                (a.neg, x)
            }
            Ordering::Less => {
                y.sub(&x);
                (b.neg, y)
            }
        }
    };
    match round(&sum, base, false) {
        Kind::Inf => None,
        kind => Some(LongDouble { neg, kind }),
    }
}

/// Redis' `ld2string(..., LD_STR_HUMAN)`: `%.17Lf`, then trailing zeros and
/// a trailing dot stripped, and `-0` turned into `0`.
pub fn format_human(v: LongDouble) -> String {
    let (mant, exp) = match v.kind {
        Kind::Inf => return if v.neg { "-inf" } else { "inf" }.to_string(),
        Kind::Zero => return "0".to_string(),
        Kind::Finite { mant, exp } => (mant, i64::from(exp)),
    };
    let mut out = String::new();
    if v.neg {
        out.push('-');
    }
    if exp >= 0 {
        // An integer: no fractional digits survive the stripping.
        let mut n = Big::from_u64(mant);
        n.shl(shift_amount(exp));
        out.push_str(&n.to_decimal());
        return out;
    }
    // mant * 10^17 < 2^121, so the scaled value fits in a u128.
    let scaled = u128::from(mant) * TEN_POW_17;
    let k = -exp;
    let q = if k >= 128 {
        // scaled < 2^121 <= half of 2^k: rounds to zero.
        0
    } else {
        let k = k as u32;
        let q = scaled >> k;
        let rem = scaled & ((1u128 << k) - 1);
        let half = 1u128 << (k - 1);
        if rem > half || (rem == half && q & 1 == 1) {
            q + 1
        } else {
            q
        }
    };
    let int_part = q / TEN_POW_17;
    let frac_part = q % TEN_POW_17;
    if int_part == 0 && frac_part == 0 {
        // "-0.00000000000000000" strips to "-0", which Redis turns into "0".
        return "0".to_string();
    }
    out.push_str(&int_part.to_string());
    if frac_part != 0 {
        let digits = format!("{frac_part:017}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out
}

/// Shift counts inside [`add`] and [`format_human`] are small and
/// non-negative by construction.
fn shift_amount(n: i64) -> usize {
    usize::try_from(n).unwrap_or(0)
}

/// Parses the part after `0x`: hex digits with an optional point, then an
/// optional binary exponent `p[+-]digits`; the whole text must be used.
fn parse_hex(s: &[u8]) -> Option<Kind> {
    let mut i = 0;
    let mut mant = Big::zero();
    let mut digits = 0usize;
    let mut frac_digits = 0i64;
    let mut seen_point = false;
    while i < s.len() {
        let c = s[i];
        if c == b'.' && !seen_point {
            seen_point = true;
        } else if let Some(d) = (c as char).to_digit(16) {
            mant.mul_small_add(16, d);
            digits += 1;
            if seen_point {
                frac_digits += 1;
            }
        } else {
            break;
        }
        i += 1;
    }
    if digits == 0 {
        return None;
    }
    let mut exp = 0i64;
    if i < s.len() {
        if s[i] | 0x20 != b'p' {
            return None;
        }
        exp = parse_exponent(&s[i + 1..])?;
    }
    if mant.is_zero() {
        return Some(Kind::Zero);
    }
    let exp = exp - 4 * frac_digits;
    let top = exp + mant.bit_len() as i64 - 1;
    if top > MAX_TOP_EXP + 1 {
        return None;
    }
    if top < MIN_LSB_EXP - 2 {
        return None;
    }
    finish(round(&mant, exp, false))
}

/// Parses `[+-]digits` (the part after `e` or `p`), saturating huge values;
/// the whole text must be used.
fn parse_exponent(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v = 0i64;
    for &d in digits {
        v = (v * 10 + i64::from(d - b'0')).min(1 << 40);
    }
    Some(if neg { -v } else { v })
}

/// Parses digits with an optional point and an optional decimal exponent,
/// rounding correctly to the nearest extended value.
fn parse_decimal(s: &[u8]) -> Option<Kind> {
    let mut i = 0;
    let mut digits: Vec<u8> = Vec::with_capacity(s.len());
    let mut any_digit = false;
    let mut frac_digits = 0i64;
    let mut seen_point = false;
    while i < s.len() {
        let c = s[i];
        if c == b'.' && !seen_point {
            seen_point = true;
        } else if c.is_ascii_digit() {
            any_digit = true;
            // Leading zeros carry no value.
            if c != b'0' || !digits.is_empty() {
                digits.push(c - b'0');
            }
            if seen_point {
                frac_digits += 1;
            }
        } else {
            break;
        }
        i += 1;
    }
    if !any_digit {
        return None;
    }
    let mut exp = 0i64;
    if i < s.len() {
        if s[i] | 0x20 != b'e' {
            return None;
        }
        exp = parse_exponent(&s[i + 1..])?;
    }
    if digits.is_empty() {
        return Some(Kind::Zero);
    }
    let mut exp = exp - frac_digits;
    while digits.last() == Some(&0) {
        digits.pop();
        exp += 1;
    }
    // The value lies in [10^(n-1+exp), 10^(n+exp)).
    let n = digits.len() as i64;
    if n - 1 + exp > 4933 {
        // Above 10^4933 > the largest finite value: overflow.
        return None;
    }
    if n + exp < -4952 {
        // Below 10^-4952, less than half the smallest denormal: underflow.
        return None;
    }
    let mut mant = Big::zero();
    for chunk in digits.chunks(9) {
        let mut v = 0u32;
        for &d in chunk {
            v = v * 10 + u32::from(d);
        }
        mant.mul_small_add(10u32.pow(chunk.len() as u32), v);
    }
    if exp >= 0 {
        mant.mul_pow10(exp as u64);
        return finish(round(&mant, 0, false));
    }
    // mant / 10^-exp: scale so that the quotient has 66 or 67 bits, which
    // leaves room for the round bit; the remainder is the sticky bit.
    let mut den = Big::from_u64(1);
    den.mul_pow10(exp.unsigned_abs());
    let shift = 66 + den.bit_len() as i64 - mant.bit_len() as i64;
    if shift >= 0 {
        mant.shl(shift as usize);
    } else {
        den.shl(shift.unsigned_abs() as usize);
    }
    let mut q = 0u128;
    den.shl(67);
    for bit in (0..=67).rev() {
        if mant.cmp(&den) != Ordering::Less {
            mant.sub(&den);
            q |= 1u128 << bit;
        }
        den.shr1();
    }
    let sticky = !mant.is_zero();
    finish(round(&Big::from_u128(q), -shift, sticky))
}

/// A parse result: overflow and underflow (ERANGE) are refused by Redis.
fn finish(kind: Kind) -> Option<Kind> {
    match kind {
        Kind::Finite { .. } => Some(kind),
        Kind::Zero | Kind::Inf => None,
    }
}

/// Rounds `n * 2^exp` (plus a nonzero amount below the lowest bit of `n`
/// when `sticky`) to the extended format, half to even. Gives `Zero` on
/// underflow and `Inf` on overflow.
fn round(n: &Big, exp: i64, sticky: bool) -> Kind {
    let len = n.bit_len() as i64;
    if len == 0 {
        return Kind::Zero;
    }
    let drop = (len - 64).max(MIN_LSB_EXP - exp).max(0);
    let (mut mant, mut exp) = if drop == 0 {
        (n.low_u64(), exp)
    } else {
        let d = drop as usize;
        let mut kept = n.clone();
        kept.shr(d);
        let kept = kept.low_u64();
        let half = n.bit(d - 1);
        let rest = sticky || n.any_below(d - 1);
        if half && (rest || kept & 1 == 1) {
            match kept.checked_add(1) {
                Some(k) => (k, exp + drop),
                None => (1 << 63, exp + drop + 1),
            }
        } else {
            (kept, exp + drop)
        }
    };
    if mant == 0 {
        return Kind::Zero;
    }
    // Keep the representation canonical: no trailing zero bits.
    let tz = mant.trailing_zeros();
    mant >>= tz;
    exp += i64::from(tz);
    if exp + 63 - i64::from(mant.leading_zeros()) > MAX_TOP_EXP {
        return Kind::Inf;
    }
    Kind::Finite {
        mant,
        exp: exp as i32,
    }
}

/// A small unsigned big integer, little-endian 32-bit limbs, no trailing
/// zero limbs.
#[derive(Clone, Debug)]
struct Big {
    limbs: Vec<u32>,
}

impl Big {
    fn zero() -> Self {
        Big { limbs: Vec::new() }
    }

    fn from_u64(v: u64) -> Self {
        Self::from_u128(u128::from(v))
    }

    fn from_u128(mut v: u128) -> Self {
        let mut limbs = Vec::with_capacity(4);
        while v != 0 {
            limbs.push(v as u32);
            v >>= 32;
        }
        Big { limbs }
    }

    fn is_zero(&self) -> bool {
        self.limbs.is_empty()
    }

    fn trim(&mut self) {
        while self.limbs.last() == Some(&0) {
            self.limbs.pop();
        }
    }

    fn bit_len(&self) -> usize {
        match self.limbs.last() {
            None => 0,
            Some(&top) => self.limbs.len() * 32 - top.leading_zeros() as usize,
        }
    }

    fn bit(&self, i: usize) -> bool {
        self.limbs
            .get(i / 32)
            .is_some_and(|&l| (l >> (i % 32)) & 1 == 1)
    }

    /// Whether any bit below bit `i` is set.
    fn any_below(&self, i: usize) -> bool {
        let whole = (i / 32).min(self.limbs.len());
        if self.limbs[..whole].iter().any(|&l| l != 0) {
            return true;
        }
        let part = i % 32;
        part != 0 && whole < self.limbs.len() && self.limbs[whole] & ((1u32 << part) - 1) != 0
    }

    fn low_u64(&self) -> u64 {
        let lo = u64::from(self.limbs.first().copied().unwrap_or(0));
        let hi = u64::from(self.limbs.get(1).copied().unwrap_or(0));
        lo | (hi << 32)
    }

    /// `self = self * m + a`.
    fn mul_small_add(&mut self, m: u32, a: u32) {
        let mut carry = u64::from(a);
        for l in &mut self.limbs {
            let v = u64::from(*l) * u64::from(m) + carry;
            *l = v as u32;
            carry = v >> 32;
        }
        if carry != 0 {
            self.limbs.push(carry as u32);
        }
        self.trim();
    }

    fn mul_pow10(&mut self, mut e: u64) {
        while e >= 9 {
            self.mul_small_add(1_000_000_000, 0);
            e -= 9;
        }
        if e > 0 {
            self.mul_small_add(10u32.pow(e as u32), 0);
        }
    }

    fn shl(&mut self, bits: usize) {
        if self.is_zero() || bits == 0 {
            return;
        }
        let (words, part) = (bits / 32, bits % 32);
        if part != 0 {
            let mut carry = 0u32;
            for l in &mut self.limbs {
                let v = *l;
                *l = (v << part) | carry;
                carry = v >> (32 - part);
            }
            if carry != 0 {
                self.limbs.push(carry);
            }
        }
        if words != 0 {
            self.limbs.splice(0..0, std::iter::repeat_n(0, words));
        }
    }

    fn shr(&mut self, bits: usize) {
        let (words, part) = (bits / 32, bits % 32);
        if words >= self.limbs.len() {
            self.limbs.clear();
            return;
        }
        self.limbs.drain(..words);
        if part != 0 {
            let mut carry = 0u32;
            for l in self.limbs.iter_mut().rev() {
                let v = *l;
                *l = (v >> part) | carry;
                carry = v << (32 - part);
            }
        }
        self.trim();
    }

    fn shr1(&mut self) {
        self.shr(1);
    }

    fn cmp(&self, other: &Big) -> Ordering {
        self.limbs
            .len()
            .cmp(&other.limbs.len())
            .then_with(|| self.limbs.iter().rev().cmp(other.limbs.iter().rev()))
    }

    fn add(&mut self, other: &Big) {
        if self.limbs.len() < other.limbs.len() {
            self.limbs.resize(other.limbs.len(), 0);
        }
        let mut carry = 0u64;
        for (i, l) in self.limbs.iter_mut().enumerate() {
            let v = u64::from(*l) + u64::from(other.limbs.get(i).copied().unwrap_or(0)) + carry;
            *l = v as u32;
            carry = v >> 32;
        }
        if carry != 0 {
            self.limbs.push(carry as u32);
        }
    }

    /// `self -= other`; requires `self >= other`.
    fn sub(&mut self, other: &Big) {
        let mut borrow = 0i64;
        for (i, l) in self.limbs.iter_mut().enumerate() {
            let v = i64::from(*l) - i64::from(other.limbs.get(i).copied().unwrap_or(0)) - borrow;
            if v < 0 {
                *l = (v + (1i64 << 32)) as u32;
                borrow = 1;
            } else {
                *l = v as u32;
                borrow = 0;
            }
        }
        self.trim();
    }

    /// Decimal digits, no sign, "0" for zero.
    fn to_decimal(&self) -> String {
        let mut n = self.clone();
        let mut chunks = Vec::new();
        while !n.is_zero() {
            let mut rem = 0u64;
            for l in n.limbs.iter_mut().rev() {
                let v = (rem << 32) | u64::from(*l);
                *l = (v / 1_000_000_000) as u32;
                rem = v % 1_000_000_000;
            }
            n.trim();
            chunks.push(rem as u32);
        }
        let mut out = match chunks.pop() {
            None => return "0".to_string(),
            Some(top) => top.to_string(),
        };
        for c in chunks.iter().rev() {
            out.push_str(&format!("{c:09}"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOT_FLOAT: &str = "-ERR value is not a valid float";
    const NAN_OR_INF: &str = "-ERR increment would produce NaN or Infinity";

    /// `SET k <a>` then `INCRBYFLOAT k <b>` as Redis 7.0.15 answered it.
    /// Replies longer than 320 characters are recorded as
    /// `#<length>:<FNV-1a 64 of the reply>`.
    const CASES: &[(&[u8], &[u8], &str)] = &[
        (b"10.5", b"0.1", "10.6"),
        (b"0.1", b"0.2", "0.3"),
        (b"1.1", b"2.2", "3.3"),
        (b"3.0e3", b"0", "3000"),
        (b"5.0e3", b"200", "5200"),
        (b"10000", b"2345.6", "12345.59999999999999964"),
        (b"123456789012345678", b"1", "123456789012345679"),
        (b"100", b"1e308", "99999999999999999996685879655845645660560099847415567207797047994921734868838061872100126921888539320446747225054013223152134749593960583597420814430196418767959100019603190778663109604507106667939153395788938914560543563061268364901618630217086589253444881623791300855757318142424510452728255046343928578048"),
        (b"1e308", b"1e308", "199999999999999999993371759311691291321120199694831134415594095989843469737676123744200253843777078640893494450108026446304269499187921167194841628860392837535918200039206381557326219209014213335878306791577877829121087126122536729803237260434173178506889763247582601711514636284849020905456510092687857156096"),
        (b"1", b"0x10", "17"),
        (b"-5", b"5", "0"),
        (b"1e-20", b"0", "0"),
        (b"0.000001", b"0", "0.000001"),
        (b"0", b"0.000001", "0.000001"),
        (b"-1.5", b"-2.25", "-3.75"),
        (b"-0.1", b"-0.2", "-0.3"),
        (b"-10", b"3.3", "-6.7"),
        (b"3.3", b"-10", "-6.7"),
        (b"1e4931", b"1e4931", "#4932:84fe82be72992994"),
        (b"6e4931", b"6e4931", NAN_OR_INF),
        (b"-6e4931", b"-6e4931", NAN_OR_INF),
        (b"1.18973149535723176502e+4932", b"0", "#4933:142ac37b8a61dfe2"),
        (b"1.18973149535723176502e+4932", b"1e4913", NAN_OR_INF),
        (b"1.18973149535723176502e+4932", b"1e4912", "#4933:142ac37b8a61dfe2"),
        (b"1.1897314953572317650e+4932", b"0", "#4933:142ac37b8a61dfe2"),
        (b"1.18973149535723176509e+4932", b"0", NOT_FLOAT),
        (b"1.189731495357231765085e+4932", b"0", NOT_FLOAT),
        (b"1.189731495357231765086e+4932", b"0", NOT_FLOAT),
        (b"abc", b"1", NOT_FLOAT),
        (b"1", b"abc", NOT_FLOAT),
        (b" 1", b"1", NOT_FLOAT),
        (b"1", b" 1", NOT_FLOAT),
        (b"1 ", b"1", NOT_FLOAT),
        (b"1", b"1 ", NOT_FLOAT),
        (b"", b"1", NOT_FLOAT),
        (b"1", b"", NOT_FLOAT),
        (b"nan", b"1", NOT_FLOAT),
        (b"1", b"nan", NOT_FLOAT),
        (b"-nan", b"1", NOT_FLOAT),
        (b"inf", b"1", NAN_OR_INF),
        (b"1", b"inf", NAN_OR_INF),
        (b"inf", b"-inf", NAN_OR_INF),
        (b"-inf", b"1", NAN_OR_INF),
        (b"1", b"-inf", NAN_OR_INF),
        (b"1", b"+inf", NAN_OR_INF),
        (b"1", b"Infinity", NAN_OR_INF),
        (b"1", b"INFINITY", NAN_OR_INF),
        (b"1", b"infinit", NOT_FLOAT),
        (b"1", b"infx", NOT_FLOAT),
        (b"1", b"nan(123)", NOT_FLOAT),
        (b"1", b"1e", NOT_FLOAT),
        (b"1", b"1e+", NOT_FLOAT),
        (b"1", b"1e-", NOT_FLOAT),
        (b"1", b".5", "1.5"),
        (b"1", b"5.", "6"),
        (b"1", b".", NOT_FLOAT),
        (b"1", b"-.5e1", "-4"),
        (b"1", b"+.5E+1", "6"),
        (b"1", b"0x", NOT_FLOAT),
        (b"1", b"0x1p", NOT_FLOAT),
        (b"1", b"0x.8", "1.5"),
        (b"1", b"0X1P-2", "1.25"),
        (b"1", b"0x1.8p3", "13"),
        (b"1", b"0xfffffffffffffffff", "295147905179352825856"),
        (b"1", b"0x1.fffffffffffffffffp0", "3"),
        (b"0", b"0x1.fffffffffffffffff8p0", "2"),
        (b"0", b"0x1.fffffffffffffffff7p0", "2"),
        (b"1", b"0x.p1", NOT_FLOAT),
        (b"1", b"0xg", NOT_FLOAT),
        (b"1", b"-0x10", "-15"),
        (b"1", b"0x1p16383", "#4932:b32e7efa34141de2"),
        (b"1", b"0x1p16384", NOT_FLOAT),
        (b"1", b"0x1p-16445", "1"),
        (b"1", b"0x1p-16446", NOT_FLOAT),
        (b"0", b"0x1p-16445", "0"),
        (b"0", b"0x1p-16446", NOT_FLOAT),
        (b"0", b"0x1.8p-16446", "0"),
        (b"1", b"0x0p-99999", "1"),
        (b"1", b"1e-5000", NOT_FLOAT),
        (b"1", b"0e-99999", "1"),
        (b"1", b"0e99999999999999999999", "1"),
        (b"1", b"1e4933", NOT_FLOAT),
        (b"1", b"1e4932", "#4933:3a74bb368382c4e9"),
        (b"1", b"1e99999999999999999999999", NOT_FLOAT),
        (b"1", b"1e-99999999999999999999999", NOT_FLOAT),
        (b"0", b"3.6e-4951", "0"),
        (b"0", b"1e-4951", NOT_FLOAT),
        (b"0", b"2e-4951", "0"),
        (b"0", b"1.9e-4951", "0"),
        (b"1", b"1.8e-4951", NOT_FLOAT),
        (b"0", b"-0", "0"),
        (b"-0", b"-0", "0"),
        (b"-0", b"0", "0"),
        (b"0", b"-1e-30", "0"),
        (b"0", b"-0.000000000000000009", "-0.00000000000000001"),
        (b"0", b"-0.000000000000000005", "0"),
        (b"0", b"0.000000000000000005", "0"),
        (b"0", b"0.000000000000000015", "0.00000000000000002"),
        (b"0", b"0.000000000000000025", "0.00000000000000002"),
        (b"1", b"0x1p-18", "1.00000381469726562"),
        (b"1", b"0x3p-18", "1.00001144409179688"),
        (b"0", b"0x1p-57", "0.00000000000000001"),
        (b"0", b"0x1p-58", "0"),
        (b"0", b"0x3p-58", "0.00000000000000001"),
        (b"9223372036854775807", b"1", "9223372036854775808"),
        (b"-9223372036854775808", b"-1", "-9223372036854775809"),
        (b"18446744073709551615", b"1", "18446744073709551616"),
        (b"18446744073709551617", b"0", "18446744073709551616"),
        (b"18446744073709551619", b"0", "18446744073709551620"),
        (b"18446744073709551618", b"1", "18446744073709551620"),
        (b"36893488147419103231", b"0", "36893488147419103232"),
        (b"36893488147419103233", b"0", "36893488147419103232"),
        (b"36893488147419103235", b"0", "36893488147419103236"),
        (b"1", b"\x001", NOT_FLOAT),
        (b"\x00abc", b"1", NOT_FLOAT),
        (b"1\x00abc", b"1", NOT_FLOAT),
        (b"1", b"2\x00x", NOT_FLOAT),
        (b"1", b"00000000000000000000000000000000001.5", "2.5"),
        (b"1", b"1_000", NOT_FLOAT),
        (b"1", b"1,5", NOT_FLOAT),
        (b"1", b"1.2.3", NOT_FLOAT),
        (b"1", b"--1", NOT_FLOAT),
        (b"1", b"+-1", NOT_FLOAT),
        (b"1", b"\t1", NOT_FLOAT),
        (b"1", b"\n1", NOT_FLOAT),
        (b"1", b"1\n", NOT_FLOAT),
        (b"1", b"0b101", NOT_FLOAT),
        (b"1", b"1e5", "100001"),
        (b"1", b"1E5", "100001"),
        (b"1", b"1e+05", "100001"),
        (b"0.1", b"0.7", "0.8"),
        (b"0.3", b"0.6", "0.9"),
        (b"1e16", b"1", "10000000000000001"),
        (b"1e17", b"1", "100000000000000001"),
        (b"1e18", b"1", "1000000000000000001"),
        (b"1e19", b"1", "10000000000000000001"),
        (b"1e19", b"0.5", "10000000000000000000"),
        (b"1e20", b"1", "100000000000000000000"),
        (b"99999999999999999999", b"1", "100000000000000000000"),
        (b"0.99999999999999999999", b"0", "1"),
        (b"0.999999999999999999", b"0", "1"),
        (b"0.000000000000000001", b"0.000000000000000001", "0"),
        (b"1e-17", b"0", "0.00000000000000001"),
        (b"5e-18", b"0", "0"),
        (b"5.000000001e-18", b"0", "0.00000000000000001"),
        (b"1.5e-17", b"0", "0.00000000000000002"),
        (b"-1.5e-17", b"0", "-0.00000000000000002"),
        (b"2.5e-17", b"0", "0.00000000000000002"),
        (b"123.456", b"-123.456", "0"),
        (b"1e300", b"-1e300", "0"),
        (b"3.14159265358979323846264338327950288", b"0", "3.14159265358979324"),
        (b"2.718281828459045235360287", b"1", "3.71828182845904524"),
        (b"1e-300", b"1e-300", "0"),
        (b"1e-4000", b"1", "1"),
        (b"1e4000", b"1", "#4000:6c79f17f22471934"),
        (b"1e4000", b"-1e4000", "0"),
        (b"1.5e4000", b"-1e4000", "#4000:f0464a9ec0463870"),
        (b"-1e4931", b"-1e4931", "#4933:919049316e00d755"),
        (b"1e4932", b"1e4931", "#4933:ec224137fcf8c0bc"),
        (b"+939.2524097", b"883213206.4348E-18", "939.25240970088321324"),
        (b"-719897735958778.3379667760550731150376e3795", b"-0836899.27477E14", "#3811:14acafa40b28e326"),
        (b"0x.34ap-61", b"+704249406805196.23e-16", "0.07042494068051962"),
        (b"+813804220539737.3422", b"945.7022639e-198", "813804220539737.34222412109375"),
        (b".134779246665869264E2734", b"475059.e97", "#2734:9d1ffc2616c02052"),
        (b"122972883099395579.168e11", b"-54369652178239", "12297288309939503547119828992"),
        (b"-638675892.6401778435259571E-3745", b"-3894731", "-3894731"),
        (b"98696772271603684135", b"68589771882344556114.4360076511369931E14", "6858977188234554308597798789971968"),
        (b"+309946241755.244080940161764092760", b"599562675052048892", "599562984998290647.25"),
        (b"-0x1a84463b69ce8105", b"-04.812070283481049546925", "-1910729362904088841.75"),
        (b"+7081582206847.8746370311259571E24", b"+4010732905.711739188715e4", "7081582206847874637016567495144767488"),
        (b"59046824148.41462190E21", b"91296467192399472472.632544764374262527e77", "9129646719239947247612705595287159806065237803078741362321570848038570622889222264482108249473024"),
        (b"3889582671808428.56362429411789e-2270", b"-9095338380347991740997.53910561E12", "-9095338380347991740900314923925504"),
        (b"+09530606611399380335.6e-21", b"+83013540.996738161190135", "83013541.00626876780734165"),
        (b"4952237032035748.616499968937681624782E-20", b"4044369375892.9053648445827", "4044369375892.90541434288024902"),
        (b"-.84894314e25", b"-9381.4388592376952E15", "-8489440781438859237392384"),
        (b"0623301.909403569E-7", b"3.5695816449391796431E7", "35695816.51172198737185681"),
        (b"06966293014329980980.0111595971796e-10", b"+2002902686718001358.88841943436943e54", "2002902686718001358885577839453405201784964577033167380579478420555038720"),
        (b"091671151933751850.453774627104127E-22", b"+7063.005279", "7063.00528816711519298"),
        (b"-93612113403297.0300137703294200e5", b"-55805299", "-9361211340385508300"),
        (b"+8394557435500868418806.982798942895403371e17", b"23413458358970352714.5610196550079478e11", "839455745891432677794594803491109076992"),
        (b"9566301173295220.0E-21", b"68777534873.268985919043505E17", "6877753487326898592157794304"),
        (b"2744027576710703807.3314", b"-56494303494", "2744027520216400313.25"),
        (b"993374015972185.85420e11", b".272754", "99337401597218585420234752"),
        (b"-0x677a2cf3f7d75.8e0p-65", b"-822118050522011.6802775761430965872740", "-822118050522011.68035888671875"),
        (b"+88556.952711692398339", b"-5882661.71406612060132877", "-5794104.76135442820304888"),
        (b"-7183371025119811811.845E-8", b"178", "-71833710073.19811812043190002"),
        (b"1300053249329143305", b"-392941158583717", "1299660308170559588"),
        (b"954519437.6804581440552457154e281", b"+5855.9209155975850746689e-2", "95451943768045814401882032657724954874544431372489129321342467865069858195758062380173522903944918106065083411074089421058879849920294369059734244773640676061908975948417802278590583490385653427788323493443909194073299925823580058761478860086813802917113823065133244845350986607104073138176"),
        (b"0x7f3d3ae9p-38", b"-23367761844569122234.2E195", "-23367761844569122234384912489004186075427362153602939126968855660010655187742343966293022758706951165097910101689071618827263777415806177464630181408234795416257065134293326222919476489378666631097603691902272536576"),
        (b"7647956066079356066726.4536598885826E25", b"1767517736108798985464.332351688420587334807E-6", "76479560660793560669188508764798388241510170624"),
        (b"-77.124437255685814E248", b"+082195414298524404.1749558330574939799545E-1932", "-7712443725568581399836998944491531206607706225726478709897242965123692859818292023309066284906223673394865352775078683042805360024586251436725810078823848592205298533684045132459614040342737310940830519743534504451122476636432702904087161780087816192"),
        (b".6601866808E25", b"+08448653.51", "6601866808000000008650752"),
        (b"-1524.5E95", b".59660e-18", "-152450000000000000006930232791805967958380522643278005053603289009496829673976717711560760570675200"),
        (b"+945473161086468329470.698122565072268572894e2041", b"+53.6851E-177", "#2062:ada1f6f582b282d6"),
        (b"48.90224742590557173994E4915", b"-97534", "#4917:1ad3663a241e822e"),
        (b"77685660696.62E116", b"270701028297713723.53624961773402990506E256", "2707010282977137235326177429199018894526955925059790503049751107504788567270400576840812897123017847288385764696151775335571154905008037011826147004888830717833008019498210009308100368479864631240877149872055599052370954651146310996274069904044023394429033008918326583230464"),
        (b"425733916893003132306.677606047070022475291E-1", b"8122.001587865428443420e-12", "42573391689300313232"),
        (b"-9676370736564944701863.00017703195712685072", b"370502.5e21", "370492823629263435078828032"),
        (b"-090574260619829633", b"607448746933456.419205181144", "-89966811872896176.578125"),
        (b"-7933051271960255760891.3E-22", b"-58452243651531.123636050e12", "-58452243651531123634208768"),
        (b"502905283970827981", b"+62465148251083367.6277725543116e24", "62465148251083367627016835935839239274496"),
        (b"36433036345049157429.6242563878506247144256E506", b"31735.0E-907", "#526:09f3757dac02f5cf"),
        (b"+820118532088e4073", b"-902835573539270514", "#4085:e48f1be74c757692"),
        (b"-3471203669669170.80915979E-27", b"352.893e-144", "-0.0000000000034712"),
        (b"4796573849066696837", b"-542041009354", "4796573307025687483"),
        (b"+2025372776242.566372124883E14", b"-584809114.75565867643853300", "202537277624256636632694784"),
        (b"6722.35093e1", b"+4545133489086902470388.3E18", "4545133489086902470411712350330996916224"),
        (b"37463434717.658372194E6", b"10179625925945.7282E-19", "37463434717658372.1953125"),
        (b"+838456768540.40836079275839E83", b"7836807404887.952561949619102804794E-255", "83845676854040836076439339489218108736950068380396634291593480198124458884931306558417144905728"),
        (b"685234509414.913558668978377E-1948", b"-428073724457031.8187578430429E11", "-42807372445703181877379072"),
        (b"-78441582", b"-5886513958802237", "-5886514037243819"),
        (b"9601221.77144362627E-2264", b"88931968307263377100", "88931968307263377104"),
        (b"+.830365622701713", b"+54071841483715427.0E-23", "0.83036616342012784"),
        (b"5008.469853560370396539", b"67.42584742680006E5", "6747593.21253356636998433"),
        (b"-7845125254.0568926e-15", b"4426902935.552709268740774537309E5", "442690293555270.9268798828125"),
        (b"-821718348910.540862701963009702e-14", b"-20965619397224770021", "-20965619397224770020"),
        (b"428.622571327E13", b"+2740375.38381787623124e127", "27403753838178762311382435541494232400570994765481972033878340390653252312878298051673446587390518629479711469769030799662508622741504"),
        (b"113801", b"24954138113191.480796811160919715e17", "2495413811319148079701938929664"),
        (b"-7582249878659535094", b"50753343573279094226.363951106433547278908", "43171093694619559136"),
        (b"-04395702415.7E18", b"+0615699271878196079.e-18", "-4395702415700000000006160384"),
        (b"793.39576E12", b"31884697972925463", "32678093732925463"),
        (b"-54585722796316.0178073466378993E20", b"1210857.2545100e4439", "#4446:703f2ca79680d4ac"),
        (b"6760099.704687300750209296193", b"0x3e.", "6760161.70468730075026542"),
        (b"92901024437777", b"-42064180956276", "50836843481501"),
        (b"-49373433125205217642", b"-60991987302008765027.08E-13", "-49373433125211316840"),
        (b"-785274399963.957607219536486e-9", b"-0909300040.4627307283169E-20", "-785.27439996396670024"),
        (b"41670491924658803324.99743850868911647e-18", b"+757709731.311295E15", "757709731311295000018944"),
        (b"-2294601138390005.5049139029e25", b"-39032772763729400.278594745157407E-298", "-22946011383900055048045997649713214521344"),
        (b"6272212.109993417835764e-247", b"70798.7835e7", "707987835000"),
        (b"5748116153.87179640331407450950e82", b"4694061300182", "57481161538717964034408810970641413703950063246038734998894801683899319776740229309490266112"),
        (b"5686550.190947e16", b"-9.1845E1", "56865501909470000001024"),
        (b"-565794.17641469734483", b"-594144881093825", "-594144881659619.1763916015625"),
        (b"8093011.288684067356011457e17", b"2509251853841830669240.1314446e5", "251734486513051473650122752"),
        (b"237075128709.7935449e138", b"-83769787370284554268.51969813845018839604", "237075128709793544890897516433122600603694025341928076636790960709636617718135963252477217529735805999496032199284819585689106816200510945339589525504"),
        (b"-5453191.66054538E236", b"+12279353525164292468.90E-19", "-545319166054538000014715351877069786232085466899046014865063342140541149086868431055257976501225616548308273837779632364628059114709294560069663935266656349982569136274111725716655255590469761508824562785296376121105847330193919234476085346304"),
        (b"-4801329591760.0735376468602291482906e-18", b"834405594719242223.819619110334e-194", "-0.00000480132959176"),
        (b"5003808012367679", b"87824304210474", "5091632316578153"),
        (b"+410737.2440650058047311407e-2716", b"1258151875019772.43897618e-1949", "0"),
        (b"+15054.5729636172737456523067E-4", b"-6337900567953", "-6337900567951.49454259872436523"),
        (b"-04.559e-17", b"022314227614199.48644285E252", "22314227614199486443669455155019705349232387197487885071682245823334250269537855353638179523522107291690749932321423423874043599254960552015365493516199244247496133568512295315309095913535975295404100440832224419219358106977383572131754336904930682564777555527729152"),
        (b"-328.721324828555e-239", b"92757820", "92757820"),
        (b"2506554021693620", b"461277525094419", "2967831546788039"),
        (b"-73604430298", b"-388730350298435207.945E149", "-38873035029843520793252591072419559945139056559317098830336000394126802581857743992193252584827526397393095773599848701526290994376289430400234158459603078976653754368"),
        (b"506173014796.3879809222545e20", b"9.2323443447504488", "50617301479638798092709815910400"),
        (b"-8737228791092193.2126943618127E4", b"+0203210453.554716755978274921065e14", "20233673067560753666048"),
        (b"87832780160677448558", b"8681360059602.45252134518469", "87832788842037508160"),
        (b"600468.722588e14", b"542943949277007534.166624469519112e24", "542943949277007534173004123782643284180992"),
        (b"+43282735528933170702.190E94", b"049260343426.605132541e193", "492603434266051325393507951882927287076367482618604236720756427387163280464229564940845699577617488309022998194946903933148615122477572996640004572336033684106883353844450293878711998272240035410678382592"),
        (b"-4034117.6184e292", b"+4096809.454", "-40341176183999999999539034790587599582188771599101873525446345730175932868001884914285355127667740235587810077975543696608323452565056448475943651953657377389388191868768431840571142698470244975319547682296006293894352924281706862178408326096102780847754867814401521313177146160651353943812637458432"),
        (b"+227385165923926389.7744398016E-296", b"8742150027573559.3163400E-4", "874215002757.35593163967132568"),
        (b"-5422646689.377315581493E8", b"317698.0453E-10", "-542264668937731558.15625"),
        (b"8863233545738E-852", b"448169752521912983.483e-2", "4481697525219129.834716796875"),
        (b"989848655569146088100.3959132983248040797E15", b"-79408610859579.77E7", "989848655569145294019240372119535616"),
        (b"+5158369013704699496.4766e-11", b"02628.08820865538698724", "51586318.22525565035175532"),
        (b"-2121433663118", b"+.75165540655756E-146", "-2121433663118"),
        (b"8208682455185107396", b"67778.239599394353259", "8208682455185175174"),
        (b"-633422352683.45", b"-45019445857303.690578695", "-45652868209987.1405792236328125"),
        (b"56383559", b"92874332629446155", "92874332685829714"),
        (b"727331395545.004909462e23", b"155684574152085.185011310087327528049E-10", "72733139554500490945465449487269888"),
        (b"58499646628884949", b"22688722458.9E-4", "58499646631153821.24609375"),
        (b"+176760634144080910921.80405544687808385309", b"+55692214.9E80", "5569221490000000000080135908958047054299584584133305671065784813949379613107568722837504"),
        (b"4942892311447908216.36809E-23", b"-17.80253225836880701E-10", "0.00004942714286125"),
        (b"-34683317376734.4088E17", b"-8862596385986.754112363430e6", "-3468331737682303476376616828928"),
        (b"128892126928214806", b"-87263917388035627.03626486790739262929E11", "-8726391738674670576510959616"),
        (b"0221363592613644.516E-19", b"-7122822578685", "-7122822578684.99997806549072266"),
        (b"+1351496", b"-0232353711567504930.2766247561864565309e1930", "#1949:5c168611d8de1532"),
        (b"+30102530056161.88342914e-19", b"-5663726386878.983883412341", "-5663726386878.98388051986694336"),
        (b"-9325621418.0036741291553276e-19", b"13857976910168994498.3851046125498001E312", "#332:da7de4d20c980504"),
        (b"2473594801861073380627.8137543371892025838E10", b"6481591121465935532722.4920493883051872247E-8", "24735948018610733870363917156352"),
        (b"+1561274247.6e50", b"-288892244350160382", "156127424760000000004528465703682197842744515949699323133952"),
        (b"-3856664627862859", b"+6252249826.99775871314803", "-3856658375613032.002197265625"),
        (b"+705.86", b"4575239.1714087233997284997814E0", "4575945.03140872339963607"),
        (b"52431.150", b"-26184656929731887807.9066708797274233", "-26184656929731835376"),
        (b"-485229863992", b"3604774008857707085878.4419204359126E13", "36047740088577070858994274103459840"),
        (b"5146702397745717.108605939574793103E11", b"197496663458.4217750931259017E-2", "514670239774571712839942144"),
        (b"7704865496747", b"-2759154179", "7702106342568"),
        (b"-3665280639", b"-0435149305384159.1", "-435152970664798.100006103515625"),
        (b"-.31504632351306", b"+.525185986763376561005E-117", "-0.31504632351306"),
        (b"+1975716.7421120048841998", b"63336410064217544861.661533426082", "63336410064219520576"),
        (b"-90360719186079300513", b"1143684317376183", "-90359575501761924328"),
        (b"0x4e0.244ef41a8f748", b"-6241703192188092", "-6241703192186843.8583984375"),
        (b"-7439742176702743962", b"-6090474261351503234.2108258856146529586e-1", "-8048789602837894285.5"),
        (b"-5948.429903036458111216e-25", b"-0x56c9ec90b90.6b29p-59", "-0.00001034602712993"),
        (b"+6416616.4016E-793", b"-830", "-830"),
        (b"+05.55074748592648729e-249", b"64950381.547406e-237", "0"),
        (b"-62879.6937e288", b"202000826203.4201740174491E-163", "-62879693699999999998789022568175003458743930793730752586738586524579972413704819999586051935991597848531317438825348222117173230524886409976933157832506393326876279493618443768420062231915732549147378470973555477729882095950923327487270409113935691332654797182713646021953296630318288437510144"),
        (b"886365.57761792117067e14", b"4136023470499174", "88640693785262616240"),
        (b"93.91816e-19", b"+20817187.4897062420E4", "208171874897.06241999566555023"),
        (b"0x4670.d97bc8d4", b"-67033401811809", "-67033401793776.15045547485351562"),
        (b"451463352262.30060e-17", b"-193156278637863258236.828120109E-18", "-193.15627412322973562"),
        (b"-98284969893164238.60759489944732054818E161", b"83388365675565.016527521790046E4", "-9828496989316423860964512061706431238567013582348392964025242089399145134543877810195467587248556702041626774114795037797705461242036358857534334554183708293443070981240552161280"),
        (b"5819380169027.31031456353429903e24", b"-7283549368523020396714.771833556080429045", "5819380169027303030999834807379165184"),
        (b"+083438.7197368", b"-4490058691985275549.3999713617308678E-777", "83438.71973679999999973"),
        (b"-33321450072656660.32701153197026e14", b"-6085367263271671716.0286690420", "-3332145007271751400013984432128"),
        (b"6746571987321562250", b"+327662.02348", "6746571987321889912"),
        (b"14078", b"36656290943304", "36656290957382"),
        (b"-7899207.001584623418552226E-6", b"-15180348375797.029E-22", "-7.89920700310265826"),
        (b"+072222012352700643136.53635635E282", b"-374032649892795901", "72222012352700643138699448616067823432252069625662629356366082099006573530893211467642183176235815280412809607568954873978199272627127235891823284214491514884662152926438615225088352698536453649621178914573776780547438177954594587233631217315927082840190493809713126579180266158157892635026264011309056"),
        (b"16904349421944267", b"-69190339073", "16904280231605194"),
        (b"242510605025870104879.84602907E-214", b"+3323808814443070.70313513566188", "3323808814443070.703125"),
        (b"795084312643.2E-7", b"32346.197454073777086730", "111854.62871839377708483"),
        (b"5910690448628833201011.1899639051622E-278", b"-18226212232.677e3", "-18226212232677"),
        (b"61337878373.0217564788190E-21", b"0x3b5b6bbf6.6", "15933553654.375"),
        (b"354432924899", b"97484152501748.7859425E-12", "354432924996.48415249586105347"),
        (b"3363843487.5441e-18", b"36418632005236032073", "36418632005236032072"),
        (b"3427192e4", b"31872790.083413619969375", "34303792790.08341361954808235"),
        (b"592624.", b"3233847105.4052192627E-16", "592624.00000032338471101"),
        (b"-20558941694663.263350755522390002e23", b"-0458764744821199090.5720224429625", "-2055894169466326335472678780597698560"),
        (b"-192588246150622312", b"-338056826164736", "-192926302976787048"),
        (b"+60.6722294302510250606E8", b"+9.7058656977835805E-19", "6067222943.0251025059260428"),
        (b"0557.5586710898005536E-7", b"+1936791.841635373e-10", "0.00024943505127252"),
        (b"52997713400107547", b"34548577569817929408", "34601575283218036956"),
        (b"-6072616092205743", b"1381.4000604824", "-6072616092204361.60009765625"),
        (b"-1238527039184026110", b"037262.982E-3188", "-1238527039184026110"),
        (b"-49181932538484480.2492262877887409830e7", b"131312440389.98146331390060e75", "131312440389981463314812809595547224738097760835765063500488234924711279940333989789696"),
        (b"+3E-4661", b"+8785943648225752484434.E12", "8785943648225752484163224734793728"),
        (b"+849027571718.5140605813424056983e-9", b"+89280609463.403851011532506E-17", "849.0275726113201552"),
        (b"361126610639.511137382064932413e-22", b"-864509.77422", "-864509.77421999996391833"),
        (b"-2042256710394773894", b"+431669.4E20", "43166937957743289606078464"),
        (b"-31341392010769059.356474366571", b"+089776.1810062685653", "-31341392010679283.17578125"),
        (b"+55641856976.22981357377473410455", b"500942.954471746504", "55642357919.18428532034158707"),
        (b"+288979.55862861", b"850993.0675511E4", "8510219655.0696286098100245"),
        (b"596227672125", b"-152513229464581068578.938059996756e-21", "596227672124.84748679399490356"),
        (b"-770787306064", b"+607077539320520.92798092358591248E-22", "-770787306063.99999994039535522"),
        (b"+211374728972161703389.6543e24", b"73850842765235295", "211374728972161703391025835977292896077348864"),
        (b"064217.897821562072980789e-20", b"-80815117560.3364281159834214E23", "-8081511756033642811532162415722496"),
        (b"-950842819953702", b"-69.0379237027964419e-3825", "-950842819953702"),
        (b"24745.32332569e-261", b"136.399925698E-2", "1.36399925698"),
        (b"849329683400995039", b"+0.79959109319650722349e18", "1648920776597502262.5"),
        (b"-0xb47a8e579a15dc165d", b"0x42ea.80246a6bea4fp6", "-3329245025506341640960"),
        (b"-3622356546098603", b"1562.4978204874303654E53", "156249782048743036534782887897822330824667504372181106688"),
        (b"009227328818268.453658127529E-3", b"8728716614.4136339225736747E13", "87287166144145566556160"),
        (b"57.73239304066226E-21", b"747.88375319108472464698e-12", "0.00000000074788375"),
        (b"94372.642409196544e9", b"-70307", "94372642338889.54399871826171875"),
        (b"4346549926.874424377440e-7", b"3001048422044704.865176015E8", "300104842204470486515712"),
        (b"051018.3960789409336685e0", b"7091090865337577", "7091090865388595.39599609375"),
        (b"+05542.71192", b"-54.4338387588405", "5488.27808124115950017"),
        (b"+899226677099942.3566007202607620994", b"-28369866939156495.0318215E197", "-2836986693915649503305939865736015442738358856519010004998551763905500382905309196242971973487951418015779603070106951008096631102690409984047803811684451899456591625751183583392362331115996101222109446747426127872"),
        (b"+895654898281896160.723342076637345044173e-14", b"+989989592682082343341.5649485E13", "9899895926820823433679476094926848"),
        (b"723456514508855395.0187595e21", b"+81985428048.6349872539347e25", "724276368789341744858594032938779672576"),
        (b"-283220759236162708", b"-44745066096433730", "-327965825332596438"),
        (b"+92005551.07114706198044581848", b"+34562266969189276756.6860254279e1", "345622669691984773088"),
        (b"-0x.4a969b89dbd9d8cf1dc", b"+976427090250279440.265742760979e-22", "-0.29126294646804163"),
        (b"5400884524256746", b"73809874703594.3007329360763864860E5", "7386388354883686819.5"),
        (b"-2638173843016657", b"05297775101724927.1352090747402736245e19", "52977751017249271349674254431944704"),
        (b"7747370665814.95e199", b"-17051522586064", "77473706658149500001591189990582452411633299117742877410205834880192810377769086798811985784668214874354905876308284109401255006426663328455195250961192777362151200347249955995234801571208957647253022434056470528"),
        (b"-61872895.248813695557434465553", b"79177498137.934870449e-856", "-61872895.24881369555805577"),
        (b"77.877254025509", b"098606.5595282536029105032e-8", "77.87824009110428253"),
        (b"970723349167458595900.3163265960885E-313", b"0703134177E-1528", "0"),
        (b"-584", b"-443378406182446654", "-443378406182447238"),
        (b"-5584677377516763.0e17", b"50143520410.865816072470552314", "-558467737751676299993306611318784"),
        (b"91420503545622448731.40857386847436581E289", b"579285303809205.1869566597572445968e14", "914205035456224487338068348714162223269883926422821823598038278114587979169954695618407847945392657852557386908376181583287202212326239365265833531171794900031020178421259477100377245209638152590519615315950874926185174074606390742206143597975093447115556713088296132625137441308790247369011804533242262978560"),
        (b"0457866499845713931.6268668432e4", b"7821520877087693816822.887994507e-2", "4656880207228016254464"),
        (b"-44.E-1248", b"+945.698547077928", "945.69854707792800003"),
        (b"-02222998679554136748.6723490475847887290392e-4", b"+65.0314825755313E-4", "-222299867955413.668365478515625"),
        (b"+5905564.1235715040141247666516", b"2011286709664000959.36413E-7", "201134576530.52366743981838226"),
        (b"+1332.0121876E5", b"+26216590149112110.1502E-14", "133201480.92590149112220388"),
        (b"-5003978.109628004400763", b"23394873963257016606.340998058806094252268", "23394873963252012628"),
        (b"01804358.5952136004404584", b"82779.83522241818300831e-11", "1804358.59521442823881898"),
    ];

    /// What Redis replies to `SET k <a>` then `INCRBYFLOAT k <b>`.
    fn incrbyfloat(a: &[u8], b: &[u8]) -> String {
        match (parse(a), parse(b)) {
            (Some(x), Some(y)) => match add(x, y) {
                Some(v) => format_human(v),
                None => NAN_OR_INF.to_string(),
            },
            _ => NOT_FLOAT.to_string(),
        }
    }

    fn fnv1a(s: &str) -> u64 {
        s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, c| {
            (h ^ u64::from(c)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    fn matches(got: &str, want: &str) -> bool {
        match want.strip_prefix('#') {
            Some(digest) => digest == format!("{}:{:016x}", got.len(), fnv1a(got)),
            None => got == want,
        }
    }

    #[test]
    fn longdouble_matches_recorded_redis_replies() {
        let mut failures = Vec::new();
        for &(a, b, want) in CASES {
            let got = incrbyfloat(a, b);
            if !matches(&got, want) {
                failures.push(format!(
                    "{:?} + {:?}: want {want}, got {got}",
                    String::from_utf8_lossy(a),
                    String::from_utf8_lossy(b)
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert!(CASES.len() > 300);
    }

    #[test]
    fn longdouble_text_length_limit() {
        // string2ld refuses 5120 bytes or more.
        let ones = |n: usize| format!("{}1", "0".repeat(n - 1));
        assert_eq!(incrbyfloat(b"1", ones(5119).as_bytes()), "2");
        assert_eq!(incrbyfloat(b"1", ones(5120).as_bytes()), NOT_FLOAT);
        let half = |n: usize| format!("0.5{}", "0".repeat(n - 3));
        assert_eq!(incrbyfloat(b"1", half(5119).as_bytes()), "1.5");
        assert_eq!(incrbyfloat(b"1", half(5120).as_bytes()), NOT_FLOAT);
        assert_eq!(incrbyfloat(ones(5119).as_bytes(), b"2"), "3");
        assert_eq!(incrbyfloat(ones(5120).as_bytes(), b"2"), NOT_FLOAT);
        // 10^-5117 underflows to zero.
        let tiny = format!("0.{}1", "0".repeat(5116));
        assert_eq!(incrbyfloat(b"1", tiny.as_bytes()), NOT_FLOAT);
    }

    #[test]
    fn longdouble_long_digit_strings() {
        let ones = "1".repeat(400);
        assert_eq!(incrbyfloat(b"1", ones.as_bytes()), "1111111111111111111089493706460225139319800637553272328334455526513022048510796830219524696498209112023144594985934303691906945461133523831534211827706317102790057125003456040725892206610118865813479998802169082318765260105583107281280257242070594116252508451037524672714104238753242028534669680933478801475205232740772039293110407518628346608588255507728063384089021143448598598168943092888590352384");
        let scaled = format!("{ones}e-400");
        assert_eq!(incrbyfloat(b"1", scaled.as_bytes()), "1.11111111111111111");
        let shifted = format!("0.{}1e300", "0".repeat(300));
        assert_eq!(incrbyfloat(b"1", shifted.as_bytes()), "1.1");
    }

    #[test]
    fn longdouble_extremes() {
        let max = parse(b"0x1.fffffffffffffffep16383").unwrap();
        assert_eq!(parse(b"1.18973149535723176502e+4932"), Some(max));
        assert_eq!(add(max, parse(b"0x1p16319").unwrap()), None);
        assert_eq!(add(max, parse(b"0x1.fffp16318").unwrap()), Some(max));
        let min = parse(b"0x1p-16445").unwrap();
        assert_eq!(parse(b"0x1p-16446"), None);
        assert_eq!(parse(b"0x1.0000001p-16446"), Some(min));
        assert_eq!(format_human(add(min, min).unwrap()), "0");
        assert_eq!(
            add(min, parse(b"-0x1p-16445").unwrap()).map(format_human),
            Some("0".into())
        );
        assert_eq!(parse(b"inf").and_then(|v| add(v, min)), None);
    }

    /// xorshift64*: a fixed, seedable source for the live comparison.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn digits(&mut self, n: u64) -> String {
            (0..n)
                .map(|_| char::from(b'0' + self.below(10) as u8))
                .collect()
        }

        fn number(&mut self) -> String {
            let mut s = String::new();
            match self.below(4) {
                0 => s.push('-'),
                1 => s.push('+'),
                _ => {}
            }
            match self.below(10) {
                0 => {
                    s.push_str(&format!("0x{:x}", self.next() >> self.below(64)));
                    if self.below(2) == 0 {
                        s.push_str(&format!("p{}", self.below(200) as i64 - 100));
                    }
                    return s;
                }
                1 => return format!("{s}{}", self.next() >> self.below(64)),
                _ => {}
            }
            let int_digits = self.below(24);
            s.push_str(&self.digits(int_digits));
            let frac_digits = self.below(24);
            if frac_digits > 0 || int_digits == 0 {
                s.push('.');
                s.push_str(&self.digits(frac_digits.max(1)));
            }
            let exp = match self.below(10) {
                0..=4 => self.below(51) as i64 - 25,
                5 | 6 => self.below(661) as i64 - 330,
                7 => self.below(9900) as i64 - 4960,
                _ => return s,
            };
            format!("{s}e{exp}")
        }
    }

    /// A bare RESP client, enough for SET, DEL and INCRBYFLOAT.
    struct Client {
        stream: std::io::BufReader<std::net::TcpStream>,
    }

    impl Client {
        fn command(&mut self, args: &[&[u8]]) -> String {
            use std::io::{BufRead, Read, Write};
            let mut out = format!("*{}\r\n", args.len()).into_bytes();
            for arg in args {
                out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
                out.extend_from_slice(arg);
                out.extend_from_slice(b"\r\n");
            }
            self.stream.get_mut().write_all(&out).unwrap();
            let mut line = String::new();
            self.stream.read_line(&mut line).unwrap();
            let line = line.trim_end();
            match line.strip_prefix('$') {
                Some(len) => {
                    let len: usize = len.parse().unwrap();
                    let mut body = vec![0; len + 2];
                    self.stream.read_exact(&mut body).unwrap();
                    body.truncate(len);
                    String::from_utf8(body).unwrap()
                }
                None => line.to_string(),
            }
        }
    }

    /// Compares against a live Redis:
    /// `REDIS_PORT=7501 cargo test -p shoal-server longdouble -- --ignored`.
    #[test]
    #[ignore]
    fn longdouble_matches_live_redis() {
        let Ok(port) = std::env::var("REDIS_PORT") else {
            return;
        };
        let stream = std::net::TcpStream::connect(("127.0.0.1", port.parse().unwrap())).unwrap();
        let mut client = Client {
            stream: std::io::BufReader::new(stream),
        };
        let key: &[u8] = b"shoal:longdouble:test";
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = CASES
            .iter()
            .map(|&(a, b, _)| (a.to_vec(), b.to_vec()))
            .collect();
        for _ in 0..5000 {
            pairs.push((rng.number().into_bytes(), rng.number().into_bytes()));
        }
        let mut failures = Vec::new();
        for (a, b) in &pairs {
            client.command(&[b"DEL", key]);
            client.command(&[b"SET", key, a]);
            let want = client.command(&[b"INCRBYFLOAT", key, b]);
            let got = incrbyfloat(a, b);
            if got != want {
                failures.push(format!(
                    "{:?} + {:?}: redis {want}, got {got}",
                    String::from_utf8_lossy(a),
                    String::from_utf8_lossy(b)
                ));
            }
        }
        client.command(&[b"DEL", key]);
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
