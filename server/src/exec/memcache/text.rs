//! The classic text commands. Reply bytes and counter effects follow memcached
//! 1.6.18 (`proto_text.c`, `do_store_item`, `do_add_delta`), checked against the
//! real server.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use shoal_client::memcache::{reply, KeyList, StoreKind};
use shoal_keyspace::ShardGuard;

use super::{apply_delta, counter_bytes, expire_at, item_size, parse_counter, McConn, VERSION};
use crate::shared::{now_ms as wall_now_ms, Shared};

pub(super) const OUT_OF_MEMORY: &[u8] = b"SERVER_ERROR out of memory storing object\r\n";
const NON_NUMERIC: &[u8] = b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n";

/// `get`/`gets`, and `gat`/`gats` when `touch` carries the new exptime.
pub(super) fn get(
    shared: &Shared,
    conn: &mut McConn,
    keys: KeyList<'_>,
    touch: Option<i64>,
    cas: bool,
    out: &mut BytesMut,
    now: u64,
) {
    let ks = &shared.keyspace;
    for key in keys.iter() {
        let mut g = ks.lock(key);
        let hit = match touch {
            None => {
                let st = conn.stats();
                st.cmd_get += 1;
                match g.lookup_read(key, now, false).filter(|e| e.is_string()) {
                    Some(e) => {
                        st.get_hits += 1;
                        reply::value(out, key, e.flags(), e.value(), cas.then(|| e.cas()));
                        true
                    }
                    None => {
                        st.get_misses += 1;
                        false
                    }
                }
            }
            Some(exptime) => {
                // gat counts as a touch only (cmd_touch, touch_hits/misses), as in memcached.
                let st = conn.stats();
                st.cmd_touch += 1;
                let hit = match g.lookup_read(key, now, false).filter(|e| e.is_string()) {
                    Some(e) => {
                        // Touching keeps the value, flags and CAS id: reply first.
                        reply::value(out, key, e.flags(), e.value(), cas.then(|| e.cas()));
                        true
                    }
                    None => false,
                };
                if hit {
                    st.touch_hits += 1;
                    let at = expire_at(exptime, now);
                    g.update_meta(key, now, false, |m| m.expire_at = at);
                    if at.is_some_and(|a| a <= now) {
                        g.remove(key, now);
                    }
                } else {
                    st.touch_misses += 1;
                }
                hit
            }
        };
        if hit {
            // memcached's ITEM_FETCHED, reported by `mg <key> h`.
            g.mark_fetched(key);
        }
    }
    reply::end(out);
}

/// Inserts `parts` under `key`; an already-expired exptime replaces (and so
/// deletes) the old item without leaving the new one behind. Returns the CAS id.
pub(super) fn put(
    g: &mut ShardGuard<'_>,
    key: &[u8],
    parts: &[&[u8]],
    at: Option<u64>,
    flags: u32,
    now: u64,
) -> u64 {
    let cas = g.insert(key, parts, at, flags, now);
    if at.is_some_and(|a| a <= now) {
        g.remove(key, now);
    }
    cas
}

/// Outcome of a storage operation, shared by the text commands and `ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stored {
    /// STORED, with the new CAS id.
    Yes(u64),
    /// NOT_STORED.
    No,
    Exists,
    NotFound,
}

/// Parameters of one store, shared by the text commands and `ms`.
pub(super) struct StoreOp<'a> {
    pub kind: StoreKind,
    pub key: &'a [u8],
    pub flags: u32,
    pub at: Option<u64>,
    pub data: &'a [u8],
    /// Compare-and-swap id; 0 = none.
    pub cas_in: u64,
    /// `ms ... I`: a CAS lower than the item's stores it as stale.
    pub set_stale: bool,
}

