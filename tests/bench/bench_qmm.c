/* bench_qmm: the integer Q4 matmul (src/cpu_qmm.c) against the machine, in one run.
 *
 *   read bandwidth: sum over a 1 GiB array, 1 and 2 threads, best 16 MiB chunk of 3
 *     passes (and the best whole pass)
 *   GEMV (1 token): GB/s of Q4 weights streamed at 2560->9728, 9728->2560 and the tied
 *     lm_head 2560->151936, 1 and 2 threads; the layer shapes cycle over enough copies
 *     (>= 512 MiB) that every call reads its weights from DRAM, as a decode step does
 *   GEMM: GFLOP/s for 512 tokens at 2560->9728 and 9728->2560 (2 * 512 * in * out flops),
 *     file layout against the packed layout (cpu_qmm_pack), 1 and 2 threads, wall and
 *     per-core by process CPU time; then the best of short calls on 512-row slices
 *   GEMV with the packed layout at 1 and 2 token rows against the file layout
 *   each kernel's ceiling: a GEMV whose weights (0.33 MB) stay in L2, 1 thread
 *
 * Short (a few seconds) and best-of-N single calls: the machine is shared and noisy. Usage:
 * bench-qmm [reps] (default 5) [gemm] (gemm: the GEMM comparison alone). */
#include "backend.h"
#include "backend_int.h"
#include "cpu_qmm.h"
#include "cpucaps.h"

#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t bench_rng = 88172645463325252ULL;

static uint64_t bench_next(void)
{
    bench_rng ^= bench_rng << 13;
    bench_rng ^= bench_rng >> 7;
    bench_rng ^= bench_rng << 17;
    return bench_rng;
}

/* Read bandwidth on th threads: the array is summed in chunks of 16 MiB (about one
 * GEMV's weights), each read from DRAM; the best chunk over reps passes. Two figures come
 * back: the best chunk (as the GEMVs are timed) and the whole pass (long: on a loaded
 * machine it is this process's share). */
static double bench_read_bw(const float *a, size_t n, int th, int reps, double *whole)
{
    const size_t chunk = (size_t)4 << 20; /* floats */
    double best = 1e30, best_pass = 1e30, sink = 0;
    for (int r = 0; r < reps; r++) {
        double p0 = bench_now();
        for (size_t c0 = 0; c0 < n; c0 += chunk) {
            double t0 = bench_now(), s = 0;
#pragma omp parallel num_threads(th) reduction(+ : s)
            {
                float acc[32] = {0}; /* independent lanes: the loop vectorises */
#pragma omp for schedule(static)
                for (size_t i = c0; i < c0 + chunk; i += 32)
                    for (int k = 0; k < 32; k++)
                        acc[k] += a[i + k];
                for (int k = 0; k < 32; k++)
                    s += acc[k];
            }
            double dt = bench_now() - t0;
            sink += s;
            best = dt < best ? dt : best;
        }
        double dp = bench_now() - p0;
        best_pass = dp < best_pass ? dp : best_pass;
    }
    if (sink == 12345.0)
        printf(" ");
    *whole = (double)n * 4 / best_pass / 1e9;
    return (double)chunk * 4 / best / 1e9;
}

/* n_copies Q4 g32 weights [rows, cols] with random codes and scales in one buffer. */
typedef struct {
    uint8_t *buf;
    Tensor *w;
    int n;
    size_t bytes; /* one copy */
} BenchW;

static void bench_weights(BenchW *b, int64_t rows, int64_t cols, int n_copies)
{
    b->bytes = (quant_nbytes(QUANT_Q4, rows, cols, 32) + 63) / 64 * 64;
    b->n = n_copies;
    b->buf = aligned_alloc(64, b->bytes * (size_t)n_copies);
    b->w = calloc((size_t)n_copies, sizeof *b->w);
    if (!b->buf || !b->w) {
        fprintf(stderr, "bench_qmm: out of memory\n");
        exit(1);
    }
    size_t off = quant_scale_offset(QUANT_Q4, rows, cols), ns = (size_t)(rows * cols / 32);
    for (int c = 0; c < n_copies; c++) {
        uint8_t *p = b->buf + (size_t)c * b->bytes;
        for (size_t i = 0; i + 8 <= off; i += 8) {
            uint64_t v = bench_next();
            memcpy(p + i, &v, 8);
        }
        uint16_t *sc = (uint16_t *)(p + off);
        for (size_t g = 0; g < ns; g++)
            sc[g] = half_f32_to_f16(0.001f + 0.01f * (float)(bench_next() % 1000) / 1000.0f);
        bk_host_weight(&ops_ref_backend, &b->w[c], QUANT_Q4, rows, cols, 32, p, NULL);
    }
}

