//! Request templates and framing-only reply scanners for RESP and the
//! memcached text protocol.
//!
//! Requests are built from a template made once per (protocol, command): the
//! only per-request work is copying the template and overwriting the ten
//! key digits in place. Replies are never decoded into values: the scanners
//! only walk the framing far enough to know where a reply ends and whether it
//! was a hit, a miss, an acknowledgement or an error.

use memchr::memchr;

/// Number of zero-padded decimal digits in every key (`key:%010d`).
pub const KEY_DIGITS: usize = 10;
/// Largest key number that fits in [`KEY_DIGITS`] digits.
pub const KEY_NUMBER_MAX: u64 = 9_999_999_999;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Resp,
    Memcache,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Set,
    Get,
}

/// What a complete reply meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyKind {
    /// A GET that returned a value.
    Hit,
    /// A GET that returned nothing.
    Miss,
    /// A successful acknowledgement (`+OK`, `STORED`, an integer, ...).
    Ack,
    /// An error reply (`-ERR ...`, `SERVER_ERROR ...`, `ERROR`, ...).
    Error,
}

/// The byte stream broke the protocol's framing: the connection is unusable.
#[derive(Debug)]
pub struct FramingError(pub String);

impl std::fmt::Display for FramingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reply framing error: {}", self.0)
    }
}

impl std::error::Error for FramingError {}

/// A request with a hole for the key digits.
#[derive(Clone, Debug)]
struct Template {
    bytes: Vec<u8>,
    digits_at: usize,
}

impl Template {
    #[inline]
    fn push(&self, out: &mut Vec<u8>, key: u64) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        let at = start + self.digits_at;
        write_key_digits(&mut out[at..at + KEY_DIGITS], key);
    }
}

