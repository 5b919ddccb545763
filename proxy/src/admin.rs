//! What the proxy says about itself: `INFO` (server, clients, proxy sections) and the
//! `SHOAL` admin commands (`SHOAL TOPOLOGY`).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::{BufMut, BytesMut};
use shoal_client::resp::{Args, Proto, ReplyWriter};

use crate::metrics::Stats;
use crate::worker::Worker;

/// The `INFO` text of the proxy.
pub fn info(worker: &Worker, pool_idx: usize) -> String {
    let st = &worker.stats;
    let topo = worker.topology();
    let mut s = String::new();
    let _ = write!(
        s,
        "# Server\r\nshoal_proxy_version:{}\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\nprocess_id:{}\r\nuptime_in_seconds:{}\r\nthreads:{}\r\n\r\n",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        st.started.elapsed().as_secs(),
        crate::server::threads(),
    );
    let _ = write!(
        s,
        "# Clients\r\nconnected_clients:{}\r\ntotal_connections_received:{}\r\nrejected_connections:{}\r\n\r\n",
        Stats::get(&st.clients),
        Stats::get(&st.clients_total),
        Stats::get(&st.clients_rejected),
    );
    let _ = write!(
        s,
        "# Proxy\r\npools:{}\r\nthis_pool:{}\r\ntotal_requests:{}\r\nproxy_errors:{}\r\nbackend_errors:{}\r\nfailovers:{}\r\nejections:{}\r\nconfig_reloads:{}\r\ntopology_version:{}\r\n",
        topo.pools.len(),
        topo.pools[pool_idx].cfg.name,
        Stats::get(&st.requests),
        Stats::get(&st.errors),
        Stats::get(&st.backend_errors),
        Stats::get(&st.failovers),
        Stats::get(&st.ejections),
        Stats::get(&st.reloads),
        topo.version,
    );
    for (pi, p) in topo.pools.iter().enumerate() {
        let _ = write!(
            s,
            "pool{}:name={},listen={},hash={},distribution={},servers={},live={}\r\n",
            pi,
            p.cfg.name,
            p.cfg.listen,
            p.cfg.hash.name(),
            p.cfg.distribution.name(),
            p.servers.len(),
            p.servers.iter().filter(|s| s.live).count(),
        );
        for (si, sv) in p.servers.iter().enumerate() {
            let h = worker.shared.health(&sv.primary);
            let _ = write!(
                s,
                "pool{}_server{}:name={},primary={},replicas={},state={},failures={},epoch={}\r\n",
                pi,
                si,
                sv.name,
                sv.primary,
                sv.replicas.join("|"),
                if sv.live { "up" } else { "ejected" },
                h.failures_total.load(Ordering::Relaxed),
                sv.epoch,
            );
        }
    }
    s
}

/// `SHOAL <subcommand>`: `TOPOLOGY` lists every pool's servers as
/// `[pool, name, primary, [replicas…], state, epoch]` arrays.
pub fn shoal_command(worker: &Worker, args: &Args, buf: &[u8], local: &mut BytesMut, proto: Proto) {
    let sub = if args.len() >= 2 {
        args.get(buf, 1).to_ascii_uppercase()
    } else {
        Vec::new()
    };
    let mut w = ReplyWriter::new(local, proto);
    if sub == b"TOPOLOGY" && args.len() == 2 {
        let topo = worker.topology();
        let rows: Vec<_> = topo
            .pools
            .iter()
            .flat_map(|p| {
                p.servers
                    .iter()
                    .map(move |s| (p.cfg.name.clone(), s.clone()))
            })
            .collect();
        w.array(rows.len());
        for (pool, s) in rows {
            w.array(6);
            w.bulk(pool.as_bytes());
            w.bulk(s.name.as_bytes());
            w.bulk(s.primary.as_bytes());
            w.array(s.replicas.len());
            for r in &s.replicas {
                w.bulk(r.as_bytes());
            }
            w.bulk(if s.live { b"up" } else { b"ejected" });
            w.int(s.epoch as i64);
        }
    } else {
        local.put_slice(b"-ERR unknown SHOAL subcommand (try SHOAL TOPOLOGY)\r\n");
    }
}
