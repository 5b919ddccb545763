"""pymemcache against shoal-server's memcache port (and the same test against memcached)."""

from pymemcache.client.base import Client


def client(server):
    return Client(("127.0.0.1", server.mc_port), connect_timeout=5, timeout=5, default_noreply=False)


def test_pymemcache_commands(any_mc):
    c = client(any_mc)
    assert c.flush_all() is True
    assert c.set("pm:a", b"hello") is True
    assert c.get("pm:a") == b"hello"
    assert c.get("pm:missing") is None
    assert c.set("pm:f", b"x", flags=42) is True
    assert c.get("pm:f") == b"x"
    raw = c.raw_command(b"get pm:f", b"END")
    assert raw.startswith(b"VALUE pm:f 42 1\r\nx\r\n")
    assert c.add("pm:a", b"other") is False
    assert c.add("pm:b", b"b") is True
    assert c.replace("pm:missing", b"r") is False
    assert c.append("pm:a", b"!") is True
    assert c.prepend("pm:a", b">") is True
    assert c.get_many(["pm:a", "pm:b", "pm:missing"]) == {"pm:a": b">hello!", "pm:b": b"b"}
    value, cas = c.gets("pm:a")
    assert value == b">hello!" and cas is not None
    assert c.cas("pm:a", b"new", cas) is True
    assert c.cas("pm:a", b"newer", cas) is False
    assert c.cas("pm:missing", b"v", b"1") is None
    assert c.get("pm:a") == b"new"
    assert c.set("pm:n", b"10") is True
    assert c.incr("pm:n", 5) == 15
    assert c.decr("pm:n", 20) == 0
    assert c.incr("pm:missing", 1) is None
    assert c.touch("pm:n", 100) is True
    assert c.touch("pm:missing", 100) is False
    assert c.delete("pm:n") is True
    assert c.delete("pm:n", noreply=False) is False
    assert c.set_many({"pm:x": b"1", "pm:y": b"2"}) == []
    assert c.get_many(["pm:x", "pm:y"]) == {"pm:x": b"1", "pm:y": b"2"}
    stats = c.stats()
    for name in (b"pid", b"uptime", b"curr_items", b"total_items", b"get_hits", b"get_misses", b"cmd_get", b"cmd_set"):
        assert name in stats, name
    assert c.version()
    assert c.flush_all() is True
    assert c.get("pm:x") is None
    c.close()


def test_pymemcache_matches_memcached(shoal_memcache, memcached_ref):
    def workload(server):
        c = client(server)
        c.flush_all()
        out = []
        for i in range(200):
            k = f"pmw:{i % 13}"
            out.append(c.set(k, str(i).encode(), flags=i % 3))
            out.append(c.incr(k, 7))
            out.append(c.append(k, b"x"))
            out.append(c.incr(k, 1) if i % 5 else c.decr(k, 1000))
            out.append(c.get(k))
        out.append(sorted(c.get_many([f"pmw:{i}" for i in range(13)]).items()))
        c.close()
        return out

    ref = _safe(workload, memcached_ref)
    got = _safe(workload, shoal_memcache)
    assert got == ref


def _safe(fn, server):
    try:
        return fn(server)
    except Exception as e:  # compare the failure too
        return ("exception", type(e).__name__, str(e))
