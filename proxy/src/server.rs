//! Threads and listeners.
//!
//! ```text
//!  shoal-proxy-N worker threads (a current_thread LocalRuntime each)
//!    per pool: its own SO_REUSEPORT listener → one task per client connection
//!    its own backend connections (shared pipelined + dedicated idle pool)
//!  shoal-proxy-health thread: probes, ejection, failover, config reload, metrics flush
//! ```
//!
//! Every worker binds each pool's address with `SO_REUSEPORT`, so the kernel spreads
//! clients over the threads and no connection ever changes thread. Unix-socket pools are
//! accepted by worker 0 only.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, UnixListener};
use tracing::{info, warn};

use crate::backend::Wire;
use crate::config::{Listen, ProxyConfig};
use crate::metrics::Stats;
use crate::topology::Shared;
use crate::worker::Worker;

static THREADS: AtomicUsize = AtomicUsize::new(1);

/// Worker threads of this process.
pub fn threads() -> usize {
    THREADS.load(Ordering::Relaxed)
}

/// Process options (flags, not pool config).
#[derive(Clone, Debug)]
pub struct Options {
    /// Worker threads.
    pub threads: usize,
    /// Prometheus `/metrics` port (0: off).
    pub metrics_port: u16,
    /// Address for `/metrics`.
    pub metrics_bind: std::net::IpAddr,
    /// The config file (reloaded on SIGHUP and when it changes).
    pub config_path: Option<PathBuf>,
    /// The file's modification time when the running configuration was read from it (a
    /// later change reloads; `None`: compared with the time the health thread starts).
    pub config_mtime: Option<std::time::SystemTime>,
    /// Where reshard state is persisted (`--state-file`; None: memory only).
    pub state_file: Option<PathBuf>,
}

/// A running proxy.
pub struct Proxy {
    /// Shared state.
    pub shared: Arc<Shared>,
    /// Counters.
    pub stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Bound TCP addresses per pool (tests bind port 0).
    pub addrs: Vec<Option<SocketAddr>>,
}

impl Proxy {
    /// Stops every thread.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Waits for the threads.
    pub fn wait(mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn bind_tcp(addr: SocketAddr, backlog: u32) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.bind(&addr.into())?;
    sock.listen(backlog.clamp(16, 65535) as i32)?;
    sock.set_nonblocking(true)?;
    Ok(sock.into())
}

enum Bound {
    Tcp(Vec<std::net::TcpListener>),
    Unix(std::os::unix::net::UnixListener),
}

/// Binds every pool and starts the threads. When this returns, every listener accepts.
///
/// # Errors
/// When an address cannot be bound or a thread cannot start.
pub fn start(cfg: ProxyConfig, opts: Options) -> anyhow::Result<Proxy> {
    let nthreads = opts.threads.max(1);
    THREADS.store(nthreads, Ordering::Relaxed);
    if opts.metrics_port != 0 {
        let buckets: Vec<f64> = (0..24).map(|b| (1u64 << b) as f64 / 1e6).collect();
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener((opts.metrics_bind, opts.metrics_port))
            .set_buckets(&buckets)?
            .install()
            .context("metrics exporter")?;
        info!(
            "ready to serve Prometheus metrics on http://{}:{}/metrics",
            opts.metrics_bind, opts.metrics_port
        );
    }
    let shared = Arc::new(Shared::with_state_file(&cfg, opts.state_file.clone()));
    crate::reshard::restore(&shared, &shared.reshard);
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    // Bind everything first so that errors are reported before any thread starts.
    let mut bound: Vec<Bound> = Vec::new();
    let mut addrs = Vec::new();
    for pool in &cfg.pools {
        match &pool.listen {
            Listen::Tcp(host, port) => {
                let addr = (host.as_str(), *port)
                    .to_socket_addrs()
                    .with_context(|| format!("pool {}: resolving {host}:{port}", pool.name))?
                    .next()
                    .with_context(|| format!("pool {}: {host} has no address", pool.name))?;
                let first = bind_tcp(addr, pool.backlog)
                    .with_context(|| format!("pool {}: binding {addr}", pool.name))?;
                let actual = first.local_addr()?;
                let mut ls = vec![first];
                for _ in 1..nthreads {
                    ls.push(bind_tcp(actual, pool.backlog)?);
                }
                addrs.push(Some(actual));
                info!(
                    "pool {} ready to accept {} connections on {actual} ({} servers)",
                    pool.name,
                    if pool.redis { "redis" } else { "memcache" },
                    pool.servers.len()
                );
                bound.push(Bound::Tcp(ls));
            }
            Listen::Unix(path, perm) => {
                let _ = std::fs::remove_file(path);
                let l = std::os::unix::net::UnixListener::bind(path)
                    .with_context(|| format!("pool {}: binding {}", pool.name, path.display()))?;
                if let Some(mode) = perm {
                    use std::os::unix::fs::PermissionsExt;
                    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode));
                }
                l.set_nonblocking(true)?;
                addrs.push(None);
                info!(
                    "pool {} ready to accept connections on unix:{}",
                    pool.name,
                    path.display()
                );
                bound.push(Bound::Unix(l));
            }
        }
    }
    let mut per_thread: Vec<ThreadListeners> = (0..nthreads).map(|_| Vec::new()).collect();
    for (pi, b) in bound.into_iter().enumerate() {
        match b {
            Bound::Tcp(ls) => {
                for (t, l) in ls.into_iter().enumerate() {
                    per_thread[t].push((pi, Some(l), None));
                }
            }
            Bound::Unix(l) => per_thread[0].push((pi, None, Some(l))),
        }
    }
    let mut threads = Vec::new();
    // Clients per pool, across threads (`client_connections` is a per-pool limit).
    let pool_clients: Vec<Arc<AtomicU64>> = cfg.pools.iter().map(|_| Arc::default()).collect();
    for (t, listeners) in per_thread.into_iter().enumerate() {
        let shared = shared.clone();
        let stats = stats.clone();
        let stop = stop.clone();
        let pools: Vec<PoolAdmission> = cfg
            .pools
            .iter()
            .zip(&pool_clients)
            .map(|(p, n)| (p.redis, p.client_connections, n.clone()))
            .collect();
        threads.push(
            std::thread::Builder::new()
                .name(format!("shoal-proxy-{t}"))
                .spawn(move || worker_main(shared, stats, stop, listeners, pools))?,
        );
    }
    {
        let shared = shared.clone();
        let stats = stats.clone();
        let stop = stop.clone();
        let path = opts.config_path.clone();
        let mtime = opts.config_mtime;
        threads.push(
            std::thread::Builder::new()
                .name("shoal-proxy-health".into())
                .spawn(move || crate::health::run(shared, stats, stop, path, mtime))?,
        );
    }
    {
        let shared = shared.clone();
        let control = shared.reshard.clone();
        let stop = stop.clone();
        threads.push(
            std::thread::Builder::new()
                .name("shoal-proxy-reshard".into())
                .spawn(move || crate::reshard::run(shared, control, stop))?,
        );
    }
    Ok(Proxy {
        shared,
        stats,
        stop,
        threads,
        addrs,
    })
}

