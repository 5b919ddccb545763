//! Sorted set commands compared byte for byte against redis-server 7.0: hand-written edge
//! cases plus a seeded random sequence (`SHOAL_SEED=<seed>` replays one; the seed is
//! printed). Commands with random output are compared by shape only.
//!
//! Run against redis-server itself (`SHOAL_DIFF_TARGET=reference`) every case must pass.

use std::collections::BTreeSet;
use std::rc::Rc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shoal_tests::diff::{c, diff_resp, Cmp, RespCase, RespPair};
use shoal_tests::resp::{parse, Value};

fn a(args: &[&str]) -> RespCase {
    RespCase::cmd(args)
}

/// Same reply shape (types and aggregate sizes), contents ignored: random replies.
fn shape(cmd: &str) -> RespCase {
    c(cmd).with(Cmp::Structure)
}

/// Cursor and (member, score) pairs of a scan reply.
type ScanResult = (Vec<u8>, BTreeSet<(Vec<u8>, Vec<u8>)>);

/// A complete ZSCAN / ZRANDMEMBER-style reply whose element order may differ: compares
/// the cursor and the multiset of (member, score) pairs.
fn scan_pairs() -> Cmp {
    Cmp::Custom(Rc::new(|x: &[u8], y: &[u8]| {
        let norm = |b: &[u8]| -> Result<ScanResult, String> {
            let v = parse(b).ok_or("unparsable")?;
            let parts = v.elements().ok_or("not an array")?;
            if parts.len() != 2 {
                return Err("not a 2-element scan reply".into());
            }
            let cursor = parts[0].as_bytes().ok_or("cursor")?.to_vec();
            let items = parts[1].elements().ok_or("items")?;
            let mut set = BTreeSet::new();
            for p in items.chunks(2) {
                let m = p[0].as_bytes().ok_or("member")?.to_vec();
                let s = p.get(1).and_then(Value::as_bytes).ok_or("score")?.to_vec();
                set.insert((m, s));
            }
            Ok((cursor, set))
        };
        let (a, b) = (norm(x)?, norm(y)?);
        if a == b {
            Ok(())
        } else {
            Err("different scan results".into())
        }
    }))
}

#[test]
fn zadd_options_and_errors() {
    diff_resp(
        "zadd_options",
        &[
            c("FLUSHALL"),
            c("ZADD z 1 a 2 b 3 c"),
            c("ZADD z 1 a"),
            c("ZADD z CH 5 a 2 b 7 d"),
            c("ZRANGE z 0 -1 WITHSCORES"),
            c("ZADD z NX 10 a 10 e"),
            c("ZADD z XX 10 a 10 f"),
            c("ZADD z XX CH 11 a 10 f"),
            c("ZADD z GT CH 1 a 100 b"),
            c("ZADD z LT CH 1 a 100 b"),
            c("ZADD z GT 1 newgt"),
            c("ZADD z LT INCR -1 a"),
            c("ZADD z GT INCR -1 a"),
            c("ZADD z INCR 5 a"),
            c("ZADD z NX INCR 5 a"),
            c("ZADD z XX INCR 5 nothere"),
            c("ZADD z INCR 5 fresh"),
            c("ZADD z XX NX 1 a"),
            c("ZADD z NX XX 1 a"),
            c("ZADD z GT LT 1 a"),
            c("ZADD z GT NX 1 a"),
            c("ZADD z LT NX 1 a"),
            c("ZADD z INCR 1 a 2 b"),
            c("ZADD z NX 1"),
            c("ZADD z NX CH"),
            c("ZADD z 1 a 2"),
            c("ZADD z a b"),
            c("ZADD z 1 a x b"),
            c("ZADD z nan a"),
            c("ZADD z 1e400 a"),
            c("ZADD z 1e-400 a"),
            a(&["ZADD", "z", " 1", "a"]),
            a(&["ZADD", "z", "1 ", "a"]),
            a(&["ZADD", "z", "", "a"]),
            c("ZADD z 0x10 hex"),
            c("ZADD z +5 plus"),
            c("ZADD z .5 dot 5. dot2 1E2 exp"),
            c("ZRANGE z 0 -1 WITHSCORES"),
            c("ZADD nokey XX 1 a"),
            c("ZADD nokey XX INCR 1 a"),
            c("EXISTS nokey"),
            c("ZINCRBY z 1 a"),
            c("ZINCRBY z 2.5 brandnew"),
            c("ZINCRBY z abc a"),
            c("ZINCRBY z nx a"),
            c("ZINCRBY z inf a"),
            c("ZINCRBY z -inf a"),
            c("ZSCORE z a"),
            c("ZADD z 1.5e308 big"),
            c("ZINCRBY z 1.5e308 big"),
            c("SET str x"),
            c("ZADD str 1 a"),
            c("ZINCRBY str 1 a"),
            c("ZREM str a"),
            c("ZCARD str"),
            c("ZREM z a nope b"),
            c("ZREM nokey a"),
            c("ZCARD z"),
            c("ZCARD nokey"),
            c("ZADD single 1 x"),
            c("ZREM single x"),
            c("EXISTS single"),
            c("TYPE z"),
        ],
    );
}

