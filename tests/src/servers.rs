//! Spawning `redis-server`, `memcached` and `shoal-server` on free loopback ports, waiting
//! until they answer, and killing them on drop.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a spawned server may take to answer its first probe.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Message appended to every "tool missing" failure.
pub const INSTALL_HINT: &str =
    "run `bash scripts/install-test-deps.sh` (installs redis-server, memcached, nutcracker, ...)";

static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
static LOG_SEQ: AtomicU64 = AtomicU64::new(0);

/// Returns a loopback TCP port that was free a moment ago and that this process has not
/// handed out before (so parallel tests in one binary never get the same port).
pub fn free_port() -> u16 {
    for _ in 0..200 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        drop(listener);
        if HANDED_OUT
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(port)
        {
            return port;
        }
    }
    panic!("could not find a free loopback port in 200 attempts");
}

/// Looks a program up in `PATH` plus the sbin directories (nutcracker lives in /usr/sbin).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(
        ["/usr/sbin", "/sbin", "/usr/local/sbin"]
            .iter()
            .map(PathBuf::from),
    );
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// Like [`find_program`] but fails the test with an install hint when missing: the
/// differential tests must never pass vacuously because a reference server is absent.
pub fn require_program(name: &str) -> PathBuf {
    find_program(name).unwrap_or_else(|| {
        panic!("`{name}` is not installed but the differential tests need it: {INSTALL_HINT}")
    })
}

/// Root of the cargo workspace (parent of the `tests` crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate has a parent")
        .to_path_buf()
}

/// The `shoal-server` binary: `$SHOAL_SERVER_BIN`, else `$CARGO_TARGET_DIR/release/`,
/// else `<workspace>/target/release/shoal-server`.
pub fn shoal_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SHOAL_SERVER_BIN") {
        return PathBuf::from(p);
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let p = PathBuf::from(dir).join("release/shoal-server");
        if p.is_file() {
            return p;
        }
    }
    workspace_root().join("target/release/shoal-server")
}

/// The `shoal-proxy` binary: `$SHOAL_PROXY_BIN`, else next to [`shoal_server_bin`].
pub fn shoal_proxy_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SHOAL_PROXY_BIN") {
        return PathBuf::from(p);
    }
    let server = shoal_server_bin();
    server.with_file_name("shoal-proxy")
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// What kind of process a [`ServerProc`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// Real `redis-server`.
    Redis,
    /// Real `memcached`.
    Memcached,
    /// The server under test.
    Shoal,
}

/// A child server process, killed (and reaped) on drop.
pub struct ServerProc {
    /// Which program this is.
    pub flavor: Flavor,
    /// RESP port (redis, shoal) or memcache port (memcached).
    pub port: u16,
    /// Shoal's memcache port.
    pub mc_port: Option<u16>,
    child: Child,
    log: PathBuf,
    /// The command line it was started with (for [`ServerProc::restart`]).
    argv: (std::ffi::OsString, Vec<std::ffi::OsString>),
}

impl ServerProc {
    /// Port that speaks RESP. Panics for memcached.
    pub fn resp_port(&self) -> u16 {
        assert_ne!(self.flavor, Flavor::Memcached, "memcached has no RESP port");
        self.port
    }

    /// Port that speaks the memcache protocol. Panics for redis.
    pub fn memcache_port(&self) -> u16 {
        match self.flavor {
            Flavor::Memcached => self.port,
            Flavor::Shoal => self.mc_port.expect("shoal memcache port"),
            Flavor::Redis => panic!("redis-server has no memcache port"),
        }
    }

