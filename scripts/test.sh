#!/usr/bin/env bash
# The one command that runs the whole test suite on a fresh machine:
#   deps -> fmt -> clippy -> build (ci profile) -> cargo test (ci profile) -> pytest
# Stops at the first failing stage and says which one failed.
#
# Tests run in the `ci` profile (release optimizations without LTO, see Cargo.toml) so
# that they reuse the artifacts of the build stage; the differential tests spawn
# target/ci/shoal-server.
#
# Environment:
#   CARGO_TARGET_DIR   honoured (the binary is looked up there)
#   SKIP_DEPS=1        do not run scripts/install-test-deps.sh
#   SHOAL_SEED         seed for the random differential tests
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export SHOAL_SERVER_BIN="${SHOAL_SERVER_BIN:-$TARGET_DIR/ci/shoal-server}"
export SHOAL_PROXY_BIN="${SHOAL_PROXY_BIN:-$TARGET_DIR/ci/shoal-proxy}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

SUITE_START=$SECONDS
CURRENT=""

on_exit() {
    local rc=$?
    if [ "$rc" -ne 0 ] && [ -n "$CURRENT" ]; then
        printf '\n==> FAILED at stage: %s (exit %s, after %ss)\n' "$CURRENT" "$rc" "$((SECONDS - SUITE_START))" >&2
    fi
}
trap on_exit EXIT

stage() {
    CURRENT="$1"
    shift
    local start=$SECONDS
    printf '\n==> [%s] %s\n' "$CURRENT" "$*" >&2
    "$@"
    printf '==> [%s] ok (%ss)\n' "$CURRENT" "$((SECONDS - start))" >&2
    CURRENT=""
}

if [ "${SKIP_DEPS:-0}" != 1 ]; then
    stage deps bash scripts/install-test-deps.sh
fi
stage fmt cargo fmt --all --check
stage clippy cargo clippy --workspace --all-targets -- -D warnings
stage build cargo build --workspace --profile ci --bins
stage cargo-test cargo test --workspace --profile ci
stage pytest python3 -m pytest -q tests/python

printf '\n==> all stages passed in %ss\n' "$((SECONDS - SUITE_START))" >&2
