/* cpu_elem: elementwise and per-row ops of the cpu backend, vectorised.
 *
 * SwiGLU, the two GELUs, add and the norms run the width-generic code of cpu_kern.inc,
 * compiled for AVX-512, AVX2 and plain vectors, chosen at run time by cpucaps_get()
 * (VLQ_CPUCAPS caps it); OpenMP over chunks of elements or over rows. SwiGLU and GELU
 * use the vector exp / erfc (error bounds in cpu_kern.inc; tests/test_attn.c checks them
 * against libm over wide ranges and test_ops.c against ops_ref).
 *
 * The rotary ops keep the reference's arithmetic exactly (the same inv_freq, angle,
 * cosf and sinf, compiled without FMA contraction) but compute inv_freq once per call
 * and cos/sin once per (row, frequency) for all heads, where ops_ref computes them per
 * head; the results are bit-identical to ops_ref. Nothing here allocates. */
#include "cpu_elem.h"

#include "backend_int.h"
#include "cpu_attn.h"
#include "cpucaps.h"

#include <assert.h>
#include <math.h>
#include <string.h>

/* ---- the kernels, once per instruction set (as in cpu_attn.c) ---- */

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
#define CPU_ELEM_X86 1
#include <immintrin.h>
#define CPU_ELEM_F16C 1

#define CK_W 8
#define CK_SFX avx2
#define CK_TARGET __attribute__((target("avx2,fma,f16c")))
#define CK_F16C CPU_ELEM_F16C
#include "cpu_kern.inc"
#undef CK_W
#undef CK_SFX
#undef CK_TARGET
#undef CK_F16C

#define CK_W 16
#define CK_SFX avx512
#define CK_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define CK_F16C CPU_ELEM_F16C
#include "cpu_kern.inc"
#undef CK_W
#undef CK_SFX
#undef CK_TARGET
#undef CK_F16C

