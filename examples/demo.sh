#!/bin/bash
# make demo: the whole pipeline on a tiny random test model, in a scratch folder:
# init, an OCR job on a generated two-page PDF and one on an image, a summary job on a
# generated clip, `vlq worker --drain`, then the results and the webhooks a local
# receiver got (signatures checked). Needs build/vlq and build/make-tiny (make builds
# them), ffmpeg and python3.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
V="${VLQ_BIN:-$ROOT/build/vlq}"
MAKE_TINY="${VLQ_MAKE_TINY_BIN:-$ROOT/build/make-tiny}"
D="${DEMO_DIR:-$ROOT/build/demo}"
SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
rm -rf "$D"
mkdir -p "$D/in" "$D/out"
cd "$D"
if [ -t 1 ]; then
    say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
    say() { printf '\n== %s\n' "$*"; }
fi
t0=$(date +%s)

say "a tiny test model: random weights, the real Qwen3 vocabulary (build/make-tiny)"
VLQ_ROOT="$ROOT" "$MAKE_TINY" tiny 7 > /dev/null
"$V" -q convert tiny -o tiny.vlq --quant q4
ls -lh tiny.vlq | awk '{print "tiny.vlq:", $5}'

say "inputs: a two-page PDF, an image, a 150 s clip (several segments, then a reduce)"
python3 "$ROOT/tests/tools/gen_pdf.py" in/letter.pdf "Dear reader," "Kind regards"
ffmpeg -v error -f lavfi -i testsrc=size=160x120:rate=1 -frames:v 1 in/chart.png
ffmpeg -v error -f lavfi -i testsrc=size=64x48:rate=4 -t 150 -pix_fmt yuv420p in/clip.mp4
ls in

cat > vlq.conf <<CONF
[queue]
db = $D/vlq.db
[model]
path = $D/tiny.vlq
[budgets]
max_new_tokens = 24
video = 1024
summarize_max_new_tokens = 24
[engine]
ocr_slots = 2
video_slots = 1
[worker]
concurrency = 2
poll_ms = 100
[media]
pdf_dpi = 36
[webhooks]
secret = $SECRET
[output]
dir = $D/out
format = md
CONF
export VLQ_CONFIG="$D/vlq.conf"

python3 "$ROOT/examples/webhook_receiver.py" --port 0 --port-file hook.port --secret "$SECRET" \
    --out hooks.jsonl 2> receiver.log &
rpid=$!
trap 'kill $rpid 2>/dev/null' EXIT
for _ in $(seq 1 100); do [ -s hook.port ] && break; sleep 0.05; done
HOOK="http://127.0.0.1:$(cat hook.port)/hook"

say "vlq init; vlq submit (webhooks to $HOOK)"
"$V" init
"$V" submit ocr in/letter.pdf in/chart.png --webhook "$HOOK" | tee ocr.ids
"$V" submit summarize in/clip.mp4 --webhook "$HOOK" | tee sum.ids

say "vlq worker --drain"
"$V" worker --drain

for id in $(cat ocr.ids sum.ids); do
    say "vlq result $id --format md"
    "$V" result "$id" --format md
done

say "webhooks the receiver got (signatures verified)"
python3 - <<'PY'
import json
for line in open("hooks.jsonl"):
    body = json.loads(line)["event"]  # the receiver keeps only events it verified
    d = body["data"]
    print(f'{body["type"]:14} job {d["id"]} ({d["kind"]}, {d["inputs"][0]["path"].rsplit("/", 1)[-1]}): '
          f'{(d.get("result") or {}).get("summary")}')
PY

say "files under [output] dir ($D/out)"
ls out
cat <<MSG

Done in $(( $(date +%s) - t0 )) s. The tiny model has random weights: its text is
meaningless; this demo shows the pipeline (queue, pages and segments, map-reduce, results,
signed webhooks), not the model. To run the real one, convert Qwen3-VL-4B-Instruct
(README: "Models") and point [model] path at it:

    ./vlq convert ~/models/Qwen3-VL-4B-Instruct -o ~/models/qwen3-vl-4b-q4.vlq
    printf '[model]\\npath = %s\\n' ~/models/qwen3-vl-4b-q4.vlq > vlq.conf
    ./vlq submit ocr scan.pdf && ./vlq worker --drain && ./vlq result 1

Everything above is in $D.
MSG
