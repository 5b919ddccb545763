//! SORT and SORT_RO compared byte for byte against redis-server 7.0: lists, sets and
//! sorted sets; numeric and ALPHA order, ties, DESC, LIMIT edge cases, BY and GET
//! patterns (strings, hash fields, missing keys, `#`, patterns without `*`), STORE (over
//! other types, empty results delete the destination), weight parse errors, option
//! errors and WRONGTYPE; then a seeded random sequence (`SHOAL_SEED=<n>` replays one).
//!
//! A set's own iteration order differs between the servers, so a set sorted with `BY`
//! a constant (no sorting) is compared as an unordered reply. Run against redis-server
//! itself (`SHOAL_DIFF_TARGET=reference`) every case must pass.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shoal_tests::diff::{c, diff_resp, RespCase};

#[test]
fn sort_lists_sets_zsets() {
    diff_resp(
        "sort_basic",
        &[
            c("FLUSHALL"),
            c("SORT missing"),
            c("SORT missing STORE dst"),
            c("EXISTS dst"),
            c("RPUSH l 3 1 2 10 -5 2.5 1e2 0x10 +7"),
            c("SORT l"),
            c("SORT l DESC"),
            c("SORT l LIMIT 1 3"),
            c("SORT l LIMIT 0 0"),
            c("SORT l LIMIT -5 2"),
            c("SORT l LIMIT 2 -1"),
            c("SORT l LIMIT 100 5"),
            c("SORT l LIMIT 8 100"),
            c("SORT l DESC LIMIT 0 3"),
            c("SORT l ALPHA"),
            c("SORT l ALPHA DESC LIMIT 2 2"),
            c("SORT_RO l"),
            c("SORT_RO l ALPHA DESC"),
            c("RPUSH words banana apple Cherry apple 10 9"),
            c("SORT words"),
            c("SORT words ALPHA"),
            c("SORT words ALPHA DESC"),
            c("SORT words BY nosort"),
            c("SORT words BY nosort DESC"),
            c("SORT words BY nosort LIMIT 1 2"),
            c("SORT words BY nosort DESC LIMIT 1 2"),
            c("RPUSH ties 2 1 2 01 1.0 b a"),
            c("SORT ties ALPHA"),
            c("RPUSH nums 2 1 2 01 1.0 1e0"),
            c("SORT nums"),
            c("SORT nums DESC"),
            c("SADD s 5 3 9 1"),
            c("SORT s"),
            c("SORT s DESC LIMIT 1 2"),
            c("SORT s ALPHA"),
            c("SORT s BY nosort").unordered(),
            c("SADD ws pear fig apple"),
            c("SORT ws ALPHA"),
            c("SORT ws"),
            c("SORT ws BY nosort STORE wsd"),
            c("LRANGE wsd 0 -1"),
            c("ZADD z 3 a 1 b 2 c"),
            c("SORT z BY nosort"),
            c("SORT z BY nosort DESC"),
            c("SORT z BY nosort LIMIT 1 5"),
            c("SORT z ALPHA"),
            c("SORT z"),
            c("ZADD zn 1 30 2 10 3 20"),
            c("SORT zn"),
            c("SORT zn DESC LIMIT 0 2"),
            c("SORT zn BY nosort DESC"),
        ],
    );
}

#[test]
fn sort_by_get_store() {
    diff_resp(
        "sort_patterns",
        &[
            c("FLUSHALL"),
            c("RPUSH ids 1 2 3 4"),
            c("MSET w_1 40 w_2 10 w_3 30 o_1 one o_2 two o_3 three"),
            c("HSET h_1 f 3 name uno"),
            c("HSET h_2 f 1 name dos"),
            c("HSET h_4 f 2"),
            c("SORT ids BY w_*"),
            c("SORT ids BY w_* DESC"),
            c("SORT ids BY w_* GET o_*"),
            c("SORT ids BY w_* GET # GET o_* GET h_*->name"),
            c("SORT ids BY h_*->f"),
            c("SORT ids BY h_*->f GET h_*->name GET h_*->missing"),
            c("SORT ids BY w_* ALPHA"),
            c("SORT ids BY o_* ALPHA"),
            c("SORT ids BY o_* ALPHA DESC"),
            c("SORT ids BY nosort GET o_*"),
            c("SORT ids GET nostar"),
            c("SORT ids GET o_* LIMIT 1 2"),
            c("SORT ids BY w_* LIMIT 1 2 GET #"),
            c("SORT ids BY h_*->"),
            c("SORT ids GET h_*->"),
            c("SORT ids BY o_*"),
            c("SORT ids BY w_* STORE out"),
            c("LRANGE out 0 -1"),
            c("TYPE out"),
            c("SORT ids BY w_* GET o_* GET nosuch_* STORE out"),
            c("LRANGE out 0 -1"),
            c("SET str x"),
            c("SORT ids STORE str"),
            c("TYPE str"),
            c("LRANGE str 0 -1"),
            c("EXPIRE out 100"),
            c("SORT ids LIMIT 0 2 STORE out"),
            c("TTL out"),
            c("SORT ids LIMIT 10 2 STORE out"),
            c("EXISTS out"),
            c("SORT_RO ids BY w_* GET o_*"),
        ],
    );
}

