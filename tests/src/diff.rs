//! Differential runners: the same cases go to the reference server and to the target, one
//! case at a time on one connection each, and the replies are compared.

use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::time::Duration;

use crate::escape;
use crate::memcache::{expected_frames, split_request, Frames, McConn, McReply, Seg};
use crate::resp::{encode_command, parse, Read1, RespConn, Value};
use crate::servers::{
    spawn_memcache_target, spawn_memcached, spawn_redis, spawn_resp_target, ServerProc,
};

/// A custom comparison of two raw RESP replies (reference, target).
pub type RespCheck = Rc<dyn Fn(&[u8], &[u8]) -> Result<(), String>>;

/// A custom comparison of two memcache responses (reference, target).
pub type McCheck = Rc<dyn Fn(&McReply, &McReply) -> Result<(), String>>;

/// How two RESP replies are compared.
#[derive(Clone)]
pub enum Cmp {
    /// Byte for byte.
    Exact,
    /// Both integers within ±n (else byte for byte). For TTLs and times.
    IntWithin(i64),
    /// Same RESP type byte only.
    SameType,
    /// Same type tree and aggregate sizes; scalar contents ignored.
    Structure,
    /// Aggregates compared as multisets of (encoded) elements.
    Unordered,
    /// Map-like reply (RESP3 map or RESP2 k,v array): same keys in the same order, values of
    /// the same type; values themselves ignored (HELLO).
    MapKeys,
    /// Documented divergence: the target must either match or reply with an error. The
    /// reason is printed when the divergence is observed.
    Documented(&'static str),
    /// Anything else (equal replies always pass).
    Custom(RespCheck),
    /// A check of the target's reply that runs even when it equals the reference's
    /// (e.g. "the proxy must refuse this", where the backend would answer as the
    /// reference does).
    Target(RespCheck),
}

impl Cmp {
    fn name(&self) -> String {
        match self {
            Cmp::Exact => "exact".into(),
            Cmp::IntWithin(n) => format!("integer within ±{n}"),
            Cmp::SameType => "same type".into(),
            Cmp::Structure => "same structure".into(),
            Cmp::Unordered => "unordered".into(),
            Cmp::MapKeys => "same map keys".into(),
            Cmp::Documented(r) => format!("documented exception ({r})"),
            Cmp::Custom(_) => "custom".into(),
            Cmp::Target(_) => "target check".into(),
        }
    }

