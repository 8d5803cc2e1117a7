#!/bin/bash
# make bench-engine: vlq beside llama.cpp on the same random weights of the real
# Qwen3-VL-4B shape, each figure measured for both in one run, one after the other, and
# printed as one table with the ratio vlq/llama.cpp (tests/bench/README.md).
#
# Usage: bench_engine.sh CACHE_DIR BUILD_DIR      ($VLQ_ROOT: the repository)
# CACHE_DIR keeps what is slow to make, reused across runs: the bf16 checkpoint (make-4b),
# its vlq Q4 conversion, the GGUF Q4_0 and Q4_K files of its text decoder, a venv with
# numpy and gguf, and llama.cpp built from the llama-cpp-python sdist (PyPI).
# Knobs (environment): BENCH_DECODE_TOK (128), BENCH_PREFILL ("512 2048"),
# BENCH_CONC ("4 8"), BENCH_CONC_TOK (32), BENCH_VISION_SIDE (1024; 0 skips),
# BENCH_THREADS (threads for prefill, concurrent decode and vision; default nproc),
# LLAMA_CPP_PYTHON_VERSION (0.3.36).
set -eu
DIR=$1
B=$2
ROOT=${VLQ_ROOT:-$(pwd)}
NTOK=${BENCH_DECODE_TOK:-128}
PREFILL=${BENCH_PREFILL:-"512 2048"}
CONC=${BENCH_CONC:-"4 8"}
CONC_TOK=${BENCH_CONC_TOK:-32}
VSIDE=${BENCH_VISION_SIDE:-1024}
TMAX=${BENCH_THREADS:-$(nproc)}
LLAMA_PY=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
E=$B/vlq-bench-engine
LB=$DIR/llama-build/bin
T_START=$(date +%s)
log() { echo "bench-engine [$(($(date +%s) - T_START)) s]: $*" >&2; }

mkdir -p "$DIR"
free_gb() { df --output=avail -B1G "$DIR" | tail -1 | tr -d ' '; }
need() { # need GB WHAT: refuse to start writing WHAT without the room for it
    local f
    f=$(free_gb)
    if [ "$f" -lt "$1" ]; then
        echo "bench-engine: $2 needs ~$1 GB in $DIR, only $f GB free" >&2
        exit 1
    fi
}
df -h "$DIR" >&2

# ---- reference tooling: venv (numpy, gguf) and llama.cpp ----
PY=$DIR/venv/bin/python
if ! "$PY" -c 'import gguf, numpy' 2>/dev/null; then
    log "venv with numpy and gguf (PyPI)"
    python3 -m venv "$DIR/venv"
    "$DIR/venv/bin/pip" install -q numpy gguf
fi
if [ ! -x "$LB/llama-bench" ] || [ ! -x "$LB/llama-quantize" ] || [ ! -x "$LB/llama-batched-bench" ]; then
    log "building llama.cpp (llama-cpp-python $LLAMA_PY sdist; slow: 10-30 min on 2 cores)"
    need 2 "llama.cpp"
    SRC=$DIR/src/llama_cpp_python-$LLAMA_PY
    if [ ! -d "$SRC" ]; then
        "$DIR/venv/bin/pip" download -q --no-deps --no-binary :all: -d "$DIR/src" "llama-cpp-python==$LLAMA_PY"
        tar xzf "$DIR/src/llama_cpp_python-$LLAMA_PY.tar.gz" -C "$DIR/src"
    fi
    cmake -S "$SRC/vendor/llama.cpp" -B "$DIR/llama-build" -DCMAKE_BUILD_TYPE=Release \
        -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_SERVER=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF > "$DIR/cmake.log" 2>&1
    nice cmake --build "$DIR/llama-build" -j"$(nproc)" \
        --target llama-bench llama-quantize llama-batched-bench >> "$DIR/cmake.log" 2>&1 ||
        { tail -20 "$DIR/cmake.log" >&2; exit 1; }
fi

# ---- the weights: one random checkpoint, three files made from it ----
HF=$DIR/hf4b
if [ ! -f "$HF/model.safetensors" ]; then
    need 26 "the 4B checkpoint and the files made from it"
    log "writing the random 4B checkpoint (bf16, 8.9 GB)"
    VLQ_ROOT=$ROOT "$B/make-4b" "$HF" >&2
    rm -f "$DIR"/model-q4.vlq "$DIR"/text-*.gguf
fi
VLQ=$DIR/model-q4.vlq
# a file an older or newer vlq cannot read (format version) is converted again
if [ ! -f "$VLQ" ] || ! "$E" bytes "$VLQ" > /dev/null 2>&1; then
    need 4 "model-q4.vlq"
    log "vlq convert --quant q4"
    rm -f "$VLQ"
    "$B/vlq" convert "$HF" -o "$VLQ" --quant q4 >&2
