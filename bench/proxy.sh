#!/usr/bin/env bash
# shoal-proxy vs twemproxy (nutcracker 0.5.0), side by side in one run, on a 2-core
# machine. See bench/README.md, "Proxy vs twemproxy".
#
#   bash bench/proxy.sh [--no-build] [--skip-throughput] [--skip-rb] [--skip-mget]
#                       [--skip-overhead] [--skip-profile]
#
# 1. throughput: shoal-proxy --threads 1 and nutcracker, each pinned to core 0, in
#    front of the same 3 redis-server shards (also core 0), one YAML pool (fnv1a_64,
#    ketama, redis) differing only in the listen port; shoal-bench (core 1) GET-only and
#    SET-only, pipeline 1 and 16; redis-benchmark cross-check. Proxy CPU µs/op from
#    /proc/PID/stat.
# 2. MGET: 1000/3000-key MGET through each proxy vs one redis-server holding every key
#    (bench/mget_latency.py, one connection per target, median wall time), with the
#    proxies sharing core 0 with the shards and with the shards moved to core 1.
# 3. overhead: the same load straight to one redis-server vs through shoal-proxy to
#    that one shard, with the proxy on its own core and with the proxy sharing redis's.
# 4. profile: syscalls per op of both proxies; perf record of shoal-proxy at pipeline 1
#    and on 1000-key MGETs.
#
# Environment: DURATION (5 s per run), CONNECTIONS (50), KEY_MAXIMUM (100000),
# VALUE_SIZE (32), PIPELINES ("1 16"), TESTS ("get set"), REPEAT (1: interleaved runs
# per target per cell, best ops/s reported), RB_REQUESTS (200000), MGET_SIZES
# ("1000 3000"), MGET_ITERATIONS (2000), MGET_MAX_SECONDS (60 per size),
# PERF_SECONDS (5), SHOAL_PROXY_BIN, SHOAL_BENCH_BIN, NUTCRACKER_BIN
# (/usr/sbin/nutcracker), REDIS_SERVER_BIN, CARGO_TARGET_DIR, PORT_BASE (16390: uses
# PORT_BASE..PORT_BASE+8 on 127.0.0.1), PROXY_SOURCE (what the report says the proxy
# was built from; default: this checkout's HEAD and its uncommitted changes),
# QUIET_PCT (10) / QUIET_MAX_WAIT (60): before each run wait, at most QUIET_MAX_WAIT s,
# until processes this script did not start use < QUIET_PCT % of a core.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# One compound command: bash parses it all before running (edits during a run are safe).
{

SHOAL_PROXY_BIN=${SHOAL_PROXY_BIN:-$TARGET_DIR/release/shoal-proxy}
NUTCRACKER_BIN=${NUTCRACKER_BIN:-/usr/sbin/nutcracker}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-50}
KEY_MAXIMUM=${KEY_MAXIMUM:-100000}
VALUE_SIZE=${VALUE_SIZE:-32}
PIPELINES=${PIPELINES:-1 16}
TESTS=${TESTS:-get set}
REPEAT=${REPEAT:-1}
RB_REQUESTS=${RB_REQUESTS:-200000}
MGET_SIZES=${MGET_SIZES:-1000 3000}
MGET_ITERATIONS=${MGET_ITERATIONS:-2000}
MGET_MAX_SECONDS=${MGET_MAX_SECONDS:-60}
PERF_SECONDS=${PERF_SECONDS:-5}
PORT_BASE=${PORT_BASE:-16390}
QUIET_PCT=${QUIET_PCT:-10}
QUIET_MAX_WAIT=${QUIET_MAX_WAIT:-60}
[[ $PORT_BASE =~ ^[0-9]+$ && $PORT_BASE -ge 1024 && $PORT_BASE -le 65520 ]] || die "PORT_BASE must be 1024..65520"
SHARD_PORTS=($((PORT_BASE + 1)) $((PORT_BASE + 2)) $((PORT_BASE + 3)))
DIRECT_PORT=$((PORT_BASE + 4))
SP_PORT=$((PORT_BASE + 5))      # shoal-proxy, 3 shards
NC_PORT=$((PORT_BASE + 6))      # nutcracker, 3 shards
NC_STATS_PORT=$((PORT_BASE + 7))
SP1_PORT=$((PORT_BASE + 8))     # shoal-proxy, 1 shard (part 3)
SERVER_CPU=0
LOADGEN_CPU=1

BUILD=1 THROUGHPUT=1 RB=1 MGET=1 OVERHEAD=1 PROFILE=1
for arg in "$@"; do
    case "$arg" in
        --no-build) BUILD=0 ;;
        --skip-throughput) THROUGHPUT=0 ;;
        --skip-rb) RB=0 ;;
        --skip-mget) MGET=0 ;;
        --skip-overhead) OVERHEAD=0 ;;
        --skip-profile) PROFILE=0 ;;
        -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) die "unknown argument $arg (see --help)" ;;
    esac
done
awk -v d="$DURATION" 'BEGIN { exit !(d > 0 && d <= 600) }' || die "DURATION must be in (0, 600]"
awk -v d="$PERF_SECONDS" 'BEGIN { exit !(d > 0 && d <= 60) }' || die "PERF_SECONDS must be in (0, 60]"
[[ $REPEAT =~ ^[1-9][0-9]?$ ]] || die "REPEAT must be 1..99"
[[ $QUIET_MAX_WAIT =~ ^[0-9]+$ && $QUIET_MAX_WAIT -le 600 ]] || die "QUIET_MAX_WAIT must be 0..600"
[[ $QUIET_PCT =~ ^[0-9]+$ ]] || die "QUIET_PCT must be a whole number"
[[ $RB_REQUESTS =~ ^[0-9]+$ && $RB_REQUESTS -le 10000000 ]] || die "RB_REQUESTS must be 0..10000000"
[[ $MGET_ITERATIONS =~ ^[1-9][0-9]*$ && $MGET_ITERATIONS -le 1000000 ]] || die "MGET_ITERATIONS must be 1..1000000"
[[ $MGET_MAX_SECONDS =~ ^[1-9][0-9]*$ && $MGET_MAX_SECONDS -le 600 ]] || die "MGET_MAX_SECONDS must be 1..600"
[[ $(nproc) -ge 2 ]] || die "needs at least 2 cores (servers on core 0, generator on core 1)"
command -v redis-server >/dev/null || die "redis-server not installed"
command -v redis-cli >/dev/null || die "redis-cli not installed"
[[ -x $NUTCRACKER_BIN ]] || die "no $NUTCRACKER_BIN (apt-get install nutcracker, or set NUTCRACKER_BIN)"

