#!/bin/bash
# A device error in the worker, without a GPU: the devtest plugin (the cpu backend posing
# as a device) fails the N-th sync and every later one with VLQ_EDEVICE, as a CUDA context
# that hit an illegal access would. The worker takes no new job, records the jobs in
# flight (the first to report the error: failed with a retry, its attempt counted; the
# others: handed back unspent) and exits 75 with one "device error: ...; exiting so that
# a restart gets a fresh device context" line; a worker without the fault then finishes
# every job, resuming after the pages stored before the error, with the same texts as a
# clean run: no job, page or result lost or stored twice. Once with concurrency 1 (the
# job fails mid-document), once with concurrency 2 (both jobs accounted for).
set -u
V="$VLQ_BIN"
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$TEST_TMPDIR" || exit 1
export VLQ_BACKEND_DIR="$(dirname "$V")"
[ -f "$VLQ_BACKEND_DIR/vlq-backend-devtest.so" ] || fail "no vlq-backend-devtest.so in $VLQ_BACKEND_DIR"
unset VLQ_DEVTEST_FAIL_SYNC VLQ_DEVTEST_MEM

"$V" worker --help | grep -q "75 a device error" || fail "--help does not document exit 75"

"$VLQ_MAKE_TINY_BIN" tiny 7 || fail "make-tiny"
"$V" convert tiny -o tiny.vlq --quant q4 2> convert.log || fail "convert: $(cat convert.log)"
python3 "$VLQ_ROOT/tests/tools/gen_pdf.py" one.pdf p1 || fail "pdf"
python3 "$VLQ_ROOT/tests/tools/gen_pdf.py" three.pdf p1 p2 p3 || fail "pdf"
cat > vlq.conf <<CONF
[model]
path = $TEST_TMPDIR/tiny.vlq
backend = devtest
threads = 2
[budgets]
max_new_tokens = 4
[media]
pdf_dpi = 36
[worker]
poll_ms = 100
lease_seconds = 30
max_attempts = 3
CONF
export VLQ_CONFIG="$TEST_TMPDIR/vlq.conf"

# a clean run (its own queue): the texts every later run must give, and the engine steps
# of one page (one.pdf's page is three.pdf's first), to place the fault
VLQ_DB=base.db "$V" submit ocr one.pdf three.pdf > /dev/null || fail "submit"
VLQ_DB=base.db "$V" worker --once 2> b1.log || fail "clean run: $(tail -3 b1.log)"
VLQ_DB=base.db "$V" worker --drain 2> b2.log || fail "clean run: $(tail -3 b2.log)"
S=$(sed -n 's/.*msg="engine: .* steps=\([0-9]*\) .*/\1/p' b1.log)
[ -n "$S" ] && [ "$S" -ge 2 ] || fail "no engine steps in: $(tail -3 b1.log)"

# results <db> <id> -> the page texts of a succeeded job, one JSON line
texts() {
    VLQ_DB="$1" "$V" result "$2" --format json |
        python3 -c 'import json,sys; print(json.dumps([p["text"] for p in json.load(sys.stdin)["pages"]]))'
}
texts base.db 1 > want1.txt && texts base.db 2 > want3.txt || fail "clean results"

# row <db> <sql>: one sqlite3 answer
row() { sqlite3 "$1" "$2"; }

