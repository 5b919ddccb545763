//! Seeded random command sequences compared against redis-server and memcached.
//! The seed is printed; replay a failure with `SHOAL_SEED=<seed>`.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shoal_tests::diff::{m, McCase, McPair, RespCase, RespPair};

const RESP_OPS: usize = 3000;
const MC_OPS: usize = 3000;

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

fn pick<'a>(rng: &mut SmallRng, items: &[&'a str]) -> &'a str {
    items[rng.gen_range(0..items.len())]
}

const KEYS: &[&str] = &["k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"];

fn resp_value(rng: &mut SmallRng) -> String {
    match rng.gen_range(0..8) {
        0 => rng.gen_range(-1000i64..1000).to_string(),
        1 => pick(
            rng,
            &[
                "9223372036854775807",
                "-9223372036854775808",
                "0",
                "007",
                " 1",
                "1.5",
                "",
            ],
        )
        .into(),
        2 => "x".repeat(rng.gen_range(40..50)),
        3 => rng.gen_range(0..10u32).to_string(),
        _ => pick(rng, &["a", "hello", "world", "foo bar", "v\r\nv"]).into(),
    }
}

fn resp_op(rng: &mut SmallRng) -> RespCase {
    let k = pick(rng, KEYS).to_string();
    let k2 = pick(rng, KEYS).to_string();
    let v = resp_value(rng);
    let n = rng.gen_range(-20i64..40).to_string();
    let ttl = rng.gen_range(1000..100_000).to_string();
    let args: Vec<String> = match rng.gen_range(0..26) {
        0 | 1 => vec!["SET".into(), k, v],
        2 => {
            let opt = pick(rng, &["NX", "XX", "GET", "KEEPTTL", "EX", "PX"]);
            let mut a = vec!["SET".into(), k, v, opt.into()];
            if opt == "EX" {
                a.push(ttl);
            } else if opt == "PX" {
                a.push(format!("{ttl}000"));
            }
            a
        }
        3 | 4 => vec!["GET".into(), k],
        5 => vec!["DEL".into(), k, k2],
        6 => vec!["EXISTS".into(), k.clone(), k2, k],
        7 => vec!["INCR".into(), k],
        8 => vec!["INCRBY".into(), k, n],
        9 => vec!["DECR".into(), k],
        10 => vec!["APPEND".into(), k, v],
        11 => {
            let e = rng.gen_range(-10i64..30).to_string();
            vec!["GETRANGE".into(), k, n, e]
        }
        12 => vec!["SETRANGE".into(), k, rng.gen_range(0..30u32).to_string(), v],
        13 => vec!["STRLEN".into(), k],
        14 => {
            let mut a = vec!["EXPIRE".into(), k, ttl];
            if rng.gen_bool(0.3) {
                a.push(pick(rng, &["NX", "XX", "GT", "LT"]).into());
            }
            a
        }
        15 => vec!["PERSIST".into(), k],
        16 => return RespCase::cmd(&["TTL", k.as_str()]).within(1),
        17 => vec!["MSET".into(), k, v, k2, resp_value(rng)],
        18 => vec!["MGET".into(), k, k2, pick(rng, KEYS).into()],
        19 => vec!["GETDEL".into(), k],
        20 => vec!["RENAME".into(), k, k2],
        21 => {
            let mut a = vec!["COPY".into(), k, k2];
            if rng.gen_bool(0.5) {
                a.push("REPLACE".into());
            }
            a
        }
        22 => vec!["TYPE".into(), k],
        23 => vec!["GETSET".into(), k, v],
        24 => vec!["SETNX".into(), k, v],
        _ => vec!["DBSIZE".into()],
    };
    RespCase::cmd(&args)
}