if [[ $BUILD == 1 ]]; then
    log "building shoal-proxy and shoal-bench (release, CARGO_TARGET_DIR=$TARGET_DIR)"
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -q -p shoal-proxy -p shoal-bench) ||
        die "shoal-proxy / shoal-bench do not build"
fi
[[ -x $SHOAL_BENCH_BIN ]] || die "no $SHOAL_BENCH_BIN (build it or set SHOAL_BENCH_BIN)"
[[ -x $SHOAL_PROXY_BIN ]] || die "no $SHOAL_PROXY_BIN (build it or set SHOAL_PROXY_BIN)"

# Private copies: other sessions on a shared machine stop their own test servers by
# name; that must not hit the processes under measurement.
PRIVATE_DIR=$(mktemp -d /tmp/shoal-proxybench.XXXXXX)
cp "$SHOAL_PROXY_BIN" "$PRIVATE_DIR/pbench-shoal-proxy"
cp "$NUTCRACKER_BIN" "$PRIVATE_DIR/pbench-nutcracker"
cp "$(command -v "$REDIS_SERVER_BIN")" "$PRIVATE_DIR/pbench-redis-server"
cp "$SHOAL_BENCH_BIN" "$PRIVATE_DIR/pbench-shoal-bench"
SP_BIN=$PRIVATE_DIR/pbench-shoal-proxy
NC_BIN=$PRIVATE_DIR/pbench-nutcracker
REDIS_SERVER_BIN=$PRIVATE_DIR/pbench-redis-server
SHOAL_BENCH_BIN=$PRIVATE_DIR/pbench-shoal-bench
# redis-server loads dump.rdb from its working directory (the repository root has one):
# run everything from the empty private directory so every server starts empty.
cd "$PRIVATE_DIR"

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS_DIR=$ROOT/bench/results
RAW=$RESULTS_DIR/$STAMP-proxy-raw
mkdir -p "$RAW"
OUT_MD=$RESULTS_DIR/$STAMP-proxy.md
OUT_JSON=$RESULTS_DIR/$STAMP-proxy.json
JSON_ROWS=()
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

