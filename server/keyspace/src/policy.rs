//! `maxmemory-policy` values and the LRU/LFU access word.
//!
//! Every entry carries a 32-bit access word. Under LRU policies it is the unix
//! second of the last access; under LFU policies it is Redis's layout: the low
//! 8 bits are a logarithmic access counter and the high 16 bits the unix minute
//! (mod 2^16) of its last decrement. Switching policy at runtime reinterprets
//! the words, exactly as Redis does, and they converge as keys are touched.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

/// Initial LFU counter of a new key (Redis `LFU_INIT_VAL`).
pub const LFU_INIT_VAL: u8 = 5;

/// What to do when `maxmemory` is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum EvictionPolicy {
    /// Refuse writes with an OOM error.
    #[default]
    NoEviction = 0,
    /// Evict approximately least recently used keys.
    AllKeysLru,
    /// Evict approximately least frequently used keys.
    AllKeysLfu,
    /// Evict random keys.
    AllKeysRandom,
    /// LRU among keys with a TTL.
    VolatileLru,
    /// LFU among keys with a TTL.
    VolatileLfu,
    /// Random among keys with a TTL.
    VolatileRandom,
    /// Keys with the nearest expiry first.
    VolatileTtl,
}

impl EvictionPolicy {
    /// All policies, in `repr` order.
    pub const ALL: [EvictionPolicy; 8] = [
        Self::NoEviction,
        Self::AllKeysLru,
        Self::AllKeysLfu,
        Self::AllKeysRandom,
        Self::VolatileLru,
        Self::VolatileLfu,
        Self::VolatileRandom,
        Self::VolatileTtl,
    ];

    /// The Redis configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoEviction => "noeviction",
            Self::AllKeysLru => "allkeys-lru",
            Self::AllKeysLfu => "allkeys-lfu",
            Self::AllKeysRandom => "allkeys-random",
            Self::VolatileLru => "volatile-lru",
            Self::VolatileLfu => "volatile-lfu",
            Self::VolatileRandom => "volatile-random",
            Self::VolatileTtl => "volatile-ttl",
        }
    }

    /// Whether the access word is an LFU counter.
    pub fn is_lfu(self) -> bool {
        matches!(self, Self::AllKeysLfu | Self::VolatileLfu)
    }

    /// Whether only keys with a TTL may be evicted.
    pub fn volatile_only(self) -> bool {
        matches!(
            self,
            Self::VolatileLru | Self::VolatileLfu | Self::VolatileRandom | Self::VolatileTtl
        )
    }

    pub(crate) fn from_u8(v: u8) -> Self {
        Self::ALL.get(v as usize).copied().unwrap_or_default()
    }
}

impl fmt::Display for EvictionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown policy name.
#[derive(Debug, thiserror::Error)]
#[error("unknown maxmemory-policy '{0}'")]
pub struct UnknownPolicy(pub String);

impl FromStr for EvictionPolicy {
    type Err = UnknownPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownPolicy(s.to_string()))
    }
}

/// Access word for a fresh key.
pub(crate) fn initial_access(lfu: bool, now_ms: u64) -> u32 {
    if lfu {
        (lfu_minutes(now_ms) << 8) | LFU_INIT_VAL as u32
    } else {
        (now_ms / 1000) as u32
    }
}

fn lfu_minutes(now_ms: u64) -> u32 {
    ((now_ms / 60_000) & 0xffff) as u32
}

/// The LFU counter after applying time decay (Redis `LFUDecrAndReturn`).
pub(crate) fn lfu_decayed(access: u32, now_ms: u64, decay_time: u32) -> u8 {
    let counter = (access & 0xff) as u8;
    if decay_time == 0 {
        return counter;
    }
    let last = access >> 8;
    let now = lfu_minutes(now_ms);
    let elapsed = if now >= last {
        now - last
    } else {
        65_535 - last + now
    };
    let periods = elapsed / decay_time;
    counter.saturating_sub(periods.min(255) as u8)
}

/// Access word after one access.
pub(crate) fn touch(access: u32, lfu: bool, now_ms: u64, log_factor: u32, decay_time: u32) -> u32 {
    if !lfu {
        return (now_ms / 1000) as u32;
    }
    let mut counter = lfu_decayed(access, now_ms, decay_time);
    if counter < 255 {
        let base = counter.saturating_sub(LFU_INIT_VAL) as f64;
        let p = 1.0 / (base * log_factor as f64 + 1.0);
        if rand::thread_rng().gen::<f64>() < p {
            counter += 1;
        }
    }
    (lfu_minutes(now_ms) << 8) | counter as u32
}

/// Seconds since the last access under an LRU policy.
pub(crate) fn idle_seconds(access: u32, now_ms: u64) -> u64 {
    ((now_ms / 1000) as u32).wrapping_sub(access) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in EvictionPolicy::ALL {
            assert_eq!(p.as_str().parse::<EvictionPolicy>().unwrap(), p);
            assert_eq!(EvictionPolicy::from_u8(p as u8), p);
        }
        assert!("lru".parse::<EvictionPolicy>().is_err());
    }

    #[test]
    fn lfu_counter_grows_logarithmically_and_decays() {
        let now = 1_700_000_000_000u64;
        let mut a = initial_access(true, now);
        for _ in 0..10_000 {
            a = touch(a, true, now, 10, 1);
        }
        let c = lfu_decayed(a, now, 1);
        // Redis documents ~18 at 1k hits and ~142 at 100k hits for factor 10.
        assert!(c > 18 && c < 142, "counter {c}");
        // Ten minutes later the counter has decayed by ten.
        assert_eq!(lfu_decayed(a, now + 600_000, 1), c - 10);
    }
}