    /// `Ok(Some(note))` = accepted as a documented exception.
    fn check(&self, a: &[u8], b: &[u8]) -> Result<Option<String>, String> {
        // A target check always runs: it demands a reply the reference does not give
        // (a proxy's CROSSSLOT), which a backend mirroring the reference would
        // otherwise pass by being equal to it.
        if a == b && !matches!(self, Cmp::Target(_)) {
            return Ok(None);
        }
        let parsed = || match (parse(a), parse(b)) {
            (Some(x), Some(y)) => Ok((x, y)),
            _ => Err("unparsable reply".to_string()),
        };
        match self {
            Cmp::Exact => Err("bytes differ".into()),
            Cmp::IntWithin(n) => {
                let (x, y) = parsed()?;
                match (x.as_int(), y.as_int()) {
                    (Some(p), Some(q)) if (p - q).abs() <= *n => Ok(None),
                    (Some(p), Some(q)) => Err(format!("{p} and {q} differ by more than {n}")),
                    _ => Err("bytes differ (not both integers)".into()),
                }
            }
            Cmp::SameType => {
                if a.first() == b.first() {
                    Ok(None)
                } else {
                    Err("different reply types".into())
                }
            }
            Cmp::Structure => {
                let (x, y) = parsed()?;
                if x.same_structure(&y) {
                    Ok(None)
                } else {
                    Err("different structure".into())
                }
            }
            Cmp::Unordered => {
                let (x, y) = parsed()?;
                let enc = |v: &Value| -> Option<Vec<Vec<u8>>> {
                    let mut items: Vec<Vec<u8>> = v
                        .elements()?
                        .iter()
                        .map(|e| {
                            let mut o = Vec::new();
                            e.encode(&mut o);
                            o
                        })
                        .collect();
                    items.sort();
                    Some(items)
                };
                if x.kind() == y.kind() && enc(&x).is_some() && enc(&x) == enc(&y) {
                    Ok(None)
                } else {
                    Err("different element multisets".into())
                }
            }
            Cmp::MapKeys => {
                let (x, y) = parsed()?;
                let (Some(p), Some(q)) = (x.elements(), y.elements()) else {
                    return Err("not aggregates".into());
                };
                if x.kind() != y.kind() || p.len() != q.len() {
                    return Err("different map type or size".into());
                }
                for (i, (e, f)) in p.iter().zip(q).enumerate() {
                    if i % 2 == 0 && e != f {
                        return Err(format!("key #{} differs", i / 2));
                    }
                    if i % 2 == 1 && e.kind() != f.kind() {
                        return Err(format!("value type for key #{} differs", i / 2));
                    }
                }
                Ok(None)
            }
            Cmp::Documented(reason) => {
                if b.first() == Some(&b'-') {
                    Ok(Some(format!("documented exception: {reason}")))
                } else {
                    Err(format!(
                        "documented exception ({reason}) expects an error reply"
                    ))
                }
            }
            Cmp::Custom(f) | Cmp::Target(f) => f(a, b).map(|_| None),
        }
    }
}

/// One step of a RESP differential case list.
#[derive(Clone)]
pub enum RespStep {
    /// Send bytes, read `replies` replies.
    Send(Vec<u8>, usize),
    /// Close and reopen both connections.
    Reconnect,
    /// Sleep (once, for both sides).
    Sleep(Duration),
    /// Iterate `SCAN 0 <args>` to the end; compare the key sets.
    ScanAll(Vec<Vec<u8>>),
}

/// A RESP differential case.
#[derive(Clone)]
pub struct RespCase {
    /// Printable description.
    pub label: String,
    /// What to do.
    pub step: RespStep,
    /// How to compare each reply.
    pub cmp: Cmp,
    /// The server must close the connection after the replies.
    pub closes: bool,
}

impl RespCase {
    /// A command sent as a multibulk array; one reply, compared exactly.
    pub fn cmd<A: AsRef<[u8]>>(args: &[A]) -> RespCase {
        let label = args
            .iter()
            .map(|a| escape(a.as_ref()))
            .collect::<Vec<_>>()
            .join(" ");
        RespCase {
            label,
            step: RespStep::Send(encode_command(args), 1),
            cmp: Cmp::Exact,
            closes: false,
        }
    }

    /// Raw bytes expecting `replies` replies.
    pub fn raw(bytes: impl Into<Vec<u8>>, replies: usize) -> RespCase {
        let bytes = bytes.into();
        RespCase {
            label: format!("raw {}", escape(&bytes)),
            step: RespStep::Send(bytes, replies),
            cmp: Cmp::Exact,
            closes: false,
        }
    }

    /// Reopen both connections.
    pub fn reconnect() -> RespCase {
        RespCase {
            label: "<reconnect>".into(),
            step: RespStep::Reconnect,
            cmp: Cmp::Exact,
            closes: false,
        }
    }

    /// Sleep for `ms` milliseconds.
    pub fn sleep(ms: u64) -> RespCase {
        RespCase {
            label: format!("<sleep {ms}ms>"),
            step: RespStep::Sleep(Duration::from_millis(ms)),
            cmp: Cmp::Exact,
            closes: false,
        }
    }

    /// Full SCAN iteration with extra arguments (`MATCH p`, `COUNT n`, `TYPE t`).
    pub fn scan_all(args: &[&str]) -> RespCase {
        RespCase {
            label: format!("<SCAN to completion {}>", args.join(" ")),
            step: RespStep::ScanAll(args.iter().map(|a| a.as_bytes().to_vec()).collect()),
            cmp: Cmp::Exact,
            closes: false,
        }
    }

    /// Sets the comparison mode.
    pub fn with(mut self, cmp: Cmp) -> RespCase {
        self.cmp = cmp;
        self
    }

