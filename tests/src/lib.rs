//! Test support for Shoal's differential and end-to-end tests.
//!
//! * [`servers`]: spawn `redis-server`, `memcached` and the release `shoal-server` on free
//!   loopback ports, wait until they answer (bounded), kill them on drop.
//! * [`resp`] / [`memcache`]: raw clients that send exact bytes and return the exact bytes
//!   of complete replies.
//! * [`proxy`]: run `shoal-proxy` in front of such servers with a generated pool file.
//! * [`history`]: record what concurrent clients saw (single writer per key, strictly
//!   increasing values) and check it: lost writes, stale reads, resurrections,
//!   client-visible errors; plus a multi-threaded load driver that produces such histories.
//! * [`diff`]: run the same case list against the reference server and the target, compare
//!   byte for byte (or with a per-case relaxed mode), and report every mismatch.
//!
//! `SHOAL_DIFF_TARGET=reference` makes the "target" a second reference server, which is how
//! the harness is checked against itself.

pub mod diff;
pub mod history;
pub mod memcache;
pub mod proxy;
pub mod resp;
pub mod servers;

pub use diff::{diff_memcache, diff_resp, Cmp, McCase, McCmp, RespCase};
pub use servers::{
    free_port, spawn_memcache_target, spawn_memcached, spawn_redis, spawn_resp_target, spawn_shoal,
    ServerProc,
};

/// Escapes bytes for reports: printable ASCII as is, `\r` `\n` `\t` `\\` and `\xNN` otherwise.
/// Long inputs are shortened in the middle.
pub fn escape(bytes: &[u8]) -> String {
    const MAX: usize = 400;
    let mut s = String::new();
    let shown: Vec<u8> = if bytes.len() > MAX {
        let mut v = bytes[..MAX / 2].to_vec();
        v.extend_from_slice(format!("<...{} bytes...>", bytes.len() - MAX).as_bytes());
        v.extend_from_slice(&bytes[bytes.len() - MAX / 2..]);
        v
    } else {
        bytes.to_vec()
    };
    for &b in &shown {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}
