//! Recording what concurrent clients saw, and checking it against a single-writer model.
//!
//! # The model
//!
//! Every key of the checked key set has exactly **one writer thread** (keys are
//! partitioned among writers); any thread may read any key. A writer keeps a per-key
//! counter and only ever writes values larger than any it wrote before, so the values of
//! one key are unique over the whole run and a value names the write that produced it.
//! A key's writes are therefore sequential and give states `s0` (absent), `s1`, `s2`, ...
//!
//! Writes: RESP `SET k n` (memcache flags 0, no TTL), `INCR k` (only on a present key: the
//! reply must be the current value + 1; flags and TTL kept), `DEL k` (the reply says
//! whether the key existed, which must agree with the model), `EXPIRE k 100000` (state
//! unchanged, but the key now has a TTL; the reply must agree with the model about
//! presence), memcache `set k <flags> 0 n` (flags derived from `n`, no TTL), memcache
//! `gets` + `cas` (a `cas` that fails although this thread is the key's only writer
//! means the CAS id did not move with the key), memcache `delete`.
//!
//! Reads (any thread): RESP `GET`, `MGET` (each element checked separately with the
//! whole request's interval), `TTL`, memcache `get`/`gets`, single or multi-key (flags
//! are compared with the flags of the write that produced the value where the model
//! knows them).
//!
//! # The check
//!
//! Every op is recorded with its invocation instant (before the request is written) and
//! its completion instant (after the reply is read), so the recorded interval contains
//! the real one. A read `[inv, end]` observing `x` is valid iff `x` is the state left by
//! the last write acknowledged before `inv` (or `s0`), or the state of a later write
//! (in the key's write order) invoked before `end`. Anything else is a violation and
//! is explained: a **lost write** (the key is absent or older although a newer write was
//! acknowledged before the read started), a **stale read**, a **resurrection** (a value
//! deleted by an acknowledged `DEL` before the read started comes back), a **phantom**
//! value nobody wrote, **flags** or **TTL** that did not move with the key, a `cas` that
//! failed with `EXISTS` (CAS id lost). The replies of `INCR`, `DEL`, `EXPIRE` and `cas`
//! are checked against the model too (they reveal lost writes and resurrections).
//!
//! An error reply, a malformed reply, an I/O error or a timeout is a **client-visible
//! error** and a violation, unless a [`Window`] of the [`CheckOptions`] excuses it (an
//! outage the test causes on purpose). A write that failed has an unknown effect: it
//! may or may not have been applied, so its state stays a possible observation for
//! reads that start after it (it never becomes the "acknowledged" base), and the writer
//! blindly re-`SET`s the key before relying on its state again.
//!
//! [`History::final_reads`] reads every key once more through both protocols after the
//! load stopped; those reads are checked by the same rule, which then means "equal to the
//! last acknowledged state" (plus its flags and whether it has a TTL).
//!
//! [`Load`] drives such a workload with blocking sockets against a RESP port and a
//! memcache port (a proxy's pools, or one server), and returns the [`History`].

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::resp::{encode_command, parse_at, Value};

/// The TTL, in seconds, that writers give keys with `EXPIRE` (long enough never to
/// expire during a test).
pub const EXPIRE_SECS: i64 = 100_000;

/// The `thread` of the ops [`History::final_reads`] records.
pub const FINAL_THREAD: usize = usize::MAX;

/// How many violations [`Report`]'s `Display` lists in full.
const SHOWN: usize = 25;

// ---------------------------------------------------------------------------------------
// history

/// What a read saw of one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Obs {
    /// No such key.
    Absent,
    /// The key holds `value`; `flags` as memcache reported them (`None` for RESP reads).
    Present { value: u64, flags: Option<u32> },
}

impl fmt::Display for Obs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Obs::Absent => f.write_str("absent"),
            Obs::Present { value, flags: None } => write!(f, "{value}"),
            Obs::Present {
                value,
                flags: Some(fl),
            } => write!(f, "{value} (flags {fl})"),
        }
    }
}

/// Which request a read was part of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// RESP `GET`.
    Get,
    /// One element of a RESP `MGET`.
    Mget,
    /// memcache `get` (one key or one of several).
    McGet,
    /// memcache `gets` (one key or one of several).
    McGets,
}

/// The operation an [`Op`] performed on its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// RESP `SET key value`.
    Set { value: u64 },
    /// memcache `set key flags 0 value`.
    McSet { value: u64, flags: u32 },
    /// RESP `INCR key`.
    Incr,
    /// RESP `DEL key`.
    Del,
    /// memcache `delete key`.
    McDelete,
    /// RESP `EXPIRE key EXPIRE_SECS`.
    Expire,
    /// memcache `cas key flags 0 <id> value` with the id of a preceding `gets`.
    Cas { value: u64, flags: u32 },
    /// A read of the key's value.
    Read(Via),
    /// RESP `TTL key`.
    Ttl,
}

impl OpKind {
    /// Whether the op may change the key (only the key's writer issues these).
    pub fn is_write(&self) -> bool {
        !matches!(self, OpKind::Read(_) | OpKind::Ttl)
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpKind::Set { value } => write!(f, "SET {value}"),
            OpKind::McSet { value, flags } => write!(f, "mc set {value} flags {flags}"),
            OpKind::Incr => f.write_str("INCR"),
            OpKind::Del => f.write_str("DEL"),
            OpKind::McDelete => f.write_str("mc delete"),
            OpKind::Expire => write!(f, "EXPIRE {EXPIRE_SECS}"),
            OpKind::Cas { value, flags } => write!(f, "mc cas {value} flags {flags}"),
            OpKind::Read(Via::Get) => f.write_str("GET"),
            OpKind::Read(Via::Mget) => f.write_str("MGET element"),
            OpKind::Read(Via::McGet) => f.write_str("mc get"),
            OpKind::Read(Via::McGets) => f.write_str("mc gets"),
            OpKind::Ttl => f.write_str("TTL"),
        }
    }
}

/// What an op got back (already decoded against what its kind allows; anything else is
/// an [`Outcome::Error`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `SET`: `+OK`; memcache `set`/`cas`: `STORED`.
    Stored,
    /// `INCR` result, `DEL`/`EXPIRE` count (0 or 1), `TTL` seconds.
    Int(i64),
    /// memcache `delete`: `DELETED` (true) or `NOT_FOUND`.
    Deleted(bool),
    /// memcache `cas`: `EXISTS`.
    CasExists,
    /// memcache `cas`: `NOT_FOUND`.
    CasNotFound,
    /// A read's observation.
    Read(Obs),
    /// Error reply, unexpected reply, I/O error or timeout (its text).
    Error(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Stored => f.write_str("stored"),
            Outcome::Int(n) => write!(f, ":{n}"),
            Outcome::Deleted(true) => f.write_str("DELETED"),
            Outcome::Deleted(false) => f.write_str("NOT_FOUND"),
            Outcome::CasExists => f.write_str("EXISTS"),
            Outcome::CasNotFound => f.write_str("NOT_FOUND"),
            Outcome::Read(o) => write!(f, "saw {o}"),
            Outcome::Error(e) => write!(f, "error: {e}"),
        }
    }
}

/// One recorded operation on one key.
#[derive(Clone, Debug)]
pub struct Op {
    /// Recording thread ([`FINAL_THREAD`] for [`History::final_reads`]).
    pub thread: usize,
    /// Request number within the thread: the elements of one `MGET` / multi-key `get`
    /// share it (an error of the request is an error of each of them).
    pub req: u64,
    /// Index into [`History::keys`].
    pub key: u32,
    pub kind: OpKind,
    /// Before the request was written.
    pub inv: Instant,
    /// After the reply was read (or the error seen).
    pub end: Instant,
    /// When the connection the op used was opened (for [`Window::stale_connections`]).
    pub conn_opened: Instant,
    pub outcome: Outcome,
}

/// Everything the clients did.
#[derive(Clone, Debug)]
pub struct History {
    /// Reference instant for reports (times are printed relative to it).
    pub t0: Instant,
    /// The checked keys; ops refer to them by index.
    pub keys: Vec<String>,
    pub ops: Vec<Op>,
}

impl History {
    /// An empty history over `keys`.
    pub fn new(t0: Instant, keys: Vec<String>) -> History {
        History {
            t0,
            keys,
            ops: Vec::new(),
        }
    }

    /// Index of `key`, if it is one of the history's keys.
    pub fn key_index(&self, key: &str) -> Option<u32> {
        self.keys.iter().position(|k| k == key).map(|i| i as u32)
    }

    /// Reads every key once more (RESP `GET` and `TTL`, memcache `get` when `mc_port` is
    /// given), recording the reads as ops of [`FINAL_THREAD`]. Call it after the load
    /// stopped: [`check`] then demands the last acknowledged state of every key.
    pub fn final_reads(&mut self, resp_port: u16, mc_port: Option<u16>, timeout: Duration) {
        let mut c = Client::new(resp_port, mc_port, timeout);
        let mut req = u64::MAX / 2;
        for ki in 0..self.keys.len() {
            let key = self.keys[ki].clone();
            req += 1;
            let mut ops = Vec::new();
            c.get(&mut ops, FINAL_THREAD, req, ki as u32, &key);
            req += 1;
            c.ttl(&mut ops, FINAL_THREAD, req, ki as u32, &key);
            if mc_port.is_some() {
                req += 1;
                c.mc_get(
                    &mut ops,
                    FINAL_THREAD,
                    req,
                    &[(ki as u32, key.as_str())],
                    false,
                );
            }
            self.ops.extend(ops);
        }
    }

    /// Ops that got an error (excused or not).
    pub fn errors(&self) -> usize {
        self.ops
            .iter()
            .filter(|o| matches!(o.outcome, Outcome::Error(_)))
            .count()
    }

    fn at(&self, t: Instant) -> String {
        if t >= self.t0 {
            format!("+{:.3}s", (t - self.t0).as_secs_f64())
        } else {
            format!("-{:.3}s", (self.t0 - t).as_secs_f64())
        }
    }

