//! Bad input, limits and operations of a real `shoal-server` process: hostile
//! frame lengths never reserve memory, limits close connections with the right
//! errors, maxclients/idle timeout/query buffer limits hold, /metrics serves
//! Prometheus text, config errors are all reported, SIGTERM shuts down cleanly.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shoal_tests::servers::{free_port, probe, shoal_server_bin};

/// A shoal-server started with extra flags; killed on drop.
struct Shoal {
    child: Child,
    port: u16,
    mc_port: u16,
}

impl Shoal {
    fn start(extra: &[&str]) -> Shoal {
        let bin = shoal_server_bin();
        assert!(bin.is_file(), "shoal-server not found at {}", bin.display());
        for _attempt in 0..5 {
            let (port, mc_port) = (free_port(), free_port());
            let child = Command::new(&bin)
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--memcache-port", &mc_port.to_string(), "--threads", "2"])
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn shoal-server");
            let mut s = Shoal {
                child,
                port,
                mc_port,
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if probe(port, b"PING\r\n", b"+PONG") {
                    return s;
                }
                if !matches!(s.child.try_wait(), Ok(None)) {
                    break; // port taken: retry with others
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = s.child.kill();
        }
        panic!("shoal-server did not become ready");
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn rss_kb(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    fn connect(&self, port: u16) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }
}

impl Drop for Shoal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads until EOF (or the 5 s read timeout); returns everything read and whether EOF came.
fn read_to_eof(s: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            // A close with unread input arrives as a reset: still closed.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (out, true),
            Err(_) => return (out, false),
        }
    }
}

fn read_some(s: &mut TcpStream, want: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < want {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

#[test]
fn hostile_lengths_get_protocol_errors_and_reserve_nothing() {
    let srv = Shoal::start(&[]);
    let before = srv.rss_kb();
    // A bulk length beyond proto-max-bulk-len: error and close, like Redis.
    let mut s = srv.connect(srv.port);
    s.write_all(b"*1\r\n$100000000000\r\n").unwrap();
    let (reply, eof) = read_to_eof(&mut s);
    assert_eq!(reply, b"-ERR Protocol error: invalid bulk length\r\n");
    assert!(eof, "connection must be closed after a protocol error");
    // Legal but huge declared sizes that never arrive: nothing is reserved up front.
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut s = srv.connect(srv.port);
        s.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870912\r\nabc")
            .unwrap();
        held.push(s);
        let mut s = srv.connect(srv.port);
        s.write_all(b"*2000000000\r\n$3\r\nGET\r\n").unwrap();
        held.push(s);
    }
    // The server still answers, and has not grown by anything like the declared sizes.
    assert!(probe(srv.port, b"PING\r\n", b"+PONG"));
    let grown_mb = srv.rss_kb().saturating_sub(before) / 1024;
    assert!(
        grown_mb < 64,
        "RSS grew by {grown_mb} MB for frames that never arrived"
    );
    drop(held);
    // Malformed multibulk count.
    let mut s = srv.connect(srv.port);
    s.write_all(b"*-x\r\n").unwrap();
    let (reply, eof) = read_to_eof(&mut s);
    assert_eq!(reply, b"-ERR Protocol error: invalid multibulk length\r\n");
    assert!(eof);
}

#[test]
fn query_buffer_limit_closes_the_client() {
    let srv = Shoal::start(&["--client-query-buffer-limit", "1mb"]);
    let mut s = srv.connect(srv.port);
    s.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4000000\r\n")
        .unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    let mut closed = false;
    while sent < 3_000_000 {
        if s.write_all(&chunk).is_err() {
            closed = true;
            break;
        }
        sent += chunk.len();
    }
    if !closed {
        let (_, eof) = read_to_eof(&mut s);
        closed = eof;
    }
    assert!(
        closed,
        "a client past client-query-buffer-limit must be disconnected"
    );
    assert!(probe(srv.port, b"PING\r\n", b"+PONG"));
}

#[test]
fn memcache_limits_keep_the_connection_usable() {
    let srv = Shoal::start(&["--max-item-size", "1mb"]);
    let mut s = srv.connect(srv.mc_port);
    let long_key = "k".repeat(251);
    s.write_all(format!("get {long_key}\r\n").as_bytes())
        .unwrap();
    assert_eq!(
        read_some(&mut s, 38),
        b"CLIENT_ERROR bad command line format\r\n"
    );
    // A value over the item size limit is refused and its data swallowed.
    let big = vec![b'v'; 2 * 1024 * 1024];
    s.write_all(format!("set big 0 0 {}\r\n", big.len()).as_bytes())
        .unwrap();
    s.write_all(&big).unwrap();
    s.write_all(b"\r\nset small 0 0 2\r\nok\r\nget small\r\n")
        .unwrap();
    let want =
        b"SERVER_ERROR object too large for cache\r\nSTORED\r\nVALUE small 0 2\r\nok\r\nEND\r\n";
    assert_eq!(read_some(&mut s, want.len()), want);
}

#[test]
fn maxclients_and_idle_timeout() {
    let srv = Shoal::start(&["--maxclients", "3", "--timeout", "1"]);
    // Open connections until one is refused. The readiness probe's connection may
    // still be counted for a moment, so 2 or 3 may be accepted, never more.
    let mut accepted = Vec::new();
    let mut refused = None;
    for _ in 0..8 {
        let mut s = srv.connect(srv.port);
        let _ = s.write_all(b"PING\r\n");
        let reply = read_some(&mut s, 7);
        if reply == b"+PONG\r\n" {
            accepted.push(s);
        } else {
            refused = Some((reply, s));
            break;
        }
    }
    let (reply, mut s) = refused.expect("maxclients never refused a connection");
    assert_eq!(reply, b"-ERR max number of clients reached\r\n");
    assert!(read_to_eof(&mut s).1, "refused connection must be closed");
    assert!(
        (2..=3).contains(&accepted.len()),
        "accepted {}",
        accepted.len()
    );
    // Idle clients are closed after `timeout` seconds.
    let mut c = accepted.pop().unwrap();
    let started = Instant::now();
    let (_, eof) = read_to_eof(&mut c);
    assert!(eof, "idle client not closed");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn metrics_endpoint_serves_prometheus_text() {
    let mport = free_port();
    let srv = Shoal::start(&["--metrics-port", &mport.to_string()]);
    let mut s = srv.connect(srv.port);
    s.write_all(b"SET a 1\r\nGET a\r\nGET missing\r\n").unwrap();
    assert_eq!(read_some(&mut s, 16), b"+OK\r\n$1\r\n1\r\n$-1\r\n");
    // Per-thread stats are published once a second: poll, bounded.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut body = String::new();
    while Instant::now() < deadline {
        if let Ok(mut h) = TcpStream::connect(("127.0.0.1", mport)) {
            h.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let _ = h.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let (resp, _) = read_to_eof(&mut h);
            body = String::from_utf8_lossy(&resp).to_string();
            if body.contains("shoal_commands_total") && body.contains("shoal_keyspace_hits_total") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(body.contains("200 OK"), "{body}");
    assert!(
        body.contains(r#"shoal_commands_total{protocol="resp",command="get"} 2"#),
        "{body}"
    );
    assert!(
        body.contains("shoal_command_duration_seconds_bucket"),
        "{body}"
    );
    assert!(body.contains("shoal_used_memory_bytes"), "{body}");
}

#[test]
fn config_errors_are_all_reported() {
    let dir = std::env::temp_dir().join(format!("shoal-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "port = 7000\nmaxmemory_policy = \"lru\"\nbind = \"nope\"\n",
    )
    .unwrap();
    let out = Command::new(shoal_server_bin())
        .args(["--config", bad.to_str().unwrap(), "--check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("maxmemory_policy") && err.contains("bind"),
        "{err}"
    );
    let typo = dir.join("typo.toml");
    std::fs::write(&typo, "prot = 7000\n").unwrap();
    let out = Command::new(shoal_server_bin())
        .args(["--config", typo.to_str().unwrap(), "--check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field"));
    let sample = shoal_tests::servers::workspace_root().join("deploy/shoal.toml");
    let out = Command::new(shoal_server_bin())
        .args(["--config", sample.to_str().unwrap(), "--check-config"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_drains_and_exits_cleanly() {
    let mut srv = Shoal::start(&[]);
    let mut s = srv.connect(srv.port);
    s.write_all(b"SET k v\r\n").unwrap();
    assert_eq!(read_some(&mut s, 5), b"+OK\r\n");
    // SAFETY-free: kill(1) via the command line keeps this test free of libc.
    let st = Command::new("kill")
        .args(["-TERM", &srv.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Ok(Some(st)) = srv.child.try_wait() {
            break st.code();
        }
        assert!(
            Instant::now() < deadline,
            "shoal-server did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(0));
    let (_, eof) = read_to_eof(&mut s);
    assert!(eof, "client connection must be closed on shutdown");
}
