//! Running `shoal-proxy` in front of real servers: a generated twemproxy-format pool file
//! in a private temporary directory, free loopback ports, readiness polled with a deadline
//! (every pool's port answers `PING` / `version`), the proxy killed on drop and its log
//! printed when the test is failing.
//!
//! ```no_run
//! use shoal_tests::proxy::{Pool, ProxyProc};
//! use shoal_tests::servers::spawn_redis;
//! let shards: Vec<_> = (0..3).map(|_| spawn_redis()).collect();
//! let ports: Vec<u16> = shards.iter().map(|s| s.resp_port()).collect();
//! let proxy = ProxyProc::start(&[Pool::redis("alpha").servers(&ports).key("hash_tag", "\"{}\"")]);
//! let port = proxy.port("alpha");
//! ```

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::resp::{parse, Read1, RespConn, Value};
use crate::servers::{free_port, probe, shoal_proxy_bin, READY_TIMEOUT};

static SEQ: AtomicU64 = AtomicU64::new(0);

/// One pool of the generated configuration.
#[derive(Clone, Debug)]
pub struct Pool {
    /// Pool name (the YAML key).
    pub name: String,
    /// `redis: true` (else a memcache pool).
    pub redis: bool,
    /// `(name, host:port)` of each server, in ring order.
    pub servers: Vec<(String, String)>,
    /// `server name -> replica addresses`.
    pub replicas: Vec<(String, Vec<String>)>,
    /// Further keys, values written as given (YAML scalars: `"{}"`, `true`, `100`).
    pub keys: Vec<(String, String)>,
}

impl Pool {
    /// A Redis pool (`redis: true`) without servers yet.
    pub fn redis(name: &str) -> Pool {
        Pool {
            name: name.to_string(),
            redis: true,
            servers: Vec::new(),
            replicas: Vec::new(),
            keys: Vec::new(),
        }
    }

    /// A memcache pool (`redis: false`) without servers yet.
    pub fn memcache(name: &str) -> Pool {
        Pool {
            redis: false,
            ..Pool::redis(name)
        }
    }

    /// Adds a named server on `127.0.0.1:port` (weight 1).
    pub fn server(mut self, name: &str, port: u16) -> Pool {
        self.servers
            .push((name.to_string(), format!("127.0.0.1:{port}")));
        self
    }

    /// Adds servers `s0`, `s1`, ... on these loopback ports.
    pub fn servers(mut self, ports: &[u16]) -> Pool {
        for &p in ports {
            let name = format!("s{}", self.servers.len());
            self = self.server(&name, p);
        }
        self
    }

    /// Declares loopback replicas of server `name`.
    pub fn replicas(mut self, name: &str, ports: &[u16]) -> Pool {
        self.replicas.push((
            name.to_string(),
            ports.iter().map(|p| format!("127.0.0.1:{p}")).collect(),
        ));
        self
    }

    /// Adds `key: value` to the pool (value written verbatim).
    pub fn key(mut self, key: &str, value: &str) -> Pool {
        self.keys.push((key.to_string(), value.to_string()));
        self
    }

    /// The pool's YAML, listening on `127.0.0.1:port`.
    pub fn yaml(&self, port: u16) -> String {
        let mut y = format!(
            "{}:\n  listen: 127.0.0.1:{port}\n  redis: {}\n",
            self.name, self.redis
        );
        for (k, v) in &self.keys {
            y.push_str(&format!("  {k}: {v}\n"));
        }
        y.push_str("  servers:\n");
        for (name, addr) in &self.servers {
            y.push_str(&format!("   - {addr}:1 {name}\n"));
        }
        if !self.replicas.is_empty() {
            y.push_str("  replicas:\n");
            for (name, addrs) in &self.replicas {
                y.push_str(&format!("    {name}: [{}]\n", addrs.join(", ")));
            }
        }
        y
    }
}

/// A running `shoal-proxy`, killed on drop.
pub struct ProxyProc {
    child: Option<Child>,
    dir: PathBuf,
    /// `(pool name, port, redis)` in file order.
    pools: Vec<(String, u16, bool)>,
    /// The binary and the extra arguments it was started with (for [`ProxyProc::restart`]).
    bin: PathBuf,
    extra: Vec<String>,
}

