//! Live resharding through `shoal-proxy`, under load, checked with the history checker
//! of `shoal_tests::history` (one writer per key, strictly increasing values; every
//! read is checked against the writes acknowledged before it started and those
//! concurrent with it; see that module for the rules).
//!
//! Set-up: `shoal-server` shards, each with a RESP port and a memcache port over one
//! keyspace; the proxy has a Redis pool (`cache`) over the RESP ports and a memcache
//! pool (`mcache`) over the memcache ports with the same server names, hash
//! (`fnv1a_64`), distribution (`ketama`) and hash tag (`{}`), so the two pools are
//! siblings and are resharded together. Admin commands go to the Redis pool's port:
//! `SHOAL RESHARD ADD|REMOVE|WEIGHT|STATUS|PAUSE|RESUME|CANCEL|RATE`.
//!
//! * `history_clean_without_reshard`: the same set-up and load without any reshard: the
//!   harness itself finds nothing to report on a correct system (no false positives).
//! * `reshard_3_4_5_3_history`: 5 servers, the proxy starts with 3; 20,000 RESP keys
//!   (every 10th with a TTL) and 2,000 memcache keys (flags, some with an exptime, CAS
//!   ids noted) preloaded; under load: ADD the 4th, ADD the 5th, REMOVE an original one
//!   and the 4th, each to `state:done`. Then: the history is clean (no lost write, stale
//!   read, resurrection, client-visible error; flags, TTLs and CAS ids moved with their
//!   keys), every preloaded key reads back with its value, TTL, flags and CAS id, every
//!   server holds exactly the keys the final ring gives it (the removed ones none), and
//!   `SHOAL TOPOLOGY` lists the final servers.
//! * `reshard_pause_resume_cancel`: ADD with a low `RATE`; STATUS shows progress; PAUSE
//!   (`keys_moved` stays put across two polls 500 ms apart); RESUME (it grows again);
//!   CANCEL: the reshard ends (`idle` or `done`) with the old ring: the added server is
//!   empty, every key is where the old ring puts it, all preloaded keys read back, the
//!   history is clean.
//! * `reshard_survives_proxy_kill`: with `--state-file`, kill -9 the proxy mid-reshard
//!   (`keys_moved > 0`, state running), restart it with the same file: STATUS shows the
//!   reshard resumed and it reaches `done`; preloaded keys intact; placement is the new
//!   ring's. Client errors are excused only for requests that overlap the outage (from
//!   just before the kill until the restarted proxy answers on both ports) or that
//!   used a connection opened before the kill (its first use afterwards fails); a failed
//!   write counts as "maybe applied", never as acknowledged. Every request that
//!   completed on a live proxy is checked as usual.
//! * `reshard_survives_source_failover`: every shard has a replica (`--replicaof`) and
//!   the pool `failover: true`; writes are acknowledged only with `WAIT 1` (replication
//!   is asynchronous: without it a primary's kill may legitimately lose the last
//!   writes); mid-reshard kill -9 the primary of the source that gives the new server the
//!   most keys; the proxy promotes its replica; the old primary comes back as a replica;
//!   the reshard reaches `done`. Excused: errors (including a `WAIT` that found no
//!   replica) of requests that involve a key of the dead shard and overlap the time from
//!   the kill until the old primary follows the promoted one. Not excused: any error on
//!   another key, any error outside that time, any acknowledged write lost, any stale
//!   read. This test runs the Redis pool alone: the proxy only promotes replicas in
//!   Redis pools, so a memcache sibling would keep pointing at the dead server.
//!
//! * `reshard_plain_redis_3_4_3_history`: the same as the Shoal tests for a pool of plain
//!   `redis-server`s (`backend: redis`: ask script and `MIGRATE`): 4 servers, the proxy
//!   starts with 3; RESP keys preloaded (every 10th with a TTL); under the RESP load of
//!   the checker: ADD the 4th, then REMOVE an original one, each to `state:done`. The
//!   history is clean exactly as for Shoal pools, every preloaded key reads back with its
//!   value and TTL, every server holds exactly the keys the final ring gives it (the
//!   removed one none), and the servers ran the ask script and `MIGRATE`.
//! * `reshard_plain_memcached_3_4`: a pool of plain `memcached`s (`backend: memcached`,
//!   best effort) goes 3 -> 4 with `shoal reshard add` on its own memcache port. Preloaded
//!   keys carry flags and (every 5th) an exptime; during the move readers check that every
//!   preloaded key reads back (get, gets, multi-get, mg) with its value and flags, writers
//!   set/append/incr/delete/add keys of their own created during the move (apart from the
//!   preload, so the documented races cannot happen) and read them back, and one thread
//!   increments preloaded counters (copied on demand by its first `incr`). No reply may
//!   be unexpected; afterwards every preloaded key is on its final-ring owner only, with
//!   its value, flags and TTL (within a few seconds), and the counters hold every
//!   acknowledged increment.
//! * `reshard_transactions_on_moving_keys`: during a throttled ADD, one client runs
//!   WATCH/GET/MULTI/INCR/EXEC and MULTI/INCRBY/GET/EXEC on 600 counters whose owner
//!   changes: no error and no aborted EXEC, every reply exact, the final counts exact, and
//!   the migrator moves fewer keys than the ring change gives (the rest were pulled by
//!   the transactions).
//!
//! Throttled tests set `RATE` before the reshard: the plan takes it (and, for Shoal pools,
//! moves in phases), and an unthrottled move of a test's few thousand keys would end
//! before a later `RATE` arrived.
//!
//! The tests that need the live-resharding proxy fail at once with a clear message when
//! the proxy does not know `SHOAL RESHARD`. Readiness is polled with deadlines; the
//! only fixed wait is the 500 ms that shows a paused reshard stays paused.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_client::ring::{hash_tag, Distribution, HashKind, Ring, RingNode};
use shoal_tests::escape;
use shoal_tests::history::{check, key_names, CheckOptions, History, Load, LoadConfig, Window};
use shoal_tests::memcache::{Frames, McConn, McReply, Seg, Unit};
use shoal_tests::proxy::{info_field, topology, wait_until, Pool, ProxyProc};
use shoal_tests::resp::{encode_command, parse, Read1, RespConn};
use shoal_tests::servers::{
    spawn_memcached, spawn_redis, spawn_shoal, spawn_shoal_pair, ServerProc, ShoalPair, TempDir,
};

const REDIS_POOL: &str = "cache";
const MC_POOL: &str = "mcache";
/// Preloaded RESP keys with `EX` (every n-th).
const RESP_TTL_EVERY: usize = 10;
/// Preloaded memcache keys with an exptime (every n-th).
const MC_TTL_EVERY: usize = 5;
const PRELOAD_TTL: u64 = 100_000;

fn name(i: usize) -> String {
    format!("shard{i}")
}

// ---------------------------------------------------------------------------------------
// set-up

/// The keys every pool of these tests shares (siblings must agree on them).
fn ring_keys(p: Pool) -> Pool {
    p.key("hash", "fnv1a_64")
        .key("distribution", "ketama")
        .key("hash_tag", "\"{}\"")
        .key("backend", "shoal")
}

/// The Redis pool and its memcache sibling over `servers` (`(index, server)`).
fn sibling_pools(servers: &[(usize, &ServerProc)]) -> Vec<Pool> {
    let mut redis = ring_keys(Pool::redis(REDIS_POOL));
    let mut mc = ring_keys(Pool::memcache(MC_POOL));
    for (i, s) in servers {
        redis = redis.server(&name(*i), s.resp_port());
        mc = mc.server(&name(*i), s.memcache_port());
    }
    vec![redis, mc]
}

// ---------------------------------------------------------------------------------------
// admin

