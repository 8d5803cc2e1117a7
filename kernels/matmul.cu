/* matmul: y[n, out] = x[n, in] @ W[out, in]^T (+ bias[out]) on the device (vk_matmul).
 * CPU reference: ref_matmul in src/ops_ref.c (f32 accumulation in index order over
 * bk_elem's dequantised weights). Three paths, each with its error against that reference:
 *
 * - W F32: cuBLAS SGEMM semantics (cublasGemmEx, all 32F, CUBLAS_COMPUTE_32F: no TF32).
 *   Error: f32 summation order only, |y - ref| <= (in + 64) 2^-23 sum_k |x_k w_k|.
 * - W F16 / BF16: x converted to W's type into c->work (mm_act_kernel: f16 with a per-row
 *   power-of-two scale, see q4_math.h vk_act_exp, so nothing overflows; bf16 as is), then
 *   cublasGemmEx with f32 accumulation, then mm_epilogue_kernel (undo the scale, add the
 *   bias). Error: x's rounding, u = 2^-11 (f16) or 2^-8 (bf16):
 *   |y - ref| <= (u + (in + 64) 2^-23) sum_k |x_k w_k|.
 * - W Q4 / Q8, n <= VK_GEMV_MAX_N (decode): mm_gemv_kernel, the dequantisation fused, all
 *   f32: exact weights ((q - 8) as floats), products summed per 16-byte chunk, scaled by
 *   the group scale, summed per lane, then over the warp. Error: summation order only,
 *   |y - ref| <= (in + 64) 2^-24 sum_k |x_k w_k| (a bound, not an estimate).
 * - W Q4 / Q8, n > VK_GEMV_MAX_N (prefill): mm_mmq_kernel on the tensor cores
 *   (mma.sync.m16n8k16, f16 inputs, f32 accumulation): x as f16 with the per-row scale
 *   (mm_act_kernel), weights dequantised to f16 tiles in shared memory (s * (q - 8)
 *   rounded to nearest even). Each product then carries at most two f16 roundings, so
 *   |y - ref| <= (2^-10 + 2^-22 + (in + 64) 2^-23) sum_k |x_k w_k|: about 1e-3 of
 *   sum_k |x_k w_k| (the tolerance the tests and selftest use), plus f16's subnormal
 *   floor on tiny dequantised weights (|s * (q - 8)| < 2^-14: absolute error <= 2^-25
 *   each; real group scales are far above that) and on activations below amax * 2^-29.
 *
 * Work: the F16/BF16 and Q GEMM paths use c->work for x's 16-bit copy and the row
 * exponents (vk_mm_work_bytes), in passes over the token rows when it does not fit; the
 * F32 path and the GEMV use none. Nothing here allocates or synchronises.
 *
 * The arithmetic lives in kernels/q4_math.h and the geometry in kernels/mm_geom.h (host
 * tested: tests/test_kmath_mm.c); what only a device run proves is the data movement
 * (shared-memory fills, cp.async, the mma fragment loads, the warp shuffles). */
#include "vk.h"

#include "mm_geom.h"
#include "q4_math.h"

#include <assert.h>
#include <cuda_fp16.h>
#include <stdint.h>

/* ---- epilogue: undo the activation scale, add the bias ----
 * Reference: the `acc += bias` of ref_matmul. Launch: a grid-stride 1-D grid of 256
 * threads over y's n*out elements. Exact given the cuBLAS sums (a power of two, one add). */
static __global__ void mm_epilogue_kernel(float *y, int64_t n, int64_t out, const int32_t *rexp,
                                          int btype, const void *bias)
{
    int64_t total = n * out, step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += step) {
        int64_t t = i / out, o = i - t * out;
        float v = y[i];
        if (rexp)
            v *= vk_exp2i(-rexp[t]);
        if (bias)
            v += vk_elem(btype, bias, NULL, 0, o);
        y[i] = v;
    }
}

static unsigned mm_grid_1d(int64_t total, int threads)
{
    int64_t b = (total + threads - 1) / threads;
    return (unsigned)(b < (1 << 20) ? (b > 0 ? b : 1) : (1 << 20));
}

