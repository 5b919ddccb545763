use super::*;
use proptest::prelude::*;

/// twemproxy's conf/nutcracker.yml (the README's version, with `omega`'s socket permissions).
const NUTCRACKER_YML: &str = "\
alpha:
  listen: 127.0.0.1:22121
  hash: fnv1a_64
  distribution: ketama
  auto_eject_hosts: true
  redis: true
  server_retry_timeout: 2000
  server_failure_limit: 1
  servers:
   - 127.0.0.1:6379:1

beta:
  listen: 127.0.0.1:22122
  hash: fnv1a_64
  hash_tag: \"{}\"
  distribution: ketama
  auto_eject_hosts: false
  timeout: 400
  redis: true
  servers:
   - 127.0.0.1:6380:1 server1
   - 127.0.0.1:6381:1 server2
   - 127.0.0.1:6382:1 server3
   - 127.0.0.1:6383:1 server4

gamma:
  listen: 127.0.0.1:22123
  hash: fnv1a_64
  distribution: ketama
  timeout: 400
  backlog: 1024
  preconnect: true
  auto_eject_hosts: true
  server_retry_timeout: 2000
  server_failure_limit: 3
  servers:
   - 127.0.0.1:11212:1
   - 127.0.0.1:11213:1

delta:
  listen: 127.0.0.1:22124
  hash: fnv1a_64
  distribution: ketama
  timeout: 100
  auto_eject_hosts: true
  server_retry_timeout: 2000
  server_failure_limit: 1
  servers:
   - 127.0.0.1:11214:1
   - 127.0.0.1:11215:1
   - 127.0.0.1:11216:1
   - 127.0.0.1:11217:1
   - 127.0.0.1:11218:1
   - 127.0.0.1:11219:1
   - 127.0.0.1:11220:1
   - 127.0.0.1:11221:1
   - 127.0.0.1:11222:1
   - 127.0.0.1:11223:1

omega:
  listen: /tmp/gamma 0666
  hash: hsieh
  distribution: ketama
  auto_eject_hosts: false
  servers:
   - 127.0.0.1:11214:100000
   - 127.0.0.1:11215:1
";

fn parse(text: &str) -> Result<ProxyConfig, ConfigError> {
    ProxyConfig::parse(text, "pools.yml")
}

fn ok(text: &str) -> ProxyConfig {
    match parse(text) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

fn problems(text: &str) -> Vec<Problem> {
    match parse(text) {
        Ok(c) => panic!("expected problems, got {c:#?}"),
        Err(e) => e.problems,
    }
}

/// Exactly one problem, on `line`, whose message contains every one of `needles`.
#[track_caller]
fn one_problem(text: &str, line: usize, needles: &[&str]) {
    let ps = problems(text);
    assert_eq!(ps.len(), 1, "expected one problem, got {ps:#?}");
    assert_eq!(ps[0].line, line, "{ps:#?}");
    for n in needles {
        assert!(
            ps[0].message.contains(n),
            "`{}` does not contain `{n}`",
            ps[0].message
        );
    }
}

/// A minimal valid pool, `extra` lines inserted after `listen`.
fn pool(extra: &str) -> String {
    format!("p:\n  listen: 127.0.0.1:22121\n{extra}  servers:\n   - 127.0.0.1:6379:1\n")
}

fn server(host: &str, port: u16, weight: u32, name: Option<&str>, line: usize) -> ServerConfig {
    ServerConfig {
        host: host.to_string(),
        port,
        weight,
        name: name.map(str::to_string),
        replicas: Vec::new(),
        line,
    }
}

#[test]
fn twemproxy_sample_conf_parses_with_the_right_values() {
    let cfg = ok(NUTCRACKER_YML);
    assert!(cfg.warnings.is_empty(), "{:#?}", cfg.warnings);
    let names: Vec<&str> = cfg.pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["alpha", "beta", "gamma", "delta", "omega"]);

    let alpha = cfg.pool("alpha").unwrap();
    assert_eq!(alpha.line, 1);
    assert_eq!(alpha.listen, Listen::Tcp("127.0.0.1".into(), 22121));
    assert_eq!(alpha.hash, HashKind::Fnv1a_64);
    assert_eq!(alpha.distribution, Distribution::Ketama);
    assert!(alpha.auto_eject_hosts && alpha.redis);
    assert_eq!(alpha.server_retry_timeout_ms, 2000);
    assert_eq!(alpha.server_failure_limit, 1);
    assert_eq!(alpha.timeout_ms, None);
    assert_eq!(alpha.backend, BackendKind::Redis);
    assert!(!alpha.failover);
    assert_eq!(alpha.servers, vec![server("127.0.0.1", 6379, 1, None, 10)]);

    let beta = cfg.pool("beta").unwrap();
    assert_eq!(beta.line, 12);
    assert_eq!(beta.hash_tag, Some(*b"{}"));
    assert_eq!(beta.timeout_ms, Some(400));
    assert!(!beta.auto_eject_hosts);
    assert_eq!(beta.servers.len(), 4);
    assert_eq!(
        beta.servers[3],
        server("127.0.0.1", 6383, 1, Some("server4"), 24)
    );
    assert_eq!(
        beta.servers[0].ring_node(),
        RingNode::named("127.0.0.1", 6380, 1, "server1")
    );

    let gamma = cfg.pool("gamma").unwrap();
    assert_eq!(
        (gamma.backlog, gamma.preconnect, gamma.server_failure_limit),
        (1024, true, 3)
    );
    assert!(!gamma.redis);
    assert_eq!(gamma.backend, BackendKind::Memcached);
    assert_eq!(gamma.servers[1], server("127.0.0.1", 11213, 1, None, 38));

    let delta = cfg.pool("delta").unwrap();
    assert_eq!(delta.timeout_ms, Some(100));
    assert_eq!(delta.servers.len(), 10);
    assert_eq!(delta.servers[9].port, 11223);

    let omega = cfg.pool("omega").unwrap();
    assert_eq!(omega.listen, Listen::Unix("/tmp/gamma".into(), Some(0o666)));
    assert_eq!(omega.hash, HashKind::Hsieh);
    assert_eq!(omega.servers[0].weight, 100_000);
    assert_eq!(
        omega.servers[0].ring_node(),
        RingNode::new("127.0.0.1", 11214, 100_000)
    );
}

