/* attn: the attention kernels of the CUDA backend (vk.h: vk_attention, vk_attention_seg).
 *
 * Three kernels, their geometry in attn_geom.h and their arithmetic (the online softmax)
 * in softmax_math.h, both shared with tests/test_kmath_attn.c, which runs the same
 * algorithm on the host against ops_ref:
 * - attn_tile: flash attention for prefill rows and vision segments. A block holds bq
 *   query rows (token, query head) of one sequence and one KV head in shared memory,
 *   walks the keys in tiles of 32 (K and V widened to f32 once per tile), keeps each
 *   row's (max, sum, acc) in registers and never holds more scores than one tile.
 *   FFMA in f32 (no tensor cores: the f32 result must match ops_ref to ~1e-6).
 * - attn_dec: split-key decode for sequences with one new token: a block takes a key
 *   range of one sequence and the query heads of one KV head (each K/V row read once
 *   for all of them), and leaves a partial (max, sum, acc) per head in c->work.
 * - attn_combine: merges a sequence's partials and writes its output row.
 * Sequences with one new token go to the decode kernels, all others to attn_tile, each
 * kind in one launch per batch of work items (batches only when the item list or the
 * workspace would overflow).
 *
 * Requirements (checked; a violation is noted as an error, nothing runs): head_dim a
 * multiple of 8, at most 256; n_heads a multiple of n_kv_heads; K and V caches of one
 * type, F32, F16 or BF16; rows of q, o, k, v 16-byte aligned (cudaMalloc'd tensors and
 * their row views are). Host arrays (the sequences, the items) go through vk_stage,
 * whose copy is complete when it returns (the stack arrays here are reused after). */
#include "vk.h"

#include "attn_geom.h"
#include "half_math.h"
#include "softmax_math.h"

/* Items per launch: the host lists live on the launcher's stack. */
#define VK_ATTN_ITEM_CAP 4096
#define VK_ATTN_SEG_CAP 1024

namespace
{

/* ---- loads ---- */

/* 8 consecutive elements of a dense array of type KT from element e (a multiple of 8,
 * so 16-byte aligned with an aligned base), widened to f32 exactly. */
template <int KT> __device__ __forceinline__ void vk_load8(const void *base, int64_t e, float *f);

template <>
__device__ __forceinline__ void vk_load8<VK_T_F32>(const void *base, int64_t e, float *f)
{
    const float4 *p = (const float4 *)((const float *)base + e);
    float4 a = p[0], b = p[1];
    f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w;
    f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
}

__device__ __forceinline__ void vk_unpack8(uint4 u, float *f, int bf16)
{
    uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        uint16_t lo = (uint16_t)(w[i] & 0xffffu), hi = (uint16_t)(w[i] >> 16);
        f[2 * i] = bf16 ? vk_bf16_to_f32(lo) : vk_f16_to_f32(lo);
        f[2 * i + 1] = bf16 ? vk_bf16_to_f32(hi) : vk_f16_to_f32(hi);
    }
}

template <>
__device__ __forceinline__ void vk_load8<VK_T_F16>(const void *base, int64_t e, float *f)
{
    vk_unpack8(*(const uint4 *)((const uint16_t *)base + e), f, 0);
}

template <>
__device__ __forceinline__ void vk_load8<VK_T_BF16>(const void *base, int64_t e, float *f)
{
    vk_unpack8(*(const uint4 *)((const uint16_t *)base + e), f, 1);
}

__device__ __forceinline__ float vk_warp_max8(float x)
{
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
    return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 4));
}

__device__ __forceinline__ float vk_warp_sum8(float x)
{
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    x += __shfl_xor_sync(0xffffffffu, x, 2);
    return x + __shfl_xor_sync(0xffffffffu, x, 4);
}

__device__ __forceinline__ float vk_warp_sum16(float x)
{
    return vk_warp_sum8(x + __shfl_xor_sync(0xffffffffu, x, 8));
}

/* ---- attn_tile ---- */

struct TileArgs {
    float *o;
    const float *q;
    const void *k, *v;
    int64_t q_cols;  /* row stride of q and o (n_heads * hd) */
    int64_t kv_cols; /* row stride of k and v (n_kv_heads * hd) */
    int hd, rep, causal;
    float qscale; /* scale * log2(e) */
    const BackendSeq *seqs;
    const VkAttnItem *items;
};

