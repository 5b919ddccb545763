# Shared helpers of bench/compare.sh and bench/memory.sh (sourced, not run).
# Starts servers in the background, waits until they answer (bounded), and
# kills every process it started when the calling script exits.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
SHOAL_SERVER_BIN=${SHOAL_SERVER_BIN:-$TARGET_DIR/release/shoal-server}
SHOAL_BENCH_BIN=${SHOAL_BENCH_BIN:-$TARGET_DIR/release/shoal-bench}
REDIS_SERVER_BIN=${REDIS_SERVER_BIN:-redis-server}
MEMCACHED_BIN=${MEMCACHED_BIN:-memcached}
# Extra flags for shoal-server (e.g. SHOAL_EXTRA_ARGS="--maxmemory 1gb").
SHOAL_EXTRA_ARGS=${SHOAL_EXTRA_ARGS:-}

STARTED_PIDS=()

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

cleanup_started() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED_PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    STARTED_PIDS=()
    [[ -n ${PRIVATE_DIR:-} ]] && rm -rf "$PRIVATE_DIR"
    return 0
}
trap cleanup_started EXIT
trap 'exit 130' INT TERM

# stop_pid PID: stop one server this script started.
stop_pid() {
    local pid=$1 keep=() p
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${STARTED_PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    STARTED_PIDS=("${keep[@]}")
}

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# mc_cmd PORT COMMAND: send one memcached text command, print the reply up to END/one line.
mc_cmd() {
    timeout 3 bash -c '
        exec 3<>/dev/tcp/127.0.0.1/'"$1"' || exit 1
        printf "%s\r\n" "$0" >&3
        while IFS= read -r -t 2 line <&3; do
            line=${line%$'"'"'\r'"'"'}
            printf "%s\n" "$line"
            case "$line" in END|ERROR|VERSION*|CLIENT_ERROR*|SERVER_ERROR*) break ;; esac
        done' "$2" 2>/dev/null
}

# wait_resp PORT PID / wait_mc PORT PID [TRIES]: poll (at most ~15 s) until the port
# answers; fail if the process died.
wait_resp() {
    local port=$1 pid=$2
    for _ in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || return 1
        [[ $(timeout 1 redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null) == PONG ]] && return 0
        sleep 0.1
    done
    return 1
}
wait_mc() {
    local port=$1 pid=$2 tries=${3:-150}
    for _ in $(seq "$tries"); do
        kill -0 "$pid" 2>/dev/null || return 1
        # Any reply line to "version" means the listener answers.
        [[ -n $(mc_cmd "$port" version | head -1) ]] && return 0
        sleep 0.1
    done
    return 1
}

ensure_free() {
    local port
    for port in "$@"; do
        port_open "$port" && die "port $port is already in use (set the *_PORT variables)"
    done
    return 0
}

# start_redis PORT LOGFILE [CPU-LIST]: prints the pid.
start_redis() {
    local port=$1 logf=$2 cpus=${3:-0}
    ensure_free "$port"
    taskset -c "$cpus" "$REDIS_SERVER_BIN" --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
        --daemonize no --protected-mode yes >"$logf" 2>&1 &
    local pid=$!
    STARTED_PIDS+=("$pid")
    wait_resp "$port" "$pid" || { tail -5 "$logf" >&2; die "redis-server did not answer on port $port"; }
    REPLY_PID=$pid
}

# start_memcached PORT LOGFILE [CPU-LIST]
start_memcached() {
    local port=$1 logf=$2 cpus=${3:-0} user=()
    ensure_free "$port"
    [[ $(id -u) == 0 ]] && user=(-u root)
    taskset -c "$cpus" "$MEMCACHED_BIN" "${user[@]}" -l 127.0.0.1 -t 1 -U 0 -m 1024 -p "$port" >"$logf" 2>&1 &
    local pid=$!
    STARTED_PIDS+=("$pid")
    wait_mc "$port" "$pid" || { tail -5 "$logf" >&2; die "memcached did not answer on port $port"; }
    REPLY_PID=$pid
}

# start_shoal RESP-PORT MC-PORT THREADS LOGFILE [CPU-LIST|all]
start_shoal() {
    local port=$1 mport=$2 threads=$3 logf=$4 cpus=${5:-0} pin=()
    ensure_free "$port" "$mport"
    [[ $cpus != all ]] && pin=(taskset -c "$cpus")
    # shellcheck disable=SC2086
    "${pin[@]}" "$SHOAL_SERVER_BIN" --bind 127.0.0.1 --threads "$threads" --port "$port" \
        --memcache-port "$mport" --metrics-port 0 $SHOAL_EXTRA_ARGS >"$logf" 2>&1 &
    local pid=$!
    STARTED_PIDS+=("$pid")
    wait_resp "$port" "$pid" || { tail -5 "$logf" >&2; die "shoal-server did not answer RESP on port $port"; }
    # The memcache side is optional: scripts compare what answers.
    SHOAL_MC_OK=1
    if ! wait_mc "$mport" "$pid" 30; then
        SHOAL_MC_OK=0
        log "warning: shoal-server does not answer memcache 'version' on port $mport: shoal-mc skipped"
    fi
    REPLY_PID=$pid
}

# shoal_available: true when the shoal-server binary exists and runs.
shoal_available() {
    [[ -x $SHOAL_SERVER_BIN ]] && "$SHOAL_SERVER_BIN" --help >/dev/null 2>&1
}

# field LINE KEY: the value of KEY=... in a `summary ...` line.
field() {
    local kv
    for kv in $1; do
        [[ $kv == "$2="* ]] && { printf '%s' "${kv#*=}"; return 0; }
    done
    printf 'na'
}

# ratio_of NUM DEN: NUM/DEN with two decimals, or "—".
ratio_of() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "na" || b == "na" || b + 0 == 0) print "—"; else printf "%.2f", a / b }'
}

# vm_rss_kb PID
vm_rss_kb() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# use_private_shoal_copy: run a private copy of shoal-server (removed on exit).
# On a shared dev machine other sessions stop *their* test servers by name
# (pkill shoal-server); that must not hit the server under measurement.
use_private_shoal_copy() {
    PRIVATE_DIR=$(mktemp -d /tmp/shoal-bench.XXXXXX)
    cp "$SHOAL_SERVER_BIN" "$PRIVATE_DIR/sbench-shoal"
    SHOAL_SERVER_BIN=$PRIVATE_DIR/sbench-shoal
}
