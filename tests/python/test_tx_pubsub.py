"""Transactions and Pub/Sub across several concurrent redis-py clients, run against shoal-server
(started with --threads 2 by conftest) and against redis-server (sanity of each scenario).

Every wait is bounded and polls a server-side condition (a reply, the server clock, a count).
"""

import socket
import threading
import time

import pytest
import redis

WAIT = 10.0


def client(server, **kw):
    kw.setdefault("socket_timeout", WAIT)
    return redis.Redis(host="127.0.0.1", port=server.port, **kw)


def wait_until(cond, what, timeout=WAIT):
    deadline = time.monotonic() + timeout
    delay = 0.001
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def server_ms(r):
    sec, usec = r.time()
    return sec * 1000 + usec // 1000


def try_exec(r, key, value):
    """WATCHed transaction of one SET; True if it ran, False on a WatchError."""
    p = r.pipeline()
    p.watch(key)
    p.multi()
    p.set(key, value)
    try:
        return p.execute() == [True]
    except redis.WatchError:
        return False
    finally:
        p.reset()


# --------------------------------------------------------------------------- transactions


@pytest.mark.parametrize("protocol", [2, 3])
def test_watch_invalidated_by_other_client(any_resp, protocol):
    r1 = client(any_resp, protocol=protocol, decode_responses=True)
    r2 = client(any_resp, protocol=protocol, decode_responses=True)
    r1.flushall()
    r1.set("tx:w", "0")

    # Untouched: the transaction runs.
    assert try_exec(r1, "tx:w", "1") is True
    assert r2.get("tx:w") == "1"

    # Another client writes between WATCH and EXEC: EXEC returns nil.
    p = r1.pipeline()
    p.watch("tx:w")
    assert p.get("tx:w") == "1"
    r2.set("tx:w", "other")
    p.multi()
    p.set("tx:w", "mine")
    with pytest.raises(redis.WatchError):
        p.execute()
    p.reset()
    assert r2.get("tx:w") == "other"

    # A write to a key that does not exist yet also counts.
    p = r1.pipeline()
    p.watch("tx:new")
    r2.set("tx:new", "x")
    p.multi()
    p.set("tx:new", "mine")
    with pytest.raises(redis.WatchError):
        p.execute()
    p.reset()

    # Writes to other keys do not; UNWATCH forgets the watch.
    p = r1.pipeline()
    p.watch("tx:w")
    r2.set("tx:other", "x")
    p.multi()
    p.set("tx:w", "ok")
    assert p.execute() == [True]
    p.reset()
    r1.execute_command("WATCH", "tx:w")
    r2.set("tx:w", "again")
    assert r1.execute_command("UNWATCH") in (True, "OK")
    assert r1.execute_command("MULTI") in (True, "OK")
    assert r1.execute_command("GET", "tx:w") == "QUEUED"
    assert r1.execute_command("EXEC") == ["again"]


def test_watch_invalidated_by_expiry(any_resp):
    r1 = client(any_resp, decode_responses=True)
    r2 = client(any_resp, decode_responses=True)
    r1.flushall()
    at = server_ms(r2) + 150
    r1.set("tx:exp", "v")
    r1.pexpireat("tx:exp", at)
    p = r1.pipeline()
    p.watch("tx:exp")
    # Nobody touches the key: wait on the server's clock until it has expired.
    wait_until(lambda: server_ms(r2) > at + 20, "the key's expiry time to pass")
    p.multi()
    p.set("tx:exp", "mine")
    with pytest.raises(redis.WatchError):
        p.execute()
    p.reset()
    assert r2.get("tx:exp") is None


def test_watch_invalidated_by_flushall(any_resp):
    r1 = client(any_resp, decode_responses=True)
    r2 = client(any_resp, decode_responses=True)
    r1.flushall()
    r1.set("tx:f", "v")
    p = r1.pipeline()
    p.watch("tx:f")
    assert r2.flushall() is True
    p.multi()
    p.set("tx:f", "mine")
    with pytest.raises(redis.WatchError):
        p.execute()
    p.reset()
    assert r2.get("tx:f") is None


