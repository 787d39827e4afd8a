# shellcheck shell=bash
# shellcheck disable=SC2034  # variables below are meant for the scripts that source this file
# The deployed database path, locally: a PostgreSQL of the tests' own with TLS (certificates
# issued at start by a throw-away CA, for the DNS name `localhost`), a small max_connections,
# and which the outage test may stop and start; and PgBouncers in transaction mode in front of
# it and of the main test server. Source this file; do not run it.
#
#   start_db_path_services    starts everything below and exports for the tests:
#     TEST_AUX_ADMIN_URL         the TLS cluster, verify-full against the test CA
#     TEST_AUX_TLS_DIR           ca.crt (the test CA), other-ca.crt (a CA nobody used)
#     TEST_AUX_CTL               `$TEST_AUX_CTL stop|start`: immediate stop / start of that cluster
#     TEST_AUX_PGBOUNCER_URL     PgBouncer (TLS on both sides, prepared statements on) in front of it
#     TEST_AUX_EXPIRED_URL       PgBouncer in front of it whose certificate has expired
#     TEST_PGBOUNCER_PREP_URL    PgBouncer, max_prepared_statements = 200, in front of DATABASE_URL
#     TEST_PGBOUNCER_NOPREP_URL  PgBouncer, max_prepared_statements = 0, in front of DATABASE_URL
#   stop_db_path_services     stops all of them (each by the PID it wrote)
#
# Needs ensure_postgres (scripts/lib/postgres.sh) to have run: DATABASE_URL must be a server on
# 127.0.0.1, and the PostgreSQL binaries installed.

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=scripts/lib/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/postgres.sh"
# shellcheck source=scripts/lib/pgbouncer.sh
source "$(dirname "${BASH_SOURCE[0]}")/pgbouncer.sh"

# _aux_base : where the cluster, the certificates and the control script live (reachable by
# the postgres OS user when running as root).
_aux_base() {
    local base="$STATE_DIR"
    if is_root; then base="${TODO_API_PG_ROOT_STATE_DIR:-/var/lib/todo-api}"; fi
    printf '%s/db-path\n' "$base"
}

