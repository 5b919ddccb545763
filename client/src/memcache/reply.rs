//! memcached replies: server-side writers into a `BytesMut`, and a small client-side
//! response parser (benchmark, tests).

use bytes::{BufMut, BytesMut};

/// `STORED`.
pub const STORED: &[u8] = b"STORED\r\n";
/// `NOT_STORED`.
pub const NOT_STORED: &[u8] = b"NOT_STORED\r\n";
/// `EXISTS`.
pub const EXISTS: &[u8] = b"EXISTS\r\n";
/// `NOT_FOUND`.
pub const NOT_FOUND: &[u8] = b"NOT_FOUND\r\n";
/// `DELETED`.
pub const DELETED: &[u8] = b"DELETED\r\n";
/// `TOUCHED`.
pub const TOUCHED: &[u8] = b"TOUCHED\r\n";
/// `OK`.
pub const OK: &[u8] = b"OK\r\n";
/// `END`, closing a `get`-family reply.
pub const END: &[u8] = b"END\r\n";
/// `MN`, the meta no-op reply.
pub const MN: &[u8] = b"MN\r\n";

/// Appends a status line such as [`STORED`].
pub fn status(buf: &mut BytesMut, line: &[u8]) {
    buf.put_slice(line);
}

/// Appends `VALUE <key> <flags> <bytes>[ <cas>]\r\n<data>\r\n` (call [`end`] after the last).
pub fn value(buf: &mut BytesMut, key: &[u8], flags: u32, data: &[u8], cas: Option<u64>) {
    let mut itoa = itoa::Buffer::new();
    buf.reserve(key.len() + data.len() + 64);
    buf.put_slice(b"VALUE ");
    buf.put_slice(key);
    buf.put_u8(b' ');
    buf.put_slice(itoa.format(flags).as_bytes());
    buf.put_u8(b' ');
    buf.put_slice(itoa.format(data.len()).as_bytes());
    if let Some(cas) = cas {
        buf.put_u8(b' ');
        buf.put_slice(itoa.format(cas).as_bytes());
    }
    buf.put_slice(b"\r\n");
    buf.put_slice(data);
    buf.put_slice(b"\r\n");
}

/// Appends `END\r\n`.
pub fn end(buf: &mut BytesMut) {
    buf.put_slice(END);
}

/// Appends the decimal result of `incr`/`decr` (`<n>\r\n`).
pub fn number(buf: &mut BytesMut, n: u64) {
    let mut itoa = itoa::Buffer::new();
    buf.put_slice(itoa.format(n).as_bytes());
    buf.put_slice(b"\r\n");
}

/// Appends `STAT <name> <value>\r\n` (finish with [`end`]).
pub fn stat(buf: &mut BytesMut, name: &[u8], value: &[u8]) {
    buf.reserve(name.len() + value.len() + 8);
    buf.put_slice(b"STAT ");
    buf.put_slice(name);
    buf.put_u8(b' ');
    buf.put_slice(value);
    buf.put_slice(b"\r\n");
}

/// Appends `VERSION <v>\r\n`.
pub fn version(buf: &mut BytesMut, v: &[u8]) {
    buf.put_slice(b"VERSION ");
    buf.put_slice(v);
    buf.put_slice(b"\r\n");
}

/// Builds one meta reply line: a two-letter code (`VA <len>`, `HD`, `EN`, `NF`, `NS`, `EX`),
/// then return flags, each ` <char><token>` as memcached writes them, e.g.
/// `VA 2 f0 t-1 c5 s2 kfoo Oabc`.
///
/// ```
/// use bytes::BytesMut;
/// use shoal_client::memcache::reply::MetaReply;
/// let mut buf = BytesMut::new();
/// let mut r = MetaReply::value(&mut buf, 2);
/// r.flag_int(b'f', 0);
/// r.flag_int(b't', -1);
/// r.flag(b'k', b"foo");
/// r.finish_with_data(b"hi");
/// assert_eq!(&buf[..], b"VA 2 f0 t-1 kfoo\r\nhi\r\n");
/// ```
#[derive(Debug)]
pub struct MetaReply<'a> {
    buf: &'a mut BytesMut,
}

impl<'a> MetaReply<'a> {
    /// Starts a line with `code` (`HD`, `EN`, `NF`, `NS`, `EX`).
    pub fn start(buf: &'a mut BytesMut, code: &[u8; 2]) -> Self {
        buf.put_slice(code);
        Self { buf }
    }

