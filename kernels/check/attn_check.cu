/* attn_check: the device check of kernels/attn.cu, norm.cu and rope.cu, one program for a
 * lent GPU (kernels/check/run.sh builds and runs it): every launcher on fresh random
 * data against a float64 reference written here from ops_ref's definitions, outputs
 * poisoned with NaN first, every CUDA call and launch checked; then a few timings (CUDA
 * events, median of repeats) with the achieved rate beside the floor.
 *
 * Standalone: it brings its own VkCtx, vk_stage and vk_note (the plugin's are in
 * kernels/backend_cuda.cu), so it links with the three kernel files alone.
 * Prints one line per case and a last line "attn_check: N passed, N failed"; exit 1 on
 * any failure. */
#include "vk.h"

#include "../../src/half.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

/* ---- the contract's two host functions, minimal ---- */

extern "C" void *vk_stage(VkCtx *c, const void *host, size_t bytes)
{
    size_t need = (bytes + 255) & ~(size_t)255;
    if (need > c->ring_bytes) {
        vk_note(c, cudaErrorMemoryAllocation, "vk_stage: more than the ring");
        return NULL;
    }
    if (c->ring_head + need > c->ring_bytes)
        c->ring_head = 0; /* stream order keeps earlier launches' reads before the copy */
    char *dst = (char *)c->ring + c->ring_head;
    c->ring_head += need;
    if (vk_note(c, cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, c->stream),
                "vk_stage"))
        return NULL;
    return dst;
}

extern "C" int vk_note(VkCtx *c, int e, const char *what)
{
    if (!e)
        return 0;
    if (!c->error) {
        c->error = e;
        snprintf(c->err, sizeof(c->err), "%s: %s", what, cudaGetErrorString((cudaError_t)e));
    }
    return 1;
}

/* ---- helpers ---- */

static int g_pass, g_fail;
static uint64_t g_rng = 12345;

