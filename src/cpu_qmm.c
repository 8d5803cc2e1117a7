/* cpu_qmm: Q4/Q8 weights times int8-quantised activations (see cpu_qmm.h). This comment
 * is about the file layout; the packed layout (what the cpu backend binds on AVX-512 VNNI)
 * has its own section and comment at the end of the file.
 *
 * Arithmetic. Activations are quantised per token row to int8 in blocks of 32 columns
 * (d = amax/127, q = rint(x/d), |q| <= 127). For one weight group of scale s_w and one
 * activation block of scale d:  sum_k w_k x_k ~= s_w * d * sum_k (u_k - off) * q_k, with
 * u the weight as an unsigned byte (Q4: the nibble, off = 8; Q8 on VNNI: w + 128, off =
 * 128; Q8 on AVX2 and plain C: the signed byte, off = 0). The integer sums are exact;
 * scales multiply once per 4 products, in f32.
 *
 * Activation layout ("slot order"). The weights stay in the file's layout, so the
 * activations are stored in the order the weight bytes unpack. A row is cut into units of
 * 64 columns (Q4: 32 bytes; Q8: 64 bytes); a SIMD register unpacks a unit into 64 "slots"
 * (Q4: slots 0..31 the low nibbles of the 32 bytes, 32..63 their high nibbles; Q8: the
 * bytes in order) and the activation of each unit is stored in the same slot order. Each
 * run of 16 slots (a quarter) holds 16 consecutive columns of one weight group and one
 * activation block, because group/2 is a multiple of 16. Per 4 slots (a "lane", one
 * int32 of vpdpbusd) the scratch keeps init = -off * (sum of the 4 q), so the integer
 * accumulator starts at the offset correction and needs no second pass, the block scale d,
 * and (shared by all tokens) the lane's weight group relative to the first group of its
 * window of 4 units (256 columns span at most 8 groups, so 8 scales per window are
 * converted once and permuted to the lanes). A trailing unit of 32 columns (cols % 64 ==
 * 32) holds 32 slots (Q4: 16 bytes, low then high nibbles) and is summed by the C code.
 *
 * Kernels. One tile function per (kernel, weight type, NR weight rows, NT tokens). Up to
 * 8 token rows (decode) a matmul is a GEMV: each thread streams its equal share of the
 * rows once, front to back, prefetching ahead, 2 adjacent rows x all tokens per call (1
 * row past 4 tokens); the activations are quantised by both threads first. Past 8 rows
 * (prefill) it is a GEMM of register tiles (4 rows x 4 tokens of zmm; 2 x 3 for the ymm
 * kernels, which have 16 registers), so one unpacked weight register serves several
 * tokens, blocked by 64 tokens x 2048 columns so the activations stay in L2 and a tile's
 * weights in L1. The plain C tile is the oracle; the SIMD tiles sum the same integers,
 * only the f32 summation order differs.
 *
 * State: one thread-local scratch buffer per calling thread (qmm_scratch), grown to the
 * largest shape seen; nothing else is global. */
#include "cpu_qmm.h"

#include "backend_int.h"
#include "cpucaps.h"
#include "err.h"
#include "util.h"

#include <assert.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define QMM_X86 1
#include <immintrin.h>
#endif

#define QMM_GEMV_MAX 8   /* token rows up to which a matmul is a GEMV */
#define QMM_TB 64        /* GEMM: tokens per block (their activations stay in L2) */
#define QMM_CU 32        /* GEMM: units (64 columns) per column chunk */
#define QMM_PF 1024      /* bytes of weights prefetched ahead */
#define QMM_PAR_MIN (1 << 16) /* multiply-adds below which one thread runs the matmul */

typedef struct {
    const uint8_t *qs;     /* the weights' qs plane */
    const uint16_t *scale; /* their half-float scales */
    int q4;                /* 1: Q4, 0: Q8 */
    int group;             /* columns per weight scale */
    int off;               /* the weight offset folded into init (8, 128 or 0) */
    int64_t rows, cols;    /* W[rows, cols] */
    int64_t row_bytes;     /* qs bytes per row */
    int64_t row_groups;    /* scales per row */
    int64_t n_full;        /* full units of 64 columns */
    int64_t n_units;       /* n_full, + 1 when cols % 64 == 32 */
    int64_t qst;           /* q bytes per token row: n_units * 64 */
    int64_t lst;           /* lanes per token row: n_units * 16 */
    int8_t *q;             /* [n_tok][qst] quantised activations, slot order */
    int32_t *init;         /* [n_tok][lst] -off * sum of the lane's 4 q */
    float *dq;             /* [n_tok][lst] the lane's activation block scale */
    int32_t *qcol;         /* [n_units * 4] the first column of each quarter */
    int32_t *grel;         /* [lst] the lane's weight group - its window's gbase */
    int32_t *gbase;        /* [windows] the first weight group of each window of 4 units */
} QmmCtx;

/* out[i*NT + j] = W[r0+i] . x[t0+j] over the full units u0 .. u1 */
typedef void (*QmmTileFn)(const QmmCtx *c, int64_t r0, int t0, int64_t u0, int64_t u1,
                          float *out);

/* ---- scratch ---- */

static __thread struct {
    void *buf;
    size_t cap;
} qmm_scratch;

/* A thread's scratch is freed when the thread exits (the engine's driver thread, a job's
 * thread): the key's destructor gets the buffer registered with pthread_setspecific. */
static pthread_key_t qmm_key;
static pthread_once_t qmm_key_once = PTHREAD_ONCE_INIT;

static void qmm_key_make(void)
{
    VLQ_ASSERT(pthread_key_create(&qmm_key, free) == 0);
}

static int64_t qmm_units(int64_t cols)
{
    return (cols + 63) / 64;
}

size_t cpu_qmm_scratch_bytes(int64_t max_tok, int64_t max_cols)
{
    int64_t nu = qmm_units(max_cols), nwin = (nu + 3) / 4;
    /* per token: q, init, dq (64 bytes each per unit); shared: grel (64 per unit), qcol
     * (16), gbase (4 per window) */
    return (size_t)(3 * max_tok * nu * 64 + nu * 64 + (nu * 16 + 63) / 64 * 64 +
                    (nwin * 4 + 63) / 64 * 64);
}

static void *qmm_scratch_get(size_t bytes, char *err)
{
    if (bytes <= qmm_scratch.cap)
        return qmm_scratch.buf;
    void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p) {
        err_set(err, VLQ_ENOMEM, "matmul scratch: cannot allocate %zu bytes", bytes);
        return NULL;
    }
    free(qmm_scratch.buf);
    qmm_scratch.buf = p;
    qmm_scratch.cap = bytes;
    pthread_once(&qmm_key_once, qmm_key_make);
    pthread_setspecific(qmm_key, p);
    return p;
}

int cpu_qmm_reserve(int64_t max_tok, int64_t max_cols, char *err)
{
    return qmm_scratch_get(cpu_qmm_scratch_bytes(max_tok, max_cols), err) ? 0 : VLQ_ENOMEM;
}

void cpu_qmm_release(void)
{
    free(qmm_scratch.buf);
    qmm_scratch.buf = NULL;
    qmm_scratch.cap = 0;
    pthread_once(&qmm_key_once, qmm_key_make);
    pthread_setspecific(qmm_key, NULL);
}

/* ---- activation quantisation (shared by every kernel) ---- */

/* The quarter (16 slots) that holds the 16 columns from col of weight group g, nib 1
 * for a Q4 high nibble: records its first column and (in grel, for now) its group. */
static void qmm_put(QmmCtx *c, int64_t quarter, int64_t col, int64_t g)
{
    c->qcol[quarter] = (int32_t)col;
    for (int l = 0; l < 4; l++)
        c->grel[4 * quarter + l] = (int32_t)g;
}

/* The shared tables: each quarter's first column, each window's first group, each
 * lane's group relative to it. Walks the groups in order: no divisions. */