    /// Integer within ±n.
    pub fn within(self, n: i64) -> RespCase {
        self.with(Cmp::IntWithin(n))
    }

    /// Unordered aggregate.
    pub fn unordered(self) -> RespCase {
        self.with(Cmp::Unordered)
    }

    /// Expect the server to close the connection afterwards.
    pub fn closes(mut self) -> RespCase {
        self.closes = true;
        self
    }
}

/// Shorthand for [`RespCase::cmd`] with `&str` arguments split on spaces.
pub fn c(cmdline: &str) -> RespCase {
    let args: Vec<&str> = cmdline.split(' ').filter(|s| !s.is_empty()).collect();
    RespCase::cmd(&args)
}

/// Result of one step on one side.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Replies(Vec<Read1>, Option<String>),
    Keys(Result<BTreeSet<Vec<u8>>, String>),
    Nothing,
}

fn show_outcome(o: &Outcome) -> String {
    match o {
        Outcome::Replies(rs, st) => {
            let mut s: Vec<String> = rs.iter().map(Read1::describe).collect();
            if let Some(st) = st {
                s.push(format!("[then {st}]"));
            }
            s.join("  |  ")
        }
        Outcome::Keys(Ok(k)) => {
            format!(
                "{} keys: {}",
                k.len(),
                k.iter().map(|k| escape(k)).collect::<Vec<_>>().join(" ")
            )
        }
        Outcome::Keys(Err(e)) => format!("error: {e}"),
        Outcome::Nothing => "-".into(),
    }
}

struct RespSide {
    /// The process when this side owns it (`None`: a target started elsewhere).
    server: Option<ServerProc>,
    port: u16,
    conn: RespConn,
}

impl RespSide {
    fn new(server: ServerProc) -> RespSide {
        let port = server.resp_port();
        let conn = RespConn::connect(port);
        RespSide {
            server: Some(server),
            port,
            conn,
        }
    }

    fn at_port(port: u16) -> RespSide {
        RespSide {
            server: None,
            port,
            conn: RespConn::connect(port),
        }
    }

    fn reconnect(&mut self) {
        self.conn = RespConn::connect(self.port);
    }

    fn step(&mut self, case: &RespCase) -> Outcome {
        match &case.step {
            RespStep::Send(bytes, n) => {
                self.conn.send(bytes);
                let mut replies = Vec::new();
                let mut dead = false;
                for _ in 0..*n {
                    let r = self.conn.read_reply();
                    dead = !matches!(r, Read1::Reply(_));
                    replies.push(r);
                    if dead {
                        break;
                    }
                }
                let state = case
                    .closes
                    .then(|| self.conn.closed_state(Duration::from_secs(2)));
                if dead || case.closes {
                    self.reconnect();
                }
                Outcome::Replies(replies, state)
            }
            RespStep::Reconnect => {
                self.reconnect();
                Outcome::Nothing
            }
            RespStep::Sleep(_) => Outcome::Nothing,
            RespStep::ScanAll(args) => Outcome::Keys(self.scan_all(args)),
        }
    }

    fn scan_all(&mut self, args: &[Vec<u8>]) -> Result<BTreeSet<Vec<u8>>, String> {
        let mut cursor = b"0".to_vec();
        let mut keys = BTreeSet::new();
        for _ in 0..10_000 {
            let mut cmd = vec![b"SCAN".to_vec(), cursor.clone()];
            cmd.extend(args.iter().cloned());
            let r = self.conn.cmd(&cmd);
            let Read1::Reply(bytes) = &r else {
                return Err(r.describe());
            };
            let v = parse(bytes).ok_or_else(|| escape(bytes))?;
            let bad = || format!("unexpected SCAN reply {}", escape(bytes));
            let parts = v.elements().ok_or_else(bad)?;
            if parts.len() != 2 {
                return Err(bad());
            }
            cursor = parts[0].as_bytes().ok_or_else(bad)?.to_vec();
            for k in parts[1].elements().ok_or_else(bad)? {
                keys.insert(k.as_bytes().ok_or_else(bad)?.to_vec());
            }
            if cursor == b"0" {
                return Ok(keys);
            }
        }
        Err("SCAN did not finish within 10000 calls".into())
    }
}

