//! memcache command execution (placeholder until the memcache helper lands its files).