static void qmm_tables(QmmCtx *c)
{
    const int64_t G = c->group, groups = c->cols / G;
    memset(c->grel, 0xff, (size_t)c->lst * 4); /* -1: padding lanes of a half unit */
    memset(c->qcol, 0, (size_t)c->n_units * 16);
    for (int64_t g = 0; g < groups; g++) {
        if (c->q4) { /* 16-byte pieces p: low nibbles cols g*G + 16k, high g*G + G/2 + 16k */
            for (int64_t k = 0; k < G / 32; k++) {
                int64_t p = g * (G / 32) + k, u = p >> 1;
                for (int nib = 0; nib < 2; nib++) {
                    int64_t col = g * G + nib * (G / 2) + 16 * k;
                    int qi = u < c->n_full ? (int)(p & 1) + 2 * nib : nib;
                    qmm_put(c, 4 * u + qi, col, g);
                }
            }
        } else {
            for (int64_t k = 0; k < G / 16; k++)
                qmm_put(c, g * (G / 16) + k, g * G + 16 * k, g);
        }
    }
    for (int64_t u = 0; u < c->n_units; u += 4)
        c->gbase[u / 4] = c->grel[16 * u]; /* lane 0 of a window: its lowest column */
    for (int64_t l = 0; l < c->lst; l++)
        c->grel[l] = c->grel[l] < 0 ? 0 : c->grel[l] - c->gbase[l / 64];
}

/* Max |x| over the 32 columns of block b0 (C). */
static float qmm_amax_c(const float *x)
{
    float m = 0.0f;
    for (int k = 0; k < 32; k++) {
        float a = fabsf(x[k]);
        m = a > m ? a : m;
    }
    return m;
}

/* qq[16] = rint(x[e0 ..] * 127 / amax) for the block at x + b0; returns the block scale.
 * Rounding to nearest even by the 1.5 * 2^23 trick (|v| <= 127): no libm call. */
static float qmm_quarter_c(const float *x, int64_t e0, int64_t b0, int8_t *qq)
{
    float m = qmm_amax_c(x + b0), id = m > 0.0f ? 127.0f / m : 0.0f;
    for (int k = 0; k < 16; k++) {
        float v = x[e0 + k] * id;
        v = (v + 12582912.0f) - 12582912.0f;
        qq[k] = (int8_t)(int)v;
    }
    return m / 127.0f;
}

#ifdef QMM_X86
/* The same on AVX2, with the same results: max is exact, and vcvtps2dq rounds to nearest
 * even as the trick does. */
__attribute__((target("avx2,fma"))) static float qmm_quarter_avx2(const float *x, int64_t e0,
                                                                  int64_t b0, int8_t *qq)
{
    const __m256 abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const float *p = x + b0;
    __m256 m8 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(p), abs),
                              _mm256_and_ps(_mm256_loadu_ps(p + 8), abs));
    m8 = _mm256_max_ps(m8, _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(p + 16), abs),
                                         _mm256_and_ps(_mm256_loadu_ps(p + 24), abs)));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps(m8, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    float m = _mm_cvtss_f32(h), id = m > 0.0f ? 127.0f / m : 0.0f;
    const __m256 s = _mm256_set1_ps(id);
    __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + e0), s));
    __m256i b = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + e0 + 8), s));
    __m256i w = _mm256_packs_epi32(a, b); /* 128-bit lanes: a0-3 b0-3 | a4-7 b4-7 */
    __m128i lo = _mm256_castsi256_si128(w), hi = _mm256_extracti128_si256(w, 1);
    __m128i ab = _mm_packs_epi16(_mm_unpacklo_epi64(lo, hi), _mm_unpackhi_epi64(lo, hi));
    _mm_storeu_si128((__m128i *)qq, ab);
    return m / 127.0f;
}
#endif

/* Units u0 .. u1 of token row t: x[cols] -> q, init, dq in slot order. Each quarter
 * finds its block's max itself (blocks are shared by 2-4 quarters, maybe in other units),
 * so two threads can quantise halves of one row. */
static void qmm_quantize(QmmCtx *c, int64_t t, const float *x, int64_t u0, int64_t u1)
{
    int8_t *q = c->q + t * c->qst;
    int32_t *init = c->init + t * c->lst;
    float *dq = c->dq + t * c->lst;
    float (*quarter_fn)(const float *, int64_t, int64_t, int8_t *) = qmm_quarter_c;
#ifdef QMM_X86
    if (cpucaps_get() & CPUCAPS_AVX2)
        quarter_fn = qmm_quarter_avx2;
#endif
    memset(q + 64 * u0, 0, (size_t)(u1 - u0) * 64);
    memset(init + 16 * u0, 0, (size_t)(u1 - u0) * 64);
    memset(dq + 16 * u0, 0, (size_t)(u1 - u0) * 64);
    for (int64_t u = u0; u < u1; u++) {
        for (int qi = 0; qi < 4; qi++) {
            int64_t quarter = 4 * u + qi;
            if (u >= c->n_full && qi >= 2)
                break; /* padding of a trailing half unit: zeros, never summed */
            int64_t e0 = c->qcol[quarter];
            int8_t *qq = q + 16 * quarter;
            float d = quarter_fn(x, e0, e0 & ~(int64_t)31, qq);
            for (int l = 0; l < 4; l++) {
                init[4 * quarter + l] =
                    -c->off * (qq[4 * l] + qq[4 * l + 1] + qq[4 * l + 2] + qq[4 * l + 3]);
                dq[4 * quarter + l] = d;
            }
        }
    }
}

/* 8 half scales from group `base` of row r: in place, or copied (zero-padded) into tmp
 * at the end of the scale plane, so the SIMD load never reads past the tensor. */
static inline const uint16_t *qmm_scales8(const QmmCtx *c, int64_t r, int64_t base,
                                          uint16_t tmp[8])
{
    int64_t i = r * c->row_groups + base, total = c->rows * c->row_groups;
    if (i + 8 <= total)
        return c->scale + i;
    /* an element loop, not memcpy: a call would make the tile spill its accumulators */
    for (int k = 0; k < 8; k++)
        tmp[k] = i + k < total ? c->scale[i + k] : 0;
    return tmp;
}

/* ---- plain C: the oracle ---- */

/* W[r] . x[t] over unit u (full or the trailing half unit). */
static float qmm_c_unit(const QmmCtx *c, int64_t r, int64_t t, int64_t u)
{
    int full = u < c->n_full, lanes = full ? 16 : 8;
    const uint8_t *wb = c->qs + r * c->row_bytes + u * (c->q4 ? 32 : 64);
    const int8_t *qa = c->q + t * c->qst + 64 * u;
    const int32_t *init = c->init + t * c->lst + 16 * u;
    const float *dq = c->dq + t * c->lst + 16 * u;
    const int32_t *gr = c->grel + 16 * u;
    const uint16_t *sc = c->scale + r * c->row_groups + c->gbase[u / 4];
    float acc = 0.0f;
    for (int l = 0; l < lanes; l++) {
        int32_t s = init[l];
        for (int k = 0; k < 4; k++) {
            int slot = 4 * l + k, wv;
            if (c->q4) {
                uint8_t byte = full ? wb[slot & 31] : wb[slot & 15];
                int nib = full ? slot >> 5 : slot >> 4;
                wv = nib ? byte >> 4 : byte & 15;
            } else {
                wv = (int8_t)wb[slot] + c->off;
            }
            s += wv * qa[slot];
        }
        acc += (float)s * dq[l] * half_f16_to_f32(sc[gr[l]]);
    }
    return acc;
}

static void qmm_c_tile(const QmmCtx *c, int64_t r0, int t0, int64_t u0, int64_t u1, float *out,
                       int nr, int nt)
{
    for (int i = 0; i < nr; i++)
        for (int j = 0; j < nt; j++) {
            float acc = 0.0f;
            for (int64_t u = u0; u < u1; u++)
                acc += qmm_c_unit(c, r0 + i, t0 + j, u);
            out[i * nt + j] = acc;
        }
}

#define QMM_C_FN(NR, NT)                                                                       \
    static void qmm_c_##NR##x##NT(const QmmCtx *c, int64_t r0, int t0, int64_t u0, int64_t u1, \
                                  float *out)                                                  \
    {                                                                                          \
        qmm_c_tile(c, r0, t0, u0, u1, out, NR, NT);                                            \
    }