/// memcached's `do_store_item`. `on_stale` is called with the new CAS when an
/// item was stored as stale (meta `I`).
pub(super) fn do_store(
    shared: &Shared,
    conn: &mut McConn,
    op: &StoreOp<'_>,
    now: u64,
    on_stale: impl FnOnce(u64, u64),
) -> Stored {
    let max = shared.settings.max_item_size.load(Ordering::Relaxed) as usize;
    let mut g = shared.keyspace.lock(op.key);
    let st = conn.stats();
    st.cmd_set += 1;
    let old = g
        .lookup(op.key, now)
        .filter(|e| e.is_string())
        .map(|e| (e.cas(), e.flags(), e.expire_at()));
    let outcome = match old {
        Some((old_cas, old_flags, old_at)) => {
            // CAS_NONE / CAS_MATCH / CAS_STALE / CAS_BADVAL.
            let cas_match = op.cas_in != 0 && op.cas_in == old_cas;
            let cas_stale = op.cas_in != 0 && op.set_stale && op.cas_in < old_cas;
            match op.kind {
                StoreKind::Add => Stored::No,
                StoreKind::Cas => {
                    if cas_match {
                        st.cas_hits += 1;
                        Stored::Yes(put(&mut g, op.key, &[op.data], op.at, op.flags, now))
                    } else if cas_stale {
                        st.cas_hits += 1;
                        let cas = put(&mut g, op.key, &[op.data], old_at, op.flags, now);
                        on_stale(old_cas, cas);
                        Stored::Yes(cas)
                    } else {
                        st.cas_badval += 1;
                        Stored::Exists
                    }
                }
                StoreKind::Append | StoreKind::Prepend => {
                    if op.cas_in != 0 && !cas_match {
                        Stored::Exists
                    } else {
                        let old_val = g
                            .lookup(op.key, now)
                            .filter(|e| e.is_string())
                            .map(|e| e.value().to_vec())
                            .unwrap_or_default();
                        if item_size(op.key.len(), old_val.len() + op.data.len(), old_flags) > max {
                            // memcached fails the allocation: NOT_STORED.
                            Stored::No
                        } else {
                            let parts: [&[u8]; 2] = if op.kind == StoreKind::Append {
                                [&old_val, op.data]
                            } else {
                                [op.data, &old_val]
                            };
                            Stored::Yes(put(&mut g, op.key, &parts, old_at, old_flags, now))
                        }
                    }
                }
                StoreKind::Set | StoreKind::Replace => {
                    Stored::Yes(put(&mut g, op.key, &[op.data], op.at, op.flags, now))
                }
            }
        }
        None => match op.kind {
            StoreKind::Set | StoreKind::Add => {
                Stored::Yes(put(&mut g, op.key, &[op.data], op.at, op.flags, now))
            }
            StoreKind::Cas => {
                st.cas_misses += 1;
                Stored::NotFound
            }
            StoreKind::Replace | StoreKind::Append | StoreKind::Prepend => Stored::No,
        },
    };
    if matches!(outcome, Stored::Yes(_)) {
        conn.stats().total_items += 1;
    }
    outcome
}

#[expect(
    clippy::too_many_arguments,
    reason = "one argument per field of the request"
)]
pub(super) fn store(
    shared: &Shared,
    conn: &mut McConn,
    kind: StoreKind,
    key: &[u8],
    flags: u32,
    exptime: i64,
    data: &[u8],
    cas_unique: u64,
    noreply: bool,
    out: &mut BytesMut,
    now: u64,
) {
    if shared.keyspace.make_room(now).is_err() {
        if !noreply {
            out.extend_from_slice(OUT_OF_MEMORY);
        }
        return;
    }
    let op = StoreOp {
        kind,
        key,
        flags,
        at: expire_at(exptime, now),
        data,
        cas_in: cas_unique,
        set_stale: false,
    };
    let r = do_store(shared, conn, &op, now, |_, _| {});
    if noreply {
        return;
    }
    out.extend_from_slice(match r {
        Stored::Yes(_) => reply::STORED,
        Stored::No => reply::NOT_STORED,
        Stored::Exists => reply::EXISTS,
        Stored::NotFound => reply::NOT_FOUND,
    });
}

/// Result of memcached's `do_add_delta`.
pub(super) enum Delta {
    Ok { value: u64, cas: u64 },
    NotFound,
    NonNumeric,
    CasMismatch,
}