/* ---- activation conversion for the 16-bit paths ----
 * xh[row, :] = x[row, :] as f16 (x * 2^e, e = vk_act_exp(max |x|), rexp[row] = e) or as
 * bf16 (e = 0). Reference: none of its own (part of the matmul; its rounding is the error
 * term u above). Launch: one block of 256 threads per token row. */
#define MM_ACT_THREADS 256
static __global__ void __launch_bounds__(MM_ACT_THREADS)
    mm_act_kernel(uint16_t *xh, int32_t *rexp, const float *x, int64_t in, int bf16)
{
    __shared__ float red[MM_ACT_THREADS / 32];
    const float *xr = x + (int64_t)blockIdx.x * in;
    uint16_t *hr = xh + (int64_t)blockIdx.x * in;
    int e = 0;
    if (!bf16) {
        float m = 0.0f;
        for (int64_t c = threadIdx.x; c < in; c += MM_ACT_THREADS)
            m = fmaxf(m, fabsf(xr[c]));
        for (int off = 16; off > 0; off >>= 1)
            m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
        if ((threadIdx.x & 31) == 0)
            red[threadIdx.x >> 5] = m;
        __syncthreads();
        m = red[0];
        for (int w = 1; w < MM_ACT_THREADS / 32; w++)
            m = fmaxf(m, red[w]);
        e = vk_act_exp(m);
    }
    for (int64_t c = threadIdx.x; c < in; c += MM_ACT_THREADS)
        hr[c] = bf16 ? vk_f32_to_bf16(xr[c]) : vk_act_f16(xr[c], e);
    if (threadIdx.x == 0)
        rexp[blockIdx.x] = e;
}

/* ---- the dense paths (cuBLAS) ---- */

/* Row-major y[n, out] = x[n, in] W[out, in]^T is column-major y^T[out, n] = W^T' x^T':
 * W row-major is column-major [in, out] (ld in), taken transposed; x row-major is
 * column-major [in, n] (ld in). */
static int mm_gemm_ex(VkCtx *c, float *y, const void *x, cudaDataType xt, const void *w,
                      cudaDataType wt, int64_t n, int64_t in, int64_t out)
{
    const float one = 1.0f, zero = 0.0f;
    cublasStatus_t st = cublasSetStream(c->blas, c->stream);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)out, (int)n, (int)in, &one, w, wt,
                          (int)in, x, xt, (int)in, &zero, y, CUDA_R_32F, (int)out,
                          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    return vk_note_blas(c, (int)st, "vk_matmul: cublasGemmEx");
}

static void mm_dense(VkCtx *c, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *bias)
{
    int64_t n = x->rows, in = x->cols, out = w->rows;
    const void *bd = bias ? bias->data : NULL;
    int bt = bias ? (int)bias->type : 0;
    if (w->type == QUANT_F32) {
        if (mm_gemm_ex(c, (float *)y->data, x->data, CUDA_R_32F, w->data, CUDA_R_32F, n, in, out))
            return;
        if (bias) {
            mm_epilogue_kernel<<<mm_grid_1d(n * out, 256), 256, 0, c->stream>>>((float *)y->data, n,
                                                                                out, NULL, bt, bd);
            vk_note(c, (int)cudaGetLastError(), "vk_matmul: mm_epilogue_kernel");
        }
        return;
    }
    int bf16 = w->type == QUANT_BF16;
    cudaDataType dt = bf16 ? CUDA_R_16BF : CUDA_R_16F;
    int64_t per = vk_mm_work_rows(c->work_bytes, in);
    if (per < 1) {
        vk_note(c, (int)cudaErrorMemoryAllocation, "vk_matmul: workspace below one row of x");
        return;
    }
    for (int64_t t0 = 0; t0 < n; t0 += per) {
        int64_t nt = n - t0 < per ? n - t0 : per;
        uint16_t *xh = (uint16_t *)c->work;
        int32_t *rexp = (int32_t *)((char *)c->work + vk_mm_align((size_t)(nt * in) * 2));
        float *yt = (float *)y->data + t0 * out;
        mm_act_kernel<<<(unsigned)nt, MM_ACT_THREADS, 0, c->stream>>>(
            xh, rexp, (const float *)x->data + t0 * in, in, bf16);
        if (vk_note(c, (int)cudaGetLastError(), "vk_matmul: mm_act_kernel"))
            return;
        if (mm_gemm_ex(c, yt, xh, dt, w->data, dt, nt, in, out))
            return;
        if (!bf16 || bias) {
            mm_epilogue_kernel<<<mm_grid_1d(nt * out, 256), 256, 0, c->stream>>>(
                yt, nt, out, bf16 ? NULL : rexp, bt, bd);
            if (vk_note(c, (int)cudaGetLastError(), "vk_matmul: mm_epilogue_kernel"))
                return;
        }
    }
}

