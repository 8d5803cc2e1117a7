/* cpu_kern: the width-generic SIMD code of the cpu backend's attention and elementwise
 * ops, written once with GCC vector extensions and compiled once per instruction set.
 *
 * This header has no include guard on purpose: cpu_attn.c and cpu_elem.c include it once
 * per level, each time with
 *   CK_W       lanes per vector (4: baseline, 8: AVX2, 16: AVX-512),
 *   CK_SFX     the name suffix of that level (none, avx2, avx512),
 *   CK_TARGET  the __attribute__((target(...))) of that level, or nothing,
 *   CK_F16C    1 when the level converts half vectors in hardware (F16C / AVX-512;
 *              through intrinsics: <immintrin.h> included before),
 * and every function gets the suffix (ck_exp_avx2 ...), so each copy is compiled for its
 * instruction set while the build flags stay the same. Every function is static inline:
 * a file only emits the ones it calls.
 *
 * Vector math (numerics stated here, tested in tests/test_attn.c against libm):
 * - ck_exp: range reduction x = n ln2 + r, |r| <= ln2/2, e^r = 1 + r + r^2 Q(r) with Q
 *   a degree-4 fit (Chebyshev, |error| 6.5e-8 on Q), 2^n added to the exponent bits.
 *   Relative error within 2 ulp on [-86.9, 88.72]; below -87.34 (and -inf) it is 0; in
 *   between (where expf is below 2^-125) the absolute error is under 2.4e-38; above
 *   88.7228 it is +inf; NaN stays NaN. Softmax only feeds it x <= 0.
 * - ck_erfc_abs: erfc(|x|): 1 - a P(a^2) below 1 (P degree 6 in a^2, 1.2e-9 relative),
 *   exp(-a^2 + R(t)) / a above, t = 1/(1+a), R degree 7 (7.8e-8 absolute); relative
 *   error within 1e-6 + 1.2e-7 a^2 on [0, 9] (the a^2 term is the rounding of a^2, what
 *   one ulp of x moves erfc; 1e-6 from 1 - erf just below 1).
 * - gelu_tanh uses 0.5 (1 + tanh(u)) = 1 / (1 + e^(-2u)) and silu x / (1 + e^-x), so both
 *   are one vector exp and one division: no tanh needed, and no cancellation where
 *   tanh(u) is near -1 (the reference's 1 + tanhf(u) loses its digits there). */

#define CK_CAT2(a, b) a##_##b
#define CK_CAT(a, b) CK_CAT2(a, b)
#define CK(name) CK_CAT(name, CK_SFX)
#define CK_FN CK_TARGET static inline

#define CkV CK(CkV)
#define CkVI CK(CkVI)
#define CkU16 CK(CkU16)
/* unaligned (aligned(4)) vector views of float / int / half memory */
typedef float CkV __attribute__((vector_size(CK_W * 4), aligned(4), may_alias));
typedef int32_t CkVI __attribute__((vector_size(CK_W * 4), aligned(4), may_alias));
typedef uint16_t CkU16 __attribute__((vector_size(CK_W * 2), aligned(2), may_alias));

/* ---- helpers ---- */

/* s in every lane (not {0} + s: adding 0 is no identity for -0, so that costs an add) */
#if CK_W == 16
CK_FN CkV CK(ck_set1)(float s) { return (CkV){s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s}; }
#elif CK_W == 8
CK_FN CkV CK(ck_set1)(float s) { return (CkV){s, s, s, s, s, s, s, s}; }
#else
CK_FN CkV CK(ck_set1)(float s) { return (CkV){s, s, s, s}; }
#endif
CK_FN CkV CK(ck_load)(const float *p) { return *(const CkV *)p; }
CK_FN void CK(ck_store)(float *p, CkV v) { *(CkV *)p = v; }
/* m ? a : b lane by lane (m from a vector comparison: all ones or zero) */
CK_FN CkV CK(ck_sel)(CkVI m, CkV a, CkV b) { return (CkV)(((CkVI)a & m) | ((CkVI)b & ~m)); }
CK_FN CkV CK(ck_max)(CkV a, CkV b) { return CK(ck_sel)(a > b, a, b); }

