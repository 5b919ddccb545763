"""Replication with redis-py and pymemcache: a primary and a replica started as
real shoal-server processes; writes on the primary (both protocols) are read
back from the replica; ROLE, WAIT, INFO and the read-only replica behave as in Redis.
"""

import subprocess
import tempfile
import time

import pytest
import redis
from pymemcache.client.base import Client as McClient

from conftest import free_port, resp_ready, shoal_bin

DEADLINE = 10.0


def start(extra=()):
    port, mc = free_port(), free_port()
    d = tempfile.mkdtemp(prefix="shoal-pyrepl-")
    proc = subprocess.Popen(
        [str(shoal_bin()), "--bind", "127.0.0.1", "--port", str(port),
         "--memcache-port", str(mc), "--threads", "2", "--dir", d, *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end and not resp_ready(port):
        time.sleep(0.02)
    assert resp_ready(port), "shoal-server did not start"
    return proc, port, mc


def until(what, fn):
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        if fn():
            return
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def pair():
    procs = []
    try:
        p = start()
        procs.append(p[0])
        r = start(["--replicaof", f"127.0.0.1 {p[1]}"])
        procs.append(r[0])
        yield p, r
    finally:
        for pr in procs:
            pr.kill()
            pr.wait()


def test_replica_follows_both_protocols(pair):
    (_, pport, pmc), (_, rport, rmc) = pair
    prim = redis.Redis(port=pport, decode_responses=True, socket_timeout=5)
    rep = redis.Redis(port=rport, decode_responses=True, socket_timeout=5)
    until("link up", lambda: rep.info("replication")["master_link_status"] == "up")
    prim.set("py:s", "v", ex=100)
    prim.hset("py:h", mapping={"a": "1", "b": "2"})
    prim.rpush("py:l", 1, 2, 3)
    McClient(("127.0.0.1", pmc)).set("py:mc", b"memcache", expire=0)
    assert prim.wait(1, 5000) == 1
    assert rep.get("py:s") == "v"
    assert 0 < rep.ttl("py:s") <= 100
    assert rep.hgetall("py:h") == {"a": "1", "b": "2"}
    assert rep.lrange("py:l", 0, -1) == ["1", "2", "3"]
    assert McClient(("127.0.0.1", rmc)).get("py:mc") == b"memcache"
    assert prim.execute_command("DEBUG", "DIGEST") == rep.execute_command("DEBUG", "DIGEST")
    role = rep.execute_command("ROLE")
    assert role[0] == "slave" and role[3] == "connected"
    assert prim.execute_command("ROLE")[0] == "master"
    with pytest.raises(redis.ReadOnlyError):
        rep.set("py:x", "1")
    info = prim.info("replication")
    assert info["role"] == "master" and info["connected_slaves"] == 1
    assert rep.info("replication")["role"] == "slave"


def test_promotion(pair):
    (pproc, pport, _), (_, rport, _) = pair
    prim = redis.Redis(port=pport, decode_responses=True, socket_timeout=5)
    rep = redis.Redis(port=rport, decode_responses=True, socket_timeout=5)
    until("link up", lambda: rep.info("replication")["master_link_status"] == "up")
    prim.set("py:k", "1")
    assert prim.wait(1, 5000) == 1
    pproc.kill()
    pproc.wait()
    assert rep.execute_command("REPLICAOF", "NO", "ONE") == "OK"
    assert rep.set("py:k2", "2") is True
    assert rep.get("py:k") == "1"
    assert rep.info("replication")["role"] == "master"
