/* backend_cpu: the fast CPU backend: OpenMP over rows, heads and output features, inner
 * loops written so the compiler vectorises them (GCC vector extensions, 8 lanes), and
 * the matmul compiled twice (x86-64-v3 with AVX2+FMA, and baseline) with the choice made
 * at load time by the CPU (target_clones), so one binary runs on every x86-64.
 *
 * Numerics: fp32 accumulation everywhere; sums are split into 8 lanes (a fixed order,
 * different from ops_ref's index order: test_ops.c states the tolerance per op). No
 * -ffast-math. The matmul dequantises a chunk of a weight row (Q4/Q8 per scale group,
 * F16/BF16 by conversion) into a thread-local buffer once and reuses it for a block of
 * tokens, so the INT4 cost is paid once per row per token block, not per token.
 * Attention is in cpu_attn.c, the elementwise and per-row ops in cpu_elem.c (run-time
 * AVX-512 / AVX2 dispatch); embeddings reuse the reference arithmetic with OpenMP over
 * rows. Nothing here allocates. */
#include "backend.h"
#include "backend_int.h"
#include "cpu_attn.h"
#include "cpu_elem.h"

#include <assert.h>
#include <math.h>
#include <string.h>

typedef float CpuV8 __attribute__((vector_size(32), aligned(4), may_alias));
#if defined(__FLT16_MAX__) && defined(__x86_64__)
#define CPU_HAVE_F16 1
typedef _Float16 CpuH8 __attribute__((vector_size(16), aligned(2), may_alias));
#endif
typedef int32_t CpuI32x8 __attribute__((vector_size(32)));
typedef uint8_t CpuU8x8 __attribute__((vector_size(8), aligned(1), may_alias));

/* One path under the sanitizers: the baseline code, which the normal build on an AVX2
 * machine (this one, CI) never runs, so `make test SAN=1` is what tests it. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_ADDRESS__)
#define CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define CPU_CLONES
#endif

#define CPU_CHUNK 512 /* weight columns dequantised at a time */
#define CPU_TOK_BLOCK 32 /* tokens that share one dequantised chunk */
/* Multiply-adds below which an op runs on the calling thread: a parallel region costs
 * microseconds of wake-up and barrier, more than a small op itself. */
#define CPU_PAR_MIN (1 << 16)

static const float *cpu_row(const Tensor *t, int64_t r)
{
    return (const float *)t->data + r * t->cols;
}

static float *cpu_row_mut(Tensor *t, int64_t r)
{
    return (float *)t->data + r * t->cols;
}

/* ---- matmul ---- */

/* One half-float scale: the F16C instruction when the clone has it, else exact bits. */
static inline __attribute__((always_inline)) float cpu_half(uint16_t h)
{
#ifdef CPU_HAVE_F16
    _Float16 f;
    memcpy(&f, &h, 2);
    return (float)f;
#else
    return half_f16_to_f32(h);
#endif
}

