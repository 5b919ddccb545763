//! RESP (the Redis serialization protocol), versions 2 and 3.
//!
//! * [`decode_request`]: server side, decodes one client request (multibulk `*N\r\n$len\r\n…`
//!   or an inline command line) into argument offsets ([`Args`]) without copying or
//!   allocating. Framing, limits and error texts follow Redis 7.0 byte for byte.
//! * [`ReplyWriter`]: server side, encodes replies in the connection's [`Proto`].
//! * [`decode_reply`] / [`encode_command`]: client side (CLI, benchmark, tests, proxy).
//!
//! Protocol errors ([`ProtoError`]) from [`decode_request`] are fatal: Redis writes
//! [`ProtoError::reply`] and closes the connection, because framing is lost.

mod decode;
mod encode;
mod error;
mod float;
mod reply;
pub mod scan;
mod sort_args;

pub use decode::{decode_request, Args, Decoded};
pub use encode::{Proto, ReplyWriter};
pub use error::ProtoError;
pub use float::{format_double, format_incrbyfloat};
pub use reply::{decode_reply, encode_command, Value};
pub use sort_args::SortArgs;

/// Request size limits, mirroring Redis 7.0's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted bulk argument in bytes (`proto-max-bulk-len`, default 512 MiB).
    /// A larger declared length is `Protocol error: invalid bulk length`.
    pub max_bulk_len: usize,
    /// Largest accepted multibulk count. Redis 7.0 rejects counts above `INT_MAX`
    /// (2147483647) with `Protocol error: invalid multibulk length`; older releases used
    /// 1024*1024. The default follows 7.0 (verified against redis-server 7.0.15). The count
    /// is never used to reserve memory.
    pub max_multibulk_len: usize,
    /// Largest amount of buffered bytes without a line terminator before an inline request or
    /// a `*`/`$` header line is rejected (`PROTO_INLINE_MAX_SIZE`, 64 KiB).
    pub max_inline_len: usize,
}

/// `proto-max-bulk-len` default: 512 MiB.
pub const DEFAULT_MAX_BULK_LEN: usize = 512 * 1024 * 1024;
/// Redis 7.0's multibulk count limit: `INT_MAX`.
pub const DEFAULT_MAX_MULTIBULK_LEN: usize = i32::MAX as usize;
/// `PROTO_INLINE_MAX_SIZE`: 64 KiB.
pub const DEFAULT_MAX_INLINE_LEN: usize = 64 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bulk_len: DEFAULT_MAX_BULK_LEN,
            max_multibulk_len: DEFAULT_MAX_MULTIBULK_LEN,
            max_inline_len: DEFAULT_MAX_INLINE_LEN,
        }
    }
}
