/* cpu_qmm: integer matmul of Q4/Q8 weights on the CPU (private to backend_cpu.c, the
 * tests and the benchmark). Activations are quantised once per matmul to int8 blocks of
 * 32 columns with one f32 scale each. Two weight layouts: the packed one (below; the cpu
 * backend repacks Q4/Q8 weights into it at bind time when the CPU has AVX-512 VNNI: 16
 * output rows in the lanes of a vector, no horizontal sums, 2.5-3x the GEMM rate of the
 * file layout and a faster GEMV too), and quant.h's file layout (every other CPU, and any
 * caller that did not repack). File-layout kernels: plain C (the oracle), AVX2 (vpmaddubsw + vpmaddwd), AVX-VNNI
 * (vpdpbusd on ymm) and AVX-512 VNNI (vpdpbusd on zmm), chosen at run time from
 * cpucaps_get(). Few token rows (decode) stream the weights once with both threads
 * busy; many rows (prefill) run register tiles of 4 weight rows x 4 tokens.
 *
 * Scratch: the quantised activations live in a buffer owned by the calling thread
 * (thread-local), grown to the largest shape it has seen and then reused, so a forward
 * pass allocates only the first time it meets a larger shape; cpu_qmm_reserve grows it
 * up front (the engine's memory plan) and cpu_qmm_scratch_bytes says how much that is. */
#ifndef VLQ_CPU_QMM_H
#define VLQ_CPU_QMM_H

#include "backend.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    CPU_QMM_C = 0,      /* plain C: the oracle, any CPU */
    CPU_QMM_AVX2,       /* vpmaddubsw + vpmaddwd on ymm */
    CPU_QMM_AVXVNNI,    /* vpdpbusd on ymm (VEX) */
    CPU_QMM_AVX512VNNI, /* vpdpbusd on zmm */
    CPU_QMM_N
} CpuQmmKernel;

/* y[n, out] = x[n, in] @ W[out, in]^T (+ bias[out]) for a Q4 or Q8 W, bias F32/F16/BF16
 * or NULL, with the fastest kernel the CPU (capped by VLQ_CPUCAPS) allows. Cannot fail
 * (aborts if the scratch cannot be grown). */
void cpu_qmm_matmul(Tensor *y, const Tensor *x, const Tensor *w, const Tensor *bias);
/* The same with kernel k, which must be available (tests and benchmark). */
void cpu_qmm_matmul_with(CpuQmmKernel k, Tensor *y, const Tensor *x, const Tensor *w,
                         const Tensor *bias);

/* 1 if this CPU (capped by VLQ_CPUCAPS) can run kernel k. */
int cpu_qmm_kernel_available(CpuQmmKernel k);
/* The kernel cpu_qmm_matmul uses. */
CpuQmmKernel cpu_qmm_kernel(void);
/* Kernel k's name, e.g. "avx512vnni". */
const char *cpu_qmm_kernel_label(CpuQmmKernel k);
/* What cpu_qmm_matmul runs, for `vlq doctor`, e.g. "q4 x q8: avx512vnni". */
const char *cpu_qmm_kernel_name(void);

/* Bytes of scratch a matmul of up to max_tok token rows and max_cols input columns needs
 * (about 3 bytes per activation element). */
size_t cpu_qmm_scratch_bytes(int64_t max_tok, int64_t max_cols);
/* Grow the calling thread's scratch to cpu_qmm_scratch_bytes(max_tok, max_cols) now.
 * VLQ_ENOMEM with err set. */
int cpu_qmm_reserve(int64_t max_tok, int64_t max_cols, char *err);
/* Free the calling thread's scratch (a later matmul grows it again). */
void cpu_qmm_release(void);

/* ---- the packed layout (16 output rows interleaved in the lanes of a vector) ----
 * cpu_qmm.c's comment describes it. The cpu backend repacks Q4/Q8 Linear weights into it
 * at bind time when cpu_qmm_packed_kernel() is not the C oracle. A packed tensor is a
 * Tensor of the same type, rows, cols and group whose data is the packed qs plane and
 * scale the packed scale plane (both inside one block of cpu_qmm_packed_bytes). */

/* Bytes of the packed form of a [rows, cols] Q4/Q8 weight with the given group (rows
 * padded to 16; the same size as the file's bytes when rows % 16 == 0). */
size_t cpu_qmm_packed_bytes(QuantType type, int64_t rows, int64_t cols, int group);
/* Repack w (file layout, group a multiple of 32) into dst: cpu_qmm_packed_bytes, 64-byte
 * aligned. */
void cpu_qmm_pack(const Tensor *w, void *dst);
/* The packed tensor over dst (as cpu_qmm_pack filled it) for a weight shaped like w. */
Tensor cpu_qmm_packed_tensor(const Tensor *w, void *dst);
/* y = x @ W^T (+ bias) for a packed W, with the fastest packed kernel / with kernel k. */
void cpu_qmm_matmul_packed(Tensor *y, const Tensor *x, const Tensor *w, const Tensor *bias);
void cpu_qmm_matmul_packed_with(CpuQmmKernel k, Tensor *y, const Tensor *x, const Tensor *w,
                                const Tensor *bias);
/* out[cols] = row r of the packed W, dequantised as quant.h's layout would give it (the
 * embedding's row lookup). */
void cpu_qmm_packed_row(const Tensor *w, int64_t r, float *out);
/* 1 if kernel k has a packed form on this CPU (C and AVX-512 VNNI). */
int cpu_qmm_packed_available(CpuQmmKernel k);
/* The kernel cpu_qmm_matmul_packed uses. */
CpuQmmKernel cpu_qmm_packed_kernel(void);

#endif