#define QMM_IS_q4 1
#define QMM_IS_q8 0

/* The table of one kernel: [q4][NR-1][NT-1]; NR > 1 only with NT <= 4. */
typedef QmmTileFn QmmTab[2][4][8];

#define QMM_TABLE(P, Q)                                                                        \
    {P##_##Q##_1x1, P##_##Q##_1x2, P##_##Q##_1x3, P##_##Q##_1x4,                               \
     P##_##Q##_1x5, P##_##Q##_1x6, P##_##Q##_1x7, P##_##Q##_1x8},                              \
        {P##_##Q##_2x1, P##_##Q##_2x2, P##_##Q##_2x3, P##_##Q##_2x4},                          \
        {P##_##Q##_3x1, P##_##Q##_3x2, P##_##Q##_3x3, P##_##Q##_3x4},                          \
    {                                                                                          \
        P##_##Q##_4x1, P##_##Q##_4x2, P##_##Q##_4x3, P##_##Q##_4x4                             \
    }

/* Every (NR, NT) of a kernel family: M(type, NR, NT) for type q8 and q4. */
#define QMM_ALL_SHAPES(M, Q)                                                                   \
    M(Q, 1, 1) M(Q, 1, 2) M(Q, 1, 3) M(Q, 1, 4) M(Q, 1, 5) M(Q, 1, 6) M(Q, 1, 7) M(Q, 1, 8)    \
    M(Q, 2, 1) M(Q, 2, 2) M(Q, 2, 3) M(Q, 2, 4) M(Q, 3, 1) M(Q, 3, 2) M(Q, 3, 3) M(Q, 3, 4)    \
    M(Q, 4, 1) M(Q, 4, 2) M(Q, 4, 3) M(Q, 4, 4)

/* the C tile reads the type from the context: both tables hold the same functions */
#define QMM_C_DEF(Q, NR, NT) QMM_C_FN(NR, NT)
QMM_ALL_SHAPES(QMM_C_DEF, x)
static const QmmTab qmm_tab_c = {
    {{qmm_c_1x1, qmm_c_1x2, qmm_c_1x3, qmm_c_1x4, qmm_c_1x5, qmm_c_1x6, qmm_c_1x7, qmm_c_1x8},
     {qmm_c_2x1, qmm_c_2x2, qmm_c_2x3, qmm_c_2x4},
     {qmm_c_3x1, qmm_c_3x2, qmm_c_3x3, qmm_c_3x4},
     {qmm_c_4x1, qmm_c_4x2, qmm_c_4x3, qmm_c_4x4}},
    {{qmm_c_1x1, qmm_c_1x2, qmm_c_1x3, qmm_c_1x4, qmm_c_1x5, qmm_c_1x6, qmm_c_1x7, qmm_c_1x8},
     {qmm_c_2x1, qmm_c_2x2, qmm_c_2x3, qmm_c_2x4},
     {qmm_c_3x1, qmm_c_3x2, qmm_c_3x3, qmm_c_3x4},
     {qmm_c_4x1, qmm_c_4x2, qmm_c_4x3, qmm_c_4x4}},
};

#ifdef QMM_X86

/* Independent accumulator sets for a tile of NR x NT sums: enough chains of f32 adds in
 * flight to hide the FMA latency when the tile is small (decode, one token). */
#define QMM_NA(NR, NT) ((NR) * (NT) >= 4 ? 1 : (NR) * (NT) == 1 ? 4 : 2)

/* ---- AVX-512 VNNI: one unit per zmm ---- */

#define QMM_T512                                                                               \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))

/* Where a tile reads: its rows' weights and its tokens' q, init and dq rows. */
typedef struct {
    const uint8_t *w[4];
    const int8_t *q[8];
    const int32_t *init[8];
    const float *dq[8];
} QmmPtrs;

static inline __attribute__((always_inline)) void qmm_ptrs(const QmmCtx *c, int64_t r0, int t0,
                                                           QmmPtrs *p, const int NR, const int NT)
{
#pragma GCC unroll 8
    for (int i = 0; i < NR; i++)
        p->w[i] = c->qs + (r0 + i) * c->row_bytes;
#pragma GCC unroll 8
    for (int j = 0; j < NT; j++) {
        p->q[j] = c->q + (t0 + j) * c->qst;
        p->init[j] = c->init + (t0 + j) * c->lst;
        p->dq[j] = c->dq + (t0 + j) * c->lst;
    }
}

/* One unit u of NR rows x NT tokens into accumulator set a. */
static inline __attribute__((always_inline)) QMM_T512 void
qmm512_unit(const QmmCtx *c, const QmmPtrs *p, int64_t u, const __m512 sw[4],
            __m512 acc[4][8][4], int a, const int Q4, const int NR, const int NT)
{
    const __m512i gi = _mm512_loadu_si512(c->grel + 16 * u);
#pragma GCC unroll 8
    for (int i = 0; i < NR; i++) {
        const uint8_t *wp = p->w[i] + u * (Q4 ? 32 : 64);
        _mm_prefetch((const char *)wp + QMM_PF, _MM_HINT_T0);
        __m512i wv;
        if (Q4) { /* [low nibbles | high nibbles] of 32 bytes */
            __m512i b = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)wp));
            b = _mm512_mask_srli_epi16(b, (__mmask32)0xFFFF0000u, b, 4);
            wv = _mm512_and_si512(b, _mm512_set1_epi8(0x0f));
        } else { /* w + 128 as unsigned bytes */
            wv = _mm512_xor_si512(_mm512_loadu_si512(wp), _mm512_set1_epi8((char)0x80));
        }
        const __m512 se = _mm512_permutexvar_ps(gi, sw[i]); /* lane -> its group's scale */
#pragma GCC unroll 8
        for (int j = 0; j < NT; j++) {
            __m512i d = _mm512_load_si512(p->init[j] + 16 * u);
            d = _mm512_dpbusd_epi32(d, wv, _mm512_load_si512(p->q[j] + 64 * u));
            __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(d), _mm512_load_ps(p->dq[j] + 16 * u));
            acc[i][j][a] = _mm512_fmadd_ps(f, se, acc[i][j][a]);
        }
    }
}

static inline __attribute__((always_inline)) QMM_T512 void
qmm512_tile(const QmmCtx *c, int64_t r0, int t0, int64_t u0, int64_t u1, float *out,
            const int Q4, const int NR, const int NT)
{
    const int NA = QMM_NA(NR, NT);
    QmmPtrs p;
    qmm_ptrs(c, r0, t0, &p, NR, NT);
    __m512 acc[4][8][4];
#pragma GCC unroll 8
    for (int i = 0; i < NR; i++)
#pragma GCC unroll 8
        for (int j = 0; j < NT; j++)
#pragma GCC unroll 4
            for (int a = 0; a < NA; a++)
                acc[i][j][a] = _mm512_setzero_ps();
    int64_t u = u0;
    while (u < u1) {
        int64_t w = u / 4, ue = (w + 1) * 4 < u1 ? (w + 1) * 4 : u1;
        __m512 sw[4];
#pragma GCC unroll 4
        for (int i = 0; i < NR; i++) {
            uint16_t tmp[8];
            const uint16_t *s = qmm_scales8(c, r0 + i, c->gbase[w], tmp);
            sw[i] = _mm512_castps256_ps512(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)s)));
        }
        if (u % 4 == 0 && ue == u + 4) {
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++)
                qmm512_unit(c, &p, u + k, sw, acc, k % NA, Q4, NR, NT);
            u += 4;
        } else {
            for (; u < ue; u++)
                qmm512_unit(c, &p, u, sw, acc, 0, Q4, NR, NT);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < NR; i++)
#pragma GCC unroll 8
        for (int j = 0; j < NT; j++) {
            __m512 s = acc[i][j][0];
#pragma GCC unroll 4
            for (int a = 1; a < NA; a++)
                s = _mm512_add_ps(s, acc[i][j][a]);
            out[i * NT + j] = _mm512_reduce_add_ps(s);
        }
}