/// memcached's `do_add_delta` under the shard lock: keeps flags and exptime,
/// pads in place when the number got shorter, assigns a new CAS id.
pub(super) fn add_delta(
    g: &mut ShardGuard<'_>,
    key: &[u8],
    incr: bool,
    delta: u64,
    cas_in: u64,
    now: u64,
) -> Delta {
    let Some(e) = g.lookup(key, now) else {
        return Delta::NotFound;
    };
    if cas_in != 0 && e.cas() != cas_in {
        return Delta::CasMismatch;
    }
    let old = e.value();
    let Some(cur) = parse_counter(old) else {
        return Delta::NonNumeric;
    };
    let value = apply_delta(cur, incr, delta);
    let bytes = counter_bytes(old.len(), value);
    let (flags, at) = (e.flags(), e.expire_at());
    let cas = g.insert(key, &[&bytes], at, flags, now);
    Delta::Ok { value, cas }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one argument per field of the request"
)]
pub(super) fn incr_decr(
    shared: &Shared,
    conn: &mut McConn,
    key: &[u8],
    incr: bool,
    delta: u64,
    noreply: bool,
    out: &mut BytesMut,
    now: u64,
) {
    let mut g = shared.keyspace.lock(key);
    let r = add_delta(&mut g, key, incr, delta, 0, now);
    drop(g);
    let st = conn.stats();
    match r {
        Delta::Ok { value, .. } => {
            if incr {
                st.incr_hits += 1;
            } else {
                st.decr_hits += 1;
            }
            if !noreply {
                reply::number(out, value);
            }
        }
        Delta::NotFound => {
            if incr {
                st.incr_misses += 1;
            } else {
                st.decr_misses += 1;
            }
            if !noreply {
                out.extend_from_slice(reply::NOT_FOUND);
            }
        }
        Delta::NonNumeric => {
            if !noreply {
                out.extend_from_slice(NON_NUMERIC);
            }
        }
        Delta::CasMismatch => unreachable_exists(out, noreply),
    }
}

/// A text incr/decr never compares CAS ids; kept total for the shared helper.
fn unreachable_exists(out: &mut BytesMut, noreply: bool) {
    if !noreply {
        out.extend_from_slice(reply::EXISTS);
    }
}

pub(super) fn delete(
    shared: &Shared,
    conn: &mut McConn,
    key: &[u8],
    noreply: bool,
    out: &mut BytesMut,
    now: u64,
) {
    let removed = shared.keyspace.lock(key).remove(key, now).is_some();
    let st = conn.stats();
    if removed {
        st.delete_hits += 1;
    } else {
        st.delete_misses += 1;
    }
    if !noreply {
        out.extend_from_slice(if removed {
            reply::DELETED
        } else {
            reply::NOT_FOUND
        });
    }
}

pub(super) fn touch(
    shared: &Shared,
    conn: &mut McConn,
    key: &[u8],
    exptime: i64,
    noreply: bool,
    out: &mut BytesMut,
    now: u64,
) {
    let at = expire_at(exptime, now);
    let mut g = shared.keyspace.lock(key);
    // memcached's touch bumps the item and keeps its CAS id.
    let hit = g
        .lookup_read(key, now, false)
        .filter(|e| e.is_string())
        .is_some()
        && g.update_meta(key, now, false, |m| m.expire_at = at);
    if hit && at.is_some_and(|a| a <= now) {
        g.remove(key, now);
    }
    drop(g);
    let st = conn.stats();
    st.cmd_touch += 1;
    if hit {
        st.touch_hits += 1;
    } else {
        st.touch_misses += 1;
    }
    if !noreply {
        out.extend_from_slice(if hit {
            reply::TOUCHED
        } else {
            reply::NOT_FOUND
        });
    }
}

