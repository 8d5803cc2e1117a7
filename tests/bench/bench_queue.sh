#!/bin/bash
# make bench-queue: the queue's throughput through the real binaries (not a test).
#   submits/s:            one `vlq submit` of N files (one job each, SHA-256 included)
#   claim+complete/s:     N test.echo jobs drained by 1, then 4, worker processes
# Usage: bench_queue.sh VLQ_TESTKINDS_BIN [N]
set -eu
T=$1
N=${2:-2000}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
mkdir in
for i in $(seq 1 "$N"); do echo "$i" > "in/$i.txt"; done
now() { date +%s.%N; }
rate() { python3 -c "import sys; print('%.0f' % ($1 / ($3 - $2)))"; }
for workers in 1 4; do
    rm -f q.db*
    export VLQ_DB="$dir/q.db"
    "$T" init 2>/dev/null
    t0=$(now)
    "$T" submit test.echo in/*.txt > /dev/null
    t1=$(now)
    for w in $(seq 1 "$workers"); do "$T" worker --drain 2>/dev/null & done
    wait
    t2=$(now)
    done_n=$("$T" list --status succeeded --limit 0 | wc -l)
    [ "$done_n" = "$N" ] || { echo "only $done_n of $N succeeded" >&2; exit 1; }
    [ "$workers" = 1 ] && echo "submit:   $N jobs = $(rate "$N" "$t0" "$t1") jobs/s"
    echo "workers=$workers: $N claim+complete cycles = $(rate "$N" "$t1" "$t2") jobs/s"
done
