//! Listeners, worker threads and the connection lifecycle.
//!
//! ```text
//!   shoal-accept thread (current_thread runtime)
//!     accept on every listener ──round robin──► worker i: mpsc of std TcpStreams
//!     housekeeping: active expiry every 100 ms, metrics flush every second
//!   shoal-worker-i threads (one current_thread runtime each, --threads of them)
//!     one task per connection: read → decode all frames → execute → one write
//! ```
//!
//! One runtime per thread (memcached/Pelikan style) instead of a work-stealing
//! pool: a connection stays on its thread, so the hot path has no cross-thread
//! wake-ups; the keyspace's sharded locks are the only shared state.

mod mc_conn;
mod resp_conn;

use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::shared::{now_ms, ClientHandle, ClientInfo, Protocol, Shared};
use crate::stats;

/// A running server.
pub struct ServerHandle {
    shared: Arc<Shared>,
    shutdown_tx: watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl ServerHandle {
    /// The first RESP listener address.
    pub fn resp_addr(&self) -> Option<SocketAddr> {
        self.shared.resp_addrs.read().first().copied()
    }

    /// The first memcache listener address.
    pub fn memcache_addr(&self) -> Option<SocketAddr> {
        self.shared.memcache_addrs.read().first().copied()
    }

    /// Shared state (for tests and embedding).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Starts a graceful shutdown: stop accepting, let every connection finish
    /// the requests it has read and flush its replies, then stop the workers.
    pub fn shutdown(&self) {
        if self.shared.shutting_down.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = self.shutdown_tx.send(true);
        for c in self.shared.clients.iter() {
            c.killed.store(true, Ordering::SeqCst);
            c.kill.notify_one();
        }
    }

    /// Waits until every thread has exited.
    pub fn wait(mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.shutdown();
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<StdListener> {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    sock.set_reuse_address(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.bind(&addr.into())?;
    sock.listen(511)?;
    sock.set_nonblocking(true)?;
    Ok(sock.into())
}

/// Binds the configured ports and starts the server.
///
/// # Errors
/// When a port cannot be bound or a thread cannot be started.
pub fn start(config: crate::config::ServerConfig) -> anyhow::Result<ServerHandle> {
    let mut resp = Vec::new();
    let mut mc = Vec::new();
    for ip in config.bind_addrs() {
        if config.port != 0 {
            let a = SocketAddr::new(ip, config.port);
            resp.push(bind(a).map_err(|e| anyhow::anyhow!("binding RESP port {a}: {e}"))?);
        }
        if config.memcache_port != 0 {
            let a = SocketAddr::new(ip, config.memcache_port);
            mc.push(bind(a).map_err(|e| anyhow::anyhow!("binding memcache port {a}: {e}"))?);
        }
    }
    start_with_listeners(config, resp, mc)
}

/// Starts the server on already-bound listeners (tests bind `127.0.0.1:0`).
/// When this returns, every listener is accepting: readiness needs no polling.
///
/// # Errors
/// When a thread or runtime cannot be started.
pub fn start_with_listeners(
    config: crate::config::ServerConfig,
    resp: Vec<StdListener>,
    memcache: Vec<StdListener>,
) -> anyhow::Result<ServerHandle> {
    if let Err(errs) = config.validate() {
        anyhow::bail!("invalid configuration: {}", errs.join("; "));
    }
    if config.metrics_port != 0 {
        stats::install_exporter(&config)?;
    }
    let shared = Arc::new(Shared::new(config));
    for l in &resp {
        l.set_nonblocking(true)?;
        shared.resp_addrs.write().push(l.local_addr()?);
    }
    for l in &memcache {
        l.set_nonblocking(true)?;
        shared.memcache_addrs.write().push(l.local_addr()?);
    }
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut threads = Vec::new();
    threads.push(crate::repl::start(&shared, shutdown_rx.clone())?);
    let mut senders = Vec::new();
    for i in 0..shared.threads {
        let (tx, rx) = mpsc::unbounded_channel::<(StdStream, Protocol)>();
        senders.push(tx);
        let sh = shared.clone();
        let sd = shutdown_rx.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("shoal-worker-{i}"))
                .spawn(move || {
                    crate::shared::set_worker_index(i);
                    worker(sh, rx, sd)
                })?,
        );
    }
    let sh = shared.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    threads.push(
        std::thread::Builder::new()
            .name("shoal-accept".into())
            .spawn(move || acceptor(sh, resp, memcache, senders, shutdown_rx, ready_tx))?,
    );
    ready_rx
        .recv()
        .map_err(|_| anyhow::anyhow!("acceptor thread failed to start"))??;
    for a in shared.resp_addrs.read().iter() {
        info!("ready to accept RESP (Redis protocol) connections on {a}");
    }
    for a in shared.memcache_addrs.read().iter() {
        info!("ready to accept memcache connections on {a}");
    }
    Ok(ServerHandle {
        shared,
        shutdown_tx,
        threads,
    })
}

fn worker(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<(StdStream, Protocol)>,
    mut shutdown: watch::Receiver<bool>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            warn!("worker runtime failed to start: {e}");
            return;
        }
    };
    rt.block_on(async move {
        let flush = tokio::spawn(stats::flush_loop(shutdown.clone()));
        loop {
            tokio::select! {
                conn = rx.recv() => match conn {
                    Some((stream, proto)) => {
                        tokio::spawn(serve(shared.clone(), stream, proto));
                    }
                    None => break,
                },
                _ = shutdown.changed() => break,
            }
        }
        // Let connections drain: they were told to stop and exit after flushing.
        let deadline = Instant::now() + Duration::from_secs(5);
        while shared.connected.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        flush.abort();
        stats::flush_thread_local();
    });
}