/* buf[0..n) = W[r, c0 .. c0+n), c0 and n multiples of the group for Q4/Q8. */
static inline __attribute__((always_inline)) void cpu_deq(const Tensor *w, int64_t r, int64_t c0,
                                                          int64_t n, float *buf)
{
    int64_t base = r * w->cols + c0;
    switch (w->type) {
    case QUANT_F32:
        memcpy(buf, (const float *)w->data + base, (size_t)n * 4);
        break;
    case QUANT_F16: {
        const uint16_t *p = (const uint16_t *)w->data + base;
        int64_t j = 0;
#ifdef CPU_HAVE_F16
        for (; j + 8 <= n; j += 8) /* vcvtph2ps on x86-64-v3 */
            *(CpuV8 *)(buf + j) = __builtin_convertvector(*(const CpuH8 *)(p + j), CpuV8);
#endif
        for (; j < n; j++)
            buf[j] = half_f16_to_f32(p[j]);
        break;
    }
    case QUANT_BF16: {
        const uint16_t *p = (const uint16_t *)w->data + base;
        for (int64_t j = 0; j < n; j++) {
            uint32_t bits = (uint32_t)p[j] << 16;
            memcpy(&buf[j], &bits, 4);
        }
        break;
    }
    case QUANT_Q8: {
        const int8_t *q = (const int8_t *)w->data + base;
        const uint16_t *sc = (const uint16_t *)w->scale + base / w->group;
        for (int64_t g = 0; g < n / w->group; g++) {
            float s = half_f16_to_f32(sc[g]);
            for (int j = 0; j < w->group; j++)
                buf[g * w->group + j] = s * (float)q[g * w->group + j];
        }
        break;
    }
    case QUANT_Q4: {
        const uint8_t *q = (const uint8_t *)w->data + base / 2;
        const uint16_t *sc = (const uint16_t *)w->scale + base / w->group;
        int half = w->group / 2;
        for (int64_t g = 0; g < n / w->group; g++) {
            float s = cpu_half(sc[g]);
            const uint8_t *qg = q + g * half;
            float *lo = buf + g * w->group, *hi = lo + half;
            /* 8 bytes at a time: low nibbles are elements j, high nibbles j + group/2 */
            for (int j = 0; j < half; j += 8) {
                CpuU8x8 b8 = *(const CpuU8x8 *)(qg + j);
                /* u8 -> i32 -> f32 in two steps: each one a single instruction on AVX2 */
                CpuI32x8 il = __builtin_convertvector(b8 & 0xf, CpuI32x8) - 8;
                CpuI32x8 ih = __builtin_convertvector(b8 >> 4, CpuI32x8) - 8;
                CpuV8 vl = __builtin_convertvector(il, CpuV8);
                CpuV8 vh = __builtin_convertvector(ih, CpuV8);
                *(CpuV8 *)(lo + j) = vl * s;
                *(CpuV8 *)(hi + j) = vh * s;
            }
        }
        break;
    }
    }
}

static inline __attribute__((always_inline)) float cpu_dot(const float *a, const float *b,
                                                          int64_t n)
{
    CpuV8 acc0 = {0}, acc1 = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 += *(const CpuV8 *)(a + i) * *(const CpuV8 *)(b + i);
        acc1 += *(const CpuV8 *)(a + i + 8) * *(const CpuV8 *)(b + i + 8);
    }
    acc0 += acc1;
    float s = 0.0f;
    for (int l = 0; l < 8; l++)
        s += acc0[l];
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* r[2][4] = a_i . x_k for 2 weight rows and 4 token rows: 8 independent sums, 6 loads
 * per 8 multiply-adds. */
static inline __attribute__((always_inline)) void cpu_dot2x4(const float *a0, const float *a1,
                                                             const float *const x[4], int64_t n,
                                                             float r[2][4])
{
    /* named accumulators: an array of vectors would live in memory, not registers */
    CpuV8 s00 = {0}, s01 = {0}, s02 = {0}, s03 = {0}, s10 = {0}, s11 = {0}, s12 = {0}, s13 = {0};
    const float *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3];
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        CpuV8 w0 = *(const CpuV8 *)(a0 + i), w1 = *(const CpuV8 *)(a1 + i), xv;
        xv = *(const CpuV8 *)(x0 + i);
        s00 += w0 * xv;
        s10 += w1 * xv;
        xv = *(const CpuV8 *)(x1 + i);
        s01 += w0 * xv;
        s11 += w1 * xv;
        xv = *(const CpuV8 *)(x2 + i);
        s02 += w0 * xv;
        s12 += w1 * xv;
        xv = *(const CpuV8 *)(x3 + i);
        s03 += w0 * xv;
        s13 += w1 * xv;
    }
    CpuV8 s[2][4] = {{s00, s01, s02, s03}, {s10, s11, s12, s13}};
    for (int j = 0; j < 2; j++)
        for (int k = 0; k < 4; k++) {
            float t = 0.0f;
            for (int l = 0; l < 8; l++)
                t += s[j][k][l];
            for (int64_t e = i; e < n; e++)
                t += (j ? a1 : a0)[e] * x[k][e];
            r[j][k] = t;
        }
}

