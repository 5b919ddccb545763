//! Differential test of `shoal_client::ring` against the real `nutcracker` (twemproxy 0.5.0).
//!
//! Four `redis-server` backends (127.0.0.1, free ports) and four `memcached` backends (random
//! 127.x.y.z addresses, all on port 11211, so twemproxy's "a server on port 11211 is named
//! by its host alone" rule is exercised) sit behind one `nutcracker` with many pools: every
//! hash with ketama, modula with most hashes, random, hash tags `{}` and `$$`, odd weights,
//! named and unnamed servers listed out of name order, a one-server pool, and the golden
//! pools of the unit tests in `client/src/ring/tests.rs`. Each redis pool writes to its own
//! database (`redis_db`), so pools share backends and even keys (the empty key included).
//!
//! Every key is SET through the proxy, then every backend is asked which keys it holds, and
//! `Ring` must name the same server for every key. Then a backend is killed, two
//! `auto_eject_hosts` pools are made to notice (one failing request each), and keys written
//! afterwards must land where `Ring::with_live` puts them.
//!
//! `SHOAL_KEEP_LOGS=1` keeps the logs and the nutcracker configuration.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shoal_client::ring::{hash_tag, Distribution, HashKind, Ring, RingNode};
use shoal_tests::escape;
use shoal_tests::servers::{free_port, require_program};

/// Keys written through each pool.
const KEYS_PER_POOL: usize = 10_000;
/// Commands per pipelined batch.
const BATCH: usize = 500;
/// Longest wait for any single reply.
const IO_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for a process to start answering.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// The redis backend killed for the ejection phase.
const DEAD: usize = 2;
/// Mismatches shown per pool.
const SHOWN: usize = 12;

// ---------------------------------------------------------------------------------------
// Processes

/// A child process with its log, killed (and reaped) on drop.
struct Proc {
    what: String,
    child: Child,
    log: PathBuf,
}

fn keep_logs() -> bool {
    std::env::var_os("SHOAL_KEEP_LOGS").is_some()
}