/// Per pool: speaks RESP, `client_connections` (0: no limit), its current clients.
type PoolAdmission = (bool, u32, Arc<AtomicU64>);

type ThreadListeners = Vec<(
    usize,
    Option<std::net::TcpListener>,
    Option<std::os::unix::net::UnixListener>,
)>;

fn worker_main(
    shared: Arc<Shared>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    listeners: ThreadListeners,
    pools: Vec<PoolAdmission>,
) {
    // A local runtime (current_thread that runs `!Send` tasks itself): cheaper
    // per wake-up than a LocalSet on a plain runtime.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build_local(tokio::runtime::LocalOptions::default())
    {
        Ok(rt) => rt,
        Err(e) => {
            warn!("worker runtime: {e}");
            return;
        }
    };
    let worker = Rc::new(Worker::new(shared, stats));
    rt.block_on(async move {
        for (pi, tcp, unix) in listeners {
            let (redis, limit, count) = pools[pi].clone();
            if let Some(l) = tcp {
                let l = match TcpListener::from_std(l) {
                    Ok(l) => l,
                    Err(e) => {
                        warn!("listener: {e}");
                        continue;
                    }
                };
                let worker = worker.clone();
                let count = count.clone();
                tokio::task::spawn_local(async move {
                    loop {
                        let Ok((s, _)) = l.accept().await else {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        };
                        let _ = s.set_nodelay(true);
                        spawn_client(&worker, s, pi, redis, limit, &count);
                    }
                });
            }
            if let Some(l) = unix {
                let l = match UnixListener::from_std(l) {
                    Ok(l) => l,
                    Err(e) => {
                        warn!("listener: {e}");
                        continue;
                    }
                };
                let worker = worker.clone();
                let count = count.clone();
                tokio::task::spawn_local(async move {
                    loop {
                        let Ok((s, _)) = l.accept().await else {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        };
                        spawn_client(&worker, s, pi, redis, limit, &count);
                    }
                });
            }
        }
        // `preconnect`: open this thread's server connections now.
        let topo = worker.topology();
        for (pi, p) in topo.pools.iter().enumerate() {
            if !p.cfg.preconnect {
                continue;
            }
            let wire = if p.cfg.redis {
                Wire::Resp2
            } else {
                Wire::Memcache
            };
            for s in &p.servers {
                worker.conn(pi, &p.cfg, &s.primary, wire).preconnect();
            }
        }
        let names: Vec<String> = worker
            .topology()
            .pools
            .iter()
            .map(|p| p.cfg.name.clone())
            .collect();
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            crate::metrics::flush(&names);
        }
    });
}

fn spawn_client<S>(
    worker: &Rc<Worker>,
    s: S,
    pool: usize,
    redis: bool,
    limit: u32,
    count: &Arc<AtomicU64>,
) where
    S: crate::io::Conn + 'static,
{
    let stats = worker.stats.clone();
    let before = count.fetch_add(1, Ordering::Relaxed);
    if limit != 0 && before >= u64::from(limit) {
        count.fetch_sub(1, Ordering::Relaxed);
        Stats::add(&stats.clients_rejected, 1);
        return; // dropped: closed, as twemproxy does past client_connections
    }
    let count = count.clone();
    Stats::add(&stats.clients, 1);
    Stats::add(&stats.clients_total, 1);
    let worker = worker.clone();
    tokio::task::spawn_local(async move {
        if redis {
            crate::resp_front::serve(s, worker, pool).await;
        } else {
            crate::mc_front::serve(s, worker, pool).await;
        }
        stats.clients.fetch_sub(1, Ordering::Relaxed);
        count.fetch_sub(1, Ordering::Relaxed);
    });
}
