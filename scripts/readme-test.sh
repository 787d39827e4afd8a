#!/usr/bin/env bash
# The README, run: every command README.md shows that can run on this machine without AWS, taken
# from README.md itself and run as written, so that a README line cannot rot unnoticed.
#
#   scripts/readme-test.sh            (scripts/test.sh runs it; it needs nothing else)
#
# README.md marks the blocks it runs with an HTML comment on the line before the fence:
#   <!-- readme-test: NAME -->
# and this script fails when one of the names below is missing, so a block cannot silently drop
# out of the test by being reworded:
#   run       the two commands: `scripts/local-api.sh` is started exactly as written (on a free
#             port: PORT, as the README says), with DATABASE_URL unset so that it finds or starts
#             PostgreSQL itself and must use a database of its own
#   try-it    the "Try it" requests, sent to that local API; the answers are checked
#   admin     `todo-admin migrate` and `grant-admin` against the same database
#   measure   every measuring script's `--help`
#   eddsa     the EdDSA key made as written and the local API started with it (its JWKS must
#             publish the Ed25519 key)
#   watch     the `cargo lambda watch` set-up lines (ensure-postgres, the key, migrate), which must
#             hand out a database of the project's own; `cargo lambda watch` itself is not run here
#
# The local API's database is a throwaway one (TODO_API_LOCAL_DB=<prefix>readme, dropped at the
# end), so the README's fixed example account can sign up on every run. Every process started
# here is stopped by its PID when the script ends, pass or fail.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

readme="README.md"
work="$(mktemp -d "${TMPDIR:-/tmp}/todo-readme.XXXXXX")"
prefix="${TODO_TEST_DB_PREFIX:-todo_test_readme$$_}"
local_db="${prefix}readme"
api_pid=""
eddsa_pid=""
# Where to drop the throwaway databases: the server scripts/test.sh uses, until the local API's
# log says which server it found.
admin_url="${DATABASE_URL:-}"

