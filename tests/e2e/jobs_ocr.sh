#!/bin/bash
# OCR end to end on a tiny random model with the real vocabulary: generated images, a
# generated 2-page PDF and a 3-page TIFF -> vlq submit ocr -> vlq worker --drain -> one
# result entry per page, each page's text equal to `vlq run` greedy on the same file (the
# same preprocessed pixels through the engine alone); a corrupt file among good ones
# fails only its own job with the reason; --prompt-file is used; vlq result txt/md/json;
# [output] dir; the webhooks arrive at a loopback receiver with valid signatures; a
# worker killed with SIGKILL mid-document resumes without redoing or duplicating a page;
# SIGTERM mid-document hands the job back; two workers on one queue never store a page
# twice.
set -u
V="$VLQ_BIN"
R="$VLQ_ROOT/examples/webhook_receiver.py"
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$TEST_TMPDIR"
export VLQ_DB="$TEST_TMPDIR/q.db"
SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; }
trap cleanup EXIT

"$VLQ_MAKE_TINY_BIN" tiny 7 || fail "make-tiny"
"$V" convert tiny -o tiny.vlq --quant q4 2> convert.log || fail "convert: $(cat convert.log)"
mkdir -p in out
ffmpeg -v error -f lavfi -i testsrc=size=96x64:rate=1 -frames:v 1 in/a.png || fail "ffmpeg"
ffmpeg -v error -f lavfi -i smptebars=size=128x96:rate=1 -frames:v 1 in/b.jpg || fail "ffmpeg"
python3 "$VLQ_ROOT/tests/tools/gen_pdf.py" in/doc.pdf "Invoice 42" "Total: 17 EUR" || fail "pdf"
cp "$VLQ_ROOT/tests/media/pages3.tif" in/scan.tif
head -c 3000 /dev/urandom > in/broken.png
printf 'Read the page.\n' > prompt.txt
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
lease_seconds = 30
[webhooks]
secret = $SECRET
schedule = 0,1,1
[output]
dir = $TEST_TMPDIR/out
format = md
CONF
export VLQ_CONFIG="$TEST_TMPDIR/vlq.conf"

python3 "$R" --port 0 --port-file r.port --secret "$SECRET" --out hooks.jsonl 2> r.err &
pids+=($!)
for _ in $(seq 1 100); do [ -s r.port ] && break; sleep 0.05; done
[ -s r.port ] || fail "receiver did not start: $(cat r.err)"
HOOK="http://127.0.0.1:$(cat r.port)/hook"

"$V" submit ocr in/a.png in/b.jpg in/doc.pdf in/scan.tif in/broken.png --webhook "$HOOK" \
    --prompt-file prompt.txt > ids.txt || fail "submit"
[ "$(wc -l < ids.txt)" = 5 ] || fail "not one job per file: $(cat ids.txt)"
"$V" worker --drain 2> w1.log; rc=$?
[ $rc = 3 ] || fail "drain with one bad file: exit $rc, want 3: $(tail -5 w1.log)"
grep -q 'msg="page 2/2 done' w1.log || fail "no logfmt progress line: $(head -20 w1.log)"

python3 - "$V" <<'PY' || fail "results"
import json, subprocess, sys
V = sys.argv[1]
ids = [int(x) for x in open("ids.txt")]
def vlq(*a):
    return subprocess.run([V, *a], capture_output=True, text=True)
want_pages = [1, 1, 2, 3]
for jid, n in zip(ids[:4], want_pages):
    show = json.loads(vlq("--json", "show", str(jid)).stdout)
    assert show["status"] == "succeeded", show
    assert show["progress"] == {"units_done": n, "units_total": n}, show["progress"]
    doc = json.loads(vlq("result", str(jid), "--format", "json").stdout)
    assert [p["page"] for p in doc["pages"]] == list(range(1, n + 1)), doc
    for p in doc["pages"]:
        assert p["error"] is None and p["tok_out"] >= 1 and p["tok_in"] > 0, p
        assert isinstance(p["text"], str), p
    assert doc["prompt_version"] is None  # the job's own prompt
    md = vlq("result", str(jid), "--format", "md").stdout
    assert md.count("<!-- page ") == n, md
    txt = vlq("result", str(jid), "--format", "txt").stdout
    assert txt.count("--- page ") == n, txt
bad = json.loads(vlq("--json", "show", str(ids[4])).stdout)
assert bad["status"] == "dead" and bad["error_code"] == "EINPUT", bad
assert "broken.png" in bad["error"], bad["error"]
PY

# each page equals the engine run directly on the same image (greedy, same prompt; vlq run
# plans at the reference's own size, which these small images keep under the OCR budget)
for f in a.png b.jpg; do
    "$V" run --temperature 0 --max-new-tokens 4 --image "in/$f" "Read the page." > "run_$f.txt" \
        2> run.log || fail "vlq run $f: $(cat run.log)"
