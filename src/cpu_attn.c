/* cpu_attn: attention by tiles with an online softmax for the cpu backend.
 *
 * The work is cut into items (sequence or segment, KV head, block of query rows), split
 * over OpenMP threads. A block holds (token, query head) pairs of one sequence whose
 * heads share one KV head (GQA), so each K/V row a block reads serves every query head
 * of the group: for decode (one new token) a block is exactly the rep query heads of a
 * KV head, and the cache is read once per KV head, not once per query head.
 *
 * Two kernels (cpu_kern.inc), each compiled for AVX-512, AVX2 and plain vectors, chosen at
 * run time by cpucaps_get() (VLQ_CPUCAPS caps it):
 * - tiled (prefill, vision): queries in vector lanes, blocks of 64 rows on AVX-512 (16
 *   on AVX2, 8 plain); per tile of keys S^T = K Q^T, the running max and sum per row,
 *   O^T += V^T P^T; the score matrix is never bigger than one tile (keys x block rows).
 * - dot (blocks of at most half a vector of rows: decode): dot products along head_dim.
 * Causal limits are per row (token), so a block mixes rows with different limits; keys
 * past every row's limit are never read. KV caches may be F32, F16 or BF16: each tile is
 * converted to f32 once per block.
 *
 * Numerics: fp32 everywhere, sums in a different order than ops_ref and a polynomial exp
 * (cpu_kern.inc): tests/test_attn.c states the tolerance. No allocation: the scratch is a
 * fixed array on each thread's stack. */
#include "cpu_attn.h"

#include "backend_int.h"
#include "cpucaps.h"

#include <assert.h>
#include <string.h>

/* ---- the kernels, once per instruction set ---- */

#define CK_W 4
#define CK_SFX none
#define CK_TARGET
#define CK_F16C 0
#include "cpu_kern.inc"
#undef CK_W
#undef CK_SFX
#undef CK_TARGET
#undef CK_F16C

#if defined(__x86_64__) && defined(__GNUC__)
#define CPU_ATTN_X86 1
#include <immintrin.h>
#define CPU_ATTN_F16C 1

#define CK_W 8
#define CK_SFX avx2
#define CK_TARGET __attribute__((target("avx2,fma,f16c")))
#define CK_F16C CPU_ATTN_F16C
#include "cpu_kern.inc"
#undef CK_W
#undef CK_SFX
#undef CK_TARGET
#undef CK_F16C

#define CK_W 16
#define CK_SFX avx512
#define CK_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define CK_F16C CPU_ATTN_F16C
#include "cpu_kern.inc"
#undef CK_W
#undef CK_SFX
#undef CK_TARGET
#undef CK_F16C
#endif

/* Multiply-adds below which the op runs on the calling thread (as backend_cpu.c). */
#define CPU_ATTN_PAR_MIN (1 << 16)

/* The lanes of the kernels this CPU runs (16, 8 or 4). */
static int cpu_attn_lanes(void)
{
#ifdef CPU_ATTN_X86
    int caps = cpucaps_get();
    if (caps & CPUCAPS_AVX512)
        return 16;
    if (caps & CPUCAPS_AVX2)
        return 8;
#endif
    return 4;
}

static void cpu_attn_block(const CpuAttnTask *t, int lanes, float *scratch)
{
    int dot = t->n_rows * 2 <= lanes;
#ifdef CPU_ATTN_X86
    if (lanes == 16) {
        if (dot)
            ck_attn_dot_avx512(t, scratch);
        else
            ck_attn_tiled_avx512(t, scratch);
        return;
    }
    if (lanes == 8) {
        if (dot)
            ck_attn_dot_avx2(t, scratch);
        else
            ck_attn_tiled_avx2(t, scratch);
        return;
    }
#endif
    if (dot)
        ck_attn_dot_none(t, scratch);
    else
        ck_attn_tiled_none(t, scratch);
}

size_t cpu_attn_scratch_bytes(int hd)
{
    size_t kb = CPU_ATTN_KB(hd), qb = 64, hdp = ((size_t)hd + 63) / 64 * 64;
    size_t tiled = 2 * (size_t)hd * qb + kb * qb + 2 * kb * (size_t)hd;
    size_t dot = CPU_ATTN_QMAX * ((size_t)hd + hdp + kb) + kb * ((size_t)hd + hdp);
    return (tiled > dot ? tiled : dot) * 4;
}

/* One call of either op: the shapes, and where sequence s lies. */
typedef struct {
    Tensor *o;
    const Tensor *q, *k, *v;
    const BackendSeq *seqs; /* attention: the sequences, else NULL */
    const int32_t *cu;      /* attention_seg: the segment bounds */
    int n_seq, n_heads, n_kv_heads, hd;
    float scale;
} CpuAttnRun;