/* Reference: ops_ref attention (causal, over the KV cache) and attention_seg (within a
 * segment), both through ref_attend. Tolerance: |o - ref| <= 2e-6 + 1e-5 |ref| (f32
 * sums in another order, exp2f on pre-scaled scores; tests/test_kmath_attn.c).
 * Launch: grid (items, kv heads), VK_ATTN_NT threads, vk_attn_smem(NJ) bytes of dynamic
 * shared memory; item = 16 * RQ query rows (token, head) of one sequence. */
template <int NJ, int KT> __global__ void __launch_bounds__(VK_ATTN_NT) attn_tile(TileArgs a)
{
    /* as vk_attn_ld and vk_attn_bq */
    constexpr int RQ = VK_ATTN_RQ(NJ), HDP = 32 * NJ, LD = HDP + 4, BQ = 16 * RQ;
    constexpr int BK = VK_ATTN_BK, PLD = BK + 1, NS = BK / 8;
    extern __shared__ float4 vk_smem4[];
    float *qs = (float *)vk_smem4, *ks = qs + BQ * LD, *vs = ks + BK * LD, *ps = vs + BK * LD;

    const int tid = threadIdx.x, kvh = blockIdx.y;
    const VkAttnItem it = a.items[blockIdx.x];
    const BackendSeq sq = a.seqs[it.seq];
    const int n_pairs = sq.n_tok * a.rep;
    const int n_keys = a.causal ? sq.n_past + sq.n_tok : sq.n_tok;
    const int kend = vk_attn_block_keys(a.causal, sq.n_past, sq.n_tok, a.rep, it.p0, BQ, n_keys);

    /* Q tile, scaled into the log2 domain, zero past hd and past the last pair */
    for (int idx = tid; idx < BQ * (HDP / 4); idx += VK_ATTN_NT) {
        int r = idx / (HDP / 4), col = idx % (HDP / 4) * 4, p = it.p0 + r;
        float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (p < n_pairs && col < a.hd) {
            int t = vk_attn_pair_tok(p, a.rep), h = vk_attn_pair_head(p, a.rep, kvh);
            x = *(const float4 *)(a.q + (int64_t)(sq.row0 + t) * a.q_cols + (int64_t)h * a.hd +
                                  col);
            x.x *= a.qscale, x.y *= a.qscale, x.z *= a.qscale, x.w *= a.qscale;
        }
        *(float4 *)(qs + r * LD + col) = x;
    }

    int lim[RQ];
    float m[RQ], l[RQ], acc[RQ][NJ][4];
#pragma unroll
    for (int i = 0; i < RQ; i++) {
        int p = it.p0 + vk_attn_srow(tid, i, RQ);
        lim[i] = p < n_pairs
                     ? vk_attn_limit(a.causal, sq.n_past, vk_attn_pair_tok(p, a.rep), n_keys)
                     : 0; /* a row past the end sees no key */
        m[i] = VK_NEG_INF;
        l[i] = 0.0f;
#pragma unroll
        for (int j = 0; j < NJ; j++)
            acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.0f;
    }

    for (int k0 = 0; k0 < kend; k0 += BK) {
        __syncthreads(); /* the last tile's K, V and P reads are done (and Q is stored) */
        for (int idx = tid; idx < BK * (HDP / 8); idx += VK_ATTN_NT) {
            int r = idx / (HDP / 8), col = idx % (HDP / 8) * 8;
            float kf[8] = {0, 0, 0, 0, 0, 0, 0, 0}, vf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            if (k0 + r < kend && col < a.hd) { /* zeros elsewhere: p * 0, never p * garbage */
                int64_t e = (sq.kv_row0 + k0 + r) * a.kv_cols + (int64_t)kvh * a.hd + col;
                vk_load8<KT>(a.k, e, kf);
                vk_load8<KT>(a.v, e, vf);
            }
            *(float4 *)(ks + r * LD + col) = make_float4(kf[0], kf[1], kf[2], kf[3]);
            *(float4 *)(ks + r * LD + col + 4) = make_float4(kf[4], kf[5], kf[6], kf[7]);
            *(float4 *)(vs + r * LD + col) = make_float4(vf[0], vf[1], vf[2], vf[3]);
            *(float4 *)(vs + r * LD + col + 4) = make_float4(vf[4], vf[5], vf[6], vf[7]);
        }
        __syncthreads();

        /* S = Q K^T for the thread's rows and keys */
        float s[RQ][NS];
#pragma unroll
        for (int i = 0; i < RQ; i++)
#pragma unroll
            for (int j = 0; j < NS; j++)
                s[i][j] = 0.0f;
#pragma unroll 2
        for (int d = 0; d < a.hd; d += 4) {
            float4 qv[RQ], kv[NS];
#pragma unroll
            for (int i = 0; i < RQ; i++)
                qv[i] = *(const float4 *)(qs + vk_attn_srow(tid, i, RQ) * LD + d);
#pragma unroll
            for (int j = 0; j < NS; j++)
                kv[j] = *(const float4 *)(ks + vk_attn_skey(tid, j) * LD + d);
#pragma unroll
            for (int i = 0; i < RQ; i++)
#pragma unroll
                for (int j = 0; j < NS; j++)
                    s[i][j] += qv[i].x * kv[j].x + qv[i].y * kv[j].y + qv[i].z * kv[j].z +
                               qv[i].w * kv[j].w;
        }

        /* online softmax per row: the row's 8 lanes share max and sum by shuffles */
#pragma unroll
        for (int i = 0; i < RQ; i++) {
            float bm = VK_NEG_INF;
#pragma unroll
            for (int j = 0; j < NS; j++) {
                if (k0 + vk_attn_skey(tid, j) >= lim[i])
                    s[i][j] = VK_NEG_INF;
                bm = fmaxf(bm, s[i][j]);
            }
            bm = vk_warp_max8(bm);
            float alpha = vk_sm_rescale(&m[i], bm), rs = 0.0f;
            float *prow = ps + vk_attn_srow(tid, i, RQ) * PLD;
#pragma unroll
            for (int j = 0; j < NS; j++) {
                float p = vk_sm_p(s[i][j], m[i]);
                prow[vk_attn_skey(tid, j)] = p;
                rs += p;
            }
            l[i] = l[i] * alpha + vk_warp_sum8(rs);
#pragma unroll
            for (int j = 0; j < NJ; j++)
                acc[i][j][0] *= alpha, acc[i][j][1] *= alpha, acc[i][j][2] *= alpha,
                    acc[i][j][3] *= alpha;
        }
        __syncwarp(); /* a row's P is written and read by its own 8 lanes of this warp */

        /* O += P V */
        int kn = kend - k0 < BK ? kend - k0 : BK;
        for (int kk = 0; kk < kn; kk++) {
            float pv[RQ];
#pragma unroll
            for (int i = 0; i < RQ; i++)
                pv[i] = ps[vk_attn_srow(tid, i, RQ) * PLD + kk];
#pragma unroll
            for (int j = 0; j < NJ; j++) {
                float4 v4 = *(const float4 *)(vs + kk * LD + vk_attn_ocol(tid, j, 0));
#pragma unroll
                for (int i = 0; i < RQ; i++) {
                    acc[i][j][0] += pv[i] * v4.x;
                    acc[i][j][1] += pv[i] * v4.y;
                    acc[i][j][2] += pv[i] * v4.z;
                    acc[i][j][3] += pv[i] * v4.w;
                }
            }
        }
    }

#pragma unroll
    for (int i = 0; i < RQ; i++) {
        int p = it.p0 + vk_attn_srow(tid, i, RQ);
        if (p >= n_pairs)
            continue;
        int t = vk_attn_pair_tok(p, a.rep), h = vk_attn_pair_head(p, a.rep, kvh);
        float *orow = a.o + (int64_t)(sq.row0 + t) * a.q_cols + (int64_t)h * a.hd;
#pragma unroll
        for (int j = 0; j < NJ; j++) {
            int col = vk_attn_ocol(tid, j, 0);
            if (col < a.hd) /* hd % 8 == 0: the 4 columns are all in or all out */
                *(float4 *)(orow + col) =
                    make_float4(vk_sm_out(acc[i][j][0], l[i]), vk_sm_out(acc[i][j][1], l[i]),
                                vk_sm_out(acc[i][j][2], l[i]), vk_sm_out(acc[i][j][3], l[i]));
        }
    }
}

