//! Address strings: `listen:` values, `servers:` lines and replica addresses.
//!
//! Like twemproxy, `host:port` is split at the *last* colon, so a bare IPv6 address works
//! (`::1:22121`); the bracketed form (`[::1]:22121`) is accepted too. Hosts are stored
//! without brackets.

use super::{clip, Listen};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

/// A host for display: IPv6 in brackets.
pub(super) fn host_display(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// `host:port`, IPv6 in brackets.
pub(super) fn host_port(host: &str, port: u16) -> String {
    format!("{}:{port}", host_display(host))
}

/// A parsed `servers:` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ServerLine {
    pub host: String,
    pub port: u16,
    pub weight: u32,
    pub name: Option<String>,
}

fn port(text: &str) -> Result<u16, String> {
    match text.parse::<u32>() {
        Ok(p @ 1..=65535) if text.bytes().all(|b| b.is_ascii_digit()) => Ok(p as u16),
        _ => Err(format!(
            "port must be a number from 1 to 65535, got `{}`",
            clip(text)
        )),
    }
}

/// Validates a host (IPv4, IPv6 bare or in brackets, or a host name); returns it without
/// brackets.
fn host(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("the host is missing".to_string());
    }
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return match inner.parse::<Ipv6Addr>() {
            Ok(_) => Ok(inner.to_string()),
            Err(_) => Err(format!("`{}` is not an IPv6 address", clip(inner))),
        };
    }
    if text.contains(':') {
        return match text.parse::<Ipv6Addr>() {
            Ok(_) => Ok(text.to_string()),
            Err(_) => Err(format!(
                "`{}` is not a valid host (IPv6 addresses go in brackets: [::1])",
                clip(text)
            )),
        };
    }
    if text.parse::<Ipv4Addr>().is_ok() {
        return Ok(text.to_string());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let name = text.strip_suffix('.').unwrap_or(text);
    if name.len() <= 253 && name.split('.').all(label_ok) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "`{}` is not a valid host name or IP address",
            clip(text)
        ))
    }
}

/// `host:port` (replicas, and the TCP form of `listen`).
pub(super) fn parse_host_port(text: &str) -> Result<(String, u16), String> {
    if text.chars().any(char::is_whitespace) {
        return Err(format!(
            "expected host:port, got `{}` (spaces are not allowed)",
            clip(text)
        ));
    }
    let Some((h, p)) = text.rsplit_once(':') else {
        return Err(format!("expected host:port, got `{}`", clip(text)));
    };
    let port = port(p)?;
    match host(h) {
        Ok(h) => Ok((h, port)),
        Err(e) => {
            // `127.0.0.1:7101:1`: a server line where an address was expected.
            if let Some((h2, p2)) = h.rsplit_once(':') {
                if host(h2).is_ok() && self::port(p2).is_ok() {
                    return Err(format!(
                        "expected host:port, got `{}` (no weight or name here)",
                        clip(text)
                    ));
                }
            }
            Err(e)
        }
    }
}

/// A `listen:` value: `host:port`, `[v6]:port`, or `/abs/path [octal perm]`.
pub(super) fn parse_listen(text: &str) -> Result<Listen, String> {
    if text.starts_with('/') {
        // twemproxy: "socket_path permissions", split at the last space.
        let (path, perm) = match text.rsplit_once(' ') {
            None => (text, None),
            Some((path, perm)) => {
                let ok = !perm.is_empty()
                    && perm.len() <= 5
                    && perm.bytes().all(|b| (b'0'..=b'7').contains(&b));
                match u32::from_str_radix(perm, 8) {
                    Ok(p) if ok && p <= 0o777 => (path.trim_end(), Some(p)),
                    _ => {
                        return Err(format!(
                            "unix socket permissions must be octal from 0 to 0777 (`/path/to.sock 0666`), got `{}`",
                            clip(perm)
                        ))
                    }
                }
            }
        };
        if path.len() <= 1 {
            return Err(format!("`{}` is not a unix socket path", clip(path)));
        }
        return Ok(Listen::Unix(PathBuf::from(path), perm));
    }
    if !text.contains(':') {
        return Err(format!(
            "expected host:port or an absolute unix socket path, got `{}`",
            clip(text)
        ));
    }
    parse_host_port(text).map(|(h, p)| Listen::Tcp(h, p))
}

/// A `servers:` line: `host:port:weight [name]` or `/path/sock:weight [name]`.
pub(super) fn parse_server(text: &str) -> Result<ServerLine, String> {
    let text = text.trim();
    let (address, name) = match text.split_once(char::is_whitespace) {
        None => (text, None),
        Some((a, n)) => {
            let n = n.trim();
            if n.chars().any(char::is_whitespace) {
                return Err(format!("server name `{}` must not contain spaces", clip(n)));
            }
            (a, Some(n.to_string()))
        }
    };
    let weight = |w: &str| match w.parse::<u32>() {
        Ok(n)
            if n >= 1
                && u64::from(n) <= super::MAX_NUMBER
                && w.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Ok(n)
        }
        _ => Err(format!(
            "weight must be a positive integer, got `{}`",
            clip(w)
        )),
    };
    if address.starts_with('/') {
        let Some((path, w)) = address.rsplit_once(':') else {
            return Err(format!(
                "expected /path/to.sock:weight [name], got `{}`",
                clip(text)
            ));
        };
        let weight = weight(w)?;
        if path.len() <= 1 {
            return Err(format!("`{}` is not a unix socket path", clip(path)));
        }
        return Ok(ServerLine {
            host: path.to_string(),
            port: 0,
            weight,
            name,
        });
    }
    let parts = address
        .rsplit_once(':')
        .and_then(|(hp, w)| hp.rsplit_once(':').map(|(h, p)| (h, p, w)));
    let Some((h, p, w)) = parts else {
        let hint = if address.contains(':') {
            " (the weight is missing?)"
        } else {
            ""
        };
        return Err(format!(
            "expected host:port:weight [name], got `{}`{hint}",
            clip(text)
        ));
    };
    // A bracketed IPv6 host whose last colon split landed inside the brackets means the
    // weight is missing: `[::1]:6379`.
    if h.starts_with('[') && !h.ends_with(']') {
        return Err(format!(
            "expected host:port:weight [name], got `{}` (the weight is missing?)",
            clip(text)
        ));
    }
    let port = port(p)?;
    let weight = weight(w)?;
    let host = host(h)?;
    if name.as_deref() == Some("") {
        return Ok(ServerLine {
            host,
            port,
            weight,
            name: None,
        });
    }
    Ok(ServerLine {
        host,
        port,
        weight,
        name,
    })
}
