//! List commands compared byte for byte against redis-server 7.0: hand-written edge cases
//! (indexes, option errors, arity, WRONGTYPE, RESP2/RESP3 null shapes, blocking commands
//! with short timeouts) and a seeded random sequence (`SHOAL_SEED=<n>` replays one).
//!
//! Run against redis-server itself (`SHOAL_DIFF_TARGET=reference`) every case must pass.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shoal_tests::diff::{c, diff_resp, RespCase, RespPair};

/// `c` for arguments that contain spaces or are empty.
fn a(args: &[&str]) -> RespCase {
    RespCase::cmd(args)
}

#[test]
fn push_pop_len() {
    diff_resp(
        "lists_push_pop",
        &[
            c("FLUSHALL"),
            c("LPUSH l a"),
            c("LPUSH l b c"),
            c("RPUSH l x y z"),
            c("LRANGE l 0 -1"),
            c("LLEN l"),
            c("LLEN missing"),
            c("LPUSHX missing a b"),
            c("RPUSHX missing a"),
            c("EXISTS missing"),
            c("LPUSHX l p1 p2"),
            c("RPUSHX l r1"),
            c("LRANGE l 0 -1"),
            c("LPOP l"),
            c("RPOP l"),
            c("LPOP l 2"),
            c("RPOP l 2"),
            c("LPOP l 0"),
            c("RPOP l 0"),
            c("LRANGE l 0 -1"),
            c("LPOP l 100"),
            c("EXISTS l"),
            c("LPOP l"),
            c("LPOP l 1"),
            c("LPOP l 0"),
            c("RPOP missing"),
            c("RPOP missing 3"),
            c("LPOP missing -1"),
            c("LPOP missing abc"),
            c("RPUSH l a"),
            c("LPOP l -1"),
            c("LPOP l 1.5"),
            c("LPOP l 9223372036854775807"),
            c("LPOP l 1 2"),
            c("RPOP l 1 2"),
            a(&["RPUSH", "e", "", "", "x"]),
            c("LRANGE e 0 -1"),
            c("LLEN e"),
            c("TYPE e"),
            c("OBJECT ENCODING e"),
            c("RPUSH big 1 2 3"),
            c("OBJECT ENCODING big"),
            c("HELLO 3").with(shoal_tests::diff::Cmp::MapKeys),
            c("LPOP missing"),
            c("LPOP missing 2"),
            c("LPOP missing 0"),
            c("RPOP e 0"),
            c("LPOP e 2"),
            c("LINDEX missing 0"),
            c("LPOS missing a"),
            c("LPOS missing a COUNT 0"),
            c("LMPOP 1 missing LEFT"),
            c("LMOVE missing x LEFT LEFT"),
            c("RPOPLPUSH missing x"),
            c("BLPOP missing 0.01"),
            c("BRPOP missing missing2 0.01"),
            c("BLMOVE missing x LEFT RIGHT 0.01"),
            c("BRPOPLPUSH missing x 0.01"),
            c("BLMPOP 0.01 2 missing m2 RIGHT COUNT 2"),
            c("HELLO 2").with(shoal_tests::diff::Cmp::MapKeys),
            c("BLPOP missing 0.01"),
            c("BLMOVE missing x LEFT RIGHT 0.01"),
            c("BRPOPLPUSH missing x 0.01"),
            c("BLMPOP 0.01 1 missing LEFT"),
        ],
    );
}

