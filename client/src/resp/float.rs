//! Redis' textual renderings of doubles.
//!
//! * [`format_double`]: C's `%.17g`, what Redis 7.0 uses for RESP2/RESP3 double replies
//!   (`ZSCORE`, `ZINCRBY`, …) and `HINCRBYFLOAT`-style `%.17g` conversions.
//! * [`format_incrbyfloat`]: `INCRBYFLOAT`'s `%.17Lf` with trailing zeros trimmed.

use std::fmt::Write as _;

/// A fixed-size `fmt::Write` sink: formatting floats must not allocate on the reply path.
struct StackBuf {
    buf: [u8; 40],
    len: usize,
}

impl std::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Writes `d` as C's `printf("%.17g", d)` (glibc) would into `out`, returning the length.
/// `out` needs at most 24 bytes (`-2.2250738585072014e-308`).
pub(crate) fn fmt_g17(d: f64, out: &mut [u8; 32]) -> usize {
    let put = |out: &mut [u8; 32], s: &[u8]| {
        out[..s.len()].copy_from_slice(s);
        s.len()
    };
    if d.is_nan() {
        return put(
            out,
            if d.is_sign_negative() {
                b"-nan"
            } else {
                b"nan"
            },
        );
    }
    if d.is_infinite() {
        return put(out, if d > 0.0 { b"inf" } else { b"-inf" });
    }
    if d == 0.0 {
        return put(out, if d.is_sign_negative() { b"-0" } else { b"0" });
    }
    // `{:.16e}` is correctly rounded (ties to even, like glibc): 17 significant digits.
    let mut sci = StackBuf {
        buf: [0; 40],
        len: 0,
    };
    // Cannot fail: the longest rendering is 24 bytes.
    let _ = write!(sci, "{:.16e}", d.abs());
    let s = &sci.buf[..sci.len];
    let e_pos = s.iter().position(|&c| c == b'e').unwrap_or(s.len());
    let mut digits = [0u8; 17];
    let mut nd = 0;
    for &c in &s[..e_pos] {
        if c.is_ascii_digit() && nd < 17 {
            digits[nd] = c;
            nd += 1;
        }
    }
    let exp: i32 = std::str::from_utf8(&s[(e_pos + 1).min(s.len())..])
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    // Significant digits without trailing zeros (%g drops them).
    let mut sig = nd;
    while sig > 1 && digits[sig - 1] == b'0' {
        sig -= 1;
    }
    let mut n = 0;
    let mut push = |out: &mut [u8; 32], c: u8| {
        out[n] = c;
        n += 1;
    };
    if d < 0.0 {
        push(out, b'-');
    }
    if !(-4..17).contains(&exp) {
        push(out, digits[0]);
        if sig > 1 {
            push(out, b'.');
            for &c in &digits[1..sig] {
                push(out, c);
            }
        }
        push(out, b'e');
        push(out, if exp < 0 { b'-' } else { b'+' });
        let a = exp.unsigned_abs();
        if a >= 100 {
            push(out, b'0' + (a / 100) as u8);
        }
        push(out, b'0' + (a / 10 % 10) as u8);
        push(out, b'0' + (a % 10) as u8);
    } else if exp >= 0 {
        let int_digits = exp as usize + 1;
        for &c in &digits[..int_digits] {
            push(out, c);
        }
        if sig > int_digits {
            push(out, b'.');
            for &c in &digits[int_digits..sig] {
                push(out, c);
            }
        }
    } else {
        push(out, b'0');
        push(out, b'.');
        for _ in 0..(-exp - 1) {
            push(out, b'0');
        }
        for &c in &digits[..sig] {
            push(out, c);
        }
    }
    n
}

/// Appends Redis 7.0's rendering of a double reply (`%.17g`: `1.1000000000000001`, `1e+21`,
/// `inf`, `-inf`, `nan`) to `out`.
pub fn format_double(d: f64, out: &mut Vec<u8>) {
    let mut tmp = [0u8; 32];
    let n = fmt_g17(d, &mut tmp);
    out.extend_from_slice(&tmp[..n]);
}

/// `INCRBYFLOAT`'s reply and stored value for the result `d`: Redis computes in `long double`
/// and prints `%.17Lf` with trailing zeros (and a trailing `.`) removed, `-0` shown as `0`.
///
/// Shoal computes in `f64`, so this renders the shortest decimal that round-trips to `d`,
/// rounded to 17 fractional digits, in plain (non-exponent) notation. That matches Redis
/// whenever the long-double result rounds to the same 17-decimal text, which covers
/// "human" values (`10.5 + 0.1` → `10.6`, `3.0e3` → `3000`, `5.0e3 + 2.0e2` → `5200`).
///
/// Known deviations (f64 vs 80-bit long double): sums whose f64 rounding error is visible
/// in the shortest representation (`0.1 + 0.2` gives `0.30000000000000004` here, Redis
/// `0.3`), and large magnitudes where Redis prints long-double noise in the 17 decimals.
pub fn format_incrbyfloat(d: f64) -> String {
    if d.is_infinite() {
        return if d > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    if d.is_nan() {
        return "nan".to_owned();
    }
    // Shortest round-trip digits in plain notation ({} never uses an exponent for f64).
    let mut s = format!("{d}");
    if let Some(dot) = s.find('.') {
        if s.len() - dot - 1 > 17 {
            let rounded = format!("{d:.17}");
            s = rounded;
        }
        if s.contains('.') {
            let trimmed = s.trim_end_matches('0').trim_end_matches('.').len();
            s.truncate(trimmed);
        }
    }
    if s == "-0" {
        s = "0".to_owned();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(d: f64) -> String {
        let mut v = Vec::new();
        format_double(d, &mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn g17_matches_glibc() {
        // Expected strings produced by glibc printf("%.17g").
        let cases: &[(f64, &str)] = &[
            (1.1, "1.1000000000000001"),
            (1.0, "1"),
            (0.5, "0.5"),
            (-2.5, "-2.5"),
            (10.0, "10"),
            (1e21, "1e+21"),
            (1e16, "10000000000000000"),
            (1e17, "1e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1.0000000000000001e-05"),
            (123456.789e-10, "1.23456789e-05"),
            (3.0e3, "3000"),
            (1_000_000_000_000_000.2, "1000000000000000.2"),
            (1_000_000_000_000_000.8, "1000000000000000.8"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
            (0.0, "0"),
            (-0.0, "-0"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
            (5e-324, "4.9406564584124654e-324"),
            (0.1 + 0.2, "0.30000000000000004"),
            (3.25, "3.25"),
        ];
        for (d, want) in cases {
            assert_eq!(g(*d), *want, "{d:e}");
        }
    }

    #[test]
    fn incrbyfloat_text() {
        let cases: &[(f64, &str)] = &[
            (10.5 + 0.1, "10.6"),
            (3.0e3, "3000"),
            (5.0e3 + 2.0e2, "5200"),
            (-0.0, "0"),
            (1.5, "1.5"),
            (-1.5, "-1.5"),
            (10.0, "10"),
            (1e-20, "0"),
            (0.000001, "0.000001"),
        ];
        for (d, want) in cases {
            assert_eq!(format_incrbyfloat(*d), *want, "{d:e}");
        }
    }
}
