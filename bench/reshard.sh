#!/usr/bin/env bash
# Live resharding under load: 3 -> 4 shoal-server shards behind shoal-proxy, on one
# machine. See bench/README.md, "Live resharding".
#
#   bash bench/reshard.sh [--no-build] [--skip-noload] [--skip-load]
#
# 1. no load: 4 shoal-servers (3 in the pool, 1 spare) and shoal-proxy --threads 1, KEYS
#    keys of VALUE_SIZE B preloaded through the proxy, then `SHOAL RESHARD ADD` of the
#    spare with nothing else running: the raw move rate (unthrottled unless RATE is set).
# 2. under load: the same from fresh servers, with shoal-bench running through the proxy
#    (RATIO SET:GET, CONNECTIONS, PIPELINE, uniform keys over the preloaded range,
#    --timeline every INTERVAL_MS); after STEADY s the ADD; the load goes on AFTER s past
#    the end of the move. STATUS is polled every POLL_MS into a CSV.
# After each move: every key is read back through the proxy (a pipelined GET sweep by
# shoal-bench, each key once) and the 4 shards' DBSIZE must sum to KEYS.
# Writes bench/results/reshard-<stamp>.txt (summary), reshard-<stamp>-*.csv (timeline,
# status polls), reshard-<stamp>-raw/ (logs, configs) and bench/results/reshard-timeline.svg
# (bench/plot_timeline.py).
#
# Placement (PIN=split, default): the 4 shards and the proxy (which runs the migrator) on
# core 0, shoal-bench and the STATUS poller on core 1, as bench/proxy.sh. PIN=none: no
# taskset.
#
# Environment: KEYS (1000000), VALUE_SIZE (100), STEADY (10 s), AFTER (10 s), MAX_MOVE
# (300 s: a move still running then is reported as unfinished), WARMUP (1 s of load left
# out of the steady window), RATIO (1:9 SET:GET, shoal-bench's order), CONNECTIONS (50),
# PIPELINE (1), RATE (empty = unthrottled; "KEYS_PER_S [BYTES_PER_S]" for SHOAL RESHARD
# RATE), POLL_MS (250), INTERVAL_MS (250), PORT_BASE (17400: uses PORT_BASE+1..+20),
# PIN (split|none), QUIET_PCT (10) / QUIET_MAX_WAIT (60: before each run wait at most
# this long for other processes to use < QUIET_PCT % of a core), SHOAL_SERVER_BIN,
# SHOAL_PROXY_BIN, SHOAL_BENCH_BIN, CARGO_TARGET_DIR, PYTHON (python3), GRACE_S (0.5: the
# proxy's wait before its first SCAN with no pool timeout; 1 before commit c9068dd),
# BUILT_FROM (what the report says the binaries were built from).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# One compound command: bash parses it all before running (edits during a run are safe).
{

SHOAL_PROXY_BIN=${SHOAL_PROXY_BIN:-$TARGET_DIR/release/shoal-proxy}
KEYS=${KEYS:-1000000}
VALUE_SIZE=${VALUE_SIZE:-100}
STEADY=${STEADY:-10}
AFTER=${AFTER:-10}
MAX_MOVE=${MAX_MOVE:-300}
WARMUP=${WARMUP:-1}
RATIO=${RATIO:-1:9}
CONNECTIONS=${CONNECTIONS:-50}
PIPELINE=${PIPELINE:-1}
RATE=${RATE:-}
POLL_MS=${POLL_MS:-250}
INTERVAL_MS=${INTERVAL_MS:-250}
PORT_BASE=${PORT_BASE:-17400}
PIN=${PIN:-split}
QUIET_PCT=${QUIET_PCT:-10}
QUIET_MAX_WAIT=${QUIET_MAX_WAIT:-60}
PYTHON=${PYTHON:-python3}
GRACE_S=${GRACE_S:-0}

BUILD=1 NOLOAD=1 LOAD=1
for arg in "$@"; do
    case "$arg" in
        --no-build) BUILD=0 ;;
        --skip-noload) NOLOAD=0 ;;
        --skip-load) LOAD=0 ;;
        -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) die "unknown argument $arg (see --help)" ;;
    esac
