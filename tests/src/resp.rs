//! A deliberately raw RESP2/RESP3 client: it sends exact bytes and returns the exact bytes
//! of one complete reply. Only framing is parsed (to know where a reply ends).

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

/// Default time to wait for a reply before declaring a timeout.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(3);

/// A parsed RESP value, kept close to the wire (type byte + payload).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `+ - : _ # , (` : type byte and the line without CRLF.
    Line(u8, Vec<u8>),
    /// `$ ! =` : type byte and payload, `None` for `$-1`.
    Bulk(u8, Option<Vec<u8>>),
    /// `* ~ > %` : type byte and elements (maps are flattened k,v,k,v), `None` for `*-1`.
    Agg(u8, Option<Vec<Value>>),
    /// `|` attribute (flattened k,v pairs) followed by the real value.
    Attr(Vec<Value>, Box<Value>),
}

impl Value {
    /// The wire type byte of the value (the attribute's inner value for `|`).
    pub fn kind(&self) -> u8 {
        match self {
            Value::Line(t, _) | Value::Bulk(t, _) | Value::Agg(t, _) => *t,
            Value::Attr(_, v) => v.kind(),
        }
    }

    /// Integer payload for `:` replies.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Line(b':', l) => std::str::from_utf8(l).ok()?.parse().ok(),
            _ => None,
        }
    }

    /// Bytes payload for simple/bulk strings.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Line(_, l) => Some(l),
            Value::Bulk(_, Some(b)) => Some(b),
            _ => None,
        }
    }

    /// Elements of an aggregate (empty for null).
    pub fn elements(&self) -> Option<&[Value]> {
        match self {
            Value::Agg(_, Some(v)) => Some(v),
            Value::Agg(_, None) => Some(&[]),
            _ => None,
        }
    }

    /// Re-encodes the value in its original wire form.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Line(t, l) => {
                out.push(*t);
                out.extend_from_slice(l);
                out.extend_from_slice(b"\r\n");
            }
            Value::Bulk(t, None) => {
                out.push(*t);
                out.extend_from_slice(b"-1\r\n");
            }
            Value::Bulk(t, Some(b)) => {
                out.push(*t);
                out.extend_from_slice(format!("{}\r\n", b.len()).as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Value::Agg(t, None) => {
                out.push(*t);
                out.extend_from_slice(b"-1\r\n");
            }
            Value::Agg(t, Some(items)) => {
                out.push(*t);
                let n = if *t == b'%' {
                    items.len() / 2
                } else {
                    items.len()
                };
                out.extend_from_slice(format!("{n}\r\n").as_bytes());
                for i in items {
                    i.encode(out);
                }
            }
            Value::Attr(kv, v) => {
                out.extend_from_slice(format!("|{}\r\n", kv.len() / 2).as_bytes());
                for i in kv {
                    i.encode(out);
                }
                v.encode(out);
            }
        }
    }

    /// Same shape: same type bytes, same aggregate lengths, scalars ignored.
    pub fn same_structure(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Agg(a, Some(x)), Value::Agg(b, Some(y))) => {
                a == b && x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.same_structure(q))
            }
            (Value::Bulk(a, x), Value::Bulk(b, y)) => a == b && x.is_some() == y.is_some(),
            (Value::Attr(_, x), Value::Attr(_, y)) => x.same_structure(y),
            _ => {
                self.kind() == other.kind()
                    && std::mem::discriminant(self) == std::mem::discriminant(other)
            }
        }
    }
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| from + p)
}

fn parse_len(line: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| format!("bad length {:?}", String::from_utf8_lossy(line)))
}

/// Parses one value at `pos`. `Ok(None)` = incomplete; `Err` = not RESP.
pub fn parse_at(buf: &[u8], pos: usize) -> Result<Option<(Value, usize)>, String> {
    let Some(&t) = buf.get(pos) else {
        return Ok(None);
    };
    let Some(eol) = find_crlf(buf, pos + 1) else {
        return Ok(None);
    };
    let line = &buf[pos + 1..eol];
    let next = eol + 2;
    match t {
        b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => {
            Ok(Some((Value::Line(t, line.to_vec()), next)))
        }
        b'$' | b'!' | b'=' => {
            let n = parse_len(line)?;
            if n < 0 {
                return Ok(Some((Value::Bulk(t, None), next)));
            }
            let end = next + n as usize;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            Ok(Some((
                Value::Bulk(t, Some(buf[next..end].to_vec())),
                end + 2,
            )))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = parse_len(line)?;
            if n < 0 {
                return Ok(Some((Value::Agg(t, None), next)));
            }
            let count = if t == b'%' || t == b'|' { 2 * n } else { n };
            let mut items = Vec::with_capacity(count.min(1024) as usize);
            let mut p = next;
            for _ in 0..count {
                match parse_at(buf, p)? {
                    Some((v, q)) => {
                        items.push(v);
                        p = q;
                    }
                    None => return Ok(None),
                }
            }
            if t == b'|' {
                return match parse_at(buf, p)? {
                    Some((v, q)) => Ok(Some((Value::Attr(items, Box::new(v)), q))),
                    None => Ok(None),
                };
            }
            Ok(Some((Value::Agg(t, Some(items)), p)))
        }
        other => Err(format!("unexpected RESP type byte {:?}", other as char)),
    }
}

/// Parses a complete reply held in `bytes` (as returned by [`RespConn::read_reply`]).
pub fn parse(bytes: &[u8]) -> Option<Value> {
    match parse_at(bytes, 0) {
        Ok(Some((v, n))) if n == bytes.len() => Some(v),
        _ => None,
    }
}

