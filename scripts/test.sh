#!/usr/bin/env bash
# The project's test command (also what CI runs through .ci/run).
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -p store        # extra args go to `cargo test` (before any --);
#                                   # with -p/--package, --workspace is left out
#
# Steps, stopping at the first failure: rustfmt check, clippy (-D warnings),
# cfn-lint (pinned 1.53.x) on template.yaml, cargo test; on a full run also the
# end-to-end suite again with EdDSA tokens and unnamed statements, the README's commands
# (scripts/readme-test.sh), and the contract test
# (scripts/contract-test.sh: openapi.yaml validated, schemathesis against the
# local API). Before them it makes
# sure of the tools and services the tests need:
#   DATABASE_URL / TEST_DATABASE_URL  a PostgreSQL (scripts/lib/postgres.sh)
#   MOTO_ENDPOINT                     a local moto server (Secrets Manager API)
# and drops the databases named todo_test_* left over by earlier runs.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh
# shellcheck source=scripts/lib/postgres.sh
source scripts/lib/postgres.sh
# shellcheck source=scripts/lib/pytools.sh
source scripts/lib/pytools.sh
# shellcheck source=scripts/lib/moto.sh
source scripts/lib/moto.sh

started_at=$SECONDS
test_output=""

# Every database this run creates is named with this run's prefix, so the exit trap drops exactly
# those (pass, fail or Ctrl-C) and leaves the server as it found it. Databases of a run that was
# killed before its trap ran are dropped by the next run's start-of-run sweep (todo_test_*).
run_id="$(date +%s)$$"
export TODO_TEST_DB_PREFIX="todo_test_${run_id}_"
run_databases_dropped=0

# drop_databases LIKE-PATTERN : drop every database whose name matches; log how many.
drop_databases() {
    local pattern="$1" dbs db force="" num n=0
    num="$(psql -X -w "$DATABASE_URL" -Atc 'show server_version_num')" \
        || { log "warning: cannot query PostgreSQL at $(mask_url "$DATABASE_URL")"; return 1; }
    if [[ "$num" =~ ^[0-9]+$ ]] && (( num >= 130000 )); then
        force=" WITH (FORCE)"
    fi
    dbs="$(psql -X -w "$DATABASE_URL" -Atc \
        "select datname from pg_database where datname like '$pattern'")" \
        || { log "warning: cannot list databases at $(mask_url "$DATABASE_URL")"; return 1; }
    while IFS= read -r db; do
        [[ -n "$db" ]] || continue
        if psql -X -w -q "$DATABASE_URL" -v ON_ERROR_STOP=1 \
                -c "DROP DATABASE IF EXISTS \"${db//\"/\"\"}\"$force" >/dev/null; then
            n=$((n + 1))
        else
            log "warning: could not drop test database $db"
        fi
    done <<<"$dbs"
    dropped_count=$n
}

cleanup() {
    # A second Ctrl-C while cleaning up would cancel the drops half-way: finish them first.
    trap '' INT TERM
    stop_moto
    if [[ -n "$test_output" ]]; then rm -f "$test_output"; fi
    if [[ -n "${DATABASE_URL:-}" && "$run_databases_dropped" -eq 0 ]]; then
        run_databases_dropped=1
        dropped_count=0
        if drop_databases "${TODO_TEST_DB_PREFIX//_/\\_}%"; then
            log "dropped this run's $dropped_count test database(s) (${TODO_TEST_DB_PREFIX}*)"
        fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- tools ------------------------------------------------------------------
command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust with rustup first"
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    command -v rustup >/dev/null 2>&1 || die "cargo fmt/clippy missing and rustup not found"
    log "rustup component add rustfmt clippy"
    rustup component add rustfmt clippy
fi
if ! command -v cc >/dev/null 2>&1; then
    log "no C compiler (cc) found; installing build-essential"
    apt_install build-essential
fi

# --- services ---------------------------------------------------------------
ensure_postgres
ensure_pytools
start_moto

dropped_count=0
drop_databases 'todo\_test\_%' || die "cannot clean up leftover test databases"
log "dropped $dropped_count leftover todo_test_* database(s)"

export RUST_BACKTRACE=1
export TEST_DATABASE_URL="$DATABASE_URL"

# --- steps ------------------------------------------------------------------
steps_passed=()

# run_step NAME CMD... : announce, run, stop everything at the first failure.
run_step() {
    local name="$1" t0=$SECONDS rc=0
    shift
    log "==> $name: $*"
    "$@" || rc=$?
    if [[ "$rc" -ne 0 ]]; then
        log "FAILED at step '$name' (exit $rc) after $((SECONDS - started_at))s;" \
            "passed before it: ${steps_passed[*]:-none}"
        exit "$rc"
    fi
    steps_passed+=("$name")
    log "<== $name ok ($((SECONDS - t0))s)"
}

lint_template() {
    [[ -f template.yaml ]] || { log "template.yaml not found in $(pwd)"; return 1; }
    cfn-lint template.yaml
}

tests_passed=0
tests_failed=0
tests_ignored=0

# cargo test, with its stdout also kept to add up the "test result:" lines.
cargo_test() {
    if [[ -n "$test_output" ]]; then rm -f "$test_output"; fi
    test_output="$(mktemp "${TMPDIR:-/tmp}/todo-api-test.XXXXXX")"
    local rc=0 counts arg scope=(--workspace)
    # cargo ignores -p/--package when --workspace is given: drop it then.
    for arg in "$@"; do
        case "$arg" in
            --) break ;;
            -p | -p* | --package | --package=*) scope=() ;;
        esac
    done
    cargo test "${scope[@]}" --locked "$@" | tee "$test_output" || rc=$?
    counts="$(awk '
        /^test result: / {
            for (i = 1; i < NF; i++) {
                v = $i + 0; w = $(i + 1); sub(/[;,.]$/, "", w)
                if (w == "passed") p += v
                else if (w == "failed") f += v
                else if (w == "ignored") s += v
            }
        }
        END { printf "%d %d %d\n", p, f, s }' "$test_output")"
    local p f i
    read -r p f i <<<"$counts"
    tests_passed=$((tests_passed + p))
    tests_failed=$((tests_failed + f))
    tests_ignored=$((tests_ignored + i))
    return "$rc"
}