#[test]
fn the_packaged_sample_without_permissions_parses_too() {
    // Debian's /usr/share/doc/nutcracker/examples/nutcracker.yml has `listen: /tmp/gamma`.
    let cfg = ok(&NUTCRACKER_YML.replace("/tmp/gamma 0666", "/tmp/gamma"));
    assert_eq!(
        cfg.pool("omega").unwrap().listen,
        Listen::Unix("/tmp/gamma".into(), None)
    );
}

#[test]
fn six_distinct_mistakes_are_all_reported_with_their_lines() {
    let text = "\
alpha:
  listen: 127.0.0.1:22121
  timout: 400
  hash: fnv1a64
  hash_tag: abc
  redis: yes
  servers:
   - 127.0.0.1:6379:x
   - 127.0.0.1:6380:1
beta:
  listen: 127.0.0.1:22121
  servers:
   - 127.0.0.1:6381:1
";
    let err = parse(text).unwrap_err();
    let got: Vec<(usize, &str)> = err
        .problems
        .iter()
        .map(|p| (p.line, p.message.as_str()))
        .collect();
    assert_eq!(got.len(), 6, "{got:#?}");
    let expect: [(usize, &[&str]); 6] = [
        (
            3,
            &["alpha: unknown key `timout`", "did you mean `timeout`?"],
        ),
        (
            4,
            &[
                "alpha: unknown hash `fnv1a64`",
                "did you mean `fnv1a_64`?",
                "one_at_a_time",
                "jenkins",
            ],
        ),
        (
            5,
            &["alpha: `hash_tag` must be exactly two characters", "`abc`"],
        ),
        (6, &["alpha: `redis` must be `true` or `false`, got `yes`"]),
        (
            8,
            &["alpha: servers[0]: weight must be a positive integer, got `x`"],
        ),
        (
            11,
            &[
                "beta: listen address `127.0.0.1:22121` is also pool `alpha`'s",
                "line 2",
            ],
        ),
    ];
    for ((line, msg), (want_line, needles)) in got.iter().zip(expect) {
        assert_eq!(*line, want_line, "{msg}");
        for n in needles {
            assert!(msg.contains(n), "`{msg}` does not contain `{n}`");
        }
    }
    let shown = err.to_string();
    assert_eq!(shown.lines().count(), 6);
    assert!(
        shown.starts_with("pools.yml:3: alpha: unknown key `timout`; did you mean `timeout`?\n"),
        "{shown}"
    );
    assert!(shown.contains(
        "\npools.yml:8: alpha: servers[0]: weight must be a positive integer, got `x`\n"
    ));
}

#[test]
fn defaults() {
    let cfg = ok(&pool(""));
    assert!(cfg.warnings.is_empty());
    let p = &cfg.pools[0];
    assert_eq!(p.hash, HashKind::Fnv1a_64);
    assert_eq!(p.hash_tag, None);
    assert_eq!(p.distribution, Distribution::Ketama);
    assert_eq!(p.timeout_ms, None);
    assert_eq!(p.backlog, 512);
    assert_eq!(p.client_connections, 0);
    assert!(!p.tcpkeepalive);
    assert!(!p.redis);
    assert_eq!(p.redis_auth, None);
    assert_eq!(p.redis_db, 0);
    assert!(!p.preconnect);
    assert!(!p.auto_eject_hosts);
    assert_eq!(p.server_connections, 1);
    assert_eq!(p.server_retry_timeout_ms, 30_000);
    assert_eq!(p.server_failure_limit, 2);
    assert_eq!(p.backend, BackendKind::Memcached);
    assert_eq!(p.read_policy, ReadPolicy::Primary);
    assert!(!p.failover);
    assert_eq!(p.failover_timeout_ms, 3000);
    assert_eq!(p.health_interval_ms, 1000);
    assert_eq!(p.line, 1);
    assert_eq!(p.servers, vec![server("127.0.0.1", 6379, 1, None, 4)]);

    let redis = &ok(&pool("  redis: true\n")).pools[0];
    assert_eq!((redis.backend, redis.failover), (BackendKind::Redis, false));
    let shoal = &ok(&pool("  backend: shoal\n")).pools[0];
    assert_eq!(
        (shoal.backend, shoal.redis, shoal.failover),
        (BackendKind::Shoal, false, true)
    );
    let shoal_redis = &ok(&pool("  backend: shoal\n  redis: true\n")).pools[0];
    assert_eq!(
        (shoal_redis.backend, shoal_redis.redis),
        (BackendKind::Shoal, true)
    );
    // `backend: redis` without `redis:` means a Redis pool.
    let backend_redis = &ok(&pool("  backend: redis\n")).pools[0];
    assert_eq!(
        (backend_redis.backend, backend_redis.redis),
        (BackendKind::Redis, true)
    );
}

#[test]
fn every_twemproxy_key_is_read() {
    let cfg = ok(&pool(
        "  hash: murmur\n  hash_tag: \"$$\"\n  distribution: modula\n  timeout: 250\n  backlog: 64\n  \
         client_connections: 100\n  tcpkeepalive: true\n  redis: true\n  redis_auth: s3cret\n  redis_db: 3\n  \
         preconnect: true\n  auto_eject_hosts: true\n  server_connections: 4\n  server_retry_timeout: 500\n  \
         server_failure_limit: 0\n",
    ));
    let p = &cfg.pools[0];
    assert_eq!(p.hash, HashKind::Murmur);
    assert_eq!(p.hash_tag, Some(*b"$$"));
    assert_eq!(p.distribution, Distribution::Modula);
    assert_eq!(p.timeout_ms, Some(250));
    assert_eq!((p.backlog, p.client_connections), (64, 100));
    assert!(p.tcpkeepalive && p.redis && p.preconnect && p.auto_eject_hosts);
    assert_eq!(p.redis_auth.as_deref(), Some("s3cret"));
    assert_eq!(p.redis_db, 3);
    assert_eq!(
        (
            p.server_connections,
            p.server_retry_timeout_ms,
            p.server_failure_limit
        ),
        (4, 500, 0)
    );
    for name in [
        "one_at_a_time",
        "md5",
        "crc16",
        "crc32",
        "crc32a",
        "fnv1_64",
        "fnv1a_64",
        "fnv1_32",
        "fnv1a_32",
        "hsieh",
        "murmur",
        "jenkins",
    ] {
        let p = &ok(&pool(&format!("  hash: {name}\n"))).pools[0];
        assert_eq!(p.hash.name(), name);
    }
    for name in ["ketama", "modula", "random"] {
        assert_eq!(
            ok(&pool(&format!("  distribution: {name}\n"))).pools[0]
                .distribution
                .name(),
            name
        );
    }
}

