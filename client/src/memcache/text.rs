//! Line framing, tokenizing, C number parsing and the classic text commands.

use super::errors::{
    BAD_DATA_CHUNK, BAD_DELETE, BAD_DELTA, BAD_EXPTIME, BAD_FORMAT, ERROR, TOO_LARGE,
};
use super::{meta, KeyList, McDecoded, McLimits, Request, StoreKind};

/// memcached's `MAX_TOKENS` (the last slot holds the terminator / unparsed rest).
const MAX_TOKENS: usize = 24;

/// memcached item header (48 bytes) plus the 8-byte CAS, for the item-size check.
pub(crate) const ITEM_OVERHEAD: usize = 56;

/// Longest `get`/`gets` line Shoal buffers (memcached lets multigets grow unbounded).
const MAX_MULTIGET_LINE: usize = 16 * 1024 * 1024;

/// A command line split on spaces like memcached's `tokenize_command`.
pub(crate) struct Tokens<'a> {
    pub(crate) line: &'a [u8],
    spans: [(usize, usize); MAX_TOKENS - 1],
    /// Real tokens (memcached's `ntokens` is one more: the terminator).
    pub(crate) n: usize,
}

impl<'a> Tokens<'a> {
    pub(crate) fn tokenize(line: &'a [u8]) -> Self {
        let mut t = Tokens {
            line,
            spans: [(0, 0); MAX_TOKENS - 1],
            n: 0,
        };
        let mut s = 0;
        for (e, &c) in line.iter().enumerate() {
            if c == b' ' {
                if s != e {
                    t.spans[t.n] = (s, e);
                    t.n += 1;
                    if t.n == MAX_TOKENS - 1 {
                        return t;
                    }
                }
                s = e + 1;
            }
        }
        if s != line.len() {
            t.spans[t.n] = (s, line.len());
            t.n += 1;
        }
        t
    }

    /// memcached's `ntokens`.
    pub(crate) fn ntokens(&self) -> usize {
        self.n + 1
    }

    /// Token `i` (empty past the end, like memcached's terminator token).
    pub(crate) fn get(&self, i: usize) -> &'a [u8] {
        if i < self.n {
            let (s, e) = self.spans[i];
            &self.line[s..e]
        } else {
            &[]
        }
    }

    /// Everything after token `i`.
    pub(crate) fn after(&self, i: usize) -> &'a [u8] {
        if i < self.n {
            &self.line[self.spans[i].1..]
        } else {
            &[]
        }
    }

    /// `set_noreply_maybe`: the last token is `noreply`.
    pub(crate) fn noreply(&self) -> bool {
        self.n > 0 && self.get(self.n - 1) == b"noreply"
    }
}