    /// Starts a `VA <len>` line.
    pub fn value(buf: &'a mut BytesMut, len: usize) -> Self {
        let mut itoa = itoa::Buffer::new();
        buf.put_slice(b"VA ");
        buf.put_slice(itoa.format(len).as_bytes());
        Self { buf }
    }

    /// Appends ` <flag><token>`.
    pub fn flag(&mut self, flag: u8, token: &[u8]) -> &mut Self {
        self.buf.reserve(token.len() + 2);
        self.buf.put_u8(b' ');
        self.buf.put_u8(flag);
        self.buf.put_slice(token);
        self
    }

    /// Appends ` <flag><n>`.
    pub fn flag_int(&mut self, flag: u8, n: i64) -> &mut Self {
        let mut itoa = itoa::Buffer::new();
        let s = itoa.format(n).as_bytes();
        self.buf.put_u8(b' ');
        self.buf.put_u8(flag);
        self.buf.put_slice(s);
        self
    }

    /// Appends ` <flag><n>` for unsigned values (CAS).
    pub fn flag_uint(&mut self, flag: u8, n: u64) -> &mut Self {
        let mut itoa = itoa::Buffer::new();
        let s = itoa.format(n).as_bytes();
        self.buf.put_u8(b' ');
        self.buf.put_u8(flag);
        self.buf.put_slice(s);
        self
    }

    /// Ends the line.
    pub fn finish(self) {
        self.buf.put_slice(b"\r\n");
    }

    /// Ends a `VA` line and appends the data block.
    pub fn finish_with_data(self, data: &[u8]) {
        self.buf.reserve(data.len() + 4);
        self.buf.put_slice(b"\r\n");
        self.buf.put_slice(data);
        self.buf.put_slice(b"\r\n");
    }
}

/// One `VALUE` block of a client-side [`Response::Values`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct McValue {
    /// The key.
    pub key: Vec<u8>,
    /// Client flags.
    pub flags: u32,
    /// The data.
    pub data: Vec<u8>,
    /// CAS (for `gets`/`gats`).
    pub cas: Option<u64>,
}

/// A client-side view of one memcached response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// Zero or more `VALUE` blocks terminated by `END`.
    Values(Vec<McValue>),
    /// `STAT` lines terminated by `END`: (name, value).
    Stats(Vec<(Vec<u8>, Vec<u8>)>),
    /// A single status line without the CRLF: `STORED`, `NOT_FOUND`, `ERROR`,
    /// `CLIENT_ERROR …`, `SERVER_ERROR …`, `VERSION …`, `OK`, `HD …`, `EN`, `MN`, …
    Line(Vec<u8>),
    /// The decimal result of `incr`/`decr`.
    Number(u64),
    /// A meta `VA <len> <flags>` line and its data block.
    MetaValue {
        /// The return flags after the length, space separated (may be empty).
        flags: Vec<u8>,
        /// The data.
        data: Vec<u8>,
    },
}

fn line_at(buf: &[u8], from: usize) -> Option<(&[u8], usize)> {
    let rel = memchr::memmem::find(&buf[from..], b"\r\n")?;
    Some((&buf[from..from + rel], from + rel + 2))
}