# local_api_ses_emulator : clippy and the local API's own tests with its ses-emulator feature.
local_api_ses_emulator() {
    cargo clippy -p local-api --features ses-emulator --all-targets --locked -- -D warnings \
        && cargo_test -p local-api --features ses-emulator --lib
}

run_step "rustfmt" cargo fmt --all -- --check
run_step "clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
run_step "cfn-lint" lint_template
run_step "cargo test" cargo_test "$@"
if [[ $# -eq 0 ]]; then
    # The local API's optional SES emulator delivery (feature ses-emulator, off by default so
    # that the default build links no AWS SDK): linted and its tests run with the feature on.
    run_step "local API with --features ses-emulator" local_api_ses_emulator
    # The end-to-end suite (and the key tests) again with EdDSA (Ed25519) tokens and unnamed
    # statements (DB_PREPARED_STATEMENTS=false, for a pooler without prepared statements): both
    # algorithms and both statement modes must pass it. The run above used HS256 and named
    # prepared statements, the defaults.
    TEST_JWT_ALGORITHM=EdDSA TEST_DB_PREPARED_STATEMENTS=false run_step "e2e with EdDSA tokens, unnamed statements" \
        cargo_test -p api-tests --test api -- e2e_ rotation::
    # The README's commands, run as written: scripts/local-api.sh started as the README says, its
    # "Try it" requests, todo-admin, the cargo lambda watch set-up and each script's --help.
    run_step "README commands" bash scripts/readme-test.sh
    # openapi.yaml validated, then schemathesis over every operation against the local API.
    run_step "contract test" bash scripts/contract-test.sh
fi

# --- the deployed database path: PgBouncer (transaction mode), TLS, outage, connection limits ---
# Started here on loopback (scripts/lib/pg-aux.sh): PgBouncers in front of the test server, with
# and without max_prepared_statements; a PostgreSQL of our own with ssl=on (certificate from a
# throw-away CA), max_connections = 20, which the outage test stops and starts; PgBouncers with
# TLS in front of it. Test databases are created directly; the application connects through the
# pooler (TEST_APP_DATABASE_URL).
if [[ $# -eq 0 ]]; then
    # shellcheck source=scripts/lib/pg-aux.sh
    source scripts/lib/pg-aux.sh
    db_path_t0=$SECONDS
    trap 'stop_db_path_services; cleanup' EXIT
    start_db_path_services
    # Neon's setting: PgBouncer tracks protocol-level prepared statements, ours are on.
    TEST_APP_DATABASE_URL="$TEST_PGBOUNCER_PREP_URL" TEST_DB_PREPARED_STATEMENTS=true \
        run_step "e2e through PgBouncer, max_prepared_statements=200, prepared statements" \
        cargo_test -p api-tests --test api -- e2e_ rotation::
    # A pooler without prepared-statement support, and DB_PREPARED_STATEMENTS=false.
    TEST_APP_DATABASE_URL="$TEST_PGBOUNCER_NOPREP_URL" TEST_DB_PREPARED_STATEMENTS=false \
        run_step "e2e through PgBouncer, max_prepared_statements=0, unnamed statements" \
        cargo_test -p api-tests --test api -- e2e_ rotation::
    # TLS verification, outages (direct and through PgBouncer), connection limits, prepared
    # statements against a pooler without support: one at a time (the outage stops the server).
    run_step "database path: TLS, outage, connection limits" \
        cargo_test -p api-tests --test api -- --ignored --test-threads=1 db_path::
    stop_db_path_services
    log "database path steps took $((SECONDS - db_path_t0))s"
fi

log "all checks passed (${steps_passed[*]}) in $((SECONDS - started_at))s:" \
    "$tests_passed tests passed, $tests_failed failed, $tests_ignored ignored"
printf 'summary: %d passed, %d failed, %d skipped\n' \
    "$tests_passed" "$tests_failed" "$tests_ignored"