fn temp_path(tag: &str, ext: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "shoal-proxy-ring-{}-{tag}-{}.{ext}",
        std::process::id(),
        free_port()
    ))
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to a fresh log file.
    fn spawn(what: &str, log: PathBuf, mut cmd: Command) -> Proc {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("create log file");
        let err = out.try_clone().expect("clone log handle");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {what} ({cmd:?}) failed: {e}"));
        Proc {
            what: what.to_string(),
            child,
            log,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls until every address in `addrs` answers `probe` with a reply starting with
    /// `expect` (or just accepts a connection when `probe` is empty).
    fn wait_ready(
        &mut self,
        addrs: &[SocketAddrV4],
        probe: &[u8],
        expect: &[u8],
    ) -> Result<(), String> {
        let start = Instant::now();
        let mut pending: Vec<SocketAddrV4> = addrs.to_vec();
        let mut pause = Duration::from_millis(5);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{} exited with {status} before answering; log:\n{}",
                    self.what,
                    self.log_text()
                ));
            }
            pending.retain(|&addr| !answers(addr, probe, expect));
            if pending.is_empty() {
                return Ok(());
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(format!(
                    "{} not answering on {pending:?} after {READY_TIMEOUT:?}; log:\n{}",
                    self.what,
                    self.log_text()
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if keep_logs() {
            eprintln!("[proxy_ring] kept log {}", self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

fn answers(addr: SocketAddrV4, probe: &[u8], expect: &[u8]) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&SocketAddr::V4(addr), Duration::from_millis(200))
    else {
        return false;
    };
    if probe.is_empty() {
        return true;
    }
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(probe).is_err() {
        return false;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < expect.len() {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got.starts_with(expect)
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A backend server and the address nutcracker reaches it on.
struct Backend {
    addr: SocketAddrV4,
    _proc: Proc,
}

/// `redis-server` on 127.0.0.1 and a free port, with enough databases for one per pool.
fn spawn_redis(i: usize) -> Backend {
    let bin = require_program("redis-server");
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port();
        let mut cmd = Command::new(&bin);
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--databases", "64"])
            .args(["--daemonize", "no", "--logfile", ""]);
        let mut proc = Proc::spawn(
            &format!("redis-server #{i}"),
            temp_path("redis", "log"),
            cmd,
        );
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        match proc.wait_ready(&[addr], b"*1\r\n$4\r\nPING\r\n", b"+PONG\r\n") {
            Ok(()) => return Backend { addr, _proc: proc },
            Err(e) => last = e,
        }
    }
    panic!("could not start redis-server #{i}: {last}");
}

/// `memcached` on port 11211 of a random 127.x.y.z address (retried on another address
/// when that one is taken).
fn spawn_memcached(i: usize, rng: &mut SmallRng) -> Backend {
    let bin = require_program("memcached");
    let mut last = String::new();
    for _ in 0..10 {
        let ip = Ipv4Addr::new(
            127,
            rng.gen_range(16..=250),
            rng.gen(),
            rng.gen_range(1..=254),
        );
        let mut cmd = Command::new(&bin);
        cmd.args(["-l", &ip.to_string(), "-p", "11211", "-U", "0", "-t", "1"]);
        if running_as_root() {
            cmd.args(["-u", "root"]);
        }
        let mut proc = Proc::spawn(
            &format!("memcached #{i} on {ip}"),
            temp_path("memcached", "log"),
            cmd,
        );
        let addr = SocketAddrV4::new(ip, 11211);
        match proc.wait_ready(&[addr], b"version\r\n", b"VERSION ") {
            Ok(()) => return Backend { addr, _proc: proc },
            Err(e) => last = e,
        }
    }
    panic!("could not start memcached #{i} on any 127.x.y.z:11211: {last}");
}

// ---------------------------------------------------------------------------------------
// Wire

/// A blocking connection that reads CRLF lines and exact-length payloads.
struct Wire {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    peer: String,
}

impl Wire {
    fn connect(addr: SocketAddrV4, peer: &str) -> Wire {
        let s = TcpStream::connect_timeout(&SocketAddr::V4(addr), Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connecting to {peer} at {addr}: {e}"));
        s.set_nodelay(true).ok();
        s.set_read_timeout(Some(IO_TIMEOUT)).ok();
        s.set_write_timeout(Some(IO_TIMEOUT)).ok();
        let reader = BufReader::with_capacity(1 << 16, s.try_clone().expect("clone socket"));
        Wire {
            reader,
            writer: s,
            peer: format!("{peer} at {addr}"),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("writing to {}: {e}", self.peer));
    }

    /// One line, without its CRLF.
    fn line(&mut self) -> Vec<u8> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(_) if line.ends_with(b"\r\n") => {
                line.truncate(line.len() - 2);
                line
            }
            Ok(_) => panic!(
                "{} closed the connection (partial line {})",
                self.peer,
                escape(&line)
            ),
            Err(e) => panic!("reading from {}: {e}", self.peer),
        }
    }

    /// `n` bytes of payload followed by CRLF.
    fn payload(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n + 2];
        self.reader
            .read_exact(&mut buf)
            .unwrap_or_else(|e| panic!("reading {n} bytes from {}: {e}", self.peer));
        assert_eq!(
            &buf[n..],
            b"\r\n",
            "payload from {} not CRLF-terminated",
            self.peer
        );
        buf.truncate(n);
        buf
    }

    /// Sends a RESP command and expects `+OK`.
    fn resp_ok(&mut self, args: &[&[u8]]) {
        self.send(&resp_command(args));
        let line = self.line();
        assert_eq!(line, b"+OK", "{} answered {}", self.peer, escape(&line));
    }

    /// `KEYS *` in the current database.
    fn resp_keys(&mut self) -> Vec<Vec<u8>> {
        self.send(&resp_command(&[b"KEYS", b"*"]));
        let head = self.line();
        let n = parse_len(&head, b'*')
            .unwrap_or_else(|| panic!("KEYS on {} answered {}", self.peer, escape(&head)));
        (0..n)
            .map(|_| {
                let head = self.line();
                let len = parse_len(&head, b'$').unwrap_or_else(|| {
                    panic!("bad KEYS element from {}: {}", self.peer, escape(&head))
                });
                self.payload(len)
            })
            .collect()
    }
}

fn parse_len(line: &[u8], kind: u8) -> Option<usize> {
    let (&first, rest) = line.split_first()?;
    (first == kind).then_some(())?;
    std::str::from_utf8(rest).ok()?.parse().ok()
}

fn resp_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

// ---------------------------------------------------------------------------------------
// Pools

/// How a pool's keys look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyStyle {
    /// Binary keys of every length 0..=300 (the empty key first), half of them with
    /// bytes >= 0x80 (twemproxy sign-extends those in several hashes).
    Mixed,
    /// `key:0000000000`, `key:0000000001`, ...: the unit tests' golden keys.
    Golden,
    /// Keys with and without `{...}` tags, empty tags, unbalanced braces.
    TagCurly,
    /// The same with `$...$`.
    TagDollar,
    /// Printable memcache keys, unique across pools (memcached has no databases).
    Memcache,
}

struct Pool {
    name: String,
    dist: Distribution,
    hash: HashKind,
    tag: Option<[u8; 2]>,
    memcache: bool,
    eject: bool,
    /// redis_db (redis pools).
    db: usize,
    listen: u16,
    servers: Vec<RingNode>,
    /// `servers[i]` is backend `backends[i]` (of the redis or the memcached list).
    backends: Vec<usize>,
    keys: Vec<Vec<u8>>,
}

impl Pool {
    fn describe(&self) -> String {
        let tag = match self.tag {
            Some(t) => format!(", hash_tag {:?}", String::from_utf8_lossy(&t)),
            None => String::new(),
        };
        format!(
            "pool {} ({} {} {}{tag})",
            self.name,
            if self.memcache { "memcache" } else { "redis" },
            self.dist,
            self.hash
        )
    }

    fn yaml(&self) -> String {
        let mut y = format!(
            "{}:\n  listen: 127.0.0.1:{}\n  hash: {}\n  distribution: {}\n  redis: {}\n",
            self.name, self.listen, self.hash, self.dist, !self.memcache
        );
        if !self.memcache {
            y += &format!("  redis_db: {}\n", self.db);
        }
        if let Some(t) = self.tag {
            y += &format!("  hash_tag: \"{}\"\n", String::from_utf8_lossy(&t));
        }
        y += "  timeout: 10000\n  preconnect: false\n";
        y += &format!(
            "  auto_eject_hosts: {}\n  server_failure_limit: 1\n  server_retry_timeout: 600000\n",
            self.eject
        );
        y += "  servers:\n";
        for s in &self.servers {
            y += &format!("   - {s}\n");
        }
        y
    }
}

/// One server of a pool layout: backend index, weight, optional name.
type Slot = (usize, u32, Option<&'static str>);

struct Builder<'a> {
    redis: &'a [SocketAddrV4],
    memcached: &'a [SocketAddrV4],
    pools: Vec<Pool>,
}

impl Builder<'_> {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        name: &str,
        dist: Distribution,
        hash: HashKind,
        tag: Option<[u8; 2]>,
        style: KeyStyle,
        layout: &[Slot],
        nkeys: usize,
        eject: bool,
    ) {
        let memcache = style == KeyStyle::Memcache;
        let addrs = if memcache { self.memcached } else { self.redis };
        let servers = layout
            .iter()
            .map(|&(b, weight, name)| {
                let a = addrs[b];
                RingNode {
                    host: a.ip().to_string(),
                    port: a.port(),
                    weight,
                    name: name.map(str::to_string),
                }
            })
            .collect();
        let index = self.pools.len();
        self.pools.push(Pool {
            name: name.to_string(),
            dist,
            hash,
            tag,
            memcache,
            eject,
            db: index,
            listen: free_port(),
            servers,
            backends: layout.iter().map(|s| s.0).collect(),
            keys: make_keys(index, style, nkeys),
        });
    }
}