#[test]
fn scores_inf_and_formatting() {
    diff_resp(
        "score_format",
        &[
            c("FLUSHALL"),
            c("ZADD f 0.1 a 1.5 b 1e300 c -1e-5 d 100 e 3.0e3 f 1e20 g 0.3333333333333333 h"),
            c("ZADD f inf i -inf j +inf k -Infinity l"),
            c("ZADD f -0 z0 1e-300 tiny 123456789012345678 huge"),
            c("ZRANGE f 0 -1 WITHSCORES"),
            c("ZSCORE f a"),
            c("ZSCORE f i"),
            c("ZSCORE f j"),
            c("ZSCORE f z0"),
            c("ZSCORE f nope"),
            c("ZMSCORE f a nope i"),
            c("ZMSCORE nokey a b"),
            c("ZSCAN f 0"),
            c("ZRANGEBYSCORE f -inf +inf WITHSCORES"),
            c("ZRANGEBYSCORE f (-inf (+inf"),
            c("ZRANGEBYSCORE f (1 (100"),
            c("ZRANGEBYSCORE f [1 100"),
            c("ZRANGEBYSCORE f nan 1"),
            c("ZRANGEBYSCORE f 1 abc"),
            a(&["ZRANGEBYSCORE", "f", "", ""]),
            a(&["ZRANGEBYSCORE", "f", "(", "("]),
            a(&["ZRANGEBYSCORE", "f", " 1", "( 100"]),
            c("ZRANGEBYSCORE f 0x1 1e400"),
            c("ZCOUNT f -inf inf"),
            c("ZCOUNT f (0 (100"),
            c("ZCOUNT f 100 0"),
            c("ZCOUNT f 1 1"),
            c("ZCOUNT f (1.5 1.5"),
            c("ZCOUNT f a b"),
            c("ZCOUNT nokey 0 1"),
            c("ZINCRBY f 1 i"),
            c("ZINCRBY f -inf i"),
            c("ZADD f INCR -inf i"),
            c("ZADD f -0 z1"),
            c("ZSCORE f z1"),
            c("HELLO 3").with(Cmp::MapKeys),
            c("ZSCORE f a"),
            c("ZSCORE f i"),
            c("ZSCORE f nope"),
            c("ZMSCORE f a nope"),
            c("ZINCRBY f 2 b"),
            c("ZADD f NX INCR 1 b"),
            c("ZRANGE f 0 3 WITHSCORES"),
            c("ZSCAN f 0"),
        ],
    );
}

