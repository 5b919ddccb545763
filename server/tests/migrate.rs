//! Live resharding primitives (docs/resharding-server.md): SHOAL.ASK, the
//! memcache `shoal.ask` prefix, RESP on the memcache port, SHOAL.MIGRATE /
//! SHOAL.IMPORT / SHOAL.WAITALL, with replicas on both sides. Servers run
//! in-process on `127.0.0.1:0` listeners.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use shoal_client::resp::{decode_reply, Proto, Value};
use shoal_server::{start_with_listeners, ServerConfig, ServerHandle};

struct Server {
    handle: ServerHandle,
}

impl Server {
    fn start(threads: usize, requirepass: Option<&str>) -> Server {
        let resp = TcpListener::bind("127.0.0.1:0").expect("bind resp");
        let mc = TcpListener::bind("127.0.0.1:0").expect("bind memcache");
        let config = ServerConfig {
            port: 0,
            memcache_port: 0,
            threads,
            requirepass: requirepass.map(str::to_string),
            masterauth: requirepass.map(str::to_string),
            loglevel: "warn".into(),
            ..ServerConfig::default()
        };
        let handle = start_with_listeners(config, vec![resp], vec![mc]).expect("start server");
        Server { handle }
    }

    fn port(&self) -> u16 {
        self.handle.resp_addr().expect("resp addr").port()
    }

    fn mc_port(&self) -> u16 {
        self.handle.memcache_addr().expect("memcache addr").port()
    }

    fn client(&self) -> Client {
        Client::connect(self.port())
    }

    fn mc(&self) -> Mc {
        Mc::connect(self.mc_port())
    }
}

struct Client {
    s: TcpStream,
    buf: BytesMut,
    proto: Proto,
}

impl Client {
    fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_nodelay(true).unwrap();
        Client {
            s,
            buf: BytesMut::new(),
            proto: Proto::Resp2,
        }
    }

    fn send(&mut self, args: &[&str]) {
        let mut out = BytesMut::new();
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        shoal_client::resp::encode_command(&args, &mut out);
        self.s.write_all(&out).expect("write");
    }

    /// The next reply, decoded and as raw bytes.
    fn read_raw(&mut self) -> (Value, Vec<u8>) {
        loop {
            let before = self.buf.clone();
            match decode_reply(&mut self.buf, self.proto) {
                Ok(Some(v)) => {
                    let used = before.len() - self.buf.len();
                    return (v, before[..used].to_vec());
                }
                Ok(None) => {}
                Err(e) => panic!("bad reply {e:?}: {:?}", String::from_utf8_lossy(&before)),
            }
            let mut tmp = [0u8; 65536];
            let n = self.s.read(&mut tmp).expect("read reply");
            assert!(n > 0, "server closed the connection");
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }

    fn read(&mut self) -> Value {
        self.read_raw().0
    }

    fn cmd(&mut self, args: &[&str]) -> Value {
        self.send(args);
        self.read()
    }

    fn raw(&mut self, args: &[&str]) -> Vec<u8> {
        self.send(args);
        self.read_raw().1
    }

    fn ok(&mut self, args: &[&str]) {
        let v = self.cmd(args);
        assert!(
            matches!(&v, Value::Simple(s) if &s[..] == b"OK"),
            "{args:?}: {v:?}"
        );
    }

    /// An integer reply; for SHOAL.MIGRATE (`[moved, bytes]`) the keys moved.
    fn int(&mut self, args: &[&str]) -> i64 {
        match self.cmd(args) {
            Value::Int(n) => n,
            Value::Array(v) if args[0] == "SHOAL.MIGRATE" && v.len() == 2 => match (&v[0], &v[1]) {
                (Value::Int(n), Value::Int(b)) => {
                    assert!(
                        (*n == 0) == (*b == 0),
                        "{args:?}: moved {n} keys in {b} bytes"
                    );
                    *n
                }
                _ => panic!("{args:?}: expected [moved, bytes], got {v:?}"),
            },
            v => panic!("{args:?}: expected an integer, got {v:?}"),
        }
    }

    fn err(&mut self, args: &[&str]) -> String {
        match self.cmd(args) {
            Value::Error(e) => String::from_utf8_lossy(&e).into_owned(),
            v => panic!("{args:?}: expected an error, got {v:?}"),
        }
    }

    fn bulk(&mut self, args: &[&str]) -> Option<String> {
        match self.cmd(args) {
            Value::Bulk(b) => Some(String::from_utf8_lossy(&b).into_owned()),
            Value::Nil => None,
            v => panic!("{args:?}: expected a bulk string, got {v:?}"),
        }
    }

    fn info(&mut self, section: &str) -> String {
        match self.cmd(&["INFO", section]) {
            Value::Bulk(b) | Value::Verbatim(b) => String::from_utf8_lossy(&b).into_owned(),
            v => panic!("INFO: {v:?}"),
        }
    }

    fn digest(&mut self, key: &str) -> String {
        match self.cmd(&["DEBUG", "DIGEST-VALUE", key]) {
            Value::Array(v) => match &v[0] {
                Value::Simple(s) => String::from_utf8_lossy(s).into_owned(),
                x => panic!("digest {x:?}"),
            },
            v => panic!("DEBUG DIGEST-VALUE: {v:?}"),
        }
    }
}

fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(str::to_string)
}

/// A memcache connection: raw requests, replies read until `n` lines arrived.
struct Mc {
    s: TcpStream,
}

impl Mc {
    fn connect(port: u16) -> Mc {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect memcache");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Mc { s }
    }

    fn call(&mut self, req: &str, lines: usize) -> String {
        self.s.write_all(req.as_bytes()).expect("write");
        let mut got = Vec::new();
        while got.windows(2).filter(|w| w == b"\r\n").count() < lines {
            let mut tmp = [0u8; 4096];
            let n = self.s.read(&mut tmp).expect("read memcache reply");
            assert!(n > 0, "memcache connection closed after {req:?}");
            got.extend_from_slice(&tmp[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    }
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Makes `replica` replicate from `primary` and waits until the link is up
/// and the primary lists it online.
fn attach_replica(primary: &Server, replica: &Server) {
    let mut r = replica.client();
    if let Some(pw) = replica.handle.shared().config.requirepass.clone() {
        r.ok(&["AUTH", &pw]);
    }
    r.ok(&["REPLICAOF", "127.0.0.1", &primary.port().to_string()]);
    wait_until("replica link up", Duration::from_secs(10), || {
        info_field(&r.info("replication"), "master_link_status").as_deref() == Some("up")
    });
    let mut p = primary.client();
    if let Some(pw) = primary.handle.shared().config.requirepass.clone() {
        p.ok(&["AUTH", &pw]);
    }
    wait_until("replica online", Duration::from_secs(10), || {
        info_field(&p.info("replication"), "slave0").is_some_and(|s| s.contains("state=online"))
    });
}

#[test]
fn ask_resp_all_none_mixed() {
    let srv = Server::start(2, None);
    let mut c = srv.client();
    c.ok(&["SET", "a", "1"]);
    c.ok(&["SET", "b", "2"]);
    c.int(&["HSET", "h", "f", "v", "g", "w"]);

    // All keys here: the same reply as the plain command, byte for byte.
    for args in [
        &["GET", "a"][..],
        &["MGET", "a", "b"],
        &["EXISTS", "a", "b"],
        &["HGETALL", "h"],
        &["TYPE", "h"],
        &["STRLEN", "a"],
    ] {
        let plain = c.raw(args);
        let mut asked = vec!["SHOAL.ASK"];
        asked.extend_from_slice(args);
        assert_eq!(c.raw(&asked), plain, "{args:?}");
    }
    assert_eq!(c.int(&["SHOAL.ASK", "INCR", "a"]), 2);
    assert_eq!(c.bulk(&["GET", "a"]).as_deref(), Some("2"));
    c.ok(&["SHOAL.ASK", "MSET", "a", "5", "b", "6"]);
    assert_eq!(c.bulk(&["GET", "b"]).as_deref(), Some("6"));

    // None here: SHOALMOVED, and nothing ran.
    assert_eq!(c.err(&["SHOAL.ASK", "GET", "nope"]), "SHOALMOVED");
    assert_eq!(c.err(&["SHOAL.ASK", "SET", "nope", "x"]), "SHOALMOVED");
    assert_eq!(c.err(&["SHOAL.ASK", "DEL", "x", "y"]), "SHOALMOVED");
    assert_eq!(c.int(&["EXISTS", "nope"]), 0);

    // Some here: TRYAGAIN.
    let e = c.err(&["SHOAL.ASK", "MGET", "a", "nope"]);
    assert_eq!(
        e,
        "TRYAGAIN shoal: keys are split across shards while resharding"
    );
    assert!(c
        .err(&["SHOAL.ASK", "RENAME", "a", "fresh"])
        .starts_with("TRYAGAIN"));
    assert!(c
        .err(&["SHOAL.ASK", "ZUNIONSTORE", "d", "2", "a", "b"])
        .starts_with("TRYAGAIN"));
    assert_eq!(c.bulk(&["GET", "a"]).as_deref(), Some("5"));

    // An expired key does not exist.
    c.ok(&["SET", "e", "1", "PX", "1"]);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(c.err(&["SHOAL.ASK", "GET", "e"]), "SHOALMOVED");

    // Keyless commands run; the inner command's own errors come through.
    assert_eq!(c.raw(&["SHOAL.ASK", "PING"]), b"+PONG\r\n");
    assert!(c
        .err(&["SHOAL.ASK", "NOSUCH", "a"])
        .starts_with("ERR unknown command 'NOSUCH'"));
    assert_eq!(
        c.err(&["SHOAL.ASK", "GET"]),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        c.err(&["SHOAL.ASK"]),
        "ERR wrong number of arguments for 'shoal.ask' command"
    );
    assert!(c
        .err(&["SHOAL.ASK", "SHOAL.ASK", "GET", "a"])
        .starts_with("ERR"));
    assert!(c.err(&["SHOAL.ASK", "WRONGTYPE-CHECK"]).starts_with("ERR"));
    assert!(c
        .err(&["SHOAL.ASK", "LPUSH", "a", "x"])
        .starts_with("WRONGTYPE"));

    // Not inside MULTI.
    c.ok(&["MULTI"]);
    assert!(c.err(&["SHOAL.ASK", "GET", "a"]).starts_with("ERR"));
    assert!(c.err(&["EXEC"]).starts_with("EXECABORT"));

    // RESP3: same replies as the plain commands.
    c.send(&["HELLO", "3"]);
    c.proto = Proto::Resp3;
    let _ = c.read();
    for args in [&["HGETALL", "h"][..], &["GET", "a"], &["GET", "nope"]] {
        let plain = c.raw(args);
        let mut asked = vec!["SHOAL.ASK"];
        asked.extend_from_slice(args);
        let got = c.raw(&asked);
        if args[1] == "nope" {
            assert_eq!(got, b"-SHOALMOVED\r\n");
        } else {
            assert_eq!(got, plain, "{args:?}");
        }
    }
}

#[test]
fn ask_respects_auth() {
    let srv = Server::start(1, Some("pw"));
    let mut c = srv.client();
    assert!(c.err(&["SHOAL.ASK", "GET", "a"]).starts_with("NOAUTH"));
    c.ok(&["AUTH", "pw"]);
    assert_eq!(c.err(&["SHOAL.ASK", "GET", "a"]), "SHOALMOVED");
}

#[test]
fn ask_replicates_the_inner_command() {
    let primary = Server::start(2, None);
    let replica = Server::start(1, None);
    attach_replica(&primary, &replica);
    let mut p = primary.client();
    p.ok(&["SET", "k", "1"]);
    p.int(&["RPUSH", "l", "a", "b"]);
    assert_eq!(p.int(&["SHOAL.ASK", "INCRBY", "k", "41"]), 42);
    assert_eq!(p.int(&["SHOAL.ASK", "RPUSH", "l", "c"]), 3);
    assert_eq!(p.int(&["SHOAL.WAITALL", "5000"]), 1);
    let mut r = replica.client();
    assert_eq!(r.bulk(&["GET", "k"]).as_deref(), Some("42"));
    assert_eq!(p.digest("l"), r.digest("l"));
    assert_eq!(p.digest("k"), r.digest("k"));
}

#[test]
fn ask_memcache() {
    let srv = Server::start(2, None);
    let mut m = srv.mc();
    assert_eq!(m.call("set k 5 0 5\r\nhello\r\n", 1), "STORED\r\n");
    assert_eq!(m.call("set n 0 0 2\r\n10\r\n", 1), "STORED\r\n");

    let plain = m.call("get k\r\n", 3);
    assert_eq!(m.call("shoal.ask get k\r\n", 3), plain);
    let plain = m.call("gets k\r\n", 3);
    assert_eq!(m.call("shoal.ask gets k\r\n", 3), plain);
    assert_eq!(m.call("shoal.ask get nope\r\n", 1), "SHOAL_MOVED\r\n");
    assert_eq!(m.call("shoal.ask gets k nope\r\n", 1), "SHOAL_TRYAGAIN\r\n");
    assert_eq!(
        m.call("shoal.ask gets k n\r\n", 5).matches("VALUE").count(),
        2
    );

    // Storage commands: the data block is consumed whatever the verdict.
    assert_eq!(
        m.call("shoal.ask set k 0 0 5\r\nworld\r\n", 1),
        "STORED\r\n"
    );
    assert_eq!(
        m.call("shoal.ask set new 0 0 5\r\nhello\r\n", 1),
        "SHOAL_MOVED\r\n"
    );
    assert_eq!(
        m.call("shoal.ask set new 0 0 5 noreply\r\nhello\r\n", 1),
        "SHOAL_MOVED\r\n"
    );
    assert_eq!(m.call("get new\r\n", 1), "END\r\n");
    assert_eq!(
        m.call("shoal.ask cas new 0 0 1 77\r\nx\r\n", 1),
        "SHOAL_MOVED\r\n"
    );
    let gets = m.call("gets k\r\n", 3);
    let cas = gets
        .split("\r\n")
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(m.call("shoal.ask cas k 0 0 1 77\r\nx\r\n", 1), "EXISTS\r\n");
    assert_eq!(
        m.call(&format!("shoal.ask cas k 0 0 1 {cas}\r\nx\r\n"), 1),
        "STORED\r\n"
    );
    assert_eq!(m.call("get k\r\n", 3), "VALUE k 0 1\r\nx\r\nEND\r\n");
    assert_eq!(m.call("shoal.ask incr n 5\r\n", 1), "15\r\n");
    assert_eq!(m.call("shoal.ask incr nope 5\r\n", 1), "SHOAL_MOVED\r\n");
    assert_eq!(m.call("shoal.ask touch k 10\r\n", 1), "TOUCHED\r\n");
    let plain = m.call("mg k v\r\n", 2);
    assert!(plain.starts_with("VA 1"), "{plain}");
    assert_eq!(m.call("shoal.ask mg k v\r\n", 2), plain);
    assert_eq!(m.call("shoal.ask mg nope v q\r\n", 1), "SHOAL_MOVED\r\n");
    assert_eq!(m.call("shoal.ask mn\r\n", 1), "MN\r\n");
    assert_eq!(m.call("shoal.ask delete k\r\n", 1), "DELETED\r\n");
    assert_eq!(m.call("shoal.ask delete k\r\n", 1), "SHOAL_MOVED\r\n");
    // Pipelined, with a data block in the middle.
    assert_eq!(
        m.call(
            "shoal.ask set x 0 0 3\r\nabc\r\nshoal.ask get n\r\nget x\r\n",
            5
        ),
        "SHOAL_MOVED\r\nVALUE n 0 2\r\n15\r\nEND\r\nEND\r\n"
    );
    // A value of a RESP type exists too.
    let mut c = srv.client();
    c.int(&["SADD", "s", "m"]);
    assert_ne!(m.call("shoal.ask delete s\r\n", 1), "SHOAL_MOVED\r\n");
}

#[test]
fn resp_on_the_memcache_port() {
    let srv = Server::start(2, None);
    let mut c = Client::connect(srv.mc_port());
    assert_eq!(c.raw(&["PING"]), b"+PONG\r\n");
    c.ok(&["SET", "k", "v"]);
    let info = c.info("server");
    assert_eq!(
        info_field(&info, "memcache_port"),
        Some(srv.mc_port().to_string())
    );
    assert_eq!(info_field(&info, "tcp_port"), Some(srv.port().to_string()));
    match c.cmd(&["SCAN", "0"]) {
        Value::Array(v) => assert_eq!(v.len(), 2),
        v => panic!("SCAN: {v:?}"),
    }
    // Plain memcache connections are unaffected.
    let mut m = srv.mc();
    assert_eq!(m.call("get k\r\n", 3), "VALUE k 0 1\r\nv\r\nEND\r\n");
    assert!(m.call("version\r\n", 1).starts_with("VERSION"));
}

#[test]
fn waitall() {
    let primary = Server::start(1, None);
    let mut p = primary.client();
    assert_eq!(p.int(&["SHOAL.WAITALL", "100"]), 0);
    assert!(p.err(&["SHOAL.WAITALL", "-1"]).starts_with("ERR"));
    let replica = Server::start(1, None);
    attach_replica(&primary, &replica);
    p.ok(&["SET", "k", "v"]);
    assert_eq!(p.int(&["SHOAL.WAITALL", "5000"]), 1);
    let mut r = replica.client();
    assert_eq!(r.bulk(&["GET", "k"]).as_deref(), Some("v"));
    assert!(r.err(&["SHOAL.WAITALL", "10"]).starts_with("ERR"));
    assert!(r
        .err(&["SHOAL.IMPORT", "k", "x", "0", "0", "0"])
        .starts_with("READONLY"));
    assert!(r
        .err(&["SHOAL.MIGRATE", "127.0.0.1", "1", "100", "KEYS", "k"])
        .starts_with("READONLY"));
}

/// Fills `c` with one key of every type (plus a memcache item through `m`).
fn fill(c: &mut Client, m: &mut Mc, prefix: &str) -> Vec<String> {
    let k = |s: &str| format!("{prefix}{s}");
    c.ok(&["SET", &k("str"), "value", "PX", "100000"]);
    assert_eq!(
        m.call(&format!("set {} 42 1000 5\r\nhello\r\n", k("mc")), 1),
        "STORED\r\n"
    );
    c.int(&["HSET", &k("hash"), "f1", "v1", "f2", "v2"]);
    c.int(&["RPUSH", &k("list"), "a", "b", "c", "a"]);
    c.int(&["SADD", &k("set"), "x", "y", "z"]);
    c.int(&["SADD", &k("intset"), "1", "2", "3"]);
    c.int(&["ZADD", &k("zset"), "1", "a", "2.5", "b", "-3", "c"]);
    c.int(&["PEXPIRE", &k("hash"), "500000"]);
    ["str", "mc", "hash", "list", "set", "intset", "zset"]
        .iter()
        .map(|s| k(s))
        .collect()
}

#[test]
fn migrate_moves_every_type_with_ttl_flags_and_cas() {
    let src = Server::start(2, None);
    let dst = Server::start(2, None);
    let mut s = src.client();
    let mut sm = src.mc();
    let keys = fill(&mut s, &mut sm, "");
    let digests: Vec<String> = keys.iter().map(|k| s.digest(k)).collect();
    let gets_src = sm.call("gets mc\r\n", 3);
    let mg_src = sm.call("mg mc f c\r\n", 1);
    assert!(mg_src.starts_with("HD f42 c"), "{mg_src}");

    let mut args = vec![
        "SHOAL.MIGRATE".to_string(),
        "127.0.0.1".into(),
        dst.port().to_string(),
        "5000".into(),
        "KEYS".into(),
    ];
    args.extend(keys.iter().cloned());
    args.push("missing".into());
    args.push("str".into()); // a duplicate is moved once
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(s.int(&a), keys.len() as i64);

    // Gone from src: asked commands are sent on.
    for k in &keys {
        assert_eq!(s.int(&["EXISTS", k]), 0, "{k}");
        assert_eq!(s.err(&["SHOAL.ASK", "TYPE", k]), "SHOALMOVED");
    }
    assert_eq!(sm.call("shoal.ask get mc\r\n", 1), "SHOAL_MOVED\r\n");

    // At dst, identical: value, type, expiry (digest covers all three).
    let mut d = dst.client();
    for (k, dg) in keys.iter().zip(&digests) {
        assert_eq!(&d.digest(k), dg, "{k}");
    }
    let pttl = d.int(&["PTTL", "str"]);
    assert!(pttl > 90_000 && pttl <= 100_000, "{pttl}");
    let pttl = d.int(&["PTTL", "hash"]);
    assert!(pttl > 490_000 && pttl <= 500_000, "{pttl}");
    let mut dm = dst.mc();
    assert_eq!(dm.call("gets mc\r\n", 3), gets_src);
    assert_eq!(dm.call("mg mc f c\r\n", 1), mg_src);
    let ttl = dm.call("mg mc t\r\n", 1);
    let t: i64 = ttl.trim().strip_prefix("HD t").unwrap().parse().unwrap();
    assert!((990..=1000).contains(&t), "{ttl}");
    assert_eq!(
        d.cmd(&["ZRANGE", "zset", "0", "-1", "WITHSCORES"]),
        Value::Array(
            ["c", "-3", "a", "1", "b", "2.5"]
                .iter()
                .map(|x| Value::Bulk(bytes::Bytes::from(x.to_string())))
                .collect()
        )
    );
    // New CAS values at dst are above the imported ones.
    let cas_src: u64 = gets_src
        .split("\r\n")
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(dm.call("set other 0 0 1\r\nx\r\n", 1), "STORED\r\n");
    let g = dm.call("gets other\r\n", 3);
    let cas_new: u64 = g
        .split("\r\n")
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(cas_new > cas_src, "{cas_new} <= {cas_src}");
    // Asked at dst, the keys are here.
    assert_eq!(
        d.bulk(&["SHOAL.ASK", "GET", "str"]).as_deref(),
        Some("value")
    );

    // Nothing to move: 0. Through dst's memcache port (RESP there too).
    assert_eq!(
        s.int(&[
            "SHOAL.MIGRATE",
            "127.0.0.1",
            &dst.mc_port().to_string(),
            "1000",
            "KEYS",
            "str"
        ]),
        0
    );
    let more = fill(&mut s, &mut sm, "b-");
    let mut args = vec![
        "SHOAL.MIGRATE".to_string(),
        "127.0.0.1".into(),
        dst.mc_port().to_string(),
        "0".into(),
        "KEYS".into(),
    ];
    args.extend(more.iter().cloned());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(s.int(&a), more.len() as i64);
    assert_eq!(d.bulk(&["GET", "b-str"]).as_deref(), Some("value"));
    assert_eq!(s.int(&["EXISTS", "b-str"]), 0);

    // Argument checks.
    let p = dst.port().to_string();
    assert!(s
        .err(&["SHOAL.MIGRATE", "127.0.0.1", &p, "100", "KEY", "a"])
        .starts_with("ERR syntax"));
    assert!(s
        .err(&["SHOAL.MIGRATE", "127.0.0.1", "0", "100", "KEYS", "a"])
        .starts_with("ERR"));
    assert!(s
        .err(&["SHOAL.MIGRATE", "127.0.0.1", &p, "x", "KEYS", "a"])
        .starts_with("ERR"));
    assert!(s
        .err(&["SHOAL.MIGRATE", "127.0.0.1", &p, "100", "AUTH", "KEYS"])
        .starts_with("ERR"));
    let own = src.port().to_string();
    assert!(s
        .err(&["SHOAL.MIGRATE", "localhost", &own, "100", "KEYS", "a"])
        .contains("this server"));
    let mut big = vec!["SHOAL.MIGRATE", "127.0.0.1", &p, "100", "KEYS"];
    big.extend(std::iter::repeat_n("k", 10_001));
    assert!(s.err(&big).contains("at most 10000 keys"));
    s.ok(&["MULTI"]);
    s.send(&["SHOAL.MIGRATE", "127.0.0.1", &p, "100", "KEYS", "a"]);
    let _ = s.read();
    match s.cmd(&["EXEC"]) {
        Value::Array(v) => assert!(matches!(&v[0], Value::Error(_)), "{v:?}"),
        v => panic!("EXEC: {v:?}"),
    }
}

#[test]
fn migrate_with_auth_and_replicas_on_both_sides() {
    let src = Server::start(2, Some("pw"));
    let src_replica = Server::start(1, Some("pw"));
    let dst = Server::start(2, Some("pw"));
    let dst_replica = Server::start(1, Some("pw"));
    attach_replica(&src, &src_replica);
    attach_replica(&dst, &dst_replica);
    let mut s = src.client();
    s.ok(&["AUTH", "pw"]);
    let mut sm = src.mc();
    let keys = fill(&mut s, &mut sm, "r-");
    assert_eq!(s.int(&["SHOAL.WAITALL", "5000"]), 1);
    let mut sr = src_replica.client();
    sr.ok(&["AUTH", "pw"]);
    for k in &keys {
        assert_eq!(sr.int(&["EXISTS", k]), 1, "{k}");
    }
    let digests: Vec<String> = keys.iter().map(|k| s.digest(k)).collect();

    // Wrong password for dst: refused, keys stay.
    let mut args = vec![
        "SHOAL.MIGRATE".to_string(),
        "127.0.0.1".into(),
        dst.port().to_string(),
        "2000".into(),
        "AUTH".into(),
        "wrong".into(),
        "KEYS".into(),
    ];
    args.extend(keys.iter().cloned());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    assert!(s.err(&a).starts_with("IOERR shoal migrate:"));
    assert_eq!(s.int(&["EXISTS", &keys[0]]), 1);

    args[5] = "pw".into();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(s.int(&a), keys.len() as i64);
    // When MIGRATE returns: dst's replica has the keys, src's replica the DELs.
    let mut dr = dst_replica.client();
    dr.ok(&["AUTH", "pw"]);
    for (k, dg) in keys.iter().zip(&digests) {
        assert_eq!(&dr.digest(k), dg, "{k} at dst's replica");
        assert_eq!(sr.int(&["EXISTS", k]), 0, "{k} at src's replica");
    }
    let mut d = dst.client();
    d.ok(&["AUTH", "pw"]);
    for (k, dg) in keys.iter().zip(&digests) {
        assert_eq!(&d.digest(k), dg, "{k} at dst");
    }
    // A second batch reuses the cached connection.
    s.ok(&["SET", "again", "1"]);
    assert_eq!(
        s.int(&[
            "SHOAL.MIGRATE",
            "127.0.0.1",
            &dst.port().to_string(),
            "2000",
            "AUTH",
            "pw",
            "KEYS",
            "again"
        ]),
        1
    );
    assert_eq!(dr.bulk(&["GET", "again"]).as_deref(), Some("1"));
}

#[test]
fn migrate_to_an_unreachable_target_keeps_the_keys() {
    let src = Server::start(1, None);
    let mut s = src.client();
    s.ok(&["SET", "k", "v"]);
    s.int(&["RPUSH", "l", "a"]);
    // A port nothing listens on.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = s.err(&[
        "SHOAL.MIGRATE",
        "127.0.0.1",
        &port.to_string(),
        "500",
        "KEYS",
        "k",
        "l",
    ]);
    assert!(e.starts_with("IOERR shoal migrate: "), "{e}");
    assert_eq!(s.bulk(&["GET", "k"]).as_deref(), Some("v"));
    assert_eq!(s.bulk(&["SHOAL.ASK", "GET", "k"]).as_deref(), Some("v"));
    assert_eq!(s.int(&["SHOAL.ASK", "LLEN", "l"]), 1);
}

#[test]
fn keys_in_flight_answer_tryagain() {
    // A target that accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in silent.incoming() {
            match s {
                Ok(s) => held.push(s),
                Err(_) => break,
            }
        }
    });
    // One worker thread: the migrating connection must not block the others.
    let src = Server::start(1, None);
    let mut s = src.client();
    s.ok(&["SET", "k", "v"]);
    s.ok(&["SET", "other", "o"]);
    let mut migrator = src.client();
    migrator.send(&[
        "SHOAL.MIGRATE",
        "127.0.0.1",
        &silent_port.to_string(),
        "700",
        "KEYS",
        "k",
    ]);
    let mut m = src.mc();
    wait_until(
        "k in flight",
        Duration::from_secs(5),
        || matches!(s.cmd(&["SHOAL.ASK", "GET", "k"]), Value::Error(e) if &e[..] == b"TRYAGAIN shoal: key is being migrated"),
    );
    assert_eq!(m.call("shoal.ask get k\r\n", 1), "SHOAL_TRYAGAIN\r\n");
    assert_eq!(
        m.call("shoal.ask set k 0 0 1\r\nx\r\n", 1),
        "SHOAL_TRYAGAIN\r\n"
    );
    // Plain commands and other keys are not held up.
    assert_eq!(s.bulk(&["GET", "k"]).as_deref(), Some("v"));
    assert_eq!(s.bulk(&["SHOAL.ASK", "GET", "other"]).as_deref(), Some("o"));
    // A second migration skips keys already in flight.
    assert_eq!(
        s.int(&[
            "SHOAL.MIGRATE",
            "127.0.0.1",
            &silent_port.to_string(),
            "700",
            "KEYS",
            "k"
        ]),
        0
    );
    let e = match migrator.read() {
        Value::Error(e) => String::from_utf8_lossy(&e).into_owned(),
        v => panic!("{v:?}"),
    };
    assert!(e.starts_with("IOERR shoal migrate: "), "{e}");
    assert_eq!(s.bulk(&["SHOAL.ASK", "GET", "k"]).as_deref(), Some("v"));

    // The client that asked goes away mid-migration: the marks still go.
    let mut gone = src.client();
    gone.send(&[
        "SHOAL.MIGRATE",
        "127.0.0.1",
        &silent_port.to_string(),
        "300",
        "KEYS",
        "k",
    ]);
    wait_until("k in flight again", Duration::from_secs(5), || {
        matches!(s.cmd(&["SHOAL.ASK", "GET", "k"]), Value::Error(_))
    });
    drop(gone);
    wait_until("k released", Duration::from_secs(10), || {
        matches!(s.cmd(&["SHOAL.ASK", "GET", "k"]), Value::Bulk(_))
    });
    assert_eq!(src.handle.shared().reshard.in_flight(), 0);
}

