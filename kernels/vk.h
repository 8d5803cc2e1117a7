/* vk: the contract between the CUDA backend's table (kernels/backend_cuda.cu) and its
 * kernel families (kernels/<family>.cu). Included only by nvcc-compiled files.
 *
 * backend_cuda.cu owns a VkCtx per backend instance (made at open, freed at close): the
 * stream every launch goes to, the cuBLAS handle, a device workspace and a device ring
 * for small host arrays. Each family exports launchers that mirror the Backend ops of
 * src/backend.h, with the VkCtx in place of the Backend, on Tensors whose data/scale are
 * device pointers (or mapped pinned host pointers for offloaded weights: kernels read
 * them the same way, through unified addressing). A weight's data and scale planes each
 * start 256-byte aligned (uploaded or offloaded alike: [qs | pad | scales]); activations
 * and views may start at any row. Launchers never allocate and never
 * synchronise (except vk_argmax, whose output is on the host); they enqueue on c->stream
 * and record the first launch error with vk_note (reported by the table's sync).
 *
 * Every kernel names its CPU reference (src/ops_ref.c) in a comment, and its arithmetic
 * lives in __host__ __device__ helpers (VK_HD) under kernels/<name>_math.h, which the host
 * tests (tests/test_kmath_mm.c, tests/test_kmath_attn.c) compile with gcc and compare
 * against the plain C kernels. */
#ifndef VLQ_VK_H
#define VLQ_VK_H

#include "../src/backend.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    cudaStream_t stream;
    cublasHandle_t blas;
    int device;
    int sm_major, sm_minor, n_sm;
    /* Scratch device memory any launcher may use for the duration of its launches (all
     * launches are ordered on one stream, so one buffer serves them all). A launcher whose
     * need exceeds work_bytes splits its work (over rows); it never allocates. At least
     * VK_WORK_MIN bytes. */
    void *work;
    size_t work_bytes;
    /* Device ring for host arrays (ids, rows, positions, seqs, cu_seqlens): vk_stage. */
    void *ring;
    size_t ring_bytes, ring_head;
    /* The first error since the last sync (0: none), and its message. */
    int error;
    char err[256];
} VkCtx;

#define VK_WORK_MIN ((size_t)64 << 20)
#define VK_RING_BYTES ((size_t)8 << 20)

/* A device copy of host[bytes] (stream-ordered, so the ring's reuse is safe), or NULL
 * with the error noted when bytes exceed the ring. Owned by the ctx; valid for the
 * launches enqueued after it. backend_cuda.cu. */
void *vk_stage(VkCtx *c, const void *host, size_t bytes);
/* Record e (a cudaError_t, as int) with "what: reason" if it is the first error since
 * the last sync. Returns 1 if e was an error. backend_cuda.cu. */
int vk_note(VkCtx *c, int e, const char *what);
/* The same for a cublasStatus_t (its codes overlap cudaError_t's, its words differ). */
int vk_note_blas(VkCtx *c, int status, const char *what);

/* ---- kernels/matmul.cu (reference: ops_ref matmul) ---- */
/* y[n, out] = x[n, in] @ W^T (+ bias); W F32/F16/BF16 (cuBLAS, f32 accumulation) or
 * Q4/Q8 (dequantisation fused: a GEMV kernel for n <= 8, tensor cores above). */
void vk_matmul(VkCtx *c, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *bias);

/* ---- kernels/rows.cu (reference: ops_ref embed, embed_mix4, set_rows, add_rows,
 * get_rows, argmax). Host arrays are staged with vk_stage. ---- */
void vk_embed(VkCtx *c, Tensor *y, const Tensor *table, const int32_t *ids, int n);
void vk_embed_mix4(VkCtx *c, Tensor *y, const Tensor *table, const int32_t *idx,
                   const float *w, int n);
void vk_set_rows(VkCtx *c, Tensor *dst, const int32_t *rows, const Tensor *src, int n);
void vk_add_rows(VkCtx *c, Tensor *dst, const int32_t *rows, const Tensor *src, int n);
void vk_get_rows(VkCtx *c, Tensor *dst, const Tensor *src, const int32_t *rows, int n);
/* out on the host: this one waits for the stream. */
void vk_argmax(VkCtx *c, const Tensor *x, int32_t *out);

/* ---- kernels/norm.cu (reference: ops_ref rmsnorm, layernorm, add, swiglu, gelu_*) ---- */
void vk_rmsnorm(VkCtx *c, Tensor *y, const Tensor *x, const Tensor *w, float eps);
void vk_layernorm(VkCtx *c, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *bias,
                  float eps);
void vk_add(VkCtx *c, Tensor *y, const Tensor *a, const Tensor *b);
void vk_swiglu(VkCtx *c, Tensor *y, const Tensor *gate, const Tensor *up);
void vk_gelu_tanh(VkCtx *c, Tensor *x);
void vk_gelu_erf(VkCtx *c, Tensor *x);

/* ---- kernels/rope.cu (reference: ops_ref mrope, rope2d) ---- */
void vk_mrope(VkCtx *c, Tensor *x, const int32_t *pos, int n_heads, const int section[3],
              float theta);
void vk_rope2d(VkCtx *c, Tensor *x, const int32_t *pos, int n_heads, float theta);

/* ---- kernels/attn.cu (reference: ops_ref attention, attention_seg) ---- */
/* Causal attention over the slot KV caches (F32/F16/BF16): a flash-attention kernel for
 * prefill rows and a split-key decode kernel for sequences with n_tok == 1. */
void vk_attention(VkCtx *c, Tensor *o, const Tensor *q, const Tensor *kc, const Tensor *vc,
                  const BackendSeq *seqs, int n_seq, int n_heads, int n_kv_heads, float scale);
/* Non-causal attention within segments (vision). */
void vk_attention_seg(VkCtx *c, Tensor *o, const Tensor *q, const Tensor *k, const Tensor *v,
                      const int32_t *cu_seqlens, int n_seg, int n_heads, float scale);

#ifdef __cplusplus
}
#endif
#endif
