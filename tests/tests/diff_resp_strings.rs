//! Hand-written RESP cases, compared byte for byte against redis-server 7.0.
//!
//! Run against redis-server itself (`SHOAL_DIFF_TARGET=reference`) every case must pass;
//! that is how the harness checks itself.

use shoal_tests::diff::{c, diff_resp, Cmp, RespCase};

/// `c` for arguments that contain spaces.
fn a(args: &[&str]) -> RespCase {
    RespCase::cmd(args)
}

fn raw(bytes: &[u8], replies: usize) -> RespCase {
    RespCase::raw(bytes.to_vec(), replies)
}

#[test]
fn ping_echo_and_case_insensitivity() {
    diff_resp(
        "ping_echo",
        &[
            c("PING"),
            c("ping"),
            c("PiNg hello"),
            a(&["PING", ""]),
            c("PING a b"),
            c("ECHO hello"),
            a(&["ECHO", ""]),
            a(&["ECHO", "with space\r\nand crlf"]),
            c("ECHO"),
            c("ECHO a b"),
        ],
    );
}

#[test]
fn set_options() {
    diff_resp(
        "set_options",
        &[
            c("FLUSHALL"),
            c("SET k v"),
            c("GET k"),
            c("set k v2"),
            c("GET k"),
            c("GET missing"),
            a(&["SET", "empty", ""]),
            c("GET empty"),
            c("STRLEN empty"),
            c("SET k v NX"),
            c("SET nx1 v NX"),
            c("GET nx1"),
            c("SET xx1 v XX"),
            c("GET xx1"),
            c("SET k v3 XX"),
            c("GET k"),
            c("SET k v NX XX"),
            c("SET k v XX NX"),
            c("SET k v EX 100"),
            c("TTL k").within(1),
            c("SET k v PX 100000"),
            c("PTTL k").within(200),
            c("TTL k").within(1),
            c("SET k v EXAT 4102444800"),
            c("EXPIRETIME k"),
            c("SET k v PXAT 4102444800123"),
            c("PEXPIRETIME k"),
            c("EXPIRETIME k"),
            c("SET k v2 KEEPTTL"),
            c("PEXPIRETIME k"),
            c("SET k v3"),
            c("TTL k"),
            c("SET k v ex 100"),
            c("SET k v Ex 100 keepttl"),
            c("SET k v EX 10 PX 10000"),
            c("SET k v EX 10 EXAT 4102444800"),
            c("SET k v PX 10 PXAT 4102444800000"),
            c("SET k v KEEPTTL PX 10"),
            c("SET k v EX 10 EX 10"),
            c("SET k v EX"),
            c("SET k v PX"),
            c("SET k v EX 0"),
            c("SET k v EX -1"),
            c("SET k v PX 0"),
            c("SET k v PX -5"),
            c("SET k v EXAT 0"),
            c("SET k v PXAT -1"),
            c("SET k v EX abc"),
            c("SET k v EX 1.5"),
            c("SET k v EX 9223372036854775807"),
            c("SET k v PX 9223372036854775807"),
            c("SET k v EX 922337203685477580"),
            c("SET k v EXAT 9223372036854775807"),
            c("SET k v EX 99999999999999999999"),
            c("GET k"),
            c("SET k v FOO"),
            c("SET k v EX 10 FOO"),
            c("SET k"),
            c("SET"),
            c("SET k v GET"),
            c("SET k v2 GET"),
            c("SET newget v GET"),
            c("SET k v3 NX GET"),
            c("SET newnxget v NX GET"),
            c("SET k v4 XX GET"),
            c("SET missingxx v XX GET"),
            c("GET missingxx"),
            c("SET k v5 GET EX 100"),
            c("TTL k").within(1),
            c("SET k v GET GET"),
            // expire in the past deletes
            c("SET past v EXAT 1"),
            c("GET past"),
            c("EXISTS past"),
            c("SET past v PXAT 1"),
            c("EXISTS past"),
            // binary-safe values and keys
            a(&["SET", "bin\x00key", "v\r\n\x00\x7f"]),
            a(&["GET", "bin\x00key"]),
            c("SETNX nx v"),
            c("SETNX nx w"),
            c("GET nx"),
            c("SETNX nx"),
            c("SETEX se 100 v"),
            c("TTL se").within(1),
            c("GET se"),
            c("SETEX se 0 v"),
            c("SETEX se -10 v"),
            c("SETEX se abc v"),
            c("SETEX se 9223372036854775807 v"),
            c("SETEX se 10"),
            c("PSETEX pse 100000 v"),
            c("PTTL pse").within(200),
            c("PSETEX pse 0 v"),
            c("PSETEX pse -1 v"),
            c("PSETEX pse x v"),
            c("GET pse"),
        ],
    );
}