/// A reference redis-server and the RESP target, one connection to each.
pub struct RespPair {
    reference: RespSide,
    target: RespSide,
    /// Documented exceptions observed so far.
    pub notes: Vec<String>,
    /// Name of a target given by port (see [`RespPair::with_target_port`]).
    label: Option<&'static str>,
}

impl Default for RespPair {
    fn default() -> Self {
        Self::start()
    }
}

impl RespPair {
    /// Spawns both servers.
    pub fn start() -> RespPair {
        let (r, t) = std::thread::scope(|s| {
            let t = s.spawn(spawn_resp_target);
            let r = spawn_redis();
            (r, t.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
        });
        RespPair {
            reference: RespSide::new(r),
            target: RespSide::new(t),
            notes: Vec::new(),
            label: None,
        }
    }

    /// A fresh reference redis-server and a target that already runs on `127.0.0.1:port`
    /// (a proxy in front of several servers, say), named `label` in reports.
    pub fn with_target_port(port: u16, label: &'static str) -> RespPair {
        RespPair {
            reference: RespSide::new(spawn_redis()),
            target: RespSide::at_port(port),
            notes: Vec::new(),
            label: Some(label),
        }
    }

    /// Name of the target server (for reports).
    pub fn target_name(&self) -> &'static str {
        if let Some(l) = self.label {
            return l;
        }
        match &self.target.server {
            _ if crate::servers::target_is_reference() => "redis-server#2",
            Some(s) => s.name(),
            None => "target",
        }
    }

    /// The reference server's RESP port.
    pub fn reference_port(&self) -> u16 {
        self.reference.port
    }

    /// Runs `cases` and panics listing every mismatch, like [`diff_resp`] but on this pair
    /// (whose connections and data carry over from earlier calls).
    pub fn check(&mut self, name: &str, cases: &[RespCase]) {
        let mismatches = self.run(cases, usize::MAX);
        let notes = std::mem::take(&mut self.notes);
        finish(name, self.target_name(), cases.len(), mismatches, &notes);
    }

    /// Runs one case; returns a mismatch report.
    pub fn run_case(&mut self, idx: usize, case: &RespCase) -> Option<String> {
        let a = self.reference.step(case);
        let b = self.target.step(case);
        if let RespStep::Sleep(d) = case.step {
            std::thread::sleep(d);
        }
        if verbose() {
            eprintln!("#{idx} {} => {}", case.label, show_outcome(&a));
        }
        let problem = match (&a, &b) {
            (Outcome::Replies(ra, sa), Outcome::Replies(rb, sb)) => {
                let mut problem = None;
                for i in 0..ra.len().max(rb.len()) {
                    let res = match (ra.get(i), rb.get(i)) {
                        (Some(Read1::Reply(x)), Some(Read1::Reply(y))) => case.cmp.check(x, y),
                        (x, y) if x == y => Ok(None),
                        _ => Err("different outcome".into()),
                    };
                    match res {
                        Ok(Some(note)) => self
                            .notes
                            .push(format!("case #{idx} `{}`: {note}", case.label)),
                        Ok(None) => {}
                        Err(e) => {
                            problem = Some(format!("reply #{i}: {e}"));
                            break;
                        }
                    }
                }
                if problem.is_none() && sa != sb {
                    problem = Some(format!(
                        "connection afterwards: {} is {}, {} is {}",
                        "redis-server",
                        sa.as_deref().unwrap_or("-"),
                        self.target_name(),
                        sb.as_deref().unwrap_or("-")
                    ));
                }
                problem
            }
            _ if a == b => None,
            _ => Some("different results".into()),
        };
        let problem = problem?;
        let show = show_outcome;
        let sent = match &case.step {
            RespStep::Send(b, _) => escape(b),
            _ => "-".into(),
        };
        Some(format!(
            "case #{idx} `{}` ({}): {problem}\n    sent:          {sent}\n    redis-server:  {}\n    {:<14} {}",
            case.label,
            case.cmp.name(),
            show(&a),
            format!("{}:", self.target_name()),
            show(&b)
        ))
    }