fi
Q40=$DIR/text-q4_0.gguf
Q4K=$DIR/text-q4_k.gguf
if [ ! -f "$Q40" ] || [ ! -f "$Q4K" ]; then
    need 13 "the GGUF files"
    log "GGUF of the text decoder (bf16, then llama-quantize --pure Q4_0 and Q4_K)"
    [ -f "$DIR/text-bf16.gguf" ] || "$PY" "$ROOT/tests/bench/make_gguf.py" "$HF" "$DIR/text-bf16.gguf" >&2
    "$LB/llama-quantize" --pure "$DIR/text-bf16.gguf" "$Q40.tmp" Q4_0 > "$DIR/quantize.log" 2>&1
    "$LB/llama-quantize" --pure "$DIR/text-bf16.gguf" "$Q4K.tmp" Q4_K >> "$DIR/quantize.log" 2>&1
    mv "$Q40.tmp" "$Q40"
    mv "$Q4K.tmp" "$Q4K"
    rm -f "$DIR/text-bf16.gguf" # an intermediate: 8 GB
fi
gguf_bytes() { # every tensor of the file is read once per decode step (token_embd as the head)
    "$PY" -c 'import sys, gguf; print(sum(int(t.n_bytes) for t in gguf.GGUFReader(sys.argv[1]).tensors))' "$1"
}

# ---- measuring ----
declare -A R
vlq() { # vlq KEY ARGS...: one vlq-bench-engine figure, "fail" when it fails
    local key=$1 out k v
    shift
    log "vlq $*"
    if out=$("$E" "$@"); then
        while read -r k v; do
            if [ "$k" = rss_gb ]; then R[vlq.$key.rss]=$v; else R[vlq.$key]=$v; fi
        done <<< "$out"
    else
        R[vlq.$key]=fail
    fi
}
jget() { # jget FIELD FILTER_FIELD FILTER_VALUE < jsonl: FIELD of the matching line
    "$PY" -c '
import json, sys
for line in sys.stdin:
    line = line.strip()
    if line.startswith("{"):
        j = json.loads(line)
        if str(j.get(sys.argv[2])) == sys.argv[3]:
            print(j[sys.argv[1]])
' "$@"
}
llama() { # llama KEY FILE_TAG THREADS llama-bench-args...: avg tokens/s and peak RSS
    local key=$1 tag=$2 t=$3 f out
    shift 3
    f=$Q40
    [ "$tag" = q4k ] && f=$Q4K
    log "llama.cpp $tag -t $t $*"
    if out=$("$E" exec "$LB/llama-bench" -m "$f" -t "$t" -r 1 -lm none -o jsonl "$@" 2>/dev/null); then
        R[$tag.$key]=$(echo "$out" | jget avg_ts n_threads "$t" | head -1)
        R[$tag.$key.rss]=$(echo "$out" | awk '$1 == "child_rss_gb" {print $2}')
    else
        R[$tag.$key]=fail
    fi
}
llama_conc() { # llama_conc TAG THREADS: llama-batched-bench, total decode tokens/s per batch
    local tag=$1 t=$2 f out npl n max=0
    f=$Q40
    [ "$tag" = q4k ] && f=$Q4K
    npl=$(echo $CONC | tr ' ' ',')
    for n in $CONC; do [ "$n" -gt "$max" ] && max=$n; done
    log "llama.cpp $tag batched -npl $npl"
    if out=$("$LB/llama-batched-bench" -m "$f" -t "$t" -lm none -c $((max * (16 + CONC_TOK) + 64)) \
        -b 512 -ub 512 -npp 16 -ntg "$CONC_TOK" -npl "$npl" --output-format jsonl 2>/dev/null); then
        for n in $CONC; do R[$tag.conc$n]=$(echo "$out" | jget speed_tg pl "$n"); done
    else
        for n in $CONC; do R[$tag.conc$n]=fail; done
    fi
}
membw() { # membw THREADS: best of this and every earlier measure in this run
    local v
    v=$("$E" membw "$1" | awk '{print $2}')
    log "read bandwidth, $1 thread(s): $v GB/s"
    R[bw$1]=$(awk -v a="${R[bw$1]:-0}" -v b="$v" 'BEGIN {print (b > a ? b : a)}')
}

R[vlq.bytes]=$("$E" bytes "$VLQ" | awk '$1 == "bytes_per_token" {print $2}')
R[vlq.file]=$(stat -c %s "$VLQ")
R[q40.bytes]=$(gguf_bytes "$Q40")
R[q40.file]=$(stat -c %s "$Q40")
R[q4k.bytes]=$(gguf_bytes "$Q4K")
R[q4k.file]=$(stat -c %s "$Q4K")

for t in 1 2; do
    [ "$t" -le "$TMAX" ] || [ "$t" = 1 ] || continue
    membw "$t"
    vlq "dec$t" decode "$VLQ" "$t" "$NTOK"
    llama "dec$t" q40 "$t" -p 0 -n "$NTOK"
    llama "dec$t" q4k "$t" -p 0 -n "$NTOK"
    membw "$t"