stop_pid() {
    local pid="$1" i
    [[ -n "$pid" ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    # The process group: `cargo run` and the program it started.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for (( i = 0; i < 50; i++ )); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    stop_pid "$api_pid"
    stop_pid "$eddsa_pid"
    if [[ -n "$admin_url" ]]; then
        psql -X -w -q "$admin_url" -c "DROP DATABASE IF EXISTS \"$local_db\" WITH (FORCE)" \
            >/dev/null 2>&1 || log "warning: could not drop $local_db"
    fi
    if [[ "$rc" -ne 0 ]]; then
        for f in "$work"/*.log; do
            [[ -f "$f" ]] || continue
            log "--- last lines of $f"
            tail -n 30 "$f" >&2 || true
        done
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# block NAME : print the fenced block that follows `<!-- readme-test: NAME -->` in README.md.
block() {
    python3 - "$readme" "$1" <<'PY'
import sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
marker = f"<!-- readme-test: {sys.argv[2]} -->"
for i, line in enumerate(lines):
    if line.strip() == marker:
        j = i + 1
        if j >= len(lines) or not lines[j].startswith("```"):
            sys.exit(f"README.md: {marker} is not followed by a fenced block")
        out = []
        for line in lines[j + 1:]:
            if line.startswith("```"):
                print("\n".join(out))
                sys.exit(0)
            out.append(line)
        sys.exit(f"README.md: the block after {marker} is not closed")
sys.exit(f"README.md has no {marker} block: a README command is no longer tested")
PY
}

# line_with BLOCK WORD : the one line of BLOCK that contains WORD (fails unless exactly one).
line_with() {
    local found
    found="$(grep -F -- "$2" <<<"$1" || true)"
    [[ -n "$found" ]] || die "README block has no line with '$2'"
    [[ "$(wc -l <<<"$found")" -eq 1 ]] || die "README block has several lines with '$2'"
    printf '%s\n' "$found"
}

# strip_comment LINE : the command without its trailing `# comment`.
strip_comment() {
    sed -E 's/[[:space:]]+#[^"'\'']*$//' <<<"$1"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_http URL PID LOG SECONDS : wait until URL answers HTTP (any status), while PID lives.
wait_http() {
    local url="$1" pid="$2" logf="$3" secs="$4" i
    for (( i = 0; i < secs * 4; i++ )); do
        kill -0 "$pid" 2>/dev/null || die "the process exited before answering (log: $logf)"
        if curl -s -o /dev/null --max-time 2 "$url"; then return 0; fi
        sleep 0.25
    done
    die "$url did not answer within ${secs}s (log: $logf)"
}

# start_api CMD PORT LOG : run a README command that starts the local API, in a session of its own
# (so it stops with its children), with DATABASE_URL and JWT_SECRET unset as on a fresh shell, on
# PORT and the throwaway database; print its PID.
start_api() {
    (
        unset DATABASE_URL JWT_SECRET
        export PORT="$2" TODO_API_LOCAL_DB="$local_db"
        exec setsid bash -c "$1" >"$3" 2>&1 </dev/null
    ) >/dev/null 2>&1 &
    printf '%s\n' "$!"
}

command -v curl >/dev/null 2>&1 || apt_install curl

run_block="$(block run)"
try_block="$(block try-it)"
admin_block="$(block admin)"
measure_block="$(block measure)"
watch_block="$(block watch)"
eddsa_block="$(block eddsa)"

# --- run: scripts/local-api.sh, exactly as written -------------------------------------------
run_cmd="$(strip_comment "$(line_with "$run_block" scripts/local-api.sh)")"
[[ "$run_cmd" == "scripts/local-api.sh" ]] || die "unexpected run command in README: '$run_cmd'"
port="$(free_port)"
log "==> README run command: $run_cmd (PORT=$port, database $local_db)"
api_pid="$(start_api "$run_cmd" "$port" "$work/local-api.log")"
# The first run builds the local API: allow for it.
wait_http "http://127.0.0.1:$port/.well-known/jwks.json" "$api_pid" "$work/local-api.log" 600
# The URL the script used, with the database name replaced: the server to clean up on.
used_url="$(sed -nE "s/.*using database $local_db: (postgres[^ ]*).*/\\1/p" "$work/local-api.log" | head -n1)"
[[ -n "$used_url" ]] || die "scripts/local-api.sh did not say it uses its own database $local_db"
admin_url="${used_url%/"$local_db"*}/postgres"

# --- try-it: the README's requests, against that API -----------------------------------------
log "==> README 'Try it' requests"
try_script="${try_block//localhost:3000/localhost:$port}"
[[ "$try_script" != "$try_block" ]] || die "the 'Try it' block no longer talks to localhost:3000"
(cd "$work" && bash -euo pipefail -c "$try_script") >"$work/try-it.out" 2>"$work/try-it.log" \
    || die "the README's 'Try it' requests failed"
python3 - "$work/try-it.out" <<'PY' || die "the 'Try it' answers are not what the README promises"
import json, sys
out = open(sys.argv[1], encoding="utf-8").read()
dec = json.JSONDecoder()
docs, i = [], 0
while i < len(out):
    if out[i].isspace():
        i += 1
        continue
    doc, i = dec.raw_decode(out, i)
    docs.append(doc)
assert len(docs) >= 2, f"expected the signup and the task list answers, got {out!r}"
signup, tasks = docs[0], docs[-1]
assert signup["user"]["email"] == "ada@example.com", signup
assert signup["token_type"] == "Bearer" and signup["access_token"] and signup["refresh_token"], signup
assert tasks == {"items": [], "next_cursor": None}, tasks
print("signup answered a user and tokens; GET /tasks answered an empty list")
PY

# The account landed in the local API's own database (not in the server's `postgres` one).
db_url="${admin_url%/postgres}/$local_db"
[[ "$(psql -X -w "$db_url" -Atc "select count(*) from users where email = 'ada@example.com'")" == 1 ]] \
    || die "the signed-up account is not in $local_db"

# --- admin: todo-admin migrate and grant-admin -----------------------------------------------
log "==> README todo-admin commands"
while IFS= read -r line; do
    cmd="$(strip_comment "$line")"
    [[ "$cmd" == *todo-admin* ]] || continue
    # The README's placeholder URLs stand for the deployment's: use the local database.
    cmd="$(sed -E "s#^DATABASE_URL='[^']*' ##" <<<"$cmd")"
    cmd="${cmd//you@example.com/ada@example.com}"
    log "    $cmd"
    DATABASE_URL="$db_url" bash -euo pipefail -c "$cmd" >>"$work/admin.out" 2>>"$work/admin.log" \
        || die "README command failed: $cmd"
done <<<"$admin_block"
grep -q "no pending migrations\|applied" "$work/admin.out" || die "todo-admin migrate said nothing"
grep -q "ada@example.com .* is now an admin" "$work/admin.out" || die "grant-admin did not promote the account"

# --- measure: each script's --help -----------------------------------------------------------
log "==> README measuring scripts (--help)"
n=0
while IFS= read -r script; do
    [[ -n "$script" ]] || continue
    [[ -x "$script" ]] || die "README names $script, which is not an executable file"
    "$script" --help >"$work/help.out" 2>&1 || die "$script --help failed"
    grep -qi "usage" "$work/help.out" || die "$script --help prints no usage"
    n=$((n + 1))
done < <(grep -oE 'scripts/[a-z-]+\.sh' <<<"$measure_block" | sort -u)
[[ "$n" -ge 3 ]] || die "expected the bench, login-timing and fuzz scripts in the README, found $n"

# --- eddsa: a key made as written, the local API started with it -----------------------------
log "==> README EdDSA local run"
keygen="$(line_with "$eddsa_block" "openssl genpkey")"
eddsa_run="$(line_with "$eddsa_block" scripts/local-api.sh)"
# key.pem goes to the scratch directory, not into the checkout.
(cd "$work" && bash -euo pipefail -c "$keygen") >"$work/keygen.log" 2>&1 || die "README key command failed: $keygen"
eddsa_port="$(free_port)"
eddsa_pid="$(start_api "${eddsa_run//key.pem/$work/key.pem}" "$eddsa_port" "$work/local-api-eddsa.log")"
wait_http "http://127.0.0.1:$eddsa_port/.well-known/jwks.json" "$eddsa_pid" "$work/local-api-eddsa.log" 300
curl -s "http://127.0.0.1:$eddsa_port/.well-known/jwks.json" | python3 -c '
import json, sys
keys = json.load(sys.stdin)["keys"]
assert keys and all(k["kty"] == "OKP" and k["crv"] == "Ed25519" for k in keys), keys
' || die "the EdDSA local API does not publish its Ed25519 key"
stop_pid "$eddsa_pid"
eddsa_pid=""

# --- watch: the cargo lambda watch set-up ----------------------------------------------------
log "==> README cargo lambda watch set-up"
watch_db="${prefix}watch"
setup="$(grep -v 'cargo lambda watch' <<<"$watch_block" | grep -v '^curl ')"
(
    unset DATABASE_URL
    export TODO_API_LOCAL_DB="$watch_db"
    bash -euo pipefail -c "$setup"$'\nprintf "%s\\n" "$DATABASE_URL" > '"$work/watch-url"
) >"$work/watch-setup.log" 2>&1 || die "the README's cargo lambda watch set-up failed"
watch_url="$(<"$work/watch-url")"
[[ "$watch_url" == */"$watch_db" || "$watch_url" == */"$watch_db"\?* ]] \
    || die "ensure-postgres.sh handed out $(mask_url "$watch_url"), not a database of its own"
psql -X -w -q "${admin_url}" -c "DROP DATABASE IF EXISTS \"$watch_db\" WITH (FORCE)" >/dev/null 2>&1 || true

log "README commands ran as written"