/// `SHOAL RESHARD <args>` on `port`; the raw reply. Fails the test with a clear message
/// when the proxy does not implement live resharding.
fn reshard(port: u16, args: &[&str]) -> Vec<u8> {
    let mut full = vec!["SHOAL", "RESHARD"];
    full.extend_from_slice(args);
    let mut c = RespConn::connect(port);
    c.timeout = Duration::from_secs(10);
    let r = match c.cmd(&full) {
        Read1::Reply(r) => r,
        other => panic!("SHOAL RESHARD {args:?}: {}", other.describe()),
    };
    let text = String::from_utf8_lossy(&r).to_ascii_lowercase();
    if r.starts_with(b"-") && text.contains("unknown") {
        panic!(
            "this shoal-proxy does not implement live resharding: `SHOAL RESHARD {}` answered {} \
             (these tests need the SHOAL RESHARD admin commands)",
            args.join(" "),
            escape(&r)
        );
    }
    r
}

fn reshard_ok(port: u16, args: &[&str]) {
    let r = reshard(port, args);
    assert_eq!(
        r,
        b"+OK\r\n",
        "SHOAL RESHARD {}: {}",
        args.join(" "),
        escape(&r)
    );
}

type Status = BTreeMap<String, String>;

/// `SHOAL RESHARD STATUS` as `field -> value`.
fn status(port: u16) -> Status {
    let raw = reshard(port, &["STATUS"]);
    let v = parse(&raw).unwrap_or_else(|| panic!("STATUS: {}", escape(&raw)));
    let body = v
        .as_bytes()
        .unwrap_or_else(|| panic!("STATUS is not a string: {}", escape(&raw)));
    let body = String::from_utf8_lossy(body.strip_prefix(b"txt:").unwrap_or(body)).into_owned();
    let st: Status = body
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    assert!(st.contains_key("state"), "STATUS without state: {body}");
    st
}

fn state(st: &Status) -> &str {
    st.get("state").map_or("", String::as_str)
}

fn moved(st: &Status) -> u64 {
    st.get("keys_moved")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("STATUS without a numeric keys_moved: {st:?}"))
}

/// Polls STATUS until `ok` holds; fails at once on `state:failed`, and after `timeout`
/// with the last status.
fn wait_status(port: u16, what: &str, timeout: Duration, ok: impl Fn(&Status) -> bool) -> Status {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        let st = status(port);
        assert_ne!(
            state(&st),
            "failed",
            "reshard failed while waiting for {what}: {st:?}"
        );
        if ok(&st) {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; last STATUS {st:?}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

fn wait_done(port: u16, what: &str, timeout: Duration) -> Status {
    let t = Instant::now();
    let st = wait_status(port, what, timeout, |s| state(s) == "done");
    eprintln!(
        "[reshard] {what}: done in {:?}, keys_moved {}, bytes_moved {}",
        t.elapsed(),
        st.get("keys_moved").map_or("?", String::as_str),
        st.get("bytes_moved").map_or("?", String::as_str)
    );
    st
}

/// Waits until the reshard just requested runs (past any `starting` phase), then sets
/// the rate: a rate given while a reshard is being planned may be replaced by the plan's.
fn running_at_rate(port: u16, keys_per_sec: u64) {
    wait_status(port, "the reshard to run", Duration::from_secs(15), |s| {
        matches!(state(s), "running" | "done")
    });
    reshard_ok(port, &["RATE", &keys_per_sec.to_string()]);
    let st = status(port);
    if let Some(r) = st.get("rate_keys") {
        assert_eq!(r, &keys_per_sec.to_string(), "RATE not applied: {st:?}");
    }
}

/// `SHOAL RESHARD RATE` before a reshard is requested: the plan takes the current rate,
/// so the keys move throttled from the first batch (an unthrottled move of the test's
/// few thousand keys would be over before a later RATE arrived).
fn rate_first(port: u16, keys_per_sec: u64) {
    reshard_ok(port, &["RATE", &keys_per_sec.to_string()]);
}

/// Fails fast when the proxy has no live resharding; the state before the first reshard.
fn require_reshard(port: u16) {
    let st = status(port);
    assert!(
        matches!(state(&st), "idle" | "done"),
        "a fresh proxy reports {st:?}"
    );
}

fn add_args(port: u16) -> String {
    format!("127.0.0.1:{port}:1")
}

// ---------------------------------------------------------------------------------------
// preloaded data

/// Keys written before the load, with known values, TTLs, flags and CAS ids.
struct Preload {
    resp: Vec<String>,
    mc: Vec<String>,
    mc_cas: Vec<u64>,
}

fn mc_flags(i: usize) -> u32 {
    (i % 60_000) as u32 + 1
}

fn read_ok(c: &mut RespConn, what: &str) -> Vec<u8> {
    match c.read_reply() {
        Read1::Reply(b) => b,
        other => panic!("{what}: {}", other.describe()),
    }
}

/// `VALUE` blocks of a memcache retrieval reply: `key -> (flags, cas, data)`.
fn mc_values(segs: &[Seg]) -> BTreeMap<String, (u32, u64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut it = segs.iter();
    while let Some(s) = it.next() {
        let Seg::Line(l) = s else { continue };
        let l = String::from_utf8_lossy(l).into_owned();
        let t: Vec<&str> = l.split(' ').collect();
        if t.first() != Some(&"VALUE") {
            continue;
        }
        let data = match it.next() {
            Some(Seg::Data(d)) => d.clone(),
            other => panic!("VALUE without data: {other:?}"),
        };
        out.insert(
            t[1].to_string(),
            (
                t[2].parse().expect("flags"),
                t.get(4).map_or(0, |c| c.parse().expect("cas")),
                data,
            ),
        );
    }
    out
}

/// Writes `n_resp` RESP keys (pipelined; every 10th with `EX`) and `n_mc` memcache keys
/// (flags, every 5th with an exptime) through the proxy and notes the CAS ids. With
/// `wait`, a `WAIT 1` after the RESP keys must see them on a replica.
fn preload(
    resp_port: u16,
    mc_port: Option<u16>,
    n_resp: usize,
    n_mc: usize,
    wait: bool,
) -> Preload {
    let t = Instant::now();
    let resp = key_names("pre", n_resp, 0);
    let mut c = RespConn::connect(resp_port);
    c.timeout = Duration::from_secs(10);
    for chunk in (0..n_resp).collect::<Vec<_>>().chunks(500) {
        let mut req = Vec::new();
        for &i in chunk {
            let v = format!("pv{i}");
            if i % RESP_TTL_EVERY == 0 {
                let ttl = PRELOAD_TTL.to_string();
                req.extend(encode_command(&["SET", &resp[i], &v, "EX", &ttl]));
            } else {
                req.extend(encode_command(&["SET", &resp[i], &v]));
            }
        }
        c.send(&req);
        for &i in chunk {
            let r = read_ok(&mut c, "preload SET");
            assert_eq!(r, b"+OK\r\n", "preload {}: {}", resp[i], escape(&r));
        }
    }
    if wait {
        let r = c.call(&["WAIT", "1", "5000"]);
        assert_eq!(r, b":1\r\n", "WAIT after the preload: {}", escape(&r));
    }
    let mc = key_names("mpre", n_mc, 0);
    let mut mc_cas = Vec::new();
    if let Some(mp) = mc_port {
        let mut m = McConn::connect(mp);
        m.timeout = Duration::from_secs(10);
        for chunk in (0..n_mc).collect::<Vec<_>>().chunks(200) {
            let mut req = Vec::new();
            for &i in chunk {
                let v = format!("mv{i}");
                let exp = if i % MC_TTL_EVERY == 0 {
                    PRELOAD_TTL
                } else {
                    0
                };
                req.extend(
                    format!("set {} {} {exp} {}\r\n{v}\r\n", mc[i], mc_flags(i), v.len())
                        .into_bytes(),
                );
            }
            let r = m.request(&req);
            let lines: Vec<&[u8]> = r.lines().collect();
            assert!(
                r.incomplete.is_none() && lines.iter().all(|l| *l == b"STORED"),
                "preload memcache sets: {}",
                r.describe()
            );
        }
        for chunk in mc.chunks(100) {
            let r = m.request(format!("gets {}\r\n", chunk.join(" ")).as_bytes());
            assert!(r.incomplete.is_none(), "preload gets: {}", r.describe());
            let vals = mc_values(&r.segs);
            for k in chunk {
                let (_, cas, _) = vals
                    .get(k)
                    .unwrap_or_else(|| panic!("preloaded {k} not found by gets"));
                mc_cas.push(*cas);
            }
        }
    }
    eprintln!(
        "[reshard] preloaded {n_resp} RESP + {} memcache keys in {:?}",
        mc.len(),
        t.elapsed()
    );
    Preload { resp, mc, mc_cas }
}

fn ttl_ok(ttl: i64, with: bool) -> bool {
    if with {
        ttl > 0 && ttl <= PRELOAD_TTL as i64
    } else {
        ttl == -1
    }
}

/// Every preloaded key through the proxy: value, TTL (RESP), flags and CAS id
/// (memcache). Returns the failures.
fn verify_preload(p: &Preload, resp_port: u16, mc_port: Option<u16>) -> Vec<String> {
    let mut fails = Vec::new();
    let mut c = RespConn::connect(resp_port);
    c.timeout = Duration::from_secs(10);
    let idx: Vec<usize> = (0..p.resp.len()).collect();
    for chunk in idx.chunks(500) {
        let mut mget: Vec<&str> = vec!["MGET"];
        mget.extend(chunk.iter().map(|&i| p.resp[i].as_str()));
        let raw = c.call(&mget);
        let v = parse(&raw).unwrap_or_else(|| panic!("MGET: {}", escape(&raw)));
        let items = v
            .elements()
            .unwrap_or_else(|| panic!("MGET: {}", escape(&raw)));
        assert_eq!(items.len(), chunk.len(), "MGET length");
        for (&i, it) in chunk.iter().zip(items) {
            let want = format!("pv{i}");
            if it.as_bytes() != Some(want.as_bytes()) {
                fails.push(format!("{}: {:?}, want {want}", p.resp[i], it));
            }
        }
        let mut req = Vec::new();
        for &i in chunk {
            req.extend(encode_command(&["TTL", &p.resp[i]]));
        }
        c.send(&req);
        for &i in chunk {
            let r = read_ok(&mut c, "TTL");
            let ttl = parse(&r).and_then(|v| v.as_int()).unwrap_or(i64::MIN);
            if !ttl_ok(ttl, i % RESP_TTL_EVERY == 0) {
                fails.push(format!("TTL {}: {}", p.resp[i], escape(&r)));
            }
        }
    }
    if let Some(mp) = mc_port {
        let mut m = McConn::connect(mp);
        m.timeout = Duration::from_secs(10);
        for (n, chunk) in p.mc.chunks(100).enumerate() {
            let r = m.request(format!("gets {}\r\n", chunk.join(" ")).as_bytes());
            if r.incomplete.is_some() {
                fails.push(format!("gets: {}", r.describe()));
                continue;
            }
            let vals = mc_values(&r.segs);
            for (j, k) in chunk.iter().enumerate() {
                let i = n * 100 + j;
                let want = (mc_flags(i), p.mc_cas[i], format!("mv{i}").into_bytes());
                match vals.get(k) {
                    Some(got) if *got == want => {}
                    other => fails.push(format!(
                        "memcache {k}: {other:?}, want (flags, cas, value) {want:?}"
                    )),
                }
            }
            let mut req = Vec::new();
            for k in chunk {
                req.extend(encode_command(&["TTL", k]));
            }
            c.send(&req);
            for (j, k) in chunk.iter().enumerate() {
                let r = read_ok(&mut c, "TTL");
                let ttl = parse(&r).and_then(|v| v.as_int()).unwrap_or(i64::MIN);
                if !ttl_ok(ttl, (n * 100 + j) % MC_TTL_EVERY == 0) {
                    fails.push(format!("TTL of memcache key {k}: {}", escape(&r)));
                }
            }
        }
    }
    fails
}

// ---------------------------------------------------------------------------------------
// placement

/// The ring of a pool whose servers are these names (weight 1; with names, addresses
/// do not place keys).
fn ring(names: &[String]) -> Ring {
    let nodes: Vec<RingNode> = names
        .iter()
        .enumerate()
        .map(|(i, n)| RingNode::named("127.0.0.1", 10_000 + i as u16, 1, n.clone()))
        .collect();
    Ring::new(Distribution::Ketama, HashKind::Fnv1a_64, &nodes)
}

fn owner<'a>(r: &Ring, names: &'a [String], key: &str) -> &'a str {
    let i = r
        .locate(hash_tag(key.as_bytes(), Some(*b"{}")))
        .expect("a live server");
    &names[i]
}

