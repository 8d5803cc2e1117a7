/* bench_dense: the dense-weight GEMM's speed against the cores' f32 FMA peak, for
 * `make bench-dense`.
 *
 * usage: bench-dense [REPS]
 * Prints key=value lines: the FMA peak (a register-only loop of independent FMAs on the
 * widest vectors the machine has) with 1 and 2 threads, then GFLOP/s (best of REPS) and
 * the fraction of that peak for the vision tower's MLP shapes, 4096 x 1024 -> 4096 and
 * 4096 x 4096 -> 1024 with BF16 weights, on 1 and 2 threads, and the GEMV path (n = 1)
 * in GB/s of weights. */
#include "backend.h"
#include "backend_int.h"
#include "cpu_dense.h"
#include "cpucaps.h"

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

int main(int argc, char **argv)
{
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