/* fn at the level of `lanes` (16, 8, 4) */
#define CPU_ELEM_CALL(lanes, fn, ...)                                                            \
    ((lanes) == 16  ? fn##_avx512(__VA_ARGS__)                                                   \
     : (lanes) == 8 ? fn##_avx2(__VA_ARGS__)                                                     \
                    : fn##_none(__VA_ARGS__))
#else
#define CPU_ELEM_CALL(lanes, fn, ...) fn##_none(__VA_ARGS__)
#endif

#define CPU_ELEM_PAR_MIN (1 << 16) /* work below which one thread runs the op */
#define CPU_ELEM_CHUNK 4096        /* elements per work item of the flat ops */

static int cpu_elem_lanes(void)
{
#ifdef CPU_ELEM_X86
    int caps = cpucaps_get();
    if (caps & CPUCAPS_AVX512)
        return 16;
    if (caps & CPUCAPS_AVX2)
        return 8;
#endif
    return 4;
}

static const float *cpu_elem_row(const Tensor *t, int64_t r)
{
    return (const float *)t->data + r * t->cols;
}

/* ---- norms ---- */

/* y[n, d] = w[d] * (x / sqrt(mean(x^2) + eps)); w F32, F16 or BF16. */
void cpu_elem_rmsnorm(Backend *b, Tensor *y, const Tensor *x, const Tensor *w, float eps)
{
    assert(x->cols == y->cols && x->rows == y->rows && w->rows * w->cols == x->cols);
    assert(w->type <= QUANT_BF16);
    int lanes = cpu_elem_lanes();
#pragma omp parallel for if (x->rows * x->cols > CPU_ELEM_PAR_MIN)
    for (int64_t i = 0; i < x->rows; i++) {
        const float *xi = cpu_elem_row(x, i);
        float ss = CPU_ELEM_CALL(lanes, ck_sumsq, xi, x->cols, 0.0f);
        float inv = 1.0f / sqrtf(ss / (float)x->cols + eps);
        CPU_ELEM_CALL(lanes, ck_scale_w, (float *)y->data + i * y->cols, xi, inv, w, x->cols);
    }
}

/* y[n, d] = (x - mean) / sqrt(var + eps) * w + bias; w, bias F32, F16 or BF16. */
void cpu_elem_layernorm(Backend *b, Tensor *y, const Tensor *x, const Tensor *w,
                        const Tensor *bias, float eps)
{
    assert(x->cols == y->cols && x->rows == y->rows);
    assert(w->type <= QUANT_BF16 && bias->type <= QUANT_BF16);
    int lanes = cpu_elem_lanes();
#pragma omp parallel for if (x->rows * x->cols > CPU_ELEM_PAR_MIN)
    for (int64_t i = 0; i < x->rows; i++) {
        const float *xi = cpu_elem_row(x, i);
        float mean = CPU_ELEM_CALL(lanes, ck_sum, xi, x->cols) / (float)x->cols;
        float var = CPU_ELEM_CALL(lanes, ck_sumsq, xi, x->cols, mean) / (float)x->cols;
        float inv = 1.0f / sqrtf(var + eps);
        CPU_ELEM_CALL(lanes, ck_affine, (float *)y->data + i * y->cols, xi, mean, inv, w, bias,
                      x->cols);
    }
}

/* ---- flat elementwise ---- */

void cpu_elem_add(Backend *b, Tensor *y, const Tensor *a, const Tensor *c)
{
    int64_t n = y->rows * y->cols;
    assert(a->rows * a->cols == n && c->rows * c->cols == n);
    int lanes = cpu_elem_lanes();
    float *yd = y->data;
    const float *ad = a->data, *cd = c->data;
#pragma omp parallel for if (n > CPU_ELEM_PAR_MIN)
    for (int64_t i = 0; i < n; i += CPU_ELEM_CHUNK) {
        int64_t m = n - i < CPU_ELEM_CHUNK ? n - i : CPU_ELEM_CHUNK;
        CPU_ELEM_CALL(lanes, ck_add, yd + i, ad + i, cd + i, m);
    }
}

void cpu_elem_swiglu(Backend *b, Tensor *y, const Tensor *gate, const Tensor *up)
{
    int64_t n = y->rows * y->cols;
    int lanes = cpu_elem_lanes();
    float *yd = y->data;
    const float *g = gate->data, *u = up->data;
#pragma omp parallel for if (n > CPU_ELEM_PAR_MIN / 8)
    for (int64_t i = 0; i < n; i += CPU_ELEM_CHUNK) {
        int64_t m = n - i < CPU_ELEM_CHUNK ? n - i : CPU_ELEM_CHUNK;
        CPU_ELEM_CALL(lanes, ck_swiglu, yd + i, g + i, u + i, m);
    }
}

void cpu_elem_gelu_tanh(Backend *b, Tensor *x)
{
    int64_t n = x->rows * x->cols;
    int lanes = cpu_elem_lanes();
    float *d = x->data;
#pragma omp parallel for if (n > CPU_ELEM_PAR_MIN / 8)
    for (int64_t i = 0; i < n; i += CPU_ELEM_CHUNK) {
        int64_t m = n - i < CPU_ELEM_CHUNK ? n - i : CPU_ELEM_CHUNK;
        CPU_ELEM_CALL(lanes, ck_gelu_tanh, d + i, m);
    }
}

void cpu_elem_gelu_erf(Backend *b, Tensor *x)
{
    int64_t n = x->rows * x->cols;
    int lanes = cpu_elem_lanes();
    float *d = x->data;
#pragma omp parallel for if (n > CPU_ELEM_PAR_MIN / 8)
    for (int64_t i = 0; i < n; i += CPU_ELEM_CHUNK) {
        int64_t m = n - i < CPU_ELEM_CHUNK ? n - i : CPU_ELEM_CHUNK;
        CPU_ELEM_CALL(lanes, ck_gelu_erf, d + i, m);
    }
}

/* y[i] = exp(x[i]) for i < n (the vector exp alone). */
void cpu_elem_exp(float *y, const float *x, int64_t n)
{
    CPU_ELEM_CALL(cpu_elem_lanes(), ck_map, y, x, n, 0);
}

/* y[i] = erfc(|x[i]|) for i < n (the vector erfc alone). */
void cpu_elem_erfc_abs(float *y, const float *x, int64_t n)
{
    CPU_ELEM_CALL(cpu_elem_lanes(), ck_map, y, x, n, 1);
}

/* ---- rotary ---- */

/* Rotate the heads of one row by angle[d], d < half, with cos/sin once for all heads
 * (rotate_half pairs d, d+half); the reference's arithmetic, term for term. */
static void cpu_elem_rotate_row(float *x, const float *angle, int half, int n_heads)
{
    float c[512], s[512];
    for (int d = 0; d < half; d++) {
        c[d] = cosf(angle[d]);
        s[d] = sinf(angle[d]);
    }
    for (int h = 0; h < n_heads; h++) {
        float *xh = x + (int64_t)h * 2 * half;
        for (int d = 0; d < half; d++) {
            float x0 = xh[d], x1 = xh[d + half];
            xh[d] = x0 * c[d] - x1 * s[d];
            xh[d + half] = x1 * c[d] + x0 * s[d];
        }
    }
}

/* inv_freq[j] = 1 / theta^(2j/dim), as ops_ref computes it. */
static float cpu_elem_inv_freq(float theta, int j, int dim)
{
    return 1.0f / powf(theta, (float)(2 * j) / (float)dim);
}

void cpu_elem_mrope(Backend *b, Tensor *x, const int32_t *pos, int n_heads, const int section[3],
                    float theta)
{
    int64_t n = x->rows;
    int head_dim = (int)(x->cols / n_heads), half = head_dim / 2;
    assert(half <= 512);
    float inv[512];
    int axis[512];
    for (int j = 0; j < half; j++) {
        inv[j] = cpu_elem_inv_freq(theta, j, head_dim);
        axis[j] = (j % 3 == 1 && j < 3 * section[1]) ? 1 : (j % 3 == 2 && j < 3 * section[2]) ? 2 : 0;
    }
#pragma omp parallel for if (n * x->cols > CPU_ELEM_PAR_MIN / 16)
    for (int64_t i = 0; i < n; i++) {
        float angle[512];
        for (int j = 0; j < half; j++)
            angle[j] = (float)pos[axis[j] * n + i] * inv[j];
        cpu_elem_rotate_row((float *)x->data + i * x->cols, angle, half, n_heads);
    }
}

void cpu_elem_rope2d(Backend *b, Tensor *x, const int32_t *pos, int n_heads, float theta)
{
    int head_dim = (int)(x->cols / n_heads), half = head_dim / 2, quarter = head_dim / 4;
    assert(half <= 512);
    float inv[256];
    for (int j = 0; j < quarter; j++)
        inv[j] = cpu_elem_inv_freq(theta, j, half);
#pragma omp parallel for if (x->rows * x->cols > CPU_ELEM_PAR_MIN / 16)
    for (int64_t i = 0; i < x->rows; i++) {
        float angle[512];
        for (int j = 0; j < quarter; j++) {
            angle[j] = (float)pos[i * 2] * inv[j];
            angle[quarter + j] = (float)pos[i * 2 + 1] * inv[j];
        }
        cpu_elem_rotate_row((float *)x->data + i * x->cols, angle, half, n_heads);
    }
}
