#!/bin/sh
# tests/pg/with_cluster.sh FILTER CMD...: run CMD (the test runner) with VLQ_TEST_PG naming
# a throwaway PostgreSQL cluster (tests/pg/cluster.sh), stopped and removed afterwards.
#
# The cluster is started only when the tests that FILTER selects (the runner's name
# prefix; empty: all) include a PostgreSQL group (VLQ_PG_GROUPS, default "queue_pg/"),
# and only when VLQ_TEST_PG is not already set (then that server is used as is).
# VLQ_PG=0 starts nothing. When no cluster can start, CMD still runs: the PostgreSQL
# tests then say they are skipped, and fail if VLQ_REQUIRE_PG=1.
set -u
filter=$1
shift
here=$(dirname "$0")

need=0
for g in ${VLQ_PG_GROUPS:-queue_pg/}; do
    case "$g" in "$filter"*) need=1 ;; esac     # FILTER is a prefix of the group
    case "$filter" in "${g%/}"*) need=1 ;; esac # FILTER is inside the group
done
if [ -n "${VLQ_TEST_PG:-}" ] || [ "$need" = 0 ] || [ "${VLQ_PG:-1}" = 0 ]; then
    exec "$@"
fi

dir=$(mktemp -d /tmp/vlq-pg.XXXXXX) || exec "$@"
stop() { "$here/cluster.sh" stop "$dir"; rm -f "$dir.err"; }
if url=$("$here/cluster.sh" start "$dir" 2>"$dir.err"); then
    export VLQ_TEST_PG="$url"
    trap stop EXIT
    trap 'exit 130' INT TERM
    echo "PostgreSQL test cluster: $url"
else
    echo "no PostgreSQL test cluster: $(tail -n 1 "$dir.err")" >&2
    rm -rf "$dir" "$dir.err"
fi
"$@"
