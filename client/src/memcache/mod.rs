//! memcached 1.6 ASCII protocol: text commands (`get`, `set`, `incr`, …) and meta commands
//! (`mg`, `ms`, `md`, `ma`, `mn`, `me`).
//!
//! * [`decode`]: server side, parses one request borrowed from the read buffer. Tokenizing,
//!   number parsing (C `strtoul`/`strtol` quirks included), limits and every error reply follow
//!   memcached 1.6.18's `proto_text.c`, checked against the real server.
//! * [`reply`]: server-side reply writers and a client-side response parser.
//!
//! Errors are not Rust errors here: memcached answers most malformed lines and keeps going,
//! so [`McDecoded::Error`] carries the exact reply, how many bytes to drop, and whether to
//! close.

mod meta;
pub mod reply;
pub mod scan;
mod text;

use std::borrow::Cow;

pub use meta::{base64_encode, MetaCmd, MetaFlags, MetaRequest};
pub use reply::{decode_response, McValue, Response};
pub use text::decode;

/// memcached's limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct McLimits {
    /// `-I`, the largest item (1 MiB). As in memcached the limit covers the whole item: a
    /// value fits when `56 + (key + 1) + (flags != 0 ? 4 : 0) + value + 2 <= max_item_size`
    /// (48-byte item header + 8-byte CAS), i.e. 1048516 bytes for a 1-byte key and flags 0.
    pub max_item_size: usize,
    /// `KEY_MAX_LENGTH`: 250.
    pub max_key_len: usize,
    /// Longest buffered command line without `\n` (memcached: 2048 bytes); past it the
    /// connection is closed, except for `get`/`gets` multigets, which memcached lets grow.
    pub max_line_len: usize,
}

/// memcached's default `-I 1m`.
pub const DEFAULT_MAX_ITEM_SIZE: usize = 1024 * 1024;

impl Default for McLimits {
    fn default() -> Self {
        Self {
            max_item_size: DEFAULT_MAX_ITEM_SIZE,
            max_key_len: 250,
            max_line_len: 2048,
        }
    }
}

/// The storage command of a [`Request::Store`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// `set`.
    Set,
    /// `add`.
    Add,
    /// `replace`.
    Replace,
    /// `append`.
    Append,
    /// `prepend`.
    Prepend,
    /// `cas`.
    Cas,
}

/// The keys of a `get`-family request: the rest of the command line, split on spaces lazily
/// (no allocation, however many keys). Every key was checked against `max_key_len`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyList<'a> {
    rest: &'a [u8],
}

impl<'a> KeyList<'a> {
    pub(crate) fn new(rest: &'a [u8]) -> Self {
        Self { rest }
    }

    /// Iterates over the keys in request order.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.rest.split(|&c| c == b' ').filter(|k| !k.is_empty())
    }

    /// Number of keys (counts them).
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether there are no keys (`gat 10` is valid and answers `END`).
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

impl std::fmt::Debug for KeyList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|k| String::from_utf8_lossy(k)))
            .finish()
    }
}

/// One parsed request, borrowing from the read buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// `get` / `gets` (`cas`).
    Get {
        /// The keys.
        keys: KeyList<'a>,
        /// `gets`: include CAS values.
        cas: bool,
    },
    /// `gat` / `gats` (`cas`).
    Gat {
        /// New expiration time (memcached's `int32` truncation applied).
        exptime: i64,
        /// The keys.
        keys: KeyList<'a>,
        /// `gats`: include CAS values.
        cas: bool,
    },
    /// `set`/`add`/`replace`/`append`/`prepend`/`cas`, with its data block.
    Store {
        /// Which command.
        kind: StoreKind,
        /// The key.
        key: &'a [u8],
        /// Client flags.
        flags: u32,
        /// Expiration time (memcached's `int32` truncation applied).
        exptime: i64,
        /// The value, without its trailing CRLF.
        data: &'a [u8],
        /// `cas` only: the expected CAS value (0 otherwise).
        cas_unique: u64,
        /// `noreply` was given.
        noreply: bool,
    },
    /// `incr <key> <delta> [noreply]`.
    Incr {
        /// The key.
        key: &'a [u8],
        /// Amount to add.
        delta: u64,
        /// `noreply` was given.
        noreply: bool,
    },
    /// `decr <key> <delta> [noreply]`.
    Decr {
        /// The key.
        key: &'a [u8],
        /// Amount to subtract (saturating at 0).
        delta: u64,
        /// `noreply` was given.
        noreply: bool,
    },
    /// `delete <key> [0] [noreply]`.
    Delete {
        /// The key.
        key: &'a [u8],
        /// `noreply` was given.
        noreply: bool,
    },
    /// `touch <key> <exptime> [noreply]`.
    Touch {
        /// The key.
        key: &'a [u8],
        /// New expiration time.
        exptime: i64,
        /// `noreply` was given.
        noreply: bool,
    },
    /// `flush_all [delay] [noreply]`.
    FlushAll {
        /// Delay in seconds (0 when absent).
        delay: i64,
        /// `noreply` was given.
        noreply: bool,
    },
    /// `stats [group]`. Unknown groups are answered `ERROR` by the server.
    Stats {
        /// The first argument, if any.
        group: Option<&'a [u8]>,
    },
    /// `version`.
    Version,
    /// `verbosity <level> [noreply]` (memcached answers `OK`).
    Verbosity {
        /// `noreply` was given.
        noreply: bool,
    },
    /// `quit`: close the connection without a reply.
    Quit,
    /// A meta command.
    Meta(MetaRequest<'a>),
}

