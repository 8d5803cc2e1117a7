#!/bin/bash
# prove.sh: the first thing to run on a machine with an NVIDIA GPU (Ampere or newer),
# under five minutes: what the CUDA backend claims and a machine without a GPU cannot
# show. From the repository root:
#
#   tests/gpu/prove.sh            (OUT=dir keeps the logs there; default build/prove)
#
#   1. build vlq, the tests and vlq-backend-cuda.so with nvcc for this GPU's arch only
#   2. vlq selftest --backend cuda on the tiny model: every op and the forward pass
#   3. the golden tests on the cuda backend (VLQ_TEST_BACKEND=cuda, forward/golden_env_*)
#   4. compute-sanitizer memcheck and racecheck on the selftest's ops
#   5. a random 4B-shaped model (make-4b, converted to q4): decode tokens/s at batch 1,
#      16 and 64 as a share of the device's copy bandwidth (measured here), prefill
#      tokens/s, device memory after load
#
# Without a GPU it runs what can run (the build without linking a device, the same
# selftest and golden steps on the cputest plugin, the benchmark on the tiny model with
# the cpu backend) and says for each GPU step that it was skipped and why, so the
# script itself is checked anywhere. Prints a table last; exit 1 if any step failed.
set -u
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
OUT=${OUT:-$ROOT/build/prove}
mkdir -p "$OUT"
JOBS=$(nproc 2>/dev/null || echo 2)
T0=$(date +%s)
RESULTS=()
FAILED=0

# record NAME STATUS NOTE: one row of the final table
record() {
    RESULTS+=("$(printf '%-28s %-6s %s' "$1" "$2" "$3")")
    [ "$2" = FAIL ] && FAILED=1
    echo "== $1: $2 $3"
}

# GPU or not, and its arch (compute capability without the dot)
GPU=0
ARCH=${CUDA_ARCHS:-90}
if command -v nvidia-smi > /dev/null && nvidia-smi -L > "$OUT/gpu.txt" 2>&1; then
    GPU=1
    cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')
    [ -n "$cap" ] && ARCH=$cap
    record gpu ok "$(head -1 "$OUT/gpu.txt"), sm_$ARCH"
else
    record gpu skip "no GPU (nvidia-smi absent or failing): the GPU steps are skipped"
fi
BE=cuda
[ $GPU = 1 ] || BE=cputest # the same steps through the plugin built from the cpu sources

# 1. build (one arch: compiles are slow)
if make -j"$JOBS" WERROR=1 CUDA_ARCHS="$ARCH" all build/vlq-test build/make-tiny build/make-4b \
        build/vlq-bench-gpu build/vlq-backend-cputest.so > "$OUT/build.log" 2>&1; then
    if [ -f build/vlq-backend-cuda.so ]; then
        record build ok "vlq-backend-cuda.so for sm_$ARCH"
    else
        record build "$([ $GPU = 1 ] && echo FAIL || echo ok)" \
            "$(grep -E 'CUDA +(skipped|compiled)' "$OUT/build.log" | tail -1 | sed 's/^ *//')"
    fi
else
    record build FAIL "see $OUT/build.log: $(tail -1 "$OUT/build.log")"
fi
[ $GPU = 1 ] && [ $FAILED = 1 ] && { printf '%s\n' "${RESULTS[@]}"; exit 1; }
export VLQ_BACKEND_DIR=$ROOT/build

# the tiny model (random weights, the real vocabulary)
TINY=$OUT/tiny
if VLQ_ROOT=$ROOT build/make-tiny "$TINY" 7 > /dev/null 2> "$OUT/tiny.log" &&
    build/vlq -q convert "$TINY" -o "$OUT/tiny.vlq" --quant q4 2>> "$OUT/tiny.log"; then
    record tiny-model ok "$OUT/tiny.vlq"
else
    record tiny-model FAIL "$(tail -1 "$OUT/tiny.log")"
fi

# 2. selftest
if build/vlq selftest --backend $BE --model "$OUT/tiny.vlq" > "$OUT/selftest.txt" 2>&1; then
    record "selftest ($BE)" ok "$(tail -1 "$OUT/selftest.txt")"