#[test]
fn short_expiry_really_expires() {
    diff_resp(
        "short_expiry",
        &[
            c("FLUSHALL"),
            c("SET a v PX 50"),
            c("SETEX b 1 v"),
            c("PSETEX c 50 v"),
            c("SET d v"),
            c("PEXPIRE d 50"),
            c("SET e v"),
            c("GETEX e PX 50"),
            RespCase::sleep(250),
            c("GET a"),
            c("EXISTS a c d e"),
            c("TTL a"),
            c("PTTL c"),
            c("DBSIZE").within(1),
            RespCase::sleep(1000),
            c("GET b"),
            c("DBSIZE"),
            c("KEYS *"),
        ],
    );
}

#[test]
fn multi_key_strings() {
    diff_resp(
        "multi_key",
        &[
            c("FLUSHALL"),
            c("MSET a 1 b 2 c 3"),
            c("MGET a b c missing a"),
            c("MGET"),
            c("MGET missing"),
            c("MSET"),
            c("MSET a"),
            c("MSET a 1 b"),
            c("MSET a 10 a 11"),
            c("GET a"),
            c("MSETNX a 1 z 26"),
            c("EXISTS z"),
            c("MSETNX y 25 z 26"),
            c("MGET y z"),
            c("MSETNX q"),
            c("MSETNX q 1 r"),
            c("MSETNX s 1 s 2"),
            c("GET s"),
            c("GETSET a new"),
            c("GETSET missing2 x"),
            c("GET missing2"),
            c("GETSET a"),
            c("SET t v EX 100"),
            c("GETSET t w"),
            c("TTL t"),
            c("GETDEL a"),
            c("GETDEL a"),
            c("EXISTS a"),
            c("GETDEL"),
            c("GETDEL a b"),
            c("SET g v"),
            c("GETEX g"),
            c("TTL g"),
            c("GETEX g EX 100"),
            c("TTL g").within(1),
            c("GETEX g PX 200000"),
            c("PTTL g").within(200),
            c("GETEX g EXAT 4102444800"),
            c("EXPIRETIME g"),
            c("GETEX g PXAT 4102444800555"),
            c("PEXPIRETIME g"),
            c("GETEX g PERSIST"),
            c("TTL g"),
            c("GETEX g EX 0"),
            c("GETEX g EX -1"),
            c("GETEX g PX 0"),
            c("GETEX g EXAT 0"),
            c("GETEX g EX abc"),
            c("GETEX g EX 10 PX 100"),
            c("GETEX g EX 10 PERSIST"),
            c("GETEX g PERSIST EX 10"),
            c("GETEX g FOO"),
            c("GETEX g EX"),
            c("GETEX g EX 9223372036854775807"),
            c("GETEX missing EX 10"),
            c("GETEX missing PERSIST"),
            c("GETEX"),
            c("GETEX g ex 100 "),
            c("TTL g").within(1),
        ],
    );
}

