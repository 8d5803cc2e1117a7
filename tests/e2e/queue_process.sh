#!/bin/bash
# 4 submitter and 4 worker processes on one database, 500 jobs: every job succeeds
# exactly once, no result is duplicated, and no process ever reports a locked database.
set -u
T="$VLQ_TESTKINDS_BIN"
fail() { echo "FAIL: $*" >&2; exit 1; }
export VLQ_DB="$TEST_TMPDIR/q.db"
cd "$TEST_TMPDIR"
"$T" init 2>/dev/null || fail "init"
mkdir in
for i in $(seq 1 500); do echo "file $i" > "in/f$i.txt"; done

pids=()
for w in 1 2 3 4; do
    "$T" worker --lease-seconds 30 2> "worker$w.log" &
    pids+=($!)
done
spids=()
for s in 0 1 2 3; do
    ( for b in $(seq 0 24); do
          files=()
          for k in 1 2 3 4 5; do files+=("in/f$((s * 125 + b * 5 + k)).txt"); done
          "$T" submit test.echo "${files[@]}" >> "ids$s.txt" 2>> "submit$s.log" || exit 1
      done ) &
    spids+=($!)
done
for p in "${spids[@]}"; do wait "$p" || fail "a submitter failed: $(cat submit*.log)"; done
[ "$(cat ids*.txt | sort -u | wc -l)" = 500 ] || fail "expected 500 distinct ids"

for _ in $(seq 1 600); do
    n=$("$T" list --status succeeded --limit 0 2>/dev/null | wc -l)
    [ "$n" = 500 ] && break
    sleep 0.1
done
kill -TERM "${pids[@]}"
for p in "${pids[@]}"; do wait "$p"; done
[ "$n" = 500 ] || fail "only $n of 500 jobs succeeded"
# exactly once: one result and one attempt per job
res=$(python3 - "$VLQ_DB" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
print(db.execute("select count(*), count(distinct job_id) from results").fetchone(),
      db.execute("select max(attempts), min(attempts) from jobs").fetchone(),
      db.execute("select count(*) from attempts").fetchone()[0])
PY
)
[ "$res" = "(500, 500) (1, 1) 500" ] || fail "exactly-once check: $res"
# each result is the right one: sha256 and size of its own input
"$T" --json list --limit 3 | python3 -c '
import json, sys, subprocess, hashlib
for j in json.load(sys.stdin):
    out = subprocess.run([sys.argv[1], "result", str(j["id"])], capture_output=True, text=True).stdout
    data = open(j["inputs"][0]["path"], "rb").read()
    assert out == "%s %d" % (hashlib.sha256(data).hexdigest(), len(data)), out
' "$T" || fail "results do not match their inputs"
if grep -il "locked" worker*.log submit*.log; then fail "a process saw a locked database"; fi
exit 0