fn c_isspace(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// C `strtoull`/`strtol` core in base 10: leading whitespace, a sign, digits. Returns
/// (negative, magnitude or `None` on overflow, end index), or `None` when no digits.
fn c_strto(tok: &[u8]) -> Option<(bool, Option<u64>, usize)> {
    let mut i = 0;
    while i < tok.len() && c_isspace(tok[i]) {
        i += 1;
    }
    let mut neg = false;
    if i < tok.len() && (tok[i] == b'-' || tok[i] == b'+') {
        neg = tok[i] == b'-';
        i += 1;
    }
    let start = i;
    let mut v: Option<u64> = Some(0);
    while i < tok.len() && tok[i].is_ascii_digit() {
        v = v
            .and_then(|v| v.checked_mul(10))
            .and_then(|v| v.checked_add(u64::from(tok[i] - b'0')));
        i += 1;
    }
    if i == start {
        return None;
    }
    // `*endptr` must be whitespace or the end of the token.
    if i < tok.len() && !c_isspace(tok[i]) {
        return None;
    }
    Some((neg, v, i))
}

/// memcached `safe_strtoull`.
pub(crate) fn safe_strtoull(tok: &[u8]) -> Option<u64> {
    let (neg, mag, end) = c_strto(tok)?;
    let v = if neg { mag?.wrapping_neg() } else { mag? };
    if (v as i64) < 0 && tok[..end].contains(&b'-') {
        return None;
    }
    Some(v)
}

/// memcached `safe_strtoul` (64-bit `unsigned long`, stored into a `uint32_t`).
pub(crate) fn safe_strtoul(tok: &[u8]) -> Option<u32> {
    safe_strtoull(tok).map(|v| v as u32)
}

/// memcached `safe_strtol`: a `long`, silently truncated into an `int32_t` (verified:
/// `set a 0 2147483648 1` is accepted by 1.6.18).
pub(crate) fn safe_strtol(tok: &[u8]) -> Option<i32> {
    let (neg, mag, _) = c_strto(tok)?;
    let mag = mag?;
    let v: i64 = if neg {
        if mag > 1 << 63 {
            return None;
        }
        0i64.wrapping_sub(mag as i64)
    } else {
        i64::try_from(mag).ok()?
    };
    Some(v as i32)
}

pub(crate) fn err(reply: &'static [u8], consume: usize) -> McDecoded<'static> {
    McDecoded::Error {
        reply,
        consume,
        close: false,
    }
}

/// Whether memcached's `item_size_ok` rejects this item.
pub(crate) fn too_large(limits: &McLimits, nkey: usize, flags: u32, vlen: usize) -> bool {
    let suffix = if flags == 0 { 0 } else { 4 };
    ITEM_OVERHEAD + nkey + 1 + suffix + vlen + 2 > limits.max_item_size
}

/// Decodes one request from the start of `buf`. Never panics and never allocates, except
/// for base64 meta keys.
pub fn decode<'a>(buf: &'a [u8], limits: &McLimits) -> McDecoded<'a> {
    let Some(nl) = memchr::memchr(b'\n', buf) else {
        return no_newline(buf, limits);
    };
    let line_len = nl + 1;
    // memcached strips a `\r` only when the line has at least one other byte.
    let end = if nl > 1 && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    let mut line = &buf[..end];
    // The line is handled as a C string from here on.
    if let Some(z) = memchr::memchr(0, line) {
        line = &line[..z];
    }
    let t = Tokens::tokenize(line);
    let cmd = t.get(0);
    if t.n == 0 || cmd.len() < 2 {
        return err(ERROR, line_len);
    }
    let nt = t.ntokens();
    if cmd[0] == b'm' && cmd.len() == 2 {
        return meta::decode(cmd[1], &t, buf, line_len, limits);
    }
    let req = |req| McDecoded::Request {
        req,
        consumed: line_len,
    };
    match cmd[0] {
        b'g' => {
            if nt < 3 {
                return err(ERROR, line_len);
            }
            let (touch, cas) = match cmd {
                b"get" => (false, false),
                b"gets" => (false, true),
                b"gat" => (true, false),
                b"gats" => (true, true),
                _ => return err(ERROR, line_len),
            };
            let mut exptime = 0;
            let keys = if touch {
                match safe_strtol(t.get(1)) {
                    Some(e) => exptime = i64::from(e),
                    None => return err(BAD_EXPTIME, line_len),
                }
                KeyList::new(t.after(1))
            } else {
                KeyList::new(t.after(0))
            };
            if keys.iter().any(|k| k.len() > limits.max_key_len) {
                return err(BAD_FORMAT, line_len);
            }
            req(if touch {
                Request::Gat { exptime, keys, cas }
            } else {
                Request::Get { keys, cas }
            })
        }
        b's' => match cmd {
            b"set" => store(StoreKind::Set, &t, buf, line_len, limits),
            b"stats" => req(Request::Stats {
                group: (t.n > 1).then(|| t.get(1)),
            }),
            _ => err(ERROR, line_len),
        },
        b'a' => match cmd {
            b"add" => store(StoreKind::Add, &t, buf, line_len, limits),
            b"append" => store(StoreKind::Append, &t, buf, line_len, limits),
            _ => err(ERROR, line_len),
        },
        b'c' => match cmd {
            b"cas" => store(StoreKind::Cas, &t, buf, line_len, limits),
            _ => err(ERROR, line_len),
        },
        b'i' | b'd' if cmd == b"incr" || cmd == b"decr" => {
            if nt != 4 && nt != 5 {
                return err(ERROR, line_len);
            }
            let noreply = t.noreply();
            let quiet = |r: &'static [u8]| if noreply { &b""[..] } else { r };
            let key = t.get(1);
            if key.len() > limits.max_key_len {
                return err(quiet(BAD_FORMAT), line_len);
            }
            let Some(delta) = safe_strtoull(t.get(2)) else {
                return err(quiet(BAD_DELTA), line_len);
            };
            req(if cmd == b"incr" {
                Request::Incr {
                    key,
                    delta,
                    noreply,
                }
            } else {
                Request::Decr {
                    key,
                    delta,
                    noreply,
                }
            })
        }
        b'd' if cmd == b"delete" => {
            if !(3..=5).contains(&nt) {
                return err(ERROR, line_len);
            }
            let mut noreply = false;
            if nt > 3 {
                let hold_is_zero = t.get(2) == b"0";
                noreply = t.noreply();
                let valid =
                    (nt == 4 && (hold_is_zero || noreply)) || (nt == 5 && hold_is_zero && noreply);
                if !valid {
                    return err(if noreply { b"" } else { BAD_DELETE }, line_len);
                }
            }
            let key = t.get(1);
            if key.len() > limits.max_key_len {
                return err(if noreply { b"" } else { BAD_FORMAT }, line_len);
            }
            req(Request::Delete { key, noreply })
        }
        b't' if cmd == b"touch" => {
            if nt != 4 && nt != 5 {
                return err(ERROR, line_len);
            }
            let noreply = t.noreply();
            let quiet = |r: &'static [u8]| if noreply { &b""[..] } else { r };
            let key = t.get(1);
            if key.len() > limits.max_key_len {
                return err(quiet(BAD_FORMAT), line_len);
            }
            let Some(exptime) = safe_strtol(t.get(2)) else {
                return err(quiet(BAD_EXPTIME), line_len);
            };
            req(Request::Touch {
                key,
                exptime: i64::from(exptime),
                noreply,
            })
        }
        b'i' | b'd' | b't' => err(ERROR, line_len),
        _ => match cmd {
            b"prepend" => store(StoreKind::Prepend, &t, buf, line_len, limits),
            b"replace" => store(StoreKind::Replace, &t, buf, line_len, limits),
            b"flush_all" => {
                if !(2..=4).contains(&nt) {
                    return err(ERROR, line_len);
                }
                let noreply = t.noreply();
                let mut delay = 0;
                if nt != if noreply { 3 } else { 2 } {
                    match safe_strtol(t.get(1)) {
                        Some(d) => delay = i64::from(d),
                        None => return err(if noreply { b"" } else { BAD_EXPTIME }, line_len),
                    }
                }
                req(Request::FlushAll { delay, noreply })
            }
            b"version" => req(Request::Version),
            b"quit" => req(Request::Quit),
            b"verbosity" => {
                if nt != 3 && nt != 4 {
                    return err(ERROR, line_len);
                }
                let noreply = t.noreply();
                if safe_strtoul(t.get(1)).is_none() {
                    return err(if noreply { b"" } else { BAD_FORMAT }, line_len);
                }
                req(Request::Verbosity { noreply })
            }
            _ if t.get(t.n - 1).starts_with(b"HTTP/") => McDecoded::Error {
                reply: b"",
                consume: line_len,
                close: true,
            },
            _ => err(ERROR, line_len),
        },
    }
}

