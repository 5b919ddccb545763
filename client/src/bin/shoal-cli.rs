//! `shoal-cli`: send one RESP command to a Shoal server or proxy, or drive a proxy's live
//! reshard (`SHOAL RESHARD …`) and watch its progress.
//!
//! ```text
//! shoal-cli [-h HOST] [-p PORT] [-a PASSWORD] [--resp3] <command> [args...]
//! shoal-cli [-h HOST] [-p PORT] [-a PASSWORD] reshard <op> [args...] [--wait]
//! ```
//!
//! Replies are printed the way `redis-cli` prints them when stdout is not a terminal (bulk
//! and simple strings raw, integers as the number, nil as an empty line, one array element
//! per line), except that an error reply is printed as `(error) MESSAGE` and makes the exit
//! status 1. The wire work is the crate's sans-IO codec ([`encode_command`],
//! [`decode_reply`]) over a blocking `std::net::TcpStream`.

use std::ffi::OsString;
use std::io::{self, IsTerminal, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use clap::{ArgAction, Parser};
use shoal_client::resp::{decode_reply, encode_command, format_double, Proto, Value};

const USAGE: &str = "shoal-cli [-h HOST] [-p PORT] [-a PASSWORD] [--resp3] <command> [args...]
       shoal-cli [-h HOST] [-p PORT] [-a PASSWORD] reshard <op> [args...] [--wait]";

const AFTER_HELP: &str = "\
Replies are printed like redis-cli prints them to a pipe: strings raw, integers as the
number, nil as an empty line, one array element per line. An error reply is printed as
`(error) MESSAGE` on stdout and exits 1; a connection failure exits 1 with a message on
stderr.

reshard <op> sends `SHOAL RESHARD <OP> args...` to a shoal-proxy pool's port (e.g. -p 22121):
  reshard add host:port[:weight] [name] [--wait]   add a server to this pool
  reshard remove name [--wait]                     remove a server (name or host:port)
  reshard weight name weight [--wait]              change a server's weight
  reshard status [--wait]                          print the STATUS fields (field:value lines)
  reshard pause                                    stop moving keys (routing stays correct)
  reshard resume [--wait]                          continue moving keys
  reshard cancel [--wait]                          move every key back to the old ring
  reshard rate keys-per-sec [bytes-per-sec]        throttle the migration (0 = unlimited)

--wait polls SHOAL RESHARD STATUS every 250 ms and draws a progress bar on stderr (redrawn
in place on a terminal, one line per second otherwise) until the state is done (exit 0),
failed (exit 1, the error is printed) or idle (exit 0).

Examples:
  shoal-cli SET greeting hello
  shoal-cli -p 22121 MGET a b c
  shoal-cli -p 22121 reshard add 127.0.0.1:7004 --wait
  shoal-cli -p 22121 reshard status";

/// Command-line options (redis-cli's spelling: `-h` is the host, help is `--help`).
#[derive(Parser, Debug)]
#[command(
    name = "shoal-cli",
    version,
    about = "Send one command to a Shoal server or proxy; drive a proxy's live reshard",
    override_usage = USAGE,
    after_help = AFTER_HELP,
    disable_help_flag = true
)]
struct Cli {
    /// Server or proxy host name or IP address.
    #[arg(
        short = 'h',
        long = "host",
        value_name = "HOST",
        default_value = "127.0.0.1"
    )]
    host: String,
    /// Server or proxy port.
    #[arg(
        short = 'p',
        long = "port",
        value_name = "PORT",
        default_value_t = 6379
    )]
    port: u16,
    /// Password: sends `AUTH PASSWORD` before the command.
    #[arg(short = 'a', long = "pass", value_name = "PASSWORD")]
    password: Option<OsString>,
    /// Speak RESP3 (sends `HELLO 3` after connecting).
    #[arg(long = "resp3", short = '3')]
    resp3: bool,
    /// Print help.
    #[arg(long = "help", action = ArgAction::Help)]
    help: Option<bool>,
    /// The command and its arguments, or `reshard <op> [args...] [--wait]`.
    #[arg(
        value_name = "COMMAND",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    command: Vec<OsString>,
}

/// Where to connect and how to greet.
#[derive(Clone, Debug)]
struct Target {
    host: String,
    port: u16,
    password: Option<Vec<u8>>,
    proto: Proto,
}

impl Target {
    fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Why a connection could not be used.
#[derive(Debug)]
enum ConnError {
    /// Connect or I/O failure, or a reply that does not parse.
    Io(String),
    /// The server answered AUTH or HELLO with an error.
    Handshake(String),
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Io(s) | ConnError::Handshake(s) => f.write_str(s),
        }
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One blocking connection speaking the crate's sans-IO codec.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    proto: Proto,
    addr: String,
}

