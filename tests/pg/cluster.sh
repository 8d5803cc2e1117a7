#!/bin/sh
# tests/pg/cluster.sh start DIR | stop DIR: a throwaway PostgreSQL cluster for the tests.
#
# start: initdb a cluster in DIR/data as an unprivileged user (the invoking user, or
#   `nobody` when run as root: PostgreSQL refuses to run as root), listening only on a
#   Unix socket in DIR (listen_addresses=''), with a database and superuser `vlqtest`;
#   prints its connection URL on stdout:
#     postgresql:///vlqtest?host=DIR&port=PORT&user=vlqtest
#   DIR is created if missing; it must be empty or absent. PG_BINDIR overrides where
#   initdb and pg_ctl are found (else /usr/lib/postgresql/15/bin, `pg_config --bindir`,
#   then PATH). Exits non-zero with one plain line on stderr when no server could start
#   (nothing left behind).
# stop: stop the server in DIR (if any) and remove DIR.
# Durability is off (fsync=off): the cluster holds test data only.
set -u

die() { echo "cluster.sh: $*" >&2; exit 1; }

find_bindir() {
    for d in "${PG_BINDIR:-}" /usr/lib/postgresql/15/bin "$(pg_config --bindir 2>/dev/null)"; do
        [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
    done
    d=$(command -v initdb 2>/dev/null) && [ -x "$(dirname "$d")/pg_ctl" ] &&
        { dirname "$d"; return 0; }
    return 1
}

runuser=$(command -v runuser 2>/dev/null)
for r in /usr/sbin/runuser /sbin/runuser; do [ -n "$runuser" ] || { [ -x "$r" ] && runuser=$r; }; done

# as_owner CMD...: run CMD as the cluster's owner.
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        "$runuser" -u nobody -- "$@"
    else
        "$@"
    fi
}

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: cluster.sh start|stop DIR"
case "$dir" in /*) ;; *) dir="$(pwd)/$dir" ;; esac

case "$cmd" in
start)
    bindir=$(find_bindir) || die "no PostgreSQL server here (initdb and pg_ctl not found; install postgresql)"
    if [ "$(id -u)" = 0 ] && [ -z "$runuser" ]; then
        die "running as root and no runuser to drop to an unprivileged user"
    fi
    [ ! -e "$dir" ] || [ -z "$(ls -A "$dir" 2>/dev/null)" ] || die "$dir: not empty"
    # the socket path (DIR/.s.PGSQL.PORT) must fit in sun_path (107 bytes)
    [ ${#dir} -le 90 ] || die "$dir: path too long for a Unix socket (at most 90 characters)"
    mkdir -p "$dir" || die "$dir: cannot create"
    if [ "$(id -u)" = 0 ]; then
        chown nobody "$dir" && chmod 700 "$dir" || die "$dir: cannot hand it to user nobody"
        "$runuser" -u nobody -- test -w "$dir" ||
            { rmdir "$dir"; die "$dir: user nobody cannot reach it (a parent directory is closed)"; }
    fi
    # a port number only names the socket file; derive it from the directory for logs
    port=$(( 20000 + $(printf '%s' "$dir" | cksum | cut -d' ' -f1) % 20000 ))
    fail() { as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1
             cat "$dir/log" >&2 2>/dev/null; rm -rf "$dir"; die "$1"; }
    as_owner "$bindir/initdb" -D "$dir/data" -U vlqtest -A trust -E UTF8 --no-locale \
        --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; rm -rf "$dir"; die "initdb failed"; }
    cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$dir'
port = $port
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
shared_buffers = 32MB
log_min_messages = warning
CONF
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 start >/dev/null 2>&1 ||
        fail "the server did not start (its log is above)"
    as_owner "$bindir/psql" -X -q -h "$dir" -p "$port" -U vlqtest -d postgres \
        -c "CREATE DATABASE vlqtest" >/dev/null 2>&1 || fail "cannot create the database vlqtest"
    echo "postgresql:///vlqtest?host=$dir&port=$port&user=vlqtest"
    ;;
stop)
    if [ -d "$dir/data" ]; then
        bindir=$(find_bindir) || true
        [ -n "${bindir:-}" ] && as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1
    fi
    rm -rf "$dir"
    ;;
*)
    die "usage: cluster.sh start|stop DIR"
    ;;
esac