/* The sum of the lanes of v, as a tree: fold the upper half onto the lower, log2 CK_W
 * times (constant shuffles). */
#if CK_W == 16
#define CK_FOLDS(v, op)                                                                          \
    v = op(v, __builtin_shuffle(v, (CkVI){8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7})); \
    v = op(v, __builtin_shuffle(v, (CkVI){4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3}));      \
    v = op(v, __builtin_shuffle(v, (CkVI){2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1}));      \
    v = op(v, __builtin_shuffle(v, (CkVI){1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0}))
#elif CK_W == 8
#define CK_FOLDS(v, op)                                                                          \
    v = op(v, __builtin_shuffle(v, (CkVI){4, 5, 6, 7, 0, 1, 2, 3}));                             \
    v = op(v, __builtin_shuffle(v, (CkVI){2, 3, 0, 1, 2, 3, 0, 1}));                             \
    v = op(v, __builtin_shuffle(v, (CkVI){1, 0, 1, 0, 1, 0, 1, 0}))
#else
#define CK_FOLDS(v, op)                                                                          \
    v = op(v, __builtin_shuffle(v, (CkVI){2, 3, 0, 1}));                                         \
    v = op(v, __builtin_shuffle(v, (CkVI){1, 0, 1, 0}))
#endif
#define CK_ADD(a, b) ((a) + (b))

CK_FN float CK(ck_hsum)(CkV v)
{
    CK_FOLDS(v, CK_ADD);
    return v[0];
}

/* The largest lane of v (no NaN). */
CK_FN float CK(ck_hmax)(CkV v)
{
    CK_FOLDS(v, CK(ck_max));
    return v[0];
}

/* dst[0..n) = src[0..n) of a dense type (F32, F16, BF16) as f32. */
CK_FN void CK(ck_to_f32)(float *restrict dst, const void *restrict src, QuantType type, int n)
{
    int i = 0;
    if (type == QUANT_F32) { /* inline: a libc call per row of 64 floats costs */
        const float *f = src;
        for (; i + CK_W <= n; i += CK_W)
            CK(ck_store)(dst + i, CK(ck_load)(f + i));
        for (; i < n; i++)
            dst[i] = f[i];
        return;
    }
    const uint16_t *h = src;
    if (type == QUANT_F16) {
#if CK_F16C && CK_W == 16 /* intrinsics: GCC 12 converts _Float16 vectors per element */
        for (; i + CK_W <= n; i += CK_W)
            *(CkV *)(dst + i) = (CkV)_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i)));
#elif CK_F16C && CK_W == 8
        for (; i + CK_W <= n; i += CK_W)
            *(CkV *)(dst + i) = (CkV)_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i)));
#endif
        for (; i < n; i++)
            dst[i] = half_f16_to_f32(h[i]);
        return;
    }
    for (; i + CK_W <= n; i += CK_W)
        *(CkVI *)(dst + i) = __builtin_convertvector(*(const CkU16 *)(h + i), CkVI) << 16;
    for (; i < n; i++)
        dst[i] = half_bf16_to_f32(h[i]);
}

/* ---- vector math ---- */

CK_FN CkV CK(ck_exp)(CkV x)
{
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    CkV t = x * 1.44269504088896341f + magic;
    CkV n = t - magic;
    CkVI ni = (CkVI)t - (CkVI)CK(ck_set1)(magic);
    CkV r = x - n * 0.693359375f; /* ln 2 in two parts: the first exact in n * it */
    r = r - n * -2.12194440054690583e-4f;
    CkV q = CK(ck_set1)(0.001392617612f);
    q = q * r + 0.008363173075f;
    q = q * r + 0.04166655466f;
    q = q * r + 0.1666657703f;
    q = q * r + 0.5f;
    CkV p = 1.0f + r + r * r * q;
    CkV y = (CkV)((CkVI)p + (ni << 23)); /* p * 2^n, n >= -125 in the range kept */
    y = CK(ck_sel)(x < -87.3365402f, CK(ck_set1)(0.0f), y);
    y = CK(ck_sel)(x > 88.7228394f, CK(ck_set1)(__builtin_inff()), y);
    return CK(ck_sel)(x != x, x, y);
}