fn make_keys(pool: usize, style: KeyStyle, n: usize) -> Vec<Vec<u8>> {
    let mut rng = SmallRng::seed_from_u64(0x5eed_0000 + pool as u64);
    let mut keys: Vec<Vec<u8>> = Vec::with_capacity(n);
    match style {
        KeyStyle::Golden => keys.extend((0..n).map(|i| format!("key:{i:010}").into_bytes())),
        KeyStyle::Mixed => {
            keys.push(Vec::new());
            for i in 1..n {
                let mut k = format!("{i}:").into_bytes();
                let len = if rng.gen_ratio(1, 40) {
                    rng.gen_range(100..=300)
                } else {
                    rng.gen_range(0..=24)
                };
                let binary = rng.gen_bool(0.5);
                k.extend((0..len).map(|_| {
                    if binary {
                        rng.gen::<u8>()
                    } else {
                        rng.gen_range(0x21..=0x7e)
                    }
                }));
                keys.push(k);
            }
        }
        KeyStyle::TagCurly => {
            for special in ["", "{}", "{", "}", "}{", "{x}"] {
                keys.push(special.as_bytes().to_vec());
            }
            for i in keys.len()..n {
                let t = rng.gen_range(0..40);
                let k = match i % 8 {
                    0 | 7 => format!("{i}:{{user{t}}}:cart"),
                    1 => format!("{{user{t}}}{i}"),
                    2 => format!("{i}a{{}}b{{c{t}}}"),
                    3 => format!("{i}}}x{{y{t}"),
                    4 => format!("{i}{{abc{t}"),
                    5 => format!("{i}{{{{z{t}}}}}"),
                    _ => format!("{i}:plain:{t}"),
                };
                keys.push(k.into_bytes());
            }
        }
        KeyStyle::TagDollar => {
            for special in ["$", "$$", "$$$", "a$b$"] {
                keys.push(special.as_bytes().to_vec());
            }
            for i in keys.len()..n {
                let t = rng.gen_range(0..40);
                let k = match i % 4 {
                    0 => format!("{i}${t}$x"),
                    1 => format!("{i}$$x{t}"),
                    2 => format!("${t}${i}"),
                    _ => format!("{i}$only{t}"),
                };
                keys.push(k.into_bytes());
            }
        }
        KeyStyle::Memcache => {
            for i in 0..n {
                let mut k = format!("p{pool}.{i}:").into_bytes();
                let len = if rng.gen_ratio(1, 40) {
                    rng.gen_range(100..=200)
                } else {
                    rng.gen_range(0..=30)
                };
                k.extend((0..len).map(|_| rng.gen_range(0x21u8..=0x7e)));
                keys.push(k);
            }
        }
    }
    keys
}

