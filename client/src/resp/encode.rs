//! Server-side reply encoding in the connection's protocol version.

use bytes::{BufMut, BytesMut};

use super::float::fmt_g17;

/// The RESP version a connection speaks (`HELLO 2` / `HELLO 3`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Proto {
    /// RESP2, the default for new connections.
    Resp2,
    /// RESP3.
    Resp3,
}

/// Writes replies into an output buffer in the connection's protocol version.
///
/// Aggregate headers (`array`, `map`, `set`, `push`) only write the header; the caller then
/// writes exactly that many elements (twice `pairs` for `map`).
#[derive(Debug)]
pub struct ReplyWriter<'a> {
    /// The connection's output buffer.
    pub buf: &'a mut BytesMut,
    /// The connection's protocol version.
    pub proto: Proto,
}

impl<'a> ReplyWriter<'a> {
    /// A writer appending to `buf`.
    pub fn new(buf: &'a mut BytesMut, proto: Proto) -> Self {
        Self { buf, proto }
    }
}

impl ReplyWriter<'_> {
    #[inline]
    fn header(&mut self, prefix: u8, n: u64) {
        let mut itoa = itoa::Buffer::new();
        let s = itoa.format(n).as_bytes();
        self.buf.reserve(s.len() + 3);
        self.buf.put_u8(prefix);
        self.buf.put_slice(s);
        self.buf.put_slice(b"\r\n");
    }

    #[inline]
    fn line(&mut self, prefix: u8, s: &[u8]) {
        self.buf.reserve(s.len() + 3);
        self.buf.put_u8(prefix);
        self.buf.put_slice(s);
        self.buf.put_slice(b"\r\n");
    }

    /// `+OK`.
    pub fn ok(&mut self) {
        self.buf.put_slice(b"+OK\r\n");
    }

    /// `+s` (a simple string; must not contain CR or LF).
    pub fn simple(&mut self, s: &[u8]) {
        self.line(b'+', s);
    }

    /// `-msg`, where `msg` includes the code, e.g. `b"ERR syntax error"`.
    pub fn error(&mut self, msg: &[u8]) {
        self.line(b'-', msg);
    }

    /// `:n`.
    pub fn int(&mut self, n: i64) {
        let mut itoa = itoa::Buffer::new();
        let s = itoa.format(n).as_bytes();
        self.line(b':', s);
    }

    /// `$len\r\nb\r\n`.
    pub fn bulk(&mut self, b: &[u8]) {
        self.buf.reserve(b.len() + 16);
        self.header(b'$', b.len() as u64);
        self.buf.put_slice(b);
        self.buf.put_slice(b"\r\n");
    }

    /// A missing value: RESP2 `$-1`, RESP3 `_`.
    pub fn null(&mut self) {
        self.buf.put_slice(match self.proto {
            Proto::Resp2 => b"$-1\r\n",
            Proto::Resp3 => b"_\r\n",
        });
    }

    /// A missing aggregate: RESP2 `*-1`, RESP3 `_`.
    pub fn null_array(&mut self) {
        self.buf.put_slice(match self.proto {
            Proto::Resp2 => b"*-1\r\n",
            Proto::Resp3 => b"_\r\n",
        });
    }

    /// `*len` header.
    pub fn array(&mut self, len: usize) {
        self.header(b'*', len as u64);
    }

    /// Map header: RESP3 `%pairs`, RESP2 `*2·pairs` (a flat key/value array).
    pub fn map(&mut self, pairs: usize) {
        match self.proto {
            Proto::Resp2 => self.header(b'*', pairs as u64 * 2),
            Proto::Resp3 => self.header(b'%', pairs as u64),
        }
    }

    /// Set header: RESP3 `~len`, RESP2 `*len`.
    pub fn set(&mut self, len: usize) {
        match self.proto {
            Proto::Resp2 => self.header(b'*', len as u64),
            Proto::Resp3 => self.header(b'~', len as u64),
        }
    }

    /// Push header: RESP3 `>len`, RESP2 `*len` (pub/sub messages).
    pub fn push(&mut self, len: usize) {
        match self.proto {
            Proto::Resp2 => self.header(b'*', len as u64),
            Proto::Resp3 => self.header(b'>', len as u64),
        }
    }

    /// A double as Redis 7.0 renders it (`%.17g`, `inf`, `-inf`): RESP3 `,text`, RESP2 a
    /// bulk string of the same text.
    pub fn double(&mut self, d: f64) {
        let mut tmp = [0u8; 32];
        let n = fmt_g17(d, &mut tmp);
        match self.proto {
            Proto::Resp2 => self.bulk(&tmp[..n]),
            Proto::Resp3 => self.line(b',', &tmp[..n]),
        }
    }

    /// RESP3 `#t`/`#f`, RESP2 `:1`/`:0`.
    pub fn boolean(&mut self, b: bool) {
        self.buf.put_slice(match (self.proto, b) {
            (Proto::Resp2, true) => b":1\r\n",
            (Proto::Resp2, false) => b":0\r\n",
            (Proto::Resp3, true) => b"#t\r\n",
            (Proto::Resp3, false) => b"#f\r\n",
        });
    }

    /// RESP3 verbatim string `=len\r\nfmt:text\r\n`, RESP2 a bulk string of `text`.
    pub fn verbatim(&mut self, fmt: &[u8; 3], text: &[u8]) {
        match self.proto {
            Proto::Resp2 => self.bulk(text),
            Proto::Resp3 => {
                self.buf.reserve(text.len() + 20);
                self.header(b'=', text.len() as u64 + 4);
                self.buf.put_slice(fmt);
                self.buf.put_u8(b':');
                self.buf.put_slice(text);
                self.buf.put_slice(b"\r\n");
            }
        }
    }

    /// A bulk string holding the decimal text of `n` (no allocation).
    pub fn bulk_int(&mut self, n: i64) {
        let mut itoa = itoa::Buffer::new();
        let s = itoa.format(n).as_bytes();
        self.bulk(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(proto: Proto, f: impl FnOnce(&mut ReplyWriter<'_>)) -> Vec<u8> {
        let mut buf = BytesMut::new();
        f(&mut ReplyWriter::new(&mut buf, proto));
        buf.to_vec()
    }

    #[test]
    fn literal_replies() {
        use Proto::{Resp2 as R2, Resp3 as R3};
        assert_eq!(out(R2, |w| w.ok()), b"+OK\r\n");
        assert_eq!(out(R2, |w| w.simple(b"PONG")), b"+PONG\r\n");
        assert_eq!(
            out(R2, |w| w.error(b"ERR syntax error")),
            b"-ERR syntax error\r\n"
        );
        assert_eq!(out(R2, |w| w.int(-42)), b":-42\r\n");
        assert_eq!(out(R2, |w| w.int(i64::MIN)), b":-9223372036854775808\r\n");
        assert_eq!(out(R2, |w| w.bulk(b"bar")), b"$3\r\nbar\r\n");
        assert_eq!(out(R2, |w| w.bulk(b"")), b"$0\r\n\r\n");
        assert_eq!(out(R2, |w| w.null()), b"$-1\r\n");
        assert_eq!(out(R3, |w| w.null()), b"_\r\n");
        assert_eq!(out(R2, |w| w.null_array()), b"*-1\r\n");
        assert_eq!(out(R3, |w| w.null_array()), b"_\r\n");
        assert_eq!(out(R2, |w| w.array(3)), b"*3\r\n");
        assert_eq!(out(R2, |w| w.map(2)), b"*4\r\n");
        assert_eq!(out(R3, |w| w.map(2)), b"%2\r\n");
        assert_eq!(out(R2, |w| w.set(2)), b"*2\r\n");
        assert_eq!(out(R3, |w| w.set(2)), b"~2\r\n");
        assert_eq!(out(R2, |w| w.push(3)), b"*3\r\n");
        assert_eq!(out(R3, |w| w.push(3)), b">3\r\n");
        // Checked against redis-server 7.0.15: ZADD z 1.1 a; ZSCORE z a (HELLO 2 / HELLO 3).
        assert_eq!(out(R2, |w| w.double(1.1)), b"$18\r\n1.1000000000000001\r\n");
        assert_eq!(out(R3, |w| w.double(1.1)), b",1.1000000000000001\r\n");
        assert_eq!(out(R2, |w| w.double(f64::INFINITY)), b"$3\r\ninf\r\n");
        assert_eq!(out(R3, |w| w.double(f64::NEG_INFINITY)), b",-inf\r\n");
        assert_eq!(out(R3, |w| w.double(2.0)), b",2\r\n");
        assert_eq!(out(R2, |w| w.boolean(true)), b":1\r\n");
        assert_eq!(out(R3, |w| w.boolean(false)), b"#f\r\n");
        assert_eq!(
            out(R3, |w| w.verbatim(b"txt", b"hello")),
            b"=9\r\ntxt:hello\r\n"
        );
        assert_eq!(
            out(R2, |w| w.verbatim(b"txt", b"hello")),
            b"$5\r\nhello\r\n"
        );
        assert_eq!(out(R2, |w| w.bulk_int(-17)), b"$3\r\n-17\r\n");
    }
}