    /// Runs `cases`, returning all mismatch reports (stops after `stop_after`).
    pub fn run(&mut self, cases: &[RespCase], stop_after: usize) -> Vec<String> {
        let mut out = Vec::new();
        for (i, case) in cases.iter().enumerate() {
            if let Some(m) = self.run_case(i, case) {
                out.push(m);
                if out.len() >= stop_after {
                    break;
                }
            }
        }
        out
    }
}

/// `SHOAL_DIFF_VERBOSE=1` prints every case and the reference reply.
fn verbose() -> bool {
    std::env::var_os("SHOAL_DIFF_VERBOSE").is_some_and(|v| v != "0")
}

fn finish(name: &str, target: &str, total: usize, mismatches: Vec<String>, notes: &[String]) {
    for n in notes {
        eprintln!("[{name}] {n}");
    }
    if mismatches.is_empty() {
        eprintln!("[{name}] {total} cases: all replies match");
        return;
    }
    eprintln!(
        "\n[{name}] {} of {total} cases differ between the reference and {target}:",
        mismatches.len()
    );
    for m in &mismatches {
        eprintln!("  {m}");
    }
    panic!(
        "[{name}] {} mismatching case(s); first:\n  {}",
        mismatches.len(),
        mismatches[0]
    );
}

/// Runs `cases` against a fresh redis-server and a fresh target; panics listing every
/// mismatch (command, both replies escaped, case index).
pub fn diff_resp(name: &str, cases: &[RespCase]) {
    let mut pair = RespPair::start();
    let mismatches = pair.run(cases, usize::MAX);
    finish(
        name,
        pair.target_name(),
        cases.len(),
        mismatches,
        &pair.notes,
    );
}

// ---------------------------------------------------------------------------------------
// memcache

/// How two memcache responses are compared.
#[derive(Clone)]
pub enum McCmp {
    /// Byte for byte, except cas ids (shape: both numeric) and remaining TTLs (`t` flag,
    /// within ±1).
    Normal,
    /// One `VERSION <x>` line each.
    VersionShape,
    /// `STAT name value` lines up to `END`; every listed name present on both sides.
    StatsNames(&'static [&'static str]),
    /// Anything else.
    Custom(McCheck),
}

/// One memcache case.
#[derive(Clone)]
pub struct McCase {
    /// Printable label.
    pub label: String,
    /// Request bytes; `$CAS` is replaced by the cas id this server last returned for the
    /// key of that line (via `gets`/`gats`/`mg ... c`), or `999999999` if none.
    pub req: Vec<u8>,
    /// What to read (`None` = infer from the request).
    pub frames: Option<Frames>,
    /// Comparison.
    pub cmp: McCmp,
    /// Server must close the connection afterwards.
    pub closes: bool,
    /// Sleep before sending (both sides).
    pub sleep_before: Option<Duration>,
}

impl McCase {
    /// A request given as text; `\r\n` line ends must be included.
    pub fn new(req: impl Into<Vec<u8>>) -> McCase {
        let req = req.into();
        McCase {
            label: escape(&req),
            req,
            frames: None,
            cmp: McCmp::Normal,
            closes: false,
            sleep_before: None,
        }
    }

    /// Read until the connection is quiet for `ms` instead of inferring.
    pub fn quiet(mut self, ms: u64) -> McCase {
        self.frames = Some(Frames::Quiet(Duration::from_millis(ms)));
        self
    }

    /// Comparison mode.
    pub fn with(mut self, cmp: McCmp) -> McCase {
        self.cmp = cmp;
        self
    }

    /// Server must close the connection.
    pub fn closes(mut self) -> McCase {
        self.closes = true;
        self
    }

    /// Sleep before sending.
    pub fn after_ms(mut self, ms: u64) -> McCase {
        self.sleep_before = Some(Duration::from_millis(ms));
        self
    }
}