static float frand(void)
{
    g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((g_rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(2);                                                                               \
        }                                                                                          \
    } while (0)

/* A device tensor of type t with host values vals (stored rounded for 16-bit types);
 * vals is replaced by what the device holds, widened. */
static Tensor dev_tensor(QuantType t, int64_t rows, int64_t cols, std::vector<float> &vals)
{
    Tensor x = {};
    x.type = t, x.rows = rows, x.cols = cols;
    size_t n = (size_t)(rows * cols);
    if (t == QUANT_F32) {
        CK(cudaMalloc(&x.data, n * 4));
        CK(cudaMemcpy(x.data, vals.data(), n * 4, cudaMemcpyHostToDevice));
    } else {
        std::vector<uint16_t> h(n);
        for (size_t i = 0; i < n; i++) {
            h[i] = t == QUANT_F16 ? half_f32_to_f16(vals[i]) : half_f32_to_bf16(vals[i]);
            vals[i] = t == QUANT_F16 ? half_f16_to_f32(h[i]) : half_bf16_to_f32(h[i]);
        }
        CK(cudaMalloc(&x.data, n * 2));
        CK(cudaMemcpy(x.data, h.data(), n * 2, cudaMemcpyHostToDevice));
    }
    x.owned = 1;
    return x;
}

static std::vector<float> rand_vec(size_t n, float amp)
{
    std::vector<float> v(n);
    for (auto &x : v)
        x = amp * frand();
    return v;
}

static void poison(Tensor *t)
{
    CK(cudaMemset(t->data, 0xff, (size_t)(t->rows * t->cols) * 4)); /* 0xffffffff: a NaN */
}

static std::vector<float> download(const Tensor *t)
{
    std::vector<float> v((size_t)(t->rows * t->cols));
    CK(cudaMemcpy(v.data(), t->data, v.size() * 4, cudaMemcpyDeviceToHost));
    return v;
}

/* Compare got with a float64 reference: every value within atol + rtol |ref| (NaN never
 * passes); prints max abs error and ||got - ref|| / ||ref||. */
static void report(VkCtx *c, const char *what, const std::vector<float> &got,
                   const std::vector<double> &ref, double atol, double rtol)
{
    CK(cudaStreamSynchronize(c->stream));
    double maxd = 0, num = 0, den = 0;
    size_t bad = 0;
    for (size_t i = 0; i < ref.size(); i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= atol + rtol * fabs(ref[i])))
            bad++;
        if (!(d <= maxd))
            maxd = isnan(d) ? INFINITY : d;
        num += ((double)got[i] - ref[i]) * ((double)got[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    int ok = !bad && !c->error;
    printf("%-4s %-44s max %.2e  rel %.2e  bad %zu%s%s\n", ok ? "ok" : "FAIL", what, maxd,
           sqrt(num / (den > 0 ? den : 1)), bad, c->error ? "  error: " : "",
           c->error ? c->err : "");
    c->error = 0;
    ok ? g_pass++ : g_fail++;
}

/* ---- float64 references (ops_ref's definitions) ---- */

static void ref_attend(double *out, const float *q, const std::vector<float> &k,
                       const std::vector<float> &v, int64_t r0, int64_t c0, int64_t kv_cols,
                       int64_t n_kv, int hd, double scale)
{
    std::vector<double> s((size_t)n_kv);
    double mx = -INFINITY, sum = 0;
    for (int64_t j = 0; j < n_kv; j++) {
        double d = 0;
        for (int e = 0; e < hd; e++)
            d += (double)q[e] * k[(size_t)((r0 + j) * kv_cols + c0 + e)];
        s[(size_t)j] = d * scale;
        mx = std::max(mx, s[(size_t)j]);
    }
    for (int e = 0; e < hd; e++)
        out[e] = 0;
    for (int64_t j = 0; j < n_kv; j++) {
        double p = exp(s[(size_t)j] - mx);
        sum += p;
        for (int e = 0; e < hd; e++)
            out[e] += p * v[(size_t)((r0 + j) * kv_cols + c0 + e)];
    }
    for (int e = 0; e < hd; e++)
        out[e] /= sum;
}

/* ---- cases ---- */

static void case_attention(VkCtx *c, int hd, int n_heads, int n_kv, QuantType kt,
                           std::vector<BackendSeq> seqs, const char *name)
{
    int rows = 0;
    int64_t kv_rows = 0;
    for (auto &s : seqs) {
        s.row0 = rows;
        s.kv_row0 = kv_rows + 7; /* slots with gaps */
        rows += s.n_tok;
        kv_rows = s.kv_row0 + s.n_past + s.n_tok;
    }
    int64_t qc = (int64_t)n_heads * hd, kc = (int64_t)n_kv * hd;
    auto qv = rand_vec((size_t)(rows * qc), 1.0f), kvals = rand_vec((size_t)(kv_rows * kc), 1.0f);
    auto vvals = rand_vec((size_t)(kv_rows * kc), 1.0f), ov = rand_vec((size_t)(rows * qc), 0.0f);
    Tensor q = dev_tensor(QUANT_F32, rows, qc, qv), k = dev_tensor(kt, kv_rows, kc, kvals);
    Tensor v = dev_tensor(kt, kv_rows, kc, vvals), o = dev_tensor(QUANT_F32, rows, qc, ov);
    poison(&o);
    double scale = 1.0 / sqrt((double)hd);
    vk_attention(c, &o, &q, &k, &v, seqs.data(), (int)seqs.size(), n_heads, n_kv, (float)scale);
    std::vector<double> ref((size_t)(rows * qc));
    int rep = n_heads / n_kv;
    for (auto &s : seqs)
        for (int t = 0; t < s.n_tok; t++)
            for (int h = 0; h < n_heads; h++)
                ref_attend(&ref[(size_t)((s.row0 + t) * qc + h * hd)],
                           &qv[(size_t)((s.row0 + t) * qc + h * hd)], kvals, vvals, s.kv_row0,
                           (int64_t)(h / rep) * hd, kc, s.n_past + t + 1, hd, scale);
    report(c, name, download(&o), ref, 2e-6, 1e-5);
    cudaFree(q.data), cudaFree(k.data), cudaFree(v.data), cudaFree(o.data);
}

static void case_seg(VkCtx *c, int hd, int n_heads, std::vector<int32_t> cu, const char *name)
{
    int n_seg = (int)cu.size() - 1, rows = cu.back();
    int64_t cols = (int64_t)n_heads * hd;
    auto qv = rand_vec((size_t)(rows * cols), 1.0f), kv = rand_vec((size_t)(rows * cols), 1.0f);
    auto vv = rand_vec((size_t)(rows * cols), 1.0f), ov = rand_vec((size_t)(rows * cols), 0.0f);
    Tensor q = dev_tensor(QUANT_F32, rows, cols, qv), k = dev_tensor(QUANT_F32, rows, cols, kv);
    Tensor v = dev_tensor(QUANT_F32, rows, cols, vv), o = dev_tensor(QUANT_F32, rows, cols, ov);
    poison(&o);
    double scale = 1.0 / sqrt((double)hd);
    vk_attention_seg(c, &o, &q, &k, &v, cu.data(), n_seg, n_heads, (float)scale);
    std::vector<double> ref((size_t)(rows * cols));
    for (int s = 0; s < n_seg; s++)
        for (int r = cu[s]; r < cu[s + 1]; r++)
            for (int h = 0; h < n_heads; h++)
                ref_attend(&ref[(size_t)(r * cols + h * hd)], &qv[(size_t)(r * cols + h * hd)], kv,
                           vv, cu[s], (int64_t)h * hd, cols, cu[s + 1] - cu[s], hd, scale);
    report(c, name, download(&o), ref, 2e-6, 1e-5);
    cudaFree(q.data), cudaFree(k.data), cudaFree(v.data), cudaFree(o.data);
}

static void case_norms(VkCtx *c, int64_t rows, int64_t n, QuantType wt)
{
    char name[64];
    auto xv = rand_vec((size_t)(rows * n), 2.0f), wv = rand_vec((size_t)n, 1.0f);
    auto bv = rand_vec((size_t)n, 1.0f), yv = rand_vec((size_t)(rows * n), 0.0f);
    Tensor x = dev_tensor(QUANT_F32, rows, n, xv), w = dev_tensor(wt, 1, n, wv);
    Tensor b = dev_tensor(wt, 1, n, bv), y = dev_tensor(QUANT_F32, rows, n, yv);
    std::vector<double> ref((size_t)(rows * n));
    for (int64_t r = 0; r < rows; r++) {
        double ss = 0, sum = 0, var = 0;
        for (int64_t i = 0; i < n; i++)
            ss += (double)xv[r * n + i] * xv[r * n + i], sum += xv[r * n + i];
        double mean = sum / n;
        for (int64_t i = 0; i < n; i++)
            var += (xv[r * n + i] - mean) * (xv[r * n + i] - mean);
        for (int64_t i = 0; i < n; i++)
            ref[r * n + i] = wv[i] * (xv[r * n + i] / sqrt(ss / n + 1e-6));
    }
    poison(&y);
    vk_rmsnorm(c, &y, &x, &w, 1e-6f);
    snprintf(name, sizeof(name), "rmsnorm %lld x %lld w type %d", (long long)rows, (long long)n,
             wt);
    report(c, name, download(&y), ref, 1e-6, 1e-5);
    /* in place (y = x) */
    Tensor x2 = dev_tensor(QUANT_F32, rows, n, xv);
    vk_rmsnorm(c, &x2, &x2, &w, 1e-6f);
    report(c, "rmsnorm in place", download(&x2), ref, 1e-6, 1e-5);
    for (int64_t r = 0; r < rows; r++) {
        double sum = 0, var = 0;
        for (int64_t i = 0; i < n; i++)
            sum += xv[r * n + i];
        double mean = sum / n;
        for (int64_t i = 0; i < n; i++)
            var += (xv[r * n + i] - mean) * (xv[r * n + i] - mean);
        for (int64_t i = 0; i < n; i++)
            ref[r * n + i] = (xv[r * n + i] - mean) / sqrt(var / n + 1e-6) * wv[i] + bv[i];
    }
    poison(&y);
    vk_layernorm(c, &y, &x, &w, &b, 1e-6f);
    snprintf(name, sizeof(name), "layernorm %lld x %lld w type %d", (long long)rows, (long long)n,
             wt);
    report(c, name, download(&y), ref, 1e-5, 1e-5);
    cudaFree(x.data), cudaFree(x2.data), cudaFree(w.data), cudaFree(b.data), cudaFree(y.data);
}

static void case_elem(VkCtx *c)
{
    size_t n = 1000003;
    auto av = rand_vec(n, 12.0f), bv = rand_vec(n, 3.0f), yv = rand_vec(n, 0.0f);
    Tensor a = dev_tensor(QUANT_F32, 1, (int64_t)n, av),
           b = dev_tensor(QUANT_F32, 1, (int64_t)n, bv);
    Tensor y = dev_tensor(QUANT_F32, 1, (int64_t)n, yv);
    std::vector<double> ref(n);
    for (size_t i = 0; i < n; i++)
        ref[i] = (double)av[i] + bv[i];
    poison(&y);
    vk_add(c, &y, &a, &b);
    report(c, "add", download(&y), ref, 0, 1.2e-7);
    for (size_t i = 0; i < n; i++)
        ref[i] = av[i] / (1.0 + exp(-(double)av[i])) * bv[i];
    poison(&y);
    vk_swiglu(c, &y, &a, &b);
    report(c, "swiglu", download(&y), ref, 1e-30, 1e-6);
    for (size_t i = 0; i < n; i++) {
        double x = av[i];
        ref[i] = 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
    }
    CK(cudaMemcpy(y.data, a.data, n * 4, cudaMemcpyDeviceToDevice));
    vk_gelu_tanh(c, &y);
    report(c, "gelu_tanh", download(&y), ref, 1e-6, 1e-5);
    for (size_t i = 0; i < n; i++)
        ref[i] = 0.5 * av[i] * (1.0 + erf(av[i] * 0.7071067811865476));
    CK(cudaMemcpy(y.data, a.data, n * 4, cudaMemcpyDeviceToDevice));
    vk_gelu_erf(c, &y);
    report(c, "gelu_erf", download(&y), ref, 1e-6, 1e-5);
    cudaFree(a.data), cudaFree(b.data), cudaFree(y.data);
}

static void case_rope(VkCtx *c, int mode, int hd, int n_heads, const int sec[3], float theta)
{
    int n = 333;
    int64_t cols = (int64_t)hd * n_heads;
    auto xv = rand_vec((size_t)(n * cols), 1.0f);
    Tensor x = dev_tensor(QUANT_F32, n, cols, xv);
    std::vector<int32_t> pos((size_t)(mode == 0 ? 3 * n : 2 * n));
    for (auto &p : pos)
        p = (int32_t)((frand() + 1.0f) * (mode == 0 ? 9000.0f : 64.0f));
    int half = hd / 2, quarter = hd / 4;
    std::vector<double> ref((size_t)(n * cols));
    for (int i = 0; i < n; i++) {
        std::vector<double> ang((size_t)half);
        for (int j = 0; j < half; j++) {
            /* ops_ref's inv_freq and angle are f32 */
            if (mode == 0) {
                int axis = (j % 3 == 1 && j < 3 * sec[1])   ? 1
                           : (j % 3 == 2 && j < 3 * sec[2]) ? 2
                                                            : 0;
                float inv = 1.0f / powf(theta, (float)(2 * j) / (float)hd);
                ang[(size_t)j] = (float)pos[(size_t)(axis * n + i)] * inv;
            } else {
                float inv = 1.0f / powf(theta, (float)(2 * (j % quarter)) / (float)half);
                ang[(size_t)j] = (float)pos[(size_t)(i * 2 + j / quarter)] * inv;
            }
        }
        for (int h = 0; h < n_heads; h++)
            for (int d = 0; d < half; d++) {
                double x0 = xv[(size_t)(i * cols + h * hd + d)],
                       x1 = xv[(size_t)(i * cols + h * hd + d + half)];
                ref[(size_t)(i * cols + h * hd + d)] =
                    x0 * cos(ang[(size_t)d]) - x1 * sin(ang[(size_t)d]);
                ref[(size_t)(i * cols + h * hd + d + half)] =
                    x1 * cos(ang[(size_t)d]) + x0 * sin(ang[(size_t)d]);
            }
    }
    if (mode == 0)
        vk_mrope(c, &x, pos.data(), n_heads, sec, theta);
    else
        vk_rope2d(c, &x, pos.data(), n_heads, theta);
    char name[64];
    snprintf(name, sizeof(name), "%s hd %d", mode == 0 ? "mrope" : "rope2d", hd);
    report(c, name, download(&x), ref, 2e-6, 1e-5);
    cudaFree(x.data);
}

/* ---- timings ---- */

static float time_ms(VkCtx *c, void (*fn)(VkCtx *, void *), void *arg)
{
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    fn(c, arg); /* warm-up */
    std::vector<float> t;
    for (int i = 0; i < 7; i++) {
        CK(cudaEventRecord(e0, c->stream));
        fn(c, arg);
        CK(cudaEventRecord(e1, c->stream));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        t.push_back(ms);
    }
    cudaEventDestroy(e0), cudaEventDestroy(e1);
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

struct AttnRun {
    Tensor o, q, k, v;
    std::vector<BackendSeq> seqs;
    int n_heads, n_kv;
    std::vector<int32_t> cu;
};

static void run_attn(VkCtx *c, void *p)
{
    AttnRun *r = (AttnRun *)p;
    vk_attention(c, &r->o, &r->q, &r->k, &r->v, r->seqs.data(), (int)r->seqs.size(), r->n_heads,
                 r->n_kv, 0.088388f);
}

static void run_seg(VkCtx *c, void *p)
{
    AttnRun *r = (AttnRun *)p;
    vk_attention_seg(c, &r->o, &r->q, &r->k, &r->v, r->cu.data(), (int)r->cu.size() - 1, r->n_heads,
                     0.125f);
}

/* A timing case: n_seq sequences of n_tok new tokens after n_past, 32/8 heads of 128, F16. */
static void time_attention(VkCtx *c, int n_seq, int n_tok, int n_past, const char *name)
{
    AttnRun r;
    r.n_heads = 32, r.n_kv = 8;
    int hd = 128, rows = n_seq * n_tok;
    int64_t kv_rows = (int64_t)n_seq * (n_past + n_tok);
    for (int s = 0; s < n_seq; s++)
        r.seqs.push_back({s * n_tok, n_tok, (int64_t)s * (n_past + n_tok), n_past});
    auto qv = rand_vec((size_t)rows * 4096, 1.0f), kv = rand_vec((size_t)kv_rows * 1024, 1.0f);
    auto ov = rand_vec((size_t)rows * 4096, 0.0f);
    r.q = dev_tensor(QUANT_F32, rows, 4096, qv), r.o = dev_tensor(QUANT_F32, rows, 4096, ov);
    r.k = dev_tensor(QUANT_F16, kv_rows, 1024, kv), r.v = dev_tensor(QUANT_F16, kv_rows, 1024, kv);
    float ms = time_ms(c, run_attn, &r);
    double flop = 0, bytes = (double)kv_rows * 1024 * 2 * 2 + (double)rows * 4096 * 4 * 2;
    for (auto &s : r.seqs)
        for (int t = 0; t < s.n_tok; t++)
            flop += 4.0 * (s.n_past + t + 1) * hd * r.n_heads;
    printf("time %-40s %8.3f ms  %7.1f TFLOP/s  %7.1f GB/s (KV read once)%s%s\n", name, ms,
           flop / ms / 1e9, bytes / ms / 1e6, c->error ? "  error: " : "", c->error ? c->err : "");
    c->error = 0;
    cudaFree(r.q.data), cudaFree(r.o.data), cudaFree(r.k.data), cudaFree(r.v.data);
}

static void time_seg(VkCtx *c, int rows_per_seg, int n_seg, int hd, const char *name)
{
    AttnRun r;
    r.n_heads = 16, r.n_kv = 16;
    int rows = rows_per_seg * n_seg;
    int64_t cols = (int64_t)16 * hd;
    for (int s = 0; s <= n_seg; s++)
        r.cu.push_back(s * rows_per_seg);
    auto qv = rand_vec((size_t)(rows * cols), 1.0f);
    r.q = dev_tensor(QUANT_F32, rows, cols, qv), r.k = dev_tensor(QUANT_F32, rows, cols, qv);
    r.v = dev_tensor(QUANT_F32, rows, cols, qv), r.o = dev_tensor(QUANT_F32, rows, cols, qv);
    float ms = time_ms(c, run_seg, &r);
    double flop = 4.0 * rows_per_seg * (double)rows_per_seg * hd * 16 * n_seg;
    printf("time %-40s %8.3f ms  %7.1f TFLOP/s%s%s\n", name, ms, flop / ms / 1e9,
           c->error ? "  error: " : "", c->error ? c->err : "");
    c->error = 0;
    cudaFree(r.q.data), cudaFree(r.o.data), cudaFree(r.k.data), cudaFree(r.v.data);
}

int main(int argc, char **argv)
{
    int do_time = argc > 1 && !strcmp(argv[1], "--time");
    VkCtx c = {};
    cudaDeviceProp prop;
    CK(cudaSetDevice(0));
    CK(cudaGetDeviceProperties(&prop, 0));
    c.sm_major = prop.major, c.sm_minor = prop.minor, c.n_sm = prop.multiProcessorCount;
    CK(cudaStreamCreate(&c.stream));
    c.work_bytes = VK_WORK_MIN, c.ring_bytes = VK_RING_BYTES;
    CK(cudaMalloc(&c.work, c.work_bytes));
    CK(cudaMalloc(&c.ring, c.ring_bytes));
    printf("device %s, sm_%d%d, %d SMs\n", prop.name, prop.major, prop.minor,
           prop.multiProcessorCount);

    /* row0 and kv_row0 are assigned by case_attention */
    std::vector<BackendSeq> mix = {
        {0, 300, 0, 0}, {0, 1, 0, 5000}, {0, 77, 0, 1000}, {0, 1, 0, 0},    {0, 1, 0, 63},
        {0, 1, 0, 64},  {0, 0, 0, 9},    {0, 2, 0, 31},    {0, 1, 0, 2000},
    };
    QuantType kts[] = {QUANT_F16, QUANT_BF16, QUANT_F32};
    const char *ktn[] = {"f16", "bf16", "f32"};
    char name[96];
    for (int t = 0; t < 3; t++) {
        snprintf(name, sizeof(name), "attention hd128 32/8 %s", ktn[t]);
        case_attention(&c, 128, 32, 8, kts[t], mix, name);
    }
    case_attention(&c, 16, 4, 2, QUANT_F16, mix, "attention hd16 4/2 f16 (tiny)");
    case_attention(&c, 72, 6, 2, QUANT_BF16, mix, "attention hd72 6/2 bf16");
    case_attention(&c, 256, 4, 4, QUANT_F16, mix, "attention hd256 4/4 f16");
    case_attention(&c, 200, 6, 1, QUANT_F32, mix, "attention hd200 6/1 f32");
    std::vector<BackendSeq> dec(64, BackendSeq{0, 1, 0, 0});
    for (int s = 0; s < 64; s++)
        dec[(size_t)s].n_past = (s * 977) % 3000;
    case_attention(&c, 128, 32, 8, QUANT_F16, dec, "attention decode x64 f16");
    case_seg(&c, 64, 16, {0, 1, 1000, 1001, 5000}, "attention_seg hd64 16 heads");
    case_seg(&c, 72, 16, {0, 2000, 2077}, "attention_seg hd72 16 heads");
    case_seg(&c, 16, 4, {0, 5, 6, 40}, "attention_seg hd16 (tiny)");
    QuantType wts[] = {QUANT_F32, QUANT_F16, QUANT_BF16};
    for (int t = 0; t < 3; t++)
        case_norms(&c, 37, 2560, wts[t]);
    case_norms(&c, 5, 64, QUANT_F32);
    case_elem(&c);
    int sec_real[3] = {24, 20, 20}, sec_tiny[3] = {4, 2, 2};
    case_rope(&c, 0, 128, 32, sec_real, 5e6f);
    case_rope(&c, 0, 16, 4, sec_tiny, 5e6f);
    case_rope(&c, 1, 64, 16, NULL, 1e4f);
    case_rope(&c, 1, 72, 16, NULL, 1e4f);

    if (do_time) {
        time_attention(&c, 1, 4096, 0, "prefill 4096 tok, 32/8 x 128, f16");
        time_attention(&c, 4, 512, 2048, "prefill 4 x 512 tok after 2048");
        time_attention(&c, 64, 1, 4096, "decode 64 seqs x 4096 ctx");
        time_attention(&c, 1, 1, 32768, "decode 1 seq x 32768 ctx");
        time_seg(&c, 4096, 4, 64, "vision seg 4 x 4096 rows, 16 x 64");
        time_seg(&c, 16384, 1, 64, "vision seg 16384 rows, 16 x 64");
    }
    printf("attn_check: %d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
