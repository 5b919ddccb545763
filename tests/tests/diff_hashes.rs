//! Hash commands compared against redis-server 7.0: hand-written edge cases and a
//! seeded random sequence (`SHOAL_SEED=<n>` replays one).
//!
//! Replies of random-output commands (HRANDFIELD) are checked for shape and
//! membership; hashtable-encoded replies (any order) are compared unordered.

use std::collections::HashSet;
use std::rc::Rc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shoal_tests::diff::{c, diff_resp, Cmp, RespCase, RespPair};
use shoal_tests::resp::{parse, Value};

const RANDOM_OPS: usize = 2500;

fn a(args: &[&str]) -> RespCase {
    RespCase::cmd(args)
}

fn encoded(v: &Value) -> Vec<u8> {
    let mut o = Vec::new();
    v.encode(&mut o);
    o
}

/// Aggregates compared as multisets of `n`-element chunks (pairs for HGETALL).
fn chunks(v: &Value, n: usize) -> Option<(u8, Vec<Vec<u8>>)> {
    let els = v.elements()?;
    let mut out: Vec<Vec<u8>> = els
        .chunks(n)
        .map(|c| c.iter().flat_map(encoded).collect())
        .collect();
    out.sort();
    Some((v.kind(), out))
}

fn unordered_pairs() -> Cmp {
    Cmp::Custom(Rc::new(|x, y| {
        let (p, q) = (parse(x).ok_or("unparsable")?, parse(y).ok_or("unparsable")?);
        if chunks(&p, 2).is_some() && chunks(&p, 2) == chunks(&q, 2) {
            Ok(())
        } else {
            Err("different pair multisets".into())
        }
    }))
}

/// A complete scan in one call: both cursors 0, same items (chunks of `n`) in any order.
fn scan_cmp(n: usize) -> Cmp {
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
        if chunks(&pe[1], n) == chunks(&qe[1], n) {
            Ok(())
        } else {
            Err("different items".into())
        }
    }))
}

fn leaves(v: &Value, out: &mut Vec<Vec<u8>>) {
    match v.elements() {
        Some(els) if matches!(v, Value::Agg(..)) => els.iter().for_each(|e| leaves(e, out)),
        _ => out.push(v.as_bytes().map(<[u8]>::to_vec).unwrap_or_default()),
    }
}

/// Random-output check: same structure as the reference, every leaf one of
/// `allowed`, and (when `distinct`) no repeated top-level element.
fn random_cmp(allowed: &[&str], distinct: bool) -> Cmp {
    let allowed: HashSet<Vec<u8>> = allowed.iter().map(|s| s.as_bytes().to_vec()).collect();
    Cmp::Custom(Rc::new(move |x, y| {
        let (p, q) = (parse(x).ok_or("unparsable")?, parse(y).ok_or("unparsable")?);
        if !p.same_structure(&q) {
            return Err("different structure".into());
        }
        let mut ls = Vec::new();
        leaves(&q, &mut ls);
        if let Some(bad) = ls.iter().find(|l| !allowed.contains(*l)) {
            return Err(format!(
                "unexpected element {:?}",
                String::from_utf8_lossy(bad)
            ));
        }
        if distinct {
            if let Some(els) = q.elements() {
                let set: HashSet<Vec<u8>> = els.iter().map(encoded).collect();
                if set.len() != els.len() {
                    return Err("repeated element".into());
                }
            }
        }
        Ok(())
    }))
}

#[test]
fn hash_basics() {
    diff_resp(
        "hash_basics",
        &[
            c("FLUSHALL"),
            c("HSET h f1 v1"),
            c("HSET h f1 v1"),
            c("HSET h f2 v2 f3 v3"),
            c("HSET h f2 x f4 v4 f4 y"),
            c("HGET h f2"),
            c("HGET h f4"),
            c("HGET h nope"),
            c("HGET nokey f"),
            c("HGETALL h"),
            c("HKEYS h"),
            c("HVALS h"),
            c("HLEN h"),
            c("HLEN nokey"),
            c("HMGET h f1 nope f3"),
            c("HMGET nokey a b"),
            c("HEXISTS h f1"),
            c("HEXISTS h nope"),
            c("HEXISTS nokey f1"),
            c("HSTRLEN h f1"),
            c("HSTRLEN h nope"),
            c("HSTRLEN nokey f"),
            c("HMSET h f5 v5 f1 new"),
            c("HGETALL h"),
            c("HSETNX h f1 other"),
            c("HSETNX h f6 v6"),
            c("HSETNX newh f v"),
            c("HGETALL newh"),
            a(&["HSET", "bin", "f\x00\r\n", "v\x00\r\n", "", ""]),
            a(&["HGET", "bin", "f\x00\r\n"]),
            a(&["HGET", "bin", ""]),
            c("HGETALL bin"),
            c("HSTRLEN bin f"),
            // deleting keeps order of the rest; the last delete removes the key
            c("HDEL h f2 nope f2"),
            c("HGETALL h"),
            c("HDEL h nope"),
            c("HDEL nokey f"),
            c("HDEL h f1 f3 f4 f5"),
            c("EXISTS h"),
            c("HDEL h f6"),
            c("EXISTS h"),
            c("TYPE h"),
            c("HGETALL h"),
            c("HSET h a 1"),
            c("TYPE h"),
            c("OBJECT ENCODING h"),
            c("DEL h"),
            c("HKEYS h"),
            c("HVALS h"),
        ],
    );
}

