# shellcheck shell=bash
# shellcheck disable=SC2034  # variables below are meant for the scripts that source this file
# ensure_postgres: make sure a PostgreSQL server answers and export DATABASE_URL.
# Source this file; do not run it.
#
# Order of preference:
#   1. DATABASE_URL already set: use it as is (only checked with `select 1`).
#   2. A server on 127.0.0.1:5432 that lets user postgres in (trust auth).
#      Set TODO_API_PG_SKIP_SYSTEM=1 to skip this probe (used to test path 3).
#   3. Our own throw-away cluster under the state directory, on port
#      TODO_API_PG_PORT (default 54329), listening on 127.0.0.1 only, trust
#      auth, user postgres. Created (initdb) when missing, started when
#      stopped, reused when running.
#      When running as root the cluster belongs to the `postgres` OS user (the
#      server refuses to run as root). If that user cannot reach the state
#      directory (e.g. it is under /root, mode 0700), the cluster goes to
#      TODO_API_PG_ROOT_STATE_DIR (default /var/lib/todo-api) instead.
#
# After a successful call: DATABASE_URL is exported; TODO_API_PG_SOURCE is one
# of env|system|own; for "own" also TODO_API_PG_BINDIR, TODO_API_PG_DATADIR,
# TODO_API_PG_LOG are set (not exported).

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# _pg_answers URL : true when `select 1` works on URL (never prompts).
_pg_answers() {
    local out
    out="$(PGCONNECT_TIMEOUT=5 psql -X -w "$1" -Atc 'select 1' 2>/dev/null)" || return 1
    [[ "$out" == 1 ]]
}

_pg_ensure_client() {
    if ! command -v psql >/dev/null 2>&1 || ! command -v pg_isready >/dev/null 2>&1; then
        log "psql/pg_isready not found; installing postgresql-client"
        apt_install postgresql-client
    fi
    command -v psql >/dev/null 2>&1 || die "psql still not found after installing postgresql-client"
}

# _pg_find_bindir [MAJOR] : print the newest /usr/lib/postgresql/*/bin that has
# initdb and pg_ctl (or the one of version MAJOR). Fails when there is none.
_pg_find_bindir() {
    local want="${1:-}" d found=""
    while IFS= read -r d; do
        [[ -n "$d" ]] || continue
        if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then
            if [[ -z "$want" || "$d" == "/usr/lib/postgresql/$want/bin" ]]; then
                found="$d"
            fi
        fi
    done < <(compgen -G '/usr/lib/postgresql/*/bin' | sort -V)
    [[ -n "$found" ]] || return 1
    printf '%s\n' "$found"
}