    /// Human readable name for reports.
    pub fn name(&self) -> &'static str {
        match self.flavor {
            Flavor::Redis => "redis-server",
            Flavor::Memcached => "memcached",
            Flavor::Shoal => "shoal-server",
        }
    }

    /// The server's stdout+stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the process with SIGKILL (no clean shutdown) and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the process if it still runs, then starts the same command line again (same
    /// ports, same flags) and waits until it answers, retrying while the port is still
    /// held (bounded by [`READY_TIMEOUT`]).
    pub fn restart(&mut self) {
        self.kill9();
        let start = Instant::now();
        loop {
            let mut cmd = Command::new(&self.argv.0);
            cmd.args(&self.argv.1);
            let out = File::create(&self.log).expect("create server log file");
            let err = out.try_clone().expect("clone log file handle");
            cmd.stdin(Stdio::null()).stdout(out).stderr(err);
            self.child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("respawning {cmd:?} failed: {e}"));
            let ready = |p: &ServerProc| match p.flavor {
                Flavor::Memcached => memcache_ready(p.port),
                Flavor::Redis | Flavor::Shoal => resp_ready(p.port),
            };
            let mut backoff = Duration::from_millis(5);
            loop {
                if let Ok(Some(status)) = self.child.try_wait() {
                    let text = self.log_text();
                    if text.contains("in use") && start.elapsed() < READY_TIMEOUT {
                        break; // the old socket is not gone yet: try again
                    }
                    panic!(
                        "{} exited with {status} on restart; log:\n{text}",
                        self.name()
                    );
                }
                if ready(self) {
                    return;
                }
                assert!(
                    start.elapsed() < READY_TIMEOUT,
                    "{} not ready {READY_TIMEOUT:?} after restart; log:\n{}",
                    self.name(),
                    self.log_text()
                );
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_millis(50));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os("SHOAL_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_file(&self.log);
        } else {
            eprintln!("[shoal-tests] kept log {}", self.log.display());
        }
    }
}

fn log_path(tag: &str) -> PathBuf {
    let n = LOG_SEQ.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("shoal-tests-{}-{tag}-{n}.log", std::process::id()))
}

/// Sends `probe` and checks the answer starts with `expect`. Never blocks long.
pub fn probe(port: u16, probe: &[u8], expect: &[u8]) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
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

fn resp_ready(port: u16) -> bool {
    probe(port, b"*1\r\n$4\r\nPING\r\n", b"+PONG\r\n")
}

fn memcache_ready(port: u16) -> bool {
    probe(port, b"version\r\n", b"VERSION ")
}

/// Outcome of one spawn attempt.
enum Attempt {
    Ready(ServerProc),
    /// Failed in a way that a fresh port may fix (address in use).
    Retry(String),
}

fn spawn_attempt(
    flavor: Flavor,
    mut cmd: Command,
    port: u16,
    mc_port: Option<u16>,
    ready: &dyn Fn(u16, Option<u16>) -> bool,
) -> Attempt {
    let log = log_path(match flavor {
        Flavor::Redis => "redis",
        Flavor::Memcached => "memcached",
        Flavor::Shoal => "shoal",
    });
    let out = File::create(&log).expect("create server log file");
    let err = out.try_clone().expect("clone log file handle");
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let argv = (
        cmd.get_program().to_owned(),
        cmd.get_args().map(std::ffi::OsStr::to_owned).collect(),
    );
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?} failed: {e}"));
    let mut proc = ServerProc {
        flavor,
        port,
        mc_port,
        child,
        log,
        argv,
    };
    let start = Instant::now();
    let mut backoff = Duration::from_millis(5);
    loop {
        if let Ok(Some(status)) = proc.child.try_wait() {
            let text = proc.log_text();
            let msg = format!(
                "{} exited with {status} before becoming ready; log:\n{text}",
                proc.name()
            );
            if text.contains("in use") {
                return Attempt::Retry(msg);
            }
            panic!("{msg}");
        }
        if ready(port, mc_port) {
            return Attempt::Ready(proc);
        }
        if start.elapsed() > READY_TIMEOUT {
            let msg = format!(
                "{} ({cmd:?}) not ready after {READY_TIMEOUT:?}; log:\n{}",
                proc.name(),
                proc.log_text()
            );
            if proc.log_text().contains("in use") {
                return Attempt::Retry(msg);
            }
            panic!("{msg}");
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_millis(100));
    }
}

fn spawn_with_retries(
    flavor: Flavor,
    build: &dyn Fn(u16, Option<u16>) -> Command,
    two_ports: bool,
    ready: &dyn Fn(u16, Option<u16>) -> bool,
) -> ServerProc {
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port();
        let mc = two_ports.then(free_port);
        match spawn_attempt(flavor, build(port, mc), port, mc, ready) {
            Attempt::Ready(p) => return p,
            Attempt::Retry(msg) => last = msg,
        }
    }
    panic!("giving up after 3 attempts: {last}");
}

/// Starts a throwaway `redis-server` (no persistence) on a free port.
pub fn spawn_redis() -> ServerProc {
    let bin = require_program("redis-server");
    spawn_with_retries(
        Flavor::Redis,
        &|port, _| {
            let mut c = Command::new(&bin);
            c.args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--bind", "127.0.0.1", "--daemonize", "no", "--logfile", ""]);
            c
        },
        false,
        &|p, _| resp_ready(p),
    )
}