/* erfc(|x|) for every x. */
CK_FN CkV CK(ck_erfc_abs)(CkV x)
{
    CkV a = CK(ck_sel)(x < 0.0f, -x, x), s = a * a;
    /* |x| < 1: erf(a) = a P(a^2) */
    CkV p = CK(ck_set1)(7.875875063e-5f);
    p = p * s + -0.0008016864287f;
    p = p * s + 0.005189087423f;
    p = p * s + -0.02685421201f;
    p = p * s + 0.1128359472f;
    p = p * s + -0.3761262667f;
    p = p * s + 1.128379166f;
    CkV small = 1.0f - a * p;
    /* |x| >= 1: erfc(a) = exp(-a^2 + R(1/(1+a))) / a; a clamped so lanes of the other
     * branch stay finite */
    CkV b = CK(ck_max)(a, CK(ck_set1)(1.0f));
    CkV t = 1.0f / (1.0f + b);
    CkV r = CK(ck_set1)(-0.1030236129f);
    r = r * t + -2.678369091f;
    r = r * t + 3.544497322f;
    r = r * t + -1.778579879f;
    r = r * t + -0.8459488739f;
    r = r * t + -0.5153823194f;
    r = r * t + 0.0008356777756f;
    r = r * t + -0.5723839913f;
    CkV big = CK(ck_exp)(r - b * b) / b;
    return CK(ck_sel)(a < 1.0f, small, big);
}

/* ---- elementwise arrays ---- */

/* y[i] = silu(g[i]) * u[i] for i < n; y may alias g or u. */
CK_FN void CK(ck_swiglu)(float *y, const float *g, const float *u, int64_t n)
{
    int64_t i = 0;
    for (; i + CK_W <= n; i += CK_W) {
        CkV gv = CK(ck_load)(g + i);
        CK(ck_store)(y + i, gv / (1.0f + CK(ck_exp)(-gv)) * CK(ck_load)(u + i));
    }
    for (; i < n; i++) {
        CkV gv = CK(ck_set1)(g[i]);
        y[i] = (gv / (1.0f + CK(ck_exp)(-gv)))[0] * u[i];
    }
}

/* x = gelu_tanh(x) = x / (1 + exp(-2 sqrt(2/pi) (x + 0.044715 x^3))) in place. */
CK_FN CkV CK(ck_gelu_tanh_v)(CkV v)
{
    CkV u = v * (-2.0f * 0.7978845608028654f) * (1.0f + 0.044715f * v * v);
    return v / (1.0f + CK(ck_exp)(u));
}

CK_FN void CK(ck_gelu_tanh)(float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + CK_W <= n; i += CK_W)
        CK(ck_store)(x + i, CK(ck_gelu_tanh_v)(CK(ck_load)(x + i)));
    for (; i < n; i++)
        x[i] = CK(ck_gelu_tanh_v)(CK(ck_set1)(x[i]))[0];
}

/* x = 0.5 x (1 + erf(x / sqrt 2)) in place; 1 + erf is 2 - erfc(|z|) or erfc(|z|). */
CK_FN CkV CK(ck_gelu_erf_v)(CkV v)
{
    CkV z = v * 0.7071067811865476f, e = CK(ck_erfc_abs)(z);
    return 0.5f * v * CK(ck_sel)(z < 0.0f, e, 2.0f - e);
}

CK_FN void CK(ck_gelu_erf)(float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + CK_W <= n; i += CK_W)
        CK(ck_store)(x + i, CK(ck_gelu_erf_v)(CK(ck_load)(x + i)));
    for (; i < n; i++)
        x[i] = CK(ck_gelu_erf_v)(CK(ck_set1)(x[i]))[0];
}

CK_FN void CK(ck_add)(float *y, const float *a, const float *c, int64_t n)
{
    int64_t i = 0;
    for (; i + CK_W <= n; i += CK_W)
        CK(ck_store)(y + i, CK(ck_load)(a + i) + CK(ck_load)(c + i));
    for (; i < n; i++)
        y[i] = a[i] + c[i];
}