done
python3 - "$V" <<'PY' || fail "the job's page differs from vlq run"
import json, subprocess, sys
V = sys.argv[1]
ids = [int(x) for x in open("ids.txt")]
for jid, f in ((ids[0], "a.png"), (ids[1], "b.jpg")):
    doc = json.loads(subprocess.run([V, "result", str(jid), "--format", "json"],
                                    capture_output=True, text=True).stdout)
    direct = open(f"run_{f}.txt", encoding="utf-8").read().rstrip("\n")
    assert doc["pages"][0]["text"].rstrip("\n") == direct, (f, doc["pages"][0]["text"], direct)
PY

# [output] dir: one rendering per succeeded job, named after its input
for f in a.png b.jpg doc.pdf scan.tif; do
    [ -s "out/$f.md" ] || fail "no out/$f.md"
done
[ -e out/broken.png.md ] && fail "a dead job wrote an output file"
ls out | grep -q tmp && fail "a temporary file was left in out/"

# webhooks: 4 succeeded + 1 failed, signatures checked by the receiver
for _ in $(seq 1 100); do [ "$(wc -l < hooks.jsonl 2>/dev/null || echo 0)" -ge 5 ] && break; sleep 0.1; done
[ "$(grep -c '"job.succeeded"' hooks.jsonl)" = 4 ] || fail "succeeded events: $(cat hooks.jsonl)"
[ "$(grep -c '"job.failed"' hooks.jsonl)" = 1 ] || fail "failed events"

# SIGKILL mid-document, then resume: no page redone, none stored twice
python3 "$VLQ_ROOT/tests/tools/gen_pdf.py" in/long.pdf p1 p2 p3 p4 p5 p6 || fail "pdf"
id=$("$V" submit ocr in/long.pdf --max-attempts 3)
"$V" worker --lease-seconds 2 2> k1.log & w=$!
for _ in $(seq 1 600); do
    n=$(sqlite3 q.db "select count(*) from job_units where job_id=$id")
    [ "$n" -ge 2 ] && break; sleep 0.05
done
kill -9 $w; wait $w 2>/dev/null
before=$(sqlite3 q.db "select count(*) from job_units where job_id=$id")
[ "$before" -ge 2 ] && [ "$before" -lt 6 ] || fail "kill point: $before pages stored"
sleep 2.5 # the killed worker's lease runs out: the job is claimable again
"$V" worker --drain --lease-seconds 2 2> k2.log || fail "resume: $(tail -5 k2.log)"
grep -q "done by an earlier attempt: resuming" k2.log || fail "no resume line: $(head k2.log)"
sqlite3 q.db "select count(*), count(distinct idx), sum(attempt=1) from job_units where job_id=$id" > k.txt
read -r total distinct first < <(tr '|' ' ' < k.txt)
[ "$total" = 6 ] && [ "$distinct" = 6 ] || fail "pages after resume: $(cat k.txt)"
[ "$first" -ge "$before" ] || fail "pages of the killed attempt were redone: $(cat k.txt) before=$before"
[ "$("$V" --json show "$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')" = succeeded ] ||
    fail "resumed job did not succeed"

# SIGTERM mid-document: the job is handed back (queued, no attempt spent) with the pages
# it stored kept; the workers below finish it
id=$("$V" submit ocr in/long.pdf --key sigterm)
"$V" worker 2> s1.log & w=$!
for _ in $(seq 1 600); do
    n=$(sqlite3 q.db "select count(*) from job_units where job_id=$id")
    [ "$n" -ge 1 ] && break; sleep 0.05
done
kill -TERM $w; wait $w; rc=$?
[ $rc = 0 ] || fail "SIGTERM: worker exit $rc"
[ "$(sqlite3 q.db "select state, attempts from jobs where id=$id")" = "queued|0" ] ||
    fail "SIGTERM: $(sqlite3 q.db "select state, attempts from jobs where id=$id")"
[ "$(sqlite3 q.db "select count(*) from job_units where job_id=$id")" -ge 1 ] ||
    fail "SIGTERM: stored pages lost"

# two workers on one queue: every page stored once
for i in 1 2 3; do "$V" submit ocr in/doc.pdf > /dev/null; done
"$V" worker --drain 2> t1.log & a=$!
"$V" worker --drain 2> t2.log & b=$!
wait $a; wait $b
dups=$(sqlite3 q.db "select count(*) from (select job_id, idx from job_units group by job_id, idx having count(*) > 1)")
[ "$dups" = 0 ] || fail "a page stored twice"
left=$(sqlite3 q.db "select count(*) from jobs where state in ('queued','running','failed')")
[ "$left" = 0 ] || fail "$left jobs left unfinished"
exit 0
