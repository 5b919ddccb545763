//! Server commands: COMMAND CONFIG INFO DBSIZE FLUSHDB FLUSHALL TIME.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use shoal_keyspace::EvictionPolicy;

use super::{eq, flags, sanitize, Ctx, Req, Spec, COMMANDS};
use crate::config::parse_size;
use crate::glob;

fn write_command_info(ctx: &mut Ctx<'_>, s: &Spec) {
    let mut fl: Vec<&str> = Vec::new();
    if s.flags & flags::WRITE != 0 {
        fl.push("write");
    }
    if s.flags & flags::READONLY != 0 {
        fl.push("readonly");
    }
    if s.flags & flags::DENYOOM != 0 {
        fl.push("denyoom");
    }
    if s.flags & flags::ADMIN != 0 {
        fl.push("admin");
    }
    if s.flags & flags::NOAUTH != 0 {
        fl.push("no_auth");
    }
    if s.flags & flags::FAST != 0 {
        fl.push("fast");
    }
    let mut w = ctx.w();
    w.array(10);
    w.bulk(s.name.as_bytes());
    w.int(s.arity as i64);
    w.set(fl.len());
    for f in fl {
        w.simple(f.as_bytes());
    }
    w.int(s.keys.0 as i64);
    w.int(s.keys.1 as i64);
    w.int(s.keys.2 as i64);
    w.set(0);
    w.set(0);
    w.array(0);
    w.array(0);
}

pub fn command(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    if req.len() == 1 {
        ctx.w().array(COMMANDS.len());
        for s in COMMANDS.iter() {
            write_command_info(ctx, s);
        }
        return;
    }
    let sub = req.arg(1);
    // Subcommand arities, as Redis 7 checks them.
    for (name, arity) in [
        ("count", 2),
        ("list", -2),
        ("info", -2),
        ("docs", -2),
        ("help", 2),
    ] {
        if eq(sub, name) {
            let n = req.len() as i32;
            if (arity > 0 && n != arity) || (arity < 0 && n < -arity) {
                return super::arity_error(ctx, &format!("command|{name}"));
            }
        }
    }
    if eq(sub, "count") {
        ctx.w().int(COMMANDS.len() as i64);
    } else if eq(sub, "list") {
        ctx.w().array(COMMANDS.len());
        for s in COMMANDS.iter() {
            ctx.w().bulk(s.name.as_bytes());
        }
    } else if eq(sub, "info") {
        if req.len() == 2 {
            ctx.w().array(COMMANDS.len());
            for s in COMMANDS.iter() {
                write_command_info(ctx, s);
            }
            return;
        }
        ctx.w().array(req.len() - 2);
        for name in req.rest(2) {
            match super::lookup(name) {
                Some(s) => write_command_info(ctx, s),
                None => ctx.w().null_array(),
            }
        }
    } else if eq(sub, "docs") {
        let specs: Vec<&Spec> = if req.len() == 2 {
            COMMANDS.iter().collect()
        } else {
            req.rest(2).filter_map(super::lookup).collect()
        };
        ctx.w().map(specs.len());
        for s in specs {
            let mut w = ctx.w();
            w.bulk(s.name.as_bytes());
            w.map(2);
            w.bulk(b"summary");
            w.bulk(format!("The {} command.", s.name.to_ascii_uppercase()).as_bytes());
            w.bulk(b"since");
            w.bulk(b"1.0.0");
        }
    } else if eq(sub, "help") {
        let lines = [
            "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "(no subcommand)",
            "    Return details about all commands.",
            "COUNT",
            "    Return the total number of commands in this server.",
            "LIST",
            "    Return a list of all commands in this server.",
            "INFO [<command-name> ...]",
            "    Return details about multiple commands.",
            "DOCS [<command-name> ...]",
            "    Return documentation details about multiple commands.",
            "HELP",
            "    Print this help.",
        ];
        ctx.w().array(lines.len());
        for l in lines {
            ctx.w().simple(l.as_bytes());
        }
    } else {
        let msg = sanitize(format!(
            "ERR unknown subcommand '{}'. Try COMMAND HELP.",
            String::from_utf8_lossy(sub)
                .chars()
                .take(128)
                .collect::<String>()
        ));
        ctx.err(&msg);
    }
}