#[test]
fn indexes_ranges_and_edits() {
    diff_resp(
        "lists_indexes",
        &[
            c("FLUSHALL"),
            c("RPUSH l a b c d e f"),
            c("LINDEX l 0"),
            c("LINDEX l 5"),
            c("LINDEX l 6"),
            c("LINDEX l -1"),
            c("LINDEX l -6"),
            c("LINDEX l -7"),
            c("LINDEX l 9223372036854775807"),
            c("LINDEX l -9223372036854775808"),
            c("LINDEX l x"),
            c("LINDEX missing x"),
            c("LRANGE l 0 -1"),
            c("LRANGE l 1 2"),
            c("LRANGE l -2 -1"),
            c("LRANGE l -100 100"),
            c("LRANGE l 3 2"),
            c("LRANGE l 6 10"),
            c("LRANGE l 0 -7"),
            c("LRANGE l -9223372036854775808 9223372036854775807"),
            c("LRANGE l a 1"),
            c("LRANGE l 1 b"),
            c("LRANGE missing 0 -1"),
            c("LRANGE missing a b"),
            c("LSET l 0 A"),
            c("LSET l -1 F"),
            c("LSET l 6 x"),
            c("LSET l -7 x"),
            c("LSET l x y"),
            c("LSET missing 0 x"),
            c("LSET missing x x"),
            a(&["LSET", "l", "2", ""]),
            c("LRANGE l 0 -1"),
            c("LINSERT l BEFORE A first"),
            c("LINSERT l after F last"),
            c("LINSERT l AFTER d d2"),
            c("LINSERT l BEFORE nothere x"),
            c("LINSERT l MIDDLE A x"),
            c("LINSERT missing BEFORE a x"),
            c("LINSERT missing MIDDLE a x"),
            c("LRANGE l 0 -1"),
            c("LLEN l"),
            c("RPUSH r a b a c a b a"),
            c("LREM r 2 a"),
            c("LRANGE r 0 -1"),
            c("LREM r -1 b"),
            c("LRANGE r 0 -1"),
            c("LREM r 0 a"),
            c("LRANGE r 0 -1"),
            c("LREM r 0 zz"),
            c("LREM r x a"),
            c("LREM missing 0 a"),
            c("LREM missing x a"),
            c("LREM r 0 b"),
            c("LREM r 0 c"),
            c("EXISTS r"),
            c("RPUSH t 0 1 2 3 4 5 6 7 8 9"),
            c("LTRIM t 1 -2"),
            c("LRANGE t 0 -1"),
            c("LTRIM t -3 100"),
            c("LRANGE t 0 -1"),
            c("LTRIM t 0 0"),
            c("LRANGE t 0 -1"),
            c("LTRIM t 5 2"),
            c("EXISTS t"),
            c("RPUSH t a b"),
            c("LTRIM t 2 10"),
            c("EXISTS t"),
            c("LTRIM missing 0 1"),
            c("LTRIM missing a 1"),
            c("LTRIM t 0 b"),
            c("RPUSH t a b c"),
            c("LTRIM t -9223372036854775808 9223372036854775807"),
            c("LRANGE t 0 -1"),
        ],
    );
}

#[test]
fn lpos_options() {
    diff_resp(
        "lists_lpos",
        &[
            c("FLUSHALL"),
            c("RPUSH l a b c a b c a"),
            c("LPOS l a"),
            c("LPOS l c"),
            c("LPOS l x"),
            c("LPOS l a RANK 2"),
            c("LPOS l a RANK 3"),
            c("LPOS l a RANK 4"),
            c("LPOS l a RANK -1"),
            c("LPOS l a RANK -2"),
            c("LPOS l a RANK -4"),
            c("LPOS l a RANK 0"),
            c("LPOS l a RANK x"),
            c("LPOS l a RANK -9223372036854775808"),
            c("LPOS l a RANK -9223372036854775808 COUNT 0"),
            c("LPOS l a RANK -9223372036854775808 COUNT 2"),
            c("LPOS l a RANK 9223372036854775807"),
            c("LPOS l a COUNT 0"),
            c("LPOS l a COUNT 2"),
            c("LPOS l a COUNT 10"),
            c("LPOS l x COUNT 0"),
            c("LPOS l a COUNT -1"),
            c("LPOS l a COUNT x"),
            c("LPOS l a RANK 2 COUNT 2"),
            c("LPOS l a RANK -2 COUNT 0"),
            c("LPOS l a MAXLEN 3"),
            c("LPOS l a MAXLEN 3 COUNT 0"),
            c("LPOS l a RANK 2 MAXLEN 3"),
            c("LPOS l a RANK -1 MAXLEN 1"),
            c("LPOS l c RANK -1 MAXLEN 2"),
            c("LPOS l a MAXLEN 0 COUNT 0"),
            c("LPOS l a MAXLEN -1"),
            c("LPOS l a MAXLEN x"),
            c("LPOS l a rank 1 rank 2"),
            c("LPOS l a count 1 count 0"),
            c("LPOS l a RANK"),
            c("LPOS l a COUNT"),
            c("LPOS l a FOO 1"),
            c("LPOS l a FOO"),
            c("LPOS missing a RANK 0"),
            c("LPOS missing a COUNT 1"),
            c("LPOS missing a RANK 1"),
            c("SET s x"),
            c("LPOS s a"),
            c("LPOS s a RANK 0"),
            c("LPOS s a COUNT 0"),
        ],
    );
}