/// The pools of the main phase and of the ejection phase.
fn build_pools(redis: &[SocketAddrV4], memcached: &[SocketAddrV4]) -> (Vec<Pool>, Vec<Pool>) {
    use Distribution::{Ketama, Modula, Random};
    use HashKind::*;
    let mut b = Builder {
        redis,
        memcached,
        pools: Vec::new(),
    };
    let n = KEYS_PER_POOL;
    // Layouts list servers out of name order, so that modula's name-sorted order matters.
    let unnamed: &[Slot] = &[(2, 1, None), (0, 2, None), (3, 3, None), (1, 4, None)];
    let mixed: &[Slot] = &[
        (1, 1, Some("cache-b")),
        (3, 2, None),
        (0, 3, Some("a")),
        (2, 4, None),
    ];
    let equal: &[Slot] = &[(3, 1, None), (1, 1, None), (0, 1, None), (2, 1, None)];
    let golden: &[Slot] = &[
        (0, 1, Some("alpha")),
        (1, 2, Some("b")),
        (2, 3, Some("charlie-3")),
        (3, 4, Some("dd")),
    ];
    for (i, hash) in HashKind::ALL.into_iter().enumerate() {
        let layout = [unnamed, mixed, equal][i % 3];
        let name = format!("ketama_{}", hash.name());
        b.add(&name, Ketama, hash, None, KeyStyle::Mixed, layout, n, false);
    }
    let modula: &[Slot] = &[
        (3, 2, None),
        (1, 1, Some("zz")),
        (0, 3, None),
        (2, 1, Some("m1")),
    ];
    for hash in [
        Fnv1a_64, Md5, Crc32a, Murmur, Crc16, OneAtATime, Hsieh, Jenkins,
    ] {
        let name = format!("modula_{}", hash.name());
        b.add(&name, Modula, hash, None, KeyStyle::Mixed, modula, n, false);
    }
    let odd: &[Slot] = &[(0, 3, None), (1, 5, None), (2, 7, None), (3, 11, None)];
    b.add(
        "weights_3_5_7_11",
        Ketama,
        Murmur,
        None,
        KeyStyle::Mixed,
        odd,
        n,
        false,
    );
    let skewed: &[Slot] = &[(0, 1, None), (1, 1, None), (2, 1, None), (3, 97, None)];
    b.add(
        "weights_1_1_1_97",
        Ketama,
        Crc32a,
        None,
        KeyStyle::Mixed,
        skewed,
        n,
        false,
    );
    let three: &[Slot] = &[(0, 2, None), (2, 2, None), (3, 2, None)];
    b.add(
        "three_servers",
        Ketama,
        OneAtATime,
        None,
        KeyStyle::Mixed,
        three,
        n,
        false,
    );
    // Weights whose point counts differ between twemproxy's f32 arithmetic (228 points for
    // weight 29) and exact arithmetic (232).
    let float_edge: &[Slot] = &[(0, 1, None), (1, 29, None), (3, 30, None)];
    b.add(
        "float_edge",
        Ketama,
        Md5,
        None,
        KeyStyle::Mixed,
        float_edge,
        n,
        false,
    );
    let modula_odd: &[Slot] = &[(0, 5, None), (1, 1, None), (2, 9, None), (3, 2, None)];
    b.add(
        "modula_weights",
        Modula,
        Fnv1a_32,
        None,
        KeyStyle::Mixed,
        modula_odd,
        n,
        false,
    );
    b.add(
        "tag_curly",
        Ketama,
        Fnv1a_64,
        Some(*b"{}"),
        KeyStyle::TagCurly,
        equal,
        n,
        false,
    );
    b.add(
        "tag_dollar",
        Modula,
        Md5,
        Some(*b"$$"),
        KeyStyle::TagDollar,
        mixed,
        n,
        false,
    );
    b.add(
        "golden_ketama_fnv1a_64",
        Ketama,
        Fnv1a_64,
        None,
        KeyStyle::Golden,
        golden,
        n,
        false,
    );
    b.add(
        "golden_ketama_md5",
        Ketama,
        Md5,
        None,
        KeyStyle::Golden,
        golden,
        n,
        false,
    );
    b.add(
        "golden_modula_murmur",
        Modula,
        Murmur,
        None,
        KeyStyle::Golden,
        golden,
        n,
        false,
    );
    b.add(
        "random",
        Random,
        Fnv1a_64,
        None,
        KeyStyle::Mixed,
        unnamed,
        n,
        false,
    );
    b.add(
        "single",
        Ketama,
        Md5,
        None,
        KeyStyle::Mixed,
        &[(1, 3, None)],
        2_000,
        false,
    );
    let mc_ketama: &[Slot] = &[(0, 1, None), (1, 2, None), (2, 1, None), (3, 3, None)];
    b.add(
        "mc_ketama_md5",
        Ketama,
        Md5,
        None,
        KeyStyle::Memcache,
        mc_ketama,
        n,
        false,
    );
    let mc_modula: &[Slot] = &[(3, 2, None), (2, 1, None), (1, 1, None), (0, 1, None)];
    b.add(
        "mc_modula_crc32",
        Modula,
        Crc32,
        None,
        KeyStyle::Memcache,
        mc_modula,
        n,
        false,
    );
    let mc_named: &[Slot] = &[
        (0, 1, Some("mc-zero")),
        (1, 1, None),
        (2, 2, None),
        (3, 1, None),
    ];
    b.add(
        "mc_ketama_fnv1a_64",
        Ketama,
        Fnv1a_64,
        None,
        KeyStyle::Memcache,
        mc_named,
        n,
        false,
    );
    let main_count = b.pools.len();
    // Ejection phase: backend DEAD (charlie-3 in the golden layout) will be killed.
    b.add(
        "eject_ketama_fnv1a_64",
        Ketama,
        Fnv1a_64,
        None,
        KeyStyle::Golden,
        golden,
        n,
        true,
    );
    b.add(
        "eject_modula_murmur",
        Modula,
        Murmur,
        None,
        KeyStyle::Mixed,
        unnamed,
        n,
        true,
    );
    let eject = b.pools.split_off(main_count);
    (b.pools, eject)
}

