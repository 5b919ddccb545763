"""redis-py (RESP2 and RESP3) against shoal-server, compared with redis-server."""

import pytest
import redis


def client(server, **kw):
    return redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=5, **kw)


def outcome(fn):
    """Result of a call, or the error class and message: comparable across servers."""
    try:
        return ("ok", fn())
    except redis.RedisError as e:
        return ("err", type(e).__name__, str(e))


@pytest.mark.parametrize("protocol", [2, 3])
def test_basic_commands(any_resp, protocol):
    r = client(any_resp, protocol=protocol, decode_responses=True)
    r.flushall()
    assert r.ping() is True
    assert r.set("py:a", "1") is True
    assert r.get("py:a") == "1"
    assert r.get("py:missing") is None
    assert r.incr("py:a") == 2
    assert r.incrby("py:a", 10) == 12
    assert r.decr("py:a") == 11
    assert r.incrbyfloat("py:f", 1.5) == 1.5
    assert r.append("py:s", "ab") == 2
    assert r.append("py:s", "cd") == 4
    assert r.strlen("py:s") == 4
    assert r.getrange("py:s", 1, -2) == "bc"
    assert r.setrange("py:s", 1, "XY") == 4
    assert r.get("py:s") == "aXYd"
    assert r.mset({"py:m1": "x", "py:m2": "y"}) is True
    assert r.mget("py:m1", "py:missing", "py:m2") == ["x", None, "y"]
    assert r.msetnx({"py:m1": "z", "py:new": "n"}) is False
    assert r.set("py:nx", "v", nx=True) is True
    assert r.set("py:nx", "w", nx=True) is None
    assert r.set("py:nx", "w", xx=True, get=True) == "v"
    assert r.getset("py:nx", "q") == "w"
    assert r.getdel("py:nx") == "q"
    assert r.exists("py:a", "py:a", "py:missing") == 2
    assert r.set("py:t", "v", ex=100) is True
    assert 99 <= r.ttl("py:t") <= 100
    assert 98_000 <= r.pttl("py:t") <= 100_000
    assert r.persist("py:t") is True
    assert r.ttl("py:t") == -1
    assert r.expire("py:t", 50) is True
    assert r.expire("py:t", 10, gt=True) is False
    assert r.getex("py:t", persist=True) == "v"
    assert r.type("py:t") == "string"
    assert r.type("py:missing") == "none"
    assert r.rename("py:t", "py:t2") is True
    assert r.renamenx("py:t2", "py:a") is False
    assert r.copy("py:t2", "py:t3") is True
    assert sorted(r.keys("py:m*")) == ["py:m1", "py:m2"]
    assert sorted(r.scan_iter(match="py:t*", count=2)) == ["py:t2", "py:t3"]
    assert r.touch("py:t2", "py:missing") == 1
    assert r.delete("py:t2", "py:t3", "py:missing") == 2
    assert r.unlink("py:m1") == 1
    assert r.dbsize() == len(r.keys("*"))
    assert r.object("encoding", "py:a") == "int"
    assert r.echo("hello") == "hello"
    assert isinstance(r.time(), tuple)
    assert r.flushdb() is True
    assert r.dbsize() == 0
    assert r.randomkey() is None


@pytest.mark.parametrize("protocol", [2, 3])
def test_errors_match_redis(shoal, redis_ref, protocol):
    calls = [
        lambda r: r.execute_command("GET"),
        lambda r: r.execute_command("FOO", "a", "b"),
        lambda r: r.execute_command("SET", "k", "v", "EX", "0"),
        lambda r: r.execute_command("SET", "k", "v", "NX", "XX"),
        lambda r: r.execute_command("INCR", "py:str"),
        lambda r: r.execute_command("INCRBYFLOAT", "py:str", "1"),
        lambda r: r.execute_command("SETRANGE", "py:str", "-1", "x"),
        lambda r: r.execute_command("EXPIRE", "py:str", "10", "NX", "XX"),
        lambda r: r.execute_command("RENAME", "py:missing", "x"),
        lambda r: r.execute_command("AUTH", "pw"),
        lambda r: r.execute_command("SELECT", "99"),
        lambda r: r.execute_command("HELLO", "4"),
    ]
    results = []
    for server in (redis_ref, shoal):
        r = client(server, protocol=protocol, decode_responses=True)
        r.set("py:str", "hello")
        results.append([outcome(lambda: c(r)) for c in calls])
    assert results[1] == results[0]


def test_resp3_types_and_hello(any_resp):
    r = client(any_resp, protocol=3)
    hello = r.execute_command("HELLO", "3")
    assert hello[b"proto"] == 3
    assert set(hello) == {b"server", b"version", b"proto", b"id", b"mode", b"role", b"modules"}
    r.set("py3:k", "v")
    assert r.get("py3:k") == b"v"
    assert r.get("py3:none") is None
    assert r.exists("py3:k") == 1
    assert r.incrbyfloat("py3:f", 0.5) == 0.5
    hello2 = client(any_resp, protocol=2).execute_command("HELLO", "2")
    assert isinstance(hello2, list) and len(hello2) == 14
    assert dict(zip(hello2[::2], hello2[1::2]))[b"proto"] == 2


def test_connection_handshake(shoal, redis_ref):
    # redis-py sends HELLO 3, CLIENT SETNAME and CLIENT SETINFO LIB-NAME/LIB-VER on connect
    # (SETINFO errors are tolerated by redis-py because redis 7.0 lacks it).
    for server in (redis_ref, shoal):
        r = client(server, protocol=3, client_name="pytest-conn", lib_name="redis-py", lib_version="5.0.8")
        assert r.ping() is True
        assert r.client_getname() == b"pytest-conn"
    res = []
    for server in (redis_ref, shoal):
        r = client(server, decode_responses=True)
        res.append(
            [
                outcome(lambda: r.execute_command("CLIENT", "SETNAME", "bad name")),
                outcome(lambda: r.execute_command("CLIENT", "GETNAME")),
                outcome(lambda: type(r.client_id()).__name__),
            ]
        )
    assert res[1] == res[0]
    # Documented exception: CLIENT SETINFO is a Redis 7.2 command that Shoal supports
    # (the issue requires it); the reference redis-server 7.0 answers "unknown subcommand".
    r = client(shoal, decode_responses=True)
    assert r.execute_command("CLIENT", "SETINFO", "LIB-NAME", "redis-py") == "OK"
    assert r.execute_command("CLIENT", "SETINFO", "LIB-VER", "5.0.8") == "OK"
    info = r.execute_command("CLIENT", "INFO")
    assert "lib-name=redis-py" in info and "lib-ver=5.0.8" in info


@pytest.mark.parametrize("protocol", [2, 3])
def test_pipeline_of_1000_commands(shoal, redis_ref, protocol):
    def workload(server):
        r = client(server, protocol=protocol, decode_responses=True)
        r.flushall()
        p = r.pipeline(transaction=False)
        for i in range(250):
            k = f"pipe:{i % 17}"
            p.set(k, i)
            p.incr(k)
            p.append(k, "x")
            p.get(k)
        res = p.execute(raise_on_error=False)
        assert len(res) == 1000
        return [x if not isinstance(x, Exception) else ("error", str(x)) for x in res]

    assert workload(shoal) == workload(redis_ref)


def test_pipeline_many_gets(any_resp):
    r = client(any_resp, decode_responses=True)
    r.mset({f"bulk:{i}": str(i) for i in range(1000)})
    p = r.pipeline(transaction=False)
    for i in range(1000):
        p.get(f"bulk:{i}")
    assert p.execute() == [str(i) for i in range(1000)]