/* sum of x[i] over i < n, in 2*CK_W lanes */
CK_FN float CK(ck_sum)(const float *x, int64_t n)
{
    CkV acc0 = {0}, acc1 = {0};
    int64_t i = 0;
    for (; i + 2 * CK_W <= n; i += 2 * CK_W) {
        acc0 += CK(ck_load)(x + i);
        acc1 += CK(ck_load)(x + i + CK_W);
    }
    float s = CK(ck_hsum)(acc0 + acc1);
    for (; i < n; i++)
        s += x[i];
    return s;
}

/* sum of (x[i] - c)^2 over i < n, in 2*CK_W lanes */
CK_FN float CK(ck_sumsq)(const float *x, int64_t n, float c)
{
    CkV acc0 = {0}, acc1 = {0};
    int64_t i = 0;
    for (; i + 2 * CK_W <= n; i += 2 * CK_W) {
        CkV a = CK(ck_load)(x + i) - c, b = CK(ck_load)(x + i + CK_W) - c;
        acc0 += a * a;
        acc1 += b * b;
    }
    float s = CK(ck_hsum)(acc0 + acc1);
    for (; i < n; i++)
        s += (x[i] - c) * (x[i] - c);
    return s;
}

/* y[i] = exp(x[i]) (erfc = 0) or erfc(|x[i]|) (erfc = 1) for i < n: the vector math
 * alone, for the tests. */
CK_FN void CK(ck_map)(float *y, const float *x, int64_t n, int erfc)
{
    for (int64_t i = 0; i < n; i += CK_W) {
        float buf[CK_W] = {0};
        int m = n - i < CK_W ? (int)(n - i) : CK_W;
        memcpy(buf, x + i, (size_t)m * 4);
        CkV v = CK(ck_load)(buf);
        CK(ck_store)(buf, erfc ? CK(ck_erfc_abs)(v) : CK(ck_exp)(v));
        memcpy(y + i, buf, (size_t)m * 4);
    }
}

/* y[d] = w[d] * (x[d] * inv) with w of a dense type, converted a chunk at a time. */
CK_FN void CK(ck_scale_w)(float *y, const float *x, float inv, const Tensor *w, int64_t d)
{
    float wb[512] __attribute__((aligned(64)));
    for (int64_t c0 = 0; c0 < d; c0 += 512) {
        int m = d - c0 < 512 ? (int)(d - c0) : 512, i = 0;
        CK(ck_to_f32)(wb, (const char *)w->data + c0 * (w->type == QUANT_F32 ? 4 : 2), w->type,
                      m);
        for (; i + CK_W <= m; i += CK_W)
            CK(ck_store)(y + c0 + i, CK(ck_load)(wb + i) * (CK(ck_load)(x + c0 + i) * inv));
        for (; i < m; i++)
            y[c0 + i] = wb[i] * (x[c0 + i] * inv);
    }
}

/* y = (x - mean) * inv * w + bias, w and bias of dense types, a chunk at a time. */
CK_FN void CK(ck_affine)(float *y, const float *x, float mean, float inv, const Tensor *w,
                         const Tensor *bias, int64_t d)
{
    float wb[256] __attribute__((aligned(64))), bb[256] __attribute__((aligned(64)));
    for (int64_t c0 = 0; c0 < d; c0 += 256) {
        int m = d - c0 < 256 ? (int)(d - c0) : 256, i = 0;
        CK(ck_to_f32)(wb, (const char *)w->data + c0 * (w->type == QUANT_F32 ? 4 : 2), w->type,
                      m);
        CK(ck_to_f32)(bb, (const char *)bias->data + c0 * (bias->type == QUANT_F32 ? 4 : 2),
                      bias->type, m);
        for (; i + CK_W <= m; i += CK_W)
            CK(ck_store)(y + c0 + i, (CK(ck_load)(x + c0 + i) - mean) * inv * CK(ck_load)(wb + i) +
                                         CK(ck_load)(bb + i));
        for (; i < m; i++)
            y[c0 + i] = (x[c0 + i] - mean) * inv * wb[i] + bb[i];
    }
}

/* ---- attention ---- */

/* Rows j0 .. j0+nk of the task's K and V to f32 (row strides ldkf, ldvf), in two tight
 * loops so many cache misses are in flight at once; with prefetch, the next tile's rows
 * are prefetched too (decode streams the cache once: the rows of one KV head are
 * strided, a head's slice of each row, which the hardware prefetchers follow poorly). */