/* ---- decode: the Q4/Q8 GEMV ----
 * Reference: ref_matmul. Tolerance: (in + 64) 2^-24 sum_k |x_k w_k| (f32, order only).
 * Launch: vk_gemv_blocks(out, n_sm) blocks of VK_GEMV_THREADS (8 warps), block b taking
 * the row groups b, b + grid, ...; in row group rg warp w owns the VK_GEMV_RPW weight
 * rows vk_gemv_row(rg, w, r); dynamic shared memory NT * kc floats (x of all NT tokens for
 * one k-chunk, swizzled: vk_xs_idx), staged once per block when kc covers all of in.
 * Each lane streams 16-byte chunks of both its rows (two chunks ahead: 4 independent
 * 128-bit loads in flight), and the warp sums its lanes with shuffles. Memory-bound at
 * n = 1 (Q4 at group 32, per 16 weight bytes: 2 f32 ops per weight and 128 bytes of x
 * read from shared memory for the two rows, within an SM's 128 bytes per clock at an
 * H100/H200's bandwidth); from n = 3 or so the FMAs (n per weight) bound it instead. */
#define MM_GEMV_AHEAD 2

/* launch bounds: 4 blocks per SM at n = 1 (the memory-bound decode case keeps 32 warps
 * streaming, 64 registers a thread); past it the compiler may take the registers it
 * needs (the n x rows accumulators), as spilling costs more than occupancy there */
