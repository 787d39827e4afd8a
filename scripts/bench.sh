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
# 5. release binary sizes;
# 6. growth per user (in the scaled database): POST /tasks for a user with 0 tasks and for one
#    with BENCH_HEAVY_TASKS (9,000), GET /tasks first page and a deep page (cursor at the end) of
#    that user; the seed plan's load: GET /tasks at BENCH_WIDE_CONNS (1000) connections and a
#    burst of BENCH_BURST (1000) concurrent logins of as many different accounts, each once
#    (scripts/bench/burst.py); refresh at 64 and signup at 4 connections; the plan PostgreSQL runs
#    for every hot statement (auto_explain, scripts/bench/explain.py);
# 7. forgot-password (scripts/forgot_timing.py, in the nearly empty database): the server's own
#    time per request (p50, p99) and the client-side medians per branch (unknown email, accounts
#    in every state), BENCH_FORGOT_ROUNDS (1000) interleaved rounds.
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
# BENCH_HEAVY_TASKS (9000), BENCH_WIDE_CONNS (1000), BENCH_BURST (1000 logins),
# BENCH_LASTUSED_LOGIN_ROUNDS / BENCH_LASTUSED_LOGIN_DURATION (8 / 8s: section 10's login pairs),
# BENCH_OUT (default BENCHMARKS.md; target/bench-run/BENCHMARKS.md for a partial or quick run).
#
# Partial and quick runs (figures for checking the script, not for quoting):
#   BENCH_ONLY=growth,wide,burst,auth,explain scripts/bench.sh   only these sections; the others
#       are micro, small (section 2), lastused (section 10: GET /tasks with last_used_at
#       tracking on and off, alternating, same run), coldstart, forgot, scale (section 3), sizes.
#       Any of scale, growth, wide, burst, auth, explain seeds the scaled database.
#   BENCH_QUICK=1 scripts/bench.sh   everything at small scale: 3 s runs, 2,000 users, a burst of
#       200, 200 connections, 1 cold start per binary, no criterion, the debug build
#       (BENCH_PROFILE=release|dev); any knob above still overrides.
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

quick="${BENCH_QUICK:-0}"
if [[ "$quick" == 1 ]]; then
    : "${BENCH_DURATION:=3s}" "${BENCH_SCALE_USERS:=2000}" "${BENCH_BURST:=200}" "${BENCH_COLD_RUNS:=1}"
    : "${BENCH_WARM_EVENTS:=3}" "${BENCH_SKIP_MICRO:=1}" "${BENCH_WIDE_CONNS:=200}" "${BENCH_FORGOT_ROUNDS:=100}"
    : "${BENCH_LASTUSED_LOGIN_ROUNDS:=2}"
fi
duration="${BENCH_DURATION:-15s}"
pool_size="${BENCH_DB_POOL_SIZE:-16}"
scale_users="${BENCH_SCALE_USERS:-100000}"
tasks_per_user="${BENCH_SCALE_TASKS_PER_USER:-10}"
small_users="${BENCH_SMALL_USERS:-100}"
cold_runs="${BENCH_COLD_RUNS:-5}"
warm_events="${BENCH_WARM_EVENTS:-20}"
heavy_tasks="${BENCH_HEAVY_TASKS:-9000}"
wide_conns="${BENCH_WIDE_CONNS:-1000}"
burst="${BENCH_BURST:-1000}"
forgot_rounds="${BENCH_FORGOT_ROUNDS:-1000}"
lastused_login_rounds="${BENCH_LASTUSED_LOGIN_ROUNDS:-8}"
lastused_login_duration="${BENCH_LASTUSED_LOGIN_DURATION:-8s}"
token_users=64
# Refresh tokens for the refresh run: two per connection (each wrk thread keeps its own queue).
refresh_sessions=128
only="${BENCH_ONLY:-}"
if [[ -n "$only" || "$quick" == 1 ]]; then
    out_md="${BENCH_OUT:-}"
else
    out_md="${BENCH_OUT:-BENCHMARKS.md}"