CK_FN void CK(ck_load_tile)(const CpuAttnTask *t, int64_t j0, int nk, int64_t j_end, float *kf,
                            int64_t ldkf, float *vf, int64_t ldvf, int prefetch)
{
    int64_t row_bytes = (int64_t)t->hd * (t->kv_type == QUANT_F32 ? 4 : 2);
    for (int j = 0; j < nk; j++)
        CK(ck_to_f32)(kf + j * ldkf, cpu_attn_kv(t, t->k, j0 + j), t->kv_type, t->hd);
    for (int j = 0; j < nk; j++)
        CK(ck_to_f32)(vf + j * ldvf, cpu_attn_kv(t, t->v, j0 + j), t->kv_type, t->hd);
    for (int64_t j = j0 + nk; prefetch && j < j0 + 2 * nk && j < j_end; j++)
        for (int64_t c = 0; c < row_bytes; c += 64) {
            __builtin_prefetch((const char *)cpu_attn_kv(t, t->k, j) + c);
            __builtin_prefetch((const char *)cpu_attn_kv(t, t->v, j) + c);
        }
}


/* Vectors per micro-kernel row: 4 where there are 32 registers (AVX-512), else 2. */
#if CK_W == 16
#define CK_NV 4
#else
#define CK_NV 2
#endif

/* out[r][0..NV*W) (=, or += when acc) sum_k a[r*ars + k*aks] * b[k*ldb + 0..NV*W) for
 * r < nr (1 or 4, a constant after inlining): the one micro-kernel of the attention.
 * Scores: r = key, k = dim, b = the transposed queries; P.V: r = dim, k = key, b = the
 * probabilities. 4 x NV accumulators, NV vector loads and nr broadcasts per step. */
#if CK_NV == 4
#define CK_MK_ROW(c0, c1, c2, c3, o)                                                             \
    if (acc) {                                                                                   \
        c0 = CK(ck_load)(o), c1 = CK(ck_load)(o + CK_W);                                         \
        c2 = CK(ck_load)(o + 2 * CK_W), c3 = CK(ck_load)(o + 3 * CK_W);                          \
    }
#define CK_MK_FMA(c0, c1, c2, c3, s)                                                             \
    av = CK(ck_set1)(s);                                                                         \
    c0 += av * b0, c1 += av * b1, c2 += av * b2, c3 += av * b3
#define CK_MK_ST(c0, c1, c2, c3, o)                                                              \
    CK(ck_store)(o, c0), CK(ck_store)(o + CK_W, c1), CK(ck_store)(o + 2 * CK_W, c2),             \
        CK(ck_store)(o + 3 * CK_W, c3)