#[test]
fn append_strlen_counters() {
    diff_resp(
        "counters",
        &[
            c("FLUSHALL"),
            c("APPEND s ab"),
            c("APPEND s cd"),
            c("GET s"),
            c("STRLEN s"),
            c("STRLEN missing"),
            a(&["APPEND", "s", ""]),
            c("APPEND"),
            c("APPEND s"),
            c("SET n 1"),
            c("APPEND n 2"),
            c("INCR n"),
            c("INCR counter"),
            c("INCR counter"),
            c("DECR counter"),
            c("DECR newdec"),
            c("INCRBY counter 10"),
            c("INCRBY counter -20"),
            c("DECRBY counter 5"),
            c("DECRBY counter -5"),
            c("INCRBY counter abc"),
            c("INCRBY counter 1.5"),
            a(&["INCRBY", "counter", " 1"]),
            a(&["INCRBY", "counter", "1 "]),
            c("INCRBY counter +1"),
            c("INCRBY counter 01"),
            c("INCRBY counter 9223372036854775808"),
            a(&["INCRBY", "counter", ""]),
            c("GET counter"),
            c("SET str hello"),
            c("INCR str"),
            c("DECR str"),
            c("INCRBY str 1"),
            a(&["SET", "sp", " 1"]),
            c("INCR sp"),
            a(&["SET", "sp", "1 "]),
            c("INCR sp"),
            c("SET lz 007"),
            c("INCR lz"),
            c("SET pl +5"),
            c("INCR pl"),
            c("SET neg -5"),
            c("INCR neg"),
            c("SET fl 1.0"),
            c("INCR fl"),
            a(&["SET", "emp", ""]),
            c("INCR emp"),
            c("SET max 9223372036854775807"),
            c("INCR max"),
            c("INCRBY max 1"),
            c("DECR max"),
            c("GET max"),
            c("SET min -9223372036854775808"),
            c("DECR min"),
            c("DECRBY min 1"),
            c("INCR min"),
            c("SET z 0"),
            c("DECRBY z -9223372036854775808"),
            c("DECRBY z 9223372036854775807"),
            c("INCRBY z -9223372036854775808"),
            c("SET big 9223372036854775808"),
            c("INCR big"),
            c("INCR"),
            c("INCR a b"),
            c("INCRBY a"),
            c("DECRBY a"),
            c("SET ttlc 5 EX 100"),
            c("INCR ttlc"),
            c("TTL ttlc").within(1),
        ],
    );
}

#[test]
fn incrbyfloat_formatting() {
    let mut cases = vec![c("FLUSHALL")];
    for (init, incr) in [
        ("10.50", "0.1"),
        ("0.1", "0.2"),
        ("5", "-5"),
        ("5.0e3", "200"),
        ("3", "0"),
        ("1", "1e20"),
        ("1", "1.5e-10"),
        ("0", "-0.0"),
        ("-1", "0.5"),
        ("100", "1e308"),
        ("1e308", "1e308"),
        ("1", "inf"),
        ("1", "-inf"),
        ("1", "nan"),
        ("1", "abc"),
        ("1", " 1"),
        ("1", "1 "),
        ("abc", "1"),
        ("1", ""),
        ("1", "0x10"),
        ("3.0", "1.10"),
        ("1.1", "2.2"),
        ("123456789012345678", "1"),
        ("0.000000001", "0"),
        ("7", "1e-5"),
        ("1", "17E1"),
    ] {
        cases.push(a(&["SET", "f", init]));
        cases.push(a(&["INCRBYFLOAT", "f", incr]));
        cases.push(c("GET f"));
    }
    cases.extend([
        c("INCRBYFLOAT newf 2.5"),
        c("INCRBYFLOAT newf"),
        c("INCRBYFLOAT"),
        c("SET fe 1 EX 100"),
        c("INCRBYFLOAT fe 1"),
        c("TTL fe").within(1),
        c("OBJECT ENCODING newf"),
    ]);
    diff_resp("incrbyfloat", &cases);
}

#[test]
fn ranges() {
    diff_resp(
        "ranges",
        &[
            c("FLUSHALL"),
            a(&["SET", "s", "Hello World"]),
            c("GETRANGE s 0 4"),
            c("GETRANGE s -5 -1"),
            c("GETRANGE s 5 2"),
            c("GETRANGE s -100 100"),
            c("GETRANGE s 0 -100"),
            c("GETRANGE s -1 -5"),
            c("GETRANGE s 100 200"),
            c("GETRANGE s 0 0"),
            c("GETRANGE s -1 -1"),
            c("GETRANGE s 10 10"),
            c("GETRANGE s 11 11"),
            c("GETRANGE missing 0 10"),
            c("GETRANGE s a 1"),
            c("GETRANGE s 0 b"),
            c("GETRANGE s 0 9223372036854775807"),
            c("GETRANGE s -9223372036854775808 3"),
            c("GETRANGE s 0"),
            c("SUBSTR s 0 4"),
            c("SUBSTR s -3 -1"),
            c("SUBSTR s 7 1"),
            c("SUBSTR missing 0 -1"),
            c("SUBSTR s 0"),
            c("SETRANGE s 6 Redis"),
            c("GET s"),
            c("SETRANGE s 20 x"),
            c("GET s"),
            c("STRLEN s"),
            a(&["SETRANGE", "s", "0", ""]),
            a(&["SETRANGE", "nokey", "5", ""]),
            c("EXISTS nokey"),
            c("SETRANGE nokey2 3 ab"),
            c("GET nokey2"),
            c("SETRANGE s -1 x"),
            c("SETRANGE s abc x"),
            c("SETRANGE s 536870912 x"),
            c("SETRANGE s 536870911 x"),
            a(&["SETRANGE", "s", "536870912", ""]),
            c("SETRANGE s 0"),
            c("SET n 12345"),
            c("SETRANGE n 1 9"),
            c("GET n"),
            c("GETRANGE n 1 2"),
            c("SET e1 v EX 100"),
            c("SETRANGE e1 1 x"),
            c("TTL e1").within(1),
        ],
    );
}