/* Rows, KV rows and limits of sequence (or segment) s. */
static void cpu_attn_seq(const CpuAttnRun *r, int s, int64_t *row0, int *n_tok, int64_t *kv_row0,
                         int64_t *lim0)
{
    if (r->seqs) {
        *row0 = r->seqs[s].row0;
        *n_tok = r->seqs[s].n_tok;
        *kv_row0 = r->seqs[s].kv_row0;
        *lim0 = r->seqs[s].n_past + 1;
    } else {
        *row0 = *kv_row0 = r->cu[s];
        *n_tok = r->cu[s + 1] - r->cu[s];
        *lim0 = *n_tok;
    }
}

static void cpu_attn_run(const CpuAttnRun *r)
{
    /* rows per block: the tiled kernel's, 4 vectors on AVX-512, else 2 (cpu_kern.inc) */
    int lanes = cpu_attn_lanes(), qb = lanes == 16 ? 64 : 2 * lanes;
    int rep = r->n_heads / r->n_kv_heads;
    assert(r->hd <= CPU_ATTN_MAX_HD && r->n_heads % r->n_kv_heads == 0);
    assert(cpu_attn_scratch_bytes(r->hd) <= CPU_ATTN_SCRATCH_FLOATS * sizeof(float));
    int64_t items = 0, work = 0;
    for (int s = 0; s < r->n_seq; s++) {
        int64_t row0, kv0, lim0;
        int n_tok;
        cpu_attn_seq(r, s, &row0, &n_tok, &kv0, &lim0);
        assert(r->seqs ? kv0 + lim0 - 1 + n_tok <= r->k->rows : row0 + n_tok <= r->k->rows);
        items += (int64_t)r->n_kv_heads * (((int64_t)n_tok * rep + qb - 1) / qb);
        work += (int64_t)n_tok * (lim0 + n_tok) * r->n_heads * r->hd;
    }
    size_t esz = r->k->type == QUANT_F32 ? 4 : 2;
#pragma omp parallel if (work > CPU_ATTN_PAR_MIN)
    {
        float scratch[CPU_ATTN_SCRATCH_FLOATS] __attribute__((aligned(64)));
#pragma omp for schedule(dynamic, 1)
        for (int64_t item = 0; item < items; item++) {
            /* find the item's sequence: a short scan (few sequences per call) */
            int64_t before = 0, row0, kv0, lim0, nb = 0;
            int s = 0, n_tok = 0;
            for (;; s++) {
                cpu_attn_seq(r, s, &row0, &n_tok, &kv0, &lim0);
                nb = ((int64_t)n_tok * rep + qb - 1) / qb;
                if (item - before < nb * r->n_kv_heads)
                    break;
                before += nb * r->n_kv_heads;
            }
            int g = (int)((item - before) / nb), blk = (int)((item - before) % nb);
            CpuAttnTask t = {
                .q = (const float *)r->q->data + row0 * r->q->cols + (int64_t)g * rep * r->hd,
                .o = (float *)r->o->data + row0 * r->o->cols + (int64_t)g * rep * r->hd,
                .ldq = r->q->cols,
                .k = (const char *)r->k->data + ((size_t)kv0 * r->k->cols + (size_t)g * r->hd) * esz,
                .v = (const char *)r->v->data + ((size_t)kv0 * r->v->cols + (size_t)g * r->hd) * esz,
                .ldk = r->k->cols,
                .kv_type = r->k->type,
                .hd = r->hd,
                .rep = rep,
                .p0 = blk * qb,
                .n_rows = n_tok * rep - blk * qb < qb ? n_tok * rep - blk * qb : qb,
                .causal = r->seqs != NULL,
                .lim0 = lim0,
                .scale = r->scale,
            };
            cpu_attn_block(&t, lanes, scratch);
        }
    }
}

/* Causal GQA attention over a KV cache of F32, F16 or BF16 (backend.h). */
void cpu_attn_attention(Backend *b, Tensor *o, const Tensor *q, const Tensor *kc,
                        const Tensor *vc, const BackendSeq *seqs, int n_seq, int n_heads,
                        int n_kv_heads, float scale)
{
    int hd = (int)(q->cols / n_heads);
    assert(kc->cols == (int64_t)n_kv_heads * hd && vc->cols == kc->cols);
    assert(kc->type == vc->type && kc->type <= QUANT_BF16);
    CpuAttnRun r = {.o = o, .q = q, .k = kc, .v = vc, .seqs = seqs, .n_seq = n_seq,
                    .n_heads = n_heads, .n_kv_heads = n_kv_heads, .hd = hd, .scale = scale};
    cpu_attn_run(&r);
}

/* Non-causal attention within segments (backend.h). */
void cpu_attn_attention_seg(Backend *b, Tensor *o, const Tensor *q, const Tensor *k,
                            const Tensor *v, const int32_t *cu_seqlens, int n_seg, int n_heads,
                            float scale)
{
    int hd = (int)(q->cols / n_heads);
    assert(k->cols == q->cols && v->cols == q->cols && k->type == QUANT_F32);
    CpuAttnRun r = {.o = o, .q = q, .k = k, .v = v, .cu = cu_seqlens, .n_seq = n_seg,
                    .n_heads = n_heads, .n_kv_heads = n_heads, .hd = hd, .scale = scale};
    cpu_attn_run(&r);
}
