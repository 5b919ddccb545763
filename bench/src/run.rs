//! The closed-loop load engine: one current-thread tokio runtime per OS
//! thread, each driving its share of the connections. Every connection sends
//! a batch of `pipeline` requests, waits for all of its replies, then sends
//! the next batch.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::proto::{Op, Protocol, ReplyKind, Requests};

/// Highest latency the histograms track (anything above is clamped): 60 s.
const HIST_MAX_NS: u64 = 60_000_000_000;
/// A connection that gets no byte for this long is declared dead.
const IO_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_CHUNK: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum KeyPattern {
    /// Uniformly random keys in the range.
    #[value(name = "R", alias = "r")]
    R,
    /// Each connection walks the range sequentially from its own offset.
    #[value(name = "S", alias = "s")]
    S,
}

/// Everything a phase needs; built from the command line.
#[derive(Debug)]
pub struct Config {
    pub addr: SocketAddr,
    pub protocol: Protocol,
    pub connections: usize,
    pub threads: usize,
    pub pipeline: usize,
    pub prefill_pipeline: usize,
    pub ratio_set: u64,
    pub ratio_get: u64,
    pub data_size: usize,
    pub key_prefix: String,
    pub key_min: u64,
    pub key_max: u64,
    pub key_pattern: KeyPattern,
    /// Per-connection request budget of the measured phase.
    pub requests: Option<u64>,
    /// Wall-clock bound of the measured phase.
    pub run_for: Duration,
    /// Wall-clock bound of the prefill phase.
    pub prefill_for: Duration,
    pub seed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// SET every key of the range once, split across the connections.
    Prefill,
    /// The measured, closed-loop mix.
    Measure,
}

/// Counters and latency histograms (nanoseconds) of a phase.
pub struct Stats {
    pub set_hist: Histogram<u64>,
    pub get_hist: Histogram<u64>,
    pub sets: u64,
    pub gets: u64,
    pub hits: u64,
    pub misses: u64,
    pub error_replies: u64,
}

impl Stats {
    fn new() -> Self {
        let h = || Histogram::<u64>::new_with_bounds(1, HIST_MAX_NS, 3).expect("histogram bounds");
        Stats {
            set_hist: h(),
            get_hist: h(),
            sets: 0,
            gets: 0,
            hits: 0,
            misses: 0,
            error_replies: 0,
        }
    }

    fn merge(&mut self, other: &Stats) {
        self.set_hist
            .add(&other.set_hist)
            .expect("same histogram bounds");
        self.get_hist
            .add(&other.get_hist)
            .expect("same histogram bounds");
        self.sets += other.sets;
        self.gets += other.gets;
        self.hits += other.hits;
        self.misses += other.misses;
        self.error_replies += other.error_replies;
    }

    pub fn ops(&self) -> u64 {
        self.sets + self.gets
    }

    /// Both histograms together.
    pub fn total_hist(&self) -> Histogram<u64> {
        let mut h = self.set_hist.clone();
        h.add(&self.get_hist).expect("same histogram bounds");
        h
    }
}

/// The outcome of one phase over all threads and connections.
pub struct PhaseResult {
    pub stats: Stats,
    /// From the common start to the last reply of the last connection.
    pub elapsed: Duration,
    /// Connections that died (I/O error, framing error, timeout), with why.
    pub connection_errors: Vec<String>,
}

/// Where a connection's keys and operations come from.
struct Generator {
    ops_left: u64,
    ratio_set: u64,
    ratio_cycle: u64,
    ratio_pos: u64,
    keys: KeySource,
}

enum KeySource {
    Random {
        rng: SmallRng,
        min: u64,
        max: u64,
    },
    Sequential {
        next: u64,
        min: u64,
        max: u64,
    },
    /// The half-open slice `[next, end)`, once (prefill).
    Slice {
        next: u64,
        end: u64,
    },
}

impl Generator {
    #[inline]
    fn next(&mut self) -> Option<(Op, u64)> {
        if self.ops_left == 0 {
            return None;
        }
        let key = match &mut self.keys {
            KeySource::Random { rng, min, max } => rng.gen_range(*min..=*max),
            KeySource::Sequential { next, min, max } => {
                let k = *next;
                *next = if k >= *max { *min } else { k + 1 };
                k
            }
            KeySource::Slice { next, end } => {
                if *next >= *end {
                    return None;
                }
                let k = *next;
                *next += 1;
                k
            }
        };
        self.ops_left -= 1;
        let op = if self.ratio_pos < self.ratio_set {
            Op::Set
        } else {
            Op::Get
        };
        self.ratio_pos += 1;
        if self.ratio_pos == self.ratio_cycle {
            self.ratio_pos = 0;
        }
        Some((op, key))
    }
}

