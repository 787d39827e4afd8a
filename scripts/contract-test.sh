#!/usr/bin/env bash
# Contract test: the local API against openapi.yaml, with schemathesis.
#
#   scripts/contract-test.sh
#
# 1. openapi-spec-validator openapi.yaml (OpenAPI 3.1 structure and $refs).
# 2. Builds and starts target/debug/local-api on a free 127.0.0.1 port, against
#    a scratch database todo_contract_<pid> (dropped at exit), with a random
#    JWT key and the rate limits raised out of the way.
# 3. Signs up the spec's example account (ada@example.com, so the spec's own
#    examples hit a real account), makes it admin with psql, logs it in; signs
#    up a plain user too.
# 4. Runs schemathesis over every operation, in three passes:
#      admin   every operation that cannot revoke the caller's session, with
#              the admin token (so /admin is reachable); all phases, stateful
#              included (task create -> get/patch/delete, signup -> login, ...);
#      user    the same plus admin PATCH/DELETE /admin/users/{id}, with the
#              plain user's token (the 403 side of /admin);
#      revoke  logout, logout-all, DELETE /auth/me, POST /auth/password,
#              DELETE /auth/sessions/{id} and
#              admin PATCH/DELETE /admin/users/{id}: each test case runs as a
#              fresh admin account (signed up, promoted, logged in by a hook),
#              so a case that revokes or deletes its caller starves nothing.
#              In half of the positive cases the hook makes the request the
#              one that really bites: the right password (and a valid new
#              one), or the caller's own user id.
#    Checks: every schemathesis check (server errors, response schema, status
#    codes documented, content types, response headers, negative data
#    rejected, auth not ignored, use-after-free, resource availability, ...)
#    except three that contradict documented decisions of openapi.yaml:
#      positive_data_acceptance   the API has rules JSON Schema cannot state
#                                 (breached-password list, cursors the API
#                                 issued, email syntax), so schema-valid data
#                                 can rightly be 422;
#      unsupported_method,        an undeclared method is 404 `not_found`,
#      allow_header_conformance   never 405 with Allow (API Gateway's
#                                 MISSING_AUTHENTICATION_TOKEN response).
#    A 413 counts as a rejection of schema-violating data (the body limit is
#    checked first).
# 5. Stops the server (by its PID) and drops the database at exit; exits
#    non-zero on any failure and prints one closing summary line.
#
# Environment: DATABASE_URL (else scripts/lib/postgres.sh finds or starts a
# PostgreSQL); CONTRACT_MAX_EXAMPLES (default 40 per operation and phase);
# CONTRACT_SEED (default: random; the seed of each pass is printed);
# CONTRACT_KEEP_DIR (a directory that receives each pass's output and JUnit
# report and the server log); CONTRACT_RUST_LOG (the server's RUST_LOG,
# default warn; `info` logs every request with its status).
# Only 127.0.0.1 is ever contacted. Takes about two minutes on 2 cores.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh
# shellcheck source=scripts/lib/postgres.sh
source scripts/lib/postgres.sh
# shellcheck source=scripts/lib/pytools.sh
source scripts/lib/pytools.sh

started_at=$SECONDS
repo_root="$(pwd)"
spec="$repo_root/openapi.yaml"
max_examples="${CONTRACT_MAX_EXAMPLES:-40}"
[[ "$max_examples" =~ ^[1-9][0-9]*$ ]] || die "CONTRACT_MAX_EXAMPLES must be a positive number"
seed="${CONTRACT_SEED:-}"
[[ -z "$seed" || "$seed" =~ ^[0-9]+$ ]] || die "CONTRACT_SEED must be a number"

db="todo_contract_$$"
work=""
api_pid=""
db_created=0
base_url=""

# The admin URL of the server (same server, database `postgres` unless the
# URL names another), and the URL of a database NAME on it.
db_url_for() {
    python3 - "$DATABASE_URL" "$1" <<'PY'
import sys, urllib.parse as u
url, name = sys.argv[1], sys.argv[2]
p = u.urlsplit(url)
print(u.urlunsplit((p.scheme, p.netloc, "/" + name, p.query, p.fragment)))
PY
}

drop_database() {
    local name="$1" force=""
    local num
    num="$(psql -X -w "$DATABASE_URL" -Atc 'show server_version_num' 2>/dev/null || true)"
    if [[ "$num" =~ ^[0-9]+$ ]] && (( num >= 130000 )); then force=" WITH (FORCE)"; fi
    psql -X -w -q "$DATABASE_URL" -v ON_ERROR_STOP=1 \
        -c "DROP DATABASE IF EXISTS \"$name\"$force" >/dev/null
}

