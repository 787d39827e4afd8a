#!/usr/bin/env bash
# Equal-time login: measure every failure branch of POST /auth/login against a release build of
# the local API, interleaved, and write the medians to LOGIN_TIMING.md. Includes an account whose
# stored hash predates a raise of the argon2 cost (made at the old cost, measured at the new one).
#
#   scripts/login-timing.sh [ROUNDS]     (default 200)
#
# Starts its own local API on 127.0.0.1:${TIMING_PORT:-3990} over a scratch database with the
# rate limits raised (they would otherwise answer 429 long before the run ends), and stops it.
# Run it on an otherwise idle machine: it measures wall-clock time.
set -euo pipefail

# --help: the comment block above, as usage.
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    printf 'usage: %s\n' "$(sed -n 's/^#   \(scripts\/[a-z-]*\.sh.*\)$/\1/p' "$0" | head -n1)"
    sed -n '2,/^set -euo pipefail/p' "$0" | sed '$d' | sed -E 's/^# ?//'
    exit 0
fi
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh
# shellcheck source=scripts/lib/postgres.sh
source scripts/lib/postgres.sh

rounds="${1:-200}"
port="${TIMING_PORT:-3990}"
ensure_postgres
db="todo_timing_$$"
psql -X -q "$DATABASE_URL" -c "CREATE DATABASE $db"
db_url="${DATABASE_URL%/*}/$db"

cargo build --release --locked -p local-api
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    psql -X -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
}
trap cleanup EXIT

# The configured cost is raised (ARGON2_MEMORY_KIB 4x OWASP's minimum) over an account whose hash
# was made at the old, cheaper cost: the "stale cheaper hash" branch must cost what an unknown
# email costs. A server at the old cost makes that account first, then one at the raised cost
# serves every measured request.
old_memory_kib=19456
raised_memory_kib="${TIMING_ARGON2_MEMORY_KIB:-77824}"
jwt_secret="$(head -c 48 /dev/urandom | base64 -w0)"
start_server() {
    DATABASE_URL="$db_url" PORT="$port" RUST_LOG=warn JWT_SECRET="$jwt_secret" ARGON2_MEMORY_KIB="$1" \
    RATE_LOGIN_ACCOUNT_FAILURES=1000000 RATE_LOGIN_IP_ATTEMPTS=1000000 RATE_SIGNUP_IP=1000000 \
        ./target/release/local-api &
    server_pid=$!
    for _ in $(seq 1 100); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then return; fi
        sleep 0.1
    done
}
stop_server() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}

start_server "$old_memory_kib"
stale="$(python3 scripts/login_timing.py --signup "http://127.0.0.1:$port")"
stop_server
start_server "$raised_memory_kib"
STALE_ACCOUNT="$stale" ARGON2_MEMORY_KIB="$raised_memory_kib" STALE_MEMORY_KIB="$old_memory_kib" \
    python3 scripts/login_timing.py "http://127.0.0.1:$port" "$db_url" "$rounds" LOGIN_TIMING.md
