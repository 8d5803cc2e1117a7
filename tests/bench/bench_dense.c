/* bench_dense: the dense-weight GEMM's speed against the cores' f32 FMA peak, for
 * `make bench-dense`.
 *
 * usage: bench-dense [REPS]
 *        bench-dense vision [PATCHES [BLOCKS]]
 * The first prints the FMA peak (a register-only loop of independent FMAs on the widest
 * vectors the machine has) with 1 and 2 threads, then GFLOP/s (best of REPS) and the
 * fraction of that peak for the vision tower's MLP shapes, 4096 x 1024 -> 4096 and
 * 4096 x 4096 -> 1024 with BF16 weights, on 1 and 2 threads, and the GEMV path (n = 1)
 * in GB/s of weights. Both wall-clock rates and rates per CPU second (repeatable on a
 * shared machine) are printed.
 *
 * "vision" runs the Qwen3-VL-4B vision tower's op sequence (vision.c's vision_encode:
 * patch embedding, BLOCKS of the 24 blocks, the merger and the 3 DeepStack mergers) on
 * the cpu backend with random BF16 weights built in memory, PATCHES patches (4096: one
 * 1024x1024 image) in one segment, and prints the seconds per op kind; with BLOCKS < 24
 * the full tower is extrapolated from the blocks run. Threads: OMP_NUM_THREADS. */
#include "backend.h"
#include "backend_int.h"
#include "cpu_dense.h"
#include "cpucaps.h"
#include "err.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define BENCH_X86 1
#endif

static double bench_clock(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double bench_now(void)
{
    return bench_clock(CLOCK_MONOTONIC);
}

/* CPU seconds of the whole process (all threads): on a machine shared with other jobs
 * flop per CPU second is repeatable where flop per wall second is not. */
static double bench_cpu(void)
{
    return bench_clock(CLOCK_PROCESS_CPUTIME_ID);
}

#ifdef BENCH_X86
/* iters x 16 independent FMA chains of 16 lanes (latency 4, 2 ports: 8 chains suffice) */
__attribute__((target("avx512f"))) static float bench_fma512(long iters)
{
    __m512 a[16], m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 16; i++)
        a[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
            a[i] = _mm512_fmadd_ps(a[i], m, c);
    }
    __m512 s = a[0];
    for (int i = 1; i < 16; i++)
        s = _mm512_add_ps(s, a[i]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float bench_fma256(long iters)
{
    __m256 a[12], m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++)
        a[i] = _mm256_set1_ps((float)i);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++)
            a[i] = _mm256_fmadd_ps(a[i], m, c);
    }
    float out[8], s = 0.0f;
    for (int i = 1; i < 12; i++)
        a[0] = _mm256_add_ps(a[0], a[i]);
    _mm256_storeu_ps(out, a[0]);
    for (int i = 0; i < 8; i++)
        s += out[i];
    return s;
}
#endif

/* The f32 FMA peak in GFLOP/s with nt threads (best of 3 runs of ~0.2 s); *per_cpu: the
 * best GFLOP per CPU second. */
static double bench_peak(int nt, double *per_cpu)
{
    *per_cpu = 0;
#ifdef BENCH_X86
    int wide = (cpucaps_get() & CPUCAPS_AVX512) != 0;
    long iters = 20000000;
    double flop = (double)iters * (wide ? 16 * 16 : 12 * 8) * 2 * nt, best = 0;
    volatile float sink = 0;
    for (int r = 0; r < 3; r++) {
        double t0 = bench_now(), c0 = bench_cpu();
#pragma omp parallel num_threads(nt)
        {
            float s = wide ? bench_fma512(iters) : bench_fma256(iters);
#pragma omp atomic
            sink += s;
        }
        double g = flop / (bench_now() - t0) / 1e9, gc = flop / (bench_cpu() - c0) / 1e9;
        best = g > best ? g : best;
        *per_cpu = gc > *per_cpu ? gc : *per_cpu;
    }
    return best;
#else
    return 0;
#endif
}