/// Shorthand: `m("get a")` sends `get a\r\n`. A `|` separates lines (`m("set a 0 0 1|x")`).
pub fn m(text: &str) -> McCase {
    let mut req = Vec::new();
    for l in text.split('|') {
        req.extend_from_slice(l.as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    McCase::new(req)
}

fn toks(l: &[u8]) -> Vec<&[u8]> {
    l.split(|b| *b == b' ').filter(|t| !t.is_empty()).collect()
}

fn is_num(t: &[u8]) -> bool {
    !t.is_empty() && t.iter().all(u8::is_ascii_digit)
}

fn line_matches(a: &[u8], b: &[u8]) -> bool {
    if a == b {
        return true;
    }
    let (x, y) = (toks(a), toks(b));
    if x.len() != y.len() || x.first() != y.first() {
        return false;
    }
    let head = x[0];
    let value = head == b"VALUE";
    let meta = matches!(head, b"VA" | b"HD" | b"EN" | b"NF" | b"NS" | b"EX" | b"ME");
    x.iter().zip(&y).enumerate().all(|(i, (p, q))| {
        if p == q {
            return true;
        }
        if value && i == 4 {
            return is_num(p) && is_num(q);
        }
        if meta && i > 0 && p.first() == q.first() {
            let (pr, qr) = (&p[1..], &q[1..]);
            return match p[0] {
                b'c' => is_num(pr) && is_num(qr),
                b't' => {
                    let parse = |s: &[u8]| std::str::from_utf8(s).ok()?.parse::<i64>().ok();
                    matches!((parse(pr), parse(qr)), (Some(u), Some(v)) if u >= 0 && v >= 0 && (u - v).abs() <= 1)
                }
                _ => false,
            };
        }
        false
    })
}

impl McCmp {
    fn check(&self, a: &McReply, b: &McReply) -> Result<(), String> {
        match self {
            McCmp::Normal => {
                let (a, b) = (&unpad_counters(a), &unpad_counters(b));
                if a.incomplete != b.incomplete || a.segs.len() != b.segs.len() {
                    return Err("different responses".into());
                }
                for (i, (p, q)) in a.segs.iter().zip(&b.segs).enumerate() {
                    let ok = match (p, q) {
                        (Seg::Line(x), Seg::Line(y)) => line_matches(x, y),
                        (Seg::Data(x), Seg::Data(y)) => x == y,
                        _ => false,
                    };
                    if !ok {
                        return Err(format!("segment #{i} differs"));
                    }
                }
                Ok(())
            }
            McCmp::VersionShape => {
                let ok = |r: &McReply| {
                    r.segs.len() == 1 && r.lines().all(|l| l.starts_with(b"VERSION "))
                };
                if ok(a) && ok(b) {
                    Ok(())
                } else {
                    Err("expected one `VERSION x` line each".into())
                }
            }
            McCmp::StatsNames(names) => {
                let stats = |r: &McReply| -> Result<BTreeSet<String>, String> {
                    let lines: Vec<&[u8]> = r.lines().collect();
                    if r.incomplete.is_some() || lines.last() != Some(&&b"END"[..]) {
                        return Err("stats not terminated by END".into());
                    }
                    let mut set = BTreeSet::new();
                    for l in &lines[..lines.len() - 1] {
                        let t = toks(l);
                        if t.len() < 3 || t[0] != b"STAT" {
                            return Err(format!("bad stats line {}", escape(l)));
                        }
                        set.insert(String::from_utf8_lossy(t[1]).into_owned());
                    }
                    Ok(set)
                };
                let (sa, sb) = (stats(a)?, stats(b)?);
                let missing: Vec<&&str> = names
                    .iter()
                    .filter(|n| !sa.contains(**n) || !sb.contains(**n))
                    .collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(format!("stats missing on one side: {missing:?}"))
                }
            }
            McCmp::Custom(f) => f(a, b),
        }
    }
}

/// memcached's `decr` (and wrapping `incr`) rewrites a counter in place, padding it with
/// spaces to the old length (`"100"` -> `"99 "`), but only when no other thread holds a
/// reference to the item at that moment; otherwise it stores a fresh, unpadded item. The
/// reference is thus nondeterministic here, so `<digits><spaces>` data compares equal to
/// `<digits>` (with the `VALUE`/`VA` length adjusted).
fn unpad_counters(r: &McReply) -> McReply {
    let mut segs = r.segs.clone();
    for i in 1..segs.len() {
        let Seg::Data(d) = segs[i].clone() else {
            continue;
        };
        let digits = d.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits == d.len() || !d[digits..].iter().all(|b| *b == b' ') {
            continue;
        }
        let Seg::Line(l) = &segs[i - 1] else { continue };
        let mut t: Vec<Vec<u8>> = toks(l).into_iter().map(<[u8]>::to_vec).collect();
        let idx = match t.first().map(Vec::as_slice) {
            Some(b"VALUE") => 3,
            Some(b"VA") => 1,
            _ => continue,
        };
        if idx < t.len() {
            t[idx] = digits.to_string().into_bytes();
        }
        segs[i - 1] = Seg::Line(t.join(&b' '));
        segs[i] = Seg::Data(d[..digits].to_vec());
    }
    McReply {
        segs,
        incomplete: r.incomplete,
    }
}

struct McSide {
    /// The process when this side owns it (`None`: a target started elsewhere).
    _server: Option<ServerProc>,
    port: u16,
    conn: McConn,
    cas: HashMap<Vec<u8>, Vec<u8>>,
}

impl McSide {
    fn new(server: ServerProc) -> McSide {
        let port = server.memcache_port();
        let mut side = McSide::at_port(port);
        side._server = Some(server);
        side
    }

    fn at_port(port: u16) -> McSide {
        McSide {
            _server: None,
            port,
            conn: McConn::connect(port),
            cas: HashMap::new(),
        }
    }

    fn substitute(&self, req: &[u8]) -> Vec<u8> {
        const PH: &[u8] = b"$CAS";
        let mut out = Vec::with_capacity(req.len());
        let mut i = 0;
        while i < req.len() {
            if req[i..].starts_with(PH) {
                let line_start = req[..i]
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |p| p + 1);
                let key = toks(&req[line_start..i])
                    .get(1)
                    .map(|k| k.to_vec())
                    .unwrap_or_default();
                out.extend_from_slice(
                    self.cas
                        .get(&key)
                        .map_or(&b"999999999"[..], |v| v.as_slice()),
                );
                i += PH.len();
            } else {
                out.push(req[i]);
                i += 1;
            }
        }
        out
    }

    fn capture(&mut self, req: &[u8], reply: &McReply) {
        let cmds = split_request(req);
        if cmds.len() != 1 {
            return;
        }
        let t = toks(&cmds[0]);
        match t.first().copied() {
            Some(b"gets") | Some(b"gats") => {
                let skip = if t[0] == b"gats" { 2 } else { 1 };
                for k in &t[skip..] {
                    self.cas.remove(*k);
                }
                for l in reply.lines() {
                    let v = toks(l);
                    if v.len() == 5 && v[0] == b"VALUE" {
                        self.cas.insert(v[1].to_vec(), v[4].to_vec());
                    }
                }
            }
            Some(b"mg") if t.len() > 1 => {
                let key = t[1].to_vec();
                if let Some(first) = reply.lines().next() {
                    let found = toks(first)
                        .into_iter()
                        .skip(1)
                        .find(|x| x.first() == Some(&b'c') && is_num(&x[1..]));
                    match found {
                        Some(c) => {
                            self.cas.insert(key, c[1..].to_vec());
                        }
                        None if first == b"EN" => {
                            self.cas.remove(&key);
                        }
                        None => {}
                    }
                }
            }
            _ => {}
        }
    }

    fn step(&mut self, case: &McCase) -> (Vec<u8>, McReply, Option<String>) {
        let req = self.substitute(&case.req);
        self.conn.send(&req);
        let frames = case.frames.clone().unwrap_or_else(|| expected_frames(&req));
        let reply = self.conn.read(&frames);
        let quits = split_request(&req)
            .iter()
            .any(|l| toks(l).first() == Some(&&b"quit"[..]));
        let state = (case.closes || quits).then(|| self.conn.closed_state(Duration::from_secs(2)));
        if state.is_some() || reply.incomplete.is_some() {
            self.conn = McConn::connect(self.port);
        }
        self.capture(&req, &reply);
        (req, reply, state)
    }
}

