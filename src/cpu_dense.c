/* cpu_dense: blocked, packed f32 GEMM and a GEMV path for F32/F16/BF16 weights (see
 * cpu_dense.h for the blocking and the numerics).
 *
 * Each ISA variant is a set of functions compiled with __attribute__((target)) so the
 * build flags stay baseline x86-64; the variant is picked per call from the caps (a
 * table lookup, no global state). The plain C variant is the reference the tests hold
 * the vector ones to, beside ops_ref. */
#include "cpu_dense.h"
#include "backend_int.h"
#include "cpucaps.h"
#include "util.h"

#include <assert.h>
#include <omp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define CPU_DENSE_X86 1
#include <immintrin.h>
#endif

#define CPU_DENSE_KC 256  /* input columns per packed block: a B micro-panel is 32 KB (L1) */
#define CPU_DENSE_NC 256  /* output features per packed weight block: 256 KB (L2) */
#define CPU_DENSE_TB 1008 /* tokens per work item at most: the packed token block is 1 MB (L2) */
#define CPU_DENSE_MR_MAX 14
#define CPU_DENSE_NR_MAX 32
/* Multiply-adds below which a matmul runs on the calling thread (backend_cpu.c's rule). */
#define CPU_DENSE_PAR_MIN (1 << 16)

/* One thread's packing buffers, made on the thread's first GEMM and kept for its life:
 * the steady state allocates nothing and each OpenMP thread has its own. On the heap,
 * not as a static __thread array: glibc carves static TLS out of every thread's stack
 * (threads of other libraries with small stacks would fail to start). */
typedef struct {
    float bp[CPU_DENSE_NC * CPU_DENSE_KC];      /* packed weights: NC/NR panels [KC][NR] */
    float ap[CPU_DENSE_TB * CPU_DENSE_KC + 16]; /* packed tokens: TB/MR panels [KC][MR], slack */
    float row[CPU_DENSE_KC];                    /* one weight row converted to f32 */
    float ct[CPU_DENSE_MR_MAX * CPU_DENSE_NR_MAX]; /* an edge tile */
    float bias[CPU_DENSE_NC];                   /* the output block's bias, f32 */
    float zero[CPU_DENSE_NR_MAX];               /* zeros: an edge tile's "bias" */
} CpuDenseScratch;

/* The process-wide key whose destructor frees a thread's buffers when it exits. */
static pthread_key_t cpu_dense_key;
static pthread_once_t cpu_dense_once = PTHREAD_ONCE_INIT;
static __thread CpuDenseScratch *cpu_dense_tls;

static void cpu_dense_key_init(void)
{
    VLQ_ASSERT(pthread_key_create(&cpu_dense_key, free) == 0);
}

/* This thread's buffers (64-byte aligned, zeroed once); aborts when out of memory, as
 * every allocation here does (ops cannot fail). */
static CpuDenseScratch *cpu_dense_scratch(void)
{
    if (!cpu_dense_tls) {
        char *raw = xmalloc(sizeof(CpuDenseScratch) + 64);
        CpuDenseScratch *s = (CpuDenseScratch *)(raw + (64 - (uintptr_t)raw % 64));
        memset(s, 0, sizeof *s);
        pthread_once(&cpu_dense_once, cpu_dense_key_init);
        VLQ_ASSERT(pthread_setspecific(cpu_dense_key, raw) == 0);
        cpu_dense_tls = s;
    }
    return cpu_dense_tls;
}

/* One ISA variant. */
typedef struct {
    const char *name;
    int mr, nr; /* microkernel tile: tokens x output features */
    /* c[mr][ldc] += ap[kc][mr] . bp[kc][nr] (all mr x nr elements of c); with b0 (the first
     * K block) c = b0[j] + the products instead: c is not read */
    void (*kern)(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                 const float *b0);
    /* dst[0..n) = src[0..n) as f32, src of type t */
    void (*cvt)(QuantType t, const void *src, int64_t n, float *dst);
    /* ap[k][i] = x[t + i][pc + k] for k < kc, i < mr (zero for i >= m) */
    void (*pack_a)(float *ap, const Tensor *x, int64_t t, int m, int64_t pc, int64_t kc);
    /* bp[k][j] = W[o + j][pc + k] for k < kc, j < nr (zero for o + j >= o1); row: kc floats */
    void (*pack_b)(float *bp, float *row, const Tensor *w, int64_t o, int64_t o1, int64_t pc,
                   int64_t kc);
    /* y[t][o] = x[t] . W[o] (no bias) for o in [o0, o1), t in [t0, t1), t1 - t0 <= 4 */
    void (*gemv)(Tensor *y, const Tensor *x, const Tensor *w, int64_t o0, int64_t o1,
                 int64_t t0, int64_t t1);
} CpuDenseKernel;

