#!/usr/bin/env python3
"""Wall time of one large MGET, per target, on one connection each (bench/proxy.sh, part 2).

    python3 bench/mget_latency.py CONFIG.json OUT.json

CONFIG: {"sizes": [1000, 3000], "iterations": 2000, "max_seconds": 60, "block": 50,
         "warmup": 20, "key_maximum": 100000, "key_prefix": "key:", "seed": 42,
         "targets": [{"name": "direct", "port": 16394, "pid": 123, "backend_pids": []}, ...]}
The first target is the reference (the reply every other target must match byte for byte).

Method: the MGET request is encoded once per size (keys: a fixed random sample without
repetition of key_prefix + %010d over 0..key_maximum, the same keys for every target).
A timed request is sendall(request) then recv_into a preallocated buffer until exactly
the reference reply's length has arrived (no parsing on the timed path), timed with
perf_counter_ns around both. Every reply is compared byte for byte with the reference
after the clock stops. Targets are interleaved in blocks of `block` requests (the order
rotates each round) until each has `iterations` requests or `max_seconds` have passed
for that size, so a burst of outside load hits every target alike. CPU of the target's
process (and of its backends) is read from /proc/PID/stat around each block and
summed over that target's blocks only; so is others_cpu_pct, the CPU that processes
outside the benchmark (not a target, not a backend, not in "our_pids", not this
client) used meanwhile, from /proc/stat, in % of one core. Loopback only.
"""

