//! `--timeline FILE`: the measured phase as a time series, one CSV row per
//! interval (`--timeline-interval-ms`).
//!
//! Every reply is counted in the interval in which it *arrived* (its latency is
//! the time from its batch's send to that arrival), so a request stalled for
//! two seconds shows up as a gap in `ops` and as a large `max_us` in the interval
//! where it finally completes. Each load thread keeps its open intervals and
//! hands the finished ones (older than the current interval) to a collector
//! thread every interval; the collector merges the threads and writes a row as
//! soon as every thread has passed it, so the file grows during the run.
//!
//! Columns: `t_seconds` (end of the interval, seconds since the first request;
//! the last row ends at the last reply), `ops` (replies in the interval, error
//! replies included), `ops_per_sec`, `p50_us`, `p99_us`, `max_us` (latency of
//! those replies; empty when `ops` is 0), `gets`, `hits` (GETs that returned a
//! value), `misses`, `errors` (error replies plus requests lost with a broken
//! connection), `unix_s` (wall clock at the end of the interval, to line the
//! file up with other logs).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use hdrhistogram::Histogram;

/// Same bounds as the run's histograms: 1 ns .. 60 s, 3 significant digits.
const HIST_MAX_NS: u64 = 60_000_000_000;

pub const HEADER: &str =
    "t_seconds,ops,ops_per_sec,p50_us,p99_us,max_us,gets,hits,misses,errors,unix_s";

/// Counters and latencies of one interval (of one thread, or merged).
pub struct IntervalStats {
    pub hist: Histogram<u64>,
    pub ops: u64,
    pub gets: u64,
    pub hits: u64,
    pub misses: u64,
    pub errors: u64,
}

impl IntervalStats {
    pub fn new() -> Self {
        IntervalStats {
            hist: Histogram::<u64>::new_with_bounds(1, HIST_MAX_NS, 3).expect("histogram bounds"),
            ops: 0,
            gets: 0,
            hits: 0,
            misses: 0,
            errors: 0,
        }
    }

    fn merge(&mut self, o: &IntervalStats) {
        self.hist.add(&o.hist).expect("same histogram bounds");
        self.ops += o.ops;
        self.gets += o.gets;
        self.hits += o.hits;
        self.misses += o.misses;
        self.errors += o.errors;
    }
}

/// One load thread's intervals that may still receive replies.
pub struct ThreadBuckets {
    t0: Instant,
    interval: Duration,
    open: BTreeMap<u64, IntervalStats>,
}

impl ThreadBuckets {
    pub fn new(t0: Instant, interval: Duration) -> Self {
        ThreadBuckets {
            t0,
            interval,
            open: BTreeMap::new(),
        }
    }

    pub fn index(&self, at: Instant) -> u64 {
        (at.saturating_duration_since(self.t0).as_nanos() / self.interval.as_nanos()) as u64
    }

    /// The interval that `at` falls in.
    pub fn at(&mut self, at: Instant) -> &mut IntervalStats {
        let i = self.index(at);
        self.open.entry(i).or_insert_with(IntervalStats::new)
    }

    /// When interval `idx` starts.
    pub fn start_of(&self, idx: u64) -> Instant {
        self.t0 + self.interval * u32::try_from(idx).unwrap_or(u32::MAX)
    }

    /// Removes and returns every interval before `idx`.
    pub fn take_before(&mut self, idx: u64) -> Vec<(u64, IntervalStats)> {
        let rest = self.open.split_off(&idx);
        std::mem::replace(&mut self.open, rest)
            .into_iter()
            .collect()
    }
}

pub enum Msg {
    /// Sent once, just before the first request: the wall clock at t0.
    Start { unix_at_t0: f64 },
    /// Thread `thread` will not add to intervals before `watermark` any more
    /// (`u64::MAX`: the thread has finished); `buckets` are its finished ones.
    Flush {
        thread: usize,
        watermark: u64,
        buckets: Vec<(u64, IntervalStats)>,
    },
    /// Every thread has finished; the phase lasted `elapsed`.
    End { elapsed: Duration },
}

/// The collector thread and the sending side of its channel.
pub struct Collector {
    pub tx: Sender<Msg>,
    handle: JoinHandle<Result<()>>,
}

impl Collector {
    pub fn start(path: &Path, interval: Duration, threads: usize) -> Result<Collector> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let (tx, rx) = channel();
        let path = path.to_path_buf();
        let handle = std::thread::Builder::new()
            .name("shoal-bench-timeline".into())
            .spawn(move || collect(rx, BufWriter::new(file), &path, interval, threads))
            .context("spawning the timeline thread")?;
        Ok(Collector { tx, handle })
    }

    /// Sends `End` (when the phase completed) and waits for the file to be written.
    pub fn finish(self, elapsed: Option<Duration>) -> Result<()> {
        if let Some(elapsed) = elapsed {
            // The collector only exits on End or a closed channel: a send error
            // means it already failed, and join reports why.
            let _ = self.tx.send(Msg::End { elapsed });
        }
        drop(self.tx);
        self.handle
            .join()
            .map_err(|_| anyhow!("the timeline thread panicked"))?
    }
}

struct Writer<W: Write> {
    out: W,
    interval: Duration,
    unix_at_t0: f64,
    next_row: u64,
}

