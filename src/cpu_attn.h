/* cpu_attn: the cpu backend's attention (private to backend_cpu.c, cpu_attn.c,
 * cpu_elem.c and the tests): tiles of queries x tiles of keys with an online softmax,
 * AVX-512 / AVX2 / plain vector code chosen at run time (cpucaps_get), OpenMP over
 * (sequence, KV head, query block). Nothing allocates: each thread's scratch is a fixed
 * buffer on its stack, cpu_attn_scratch_bytes of it (the memory plan counts it). */
#ifndef VLQ_CPU_ATTN_H
#define VLQ_CPU_ATTN_H

#include "backend.h"

#include <stddef.h>
#include <stdint.h>

#define CPU_ATTN_MAX_HD 256 /* the largest head_dim the scratch is sized for */
#define CPU_ATTN_QMAX 8     /* rows at most in the dot-product (decode) kernel */
/* keys per tile: a K and a V tile of f32 are 32 KiB each at most (L1/L2-sized) */
#define CPU_ATTN_KB(hd) ((hd) <= 64 ? 128 : (hd) <= 128 ? 64 : 16)
#define CPU_ATTN_SCRATCH_FLOATS 41984 /* >= cpu_attn_scratch_bytes(hd)/4, hd <= 256 */

/* One work item: a block of (token, query head) pairs of one sequence that share one KV
 * head, token-major: pair p is token p / rep, head g*rep + p % rep. */
typedef struct {
    const float *q;   /* q of the sequence's first token, at head g*rep */
    float *o;         /* o likewise */
    int64_t ldq;      /* row stride of q and o (floats) */
    const void *k;    /* the sequence's first KV row, at KV head g */
    const void *v;
    int64_t ldk;      /* row stride of k and v (elements) */
    QuantType kv_type; /* F32, F16 or BF16 */
    int hd;           /* head_dim */
    int rep;          /* query heads per KV head */
    int p0;           /* first pair of this block */
    int n_rows;       /* pairs in this block */
    int causal;       /* 1: token t sees keys 0 .. lim0+t-1; 0: every row sees lim0 keys */
    int64_t lim0;     /* causal: n_past + 1; else the segment length */
    float scale;      /* applied to q */
} CpuAttnTask;

static inline const float *cpu_attn_qrow(const CpuAttnTask *t, int i)
{
    int p = t->p0 + i;
    return t->q + (int64_t)(p / t->rep) * t->ldq + (int64_t)(p % t->rep) * t->hd;
}

static inline float *cpu_attn_orow(const CpuAttnTask *t, int i)
{
    int p = t->p0 + i;
    return t->o + (int64_t)(p / t->rep) * t->ldq + (int64_t)(p % t->rep) * t->hd;
}

static inline const void *cpu_attn_kv(const CpuAttnTask *t, const void *base, int64_t j)
{
    return (const char *)base + j * t->ldk * (t->kv_type == QUANT_F32 ? 4 : 2);
}

/* The backend ops (backend.h states the contract). */
void cpu_attn_attention(Backend *b, Tensor *o, const Tensor *q, const Tensor *kc,
                        const Tensor *vc, const BackendSeq *seqs, int n_seq, int n_heads,
                        int n_kv_heads, float scale);
void cpu_attn_attention_seg(Backend *b, Tensor *o, const Tensor *q, const Tensor *k,
                            const Tensor *v, const int32_t *cu_seqlens, int n_seg, int n_heads,
                            float scale);

/* Bytes of scratch each thread running the attention ops uses for head_dim hd (<= 256):
 * on its stack (OpenMP workers and the caller), nothing from the heap. Cannot fail. */
size_t cpu_attn_scratch_bytes(int hd);

#endif
