#!/usr/bin/env python3
"""Polls `SHOAL RESHARD STATUS` for bench/reshard.sh over one connection.

The shell loop it replaces forked a dozen processes (redis-cli, awk, date...) per poll
on the load generator's core, which showed up as client latency during every move.

    status_poll.py PORT CSV T0 DEADLINE POLL_MS PROXY_PID

Appends `unix_s,t_seconds,state,keys_moved,bytes_moved,keys_scanned,keys_total,
elapsed_seconds` rows to CSV until the state is done or failed, the proxy process is
gone, or the unix time DEADLINE passes. Prints one line at the end:
`T_DONE FINAL_STATE KEYS_MOVED BYTES_MOVED` (T_DONE `-` when unfinished), then the last
`error:` field of STATUS on a second line.
"""
import os
import socket
import sys
import time


def read_reply(sock, buf):
    """One RESP bulk (or simple/error) reply; returns (text, rest of buffer)."""
    while b"\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    line, _, rest = buf.partition(b"\r\n")
    if line[:1] != b"$":
        return line[1:].decode(errors="replace"), rest
    n = int(line[1:])
    if n < 0:
        return "", rest
    while len(rest) < n + 2:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        rest += chunk
    return rest[:n].decode(errors="replace"), rest[n + 2:]


def main():
    port, csv, t0, deadline, poll_ms, pid = sys.argv[1:7]
    t0, deadline, poll = float(t0), float(deadline), int(poll_ms) / 1000.0
    req = b"*3\r\n$5\r\nSHOAL\r\n$7\r\nRESHARD\r\n$6\r\nSTATUS\r\n"
    sock = socket.create_connection(("127.0.0.1", int(port)), timeout=5)
    buf = b""
    last_error = ""
    with open(csv, "a", buffering=1) as out:
        while True:
            try:
                sock.sendall(req)
                text, buf = read_reply(sock, buf)
            except (OSError, ValueError):
                text = ""
            t = time.time()
            v = {}
            for line in text.replace("\r", "").split("\n"):
                k, sep, val = line.partition(":")
                if sep:
                    v[k] = val
            state = v.get("state", "")
            if state:
                last_error = v.get("error", "")
                out.write("%.6f,%.3f,%s,%s,%s,%s,%s,%s\n" % (
                    t, t - t0, state, v.get("keys_moved", "0"), v.get("bytes_moved", "0"),
                    v.get("keys_scanned", "0"), v.get("keys_total", "0"),
                    v.get("elapsed_seconds", "0")))
                if state in ("done", "failed"):
                    print("%.6f %s %s %s" % (t, state, v.get("keys_moved", "0"), v.get("bytes_moved", "0")))
                    print(last_error)
                    return
            try:
                os.kill(int(pid), 0)
            except OSError:
                print("- proxy-died 0 0")
                print(last_error)
                return
            if t > deadline:
                print("- unfinished %s %s" % (v.get("keys_moved", "0"), v.get("bytes_moved", "0")))
                print(last_error)
                return
            time.sleep(poll)


if __name__ == "__main__":
    main()
