/* mm_check: kernels/matmul.cu and kernels/rows.cu on a device against ops_ref, then their
 * speed at the 4B shapes. What tests/test_kmath_mm.c cannot prove without a GPU: the data
 * movement (shared-memory fills, cp.async, mma fragments, shuffles), the launch
 * configurations, the cuBLAS calls. Run by tests/cuda/check_mm.sh (which builds it).
 *
 *   mm_check            correctness (every path, edge shapes), then timings
 *   mm_check --quick    correctness only (for compute-sanitizer)
 *
 * Correctness: every output poisoned (NaN) before the launch and compared with ops_ref:
 * matmuls within the bounds of kernels/matmul.cu's comment (per element,
 * rel * sum_k |x_k w_k| + 2^-22 |ref|), the rows ops bit for bit. Exit 0: all pass; 1: a
 * failure; 77: no usable device (skipped, with the reason).
 *
 * vk_stage and vk_note are defined here (backend_cuda.cu's are the product's; this
 * program links only the two kernel families). */
#include "vk.h"

#include "mm_geom.h"

#include <cuda_fp16.h>

extern "C" {
#include "backend_int.h"
}

#include <algorithm>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

/* ---- the context's two helpers (test versions) ---- */

void *vk_stage(VkCtx *c, const void *host, size_t bytes)
{
    size_t need = (bytes + 255) / 256 * 256;
    if (need > c->ring_bytes) {
        vk_note(c, (int)cudaErrorMemoryAllocation, "vk_stage: larger than the ring");
        return NULL;
    }
    if (c->ring_head + need > c->ring_bytes)
        c->ring_head = 0; /* stream order keeps earlier readers ahead of the copy */
    void *d = (char *)c->ring + c->ring_head;
    c->ring_head += need;
    if (vk_note(c, (int)cudaMemcpyAsync(d, host, bytes, cudaMemcpyHostToDevice, c->stream),
                "vk_stage"))
        return NULL;
    return d;
}

int vk_note(VkCtx *c, int e, const char *what)
{
    if (!e)
        return 0;
    if (!c->error) {
        c->error = e;
        snprintf(c->err, sizeof c->err, "%s: error %d (%s)", what, e,
                 cudaGetErrorString((cudaError_t)e));
    }
    return 1;
}

#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static VkCtx ctx;
static int failures;

static void sync_or_die(const char *what)
{
    CK(cudaStreamSynchronize(ctx.stream));
    if (ctx.error) {
        fprintf(stderr, "FAIL %s: %s\n", what, ctx.err);
        exit(1);
    }
}

/* ---- random host tensors (quant.h layouts) and their device copies ---- */

static uint64_t rng = 1;
static uint32_t ru32(void)
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng >> 32);
}
static float rf(void)
{
    return (float)(ru32() >> 8) / 8388608.0f - 1.0f;
}

struct Pair {
    Tensor h, d; /* host (ops_ref) and device views of the same bytes */
    void *hb;
};

static Pair pair_new(QuantType type, int64_t rows, int64_t cols, int group)
{
    Pair p;
    size_t nb = quant_nbytes(type, rows, cols, group ? group : 32);
    p.hb = aligned_alloc(64, (nb + 63) / 64 * 64);
    memset(p.hb, 0, nb);
    uint8_t *b = (uint8_t *)p.hb;
    int64_t ne = rows * cols;
    if (type == QUANT_F32)
        for (int64_t i = 0; i < ne; i++)
            ((float *)b)[i] = rf() * (1 + i % 5);
    else if (type == QUANT_F16 || type == QUANT_BF16)
        for (int64_t i = 0; i < ne; i++)
            ((uint16_t *)b)[i] = type == QUANT_F16 ? half_f32_to_f16(rf()) : half_f32_to_bf16(rf());
    else {
        uint16_t *sc = (uint16_t *)(b + quant_scale_offset(type, rows, cols));
        for (int64_t g = 0; g < ne / group; g++)
            sc[g] = half_f32_to_f16(0.01f + 0.1f * fabsf(rf()));
        for (size_t i = 0; i < (size_t)(type == QUANT_Q8 ? ne : ne / 2); i++)
            b[i] = (uint8_t)(ru32() >> 24);
    }
    bk_host_weight(&ops_ref_backend, &p.h, type, rows, cols, group, p.hb, NULL);
    p.d = p.h;
    void *d;
    CK(cudaMalloc(&d, nb));
    CK(cudaMemcpy(d, p.hb, nb, cudaMemcpyHostToDevice));
    p.d.data = d;
    p.d.scale = p.h.scale ? (char *)d + ((char *)p.h.scale - (char *)p.hb) : NULL;
    return p;
}

