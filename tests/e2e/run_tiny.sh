#!/bin/bash
# vlq run end to end on a tiny random model that speaks the real Qwen3 vocabulary
# (written by build/make-tiny, converted to Q4): text, an image, two images and a video;
# greedy runs are deterministic, and so are sampled runs with the same --seed.
set -u
V="$VLQ_BIN"
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$TEST_TMPDIR"
"$VLQ_MAKE_TINY_BIN" tiny 7 || fail "make-tiny"
"$V" convert tiny -o tiny.vlq --quant q4 2> convert.log || fail "convert: $(cat convert.log)"
ffmpeg -v error -f lavfi -i testsrc=size=96x64:rate=1 -frames:v 1 img.png || fail "ffmpeg image"
ffmpeg -v error -f lavfi -i smptebars=size=128x96:rate=1 -frames:v 1 bars.png || fail "ffmpeg bars"
ffmpeg -v error -f lavfi -i testsrc=size=64x64:rate=10 -t 2 -pix_fmt yuv420p vid.mp4 ||
    fail "ffmpeg video"

run() { "$V" -v run --model tiny.vlq --max-new-tokens 10 "$@"; }
run "Describe the weather." > t1.txt 2> t1.log || fail "text: $(cat t1.log)"
run "Describe the weather." > t2.txt 2> t2.log || fail "text again"
cmp -s t1.txt t2.txt || fail "greedy output differs between two runs"
grep -q "decode: " t1.log || fail "no decode stats: $(cat t1.log)"
python3 -c 'import sys; open(sys.argv[1], encoding="utf-8", errors="strict").read()' t1.txt ||
    fail "output is not valid UTF-8"

run --image img.png "What is in the picture?" > i1.txt 2> i1.log || fail "image: $(cat i1.log)"
run --image img.png --image bars.png "Compare the pictures." > i2.txt 2> i2.log ||
    fail "two images: $(cat i2.log)"
run --video vid.mp4 "Summarise the video." > v1.txt 2> v1.log || fail "video: $(cat v1.log)"
grep -q "prefill: " v1.log || fail "video: no prefill stats"

run --temperature 1.0 --top-k 50 --seed 5 "Tell a story." > s1.txt 2>/dev/null || fail "sample"
run --temperature 1.0 --top-k 50 --seed 5 "Tell a story." > s2.txt 2>/dev/null || fail "sample 2"
cmp -s s1.txt s2.txt || fail "the same seed gave different text"
exit 0
