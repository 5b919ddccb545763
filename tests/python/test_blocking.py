"""Blocking list commands (BLPOP, BRPOP, BLMOVE, BLMPOP) with several concurrent redis-py
clients, run against shoal-server and against redis-server.

Readiness without sleeps: every blocking call is pipelined right behind an INCR of a
marker key, so the marker shows the server has reached the blocking command; on servers
that report `blocked_clients` in INFO the helper then waits for that count. A server that
does not report it gets a short bounded grace instead. Every wait is bounded.
"""

import socket
import threading
import time

import pytest
import redis

WAIT = 5.0  # upper bound of any readiness wait, seconds
GRACE = 0.25  # after the marker, for servers that do not report blocked_clients


def client(server, **kw):
    kw.setdefault("socket_timeout", 10)
    return redis.Redis(host="127.0.0.1", port=server.port, decode_responses=True, **kw)


def norm(res):
    """Replies of BLPOP & co. as plain lists (redis-py versions differ on tuple/list)."""
    if isinstance(res, (list, tuple)):
        return [norm(x) for x in res]
    return res


class Blocked:
    """Runs `INCR marker` + one blocking command in a pipeline on its own connection."""

    def __init__(self, server, marker, *args):
        self.conn = client(server)
        self.result = None
        self.error = None
        self.elapsed = None
        self.marker = marker

        def run():
            start = time.monotonic()
            try:
                p = self.conn.pipeline(transaction=False)
                p.incr(marker)
                p.execute_command(*args)
                self.result = norm(p.execute()[1])
            except Exception as e:  # surfaced by join()
                self.error = e
            self.elapsed = time.monotonic() - start

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout=WAIT):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "blocked call did not return in time"
        self.conn.close()
        if self.error is not None:
            raise self.error
        return self.result

    def pending(self):
        return self.thread.is_alive()


def blocked_count(ctl):
    return int(ctl.info("clients").get("blocked_clients", 0))


def wait_blocked(ctl, marker, n):
    """Waits until the command behind `marker` was reached and, where reported, until
    `n` clients are blocked."""
    deadline = time.monotonic() + WAIT
    while ctl.get(marker) is None:
        assert time.monotonic() < deadline, f"marker {marker} never set"
        time.sleep(0.002)
    grace_end = time.monotonic() + GRACE
    while time.monotonic() < grace_end:
        if blocked_count(ctl) >= n:
            return
        time.sleep(0.002)


def block(server, ctl, marker, n, *args):
    b = Blocked(server, marker, *args)
    wait_blocked(ctl, marker, n)
    return b


@pytest.fixture
def ctl(any_resp):
    r = client(any_resp)
    r.flushall()
    yield r
    r.close()


def test_two_clients_served_in_blocking_order(any_resp, ctl):
    a = block(any_resp, ctl, "m:a", 1, "BLPOP", "q", "0")
    b = block(any_resp, ctl, "m:b", 2, "BLPOP", "q", "0")
    assert ctl.rpush("q", "x", "y") == 2
    assert a.join() == ["q", "x"]
    assert b.join() == ["q", "y"]
    assert ctl.exists("q") == 0


def test_one_push_wakes_only_the_first(any_resp, ctl):
    a = block(any_resp, ctl, "m:a", 1, "BRPOP", "q", "0")
    b = block(any_resp, ctl, "m:b", 2, "BRPOP", "q", "0")
    ctl.lpush("q", "first")
    assert a.join() == ["q", "first"]
    # b stays blocked until the next push.
    deadline = time.monotonic() + 0.2
    while time.monotonic() < deadline:
        assert b.pending()
        time.sleep(0.01)
    ctl.lpush("q", "second")
    assert b.join() == ["q", "second"]


def test_push_from_another_connection_wakes_multi_key_pop(any_resp, ctl):
    a = block(any_resp, ctl, "m:a", 1, "BLPOP", "q1", "q2", "10")
    other = client(any_resp)
    other.rpush("q2", "v1", "v2")
    other.close()
    assert a.join() == ["q2", "v1"]
    assert ctl.lrange("q2", 0, -1) == ["v2"]


def test_blmove_wakes_and_moves(any_resp, ctl):
    a = block(any_resp, ctl, "m:a", 1, "BLMOVE", "src", "dst", "LEFT", "RIGHT", "10")
    ctl.rpush("dst", "d0")
    ctl.rpush("src", "s0", "s1")
    assert a.join() == "s0"
    assert ctl.lrange("src", 0, -1) == ["s1"]
    assert ctl.lrange("dst", 0, -1) == ["d0", "s0"]


def test_brpoplpush_chain(any_resp, ctl):
    # b waits on the list a pushes to: one push travels through both.
    a = block(any_resp, ctl, "m:a", 1, "BRPOPLPUSH", "q1", "q2", "10")
    b = block(any_resp, ctl, "m:b", 2, "BLPOP", "q2", "10")
    ctl.rpush("q1", "x")
    assert a.join() == "x"
    assert b.join() == ["q2", "x"]
    assert ctl.exists("q1", "q2") == 0


