#!/usr/bin/env bash
# The project's run command: the API on this machine, against PostgreSQL.
#
#   scripts/local-api.sh [args for the local-api binary...]
#
# DATABASE_URL: taken from the environment, else a database of the project's own
# (TODO_API_LOCAL_DB, default todo_local) on a PostgreSQL found or started by
# scripts/lib/postgres.sh (never that server's `postgres` database). JWT_SECRET: taken from the environment, else a
# local development key kept in $STATE_DIR/dev-jwt-secret (created once, 0600). MFA_ENCRYPTION_KEY
# (the TOTP secret encryption key): likewise, else $STATE_DIR/dev-mfa-key (32 random bytes, base64).
# JWT_ISSUER / JWT_AUDIENCE / PORT defaults are the program's own. LOCAL_API_RELEASE=1: the
# release build instead of the debug one.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh
# shellcheck source=scripts/lib/postgres.sh
source scripts/lib/postgres.sh

ensure_postgres
ensure_local_database

if [[ -z "${MFA_ENCRYPTION_KEY:-}" ]]; then
    mfa_keyfile="$STATE_DIR/dev-mfa-key"
    if [[ ! -s "$mfa_keyfile" ]]; then
        tmp="$mfa_keyfile.tmp.$$"
        ( umask 077; { head -c 32 /dev/urandom | base64 -w0; echo; } >"$tmp" ) \
            || { rm -f "$tmp"; die "could not create $mfa_keyfile"; }
        # Never overwrite a key another run wrote meanwhile (enrolments made under it).
        mv -n "$tmp" "$mfa_keyfile"
        rm -f "$tmp"
        log "created a local development MFA encryption key in $mfa_keyfile"
    fi
    MFA_ENCRYPTION_KEY="$(tr -d '\n' <"$mfa_keyfile")"
    [[ -n "$MFA_ENCRYPTION_KEY" ]] || die "$mfa_keyfile is empty; delete it and run again"
    export MFA_ENCRYPTION_KEY
fi

if [[ -z "${JWT_SECRET:-}" ]]; then
    keyfile="$STATE_DIR/dev-jwt-secret"
    if [[ ! -s "$keyfile" ]]; then
        tmp="$keyfile.tmp.$$"
        (
            umask 077
            if command -v openssl >/dev/null 2>&1; then
                openssl rand -base64 48 >"$tmp"
            else
                { head -c 48 /dev/urandom | base64 -w0; echo; } >"$tmp"
            fi
        ) || { rm -f "$tmp"; die "could not create $keyfile"; }
        # Never overwrite a key another run wrote meanwhile.
        mv -n "$tmp" "$keyfile"
        rm -f "$tmp"
        log "created a local development JWT key in $keyfile"
    fi
    chmod 0600 "$keyfile"
    JWT_SECRET="$(tr -d '\n' <"$keyfile")"
    [[ -n "$JWT_SECRET" ]] || die "$keyfile is empty; delete it and run again"
    export JWT_SECRET
    log "JWT_SECRET not set: using the local development key from $keyfile"
fi

log "local API will serve on http://127.0.0.1:${PORT:-3000} (Ctrl-C to stop)"
# A debug build by default (argon2 is optimised even there: see Cargo.toml), so the first start
# takes a minute, not the many minutes of the release profile's fat LTO; LOCAL_API_RELEASE=1 runs
# the release build (what scripts/bench.sh measures).
profile=()
if [[ "${LOCAL_API_RELEASE:-0}" == 1 ]]; then profile=(--release); fi
exec cargo run "${profile[@]}" --locked -p local-api --bin local-api -- "$@"