#[test]
fn moves_and_rotation() {
    diff_resp(
        "lists_moves",
        &[
            c("FLUSHALL"),
            c("RPUSH src a b c"),
            c("LMOVE src dst LEFT RIGHT"),
            c("LMOVE src dst RIGHT LEFT"),
            c("LRANGE src 0 -1"),
            c("LRANGE dst 0 -1"),
            c("LMOVE src dst left left"),
            c("EXISTS src"),
            c("LRANGE dst 0 -1"),
            c("LMOVE dst dst LEFT RIGHT"),
            c("LRANGE dst 0 -1"),
            c("LMOVE dst dst RIGHT LEFT"),
            c("LRANGE dst 0 -1"),
            c("LMOVE dst dst LEFT LEFT"),
            c("LRANGE dst 0 -1"),
            c("RPUSH one x"),
            c("EXPIRE one 1000"),
            c("LMOVE one one LEFT RIGHT"),
            c("LRANGE one 0 -1"),
            c("TTL one").within(1),
            c("RPOPLPUSH dst dst"),
            c("LRANGE dst 0 -1"),
            c("RPOPLPUSH dst other"),
            c("LRANGE other 0 -1"),
            c("LMOVE src dst MIDDLE LEFT"),
            c("LMOVE src dst LEFT MIDDLE"),
            c("LMOVE missing dst MIDDLE LEFT"),
            c("SET str v"),
            c("LMOVE str dst LEFT LEFT"),
            c("LMOVE dst str LEFT LEFT"),
            c("LMOVE missing str LEFT LEFT"),
            c("RPOPLPUSH str dst"),
            c("RPOPLPUSH dst str"),
            c("LRANGE dst 0 -1"),
            c("BLMOVE dst str LEFT LEFT 0"),
            c("BLMOVE str dst LEFT LEFT 0"),
            c("BRPOPLPUSH dst str 0"),
            c("BLMOVE dst dst LEFT RIGHT 0"),
            c("BLMOVE dst nd RIGHT LEFT 0.01"),
            c("LRANGE nd 0 -1"),
            c("BRPOPLPUSH other nd 0"),
            c("LRANGE nd 0 -1"),
            c("BLMOVE src dst MIDDLE LEFT 0"),
            c("BLMOVE src dst LEFT RIGHT x"),
            c("BLMOVE src dst LEFT RIGHT -1"),
            c("BLMOVE src dst BAD RIGHT x"),
            c("BRPOPLPUSH src dst x"),
            c("BRPOPLPUSH src dst -0.5"),
        ],
    );
}

