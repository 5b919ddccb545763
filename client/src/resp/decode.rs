//! Server-side request decoding: Redis 7.0's `processMultibulkBuffer` and
//! `processInlineBuffer`, as a pure function over the connection's read buffer.
//!
//! The decoder is restartable: it keeps no state between calls, so the caller simply calls it
//! again on the same (grown) buffer. To keep big values from being re-parsed on every read,
//! [`Decoded::Incomplete`] carries the buffer length needed before another attempt can make
//! progress.
//!
//! Redis quirks reproduced on purpose (each checked against redis-server 7.0.15):
//! * header lines end at the first `\r`; the byte after it is skipped without checking that it
//!   is `\n`, and so are the two bytes after a bulk payload;
//! * Redis scans with `strchr`, so a NUL byte before the terminator hides it: the request stays
//!   incomplete until the inline limit turns it into a "too big" error;
//! * `*0`, `*-1` (any count <= 0) and blank inline lines are complete requests with no
//!   arguments, which the server silently ignores.

use super::{Limits, ProtoError};

/// Marks a span that lives in [`Args`]' scratch buffer (an unescaped inline argument) rather
/// than in the request buffer.
const SCRATCH: usize = 1 << (usize::BITS - 1);

/// Argument offsets of one decoded request into the buffer it was decoded from.
///
/// Reused across frames: after warm-up, decoding allocates nothing. Arguments of inline
/// requests that contain quotes or escapes do not exist verbatim in the buffer; their decoded
/// bytes live in an internal scratch buffer, which is why [`get`](Self::get) borrows both.
#[derive(Debug, Default, Clone)]
pub struct Args {
    spans: Vec<(usize, usize)>,
    scratch: Vec<u8>,
}

impl Args {
    /// An empty argument list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of arguments (0 for `*0\r\n`, `*-1\r\n` or a blank inline line).
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether the request had no arguments (the server ignores such requests).
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Argument `i` of the request decoded from `buf`.
    ///
    /// # Panics
    /// If `i >= self.len()`, or if `buf` is not (a prefix-preserving extension of) the buffer
    /// the request was decoded from.
    pub fn get<'a>(&'a self, buf: &'a [u8], i: usize) -> &'a [u8] {
        let (start, end) = self.spans[i];
        if start & SCRATCH != 0 {
            &self.scratch[start & !SCRATCH..end]
        } else {
            &buf[start..end]
        }
    }

    /// Iterates over all arguments of the request decoded from `buf`.
    pub fn iter<'a>(&'a self, buf: &'a [u8]) -> impl ExactSizeIterator<Item = &'a [u8]> + 'a {
        (0..self.len()).map(move |i| self.get(buf, i))
    }

    /// Forgets all arguments, keeping the capacity.
    pub fn clear(&mut self) {
        self.spans.clear();
        self.scratch.clear();
    }
}

/// Outcome of [`decode_request`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// One complete request; `args` is filled (it may be empty: `*0\r\n`, `*-1\r\n` or a
    /// blank inline line, which the server ignores like Redis). Advance the buffer by
    /// `consumed` once done with the arguments.
    Frame {
        /// Bytes of the buffer this request occupies.
        consumed: usize,
    },
    /// More bytes are needed. `need` is the total buffer length required before another
    /// attempt can make progress, when known (e.g. inside a big bulk), so the caller does not
    /// re-parse until then. The length is declared by the peer: do not reserve it blindly.
    Incomplete {
        /// Total buffer length required, if known.
        need: Option<usize>,
    },
}

const INCOMPLETE: Decoded = Decoded::Incomplete { need: None };

/// Decodes one request (multibulk or inline) from the start of `buf` into `args`.
///
/// Never allocates in proportion to a declared length, and never panics.
///
/// # Errors
/// A [`ProtoError`] with Redis' exact text; all are fatal (write
/// [`ProtoError::reply`] and close the connection).
pub fn decode_request(buf: &[u8], limits: &Limits, args: &mut Args) -> Result<Decoded, ProtoError> {
    args.clear();
    match buf.first() {
        None => Ok(INCOMPLETE),
        Some(b'*') => decode_multibulk(buf, limits, args),
        Some(_) => decode_inline(buf, limits, args),
    }
}

#[inline]
fn decode_multibulk(buf: &[u8], limits: &Limits, args: &mut Args) -> Result<Decoded, ProtoError> {
    let Some(cr) = find_cr(buf, 0) else {
        return if buf.len() > limits.max_inline_len {
            Err(ProtoError::TooBigMbulkCount)
        } else {
            Ok(INCOMPLETE)
        };
    };
    if cr + 2 > buf.len() {
        return Ok(INCOMPLETE);
    }
    let count = match string2ll(&buf[1..cr]) {
        Some(n) if n <= 0 => return Ok(Decoded::Frame { consumed: cr + 2 }),
        Some(n) if n as u64 <= limits.max_multibulk_len as u64 => n as u64,
        _ => return Err(ProtoError::InvalidMultibulkLength),
    };
    let mut pos = cr + 2;
    for _ in 0..count {
        let Some(cr) = find_cr(buf, pos) else {
            return if buf.len() - pos > limits.max_inline_len {
                Err(ProtoError::TooBigBulkCount)
            } else {
                Ok(INCOMPLETE)
            };
        };
        if cr + 2 > buf.len() {
            return Ok(INCOMPLETE);
        }
        let first = buf[pos];
        if first != b'$' {
            // Redis' addReplyErrorFormat turns CR/LF into spaces.
            let shown = if first == b'\r' || first == b'\n' {
                b' '
            } else {
                first
            };
            return Err(ProtoError::ExpectedDollar(shown));
        }
        let len = match string2ll(&buf[pos + 1..cr]) {
            Some(n) if n >= 0 && n as u64 <= limits.max_bulk_len as u64 => n as usize,
            _ => return Err(ProtoError::InvalidBulkLength),
        };
        let start = cr + 2;
        let end = start.saturating_add(len);
        let next = end.saturating_add(2);
        if next > buf.len() {
            return Ok(Decoded::Incomplete { need: Some(next) });
        }
        args.spans.push((start, end));
        pos = next;
    }
    Ok(Decoded::Frame { consumed: pos })
}

