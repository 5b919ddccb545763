//! The closed-loop load engine: one current-thread tokio runtime per OS
//! thread, each driving its share of the connections. Every connection sends
//! a batch of `pipeline` requests, waits for all of its replies, then sends
//! the next batch.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::proto::{Op, Protocol, ReplyKind, Requests};
use crate::timeline::{Collector, Msg, ThreadBuckets};

/// Highest latency the histograms track (anything above is clamped): 60 s.
const HIST_MAX_NS: u64 = 60_000_000_000;
/// A connection that gets no byte for this long is declared dead.
const IO_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_CHUNK: usize = 64 * 1024;
/// Pause between a broken connection and the next connect (`--reconnect`).
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);
/// How many reconnect reasons a connection keeps (the rest are only counted).
const KEEP_REASONS: usize = 10;

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
    /// `--timeline`: the CSV file and its interval (measured phase only).
    pub timeline: Option<(PathBuf, Duration)>,
    /// `--reconnect`: in the measured phase a broken connection is counted
    /// (its outstanding requests as errors) and opened again until the deadline.
    pub reconnect: bool,
    /// `--stop-file`: the measured phase ends early (like at its deadline) once
    /// this file exists; checked every STOP_POLL.
    pub stop_file: Option<PathBuf>,
}

const STOP_POLL: Duration = Duration::from_millis(100);

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
    /// Requests that never got a reply because their connection broke (`--reconnect`).
    pub lost_requests: u64,
    /// Connections that broke and were opened again (`--reconnect`).
    pub reconnects: u64,
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
            lost_requests: 0,
            reconnects: 0,
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
        self.lost_requests += other.lost_requests;
        self.reconnects += other.reconnects;
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
    /// Why connections broke before being reopened (`--reconnect`; the first
    /// few per connection, `stats.reconnects` has the count).
    pub reconnect_reasons: Vec<String>,
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
    // Set by the --stop-file watcher; every connection ends its run at the next batch.
    let stop = Arc::new(AtomicBool::new(false));
    let phase_over = Arc::new(AtomicBool::new(false));
    let watcher = match (&cfg.stop_file, phase) {
        (Some(path), Phase::Measure) => {
            let (path, stop, over) = (path.clone(), Arc::clone(&stop), Arc::clone(&phase_over));
            let bound = cfg.run_for + Duration::from_secs(60);
            Some(
                std::thread::Builder::new()
                    .name("shoal-bench-stop".into())
                    .spawn(move || {
                        let t = Instant::now();
                        while !over.load(Ordering::Relaxed) && t.elapsed() < bound {
                            if path.exists() {
                                stop.store(true, Ordering::Relaxed);
                                return;
                            }
                            std::thread::sleep(STOP_POLL);
                        }
                    })
                    .context("spawning the --stop-file watcher")?,
            )
        }
        _ => None,
    };
    let collector = match (&cfg.timeline, phase) {
        (Some((path, interval)), Phase::Measure) => {
            Some(Collector::start(path, *interval, threads)?)
        }
        _ => None,
    };
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let cfg = Arc::clone(cfg);
        let reqs = Arc::clone(reqs);
        let barrier = Arc::clone(&barrier);
        let start = Arc::clone(&start);
        let tl = collector.as_ref().map(|c| c.tx.clone());
        let stop = Arc::clone(&stop);
        let h = std::thread::Builder::new()
            .name(format!("shoal-bench-{t}"))
            .spawn(move || thread_main(&cfg, &reqs, phase, t, threads, &barrier, &start, tl, stop))
            .context("spawning a load thread")?;
        handles.push(h);
    }
    // Every thread has connected (or failed to) after the first barrier.
    barrier.wait();
    at_start();
    let t0 = Instant::now();
    if let Some(c) = &collector {
        let unix_at_t0 = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        // Fails only if the collector already stopped; finish() says why.
        let _ = c.tx.send(Msg::Start { unix_at_t0 });
    }
    start.set(t0).expect("start set once");
    barrier.wait();

    let mut stats = Stats::new();
    let mut last = t0;
    let mut connection_errors = Vec::new();
    let mut reconnect_reasons = Vec::new();
    let mut fatal = None;
    for h in handles {
        match h.join() {
            Ok(Ok(out)) => {
                stats.merge(&out.stats);
                last = last.max(out.last_reply);
                connection_errors.extend(out.connection_errors);
                reconnect_reasons.extend(out.reconnect_reasons);
            }
            Ok(Err(e)) => fatal = Some(e),
            Err(_) => fatal = Some(anyhow!("a load thread panicked")),
        }
    }
    let elapsed = last.duration_since(t0);
    phase_over.store(true, Ordering::Relaxed);
    if let Some(w) = watcher {
        let _ = w.join();
    }
    if let Some(e) = fatal {
        if let Some(c) = collector {
            let _ = c.finish(None);
        }
        return Err(e);
    }
    if let Some(c) = collector {
        c.finish(Some(elapsed)).context("--timeline")?;
    }
    Ok(PhaseResult {
        stats,
        elapsed,
        connection_errors,
        reconnect_reasons,
    })
}

