#!/bin/bash
# examples/nightly-ocr.sh as cron runs it, on a tiny random model: yesterday's folder of
# generated scans (images and a 2-page PDF) -> exit 0, one succeeded job per file with
# every page's result, the [output] dir files; a second run the same night queues
# nothing twice; a day with a corrupt scan -> exit 3 (cron mails) with the dead job
# listed, the good files of that day still done; a day without a folder -> exit 0.
set -u
V="$VLQ_BIN"
N="$VLQ_ROOT/examples/nightly-ocr.sh"
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$TEST_TMPDIR"
export VLQ_DB="$TEST_TMPDIR/q.db" VLQ="$V"

"$VLQ_MAKE_TINY_BIN" tiny 7 || fail "make-tiny"
"$V" convert tiny -o tiny.vlq --quant q4 2> convert.log || fail "convert: $(cat convert.log)"
cat > vlq.conf <<CONF
[model]
path = $TEST_TMPDIR/tiny.vlq
threads = 2
[budgets]
max_new_tokens = 4
[media]
pdf_dpi = 36
[worker]
poll_ms = 100
concurrency = 2
[output]
dir = $TEST_TMPDIR/out
format = txt
CONF
export VLQ_CONFIG="$TEST_TMPDIR/vlq.conf"
mkdir -p out
Y=$(date -d yesterday +%F)
mkdir -p "scans/$Y/sub" scans/2026-01-02
ffmpeg -v error -f lavfi -i testsrc=size=96x64:rate=1 -frames:v 1 "scans/$Y/a.png" || fail "ffmpeg"
ffmpeg -v error -f lavfi -i smptebars=size=128x96:rate=1 -frames:v 1 "scans/$Y/sub/b.jpg" ||
    fail "ffmpeg"
python3 "$VLQ_ROOT/tests/tools/gen_pdf.py" "scans/$Y/c.pdf" "Invoice 42" "Total: 17 EUR" ||
    fail "pdf"
touch "scans/$Y/.hidden"

# last night (the default day): everything succeeds
"$N" scans > n1.out 2> n1.err; rc=$?
[ $rc = 0 ] || fail "good night: exit $rc: $(tail -5 n1.err)"
python3 - "$V" "$TEST_TMPDIR/scans/$Y" <<'PY' || fail "good night results"
import json, os, subprocess, sys
V, day = sys.argv[1], sys.argv[2]
jobs = json.loads(subprocess.run([V, "--json", "list"], capture_output=True, text=True,
                                 check=True).stdout)
assert len(jobs) == 3 and all(j["status"] == "succeeded" for j in jobs), jobs
pages = {}
for j in jobs:
    show = json.loads(subprocess.run([V, "--json", "show", str(j["id"])], capture_output=True,
                                     text=True, check=True).stdout)
    doc = json.loads(subprocess.run([V, "result", str(j["id"]), "--format", "json"],
                                    capture_output=True, text=True, check=True).stdout)
    assert all(p["error"] is None and p["tok_out"] >= 1 for p in doc["pages"]), doc
    pages[os.path.relpath(show["inputs"][0]["path"], day)] = len(doc["pages"])
assert pages == {"a.png": 1, "sub/b.jpg": 1, "c.pdf": 2}, pages
PY
[ "$(ls out | wc -l)" = 3 ] || fail "output dir: $(ls out)"

# the same night again: nothing queued twice, nothing run
"$N" scans "$Y" > n2.out 2> n2.err; rc=$?
[ $rc = 0 ] || fail "second run: exit $rc: $(tail -5 n2.err)"
[ "$("$V" --json list | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" = 3 ] ||
    fail "second run queued again: $("$V" list)"

# a night with a corrupt scan among good ones: exit 3, the dead job listed for cron mail
cp "scans/$Y/a.png" scans/2026-01-02/good.png
head -c 3000 /dev/urandom > scans/2026-01-02/broken.png
"$N" scans 2026-01-02 > n3.out 2> n3.err; rc=$?
[ $rc = 3 ] || fail "bad night: exit $rc, want 3: $(tail -5 n3.err)"
grep -q 'some jobs of 2026-01-02 did not succeed' n3.out || fail "no mail text: $(cat n3.out)"
grep -q 'broken.png' n3.out || fail "the dead job is not listed: $(cat n3.out)"
grep -q 'good.png' n3.out && fail "a good job listed as dead: $(cat n3.out)"
python3 - "$V" <<'PY' || fail "bad night results"
import json, subprocess, sys
V = sys.argv[1]
jobs = json.loads(subprocess.run([V, "--json", "list"], capture_output=True, text=True,
                                 check=True).stdout)
st = sorted(j["status"] for j in jobs)
assert st == ["dead"] + ["succeeded"] * 4, st
PY

# no folder for the day: nothing to do, exit 0
"$N" scans 2026-01-03 > n4.out 2> n4.err; rc=$?
[ $rc = 0 ] || fail "no folder: exit $rc"
grep -q 'no scans for 2026-01-03' n4.out || fail "no folder: $(cat n4.out)"
exit 0
