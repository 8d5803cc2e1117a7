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
 * - dec (blocks of at most CPU_ATTN_QMAX rows: decode): streams the cache, each K and V
 *   row read and widened once for all the block's rows, dot products along head_dim
 *   with their horizontal sums batched 16 keys at a time; its running state (max, sum,
 *   output) lives in memory, so a block's keys can be cut into ranges done apart and
 *   merged (flash-decoding, cpu_attn_run_split: when a call has fewer blocks than about
 *   4 per thread, e.g. 1 sequence x 8 KV heads on 2 threads).
 * Causal limits are per row (token), so a block mixes rows with different limits; keys
 * past every row's limit are never read. KV caches may be F32, F16 or BF16: the tiled
 * kernel converts each tile to f32 once per block, dec widens in registers.
 *
 * Numerics: fp32 everywhere, sums in a different order than ops_ref and a polynomial exp
 * (cpu_kern.inc): tests/test_attn.c states the tolerance. No allocation: the scratch is a
 * fixed array on each thread's stack. */
#include "cpu_attn.h"

#include "backend_int.h"
#include "cpucaps.h"

#include <assert.h>
#include <omp.h>
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

/* Blocks of at most this many rows run the decode kernel (whatever the lanes: its cost
 * grows with the rows, the tiled kernel's with whole blocks of lanes). */
static int cpu_attn_is_dec(const CpuAttnTask *t) { return t->n_rows <= CPU_ATTN_QMAX; }

static void cpu_attn_tiled(const CpuAttnTask *t, int lanes, float *scratch)
{
#ifdef CPU_ATTN_X86
    if (lanes == 16) {
        ck_attn_tiled_avx512(t, scratch);
        return;
    }
    if (lanes == 8) {
        ck_attn_tiled_avx2(t, scratch);
        return;
    }
#endif
    ck_attn_tiled_none(t, scratch);
}

/* An empty decode state: no key seen. */
static void cpu_attn_dec_init(float *state, int hd)
{
    for (int i = 0; i < CPU_ATTN_QMAX; i++) {
        state[i] = -__builtin_inff();
        state[CPU_ATTN_QMAX + i] = 0.0f;
    }
    memset(state + 2 * CPU_ATTN_QMAX, 0, (size_t)CPU_ATTN_QMAX * CPU_ATTN_HDP(hd) * 4);
}

static void cpu_attn_dec(const CpuAttnTask *t, int lanes, int64_t j0, int64_t j1, float *state,
                         float *scratch)
{
#ifdef CPU_ATTN_X86
    if (lanes == 16) {
        ck_attn_dec_avx512(t, j0, j1, state, scratch);
        return;
    }
    if (lanes == 8) {
        ck_attn_dec_avx2(t, j0, j1, state, scratch);
        return;
    }
#endif
    ck_attn_dec_none(t, j0, j1, state, scratch);
}

static void cpu_attn_dec_out(const CpuAttnTask *t, int lanes, float *const *states, int nst)
{
#ifdef CPU_ATTN_X86
    if (lanes == 16) {
        ck_attn_dec_out_avx512(t, states, nst);
        return;
    }
    if (lanes == 8) {
        ck_attn_dec_out_avx2(t, states, nst);
        return;
    }
#endif
    ck_attn_dec_out_none(t, states, nst);
}

/* The key limit past every row of a task. */
static int64_t cpu_attn_lim_max(const CpuAttnTask *t)
{
    return t->causal ? t->lim0 + (t->p0 + t->n_rows - 1) / t->rep : t->lim0;
}

/* One whole block on one thread. */
static void cpu_attn_block(const CpuAttnTask *t, int lanes, float *scratch)
{
    if (!cpu_attn_is_dec(t)) {
        cpu_attn_tiled(t, lanes, scratch);
        return;
    }
    float *state = scratch + CPU_ATTN_DEC_FLOATS(t->hd);
    cpu_attn_dec_init(state, t->hd);
    cpu_attn_dec(t, lanes, 0, cpu_attn_lim_max(t), state, scratch);
    cpu_attn_dec_out(t, lanes, &state, 1);
}