    fn describe_op(&self, i: usize) -> String {
        let o = &self.ops[i];
        let who = if o.thread == FINAL_THREAD {
            "final read".to_string()
        } else {
            format!("thread {}", o.thread)
        };
        format!(
            "op #{i} [{who}, {} {}..{}] {} -> {}",
            self.keys[o.key as usize],
            self.at(o.inv),
            self.at(o.end),
            o.kind,
            o.outcome
        )
    }
}

// ---------------------------------------------------------------------------------------
// checker

/// A period in which errors are expected (the test kills something on purpose).
#[derive(Clone, Debug)]
pub struct Window {
    pub start: Instant,
    pub end: Instant,
    /// Why errors are expected (for reports).
    pub why: String,
    /// Also excuse errors on connections opened before `start` (the process that served
    /// them was killed: their first use after the window fails).
    pub stale_connections: bool,
    /// Only errors of requests that involve one of these keys are excused (`None`: all).
    pub keys: Option<HashSet<String>>,
}

impl Window {
    /// Errors of any op overlapping `[start, end]` are excused.
    pub fn new(start: Instant, end: Instant, why: &str) -> Window {
        Window {
            start,
            end,
            why: why.to_string(),
            stale_connections: false,
            keys: None,
        }
    }
}

/// What [`check`] excuses.
#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    pub tolerate: Vec<Window>,
}

/// The kinds of [`Violation`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ViolationKind {
    /// An error reply, malformed reply, I/O error or timeout outside any [`Window`].
    ClientError,
    /// An acknowledged write is gone (read absent or older, or a reply of `INCR`, `DEL`,
    /// `EXPIRE`, `cas` that only a missing write explains).
    LostWrite,
    /// A read returned an older value than one acknowledged before it started.
    StaleRead,
    /// A deleted value (or any value of a key whose acknowledged state is absent) came
    /// back.
    Resurrection,
    /// A value this key never had.
    Phantom,
    /// A value written after the read had completed.
    FutureRead,
    /// memcache flags differ from those written with the value.
    Flags,
    /// A `TTL` that does not match the key's acknowledged state.
    Ttl,
    /// `cas` answered `EXISTS` although the thread is the key's only writer.
    CasIdLost,
    /// The history breaks the model's assumptions (two writers, overlapping writes,
    /// an outcome the op kind cannot have): a bug of the harness or of a synthetic test.
    Harness,
}

/// One thing that went wrong.
#[derive(Clone, Debug)]
pub struct Violation {
    pub kind: ViolationKind,
    pub key: String,
    /// Index into [`History::ops`].
    pub op: usize,
    /// Readable explanation.
    pub text: String,
}

/// The result of [`check`].
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub violations: Vec<Violation>,
    /// Ops checked, by class.
    pub writes: usize,
    pub acked_writes: usize,
    pub reads: usize,
    /// Errors a [`Window`] excused.
    pub excused_errors: usize,
    /// Per-key context for the first violations (write timelines).
    pub context: Vec<String>,
}

impl Report {
    /// No violation at all.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }

    /// Violations of `kind`.
    pub fn count(&self, kind: ViolationKind) -> usize {
        self.violations.iter().filter(|v| v.kind == kind).count()
    }

    /// Panics with the report when there is any violation; `what` names the run.
    pub fn assert_clean(&self, what: &str) {
        assert!(self.is_clean(), "{what}: history check failed\n{self}");
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} writes ({} acknowledged), {} reads, {} excused errors, {} violations",
            self.writes,
            self.acked_writes,
            self.reads,
            self.excused_errors,
            self.violations.len()
        )?;
        if self.violations.is_empty() {
            return Ok(());
        }
        let mut by: std::collections::BTreeMap<ViolationKind, usize> = Default::default();
        for v in &self.violations {
            *by.entry(v.kind).or_default() += 1;
        }
        writeln!(f, "by kind: {by:?}")?;
        for v in self.violations.iter().take(SHOWN) {
            writeln!(f, "- [{:?}] {}", v.kind, v.text)?;
        }
        if self.violations.len() > SHOWN {
            writeln!(f, "... and {} more", self.violations.len() - SHOWN)?;
        }
        for c in &self.context {
            writeln!(f, "{c}")?;
        }
        Ok(())
    }
}

/// One possible state of a key in the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct State {
    obs: Obs,
    ttl: bool,
}

const ABSENT: State = State {
    obs: Obs::Absent,
    ttl: false,
};

fn present(value: u64, flags: Option<u32>, ttl: bool) -> State {
    State {
        obs: Obs::Present { value, flags },
        ttl,
    }
}

fn is_present(s: &State) -> bool {
    matches!(s.obs, Obs::Present { .. })
}

fn push_unique(v: &mut Vec<State>, s: State) {
    if !v.contains(&s) {
        v.push(s);
    }
}

fn show_states(v: &[State]) -> String {
    let parts: Vec<String> = v
        .iter()
        .map(|s| {
            if s.ttl {
                format!("{} with TTL", s.obs)
            } else {
                s.obs.to_string()
            }
        })
        .collect();
    parts.join(" or ")
}

/// Whether a read of state `s` may return `seen`.
fn obs_match(s: Obs, seen: Obs) -> bool {
    match (s, seen) {
        (Obs::Absent, Obs::Absent) => true,
        (
            Obs::Present {
                value: a,
                flags: fa,
            },
            Obs::Present {
                value: b,
                flags: fb,
            },
        ) => a == b && (fa.is_none() || fb.is_none() || fa == fb),
        _ => false,
    }
}

/// Whether `TTL` may answer `t` in state `s`.
fn ttl_match(s: &State, t: i64) -> bool {
    match s.obs {
        Obs::Absent => t == -2,
        Obs::Present { .. } if s.ttl => t > 0 && t <= EXPIRE_SECS,
        Obs::Present { .. } => t == -1,
    }
}

/// The effect of a write whose outcome is unknown: every state it may leave.
fn effect_unknown(kind: OpKind, prev: &[State]) -> Vec<State> {
    let mut out = Vec::new();
    for p in prev {
        let s = match (kind, p.obs) {
            (OpKind::Set { value }, _) => present(value, Some(0), false),
            (OpKind::McSet { value, flags } | OpKind::Cas { value, flags }, _) => {
                present(value, Some(flags), false)
            }
            (OpKind::Incr, Obs::Present { value, flags }) => present(value + 1, flags, p.ttl),
            (OpKind::Incr, Obs::Absent) => present(1, Some(0), false),
            (OpKind::Del | OpKind::McDelete, _) => ABSENT,
            (OpKind::Expire, Obs::Present { .. }) => State { ttl: true, ..*p },
            (OpKind::Expire, Obs::Absent) | (OpKind::Read(_) | OpKind::Ttl, _) => *p,
        };
        push_unique(&mut out, s);
    }
    out
}

/// One write of a key as the checker sees it.
struct W {
    op: usize,
    acked: bool,
    /// States the key may be in after this write (and every earlier one).
    poss: Vec<State>,
}

struct KeyCheck<'a> {
    h: &'a History,
    key: String,
    out: &'a mut Vec<Violation>,
}

impl KeyCheck<'_> {
    fn flag(&mut self, kind: ViolationKind, op: usize, why: String) {
        self.out.push(Violation {
            kind,
            key: self.key.clone(),
            op,
            text: format!("{}: {why}", self.h.describe_op(op)),
        });
    }
}