#[test]
fn del_exists_touch_type_dbsize() {
    diff_resp(
        "keyspace_basics",
        &[
            c("FLUSHALL"),
            c("DBSIZE"),
            c("RANDOMKEY"),
            c("MSET a 1 b 2 c 3"),
            c("EXISTS a"),
            c("EXISTS a a a"),
            c("EXISTS a b missing"),
            c("EXISTS"),
            c("DEL a a"),
            c("DEL a"),
            c("DEL b c missing"),
            c("DEL"),
            c("MSET a 1 b 2"),
            c("UNLINK a b b missing"),
            c("UNLINK"),
            c("SET only v"),
            c("RANDOMKEY"),
            c("RANDOMKEY x"),
            c("MSET t1 1 t2 2"),
            c("TOUCH t1 t2 missing t1"),
            c("TOUCH"),
            c("TYPE t1"),
            c("TYPE missing"),
            c("TYPE"),
            c("DBSIZE"),
            c("DBSIZE x"),
            c("FLUSHDB"),
            c("DBSIZE"),
            c("SET a 1"),
            c("FLUSHDB ASYNC"),
            c("DBSIZE"),
            c("SET a 1"),
            c("FLUSHDB SYNC"),
            c("FLUSHDB FOO"),
            c("FLUSHDB ASYNC SYNC"),
            c("SET a 1"),
            c("FLUSHALL ASYNC"),
            c("DBSIZE"),
            c("SET a 1"),
            c("FLUSHALL SYNC"),
            c("FLUSHALL sync"),
            c("FLUSHALL FOO"),
            c("FLUSHALL SYNC ASYNC"),
            c("DBSIZE"),
        ],
    );
}

#[test]
fn expire_family() {
    diff_resp(
        "expire",
        &[
            c("FLUSHALL"),
            c("SET k v"),
            c("TTL k"),
            c("PTTL k"),
            c("TTL missing"),
            c("PTTL missing"),
            c("EXPIRETIME k"),
            c("PEXPIRETIME k"),
            c("EXPIRETIME missing"),
            c("PEXPIRETIME missing"),
            c("EXPIRE missing 10"),
            c("EXPIRE k 100"),
            c("TTL k").within(1),
            c("EXPIRETIME k").within(1),
            c("PEXPIRETIME k").within(200),
            c("EXPIRE k 200 NX"),
            c("EXPIRE k 200 XX"),
            c("TTL k").within(1),
            c("EXPIRE k 100 GT"),
            c("EXPIRE k 300 GT"),
            c("TTL k").within(1),
            c("EXPIRE k 400 LT"),
            c("EXPIRE k 50 LT"),
            c("TTL k").within(1),
            c("EXPIRE k 10 NX XX"),
            c("EXPIRE k 10 GT LT"),
            c("EXPIRE k 10 NX GT"),
            c("EXPIRE k 10 NX LT"),
            c("EXPIRE k 10 XX GT"),
            c("EXPIRE k 10 FOO"),
            c("EXPIRE k 10 nx"),
            c("EXPIRE k abc"),
            c("EXPIRE k 1.5"),
            c("EXPIRE k 9223372036854775807"),
            c("EXPIRE k 9223372036854775"),
            c("EXPIRE k -9223372036854775808"),
            c("PEXPIRE k 9223372036854775807"),
            c("EXPIREAT k 9223372036854775807"),
            c("PEXPIREAT k 9223372036854775807"),
            c("PEXPIREAT k -9223372036854775808"),
            c("EXPIRE k"),
            c("PERSIST k"),
            c("PERSIST k"),
            c("PERSIST missing"),
            c("TTL k"),
            c("EXPIRE k 100 XX"),
            c("EXPIRE k 100 GT"),
            c("EXPIRE k 100 LT"),
            c("TTL k").within(1),
            c("PERSIST k"),
            c("PEXPIRE k 100000 NX"),
            c("PTTL k").within(200),
            c("PEXPIRE k 1 GT"),
            c("PEXPIRE k 999999999 GT"),
            c("PTTL k").within(200),
            c("EXPIREAT k 4102444800"),
            c("EXPIRETIME k"),
            c("PEXPIRETIME k"),
            c("EXPIREAT k 4102444801 NX"),
            c("EXPIREAT k 4102444801 GT"),
            c("EXPIRETIME k"),
            c("PEXPIREAT k 4102444800999 LT"),
            c("PEXPIRETIME k"),
            c("EXPIRETIME k"),
            c("PEXPIREAT k 4102444800999 XX"),
            c("EXPIREAT missing 4102444800"),
            c("EXPIREAT k abc"),
            c("PEXPIRE k abc"),
            c("EXPIREAT k 1"),
            c("EXISTS k"),
            c("SET k v"),
            c("EXPIRE k 0"),
            c("EXISTS k"),
            c("SET k v"),
            c("EXPIRE k -1"),
            c("GET k"),
            c("SET k v"),
            c("PEXPIRE k -100"),
            c("GET k"),
            c("SET k v"),
            c("EXPIRE k -1 NX"),
            c("EXISTS k"),
            c("SET k v"),
            c("EXPIRE k -1 XX"),
            c("EXISTS k"),
            c("EXPIRE k 100 GT"),
            c("TTL"),
            c("PTTL a b"),
            c("PERSIST"),
            c("EXPIRETIME"),
        ],
    );
}