/// SHOAL.SCAN walks like SCAN and returns exactly the keys whose ring hash (of the
/// hash-tag part) is in one of the ranges; bad arguments get errors.
#[test]
fn scan_by_hash_ranges() {
    use shoal_client::ring::{hash_tag, HashKind};
    let server = Server::start(2, None);
    let mut c = server.client();
    let keys: Vec<String> = (0..3000)
        .map(|i| {
            if i % 3 == 0 {
                format!("{{t{}}}:k{i}", i % 7)
            } else {
                format!("k{i}")
            }
        })
        .collect();
    for k in &keys {
        c.ok(&["SET", k, "v"]);
    }
    let ranges = [
        (0u32, 600_000_000u32),
        (1_500_000_000, 1_500_000_000),
        (3_000_000_000, u32::MAX),
    ];
    for (hash, tag) in [(HashKind::Fnv1a_64, Some(*b"{}")), (HashKind::Murmur, None)] {
        let h = |k: &str| hash.hash(hash_tag(k.as_bytes(), tag));
        let want: std::collections::BTreeSet<String> = keys
            .iter()
            .filter(|k| ranges.iter().any(|&(lo, hi)| lo <= h(k) && h(k) <= hi))
            .cloned()
            .collect();
        assert!(want.len() > 500 && want.len() < 2500, "{}", want.len());
        let tag_s = tag.map_or(String::new(), |t| String::from_utf8_lossy(&t).into_owned());
        let nums: Vec<String> = ranges
            .iter()
            .flat_map(|(lo, hi)| [lo.to_string(), hi.to_string()])
            .collect();
        let mut got = std::collections::BTreeSet::new();
        let mut cursor = "0".to_string();
        for _ in 0..10_000 {
            let mut args = vec![
                "SHOAL.SCAN",
                &cursor,
                "COUNT",
                "100",
                "HASH",
                hash.name(),
                "TAG",
                &tag_s,
                "RANGES",
            ];
            args.extend(nums.iter().map(String::as_str));
            let Value::Array(v) = c.cmd(&args) else {
                panic!("SHOAL.SCAN reply")
            };
            let (Value::Bulk(next), Value::Array(ks)) = (&v[0], &v[1]) else {
                panic!("{v:?}")
            };
            for k in ks {
                let Value::Bulk(k) = k else { panic!("{k:?}") };
                assert!(
                    got.insert(String::from_utf8_lossy(k).into_owned()),
                    "returned twice"
                );
            }
            cursor = String::from_utf8_lossy(next).into_owned();
            if cursor == "0" {
                break;
            }
        }
        assert_eq!(cursor, "0", "the scan did not end");
        assert_eq!(got, want, "{hash:?}");
    }
    let base = [
        "SHOAL.SCAN",
        "0",
        "COUNT",
        "10",
        "HASH",
        "fnv1a_64",
        "TAG",
        "",
    ];
    fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        a
    }
    assert!(c.err(&with(&base, &["RANGES", "5", "4"])).contains("range"));
    assert!(c
        .err(&with(&base, &["RANGES", "1", "4294967296"]))
        .contains("range"));
    assert!(c
        .err(&with(&base, &["RANGES", "1"]))
        .starts_with("ERR syntax"));
    assert!(c
        .err(&[
            "SHOAL.SCAN",
            "0",
            "COUNT",
            "10",
            "HASH",
            "nope",
            "TAG",
            "",
            "RANGES",
            "1",
            "2"
        ])
        .contains("unknown hash"));
    assert!(c
        .err(&[
            "SHOAL.SCAN",
            "0",
            "COUNT",
            "10",
            "HASH",
            "md5",
            "TAG",
            "{",
            "RANGES",
            "1",
            "2"
        ])
        .contains("tag"));
    assert!(c
        .err(&[
            "SHOAL.SCAN",
            "x",
            "COUNT",
            "10",
            "HASH",
            "md5",
            "TAG",
            "",
            "RANGES",
            "1",
            "2"
        ])
        .contains("cursor"));
}

