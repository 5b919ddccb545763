#!/usr/bin/env bash
# Side-by-side capacity comparison: redis-server vs shoal-server (RESP) and
# memcached vs shoal-server (memcache), on a 2-core machine: every server on
# core 0, the load generator on core 1. See bench/README.md.
#
#   bash bench/compare.sh [--both-cores] [--no-build] [--skip-matrix] [--skip-crosscheck]
#
# Environment: DURATION (seconds per cell, default 5), CONNECTIONS (50),
# KEY_MAXIMUM (100000), SIZES ("32 1024"), PIPELINES ("1 16"),
# RATIOS ("1:10 1:0"), PROTOCOLS ("resp memcache"), CROSSCHECK_REQUESTS (200000),
# REPEAT (1: runs per target per cell, interleaved, best ops/s reported),
# SHOAL_SERVER_BIN, SHOAL_BENCH_BIN, SHOAL_EXTRA_ARGS, CARGO_TARGET_DIR,
# REDIS_PORT, MEMCACHED_PORT, SHOAL_PORT, SHOAL_MC_PORT.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# The whole script is one compound command: bash parses it fully before running,
# so editing this file during a run cannot derail the run.
{

DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-50}
KEY_MAXIMUM=${KEY_MAXIMUM:-100000}
SIZES=${SIZES:-32 1024}
PIPELINES=${PIPELINES:-1 16}
RATIOS=${RATIOS:-1:10 1:0}
PROTOCOLS=${PROTOCOLS:-resp memcache}
CROSSCHECK_REQUESTS=${CROSSCHECK_REQUESTS:-200000}
REPEAT=${REPEAT:-1}
REDIS_PORT=${REDIS_PORT:-16379}
MEMCACHED_PORT=${MEMCACHED_PORT:-11311}
SHOAL_PORT=${SHOAL_PORT:-16380}
SHOAL_MC_PORT=${SHOAL_MC_PORT:-11312}
SERVER_CPU=0
LOADGEN_CPU=1

BUILD=1 BOTH_CORES=0 MATRIX=1 CROSSCHECK=1
for arg in "$@"; do
    case "$arg" in
        --both-cores) BOTH_CORES=1 ;;
        --no-build) BUILD=0 ;;
        --skip-matrix) MATRIX=0 ;;
        --skip-crosscheck) CROSSCHECK=0 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) die "unknown argument $arg (see --help)" ;;
    esac
done
awk -v d="$DURATION" 'BEGIN { exit !(d > 0 && d <= 600) }' || die "DURATION must be in (0, 600]"
[[ $REPEAT =~ ^[1-9][0-9]?$ ]] || die "REPEAT must be 1..99"
[[ $(nproc) -ge 2 ]] || die "needs at least 2 cores (server on core 0, generator on core 1)"
command -v redis-server >/dev/null || die "redis-server not installed"
command -v memcached >/dev/null || die "memcached not installed"

# ---------------------------------------------------------------- build
if [[ $BUILD == 1 ]]; then
    log "building shoal-bench (release)"
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -q -p shoal-bench) || die "shoal-bench does not build"
    log "building shoal-server (release)"
    if ! (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -q -p shoal-server); then
        log "warning: shoal-server does not build: comparing the reference servers only"
    fi
fi
[[ -x $SHOAL_BENCH_BIN ]] || die "no $SHOAL_BENCH_BIN (build it or set SHOAL_BENCH_BIN)"
HAVE_SHOAL=0
if shoal_available; then HAVE_SHOAL=1; else log "warning: $SHOAL_SERVER_BIN missing or not runnable: reference servers only"; fi

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS_DIR=$ROOT/bench/results
RAW=$RESULTS_DIR/$STAMP-raw
mkdir -p "$RAW"
OUT_MD=$RESULTS_DIR/$STAMP.md

# ---------------------------------------------------------------- servers
log "starting servers (each pinned to core $SERVER_CPU)"
start_redis "$REDIS_PORT" "$RAW/redis.log" "$SERVER_CPU"; REDIS_PID=$REPLY_PID
start_memcached "$MEMCACHED_PORT" "$RAW/memcached.log" "$SERVER_CPU"; MEMCACHED_PID=$REPLY_PID
SHOAL_PID=
SHOAL_MC_OK=0
SHOAL_THREADS=1 SHOAL_CPUS=$SERVER_CPU
RESTARTS=()
if [[ $HAVE_SHOAL == 1 ]]; then
    use_private_shoal_copy
    start_shoal "$SHOAL_PORT" "$SHOAL_MC_PORT" 1 "$RAW/shoal.log" "$SERVER_CPU"; SHOAL_PID=$REPLY_PID
fi