fn parse_num<T: std::str::FromStr>(b: &[u8]) -> Option<T> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// Parses one response from the front of `buf`, returning it and the bytes it used, or
/// `None` when incomplete. Unrecognised lines come back as [`Response::Line`].
pub fn decode_response(buf: &[u8]) -> Option<(Response, usize)> {
    let (first, mut pos) = line_at(buf, 0)?;
    if first.starts_with(b"VALUE ") || first == b"END" {
        let mut values = Vec::new();
        let mut line = first;
        loop {
            if line == b"END" {
                return Some((Response::Values(values), pos));
            }
            let mut parts = line.split(|&c| c == b' ').skip(1);
            let key = parts.next().unwrap_or_default().to_vec();
            let flags = parts.next().and_then(parse_num).unwrap_or(0);
            let len: usize = parts.next().and_then(parse_num).unwrap_or(0);
            let cas = parts.next().and_then(parse_num);
            if buf.len() < pos + len + 2 {
                return None;
            }
            values.push(McValue {
                key,
                flags,
                data: buf[pos..pos + len].to_vec(),
                cas,
            });
            pos += len + 2;
            (line, pos) = line_at(buf, pos)?;
        }
    }
    if first.starts_with(b"STAT ") {
        let mut stats = Vec::new();
        let mut line = first;
        loop {
            if line == b"END" {
                return Some((Response::Stats(stats), pos));
            }
            let rest = &line[5..];
            let sp = rest.iter().position(|&c| c == b' ').unwrap_or(rest.len());
            stats.push((
                rest[..sp].to_vec(),
                rest.get(sp + 1..).unwrap_or_default().to_vec(),
            ));
            (line, pos) = line_at(buf, pos)?;
        }
    }
    if let Some(rest) = first.strip_prefix(b"VA ") {
        let sp = rest.iter().position(|&c| c == b' ').unwrap_or(rest.len());
        let len: usize = parse_num(&rest[..sp])?;
        if buf.len() < pos + len + 2 {
            return None;
        }
        let flags = rest.get(sp + 1..).unwrap_or_default().to_vec();
        let data = buf[pos..pos + len].to_vec();
        return Some((Response::MetaValue { flags, data }, pos + len + 2));
    }
    if !first.is_empty() && first.iter().all(u8::is_ascii_digit) {
        if let Some(n) = parse_num(first) {
            return Some((Response::Number(n), pos));
        }
    }
    Some((Response::Line(first.to_vec()), pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers() {
        let mut b = BytesMut::new();
        value(&mut b, b"foo", 5, b"bar", None);
        value(&mut b, b"k", 0, b"", Some(42));
        end(&mut b);
        assert_eq!(
            &b[..],
            b"VALUE foo 5 3\r\nbar\r\nVALUE k 0 0 42\r\n\r\nEND\r\n"
        );
        let mut b = BytesMut::new();
        let mut r = MetaReply::value(&mut b, 2);
        r.flag_int(b'f', 0)
            .flag_int(b't', -1)
            .flag_uint(b'c', 5)
            .flag_int(b's', 2)
            .flag(b'k', b"foo")
            .flag(b'O', b"abc");
        r.finish_with_data(b"hi");
        MetaReply::start(&mut b, b"HD").finish();
        MetaReply::start(&mut b, b"EN").finish();
        status(&mut b, MN);
        number(&mut b, 7);
        assert_eq!(
            &b[..],
            b"VA 2 f0 t-1 c5 s2 kfoo Oabc\r\nhi\r\nHD\r\nEN\r\nMN\r\n7\r\n"
        );
        let (r, n) = decode_response(&b).unwrap();
        assert_eq!(
            r,
            Response::MetaValue {
                flags: b"f0 t-1 c5 s2 kfoo Oabc".to_vec(),
                data: b"hi".to_vec()
            }
        );
        let (r, m) = decode_response(&b[n..]).unwrap();
        assert_eq!(r, Response::Line(b"HD".to_vec()));
        let rest = &b[n + m..];
        let (_, k) = decode_response(rest).unwrap();
        let (_, j) = decode_response(&rest[k..]).unwrap();
        assert_eq!(
            decode_response(&rest[k + j..]),
            Some((Response::Number(7), 3))
        );
    }

    #[test]
    fn parse_values_split_everywhere() {
        let bytes = b"VALUE foo 5 3 9\r\nbar\r\nVALUE k 0 0\r\n\r\nEND\r\n";
        for k in 0..bytes.len() {
            assert_eq!(decode_response(&bytes[..k]), None, "{k}");
        }
        assert_eq!(
            decode_response(bytes),
            Some((
                Response::Values(vec![
                    McValue {
                        key: b"foo".to_vec(),
                        flags: 5,
                        data: b"bar".to_vec(),
                        cas: Some(9)
                    },
                    McValue {
                        key: b"k".to_vec(),
                        flags: 0,
                        data: vec![],
                        cas: None
                    },
                ]),
                bytes.len()
            ))
        );
        assert_eq!(
            decode_response(b"STAT pid 1\r\nSTAT x y z\r\nEND\r\n"),
            Some((
                Response::Stats(vec![
                    (b"pid".to_vec(), b"1".to_vec()),
                    (b"x".to_vec(), b"y z".to_vec())
                ]),
                29
            ))
        );
    }
}