/// `flush_all [delay]`: immediately, or at `now + delay` (absolute when over 30
/// days). A later `flush_all` replaces a pending one, as memcached's single
/// `oldest_live` does: the scheduled task only runs if `mc_flush_at` still holds
/// its deadline.
pub(super) fn flush_all(
    shared: &Arc<Shared>,
    conn: &mut McConn,
    delay: i64,
    noreply: bool,
    out: &mut BytesMut,
    now: u64,
) {
    conn.stats().cmd_flush += 1;
    match expire_at(delay, now).filter(|&at| delay > 0 && at > now) {
        None => {
            shared.mc_flush_at.store(0, Ordering::SeqCst);
            flush_now(shared);
        }
        Some(at) => {
            shared.mc_flush_at.store(at, Ordering::SeqCst);
            let sh = shared.clone();
            let job = move || {
                if sh
                    .mc_flush_at
                    .compare_exchange(at, 0, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                {
                    flush_now(&sh);
                }
            };
            let wait = std::time::Duration::from_millis(at.saturating_sub(wall_now_ms()));
            match tokio::runtime::Handle::try_current() {
                Ok(h) => {
                    h.spawn(async move {
                        tokio::time::sleep(wait).await;
                        job();
                    });
                }
                Err(_) => {
                    let _ = std::thread::Builder::new()
                        .name("shoal-mc-flush".into())
                        .spawn(move || {
                            std::thread::sleep(wait);
                            job();
                        });
                }
            }
        }
    }
    if !noreply {
        out.extend_from_slice(reply::OK);
    }
}

fn flush_now(shared: &Shared) {
    // Freeing a big keyspace takes a while: hand large ones to the lazy-free thread,
    // but do not start a thread for every flush of a small test keyspace.
    let lazy = shared.keyspace.len() > 65_536;
    crate::repl::mc_flush(shared, lazy);
}

/// `stats [group]`.
pub(super) fn stats(
    shared: &Shared,
    conn: &mut McConn,
    group: Option<&[u8]>,
    out: &mut BytesMut,
    now: u64,
) {
    conn.flush_stats(shared);
    match group {
        None => general_stats(shared, out, now),
        Some(b"settings") => settings_stats(shared, out),
        Some(b"items") => items_stats(shared, out, now),
        Some(b"slabs") => slabs_stats(shared, out),
        Some(b"sizes") => {
            reply::stat(out, b"sizes_status", b"disabled");
            reply::end(out);
        }
        Some(b"conns") => conns_stats(shared, out, now),
        Some(b"reset") => {
            reset_stats(shared);
            out.extend_from_slice(b"RESET\r\n");
        }
        Some(b"detail") => {
            // `stats detail on|off|dump`: Shoal keeps no per-prefix detail.
            out.extend_from_slice(reply::END);
        }
        Some(_) => out.extend_from_slice(b"ERROR\r\n"),
    }
}

fn stat_num(out: &mut BytesMut, name: &str, n: impl itoa::Integer) {
    let mut b = itoa::Buffer::new();
    reply::stat(out, name.as_bytes(), b.format(n).as_bytes());
}

fn stat_str(out: &mut BytesMut, name: &str, v: &str) {
    reply::stat(out, name.as_bytes(), v.as_bytes());
}

/// (user, system) CPU seconds of this process, from /proc (no unsafe getrusage).
fn rusage() -> (f64, f64) {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return (0.0, 0.0);
    };
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
    (tick(11), tick(12))
}