// ---------------------------------------------------------------------------------------
// nutcracker

/// A file removed on drop (kept with `SHOAL_KEEP_LOGS`).
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        if !keep_logs() {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

fn spawn_nutcracker(main: &mut [Pool], eject: &mut [Pool]) -> (Proc, TempFile) {
    let bin = require_program("nutcracker");
    let conf = TempFile(temp_path("nutcracker", "yml"));
    let mut last = String::new();
    for _ in 0..3 {
        let yaml: String = main.iter().chain(eject.iter()).map(Pool::yaml).collect();
        std::fs::write(&conf.0, &yaml).expect("write nutcracker config");
        let log = temp_path("nutcracker", "log");
        let stats = free_port();
        let mut cmd = Command::new(&bin);
        cmd.arg("-c").arg(&conf.0).arg("-o").arg(&log);
        cmd.args(["-s", &stats.to_string(), "-a", "127.0.0.1"]);
        let mut proc = Proc::spawn("nutcracker", log, cmd);
        let listens: Vec<SocketAddrV4> = main
            .iter()
            .chain(eject.iter())
            .map(|p| SocketAddrV4::new(Ipv4Addr::LOCALHOST, p.listen))
            .collect();
        match proc.wait_ready(&listens, b"", b"") {
            Ok(()) => return (proc, conf),
            Err(e) if e.contains("in use") => {
                last = e;
                for p in main.iter_mut().chain(eject.iter_mut()) {
                    p.listen = free_port();
                }
            }
            Err(e) => panic!("{e}\nconfiguration:\n{yaml}"),
        }
    }
    panic!("could not start nutcracker: {last}");
}

/// Writes every key of `pool` through nutcracker (pipelined), expecting success each time.
fn write_through_proxy(pool: &Pool) {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, pool.listen);
    let mut wire = Wire::connect(addr, &format!("nutcracker {}", pool.describe()));
    let mut buf = Vec::new();
    for chunk in pool.keys.chunks(BATCH) {
        buf.clear();
        for key in chunk {
            if pool.memcache {
                buf.extend_from_slice(b"set ");
                buf.extend_from_slice(key);
                buf.extend_from_slice(b" 0 0 1\r\nv\r\n");
            } else {
                buf.extend_from_slice(&resp_command(&[b"SET", key, b"v"]));
            }
        }
        wire.send(&buf);
        for key in chunk {
            let line = wire.line();
            let want: &[u8] = if pool.memcache { b"STORED" } else { b"+OK" };
            assert_eq!(
                line,
                want,
                "{}: SET \"{}\" through nutcracker answered {}",
                pool.describe(),
                escape(key),
                escape(&line)
            );
        }
    }
}