done
isint() { [[ $1 =~ ^[0-9]+$ ]]; }
isint "$KEYS" && ((KEYS >= 1000 && KEYS <= 100000000)) || die "KEYS must be 1000..100000000"
isint "$VALUE_SIZE" && ((VALUE_SIZE >= 1 && VALUE_SIZE <= 1048576)) || die "VALUE_SIZE must be 1..1048576"
for v in STEADY AFTER MAX_MOVE WARMUP; do isint "${!v}" || die "$v must be whole seconds"; done
((STEADY > WARMUP)) || die "STEADY must be more than WARMUP"
((STEADY + MAX_MOVE + AFTER <= 580)) || die "STEADY + MAX_MOVE + AFTER must be <= 580 s (shoal-bench's bound is 600)"
isint "$CONNECTIONS" && ((CONNECTIONS >= 1 && CONNECTIONS <= 1000)) || die "CONNECTIONS must be 1..1000"
isint "$PIPELINE" && ((PIPELINE >= 1 && PIPELINE <= 1000)) || die "PIPELINE must be 1..1000"
isint "$POLL_MS" && ((POLL_MS >= 50 && POLL_MS <= 5000)) || die "POLL_MS must be 50..5000"
isint "$INTERVAL_MS" && ((INTERVAL_MS >= 50 && INTERVAL_MS <= 5000)) || die "INTERVAL_MS must be 50..5000"
isint "$PORT_BASE" && ((PORT_BASE >= 1024 && PORT_BASE <= 65500)) || die "PORT_BASE must be 1024..65500"
[[ -z $RATE || $RATE =~ ^[0-9]+( [0-9]+)?$ ]] || die "RATE must be empty, 'KEYS_PER_S' or 'KEYS_PER_S BYTES_PER_S'"
[[ $PIN == split || $PIN == none ]] || die "PIN must be split or none"
[[ $GRACE_S =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "GRACE_S must be seconds"
isint "$QUIET_MAX_WAIT" && ((QUIET_MAX_WAIT <= 600)) || die "QUIET_MAX_WAIT must be 0..600"
[[ $(nproc) -ge 2 || $PIN == none ]] || die "PIN=split needs 2 cores"
command -v redis-cli >/dev/null || die "redis-cli not installed"

if [[ $BUILD == 1 ]]; then
    log "building shoal-server, shoal-proxy, shoal-bench (release, CARGO_TARGET_DIR=$TARGET_DIR)"
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -q -p shoal-server -p shoal-proxy -p shoal-bench) ||
        die "the binaries do not build"
fi
for b in "$SHOAL_SERVER_BIN" "$SHOAL_PROXY_BIN" "$SHOAL_BENCH_BIN"; do
    [[ -x $b ]] || die "no $b (build it or set SHOAL_SERVER_BIN / SHOAL_PROXY_BIN / SHOAL_BENCH_BIN)"
done

# What the binaries were built from: the checkout's HEAD now (others may commit while this
# runs) and the binaries' modification times.
SOURCE_DESC="HEAD $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?') ($(git -C "$ROOT" status --porcelain -- server proxy 2>/dev/null | wc -l | tr -d ' ') uncommitted paths under server/ proxy/); binaries built $(date -u -r "$SHOAL_SERVER_BIN" +%Y-%m-%dT%H:%M:%SZ) (server), $(date -u -r "$SHOAL_PROXY_BIN" +%Y-%m-%dT%H:%M:%SZ) (proxy)"
BUILT_FROM=${BUILT_FROM:-}

# Private copies: other sessions on a shared machine stop their own test servers by name.
PRIVATE_DIR=$(mktemp -d /tmp/shoal-reshardbench.XXXXXX)
cp "$SHOAL_SERVER_BIN" "$PRIVATE_DIR/rbench-shoal-server"
cp "$SHOAL_PROXY_BIN" "$PRIVATE_DIR/rbench-shoal-proxy"
cp "$SHOAL_BENCH_BIN" "$PRIVATE_DIR/rbench-shoal-bench"
SERVER_BIN=$PRIVATE_DIR/rbench-shoal-server
PROXY_BIN=$PRIVATE_DIR/rbench-shoal-proxy
BENCH_BIN=$PRIVATE_DIR/rbench-shoal-bench
cd "$PRIVATE_DIR"

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS_DIR=$ROOT/bench/results
RAW=$RESULTS_DIR/reshard-$STAMP-raw
mkdir -p "$RAW"
OUT_TXT=$RESULTS_DIR/reshard-$STAMP.txt
SVG=$RESULTS_DIR/reshard-timeline.svg
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

SERVER_CPU=0 GEN_CPU=1
NCPU=$(nproc)
# The script itself (and so its pollers: redis-cli, awk, date) stays on the generator's core.
[[ $PIN == split ]] && taskset -cp "$GEN_CPU" $$ >/dev/null
pin() { # pin CPU CMD...: run CMD pinned (PIN=split) or not
    local c=$1; shift
    if [[ $PIN == split ]]; then taskset -c "$c" "$@"; else "$@"; fi
}
# pin_bg CPU CMD... &: the same for a background job: exec, so that $! is CMD's own pid
# (taskset execs too) and stopping it stops the process itself.
pin_bg() {
    local c=$1; shift
    if [[ $PIN == split ]]; then exec taskset -c "$c" "$@"; else exec "$@"; fi
}
SHARD_PORTS=($((PORT_BASE + 1)) $((PORT_BASE + 2)) $((PORT_BASE + 3)) $((PORT_BASE + 4)))
MC_PORTS=($((PORT_BASE + 11)) $((PORT_BASE + 12)) $((PORT_BASE + 13)) $((PORT_BASE + 14)))
PROXY_PORT=$((PORT_BASE + 20))

proc_ticks() { awk '{ s = $0; sub(/.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$1/stat"; }
ticks_sum() { local t=0 p; for p in "$@"; do t=$((t + $(proc_ticks "$p" 2>/dev/null || echo 0))); done; echo "$t"; }
cpu_busy() { awk '/^cpu / { print $2 + $3 + $4; exit }' /proc/stat; }
now() { date +%s.%N; }
self_ticks() { awk '{ s = $0; sub(/.*\) /, "", s); split(s, f, " "); print f[12] + f[13] + f[14] + f[15] }' "/proc/$$/stat"; }
# sample: "wall shard0..3 proxy bench self cpu0-busy cpu0-total cpu1-busy cpu1-total all-usr+sys"
# (process ticks: utime+stime; self: this script with its reaped helpers (redis-cli, awk..);
# core busy: every non-idle column of /proc/stat; all-usr+sys: user+nice+system of all CPUs).
sample() {
    local p out
    out=$(now)
    for p in "${SHARD_PIDS[@]}" "$PROXY_PID" "${BENCH_PID:-0}"; do out+=" $(proc_ticks "$p" 2>/dev/null || echo 0)"; done
    out+=" $(self_ticks)"
    out+=" $(awk '$1 == "cpu0" || $1 == "cpu1" { b = $2 + $3 + $4 + $7 + $8 + $9; printf "%d %d ", b, b + $5 + $6 }
                  $1 == "cpu" { a = $2 + $3 + $4 } END { print a }' /proc/stat)"
    echo "$out"
}
# cpu_between "SAMPLE-A" "SAMPLE-B": CPU over the interval, in % of one core.
cpu_between() {
    awk -v hz="$CLK_TCK" -v A="$1" -v B="$2" 'BEGIN {
        na = split(A, a, " "); split(B, b, " "); w = b[1] - a[1]; if (w <= 0) w = 1e-9
        for (i = 2; i <= 8; i++) d[i] = (b[i] - a[i]) / hz / w * 100
        ours = 0; for (i = 2; i <= 8; i++) ours += b[i] - a[i]
        c0 = (b[10] - a[10]) > 0 ? 100 * (b[9] - a[9]) / (b[10] - a[10]) : 0
        c1 = (b[12] - a[12]) > 0 ? 100 * (b[11] - a[11]) / (b[12] - a[12]) : 0
        others = ((b[13] - a[13]) - ours) / hz / w * 100; if (others < 0) others = 0
        printf "shards %.0f/%.0f/%.0f/%.0f %%, proxy %.0f %%, shoal-bench %.0f %%, script %.0f %%; core 0 busy %.0f %%, core 1 busy %.0f %%; others %.0f %%",
            d[2], d[3], d[4], d[5], d[6], d[7], d[8], c0, c1, others }'
}
fsub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }
# wait_quiet: wait (at most QUIET_MAX_WAIT s) until processes this script did not start
# use less than QUIET_PCT % of one core over 1 s; the machine is shared.
wait_quiet() {
    local start=$SECONDS o0 c0 x
    while ((SECONDS - start < QUIET_MAX_WAIT)); do
        o0=$(ticks_sum "${STARTED_PIDS[@]}") c0=$(cpu_busy)
        sleep 1
        x=$(( ($(cpu_busy) - c0 - ($(ticks_sum "${STARTED_PIDS[@]}") - o0)) * 100 / CLK_TCK ))
        ((x < QUIET_PCT)) && return 0
        ((SECONDS - start < 2)) && log "machine busy (others use ${x} % of a core): waiting up to ${QUIET_MAX_WAIT} s"
    done
    log "still busy after ${QUIET_MAX_WAIT} s: running anyway"
}