size_t cpu_attn_scratch_bytes(int hd)
{
    size_t kb = CPU_ATTN_KB(hd), qb = 64;
    size_t tiled = 2 * (size_t)hd * qb + kb * qb + 2 * kb * (size_t)hd;
    size_t dec = CPU_ATTN_DEC_FLOATS(hd) + CPU_ATTN_STATE_FLOATS(hd);
    return (tiled > dec ? tiled : dec) * 4;
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

/* The task of work item `item` (sequence, KV head, block of qb rows), items of a
 * sequence consecutive. */
static CpuAttnTask cpu_attn_task(const CpuAttnRun *r, int64_t item, int qb)
{
    int rep = r->n_heads / r->n_kv_heads;
    size_t esz = r->k->type == QUANT_F32 ? 4 : 2;
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
    return (CpuAttnTask){
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
}

/* Flash-decoding: at most 4 blocks per thread (1 sequence x 8 KV heads on 2 threads),
 * all of them decode blocks: their keys are cut into chunks of at least
 * CPU_ATTN_CHUNK_MIN (about 8 chunks per thread in all, so a thread slowed by others on
 * a shared machine holds up little), and the threads take chunks as they come. Each thread keeps a state per block in
 * its own scratch (the part the decode kernel does not use) and folds every chunk it
 * takes into it; after a barrier each block's output is merged from every thread's
 * state. Keys are not split below this many per chunk (the merge and the queries'
 * setup cost a few keys' time). */
#define CPU_ATTN_CHUNK_MIN 256
#define CPU_ATTN_MAX_THREADS 64

static void cpu_attn_run_split(const CpuAttnRun *r, int lanes, int qb, int64_t items,
                               int64_t chunk, int n_threads)
{
    float *states[CPU_ATTN_MAX_THREADS];
    const size_t sf = CPU_ATTN_STATE_FLOATS(r->hd), df = CPU_ATTN_DEC_FLOATS(r->hd);
    int64_t n_chunks = 0;
    for (int64_t i = 0; i < items; i++) {
        CpuAttnTask t = cpu_attn_task(r, i, qb);
        n_chunks += (cpu_attn_lim_max(&t) + chunk - 1) / chunk;
    }
#pragma omp parallel num_threads(n_threads)
    {
        float scratch[CPU_ATTN_SCRATCH_FLOATS] __attribute__((aligned(64)));
        float *mine = scratch + df;
        int nth = omp_get_num_threads();
        for (int64_t i = 0; i < items; i++)
            cpu_attn_dec_init(mine + i * sf, r->hd);
        states[omp_get_thread_num()] = mine;
#pragma omp for schedule(dynamic, 1)
        for (int64_t c = 0; c < n_chunks; c++) {
            /* the chunk's item: a short scan (fewer items than 4 per thread) */
            int64_t before = 0, i = 0, nc = 0;
            CpuAttnTask t;
            for (;; i++) {
                t = cpu_attn_task(r, i, qb);
                nc = (cpu_attn_lim_max(&t) + chunk - 1) / chunk;
                if (c - before < nc)
                    break;
                before += nc;
            }
            int64_t j0 = (c - before) * chunk, j1 = j0 + chunk;
            cpu_attn_dec(&t, lanes, j0, j1, mine + i * sf, scratch);
        }
        /* the barrier at the end of the loop: every state is final */
#pragma omp for schedule(static)
        for (int64_t i = 0; i < items; i++) {
            float *st[CPU_ATTN_MAX_THREADS];
            for (int k = 0; k < nth; k++)
                st[k] = states[k] + i * sf;
            CpuAttnTask t = cpu_attn_task(r, i, qb);
            cpu_attn_dec_out(&t, lanes, st, nth);
        }
        /* and the one at the end of this loop: no stack is gone while it is read */
    }
}

static void cpu_attn_run(const CpuAttnRun *r)
{
    /* rows per block: the tiled kernel's, 4 vectors on AVX-512, else 2 (cpu_kern.inc) */
    int lanes = cpu_attn_lanes(), qb = lanes == 16 ? 64 : 2 * lanes;
    int rep = r->n_heads / r->n_kv_heads;
    assert(r->hd <= CPU_ATTN_MAX_HD && r->n_heads % r->n_kv_heads == 0);
    assert(cpu_attn_scratch_bytes(r->hd) <= CPU_ATTN_SCRATCH_FLOATS * sizeof(float));
    int64_t items = 0, work = 0, keys = 0;
    int all_dec = 1;
    for (int s = 0; s < r->n_seq; s++) {
        int64_t row0, kv0, lim0;
        int n_tok;
        cpu_attn_seq(r, s, &row0, &n_tok, &kv0, &lim0);
        assert(r->seqs ? kv0 + lim0 - 1 + n_tok <= r->k->rows : row0 + n_tok <= r->k->rows);
        items += (int64_t)r->n_kv_heads * (((int64_t)n_tok * rep + qb - 1) / qb);
        work += (int64_t)n_tok * (lim0 + n_tok) * r->n_heads * r->hd;
        keys += (int64_t)r->n_kv_heads * (lim0 + n_tok);
        all_dec &= n_tok * rep <= CPU_ATTN_QMAX;
    }
    int n_threads = omp_get_max_threads();
    if (n_threads > CPU_ATTN_MAX_THREADS)
        n_threads = CPU_ATTN_MAX_THREADS;
    int64_t chunk = (keys + 8 * n_threads - 1) / (8 * n_threads);
    chunk = chunk < CPU_ATTN_CHUNK_MIN ? CPU_ATTN_CHUNK_MIN : (chunk + 15) / 16 * 16;
    size_t room = CPU_ATTN_SCRATCH_FLOATS - CPU_ATTN_DEC_FLOATS(r->hd);
    if (work > CPU_ATTN_PAR_MIN && n_threads > 1 && all_dec && items <= 4 * n_threads &&
        (size_t)items * CPU_ATTN_STATE_FLOATS(r->hd) <= room && keys > 2 * chunk) {
        cpu_attn_run_split(r, lanes, qb, items, chunk, n_threads);
        return;
    }
#pragma omp parallel if (work > CPU_ATTN_PAR_MIN)
    {
        float scratch[CPU_ATTN_SCRATCH_FLOATS] __attribute__((aligned(64)));
#pragma omp for schedule(dynamic, 1)
        for (int64_t item = 0; item < items; item++) {
            CpuAttnTask t = cpu_attn_task(r, item, qb);
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