template <int NT, int Q4>
static __global__ void __launch_bounds__(VK_GEMV_THREADS, NT == 1 ? 4 : 1)
    mm_gemv_kernel(float *__restrict__ y, const float *__restrict__ x,
                   const uint8_t *__restrict__ qs, const uint16_t *__restrict__ sc, int64_t in,
                   int64_t out, int group, int kc, int btype, const void *bias)
{
    extern __shared__ float4 mm_xs4[];
    float *xs = (float *)mm_xs4;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t row_bytes = Q4 ? in / 2 : in, row_groups = in / group;
    const int64_t n_rg = vk_gemv_groups(out);
    const bool resident = kc >= in; /* one k-chunk: x stays for all row groups */

    for (int64_t rg = blockIdx.x; rg < n_rg; rg += gridDim.x) {
        int64_t rows[VK_GEMV_RPW];
        bool valid[VK_GEMV_RPW];
#pragma unroll
        for (int r = 0; r < VK_GEMV_RPW; r++) {
            rows[r] = vk_gemv_row(rg, warp, r);
            valid[r] = rows[r] < out;
        }
        float acc[VK_GEMV_RPW * NT];
#pragma unroll
        for (int i = 0; i < VK_GEMV_RPW * NT; i++)
            acc[i] = 0.0f;

        for (int64_t k0 = 0; k0 < in; k0 += kc) {
            const int kn = (int)(in - k0 < kc ? in - k0 : kc);
            if (!resident || rg == blockIdx.x) {
                __syncthreads(); /* the previous k-chunk's readers are done */
                for (int i = threadIdx.x; i < NT * (kn / 4); i += VK_GEMV_THREADS) {
                    int t = i / (kn / 4), p = i - t * (kn / 4);
                    float4 v = __ldg((const float4 *)(x + t * in + k0) + p);
                    *(float4 *)(xs + t * kc + vk_xs_idx(p * 4)) = v;
                }
                __syncthreads();
            }
            const int nch = Q4 ? kn / 32 : kn / 16;
            const int64_t gbase = k0 / group;
            for (int ch0 = lane; ch0 < nch; ch0 += 32 * MM_GEMV_AHEAD) {
                uint32_t q[MM_GEMV_AHEAD][VK_GEMV_RPW * 4];
                float s[MM_GEMV_AHEAD][VK_GEMV_RPW];
                int e_lo[MM_GEMV_AHEAD], e_hi[MM_GEMV_AHEAD];
                /* all loads first, then the arithmetic: the loads overlap */
#pragma unroll
                for (int a = 0; a < MM_GEMV_AHEAD; a++) {
                    int ch = ch0 + 32 * a, g;
                    if (Q4)
                        vk_q4_chunk(ch, group, &e_lo[a], &e_hi[a], &g);
                    else
                        vk_q8_chunk(ch, group, &e_lo[a], &g), e_hi[a] = 0;
#pragma unroll
                    for (int r = 0; r < VK_GEMV_RPW; r++) {
                        uint4 v = make_uint4(0, 0, 0, 0);
                        uint16_t sh = 0;
                        if (ch < nch && valid[r]) {
                            v = __ldcs(
                                (const uint4 *)(qs + rows[r] * row_bytes + (Q4 ? k0 / 2 : k0)) +
                                ch);
                            sh = __ldg(sc + rows[r] * row_groups + gbase + g);
                        }
                        q[a][4 * r] = v.x;
                        q[a][4 * r + 1] = v.y;
                        q[a][4 * r + 2] = v.z;
                        q[a][4 * r + 3] = v.w;
                        s[a][r] = vk_f16_to_f32(sh);
                    }
                }
#pragma unroll
                for (int a = 0; a < MM_GEMV_AHEAD; a++) {
                    if (ch0 + 32 * a >= nch)
                        break;
                    if (Q4)
                        vk_gemv_q4_step(q[a], s[a], VK_GEMV_RPW, xs, kc, NT, e_lo[a], e_hi[a], acc);
                    else
                        vk_gemv_q8_step(q[a], s[a], VK_GEMV_RPW, xs, kc, NT, e_lo[a], acc);
                }
            }
        }
#pragma unroll
        for (int i = 0; i < VK_GEMV_RPW * NT; i++)
            for (int off = 16; off > 0; off >>= 1)
                acc[i] += __shfl_xor_sync(0xffffffffu, acc[i], off);
#pragma unroll
        for (int i = 0; i < VK_GEMV_RPW * NT; i++) {
            /* every lane holds every sum; lane i writes sum i (constant register indices) */
            const int r = i / NT, t = i % NT;
            if (lane == i && valid[r]) {
                float v = acc[i];
                if (bias)
                    v += vk_elem(btype, bias, NULL, 0, rows[r]);
                y[t * out + rows[r]] = v;
            }
        }
    }
}

typedef void (*MmGemvFn)(float *, const float *, const uint8_t *, const uint16_t *, int64_t,
                         int64_t, int, int, int, const void *);

static MmGemvFn mm_gemv_fn(int n, int q4)
{
#define MM_GEMV_CASE(N)                                                                            \
    case N:                                                                                        \
        return q4 ? mm_gemv_kernel<N, 1> : mm_gemv_kernel<N, 0>;
    switch (n) {
        MM_GEMV_CASE(1)
        MM_GEMV_CASE(2)
        MM_GEMV_CASE(3)
        MM_GEMV_CASE(4)
        MM_GEMV_CASE(5)
        MM_GEMV_CASE(6)
        MM_GEMV_CASE(7)
        MM_GEMV_CASE(8)
    }
#undef MM_GEMV_CASE
    return NULL;
}

/* ---- prefill: the Q4/Q8 tensor-core GEMM ---- */

static __device__ __forceinline__ void mm_cp_async16(void *smem, const void *gmem, int src_bytes)
{
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem),
                 "r"(src_bytes)
                 : "memory");
}