/// Checker keys present at the end (they are part of what the servers hold).
fn present_keys(resp_port: u16, keys: &[String]) -> Vec<String> {
    let mut c = RespConn::connect(resp_port);
    keys.iter()
        .filter(|k| c.call(&["EXISTS", k]) == b":1\r\n")
        .cloned()
        .collect()
}

/// Every server (`(name, RESP port)`) holds exactly the `keys` the ring over `final_names`
/// gives it: DBSIZE equals that count and all of them exist there; servers off the
/// ring hold nothing. Returns the failures.
fn check_placement(
    servers: &[(String, u16)],
    final_names: &[String],
    keys: &[String],
) -> Vec<String> {
    let r = ring(final_names);
    let mut fails = Vec::new();
    for (n, port) in servers {
        let mine: Vec<&String> = keys
            .iter()
            .filter(|k| final_names.contains(n) && owner(&r, final_names, k) == n.as_str())
            .collect();
        let mut c = RespConn::connect(*port);
        c.timeout = Duration::from_secs(10);
        let dbsize = parse(&c.call(&["DBSIZE"])).and_then(|v| v.as_int());
        if dbsize != Some(mine.len() as i64) {
            fails.push(format!(
                "{n} holds {dbsize:?} keys, the final ring gives it {}",
                mine.len()
            ));
        }
        let mut found = 0;
        for chunk in mine.chunks(500) {
            let mut args: Vec<&str> = vec!["EXISTS"];
            args.extend(chunk.iter().map(|k| k.as_str()));
            found += parse(&c.call(&args)).and_then(|v| v.as_int()).unwrap_or(0);
        }
        if found != mine.len() as i64 {
            fails.push(format!(
                "{n} has {found} of the {} keys the final ring gives it",
                mine.len()
            ));
        }
        eprintln!(
            "[reshard] {n}: {} keys expected, DBSIZE {dbsize:?}",
            mine.len()
        );
    }
    fails
}

fn topology_names(port: u16) -> Vec<String> {
    let mut v: Vec<String> = topology(port)
        .into_iter()
        .filter(|r| r.pool == REDIS_POOL)
        .map(|r| r.name)
        .collect();
    v.sort();
    v
}

fn report_fails(what: &str, fails: &[String]) {
    if fails.is_empty() {
        return;
    }
    for f in fails.iter().take(30) {
        eprintln!("{what}: {f}");
    }
    panic!("{what}: {} failure(s); first: {}", fails.len(), fails[0]);
}

/// Stops the load, reads every key once more and checks the history.
fn finish(
    load: Load,
    resp_port: u16,
    mc_port: Option<u16>,
    opts: &CheckOptions,
    what: &str,
) -> History {
    let mut h = load.stop();
    h.final_reads(resp_port, mc_port, Duration::from_secs(10));
    let report = check(&h, opts);
    if report.is_clean() {
        eprintln!("[reshard] {what}: {} ops; {report}", h.ops.len());
    }
    report.assert_clean(what);
    h
}

/// Now, relative to the load's start (the `+s.sss` times of the checker's reports).
fn at(load: &Load) -> String {
    format!("+{:.3}s", load.t0().elapsed().as_secs_f64())
}

