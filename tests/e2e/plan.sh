#!/bin/sh
# vlq plan on generated media: the --json shape of issue 4, segments and a bad file.
set -eu
command -v ffmpeg >/dev/null 2>&1 || exit 77
command -v python3 >/dev/null 2>&1 || exit 77
cd "$TEST_TMPDIR"
ffmpeg -nostdin -v error -y -f lavfi -i testsrc=size=320x240:rate=10:duration=900 \
    -c:v libx264 -preset ultrafast -g 100 long.mp4
ffmpeg -nostdin -v error -y -f lavfi -i testsrc=size=2000x1500 -frames:v 1 page.png
"$VLQ_BIN" plan long.mp4 page.png --kind summarize --prompt-tokens 60 --json >plan.json
python3 - plan.json <<'PY'
import json, sys
units = json.load(open(sys.argv[1]))["units"]
keys = {"file", "page", "start_s", "end_s", "frames", "width", "height", "grid",
        "visual_tokens", "prompt_tokens", "max_new_tokens"}
for u in units:
    assert keys <= set(u), u
    assert u["visual_tokens"] + u["prompt_tokens"] + u["max_new_tokens"] <= 16384, u
    t, h, w = u["grid"]
    assert u["visual_tokens"] == t * h * w // 4, u
video = [u for u in units if u["file"] == "long.mp4"]
assert len(video) >= 2, video                      # 15 min at 2 fps needs segments
assert video[0]["start_s"] == 0 and abs(video[-1]["end_s"] - 900) < 1e-6
for a, b in zip(video, video[1:]):
    assert abs(a["end_s"] - b["start_s"]) < 1e-9     # consecutive
    assert a["page"] is None
page = [u for u in units if u["file"] == "page.png"]
assert len(page) == 1 and page[0]["page"] == 1 and page[0]["end_s"] is None
print("plan ok:", len(video), "segments")
PY
# With the tokenizer: the kind's default prompt counted by tok.
"$VLQ_BIN" plan page.png --kind ocr --tokenizer "$VLQ_ROOT/tests/data/qwen3-tokenizer/tokenizer.json" \
    --json >tok.json
python3 -c 'import json,sys; u=json.load(open("tok.json"))["units"][0]; assert u["prompt_tokens"] > 40 and u["max_new_tokens"] == 2048, u'
# A bad file: exit 1, the file and the reason on stderr, the good file still planned.
printf 'not a video' >bad.mp4
if "$VLQ_BIN" plan bad.mp4 page.png --kind ocr --prompt-tokens 40 >out.txt 2>err.txt; then
    echo "bad.mp4 accepted"; exit 1
fi
grep -q '^vlq: bad.mp4: ' err.txt
grep -q '^page.png page 1: ' out.txt
# Without a prompt token count or a model: a usage error that says why.
if "$VLQ_BIN" plan page.png --kind ocr 2>err.txt; then exit 1; fi
grep -q 'prompt' err.txt
# With [model] path: the model's own tokenizer counts, as --tokenizer does.
"$VLQ_MAKE_TINY_BIN" tiny 7 >/dev/null
"$VLQ_BIN" convert tiny -o tiny.vlq --quant q4 2>/dev/null
printf '[model]\npath = %s/tiny.vlq\n' "$TEST_TMPDIR" > m.conf
"$VLQ_BIN" --config m.conf plan page.png --kind ocr --json >model.json
python3 -c 'import json; a=json.load(open("tok.json"))["units"][0]; b=json.load(open("model.json"))["units"][0]; assert a["prompt_tokens"] == b["prompt_tokens"], (a, b)' 
echo ok