/// Checks `h` against the single-writer model (see the module docs).
pub fn check(h: &History, opts: &CheckOptions) -> Report {
    let mut report = Report::default();
    let mut per_key: Vec<(Vec<usize>, Vec<usize>)> = vec![(Vec::new(), Vec::new()); h.keys.len()];
    for (i, o) in h.ops.iter().enumerate() {
        let Some(slot) = per_key.get_mut(o.key as usize) else {
            report.violations.push(Violation {
                kind: ViolationKind::Harness,
                key: format!("#{}", o.key),
                op: i,
                text: format!("op #{i} names key index {} out of range", o.key),
            });
            continue;
        };
        if o.kind.is_write() {
            slot.0.push(i);
        } else {
            slot.1.push(i);
        }
    }
    // Which requests involve a key of each window (multi-key requests fail as a whole).
    let window_keys: Vec<Option<HashSet<u32>>> = opts
        .tolerate
        .iter()
        .map(|w| {
            w.keys.as_ref().map(|ks| {
                ks.iter()
                    .filter_map(|k| h.key_index(k))
                    .collect::<HashSet<u32>>()
            })
        })
        .collect();
    let mut req_keys: HashMap<(usize, u64), Vec<u32>> = HashMap::new();
    for o in &h.ops {
        req_keys.entry((o.thread, o.req)).or_default().push(o.key);
    }
    let excused = |o: &Op| -> bool {
        opts.tolerate.iter().zip(&window_keys).any(|(w, ks)| {
            let in_time = (o.inv <= w.end && o.end >= w.start)
                || (w.stale_connections && o.conn_opened < w.start);
            let in_keys = match ks {
                None => true,
                Some(ks) => req_keys
                    .get(&(o.thread, o.req))
                    .is_some_and(|v| v.iter().any(|k| ks.contains(k))),
            };
            in_time && in_keys
        })
    };

    let mut contexts = 0;
    for (ki, (mut writes, reads)) in per_key.into_iter().enumerate() {
        let before = report.violations.len();
        let mut kc = KeyCheck {
            h,
            key: h.keys[ki].clone(),
            out: &mut report.violations,
        };
        writes.sort_by_key(|&i| (h.ops[i].inv, i));
        // Single writer, sequential writes.
        if let Some(&first) = writes.first() {
            let t = h.ops[first].thread;
            if let Some(&other) = writes.iter().find(|&&i| h.ops[i].thread != t) {
                kc.flag(
                    ViolationKind::Harness,
                    other,
                    format!(
                        "a second writer (thread {t} wrote op #{first}): the model needs one writer per key"
                    ),
                );
            }
        }
        for pair in writes.windows(2) {
            if h.ops[pair[1]].inv < h.ops[pair[0]].end {
                kc.flag(
                    ViolationKind::Harness,
                    pair[1],
                    format!("overlaps the previous write op #{}", pair[0]),
                );
            }
        }
        // The model: possible states after each write.
        let mut ws: Vec<W> = Vec::with_capacity(writes.len());
        let mut value_of: HashMap<u64, usize> = HashMap::new();
        for &i in &writes {
            let o = &h.ops[i];
            let prev: Vec<State> = ws.last().map_or_else(|| vec![ABSENT], |w| w.poss.clone());
            let any_present = prev.iter().any(is_present);
            let any_absent = prev.iter().any(|s| !is_present(s));
            let mut acked = true;
            let poss = match (o.kind, &o.outcome) {
                (_, Outcome::Error(e)) => {
                    acked = false;
                    if excused(o) {
                        report.excused_errors += 1;
                    } else {
                        kc.flag(
                            ViolationKind::ClientError,
                            i,
                            format!("client-visible error on a write: {e}"),
                        );
                    }
                    let mut p = prev.clone();
                    for s in effect_unknown(o.kind, &prev) {
                        push_unique(&mut p, s);
                    }
                    p
                }
                (OpKind::Set { value }, Outcome::Stored) => {
                    vec![present(value, Some(0), false)]
                }
                (OpKind::McSet { value, flags }, Outcome::Stored) => {
                    vec![present(value, Some(flags), false)]
                }
                (OpKind::Incr, Outcome::Int(r)) => {
                    let r = *r;
                    let from: Vec<State> = prev
                        .iter()
                        .filter(|s| match s.obs {
                            Obs::Present { value, .. } => value as i64 + 1 == r,
                            Obs::Absent => r == 1,
                        })
                        .copied()
                        .collect();
                    if from.is_empty() {
                        let (kind, why) = if !any_present {
                            (
                                ViolationKind::Resurrection,
                                format!(
                                    "INCR returned {r}, so the key held {}, but its acknowledged state is {}",
                                    r - 1,
                                    show_states(&prev)
                                ),
                            )
                        } else if r == 1 {
                            (
                                ViolationKind::LostWrite,
                                format!(
                                    "INCR returned 1, so the key was missing, but its acknowledged state is {}",
                                    show_states(&prev)
                                ),
                            )
                        } else {
                            (
                                ViolationKind::LostWrite,
                                format!(
                                    "INCR returned {r}, so the key held {}, but its acknowledged state is {}",
                                    r - 1,
                                    show_states(&prev)
                                ),
                            )
                        };
                        kc.flag(kind, i, why);
                        let v = r.max(0) as u64;
                        vec![present(v, None, false), present(v, None, true)]
                    } else {
                        let v = r.max(0) as u64;
                        let mut p = Vec::new();
                        for s in from {
                            let (flags, ttl) = match s.obs {
                                Obs::Present { flags, .. } => (flags, s.ttl),
                                Obs::Absent => (Some(0), false),
                            };
                            push_unique(&mut p, present(v, flags, ttl));
                        }
                        p
                    }
                }
                (OpKind::Del, Outcome::Int(n @ (0 | 1)))
                | (OpKind::Expire, Outcome::Int(n @ (0 | 1))) => {
                    let existed = *n == 1;
                    let name = if o.kind == OpKind::Del {
                        "DEL"
                    } else {
                        "EXPIRE"
                    };
                    if existed && !any_present {
                        kc.flag(
                            ViolationKind::Resurrection,
                            i,
                            format!("{name} found the key, but its acknowledged state is absent"),
                        );
                    } else if !existed && !any_absent {
                        kc.flag(
                            ViolationKind::LostWrite,
                            i,
                            format!(
                                "{name} found no key, but its acknowledged state is {}",
                                show_states(&prev)
                            ),
                        );
                    }
                    if o.kind == OpKind::Del {
                        vec![ABSENT]
                    } else if existed {
                        let p: Vec<State> = prev
                            .iter()
                            .filter(|s| is_present(s))
                            .map(|s| State { ttl: true, ..*s })
                            .collect();
                        if p.is_empty() {
                            prev.clone()
                        } else {
                            p
                        }
                    } else {
                        vec![ABSENT]
                    }
                }
                (OpKind::McDelete, Outcome::Deleted(existed)) => {
                    if *existed && !any_present {
                        kc.flag(
                            ViolationKind::Resurrection,
                            i,
                            "memcache delete found the key, but its acknowledged state is absent"
                                .into(),
                        );
                    } else if !existed && !any_absent {
                        kc.flag(
                            ViolationKind::LostWrite,
                            i,
                            format!(
                                "memcache delete found no key, but its acknowledged state is {}",
                                show_states(&prev)
                            ),
                        );
                    }
                    vec![ABSENT]
                }
                (OpKind::Cas { value, flags }, Outcome::Stored) => {
                    if !any_present {
                        kc.flag(
                            ViolationKind::Resurrection,
                            i,
                            "cas stored over a key whose acknowledged state is absent".into(),
                        );
                    }
                    vec![present(value, Some(flags), false)]
                }
                (OpKind::Cas { .. }, Outcome::CasExists) => {
                    kc.flag(
                        ViolationKind::CasIdLost,
                        i,
                        format!(
                            "cas answered EXISTS with the id of this thread's own gets, and this thread is the key's only writer: the CAS id did not move with the key (state {})",
                            show_states(&prev)
                        ),
                    );
                    prev.clone()
                }
                (OpKind::Cas { .. }, Outcome::CasNotFound) => {
                    if !any_absent {
                        kc.flag(
                            ViolationKind::LostWrite,
                            i,
                            format!(
                                "cas answered NOT_FOUND, but the key's acknowledged state is {}",
                                show_states(&prev)
                            ),
                        );
                    }
                    vec![ABSENT]
                }
                (kind, outcome) => {
                    acked = false;
                    kc.flag(
                        ViolationKind::Harness,
                        i,
                        format!("outcome `{outcome}` is impossible for {kind}"),
                    );
                    let mut p = prev.clone();
                    for s in effect_unknown(kind, &prev) {
                        push_unique(&mut p, s);
                    }
                    p
                }
            };
            if acked {
                report.acked_writes += 1;
            }
            for s in &poss {
                if let Obs::Present { value, .. } = s.obs {
                    value_of.entry(value).or_insert(ws.len());
                }
            }
            ws.push(W { op: i, acked, poss });
        }
        report.writes += ws.len();

        // Reads.
        let acked_ends: Vec<(Instant, usize)> = ws
            .iter()
            .enumerate()
            .filter(|(_, w)| w.acked)
            .map(|(j, w)| (h.ops[w.op].end, j))
            .collect();
        let invs: Vec<Instant> = ws.iter().map(|w| h.ops[w.op].inv).collect();
        for &ri in &reads {
            let r = &h.ops[ri];
            report.reads += 1;
            let seen = match &r.outcome {
                Outcome::Error(e) => {
                    if excused(r) {
                        report.excused_errors += 1;
                    } else {
                        kc.flag(
                            ViolationKind::ClientError,
                            ri,
                            format!("client-visible error on a read: {e}"),
                        );
                    }
                    continue;
                }
                Outcome::Read(o) if matches!(r.kind, OpKind::Read(_)) => Ok(*o),
                Outcome::Int(t) if r.kind == OpKind::Ttl => Err(*t),
                other => {
                    kc.flag(
                        ViolationKind::Harness,
                        ri,
                        format!("outcome `{other}` is impossible for {}", r.kind),
                    );
                    continue;
                }
            };
            // The base: the last write acknowledged before the read started.
            let nb = acked_ends.partition_point(|(end, _)| *end < r.inv);
            let base = nb.checked_sub(1).map(|x| acked_ends[x].1);
            let from = base.map_or(0, |b| b + 1);
            let to = invs.partition_point(|inv| *inv < r.end).max(from);
            let base_states: Vec<State> = base.map_or_else(|| vec![ABSENT], |b| ws[b].poss.clone());
            let ok = |s: &State| match seen {
                Ok(o) => obs_match(s.obs, o),
                Err(t) => ttl_match(s, t),
            };
            let mut candidates = base_states;
            for w in &ws[from..to] {
                for s in &w.poss {
                    push_unique(&mut candidates, *s);
                }
            }
            if candidates.iter().any(ok) {
                continue;
            }
            // Explain.
            let base_desc = match base {
                Some(b) => format!(
                    "the last write acknowledged before the read started is op #{} ({}, acknowledged at {}), leaving {}",
                    ws[b].op,
                    h.ops[ws[b].op].kind,
                    h.at(h.ops[ws[b].op].end),
                    show_states(&ws[b].poss)
                ),
                None => "no write was acknowledged before the read started (state absent)".into(),
            };
            let concurrent: Vec<String> = ws[from..to]
                .iter()
                .map(|w| format!("op #{} {}", w.op, h.ops[w.op].kind))
                .collect();
            let also = if concurrent.is_empty() {
                String::new()
            } else {
                format!("; concurrent writes: {}", concurrent.join(", "))
            };
            let (kind, why) = match seen {
                Err(t) => (
                    ViolationKind::Ttl,
                    format!(
                        "TTL {t} does not match the key's state: {base_desc}{also} (TTL must be -2 when absent, -1 without EXPIRE since the last SET/set/cas, in 1..={EXPIRE_SECS} after one)"
                    ),
                ),
                Ok(Obs::Absent) => (
                    ViolationKind::LostWrite,
                    format!("the key is absent, but {base_desc}{also}"),
                ),
                Ok(Obs::Present { value, flags }) => match value_of.get(&value).copied() {
                    None => (
                        ViolationKind::Phantom,
                        format!("value {value} was never written to this key; {base_desc}{also}"),
                    ),
                    Some(k) if k >= to => (
                        ViolationKind::FutureRead,
                        format!(
                            "value {value} was written by op #{} invoked at {}, after the read completed",
                            ws[k].op,
                            h.at(h.ops[ws[k].op].inv)
                        ),
                    ),
                    Some(_)
                        if candidates
                            .iter()
                            .any(|s| obs_match(s.obs, Obs::Present { value, flags: None })) =>
                    {
                        let want: Vec<String> = candidates
                            .iter()
                            .filter_map(|s| match s.obs {
                                Obs::Present {
                                    value: v,
                                    flags: Some(f),
                                } if v == value => Some(f.to_string()),
                                _ => None,
                            })
                            .collect();
                        (
                            ViolationKind::Flags,
                            format!(
                                "value {value} came with flags {}, but it was written with flags {}",
                                flags.map_or("-".into(), |f| f.to_string()),
                                want.join(" or ")
                            ),
                        )
                    }
                    Some(k) => {
                        let deleted = ws.get(k + 1..from).unwrap_or(&[]).iter().find(|w| {
                            w.acked
                                && matches!(h.ops[w.op].kind, OpKind::Del | OpKind::McDelete)
                        });
                        match deleted {
                            Some(d) => (
                                ViolationKind::Resurrection,
                                format!(
                                    "value {value} (written by op #{}) was deleted by op #{} acknowledged at {}, before the read started, and came back; {base_desc}",
                                    ws[k].op,
                                    d.op,
                                    h.at(h.ops[d.op].end)
                                ),
                            ),
                            None => (
                                ViolationKind::StaleRead,
                                format!(
                                    "value {value} is from op #{} but {base_desc}{also}",
                                    ws[k].op
                                ),
                            ),
                        }
                    }
                },
            };
            kc.flag(kind, ri, why);
        }
        // Context for the first few keys with violations: the key's writes around the
        // first violating op (4 before it started, those concurrent, 2 after).
        if report.violations.len() > before && contexts < 3 {
            contexts += 1;
            let v = &h.ops[report.violations[before].op];
            let lo = ws
                .partition_point(|w| h.ops[w.op].end < v.inv)
                .saturating_sub(4);
            let hi = (ws.partition_point(|w| h.ops[w.op].inv <= v.end) + 2).min(ws.len());
            let mut c = format!(
                "writes of {} around op #{} ({} of {}):",
                h.keys[ki],
                report.violations[before].op,
                hi - lo,
                ws.len()
            );
            for w in &ws[lo..hi] {
                c.push_str(&format!(
                    "\n    {} => {}",
                    h.describe_op(w.op),
                    show_states(&w.poss)
                ));
            }
            report.context.push(c);
        }
    }
    report
}

