//! A raw memcache (text + meta) client. The number and kind of responses expected for a
//! request are inferred from the request itself (see [`expected_frames`]), so noreply and
//! quiet-mode commands are handled without guessing from timing.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

/// Default time to wait for a response.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(3);

/// One piece of a memcache response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    /// A line without its CRLF.
    Line(Vec<u8>),
    /// A data block (after `VALUE` or `VA`), without the trailing CRLF.
    Data(Vec<u8>),
}

/// How to read the response(s) to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frames {
    /// `n` units: a unit is a line (plus its data block for `VA`), or for retrieval and
    /// `stats` commands everything up to `END` (or a single error line).
    Units(Vec<Unit>),
    /// Read until this many `MN` lines have been seen (quiet-mode pipelines).
    UntilMn(usize),
    /// Read until the connection has been silent for the given time (odd error paths).
    Quiet(Duration),
}

/// One expected response unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// One line, plus a data block if it is a `VA` line.
    Line,
    /// Lines up to `END` (`VALUE` blocks included), or one error line.
    UntilEnd,
}

fn tokens(line: &[u8]) -> Vec<&[u8]> {
    line.split(|b| *b == b' ')
        .filter(|t| !t.is_empty())
        .collect()
}

fn parse_usize(t: Option<&&[u8]>) -> Option<usize> {
    std::str::from_utf8(t?).ok()?.parse().ok()
}

/// The commands in a request: each is (command line without CRLF, tokens as strings).
pub fn split_request(req: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < req.len() {
        let Some(nl) = req[pos..].iter().position(|b| *b == b'\n') else {
            break;
        };
        let mut line = &req[pos..pos + nl];
        if line.ends_with(b"\r") {
            line = &line[..line.len() - 1];
        }
        pos += nl + 1;
        let toks = tokens(line);
        let name = toks.first().copied().unwrap_or(b"");
        let data_len = match name {
            b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas" => {
                parse_usize(toks.get(4))
            }
            b"ms" => parse_usize(toks.get(2)),
            _ => None,
        };
        if let Some(n) = data_len {
            pos = (pos + n + 2).min(req.len());
        }
        out.push(line.to_vec());
    }
    out
}

/// Infers what to read back for `req` (see [`Frames`]). `quit` contributes no unit.
pub fn expected_frames(req: &[u8]) -> Frames {
    let lines = split_request(req);
    let mn = lines
        .iter()
        .filter(|l| tokens(l).first() == Some(&&b"mn"[..]))
        .count();
    if mn > 0 {
        return Frames::UntilMn(mn);
    }
    let mut units = Vec::new();
    for l in &lines {
        let toks = tokens(l);
        let name = toks.first().copied().unwrap_or(b"");
        let noreply = toks.last() == Some(&&b"noreply"[..]) && toks.len() > 1;
        let quiet = name.len() == 2 && name[0] == b'm' && toks.iter().skip(2).any(|t| *t == b"q");
        match name {
            b"quit" | b"mq" => {}
            _ if noreply || quiet => {}
            b"get" | b"gets" | b"gat" | b"gats" | b"stats" => units.push(Unit::UntilEnd),
            _ => units.push(Unit::Line),
        }
    }
    Frames::Units(units)
}

/// What reading a response produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct McReply {
    /// Segments received.
    pub segs: Vec<Seg>,
    /// `None` if complete, else why not (`closed`, `timeout`).
    pub incomplete: Option<&'static str>,
}

impl McReply {
    /// Printable form for reports.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for seg in &self.segs {
            match seg {
                Seg::Line(l) => s.push_str(&crate::escape(l)),
                Seg::Data(d) => s.push_str(&format!("<data {}>", crate::escape(d))),
            }
            s.push_str("\\r\\n");
        }
        if let Some(why) = self.incomplete {
            s.push_str(&format!("<{why}>"));
        }
        if s.is_empty() {
            s.push_str("<nothing>");
        }
        s
    }

    /// All lines (data blocks skipped).
    pub fn lines(&self) -> impl Iterator<Item = &[u8]> {
        self.segs.iter().filter_map(|s| match s {
            Seg::Line(l) => Some(l.as_slice()),
            Seg::Data(_) => None,
        })
    }
}

/// A raw memcache connection.
pub struct McConn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Response timeout.
    pub timeout: Duration,
}

enum Got {
    Line(Vec<u8>),
    Eof,
    Timeout,
}

