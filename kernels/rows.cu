/* rows: the row gathers, scatters and argmax of the CUDA backend (vk_embed, vk_embed_mix4,
 * vk_set_rows, vk_add_rows, vk_get_rows, vk_argmax). CPU references: ref_embed,
 * ref_embed_mix4, ref_set_rows, ref_add_rows, ref_get_rows, ref_argmax in src/ops_ref.c.
 *
 * Tolerance: none: every kernel here is exact, bit for bit with ops_ref. The element
 * access and f16/bf16 conversions are kernels/q4_math.h's (bk_elem's and half.h's twins,
 * round to nearest even), embed_mix4's rounded sum and argmax's combine kernels/rows_math.h's,
 * all compared with ops_ref on the host by tests/test_kmath_mm.c.
 *
 * Host arrays (ids, idx, w, rows) are copied to the device with vk_stage before the launch;
 * a failed stage (too large for the ring) is noted and the op skipped. Launchers never
 * allocate; only vk_argmax waits for the stream (its output is on the host). */
#include "vk.h"

#include "rows_math.h"

#include <assert.h>
#include <stdint.h>

#define ROWS_THREADS 256

/* A 2-D grid: x over the columns in blocks of ROWS_THREADS, y over the n rows (at most
 * 65535 per launch: the launchers loop over row slices). */
#define ROWS_MAX_Y 65535

static dim3 rows_grid(int64_t cols, int n)
{
    return dim3((unsigned)((cols + ROWS_THREADS - 1) / ROWS_THREADS), (unsigned)n);
}

/* y[i, :] = dequant(table[ids[i], :]). Reference: ref_embed (exact). Launch: rows_grid(d,
 * n) of ROWS_THREADS, one element per thread. */
static __global__ void rows_embed_kernel(float *y, int64_t d, int ttype, const void *tdata,
                                         const void *tscale, int group, const int32_t *ids)
{
    int64_t c = (int64_t)blockIdx.x * ROWS_THREADS + threadIdx.x;
    if (c < d)
        y[blockIdx.y * d + c] =
            vk_elem(ttype, tdata, tscale, group, (int64_t)ids[blockIdx.y] * d + c);
}

/* y[i, :] = sum_k round(w[i][k] * table[idx[i][k], :]). Reference: ref_embed_mix4
 * (exact: vk_mix4). Launch: rows_grid(d, n) of ROWS_THREADS. */
static __global__ void rows_mix4_kernel(float *y, int64_t d, int ttype, const void *tdata,
                                        const void *tscale, int group, const int32_t *idx,
                                        const float *w)
{
    int64_t c = (int64_t)blockIdx.x * ROWS_THREADS + threadIdx.x;
    if (c < d)
        y[blockIdx.y * d + c] =
            vk_mix4(ttype, tdata, tscale, group, d, idx + 4 * blockIdx.y, w + 4 * blockIdx.y, c);
}

/* dst[rows[i], :] = src[i, :], rounded to dst's type. Reference: ref_set_rows (exact:
 * vk_f32_to_f16 / vk_f32_to_bf16, round to nearest even). Launch: rows_grid(d, n). */
static __global__ void rows_set_kernel(void *dst, int dtype, const float *src, int64_t d,
                                       const int32_t *rows)
{
    int64_t c = (int64_t)blockIdx.x * ROWS_THREADS + threadIdx.x;
    if (c >= d)
        return;
    float f = src[blockIdx.y * d + c];
    int64_t e = (int64_t)rows[blockIdx.y] * d + c;
    if (dtype == QUANT_F16)
        ((uint16_t *)dst)[e] = vk_f32_to_f16(f);
    else if (dtype == QUANT_BF16)
        ((uint16_t *)dst)[e] = vk_f32_to_bf16(f);
    else
        ((float *)dst)[e] = f;
}

/* dst[rows[i], :] += src[i, :] for distinct rows. Reference: ref_add_rows (exact: one add
 * per element). Launch: rows_grid(d, n). */
static __global__ void rows_add_kernel(float *dst, const float *src, int64_t d, const int32_t *rows)
{
    int64_t c = (int64_t)blockIdx.x * ROWS_THREADS + threadIdx.x;
    if (c < d)
        dst[(int64_t)rows[blockIdx.y] * d + c] += src[blockIdx.y * d + c];
}

/* The same when rows may repeat: each thread owns a column and adds the n rows in order,
 * as ref_add_rows does (so a repeated row gets its additions in the same order). Launch:
 * ceil(d / ROWS_THREADS) blocks of ROWS_THREADS. */
static __global__ void rows_add_seq_kernel(float *dst, const float *src, int64_t d,
                                           const int32_t *rows, int n)
{
    int64_t c = (int64_t)blockIdx.x * ROWS_THREADS + threadIdx.x;
    if (c >= d)
        return;
    for (int i = 0; i < n; i++)
        dst[(int64_t)rows[i] * d + c] += src[(int64_t)i * d + c];
}

