//! Meta commands: `mg`, `ms`, `md`, `ma`, `mn`, `me`.
//!
//! The codec validates flags the way memcached's `_meta_flag_preparse` does (duplicates,
//! unknown flags, numeric tokens, base64 keys) and reports the same errors; what the flags
//! mean (including `ms`/`ma` mode letters) is the server's business.

use std::borrow::Cow;

use super::errors::{
    BAD_DATA_CHUNK, BAD_FORMAT, ERROR, MA_BAD_FLAG, META_BAD_DELTA, META_BAD_INITIAL,
    META_BAD_KEY_B64, META_BAD_MODE_LEN, META_BAD_TOKEN, META_DUP_FLAG, META_INVALID_FLAG,
    META_TOO_LONG, MS_TOO_LONG, TOO_LARGE,
};
use super::text::{err, safe_strtol, safe_strtoul, safe_strtoull, too_large, Tokens};
use super::{McDecoded, McLimits, Request};

/// memcached's `MFLAG_MAX_OPT_LENGTH`: meta lines may have at most 20 tokens (plus the
/// terminator).
const MAX_META_TOKENS: usize = 20;

/// Which meta command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaCmd {
    /// `mg`.
    Get,
    /// `ms` (with a data block).
    Set,
    /// `md`.
    Delete,
    /// `ma`.
    Arithmetic,
    /// `mn`.
    Noop,
    /// `me`.
    Debug,
}

/// The flag tokens of a meta request, in order, each a flag character with its optional
/// token (`T30` → `(b'T', b"30")`). Borrowed from the line; nothing is allocated.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct MetaFlags<'a> {
    raw: &'a [u8],
}

impl<'a> MetaFlags<'a> {
    /// Flags parsed from a space-separated list (e.g. `b"v t T30"`).
    pub fn new(raw: &'a [u8]) -> Self {
        Self { raw }
    }

    /// Iterates `(flag, token)` pairs in request order.
    pub fn iter(&self) -> impl Iterator<Item = (u8, &'a [u8])> + 'a {
        self.raw
            .split(|&c| c == b' ')
            .filter(|t| !t.is_empty())
            .map(|t| (t[0], &t[1..]))
    }

    /// The token of `flag`, if present (flags are unique once decoded).
    pub fn get(&self, flag: u8) -> Option<&'a [u8]> {
        self.iter().find(|&(f, _)| f == flag).map(|(_, t)| t)
    }

    /// Whether `flag` is present.
    pub fn has(&self, flag: u8) -> bool {
        self.get(flag).is_some()
    }

    /// Whether there are no flags.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

impl std::fmt::Debug for MetaFlags<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.iter()
                    .map(|(c, t)| format!("{}{}", char::from(c), String::from_utf8_lossy(t))),
            )
            .finish()
    }
}

/// A meta request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaRequest<'a> {
    /// Which command.
    pub cmd: MetaCmd,
    /// The key, base64-decoded when the `b` flag is present (empty for `mn`).
    pub key: Cow<'a, [u8]>,
    /// The `b` flag was present (reply `k` flags must re-encode the key).
    pub key_was_b64: bool,
    /// The flags, in order.
    pub flags: MetaFlags<'a>,
    /// `ms` only: the value, without its trailing CRLF.
    pub data: Option<&'a [u8]>,
}

/// Result of validating the flags: the decoded key, or the error reply memcached settles on.
struct Preparse<'a> {
    key: Cow<'a, [u8]>,
    b64: bool,
    client_flags: u32,
    error: Option<&'static [u8]>,
}

/// memcached's `_meta_flag_preparse`: later errors overwrite earlier ones, except duplicate
/// and unknown flags, which stop at once.
fn preparse<'a>(key: &'a [u8], flags: &MetaFlags<'a>) -> Preparse<'a> {
    let mut out = Preparse {
        key: Cow::Borrowed(key),
        b64: false,
        client_flags: 0,
        error: None,
    };
    let mut seen = [false; 128];
    for (o, tok) in flags.iter() {
        if o >= 127 || seen[usize::from(o)] {
            out.error = Some(META_DUP_FLAG);
            return out;
        }
        seen[usize::from(o)] = true;
        match o {
            b'b' => {
                out.b64 = true;
                match base64_decode(key) {
                    Some(k) => out.key = Cow::Owned(k),
                    None => out.error = Some(META_BAD_KEY_B64),
                }
            }
            b'N' | b'T' | b'R' => {
                if safe_strtol(tok).is_none() {
                    out.error = Some(META_BAD_TOKEN);
                }
            }
            b'C' => {
                if safe_strtoull(tok).is_none() {
                    out.error = Some(META_BAD_TOKEN);
                }
            }
            b'F' => match safe_strtoul(tok) {
                Some(f) => out.client_flags = f,
                // memcached flags the error without changing the message.
                None => out.error = Some(out.error.unwrap_or(BAD_FORMAT)),
            },
            b'M' => {
                if tok.len() != 1 {
                    out.error = Some(META_BAD_MODE_LEN);
                }
            }
            b'J' => {
                if safe_strtoull(tok).is_none() {
                    out.error = Some(META_BAD_INITIAL);
                }
            }
            b'D' => {
                if safe_strtoull(tok).is_none() {
                    out.error = Some(META_BAD_DELTA);
                }
            }
            b'l' | b'O' | b'P' | b'L' | b'k' | b's' | b't' | b'c' | b'f' | b'v' | b'h' | b'u'
            | b'q' | b'I' => {}
            _ => {
                out.error = Some(META_INVALID_FLAG);
                return out;
            }
        }
    }
    out
}