# ensure_alive TARGET: restart a server that died (noted in the report).
ensure_alive() {
    case "$1" in
        redis)
            kill -0 "$REDIS_PID" 2>/dev/null && return 0
            RESTARTS+=("redis-server died before $2: restarted")
            start_redis "$REDIS_PORT" "$RAW/redis-restart-${#RESTARTS[@]}.log" "$SERVER_CPU"; REDIS_PID=$REPLY_PID ;;
        memcached)
            kill -0 "$MEMCACHED_PID" 2>/dev/null && return 0
            RESTARTS+=("memcached died before $2: restarted")
            start_memcached "$MEMCACHED_PORT" "$RAW/memcached-restart-${#RESTARTS[@]}.log" "$SERVER_CPU"; MEMCACHED_PID=$REPLY_PID ;;
        shoal-*)
            kill -0 "$SHOAL_PID" 2>/dev/null && return 0
            RESTARTS+=("shoal-server died before $2 (see its log): restarted")
            start_shoal "$SHOAL_PORT" "$SHOAL_MC_PORT" "$SHOAL_THREADS" "$RAW/shoal-restart-${#RESTARTS[@]}.log" "$SHOAL_CPUS"
            SHOAL_PID=$REPLY_PID ;;
    esac
    log "warning: ${RESTARTS[-1]}"
}

# target NAME -> "port pid protocol"
target_info() {
    case "$1" in
        redis) echo "$REDIS_PORT $REDIS_PID resp" ;;
        shoal-resp) echo "$SHOAL_PORT $SHOAL_PID resp" ;;
        memcached) echo "$MEMCACHED_PORT $MEMCACHED_PID memcache" ;;
        shoal-mc) echo "$SHOAL_MC_PORT $SHOAL_PID memcache" ;;
    esac
}

# bench TARGET SIZE PIPELINE RATIO TAG [extra shoal-bench flags...]: prints the summary line.
bench() {
    local target=$1 size=$2 pipe=$3 ratio=$4 tag=$5; shift 5
    local port pid proto
    read -r port pid proto <<<"$(target_info "$target")"
    local json=$RAW/$tag-$target.json logf=$RAW/$tag-$target.log
    local line
    if ! taskset -c "$LOADGEN_CPU" "$SHOAL_BENCH_BIN" --host 127.0.0.1 --port "$port" --protocol "$proto" \
        --connections "$CONNECTIONS" --pipeline "$pipe" --ratio "$ratio" --data-size "$size" \
        --key-minimum 0 --key-maximum "$KEY_MAXIMUM" --key-pattern R --prefill --test-time "$DURATION" \
        --server-pid "$pid" --label "$target" --json-out "$json" --summary "$@" >"$logf" 2>&1; then
        log "warning: $target $tag failed: $(tail -1 "$logf")"
        echo "summary failed=1"
        return 0
    fi
    line=$(grep "^summary " "$logf" | tail -1 || true)
    echo "$line"
}

{
    echo "# Shoal capacity comparison — $STAMP"
    echo
    echo "- machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r)"
    echo "- servers pinned to core $SERVER_CPU, shoal-bench pinned to core $LOADGEN_CPU; $CONNECTIONS connections, keys key:%010d 0..$KEY_MAXIMUM prefilled, uniform random keys, $DURATION s per run, best of $REPEAT interleaved run(s) per target per cell"
    echo "- $(redis-server --version | awk '{ print $1, $2, $3 }'), $(memcached -V), shoal-server: $([[ $HAVE_SHOAL == 1 ]] && echo "$SHOAL_SERVER_BIN (--threads 1)" || echo 'NOT AVAILABLE — reference servers only')"
    [[ $HAVE_SHOAL == 1 && $SHOAL_MC_OK != 1 ]] && echo "- **shoal-server's memcache port did not answer: memcache rows are memcached only.**"
    echo "- SET:GET is memtier's --ratio: 1:10 = ten GETs per SET, 1:0 = SET only. Latency: send of the pipelined batch to arrival of each reply (µs)."
    echo "- server CPU µs/op: (utime+stime of the server process over the measured phase, /proc/PID/stat) / ops. Lower is better."
    echo "- gen CPU %: shoal-bench's own CPU over the run, % of one core (near 100 = the generator may be the limit, not the server)."
    echo "- shoal/ref columns: shoal's value divided by the reference server's in the same cell (µs/op < 1 and ops/s > 1 favour shoal)."
    echo
} >"$OUT_MD"