fn range_cases(key: &str) -> Vec<RespCase> {
    let k = key;
    let v = |s: &str| c(&s.replace("KEY", k));
    vec![
        v("ZRANGE KEY 0 -1"),
        v("ZRANGE KEY 0 -1 WITHSCORES"),
        v("ZRANGE KEY 2 5 WITHSCORES"),
        v("ZRANGE KEY -3 -1"),
        v("ZRANGE KEY -100 2"),
        v("ZRANGE KEY 5 2"),
        v("ZRANGE KEY 1000 2000"),
        v("ZRANGE KEY 0 -1 REV"),
        v("ZRANGE KEY 1 3 REV WITHSCORES"),
        v("ZREVRANGE KEY 0 2 WITHSCORES"),
        v("ZREVRANGE KEY -2 -1"),
        v("ZRANGE KEY 0 -1 LIMIT 0 1"),
        v("ZRANGE KEY 0 -1 LIMIT 0 -1"),
        v("ZREVRANGE KEY 0 1 LIMIT 0 1"),
        v("ZRANGE KEY a b"),
        v("ZRANGE KEY 0 -1 FOO"),
        v("ZRANGE KEY 0 -1 BYSCORE BYLEX"),
        v("ZRANGE KEY 0 -1 REV REV"),
        v("ZRANGE KEY (1 5 BYSCORE"),
        v("ZRANGE KEY 5 (1 BYSCORE REV WITHSCORES"),
        v("ZRANGE KEY (1 5 BYSCORE REV"),
        v("ZRANGE KEY -inf +inf BYSCORE LIMIT 2 3"),
        v("ZRANGE KEY -inf +inf BYSCORE LIMIT 2 -1"),
        v("ZRANGE KEY -inf +inf BYSCORE LIMIT -1 2"),
        v("ZRANGE KEY -inf +inf BYSCORE LIMIT 0 0"),
        v("ZRANGE KEY +inf -inf BYSCORE REV LIMIT 1 2 WITHSCORES"),
        v("ZRANGE KEY -inf +inf BYSCORE LIMIT 0 x"),
        v("ZRANGE KEY -inf +inf BYSCORE LIMIT 0"),
        v("ZRANGEBYSCORE KEY 2 4"),
        v("ZRANGEBYSCORE KEY 2 4 WITHSCORES LIMIT 1 1"),
        v("ZRANGEBYSCORE KEY 2 4 LIMIT 1 1 LIMIT 0 5"),
        v("ZRANGEBYSCORE KEY 2 4 REV"),
        v("ZRANGEBYSCORE KEY 2 4 BYSCORE"),
        v("ZREVRANGEBYSCORE KEY 4 2 WITHSCORES"),
        v("ZREVRANGEBYSCORE KEY 2 4"),
        v("ZREVRANGEBYSCORE KEY +inf -inf LIMIT 3 2"),
        v("ZREVRANGEBYSCORE KEY (4 (2"),
        v("ZRANGEBYLEX KEY - +"),
        v("ZRANGEBYLEX KEY [b (e"),
        v("ZRANGEBYLEX KEY (b [e LIMIT 1 2"),
        v("ZRANGEBYLEX KEY + -"),
        v("ZRANGEBYLEX KEY - -"),
        v("ZRANGEBYLEX KEY [a [a"),
        v("ZRANGEBYLEX KEY (a (a"),
        v("ZRANGEBYLEX KEY a +"),
        v("ZRANGEBYLEX KEY [a +x"),
        v("ZRANGEBYLEX KEY - + WITHSCORES"),
        v("ZREVRANGEBYLEX KEY + -"),
        v("ZREVRANGEBYLEX KEY (e [b LIMIT 0 2"),
        v("ZRANGE KEY [b [d BYLEX"),
        v("ZRANGE KEY [d [b BYLEX REV"),
        v("ZRANGE KEY - + BYLEX LIMIT 1 1"),
        v("ZRANGE KEY - + BYLEX WITHSCORES"),
        v("ZLEXCOUNT KEY - +"),
        v("ZLEXCOUNT KEY [b (e"),
        v("ZLEXCOUNT KEY (e [b"),
        v("ZLEXCOUNT KEY a b"),
        v("ZRANK KEY c"),
        v("ZREVRANK KEY c"),
        v("ZRANK KEY nope"),
        v("ZRANGESTORE dst KEY 0 2"),
        v("ZRANGE dst 0 -1 WITHSCORES"),
        v("OBJECT ENCODING dst"),
        v("ZRANGESTORE dst KEY 0 -1 WITHSCORES"),
        v("ZRANGESTORE dst KEY +inf (2 BYSCORE REV LIMIT 0 2"),
        v("ZRANGE dst 0 -1 WITHSCORES"),
        v("ZRANGESTORE dst KEY [c + BYLEX"),
        v("ZRANGE dst 0 -1"),
        v("ZRANGESTORE dst KEY 10 20"),
        v("EXISTS dst"),
        v("ZRANGESTORE dst nokey 0 -1"),
        v("ZRANGE nokey 0 -1"),
        v("ZRANGE str 0 -1"),
        v("ZRANGE str 0 -1 LIMIT 0 1"),
        v("ZRANGESTORE dst str 0 -1"),
        v("ZRANGESTORE str KEY 0 0"),
        v("TYPE str"),
        v("SET str x"),
    ]
}

#[test]
fn ranges_small_listpack() {
    let mut cases = vec![
        c("FLUSHALL"),
        c("SET str x"),
        c("ZADD z 1 a 2 b 3 c 3 d 4 e 5 f 6 g"),
        c("OBJECT ENCODING z"),
        c("ZADD lex 0 a 0 b 0 c 0 d 0 e 0 f 0 g"),
    ];
    cases.extend(range_cases("z"));
    cases.extend(range_cases("lex"));
    diff_resp("ranges_listpack", &cases);
}

