#!/usr/bin/env bash
# Replication benchmark (issue #4), all on loopback:
#  1. primary throughput and CPU per op without replicas vs with 2 replicas attached
#     (primary pinned to core 0, redis-benchmark SET -P 16 on core 1, replicas on core 1);
#  2. replication lag under a paced 50k writes/s load: a probe writes a sequence number
#     to the primary and times until a replica returns it (p50/p99/max over the probes);
#  3. full-sync time of ~1 GB (1M keys x 1000 B) for shoal and for redis-server.
#
#   bash bench/replication.sh [--no-build]
# Env: SYNC_KEYS (default 1000000), SYNC_VALUE (1000), LAG_SECONDS (10), N (1000000).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap cleanup_started EXIT

SYNC_KEYS=${SYNC_KEYS:-1000000}
SYNC_VALUE=${SYNC_VALUE:-1000}
LAG_SECONDS=${LAG_SECONDS:-10}
N=${N:-1000000}
BASE=${BASE_PORT:-7900}
CLK=$(getconf CLK_TCK)

if [[ ${1:-} != --no-build ]]; then
    (cd "$ROOT" && cargo build --release -p shoal-server -p shoal-bench >&2)
fi
ORIG_SHOAL_BIN=$SHOAL_SERVER_BIN
use_private_shoal_copy
LOGDIR=$(mktemp -d /tmp/shoal-repl-bench.XXXXXX)