#define QMM512_FN(Q, NR, NT)                                                                   \
    static QMM_T512 void qmm512_##Q##_##NR##x##NT(const QmmCtx *c, int64_t r0, int t0,         \
                                                  int64_t u0, int64_t u1, float *out)          \
    {                                                                                          \
        qmm512_tile(c, r0, t0, u0, u1, out, QMM_IS_##Q, NR, NT);                        \
    }
QMM_ALL_SHAPES(QMM512_FN, q8)
QMM_ALL_SHAPES(QMM512_FN, q4)
static const QmmTab qmm_tab_512 = {{QMM_TABLE(qmm512, q8)}, {QMM_TABLE(qmm512, q4)}};

/* ---- AVX2 and AVX-VNNI: one unit in two ymm (low slots, high slots) ---- */

#define QMM_TAVX2 __attribute__((target("avx2,fma,f16c")))
#define QMM_TAVXVNNI __attribute__((target("avx2,fma,f16c,avxvnni")))

/* The int32 lane sums init + sum u*q of one ymm (32 slots). */
static inline __attribute__((always_inline)) QMM_TAVXVNNI __m256i
qmm_ydot_vnni(__m256i init, __m256i wv, __m256i qa, const int Q4)
{
    return _mm256_dpbusd_avx_epi32(init, wv, qa);
}

static inline __attribute__((always_inline)) QMM_TAVX2 __m256i
qmm_ydot_avx2(__m256i init, __m256i wv, __m256i qa, const int Q4)
{
    const __m256i ones = _mm256_set1_epi16(1);
    if (Q4) /* u <= 15: the pair sums of vpmaddubsw cannot saturate */
        return _mm256_add_epi32(init, _mm256_madd_epi16(_mm256_maddubs_epi16(wv, qa), ones));
    /* Q8, off = 0: |w| times q with w's sign (|w| <= 128, |q| <= 127: no saturation) */
    return _mm256_madd_epi16(
        _mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(qa, wv)), ones);
}

/* P_unit and P_tile for one ymm kernel: TGT its target, DOT its lane dot, VNNI 1 when
 * Q8 weights are offset by 128 (vpdpbusd takes them unsigned). */
#define QMM_YMM_FAMILY(P, TGT, DOT, VNNI)                                                      \
    static inline __attribute__((always_inline)) TGT void                                      \
    P##_unit(const QmmCtx *c, const QmmPtrs *p, int64_t u, const __m256 sw[4],                 \
             __m256 acc[4][8][4], int a, const int Q4, const int NR, const int NT)             \
    {                                                                                          \
        const __m256i g0 = _mm256_loadu_si256((const __m256i *)(c->grel + 16 * u));            \
        const __m256i g1 = _mm256_loadu_si256((const __m256i *)(c->grel + 16 * u + 8));        \
        _Pragma("GCC unroll 8") for (int i = 0; i < NR; i++) {                                 \
            const uint8_t *wp = p->w[i] + u * (Q4 ? 32 : 64);                                  \
            _mm_prefetch((const char *)wp + QMM_PF, _MM_HINT_T0);                              \
            __m256i w0, w1;                                                                    \
            if (Q4) {                                                                          \
                const __m256i m4 = _mm256_set1_epi8(0x0f);                                     \
                __m256i b = _mm256_loadu_si256((const __m256i *)wp);                           \
                w0 = _mm256_and_si256(b, m4);                                                  \
                w1 = _mm256_and_si256(_mm256_srli_epi16(b, 4), m4);                            \
            } else {                                                                           \
                w0 = _mm256_loadu_si256((const __m256i *)wp);                                  \
                w1 = _mm256_loadu_si256((const __m256i *)(wp + 32));                           \
                if (VNNI) {                                                                    \
                    w0 = _mm256_xor_si256(w0, _mm256_set1_epi8((char)0x80));                   \
                    w1 = _mm256_xor_si256(w1, _mm256_set1_epi8((char)0x80));                   \
                }                                                                              \
            }                                                                                  \
            const __m256 s0 = _mm256_permutevar8x32_ps(sw[i], g0);                             \
            const __m256 s1 = _mm256_permutevar8x32_ps(sw[i], g1);                             \
            _Pragma("GCC unroll 8") for (int j = 0; j < NT; j++) {                             \
                const __m256i *qa = (const __m256i *)(p->q[j] + 64 * u);                       \
                const __m256i *in = (const __m256i *)(p->init[j] + 16 * u);                    \
                const float *dq = p->dq[j] + 16 * u;                                           \
                __m256i d0 = DOT(_mm256_load_si256(in), w0, _mm256_load_si256(qa), Q4);        \
                __m256i d1 = DOT(_mm256_load_si256(in + 1), w1, _mm256_load_si256(qa + 1), Q4); \
                __m256 f0 = _mm256_mul_ps(_mm256_cvtepi32_ps(d0), _mm256_load_ps(dq));         \
                __m256 f1 = _mm256_mul_ps(_mm256_cvtepi32_ps(d1), _mm256_load_ps(dq + 8));     \
                acc[i][j][a] = _mm256_fmadd_ps(f0, s0, acc[i][j][a]);                          \
                acc[i][j][a] = _mm256_fmadd_ps(f1, s1, acc[i][j][a]);                          \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
                                                                                               \
    static inline __attribute__((always_inline)) TGT void P##_tile(                            \
        const QmmCtx *c, int64_t r0, int t0, int64_t u0, int64_t u1, float *out, const int Q4, \
        const int NR, const int NT)                                                            \
    {                                                                                          \
        const int NA = QMM_NA(NR, NT);                                                         \
        QmmPtrs p;                                                                             \
        qmm_ptrs(c, r0, t0, &p, NR, NT);                                                       \
        __m256 acc[4][8][4];                                                                   \
        _Pragma("GCC unroll 8") for (int i = 0; i < NR; i++)                                   \
            _Pragma("GCC unroll 8") for (int j = 0; j < NT; j++)                               \
                _Pragma("GCC unroll 4") for (int a = 0; a < NA; a++)                           \
                    acc[i][j][a] = _mm256_setzero_ps();                                        \
        int64_t u = u0;                                                                        \
        while (u < u1) {                                                                       \
            int64_t w = u / 4, ue = (w + 1) * 4 < u1 ? (w + 1) * 4 : u1;                       \
            __m256 sw[4];                                                                      \
            _Pragma("GCC unroll 4") for (int i = 0; i < NR; i++) {                             \
                uint16_t tmp[8];                                                               \
                const uint16_t *s = qmm_scales8(c, r0 + i, c->gbase[w], tmp);                  \
                sw[i] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)s));                  \
            }                                                                                  \
            if (u % 4 == 0 && ue == u + 4) {                                                   \
                _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++)                            \
                    P##_unit(c, &p, u + k, sw, acc, k % NA, Q4, NR, NT);                       \
                u += 4;                                                                        \
            } else {                                                                           \
                for (; u < ue; u++)                                                            \
                    P##_unit(c, &p, u, sw, acc, 0, Q4, NR, NT);                                \
            }                                                                                  \
        }                                                                                      \
        _Pragma("GCC unroll 4") for (int i = 0; i < NR; i++)                                   \
            _Pragma("GCC unroll 8") for (int j = 0; j < NT; j++) {                             \
                __m256 s = acc[i][j][0];                                                       \
                _Pragma("GCC unroll 4") for (int a = 1; a < NA; a++)                           \
                    s = _mm256_add_ps(s, acc[i][j][a]);                                        \
                __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1)); \
                h = _mm_add_ps(h, _mm_movehl_ps(h, h));                                        \
                h = _mm_add_ss(h, _mm_movehdup_ps(h));                                         \
                out[i * NT + j] = _mm_cvtss_f32(h);                                            \
            }                                                                                  \
    }

QMM_YMM_FAMILY(qmmavx2, QMM_TAVX2, qmm_ydot_avx2, 0)
QMM_YMM_FAMILY(qmmvnni, QMM_TAVXVNNI, qmm_ydot_vnni, 1)