#[test]
fn ranges_large_skiplist_and_threshold() {
    let mut cases = vec![c("FLUSHALL"), c("SET str x")];
    // 128 members stay a listpack; the 129th converts.
    let mut args = vec!["ZADD".to_string(), "z".into()];
    for i in 0..128 {
        args.push(((i % 9) as f64 * 0.5).to_string());
        args.push(format!("m{i:03}"));
    }
    cases.push(RespCase::cmd(&args));
    cases.push(c("OBJECT ENCODING z"));
    cases.push(c("ZADD z 1 m128"));
    cases.push(c("OBJECT ENCODING z"));
    cases.push(c("ZREM z m128 m000 m001"));
    cases.push(c("OBJECT ENCODING z"));
    cases.push(c("ZCARD z"));
    // Member length threshold (64 bytes) and creation with a long first member.
    let m64 = "x".repeat(64);
    let m65 = "y".repeat(65);
    cases.push(a(&["ZADD", "l", "1", &m64]));
    cases.push(c("OBJECT ENCODING l"));
    cases.push(a(&["ZADD", "l", "2", &m65]));
    cases.push(c("OBJECT ENCODING l"));
    cases.push(a(&["ZADD", "l2", "2", &m65, "1", "a"]));
    cases.push(c("OBJECT ENCODING l2"));
    cases.push(c("ZREM l2 a"));
    cases.push(c("OBJECT ENCODING l2"));
    // Many copies of one member do not force a skiplist.
    let mut same = vec!["ZADD".to_string(), "same".into()];
    for _ in 0..200 {
        same.push("1".into());
        same.push("a".into());
    }
    cases.push(RespCase::cmd(&same));
    cases.push(c("OBJECT ENCODING same"));
    // Lex keys in both encodings.
    let mut lex = vec!["ZADD".to_string(), "lex".into()];
    for i in 0..300 {
        lex.push("0".into());
        lex.push(format!("{}{i}", (b'a' + (i % 7) as u8) as char));
    }
    cases.push(RespCase::cmd(&lex));
    cases.extend(range_cases("z"));
    cases.extend(range_cases("lex"));
    cases.extend([
        c("ZRANGE z 100 130 WITHSCORES"),
        c("ZRANGE z 0 -1 BYSCORE LIMIT 50 20 WITHSCORES"),
        c("ZREVRANGE z 0 -1"),
        c("ZCOUNT z 1 3"),
        c("ZRANK z m050"),
        c("ZREVRANK z m050"),
        c("ZRANGESTORE small z 0 9"),
        c("OBJECT ENCODING small"),
        c("ZRANGESTORE big z 0 -1"),
        c("OBJECT ENCODING big"),
        c("ZUNIONSTORE u 2 small small"),
        c("OBJECT ENCODING u"),
        c("ZUNIONSTORE u 2 big small"),
        c("OBJECT ENCODING u"),
        c("ZRANGE u 0 -1 WITHSCORES"),
        c("ZINTERSTORE i 2 big small WEIGHTS 2 3"),
        c("OBJECT ENCODING i"),
        c("ZRANGE i 0 -1 WITHSCORES"),
        c("ZSCAN z 0 COUNT 10000").with(scan_pairs()),
        c("ZSCAN z 0 MATCH m01* COUNT 10000").with(scan_pairs()),
        shape("ZRANDMEMBER z"),
        shape("ZRANDMEMBER z 5"),
        shape("ZRANDMEMBER z -5 WITHSCORES"),
        shape("ZRANDMEMBER z 100 WITHSCORES"),
        c("ZRANDMEMBER z 1000 WITHSCORES"),
        c("ZREMRANGEBYRANK z 10 19"),
        c("ZREMRANGEBYSCORE z (1 2"),
        c("ZREMRANGEBYLEX lex [b (c"),
        c("ZRANGE z 0 -1 WITHSCORES"),
        c("ZRANGE lex 0 -1"),
        c("ZPOPMIN z 3"),
        c("ZPOPMAX z 3"),
        c("ZREMRANGEBYRANK z 0 -1"),
        c("EXISTS z"),
    ]);
    diff_resp("ranges_skiplist", &cases);
}

