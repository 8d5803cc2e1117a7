/* backend_cpu: the fast CPU backend. The hot ops live in their own files, each with
 * kernels for AVX-512 (VNNI), AVX2 and plain C chosen at run time from cpucaps_get():
 * Q4/Q8 matmul on int8 activations in cpu_qmm.c, dense (F32/F16/BF16) matmul as a packed
 * GEMM in cpu_dense.c, attention by tiles with an online softmax in cpu_attn.c.
 *
 * Numerics: fp32 accumulation; sums in a fixed order different from ops_ref's index
 * order, and int8 activations for Q4/Q8 weights (test_ops.c, test_qmm.c state the
 * tolerance per op). No -ffast-math.
 * The elementwise and per-row ops are in cpu_elem.c; embeddings reuse the reference arithmetic with OpenMP over
 * rows. Nothing here allocates in an op; the weight hook (cpu_weight) repacks Q4/Q8
 * weights into memory the tensor owns (cpu_qmm's packed layout) on AVX-512 VNNI CPUs. */
#include "backend.h"
#include "backend_int.h"
#include "cpu_attn.h"
#include "cpu_dense.h"
#include "cpu_elem.h"
#include "cpu_qmm.h"
#include "cpucaps.h"
#include "err.h"

#include <assert.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef float CpuV8 __attribute__((vector_size(32), aligned(4), may_alias));
#if defined(__FLT16_MAX__) && defined(__x86_64__)
#define CPU_HAVE_F16 1
typedef _Float16 CpuH8 __attribute__((vector_size(16), aligned(2), may_alias));
#endif
typedef int32_t CpuI32x8 __attribute__((vector_size(32)));
typedef uint8_t CpuU8x8 __attribute__((vector_size(8), aligned(1), may_alias));


#define CPU_CHUNK 512 /* weight columns dequantised at a time */
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


/* A Q4/Q8 weight repacked by cpu_weight: owned (release frees it) and tagged so. */
#define CPU_OWNED_PACKED 2

static int cpu_packed(const Tensor *w)
{
    return (w->type == QUANT_Q4 || w->type == QUANT_Q8) && w->owned == CPU_OWNED_PACKED;
}

/* Q4/Q8 weights with groups of whole 32-column blocks are repacked into cpu_qmm's packed
 * layout (16 output rows interleaved) when the CPU has a packed SIMD kernel: the GEMM
 * needs no horizontal sums and the GEMV streams faster too (bench-qmm), so there is one
 * layout. The copy is 64-byte aligned, owned by the tensor (release frees it) and the
 * same size as the file's bytes (rows padded to 16); weights.c then drops the mapping's
 * pages of the original. Everything else is a view over the mapping. */
static int cpu_weight(Backend *b, Tensor *t, QuantType type, int64_t rows, int64_t cols,
                      int group, const void *bytes, char *err)
{
    int rc = bk_host_weight(b, t, type, rows, cols, group, bytes, err);
    if (rc || (type != QUANT_Q4 && type != QUANT_Q8) || group % 32 ||
        cpu_qmm_packed_kernel() == CPU_QMM_C)
        return rc;
    size_t n = (cpu_qmm_packed_bytes(type, rows, cols, group) + 63) / 64 * 64;
    void *p = aligned_alloc(64, n);
    if (!p) {
        memset(t, 0, sizeof *t);
        return err_set(err, VLQ_ENOMEM, "%s backend: cannot allocate %zu bytes for a packed "
                       "weight", b->name, n);
    }
    cpu_qmm_pack(t, p);
    *t = cpu_qmm_packed_tensor(t, p);
    t->owned = CPU_OWNED_PACKED;
    return 0;
}

static void cpu_matmul(Backend *b, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *bias)
{
    assert(x->cols == w->cols && y->cols == w->rows && y->rows == x->rows);
    if (cpu_packed(w)) {
        cpu_qmm_matmul_packed(y, x, w, bias);
        return;
    }
    if (w->type == QUANT_Q4 || w->type == QUANT_Q8) { /* int8 activations: cpu_qmm.c */
        cpu_qmm_matmul(y, x, w, bias);
        return;
    }
    /* F32, F16, BF16: packed GEMM / GEMV (cpu_dense.c) */
    cpu_dense_matmul(y, x, w, bias);
}

/* ---- rows ---- */

static void cpu_embed(Backend *b, Tensor *y, const Tensor *table, const int32_t *ids, int n)
{
    assert(y->cols == table->cols && y->rows >= n);
#pragma omp parallel for if ((int64_t)n * table->cols > CPU_PAR_MIN)
    for (int i = 0; i < n; i++) {
        assert(ids[i] >= 0 && ids[i] < table->rows);
        if (cpu_packed(table)) { /* a strided read of 16 rows' blocks: once per token */
            cpu_qmm_packed_row(table, ids[i], cpu_row_mut(y, i));
            continue;
        }
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

/* One line for vlq doctor and -v: threads, CPU features and the kernel each hot op
 * family chose at run time: the INT4/INT8 matmul (cpu_qmm), the dense matmul
 * (cpu_dense), and attention and the elementwise ops (cpu_attn, cpu_elem: the same
 * AVX-512 / AVX2 / plain choice on cpucaps, mirrored here). A new kernel family with a
 * run-time choice adds its name to this line. */
static void cpu_describe(Backend *b, char *buf, size_t len)
{
    int caps = cpucaps_get();
    const char *vec = caps & CPUCAPS_AVX512 ? "avx512" : caps & CPUCAPS_AVX2 ? "avx2" : "plain";
    snprintf(buf, len,
             "%s: host memory, %d OpenMP threads, CPU features: %s; kernels: quantised matmul "
             "(%s; weights %s), dense matmul (%s), attention and elementwise (%s)",
             b->name, omp_get_max_threads(), cpucaps_describe(caps), cpu_qmm_kernel_name(),
             cpu_qmm_packed_kernel() != CPU_QMM_C ? "repacked, 16 rows interleaved"
                                                  : "in the file layout",
             cpu_dense_kernel_name(), vec);
}

Backend backend_cpu = {
    .abi_version = BACKEND_ABI_VERSION,
    .name = "cpu",
    .open = bk_host_open,
    .sync = bk_host_sync,
    .meminfo = bk_host_meminfo,
    .describe = cpu_describe,
    .alloc = bk_host_alloc,
    .alloc_typed = bk_host_alloc_typed,
    .release = bk_host_release,
    .weight = cpu_weight,
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