/* dst[i, :] = src[rows[i], :]. Reference: ref_get_rows (exact). Launch: rows_grid(d, n). */
static __global__ void rows_get_kernel(float *dst, const float *src, int64_t d, const int32_t *rows)
{
    int64_t c = (int64_t)blockIdx.x * ROWS_THREADS + threadIdx.x;
    if (c < d)
        dst[blockIdx.y * d + c] = src[(int64_t)rows[blockIdx.y] * d + c];
}

/* out[i] = first index of the maximum of x[i, :]. Reference: ref_argmax (exact: the
 * maximum under vk_argmax_better's total order, the same whatever the tree). Launch: one
 * block of ARGMAX_THREADS per row: a strided scan per thread, a shuffle butterfly per
 * warp, then warp 0 over the warps' winners. */
#define ARGMAX_THREADS 1024
static __global__ void __launch_bounds__(ARGMAX_THREADS)
    rows_argmax_kernel(int32_t *out, const float *x, int64_t cols)
{
    __shared__ float sv[ARGMAX_THREADS / 32];
    __shared__ int64_t si[ARGMAX_THREADS / 32];
    const float *xr = x + (int64_t)blockIdx.x * cols;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float bv = 0.0f;
    int64_t bi = -1; /* -1: no candidate yet (threads past cols) */
    for (int64_t c = threadIdx.x; c < cols; c += ARGMAX_THREADS) {
        float v = xr[c];
        if (bi < 0 || vk_argmax_better(v, c, bv, bi))
            bv = v, bi = c;
    }
    for (int off = 16; off > 0; off >>= 1) {
        float v = __shfl_xor_sync(0xffffffffu, bv, off);
        int64_t i = __shfl_xor_sync(0xffffffffu, bi, off);
        if (i >= 0 && (bi < 0 || vk_argmax_better(v, i, bv, bi)))
            bv = v, bi = i;
    }
    if (lane == 0)
        sv[warp] = bv, si[warp] = bi;
    __syncthreads();
    if (warp == 0) {
        bv = sv[lane], bi = si[lane]; /* ARGMAX_THREADS / 32 == 32 */
        for (int off = 16; off > 0; off >>= 1) {
            float v = __shfl_xor_sync(0xffffffffu, bv, off);
            int64_t i = __shfl_xor_sync(0xffffffffu, bi, off);
            if (i >= 0 && (bi < 0 || vk_argmax_better(v, i, bv, bi)))
                bv = v, bi = i;
        }
        if (lane == 0)
            out[blockIdx.x] = (int32_t)(bi < 0 ? 0 : bi);
    }
}

/* ---- launchers ---- */

/* y[n, d] = dequant(table[ids[i], :]), ids on the host, table any type. */
extern "C" void vk_embed(VkCtx *c, Tensor *y, const Tensor *table, const int32_t *ids, int n)
{
    assert(y->cols == table->cols && y->rows >= n);
    for (int i0 = 0; i0 < n; i0 += ROWS_MAX_Y) {
        int m = n - i0 < ROWS_MAX_Y ? n - i0 : ROWS_MAX_Y;
        const int32_t *dids = (const int32_t *)vk_stage(c, ids + i0, (size_t)m * 4);
        if (!dids)
            return;
        rows_embed_kernel<<<rows_grid(y->cols, m), ROWS_THREADS, 0, c->stream>>>(
            (float *)y->data + (int64_t)i0 * y->cols, y->cols, (int)table->type, table->data,
            table->scale, table->group, dids);
        if (vk_note(c, (int)cudaGetLastError(), "vk_embed: rows_embed_kernel"))
            return;
    }
}

/* y[n, d] = sum_k round(w[i][k] * table[idx[i][k], :]), idx and w [n][4] on the host. */
extern "C" void vk_embed_mix4(VkCtx *c, Tensor *y, const Tensor *table, const int32_t *idx,
                              const float *w, int n)
{
    assert(y->cols == table->cols && y->rows >= n);
    for (int i0 = 0; i0 < n; i0 += ROWS_MAX_Y) {
        int m = n - i0 < ROWS_MAX_Y ? n - i0 : ROWS_MAX_Y;
        const int32_t *didx = (const int32_t *)vk_stage(c, idx + 4 * (int64_t)i0, (size_t)m * 16);
        const float *dw =
            didx ? (const float *)vk_stage(c, w + 4 * (int64_t)i0, (size_t)m * 16) : NULL;
        if (!dw)
            return;
        rows_mix4_kernel<<<rows_grid(y->cols, m), ROWS_THREADS, 0, c->stream>>>(
            (float *)y->data + (int64_t)i0 * y->cols, y->cols, (int)table->type, table->data,
            table->scale, table->group, didx, dw);
        if (vk_note(c, (int)cudaGetLastError(), "vk_embed_mix4: rows_mix4_kernel"))
            return;
    }
}