static void bench_fill(void *p, QuantType t, int64_t n, unsigned seed)
{
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        float v = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
        if (t == QUANT_F32)
            ((float *)p)[i] = v;
        else
            ((uint16_t *)p)[i] = half_f32_to_bf16(v);
    }
}

/* Best seconds of reps matmuls y[n, out] = x[n, in] W^T + b with nt threads; *cpu_s:
 * the best CPU seconds (all threads). */
static double bench_gemm(int64_t n, int64_t in, int64_t out, QuantType wt, int nt, int reps,
                         double *cpu_s)
{
    Tensor x = {.type = QUANT_F32, .rows = n, .cols = in};
    Tensor y = {.type = QUANT_F32, .rows = n, .cols = out};
    Tensor w = {.type = wt, .rows = out, .cols = in};
    Tensor b = {.type = wt, .rows = 1, .cols = out};
    x.data = aligned_alloc(64, (size_t)(n * in) * 4);
    y.data = aligned_alloc(64, (size_t)(n * out) * 4);
    w.data = aligned_alloc(64, (bk_dense_bytes(wt, out * in) + 63) / 64 * 64);
    b.data = aligned_alloc(64, (bk_dense_bytes(wt, out) + 63) / 64 * 64);
    bench_fill(x.data, QUANT_F32, n * in, 1);
    bench_fill(w.data, wt, out * in, 2);
    bench_fill(b.data, wt, out, 3);
    omp_set_num_threads(nt);
    double best = 1e30;
    *cpu_s = 1e30;
    cpu_dense_matmul(&y, &x, &w, &b); /* first touch of y, thread start */
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now(), c0 = bench_cpu();
        cpu_dense_matmul(&y, &x, &w, &b);
        double dt = bench_now() - t0, dc = bench_cpu() - c0;
        best = dt < best ? dt : best;
        *cpu_s = dc < *cpu_s ? dc : *cpu_s;
    }
    free(x.data);
    free(y.data);
    free(w.data);
    free(b.data);
    return best;
}

/* ---- the vision tower's op sequence ---- */

enum { BV_GEMM, BV_ATTN, BV_OTHER, BV_KINDS };

typedef struct {
    Backend *b;
    double t[BV_KINDS];   /* wall seconds per kind */
    double cpu[BV_KINDS]; /* CPU seconds (all threads) per kind */
    double c0;            /* bench_cpu() at the op's start */
    void *mem[64];
    int n_mem;
} BenchVision;

/* The start of an op: its wall time (returned) and CPU time (kept). */
static double bv_start(BenchVision *bv)
{
    bv->c0 = bench_cpu();
    return bench_now();
}

static void bv_tick(BenchVision *bv, int kind, double t0)
{
    bv->t[kind] += bench_now() - t0;
    bv->cpu[kind] += bench_cpu() - bv->c0;
}