impl ProxyProc {
    /// Writes the pool file and starts the proxy (2 worker threads), waiting until every
    /// pool answers. Retries with fresh ports when one was taken meanwhile.
    pub fn start(pools: &[Pool]) -> ProxyProc {
        Self::start_with_args(pools, &[])
    }

    /// Like [`start`](Self::start), with extra command-line arguments.
    pub fn start_with_args(pools: &[Pool], extra: &[String]) -> ProxyProc {
        let bin = shoal_proxy_bin();
        assert!(
            bin.is_file(),
            "shoal-proxy binary not found at {} (build it with `cargo build --profile ci -p \
             shoal-proxy` and set SHOAL_PROXY_BIN)",
            bin.display()
        );
        let mut last = String::new();
        for _ in 0..3 {
            match Self::attempt(&bin, pools, extra) {
                Ok(p) => return p,
                Err(msg) => last = msg,
            }
        }
        panic!("shoal-proxy did not start after 3 attempts: {last}");
    }

    fn attempt(bin: &Path, pools: &[Pool], extra: &[String]) -> Result<ProxyProc, String> {
        let dir = std::env::temp_dir().join(format!(
            "shoal-proxy-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create proxy temp dir");
        let mut yaml = String::new();
        let mut ports = Vec::new();
        for p in pools {
            let port = free_port();
            yaml.push_str(&p.yaml(port));
            ports.push((p.name.clone(), port, p.redis));
        }
        let conf = dir.join("nutcracker.yml");
        std::fs::write(&conf, &yaml).expect("write proxy config");
        let log = File::create(dir.join("log")).expect("proxy log file");
        let err = log.try_clone().expect("clone log handle");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .args(["--threads", "2", "--loglevel", "info"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()));
        let mut proc = ProxyProc {
            child: Some(child),
            dir,
            pools: ports,
            bin: bin.to_path_buf(),
            extra: extra.to_vec(),
        };
        let start = Instant::now();
        loop {
            if let Some(Ok(Some(status))) = proc.child.as_mut().map(Child::try_wait) {
                let text = proc.log_text();
                let msg =
                    format!("shoal-proxy exited with {status}; config:\n{yaml}\nlog:\n{text}");
                proc.child = None;
                if text.contains("in use") {
                    return Err(msg);
                }
                panic!("{msg}");
            }
            if proc
                .pools
                .iter()
                .all(|(_, port, redis)| ready(*port, *redis))
            {
                return Ok(proc);
            }
            assert!(
                start.elapsed() < READY_TIMEOUT,
                "shoal-proxy not ready after {READY_TIMEOUT:?}; config:\n{yaml}\nlog:\n{}",
                proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The port of pool `name`.
    pub fn port(&self, name: &str) -> u16 {
        self.pools
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("no pool {name}"))
            .1
    }

    /// Rewrites the pool file (atomically, by rename) with `pools`, which must be the same
    /// pools in the same order (their listen ports are kept); the proxy notices the change
    /// and reloads.
    pub fn reconfigure(&self, pools: &[Pool]) {
        assert_eq!(pools.len(), self.pools.len(), "same pools, same order");
        let mut yaml = String::new();
        for (p, (name, port, _)) in pools.iter().zip(&self.pools) {
            assert_eq!(&p.name, name, "same pools, same order");
            yaml.push_str(&p.yaml(*port));
        }
        self.write_config(&yaml);
    }

    /// Replaces the pool file with `text` (atomically, by rename).
    pub fn write_config(&self, text: &str) {
        let tmp = self.dir.join("nutcracker.yml.new");
        std::fs::write(&tmp, text).expect("write new proxy config");
        std::fs::rename(&tmp, self.config_path()).expect("rename proxy config");
    }

    /// The pool file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("nutcracker.yml")
    }

    /// The proxy's stdout and stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// Whether the process still runs.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// The private directory holding the pool file and the log (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills the proxy with SIGKILL (no clean shutdown) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills the proxy if it still runs, then starts it again with the same pool file,
    /// ports and arguments, and waits until every pool answers (retrying, bounded by
    /// [`READY_TIMEOUT`], while a listen port is still held). The log is appended to.
    pub fn restart(&mut self) {
        self.kill9();
        let start = Instant::now();
        loop {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join("log"))
                .expect("proxy log file");
            let err = log.try_clone().expect("clone log handle");
            let child = Command::new(&self.bin)
                .arg("-c")
                .arg(self.config_path())
                .args(["--threads", "2", "--loglevel", "info"])
                .args(&self.extra)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("respawning {}: {e}", self.bin.display()));
            self.child = Some(child);
            loop {
                if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                    self.child = None;
                    let text = self.log_text();
                    assert!(
                        text.contains("in use") && start.elapsed() < READY_TIMEOUT,
                        "shoal-proxy exited with {status} on restart; log:\n{text}"
                    );
                    break; // a listen port is still held: try again
                }
                if self
                    .pools
                    .iter()
                    .all(|(_, port, redis)| ready(*port, *redis))
                {
                    return;
                }
                assert!(
                    start.elapsed() < READY_TIMEOUT,
                    "shoal-proxy not ready {READY_TIMEOUT:?} after restart; log:\n{}",
                    self.log_text()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ProxyProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- shoal-proxy log ({}) ----\n{}\n---- end of shoal-proxy log ----",
                self.dir.display(),
                self.log_text()
            );
        }
        if std::env::var_os("SHOAL_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("[shoal-tests] kept proxy dir {}", self.dir.display());
        }
    }
}

