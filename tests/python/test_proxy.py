"""Real clients through shoal-proxy: redis-py (RESP2 and RESP3), redis-cli and pymemcache.

The proxy (fixture `proxy`, see conftest.py) fronts four pools: RESP and memcache pools over
three shoal-server shards, a RESP pool over three redis-servers and a memcache pool over
three memcacheds. Where it makes sense a test is differential: the same workload through a
proxy pool and against one redis-server / memcached (`redis_ref` / `memcached_ref`) must
give equal results. Placement is checked on the shards themselves (every key on exactly
one shard, every shard used) and against twemproxy (`nutcracker`) in front of the same
servers.
"""

import random
import re
import socket
import threading
import time
from collections import Counter

import pytest
import redis
from pymemcache.client.base import Client as McClient

from conftest import SHARDS, require, run

RESP_POOLS = ["shoal_redis", "redis"]
MC_POOLS = ["shoal_mc", "mc"]
WAIT = 5.0  # seconds any single expected event may take


def rclient(port, protocol=2, **kw):
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=10, protocol=protocol,
                       decode_responses=True, **kw)


def mclient(port, **kw):
    kw.setdefault("default_noreply", False)
    return McClient(("127.0.0.1", port), connect_timeout=5, timeout=10, **kw)


def outcome(fn):
    """Result of a call, or its error class and message: comparable across servers."""
    try:
        return ("ok", fn())
    except AssertionError:
        raise
    except Exception as e:  # redis-py's RedisError, pymemcache's MemcacheError...
        return ("err", type(e).__name__, str(e))


def results(values):
    """A pipeline's results (raise_on_error=False) with errors made comparable."""
    return [("err", type(v).__name__, str(v)) if isinstance(v, Exception) else v for v in values]


def differential(workload, *clients):
    """Runs `workload` on every client; all results must equal the first's."""
    outs = [workload(c) for c in clients]
    for got in outs[1:]:
        assert got == outs[0]
    return outs[0]


def where(proxy, pool, keys):
    """{key: [index of every server of the pool holding it]}, read on the servers directly."""
    found = {k: [] for k in keys}
    for i, server in enumerate(proxy.shards[pool]):
        if proxy.is_redis(pool):
            p = rclient(server.port).pipeline(transaction=False)
            for k in keys:
                p.exists(k)
            hits = p.execute()
        else:
            got = mclient(server.mc_port).get_many(keys)
            hits = [k in got for k in keys]
        for k, hit in zip(keys, hits):
            if hit:
                found[k].append(i)
    return found


def assert_spread(proxy, pool, keys):
    """Every key is on exactly one server, and every server holds some."""
    found = where(proxy, pool, keys)
    misplaced = {k: v for k, v in found.items() if len(v) != 1}
    assert not misplaced, f"keys not on exactly one server: {dict(list(misplaced.items())[:5])}"
    per = Counter(v[0] for v in found.values())
    assert len(per) == SHARDS, f"keys per server: {dict(per)}"
    return {k: v[0] for k, v in found.items()}


def collect(ps, n, deadline=WAIT, done=None):
    """Pub/sub messages until there are `n` (or `done(messages)` holds), waiting at most
    `deadline` seconds in all."""
    out = []
    end = time.monotonic() + deadline
    while len(out) < n and not (done and done(out)) and time.monotonic() < end:
        m = ps.get_message(timeout=0.1)
        if m is not None:
            out.append(m)
    return out


def bound_scan_calls(r, limit=10_000):
    """Makes `r.scan` (which `scan_iter` calls) fail after `limit` calls: a cursor that never
    returns to 0 fails the test instead of hanging it."""
    scan, calls = r.scan, [0]

    def bounded(*args, **kw):
        calls[0] += 1
        assert calls[0] <= limit, f"SCAN did not finish in {limit} calls"
        return scan(*args, **kw)

    r.scan = bounded


def wait_until(cond, what, deadline=WAIT):
    end = time.monotonic() + deadline
    while not cond():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.01)


def scan_all(r, limit=100_000, **kw):
    """Every key SCAN returns, in order (duplicates kept), with a bound on the calls."""
    keys, cursor = [], 0
    for _ in range(limit):
        cursor, batch = r.scan(cursor=cursor, **kw)
        keys.extend(batch)
        if int(cursor) == 0:
            return keys
    raise AssertionError(f"SCAN did not finish in {limit} calls")