/* A random BF16 weight [rows, cols] (uniform, +-scale) as a backend view of host bytes. */
static Tensor bv_weight(BenchVision *bv, int64_t rows, int64_t cols, float scale)
{
    uint16_t *p = aligned_alloc(64, ((size_t)(rows * cols) * 2 + 63) / 64 * 64);
    unsigned seed = (unsigned)bv->n_mem * 7919u + 1;
    for (int64_t i = 0; i < rows * cols; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = half_f32_to_bf16(scale * ((float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f));
    }
    Tensor t;
    char err[VLQ_ERRLEN];
    if (bv->b->weight(bv->b, &t, QUANT_BF16, rows, cols, 0, p, err)) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    bv->mem[bv->n_mem++] = p;
    return t;
}

static Tensor bv_act(BenchVision *bv, int64_t rows, int64_t cols)
{
    Tensor t;
    char err[VLQ_ERRLEN];
    if (bv->b->alloc(bv->b, &t, rows, cols, err)) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    return t;
}

static void bv_matmul(BenchVision *bv, Tensor *y, const Tensor *x, const Tensor *w,
                      const Tensor *bias)
{
    double t0 = bv_start(bv);
    bv->b->matmul(bv->b, y, x, w, bias);
    bv_tick(bv, BV_GEMM, t0);
}

/* One merger: LayerNorm (over 4*d when post_norm, else d), fc1 4d->4d, GELU, fc2 4d->out. */
static void bv_merger(BenchVision *bv, Tensor *h, Tensor *n, Tensor *big, Tensor *out,
                      int post_norm, int64_t d, int64_t out_d)
{
    Backend *b = bv->b;
    int64_t nm = h->rows / 4;
    Tensor nw = bv_weight(bv, 1, post_norm ? 4 * d : d, 1.0f);
    Tensor nb = bv_weight(bv, 1, post_norm ? 4 * d : d, 0.1f);
    Tensor w1 = bv_weight(bv, 4 * d, 4 * d, 0.03f), b1 = bv_weight(bv, 1, 4 * d, 0.1f);
    Tensor w2 = bv_weight(bv, out_d, 4 * d, 0.03f), b2 = bv_weight(bv, 1, out_d, 0.1f);
    Tensor n4 = backend_reshape(n, nm, 4 * d);
    double t0 = bv_start(bv);
    if (post_norm) {
        Tensor h4 = backend_reshape(h, nm, 4 * d);
        b->layernorm(b, &n4, &h4, &nw, &nb, 1e-6f);
    } else {
        b->layernorm(b, n, h, &nw, &nb, 1e-6f);
    }
    bv_tick(bv, BV_OTHER, t0);
    bv_matmul(bv, big, &n4, &w1, &b1);
    t0 = bv_start(bv);
    b->gelu_erf(b, big);
    bv_tick(bv, BV_OTHER, t0);
    bv_matmul(bv, out, big, &w2, &b2);
}

static int bench_vision(int np, int blocks)
{
    const int64_t d = 1024, inter = 4096, out_d = 2560, patch_dim = 1536;
    const int heads = 16, depth = 24;
    BenchVision bv = {.b = backend_get("cpu")};
    Backend *b = bv.b;
    np = (np + 3) / 4 * 4;
    Tensor pix = bv_act(&bv, np, patch_dim), h = bv_act(&bv, np, d), n = bv_act(&bv, np, d);
    Tensor q = bv_act(&bv, np, d), k = bv_act(&bv, np, d), v = bv_act(&bv, np, d);
    Tensor att = bv_act(&bv, np, d), tmp = bv_act(&bv, np, d), mlp = bv_act(&bv, np, inter);
    Tensor big = bv_act(&bv, np / 4, 4 * d), out = bv_act(&bv, np / 4, out_d);
    float *host = malloc((size_t)np * patch_dim * sizeof(float));
    for (int64_t i = 0; i < (int64_t)np * patch_dim; i++)
        host[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    b->write(b, &pix, 0, host, np);
    int32_t *pos = malloc((size_t)np * 2 * sizeof(int32_t)), cu[2] = {0, np};
    int side = 1;
    while (side * side < np)
        side++;
    for (int i = 0; i < np; i++) {
        pos[2 * i] = i / side;
        pos[2 * i + 1] = i % side;
    }
    Tensor pw = bv_weight(&bv, d, patch_dim, 0.03f), pb = bv_weight(&bv, 1, d, 0.1f);
    Tensor lnw = bv_weight(&bv, 1, d, 1.0f), lnb = bv_weight(&bv, 1, d, 0.1f);
    Tensor qkv = bv_weight(&bv, 3 * d, d, 0.03f), qkv_b = bv_weight(&bv, 3, d, 0.1f);
    Tensor proj = bv_weight(&bv, d, d, 0.03f), proj_b = bv_weight(&bv, 1, d, 0.1f);
    Tensor fc1 = bv_weight(&bv, inter, d, 0.03f), fc1_b = bv_weight(&bv, 1, inter, 0.1f);
    Tensor fc2 = bv_weight(&bv, d, inter, 0.03f), fc2_b = bv_weight(&bv, 1, d, 0.1f);
    Tensor wq = backend_view_rows(&qkv, 0, d), wk = backend_view_rows(&qkv, d, d);
    Tensor wv = backend_view_rows(&qkv, 2 * d, d), bq = backend_view_rows(&qkv_b, 0, 1);
    Tensor bk = backend_view_rows(&qkv_b, 1, 1), bvv = backend_view_rows(&qkv_b, 2, 1);
    double start = bench_now();
    bv_matmul(&bv, &h, &pix, &pw, &pb);
    double t_patch = bv.t[BV_GEMM], t_patch_c = bv.cpu[BV_GEMM];
    double tb0[BV_KINDS], tb0c[BV_KINDS];
    memcpy(tb0, bv.t, sizeof tb0);
    memcpy(tb0c, bv.cpu, sizeof tb0c);
    for (int i = 0; i < blocks; i++) { /* the same weights for every block: timing only */
        double t0 = bv_start(&bv);
        b->layernorm(b, &n, &h, &lnw, &lnb, 1e-6f);
        bv_tick(&bv, BV_OTHER, t0);
        bv_matmul(&bv, &q, &n, &wq, &bq);
        bv_matmul(&bv, &k, &n, &wk, &bk);
        bv_matmul(&bv, &v, &n, &wv, &bvv);
        t0 = bv_start(&bv);
        b->rope2d(b, &q, pos, heads, 10000.0f);
        b->rope2d(b, &k, pos, heads, 10000.0f);
        bv_tick(&bv, BV_OTHER, t0);
        t0 = bv_start(&bv);
        b->attention_seg(b, &att, &q, &k, &v, cu, 1, heads, 0.125f);
        bv_tick(&bv, BV_ATTN, t0);
        bv_matmul(&bv, &tmp, &att, &proj, &proj_b);
        t0 = bv_start(&bv);
        b->add(b, &h, &h, &tmp);
        b->layernorm(b, &n, &h, &lnw, &lnb, 1e-6f);
        bv_tick(&bv, BV_OTHER, t0);
        bv_matmul(&bv, &mlp, &n, &fc1, &fc1_b);
        t0 = bv_start(&bv);
        b->gelu_tanh(b, &mlp);
        bv_tick(&bv, BV_OTHER, t0);
        bv_matmul(&bv, &tmp, &mlp, &fc2, &fc2_b);
        t0 = bv_start(&bv);
        b->add(b, &h, &h, &tmp);
        bv_tick(&bv, BV_OTHER, t0);
    }
    double tb[BV_KINDS];
    for (int i = 0; i < BV_KINDS; i++)
        tb[i] = bv.t[i] - tb0[i];
    double tm0[BV_KINDS], tm0c[BV_KINDS];
    memcpy(tm0, bv.t, sizeof tm0);
    memcpy(tm0c, bv.cpu, sizeof tm0c);
    for (int j = 0; j < 4; j++) /* the merger and the 3 DeepStack mergers */
        bv_merger(&bv, &h, &n, &big, &out, j > 0, d, out_d);
    double measured = bench_now() - start, tm[BV_KINDS], tmc[BV_KINDS];
    for (int i = 0; i < BV_KINDS; i++) {
        tm[i] = bv.t[i] - tm0[i];
        tmc[i] = bv.cpu[i] - tm0c[i];
    }
    double scale = blocks > 0 ? (double)depth / blocks : 0.0;
    double gemm = t_patch + tb[BV_GEMM] * scale + tm[BV_GEMM];
    double attn = tb[BV_ATTN] * scale, other = tb[BV_OTHER] * scale + tm[BV_OTHER];
    double flop = 2.0 * np * ((double)patch_dim * d + depth * (4.0 * d * d + 2.0 * d * inter)) +
                  2.0 * (np / 4) * 4 * (16.0 * d * d + 4.0 * d * out_d);
    printf("patches=%d blocks_run=%d threads=%d kernel=%s\n", np, blocks, omp_get_max_threads(),
           cpu_dense_kernel_name());
    printf("measured_s=%.2f (patch embed, %d blocks, 4 mergers)\n", measured, blocks);
    printf("block_s=%.3f (gemm %.3f, attention %.3f, other %.3f)\n",
           blocks ? (tb[BV_GEMM] + tb[BV_ATTN] + tb[BV_OTHER]) / blocks : 0.0,
           blocks ? tb[BV_GEMM] / blocks : 0.0, blocks ? tb[BV_ATTN] / blocks : 0.0,
           blocks ? tb[BV_OTHER] / blocks : 0.0);
    printf("tower_s=%.2f%s: gemm %.2f (%.0f GFLOP, %.1f GFLOP/s), attention %.2f, other %.2f\n",
           gemm + attn + other, blocks < depth ? " (extrapolated to 24 blocks)" : "", gemm,
           flop / 1e9, flop / gemm / 1e9, attn, other);
    /* the same from CPU seconds: what the tower costs on cores it does not share */
    /* the blocks' CPU seconds: the total, less what came before them and the mergers */
    double gc = bv.cpu[BV_GEMM] - tb0c[BV_GEMM] - tmc[BV_GEMM];
    gc = t_patch_c + gc * scale + tmc[BV_GEMM];
    double ac = (bv.cpu[BV_ATTN] - tb0c[BV_ATTN] - tmc[BV_ATTN]) * scale;
    double oc = (bv.cpu[BV_OTHER] - tb0c[BV_OTHER] - tmc[BV_OTHER]) * scale + tmc[BV_OTHER];
    printf("tower_cpu_s=%.2f: gemm %.2f (%.1f GFLOP per cpu-s), attention %.2f, other %.2f\n",
           gc + ac + oc, gc, flop / gc / 1e9, ac, oc);
    Tensor *acts[] = {&pix, &h, &n, &q, &k, &v, &att, &tmp, &mlp, &big, &out};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
        b->release(b, acts[i]);
    for (int i = 0; i < bv.n_mem; i++)
        free(bv.mem[i]);
    free(host);
    free(pos);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "vision"))
        return bench_vision(argc > 2 ? atoi(argv[2]) : 4096, argc > 3 ? atoi(argv[3]) : 24);
    int reps = argc > 1 ? atoi(argv[1]) : 3;
    if (reps < 1)
        reps = 1;
    printf("cpucaps=%s\nkernel=%s\nscratch_kb_per_thread=%zu\n", cpucaps_describe(cpucaps_get()),
           cpu_dense_kernel_name(), cpu_dense_scratch_bytes(1) / 1024);
    double pc[3] = {0}, peak[3] = {0, bench_peak(1, &pc[1]), bench_peak(2, &pc[2])};
    printf("fma_peak_gflops_1t=%.1f (%.1f per cpu-s)\nfma_peak_gflops_2t=%.1f (%.1f per cpu-s)\n",
           peak[1], pc[1], peak[2], pc[2]);
    static const int64_t shapes[][3] = {{4096, 1024, 4096}, {4096, 4096, 1024}};
    for (int s = 0; s < 2; s++)
        for (int nt = 1; nt <= 2; nt++) {
            int64_t n = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
            double cs, dt = bench_gemm(n, in, out, QUANT_BF16, nt, reps, &cs);
            double f = 2.0 * (double)n * (double)in * (double)out, g = f / dt / 1e9;
            double gc = f / cs / 1e9;
            printf("gemm_bf16_%lldx%lld_to_%lld_%dt: %.3f s, %.1f GFLOP/s (%.0f%% of peak); "
                   "%.1f GFLOP per cpu-s (%.0f%% of the per-cpu peak)\n",
                   (long long)n, (long long)in, (long long)out, nt, dt, g,
                   peak[nt] > 0 ? 100.0 * g / peak[nt] : 0.0, gc,
                   pc[1] > 0 ? 100.0 * gc / pc[1] : 0.0);
        }
    for (int nt = 1; nt <= 2; nt++) {
        double cs, dt = bench_gemm(1, 4096, 4096, QUANT_BF16, nt, reps * 10, &cs);
        printf("gemv_bf16_1x4096_to_4096_%dt: %.3f ms, %.1f GB/s of weights\n", nt, dt * 1e3,
               4096.0 * 4096 * 2 / dt / 1e9);
    }
    return 0;
}