#[test]
fn remrange_and_pops() {
    diff_resp(
        "remrange_pops",
        &[
            c("FLUSHALL"),
            c("SET str x"),
            c("ZADD z 1 a 2 b 3 c 4 d 5 e 6 f"),
            c("ZREMRANGEBYRANK z 0 0"),
            c("ZREMRANGEBYRANK z -1 -1"),
            c("ZREMRANGEBYRANK z 5 10"),
            c("ZREMRANGEBYRANK z a 1"),
            c("ZREMRANGEBYSCORE z (2 3"),
            c("ZREMRANGEBYSCORE z x 3"),
            c("ZREMRANGEBYLEX z [a [b"),
            c("ZREMRANGEBYLEX z a b"),
            c("ZRANGE z 0 -1 WITHSCORES"),
            c("ZREMRANGEBYSCORE z -inf inf"),
            c("EXISTS z"),
            c("ZREMRANGEBYRANK nokey 0 -1"),
            c("ZREMRANGEBYSCORE str 0 1"),
            c("ZADD z 1 a 2 b 3 c 4 d 5 e 6 f"),
            c("ZPOPMIN z"),
            c("ZPOPMAX z"),
            c("ZPOPMIN z 2"),
            c("ZPOPMIN z 0"),
            c("ZPOPMIN z -1"),
            c("ZPOPMIN z abc"),
            c("ZPOPMIN z 1 2"),
            c("ZPOPMAX z 10"),
            c("EXISTS z"),
            c("ZPOPMIN nokey"),
            c("ZPOPMIN nokey 3"),
            c("ZPOPMIN str"),
            c("ZADD z 1 a 2 b 3 c"),
            c("ZMPOP 1 z MIN"),
            c("ZMPOP 2 nokey z MAX COUNT 5"),
            c("ZMPOP 1 z MIN"),
            c("ZMPOP 2 nokey str MIN"),
            c("ZMPOP abc z MIN"),
            c("ZMPOP 0 z MIN"),
            c("ZMPOP 1 z MIN COUNT 0"),
            c("ZMPOP 1 z MIN COUNT abc"),
            c("ZMPOP 1 z MIN COUNT 1 COUNT 1"),
            c("ZMPOP 1 z FOO"),
            c("ZMPOP 2 z MIN"),
            c("ZMPOP 5 z MIN"),
            c("ZADD z 1 a 2 b 3 c"),
            c("BZPOPMIN nokey z 0"),
            c("BZPOPMAX z 0.01"),
            c("BZMPOP 0.01 2 nokey z MAX COUNT 10"),
            c("BZPOPMIN nokey 0.01"),
            c("BZMPOP 0.01 1 nokey MIN"),
            c("BZPOPMIN z -1"),
            c("BZPOPMIN z abc"),
            c("BZPOPMIN z inf"),
            c("BZPOPMIN str 0"),
            c("BZMPOP 0 1 z FOO"),
            c("BZMPOP -1 1 z MIN"),
            c("BZMPOP x 1 z MIN"),
            c("MULTI"),
            c("BZPOPMIN nokey 0"),
            c("BZMPOP 0 1 nokey MIN"),
            c("EXEC"),
            c("HELLO 3").with(Cmp::MapKeys),
            c("ZADD z 1 a 2 b 3 c 4 d"),
            c("ZPOPMIN z"),
            c("ZPOPMIN z 1"),
            c("ZPOPMAX z 5"),
            c("ZADD z 1 a 2 b 3 c 4 d"),
            c("ZMPOP 1 z MAX COUNT 2"),
            c("BZPOPMIN z 0"),
            c("BZMPOP 0 1 z MIN"),
            c("ZMPOP 1 z MIN"),
            c("BZPOPMIN z 0.01"),
            c("ZPOPMIN nokey"),
        ],
    );
}