#[test]
fn hash_arity_and_wrongtype() {
    let mut cases = vec![c("FLUSHALL"), c("SET str v"), c("SADD set m")];
    for cmd in [
        "HSET",
        "HSET k",
        "HSET k f",
        "HSET k f v f2",
        "HMSET",
        "HMSET k f",
        "HMSET k f v f2",
        "HSETNX k f",
        "HSETNX k f v x",
        "HGET k",
        "HGET k f x",
        "HMGET k",
        "HDEL k",
        "HEXISTS k",
        "HEXISTS k f x",
        "HLEN",
        "HLEN k x",
        "HSTRLEN k",
        "HKEYS",
        "HKEYS k x",
        "HVALS",
        "HGETALL",
        "HGETALL k x",
        "HINCRBY k f",
        "HINCRBY k f 1 2",
        "HINCRBYFLOAT k f",
        "HRANDFIELD",
        "HSCAN k",
        "HSCAN",
    ] {
        cases.push(c(cmd));
    }
    for key in ["str", "set"] {
        for cmd in [
            "HSET # f v",
            "HMSET # f v",
            "HSETNX # f v",
            "HGET # f",
            "HMGET # f",
            "HDEL # f",
            "HEXISTS # f",
            "HLEN #",
            "HSTRLEN # f",
            "HKEYS #",
            "HVALS #",
            "HGETALL #",
            "HINCRBY # f 1",
            "HINCRBYFLOAT # f 1",
            "HRANDFIELD #",
            "HRANDFIELD # 2",
            "HRANDFIELD # 2 WITHVALUES",
            "HSCAN # 0",
        ] {
            cases.push(c(&cmd.replace('#', key)));
        }
    }
    cases.extend([
        c("GET str"),
        c("SMEMBERS set"),
        c("HSET h f v"),
        c("GET h"),
        c("SADD h x"),
        c("TYPE h"),
    ]);
    diff_resp("hash_arity_and_wrongtype", &cases);
}

#[test]
fn hash_incr() {
    diff_resp(
        "hash_incr",
        &[
            c("FLUSHALL"),
            c("HINCRBY h n 5"),
            c("HINCRBY h n -7"),
            c("HINCRBY h n 0"),
            c("HGET h n"),
            c("HINCRBY h n x"),
            c("HINCRBY h n 1.5"),
            c("HINCRBY h n 9223372036854775808"),
            c("HINCRBY nokey2 n x"),
            c("EXISTS nokey2"),
            c("HSET h big 9223372036854775806 s abc z 007 neg -5 sp"),
            a(&["HSET", "h", "sp", " 1"]),
            c("HINCRBY h big 1"),
            c("HINCRBY h big 1"),
            c("HINCRBY h neg -9223372036854775803"),
            c("HINCRBY h neg -1"),
            c("HINCRBY h neg -1"),
            c("HINCRBY h s 1"),
            c("HINCRBY h z 1"),
            c("HINCRBY h sp 1"),
            c("HINCRBYFLOAT h f 10.5"),
            c("HINCRBYFLOAT h f 0.1"),
            c("HINCRBYFLOAT h f -0.6"),
            c("HINCRBYFLOAT h f 3.0e3"),
            c("HINCRBYFLOAT h f 1e-20"),
            c("HINCRBYFLOAT h g 5.0e3"),
            c("HINCRBYFLOAT h g -5000"),
            c("HINCRBYFLOAT h g 0.1"),
            c("HINCRBYFLOAT h g 0.2"),
            c("HINCRBYFLOAT h g 1.7976931348623157e308"),
            c("HINCRBYFLOAT h i 1e-4000"),
            c("HINCRBYFLOAT h n 1.5"),
            c("HINCRBYFLOAT h s 1"),
            c("HINCRBYFLOAT h z 1"),
            c("HINCRBYFLOAT h sp 1"),
            c("HINCRBYFLOAT h f abc"),
            c("HINCRBYFLOAT h f inf"),
            c("HINCRBYFLOAT h f -inf"),
            c("HINCRBYFLOAT h f nan"),
            c("HINCRBYFLOAT h f 0x10"),
            a(&["HINCRBYFLOAT", "h", "f", " 1"]),
            a(&["HINCRBYFLOAT", "h", "f", ""]),
            c("HSET h inf inf"),
            c("HINCRBYFLOAT h inf 1"),
            c("HINCRBYFLOAT nokey3 f abc"),
            c("EXISTS nokey3"),
            c("OBJECT ENCODING h"),
            c("HINCRBYFLOAT h huge 1e100"),
            c("OBJECT ENCODING h"),
            c("HGET h huge"),
            c("HINCRBYFLOAT h2 f 1e63"),
            c("OBJECT ENCODING h2"),
            c("HINCRBYFLOAT h2 f 1e64"),
            c("OBJECT ENCODING h2"),
        ],
    );
}