pub(crate) fn decode<'a>(
    sub: u8,
    t: &Tokens<'a>,
    buf: &'a [u8],
    line_len: usize,
    limits: &McLimits,
) -> McDecoded<'a> {
    let cmd = match sub {
        b'g' => MetaCmd::Get,
        b's' => MetaCmd::Set,
        b'd' => MetaCmd::Delete,
        b'a' => MetaCmd::Arithmetic,
        b'e' => MetaCmd::Debug,
        b'n' => {
            return McDecoded::Request {
                req: Request::Meta(MetaRequest {
                    cmd: MetaCmd::Noop,
                    key: Cow::Borrowed(&[]),
                    key_was_b64: false,
                    flags: MetaFlags::default(),
                    data: None,
                }),
                consumed: line_len,
            }
        }
        _ => return err(ERROR, line_len),
    };
    let nt = t.ntokens();
    if nt < 3 {
        return err(
            if cmd == MetaCmd::Debug {
                BAD_FORMAT
            } else {
                ERROR
            },
            line_len,
        );
    }
    let key = t.get(1);
    if key.len() > limits.max_key_len {
        return err(BAD_FORMAT, line_len);
    }
    let request = |key, b64, flags, data, consumed| McDecoded::Request {
        req: Request::Meta(MetaRequest {
            cmd,
            key,
            key_was_b64: b64,
            flags,
            data,
        }),
        consumed,
    };
    match cmd {
        MetaCmd::Debug => {
            let flags = MetaFlags::new(t.after(1));
            if t.get(2) == b"b" {
                return match base64_decode(key) {
                    Some(k) => request(Cow::Owned(k), true, flags, None, line_len),
                    // Checked: `me a b` answers the generic format error.
                    None => err(BAD_FORMAT, line_len),
                };
            }
            request(Cow::Borrowed(key), false, flags, None, line_len)
        }
        MetaCmd::Set => {
            if nt == 3 {
                return err(BAD_FORMAT, line_len);
            }
            if nt > MAX_META_TOKENS {
                return err(MS_TOO_LONG, line_len);
            }
            let vlen = match safe_strtol(t.get(2)) {
                Some(v) if (0..=i32::MAX - 2).contains(&v) => v as usize,
                _ => return err(BAD_FORMAT, line_len),
            };
            let total = line_len + vlen + 2;
            let flags = MetaFlags::new(t.after(2));
            let p = preparse(key, &flags);
            if let Some(e) = p.error {
                return err(e, total);
            }
            if too_large(limits, p.key.len(), p.client_flags, vlen) {
                return err(TOO_LARGE, total);
            }
            if buf.len() < total {
                return McDecoded::Incomplete;
            }
            if &buf[line_len + vlen..total] != b"\r\n" {
                return err(BAD_DATA_CHUNK, total);
            }
            let data = &buf[line_len..line_len + vlen];
            request(p.key, p.b64, flags, Some(data), total)
        }
        _ => {
            if nt > MAX_META_TOKENS {
                return err(META_TOO_LONG, line_len);
            }
            let flags = MetaFlags::new(t.after(1));
            let p = preparse(key, &flags);
            if let Some(e) = p.error {
                // memcached 1.6 answers every flag error of `ma` and `md` alike.
                let e = if matches!(cmd, MetaCmd::Arithmetic | MetaCmd::Delete) {
                    MA_BAD_FLAG
                } else {
                    e
                };
                return err(e, line_len);
            }
            request(p.key, p.b64, flags, None, line_len)
        }
    }
}

fn b64_val(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Strict standard base64 (padding required); `None` when invalid or empty, which memcached
/// reports as `CLIENT_ERROR error decoding key`.
pub(crate) fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    if s.is_empty() || s.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let chunks = s.len() / 4;
    for (i, q) in s.chunks_exact(4).enumerate() {
        let last = i + 1 == chunks;
        let pad = q.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n: u32 = 0;
        for &c in &q[..4 - pad] {
            n = (n << 6) | u32::from(b64_val(c)?);
        }
        n <<= 6 * pad as u32;
        out.push((n >> 16) as u8);
        if pad < 2 {
            out.push((n >> 8) as u8);
        }
        if pad < 1 {
            out.push(n as u8);
        }
    }
    if out.is_empty() {
        None
    } else {
        Some(out)
    }
}

/// Standard base64 with padding (for `k` return flags of binary keys).
pub fn base64_encode(data: &[u8], out: &mut Vec<u8>) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(ALPHABET[(n >> 18) as usize & 63]);
        out.push(ALPHABET[(n >> 12) as usize & 63]);
        out.push(if chunk.len() > 1 {
            ALPHABET[(n >> 6) as usize & 63]
        } else {
            b'='
        });
        out.push(if chunk.len() > 2 {
            ALPHABET[n as usize & 63]
        } else {
            b'='
        });
    }
}