#[test]
fn sort_errors() {
    diff_resp(
        "sort_errors",
        &[
            c("FLUSHALL"),
            c("RPUSH l 1 x 2"),
            c("SORT l"),
            c("SORT l DESC"),
            c("SORT l ALPHA"),
            RespCase::cmd(&["RPUSH", "ws", " 2", "1", "\t3"]),
            c("SORT ws"),
            RespCase::cmd(&["RPUSH", "tr", "2 ", "1"]),
            c("SORT tr"),
            RespCase::cmd(&["RPUSH", "em", "", "1", "-1"]),
            c("SORT em"),
            c("RPUSH nan 1 nan"),
            c("SORT nan"),
            c("RPUSH inf 1 inf -inf 0"),
            c("SORT inf"),
            c("SET s v"),
            c("SORT s"),
            c("SORT s LIMIT x 1"),
            c("HSET h a 1"),
            c("SORT h"),
            c("SORT l LIMIT 0"),
            c("SORT l LIMIT a b"),
            c("SORT l LIMIT 0 1.5"),
            c("SORT l BY"),
            c("SORT l GET"),
            c("SORT l STORE"),
            c("SORT l FOO"),
            c("SORT_RO l STORE d"),
            c("SORT"),
            c("SORT_RO"),
            c("RPUSH w 1 2"),
            c("SET x_1 abc"),
            c("SORT w BY x_*"),
            c("SORT w BY x_* ALPHA"),
        ],
    );
}

#[test]
fn sort_random_sequence() {
    let seed = std::env::var("SHOAL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("sort_random_sequence seed {seed} (SHOAL_SEED={seed} replays it)");
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut cases = vec![c("FLUSHALL")];
    let vals = ["1", "2", "3", "10", "-4", "2.5", "07", "a", "b", "Z", "1e1"];
    for _ in 0..300 {
        let k = ["k1", "k2", "k3"][rng.gen_range(0..3)];
        let v = vals[rng.gen_range(0..vals.len())];
        let w = rng.gen_range(0..6).to_string();
        match rng.gen_range(0..10) {
            0..=2 => cases.push(c(&format!("RPUSH {k} {v}"))),
            3 => cases.push(c(&format!("SET w_{v} {w}"))),
            4 => cases.push(c(&format!("HSET h_{v} f {w}"))),
            5 => cases.push(c(&format!("LPOP {k}"))),
            _ => {
                let mut cmd = format!("SORT {k}");
                if rng.gen_bool(0.3) {
                    cmd += [" BY w_*", " BY h_*->f", " BY nosort"][rng.gen_range(0..3)];
                } else if rng.gen_bool(0.5) {
                    cmd += " ALPHA";
                }
                if rng.gen_bool(0.4) {
                    cmd += " DESC";
                }
                if rng.gen_bool(0.4) {
                    cmd += &format!(" LIMIT {} {}", rng.gen_range(-1..5), rng.gen_range(-1..5));
                }
                if rng.gen_bool(0.3) {
                    cmd += " GET # GET w_* GET h_*->f";
                }
                if rng.gen_bool(0.2) {
                    cmd += " STORE dst";
                    cases.push(c(&cmd));
                    cases.push(c("LRANGE dst 0 -1"));
                } else {
                    cases.push(c(&cmd));
                }
            }
        }
    }
    diff_resp("sort_random", &cases);
}