def test_exec_errors_and_abort(any_resp):
    r = client(any_resp, decode_responses=True)
    r.flushall()
    r.set("tx:s", "str")
    p = r.pipeline()
    p.incr("tx:n")
    p.lpush("tx:s", "x")
    p.incr("tx:n")
    res = p.execute(raise_on_error=False)
    assert res[0] == 1 and res[2] == 2
    assert isinstance(res[1], redis.ResponseError) and "WRONGTYPE" in str(res[1])
    # A command rejected while queueing aborts the whole transaction.
    assert r.execute_command("MULTI") in (True, "OK")
    assert r.execute_command("INCR", "tx:n") == "QUEUED"
    with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
        r.execute_command("INCR")
    with pytest.raises(redis.exceptions.ExecAbortError):
        r.execute_command("EXEC")
    assert r.get("tx:n") == "2"


def test_multi_exec_is_atomic_across_clients(any_resp):
    """Writers bump two keys together (in transactions) and plain INCR clients hammer a third
    key; readers' transactions must always see the pair equal and the third key unchanged
    between two reads inside one transaction."""
    setup = client(any_resp)
    setup.flushall()
    writers, readers, incrs, rounds = 3, 2, 2, 300
    errors = []
    stop = threading.Event()

    def writer():
        r = client(any_resp)
        try:
            for _ in range(rounds):
                p = r.pipeline(transaction=True)
                p.incr("tx:a")
                p.incr("tx:b")
                p.execute()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"writer: {e!r}")

    def incrementer():
        r = client(any_resp)
        try:
            n = 0
            while not stop.is_set() and n < 100_000:
                r.incr("tx:c")
                n += 1
        except Exception as e:  # noqa: BLE001
            errors.append(f"incr: {e!r}")

    def reader(seen):
        r = client(any_resp)
        try:
            while not stop.is_set():
                p = r.pipeline(transaction=True)
                p.get("tx:a")
                p.get("tx:b")
                p.get("tx:c")
                p.get("tx:c")
                a, b, c1, c2 = p.execute()
                seen.append(1)
                if a != b or c1 != c2:
                    errors.append(f"not atomic: a={a} b={b} c={c1}/{c2}")
                    return
        except Exception as e:  # noqa: BLE001
            errors.append(f"reader: {e!r}")

    seen = []
    threads = [threading.Thread(target=writer) for _ in range(writers)]
    bg = [threading.Thread(target=reader, args=(seen,)) for _ in range(readers)]
    bg += [threading.Thread(target=incrementer) for _ in range(incrs)]
    for t in bg + threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    stop.set()
    for t in bg:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads + bg), "client threads did not finish"
    assert not errors, errors[:5]
    assert seen, "no reader transaction completed"
    assert setup.get("tx:a") == setup.get("tx:b") == str(writers * rounds).encode()


def test_watch_retry_loop_counts_exactly(any_resp):
    """Optimistic-locking increments from several clients: none is lost."""
    client(any_resp).flushall()
    clients, per_client = 4, 50
    errors = []

    def worker():
        r = client(any_resp)
        try:
            done = 0
            for _ in range(per_client * 200):
                if done == per_client:
                    return
                p = r.pipeline()
                p.watch("tx:cas")
                v = int(p.get("tx:cas") or 0)
                p.multi()
                p.set("tx:cas", v + 1)
                try:
                    p.execute()
                    done += 1
                except redis.WatchError:
                    pass
                finally:
                    p.reset()
            errors.append("too many retries")
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors[:5]
    assert client(any_resp).get("tx:cas") == str(clients * per_client).encode()


# --------------------------------------------------------------------------- pub/sub