# ---------------------------------------------------------------------------------------
# redis-py
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("pool", RESP_POOLS)
def test_handshake(proxy, redis_ref, pool, protocol):
    """redis-py's connect (HELLO 3 for RESP3, CLIENT SETINFO) and the session commands."""

    def workload(r):
        r.connection_pool.disconnect()
        hello = r.execute_command("HELLO")
        if isinstance(hello, list):
            hello = dict(zip(hello[::2], hello[1::2]))
        assert isinstance(hello.pop("id"), int)
        return [
            hello,
            r.ping(),
            r.echo("hi"),
            r.client_setname("proxy-test"),
            r.client_getname(),
            isinstance(r.client_id(), int),
            {k: str(v) for k, v in r.client_info().items() if k in ("name", "db", "resp")},
            r.execute_command("SELECT", 0),
            outcome(lambda: r.execute_command("NOSUCHCOMMAND", "x")),
        ]

    r = rclient(proxy.ports[pool], protocol)
    out = differential(workload, rclient(redis_ref.port, protocol), r)
    assert out[0]["proto"] == protocol
    # Redis 7.2's CLIENT SETINFO (redis-py sends it on connect; redis-server 7.0 refuses it).
    assert r.client_setinfo("LIB-NAME", "shoal-test") is True
    # One database, as in Redis Cluster.
    with pytest.raises(redis.ResponseError, match="DB index is out of range"):
        r.execute_command("SELECT", 1)


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("pool", RESP_POOLS)
def test_strings_and_expiry(proxy, redis_ref, pool, protocol):
    def workload(r):
        r.flushall()
        out = []
        for i in range(40):
            k = f"s:{i}"
            out += [
                r.set(k, i),
                r.get(k),
                r.incr(k),
                r.incrby(k, 10),
                r.decr(k),
                r.append(k, "x"),
                outcome(lambda: r.incr(k)),
                r.strlen(k),
                r.getset(k, "new"),
                r.set(k, "nx", nx=True),
                r.set(k, "xx", xx=True, get=True),
                r.ttl(k),
                r.expire(k, 100),
                r.ttl(k) in (99, 100),
                98_000 <= r.pttl(k) <= 100_000,
                r.expire(k, 10, gt=True),
                r.persist(k),
                r.ttl(k),
                r.setex(f"{k}:ex", 50, "v"),
                r.ttl(f"{k}:ex") in (49, 50),
                r.type(k),
                r.exists(k, f"{k}:ex", f"{k}:missing"),
                r.getdel(k),
                r.get(k),
                r.ttl(k),
            ]
        big = "".join(chr(97 + i % 26) for i in range(700_000))
        out += [r.set("s:big", big), r.get("s:big") == big, r.strlen("s:big"),
                r.mget("s:big", "s:1", "s:big") == [big, None, big]]
        r.set("s:gone", "v", px=1)
        deadline = time.monotonic() + WAIT
        while r.exists("s:gone") and time.monotonic() < deadline:
            time.sleep(0.01)
        out.append(r.get("s:gone"))
        return out

    differential(workload, rclient(redis_ref.port, protocol), rclient(proxy.ports[pool], protocol))


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("pool", RESP_POOLS)
def test_multikey_1000(proxy, redis_ref, pool, protocol):
    """MSET/MGET/EXISTS/DEL/UNLINK/TOUCH split over the shards, DBSIZE summed, KEYS merged."""
    keys = [f"mk:{i}" for i in range(1000)]
    mapping = {k: f"v{i}" for i, k in enumerate(keys)}
    probe = keys + [f"mk:missing:{i}" for i in range(100)]
    random.Random(7).shuffle(probe)

    def workload(r):
        r.flushall()
        return [
            r.mset(mapping),
            r.mget(probe),
            r.exists(*probe, keys[0], keys[0]),
            r.delete(*keys[::2], "mk:missing:0"),
            r.exists(*keys),
            r.mget(keys),
            r.unlink(*keys[1::4]),
            r.touch(*keys, "mk:missing:1"),
            r.dbsize(),
            sorted(r.keys("*")),
            sorted(r.keys("mk:1*")),
            r.mset({"mk:a": "1", "mk:b": "2", "{mk}c": "3"}),
            r.mget("mk:b", "mk:missing:2", "mk:a", "{mk}c", "mk:a"),
        ]

    differential(workload, rclient(redis_ref.port, protocol), rclient(proxy.ports[pool], protocol))
    r = rclient(proxy.ports[pool], protocol)
    r.flushall()
    assert r.mset(mapping) is True
    assert_spread(proxy, pool, keys)
    assert r.dbsize() == 1000 == sum(rclient(s.port).dbsize() for s in proxy.shards[pool])


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("pool", RESP_POOLS)
def test_collections(proxy, redis_ref, pool, protocol):
    """Hashes, lists, sets, sorted sets; multi-key ones on hash-tagged keys."""

    def workload(r):
        r.flushall()
        out = []
        for i in range(8):
            h, l, s, z = f"h:{i}", f"l:{i}", f"st:{i}", f"z:{i}"
            out += [
                r.hset(h, mapping={"a": "1", "b": "2", f"f{i}": "x"}),
                r.hget(h, "a"),
                r.hmget(h, ["a", "nope", "b"]),
                r.hgetall(h),
                r.hincrby(h, "a", 5),
                r.hincrbyfloat(h, "b", 0.5),
                r.hdel(h, "b", "nope"),
                r.hlen(h),
                sorted(r.hkeys(h)),
                r.hexists(h, "a"),
                r.rpush(l, "a", "b", "c", "b"),
                r.lpush(l, "z"),
                r.lrange(l, 0, -1),
                r.lindex(l, 2),
                r.lrem(l, 0, "b"),
                r.lpop(l),
                r.rpop(l),
                r.llen(l),
                r.ltrim(l, 0, 0),
                r.lrange(l, 0, -1),
                r.sadd(s, "a", "b", "c", str(i)),
                r.smembers(s),
                r.sismember(s, "a"),
                r.srem(s, "a", "nope"),
                r.scard(s),
                r.zadd(z, {"a": 1, "b": 2.5, "c": -1}),
                r.zrange(z, 0, -1, withscores=True),
                r.zscore(z, "b"),
                r.zincrby(z, 2, "a"),
                r.zrank(z, "a"),
                r.zrangebyscore(z, 0, 10),
                r.zrem(z, "c"),
                r.zcard(z),
                outcome(lambda: r.hget(l, "a")),
                outcome(lambda: r.lpush(h, "x")),
            ]
        out += [
            r.sadd("{st}a", "1", "2", "3"),
            r.sadd("{st}b", "2", "3", "4"),
            r.sinter("{st}a", "{st}b"),
            r.sunion("{st}a", "{st}b"),
            r.sdiff("{st}a", "{st}b"),
            r.sinterstore("{st}dst", ["{st}a", "{st}b"]),
            r.smembers("{st}dst"),
            r.smove("{st}a", "{st}b", "1"),
            r.zadd("{zs}a", {"x": 1, "y": 2}),
            r.zadd("{zs}b", {"y": 3, "z": 4}),
            r.zunionstore("{zs}u", ["{zs}a", "{zs}b"]),
            r.zrange("{zs}u", 0, -1, withscores=True),
            r.zinterstore("{zs}i", {"{zs}a": 1, "{zs}b": 10}),
            r.zrange("{zs}i", 0, -1, withscores=True),
            r.rpush("{ls}a", "1", "2"),
            r.lmove("{ls}a", "{ls}b", "LEFT", "RIGHT"),
            r.rpoplpush("{ls}a", "{ls}b"),
            r.lrange("{ls}b", 0, -1),
        ]
        return out

    differential(workload, rclient(redis_ref.port, protocol), rclient(proxy.ports[pool], protocol))