static void bench_weights_free(BenchW *b)
{
    free(b->buf);
    free(b->w);
}

static Tensor bench_act(int64_t rows, int64_t cols)
{
    Tensor t;
    if (bk_host_alloc(&ops_ref_backend, &t, rows, cols, NULL)) {
        fprintf(stderr, "bench_qmm: out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < rows * cols; i++)
        ((float *)t.data)[i] = (float)(bench_next() % 2001) / 1000.0f - 1.0f;
    return t;
}

/* The copies of a repacked into the packed layout (cpu_qmm_pack). */
static void bench_pack(BenchW *p, const BenchW *a)
{
    const Tensor *w = &a->w[0];
    p->bytes = (cpu_qmm_packed_bytes(w->type, w->rows, w->cols, w->group) + 63) / 64 * 64;
    p->n = a->n;
    p->buf = aligned_alloc(64, p->bytes * (size_t)p->n);
    p->w = calloc((size_t)p->n, sizeof *p->w);
    if (!p->buf || !p->w) {
        fprintf(stderr, "bench_qmm: out of memory\n");
        exit(1);
    }
    for (int c = 0; c < p->n; c++) {
        cpu_qmm_pack(&a->w[c], p->buf + (size_t)c * p->bytes);
        p->w[c] = cpu_qmm_packed_tensor(&a->w[c], p->buf + (size_t)c * p->bytes);
    }
}

static double bench_cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void bench_call(CpuQmmKernel k, int packed, Tensor *y, const Tensor *x, const Tensor *w)
{
    if (packed)
        cpu_qmm_matmul_packed_with(k, y, x, w, NULL);
    else
        cpu_qmm_matmul_with(k, y, x, w, NULL);
}

/* Best seconds of one call of kernel k (packed layout or not) over reps passes through
 * the copies (the best single call: on a shared machine, the one least disturbed; each
 * reads its own copy); *cpu (when not NULL) gets the least process CPU seconds of a call
 * divided by the threads: what a call costs a core however the host shares them. */
static double bench_run(CpuQmmKernel k, int packed, BenchW *b, Tensor *y, const Tensor *x, int th,
                        int reps, double *cpu)
{
    omp_set_num_threads(th);
    bench_call(k, packed, y, x, &b->w[0]); /* scratch grown, threads started */
    double best = 1e30, best_cpu = 1e30;
    for (int r = 0; r < reps; r++)
        for (int c = 0; c < b->n; c++) {
            double t0 = bench_now(), c0 = bench_cpu_now();
            bench_call(k, packed, y, x, &b->w[c]);
            double dt = bench_now() - t0, dc = (bench_cpu_now() - c0) / th;
            best = dt < best ? dt : best;
            best_cpu = dc < best_cpu ? dc : best_cpu;
        }
    if (cpu)
        *cpu = best_cpu;
    return best;
}

static double bench_gemv(CpuQmmKernel k, BenchW *b, Tensor *y, const Tensor *x, int th, int reps)
{
    return bench_run(k, 0, b, y, x, th, reps, NULL);
}

/* GEMM at 512 tokens for one shape: file layout against packed, 1 and 2 threads, wall
 * and CPU-time rates (per core: flops / (CPU seconds / threads)). */
static void bench_gemm_shape(int64_t in, int64_t out, int reps)
{
    BenchW b, bp;
    bench_weights(&b, out, in, 1);
    double c0 = bench_cpu_now();
    bench_pack(&bp, &b);
    double pack = bench_cpu_now() - c0;
    Tensor x = bench_act(512, in), y = bench_act(512, out);
    double flop = 2.0 * 512 * (double)in * (double)out;
    printf("\nGEMM, 512 tokens, %lld->%lld Q4 g32 (GFLOP/s wall; per core by CPU time; "
           "repacking took %.1f ms of CPU):\n",
           (long long)in, (long long)out, pack * 1e3);
    for (int packed = 0; packed <= 1; packed++) {
        CpuQmmKernel k = packed ? cpu_qmm_packed_kernel() : cpu_qmm_kernel();
        printf("  %-6s %-10s", packed ? "packed" : "file", cpu_qmm_kernel_label(k));
        for (int th = 1; th <= 2; th++) {
            double cpu, t = bench_run(k, packed, packed ? &bp : &b, &y, &x, th, reps, &cpu);
            printf("  %d thr %6.1f (%5.1f/core, %.1f ms)", th, flop / t / 1e9, flop / th / cpu / 1e9,
                   t * 1e3);
        }
        printf("\n");
    }
    bk_host_release(NULL, &x);
    bk_host_release(NULL, &y);
    bench_weights_free(&b);
    bench_weights_free(&bp);
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    if (reps < 1)
        reps = 1;
    CpuQmmKernel k = cpu_qmm_kernel();
    printf("cpu: %s; kernel: %s; reps %d (best of)\n", cpucaps_describe(cpucaps_get()),
           cpu_qmm_kernel_name(), reps);
    if (argc > 2 && !strcmp(argv[2], "gemm")) { /* the GEMM figures alone (seconds) */
        bench_gemm_shape(2560, 9728, reps);
        bench_gemm_shape(9728, 2560, reps);
        cpu_qmm_release();
        return 0;
    }

    size_t n = (size_t)1 << 28; /* 1 GiB of floats */
    float *a = aligned_alloc(64, n * 4);
    if (!a) {
        fprintf(stderr, "bench_qmm: out of memory\n");
        return 1;
    }
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        a[i] = (float)(i & 7);
    double w1, w2, bw1 = bench_read_bw(a, n, 1, 3, &w1), bw2 = bench_read_bw(a, n, 2, 3, &w2);
    free(a);
    printf("read bandwidth (sum over 1 GiB, best 16 MiB chunk): 1 thread %.1f GB/s, 2 threads "
           "%.1f GB/s\n  (whole 1 GiB pass: %.1f and %.1f GB/s)\n",
           bw1, bw2, w1, w2);

    static const struct {
        int64_t in, out;
        const char *what;
    } shapes[] = {{2560, 9728, "gate/up 2560->9728"},
                  {9728, 2560, "down 9728->2560"},
                  {2560, 151936, "lm_head 2560->151936"}};
    printf("\nGEMV, 1 token, Q4 g32 (%s):\n", cpu_qmm_kernel_label(k));
    printf("  %-22s %9s %9s %8s %9s %8s\n", "shape", "MB", "1 thr GB/s", "of bw", "2 thr GB/s",
           "of bw");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        BenchW b;
        size_t one = quant_nbytes(QUANT_Q4, shapes[s].out, shapes[s].in, 32);
        int copies = (int)(((size_t)512 << 20) / one) + 1;
        bench_weights(&b, shapes[s].out, shapes[s].in, copies);
        Tensor x = bench_act(1, shapes[s].in), y = bench_act(1, shapes[s].out);
        double t1 = bench_gemv(k, &b, &y, &x, 1, reps), t2 = bench_gemv(k, &b, &y, &x, 2, reps);
        double g1 = (double)one / t1 / 1e9, g2 = (double)one / t2 / 1e9;
        printf("  %-22s %9.1f %9.1f %8.0f%% %9.1f %8.0f%%   (%.3f / %.3f ms)\n", shapes[s].what,
               (double)one / 1e6, g1, 100 * g1 / bw1, g2, 100 * g2 / bw2, t1 * 1e3, t2 * 1e3);
        /* the packed layout at 1 and 2 token rows, and the file layout at 2 */
        BenchW bp;
        bench_pack(&bp, &b);
        Tensor x2 = bench_act(2, shapes[s].in), y2 = bench_act(2, shapes[s].out);
        CpuQmmKernel kp = cpu_qmm_packed_kernel();
        double f2a = bench_run(k, 0, &b, &y2, &x2, 1, reps, NULL);
        double f2b = bench_run(k, 0, &b, &y2, &x2, 2, reps, NULL);
        double p1a = bench_run(kp, 1, &bp, &y, &x, 1, reps, NULL);
        double p1b = bench_run(kp, 1, &bp, &y, &x, 2, reps, NULL);
        double p2a = bench_run(kp, 1, &bp, &y2, &x2, 1, reps, NULL);
        double p2b = bench_run(kp, 1, &bp, &y2, &x2, 2, reps, NULL);
        printf("    ms, 1/2 thr: file 1 tok %.3f/%.3f, 2 tok %.3f/%.3f; packed 1 tok %.3f/%.3f, "
               "2 tok %.3f/%.3f\n",
               t1 * 1e3, t2 * 1e3, f2a * 1e3, f2b * 1e3, p1a * 1e3, p1b * 1e3, p2a * 1e3,
               p2b * 1e3);
        bk_host_release(NULL, &x2);
        bk_host_release(NULL, &y2);
        bench_weights_free(&bp);
        bk_host_release(NULL, &x);
        bk_host_release(NULL, &y);
        bench_weights_free(&b);
    }

    bench_gemm_shape(2560, 9728, reps > 3 ? 3 : reps);
    bench_gemm_shape(9728, 2560, reps > 3 ? 3 : reps);

    {
        BenchW b;
        bench_weights(&b, 9728, 2560, 1);
        Tensor x = bench_act(512, 2560), y = bench_act(512, 9728);
        double flop = 2.0 * 512 * 2560 * 9728;
        printf("\nGEMM, 512 tokens, 2560->9728 Q4 g32 (%s):", cpu_qmm_kernel_label(k));
        for (int th = 1; th <= 2; th++) {
            double t = bench_gemv(k, &b, &y, &x, th, reps > 3 ? 3 : reps);
            printf("  %d thr %.1f GFLOP/s (%.1f ms)", th, flop / t / 1e9, t * 1e3);
        }
        printf("\n");
        /* the same 512 tokens on 512-row slices of W (1.3 GFLOP a call, best of 10 calls):
         * a call short enough to run undisturbed on a shared machine */
        Tensor ws = backend_view_rows(&b.w[0], 0, 512), ys = bench_act(512, 512);
        BenchW bs = {.w = &ws, .n = 1};
        printf("  slices of 512 rows, best call:");
        for (int th = 1; th <= 2; th++) {
            double t = bench_gemv(k, &bs, &ys, &x, th, 10);
            printf("  %d thr %.1f GFLOP/s (%.1f ms)", th, flop / 19 / t / 1e9, t * 1e3);
        }
        printf("\n");
        bk_host_release(NULL, &ys);
        bk_host_release(NULL, &x);
        bk_host_release(NULL, &y);
        bench_weights_free(&b);
    }

    {
        /* the kernels' own ceiling: 256 x 2560 Q4 (0.33 MB, in L2) over and over */
        BenchW b;
        size_t one = quant_nbytes(QUANT_Q4, 256, 2560, 32);
        bench_weights(&b, 256, 2560, 1);
        Tensor x = bench_act(1, 2560), y = bench_act(1, 256);
        printf("\nGEMV 2560->256, weights in L2, 1 thread, by kernel:");
        for (int kk = CPU_QMM_C; kk < CPU_QMM_N; kk++) {
            if (!cpu_qmm_kernel_available(kk))
                continue;
            double t = bench_gemv(kk, &b, &y, &x, 1, kk == CPU_QMM_C ? 3 : 50 * reps);
            printf("  %s %.1f GB/s", cpu_qmm_kernel_label(kk), (double)one / t / 1e9);
        }
        printf("\n");
        bk_host_release(NULL, &x);
        bk_host_release(NULL, &y);
        bench_weights_free(&b);
    }
    cpu_qmm_release();
    return 0;
}