/* ---- attn_dec and attn_combine ---- */

struct DecArgs {
    const float *q;
    const void *k, *v;
    float *part; /* c->work: per item and head, m, l, acc[hd] */
    int64_t q_cols, kv_cols;
    int hd, rep, n_heads;
    float qscale;
    const BackendSeq *seqs;
    const VkDecItem *items;
};

/* Reference: ops_ref attention for a sequence with one new token (ref_attend over its
 * n_past + 1 cache rows). Tolerance as attn_tile. Launch: grid (items, n_kv_heads *
 * vk_dec_hgroups(rep, RB)), VK_DEC_NT threads, static shared memory 8 * RB * (128 * NCH
 * + 2) floats; item = keys [k0, k1) of one sequence; writes the partial state of each
 * of its heads (the combine kernel finishes them). */
template <int NCH, int KT> __global__ void __launch_bounds__(VK_DEC_NT) attn_dec(DecArgs a)
{
    constexpr int RB = VK_DEC_RB(NCH), HDP = 128 * NCH;
    static_assert(VK_DEC_G * VK_DEC_GL == VK_DEC_NT, "groups x lanes = threads");
    __shared__ float sm_m[VK_DEC_G][RB], sm_l[VK_DEC_G][RB];
    __shared__ float sm_acc[VK_DEC_G][RB][HDP];

    const int tid = threadIdx.x, g = tid / VK_DEC_GL, gl = tid % VK_DEC_GL;
    const VkDecItem it = a.items[blockIdx.x];
    const BackendSeq sq = a.seqs[it.seq];
    const int hgroups = vk_dec_hgroups(a.rep, RB), hg = blockIdx.y % hgroups;
    const int kvh = blockIdx.y / hgroups, h0 = kvh * a.rep + hg * RB;
    const int nh = a.rep - hg * RB < RB ? a.rep - hg * RB : RB;

    float q[RB][NCH][8], m[RB], l[RB], acc[RB][NCH][8];
#pragma unroll
    for (int r = 0; r < RB; r++) {
        m[r] = VK_NEG_INF;
        l[r] = 0.0f;
#pragma unroll
        for (int ci = 0; ci < NCH; ci++) {
            int col = 8 * vk_dec_chunk(gl, ci);
#pragma unroll
            for (int e = 0; e < 8; e++)
                q[r][ci][e] = acc[r][ci][e] = 0.0f;
            if (r < nh && col < a.hd) {
                vk_load8<VK_T_F32>(
                    a.q, (int64_t)sq.row0 * a.q_cols + (int64_t)(h0 + r) * a.hd + col, q[r][ci]);
#pragma unroll
                for (int e = 0; e < 8; e++)
                    q[r][ci][e] *= a.qscale;
            }
        }
    }

    const int iters = vk_dec_iters(it.k0, it.k1);
    for (int i = 0; i < iters; i++) {
        int key = vk_dec_key(it.k0, i, g);
        bool ok = key < it.k1; /* uniform within the group: the whole warp shuffles */
        float kf[NCH][8], vf[NCH][8];
#pragma unroll
        for (int ci = 0; ci < NCH; ci++) {
            int col = 8 * vk_dec_chunk(gl, ci);
            if (ok && col < a.hd) {
                int64_t e = (sq.kv_row0 + key) * a.kv_cols + (int64_t)kvh * a.hd + col;
                vk_load8<KT>(a.k, e, kf[ci]);
                vk_load8<KT>(a.v, e, vf[ci]);
            } else {
#pragma unroll
                for (int e = 0; e < 8; e++)
                    kf[ci][e] = vf[ci][e] = 0.0f;
            }
        }
#pragma unroll
        for (int r = 0; r < RB; r++) {
            float d = 0.0f;
#pragma unroll
            for (int ci = 0; ci < NCH; ci++)
#pragma unroll
                for (int e = 0; e < 8; e++)
                    d += q[r][ci][e] * kf[ci][e];
            d = vk_warp_sum16(d);
            float sc = ok ? d : VK_NEG_INF;
            float alpha = vk_sm_rescale(&m[r], sc), p = vk_sm_p(sc, m[r]);
            l[r] = l[r] * alpha + p;
#pragma unroll
            for (int ci = 0; ci < NCH; ci++)
#pragma unroll
                for (int e = 0; e < 8; e++)
                    acc[r][ci][e] = acc[r][ci][e] * alpha + p * vf[ci][e];
        }
    }

    /* merge the groups' states in group order */
#pragma unroll
    for (int r = 0; r < RB; r++) {
        if (gl == 0) {
            sm_m[g][r] = m[r];
            sm_l[g][r] = l[r];
        }
#pragma unroll
        for (int ci = 0; ci < NCH; ci++)
#pragma unroll
            for (int e = 0; e < 8; e++)
                sm_acc[g][r][8 * vk_dec_chunk(gl, ci) + e] = acc[r][ci][e];
    }
    __syncthreads();
    for (int idx = tid; idx < nh * a.hd; idx += VK_DEC_NT) {
        int r = idx / a.hd, d = idx % a.hd;
        float mm = sm_m[0][r], ll = sm_l[0][r], aa = sm_acc[0][r][d];
        for (int gg = 1; gg < VK_DEC_G; gg++) {
            float a1, a2;
            vk_sm_merge(&mm, &ll, sm_m[gg][r], sm_l[gg][r], &a1, &a2);
            aa = aa * a1 + sm_acc[gg][r][d] * a2;
        }
        float *pp = a.part + ((int64_t)blockIdx.x * a.n_heads + h0 + r) * (a.hd + 2);
        if (d == 0) {
            pp[0] = mm;
            pp[1] = ll;
        }
        pp[2 + d] = aa;
    }
}