impl Conn {
    /// Connects (trying every resolved address), then AUTH and HELLO 3 as asked.
    fn open(t: &Target) -> Result<Conn, ConnError> {
        let addr = t.addr();
        let fail = |e: io::Error| ConnError::Io(format!("could not connect to {addr}: {e}"));
        let addrs: Vec<_> = (t.host.as_str(), t.port)
            .to_socket_addrs()
            .map_err(fail)?
            .collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address for host");
        let mut stream = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let stream = stream.ok_or_else(|| fail(last))?;
        let _ = stream.set_nodelay(true);
        let mut conn = Conn {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
            proto: Proto::Resp2,
            addr,
        };
        if let Some(pw) = &t.password {
            if let Value::Error(e) = conn.call(&[b"AUTH", pw])? {
                return Err(ConnError::Handshake(format!(
                    "AUTH failed: {}",
                    String::from_utf8_lossy(&e)
                )));
            }
        }
        if t.proto == Proto::Resp3 {
            // The HELLO reply itself is already RESP3 (a map).
            conn.proto = Proto::Resp3;
            if let Value::Error(e) = conn.call(&[b"HELLO", b"3"])? {
                return Err(ConnError::Handshake(format!(
                    "HELLO 3 failed: {}",
                    String::from_utf8_lossy(&e)
                )));
            }
        }
        Ok(conn)
    }

    /// Sends one command and reads its reply.
    fn call(&mut self, args: &[&[u8]]) -> Result<Value, ConnError> {
        let mut out = BytesMut::new();
        encode_command(args, &mut out);
        let addr = &self.addr;
        self.stream
            .write_all(&out)
            .map_err(|e| ConnError::Io(format!("error writing to {addr}: {e}")))?;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match decode_reply(&mut self.buf, self.proto) {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(e) => return Err(ConnError::Io(format!("bad reply from {addr}: {e}"))),
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ConnError::Io(format!("{addr} closed the connection"))),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ConnError::Io(format!("error reading from {addr}: {e}"))),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reply formatting (redis-cli's "raw" output, used when stdout is not a terminal).

/// Appends `v` as redis-cli prints a reply to a pipe, without the trailing newline.
fn format_reply(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Simple(b) | Value::Bulk(b) | Value::Verbatim(b) | Value::BigNumber(b) => {
            out.extend_from_slice(b);
        }
        Value::Error(e) => {
            out.extend_from_slice(b"(error) ");
            out.extend_from_slice(e);
        }
        Value::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::Nil => {}
        Value::Double(d) => format_double(*d, out),
        Value::Bool(b) => out.extend_from_slice(if *b { b"(true)" } else { b"(false)" }),
        Value::Array(items) | Value::Set(items) | Value::Push(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b'\n');
                }
                format_reply(item, out);
            }
        }
        Value::Map(pairs) => {
            for (i, (k, val)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(b'\n');
                }
                format_reply(k, out);
                out.push(b' ');
                format_reply(val, out);
            }
        }
    }
}

/// The whole printed reply (with its newline) and whether it was an error.
fn render_reply(v: &Value) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    format_reply(v, &mut out);
    out.push(b'\n');
    (out, matches!(v, Value::Error(_)))
}

// ---------------------------------------------------------------------------------------
// SHOAL RESHARD STATUS.

/// The fields of `SHOAL RESHARD STATUS` (missing numbers read as 0).
#[derive(Clone, Debug, Default, PartialEq)]
struct ReshardStatus {
    state: String,
    pools: String,
    from: String,
    to: String,
    cancelled: bool,
    keys_moved: u64,
    bytes_moved: u64,
    keys_scanned: u64,
    keys_total: u64,
    sources_done: u64,
    sources_total: u64,
    elapsed_seconds: f64,
    eta_seconds: u64,
    rate_keys: u64,
    rate_bytes: u64,
    error: String,
}