CK_TARGET static inline __attribute__((always_inline)) void
CK(ck_mk)(int nr, const float *restrict a, int64_t ars, int64_t aks, const float *restrict b,
          int64_t ldb, int nk, float *restrict out, int64_t ldo, int acc)
{
    CkV c00 = {0}, c01 = {0}, c02 = {0}, c03 = {0}, c10 = {0}, c11 = {0}, c12 = {0}, c13 = {0};
    CkV c20 = {0}, c21 = {0}, c22 = {0}, c23 = {0}, c30 = {0}, c31 = {0}, c32 = {0}, c33 = {0};
    CK_MK_ROW(c00, c01, c02, c03, out);
    if (nr > 1) {
        CK_MK_ROW(c10, c11, c12, c13, out + ldo);
        CK_MK_ROW(c20, c21, c22, c23, out + 2 * ldo);
        CK_MK_ROW(c30, c31, c32, c33, out + 3 * ldo);
    }
    for (int k = 0; k < nk; k++) {
        const float *bk = b + k * ldb, *ak = a + k * aks;
        CkV b0 = CK(ck_load)(bk), b1 = CK(ck_load)(bk + CK_W), av;
        CkV b2 = CK(ck_load)(bk + 2 * CK_W), b3 = CK(ck_load)(bk + 3 * CK_W);
        CK_MK_FMA(c00, c01, c02, c03, ak[0]);
        if (nr > 1) {
            CK_MK_FMA(c10, c11, c12, c13, ak[ars]);
            CK_MK_FMA(c20, c21, c22, c23, ak[2 * ars]);
            CK_MK_FMA(c30, c31, c32, c33, ak[3 * ars]);
        }
    }
    CK_MK_ST(c00, c01, c02, c03, out);
    if (nr > 1) {
        CK_MK_ST(c10, c11, c12, c13, out + ldo);
        CK_MK_ST(c20, c21, c22, c23, out + 2 * ldo);
        CK_MK_ST(c30, c31, c32, c33, out + 3 * ldo);
    }
}
#undef CK_MK_ROW
#undef CK_MK_FMA
#undef CK_MK_ST
#else
CK_TARGET static inline __attribute__((always_inline)) void
CK(ck_mk)(int nr, const float *restrict a, int64_t ars, int64_t aks, const float *restrict b,
          int64_t ldb, int nk, float *restrict out, int64_t ldo, int acc)
{
    CkV c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0}, c30 = {0}, c31 = {0};
    if (acc) {
        c00 = CK(ck_load)(out), c01 = CK(ck_load)(out + CK_W);
        if (nr > 1) {
            c10 = CK(ck_load)(out + ldo), c11 = CK(ck_load)(out + ldo + CK_W);
            c20 = CK(ck_load)(out + 2 * ldo), c21 = CK(ck_load)(out + 2 * ldo + CK_W);
            c30 = CK(ck_load)(out + 3 * ldo), c31 = CK(ck_load)(out + 3 * ldo + CK_W);
        }
    }
    for (int k = 0; k < nk; k++) {
        const float *bk = b + k * ldb, *ak = a + k * aks;
        CkV b0 = CK(ck_load)(bk), b1 = CK(ck_load)(bk + CK_W), av;
        av = CK(ck_set1)(ak[0]);
        c00 += av * b0;
        c01 += av * b1;
        if (nr > 1) {
            av = CK(ck_set1)(ak[ars]);
            c10 += av * b0;
            c11 += av * b1;
            av = CK(ck_set1)(ak[2 * ars]);
            c20 += av * b0;
            c21 += av * b1;
            av = CK(ck_set1)(ak[3 * ars]);
            c30 += av * b0;
            c31 += av * b1;
        }
    }
    CK(ck_store)(out, c00), CK(ck_store)(out + CK_W, c01);
    if (nr > 1) {
        CK(ck_store)(out + ldo, c10), CK(ck_store)(out + ldo + CK_W, c11);
        CK(ck_store)(out + 2 * ldo, c20), CK(ck_store)(out + 2 * ldo + CK_W, c21);
        CK(ck_store)(out + 3 * ldo, c30), CK(ck_store)(out + 3 * ldo + CK_W, c31);
    }
}
#endif

/* ck_mk over n rows: fours, then ones. */
CK_FN void CK(ck_mk_rows)(int n, const float *a, int64_t ars, int64_t aks, const float *b,
                          int64_t ldb, int nk, float *out, int64_t ldo, int acc)
{
    int r = 0;
    for (; r + 4 <= n; r += 4)
        CK(ck_mk)(4, a + r * ars, ars, aks, b, ldb, nk, out + r * ldo, ldo, acc);
    for (; r < n; r++)
        CK(ck_mk)(1, a + r * ars, ars, aks, b, ldb, nk, out + r * ldo, ldo, acc);
}

/* The key limit of row i of a task: keys 0 .. lim-1 are visible to it. */
CK_FN int64_t CK(ck_lim)(const CpuAttnTask *t, int i)
{
    return t->causal ? t->lim0 + (t->p0 + i) / t->rep : t->lim0;
}

/* A block of up to CK_NV*CK_W query rows (64 for AVX-512) by tiles of keys, queries in
 * lanes: S^T[key][row] = K Q^T (Q transposed and scaled once per block), the running max
 * and sum per row as vectors (no horizontal reductions), O^T[dim][row] += V^T P^T, O
 * written back transposed at the end. K and V tiles are converted to f32 once per tile
 * (contiguous rows, whatever the cache's type and stride). */