#[test]
fn hash_encoding_thresholds() {
    let mut cases = vec![c("FLUSHALL")];
    for i in 0..512 {
        cases.push(c(&format!("HSET h f{i} v{i}")));
    }
    cases.extend([
        c("OBJECT ENCODING h"),
        c("HLEN h"),
        c("HGETALL h"),
        c("HSCAN h 0"),
        c("HSCAN h 0 MATCH f1*"),
    ]);
    cases.push(c("HSET h f512 v512"));
    cases.extend([
        c("OBJECT ENCODING h"),
        c("HLEN h"),
        c("HGETALL h").with(unordered_pairs()),
        c("HKEYS h").unordered(),
        c("HVALS h").unordered(),
        c("HSCAN h 0 COUNT 1000").with(scan_cmp(2)),
        c("HSCAN h 0 COUNT 1000 MATCH f1?").with(scan_cmp(2)),
        c("HGET h f77"),
        c("HDEL h f1 f2 f3"),
        c("OBJECT ENCODING h"),
    ]);
    let long = "x".repeat(64);
    let longer = "x".repeat(65);
    cases.extend([
        a(&["HSET", "v64", "f", &long]),
        c("OBJECT ENCODING v64"),
        a(&["HSET", "v64", &long, "v"]),
        c("OBJECT ENCODING v64"),
        a(&["HSET", "v65", "f", &longer]),
        c("OBJECT ENCODING v65"),
        a(&["HSET", "f65", &longer, "v"]),
        c("OBJECT ENCODING f65"),
        a(&["HSET", "later", "a", "1", "b", &longer]),
        c("OBJECT ENCODING later"),
        c("HSET nx a 1"),
        a(&["HSETNX", "nx", "a", &longer]),
        c("OBJECT ENCODING nx"),
        a(&["HSETNX", "nx", "b", &longer]),
        c("OBJECT ENCODING nx"),
        a(&["HMSET", "m", "a", &longer]),
        c("OBJECT ENCODING m"),
    ]);
    cases.extend([
        c("HDEL h f0 f4 f5 f6 f7 f8 f9 f10 f11 f12 f13 f14 f15 f16 f17 f18 f19 f20"),
        c("HLEN h"),
        c("OBJECT ENCODING h"),
    ]);
    diff_resp("hash_encoding_thresholds", &cases);
}

/// DUMP payloads are implementation-specific: check a DUMP/RESTORE round trip on
/// the target (contents and encoding survive).
#[test]
fn hash_dump_restore() {
    let target = shoal_tests::spawn_resp_target();
    let mut conn = shoal_tests::resp::RespConn::connect(target.resp_port());
    conn.call(&["HSET", "small", "a", "1", "b", "2", "c", "3"]);
    for i in 0..600 {
        conn.call(&["HSET", "big", &format!("f{i}"), &format!("v{i}")]);
    }
    for key in ["small", "big"] {
        let dump = parse(&conn.call(&["DUMP", key])).expect("reply");
        let payload = dump
            .as_bytes()
            .expect("DUMP returns a bulk string")
            .to_vec();
        let copy = format!("{key}-copy");
        let r = conn.call(&[&b"RESTORE"[..], copy.as_bytes(), &b"0"[..], &payload[..]]);
        assert_eq!(r, b"+OK\r\n", "RESTORE of {key}");
        let enc =
            |conn: &mut shoal_tests::resp::RespConn, k: &str| conn.call(&["OBJECT", "ENCODING", k]);
        assert_eq!(enc(&mut conn, key), enc(&mut conn, &copy));
        let all = |conn: &mut shoal_tests::resp::RespConn, k: &str| {
            let v = parse(&conn.call(&["HGETALL", k])).expect("reply");
            chunks(&v, 2)
        };
        assert_eq!(all(&mut conn, key), all(&mut conn, &copy));
    }
}

