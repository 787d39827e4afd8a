#!/usr/bin/env bash
# Equal-time forgot-password: measure POST /auth/password/forgot for an unknown email and for
# accounts in every state against a release build of the local API, interleaved, and write the
# medians and p99 (client side per branch, server side overall) to FORGOT_TIMING.md.
#
#   scripts/forgot-timing.sh [ROUNDS]     (default 500)
#
# Starts its own local API on 127.0.0.1:${TIMING_PORT:-3991} over a scratch database with the
# rate limits raised (they would otherwise answer 429 long before the run ends), and stops it.
# Run it on an otherwise idle machine: it measures wall-clock time.
set -euo pipefail

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

rounds="${1:-500}"
port="${TIMING_PORT:-3991}"
ensure_postgres
db="todo_forgot_timing_$$"
psql -X -q "$DATABASE_URL" -c "CREATE DATABASE $db"
db_url="${DATABASE_URL%/*}/$db"

cargo build --release --locked -p local-api
target_dir="$(cargo metadata --format-version 1 --no-deps --locked \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    psql -X -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
    if [[ -n "${server_log:-}" ]]; then rm -f "$server_log"; fi
}
trap cleanup EXIT

jwt_secret="$(head -c 48 /dev/urandom | base64 -w0)"
# RUST_LOG=info: the server's own time of every request (`elapsed_us` of its request log line)
# is read back from its log for the server-side percentiles.
server_log="$(mktemp "${TMPDIR:-/tmp}/forgot-timing.XXXXXX")"
DATABASE_URL="$db_url" PORT="$port" RUST_LOG=info NO_COLOR=1 JWT_SECRET="$jwt_secret" \
RATE_FORGOT_IP=1000000 RATE_FORGOT_EMAIL=1000000 RATE_SIGNUP_IP=1000000 \
    "$target_dir/release/local-api" >"$server_log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then break; fi
    sleep 0.1
done

SERVER_LOG="$server_log" python3 scripts/forgot_timing.py "http://127.0.0.1:$port" "$db_url" "$rounds" FORGOT_TIMING.md