#[test]
fn keys_and_scan() {
    let mut cases = vec![
        c("FLUSHALL"),
        c("KEYS *"),
        c("MSET a 1 ab 2 abc 3 b 4 hello 5 hallo 6 hxllo 7 hllo 8 heeeello 9 h*llo 10 foo:1 11 foo:2 12"),
        a(&["SET", "with space", "x"]),
        a(&["SET", "h[a]llo", "x"]),
        a(&["SET", "back\\slash", "x"]),
    ];
    for p in [
        "*",
        "a*",
        "*b*",
        "h?llo",
        "h*llo",
        "h[ae]llo",
        "h[^e]llo",
        "h[a-b]llo",
        "h[b-a]llo",
        "*llo",
        "h\\*llo",
        "foo:*",
        "?",
        "??",
        "[ab]",
        "nomatch*",
        "with*",
        "h\\[a\\]llo",
        "back\\\\slash",
        "h[a",
        "*[",
        "[^",
        "",
    ] {
        cases.push(a(&["KEYS", p]).unordered());
    }
    cases.push(c("KEYS"));
    cases.push(c("KEYS a b"));
    for args in [
        &[][..],
        &["COUNT", "2"],
        &["COUNT", "1000"],
        &["MATCH", "h*"],
        &["MATCH", "foo:*", "COUNT", "3"],
        &["TYPE", "string"],
        &["TYPE", "list"],
        &["MATCH", "*", "TYPE", "string", "COUNT", "5"],
    ] {
        cases.push(RespCase::scan_all(args));
    }
    cases.extend([
        c("SCAN"),
        c("SCAN abc"),
        c("SCAN -1").with(Cmp::SameType),
        c("SCAN 0 COUNT 0"),
        c("SCAN 0 COUNT -1"),
        c("SCAN 0 COUNT abc"),
        c("SCAN 0 MATCH"),
        c("SCAN 0 FOO bar"),
        c("SCAN 0 TYPE"),
        c("SCAN 0 MATCH nomatch COUNT 1000"),
        c("SCAN 18446744073709551616"),
    ]);
    diff_resp("keys_scan", &cases);
}