#define AI inline __attribute__((always_inline))

static const void *cpu_dense_wrow(const Tensor *w, int64_t r)
{
    return (const char *)w->data + bk_dense_bytes(w->type, r * w->cols);
}

/* The generic packers (scalar transposes), inlined with mr / nr constant. */
static AI void dense_pack_a_gen(int mr, float *ap, const Tensor *x, int64_t t, int m, int64_t pc,
                                int64_t kc)
{
    for (int i = 0; i < mr; i++) {
        if (i >= m) {
            for (int64_t k = 0; k < kc; k++)
                ap[k * mr + i] = 0.0f;
            continue;
        }
        const float *xr = (const float *)x->data + (t + i) * x->cols + pc;
        for (int64_t k = 0; k < kc; k++)
            ap[k * mr + i] = xr[k];
    }
}

/* Each weight row is converted to f32 in one pass (cvt), then spread with stride nr (the
 * panel, 32 KB at most, stays in L1). */
static AI void dense_pack_b_gen(int nr, void (*cvt)(QuantType, const void *, int64_t, float *),
                                float *bp, float *row, const Tensor *w, int64_t o, int64_t o1,
                                int64_t pc, int64_t kc)
{
    for (int j = 0; j < nr; j++) {
        float *dst = bp + j;
        if (o + j >= o1) {
            for (int64_t k = 0; k < kc; k++)
                dst[k * nr] = 0.0f;
            continue;
        }
        cvt(w->type, (const char *)cpu_dense_wrow(w, o + j) + bk_dense_bytes(w->type, pc), kc,
            row);
        for (int64_t k = 0; k < kc; k++)
            dst[k * nr] = row[k];
    }
}

/* ---- plain C: the reference variant ---- */

#define C_MR 4
#define C_NR 16

static void dense_kern_c(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                         const float *b0)
{
    float acc[C_MR][C_NR] = {{0}};
    for (int64_t k = 0; k < kc; k++, ap += C_MR, bp += C_NR)
        for (int i = 0; i < C_MR; i++)
            for (int j = 0; j < C_NR; j++)
                acc[i][j] += ap[i] * bp[j];
    for (int i = 0; i < C_MR; i++)
        for (int j = 0; j < C_NR; j++)
            c[i * ldc + j] = (b0 ? b0[j] : c[i * ldc + j]) + acc[i][j];
}

static void dense_cvt_c(QuantType t, const void *src, int64_t n, float *dst)
{
    const uint16_t *h = src;
    switch (t) {
    case QUANT_F32: memcpy(dst, src, (size_t)n * 4); break;
    case QUANT_F16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = half_f16_to_f32(h[i]);
        break;
    case QUANT_BF16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = half_bf16_to_f32(h[i]);
        break;
    default: assert(!"cpu_dense: not a dense type");
    }
}

static void dense_gemv_c(Tensor *y, const Tensor *x, const Tensor *w, int64_t o0, int64_t o1,
                         int64_t t0, int64_t t1)
{
    float buf[CPU_DENSE_KC];
    float *yr[4];
    for (int64_t t = t0; t < t1; t++)
        yr[t - t0] = (float *)y->data + t * y->cols;
    for (int64_t o = o0; o < o1; o++) {
        float acc[4] = {0};
        for (int64_t c = 0; c < w->cols; c += CPU_DENSE_KC) {
            int64_t kc = w->cols - c < CPU_DENSE_KC ? w->cols - c : CPU_DENSE_KC;
            dense_cvt_c(w->type, (const char *)cpu_dense_wrow(w, o) +
                        bk_dense_bytes(w->type, c), kc, buf);
            for (int64_t t = t0; t < t1; t++) {
                const float *xr = (const float *)x->data + t * x->cols + c;
                float s = 0.0f;
                for (int64_t k = 0; k < kc; k++)
                    s += xr[k] * buf[k];
                acc[t - t0] += s;
            }
        }
        for (int64_t t = t0; t < t1; t++)
            yr[t - t0][o] = acc[t - t0];
    }
}

static void dense_pack_a_c(float *ap, const Tensor *x, int64_t t, int m, int64_t pc, int64_t kc)
{
    dense_pack_a_gen(C_MR, ap, x, t, m, pc, kc);
}

static void dense_pack_b_c(float *bp, float *row, const Tensor *w, int64_t o, int64_t o1,
                           int64_t pc, int64_t kc)
{
    dense_pack_b_gen(C_NR, dense_cvt_c, bp, row, w, o, o1, pc, kc);
}

