# shellcheck shell=bash
# shellcheck disable=SC2034  # variables below are meant for the scripts that source this file
# PgBouncer in transaction mode on loopback, for the tests that run through a pooler as the
# deployed functions do (Neon's pooled endpoint is PgBouncer in transaction mode).
# Source this file; do not run it.
#
#   ensure_pgbouncer_binary          sets PGBOUNCER_BIN to a PgBouncer >= 1.21
#   start_pgbouncer NAME BACKEND_HOST BACKEND_PORT MAX_PREPARED [EXTRA_CONFIG_LINE...]
#                                    starts one on a free port of 127.0.0.1, in front of the
#                                    PostgreSQL on BACKEND_HOST:BACKEND_PORT (every database, trust
#                                    auth as user postgres); sets PGBOUNCER_PORT
#   stop_pgbouncer NAME              stops the one started under NAME (by the PID it wrote)
#
# Why not simply Debian's package: bookworm's pgbouncer is 1.18, which has no
# `max_prepared_statements` (1.21+), so it cannot stand for Neon's pooler with prepared
# statements on; bookworm-backports has none. The next best honest thing: Debian's own source
# package of trixie's pgbouncer (1.24.1, with Debian's security patches), fetched with
# `apt-get source` from Debian's archive and built once against bookworm's libraries (about
# 25 s), cached in the state directory. A pgbouncer >= 1.21 already on PATH is used as is.

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PGBOUNCER_SOURCE_VERSION="1.24.1"

# _pgb_version BIN : print "MAJOR MINOR" of a pgbouncer binary.
_pgb_version() {
    "$1" --version 2>/dev/null | sed -nE 's/^PgBouncer ([0-9]+)\.([0-9]+).*/\1 \2/p' | head -n 1
}

_pgb_recent_enough() {
    local v major minor
    v="$(_pgb_version "$1")"
    [[ -n "$v" ]] || return 1
    read -r major minor <<<"$v"
    (( major > 1 || (major == 1 && minor >= 21) ))
}

_pgb_build_from_debian_source() {
    local base
    base="$(_pgb_dir "build-$PGBOUNCER_SOURCE_VERSION")"
    if [[ -x "$base/pgbouncer" ]] && _pgb_recent_enough "$base/pgbouncer"; then
        PGBOUNCER_BIN="$base/pgbouncer"
        return 0
    fi
    log "PgBouncer: Debian bookworm's is $(_pgb_version /usr/sbin/pgbouncer 2>/dev/null | tr ' ' . || echo absent)," \
        "without max_prepared_statements; building Debian trixie's source package $PGBOUNCER_SOURCE_VERSION"
    local pkg missing=()
    for pkg in dpkg-dev build-essential pkg-config libevent-dev libssl-dev libc-ares-dev; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    apt_install "${missing[@]}"
    local work apt_dir
    work="$(mktemp -d "${TMPDIR:-/tmp}/todo-api-pgbouncer.XXXXXX")"
    apt_dir="$work/apt"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
    # A private apt configuration: the deb-src line is used for this download only and the
    # machine's own sources are left alone.
    printf 'deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main\n' \
        >"$apt_dir/sources.list"
    local apt_opts=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o Dir::Etc::sourceparts=/dev/null
        -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o APT::Sandbox::User=root)
    (
        cd "$work"
        apt-get "${apt_opts[@]}" -q update >"$work/apt.log" 2>&1 &&
            apt-get "${apt_opts[@]}" -q source --download-only pgbouncer >>"$work/apt.log" 2>&1
    ) || { tail -n 20 "$work/apt.log" >&2; die "could not download pgbouncer's Debian source package"; }
    local dsc
    dsc="$(compgen -G "$work/pgbouncer_*.dsc" | head -n 1)" || die "no pgbouncer .dsc downloaded"
    # dpkg-source checks the signatures of the files against the .dsc and applies Debian's patches.
    dpkg-source -x "$dsc" "$work/src" >"$work/dpkg-source.log" 2>&1 \
        || { tail -n 20 "$work/dpkg-source.log" >&2; die "dpkg-source -x $dsc failed"; }
    (
        cd "$work/src"
        ./configure --without-systemd --without-pam --with-cares >"$work/build.log" 2>&1 &&
            nice -n 10 make -j"$(nproc)" >>"$work/build.log" 2>&1
    ) || { tail -n 30 "$work/build.log" >&2; die "building pgbouncer failed (log: $work/build.log)"; }
    mkdir -p "$base"
    chmod 0755 "$base"
    install -m 0755 "$work/src/pgbouncer" "$base/pgbouncer"
    rm -rf "$work"
    _pgb_recent_enough "$base/pgbouncer" || die "the pgbouncer built in $base is not >= 1.21"
    PGBOUNCER_BIN="$base/pgbouncer"
}

