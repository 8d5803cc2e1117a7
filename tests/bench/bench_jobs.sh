#!/bin/bash
# bench_jobs.sh: OCR pages per minute for a generated 10-page PDF, with 1 and with 4 jobs
# in flight (one worker, [worker] concurrency, [engine] ocr_slots to match), and the
# engine's batch occupancy (decode rows per step) from the worker's last line.
# usage: bench_jobs.sh VLQ MODEL.vlq [MAX_NEW_TOKENS] [PDF_DPI]
set -eu
V=$1 MODEL=$2 MAX_NEW=${3:-32} DPI=${4:-72}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
pages=(); for i in $(seq 1 10); do pages+=("Page $i: the quick brown fox jumps over the lazy dog"); done
python3 "$ROOT/tests/tools/gen_pdf.py" "$D/doc.pdf" "${pages[@]}"
for jobs in 1 4; do
    cat > "$D/vlq.conf" <<CONF
[queue]
db = $D/q$jobs.db
[model]
path = $MODEL
[budgets]
max_new_tokens = $MAX_NEW
[engine]
ocr_slots = $jobs
[worker]
concurrency = $jobs
[media]
pdf_dpi = $DPI
CONF
    for i in $(seq 1 "$jobs"); do VLQ_CONFIG="$D/vlq.conf" "$V" -q submit ocr "$D/doc.pdf" > /dev/null; done
    t0=$(date +%s.%N)
    VLQ_CONFIG="$D/vlq.conf" "$V" worker --drain 2> "$D/w$jobs.log"
    t1=$(date +%s.%N)
    occ=$(grep -o 'decode rows per step[^"]*\|[0-9.]* decode rows per step' "$D/w$jobs.log" | head -1)
    python3 -c "import sys; n=10*$jobs; s=$t1-$t0; print(f'{$jobs} job(s) in flight: {n} pages in {s:.1f} s = {60*n/s:.1f} pages/min; engine: $occ')"
done