/// The SCAN form of SHOAL.MIGRATE: each slice of the source's keyspace is walked from
/// cursor 0 to the end; exactly the keys whose ring hash is in the ranges move (with
/// their values), `LIMIT` bounds each call, and the reply counts what was visited.
#[test]
fn migrate_scan_form_moves_the_ranges() {
    use shoal_client::ring::{hash_tag, HashKind};
    let src = Server::start(2, None);
    let dst = Server::start(1, None);
    let mut s = src.client();
    let keys: Vec<String> = (0..4000).map(|i| format!("m{{{}}}:{i}", i % 500)).collect();
    for k in &keys {
        s.ok(&["SET", k, &format!("v-{k}")]);
    }
    let ranges = [(0u32, 1_000_000_000u32), (2_000_000_000, 2_500_000_000)];
    let h = |k: &str| HashKind::Fnv1a_64.hash(hash_tag(k.as_bytes(), Some(*b"{}")));
    let moving: Vec<&String> = keys
        .iter()
        .filter(|k| ranges.iter().any(|&(lo, hi)| lo <= h(k) && h(k) <= hi))
        .collect();
    assert!(moving.len() > 500 && moving.len() < 3500);
    let port = dst.port().to_string();
    let (mut moved, mut visited, mut calls) = (0, 0, 0);
    for slice in 0..3 {
        let mut cursor = "0".to_string();
        loop {
            let sl = slice.to_string();
            let args = [
                "SHOAL.MIGRATE",
                "127.0.0.1",
                &port,
                "5000",
                "SCAN",
                &cursor,
                "LIMIT",
                "100",
                "SLICE",
                &sl,
                "3",
                "HASH",
                "fnv1a_64",
                "TAG",
                "{}",
                "RANGES",
                "0",
                "1000000000",
                "2000000000",
                "2500000000",
            ];
            let Value::Array(v) = s.cmd(&args) else {
                panic!("SHOAL.MIGRATE SCAN reply")
            };
            let ints: Vec<i64> = v
                .iter()
                .map(|x| match x {
                    Value::Int(n) => *n,
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(ints.len(), 4, "{ints:?}");
            // LIMIT stops the walk at the end of the 256-bucket step that reached it.
            assert!(ints[0] <= 100 + 256, "LIMIT 100 moved {}", ints[0]);
            moved += ints[0];
            visited += ints[3];
            calls += 1;
            if ints[2] == 0 {
                break;
            }
            cursor = ints[2].to_string();
            assert!(calls < 10_000);
        }
    }
    assert_eq!(moved, moving.len() as i64);
    assert!(visited >= keys.len() as i64, "visited {visited}");
    let mut d = dst.client();
    assert_eq!(d.int(&["DBSIZE"]), moving.len() as i64);
    assert_eq!(s.int(&["DBSIZE"]), (keys.len() - moving.len()) as i64);
    for k in &moving {
        assert_eq!(d.bulk(&["GET", k]), Some(format!("v-{k}")), "{k}");
    }
    // Bad arguments.
    let mut bad = |args: &[&str]| {
        let mut a = vec!["SHOAL.MIGRATE", "127.0.0.1", port.as_str(), "5000", "SCAN"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["HASH", "fnv1a_64", "TAG", "", "RANGES", "1", "2"]);
        s.err(&a)
    };
    assert!(bad(&["0", "LIMIT", "0", "SLICE", "0", "1"]).contains("LIMIT"));
    assert!(bad(&["0", "LIMIT", "10", "SLICE", "1", "1"]).contains("SLICE"));
    assert!(bad(&["0", "COUNT", "10", "SLICE", "0", "1"]).starts_with("ERR syntax"));
    assert!(bad(&[
        &shoal_keyspace::scan_cursor_at_shard(200).to_string(),
        "LIMIT",
        "10",
        "SLICE",
        "0",
        "2"
    ])
    .contains("slice"));
}