/// Starts a throwaway `memcached -t 1` on a free port (adds `-u root` when root).
pub fn spawn_memcached() -> ServerProc {
    let bin = require_program("memcached");
    let root = running_as_root();
    spawn_with_retries(
        Flavor::Memcached,
        &|port, _| {
            let mut c = Command::new(&bin);
            c.args([
                "-p",
                &port.to_string(),
                "-U",
                "0",
                "-l",
                "127.0.0.1",
                "-t",
                "1",
            ]);
            if root {
                c.args(["-u", "root"]);
            }
            c
        },
        false,
        &|p, _| memcache_ready(p),
    )
}

/// Starts the release `shoal-server` with a RESP and a memcache listener and waits until
/// both answer.
pub fn spawn_shoal() -> ServerProc {
    spawn_shoal_waiting_for(true, true)
}

/// Starts `shoal-server`, waiting only for the listeners asked for (a RESP-only test need
/// not fail because the memcache side is not answering yet).
pub fn spawn_shoal_waiting_for(resp: bool, memcache: bool) -> ServerProc {
    spawn_shoal_with(&[], resp, memcache)
}

/// Starts `shoal-server` with extra flags (`--dir`, `--replicaof`, ...) after the listener
/// flags, waiting for the listeners asked for.
pub fn spawn_shoal_with(extra: &[String], resp: bool, memcache: bool) -> ServerProc {
    let bin = shoal_server_bin();
    assert!(
        bin.is_file(),
        "shoal-server binary not found at {} (build it with `cargo build --release --bins` \
         or set SHOAL_SERVER_BIN)",
        bin.display()
    );
    spawn_with_retries(
        Flavor::Shoal,
        &|port, mc| {
            let mut c = Command::new(&bin);
            c.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--memcache-port", &mc.expect("mc port").to_string()])
                .args(["--metrics-port", "0", "--threads", "2"])
                .args(extra);
            c
        },
        true,
        &|p, mc| (!resp || resp_ready(p)) && (!memcache || memcache_ready(mc.expect("mc port"))),
    )
}

/// Which server the differential tests compare against the reference.
///
/// `SHOAL_DIFF_TARGET=shoal` (default) runs shoal-server; `SHOAL_DIFF_TARGET=reference`
/// runs a second redis-server / memcached, which is how the harness checks itself (every
/// differential test must pass reference-vs-reference).
pub fn target_is_reference() -> bool {
    match std::env::var("SHOAL_DIFF_TARGET").as_deref() {
        Err(_) | Ok("") | Ok("shoal") => false,
        Ok("reference") | Ok("redis") | Ok("memcached") => true,
        Ok(other) => panic!("SHOAL_DIFF_TARGET={other}: expected `shoal` or `reference`"),
    }
}

/// The RESP server under test.
pub fn spawn_resp_target() -> ServerProc {
    if target_is_reference() {
        spawn_redis()
    } else {
        spawn_shoal_waiting_for(true, false)
    }
}

/// The memcache server under test.
pub fn spawn_memcache_target() -> ServerProc {
    if target_is_reference() {
        spawn_memcached()
    } else {
        spawn_shoal_waiting_for(false, true)
    }
}

/// A directory under the system temp dir, removed on drop (`--dir` of a shoal-server).
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory whose name carries `tag`.
    pub fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!(
            "shoal-tests-dir-{}-{tag}-{}",
            std::process::id(),
            free_port()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        TempDir(d)
    }

    /// The path as a string (for command-line arguments).
    pub fn path(&self) -> String {
        self.0.to_str().expect("utf-8 temp path").to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A shoal-server primary (RESP only) and a replica of it, each with its own state
/// directory (so epochs persist across a restart, as fencing needs).
pub struct ShoalPair {
    pub primary: ServerProc,
    pub replica: ServerProc,
    /// Their state directories (kept until the pair is dropped).
    pub dirs: (TempDir, TempDir),
}

/// Starts a [`ShoalPair`]; the replica's link may still be syncing when this returns.
pub fn spawn_shoal_pair(tag: &str) -> ShoalPair {
    let (dp, dr) = (
        TempDir::new(&format!("{tag}-primary")),
        TempDir::new(&format!("{tag}-replica")),
    );
    let primary = spawn_shoal_with(&["--dir".into(), dp.path()], true, false);
    let replica = spawn_shoal_with(
        &[
            "--dir".into(),
            dr.path(),
            "--replicaof".into(),
            format!("127.0.0.1 {}", primary.resp_port()),
        ],
        true,
        false,
    );
    ShoalPair {
        primary,
        replica,
        dirs: (dp, dr),
    }
}
