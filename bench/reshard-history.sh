#!/usr/bin/env bash
# The long form of the live-resharding history check (the CI form is
# tests/tests/reshard.rs::reshard_3_4_5_3_history with one round): ROUNDS rounds of
# 3 -> 4 -> 5 -> 4 -> 3 shards behind shoal-proxy (Redis + memcache sibling pools),
# SCALE x 20,000 RESP + 2,000 memcache preloaded keys moved at SCALE x 2,500 keys/s,
# under the history checker's load (no acknowledged write lost, no stale read, no
# resurrection, no client-visible error; TTLs, flags and CAS ids kept), then every
# preloaded key and the exact placement checked. See bench/README.md.
#
#   bash bench/reshard-history.sh            # ROUNDS=5 SCALE=5 (~2-4 min on 2 vCPUs)
#   ROUNDS=20 SCALE=10 bash bench/reshard-history.sh
#
# Writes bench/results/reshard-history-<stamp>.txt (the test's output).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROUNDS=${ROUNDS:-5}
SCALE=${SCALE:-5}
RESULTS_DIR=$ROOT/bench/results
[[ $ROUNDS =~ ^[0-9]+$ ]] && ((ROUNDS >= 1 && ROUNDS <= 50)) || die "ROUNDS must be 1..50"
[[ $SCALE =~ ^[0-9]+$ ]] && ((SCALE >= 1 && SCALE <= 50)) || die "SCALE must be 1..50"
cd "$ROOT"
log "building shoal-server and shoal-proxy (profile ci) in $TARGET_DIR"
cargo build --profile ci -p shoal-server -p shoal-proxy >&2
mkdir -p "$RESULTS_DIR"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT="$RESULTS_DIR/reshard-history-$STAMP.txt"
{
    echo "# reshard history, long form ($STAMP): ROUNDS=$ROUNDS SCALE=$SCALE, built from $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "machine: $(nproc) cores"
} >"$OUT"
start=$SECONDS
rc=0
SHOAL_SERVER_BIN="$TARGET_DIR/ci/shoal-server" SHOAL_PROXY_BIN="$TARGET_DIR/ci/shoal-proxy" \
    SHOAL_RESHARD_ROUNDS=$ROUNDS SHOAL_RESHARD_SCALE=$SCALE \
    cargo test --profile ci -p shoal-tests --test reshard reshard_3_4_5_3_history -- --nocapture \
    >>"$OUT" 2>&1 || rc=$?
echo "exit $rc after $((SECONDS - start)) s" >>"$OUT"
grep -E '^\[reshard\]|test result|panicked|exit ' "$OUT" | tail -40
log "wrote $OUT"
exit "$rc"