#[test]
fn lmpop_and_blocking_errors() {
    diff_resp(
        "lists_mpop",
        &[
            c("FLUSHALL"),
            c("RPUSH a 1 2 3"),
            c("RPUSH b 4 5"),
            c("LMPOP 2 missing a LEFT"),
            c("LMPOP 2 missing a RIGHT COUNT 10"),
            c("LMPOP 2 a b left count 1"),
            c("LMPOP 1 b RIGHT COUNT 1"),
            c("LMPOP 1 b RIGHT"),
            c("LMPOP 1 b RIGHT"),
            c("LMPOP 0 a LEFT"),
            c("LMPOP -1 a LEFT"),
            c("LMPOP x a LEFT"),
            c("LMPOP 2 a LEFT"),
            c("LMPOP 9223372036854775807 a LEFT"),
            c("LMPOP 1 a MIDDLE"),
            c("LMPOP 1 a LEFT COUNT 0"),
            c("LMPOP 1 a LEFT COUNT -1"),
            c("LMPOP 1 a LEFT COUNT x"),
            c("LMPOP 1 a LEFT COUNT"),
            c("LMPOP 1 a LEFT COUNT 1 COUNT 1"),
            c("LMPOP 1 a LEFT FOO"),
            c("SET s x"),
            c("LMPOP 2 s a LEFT"),
            c("LMPOP 2 missing s LEFT"),
            c("RPUSH a 1"),
            c("LMPOP 2 a s LEFT"),
            c("BLMPOP 0 2 s a LEFT"),
            c("BLPOP s 0"),
            c("BLPOP missing s 0"),
            c("RPUSH a 1 2"),
            c("BLPOP a s 0"),
            c("BRPOP missing a 0"),
            c("RPUSH a 1 2 3"),
            c("BLMPOP 0 1 a LEFT COUNT 5"),
            c("EXISTS a"),
            c("BLPOP a x"),
            c("BLPOP a -1"),
            c("BLPOP a -0.0015"),
            c("BLPOP a 0.0001"),
            c("BLPOP a inf"),
            c("BLPOP a -inf"),
            c("BLPOP a nan"),
            c("BLPOP a 1e300"),
            a(&["BLPOP", "a", " 1"]),
            a(&["BLPOP", "a", ""]),
            c("BLPOP a 9223372036854776"),
            c("BLMPOP x 1 a LEFT"),
            c("BLMPOP -1 1 a LEFT"),
            c("BLMPOP -1 0 a LEFT"),
            c("BLMPOP 0 0 a LEFT"),
            c("BLMPOP 0 1 a MIDDLE"),
            c("BLMPOP 0 1 a LEFT COUNT 0"),
            c("BLMPOP 0 2 a LEFT"),
            c("BLMPOP 0 1 a LEFT COUNT 1 x"),
            c("BLPOP a 0.001"),
            c("BLPOP a 0x0.01p0"),
        ],
    );
}

#[test]
fn wrongtype_and_arity() {
    let mut cases = vec![c("FLUSHALL"), c("SET s v"), c("RPUSH l a")];
    for cmd in [
        "LPUSH s a",
        "RPUSH s a",
        "LPUSHX s a",
        "RPUSHX s a",
        "LPOP s",
        "RPOP s",
        "LPOP s 2",
        "LPOP s 0",
        "LLEN s",
        "LRANGE s 0 -1",
        "LINDEX s 0",
        "LINDEX s x",
        "LSET s 0 a",
        "LSET s x a",
        "LINSERT s BEFORE a b",
        "LREM s 0 a",
        "LTRIM s 0 1",
        "LPOS s a",
        "LMOVE s l LEFT LEFT",
        "LMOVE l s LEFT LEFT",
        "RPOPLPUSH s l",
        "LMPOP 1 s LEFT",
        "BLPOP s 0",
        "BRPOP s 0",
        "BLMOVE s l LEFT LEFT 0",
        "BRPOPLPUSH l s 0",
        "BLMPOP 0 1 s LEFT",
        "GET l",
        "APPEND l x",
        "INCR l",
    ] {
        cases.push(c(cmd));
    }
    for (name, min) in [
        ("LPUSH", 3),
        ("RPUSH", 3),
        ("LPUSHX", 3),
        ("RPUSHX", 3),
        ("LPOP", 2),
        ("RPOP", 2),
        ("LLEN", 2),
        ("LRANGE", 4),
        ("LINDEX", 3),
        ("LSET", 4),
        ("LINSERT", 5),
        ("LREM", 4),
        ("LTRIM", 4),
        ("LPOS", 3),
        ("LMOVE", 5),
        ("RPOPLPUSH", 3),
        ("LMPOP", 4),
        ("BLPOP", 3),
        ("BRPOP", 3),
        ("BLMOVE", 6),
        ("BRPOPLPUSH", 4),
        ("BLMPOP", 5),
    ] {
        for n in 1..min {
            let mut args = vec![name];
            args.extend(std::iter::repeat_n("1", n - 1));
            cases.push(a(&args));
        }
    }
    // Fixed-arity commands with one argument too many.
    for cmd in [
        "LLEN l x",
        "LRANGE l 0 1 x",
        "LINDEX l 0 x",
        "LSET l 0 a x",
        "LINSERT l BEFORE a b x",
        "LREM l 0 a x",
        "LTRIM l 0 1 x",
        "LMOVE l l LEFT LEFT x",
        "RPOPLPUSH l l x",
        "BLMOVE l l LEFT LEFT 0 x",
        "BRPOPLPUSH l l 0 x",
        "LPOP l 1 x",
        "RPOP l 1 x y",
    ] {
        cases.push(c(cmd));
    }
    cases.push(c("LRANGE l 0 -1"));
    diff_resp("lists_wrongtype_arity", &cases);
}