struct CombArgs {
    float *o;
    const float *part;
    int64_t o_cols;
    int hd, n_heads;
    const BackendSeq *seqs;
    const VkDecSeq *dseqs;
};

/* Reference: ops_ref attention (the decode rows). Tolerance as attn_tile. Launch: grid
 * (decode sequences, n_heads), VK_DEC_NT threads; merges a sequence's item partials in
 * item order and writes o = acc / l. */
__global__ void __launch_bounds__(VK_DEC_NT) attn_combine(CombArgs a)
{
    const VkDecSeq ds = a.dseqs[blockIdx.x];
    const int h = blockIdx.y;
    float *orow = a.o + (int64_t)a.seqs[ds.seq].row0 * a.o_cols + (int64_t)h * a.hd;
    for (int d = threadIdx.x; d < a.hd; d += VK_DEC_NT) {
        float mm = VK_NEG_INF, ll = 0.0f, aa = 0.0f;
        for (int it = ds.first; it < ds.first + ds.n; it++) {
            const float *pp = a.part + ((int64_t)it * a.n_heads + h) * (a.hd + 2);
            float a1, a2;
            vk_sm_merge(&mm, &ll, pp[0], pp[1], &a1, &a2);
            aa = aa * a1 + pp[2 + d] * a2;
        }
        orow[d] = vk_sm_out(aa, ll);
    }
}