def next_message(p, timeout=WAIT):
    """The next pub/sub message (including subscribe confirmations), bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = p.get_message(timeout=min(0.5, max(0.01, deadline - time.monotonic())))
        if m is not None:
            return m
    pytest.fail("no pub/sub message within the time limit")


@pytest.mark.parametrize("sub_proto", [2, 3])
@pytest.mark.parametrize("pub_proto", [2, 3])
def test_pubsub_across_connections(any_resp, sub_proto, pub_proto):
    sub = client(any_resp, protocol=sub_proto, decode_responses=True)
    pub = client(any_resp, protocol=pub_proto, decode_responses=True)
    pub.flushall()
    p = sub.pubsub()
    p.subscribe("ps:news", "ps:other")
    p.psubscribe("ps:n*")
    got = [next_message(p) for _ in range(3)]
    assert [(m["type"], m["channel"], m["data"]) for m in got] == [
        ("subscribe", "ps:news", 1),
        ("subscribe", "ps:other", 2),
        ("psubscribe", "ps:n*", 3),
    ]
    assert pub.publish("ps:news", "hello") == 2
    assert pub.publish("ps:nothing", "pat-only") == 1
    assert pub.publish("ps:other", "x" * 100_000) == 1
    assert pub.publish("ps:nobody", "lost") == 1  # matches ps:n*
    assert pub.publish("zz", "lost") == 0
    msgs = [next_message(p) for _ in range(5)]
    simple = [(m["type"], m["pattern"], m["channel"], m["data"]) for m in msgs]
    assert simple == [
        ("message", None, "ps:news", "hello"),
        ("pmessage", "ps:n*", "ps:news", "hello"),
        ("pmessage", "ps:n*", "ps:nothing", "pat-only"),
        ("message", None, "ps:other", "x" * 100_000),
        ("pmessage", "ps:n*", "ps:nobody", "lost"),
    ]
    assert pub.pubsub_numsub("ps:news", "ps:other", "ps:none") == [("ps:news", 1), ("ps:other", 1), ("ps:none", 0)]
    assert pub.pubsub_numpat() == 1
    assert sorted(pub.pubsub_channels()) == ["ps:news", "ps:other"]
    assert pub.pubsub_channels("ps:o*") == ["ps:other"]

    p.unsubscribe("ps:other")
    m = next_message(p)
    assert (m["type"], m["channel"], m["data"]) == ("unsubscribe", "ps:other", 2)
    assert pub.publish("ps:other", "gone") == 0
    p.punsubscribe()
    m = next_message(p)
    assert (m["type"], m["channel"], m["data"]) == ("punsubscribe", "ps:n*", 1)
    assert pub.pubsub_numpat() == 0
    p.close()
    # The registry forgets a closed subscriber.
    wait_until(lambda: pub.pubsub_numsub("ps:news") == [("ps:news", 0)], "NUMSUB to drop to 0")
    assert pub.pubsub_channels() == []


def test_many_subscribers_and_binary_payloads(any_resp):
    pub = client(any_resp)
    subs = []
    for i in range(6):
        s = client(any_resp, protocol=2 + i % 2).pubsub()
        s.subscribe("ps:fan")
        assert next_message(s)["type"] == "subscribe"
        subs.append(s)
    payload = bytes(range(256)) + b"\r\n$-1\r\n"
    assert pub.publish("ps:fan", payload) == 6
    for s in subs:
        m = next_message(s)
        assert (m["type"], m["channel"], m["data"]) == ("message", b"ps:fan", payload)
        s.close()


def read_reply_line(sock, buf=b""):
    while b"\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def rss(r):
    return int(r.info("memory")["used_memory_rss"])


def test_slow_subscriber_is_disconnected(any_resp):
    """A subscriber that never reads is dropped once its backlog passes the pubsub output
    buffer limit (32 MB) and the server's memory does not keep growing."""
    pub = client(any_resp)
    pub.flushall()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.settimeout(WAIT)
    sock.connect(("127.0.0.1", any_resp.port))
    try:
        sock.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$7\r\nps:slow\r\n")
        # Wait for the subscribe confirmation, then never read again.
        buf = b""
        while buf.count(b"\r\n") < 6:
            chunk = sock.recv(4096)
            assert chunk, "closed before confirming the subscription"
            buf += chunk
        assert pub.pubsub_numsub("ps:slow") == [(b"ps:slow", 1)]
        before = rss(pub)
        msg = b"m" * (64 * 1024)
        sent = 0
        # 32 MB of backlog plus socket buffers is well under 100 MB of messages.
        for _ in range(1600):
            pub.publish("ps:slow", msg)
            sent += 1
            if sent % 16 == 0 and pub.pubsub_numsub("ps:slow") == [(b"ps:slow", 0)]:
                break
        wait_until(lambda: pub.pubsub_numsub("ps:slow") == [(b"ps:slow", 0)], "the slow subscriber to be dropped")
        assert sent * len(msg) < 100 * 1024 * 1024
        grown = rss(pub) - before
        assert grown < 160 * 1024 * 1024, f"RSS grew by {grown} bytes"
        # Publishing more does not reach it or grow memory further.
        for _ in range(200):
            assert pub.publish("ps:slow", msg) == 0
        grown = rss(pub) - before
        assert grown < 160 * 1024 * 1024, f"RSS grew by {grown} bytes"
        # Draining the socket ends in EOF (or a reset): the server closed the connection.
        total, deadline = 0, time.monotonic() + WAIT
        closed = False
        while time.monotonic() < deadline and total < 256 * 1024 * 1024:
            try:
                chunk = sock.recv(1 << 20)
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            total += len(chunk)
        assert closed, f"connection still open after reading {total} bytes"
    finally:
        sock.close()
    assert pub.ping() is True