fn load_config(resp_port: u16, mc_port: Option<u16>, prefix: &str) -> LoadConfig {
    let mut cfg = LoadConfig::new(resp_port, mc_port);
    cfg.prefix = prefix.into();
    cfg.max_duration = Duration::from_secs(150);
    cfg
}

// ---------------------------------------------------------------------------------------
// tests

/// The harness against the real system without resharding: the same pools and load give
/// a clean history (what the reshard tests find is theirs, not the harness's).
#[test]
fn history_clean_without_reshard() {
    let servers: Vec<ServerProc> = (0..3).map(|_| spawn_shoal()).collect();
    let pairs: Vec<(usize, &ServerProc)> = servers.iter().enumerate().collect();
    let proxy = ProxyProc::start(&sibling_pools(&pairs));
    let (rp, mp) = (proxy.port(REDIS_POOL), proxy.port(MC_POOL));
    let pre = preload(rp, Some(mp), 2_000, 500, false);
    let load = Load::start(load_config(rp, Some(mp), "h0"));
    load.wait_for_ops(6_000, Duration::from_secs(30));
    let h = finish(load, rp, Some(mp), &CheckOptions::default(), "no reshard");
    assert!(h.ops.len() > 6_000);
    report_fails("preloaded keys", &verify_preload(&pre, rp, Some(mp)));
    // The keys are spread: every shard holds checker keys.
    let names: Vec<String> = (0..3).map(name).collect();
    let r = ring(&names);
    for n in &names {
        assert!(
            h.keys.iter().filter(|k| owner(&r, &names, k) == n).count() > 20,
            "{n} owns too few checker keys"
        );
    }
}

#[test]
fn reshard_3_4_5_3_history() {
    // The CI form: 1 round of 20,000 RESP + 2,000 memcache keys. The long form (a
    // benchmark, bench/reshard-history.sh): SHOAL_RESHARD_ROUNDS rounds of the cycle,
    // SHOAL_RESHARD_SCALE times the keys and the rate.
    let env = |name: &str, max: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .map_or(1, |v| v.clamp(1, max))
    };
    let (rounds, scale) = (
        env("SHOAL_RESHARD_ROUNDS", 50),
        env("SHOAL_RESHARD_SCALE", 50),
    );
    let servers: Vec<ServerProc> = (0..5).map(|_| spawn_shoal()).collect();
    let pairs: Vec<(usize, &ServerProc)> = servers.iter().enumerate().take(3).collect();
    let proxy = ProxyProc::start(&sibling_pools(&pairs));
    let (rp, mp) = (proxy.port(REDIS_POOL), proxy.port(MC_POOL));
    require_reshard(rp);
    let pre = preload(rp, Some(mp), 20_000 * scale, 2_000 * scale, false);
    let mut cfg = load_config(rp, Some(mp), "ha");
    cfg.max_duration = Duration::from_secs(150 * rounds as u64);
    cfg.max_ops_per_thread *= rounds as u64;
    let load = Load::start(cfg);
    load.wait_for_ops(500, Duration::from_secs(15));

    // Each round: 3 -> 4 -> 5 -> 4 (the oldest member leaves) -> 3 (the next oldest);
    // the first is ADD 3, ADD 4, REMOVE 0, REMOVE 3 (an original and a new server leave).
    let mut active: Vec<usize> = vec![0, 1, 2];
    for round in 0..rounds {
        let spare: Vec<usize> = (0..5).filter(|i| !active.contains(i)).collect();
        let steps = [
            ("ADD", spare[0]),
            ("ADD", spare[1]),
            ("REMOVE", active[0]),
            ("REMOVE", spare[0]),
        ];
        for (op, i) in steps {
            let what = format!("round {round}: {op} {}", name(i));
            eprintln!("[reshard] {} {what}", at(&load));
            rate_first(rp, 2_500 * scale as u64);
            if op == "ADD" {
                reshard_ok(rp, &["ADD", &add_args(servers[i].resp_port()), &name(i)]);
                active.push(i);
            } else {
                reshard_ok(rp, &["REMOVE", &name(i)]);
                active.retain(|&a| a != i);
            }
            // Throttled so that keys move for a few seconds while the clients run.
            running_at_rate(rp, 2_500 * scale as u64);
            let st = wait_done(rp, &what, Duration::from_secs(60 * scale as u64));
            eprintln!("[reshard] {} {what} done", at(&load));
            assert!(moved(&st) > 0, "{what} moved no key: {st:?}");
            // The clients are still served between reshards.
            load.wait_for_ops(200, Duration::from_secs(15));
        }
    }
    let h = finish(load, rp, Some(mp), &CheckOptions::default(), "3-4-5-3");

    report_fails("preloaded keys", &verify_preload(&pre, rp, Some(mp)));
    let mut final_names: Vec<String> = active.iter().map(|&i| name(i)).collect();
    final_names.sort();
    if rounds == 1 {
        assert_eq!(
            final_names,
            [1, 2, 4].map(name),
            "the first round's servers"
        );
    }
    assert_eq!(
        topology_names(rp),
        final_names,
        "SHOAL TOPOLOGY after the reshards"
    );
    let mut keys = pre.resp.clone();
    keys.extend(pre.mc.iter().cloned());
    keys.extend(present_keys(rp, &h.keys));
    let all: Vec<(String, u16)> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| (name(i), s.resp_port()))
        .collect();
    report_fails("placement", &check_placement(&all, &final_names, &keys));
}

#[test]
fn reshard_pause_resume_cancel() {
    let servers: Vec<ServerProc> = (0..4).map(|_| spawn_shoal()).collect();
    let pairs: Vec<(usize, &ServerProc)> = servers.iter().enumerate().take(3).collect();
    let proxy = ProxyProc::start(&sibling_pools(&pairs));
    let (rp, mp) = (proxy.port(REDIS_POOL), proxy.port(MC_POOL));
    require_reshard(rp);
    let pre = preload(rp, Some(mp), 6_000, 1_000, false);
    let load = Load::start(load_config(rp, Some(mp), "hb"));
    load.wait_for_ops(500, Duration::from_secs(15));

    rate_first(rp, 150);
    reshard_ok(rp, &["ADD", &add_args(servers[3].resp_port()), &name(3)]);
    // About 1,750 keys move at 150/s: well over 10 s, time to pause, resume and cancel.
    running_at_rate(rp, 150);
    let st = wait_status(rp, "the first keys moved", Duration::from_secs(20), |s| {
        moved(s) > 0
    });
    let m0 = moved(&st);
    wait_status(rp, "keys_moved to grow", Duration::from_secs(20), |s| {
        moved(s) > m0
    });

    eprintln!("[reshard] {} PAUSE", at(&load));
    reshard_ok(rp, &["PAUSE"]);
    let st = wait_status(rp, "state:paused", Duration::from_secs(20), |s| {
        state(s) == "paused"
    });
    let paused_at = moved(&st);
    std::thread::sleep(Duration::from_millis(500));
    let st2 = status(rp);
    assert_eq!(state(&st2), "paused", "{st2:?}");
    assert_eq!(
        moved(&st2),
        paused_at,
        "keys moved while paused: {st:?} then {st2:?}"
    );

    eprintln!("[reshard] {} RESUME", at(&load));
    reshard_ok(rp, &["RESUME"]);
    let st = wait_status(
        rp,
        "moving again after RESUME",
        Duration::from_secs(20),
        |s| state(s) == "running" && moved(s) > paused_at,
    );
    assert_eq!(state(&st), "running", "finished before CANCEL: {st:?}");

    eprintln!("[reshard] {} CANCEL", at(&load));
    reshard_ok(rp, &["CANCEL"]);
    let st = wait_status(
        rp,
        "the cancelled reshard to end",
        Duration::from_secs(60),
        |s| matches!(state(s), "idle" | "done"),
    );
    eprintln!("[reshard] {} cancelled: {st:?}", at(&load));
    load.wait_for_ops(200, Duration::from_secs(15));
    let h = finish(
        load,
        rp,
        Some(mp),
        &CheckOptions::default(),
        "pause/resume/cancel",
    );

    report_fails("preloaded keys", &verify_preload(&pre, rp, Some(mp)));
    let old: Vec<String> = (0..3).map(name).collect();
    assert_eq!(topology_names(rp), old, "SHOAL TOPOLOGY after CANCEL");
    let mut keys = pre.resp.clone();
    keys.extend(pre.mc.iter().cloned());
    keys.extend(present_keys(rp, &h.keys));
    let all: Vec<(String, u16)> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| (name(i), s.resp_port()))
        .collect();
    // The added server is empty again and the old ring places every key.
    report_fails("placement", &check_placement(&all, &old, &keys));
}