// ---------------------------------------------------------------------------------------
// clients

/// A blocking connection that reconnects lazily after any failure.
struct Wire {
    port: u16,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    opened: Instant,
    timeout: Duration,
}

impl Wire {
    fn new(port: u16, timeout: Duration) -> Wire {
        Wire {
            port,
            stream: None,
            buf: Vec::new(),
            opened: Instant::now(),
            timeout,
        }
    }

    fn drop_conn(&mut self) {
        self.stream = None;
        self.buf.clear();
    }

    fn ensure(&mut self) -> Result<(), String> {
        if self.stream.is_some() {
            return Ok(());
        }
        self.opened = Instant::now();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let s = TcpStream::connect_timeout(&addr, self.timeout.min(Duration::from_secs(2)))
            .map_err(|e| format!("connect 127.0.0.1:{}: {e}", self.port))?;
        s.set_nodelay(true).ok();
        s.set_write_timeout(Some(self.timeout)).ok();
        self.buf.clear();
        self.stream = Some(s);
        Ok(())
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.ensure()?;
        let r = match self.stream.as_mut() {
            Some(s) => s.write_all(bytes),
            None => return Err("not connected".into()),
        };
        r.map_err(|e| {
            self.drop_conn();
            format!("write: {e}")
        })
    }

    fn fill(&mut self, deadline: Instant) -> Result<(), String> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            self.drop_conn();
            return Err(format!("timeout after {:?}", self.timeout));
        }
        let Some(s) = self.stream.as_mut() else {
            return Err("not connected".into());
        };
        s.set_read_timeout(Some(left)).ok();
        let mut tmp = [0u8; 16 * 1024];
        match s.read(&mut tmp) {
            Ok(0) => {
                self.drop_conn();
                Err("connection closed by peer".into())
            }
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                self.drop_conn();
                Err(format!("timeout after {:?}", self.timeout))
            }
            Err(e) => {
                self.drop_conn();
                Err(format!("read: {e}"))
            }
        }
    }

    /// Sends the commands in one write and reads one RESP reply per command.
    fn resp(&mut self, cmds: &[Vec<u8>]) -> Result<Vec<Value>, String> {
        let mut req = Vec::new();
        for c in cmds {
            req.extend_from_slice(c);
        }
        self.send(&req)?;
        let deadline = Instant::now() + self.timeout;
        let mut out = Vec::with_capacity(cmds.len());
        while out.len() < cmds.len() {
            match parse_at(&self.buf, 0) {
                Ok(Some((v, n))) => {
                    self.buf.drain(..n);
                    out.push(v);
                }
                Ok(None) => self.fill(deadline)?,
                Err(e) => {
                    let text = crate::escape(&self.buf);
                    self.drop_conn();
                    return Err(format!("not RESP ({e}): {text}"));
                }
            }
        }
        Ok(out)
    }

    fn line(&mut self, deadline: Instant) -> Result<Vec<u8>, String> {
        loop {
            if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let l: Vec<u8> = self.buf.drain(..p + 2).take(p).collect();
                return Ok(l);
            }
            self.fill(deadline)?;
        }
    }

    fn data(&mut self, n: usize, deadline: Instant) -> Result<Vec<u8>, String> {
        while self.buf.len() < n + 2 {
            self.fill(deadline)?;
        }
        if &self.buf[n..n + 2] != b"\r\n" {
            let text = crate::escape(&self.buf);
            self.drop_conn();
            return Err(format!("data block not followed by CRLF: {text}"));
        }
        Ok(self.buf.drain(..n + 2).take(n).collect())
    }

    /// memcache: sends `req`, reads one line.
    fn mc_line(&mut self, req: &[u8]) -> Result<Vec<u8>, String> {
        self.send(req)?;
        let deadline = Instant::now() + self.timeout;
        self.line(deadline)
    }

    /// memcache: sends a retrieval command, reads `VALUE` blocks up to `END`:
    /// `(key, flags, cas, data)`; an error line is an `Err`.
    #[allow(clippy::type_complexity)]
    fn mc_values(&mut self, req: &[u8]) -> Result<Vec<(Vec<u8>, u32, u64, Vec<u8>)>, String> {
        self.send(req)?;
        let deadline = Instant::now() + self.timeout;
        let mut out = Vec::new();
        loop {
            let l = self.line(deadline)?;
            if l == b"END" {
                return Ok(out);
            }
            let toks: Vec<&[u8]> = l.split(|b| *b == b' ').filter(|t| !t.is_empty()).collect();
            let num =
                |t: Option<&&[u8]>| -> Option<u64> { std::str::from_utf8(t?).ok()?.parse().ok() };
            match (toks.first().copied(), num(toks.get(2)), num(toks.get(3))) {
                (Some(b"VALUE"), Some(flags), Some(len)) if toks.len() >= 4 => {
                    let cas = num(toks.get(4)).unwrap_or(0);
                    let key = toks[1].to_vec();
                    let data = self.data(len as usize, deadline)?;
                    out.push((key, flags as u32, cas, data));
                }
                _ => {
                    // An error line (or garbage): the connection's state is unknown.
                    self.drop_conn();
                    return Err(format!("unexpected line {}", crate::escape(&l)));
                }
            }
        }
    }
}

fn text(v: &Value) -> String {
    let mut b = Vec::new();
    v.encode(&mut b);
    crate::escape(&b)
}

fn parse_u64(b: &[u8]) -> Option<u64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// Decodes a `GET`-style reply.
fn resp_obs(v: &Value) -> Result<Obs, String> {
    match v {
        Value::Bulk(b'$', None) => Ok(Obs::Absent),
        Value::Bulk(b'$', Some(b)) => parse_u64(b)
            .map(|value| Obs::Present { value, flags: None })
            .ok_or_else(|| format!("value is not a number: {}", text(v))),
        Value::Line(b'-', _) => Err(format!("error reply {}", text(v))),
        other => Err(format!("unexpected reply {}", text(other))),
    }
}

fn resp_int(v: &Value) -> Result<i64, String> {
    match v {
        Value::Line(b':', _) => v.as_int().ok_or_else(|| format!("bad integer {}", text(v))),
        Value::Line(b'-', _) => Err(format!("error reply {}", text(v))),
        other => Err(format!("unexpected reply {}", text(other))),
    }
}

/// memcache flags a writer uses with `value` (varies with the value, so flags that
/// belong to another write are caught).
pub fn flags_for(value: u64) -> u32 {
    (value.wrapping_mul(40_503) % 65_521) as u32 + 1
}

/// One thread's RESP and memcache connections; each method records its op(s).
struct Client {
    resp: Wire,
    mc: Option<Wire>,
    /// `WAIT n ms` after each RESP write; fewer replicas make the write an error.
    wait: Option<(u32, u64)>,
}

