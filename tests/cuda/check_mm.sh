#!/bin/sh
# check_mm.sh: build and run tests/cuda/mm_check.cu (kernels/matmul.cu and rows.cu on a
# device against ops_ref, then decode and prefill timings at the 4B shapes), then, when
# compute-sanitizer is installed, its memcheck and racecheck over the correctness part.
# Usage: tests/cuda/check_mm.sh [ARCH]   (ARCH default sm_90; e.g. sm_89 on an RTX 4090)
# Exit: 0 pass, 1 failure, 77 no usable device. Run from the repository root; takes about
# a minute to build and well under five to run.
set -e
ARCH=${1:-sm_90}
NVCC=${NVCC:-/usr/local/cuda/bin/nvcc}
OUT=build/cuda-check
mkdir -p "$OUT"
for f in backend_cpu backend ops_ref cpucaps err util cpu_attn cpu_dense cpu_elem cpu_qmm; do
    cc -std=gnu11 -O2 -fopenmp -Isrc -c "src/$f.c" -o "$OUT/$f.o"
done
for f in kernels/matmul.cu kernels/rows.cu tests/cuda/mm_check.cu; do
    "$NVCC" -arch="$ARCH" -std=c++17 -O2 -Isrc -Ikernels -c "$f" -o "$OUT/$(basename "$f" .cu).o"
done
"$NVCC" -arch="$ARCH" -o "$OUT/mm_check" "$OUT"/*.o -lcublas -lgomp -lcrypto -lm
set +e
"$OUT/mm_check"
rc=$?
[ $rc -ne 0 ] && exit $rc
SAN=${SAN:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}
if [ -x "$SAN" ]; then
    for tool in memcheck racecheck; do
        "$SAN" --tool $tool --error-exitcode 1 "$OUT/mm_check" --quick >"$OUT/$tool.log" 2>&1
        r=$?
        echo "compute-sanitizer $tool: $( [ $r -eq 0 ] && echo clean || echo "FAILED (exit $r)" ): $(tail -1 "$OUT/$tool.log")"
        [ $r -ne 0 ] && rc=1
    done
else
    echo "compute-sanitizer: not installed here, skipped"
fi
exit $rc
