use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

const T0: u64 = 1_700_000_000_000;

fn ks(shards: usize) -> Keyspace {
    Keyspace::new(KeyspaceConfig {
        shards,
        ..Default::default()
    })
}

#[test]
fn insert_lookup_remove_and_accounting() {
    let k = ks(4);
    assert_eq!(k.used_memory(), 0);
    let cas = k.lock(b"a").insert(b"a", &[b"hello"], None, 7, T0);
    let e_cost;
    {
        let mut g = k.lock(b"a");
        let e = g.lookup_read(b"a", T0, false).unwrap();
        assert_eq!((e.value(), e.flags(), e.cas()), (&b"hello"[..], 7, cas));
        e_cost = alloc_cost(e.alloc_len());
    }
    assert!(k.used_memory() as usize > e_cost);
    assert!(k.lock(b"a").remove(b"a", T0).is_some());
    // Only the (now empty) table remains accounted.
    let table_only = k.used_memory();
    k.flush(false);
    assert_eq!(k.used_memory(), 0);
    assert!(table_only < 1024);
    let st = k.stats();
    assert_eq!((st.hits, st.keys), (1, 0));
}

#[test]
fn lazy_and_active_expiry() {
    let k = ks(2);
    for i in 0..1000u32 {
        let key = format!("k{i}");
        let exp = if i % 2 == 0 { Some(T0 + 10) } else { None };
        k.lock(key.as_bytes())
            .insert(key.as_bytes(), &[b"v"], exp, 0, T0);
    }
    assert!(k.lock(b"k0").lookup(b"k0", T0 + 9).is_some());
    assert!(k.lock(b"k0").lookup(b"k0", T0 + 10).is_none());
    // Never-read keys are reclaimed by the active cycle.
    let mut reclaimed = 1;
    for _ in 0..100 {
        reclaimed += k.active_expire_cycle(T0 + 10, 64);
        if k.len() == 500 {
            break;
        }
    }
    assert_eq!(k.len(), 500);
    assert_eq!(reclaimed, 500);
    assert_eq!(k.stats().expired, 500);
    assert_eq!(k.stats().volatile, 0);
}

#[test]
fn eviction_keeps_memory_under_limit_and_respects_volatile() {
    let k = ks(8);
    k.set_maxmemory(200_000);
    k.set_policy(EvictionPolicy::AllKeysLru);
    for i in 0..10_000u32 {
        k.make_room(T0).unwrap();
        let key = format!("key:{i:010}");
        k.lock(key.as_bytes())
            .insert(key.as_bytes(), &[&[b'x'; 32]], None, 0, T0);
    }
    assert!(k.used_memory() <= 200_000 + 200, "used {}", k.used_memory());
    assert!(k.stats().evicted > 5000);
    // volatile-* with no volatile keys: OOM, nothing evicted.
    k.set_policy(EvictionPolicy::VolatileTtl);
    k.set_maxmemory(1000);
    let before = k.len();
    assert_eq!(k.make_room(T0), Err(OutOfMemory));
    assert_eq!(k.len(), before);
    k.set_policy(EvictionPolicy::NoEviction);
    assert_eq!(k.make_room(T0), Err(OutOfMemory));
}

