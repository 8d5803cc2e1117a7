/* cpu_dense: the CPU backend's matmul for dense weights (F32, F16, BF16): a blocked,
 * packed GEMM (the vision tower, prefill on f32/bf16 models) and a GEMV-shaped path for
 * a handful of rows (decode). Private to backend_cpu.c, the tests and the benchmark.
 *
 * GEMM: the work is split into items of up to CPU_DENSE_TB (1008) tokens x a group of
 * output features (token blocks when there are many tokens, output groups when the
 * weights would cost more to repack; at least one item per thread). Per item and block
 * of KC (256) input columns, the item's tokens are packed once into micro-panels of MR
 * rows (k-major, 1 MB at most: L2); then per NC (256) output features the weight block
 * is converted to f32 and packed into panels of NR features (256 KB: L2), and a
 * register-tiled MR x NR microkernel runs with one weight panel in L1 while the token
 * micro-panels stream by. The first K block writes bias + products (y is never read
 * before it is written); the kernel prefetches the next output tile. Kernels: AVX-512
 * (14 x 32: 28 zmm accumulators), AVX2+FMA (6 x 16), plain C (4 x 16), chosen at run
 * time from cpucaps_get(); the packing transposes with 16x16 register transposes on
 * AVX-512. OpenMP over the items, one parallel region per matmul. Scratch: one buffer
 * of fixed size per thread (cpu_dense_scratch_bytes), made on the thread's first GEMM
 * and freed when it exits: no allocation per call.
 *
 * GEMV (n < CPU_DENSE_GEMV_MAX rows): 4 weight rows x up to 4 tokens per step, weights
 * converted in registers (no packing), OpenMP over blocks of 16 output features.
 *
 * No bf16 dot-product kernel (vdpbf16ps): on the machine this was written on it runs at
 * half the f32 FMA rate in FLOP/s (78 vs 160 GFLOP per CPU second, 16 independent chains
 * of each in registers), so it would only lose accuracy (activations rounded to bf16).
 *
 * Numerics: f32 products accumulated in f32 (FMA, one rounding per step), summed over
 * each KC block in k order per lane, then added across blocks: different from ops_ref's
 * order; test_dense.c bounds the difference by 1e-6 * sum_k |x_k w_k|. */
#ifndef VLQ_CPU_DENSE_H
#define VLQ_CPU_DENSE_H

#include "backend.h"

#include <stddef.h>

/* y[n, out] = x[n, in] @ W[out, in]^T (+ bias[out]); W F32, F16 or BF16, bias
 * F32/F16/BF16 or NULL, y must not alias x; the kernel chosen by cpucaps_get(). */
void cpu_dense_matmul(Tensor *y, const Tensor *x, const Tensor *w, const Tensor *bias);
/* The same with the kernel chosen for caps (CPUCAPS_* bits, at most the machine's): the
 * tests run every variant through it. */
void cpu_dense_matmul_caps(Tensor *y, const Tensor *x, const Tensor *w, const Tensor *bias,
                           int caps);
/* The kernel cpucaps_get() selects, e.g. "avx512 14x32 f32-fma", for `vlq doctor`. */
const char *cpu_dense_kernel_name(void);
/* The kernel caps would select. */
const char *cpu_dense_kernel_name_caps(int caps);
/* Scratch bytes the matmul uses with n_threads threads (per-thread packing buffers, made
 * on each thread's first GEMM), for the engine's memory plan. */
size_t cpu_dense_scratch_bytes(int n_threads);
/* Rows below which the GEMV-shaped path runs (weights read once per 4 rows, unpacked):
 * below ~20 rows reading the weights n/4 times costs less than packing them once. */
#define CPU_DENSE_GEMV_MAX 16

#endif