# ---- concurrency 1: job 1 (one page) succeeds, job 2 fails at its second page's first
# step, job 3 is never claimed
export VLQ_DB="$TEST_TMPDIR/q1.db"
"$V" submit ocr one.pdf three.pdf one.pdf > /dev/null || fail "submit"
VLQ_DEVTEST_FAIL_SYNC=$((2 * S + 1)) timeout 120 "$V" worker 2> w1.log; rc=$?
[ $rc = 75 ] || fail "device error: exit $rc, want 75: $(tail -5 w1.log)"
[ "$(grep -c 'msg="device error: ' w1.log)" = 1 ] || fail "not one device error line: $(cat w1.log)"
grep -q 'level=error msg="device error: job 2: page 2: devtest: an injected device error (sync [0-9]*); exiting so that a restart gets a fresh device context"' w1.log ||
    fail "device error line: $(grep 'device error' w1.log)"
grep -q 'job=2 msg="failed, will retry: page 2: .*(EDEVICE)"' w1.log || fail "no retry line: $(cat w1.log)"
[ "$(row q1.db "select id, state, attempts from jobs order by id" | tr '\n' ' ')" = \
  "1|succeeded|1 2|failed|1 3|queued|0 " ] ||
    fail "states after the device error: $(row q1.db 'select id, state, attempts from jobs')"
[ "$(row q1.db "select error_code from jobs where id=2")" = EDEVICE ] || fail "job 2's error code"
# the retry is scheduled after the backoff (1 s +-10% after a first attempt), not at once
[ "$(row q1.db "select run_after_ms > (select finished_ms from attempts where job_id=2) from jobs where id=2")" = 1 ] ||
    fail "no backoff: $(row q1.db 'select run_after_ms from jobs where id=2')"
[ "$(row q1.db "select job_id, attempt, outcome from attempts order by job_id, attempt" | tr '\n' ' ')" = \
  "1|1|succeeded 2|1|failed " ] || fail "attempt log: $(row q1.db 'select * from attempts')"
row q1.db "select error from attempts where job_id=2" | grep -q "injected device error" ||
    fail "the failed attempt has no reason"
[ "$(row q1.db "select count(*) from job_units where job_id=2")" = 1 ] ||
    fail "pages stored before the error: $(row q1.db 'select job_id, idx from job_units')"

# a worker on a fresh device context (no fault) finishes both, resuming job 2 at page 2
sleep 1.3 # job 2's backoff
timeout 120 "$V" worker --drain 2> w2.log || fail "the restarted worker: $(tail -5 w2.log)"
grep -q "device error" w2.log && fail "the restarted worker saw a device error"
[ "$(row q1.db "select id, state, attempts from jobs order by id" | tr '\n' ' ')" = \
  "1|succeeded|1 2|succeeded|2 3|succeeded|1 " ] ||
    fail "states after the restart: $(row q1.db 'select id, state, attempts from jobs')"
[ "$(row q1.db "select count(*), count(distinct idx), sum(attempt=1) from job_units where job_id=2")" = "3|3|1" ] ||
    fail "job 2's pages: $(row q1.db 'select idx, attempt from job_units where job_id=2')"
[ "$(texts q1.db 1)" = "$(cat want1.txt)" ] || fail "job 1's text differs from a clean run"
[ "$(texts q1.db 2)" = "$(cat want3.txt)" ] || fail "job 2's text differs from a clean run"
[ "$(texts q1.db 3)" = "$(cat want1.txt)" ] || fail "job 3's text differs from a clean run"

# ---- concurrency 2: jobs 1 and 2 in flight when the device fails; one is charged the
# attempt, the other handed back unspent; job 3 is never claimed
export VLQ_DB="$TEST_TMPDIR/q2.db"
"$V" submit ocr three.pdf three.pdf one.pdf > /dev/null || fail "submit"
VLQ_DEVTEST_FAIL_SYNC=$((S + 2)) timeout 120 "$V" worker --concurrency 2 2> c1.log; rc=$?
[ $rc = 75 ] || fail "concurrency 2: exit $rc, want 75: $(tail -5 c1.log)"
grep -q 'concurrency=2' c1.log || fail "not two in flight: $(head -5 c1.log)"
[ "$(grep -c 'msg="device error: ' c1.log)" = 1 ] || fail "not one device error line: $(cat c1.log)"
[ "$(grep -c 'msg="failed, will retry: .*(EDEVICE)"' c1.log)" = 1 ] ||
    fail "not one job charged: $(cat c1.log)"
[ "$(grep -c 'msg="handed back (attempt not counted): .*(EDEVICE; ' c1.log)" = 1 ] ||
    fail "not one job handed back: $(cat c1.log)"
python3 - <<'PY' || fail "concurrency 2: jobs not accounted for"
import sqlite3
db = sqlite3.connect("q2.db")
jobs = dict((i, (s, a, e)) for i, s, a, e in
            db.execute("select id, state, attempts, error_code from jobs"))
charged = [i for i in (1, 2) if jobs[i] == ("failed", 1, "EDEVICE")]
back = [i for i in (1, 2) if jobs[i][:2] == ("queued", 0)]
assert len(charged) == 1 and len(back) == 1, jobs
assert jobs[3] == ("queued", 0, None), jobs
att = db.execute("select job_id, attempt, outcome from attempts order by job_id").fetchall()
assert sorted(att) == sorted([(charged[0], 1, "failed"), (back[0], 1, "released")]), att
assert db.execute("select count(*) from jobs where state = 'running'").fetchone()[0] == 0
PY

sleep 1.3
timeout 120 "$V" worker --drain --concurrency 2 2> c2.log || fail "the restarted worker: $(tail -5 c2.log)"
[ "$(row q2.db "select group_concat(state) from jobs")" = "succeeded,succeeded,succeeded" ] ||
    fail "after the restart: $(row q2.db 'select id, state, attempts from jobs')"
[ "$(row q2.db "select count(*) from (select job_id, idx from job_units group by 1, 2 having count(*) > 1)")" = 0 ] ||
    fail "a page stored twice"
[ "$(row q2.db "select count(*) from job_units")" = 7 ] || fail "pages: $(row q2.db 'select job_id, idx from job_units')"
[ "$(texts q2.db 1)" = "$(cat want3.txt)" ] || fail "job 1's text differs from a clean run"
[ "$(texts q2.db 2)" = "$(cat want3.txt)" ] || fail "job 2's text differs from a clean run"
[ "$(texts q2.db 3)" = "$(cat want1.txt)" ] || fail "job 3's text differs from a clean run"

# ---- the cpu backend never reports a device error: the same fault setting changes nothing
export VLQ_DB="$TEST_TMPDIR/q3.db"
"$V" submit ocr three.pdf > /dev/null || fail "submit"
VLQ_DEVTEST_FAIL_SYNC=1 timeout 120 "$V" worker --drain --backend cpu 2> p1.log ||
    fail "cpu backend: $(tail -5 p1.log)"
[ "$(texts q3.db 1)" = "$(cat want3.txt)" ] || fail "cpu text differs"
exit 0