@pytest.mark.parametrize(
    "pool",
    [
        "shoal_redis",
        "redis",
    ],
)
def test_rename_collection(proxy, redis_ref, pool):
    def workload(r):
        r.flushall()
        r.rpush("{rn}l", "a", "b")
        r.hset("{rn}h", "f", "v")
        return [r.rename("{rn}l", "{rn}l2"), r.type("{rn}l2"), r.lrange("{rn}l2", 0, -1),
                r.renamenx("{rn}h", "{rn}h2"), r.type("{rn}h2"), r.hgetall("{rn}h2")]

    differential(workload, rclient(redis_ref.port), rclient(proxy.ports[pool]))


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("pool", RESP_POOLS)
def test_pipeline_1000_commands(proxy, redis_ref, pool, protocol):
    """A non-transactional pipeline of 1000 mixed commands over every shard: replies in order."""

    def workload(r):
        r.flushall()
        p = r.pipeline(transaction=False)
        for i in range(1000):
            k = f"pl:{i % 97}"
            m = i % 6
            if m == 0:
                p.set(k, i)
            elif m == 1:
                p.incr(k)
            elif m == 2:
                p.get(k)
            elif m == 3:
                p.rpush(f"pl:list:{i % 7}", i)
            elif m == 4:
                p.mget(k, f"pl:{(i + 1) % 97}", f"pl:{(i + 50) % 97}")
            else:
                p.incr(f"pl:list:{i % 7}")  # WRONGTYPE
        got = results(p.execute(raise_on_error=False))
        assert len(got) == 1000
        return got + [r.dbsize()]

    differential(workload, rclient(redis_ref.port, protocol), rclient(proxy.ports[pool], protocol))


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("pool", RESP_POOLS)
def test_pipeline_transaction(proxy, redis_ref, pool, protocol):
    """MULTI/EXEC through redis-py's transactional pipeline, every key with one hash tag."""

    def workload(r):
        r.flushall()
        out = []
        for round_ in range(3):
            p = r.pipeline(transaction=True)
            p.set("{tx}a", round_)
            p.incr("{tx}a")
            p.incrby("{tx}a", 5)
            p.get("{tx}a")
            p.lpush("{tx}l", "x", "y")
            p.lrange("{tx}l", 0, -1)
            p.hset("{tx}h", mapping={"f": round_})
            p.hgetall("{tx}h")
            p.mset({"{tx}m1": "1", "{tx}m2": "2"})
            p.mget("{tx}m1", "{tx}a", "{tx}nope")
            p.rename("{tx}m1", "{tx}m3")
            p.exists("{tx}m1", "{tx}m3")
            p.incr("{tx}l")  # fails at EXEC time; the others still apply
            out.append(results(p.execute(raise_on_error=False)))
        out.append(sorted(r.keys("*")))
        return out

    differential(workload, rclient(redis_ref.port, protocol), rclient(proxy.ports[pool], protocol))


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("pool", RESP_POOLS)
def test_scan_iter_every_key_once(proxy, pool, protocol):
    r = rclient(proxy.ports[pool], protocol)
    r.flushall()
    keys = {f"sc:{i}" for i in range(1000)}
    assert r.mset({k: "1" for k in keys}) is True
    assert r.set("other", "1") is True
    bound_scan_calls(r)
    matched = list(r.scan_iter(match="sc:*", count=100))
    assert len(matched) == len(keys) and set(matched) == keys
    every = scan_all(r, count=37)
    dupes = [k for k, n in Counter(every).items() if n > 1]
    assert not dupes and set(every) == keys | {"other"}
    assert sorted(r.keys("*")) == sorted(keys | {"other"})
    assert r.dbsize() == 1001 == sum(rclient(s.port).dbsize() for s in proxy.shards[pool])
    # Bad cursors are refused, not looped on.
    with pytest.raises(redis.ResponseError):
        r.scan(cursor=1023)


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("pool", RESP_POOLS)
def test_pubsub(proxy, pool, protocol):
    """SUBSCRIBE/PSUBSCRIBE through the proxy, PUBLISH from another client: channels live on
    their owner shard, a pattern on every shard; every message arrives exactly once."""
    port = proxy.ports[pool]
    sub, pub = rclient(port, protocol), rclient(port, protocol)
    ps = sub.pubsub()
    names = channels_on_every_shard(proxy, pool, 2)
    channels, pattern_only = names[0::2], names[1::2]  # one of each on every shard
    ps.subscribe(*channels)
    ps.psubscribe("chan-*")

    def confirmed(msgs):
        return {(m["type"], m["channel"]) for m in msgs} == {("subscribe", ch) for ch in channels} | {
            ("psubscribe", "chan-*")
        }

    confirms = collect(ps, 100, done=confirmed)
    assert confirmed(confirms), confirms
    # The pattern is subscribed on every shard: a channel nobody subscribed to reaches it
    # (published until delivered, as the pattern may be confirmed by one shard before another).
    for ch in pattern_only:
        wait_until(lambda: pub.publish(ch, f"p {ch}") == 1, f"pattern subscription on the shard of {ch}")
    for ch in channels:
        assert pub.publish(ch, f"hello {ch}") == 2  # the channel and the pattern
    assert pub.publish("nobody", "lost") == 0
    want = sorted([("pmessage", "chan-*", ch, f"p {ch}") for ch in pattern_only]
                  + [("message", None, ch, f"hello {ch}") for ch in channels]
                  + [("pmessage", "chan-*", ch, f"hello {ch}") for ch in channels])

    def messages(msgs):
        return sorted((m["type"], m["pattern"], m["channel"], m["data"]) for m in msgs
                      if m["type"] in ("message", "pmessage"))

    got = collect(ps, 100, done=lambda msgs: len(messages(msgs)) >= len(want))
    assert messages(got) == want
    assert [m for m in collect(ps, 100, deadline=0.2) if m["type"] in ("message", "pmessage")] == [], \
        "a message was delivered twice"

    ps.unsubscribe(channels[0])
    gone = collect(ps, 1)
    assert [(m["type"], m["channel"]) for m in gone] == [("unsubscribe", channels[0])]
    assert pub.publish(channels[0], "after") == 1  # the pattern only
    assert pub.publish(channels[1], "still") == 2
    assert messages(collect(ps, 3)) == sorted([("pmessage", "chan-*", channels[0], "after"),
                                               ("message", None, channels[1], "still"),
                                               ("pmessage", "chan-*", channels[1], "still")])
    ps.unsubscribe()
    ps.punsubscribe()
    wait_until(lambda: all(pub.publish(ch, "x") == 0 for ch in names), "unsubscribing everything")
    ps.close()
    # The subscriber's client works normally after its pub/sub connection is closed.
    assert sub.set("ch:after", "ok") and sub.get("ch:after") == "ok"


