/* cpu_dense: the CPU backend's matmul for dense weights (F32, F16, BF16): a blocked,
 * packed GEMM (the vision tower, prefill on f32/bf16 models) and a GEMV-shaped path for
 * a handful of rows (decode). Private to backend_cpu.c, the tests and the benchmark.
 *
 * GEMM: per work item (a block of CPU_DENSE_NC output features x CPU_DENSE_TB tokens),
 * per block of CPU_DENSE_KC input columns, the weight block is converted to f32 and
 * packed into panels of NR features (k-major), the tokens into micro-panels of MR rows,
 * and a register-tiled MR x NR microkernel accumulates with f32 FMAs. Kernels: AVX-512
 * (14 x 32), AVX2+FMA (6 x 16), plain C (4 x 16), chosen at run time from cpucaps_get().
 * OpenMP over the work items, one parallel region per matmul. Scratch is thread-local
 * storage of fixed size (cpu_dense_scratch_bytes): nothing is allocated per call.
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
/* Scratch bytes the matmul uses with n_threads threads (thread-local packing buffers,
 * reserved when each thread starts), for the engine's memory plan. */
size_t cpu_dense_scratch_bytes(int n_threads);
/* Rows below which the GEMV-shaped path runs (weights read once per 4 rows, unpacked):
 * below ~20 rows reading the weights n/4 times costs less than packing them once. */
#define CPU_DENSE_GEMV_MAX 16

#endif