/// The share `[lo, hi)` of the key range that connection `i` of `n` owns.
fn slice_of(cfg: &Config, i: usize, n: usize) -> (u64, u64) {
    let len = cfg.key_max - cfg.key_min + 1;
    let lo = cfg.key_min + (u128::from(len) * i as u128 / n as u128) as u64;
    let hi = cfg.key_min + (u128::from(len) * (i as u128 + 1) / n as u128) as u64;
    (lo, hi)
}

fn generator_for(cfg: &Config, phase: Phase, conn: usize) -> Generator {
    match phase {
        Phase::Prefill => {
            let (lo, hi) = slice_of(cfg, conn, cfg.connections);
            Generator {
                ops_left: u64::MAX,
                ratio_set: 1,
                ratio_cycle: 1,
                ratio_pos: 0,
                keys: KeySource::Slice { next: lo, end: hi },
            }
        }
        Phase::Measure => {
            let keys = match cfg.key_pattern {
                KeyPattern::R => KeySource::Random {
                    rng: SmallRng::seed_from_u64(
                        cfg.seed ^ (conn as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    ),
                    min: cfg.key_min,
                    max: cfg.key_max,
                },
                KeyPattern::S => KeySource::Sequential {
                    next: slice_of(cfg, conn, cfg.connections).0,
                    min: cfg.key_min,
                    max: cfg.key_max,
                },
            };
            Generator {
                ops_left: cfg.requests.unwrap_or(u64::MAX),
                ratio_set: cfg.ratio_set,
                ratio_cycle: cfg.ratio_set + cfg.ratio_get,
                // Spread where each connection is in the SET:GET cycle.
                ratio_pos: conn as u64 % (cfg.ratio_set + cfg.ratio_get),
                keys,
            }
        }
    }
}

/// Runs one phase. `at_start` is called once every connection is open, just
/// before the first request is sent (the caller snapshots server CPU there).
pub fn run_phase(
    cfg: &Arc<Config>,
    reqs: &Arc<Requests>,
    phase: Phase,
    at_start: impl FnOnce(),
) -> Result<PhaseResult> {
    let threads = cfg.threads.min(cfg.connections).max(1);
    let barrier = Arc::new(Barrier::new(threads + 1));
    let start: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let cfg = Arc::clone(cfg);
        let reqs = Arc::clone(reqs);
        let barrier = Arc::clone(&barrier);
        let start = Arc::clone(&start);
        let h = std::thread::Builder::new()
            .name(format!("shoal-bench-{t}"))
            .spawn(move || thread_main(&cfg, &reqs, phase, t, threads, &barrier, &start))
            .context("spawning a load thread")?;
        handles.push(h);
    }
    // Every thread has connected (or failed to) after the first barrier.
    barrier.wait();
    at_start();
    let t0 = Instant::now();
    start.set(t0).expect("start set once");
    barrier.wait();

    let mut stats = Stats::new();
    let mut last = t0;
    let mut connection_errors = Vec::new();
    let mut fatal = None;
    for h in handles {
        match h.join() {
            Ok(Ok(out)) => {
                stats.merge(&out.stats);
                last = last.max(out.last_reply);
                connection_errors.extend(out.connection_errors);
            }
            Ok(Err(e)) => fatal = Some(e),
            Err(_) => fatal = Some(anyhow!("a load thread panicked")),
        }
    }
    if let Some(e) = fatal {
        return Err(e);
    }
    Ok(PhaseResult {
        stats,
        elapsed: last.duration_since(t0),
        connection_errors,
    })
}

struct ThreadOut {
    stats: Stats,
    last_reply: Instant,
    connection_errors: Vec<String>,
}

fn thread_main(
    cfg: &Arc<Config>,
    reqs: &Arc<Requests>,
    phase: Phase,
    t: usize,
    threads: usize,
    barrier: &Barrier,
    start: &OnceLock<Instant>,
) -> Result<ThreadOut> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let conns: Vec<usize> = (t..cfg.connections).step_by(threads).collect();
    let streams = match &rt {
        Ok(rt) => rt.block_on(connect_all(cfg.addr, conns.len())),
        Err(e) => Err(anyhow!("building a tokio runtime: {e}")),
    };
    // Always meet the barriers, even after a failure, so that no thread hangs.
    barrier.wait();
    barrier.wait();
    let streams = streams?;
    let rt = rt?;
    let t0 = *start.get().expect("start is set before the second barrier");
    let bound = match phase {
        Phase::Prefill => cfg.prefill_for,
        Phase::Measure => cfg.run_for,
    };
    let deadline = t0 + bound;
    let stats = Rc::new(RefCell::new(Stats::new()));
    let local = tokio::task::LocalSet::new();
    let outcomes = local.block_on(&rt, async {
        let mut tasks = Vec::with_capacity(streams.len());
        for (stream, &conn) in streams.into_iter().zip(&conns) {
            let gen = generator_for(cfg, phase, conn);
            let depth = match phase {
                Phase::Prefill => cfg.prefill_pipeline,
                Phase::Measure => cfg.pipeline,
            };
            let reqs = Arc::clone(reqs);
            let stats = Rc::clone(&stats);
            tasks.push(tokio::task::spawn_local(async move {
                drive(stream, &reqs, gen, depth, deadline, &stats).await
            }));
        }
        let mut outcomes = Vec::with_capacity(tasks.len());
        for task in tasks {
            outcomes.push(task.await);
        }
        outcomes
    });
    let mut last_reply = t0;
    let mut connection_errors = Vec::new();
    for (outcome, conn) in outcomes.into_iter().zip(&conns) {
        match outcome {
            Ok(Ok(end)) => last_reply = last_reply.max(end),
            Ok(Err(e)) => connection_errors.push(format!("connection {conn}: {e:#}")),
            Err(e) => connection_errors.push(format!("connection {conn}: task failed: {e}")),
        }
    }
    let stats = Rc::try_unwrap(stats)
        .ok()
        .expect("all tasks finished")
        .into_inner();
    Ok(ThreadOut {
        stats,
        last_reply,
        connection_errors,
    })
}

