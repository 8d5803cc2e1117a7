/* bench_attn: the cpu backend's attention at the model's shapes, against the kernel it
 * replaced (one query at a time, f32, a scalar expf per key: kept below as the baseline).
 *
 * usage: vlq-bench-attn [OLD_ROWS]
 * Figures are wall seconds, best of 2 runs, with the process's CPU seconds beside them
 * (on a shared, loaded machine the 1-thread CPU time is the steadier figure).
 * 1. Vision: attention_seg over one 4,096-row segment, 16 heads of 64 (Qwen3-VL-4B's
 *    tower, one 1024x1024 image), with 1 and 2 threads: seconds per block and x24 for
 *    the tower. The baseline runs only OLD_ROWS query rows (default 256) of the 4,096 and
 *    is scaled up (its cost is linear in query rows), to keep the run short.
 * 2. Decode: one new token over 8,192 cached rows, 32 query heads, 8 KV heads, head_dim
 *    128, f16 cache (the baseline: f32 cache), with 1 and 2 threads: ms per call and the
 *    cache bytes read per second. */
#include "backend.h"
#include "backend_int.h"
#include "cpucaps.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double bench_clock(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double bench_now(void) { return bench_clock(CLOCK_MONOTONIC); }
static double bench_cpu(void) { return bench_clock(CLOCK_PROCESS_CPUTIME_ID); }

/* Keep the smaller of *best (wall) and t, with its CPU time. */
static void bench_keep(double *best, double *best_cpu, double t, double cpu)
{
    if (t < *best) {
        *best = t;
        *best_cpu = cpu;
    }
}

/* ---- the baseline: the previous cpu kernel ---- */

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_ADDRESS__)
#define BENCH_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define BENCH_CLONES
#endif

typedef float BenchV8 __attribute__((vector_size(32), aligned(4), may_alias));

static inline __attribute__((always_inline)) float bench_dot(const float *a, const float *b, int n)
{
    BenchV8 acc0 = {0}, acc1 = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 += *(const BenchV8 *)(a + i) * *(const BenchV8 *)(b + i);
        acc1 += *(const BenchV8 *)(a + i + 8) * *(const BenchV8 *)(b + i + 8);
    }
    acc0 += acc1;
    float s = 0.0f;
    for (int l = 0; l < 8; l++)
        s += acc0[l];
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* out[hd] = softmax(q . k_j * scale) v_j, one query, one key at a time. */
BENCH_CLONES static void bench_old_attend(float *out, const float *q, const float *k,
                                          const float *v, int64_t ld, int64_t n_kv, int hd,
                                          float scale)
{
    float mx = -INFINITY, sum = 0.0f;
    for (int d = 0; d < hd; d++)
        out[d] = 0.0f;
    for (int64_t j = 0; j < n_kv; j++) {
        float s = bench_dot(q, k + j * ld, hd) * scale;
        const float *vj = v + j * ld;
        if (s > mx) {
            float c = expf(mx - s);
            sum *= c;
            for (int d = 0; d < hd; d++)
                out[d] *= c;
            mx = s;
        }
        float p = expf(s - mx);
        sum += p;
        for (int d = 0; d < hd; d++)
            out[d] += p * vj[d];
    }
    for (int d = 0; d < hd; d++)
        out[d] /= sum;
}

/* rows 0 .. n_q-1 of o = attention of q over the n_kv rows of k, v (heads of hd), rep
 * query heads per KV head: the old work split, (row, head) items. */
static void bench_old(float *o, const float *q, const float *k, const float *v, int64_t n_q,
                      int64_t n_kv, int heads, int kv_heads, int hd, float scale)
{
    int rep = heads / kv_heads;
    int64_t ldq = (int64_t)heads * hd, ldk = (int64_t)kv_heads * hd;
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t item = 0; item < n_q * heads; item++) {
        int64_t r = item / heads;
        int h = (int)(item % heads);
        bench_old_attend(o + r * ldq + h * hd, q + r * ldq + h * hd, k + (h / rep) * hd,
                         v + (h / rep) * hd, ldk, n_kv, hd, scale);
    }
}

/* ---- runs ---- */

static void bench_fill(Tensor *t)
{
    uint64_t s = (uint64_t)t->rows * 2654435761u + (uint64_t)t->cols;
    for (int64_t i = 0; i < t->rows * t->cols; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        ((float *)t->data)[i] = (float)((s >> 40) & 0xffffff) / 8388608.0f - 1.0f;
    }
}