async fn serve(shared: Arc<Shared>, stream: StdStream, proto: Protocol) {
    let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
        shared.connected.fetch_sub(1, Ordering::SeqCst);
        return;
    };
    let _ = stream.set_nodelay(true);
    let addr = stream
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let laddr = stream
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let id = shared.next_client_id.fetch_add(1, Ordering::Relaxed);
    let mut handle = client_handle(id, addr, laddr, proto);
    shared.clients.insert(id, handle.clone());
    if shared.shutting_down.load(Ordering::SeqCst) {
        handle.killed.store(true, Ordering::SeqCst);
        handle.kill.notify_one();
    }
    let mut serve_as = proto;
    if proto == Protocol::Memcache {
        // A memcache connection whose first byte is `*` speaks RESP for its
        // whole life (no memcache command starts with `*`): shoal-proxy runs
        // SCAN / SHOAL.MIGRATE / INFO against servers it knows by memcache address.
        let mut first = [0u8; 1];
        let peeked = tokio::select! {
            r = stream.peek(&mut first) => matches!(r, Ok(n) if n > 0),
            _ = handle.kill.notified() => false,
        };
        if !peeked || handle.killed.load(Ordering::SeqCst) {
            shared.clients.remove(&id);
            shared.connected.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        if first[0] == b'*' {
            serve_as = Protocol::Resp;
            handle = client_handle(id, addr, laddr, Protocol::Resp);
            shared.clients.insert(id, handle.clone());
            if shared.shutting_down.load(Ordering::SeqCst) {
                handle.killed.store(true, Ordering::SeqCst);
            }
        }
    }
    match serve_as {
        Protocol::Resp => resp_conn::run(&shared, stream, &handle).await,
        Protocol::Memcache => mc_conn::run(&shared, stream, &handle).await,
    }
    shared.clients.remove(&id);
    shared.connected.fetch_sub(1, Ordering::SeqCst);
}

fn client_handle(
    id: u64,
    addr: SocketAddr,
    laddr: SocketAddr,
    protocol: Protocol,
) -> Arc<ClientHandle> {
    Arc::new(ClientHandle {
        id,
        addr,
        laddr,
        protocol,
        since: Instant::now(),
        last_ms: now_ms().into(),
        killed: false.into(),
        kill: tokio::sync::Notify::new(),
        info: parking_lot::Mutex::new(ClientInfo {
            resp: 2,
            ..Default::default()
        }),
    })
}

fn acceptor(
    shared: Arc<Shared>,
    resp: Vec<StdListener>,
    memcache: Vec<StdListener>,
    workers: Vec<mpsc::UnboundedSender<(StdStream, Protocol)>>,
    mut shutdown: watch::Receiver<bool>,
    ready: std::sync::mpsc::Sender<anyhow::Result<()>>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e.into()));
            return;
        }
    };
    rt.block_on(async move {
        let mut listeners = Vec::new();
        for (l, p) in resp
            .into_iter()
            .map(|l| (l, Protocol::Resp))
            .chain(memcache.into_iter().map(|l| (l, Protocol::Memcache)))
        {
            match TcpListener::from_std(l) {
                Ok(l) => listeners.push((l, p)),
                Err(e) => {
                    let _ = ready.send(Err(e.into()));
                    return;
                }
            }
        }
        let _ = ready.send(Ok(()));
        let (conn_tx, mut conn_rx) = mpsc::channel::<(StdStream, Protocol)>(1024);
        for (l, p) in listeners {
            let tx = conn_tx.clone();
            let mut sd = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        r = l.accept() => match r {
                            Ok((s, _)) => match s.into_std() {
                                Ok(s) => { if tx.send((s, p)).await.is_err() { break; } }
                                Err(e) => warn!("accept: {e}"),
                            },
                            Err(e) => {
                                // EMFILE and friends: back off instead of spinning.
                                warn!("accept: {e}");
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        },
                        _ = sd.changed() => break,
                    }
                }
            });
        }
        drop(conn_tx);
        let mut expire_tick = tokio::time::interval(Duration::from_millis(100));
        let mut next = 0usize;
        let mut ticks = 0u64;
        loop {
            tokio::select! {
                c = conn_rx.recv() => {
                    let Some((stream, proto)) = c else { break };
                    shared.counters().total_connections.fetch_add(1, Ordering::Relaxed);
                    let max = shared.settings.maxclients.load(Ordering::Relaxed) as usize;
                    if shared.connected.load(Ordering::SeqCst) >= max {
                        shared.counters().rejected_connections.fetch_add(1, Ordering::Relaxed);
                        reject(stream, proto);
                        continue;
                    }
                    shared.connected.fetch_add(1, Ordering::SeqCst);
                    if workers[next % workers.len()].send((stream, proto)).is_err() {
                        shared.connected.fetch_sub(1, Ordering::SeqCst);
                    }
                    next = next.wrapping_add(1);
                }
                _ = expire_tick.tick() => {
                    let sh = shared.clone();
                    // Active expiry takes shard locks briefly; keep it off the accept path.
                    // With replication it runs under the repl lock and emits DELs.
                    let _ = tokio::task::spawn_blocking(move || crate::repl::active_expire(&sh, now_ms())).await;
                    ticks += 1;
                    if ticks % 10 == 0 {
                        stats::publish_gauges(&shared);
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
    });
}

fn reject(stream: StdStream, proto: Protocol) {
    use std::io::Write;
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let msg: &[u8] = match proto {
        Protocol::Resp => b"-ERR max number of clients reached\r\n",
        Protocol::Memcache => b"SERVER_ERROR Too many open connections\r\n",
    };
    let mut s = stream;
    let _ = s.write_all(msg);
}