/// Position of the first `\r` at or after `from`, unless a NUL comes first (Redis' `strchr`
/// stops there) or there is none.
#[inline]
fn find_cr(buf: &[u8], from: usize) -> Option<usize> {
    const QUICK: usize = 24;
    let hay = buf.get(from..)?;
    // Header lines are a few bytes long: a plain loop beats memchr's setup cost.
    let quick = hay.len().min(QUICK);
    for (i, &b) in hay[..quick].iter().enumerate() {
        if b == b'\r' {
            return Some(from + i);
        }
        if b == 0 {
            return None;
        }
    }
    let rest = &hay[quick..];
    match memchr::memchr2(b'\r', 0, rest) {
        Some(i) if rest[i] == b'\r' => Some(from + quick + i),
        _ => None,
    }
}

/// Redis' `string2ll`: an optional `-`, then either `0` alone or a digit 1-9 followed by
/// digits; fewer than 21 bytes; no `+`, spaces or leading zeros.
#[inline]
pub(crate) fn string2ll(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() >= 21 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    let (&first, rest) = digits.split_first()?;
    if !(b'1'..=b'9').contains(&first) {
        return None;
    }
    let mut v = u64::from(first - b'0');
    for &c in rest {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    if neg {
        if v > i64::MAX as u64 + 1 {
            None
        } else {
            Some(0i64.wrapping_sub(v as i64))
        }
    } else {
        i64::try_from(v).ok()
    }
}

fn decode_inline(buf: &[u8], limits: &Limits, args: &mut Args) -> Result<Decoded, ProtoError> {
    let nl = match memchr::memchr2(b'\n', 0, buf) {
        Some(i) if buf[i] == b'\n' => i,
        _ => {
            return if buf.len() > limits.max_inline_len {
                Err(ProtoError::TooBigInlineRequest)
            } else {
                Ok(INCOMPLETE)
            };
        }
    };
    let end = if nl > 0 && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    split_args(&buf[..end], args)?;
    Ok(Decoded::Frame { consumed: nl + 1 })
}

/// C `isspace` in the C locale.
#[inline]
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Redis' `sdssplitargs` over one line (which holds no NUL and no `\n`). Plain tokens are
/// recorded as spans of `line`; tokens with quotes are unescaped into the scratch buffer.
fn split_args(line: &[u8], args: &mut Args) -> Result<(), ProtoError> {
    // `sdssplitargs` walks a C string: reading past the end yields NUL.
    let at = |p: usize| line.get(p).copied().unwrap_or(0);
    let mut p = 0;
    loop {
        while p < line.len() && is_space(line[p]) {
            p += 1;
        }
        if p >= line.len() {
            return Ok(());
        }
        let tok_start = p;
        let mut scratch_start: Option<usize> = None;
        let (mut inq, mut insq) = (false, false);
        let tok_end;
        loop {
            let c = at(p);
            if inq {
                let hex = if c == b'\\' && at(p + 1) == b'x' {
                    hex_val(at(p + 2)).zip(hex_val(at(p + 3)))
                } else {
                    None
                };
                if let Some((hi, lo)) = hex {
                    args.scratch.push(hi * 16 + lo);
                    p += 3;
                } else if c == b'\\' && at(p + 1) != 0 {
                    p += 1;
                    args.scratch.push(match at(p) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    if at(p + 1) != 0 && !is_space(at(p + 1)) {
                        return Err(ProtoError::UnbalancedQuotes);
                    }
                    tok_end = p;
                    p += 1;
                    break;
                } else if c == 0 {
                    return Err(ProtoError::UnbalancedQuotes);
                } else {
                    args.scratch.push(c);
                }
            } else if insq {
                if c == b'\\' && at(p + 1) == b'\'' {
                    p += 1;
                    args.scratch.push(b'\'');
                } else if c == b'\'' {
                    if at(p + 1) != 0 && !is_space(at(p + 1)) {
                        return Err(ProtoError::UnbalancedQuotes);
                    }
                    tok_end = p;
                    p += 1;
                    break;
                } else if c == 0 {
                    return Err(ProtoError::UnbalancedQuotes);
                } else {
                    args.scratch.push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => {
                        tok_end = p;
                        if c != 0 {
                            p += 1;
                        }
                        break;
                    }
                    b'"' | b'\'' => {
                        if scratch_start.is_none() {
                            scratch_start = Some(args.scratch.len());
                            args.scratch.extend_from_slice(&line[tok_start..p]);
                        }
                        inq = c == b'"';
                        insq = c == b'\'';
                    }
                    _ => {
                        if scratch_start.is_some() {
                            args.scratch.push(c);
                        }
                    }
                }
            }
            if at(p) != 0 {
                p += 1;
            }
        }
        match scratch_start {
            Some(s) => args.spans.push((s | SCRATCH, args.scratch.len())),
            None => args.spans.push((tok_start, tok_end)),
        }
    }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