#[test]
fn scan_visits_every_key_once_without_resize() {
    let k = ks(16);
    for i in 0..5000u32 {
        let key = format!("s{i}");
        k.lock(key.as_bytes())
            .insert(key.as_bytes(), &[b"v"], None, 0, T0);
    }
    let mut seen = std::collections::HashSet::new();
    let mut cursor = 0;
    let mut calls = 0;
    loop {
        cursor = k.scan(cursor, 10, T0, |e| assert!(seen.insert(e.key().to_vec())));
        calls += 1;
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(seen.len(), 5000);
    assert!(calls > 100);
}

/// Keys present for the whole scan are returned even when the tables grow (and
/// entries change buckets) and other keys are deleted between calls.
#[test]
fn scan_survives_resizes_between_calls() {
    for shards in [1, 16] {
        let k = ks(shards);
        let stay: Vec<String> = (0..3000).map(|i| format!("stay{i}")).collect();
        for key in &stay {
            k.lock(key.as_bytes())
                .insert(key.as_bytes(), &[b"v"], None, 0, T0);
        }
        let mut seen = std::collections::HashSet::new();
        let (mut cursor, mut calls, mut added) = (0, 0, 0u32);
        loop {
            cursor = k.scan(cursor, 64, T0, |e| {
                seen.insert(e.key().to_vec());
            });
            calls += 1;
            // Between calls: new keys (the tables grow several times during the
            // scan) and some deletes.
            for _ in 0..8 {
                let key = format!("new{added}");
                k.lock(key.as_bytes())
                    .insert(key.as_bytes(), &[b"v"], None, 0, T0);
                if added % 3 == 0 {
                    let old = format!("new{}", added / 2);
                    k.lock(old.as_bytes()).remove(old.as_bytes(), T0);
                }
                added += 1;
            }
            if cursor == 0 {
                break;
            }
            assert!(calls < 100_000, "the scan does not end");
        }
        let missed: Vec<&String> = stay
            .iter()
            .filter(|s| !seen.contains(s.as_bytes()))
            .collect();
        assert!(
            missed.is_empty(),
            "{shards} shards: {} missed, e.g. {:?}",
            missed.len(),
            &missed[..missed.len().min(5)]
        );
        let grown: u64 = (0..shards).map(|i| k.lock_shard(i).layout()).sum();
        assert!(
            grown >= 2,
            "{shards} shards: the tables were rebuilt only {grown} times"
        );
    }
}

/// Keys present for the whole scan are returned when churn (inserts and deletes at a
/// steady size) makes the table rehash in place between calls.
#[test]
fn scan_cursors_leave_ten_bits_for_a_proxy() {
    // A proxy keeps its server index in the low 10 bits: `cursor << 10 | server`, and
    // sends `proxied >> 10` back. Cursors at or above 2^54 lost their high bits that
    // way, and with a shard's rebuild count past 63 the server saw a changed layout on
    // every call and restarted the shard: the iteration never ended.
    let k = ks(4);
    let keys: Vec<String> = (0..5000).map(|i| format!("k{i}")).collect();
    for key in &keys {
        k.lock(key.as_bytes())
            .insert(key.as_bytes(), &[b"v"], None, 0, T0);
    }
    for s in 0..k.shards.len() {
        k.lock_shard(s).shard.layout += 16_000;
    }
    let mut seen = std::collections::HashSet::new();
    let (mut proxied, mut calls) = (0u64, 0);
    loop {
        let inner = k.scan(proxied >> 10, 50, T0, |e| {
            seen.insert(e.key().to_vec());
        });
        assert!(inner < 1 << SCAN_CURSOR_BITS, "cursor {inner:#x}");
        proxied = inner << 10;
        calls += 1;
        if inner == 0 {
            break;
        }
        assert!(calls < 10_000, "the scan does not end");
    }
    assert_eq!(seen.len(), keys.len());
}

#[test]
fn scan_survives_in_place_rehash() {
    let k = ks(1);
    let stay: Vec<String> = (0..3000).map(|i| format!("stay{i}")).collect();
    for key in &stay {
        k.lock(key.as_bytes())
            .insert(key.as_bytes(), &[b"v"], None, 0, T0);
    }
    let mut churn = std::collections::VecDeque::new();
    let mut n = 0u32;
    let (mut cursor, mut calls) = (0, 0);
    let mut seen = std::collections::HashSet::new();
    let before = k.lock_shard(0).layout();
    loop {
        cursor = k.scan(cursor, 32, T0, |e| {
            seen.insert(e.key().to_vec());
        });
        calls += 1;
        for _ in 0..64 {
            let key = format!("churn{n}");
            n += 1;
            k.lock(key.as_bytes())
                .insert(key.as_bytes(), &[b"v"], None, 0, T0);
            churn.push_back(key);
            if churn.len() > 500 {
                let old = churn.pop_front().expect("non-empty");
                k.lock(old.as_bytes()).remove(old.as_bytes(), T0);
            }
        }
        if cursor == 0 {
            break;
        }
        assert!(calls < 100_000, "the scan does not end");
    }
    let missed = stay.iter().filter(|s| !seen.contains(s.as_bytes())).count();
    let rebuilt = k.lock_shard(0).layout() - before;
    assert_eq!(
        missed, 0,
        "{missed} keys missed; the table was rebuilt {rebuilt} times"
    );
    assert!(rebuilt >= 1, "no rehash happened");
}

#[test]
fn lock_many_orders_shards() {
    let k = ks(8);
    let keys: Vec<Vec<u8>> = (0..50).map(|i| format!("m{i}").into_bytes()).collect();
    let mut g = k.lock_many(keys.iter().map(|k| k.as_slice()));
    for key in &keys {
        g.shard(key).insert(key, &[b"1"], None, 0, T0);
    }
    drop(g);
    assert_eq!(k.len(), 50);
}

#[derive(Debug, Clone)]
enum Op {
    Set(u8, u8, Option<u64>),
    Get(u8),
    Del(u8),
    Persist(u8),
    Advance(u64),
    Expire,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..20, any::<u8>(), proptest::option::of(1u64..50))
            .prop_map(|(k, v, t)| Op::Set(k, v, t)),
        (0u8..20).prop_map(Op::Get),
        (0u8..20).prop_map(Op::Del),
        (0u8..20).prop_map(Op::Persist),
        (1u64..30).prop_map(Op::Advance),
        Just(Op::Expire),
    ]
}