#[test]
fn timeout_zero_means_no_timeout_like_twemproxy() {
    assert_eq!(ok(&pool("  timeout: 0\n")).pools[0].timeout_ms, None);
}

const REPLICATED: &str = "\
alpha:
  listen: 127.0.0.1:22121
  redis: true
  backend: shoal
  read_policy: replica-preferred
  servers:
   - 127.0.0.1:7001:1 shard0
   - 127.0.0.1:7002:1 shard1
   - 127.0.0.1:7003:1 shard2
  replicas:
    shard0: [127.0.0.1:7101, 127.0.0.1:7201]
    shard1:
      - 127.0.0.1:7102
";

#[test]
fn replicas_mapping() {
    let cfg = ok(REPLICATED);
    assert!(cfg.warnings.is_empty(), "{:#?}", cfg.warnings);
    let p = &cfg.pools[0];
    assert_eq!(
        (p.backend, p.read_policy, p.failover),
        (BackendKind::Shoal, ReadPolicy::ReplicaPreferred, true)
    );
    assert_eq!(
        p.servers[0].replicas,
        vec![
            ("127.0.0.1".to_string(), 7101),
            ("127.0.0.1".to_string(), 7201)
        ]
    );
    assert_eq!(p.servers[1].replicas, vec![("127.0.0.1".to_string(), 7102)]);
    assert!(p.servers[2].replicas.is_empty());

    // Unnamed servers are keyed by host:port; a single address needs no list; IPv6 works.
    let cfg = ok("\
p:
  listen: 127.0.0.1:22121
  backend: redis
  servers:
   - 10.0.0.1:6379:1
   - '[fd00::1]:6379:1'
  replicas:
    10.0.0.1:6379: 10.0.1.1:6379
    '[fd00::1]:6379': ['[fd00::2]:6379']
");
    let p = &cfg.pools[0];
    assert_eq!(p.servers[0].replicas, vec![("10.0.1.1".to_string(), 6379)]);
    assert_eq!(p.servers[1].host, "fd00::1");
    assert_eq!(p.servers[1].replicas, vec![("fd00::2".to_string(), 6379)]);
}

#[test]
fn replica_mistakes() {
    let base = "p:\n  listen: 127.0.0.1:22121\n  backend: shoal\n  servers:\n   - 127.0.0.1:7001:1 shard0\n   - 127.0.0.1:7002:1\n  replicas:\n";
    one_problem(
        &format!("{base}    shard9: [127.0.0.1:7101]\n"),
        8,
        &[
            "replicas: `shard9` is not a server of this pool",
            "did you mean `shard0`?",
        ],
    );
    one_problem(
        &format!("{base}    127.0.0.1:7001: [127.0.0.1:7101]\n"),
        8,
        &["is named `shard0`: use its name"],
    );
    one_problem(
        &format!("{base}    shard0: [127.0.0.1:7002]\n"),
        8,
        &["replicas.shard0[0]: `127.0.0.1:7002` is already servers[1] (line 6)"],
    );
    one_problem(
        &format!("{base}    shard0: [127.0.0.1:7101]\n    127.0.0.1:7002: [127.0.0.1:7101]\n"),
        9,
        &["replicas.127.0.0.1:7002[0]: `127.0.0.1:7101` is already replicas.shard0[0] (line 8)"],
    );
    one_problem(
        &format!("{base}    shard0: [127.0.0.1:7101:1]\n"),
        8,
        &["expected host:port", "no weight or name here"],
    );
    one_problem(
        &format!("{base}    shard0: [127.0.0.1:0]\n"),
        8,
        &["port must be a number from 1 to 65535, got `0`"],
    );
    one_problem(
        &format!("{base}    shard0: [127.0.0.1:1]\n    shard0: [127.0.0.1:2]\n"),
        9,
        &["duplicate server `shard0` (first at line 8)"],
    );
    one_problem(
        &format!("{base}    shard0: {{a: b}}\n"),
        8,
        &["expected a list of host:port, got a mapping"],
    );
    one_problem(
        &format!("{base}  - x\n"),
        8,
        &["`replicas` must map server names to lists of host:port, got a list"],
    );
    // With a server line broken, replicas are still checked against the servers that
    // parsed, but a key naming none of them is not reported (it may name the broken one).
    let broken = "p:\n  listen: 127.0.0.1:1\n  backend: shoal\n  servers:\n   - 127.0.0.1:7001:1 a\n   - 127.0.0.1:7002 b\n  replicas:\n    a: [127.0.0.1:0]\n    b: [127.0.0.1:7102]\n";
    let ps = problems(broken);
    assert_eq!(
        ps.iter().map(|p| p.line).collect::<Vec<_>>(),
        [6, 8],
        "{ps:#?}"
    );
    assert!(
        ps[1].message.contains("replicas.a[0]: port must be"),
        "{ps:#?}"
    );

    one_problem(
        "p:\n  listen: 127.0.0.1:1\n  servers:\n   - 127.0.0.1:7001:1 a\n  replicas:\n    a: [127.0.0.1:7101]\n",
        5,
        &["`replicas` on a memcached backend"],
    );
}

#[test]
fn read_policy_and_failover_rules() {
    // No replicas anywhere: works (reads stay on primaries) but warns.
    let cfg = ok(&pool("  backend: shoal\n  read_policy: any\n"));
    assert_eq!(cfg.pools[0].read_policy, ReadPolicy::Any);
    assert_eq!(cfg.warnings.len(), 1);
    assert!(
        cfg.warnings[0]
            .message
            .contains("`read_policy: any` has no effect"),
        "{:?}",
        cfg.warnings
    );
    assert_eq!(cfg.warnings[0].line, 4);
    // read-your-writes needs Shoal servers.
    one_problem(
        &pool("  backend: redis\n  read_policy: read-your-writes\n"),
        4,
        &["needs `backend: shoal`", "backend is redis"],
    );
    assert_eq!(
        ok(&REPLICATED.replace("replica-preferred", "read-your-writes")).pools[0].read_policy,
        ReadPolicy::ReadYourWrites
    );
    one_problem(
        &pool("  read_policy: replica_preferred\n"),
        3,
        &[
            "unknown read_policy `replica_preferred`",
            "did you mean `replica-preferred`?",
        ],
    );
    one_problem(
        &pool("  read_policy: any\n"),
        3,
        &["memcached has no replicas"],
    );
    // failover
    one_problem(
        &pool("  failover: true\n"),
        3,
        &["`failover: true` on a memcached backend"],
    );
    let cfg = ok(&pool("  backend: redis\n  failover: true\n"));
    assert!(cfg.pools[0].failover);
    assert!(cfg.warnings[0]
        .message
        .contains("no server of this pool has `replicas` to promote"));
    assert!(
        !ok(&REPLICATED.replace(
            "  backend: shoal\n",
            "  backend: shoal\n  failover: false\n"
        ))
        .pools[0]
            .failover
    );
    let cfg = ok(&REPLICATED.replace(
        "  backend: shoal\n",
        "  backend: shoal\n  failover_timeout: 500\n  health_interval: 2000\n",
    ));
    assert_eq!(
        (
            cfg.pools[0].failover_timeout_ms,
            cfg.pools[0].health_interval_ms
        ),
        (500, 2000)
    );
    assert_eq!(cfg.warnings.len(), 1);
    assert!(cfg.warnings[0]
        .message
        .contains("shorter than `health_interval`"));
    one_problem(
        &pool("  health_interval: 0\n"),
        3,
        &["`health_interval` must be at least 1 ms"],
    );
}

#[test]
fn backend_and_protocol() {
    one_problem(
        &pool("  redis: true\n  backend: memcached\n"),
        4,
        &["`backend: memcached` contradicts `redis: true` (line 3)"],
    );
    one_problem(
        &pool("  redis: false\n  backend: redis\n"),
        4,
        &["`backend: redis` contradicts `redis: false` (line 3)"],
    );
    one_problem(
        &pool("  backend: valkey\n"),
        3,
        &["unknown backend `valkey`", "shoal, redis, memcached"],
    );
    one_problem(&pool("  backend: Shoal\n"), 3, &["did you mean `shoal`?"]);
    // twemproxy: redis_auth is only valid for a redis pool.
    one_problem(
        &pool("  redis_auth: pw\n"),
        3,
        &["`redis_auth` is only valid for a redis pool"],
    );
    one_problem(
        &pool("  redis: true\n  redis_auth: ''\n"),
        4,
        &["`redis_auth` is empty"],
    );
    // twemproxy accepts redis_db on a memcached pool and ignores it: a warning.
    let cfg = ok(&pool("  redis_db: 2\n"));
    assert_eq!(cfg.warnings.len(), 1);
    assert_eq!(cfg.warnings[0].line, 3);
    assert!(cfg.warnings[0].message.contains("`redis_db` is ignored"));
}

#[test]
fn keys_and_values_are_typed_strictly_like_twemproxy() {
    one_problem(
        &pool("  redis: True\n"),
        3,
        &["`redis` must be `true` or `false`, got `True`"],
    );
    one_problem(
        &pool("  preconnect:\n"),
        3,
        &["`preconnect` must be `true` or `false`, got nothing"],
    );
    one_problem(
        &pool("  backlog: -1\n"),
        3,
        &["`backlog` must not be negative, got `-1`"],
    );
    one_problem(
        &pool("  backlog: +5\n"),
        3,
        &["`backlog` must be a whole number, got `+5`"],
    );
    one_problem(
        &pool("  backlog: 1.5\n"),
        3,
        &["`backlog` must be a whole number"],
    );
    one_problem(
        &pool("  timeout: 2147483648\n"),
        3,
        &["`timeout` is too large: at most 2147483647"],
    );
    one_problem(
        &pool("  timeout: 99999999999999999999999\n"),
        3,
        &["`timeout` is too large"],
    );
    one_problem(
        &pool("  timeout: [1]\n"),
        3,
        &["`timeout` must be a whole number of milliseconds, got a list"],
    );
    one_problem(
        &pool("  server_connections: 0\n"),
        3,
        &["`server_connections` cannot be 0"],
    );
    one_problem(
        &pool("  distribution: ketma\n"),
        3,
        &[
            "unknown distribution `ketma`; did you mean `ketama`?",
            "ketama, modula, random",
        ],
    );
    one_problem(
        &pool("  hash: FNV1A_64\n"),
        3,
        &["did you mean `fnv1a_64`?"],
    );
    one_problem(
        &pool("  hash_tag: {}\n"),
        3,
        &["in quotes", "empty YAML mapping"],
    );
    one_problem(&pool("  hash_tag: \"{\"\n"), 3, &["exactly two characters"]);
    one_problem(
        &pool("  reuseport: true\n"),
        3,
        &["unknown key `reuseport`"],
    );
    one_problem(
        &pool("  frobnicate: 1\n"),
        3,
        &[
            "unknown key `frobnicate` (known keys: listen, hash,",
            "replicas)",
        ],
    );
    one_problem(
        &pool("  timeout: 1\n  timeout: 2\n"),
        4,
        &["p: duplicate key `timeout` (first at line 3)"],
    );
    one_problem(
        &pool("  ? [a]\n  : 1\n"),
        3,
        &["a key must be a plain word, got a list"],
    );
    // Quoted values are read like plain ones (twemproxy ignores quoting too).
    assert!(ok(&pool("  redis: 'true'\n  timeout: \"10\"\n")).pools[0].redis);
}

#[test]
fn listen_forms() {
    let listen = |v: &str| {
        ok(&format!(
            "p:\n  listen: {v}\n  servers:\n   - 127.0.0.1:6379:1\n"
        ))
        .pools[0]
            .listen
            .clone()
    };
    assert_eq!(
        listen("0.0.0.0:22121"),
        Listen::Tcp("0.0.0.0".into(), 22121)
    );
    assert_eq!(
        listen("localhost:22121"),
        Listen::Tcp("localhost".into(), 22121)
    );
    assert_eq!(
        listen("proxy-1.example.com:1"),
        Listen::Tcp("proxy-1.example.com".into(), 1)
    );
    assert_eq!(listen("'[::1]:22121'"), Listen::Tcp("::1".into(), 22121));
    assert_eq!(listen("::1:22121"), Listen::Tcp("::1".into(), 22121));
    assert_eq!(
        listen("/var/run/shoal.sock"),
        Listen::Unix("/var/run/shoal.sock".into(), None)
    );
    assert_eq!(
        listen("/var/run/shoal.sock 600"),
        Listen::Unix("/var/run/shoal.sock".into(), Some(0o600))
    );

    let bad = |v: &str, needle: &str| {
        one_problem(
            &format!("p:\n  listen: {v}\n  servers:\n   - 127.0.0.1:6379:1\n"),
            2,
            &["p: listen: ", needle],
        )
    };
    bad(
        "127.0.0.1",
        "expected host:port or an absolute unix socket path",
    );
    bad(
        "127.0.0.1:0",
        "port must be a number from 1 to 65535, got `0`",
    );
    bad("127.0.0.1:65536", "port must be a number from 1 to 65535");
    bad(":22121", "the host is missing");
    bad("'[::1:22121'", "not a valid host");
    bad("bad_host!:1", "not a valid host name or IP address");
    bad("/tmp/s 999", "unix socket permissions must be octal");
    bad("/tmp/s 01000", "unix socket permissions must be octal");
    bad(
        "tmp/s",
        "expected host:port or an absolute unix socket path",
    );
    one_problem(
        "p:\n  servers:\n   - 127.0.0.1:6379:1\n",
        1,
        &["p: `listen:` is missing"],
    );
    one_problem(
        "p:\n  listen: [a]\n  servers:\n   - 127.0.0.1:6379:1\n",
        2,
        &["`listen` must be host:port or a unix socket path, got a list"],
    );
}

#[test]
fn listen_addresses_must_differ_across_pools() {
    let two = |a: &str, b: &str| {
        format!("a:\n  listen: {a}\n  servers:\n   - 127.0.0.1:1:1\nb:\n  listen: {b}\n  servers:\n   - 127.0.0.1:1:1\n")
    };
    one_problem(
        &two("/tmp/s", "/tmp/s 0600"),
        6,
        &["b: listen address `/tmp/s 0600` overlaps pool `a`'s (`/tmp/s`, line 2)"],
    );
    one_problem(&two("0.0.0.0:5000", "127.0.0.1:5000"), 6, &["overlaps"]);
    one_problem(&two("'[::1]:5000'", "::1:5000"), 6, &["is also"]);
    assert_eq!(ok(&two("127.0.0.1:5000", "127.0.0.1:5001")).pools.len(), 2);
    assert_eq!(ok(&two("127.0.0.1:5000", "127.0.0.2:5000")).pools.len(), 2);
    // A pool that is broken otherwise still takes part in the check.
    let ps = problems(
        &two("127.0.0.1:5000", "127.0.0.1:5000")
            .replace("  servers:\n   - 127.0.0.1:1:1\nb:", "b:"),
    );
    assert_eq!(ps.len(), 2, "{ps:#?}");
}

#[test]
fn server_lines() {
    let servers = |lines: &str| {
        ok(&format!("p:\n  listen: 127.0.0.1:1\n  servers:\n{lines}")).pools[0]
            .servers
            .clone()
    };
    let s = servers("   - localhost:6379:2 main\n   - /tmp/redis.sock:3\n   - /tmp/other.sock:1 named\n   - ::1:7000:1\n   - '[fe80::1]:7000:1'\n");
    assert_eq!(s[0], server("localhost", 6379, 2, Some("main"), 4));
    assert_eq!(s[1], server("/tmp/redis.sock", 0, 3, None, 5));
    assert!(s[1].is_unix());
    assert_eq!(s[1].effective_name(), "/tmp/redis.sock:");
    assert_eq!(s[2], server("/tmp/other.sock", 0, 1, Some("named"), 6));
    assert_eq!(s[3], server("::1", 7000, 1, None, 7));
    assert_eq!(s[3].effective_name(), "::1:7000");
    assert_eq!(s[4], server("fe80::1", 7000, 1, None, 8));
    // Port 11211 is left out of the ring name (libmemcached compatibility).
    assert_eq!(
        servers("   - 10.0.0.1:11211:1\n")[0].effective_name(),
        "10.0.0.1"
    );

    let bad = |line: &str, needle: &str| {
        one_problem(
            &format!("p:\n  listen: 127.0.0.1:1\n  servers:\n   - 127.0.0.1:1:1\n   - {line}\n"),
            5,
            &["p: servers[1]: ", needle],
        );
    };
    bad("127.0.0.1:6379", "expected host:port:weight [name]");
    bad("127.0.0.1:6379", "the weight is missing?");
    bad("'[::1]:6379'", "the weight is missing?");
    bad(
        "127.0.0.1:6379:0",
        "weight must be a positive integer, got `0`",
    );
    bad("127.0.0.1:6379:-1", "weight must be a positive integer");
    bad(
        "127.0.0.1:6379:2147483648",
        "weight must be a positive integer",
    );
    bad(
        "127.0.0.1:70000:1",
        "port must be a number from 1 to 65535, got `70000`",
    );
    bad(
        "127.0.0.1:6379:1 two words",
        "server name `two words` must not contain spaces",
    );
    bad(":6379:1", "the host is missing");
    bad("/tmp/sock", "expected /path/to.sock:weight [name]");
    one_problem(
        "p:\n  listen: 127.0.0.1:1\n  servers:\n   - {a: b}\n",
        4,
        &["servers[0] must be a line like `host:port:weight [name]`, got a mapping"],
    );
}

#[test]
fn server_list_rules() {
    one_problem(
        "p:\n  listen: 127.0.0.1:1\n",
        1,
        &["p: `servers:` is missing"],
    );
    one_problem(
        "p:\n  listen: 127.0.0.1:1\n  servers:\n",
        3,
        &["`servers` is empty"],
    );
    one_problem(
        "p:\n  listen: 127.0.0.1:1\n  servers: []\n",
        3,
        &["`servers` is empty"],
    );
    one_problem(
        "p:\n  listen: 127.0.0.1:1\n  servers: 127.0.0.1:1:1\n",
        3,
        &["`servers` must be a list", "got `127.0.0.1:1:1`"],
    );
    let two =
        |a: &str, b: &str| format!("p:\n  listen: 127.0.0.1:1\n  servers:\n   - {a}\n   - {b}\n");
    // Same name (unnamed: host:port), as twemproxy.
    one_problem(
        &two("127.0.0.1:6379:1", "127.0.0.1:6379:2"),
        5,
        &["servers[1]: duplicate server `127.0.0.1:6379` (also servers[0] at line 4)"],
    );
    one_problem(
        &two("10.0.0.1:6379:1 a", "10.0.0.2:6379:1 a"),
        5,
        &["duplicate server name `a`"],
    );
    one_problem(
        &two("10.0.0.1:6379:1 10.0.0.2:6379", "10.0.0.2:6379:1"),
        5,
        &["duplicate server `10.0.0.2:6379`"],
    );
    // Named and unnamed servers may be mixed (twemproxy 0.5.0 accepts it).
    assert_eq!(
        ok(&two("10.0.0.1:6379:1 a", "10.0.0.2:6379:1")).pools[0]
            .servers
            .len(),
        2
    );
    // One address under two names: twemproxy accepts it; a warning, an error for Shoal.
    let cfg = ok(&two("10.0.0.1:6379:1 a", "10.0.0.1:6379:1 b"));
    assert_eq!(cfg.warnings.len(), 1);
    assert!(cfg.warnings[0]
        .message
        .contains("servers[1]: same address as servers[0] (line 4)"));
    let shoal = two("10.0.0.1:6379:1 a", "10.0.0.1:6379:1 b")
        .replace("  servers:", "  backend: shoal\n  servers:");
    one_problem(&shoal, 6, &["every shard must be its own server"]);
}

#[test]
fn file_level_rules() {
    one_problem("", 1, &["no pools"]);
    one_problem("# only a comment\n", 1, &["no pools"]);
    one_problem("{}\n", 1, &["no pools"]);
    one_problem(
        "- a\n- b\n",
        1,
        &["the top level must be pools", "got a list"],
    );
    one_problem("just text\n", 1, &["the top level must be pools"]);
    one_problem(
        &format!("{}{}", pool(""), pool("")),
        5,
        &["duplicate pool name `p` (first at line 1)"],
    );
    // A pool whose settings are not indented.
    let ps = problems("p:\nlisten: 127.0.0.1:1\n");
    assert_eq!(ps.len(), 2, "{ps:?}");
    assert_eq!(ps[0].line, 1);
    assert!(
        ps[0]
            .message
            .contains("p: a pool must be a mapping of settings"),
        "{ps:?}"
    );
    assert!(ps[0].message.contains("got nothing"), "{ps:?}");
    assert_eq!(ps[1].line, 2);
    assert!(
        ps[1]
            .message
            .contains("`listen` is a pool setting: is it indented under its pool?"),
        "{ps:?}"
    );
    one_problem(
        &format!("{}---\n{}", pool(""), pool("").replace("p:", "q:")),
        5,
        &["second YAML document"],
    );
    // A leading `---` (which twemproxy refuses) is harmless.
    assert_eq!(ok(&format!("---\n{}", pool(""))).pools[0].line, 2);
    one_problem(
        "p: &a\n  listen: 127.0.0.1:1\n  servers:\n   - 127.0.0.1:1:1\nq: *a\n",
        5,
        &["aliases"],
    );
    // YAML syntax errors: one problem, with its line.
    let ps = problems("p:\n  listen: 127.0.0.1:1\n servers: [\n");
    assert_eq!(ps.len(), 1);
    assert!(ps[0].message.starts_with("YAML syntax error"), "{ps:?}");
    let ps = problems("p:\n  listen: 127.0.0.1:1\n\tservers:\n");
    assert_eq!((ps.len(), ps[0].line), (1, 3), "{ps:?}");
    assert!(ps[0].message.contains("a tab in the indentation"), "{ps:?}");
}

#[test]
fn deep_nesting_is_a_problem_not_a_crash() {
    // yaml-rust2 stops at its own recursion limit; ours (MAX_DEPTH) is lower still.
    let deep = format!("p: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    assert!(!problems(&deep).is_empty());
    let deep = format!("p: {}{}\n", "[".repeat(40), "]".repeat(40));
    let ps = problems(&deep);
    assert_eq!(ps.len(), 2, "{ps:?}");
    assert!(
        ps[0].message.contains("nested more than 16 levels"),
        "{ps:?}"
    );
    assert!(
        ps[1].message.contains("p: a pool must be a mapping"),
        "{ps:?}"
    );
    let deep = format!("p:\n  replicas: {}\n", "{a: ".repeat(50_000));
    assert!(!problems(&deep).is_empty());
}

#[test]
fn round_trip() {
    // Everything but the line numbers survives `to_yaml` and back.
    fn same(a: &ProxyConfig, b: &ProxyConfig) -> bool {
        let strip = |c: &ProxyConfig| {
            let mut pools = c.pools.clone();
            for p in &mut pools {
                p.line = 0;
                p.servers.iter_mut().for_each(|s| s.line = 0);
            }
            pools
        };
        strip(a) == strip(b)
    }
    for text in [NUTCRACKER_YML, REPLICATED, example()] {
        let cfg = ok(text);
        assert!(same(&cfg, &ok(&cfg.to_yaml())), "{}", cfg.to_yaml());
    }
    let odd = "\
\"we:ird \\\"pool\\\"\":
  listen: '[::1]:1'
  hash_tag: \"é\"
  redis: true
  redis_auth: \"p@ss: \\\"word\\\"\\t\"
  redis_db: 7
  backend: redis
  servers:
   - /tmp/a.sock:2 sock
   - '[::1]:2:1'
  replicas:
    '[::1]:2': ['[::2]:3']
";
    let cfg = ok(odd);
    let p = &cfg.pools[0];
    assert_eq!(p.name, "we:ird \"pool\"");
    assert_eq!(p.redis_auth.as_deref(), Some("p@ss: \"word\"\t"));
    assert_eq!(
        p.hash_tag,
        Some(<[u8; 2]>::try_from("é".as_bytes()).unwrap())
    );
    assert!(same(&cfg, &ok(&cfg.to_yaml())), "{}", cfg.to_yaml());

    // Display forms are the file's forms.
    assert_eq!(Listen::Tcp("::1".into(), 5).to_string(), "[::1]:5");
    assert_eq!(
        Listen::Unix("/s".into(), Some(0o644)).to_string(),
        "/s 0644"
    );
    assert_eq!(p.servers[0].to_string(), "/tmp/a.sock:2 sock");
    assert_eq!(p.servers[1].to_string(), "[::1]:2:1");
    for b in BackendKind::ALL {
        assert_eq!(BackendKind::from_name(&b.to_string()), Some(b));
    }
    for r in ReadPolicy::ALL {
        assert_eq!(ReadPolicy::from_name(&r.to_string()), Some(r));
    }
}

#[test]
fn example_parses_cleanly() {
    let cfg = ok(example());
    assert!(cfg.warnings.is_empty(), "{:#?}", cfg.warnings);
    assert_eq!(cfg.pools.len(), 2);
    let cache = &cfg.pools[0];
    assert_eq!(cache.backend, BackendKind::Shoal);
    assert_eq!(
        cache
            .servers
            .iter()
            .map(|s| s.replicas.len())
            .collect::<Vec<_>>(),
        [2, 1, 1]
    );
    assert_eq!(cfg.pools[1].backend, BackendKind::Memcached);
}

#[test]
fn problems_are_sorted_and_displayed_with_the_file_name() {
    let e = parse("b:\n  listen: x\na:\n  listen: 127.0.0.1:1\n").unwrap_err();
    let lines: Vec<usize> = e.problems.iter().map(|p| p.line).collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
    for l in e.to_string().lines() {
        assert!(l.starts_with("pools.yml:"), "{l}");
    }
    let p = Problem {
        line: 0,
        message: "m".into(),
    };
    assert_eq!(p.display_in("f").to_string(), "f: m");
}

#[test]
fn load_reads_files_and_reports_io_and_encoding_problems() {
    let dir = std::env::temp_dir().join(format!("shoal-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.yml");
    std::fs::write(&good, NUTCRACKER_YML).unwrap();
    assert_eq!(ProxyConfig::load(&good).unwrap().pools.len(), 5);

    let missing = dir.join("missing.yml");
    let e = ProxyConfig::load(&missing).unwrap_err();
    assert_eq!(e.problems.len(), 1);
    assert_eq!(e.problems[0].line, 0);
    assert!(
        e.to_string()
            .starts_with(&format!("{}: cannot read the file", missing.display())),
        "{e}"
    );

    let binary = dir.join("binary.yml");
    std::fs::write(&binary, b"p:\n  listen: 127.0.0.1:1\n  \xff\xfe: x\n").unwrap();
    let e = ProxyConfig::load(&binary).unwrap_err();
    assert_eq!((e.problems.len(), e.problems[0].line), (1, 3));
    assert!(e.problems[0].message.contains("not UTF-8"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn garbage_gives_problems_not_panics() {
    for text in [
        "\0",
        "\u{feff}",
        "\u{feff}p:\n  listen: 127.0.0.1:1\n  servers:\n   - 127.0.0.1:1:1\n",
        "::::",
        "- - - -",
        "p: !!binary aGVsbG8=",
        "%YAML 1.2\n---\np: 1\n",
        "p: {listen: 127.0.0.1:1, servers: [127.0.0.1:1:1]}",
        "'",
        "\"\\",
        "p:\n  servers:\n   - \u{0}:\u{0}:\u{0}\n",
        "? ? ? ?",
        "&a [*a]",
        "p: |\n  x\n",
        "\r\n\r\np:\r\n  listen: 127.0.0.1:1\r\n",
    ] {
        let _ = parse(text);
    }
    // The BOM is skipped and flow style is accepted.
    assert_eq!(
        ok("\u{feff}p:\n  listen: 127.0.0.1:1\n  servers:\n   - 127.0.0.1:1:1\n")
            .pools
            .len(),
        1
    );
    assert_eq!(
        ok("p: {listen: 127.0.0.1:1, servers: [127.0.0.1:1:1]}")
            .pools
            .len(),
        1
    );
}

#[test]
fn every_truncation_of_valid_files_is_handled() {
    for text in [NUTCRACKER_YML, REPLICATED, example()] {
        for end in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
            let _ = parse(&text[..end]);
        }
    }
}

/// Pieces of YAML and of the pool format, for noise that gets past the YAML scanner.
const NOISE: [&str; 27] = [
    "\n",
    "  ",
    ": ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "'",
    "\"",
    "#",
    "&a ",
    "*a",
    "? ",
    "---\n",
    "listen",
    "servers",
    "replicas",
    "127.0.0.1:1:1",
    "p",
    "true",
    "|",
    ">",
    "\t",
    "!!str ",
    "%YAML 1.2\n",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn yaml_like_noise_never_panics(parts in proptest::collection::vec(0..NOISE.len(), 0..60)) {
        let text: String = parts.into_iter().map(|i| NOISE[i]).collect();
        let _ = parse(&text);
    }

    #[test]
    fn mutated_sample_never_panics(pos in 0usize..2000, byte in any::<u8>()) {
        let mut bytes = NUTCRACKER_YML.as_bytes().to_vec();
        let pos = pos % bytes.len();
        bytes[pos] = byte;
        let _ = parse(&String::from_utf8_lossy(&bytes));
    }
}

/// The same verdict as the real nutcracker 0.5.0 on files both should judge alike (only
/// runs where `nutcracker` is installed; `scripts/test.sh` installs it).
#[test]
fn agrees_with_nutcracker_when_installed() {
    let Ok(out) = std::process::Command::new("nutcracker")
        .arg("--version")
        .output()
    else {
        eprintln!("nutcracker not installed; skipping");
        return;
    };
    if !String::from_utf8_lossy(&out.stdout).contains("0.5.0")
        && !String::from_utf8_lossy(&out.stderr).contains("0.5.0")
    {
        eprintln!("not nutcracker 0.5.0; skipping");
        return;
    }
    let cases: Vec<String> = vec![
        NUTCRACKER_YML.to_string(),
        pool(""),
        pool("  tcpkeepalive: true\n"),
        pool("  timeout: 0\n"),
        pool("  redis_db: 1\n"),
        pool("  redis: True\n"),
        pool("  reuseport: true\n"),
        pool("  redis_auth: pw\n"),
        pool("  redis: true\n  redis_auth: pw\n"),
        pool("  redis: true\n  redis_auth: ''\n"),
        pool("  hash_tag: abc\n"),
        pool("  hash: fnv1a64\n"),
        pool("  distribution: ketama2\n"),
        pool("  backlog: +5\n"),
        pool("  backlog: -5\n"),
        pool("  server_connections: 0\n"),
        pool("  timeout: 1\n  timeout: 2\n"),
        "p:\n  listen: 127.0.0.1:1\n".to_string(),
        "p:\n  servers:\n   - 127.0.0.1:1:1\n".to_string(),
        "p:\n  listen: 127.0.0.1:0\n  servers:\n   - 127.0.0.1:1:1\n".to_string(),
        "p:\n  listen: ::1:22121\n  servers:\n   - ::1:6379:1\n".to_string(),
        "p:\n  listen: 127.0.0.1:1\n  servers:\n   - 127.0.0.1:6379:0\n".to_string(),
        "p:\n  listen: 127.0.0.1:1\n  servers:\n   - 127.0.0.1:0:1\n".to_string(),
        "p:\n  listen: 127.0.0.1:1\n  servers:\n   - 127.0.0.1:6379\n".to_string(),
        "p:\n  listen: 127.0.0.1:1\n  servers:\n   - 127.0.0.1:6379:1 a b\n".to_string(),
        "p:\n  listen: 127.0.0.1:1\n  servers:\n   - /tmp/r.sock:1\n   - /tmp/s.sock:1 s\n"
            .to_string(),
        "p:\n  listen: 127.0.0.1:1\n  servers:\n   - 127.0.0.1:6379:1 a\n   - 127.0.0.1:6380:1\n"
            .to_string(),
        "p:\n  listen: 127.0.0.1:1\n  servers:\n   - 127.0.0.1:6379:1\n   - 127.0.0.1:6379:2\n"
            .to_string(),
        "p:\n  listen: 127.0.0.1:1\n  servers:\n   - 127.0.0.1:6379:1 a\n   - 127.0.0.1:6380:1 a\n"
            .to_string(),
        format!("{}{}", pool(""), pool("").replace("p:", "q:")),
        format!(
            "{}{}",
            pool(""),
            pool("").replace("p:", "q:").replace("22121", "22122")
        ),
        "".to_string(),
        "- a\n- b\n".to_string(),
        "p: {}\n".to_string(),
        "p:\n".to_string(),
        "p:\n  listen: 127.0.0.1:1\n  servers:\n   - 127.0.0.1:6379:1\n  servers:\n   - 127.0.0.1:6380:1\n".to_string(),
        "p:\n  listen: 127.0.0.1:1\n  hash_tag: \"é\"\n  servers:\n   - 127.0.0.1:6379:1\n".to_string(),
        "p:\n  listen: 127.0.0.1:1\n  servers:\n   - 127.0.0.1:11211:1\n   - 10.0.0.1:11211:1 127.0.0.1\n".to_string(),
        "p:\n  listen: 127.0.0.1:1\n  timeout:\n  servers:\n   - 127.0.0.1:6379:1\n".to_string(),
        "p:\n  listen: 127.0.0.1:1\n  backlog: 2147483648\n  servers:\n   - 127.0.0.1:6379:1\n".to_string(),
        "p:\n  listen: 127.0.0.1:1\n  servers:\n   - 127.0.0.1:6379:2147483648\n".to_string(),
        "p:\n  \"listen\": 127.0.0.1:1\n  servers:\n   - 127.0.0.1:6379:1\n".to_string(),
        "p:\n  listen: 127.0.0.1:1\n  servers:\n   - \"127.0.0.1:6379:1 \"\n".to_string(),
        "p:\n  listen: 127.0.0.1:1\n  servers:\n   - my_host:6379:1\n".to_string(),
        "p:\n  listen: /tmp/shoal-nc-test.sock 0644\n  servers:\n   - 127.0.0.1:6379:1\n".to_string(),
        "p: # c\n  listen: 127.0.0.1:1 # c\n  servers: # c\n   - 127.0.0.1:6379:1 # c\n".to_string(),
        "p:\n  listen: 127.0.0.1:1\n  redis: true\n  redis_auth: null\n  servers:\n   - 127.0.0.1:6379:1\n".to_string(),
        "p:\n  listen: 127.0.0.1:1\n  hash_tag: \"~~\"\n  servers:\n   - 127.0.0.1:6379:1\n".to_string(),
    ];
    let dir = std::env::temp_dir().join(format!("shoal-config-nc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, text) in cases.iter().enumerate() {
        let file = dir.join(format!("case{i}.yml"));
        std::fs::write(&file, text).unwrap();
        let out = std::process::Command::new("nutcracker")
            .arg("-t")
            .arg("-c")
            .arg(&file)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs = said.contains("syntax is ok");
        let ours = parse(text);
        assert_eq!(
            ours.is_ok(),
            theirs,
            "case {i}:\n{text}\nnutcracker: {said}\nours: {ours:?}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