import json
import os
import random
import socket
import statistics
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def ticks(pid):
    with open(f"/proc/{pid}/stat", "rb") as f:
        s = f.read()
    fields = s[s.rindex(b")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def cpu_busy():
    """user+nice+system ticks of all CPUs (/proc/stat), irq/softirq left out."""
    with open("/proc/stat", "rb") as f:
        fields = f.readline().split()
    return int(fields[1]) + int(fields[2]) + int(fields[3])


def ours(pids):
    total = 0
    for p in pids:
        try:
            total += ticks(p)
        except OSError:
            pass
    t = os.times()
    return total + (t.user + t.system) * CLK_TCK


def encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def parse_len(buf, i=0):
    """Length of one complete RESP2 value at buf[i:], or None if incomplete."""
    end = buf.find(b"\r\n", i)
    if end < 0:
        return None
    t = buf[i:i + 1]
    if t in (b"+", b"-", b":"):
        return end + 2 - i
    n = int(buf[i + 1:end])
    if t == b"$":
        if n < 0:
            return end + 2 - i
        return end + 2 + n + 2 - i if len(buf) >= end + 2 + n + 2 else None
    if t == b"*":
        j = end + 2
        for _ in range(max(n, 0)):
            k = parse_len(buf, j)
            if k is None:
                return None
            j += k
        return j - i
    raise ValueError(f"unexpected reply byte {t!r}")


def read_reply(sock):
    buf = bytearray()
    while True:
        if buf:
            n = parse_len(bytes(buf))
            if n is not None:
                return bytes(buf[:n])
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def pct(sorted_xs, p):
    if not sorted_xs:
        return None
    k = min(len(sorted_xs) - 1, max(0, int(round(p / 100.0 * len(sorted_xs) + 0.5)) - 1))
    return sorted_xs[k]


def main():
    cfg = json.load(open(sys.argv[1]))
    out_path = sys.argv[2]
    rng = random.Random(cfg.get("seed", 42))
    kmax = cfg["key_maximum"]
    prefix = cfg.get("key_prefix", "key:").encode()
    sample = rng.sample(range(kmax + 1), max(cfg["sizes"]))
    # every long-lived process of the benchmark (for others_cpu_pct)
    our_pids = set(cfg.get("our_pids", []))
    for t in cfg["targets"]:
        our_pids.add(t["pid"])
        our_pids.update(t.get("backend_pids", []))
    results = []
    for size in cfg["sizes"]:
        keys = [prefix + b"%010d" % k for k in sample[:size]]
        req = encode([b"MGET"] + keys)
        conns = {}
        ref = None
        state = {}
        for t in cfg["targets"]:
            st = {"name": t["name"], "times": [], "cpu": 0, "bcpu": 0, "others": 0.0, "wall": 0.0,
                  "error": None}
            state[t["name"]] = st
            try:
                s = connect(t["port"])
                s.sendall(req)
                rep = read_reply(s)
                if ref is None:
                    ref = rep
                    if not rep.startswith(b"*%d\r\n" % size) or b"$-1\r\n" in rep:
                        st["error"] = "reference reply is not %d hits (prefill?)" % size
                elif rep != ref:
                    st["error"] = "reply differs from the reference: %r" % rep[:80]
                if st["error"] is None:
                    conns[t["name"]] = s
            except (OSError, ValueError) as e:
                st["error"] = f"{type(e).__name__}: {e}"
        if ref is None:
            raise SystemExit("the reference target did not answer")
        n = len(ref)
        buf = bytearray(n)
        mv = memoryview(buf)

        def once(s):
            t0 = time.perf_counter_ns()
            s.sendall(req)
            got = 0
            while got < n:
                r = s.recv_into(mv[got:], n - got)
                if r == 0:
                    raise ConnectionError("connection closed")
                got += r
            t1 = time.perf_counter_ns()
            if buf != ref:
                raise ValueError("reply differs from the reference")
            return t1 - t0

        for name, s in list(conns.items()):  # warm-up, untimed
            try:
                for _ in range(cfg.get("warmup", 20)):
                    once(s)
            except (OSError, ValueError) as e:
                state[name]["error"] = f"{type(e).__name__}: {e}"
                del conns[name]
        targets = [t for t in cfg["targets"] if t["name"] in conns]
        block = cfg.get("block", 50)
        iters = cfg["iterations"]
        deadline = time.monotonic() + cfg["max_seconds"]
        rnd = 0
        while time.monotonic() < deadline:
            active = [t for t in targets if t["name"] in conns and len(state[t["name"]]["times"]) < iters]
            if not active:
                break
            rot = rnd % len(active)
            rnd += 1
            for t in active[rot:] + active[:rot]:
                st = state[t["name"]]
                s = conns[t["name"]]
                k = min(block, iters - len(st["times"]))
                c0 = ticks(t["pid"])
                b0 = sum(ticks(p) for p in t.get("backend_pids", []))
                o0, a0, w0 = ours(our_pids), cpu_busy(), time.monotonic()
                try:
                    for _ in range(k):
                        st["times"].append(once(s))
                except (OSError, ValueError) as e:
                    st["error"] = f"{type(e).__name__}: {e}"
                    del conns[t["name"]]
                st["cpu"] += ticks(t["pid"]) - c0
                st["bcpu"] += sum(ticks(p) for p in t.get("backend_pids", [])) - b0
                st["others"] += (cpu_busy() - a0) - (ours(our_pids) - o0)
                st["wall"] += time.monotonic() - w0
                if time.monotonic() >= deadline:
                    break
        for s in conns.values():
            s.close()
        ref_median = None
        for t in cfg["targets"]:
            st = state[t["name"]]
            xs = sorted(st["times"])
            cnt = len(xs)
            row = {
                "keys": size,
                "target": t["name"],
                "reply_bytes": n,
                "iterations": cnt,
                "median_us": statistics.median(xs) / 1000 if xs else None,
                "p90_us": pct(xs, 90) / 1000 if xs else None,
                "p99_us": pct(xs, 99) / 1000 if xs else None,
                "mean_us": sum(xs) / cnt / 1000 if xs else None,
                "cpu_us_per_req": st["cpu"] * 1e6 / CLK_TCK / cnt if cnt else None,
                "backend_cpu_us_per_req": (st["bcpu"] * 1e6 / CLK_TCK / cnt
                                           if cnt and t.get("backend_pids") else None),
                # CPU used by processes outside the benchmark while this target's
                # blocks ran, in % of one core (a busy shared machine shows here).
                "others_cpu_pct": (max(0.0, st["others"]) / CLK_TCK / st["wall"] * 100
                                   if st["wall"] > 0 else None),
                "error": st["error"],
            }
            if ref_median is None:
                ref_median = row["median_us"]
            row["vs_reference"] = (row["median_us"] / ref_median
                                   if row["median_us"] and ref_median else None)
            results.append(row)
            print(json.dumps(row), flush=True)
    with open(out_path, "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
