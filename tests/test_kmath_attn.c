/* test_kmath_attn: the CUDA attention, norm and rope kernels' arithmetic and geometry,
 * on the host (no GPU needed): the kernels' __host__ __device__ helpers (kernels/<name>_math.h,
 * kernels/attn_geom.h) compiled here by gcc, exactly as nvcc compiles them for the
 * device.
 *
 * - Geometry: the tile kernel's items, threads, rows and key tiles cover every (token,
 *   query head, key) inside the causal bounds exactly once and nothing outside; the
 *   decode kernel's splits and lane groups cover every key of a sequence once; every
 *   output column and tile key has one owner; shared memory fits every target.
 * - Emulation: kernels/attn.cu's three kernels as host loops (blocks, tiles, threads'
 *   rows, the shuffle trees' summation order) over the same helpers, against ops_ref
 *   attention and attention_seg on random data: several sequences of odd lengths, some
 *   with n_past > 0, single-token (decode) ones split over several items, GQA with rep 1,
 *   3 and 4, KV caches F32/F16/BF16, head_dim 16, 64, 72, 128, 200, 256, small item
 *   capacities so the launchers' batching runs too. Outputs are poisoned with NaN first.
 *   Tolerance: |o - ref| <= 2e-6 + 1e-5 |ref|, as the cpu kernels' (f32 sums in another
 *   order, exp2 of log2-domain scores against expf; max seen 3e-7 with q, k, v in
 *   [-1, 1]; the device's FMAs and exp2f move it by a few ulp more).
 * - Norms and rotary: the norm kernels' reduction order (strided per-thread sums, warp
 *   butterflies, warp sums in order) against ops_ref within 1e-6 + 1e-5 |ref|; the
 *   elementwise formulas and the rope index/angle math bit-equal to ops_ref on the host
 *   (the device differs only by its math library, which this test cannot run).
 * - f16/bf16 widening: all 65,536 codes bit-equal to src/half.h. */
#include "backend.h"
#include "backend_int.h"
#include "half.h"
#include "test.h"

#include "../kernels/attn_geom.h"
#include "../kernels/half_math.h"
#include "../kernels/norm_math.h"
#include "../kernels/rope_math.h"
#include "../kernels/softmax_math.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t km_rng = 7;