#[test]
fn blocking_pop_timeout_and_immediate() {
    let mut pair = RespPair::start();
    let cases = [
        c("FLUSHALL"),
        // A pipelined BZPOPMIN that blocks, then a ZADD on another connection cannot be
        // expressed with one connection; check the timeout path and the immediate path.
        c("BZPOPMIN k1 k2 0.05"),
        c("ZADD k2 5 x"),
        c("BZPOPMIN k1 k2 1"),
        c("EXISTS k2"),
    ];
    let bad = pair.run(&cases, usize::MAX);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn set_operations() {
    diff_resp(
        "set_ops",
        &[
            c("FLUSHALL"),
            c("SET str x"),
            c("ZADD a 1 x 2 y 3 z"),
            c("ZADD b 10 y 20 z 30 w"),
            c("SADD s y w q"),
            c("ZUNION 2 a b"),
            c("ZUNION 2 a b WITHSCORES"),
            c("ZUNION 2 a b WEIGHTS 2 3 WITHSCORES"),
            c("ZUNION 2 a b AGGREGATE MIN WITHSCORES"),
            c("ZUNION 2 a b AGGREGATE max WITHSCORES"),
            c("ZUNION 3 a b s WITHSCORES"),
            c("ZUNION 2 a nokey WITHSCORES"),
            c("ZUNION 1 a WEIGHTS 0 WITHSCORES"),
            c("ZINTER 2 a b WITHSCORES"),
            c("ZINTER 3 a b s WITHSCORES"),
            c("ZINTER 2 a b WEIGHTS 1 -1 AGGREGATE SUM WITHSCORES"),
            c("ZINTER 2 a nokey"),
            c("ZINTER 2 a a WITHSCORES"),
            c("ZDIFF 2 a b WITHSCORES"),
            c("ZDIFF 2 b s WITHSCORES"),
            c("ZDIFF 2 a a"),
            c("ZDIFF 1 nokey"),
            c("ZUNIONSTORE d 2 a b WEIGHTS 1 2"),
            c("ZRANGE d 0 -1 WITHSCORES"),
            c("ZINTERSTORE d 2 a b AGGREGATE MAX"),
            c("ZRANGE d 0 -1 WITHSCORES"),
            c("ZINTERSTORE d 2 a nokey"),
            c("EXISTS d"),
            c("ZDIFFSTORE d 2 b a"),
            c("ZRANGE d 0 -1 WITHSCORES"),
            c("ZDIFFSTORE str 1 a"),
            c("TYPE str"),
            c("ZINTERCARD 2 a b"),
            c("ZINTERCARD 2 a b LIMIT 1"),
            c("ZINTERCARD 2 a b LIMIT 0"),
            c("ZINTERCARD 2 a s"),
            c("ZINTERCARD 2 a b LIMIT -1"),
            c("ZINTERCARD 2 a b LIMIT x"),
            c("ZINTERCARD 0 a"),
            c("ZINTERCARD 1 a WITHSCORES"),
            c("ZUNION 0 a"),
            c("ZUNIONSTORE d 0 a"),
            c("ZUNION 3 a b"),
            c("ZUNION x a"),
            c("ZUNION -1 a"),
            c("ZUNION 1 a WEIGHTS x"),
            c("ZUNION 2 a b WEIGHTS 1"),
            c("ZUNION 1 a AGGREGATE avg"),
            c("ZUNION 1 a AGGREGATE"),
            c("ZDIFF 1 a WEIGHTS 1"),
            c("ZDIFF 1 a AGGREGATE SUM"),
            c("ZUNIONSTORE d 1 a WITHSCORES"),
            c("ZUNION 2 a str"),
            c("ZUNION 2 str a WEIGHTS"),
            c("ZINTERSTORE d 2 str nokey"),
            c("ZADD inf 1 x"),
            c("ZUNION 2 inf inf WEIGHTS inf -inf WITHSCORES"),
            c("ZINTER 2 inf inf WEIGHTS inf 0 AGGREGATE MIN WITHSCORES"),
            c("HELLO 3").with(Cmp::MapKeys),
            c("ZUNION 2 a b WITHSCORES"),
            c("ZINTER 2 a b"),
            c("ZDIFF 2 a b WITHSCORES"),
        ],
    );
}

#[test]
fn zscan_and_zrandmember() {
    diff_resp(
        "zscan_zrandmember",
        &[
            c("FLUSHALL"),
            c("SET str x"),
            c("ZADD z 1 a 2.5 b 3 c 0.1 d -0 e"),
            c("ZSCAN z 0"),
            c("ZSCAN z 0 MATCH [ab]*"),
            c("ZSCAN z 0 COUNT 1"),
            c("ZSCAN z 0 COUNT 0"),
            c("ZSCAN z 0 COUNT x"),
            c("ZSCAN z 0 TYPE zset"),
            c("ZSCAN z 0 MATCH"),
            c("ZSCAN z abc"),
            c("ZSCAN z -1").with(Cmp::SameType),
            c("ZSCAN nokey 0"),
            c("ZSCAN nokey 0 COUNT 0"),
            c("ZSCAN str 0"),
            c("ZRANDMEMBER nokey"),
            c("ZRANDMEMBER nokey 3"),
            c("ZRANDMEMBER nokey 3 WITHSCORES"),
            c("ZRANDMEMBER str"),
            c("ZRANDMEMBER str 1"),
            shape("ZRANDMEMBER z"),
            shape("ZRANDMEMBER z 1"),
            shape("ZRANDMEMBER z 3"),
            shape("ZRANDMEMBER z -8"),
            shape("ZRANDMEMBER z 2 WITHSCORES"),
            shape("ZRANDMEMBER z -7 WITHSCORES"),
            c("ZRANDMEMBER z 5"),
            c("ZRANDMEMBER z 50 WITHSCORES"),
            c("ZRANDMEMBER z 0"),
            c("ZRANDMEMBER z 0 WITHSCORES"),
            c("ZRANDMEMBER z x"),
            c("ZRANDMEMBER z 1 FOO"),
            c("ZRANDMEMBER z 1 WITHSCORES x"),
            c("ZRANDMEMBER z -9223372036854775808"),
            c("ZRANDMEMBER z -4611686018427387904 WITHSCORES"),
            c("ZRANDMEMBER nokey -4611686018427387904 WITHSCORES"),
            c("HELLO 3").with(Cmp::MapKeys),
            shape("ZRANDMEMBER z 2 WITHSCORES"),
            shape("ZRANDMEMBER z -3 WITHSCORES"),
            c("ZRANDMEMBER z 9 WITHSCORES"),
            c("ZSCAN z 0"),
        ],
    );
}

#[test]
fn wrong_arity_for_every_command() {
    let cmds = [
        "ZADD z 1",
        "ZINCRBY z 1",
        "ZINCRBY z 1 a b",
        "ZREM z",
        "ZCARD",
        "ZCARD z z",
        "ZCOUNT z 1",
        "ZCOUNT z 1 2 3",
        "ZLEXCOUNT z -",
        "ZSCORE z",
        "ZSCORE z a b",
        "ZMSCORE z",
        "ZRANK z",
        "ZRANK z a WITHSCORE",
        "ZREVRANK z",
        "ZRANGE z 0",
        "ZRANGESTORE d z 0",
        "ZREVRANGE z 0",
        "ZRANGEBYSCORE z 0",
        "ZREVRANGEBYSCORE z 0",
        "ZRANGEBYLEX z -",
        "ZREVRANGEBYLEX z +",
        "ZREMRANGEBYRANK z 0",
        "ZREMRANGEBYSCORE z 0 1 2",
        "ZREMRANGEBYLEX z -",
        "ZPOPMIN",
        "ZPOPMAX",
        "ZMPOP 1 z",
        "BZPOPMIN z",
        "BZPOPMAX z",
        "BZMPOP 0 1 z",
        "ZRANDMEMBER",
        "ZUNION 1",
        "ZINTER 1",
        "ZDIFF 1",
        "ZUNIONSTORE d 1",
        "ZINTERSTORE d 1",
        "ZDIFFSTORE d 1",
        "ZINTERCARD 1",
        "ZSCAN z",
    ];
    let mut cases: Vec<RespCase> = cmds.iter().map(|s| c(s)).collect();
    cases.push(c("ZCARD"));
    diff_resp("zset_arity", &cases);
}

// ---------------------------------------------------------------------------------------
// seeded random sequence

const OPS: usize = 2500;
const KEYS: &[&str] = &["z0", "z1", "z2", "z3"];

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

fn score(rng: &mut SmallRng) -> String {
    match rng.gen_range(0..10) {
        0 => format!("{}.5", rng.gen_range(-20..20)),
        1 => pick(rng, &["0", "-0", "1e3", "0.25", "-7"]).into(),
        _ => rng.gen_range(-30..30).to_string(),
    }
}

fn member(rng: &mut SmallRng) -> String {
    if rng.gen_range(0..40) == 0 {
        return "L".repeat(rng.gen_range(60..70));
    }
    format!("m{}", rng.gen_range(0..220))
}

fn bound(rng: &mut SmallRng) -> String {
    let v = match rng.gen_range(0..8) {
        0 => "-inf".into(),
        1 => "+inf".into(),
        _ => rng.gen_range(-30..30).to_string(),
    };
    if rng.gen_bool(0.3) {
        format!("({v}")
    } else {
        v
    }
}

fn lex_bound(rng: &mut SmallRng) -> String {
    match rng.gen_range(0..8) {
        0 => "-".into(),
        1 => "+".into(),
        n => format!(
            "{}{}",
            if n % 2 == 0 { "[" } else { "(" },
            (b'a' + rng.gen_range(0..8u8)) as char
        ),
    }
}

fn random_op(rng: &mut SmallRng) -> RespCase {
    let k = pick(rng, KEYS).to_string();
    let k2 = pick(rng, KEYS).to_string();
    let n = rng.gen_range(-5i64..15).to_string();
    let s: Vec<String> = match rng.gen_range(0..40) {
        0..=5 => {
            let mut v = vec!["ZADD".into(), k];
            if rng.gen_bool(0.3) {
                v.push(pick(rng, &["NX", "XX", "GT", "LT", "CH", "INCR"]).into());
            }
            if rng.gen_bool(0.1) {
                v.push(pick(rng, &["CH", "GT", "XX"]).into());
            }
            for _ in 0..rng.gen_range(1..4) {
                v.push(score(rng));
                v.push(member(rng));
            }
            v
        }
        6 => {
            // Bulk add: pushes keys across the 128-entry threshold.
            let mut v = vec!["ZADD".into(), k];
            for _ in 0..rng.gen_range(20..70) {
                v.push(score(rng));
                v.push(member(rng));
            }
            v
        }
        7 => vec!["ZINCRBY".into(), k, score(rng), member(rng)],
        8 => vec!["ZREM".into(), k, member(rng), member(rng)],
        9 => vec!["ZCARD".into(), k],
        10 => vec!["ZSCORE".into(), k, member(rng)],
        11 => vec!["ZMSCORE".into(), k, member(rng), member(rng)],
        12 => vec!["ZRANK".into(), k, member(rng)],
        13 => vec!["ZREVRANK".into(), k, member(rng)],
        14 | 15 => {
            let mut v = vec![
                "ZRANGE".into(),
                k,
                n,
                rng.gen_range(-10i64..200).to_string(),
            ];
            if rng.gen_bool(0.5) {
                v.push("WITHSCORES".into());
            }
            if rng.gen_bool(0.3) {
                v.push("REV".into());
            }
            v
        }
        16 | 17 => {
            let rev = rng.gen_bool(0.4);
            let (lo, hi) = (bound(rng), bound(rng));
            let mut v = vec!["ZRANGE".into(), k, lo, hi, "BYSCORE".into()];
            if rev {
                v.push("REV".into());
            }
            if rng.gen_bool(0.4) {
                v.extend([
                    "LIMIT".into(),
                    rng.gen_range(-1i64..10).to_string(),
                    rng.gen_range(-1i64..10).to_string(),
                ]);
            }
            if rng.gen_bool(0.5) {
                v.push("WITHSCORES".into());
            }
            v
        }
        18 => vec!["ZCOUNT".into(), k, bound(rng), bound(rng)],
        19 => {
            let cmd = pick(rng, &["ZRANGEBYLEX", "ZREVRANGEBYLEX", "ZLEXCOUNT"]);
            vec![cmd.into(), "lex".into(), lex_bound(rng), lex_bound(rng)]
        }
        20 => vec![
            "ZADD".into(),
            "lex".into(),
            "0".into(),
            ((b'a' + rng.gen_range(0..8u8)) as char)
                .to_string()
                .repeat(rng.gen_range(1..3)),
        ],
        21 => vec![
            "ZREMRANGEBYRANK".into(),
            k,
            n,
            rng.gen_range(-5i64..20).to_string(),
        ],
        22 => vec!["ZREMRANGEBYSCORE".into(), k, bound(rng), bound(rng)],
        23 => vec![
            "ZREMRANGEBYLEX".into(),
            "lex".into(),
            lex_bound(rng),
            lex_bound(rng),
        ],
        24 => {
            let cmd = pick(rng, &["ZPOPMIN", "ZPOPMAX"]);
            let mut v = vec![cmd.into(), k];
            if rng.gen_bool(0.5) {
                v.push(rng.gen_range(0..5).to_string());
            }
            v
        }
        25 => vec![
            "ZMPOP".into(),
            "2".into(),
            k,
            k2,
            pick(rng, &["MIN", "MAX"]).into(),
            "COUNT".into(),
            rng.gen_range(1..4).to_string(),
        ],
        26 | 27 => {
            let cmd = pick(rng, &["ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE"]);
            let mut v = vec![cmd.into(), pick(rng, KEYS).into(), "2".into(), k, k2];
            if cmd != "ZDIFFSTORE" && rng.gen_bool(0.5) {
                v.extend([
                    "WEIGHTS".into(),
                    rng.gen_range(-2..4).to_string(),
                    rng.gen_range(-2..4).to_string(),
                ]);
            }
            if cmd != "ZDIFFSTORE" && rng.gen_bool(0.5) {
                v.extend(["AGGREGATE".into(), pick(rng, &["SUM", "MIN", "MAX"]).into()]);
            }
            v
        }
        28 => {
            let cmd = pick(rng, &["ZUNION", "ZINTER", "ZDIFF"]);
            vec![cmd.into(), "2".into(), k, k2, "WITHSCORES".into()]
        }
        29 => vec![
            "ZINTERCARD".into(),
            "2".into(),
            k,
            k2,
            "LIMIT".into(),
            rng.gen_range(0..5).to_string(),
        ],
        30 => {
            let mut v = vec![
                "ZRANGESTORE".into(),
                pick(rng, KEYS).into(),
                k,
                n,
                rng.gen_range(-3i64..50).to_string(),
            ];
            if rng.gen_bool(0.3) {
                v.push("REV".into());
            }
            v
        }
        31 => vec!["OBJECT".into(), "ENCODING".into(), k],
        32 => vec!["DEL".into(), k],
        33 => vec![
            "ZSCAN".into(),
            k,
            "0".into(),
            "COUNT".into(),
            "100000".into(),
        ],
        34 => vec!["ZRANDMEMBER".into(), k, rng.gen_range(-5i64..5).to_string()],
        35 => vec!["ZRANDMEMBER".into(), k, "1000".into(), "WITHSCORES".into()],
        36 => vec!["TYPE".into(), k],
        37 => vec![
            "ZREVRANGE".into(),
            k,
            n,
            rng.gen_range(-3i64..30).to_string(),
            "WITHSCORES".into(),
        ],
        _ => vec![
            "ZRANGE".into(),
            k,
            "0".into(),
            "-1".into(),
            "WITHSCORES".into(),
        ],
    };
    let case = RespCase::cmd(&s);
    match s[0].as_str() {
        "ZSCAN" => case.with(scan_pairs()),
        "ZRANDMEMBER" if s[2] != "1000" => case.with(Cmp::Structure),
        _ => case,
    }
}

#[test]
fn random_sequence() {
    let seed = seed();
    eprintln!("[diff_zsets] SHOAL_SEED={seed}");
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut cases = vec![c("FLUSHALL")];
    cases.extend((0..OPS).map(|_| random_op(&mut rng)));
    // Final state of every key.
    for k in KEYS.iter().chain(["lex"].iter()) {
        cases.push(c(&format!("ZRANGE {k} 0 -1 WITHSCORES")));
        cases.push(c(&format!("OBJECT ENCODING {k}")));
    }
    if let Ok(path) = std::env::var("SHOAL_ZSET_DUMP") {
        // Replay aid: the command lines, one per line.
        let lines: Vec<&str> = cases.iter().map(|c| c.label.as_str()).collect();
        std::fs::write(path, lines.join("\n")).expect("write SHOAL_ZSET_DUMP");
    }
    let mut pair = RespPair::start();
    let bad = pair.run(&cases, 5);
    assert!(
        bad.is_empty(),
        "SHOAL_SEED={seed}: {} mismatch(es):\n{}",
        bad.len(),
        bad.join("\n")
    );
}