/// A reference memcached and the memcache target, one connection to each.
pub struct McPair {
    reference: McSide,
    target: McSide,
    /// Name of a target given by port (see [`McPair::with_target_port`]).
    label: Option<&'static str>,
}

impl Default for McPair {
    fn default() -> Self {
        Self::start()
    }
}

impl McPair {
    /// Spawns both servers.
    pub fn start() -> McPair {
        let (r, t) = std::thread::scope(|s| {
            let t = s.spawn(spawn_memcache_target);
            let r = spawn_memcached();
            (r, t.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
        });
        McPair {
            reference: McSide::new(r),
            target: McSide::new(t),
            label: None,
        }
    }

    /// A fresh reference memcached and a target that already runs on `127.0.0.1:port`,
    /// named `label` in reports.
    pub fn with_target_port(port: u16, label: &'static str) -> McPair {
        McPair {
            reference: McSide::new(spawn_memcached()),
            target: McSide::at_port(port),
            label: Some(label),
        }
    }

    /// Runs `cases` and panics listing every mismatch, like [`diff_memcache`] but on this
    /// pair.
    pub fn check(&mut self, name: &str, cases: &[McCase]) {
        let mismatches = self.run(cases, usize::MAX);
        finish(name, self.target_name(), cases.len(), mismatches, &[]);
    }

    /// Name of the target.
    pub fn target_name(&self) -> &'static str {
        if let Some(l) = self.label {
            return l;
        }
        if crate::servers::target_is_reference() {
            "memcached#2"
        } else {
            "shoal-server"
        }
    }