impl Client {
    fn new(resp_port: u16, mc_port: Option<u16>, timeout: Duration) -> Client {
        Client {
            resp: Wire::new(resp_port, timeout),
            mc: mc_port.map(|p| Wire::new(p, timeout)),
            wait: None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        ops: &mut Vec<Op>,
        thread: usize,
        req: u64,
        key: u32,
        kind: OpKind,
        inv: Instant,
        opened: Instant,
        outcome: Outcome,
    ) {
        ops.push(Op {
            thread,
            req,
            key,
            kind,
            inv,
            end: Instant::now(),
            conn_opened: opened,
            outcome,
        });
    }

    /// A RESP write: the command (plus `WAIT` when configured), decoded by `decode`.
    #[allow(clippy::too_many_arguments)]
    fn resp_write(
        &mut self,
        ops: &mut Vec<Op>,
        thread: usize,
        req: u64,
        key: u32,
        kind: OpKind,
        args: &[&[u8]],
        decode: impl Fn(&Value) -> Result<Outcome, String>,
    ) -> Outcome {
        let mut cmds = vec![encode_command(args)];
        let wait = self.wait.map(|(n, ms)| (n, ms.to_string()));
        if let Some((n, ms)) = &wait {
            cmds.push(encode_command(&[
                b"WAIT".as_slice(),
                n.to_string().as_bytes(),
                ms.as_bytes(),
            ]));
        }
        let inv = Instant::now();
        let res = self.resp.resp(&cmds);
        let outcome = match res {
            Err(e) => Outcome::Error(e),
            Ok(vals) => match decode(&vals[0]) {
                Err(e) => Outcome::Error(e),
                Ok(o) => match (&wait, vals.get(1)) {
                    (Some((n, _)), Some(w)) => match resp_int(w) {
                        Ok(got) if got >= i64::from(*n) => o,
                        Ok(got) => Outcome::Error(format!(
                            "not replicated: WAIT {n} answered {got} (reply to the write: {o})"
                        )),
                        Err(e) => Outcome::Error(format!("WAIT: {e}")),
                    },
                    _ => o,
                },
            },
        };
        Self::record(
            ops,
            thread,
            req,
            key,
            kind,
            inv,
            self.resp.opened,
            outcome.clone(),
        );
        outcome
    }

    fn set(&mut self, ops: &mut Vec<Op>, t: usize, req: u64, k: u32, key: &str, v: u64) -> Outcome {
        let vs = v.to_string();
        self.resp_write(
            ops,
            t,
            req,
            k,
            OpKind::Set { value: v },
            &[b"SET", key.as_bytes(), vs.as_bytes()],
            |r| match r {
                Value::Line(b'+', l) if l == b"OK" => Ok(Outcome::Stored),
                other => Err(format!("SET: {}", text(other))),
            },
        )
    }

    fn incr(&mut self, ops: &mut Vec<Op>, t: usize, req: u64, k: u32, key: &str) -> Outcome {
        self.resp_write(
            ops,
            t,
            req,
            k,
            OpKind::Incr,
            &[b"INCR", key.as_bytes()],
            |r| resp_int(r).map(Outcome::Int),
        )
    }

    fn del(&mut self, ops: &mut Vec<Op>, t: usize, req: u64, k: u32, key: &str) -> Outcome {
        self.resp_write(
            ops,
            t,
            req,
            k,
            OpKind::Del,
            &[b"DEL", key.as_bytes()],
            |r| match resp_int(r)? {
                n @ (0 | 1) => Ok(Outcome::Int(n)),
                n => Err(format!("DEL of one key answered {n}")),
            },
        )
    }

    fn expire(&mut self, ops: &mut Vec<Op>, t: usize, req: u64, k: u32, key: &str) -> Outcome {
        let secs = EXPIRE_SECS.to_string();
        self.resp_write(
            ops,
            t,
            req,
            k,
            OpKind::Expire,
            &[b"EXPIRE", key.as_bytes(), secs.as_bytes()],
            |r| match resp_int(r)? {
                n @ (0 | 1) => Ok(Outcome::Int(n)),
                n => Err(format!("EXPIRE answered {n}")),
            },
        )
    }

    fn get(&mut self, ops: &mut Vec<Op>, t: usize, req: u64, k: u32, key: &str) {
        let inv = Instant::now();
        let outcome = match self.resp.resp(&[encode_command(&[b"GET", key.as_bytes()])]) {
            Err(e) => Outcome::Error(e),
            Ok(v) => match resp_obs(&v[0]) {
                Ok(o) => Outcome::Read(o),
                Err(e) => Outcome::Error(e),
            },
        };
        Self::record(
            ops,
            t,
            req,
            k,
            OpKind::Read(Via::Get),
            inv,
            self.resp.opened,
            outcome,
        );
    }

    fn ttl(&mut self, ops: &mut Vec<Op>, t: usize, req: u64, k: u32, key: &str) {
        let inv = Instant::now();
        let outcome = match self.resp.resp(&[encode_command(&[b"TTL", key.as_bytes()])]) {
            Err(e) => Outcome::Error(e),
            Ok(v) => match resp_int(&v[0]) {
                Ok(n) => Outcome::Int(n),
                Err(e) => Outcome::Error(e),
            },
        };
        Self::record(ops, t, req, k, OpKind::Ttl, inv, self.resp.opened, outcome);
    }

    fn mget(&mut self, ops: &mut Vec<Op>, t: usize, req: u64, keys: &[(u32, &str)]) {
        let mut args: Vec<&[u8]> = vec![b"MGET"];
        args.extend(keys.iter().map(|(_, k)| k.as_bytes()));
        let inv = Instant::now();
        let res = self.resp.resp(&[encode_command(&args)]);
        let outcomes: Vec<Outcome> = match res {
            Err(e) => vec![Outcome::Error(e); keys.len()],
            Ok(v) => match v[0].elements() {
                Some(items) if v[0].kind() == b'*' && items.len() == keys.len() => items
                    .iter()
                    .map(|it| match resp_obs(it) {
                        Ok(o) => Outcome::Read(o),
                        Err(e) => Outcome::Error(format!("MGET element: {e}")),
                    })
                    .collect(),
                _ => vec![Outcome::Error(format!("MGET: {}", text(&v[0]))); keys.len()],
            },
        };
        let opened = self.resp.opened;
        for ((k, _), o) in keys.iter().zip(outcomes) {
            Self::record(ops, t, req, *k, OpKind::Read(Via::Mget), inv, opened, o);
        }
    }

    /// memcache `get`/`gets` of `keys`; returns each key's CAS id when found.
    fn mc_get(
        &mut self,
        ops: &mut Vec<Op>,
        t: usize,
        req: u64,
        keys: &[(u32, &str)],
        gets: bool,
    ) -> Vec<Option<u64>> {
        let Some(mc) = self.mc.as_mut() else {
            return vec![None; keys.len()];
        };
        let mut line = if gets {
            b"gets".to_vec()
        } else {
            b"get".to_vec()
        };
        for (_, k) in keys {
            line.push(b' ');
            line.extend_from_slice(k.as_bytes());
        }
        line.extend_from_slice(b"\r\n");
        let via = if gets { Via::McGets } else { Via::McGet };
        let inv = Instant::now();
        let res = mc.mc_values(&line);
        let opened = mc.opened;
        let mut cas_ids = vec![None; keys.len()];
        match res {
            Err(e) => {
                for (k, _) in keys {
                    let o = Outcome::Error(e.clone());
                    Self::record(ops, t, req, *k, OpKind::Read(via), inv, opened, o);
                }
            }
            Ok(values) => {
                let mut by: HashMap<&[u8], (u32, u64, &[u8])> = HashMap::new();
                let mut bad = None;
                for (key, flags, cas, data) in &values {
                    if by
                        .insert(key.as_slice(), (*flags, *cas, data.as_slice()))
                        .is_some()
                    {
                        bad = Some(format!(
                            "key {} returned twice",
                            String::from_utf8_lossy(key)
                        ));
                    }
                    if !keys.iter().any(|(_, k)| k.as_bytes() == key.as_slice()) {
                        bad = Some(format!(
                            "key {} was not asked for",
                            String::from_utf8_lossy(key)
                        ));
                    }
                }
                for (i, (k, name)) in keys.iter().enumerate() {
                    let o = if let Some(b) = &bad {
                        Outcome::Error(b.clone())
                    } else {
                        match by.get(name.as_bytes()) {
                            None => Outcome::Read(Obs::Absent),
                            Some((flags, cas, data)) => match parse_u64(data) {
                                Some(value) => {
                                    cas_ids[i] = Some(*cas);
                                    Outcome::Read(Obs::Present {
                                        value,
                                        flags: Some(*flags),
                                    })
                                }
                                None => Outcome::Error(format!(
                                    "value is not a number: {}",
                                    crate::escape(data)
                                )),
                            },
                        }
                    };
                    Self::record(ops, t, req, *k, OpKind::Read(via), inv, opened, o);
                }
            }
        }
        cas_ids
    }

    fn mc_store(
        &mut self,
        ops: &mut Vec<Op>,
        t: usize,
        req: u64,
        k: u32,
        kind: OpKind,
        line: Vec<u8>,
    ) -> Outcome {
        let Some(mc) = self.mc.as_mut() else {
            return Outcome::Error("no memcache port".into());
        };
        let inv = Instant::now();
        let outcome = match mc.mc_line(&line) {
            Err(e) => Outcome::Error(e),
            Ok(l) => match (kind, l.as_slice()) {
                (OpKind::McSet { .. } | OpKind::Cas { .. }, b"STORED") => Outcome::Stored,
                (OpKind::Cas { .. }, b"EXISTS") => Outcome::CasExists,
                (OpKind::Cas { .. }, b"NOT_FOUND") => Outcome::CasNotFound,
                (OpKind::McDelete, b"DELETED") => Outcome::Deleted(true),
                (OpKind::McDelete, b"NOT_FOUND") => Outcome::Deleted(false),
                (_, other) => Outcome::Error(format!("reply {}", crate::escape(other))),
            },
        };
        Self::record(ops, t, req, k, kind, inv, mc.opened, outcome.clone());
        outcome
    }

    fn mc_set(
        &mut self,
        ops: &mut Vec<Op>,
        t: usize,
        req: u64,
        k: u32,
        key: &str,
        v: u64,
    ) -> Outcome {
        let flags = flags_for(v);
        let vs = v.to_string();
        let line = format!("set {key} {flags} 0 {}\r\n{vs}\r\n", vs.len()).into_bytes();
        self.mc_store(ops, t, req, k, OpKind::McSet { value: v, flags }, line)
    }

    #[allow(clippy::too_many_arguments)]
    fn mc_cas(
        &mut self,
        ops: &mut Vec<Op>,
        t: usize,
        req: u64,
        k: u32,
        key: &str,
        v: u64,
        id: u64,
    ) -> Outcome {
        let flags = flags_for(v);
        let vs = v.to_string();
        let line = format!("cas {key} {flags} 0 {} {id}\r\n{vs}\r\n", vs.len()).into_bytes();
        self.mc_store(ops, t, req, k, OpKind::Cas { value: v, flags }, line)
    }

    fn mc_delete(&mut self, ops: &mut Vec<Op>, t: usize, req: u64, k: u32, key: &str) -> Outcome {
        let line = format!("delete {key}\r\n").into_bytes();
        self.mc_store(ops, t, req, k, OpKind::McDelete, line)
    }
}

// ---------------------------------------------------------------------------------------
// load driver

/// What [`Load::start`] runs.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// RESP port (a proxy's Redis pool, or a server).
    pub resp_port: u16,
    /// memcache port over the same keyspace; `None`: RESP only.
    pub mc_port: Option<u16>,
    pub writers: usize,
    pub readers: usize,
    /// Number of checked keys (see [`key_names`]).
    pub keys: usize,
    /// Key name prefix (keep it apart from other keys of the test).
    pub prefix: String,
    /// Every `tagged_every`-th key has a `{hash tag}` shared with other keys (0: none).
    pub tagged_every: usize,
    /// Hard bound on the run, whatever the stop flag says.
    pub max_duration: Duration,
    /// Hard bound on requests per thread.
    pub max_ops_per_thread: u64,
    /// Reply timeout of every request (a timeout is a client-visible error).
    pub timeout: Duration,
    /// Pause after each request (keeps a 2-core machine responsive; 0: none).
    pub pause: Duration,
    /// Pause after a failed request (reconnect back-off while a process is down).
    pub error_pause: Duration,
    /// `WAIT n ms` after every RESP write: a write counts as acknowledged only when `n`
    /// replicas have it (an unreplicated one is an error). Writers then use RESP only.
    pub wait_replicas: Option<(u32, u64)>,
    pub seed: u64,
}

