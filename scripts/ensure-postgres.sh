#!/usr/bin/env bash
# Make sure a PostgreSQL server is available (see scripts/lib/postgres.sh) and
# print the DATABASE_URL export line on stdout, so that
#     eval "$(scripts/ensure-postgres.sh)"
# sets it in the calling shell. All messages go to stderr. A DATABASE_URL already
# set is kept; otherwise the URL names a database of the project's own
# (TODO_API_LOCAL_DB, default todo_local), created when missing, on the server
# found or started, never that server's `postgres` database.
set -euo pipefail

from_env=0
[[ -n "${DATABASE_URL:-}" ]] && from_env=1

# shellcheck source=scripts/lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/postgres.sh"

ensure_postgres
ensure_local_database

if [[ "$from_env" -eq 1 && "$DATABASE_URL" != "$(mask_url "$DATABASE_URL")" ]]; then
    # It came from the caller's environment and holds a password: do not echo
    # it; the line below keeps the caller's own value.
    # shellcheck disable=SC2016
    printf 'export DATABASE_URL="${DATABASE_URL}"\n'
else
    printf 'export DATABASE_URL=%q\n' "$DATABASE_URL"
fi