fi
# want SECTION : whether this run includes SECTION (every section unless BENCH_ONLY lists some).
want() {
    [[ -z "$only" ]] && return 0
    [[ ",$only," == *",$1,"* ]]
}
for s_ in ${only//,/ }; do
    [[ "$s_" =~ ^(micro|small|lastused|coldstart|forgot|scale|sizes|growth|wide|burst|auth|explain)$ ]] \
        || { echo "BENCH_ONLY: unknown section '$s_'" >&2; exit 2; }
done
[[ "${BENCH_SKIP_MICRO:-0}" == 1 ]] && only_micro=0 || only_micro=1
# The 1000-connection run and the login burst hold one socket per connection in wrk, the local
# API and burst.py: raise the open-file limit to the hard limit (or 65536, whichever is lower).
hard_nofile="$(ulimit -Hn)"
if [[ "$hard_nofile" == unlimited ]] || (( hard_nofile > 65536 )); then hard_nofile=65536; fi
ulimit -n "$hard_nofile" 2>/dev/null || true
if (( $(ulimit -n) < wide_conns + 64 || $(ulimit -n) < burst + 64 )); then
    echo "the open-file limit ($(ulimit -n)) is too low for $wide_conns connections / a burst of $burst; raise the hard limit" >&2
    exit 1
fi
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
# BENCH_PROFILE=dev (the default of BENCH_QUICK=1) runs the debug build: for checking the script
# without the long fat-LTO release build; its figures are not the code's.
profile="${BENCH_PROFILE:-}"
[[ -n "$profile" ]] || { [[ "$quick" == 1 ]] && profile=dev || profile=release; }
case "$profile" in
    release) bin="$target_dir/release"; build_flags=(--release) ;;
    dev) bin="$target_dir/debug"; build_flags=() ;;
    *) echo "BENCH_PROFILE must be release or dev" >&2; exit 2 ;;
esac
R="$target_dir/bench-run"
rm -rf "$R"
mkdir -p "$R/wrk" "$R/coldstart" "$R/logs" "$R/criterion"
cp /proc/loadavg "$R/load_before.txt"
printf '%s\n' "$started_at" >"$R/started_at.txt"
# The commit measured ("+changes" when the work tree differs from it).
{ git rev-parse --short HEAD 2>/dev/null || echo unknown; } | tr -d '\n' >"$R/commit.txt"
git diff --quiet HEAD 2>/dev/null || printf '+changes' >>"$R/commit.txt"

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
    RATE_REFRESH_SESSION=$rate_max RATE_REFRESH_IP=$rate_max
# The POST /tasks runs of one user create tens of thousands of tasks: the quota (a counter, the
# same check at any value) is raised to the most the configuration accepts so they stay 201.
task_quota_max=10000000
export TASK_QUOTA_PER_USER=$task_quota_max
unset JWT_SECRET_ARN DATABASE_URL_SECRET_ARN JWT_SECRET_PREVIOUS 2>/dev/null || true

# api_env : the environment of every local API we start (printed into the commands section).
api_env_text() {
    printf 'DATABASE_URL=%s PORT=%s RUST_LOG=warn DB_POOL_SIZE=%s JWT_SECRET=<48 random bytes, base64> RATE_LOGIN_ACCOUNT_FAILURES=%s RATE_LOGIN_IP_ATTEMPTS=%s RATE_SIGNUP_IP=%s RATE_REFRESH_SESSION=%s RATE_REFRESH_IP=%s TASK_QUOTA_PER_USER=%s' \
        "$(mask_url "$1")" "$2" "${3:-$pool_size}" "$rate_max" "$rate_max" "$rate_max" "$rate_max" "$rate_max" "$task_quota_max"
}