#[test]
fn transactions_and_ttl() {
    diff_resp(
        "lists_multi",
        &[
            c("FLUSHALL"),
            c("MULTI"),
            c("BLPOP q 0"),
            c("BRPOP q 10"),
            c("BLMOVE q d LEFT LEFT 0"),
            c("BRPOPLPUSH q d 0"),
            c("BLMPOP 0 1 q LEFT"),
            c("RPUSH q a b c"),
            c("BLPOP q 0"),
            c("BLMOVE q d LEFT LEFT 0"),
            c("BLMPOP 0 1 q RIGHT COUNT 5"),
            c("EXEC"),
            c("LRANGE d 0 -1"),
            c("RPUSH t a b"),
            c("PEXPIRE t 100000"),
            c("RPUSH t c"),
            c("LPOP t"),
            c("LSET t 0 z"),
            c("PTTL t").within(500),
            c("DEL t"),
            c("RPUSH t a"),
            c("TTL t"),
            c("RPUSH big a b c"),
            c("COPY big big2"),
            c("LRANGE big2 0 -1"),
            c("TYPE big2"),
            c("OBJECT ENCODING big2"),
        ],
    );
}

#[test]
fn large_lists_and_values() {
    let mut cases = vec![c("FLUSHALL")];
    // Enough elements to span many chunks, values from empty to well over a chunk.
    for i in 0..40 {
        let mut args: Vec<String> = vec!["RPUSH".into(), "big".into()];
        for j in 0..50 {
            args.push(format!("v{}-{}", i, j));
        }
        let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        cases.push(a(&refs));
    }
    let huge = "h".repeat(20_000);
    let mid = "m".repeat(3_000);
    cases.extend([
        c("LLEN big"),
        c("LINDEX big 0"),
        c("LINDEX big 999"),
        c("LINDEX big 1000"),
        c("LINDEX big -1000"),
        c("LINDEX big 517"),
        c("LRANGE big 995 1005"),
        c("LRANGE big 490 510"),
        a(&["LSET", "big", "500", &huge]),
        c("LINDEX big 500"),
        c("LINDEX big 501"),
        a(&["LINSERT", "big", "BEFORE", "v20-1", &mid]),
        a(&["LINSERT", "big", "AFTER", "v20-1", &huge]),
        c("LRANGE big 1048 1056"),
        a(&["LPUSH", "big", &huge, "", &mid]),
        c("LRANGE big 0 3"),
        a(&["LPOS", "big", &huge, "COUNT", "0"]),
        c("LPOS big v39-49"),
        c("LPOS big v0-0 RANK -1"),
        a(&["LREM", "big", "0", &huge]),
        c("LLEN big"),
        c("LREM big -3 v3-3"),
        c("LTRIM big 100 -100"),
        c("LLEN big"),
        c("LRANGE big 0 2"),
        c("LRANGE big -3 -1"),
        c("LPOP big 5"),
        c("RPOP big 5"),
        c("LMPOP 1 big LEFT COUNT 3"),
        c("LRANGE big 400 410"),
        c("DEL big"),
    ]);
    diff_resp("lists_large", &cases);
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
            .unwrap_or(7),
    }
}

const KEYS: &[&str] = &["l0", "l1", "l2", "s0"];

fn pick<'a>(rng: &mut SmallRng, items: &[&'a str]) -> &'a str {
    items[rng.gen_range(0..items.len())]
}

