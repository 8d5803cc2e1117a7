#!/bin/bash
# make bench-queue: the queue's throughput through the real binaries (not a test), on
# SQLite and on PostgreSQL side by side.
#   submits/s:            one `vlq submit` of N files (one job each, SHA-256 included)
#   claim+complete/s:     N test.echo jobs drained by 1, 4 and 16 worker processes
# PostgreSQL runs on a throwaway cluster (tests/pg/cluster.sh); without a server that
# can start, its column says why and the SQLite one is still measured.
# Usage: bench_queue.sh VLQ_TESTKINDS_BIN [N] [WORKER_COUNTS]
set -eu
T=$1
N=${2:-2000}
COUNTS=${3:-"1 4 16"}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d)
chmod 755 "$dir"
pg_dir="$dir/pg" # $dir is opened (755) so the cluster's unprivileged owner reaches it
pg_url=""
cleanup() {
    [ -n "$pg_url" ] && "$ROOT/tests/pg/cluster.sh" stop "$pg_dir" >/dev/null 2>&1
    rm -rf "$dir"
}
trap cleanup EXIT
cd "$dir"
mkdir in
for i in $(seq 1 "$N"); do echo "$i" > "in/$i.txt"; done
now() { date +%s.%N; }
rate() { python3 -c "print('%.0f' % ($1 / ($3 - $2)))"; }
# the URL with its database name replaced by $2
pg_db_url() { printf '%s\n' "$1" | sed -E "s#^(postgres(ql)?://[^/?]*)(/[^?]*)?#\1/$2#"; }

pg_why=""
if [ ! -x "$ROOT/tests/pg/cluster.sh" ]; then
    pg_why="no tests/pg/cluster.sh"
elif ! pg_url=$("$ROOT/tests/pg/cluster.sh" start "$pg_dir" 2> pg_start.err); then
    pg_url=""
    pg_why="no server: $(tail -1 pg_start.err)"
fi

# one backend, one worker count: prints "SUBMIT_RATE CYCLE_RATE"
run() { # db workers
    export VLQ_DB=$1
    "$T" init 2>/dev/null
    local t0 t1 t2
    t0=$(now)
    "$T" submit test.echo in/*.txt > /dev/null
    t1=$(now)
    for _ in $(seq 1 "$2"); do "$T" worker --drain 2>/dev/null & done
    wait
    t2=$(now)
    local done_n
    done_n=$("$T" list --status succeeded --limit 0 | wc -l)
    [ "$done_n" = "$N" ] || { echo "only $done_n of $N succeeded ($1)" >&2; exit 1; }
    echo "$(rate "$N" "$t0" "$t1") $(rate "$N" "$t1" "$t2")"
}

declare -A sq pg
for w in $COUNTS; do
    rm -f q.db*
    sq[$w]=$(run "$dir/q.db" "$w")
    if [ -n "$pg_url" ]; then
        psql -q -d "$pg_url" -c "CREATE DATABASE bench$w" >/dev/null
        pg[$w]=$(run "$(pg_db_url "$pg_url" "bench$w")" "$w")
    fi
done

first=${COUNTS%% *}
printf '\nqueue throughput: %d test.echo jobs, %d CPU cores (%s)\n\n' "$N" "$(nproc)" \
    "$(uname -n)"
printf '| %-28s | %10s | %10s |\n' "" "SQLite" "PostgreSQL"
printf '|%s|%s|%s|\n' "------------------------------" "-----------:" "-----------:"
pgcol() { if [ -n "$pg_url" ]; then echo "$1"; else echo "n/a"; fi; }
s=${sq[$first]}; p=${pg[$first]:-}
printf '| %-28s | %10s | %10s |\n' "submit, jobs/s" "${s%% *}" "$(pgcol "${p%% *}")"
for w in $COUNTS; do
    s=${sq[$w]}; p=${pg[$w]:-}
    printf '| %-28s | %10s | %10s |\n' "claim+complete/s, $w worker$([ "$w" = 1 ] || echo s)" \
        "${s##* }" "$(pgcol "${p##* }")"
done
[ -n "$pg_url" ] || echo "PostgreSQL not measured: $pg_why"
