#!/bin/sh
# kernels/check/run.sh [--time]: build attn_check (kernels/check/attn_check.cu with the
# attention, norm and rope kernels) for this machine's GPU and run it; --time adds the
# timings. The binary goes to $OUT (the device machine's output folder) or /tmp.
set -e
cd "$(dirname "$0")/../.."
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
BIN=${OUT:-/tmp}/attn_check
"$NVCC" -O2 -arch="${ARCH:-native}" -std=c++17 -Isrc -Ikernels -o "$BIN" \
    kernels/check/attn_check.cu kernels/attn.cu kernels/norm.cu kernels/rope.cu
"$BIN" "$@"