/// Writes `n` as exactly [`KEY_DIGITS`] zero-padded decimal digits.
#[inline]
pub fn write_key_digits(dst: &mut [u8], mut n: u64) {
    debug_assert!(n <= KEY_NUMBER_MAX);
    for slot in dst[..KEY_DIGITS].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// The full key for number `n`, e.g. `key:0000000042`.
#[cfg(test)]
pub fn key_for(prefix: &str, n: u64) -> Vec<u8> {
    let mut k = prefix.as_bytes().to_vec();
    let at = k.len();
    k.resize(at + KEY_DIGITS, b'0');
    write_key_digits(&mut k[at..], n);
    k
}

/// The SET and GET templates of one benchmark configuration.
#[derive(Clone, Debug)]
pub struct Requests {
    proto: Protocol,
    set: Template,
    get: Template,
}

/// The value bytes: a printable, repeating pattern of `size` bytes.
pub fn value_bytes(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

impl Requests {
    pub fn new(proto: Protocol, prefix: &str, data_size: usize) -> Self {
        let key_len = prefix.len() + KEY_DIGITS;
        let value = value_bytes(data_size);
        let placeholder = vec![b'0'; KEY_DIGITS];
        match proto {
            Protocol::Resp => {
                let mut set = Vec::with_capacity(64 + key_len + data_size);
                set.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$");
                set.extend_from_slice(key_len.to_string().as_bytes());
                set.extend_from_slice(b"\r\n");
                set.extend_from_slice(prefix.as_bytes());
                let set_digits = set.len();
                set.extend_from_slice(&placeholder);
                set.extend_from_slice(b"\r\n$");
                set.extend_from_slice(data_size.to_string().as_bytes());
                set.extend_from_slice(b"\r\n");
                set.extend_from_slice(&value);
                set.extend_from_slice(b"\r\n");

                let mut get = Vec::with_capacity(32 + key_len);
                get.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$");
                get.extend_from_slice(key_len.to_string().as_bytes());
                get.extend_from_slice(b"\r\n");
                get.extend_from_slice(prefix.as_bytes());
                let get_digits = get.len();
                get.extend_from_slice(&placeholder);
                get.extend_from_slice(b"\r\n");
                Requests {
                    proto,
                    set: Template {
                        bytes: set,
                        digits_at: set_digits,
                    },
                    get: Template {
                        bytes: get,
                        digits_at: get_digits,
                    },
                }
            }
            Protocol::Memcache => {
                let mut set = Vec::with_capacity(32 + key_len + data_size);
                set.extend_from_slice(b"set ");
                set.extend_from_slice(prefix.as_bytes());
                let set_digits = set.len();
                set.extend_from_slice(&placeholder);
                set.extend_from_slice(b" 0 0 ");
                set.extend_from_slice(data_size.to_string().as_bytes());
                set.extend_from_slice(b"\r\n");
                set.extend_from_slice(&value);
                set.extend_from_slice(b"\r\n");

                let mut get = Vec::with_capacity(8 + key_len);
                get.extend_from_slice(b"get ");
                get.extend_from_slice(prefix.as_bytes());
                let get_digits = get.len();
                get.extend_from_slice(&placeholder);
                get.extend_from_slice(b"\r\n");
                Requests {
                    proto,
                    set: Template {
                        bytes: set,
                        digits_at: set_digits,
                    },
                    get: Template {
                        bytes: get,
                        digits_at: get_digits,
                    },
                }
            }
        }
    }

    /// Appends one request for `op` on key number `key` to `out`.
    #[inline]
    pub fn push(&self, out: &mut Vec<u8>, op: Op, key: u64) {
        match op {
            Op::Set => self.set.push(out, key),
            Op::Get => self.get.push(out, key),
        }
    }

    /// Bytes of one request of each kind (for sizing buffers).
    pub fn max_request_len(&self) -> usize {
        self.set.bytes.len().max(self.get.bytes.len())
    }

    /// Scans one reply at the start of `buf`, the answer to a request `op`.
    /// `Ok(None)`: not complete yet. `Ok(Some((len, kind)))`: the reply takes
    /// `len` bytes.
    #[inline]
    pub fn scan(&self, buf: &[u8], op: Op) -> Result<Option<(usize, ReplyKind)>, FramingError> {
        match self.proto {
            Protocol::Resp => scan_resp(buf),
            Protocol::Memcache => scan_memcache(buf, op),
        }
    }
}

/// Parses a signed decimal integer of a header line (no allocation).
#[inline]
fn parse_int(digits: &[u8]) -> Result<i64, FramingError> {
    let (neg, rest) = match digits.first() {
        Some(b'-') => (true, &digits[1..]),
        _ => (false, digits),
    };
    if rest.is_empty() || rest.len() > 18 {
        return Err(FramingError(format!(
            "bad length {:?}",
            String::from_utf8_lossy(digits)
        )));
    }
    let mut v: i64 = 0;
    for &b in rest {
        if !b.is_ascii_digit() {
            return Err(FramingError(format!(
                "bad length {:?}",
                String::from_utf8_lossy(digits)
            )));
        }
        v = v * 10 + i64::from(b - b'0');
    }
    Ok(if neg { -v } else { v })
}

/// End of the first line (index of its `\r`), or `None` if no full line yet.
#[inline]
fn line_end(buf: &[u8]) -> Result<Option<usize>, FramingError> {
    match memchr(b'\n', buf) {
        None => Ok(None),
        Some(0) => Err(FramingError("bare LF".into())),
        Some(nl) if buf[nl - 1] != b'\r' => Err(FramingError("LF without CR".into())),
        Some(nl) => Ok(Some(nl - 1)),
    }
}

/// Scans one RESP2/RESP3 reply. Aggregates are walked element by element.
pub fn scan_resp(buf: &[u8]) -> Result<Option<(usize, ReplyKind)>, FramingError> {
    scan_resp_depth(buf, 0)
}

fn scan_resp_depth(buf: &[u8], depth: usize) -> Result<Option<(usize, ReplyKind)>, FramingError> {
    if depth > 32 {
        return Err(FramingError("nesting too deep".into()));
    }
    let Some(&tag) = buf.first() else {
        return Ok(None);
    };
    let Some(cr) = line_end(buf)? else {
        return Ok(None);
    };
    let header = cr + 2;
    match tag {
        b'+' | b':' | b',' | b'#' | b'(' => Ok(Some((header, ReplyKind::Ack))),
        b'_' => Ok(Some((header, ReplyKind::Miss))),
        b'-' => Ok(Some((header, ReplyKind::Error))),
        b'$' | b'=' | b'!' => {
            let n = parse_int(&buf[1..cr])?;
            if n < 0 {
                return Ok(Some((header, ReplyKind::Miss)));
            }
            let total = header + n as usize + 2;
            if buf.len() < total {
                return Ok(None);
            }
            if &buf[total - 2..total] != b"\r\n" {
                return Err(FramingError("bulk string not followed by CRLF".into()));
            }
            let kind = if tag == b'!' {
                ReplyKind::Error
            } else {
                ReplyKind::Hit
            };
            Ok(Some((total, kind)))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = parse_int(&buf[1..cr])?;
            if n < 0 {
                return Ok(Some((header, ReplyKind::Miss)));
            }
            let elems = if tag == b'%' || tag == b'|' { n * 2 } else { n } as usize;
            let mut at = header;
            for _ in 0..elems {
                match scan_resp_depth(&buf[at..], depth + 1)? {
                    None => return Ok(None),
                    Some((len, _)) => at += len,
                }
            }
            Ok(Some((at, ReplyKind::Ack)))
        }
        other => Err(FramingError(format!(
            "unexpected RESP type byte 0x{other:02x}"
        ))),
    }
}

/// Scans one memcached text-protocol reply to a `set` or a single-key `get`.
pub fn scan_memcache(buf: &[u8], op: Op) -> Result<Option<(usize, ReplyKind)>, FramingError> {
    let Some(cr) = line_end(buf)? else {
        return Ok(None);
    };
    let line = &buf[..cr];
    let header = cr + 2;
    if op == Op::Get && line.starts_with(b"VALUE ") {
        // VALUE <key> <flags> <bytes> [<cas>]
        let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
        let bytes = fields.nth(3).ok_or_else(|| {
            FramingError(format!(
                "short VALUE line {:?}",
                String::from_utf8_lossy(line)
            ))
        })?;
        let n = parse_int(bytes)?;
        if n < 0 {
            return Err(FramingError("negative VALUE length".into()));
        }
        let data_end = header + n as usize;
        let total = data_end + 2 + 5;
        if buf.len() < total {
            return Ok(None);
        }
        if &buf[data_end..data_end + 2] != b"\r\n" {
            return Err(FramingError("value data not followed by CRLF".into()));
        }
        if &buf[data_end + 2..total] != b"END\r\n" {
            // A multi-value reply is never asked for: a second VALUE is a framing error here.
            return Err(FramingError("expected END after a single value".into()));
        }
        return Ok(Some((total, ReplyKind::Hit)));
    }
    let kind = match line {
        b"END" if op == Op::Get => ReplyKind::Miss,
        b"STORED" if op == Op::Set => ReplyKind::Ack,
        b"NOT_STORED" | b"EXISTS" | b"NOT_FOUND" => ReplyKind::Error,
        _ if line.starts_with(b"SERVER_ERROR")
            || line.starts_with(b"CLIENT_ERROR")
            || line == b"ERROR" =>
        {
            ReplyKind::Error
        }
        _ => {
            return Err(FramingError(format!(
                "unexpected memcache reply {:?} to {:?}",
                String::from_utf8_lossy(&line[..line.len().min(80)]),
                op
            )))
        }
    };
    Ok(Some((header, kind)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp_templates() {
        let r = Requests::new(Protocol::Resp, "key:", 3);
        let mut out = Vec::new();
        r.push(&mut out, Op::Set, 42);
        r.push(&mut out, Op::Get, 9_999_999_999);
        assert_eq!(
            out,
            b"*3\r\n$3\r\nSET\r\n$14\r\nkey:0000000042\r\n$3\r\nabc\r\n*2\r\n$3\r\nGET\r\n$14\r\nkey:9999999999\r\n"
        );
    }

    #[test]
    fn memcache_templates() {
        let r = Requests::new(Protocol::Memcache, "key:", 3);
        let mut out = Vec::new();
        r.push(&mut out, Op::Set, 7);
        r.push(&mut out, Op::Get, 7);
        assert_eq!(
            out,
            b"set key:0000000007 0 0 3\r\nabc\r\nget key:0000000007\r\n"
        );
        assert_eq!(key_for("key:", 7), b"key:0000000007");
    }

    #[test]
    fn resp_scan() {
        assert_eq!(scan_resp(b"+OK\r\n").unwrap(), Some((5, ReplyKind::Ack)));
        assert_eq!(scan_resp(b"+OK\r").unwrap(), None);
        assert_eq!(scan_resp(b"$-1\r\n").unwrap(), Some((5, ReplyKind::Miss)));
        assert_eq!(
            scan_resp(b"$3\r\nabc\r\n+OK").unwrap(),
            Some((9, ReplyKind::Hit))
        );
        assert_eq!(scan_resp(b"$3\r\nab").unwrap(), None);
        assert_eq!(
            scan_resp(b"-ERR x\r\n").unwrap(),
            Some((8, ReplyKind::Error))
        );
        assert_eq!(
            scan_resp(b"*2\r\n$1\r\na\r\n:1\r\n").unwrap(),
            Some((15, ReplyKind::Ack))
        );
        assert_eq!(scan_resp(b"*2\r\n$1\r\na\r\n").unwrap(), None);
        assert!(scan_resp(b"?\r\n").is_err());
        assert!(scan_resp(b"$3\r\nabcd\r\n").is_err());
    }

    #[test]
    fn memcache_scan() {
        assert_eq!(
            scan_memcache(b"STORED\r\n", Op::Set).unwrap(),
            Some((8, ReplyKind::Ack))
        );
        assert_eq!(
            scan_memcache(b"END\r\n", Op::Get).unwrap(),
            Some((5, ReplyKind::Miss))
        );
        let hit = b"VALUE key:0000000001 0 3\r\nabc\r\nEND\r\n";
        assert_eq!(
            scan_memcache(hit, Op::Get).unwrap(),
            Some((hit.len(), ReplyKind::Hit))
        );
        for cut in 0..hit.len() {
            assert_eq!(
                scan_memcache(&hit[..cut], Op::Get).unwrap(),
                None,
                "cut {cut}"
            );
        }
        assert_eq!(
            scan_memcache(b"SERVER_ERROR out of memory\r\n", Op::Set).unwrap(),
            Some((28, ReplyKind::Error))
        );
        assert!(scan_memcache(b"HUH\r\n", Op::Set).is_err());
    }
}