write_pool() { # write_pool FILE: the 3-shard pool (the spare is added live)
    {
        echo "redis:"
        echo "  listen: 127.0.0.1:$PROXY_PORT"
        echo "  hash: fnv1a_64"
        echo "  distribution: ketama"
        echo "  redis: true"
        echo "  backend: shoal"
        echo "  servers:"
        for i in 0 1 2; do echo "   - 127.0.0.1:${SHARD_PORTS[$i]}:1 shard$i"; done
    } >"$1"
}

# start_cluster TAG: 4 empty shards + the proxy; sets SHARD_PIDS, PROXY_PID, PROXY_LOG.
start_cluster() {
    local tag=$1 i
    SHARD_PIDS=()
    for i in 0 1 2 3; do
        ensure_free "${SHARD_PORTS[$i]}" "${MC_PORTS[$i]}"
        pin_bg "$SERVER_CPU" "$SERVER_BIN" --bind 127.0.0.1 --threads 1 --port "${SHARD_PORTS[$i]}" \
            --memcache-port "${MC_PORTS[$i]}" --metrics-port 0 >"$RAW/$tag-shard$i.log" 2>&1 &
        STARTED_PIDS+=("$!") SHARD_PIDS+=("$!")
    done
    for i in 0 1 2 3; do
        wait_resp "${SHARD_PORTS[$i]}" "${SHARD_PIDS[$i]}" || { tail -5 "$RAW/$tag-shard$i.log" >&2; die "shard$i did not answer"; }
    done
    write_pool "$RAW/$tag-pool.yml"
    rm -f "$PRIVATE_DIR/$tag.reshard"
    ensure_free "$PROXY_PORT"
    PROXY_LOG=$RAW/$tag-proxy.log
    pin_bg "$SERVER_CPU" "$PROXY_BIN" -c "$RAW/$tag-pool.yml" --threads 1 --metrics-port 0 --loglevel info \
        --state-file "$PRIVATE_DIR/$tag.reshard" >"$PROXY_LOG" 2>&1 &
    PROXY_PID=$!
    STARTED_PIDS+=("$PROXY_PID")
    for _ in $(seq 150); do
        kill -0 "$PROXY_PID" 2>/dev/null || { tail -5 "$PROXY_LOG" >&2; die "shoal-proxy exited"; }
        [[ $(timeout 2 redis-cli -h 127.0.0.1 -p "$PROXY_PORT" exists rbench:ready 2>/dev/null) == 0 ]] && return 0
        sleep 0.1
    done
    die "shoal-proxy did not answer"
}
stop_cluster() {
    local p
    for p in "${SHARD_PIDS[@]}" "$PROXY_PID"; do stop_pid "$p"; done
}
pcli() { timeout 5 redis-cli -h 127.0.0.1 -p "$PROXY_PORT" "$@"; }
dbsizes() { local p; for p in "${SHARD_PORTS[@]}"; do timeout 5 redis-cli -h 127.0.0.1 -p "$p" dbsize; done | paste -sd' '; }