    /// Runs one case; returns a mismatch report.
    pub fn run_case(&mut self, idx: usize, case: &McCase) -> Option<String> {
        if let Some(d) = case.sleep_before {
            std::thread::sleep(d);
        }
        let (req_a, a, sa) = self.reference.step(case);
        let (req_b, b, sb) = self.target.step(case);
        if verbose() {
            eprintln!(
                "#{idx} {} => {}{}",
                case.label,
                a.describe(),
                sa.as_deref().unwrap_or("")
            );
        }
        let problem = match case.cmp.check(&a, &b) {
            Err(e) => e,
            Ok(()) if sa != sb => format!(
                "connection afterwards: memcached is {}, {} is {}",
                sa.as_deref().unwrap_or("-"),
                self.target_name(),
                sb.as_deref().unwrap_or("-")
            ),
            Ok(()) => return None,
        };
        let sent = if req_a == req_b {
            escape(&req_a)
        } else {
            format!("{} / {}", escape(&req_a), escape(&req_b))
        };
        let tail = |s: &Option<String>| {
            s.as_ref()
                .map(|s| format!(" [then {s}]"))
                .unwrap_or_default()
        };
        Some(format!(
            "case #{idx} `{}`: {problem}\n    sent:          {sent}\n    memcached:     {}{}\n    {:<14} {}{}",
            case.label,
            a.describe(),
            tail(&sa),
            format!("{}:", self.target_name()),
            b.describe(),
            tail(&sb)
        ))
    }

    /// Runs `cases`, returning mismatch reports (stops after `stop_after`).
    pub fn run(&mut self, cases: &[McCase], stop_after: usize) -> Vec<String> {
        let mut out = Vec::new();
        for (i, case) in cases.iter().enumerate() {
            if let Some(mm) = self.run_case(i, case) {
                out.push(mm);
                if out.len() >= stop_after {
                    break;
                }
            }
        }
        out
    }
}

/// Runs `cases` against a fresh memcached and a fresh target; panics listing mismatches.
pub fn diff_memcache(name: &str, cases: &[McCase]) {
    let mut pair = McPair::start();
    let mismatches = pair.run(cases, usize::MAX);
    finish(name, pair.target_name(), cases.len(), mismatches, &[]);
}