def test_blmpop_count(any_resp, ctl):
    a = block(any_resp, ctl, "m:a", 1, "BLMPOP", "0", "2", "q1", "q2", "RIGHT", "COUNT", "2")
    ctl.rpush("q2", "a", "b", "c")
    assert a.join() == ["q2", ["c", "b"]]
    assert ctl.lrange("q2", 0, -1) == ["a"]


@pytest.mark.parametrize(
    "args,expected",
    [
        (("BLPOP", "none", "0.1"), None),
        (("BRPOP", "none", "none2", "0.1"), None),
        (("BLMOVE", "none", "dst", "LEFT", "LEFT", "0.1"), None),
        (("BRPOPLPUSH", "none", "dst", "0.1"), None),
        (("BLMPOP", "0.1", "1", "none", "LEFT"), None),
    ],
)
def test_timeouts(any_resp, ctl, args, expected):
    a = Blocked(any_resp, "m:t", *args)
    assert a.join() == expected
    assert 0.09 <= a.elapsed < 3.0, a.elapsed
    assert ctl.exists("dst") == 0


def test_timeout_then_connection_still_usable(any_resp, ctl):
    r = client(any_resp)
    assert r.blpop(["none"], timeout=0.05) is None
    assert r.ping() is True
    r.rpush("q", "v")
    assert norm(r.blpop(["q"], timeout=0.05)) == ["q", "v"]
    r.close()


def enc(parts):
    out = b"*%d\r\n" % len(parts)
    for p in parts:
        p = p.encode()
        out += b"$%d\r\n%s\r\n" % (len(p), p)
    return out


def raw_blocked(server, ctl, marker, n, *args):
    """A raw socket client blocked on a command (so it can vanish abruptly).
    Returns (socket, client id)."""
    s = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
    s.sendall(enc(["CLIENT", "ID"]) + enc(["INCR", marker]) + enc(list(args)))
    got = b""
    while got.count(b"\r\n") < 2:
        chunk = s.recv(256)
        assert chunk, "connection closed early"
        got += chunk
    client_id = int(got.split(b"\r\n")[0][1:])
    wait_blocked(ctl, marker, n)
    return s, client_id


def wait_gone(ctl, client_id):
    """Waits until the server dropped client `client_id` (CLIENT LIST no longer has it)."""
    deadline = time.monotonic() + WAIT
    needle = f"id={client_id} "
    while any(line.startswith(needle) for line in ctl.execute_command("CLIENT", "LIST").splitlines()):
        assert time.monotonic() < deadline, f"client {client_id} still listed"
        time.sleep(0.002)


def test_disconnected_client_does_not_swallow_push(any_resp, ctl):
    gone, gone_id = raw_blocked(any_resp, ctl, "m:gone", 1, "BLPOP", "q", "0")
    b = block(any_resp, ctl, "m:b", 2, "BLPOP", "q", "0")
    gone.close()
    wait_gone(ctl, gone_id)
    # The first waiter left: the push goes to the second one, not into the void.
    ctl.rpush("q", "x")
    assert b.join() == ["q", "x"]
    assert ctl.exists("q") == 0


def test_disconnected_only_waiter_leaves_data(any_resp, ctl):
    gone, gone_id = raw_blocked(any_resp, ctl, "m:gone", 1, "BLMOVE", "q", "dst", "LEFT", "LEFT", "0")
    gone.close()
    wait_gone(ctl, gone_id)
    assert ctl.rpush("q", "x") == 1
    later = block(any_resp, ctl, "m:later", 1, "BLPOP", "q", "5")
    assert later.join() == ["q", "x"]
    assert ctl.exists("dst") == 0


def test_blocked_in_multi_returns_immediately(any_resp, ctl):
    p = ctl.pipeline(transaction=True)
    p.blpop(["none"], timeout=0)
    p.brpoplpush("none", "dst", timeout=0)
    p.rpush("q", "a")
    p.blpop(["q"], timeout=0)
    start = time.monotonic()
    res = p.execute()
    assert time.monotonic() - start < 2.0
    assert norm(res) == [None, None, 1, ["q", "a"]]


def test_many_waiters_each_get_one(any_resp, ctl):
    waiters = [block(any_resp, ctl, f"m:{i}", i + 1, "BLPOP", "q", "10") for i in range(5)]
    ctl.rpush("q", *[f"v{i}" for i in range(5)])
    got = [w.join() for w in waiters]
    assert got == [["q", f"v{i}"] for i in range(5)]


def test_fifo_kept_across_single_pushes(any_resp, ctl):
    # Serving a waiter empties the list; the wake-ups that causes must not reorder the rest.
    waiters = [block(any_resp, ctl, f"m:{i}", i + 1, "BLPOP", "q", "10") for i in range(3)]
    for i in range(3):
        ctl.rpush("q", f"v{i}")
        assert waiters[i].join() == ["q", f"v{i}"]
