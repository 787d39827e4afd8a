# shellcheck shell=bash
# start_moto / stop_moto: a local moto server (serves the AWS Secrets Manager
# API) on a free port of 127.0.0.1. Needs moto_server on PATH (ensure_pytools).
# Source this file; do not run it. Callers install `trap stop_moto EXIT`.
#
# After start_moto: MOTO_ENDPOINT=http://127.0.0.1:PORT is exported and
# TODO_API_MOTO_PID holds the server's PID.

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

TODO_API_MOTO_PID=""

_moto_free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# _moto_reachable URL : true when anything answers HTTP at URL.
_moto_reachable() {
    if command -v curl >/dev/null 2>&1; then
        curl -s -o /dev/null --max-time 2 "$1"
    else
        python3 - "$1" <<'PY' >/dev/null 2>&1
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1], timeout=2)
except urllib.error.HTTPError:
    pass
PY
    fi
}

start_moto() {
    command -v moto_server >/dev/null 2>&1 || die "moto_server not on PATH (call ensure_pytools first)"
    local logfile="$STATE_DIR/moto.log" attempt port url i
    for attempt in 1 2 3; do
        port="$(_moto_free_port)" || die "could not find a free port on 127.0.0.1"
        url="http://127.0.0.1:$port"
        moto_server -H 127.0.0.1 -p "$port" >"$logfile" 2>&1 &
        TODO_API_MOTO_PID=$!
        for (( i = 0; i < 80; i++ )); do   # 80 x 0.25 s = 20 s
            if ! kill -0 "$TODO_API_MOTO_PID" 2>/dev/null; then
                break
            fi
            if _moto_reachable "$url/"; then
                export MOTO_ENDPOINT="$url"
                log "moto server (pid $TODO_API_MOTO_PID) at $MOTO_ENDPOINT; log $logfile"
                return 0
            fi
            sleep 0.25
        done
        if kill -0 "$TODO_API_MOTO_PID" 2>/dev/null; then
            stop_moto
            tail -n 20 "$logfile" >&2 || true
            die "moto server did not answer on $url within 20 s (log: $logfile)"
        fi
        wait "$TODO_API_MOTO_PID" 2>/dev/null || true
        TODO_API_MOTO_PID=""
        log "moto server exited at start (attempt $attempt, port $port); retrying"
    done
    tail -n 20 "$logfile" >&2 || true
    die "moto server would not start (log: $logfile)"
}

# stop_moto : stop the server that start_moto started (only that PID).
stop_moto() {
    local pid="${TODO_API_MOTO_PID:-}" i
    [[ -n "$pid" ]] || return 0
    TODO_API_MOTO_PID=""
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for (( i = 0; i < 40; i++ )); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
    return 0
}
