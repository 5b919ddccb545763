//! RESP and memcache share one keyspace in shoal-server. These tests only make sense
//! against shoal itself (there is no reference server speaking both protocols).

use shoal_tests::memcache::McConn;
use shoal_tests::resp::RespConn;
use shoal_tests::{escape, spawn_shoal, ServerProc};

struct Both {
    _server: ServerProc,
    resp: RespConn,
    mc: McConn,
}

fn start() -> Both {
    let server = spawn_shoal();
    let resp = RespConn::connect(server.resp_port());
    let mc = McConn::connect(server.memcache_port());
    Both {
        _server: server,
        resp,
        mc,
    }
}

fn mc(b: &mut Both, req: &str) -> String {
    let r = b.mc.request(req.as_bytes());
    r.describe()
}

fn resp(b: &mut Both, args: &[&str]) -> String {
    escape(&b.resp.call(args))
}

#[test]
fn resp_set_is_visible_to_memcache_get() {
    let mut b = start();
    assert_eq!(resp(&mut b, &["SET", "shared", "hello"]), "+OK\\r\\n");
    assert_eq!(
        mc(&mut b, "get shared\r\n"),
        "VALUE shared 0 5\\r\\n<data hello>\\r\\nEND\\r\\n"
    );
    // binary-safe both ways
    assert_eq!(resp(&mut b, &["SET", "bin", "a\r\nb"]), "+OK\\r\\n");
    assert_eq!(
        mc(&mut b, "get bin\r\n"),
        "VALUE bin 0 4\\r\\n<data a\\r\\nb>\\r\\nEND\\r\\n"
    );
    // RESP INCR produces a number memcache can incr further
    assert_eq!(resp(&mut b, &["SET", "n", "41"]), "+OK\\r\\n");
    assert_eq!(mc(&mut b, "incr n 1\r\n"), "42\\r\\n");
    assert_eq!(resp(&mut b, &["GET", "n"]), "$2\\r\\n42\\r\\n");
}

#[test]
fn memcache_set_with_flags_is_a_resp_string() {
    let mut b = start();
    assert_eq!(mc(&mut b, "set mkey 42 0 5\r\nworld\r\n"), "STORED\\r\\n");
    assert_eq!(resp(&mut b, &["GET", "mkey"]), "$5\\r\\nworld\\r\\n");
    assert_eq!(resp(&mut b, &["TYPE", "mkey"]), "+string\\r\\n");
    assert_eq!(resp(&mut b, &["STRLEN", "mkey"]), ":5\\r\\n");
    // flags survive a RESP read, and a RESP APPEND keeps the value a string
    assert_eq!(
        mc(&mut b, "get mkey\r\n"),
        "VALUE mkey 42 5\\r\\n<data world>\\r\\nEND\\r\\n"
    );
    // memcache exptime is visible as a RESP TTL
    assert_eq!(mc(&mut b, "set ttl 0 100 1\r\nx\r\n"), "STORED\\r\\n");
    let ttl = resp(&mut b, &["TTL", "ttl"]);
    assert!(
        ttl == ":100\\r\\n" || ttl == ":99\\r\\n",
        "TTL after memcache exptime 100: {ttl}"
    );
}

#[test]
fn resp_del_makes_memcache_miss() {
    let mut b = start();
    assert_eq!(mc(&mut b, "set gone 0 0 1\r\nx\r\n"), "STORED\\r\\n");
    assert_eq!(resp(&mut b, &["DEL", "gone"]), ":1\\r\\n");
    assert_eq!(mc(&mut b, "get gone\r\n"), "END\\r\\n");
    assert_eq!(mc(&mut b, "set gone2 0 0 1\r\nx\r\n"), "STORED\\r\\n");
    assert_eq!(resp(&mut b, &["FLUSHALL"]), "+OK\\r\\n");
    assert_eq!(mc(&mut b, "get gone2\r\n"), "END\\r\\n");
    assert_eq!(resp(&mut b, &["SET", "r", "v", "PX", "1"]), "+OK\\r\\n");
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(mc(&mut b, "get r\r\n"), "END\\r\\n");
    // and the other way round
    assert_eq!(resp(&mut b, &["SET", "m", "v"]), "+OK\\r\\n");
    assert_eq!(mc(&mut b, "delete m\r\n"), "DELETED\\r\\n");
    assert_eq!(resp(&mut b, &["EXISTS", "m"]), ":0\\r\\n");
}

#[test]
fn memcache_cas_after_resp_write_fails() {
    let mut b = start();
    assert_eq!(mc(&mut b, "set c 0 0 1\r\na\r\n"), "STORED\\r\\n");
    let gets = b.mc.request(b"gets c\r\n");
    let line = String::from_utf8_lossy(gets.lines().next().expect("gets line")).into_owned();
    let cas = line
        .split(' ')
        .nth(4)
        .unwrap_or_else(|| panic!("no cas id in {line:?}"))
        .to_string();
    assert_eq!(resp(&mut b, &["SET", "c", "b"]), "+OK\\r\\n");
    assert_eq!(
        mc(&mut b, &format!("cas c 0 0 1 {cas}\r\nz\r\n")),
        "EXISTS\\r\\n"
    );
    assert_eq!(resp(&mut b, &["GET", "c"]), "$1\\r\\nb\\r\\n");
    // a fresh cas id works
    let gets = b.mc.request(b"gets c\r\n");
    let line = String::from_utf8_lossy(gets.lines().next().expect("gets line")).into_owned();
    let cas2 = line.split(' ').nth(4).expect("cas id").to_string();
    assert_ne!(cas, cas2, "a RESP write must change the cas id");
    assert_eq!(
        mc(&mut b, &format!("cas c 0 0 1 {cas2}\r\nz\r\n")),
        "STORED\\r\\n"
    );
    // other RESP writes change the cas id too
    for write in [
        &["APPEND", "c", "x"][..],
        &["SETRANGE", "c", "0", "q"],
        &["GETSET", "c", "7"],
        &["INCR", "c"],
    ] {
        let gets = b.mc.request(b"gets c\r\n");
        let line = String::from_utf8_lossy(gets.lines().next().expect("gets line")).into_owned();
        let id = line.split(' ').nth(4).expect("cas id").to_string();
        resp(&mut b, write);
        let got = mc(&mut b, &format!("cas c 0 0 1 {id}\r\nw\r\n"));
        assert_eq!(got, "EXISTS\\r\\n", "cas after RESP {write:?}");
    }
}
