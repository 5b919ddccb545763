#!/usr/bin/env bash
# Memory per item: each server started fresh, RSS before, N keys `key:%010d`
# with 32-byte values and no TTL loaded (pipelined), RSS after.
#
#   bash bench/memory.sh [--no-build]
#
# Environment: ITEMS (1000000), VALUE_SIZE (32), SERVERS ("redis memcached shoal"),
# SHOAL_SERVER_BIN, SHOAL_BENCH_BIN, SHOAL_EXTRA_ARGS, CARGO_TARGET_DIR,
# REDIS_PORT, MEMCACHED_PORT, SHOAL_PORT, SHOAL_MC_PORT.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# The whole script is one compound command: bash parses it fully before running,
# so editing this file during a run cannot derail the run.
{

ITEMS=${ITEMS:-1000000}
VALUE_SIZE=${VALUE_SIZE:-32}
SERVERS=${SERVERS:-redis memcached shoal}
REDIS_PORT=${REDIS_PORT:-16379}
MEMCACHED_PORT=${MEMCACHED_PORT:-11311}
SHOAL_PORT=${SHOAL_PORT:-16380}
SHOAL_MC_PORT=${SHOAL_MC_PORT:-11312}
PREFIX=key:
KEY_LEN=$(( ${#PREFIX} + 10 ))

BUILD=1
for arg in "$@"; do
    case "$arg" in
        --no-build) BUILD=0 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) die "unknown argument $arg" ;;
    esac
done
[[ $ITEMS =~ ^[0-9]+$ && $ITEMS -ge 1000 && $ITEMS -le 100000000 ]] || die "ITEMS must be 1000..100000000"

if [[ $BUILD == 1 ]]; then
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -q -p shoal-bench) || die "shoal-bench does not build"
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -q -p shoal-server) ||
        log "warning: shoal-server does not build"
fi
[[ -x $SHOAL_BENCH_BIN ]] || die "no $SHOAL_BENCH_BIN"

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS_DIR=$ROOT/bench/results
RAW=$RESULTS_DIR/$STAMP-memory-raw
mkdir -p "$RAW"
OUT_MD=$RESULTS_DIR/$STAMP-memory.md

# redis_info PORT FIELD
redis_info() {
    timeout 5 redis-cli -h 127.0.0.1 -p "$1" INFO memory 2>/dev/null | tr -d '\r' | awk -F: -v f="$2" '$1 == f { print $2 }'
}
redis_dbsize() {
    timeout 5 redis-cli -h 127.0.0.1 -p "$1" DBSIZE 2>/dev/null | tr -d '\r' | grep -E '^[0-9]+$' || true
}
# mc_stat PORT NAME
mc_stat() {
    mc_cmd "$1" stats | awk -v f="$2" '$1 == "STAT" && $2 == f { print $3 }'
}

{
    echo "# Memory per item — $STAMP"
    echo
    echo "- $ITEMS keys \`${PREFIX}%010d\` ($KEY_LEN B) with $VALUE_SIZE B values, no TTL, loaded by shoal-bench --load-only (50 connections, pipeline 64) into a freshly started server."
    echo "- RSS from /proc/PID/status VmRSS before and after the load. overhead/item = RSS Δ / items − key ($KEY_LEN B) − value ($VALUE_SIZE B)."
    echo "- server-reported: redis INFO used_memory, memcached \`stats\` bytes, shoal INFO used_memory where it answers (Δ over the load)."
    echo "- $(redis-server --version | awk '{ print $1, $2, $3 }'), $(memcached -V) (-m 1024), shoal-server $([[ -x $SHOAL_SERVER_BIN ]] && echo "$SHOAL_SERVER_BIN" || echo 'NOT AVAILABLE')"
    echo
    echo "| server | items stored | RSS before MiB | RSS after MiB | RSS Δ / item B | overhead / item B | server-reported Δ / item B | load s |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
} >"$OUT_MD"

for server in $SERVERS; do
    case "$server" in
        redis)
            start_redis "$REDIS_PORT" "$RAW/redis.log" 0; pid=$REPLY_PID; port=$REDIS_PORT; proto=resp ;;
        memcached)
            start_memcached "$MEMCACHED_PORT" "$RAW/memcached.log" 0; pid=$REPLY_PID; port=$MEMCACHED_PORT; proto=memcache ;;
        shoal)
            if ! shoal_available; then
                log "warning: no runnable $SHOAL_SERVER_BIN: skipping shoal"
                echo "| shoal | not available | | | | | | |" >>"$OUT_MD"
                continue
            fi
            [[ -n ${PRIVATE_DIR:-} ]] || use_private_shoal_copy
            start_shoal "$SHOAL_PORT" "$SHOAL_MC_PORT" 1 "$RAW/shoal.log" 0
            pid=$REPLY_PID; port=$SHOAL_PORT; proto=resp ;;
        *) die "unknown server $server" ;;
    esac
    sleep 0.5 # let the fresh process settle (lazy allocations at startup)
    rss0=$(vm_rss_kb "$pid")
    case "$server" in
        memcached) rep0=$(mc_stat "$port" bytes) ;;
        *) rep0=$(redis_info "$port" used_memory) ;;
    esac
    log "$server: loading $ITEMS items (RSS before ${rss0} kB)"
    if ! taskset -c 1 "$SHOAL_BENCH_BIN" --host 127.0.0.1 --port "$port" --protocol "$proto" --connections 50 \
        --key-prefix "$PREFIX" --key-minimum 0 --key-maximum $((ITEMS - 1)) --data-size "$VALUE_SIZE" \
        --prefill-pipeline 64 --load-only --summary --label "$server" --json-out "$RAW/$server.json" \
        >"$RAW/$server-load.log" 2>&1; then
        log "warning: $server load failed: $(tail -1 "$RAW/$server-load.log")"
        echo "| $server | load failed | | | | | | |" >>"$OUT_MD"
        stop_pid "$pid"
        continue
    fi
    sleep 0.5
    rss1=$(vm_rss_kb "$pid")
    case "$server" in
        memcached) rep1=$(mc_stat "$port" bytes); stored=$(mc_stat "$port" curr_items) ;;
        *) rep1=$(redis_info "$port" used_memory); stored=$(redis_dbsize "$port") ;;
    esac
    load_s=$(field "$(grep '^summary ' "$RAW/$server-load.log" || true)" prefill_s)
    awk -v s="$server" -v n="$ITEMS" -v st="${stored:-?}" -v r0="$rss0" -v r1="$rss1" -v p0="${rep0:-}" -v p1="${rep1:-}" \
        -v kv=$((KEY_LEN + VALUE_SIZE)) -v ls="$load_s" 'BEGIN {
        d = (r1 - r0) * 1024 / n
        rep = (p0 != "" && p1 != "") ? sprintf("%.1f", (p1 - p0) / n) : "n/a"
        printf "| %s | %s | %.1f | %.1f | %.1f | %.1f | %s | %s |\n", s, st, r0 / 1024, r1 / 1024, d, d - kv, rep, ls
    }' >>"$OUT_MD"
    stop_pid "$pid"
done

{
    echo
    echo "Raw logs: bench/results/$STAMP-memory-raw/"
} >>"$OUT_MD"
cat "$OUT_MD"
log "wrote $OUT_MD"
exit 0
}