/// Outcome of [`decode`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum McDecoded<'a> {
    /// One complete request occupying `consumed` bytes.
    Request {
        /// The request.
        req: Request<'a>,
        /// Bytes to advance past.
        consumed: usize,
    },
    /// More bytes are needed.
    Incomplete,
    /// A protocol error: write `reply` verbatim (it may be empty: `noreply` also silences
    /// errors in memcached), consume `consume` bytes (may exceed the buffer: the caller then
    /// discards that many further bytes, e.g. memcached swallowing a too-large value), and
    /// close the connection if `close`.
    Error {
        /// Exact reply bytes, CRLF included.
        reply: &'static [u8],
        /// Bytes to drop.
        consume: usize,
        /// Close the connection after writing `reply`.
        close: bool,
    },
}

/// Error replies, exactly as memcached 1.6.18 sends them.
pub mod errors {
    /// Unknown command, wrong token count.
    pub const ERROR: &[u8] = b"ERROR\r\n";
    /// Malformed arguments, key too long.
    pub const BAD_FORMAT: &[u8] = b"CLIENT_ERROR bad command line format\r\n";
    /// `delete` with a non-zero hold time.
    pub const BAD_DELETE: &[u8] =
        b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n";
    /// Data block not followed by CRLF.
    pub const BAD_DATA_CHUNK: &[u8] = b"CLIENT_ERROR bad data chunk\r\n";
    /// Value larger than the item size limit (the data is swallowed).
    pub const TOO_LARGE: &[u8] = b"SERVER_ERROR object too large for cache\r\n";
    /// `incr`/`decr` delta is not a valid unsigned 64-bit number.
    pub const BAD_DELTA: &[u8] = b"CLIENT_ERROR invalid numeric delta argument\r\n";
    /// `touch`/`gat`/`flush_all` with an invalid time.
    pub const BAD_EXPTIME: &[u8] = b"CLIENT_ERROR invalid exptime argument\r\n";
    /// Meta: a flag appears twice.
    pub const META_DUP_FLAG: &[u8] = b"CLIENT_ERROR duplicate flag\r\n";
    /// Meta: unknown flag.
    pub const META_INVALID_FLAG: &[u8] = b"CLIENT_ERROR invalid flag\r\n";
    /// Meta: bad numeric token (`T`, `N`, `R`, `C`).
    pub const META_BAD_TOKEN: &[u8] = b"CLIENT_ERROR bad token in command line format\r\n";
    /// Meta: `b` flag with a key that is not valid base64.
    pub const META_BAD_KEY_B64: &[u8] = b"CLIENT_ERROR error decoding key\r\n";
    /// Meta: `M` token not exactly one mode character.
    pub const META_BAD_MODE_LEN: &[u8] = b"CLIENT_ERROR incorrect length for M token\r\n";
    /// Meta: `J` token not a number.
    pub const META_BAD_INITIAL: &[u8] = b"CLIENT_ERROR invalid numeric initial value\r\n";
    /// Meta: `D` token not a number.
    pub const META_BAD_DELTA: &[u8] = b"CLIENT_ERROR invalid numeric delta value\r\n";
    /// `ma`: any flag error.
    pub const MA_BAD_FLAG: &[u8] = b"CLIENT_ERROR invalid or duplicate flag\r\n";
    /// `mg`/`md`/`ma`/`me`: too many tokens.
    pub const META_TOO_LONG: &[u8] = b"CLIENT_ERROR options flags are too long\r\n";
    /// `ms`: too many tokens.
    pub const MS_TOO_LONG: &[u8] = b"CLIENT_ERROR options flags too long\r\n";
}

/// A key that may have been base64-decoded (meta `b` flag).
pub type MetaKey<'a> = Cow<'a, [u8]>;
