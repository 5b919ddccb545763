//! A worker thread's routing context: the cached topology snapshot and this thread's
//! backend connections (shared pipelined ones, and an idle pool of dedicated ones for
//! transactions and blocking commands).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use shoal_client::resp::encode_command;

use crate::backend::{BackendConn, BackendOpts, Wire};
use crate::config::{BackendKind, PoolConfig, ReadPolicy};
use crate::metrics::Stats;
use crate::topology::{GateCounts, PoolView, RouteTicket, Shared, Topology};

type ConnKey = (usize, String, Wire);

fn wire_idx(w: Wire) -> usize {
    match w {
        Wire::Resp2 => 0,
        Wire::Resp3 => 1,
        Wire::Memcache => 2,
    }
}

/// Per pool: address → shared connections per wire.
type PoolConns = foldhash::HashMap<String, [Vec<Rc<BackendConn>>; 3]>;

/// Per-thread routing state.
pub struct Worker {
    /// Process-wide state.
    pub shared: Arc<Shared>,
    /// Process-wide counters.
    pub stats: Arc<Stats>,
    topo: RefCell<Arc<Topology>>,
    shared_conns: RefCell<Vec<PoolConns>>,
    idle: RefCell<HashMap<ConnKey, Vec<Rc<BackendConn>>>>,
    /// The client whose batch is being routed (set by the frontends before routing it):
    /// picks which of `server_connections` it uses, so one client's requests to a server
    /// always share one connection and run in the order sent.
    affinity: Cell<u64>,
    next_client_id: &'static AtomicU64,
    gate: Arc<GateCounts>,
}

static CLIENT_IDS: AtomicU64 = AtomicU64::new(1);

impl Worker {
    /// A worker over the shared state.
    pub fn new(shared: Arc<Shared>, stats: Arc<Stats>) -> Worker {
        let topo = shared.topology();
        let gate = shared.gate.register();
        Worker {
            gate,
            shared,
            stats,
            topo: RefCell::new(topo),
            shared_conns: RefCell::new(Vec::new()),
            idle: RefCell::new(HashMap::new()),
            affinity: Cell::new(0),
            next_client_id: &CLIENT_IDS,
        }
    }

    /// Enters a batch into the route gate (before reading the topology version; hold it
    /// until the batch's replies are in).
    #[inline]
    pub fn route_ticket(&self) -> RouteTicket<'_> {
        self.shared.gate.enter(&self.gate)
    }

    /// A route ticket held while a session is pinned (see
    /// [`OwnedRouteTicket`](crate::topology::OwnedRouteTicket)).
    pub fn pin_ticket(&self) -> crate::topology::OwnedRouteTicket {
        self.shared.gate.enter_owned(&self.gate)
    }

    /// A fresh client id (process-wide, like Redis' CLIENT ID).
    pub fn client_id(&self) -> u64 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The current topology (refreshed when the shared version moved). Connections to
    /// addresses that left the topology are closed.
    pub fn topology(&self) -> Arc<Topology> {
        let cur = self.topo.borrow().clone();
        if cur.version == self.shared.version() {
            return cur;
        }
        let new = self.shared.topology();
        *self.topo.borrow_mut() = new.clone();
        let mut keep = std::collections::HashSet::new();
        for (pi, p) in new.pools.iter().enumerate() {
            for s in &p.servers {
                keep.insert((pi, s.primary.clone()));
                for r in &s.replicas {
                    keep.insert((pi, r.clone()));
                }
            }
        }
        for (pi, pool) in self.shared_conns.borrow_mut().iter_mut().enumerate() {
            pool.retain(|addr, conns| {
                let ok = keep.contains(&(pi, addr.clone()));
                if !ok {
                    conns.iter().flatten().for_each(close_when_idle);
                }
                ok
            });
        }
        self.idle.borrow_mut().retain(|k, conns| {
            let ok = keep.contains(&(k.0, k.1.clone()));
            if !ok {
                conns.iter().for_each(close_when_idle);
            }
            ok
        });
        new
    }

    fn opts(&self, pool: &PoolConfig, addr: &str, wire: Wire, exclusive: bool) -> BackendOpts {
        let mut handshake = Vec::new();
        let mut b = BytesMut::new();
        if wire == Wire::Resp3 {
            match &pool.redis_auth {
                Some(pw) => encode_command(
                    &[b"HELLO", b"3", b"AUTH", b"default", pw.as_bytes()],
                    &mut b,
                ),
                None => encode_command(&[b"HELLO", b"3"], &mut b),
            }
            handshake.push(b.split().freeze());
        } else if wire == Wire::Resp2 {
            if let Some(pw) = &pool.redis_auth {
                encode_command(&[b"AUTH", pw.as_bytes()], &mut b);
                handshake.push(b.split().freeze());
            }
        }
        if wire != Wire::Memcache && pool.redis_db != 0 {
            let db = pool.redis_db.to_string();
            encode_command(&[b"SELECT", db.as_bytes()], &mut b);
            handshake.push(b.split().freeze());
        }
        BackendOpts {
            addr: addr.to_string(),
            wire,
            // A dedicated connection carries blocking commands and transactions whose
            // waits are the client's own business: the pool `timeout` is for shared ones.
            timeout: if exclusive {
                None
            } else {
                pool.timeout_ms.map(Duration::from_millis)
            },
            handshake,
            retry: Duration::from_millis(pool.server_retry_timeout_ms.clamp(50, 1000)),
            exclusive,
            keepalive: pool.tcpkeepalive,
        }
    }

    /// Sets the client whose requests the next [`conn`](Self::conn) calls route.
    pub fn set_affinity(&self, client: u64) {
        self.affinity.set(client);
    }

    /// The shared pipelined connection to `addr` of pool `pool`: one of
    /// `server_connections`, the same one for every request of the current client (see
    /// [`set_affinity`](Self::set_affinity)), so a client's pipeline keeps its order.
    pub fn conn(
        &self,
        pool_idx: usize,
        pool: &PoolConfig,
        addr: &str,
        wire: Wire,
    ) -> Rc<BackendConn> {
        let mut all = self.shared_conns.borrow_mut();
        if all.len() <= pool_idx {
            all.resize_with(pool_idx + 1, PoolConns::default);
        }
        let per_addr = &mut all[pool_idx];
        let want = pool.server_connections.max(1) as u64;
        let idx = (self.affinity.get() % want) as usize;
        if let Some(c) = per_addr
            .get(addr)
            .and_then(|slots| slots[wire_idx(wire)].get(idx))
        {
            return c.clone();
        }
        let conns = &mut per_addr.entry(addr.to_string()).or_default()[wire_idx(wire)];
        while conns.len() <= idx {
            conns.push(BackendConn::spawn(
                self.opts(pool, addr, wire, false),
                self.shared.health(addr),
            ));
        }
        conns[idx].clone()
    }

    /// A dedicated connection (MULTI/EXEC, WATCH, blocking commands, pub/sub), from the
    /// idle pool when one is there: never a new TCP connection per transaction.
    pub fn checkout(
        &self,
        pool_idx: usize,
        pool: &PoolConfig,
        addr: &str,
        wire: Wire,
    ) -> Rc<BackendConn> {
        let key = (pool_idx, addr.to_string(), wire);
        if let Some(list) = self.idle.borrow_mut().get_mut(&key) {
            while let Some(c) = list.pop() {
                if !c.is_down() {
                    return c;
                }
            }
        }
        BackendConn::spawn(self.opts(pool, addr, wire, true), self.shared.health(addr))
    }

    /// Returns a dedicated connection whose session state is clean (after EXEC, DISCARD,
    /// UNWATCH or a blocking command's reply).
    pub fn checkin(&self, pool_idx: usize, conn: Rc<BackendConn>, wire: Wire) {
        if conn.is_down() {
            return;
        }
        let key = (pool_idx, conn.addr().to_string(), wire);
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(key).or_default();
        if list.len() < 64 {
            list.push(conn);
        } else {
            conn.close();
        }
    }
}