#[test]
fn random_resp_vs_redis() {
    let seed = seed();
    eprintln!("[random_resp] seed {seed} (replay with SHOAL_SEED={seed})");
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut cases = vec![RespCase::cmd(&["FLUSHALL"])];
    for i in 0..RESP_OPS {
        cases.push(resp_op(&mut rng));
        if i % 250 == 249 {
            cases.push(RespCase::cmd(&["KEYS", "*"]).unordered());
        }
    }
    cases.push(RespCase::cmd(&["KEYS", "*"]).unordered());
    let mut pair = RespPair::start();
    let bad = pair.run(&cases, 3);
    assert!(
        bad.is_empty(),
        "[random_resp] seed {seed}: {} mismatch(es) (showing up to 3; replay with SHOAL_SEED={seed}):\n  {}",
        bad.len(),
        bad.join("\n  ")
    );
}

fn mc_value(rng: &mut SmallRng) -> String {
    match rng.gen_range(0..5) {
        0 => rng.gen_range(0..1000u32).to_string(),
        1 => pick(
            rng,
            &[
                "18446744073709551615",
                "18446744073709551600",
                "0",
                "abc",
                "",
            ],
        )
        .into(),
        2 => "y".repeat(rng.gen_range(1..100)),
        _ => pick(rng, &["a", "hello", "12 ", "x y"]).into(),
    }
}

/// Counters (incr/decr) live on k0..k2 and append/prepend only touch k3..k5: memcached
/// pads a shrinking counter with spaces only sometimes (see `unpad_counters` in the
/// harness), and appending to a padded counter would turn that into a real divergence.
fn mc_op(rng: &mut SmallRng) -> McCase {
    let k = pick(rng, &KEYS[..6]);
    let counter = pick(rng, &KEYS[..3]);
    let text = pick(rng, &KEYS[3..6]);
    let k2 = pick(rng, &KEYS[..6]);
    let v = mc_value(rng);
    let flags = pick(rng, &["0", "1", "42", "4294967295"]);
    let exp = if rng.gen_bool(0.8) {
        "0".to_string()
    } else {
        rng.gen_range(1000..100_000).to_string()
    };
    let nr = if rng.gen_bool(0.1) { " noreply" } else { "" };
    let delta = pick(rng, &["1", "0", "5", "100", "4294967296"]);
    match rng.gen_range(0..16) {
        0..=2 => m(&format!("set {k} {flags} {exp} {}{nr}|{v}", v.len())),
        3 => m(&format!("add {k} {flags} {exp} {}{nr}|{v}", v.len())),
        4 => m(&format!("replace {k} {flags} {exp} {}{nr}|{v}", v.len())),
        5 => m(&format!("append {text} 0 0 {}{nr}|{v}", v.len())),
        6 => m(&format!("prepend {text} 0 0 {}{nr}|{v}", v.len())),
        7 => m(&format!("gets {k}")),
        8 => m(&format!("cas {k} {flags} {exp} {} $CAS{nr}|{v}", v.len())),
        9 => m(&format!("incr {counter} {delta}{nr}")),
        10 => m(&format!("decr {counter} {delta}{nr}")),
        11 => m(&format!("delete {k}{nr}")),
        12 => m(&format!("touch {k} {exp}{nr}")),
        13 => m(&format!("get {k} {k2}")),
        14 => m(&format!("gets {k} {k2}")),
        _ => m(&format!("get {k}")),
    }
}

#[test]
fn random_memcache_vs_memcached() {
    let seed = seed().wrapping_add(1);
    eprintln!(
        "[random_memcache] seed {seed} (replay with SHOAL_SEED={})",
        seed.wrapping_sub(1)
    );
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut cases = vec![m("flush_all")];
    for _ in 0..MC_OPS {
        cases.push(mc_op(&mut rng));
    }
    cases.push(m("get k0 k1 k2 k3 k4 k5"));
    let mut pair = McPair::start();
    let bad = pair.run(&cases, 3);
    assert!(
        bad.is_empty(),
        "[random_memcache] {} mismatch(es) (showing up to 3; replay with SHOAL_SEED={}):\n  {}",
        bad.len(),
        seed.wrapping_sub(1),
        bad.join("\n  ")
    );
}