# _pg_as_owner CMD... : run CMD as the cluster owner (postgres when root).
_pg_as_owner() {
    if is_root; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# _pg_conf_quote VALUE : VALUE as a postgresql.conf string literal.
_pg_conf_quote() {
    printf "'%s'" "${1//\'/\'\'}"
}

_pg_own_cluster() {
    local port="${TODO_API_PG_PORT:-54329}"
    [[ "$port" =~ ^[0-9]+$ ]] || die "TODO_API_PG_PORT must be a port number, got '$port'"

    local bindir
    if ! bindir="$(_pg_find_bindir)"; then
        log "no PostgreSQL server binaries under /usr/lib/postgresql; installing postgresql"
        apt_install postgresql
        bindir="$(_pg_find_bindir)" || die "initdb still not found under /usr/lib/postgresql/*/bin"
    fi

    local base="$STATE_DIR"
    if is_root; then
        if ! id -u postgres >/dev/null 2>&1; then
            log "creating the postgres OS user (the server refuses to run as root)"
            useradd --system --user-group --home-dir /var/lib/postgresql \
                --no-create-home --shell /usr/sbin/nologin postgres \
                || die "cannot create the postgres OS user"
        fi
        if ! runuser -u postgres -- test -x "$base"; then
            base="${TODO_API_PG_ROOT_STATE_DIR:-/var/lib/todo-api}"
            mkdir -p "$base"
            chmod 0755 "$base"
            runuser -u postgres -- test -x "$base" \
                || die "the postgres OS user cannot reach $base; set TODO_API_PG_ROOT_STATE_DIR to a directory it can reach"
        fi
    fi

    local data="$base/pgdata" rundir="$base/pgrun"
    # Unix socket paths are limited to ~107 bytes.
    if (( ${#rundir} + 20 > 100 )); then
        rundir="${TMPDIR:-/tmp}/todo-api-pg-$(id -u)-$port"
    fi
    local logfile="$rundir/postgres.log"

    # Serialize concurrent callers (two test runs at once). The lock fd must
    # not leak into the server started by pg_ctl (see `{lockfd}>&-` below),
    # or the lock would be held for as long as the server runs.
    local lockfd
    exec {lockfd}>"$base/pg.lock"
    if command -v flock >/dev/null 2>&1; then
        flock -w 180 "$lockfd" || die "timed out waiting for $base/pg.lock"
    fi

    mkdir -p "$rundir"
    chmod 0700 "$rundir"
    if is_root; then
        chown postgres:postgres "$rundir"
        if [[ -d "$data" && "$(stat -c %U "$data")" != postgres ]]; then
            chown -R postgres:postgres "$data"
        fi
    fi

    # A data dir from another major version, or a broken one: move it aside.
    if [[ -d "$data" ]]; then
        local stamp
        stamp="$(date +%Y%m%d%H%M%S)"
        if [[ -f "$data/PG_VERSION" ]]; then
            local ver other
            ver="$(<"$data/PG_VERSION")"
            if other="$(_pg_find_bindir "$ver")"; then
                bindir="$other"
            else
                log "cluster in $data is PostgreSQL $ver, whose binaries are gone; moving it to $data.old-$ver-$stamp"
                mv "$data" "$data.old-$ver-$stamp"
            fi
        elif [[ -n "$(ls -A "$data")" ]]; then
            log "$data is not a PostgreSQL cluster; moving it to $data.broken-$stamp"
            mv "$data" "$data.broken-$stamp"
        fi
    fi

    local created=0
    if [[ ! -f "$data/PG_VERSION" ]]; then
        mkdir -p "$data"
        chmod 0700 "$data"
        if is_root; then chown postgres:postgres "$data"; fi
        log "initdb: creating a PostgreSQL cluster in $data"
        if ! _pg_as_owner "$bindir/initdb" -D "$data" -A trust -U postgres \
                -E UTF8 --no-locale >"$rundir/initdb.log" 2>&1; then
            tail -n 30 "$rundir/initdb.log" >&2 || true
            die "initdb failed (full log: $rundir/initdb.log)"
        fi
        printf '\n# Added by todo-api scripts/lib/postgres.sh\ninclude_if_exists = %s\n' \
            "$(_pg_conf_quote todo-api.conf)" | _pg_as_owner tee -a "$data/postgresql.conf" >/dev/null
        created=1
    fi

    # Settings rewritten at every start (socket dir may move with the state dir).
    # A throw-away development/test cluster: durability traded for speed.
    {
        printf '# Written by todo-api scripts/lib/postgres.sh at each start.\n'
        printf 'listen_addresses = %s\n' "$(_pg_conf_quote 127.0.0.1)"
        printf 'unix_socket_directories = %s\n' "$(_pg_conf_quote "$rundir")"
        printf 'max_connections = 200\n'
        printf 'fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n'
    } | _pg_as_owner tee "$data/todo-api.conf" >/dev/null

    local rc=0 action
    _pg_as_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1 || rc=$?
    if [[ "$rc" -eq 0 ]]; then
        action="reusing the running"
        local running_port
        running_port="$(sed -n 4p "$data/postmaster.pid" 2>/dev/null || true)"
        if [[ "$running_port" =~ ^[0-9]+$ && "$running_port" != "$port" ]]; then
            log "note: our cluster already runs on port $running_port (not $port); using it"
            port="$running_port"
        fi
    else
        if [[ "$created" -eq 1 ]]; then action="created and started"; else action="started the stopped"; fi
        if ! _pg_as_owner "$bindir/pg_ctl" -D "$data" -l "$logfile" -w -t 60 \
                -o "-p $port -c listen_addresses=127.0.0.1" start >/dev/null 2>&1 {lockfd}>&-; then
            tail -n 30 "$logfile" >&2 || true
            die "could not start PostgreSQL in $data on port $port (log: $logfile; is the port taken? set TODO_API_PG_PORT)"
        fi
    fi

    local url="postgres://postgres@127.0.0.1:$port/postgres" i
    for (( i = 0; i < 60; i++ )); do
        _pg_answers "$url" && break
        sleep 0.5
    done
    _pg_answers "$url" || die "PostgreSQL in $data does not answer on $url (log: $logfile)"

    exec {lockfd}>&-

    export DATABASE_URL="$url"
    TODO_API_PG_SOURCE="own"
    TODO_API_PG_BINDIR="$bindir"
    TODO_API_PG_DATADIR="$data"
    TODO_API_PG_LOG="$logfile"
    log "PostgreSQL: $action own cluster ($(basename "$(dirname "$bindir")")) at $url; data dir $data; log $logfile"
}

ensure_postgres() {
    if [[ -n "${DATABASE_URL:-}" ]]; then
        _pg_ensure_client
        _pg_answers "$DATABASE_URL" \
            || die "DATABASE_URL ($(mask_url "$DATABASE_URL")) does not answer 'select 1'"
        export DATABASE_URL
        TODO_API_PG_SOURCE="env"
        log "PostgreSQL: using DATABASE_URL from the environment: $(mask_url "$DATABASE_URL")"
        return 0
    fi

    _pg_ensure_client

    if [[ "${TODO_API_PG_SKIP_SYSTEM:-0}" != 1 ]]; then
        local sys="postgres://postgres@127.0.0.1:5432/postgres"
        if pg_isready -q -h 127.0.0.1 -p 5432 -t 3 >/dev/null 2>&1 && _pg_answers "$sys"; then
            export DATABASE_URL="$sys"
            TODO_API_PG_SOURCE="system"
            log "PostgreSQL: using the server already running on 127.0.0.1:5432: $sys"
            return 0
        fi
    fi

    _pg_own_cluster
}

# ensure_local_database: after ensure_postgres, for the commands a developer runs by hand (the
# local API, `eval "$(scripts/ensure-postgres.sh)"`). A DATABASE_URL from the environment is used
# as it is. A server the scripts found or started themselves gets a database of the project's
# own, TODO_API_LOCAL_DB (default todo_local), created when missing: the project's tables never
# land in that server's `postgres` database, which may belong to whatever else the user runs.
ensure_local_database() {
    [[ "${TODO_API_PG_SOURCE:-}" == env ]] && return 0
    local name="${TODO_API_LOCAL_DB:-todo_local}"
    [[ "$name" =~ ^[a-z_][a-z0-9_]{0,62}$ ]] \
        || die "TODO_API_LOCAL_DB must be a plain lower-case database name (got '$name')"
    local exists
    exists="$(psql -X -w "$DATABASE_URL" -Atc \
        "select 1 from pg_database where datname = '$name'")" \
        || die "cannot list databases at $(mask_url "$DATABASE_URL")"
    if [[ "$exists" != 1 ]]; then
        # Another caller may create it between the check and here: that is fine.
        psql -X -w -q "$DATABASE_URL" -c "CREATE DATABASE \"$name\"" >/dev/null 2>&1 || true
        exists="$(psql -X -w "$DATABASE_URL" -Atc \
            "select 1 from pg_database where datname = '$name'")" || true
        [[ "$exists" == 1 ]] || die "could not create database $name at $(mask_url "$DATABASE_URL")"
        log "created database $name"
    fi
    local url
    url="$(_pg_with_database "$DATABASE_URL" "$name")"
    export DATABASE_URL="$url"
    log "using database $name: $(mask_url "$DATABASE_URL")"
}

# _pg_with_database URL NAME : URL with its database (the path) replaced by NAME.
_pg_with_database() {
    python3 - "$1" "$2" <<'PY'
import sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
print(urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + sys.argv[2], u.query, u.fragment)))
PY
}