#[test]
fn reshard_survives_proxy_kill() {
    let servers: Vec<ServerProc> = (0..4).map(|_| spawn_shoal()).collect();
    let pairs: Vec<(usize, &ServerProc)> = servers.iter().enumerate().take(3).collect();
    let dir = TempDir::new("state");
    let state_file = format!("{}/reshard.state", dir.path());
    let mut proxy = ProxyProc::start_with_args(
        &sibling_pools(&pairs),
        &["--state-file".to_string(), state_file.clone()],
    );
    let (rp, mp) = (proxy.port(REDIS_POOL), proxy.port(MC_POOL));
    require_reshard(rp);
    let pre = preload(rp, Some(mp), 20_000, 2_000, false);
    let load = Load::start(load_config(rp, Some(mp), "hc"));
    load.wait_for_ops(500, Duration::from_secs(15));

    rate_first(rp, 400);
    reshard_ok(rp, &["ADD", &add_args(servers[3].resp_port()), &name(3)]);
    running_at_rate(rp, 400);
    let st = wait_status(rp, "keys moving", Duration::from_secs(30), |s| {
        state(s) == "running" && moved(s) >= 100
    });
    assert!(
        std::path::Path::new(&state_file).is_file(),
        "no state file at {state_file} mid-reshard"
    );

    let down = Instant::now();
    proxy.kill9();
    eprintln!(
        "[reshard] {} proxy killed at keys_moved {}",
        at(&load),
        moved(&st)
    );
    proxy.restart();
    let up = Instant::now();
    eprintln!("[reshard] {} proxy back after {:?}", at(&load), up - down);

    let st = status(rp);
    assert!(
        matches!(state(&st), "running" | "done"),
        "the restarted proxy did not resume the reshard: {st:?}"
    );
    reshard_ok(rp, &["RATE", "0"]);
    wait_done(
        rp,
        "ADD shard3 after the proxy restart",
        Duration::from_secs(60),
    );
    // Clients reconnected and are served again.
    load.wait_for_ops(300, Duration::from_secs(15));
    let opts = CheckOptions {
        tolerate: vec![Window {
            stale_connections: true,
            ..Window::new(down, up, "proxy killed and restarted")
        }],
    };
    let h = finish(load, rp, Some(mp), &opts, "proxy kill mid-reshard");

    report_fails("preloaded keys", &verify_preload(&pre, rp, Some(mp)));
    let new: Vec<String> = (0..4).map(name).collect();
    assert_eq!(topology_names(rp), new, "SHOAL TOPOLOGY after the reshard");
    let mut keys = pre.resp.clone();
    keys.extend(pre.mc.iter().cloned());
    keys.extend(present_keys(rp, &h.keys));
    let all: Vec<(String, u16)> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| (name(i), s.resp_port()))
        .collect();
    report_fails("placement", &check_placement(&all, &new, &keys));
}

#[test]
fn reshard_survives_source_failover() {
    let mut shards: Vec<ShoalPair> = (0..4).map(|i| spawn_shoal_pair(&name(i))).collect();
    for s in &shards {
        let rport = s.replica.resp_port();
        wait_until("replica link up", Duration::from_secs(15), || {
            info_field(rport, "master_link_status").as_deref() == Some("up")
        });
    }
    let mut pool = ring_keys(Pool::redis(REDIS_POOL))
        .key("failover", "true")
        .key("failover_timeout", "500")
        .key("health_interval", "100");
    for (i, s) in shards.iter().enumerate().take(3) {
        pool = pool
            .server(&name(i), s.primary.resp_port())
            .replicas(&name(i), &[s.replica.resp_port()]);
    }
    let proxy = ProxyProc::start(&[pool]);
    let rp = proxy.port(REDIS_POOL);
    require_reshard(rp);
    let pre = preload(rp, None, 10_000, 0, true);

    // The source that gives the new server the most keys is the one to kill.
    let old: Vec<String> = (0..3).map(name).collect();
    let new: Vec<String> = (0..4).map(name).collect();
    let (ro, rn) = (ring(&old), ring(&new));
    let victim = (0..3)
        .max_by_key(|&i| {
            pre.resp
                .iter()
                .filter(|k| owner(&ro, &old, k) == name(i) && owner(&rn, &new, k) == name(3))
                .count()
        })
        .expect("three sources");

    let mut cfg = load_config(rp, None, "hd");
    cfg.wait_replicas = Some((1, 2000));
    cfg.timeout = Duration::from_secs(8);
    let load = Load::start(cfg);
    load.wait_for_ops(300, Duration::from_secs(20));
    let victim_keys: HashSet<String> = load
        .keys()
        .iter()
        .filter(|k| owner(&ro, &old, k) == name(victim))
        .cloned()
        .collect();
    assert!(!victim_keys.is_empty(), "no checker key on the victim");

    rate_first(rp, 300);
    reshard_ok(
        rp,
        &["ADD", &add_args(shards[3].primary.resp_port()), &name(3)],
    );
    running_at_rate(rp, 300);
    let st = wait_status(rp, "keys moving", Duration::from_secs(30), |s| {
        state(s) == "running" && moved(s) >= 50
    });

    let killed = Instant::now();
    shards[victim].primary.kill9();
    eprintln!(
        "[reshard] {} killed the primary of {} at keys_moved {}",
        at(&load),
        name(victim),
        moved(&st)
    );
    let promoted = format!("127.0.0.1:{}", shards[victim].replica.resp_port());
    wait_until(
        "the proxy to promote the replica",
        Duration::from_secs(20),
        || {
            topology(rp)
                .iter()
                .any(|r| r.name == name(victim) && r.primary == promoted && r.state == "up")
        },
    );
    eprintln!(
        "[reshard] {} promoted after {:?}",
        at(&load),
        killed.elapsed()
    );
    // The old primary comes back as a replica, so WAIT 1 is satisfiable again.
    shards[victim].primary.restart();
    let (pport, rport) = (
        shards[victim].primary.resp_port(),
        shards[victim].replica.resp_port().to_string(),
    );
    wait_until(
        "the old primary to follow the promoted one",
        Duration::from_secs(20),
        || {
            info_field(pport, "role").as_deref() == Some("slave")
                && info_field(pport, "master_port").as_deref() == Some(rport.as_str())
                && info_field(pport, "master_link_status").as_deref() == Some("up")
        },
    );
    let settled = Instant::now();
    eprintln!(
        "[reshard] {} settled {:?} after the kill",
        at(&load),
        settled - killed
    );

    reshard_ok(rp, &["RATE", "0"]);
    wait_done(rp, "ADD shard3 across a failover", Duration::from_secs(60));
    load.wait_for_ops(300, Duration::from_secs(20));
    let opts = CheckOptions {
        tolerate: vec![Window {
            keys: Some(victim_keys),
            ..Window::new(
                killed,
                settled,
                "source primary killed until it follows the promoted replica",
            )
        }],
    };
    finish(load, rp, None, &opts, "source failover mid-reshard");
    report_fails("preloaded keys", &verify_preload(&pre, rp, None));
}