fn no_newline<'a>(buf: &'a [u8], limits: &McLimits) -> McDecoded<'a> {
    if buf.len() <= limits.max_line_len {
        return McDecoded::Incomplete;
    }
    // memcached only lets a long line grow when it is a multiget (after <= 100 spaces).
    let spaces = buf.iter().take_while(|&&c| c == b' ').count();
    let rest = &buf[spaces..];
    let multiget = spaces <= 100 && (rest.starts_with(b"get ") || rest.starts_with(b"gets "));
    if multiget && buf.len() <= MAX_MULTIGET_LINE {
        McDecoded::Incomplete
    } else {
        McDecoded::Error {
            reply: b"",
            consume: buf.len(),
            close: true,
        }
    }
}

fn store<'a>(
    kind: StoreKind,
    t: &Tokens<'a>,
    buf: &'a [u8],
    line_len: usize,
    limits: &McLimits,
) -> McDecoded<'a> {
    let nt = t.ntokens();
    let ok = if kind == StoreKind::Cas {
        nt == 7 || nt == 8
    } else {
        nt == 6 || nt == 7
    };
    if !ok {
        return err(ERROR, line_len);
    }
    let noreply = t.noreply();
    let quiet = |r: &'static [u8]| if noreply { &b""[..] } else { r };
    let key = t.get(1);
    if key.len() > limits.max_key_len {
        return err(quiet(BAD_FORMAT), line_len);
    }
    let (Some(flags), Some(exptime), Some(vlen)) = (
        safe_strtoul(t.get(2)),
        safe_strtol(t.get(3)),
        safe_strtol(t.get(4)),
    ) else {
        return err(quiet(BAD_FORMAT), line_len);
    };
    let mut cas_unique = 0;
    if kind == StoreKind::Cas {
        match safe_strtoull(t.get(5)) {
            Some(c) => cas_unique = c,
            None => return err(quiet(BAD_FORMAT), line_len),
        }
    }
    if !(0..=i32::MAX - 2).contains(&vlen) {
        return err(quiet(BAD_FORMAT), line_len);
    }
    let vlen = vlen as usize;
    let total = line_len + vlen + 2;
    if too_large(limits, key.len(), flags, vlen) {
        // memcached swallows the data block (and, for `set`, unlinks the old item).
        return err(quiet(TOO_LARGE), total);
    }
    if buf.len() < total {
        return McDecoded::Incomplete;
    }
    if &buf[line_len + vlen..total] != b"\r\n" {
        return err(quiet(BAD_DATA_CHUNK), total);
    }
    McDecoded::Request {
        req: Request::Store {
            kind,
            key,
            flags,
            exptime: i64::from(exptime),
            data: &buf[line_len..line_len + vlen],
            cas_unique,
            noreply,
        },
        consumed: total,
    }
}

#[cfg(test)]
#[path = "text_tests.rs"]
mod tests;
