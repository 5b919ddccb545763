//! Set commands compared against redis-server 7.0: hand-written edge cases and a
//! seeded random sequence (`SHOAL_SEED=<n>` replays one).
//!
//! Replies of random-output commands (SPOP, SRANDMEMBER) are checked for shape and
//! membership; hashtable-encoded replies (any order) are compared unordered.

use std::collections::HashSet;
use std::rc::Rc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shoal_tests::diff::{c, diff_resp, Cmp, RespCase};
use shoal_tests::resp::{parse, RespConn, Value};

const RANDOM_OPS: usize = 2500;

fn a(args: &[&str]) -> RespCase {
    RespCase::cmd(args)
}

fn encoded(v: &Value) -> Vec<u8> {
    let mut o = Vec::new();
    v.encode(&mut o);
    o
}

fn sorted(v: &Value) -> Option<(u8, Vec<Vec<u8>>)> {
    let mut out: Vec<Vec<u8>> = v.elements()?.iter().map(encoded).collect();
    out.sort();
    Some((v.kind(), out))
}

/// A complete scan in one call: same cursor, same items in any order.
fn scan_cmp() -> Cmp {
    Cmp::Custom(Rc::new(move |x, y| {
        let (p, q) = (parse(x).ok_or("unparsable")?, parse(y).ok_or("unparsable")?);
        let (Some(pe), Some(qe)) = (p.elements(), q.elements()) else {
            return if x == y {
                Ok(())
            } else {
                Err("bytes differ".into())
            };
        };
        if pe.len() != 2 || qe.len() != 2 {
            return Err("not a scan reply".into());
        }
        if pe[0] != qe[0] {
            return Err("cursors differ".into());
        }
        if sorted(&pe[1]) == sorted(&qe[1]) {
            Ok(())
        } else {
            Err("different items".into())
        }
    }))
}

/// Random-output check: same structure as the reference, every element one of
/// `allowed`, and (when `distinct`) no repeated element.
fn random_cmp(allowed: &[String], distinct: bool) -> Cmp {
    let allowed: HashSet<Vec<u8>> = allowed.iter().map(|s| s.as_bytes().to_vec()).collect();
    Cmp::Custom(Rc::new(move |x, y| {
        let (p, q) = (parse(x).ok_or("unparsable")?, parse(y).ok_or("unparsable")?);
        if !p.same_structure(&q) {
            return Err("different structure".into());
        }
        let els: Vec<Value> = match q.elements() {
            Some(e) => e.to_vec(),
            None => vec![q.clone()],
        };
        for e in &els {
            if let Some(b) = e.as_bytes() {
                if !allowed.contains(b) {
                    return Err(format!(
                        "unexpected element {:?}",
                        String::from_utf8_lossy(b)
                    ));
                }
            }
        }
        if distinct {
            let set: HashSet<Vec<u8>> = els.iter().map(encoded).collect();
            if set.len() != els.len() {
                return Err("repeated element".into());
            }
        }
        Ok(())
    }))
}

