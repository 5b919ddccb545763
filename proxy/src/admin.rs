//! What the proxy says about itself: `INFO` (server, clients, proxy sections) and the
//! `SHOAL` admin commands (`SHOAL TOPOLOGY`, `SHOAL RESHARD …`).

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
    let _ = write!(
        s,
        "\r\n# Reshard\r\n{}",
        worker.shared.reshard.status_text()
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
/// `[pool, name, primary, [replicas…], state, epoch]` arrays; `RESHARD` see [`reshard`].
pub fn shoal_command(
    worker: &Worker,
    pool_idx: usize,
    args: &Args,
    buf: &[u8],
    local: &mut BytesMut,
    proto: Proto,
) {
    let sub = if args.len() >= 2 {
        args.get(buf, 1).to_ascii_uppercase()
    } else {
        Vec::new()
    };
    if sub == b"RESHARD" {
        let words: Vec<String> = (2..args.len())
            .map(|i| String::from_utf8_lossy(args.get(buf, i)).into_owned())
            .collect();
        match reshard(worker, pool_idx, &words) {
            Ok(Some(text)) => ReplyWriter::new(local, proto).bulk(text.as_bytes()),
            Ok(None) => local.put_slice(b"+OK\r\n"),
            Err(e) => {
                local.put_u8(b'-');
                local.put_slice(e.replace(['\r', '\n'], " ").as_bytes());
                local.put_slice(b"\r\n");
            }
        }
        return;
    }
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
        local.put_slice(
            b"-ERR unknown SHOAL subcommand (try SHOAL TOPOLOGY or SHOAL RESHARD STATUS)\r\n",
        );
    }
}

/// `shoal <subcommand>` on a memcache listener (a pool without RESP has no `SHOAL`):
/// `shoal reshard …` as [`reshard`]; STATUS answers `STAT <field> <value>` lines and
/// `END`, the others `OK` or `SERVER_ERROR <why>`.
pub fn mc_shoal_command(worker: &Worker, pool_idx: usize, line: &[u8], local: &mut BytesMut) {
    let text = String::from_utf8_lossy(line);
    let words: Vec<String> = text.split_whitespace().map(str::to_string).collect();
    if words.first().map(|w| w.to_ascii_lowercase()).as_deref() != Some("reshard") {
        local.put_slice(b"CLIENT_ERROR unknown shoal subcommand (try shoal reshard status)\r\n");
        return;
    }
    match reshard(worker, pool_idx, &words[1..]) {
        Ok(Some(status)) => {
            for l in status.lines() {
                if let Some((k, v)) = l.split_once(':') {
                    local.put_slice(format!("STAT {k} {}\r\n", v.trim()).as_bytes());
                }
            }
            local.put_slice(b"END\r\n");
        }
        Ok(None) => local.put_slice(b"OK\r\n"),
        Err(e) => {
            let e = e
                .strip_prefix("ERR ")
                .unwrap_or(&e)
                .replace(['\r', '\n'], " ");
            local.put_slice(b"SERVER_ERROR ");
            local.put_slice(e.as_bytes());
            local.put_slice(b"\r\n");
        }
    }
}

const RESHARD_USAGE: &str = "ERR usage: SHOAL RESHARD ADD host:port[:weight] [name] | REMOVE name | WEIGHT name weight | STATUS | PAUSE | RESUME | CANCEL | RATE keys-per-sec [bytes-per-sec]";

/// `SHOAL RESHARD …` on the pool this client is connected to: Ok(Some(text)) for STATUS,
/// Ok(None) for +OK.
fn reshard(worker: &Worker, pool_idx: usize, words: &[String]) -> Result<Option<String>, String> {
    use crate::reshard::Request;
    let ctl = &worker.shared.reshard;
    let Some(op) = words.first().map(|w| w.to_ascii_uppercase()) else {
        return Err(RESHARD_USAGE.into());
    };
    let num = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| format!("ERR invalid number '{s}'"))
    };
    match (op.as_str(), words.len()) {
        ("STATUS", 1) => Ok(Some(ctl.status_text())),
        ("PAUSE" | "RESUME" | "CANCEL", 1) => ctl.control(&op).map(|()| None),
        ("RATE", 2 | 3) => {
            let keys = num(&words[1])?;
            let bytes = words.get(2).map(|b| num(b)).transpose()?;
            ctl.set_rate(keys, bytes);
            Ok(None)
        }
        ("ADD", 2 | 3) => {
            let (host, port, weight) = parse_server(&words[1])?;
            ctl.request(Request::Add {
                pool: pool_idx,
                host,
                port,
                weight,
                name: words.get(2).cloned(),
            })
            .map(|()| None)
        }
        ("REMOVE", 2) => ctl
            .request(Request::Remove {
                pool: pool_idx,
                name: words[1].clone(),
            })
            .map(|()| None),
        ("WEIGHT", 3) => {
            let weight = u32::try_from(num(&words[2])?)
                .ok()
                .filter(|w| *w > 0)
                .ok_or("ERR weight must be a positive integer")?;
            ctl.request(Request::Weight {
                pool: pool_idx,
                name: words[1].clone(),
                weight,
            })
            .map(|()| None)
        }
        _ => Err(RESHARD_USAGE.into()),
    }
}

/// `host:port[:weight]` (IPv6 hosts in brackets).
fn parse_server(s: &str) -> Result<(String, u16, u32), String> {
    let bad = || format!("ERR invalid server '{s}' (want host:port[:weight])");
    let (host, rest) = if let Some(r) = s.strip_prefix('[') {
        let (h, rest) = r.split_once(']').ok_or_else(bad)?;
        (h.to_string(), rest.strip_prefix(':').ok_or_else(bad)?)
    } else {
        let (h, rest) = s.split_once(':').ok_or_else(bad)?;
        (h.to_string(), rest)
    };
    let mut parts = rest.split(':');
    let port: u16 = parts
        .next()
        .and_then(|p| p.parse().ok())
        .filter(|p| *p > 0)
        .ok_or_else(bad)?;
    let weight: u32 = match parts.next() {
        Some(w) => w.parse().ok().filter(|w| *w > 0).ok_or_else(bad)?,
        None => 1,
    };
    if parts.next().is_some() || host.is_empty() {
        return Err(bad());
    }
    Ok((host, port, weight))
}
