//! `shoal-server`: one Shoal shard member.
//!
//! ```text
//!  net (listeners, worker runtimes, connections)      net/
//!    └─► exec (command table, per-protocol handlers)   exec/resp, exec/memcache
//!          └─► shoal-keyspace (storage; no I/O)        ../keyspace
//! ```
//!
//! Embedding: [`start`] binds the configured ports and returns a [`ServerHandle`]
//! once every listener accepts; tests use [`start_with_listeners`] with
//! pre-bound `127.0.0.1:0` sockets. The `shoal-server` binary is a thin wrapper.

#![warn(missing_docs)]

pub mod config;
pub mod dump;
pub mod exec;
pub mod glob;
pub mod net;
pub mod pubsub;
pub mod repl;
pub mod reshard;
pub mod shared;
pub mod stats;

pub use config::{Cli, ServerConfig};
pub use net::{start, start_with_listeners, ServerHandle};