int main(int argc, char **argv)
{
    int old_rows = argc > 1 ? atoi(argv[1]) : 32;
    Backend *b = backend_get("cpu");
    printf("cpu kernels: %s\n", cpucaps_describe(cpucaps_get()));

    /* vision: one segment of 4096 rows, 16 heads of 64 */
    const int n = 4096, heads = 16, hd = 64;
    Tensor q, k, v, o;
    if (b->alloc(b, &q, n, heads * hd, NULL) || b->alloc(b, &k, n, heads * hd, NULL) ||
        b->alloc(b, &v, n, heads * hd, NULL) || b->alloc(b, &o, n, heads * hd, NULL)) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    bench_fill(&q);
    bench_fill(&k);
    bench_fill(&v);
    int32_t cu[2] = {0, n};
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        double best = 1e30, cpu = 0, best_old = 1e30, cpu_old = 0;
        for (int rep = 0; rep < 2; rep++) {
            double t0 = bench_now(), c0 = bench_cpu();
            b->attention_seg(b, &o, &q, &k, &v, cu, 1, heads, 0.125f);
            double t1 = bench_now(), c1 = bench_cpu();
            bench_old(o.data, q.data, k.data, v.data, old_rows, n, heads, heads, hd, 0.125f);
            double t2 = bench_now(), c2 = bench_cpu();
            bench_keep(&best, &cpu, t1 - t0, c1 - c0);
            bench_keep(&best_old, &cpu_old, t2 - t1, c2 - c1);
        }
        best_old *= (double)n / old_rows;
        cpu_old *= (double)n / old_rows;
        double flop = 4.0 * n * (double)n * hd * heads;
        printf("vision attention_seg, 4096 rows x 16 heads of 64, %d thread%s:\n"
               "  after:  %.3f s per block (cpu %.3f s), %.1f s per 24-block tower, %.1f "
               "GFLOP/s\n"
               "  before: %.2f s per block (cpu %.2f s), %.0f s per tower; %.1fx\n",
               threads, threads > 1 ? "s" : "", best, cpu, 24 * best, flop / best * 1e-9,
               best_old, cpu_old, 24 * best_old, best_old / best);
    }
    b->release(b, &q);
    b->release(b, &k);
    b->release(b, &v);
    b->release(b, &o);

    /* decode: 1 token over 8192 cached rows, 32 heads over 8, head_dim 128, f16 cache */
    const int ctx = 8192, dh = 32, dkv = 8, dd = 128;
    Tensor dq, dout, k32, v32, kc, vc;
    if (b->alloc(b, &dq, 1, dh * dd, NULL) || b->alloc(b, &dout, 1, dh * dd, NULL) ||
        b->alloc(b, &k32, ctx, dkv * dd, NULL) || b->alloc(b, &v32, ctx, dkv * dd, NULL) ||
        b->alloc_typed(b, &kc, QUANT_F16, ctx, dkv * dd, NULL) ||
        b->alloc_typed(b, &vc, QUANT_F16, ctx, dkv * dd, NULL)) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    bench_fill(&dq);
    bench_fill(&k32);
    bench_fill(&v32);
    int32_t *rows = malloc(ctx * sizeof *rows);
    for (int i = 0; i < ctx; i++)
        rows[i] = i;
    b->set_rows(b, &kc, rows, &k32, ctx);
    b->set_rows(b, &vc, rows, &v32, ctx);
    BackendSeq seq = {.row0 = 0, .n_tok = 1, .kv_row0 = 0, .n_past = ctx - 1};
    const int calls = 5;
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        double best = 1e30, cpu = 0, best_old = 1e30, cpu_old = 0;
        for (int rep = 0; rep < 2; rep++) {
            double t0 = bench_now(), c0 = bench_cpu();
            for (int c = 0; c < calls; c++)
                b->attention(b, &dout, &dq, &kc, &vc, &seq, 1, dh, dkv, 0.0884f);
            double t1 = bench_now(), c1 = bench_cpu();
            bench_old(dout.data, dq.data, k32.data, v32.data, 1, ctx, dh, dkv, dd, 0.0884f);
            double t2 = bench_now(), c2 = bench_cpu();
            bench_keep(&best, &cpu, (t1 - t0) / calls, (c1 - c0) / calls);
            bench_keep(&best_old, &cpu_old, t2 - t1, c2 - c1);
        }
        double bytes = 2.0 * ctx * dkv * dd * 2;
        printf("decode attention, 8192 cached rows, 32/8 heads of 128, %d thread%s:\n"
               "  after (f16 cache):  %.2f ms per call (cpu %.2f ms), %.1f GB/s of cache\n"
               "  before (f32 cache): %.2f ms per call (cpu %.2f ms); %.1fx\n",
               threads, threads > 1 ? "s" : "", best * 1e3, cpu * 1e3, bytes / best * 1e-9,
               best_old * 1e3, cpu_old * 1e3, best_old / best);
    }
    free(rows);
    Tensor *all[] = {&dq, &dout, &k32, &v32, &kc, &vc};
    for (int i = 0; i < 6; i++)
        b->release(b, all[i]);
    return 0;
}