cleanup() {
    local rc=$?
    if [[ -n "$api_pid" ]] && kill -0 "$api_pid" 2>/dev/null; then
        kill "$api_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$api_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$api_pid" 2>/dev/null || true
        wait "$api_pid" 2>/dev/null || true
    fi
    if [[ "$db_created" -eq 1 ]]; then
        drop_database "$db" || log "warning: could not drop database $db"
    fi
    if [[ -n "$work" && -d "$work" ]]; then
        if [[ -n "${CONTRACT_KEEP_DIR:-}" ]]; then
            if mkdir -p "$CONTRACT_KEEP_DIR"; then
                cp "$work"/*.out "$work"/*.xml "$work"/*.log "$CONTRACT_KEEP_DIR"/ 2>/dev/null || true
            fi
        fi
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ensure_postgres
ensure_pytools
command -v timeout >/dev/null 2>&1 || die "timeout (coreutils) not found"

work="$(mktemp -d "${TMPDIR:-/tmp}/todo-contract.XXXXXX")"

# --- 1. the spec itself ------------------------------------------------------
log "==> openapi-spec-validator openapi.yaml"
openapi-spec-validator "$spec" || die "openapi.yaml is not a valid OpenAPI document"

# --- 2. the local API --------------------------------------------------------
log "==> cargo build --locked -p local-api --bins"
cargo build --locked -p local-api --bins
target_dir="$(cargo metadata --format-version 1 --no-deps --locked \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
bin="$target_dir/debug/local-api"
[[ -x "$bin" ]] || die "$bin was not built"

# Databases of earlier runs that were killed before their trap ran.
while IFS= read -r old; do
    [[ "$old" =~ ^todo_contract_([0-9]+)$ ]] || continue
    if ! kill -0 "${BASH_REMATCH[1]}" 2>/dev/null; then
        if drop_database "$old"; then log "dropped leftover database $old"; fi
    fi
done < <(psql -X -w "$DATABASE_URL" -Atc \
    "select datname from pg_database where datname like 'todo\_contract\_%'")

psql -X -w -q "$DATABASE_URL" -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$db\"" >/dev/null \
    || die "cannot create database $db at $(mask_url "$DATABASE_URL")"
db_created=1
db_url="$(db_url_for "$db")"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
base_url="http://127.0.0.1:$port"
api_log="$work/local-api.log"
# The highest value the configuration accepts (1..1000000) for each limit.
rate_max=1000000
log "==> starting $bin on $base_url (database $db, log $api_log)"
env DATABASE_URL="$db_url" PORT="$port" RUST_LOG="${CONTRACT_RUST_LOG:-warn}" NO_COLOR=1 \
    JWT_SECRET="$(head -c 48 /dev/urandom | base64 | tr -d '\n')" \
    MFA_ENCRYPTION_KEY="$(head -c 32 /dev/urandom | base64 | tr -d '\n')" \
    RATE_LOGIN_ACCOUNT_FAILURES=$rate_max RATE_LOGIN_IP_ATTEMPTS=$rate_max \
    RATE_SIGNUP_IP=$rate_max RATE_REFRESH_SESSION=$rate_max RATE_REFRESH_IP=$rate_max \
    RATE_FORGOT_IP=$rate_max RATE_FORGOT_EMAIL=$rate_max RATE_RESET_IP=$rate_max \
    RATE_VERIFY_IP=$rate_max RATE_VERIFY_RESEND=$rate_max \
    "$bin" >"$api_log" 2>&1 &
api_pid=$!

api_ready=0
for _ in $(seq 1 300); do
    if ! kill -0 "$api_pid" 2>/dev/null; then
        tail -n 40 "$api_log" >&2 || true
        die "local-api exited at start (log above)"
    fi
    if python3 -c 'import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/.well-known/jwks.json", timeout=1)' "$base_url" 2>/dev/null; then
        api_ready=1
        break
    fi
    sleep 0.2
done
[[ "$api_ready" -eq 1 ]] || { tail -n 40 "$api_log" >&2 || true; die "local-api did not answer within 60 s"; }

# --- 3. accounts ---------------------------------------------------------------
# The spec's own example credentials, so the examples phase logs in for real.
admin_email="ada@example.com"
admin_password="correct horse battery staple"
user_email="contract-user@example.com"
user_password="plain user $(head -c 12 /dev/urandom | base64 | tr -d '\n/+=')"

# http_json METHOD PATH [BODY [TOKEN]] : print the JSON answer; fail on non-2xx.
http_json() {
    python3 - "$base_url" "$@" <<'PY'
import json, sys, urllib.request, urllib.error
base, method, path = sys.argv[1:4]
body = sys.argv[4] if len(sys.argv) > 4 else None
token = sys.argv[5] if len(sys.argv) > 5 else None
req = urllib.request.Request(base + path, method=method,
                             data=body.encode() if body is not None else None)
if body is not None:
    req.add_header("Content-Type", "application/json")
if token:
    req.add_header("Authorization", "Bearer " + token)
try:
    with urllib.request.urlopen(req, timeout=30) as r:
        sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    sys.stderr.write(f"{method} {path}: {e.code} {e.read().decode()[:500]}\n")
    sys.exit(1)
PY
}
json_field() {
    python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}
creds() {
    python3 -c 'import json,sys; print(json.dumps({"email": sys.argv[1], "password": sys.argv[2]}))' "$1" "$2"
}

http_json POST /auth/signup "$(creds "$admin_email" "$admin_password")" >/dev/null \
    || die "signup of $admin_email failed"
granted="$(psql -X -w -q "$db_url" -v ON_ERROR_STOP=1 -Atc \
    "UPDATE users SET role='admin' WHERE lower(email)=lower('$admin_email') RETURNING id")" \
    || die "could not grant admin with psql"
[[ -n "$granted" ]] || die "no user $admin_email to grant admin"
admin_token="$(http_json POST /auth/login "$(creds "$admin_email" "$admin_password")" \
    | json_field access_token)" || die "admin login failed"
http_json POST /auth/signup "$(creds "$user_email" "$user_password")" >/dev/null \
    || die "signup of $user_email failed"
user_token="$(http_json POST /auth/login "$(creds "$user_email" "$user_password")" \
    | json_field access_token)" || die "user login failed"
log "accounts: admin $admin_email, user $user_email"

# --- 4. schemathesis -------------------------------------------------------------
cat >"$work/schemathesis.toml" <<'TOML'
# 413 is how the API rejects an oversized body, before any schema check.
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
TOML

# The hook of the `revoke` pass: a fresh admin account per test case.
cat >"$work/fresh_admin_hooks.py" <<'PY'
"""schemathesis hooks for the `revoke` pass of scripts/contract-test.sh."""

import base64
import itertools
import json
import os
import uuid

import requests
import schemathesis

BASE = os.environ["CONTRACT_BASE_URL"]
ADMIN_TOKEN = os.environ["CONTRACT_ADMIN_TOKEN"]
PASSWORD = "contract " + uuid.uuid4().hex
_turn = itertools.count()
_session = requests.Session()


def _call(method, path, body=None, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = _session.request(method, BASE + path, json=body, headers=headers, timeout=30)
    if r.status_code // 100 != 2:
        raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:300]}")
    return r.json()


@schemathesis.auth(refresh_interval=None)
class FreshAdmin:
    """Sign up an account, promote it to admin, log it in: one per test case."""

    def get(self, case, ctx):
        email = f"fresh-{uuid.uuid4().hex}@example.com"
        creds = {"email": email, "password": PASSWORD}
        user_id = _call("POST", "/auth/signup", creds)["user"]["id"]
        _call("PATCH", f"/admin/users/{user_id}", {"role": "admin"}, ADMIN_TOKEN)
        login = _call("POST", "/auth/login", creds)
        token = login["access_token"]
        # The session id: the `sid` claim of the access token (for DELETE /auth/sessions/{id}).
        claims = token.split(".")[1]
        sid = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["sid"]
        return {"token": token, "user_id": user_id, "session_id": sid}

    def set(self, case, data, ctx):
        case.headers = dict(case.headers or {})
        case.headers["Authorization"] = f"Bearer {data['token']}"
        meta = case.meta
        positive = meta is not None and meta.generation.mode.is_positive
        # In every other positive case, aim at the caller for real.
        if not positive or next(_turn) % 2:
            return
        path = case.operation.path
        method = case.method.upper()
        body = case.body
        if path == "/admin/users/{id}":
            case.path_parameters = {**(case.path_parameters or {}), "id": data["user_id"]}
        elif path == "/auth/sessions/{id}":
            case.path_parameters = {**(case.path_parameters or {}), "id": data["session_id"]}
        elif (method, path) == ("DELETE", "/auth/me") and isinstance(body, dict):
            if isinstance(body.get("password"), str):
                case.body = {**body, "password": PASSWORD}
        elif (method, path) == ("POST", "/auth/password") and isinstance(body, dict):
            if isinstance(body.get("current_password"), str):
                new = body.get("new_password")
                if not isinstance(new, str) or len(new) < 12:
                    new = "contract " + uuid.uuid4().hex
                case.body = {**body, "current_password": PASSWORD, "new_password": new}
PY

revoking_ops=(logout logoutAll deleteMe changePassword endSession updateUser deleteUser)
ops_total="$(python3 - "$spec" <<'PY'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
methods = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
print(sum(1 for item in doc["paths"].values() for m in item if m in methods))
PY
)"

passes_run=0
cases_total=0
failures_total=0
failed_passes=()
declare -A tested_ops=()

# run_pass NAME WALL_SECONDS [schemathesis run args...]
run_pass() {
    local name="$1" wall="$2" rc=0 out="$work/$1.out"
    shift 2
    local seed_args=()
    if [[ -n "$seed" ]]; then seed_args=(--seed "$seed"); fi
    log "==> schemathesis pass '$name' (max $max_examples examples per operation, at most ${wall}s)"
    (
        cd "$work"
        timeout --kill-after=15 "$wall" \
            schemathesis --config-file "$work/schemathesis.toml" --no-color run "$spec" \
            --url "$base_url" \
            --checks all \
            --exclude-checks positive_data_acceptance,unsupported_method,allow_header_conformance \
            --max-examples "$max_examples" \
            --generation-database none \
            --request-timeout 30 \
            --report junit --report-junit-path "$work/$name.junit.xml" \
            "${seed_args[@]}" "$@"
    ) 2>&1 | tee "$out" || rc=$?
    passes_run=$((passes_run + 1))
    local cases fails
    cases="$(grep -Eo '^ +[0-9]+ generated' "$out" | grep -Eo '[0-9]+' | tail -n1 || true)"
    fails="$(grep -Eo '=+ [0-9]+ failures?' "$out" | grep -Eo '[0-9]+' | tail -n1 || true)"
    cases_total=$((cases_total + ${cases:-0}))
    failures_total=$((failures_total + ${fails:-0}))
    # Operations this pass tested, from its JUnit report.
    if [[ -f "$work/$name.junit.xml" ]]; then
        while IFS= read -r op; do
            [[ -n "$op" ]] && tested_ops["$op"]=1
        done < <(python3 - "$work/$name.junit.xml" <<'PY'
import sys, xml.etree.ElementTree as ET
for tc in ET.parse(sys.argv[1]).iter("testcase"):
    name = tc.get("name", "")
    if name.split(" ")[0] in {"GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE"}:
        print(name)
PY
)
    fi
    if [[ "$rc" -ne 0 ]]; then
        if [[ "$rc" -eq 124 || "$rc" -eq 137 ]]; then
            log "pass '$name' hit its ${wall}s wall-clock limit"
        fi
        [[ -n "$fails" && "$fails" != 0 ]] || failures_total=$((failures_total + 1))
        failed_passes+=("$name")
        log "pass '$name' FAILED (exit $rc)"
    else
        log "<== pass '$name' ok"
    fi
}

exclude_revoking=()
for op in "${revoking_ops[@]}"; do exclude_revoking+=(--exclude-operation-id "$op"); done
include_revoking=()
for op in "${revoking_ops[@]}"; do include_revoking+=(--include-operation-id "$op"); done

run_pass admin 150 --header "Authorization: Bearer $admin_token" "${exclude_revoking[@]}"
run_pass user 90 --header "Authorization: Bearer $user_token" \
    --exclude-operation-id logout --exclude-operation-id logoutAll \
    --exclude-operation-id deleteMe --exclude-operation-id changePassword \
    --exclude-operation-id endSession --phases examples,coverage,fuzzing
CONTRACT_BASE_URL="$base_url" CONTRACT_ADMIN_TOKEN="$admin_token" \
SCHEMATHESIS_HOOKS="$work/fresh_admin_hooks.py" \
    run_pass revoke 150 "${include_revoking[@]}" --phases examples,coverage,fuzzing

# A server error the checks could not see (e.g. a panic that dropped a connection).
if grep -Eq 'panicked|\bERROR\b' "$api_log"; then
    log "the local API logged errors or panics:"
    grep -E 'panicked|\bERROR\b' "$api_log" | head -n 20 >&2
    failures_total=$((failures_total + 1))
    failed_passes+=("server-log")
fi

elapsed=$((SECONDS - started_at))
if [[ "${#failed_passes[@]}" -gt 0 ]]; then
    tail -n 30 "$api_log" >&2 || true
    log "contract test FAILED in ${elapsed}s: failing: ${failed_passes[*]}"
    printf 'contract-test: FAILED, %d/%d operations tested, %d test cases in %d passes, %d failures (%s)\n' \
        "${#tested_ops[@]}" "$ops_total" "$cases_total" "$passes_run" "$failures_total" "${failed_passes[*]}"
    exit 1
fi
if [[ "${#tested_ops[@]}" -ne "$ops_total" ]]; then
    log "only ${#tested_ops[@]} of $ops_total operations were tested: ${!tested_ops[*]}"
    printf 'contract-test: FAILED, %d/%d operations tested\n' "${#tested_ops[@]}" "$ops_total"
    exit 1
fi
printf 'contract-test: ok, %d/%d operations tested, %d test cases in %d passes, 0 failures (%ds)\n' \
    "${#tested_ops[@]}" "$ops_total" "$cases_total" "$passes_run" "$elapsed"