/// The CONFIG parameters Shoal understands, with their current values.
fn config_params(ctx: &Ctx<'_>) -> Vec<(&'static str, String)> {
    let sh = ctx.shared;
    let s = &sh.settings;
    let port = sh.resp_addrs.read().first().map_or(0, |a| a.port());
    let mc_port = sh.memcache_addrs.read().first().map_or(0, |a| a.port());
    vec![
        ("bind", sh.config.bind.clone()),
        ("port", port.to_string()),
        ("memcache-port", mc_port.to_string()),
        ("maxmemory", ctx.ks.maxmemory().to_string()),
        ("maxmemory-policy", ctx.ks.policy().as_str().to_string()),
        ("maxmemory-samples", "5".into()),
        (
            "maxclients",
            s.maxclients.load(Ordering::Relaxed).to_string(),
        ),
        ("timeout", s.timeout.load(Ordering::Relaxed).to_string()),
        (
            "requirepass",
            s.requirepass.read().clone().unwrap_or_default(),
        ),
        (
            "proto-max-bulk-len",
            s.proto_max_bulk_len.load(Ordering::Relaxed).to_string(),
        ),
        (
            "client-query-buffer-limit",
            s.query_buffer_limit.load(Ordering::Relaxed).to_string(),
        ),
        (
            "max-item-size",
            s.max_item_size.load(Ordering::Relaxed).to_string(),
        ),
        ("lfu-log-factor", ctx.ks.lfu_log_factor().to_string()),
        ("lfu-decay-time", ctx.ks.lfu_decay_time().to_string()),
        ("threads", sh.threads.to_string()),
        ("databases", "1".into()),
        ("save", String::new()),
        ("appendonly", "no".into()),
        ("hz", "10".into()),
        (
            "repl-backlog-size",
            sh.repl.backlog_size.load(Ordering::Relaxed).to_string(),
        ),
        (
            "replica-serve-stale-data",
            yes_no(sh.repl.serve_stale.load(Ordering::Relaxed)),
        ),
        (
            "slave-serve-stale-data",
            yes_no(sh.repl.serve_stale.load(Ordering::Relaxed)),
        ),
        ("replica-read-only", "yes".into()),
        ("slave-read-only", "yes".into()),
        (
            "min-replicas-to-write",
            sh.repl.min_replicas.load(Ordering::Relaxed).to_string(),
        ),
        (
            "min-slaves-to-write",
            sh.repl.min_replicas.load(Ordering::Relaxed).to_string(),
        ),
        (
            "min-replicas-max-lag",
            sh.repl.min_lag.load(Ordering::Relaxed).to_string(),
        ),
        (
            "min-slaves-max-lag",
            sh.repl.min_lag.load(Ordering::Relaxed).to_string(),
        ),
        (
            "repl-timeout",
            sh.repl.timeout.load(Ordering::Relaxed).to_string(),
        ),
        (
            "masterauth",
            sh.repl.masterauth.read().clone().unwrap_or_default(),
        ),
        ("replicaof", {
            let m = sh.repl.master.lock();
            m.as_ref()
                .map(|m| format!("{} {}", m.host, m.port))
                .unwrap_or_default()
        }),
        ("dir", sh.config.dir.clone()),
    ]
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

fn config_set_one(ctx: &mut Ctx<'_>, name: &str, v: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(v).to_string();
    let fail = |why: &str| {
        format!("ERR CONFIG SET failed (possibly related to argument '{name}') - {why}")
    };
    let num = || {
        text.parse::<u64>()
            .map_err(|_| fail("argument couldn't be parsed into an integer"))
    };
    let mem = || parse_size(&text).map_err(|_| fail("argument must be a memory value"));
    let s = &ctx.shared.settings;
    match name {
        "maxmemory" => ctx.ks.set_maxmemory(mem()?),
        "maxmemory-policy" => {
            let p: EvictionPolicy = text.parse().map_err(|_| fail("argument(s) must be one of the following: volatile-lru, volatile-lfu, volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, noeviction"))?;
            ctx.ks.set_policy(p);
        }
        "maxmemory-samples" | "hz" => {
            num()?;
        }
        "maxclients" => s.maxclients.store(num()?.max(1), Ordering::Relaxed),
        "timeout" => s.timeout.store(num()?, Ordering::Relaxed),
        "requirepass" => *s.requirepass.write() = (!text.is_empty()).then_some(text.clone()),
        "proto-max-bulk-len" => s
            .proto_max_bulk_len
            .store(mem()?.max(1024 * 1024), Ordering::Relaxed),
        "client-query-buffer-limit" => s
            .query_buffer_limit
            .store(mem()?.max(1024 * 1024), Ordering::Relaxed),
        "max-item-size" => s.max_item_size.store(mem()?.max(1024), Ordering::Relaxed),
        "lfu-log-factor" => ctx.ks.set_lfu(num()? as u32, ctx.ks.lfu_decay_time()),
        "lfu-decay-time" => ctx.ks.set_lfu(ctx.ks.lfu_log_factor(), num()? as u32),
        "repl-backlog-size" => ctx
            .shared
            .repl
            .backlog_size
            .store(mem()?.max(16 * 1024), Ordering::Relaxed),
        "replica-serve-stale-data" | "slave-serve-stale-data" => {
            let b = crate::config::parse_yes_no(&text)
                .map_err(|_| fail("argument must be 'yes' or 'no'"))?;
            ctx.shared.repl.serve_stale.store(b, Ordering::Relaxed);
        }
        "replica-read-only" | "slave-read-only" => {
            if !text.eq_ignore_ascii_case("yes") {
                return Err(fail("Shoal replicas are always read-only"));
            }
        }
        "min-replicas-to-write" | "min-slaves-to-write" => ctx
            .shared
            .repl
            .min_replicas
            .store(num()?, Ordering::Relaxed),
        "min-replicas-max-lag" | "min-slaves-max-lag" => {
            ctx.shared.repl.min_lag.store(num()?, Ordering::Relaxed)
        }
        "repl-timeout" => ctx
            .shared
            .repl
            .timeout
            .store(num()?.max(1), Ordering::Relaxed),
        "masterauth" => {
            *ctx.shared.repl.masterauth.write() = (!text.is_empty()).then_some(text.clone())
        }
        "save" | "appendonly" => {
            if !(text.is_empty() || text.eq_ignore_ascii_case("no")) {
                return Err(fail("Shoal is an in-memory cache without persistence"));
            }
        }
        _ => return Err(fail("can't set immutable config")),
    }
    Ok(())
}

pub fn config(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let sub = req.arg(1);
    if eq(sub, "get") {
        if req.len() < 3 {
            return super::arity_error(ctx, "config|get");
        }
        let params = config_params(ctx);
        let matched: Vec<&(&str, String)> = params
            .iter()
            .filter(|(n, _)| req.rest(2).any(|p| glob::matches(p, n.as_bytes(), true)))
            .collect();
        ctx.w().map(matched.len());
        for (n, v) in matched {
            ctx.w().bulk(n.as_bytes());
            ctx.w().bulk(v.as_bytes());
        }
    } else if eq(sub, "set") {
        if req.len() < 4 || req.len() % 2 != 0 {
            return super::arity_error(ctx, "config|set");
        }
        let known: Vec<&str> = config_params(ctx).iter().map(|(n, _)| *n).collect();
        for i in (2..req.len()).step_by(2) {
            let name = String::from_utf8_lossy(req.arg(i)).to_ascii_lowercase();
            let Some(name) = known.iter().find(|k| **k == name) else {
                let msg = sanitize(format!(
                    "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
                ));
                return ctx.err(&msg);
            };
            if let Err(msg) = config_set_one(ctx, name, req.arg(i + 1)) {
                return ctx.err(&sanitize(msg));
            }
        }
        ctx.w().ok();
    } else if eq(sub, "resetstat") {
        if req.len() != 2 {
            return super::arity_error(ctx, "config|resetstat");
        }
        ctx.ks.reset_stats();
        ctx.shared.counters_each(|c| {
            for a in [
                &c.total_commands,
                &c.net_input_bytes,
                &c.net_output_bytes,
                &c.total_error_replies,
                &c.rejected_connections,
                &c.total_connections,
            ] {
                a.store(0, Ordering::Relaxed);
            }
        });
        ctx.w().ok();
    } else if eq(sub, "rewrite") {
        ctx.err("ERR The server is running without a config file");
    } else {
        let msg = sanitize(format!(
            "ERR unknown subcommand '{}'. Try CONFIG HELP.",
            String::from_utf8_lossy(sub)
                .chars()
                .take(128)
                .collect::<String>()
        ));
        ctx.err(&msg);
    }
}

fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b < 1024.0 {
        format!("{bytes}B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.2}K", b / 1024.0)
    } else if b < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2}M", b / 1024.0 / 1024.0)
    } else {
        format!("{:.2}G", b / 1024.0 / 1024.0 / 1024.0)
    }
}

