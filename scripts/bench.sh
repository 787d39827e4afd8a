#!/usr/bin/env bash
# The benchmark suite, end to end, and BENCHMARKS.md from its figures.
#
#   scripts/bench.sh
#
# 1. micro-benchmarks (criterion, crate benches/): token issue/verify per algorithm, the
#    authorizer from event to policy, argon2id hash/verify at the configured parameters, how argon2
#    scales across the cores; the bare signature checks, and OpenSSL's speed for the same ones;
# 2. load (wrk) against the release local API: GET /tasks and POST /tasks at 64 connections,
#    login at 4, on a nearly empty database;
# 3. scale: the same GET /tasks and login runs with 100,000 users and 1,000,000 tasks;
# 4. cold start: spawn to first answer of every Lambda binary against a fake Runtime API
#    (scripts/bench/coldstart.py), and of the local API; peak RSS (VmHWM) of each, cold and after
#    a warm run of 20 events;
# 5. release binary sizes.
#
# Needs PostgreSQL (started or installed by ensure_postgres) and wrk (installed with apt-get when
# missing). Makes its own databases (todo_bench_*), starts its own local API processes on free
# loopback ports, and stops and drops exactly those at the end. All traffic goes to 127.0.0.1.
# Takes about 10 minutes after the release build. Figures are wall-clock: run it on an otherwise
# idle machine (the load average before and after is recorded in BENCHMARKS.md).
#
# Knobs (environment): BENCH_DURATION (wrk run length, default 15s), BENCH_DB_POOL_SIZE (local
# API pool, default 16), BENCH_SCALE_USERS / BENCH_SCALE_TASKS_PER_USER (100000 / 10),
# BENCH_SMALL_USERS (100, each with the same 10 tasks), BENCH_COLD_RUNS (5 per binary),
# BENCH_WARM_EVENTS (20 events in a row for one more process of each Lambda binary),
# BENCH_SKIP_MICRO=1 (keep the previous run's micro-benchmark figures out: skips section 1),
# BENCH_OUT (default BENCHMARKS.md).
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

duration="${BENCH_DURATION:-15s}"
pool_size="${BENCH_DB_POOL_SIZE:-16}"
scale_users="${BENCH_SCALE_USERS:-100000}"
tasks_per_user="${BENCH_SCALE_TASKS_PER_USER:-10}"
small_users="${BENCH_SMALL_USERS:-100}"
cold_runs="${BENCH_COLD_RUNS:-5}"
warm_events="${BENCH_WARM_EVENTS:-20}"
token_users=64
out_md="${BENCH_OUT:-BENCHMARKS.md}"
# The largest value the configuration accepts for a rate limit (1..1,000,000): the load runs
# would otherwise be answered 429 after a few seconds.
rate_max=1000000
password='bench-Password-7f3e!'
started_at="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
t0=$SECONDS

ensure_postgres
base_url="$DATABASE_URL"
command -v wrk >/dev/null 2>&1 || apt_install wrk
command -v python3 >/dev/null 2>&1 || apt_install python3

target_dir="$(cargo metadata --format-version 1 --no-deps --offline 2>/dev/null \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' || true)"
[[ -n "$target_dir" ]] || target_dir="$PWD/target"
bin="$target_dir/release"
R="$target_dir/bench-run"
rm -rf "$R"
mkdir -p "$R/wrk" "$R/coldstart" "$R/logs" "$R/criterion"
cp /proc/loadavg "$R/load_before.txt"
printf '%s\n' "$started_at" >"$R/started_at.txt"

# --- bookkeeping: the exact commands, the processes and databases we own ---------------------

commands="$R/commands.md"
: >"$commands"
section() {
    printf '\n### %s\n\n' "$1" >>"$commands"
    log "== $1"
}
# note_cmd TEXT : record a command line as run (already quoted for reading).
note_cmd() {
    printf '    %s\n' "$*" >>"$commands"
}
# run CMD... : record CMD (shell-quoted, repository-relative) and run it.
run() {
    local q
    q="$(printf '%q ' "$@")"
    q="${q//"$R"/\$R}"
    q="${q//"$target_dir"/target}"
    note_cmd "${q% }"
    "$@"
}