impl ReshardStatus {
    /// Parses `field:value` lines (`\r\n` or `\n`); unknown fields are ignored.
    fn parse(text: &str) -> ReshardStatus {
        let mut s = ReshardStatus::default();
        for line in text.lines() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let num = || v.trim().parse::<u64>().unwrap_or(0);
            match k {
                "state" => s.state = v.to_owned(),
                "pools" => s.pools = v.to_owned(),
                "from" => s.from = v.to_owned(),
                "to" => s.to = v.to_owned(),
                "cancelled" => s.cancelled = v.trim() == "1",
                "keys_moved" => s.keys_moved = num(),
                "bytes_moved" => s.bytes_moved = num(),
                "keys_scanned" => s.keys_scanned = num(),
                "keys_total" => s.keys_total = num(),
                "sources_done" => s.sources_done = num(),
                "sources_total" => s.sources_total = num(),
                "elapsed_seconds" => s.elapsed_seconds = v.trim().parse().unwrap_or(0.0),
                "eta_seconds" => s.eta_seconds = num(),
                "rate_keys" => s.rate_keys = num(),
                "rate_bytes" => s.rate_bytes = num(),
                "error" => s.error = v.to_owned(),
                _ => {}
            }
        }
        s
    }

    /// `done`, `failed` and `idle` end a `--wait`.
    fn is_final(&self) -> bool {
        matches!(self.state.as_str(), "done" | "failed" | "idle")
    }

    /// Fraction done in 0..=1: keys scanned of the (estimated) total, or sources scanned
    /// when there is no key estimate; 1 once the state is `done`.
    fn progress(&self) -> f64 {
        if self.state == "done" {
            return 1.0;
        }
        let (n, d) = if self.keys_total > 0 {
            (self.keys_scanned, self.keys_total)
        } else {
            (self.sources_done, self.sources_total)
        };
        if d == 0 {
            0.0
        } else {
            (n as f64 / d as f64).clamp(0.0, 1.0)
        }
    }
}

/// `12345` → `12,345`.
fn fmt_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Decimal units: `512 B`, `1.2 kB`, `1.2 MB`, `3.4 GB`, `1.0 TB`.
fn fmt_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 999.95 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `4s`, `2m05s`, `1h02m`.
fn fmt_duration(secs: u64) -> String {
    if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, secs % 3600 / 60)
    }
}

const BAR_WIDTH: usize = 26;

/// `reshard running [#############-------------]  52%  keys moved 12,345  bytes 1.2 MB  eta 4s`.
fn render_bar(s: &ReshardStatus, width: usize) -> String {
    let p = s.progress();
    let filled = ((p * width as f64).floor() as usize).min(width);
    let pct = (p * 100.0).floor() as u32;
    let state = if s.state.is_empty() { "?" } else { &s.state };
    let mut line = format!(
        "reshard {state} [{}{}] {pct:>3}%  keys moved {}  bytes {}",
        "#".repeat(filled),
        "-".repeat(width - filled),
        fmt_thousands(s.keys_moved),
        fmt_bytes(s.bytes_moved),
    );
    if matches!(s.state.as_str(), "running" | "cancelling") {
        if s.eta_seconds == 0 && s.keys_scanned == 0 {
            line.push_str("  eta ?");
        } else {
            line.push_str("  eta ");
            line.push_str(&fmt_duration(s.eta_seconds));
        }
    }
    line
}

/// The line printed once a `--wait` ends, and the exit status.
fn final_summary(s: &ReshardStatus) -> (String, u8) {
    match s.state.as_str() {
        "done" => {
            let what = if s.cancelled {
                "reshard cancelled, old membership restored"
            } else {
                "reshard done"
            };
            (
                format!(
                    "{what}: {} keys ({}) moved",
                    fmt_thousands(s.keys_moved),
                    fmt_bytes(s.bytes_moved)
                ),
                0,
            )
        }
        "failed" => {
            let err = if s.error.is_empty() {
                "(no error recorded)"
            } else {
                &s.error
            };
            (format!("reshard failed: {err}"), 1)
        }
        _ => ("no reshard in progress".to_owned(), 0),
    }
}

/// STATUS text with `\r\n` turned into `\n`, ending in one newline.
fn status_for_print(text: &str) -> String {
    let mut out: String = text
        .lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    out.push('\n');
    out
}

// ---------------------------------------------------------------------------------------
// reshard <op>.

/// What `reshard …` asked for, checked before anything is sent.
#[derive(Debug, PartialEq)]
struct ReshardCmd {
    /// `SHOAL RESHARD <OP> args…` as sent.
    words: Vec<Vec<u8>>,
    op: &'static str,
    wait: bool,
}

const RESHARD_OPS: &str = "add|remove|weight|status|pause|resume|cancel|rate";