static void pair_free(Pair *p)
{
    cudaFree(p->d.data);
    free(p->hb);
}

/* A device F32 tensor [rows, cols] filled with NaN (0xff bytes). */
static Tensor dev_poisoned(int64_t rows, int64_t cols)
{
    Tensor t = {};
    t.type = QUANT_F32, t.rows = rows, t.cols = cols;
    CK(cudaMalloc(&t.data, (size_t)(rows * cols) * 4));
    CK(cudaMemset(t.data, 0xff, (size_t)(rows * cols) * 4));
    return t;
}

static std::vector<float> dev_read(const Tensor *t)
{
    std::vector<float> v((size_t)(t->rows * t->cols));
    CK(cudaMemcpy(v.data(), t->data, v.size() * 4, cudaMemcpyDeviceToHost));
    return v;
}

/* ---- matmul correctness ---- */

static double rel_bound(QuantType wt, int64_t n, int64_t in)
{
    double order = (double)(in + 64);
    switch (wt) {
    case QUANT_F32:
        return order * ldexp(1, -23);
    case QUANT_F16:
        return ldexp(1, -11) + order * ldexp(1, -23);
    case QUANT_BF16:
        return ldexp(1, -8) + order * ldexp(1, -23);
    default:
        return n <= VK_GEMV_MAX_N ? order * ldexp(1, -24)
                                  : ldexp(1, -10) + ldexp(1, -22) + order * ldexp(1, -23);
    }
}

static void check_matmul(QuantType wt, int64_t n, int64_t in, int64_t out, int group, int bias_t)
{
    Pair w = pair_new(wt, out, in, group), x = pair_new(QUANT_F32, n, in, 0), b = {};
    if (bias_t >= 0)
        b = pair_new((QuantType)bias_t, 1, out, 0);
    Tensor y = dev_poisoned(n, out), yr;
    bk_host_alloc(&ops_ref_backend, &yr, n, out, NULL);
    vk_matmul(&ctx, &y, &x.d, &w.d, bias_t >= 0 ? &b.d : NULL);
    sync_or_die("vk_matmul");
    ops_ref_backend.matmul(NULL, &yr, &x.h, &w.h, bias_t >= 0 ? &b.h : NULL);
    std::vector<float> got = dev_read(&y);
    double rel = rel_bound(wt, n, in), worst = 0;
    int64_t bad = 0;
    std::vector<float> wrow((size_t)in);
    for (int64_t o = 0; o < out; o++) {
        for (int64_t k = 0; k < in; k++)
            wrow[k] = bk_elem(&w.h, o, k);
        for (int64_t t = 0; t < n; t++) {
            double s = 0;
            const float *xt = (const float *)x.h.data + t * in;
            for (int64_t k = 0; k < in; k++)
                s += fabs((double)xt[k] * wrow[k]);
            float r = ((float *)yr.data)[t * out + o], g = got[t * out + o];
            double tol = rel * s + ldexp(fabs(r), -22) + 1e-30, err = fabs((double)g - r);
            if (!(err <= tol))
                bad++;
            else if (err / tol > worst)
                worst = err / tol;
        }
    }
    static const char *names[] = {"f32", "f16", "bf16", "q8", "q4"};
    printf("%s matmul %-4s g%-3d n=%-4lld %5lld->%-6lld bias %-4s worst %.3f of bound%s\n",
           bad ? "FAIL" : "ok  ", names[wt], group, (long long)n, (long long)in, (long long)out,
           bias_t >= 0 ? names[bias_t] : "-", worst, bad ? " (outside or NaN)" : "");
    if (bad)
        failures++;
    cudaFree(y.data);
    bk_host_release(NULL, &yr);
    pair_free(&w);
    pair_free(&x);
    if (bias_t >= 0)
        pair_free(&b);
}

/* ---- rows correctness (bit for bit) ---- */

static void expect_same(const char *what, const std::vector<float> &got, const Tensor *ref)
{
    int same = memcmp(got.data(), ref->data, got.size() * 4) == 0;
    printf("%s %s\n", same ? "ok  " : "FAIL", what);
    if (!same)
        failures++;
}