static __device__ __forceinline__ void mm_cp_async_commit(void)
{
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

static __device__ __forceinline__ void mm_cp_async_wait1(void)
{
    asm volatile("cp.async.wait_group 1;\n" ::: "memory");
}

static __device__ __forceinline__ void mm_mma16816(float c[4], const uint32_t a[4],
                                                   const uint32_t b[2])
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

/* Reference: ref_matmul. Tolerance: (2^-10 + 2^-22 + (in + 64) 2^-23) sum_k |x_k w_k|
 * (the file comment). Launch: grid (vk_mmq_grid_m(out), vk_mmq_grid_n(n)), VK_MMQ_THREADS
 * (4 warps, each a 32 x 64 tile of 2 x 8 mma.m16n8k16), 30 KiB of static shared memory:
 * two stages of the weight tile (BM x BK f16, dequantised from registers loaded one
 * k-step ahead) and of the activation tile (BN x BK f16, by cp.async one k-step ahead).
 * xh [n, in] f16 and rexp[n] come from mm_act_kernel. */
template <int Q4>
static __global__ void __launch_bounds__(VK_MMQ_THREADS, 3)
    mm_mmq_kernel(float *__restrict__ y, const uint16_t *__restrict__ xh,
                  const int32_t *__restrict__ rexp, const uint8_t *__restrict__ qs,
                  const uint16_t *__restrict__ sc, int64_t n, int64_t in, int64_t out, int group,
                  int btype, const void *bias)
{
    __shared__ __align__(16) uint16_t ws[2][VK_MMQ_BM * VK_MMQ_LDS];
    __shared__ __align__(16) uint16_t xsm[2][VK_MMQ_BN * VK_MMQ_LDS];
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int64_t m_blk = (int64_t)blockIdx.x * VK_MMQ_BM, n_blk = (int64_t)blockIdx.y * VK_MMQ_BN;
    const int64_t row_bytes = Q4 ? in / 2 : in, row_groups = in / group;
    const int nk = (int)(in / VK_MMQ_BK);
    int wm0, wn0, wrow, wk;
    vk_mmq_warp(warp, &wm0, &wn0);
    vk_mmq_wload(tid, &wrow, &wk);
    const int64_t grow = m_blk + wrow;
    const bool wvalid = grow < out;

    uint32_t wq[4];
    float wsc = 0.0f;
    int whi = 0;
    float acc[VK_MMQ_MT][VK_MMQ_NT][4];
#pragma unroll
    for (int mi = 0; mi < VK_MMQ_MT; mi++)
#pragma unroll
        for (int ni = 0; ni < VK_MMQ_NT; ni++)
#pragma unroll
            for (int i = 0; i < 4; i++)
                acc[mi][ni][i] = 0.0f;

/* the weights of k-step KT into wq / wsc / whi (global loads, in flight during compute) */
#define MM_LOAD_W(KT)                                                                              \
    do {                                                                                           \
        int k_ = VK_MMQ_BK * (KT) + wk, g_ = vk_udiv(k_, group);                                   \
        const uint8_t *p_;                                                                         \
        if (Q4) {                                                                                  \
            int byte_;                                                                             \
            vk_q4_loc16(k_ - g_ * group, group, &byte_, &whi);                                     \
            p_ = qs + grow * row_bytes + (int64_t)g_ * (group / 2) + byte_;                        \
        } else {                                                                                   \
            p_ = qs + grow * row_bytes + k_;                                                       \
        }                                                                                          \
        uint4 v_ = make_uint4(0, 0, 0, 0);                                                         \
        uint16_t s_ = 0;                                                                           \
        if (wvalid) {                                                                              \
            v_ = __ldcs((const uint4 *)p_);                                                        \
            s_ = __ldg(sc + grow * row_groups + g_);                                               \
        }                                                                                          \
        wq[0] = v_.x, wq[1] = v_.y, wq[2] = v_.z, wq[3] = v_.w;                                    \
        wsc = vk_f16_to_f32(s_);                                                                   \
    } while (0)
/* the activations of k-step KT into stage ST (cp.async; rows past n zero-filled) */
#define MM_LOAD_X(ST, KT)                                                                          \
    do {                                                                                           \
        _Pragma("unroll") for (int i_ = 0; i_ < VK_MMQ_XCHUNKS; i_++)                              \
        {                                                                                          \
            int tok_, kx_;                                                                         \
            vk_mmq_xload(tid, i_, &tok_, &kx_);                                                    \
            int64_t gt_ = n_blk + tok_;                                                            \
            const uint16_t *src_ = gt_ < n ? xh + gt_ * in + (int64_t)VK_MMQ_BK * (KT) + kx_ : xh; \
            mm_cp_async16(&xsm[ST][tok_ * VK_MMQ_LDS + kx_], src_, gt_ < n ? 16 : 0);              \
        }                                                                                          \
    } while (0)

    MM_LOAD_W(0);
    MM_LOAD_X(0, 0);
    mm_cp_async_commit();
    for (int kt = 0; kt < nk; kt++) {
        const int st = kt & 1;
        {
            uint16_t h[16];
            if (Q4)
                vk_q4_deq16_f16(wq, whi, wsc, h);
            else
                vk_q8_deq16_f16(wq, wsc, h);
            uint4 *dst = (uint4 *)&ws[st][wrow * VK_MMQ_LDS + wk];
            dst[0] = make_uint4(h[0] | (uint32_t)h[1] << 16, h[2] | (uint32_t)h[3] << 16,
                                h[4] | (uint32_t)h[5] << 16, h[6] | (uint32_t)h[7] << 16);
            dst[1] = make_uint4(h[8] | (uint32_t)h[9] << 16, h[10] | (uint32_t)h[11] << 16,
                                h[12] | (uint32_t)h[13] << 16, h[14] | (uint32_t)h[15] << 16);
        }
        if (kt + 1 < nk) {
            MM_LOAD_W(kt + 1);
            MM_LOAD_X(st ^ 1, kt + 1);
        }
        mm_cp_async_commit();
        mm_cp_async_wait1(); /* all but the newest group: k-step kt's activations are in */
        __syncthreads();
#pragma unroll
        for (int ks = 0; ks < VK_MMQ_BK / 16; ks++) {
            uint32_t a[VK_MMQ_MT][4], b[VK_MMQ_NT][2];
#pragma unroll
            for (int mi = 0; mi < VK_MMQ_MT; mi++)
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    int r, k;
                    vk_mma_a(lane, i, &r, &k);
                    const uint16_t *p = &ws[st][(wm0 + mi * 16 + r) * VK_MMQ_LDS + ks * 16 + k];
                    a[mi][i] = *(const uint32_t *)p;
                }
#pragma unroll
            for (int ni = 0; ni < VK_MMQ_NT; ni++)
#pragma unroll
                for (int i = 0; i < 2; i++) {
                    int k, col;
                    vk_mma_b(lane, i, &k, &col);
                    const uint16_t *p = &xsm[st][(wn0 + ni * 8 + col) * VK_MMQ_LDS + ks * 16 + k];
                    b[ni][i] = *(const uint32_t *)p;
                }
#pragma unroll
            for (int mi = 0; mi < VK_MMQ_MT; mi++)
#pragma unroll
                for (int ni = 0; ni < VK_MMQ_NT; ni++)
                    mm_mma16816(acc[mi][ni], a[mi], b[ni]);
        }
        __syncthreads(); /* stage st is free for k-step kt + 2 */
    }
#undef MM_LOAD_W
#undef MM_LOAD_X

    /* epilogue: this lane's 2*MT output rows and 2*NT tokens (vk_mma_c) get their bias
     * and their row's 2^-e once */
    float bv[VK_MMQ_MT][2], sv[VK_MMQ_NT][2];
#pragma unroll
    for (int mi = 0; mi < VK_MMQ_MT; mi++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int r, col;
            vk_mma_c(lane, 2 * h, &r, &col);
            int64_t o = m_blk + wm0 + mi * 16 + r;
            bv[mi][h] = bias && o < out ? vk_elem(btype, bias, NULL, 0, o) : 0.0f;
        }
#pragma unroll
    for (int ni = 0; ni < VK_MMQ_NT; ni++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int r, col;
            vk_mma_c(lane, h, &r, &col);
            int64_t t = n_blk + wn0 + ni * 8 + col;
            sv[ni][h] = t < n ? vk_exp2i(-rexp[t]) : 0.0f;
        }
#pragma unroll
    for (int mi = 0; mi < VK_MMQ_MT; mi++)
#pragma unroll
        for (int ni = 0; ni < VK_MMQ_NT; ni++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                int r, col;
                vk_mma_c(lane, i, &r, &col);
                int64_t o = m_blk + wm0 + mi * 16 + r, t = n_blk + wn0 + ni * 8 + col;
                if (o < out && t < n)
                    y[t * out + o] = acc[mi][ni][i] * sv[ni][i & 1] + bv[mi][i >> 1];
            }
}

