#!/usr/bin/env bash
# Data-type benchmark (issue #3): redis-server vs shoal-server, each pinned to core 0
# (shoal with --threads 1), redis-benchmark pinned to core 1, interleaved per test.
#
#   bash bench/types.sh [--no-build]
#
# Part 1: redis-benchmark's default test list plus ZADD/ZRANGE 0 100/ZRANK on a
# 100k-member sorted set; reports ops/s, server CPU µs/op (from /proc/PID/stat) and
# shoal/redis ratios, and the geometric mean of the ops/s ratios.
# Part 2: memory: 100k hashes of 10 small fields and one sorted set of 1M members,
# RSS growth of each server.
# Env: REQUESTS (default 200000), CLIENTS (50), PIPELINE (1), REDIS_PORT, SHOAL_PORT.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap cleanup_started EXIT

REQUESTS=${REQUESTS:-200000}
CLIENTS=${CLIENTS:-50}
PIPELINE=${PIPELINE:-1}
REDIS_PORT=${REDIS_PORT:-7811}
SHOAL_PORT=${SHOAL_PORT:-7812}
SHOAL_MC_PORT=${SHOAL_MC_PORT:-7813}
CLK=$(getconf CLK_TCK)

if [[ ${1:-} != --no-build ]]; then
    (cd "$ROOT" && cargo build --release -p shoal-server >&2)
fi
command -v redis-benchmark >/dev/null || die "redis-benchmark not installed (apt-get install redis-tools)"
ORIG_SHOAL_BIN=$SHOAL_SERVER_BIN
use_private_shoal_copy
LOGDIR=$(mktemp -d /tmp/shoal-types.XXXXXX)

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# run_one PORT PID ARGS...: prints "ops_per_sec cpu_us_per_op"
run_one() {
    local port=$1 pid=$2
    shift 2
    local a b out rps
    a=$(cpu_ticks "$pid")
    out=$(taskset -c 1 redis-benchmark -p "$port" -c "$CLIENTS" -P "$PIPELINE" -q "$@" 2>/dev/null | tr '\r' '\n' | grep 'requests per second' | tail -1)
    b=$(cpu_ticks "$pid")
    rps=$(awk '{ for (i = 1; i <= NF; i++) if ($(i+1) == "requests") { print $i; exit } }' <<<"${out#*: }")
    awk -v t=$((b - a)) -v clk="$CLK" -v n="$N" -v r="$rps" 'BEGIN { printf "%s %.2f\n", r, t * 1e6 / clk / n }'
}

start_redis "$REDIS_PORT" "$LOGDIR/redis.log" 0
RPID=$REPLY_PID
start_shoal "$SHOAL_PORT" "$SHOAL_MC_PORT" 1 "$LOGDIR/shoal.log" 0
SPID=$REPLY_PID

# Prefill a 100k-member sorted set in both for ZRANK / ZRANGE.
for port in "$REDIS_PORT" "$SHOAL_PORT"; do
    taskset -c 1 redis-benchmark -p "$port" -q -c 50 -P 64 -n 100000 -r 100000 ZADD bigz __rand_int__ "m:__rand_int__" >/dev/null 2>&1
done

TESTS=(PING_INLINE PING_MBULK SET GET INCR LPUSH RPUSH LPOP RPOP SADD HSET SPOP ZADD ZPOPMIN LRANGE_100 LRANGE_300 LRANGE_500 LRANGE_600 MSET)
echo "| test | redis ops/s | shoal ops/s | ops ratio | redis µs/op | shoal µs/op | CPU ratio |"
echo "|---|---:|---:|---:|---:|---:|---:|"
LOGSUM=0
COUNT=0
report() {
    local name=$1 r=$2 s=$3
    local rops rcpu sops scpu
    read -r rops rcpu <<<"$r"
    read -r sops scpu <<<"$s"
    local ratio cratio
    ratio=$(ratio_of "$sops" "$rops")
    cratio=$(ratio_of "$scpu" "$rcpu")
    echo "| $name | $rops | $sops | $ratio | $rcpu | $scpu | $cratio |"
    if [[ $ratio != "—" ]]; then
        LOGSUM=$(awk -v a="$LOGSUM" -v r="$ratio" 'BEGIN { print a + log(r) }')
        COUNT=$((COUNT + 1))
    fi
}
for t in "${TESTS[@]}"; do
    N=$REQUESTS
    case $t in LRANGE_*) N=$((REQUESTS / 4)) ;; esac
    r=$(run_one "$REDIS_PORT" "$RPID" -n "$N" -r 100000 -t "$t")
    s=$(run_one "$SHOAL_PORT" "$SPID" -n "$N" -r 100000 -t "$t")
    report "$t" "$r" "$s"