#[test]
fn rename_copy_object() {
    diff_resp(
        "rename_copy_object",
        &[
            c("FLUSHALL"),
            c("SET a 1"),
            c("RENAME a b"),
            c("MGET a b"),
            c("RENAME missing x"),
            c("RENAME b b"),
            c("RENAME missing missing"),
            c("SET c 3"),
            c("RENAME b c"),
            c("GET c"),
            c("RENAMENX c d"),
            c("SET e 5"),
            c("RENAMENX d e"),
            c("RENAMENX missing x"),
            c("RENAMENX e e"),
            c("SET t v EX 100"),
            c("RENAME t t2"),
            c("TTL t2").within(1),
            c("RENAME a"),
            c("RENAMENX a"),
            c("FLUSHALL"),
            c("SET src hello"),
            c("COPY src dst"),
            c("GET dst"),
            c("COPY src dst"),
            c("SET src hello2"),
            c("COPY src dst REPLACE"),
            c("GET dst"),
            c("COPY missing dst"),
            c("COPY missing newdst REPLACE"),
            c("COPY src src"),
            c("COPY src dst FOO"),
            c("COPY src dst DB"),
            c("COPY src dst DB x"),
            c("COPY src dst DB -1"),
            c("COPY src dst DB 99"),
            c("COPY src dst DB 0"),
            c("COPY src dst DB 0 REPLACE"),
            c("COPY src dst DB 1").with(Cmp::Documented("shoal has only db 0")),
            c("COPY src"),
            c("SET tsrc v EX 100"),
            c("COPY tsrc tdst"),
            c("TTL tdst").within(1),
            c("FLUSHALL"),
            c("SET i 12345"),
            c("OBJECT ENCODING i"),
            c("SET i -1"),
            c("OBJECT ENCODING i"),
            c("SET i 9223372036854775807"),
            c("OBJECT ENCODING i"),
            c("SET i 9223372036854775808"),
            c("OBJECT ENCODING i"),
            c("SET i 0123"),
            c("OBJECT ENCODING i"),
            c("SET i +1"),
            c("OBJECT ENCODING i"),
            a(&["SET", "i", " 1"]),
            c("OBJECT ENCODING i"),
            c("SET i 1.5"),
            c("OBJECT ENCODING i"),
            c("SET s 12345678901234567890123456789012345678901234"),
            c("OBJECT ENCODING s"),
            c("SET s 123456789012345678901234567890123456789012345"),
            c("OBJECT ENCODING s"),
            c("SET s abcdefghijabcdefghijabcdefghijabcdefghijabcd"),
            c("OBJECT ENCODING s"),
            c("SET s abcdefghijabcdefghijabcdefghijabcdefghijabcde"),
            c("OBJECT ENCODING s"),
            a(&["SET", "s", ""]),
            c("OBJECT ENCODING s"),
            c("SET s short"),
            c("APPEND s x"),
            c("OBJECT ENCODING s"),
            c("SET s 10"),
            c("APPEND s 1"),
            c("OBJECT ENCODING s"),
            c("INCR s"),
            c("OBJECT ENCODING s"),
            c("SET s short"),
            c("SETRANGE s 0 S"),
            c("OBJECT ENCODING s"),
            c("INCRBYFLOAT fl 1.5"),
            c("OBJECT ENCODING fl"),
            c("SET s abc"),
            c("GETSET s 77"),
            c("OBJECT ENCODING s"),
            c("OBJECT ENCODING missing"),
            c("OBJECT ENCODING"),
            c("OBJECT FREQ s"),
            c("OBJECT FREQ missing"),
            c("OBJECT FOO s"),
            c("OBJECT"),
            c("OBJECT IDLETIME s").within(2),
        ],
    );
}

#[test]
fn select_client_auth_misc() {
    diff_resp(
        "select_client_auth",
        &[
            c("SELECT 0"),
            c("SELECT 1").with(Cmp::Documented("shoal has only db 0")),
            c("SELECT 0"),
            c("SELECT 16"),
            c("SELECT -1"),
            c("SELECT x"),
            c("SELECT"),
            c("SELECT 0 1"),
            c("CLIENT GETNAME"),
            c("CLIENT SETNAME myconn"),
            c("CLIENT GETNAME"),
            a(&["CLIENT", "SETNAME", "has space"]),
            a(&["CLIENT", "SETNAME", "new\nline"]),
            c("CLIENT GETNAME"),
            a(&["CLIENT", "SETNAME", ""]),
            c("CLIENT GETNAME"),
            c("CLIENT SETNAME"),
            c("CLIENT GETNAME x"),
            c("CLIENT ID").with(Cmp::SameType),
            c("CLIENT FOO"),
            c("CLIENT"),
            c("AUTH foo"),
            c("AUTH default foo"),
            c("AUTH user pass"),
            c("AUTH"),
            c("AUTH a b c"),
            c("TIME").with(Cmp::Structure),
            c("TIME x"),
            c("COMMAND COUNT").with(Cmp::SameType),
            c("FOO"),
            c("foo a b"),
            c("FOO a b c d e"),
            a(&["unknowncmd", "arg with space", "'quoted'"]),
            a(&["FOO", &"x".repeat(200)]),
            a(&["", "a"]),
            c("GET a b"),
            c("CLIENT SETNAME x"),
            c("RESET"),
            c("CLIENT GETNAME"),
            c("RESET x"),
            c("QUIT").closes(),
            c("PING"),
            c("QUIT extra").closes(),
            c("PING"),
        ],
    );
}