impl<W: Write> Writer<W> {
    fn row(&mut self, s: &IntervalStats, span: Duration) -> Result<()> {
        let end = self.interval.as_secs_f64() * self.next_row as f64 + span.as_secs_f64();
        let us = |ns: u64| ns as f64 / 1000.0;
        let lat = if s.ops > 0 {
            format!(
                "{:.1},{:.1},{:.1}",
                us(s.hist.value_at_quantile(0.50)),
                us(s.hist.value_at_quantile(0.99)),
                us(s.hist.max())
            )
        } else {
            ",,".to_string()
        };
        writeln!(
            self.out,
            "{:.3},{},{:.1},{},{},{},{},{},{:.3}",
            end,
            s.ops,
            s.ops as f64 / span.as_secs_f64().max(1e-9),
            lat,
            s.gets,
            s.hits,
            s.misses,
            s.errors,
            self.unix_at_t0 + end
        )?;
        self.next_row += 1;
        Ok(())
    }
}

fn collect(
    rx: Receiver<Msg>,
    out: BufWriter<File>,
    path: &Path,
    interval: Duration,
    threads: usize,
) -> Result<()> {
    let ctx = || format!("writing {}", path.display());
    let mut w = Writer {
        out,
        interval,
        unix_at_t0: 0.0,
        next_row: 0,
    };
    writeln!(w.out, "{HEADER}").with_context(ctx)?;
    w.out.flush().with_context(ctx)?;
    let mut pending: BTreeMap<u64, IntervalStats> = BTreeMap::new();
    let mut watermarks = vec![0u64; threads];
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Start { unix_at_t0 } => w.unix_at_t0 = unix_at_t0,
            Msg::Flush {
                thread,
                watermark,
                buckets,
            } => {
                for (i, b) in buckets {
                    pending
                        .entry(i)
                        .or_insert_with(IntervalStats::new)
                        .merge(&b);
                }
                if let Some(m) = watermarks.get_mut(thread) {
                    *m = (*m).max(watermark);
                }
                let done = watermarks.iter().copied().min().unwrap_or(0);
                // u64::MAX: every thread ended; the rest waits for End (its length).
                if done != u64::MAX {
                    while w.next_row < done {
                        let s = pending
                            .remove(&w.next_row)
                            .unwrap_or_else(IntervalStats::new);
                        w.row(&s, interval).with_context(ctx)?;
                    }
                    w.out.flush().with_context(ctx)?;
                }
            }
            Msg::End { elapsed } => {
                let mut rows = elapsed.as_nanos().div_ceil(interval.as_nanos()).max(1) as u64;
                // A last interval shorter than half of one (the batches in flight at
                // the deadline) joins the one before, so that no row's rate rests on
                // a sliver of time.
                let whole = |n: u64| interval * u32::try_from(n).unwrap_or(u32::MAX);
                if rows > 1
                    && rows - 1 > w.next_row
                    && elapsed.saturating_sub(whole(rows - 1)) < interval / 2
                {
                    rows -= 1;
                }
                // Replies cannot arrive after the last one; fold any stray ones in.
                let mut last = IntervalStats::new();
                for (_, b) in pending.split_off(&(rows - 1)) {
                    last.merge(&b);
                }
                pending.insert(rows - 1, last);
                while w.next_row < rows {
                    let s = pending
                        .remove(&w.next_row)
                        .unwrap_or_else(IntervalStats::new);
                    let span = if w.next_row == rows - 1 {
                        elapsed.saturating_sub(whole(rows - 1))
                    } else {
                        interval
                    };
                    w.row(&s, if span.is_zero() { interval } else { span })
                        .with_context(ctx)?;
                }
                w.out.flush().with_context(ctx)?;
                return Ok(());
            }
        }
    }
    w.out.flush().with_context(ctx)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_in_order_with_gaps_and_clipped_last() {
        let dir = std::env::temp_dir().join(format!("shoal-bench-tl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.csv");
        let iv = Duration::from_millis(250);
        let c = Collector::start(&path, iv, 2).unwrap();
        c.tx.send(Msg::Start { unix_at_t0: 1000.0 }).unwrap();
        let mut a = IntervalStats::new();
        a.ops = 2;
        a.gets = 2;
        a.hits = 2;
        a.hist.record(1000).unwrap();
        a.hist.record(3000).unwrap();
        c.tx.send(Msg::Flush {
            thread: 0,
            watermark: 2,
            buckets: vec![(0, a)],
        })
        .unwrap();
        let mut b = IntervalStats::new();
        b.ops = 1;
        b.errors = 1;
        b.hist.record(2000).unwrap();
        c.tx.send(Msg::Flush {
            thread: 1,
            watermark: u64::MAX,
            buckets: vec![(3, b)],
        })
        .unwrap();
        c.tx.send(Msg::Flush {
            thread: 0,
            watermark: u64::MAX,
            buckets: vec![],
        })
        .unwrap();
        c.finish(Some(Duration::from_millis(800))).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], HEADER);
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[1].starts_with("0.250,2,8.0,1.0,3.0,3.0,2,2,0,0,1000.250"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].starts_with("0.500,0,0.0,,,,0,0,0,0"),
            "{}",
            lines[2]
        );
        // The last interval (50 ms) joins the one before: 1 op in 300 ms.
        assert!(
            lines[3].starts_with("0.800,1,3.3,2.0,2.0,2.0,0,0,0,1"),
            "{}",
            lines[3]
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