proc_ticks() { awk '{ s = $0; sub(/.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$1/stat"; }
ticks_sum() { local t=0 p; for p in "$@"; do t=$((t + $(proc_ticks "$p" 2>/dev/null || echo 0))); done; echo "$t"; }
cpu_busy() { awk '/^cpu / { print $2 + $3 + $4; exit }' /proc/stat; }
# json_obj KEY=VALUE...: one JSON object; numbers stay numbers, "na" becomes null.
json_obj() {
    local kv k v sep="" out="{"
    for kv in "$@"; do
        k=${kv%%=*} v=${kv#*=}
        if [[ $v == na || $v == "—" || -z $v ]]; then v=null
        elif ! [[ $v =~ ^-?[0-9]+(\.[0-9]+)?$ ]]; then v="\"${v//\"/\\\"}\""; fi
        out+="$sep\"$k\":$v"; sep=","
    done
    printf '%s}' "$out"
}
md() { printf '%s\n' "$*" >>"$OUT_MD"; }
# wait_quiet: before a run, wait (at most QUIET_MAX_WAIT s) until processes this script
# did not start use less than QUIET_PCT % of one core over 1 s; the machine is shared.
QUIET_WAITED=0 QUIET_GAVE_UP=0
wait_quiet() {
    local start=$SECONDS o0 c0 x
    while ((SECONDS - start < QUIET_MAX_WAIT)); do
        o0=$(ticks_sum "${STARTED_PIDS[@]}") c0=$(cpu_busy)
        sleep 1
        x=$(( ($(cpu_busy) - c0 - ($(ticks_sum "${STARTED_PIDS[@]}") - o0)) * 100 / CLK_TCK ))
        ((x < QUIET_PCT)) && { QUIET_WAITED=$((QUIET_WAITED + SECONDS - start)); return 0; }
        ((SECONDS - start < 2)) && log "machine busy (others use ${x} % of a core): waiting up to ${QUIET_MAX_WAIT} s"
    done
    QUIET_WAITED=$((QUIET_WAITED + SECONDS - start)) QUIET_GAVE_UP=$((QUIET_GAVE_UP + 1))
    log "still busy after ${QUIET_MAX_WAIT} s: running anyway"
}
load_avg() { cut -d' ' -f1-3 /proc/loadavg; }

# ---------------------------------------------------------------- configuration
# One pool definition; the two proxies' files differ only in the listen port.
write_pool() { # write_pool FILE LISTEN-PORT SERVER-PORT...
    local f=$1 port=$2 i=0 p; shift 2
    {
        echo "bench:"
        echo "  listen: 127.0.0.1:$port"
        echo "  hash: fnv1a_64"
        echo "  distribution: ketama"
        echo "  redis: true"
        echo "  servers:"
        for p in "$@"; do echo "   - 127.0.0.1:$p:1 shard$i"; i=$((i + 1)); done
    } >"$f"
}
write_pool "$RAW/shoal-proxy.yml" "$SP_PORT" "${SHARD_PORTS[@]}"
write_pool "$RAW/nutcracker.yml" "$NC_PORT" "${SHARD_PORTS[@]}"
write_pool "$RAW/shoal-proxy-1shard.yml" "$SP1_PORT" "$DIRECT_PORT"
diff <(sed 1,2d "$RAW/shoal-proxy.yml") <(sed 1,2d "$RAW/nutcracker.yml") >/dev/null || die "pool files differ beyond listen"
"$NC_BIN" -t -c "$RAW/nutcracker.yml" >"$RAW/nutcracker-check.log" 2>&1 || { cat "$RAW/nutcracker-check.log" >&2; die "nutcracker rejects the pool file"; }
"$SP_BIN" -t -c "$RAW/shoal-proxy.yml" >"$RAW/shoal-proxy-check.log" 2>&1 || { cat "$RAW/shoal-proxy-check.log" >&2; die "shoal-proxy rejects the pool file"; }

# wait_proxy PORT PID: a proxy is ready when a SET and GET through it round-trip.
wait_proxy() {
    local port=$1 pid=$2
    for _ in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || return 1
        if [[ $(timeout 2 redis-cli -h 127.0.0.1 -p "$port" set pbench:ready 1 2>/dev/null) == OK ]] &&
            [[ $(timeout 2 redis-cli -h 127.0.0.1 -p "$port" get pbench:ready 2>/dev/null) == 1 ]]; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}
start_shoal_proxy() { # CONFIG LOG CPU
    ensure_free "$(awk '/listen:/ { sub(/.*:/, "", $2); print $2 }' "$1")"
    taskset -c "$3" "$SP_BIN" -c "$1" --threads 1 --metrics-port 0 --loglevel warn >"$2" 2>&1 &
    local pid=$!
    STARTED_PIDS+=("$pid")
    wait_proxy "$(awk '/listen:/ { sub(/.*:/, "", $2); print $2 }' "$1")" "$pid" ||
        { tail -5 "$2" >&2; die "shoal-proxy ($1) did not answer"; }
    REPLY_PID=$pid
}
start_nutcracker() { # CONFIG LOG CPU
    ensure_free "$NC_PORT" "$NC_STATS_PORT"
    taskset -c "$3" "$NC_BIN" -c "$1" -s "$NC_STATS_PORT" -a 127.0.0.1 -o "$2" \
        -p "$PRIVATE_DIR/nutcracker.pid" >"$2.out" 2>&1 &
    local pid=$!
    STARTED_PIDS+=("$pid")
    wait_proxy "$NC_PORT" "$pid" || { tail -5 "$2" >&2; die "nutcracker did not answer"; }
    REPLY_PID=$pid
}

# ---------------------------------------------------------------- servers
log "starting 3 redis shards + 1 direct redis + shoal-proxy + nutcracker, all pinned to core $SERVER_CPU"
SHARD_PIDS=()
for i in 0 1 2; do
    start_redis "${SHARD_PORTS[$i]}" "$RAW/shard$i.log" "$SERVER_CPU"; SHARD_PIDS+=("$REPLY_PID")
done
start_redis "$DIRECT_PORT" "$RAW/direct.log" "$SERVER_CPU"; DIRECT_PID=$REPLY_PID
start_shoal_proxy "$RAW/shoal-proxy.yml" "$RAW/shoal-proxy.log" "$SERVER_CPU"; SP_PID=$REPLY_PID
start_nutcracker "$RAW/nutcracker.yml" "$RAW/nutcracker.log" "$SERVER_CPU"; NC_PID=$REPLY_PID

# prefill PORT PREFIX: SET every key PREFIX%010d of 0..KEY_MAXIMUM (VALUE_SIZE bytes).
prefill() {
    taskset -c "$LOADGEN_CPU" "$SHOAL_BENCH_BIN" --host 127.0.0.1 --port "$1" --connections "$CONNECTIONS" \
        --key-prefix "$2" --key-minimum 0 --key-maximum "$KEY_MAXIMUM" --data-size "$VALUE_SIZE" \
        --load-only >>"$RAW/prefill.log" 2>&1 || { tail -3 "$RAW/prefill.log" >&2; die "prefill of port $1 failed"; }
}
log "prefilling key:%010d and key:00%010d (redis-benchmark's -r keys) 0..$KEY_MAXIMUM, $VALUE_SIZE B"
# Through shoal-proxy (placement: the pool's ketama ring); nutcracker must then find
# every key: the GET rows' hit % (100 expected) checks that both place keys alike.
prefill "$SP_PORT" key:
prefill "$SP_PORT" key:00
prefill "$DIRECT_PORT" key:
prefill "$DIRECT_PORT" key:00
SHARD_KEYS=$(for p in "${SHARD_PORTS[@]}"; do redis-cli -h 127.0.0.1 -p "$p" dbsize; done | paste -sd/)
log "keys per shard: $SHARD_KEYS"

LOAD_START=$(load_avg)
{
    echo "# shoal-proxy vs twemproxy — $STAMP"
    echo
    echo "- machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r); load average at start: $LOAD_START"
    echo "- shoal-proxy source: ${PROXY_SOURCE:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?') + $(git -C "$ROOT" status --porcelain -- proxy client 2>/dev/null | wc -l | tr -d ' ') uncommitted paths under proxy/ client/ at run time}; binary built $(date -u -r "$SHOAL_PROXY_BIN" +%Y-%m-%dT%H:%M:%SZ)"
    echo "- $("$NC_BIN" -V 2>&1 | awk 'NR == 1'), $(redis-server --version | awk '{ print $1, $2, $3 }'), shoal-proxy $("$SP_BIN" --version | awk '{ print $2 }') from $SHOAL_PROXY_BIN (--threads 1)"
    echo "- pool (one YAML, only \`listen\` differs): hash fnv1a_64, distribution ketama, redis: true, 3 servers (redis-server --save '' --appendonly no, keys per shard $SHARD_KEYS); see $STAMP-proxy-raw/*.yml"
    echo "- keys key:%010d 0..$KEY_MAXIMUM (and key:00%010d for redis-benchmark's -r) prefilled with $VALUE_SIZE B values through shoal-proxy; uniform random keys; $CONNECTIONS connections; $DURATION s per run; best ops/s of $REPEAT interleaved run(s) per target per cell (order alternates)"
    echo "- proxy CPU µs/op: utime+stime of the proxy process (all threads) over the measured phase (/proc/PID/stat, shoal-bench --server-pid) ÷ ops; backends CPU µs/op: the same for the 3 redis shards together, read around the shoal-bench run"
    echo "- others' CPU %: CPU used during the run by processes this script did not start (user+nice+system of both cores from /proc/stat, minus our servers, proxies and generator), in % of one core. This machine is shared: a row with more than ~10 % was measured while someone else was busy, and its ops/s and latencies understate what the servers can do."
    echo
} >"$OUT_MD"

# sb_run PORT PID PIPELINE RATIO TAG [BACKEND-PID...]: shoal-bench (no prefill), prints
# its summary line plus backend_cpu_us_per_op.
sb_run() {
    local port=$1 pid=$2 pipe=$3 ratio=$4 tag=$5; shift 5
    local b0 b1 o0 o1 c0 c1 w0 w1 line logf=$RAW/$tag.log
    b0=$( (($# > 0)) && ticks_sum "$@" || echo 0)
    o0=$(ticks_sum "${STARTED_PIDS[@]}") c0=$(cpu_busy) w0=$(date +%s.%N)
    if ! taskset -c "$LOADGEN_CPU" "$SHOAL_BENCH_BIN" --host 127.0.0.1 --port "$port" --connections "$CONNECTIONS" \
        --pipeline "$pipe" --ratio "$ratio" --data-size "$VALUE_SIZE" --key-minimum 0 --key-maximum "$KEY_MAXIMUM" \
        --key-pattern R --test-time "$DURATION" --server-pid "$pid" --label "$tag" --json-out "$RAW/$tag.json" \
        --summary >"$logf" 2>&1; then
        log "warning: $tag failed: $(tail -1 "$logf")"
        echo "summary failed=1"
        return 0
    fi
    o1=$(ticks_sum "${STARTED_PIDS[@]}") c1=$(cpu_busy) w1=$(date +%s.%N)
    b1=$( (($# > 0)) && ticks_sum "$@" || echo 0)
    line=$(grep "^summary " "$logf" | tail -1 || true)
    local ops; ops=$(field "$line" ops)
    # others_cpu_pct: CPU that processes not started by this script used over the run,
    # in % of one core: (user+nice+system of all CPUs, /proc/stat) - (our servers and
    # proxies) - (the generator's own CPU); irq/softirq time is left out of both.
    # Above ~10 the row was measured on a busy machine.
    echo "$line backend_cpu_us_per_op=$( (($# > 0)) && awk -v d=$((b1 - b0)) -v hz="$CLK_TCK" -v n="$ops" \
        'BEGIN { if (n + 0 > 0) printf "%.3f", d * 1e6 / hz / n; else print "na" }' || echo na) others_cpu_pct=$(
        awk -v c=$((c1 - c0)) -v o=$((o1 - o0)) -v hz="$CLK_TCK" -v w="$(awk -v a="$w0" -v b="$w1" 'BEGIN { print b - a }')" \
            -v g="$(field "$line" loadgen_cpu_pct)" -v e="$(field "$line" elapsed_s)" \
            'BEGIN { if (g == "na") g = 0; x = ((c - o) / hz - g / 100 * e) / w * 100; if (x < 0) x = 0; printf "%.0f", x }')"
}
better() { # better NEW OLD: true when NEW's ops/s beats OLD's
    awk -v a="$(field "$1" ops_per_sec)" -v b="$(field "$2" ops_per_sec)" \
        'BEGIN { exit !(a != "na" && (b == "na" || a + 0 > b + 0)) }'
}
hit_pct() {
    awk -v g="$(field "$1" gets)" -v h="$(field "$1" hits)" 'BEGIN { if (g == "na" || g + 0 == 0) print "—"; else printf "%.1f", 100 * h / g }'
}
ratio_test() { case $1 in get) echo 0:1 ;; set) echo 1:0 ;; esac; }

# ---------------------------------------------------------------- 1. throughput
declare -A P1=()
if [[ $THROUGHPUT == 1 ]]; then
    md "## 1. Throughput: shoal-proxy vs nutcracker, 3 redis shards (proxies and shards on core $SERVER_CPU, shoal-bench on core $LOADGEN_CPU)"
    md ""
    md "| proxy | pipeline | test | ops/s | p50 µs | p99 µs | proxy CPU µs/op | backends CPU µs/op | hit % | gen CPU % | others' CPU % | shoal/nc ops/s | shoal/nc p99 | shoal/nc proxy µs/op |"
    md "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    cell=0
    for pipe in $PIPELINES; do
        for test in $TESTS; do
            cell=$((cell + 1))
            order=(shoal nutcracker); (( cell % 2 == 0 )) && order=(nutcracker shoal)
            declare -A res=()
            for rep in $(seq "$REPEAT"); do
                for t in "${order[@]}"; do
                    [[ $t == shoal ]] && { port=$SP_PORT pid=$SP_PID; } || { port=$NC_PORT pid=$NC_PID; }
                    kill -0 "$pid" 2>/dev/null || die "$t died (see $RAW)"
                    wait_quiet
                    log "throughput p$pipe $test: $t (run $rep/$REPEAT, load $(load_avg))"
                    s=$(sb_run "$port" "$pid" "$pipe" "$(ratio_test "$test")" "tp-p$pipe-$test-$t-run$rep" "${SHARD_PIDS[@]}")
                    JSON_ROWS+=("$(json_obj part=throughput proxy=$t pipeline=$pipe test=$test run=$rep "load1=$(cut -d' ' -f1 /proc/loadavg)" $(echo "${s#summary }"))")
                    if [[ -z ${res[$t]:-} ]] || better "$s" "${res[$t]}"; then res[$t]=$s; fi
                done
            done
            for t in shoal nutcracker; do
                s=${res[$t]}; P1[$t-$pipe-$test]=$s
                r1="—" r2="—" r3="—"
                if [[ $t == shoal ]]; then
                    n=${res[nutcracker]}
                    r1=$(ratio_of "$(field "$s" ops_per_sec)" "$(field "$n" ops_per_sec)")
                    r2=$(ratio_of "$(field "$s" p99_us)" "$(field "$n" p99_us)")
                    r3=$(ratio_of "$(field "$s" cpu_us_per_op)" "$(field "$n" cpu_us_per_op)")
                fi
                if [[ $(field "$s" failed) == 1 ]]; then md "| $t | $pipe | ${test^^} | FAILED | | | | | | | | | | |"; continue; fi
                md "| $t | $pipe | ${test^^} | $(field "$s" ops_per_sec) | $(field "$s" p50_us) | $(field "$s" p99_us) | $(field "$s" cpu_us_per_op) | $(field "$s" backend_cpu_us_per_op) | $(hit_pct "$s") | $(field "$s" loadgen_cpu_pct) | $(field "$s" others_cpu_pct) | $r1 | $r2 | $r3 |"
            done
            unset res
        done
    done
    md ""
    md "Target: shoal/nc ops/s ≥ 1.20 with shoal/nc p99 ≤ 1.00, at pipeline 1 and 16."
    md ""
fi

# ---------------------------------------------------------------- 1b. redis-benchmark
# rb_run PORT PID PIPELINE TEST: "rps p50_us p99_us proxy-cpu-µs/op" of one redis-benchmark test.
rb_run() {
    local t0 t1 csv
    t0=$(proc_ticks "$2")
    csv=$(timeout 300 taskset -c "$LOADGEN_CPU" redis-benchmark -h 127.0.0.1 -p "$1" -c "$CONNECTIONS" -n "$RB_REQUESTS" \
        -r "$KEY_MAXIMUM" -t "$4" -d "$VALUE_SIZE" -P "$3" --csv 2>>"$RAW/redis-benchmark.err" || true)
    t1=$(proc_ticks "$2" 2>/dev/null || echo "$t0")
    echo "$csv" >>"$RAW/redis-benchmark.csv"
    echo "$csv" | awk -F'","' -v t="${4^^}" -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$RB_REQUESTS" '
        $1 == "\"" t { gsub(/"/, "", $NF); printf "%.0f %.1f %.1f %.3f\n", $2, $5 * 1000, $7 * 1000, d * 1e6 / hz / n; found = 1; exit }
        END { if (!found) print "na na na na" }'
}
if [[ $RB == 1 && $RB_REQUESTS -gt 0 ]]; then
    md "## 1b. Cross-check with redis-benchmark (same placement; \`-c $CONNECTIONS -n $RB_REQUESTS -r $KEY_MAXIMUM -d $VALUE_SIZE -P N -t get|set\`)"
    md ""
    md "redis-benchmark's own percentiles (ms resolution ×1000); proxy CPU over the whole redis-benchmark run (includes its connection set-up) ÷ requests."
    md ""
    md "| proxy | pipeline | test | ops/s | p50 µs | p99 µs | proxy CPU µs/op | shoal/nc ops/s | shoal/nc p99 |"
    md "|---|---:|---|---:|---:|---:|---:|---:|---:|"
    cell=0
    for pipe in $PIPELINES; do
        for test in $TESTS; do
            cell=$((cell + 1))
            order=(shoal nutcracker); (( cell % 2 == 0 )) && order=(nutcracker shoal)
            declare -A rb=()
            for rep in $(seq "$REPEAT"); do
                for t in "${order[@]}"; do
                    [[ $t == shoal ]] && { port=$SP_PORT pid=$SP_PID; } || { port=$NC_PORT pid=$NC_PID; }
                    kill -0 "$pid" 2>/dev/null || die "$t died (see $RAW)"
                    wait_quiet
                    log "redis-benchmark p$pipe $test: $t (run $rep/$REPEAT)"
                    read -r o p50 p99 c <<<"$(rb_run "$port" "$pid" "$pipe" "$test")"
                    JSON_ROWS+=("$(json_obj part=redis-benchmark proxy=$t pipeline=$pipe test=$test run=$rep ops_per_sec=$o p50_us=$p50 p99_us=$p99 cpu_us_per_op=$c)")
                    if [[ $o != na ]] && { [[ -z ${rb[$t]:-} ]] || [[ ${rb[$t]%% *} == na ]] || (( o > ${rb[$t]%% *} )); }; then
                        rb[$t]="$o $p50 $p99 $c"
                    elif [[ -z ${rb[$t]:-} ]]; then rb[$t]="$o $p50 $p99 $c"; fi
                done
            done
            read -r no np50 np99 nc <<<"${rb[nutcracker]}"
            for t in shoal nutcracker; do
                read -r o p50 p99 c <<<"${rb[$t]}"
                r1="—" r2="—"
                [[ $t == shoal ]] && { r1=$(ratio_of "$o" "$no"); r2=$(ratio_of "$p99" "$np99"); }
                md "| $t | $pipe | ${test^^} | $o | $p50 | $p99 | $c | $r1 | $r2 |"
            done
            unset rb
        done
    done
    md ""
fi

# ---------------------------------------------------------------- 2. MGET
if [[ $MGET == 1 ]]; then
    if ! command -v python3 >/dev/null; then
        md "## 2. MGET: skipped (no python3)"
    else
        bp=$(printf '%s,' "${SHARD_PIDS[@]}"); bp="[${bp%,}]"
        cat >"$RAW/mget-config.json" <<EOF
{"sizes": [$(echo "$MGET_SIZES" | tr ' ' ',')], "iterations": $MGET_ITERATIONS, "max_seconds": $MGET_MAX_SECONDS,
 "block": 50, "warmup": 20, "key_maximum": $KEY_MAXIMUM, "key_prefix": "key:", "seed": 42,
 "our_pids": [$(printf '%s,' "${STARTED_PIDS[@]}" | sed 's/,$//')],
 "targets": [{"name": "direct", "port": $DIRECT_PORT, "pid": $DIRECT_PID, "backend_pids": []},
             {"name": "shoal-proxy", "port": $SP_PORT, "pid": $SP_PID, "backend_pids": $bp},
             {"name": "nutcracker", "port": $NC_PORT, "pid": $NC_PID, "backend_pids": $bp}]}
EOF
        md "## 2. MGET latency: one N-key MGET through each proxy (3 shards) vs one redis-server holding every key"
        md ""
        md "Client: bench/mget_latency.py on core $LOADGEN_CPU (raw socket, one connection per target, pre-encoded request, timed from sendall to the last byte of the reply, whose length is known; every reply compared byte for byte with the direct one after the clock stops). Targets interleaved in blocks of 50 requests; up to $MGET_ITERATIONS requests each, at most $MGET_MAX_SECONDS s per size. Same keys (a fixed random sample of key:%010d) for all targets. CPU columns: process CPU ÷ requests (for direct: the redis-server's). Two placements:"
        md ""
        md "- **shared**: proxies, shards and the direct redis-server all on core $SERVER_CPU (as in part 1): a proxied MGET costs proxy CPU + the 3 shards' CPU on one core, so its latency is about their sum."
        md "- **proxy-own-core**: proxies alone on core $SERVER_CPU; the 3 shards, the direct redis-server and the client on core $LOADGEN_CPU (the client blocks in recv while a request is out). The proxy's work overlaps the shards' as it would with shards on other machines; the shards still run one after the other on one core."
        md ""
        md "| placement | keys | target | requests | median µs | p90 µs | p99 µs | ×direct (median) | CPU µs/MGET | shards CPU µs/MGET | others' CPU % | error |"
        md "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        for placement in shared proxy-own-core; do
            [[ $placement == shared ]] && cpu=$SERVER_CPU || cpu=$LOADGEN_CPU
            for p in "${SHARD_PIDS[@]}" "$DIRECT_PID"; do taskset -a -p -c "$cpu" "$p" >/dev/null; done
            wait_quiet
            log "MGET latency ($placement): sizes $MGET_SIZES, $MGET_ITERATIONS iterations (at most $MGET_MAX_SECONDS s per size)"
            if taskset -c "$LOADGEN_CPU" timeout $((MGET_MAX_SECONDS * $(wc -w <<<"$MGET_SIZES") + 120)) \
                python3 "$ROOT/bench/mget_latency.py" "$RAW/mget-config.json" "$RAW/mget-$placement.json" >"$RAW/mget-$placement.log" 2>&1; then
                python3 - "$RAW/mget-$placement.json" "$placement" >>"$OUT_MD" <<'EOF'
import json, sys
f = lambda v, d=1: "—" if v is None else f"{v:.{d}f}"
for r in json.load(open(sys.argv[1])):
    print(f"| {sys.argv[2]} | {r['keys']} | {r['target']} | {r['iterations']} | {f(r['median_us'])} | {f(r['p90_us'])} | {f(r['p99_us'])} "
          f"| {f(r['vs_reference'], 2)} | {f(r['cpu_us_per_req'])} | {f(r['backend_cpu_us_per_req'])} | {f(r['others_cpu_pct'], 0)} | {r['error'] or ''} |")
EOF
                while read -r line; do JSON_ROWS+=("{\"part\":\"mget\",\"placement\":\"$placement\",${line#\{}"); done < <(grep '^{' "$RAW/mget-$placement.log")
            else
                log "warning: MGET measurement ($placement) failed: $(tail -2 "$RAW/mget-$placement.log")"
                md "| $placement | | FAILED: see $STAMP-proxy-raw/mget-$placement.log | | | | | | | | | |"
            fi
        done
        for p in "${SHARD_PIDS[@]}" "$DIRECT_PID"; do taskset -a -p -c "$SERVER_CPU" "$p" >/dev/null; done
        md ""
        md "Target: shoal-proxy ≤ 1.5× direct."
        md ""
    fi
fi

# ---------------------------------------------------------------- 3. overhead
if [[ $OVERHEAD == 1 ]]; then
    start_shoal_proxy "$RAW/shoal-proxy-1shard.yml" "$RAW/shoal-proxy-1shard.log" "$SERVER_CPU"; SP1_PID=$REPLY_PID
    md "## 3. Proxy overhead: straight to one redis-server vs through shoal-proxy (--threads 1) to that one shard"
    md ""
    md "Same redis-server, same shoal-bench load ($CONNECTIONS connections, $VALUE_SIZE B, keys prefilled), direct and proxied back to back (order alternating). Two placements on the 2 cores:"
    md ""
    md "- **own-core**: shoal-proxy alone on core 0; redis-server and shoal-bench share core 1 (in both the direct and the proxied run). The proxy costs no backend CPU here; the rows show added latency, and what the proxy's connection multiplexing (50 client connections onto one pipelined backend connection) does to redis's CPU per op."
    md "- **shared-core**: shoal-proxy and redis-server on core 0, shoal-bench on core 1 (direct = the usual compare.sh placement). The proxy's CPU comes out of the server's core, as in part 1."
    md ""
    md "| placement | target | pipeline | test | ops/s | p50 µs | p99 µs | proxy CPU µs/op | redis CPU µs/op | gen CPU % | others' CPU % | proxied/direct ops/s | proxied/direct p50 | proxied/direct p99 |"
    md "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for placement in own-core shared-core; do
        if [[ $placement == own-core ]]; then
            taskset -a -p -c "$LOADGEN_CPU" "$DIRECT_PID" >/dev/null
        else
            taskset -a -p -c "$SERVER_CPU" "$DIRECT_PID" >/dev/null
        fi
        cell=0
        for pipe in $PIPELINES; do
            for test in $TESTS; do
                cell=$((cell + 1))
                order=(direct proxied); (( cell % 2 == 0 )) && order=(proxied direct)
                declare -A res=()
                for rep in $(seq "$REPEAT"); do
                    for t in "${order[@]}"; do
                        kill -0 "$DIRECT_PID" 2>/dev/null || die "direct redis-server died"
                        kill -0 "$SP1_PID" 2>/dev/null || die "1-shard shoal-proxy died"
                        wait_quiet
                        log "overhead $placement p$pipe $test: $t (run $rep/$REPEAT)"
                        if [[ $t == direct ]]; then
                            s=$(sb_run "$DIRECT_PORT" "$DIRECT_PID" "$pipe" "$(ratio_test "$test")" "oh-$placement-p$pipe-$test-direct-run$rep")
                            s="$s redis_cpu_us_per_op=$(field "$s" cpu_us_per_op) proxy_cpu_us_per_op=na"
                        else
                            s=$(sb_run "$SP1_PORT" "$SP1_PID" "$pipe" "$(ratio_test "$test")" "oh-$placement-p$pipe-$test-proxied-run$rep" "$DIRECT_PID")
                            s="$s redis_cpu_us_per_op=$(field "$s" backend_cpu_us_per_op) proxy_cpu_us_per_op=$(field "$s" cpu_us_per_op)"
                        fi
                        JSON_ROWS+=("$(json_obj part=overhead placement=$placement target=$t pipeline=$pipe test=$test run=$rep "load1=$(cut -d' ' -f1 /proc/loadavg)" $(echo "${s#summary }"))")
                        if [[ -z ${res[$t]:-} ]] || better "$s" "${res[$t]}"; then res[$t]=$s; fi
                    done
                done
                for t in direct proxied; do
                    s=${res[$t]}; d=${res[direct]}
                    r1="—" r2="—" r3="—"
                    if [[ $t == proxied ]]; then
                        r1=$(ratio_of "$(field "$s" ops_per_sec)" "$(field "$d" ops_per_sec)")
                        r2=$(ratio_of "$(field "$s" p50_us)" "$(field "$d" p50_us)")
                        r3=$(ratio_of "$(field "$s" p99_us)" "$(field "$d" p99_us)")
                    fi
                    if [[ $(field "$s" failed) == 1 ]]; then md "| $placement | $t | $pipe | ${test^^} | FAILED | | | | | | | | | |"; continue; fi
                    pc=$(field "$s" proxy_cpu_us_per_op); [[ $pc == na ]] && pc="—"
                    md "| $placement | $t | $pipe | ${test^^} | $(field "$s" ops_per_sec) | $(field "$s" p50_us) | $(field "$s" p99_us) | $pc | $(field "$s" redis_cpu_us_per_op) | $(field "$s" loadgen_cpu_pct) | $(field "$s" others_cpu_pct) | $r1 | $r2 | $r3 |"
                done
                unset res
            done
        done
    done
    taskset -a -p -c "$SERVER_CPU" "$DIRECT_PID" >/dev/null
    stop_pid "$SP1_PID"
    md ""
fi

# ---------------------------------------------------------------- 4. profile
if [[ $PROFILE == 1 ]]; then
    md "## 4. Where the proxies spend (part 1 placement, GET)"
    md ""
    if ! command -v perf >/dev/null || ! perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1; then
        md "perf is not available (or may not trace): skipped."
    else
        SYS_WINDOW=$(awk -v d="$DURATION" 'BEGIN { w = d - 1.5; if (w < 0.5) w = 0.5; print w }')
        md "Syscalls per op: \`perf stat -e raw_syscalls:sys_enter -p PID -- sleep $SYS_WINDOW\` inside a ${DURATION} s GET-only run, ÷ (window × the run's ops/s). Separate runs from the tables above (counting adds a little cost)."
        md ""
        # Per-syscall counters for the calls a proxy makes on its data path (those this
        # kernel has tracepoints for), plus the total.
        SYS_EVENTS=raw_syscalls:sys_enter
        avail=$(perf list 'syscalls:sys_enter_*' 2>/dev/null | awk '{ print $1 }')
        for sc in read write readv writev recvfrom sendto recvmsg sendmsg epoll_wait epoll_pwait epoll_pwait2 \
            epoll_ctl futex sched_yield io_uring_enter accept4 close setsockopt getsockopt ioctl; do
            grep -qx "syscalls:sys_enter_$sc" <<<"$avail" && SYS_EVENTS+=",syscalls:sys_enter_$sc"
        done
        md "| proxy | pipeline | ops/s | syscalls/op | per op, by call | proxy CPU µs/op |"
        md "|---|---:|---:|---:|---|---:|"
        for pipe in $PIPELINES; do
            for t in shoal nutcracker; do
                [[ $t == shoal ]] && { port=$SP_PORT pid=$SP_PID; } || { port=$NC_PORT pid=$NC_PID; }
                wait_quiet
                log "profile: syscalls of $t at pipeline $pipe"
                sb_run "$port" "$pid" "$pipe" 0:1 "sys-p$pipe-$t" >"$PRIVATE_DIR/sys.summary" &
                bpid=$!
                sleep 0.5   # connections set up; the window below lies inside the measured phase
                timeout 120 perf stat -x, -e "$SYS_EVENTS" -p "$pid" -o "$RAW/syscalls-$t-p$pipe.txt" \
                    -- sleep "$SYS_WINDOW" >/dev/null 2>&1 || true
                wait "$bpid" || true
                s=$(cat "$PRIVATE_DIR/sys.summary")
                n=$(awk -F, '/raw_syscalls:sys_enter/ { print $1 }' "$RAW/syscalls-$t-p$pipe.txt")
                # syscalls in the window ÷ (window × the run's ops/s)
                per=$(awk -F, -v r="$(field "$s" ops_per_sec)" -v w="$SYS_WINDOW" '
                    $3 ~ /^syscalls:sys_enter_/ && $1 + 0 > 0 && r + 0 > 0 {
                        name = $3; sub(/^syscalls:sys_enter_/, "", name)
                        x = $1 / (w * r); if (x >= 0.005) out = out sprintf("%s%s %.2f", (out == "" ? "" : ", "), name, x) }
                    END { print (out == "" ? "—" : out) }' "$RAW/syscalls-$t-p$pipe.txt")
                md "| $t | $pipe | $(field "$s" ops_per_sec) | $(awk -v n="${n:-na}" -v r="$(field "$s" ops_per_sec)" -v w="$SYS_WINDOW" 'BEGIN { if (n == "na" || r == "na" || r + 0 == 0) print "—"; else printf "%.2f", n / (w * r) }') | $per | $(field "$s" cpu_us_per_op) |"
            done
        done
        md ""
        # perf_profile NAME WHAT LOAD-COMMAND...: perf record shoal-proxy for PERF_SECONDS
        # while LOAD-COMMAND runs (started 1 s before), reports under $RAW/perf-NAME-*.txt.
        perf_profile() {
            local name=$1 what=$2 lpid pdata=$PRIVATE_DIR/perf-$1.data; shift 2
            wait_quiet
            log "profile: perf record of shoal-proxy, $what, $PERF_SECONDS s"
            "$@" >"$RAW/perf-$name-load.log" 2>&1 &
            lpid=$!
            sleep 1
            timeout $((${PERF_SECONDS%.*} + 60)) perf record -F 1999 --call-graph dwarf,16384 -p "$SP_PID" -o "$pdata" \
                -- sleep "$PERF_SECONDS" >"$RAW/perf-$name-record.log" 2>&1 ||
                log "warning: perf record: $(tail -1 "$RAW/perf-$name-record.log")"
            wait "$lpid" || true
            if [[ ! -s $pdata ]]; then
                md "perf record ($what) produced no data (see $STAMP-proxy-raw/perf-$name-record.log)."
                md ""
                return 0
            fi
            timeout 300 perf report -i "$pdata" --no-children --sort dso --stdio -g none >"$RAW/perf-$name-dso.txt" 2>/dev/null || true
            timeout 300 perf report -i "$pdata" --no-children --sort symbol --stdio -g none --percent-limit 0.3 \
                >"$RAW/perf-$name-self.txt" 2>/dev/null || true
            timeout 300 perf report -i "$pdata" --children --sort symbol --stdio -g none --percent-limit 2 \
                >"$RAW/perf-$name-children.txt" 2>/dev/null || true
            timeout 300 perf report -i "$pdata" --no-children --sort symbol --stdio -g graph,0.5,callee,function,percent \
                --percent-limit 1.5 >"$RAW/perf-$name-callgraph.txt" 2>/dev/null || true
            timeout 300 perf report -i "$pdata" --no-children --sort symbol --stdio -g folded,0,caller,function,percent \
                >"$RAW/perf-$name-folded.txt" 2>/dev/null || true
            md "perf record of shoal-proxy, $what (\`perf record -F 1999 --call-graph dwarf,16384 -p PID -- sleep $PERF_SECONDS\`; cpu-clock samples, this VM has no PMU). Full reports (self, children, call graph, folded stacks): $STAMP-proxy-raw/perf-$name-*.txt."
            md ""
            md '```'
            awk '!/^#/ && NF && n++ < 6' "$RAW/perf-$name-dso.txt" >>"$OUT_MD"
            md '```'
            md ""
            md '```'
            awk '!/^#/ && NF && n++ < 30 { sub(/[ \t-]+$/, ""); print }' "$RAW/perf-$name-self.txt" >>"$OUT_MD"
            md '```'
            md ""
        }
        perf_profile p1-get "pipeline 1 GET (shoal-bench, $CONNECTIONS connections)" \
            taskset -c "$LOADGEN_CPU" "$SHOAL_BENCH_BIN" --host 127.0.0.1 --port "$SP_PORT" --connections "$CONNECTIONS" \
            --pipeline 1 --ratio 0:1 --data-size "$VALUE_SIZE" --key-maximum "$KEY_MAXIMUM" \
            --test-time "$(awk -v s="$PERF_SECONDS" 'BEGIN { print s + 2 }')" --summary
        if [[ $MGET == 1 ]] && command -v python3 >/dev/null; then
            cat >"$RAW/mget-perf-config.json" <<EOF
{"sizes": [1000], "iterations": 1000000, "max_seconds": $(awk -v s="$PERF_SECONDS" 'BEGIN { print int(s + 3) }'),
 "block": 50, "warmup": 20, "key_maximum": $KEY_MAXIMUM, "key_prefix": "key:", "seed": 42,
 "targets": [{"name": "direct", "port": $DIRECT_PORT, "pid": $DIRECT_PID, "backend_pids": []},
             {"name": "shoal-proxy", "port": $SP_PORT, "pid": $SP_PID, "backend_pids": []}]}
EOF
            perf_profile mget1000 "1000-key MGET on one connection (bench/mget_latency.py, shared placement; direct blocks interleaved, so the proxy is idle half the time)" \
                taskset -c "$LOADGEN_CPU" python3 "$ROOT/bench/mget_latency.py" "$RAW/mget-perf-config.json" "$RAW/mget-perf.json"
        fi
    fi
fi

{
    echo "Waited $QUIET_WAITED s in all for a quiet machine (others < $QUIET_PCT % of a core over 1 s) before runs; $QUIET_GAVE_UP run(s) started busy after ${QUIET_MAX_WAIT} s."
    echo
    echo "Load average at end: $(load_avg) (start: $LOAD_START). Raw shoal-bench JSON, logs, pool files: bench/results/$STAMP-proxy-raw/"
} >>"$OUT_MD"
{
    echo "["
    for i in "${!JSON_ROWS[@]}"; do
        printf '  %s%s\n' "${JSON_ROWS[$i]}" "$( ((i + 1 < ${#JSON_ROWS[@]})) && echo , )"
    done
    echo "]"
} >"$OUT_JSON"
cat "$OUT_MD"
log "wrote $OUT_MD and $OUT_JSON"
exit 0
}