async fn connect_all(addr: SocketAddr, n: usize) -> Result<Vec<TcpStream>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("connecting to {addr}: timed out"))?
            .with_context(|| format!("connecting to {addr}"))?;
        s.set_nodelay(true).context("TCP_NODELAY")?;
        out.push(s);
    }
    Ok(out)
}

/// One connection's closed loop. Returns when the generator is exhausted or
/// the deadline has passed (the batch in flight is always completed), with
/// the arrival time of its last reply.
async fn drive(
    mut stream: TcpStream,
    reqs: &Requests,
    mut gen: Generator,
    depth: usize,
    deadline: Instant,
    stats: &RefCell<Stats>,
) -> Result<Instant> {
    let mut wbuf: Vec<u8> = Vec::with_capacity(depth * reqs.max_request_len());
    let mut ops: Vec<Op> = Vec::with_capacity(depth);
    let mut rbuf: Vec<u8> = vec![0; READ_CHUNK];
    let (mut rstart, mut rend) = (0usize, 0usize);
    let mut last = Instant::now();
    loop {
        if Instant::now() >= deadline {
            break;
        }
        wbuf.clear();
        ops.clear();
        while ops.len() < depth {
            match gen.next() {
                Some((op, key)) => {
                    reqs.push(&mut wbuf, op, key);
                    ops.push(op);
                }
                None => break,
            }
        }
        if ops.is_empty() {
            break;
        }
        let sent_at = Instant::now();
        tokio::time::timeout(IO_IDLE_TIMEOUT, stream.write_all(&wbuf))
            .await
            .map_err(|_| anyhow!("write timed out"))?
            .context("write")?;
        let mut done = 0usize;
        let mut arrived = sent_at;
        while done < ops.len() {
            // Scan every complete reply already buffered.
            let mut batch_stats = None;
            while done < ops.len() {
                let Some((len, kind)) = reqs.scan(&rbuf[rstart..rend], ops[done])? else {
                    break;
                };
                rstart += len;
                let st = batch_stats.get_or_insert_with(|| stats.borrow_mut());
                let ns = arrived
                    .duration_since(sent_at)
                    .as_nanos()
                    .min(u128::from(HIST_MAX_NS)) as u64;
                match ops[done] {
                    Op::Set => {
                        st.sets += 1;
                        st.set_hist.saturating_record(ns.max(1));
                    }
                    Op::Get => {
                        st.gets += 1;
                        st.get_hist.saturating_record(ns.max(1));
                        match kind {
                            ReplyKind::Hit => st.hits += 1,
                            ReplyKind::Miss => st.misses += 1,
                            _ => {}
                        }
                    }
                }
                if kind == ReplyKind::Error {
                    st.error_replies += 1;
                }
                done += 1;
            }
            drop(batch_stats);
            if done == ops.len() {
                break;
            }
            // Need more bytes: make room, then read.
            if rstart == rend {
                rstart = 0;
                rend = 0;
            } else if rend == rbuf.len() {
                if rstart > 0 {
                    rbuf.copy_within(rstart..rend, 0);
                    rend -= rstart;
                    rstart = 0;
                } else {
                    // One reply larger than the buffer: grow it.
                    let new_len = rbuf.len() * 2;
                    rbuf.resize(new_len, 0);
                }
            }
            let n = tokio::time::timeout(IO_IDLE_TIMEOUT, stream.read(&mut rbuf[rend..]))
                .await
                .map_err(|_| anyhow!("no reply for {IO_IDLE_TIMEOUT:?}"))?
                .context("read")?;
            if n == 0 {
                bail!(
                    "server closed the connection with {} replies outstanding",
                    ops.len() - done
                );
            }
            rend += n;
            arrived = Instant::now();
        }
        last = arrived;
    }
    if rstart != rend {
        bail!("{} unexpected bytes after the last reply", rend - rstart);
    }
    Ok(last)
}