static void check_rows(void)
{
    static const char *names[] = {"f32", "f16", "bf16", "q8", "q4"};
    const int64_t rows = 50, cols = 256;
    const int n = 7;
    int32_t ids[n], idx[n * 4];
    float wmix[n * 4];
    for (int i = 0; i < n; i++)
        ids[i] = (int32_t)(ru32() % rows);
    for (int t = QUANT_F32; t <= QUANT_Q4; t++) {
        Pair tab = pair_new((QuantType)t, rows, cols, t >= QUANT_Q8 ? 32 : 0);
        Tensor y = dev_poisoned(n, cols), yr;
        bk_host_alloc(&ops_ref_backend, &yr, n, cols, NULL);
        vk_embed(&ctx, &y, &tab.d, ids, n);
        sync_or_die("vk_embed");
        ops_ref_backend.embed(NULL, &yr, &tab.h, ids, n);
        char what[64];
        snprintf(what, sizeof what, "embed %s", names[t]);
        expect_same(what, dev_read(&y), &yr);
        for (int i = 0; i < n * 4; i++) {
            idx[i] = (int32_t)(ru32() % rows);
            wmix[i] = fabsf(rf());
            if (t == QUANT_BF16)
                wmix[i] = bk_round_bf16(wmix[i]);
            if (t == QUANT_F16)
                wmix[i] = bk_round_half(wmix[i]);
        }
        CK(cudaMemset(y.data, 0xff, (size_t)(n * cols) * 4));
        vk_embed_mix4(&ctx, &y, &tab.d, idx, wmix, n);
        sync_or_die("vk_embed_mix4");
        ops_ref_backend.embed_mix4(NULL, &yr, &tab.h, idx, wmix, n);
        snprintf(what, sizeof what, "embed_mix4 %s", names[t]);
        expect_same(what, dev_read(&y), &yr);
        cudaFree(y.data);
        bk_host_release(NULL, &yr);
        pair_free(&tab);
    }
    /* set_rows into F32/F16/BF16 caches; values with midpoints, overflow, NaN */
    Pair src = pair_new(QUANT_F32, n, cols, 0);
    float *sv = (float *)src.h.data;
    sv[0] = 65520.0f, sv[1] = NAN, sv[2] = 1e-8f, sv[3] = 1.00048828125f; /* an f16 midpoint */
    CK(cudaMemcpy(src.d.data, sv, (size_t)(n * cols) * 4, cudaMemcpyHostToDevice));
    int32_t srows[n] = {3, 0, 9, 4, 1, 40, 49};
    for (int t = QUANT_F32; t <= QUANT_BF16; t++) {
        Tensor dh, dd = {};
        bk_host_alloc_typed(&ops_ref_backend, &dh, (QuantType)t, rows, cols, NULL);
        dd = dh;
        size_t nb = bk_dense_bytes((QuantType)t, rows * cols);
        CK(cudaMalloc(&dd.data, nb));
        CK(cudaMemset(dd.data, 0, nb));
        vk_set_rows(&ctx, &dd, srows, &src.d, n);
        sync_or_die("vk_set_rows");
        ops_ref_backend.set_rows(NULL, &dh, srows, &src.h, n);
        std::vector<uint8_t> got(nb);
        CK(cudaMemcpy(got.data(), dd.data, nb, cudaMemcpyDeviceToHost));
        int same = memcmp(got.data(), dh.data, nb) == 0;
        printf("%s set_rows %s\n", same ? "ok  " : "FAIL", names[t]);
        failures += !same;
        cudaFree(dd.data);
        bk_host_release(NULL, &dh);
    }
    /* add_rows: increasing rows (parallel kernel) and repeated rows (ordered kernel) */
    int32_t inc[n] = {1, 4, 5, 9, 20, 30, 49}, rep[n] = {5, 5, 2, 49, 5, 2, 0};
    for (int pass = 0; pass < 2; pass++) {
        Pair dst = pair_new(QUANT_F32, rows, cols, 0);
        Tensor dd = dst.d;
        vk_add_rows(&ctx, &dd, pass ? rep : inc, &src.d, n);
        sync_or_die("vk_add_rows");
        ops_ref_backend.add_rows(NULL, &dst.h, pass ? rep : inc, &src.h, n);
        expect_same(pass ? "add_rows repeated rows" : "add_rows increasing rows", dev_read(&dd),
                    &dst.h);
        pair_free(&dst);
    }
    {
        Pair from = pair_new(QUANT_F32, rows, cols, 0);
        Tensor y = dev_poisoned(n, cols), yr;
        bk_host_alloc(&ops_ref_backend, &yr, n, cols, NULL);
        vk_get_rows(&ctx, &y, &from.d, rep, n);
        sync_or_die("vk_get_rows");
        ops_ref_backend.get_rows(NULL, &yr, &from.h, rep, n);
        expect_same("get_rows", dev_read(&y), &yr);
        cudaFree(y.data);
        bk_host_release(NULL, &yr);
        pair_free(&from);
    }
    /* argmax over lm_head-wide rows: ties, NaN at 0, NaN elsewhere, -inf */
    {
        const int64_t V = 151936;
        const int nr = 5;
        Pair lg = pair_new(QUANT_F32, nr, V, 0);
        float *v = (float *)lg.h.data;
        for (int64_t i = 0; i < nr * V; i++)
            v[i] = (float)(int)(rf() * 50);
        v[0 * V + 777] = 1e6f, v[0 * V + 99999] = 1e6f; /* a tie: first wins */
        v[1 * V + 0] = NAN;                             /* NaN at 0 is kept */
        v[2 * V + 5] = NAN, v[2 * V + 151000] = 1e7f;   /* other NaNs skipped */
        for (int64_t i = 0; i < V; i++)
            v[3 * V + i] = i == 4242 ? -1.0f : -INFINITY; /* -inf everywhere else */
        CK(cudaMemcpy(lg.d.data, v, (size_t)(nr * V) * 4, cudaMemcpyHostToDevice));
        int32_t got[nr], ref[nr];
        vk_argmax(&ctx, &lg.d, got);
        sync_or_die("vk_argmax");
        ops_ref_backend.argmax(NULL, &lg.h, ref);
        int same = memcmp(got, ref, sizeof got) == 0;
        printf("%s argmax 5 x 151936 (%d %d %d %d %d)\n", same ? "ok  " : "FAIL", got[0], got[1],
               got[2], got[3], got[4]);
        failures += !same;
        pair_free(&lg);
    }
    pair_free(&src);
}