static const CpuDenseKernel dense_c = {"c 4x16 f32",   C_MR,           C_NR,          dense_kern_c,
                                       dense_cvt_c,    dense_pack_a_c, dense_pack_b_c,
                                       dense_gemv_c};

#ifdef CPU_DENSE_X86

/* ---- AVX2 + FMA + F16C ---- */

#define T256 __attribute__((target("avx2,fma,f16c")))
#define A2_MR 6
#define A2_NR 16

T256 static void dense_kern_avx2(int64_t kc, const float *ap, const float *bp, float *c,
                                 int64_t ldc, const float *b0)
{
    /* 12 accumulators + 2 weight vectors + 1 broadcast = 15 of 16 ymm registers */
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    const char *pf = (const char *)(c + A2_MR * ldc); /* the next C tile: see the AVX-512 kernel */
    for (int64_t k = 0; k < kc; k++, ap += A2_MR, bp += A2_NR) {
        if (!(k & 3) && k < 4 * 2 * A2_MR) {
            int64_t line = k >> 2;
            _mm_prefetch(pf + (line >> 1) * ldc * 4 + (line & 1) * 32, _MM_HINT_T0);
        }
        __m256 w0 = _mm256_load_ps(bp), w1 = _mm256_load_ps(bp + 8), a;
#define A2_ROW(i)                                                                                \
    a = _mm256_broadcast_ss(ap + i);                                                             \
    c##i##0 = _mm256_fmadd_ps(a, w0, c##i##0);                                                   \
    c##i##1 = _mm256_fmadd_ps(a, w1, c##i##1);
        A2_ROW(0) A2_ROW(1) A2_ROW(2) A2_ROW(3) A2_ROW(4) A2_ROW(5)
#undef A2_ROW
    }
    __m256 o0, o1;
#define A2_OUT(i)                                                                                \
    o0 = b0 ? _mm256_loadu_ps(b0) : _mm256_loadu_ps(c + i * ldc);                                \
    o1 = b0 ? _mm256_loadu_ps(b0 + 8) : _mm256_loadu_ps(c + i * ldc + 8);                        \
    _mm256_storeu_ps(c + i * ldc, _mm256_add_ps(o0, c##i##0));                                   \
    _mm256_storeu_ps(c + i * ldc + 8, _mm256_add_ps(o1, c##i##1));
    A2_OUT(0) A2_OUT(1) A2_OUT(2) A2_OUT(3) A2_OUT(4) A2_OUT(5)
#undef A2_OUT
}

/* 8 elements of a weight row at p (type t) as f32 */
T256 static AI __m256 dense_ld8(QuantType t, const void *p)
{
    if (t == QUANT_F32)
        return _mm256_loadu_ps(p);
    __m128i h = _mm_loadu_si128(p);
    if (t == QUANT_F16)
        return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

T256 static void dense_cvt_avx2(QuantType t, const void *src, int64_t n, float *dst)
{
    int64_t i = 0, es = t == QUANT_F32 ? 4 : 2;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, dense_ld8(t, (const char *)src + i * es));
    if (i < n)
        dense_cvt_c(t, (const char *)src + i * es, n - i, dst + i);
}

T256 static AI float dense_hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 4 weight rows x nt (1 or 2) tokens: 8 accumulators, the weights converted in registers;
 * rows past the end repeat the last row (results dropped). */
T256 static AI void dense_gemv_avx2_body(QuantType ty, int nt, Tensor *y, const Tensor *x,
                                         const Tensor *w, int64_t o, int64_t o1, int64_t t)
{
    int64_t in = w->cols, es = ty == QUANT_F32 ? 4 : 2, k = 0;
    const char *wr[4];
    const float *xr[2];
    for (int r = 0; r < 4; r++)
        wr[r] = cpu_dense_wrow(w, o + r < o1 ? o + r : o1 - 1);
    for (int j = 0; j < 2; j++)
        xr[j] = (const float *)x->data + (t + (j < nt ? j : 0)) * x->cols;
    __m256 acc[4][2];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
#pragma GCC unroll 2
        for (int j = 0; j < 2; j++)
            acc[r][j] = _mm256_setzero_ps();
    for (; k + 8 <= in; k += 8) {
        __m256 wv[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++)
            wv[r] = dense_ld8(ty, wr[r] + k * es);
#pragma GCC unroll 2
        for (int j = 0; j < nt; j++) {
            __m256 xv = _mm256_loadu_ps(xr[j] + k);
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++)
                acc[r][j] = _mm256_fmadd_ps(wv[r], xv, acc[r][j]);
        }
    }
    for (int r = 0; r < 4 && o + r < o1; r++)
        for (int j = 0; j < nt; j++) {
            float s = dense_hsum8(acc[r][j]);
            for (int64_t e = k; e < in; e++) {
                float wf;
                dense_cvt_c(ty, wr[r] + e * es, 1, &wf);
                s += xr[j][e] * wf;
            }
            ((float *)y->data)[(t + j) * y->cols + o + r] = s;
        }
}

T256 static void dense_gemv_avx2(Tensor *y, const Tensor *x, const Tensor *w, int64_t o0,
                                 int64_t o1, int64_t t0, int64_t t1)
{
    for (int64_t o = o0; o < o1; o += 4)
        for (int64_t t = t0; t < t1; t += 2) {
            int two = t + 1 < t1;
            switch (w->type) {
            case QUANT_F32:
                if (two)
                    dense_gemv_avx2_body(QUANT_F32, 2, y, x, w, o, o1, t);
                else
                    dense_gemv_avx2_body(QUANT_F32, 1, y, x, w, o, o1, t);
                break;
            case QUANT_F16:
                if (two)
                    dense_gemv_avx2_body(QUANT_F16, 2, y, x, w, o, o1, t);
                else
                    dense_gemv_avx2_body(QUANT_F16, 1, y, x, w, o, o1, t);
                break;
            default:
                if (two)
                    dense_gemv_avx2_body(QUANT_BF16, 2, y, x, w, o, o1, t);
                else
                    dense_gemv_avx2_body(QUANT_BF16, 1, y, x, w, o, o1, t);
                break;
            }
        }
}

T256 static void dense_pack_a_avx2(float *ap, const Tensor *x, int64_t t, int m, int64_t pc,
                                   int64_t kc)
{
    dense_pack_a_gen(A2_MR, ap, x, t, m, pc, kc);
}

T256 static void dense_pack_b_avx2(float *bp, float *row, const Tensor *w, int64_t o, int64_t o1,
                                   int64_t pc, int64_t kc)
{
    dense_pack_b_gen(A2_NR, dense_cvt_avx2, bp, row, w, o, o1, pc, kc);
}

static const CpuDenseKernel dense_avx2 = {
    "avx2 6x16 f32-fma", A2_MR,           A2_NR, dense_kern_avx2, dense_cvt_avx2,
    dense_pack_a_avx2,   dense_pack_b_avx2, dense_gemv_avx2};

/* ---- AVX-512 (F, BW, VL, DQ) ---- */

#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define A5_MR 14
#define A5_NR 32

T512 static void dense_kern_avx512(int64_t kc, const float *ap, const float *bp, float *c,
                                   int64_t ldc, const float *b0)
{
    /* 28 accumulators + 2 weight vectors + 1 broadcast = 31 of 32 zmm registers: per k,
     * 2 loads and 14 broadcasts feed 28 FMAs */
    __m512 z = _mm512_setzero_ps();
    __m512 c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z, c40 = z,
           c41 = z, c50 = z, c51 = z, c60 = z, c61 = z, c70 = z, c71 = z, c80 = z, c81 = z,
           c90 = z, c91 = z, cA0 = z, cA1 = z, cB0 = z, cB1 = z, cC0 = z, cC1 = z, cD0 = z,
           cD1 = z;
    /* The C tile (14 rows a y row apart, in L3 or memory) is read and written at the end:
     * fetch the next one (the caller's next token micro-panel) one line every 4 k steps,
     * so the misses overlap the FMAs without filling the line-fill buffers at once (a
     * prefetch never faults: past the end of y it is dropped). */
    const char *pf = (const char *)(c + A5_MR * ldc);
    for (int64_t k = 0; k < kc; k++, ap += A5_MR, bp += A5_NR) {
        if (!(k & 3) && k < 4 * 2 * A5_MR) {
            int64_t line = k >> 2;
            _mm_prefetch(pf + (line >> 1) * ldc * 4 + (line & 1) * 64, _MM_HINT_T0);
        }
        __m512 w0 = _mm512_load_ps(bp), w1 = _mm512_load_ps(bp + 16), a;
#define A5_ROW(i, n)                                                                             \
    a = _mm512_set1_ps(ap[n]);                                                                   \
    c##i##0 = _mm512_fmadd_ps(a, w0, c##i##0);                                                   \
    c##i##1 = _mm512_fmadd_ps(a, w1, c##i##1);
        A5_ROW(0, 0) A5_ROW(1, 1) A5_ROW(2, 2) A5_ROW(3, 3) A5_ROW(4, 4) A5_ROW(5, 5)
        A5_ROW(6, 6) A5_ROW(7, 7) A5_ROW(8, 8) A5_ROW(9, 9) A5_ROW(A, 10) A5_ROW(B, 11)
        A5_ROW(C, 12) A5_ROW(D, 13)
#undef A5_ROW
    }
    __m512 o0, o1;
#define A5_OUT(i, n)                                                                             \
    o0 = b0 ? _mm512_loadu_ps(b0) : _mm512_loadu_ps(c + n * ldc);                                \
    o1 = b0 ? _mm512_loadu_ps(b0 + 16) : _mm512_loadu_ps(c + n * ldc + 16);                      \
    _mm512_storeu_ps(c + n * ldc, _mm512_add_ps(o0, c##i##0));                                   \
    _mm512_storeu_ps(c + n * ldc + 16, _mm512_add_ps(o1, c##i##1));
    A5_OUT(0, 0) A5_OUT(1, 1) A5_OUT(2, 2) A5_OUT(3, 3) A5_OUT(4, 4) A5_OUT(5, 5) A5_OUT(6, 6)
    A5_OUT(7, 7) A5_OUT(8, 8) A5_OUT(9, 9) A5_OUT(A, 10) A5_OUT(B, 11) A5_OUT(C, 12)
    A5_OUT(D, 13)
#undef A5_OUT
}

/* Up to 16 elements (mask m) of a weight row at p (type t) as f32; masked-off lanes 0. */
T512 static AI __m512 dense_ld16(QuantType t, const void *p, __mmask16 m)
{
    if (t == QUANT_F32)
        return _mm512_maskz_loadu_ps(m, p);
    __m256i h = _mm256_maskz_loadu_epi16(m, p);
    if (t == QUANT_F16)
        return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* 16 elements, unmasked (the main loops) */
T512 static AI __m512 dense_ld16u(QuantType t, const void *p)
{
    if (t == QUANT_F32)
        return _mm512_loadu_ps(p);
    __m256i h = _mm256_loadu_si256(p);
    if (t == QUANT_F16)
        return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

T512 static void dense_cvt_avx512(QuantType t, const void *src, int64_t n, float *dst)
{
    int64_t i = 0, es = t == QUANT_F32 ? 4 : 2;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, dense_ld16u(t, (const char *)src + i * es));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(dst + i, m, dense_ld16(t, (const char *)src + i * es, m));
    }
}

/* 4 weight rows x nt (1..4) tokens: 16 accumulators; rows past the end repeat the last
 * row (results dropped); the column tail is one masked step. */
T512 static AI void dense_gemv_avx512_body(QuantType ty, int nt, Tensor *y, const Tensor *x,
                                           const Tensor *w, int64_t o, int64_t o1, int64_t t)
{
    int64_t in = w->cols, es = ty == QUANT_F32 ? 4 : 2, k = 0;
    const char *wr[4];
    const float *xr[4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
        wr[r] = cpu_dense_wrow(w, o + r < o1 ? o + r : o1 - 1);
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++)
        xr[j] = (const float *)x->data + (t + (j < nt ? j : 0)) * x->cols;
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
            acc[r][j] = _mm512_setzero_ps();
    for (; k + 16 <= in; k += 16) {
        __m512 wv[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++)
            wv[r] = dense_ld16u(ty, wr[r] + k * es);
#pragma GCC unroll 4
        for (int j = 0; j < nt; j++) {
            __m512 xv = _mm512_loadu_ps(xr[j] + k);
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++)
                acc[r][j] = _mm512_fmadd_ps(wv[r], xv, acc[r][j]);
        }
    }
    if (k < in) {
        __mmask16 m = (__mmask16)((1u << (in - k)) - 1);
        __m512 wv[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++)
            wv[r] = dense_ld16(ty, wr[r] + k * es, m);
#pragma GCC unroll 4
        for (int j = 0; j < nt; j++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, xr[j] + k);
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++)
                acc[r][j] = _mm512_fmadd_ps(wv[r], xv, acc[r][j]);
        }
    }
    for (int r = 0; r < 4 && o + r < o1; r++)
        for (int j = 0; j < nt; j++)
            ((float *)y->data)[(t + j) * y->cols + o + r] = _mm512_reduce_add_ps(acc[r][j]);
}

#define A5_GEMV_NT(ty)                                                                           \
    switch (nt) {                                                                                \
    case 1: dense_gemv_avx512_body(ty, 1, y, x, w, o, o1, t); break;                             \
    case 2: dense_gemv_avx512_body(ty, 2, y, x, w, o, o1, t); break;                             \
    case 3: dense_gemv_avx512_body(ty, 3, y, x, w, o, o1, t); break;                             \
    default: dense_gemv_avx512_body(ty, 4, y, x, w, o, o1, t); break;                            \
    }

T512 static void dense_gemv_avx512(Tensor *y, const Tensor *x, const Tensor *w, int64_t o0,
                                   int64_t o1, int64_t t0, int64_t t1)
{
    int64_t t = t0;
    int nt = (int)(t1 - t0);
    for (int64_t o = o0; o < o1; o += 4)
        switch (w->type) {
        case QUANT_F32: A5_GEMV_NT(QUANT_F32) break;
        case QUANT_F16: A5_GEMV_NT(QUANT_F16) break;
        default: A5_GEMV_NT(QUANT_BF16) break;
        }
}
#undef A5_GEMV_NT

/* r[0..16) transposed in registers: r[c] lane i = old r[i] lane c. Unpack pairs of rows,
 * then pairs of pairs (a 4x4 transpose in each 128-bit lane), then move whole lanes. */
T512 static AI void dense_tr16(__m512 r[16])
{
    __m512 t[16], u[16];
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
        t[2 * j] = _mm512_unpacklo_ps(r[2 * j], r[2 * j + 1]);
        t[2 * j + 1] = _mm512_unpackhi_ps(r[2 * j], r[2 * j + 1]);
    }
#define A5_PD(v) _mm512_castps_pd(v)
#define A5_PS(v) _mm512_castpd_ps(v)
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) { /* u[4j + c] lane L: rows 4j..4j+3 at column 4L + c */
        u[4 * j] = A5_PS(_mm512_unpacklo_pd(A5_PD(t[4 * j]), A5_PD(t[4 * j + 2])));
        u[4 * j + 1] = A5_PS(_mm512_unpackhi_pd(A5_PD(t[4 * j]), A5_PD(t[4 * j + 2])));
        u[4 * j + 2] = A5_PS(_mm512_unpacklo_pd(A5_PD(t[4 * j + 1]), A5_PD(t[4 * j + 3])));
        u[4 * j + 3] = A5_PS(_mm512_unpackhi_pd(A5_PD(t[4 * j + 1]), A5_PD(t[4 * j + 3])));
    }
#undef A5_PD
#undef A5_PS
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        __m512 v = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88); /* lanes 0,2 of each */
        __m512 v2 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xdd); /* lanes 1,3 of each */
        __m512 z = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
        __m512 z2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xdd);
        r[c] = _mm512_shuffle_f32x4(v, z, 0x88);
        r[8 + c] = _mm512_shuffle_f32x4(v, z, 0xdd);
        r[4 + c] = _mm512_shuffle_f32x4(v2, z2, 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(v2, z2, 0xdd);
    }
}