/// Which address serves a request for server `idx` of `pool`. `last_write_us` is when
/// this client's last write to that server completed (0: never), for read-your-writes.
/// Closes a connection to a server that left the topology once the requests other
/// clients still have on it are answered (a reshard that ends removes its old owners
/// while asks to them may be in flight), or after 30 s.
fn close_when_idle(c: &Rc<BackendConn>) {
    if !c.busy() {
        c.close();
        return;
    }
    let c = c.clone();
    tokio::task::spawn_local(async move {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while c.busy() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        c.close();
    });
}

pub fn pick_addr<'a>(
    shared: &Shared,
    pool: &'a PoolView,
    idx: usize,
    write: bool,
    last_write_us: u64,
) -> &'a str {
    let s = &pool.servers[idx];
    if write || s.readable.is_empty() {
        return &s.primary;
    }
    match pool.cfg.read_policy {
        ReadPolicy::Primary => &s.primary,
        ReadPolicy::ReplicaPreferred => &s.readable[fastrand_index(s.readable.len())],
        ReadPolicy::ReadYourWrites => {
            if last_write_us == 0 {
                return &s.readable[fastrand_index(s.readable.len())];
            }
            // A replica may serve this client once it has acknowledged an offset the
            // primary reached after the client's last write completed.
            let p = shared.health(&s.primary);
            if p.sample_at_us.load(Ordering::Acquire) <= last_write_us {
                return &s.primary;
            }
            let need = p.repl_offset.load(Ordering::Acquire);
            let start = fastrand_index(s.readable.len());
            for k in 0..s.readable.len() {
                let r = &s.readable[(start + k) % s.readable.len()];
                if shared.health(r).repl_offset.load(Ordering::Acquire) >= need {
                    return r;
                }
            }
            &s.primary
        }
        ReadPolicy::Any => {
            let i = fastrand_index(s.readable.len() + 1);
            if i == s.readable.len() {
                &s.primary
            } else {
                &s.readable[i]
            }
        }
    }
}

fn fastrand_index(n: usize) -> usize {
    use rand::Rng;
    rand::thread_rng().gen_range(0..n)
}

/// Whether a pool's backends speak RESP.
pub fn is_redis(pool: &PoolConfig) -> bool {
    pool.redis && pool.backend != BackendKind::Memcached
}

/// A reply chunk that the proxy itself produced.
pub fn bytes_of(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}
