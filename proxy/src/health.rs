//! The health thread: probes every backend, ejects and reinstates servers
//! (`auto_eject_hosts`), promotes a replica when a Shoal primary stays down
//! (`failover`), and reloads the configuration on SIGHUP or when the file changes.
//!
//! This thread is the single decider for promotions of this proxy process. Several proxies
//! in front of the same shards must not all promote: run one with `failover: true` and the
//! others with `failover: false` (they follow the new primary through their probes of
//! `ROLE`), until an external coordinator (etcd lease) is wired in — see docs/proxy.md.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;
use shoal_client::resp::{decode_reply, encode_command, Proto, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{error, info, warn};

use crate::config::{BackendKind, ProxyConfig, ReadPolicy};
use crate::metrics::Stats;
use crate::topology::{PoolView, Shared};

const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Sends one RESP command on a fresh connection and reads one reply.
pub async fn resp_call(addr: &str, args: &[&[u8]], auth: Option<&str>) -> Option<Value> {
    let fut = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        let mut out = BytesMut::new();
        if let Some(pw) = auth {
            encode_command(&[b"AUTH", pw.as_bytes()], &mut out);
        }
        encode_command(args, &mut out);
        s.write_all(&out).await.ok()?;
        let mut buf = BytesMut::with_capacity(4096);
        let mut skip = usize::from(auth.is_some());
        loop {
            if let Some(v) = decode_reply(&mut buf, Proto::Resp2).ok()? {
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                return Some(v);
            }
            if s.read_buf(&mut buf).await.ok()? == 0 {
                return None;
            }
        }
    };
    tokio::time::timeout(PROBE_TIMEOUT * 4, fut)
        .await
        .ok()
        .flatten()
}

async fn memcache_probe(addr: &str) -> bool {
    let fut = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(b"version\r\n").await.ok()?;
        let mut buf = [0u8; 128];
        let n = s.read(&mut buf).await.ok()?;
        Some(buf[..n].starts_with(b"VERSION"))
    };
    tokio::time::timeout(PROBE_TIMEOUT, fut)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

async fn probe(pool: &PoolView, addr: &str) -> bool {
    if !pool.cfg.redis {
        return memcache_probe(addr).await;
    }
    let ping = resp_call(addr, &[b"PING"], pool.cfg.redis_auth.as_deref());
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, ping).await,
        Ok(Some(Value::Simple(_)))
    )
}

/// Field `name` of an `INFO` text.
pub(crate) fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
        .map(str::trim)
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Bulk(b) | Value::Simple(b) | Value::Verbatim(b) => {
            Some(String::from_utf8_lossy(b).into_owned())
        }
        _ => None,
    }
}

/// Per-server bookkeeping of the health thread.
#[derive(Default, Clone)]
struct Track {
    down_since: Option<Instant>,
    ejected_until: Option<Instant>,
}

/// The health thread's main loop.
///
/// `loaded_mtime` is the config file's modification time when the running configuration
/// was read (so an edit made while the process started is not missed).
pub fn run(
    shared: Arc<Shared>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    path: Option<PathBuf>,
    loaded_mtime: Option<SystemTime>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!("health runtime: {e}");
            return;
        }
    };
    rt.block_on(async move {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut mtime = loaded_mtime.or_else(|| path.as_deref().and_then(modified));
        let mut tracks: Vec<Vec<Track>> = Vec::new();
        let mut next_probe: Vec<Instant> = Vec::new();
        let mut last_export = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let tick = tokio::time::sleep(Duration::from_millis(100));
            let reload = match hup.as_mut() {
                Some(h) => tokio::select! {
                    _ = tick => false,
                    _ = h.recv() => true,
                },
                None => {
                    tick.await;
                    false
                }
            };
            if let Some(p) = &path {
                let m = modified(p);
                if reload || m != mtime {
                    mtime = m;
                    reload_config(&shared, &stats, p);
                }
            }
            let topo = shared.topology();
            if last_export.elapsed() >= Duration::from_secs(1) {
                last_export = Instant::now();
                export_metrics(&shared, &topo);
            }
            tracks.resize(topo.pools.len(), Vec::new());
            next_probe.resize(topo.pools.len(), Instant::now());
            for pool in topo.pools.iter() {
                if pool.cfg.read_policy == ReadPolicy::ReadYourWrites && pool.cfg.redis {
                    sample_offsets(&shared, pool).await;
                }
            }
            for (pi, pool) in topo.pools.iter().enumerate() {
                if Instant::now() < next_probe[pi] {
                    continue;
                }
                next_probe[pi] =
                    Instant::now() + Duration::from_millis(pool.cfg.health_interval_ms.max(50));
                tracks[pi].resize(pool.servers.len(), Track::default());
                check_pool(&shared, &stats, pi, pool, &mut tracks[pi]).await;
            }
        }
    });
}

