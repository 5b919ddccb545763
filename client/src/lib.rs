//! Shoal's wire: sans-IO codecs for the protocols Shoal speaks.
//!
//! ```text
//!  socket bytes ──► BytesMut ──► resp::decode_request / memcache::decode ──► dispatch
//!                                                                              │
//!  socket bytes ◄── BytesMut ◄── resp::ReplyWriter / memcache::reply::*  ◄─────┘
//! ```
//!
//! * [`resp`]: RESP2/RESP3 request decoding (multibulk and inline, exactly like Redis 7.0's
//!   `processMultibulkBuffer`/`processInlineBuffer`), reply encoding, and a client-side reply
//!   decoder built on `redis-protocol`.
//! * [`memcache`]: memcached 1.6 ASCII text and meta protocol request parsing, reply writers,
//!   and a client-side response parser.
//!
//! Invariants: the codecs never touch sockets, never depend on tokio, never allocate per
//! frame on the request path after warm-up, and never panic on peer input. A declared length
//! (`$100000000000`, `*2000000000`, `set k 0 0 4000000000`) never causes an allocation of that
//! size: the decoders only ever report how many bytes they still need.
#![warn(missing_docs)]

pub mod memcache;
pub mod resp;
pub mod ring;