/* 14 token rows in blocks of 16 columns: load (masked at the tail), transpose, and store
 * each column's 14 values with a 16-wide store whose last 2 lanes the next store
 * overwrites (the buffer has 16 floats of slack past the end). */
T512 static void dense_pack_a_avx512(float *ap, const Tensor *x, int64_t t, int m, int64_t pc,
                                     int64_t kc)
{
    const float *xr = (const float *)x->data + t * x->cols + pc;
    for (int64_t k0 = 0; k0 < kc; k0 += 16) {
        int nk = kc - k0 < 16 ? (int)(kc - k0) : 16;
        __mmask16 mk = (__mmask16)((1u << nk) - 1);
        __m512 r[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
            r[i] = i < m ? _mm512_maskz_loadu_ps(mk, xr + i * x->cols + k0) : _mm512_setzero_ps();
        dense_tr16(r);
        for (int k = 0; k < nk; k++)
            _mm512_storeu_ps(ap + (k0 + k) * A5_MR, r[k]);
    }
}

/* 32 weight rows as two halves of 16, in blocks of 16 columns: convert, transpose, store
 * each column's 16 values (aligned: the panel is [kc][32]). */
T512 static AI void dense_pack_b_avx512_t(QuantType ty, float *bp, const Tensor *w, int64_t o,
                                          int64_t o1, int64_t pc, int64_t kc)
{
    int64_t es = ty == QUANT_F32 ? 4 : 2;
    for (int h = 0; h < 2; h++) {
        const char *wr[16];
        for (int j = 0; j < 16; j++) {
            int64_t r = o + h * 16 + j;
            wr[j] = r < o1 ? (const char *)cpu_dense_wrow(w, r) + pc * es : NULL;
        }
        for (int64_t k0 = 0; k0 < kc; k0 += 16) {
            int nk = kc - k0 < 16 ? (int)(kc - k0) : 16;
            __mmask16 mk = (__mmask16)((1u << nk) - 1);
            __m512 r[16];
#pragma GCC unroll 16
            for (int j = 0; j < 16; j++)
                r[j] = wr[j] ? dense_ld16(ty, wr[j] + k0 * es, mk) : _mm512_setzero_ps();
            dense_tr16(r);
            for (int k = 0; k < nk; k++)
                _mm512_store_ps(bp + (k0 + k) * A5_NR + h * 16, r[k]);
        }
    }
}

T512 static void dense_pack_b_avx512(float *bp, float *row, const Tensor *w, int64_t o, int64_t o1,
                                     int64_t pc, int64_t kc)
{
    switch (w->type) {
    case QUANT_F32: dense_pack_b_avx512_t(QUANT_F32, bp, w, o, o1, pc, kc); break;
    case QUANT_F16: dense_pack_b_avx512_t(QUANT_F16, bp, w, o, o1, pc, kc); break;
    default: dense_pack_b_avx512_t(QUANT_BF16, bp, w, o, o1, pc, kc); break;
    }
}

static const CpuDenseKernel dense_avx512 = {
    "avx512 14x32 f32-fma", A5_MR,           A5_NR, dense_kern_avx512, dense_cvt_avx512,
    dense_pack_a_avx512,    dense_pack_b_avx512, dense_gemv_avx512};
#endif /* CPU_DENSE_X86 */

static const CpuDenseKernel *cpu_dense_pick(int caps)
{
#ifdef CPU_DENSE_X86
    if (caps & CPUCAPS_AVX512)
        return &dense_avx512;
    if (caps & CPUCAPS_AVX2)
        return &dense_avx2;
#endif
    return &dense_c;
}

/* ---- the blocked GEMM (shared by the variants) ---- */

/* One work item: y rows [t0, t1) x features [o0, o1) (t1 - t0 <= TB). Per block of KC
 * columns the item's tokens are packed once (the A block stays in L2 while every output
 * block passes), then per NC output features the weights are packed and the
 * microkernel runs over token micro-panels (L1) x weight panels (L2). */
static void cpu_dense_item(const CpuDenseKernel *kr, Tensor *y, const Tensor *x, const Tensor *w,
                           const Tensor *bias, int64_t o0, int64_t o1, int64_t t0, int64_t t1)
{
    CpuDenseScratch *s = cpu_dense_scratch();
    int mr = kr->mr, nr = kr->nr;
    int64_t in = w->cols, ldc = y->cols;
    for (int64_t pc = 0; pc < in; pc += CPU_DENSE_KC) {
        int64_t kc = in - pc < CPU_DENSE_KC ? in - pc : CPU_DENSE_KC;
        for (int64_t t = t0; t < t1; t += mr) {
            int m = t1 - t < mr ? (int)(t1 - t) : mr;
            kr->pack_a(s->ap + (t - t0) * kc, x, t, m, pc, kc);
        }
        for (int64_t oc = o0; oc < o1; oc += CPU_DENSE_NC) {
            int64_t oc1 = o1 - oc < CPU_DENSE_NC ? o1 : oc + CPU_DENSE_NC;
            int64_t npan = (oc1 - oc + nr - 1) / nr;
            if (pc == 0) /* the first K block writes y = bias + products: y is not read */
                for (int64_t o = 0; o < CPU_DENSE_NC; o++)
                    s->bias[o] = bias && oc + o < oc1 ? bk_elem(bias, 0, oc + o) : 0.0f;
            const float *b0 = pc == 0 ? s->bias : NULL;
            for (int64_t p = 0; p < npan; p++)
                kr->pack_b(s->bp + p * kc * nr, s->row, w, oc + p * nr, oc1, pc, kc);
            /* a weight micro-panel stays in L1 while the token micro-panels stream by */
            for (int64_t p = 0; p < npan; p++) {
                int64_t o = oc + p * nr;
                int nw = oc1 - o < nr ? (int)(oc1 - o) : nr;
                for (int64_t t = t0; t < t1; t += mr) {
                    int m = t1 - t < mr ? (int)(t1 - t) : mr;
                    const float *ap = s->ap + (t - t0) * kc;
                    float *c = (float *)y->data + t * ldc + o;
                    const float *bp = s->bp + p * kc * nr, *bb = b0 ? b0 + p * nr : NULL;
                    if (m == mr && nw == nr) {
                        kr->kern(kc, ap, bp, c, ldc, bb);
                        continue;
                    }
                    kr->kern(kc, ap, bp, s->ct, nr, s->zero);
                    for (int i = 0; i < m; i++)
                        for (int j = 0; j < nw; j++)
                            c[i * ldc + j] = (bb ? bb[j] : c[i * ldc + j]) + s->ct[i * nr + j];
                }
            }
        }
    }
}

/* The work split: n_tb token blocks x n_ob output groups, at least one item per thread.
 * Packing costs n*in per output group (tokens) plus out*in per token block (weights), so
 * split the dimension whose repacking costs less: many tokens (vision) -> token blocks,
 * few tokens -> output groups, each thread packing only its share of the weights. */
static void cpu_dense_split(int64_t n, int64_t out, int mr, int nr, int threads, int64_t *tb,
                            int64_t *ob)
{
    int64_t n_tb = (n + CPU_DENSE_TB - 1) / CPU_DENSE_TB, n_ob = 1;
    if (n_tb % threads) {
        int64_t more_tb = (n_tb + threads - 1) / threads * threads;
        /* tokens repacked per output group vs weights repacked per token block */
        if (n * (threads - 1) < out * (more_tb - n_tb) && out >= (int64_t)threads * nr)
            n_ob = threads;
        else
            n_tb = more_tb;
    }
    *tb = ((n + n_tb - 1) / n_tb + mr - 1) / mr * mr;
    *ob = ((out + n_ob - 1) / n_ob + nr - 1) / nr * nr;
}

void cpu_dense_matmul_caps(Tensor *y, const Tensor *x, const Tensor *w, const Tensor *bias,
                           int caps)
{
    assert(x->cols == w->cols && y->cols == w->rows && y->rows == x->rows);
    assert(w->type == QUANT_F32 || w->type == QUANT_F16 || w->type == QUANT_BF16);
    assert(x->type == QUANT_F32 && y->type == QUANT_F32 && y->data != x->data);
    const CpuDenseKernel *kr = cpu_dense_pick(caps);
    int64_t n = x->rows, out = w->rows, in = w->cols;
    if (n == 0 || out == 0)
        return;
    int par = n * in * out > CPU_DENSE_PAR_MIN;
    if (n < CPU_DENSE_GEMV_MAX) {
        /* a handful of rows: stream each weight row once per 4 tokens, no packing */
        const int64_t ob = 16;
        int64_t n_ob = (out + ob - 1) / ob;
#pragma omp parallel for schedule(static) if (par)
        for (int64_t i = 0; i < n_ob; i++) {
            int64_t o0 = i * ob, o1 = o0 + ob < out ? o0 + ob : out;
            for (int64_t t = 0; t < n; t += 4)
                kr->gemv(y, x, w, o0, o1, t, t + 4 < n ? t + 4 : n);
            for (int64_t t = 0; bias && t < n; t++)
                for (int64_t o = o0; o < o1; o++)
                    ((float *)y->data)[t * out + o] += bk_elem(bias, 0, o);
        }
        return;
    }
    if (in == 0) { /* no K block to write y: it is the bias */
        for (int64_t t = 0; t < n; t++)
            for (int64_t o = 0; o < out; o++)
                ((float *)y->data)[t * out + o] = bias ? bk_elem(bias, 0, o) : 0.0f;
        return;
    }
    int64_t tb, ob;
    cpu_dense_split(n, out, kr->mr, kr->nr, par ? omp_get_max_threads() : 1, &tb, &ob);
    int64_t n_tb = (n + tb - 1) / tb, n_ob = (out + ob - 1) / ob;
#pragma omp parallel for schedule(dynamic, 1) if (par)
    for (int64_t i = 0; i < n_ob * n_tb; i++) {
        int64_t io = i % n_ob, it = i / n_ob;
        int64_t o0 = io * ob, o1 = o0 + ob < out ? o0 + ob : out;
        int64_t t0 = it * tb, t1 = t0 + tb < n ? t0 + tb : n;
        cpu_dense_item(kr, y, x, w, bias, o0, o1, t0, t1);
    }
}

void cpu_dense_matmul(Tensor *y, const Tensor *x, const Tensor *w, const Tensor *bias)
{
    cpu_dense_matmul_caps(y, x, w, bias, cpucaps_get());
}

const char *cpu_dense_kernel_name_caps(int caps)
{
    return cpu_dense_pick(caps)->name;
}

const char *cpu_dense_kernel_name(void)
{
    return cpu_dense_kernel_name_caps(cpucaps_get());
}

size_t cpu_dense_scratch_bytes(int n_threads)
{
    return (size_t)(n_threads > 0 ? n_threads : 1) * sizeof(CpuDenseScratch);
}