fn ready(port: u16, redis: bool) -> bool {
    if redis {
        // A pool with `redis_auth` answers NOAUTH until the client authenticates.
        probe(port, b"*1\r\n$4\r\nPING\r\n", b"+PONG\r\n")
            || probe(port, b"*1\r\n$4\r\nPING\r\n", b"-NOAUTH ")
    } else {
        probe(port, b"version\r\n", b"VERSION ")
    }
}

/// Polls `f` every few milliseconds until it holds; panics with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        if f() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(25));
    }
}

/// One row of `SHOAL TOPOLOGY`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopoRow {
    /// Pool name.
    pub pool: String,
    /// Server name.
    pub name: String,
    /// `host:port` of the current primary.
    pub primary: String,
    /// `host:port` of each replica.
    pub replicas: Vec<String>,
    /// `up` or `ejected`.
    pub state: String,
    /// Epoch the proxy last promoted with.
    pub epoch: i64,
}

fn text_of(v: &Value) -> String {
    String::from_utf8_lossy(v.as_bytes().unwrap_or_default()).into_owned()
}

/// `SHOAL TOPOLOGY` through the proxy port `port`.
pub fn topology(port: u16) -> Vec<TopoRow> {
    let raw = RespConn::connect(port).call(&["SHOAL", "TOPOLOGY"]);
    let v = parse(&raw).unwrap_or_else(|| panic!("SHOAL TOPOLOGY: {}", crate::escape(&raw)));
    let rows = v
        .elements()
        .unwrap_or_else(|| panic!("SHOAL TOPOLOGY: {}", crate::escape(&raw)));
    rows.iter()
        .map(|r| {
            let f = r.elements().expect("topology row");
            assert_eq!(f.len(), 6, "row {}", crate::escape(&raw));
            TopoRow {
                pool: text_of(&f[0]),
                name: text_of(&f[1]),
                primary: text_of(&f[2]),
                replicas: f[3]
                    .elements()
                    .expect("replicas")
                    .iter()
                    .map(text_of)
                    .collect(),
                state: text_of(&f[4]),
                epoch: f[5].as_int().expect("epoch"),
            }
        })
        .collect()
}

/// A field of `INFO` (proxy or server) on `port`.
pub fn info_field(port: u16, field: &str) -> Option<String> {
    let mut c = RespConn::connect(port);
    let Read1::Reply(raw) = c.cmd(&["INFO"]) else {
        return None;
    };
    let v = parse(&raw)?;
    let body = String::from_utf8_lossy(v.as_bytes()?).into_owned();
    body.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|r| r.strip_prefix(':'))
            .map(|s| s.trim().to_string())
    })
}