proptest! {
    /// The keyspace behaves like a HashMap with expiry times under a virtual clock,
    /// and its memory accounting returns to the table-only cost when emptied.
    #[test]
    fn matches_model(ops in proptest::collection::vec(op(), 1..200)) {
        let k = ks(4);
        let mut model: HashMap<Vec<u8>, (Vec<u8>, Option<u64>)> = HashMap::new();
        let mut now = T0;
        for op in ops {
            match op {
                Op::Set(key, v, ttl) => {
                    let key = vec![b'k', key];
                    let val = vec![v; (v % 40) as usize];
                    let exp = ttl.map(|t| now + t);
                    k.lock(&key).insert(&key, &[&val], exp, 0, now);
                    model.insert(key, (val, exp));
                }
                Op::Get(key) => {
                    let key = vec![b'k', key];
                    let want = model.get(&key).filter(|(_, e)| e.is_none_or(|e| e > now)).map(|(v, _)| v.clone());
                    let mut g = k.lock(&key);
                    let got = g.lookup_read(&key, now, false).map(|e| e.value().to_vec());
                    prop_assert_eq!(got, want);
                }
                Op::Del(key) => {
                    let key = vec![b'k', key];
                    let want = model.remove(&key).filter(|(_, e)| e.is_none_or(|e| e > now)).is_some();
                    prop_assert_eq!(k.lock(&key).remove(&key, now).is_some(), want);
                }
                Op::Persist(key) => {
                    let key = vec![b'k', key];
                    let live = model.get(&key).filter(|(_, e)| e.is_none_or(|e| e > now)).is_some();
                    let done = k.lock(&key).update_meta(&key, now, false, |m| m.expire_at = None);
                    prop_assert_eq!(done, live);
                    if live { model.get_mut(&key).unwrap().1 = None; } else { model.remove(&key); }
                }
                Op::Advance(ms) => now += ms,
                Op::Expire => { k.active_expire_cycle(now, 1024); }
            }
        }
        let live = model.values().filter(|(_, e)| e.is_none_or(|e| e > now)).count();
        let mut counted = 0;
        k.for_each(now, |_| counted += 1);
        prop_assert_eq!(counted, live);
        k.flush(false);
        prop_assert_eq!(k.used_memory(), 0);
    }
}