impl McConn {
    /// Connects to `127.0.0.1:port`.
    pub fn connect(port: u16) -> McConn {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}"));
        stream.set_nodelay(true).ok();
        McConn {
            stream,
            buf: Vec::new(),
            timeout: REPLY_TIMEOUT,
        }
    }

    /// Writes raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// Sends `req` and reads the responses [`expected_frames`] infers for it.
    pub fn request(&mut self, req: &[u8]) -> McReply {
        self.send(req);
        self.read(&expected_frames(req))
    }

    fn fill(&mut self, deadline: Instant) -> Option<bool> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        self.stream.set_read_timeout(Some(left)).ok()?;
        let mut tmp = [0u8; 16 * 1024];
        match self.stream.read(&mut tmp) {
            Ok(0) => Some(false),
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                Some(true)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            Err(e) if e.kind() == ErrorKind::Interrupted => Some(true),
            Err(_) => Some(false),
        }
    }

    fn line(&mut self, deadline: Instant) -> Got {
        loop {
            if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let l: Vec<u8> = self.buf.drain(..p + 2).take(p).collect();
                return Got::Line(l);
            }
            match self.fill(deadline) {
                Some(true) => {}
                Some(false) => return Got::Eof,
                None => return Got::Timeout,
            }
        }
    }

    fn data(&mut self, n: usize, deadline: Instant) -> Result<Vec<u8>, &'static str> {
        while self.buf.len() < n + 2 {
            match self.fill(deadline) {
                Some(true) => {}
                Some(false) => return Err("closed"),
                None => return Err("timeout"),
            }
        }
        let d: Vec<u8> = self.buf.drain(..n + 2).take(n).collect();
        Ok(d)
    }

    /// Reads one line and, when it announces one, its data block.
    fn line_with_data(
        &mut self,
        out: &mut Vec<Seg>,
        deadline: Instant,
    ) -> Result<Vec<u8>, &'static str> {
        let l = match self.line(deadline) {
            Got::Line(l) => l,
            Got::Eof => return Err("closed"),
            Got::Timeout => return Err("timeout"),
        };
        let toks = tokens(&l);
        let len = match toks.first().copied() {
            Some(b"VALUE") => parse_usize(toks.get(3)),
            Some(b"VA") => parse_usize(toks.get(1)),
            _ => None,
        };
        out.push(Seg::Line(l.clone()));
        if let Some(n) = len {
            out.push(Seg::Data(self.data(n, deadline)?));
        }
        Ok(l)
    }

    /// Reads responses as described by `frames`.
    pub fn read(&mut self, frames: &Frames) -> McReply {
        let deadline = Instant::now() + self.timeout;
        let mut segs = Vec::new();
        let res: Result<(), &'static str> = (|| {
            match frames {
                Frames::Units(units) => {
                    for u in units {
                        match u {
                            Unit::Line => {
                                self.line_with_data(&mut segs, deadline)?;
                            }
                            Unit::UntilEnd => loop {
                                let l = self.line_with_data(&mut segs, deadline)?;
                                if !(l.starts_with(b"VALUE ") || l.starts_with(b"STAT ")) {
                                    break;
                                }
                            },
                        }
                    }
                }
                Frames::UntilMn(n) => {
                    let mut seen = 0;
                    while seen < *n {
                        if self.line_with_data(&mut segs, deadline)? == b"MN" {
                            seen += 1;
                        }
                    }
                }
                Frames::Quiet(gap) => loop {
                    if self.buf.is_empty() {
                        match self.fill(Instant::now() + *gap) {
                            Some(true) => {}
                            Some(false) => {
                                if !self.buf.is_empty() {
                                    segs.push(Seg::Line(std::mem::take(&mut self.buf)));
                                }
                                return Err("closed");
                            }
                            None => return Ok(()),
                        }
                    }
                    if !self.buf.windows(2).any(|w| w == b"\r\n") {
                        match self.fill(Instant::now() + *gap) {
                            Some(true) => continue,
                            Some(false) => return Err("closed"),
                            None => {
                                segs.push(Seg::Line(std::mem::take(&mut self.buf)));
                                return Ok(());
                            }
                        }
                    }
                    self.line_with_data(&mut segs, deadline)?;
                },
            }
            Ok(())
        })();
        McReply {
            segs,
            incomplete: res.err(),
        }
    }

    /// `"closed"`, `"still open"` or a description of unexpected bytes.
    pub fn closed_state(&mut self, wait: Duration) -> String {
        if !self.buf.is_empty() {
            return format!(
                "extra bytes {}",
                crate::escape(&std::mem::take(&mut self.buf))
            );
        }
        match self.fill(Instant::now() + wait) {
            Some(false) => "closed".into(),
            Some(true) => format!(
                "extra bytes {}",
                crate::escape(&std::mem::take(&mut self.buf))
            ),
            None => "still open".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_inferred_from_the_request() {
        use Unit::*;
        let f = |s: &str| expected_frames(s.as_bytes());
        assert_eq!(f("get a b\r\n"), Frames::Units(vec![UntilEnd]));
        assert_eq!(f("set a 0 0 5\r\nget a\r\n"), Frames::Units(vec![Line]));
        assert_eq!(
            f("set a 0 0 1 noreply\r\nx\r\nget a\r\n"),
            Frames::Units(vec![UntilEnd])
        );
        assert_eq!(f("mg a v q\r\nmg b v\r\n"), Frames::Units(vec![Line]));
        assert_eq!(f("mg a v q\r\nmn\r\n"), Frames::UntilMn(1));
        assert_eq!(
            f("incr a 1\r\ndelete a noreply\r\nstats\r\nquit\r\n"),
            Frames::Units(vec![Line, UntilEnd])
        );
        assert_eq!(
            f("ms k 2 T0\r\nhi\r\nversion\r\n"),
            Frames::Units(vec![Line, Line])
        );
    }
}