/// Parses `reshard <op> [args...] [--wait]` (the words after `reshard`).
fn parse_reshard(args: &[Vec<u8>]) -> Result<ReshardCmd, String> {
    let mut wait = false;
    let mut rest = Vec::new();
    for a in args {
        if a.as_slice() == b"--wait" {
            wait = true;
        } else {
            rest.push(a.clone());
        }
    }
    let Some((op, params)) = rest.split_first() else {
        return Err(format!("reshard needs an operation: {RESHARD_OPS}"));
    };
    let op_lower = String::from_utf8_lossy(op).to_ascii_lowercase();
    // (name, allowed parameter counts, usage, --wait allowed)
    let (op, counts, usage, waitable): (&'static str, &[usize], &str, bool) =
        match op_lower.as_str() {
            "add" => ("ADD", &[1, 2], "add host:port[:weight] [name]", true),
            "remove" => ("REMOVE", &[1], "remove name", true),
            "weight" => ("WEIGHT", &[2], "weight name weight", true),
            "status" => ("STATUS", &[0], "status", true),
            "pause" => ("PAUSE", &[0], "pause", false),
            "resume" => ("RESUME", &[0], "resume", true),
            "cancel" => ("CANCEL", &[0], "cancel", true),
            "rate" => ("RATE", &[1, 2], "rate keys-per-sec [bytes-per-sec]", false),
            _ => {
                return Err(format!(
                    "unknown reshard operation '{op_lower}' (one of {RESHARD_OPS})"
                ))
            }
        };
    if !counts.contains(&params.len()) {
        return Err(format!("usage: shoal-cli reshard {usage}"));
    }
    if wait && !waitable {
        return Err(format!(
            "--wait is not allowed with reshard {}",
            op.to_ascii_lowercase()
        ));
    }
    let mut words = vec![
        b"SHOAL".to_vec(),
        b"RESHARD".to_vec(),
        op.as_bytes().to_vec(),
    ];
    words.extend(params.iter().cloned());
    Ok(ReshardCmd { words, op, wait })
}

/// How `--wait` polls (the tests poll faster).
#[derive(Clone, Copy, Debug)]
struct WaitOpts {
    interval: Duration,
    /// Plain (non-terminal) output prints at most one line per this.
    plain_every: Duration,
    /// Give up after the proxy has been unreachable this long.
    reconnect_for: Duration,
}

const WAIT_OPTS: WaitOpts = WaitOpts {
    interval: Duration::from_millis(250),
    plain_every: Duration::from_secs(1),
    reconnect_for: Duration::from_secs(30),
};

/// How long one STATUS poll may wait for its reply.
const POLL_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Output streams and whether stderr is a terminal.
struct Io<'a> {
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
    err_tty: bool,
}

/// The STATUS text of a reply, or what to report.
fn status_text(v: Value) -> Result<String, Value> {
    match v {
        Value::Bulk(b) | Value::Verbatim(b) | Value::Simple(b) => {
            Ok(String::from_utf8_lossy(&b).into_owned())
        }
        other => Err(other),
    }
}

fn run_reshard(t: &Target, cmd: &ReshardCmd, opts: WaitOpts, io: &mut Io<'_>) -> u8 {
    let mut conn = match Conn::open(t) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(io.err, "shoal-cli: {e}");
            return 1;
        }
    };
    if cmd.op == "STATUS" && cmd.wait {
        // The first poll is the command itself.
        return wait_reshard(t, conn, true, opts, io);
    }
    let args: Vec<&[u8]> = cmd.words.iter().map(Vec::as_slice).collect();
    let reply = match conn.call(&args) {
        Ok(v) => v,
        Err(e) => {
            let _ = writeln!(io.err, "shoal-cli: {e}");
            return 1;
        }
    };
    if cmd.op == "STATUS" {
        return match status_text(reply) {
            Ok(text) => {
                let _ = io.out.write_all(status_for_print(&text).as_bytes());
                0
            }
            Err(other) => print_reply(&other, io).max(1),
        };
    }
    let code = print_reply(&reply, io);
    if code != 0 || !cmd.wait {
        return code;
    }
    let _ = io.out.flush();
    wait_reshard(t, conn, false, opts, io)
}

/// Prints a reply on stdout; 1 for an error reply.
fn print_reply(v: &Value, io: &mut Io<'_>) -> u8 {
    let (text, is_err) = render_reply(v);
    let _ = io.out.write_all(&text);
    u8::from(is_err)
}

