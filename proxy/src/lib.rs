//! `shoal-proxy`: the sharding proxy (ambassador).
//!
//! ```text
//!  clients ──► frontends (resp_front, mc_front) ──route──► backend connections ──► shards
//!                 │ commands: key specs, split/gather        (pipelined, per worker)
//!                 └ topology: pools, ring (shoal_client::ring), primaries/replicas
//!  health thread: probes, ejection, failover, config reload
//! ```
//!
//! Configuration is twemproxy's YAML ([`config`]); key placement is twemproxy's
//! ([`shoal_client::ring`]), so a nutcracker pool can be replaced in place.

pub mod admin;
pub mod ask;
pub mod backend;
pub mod commands;
pub mod config;
pub mod health;
pub mod io;
pub mod mc_front;
pub mod metrics;
pub mod pull;
pub mod reshard;
pub mod resp_front;
pub mod server;
pub mod topology;
pub mod worker;