/// Runs `f` over `pools` on a few threads.
fn parallel<F: Fn(&Pool) + Sync>(pools: &[Pool], f: F) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(pool) = pools.get(i) else { break };
                f(pool);
            });
        }
    });
}

// ---------------------------------------------------------------------------------------
// Where the keys went

/// Key -> the backends (indices) holding it.
type Found = HashMap<Vec<u8>, Vec<usize>>;

/// For each key of `pool`, the backends holding it; plus keys nobody wrote.
fn placements(
    pool: &Pool,
    redis: &[Option<Backend>],
    memcached: &[Backend],
) -> (Found, Vec<Vec<u8>>) {
    let mut found = Found::new();
    let mut unknown = Vec::new();
    let mut backends = pool.backends.clone();
    backends.sort_unstable();
    backends.dedup();
    for b in backends {
        if pool.memcache {
            let addr = memcached[b].addr;
            let mut wire = Wire::connect(addr, &format!("memcached #{b}"));
            for chunk in pool.keys.chunks(100) {
                let mut req = b"get".to_vec();
                for key in chunk {
                    req.push(b' ');
                    req.extend_from_slice(key);
                }
                req.extend_from_slice(b"\r\n");
                wire.send(&req);
                loop {
                    let line = wire.line();
                    if line == b"END" {
                        break;
                    }
                    let parts: Vec<&[u8]> = line.split(|&c| c == b' ').collect();
                    let len = match parts.as_slice() {
                        [b"VALUE", _key, _flags, len] => {
                            std::str::from_utf8(len).ok().and_then(|l| l.parse().ok())
                        }
                        _ => None,
                    };
                    let len =
                        len.unwrap_or_else(|| panic!("memcached #{b} answered {}", escape(&line)));
                    wire.payload(len);
                    found.entry(parts[1].to_vec()).or_default().push(b);
                }
            }
        } else {
            let Some(backend) = &redis[b] else { continue };
            let mut wire = Wire::connect(backend.addr, &format!("redis-server #{b}"));
            wire.resp_ok(&[b"SELECT", pool.db.to_string().as_bytes()]);
            for key in wire.resp_keys() {
                found.entry(key).or_default().push(b);
            }
        }
    }
    let known: std::collections::HashSet<&[u8]> = pool.keys.iter().map(Vec::as_slice).collect();
    for key in found.keys() {
        if !known.contains(key.as_slice()) {
            unknown.push(key.clone());
        }
    }
    (found, unknown)
}