impl LoadConfig {
    /// Defaults: 2 writers, 2 readers, 240 keys (every 4th tagged), 90 s / 200,000
    /// requests per thread at most, 5 s reply timeout, 200 µs between requests.
    pub fn new(resp_port: u16, mc_port: Option<u16>) -> LoadConfig {
        LoadConfig {
            resp_port,
            mc_port,
            writers: 2,
            readers: 2,
            keys: 240,
            prefix: "hk".into(),
            tagged_every: 4,
            max_duration: Duration::from_secs(90),
            max_ops_per_thread: 200_000,
            timeout: Duration::from_secs(5),
            pause: Duration::from_micros(200),
            error_pause: Duration::from_millis(20),
            wait_replicas: None,
            seed: 0x5eed,
        }
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The checked keys: `<prefix>:<i>:<hex>` (the hex part spreads short keys over the
/// ring: twemproxy's fnv1a_64 puts similar short keys together), and every
/// `tagged_every`-th one `{<prefix>g<g>-<hex>}:<i>` with 8 tag groups (keys of a group
/// live on one server and move together).
pub fn key_names(prefix: &str, n: usize, tagged_every: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let salt = splitmix(i as u64 ^ 0x6b65_7973) & 0xffff_ffff;
            if tagged_every > 0 && i % tagged_every == 0 {
                let g = (i / tagged_every) % 8;
                let gsalt = splitmix(g as u64 ^ 0x0074_6167) & 0xff_ffff;
                format!("{{{prefix}g{g}-{gsalt:06x}}}:{i}")
            } else {
                format!("{prefix}:{i}:{salt:08x}")
            }
        })
        .collect()
}

/// What a writer knows about one of its keys.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Belief {
    /// After a failed or surprising op: the next write is a blind `SET`.
    Unknown,
    Absent,
    Present(u64),
}

/// A running workload; [`Load::stop`] ends it and returns the history.
pub struct Load {
    t0: Instant,
    keys: Arc<Vec<String>>,
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    threads: Vec<JoinHandle<Vec<Op>>>,
}

struct Shared {
    cfg: LoadConfig,
    keys: Arc<Vec<String>>,
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    deadline: Instant,
}

impl Shared {
    fn running(&self, n: u64) -> bool {
        !self.stop.load(Ordering::Relaxed)
            && n < self.cfg.max_ops_per_thread
            && Instant::now() < self.deadline
    }

    fn after(&self, failed: bool) {
        self.ops.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(self.cfg.error_pause);
        } else if !self.cfg.pause.is_zero() {
            std::thread::sleep(self.cfg.pause);
        }
    }
}

fn failed(ops: &[Op], from: usize) -> bool {
    ops[from..]
        .iter()
        .any(|o| matches!(o.outcome, Outcome::Error(_)))
}

fn writer(sh: &Shared, w: usize) -> Vec<Op> {
    let cfg = &sh.cfg;
    let mut rng = SmallRng::seed_from_u64(splitmix(cfg.seed ^ (w as u64 + 1)));
    let mut c = Client::new(cfg.resp_port, cfg.mc_port, cfg.timeout);
    c.wait = cfg.wait_replicas;
    let mc = cfg.mc_port.is_some() && cfg.wait_replicas.is_none();
    let mine: Vec<usize> = (0..sh.keys.len())
        .filter(|i| i % cfg.writers == w)
        .collect();
    let mut belief = vec![Belief::Absent; sh.keys.len()];
    let mut counter = vec![0u64; sh.keys.len()];
    let mut ops = Vec::new();
    let mut req = 0u64;
    if mine.is_empty() {
        return ops;
    }
    while sh.running(req) {
        req += 1;
        let ki = mine[rng.gen_range(0..mine.len())];
        let key = sh.keys[ki].as_str();
        let k = ki as u32;
        let next = counter[ki] + 1;
        let roll = rng.gen_range(0..100);
        let start = ops.len();
        let t = w;
        // Pick by what the writer knows; every outcome updates it.
        let new_belief = match belief[ki] {
            Belief::Unknown => {
                counter[ki] = next;
                let o = if mc && roll < 40 {
                    c.mc_set(&mut ops, t, req, k, key, next)
                } else {
                    c.set(&mut ops, t, req, k, key, next)
                };
                match o {
                    Outcome::Stored => Belief::Present(next),
                    _ => Belief::Unknown,
                }
            }
            Belief::Absent if roll < 45 || (!mc && roll < 75) => {
                counter[ki] = next;
                match c.set(&mut ops, t, req, k, key, next) {
                    Outcome::Stored => Belief::Present(next),
                    _ => Belief::Unknown,
                }
            }
            Belief::Absent if roll < 75 => {
                counter[ki] = next;
                match c.mc_set(&mut ops, t, req, k, key, next) {
                    Outcome::Stored => Belief::Present(next),
                    _ => Belief::Unknown,
                }
            }
            // DEL / EXPIRE of an absent key: a resurrection shows in the reply.
            Belief::Absent if roll < 88 => match c.del(&mut ops, t, req, k, key) {
                Outcome::Int(_) => Belief::Absent,
                _ => Belief::Unknown,
            },
            Belief::Absent => match c.expire(&mut ops, t, req, k, key) {
                Outcome::Int(0) => Belief::Absent,
                _ => Belief::Unknown,
            },
            Belief::Present(_) if roll < 18 => {
                counter[ki] = next;
                match c.set(&mut ops, t, req, k, key, next) {
                    Outcome::Stored => Belief::Present(next),
                    _ => Belief::Unknown,
                }
            }
            Belief::Present(_) if roll < 32 && mc => {
                counter[ki] = next;
                match c.mc_set(&mut ops, t, req, k, key, next) {
                    Outcome::Stored => Belief::Present(next),
                    _ => Belief::Unknown,
                }
            }
            Belief::Present(cur) if roll < 55 => match c.incr(&mut ops, t, req, k, key) {
                Outcome::Int(r) if r > 0 => {
                    counter[ki] = counter[ki].max(r as u64);
                    if r as u64 == cur + 1 {
                        Belief::Present(cur + 1)
                    } else {
                        Belief::Unknown
                    }
                }
                _ => {
                    // Whatever happened, never reuse the value INCR may have made.
                    counter[ki] = counter[ki].max(cur + 1);
                    Belief::Unknown
                }
            },
            Belief::Present(_) if roll < 64 || (!mc && roll < 70) => {
                match c.del(&mut ops, t, req, k, key) {
                    Outcome::Int(_) => Belief::Absent,
                    _ => Belief::Unknown,
                }
            }
            Belief::Present(_) if roll < 70 => match c.mc_delete(&mut ops, t, req, k, key) {
                Outcome::Deleted(_) => Belief::Absent,
                _ => Belief::Unknown,
            },
            Belief::Present(cur) if roll < 82 || !mc => match c.expire(&mut ops, t, req, k, key) {
                Outcome::Int(1) => Belief::Present(cur),
                Outcome::Int(_) => Belief::Absent,
                _ => Belief::Unknown,
            },
            Belief::Present(cur) => {
                // gets + cas: the id must still be valid wherever the key lives now.
                let ids = c.mc_get(&mut ops, t, req, &[(k, key)], true);
                let seen = ops.last().map(|o| o.outcome.clone());
                match (ids[0], seen) {
                    (Some(id), Some(Outcome::Read(Obs::Present { value, .. }))) if value == cur => {
                        counter[ki] = next;
                        match c.mc_cas(&mut ops, t, req, k, key, next, id) {
                            Outcome::Stored => Belief::Present(next),
                            _ => Belief::Unknown,
                        }
                    }
                    (_, Some(Outcome::Read(Obs::Present { value, .. }))) => {
                        counter[ki] = counter[ki].max(value);
                        Belief::Unknown
                    }
                    _ => Belief::Unknown,
                }
            }
        };
        belief[ki] = new_belief;
        sh.after(failed(&ops, start));
    }
    ops
}

fn reader(sh: &Shared, r: usize) -> Vec<Op> {
    let cfg = &sh.cfg;
    let thread = cfg.writers + r;
    let mut rng = SmallRng::seed_from_u64(splitmix(cfg.seed ^ 0xdead_0000 ^ r as u64));
    let mut c = Client::new(cfg.resp_port, cfg.mc_port, cfg.timeout);
    let mc = cfg.mc_port.is_some();
    let n = sh.keys.len();
    let mut ops = Vec::new();
    let mut req = 0u64;
    if n == 0 {
        return ops;
    }
    while sh.running(req) {
        req += 1;
        let start = ops.len();
        let roll = rng.gen_range(0..100);
        let pick = |rng: &mut SmallRng, m: usize| -> Vec<(u32, &str)> {
            let mut v: Vec<(u32, &str)> = Vec::with_capacity(m);
            while v.len() < m.min(n) {
                let i = rng.gen_range(0..n);
                if !v.iter().any(|(k, _)| *k as usize == i) {
                    v.push((i as u32, sh.keys[i].as_str()));
                }
            }
            v
        };
        if roll < 30 || (!mc && roll < 60) {
            let ks = pick(&mut rng, 1);
            c.get(&mut ops, thread, req, ks[0].0, ks[0].1);
        } else if roll < 50 || (!mc && roll < 90) {
            let m = rng.gen_range(2..=6);
            let ks = pick(&mut rng, m);
            c.mget(&mut ops, thread, req, &ks);
        } else if roll < 90 && mc {
            let m = if roll < 70 { 1 } else { rng.gen_range(2..=6) };
            let ks = pick(&mut rng, m);
            c.mc_get(&mut ops, thread, req, &ks, roll % 2 == 0);
        } else {
            let ks = pick(&mut rng, 1);
            c.ttl(&mut ops, thread, req, ks[0].0, ks[0].1);
        }
        sh.after(failed(&ops, start));
    }
    ops
}

