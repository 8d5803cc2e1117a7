/* test_dense: the dense-weight GEMM/GEMV (cpu_dense.c), every kernel variant the machine
 * runs (plain C, AVX2, AVX-512), against ops_ref's matmul at odd shapes (tile, panel and
 * block edges) and the vision tower's real ones, F32/F16/BF16 weights, with and without
 * bias.
 *
 * Tolerance: |y - ref| <= 1e-6 * (sum_k |x_k w_k| + |bias|), elementwise: both sum the
 * same f32 products in a different order (FMA vs multiply-add, 8-16 lanes and KC blocks
 * vs one running sum), whose rounding error is a few eps32 (1.2e-7) times that magnitude
 * in practice (the worst-case bound grows with in, the typical one with sqrt(in)). */
#include "backend.h"
#include "backend_int.h"
#include "cpu_dense.h"
#include "cpucaps.h"
#include "test.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t dense_rng = 1;

static float dense_rand(void) /* uniform in [-1, 1) */
{
    dense_rng = dense_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((dense_rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

/* A random dense tensor [rows, cols] of type t in host memory (free t.data). */
static Tensor dense_tensor(QuantType type, int64_t rows, int64_t cols)
{
    Tensor t = {.type = type, .rows = rows, .cols = cols};
    t.data = aligned_alloc(64, (bk_dense_bytes(type, rows * cols) + 63) / 64 * 64);
    for (int64_t i = 0; i < rows * cols; i++) {
        float v = dense_rand();
        if (type == QUANT_F32)
            ((float *)t.data)[i] = v;
        else if (type == QUANT_F16)
            ((uint16_t *)t.data)[i] = half_f32_to_f16(v);
        else
            ((uint16_t *)t.data)[i] = half_f32_to_bf16(v);
    }
    return t;
}

static Tensor dense_zeros(int64_t rows, int64_t cols)
{
    Tensor t;
    CHECK_EQ(bk_host_alloc(&ops_ref_backend, &t, rows, cols, NULL), 0);
    return t;
}

/* The variants this machine runs: caps values, and how many. */
static int dense_variants(int caps[3])
{
    static const int all[3] = {0, CPUCAPS_AVX2, CPUCAPS_AVX2 | CPUCAPS_AVX512};
    int have = cpucaps_get(), n = 0;
    for (int i = 0; i < 3; i++)
        if ((all[i] & have) == all[i])
            caps[n++] = all[i];
    return n;
}

/* Output features the reference checks: all of them for small out, else three windows
 * (start, an NC block boundary in the middle, the end). */
static int dense_windows(int64_t out, int64_t w0[3], int64_t wn[3])
{
    if (out <= 96) {
        w0[0] = 0;
        wn[0] = out;
        return 1;
    }
    int64_t mid = out / 2 / 256 * 256;
    if (mid < 8)
        mid = 8;
    w0[0] = 0, wn[0] = 24;
    w0[1] = mid - 8, wn[1] = 16;
    w0[2] = out - 24, wn[2] = 24;
    return 3;
}

/* One shape and type: the reference on the checked windows, then each variant in vars
 * (caps values) against it. */
static void dense_case(QuantType type, int64_t n, int64_t in, int64_t out, int with_bias,
                       const int *vars, int n_vars)
{
    Tensor w = dense_tensor(type, out, in), x = dense_tensor(QUANT_F32, n, in);
    Tensor bias = dense_tensor(type == QUANT_F16 ? QUANT_F16 : QUANT_BF16, 1, out);
    Tensor bf32 = dense_tensor(QUANT_F32, 1, out);
    const Tensor *b = !with_bias ? NULL : type == QUANT_F32 ? &bf32 : &bias;
    Tensor y = dense_zeros(n, out);
    int64_t w0[3], wn[3];
    int nw = dense_windows(out, w0, wn);
    Tensor yr[3];
    float *tol[3];
    for (int i = 0; i < nw; i++) {
        Tensor wv = backend_view_rows(&w, w0[i], wn[i]);
        Tensor bv = {.type = b ? b->type : QUANT_F32, .rows = 1, .cols = wn[i]};
        if (b) /* the bias window: F32 with F32 weights, else the weights' 16-bit type */
            bv.data = (char *)b->data + bk_dense_bytes(b->type, w0[i]);
        yr[i] = dense_zeros(n, wn[i]);
        ops_ref_backend.matmul(NULL, &yr[i], &x, &wv, b ? &bv : NULL);
        tol[i] = malloc((size_t)(n * wn[i]) * sizeof(float));
        for (int64_t t = 0; t < n; t++)
            for (int64_t o = 0; o < wn[i]; o++) {
                double mag = b ? fabs(bk_elem(b, 0, w0[i] + o)) : 0.0;
                for (int64_t k = 0; k < in; k++)
                    mag += fabs((double)bk_elem(&x, t, k) * bk_elem(&w, w0[i] + o, k));
                tol[i][t * wn[i] + o] = (float)(1e-6 * mag);
            }
    }
    for (int v = 0; v < n_vars; v++) {
        memset(y.data, 0xff, (size_t)(n * out) * 4); /* NaN: every element must be written */
        cpu_dense_matmul_caps(&y, &x, &w, b, vars[v]);
        for (int i = 0; i < nw; i++)
            for (int64_t t = 0; t < n; t++)
                for (int64_t o = 0; o < wn[i]; o++) {
                    float got = ((float *)y.data)[t * out + w0[i] + o];
                    float ref = ((float *)yr[i].data)[t * wn[i] + o];
                    float tl = tol[i][t * wn[i] + o];
                    if (!(fabsf(got - ref) <= tl)) {
                        test_fail(__FILE__, __LINE__,
                                  "%s type %d n %lld %lld->%lld bias %d: y[%lld][%lld] = %g, "
                                  "ref %g, tol %g",
                                  cpu_dense_kernel_name_caps(vars[v]), (int)type, (long long)n,
                                  (long long)in, (long long)out, with_bias, (long long)t,
                                  (long long)(w0[i] + o), got, ref, tl);
                        t = n; /* one message per window */
                        break;
                    }
                }
        /* the elements outside the windows: written (finite) */
        int finite = 1;
        for (int64_t e = 0; e < n * out; e++)
            finite &= isfinite(((float *)y.data)[e]) != 0;
        CHECK(finite);
    }
    for (int i = 0; i < nw; i++) {
        bk_host_release(NULL, &yr[i]);
        free(tol[i]);
    }
    bk_host_release(NULL, &y);
    free(w.data);
    free(x.data);
    free(bias.data);
    free(bf32.data);
}

static const QuantType dense_types[] = {QUANT_F32, QUANT_F16, QUANT_BF16};

/* Odd shapes: in and out not multiples of any tile; in past one KC block (256) and out
 * past one NC block (256); n on both sides of the GEMV limit and of the tile heights. */
static void test_odd(void)
{
    int vars[3], nv = dense_variants(vars);
    static const int64_t shapes[][2] = {{37, 45}, {300, 77}, {513, 259}};
    static const int64_t ns[] = {1, 3, 7, 13, CPU_DENSE_GEMV_MAX - 1, CPU_DENSE_GEMV_MAX, 17, 100};
    dense_rng = 3;
    for (size_t ti = 0; ti < 3; ti++)
        for (size_t s = 0; s < 3; s++)
            for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
                dense_case(dense_types[ti], ns[i], shapes[s][0], shapes[s][1], (int)(i + s) % 2,
                           vars, nv);
    /* no input columns: y is the bias (GEMM and GEMV paths) */
    dense_case(QUANT_BF16, 20, 0, 33, 1, vars, nv);
    dense_case(QUANT_F32, 2, 0, 5, 1, vars, nv);
}

/* The vision tower's shapes: MLP up (1024->4096) and down (4096->1024), the patch
 * embedding (1536->1024), at n = 1, 3 (GEMV), 17, 100, 300 (GEMM; 300 > a token block
 * of the microkernel many times over). */
static void dense_real(QuantType type)
{
    int vars[3], nv = dense_variants(vars);
    static const int64_t shapes[][2] = {{1024, 4096}, {4096, 1024}, {1536, 1024}};
    static const int64_t ns[] = {1, 3, 17, 100, 300};
    dense_rng = 5 + (uint64_t)type;
    for (size_t s = 0; s < 3; s++)
        for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
            /* the plain C variant is slow: it runs the smaller n only */
            int from = ns[i] >= 100 && nv > 1 ? 1 : 0;
            dense_case(type, ns[i], shapes[s][0], shapes[s][1], (int)(i + s) % 2, vars + from,
                       nv - from);
        }
}

static void test_real_f32(void)
{
    dense_real(QUANT_F32);
}

static void test_real_f16(void)
{
    dense_real(QUANT_F16);
}

static void test_real_bf16(void)
{
    dense_real(QUANT_BF16);
}

typedef struct {
    Tensor *y, *x, *w;
} DenseThreadArg;

static void *dense_thread(void *p)
{
    DenseThreadArg *a = p;
    cpu_dense_matmul(a->y, a->x, a->w, NULL);
    return NULL;
}

/* A thread that runs a GEMM and exits: its packing buffers are made and freed (the
 * sanitizer build reports a leak or a double free), and the result is the same. */
static void test_thread_exit(void)
{
    dense_rng = 9;
    Tensor w = dense_tensor(QUANT_F16, 40, 300), x = dense_tensor(QUANT_F32, 30, 300);
    Tensor y1 = dense_zeros(30, 40), y2 = dense_zeros(30, 40);
    cpu_dense_matmul(&y1, &x, &w, NULL);
    DenseThreadArg a = {&y2, &x, &w};
    for (int i = 0; i < 2; i++) {
        pthread_t th;
        CHECK_EQ(pthread_create(&th, NULL, dense_thread, &a), 0);
        CHECK_EQ(pthread_join(th, NULL), 0);
        CHECK(!memcmp(y1.data, y2.data, 30 * 40 * 4));
    }
    free(w.data);
    free(x.data);
    bk_host_release(NULL, &y1);
    bk_host_release(NULL, &y2);
}

/* The cpu backend sends dense weights here: its matmul equals cpu_dense_matmul bit for
 * bit, and the variants are the expected ones. */
static void test_hook(void)
{
    dense_rng = 7;
    Tensor w = dense_tensor(QUANT_BF16, 70, 200), x = dense_tensor(QUANT_F32, 20, 200);
    Tensor b = dense_tensor(QUANT_BF16, 1, 70), y1 = dense_zeros(20, 70), y2 = dense_zeros(20, 70);
    backend_cpu.matmul(NULL, &y1, &x, &w, &b);
    cpu_dense_matmul(&y2, &x, &w, &b);
    CHECK(!memcmp(y1.data, y2.data, 20 * 70 * 4));
    CHECK_STR(cpu_dense_kernel_name_caps(0), "c 4x16 f32");
    if (cpucaps_get() & CPUCAPS_AVX2)
        CHECK_STR(cpu_dense_kernel_name_caps(CPUCAPS_AVX2), "avx2 6x16 f32-fma");
    if (cpucaps_get() & CPUCAPS_AVX512)
        CHECK_STR(cpu_dense_kernel_name(), "avx512 14x32 f32-fma");
    CHECK(cpu_dense_scratch_bytes(2) > 2 * 256 * 256 * 4);
    free(w.data);
    free(x.data);
    free(b.data);
    bk_host_release(NULL, &y1);
    bk_host_release(NULL, &y2);
}

/* the real shapes take seconds (minutes under the sanitizers): a longer timeout */
TEST_GROUP(dense, {"odd", test_odd}, {"real_f32", test_real_f32, 600},
           {"real_f16", test_real_f16, 600}, {"real_bf16", test_real_bf16, 600},
           {"hook", test_hook}, {"thread_exit", test_thread_exit})