/// Compares nutcracker's placement of `pool`'s keys with `Ring`; returns the problems.
fn check_pool(
    pool: &Pool,
    live: &[bool],
    redis: &[Option<Backend>],
    memcached: &[Backend],
) -> Vec<String> {
    let (found, unknown) = placements(pool, redis, memcached);
    let ring = Ring::with_live(pool.dist, pool.hash, &pool.servers, live);
    let server_of: HashMap<usize, usize> = pool
        .backends
        .iter()
        .enumerate()
        .map(|(server, &backend)| (backend, server))
        .collect();
    let name = |s: usize| format!("#{s} {}", pool.servers[s]);
    let mut problems = Vec::new();
    let mut mismatches = 0usize;
    let mut per_server = vec![0usize; pool.servers.len()];
    for key in &pool.keys {
        let got: Vec<usize> = found
            .get(key)
            .map(|bs| bs.iter().map(|b| server_of[b]).collect())
            .unwrap_or_default();
        let [actual] = got.as_slice() else {
            mismatches += 1;
            if mismatches <= SHOWN {
                problems.push(format!(
                    "{}: key \"{}\" found on {} servers {:?} (expected exactly one)",
                    pool.describe(),
                    escape(key),
                    got.len(),
                    got.iter().map(|&s| name(s)).collect::<Vec<_>>()
                ));
            }
            continue;
        };
        per_server[*actual] += 1;
        if pool.dist == Distribution::Random {
            continue;
        }
        let hashed = hash_tag(key, pool.tag);
        let expected = ring.locate(hashed);
        if expected != Some(*actual) {
            mismatches += 1;
            if mismatches <= SHOWN {
                problems.push(format!(
                    "{}: key \"{}\" (hashed part \"{}\", {}={}) is on {} in nutcracker but Ring::locate says {}",
                    pool.describe(),
                    escape(key),
                    escape(hashed),
                    pool.hash,
                    ring.key_hash(hashed),
                    name(*actual),
                    expected.map_or("None".to_string(), name)
                ));
            }
        }
    }
    if mismatches > SHOWN {
        problems.push(format!(
            "{}: ... {} mismatches in all, of {} keys",
            pool.describe(),
            mismatches,
            pool.keys.len()
        ));
    }
    for key in unknown.iter().take(3) {
        problems.push(format!(
            "{}: backend holds key \"{}\" that was never written",
            pool.describe(),
            escape(key)
        ));
    }
    if pool.dist == Distribution::Random {
        // twemproxy ignores weights here: each live server gets about the same share.
        let live_servers = live.iter().filter(|&&l| l).count();
        let share = pool.keys.len() / live_servers;
        for (s, &count) in per_server.iter().enumerate() {
            if live[s] && !(share * 8 / 10..=share * 12 / 10).contains(&count) {
                problems.push(format!(
                    "{}: server {} got {count} keys, expected about {share}",
                    pool.describe(),
                    name(s)
                ));
            }
        }
        let mut ring_counts = vec![0usize; pool.servers.len()];
        for key in &pool.keys {
            ring_counts[ring.locate(key).expect("a live node")] += 1;
        }
        for (s, &count) in ring_counts.iter().enumerate() {
            if live[s] && !(share * 8 / 10..=share * 12 / 10).contains(&count) {
                problems.push(format!(
                    "{}: Ring::locate picked server {} {count} times, expected about {share}",
                    pool.describe(),
                    name(s)
                ));
            }
        }
    }
    problems
}