#[test]
fn hello_and_resp3() {
    diff_resp(
        "hello",
        &[
            c("HELLO").with(Cmp::MapKeys),
            c("HELLO 2").with(Cmp::MapKeys),
            c("HELLO 3").with(Cmp::MapKeys),
            c("PING"),
            c("SET k v"),
            c("GET k"),
            c("GET missing"),
            c("MGET k missing"),
            c("EXISTS k"),
            c("INCRBYFLOAT f 1.5"),
            c("CLIENT GETNAME"),
            c("TTL k"),
            c("RANDOMKEY").with(Cmp::SameType),
            c("FOO"),
            c("HELLO 3 SETNAME myname").with(Cmp::MapKeys),
            c("CLIENT GETNAME"),
            c("RESET"),
            c("GET missing"),
            c("HELLO 4"),
            c("HELLO 1"),
            c("HELLO x"),
            c("HELLO 3 AUTH default wrong").with(Cmp::MapKeys),
            c("HELLO 3 AUTH default"),
            c("HELLO 3 FOO"),
            c("HELLO 2 SETNAME"),
            a(&["HELLO", "2", "SETNAME", "bad name"]),
            c("GET missing"),
            c("DEL k f"),
        ],
    );
}

/// Redis checks arity before anything else; every command must produce the same
/// `wrong number of arguments` error.
#[test]
fn wrong_arity_for_every_command() {
    // (name, Redis 7.0 arity: n = exactly n words, -n = at least n words)
    let table: &[(&str, i32)] = &[
        ("get", 2),
        ("set", -3),
        ("setnx", 3),
        ("setex", 4),
        ("psetex", 4),
        ("mget", -2),
        ("mset", -3),
        ("msetnx", -3),
        ("getset", 3),
        ("getdel", 2),
        ("getex", -2),
        ("append", 3),
        ("strlen", 2),
        ("incr", 2),
        ("decr", 2),
        ("incrby", 3),
        ("decrby", 3),
        ("incrbyfloat", 3),
        ("getrange", 4),
        ("setrange", 4),
        ("substr", 4),
        ("del", -2),
        ("unlink", -2),
        ("exists", -2),
        ("expire", -3),
        ("pexpire", -3),
        ("expireat", -3),
        ("pexpireat", -3),
        ("ttl", 2),
        ("pttl", 2),
        ("expiretime", 2),
        ("pexpiretime", 2),
        ("persist", 2),
        ("type", 2),
        ("keys", 2),
        ("scan", -2),
        ("rename", 3),
        ("renamenx", 3),
        ("randomkey", 1),
        ("touch", -2),
        ("copy", -3),
        ("dbsize", 1),
        ("select", 2),
        ("echo", 2),
        ("time", 1),
        ("client", -2),
        ("object", -2),
        ("reset", 1),
        ("auth", -2),
    ];
    let mut cases = vec![c("FLUSHALL")];
    for &(name, arity) in table {
        let n = arity.unsigned_abs() as usize;
        let mut counts = vec![];
        if n >= 2 {
            counts.push(n - 2); // one word too few (besides the name)
        }
        if arity > 0 {
            counts.push(n); // one word too many
        }
        for extra in counts {
            let mut args = vec![name.to_string()];
            args.extend((0..extra).map(|i| format!("x{i}")));
            cases.push(RespCase::cmd(&args));
            let upper: Vec<String> = std::iter::once(name.to_uppercase())
                .chain(args[1..].iter().cloned())
                .collect();
            cases.push(RespCase::cmd(&upper));
        }
    }
    for sub in [
        "client getname x",
        "client setname",
        "client id x",
        "object encoding",
        "object freq",
        "command count x",
    ] {
        cases.push(c(sub));
    }
    diff_resp("wrong_arity", &cases);
}

