#!/bin/bash
# Worker faults and job control through the real binaries: kill -9 mid-job and a lease
# takeover, cancel of a running job, drain exit codes, retry by hand, kinds the binary
# lacks, and bad input (each a clear error, exit 1, nothing half-written).
set -u
T="$VLQ_TESTKINDS_BIN"
V="$VLQ_BIN"
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$TEST_TMPDIR"
export VLQ_DB="$TEST_TMPDIR/q.db"
echo data > a.txt
state() { "$T" --json show "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])'; }
wait_state() {
    for _ in $(seq 1 300); do [ "$(state "$1")" = "$2" ] && return 0; sleep 0.05; done
    fail "job $1: not $2 but $(state "$1")"
}

# kill -9 of a worker mid-job: another worker finishes it after the lease expires
id=$("$T" submit test.sleep a.txt --prompt "40 50")
"$T" worker --lease-seconds 1 2> w1.log & w1=$!
wait_state "$id" running
sleep 0.3
kill -9 $w1; wait $w1 2>/dev/null
"$T" worker --lease-seconds 1 2> w2.log & w2=$!
wait_state "$id" succeeded
kill -TERM $w2; wait $w2
"$T" --json show "$id" | python3 -c '
import json, sys
j = json.load(sys.stdin)
log = [(a["attempt"], a["outcome"]) for a in j["attempt_log"]]
assert j["attempts"] == 2 and log == [(1, "lease_expired"), (2, "succeeded")], (j["attempts"], log)
' || fail "kill -9: attempts not as expected"

# cancel of a running job: it stops at its next checkpoint
id=$("$T" submit test.sleep a.txt --prompt "200 50")
"$T" worker 2> w3.log & w3=$!
wait_state "$id" running
"$T" cancel "$id" 2>/dev/null || fail "cancel exit"
wait_state "$id" cancelled
kill -TERM $w3; wait $w3

# SIGTERM mid-job: the job is handed back untouched (queued, no attempt spent)
id=$("$T" submit test.sleep a.txt --prompt "200 50")
"$T" worker 2> w6.log & w6=$!
wait_state "$id" running
kill -TERM $w6; wait $w6; rc=$?
[ $rc = 0 ] || fail "SIGTERM: worker exit $rc"
"$T" --json show "$id" | python3 -c '
import json, sys
j = json.load(sys.stdin)
assert j["status"] == "queued" and j["attempts"] == 0, j
assert j["attempt_log"][-1]["outcome"] == "released", j["attempt_log"]
' || fail "SIGTERM: the job was not handed back"
"$T" cancel "$id" 2>/dev/null

# drain: 0 when every job succeeded, 3 when one died; retry by hand
"$T" submit test.echo a.txt > /dev/null
"$T" worker --drain 2>/dev/null; rc=$?
[ $rc = 0 ] || fail "drain with successes: exit $rc"
bad=$("$T" submit test.bad a.txt)
"$T" worker --drain 2>/dev/null; rc=$?
[ $rc = 3 ] || fail "drain with a dead job: exit $rc"
[ "$(state "$bad")" = dead ] || fail "test.bad not dead"
"$T" list --status dead | grep -q "not a document this kind reads" || fail "dead reason not listed"
"$T" retry "$bad" || fail "retry exit"
[ "$(state "$bad")" = queued ] || fail "retry did not queue"

# a vlq without a model ([model] path) leaves ocr jobs queued and spends no attempt
id=$("$V" submit ocr a.txt)
"$V" worker --drain 2> w4.log; rc=$?
[ $rc = 0 ] || fail "modelless drain: exit $rc"
grep -q "no model (\[model\] path): 2 kind(s) that need it are not run" w4.log ||
    fail "modelless worker said nothing: $(cat w4.log)"
"$V" --json show "$id" | grep -q '"attempts": 0' || fail "modelless worker spent an attempt"

# an input changed after submit fails its job, not the worker
echo one > c.txt
id=$("$T" submit test.echo c.txt)
echo "two, longer" > c.txt
"$T" worker --drain 2>/dev/null
"$T" --json show "$id" | grep -q "changed since submit" || fail "changed input not reported"

# idempotent resubmit
k1=$("$T" submit test.echo a.txt --key nightly-1)
k2=$("$T" submit test.echo a.txt --key nightly-1)
[ "$k1" = "$k2" ] || fail "idempotency: $k1 != $k2"

# bad input: each a clear error, exit 1, nothing queued or created
n0=$("$T" list --limit 0 | wc -l)
out=$("$T" submit test.echo a.txt missing.txt 2>&1); rc=$?
[ $rc = 1 ] && echo "$out" | grep -q "missing.txt: No such file or directory" || fail "missing: $rc $out"
mkdir d
out=$("$T" submit test.echo d 2>&1); rc=$?
[ $rc = 1 ] && echo "$out" | grep -q "d: is a directory (use --recursive)" || fail "dir: $rc $out"
if [ "$(id -u)" != 0 ]; then
    echo x > locked.txt; chmod 000 locked.txt
    out=$("$T" submit test.echo locked.txt 2>&1); rc=$?
    [ $rc = 1 ] && echo "$out" | grep -q "Permission denied" || fail "unreadable: $rc $out"
else
    echo "skip: unreadable file (running as root, which reads any file)" >&2
fi
out=$("$T" submit test.echo a.txt --webhook "not a url" 2>&1); rc=$?
[ $rc = 1 ] && echo "$out" | grep -q -- "--webhook" || fail "bad url: $rc $out"
[ "$("$T" list --limit 0 | wc -l)" = "$n0" ] || fail "a bad submit queued something"
printf '[worker]\nlease_seconds = soon\n' > bad.conf
out=$("$T" --config bad.conf list 2>&1); rc=$?
[ $rc = 1 ] && echo "$out" | grep -q "bad.conf:2: worker.lease_seconds: 'soon' is not an integer" ||
    fail "malformed config: $rc $out"
out=$("$T" --db /nonexistent/dir/q.db submit test.echo a.txt 2>&1); rc=$?
[ $rc = 1 ] && echo "$out" | grep -q "/nonexistent/dir/q.db" || fail "unwritable db: $rc $out"
[ ! -e /nonexistent/dir ] || fail "unwritable db: something was created"
cp q.db newer.db
python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute("pragma user_version=999"); c.commit()' newer.db
sum=$(sha256sum newer.db)
out=$("$T" --db newer.db list 2>&1); rc=$?
[ $rc = 1 ] && echo "$out" | grep -q "written by a newer vlq" || fail "newer db: $rc $out"
[ "$(sha256sum newer.db)" = "$sum" ] || fail "newer db was modified"
out=$("$T" --db nothere.db list 2>&1); rc=$?
[ $rc = 1 ] && [ ! -e nothere.db ] || fail "list on a missing db: $rc $out"
exit 0