/// Encodes a command as a RESP multibulk array.
pub fn encode_command<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// What reading one reply produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read1 {
    /// The exact bytes of one complete reply.
    Reply(Vec<u8>),
    /// The peer closed the connection (any partial bytes included).
    Closed(Vec<u8>),
    /// Nothing complete arrived in time (partial bytes included).
    Timeout(Vec<u8>),
    /// The bytes are not RESP at all.
    Garbage(Vec<u8>, String),
}

impl Read1 {
    /// Printable description used in mismatch reports.
    pub fn describe(&self) -> String {
        match self {
            Read1::Reply(b) => crate::escape(b),
            Read1::Closed(b) if b.is_empty() => "<connection closed>".into(),
            Read1::Closed(b) => format!("<closed after partial {}>", crate::escape(b)),
            Read1::Timeout(b) if b.is_empty() => "<no reply (timeout)>".into(),
            Read1::Timeout(b) => format!("<timeout after partial {}>", crate::escape(b)),
            Read1::Garbage(b, e) => format!("<not RESP: {e}: {}>", crate::escape(b)),
        }
    }
}

/// A raw RESP connection.
pub struct RespConn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Reply timeout.
    pub timeout: Duration,
}

impl RespConn {
    /// Connects to `127.0.0.1:port`.
    pub fn connect(port: u16) -> RespConn {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}"));
        stream.set_nodelay(true).ok();
        RespConn {
            stream,
            buf: Vec::new(),
            timeout: REPLY_TIMEOUT,
        }
    }

    /// Writes raw bytes (errors are ignored: a closed peer shows up on read).
    pub fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// Sends one command as a multibulk array and reads one reply.
    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Read1 {
        self.send(&encode_command(args));
        self.read_reply()
    }

    /// Sends one command and returns the reply bytes, panicking on anything else.
    pub fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Vec<u8> {
        match self.cmd(args) {
            Read1::Reply(b) => b,
            other => panic!("no reply: {}", other.describe()),
        }
    }

    /// Reads into the buffer once; `Ok(false)` on EOF.
    fn fill(&mut self, deadline: Instant) -> std::io::Result<bool> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut tmp = [0u8; 16 * 1024];
        match self.stream.read(&mut tmp) {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                Ok(true)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(ErrorKind::TimedOut.into())
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(true),
            Err(_) => Ok(false), // reset etc.: treat like a close
        }
    }

    /// Reads exactly one complete reply, leaving any following bytes buffered.
    pub fn read_reply(&mut self) -> Read1 {
        let deadline = Instant::now() + self.timeout;
        loop {
            match parse_at(&self.buf, 0) {
                Ok(Some((_, n))) => return Read1::Reply(self.buf.drain(..n).collect()),
                Ok(None) => {}
                Err(e) => return Read1::Garbage(std::mem::take(&mut self.buf), e),
            }
            match self.fill(deadline) {
                Ok(true) => {}
                Ok(false) => return Read1::Closed(std::mem::take(&mut self.buf)),
                Err(_) => return Read1::Timeout(std::mem::take(&mut self.buf)),
            }
        }
    }

    /// After an error that should close the connection: `"closed"`, `"open"` (nothing
    /// arrived within `wait`) or a description of unexpected extra bytes.
    pub fn closed_state(&mut self, wait: Duration) -> String {
        if !self.buf.is_empty() {
            return format!(
                "extra bytes {}",
                crate::escape(&std::mem::take(&mut self.buf))
            );
        }
        let deadline = Instant::now() + wait;
        match self.fill(deadline) {
            Ok(false) => "closed".into(),
            Ok(true) => format!(
                "extra bytes {}",
                crate::escape(&std::mem::take(&mut self.buf))
            ),
            Err(_) => "still open".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPLIES: &[&[u8]] = &[
        b"+OK\r\n",
        b"-ERR x\r\n",
        b":-12\r\n",
        b"$-1\r\n",
        b"$0\r\n\r\n",
        b"$4\r\na\r\nb\r\n",
        b"*-1\r\n",
        b"*0\r\n",
        b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
        b"%1\r\n+k\r\n$1\r\nv\r\n",
        b"~1\r\n_\r\n",
        b">2\r\n+a\r\n,1.5\r\n",
        b"|1\r\n+a\r\n#t\r\n:1\r\n",
        b"=8\r\ntxt:abcd\r\n",
        b"(123\r\n",
    ];

    #[test]
    fn complete_replies_parse_and_reencode() {
        for r in REPLIES {
            let v = parse(r).unwrap_or_else(|| panic!("parse {}", crate::escape(r)));
            let mut out = Vec::new();
            v.encode(&mut out);
            assert_eq!(&out[..], *r);
        }
    }

    #[test]
    fn every_strict_prefix_is_incomplete() {
        for r in REPLIES {
            for cut in 0..r.len() {
                assert_eq!(
                    parse_at(&r[..cut], 0),
                    Ok(None),
                    "{} cut at {cut}",
                    crate::escape(r)
                );
            }
        }
    }

    #[test]
    fn pipelined_replies_split_exactly() {
        let all: Vec<u8> = REPLIES.concat();
        let mut pos = 0;
        for r in REPLIES {
            let (_, next) = parse_at(&all, pos).unwrap().unwrap();
            assert_eq!(&all[pos..next], *r);
            pos = next;
        }
        assert_eq!(pos, all.len());
        assert!(parse_at(b"?x\r\n", 0).is_err());
    }
}