restart_clean() { # stop everything started so far; cleanup also removes the private binary copy
    cleanup_started
    STARTED_PIDS=()
    SHOAL_SERVER_BIN=$ORIG_SHOAL_BIN
    use_private_shoal_copy
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
info_field() { redis-cli -p "$1" INFO replication | tr -d '\r' | awk -F: -v k="$2" '$1 == k { print $2 }'; }
wait_synced() { # PORT TIMEOUT_S: until master_link_status:up and no sync in progress
    local port=$1 deadline=$((SECONDS + $2))
    while ((SECONDS < deadline)); do
        if [[ $(info_field "$port" master_link_status) == up && $(info_field "$port" master_sync_in_progress) == 0 ]]; then
            return 0
        fi
        sleep 0.05
    done
    return 1
}
start_shoal_on() { # PORT CPUS EXTRA...
    local port=$1 cpus=$2
    shift 2
    taskset -c "$cpus" "$SHOAL_SERVER_BIN" --bind 127.0.0.1 --threads 1 --port "$port" --memcache-port 0 \
        --metrics-port 0 --repl-backlog-size 64mb "$@" >"$LOGDIR/shoal-$port.log" 2>&1 &
    STARTED_PIDS+=("$!")
    REPLY_PID=$!
    wait_resp "$port" "$REPLY_PID" || die "shoal on $port did not start"
}
setbench() { # PORT PID -> "ops cpu_us"
    local a b out rps
    a=$(cpu_ticks "$2")
    out=$(taskset -c 1 redis-benchmark -p "$1" -q -c 50 -P 16 -n "$N" -r 100000 -d 32 -t set 2>/dev/null | tr '\r' '\n' | grep 'requests per second' | tail -1)
    b=$(cpu_ticks "$2")
    rps=$(awk '{ for (i = 1; i <= NF; i++) if ($(i+1) == "requests") { print $i; exit } }' <<<"${out#*: }")
    awk -v t=$((b - a)) -v clk="$CLK" -v n="$N" -v r="$rps" 'BEGIN { printf "%s %.3f\n", r, t * 1e6 / clk / n }'
}

echo "## 1. Primary throughput with and without replicas (SET, 50 conns, pipeline 16)"
P=$BASE
start_shoal_on "$P" 0
PPID_=$REPLY_PID
read -r a_ops a_cpu <<<"$(setbench "$P" "$PPID_")"
start_shoal_on $((P + 1)) 1 --replicaof "127.0.0.1 $P"
start_shoal_on $((P + 2)) 1 --replicaof "127.0.0.1 $P"
wait_synced $((P + 1)) 60 && wait_synced $((P + 2)) 60 || die "replicas did not sync"
read -r b_ops b_cpu <<<"$(setbench "$P" "$PPID_")"
read -r c_ops c_cpu <<<"$(setbench "$P" "$PPID_")"
# The same steps for redis-server with two redis-server replicas (reference: on
# this 2-core placement the replicas share the generator's core, which starves
# the generator whichever server it drives).
R1=$((BASE + 30))
start_redis "$R1" "$LOGDIR/redis-r1.log" 0
RPID=$REPLY_PID
read -r ra_ops ra_cpu <<<"$(setbench "$R1" "$RPID")"
for i in 1 2; do
    taskset -c 1 "$REDIS_SERVER_BIN" --bind 127.0.0.1 --port $((R1 + i)) --save '' --appendonly no \
        --replicaof 127.0.0.1 "$R1" >"$LOGDIR/redis-r1-replica$i.log" 2>&1 &
    STARTED_PIDS+=("$!")
    wait_resp $((R1 + i)) "$!" || die "redis replica $i did not start"
    wait_synced $((R1 + i)) 60 || die "redis replica $i did not sync"
done
read -r rb_ops rb_cpu <<<"$(setbench "$R1" "$RPID")"
echo "| primary | ops/s | CPU µs/op |"
echo "|---|---:|---:|"
echo "| shoal, no replicas | $a_ops | $a_cpu |"
echo "| shoal, 2 replicas (run 1) | $b_ops | $b_cpu |"
echo "| shoal, 2 replicas (run 2) | $c_ops | $c_cpu |"
echo "| redis-server, no replicas | $ra_ops | $ra_cpu |"
echo "| redis-server, 2 replicas | $rb_ops | $rb_cpu |"
echo
echo "throughput ratio with/without replicas: shoal $(ratio_of "$b_ops" "$a_ops") / $(ratio_of "$c_ops" "$a_ops"), redis-server $(ratio_of "$rb_ops" "$ra_ops")"
echo "shoal / redis-server ops/s with 2 replicas: $(ratio_of "$b_ops" "$rb_ops") / $(ratio_of "$c_ops" "$rb_ops")"
echo
d1=$(redis-cli -p "$P" DEBUG DIGEST)
wait_until_digest() {
    local deadline=$((SECONDS + 30))
    while ((SECONDS < deadline)); do
        [[ $(redis-cli -p "$1" DEBUG DIGEST) == "$(redis-cli -p "$P" DEBUG DIGEST)" ]] && return 0
        sleep 0.1
    done
    return 1
}
wait_until_digest $((P + 1)) && wait_until_digest $((P + 2)) && echo "replicas converged: digest $d1" || echo "WARNING: replicas did not converge"

echo
echo "## 2. Replication lag under a paced 50k writes/s load"
python3 - "$P" $((P + 1)) "$LAG_SECONDS" <<'EOF'
import socket, sys, threading, time
primary, replica, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
def conn(port):
    s = socket.create_connection(("127.0.0.1", port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1); return s
stop = time.time() + seconds
def load():
    # 50k SET/s paced in 10 ms batches of 500 on 4 connections.
    socks = [conn(primary) for _ in range(4)]
    batch = b"".join(b"*3\r\n$3\r\nSET\r\n$9\r\nload:%04d\r\n$32\r\n%s\r\n" % (i, b"v" * 32) for i in range(125))
    nxt = time.time()
    while time.time() < stop:
        for s in socks:
            s.sendall(batch)
        for s in socks:
            need, got = 125 * 5, 0
            while got < need:
                got += len(s.recv(65536))
        nxt += 0.01
        d = nxt - time.time()
        if d > 0: time.sleep(d)
threading.Thread(target=load, daemon=True).start()
p, r = conn(primary), conn(replica)
lags = []
i = 0
while time.time() < stop:
    i += 1
    v = b"%d" % i
    p.sendall(b"*3\r\n$3\r\nSET\r\n$5\r\nprobe\r\n$%d\r\n%s\r\n" % (len(v), v))
    p.recv(64)
    t0 = time.perf_counter()
    want = b"$%d\r\n%s\r\n" % (len(v), v)
    while True:
        r.sendall(b"*2\r\n$3\r\nGET\r\n$5\r\nprobe\r\n")
        if r.recv(64) == want:
            break
        if time.perf_counter() - t0 > 5: break
    lags.append((time.perf_counter() - t0) * 1000)
    time.sleep(0.005)
lags.sort()
q = lambda f: lags[min(len(lags) - 1, int(f * len(lags)))]
print(f"probes: {len(lags)}  lag p50 {q(0.5):.3f} ms  p99 {q(0.99):.3f} ms  max {lags[-1]:.3f} ms")
EOF
restart_clean

echo
echo "## 3. Full sync of $SYNC_KEYS keys x $SYNC_VALUE B"
fill() { # PORT
    taskset -c 1 "$SHOAL_BENCH_BIN" --host 127.0.0.1 --port "$1" --protocol resp --connections 8 \
        --data-size "$SYNC_VALUE" --key-minimum 0 --key-maximum $((SYNC_KEYS - 1)) --load-only >/dev/null 2>&1
}
P=$((BASE + 10))
start_shoal_on "$P" 0
fill "$P"
used=$(redis-cli -p "$P" INFO memory | tr -d '\r' | awk -F: '$1 == "used_memory" { print $2 }')
t0=$(date +%s.%N)
start_shoal_on $((P + 1)) 1 --replicaof "127.0.0.1 $P"
wait_synced $((P + 1)) 600 || die "shoal replica did not finish the full sync"
t1=$(date +%s.%N)
shoal_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
[[ $(redis-cli -p "$P" DEBUG DIGEST) == $(redis-cli -p $((P + 1)) DEBUG DIGEST) ]] && same=yes || same=NO
restart_clean
R=$((BASE + 20))
start_redis "$R" "$LOGDIR/redis-primary.log" 0
fill "$R"
rused=$(redis-cli -p "$R" INFO memory | tr -d '\r' | awk -F: '$1 == "used_memory" { print $2 }')
t0=$(date +%s.%N)
taskset -c 1 "$REDIS_SERVER_BIN" --bind 127.0.0.1 --port $((R + 1)) --save '' --appendonly no --replicaof 127.0.0.1 "$R" \
    >"$LOGDIR/redis-replica.log" 2>&1 &
STARTED_PIDS+=("$!")
wait_resp $((R + 1)) "$!" || die "redis replica did not start"
wait_synced $((R + 1)) 600 || die "redis replica did not finish the full sync"
t1=$(date +%s.%N)
redis_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
echo "| server | used_memory | full sync (s) |"
echo "|---|---:|---:|"
echo "| shoal | $used | $shoal_s (digest equal: $same) |"
echo "| redis-server (disk RDB, default) | $rused | $redis_s |"
echo
echo "shoal / redis full-sync time: $(ratio_of "$shoal_s" "$redis_s")"
rm -rf "$LOGDIR"
