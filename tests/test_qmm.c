/* test_qmm: the integer Q4/Q8 matmul (src/cpu_qmm.c). Every kernel the CPU has (capped
 * by VLQ_CPUCAPS) against the plain C kernel, which sums the same integers (tight: only
 * the f32 summation order differs), and every kernel against ops_ref's f32 matmul on the
 * dequantised weights, with a tolerance that follows from the int8 activation rounding.
 *
 * That tolerance: x_k is replaced by d_b q_k, d_b = amax_b/127 for the block b of 32
 * columns holding k, with a rounding error e_k uniform in [-d_b/2, d_b/2] and independent
 * across k, so y - y_ref = sum_k w_k e_k has standard deviation
 * sigma = sqrt(sum_k w_k^2 d_b^2 / 12). Each output must be within 6 sigma (a chance of
 * about 2e-9 per output of failing a correct kernel) plus 1e-5 * in for f32 rounding. */
#include "backend.h"
#include "backend_int.h"
#include "cpu_qmm.h"
#include "cpucaps.h"
#include "err.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t qmm_rng = 1;

static float qmm_rand(void) /* uniform in [-1, 1) */
{
    qmm_rng = qmm_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((qmm_rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

/* A random Q4/Q8 weight [rows, cols] in quant.h's layout; returns the bytes (caller
 * frees), t wraps them. Scales are half floats in [0.01, 0.11]. */
static void *qmm_weight(Tensor *t, QuantType type, int64_t rows, int64_t cols, int group)
{
    size_t nb = (quant_nbytes(type, rows, cols, group) + 63) / 64 * 64;
    uint8_t *bytes = aligned_alloc(64, nb);
    memset(bytes, 0, nb);
    uint16_t *scale = (uint16_t *)(bytes + quant_scale_offset(type, rows, cols));
    int half = group / 2;
    for (int64_t g = 0; g < rows * cols / group; g++) {
        scale[g] = half_f32_to_f16(0.01f + 0.1f * fabsf(qmm_rand()));
        for (int j = 0; j < group; j++) {
            int64_t i = g * group + j;
            if (type == QUANT_Q8) {
                ((int8_t *)bytes)[i] = (int8_t)(qmm_rand() * 127.0f);
            } else {
                int q = (int)((qmm_rand() + 1.0f) * 8.0f) & 15;
                bytes[g * half + j % half] |= (uint8_t)(j < half ? q : q << 4);
            }
        }
    }
    CHECK_EQ(bk_host_weight(&ops_ref_backend, t, type, rows, cols, group, bytes, NULL), 0);
    return bytes;
}

static Tensor qmm_act(int64_t rows, int64_t cols, int zero_row)
{
    Tensor t;
    CHECK_EQ(bk_host_alloc(&ops_ref_backend, &t, rows, cols, NULL), 0);
    for (int64_t i = 0; i < rows * cols; i++)
        ((float *)t.data)[i] = i / cols == zero_row ? 0.0f : qmm_rand();
    return t;
}

/* Count of outputs outside 6 sigma of the f32 reference (sigma as the file comment says);
 * the largest |err| / sigma is printed. */
static int qmm_check_ref(const char *what, const Tensor *y, const Tensor *yr, const Tensor *x,
                         const Tensor *w)
{
    int64_t n = x->rows, in = x->cols, out = w->rows, bad = 0;
    double worst = 0;
    float *d = malloc((size_t)(in / 32) * sizeof *d);
    for (int64_t t = 0; t < n; t++) {
        const float *xt = (const float *)x->data + t * in;
        for (int64_t b = 0; b < in / 32; b++) {
            float amax = 0.0f;
            for (int k = 0; k < 32; k++)
                amax = fmaxf(amax, fabsf(xt[b * 32 + k]));
            d[b] = amax / 127.0f;
        }
        for (int64_t o = 0; o < out; o++) {
            double var = 0;
            for (int64_t k = 0; k < in; k++) {
                double wk = bk_elem(w, o, k);
                var += wk * wk * d[k / 32] * d[k / 32] / 12.0;
            }
            double sigma = sqrt(var), err = fabs((double)((float *)y->data)[t * out + o] -
                                                 ((float *)yr->data)[t * out + o]);
            if (!(err <= 6.0 * sigma + 1e-5 * (double)in) && bad++ < 5)
                test_fail(__FILE__, __LINE__, "%s: y[%lld][%lld] err %.4g > 6 sigma %.4g", what,
                          (long long)t, (long long)o, err, 6.0 * sigma);
            if (sigma > 0 && err / sigma > worst)
                worst = err / sigma;
        }
    }
    free(d);
    fprintf(stderr, "    %-40s vs f32: worst %.2f sigma\n", what, worst);
    return (int)bad;
}

/* y (kernel k) against yc (plain C kernel): the same integer sums, f32 order differs. */
static void qmm_check_c(const char *what, const Tensor *y, const Tensor *yc, int64_t in)
{
    CHECK(test_check_tensor(__FILE__, __LINE__, what, y->data, yc->data,
                            (size_t)(y->rows * y->cols), 1e-7f * (float)in, 1e-5f));
}

/* One shape on every available kernel: against C, and (when check_ref) against ops_ref. */
static void qmm_case(QuantType type, int64_t n, int64_t in, int64_t out, int group, int with_bias,
                     int check_ref)
{
    Tensor w, bias, yr, yc, yk, x = qmm_act(n, in, n > 2 ? 1 : -1);
    void *wb = qmm_weight(&w, type, out, in, group);
    float *bb = malloc((size_t)out * 4);
    for (int64_t o = 0; o < out; o++)
        bb[o] = qmm_rand();
    CHECK_EQ(bk_host_weight(&ops_ref_backend, &bias, QUANT_F32, 1, out, 0, bb, NULL), 0);
    const Tensor *bp = with_bias ? &bias : NULL;
    bk_host_alloc(&ops_ref_backend, &yr, n, out, NULL);
    bk_host_alloc(&ops_ref_backend, &yc, n, out, NULL);
    bk_host_alloc(&ops_ref_backend, &yk, n, out, NULL);
    char what[128];
    snprintf(what, sizeof what, "%s g%d %lldx%lld->%lld%s", type == QUANT_Q4 ? "q4" : "q8", group,
             (long long)n, (long long)in, (long long)out, with_bias ? " +bias" : "");
    if (check_ref)
        ops_ref_backend.matmul(NULL, &yr, &x, &w, bp);
    cpu_qmm_matmul_with(CPU_QMM_C, &yc, &x, &w, bp);
    if (check_ref)
        qmm_check_ref(what, &yc, &yr, &x, &w);
    for (int k = CPU_QMM_C + 1; k < CPU_QMM_N; k++) {
        if (!cpu_qmm_kernel_available(k))
            continue;
        memset(yk.data, 0xff, (size_t)(n * out) * 4); /* NaN: every output must be written */
        cpu_qmm_matmul_with(k, &yk, &x, &w, bp);
        char kw[160];
        snprintf(kw, sizeof kw, "%s %s", cpu_qmm_kernel_label(k), what);
        qmm_check_c(kw, &yk, &yc, in);
        if (check_ref && k == (int)cpu_qmm_kernel())
            qmm_check_ref(kw, &yk, &yr, &x, &w);
    }
    /* the packed layout: its C kernel against the file-layout C kernel and ops_ref, its
     * SIMD kernels against its C kernel */
    size_t pbytes = cpu_qmm_packed_bytes(type, out, in, group);
    CHECK(pbytes >= quant_nbytes(type, out, in, group));
    CHECK(pbytes - quant_nbytes(type, out, in, group) <= (size_t)(15 * in + 15 * in / group * 2));
    void *pk = aligned_alloc(64, (pbytes + 63) / 64 * 64);
    cpu_qmm_pack(&w, pk);
    Tensor wp = cpu_qmm_packed_tensor(&w, pk);
    Tensor ypc;
    bk_host_alloc(&ops_ref_backend, &ypc, n, out, NULL);
    memset(ypc.data, 0xff, (size_t)(n * out) * 4);
    cpu_qmm_matmul_packed_with(CPU_QMM_C, &ypc, &x, &wp, bp);
    char pw[160];
    snprintf(pw, sizeof pw, "packed c %s", what);
    qmm_check_c(pw, &ypc, &yc, in);
    if (check_ref)
        qmm_check_ref(pw, &ypc, &yr, &x, &w);
    for (int k = CPU_QMM_C + 1; k < CPU_QMM_N; k++) {
        if (!cpu_qmm_packed_available(k))
            continue;
        memset(yk.data, 0xff, (size_t)(n * out) * 4);
        cpu_qmm_matmul_packed_with(k, &yk, &x, &wp, bp);
        snprintf(pw, sizeof pw, "packed %s %s", cpu_qmm_kernel_label(k), what);
        qmm_check_c(pw, &yk, &ypc, in);
    }
    free(pk);
    bk_host_release(NULL, &ypc);
    free(wb);
    free(bb);
    bk_host_release(NULL, &x);
    bk_host_release(NULL, &yr);
    bk_host_release(NULL, &yc);
    bk_host_release(NULL, &yk);
}

/* Which kernels run here; the rest are skipped with the reason (printed). */
static void qmm_report(void)
{
    for (int k = CPU_QMM_C; k < CPU_QMM_N; k++)
        fprintf(stderr, "  kernel %-11s %s\n", cpu_qmm_kernel_label(k),
                cpu_qmm_kernel_available(k) ? "runs" : "skipped: this CPU (or VLQ_CPUCAPS) lacks it");
    fprintf(stderr, "  cpucaps: %s; matmul uses %s\n", cpucaps_describe(cpucaps_get()),
            cpu_qmm_kernel_name());
}

/* Odd shapes: rows not a multiple of the tile, 1..40 tokens, half units (cols % 64 ==
 * 32), partial windows, groups 32, 64, 96, 128, the GEMV and GEMM paths, bias or not. */
static void test_odd_shapes(void)
{
    qmm_report();
    qmm_rng = 7;
    static const QuantType types[] = {QUANT_Q4, QUANT_Q8};
    for (int ti = 0; ti < 2; ti++) {
        QuantType t = types[ti];
        qmm_case(t, 1, 32, 3, 32, 1, 1);    /* one half unit, nothing else */
        qmm_case(t, 1, 64, 5, 32, 0, 1);
        qmm_case(t, 2, 96, 17, 32, 1, 1);   /* full unit + half unit */
        qmm_case(t, 3, 320, 9, 64, 0, 1);   /* a partial window */
        qmm_case(t, 5, 288, 11, 96, 1, 1);  /* group 96: groups straddle units */
        qmm_case(t, 8, 512, 7, 128, 0, 1);  /* widest GEMV */
        qmm_case(t, 9, 160, 13, 32, 1, 1);  /* first GEMM size */
        qmm_case(t, 17, 384, 6, 64, 0, 1);
        qmm_case(t, 40, 224, 31, 32, 1, 1); /* 40 tokens, rows % 4 = 3 */
        qmm_case(t, 70, 2304, 5, 64, 0, 1); /* > one token block, > one column chunk */
        /* packed layout: rows % 16 != 0, odd row-group counts, > one column chunk of
         * 32 blocks, > one token block of 64, token tails 1..3 */
        qmm_case(t, 1, 1088, 33, 32, 1, 1);
        qmm_case(t, 2, 64, 47, 64, 0, 1);
        qmm_case(t, 7, 1152, 40, 128, 1, 1);
        qmm_case(t, 66, 1088, 21, 32, 1, 1);
        qmm_case(t, 100, 256, 50, 128, 0, 1);
    }
}

/* The 4B decoder shapes at small token counts (GEMV; and one GEMM). */
static void test_real_shapes(void)
{
    qmm_rng = 19;
    qmm_case(QUANT_Q4, 1, 2560, 9728, 32, 0, 1);
    qmm_case(QUANT_Q4, 2, 9728, 2560, 32, 0, 1);
    qmm_case(QUANT_Q4, 3, 2560, 4096, 32, 1, 1);
    qmm_case(QUANT_Q4, 12, 2560, 1024, 32, 0, 1);
    qmm_case(QUANT_Q8, 1, 2560, 4096, 32, 0, 1);
    qmm_case(QUANT_Q4, 1, 9728, 512, 64, 1, 1);
}

/* The backend's matmul sends Q4/Q8 here, and a zero activation row gives exactly the bias. */
static void test_backend_hook(void)
{
    qmm_rng = 23;
    Tensor w, x = qmm_act(3, 128, 1), y, yq;
    void *wb = qmm_weight(&w, QUANT_Q4, 10, 128, 32);
    bk_host_alloc(&ops_ref_backend, &y, 3, 10, NULL);
    bk_host_alloc(&ops_ref_backend, &yq, 3, 10, NULL);
    backend_cpu.matmul(NULL, &y, &x, &w, NULL);
    cpu_qmm_matmul(&yq, &x, &w, NULL);
    CHECK(!memcmp(y.data, yq.data, 30 * 4));
    for (int o = 0; o < 10; o++)
        CHECK(((float *)y.data)[10 + o] == 0.0f);
    CHECK(strstr(cpu_qmm_kernel_name(), cpu_qmm_kernel_label(cpu_qmm_kernel())) != NULL);
    CHECK(cpu_qmm_scratch_bytes(512, 9728) >= (size_t)3 * 512 * 9728);
    CHECK_EQ(cpu_qmm_reserve(4, 4096, NULL), 0);
    cpu_qmm_release();
    free(wb);
    bk_host_release(NULL, &x);
    bk_host_release(NULL, &y);
    bk_host_release(NULL, &yq);
}

/* The cpu backend's weight hook: Q4/Q8 repacked (when the CPU has a packed kernel) into
 * memory it owns; its matmul gives what cpu_qmm_matmul_packed gives, its embed the file
 * rows exactly, and release frees the copy (ASan would see a leak). */
static void test_backend_packed(void)
{
    qmm_rng = 29;
    static const QuantType types[] = {QUANT_Q4, QUANT_Q8};
    for (int ti = 0; ti < 2; ti++) {
        Tensor w, wc, x = qmm_act(5, 256, 1), y, yp, e, er;
        void *wb = qmm_weight(&w, types[ti], 37, 256, 64);
        char err[VLQ_ERRLEN];
        CHECK_EQ(backend_cpu.weight(&backend_cpu, &wc, types[ti], 37, 256, 64, wb, err), 0);
        int packed = cpu_qmm_packed_kernel() != CPU_QMM_C;
        CHECK(packed ? wc.owned && wc.data != wb : !wc.owned && wc.data == wb);
        CHECK(wc.type == types[ti] && wc.rows == 37 && wc.cols == 256 && wc.group == 64);
        bk_host_alloc(&ops_ref_backend, &y, 5, 37, NULL);
        bk_host_alloc(&ops_ref_backend, &yp, 5, 37, NULL);
        backend_cpu.matmul(&backend_cpu, &y, &x, &wc, NULL);
        if (packed)
            cpu_qmm_matmul_packed(&yp, &x, &wc, NULL);
        else
            cpu_qmm_matmul(&yp, &x, &wc, NULL);
        CHECK(!memcmp(y.data, yp.data, 5 * 37 * 4));
        int32_t ids[4] = {0, 36, 17, 15};
        bk_host_alloc(&ops_ref_backend, &e, 4, 256, NULL);
        bk_host_alloc(&ops_ref_backend, &er, 4, 256, NULL);
        backend_cpu.embed(&backend_cpu, &e, &wc, ids, 4);
        ops_ref_backend.embed(&ops_ref_backend, &er, &w, ids, 4);
        CHECK(!memcmp(e.data, er.data, 4 * 256 * 4));
        backend_cpu.release(&backend_cpu, &wc);
        CHECK(wc.data == NULL);
        free(wb);
        bk_host_release(NULL, &x);
        bk_host_release(NULL, &y);
        bk_host_release(NULL, &yp);
        bk_host_release(NULL, &e);
        bk_host_release(NULL, &er);
    }
}

TEST_GROUP(qmm, {"odd_shapes", test_odd_shapes, 0}, {"real_shapes", test_real_shapes, 300},
           {"backend_hook", test_backend_hook, 0}, {"backend_packed", test_backend_packed, 0})