fn general_stats(shared: &Shared, out: &mut BytesMut, now: u64) {
    let c = &shared.counters_sum();
    let mc = &c.mc;
    let ks = shared.keyspace.stats();
    let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let (user, sys) = rusage();
    stat_num(out, "pid", std::process::id());
    stat_num(out, "uptime", shared.uptime());
    stat_num(out, "time", now / 1000);
    stat_str(out, "version", VERSION);
    stat_num(out, "pointer_size", usize::BITS);
    stat_str(out, "rusage_user", &format!("{user:.6}"));
    stat_str(out, "rusage_system", &format!("{sys:.6}"));
    stat_num(
        out,
        "max_connections",
        shared.settings.maxclients.load(Ordering::Relaxed),
    );
    stat_num(
        out,
        "curr_connections",
        shared.connected.load(Ordering::Relaxed),
    );
    stat_num(out, "total_connections", ld(&c.total_connections));
    stat_num(out, "rejected_connections", ld(&c.rejected_connections));
    stat_num(
        out,
        "connection_structures",
        shared.connected.load(Ordering::Relaxed),
    );
    stat_num(out, "cmd_get", ld(&mc.cmd_get));
    stat_num(out, "cmd_set", ld(&mc.cmd_set));
    stat_num(out, "cmd_flush", ld(&mc.cmd_flush));
    stat_num(out, "cmd_touch", ld(&mc.cmd_touch));
    stat_num(out, "get_hits", ld(&mc.get_hits));
    stat_num(out, "get_misses", ld(&mc.get_misses));
    stat_num(out, "get_expired", ld(&mc.get_expired));
    stat_num(out, "get_flushed", 0u64);
    stat_num(out, "delete_misses", ld(&mc.delete_misses));
    stat_num(out, "delete_hits", ld(&mc.delete_hits));
    stat_num(out, "incr_misses", ld(&mc.incr_misses));
    stat_num(out, "incr_hits", ld(&mc.incr_hits));
    stat_num(out, "decr_misses", ld(&mc.decr_misses));
    stat_num(out, "decr_hits", ld(&mc.decr_hits));
    stat_num(out, "cas_misses", ld(&mc.cas_misses));
    stat_num(out, "cas_hits", ld(&mc.cas_hits));
    stat_num(out, "cas_badval", ld(&mc.cas_badval));
    stat_num(out, "touch_hits", ld(&mc.touch_hits));
    stat_num(out, "touch_misses", ld(&mc.touch_misses));
    stat_num(out, "store_too_large", 0u64);
    stat_num(out, "store_no_memory", 0u64);
    stat_num(out, "auth_cmds", 0u64);
    stat_num(out, "auth_errors", 0u64);
    stat_num(out, "bytes_read", ld(&c.net_input_bytes));
    stat_num(out, "bytes_written", ld(&c.net_output_bytes));
    stat_num(out, "limit_maxbytes", shared.keyspace.maxmemory());
    stat_num(
        out,
        "accepting_conns",
        u64::from(!shared.shutting_down.load(Ordering::Relaxed)),
    );
    stat_num(out, "listen_disabled_num", 0u64);
    stat_num(out, "threads", shared.threads);
    stat_num(out, "conn_yields", 0u64);
    stat_num(out, "bytes", shared.keyspace.used_memory());
    stat_num(out, "curr_items", ks.keys);
    stat_num(out, "total_items", ld(&mc.total_items));
    // Expired items are not tracked by fetched-ness: all count as `reclaimed`.
    stat_num(out, "expired_unfetched", 0u64);
    stat_num(out, "evicted_unfetched", 0u64);
    stat_num(out, "evicted_active", 0u64);
    stat_num(out, "evictions", ks.evicted);
    stat_num(out, "reclaimed", ks.expired);
    reply::end(out);
}

fn settings_stats(shared: &Shared, out: &mut BytesMut) {
    let port = shared.memcache_addrs.read().first().map_or(0, |a| a.port());
    let evictions = shared.keyspace.policy() != shoal_keyspace::EvictionPolicy::NoEviction;
    stat_num(out, "maxbytes", shared.keyspace.maxmemory());
    stat_num(
        out,
        "maxconns",
        shared.settings.maxclients.load(Ordering::Relaxed),
    );
    stat_num(out, "tcpport", port);
    stat_num(out, "udpport", 0u16);
    stat_str(out, "inter", &shared.config.bind);
    stat_num(out, "verbosity", 0u8);
    stat_num(out, "oldest", 0u8);
    stat_str(out, "evictions", if evictions { "on" } else { "off" });
    stat_str(out, "domain_socket", "NULL");
    stat_num(out, "umask", 700u16);
    stat_str(out, "shutdown_command", "no");
    stat_str(out, "growth_factor", "1.25");
    stat_num(out, "chunk_size", 48u8);
    stat_num(out, "num_threads", shared.threads);
    stat_num(out, "num_threads_per_udp", shared.threads);
    stat_str(out, "stat_key_prefix", ":");
    stat_str(out, "detail_enabled", "no");
    stat_num(out, "reqs_per_event", 20u8);
    stat_str(out, "cas_enabled", "yes");
    stat_num(out, "tcp_backlog", 511u16);
    stat_str(out, "binding_protocol", "ascii");
    stat_str(out, "auth_enabled_sasl", "no");
    stat_str(out, "auth_enabled_ascii", "no");
    stat_num(
        out,
        "item_size_max",
        shared.settings.max_item_size.load(Ordering::Relaxed),
    );
    stat_str(out, "maxconns_fast", "yes");
    stat_num(out, "hashpower_init", 0u8);
    stat_str(out, "slab_reassign", "no");
    stat_num(out, "slab_automove", 0u8);
    stat_num(out, "slab_chunk_max", 524_288u32);
    stat_str(out, "lru_crawler", "yes");
    stat_str(out, "flush_enabled", "yes");
    stat_str(out, "dump_enabled", "no");
    stat_str(out, "hash_algorithm", "foldhash");
    stat_str(out, "lru_maintainer_thread", "no");
    stat_str(out, "lru_segmented", "no");
    stat_num(out, "idle_timeout", 0u8);
    stat_str(out, "ssl_enabled", "no");
    reply::end(out);
}