/* ---- timings ---- */

static __global__ void fill_kernel(uint32_t *p, size_t n, uint32_t seed)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
        p[i] = h;
    }
}

static __global__ void fill_float_kernel(float *p, size_t n, float lo, float hi)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ 0x9e3779b9u;
        h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
        p[i] = lo + (hi - lo) * (float)(h >> 8) / 16777216.0f;
    }
}

static __global__ void fill_half_kernel(uint16_t *p, size_t n, float lo, float hi)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u;
        h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
        p[i] = __half_as_ushort(__float2half(lo + (hi - lo) * (float)(h >> 8) / 16777216.0f));
    }
}

/* A device Q4 weight [out, in] (group 32) of random nibbles and scales in [0.01, 0.1]. */
static Tensor dev_q4(int64_t out, int64_t in)
{
    Tensor t = {};
    t.type = QUANT_Q4, t.rows = out, t.cols = in, t.group = 32;
    size_t nb = quant_nbytes(QUANT_Q4, out, in, 32);
    CK(cudaMalloc(&t.data, nb));
    fill_kernel<<<1024, 256>>>((uint32_t *)t.data, quant_scale_offset(QUANT_Q4, out, in) / 4,
                               (uint32_t)out * 31 + (uint32_t)in);
    t.scale = (char *)t.data + quant_scale_offset(QUANT_Q4, out, in);
    fill_half_kernel<<<1024, 256>>>((uint16_t *)t.scale, (size_t)(out * in / 32), 0.01f, 0.1f);
    CK(cudaGetLastError());
    return t;
}