else
    record "selftest ($BE)" FAIL "$(grep -c '^FAIL' "$OUT/selftest.txt") cases: $OUT/selftest.txt"
    grep '^FAIL' "$OUT/selftest.txt" | head -5
fi
if [ $GPU = 0 ]; then # and the cuda backend says why it cannot run
    build/vlq selftest --backend cuda > /dev/null 2> "$OUT/cuda.err"
    rc=$?
    record "selftest (cuda)" "$([ $rc = 1 ] && echo ok || echo FAIL)" \
        "exit $rc: $(sed 's/^vlq: selftest: //' "$OUT/cuda.err" | head -1)"
fi

# 3. golden tests on the backend
if VLQ_TEST_BACKEND=$BE make test T=forward/golden_env > "$OUT/golden.txt" 2>&1; then
    record "golden ($BE)" ok "$(tail -1 "$OUT/golden.txt")"
else
    record "golden ($BE)" FAIL "$OUT/golden.txt: $(grep -E '^FAIL' "$OUT/golden.txt" | head -1)"
fi

# 4. compute-sanitizer
if [ $GPU = 1 ] && command -v compute-sanitizer > /dev/null; then
    for tool in memcheck racecheck; do
        if timeout 120 compute-sanitizer --tool $tool --error-exitcode 9 \
            build/vlq selftest --backend cuda --ops-only > "$OUT/$tool.txt" 2>&1; then
            record "sanitizer $tool" ok "$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/$tool.txt" | tail -1)"
        else
            record "sanitizer $tool" FAIL "$OUT/$tool.txt: $(grep -E 'SUMMARY|Invalid|hazard' "$OUT/$tool.txt" | head -1)"
        fi
    done
else
    record sanitizer skip "$([ $GPU = 1 ] && echo 'compute-sanitizer not found' || echo 'no GPU')"
fi

# 5. benchmark
if [ $GPU = 1 ]; then
    COPY=0
    if make CUDA_ARCHS="$ARCH" build/vlq-copy-bw > /dev/null 2>&1 && build/vlq-copy-bw > "$OUT/copy.txt" 2>&1; then
        COPY=$(awk '/^copy_gbps/ {print $2}' "$OUT/copy.txt")
        record "copy bandwidth" ok "$COPY GB/s (read + written)"
    else
        record "copy bandwidth" FAIL "$(cat "$OUT/copy.txt")"
    fi
    M4=${VLQ_BENCH_DIR:-$ROOT/build/bench-cache}
    mkdir -p "$M4"
    if [ ! -f "$M4/model-q4.vlq" ]; then
        VLQ_ROOT=$ROOT build/make-4b "$M4/ckpt" > "$OUT/make4b.log" 2>&1 &&
            build/vlq -q convert "$M4/ckpt" -o "$M4/model-q4.vlq" --quant q4 >> "$OUT/make4b.log" 2>&1 &&
            rm -rf "$M4/ckpt"
    fi
    if [ -f "$M4/model-q4.vlq" ] &&
        timeout 200 build/vlq-bench-gpu "$M4/model-q4.vlq" cuda "$COPY" 512 1 16 64 > "$OUT/bench.txt" 2>&1; then
        record "bench 4B q4" ok "$OUT/bench.txt"
    else
        record "bench 4B q4" FAIL "$OUT/bench.txt $OUT/make4b.log"
    fi
else
    if build/vlq-bench-gpu "$OUT/tiny.vlq" cpu 0 64 1 4 > "$OUT/bench.txt" 2>&1; then
        record "bench (tiny, cpu)" ok "the script's path only; the 4B run needs the GPU"
    else
        record "bench (tiny, cpu)" FAIL "$(tail -1 "$OUT/bench.txt")"
    fi
fi

echo
echo "prove.sh: $(($(date +%s) - T0)) s; logs in $OUT"
[ -f "$OUT/bench.txt" ] && cat "$OUT/bench.txt"
printf '%s\n' "${RESULTS[@]}"
exit $FAILED