/// Per-backend and per-pool series for `/metrics`.
fn export_metrics(shared: &Shared, topo: &crate::topology::Topology) {
    shared.reshard.export_metrics();
    for (addr, h) in shared.all_health() {
        let l = [("backend", addr)];
        metrics::counter!("shoal_proxy_backend_requests_total", &l)
            .absolute(h.requests_total.load(Ordering::Relaxed));
        metrics::counter!("shoal_proxy_backend_failures_total", &l)
            .absolute(h.failures_total.load(Ordering::Relaxed));
        metrics::counter!("shoal_proxy_backend_connects_total", &l)
            .absolute(h.connects_total.load(Ordering::Relaxed));
        metrics::gauge!("shoal_proxy_backend_up", &l).set(if h.probe_ok.load(Ordering::Relaxed) {
            1.0
        } else {
            0.0
        });
    }
    for p in &topo.pools {
        let l = [("pool", p.cfg.name.clone())];
        metrics::gauge!("shoal_proxy_pool_servers", &l).set(p.servers.len() as f64);
        metrics::gauge!("shoal_proxy_pool_servers_live", &l)
            .set(p.servers.iter().filter(|s| s.live).count() as f64);
    }
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

async fn check_pool(
    shared: &Shared,
    stats: &Stats,
    pi: usize,
    pool: &PoolView,
    tracks: &mut [Track],
) {
    let mut servers = pool.servers.clone();
    let mut changed = false;
    let primaries: Vec<String> = servers.iter().map(|s| s.primary.clone()).collect();
    let results = probe_all(pool, &primaries).await;
    for (i, ok) in results.into_iter().enumerate() {
        let h = shared.health(&servers[i].primary);
        let t = &mut tracks[i];
        if ok {
            h.probe_ok.store(true, Ordering::Relaxed);
            h.failures.store(0, Ordering::Relaxed);
            t.down_since = None;
            if !servers[i].live && t.ejected_until.is_none_or(|u| Instant::now() >= u) {
                info!(
                    "pool {}: server {} is back, reinstated",
                    pool.cfg.name, servers[i].name
                );
                servers[i].live = true;
                t.ejected_until = None;
                changed = true;
            }
            continue;
        }
        h.probe_ok.store(false, Ordering::Relaxed);
        h.failed();
        let since = *t.down_since.get_or_insert_with(Instant::now);
        let shoal = pool.cfg.backend == BackendKind::Shoal && pool.cfg.redis;
        // Another decider may have promoted a replica already: follow it.
        if shoal {
            if let Some((addr, epoch)) = promoted_elsewhere(pool, &servers[i]).await {
                info!(
                    "pool {}: {} was promoted (epoch {epoch}) by another decider; following",
                    pool.cfg.name, addr
                );
                adopt_primary(&mut servers[i], &addr, epoch);
                t.down_since = None;
                changed = true;
                continue;
            }
        }
        let can_failover = pool.cfg.failover && shoal;
        if can_failover
            && !servers[i].replicas.is_empty()
            && since.elapsed() >= Duration::from_millis(pool.cfg.failover_timeout_ms)
        {
            if let Some(new) = promote(pool, &servers[i]).await {
                adopt_primary(&mut servers[i], &new.0, new.1);
                servers[i].live = true;
                t.down_since = None;
                t.ejected_until = None;
                Stats::add(&stats.failovers, 1);
                changed = true;
                continue;
            }
        }
        if pool.cfg.auto_eject_hosts
            && servers[i].live
            && h.failures.load(Ordering::Relaxed) >= pool.cfg.server_failure_limit.max(1)
        {
            warn!(
                "pool {}: ejecting server {} ({} failures)",
                pool.cfg.name,
                servers[i].name,
                h.failures.load(Ordering::Relaxed)
            );
            servers[i].live = false;
            t.ejected_until =
                Some(Instant::now() + Duration::from_millis(pool.cfg.server_retry_timeout_ms));
            Stats::add(&stats.ejections, 1);
            changed = true;
        }
    }
    // Replicas: reads go only to the ones that answer.
    for s in servers.iter_mut() {
        if s.replicas.is_empty() {
            continue;
        }
        let ok = probe_all(pool, &s.replicas).await;
        let readable: Vec<String> = s
            .replicas
            .iter()
            .zip(ok)
            .filter(|(_, ok)| *ok)
            .map(|(r, _)| r.clone())
            .collect();
        if readable != s.readable {
            info!(
                "pool {}: readable replicas of {}: {:?}",
                pool.cfg.name, s.name, readable
            );
            s.readable = readable;
            changed = true;
        }
    }
    // Replicas that answer again after a failover are re-pointed at the current primary.
    if pool.cfg.backend == BackendKind::Shoal && pool.cfg.redis {
        for s in &servers {
            if s.epoch == 0 {
                continue;
            }
            for r in &s.replicas {
                repoint_if_needed(pool, r, &s.primary).await;
            }
        }
    }
    if changed {
        shared.update_pool(pi, pool.with_servers(servers));
    }
}

/// Makes replica `addr` the primary of `s` at `epoch`; the old primary becomes a replica
/// (not readable until a probe finds it answering).
fn adopt_primary(s: &mut crate::topology::ServerView, addr: &str, epoch: u64) {
    let old = std::mem::replace(&mut s.primary, addr.to_string());
    s.replicas.retain(|r| r != addr);
    s.readable.retain(|r| r != addr);
    s.replicas.push(old);
    s.epoch = epoch;
}

/// Probes every address concurrently; one result per address, in order.
async fn probe_all(pool: &PoolView, addrs: &[String]) -> Vec<bool> {
    futures_util::future::join_all(addrs.iter().map(|a| probe(pool, a))).await
}

/// `host:port` split at the last colon (port "0" when there is none).
pub(crate) fn split_addr(addr: &str) -> (&str, &str) {
    addr.rsplit_once(':').unwrap_or((addr, "0"))
}

/// Promotes the most up-to-date reachable replica of `server`; returns (its address, epoch).
async fn promote(pool: &PoolView, server: &crate::topology::ServerView) -> Option<(String, u64)> {
    let auth = pool.cfg.redis_auth.as_deref();
    let mut best: Option<(u64, String)> = None;
    let mut max_epoch = server.epoch;
    for r in &server.replicas {
        let Some(v) = resp_call(r, &[b"INFO", b"replication"], auth).await else {
            continue;
        };
        let Some(info) = text(&v) else { continue };
        let off: u64 = field(&info, "slave_repl_offset")
            .or_else(|| field(&info, "master_repl_offset"))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if let Some(Value::Array(items)) = resp_call(r, &[b"SHOAL.EPOCH"], auth).await {
            if let Some(Value::Int(e)) = items.first() {
                max_epoch = max_epoch.max(*e as u64);
            }
        }
        if best.as_ref().is_none_or(|(o, _)| off > *o) {
            best = Some((off, r.clone()));
        }
    }
    let (offset, chosen) = best?;
    let epoch = max_epoch + 1;
    let e = epoch.to_string();
    match resp_call(&chosen, &[b"SHOAL.PROMOTE", e.as_bytes()], auth).await {
        Some(Value::Simple(_)) => {}
        other => {
            warn!(
                "pool {}: promoting {chosen} failed: {other:?}",
                pool.cfg.name
            );
            return None;
        }
    }
    let (host, port) = split_addr(&chosen);
    for r in &server.replicas {
        if r != &chosen {
            let _ = resp_call(r, &[b"REPLICAOF", host.as_bytes(), port.as_bytes()], auth).await;
        }
    }
    warn!(
        "pool {}: primary {} of {} is down; promoted replica {chosen} (offset {offset}, epoch {epoch})",
        pool.cfg.name, server.primary, server.name
    );
    Some((chosen, epoch))
}

/// Read-your-writes bookkeeping (every 100 ms): each primary's `master_repl_offset` and
/// the offsets its replicas acknowledged, from one `INFO replication`. The sample time is
/// taken before asking, so an offset sampled after a client's write covers that write.
async fn sample_offsets(shared: &Shared, pool: &PoolView) {
    let auth = pool.cfg.redis_auth.as_deref();
    for s in &pool.servers {
        if s.replicas.is_empty() {
            continue;
        }
        let started = crate::topology::now_us();
        let Some(info) = resp_call(&s.primary, &[b"INFO", b"replication"], auth)
            .await
            .as_ref()
            .and_then(text)
        else {
            continue;
        };
        let Some(off) = field(&info, "master_repl_offset").and_then(|v| v.parse::<u64>().ok())
        else {
            continue;
        };
        for line in info.lines().filter(|l| l.starts_with("slave")) {
            let kv = |k: &str| {
                line.split([':', ','])
                    .find_map(|p| p.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
            };
            let (Some(ip), Some(port), Some(acked)) = (kv("ip"), kv("port"), kv("offset")) else {
                continue;
            };
            let Ok(acked) = acked.parse::<u64>() else {
                continue;
            };
            for r in &s.replicas {
                let (h, p) = split_addr(r);
                if p == port && (h == ip || h == "localhost" && ip == "127.0.0.1") {
                    shared.health(r).repl_offset.store(acked, Ordering::Release);
                }
            }
        }
        let h = shared.health(&s.primary);
        h.repl_offset.store(off, Ordering::Release);
        h.sample_at_us.store(started, Ordering::Release);
    }
}

/// A replica of `server` that reports itself primary with a newer epoch than the proxy
/// knows (promoted by another proxy or by an operator's `FAILOVER`).
async fn promoted_elsewhere(
    pool: &PoolView,
    server: &crate::topology::ServerView,
) -> Option<(String, u64)> {
    let auth = pool.cfg.redis_auth.as_deref();
    let mut best: Option<(String, u64)> = None;
    for r in &server.replicas {
        if let Some(Value::Array(items)) = resp_call(r, &[b"SHOAL.EPOCH"], auth).await {
            let epoch = match items.first() {
                Some(Value::Int(e)) => *e as u64,
                _ => continue,
            };
            let primary = matches!(items.get(1), Some(Value::Bulk(b)) if b.as_ref() == b"master");
            if primary && epoch > server.epoch && best.as_ref().is_none_or(|(_, e)| epoch > *e) {
                best = Some((r.clone(), epoch));
            }
        }
    }
    best
}

/// Tells `replica` to follow `primary` when it reports another master (e.g. the old
/// primary coming back after a failover).
async fn repoint_if_needed(pool: &PoolView, replica: &str, primary: &str) {
    let auth = pool.cfg.redis_auth.as_deref();
    let Some(v) = resp_call(replica, &[b"INFO", b"replication"], auth).await else {
        return;
    };
    let Some(info) = text(&v) else { return };
    let (host, port) = split_addr(primary);
    let following = field(&info, "role") == Some("slave")
        && field(&info, "master_port") == Some(port)
        && field(&info, "master_host")
            .is_some_and(|h| h == host || (h == "127.0.0.1" && host == "localhost"));
    if !following {
        info!("pool {}: re-pointing {replica} at {primary}", pool.cfg.name);
        let _ = resp_call(
            replica,
            &[b"REPLICAOF", host.as_bytes(), port.as_bytes()],
            auth,
        )
        .await;
    }
}

/// A reloaded pool keeps what the proxy learned at run time (a promoted primary, its
/// epoch, ejections, readable replicas) for every server whose name and configured
/// addresses (primary and replicas, in any role) did not change in the file.
fn carry_runtime_state(old: &PoolView, fresh: PoolView) -> PoolView {
    let addrs = |c: &crate::config::ServerConfig| {
        let mut v: Vec<String> = std::iter::once(format!("{}:{}", c.host, c.port))
            .chain(c.replicas.iter().map(|(h, p)| format!("{h}:{p}")))
            .collect();
        v.sort();
        v
    };
    let mut servers = fresh.servers.clone();
    for (j, new_cfg) in fresh.cfg.servers.iter().enumerate() {
        let Some(i) = old
            .cfg
            .servers
            .iter()
            .position(|o| o.effective_name() == new_cfg.effective_name())
        else {
            continue;
        };
        if addrs(&old.cfg.servers[i]) == addrs(new_cfg) {
            servers[j] = old.servers[i].clone();
        }
    }
    fresh.with_servers(servers)
}

fn reload_config(shared: &Shared, stats: &Stats, path: &Path) {
    let cfg = match ProxyConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            error!("config reload rejected, keeping the running configuration:\n{e}");
            return;
        }
    };
    let topo = shared.topology();
    if cfg.pools.len() != topo.pools.len()
        || cfg.pools.iter().zip(&topo.pools).any(|(n, o)| {
            n.name != o.cfg.name || n.listen != o.cfg.listen || n.redis != o.cfg.redis
        })
    {
        error!("config reload rejected: pools were added, removed, renamed or moved to another listen address or protocol; restart the proxy for that");
        return;
    }
    // A pool whose file lists other servers than the file did before reshards (moving
    // keys) instead of switching rings; one reshard at a time (Shoal siblings together, a
    // plain redis/memcached pool alone).
    let mut reshard: Vec<Arc<crate::config::PoolConfig>> = Vec::new();
    let mut first_group: Option<Vec<String>> = None;
    let mut pools = Vec::with_capacity(cfg.pools.len());
    for (n, old) in cfg.pools.into_iter().zip(&topo.pools) {
        let before = shared.reshard.swap_file_servers(&n.name, &n.servers);
        if n == *old.cfg {
            pools.push(old.clone());
            continue;
        }
        if shared.reshard.pool_busy(&n.name) {
            warn!(
                "pool {}: a reshard is in progress; configuration changes wait for the next reload after it",
                n.name
            );
            pools.push(old.clone());
            continue;
        }
        // A plain pool whose ring stays the same (replicas edited, say) applies at once.
        let ring = |v: &[crate::config::ServerConfig]| -> Vec<(String, String, u16, u32)> {
            v.iter()
                .map(|s| (s.effective_name(), s.host.clone(), s.port, s.weight))
                .collect()
        };
        if n.backend != BackendKind::Shoal && ring(&n.servers) == ring(&old.cfg.servers) {
            info!("pool {}: configuration changed", n.name);
            let fresh = PoolView::from_config(Arc::new(n));
            pools.push(Arc::new(carry_runtime_state(old, fresh)));
            continue;
        }
        // Line numbers and replica lists do not move keys: only the ring's membership does.
        if ring(&before) != ring(&n.servers) {
            let mut names: Vec<String> = before.iter().map(|s| s.effective_name()).collect();
            names.sort();
            let group = first_group.get_or_insert_with(|| names.clone());
            let alone = |b: BackendKind| b != BackendKind::Shoal;
            let joins = reshard.is_empty()
                || !alone(n.backend) && reshard.iter().all(|p| !alone(p.backend));
            if *group == names && joins {
                info!("pool {}: servers changed, resharding", n.name);
                reshard.push(Arc::new(n.clone()));
            } else {
                error!(
                    "pool {}: servers changed, but only one reshard runs at a time; reload again once SHOAL RESHARD STATUS says done",
                    n.name
                );
            }
        }
        // Membership changes only by moving keys (a reshard, possibly a finished
        // admin one); other settings apply now, replica lists included: a server the
        // file still lists takes the file's replicas.
        let file_servers = n.servers.clone();
        let mut keep = n;
        keep.servers = old
            .cfg
            .servers
            .iter()
            .map(|s| {
                let mut s = s.clone();
                if let Some(f) = file_servers
                    .iter()
                    .find(|f| f.effective_name() == s.effective_name())
                {
                    s.replicas.clone_from(&f.replicas);
                    s.line = f.line;
                }
                s
            })
            .collect();
        if keep == *old.cfg {
            pools.push(old.clone());
        } else {
            info!("pool {}: configuration changed", keep.name);
            let fresh = PoolView::from_config(Arc::new(keep));
            pools.push(Arc::new(carry_runtime_state(old, fresh)));
        }
    }
    shared.replace_pools(pools);
    if !reshard.is_empty() {
        if let Err(e) = shared
            .reshard
            .request(crate::reshard::Request::Config(reshard))
        {
            error!("config reload: cannot reshard now: {e}");
        }
    }
    Stats::add(&stats.reloads, 1);
    info!("configuration reloaded from {}", path.display());
}
