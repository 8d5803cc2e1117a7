#!/bin/bash
# Peak RSS of a text-only `vlq run` on a model with the real Qwen3-VL-4B vision tower
# (24 blocks, 1024 wide: ~0.8 GB bf16) and the real text widths with fewer layers, to
# see what model residency costs: before lazy vision, the whole file was populated.
#
#   tests/bench/residency.sh WORKDIR VLQ [VLQ...] (run from the repository root)
#   TEXT_LAYERS=4 (the decoder depth; 36 is the real 4B, 3.1 GB in q4)
#
# Needs build/make-tiny. Writes WORKDIR/m.vlq (and a bf16 checkpoint, deleted after
# converting); delete WORKDIR afterwards.
set -eu
work=$1; shift
root=$(pwd)
layers=${TEXT_LAYERS:-4}
mkdir -p "$work"
if [ ! -f "$work/m.vlq" ]; then
    python3 - "$root/tests/data/qwen3-vl-4b-instruct/config.json" "$work/config.json" "$layers" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["text_config"]["num_hidden_layers"] = int(sys.argv[3])
json.dump(c, open(sys.argv[2], "w"), indent=2)
PY
    VLQ_ROOT=$root build/make-tiny "$work/ckpt" 1 "$work/config.json"
    "$1" convert "$work/ckpt" -o "$work/m.vlq" --quant q4
    rm -rf "$work/ckpt"
fi
ls -l "$work/m.vlq"
for vlq in "$@"; do
    for i in 1 2; do
        /usr/bin/time -v "$vlq" run --model "$work/m.vlq" --max-new-tokens 2 "Hello" \
            2> "$work/time.log" > /dev/null
        echo "$vlq: peak RSS $(awk '/Maximum resident/ {printf "%.0f MiB", $6/1024}' "$work/time.log")," \
             "wall $(awk '/Elapsed/ {print $8}' "$work/time.log")"
    done
done