done
for n in $CONC; do
    vlq "conc$n" engine "$VLQ" "$TMAX" "$n" "$CONC_TOK"
done
llama_conc q40 "$TMAX"
llama_conc q4k "$TMAX"
for p in $PREFILL; do
    vlq "pre$p" prefill "$VLQ" "$TMAX" "$p"
    llama "pre$p" q40 "$TMAX" -p "$p" -n 0
    llama "pre$p" q4k "$TMAX" -p "$p" -n 0
done
if [ "$VSIDE" != 0 ]; then
    vlq vision vision "$VLQ" "$TMAX" "$VSIDE"
fi

# ---- the table ----
g() { echo "${R[$1]:--}"; }
num() { case "$1" in '' | - | fail) return 1 ;; esac; }
ratio() { num "$1" && num "$2" && awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}' || echo -; }
fmt() { num "$1" && awk -v a="$1" -v f="$2" 'BEGIN {printf f, a}' || echo "${1:--}"; }
share() { # share TOKS BYTES BW: decode's fraction of the bandwidth bound
    num "$1" && num "$3" && awk -v t="$1" -v b="$2" -v w="$3" 'BEGIN {printf "%.0f%%", 100 * t * b / (w * 1e9)}' || echo -
}
row() { # row LABEL VLQ Q40 Q4K [FORMAT]: ratios vlq/llama.cpp when both are numbers
    local f=${5:-%.2f}
    printf "| %-44s | %10s | %10s | %10s | %8s | %8s |\n" "$1" "$(fmt "$2" "$f")" "$(fmt "$3" "$f")" \
        "$(fmt "$4" "$f")" "$(ratio "$2" "$3")" "$(ratio "$2" "$4")"
}
gb() { num "$1" && awk -v a="$1" 'BEGIN {printf "%.2f", a / 1e9}' || echo "${1:--}"; }
echo
echo "vlq Q4 (vlq convert --quant q4) vs llama.cpp (llama-cpp-python $LLAMA_PY's llama.cpp, --pure Q4_0 / Q4_K),"
echo "same random Qwen3-VL-4B weights; $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
printf "| %-44s | %10s | %10s | %10s | %8s | %8s |\n" figure vlq "llama Q4_0" "llama Q4_K" "vlq/Q4_0" "vlq/Q4_K"
printf "|%s|%s|%s|%s|%s|%s|\n" "----------------------------------------------" "-----------:" "-----------:" \
    "-----------:" "---------:" "---------:"
for t in 1 2; do
    [ -n "${R[bw$t]:-}" ] || continue
    row "decode tok/s, batch 1, $t thread(s), $NTOK tok" "$(g vlq.dec$t)" "$(g q40.dec$t)" "$(g q4k.dec$t)"
done
for t in 1 2; do
    [ -n "${R[bw$t]:-}" ] || continue
    printf "| %-44s | %10s | %10s | %10s | %8s | %8s |\n" "decode share of the bandwidth bound, $t thr." \
        "$(share "$(g vlq.dec$t)" "$(g vlq.bytes)" "$(g bw$t)")" \
        "$(share "$(g q40.dec$t)" "$(g q40.bytes)" "$(g bw$t)")" \
        "$(share "$(g q4k.dec$t)" "$(g q4k.bytes)" "$(g bw$t)")" "" ""
done
for n in $CONC; do
    row "total decode tok/s, $n concurrent, $TMAX thr." "$(g vlq.conc$n)" "$(g q40.conc$n)" "$(g q4k.conc$n)"
done
for p in $PREFILL; do
    row "prefill tok/s, $p tok, $TMAX thr." "$(g vlq.pre$p)" "$(g q40.pre$p)" "$(g q4k.pre$p)"
done
[ "$VSIDE" = 0 ] || row "vision s, one ${VSIDE}x${VSIDE} image, $TMAX thr." "$(g vlq.vision)" - - %.1f
row "peak RSS GB, decode 1 thread (text only)" "$(g vlq.dec1.rss)" "$(g q40.dec1.rss)" "$(g q4k.dec1.rss)"
[ "$VSIDE" = 0 ] || row "peak RSS GB, vision run" "$(g vlq.vision.rss)" - -
row "model file GB" "$(gb "$(g vlq.file)")" "$(gb "$(g q40.file)")" "$(gb "$(g q4k.file)")" %.3f
row "weight GB read per decoded token" "$(gb "$(g vlq.bytes)")" "$(gb "$(g q40.bytes)")" "$(gb "$(g q4k.bytes)")" %.3f
for t in 1 2; do
    [ -n "${R[bw$t]:-}" ] || continue
    printf "| %-44s | %10s | %10s | %10s | %8s | %8s |\n" "read bandwidth GB/s, $t thr. (best of run)" "$(g bw$t)" "" "" "" ""
done
echo
log "done in $(($(date +%s) - T_START)) s"