pids=()
dbs=()
cleanup() {
    local rc=$?
    local p d
    for p in "${pids[@]}"; do
        if kill -0 "$p" 2>/dev/null; then
            kill -INT "$p" 2>/dev/null || true
            for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
            kill -KILL "$p" 2>/dev/null || true
            wait "$p" 2>/dev/null || true
        fi
    done
    for d in "${dbs[@]}"; do
        psql -X -q -w "$base_url" -c "DROP DATABASE IF EXISTS \"$d\" WITH (FORCE)" >/dev/null 2>&1 \
            || log "could not drop database $d"
    done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# db_url NAME : the server's URL with the database NAME.
db_url() {
    python3 - "$base_url" "$1" <<'EOF'
import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
print(u.urlunsplit((p.scheme, p.netloc, "/" + sys.argv[2], p.query, p.fragment)))
EOF
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Databases left by a run that was killed (its PID is gone) are dropped; ours are new.
while IFS= read -r old; do
    [[ -n "$old" ]] || continue
    owner="${old##*_}"
    if [[ "$owner" =~ ^[0-9]+$ ]] && ! kill -0 "$owner" 2>/dev/null; then
        log "dropping $old, left by an earlier run"
        psql -X -q -w "$base_url" -c "DROP DATABASE IF EXISTS \"$old\" WITH (FORCE)" >/dev/null || true
    fi
done < <(psql -X -A -t -w "$base_url" -c "SELECT datname FROM pg_database WHERE datname LIKE 'todo\_bench\_%'")

jwt_secret="$(head -c 48 /dev/urandom | base64 -w0)"
export JWT_SECRET="$jwt_secret"
export RATE_LOGIN_ACCOUNT_FAILURES=$rate_max RATE_LOGIN_IP_ATTEMPTS=$rate_max RATE_SIGNUP_IP=$rate_max \
    RATE_REFRESH_SESSION=$rate_max
unset JWT_SECRET_ARN DATABASE_URL_SECRET_ARN JWT_SECRET_PREVIOUS 2>/dev/null || true

# api_env : the environment of every local API we start (printed into the commands section).
api_env_text() {
    printf 'DATABASE_URL=%s PORT=%s RUST_LOG=warn DB_POOL_SIZE=%s JWT_SECRET=<48 random bytes, base64> RATE_LOGIN_ACCOUNT_FAILURES=%s RATE_LOGIN_IP_ATTEMPTS=%s RATE_SIGNUP_IP=%s RATE_REFRESH_SESSION=%s' \
        "$(mask_url "$1")" "$2" "$pool_size" "$rate_max" "$rate_max" "$rate_max" "$rate_max"
}

# start_api DB_URL PORT LOG : start the release local API; sets api_pid once it answers.
start_api() {
    local url="$1" port="$2" logf="$3"
    note_cmd "$(api_env_text "$url" "$port") target/release/local-api &"
    DATABASE_URL="$url" PORT="$port" RUST_LOG=warn DB_POOL_SIZE="$pool_size" \
        "$bin/local-api" >"$logf" 2>&1 &
    api_pid=$!
    pids+=("$api_pid")
    local i
    for (( i = 0; i < 300; i++ )); do
        if curl -s -o /dev/null "http://127.0.0.1:$port/tasks" 2>/dev/null; then return 0; fi
        kill -0 "$api_pid" 2>/dev/null || { tail -n 20 "$logf" >&2; die "the local API exited"; }
        sleep 0.1
    done
    die "the local API did not answer on port $port within 30 s (log: $logf)"
}

# stop_api PID : stop one local API we started.
stop_api() {
    local p="$1"
    kill -INT "$p" 2>/dev/null || true
    for _ in $(seq 1 25); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}

# peak_rss PID FILE : VmHWM and VmRSS of PID into FILE.
peak_rss() {
    grep -E '^(VmHWM|VmRSS):' "/proc/$1/status" >"$2"
}

# cpu_ticks PID... : user+system CPU time of the processes, in clock ticks (gone ones count 0).
cpu_ticks() {
    local p total=0 t
    for p in "$@"; do
        t="$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)"
        total=$((total + ${t:-0}))
    done
    echo "$total"
}

# db_backends : PIDs of the PostgreSQL backends connected to the database $cur_db (the local API's
# pool). Only readable when the server runs on this machine; none otherwise.
db_backends() {
    local p
    while IFS= read -r p; do
        [[ -r "/proc/$p/stat" ]] && printf '%s\n' "$p"
    done < <(psql -X -A -t -w "$base_url" -c "SELECT pid FROM pg_stat_activity WHERE datname = '$cur_db'" 2>/dev/null || true)
}

# wrk_run NAME CONNECTIONS URL MODE ARGS... : one bounded wrk run against the local API $api_pid;
# raw output into $R/wrk/NAME.txt, where the CPU went into NAME.cpu, its memory after into NAME.rss.
wrk_run() {
    local name="$1" conns="$2" url="$3"
    shift 3
    local threads=2
    (( conns < threads )) && threads="$conns"
    local pg_pids api0 pg0 api1 pg1 wrk_cpu
    mapfile -t pg_pids < <(db_backends)
    api0="$(cpu_ticks "$api_pid")"
    pg0="$(cpu_ticks "${pg_pids[@]}")"
    local TIMEFORMAT='%U %S'
    { time run wrk -t"$threads" -c"$conns" -d"$duration" --timeout 10s --latency \
        -s scripts/bench/load.lua "$url" -- "$@" >"$R/wrk/$name.txt"; } 2>"$R/wrk/$name.time"
    api1="$(cpu_ticks "$api_pid")"
    mapfile -t pg_pids < <(db_backends)
    pg1="$(cpu_ticks "${pg_pids[@]}")"
    wrk_cpu="$(tail -n 1 "$R/wrk/$name.time" | awk '{printf "%.2f", $1 + $2}')"
    printf 'api_s=%s\npostgres_s=%s\nwrk_s=%s\nclk_tck=%s\n' \
        "$(awk -v a="$api0" -v b="$api1" -v h="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", (b-a)/h}')" \
        "$(awk -v a="$pg0" -v b="$pg1" -v h="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", (b-a)/h}')" \
        "$wrk_cpu" "$(getconf CLK_TCK)" >"$R/wrk/$name.cpu"
    peak_rss "$api_pid" "$R/wrk/$name.rss"
    grep -E '^(Requests/sec|  Latency|BENCH_JSON)' "$R/wrk/$name.txt" | sed 's/^/    /' >&2 || true
    sed 's/^/    /' "$R/wrk/$name.cpu" >&2
}

command -v curl >/dev/null 2>&1 || apt_install curl

# --- build ---------------------------------------------------------------------------------

section "Build"
run cargo build --release --locked --workspace --bins

# --- 1. micro-benchmarks -------------------------------------------------------------------

if [[ "${BENCH_SKIP_MICRO:-0}" != 1 ]]; then
    section "Micro-benchmarks (criterion)"
    run cargo bench --locked -p benchmarks --no-run
    note_cmd "CRITERION_HOME=\$R/criterion BENCH_PERCENTILES_OUT=\$R/percentiles.jsonl BENCH_THROUGHPUT_OUT=\$R/throughput.jsonl \\"
    CRITERION_HOME="$R/criterion" BENCH_PERCENTILES_OUT="$R/percentiles.jsonl" BENCH_THROUGHPUT_OUT="$R/throughput.jsonl" \
        run cargo bench --locked -p benchmarks >"$R/logs/criterion.txt" 2>&1 \
        || { tail -n 40 "$R/logs/criterion.txt" >&2; die "cargo bench failed"; }
    grep -E 'time:|per call|hash_parallel|argon2/scaling' "$R/logs/criterion.txt" >&2 || true
    # The same signature checks in another implementation, for scale (OpenSSL is on every machine
    # that has curl; skipped, and left out of the report, where it is not).
    if command -v openssl >/dev/null 2>&1; then
        section "Reference: OpenSSL's signature speed on this machine"
        run openssl speed -seconds 2 ed25519 ecdsap256 rsa2048 >"$R/openssl.txt" 2>/dev/null \
            || log "openssl speed failed; left out of the report"
        openssl version >>"$R/openssl.txt" 2>/dev/null || true
    fi
fi

# The builds and benches above leave the 1-minute load average high for a while after they end:
# wait (at most 120 s) for it to fall below 0.5 before the load runs, so that what is recorded
# as the load before measuring describes the machine, not our own build.
wait_quiet() {
    local waited=0
    while (( waited < 120 )) && awk '{ exit !($1 >= 0.5) }' /proc/loadavg; do
        sleep 5
        waited=$((waited + 5))
    done
    log "load average $(cut -d' ' -f1-3 /proc/loadavg) after waiting ${waited}s for a quiet machine"
}
note_cmd "# wait (at most 120 s) for the 1-minute load average to fall below 0.5"
wait_quiet
cp /proc/loadavg "$R/load_measure.txt"

# --- 2. load on a nearly empty database ----------------------------------------------------

section "Load: nearly empty database ($small_users users, $((small_users * tasks_per_user)) tasks)"
small_db="todo_bench_small_$$"
large_db="todo_bench_large_$$"
run psql -X -q -w "$base_url" -c "CREATE DATABASE $small_db"
dbs+=("$small_db")
small_url="$(db_url "$small_db")"
cur_db="$small_db"
port="$(free_port)"
start_api "$small_url" "$port" "$R/logs/local-api-small.log"
small_pid="$api_pid"
api="http://127.0.0.1:$port"

# One argon2id hash, made by the API itself at the configured parameters, for every seeded user.
run curl -s -o /dev/null -w '%{http_code}\n' -X POST "$api/auth/signup" -H 'content-type: application/json' \
    -d "{\"email\":\"hashsource@bench.example\",\"password\":\"$password\"}" >"$R/logs/signup.txt"
hash="$(psql -X -A -t -w "$small_url" -c "SELECT password_hash FROM users WHERE email = 'hashsource@bench.example'")"
[[ "$hash" == \$argon2id\$* ]] || die "no argon2id hash from the signup (got '$hash')"
printf '%s\n' "$hash" | cut -d'$' -f1-4 >"$R/hash_params.txt"

seed() { # seed DB_URL USERS NAME
    local start=$SECONDS
    note_cmd "psql -X -w -v users=$2 -v tasks_per_user=$tasks_per_user -v hash='<that hash>' -f scripts/bench/seed.sql $(mask_url "$1")"
    psql -X -q -w -v users="$2" -v tasks_per_user="$tasks_per_user" -v hash="$hash" \
        -f scripts/bench/seed.sql "$1" >"$R/logs/seed-$3.txt"
    printf '%s\n' "$((SECONDS - start))" >"$R/seed_seconds_$3.txt"
    psql -X -A -t -w "$1" -c "SELECT (SELECT count(*) FROM users) || ' ' || (SELECT count(*) FROM tasks)" \
        >"$R/counts_$3.txt"
}
seed "$small_url" "$small_users" small
run python3 scripts/bench/tokens.py "$api" "$token_users" "$password" "$R/tokens_small.txt"

note_cmd "# warm-up (3 s, not reported)"
wrk -t2 -c64 -d3s -s scripts/bench/load.lua "$api" -- get_tasks "$R/tokens_small.txt" >/dev/null
wrk_run small_get_tasks 64 "$api" get_tasks "$R/tokens_small.txt"
wrk_run small_post_tasks 64 "$api" post_tasks "$R/tokens_small.txt"
wrk_run small_login 4 "$api" login "$small_users" "$password"
note_cmd "grep -E '^(VmHWM|VmRSS)' /proc/<local-api pid>/status"
peak_rss "$small_pid" "$R/rss_small.txt"

# --- 4. cold start and peak memory of each function ----------------------------------------

section "Cold start and peak memory"
note_cmd "# the local API: spawn to first HTTP answer ($cold_runs runs, database already migrated)"
DATABASE_URL="$small_url" RUST_LOG=warn DB_POOL_SIZE="$pool_size" \
    run python3 scripts/bench/coldstart.py http "$bin/local-api" --runs "$cold_runs" \
    --out "$R/coldstart/local-api.json" --log "$R/logs/coldstart-local-api.log" || log "local-api cold start: some runs failed"
note_cmd "# every Lambda binary against the fake Runtime API (AWS_LAMBDA_RUNTIME_API=127.0.0.1:<port>, AWS_LAMBDA_FUNCTION_NAME=<fn>, AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128, AWS_LAMBDA_FUNCTION_VERSION=\$LATEST, DATABASE_URL, JWT_SECRET, RUST_LOG unset: info)"
lambdas=()
for dir in functions/*/; do
    name="$(basename "$dir")"
    [[ -x "$bin/$name" ]] && lambdas+=("$name")
done
for name in "${lambdas[@]}"; do
    DATABASE_URL="$small_url" \
        run python3 scripts/bench/coldstart.py lambda "$name" "$bin/$name" --api "$api" \
        --email bench1@bench.example --password "$password" --admin-email benchadmin@bench.example \
        --runs "$cold_runs" --warm-events "$warm_events" --out "$R/coldstart/$name.json" --log "$R/logs/coldstart-$name.log" \
        || log "$name cold start: some runs failed (log: $R/logs/coldstart-$name.log)"
done
stop_api "$small_pid"

# --- 3. scale ------------------------------------------------------------------------------

section "Scale: $scale_users users, $((scale_users * tasks_per_user)) tasks"
run psql -X -q -w "$base_url" -c "CREATE DATABASE $large_db"
dbs+=("$large_db")
large_url="$(db_url "$large_db")"
cur_db="$large_db"
port="$(free_port)"
start_api "$large_url" "$port" "$R/logs/local-api-large.log"
large_pid="$api_pid"
api="http://127.0.0.1:$port"
seed "$large_url" "$scale_users" large
run python3 scripts/bench/tokens.py "$api" "$token_users" "$password" "$R/tokens_large.txt"
note_cmd "# warm-up (3 s, not reported)"
wrk -t2 -c64 -d3s -s scripts/bench/load.lua "$api" -- get_tasks "$R/tokens_large.txt" >/dev/null
wrk_run large_get_tasks 64 "$api" get_tasks "$R/tokens_large.txt"
wrk_run large_login 4 "$api" login "$scale_users" "$password"
peak_rss "$large_pid" "$R/rss_large.txt"
stop_api "$large_pid"

# --- 5. sizes ------------------------------------------------------------------------------

section "Binary sizes"
note_cmd "stat -c %s target/release/<binary>"
: >"$R/sizes.txt"
for name in "${lambdas[@]}" local-api todo-admin; do
    [[ -f "$bin/$name" ]] && printf '%s %s\n' "$name" "$(stat -c %s "$bin/$name")" >>"$R/sizes.txt"
done

cp /proc/loadavg "$R/load_after.txt"
psql -X -A -t -w "$base_url" -c 'SHOW server_version' >"$R/pg_version.txt" 2>/dev/null || true
printf '%s\n' "$TODO_API_PG_SOURCE" >"$R/pg_source.txt"
cat >"$R/config.txt" <<EOF
duration=$duration
pool_size=$pool_size
small_users=$small_users
scale_users=$scale_users
tasks_per_user=$tasks_per_user
token_users=$token_users
cold_runs=$cold_runs
warm_events=$warm_events
rate_max=$rate_max
elapsed_s=$((SECONDS - t0))
EOF

section "Report"
run python3 scripts/bench/report.py "$R" "$out_md"
log "done in $((SECONDS - t0)) s: $out_md (raw figures and logs in $R)"
