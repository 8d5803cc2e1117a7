#!/bin/bash
# pg_queue_copy: tests/e2e/queue_copy.sh through PostgreSQL: a SQLite queue with jobs and
# events in every state is copied to a PostgreSQL database (which then reads back the
# same), from there to a new SQLite file, and workers on the original and on the round
# trip end the same. On a throwaway cluster of its own (tests/pg/cluster.sh); skipped,
# saying why, when none can start (a failure under VLQ_REQUIRE_PG=1).
set -u
CL="$VLQ_ROOT/tests/pg/cluster.sh"
PGDIR=$(mktemp -d /tmp/vlq-pg.XXXXXX) || exit 1
if ! url=$("$CL" start "$PGDIR" 2> "$TEST_TMPDIR/pg.err"); then
    why="no PostgreSQL server could start: $(tail -1 "$TEST_TMPDIR/pg.err")"
    rm -rf "$PGDIR"
    [ "${VLQ_REQUIRE_PG:-}" = 1 ] && { echo "FAIL: VLQ_REQUIRE_PG=1 but $why" >&2; exit 1; }
    echo "skip: $why"
    exit 77
fi
trap '"$CL" stop "$PGDIR" > /dev/null 2>&1' EXIT
COPY_VIA="$url" bash "$VLQ_ROOT/tests/e2e/queue_copy.sh"