ensure_pgbouncer_binary() {
    if [[ -n "${PGBOUNCER_BIN:-}" ]] && _pgb_recent_enough "$PGBOUNCER_BIN"; then
        return 0
    fi
    local candidate
    for candidate in "$(command -v pgbouncer 2>/dev/null || true)" /usr/sbin/pgbouncer; do
        if [[ -n "$candidate" && -x "$candidate" ]] && _pgb_recent_enough "$candidate"; then
            PGBOUNCER_BIN="$candidate"
            return 0
        fi
    done
    _pgb_build_from_debian_source
    log "PgBouncer: $("$PGBOUNCER_BIN" --version | head -n 1) at $PGBOUNCER_BIN"
}

_pgb_free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# _pgb_dir NAME : a state directory of ours (reachable by the user the poolers run as).
_pgb_dir() {
    local base="$STATE_DIR"
    if is_root; then base="${TODO_API_PG_ROOT_STATE_DIR:-/var/lib/todo-api}"; fi
    printf '%s/pgbouncer-%s\n' "$base" "$1"
}

# _pgb_as_runner CMD... : PgBouncer refuses to run as root; as root it runs as `postgres`
# (which scripts/lib/postgres.sh creates for the cluster).
_pgb_as_runner() {
    if is_root; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop_pgbouncer() {
    local dir pid i
    dir="$(_pgb_dir "$1")"
    [[ -f "$dir/pgbouncer.pid" ]] || return 0
    pid="$(cat "$dir/pgbouncer.pid" 2>/dev/null || true)"
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null \
            && grep -q pgbouncer "/proc/$pid/cmdline" 2>/dev/null; then
        kill -INT "$pid" 2>/dev/null || true
        for (( i = 0; i < 40; i++ )); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/pgbouncer.pid"
}

start_pgbouncer() {
    local name="$1" backend_host="$2" backend_port="$3" max_prepared="$4"
    shift 4
    ensure_pgbouncer_binary
    local dir port line i
    dir="$(_pgb_dir "$name")"
    stop_pgbouncer "$name"
    mkdir -p "$dir"
    chmod 0755 "$dir"
    port="$(_pgb_free_port)" || die "could not find a free port on 127.0.0.1"
    printf '"postgres" ""\n' >"$dir/userlist.txt"
    {
        printf '[databases]\n'
        # Every database of the backend: each test creates its own.
        printf '* = host=%s port=%s\n' "$backend_host" "$backend_port"
        printf '[pgbouncer]\n'
        printf 'listen_addr = 127.0.0.1\nlisten_port = %s\nunix_socket_dir =\n' "$port"
        printf 'auth_type = trust\nauth_file = %s/userlist.txt\n' "$dir"
        printf 'pool_mode = transaction\n'
        printf 'max_prepared_statements = %s\n' "$max_prepared"
        printf 'max_client_conn = 1000\ndefault_pool_size = 20\n'
        # Every test has a database, so a pool: cap the server connections of all pools together
        # (an idle one of another pool is closed to make room) and close idle ones soon, or a
        # suite run leaves the server out of connections.
        printf 'max_user_connections = 60\nserver_idle_timeout = 10\n'
        printf 'pidfile = %s/pgbouncer.pid\nlogfile = %s/pgbouncer.log\n' "$dir" "$dir"
        # Fail fast when the server is down (the outage tests), instead of the 15 s default.
        printf 'server_connect_timeout = 2\nserver_login_retry = 1\nquery_wait_timeout = 10\n'
        for line in "$@"; do printf '%s\n' "$line"; done
    } >"$dir/pgbouncer.ini"
    if is_root; then chown -R postgres:postgres "$dir"; fi
    : >"$dir/pgbouncer.log"
    if is_root; then chown postgres:postgres "$dir/pgbouncer.log"; fi
    _pgb_as_runner "$PGBOUNCER_BIN" -d "$dir/pgbouncer.ini" >"$dir/start.log" 2>&1 \
        || { cat "$dir/start.log" "$dir/pgbouncer.log" >&2; die "pgbouncer $name did not start"; }
    for (( i = 0; i < 50; i++ )); do
        if psql -X -w "postgres://postgres@127.0.0.1:$port/postgres" -Atc 'select 1' >/dev/null 2>&1; then
            PGBOUNCER_PORT="$port"
            log "PgBouncer $name (max_prepared_statements=$max_prepared) on 127.0.0.1:$port -> $backend_host:$backend_port; log $dir/pgbouncer.log"
            return 0
        fi
        sleep 0.1
    done
    tail -n 20 "$dir/pgbouncer.log" >&2 || true
    die "pgbouncer $name does not answer on 127.0.0.1:$port"
}