# preload TAG: SET key:%010d 0..KEYS-1 through the proxy (pipelined); sets PRELOAD_LINE.
preload() {
    log "$1: preloading $KEYS keys x $VALUE_SIZE B through the proxy"
    pin "$GEN_CPU" "$BENCH_BIN" --host 127.0.0.1 --port "$PROXY_PORT" --connections 50 --prefill-pipeline 64 \
        --key-minimum 0 --key-maximum $((KEYS - 1)) --data-size "$VALUE_SIZE" --load-only \
        >"$RAW/$1-preload.log" 2>&1 || { tail -3 "$RAW/$1-preload.log" >&2; die "preload failed"; }
    PRELOAD_LINE=$(grep '^prefill:' "$RAW/$1-preload.log" | tail -1)
    log "$1: $PRELOAD_LINE"
    local sizes sum
    sizes=$(dbsizes)
    sum=$(echo "$sizes" | awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; print s }')
    [[ $sum == "$KEYS" ]] || die "after the preload the shards hold $sum keys ($sizes), not $KEYS"
    log "$1: keys per shard (shard0..3): $sizes"
}

# reshard_add TAG: RATE (if any) and ADD of the spare; sets T_ADD (unix s).
reshard_add() {
    local r
    if [[ -n $RATE ]]; then
        # shellcheck disable=SC2086
        r=$(pcli SHOAL RESHARD RATE $RATE)
        [[ $r == OK ]] || die "SHOAL RESHARD RATE $RATE answered: $r"
    fi
    T_ADD=$(now)
    r=$(pcli SHOAL RESHARD ADD "127.0.0.1:${SHARD_PORTS[3]}:1" shard3)
    [[ $r == OK ]] || die "SHOAL RESHARD ADD answered: $r"
    log "$1: SHOAL RESHARD ADD 127.0.0.1:${SHARD_PORTS[3]}:1 shard3 -> $r"
}

# poll_status TAG CSV T0: poll STATUS every POLL_MS until done/failed or MAX_MOVE s;
# rows: unix_s,t_seconds (since T0),state,keys_moved,bytes_moved,keys_scanned,keys_total,
# elapsed_seconds. Sets T_DONE (first poll that saw done/failed, or empty), FINAL_STATE,
# MOVED_KEYS, MOVED_BYTES, STATUS_ERROR.
poll_status() {
    local tag=$1 csv=$2 t0=$3 deadline out
    STATUS_CSV=$csv
    echo "unix_s,t_seconds,state,keys_moved,bytes_moved,keys_scanned,keys_total,elapsed_seconds" >"$csv"
    echo "$T_ADD,$(fsub "$T_ADD" "$t0"),add,0,0,0,0,0" >>"$csv"
    deadline=$(awk -v a="$T_ADD" -v m="$MAX_MOVE" 'BEGIN { printf "%.3f", a + m }')
    T_DONE="" FINAL_STATE=unfinished
    # One process with one connection (bench/status_poll.py): a shell loop forking
    # redis-cli/awk/date every poll disturbed the load generator's core.
    out=$(pin "$GEN_CPU" "$PYTHON" "$ROOT/bench/status_poll.py" "$PROXY_PORT" "$csv" "$t0" "$deadline" "$POLL_MS" "$PROXY_PID") || true
    local first
    first=$(head -1 <<<"$out")
    STATUS_ERROR=$(sed -n 2p <<<"$out")
    read -r T_DONE FINAL_STATE MOVED_KEYS MOVED_BYTES <<<"$first"
    case $FINAL_STATE in
        done|failed) ;;
        proxy-died) T_DONE="" FINAL_STATE="proxy died" ;;
        *) T_DONE="" FINAL_STATE=unfinished; log "$tag: the move is still running after MAX_MOVE=$MAX_MOVE s" ;;
    esac
}

# log_times: the proxy's own timestamps of "reshard of redis started" / "finished" (its log
# is tracing's RFC 3339 UTC); sets LOG_START, LOG_END (unix s) or empty.
log_times() {
    local a b
    a=$(sed 's/\x1b\[[0-9;]*m//g' "$PROXY_LOG" | grep -a 'reshard of redis started' | head -1 | awk '{ print $1 }') || true
    b=$(sed 's/\x1b\[[0-9;]*m//g' "$PROXY_LOG" | grep -a 'reshard of redis finished' | head -1 | awk '{ print $1 }') || true
    LOG_START="" LOG_END=""
    [[ -n $a ]] && LOG_START=$(date -u -d "$a" +%s.%N 2>/dev/null || true)
    [[ -n $b ]] && LOG_END=$(date -u -d "$b" +%s.%N 2>/dev/null || true)
    return 0
}

