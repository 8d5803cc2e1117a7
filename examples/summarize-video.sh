#!/bin/sh
# summarize-video.sh: from a Hugging Face checkpoint to a video summary, step by step.
#
#   examples/summarize-video.sh ~/models/Qwen3-VL-4B-Instruct talk.mp4
#
# 1. convert the checkpoint once (vlq convert: INT4 decoder, one mmap-able file);
# 2. show how the video will be cut to fit the video budget (vlq plan);
# 3. queue the job and run it (vlq submit summarize; vlq worker --drain);
# 4. print the summary as a report with hh:mm:ss times (vlq result --format md).
# The model file, the queue and the config live in $WORK (default ./vlq-work).
set -eu
VLQ=${VLQ:-vlq}
HF=${1:?usage: summarize-video.sh HF_CHECKPOINT_DIR VIDEO}
VIDEO=${2:?usage: summarize-video.sh HF_CHECKPOINT_DIR VIDEO}
WORK=${WORK:-./vlq-work}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
MODEL="$WORK/$(basename "$HF").vlq"

if [ ! -f "$MODEL" ]; then
    echo "== 1. vlq convert $HF -o $MODEL"
    "$VLQ" convert "$HF" -o "$MODEL"
fi
printf '[queue]\ndb = %s/vlq.db\n[model]\npath = %s\n' "$WORK" "$MODEL" > "$WORK/vlq.conf"
export VLQ_CONFIG="$WORK/vlq.conf"

echo "== 2. vlq plan $VIDEO --kind summarize"
"$VLQ" plan "$VIDEO" --kind summarize

echo "== 3. vlq submit summarize $VIDEO; vlq worker --drain"
id=$("$VLQ" submit summarize "$VIDEO")
"$VLQ" worker --drain

echo "== 4. vlq result $id --format md"
"$VLQ" result "$id" --format md