/* dst[rows[i], :] = src[i, :] (src F32; dst F32, F16 or BF16, rounded to nearest even). */
extern "C" void vk_set_rows(VkCtx *c, Tensor *dst, const int32_t *rows, const Tensor *src, int n)
{
    assert(dst->cols == src->cols && dst->type <= QUANT_BF16);
    for (int i0 = 0; i0 < n; i0 += ROWS_MAX_Y) {
        int m = n - i0 < ROWS_MAX_Y ? n - i0 : ROWS_MAX_Y;
        const int32_t *drows = (const int32_t *)vk_stage(c, rows + i0, (size_t)m * 4);
        if (!drows)
            return;
        rows_set_kernel<<<rows_grid(dst->cols, m), ROWS_THREADS, 0, c->stream>>>(
            dst->data, (int)dst->type, (const float *)src->data + (int64_t)i0 * src->cols,
            dst->cols, drows);
        if (vk_note(c, (int)cudaGetLastError(), "vk_set_rows: rows_set_kernel"))
            return;
    }
}

/* dst[rows[i], :] += src[i, :]. Strictly increasing rows (the visual rows of a sequence)
 * go in parallel; any other order runs column by column in row order, exactly as
 * ref_add_rows, so a repeated row is right too. */
extern "C" void vk_add_rows(VkCtx *c, Tensor *dst, const int32_t *rows, const Tensor *src, int n)
{
    assert(dst->cols == src->cols);
    if (n <= 0)
        return;
    int increasing = 1;
    for (int i = 1; i < n && increasing; i++)
        increasing = rows[i] > rows[i - 1];
    if (!increasing) {
        const int32_t *drows = (const int32_t *)vk_stage(c, rows, (size_t)n * 4);
        if (!drows)
            return;
        unsigned blocks = (unsigned)((dst->cols + ROWS_THREADS - 1) / ROWS_THREADS);
        rows_add_seq_kernel<<<blocks, ROWS_THREADS, 0, c->stream>>>(
            (float *)dst->data, (const float *)src->data, dst->cols, drows, n);
        vk_note(c, (int)cudaGetLastError(), "vk_add_rows: rows_add_seq_kernel");
        return;
    }
    for (int i0 = 0; i0 < n; i0 += ROWS_MAX_Y) {
        int m = n - i0 < ROWS_MAX_Y ? n - i0 : ROWS_MAX_Y;
        const int32_t *drows = (const int32_t *)vk_stage(c, rows + i0, (size_t)m * 4);
        if (!drows)
            return;
        rows_add_kernel<<<rows_grid(dst->cols, m), ROWS_THREADS, 0, c->stream>>>(
            (float *)dst->data, (const float *)src->data + (int64_t)i0 * src->cols, dst->cols,
            drows);
        if (vk_note(c, (int)cudaGetLastError(), "vk_add_rows: rows_add_kernel"))
            return;
    }
}

/* dst[i, :] = src[rows[i], :] (F32). */
extern "C" void vk_get_rows(VkCtx *c, Tensor *dst, const Tensor *src, const int32_t *rows, int n)
{
    assert(dst->cols == src->cols);
    for (int i0 = 0; i0 < n; i0 += ROWS_MAX_Y) {
        int m = n - i0 < ROWS_MAX_Y ? n - i0 : ROWS_MAX_Y;
        const int32_t *drows = (const int32_t *)vk_stage(c, rows + i0, (size_t)m * 4);
        if (!drows)
            return;
        rows_get_kernel<<<rows_grid(dst->cols, m), ROWS_THREADS, 0, c->stream>>>(
            (float *)dst->data + (int64_t)i0 * dst->cols, (const float *)src->data, dst->cols,
            drows);
        if (vk_note(c, (int)cudaGetLastError(), "vk_get_rows: rows_get_kernel"))
            return;
    }
}

/* out[i] = first index of the maximum of row i of x[n, V], out on the host: the result
 * goes through c->work and this call waits for the stream. On a device error out is left
 * as it was and the error is noted (the table's sync reports it). */
extern "C" void vk_argmax(VkCtx *c, const Tensor *x, int32_t *out)
{
    int64_t n = x->rows;
    if (n <= 0)
        return;
    if ((size_t)n * 4 > c->work_bytes) {
        vk_note(c, (int)cudaErrorMemoryAllocation, "vk_argmax: more rows than the workspace");
        return;
    }
    int32_t *dout = (int32_t *)c->work;
    for (int64_t i0 = 0; i0 < n; i0 += 0x7fffffff) {
        int64_t m = n - i0 < 0x7fffffff ? n - i0 : 0x7fffffff;
        rows_argmax_kernel<<<(unsigned)m, ARGMAX_THREADS, 0, c->stream>>>(
            dout + i0, (const float *)x->data + i0 * x->cols, x->cols);
        if (vk_note(c, (int)cudaGetLastError(), "vk_argmax: rows_argmax_kernel"))
            return;
    }
    if (vk_note(c,
                (int)cudaMemcpyAsync(out, dout, (size_t)n * 4, cudaMemcpyDeviceToHost, c->stream),
                "vk_argmax: copy to the host"))
        return;
    vk_note(c, (int)cudaStreamSynchronize(c->stream), "vk_argmax: sync");
}