# verify TAG: every key read once through the proxy (GET sweep: connection i of C reads its
# own slice of KEYS/C keys, pipelined) and DBSIZE of the 4 shards; sets VERIFY_LINE.
verify() {
    local tag=$1 c line gets hits misses errors sizes sum
    for c in 50 40 25 20 16 10 8 5 4 2 1; do ((KEYS % c == 0)) && break; done
    pin "$GEN_CPU" "$BENCH_BIN" --host 127.0.0.1 --port "$PROXY_PORT" --connections "$c" --pipeline 64 \
        --ratio 0:1 --key-pattern S --key-minimum 0 --key-maximum $((KEYS - 1)) --data-size "$VALUE_SIZE" \
        --requests $((KEYS / c)) --summary >"$RAW/$tag-verify.log" 2>&1 || true
    line=$(grep '^summary ' "$RAW/$tag-verify.log" | tail -1 || true)
    gets=$(field "$line" gets) hits=$(field "$line" hits) misses=$(field "$line" misses) errors=$(field "$line" errors)
    sizes=$(dbsizes)
    sum=$(echo "$sizes" | awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; print s }')
    VERIFY_LINE="read back through the proxy: $hits of $KEYS found (GETs $gets, misses $misses, errors $errors); DBSIZE shard0..3: $sizes = $sum (expected $KEYS)"
    VERIFY_OK=0
    [[ $hits == "$KEYS" && $gets == "$KEYS" && $sum == "$KEYS" ]] && VERIFY_OK=1
    log "$tag: $VERIFY_LINE"
}

# move_figures TAG: MB/s over the ADD->done wall time and over the proxy's own
# started->finished minus its pre-scan grace (GRACE_S); sets MOVE_* variables.
move_figures() {
    log_times
    MOVE_WALL=na MOVE_MBS=na MOVE_LOG=na MOVE_COPY=na MOVE_COPY_MBS=na
    if [[ -n $T_DONE ]]; then
        MOVE_WALL=$(fsub "$T_DONE" "$T_ADD")
        MOVE_MBS=$(awk -v b="$MOVED_BYTES" -v s="$MOVE_WALL" 'BEGIN { printf "%.1f", b / 1e6 / s }')
    fi
    # Cross-check of GRACE_S: the first STATUS poll that saw a key scanned (after ADD).
    FIRST_SCAN=$(awk -F, -v a="$T_ADD" 'NR > 2 && $6 > 0 { printf "%.2f", $1 - a; exit }' "$STATUS_CSV")
    if [[ -n $LOG_START && -n $LOG_END ]]; then
        MOVE_LOG=$(fsub "$LOG_END" "$LOG_START")
        # The proxy waits the pool's timeout clamped to 0.2..2 s (GRACE_S: 0.5 s when unset
        # since commit c9068dd, 1 s before) before the first SCAN: the copy itself is the rest.
        MOVE_COPY=$(awk -v s="$MOVE_LOG" -v g="$GRACE_S" 'BEGIN { printf "%.3f", s - g }')
        MOVE_COPY_MBS=$(awk -v b="$MOVED_BYTES" -v s="$MOVE_COPY" 'BEGIN { if (s > 0) printf "%.1f", b / 1e6 / s; else print "na" }')
    fi
}

declare -A R=()

# ---------------------------------------------------------------- 1. no load
if [[ $NOLOAD == 1 ]]; then
    log "=== 1. move with no load (raw rate)"
    start_cluster noload
    preload noload
    R[noload_preload]=$PRELOAD_LINE
    wait_quiet
    BENCH_PID=0
    S0=$(sample)
    reshard_add noload
    poll_status noload "$RAW/noload-status.csv" "$T_ADD"
    R[noload_cpu]=$(cpu_between "$S0" "$(sample)")
    move_figures
    R[noload_state]=$FINAL_STATE R[noload_keys]=${MOVED_KEYS:-0} R[noload_bytes]=${MOVED_BYTES:-0}
    R[noload_wall]=$MOVE_WALL R[noload_mbs]=$MOVE_MBS R[noload_log]=$MOVE_LOG R[noload_copy]=$MOVE_COPY
    R[noload_copy_mbs]=$MOVE_COPY_MBS R[noload_error]=${STATUS_ERROR:-} R[noload_first_scan]=$FIRST_SCAN
    log "noload: $FINAL_STATE, ${MOVED_KEYS:-0} keys / ${MOVED_BYTES:-0} B in $MOVE_WALL s (ADD->done poll) = $MOVE_MBS MB/s; proxy log: $MOVE_LOG s, copy $MOVE_COPY s = $MOVE_COPY_MBS MB/s"
    verify noload
    R[noload_verify]=$VERIFY_LINE R[noload_verify_ok]=$VERIFY_OK
    cp "$RAW/noload-status.csv" "$RESULTS_DIR/reshard-$STAMP-noload-status.csv"
    stop_cluster
fi