CK_FN void CK(ck_attn_tiled)(const CpuAttnTask *t, float *scratch)
{
    enum { QB = CK_NV * CK_W };
    const int hd = t->hd, n = t->n_rows, kb = CPU_ATTN_KB(hd);
    float *qt = scratch, *ot = qt + (size_t)hd * QB, *st = ot + (size_t)hd * QB;
    float *kf = st + (size_t)kb * QB, *vf = kf + (size_t)kb * hd;
    CkVI lim[CK_NV];
    int64_t lim_min = CK(ck_lim)(t, 0), lim_max = CK(ck_lim)(t, n - 1);
    for (int i = 0; i < QB; i++) {
        /* rows past n: zero queries that see every key (finite, then dropped) */
        int64_t l = i < n ? CK(ck_lim)(t, i) : lim_max;
        lim[i / CK_W][i % CK_W] = (int32_t)l;
        const float *q = i < n ? cpu_attn_qrow(t, i) : NULL;
        for (int d = 0; d < hd; d++)
            qt[d * QB + i] = q ? q[d] * t->scale : 0.0f;
    }
    memset(ot, 0, (size_t)hd * QB * 4);
    CkV m[CK_NV], l[CK_NV];
    for (int v = 0; v < CK_NV; v++)
        m[v] = CK(ck_set1)(-__builtin_inff()), l[v] = CK(ck_set1)(0.0f);
    for (int64_t j0 = 0; j0 < lim_max; j0 += kb) {
        int nk = lim_max - j0 < kb ? (int)(lim_max - j0) : kb;
        CK(ck_load_tile)(t, j0, nk, lim_max, kf, hd, vf, hd, 0);
        CK(ck_mk_rows)(nk, kf, hd, 1, qt, QB, hd, st, QB, 0);
        if (j0 + nk > lim_min) /* some row stops inside this tile: mask its later keys */
            for (int j = 0; j < nk; j++)
                for (int v = 0; v < CK_NV; v++) {
                    CkV *s = (CkV *)(st + j * QB + v * CK_W);
                    *s = CK(ck_sel)(lim[v] > (int32_t)(j0 + j), *s,
                                    CK(ck_set1)(-__builtin_inff()));
                }
        for (int v = 0; v < CK_NV; v++) {
            CkV mx = m[v];
            for (int j = 0; j < nk; j++)
                mx = CK(ck_max)(mx, CK(ck_load)(st + j * QB + v * CK_W));
            CkV alpha = CK(ck_exp)(m[v] - mx), sum = {0};
            for (int j = 0; j < nk; j++) {
                float *s = st + j * QB + v * CK_W;
                CkV p = CK(ck_exp)(CK(ck_load)(s) - mx);
                CK(ck_store)(s, p);
                sum += p;
            }
            l[v] = l[v] * alpha + sum;
            m[v] = mx;
            for (int d = 0; d < hd; d++) {
                float *o = ot + d * QB + v * CK_W;
                CK(ck_store)(o, CK(ck_load)(o) * alpha);
            }
        }
        CK(ck_mk_rows)(hd, vf, 1, hd, st, QB, nk, ot, QB, 1);
    }
    CkV inv[CK_NV];
    for (int v = 0; v < CK_NV; v++)
        inv[v] = 1.0f / l[v];
    for (int i = 0; i < n; i++) {
        float *o = cpu_attn_orow(t, i), s = inv[i / CK_W][i % CK_W];
        for (int d = 0; d < hd; d++)
            o[d] = ot[d * QB + i] * s;
    }
}

/* Few query rows (decode: the query heads of one KV head for one new token): scores as
 * dot products along the head dimension, four rows per pass over a key so each K row
 * is converted once per four rows; P.V with the same micro-kernel, rows in fours. */