fn value(rng: &mut SmallRng) -> String {
    match rng.gen_range(0..10) {
        0 => "".into(),
        1 => "x".repeat(rng.gen_range(100..3000)),
        2 => rng.gen_range(-5i64..5).to_string(),
        _ => pick(rng, &["a", "b", "c", "d", "a b"]).into(),
    }
}

fn index(rng: &mut SmallRng) -> String {
    rng.gen_range(-12i64..12).to_string()
}

fn list_op(rng: &mut SmallRng) -> RespCase {
    let k = pick(rng, KEYS).to_string();
    let k2 = pick(rng, KEYS).to_string();
    let end = |rng: &mut SmallRng| pick(rng, &["LEFT", "RIGHT"]).to_string();
    let args: Vec<String> = match rng.gen_range(0..24) {
        0..=2 => {
            let mut v = vec![pick(rng, &["LPUSH", "RPUSH"]).into(), k];
            for _ in 0..rng.gen_range(1..6) {
                v.push(value(rng));
            }
            v
        }
        3 => vec![pick(rng, &["LPUSHX", "RPUSHX"]).into(), k, value(rng)],
        4 | 5 => {
            let mut v = vec![pick(rng, &["LPOP", "RPOP"]).into(), k];
            if rng.gen_bool(0.5) {
                v.push(rng.gen_range(0..5).to_string());
            }
            v
        }
        6 => vec!["LLEN".into(), k],
        7 | 8 => vec!["LRANGE".into(), k, index(rng), index(rng)],
        9 => vec!["LINDEX".into(), k, index(rng)],
        10 => vec!["LSET".into(), k, index(rng), value(rng)],
        11 => vec![
            "LINSERT".into(),
            k,
            pick(rng, &["BEFORE", "AFTER"]).into(),
            value(rng),
            value(rng),
        ],
        12 => vec![
            "LREM".into(),
            k,
            rng.gen_range(-3i64..4).to_string(),
            value(rng),
        ],
        13 => vec!["LTRIM".into(), k, index(rng), index(rng)],
        14 => {
            let mut v = vec!["LPOS".into(), k, value(rng)];
            for opt in ["RANK", "COUNT", "MAXLEN"] {
                if rng.gen_bool(0.4) {
                    v.push(opt.into());
                    v.push(match opt {
                        "RANK" => pick(rng, &["1", "2", "-1", "-2", "3"]).into(),
                        _ => rng.gen_range(0..4).to_string(),
                    });
                }
            }
            v
        }
        15 => vec!["LMOVE".into(), k, k2, end(rng), end(rng)],
        16 => vec!["RPOPLPUSH".into(), k, k2],
        17 => {
            let mut v = vec!["LMPOP".into(), "2".into(), k, k2, end(rng)];
            if rng.gen_bool(0.5) {
                v.push("COUNT".into());
                v.push(rng.gen_range(1..4).to_string());
            }
            v
        }
        18 => vec![pick(rng, &["BLPOP", "BRPOP"]).into(), k, k2, "0.01".into()],
        19 => vec!["BLMOVE".into(), k, k2, end(rng), end(rng), "0.01".into()],
        20 => vec!["SET".into(), "s0".into(), value(rng)],
        21 => vec!["DEL".into(), k],
        22 => vec!["TYPE".into(), k],
        _ => vec!["EXISTS".into(), k, k2],
    };
    RespCase::cmd(&args)
}

#[test]
fn random_lists_vs_redis() {
    let seed = seed();
    eprintln!("[random_lists] seed {seed} (replay with SHOAL_SEED={seed})");
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut cases = vec![c("FLUSHALL")];
    for i in 0..1500 {
        cases.push(list_op(&mut rng));
        if i % 100 == 99 {
            for k in KEYS {
                cases.push(RespCase::cmd(&["LRANGE", k, "0", "-1"]));
            }
        }
    }
    let mut pair = RespPair::start();
    let bad = pair.run(&cases, 3);
    assert!(
        bad.is_empty(),
        "[random_lists] seed {seed}: {} mismatch(es) (showing up to 3; replay with SHOAL_SEED={seed}):\n  {}",
        bad.len(),
        bad.join("\n  ")
    );
}