/// Polls STATUS until a final state, drawing the bar on stderr.
fn wait_reshard(t: &Target, conn: Conn, print_status: bool, opts: WaitOpts, io: &mut Io<'_>) -> u8 {
    // A proxy that stops answering is treated like one that went away: reconnect.
    let _ = conn.stream.set_read_timeout(Some(POLL_READ_TIMEOUT));
    let mut conn = Some(conn);
    let mut unreachable_since: Option<Instant> = None;
    let mut last_plain: Option<Instant> = None;
    let mut drawn = false;
    loop {
        let polled = match conn.as_mut() {
            Some(c) => c.call(&[b"SHOAL", b"RESHARD", b"STATUS"]),
            None => Conn::open(t).and_then(|mut c| {
                let _ = c.stream.set_read_timeout(Some(POLL_READ_TIMEOUT));
                let r = c.call(&[b"SHOAL", b"RESHARD", b"STATUS"]);
                conn = Some(c);
                r
            }),
        };
        let reply = match polled {
            Ok(v) => {
                unreachable_since = None;
                v
            }
            Err(ConnError::Handshake(e)) => {
                end_bar(io, &mut drawn);
                let _ = writeln!(io.err, "shoal-cli: {e}");
                return 1;
            }
            Err(ConnError::Io(e)) => {
                conn = None;
                let since = *unreachable_since.get_or_insert_with(|| {
                    end_bar(io, &mut drawn);
                    let _ = writeln!(io.err, "shoal-cli: {e}; retrying");
                    Instant::now()
                });
                if since.elapsed() >= opts.reconnect_for {
                    let _ = writeln!(
                        io.err,
                        "shoal-cli: giving up after {}s: {e}",
                        opts.reconnect_for.as_secs()
                    );
                    return 1;
                }
                thread::sleep(opts.interval);
                continue;
            }
        };
        let text = match status_text(reply) {
            Ok(t) => t,
            Err(other) => {
                end_bar(io, &mut drawn);
                let code = print_reply(&other, io);
                return code.max(1);
            }
        };
        let st = ReshardStatus::parse(&text);
        let done = st.is_final();
        if st.state != "idle" {
            let line = render_bar(&st, BAR_WIDTH);
            if io.err_tty {
                let _ = write!(io.err, "\r{line}\x1b[K");
                drawn = true;
            } else if done || last_plain.is_none_or(|t| t.elapsed() >= opts.plain_every) {
                let _ = writeln!(io.err, "{line}");
                last_plain = Some(Instant::now());
            }
            let _ = io.err.flush();
        }
        if done {
            end_bar(io, &mut drawn);
            let (summary, code) = final_summary(&st);
            let _ = writeln!(io.err, "{summary}");
            if print_status {
                let _ = io.out.write_all(status_for_print(&text).as_bytes());
            }
            return code;
        }
        thread::sleep(opts.interval);
    }
}

/// Ends an in-place bar with a newline so the next message starts on its own line.
fn end_bar(io: &mut Io<'_>, drawn: &mut bool) {
    if *drawn {
        let _ = writeln!(io.err);
        *drawn = false;
    }
}

// ---------------------------------------------------------------------------------------

