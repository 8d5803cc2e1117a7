/* cpu_qmm: integer matmul of Q4/Q8 weights on the CPU (private to backend_cpu.c, the
 * tests and the benchmark). Activations are quantised once per matmul to int8 blocks of
 * 32 columns with one f32 scale each; the weights stay in quant.h's file layout (no
 * repacking). Kernels: plain C (the oracle), AVX2 (vpmaddubsw + vpmaddwd), AVX-VNNI
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

#endif