/// Transactions and WATCH on keys the reshard is moving run without a client-visible
/// error: the proxy pulls the keys to their new owner first (proxy/src/pull.rs), so the
/// migrator finds fewer keys to move than the ring change gives.
#[test]
fn reshard_transactions_on_moving_keys() {
    let servers: Vec<ServerProc> = (0..4).map(|_| spawn_shoal()).collect();
    let pairs: Vec<(usize, &ServerProc)> = servers.iter().enumerate().take(3).collect();
    let proxy = ProxyProc::start(&sibling_pools(&pairs));
    let rp = proxy.port(REDIS_POOL);
    require_reshard(rp);
    let pre = preload(rp, None, 4_000, 0, false);
    let old: Vec<String> = (0..3).map(name).collect();
    let new: Vec<String> = (0..4).map(name).collect();
    let (ro, rn) = (ring(&old), ring(&new));
    let moving = |k: &str| owner(&ro, &old, k) != owner(&rn, &new, k);
    // Counters, all on keys whose owner changes.
    let counters: Vec<String> = (0..20_000)
        .map(|i| format!("txc:{i}"))
        .filter(|k| moving(k))
        .take(600)
        .collect();
    let mut c = RespConn::connect(rp);
    c.timeout = Duration::from_secs(15);
    for k in &counters {
        assert_eq!(c.call(&["SET", k, "0"]), b"+OK\r\n");
    }
    let total_moving = pre.resp.iter().filter(|k| moving(k)).count() + counters.len();

    rate_first(rp, 400);
    reshard_ok(rp, &["ADD", &add_args(servers[3].resp_port()), &name(3)]);
    running_at_rate(rp, 400);
    let mut expect = vec![0i64; counters.len()];
    let deadline = Instant::now() + Duration::from_secs(40);
    let (mut during, mut i) = (0usize, 0usize);
    // Bounded: the reshard ends (then 50 more) or the deadline passes.
    let mut after_done = 0;
    while Instant::now() < deadline && after_done < 50 && i < 100_000 {
        let j = i % counters.len();
        let k = counters[j].as_str();
        let exec = if i % 2 == 0 {
            assert_eq!(c.call(&["WATCH", k]), b"+OK\r\n", "WATCH {k}");
            let got = c.call(&["GET", k]);
            let want = format!("${}\r\n{}\r\n", expect[j].to_string().len(), expect[j]);
            assert_eq!(escape(&got), escape(want.as_bytes()), "GET {k} after WATCH");
            assert_eq!(c.call(&["MULTI"]), b"+OK\r\n");
            assert_eq!(c.call(&["INCR", k]), b"+QUEUED\r\n", "INCR {k} in MULTI");
            c.call(&["EXEC"])
        } else {
            assert_eq!(c.call(&["MULTI"]), b"+OK\r\n");
            assert_eq!(
                c.call(&["INCRBY", k, "2"]),
                b"+QUEUED\r\n",
                "INCRBY {k} in MULTI"
            );
            assert_eq!(c.call(&["GET", k]), b"+QUEUED\r\n", "GET {k} in MULTI");
            c.call(&["EXEC"])
        };
        let v = expect[j] + if i % 2 == 0 { 1 } else { 2 };
        let want = if i % 2 == 0 {
            format!("*1\r\n:{v}\r\n")
        } else {
            format!("*2\r\n:{v}\r\n${}\r\n{v}\r\n", v.to_string().len())
        };
        assert_eq!(escape(&exec), escape(want.as_bytes()), "EXEC on {k}");
        expect[j] = v;
        if i % 50 == 0 {
            if state(&status(rp)) == "done" {
                after_done += 1;
            } else {
                during = i + 1;
            }
        } else if after_done > 0 {
            after_done += 1;
        }
        i += 1;
    }
    let st = wait_done(rp, "ADD with transactions", Duration::from_secs(60));
    eprintln!(
        "[reshard] {i} transactions, {during} while moving; the migrator moved {} of {total_moving} moving keys",
        moved(&st)
    );
    assert!(
        during >= 200,
        "only {during} transactions ran during the reshard"
    );
    assert!(
        moved(&st) < total_moving as u64,
        "the migrator moved all {total_moving} keys: no transaction pulled one"
    );
    for (j, k) in counters.iter().enumerate() {
        let want = format!("${}\r\n{}\r\n", expect[j].to_string().len(), expect[j]);
        assert_eq!(
            escape(&c.call(&["GET", k])),
            escape(want.as_bytes()),
            "final {k}"
        );
    }
    report_fails("preloaded keys", &verify_preload(&pre, rp, None));
    let mut keys = pre.resp.clone();
    keys.extend(counters.iter().cloned());
    let all: Vec<(String, u16)> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| (name(i), s.resp_port()))
        .collect();
    report_fails("placement", &check_placement(&all, &new, &keys));
}

// ---------------------------------------------------------------------------------------
// plain redis-server and memcached pools

/// A pool over plain servers with the ring keys of these tests (no sibling).
fn plain_pool(p: Pool, backend: &str, servers: &[(usize, &ServerProc)]) -> Pool {
    let mut p = p
        .key("hash", "fnv1a_64")
        .key("distribution", "ketama")
        .key("hash_tag", "\"{}\"")
        .key("backend", backend);
    for (i, s) in servers {
        p = p.server(&name(*i), s.port);
    }
    p
}

/// Calls of `cmd` an instance served (`INFO commandstats`).
fn command_calls(port: u16, cmd: &str) -> u64 {
    let raw = RespConn::connect(port).call(&["INFO", "commandstats"]);
    let text = String::from_utf8_lossy(&raw).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{cmd}:calls=")))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn reshard_plain_redis_3_4_3_history() {
    let servers: Vec<ServerProc> = (0..4).map(|_| spawn_redis()).collect();
    let pairs: Vec<(usize, &ServerProc)> = servers.iter().enumerate().take(3).collect();
    let proxy = ProxyProc::start(&[plain_pool(Pool::redis(REDIS_POOL), "redis", &pairs)]);
    let rp = proxy.port(REDIS_POOL);
    require_reshard(rp);
    let pre = preload(rp, None, 6_000, 0, false);
    let load = Load::start(load_config(rp, None, "hp"));
    load.wait_for_ops(500, Duration::from_secs(15));

    // 3 -> 4 -> 3 (an original server leaves).
    for (op, i) in [("ADD", 3), ("REMOVE", 0)] {
        let what = format!("{op} {} (plain redis)", name(i));
        eprintln!("[reshard] {} {what}", at(&load));
        if op == "ADD" {
            reshard_ok(rp, &["ADD", &add_args(servers[i].port), &name(i)]);
        } else {
            reshard_ok(rp, &["REMOVE", &name(i)]);
        }
        // Throttled so that keys move for two or three seconds while the clients run.
        running_at_rate(rp, 700);
        let st = wait_done(rp, &what, Duration::from_secs(30));
        assert!(moved(&st) > 0, "{what} moved no key: {st:?}");
        load.wait_for_ops(200, Duration::from_secs(15));
    }
    let h = finish(
        load,
        rp,
        None,
        &CheckOptions::default(),
        "plain redis 3-4-3",
    );

    report_fails("preloaded keys", &verify_preload(&pre, rp, None));
    let final_names: Vec<String> = [1, 2, 3].into_iter().map(name).collect();
    assert_eq!(
        topology_names(rp),
        final_names,
        "SHOAL TOPOLOGY after the reshards"
    );
    let mut keys = pre.resp.clone();
    keys.extend(present_keys(rp, &h.keys));
    let all: Vec<(String, u16)> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| (name(i), s.port))
        .collect();
    report_fails("placement", &check_placement(&all, &final_names, &keys));
    // Moving keys were asked about with the script, and batches moved with MIGRATE.
    let calls = |cmd: &str| {
        servers
            .iter()
            .map(|s| command_calls(s.port, cmd))
            .sum::<u64>()
    };
    let (evalsha, migrate) = (calls("evalsha"), calls("migrate"));
    eprintln!("[reshard] plain redis: {evalsha} EVALSHA, {migrate} MIGRATE");
    assert!(evalsha > 0, "no request was asked with the script");
    assert!(migrate > 0, "no MIGRATE ran");
}