/// Resident set size of this process in bytes (0 if unknown).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

fn cpu_times() -> (f64, f64) {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a full rusage struct into valid memory.
    #[expect(unsafe_code, reason = "getrusage has no safe wrapper in std")]
    let r = unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) };
    if r != 0 {
        return (0.0, 0.0);
    }
    // SAFETY: initialised by the successful call above.
    #[expect(unsafe_code, reason = "reading the struct getrusage filled")]
    let ru = unsafe { ru.assume_init() };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (t(ru.ru_stime), t(ru.ru_utime))
}

/// Builds the INFO text for the given sections (lowercase; empty = default).
pub fn info_text(ctx: &Ctx<'_>, sections: &[String]) -> String {
    let all = sections.iter().any(|s| s == "all" || s == "everything");
    let want = |name: &str| {
        sections.is_empty() || all || sections.iter().any(|s| s == name || s == "default")
    };
    let sh = ctx.shared;
    let ks = ctx.ks;
    let st = ks.stats();
    let c = &sh.counters_sum();
    let mut out = String::new();
    if want("server") {
        let port = sh.resp_addrs.read().first().map_or(0, |a| a.port());
        let mc_port = sh.memcache_addrs.read().first().map_or(0, |a| a.port());
        let _ = write!(
            out,
            "# Server\r\nredis_version:{}\r\nshoal_version:{}\r\nredis_git_sha1:00000000\r\nredis_git_dirty:0\r\nredis_mode:standalone\r\nos:{} {}\r\narch_bits:64\r\nmultiplexing_api:epoll\r\nprocess_id:{}\r\nrun_id:{}\r\ntcp_port:{}\r\nmemcache_port:{}\r\nserver_time_usec:{}\r\nuptime_in_seconds:{}\r\nuptime_in_days:{}\r\nhz:10\r\nexecutable:{}\r\nconfig_file:\r\nio_threads_active:0\r\nthreads:{}\r\n",
            super::conn::REDIS_COMPAT_VERSION,
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH,
            std::process::id(),
            sh.run_id,
            port,
            mc_port,
            ctx.now * 1000,
            sh.uptime(),
            sh.uptime() / 86400,
            std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default(),
            sh.threads,
        );
    }
    if want("clients") {
        let _ = write!(
            out,
            "{}# Clients\r\nconnected_clients:{}\r\ncluster_connections:0\r\nmaxclients:{}\r\nblocked_clients:{}\r\ntracking_clients:0\r\nclients_in_timeout_table:0\r\n",
            if out.is_empty() { "" } else { "\r\n" },
            sh.connected.load(Ordering::Relaxed),
            sh.settings.maxclients.load(Ordering::Relaxed),
            sh.blocked.load(Ordering::Relaxed),
        );
    }
    if want("memory") {
        let used = ks.used_memory();
        let rss = rss_bytes();
        let max = ks.maxmemory();
        let _ = write!(
            out,
            "{}# Memory\r\nused_memory:{used}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\nused_memory_rss_human:{}\r\nused_memory_dataset:{used}\r\nmaxmemory:{max}\r\nmaxmemory_human:{}\r\nmaxmemory_policy:{}\r\nmem_fragmentation_ratio:{:.2}\r\nmem_allocator:libc\r\n",
            if out.is_empty() { "" } else { "\r\n" },
            human(used),
            human(rss),
            human(max),
            ks.policy().as_str(),
            if used == 0 { 0.0 } else { rss as f64 / used as f64 },
        );
    }
    if want("stats") {
        let _ = write!(
            out,
            "{}# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\ninstantaneous_ops_per_sec:0\r\ntotal_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\nrejected_connections:{}\r\nsync_full:{}\r\nsync_partial_ok:{}\r\nsync_partial_err:{}\r\nexpired_keys:{}\r\nevicted_keys:{}\r\nkeyspace_hits:{}\r\nkeyspace_misses:{}\r\ntotal_error_replies:{}\r\n",
            if out.is_empty() { "" } else { "\r\n" },
            c.total_connections.load(Ordering::Relaxed),
            c.total_commands.load(Ordering::Relaxed),
            c.net_input_bytes.load(Ordering::Relaxed),
            c.net_output_bytes.load(Ordering::Relaxed),
            c.rejected_connections.load(Ordering::Relaxed),
            sh.repl.sync_full.load(Ordering::Relaxed),
            sh.repl.sync_partial_ok.load(Ordering::Relaxed),
            sh.repl.sync_partial_err.load(Ordering::Relaxed),
            st.expired,
            st.evicted,
            st.hits,
            st.misses,
            c.total_error_replies.load(Ordering::Relaxed),
        );
    }
    if want("replication") {
        let _ = write!(
            out,
            "{}# Replication\r\n{}",
            if out.is_empty() { "" } else { "\r\n" },
            crate::repl::info_section(sh)
        );
    }
    if want("cpu") {
        let (sys, user) = cpu_times();
        let _ = write!(
            out,
            "{}# CPU\r\nused_cpu_sys:{sys:.6}\r\nused_cpu_user:{user:.6}\r\n",
            if out.is_empty() { "" } else { "\r\n" }
        );
    }
    if want("keyspace") {
        let _ = write!(
            out,
            "{}# Keyspace\r\n",
            if out.is_empty() { "" } else { "\r\n" }
        );
        if st.keys > 0 {
            let _ = write!(
                out,
                "db0:keys={},expires={},avg_ttl=0\r\n",
                st.keys, st.volatile
            );
        }
    }
    out
}

pub fn info(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let sections: Vec<String> = req
        .rest(1)
        .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
        .collect();
    let text = info_text(ctx, &sections);
    ctx.w().verbatim(b"txt", text.as_bytes());
}

pub fn dbsize(ctx: &mut Ctx<'_>, _req: &Req<'_>) {
    let n = ctx.ks.len();
    ctx.w().int(n as i64);
}

fn flush(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    let lazy = match req.len() {
        1 => false,
        2 if eq(req.arg(1), "async") => true,
        2 if eq(req.arg(1), "sync") => false,
        _ => return ctx.syntax(),
    };
    ctx.ks.flush(lazy);
    ctx.w().ok();
}

pub fn flushdb(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    flush(ctx, req);
}

pub fn flushall(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    flush(ctx, req);
}

pub fn time(ctx: &mut Ctx<'_>, _req: &Req<'_>) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut w = ctx.w();
    w.array(2);
    w.bulk_int(d.as_secs() as i64);
    w.bulk_int(d.subsec_micros() as i64);
}