CK_FN void CK(ck_attn_dot)(const CpuAttnTask *t, float *scratch)
{
    const int hd = t->hd, n = t->n_rows, kb = CPU_ATTN_KB(hd), hv = hd / CK_W * CK_W;
    const int hdp = (hd + CK_NV * CK_W - 1) / (CK_NV * CK_W) * (CK_NV * CK_W); /* padded */
    float *qs = scratch, *os = qs + (size_t)CPU_ATTN_QMAX * hd;
    float *st = os + (size_t)CPU_ATTN_QMAX * hdp, *kf = st + (size_t)CPU_ATTN_QMAX * kb;
    float *vf = kf + (size_t)kb * hd;
    float m[CPU_ATTN_QMAX], l[CPU_ATTN_QMAX];
    int64_t lim[CPU_ATTN_QMAX], lim_max = 0;
    for (int i = 0; i < n; i++) {
        const float *q = cpu_attn_qrow(t, i);
        for (int d = 0; d < hd; d++)
            qs[i * hd + d] = q[d] * t->scale;
        lim[i] = CK(ck_lim)(t, i);
        lim_max = lim[i] > lim_max ? lim[i] : lim_max;
        m[i] = -__builtin_inff();
        l[i] = 0.0f;
    }
    memset(os, 0, (size_t)n * hdp * 4);
    memset(vf, 0, (size_t)kb * hdp * 4); /* the pad columns stay zero */
    for (int64_t j0 = 0; j0 < lim_max; j0 += kb) {
        int nk = lim_max - j0 < kb ? (int)(lim_max - j0) : kb;
        CK(ck_load_tile)(t, j0, nk, lim_max, kf, hd, vf, hdp, 1);
        for (int j = 0; j < nk; j++) {
            const float *kj = kf + (size_t)j * hd;
            for (int i = 0; i < n; i += 4) {
                CkV a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
                const float *q0 = qs + i * hd;
                int d = 0;
                for (; d < hv; d += CK_W) {
                    CkV kv = CK(ck_load)(kj + d);
                    a0 += CK(ck_load)(q0 + d) * kv;
                    if (i + 1 < n)
                        a1 += CK(ck_load)(q0 + hd + d) * kv;
                    if (i + 2 < n)
                        a2 += CK(ck_load)(q0 + 2 * hd + d) * kv;
                    if (i + 3 < n)
                        a3 += CK(ck_load)(q0 + 3 * hd + d) * kv;
                }
                float s[4] = {CK(ck_hsum)(a0), CK(ck_hsum)(a1), CK(ck_hsum)(a2), CK(ck_hsum)(a3)};
                for (int r = 0; r < 4 && i + r < n; r++) {
                    for (int e = d; e < hd; e++)
                        s[r] += q0[r * hd + e] * kj[e];
                    st[(i + r) * kb + j] = j0 + j < lim[i + r] ? s[r] : -__builtin_inff();
                }
            }
        }
        for (int i = 0; i < n; i++) {
            float *s = st + i * kb, mx = m[i];
            int j = 0;
            CkV mv = CK(ck_set1)(mx);
            for (; j + CK_W <= nk; j += CK_W)
                mv = CK(ck_max)(mv, CK(ck_load)(s + j));
            mx = CK(ck_hmax)(mv);
            for (; j < nk; j++)
                mx = s[j] > mx ? s[j] : mx;
            float alpha = CK(ck_exp)(CK(ck_set1)(m[i] - mx))[0], sum = 0.0f;
            CkV sv = {0};
            j = 0;
            for (; j + CK_W <= nk; j += CK_W) {
                CkV p = CK(ck_exp)(CK(ck_load)(s + j) - mx);
                CK(ck_store)(s + j, p);
                sv += p;
            }
            sum = CK(ck_hsum)(sv);
            for (; j < nk; j++) {
                s[j] = CK(ck_exp)(CK(ck_set1)(s[j] - mx))[0];
                sum += s[j];
            }
            l[i] = l[i] * alpha + sum;
            m[i] = mx;
            for (int d = 0; d < hd; d++)
                os[i * hdp + d] *= alpha;
        }
        for (int d = 0; d < hd; d += CK_NV * CK_W)
            CK(ck_mk_rows)(n, st, kb, 1, vf + d, hdp, nk, os + d, hdp, 1);
    }
    for (int i = 0; i < n; i++) {
        float *o = cpu_attn_orow(t, i), inv = 1.0f / l[i];
        for (int d = 0; d < hd; d++)
            o[d] = os[i * hdp + d] * inv;
    }
}

#undef CkV
#undef CkVI
#undef CkU16
#undef CK_FN
#undef CK_FOLDS
#undef CK_ADD
#undef CK_NV