# make_test_certs DIR : a throw-away CA, a server certificate for `localhost` signed by it,
# the same name expired (valid in January 2020 only), and another CA that signed nothing.
make_test_certs() {
    local dir="$1"
    command -v openssl >/dev/null 2>&1 || apt_install openssl
    rm -rf "$dir"
    mkdir -p "$dir"
    (
        cd "$dir"
        local ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
        openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.crt -days 2 -subj "/CN=todo-api test CA" \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
        openssl req -x509 "${ec[@]}" -keyout other-ca.key -out other-ca.crt -days 2 -subj "/CN=todo-api unknown CA" \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
        openssl req "${ec[@]}" -keyout server.key -out server.csr -subj "/CN=localhost" \
            -addext subjectAltName=DNS:localhost -addext extendedKeyUsage=serverAuth
        # `openssl ca` (not `x509 -req`) because it can set both ends of the validity period.
        printf '%s\n' '[ca]' 'default_ca = tca' '[tca]' 'database = index.txt' 'new_certs_dir = .' \
            'serial = serial' 'default_md = sha256' 'policy = pol' 'copy_extensions = copy' \
            'unique_subject = no' '[pol]' 'commonName = supplied' >ca.cnf
        : >index.txt
        echo 01 >serial
        openssl ca -batch -notext -config ca.cnf -cert ca.crt -keyfile ca.key -in server.csr \
            -out server.crt -days 2
        openssl ca -batch -notext -config ca.cnf -cert ca.crt -keyfile ca.key -in server.csr \
            -out expired.crt -startdate 20200101000000Z -enddate 20200102000000Z
        rm -f ca.key other-ca.key ./*.pem index.txt* serial* ca.cnf server.csr
        chmod 0600 server.key
    ) >"$dir.log" 2>&1 || { cat "$dir.log" >&2; die "could not issue the test certificates"; }
    if is_root; then chown -R postgres:postgres "$dir"; fi
}

TODO_API_AUX_DATA=""
TODO_API_AUX_BINDIR=""

start_aux_postgres() {
    local base bindir data port certs logfile i
    base="$(_aux_base)"
    bindir="$(_pg_find_bindir)" || die "no PostgreSQL server binaries (run ensure_postgres first)"
    data="$base/pgdata"
    certs="$base/tls"
    logfile="$base/postgres.log"
    mkdir -p "$base"
    chmod 0755 "$base"
    if is_root; then chown postgres:postgres "$base"; fi
    if [[ -f "$data/postmaster.pid" ]]; then
        _pg_as_owner "$bindir/pg_ctl" -D "$data" stop -m immediate >/dev/null 2>&1 || true
    fi
    # A new cluster every run: a second or two, and nothing left over from an outage test.
    rm -rf "$data"
    _pg_as_owner "$bindir/initdb" -D "$data" -A trust -U postgres -E UTF8 --no-locale >"$base/initdb.log" 2>&1 \
        || { tail -n 20 "$base/initdb.log" >&2; die "initdb of the TLS test cluster failed"; }
    make_test_certs "$certs"
    port="$(_pgb_free_port)" || die "could not find a free port on 127.0.0.1"
    {
        printf "listen_addresses = '127.0.0.1'\nport = %s\nunix_socket_directories = '%s'\n" "$port" "$base"
        printf "ssl = on\nssl_cert_file = '%s/server.crt'\nssl_key_file = '%s/server.key'\n" "$certs" "$certs"
        # Small on purpose: the connection-limit test needs a server that runs out.
        printf 'max_connections = 20\nsuperuser_reserved_connections = 0\n'
        # synchronous_commit stays on: the outage test stops this server in immediate mode and
        # counts rows against 201s; fsync may be off (the operating system does not crash).
        printf 'fsync = off\nfull_page_writes = off\n'
    } | _pg_as_owner tee -a "$data/postgresql.conf" >/dev/null
    # TCP only over TLS: a client that does not ask for it finds no pg_hba line.
    printf 'local all all trust\nhostssl all all 127.0.0.1/32 trust\n' | _pg_as_owner tee "$data/pg_hba.conf" >/dev/null
    _pg_as_owner "$bindir/pg_ctl" -D "$data" -l "$logfile" -w -t 60 start >/dev/null 2>&1 \
        || { tail -n 20 "$logfile" >&2; die "the TLS test cluster did not start (log: $logfile)"; }
    # The control script the outage test runs: immediate stop (no checkpoint, clients cut), start.
    {
        printf '#!/usr/bin/env bash\nset -euo pipefail\n'
        printf 'case "${1:-}" in\n'
        printf '  stop) cmd=(%q -D %q stop -m immediate -w -t 30) ;;\n' "$bindir/pg_ctl" "$data"
        printf '  start) cmd=(%q -D %q -l %q -w -t 30 start) ;;\n' "$bindir/pg_ctl" "$data" "$logfile"
        printf '  *) echo "usage: $0 stop|start" >&2; exit 2 ;;\nesac\n'
        if is_root; then printf 'exec runuser -u postgres -- "${cmd[@]}" >/dev/null\n'; else printf 'exec "${cmd[@]}" >/dev/null\n'; fi
    } >"$base/ctl.sh"
    chmod 0755 "$base/ctl.sh"
    export TEST_AUX_ADMIN_URL="postgres://postgres@localhost:$port/postgres?sslmode=verify-full&sslrootcert=$certs/ca.crt"
    for (( i = 0; i < 50; i++ )); do
        psql -X -w "$TEST_AUX_ADMIN_URL" -Atc 'select 1' >/dev/null 2>&1 && break
        sleep 0.1
    done
    psql -X -w "$TEST_AUX_ADMIN_URL" -Atc 'select ssl from pg_stat_ssl where pid = pg_backend_pid()' | grep -qx t \
        || die "the TLS test cluster does not answer over TLS at $TEST_AUX_ADMIN_URL"
    export TEST_AUX_TLS_DIR="$certs" TEST_AUX_CTL="$base/ctl.sh" TEST_AUX_PG_PORT="$port"
    TODO_API_AUX_DATA="$data"
    TODO_API_AUX_BINDIR="$bindir"
    log "TLS test cluster on localhost:$port (ssl=on, certificate for localhost from a throw-away CA); log $logfile"
}

stop_aux_postgres() {
    if [[ -n "$TODO_API_AUX_DATA" && -f "$TODO_API_AUX_DATA/postmaster.pid" ]]; then
        _pg_as_owner "$TODO_API_AUX_BINDIR/pg_ctl" -D "$TODO_API_AUX_DATA" stop -m immediate >/dev/null 2>&1 || true
    fi
}

start_db_path_services() {
    local main_port
    main_port="$(sed -nE 's#^postgres(ql)?://[^@/]*@?127\.0\.0\.1:([0-9]+)/.*#\2#p' <<<"$DATABASE_URL")"
    [[ -n "$main_port" ]] || die "the pooler tests need DATABASE_URL on 127.0.0.1 with a port (got $(mask_url "$DATABASE_URL"))"
    ensure_pgbouncer_binary
    start_aux_postgres
    local certs="$TEST_AUX_TLS_DIR" tls_server tls_client
    tls_server=("server_tls_sslmode = verify-full" "server_tls_ca_file = $certs/ca.crt")
    tls_client=("client_tls_sslmode = require" "client_tls_key_file = $certs/server.key")
    start_pgbouncer prep 127.0.0.1 "$main_port" 200
    export TEST_PGBOUNCER_PREP_URL="postgres://postgres@127.0.0.1:$PGBOUNCER_PORT/postgres"
    start_pgbouncer noprep 127.0.0.1 "$main_port" 0
    export TEST_PGBOUNCER_NOPREP_URL="postgres://postgres@127.0.0.1:$PGBOUNCER_PORT/postgres"
    # In front of the TLS cluster, by the name its certificate is for; TLS to the clients too.
    start_pgbouncer aux localhost "$TEST_AUX_PG_PORT" 200 "${tls_server[@]}" "${tls_client[@]}" \
        "client_tls_cert_file = $certs/server.crt" "default_pool_size = 8"
    export TEST_AUX_PGBOUNCER_URL="postgres://postgres@localhost:$PGBOUNCER_PORT/postgres?sslmode=verify-full&sslrootcert=$certs/ca.crt"
    start_pgbouncer expired localhost "$TEST_AUX_PG_PORT" 200 "${tls_server[@]}" "${tls_client[@]}" \
        "client_tls_cert_file = $certs/expired.crt" "default_pool_size = 2"
    export TEST_AUX_EXPIRED_URL="postgres://postgres@localhost:$PGBOUNCER_PORT/postgres?sslmode=verify-full&sslrootcert=$certs/ca.crt"
}

stop_db_path_services() {
    local name
    for name in prep noprep aux expired; do stop_pgbouncer "$name"; done
    stop_aux_postgres
}