impl Load {
    /// Starts the writer and reader threads.
    pub fn start(cfg: LoadConfig) -> Load {
        assert!(cfg.writers > 0, "at least one writer");
        let t0 = Instant::now();
        let keys = Arc::new(key_names(&cfg.prefix, cfg.keys, cfg.tagged_every));
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let shared = Arc::new(Shared {
            deadline: t0 + cfg.max_duration,
            cfg: cfg.clone(),
            keys: keys.clone(),
            stop: stop.clone(),
            ops: ops.clone(),
            errors: errors.clone(),
        });
        let mut threads = Vec::new();
        for w in 0..cfg.writers {
            let sh = shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("hist-writer-{w}"))
                    .spawn(move || writer(&sh, w))
                    .expect("spawn writer"),
            );
        }
        for r in 0..cfg.readers {
            let sh = shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("hist-reader-{r}"))
                    .spawn(move || reader(&sh, r))
                    .expect("spawn reader"),
            );
        }
        Load {
            t0,
            keys,
            stop,
            ops,
            errors,
            threads,
        }
    }

    /// When the load started: the reference of the `+s.sss` times in reports.
    pub fn t0(&self) -> Instant {
        self.t0
    }

    /// The checked keys.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// Requests completed so far (all threads).
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }

    /// Requests that failed so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Waits until `n` more requests completed than when called (the load is really
    /// running); panics after `timeout`.
    pub fn wait_for_ops(&self, n: u64, timeout: Duration) {
        let base = self.ops();
        crate::proxy::wait_until(&format!("{n} requests of the load"), timeout, || {
            self.ops() >= base + n
        });
    }

    /// Stops the threads (each finishes its current request, bounded by the reply
    /// timeout) and returns everything they recorded.
    pub fn stop(mut self) -> History {
        self.stop.store(true, Ordering::Relaxed);
        let mut h = History::new(self.t0, self.keys.to_vec());
        for t in std::mem::take(&mut self.threads) {
            match t.join() {
                Ok(ops) => h.ops.extend(ops),
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        h
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        // A test that panics without calling stop(): let the threads end on their own.
        self.stop.store(true, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------------
// unit tests: synthetic histories

#[cfg(test)]
mod tests {
    use super::*;

    struct B {
        h: History,
        req: u64,
    }

    impl B {
        fn new(keys: &[&str]) -> B {
            let t0 = Instant::now();
            B {
                h: History::new(t0, keys.iter().map(|k| k.to_string()).collect()),
                req: 0,
            }
        }

        fn at(&self, ms: u64) -> Instant {
            self.h.t0 + Duration::from_millis(ms)
        }

        /// An op of `thread` on key index `k` during `[a, b]` ms.
        fn op(&mut self, thread: usize, k: u32, a: u64, b: u64, kind: OpKind, outcome: Outcome) {
            self.req += 1;
            let op = Op {
                thread,
                req: self.req,
                key: k,
                kind,
                inv: self.at(a),
                end: self.at(b),
                conn_opened: self.h.t0,
                outcome,
            };
            self.h.ops.push(op);
        }

        fn w(&mut self, k: u32, a: u64, b: u64, kind: OpKind, outcome: Outcome) {
            self.op(0, k, a, b, kind, outcome);
        }

        fn read(&mut self, k: u32, a: u64, b: u64, via: Via, seen: Obs) {
            self.op(1, k, a, b, OpKind::Read(via), Outcome::Read(seen));
        }

        fn check(&self) -> Report {
            check(&self.h, &CheckOptions::default())
        }
    }

    fn v(value: u64) -> Obs {
        Obs::Present { value, flags: None }
    }

    fn vf(value: u64, flags: u32) -> Obs {
        Obs::Present {
            value,
            flags: Some(flags),
        }
    }

    fn only(r: &Report, kind: ViolationKind) {
        assert!(
            !r.violations.is_empty() && r.violations.iter().all(|x| x.kind == kind),
            "expected only {kind:?} violations, got:\n{r}"
        );
    }

    /// A history exercising every op kind, with reads concurrent with writes that see
    /// either side, passes.
    #[test]
    fn valid_history_passes() {
        let mut b = B::new(&["a", "b"]);
        b.read(0, 0, 1, Via::Get, Obs::Absent);
        b.w(0, 2, 4, OpKind::Set { value: 1 }, Outcome::Stored);
        // Concurrent with the SET: old or new.
        b.read(0, 1, 3, Via::Get, Obs::Absent);
        b.read(0, 3, 5, Via::Mget, v(1));
        b.w(0, 10, 12, OpKind::Incr, Outcome::Int(2));
        b.read(0, 11, 13, Via::Get, v(1));
        b.read(0, 11, 13, Via::Get, v(2));
        b.read(0, 13, 14, Via::McGet, vf(2, 0));
        b.w(0, 20, 21, OpKind::Expire, Outcome::Int(1));
        b.op(1, 0, 22, 23, OpKind::Ttl, Outcome::Int(99_999));
        b.w(
            0,
            30,
            32,
            OpKind::McSet {
                value: 3,
                flags: 77,
            },
            Outcome::Stored,
        );
        b.op(1, 0, 33, 34, OpKind::Ttl, Outcome::Int(-1));
        b.read(0, 33, 34, Via::McGets, vf(3, 77));
        b.read(0, 33, 34, Via::Get, v(3));
        b.w(0, 35, 36, OpKind::Incr, Outcome::Int(4));
        b.read(0, 37, 38, Via::McGet, vf(4, 77)); // INCR keeps the flags
        b.w(
            0,
            40,
            41,
            OpKind::Read(Via::McGets),
            Outcome::Read(vf(4, 77)),
        );
        b.w(
            0,
            42,
            43,
            OpKind::Cas { value: 5, flags: 9 },
            Outcome::Stored,
        );
        b.read(0, 44, 45, Via::McGet, vf(5, 9));
        b.w(0, 50, 51, OpKind::Del, Outcome::Int(1));
        b.read(0, 50, 52, Via::Get, v(5)); // concurrent with the DEL
        b.read(0, 52, 53, Via::Get, Obs::Absent);
        b.w(0, 54, 55, OpKind::Del, Outcome::Int(0));
        b.w(0, 56, 57, OpKind::Expire, Outcome::Int(0));
        b.w(
            0,
            58,
            59,
            OpKind::McSet { value: 6, flags: 1 },
            Outcome::Stored,
        );
        b.w(0, 60, 61, OpKind::McDelete, Outcome::Deleted(true));
        b.op(1, 0, 62, 63, OpKind::Ttl, Outcome::Int(-2));
        // Key b: a different writer; a read spanning several writes may see any of them.
        b.op(2, 1, 0, 1, OpKind::Set { value: 10 }, Outcome::Stored);
        b.op(2, 1, 2, 3, OpKind::Set { value: 11 }, Outcome::Stored);
        b.op(2, 1, 4, 5, OpKind::Set { value: 12 }, Outcome::Stored);
        b.read(1, 0, 6, Via::Get, v(10));
        b.read(1, 2, 6, Via::Get, v(11));
        b.read(1, 0, 1, Via::Get, Obs::Absent);
        let r = b.check();
        assert!(r.is_clean(), "{r}");
        assert_eq!(r.writes, 14);
        assert_eq!(r.acked_writes, 14);
    }

    #[test]
    fn lost_write_is_caught() {
        let mut b = B::new(&["a"]);
        b.w(0, 0, 5, OpKind::Set { value: 1 }, Outcome::Stored);
        b.read(0, 10, 12, Via::Get, Obs::Absent);
        let r = b.check();
        only(&r, ViolationKind::LostWrite);
        assert!(r.to_string().contains("absent"), "{r}");
    }

    #[test]
    fn lost_write_shows_in_write_replies() {
        // INCR restarting from 1, EXPIRE and DEL finding nothing: the SET was lost.
        for (kind, outcome) in [
            (OpKind::Incr, Outcome::Int(1)),
            (OpKind::Expire, Outcome::Int(0)),
            (OpKind::Del, Outcome::Int(0)),
            (OpKind::McDelete, Outcome::Deleted(false)),
            (OpKind::Cas { value: 2, flags: 3 }, Outcome::CasNotFound),
        ] {
            let mut b = B::new(&["a"]);
            b.w(0, 0, 5, OpKind::Set { value: 7 }, Outcome::Stored);
            b.w(0, 10, 12, kind, outcome);
            only(&b.check(), ViolationKind::LostWrite);
        }
        // INCR on an older value.
        let mut b = B::new(&["a"]);
        b.w(0, 0, 1, OpKind::Set { value: 7 }, Outcome::Stored);
        b.w(0, 2, 3, OpKind::Set { value: 8 }, Outcome::Stored);
        b.w(0, 4, 5, OpKind::Incr, Outcome::Int(8));
        only(&b.check(), ViolationKind::LostWrite);
    }

    #[test]
    fn stale_read_is_caught() {
        let mut b = B::new(&["a"]);
        b.w(0, 0, 5, OpKind::Set { value: 1 }, Outcome::Stored);
        b.w(0, 10, 15, OpKind::Set { value: 2 }, Outcome::Stored);
        b.read(0, 20, 25, Via::Get, v(1));
        let r = b.check();
        only(&r, ViolationKind::StaleRead);
        // The same value read concurrently with the second SET is fine.
        let mut b = B::new(&["a"]);
        b.w(0, 0, 5, OpKind::Set { value: 1 }, Outcome::Stored);
        b.w(0, 10, 15, OpKind::Set { value: 2 }, Outcome::Stored);
        b.read(0, 14, 25, Via::Get, v(1));
        assert!(b.check().is_clean());
    }

    #[test]
    fn resurrection_is_caught() {
        let mut b = B::new(&["a"]);
        b.w(0, 0, 5, OpKind::Set { value: 1 }, Outcome::Stored);
        b.w(0, 10, 15, OpKind::Del, Outcome::Int(1));
        b.read(0, 20, 25, Via::McGet, vf(1, 0));
        let r = b.check();
        only(&r, ViolationKind::Resurrection);
        assert!(r.to_string().contains("deleted by op #1"), "{r}");
        // DEL / EXPIRE finding a key that should be gone.
        for (kind, outcome) in [
            (OpKind::Del, Outcome::Int(1)),
            (OpKind::Expire, Outcome::Int(1)),
            (OpKind::McDelete, Outcome::Deleted(true)),
        ] {
            let mut b = B::new(&["a"]);
            b.w(0, 0, 5, OpKind::Set { value: 1 }, Outcome::Stored);
            b.w(0, 10, 15, OpKind::Del, Outcome::Int(1));
            b.w(0, 20, 25, kind, outcome);
            only(&b.check(), ViolationKind::Resurrection);
        }
    }

    #[test]
    fn error_reply_is_caught_unless_excused() {
        let mut b = B::new(&["a", "b"]);
        b.w(0, 0, 5, OpKind::Set { value: 1 }, Outcome::Stored);
        b.op(
            1,
            0,
            10,
            11,
            OpKind::Read(Via::Get),
            Outcome::Error("error reply -ERR backend down".into()),
        );
        b.w(
            0,
            20,
            21,
            OpKind::Set { value: 2 },
            Outcome::Error("timeout".into()),
        );
        // The failed SET may or may not have happened: both values are fine later.
        b.read(0, 30, 31, Via::Get, v(1));
        b.read(0, 32, 33, Via::Get, v(2));
        let r = b.check();
        only(&r, ViolationKind::ClientError);
        assert_eq!(r.violations.len(), 2, "{r}");
        assert!(r.to_string().contains("-ERR backend down"), "{r}");

        let window = |b: &B, keys: Option<&[&str]>| CheckOptions {
            tolerate: vec![Window {
                keys: keys.map(|ks| ks.iter().map(|k| k.to_string()).collect()),
                ..Window::new(b.at(9), b.at(25), "outage")
            }],
        };
        let r = check(&b.h, &window(&b, None));
        assert!(r.is_clean(), "{r}");
        assert_eq!(r.excused_errors, 2);
        let r = check(&b.h, &window(&b, Some(&["a"])));
        assert!(r.is_clean(), "{r}");
        // Only key b is excused: the errors on a stay violations.
        let r = check(&b.h, &window(&b, Some(&["b"])));
        assert_eq!(r.count(ViolationKind::ClientError), 2, "{r}");
        // An old connection's first use after the window is excused only when the
        // window says old connections broke.
        let mut b = B::new(&["a"]);
        b.op(
            1,
            0,
            50,
            51,
            OpKind::Read(Via::Get),
            Outcome::Error("connection closed by peer".into()),
        );
        let mut opts = window(&b, None);
        assert_eq!(check(&b.h, &opts).count(ViolationKind::ClientError), 1);
        opts.tolerate[0].stale_connections = true;
        assert!(check(&b.h, &opts).is_clean());
    }

    #[test]
    fn a_failed_write_never_becomes_the_base() {
        // After a failed SET 2 and an acknowledged SET 3, seeing 2 is stale... but 1 too.
        let mut b = B::new(&["a"]);
        b.w(0, 0, 1, OpKind::Set { value: 1 }, Outcome::Stored);
        b.w(
            0,
            2,
            3,
            OpKind::Set { value: 2 },
            Outcome::Error("x".into()),
        );
        b.w(0, 4, 5, OpKind::Set { value: 3 }, Outcome::Stored);
        b.read(0, 6, 7, Via::Get, v(2));
        b.read(0, 6, 7, Via::Get, v(1));
        let r = check(
            &b.h,
            &CheckOptions {
                tolerate: vec![Window::new(b.at(0), b.at(3), "x")],
            },
        );
        assert_eq!(r.count(ViolationKind::StaleRead), 2, "{r}");
        assert_eq!(r.violations.len(), 2, "{r}");
    }

    #[test]
    fn flags_ttl_cas_phantom_and_future_are_caught() {
        let mut b = B::new(&["a"]);
        b.w(
            0,
            0,
            1,
            OpKind::McSet { value: 1, flags: 5 },
            Outcome::Stored,
        );
        b.read(0, 2, 3, Via::McGet, vf(1, 6));
        only(&b.check(), ViolationKind::Flags);

        let mut b = B::new(&["a"]);
        b.w(0, 0, 1, OpKind::Set { value: 1 }, Outcome::Stored);
        b.read(0, 2, 3, Via::McGet, vf(1, 42)); // RESP SET leaves flags 0
        only(&b.check(), ViolationKind::Flags);

        let mut b = B::new(&["a"]);
        b.w(0, 0, 1, OpKind::Set { value: 1 }, Outcome::Stored);
        b.w(0, 2, 3, OpKind::Expire, Outcome::Int(1));
        b.op(1, 0, 4, 5, OpKind::Ttl, Outcome::Int(-1)); // the TTL did not move
        only(&b.check(), ViolationKind::Ttl);

        let mut b = B::new(&["a"]);
        b.w(0, 0, 1, OpKind::Set { value: 1 }, Outcome::Stored);
        b.op(1, 0, 4, 5, OpKind::Ttl, Outcome::Int(500)); // a TTL appeared
        only(&b.check(), ViolationKind::Ttl);

        let mut b = B::new(&["a"]);
        b.w(0, 0, 1, OpKind::Set { value: 1 }, Outcome::Stored);
        b.w(0, 2, 3, OpKind::Read(Via::McGets), Outcome::Read(vf(1, 0)));
        b.w(
            0,
            4,
            5,
            OpKind::Cas { value: 2, flags: 3 },
            Outcome::CasExists,
        );
        only(&b.check(), ViolationKind::CasIdLost);

        let mut b = B::new(&["a"]);
        b.w(0, 0, 1, OpKind::Set { value: 1 }, Outcome::Stored);
        b.read(0, 2, 3, Via::Get, v(99));
        only(&b.check(), ViolationKind::Phantom);

        let mut b = B::new(&["a"]);
        b.read(0, 0, 1, Via::Get, v(1));
        b.w(0, 2, 3, OpKind::Set { value: 1 }, Outcome::Stored);
        only(&b.check(), ViolationKind::FutureRead);
    }

    #[test]
    fn harness_misuse_is_reported() {
        let mut b = B::new(&["a"]);
        b.op(0, 0, 0, 1, OpKind::Set { value: 1 }, Outcome::Stored);
        b.op(3, 0, 2, 3, OpKind::Set { value: 2 }, Outcome::Stored);
        only(&b.check(), ViolationKind::Harness);
        let mut b = B::new(&["a"]);
        b.w(0, 0, 1, OpKind::Set { value: 1 }, Outcome::Int(3));
        only(&b.check(), ViolationKind::Harness);
    }

    /// On a real server that loses data (FLUSHALL under load), the checker reports lost
    /// writes: it can fail on real histories, not only on synthetic ones.
    #[test]
    fn load_against_redis_catches_flushall() {
        let server = crate::servers::spawn_redis();
        let mut cfg = LoadConfig::new(server.resp_port(), None);
        cfg.keys = 40;
        cfg.max_duration = Duration::from_secs(20);
        let load = Load::start(cfg);
        load.wait_for_ops(2_000, Duration::from_secs(20));
        let mut c = crate::resp::RespConn::connect(server.resp_port());
        assert_eq!(c.call(&["FLUSHALL"]), b"+OK\r\n");
        load.wait_for_ops(2_000, Duration::from_secs(20));
        let mut h = load.stop();
        h.final_reads(server.resp_port(), None, Duration::from_secs(5));
        let r = check(&h, &CheckOptions::default());
        assert!(r.count(ViolationKind::LostWrite) > 0, "{r}");
        assert_eq!(r.count(ViolationKind::ClientError), 0, "{r}");
    }

    #[test]
    fn key_names_are_distinct_and_tagged() {
        let ks = key_names("hk", 100, 4);
        let set: HashSet<&String> = ks.iter().collect();
        assert_eq!(set.len(), 100);
        assert!(ks[0].starts_with("{hkg0-") && ks[4].starts_with("{hkg1-"));
        assert!(ks[1].starts_with("hk:1:"));
        assert!(ks.iter().all(|k| k.len() < 250 && !k.contains(' ')));
    }

    /// The driver against a real redis-server (RESP only): a correct server gives a clean
    /// history, and the final reads see every key's last acknowledged state.
    #[test]
    fn load_against_redis_is_clean() {
        let server = crate::servers::spawn_redis();
        let mut cfg = LoadConfig::new(server.resp_port(), None);
        cfg.keys = 40;
        cfg.max_duration = Duration::from_secs(20);
        let load = Load::start(cfg);
        load.wait_for_ops(3_000, Duration::from_secs(20));
        let mut h = load.stop();
        h.final_reads(server.resp_port(), None, Duration::from_secs(5));
        let r = check(&h, &CheckOptions::default());
        r.assert_clean("redis-server");
        assert!(r.acked_writes > 500 && r.reads > 1_000, "{r}");
        // The checker is not vacuous on this history: a final read that misses a present
        // key, or sees another value, is caught.
        let i = h
            .ops
            .iter()
            .position(|o| {
                o.thread == FINAL_THREAD && matches!(o.outcome, Outcome::Read(Obs::Present { .. }))
            })
            .expect("some key is present at the end");
        let mut broken = h.clone();
        broken.ops[i].outcome = Outcome::Read(Obs::Absent);
        let r = check(&broken, &CheckOptions::default());
        assert_eq!(r.count(ViolationKind::LostWrite), 1, "{r}");
        let mut broken = h.clone();
        broken.ops[i].outcome = Outcome::Read(v(u64::MAX - 1));
        let r = check(&broken, &CheckOptions::default());
        assert_eq!(r.count(ViolationKind::Phantom), 1, "{r}");
    }
}