# ---------------------------------------------------------------- matrix
if [[ $MATRIX == 1 ]]; then
    {
        echo "## Matrix (server on 1 core)"
        echo
        echo "| target | proto | value B | pipeline | SET:GET | ops/s | p50 µs | p99 µs | server CPU µs/op | hit % | gen CPU % | shoal/ref µs/op | shoal/ref ops/s |"
        echo "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    } >>"$OUT_MD"
    cell=0
    for proto in $PROTOCOLS; do
        if [[ $proto == resp ]]; then ref=redis; mine=shoal-resp; else ref=memcached; mine=shoal-mc; fi
        for size in $SIZES; do
            for pipe in $PIPELINES; do
                for ratio in $RATIOS; do
                    cell=$((cell + 1))
                    tag=$(printf '%02d-%s-%s-p%s-r%s' "$cell" "$proto" "$size" "$pipe" "${ratio/:/to}")
                    targets=("$ref")
                    if [[ $HAVE_SHOAL == 1 && ( $proto == resp || $SHOAL_MC_OK == 1 ) ]]; then targets+=("$mine"); fi
                    # Interleave per cell; alternate who goes first to cancel drift.
                    if (( cell % 2 == 0 )) && [[ ${#targets[@]} == 2 ]]; then targets=("$mine" "$ref"); fi
                    declare -A res=()
                    for rep in $(seq "$REPEAT"); do
                        for t in "${targets[@]}"; do
                            log "cell $tag: $t (run $rep/$REPEAT)"
                            ensure_alive "$t" "$tag"
                            s=$(bench "$t" "$size" "$pipe" "$ratio" "$tag-run$rep")
                            # Best of REPEAT by ops/s: outside noise only ever lowers throughput.
                            if [[ -z ${res[$t]:-} ]] || awk -v a="$(field "$s" ops_per_sec)" -v b="$(field "${res[$t]}" ops_per_sec)" \
                                'BEGIN { exit !(a != "na" && (b == "na" || a + 0 > b + 0)) }'; then
                                res[$t]=$s
                            fi
                        done
                    done
                    for t in "$ref" "$mine"; do
                        [[ -n ${res[$t]:-} ]] || continue
                        s=${res[$t]}
                        if [[ $(field "$s" failed) == 1 ]]; then
                            echo "| $t | $proto | $size | $pipe | $ratio | FAILED | | | | | | | |" >>"$OUT_MD"
                            continue
                        fi
                        gets=$(field "$s" gets); hits=$(field "$s" hits)
                        hitpct=$(awk -v g="$gets" -v h="$hits" 'BEGIN { if (g + 0 == 0) print "—"; else printf "%.1f", 100 * h / g }')
                        rcpu="—"; rops="—"
                        if [[ $t == "$mine" && -n ${res[$ref]:-} ]]; then
                            rcpu=$(ratio_of "$(field "$s" cpu_us_per_op)" "$(field "${res[$ref]}" cpu_us_per_op)")
                            rops=$(ratio_of "$(field "$s" ops_per_sec)" "$(field "${res[$ref]}" ops_per_sec)")
                        fi
                        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
                            "$t" "$proto" "$size" "$pipe" "$ratio" "$(field "$s" ops_per_sec)" \
                            "$(field "$s" p50_us)" "$(field "$s" p99_us)" "$(field "$s" cpu_us_per_op)" \
                            "$hitpct" "$(field "$s" loadgen_cpu_pct)" "$rcpu" "$rops" >>"$OUT_MD"
                    done
                    unset res
                done
            done
        done
    done
    echo >>"$OUT_MD"
fi

# ---------------------------------------------------------------- cross-check
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
proc_ticks() { awk '{ s = $0; sub(/.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$1/stat"; }
# rb_run PORT PID PIPELINE TEST: "requests/s server-CPU-µs/op" of one redis-benchmark test
rb_run() {
    local t0 t1 rps
    t0=$(proc_ticks "$2")
    rps=$(timeout 300 taskset -c "$LOADGEN_CPU" redis-benchmark -h 127.0.0.1 -p "$1" -c "$CONNECTIONS" -n "$CROSSCHECK_REQUESTS" \
        -r "$KEY_MAXIMUM" -t "$4" -d 32 -P "$3" --csv 2>/dev/null |
        awk -F'","' -v t="$(echo "$4" | tr a-z A-Z)" '$1 == "\"" t { print $2; exit }')
    t1=$(proc_ticks "$2" 2>/dev/null || echo "$t0")
    awk -v r="${rps:-na}" -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$CROSSCHECK_REQUESTS" \
        'BEGIN { printf "%s %.3f\n", (r == "na" ? "na" : sprintf("%.0f", r)), d * 1e6 / hz / n }'
}
if [[ $CROSSCHECK == 1 ]]; then
    {
        echo "## Cross-check: redis-benchmark vs shoal-bench (RESP, 32 B, $CONNECTIONS connections, both pinned to core $LOADGEN_CPU)"
        echo
        echo "redis-benchmark: \`-c $CONNECTIONS -n $CROSSCHECK_REQUESTS -r $KEY_MAXIMUM -d 32 -P N -t set|get\`; shoal-bench: the same target, SET-only (1:0) or GET-only (0:1), $DURATION s, right after; best of $REPEAT each."
        echo "sb/rb near 1.00 means shoal-bench measures what redis-benchmark measures. The server's CPU µs/op under each generator shows whether the server did the same work per request (redis-benchmark's figure includes its connection setup)."
        echo
        echo "| target | pipeline | test | redis-benchmark ops/s | shoal-bench ops/s | sb/rb | server CPU µs/op (rb) | server CPU µs/op (sb) |"
        echo "|---|---:|---|---:|---:|---:|---:|---:|"
    } >>"$OUT_MD"
    cc_targets=(redis)
    [[ $HAVE_SHOAL == 1 ]] && cc_targets+=(shoal-resp)
    for pipe in 1 16; do
        for test in set get; do
            [[ $test == set ]] && cc_ratio=1:0 || cc_ratio=0:1
            for t in "${cc_targets[@]}"; do
                log "cross-check $t pipeline $pipe $test"
                ensure_alive "$t" "cross-check"
                read -r port pid _ <<<"$(target_info "$t")"
                rb_ops=na rb_cpu=na sb="summary"
                for rep in $(seq "$REPEAT"); do # best of REPEAT, interleaved
                    read -r o c <<<"$(rb_run "$port" "$pid" "$pipe" "$test")"
                    if [[ $o != na ]] && { [[ $rb_ops == na ]] || (( o > rb_ops )); }; then rb_ops=$o rb_cpu=$c; fi
                    x=$(bench "$t" 32 "$pipe" "$cc_ratio" "cc-p$pipe-$test-run$rep")
                    if awk -v a="$(field "$x" ops_per_sec)" -v b="$(field "$sb" ops_per_sec)" \
                        'BEGIN { exit !(a != "na" && (b == "na" || a + 0 > b + 0)) }'; then sb=$x; fi
                done
                printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$t" "$pipe" "${test^^}" \
                    "$rb_ops" "$(field "$sb" ops_per_sec)" "$(ratio_of "$(field "$sb" ops_per_sec)" "$rb_ops")" \
                    "$rb_cpu" "$(field "$sb" cpu_us_per_op)" >>"$OUT_MD"
            done
        done
    done
    echo >>"$OUT_MD"
fi

# ---------------------------------------------------------------- both cores
if [[ $BOTH_CORES == 1 && $HAVE_SHOAL == 1 ]]; then
    {
        echo "## Both cores: shoal-server --threads 1 (core 0) vs --threads 2 (unpinned)"
        echo
        echo "shoal-bench runs unpinned with --threads 2 in both rows, so with --threads 2 the server and the generator compete for the same 2 cores: this shows scaling headroom, not a clean 2-core capacity."
        echo
        echo "| shoal threads | proto | value B | pipeline | SET:GET | ops/s | p50 µs | p99 µs | server CPU µs/op |"
        echo "|---:|---|---:|---:|---|---:|---:|---:|---:|"
    } >>"$OUT_MD"
    bc_run() { # bc_run THREADS
        local threads=$1 proto target s
        for proto in resp memcache; do
            [[ $proto == memcache && $SHOAL_MC_OK != 1 ]] && continue
            [[ $proto == resp ]] && target=shoal-resp || target=shoal-mc
            for pipe in 1 16; do
                log "both-cores: shoal --threads $threads $proto pipeline $pipe"
                ensure_alive "$target" "both-cores"
                s=$(LOADGEN_CPU=0,1 bench "$target" 32 "$pipe" 1:10 "bc-t$threads-$proto-p$pipe" --threads 2)
                printf '| %s | %s | 32 | %s | 1:10 | %s | %s | %s | %s |\n' "$threads" "$proto" "$pipe" \
                    "$(field "$s" ops_per_sec)" "$(field "$s" p50_us)" "$(field "$s" p99_us)" \
                    "$(field "$s" cpu_us_per_op)" >>"$OUT_MD"
            done
        done
    }
    bc_run 1
    stop_pid "$SHOAL_PID"
    SHOAL_THREADS=2 SHOAL_CPUS=all
    start_shoal "$SHOAL_PORT" "$SHOAL_MC_PORT" 2 "$RAW/shoal-2threads.log" all; SHOAL_PID=$REPLY_PID
    bc_run 2
    echo >>"$OUT_MD"
elif [[ $BOTH_CORES == 1 ]]; then
    echo "## Both cores: skipped (no shoal-server)" >>"$OUT_MD"
fi

if [[ ${#RESTARTS[@]} -gt 0 ]]; then
    {
        echo "**Server restarts during this run** (a restarted server lost its prefill; the next run prefills again):"
        printf -- '- %s\n' "${RESTARTS[@]}"
        echo
    } >>"$OUT_MD"
fi
echo "Raw JSON and logs: bench/results/$STAMP-raw/" >>"$OUT_MD"
cat "$OUT_MD"
log "wrote $OUT_MD"
exit 0
}