# ---------------------------------------------------------------- 2. under load
if [[ $LOAD == 1 ]]; then
    log "=== 2. move under load"
    start_cluster load
    preload load
    R[load_preload]=$PRELOAD_LINE
    wait_quiet
    TL=$RAW/load-timeline.csv
    STOP=$PRIVATE_DIR/stop-load
    rm -f "$STOP" "$TL"
    BENCH_SECS=$((STEADY + MAX_MOVE + AFTER + 10))
    log "load: shoal-bench ratio $RATIO (SET:GET), $CONNECTIONS conns, pipeline $PIPELINE, $VALUE_SIZE B, keys 0..$((KEYS - 1)) uniform"
    pin_bg "$GEN_CPU" "$BENCH_BIN" --host 127.0.0.1 --port "$PROXY_PORT" --connections "$CONNECTIONS" \
        --pipeline "$PIPELINE" --ratio "$RATIO" --data-size "$VALUE_SIZE" --key-minimum 0 \
        --key-maximum $((KEYS - 1)) --key-pattern R --test-time "$BENCH_SECS" --timeline "$TL" \
        --timeline-interval-ms "$INTERVAL_MS" --reconnect --stop-file "$STOP" --summary \
        --json-out "$RAW/load-bench.json" >"$RAW/load-bench.log" 2>&1 &
    BENCH_PID=$!
    STARTED_PIDS+=("$BENCH_PID")
    # t0 of the timeline: its first row's unix_s minus its t_seconds.
    for _ in $(seq 100); do
        [[ -s $TL && $(wc -l <"$TL") -ge 2 ]] && break
        kill -0 "$BENCH_PID" 2>/dev/null || { cat "$RAW/load-bench.log" >&2; die "shoal-bench exited"; }
        sleep 0.1
    done
    [[ $(wc -l <"$TL") -ge 2 ]] || die "no timeline row after 10 s"
    BENCH_T0=$(awk -F, 'NR == 2 { printf "%.3f", $11 - $1 }' "$TL")
    S_STEADY=$(sample)
    sleep "$(awk -v t0="$BENCH_T0" -v s="$STEADY" -v n="$(now)" 'BEGIN { d = t0 + s - n; if (d < 0) d = 0; printf "%.3f", d }')"
    S_ADD=$(sample)
    reshard_add load
    poll_status load "$RAW/load-status.csv" "$BENCH_T0"
    S_DONE=$(sample)
    move_figures
    R[load_state]=$FINAL_STATE R[load_keys]=${MOVED_KEYS:-0} R[load_bytes]=${MOVED_BYTES:-0}
    R[load_wall]=$MOVE_WALL R[load_mbs]=$MOVE_MBS R[load_log]=$MOVE_LOG R[load_copy]=$MOVE_COPY
    R[load_copy_mbs]=$MOVE_COPY_MBS R[load_error]=${STATUS_ERROR:-} R[load_first_scan]=$FIRST_SCAN
    # The copy phase (keys actually moving): the proxy's "started" + its grace ..
    # "finished"; without the log times, the whole ADD..done window.
    COPY_START=$T_ADD COPY_END=${T_DONE:-$(now)}
    if [[ -n $LOG_START && -n $LOG_END ]]; then
        COPY_START=$(awk -v a="$LOG_START" -v g="$GRACE_S" 'BEGIN { printf "%.3f", a + g }') COPY_END=$LOG_END
    fi
    log "load: $FINAL_STATE, ${MOVED_KEYS:-0} keys / ${MOVED_BYTES:-0} B in $MOVE_WALL s = $MOVE_MBS MB/s; letting the load run $AFTER s more"
    sleep "$AFTER"
    S_END=$(sample)
    touch "$STOP"
    wait "$BENCH_PID" || log "warning: shoal-bench exited with $? (see $RAW/load-bench.log)"
    R[cpu_steady]=$(cpu_between "$S_STEADY" "$S_ADD")
    R[cpu_move]=$(cpu_between "$S_ADD" "$S_DONE")
    R[cpu_after]=$(cpu_between "$S_DONE" "$S_END")
    printf '%s\n' "$S_STEADY" "$S_ADD" "$S_DONE" "$S_END" >"$RAW/load-cpu-samples.txt"
    R[bench_summary]=$(grep '^summary ' "$RAW/load-bench.log" | tail -1 || true)
    verify load
    R[load_verify]=$VERIFY_LINE R[load_verify_ok]=$VERIFY_OK
    stop_cluster

    # Windows over the timeline (rows are intervals ending at t_seconds; unix_s aligns them
    # with the ADD and the end of the move):
    #   steady: intervals inside [t0 + WARMUP, ADD]
    #   move:   intervals overlapping [ADD, done]
    #   copy:   intervals overlapping [proxy log "started" + GRACE_S, "finished"]
    #   after:  intervals inside [done + 1 s, end]
    END_OF_MOVE=${T_DONE:-$(now)}
    read -r -a W < <(awk -F, -v t0="$BENCH_T0" \
        -v wu="$WARMUP" -v a="$T_ADD" -v d="$END_OF_MOVE" -v ca="$COPY_START" -v cd="$COPY_END" '
        function add(w) { n[w]++; ops[w] += $2; gets[w] += $7; hits[w] += $8; err[w] += $10; span[w] += ($1 - ps)
                          if ($2 > 0) { p99s[w] += $5; np[w]++; if ($5 > p99max[w]) p99max[w] = $5; if ($6 > mx[w]) mx[w] = $6 }
                          else zero[w]++ }
        NR == 1 { ps = 0; next }
        { end = $11; start = end - ($1 - ps)
          if (start >= t0 + wu - 0.001 && end <= a + 0.001) add("s")
          if (end > a && start < d) add("m")
          if (end > ca && start < cd) add("c")
          if (start >= d + 1 && NR > 1) add("f")
          ps = $1 }
        END {
          for (k = 1; k <= 4; k++) { w = substr("smfc", k, 1)
            printf "%d %.0f %.1f %.1f %.1f %.3f %d %d %d %.2f ", n[w], (span[w] > 0 ? ops[w] / span[w] : 0),
              (np[w] ? p99s[w] / np[w] : 0), p99max[w] + 0, mx[w] + 0, (gets[w] ? 100 * hits[w] / gets[w] : 0),
              gets[w], err[w], zero[w], span[w] }
          print "" }' "$TL")
    # W: per window (steady, move, after): rows ops/s p99mean p99max max hit% gets errors zero-rows span
    R[s_rows]=${W[0]} R[s_ops]=${W[1]} R[s_p99]=${W[2]} R[s_p99max]=${W[3]} R[s_max]=${W[4]} R[s_hit]=${W[5]} R[s_gets]=${W[6]} R[s_err]=${W[7]} R[s_zero]=${W[8]} R[s_span]=${W[9]}
    R[m_rows]=${W[10]} R[m_ops]=${W[11]} R[m_p99]=${W[12]} R[m_p99max]=${W[13]} R[m_max]=${W[14]} R[m_hit]=${W[15]} R[m_gets]=${W[16]} R[m_err]=${W[17]} R[m_zero]=${W[18]} R[m_span]=${W[19]}
    R[f_rows]=${W[20]} R[f_ops]=${W[21]} R[f_p99]=${W[22]} R[f_p99max]=${W[23]} R[f_max]=${W[24]} R[f_hit]=${W[25]} R[f_gets]=${W[26]} R[f_err]=${W[27]} R[f_zero]=${W[28]} R[f_span]=${W[29]}
    R[c_rows]=${W[30]} R[c_ops]=${W[31]} R[c_p99]=${W[32]} R[c_p99max]=${W[33]} R[c_max]=${W[34]} R[c_hit]=${W[35]} R[c_gets]=${W[36]} R[c_err]=${W[37]} R[c_zero]=${W[38]} R[c_span]=${W[39]}
    cp "$TL" "$RESULTS_DIR/reshard-$STAMP-timeline.csv"
    cp "$RAW/load-status.csv" "$RESULTS_DIR/reshard-$STAMP-status.csv"
    if command -v "$PYTHON" >/dev/null; then
        "$PYTHON" "$ROOT/bench/plot_timeline.py" "$TL" "$RAW/load-status.csv" -o "$SVG" \
            --warmup "$WARMUP" --copy "$COPY_START" "$COPY_END" \
            --title "shoal-proxy: adding a 4th shard to 3 holding $KEYS keys under load ($STAMP)" ||
            log "warning: plot_timeline.py failed"
    else
        log "warning: no $PYTHON: no SVG"
    fi
fi

# ---------------------------------------------------------------- report
ratio2() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "na"; else printf "%.2f", a / b }'; }
verdict() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN { if (v == "na") { print "n/a"; exit }
    ok = (op == ">=") ? (v + 0 >= t + 0) : (v + 0 <= t + 0); print (ok ? "MET" : "NOT MET") }'; }
{
    echo "# Live resharding: 3 -> 4 shoal-server shards under load ($STAMP)"
    echo
    echo "machine: $NCPU cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(free -g | awk '/^Mem:/ { print $2 }') GiB; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "built from: ${BUILT_FROM:-$SOURCE_DESC}"
    echo "setup: 4 x shoal-server --threads 1 (3 in the pool, shard3 spare), shoal-proxy --threads 1, pool hash fnv1a_64 / ketama / backend shoal (no timeout; pre-scan grace taken as GRACE_S=$GRACE_S s)"
    echo "placement: PIN=$PIN$([[ $PIN == split ]] && echo ": shards + proxy (and its migrator) on core $SERVER_CPU; shoal-bench + STATUS poller on core $GEN_CPU")"
    echo "keys: $KEYS x $VALUE_SIZE B (key:%010d), preloaded through the proxy"
    echo "load: shoal-bench --ratio $RATIO (SET:GET) --connections $CONNECTIONS --pipeline $PIPELINE, uniform random keys over the preloaded range, --timeline every $INTERVAL_MS ms; STEADY=$STEADY s (first $WARMUP s left out), AFTER=$AFTER s; RATE=${RATE:-unthrottled}"
    echo "command: KEYS=$KEYS VALUE_SIZE=$VALUE_SIZE STEADY=$STEADY AFTER=$AFTER RATIO=$RATIO CONNECTIONS=$CONNECTIONS PIPELINE=$PIPELINE${RATE:+ RATE=\"$RATE\"} PIN=$PIN bash bench/reshard.sh $*"
    echo
    if [[ $NOLOAD == 1 ]]; then
        echo "## 1. Move with no load"
        echo "preload: ${R[noload_preload]}"
        echo "final state: ${R[noload_state]}${R[noload_error]:+ (error: ${R[noload_error]})}"
        echo "CPU during the move (% of one core): ${R[noload_cpu]}"
        echo "moved: ${R[noload_keys]} keys, ${R[noload_bytes]} B (serialized records: key, value, expiry, flags, CAS)"
        echo "ADD -> first STATUS poll showing done: ${R[noload_wall]} s => ${R[noload_mbs]} MB/s (MB = 10^6 B; includes the grace and <= $POLL_MS ms poll lag)"
        echo "proxy log started -> finished: ${R[noload_log]} s; minus the $GRACE_S s grace: ${R[noload_copy]} s => ${R[noload_copy_mbs]} MB/s (first poll with keys scanned: ADD + ${R[noload_first_scan]:-?} s)"
        echo "${R[noload_verify]}"
        echo
    fi
    if [[ $LOAD == 1 ]]; then
        echo "## 2. Move under load"
        echo "preload: ${R[load_preload]}"
        echo "final state: ${R[load_state]}${R[load_error]:+ (error: ${R[load_error]})}; moved ${R[load_keys]} keys, ${R[load_bytes]} B"
        echo "ADD -> done (poll): ${R[load_wall]} s => ${R[load_mbs]} MB/s; proxy log: ${R[load_log]} s, copy ${R[load_copy]} s => ${R[load_copy_mbs]} MB/s (first poll with keys scanned: ADD + ${R[load_first_scan]:-?} s)"
        echo "CPU in % of one core (/proc; 'others' = user+nice+system of all CPUs minus this benchmark's processes):"
        echo "  steady: ${R[cpu_steady]}"
        echo "  move:   ${R[cpu_move]}"
        echo "  after:  ${R[cpu_after]}"
        echo "shoal-bench: ${R[bench_summary]}"
        echo "${R[load_verify]}"
        echo
        printf '%-8s %6s %7s %10s %12s %11s %11s %8s %9s %7s\n' window rows span_s ops/s "p99 mean us" "p99 max us" "max us" "hit %" gets errors
        for w in s m c f; do
            case $w in s) name=steady ;; m) name=move ;; c) name=copy ;; f) name=after ;; esac
            printf '%-8s %6s %7s %10s %12s %11s %11s %8s %9s %7s\n' "$name" "${R[${w}_rows]}" "${R[${w}_span]}" "${R[${w}_ops]}" \
                "${R[${w}_p99]}" "${R[${w}_p99max]}" "${R[${w}_max]}" "${R[${w}_hit]}" "${R[${w}_gets]}" "${R[${w}_err]}"
        done
        echo "(rows: $INTERVAL_MS ms intervals; steady = inside [t0 + $WARMUP s, ADD]; move = overlapping [ADD, done]; copy = overlapping [proxy 'started' + $GRACE_S s grace, 'finished'], the part of the move in which keys are copied; after = from done + 1 s; ops/s = replies / time; p99 mean = mean of the intervals' p99s, p99 max = the worst interval's p99; intervals with no reply: steady ${R[s_zero]}, move ${R[m_zero]}, copy ${R[c_zero]}, after ${R[f_zero]})"
        echo
        thr=$(ratio2 "${R[m_ops]}" "${R[s_ops]}")
        p99r=$(ratio2 "${R[m_p99]}" "${R[s_p99]}")
        p99w=$(ratio2 "${R[m_p99max]}" "${R[s_p99]}")
        thr_c=$(ratio2 "${R[c_ops]}" "${R[s_ops]}")
        p99_c=$(ratio2 "${R[c_p99]}" "${R[s_p99]}")
        echo "## Targets"
        o_s=${R[cpu_steady]##*others } o_m=${R[cpu_move]##*others }
        o_s=${o_s%% *} o_m=${o_m%% *}
        if ((o_s > 10 || o_m > 10)); then
            echo "DISTURBED: other processes used $o_s % (steady) / $o_m % (move) of a core: the ratios below compare windows measured under different outside load and are not reliable"
        else
            echo "quiet: other processes used $o_s % (steady) / $o_m % (move) of a core"
        fi
        printf '%-52s %-28s %s\n' target measured verdict
        printf '%-52s %-28s %s\n' "throughput during move >= 0.75 x steady" "$thr x" "$(verdict "$thr" '>=' 0.75)"
        printf '%-52s %-28s %s\n' "  same, copy phase only" "$thr_c x" "$(verdict "$thr_c" '>=' 0.75)"
        printf '%-52s %-28s %s\n' "p99 during move <= 3 x steady (mean of interval p99s)" "$p99r x" "$(verdict "$p99r" '<=' 3)"
        printf '%-52s %-28s %s\n' "  same, copy phase only" "$p99_c x" "$(verdict "$p99_c" '<=' 3)"
        printf '%-52s %-28s %s\n' "  same, worst move interval vs steady mean" "$p99w x" "$(verdict "$p99w" '<=' 3)"
        printf '%-52s %-28s %s\n' "hit rate during move = 100 %" "${R[m_hit]} % (${R[m_err]} errors)" "$(awk -v h="${R[m_hit]}" -v e="${R[m_err]}" 'BEGIN { print (h + 0 >= 100 && e + 0 == 0) ? "MET" : "NOT MET" }')"
        printf '%-52s %-28s %s\n' "every key found after the move" "$([[ ${R[load_verify_ok]} == 1 ]] && echo yes || echo NO)" "$([[ ${R[load_verify_ok]} == 1 ]] && echo MET || echo "NOT MET")"
        if [[ $NOLOAD == 1 ]]; then
            printf '%-52s %-28s %s\n' "unthrottled move >= 50 MB/s (no load, ADD->done)" "${R[noload_mbs]} MB/s" "$(verdict "${R[noload_mbs]}" '>=' 50)"
            printf '%-52s %-28s %s\n' "  same, copy phase only (proxy log - grace)" "${R[noload_copy_mbs]} MB/s" "$(verdict "${R[noload_copy_mbs]}" '>=' 50)"
        fi
        printf '%-52s %-28s %s\n' "  under load, ADD->done" "${R[load_mbs]} MB/s" "$(verdict "${R[load_mbs]}" '>=' 50)"
        echo
        echo "files: reshard-$STAMP-timeline.csv, reshard-$STAMP-status.csv$([[ $NOLOAD == 1 ]] && echo ", reshard-$STAMP-noload-status.csv"), reshard-timeline.svg; logs in reshard-$STAMP-raw/"
    fi
} | tee "$OUT_TXT"
log "wrote $OUT_TXT"

}