// Shoal has no slab allocator: `stats items` and `stats slabs` describe the
// whole keyspace as one pseudo slab class 1, so tools that sum over classes
// get the true totals.
fn items_stats(shared: &Shared, out: &mut BytesMut, _now: u64) {
    let ks = shared.keyspace.stats();
    if ks.keys > 0 {
        stat_num(out, "items:1:number", ks.keys);
        stat_num(out, "items:1:number_hot", 0u8);
        stat_num(out, "items:1:number_warm", 0u8);
        stat_num(out, "items:1:number_cold", ks.keys);
        stat_num(out, "items:1:age_hot", 0u8);
        stat_num(out, "items:1:age_warm", 0u8);
        stat_num(out, "items:1:age", 0u8);
        stat_num(out, "items:1:mem_requested", shared.keyspace.used_memory());
        stat_num(out, "items:1:evicted", ks.evicted);
        stat_num(out, "items:1:evicted_nonzero", 0u8);
        stat_num(out, "items:1:evicted_time", 0u8);
        stat_num(out, "items:1:outofmemory", 0u8);
        stat_num(out, "items:1:tailrepairs", 0u8);
        stat_num(out, "items:1:reclaimed", ks.expired);
        stat_num(out, "items:1:expired_unfetched", 0u8);
        stat_num(out, "items:1:evicted_unfetched", 0u8);
        stat_num(out, "items:1:evicted_active", 0u8);
    }
    reply::end(out);
}

fn slabs_stats(shared: &Shared, out: &mut BytesMut) {
    let ks = shared.keyspace.stats();
    let used = shared.keyspace.used_memory();
    let sum = shared.counters_sum();
    let mc = &sum.mc;
    let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let active = u8::from(ks.keys > 0);
    if ks.keys > 0 {
        stat_num(out, "1:chunk_size", 96u8);
        stat_num(out, "1:used_chunks", ks.keys);
        stat_num(out, "1:free_chunks", 0u8);
        stat_num(out, "1:get_hits", ld(&mc.get_hits));
        stat_num(out, "1:cmd_set", ld(&mc.cmd_set));
        stat_num(out, "1:delete_hits", ld(&mc.delete_hits));
        stat_num(out, "1:incr_hits", ld(&mc.incr_hits));
        stat_num(out, "1:decr_hits", ld(&mc.decr_hits));
        stat_num(out, "1:cas_hits", ld(&mc.cas_hits));
        stat_num(out, "1:cas_badval", ld(&mc.cas_badval));
        stat_num(out, "1:touch_hits", ld(&mc.touch_hits));
    }
    stat_num(out, "active_slabs", active);
    stat_num(out, "total_malloced", used);
    reply::end(out);
}

fn conns_stats(shared: &Shared, out: &mut BytesMut, now: u64) {
    for c in shared.clients.iter() {
        if c.protocol != crate::shared::Protocol::Memcache {
            continue;
        }
        let id = c.id;
        let idle = now.saturating_sub(c.last_ms.load(Ordering::Relaxed)) / 1000;
        reply::stat(
            out,
            format!("{id}:addr").as_bytes(),
            format!("tcp:{}", c.addr).as_bytes(),
        );
        reply::stat(
            out,
            format!("{id}:listen_addr").as_bytes(),
            format!("tcp:{}", c.laddr).as_bytes(),
        );
        reply::stat(out, format!("{id}:state").as_bytes(), b"conn_parse_cmd");
        stat_num(out, &format!("{id}:secs_since_last_cmd"), idle);
    }
    reply::end(out);
}

fn reset_stats(shared: &Shared) {
    shared.counters_each(|c| {
        let zero = crate::shared::Counters::default();
        c.for_each_pair(&zero, |a, _| a.store(0, Ordering::Relaxed));
    });
    shared.keyspace.reset_stats();
}
