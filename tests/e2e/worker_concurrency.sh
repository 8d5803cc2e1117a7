#!/bin/bash
# Several jobs in flight in one worker ([worker] concurrency): they overlap in time, each
# runs exactly once, progress lines are logfmt under a pipe, SIGTERM hands back every
# running job, and two concurrent workers on one queue never run a job twice.
set -u
T="$VLQ_TESTKINDS_BIN"
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$TEST_TMPDIR"
export VLQ_DB="$TEST_TMPDIR/q.db"
echo data > a.txt

# 4 jobs of 8 x 100 ms with 4 in flight: all four run at the same time
for i in 1 2 3 4; do "$T" submit test.sleep a.txt --prompt "8 100" > /dev/null; done
"$T" worker --drain --concurrency 4 2> w1.log || fail "drain: $(cat w1.log)"
grep -q 'concurrency=4' w1.log || fail "no concurrency in the ready line: $(cat w1.log)"
python3 - <<'PY' || fail "jobs did not overlap"
import sqlite3
db = sqlite3.connect("q.db")
rows = db.execute("select job_id, started_ms, finished_ms, outcome from attempts").fetchall()
assert len(rows) == 4 and all(r[3] == "succeeded" for r in rows), rows
# every job started before any finished
assert max(r[1] for r in rows) < min(r[2] for r in rows), rows
PY
grep -q '^ts=.* level=info job=[0-9]* msg="succeeded' w1.log || fail "no logfmt job lines"

# SIGTERM with 3 jobs in flight: all three handed back, no attempt spent
for i in 1 2 3; do "$T" submit test.sleep a.txt --prompt "200 50" > /dev/null; done
"$T" worker --concurrency 3 2> w2.log & w=$!
for _ in $(seq 1 200); do
    n=$("$T" --json list --status running | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
    [ "$n" = 3 ] && break; sleep 0.05
done
[ "$n" = 3 ] || fail "3 jobs never ran at once ($n)"
kill -TERM $w; wait $w; rc=$?
[ $rc = 0 ] || fail "SIGTERM: exit $rc"
python3 - <<'PY' || fail "SIGTERM: jobs not handed back"
import sqlite3
db = sqlite3.connect("q.db")
rows = db.execute("select state, attempts from jobs where id > 4").fetchall()
assert rows == [("queued", 0)] * 3, rows
PY

# two workers with 2 threads each drain the 12 queued jobs: each job runs once
for i in $(seq 1 9); do "$T" submit test.sleep a.txt --prompt "2 30" > /dev/null; done
"$T" worker --drain --concurrency 2 2> w3.log & a=$!
"$T" worker --drain --concurrency 2 2> w4.log & b=$!
wait $a || fail "worker a: $(cat w3.log)"
wait $b || fail "worker b: $(cat w4.log)"
python3 - <<'PY' || fail "a job ran twice or not at all"
import sqlite3
db = sqlite3.connect("q.db")
assert db.execute("select count(*) from jobs where state != 'succeeded'").fetchone()[0] == 0
runs = db.execute("select job_id, count(*) from attempts where outcome = 'succeeded' group by job_id").fetchall()
assert len(runs) == 16 and all(n == 1 for _, n in runs), runs
PY
exit 0