#[test]
fn inline_commands() {
    diff_resp(
        "inline",
        &[
            c("FLUSHALL"),
            raw(b"PING\r\n", 1),
            raw(b"ping\n", 1),
            raw(b"SET a b\r\n", 1),
            raw(b"GET a\r\n", 1),
            raw(b"   GET    a   \r\n", 1),
            raw(b"\r\nPING\r\n", 1),
            raw(b"\r\n\r\n\nECHO x\r\n", 1),
            raw(b"SET \"a b\" \"c\\x41\\n\\t\\\"q\\\"\"\r\n", 1),
            raw(b"GET \"a b\"\r\n", 1),
            raw(b"ECHO 'x y'\r\n", 1),
            raw(b"ECHO 'it\\'s'\r\n", 1),
            raw(b"ECHO \"\"\r\n", 1),
            raw(b"SET e ''\r\n", 1),
            raw(b"STRLEN e\r\n", 1),
            raw(b"ECHO \"\\xzz\"\r\n", 1),
            raw(b"foo a b\r\n", 1),
            raw(b"PING\r\nECHO one\r\nECHO two\r\n", 3),
            raw(b"PING\r\n*1\r\n$4\r\nPING\r\nPING\r\n", 3),
            raw(b"ECHO \"unbalanced\r\n", 1).closes(),
            raw(b"ECHO 'unbalanced\r\n", 1).closes(),
            raw(b"ECHO \"a\"b\r\n", 1).closes(),
            raw(b"ECHO x\tb\r\n", 1),
        ],
    );
}

#[test]
fn pipelined_batches() {
    let mut batch = Vec::new();
    let mut n = 0;
    for i in 0..200 {
        for args in [
            vec!["SET".to_string(), format!("k{}", i % 7), format!("{i}")],
            vec!["INCR".into(), format!("k{}", i % 7)],
            vec!["APPEND".into(), format!("k{}", i % 7), "x".into()],
            vec!["GET".into(), format!("k{}", i % 7)],
            vec!["INCR".into(), format!("k{}", i % 7)],
        ] {
            batch.extend(shoal_tests::resp::encode_command(&args));
            n += 1;
        }
    }
    // A large value split over the batch, and a batch mixing inline and multibulk.
    let big = "v".repeat(100_000);
    let mut mixed = shoal_tests::resp::encode_command(&["SET", "big", big.as_str()]);
    mixed.extend_from_slice(b"STRLEN big\r\n");
    mixed.extend(shoal_tests::resp::encode_command(&["GET", "big"]));
    mixed.extend_from_slice(b"DEL big\r\n");
    diff_resp(
        "pipelined",
        &[
            c("FLUSHALL"),
            RespCase::raw(batch, n),
            RespCase::raw(mixed, 4),
            c("DBSIZE"),
        ],
    );
}

#[test]
fn malformed_frames_close_the_connection() {
    let long_inline = vec![b'a'; 70 * 1024];
    let mut long_count = b"*".to_vec();
    long_count.extend_from_slice(&[b'1'; 70 * 1024]);
    diff_resp(
        "malformed",
        &[
            raw(b"*x\r\n", 1).closes(),
            raw(b"*1\r\nfoo\r\n", 1).closes(),
            raw(b"*1\r\n*1\r\n", 1).closes(),
            raw(b"*1\r\n$x\r\n", 1).closes(),
            raw(b"*1\r\n$-5\r\n", 1).closes(),
            raw(b"*1\r\n$600000000\r\n", 1).closes(),
            raw(b"*3000000000\r\n", 1).closes(),
            raw(b"*1\r\n$", 0),
            RespCase::reconnect(),
            RespCase::raw(long_inline, 1).closes(),
            RespCase::raw(long_count, 1).closes(),
            raw(b"*-1\r\nPING\r\n", 1),
            raw(b"*0\r\nPING\r\n", 1),
            raw(b"$3\r\nfoo\r\n", 2),
            raw(b"*1\r\n$3\r\nPINGX\r\n", 1),
            raw(b"*2\r\n$4\r\nECHO\r\n$1\r\nab\r\n", 1),
            raw(b"*1\r\n$4\r\nPING\r\n", 1),
        ],
    );
}

/// Needs a non-string type created by a command both servers support.
#[test]
fn wrongtype_via_lists() {
    diff_resp(
        "wrongtype",
        &[
            c("FLUSHALL"),
            c("LPUSH l a b"),
            c("GET l"),
            c("SET l v GET"),
            c("APPEND l x"),
            c("INCR l"),
            c("STRLEN l"),
            c("GETRANGE l 0 1"),
            c("SETRANGE l 0 x"),
            c("GETDEL l"),
            c("GETEX l"),
            c("GETSET l v"),
            c("INCRBYFLOAT l 1"),
            c("MGET l"),
            c("TYPE l"),
            c("OBJECT ENCODING l"),
            RespCase::scan_all(&["TYPE", "list"]),
            c("SET l v"),
            c("TYPE l"),
        ],
    );
}