/* ---- launch ---- */

typedef void (*TileKernel)(TileArgs);
typedef void (*DecKernel)(DecArgs);

template <int KT> static TileKernel vk_tile_kernel_kt(int nj)
{
    switch (nj) {
    case 1:
        return attn_tile<1, KT>;
    case 2:
        return attn_tile<2, KT>;
    case 3:
        return attn_tile<3, KT>;
    case 4:
        return attn_tile<4, KT>;
    case 6:
        return attn_tile<6, KT>;
    default:
        return attn_tile<8, KT>;
    }
}

static TileKernel vk_tile_kernel(int kt, int nj)
{
    return kt == VK_T_F16    ? vk_tile_kernel_kt<VK_T_F16>(nj)
           : kt == VK_T_BF16 ? vk_tile_kernel_kt<VK_T_BF16>(nj)
                             : vk_tile_kernel_kt<VK_T_F32>(nj);
}

template <int KT> static DecKernel vk_dec_kernel_kt(int nch)
{
    switch (nch) {
    case 1:
        return attn_dec<1, KT>;
    default:
        return attn_dec<2, KT>;
    }
}

static DecKernel vk_dec_kernel(int kt, int nch)
{
    return kt == VK_T_F16    ? vk_dec_kernel_kt<VK_T_F16>(nch)
           : kt == VK_T_BF16 ? vk_dec_kernel_kt<VK_T_BF16>(nch)
                             : vk_dec_kernel_kt<VK_T_F32>(nch);
}

