#!/bin/bash
# Summarize end to end on a tiny random model: a generated 150 s low-resolution video with
# a video budget small enough to force several segments -> segments in order covering the
# video with no gap and no overlap, timestamps right, a final summary (a reduce pass over
# the segments), the md report with hh:mm:ss times, per-job sampling stored, resumable
# segments (a rerun finds them stored and runs only the missing one), and the webhook at a loopback receiver.
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
ffmpeg -v error -f lavfi -i testsrc=size=64x48:rate=4 -t 150 -pix_fmt yuv420p clip.mp4 ||
    fail "ffmpeg"
cat > vlq.conf <<CONF
[model]
path = $TEST_TMPDIR/tiny.vlq
threads = 2
[budgets]
video = 1024
summarize_max_new_tokens = 12
[engine]
video_slots = 2
[worker]
poll_ms = 100
[webhooks]
secret = $SECRET
CONF
export VLQ_CONFIG="$TEST_TMPDIR/vlq.conf"
python3 "$R" --port 0 --port-file r.port --secret "$SECRET" --out hooks.jsonl 2> r.err &
pids+=($!)
for _ in $(seq 1 100); do [ -s r.port ] && break; sleep 0.05; done
[ -s r.port ] || fail "receiver did not start: $(cat r.err)"

id=$("$V" submit summarize clip.mp4 --webhook "http://127.0.0.1:$(cat r.port)/hook" \
     --temperature 0.7 --seed 11) || fail "submit"
"$V" worker --drain 2> w.log || fail "drain: $(tail -5 w.log)"
"$V" result "$id" --format json > r.json || fail "result"
python3 - <<'PY' || fail "segments"
import json
d = json.load(open("r.json"))
segs = d["segments"]
assert len(segs) >= 3, len(segs)
assert abs(d["duration_s"] - 150) < 0.6, d["duration_s"]
assert d["fps"] == 2, d["fps"]
assert segs[0]["start_s"] == 0, segs[0]
for a, b in zip(segs, segs[1:]):
    assert abs(a["end_s"] - b["start_s"]) < 1e-6, (a, b)  # no gap, no overlap
    assert a["start_s"] < a["end_s"], a
assert abs(segs[-1]["end_s"] - d["duration_s"]) < 0.6, (segs[-1], d["duration_s"])
for s in segs:
    assert s["frames"] >= 2 and s["tok_out"] >= 1 and isinstance(s["summary"], str), s
    # ~2 sampled frames per second of its range
    assert abs(s["frames"] - 2 * (s["end_s"] - s["start_s"])) <= 2, s
assert isinstance(d["summary"], str), d["summary"]
PY
grep -q 'msg="reduce round 1' w.log || fail "no reduce pass: $(grep -v '^$' w.log | tail -5)"
n=$(python3 -c 'import json; print(len(json.load(open("r.json"))["segments"]))')
units=$(sqlite3 q.db "select count(*), sum(idx < $n) from job_units where job_id=$id")
[ "${units#*|}" = "$n" ] || fail "segment units: $units"
"$V" result "$id" --format md > r.md || fail "md"
grep -q '^# Summary of clip.mp4' r.md || fail "md title: $(head -3 r.md)"
grep -q '^### 00:00:00 - 00:00:' r.md || fail "md segment times: $(cat r.md)"
grep -q '02:30 (' r.md || fail "md last segment end: $(cat r.md)"
sqlite3 q.db "select params_json from jobs where id=$id" | grep -q '"seed":11' || fail "params"
for _ in $(seq 1 100); do grep -q '"job.succeeded"' hooks.jsonl 2>/dev/null && break; sleep 0.1; done
grep -q '"job.succeeded"' hooks.jsonl || fail "no webhook"

# resume: a job that finds its segments stored runs only the missing one (the reduce
# step is stored too, and reused)
sqlite3 q.db "update jobs set state='queued', attempts=0 where id=$id; delete from job_units where job_id=$id and idx=1"
"$V" worker --drain 2> w2.log || fail "rerun: $(tail -5 w2.log)"
grep -q "done by an earlier attempt: resuming" w2.log || fail "no resume: $(head w2.log)"
[ "$(grep -c 'msg="segment .* done' w2.log)" = 1 ] || fail "rerun ran more than the missing segment"
exit 0