static float median(std::vector<float> v)
{
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

static void timings(void)
{
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    /* the copy bandwidth: 1 GiB device to device, read + write counted */
    size_t cb = (size_t)1 << 30;
    void *a, *b;
    CK(cudaMalloc(&a, cb));
    CK(cudaMalloc(&b, cb));
    std::vector<float> ms;
    for (int i = 0; i < 7; i++) {
        CK(cudaEventRecord(e0, ctx.stream));
        CK(cudaMemcpyAsync(b, a, cb, cudaMemcpyDeviceToDevice, ctx.stream));
        CK(cudaEventRecord(e1, ctx.stream));
        CK(cudaEventSynchronize(e1));
        float t;
        CK(cudaEventElapsedTime(&t, e0, e1));
        ms.push_back(t);
    }
    double bw = 2.0 * cb / (median(ms) * 1e-3);
    printf("copy bandwidth: %.0f GB/s\n", bw / 1e9);
    cudaFree(a);
    cudaFree(b);

    /* decode: every matmul of a 4B token (36 layers: q 4096, k 1024, v 1024, o 2560x4096,
     * gate 9728, up 9728, down 2560x9728; lm_head 151936), distinct weights so nothing
     * is served from L2, at n = 1, 2, 4, 8 */
    struct Shape {
        int64_t out, in;
    } layer[] = {{4096, 2560}, {1024, 2560}, {1024, 2560}, {2560, 4096},
                 {9728, 2560}, {9728, 2560}, {2560, 9728}};
    const int L = 36;
    std::vector<Tensor> ws;
    size_t bytes = 0;
    for (int l = 0; l < L; l++)
        for (auto &s : layer) {
            ws.push_back(dev_q4(s.out, s.in));
            bytes += quant_nbytes(QUANT_Q4, s.out, s.in, 32);
        }
    ws.push_back(dev_q4(151936, 2560));
    bytes += quant_nbytes(QUANT_Q4, 151936, 2560, 32);
    Tensor x = dev_poisoned(8, 9728), y = dev_poisoned(8, 151936);
    fill_float_kernel<<<256, 256>>>((float *)x.data, 8 * 9728, -1.0f, 1.0f); /* not zeros */
    for (int n = 1; n <= 8; n *= 2) {
        ms.clear();
        for (int rep = 0; rep < 6; rep++) {
            CK(cudaEventRecord(e0, ctx.stream));
            for (auto &w : ws) {
                Tensor xv = x, yv = y;
                xv.rows = n, xv.cols = w.cols, yv.rows = n, yv.cols = w.rows;
                vk_matmul(&ctx, &yv, &xv, &w, NULL);
            }
            CK(cudaEventRecord(e1, ctx.stream));
            CK(cudaEventSynchronize(e1));
            sync_or_die("decode timing");
            float t;
            CK(cudaEventElapsedTime(&t, e0, e1));
            if (rep)
                ms.push_back(t);
        }
        double t = median(ms) * 1e-3;
        printf("decode n=%d: matmuls of one token %.3f ms, %.0f GB/s = %.1f%% of copy "
               "bandwidth (%.1f MB of weights)\n",
               n, t * 1e3, bytes / t / 1e9, 100.0 * bytes / t / bw, bytes / 1e6);
    }
    cudaFree(y.data);

    /* prefill: the Q4 GEMM against cuBLAS's f16 GEMM at the same shapes */
    for (int64_t n : {512, 2048})
        for (int si : {4, 6}) {
            Shape s = layer[si];
            Tensor w = ws[si], xp = dev_poisoned(n, s.in), yp = dev_poisoned(n, s.out);
            fill_float_kernel<<<1024, 256>>>((float *)xp.data, (size_t)(n * s.in), -1.f, 1.f);
            void *wh, *xh;
            CK(cudaMalloc(&wh, (size_t)(s.out * s.in) * 2));
            CK(cudaMalloc(&xh, (size_t)(n * s.in) * 2));
            fill_half_kernel<<<1024, 256>>>((uint16_t *)wh, (size_t)(s.out * s.in), -0.1f, 0.1f);
            fill_half_kernel<<<1024, 256>>>((uint16_t *)xh, (size_t)(n * s.in), -1.f, 1.f);
            float tq, tc;
            for (int which = 0; which < 2; which++) {
                ms.clear();
                for (int rep = 0; rep < 8; rep++) {
                    CK(cudaEventRecord(e0, ctx.stream));
                    if (!which)
                        vk_matmul(&ctx, &yp, &xp, &w, NULL);
                    else {
                        const float one = 1, zero = 0;
                        cublasSetStream(ctx.blas, ctx.stream);
                        cublasGemmEx(ctx.blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)s.out, (int)n,
                                     (int)s.in, &one, wh, CUDA_R_16F, (int)s.in, xh, CUDA_R_16F,
                                     (int)s.in, &zero, yp.data, CUDA_R_32F, (int)s.out,
                                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
                    }
                    CK(cudaEventRecord(e1, ctx.stream));
                    CK(cudaEventSynchronize(e1));
                    sync_or_die("prefill timing");
                    float t;
                    CK(cudaEventElapsedTime(&t, e0, e1));
                    if (rep)
                        ms.push_back(t);
                }
                (which ? tc : tq) = median(ms);
            }
            double flop = 2.0 * n * s.in * s.out;
            printf("prefill n=%lld %lldx%lld: q4 mma %.1f TFLOP/s, cuBLAS f16 %.1f TFLOP/s "
                   "(%.0f%%)\n",
                   (long long)n, (long long)s.out, (long long)s.in, flop / tq / 1e9,
                   flop / tc / 1e9, 100.0 * tc / tq);
            cudaFree(wh);
            cudaFree(xh);
            cudaFree(xp.data);
            cudaFree(yp.data);
        }
    for (auto &w : ws)
        cudaFree(w.data);
    cudaFree(x.data);
}

int main(int argc, char **argv)
{
    int quick = argc > 1 && !strcmp(argv[1], "--quick"), ndev = 0;
    cudaError_t e = cudaGetDeviceCount(&ndev);
    if (e != cudaSuccess || ndev == 0) {
        printf("skipped: no usable CUDA device (%s)\n",
               e != cudaSuccess ? cudaGetErrorString(e) : "no device");
        return 77;
    }
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s, sm_%d%d, %d SMs\n", prop.name, prop.major, prop.minor,
           prop.multiProcessorCount);
    CK(cudaStreamCreate(&ctx.stream));
    if (cublasCreate(&ctx.blas) != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "cublasCreate failed\n");
        return 1;
    }
    ctx.sm_major = prop.major, ctx.sm_minor = prop.minor, ctx.n_sm = prop.multiProcessorCount;
    ctx.work_bytes = VK_WORK_MIN, ctx.ring_bytes = VK_RING_BYTES;
    CK(cudaMalloc(&ctx.work, ctx.work_bytes));
    CK(cudaMalloc(&ctx.ring, ctx.ring_bytes));

    for (int q4 = 1; q4 >= 0; q4--) {
        QuantType t = q4 ? QUANT_Q4 : QUANT_Q8;
        for (int n = 1; n <= 9; n++)
            check_matmul(t, n, 2560, 70 + n, 32, n % 3 == 0 ? 0 : -1);
        check_matmul(t, 1, 9728, 300, 32, 2); /* decode's widest x, resident */
        check_matmul(t, 8, 9728, 33, 32, -1); /* k-chunked */
        int n_sm = ctx.n_sm;
        ctx.n_sm = 1; /* a grid of 8 blocks: each loops over ~30 row groups */
        check_matmul(t, 1, 2560, 4000, 64, 1); /* x resident across the row groups */
        check_matmul(t, 3, 9728, 600, 32, -1); /* k-chunked and looping */
        ctx.n_sm = n_sm;
        check_matmul(t, 5, 576, 17, 96, -1);
        check_matmul(t, 64, 2560, 130, 32, 0);
        check_matmul(t, 200, 9728, 65, 128, -1);
        check_matmul(t, 129, 192, 3, 96, 2);
    }
    for (int wt = QUANT_F32; wt <= QUANT_BF16; wt++) {
        check_matmul((QuantType)wt, 1, 2560, 77, 0, 0);
        check_matmul((QuantType)wt, 9, 1152, 100, 0, -1);
        check_matmul((QuantType)wt, 130, 4304, 64, 0, 2);
    }
    /* a workspace too small for one pass: the token rows go in several */
    size_t keep = ctx.work_bytes;
    ctx.work_bytes = vk_mm_work_bytes(40, 2560);
    check_matmul(QUANT_Q4, 100, 2560, 50, 32, -1);
    check_matmul(QUANT_F16, 100, 2560, 50, 0, 0);
    ctx.work_bytes = keep;
    check_rows();
    printf("%s: %d failure(s)\n", failures ? "FAIL" : "ok", failures);
    if (!failures && !quick)
        timings();
    cublasDestroy(ctx.blas);
    cudaFree(ctx.work);
    cudaFree(ctx.ring);
    cudaStreamDestroy(ctx.stream);
    return failures ? 1 : 0;
}