#[test]
fn hash_randfield_and_scan() {
    let fields = ["f1", "f2", "f3", "f4", "f5"];
    let all: Vec<&str> = ["f1", "f2", "f3", "f4", "f5", "v1", "v2", "v3", "v4", "v5"].to_vec();
    let mut cases = vec![c("FLUSHALL"), c("HSET h f1 v1 f2 v2 f3 v3 f4 v4 f5 v5")];
    for proto in ["2", "3"] {
        cases.extend([
            c(&format!("HELLO {proto}")).with(Cmp::MapKeys),
            c("HRANDFIELD h").with(random_cmp(&fields, true)),
            c("HRANDFIELD h 3").with(random_cmp(&fields, true)),
            c("HRANDFIELD h 5").with(random_cmp(&fields, true)),
            c("HRANDFIELD h 50"),
            c("HRANDFIELD h 50 WITHVALUES"),
            c("HRANDFIELD h 3 WITHVALUES").with(random_cmp(&all, true)),
            c("HRANDFIELD h -3").with(random_cmp(&fields, false)),
            c("HRANDFIELD h -20").with(random_cmp(&fields, false)),
            c("HRANDFIELD h -7 WITHVALUES").with(random_cmp(&all, false)),
            c("HRANDFIELD h 0"),
            c("HRANDFIELD h 0 WITHVALUES"),
            c("HRANDFIELD h -0"),
            c("HRANDFIELD nokey"),
            c("HRANDFIELD nokey 3"),
            c("HRANDFIELD nokey -3 WITHVALUES"),
            c("HRANDFIELD h 1 WITHVALUE"),
            c("HRANDFIELD h 1 WITHVALUES x"),
            c("HRANDFIELD h x"),
            c("HRANDFIELD h 1.5"),
            c("HRANDFIELD h -9223372036854775808"),
            c("HRANDFIELD h 9223372036854775807 WITHVALUES"),
            c("HRANDFIELD h -9223372036854775807 WITHVALUES"),
            c("HRANDFIELD h 4611686018427387904 WITHVALUES"),
            c("HRANDFIELD h 4611686018427387903 WITHVALUES"),
            c("HGETALL h"),
            c("HGETALL nokey"),
            c("HMGET nokey a"),
            c("HGET nokey a"),
            c("HSCAN h 0"),
            c("HSCAN h 0 COUNT 1"),
            c("HSCAN h 123 COUNT 1"),
            c("HSCAN h 0 MATCH f[12]"),
            c("HSCAN h 0 MATCH v*"),
            c("HSCAN h 0 match * count 2"),
            c("HSCAN h 0 COUNT 0"),
            c("HSCAN h 0 COUNT -1"),
            c("HSCAN h 0 COUNT x"),
            c("HSCAN h 0 MATCH"),
            c("HSCAN h 0 TYPE hash"),
            c("HSCAN h 0 NOVALUES"),
            c("HSCAN h x"),
            c("HSCAN h -1"),
            c("HSCAN h 18446744073709551616"),
            c("HSCAN nokey 0"),
            c("HSCAN nokey 0 COUNT 0"),
            c("HSCAN nokey x"),
        ]);
    }
    diff_resp("hash_randfield_and_scan", &cases);
}

