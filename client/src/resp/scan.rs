//! Reply framing without decoding: where does the reply at the front of a buffer end?
//!
//! The proxy forwards backend replies to clients byte for byte; it only needs frame
//! boundaries (and, for scatter/gather, the elements of an array reply). Building a
//! [`Value`](super::Value) tree per reply would cost an allocation per element, so this
//! scanner walks the bytes with an explicit stack of "values still owed" and allocates
//! nothing.

use super::ProtoError;

/// Nesting deeper than this is rejected (a backend never sends it; a hostile peer could).
pub const MAX_DEPTH: usize = 128;

/// Parses the decimal integer of a header line `buf[from..cr]`.
fn header_int(line: &[u8]) -> Result<i64, ProtoError> {
    let (neg, digits) = match line.first() {
        Some(b'-') => (true, &line[1..]),
        _ => (false, line),
    };
    if digits.is_empty() || digits.len() > 18 {
        return Err(ProtoError::InvalidReply);
    }
    let mut n: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return Err(ProtoError::InvalidReply);
        }
        n = n * 10 + i64::from(c - b'0');
    }
    Ok(if neg { -n } else { n })
}

/// The line starting at `from`: (content end, index after CRLF), or None when incomplete.
#[inline]
fn line(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let rel = memchr::memchr(b'\n', buf.get(from..)?)?;
    let nl = from + rel;
    let end = if nl > from && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    Some((end, nl + 1))
}

/// Length in bytes of the complete RESP2/RESP3 reply at the front of `buf`, `Ok(None)` when
/// more bytes are needed.
///
/// # Errors
/// [`ProtoError::InvalidReply`] for bytes that are not a RESP reply or nest deeper than
/// [`MAX_DEPTH`].
pub fn reply_len(buf: &[u8]) -> Result<Option<usize>, ProtoError> {
    // A scalar (an MGET element, a GET reply) needs no stack: zeroing the 1 KiB one
    // per call was the largest single cost of gathering a 1000-key MGET.
    match buf.first() {
        None => return Ok(None),
        Some(b'*' | b'~' | b'>' | b'%' | b'|') => {}
        Some(_) => return scalar_len(buf),
    }
    // owed[i]: values still to read at depth i.
    let mut owed = [0u64; MAX_DEPTH];
    let mut depth = 0usize;
    let mut pos = 0usize;
    loop {
        let Some(&kind) = buf.get(pos) else {
            return Ok(None);
        };
        let mut children: u64 = 0;
        if matches!(kind, b'*' | b'~' | b'>' | b'%' | b'|') {
            let Some((end, next)) = line(buf, pos) else {
                return Ok(None);
            };
            let n = header_int(&buf[pos + 1..end])?;
            pos = next;
            if n > 0 {
                let n = n as u64;
                children = match kind {
                    b'%' => n * 2,
                    // An attribute map is followed by the value it annotates.
                    b'|' => n * 2 + 1,
                    _ => n,
                };
            }
        } else {
            match scalar_len(&buf[pos..])? {
                Some(n) => pos += n,
                None => return Ok(None),
            }
        }
        if children > 0 {
            if depth + 1 >= MAX_DEPTH {
                return Err(ProtoError::InvalidReply);
            }
            depth += 1;
            owed[depth] = children;
            continue;
        }
        // One value finished: pop every aggregate it completes.
        loop {
            if depth == 0 {
                return Ok(Some(pos));
            }
            owed[depth] -= 1;
            if owed[depth] > 0 {
                break;
            }
            depth -= 1;
        }
    }
}

/// [`reply_len`] of a reply that is not an aggregate.
fn scalar_len(buf: &[u8]) -> Result<Option<usize>, ProtoError> {
    let Some((end, next)) = line(buf, 0) else {
        return Ok(None);
    };
    match buf[0] {
        b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => Ok(Some(next)),
        b'$' | b'=' | b'!' => {
            let n = header_int(&buf[1..end])?;
            if n < 0 {
                return Ok(Some(next));
            }
            let n = usize::try_from(n).map_err(|_| ProtoError::InvalidReply)?;
            let after = next + n + 2;
            Ok((buf.len() >= after).then_some(after))
        }
        _ => Err(ProtoError::InvalidReply),
    }
}

/// The header of an array/set/push reply at the front of `buf`: (element count, header
/// length). `None` for other reply types, null arrays or an incomplete header.
pub fn array_header(buf: &[u8]) -> Option<(usize, usize)> {
    if !matches!(buf.first(), Some(b'*' | b'~' | b'>')) {
        return None;
    }
    let (end, next) = line(buf, 0)?;
    let n = header_int(&buf[1..end]).ok()?;
    Some((usize::try_from(n).ok()?, next))
}

/// The integer of an integer reply (`:12\r\n`), if `buf` is exactly one.
pub fn integer(buf: &[u8]) -> Option<i64> {
    if buf.first() != Some(&b':') {
        return None;
    }
    let (end, _) = line(buf, 0)?;
    header_int(&buf[1..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(b: &[u8]) {
        assert_eq!(
            reply_len(b),
            Ok(Some(b.len())),
            "{:?}",
            String::from_utf8_lossy(b)
        );
        for cut in 0..b.len() {
            assert_eq!(reply_len(&b[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn scalars_and_aggregates() {
        for b in [
            &b"+OK\r\n"[..],
            b"-ERR x\r\n",
            b":-12\r\n",
            b"$3\r\nfoo\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"_\r\n",
            b"#t\r\n",
            b",1.5\r\n",
            b"(123\r\n",
            b"=8\r\ntxt:abcd\r\n",
            b"*2\r\n$1\r\na\r\n*2\r\n:1\r\n$-1\r\n",
            b"%2\r\n+a\r\n:1\r\n+b\r\n*1\r\n:2\r\n",
            b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
            b"|1\r\n+k\r\n+v\r\n:5\r\n",
            b"*3\r\n*0\r\n*1\r\n*0\r\n$0\r\n\r\n",
        ] {
            whole(b);
        }
    }

    #[test]
    fn trailing_bytes_are_not_consumed() {
        assert_eq!(reply_len(b"+OK\r\n:1\r\n"), Ok(Some(5)));
        assert_eq!(reply_len(b"*1\r\n+a\r\n+b\r\n"), Ok(Some(8)));
    }

    #[test]
    fn garbage_and_depth_are_errors() {
        assert!(reply_len(b"?\r\n").is_err());
        assert!(reply_len(b"$x\r\n").is_err());
        let deep = b"*1\r\n".repeat(MAX_DEPTH + 1);
        assert!(reply_len(&deep).is_err());
    }

    #[test]
    fn headers() {
        assert_eq!(array_header(b"*3\r\n"), Some((3, 4)));
        assert_eq!(array_header(b"*-1\r\n"), None);
        assert_eq!(array_header(b"+OK\r\n"), None);
        assert_eq!(integer(b":42\r\n"), Some(42));
        assert_eq!(integer(b"+42\r\n"), None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = reply_len(&bytes);
            let _ = array_header(&bytes);
        }
    }
}