fn check_all(
    pools: &[Pool],
    live_backend: impl Fn(&Pool, usize) -> bool + Sync,
    redis: &[Option<Backend>],
    memcached: &[Backend],
) -> Vec<String> {
    let problems = Mutex::new(Vec::new());
    parallel(pools, |pool| {
        let live: Vec<bool> = pool
            .backends
            .iter()
            .map(|&b| live_backend(pool, b))
            .collect();
        let found = check_pool(pool, &live, redis, memcached);
        problems.lock().unwrap().extend(found);
    });
    problems.into_inner().unwrap()
}

/// Makes nutcracker notice that backend `DEAD` is gone in an `auto_eject_hosts` pool: SETs
/// (one at a time) keys that the full ring places on it until one fails.
fn trigger_ejection(pool: &Pool) {
    let ring = Ring::new(pool.dist, pool.hash, &pool.servers);
    let dead = pool
        .backends
        .iter()
        .position(|&b| b == DEAD)
        .expect("dead backend in pool");
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, pool.listen);
    let mut wire = Wire::connect(addr, &format!("nutcracker {}", pool.describe()));
    let mut tried = 0;
    for n in 0..100_000 {
        let key = format!("trigger:{n}");
        if ring.locate(key.as_bytes()) != Some(dead) {
            continue;
        }
        wire.send(&resp_command(&[b"SET", key.as_bytes(), b"v"]));
        let line = wire.line();
        if line.starts_with(b"-") {
            return;
        }
        tried += 1;
        assert!(
            tried < 20,
            "{}: {tried} SETs meant for the killed server succeeded (last answer {})",
            pool.describe(),
            escape(&line)
        );
    }
    panic!("{}: no key maps to the killed server", pool.describe());
}

#[test]
fn ring_places_keys_like_nutcracker() {
    let started = Instant::now();
    require_program("nutcracker");
    let mut rng = SmallRng::seed_from_u64(std::process::id().into());
    let mut redis: Vec<Option<Backend>> = (0..4).map(|i| Some(spawn_redis(i))).collect();
    let memcached: Vec<Backend> = (0..4).map(|i| spawn_memcached(i, &mut rng)).collect();
    let redis_addrs: Vec<SocketAddrV4> = redis.iter().flatten().map(|b| b.addr).collect();
    let mc_addrs: Vec<SocketAddrV4> = memcached.iter().map(|b| b.addr).collect();
    let (mut pools, mut eject) = build_pools(&redis_addrs, &mc_addrs);
    let (nutcracker, conf) = spawn_nutcracker(&mut pools, &mut eject);
    let config = std::fs::read_to_string(&conf.0).unwrap_or_default();
    let report = |problems: Vec<String>, phase: &str| {
        assert!(
            problems.is_empty(),
            "{phase}: shoal_client::ring disagrees with nutcracker:\n{}\n\nnutcracker configuration:\n{config}\nnutcracker log:\n{}",
            problems.join("\n"),
            nutcracker.log_text()
        );
    };
    let spawned = started.elapsed();

    // Main phase: every pool, all backends live.
    parallel(&pools, write_through_proxy);
    let written = started.elapsed();
    let problems = check_all(&pools, |_, _| true, &redis, &memcached);
    report(problems, "all servers live");
    let checked = started.elapsed();

    // Ejection phase: kill one redis backend; the auto_eject_hosts pools rebuild without it.
    for backend in redis.iter().flatten() {
        Wire::connect(backend.addr, "redis-server").resp_ok(&[b"FLUSHALL"]);
    }
    redis[DEAD] = None;
    for pool in &eject {
        trigger_ejection(pool);
        write_through_proxy(pool);
    }
    let problems = check_all(&eject, |_, b| b != DEAD, &redis, &memcached);
    report(problems, "after ejecting a server");

    let total_keys: usize = pools.iter().chain(eject.iter()).map(|p| p.keys.len()).sum();
    eprintln!(
        "[proxy_ring] {} pools, {total_keys} keys: processes up {:.1?}, written {:.1?}, \
         checked {:.1?}, ejection phase done {:.1?}",
        pools.len() + eject.len(),
        spawned,
        written - spawned,
        checked - written,
        started.elapsed() - checked
    );
}