/* Run attn_tile over the sequences' non-decode rows (all rows when !skip_decode).
 * seqs_dev is the staged copy of seqs. 0, or -1 with the error noted. */
static int vk_tile_run(VkCtx *c, TileArgs a, const BackendSeq *seqs, int n_seq, int skip_decode,
                       int n_kv_heads, int kt)
{
    int nj = vk_attn_nj(a.hd), bq = vk_attn_bq(vk_attn_rq(nj));
    TileKernel k = vk_tile_kernel(kt, nj);
    size_t smem = (size_t)vk_attn_smem(nj);
    if (vk_note(c, cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                "attention: shared memory limit"))
        return -1;
    VkAttnItem items[VK_ATTN_ITEM_CAP];
    int s = 0, p = 0, n;
    while ((n = vk_attn_fill(seqs, n_seq, skip_decode, a.rep, bq, &s, &p, items,
                             VK_ATTN_ITEM_CAP)) > 0) {
        a.items = (const VkAttnItem *)vk_stage(c, items, (size_t)n * sizeof(items[0]));
        if (!a.items)
            return -1;
        k<<<dim3((unsigned)n, (unsigned)n_kv_heads), VK_ATTN_NT, smem, c->stream>>>(a);
        if (vk_note(c, cudaGetLastError(), "attention: tile kernel"))
            return -1;
    }
    return 0;
}

/* Run attn_dec and attn_combine over the decode sequences (n_tok == 1). */
static int vk_dec_run(VkCtx *c, Tensor *o, DecArgs a, const BackendSeq *seqs, int n_seq,
                      int n_kv_heads, int kt)
{
    int nch = vk_dec_nch(a.hd), hgroups = vk_dec_hgroups(a.rep, vk_dec_rb(nch));
    size_t per_item = (size_t)a.n_heads * (size_t)(a.hd + 2) * sizeof(float);
    size_t fit = c->work_bytes / per_item;
    int cap = fit < VK_ATTN_ITEM_CAP ? (int)fit : VK_ATTN_ITEM_CAP;
    if (cap < 1)
        return vk_note(c, cudaErrorMemoryAllocation, "attention: workspace too small"), -1;
    int ch = vk_dec_pick_chunk(seqs, n_seq, n_kv_heads * hgroups, c->n_sm > 0 ? c->n_sm : 1, cap);
    DecKernel k = vk_dec_kernel(kt, nch);
    CombArgs ca = {
        (float *)o->data, (const float *)c->work, o->cols, a.hd, a.n_heads, a.seqs, NULL};
    a.part = (float *)c->work;

    VkDecItem items[VK_ATTN_ITEM_CAP];
    VkDecSeq dseqs[VK_ATTN_ITEM_CAP];
    int s = 0, n, nd;
    while ((n = vk_dec_fill(seqs, n_seq, ch, &s, items, cap, dseqs, &nd)) > 0) {
        a.items = (const VkDecItem *)vk_stage(c, items, (size_t)n * sizeof(items[0]));
        ca.dseqs = (const VkDecSeq *)vk_stage(c, dseqs, (size_t)nd * sizeof(dseqs[0]));
        if (!a.items || !ca.dseqs)
            return -1;
        k<<<dim3((unsigned)n, (unsigned)(n_kv_heads * hgroups)), VK_DEC_NT, 0, c->stream>>>(a);
        if (vk_note(c, cudaGetLastError(), "attention: decode kernel"))
            return -1;
        attn_combine<<<dim3((unsigned)nd, (unsigned)a.n_heads), VK_DEC_NT, 0, c->stream>>>(ca);
        if (vk_note(c, cudaGetLastError(), "attention: combine kernel"))
            return -1;
    }
    if (s < n_seq) /* a sequence whose splits exceed cap: vk_dec_pick_chunk prevents it */
        return vk_note(c, cudaErrorInvalidValue, "attention: decode split list overflow"), -1;
    return 0;
}