static void mm_quant(VkCtx *c, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *bias)
{
    int64_t n = x->rows, in = x->cols, out = w->rows;
    int q4 = w->type == QUANT_Q4, group = w->group;
    const void *bd = bias ? bias->data : NULL;
    int bt = bias ? (int)bias->type : 0;
    if (((uintptr_t)w->data & 15) || ((uintptr_t)x->data & 15) || in % 32 || group % 32) {
        vk_note(c, (int)cudaErrorMisalignedAddress,
                "vk_matmul: Q4/Q8 weights and x must be 16-byte aligned, in and group multiples "
                "of 32");
        return;
    }
    int kc = n <= VK_GEMV_MAX_N ? vk_gemv_kc((int)n, group, in) : 0;
    if (kc) {
        mm_gemv_fn((int)n, q4)<<<(unsigned)vk_gemv_blocks(out, c->n_sm), VK_GEMV_THREADS,
                                 (size_t)n * kc * 4, c->stream>>>(
            (float *)y->data, (const float *)x->data, (const uint8_t *)w->data,
            (const uint16_t *)w->scale, in, out, group, kc, bt, bd);
        vk_note(c, (int)cudaGetLastError(), "vk_matmul: mm_gemv_kernel");
        return;
    }
    int64_t per = vk_mm_work_rows(c->work_bytes, in);
    if (per < 1) {
        vk_note(c, (int)cudaErrorMemoryAllocation, "vk_matmul: workspace below one row of x");
        return;
    }
    for (int64_t t0 = 0; t0 < n; t0 += per) {
        int64_t nt = n - t0 < per ? n - t0 : per;
        uint16_t *xh = (uint16_t *)c->work;
        int32_t *rexp = (int32_t *)((char *)c->work + vk_mm_align((size_t)(nt * in) * 2));
        mm_act_kernel<<<(unsigned)nt, MM_ACT_THREADS, 0, c->stream>>>(
            xh, rexp, (const float *)x->data + t0 * in, in, 0);
        if (vk_note(c, (int)cudaGetLastError(), "vk_matmul: mm_act_kernel"))
            return;
        dim3 grid((unsigned)vk_mmq_grid_m(out), (unsigned)vk_mmq_grid_n(nt));
        (q4 ? mm_mmq_kernel<1> : mm_mmq_kernel<0>)<<<grid, VK_MMQ_THREADS, 0, c->stream>>>(
            (float *)y->data + t0 * out, xh, rexp, (const uint8_t *)w->data,
            (const uint16_t *)w->scale, nt, in, out, group, bt, bd);
        if (vk_note(c, (int)cudaGetLastError(), "vk_matmul: mm_mmq_kernel"))
            return;
    }
}

/* y[n, out] = x[n, in] @ W[out, in]^T (+ bias[out]): the path per W's type and n (the file
 * comment). Enqueues on c->stream; errors go to vk_note. */
extern "C" void vk_matmul(VkCtx *c, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *bias)
{
    assert(x->cols == w->cols && y->cols == w->rows && y->rows == x->rows);
    if (x->rows == 0 || w->rows == 0)
        return;
    if (w->type == QUANT_Q4 || w->type == QUANT_Q8)
        mm_quant(c, y, x, w, bias);
    else
        mm_dense(c, y, x, w, bias);
}