fn strs(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn set_basics() {
    diff_resp(
        "set_basics",
        &[
            c("FLUSHALL"),
            c("SADD s 3 1 2"),
            c("SADD s 2 3 4"),
            c("SMEMBERS s"),
            c("OBJECT ENCODING s"),
            c("SCARD s"),
            c("SCARD nokey"),
            c("SISMEMBER s 2"),
            c("SISMEMBER s 02"),
            c("SISMEMBER s x"),
            c("SISMEMBER nokey x"),
            c("SMISMEMBER s 1 x 4 -0"),
            c("SMISMEMBER nokey a b"),
            c("SADD s -5 9223372036854775807 -9223372036854775808"),
            c("SMEMBERS s"),
            c("SADD s 007"),
            c("OBJECT ENCODING s"),
            c("SMEMBERS s").unordered(),
            c("SISMEMBER s 007"),
            c("SISMEMBER s 7"),
            c("SADD t a b c a"),
            c("OBJECT ENCODING t"),
            c("SMEMBERS t").unordered(),
            a(&["SADD", "bin", "", "\x00\r\n", "-0", "+1", " 1"]),
            c("SMEMBERS bin").unordered(),
            a(&["SISMEMBER", "bin", ""]),
            c("SREM t a x"),
            c("SREM t x"),
            c("SREM nokey x"),
            c("SREM t b c"),
            c("EXISTS t"),
            c("SMEMBERS t"),
            c("SADD i 1 2 3"),
            c("SREM i 2 02"),
            c("SMEMBERS i"),
            c("SREM i 1 3"),
            c("EXISTS i"),
            c("SMEMBERS nokey"),
            c("TYPE s"),
        ],
    );
}

#[test]
fn set_arity_and_wrongtype() {
    let mut cases = vec![
        c("FLUSHALL"),
        c("SET str v"),
        c("HSET hash f v"),
        c("SADD s 1"),
    ];
    for cmd in [
        "SADD",
        "SADD k",
        "SREM k",
        "SMEMBERS",
        "SMEMBERS k x",
        "SISMEMBER k",
        "SISMEMBER k m x",
        "SMISMEMBER k",
        "SCARD",
        "SCARD k x",
        "SPOP",
        "SRANDMEMBER",
        "SMOVE a b",
        "SMOVE a b c d",
        "SINTER",
        "SINTERCARD",
        "SINTERCARD 1",
        "SUNION",
        "SDIFF",
        "SINTERSTORE d",
        "SUNIONSTORE d",
        "SDIFFSTORE d",
        "SSCAN k",
        "SSCAN",
    ] {
        cases.push(c(cmd));
    }
    for key in ["str", "hash"] {
        for cmd in [
            "SADD # m",
            "SREM # m",
            "SMEMBERS #",
            "SISMEMBER # m",
            "SMISMEMBER # m",
            "SCARD #",
            "SPOP #",
            "SPOP # 2",
            "SPOP # 0",
            "SRANDMEMBER #",
            "SRANDMEMBER # 2",
            "SRANDMEMBER # 0",
            "SMOVE # s m",
            "SMOVE s # 1",
            "SMOVE # nokey m",
            "SMOVE nokey # m",
            "SINTER s #",
            "SINTER nokey #",
            "SINTER # nokey",
            "SINTERCARD 2 s #",
            "SINTERCARD 2 nokey #",
            "SUNION s #",
            "SUNION nokey #",
            "SDIFF s #",
            "SDIFF nokey #",
            "SINTERSTORE d s #",
            "SUNIONSTORE d s #",
            "SDIFFSTORE d # s",
            "SSCAN # 0",
        ] {
            cases.push(c(&cmd.replace('#', key)));
        }
    }
    cases.extend([
        c("EXISTS d"),
        c("GET str"),
        c("HGETALL hash"),
        c("SMEMBERS s"),
    ]);
    diff_resp("set_arity_and_wrongtype", &cases);
}

#[test]
fn set_algebra() {
    let mut cases = vec![
        c("FLUSHALL"),
        c("SADD a 1 2 3 4 5"),
        c("SADD b 4 5 6 7"),
        c("SADD c x y 5 4"),
        c("SADD d 9"),
        c("SET str v"),
    ];
    for proto in ["2", "3"] {
        cases.extend([
            c(&format!("HELLO {proto}")).with(Cmp::MapKeys),
            c("SINTER a b"),
            c("SINTER b a"),
            c("SINTER a"),
            c("SINTER a a"),
            c("SINTER a b c").unordered(),
            c("SINTER a d"),
            c("SINTER a nokey"),
            c("SINTER nokey a"),
            c("SINTERCARD 2 a b"),
            c("SINTERCARD 2 a b LIMIT 1"),
            c("SINTERCARD 2 a b LIMIT 0"),
            c("SINTERCARD 2 a b limit 5 LIMIT 1"),
            c("SINTERCARD 1 a LIMIT 3"),
            c("SINTERCARD 2 a nokey"),
            c("SINTERCARD 3 a b c"),
            c("SINTERCARD 0 a"),
            c("SINTERCARD -1 a"),
            c("SINTERCARD x a"),
            c("SINTERCARD 3 a b"),
            c("SINTERCARD 1 a LIMIT -1"),
            c("SINTERCARD 1 a LIMIT x"),
            c("SINTERCARD 1 a LIMIT"),
            c("SINTERCARD 1 a FOO 1"),
            c("SINTERCARD 1 str"),
            c("SUNION a b"),
            c("SUNION a nokey d"),
            c("SUNION a c").unordered(),
            c("SUNION nokey"),
            c("SDIFF a b"),
            c("SDIFF a b d"),
            c("SDIFF a nokey"),
            c("SDIFF nokey a"),
            c("SDIFF a a"),
            c("SDIFF c a").unordered(),
            c("SDIFF a c"),
        ]);
    }
    cases.extend([
        c("SINTERSTORE dst a b"),
        c("SMEMBERS dst"),
        c("OBJECT ENCODING dst"),
        c("SINTERSTORE dst a c"),
        c("SMEMBERS dst"),
        c("OBJECT ENCODING dst"),
        c("SINTERSTORE dst a nokey"),
        c("EXISTS dst"),
        c("SUNIONSTORE dst a c"),
        c("SMEMBERS dst").unordered(),
        c("OBJECT ENCODING dst"),
        c("SUNIONSTORE dst nokey"),
        c("EXISTS dst"),
        c("SDIFFSTORE dst a b"),
        c("SMEMBERS dst"),
        c("SDIFFSTORE dst a a"),
        c("EXISTS dst"),
        // destination of another type is overwritten
        c("SUNIONSTORE str a"),
        c("TYPE str"),
        c("SMEMBERS str"),
        // destination among the sources
        c("SUNIONSTORE a a b"),
        c("SMEMBERS a"),
        c("SDIFFSTORE a a d b"),
        c("SMEMBERS a"),
        c("SINTERSTORE a a c"),
        c("SMEMBERS a"),
        c("SET s2 x"),
        c("SINTERSTORE s2 nokey"),
        c("EXISTS s2"),
    ]);
    diff_resp("set_algebra", &cases);
}

#[test]
fn set_pop_rand_move() {
    let all = strs(&["1", "2", "3", "4", "5"]);
    let mut cases = vec![c("FLUSHALL")];
    for proto in ["2", "3"] {
        cases.extend([
            c(&format!("HELLO {proto}")).with(Cmp::MapKeys),
            c("DEL s"),
            c("SADD s 1 2 3 4 5"),
            c("SRANDMEMBER s").with(random_cmp(&all, true)),
            c("SRANDMEMBER s 3").with(random_cmp(&all, true)),
            c("SRANDMEMBER s 5"),
            c("SRANDMEMBER s 50"),
            c("SRANDMEMBER s -3").with(random_cmp(&all, false)),
            c("SRANDMEMBER s -30").with(random_cmp(&all, false)),
            c("SRANDMEMBER s 0"),
            c("SRANDMEMBER s -9223372036854775808"),
            c("SRANDMEMBER s x"),
            c("SRANDMEMBER s 1 2"),
            c("SRANDMEMBER nokey"),
            c("SRANDMEMBER nokey 5"),
            c("SRANDMEMBER nokey -5"),
            c("SPOP s").with(random_cmp(&all, true)),
            c("SCARD s"),
            c("SPOP s 2").with(random_cmp(&all, true)),
            c("SCARD s"),
            c("SPOP s 0"),
            c("SPOP s -1"),
            c("SPOP s x"),
            c("SPOP s 1 2"),
            c("SPOP s 10").with(random_cmp(&all, true)),
            c("EXISTS s"),
            c("SPOP s"),
            c("SPOP s 3"),
            c("SPOP s 0"),
            c("SADD s 1 2 3"),
            c("SPOP s 3"),
            c("EXISTS s"),
            c("SADD one x"),
            c("SPOP one"),
            c("EXISTS one"),
        ]);
    }
    cases.extend([
        c("SADD src 1 2 x"),
        c("SADD dst 5"),
        c("SMOVE src dst 1"),
        c("SMOVE src dst 1"),
        c("SMEMBERS src").unordered(),
        c("SMEMBERS dst"),
        c("OBJECT ENCODING dst"),
        c("SMOVE src dst x"),
        c("OBJECT ENCODING dst"),
        c("SMEMBERS dst").unordered(),
        c("SMOVE src src 2"),
        c("SMOVE src src 9"),
        c("SMOVE src newdst 2"),
        c("EXISTS src"),
        c("SMEMBERS newdst"),
        c("OBJECT ENCODING newdst"),
        c("SMOVE nokey dst 1"),
        c("SADD s3 a"),
        c("SMOVE s3 dst b"),
        c("SMOVE s3 dst a"),
        c("EXISTS s3"),
    ]);
    diff_resp("set_pop_rand_move", &cases);
}

#[test]
fn set_encoding_thresholds_and_scan() {
    let mut cases = vec![c("FLUSHALL")];
    // intset up to 512 entries, inserted out of order: SMEMBERS is sorted
    for i in 0..512 {
        cases.push(c(&format!("SADD ints {}", (i * 7919) % 1000 - 500)));
    }
    cases.extend([
        c("SCARD ints"),
        c("OBJECT ENCODING ints"),
        c("SMEMBERS ints"),
        c("SSCAN ints 0"),
        c("SSCAN ints 0 MATCH -1*"),
        c("SSCAN ints 5 COUNT 1"),
        c("SADD ints 100000"),
        c("OBJECT ENCODING ints"),
        c("SCARD ints"),
        c("SMEMBERS ints").unordered(),
        c("SSCAN ints 0 COUNT 100000").with(scan_cmp()),
        c("SSCAN ints 0 COUNT 100000 MATCH 1*").with(scan_cmp()),
        c("SREM ints 100000"),
        c("OBJECT ENCODING ints"),
        c("SADD small 1 2"),
        c("SSCAN small 0 COUNT 0"),
        c("SSCAN small 0 COUNT x"),
        c("SSCAN small 0 MATCH"),
        c("SSCAN small 0 TYPE set"),
        c("SSCAN small x"),
        c("SSCAN small -1"),
        c("SSCAN small 18446744073709551615"),
        c("SSCAN small 18446744073709551616"),
        c("SSCAN nokey 0"),
        c("SSCAN nokey 0 COUNT 0"),
        c("SSCAN nokey x"),
        c("SADD strs a b c"),
        c("SSCAN strs 0 COUNT 1000").with(scan_cmp()),
        c("SSCAN strs 0 MATCH [ab]").with(scan_cmp()),
    ]);
    // store results follow the thresholds too
    let mut big = vec!["SADD".to_string(), "many".to_string()];
    big.extend((0..600).map(|i| i.to_string()));
    let big_ref: Vec<&str> = big.iter().map(String::as_str).collect();
    cases.extend([
        a(&big_ref),
        c("OBJECT ENCODING many"),
        c("SINTERSTORE dst many ints"),
        c("OBJECT ENCODING dst"),
        c("SMEMBERS dst"),
        c("SUNIONSTORE dst many ints"),
        c("OBJECT ENCODING dst"),
        c("SCARD dst"),
        c("SDIFFSTORE dst many ints"),
        c("OBJECT ENCODING dst"),
        c("SCARD dst"),
        // Redis picks its SDIFF algorithm by size; the result's encoding shows it
        a(&(["SADD", "r1"]
            .iter()
            .map(|s| s.to_string())
            .chain((0..50).map(|i| i.to_string()))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>())),
        a(&(["SADD", "r2"]
            .iter()
            .map(|s| s.to_string())
            .chain((50..100).map(|i| i.to_string()))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>())),
        c("SDIFFSTORE dst many r1 r2"),
        c("OBJECT ENCODING dst"),
        c("SDIFFSTORE dst many r1"),
        c("OBJECT ENCODING dst"),
        c("SDIFF many r1 r2").unordered(),
        c("SINTER many ints").unordered(),
        c("SINTERCARD 2 many ints LIMIT 10"),
        c("SRANDMEMBER many 600").unordered(),
        c("SPOP many 600").unordered(),
        c("EXISTS many"),
    ]);
    diff_resp("set_encoding_thresholds_and_scan", &cases);
}

/// Full SSCAN iteration with a small COUNT on a hashtable set (cursors differ by
/// design from Redis', so this runs against the target only).
#[test]
fn set_scan_loop() {
    let target = shoal_tests::spawn_resp_target();
    let mut conn = RespConn::connect(target.resp_port());
    for i in 0..1000 {
        conn.call(&["SADD", "big", &format!("m{i}")]);
    }
    conn.call(&["SADD", "ints", "3", "1", "2"]);
    let mut seen = HashSet::new();
    let mut cursor = b"0".to_vec();
    for _ in 0..10_000 {
        let reply = conn.call(&[
            &b"SSCAN"[..],
            &b"big"[..],
            &cursor[..],
            &b"COUNT"[..],
            &b"10"[..],
        ]);
        let v = parse(&reply).expect("reply");
        let els = v.elements().expect("array");
        cursor = els[0].as_bytes().expect("cursor").to_vec();
        for m in els[1].elements().expect("items") {
            seen.insert(m.as_bytes().unwrap().to_vec());
        }
        if cursor == b"0" {
            break;
        }
    }
    assert_eq!(cursor, b"0");
    assert_eq!(seen.len(), 1000);
}

/// DUMP payloads are implementation-specific: check a DUMP/RESTORE round trip on
/// the target (contents and encoding survive).
#[test]
fn set_dump_restore() {
    let target = shoal_tests::spawn_resp_target();
    let mut conn = RespConn::connect(target.resp_port());
    for i in 0..1000 {
        conn.call(&["SADD", "big", &format!("m{i}")]);
    }
    conn.call(&["SADD", "ints", "3", "1", "2"]);
    for key in ["big", "ints"] {
        let dump = parse(&conn.call(&["DUMP", key])).expect("reply");
        let payload = dump
            .as_bytes()
            .expect("DUMP returns a bulk string")
            .to_vec();
        let copy = format!("{key}-copy");
        let r = conn.call(&[&b"RESTORE"[..], copy.as_bytes(), &b"0"[..], &payload[..]]);
        assert_eq!(r, b"+OK\r\n", "RESTORE of {key}");
        let enc = |conn: &mut RespConn, k: &str| conn.call(&["OBJECT", "ENCODING", k]);
        assert_eq!(enc(&mut conn, key), enc(&mut conn, &copy));
        let all = |conn: &mut RespConn, k: &str| {
            sorted(&parse(&conn.call(&["SMEMBERS", k])).expect("reply"))
        };
        assert_eq!(all(&mut conn, key), all(&mut conn, &copy));
    }
}

fn seed() -> u64 {
    match std::env::var("SHOAL_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("SHOAL_SEED={s} is not a u64")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(42),
    }
}

fn rand_member(rng: &mut SmallRng) -> String {
    match rng.gen_range(0..10) {
        0..=5 => rng.gen_range(-20i64..20).to_string(),
        6 => ["007", "-0", "", "x y", "9223372036854775807"][rng.gen_range(0..5)].into(),
        _ => format!("m{}", rng.gen_range(0..15)),
    }
}

fn random_op(rng: &mut SmallRng) -> RespCase {
    const KEYS: &[&str] = &["s0", "s1", "s2", "s3"];
    let k = if rng.gen_bool(0.03) {
        "str"
    } else {
        KEYS[rng.gen_range(0..KEYS.len())]
    }
    .to_string();
    let k2 = KEYS[rng.gen_range(0..KEYS.len())].to_string();
    let k3 = KEYS[rng.gen_range(0..KEYS.len())].to_string();
    let m = rand_member(rng);
    let args: Vec<String> = match rng.gen_range(0..22) {
        0..=4 => {
            let mut a = vec!["SADD".into(), k];
            for _ in 0..rng.gen_range(1..6) {
                a.push(rand_member(rng));
            }
            a
        }
        5 | 6 => {
            let mut a = vec!["SREM".into(), k];
            for _ in 0..rng.gen_range(1..4) {
                a.push(rand_member(rng));
            }
            a
        }
        7 => return RespCase::cmd(&["SMEMBERS", &k]).unordered(),
        8 => vec!["SISMEMBER".into(), k, m],
        9 => vec!["SMISMEMBER".into(), k, m, rand_member(rng)],
        10 => vec!["SCARD".into(), k],
        11 => vec!["SMOVE".into(), k, k2, m],
        12 => return RespCase::cmd(&["SINTER", &k, &k2, &k3]).unordered(),
        13 => return RespCase::cmd(&["SUNION", &k, &k2]).unordered(),
        14 => return RespCase::cmd(&["SDIFF", &k, &k2, &k3]).unordered(),
        15 => vec!["SINTERSTORE".into(), k, k2, k3],
        16 => vec!["SUNIONSTORE".into(), k, k2, k3],
        17 => vec!["SDIFFSTORE".into(), k, k2, k3],
        18 => vec![
            "SINTERCARD".into(),
            "2".into(),
            k,
            k2,
            "LIMIT".into(),
            rng.gen_range(0..5).to_string(),
        ],
        19 => vec!["OBJECT".into(), "ENCODING".into(), k],
        20 => return RespCase::cmd(&["SSCAN", &k, "0", "COUNT", "1000"]).with(scan_cmp()),
        _ => return RespCase::cmd(&["SRANDMEMBER", &k, "1000"]).unordered(),
    };
    RespCase::cmd(&args)
}

#[test]
fn set_random_sequence() {
    let seed = seed();
    eprintln!("[set_random] seed {seed} (replay with SHOAL_SEED={seed})");
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut cases = vec![c("FLUSHALL"), c("SET str x")];
    for i in 0..RANDOM_OPS {
        cases.push(random_op(&mut rng));
        if i % 500 == 499 {
            cases.push(c("DBSIZE"));
            cases.push(RespCase::cmd(&["SPOP", "s0", "100000"]).unordered());
        }
    }
    diff_resp("set_random", &cases);
}