/* y rows t0..t1, output features o0..o1 of y = x W^T (+ bias): weight rows in pairs,
 * tokens in fours, over chunks of columns dequantised once per tile. */
CPU_CLONES static void cpu_matmul_tile(Tensor *y, const Tensor *x, const Tensor *w,
                                       const Tensor *bias, int64_t o0, int64_t o1, int64_t t0,
                                       int64_t t1)
{
    float buf[2][CPU_CHUNK] __attribute__((aligned(64)));
    int64_t chunk = CPU_CHUNK;
    if (w->group)
        chunk = CPU_CHUNK / w->group * w->group;
    for (int64_t t = t0; t < t1; t++)
        for (int64_t o = o0; o < o1; o++)
            cpu_row_mut(y, t)[o] = 0.0f;
    for (int64_t o = o0; o < o1; o += 2) {
        int pair = o + 1 < o1;
        for (int64_t c = 0; c < w->cols; c += chunk) {
            int64_t n = w->cols - c < chunk ? w->cols - c : chunk;
            cpu_deq(w, o, c, n, buf[0]);
            if (pair)
                cpu_deq(w, o + 1, c, n, buf[1]);
            int64_t t = t0;
            for (; pair && t + 4 <= t1; t += 4) {
                const float *xs[4] = {cpu_row(x, t) + c, cpu_row(x, t + 1) + c,
                                      cpu_row(x, t + 2) + c, cpu_row(x, t + 3) + c};
                float r[2][4];
                cpu_dot2x4(buf[0], buf[1], xs, n, r);
                for (int k = 0; k < 4; k++) {
                    cpu_row_mut(y, t + k)[o] += r[0][k];
                    cpu_row_mut(y, t + k)[o + 1] += r[1][k];
                }
            }
            for (; t < t1; t++) {
                cpu_row_mut(y, t)[o] += cpu_dot(buf[0], cpu_row(x, t) + c, n);
                if (pair)
                    cpu_row_mut(y, t)[o + 1] += cpu_dot(buf[1], cpu_row(x, t) + c, n);
            }
        }
    }
    for (int64_t o = o0; bias && o < o1; o++) {
        float b0 = bk_elem(bias, 0, o);
        for (int64_t t = t0; t < t1; t++)
            cpu_row_mut(y, t)[o] += b0;
    }
}

static void cpu_matmul(Backend *b, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *bias)
{
    assert(x->cols == w->cols && y->cols == w->rows && y->rows == x->rows);
    assert(w->group <= CPU_CHUNK);
    int64_t n = x->rows, out = w->rows;
    const int64_t ob = 16;
    int64_t n_ob = (out + ob - 1) / ob, n_tb = (n + CPU_TOK_BLOCK - 1) / CPU_TOK_BLOCK;
#pragma omp parallel for schedule(dynamic, 1) collapse(2) if (n * x->cols * out > CPU_PAR_MIN)
    for (int64_t i = 0; i < n_ob; i++)
        for (int64_t j = 0; j < n_tb; j++) {
            int64_t o1 = (i + 1) * ob < out ? (i + 1) * ob : out;
            int64_t t1 = (j + 1) * CPU_TOK_BLOCK < n ? (j + 1) * CPU_TOK_BLOCK : n;
            cpu_matmul_tile(y, x, w, bias, i * ob, o1, j * CPU_TOK_BLOCK, t1);
        }
}

/* ---- rows ---- */

