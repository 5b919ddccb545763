//! Server CPU time from `/proc/PID/stat` (utime + stime of all its threads).

use anyhow::{anyhow, Context, Result};

/// Clock ticks per second, from `getconf CLK_TCK` once; 100 when unavailable
/// (the value on every mainstream Linux build).
pub fn clock_ticks_per_sec() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// utime + stime of process `pid`, in clock ticks.
pub fn process_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat_ticks(&stat).ok_or_else(|| anyhow!("cannot parse {path}"))
}

/// The comm field (2) may hold spaces and parentheses: fields are counted
/// from the last `)`. After it, field 3 (state) is index 0, so utime (14) is
/// index 11 and stime (15) index 12.
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_line() {
        let line = "1234 (redis-server (x)) S 1 1234 1234 0 -1 4194560 5000 0 0 0 250 75 0 0 20 0 5 0 100 0 0";
        assert_eq!(parse_stat_ticks(line), Some(325));
    }

    #[test]
    fn reads_own_process() {
        assert!(process_ticks(std::process::id()).is_ok());
    }
}
