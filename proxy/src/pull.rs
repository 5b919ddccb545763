//! Moving keys on demand, for a client that needs them on one server for a while.
//!
//! A transaction (`MULTI`…`EXEC`) or a `WATCH` runs on one pinned backend connection, so
//! it cannot follow a key from its old owner to its new one the way a single request
//! does with `SHOAL.ASK` (see [`crate::ask`]). When such a session touches a key that a
//! reshard is moving, the frontend first has the old owner migrate exactly those keys
//! to the new owner (`SHOAL.MIGRATE … KEYS k…`, the migrator's own atomic step; Redis'
//! `MIGRATE` for a plain redis-server pool), then pins the new owner. From then on the
//! keys live on the new owner for the rest of the reshard: an ask for them on the old owner
//! answers `SHOALMOVED`, and the migrator finds nothing left to move.
//!
//! One case is not covered: a reshard *cancelled* while such a transaction is open moves
//! the pulled keys back, and commands queued on the pinned server then act there on keys
//! that left it. A WATCH of those keys (the client's own) makes EXEC abort in that case;
//! a hidden WATCH would abort unwatched transactions on any concurrent write, which
//! Redis never does, so the proxy does not add one (docs/resharding.md).

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use shoal_client::resp::encode_command;

use crate::backend::{Batch, Reply, Wire};
use crate::config::BackendKind;
use crate::topology::PoolView;
use crate::worker::Worker;

/// How long a pull keeps retrying a key that is inside a migrating batch.
const GIVE_UP: Duration = Duration::from_secs(10);
/// Timeout given to the source for one pull (ms).
const TIMEOUT_MS: &str = "5000";

/// Whether a pool's keys can be pulled (its backends can move keys atomically).
pub fn supported(pool: &PoolView) -> bool {
    matches!(pool.cfg.backend, BackendKind::Shoal | BackendKind::Redis)
}

/// Moves `keys` from server `src` of `pool` to server `dst`; true once they are there
/// (or were not on `src`: then `dst` owns them already).
pub async fn pull(
    worker: &Rc<Worker>,
    pool: &PoolView,
    pool_idx: usize,
    src: usize,
    dst: usize,
    keys: &[Vec<u8>],
) -> bool {
    let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let mut req = BytesMut::new();
    if pool.cfg.backend == BackendKind::Shoal {
        let (host, port) = crate::health::split_addr(&pool.servers[dst].primary);
        let host = host.trim_matches(['[', ']']);
        let mut args =
            crate::reshard::migrate_head(host, port, TIMEOUT_MS, pool.cfg.redis_auth.as_deref());
        args.push(b"KEYS");
        args.extend_from_slice(&keys);
        encode_command(&args, &mut req);
    } else {
        // Redis' MIGRATE … REPLACE into the pool's database, as the plain migrator's
        // on-demand moves (a copy already at the target is stale: docs/resharding.md).
        crate::reshard::plain::migrate_request(pool, dst, &keys, &mut req);
    }
    let addr = &pool.servers[src].primary;
    let started = Instant::now();
    let batch = Rc::new(Batch::default());
    loop {
        let conn = worker.checkout(pool_idx, &pool.cfg, addr, Wire::Resp2);
        batch.reset();
        let slot = batch.slot();
        conn.enqueue(&req, &batch, slot);
        batch.wait().await;
        let reply = batch.take(slot);
        worker.checkin(pool_idx, conn, Wire::Resp2);
        if let Reply::Data(b) = &reply {
            // SHOAL.MIGRATE: `*2 :keys :bytes`; MIGRATE: `+OK` or `+NOKEY`.
            if matches!(b.first(), Some(b'*' | b'+')) {
                return true;
            }
        }
        if started.elapsed() >= GIVE_UP {
            return false;
        }
        // TRYAGAIN (the key is inside one of the migrator's batches) or a failure.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
