#!/bin/bash
# The worker sizes the engine for its concurrency: with the slot keys left at their
# defaults, `--concurrency 3` gives the ocr class 3 slots and three pages decode in the
# same steps (more than one decode row per step); an explicit `[engine] ocr_slots = 1`
# wins (one request at a time: exactly one decode row per step); and a memory limit too
# small for 3 slots shrinks them to what the plan allows, with a log line saying so.
set -u
V="$VLQ_BIN"
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$TEST_TMPDIR"
export VLQ_DB="$TEST_TMPDIR/q.db"

"$VLQ_MAKE_TINY_BIN" tiny 7 || fail "make-tiny"
"$V" convert tiny -o tiny.vlq --quant q4 2> convert.log || fail "convert: $(cat convert.log)"
ffmpeg -v error -f lavfi -i testsrc=size=96x64:rate=1 -frames:v 1 a.png || fail "ffmpeg"
conf() { # conf FILE [extra [engine] lines]
    local f=$1; shift
    { printf '[model]\npath = %s\nthreads = 2\n' "$TEST_TMPDIR/tiny.vlq"
      printf '[budgets]\nmax_new_tokens = 24\n[worker]\npoll_ms = 50\n[engine]\n'
      printf '%s\n' "$@"; } > "$f"
}
# three single-page jobs, the same image: every page runs its full 24 tokens or to EOS
submit3() { for i in 1 2 3; do "$V" submit ocr a.png --prompt "Read $i." > /dev/null || fail "submit"; done; }
rows() { # decode rows per step from the worker's exit line
    sed -n 's/.* steps=\([0-9]*\) rows_decode=\([0-9]*\) .*/\2 \1/p' "$1" |
        awk '{ printf "%.3f\n", $1 / $2 }'
}

conf auto.conf
submit3
VLQ_CONFIG=auto.conf "$V" worker --drain --concurrency 3 2> w1.log || fail "drain: $(tail -5 w1.log)"
grep -q 'slots: ocr 3, video 3, document 0' w1.log || fail "slots not sized: $(grep ready w1.log)"
r=$(rows w1.log)
awk -v r="$r" 'BEGIN { exit !(r > 1.3) }' || fail "3 jobs, 3 slots: $r decode rows per step: $(tail -3 w1.log)"
echo "auto: $r decode rows per step"

conf fixed.conf 'ocr_slots = 1'
submit3
VLQ_CONFIG=fixed.conf "$V" worker --drain --concurrency 3 2> w2.log || fail "drain: $(tail -5 w2.log)"
grep -q 'slots: ocr 1, video 3, document 0' w2.log || fail "explicit slots: $(grep ready w2.log)"
r=$(rows w2.log)
awk -v r="$r" 'BEGIN { exit !(r > 0 && r <= 1) }' || fail "explicit 1 slot: $r decode rows per step"

# a limit with room for 3 ocr slots and 1 video slot but not 2: the video class shrinks
# (the larger budget goes first), the ocr class keeps its 3
conf plan.conf 'ocr_slots = 3' 'video_slots = 1'
mb=$(VLQ_CONFIG=plan.conf "$V" --json doctor 2> /dev/null |
     python3 -c 'import json,sys; print(json.load(sys.stdin)["plan"]["total_bytes"] // 2**20 + 2)') ||
    fail "doctor plan"
conf small.conf "mem_limit_mb = $mb"
submit3
VLQ_CONFIG=small.conf "$V" worker --drain --concurrency 3 2> w3.log || fail "drain: $(tail -5 w3.log)"
grep -q 'slots: ocr 3, video 1, document 0' w3.log || fail "not shrunk: $(grep -E 'ready|slot' w3.log)"
grep -q 'level=warn msg="engine: 1 video slot(s) of 16384 tokens, not 3 (concurrency)' w3.log ||
    fail "no log line for the shrink: $(head -5 w3.log)"
exit 0