# start_api DB_URL PORT LOG [POOL_SIZE] : start the release local API; sets api_pid once it answers.
start_api() {
    local url="$1" port="$2" logf="$3" pool="${4:-$pool_size}"
    note_cmd "$(api_env_text "$url" "$port" "$pool") ${bin/#"$target_dir"/target}/local-api &"
    DATABASE_URL="$url" PORT="$port" RUST_LOG=warn DB_POOL_SIZE="$pool" \
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

# cpu_begin / cpu_end FILE CLIENT_SECONDS : the CPU time the local API $api_pid and the
# database's backends used between the two calls, and the load generator's (measured by the
# caller), into FILE.
cpu_begin() {
    local pg_pids
    mapfile -t pg_pids < <(db_backends)
    cpu_api0="$(cpu_ticks "$api_pid")"
    cpu_pg0="$(cpu_ticks "${pg_pids[@]}")"
}
cpu_end() {
    local pg_pids api1 pg1
    api1="$(cpu_ticks "$api_pid")"
    mapfile -t pg_pids < <(db_backends)
    pg1="$(cpu_ticks "${pg_pids[@]}")"
    printf 'api_s=%s\npostgres_s=%s\nwrk_s=%s\nclk_tck=%s\n' \
        "$(awk -v a="$cpu_api0" -v b="$api1" -v h="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", (b-a)/h}')" \
        "$(awk -v a="$cpu_pg0" -v b="$pg1" -v h="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", (b-a)/h}')" \
        "$2" "$(getconf CLK_TCK)" >"$1"
}

# wrk_run NAME CONNECTIONS URL MODE ARGS... : one bounded wrk run against the local API $api_pid;
# raw output into $R/wrk/NAME.txt, where the CPU went into NAME.cpu, its memory after into NAME.rss.
wrk_run() {
    local name="$1" conns="$2" url="$3"
    shift 3
    local threads=2
    (( conns < threads )) && threads="$conns"
    cpu_begin
    local TIMEFORMAT='%U %S'
    { time run wrk -t"$threads" -c"$conns" -d"$duration" --timeout 10s --latency \
        -s scripts/bench/load.lua "$url" -- "$@" >"$R/wrk/$name.txt"; } 2>"$R/wrk/$name.time"
    cpu_end "$R/wrk/$name.cpu" "$(tail -n 1 "$R/wrk/$name.time" | awk '{printf "%.2f", $1 + $2}')"
    peak_rss "$api_pid" "$R/wrk/$name.rss"
    grep -E '^(Requests/sec|  Latency|BENCH_JSON)' "$R/wrk/$name.txt" | sed 's/^/    /' >&2 || true
    sed 's/^/    /' "$R/wrk/$name.cpu" >&2
}

command -v curl >/dev/null 2>&1 || apt_install curl

# --- build ---------------------------------------------------------------------------------

section "Build"
# Every binary when a section runs the Lambda binaries (cold start) or weighs them (sizes); the
# local API alone otherwise (a partial run of the load sections needs nothing else).
if want coldstart || want sizes; then
    run cargo build "${build_flags[@]}" --locked --workspace --bins
else
    run cargo build "${build_flags[@]}" --locked -p local-api --bin local-api
fi

# --- 1. micro-benchmarks -------------------------------------------------------------------

if [[ "$only_micro" == 1 ]] && want micro; then
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
if [[ "$quick" == 1 ]]; then
    log "quick mode: not waiting for a quiet machine"
else
    note_cmd "# wait (at most 120 s) for the 1-minute load average to fall below 0.5"
    wait_quiet
fi
cp /proc/loadavg "$R/load_measure.txt"
# What every other process uses from here to the end (the load average at the end counts our own
# last sections, so it cannot tell): scripts/bench/others_cpu.py.
python3 scripts/bench/others_cpu.py snap "$R/others_before.json" "$$" || log "could not snapshot the other processes"

# --- 2. load on a nearly empty database ----------------------------------------------------

need_large=0
for s_ in scale growth wide burst auth explain; do want "$s_" && need_large=1; done
need_small=0
{ want small || want lastused || want coldstart || want forgot || (( need_large )); } && need_small=1
lambdas=()
for dir in functions/*/; do
    name="$(basename "$dir")"
    [[ -x "$bin/$name" ]] && lambdas+=("$name")
done

small_db="todo_bench_small_$$"
large_db="todo_bench_large_$$"
seed() { # seed DB_URL USERS NAME [HEAVY_TASKS]
    local start=$SECONDS heavy="${4:-0}"
    note_cmd "psql -X -w -v users=$2 -v tasks_per_user=$tasks_per_user -v heavy_tasks=$heavy -v hash='<that hash>' -f scripts/bench/seed.sql $(mask_url "$1")"
    psql -X -q -w -v users="$2" -v tasks_per_user="$tasks_per_user" -v heavy_tasks="$heavy" -v hash="$hash" \
        -f scripts/bench/seed.sql "$1" >"$R/logs/seed-$3.txt"
    printf '%s\n' "$((SECONDS - start))" >"$R/seed_seconds_$3.txt"
    psql -X -A -t -w "$1" -c "SELECT (SELECT count(*) FROM users) || ' ' || (SELECT count(*) FROM tasks)" \
        >"$R/counts_$3.txt"
}

if (( need_small )); then
    section "Load: nearly empty database ($small_users users, $((small_users * tasks_per_user)) tasks)"
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

    seed "$small_url" "$small_users" small
    if want small; then
        run python3 scripts/bench/tokens.py "$api" "$token_users" "$password" "$R/tokens_small.txt"
        note_cmd "# warm-up (3 s, not reported)"
        wrk -t2 -c64 -d3s -s scripts/bench/load.lua "$api" -- get_tasks "$R/tokens_small.txt" >/dev/null
        wrk_run small_get_tasks 64 "$api" get_tasks "$R/tokens_small.txt"
        wrk_run small_post_tasks 64 "$api" post_tasks "$R/tokens_small.txt"
        wrk_run small_login 4 "$api" login "$small_users" "$password"
        note_cmd "grep -E '^(VmHWM|VmRSS)' /proc/<local-api pid>/status"
        peak_rss "$small_pid" "$R/rss_small.txt"
    fi

    # --- 10. last_used_at tracking on and off, paired in this run -------------------------

    if want lastused; then
        section "last_used_at tracking: GET /tasks at 64 connections, on and off (alternating)"
        [[ -s "$R/tokens_small.txt" ]] \
            || run python3 scripts/bench/tokens.py "$api" "$token_users" "$password" "$R/tokens_small.txt"
        # Two new local APIs on the same database, started together after fresh statistics: one
        # tracking, one not. Nothing else differs, not even when their prepared statements were
        # planned. (The first version compared the small run's API, whose statements were
        # planned before POST /tasks had grown the table, with a later one: PostgreSQL then spent
        # twice the CPU per request in the later one, tracking or not.) They alternate ABBA, so
        # a drift of the machine's load hits both sides alike.
        run psql -X -q -w "$small_url" -c "ANALYZE"
        on_port="$(free_port)"
        on_api="http://127.0.0.1:$on_port"
        off_port="$(free_port)"
        off_api="http://127.0.0.1:$off_port"
        on_pid=""
        off_pid=""
        # lastused_start on|off : a new tracked (on) or untracked (off) local API.
        # Both sides get the variable, so that the two processes' environments differ by one
        # byte only (in two runs at 896564a and 906061d the tracked side, then started without
        # it, was the slower one at login, which runs the same code either way).
        lastused_start() {
            if [[ "$1" == on ]]; then
                note_cmd "# with SESSION_TRACK_LAST_USED=true, on port $on_port:"
                SESSION_TRACK_LAST_USED=true start_api "$small_url" "$on_port" "$R/logs/local-api-small-tracked.log"
                on_pid="$api_pid"
            else
                note_cmd "# the same local API with SESSION_TRACK_LAST_USED=false, on port $off_port:"
                SESSION_TRACK_LAST_USED=false start_api "$small_url" "$off_port" "$R/logs/local-api-small-untracked.log"
                off_pid="$api_pid"
            fi
        }
        # lastused_pair FIRST : stop the pair (if running) and start two new local APIs on the
        # same database, FIRST (on or off) first. Every round gets a new pair and the side
        # started first alternates: in the run at 2e539c0, with one pair for all rounds, the API
        # started first was ahead in 7 of 8 login pairs although login runs the same statements
        # either way; new processes each round, in alternating order, take that bias out.
        lastused_pair() {
            [[ -n "$on_pid" ]] && stop_api "$on_pid"
            [[ -n "$off_pid" ]] && stop_api "$off_pid"
            if [[ "$1" == on ]]; then lastused_start on; lastused_start off
            else lastused_start off; lastused_start on; fi
        }
        # lastused_warm SIDE MODE : warm one side up (MODE get_tasks or login, 2 s, not reported)
        # right before its measured run, so both sides go from warm-up to measurement alike.
        # (Until 3350d1c both were warmed up together when the pair started, tracked side first:
        # the tracked API then sat idle 2 s longer before every run of its own, and in the run
        # at 3350d1c it lost all 4 login rounds in which it was measured second, by 3.3-8.6 %,
        # and was even (+0.2/s) in the 4 in which it was measured first.)
        lastused_warm() {
            local u="$on_api"
            [[ "$1" == on ]] || u="$off_api"
            note_cmd "# warm-up of the $1 side ($2, 2 s, not reported)"
            if [[ "$2" == login ]]; then
                wrk -t2 -c4 -d2s -s scripts/bench/load.lua "$u" -- login "$small_users" "$password" >/dev/null
            else
                wrk -t2 -c64 -d2s -s scripts/bench/load.lua "$u" -- get_tasks "$R/tokens_small.txt" >/dev/null
            fi
        }
        # lastused_measure SIDE NAME CONNECTIONS MODE ARGS... : warm SIDE (on or off) up, then
        # one measured wrk run NAME against it.
        lastused_measure() {
            local side="$1" name="$2" conns="$3" mode="$4" url="$on_api"
            shift 4
            api_pid="$on_pid"
            [[ "$side" == on ]] || { url="$off_api"; api_pid="$off_pid"; }
            lastused_warm "$side" "$mode"
            wrk_run "$name" "$conns" "$url" "$mode" "$@"
        }
        # Every session last used two minutes ago before each side's run: the tracked side's
        # warm-up then sends each session's update once (the most tracking ever does: once a
        # minute per session), and both sides start from the same table.
        aged="UPDATE sessions SET last_used_at = now() - interval '2 minutes'"
        # lastused_side NAME SIDE ROUND : one GET /tasks run against the tracked or untracked API.
        # Both sides start from the same table: every session aged, then VACUUM (the aging
        # rewrites every session row; in the run at 896564a only the tracked side followed it,
        # so the clean-up of those dead rows fell in the tracked runs).
        lastused_side() {
            run psql -X -q -w "$small_url" -c "$aged"
            run psql -X -q -w "$small_url" -c "VACUUM (ANALYZE) sessions"
            lastused_measure "$2" "$1_$2_$3" 64 get_tasks "$R/tokens_small.txt"
        }
        # login_side SIDE ROUND : one login run (4 connections) against either API.
        login_side() {
            lastused_measure "$1" "lastused_login_$1_$2" 4 login "$small_users" "$password"
        }
        # ABBA over two pairs: the tracked API started and measured first in round 1, the
        # untracked one in round 2.
        lastused_pair on
        lastused_side lastused on 1
        lastused_side lastused off 1
        lastused_pair off
        lastused_side lastused off 2
        lastused_side lastused on 2
        # Login is argon2-bound, and this machine's hashing speed drifts by several percent from
        # one 15 s run to the next, which is more than the 2 % the target allows. So more, shorter
        # runs, each round on a new pair, still ABBA (on off, off on, ...): the drift and whatever
        # favours one process over the other cancel in the means.
        local_duration="$duration"
        duration="$lastused_login_duration"
        for (( r = 1; r <= lastused_login_rounds; r++ )); do
            if (( r % 2 )); then lastused_pair on; login_side on "$r"; login_side off "$r"
            else lastused_pair off; login_side off "$r"; login_side on "$r"; fi
        done
        duration="$local_duration"
        api_pid="$small_pid"
        stop_api "$on_pid"
        stop_api "$off_pid"
    fi

    # --- 4. cold start and peak memory of each function ------------------------------------

    if want coldstart; then
        section "Cold start and peak memory"
        note_cmd "# the local API: spawn to first HTTP answer ($cold_runs runs, database already migrated)"
        DATABASE_URL="$small_url" RUST_LOG=warn DB_POOL_SIZE="$pool_size" \
            run python3 scripts/bench/coldstart.py http "$bin/local-api" --runs "$cold_runs" \
            --out "$R/coldstart/local-api.json" --log "$R/logs/coldstart-local-api.log" || log "local-api cold start: some runs failed"
        note_cmd "# every Lambda binary against the fake Runtime API (AWS_LAMBDA_RUNTIME_API=127.0.0.1:<port>, AWS_LAMBDA_FUNCTION_NAME=<fn>, AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128, AWS_LAMBDA_FUNCTION_VERSION=\$LATEST, DATABASE_URL, JWT_SECRET, RUST_LOG unset: info)"
        bench_mfa_key="$(head -c 32 /dev/urandom | base64)"
        for name in "${lambdas[@]}"; do
            # mail-sender: no SES here. Its SDK gets dummy credentials and a closed loopback port
            # as the SES endpoint (never the instance metadata service): a due job fails at once,
            # as a transient failure, and is put back.
            # mfa, mfa-verify: they do not start without a TOTP secret encryption key (a throw-away one).
            DATABASE_URL="$small_url" MAIL_FROM=no-reply@bench.example APP_URL=https://app.bench.example \
            MFA_ENCRYPTION_KEY="$bench_mfa_key" \
            AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 \
            AWS_EC2_METADATA_DISABLED=true AWS_ENDPOINT_URL_SESV2=http://127.0.0.1:9 \
                run python3 scripts/bench/coldstart.py lambda "$name" "$bin/$name" --api "$api" \
                --email bench1@bench.example --password "$password" --admin-email benchadmin@bench.example \
                --runs "$cold_runs" --warm-events "$warm_events" --out "$R/coldstart/$name.json" --log "$R/logs/coldstart-$name.log" \
                || log "$name cold start: some runs failed (log: $R/logs/coldstart-$name.log)"
        done
    fi

    # --- forgot-password: server time per request and equal time per branch ------------------

    if want forgot; then
        section "Forgot-password: $forgot_rounds interleaved rounds per branch"
        # Its own local API at RUST_LOG=info: the server's time of each request (`elapsed_us`
        # of its request log line) is read back from the log. The forgot limits are raised (5
        # per address per hour would answer 429 at once); the mail sender runs as usual.
        forgot_port="$(free_port)"
        forgot_log="$R/logs/local-api-forgot.log"
        note_cmd "$(api_env_text "$small_url" "$forgot_port") RUST_LOG=info RATE_FORGOT_IP=$rate_max RATE_FORGOT_EMAIL=$rate_max ${bin/#"$target_dir"/target}/local-api &"
        DATABASE_URL="$small_url" PORT="$forgot_port" RUST_LOG=info NO_COLOR=1 DB_POOL_SIZE="$pool_size" \
        RATE_FORGOT_IP="$rate_max" RATE_FORGOT_EMAIL="$rate_max" "$bin/local-api" >"$forgot_log" 2>&1 &
        forgot_pid=$!
        pids+=("$forgot_pid")
        for (( i_ = 0; i_ < 300; i_++ )); do
            curl -s -o /dev/null "http://127.0.0.1:$forgot_port/tasks" 2>/dev/null && break
            kill -0 "$forgot_pid" 2>/dev/null || { tail -n 20 "$forgot_log" >&2; die "the local API exited"; }
            sleep 0.1
        done
        # Exit status 1 is a missed target, reported in BENCHMARKS.md, not a failed run.
        SERVER_LOG="$forgot_log" run python3 scripts/forgot_timing.py "http://127.0.0.1:$forgot_port" "$small_url" \
            "$forgot_rounds" "$R/forgot.md" "scripts/bench.sh" >"$R/logs/forgot.txt" \
            || log "forgot-password: a target was missed (see $R/forgot.md)"
        stop_api "$forgot_pid"
    fi
    stop_api "$small_pid"
fi

# --- 3. scale; 6. growth per user, the seed plan's load, auth load, plans --------------------

if (( need_large )); then
    section "Scale: $scale_users users, $((scale_users * tasks_per_user)) tasks"
    # Accounts by role: bench1..64 GET/POST tokens, 100..599 the plans' requests, 601.. the
    # login burst, then the refresh sessions.
    (( scale_users >= 600 + burst + refresh_sessions )) \
        || die "BENCH_SCALE_USERS ($scale_users) must be at least $((600 + burst + refresh_sessions)) for a burst of $burst"
    run psql -X -q -w "$base_url" -c "CREATE DATABASE $large_db"
    dbs+=("$large_db")
    large_url="$(db_url "$large_db")"
    cur_db="$large_db"
    port="$(free_port)"
    start_api "$large_url" "$port" "$R/logs/local-api-large.log"
    large_pid="$api_pid"
    api="http://127.0.0.1:$port"
    seed "$large_url" "$scale_users" large "$heavy_tasks"
    run python3 scripts/bench/tokens.py "$api" "$token_users" "$password" "$R/tokens_large.txt"
    note_cmd "# warm-up (3 s, not reported)"
    wrk -t2 -c64 -d3s -s scripts/bench/load.lua "$api" -- get_tasks "$R/tokens_large.txt" >/dev/null
    if want scale; then
        wrk_run large_get_tasks 64 "$api" get_tasks "$R/tokens_large.txt"
        wrk_run large_login 4 "$api" login "$scale_users" "$password"
    fi

    if want explain; then
        # auto_explain for this database only, through a second local API with one pooled
        # connection (each prepared statement is planned on one connection, as it stays): every
        # statement's plan as the code sends it, with ANALYZE and BUFFERS, into the server log.
        section "Plans of the hot statements (auto_explain, $((scale_users * tasks_per_user + heavy_tasks)) tasks)"
        pg_log="${TODO_API_PG_LOG:-}"
        if [[ -z "$pg_log" ]]; then
            pg_log="$(psql -X -A -t -w "$base_url" -c "SELECT CASE WHEN pg_current_logfile() LIKE '/%' THEN pg_current_logfile() ELSE current_setting('data_directory') || '/' || pg_current_logfile() END" 2>/dev/null || true)"
        fi
        if [[ -z "$pg_log" ]]; then
            # Debian's packaged server logs to /var/log/postgresql/postgresql-<major>-<cluster>.log
            # (no logging collector, so pg_current_logfile() is empty).
            major="$(psql -X -A -t -w "$base_url" -c "SHOW server_version_num" 2>/dev/null | cut -c1-2 || true)"
            pg_log="$(ls -t /var/log/postgresql/postgresql-"$major"-*.log 2>/dev/null | head -n 1 || true)"
        fi
        if [[ -n "$pg_log" && -r "$pg_log" ]]; then
            for setting in "session_preload_libraries = 'auto_explain'" "auto_explain.log_min_duration = 0" \
                "auto_explain.log_analyze = on" "auto_explain.log_buffers = on" "auto_explain.log_triggers = on" \
                "auto_explain.log_nested_statements = on" "auto_explain.log_format = text"; do
                run psql -X -q -w "$base_url" -c "ALTER DATABASE $large_db SET $setting"
            done
            explain_port="$(free_port)"
            start_api "$large_url" "$explain_port" "$R/logs/local-api-explain.log" 1
            explain_pid="$api_pid"
            log_offset="$(stat -c %s "$pg_log")"
            run python3 scripts/bench/explain.py drive "http://127.0.0.1:$explain_port" "$password" "$large_url" "$R/explain-drive.json"
            sleep 1
            note_cmd "# the server log from byte $log_offset on"
            run python3 scripts/bench/explain.py collect "$pg_log" "$log_offset" "$R/explain-drive.json" "$R/explain.md"
            stop_api "$explain_pid"
            api_pid="$large_pid"
            run psql -X -q -w "$base_url" -c "ALTER DATABASE $large_db RESET ALL"
        else
            log "the server log is not readable here ('$pg_log'): plans not collected"
        fi
    fi

    if want growth; then
        section "Growth per user: 0 vs $heavy_tasks tasks"
        run python3 scripts/bench/tokens.py "$api" 1 "$password" "$R/tokens_heavy.txt" --email heavy@bench.example
        run python3 scripts/bench/tokens.py "$api" 1 "$password" "$R/tokens_empty.txt" --email empty@bench.example
        run python3 scripts/bench/deep_cursor.py "$api" "$(head -n 1 "$R/tokens_heavy.txt")" "$R/deep_path.txt"
        counters="SELECT string_agg(u.email || '=' || coalesce(k.n, 0), ' ' ORDER BY u.email)
                    FROM users u LEFT JOIN task_counts k ON k.user_id = u.id
                   WHERE u.email IN ('heavy@bench.example', 'empty@bench.example')"
        psql -X -A -t -w "$large_url" -c "$counters" >"$R/growth_start_counts.txt"
        # GET first: the POST runs add tasks to both users (newest first, so a deep cursor would
        # still point at the end of the heavy user's list).
        wrk_run growth_get_first 64 "$api" get_tasks "$R/tokens_heavy.txt"
        wrk_run growth_get_deep 64 "$api" get_tasks "$R/tokens_heavy.txt" "$(cat "$R/deep_path.txt")"
        wrk_run growth_post_empty 64 "$api" post_tasks "$R/tokens_empty.txt"
        wrk_run growth_post_heavy 64 "$api" post_tasks "$R/tokens_heavy.txt"
        psql -X -A -t -w "$large_url" -c "$counters" >"$R/growth_end_counts.txt"
    fi

    if want wide; then
        section "The seed plan's load: GET /tasks at $wide_conns connections"
        note_cmd "ulimit -n $(ulimit -n)"
        wrk_run wide_get_tasks "$wide_conns" "$api" get_tasks "$R/tokens_large.txt"
    fi

    if want auth; then
        section "Refresh (64 connections) and signup (4 connections)"
        run python3 scripts/bench/tokens.py "$api" "$refresh_sessions" "$password" "$R/access_refresh.txt" \
            --first "$((601 + burst))" --refresh-out "$R/refresh_tokens.txt"
        wrk_run refresh 64 "$api" refresh "$R/refresh_tokens.txt" 2
        wrk_run signup 4 "$api" signup "$password"
    fi

    if want burst; then
        section "The seed plan's load: $burst concurrent logins of $burst different accounts"
        cpu_begin
        TIMEFORMAT='%U %S'
        { time run python3 scripts/bench/burst.py "$api" 601 "$burst" "$password" "$R/burst.json" --timeout 120; } 2>"$R/burst.time"
        cpu_end "$R/burst.cpu" "$(tail -n 1 "$R/burst.time" | awk '{printf "%.2f", $1 + $2}')"
        peak_rss "$large_pid" "$R/burst.rss"
    fi
    peak_rss "$large_pid" "$R/rss_large.txt"
    stop_api "$large_pid"
fi

# --- 5. sizes ------------------------------------------------------------------------------

if want sizes; then
    section "Binary sizes"
    note_cmd "stat -c %s ${bin/#"$target_dir"/target}/<binary>"
    : >"$R/sizes.txt"
    for name in "${lambdas[@]}" local-api todo-admin; do
        [[ -f "$bin/$name" ]] && printf '%s %s\n' "$name" "$(stat -c %s "$bin/$name")" >>"$R/sizes.txt"
    done
fi

cp /proc/loadavg "$R/load_after.txt"
python3 scripts/bench/others_cpu.py snap "$R/others_after.json" "$$" \
    && python3 scripts/bench/others_cpu.py diff "$R/others_before.json" "$R/others_after.json" "$R/others.txt" \
    || log "could not measure the other processes' CPU"
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
task_quota=$task_quota_max
heavy_tasks=$heavy_tasks
wide_conns=$wide_conns
burst=$burst
refresh_sessions=$refresh_sessions
nofile=$(ulimit -n)
only=$only
quick=$quick
profile=$profile
elapsed_s=$((SECONDS - t0))
EOF

[[ -n "$out_md" ]] || out_md="$R/BENCHMARKS.md"
section "Report"
run python3 scripts/bench/report.py "$R" "$out_md"
log "done in $((SECONDS - t0)) s: $out_md (raw figures and logs in $R)"