done
N=$REQUESTS
r=$(run_one "$REDIS_PORT" "$RPID" -n "$N" -r 100000 ZRANGE bigz 0 100)
s=$(run_one "$SHOAL_PORT" "$SPID" -n "$N" -r 100000 ZRANGE bigz 0 100)
report "ZRANGE bigz 0 100" "$r" "$s"
r=$(run_one "$REDIS_PORT" "$RPID" -n "$N" -r 100000 ZRANK bigz "m:__rand_int__")
s=$(run_one "$SHOAL_PORT" "$SPID" -n "$N" -r 100000 ZRANK bigz "m:__rand_int__")
report "ZRANK bigz (100k)" "$r" "$s"
awk -v a="$LOGSUM" -v n="$COUNT" 'BEGIN { if (n > 0) printf "\nGeometric mean of shoal/redis ops/s over %d tests: %.2f\n", n, exp(a / n) }'

# Part 2: memory.
echo
echo "| dataset | redis RSS growth | shoal RSS growth | ratio |"
echo "|---|---:|---:|---:|"
# Fresh servers: memory freed by part 1 would otherwise be reused without RSS growth.
cleanup_started
STARTED_PIDS=()
[[ -x $SHOAL_SERVER_BIN ]] || { SHOAL_SERVER_BIN=$ORIG_SHOAL_BIN; use_private_shoal_copy; }
start_redis "$REDIS_PORT" "$LOGDIR/redis2.log" 0
RPID=$REPLY_PID
start_shoal "$SHOAL_PORT" "$SHOAL_MC_PORT" 1 "$LOGDIR/shoal2.log" 0
SPID=$REPLY_PID
r0=$(vm_rss_kb "$RPID")
s0=$(vm_rss_kb "$SPID")
gen_hashes() {
    python3 - <<'EOF'
import sys
out = sys.stdout.buffer
for i in range(100000):
    args = [b"HSET", b"h:%06d" % i]
    for f in range(10):
        args += [b"field%d" % f, b"value%04d" % ((i * 7 + f) % 10000)]
    out.write(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
EOF
}
gen_hashes >"$LOGDIR/hashes.resp"
for port in "$REDIS_PORT" "$SHOAL_PORT"; do redis-cli -p "$port" --pipe <"$LOGDIR/hashes.resp" >/dev/null; done
r1=$(vm_rss_kb "$RPID")
s1=$(vm_rss_kb "$SPID")
echo "| 100k hashes × 10 fields | $(( (r1 - r0) / 1024 )) MB | $(( (s1 - s0) / 1024 )) MB | $(ratio_of $((s1 - s0)) $((r1 - r0))) |"
python3 - >"$LOGDIR/zset.resp" <<'EOF'
import sys
out = sys.stdout.buffer
for i in range(0, 1000000, 100):
    args = [b"ZADD", b"bigz1m"]
    for j in range(i, i + 100):
        args += [b"%d" % ((j * 7919) % 1000003), b"member:%07d" % j]
    out.write(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
EOF
for port in "$REDIS_PORT" "$SHOAL_PORT"; do redis-cli -p "$port" --pipe <"$LOGDIR/zset.resp" >/dev/null; done
r2=$(vm_rss_kb "$RPID")
s2=$(vm_rss_kb "$SPID")
echo "| sorted set of 1M members | $(( (r2 - r1) / 1024 )) MB | $(( (s2 - s1) / 1024 )) MB | $(ratio_of $((s2 - s1)) $((r2 - r1))) |"
rm -rf "$LOGDIR"