/// A big hash: HRANDFIELD picks from a hashtable; full HSCAN iteration.
#[test]
fn hash_big_random_and_scan_loop() {
    let mut cases = vec![c("FLUSHALL")];
    let mut allowed: Vec<String> = Vec::new();
    for i in 0..600 {
        cases.push(c(&format!("HSET big f{i} v{i}")));
        allowed.push(format!("f{i}"));
        allowed.push(format!("v{i}"));
    }
    let allowed_ref: Vec<&str> = allowed.iter().map(String::as_str).collect();
    cases.extend([
        c("OBJECT ENCODING big"),
        c("HRANDFIELD big 10").with(random_cmp(&allowed_ref, true)),
        c("HRANDFIELD big 599 WITHVALUES").with(random_cmp(&allowed_ref, true)),
        c("HRANDFIELD big 600 WITHVALUES").with(unordered_pairs()),
        c("HRANDFIELD big -500 WITHVALUES").with(random_cmp(&allowed_ref, false)),
        c("HSCAN big 0 COUNT 100000").with(scan_cmp(2)),
    ]);
    diff_resp("hash_big_random", &cases);

    // Iterate HSCAN to completion on both sides (cursors differ by design).
    let mut pair = RespPair::start();
    assert!(pair.run(&cases[..601], 1).is_empty());
    drop(pair);
    let target = shoal_tests::spawn_resp_target();
    let mut conn = shoal_tests::resp::RespConn::connect(target.resp_port());
    for i in 0..600 {
        conn.call(&["HSET", "big", &format!("f{i}"), &format!("v{i}")]);
    }
    let mut seen = HashSet::new();
    let mut cursor = b"0".to_vec();
    for _ in 0..10_000 {
        let reply = conn.call(&[
            &b"HSCAN"[..],
            &b"big"[..],
            &cursor[..],
            &b"COUNT"[..],
            &b"7"[..],
        ]);
        let v = parse(&reply).expect("reply");
        let els = v.elements().expect("array");
        cursor = els[0].as_bytes().expect("cursor").to_vec();
        for pair in els[1].elements().expect("items").chunks(2) {
            assert_eq!(
                pair[0].as_bytes().unwrap()[1..],
                pair[1].as_bytes().unwrap()[1..],
                "field/value mismatch"
            );
            seen.insert(pair[0].as_bytes().unwrap().to_vec());
        }
        if cursor == b"0" {
            break;
        }
    }
    assert_eq!(cursor, b"0");
    assert_eq!(seen.len(), 600);
}

fn rand_field(rng: &mut SmallRng) -> String {
    format!("f{}", rng.gen_range(0..12))
}

fn rand_value(rng: &mut SmallRng) -> String {
    match rng.gen_range(0..10) {
        0..=2 => rng.gen_range(-100i64..100).to_string(),
        3 => [
            "1.5",
            "-0.25",
            "1e3",
            "007",
            " 1",
            "",
            "9223372036854775807",
        ][rng.gen_range(0..7)]
        .into(),
        4 => "y".repeat(rng.gen_range(60..70)),
        _ => format!("v{}", rng.gen_range(0..50)),
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

fn random_op(rng: &mut SmallRng) -> RespCase {
    let k = format!("h{}", rng.gen_range(0..4));
    let k = if rng.gen_bool(0.03) {
        "str".to_string()
    } else {
        k
    };
    let f = rand_field(rng);
    let v = rand_value(rng);
    let args: Vec<String> = match rng.gen_range(0..22) {
        0..=3 => {
            let mut a = vec!["HSET".into(), k];
            for _ in 0..rng.gen_range(1..5) {
                a.push(rand_field(rng));
                a.push(rand_value(rng));
            }
            a
        }
        4 => vec!["HSETNX".into(), k, f, v],
        5 => vec!["HMSET".into(), k, f, v],
        6 | 7 => vec!["HGET".into(), k, f],
        8 => vec!["HMGET".into(), k, f, rand_field(rng)],
        9 | 10 => {
            let mut a = vec!["HDEL".into(), k];
            for _ in 0..rng.gen_range(1..4) {
                a.push(rand_field(rng));
            }
            a
        }
        11 => vec!["HEXISTS".into(), k, f],
        12 => vec!["HLEN".into(), k],
        13 => vec!["HSTRLEN".into(), k, f],
        14 => return RespCase::cmd(&["HGETALL", &k]).with(unordered_pairs()),
        15 => return RespCase::cmd(&["HKEYS", &k]).unordered(),
        16 => return RespCase::cmd(&["HVALS", &k]).unordered(),
        17 => vec![
            "HINCRBY".into(),
            k,
            f,
            rng.gen_range(-50i64..50).to_string(),
        ],
        18 => vec![
            "HINCRBYFLOAT".into(),
            k,
            f,
            ["0.1", "-1.5", "3", "1e10", "2.5e-3"][rng.gen_range(0..5)].into(),
        ],
        19 => vec!["OBJECT".into(), "ENCODING".into(), k],
        20 => return RespCase::cmd(&["HSCAN", &k, "0", "COUNT", "1000"]).with(scan_cmp(2)),
        _ => {
            return RespCase::cmd(&["HRANDFIELD", &k, "100", "WITHVALUES"]).with(unordered_pairs())
        }
    };
    RespCase::cmd(&args)
}

#[test]
fn hash_random_sequence() {
    let seed = seed();
    eprintln!("[hash_random] seed {seed} (replay with SHOAL_SEED={seed})");
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut cases = vec![c("FLUSHALL"), c("SET str x")];
    for i in 0..RANDOM_OPS {
        cases.push(random_op(&mut rng));
        if i % 500 == 499 {
            cases.push(c("DBSIZE"));
        }
    }
    diff_resp("hash_random", &cases);
}