/// `shoal reshard <args>` on a memcache port: the reply's lines.
fn mc_admin(port: u16, args: &str) -> Vec<String> {
    let mut m = McConn::connect(port);
    m.timeout = Duration::from_secs(10);
    m.send(format!("shoal reshard {args}\r\n").as_bytes());
    let unit = if args == "status" {
        Unit::UntilEnd
    } else {
        Unit::Line
    };
    let r = m.read(&Frames::Units(vec![unit]));
    assert!(
        r.incomplete.is_none(),
        "shoal reshard {args}: {}",
        r.describe()
    );
    r.lines()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect()
}

fn mc_admin_ok(port: u16, args: &str) {
    let r = mc_admin(port, args);
    assert_eq!(r, ["OK"], "shoal reshard {args}");
}

/// `shoal reshard status` on a memcache port, as `field -> value`.
fn mc_status(port: u16) -> Status {
    let st: Status = mc_admin(port, "status")
        .iter()
        .filter_map(|l| l.strip_prefix("STAT "))
        .map(|l| match l.split_once(' ') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect();
    assert!(st.contains_key("state"), "status without state: {st:?}");
    st
}

fn mc_wait_status(
    port: u16,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&Status) -> bool,
) -> Status {
    let deadline = Instant::now() + timeout;
    loop {
        let st = mc_status(port);
        assert_ne!(
            state(&st),
            "failed",
            "reshard failed waiting for {what}: {st:?}"
        );
        if ok(&st) {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; last status {st:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The first line of a reply (empty when none).
fn first_line(r: &McReply) -> String {
    r.lines()
        .next()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .unwrap_or_default()
}

/// `mg <key> v f t` on a server: (value, flags, ttl) or None on a miss.
fn mc_item(m: &mut McConn, key: &str) -> Option<(Vec<u8>, u32, i64)> {
    let r = m.request(format!("mg {key} v f t\r\n").as_bytes());
    let line = first_line(&r);
    if line == "EN" {
        return None;
    }
    let toks: Vec<&str> = line.split(' ').collect();
    assert_eq!(toks[0], "VA", "mg {key}: {}", r.describe());
    let flag = |p: char| {
        toks.iter()
            .find_map(|t| t.strip_prefix(p))
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or_else(|| panic!("mg {key}: no {p} in {}", r.describe()))
    };
    let data = match r.segs.get(1) {
        Some(Seg::Data(d)) => d.clone(),
        other => panic!("mg {key}: no data ({other:?})"),
    };
    Some((data, flag('f') as u32, flag('t')))
}

/// What the threads of the memcache load record: failures (unexpected replies).
type Fails = Arc<Mutex<Vec<String>>>;

fn fail(f: &Fails, what: String) {
    let mut v = f.lock().unwrap();
    if v.len() < 50 {
        v.push(what);
    }
}

/// Reads preloaded keys through the proxy until `stop`: every one must be found with its
/// value and flags (get, gets, multi-get, mg).
fn mc_reader(port: u16, pre: &[String], stop: &AtomicBool, fails: &Fails, seed: usize) -> u64 {
    let mut m = McConn::connect(port);
    let mut n = 0u64;
    let t0 = Instant::now();
    while !stop.load(Ordering::Relaxed) && n < 200_000 && t0.elapsed() < Duration::from_secs(60) {
        n += 1;
        let pick = |j: usize| (seed * 7919 + n as usize * 104_729 + j * 31) % pre.len();
        let want = |i: usize| (mc_flags(i), format!("mv{i}").into_bytes());
        match n % 4 {
            0 | 1 => {
                let idx: Vec<usize> = (0..if n % 4 == 0 { 1 } else { 5 }).map(pick).collect();
                let verb = if n % 8 < 4 { "get" } else { "gets" };
                let keys: Vec<&str> = idx.iter().map(|&i| pre[i].as_str()).collect();
                let r = m.request(format!("{verb} {}\r\n", keys.join(" ")).as_bytes());
                let vals = mc_values(&r.segs);
                for &i in &idx {
                    match vals.get(&pre[i]) {
                        Some((f, _, d)) if (*f, d.clone()) == want(i) => {}
                        other => fail(
                            fails,
                            format!("{verb} {}: {other:?} ({})", pre[i], r.describe()),
                        ),
                    }
                }
            }
            _ => {
                let i = pick(0);
                let r = m.request(format!("mg {} v f\r\n", pre[i]).as_bytes());
                let line = first_line(&r);
                let (flags, data) = want(i);
                let ok = line.starts_with("VA ")
                    && line.split(' ').any(|t| t == format!("f{flags}"))
                    && r.segs.get(1) == Some(&Seg::Data(data));
                if !ok {
                    fail(fails, format!("mg {}: {}", pre[i], r.describe()));
                }
            }
        }
    }
    n
}

/// Writes and reads keys of its own (created after the move began) until `stop`; every
/// reply must be what a single memcached would answer.
fn mc_writer(port: u16, w: usize, stop: &AtomicBool, fails: &Fails) -> u64 {
    let mut m = McConn::connect(port);
    let mut n = 0u64;
    let t0 = Instant::now();
    let expect = |m: &mut McConn, req: String, want: &str, fails: &Fails| {
        let r = m.request(req.as_bytes());
        let got = first_line(&r);
        if got != want {
            fail(
                fails,
                format!("{}: {} (want {want})", req.trim_end(), r.describe()),
            );
        }
        r
    };
    while !stop.load(Ordering::Relaxed) && n < 20_000 && t0.elapsed() < Duration::from_secs(60) {
        n += 1;
        let k = format!("w{w}:{n}");
        let v = format!("val{n}");
        expect(
            &mut m,
            format!("set {k} {n} 0 {}\r\n{v}\r\n", v.len()),
            "STORED",
            fails,
        );
        let r = expect(
            &mut m,
            format!("get {k}\r\n"),
            &format!("VALUE {k} {n} {}", v.len()),
            fails,
        );
        if r.segs.get(1) != Some(&Seg::Data(v.clone().into_bytes())) {
            fail(fails, format!("get {k}: {}", r.describe()));
        }
        expect(
            &mut m,
            format!("append {k} 0 0 1\r\nx\r\n"),
            "STORED",
            fails,
        );
        expect(
            &mut m,
            format!("mg {k} v\r\n"),
            &format!("VA {}", v.len() + 1),
            fails,
        );
        let c = format!("c{w}:{n}");
        expect(&mut m, format!("add {c} 0 0 1\r\n5\r\n"), "STORED", fails);
        expect(
            &mut m,
            format!("add {c} 0 0 1\r\n6\r\n"),
            "NOT_STORED",
            fails,
        );
        expect(&mut m, format!("incr {c} 3\r\n"), "8", fails);
        expect(&mut m, format!("delete {k}\r\n"), "DELETED", fails);
        expect(&mut m, format!("get {k}\r\n"), "END", fails);
        expect(&mut m, format!("delete {k}\r\n"), "NOT_FOUND", fails);
        expect(
            &mut m,
            format!("incr nothere{w}:{n} 1\r\n"),
            "NOT_FOUND",
            fails,
        );
    }
    n
}

#[test]
fn reshard_plain_memcached_3_4() {
    const N_PRE: usize = 3_000;
    const N_COUNTERS: usize = 60;
    let servers: Vec<ServerProc> = (0..4).map(|_| spawn_memcached()).collect();
    let pairs: Vec<(usize, &ServerProc)> = servers.iter().enumerate().take(3).collect();
    let proxy = ProxyProc::start(&[plain_pool(Pool::memcache(MC_POOL), "memcached", &pairs)]);
    let mp = proxy.port(MC_POOL);
    let st = mc_status(mp);
    assert!(
        matches!(state(&st), "idle" | "done"),
        "a fresh proxy reports {st:?}"
    );

    // Preload: values, flags, every 5th with an exptime; counters at 1000.
    let pre = key_names("mpre", N_PRE, 0);
    let counters = key_names("cnt", N_COUNTERS, 0);
    let mut m = McConn::connect(mp);
    m.timeout = Duration::from_secs(10);
    for chunk in (0..N_PRE).collect::<Vec<_>>().chunks(200) {
        let mut req = Vec::new();
        for &i in chunk {
            let v = format!("mv{i}");
            let exp = if i % MC_TTL_EVERY == 0 {
                PRELOAD_TTL
            } else {
                0
            };
            req.extend(
                format!(
                    "set {} {} {exp} {}\r\n{v}\r\n",
                    pre[i],
                    mc_flags(i),
                    v.len()
                )
                .into_bytes(),
            );
        }
        let r = m.request(&req);
        assert!(
            r.lines().all(|l| l == b"STORED"),
            "preload: {}",
            r.describe()
        );
    }
    for c in &counters {
        let r = m.request(format!("set {c} 0 0 4\r\n1000\r\n").as_bytes());
        assert_eq!(first_line(&r), "STORED");
    }

    mc_admin_ok(
        mp,
        &format!("add {} {}", add_args(servers[3].port), name(3)),
    );
    mc_wait_status(mp, "the reshard to run", Duration::from_secs(15), |s| {
        matches!(state(s), "running" | "done")
    });
    mc_admin_ok(mp, "rate 250");
    let t_move = Instant::now();

    let stop = Arc::new(AtomicBool::new(false));
    let fails: Fails = Arc::default();
    let pre_arc = Arc::new(pre.clone());
    let mut threads = Vec::new();
    for r in 0..2 {
        let (stop, fails, pre) = (stop.clone(), fails.clone(), pre_arc.clone());
        threads.push(std::thread::spawn(move || {
            mc_reader(mp, &pre, &stop, &fails, r)
        }));
    }
    for w in 0..2 {
        let (stop, fails) = (stop.clone(), fails.clone());
        threads.push(std::thread::spawn(move || mc_writer(mp, w, &stop, &fails)));
    }
    // Increments of preloaded counters: the first one of each copies it on demand.
    let incrs = {
        let (stop, fails, counters) = (stop.clone(), fails.clone(), counters.clone());
        std::thread::spawn(move || {
            let mut m = McConn::connect(mp);
            let mut done = vec![0u64; counters.len()];
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 100_000 {
                let i = n % counters.len();
                n += 1;
                let r = m.request(format!("incr {} 1\r\n", counters[i]).as_bytes());
                let want = (1000 + done[i] + 1).to_string();
                if first_line(&r) == want {
                    done[i] += 1;
                } else {
                    fail(
                        &fails,
                        format!("incr {}: {} (want {want})", counters[i], r.describe()),
                    );
                    break;
                }
            }
            done
        })
    };

    let st = mc_wait_status(
        mp,
        "ADD shard3 (plain memcached)",
        Duration::from_secs(40),
        |s| state(s) == "done",
    );
    eprintln!(
        "[reshard] plain memcached: done in {:?}, keys_moved {}, bytes_moved {}",
        t_move.elapsed(),
        st.get("keys_moved").map_or("?", String::as_str),
        st.get("bytes_moved").map_or("?", String::as_str)
    );
    stop.store(true, Ordering::Relaxed);
    let ops: u64 = threads
        .into_iter()
        .map(|t| t.join().expect("load thread"))
        .sum();
    let done = incrs.join().expect("incr thread");
    eprintln!(
        "[reshard] plain memcached load: {ops} requests, {} increments",
        done.iter().sum::<u64>()
    );
    let fails = fails.lock().unwrap().clone();
    report_fails("memcache load during the move", &fails);
    assert!(moved(&st) > 0, "no key moved: {st:?}");
    assert!(ops > 1_000, "the load hardly ran: {ops} requests");
    assert!(
        done.iter().all(|&d| d > 0),
        "a counter was never incremented: {done:?}"
    );

    // Every preloaded key is on its final owner only, with its value, flags and TTL.
    let names: Vec<String> = (0..4).map(name).collect();
    let r = ring(&names);
    let mut conns: Vec<McConn> = servers.iter().map(|s| McConn::connect(s.port)).collect();
    let mut fails = Vec::new();
    for (i, k) in pre.iter().enumerate() {
        let owner = owner(&r, &names, k);
        for (si, c) in conns.iter_mut().enumerate() {
            let item = mc_item(c, k);
            if name(si) != owner {
                if item.is_some() {
                    fails.push(format!("{k} is on {} too (owner {owner})", name(si)));
                }
                continue;
            }
            match item {
                Some((data, flags, ttl)) => {
                    if data != format!("mv{i}").into_bytes() || flags != mc_flags(i) {
                        fails.push(format!("{k} on {owner}: {data:?} flags {flags}"));
                    }
                    let want_ttl = i % MC_TTL_EVERY == 0;
                    let ttl_ok = if want_ttl {
                        ttl > PRELOAD_TTL as i64 - 60 && ttl <= PRELOAD_TTL as i64
                    } else {
                        ttl == -1
                    };
                    if !ttl_ok {
                        fails.push(format!("{k} on {owner}: TTL {ttl}"));
                    }
                }
                None => fails.push(format!("{k} missing on its owner {owner}")),
            }
        }
    }
    for (i, c) in counters.iter().enumerate() {
        let owner = owner(&r, &names, c);
        let si = names.iter().position(|n| n == owner).expect("owner");
        let want = (1000 + done[i]).to_string().into_bytes();
        match mc_item(&mut conns[si], c) {
            Some((d, _, _)) if d == want => {}
            other => fails.push(format!("counter {c} on {owner}: {other:?}, want {want:?}")),
        }
    }
    report_fails("memcached placement after the move", &fails);
}

/// A reload that only adds replicas to a Shoal pool's servers applies them (no reshard:
/// the ring did not change), and one that only moves the server lines starts nothing.
#[test]
fn reload_with_new_replicas_applies_without_a_reshard() {
    let shards: Vec<ShoalPair> = (0..2).map(|i| spawn_shoal_pair(&name(i))).collect();
    let pool = |with_replicas: bool, comment: bool| {
        let mut p = ring_keys(Pool::redis(REDIS_POOL));
        if comment {
            // Shifts every server's line in the file.
            p = p.key("# moved", "lines");
        }
        for (i, s) in shards.iter().enumerate() {
            p = p.server(&name(i), s.primary.resp_port());
            if with_replicas {
                p = p.replicas(&name(i), &[s.replica.resp_port()]);
            }
        }
        p
    };
    let proxy = ProxyProc::start(&[pool(false, false)]);
    let rp = proxy.port(REDIS_POOL);
    require_reshard(rp);
    let replicas_of = |port: u16| -> Vec<Vec<String>> {
        topology(port).into_iter().map(|r| r.replicas).collect()
    };
    assert!(
        replicas_of(rp).iter().all(Vec::is_empty),
        "{:?}",
        replicas_of(rp)
    );
    proxy.reconfigure(&[pool(true, false)]);
    let want: Vec<Vec<String>> = shards
        .iter()
        .map(|s| vec![format!("127.0.0.1:{}", s.replica.resp_port())])
        .collect();
    wait_until(
        "the replicas from the reload",
        Duration::from_secs(10),
        || replicas_of(rp) == want,
    );
    proxy.reconfigure(&[pool(true, true)]);
    // Give the reload its chance, then: still no reshard, same topology.
    wait_until("the second reload", Duration::from_secs(10), || {
        proxy.log_text().matches("configuration reloaded").count() >= 2
    });
    let st = status(rp);
    assert!(
        matches!(state(&st), "idle" | "done"),
        "a reshard started: {st:?}"
    );
    assert_eq!(
        st.get("keys_moved").map(String::as_str),
        Some("0"),
        "{st:?}"
    );
    assert_eq!(replicas_of(rp), want);
}