def channels_on_every_shard(proxy, pool, per):
    """`per` channel names owned by each server of the pool (a channel belongs to the
    server a key of the same name lands on: where PUBLISH goes)."""
    r = rclient(proxy.ports[pool])
    rng = random.Random(11)
    names = [f"chan-{rng.getrandbits(40):x}" for _ in range(60)]
    r.mset({ch: "1" for ch in names})
    placed = assert_spread(proxy, pool, names)
    r.delete(*names)
    chosen = []
    for shard in range(SHARDS):
        chosen += [ch for ch in names if placed[ch] == shard][:per]
    assert len(chosen) == SHARDS * per
    return chosen


def read_frames(sock, want, deadline=WAIT):
    """Bytes from `sock` until `want` bytes arrived (or `deadline` seconds passed), then
    whatever else arrives within 0.2 s (so extra frames are seen too)."""
    out = b""
    end = time.monotonic() + deadline
    while len(out) < want and time.monotonic() < end:
        sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            return out
        out += chunk
    sock.settimeout(0.2)
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except socket.timeout:
        pass
    return out


def pubsub_session(port, script, ref=None):
    """Sends each step of `script` on one connection and returns what came back per step:
    for the reference, what arrives until it is quiet for 0.2 s; else as many bytes as the
    reference's step had (at most 0.5 s), plus anything more within 0.2 s."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        out = []
        for i, data in enumerate(script):
            sock.sendall(data)
            out.append(read_frames(sock, 1) if ref is None else read_frames(sock, len(ref[i]), deadline=0.5))
        return out


PUBSUB_BUG = ("proxy pub/sub keeps no session-level subscription state: confirmations carry per-server "
              "counts and come once per server for patterns, they are written after the replies of later "
              "pipelined commands, and the connection stays in subscribed mode after unsubscribing everything")



@pytest.mark.parametrize("pool", RESP_POOLS)
def test_pubsub_confirmations_match_redis(proxy, redis_ref, pool):
    """What a RESP2 subscriber reads, byte for byte, as from one redis-server: counts are
    the connection's total subscriptions (clients such as Jedis stop listening when a
    confirmation says 0), one confirmation per channel or pattern, in request order, and
    normal commands work again once nothing is subscribed."""
    a, b, c = channels_on_every_shard(proxy, pool, 1)
    enc = lambda *cmds: b"".join(resp_command(*cmd) for cmd in cmds)  # noqa: E731
    script = [
        enc(["SUBSCRIBE", a, b, c]),
        enc(["PSUBSCRIBE", "pat:*"]),
        enc(["UNSUBSCRIBE", a]),
        enc(["UNSUBSCRIBE"]),
        enc(["PUNSUBSCRIBE"]),
        enc(["GET", "nothing"]),
        # Pipelined: each reply in its request's place.
        enc(["SUBSCRIBE", a, b], ["UNSUBSCRIBE"], ["GET", "nothing"], ["PING"]),
    ]
    ref = pubsub_session(redis_ref.port, script)
    got = pubsub_session(proxy.ports[pool], script, ref)
    assert [unsubscribe_order_free(g) for g in got] == [unsubscribe_order_free(r) for r in ref]


UNSUB_FRAME = re.compile(rb"\*3\r\n\$(?:11|12)\r\np?unsubscribe\r\n\$\d+\r\n([^\r]*)\r\n:(\d+)\r\n")


def unsubscribe_order_free(step):
    """An argument-less UNSUBSCRIBE confirms channels in the server's hash-table order
    (random per process): compare such runs as the set of channels plus the sequence of
    counts, everything else byte for byte."""
    out, pos = [], 0
    while pos < len(step):
        run = []
        while (m := UNSUB_FRAME.match(step, pos)):
            run.append(m)
            pos = m.end()
        if run:
            out.append(("unsub-run", sorted(m.group(1) for m in run), [m.group(2) for m in run]))
            continue
        out.append(step[pos:pos + 1])
        pos += 1
    return out



@pytest.mark.parametrize("pool", RESP_POOLS)
def test_pubsub_resp3_commands_while_subscribed(proxy, redis_ref, pool):
    """RESP3 lets a subscribed connection run any command (Redis 7)."""
    script = [resp_command("HELLO", "3"), resp_command("SUBSCRIBE", "r3chan"), resp_command("GET", "nothing"),
              resp_command("UNSUBSCRIBE", "r3chan")]
    ref = pubsub_session(redis_ref.port, script)
    got = pubsub_session(proxy.ports[pool], script, ref)
    assert got[1:] == ref[1:]


def watch_workload(r, other):
    r.delete("{t}k", "{t}n")
    out = []
    for _ in range(5):
        with r.pipeline() as p:
            p.watch("{t}k")
            v = int(p.get("{t}k") or 0)
            p.multi()
            p.set("{t}k", v + 1)
            p.incr("{t}n")
            out.append(p.execute())
    out.append(r.get("{t}k"))
    # Another client writes the watched key: EXEC aborts.
    with r.pipeline() as p:
        p.watch("{t}k")
        assert other.set("{t}k", "changed") is True
        p.multi()
        p.set("{t}k", "mine")
        out.append(outcome(p.execute))
    out.append(r.get("{t}k"))
    # UNWATCH (the pipeline's reset) forgets the watch: a later write does not abort.
    with r.pipeline() as p:
        p.watch("{t}k")
        p.unwatch()
        other.set("{t}k", "again")
        p.multi()
        p.set("{t}k", "mine")
        out.append(p.execute())
    out.append(r.get("{t}k"))
    # The retry loop that transaction() runs.
    out.append(r.transaction(lambda p: p.multi() or p.incr("{t}n"), "{t}n"))
    out.append(r.get("{t}n"))
    return out


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("pool", RESP_POOLS)
def test_watch_multi_exec(proxy, redis_ref, pool, protocol):
    ref = watch_workload(rclient(redis_ref.port, protocol), rclient(redis_ref.port, protocol))
    port = proxy.ports[pool]
    got = watch_workload(rclient(port, protocol), rclient(port, protocol))
    assert got == ref
    assert ref[6][0] == "err" and ref[6][1] == "WatchError"


@pytest.mark.parametrize("pool", RESP_POOLS)
def test_crossslot(proxy, pool):
    """Multi-key commands over several shards are refused with CROSSSLOT; hash tags work."""
    r = rclient(proxy.ports[pool])
    r.flushall()
    assert r.set("cs:src", "v")
    same = other = None
    for i in range(200):
        dst = f"cs:dst{i}"
        try:
            assert r.rename("cs:src", dst) is True
            assert r.rename(dst, "cs:src") is True
            same = same or dst
        except redis.ResponseError as e:
            assert str(e).startswith("CROSSSLOT Keys in request don't hash to the same slot"), e
            other = other or dst
        if same and other:
            break
    assert same and other, (same, other)
    assert r.get("cs:src") == "v"
    # What the error said agrees with where the keys actually live.
    assert r.set(same, "s") and r.set(other, "o")
    fill = [f"cs:fill{i}" for i in range(30)]
    assert r.mset({k: "1" for k in fill}) is True
    placed = assert_spread(proxy, pool, ["cs:src", same, other] + fill)
    assert placed["cs:src"] == placed[same] != placed[other]
    for call in (
        lambda: r.renamenx("cs:src", other),
        lambda: r.msetnx({"cs:src": "1", other: "2"}),
        lambda: r.sinter("cs:src", other),
        lambda: r.rpoplpush("cs:src", other),
        lambda: r.copy("cs:src", other),
    ):
        with pytest.raises(redis.ResponseError, match="^CROSSSLOT"):
            call()
    assert r.copy("cs:src", same, replace=True) is True
    assert r.mget("cs:src", same, other) == ["v", "v", "o"]
    # Hash tags put keys together.
    assert r.set("{cs}a", "1") and r.rename("{cs}a", "{cs}b") is True
    assert r.msetnx({"{cs}c": "1", "{cs}d": "2"}) is True
    # A transaction touching two shards is refused as a whole: nothing is written.
    p = r.pipeline(transaction=True)
    p.set("cs:src", "new")
    p.set(other, "new")
    with pytest.raises(redis.ResponseError, match="CROSSSLOT"):
        p.execute()
    assert r.mget("cs:src", other) == ["v", "o"]
    # WATCH over two shards is refused too, and the connection stays usable.
    with pytest.raises(redis.ResponseError, match="^CROSSSLOT"):
        r.execute_command("WATCH", "cs:src", other)
    assert r.get("cs:src") == "v"


# ---------------------------------------------------------------------------------------
# redis-cli
# ---------------------------------------------------------------------------------------


def resp_command(*args):
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


@pytest.mark.parametrize("pool", RESP_POOLS)
def test_redis_cli(proxy, redis_ref, pool):
    port = str(proxy.ports[pool])

    def cli(*args, stdin=b""):
        return run([require("redis-cli"), "-h", "127.0.0.1", "-p", port, *args], stdin=stdin)

    ref = [require("redis-cli"), "-h", "127.0.0.1", "-p", str(redis_ref.port)]
    assert cli("FLUSHALL")[1] == b"OK\n"
    assert run([*ref, "FLUSHALL"])[1] == b"OK\n"
    assert cli("SET", "cli:a", "b")[1] == b"OK\n"
    assert run([*ref, "SET", "cli:a", "b"])[1] == b"OK\n"
    assert cli("GET", "cli:a")[1] == b"b\n"
    # Replies rendered by redis-cli as from redis-server (RESP3 maps included).
    for cmd in (["DEL", "cli:h"], ["-3", "HSET", "cli:h", "f", "v", "g", "w"], ["-3", "HGETALL", "cli:h"],
                ["-3", "--no-raw", "HGETALL", "cli:h"], ["--no-raw", "HGETALL", "cli:h"],
                ["--no-raw", "MGET", "cli:a", "cli:nope"], ["--no-raw", "INCR", "cli:a"]):
        assert cli(*cmd)[:2] == run([*ref, *cmd])[:2], cmd
    n = 10_000
    payload = b"".join(resp_command("SET", f"pipe:{i}", f"v{i}") for i in range(n))
    rc, out, err = cli("--pipe", stdin=payload)
    assert rc == 0, err
    assert f"errors: 0, replies: {n}".encode() in out + err
    rc, out, err = cli("--scan", "--pattern", "pipe:*")
    assert rc == 0, err
    lines = out.split()
    assert len(lines) == n and set(lines) == {f"pipe:{i}".encode() for i in range(n)}
    rc, out, _ = cli("--scan")
    assert len(out.split()) == n + 2
    assert cli("DBSIZE")[1] == f"{n + 2}\n".encode()
    assert cli("GET", "pipe:1234")[1] == b"v1234\n"
    assert cli("MGET", "pipe:0", "pipe:nope", "pipe:9999")[1] == b"v0\n\nv9999\n"
    per = [rclient(s.port).dbsize() for s in proxy.shards[pool]]
    assert sum(per) == n + 2 and min(per) > 0, per


# ---------------------------------------------------------------------------------------
# pymemcache
# ---------------------------------------------------------------------------------------


def mc_workload(c):
    out = []
    out.append(c.flush_all())
    keys = [f"mc:{i}" for i in range(1000)]
    values = {k: f"v{i}".encode() for i, k in enumerate(keys)}
    out.append(c.set_many(values))
    probe = keys + [f"mc:missing:{i}" for i in range(50)]
    random.Random(3).shuffle(probe)
    out.append(c.get_many(probe) == values)
    out.append(sorted(c.get_many(probe[:300]).items()))
    out.append({k: v for k, (v, _) in c.gets_many(keys[:200]).items()} == {k: values[k] for k in keys[:200]})
    value, cas = c.gets("mc:1")
    out += [value, c.cas("mc:1", b"new", cas), c.cas("mc:1", b"newer", cas),
            c.cas("mc:missing", b"v", b"1"), c.get("mc:1")]
    out += [c.set("mc:n", b"10"), c.incr("mc:n", 5), c.decr("mc:n", 20), c.incr("mc:n", 2**64 - 1),
            c.incr("mc:missing", 1), c.decr("mc:missing", 1), outcome(lambda: c.incr("mc:2", 1))]
    out += [c.add("mc:3", b"other"), c.add("mc:new", b"n"), c.replace("mc:missing", b"r"),
            c.replace("mc:4", b"r"), c.append("mc:5", b"!"), c.prepend("mc:5", b">"),
            c.append("mc:missing", b"!"), c.prepend("mc:missing", b"<")]
    out.append(c.get_many(["mc:3", "mc:new", "mc:4", "mc:5", "mc:missing"]))
    big = bytes(range(256)) * 3000
    out += [c.set("mc:big", big), c.get("mc:big") == big, c.get_many(["mc:big", "mc:1"]) == {"mc:big": big, "mc:1": b"new"}]
    out.append(c.set("mc:flags", b"x", flags=42))
    out.append(c.raw_command(b"get mc:flags mc:5", b"END"))
    out += [c.touch("mc:6", 100), c.touch("mc:missing", 100), c.delete("mc:7"), c.delete("mc:7")]
    out.append(c.delete_many(keys[::3]))
    out.append(sorted(c.get_many(keys)))
    out.append(c.flush_all())
    out.append(c.get_many(keys))
    return out


@pytest.mark.parametrize("pool", MC_POOLS)
def test_pymemcache(proxy, memcached_ref, pool):
    differential(mc_workload, mclient(memcached_ref.mc_port), mclient(proxy.ports[pool]))
    c = mclient(proxy.ports[pool])
    keys = [f"mcs:{i}" for i in range(1000)]
    assert c.set_many({k: b"1" for k in keys}) == []
    assert_spread(proxy, pool, keys)


@pytest.mark.parametrize("pool", MC_POOLS)
def test_pymemcache_noreply_default(proxy, memcached_ref, pool):
    """pymemcache's default is noreply for set/add/delete/touch/flush_all: the proxy must
    neither forward nor invent a reply for them, or every later reply is out of step."""

    def workload(c):
        out = [c.flush_all()]
        out += [c.set(f"nr:{i}", str(i).encode()) for i in range(500)]
        out.append(c.get("nr:7"))
        out += [c.add("nr:8", b"x"), c.add("nr:new", b"x"), c.replace("nr:missing", b"x"),
                c.append("nr:9", b"!"), c.delete("nr:10"), c.delete("nr:missing"),
                c.touch("nr:11", 100), c.incr("nr:12", 1, noreply=True)]
        out.append(c.get_many([f"nr:{i}" for i in range(14)] + ["nr:new", "nr:missing"]))
        out.append(c.incr("nr:13", 1))
        out.append(c.flush_all())
        out.append(c.get_many([f"nr:{i}" for i in range(500)]))
        out.append(c.version() != b"")
        return out

    ref = differential(workload, mclient(memcached_ref.mc_port, default_noreply=True),
                       mclient(proxy.ports[pool], default_noreply=True))
    assert ref[-2] == {}


# ---------------------------------------------------------------------------------------
# Many clients at once (the proxy shares one backend connection per worker and server)
# ---------------------------------------------------------------------------------------


def run_threads(n, fn):
    errors = []

    def wrap(i):
        try:
            fn(i)
        except BaseException as e:  # reported below
            errors.append(f"thread {i}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a client thread hung"
    assert not errors, errors[:3]


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("pool", RESP_POOLS)
def test_concurrent_clients_resp(proxy, pool, protocol):
    """8 clients pipelining at once: each sees its own replies, shared counters add up."""
    port = proxy.ports[pool]
    rclient(port).delete(*[f"cc:n{j}" for j in range(5)])
    rounds, per = 30, 20

    def client(i):
        r = rclient(port, protocol)
        for k in range(rounds):
            p = r.pipeline(transaction=False)
            for j in range(per):
                p.set(f"cc:{i}:{j}", f"{i}-{k}-{j}")
                p.incr(f"cc:n{j % 5}")
                p.get(f"cc:{i}:{j}")
            got = p.execute()
            assert got[2::3] == [f"{i}-{k}-{j}" for j in range(per)]
            assert r.mget([f"cc:{i}:{j}" for j in range(per)]) == [f"{i}-{k}-{j}" for j in range(per)]

    run_threads(8, client)
    total = sum(int(v) for v in rclient(port).mget([f"cc:n{j}" for j in range(5)]))
    assert total == 8 * rounds * per


@pytest.mark.parametrize("pool", MC_POOLS)
def test_concurrent_clients_memcache(proxy, pool):
    port = proxy.ports[pool]
    mclient(port).set("ccm:n", b"0")
    rounds, per = 30, 20

    def client(i):
        c = mclient(port)
        for k in range(rounds):
            values = {f"ccm:{i}:{j}": f"{i}-{k}-{j}".encode() for j in range(per)}
            assert c.set_many(values) == []
            assert c.get_many(list(values)) == values
            assert c.incr("ccm:n", 1) is not None

    run_threads(8, client)
    assert mclient(port).get("ccm:n") == str(8 * rounds).encode()


# ---------------------------------------------------------------------------------------
# Across protocols and against twemproxy
# ---------------------------------------------------------------------------------------


def test_cross_protocol_same_shard(proxy):
    """The shoal RESP and memcache pools name the same servers in the same order: a key
    written through one is read through the other."""
    r = rclient(proxy.ports["shoal_redis"])
    c = mclient(proxy.ports["shoal_mc"])
    r.flushall()
    rkeys = {f"xp:r{i}": f"r{i}" for i in range(300)}
    assert r.mset(rkeys) is True
    assert c.get_many(list(rkeys)) == {k: v.encode() for k, v in rkeys.items()}
    mkeys = {f"xp:m{i}": f"m{i}".encode() for i in range(300)}
    assert c.set_many(mkeys) == []
    assert r.mget(list(mkeys)) == [v.decode() for v in mkeys.values()]
    assert c.set("xp:n", b"41") is True
    assert r.incr("xp:n") == 42
    assert c.incr("xp:n", 8) == 50
    assert r.get("xp:n") == "50"
    assert c.delete("xp:r1") is True
    assert r.exists("xp:r1") == 0
    assert r.delete("xp:m1") == 1
    assert c.get("xp:m1") is None
    assert r.dbsize() == 599
    # Placement really is shared, and spread.
    placed = assert_spread(proxy, "shoal_redis", list(rkeys)[2:] + list(mkeys)[2:])
    assert placed == assert_spread(proxy, "shoal_mc", list(placed))


def test_placement_matches_twemproxy(proxy, nutcracker):
    """Written through nutcracker, read through shoal-proxy (and the reverse), in front of
    the same redis-servers and memcacheds: every key is found, so both place it alike."""
    # twemproxy closes the connection on CLIENT SETINFO, which redis-py sends unless told not to.
    r_shoal = rclient(proxy.ports["redis"])
    r_nut = rclient(nutcracker.ports["redis"], lib_name=None, lib_version=None)
    r_shoal.flushall()
    keys = [f"tw:{i}" for i in range(400)] + [f"{{user{i % 25}}}:tw:{i}" for i in range(200)]
    p = r_nut.pipeline(transaction=False)
    for k in keys:
        p.set(k, f"n-{k}")
    assert all(p.execute())
    assert r_shoal.mget(keys) == [f"n-{k}" for k in keys]
    assert r_shoal.mset({f"{k}:s": f"s-{k}" for k in keys}) is True
    assert [r_nut.get(f"{k}:s") for k in keys] == [f"s-{k}" for k in keys]

    c_shoal, c_nut = mclient(proxy.ports["mc"]), mclient(nutcracker.ports["mc"])
    assert c_shoal.flush_all() is True
    mkeys = [f"twm:{i}" for i in range(600)]
    assert c_nut.set_many({k: b"n" for k in mkeys}) == []
    assert c_shoal.get_many(mkeys) == {k: b"n" for k in mkeys}
    assert c_shoal.set_many({f"{k}:s": b"s" for k in mkeys}) == []
    assert c_nut.get_many([f"{k}:s" for k in mkeys]) == {f"{k}:s": b"s" for k in mkeys}
