//! Response framing without decoding, for the proxy: where does the memcached response at
//! the front of a buffer end, and where are the `VALUE` blocks of a multi-get?
//!
//! A response is one of: `VALUE` blocks up to `END`, `STAT` lines up to `END`, a meta `VA`
//! line with its data block, or a single line (`STORED`, `HD`, `EN`, a number, an error…).
//! That shape is visible from the first line alone, so no knowledge of the request is needed.

/// The line starting at `from`: (content end, index after CRLF).
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

fn parse_len(tok: &[u8]) -> Option<usize> {
    if tok.is_empty() || tok.len() > 12 || !tok.iter().all(u8::is_ascii_digit) {
        return None;
    }
    tok.iter()
        .try_fold(0usize, |n, &c| Some(n * 10 + usize::from(c - b'0')))
}

/// One `VALUE <key> <flags> <bytes> [<cas>]` block found by [`value_block`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValueBlock {
    /// Byte range of the key within the buffer.
    pub key: (usize, usize),
    /// Index just past the block (header, data and CRLF).
    pub end: usize,
}

/// Parses the `VALUE` block starting at `from`. `Ok(None)` when incomplete, `Err(())` when
/// the line at `from` is not a well-formed `VALUE` header.
#[allow(clippy::result_unit_err)]
pub fn value_block(buf: &[u8], from: usize) -> Result<Option<ValueBlock>, ()> {
    let Some((end, next)) = line(buf, from) else {
        return Ok(None);
    };
    let l = &buf[from..end];
    let rest = l.strip_prefix(b"VALUE ").ok_or(())?;
    let mut toks = rest.split(|&c| c == b' ');
    let key = toks.next().ok_or(())?;
    let _flags = toks.next().ok_or(())?;
    let len = toks.next().and_then(parse_len).ok_or(())?;
    let key_start = from + 6;
    let block_end = next + len + 2;
    if buf.len() < block_end {
        return Ok(None);
    }
    Ok(Some(ValueBlock {
        key: (key_start, key_start + key.len()),
        end: block_end,
    }))
}

/// Length of the complete response at the front of `buf`, or `None` when more bytes are
/// needed. Malformed `VALUE`/`VA` headers end the response at that line (the caller passes
/// such bytes through; a backend does not send them).
pub fn response_len(buf: &[u8]) -> Option<usize> {
    let (end, next) = line(buf, 0)?;
    let first = &buf[..end];
    if first.starts_with(b"VALUE ") {
        let mut pos = 0;
        loop {
            match value_block(buf, pos) {
                Ok(Some(b)) => pos = b.end,
                Ok(None) => return None,
                Err(()) => {
                    // END (or an error line after some values) closes the response.
                    let (_, after) = line(buf, pos)?;
                    return Some(after);
                }
            }
        }
    }
    if first.starts_with(b"STAT ") {
        let mut pos = next;
        loop {
            let (e, n) = line(buf, pos)?;
            if !buf[pos..e].starts_with(b"STAT ") {
                return Some(n);
            }
            pos = n;
        }
    }
    if let Some(rest) = first.strip_prefix(b"VA ") {
        let tok = rest.split(|&c| c == b' ').next().unwrap_or_default();
        return match parse_len(tok) {
            Some(len) => (buf.len() >= next + len + 2).then_some(next + len + 2),
            None => Some(next),
        };
    }
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(b: &[u8]) {
        assert_eq!(
            response_len(b),
            Some(b.len()),
            "{:?}",
            String::from_utf8_lossy(b)
        );
        for cut in 0..b.len() {
            assert_eq!(response_len(&b[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn shapes() {
        whole(b"STORED\r\n");
        whole(b"END\r\n");
        whole(b"VALUE a 0 3\r\nEND\r\nEND\r\n");
        whole(b"VALUE a 5 1 99\r\nx\r\nVALUE bb 0 0\r\n\r\nEND\r\n");
        whole(b"STAT pid 1\r\nSTAT uptime 2\r\nEND\r\n");
        whole(b"VA 2 f0 c5\r\nhi\r\n");
        whole(b"HD c5\r\n");
        whole(b"42\r\n");
    }

    #[test]
    fn blocks() {
        let b = b"VALUE key 0 2\r\nab\r\nEND\r\n";
        let v = value_block(b, 0).unwrap().unwrap();
        assert_eq!(&b[v.key.0..v.key.1], b"key");
        assert_eq!(&b[v.end..], b"END\r\n");
        assert_eq!(value_block(b, v.end), Err(()));
    }
}