/// Runs a parsed command line; returns the exit status.
fn run(cli: Cli, opts: WaitOpts, io: &mut Io<'_>) -> u8 {
    let target = Target {
        host: cli.host,
        port: cli.port,
        password: cli.password.map(OsString::into_encoded_bytes),
        proto: if cli.resp3 {
            Proto::Resp3
        } else {
            Proto::Resp2
        },
    };
    let words: Vec<Vec<u8>> = cli
        .command
        .into_iter()
        .map(OsString::into_encoded_bytes)
        .collect();
    if words[0].eq_ignore_ascii_case(b"reshard") {
        return match parse_reshard(&words[1..]) {
            Ok(cmd) => run_reshard(&target, &cmd, opts, io),
            Err(e) => {
                let _ = writeln!(io.err, "shoal-cli: {e}");
                2
            }
        };
    }
    let mut conn = match Conn::open(&target) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(io.err, "shoal-cli: {e}");
            return 1;
        }
    };
    let args: Vec<&[u8]> = words.iter().map(Vec::as_slice).collect();
    match conn.call(&args) {
        Ok(v) => print_reply(&v, io),
        Err(e) => {
            let _ = writeln!(io.err, "shoal-cli: {e}");
            1
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = io::stdout();
    let stderr = io::stderr();
    let err_tty = stderr.is_terminal();
    let mut out = stdout.lock();
    let mut err = stderr.lock();
    let code = run(
        cli,
        WAIT_OPTS,
        &mut Io {
            out: &mut out,
            err: &mut err,
            err_tty,
        },
    );
    let _ = out.flush();
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::net::TcpListener;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn shown(v: &Value) -> String {
        String::from_utf8(render_reply(v).0).unwrap()
    }

    #[test]
    fn reply_formatting_matches_redis_cli_raw() {
        assert_eq!(shown(&Value::Bulk(b("hello"))), "hello\n");
        assert_eq!(shown(&Value::Simple(b("OK"))), "OK\n");
        assert_eq!(shown(&Value::Int(-42)), "-42\n");
        assert_eq!(shown(&Value::Nil), "\n");
        assert_eq!(
            shown(&Value::Array(vec![
                Value::Bulk(b("1")),
                Value::Nil,
                Value::Int(3)
            ])),
            "1\n\n3\n"
        );
        assert_eq!(shown(&Value::Array(vec![])), "\n");
        assert_eq!(
            shown(&Value::Array(vec![
                Value::Bulk(b("a")),
                Value::Array(vec![Value::Bulk(b("b")), Value::Bulk(b("c"))])
            ])),
            "a\nb\nc\n"
        );
        assert_eq!(
            shown(&Value::Map(vec![(Value::Bulk(b("k")), Value::Int(1))])),
            "k 1\n"
        );
        assert_eq!(shown(&Value::Bool(true)), "(true)\n");
        assert_eq!(shown(&Value::Double(1.5)), "1.5\n");
        assert_eq!(shown(&Value::Verbatim(b("txt"))), "txt\n");
        let (text, err) = render_reply(&Value::Error(b("ERR unknown command 'FOO'")));
        assert_eq!(text, b"(error) ERR unknown command 'FOO'\n");
        assert!(err);
        assert!(!render_reply(&Value::Array(vec![Value::Error(b("ERR x"))])).1);
    }

    const STATUS: &str = "state:running\r\npools:alpha,alpha_mc\r\nfrom:s1:1,s2:1\r\nto:s1:1,s2:1,s3:1\r\ncancelled:0\r\nkeys_moved:12345\r\nbytes_moved:1234567\r\nkeys_scanned:520\r\nkeys_total:1000\r\nsources_done:1\r\nsources_total:2\r\nelapsed_seconds:4.5\r\neta_seconds:4\r\nrate_keys:0\r\nrate_bytes:0\r\nerror:\r\n";

    #[test]
    fn status_parsing() {
        let s = ReshardStatus::parse(STATUS);
        assert_eq!(s.state, "running");
        assert_eq!(s.pools, "alpha,alpha_mc");
        assert_eq!(s.from, "s1:1,s2:1");
        assert_eq!(s.to, "s1:1,s2:1,s3:1");
        assert!(!s.cancelled);
        assert_eq!(s.keys_moved, 12345);
        assert_eq!(s.bytes_moved, 1_234_567);
        assert_eq!((s.keys_scanned, s.keys_total), (520, 1000));
        assert_eq!((s.sources_done, s.sources_total), (1, 2));
        assert_eq!(s.elapsed_seconds, 4.5);
        assert_eq!(s.eta_seconds, 4);
        assert_eq!(s.error, "");
        assert!(!s.is_final());

        let f = ReshardStatus::parse("state:failed\nerror:ERR s3: connection refused: x\n");
        assert_eq!(f.state, "failed");
        assert_eq!(f.error, "ERR s3: connection refused: x");
        assert!(f.is_final());
        assert_eq!(ReshardStatus::parse("").state, "");
        assert_eq!(ReshardStatus::parse("keys_total:bogus\n").keys_total, 0);
    }

    #[test]
    fn progress_rules() {
        let mut s = ReshardStatus::parse(STATUS);
        assert!((s.progress() - 0.52).abs() < 1e-9);
        s.keys_scanned = 5000; // the total is an estimate: clamp
        assert_eq!(s.progress(), 1.0);
        s.keys_total = 0; // no estimate: sources
        assert_eq!(s.progress(), 0.5);
        s.sources_total = 0;
        assert_eq!(s.progress(), 0.0);
        s.state = "done".into();
        assert_eq!(s.progress(), 1.0);
    }

    #[test]
    fn bar_rendering() {
        let s = ReshardStatus::parse(STATUS);
        assert_eq!(
            render_bar(&s, 26),
            "reshard running [#############-------------]  52%  keys moved 12,345  bytes 1.2 MB  eta 4s"
        );
        let mut d = s.clone();
        d.state = "done".into();
        assert_eq!(
            render_bar(&d, 10),
            "reshard done [##########] 100%  keys moved 12,345  bytes 1.2 MB"
        );
        let mut p = s.clone();
        p.state = "paused".into();
        assert!(render_bar(&p, 4).starts_with("reshard paused [##--]  52%"));
        let mut z = ReshardStatus::parse("state:running\n");
        z.keys_total = 100;
        assert!(render_bar(&z, 4).ends_with("bytes 0 B  eta ?"));
        z.keys_total = 1000;
        z.keys_scanned = 999; // 99.9 %: shown as 99 until done
        assert!(render_bar(&z, 4).contains("[###-]  99%"));
        z.keys_total = 100;
        z.keys_scanned = 99;
        z.eta_seconds = 125;
        let line = render_bar(&z, 4);
        assert!(line.contains("[###-]  99%"), "{line}");
        assert!(line.ends_with("eta 2m05s"), "{line}");
    }

    #[test]
    fn number_formatting() {
        assert_eq!(fmt_thousands(0), "0");
        assert_eq!(fmt_thousands(999), "999");
        assert_eq!(fmt_thousands(1000), "1,000");
        assert_eq!(fmt_thousands(1_234_567), "1,234,567");
        assert_eq!(fmt_bytes(0), "0 B");
        assert_eq!(fmt_bytes(999), "999 B");
        assert_eq!(fmt_bytes(1000), "1.0 kB");
        assert_eq!(fmt_bytes(1_234_567), "1.2 MB");
        assert_eq!(fmt_bytes(999_999), "1.0 MB");
        assert_eq!(fmt_bytes(5_000_000_000_000_000), "5000.0 TB");
        assert_eq!(fmt_duration(4), "4s");
        assert_eq!(fmt_duration(60), "1m00s");
        assert_eq!(fmt_duration(3725), "1h02m");
    }

    #[test]
    fn summaries() {
        let mut s = ReshardStatus::parse(STATUS);
        s.state = "done".into();
        assert_eq!(
            final_summary(&s),
            ("reshard done: 12,345 keys (1.2 MB) moved".to_owned(), 0)
        );
        s.cancelled = true;
        assert!(final_summary(&s).0.starts_with("reshard cancelled"));
        s.state = "failed".into();
        s.error = "ERR boom".into();
        assert_eq!(
            final_summary(&s),
            ("reshard failed: ERR boom".to_owned(), 1)
        );
        s.state = "idle".into();
        assert_eq!(final_summary(&s).1, 0);
        assert_eq!(status_for_print("a:1\r\nb:2\r\n"), "a:1\nb:2\n");
    }

    fn words(s: &[&str]) -> Vec<Vec<u8>> {
        s.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    #[test]
    fn reshard_argument_checks() {
        let c = parse_reshard(&words(&["add", "127.0.0.1:7004:2", "s4", "--wait"])).unwrap();
        assert_eq!(
            c.words,
            words(&["SHOAL", "RESHARD", "ADD", "127.0.0.1:7004:2", "s4"])
        );
        assert!(c.wait);
        let c = parse_reshard(&words(&["STATUS"])).unwrap();
        assert_eq!((c.op, c.wait), ("STATUS", false));
        assert!(parse_reshard(&words(&["rate", "100", "5000"])).is_ok());
        assert!(parse_reshard(&words(&["rate", "100", "--wait"])).is_err());
        assert!(parse_reshard(&words(&["pause", "--wait"])).is_err());
        assert!(parse_reshard(&words(&["remove"])).is_err());
        assert!(parse_reshard(&words(&["weight", "s1"])).is_err());
        assert!(parse_reshard(&words(&["frobnicate"])).is_err());
        assert!(parse_reshard(&words(&[])).is_err());
        assert!(parse_reshard(&words(&["--wait"])).is_err());
    }

    #[test]
    fn command_line() {
        let cli = Cli::try_parse_from([
            "shoal-cli",
            "-h",
            "db1",
            "-p",
            "22121",
            "-a",
            "pw",
            "SET",
            "k",
            "-1",
        ])
        .unwrap();
        assert_eq!((cli.host.as_str(), cli.port), ("db1", 22121));
        assert_eq!(cli.password.as_deref(), Some("pw".as_ref()));
        assert_eq!(cli.command, ["SET", "k", "-1"]);
        let cli = Cli::try_parse_from(["shoal-cli", "reshard", "status", "--wait"]).unwrap();
        assert_eq!((cli.host.as_str(), cli.port), ("127.0.0.1", 6379));
        assert_eq!(cli.command, ["reshard", "status", "--wait"]);
        assert!(Cli::try_parse_from(["shoal-cli"]).is_err());
        let help = Cli::try_parse_from(["shoal-cli", "--help"]).unwrap_err();
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
        let text = help.to_string();
        assert!(text.contains("reshard add host:port[:weight]"), "{text}");
        assert!(text.contains("--resp3"), "{text}");
    }

    // In-process smoke tests: a scripted RESP server on a thread, no other process.

    /// Serves one connection: for each request read, answers with the next canned reply;
    /// returns the requests it saw (as RESP bytes).
    fn fake_server(replies: Vec<&'static [u8]>) -> (u16, thread::JoinHandle<Vec<Vec<u8>>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            for r in replies {
                let n = s.read(&mut buf).unwrap();
                seen.push(buf[..n].to_vec());
                s.write_all(r).unwrap();
            }
            seen
        });
        (port, h)
    }

    fn run_args(args: &[&str], err_tty: bool) -> (u8, String, String) {
        let cli = Cli::try_parse_from(args).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let opts = WaitOpts {
            interval: Duration::from_millis(5),
            plain_every: Duration::from_secs(3600),
            reconnect_for: Duration::from_millis(50),
        };
        let code = run(
            cli,
            opts,
            &mut Io {
                out: &mut out,
                err: &mut err,
                err_tty,
            },
        );
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn smoke_command_auth_and_error() {
        let (port, h) = fake_server(vec![b"+OK\r\n", b"*2\r\n$1\r\n1\r\n$-1\r\n"]);
        let p = port.to_string();
        let (code, out, _) = run_args(
            &["shoal-cli", "-p", &p, "-a", "pw", "MGET", "a", "b"],
            false,
        );
        assert_eq!((code, out.as_str()), (0, "1\n\n"));
        let seen = h.join().unwrap();
        assert_eq!(seen[0], b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n");
        assert_eq!(seen[1], b"*3\r\n$4\r\nMGET\r\n$1\r\na\r\n$1\r\nb\r\n");

        let (port, h) = fake_server(vec![b"-ERR unknown command 'FOO'\r\n"]);
        let (code, out, _) = run_args(&["shoal-cli", "-p", &port.to_string(), "FOO"], false);
        assert_eq!(
            (code, out.as_str()),
            (1, "(error) ERR unknown command 'FOO'\n")
        );
        h.join().unwrap();

        let (port, h) = fake_server(vec![b"-WRONGPASS invalid password\r\n"]);
        let (code, out, err) = run_args(
            &["shoal-cli", "-p", &port.to_string(), "-a", "x", "PING"],
            false,
        );
        assert_eq!((code, out.as_str()), (1, ""));
        assert!(err.contains("AUTH failed: WRONGPASS"), "{err}");
        h.join().unwrap();
    }

    #[test]
    fn smoke_connection_refused() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let (code, out, err) = run_args(&["shoal-cli", "-p", &port.to_string(), "PING"], false);
        assert_eq!((code, out.as_str()), (1, ""));
        assert!(
            err.starts_with("shoal-cli: could not connect to 127.0.0.1:"),
            "{err}"
        );
    }

    fn bulk(text: &str) -> &'static [u8] {
        Box::leak(
            format!("${}\r\n{text}\r\n", text.len())
                .into_bytes()
                .into_boxed_slice(),
        )
    }

    #[test]
    fn smoke_reshard_add_wait() {
        let running = bulk(STATUS);
        let done = bulk(&STATUS.replace("state:running", "state:done"));
        let (port, h) = fake_server(vec![b"+OK\r\n", running, running, done]);
        let (code, out, err) = run_args(
            &[
                "shoal-cli",
                "-p",
                &port.to_string(),
                "reshard",
                "add",
                "10.0.0.4:7004",
                "--wait",
            ],
            true,
        );
        assert_eq!((code, out.as_str()), (0, "OK\n"), "{err}");
        assert!(err.starts_with("\rreshard running ["), "{err:?}");
        assert!(
            err.contains("\rreshard done [##########################] 100%"),
            "{err:?}"
        );
        assert!(
            err.ends_with("\x1b[K\nreshard done: 12,345 keys (1.2 MB) moved\n"),
            "{err:?}"
        );
        let seen = h.join().unwrap();
        assert_eq!(
            seen[0],
            b"*4\r\n$5\r\nSHOAL\r\n$7\r\nRESHARD\r\n$3\r\nADD\r\n$13\r\n10.0.0.4:7004\r\n"
        );
        assert_eq!(
            seen[1],
            b"*3\r\n$5\r\nSHOAL\r\n$7\r\nRESHARD\r\n$6\r\nSTATUS\r\n"
        );
    }

    #[test]
    fn smoke_reshard_status_wait_failed_plain() {
        let failed = bulk("state:failed\r\nkeys_moved:7\r\nerror:ERR s3 unreachable\r\n");
        let (port, h) = fake_server(vec![bulk(STATUS), failed]);
        let (code, out, err) = run_args(
            &[
                "shoal-cli",
                "-p",
                &port.to_string(),
                "reshard",
                "status",
                "--wait",
            ],
            false,
        );
        assert_eq!(code, 1);
        assert_eq!(
            out,
            "state:failed\nkeys_moved:7\nerror:ERR s3 unreachable\n"
        );
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 3, "{err:?}");
        assert!(lines[0].starts_with("reshard running [") && lines[0].contains("52%"));
        assert!(lines[1].starts_with("reshard failed ["));
        assert_eq!(lines[2], "reshard failed: ERR s3 unreachable");
        assert!(!err.contains('\r'));
        h.join().unwrap();
    }

    #[test]
    fn smoke_reshard_status_and_errors() {
        let (port, h) = fake_server(vec![bulk("state:idle\r\npools:\r\n")]);
        let (code, out, _) = run_args(
            &["shoal-cli", "-p", &port.to_string(), "reshard", "status"],
            false,
        );
        assert_eq!((code, out.as_str()), (0, "state:idle\npools:\n"));
        h.join().unwrap();

        let (port, h) = fake_server(vec![b"-ERR a reshard is already in progress\r\n"]);
        let (code, out, _) = run_args(
            &[
                "shoal-cli",
                "-p",
                &port.to_string(),
                "reshard",
                "remove",
                "s2",
                "--wait",
            ],
            false,
        );
        assert_eq!(code, 1);
        assert_eq!(out, "(error) ERR a reshard is already in progress\n");
        h.join().unwrap();

        let (code, _, err) = run_args(&["shoal-cli", "reshard", "pause", "--wait"], false);
        assert_eq!(code, 2);
        assert!(err.contains("--wait is not allowed"), "{err}");
    }
}
