//! Replication within a shard, end to end: real `shoal-server` processes, a
//! primary and replicas on loopback, concurrent writers over RESP and memcache,
//! links cut (CLIENT KILL, kill -9), promotion and fencing of a returning primary,
//! and chained replicas (a replica of a replica, through a promotion).
//!
//! Readiness is always polled (INFO, ROLE, DEBUG DIGEST) with a deadline; no
//! loop is unbounded and no fixed sleep stands in for a signal.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use shoal_tests::memcache::McConn;
use shoal_tests::resp::{encode_command, parse, RespConn};
use shoal_tests::servers::{free_port, shoal_server_bin};

/// A shoal-server child process; killed (-9) on drop.
struct Node {
    child: Option<Child>,
    port: u16,
    mc: u16,
    dir: PathBuf,
    extra: Vec<String>,
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "shoal-repl-{}-{tag}-{}",
        std::process::id(),
        free_port()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp dir");
    d
}

impl Node {
    fn start(tag: &str, extra: &[String]) -> Node {
        let mut n = Node {
            child: None,
            port: free_port(),
            mc: free_port(),
            dir: tmpdir(tag),
            extra: extra.to_vec(),
        };
        n.spawn();
        n
    }

    fn spawn(&mut self) {
        let bin = shoal_server_bin();
        assert!(bin.is_file(), "shoal-server not found at {}", bin.display());
        let log = std::fs::File::create(self.dir.join("log")).expect("log file");
        let child = Command::new(bin)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--memcache-port", &self.mc.to_string(), "--threads", "2"])
            .args(["--dir", self.dir.to_str().expect("utf8 dir")])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn shoal-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ping(self.port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "shoal-server on {} did not start: {}",
            self.port,
            self.log()
        );
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again with the same ports, directory and flags (or new flags).
    fn restart(&mut self, extra: Option<&[String]>) {
        self.kill9();
        if let Some(e) = extra {
            self.extra = e.to_vec();
        }
        self.spawn();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    fn replicaof_args(&self) -> Vec<String> {
        vec!["--replicaof".into(), format!("127.0.0.1 {}", self.port)]
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
        if std::env::var_os("SHOAL_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut b = [0u8; 7];
    s.read_exact(&mut b).is_ok() && &b == b"+PONG\r\n"
}

fn call(port: u16, args: &[&str]) -> Vec<u8> {
    RespConn::connect(port).call(args)
}

fn text(port: u16, args: &[&str]) -> String {
    String::from_utf8_lossy(&call(port, args)).to_string()
}

fn info(port: u16, field: &str) -> Option<String> {
    let raw = call(port, &["INFO", "all"]);
    let v = parse(&raw)?;
    let body = String::from_utf8_lossy(v.as_bytes()?).to_string();
    body.lines().find_map(|l| {
        l.strip_prefix(&format!("{field}:"))
            .map(|s| s.trim().to_string())
    })
}

fn info_u64(port: u16, field: &str) -> u64 {
    info(port, field).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out waiting for {what}");
}

fn link_up(replica: u16) -> bool {
    info(replica, "master_link_status").as_deref() == Some("up")
}

/// Waits until the replica has processed everything the primary has written.
fn caught_up(primary: u16, replica: u16, secs: u64) {
    wait_until(
        &format!("replica {replica} to catch up with {primary}"),
        secs,
        || {
            link_up(replica)
                && info_u64(replica, "slave_repl_offset") >= info_u64(primary, "master_repl_offset")
        },
    );
}

fn digest(port: u16) -> String {
    text(port, &["DEBUG", "DIGEST"])
}

/// Every key with its TYPE, via a full SCAN.
fn scan_all(port: u16) -> Vec<String> {
    let mut c = RespConn::connect(port);
    let mut cursor = "0".to_string();
    let mut keys = Vec::new();
    for _ in 0..100_000 {
        let raw = c.call(&["SCAN", &cursor, "COUNT", "1000"]);
        let v = parse(&raw).expect("scan reply");
        let els = v.elements().expect("scan array");
        cursor = String::from_utf8_lossy(els[0].as_bytes().expect("cursor")).to_string();
        for k in els[1].elements().expect("keys") {
            keys.push(String::from_utf8_lossy(k.as_bytes().expect("key")).to_string());
        }
        if cursor == "0" {
            break;
        }
    }
    keys.sort();
    keys
}

/// Primary and replicas hold the same data: digests and key sets agree
/// (polled: a TTL may pass between two reads).
fn converged(primary: u16, replicas: &[u16]) {
    for &r in replicas {
        caught_up(primary, r, 20);
    }
    wait_until("equal DEBUG DIGEST and SCAN on every replica", 10, || {
        let d = digest(primary);
        let keys = scan_all(primary);
        replicas
            .iter()
            .all(|&r| digest(r) == d && scan_all(r) == keys)
    });
}

/// Random writes over RESP until `stop`; returns how many ran.
fn resp_writer(port: u16, seed: u64, stop: Arc<AtomicBool>, max: usize) -> usize {
    let mut c = RespConn::connect(port);
    let mut rng = rand::rngs::StdRng::seed_from_u64_compat(seed);
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) && n < max {
        let k = format!("k{}", rng.gen_range(0..200));
        let v = rng.gen_range(0..1000).to_string();
        let args: Vec<String> = match rng.gen_range(0..10) {
            0 | 1 => vec!["SET".into(), k, v],
            2 => vec!["INCR".into(), format!("n{}", rng.gen_range(0..20))],
            3 => vec!["DEL".into(), k],
            4 => vec!["EXPIRE".into(), k, rng.gen_range(1..3).to_string()],
            5 => vec![
                "SET".into(),
                k,
                v,
                "PX".into(),
                rng.gen_range(50..1500).to_string(),
            ],
            6 => vec!["SADD".into(), format!("s{}", rng.gen_range(0..10)), v],
            7 => vec!["SPOP".into(), format!("s{}", rng.gen_range(0..10))],
            8 => vec!["RPUSH".into(), format!("l{}", rng.gen_range(0..10)), v],
            _ => vec!["HSET".into(), format!("h{}", rng.gen_range(0..10)), k, v],
        };
        let _ = c.call(&args);
        n += 1;
    }
    n
}

/// Random memcache writes (set/cas/incr/delete/touch) until `stop`.
fn mc_writer(port: u16, seed: u64, stop: Arc<AtomicBool>, max: usize) -> usize {
    let mut c = McConn::connect(port);
    let mut rng = rand::rngs::StdRng::seed_from_u64_compat(seed);
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) && n < max {
        let k = format!("m{}", rng.gen_range(0..50));
        match rng.gen_range(0..6) {
            0 | 1 => {
                let v = rng.gen_range(0..100).to_string();
                let req = format!("set {k} {} 0 {}\r\n{v}\r\n", rng.gen_range(0..5), v.len());
                c.request(req.as_bytes());
            }
            2 => {
                let r = c.request(format!("gets {k}\r\n").as_bytes());
                let cas = r.lines().next().and_then(|l| {
                    String::from_utf8_lossy(l)
                        .split(' ')
                        .nth(4)
                        .map(str::to_string)
                });
                if let Some(cas) = cas {
                    c.request(format!("cas {k} 7 0 2 {cas}\r\nok\r\n").as_bytes());
                }
            }
            3 => {
                c.request(format!("incr {k} 3\r\n").as_bytes());
            }
            4 => {
                c.request(format!("delete {k}\r\n").as_bytes());
            }
            _ => {
                c.request(format!("touch {k} {}\r\n", rng.gen_range(1..3)).as_bytes());
            }
        }
        n += 1;
    }
    n
}

/// `StdRng::seed_from_u64` without importing `SeedableRng` at every call site.
trait SeedCompat {
    fn seed_from_u64_compat(seed: u64) -> Self;
}

impl SeedCompat for rand::rngs::StdRng {
    fn seed_from_u64_compat(seed: u64) -> Self {
        <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed)
    }
}

/// SETs with long TTLs on fresh keys (`SET .. EX`, and `SET` + `PEXPIRE`,
/// pipelined so several land in the same millisecond) until `stop`: a key is
/// never touched again, so a replica that resolved a relative TTL on any clock
/// but the primary's keeps a different absolute expiry (and digest) for good
/// instead of until the key expires.
fn ttl_writer(port: u16, tag: u64, stop: Arc<AtomicBool>, max: usize) -> usize {
    let mut c = RespConn::connect(port);
    let mut n = 0;
    let mut batch = Vec::new();
    while !stop.load(Ordering::Relaxed) && n < max {
        let (k1, k2) = (format!("t{tag}-{n}-a"), format!("t{tag}-{n}-b"));
        batch.clear();
        batch.extend(encode_command(&["SET", &k1, "v", "EX", "100000"]));
        batch.extend(encode_command(&["SET", &k2, "v"]));
        batch.extend(encode_command(&["PEXPIRE", &k2, "100000000"]));
        c.send(&batch);
        for _ in 0..3 {
            let _ = c.read_reply();
        }
        n += 3;
    }
    n
}

fn spawn_writers(
    port: u16,
    mc: u16,
    stop: &Arc<AtomicBool>,
    max: usize,
) -> Vec<std::thread::JoinHandle<usize>> {
    let mut v = Vec::new();
    for seed in 0..3u64 {
        let s = stop.clone();
        v.push(std::thread::spawn(move || resp_writer(port, seed, s, max)));
    }
    let s = stop.clone();
    v.push(std::thread::spawn(move || mc_writer(mc, 99, s, max)));
    v
}

fn join(ws: Vec<std::thread::JoinHandle<usize>>) -> usize {
    ws.into_iter()
        .map(|h| h.join().expect("writer thread"))
        .sum()
}

#[test]
fn replicas_converge_under_concurrent_writes() {
    let p = Node::start("conv-p", &[]);
    let r1 = Node::start("conv-r1", &p.replicaof_args());
    wait_until("first replica link", 10, || link_up(r1.port));
    let stop = Arc::new(AtomicBool::new(false));
    let writers = spawn_writers(p.port, p.mc, &stop, 1500);
    // A second replica attaches while the writes run: full sync under load.
    let r2 = Node::start("conv-r2", &p.replicaof_args());
    wait_until("second replica link", 15, || link_up(r2.port));
    let n = join(writers);
    assert!(n > 1000, "writers ran {n} commands");
    converged(p.port, &[r1.port, r2.port]);
    assert_ne!(digest(p.port), "0".repeat(40));
    // Replicas are read-only on both protocols but serve reads.
    let ro = text(r1.port, &["SET", "x", "1"]);
    assert!(ro.starts_with("-READONLY"), "{ro}");
    let mut m = McConn::connect(r1.mc);
    let r = m.request(b"set x 0 0 1\r\n1\r\n");
    assert!(r.describe().starts_with("SERVER_ERROR"), "{}", r.describe());
    assert!(text(r1.port, &["DBSIZE"]).starts_with(':'));
    // ROLE and INFO on both sides.
    let role = parse(&call(r1.port, &["ROLE"])).expect("role");
    let els = role.elements().expect("role array");
    assert_eq!(els[0].as_bytes(), Some(&b"slave"[..]));
    assert_eq!(els[3].as_bytes(), Some(&b"connected"[..]));
    assert_eq!(info_u64(p.port, "connected_slaves"), 2);
    assert_eq!(info(p.port, "role").as_deref(), Some("master"));
    assert!(info(p.port, "slave0").is_some_and(|s| s.contains("state=online")));
    assert_eq!(info_u64(p.port, "sync_full"), 2);
    assert_eq!(info(r1.port, "slave_read_only").as_deref(), Some("1"));
}

#[test]
fn partial_resync_after_link_drop() {
    let p = Node::start("psync-p", &["--repl-backlog-size".into(), "1mb".into()]);
    let r = Node::start("psync-r", &p.replicaof_args());
    wait_until("link", 10, || link_up(r.port));
    for i in 0..200 {
        call(p.port, &["SET", &format!("a{i}"), &i.to_string()]);
    }
    caught_up(p.port, r.port, 10);
    let ok_before = info_u64(p.port, "sync_partial_ok");
    let killed = text(r.port, &["CLIENT", "KILL", "TYPE", "master"]);
    assert_eq!(killed, ":1\r\n");
    // Writes while the link is down land in the backlog.
    for i in 0..200 {
        call(p.port, &["INCR", &format!("c{}", i % 7)]);
    }
    wait_until("partial resync", 10, || {
        info_u64(p.port, "sync_partial_ok") > ok_before
    });
    converged(p.port, &[r.port]);
    assert_eq!(info_u64(p.port, "sync_full"), 1, "no second full sync");
    // The backlog is visible and bounded by its configured size.
    assert_eq!(info_u64(p.port, "repl_backlog_size"), 1024 * 1024);
    assert_eq!(
        text(p.port, &["CONFIG", "SET", "repl-backlog-size", "2mb"]),
        "+OK\r\n"
    );
    assert!(text(p.port, &["CONFIG", "GET", "repl-backlog-size"]).contains("2097152"));
}

#[test]
fn replica_killed_mid_stream_recovers() {
    let p = Node::start("kill-p", &[]);
    let mut r = Node::start("kill-r", &p.replicaof_args());
    wait_until("link", 10, || link_up(r.port));
    let stop = Arc::new(AtomicBool::new(false));
    let writers = spawn_writers(p.port, p.mc, &stop, 100_000);
    wait_until("some writes", 10, || {
        info_u64(p.port, "master_repl_offset") > 20_000
    });
    r.kill9();
    wait_until("primary notices", 10, || {
        info_u64(p.port, "connected_slaves") == 0
    });
    r.restart(None);
    wait_until("link after restart", 15, || link_up(r.port));
    stop.store(true, Ordering::Relaxed);
    join(writers);
    converged(p.port, &[r.port]);
}

#[test]
fn wait_failover_and_fencing_of_the_old_primary() {
    let mut p = Node::start("fo-p", &[]);
    let r1 = Node::start("fo-r1", &p.replicaof_args());
    let r2 = Node::start("fo-r2", &p.replicaof_args());
    wait_until("links", 10, || link_up(r1.port) && link_up(r2.port));
    assert_eq!(
        text(r1.port, &["WAIT", "1", "10"]).chars().next(),
        Some('-')
    );
    for i in 0..100 {
        call(p.port, &["SET", &format!("pre{i}"), "x"]);
    }
    // A write acknowledged by WAIT survives the primary's death.
    let mut c = RespConn::connect(p.port);
    assert_eq!(c.call(&["SET", "acked", "yes"]), b"+OK\r\n");
    assert_eq!(c.call(&["WAIT", "2", "5000"]), b":2\r\n");
    drop(c);
    // WAIT with a timeout and not enough replicas returns what it has.
    assert_eq!(text(p.port, &["WAIT", "3", "100"]), ":2\r\n");
    p.kill9();
    wait_until("replicas notice", 10, || {
        !link_up(r1.port) && !link_up(r2.port)
    });
    // Promote the most up-to-date replica, re-point the other.
    let (new, other) =
        if info_u64(r1.port, "slave_repl_offset") >= info_u64(r2.port, "slave_repl_offset") {
            (&r1, &r2)
        } else {
            (&r2, &r1)
        };
    assert_eq!(text(new.port, &["REPLICAOF", "NO", "ONE"]), "+OK\r\n");
    assert_eq!(info(new.port, "role").as_deref(), Some("master"));
    assert_eq!(info_u64(new.port, "shoal_repl_epoch"), 1);
    assert_eq!(text(new.port, &["GET", "acked"]), "$3\r\nyes\r\n");
    let np = new.port.to_string();
    assert_eq!(
        text(other.port, &["REPLICAOF", "127.0.0.1", &np]),
        "+OK\r\n"
    );
    wait_until("sibling link", 10, || link_up(other.port));
    // PSYNC2: the sibling continued from the shared history.
    assert_eq!(info_u64(new.port, "sync_partial_ok"), 1);
    assert_eq!(info_u64(new.port, "sync_full"), 0);
    call(new.port, &["SET", "after-promotion", "1"]);
    // The old primary comes back with its old configuration (a primary, epoch 0):
    // it must not take writes; it finds the newer epoch and follows the new primary.
    p.restart(None);
    let early = text(p.port, &["SET", "stale", "1"]);
    assert!(
        early.starts_with("-READONLY"),
        "old primary took a write: {early}"
    );
    wait_until("old primary to demote itself", 10, || {
        info(p.port, "role").as_deref() == Some("slave") && link_up(p.port)
    });
    let late = text(p.port, &["SET", "stale", "1"]);
    assert!(late.starts_with("-READONLY"), "{late}");
    assert_eq!(info_u64(p.port, "shoal_repl_epoch"), 1);
    converged(new.port, &[other.port, p.port]);
    assert_eq!(text(p.port, &["GET", "after-promotion"]), "$1\r\n1\r\n");
    assert_eq!(text(p.port, &["GET", "acked"]), "$3\r\nyes\r\n");
    assert_eq!(text(new.port, &["EXISTS", "stale"]), ":0\r\n");
}

#[test]
fn failover_command_hands_over_without_losing_writes() {
    let p = Node::start("fc-p", &[]);
    let r = Node::start("fc-r", &p.replicaof_args());
    wait_until("link", 10, || link_up(r.port));
    for i in 0..100 {
        call(p.port, &["RPUSH", "list", &i.to_string()]);
    }
    let rp = r.port.to_string();
    assert_eq!(
        text(
            p.port,
            &["FAILOVER", "TO", "127.0.0.1", &rp, "TIMEOUT", "5000"]
        ),
        "+OK\r\n"
    );
    wait_until("roles swapped", 10, || {
        info(r.port, "role").as_deref() == Some("master")
            && info(p.port, "role").as_deref() == Some("slave")
            && link_up(p.port)
    });
    assert_eq!(text(r.port, &["LLEN", "list"]), ":100\r\n");
    call(r.port, &["RPUSH", "list", "100"]);
    converged(r.port, &[p.port]);
    // The old primary continued partially from the new one (same history).
    assert_eq!(info_u64(r.port, "sync_partial_ok"), 1);
    assert!(info_u64(r.port, "shoal_repl_epoch") >= 1);
    assert_eq!(
        info(p.port, "master_failover_state").as_deref(),
        Some("no-failover")
    );
}

#[test]
fn stale_replica_and_min_replicas() {
    let p = Node::start("mr-p", &[]);
    let r = Node::start(
        "mr-r",
        &[
            "--replicaof".into(),
            format!("127.0.0.1 {}", p.port),
            "--replica-serve-stale-data".into(),
            "no".into(),
        ],
    );
    wait_until("link", 10, || link_up(r.port));
    assert_eq!(
        text(p.port, &["CONFIG", "SET", "min-replicas-to-write", "2"]),
        "+OK\r\n"
    );
    assert_eq!(
        text(p.port, &["SET", "a", "1"]),
        "-NOREPLICAS Not enough good replicas to write.\r\n"
    );
    assert_eq!(
        text(p.port, &["CONFIG", "SET", "min-replicas-to-write", "1"]),
        "+OK\r\n"
    );
    assert_eq!(text(p.port, &["SET", "a", "1"]), "+OK\r\n");
    caught_up(p.port, r.port, 10);
    assert_eq!(text(r.port, &["GET", "a"]), "$1\r\n1\r\n");
    // Link down + replica-serve-stale-data no: reads refused, INFO still answers.
    assert_eq!(
        text(
            r.port,
            &["REPLICAOF", "127.0.0.1", &free_port().to_string()]
        ),
        "+OK\r\n"
    );
    wait_until("link down", 10, || !link_up(r.port));
    assert_eq!(
        text(r.port, &["GET", "a"]),
        "-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.\r\n"
    );
    assert_eq!(info(r.port, "master_link_status").as_deref(), Some("down"));
}

/// A → B → C: C replicates from the replica B and receives A's stream as B
/// applies it (same replication id and offsets as A). C attaches while the
/// writes run (a full sync served by a replica) and B's own link to A is cut
/// and resumes partially meanwhile, without C noticing.
#[test]
fn chained_replica_follows_the_stream() {
    // A backlog that outlasts B's reconnect (0.5 s) under this write rate.
    let backlog = ["--repl-backlog-size".to_string(), "32mb".to_string()];
    let a = Node::start("chain-a", &backlog);
    let b = Node::start("chain-b", &[&backlog[..], &a.replicaof_args()].concat());
    wait_until("B's link to A", 10, || link_up(b.port));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = spawn_writers(a.port, a.mc, &stop, 100_000);
    let s = stop.clone();
    writers.push(std::thread::spawn(move || {
        ttl_writer(a.port, 1, s, 300_000)
    }));
    wait_until("writes on A", 15, || {
        info_u64(a.port, "master_repl_offset") > 100_000
    });
    let c = Node::start("chain-c", &[&backlog[..], &b.replicaof_args()].concat());
    wait_until("C's link to B", 15, || link_up(c.port));
    let mark = info_u64(a.port, "master_repl_offset");
    wait_until("more writes on A after C attached", 15, || {
        info_u64(a.port, "master_repl_offset") > mark + 100_000
    });
    // B's link to A drops and comes back (partial resync); C stays attached to B.
    assert_eq!(
        text(b.port, &["CLIENT", "KILL", "TYPE", "master"]),
        ":1\r\n"
    );
    wait_until("B's partial resync with A", 10, || {
        info_u64(a.port, "sync_partial_ok") == 1 && link_up(b.port)
    });
    let mark = info_u64(a.port, "master_repl_offset");
    wait_until("more writes on A after B resynced", 15, || {
        info_u64(a.port, "master_repl_offset") > mark + 100_000
    });
    stop.store(true, Ordering::Relaxed);
    let n = join(writers);
    assert!(n > 1000, "writers ran {n} commands");
    converged(a.port, &[b.port, c.port]);
    assert_ne!(digest(c.port), "0".repeat(40));
    // C follows B but carries A's history: same replication id and offsets.
    assert_eq!(info(c.port, "role").as_deref(), Some("slave"));
    assert_eq!(info(c.port, "master_host").as_deref(), Some("127.0.0.1"));
    assert_eq!(info_u64(c.port, "master_port"), u64::from(b.port));
    assert_eq!(info(c.port, "master_link_status").as_deref(), Some("up"));
    let a_id = info(a.port, "master_replid").expect("A's replid");
    assert_eq!(info(b.port, "master_replid").as_deref(), Some(&*a_id));
    assert_eq!(info(c.port, "master_replid").as_deref(), Some(&*a_id));
    // One full sync each (A → B, B → C), B's resync was partial, and C never
    // reconnected (it would show on B as a full or a partial sync).
    assert_eq!(info_u64(a.port, "sync_full"), 1);
    assert_eq!(info_u64(a.port, "sync_partial_ok"), 1);
    assert_eq!(info_u64(b.port, "sync_full"), 1);
    assert_eq!(info_u64(b.port, "sync_partial_ok"), 0);
    assert_eq!(info_u64(a.port, "connected_slaves"), 1);
    assert_eq!(info_u64(b.port, "connected_slaves"), 1);
    assert!(info(b.port, "slave0").is_some_and(|s| s.contains(&format!("port={}", c.port))));
    // Both replicas refuse writes, on both protocols.
    for port in [b.port, c.port] {
        let ro = text(port, &["SET", "x", "1"]);
        assert!(ro.starts_with("-READONLY"), "{ro}");
    }
    let mut m = McConn::connect(c.mc);
    let r = m.request(b"set x 0 0 1\r\n1\r\n");
    assert!(r.describe().starts_with("SERVER_ERROR"), "{}", r.describe());
}

/// A → B → C, then A dies and B is promoted: C continues from B with a partial
/// resync (PSYNC2: B keeps A's id as replid2) and converges to B's new writes.
#[test]
fn chained_replica_survives_promotion_of_its_master() {
    let mut a = Node::start("chainp-a", &[]);
    let b = Node::start("chainp-b", &a.replicaof_args());
    wait_until("B's link to A", 10, || link_up(b.port));
    let c = Node::start("chainp-c", &b.replicaof_args());
    wait_until("C's link to B", 10, || link_up(c.port));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = spawn_writers(a.port, a.mc, &stop, 600);
    let s = stop.clone();
    writers.push(std::thread::spawn(move || ttl_writer(a.port, 2, s, 2000)));
    join(writers);
    converged(a.port, &[b.port, c.port]);
    let a_id = info(a.port, "master_replid").expect("A's replid");
    assert_eq!(info(c.port, "master_replid").as_deref(), Some(&*a_id));
    a.kill9();
    wait_until("B to notice A is gone", 10, || !link_up(b.port));
    // B's link being down does not cut C off B (Redis keeps sub-replicas).
    assert!(link_up(c.port), "C lost its link to B when A died");
    let b_full = info_u64(b.port, "sync_full");
    assert_eq!(b_full, 1);
    assert_eq!(text(b.port, &["REPLICAOF", "NO", "ONE"]), "+OK\r\n");
    assert_eq!(info(b.port, "role").as_deref(), Some("master"));
    let b_id = info(b.port, "master_replid").expect("B's replid");
    assert_ne!(b_id, a_id);
    assert_eq!(info(b.port, "master_replid2").as_deref(), Some(&*a_id));
    // Writes on the new primary while C reconnects to it.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = spawn_writers(b.port, b.mc, &stop, 600);
    let s = stop.clone();
    writers.push(std::thread::spawn(move || ttl_writer(b.port, 3, s, 2000)));
    wait_until("C's link to the promoted B", 10, || {
        info(c.port, "master_replid").as_deref() == Some(&*b_id) && link_up(c.port)
    });
    let n = join(writers);
    assert!(n > 1000, "writers ran {n} commands");
    converged(b.port, &[c.port]);
    // PSYNC2: C continued from the shared history, no new full sync.
    assert_eq!(info_u64(b.port, "sync_full"), b_full, "C full-synced again");
    assert_eq!(info_u64(b.port, "sync_partial_ok"), 1);
    assert_eq!(info(c.port, "master_replid2").as_deref(), Some(&*a_id));
    assert_eq!(info_u64(c.port, "master_port"), u64::from(b.port));
    let ro = text(c.port, &["SET", "x", "1"]);
    assert!(ro.starts_with("-READONLY"), "{ro}");
}