#define QMMAVX2_FN(Q, NR, NT)                                                                  \
    static QMM_TAVX2 void qmmavx2_##Q##_##NR##x##NT(const QmmCtx *c, int64_t r0, int t0,       \
                                                    int64_t u0, int64_t u1, float *out)        \
    {                                                                                          \
        qmmavx2_tile(c, r0, t0, u0, u1, out, QMM_IS_##Q, NR, NT);                       \
    }
#define QMMVNNI_FN(Q, NR, NT)                                                                  \
    static QMM_TAVXVNNI void qmmvnni_##Q##_##NR##x##NT(const QmmCtx *c, int64_t r0, int t0,    \
                                                       int64_t u0, int64_t u1, float *out)     \
    {                                                                                          \
        qmmvnni_tile(c, r0, t0, u0, u1, out, QMM_IS_##Q, NR, NT);                       \
    }
QMM_ALL_SHAPES(QMMAVX2_FN, q8)
QMM_ALL_SHAPES(QMMAVX2_FN, q4)
QMM_ALL_SHAPES(QMMVNNI_FN, q8)
QMM_ALL_SHAPES(QMMVNNI_FN, q4)
static const QmmTab qmm_tab_avx2 = {{QMM_TABLE(qmmavx2, q8)}, {QMM_TABLE(qmmavx2, q4)}};
static const QmmTab qmm_tab_vnni = {{QMM_TABLE(qmmvnni, q8)}, {QMM_TABLE(qmmvnni, q4)}};

#endif /* QMM_X86 */

/* ---- dispatch ---- */

static const char *const qmm_labels[CPU_QMM_N] = {"c", "avx2", "avxvnni", "avx512vnni"};

int cpu_qmm_kernel_available(CpuQmmKernel k)
{
    int caps = cpucaps_get();
    switch (k) {
    case CPU_QMM_C: return 1;
#ifdef QMM_X86
    case CPU_QMM_AVX2: return (caps & CPUCAPS_AVX2) != 0;
    case CPU_QMM_AVXVNNI: return (caps & CPUCAPS_AVXVNNI) != 0;
    case CPU_QMM_AVX512VNNI: return (caps & CPUCAPS_AVX512VNNI) != 0;
#endif
    default: return 0;
    }
}

CpuQmmKernel cpu_qmm_kernel(void)
{
    /* zmm first: twice the work per instruction of the ymm VNNI form */
    static const CpuQmmKernel order[] = {CPU_QMM_AVX512VNNI, CPU_QMM_AVXVNNI, CPU_QMM_AVX2};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (cpu_qmm_kernel_available(order[i]))
            return order[i];
    return CPU_QMM_C;
}

const char *cpu_qmm_kernel_label(CpuQmmKernel k)
{
    return k >= 0 && k < CPU_QMM_N ? qmm_labels[k] : "?";
}

const char *cpu_qmm_kernel_name(void)
{
    static const char *const names[CPU_QMM_N] = {"q4 x q8: c", "q4 x q8: avx2",
                                                 "q4 x q8: avxvnni", "q4 x q8: avx512vnni"};
    return names[cpu_qmm_kernel()];
}

static const QmmTab *qmm_table(CpuQmmKernel k)
{
    switch (k) {
#ifdef QMM_X86
    case CPU_QMM_AVX2: return &qmm_tab_avx2;
    case CPU_QMM_AVXVNNI: return &qmm_tab_vnni;
    case CPU_QMM_AVX512VNNI: return &qmm_tab_512;
#endif
    default: return &qmm_tab_c;
    }
}

/* ---- the matmul ---- */

static float qmm_bias(const Tensor *bias, int64_t o)
{
    return bias ? bk_elem(bias, 0, o) : 0.0f;
}

/* Rows r0 .. r1 of y (all tokens), one thread's share. */
static void qmm_rows(const QmmTab *tab, int tile_nr, int tile_nt, const QmmCtx *c, int64_t r0,
                     int64_t r1, int n_tok, Tensor *y, const Tensor *bias)
{
    float *yd = y->data, out[4 * 8];
    const int64_t ldy = y->cols, half = c->n_units - c->n_full;
    if (n_tok <= QMM_GEMV_MAX) {
        /* GEMV: the rows streamed once, front to back, for all tokens at once; two rows
         * (adjacent in memory) per call up to 4 tokens, to halve the per-call work */
        int nr = n_tok <= 4 ? 2 : 1;
        for (int64_t r = r0; r < r1; r += nr) {
            int m = r1 - r < nr ? (int)(r1 - r) : nr;
            (*tab)[c->q4][m - 1][n_tok - 1](c, r, 0, 0, c->n_full, out);
            for (int i = 0; i < m; i++)
                for (int t = 0; t < n_tok; t++) {
                    float v = out[i * n_tok + t] + qmm_bias(bias, r + i);
                    if (half)
                        v += qmm_c_unit(c, r + i, t, c->n_full);
                    yd[t * ldy + r + i] = v;
                }
        }
        return;
    }
    for (int t = 0; t < n_tok; t++)
        for (int64_t r = r0; r < r1; r++)
            yd[t * ldy + r] = qmm_bias(bias, r);
    /* GEMM: token blocks x column chunks x row tiles x token tiles */
    for (int tb = 0; tb < n_tok; tb += QMM_TB) {
        int te = tb + QMM_TB < n_tok ? tb + QMM_TB : n_tok;
        for (int64_t u0 = 0; u0 < c->n_full || (u0 == 0 && half); u0 += QMM_CU) {
            int64_t u1 = u0 + QMM_CU < c->n_full ? u0 + QMM_CU : c->n_full;
            int last = u1 == c->n_full;
            for (int64_t r = r0; r < r1; r += tile_nr) {
                int nr = r1 - r < tile_nr ? (int)(r1 - r) : tile_nr;
                for (int t = tb; t < te; t += tile_nt) {
                    int nt = te - t < tile_nt ? te - t : tile_nt;
                    if (u1 > u0)
                        (*tab)[c->q4][nr - 1][nt - 1](c, r, t, u0, u1, out);
                    else
                        memset(out, 0, sizeof out);
                    for (int i = 0; i < nr; i++)
                        for (int j = 0; j < nt; j++) {
                            float v = out[i * nt + j];
                            if (last && half)
                                v += qmm_c_unit(c, r + i, t + j, c->n_full);
                            yd[(t + j) * ldy + r + i] += v;
                        }
                }
            }
            if (last)
                break;
        }
    }
}

void cpu_qmm_matmul_with(CpuQmmKernel k, Tensor *y, const Tensor *x, const Tensor *w,
                         const Tensor *bias)
{
    assert(w->type == QUANT_Q4 || w->type == QUANT_Q8);
    assert(x->cols == w->cols && y->cols == w->rows && y->rows == x->rows);
    assert(w->group >= 32 && w->group % 32 == 0 && w->cols % w->group == 0);
    VLQ_ASSERT(cpu_qmm_kernel_available(k));
    int64_t n = x->rows, cols = w->cols;
    if (n == 0)
        return;
    QmmCtx c = {
        .qs = w->data,
        .scale = w->scale,
        .q4 = w->type == QUANT_Q4,
        .group = w->group,
        .rows = w->rows,
        .cols = cols,
        .row_bytes = w->type == QUANT_Q4 ? cols / 2 : cols,
        .row_groups = cols / w->group,
        .n_full = cols / 64,
        .n_units = qmm_units(cols),
    };
    c.off = c.q4 ? 8 : (k == CPU_QMM_AVXVNNI || k == CPU_QMM_AVX512VNNI) ? 128 : 0;
    c.qst = c.n_units * 64;
    c.lst = c.n_units * 16;
    char err[VLQ_ERRLEN] = "";
    uint8_t *s = qmm_scratch_get(cpu_qmm_scratch_bytes(n, cols), err);
    if (!s) {
        /* ops cannot fail: the memory plan reserves this (cpu_qmm_reserve) up front */
        fprintf(stderr, "fatal: %s\n", err);
        abort();
    }
    /* carved as cpu_qmm_scratch_bytes counts it, each array 64-byte aligned */
    c.q = (int8_t *)s;
    s += n * c.qst;
    c.init = (int32_t *)s;
    s += n * c.lst * 4;
    c.dq = (float *)s;
    s += n * c.lst * 4;
    c.grel = (int32_t *)s;
    s += c.lst * 4;
    c.qcol = (int32_t *)s;
    s += (c.n_units * 16 + 63) / 64 * 64;
    c.gbase = (int32_t *)s;
    qmm_tables(&c);
    const QmmTab *tab = qmm_table(k);
    /* GEMM register tiles: 4 x 4 zmm accumulators of 32; ymm kernels have 16 registers */
    int tile_nr = k == CPU_QMM_AVX2 || k == CPU_QMM_AVXVNNI ? 2 : 4;
    int tile_nt = k == CPU_QMM_AVX2 || k == CPU_QMM_AVXVNNI ? 3 : 4;
    const float *xd = x->data;
    int64_t work = n * cols * w->rows;
#pragma omp parallel if (work > QMM_PAR_MIN)
    {
        /* quantise the token rows, then share them (the barrier ending the loop); fewer
         * rows than threads: each row in as many pieces as threads */
        int nth = omp_get_num_threads(), tid = omp_get_thread_num();
        int64_t pieces = n < nth ? nth : 1;
#pragma omp for schedule(static)
        for (int64_t i = 0; i < n * pieces; i++) {
            int64_t t = i / pieces, piece = i % pieces;
            qmm_quantize(&c, t, xd + t * cols, c.n_units * piece / pieces,
                         c.n_units * (piece + 1) / pieces);
        }
        /* equal shares of the rows: every row is the same number of bytes */
        int64_t r0 = w->rows * tid / nth, r1 = w->rows * (tid + 1) / nth;
        qmm_rows(tab, tile_nr, tile_nt, &c, r0, r1, (int)n, y, bias);
    }
}

void cpu_qmm_matmul(Tensor *y, const Tensor *x, const Tensor *w, const Tensor *bias)
{
    cpu_qmm_matmul_with(cpu_qmm_kernel(), y, x, w, bias);
}

/* ---- the packed layout: 16 output rows in the lanes of a vector ----
 *
 * Rows are taken 16 at a time (a "row group"; the last one padded with zero weights and
 * zero scales). For each row group and each block of 32 columns, the 16 rows' weights lie
 * in 4-byte column chunks, one int32 lane per row: Q8 (512 bytes) as 8 vectors of 64
 * bytes, vector k = columns 4k .. 4k+3 of rows 0..15, each byte w + 128; Q4 (256 bytes) as
 * 4 vectors whose low nibbles are columns 4k .. 4k+3 and high nibbles columns 16+4k ..
 * 16+4k+3 (k < 4), each nibble w + 8 as in the file. Then vpdpbusd with 4 activation bytes
 * of one token broadcast to every lane sums 16 rows at once: no horizontal reduction, and
 * per block one convert and one FMA per 16 rows per token. The scale plane follows the qs
 * plane: per row group and weight group, the 16 rows' half-float scales (32 bytes).
 *
 * Activations for this layout are in column order: per token row and block, 32 int8, the
 * block scale d and corr = -off * (sum of the 32 q), the integer accumulator's start. */

#define QMM_RG 16   /* rows per row group */
#define QMM_PTB 64  /* GEMM: tokens per block */
#define QMM_PKB 32  /* GEMM: 32-column blocks per column chunk (a row pair's weights in L1) */

static int64_t qmm_blk_bytes(QuantType type)
{
    return type == QUANT_Q4 ? 256 : 512;
}

static int64_t qmm_packed_qs_bytes(QuantType type, int64_t rows, int64_t cols)
{
    return (rows + QMM_RG - 1) / QMM_RG * (cols / 32) * qmm_blk_bytes(type);
}

size_t cpu_qmm_packed_bytes(QuantType type, int64_t rows, int64_t cols, int group)
{
    int64_t nrg = (rows + QMM_RG - 1) / QMM_RG;
    return (size_t)(qmm_packed_qs_bytes(type, rows, cols) + nrg * (cols / group) * QMM_RG * 2);
}

void cpu_qmm_pack(const Tensor *w, void *dst)
{
    assert(w->type == QUANT_Q4 || w->type == QUANT_Q8);
    assert(w->group >= 32 && w->group % 32 == 0 && w->cols % w->group == 0);
    const int64_t rows = w->rows, cols = w->cols, nblk = cols / 32, G = w->group;
    const int64_t ng = cols / G, bpg = G / 32, bb = qmm_blk_bytes(w->type);
    const int q4 = w->type == QUANT_Q4;
    uint8_t *qs = dst;
    uint16_t *sc = (uint16_t *)(qs + qmm_packed_qs_bytes(w->type, rows, cols));
    const uint8_t *src = w->data;
    const uint16_t *ssrc = w->scale;
    if (rows % QMM_RG) /* the padding rows: zero weights and scales */
        memset(dst, 0, cpu_qmm_packed_bytes(w->type, rows, cols, w->group));
    /* row groups across the threads, one row at a time, each 32-column block's unsigned
     * values gathered into u and scattered into its lane of the row group's block (Q4
     * g32: the file's 4-byte chunks as they are); no divisions per element */
    const int64_t nrg = (rows + QMM_RG - 1) / QMM_RG;
#pragma omp parallel for schedule(static) if (rows * cols > QMM_PAR_MIN)
    for (int64_t rg = 0; rg < nrg; rg++)
        for (int64_t lane = 0; lane < QMM_RG && rg * QMM_RG + lane < rows; lane++) {
            const int64_t r = rg * QMM_RG + lane;
            for (int64_t g = 0; g < ng; g++) {
                sc[(rg * ng + g) * QMM_RG + lane] = ssrc[r * ng + g];
                for (int64_t bi = 0; bi < bpg; bi++) {
                    const int64_t b = g * bpg + bi;
                    uint8_t *blk = qs + (rg * nblk + b) * bb + lane * 4;
                    if (q4 && G == 32) { /* packed chunk c is file bytes 4c .. 4c+3 as they are */
                        const uint8_t *gp = src + r * (cols / 2) + b * 16;
                        for (int c = 0; c < 4; c++)
                            memcpy(blk + c * 64, gp + 4 * c, 4);
                        continue;
                    }
                    uint8_t u[32];
                    if (q4) { /* file: element j of a group is byte j's low nibble (j < G/2),
                               * else byte j - G/2's high nibble */
                        const uint8_t *gp = src + r * (cols / 2) + g * (G / 2);
                        for (int k = 0; k < 32; k++) {
                            int64_t j = bi * 32 + k;
                            u[k] = j < G / 2 ? gp[j] & 15 : gp[j - G / 2] >> 4;
                        }
                    } else {
                        const uint8_t *bp = src + r * cols + b * 32;
                        for (int k = 0; k < 32; k++)
                            u[k] = bp[k] ^ 0x80;
                    }
                    if (q4) /* chunk c: low nibbles columns 4c.., high nibbles 16 + 4c.. */
                        for (int k = 0; k < 16; k++)
                            blk[(k >> 2) * 64 + (k & 3)] = (uint8_t)(u[k] | u[k + 16] << 4);
                    else
                        for (int k = 0; k < 32; k++)
                            blk[(k >> 2) * 64 + (k & 3)] = u[k];
                }
            }
        }
}

typedef struct {
    const uint8_t *qs;     /* packed qs plane */
    const uint16_t *scale; /* packed scale plane */
    int q4, off;
    int64_t rows, cols, nblk, ngroups, nrg, bb;
    int bpg;               /* blocks per weight group */
    const int8_t *q;       /* [n][cols] quantised activations, column order */
    const float *d;        /* [n][nblk] block scales */
    const int32_t *corr;   /* [n][nblk] -off * sum of the block's q */
} QmmPk;

/* out[(g * NT + j) * 16 + l] = row (rg0 + g) * 16 + l of W . token t0 + j over blocks
 * b0 .. b1 */
typedef void (*QmmPkFn)(const QmmPk *p, int64_t rg0, int t0, int64_t b0, int64_t b1,
                        float *out);

static void qmm_pk_quantize(const QmmPk *p, int8_t *q, float *d, int32_t *corr,
                            const float *x)
{
    float (*quarter_fn)(const float *, int64_t, int64_t, int8_t *) = qmm_quarter_c;
#ifdef QMM_X86
    if (cpucaps_get() & CPUCAPS_AVX2)
        quarter_fn = qmm_quarter_avx2;
#endif
    for (int64_t b = 0; b < p->nblk; b++) {
        int8_t *qb = q + 32 * b;
        d[b] = quarter_fn(x, 32 * b, 32 * b, qb);
        quarter_fn(x, 32 * b + 16, 32 * b, qb + 16);
        int32_t s = 0;
        for (int k = 0; k < 32; k++)
            s += qb[k];
        corr[b] = -p->off * s;
    }
}

/* plain C: the oracle */
static void qmm_pk_c_tile(const QmmPk *p, int64_t rg0, int t0, int64_t b0, int64_t b1,
                          float *out, int ng, int nt)
{
    for (int g = 0; g < ng; g++)
        for (int j = 0; j < nt; j++)
            for (int l = 0; l < QMM_RG; l++) {
                int64_t rg = rg0 + g, t = t0 + j;
                float acc = 0.0f;
                for (int64_t b = b0; b < b1; b++) {
                    const uint8_t *blk = p->qs + (rg * p->nblk + b) * p->bb;
                    const int8_t *qa = p->q + t * p->cols + 32 * b;
                    int32_t s = p->corr[t * p->nblk + b];
                    for (int k = 0; k < 32; k++) {
                        int chunk = k / 4, pos = k % 4, u;
                        if (p->q4) {
                            uint8_t byte = blk[(chunk & 3) * 64 + l * 4 + pos];
                            u = chunk < 4 ? byte & 15 : byte >> 4;
                        } else {
                            u = blk[chunk * 64 + l * 4 + pos];
                        }
                        s += u * qa[k];
                    }
                    float sw = half_f16_to_f32(
                        p->scale[(rg * p->ngroups + b / p->bpg) * QMM_RG + l]);
                    acc += (float)s * (sw * p->d[t * p->nblk + b]);
                }
                out[(g * nt + j) * QMM_RG + l] = acc;
            }
}

#define QMM_PK_SHAPES(M, Q)                                                                    \
    M(Q, 1, 1) M(Q, 1, 2) M(Q, 1, 3) M(Q, 1, 4) M(Q, 1, 5) M(Q, 1, 6) M(Q, 1, 7) M(Q, 1, 8)    \
    M(Q, 2, 1) M(Q, 2, 2) M(Q, 2, 3) M(Q, 2, 4) M(Q, 2, 5) M(Q, 2, 6) M(Q, 2, 7) M(Q, 2, 8)
#define QMM_PK_ROW(P, Q)                                                                       \
    {{P##_##Q##_1x1, P##_##Q##_1x2, P##_##Q##_1x3, P##_##Q##_1x4,                              \
      P##_##Q##_1x5, P##_##Q##_1x6, P##_##Q##_1x7, P##_##Q##_1x8},                             \
     {P##_##Q##_2x1, P##_##Q##_2x2, P##_##Q##_2x3, P##_##Q##_2x4,                              \
      P##_##Q##_2x5, P##_##Q##_2x6, P##_##Q##_2x7, P##_##Q##_2x8}}

#define QMM_PK_TILE_NT 8 /* most tokens per tile: one unpacked row group serves them all */

/* the C tile reads the type from the context: both rows of the table are the same */
#define QMM_PK_C_DEF(Q, NG, NT)                                                                \
    static void qmm_pk_c_##Q##_##NG##x##NT(const QmmPk *p, int64_t rg0, int t0, int64_t b0,   \
                                           int64_t b1, float *out)                             \
    {                                                                                          \
        qmm_pk_c_tile(p, rg0, t0, b0, b1, out, NG, NT);                                        \
    }
QMM_PK_SHAPES(QMM_PK_C_DEF, x)

/* [q4][NG-1][NT-1] */
typedef QmmPkFn QmmPkTab[2][2][QMM_PK_TILE_NT];
static const QmmPkTab qmm_pk_tab_c = {QMM_PK_ROW(qmm_pk_c, x), QMM_PK_ROW(qmm_pk_c, x)};

#ifdef QMM_X86
/* s += w (u8) . the 4 signed bytes at a broadcast to every lane: vpdpbusd with an embedded
 * broadcast operand. Written in asm because GCC loads the broadcast into a register and,
 * seeing the same activations for both row groups, hoists them all, spilling the
 * accumulators. */
static inline __attribute__((always_inline)) QMM_T512 __m512i
qmm_dpbusd_bcst(__m512i s, __m512i w, const int32_t *a)
{
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(s) : "v"(w), "m"(*a));
    return s;
}

/* AVX-512 VNNI: NG row groups x NT tokens of zmm accumulators, one block of 32 columns at
 * a time. A row group's 8 weight vectors are unpacked once and serve NT tokens before the
 * next group's: 8 + NG * NT registers live (at most 24 of 32), so nothing spills; each
 * token's 4 activation bytes are a broadcast load per vpdpbusd. */
static inline __attribute__((always_inline)) QMM_T512 void
qmm_pk512_tile(const QmmPk *p, int64_t rg0, int t0, int64_t b0, int64_t b1, float *out,
               const int Q4, const int NG, const int NT)
{
    __m512 acc[2][QMM_PK_TILE_NT];
#pragma GCC unroll 2
    for (int g = 0; g < NG; g++)
#pragma GCC unroll 8
        for (int j = 0; j < NT; j++)
            acc[g][j] = _mm512_setzero_ps();
    const int8_t *qa = p->q + t0 * p->cols;
    const float *dd = p->d + t0 * p->nblk;
    const int32_t *cc = p->corr + t0 * p->nblk;
    const int64_t cols = p->cols, nblk = p->nblk, bb = Q4 ? 256 : 512;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    /* the block's weight group without a division per block */
    int64_t gi = b0 / p->bpg, gk = b0 % p->bpg;
    for (int64_t b = b0; b < b1; b++) {
#pragma GCC unroll 2
        for (int g = 0; g < NG; g++) {
            const uint8_t *blk = p->qs + ((rg0 + g) * nblk + b) * bb;
            _mm_prefetch((const char *)blk + 4 * bb, _MM_HINT_T0);
            __m512i wv[8];
            if (Q4) {
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) {
                    __m512i v = _mm512_load_si512(blk + 64 * k);
                    wv[k] = _mm512_and_si512(v, m4);
                    wv[k + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
                }
            } else {
                _mm_prefetch((const char *)blk + 4 * bb + 256, _MM_HINT_T0);
#pragma GCC unroll 8
                for (int k = 0; k < 8; k++)
                    wv[k] = _mm512_load_si512(blk + 64 * k);
            }
            const __m512 sv = _mm512_cvtph_ps(_mm256_loadu_si256(
                (const __m256i *)(p->scale + ((rg0 + g) * p->ngroups + gi) * QMM_RG)));
#pragma GCC unroll 8
            for (int j = 0; j < NT; j++) {
                const int32_t *a4 = (const int32_t *)(qa + j * cols + 32 * b);
                __m512i s = _mm512_set1_epi32(cc[j * nblk + b]);
#pragma GCC unroll 8
                for (int k = 0; k < 8; k++)
                    s = qmm_dpbusd_bcst(s, wv[k], a4 + k);
                const __m512 sd = _mm512_mul_ps(sv, _mm512_set1_ps(dd[j * nblk + b]));
                acc[g][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), sd, acc[g][j]);
            }
        }
        if (++gk == p->bpg) {
            gk = 0;
            gi++;
        }
    }
#pragma GCC unroll 2
    for (int g = 0; g < NG; g++)
#pragma GCC unroll 8
        for (int j = 0; j < NT; j++)
            _mm512_storeu_ps(out + (g * NT + j) * QMM_RG, acc[g][j]);
}

#define QMM_PK512_FN(Q, NG, NT)                                                                \
    static QMM_T512 void qmm_pk512_##Q##_##NG##x##NT(const QmmPk *p, int64_t rg0, int t0,     \
                                                     int64_t b0, int64_t b1, float *out)       \
    {                                                                                          \
        qmm_pk512_tile(p, rg0, t0, b0, b1, out, QMM_IS_##Q, NG, NT);                           \
    }
QMM_PK_SHAPES(QMM_PK512_FN, q8)
QMM_PK_SHAPES(QMM_PK512_FN, q4)
static const QmmPkTab qmm_pk_tab_512 = {QMM_PK_ROW(qmm_pk512, q8), QMM_PK_ROW(qmm_pk512, q4)};
#endif

int cpu_qmm_packed_available(CpuQmmKernel k)
{
    return k == CPU_QMM_C || (k == CPU_QMM_AVX512VNNI && cpu_qmm_kernel_available(k));
}

CpuQmmKernel cpu_qmm_packed_kernel(void)
{
    return cpu_qmm_packed_available(CPU_QMM_AVX512VNNI) ? CPU_QMM_AVX512VNNI : CPU_QMM_C;
}

/* Row groups rg0 .. rg1 of y, all tokens: one thread's share. */
static void qmm_pk_rows(const QmmPkTab *tab, const QmmPk *p, int64_t rg0, int64_t rg1,
                        int n_tok, Tensor *y, const Tensor *bias)
{
    float *yd = y->data, out[2 * QMM_PK_TILE_NT * QMM_RG];
    const int64_t ldy = y->cols;
    /* decode: the weights streamed once, front to back; prefill: chunks of columns so a
     * row pair's weights stay in L1 across the token tiles */
    const int64_t kc = n_tok <= 8 ? p->nblk : QMM_PKB;
    const int tb_n = n_tok <= 8 ? n_tok : QMM_PTB;
    /* GEMM tiles of 2 x 6: 2 x 8 spills accumulators (GCC) and measured no faster; up to
     * 8 tokens one tile of all of them */
    const int tnt = n_tok <= QMM_PK_TILE_NT ? n_tok : 6;
    for (int tb = 0; tb < n_tok; tb += tb_n) {
        int te = tb + tb_n < n_tok ? tb + tb_n : n_tok;
        for (int64_t b0 = 0; b0 < p->nblk; b0 += kc) {
            int64_t b1 = b0 + kc < p->nblk ? b0 + kc : p->nblk;
            for (int64_t rg = rg0; rg < rg1; rg += 2) {
                int ng = rg1 - rg < 2 ? 1 : 2;
                for (int t = tb; t < te; t += tnt) {
                    int nt = te - t < tnt ? te - t : tnt;
                    (*tab)[p->q4][ng - 1][nt - 1](p, rg, t, b0, b1, out);
                    for (int g = 0; g < ng; g++) {
                        int64_t r = (rg + g) * QMM_RG;
                        int m = p->rows - r < QMM_RG ? (int)(p->rows - r) : QMM_RG;
                        for (int j = 0; j < nt; j++) {
                            float *yr = yd + (t + j) * ldy + r;
                            const float *o = out + (g * nt + j) * QMM_RG;
                            if (b0 == 0)
                                for (int l = 0; l < m; l++)
                                    yr[l] = o[l] + qmm_bias(bias, r + l);
                            else
                                for (int l = 0; l < m; l++)
                                    yr[l] += o[l];
                        }
                    }
                }
            }
        }
    }
}

void cpu_qmm_matmul_packed_with(CpuQmmKernel k, Tensor *y, const Tensor *x, const Tensor *w,
                                const Tensor *bias)
{
    assert(w->type == QUANT_Q4 || w->type == QUANT_Q8);
    assert(x->cols == w->cols && y->cols == w->rows && y->rows == x->rows);
    assert(w->group >= 32 && w->group % 32 == 0 && w->cols % w->group == 0);
    VLQ_ASSERT(cpu_qmm_packed_available(k));
    int64_t n = x->rows, cols = w->cols;
    if (n == 0)
        return;
    QmmPk p = {
        .qs = w->data,
        .scale = w->scale,
        .q4 = w->type == QUANT_Q4,
        .off = w->type == QUANT_Q4 ? 8 : 128,
        .rows = w->rows,
        .cols = cols,
        .nblk = cols / 32,
        .ngroups = cols / w->group,
        .nrg = (w->rows + QMM_RG - 1) / QMM_RG,
        .bb = qmm_blk_bytes(w->type),
        .bpg = w->group / 32,
    };
    char err[VLQ_ERRLEN] = "";
    /* n * cols q bytes + 8 bytes per block: within cpu_qmm_scratch_bytes */
    uint8_t *s = qmm_scratch_get(cpu_qmm_scratch_bytes(n, cols), err);
    if (!s) {
        fprintf(stderr, "fatal: %s\n", err);
        abort();
    }
    int8_t *q = (int8_t *)s;
    float *d = (float *)(s + (n * cols + 63) / 64 * 64);
    int32_t *corr = (int32_t *)(d + n * p.nblk);
    p.q = q;
    p.d = d;
    p.corr = corr;
    const QmmPkTab *tab = &qmm_pk_tab_c;
#ifdef QMM_X86
    if (k == CPU_QMM_AVX512VNNI)
        tab = &qmm_pk_tab_512;
#endif
    const float *xd = x->data;
    int64_t work = n * cols * w->rows;
#pragma omp parallel if (work > QMM_PAR_MIN)
    {
        int nth = omp_get_num_threads(), tid = omp_get_thread_num();
#pragma omp for schedule(static)
        for (int64_t t = 0; t < n; t++)
            qmm_pk_quantize(&p, q + t * cols, d + t * p.nblk, corr + t * p.nblk, xd + t * cols);
        /* equal shares of the row groups, in pairs */
        int64_t npair = (p.nrg + 1) / 2;
        int64_t rg0 = 2 * (npair * tid / nth), rg1 = 2 * (npair * (tid + 1) / nth);
        if (rg1 > p.nrg)
            rg1 = p.nrg;
        qmm_pk_rows(tab, &p, rg0, rg1, (int)n, y, bias);
    }
}

void cpu_qmm_matmul_packed(Tensor *y, const Tensor *x, const Tensor *w, const Tensor *bias)
{
    cpu_qmm_matmul_packed_with(cpu_qmm_packed_kernel(), y, x, w, bias);
}

Tensor cpu_qmm_packed_tensor(const Tensor *w, void *dst)
{
    Tensor t = *w;
    t.data = dst;
    t.scale = (uint8_t *)dst + qmm_packed_qs_bytes(w->type, w->rows, w->cols);
    t.owned = 0;
    return t;
}

void cpu_qmm_packed_row(const Tensor *w, int64_t r, float *out)
{
    assert(r >= 0 && r < w->rows);
    const int64_t nblk = w->cols / 32, bb = qmm_blk_bytes(w->type), ng = w->cols / w->group;
    const int64_t rg = r / QMM_RG, lane = r % QMM_RG, bpg = w->group / 32;
    const uint8_t *qs = w->data;
    const uint16_t *sc = w->scale;
    const int q4 = w->type == QUANT_Q4;
    for (int64_t b = 0; b < nblk; b++) {
        const uint8_t *blk = qs + (rg * nblk + b) * bb;
        float s = half_f16_to_f32(sc[(rg * ng + b / bpg) * QMM_RG + lane]);
        for (int k = 0; k < 32; k++) {
            int chunk = k / 4, pos = k % 4, v;
            if (q4) {
                uint8_t byte = blk[(chunk & 3) * 64 + lane * 4 + pos];
                v = (chunk < 4 ? byte & 15 : byte >> 4) - 8;
            } else {
                v = (int)blk[chunk * 64 + lane * 4 + pos] - 128;
            }
            out[32 * b + k] = s * (float)v;
        }
    }
}