struct ThreadOut {
    stats: Stats,
    last_reply: Instant,
    connection_errors: Vec<String>,
    reconnect_reasons: Vec<String>,
}

#[allow(clippy::too_many_arguments)]
fn thread_main(
    cfg: &Arc<Config>,
    reqs: &Arc<Requests>,
    phase: Phase,
    t: usize,
    threads: usize,
    barrier: &Barrier,
    start: &OnceLock<Instant>,
    timeline: Option<Sender<Msg>>,
    stop: Arc<AtomicBool>,
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
    let buckets = timeline.as_ref().map(|_| {
        let (_, interval) = cfg
            .timeline
            .as_ref()
            .expect("a timeline sender implies --timeline");
        Rc::new(RefCell::new(ThreadBuckets::new(t0, *interval)))
    });
    let reconnect = cfg.reconnect && phase == Phase::Measure;
    let local = tokio::task::LocalSet::new();
    let outcomes = local.block_on(&rt, async {
        // Every interval, hand the finished intervals to the collector.
        let flusher = match (&timeline, &buckets) {
            (Some(tx), Some(b)) => {
                let (tx, b) = (tx.clone(), Rc::clone(b));
                Some(tokio::task::spawn_local(async move {
                    loop {
                        let next = {
                            let b = b.borrow();
                            b.start_of(b.index(Instant::now()) + 1)
                        };
                        tokio::time::sleep_until((next + Duration::from_millis(2)).into()).await;
                        let mut b = b.borrow_mut();
                        let watermark = b.index(Instant::now());
                        let done = b.take_before(watermark);
                        if tx
                            .send(Msg::Flush {
                                thread: t,
                                watermark,
                                buckets: done,
                            })
                            .is_err()
                        {
                            return;
                        }
                    }
                }))
            }
            _ => None,
        };
        let mut tasks = Vec::with_capacity(streams.len());
        for (stream, &conn) in streams.into_iter().zip(&conns) {
            let gen = generator_for(cfg, phase, conn);
            let depth = match phase {
                Phase::Prefill => cfg.prefill_pipeline,
                Phase::Measure => cfg.pipeline,
            };
            let reqs = Arc::clone(reqs);
            let stats = Rc::clone(&stats);
            let buckets = buckets.clone();

            let addr = cfg.addr;
            let run = Run {
                deadline,
                stop: Arc::clone(&stop),
                stats,
                timeline: buckets,
            };
            tasks.push(tokio::task::spawn_local(async move {
                drive_conn(addr, stream, &reqs, gen, depth, &run, reconnect).await
            }));
        }
        let mut outcomes = Vec::with_capacity(tasks.len());
        for task in tasks {
            outcomes.push(task.await);
        }
        if let Some(f) = flusher {
            f.abort();
        }
        outcomes
    });
    if let (Some(tx), Some(b)) = (&timeline, &buckets) {
        let rest = b.borrow_mut().take_before(u64::MAX);
        let _ = tx.send(Msg::Flush {
            thread: t,
            watermark: u64::MAX,
            buckets: rest,
        });
    }
    let mut last_reply = t0;
    let mut connection_errors = Vec::new();
    let mut reconnect_reasons = Vec::new();
    for (outcome, conn) in outcomes.into_iter().zip(&conns) {
        match outcome {
            Ok(Ok((end, reasons))) => {
                last_reply = last_reply.max(end);
                reconnect_reasons.extend(
                    reasons
                        .into_iter()
                        .map(|r| format!("connection {conn}: {r}")),
                );
            }
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
        reconnect_reasons,
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

/// What every connection of a thread shares.
struct Run {
    deadline: Instant,
    /// --stop-file appeared.
    stop: Arc<AtomicBool>,
    stats: Rc<RefCell<Stats>>,
    timeline: Option<Rc<RefCell<ThreadBuckets>>>,
}

impl Run {
    fn over(&self) -> bool {
        Instant::now() >= self.deadline || self.stop.load(Ordering::Relaxed)
    }
}

/// One connection over the phase: `drive`, and with `reconnect` a broken
/// connection is counted (its unanswered requests as lost, in the stats and
/// the timeline) and opened again, until the deadline. Returns the arrival of
/// the last reply and the first few reasons a connection broke.
async fn drive_conn(
    addr: SocketAddr,
    mut stream: TcpStream,
    reqs: &Requests,
    mut gen: Generator,
    depth: usize,
    run: &Run,
    reconnect: bool,
) -> Result<(Instant, Vec<String>)> {
    let mut last = Instant::now();
    let mut reasons = Vec::new();
    loop {
        let mut outstanding = 0usize;
        let err = match drive(
            stream,
            reqs,
            &mut gen,
            depth,
            run,
            &mut outstanding,
            &mut last,
        )
        .await
        {
            Ok(()) => return Ok((last, reasons)),
            Err(e) if reconnect => e,
            Err(e) => return Err(e),
        };
        {
            let mut st = run.stats.borrow_mut();
            st.lost_requests += outstanding as u64;
            st.reconnects += 1;
        }
        if let Some(tl) = &run.timeline {
            tl.borrow_mut().at(Instant::now()).errors += outstanding as u64;
        }
        if reasons.len() < KEEP_REASONS {
            reasons.push(format!("{err:#} ({outstanding} requests lost)"));
        }
        stream = loop {
            if run.over() {
                return Ok((last, reasons));
            }
            tokio::time::sleep(RECONNECT_PAUSE).await;
            let attempt = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await;
            match attempt {
                Ok(Ok(s)) if s.set_nodelay(true).is_ok() => break s,
                Ok(Ok(_)) => {}
                Ok(Err(e)) if reasons.len() < KEEP_REASONS => {
                    reasons.push(format!("reconnecting to {addr}: {e}"));
                }
                Err(_) if reasons.len() < KEEP_REASONS => {
                    reasons.push(format!("reconnecting to {addr}: timed out"));
                }
                _ => {}
            }
        };
    }
}

/// One connection's closed loop. Returns when the generator is exhausted or
/// the deadline has passed (the batch in flight is always completed); `last`
/// is the arrival time of the last reply, `outstanding` the requests sent and
/// not yet answered (what an error leaves behind).
async fn drive(
    mut stream: TcpStream,
    reqs: &Requests,
    gen: &mut Generator,
    depth: usize,
    run: &Run,
    outstanding: &mut usize,
    last: &mut Instant,
) -> Result<()> {
    let (stats, timeline) = (&*run.stats, run.timeline.as_deref());
    let mut wbuf: Vec<u8> = Vec::with_capacity(depth * reqs.max_request_len());
    let mut ops: Vec<Op> = Vec::with_capacity(depth);
    let mut rbuf: Vec<u8> = vec![0; READ_CHUNK];
    let (mut rstart, mut rend) = (0usize, 0usize);
    loop {
        if run.over() {
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
        *outstanding = ops.len();
        tokio::time::timeout(IO_IDLE_TIMEOUT, stream.write_all(&wbuf))
            .await
            .map_err(|_| anyhow!("write timed out"))?
            .context("write")?;
        let mut done = 0usize;
        let mut arrived = sent_at;
        while done < ops.len() {
            // Scan every complete reply already buffered.
            let mut batch_stats = None;
            let mut batch_tl = None;
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
                if let Some(tl) = timeline {
                    let b = batch_tl.get_or_insert_with(|| tl.borrow_mut());
                    let iv = b.at(arrived);
                    iv.ops += 1;
                    iv.hist.saturating_record(ns.max(1));
                    if ops[done] == Op::Get {
                        iv.gets += 1;
                        match kind {
                            ReplyKind::Hit => iv.hits += 1,
                            ReplyKind::Miss => iv.misses += 1,
                            _ => {}
                        }
                    }
                    if kind == ReplyKind::Error {
                        iv.errors += 1;
                    }
                }
                done += 1;
                *outstanding -= 1;
            }
            drop(batch_stats);
            drop(batch_tl);
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
        *last = arrived;
    }
    if rstart != rend {
        bail!("{} unexpected bytes after the last reply", rend - rstart);
    }
    Ok(())
}