static void cpu_embed(Backend *b, Tensor *y, const Tensor *table, const int32_t *ids, int n)
{
    assert(y->cols == table->cols && y->rows >= n);
#pragma omp parallel for if ((int64_t)n * table->cols > CPU_PAR_MIN)
    for (int i = 0; i < n; i++) {
        assert(ids[i] >= 0 && ids[i] < table->rows);
        int64_t chunk = table->group ? CPU_CHUNK / table->group * table->group : CPU_CHUNK;
        for (int64_t c = 0; c < table->cols; c += chunk) {
            int64_t m = table->cols - c < chunk ? table->cols - c : chunk;
            cpu_deq(table, ids[i], c, m, cpu_row_mut(y, i) + c);
        }
    }
}

static void cpu_embed_mix4(Backend *b, Tensor *y, const Tensor *table, const int32_t *idx,
                           const float *w, int n)
{
    ops_ref_backend.embed_mix4(b, y, table, idx, w, n); /* once per image: not hot */
}

static void cpu_set_rows(Backend *b, Tensor *dst, const int32_t *rows, const Tensor *src, int n)
{
    assert(dst->cols == src->cols && dst->type <= QUANT_BF16);
#pragma omp parallel for if ((int64_t)n * dst->cols > CPU_PAR_MIN)
    for (int i = 0; i < n; i++) {
        const float *s = cpu_row(src, i);
        uint16_t *h = (uint16_t *)dst->data + (int64_t)rows[i] * dst->cols;
        if (dst->type == QUANT_F32) /* an F16/BF16 cache rounds to nearest even (half.h) */
            memcpy(cpu_row_mut(dst, rows[i]), s, (size_t)dst->cols * 4);
        else if (dst->type == QUANT_F16)
            for (int64_t c = 0; c < dst->cols; c++)
                h[c] = half_f32_to_f16(s[c]);
        else
            for (int64_t c = 0; c < dst->cols; c++)
                h[c] = half_f32_to_bf16(s[c]);
    }
}

static void cpu_add_rows(Backend *b, Tensor *dst, const int32_t *rows, const Tensor *src, int n)
{
    assert(dst->cols == src->cols);
#pragma omp parallel for if ((int64_t)n * dst->cols > CPU_PAR_MIN)
    for (int i = 0; i < n; i++) {
        float *d = cpu_row_mut(dst, rows[i]);
        const float *s = cpu_row(src, i);
        for (int64_t c = 0; c < dst->cols; c++)
            d[c] += s[c];
    }
}

static void cpu_get_rows(Backend *b, Tensor *dst, const Tensor *src, const int32_t *rows, int n)
{
    assert(dst->cols == src->cols);
    for (int i = 0; i < n; i++)
        memcpy(cpu_row_mut(dst, i), cpu_row(src, rows[i]), (size_t)dst->cols * 4);
}

static void cpu_argmax(Backend *b, const Tensor *x, int32_t *out)
{
    ops_ref_backend.argmax(b, x, out); /* one pass over the logits: memory bound already */
}

Backend backend_cpu = {
    .name = "cpu",
    .alloc = bk_host_alloc,
    .alloc_typed = bk_host_alloc_typed,
    .release = bk_host_release,
    .weight = bk_host_weight,
    .write = bk_host_write,
    .read = bk_host_read,
    .embed = cpu_embed,
    .embed_mix4 = cpu_embed_mix4,
    .set_rows = cpu_set_rows,
    .add_rows = cpu_add_rows,
    .get_rows = cpu_get_rows,
    .matmul = cpu_matmul,
    .rmsnorm = cpu_elem_rmsnorm,
    .layernorm = cpu_elem_layernorm,
    .add = cpu_elem_add,
    .swiglu = cpu_elem_swiglu,
    .gelu_tanh = cpu_elem_gelu_tanh,
    .gelu_erf = cpu_elem_gelu_erf,
    .mrope = cpu_elem_mrope,
    .rope2d = cpu_elem_rope2d,
    .attention = cpu_attn_attention,
    .attention_seg = cpu_attn_attention_seg,
    .argmax = cpu_argmax,
};