static float km_rand(void) /* uniform in [-1, 1) */
{
    km_rng = km_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((km_rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static Tensor km_tensor(QuantType type, int64_t rows, int64_t cols, float amp)
{
    Tensor t;
    CHECK_EQ(bk_host_alloc_typed(&ops_ref_backend, &t, type, rows, cols, NULL), 0);
    for (int64_t i = 0; i < rows * cols; i++) {
        float f = amp * km_rand();
        if (type == QUANT_F16)
            ((uint16_t *)t.data)[i] = half_f32_to_f16(f);
        else if (type == QUANT_BF16)
            ((uint16_t *)t.data)[i] = half_f32_to_bf16(f);
        else
            ((float *)t.data)[i] = f;
    }
    return t;
}

static void km_poison(Tensor *t)
{
    for (int64_t i = 0; i < t->rows * t->cols; i++)
        ((float *)t->data)[i] = NAN;
}

/* ---- f16 / bf16 ---- */

static void test_widen(void)
{
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float a = vk_f16_to_f32((uint16_t)h), b = half_f16_to_f32((uint16_t)h);
        float c = vk_bf16_to_f32((uint16_t)h), d = half_bf16_to_f32((uint16_t)h);
        bad += memcmp(&a, &b, 4) != 0 || memcmp(&c, &d, 4) != 0;
    }
    CHECK_EQ(bad, 0);
    uint16_t arr[3] = {half_f32_to_f16(1.5f), half_f32_to_bf16(-2.25f), 0};
    float f32[2] = {3.0f, -0.5f};
    CHECK(vk_dense_elem(arr, VK_T_F16, 0) == 1.5f);
    CHECK(vk_dense_elem(arr, VK_T_BF16, 1) == -2.25f);
    CHECK(vk_dense_elem(f32, VK_T_F32, 1) == -0.5f);
}

/* ---- online softmax ---- */

static void test_softmax_states(void)
{
    /* an empty state stays inert under masked blocks, then takes the first real block */
    float m = VK_NEG_INF, l = 0.0f;
    float a = vk_sm_rescale(&m, VK_NEG_INF);
    CHECK(a == 1.0f && m == VK_NEG_INF && vk_sm_p(VK_NEG_INF, m) == 0.0f);
    a = vk_sm_rescale(&m, 2.0f);
    CHECK(a == 0.0f && m == 2.0f && vk_sm_p(2.0f, m) == 1.0f && vk_sm_p(VK_NEG_INF, m) == 0.0f);
    /* merging with an empty state changes nothing; two empties stay empty */
    float a1, a2;
    l = 3.0f;
    vk_sm_merge(&m, &l, VK_NEG_INF, 0.0f, &a1, &a2);
    CHECK(m == 2.0f && l == 3.0f && a1 == 1.0f && a2 == 0.0f);
    float me = VK_NEG_INF, le = 0.0f;
    vk_sm_merge(&me, &le, VK_NEG_INF, 0.0f, &a1, &a2);
    CHECK(me == VK_NEG_INF && le == 0.0f && a1 == 1.0f && a2 == 0.0f);
    vk_sm_merge(&me, &le, m, l, &a1, &a2);
    CHECK(me == 2.0f && le == 3.0f && a1 == 0.0f && a2 == 1.0f);
    CHECK(vk_sm_out(6.0f, 3.0f) == 2.0f && vk_sm_out(1.0f, 0.0f) == 0.0f);

    /* streaming in blocks and merging split states both give softmax(s) . v */
    enum { N = 97 };
    float s[N], v[N];
    double mx = -1e30, den = 0, num = 0;
    for (int i = 0; i < N; i++) {
        s[i] = 8.0f * km_rand();
        v[i] = km_rand();
        mx = s[i] > mx ? s[i] : mx;
    }
    for (int i = 0; i < N; i++) {
        den += exp2((double)s[i] - mx);
        num += exp2((double)s[i] - mx) * v[i];
    }
    float ms[3] = {VK_NEG_INF, VK_NEG_INF, VK_NEG_INF}, ls[3] = {0}, accs[3] = {0};
    for (int i0 = 0; i0 < N; i0 += 7) { /* blocks of 7 keys, three interleaved states */
        int st = (i0 / 7) % 3;
        float bm = VK_NEG_INF;
        for (int i = i0; i < i0 + 7 && i < N; i++)
            bm = fmaxf(bm, s[i]);
        float al = vk_sm_rescale(&ms[st], bm), rs = 0.0f;
        accs[st] *= al;
        for (int i = i0; i < i0 + 7 && i < N; i++) {
            float p = vk_sm_p(s[i], ms[st]);
            rs += p;
            accs[st] += p * v[i];
        }
        ls[st] = ls[st] * al + rs;
    }
    for (int st = 1; st < 3; st++) {
        vk_sm_merge(&ms[0], &ls[0], ms[st], ls[st], &a1, &a2);
        accs[0] = accs[0] * a1 + accs[st] * a2;
    }
    CHECK(fabs(vk_sm_out(accs[0], ls[0]) - num / den) < 1e-6);
}

/* ---- geometry ---- */

/* The tile kernel over seqs: cover[(t * rep + j) * nk + key] counts how often each
 * (token, head j of the group, key) is computed unmasked; every pair inside the causal
 * bound (or the segment) must count 1 and every other 0. cap: the items per batch. */
static void km_tile_cover(const BackendSeq *seqs, int n_seq, int rep, int nj, int causal, int cap)
{
    int rq = vk_attn_rq(nj), bq = vk_attn_bq(rq), ns = VK_ATTN_BK / 8, total = 0;
    int *cover[16] = {0};
    VkAttnItem items[64];
    for (int s = 0; s < n_seq; s++) {
        int nk = causal ? seqs[s].n_past + seqs[s].n_tok : seqs[s].n_tok;
        cover[s] = calloc((size_t)(seqs[s].n_tok * rep * nk) + 1, sizeof(int));
    }
    int cs = 0, cp = 0, n;
    while ((n = vk_attn_fill(seqs, n_seq, causal, rep, bq, &cs, &cp, items, cap)) > 0) {
        CHECK(n <= cap);
        for (int it = 0; it < n; it++) {
            const BackendSeq *sq = &seqs[items[it].seq];
            int n_pairs = sq->n_tok * rep, nk = causal ? sq->n_past + sq->n_tok : sq->n_tok;
            int kend = vk_attn_block_keys(causal, sq->n_past, sq->n_tok, rep, items[it].p0, bq, nk);
            CHECK(kend <= nk && items[it].p0 < n_pairs);
            if (causal)
                CHECK(sq->n_tok != 1); /* decode sequences go to the decode kernel */
            for (int tid = 0; tid < VK_ATTN_NT; tid++)
                for (int i = 0; i < rq; i++) {
                    int row = vk_attn_srow(tid, i, rq), p = items[it].p0 + row;
                    CHECK(row < bq);
                    if (p >= n_pairs)
                        continue;
                    int t = vk_attn_pair_tok(p, rep), j = vk_attn_pair_head(p, rep, 0);
                    int lim = vk_attn_limit(causal, sq->n_past, t, nk);
                    CHECK(lim <= kend);
                    for (int k0 = 0; k0 < kend; k0 += VK_ATTN_BK)
                        for (int jj = 0; jj < ns; jj++) {
                            int key = k0 + vk_attn_skey(tid, jj);
                            if (key < lim)
                                cover[items[it].seq][(t * rep + j) * nk + key]++;
                        }
                }
        }
        total += n;
    }
    CHECK(total > 0);
    int bad = 0;
    for (int s = 0; s < n_seq; s++) {
        int nk = causal ? seqs[s].n_past + seqs[s].n_tok : seqs[s].n_tok;
        int skip = causal && seqs[s].n_tok == 1;
        for (int t = 0; t < seqs[s].n_tok; t++)
            for (int j = 0; j < rep; j++)
                for (int key = 0; key < nk; key++) {
                    int want = !skip && (!causal || key <= seqs[s].n_past + t);
                    bad += cover[s][(t * rep + j) * nk + key] != want;
                }
        free(cover[s]);
    }
    CHECK_EQ(bad, 0);
}

static void test_tile_geometry(void)
{
    /* thread ownership: per row group, the 8 lanes' keys and columns are each a partition */
    for (int nj = 1; nj <= 8; nj++) {
        if (nj != vk_attn_nj(32 * nj))
            continue;
        int rq = vk_attn_rq(nj), bq = vk_attn_bq(rq), hdp = 32 * nj;
        int rows[64] = {0};
        for (int tid = 0; tid < VK_ATTN_NT; tid++)
            for (int i = 0; i < rq; i++)
                rows[vk_attn_srow(tid, i, rq)] += (tid & 7) == 0;
        for (int r = 0; r < bq; r++)
            CHECK_EQ(rows[r], 1);
        for (int grp = 0; grp < VK_ATTN_NT; grp += 8) {
            int keys[VK_ATTN_BK] = {0}, cols[256] = {0};
            for (int lane = 0; lane < 8; lane++) {
                CHECK_EQ(vk_attn_srow(grp + lane, 0, rq), vk_attn_srow(grp, 0, rq));
                CHECK_EQ((grp + lane) / 32, grp / 32); /* the row's lanes share a warp */
                for (int j = 0; j < VK_ATTN_BK / 8; j++)
                    keys[vk_attn_skey(grp + lane, j)]++;
                for (int j = 0; j < nj; j++)
                    for (int e = 0; e < 4; e++)
                        cols[vk_attn_ocol(grp + lane, j, e)]++;
            }
            for (int k = 0; k < VK_ATTN_BK; k++)
                CHECK_EQ(keys[k], 1);
            for (int col = 0; col < hdp; col++)
                CHECK_EQ(cols[col], 1);
        }
        CHECK(vk_attn_smem(nj) <= 101376); /* sm_86 / sm_89's per-block opt-in limit */
    }
    /* every head_dim that is a multiple of 8 up to 256 has a padded kernel */
    for (int hd = 8; hd <= VK_ATTN_HD_MAX; hd += 8) {
        int nj = vk_attn_nj(hd);
        CHECK(32 * nj >= hd && (nj <= 4 || nj == 6 || nj == 8));
    }

    BackendSeq seqs[] = {
        {0, 5, 0, 0},     {5, 1, 100, 40},  {6, 37, 200, 70},   {43, 0, 400, 9},
        {43, 70, 500, 3}, {113, 1, 700, 0}, {114, 16, 800, 16}, {130, 2, 900, 1},
    };
    int n_seq = (int)(sizeof(seqs) / sizeof(seqs[0]));
    int reps[] = {1, 3, 4}, njs[] = {1, 4, 6, 8};
    for (int r = 0; r < 3; r++)
        for (int k = 0; k < 4; k++) {
            km_tile_cover(seqs, n_seq, reps[r], njs[k], 1, 64);
            km_tile_cover(seqs, n_seq, reps[r], njs[k], 1, 3);
        }
    /* segments: non-causal, every token of a segment sees all its keys */
    BackendSeq segs[] = {{0, 1, 0, 0}, {1, 39, 1, 0}, {40, 65, 40, 0}, {105, 16, 105, 0}};
    for (int k = 0; k < 4; k++)
        km_tile_cover(segs, 4, 1, njs[k], 0, 5);
}

static void test_dec_geometry(void)
{
    /* a group's lanes own each 8-column chunk of the head once */
    for (int hd = 8; hd <= VK_ATTN_HD_MAX; hd += 8) {
        int nch = vk_dec_nch(hd), chunks[64] = {0};
        for (int gl = 0; gl < VK_DEC_GL; gl++)
            for (int ci = 0; ci < nch; ci++)
                chunks[vk_dec_chunk(gl, ci)]++;
        for (int c = 0; c < hd / 8; c++)
            CHECK_EQ(chunks[c], 1);
        int rb = vk_dec_rb(nch);
        CHECK(VK_DEC_G * rb * (128 * nch + 2) * 4 <= 48 * 1024); /* static shared memory */
    }
    CHECK_EQ(VK_DEC_G * VK_DEC_GL, VK_DEC_NT);
    /* heads: the groups of rb heads cover each of rep once */
    for (int rep = 1; rep <= 9; rep++)
        for (int nch = 1; nch <= 2; nch++) {
            int rb = vk_dec_rb(nch), hg = vk_dec_hgroups(rep, rb), cnt = 0;
            for (int g = 0; g < hg; g++)
                cnt += rep - g * rb < rb ? rep - g * rb : rb;
            CHECK(cnt == rep && (hg - 1) * rb < rep);
        }

    BackendSeq seqs[] = {{0, 1, 0, 0},      {1, 1, 5000, 4999}, {2, 3, 20000, 10},
                         {5, 1, 30000, 64}, {6, 1, 40000, 65},  {7, 1, 50000, 1000}};
    int n_seq = 6;
    int sms[] = {1, 8, 132}, caps[] = {4096, 100, 25};
    for (int a = 0; a < 3; a++) {
        int cap = caps[a], ch = vk_dec_pick_chunk(seqs, n_seq, 8, sms[a], cap);
        CHECK(ch >= 64 && (ch & (ch - 1)) == 0);
        int *cover = calloc(6 * 5001, sizeof(int));
        VkDecItem items[4096];
        VkDecSeq dseqs[4096];
        int s = 0, n, nd, batches = 0, seen = 0;
        while ((n = vk_dec_fill(seqs, n_seq, ch, &s, items, cap, dseqs, &nd)) > 0) {
            batches++;
            CHECK(n <= cap && nd > 0);
            for (int d = 0; d < nd; d++) {
                const BackendSeq *sq = &seqs[dseqs[d].seq];
                CHECK(sq->n_tok == 1);
                seen++;
                int next = 0; /* the items of a sequence are its key ranges in order */
                for (int it = dseqs[d].first; it < dseqs[d].first + dseqs[d].n; it++) {
                    CHECK(items[it].seq == dseqs[d].seq && items[it].k0 == next);
                    CHECK(items[it].k1 > items[it].k0 && items[it].k1 - items[it].k0 <= ch);
                    next = items[it].k1;
                    int iters = vk_dec_iters(items[it].k0, items[it].k1);
                    for (int g = 0; g < VK_DEC_G; g++)
                        for (int i = 0; i < iters; i++) {
                            int key = vk_dec_key(items[it].k0, i, g);
                            if (key < items[it].k1)
                                cover[dseqs[d].seq * 5001 + key]++;
                        }
                }
                CHECK_EQ(next, sq->n_past + 1);
            }
        }
        CHECK_EQ(seen, 5);
        int bad = 0;
        for (int q = 0; q < n_seq; q++)
            for (int key = 0; key < 5001; key++)
                bad += cover[q * 5001 + key] != (seqs[q].n_tok == 1 && key <= seqs[q].n_past);
        CHECK_EQ(bad, 0);
        if (a == 2)
            CHECK(batches > 1); /* 25 items do not hold all 27 at ch 256 */
        free(cover);
    }
    /* a tiny item capacity doubles the chunk until the longest sequence fits */
    int ch = vk_dec_pick_chunk(seqs, n_seq, 8, 132, 2);
    CHECK(vk_dec_nsplit(seqs[1].n_past + 1, ch) <= 2);
}

/* ---- attention emulation (kernels/attn.cu on the host) ---- */

typedef struct {
    float *o;
    const float *q;
    const Tensor *k, *v;
    int64_t q_cols, kv_cols;
    int hd, rep, n_heads, causal;
    float qscale;
} KmAttn;

/* 8 lane values summed as the xor-butterfly (1, 2, 4) leaves them in every lane. */
static float km_tree8(const float *x)
{
    return ((x[0] + x[1]) + (x[2] + x[3])) + ((x[4] + x[5]) + (x[6] + x[7]));
}

/* attn_tile for one item and KV head. */
static void km_tile_block(const KmAttn *a, const BackendSeq *sq, VkAttnItem it, int kvh)
{
    int nj = vk_attn_nj(a->hd), rq = vk_attn_rq(nj), hdp = 32 * nj, bq = vk_attn_bq(rq);
    int BK = VK_ATTN_BK, ns = BK / 8;
    float *qs = calloc((size_t)bq * hdp, 4), *ks = calloc((size_t)BK * hdp, 4);
    float *vs = calloc((size_t)BK * hdp, 4), *ps = calloc((size_t)bq * BK, 4);
    float *acc = calloc((size_t)bq * hdp, 4), m[64], l[64];
    int lim[64];
    int n_pairs = sq->n_tok * a->rep, n_keys = a->causal ? sq->n_past + sq->n_tok : sq->n_tok;
    int kend = vk_attn_block_keys(a->causal, sq->n_past, sq->n_tok, a->rep, it.p0, bq, n_keys);
    for (int r = 0; r < bq; r++) {
        int p = it.p0 + r;
        m[r] = VK_NEG_INF;
        l[r] = 0.0f;
        lim[r] = p < n_pairs
                     ? vk_attn_limit(a->causal, sq->n_past, vk_attn_pair_tok(p, a->rep), n_keys)
                     : 0;
        for (int c = 0; c < hdp && p < n_pairs && c < a->hd; c++) {
            int t = vk_attn_pair_tok(p, a->rep), h = vk_attn_pair_head(p, a->rep, kvh);
            qs[r * hdp + c] =
                a->q[(int64_t)(sq->row0 + t) * a->q_cols + (int64_t)h * a->hd + c] * a->qscale;
        }
    }
    for (int k0 = 0; k0 < kend; k0 += BK) {
        for (int r = 0; r < BK; r++)
            for (int c = 0; c < hdp; c++) {
                int in = k0 + r < kend && c < a->hd;
                int64_t e = (sq->kv_row0 + k0 + r) * a->kv_cols + (int64_t)kvh * a->hd + c;
                ks[r * hdp + c] = in ? vk_dense_elem(a->k->data, (int)a->k->type, e) : 0.0f;
                vs[r * hdp + c] = in ? vk_dense_elem(a->v->data, (int)a->v->type, e) : 0.0f;
            }
        for (int grp = 0; grp < VK_ATTN_NT; grp += 8) /* a row group: 8 lanes */
            for (int i = 0; i < rq; i++) {
                int row = vk_attn_srow(grp, i, rq);
                float s[8][8], bm = VK_NEG_INF, rs[8];
                for (int lane = 0; lane < 8; lane++)
                    for (int j = 0; j < ns; j++) {
                        const float *qv = qs + row * hdp,
                                    *kv = ks + vk_attn_skey(grp + lane, j) * hdp;
                        float d = 0.0f;
                        for (int c = 0; c < a->hd; c += 4)
                            d += qv[c] * kv[c] + qv[c + 1] * kv[c + 1] + qv[c + 2] * kv[c + 2] +
                                 qv[c + 3] * kv[c + 3];
                        s[lane][j] = k0 + vk_attn_skey(grp + lane, j) >= lim[row] ? VK_NEG_INF : d;
                        bm = fmaxf(bm, s[lane][j]);
                    }
                float alpha = vk_sm_rescale(&m[row], bm);
                for (int lane = 0; lane < 8; lane++) {
                    rs[lane] = 0.0f;
                    for (int j = 0; j < ns; j++) {
                        float p = vk_sm_p(s[lane][j], m[row]);
                        ps[row * BK + vk_attn_skey(grp + lane, j)] = p;
                        rs[lane] += p;
                    }
                }
                l[row] = l[row] * alpha + km_tree8(rs);
                for (int c = 0; c < hdp; c++)
                    acc[row * hdp + c] *= alpha;
            }
        int kn = kend - k0 < BK ? kend - k0 : BK;
        for (int row = 0; row < bq; row++)
            for (int kk = 0; kk < kn; kk++)
                for (int c = 0; c < hdp; c++)
                    acc[row * hdp + c] += ps[row * BK + kk] * vs[kk * hdp + c];
    }
    for (int r = 0; r < bq; r++) {
        int p = it.p0 + r;
        if (p >= n_pairs)
            continue;
        int t = vk_attn_pair_tok(p, a->rep), h = vk_attn_pair_head(p, a->rep, kvh);
        for (int c = 0; c < a->hd; c++)
            a->o[(int64_t)(sq->row0 + t) * a->q_cols + (int64_t)h * a->hd + c] =
                vk_sm_out(acc[r * hdp + c], l[r]);
    }
    free(qs), free(ks), free(vs), free(ps), free(acc);
}

/* attn_dec for one item (index it_idx) and blockIdx.y = by; part as c->work. */
static void km_dec_block(const KmAttn *a, const BackendSeq *sq, VkDecItem it, int it_idx, int by,
                         float *part)
{
    int nch = vk_dec_nch(a->hd), rb = vk_dec_rb(nch), hgroups = vk_dec_hgroups(a->rep, rb);
    int hg = by % hgroups, kvh = by / hgroups, h0 = kvh * a->rep + hg * rb;
    int nh = a->rep - hg * rb < rb ? a->rep - hg * rb : rb, hd = a->hd;
    float gm[VK_DEC_G], gls[VK_DEC_G], *gacc = calloc((size_t)VK_DEC_G * hd, 4);
    for (int r = 0; r < nh; r++) {
        const float *qrow = a->q + (int64_t)sq->row0 * a->q_cols + (int64_t)(h0 + r) * hd;
        for (int g = 0; g < VK_DEC_G; g++) {
            float m = VK_NEG_INF, l = 0.0f, *acc = gacc + g * hd;
            memset(acc, 0, (size_t)hd * 4);
            for (int i = 0; i < vk_dec_iters(it.k0, it.k1); i++) {
                int key = vk_dec_key(it.k0, i, g), ok = key < it.k1;
                int64_t base = (sq->kv_row0 + key) * a->kv_cols + (int64_t)kvh * hd;
                float lanes[VK_DEC_GL], w[8];
                for (int gl = 0; gl < VK_DEC_GL; gl++) {
                    lanes[gl] = 0.0f;
                    for (int ci = 0; ci < nch; ci++) {
                        int col = 8 * vk_dec_chunk(gl, ci);
                        for (int e = 0; e < 8 && ok && col < hd; e++)
                            lanes[gl] += qrow[col + e] * a->qscale *
                                         vk_dense_elem(a->k->data, (int)a->k->type, base + col + e);
                    }
                }
                for (int x = 0; x < 8; x++) /* xor 8, then the 8-lane butterfly */
                    w[x] = lanes[x] + lanes[x + 8];
                float sc = ok ? km_tree8(w) : VK_NEG_INF;
                float alpha = vk_sm_rescale(&m, sc), p = vk_sm_p(sc, m);
                l = l * alpha + p;
                for (int c = 0; c < hd; c++)
                    acc[c] = acc[c] * alpha +
                             p * (ok ? vk_dense_elem(a->v->data, (int)a->v->type, base + c) : 0.0f);
            }
            gm[g] = m;
            gls[g] = l;
        }
        float *pp = part + ((int64_t)it_idx * a->n_heads + h0 + r) * (hd + 2);
        for (int d = 0; d < hd; d++) {
            float mm = gm[0], ll = gls[0], aa = gacc[d];
            for (int g = 1; g < VK_DEC_G; g++) {
                float a1, a2;
                vk_sm_merge(&mm, &ll, gm[g], gls[g], &a1, &a2);
                aa = aa * a1 + gacc[g * hd + d] * a2;
            }
            if (d == 0)
                pp[0] = mm, pp[1] = ll;
            pp[2 + d] = aa;
        }
    }
    free(gacc);
}

/* vk_attention's launches on the host: tile items in batches of tile_cap, decode items
 * in batches of dec_cap with the chunk picked for n_sm multiprocessors. */
static void km_attention(const KmAttn *a, const BackendSeq *seqs, int n_seq, int n_kv_heads,
                         int tile_cap, int dec_cap, int n_sm)
{
    int bq = vk_attn_bq(vk_attn_rq(vk_attn_nj(a->hd)));
    VkAttnItem *items = malloc(sizeof(VkAttnItem) * (size_t)tile_cap);
    int s = 0, p = 0, n;
    while ((n = vk_attn_fill(seqs, n_seq, a->causal, a->rep, bq, &s, &p, items, tile_cap)) > 0)
        for (int b = 0; b < n; b++)
            for (int kvh = 0; kvh < n_kv_heads; kvh++)
                km_tile_block(a, &seqs[items[b].seq], items[b], kvh);
    free(items);
    if (!a->causal)
        return;
    int hgroups = vk_dec_hgroups(a->rep, vk_dec_rb(vk_dec_nch(a->hd)));
    int ch = vk_dec_pick_chunk(seqs, n_seq, n_kv_heads * hgroups, n_sm, dec_cap);
    VkDecItem *ditems = malloc(sizeof(VkDecItem) * (size_t)dec_cap);
    VkDecSeq *dseqs = malloc(sizeof(VkDecSeq) * (size_t)dec_cap);
    float *part = malloc((size_t)dec_cap * (size_t)a->n_heads * (size_t)(a->hd + 2) * 4);
    int nd;
    s = 0;
    while ((n = vk_dec_fill(seqs, n_seq, ch, &s, ditems, dec_cap, dseqs, &nd)) > 0) {
        for (int i = 0; i < (int)((size_t)n * (size_t)a->n_heads * (size_t)(a->hd + 2)); i++)
            part[i] = NAN; /* every partial read must have been written */
        for (int b = 0; b < n; b++)
            for (int by = 0; by < n_kv_heads * hgroups; by++)
                km_dec_block(a, &seqs[ditems[b].seq], ditems[b], b, by, part);
        for (int d = 0; d < nd; d++) /* attn_combine */
            for (int h = 0; h < a->n_heads; h++)
                for (int c = 0; c < a->hd; c++) {
                    float mm = VK_NEG_INF, ll = 0.0f, aa = 0.0f;
                    for (int it = dseqs[d].first; it < dseqs[d].first + dseqs[d].n; it++) {
                        const float *pp = part + ((int64_t)it * a->n_heads + h) * (a->hd + 2);
                        float a1, a2;
                        vk_sm_merge(&mm, &ll, pp[0], pp[1], &a1, &a2);
                        aa = aa * a1 + pp[2 + c] * a2;
                    }
                    a->o[(int64_t)seqs[dseqs[d].seq].row0 * a->q_cols + (int64_t)h * a->hd + c] =
                        vk_sm_out(aa, ll);
                }
    }
    free(ditems), free(dseqs), free(part);
}

static const BackendSeq km_seqs[] = {
    /* row0, n_tok, kv_row0, n_past */
    {0, 5, 0, 0},      /* prefill from empty */
    {5, 1, 64, 300},   /* decode, long: several splits */
    {6, 37, 400, 70},  /* chunked prefill with a past */
    {43, 1, 520, 0},   /* decode of the first token */
    {44, 0, 530, 5},   /* nothing new */
    {44, 70, 600, 3},  /* several query tiles */
    {114, 1, 700, 64}, /* decode, exactly one chunk of 64 plus one */
    {115, 2, 800, 33}, /* two tokens: the tile kernel */
};
#define KM_NSEQ 8
#define KM_ROWS 117
#define KM_KVROWS 900

static void km_attention_case(int hd, int n_heads, int n_kv, QuantType kt, int tile_cap,
                              int dec_cap, int n_sm)
{
    Tensor q = km_tensor(QUANT_F32, KM_ROWS, (int64_t)n_heads * hd, 1.0f);
    Tensor kc = km_tensor(kt, KM_KVROWS, (int64_t)n_kv * hd, 1.0f);
    Tensor vc = km_tensor(kt, KM_KVROWS, (int64_t)n_kv * hd, 1.0f);
    Tensor want = km_tensor(QUANT_F32, KM_ROWS, q.cols, 0.0f);
    Tensor got = km_tensor(QUANT_F32, KM_ROWS, q.cols, 0.0f);
    float scale = 1.0f / sqrtf((float)hd);
    /* rows no sequence writes (none here: the sequences tile 0 .. KM_ROWS) stay NaN in both */
    km_poison(&want);
    km_poison(&got);
    ops_ref_backend.attention(NULL, &want, &q, &kc, &vc, km_seqs, KM_NSEQ, n_heads, n_kv, scale);
    KmAttn a = {
        got.data,           q.data, &kc, &vc, q.cols, kc.cols, hd, n_heads / n_kv, n_heads, 1,
        vk_sm_qscale(scale)};
    km_attention(&a, km_seqs, KM_NSEQ, n_kv, tile_cap, dec_cap, n_sm);
    char what[96];
    snprintf(what, sizeof(what), "attention hd %d heads %d/%d kv type %d", hd, n_heads, n_kv,
             (int)kt);
    if (!test_check_tensor(__FILE__, __LINE__, what, got.data, want.data,
                           (size_t)(KM_ROWS * q.cols), 2e-6f, 1e-5f))
        fprintf(stderr, "    (case above: %s)\n", what);
    bk_host_release(NULL, &q), bk_host_release(NULL, &kc), bk_host_release(NULL, &vc);
    bk_host_release(NULL, &want), bk_host_release(NULL, &got);
}

static void test_attention_emulated(void)
{
    QuantType types[] = {QUANT_F32, QUANT_F16, QUANT_BF16};
    for (int t = 0; t < 3; t++) {
        km_attention_case(128, 8, 2, types[t], 4096, 4096, 132); /* text: rep 4, splits of 64 */
        km_attention_case(16, 4, 2, types[t], 3, 7, 1);          /* tiny: small batches */
        km_attention_case(72, 6, 2, types[t], 4096, 4096, 16);   /* rep 3, padded to 96 */
    }
    km_attention_case(256, 4, 4, QUANT_F16, 5, 4096, 132);   /* rep 1, 2 chunks per lane */
    km_attention_case(200, 6, 1, QUANT_BF16, 4096, 4096, 8); /* rep 6 over heads groups of 2 */
    km_attention_case(64, 2, 2, QUANT_F16, 4096, 4096, 132);
}

static void km_seg_case(int hd, int n_heads, int tile_cap)
{
    int32_t cu[] = {0, 1, 40, 41, 130, 146};
    int n_seg = 5, rows = cu[n_seg];
    Tensor q = km_tensor(QUANT_F32, rows, (int64_t)n_heads * hd, 1.0f);
    Tensor k = km_tensor(QUANT_F32, rows, q.cols, 1.0f);
    Tensor v = km_tensor(QUANT_F32, rows, q.cols, 1.0f);
    Tensor want = km_tensor(QUANT_F32, rows, q.cols, 0.0f);
    Tensor got = km_tensor(QUANT_F32, rows, q.cols, 0.0f);
    float scale = 1.0f / sqrtf((float)hd);
    km_poison(&want);
    km_poison(&got);
    ops_ref_backend.attention_seg(NULL, &want, &q, &k, &v, cu, n_seg, n_heads, scale);
    /* vk_attention_seg: segments as sequences without a past */
    BackendSeq segs[5];
    for (int s = 0; s < n_seg; s++)
        segs[s] = (BackendSeq){cu[s], cu[s + 1] - cu[s], cu[s], 0};
    KmAttn a = {got.data, q.data, &k, &v, q.cols, k.cols, hd, 1, n_heads, 0, vk_sm_qscale(scale)};
    km_attention(&a, segs, n_seg, n_heads, tile_cap, 1, 1);
    CHECK_TENSOR((const float *)got.data, (const float *)want.data, (size_t)(rows * q.cols), 2e-6f,
                 1e-5f);
    bk_host_release(NULL, &q), bk_host_release(NULL, &k), bk_host_release(NULL, &v);
    bk_host_release(NULL, &want), bk_host_release(NULL, &got);
}

static void test_attention_seg_emulated(void)
{
    km_seg_case(64, 3, 4096); /* Qwen3-VL-4B vision */
    km_seg_case(72, 2, 2);    /* 8B vision, small batches */
    km_seg_case(16, 4, 4096); /* tiny */
}

/* ---- norms and elementwise ---- */

/* vk_block_sum's order: thread t sums c = t, t + 256, ...; a warp butterfly (16, 8, 4, 2,
 * 1); the 8 warp sums in order. */
static float km_block_sum(const float *x, int64_t n, int square, float sub)
{
    float th[256];
    for (int t = 0; t < 256; t++) {
        th[t] = 0.0f;
        for (int64_t c = t; c < n; c += 256) {
            float d = x[c] - sub;
            th[t] += square ? d * d : x[c];
        }
    }
    float tot = 0.0f;
    for (int w = 0; w < 8; w++) {
        float v[32], nv[32];
        memcpy(v, th + 32 * w, sizeof(v));
        for (int off = 16; off > 0; off >>= 1) {
            for (int lane = 0; lane < 32; lane++)
                nv[lane] = v[lane] + v[lane ^ off];
            memcpy(v, nv, sizeof(v));
        }
        tot = w == 0 ? v[0] : tot + v[0];
    }
    return tot;
}

static void test_norm_emulated(void)
{
    int64_t widths[] = {64, 1000, 2560};
    QuantType wts[] = {QUANT_F32, QUANT_F16, QUANT_BF16};
    for (int wi = 0; wi < 3; wi++)
        for (int ti = 0; ti < 3; ti++) {
            int64_t n = widths[wi], rows = 3;
            Tensor x = km_tensor(QUANT_F32, rows, n, 2.0f), w = km_tensor(wts[ti], 1, n, 1.0f);
            Tensor b = km_tensor(wts[ti], 1, n, 1.0f);
            Tensor want = km_tensor(QUANT_F32, rows, n, 0.0f),
                   got = km_tensor(QUANT_F32, rows, n, 0.0f);
            ops_ref_backend.rmsnorm(NULL, &want, &x, &w, 1e-6f);
            for (int64_t r = 0; r < rows; r++) {
                const float *xr = (const float *)x.data + r * n;
                float inv = vk_rms_inv(km_block_sum(xr, n, 1, 0.0f), n, 1e-6f);
                for (int64_t c = 0; c < n; c++)
                    ((float *)got.data)[r * n + c] =
                        vk_rms_out(xr[c], inv, vk_dense_elem(w.data, (int)w.type, c));
            }
            CHECK_TENSOR((const float *)got.data, (const float *)want.data, (size_t)(rows * n),
                         1e-6f, 1e-5f);
            ops_ref_backend.layernorm(NULL, &want, &x, &w, &b, 1e-6f);
            for (int64_t r = 0; r < rows; r++) {
                const float *xr = (const float *)x.data + r * n;
                float mean = vk_ln_mean(km_block_sum(xr, n, 0, 0.0f), n);
                float inv = vk_ln_inv(km_block_sum(xr, n, 1, mean), n, 1e-6f);
                for (int64_t c = 0; c < n; c++)
                    ((float *)got.data)[r * n + c] =
                        vk_ln_out(xr[c], mean, inv, vk_dense_elem(w.data, (int)w.type, c),
                                  vk_dense_elem(b.data, (int)b.type, c));
            }
            CHECK_TENSOR((const float *)got.data, (const float *)want.data, (size_t)(rows * n),
                         1e-5f, 1e-5f);
            bk_host_release(NULL, &x), bk_host_release(NULL, &w), bk_host_release(NULL, &b);
            bk_host_release(NULL, &want), bk_host_release(NULL, &got);
        }

    /* the elementwise formulas are ops_ref's, bit for bit (same libm here) */
    enum { N = 4099 };
    Tensor g = km_tensor(QUANT_F32, 1, N, 12.0f), u = km_tensor(QUANT_F32, 1, N, 3.0f);
    Tensor y = km_tensor(QUANT_F32, 1, N, 0.0f), t1 = km_tensor(QUANT_F32, 1, N, 0.0f);
    int bad = 0;
    ops_ref_backend.swiglu(NULL, &y, &g, &u);
    for (int i = 0; i < N; i++)
        bad += vk_swiglu(((float *)g.data)[i], ((float *)u.data)[i]) != ((float *)y.data)[i];
    memcpy(t1.data, g.data, N * 4);
    ops_ref_backend.gelu_tanh(NULL, &t1);
    for (int i = 0; i < N; i++)
        bad += vk_gelu_tanh(((float *)g.data)[i]) != ((float *)t1.data)[i];
    memcpy(t1.data, g.data, N * 4);
    ops_ref_backend.gelu_erf(NULL, &t1);
    for (int i = 0; i < N; i++)
        bad += vk_gelu_erf(((float *)g.data)[i]) != ((float *)t1.data)[i];
    CHECK_EQ(bad, 0);
    bk_host_release(NULL, &g), bk_host_release(NULL, &u), bk_host_release(NULL, &y);
    bk_host_release(NULL, &t1);
}

/* ---- rotary ---- */

/* rope_rows on the host: mode 0 mrope (pos [3][n]), 1 rope2d (pos [n][2]). */
static void km_rope(Tensor *x, const int32_t *pos, int n_heads, int mode, const int sec[3],
                    float theta)
{
    int hd = (int)(x->cols / n_heads), half = hd / 2, quarter = hd / 4;
    float inv[512], cs[512], sn[512];
    int ninv = mode == 0 ? half : quarter;
    for (int j = 0; j < ninv; j++) /* on the launcher's host */
        inv[j] = vk_rope_inv_freq(theta, j, mode == 0 ? hd : half);
    for (int64_t row = 0; row < x->rows; row++) {
        for (int j = 0; j < half; j++) {
            float ang =
                mode == 0
                    ? vk_rope_angle(pos[vk_mrope_axis(j, sec[1], sec[2]) * x->rows + row], inv[j])
                    : vk_rope_angle(pos[row * 2 + vk_rope2d_axis(j, quarter)],
                                    inv[vk_rope2d_freq(j, quarter)]);
            cs[j] = cosf(ang);
            sn[j] = sinf(ang);
        }
        float *xr = (float *)x->data + row * x->cols;
        for (int idx = 0; idx < n_heads * half; idx++) {
            int h = idx / half, d = idx % half;
            vk_rope_rotate(&xr[h * hd + d], &xr[h * hd + d + half], cs[d], sn[d]);
        }
    }
}

static void test_rope_emulated(void)
{
    struct {
        int hd, heads, sec[3];
        float theta;
    } mc[] = {{128, 3, {24, 20, 20}, 5e6f}, {16, 4, {4, 2, 2}, 5e6f}, {8, 2, {16, 8, 8}, 1e4f}};
    int n = 37;
    int32_t pos[3 * 37], pos2[2 * 37];
    for (int i = 0; i < 3 * n; i++)
        pos[i] = (int32_t)((km_rand() + 1.0f) * 9000.0f);
    for (int i = 0; i < 2 * n; i++)
        pos2[i] = (int32_t)((km_rand() + 1.0f) * 64.0f);
    for (int c = 0; c < 3; c++) {
        Tensor x = km_tensor(QUANT_F32, n, (int64_t)mc[c].hd * mc[c].heads, 1.0f);
        Tensor y = km_tensor(QUANT_F32, n, x.cols, 0.0f);
        memcpy(y.data, x.data, (size_t)(n * x.cols) * 4);
        ops_ref_backend.mrope(NULL, &x, pos, mc[c].heads, mc[c].sec, mc[c].theta);
        km_rope(&y, pos, mc[c].heads, 0, mc[c].sec, mc[c].theta);
        CHECK(memcmp(x.data, y.data, (size_t)(n * x.cols) * 4) == 0);
        bk_host_release(NULL, &x), bk_host_release(NULL, &y);
    }
    int hds[] = {64, 72, 16};
    for (int c = 0; c < 3; c++) {
        Tensor x = km_tensor(QUANT_F32, n, (int64_t)hds[c] * 3, 1.0f);
        Tensor y = km_tensor(QUANT_F32, n, x.cols, 0.0f);
        memcpy(y.data, x.data, (size_t)(n * x.cols) * 4);
        ops_ref_backend.rope2d(NULL, &x, pos2, 3, 10000.0f);
        km_rope(&y, pos2, 3, 1, NULL, 10000.0f);
        CHECK(memcmp(x.data, y.data, (size_t)(n * x.cols) * 4) == 0);
        bk_host_release(NULL, &x), bk_host_release(NULL, &y);
    }
    /* the interleaved section rule at its edges: [24, 20, 20] over 64 frequencies */
    CHECK_EQ(vk_mrope_axis(0, 20, 20), 0);
    CHECK_EQ(vk_mrope_axis(1, 20, 20), 1);
    CHECK_EQ(vk_mrope_axis(2, 20, 20), 2);
    CHECK_EQ(vk_mrope_axis(58, 20, 20), 1);
    CHECK_EQ(vk_mrope_axis(59, 20, 20), 2);
    CHECK_EQ(vk_mrope_axis(61, 20, 20), 0); /* 61 % 3 == 1 but 61 >= 60 */
    CHECK_EQ(vk_mrope_axis(62, 20, 20), 0);
}

TEST_GROUP(kmath_attn, {"widen", test_widen, 0}, {"softmax_states", test_softmax_states, 0},
           {"tile_geometry", test_tile_geometry, 0}, {"dec_geometry", test_dec_geometry, 0},
           {"attention_emulated", test_attention_emulated, 300},
           {"attention_seg_emulated", test_attention_seg_emulated, 0},
           {"norm_emulated", test_norm_emulated, 0}, {"rope_emulated", test_rope_emulated, 0})