/* The shape rules every launch needs; 0, or -1 with the error noted. */
static int vk_attn_check(VkCtx *c, const Tensor *o, const Tensor *q, const Tensor *k,
                         const Tensor *v, int n_heads, int n_kv_heads)
{
    if (n_heads <= 0 || n_kv_heads <= 0 || n_heads % n_kv_heads || q->cols % n_heads ||
        o->cols != q->cols || o->type != QUANT_F32 || q->type != QUANT_F32)
        return vk_note(c, cudaErrorInvalidValue, "attention: bad head counts or q/o shapes"), -1;
    int64_t hd = q->cols / n_heads;
    if (hd % 8 || hd > VK_ATTN_HD_MAX)
        return vk_note(c, cudaErrorInvalidValue,
                       "attention: head_dim not a multiple of 8 up to 256"),
               -1;
    if (k->type != v->type || k->type > QUANT_BF16 || k->cols != n_kv_heads * hd ||
        v->cols != k->cols)
        return vk_note(c, cudaErrorInvalidValue, "attention: K/V type or shape"), -1;
    return 0;
}

} // namespace

extern "C" void vk_attention(VkCtx *c, Tensor *o, const Tensor *q, const Tensor *kc,
                             const Tensor *vc, const BackendSeq *seqs, int n_seq, int n_heads,
                             int n_kv_heads, float scale)
{
    if (n_seq <= 0 || vk_attn_check(c, o, q, kc, vc, n_heads, n_kv_heads))
        return;
    int hd = (int)(q->cols / n_heads), rep = n_heads / n_kv_heads, kt = (int)kc->type;
    int n_dec = 0, n_tile = 0;
    for (int s = 0; s < n_seq; s++) {
        n_dec += seqs[s].n_tok == 1;
        n_tile += seqs[s].n_tok > 1;
    }
    const BackendSeq *dev_seqs =
        (const BackendSeq *)vk_stage(c, seqs, (size_t)n_seq * sizeof(BackendSeq));
    if (!dev_seqs)
        return;
    if (n_tile) {
        TileArgs a = {(float *)o->data,
                      (const float *)q->data,
                      kc->data,
                      vc->data,
                      q->cols,
                      kc->cols,
                      hd,
                      rep,
                      1,
                      vk_sm_qscale(scale),
                      dev_seqs,
                      NULL};
        if (vk_tile_run(c, a, seqs, n_seq, 1, n_kv_heads, kt))
            return;
    }
    if (n_dec) {
        DecArgs a = {
            (const float *)q->data, kc->data, vc->data, NULL, q->cols, kc->cols, hd, rep, n_heads,
            vk_sm_qscale(scale),    dev_seqs, NULL};
        vk_dec_run(c, o, a, seqs, n_seq, n_kv_heads, kt);
    }
}

extern "C" void vk_attention_seg(VkCtx *c, Tensor *o, const Tensor *q, const Tensor *k,
                                 const Tensor *v, const int32_t *cu_seqlens, int n_seg, int n_heads,
                                 float scale)
{
    if (n_seg <= 0 || vk_attn_check(c, o, q, k, v, n_heads, n_heads))
        return;
    if (k->type != QUANT_F32)
        return (void)vk_note(c, cudaErrorInvalidValue, "attention_seg: K/V must be F32");
    int hd = (int)(q->cols / n_heads);
    TileArgs a = {(float *)o->data,
                  (const float *)q->data,
                  k->data,
                  v->data,
                  q->cols,
                  k->cols,
                  hd,
                  1,
                  0,
                  vk_sm_qscale(scale),
                  NULL,
                  NULL};
    /* segments as sequences without a past: rows = keys = cu_seqlens[s] .. [s+1] */
    BackendSeq segs[VK_ATTN_SEG_CAP];
    for (int s0 = 0; s0 < n_seg; s0 += VK_ATTN_SEG_CAP) {
        int n = n_seg - s0 < VK_ATTN_SEG_CAP ? n_seg - s0 : VK_ATTN_SEG_CAP;
        for (int i = 0; i < n; i++) {
            segs[i].row0 = cu_seqlens[s0 + i];
            segs[i].n_tok = cu_seqlens[s0 + i + 1] - cu_seqlens[s0 + i];
            segs[i].kv_row0 = cu_seqlens[s0 + i];
            segs[i].n_past = 0;
        }
        a.seqs = (const BackendSeq *)vk_stage(c, segs, (size_t)n * sizeof(segs[0]));
        if (!a.seqs || vk_tile_run(c, a, segs, n, 0, n_heads, VK_T_F32))
            return;
    }
}
