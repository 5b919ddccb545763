//! Command execution: maps each protocol's requests onto the keyspace.
//! The only place that sees both the codecs and the keyspace.

pub mod memcache;
pub mod resp;
