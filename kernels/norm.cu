/* norm: the row norms and the elementwise activations of the CUDA backend (vk.h:
 * vk_rmsnorm, vk_layernorm, vk_add, vk_swiglu, vk_gelu_tanh, vk_gelu_erf).
 *
 * The per-element formulas are norm_math.h's (ops_ref's, operation for operation), the
 * 16-bit weights are widened by half_math.h's exact conversions; the only differences
 * from ops_ref are the order of the row sums (a strided per-thread sum, a butterfly
 * within each warp, the warp sums in warp order: tests/test_kmath_attn.c runs the same
 * order on the host) and the CUDA math library's expf/tanhf/erff/sqrtf (within 2 ulp
 * without --use_fast_math; sqrtf and division are correctly rounded under nvcc's
 * default -prec-sqrt=true -prec-div=true).
 *
 * Aliasing: y may be x (rmsnorm, layernorm), a or c (add), gate (swiglu): every element
 * is read and written by one thread, and a row norm's reads of the sums finish before
 * the barrier that precedes its writes. */
#include "vk.h"

#include "half_math.h"
#include "norm_math.h"

#define VK_NORM_NT 256 /* threads per row block, 8 warps */
#define VK_ELEM_NT 256

namespace
{

/* The sum of v over the block, the same value in every thread: a butterfly within each
 * warp, then the warp sums added in warp order. red holds VK_NORM_NT / 32 floats; the
 * leading barrier makes it reusable by back-to-back calls. */
__device__ float vk_block_sum(float v, float *red)
{
#pragma unroll
    for (int off = 16; off > 0; off >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, off);
    __syncthreads();
    if ((threadIdx.x & 31) == 0)
        red[threadIdx.x >> 5] = v;
    __syncthreads();
    float s = red[0];
#pragma unroll
    for (int w = 1; w < VK_NORM_NT / 32; w++)
        s += red[w];
    return s;
}

/* Reference: ops_ref rmsnorm. Tolerance: |y - ref| <= 1e-6 + 1e-5 |ref| (the sum of
 * squares in another order). Launch: one block of VK_NORM_NT threads per row. */
__global__ void __launch_bounds__(VK_NORM_NT)
    norm_rms(float *y, const float *x, const void *w, int wt, int64_t n, float eps)
{
    __shared__ float red[VK_NORM_NT / 32];
    const float *xr = x + (int64_t)blockIdx.x * n;
    float *yr = y + (int64_t)blockIdx.x * n;
    float ss = 0.0f;
    for (int64_t c = threadIdx.x; c < n; c += VK_NORM_NT)
        ss += xr[c] * xr[c];
    float inv = vk_rms_inv(vk_block_sum(ss, red), n, eps);
    for (int64_t c = threadIdx.x; c < n; c += VK_NORM_NT)
        yr[c] = vk_rms_out(xr[c], inv, vk_dense_elem(w, wt, c));
}

/* Reference: ops_ref layernorm (biased variance, two passes). Tolerance: |y - ref| <=
 * 1e-5 + 1e-5 |ref|. Launch: one block of VK_NORM_NT threads per row. */
__global__ void __launch_bounds__(VK_NORM_NT)
    norm_layer(float *y, const float *x, const void *w, int wt, const void *b, int bt, int64_t n,
               float eps)
{
    __shared__ float red[VK_NORM_NT / 32];
    const float *xr = x + (int64_t)blockIdx.x * n;
    float *yr = y + (int64_t)blockIdx.x * n;
    float sum = 0.0f;
    for (int64_t c = threadIdx.x; c < n; c += VK_NORM_NT)
        sum += xr[c];
    float mean = vk_ln_mean(vk_block_sum(sum, red), n), var = 0.0f;
    for (int64_t c = threadIdx.x; c < n; c += VK_NORM_NT)
        var += (xr[c] - mean) * (xr[c] - mean);
    float inv = vk_ln_inv(vk_block_sum(var, red), n, eps);
    for (int64_t c = threadIdx.x; c < n; c += VK_NORM_NT)
        yr[c] = vk_ln_out(xr[c], mean, inv, vk_dense_elem(w, wt, c),
                          b ? vk_dense_elem(b, bt, c) : 0.0f);
}

/* Reference: ops_ref add. Exact (one f32 addition). Launch: grid-stride, VK_ELEM_NT. */
__global__ void __launch_bounds__(VK_ELEM_NT)
    elem_add(float *y, const float *a, const float *c, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * VK_ELEM_NT + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * VK_ELEM_NT)
        y[i] = a[i] + c[i];
}

/* Reference: ops_ref swiglu. Tolerance: 4 ulp (expf within 2 ulp, then a division and
 * a product). Launch: grid-stride, VK_ELEM_NT threads. */
__global__ void __launch_bounds__(VK_ELEM_NT)
    elem_swiglu(float *y, const float *g, const float *u, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * VK_ELEM_NT + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * VK_ELEM_NT)
        y[i] = vk_swiglu(g[i], u[i]);
}

/* Reference: ops_ref gelu_tanh (erf: 0) and gelu_erf (1), in place. Tolerance: 4 ulp
 * plus the argument's conditioning (tanhf/erff within 2 ulp). Launch: grid-stride. */
__global__ void __launch_bounds__(VK_ELEM_NT) elem_gelu(float *x, int64_t n, int exact)
{
    for (int64_t i = (int64_t)blockIdx.x * VK_ELEM_NT + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * VK_ELEM_NT)
        x[i] = exact ? vk_gelu_erf(x[i]) : vk_gelu_tanh(x[i]);
}

/* Blocks for a grid-stride launch over n elements: enough for 16 blocks per SM. */
unsigned vk_elem_blocks(const VkCtx *c, int64_t n)
{
    int64_t want = (n + VK_ELEM_NT - 1) / VK_ELEM_NT,
            cap = (int64_t)(c->n_sm > 0 ? c->n_sm : 1) * 16;
    return (unsigned)(want < cap ? want : cap);
}

int vk_dense_type(const Tensor *t)
{
    return t && t->type <= QUANT_BF16;
}

} // namespace

extern "C" void vk_rmsnorm(VkCtx *c, Tensor *y, const Tensor *x, const Tensor *w, float eps)
{
    if (x->rows == 0)
        return;
    if (!vk_dense_type(w) || w->rows * w->cols != x->cols || y->cols != x->cols ||
        y->rows != x->rows || x->rows > 0x7fffffff)
        return (void)vk_note(c, cudaErrorInvalidValue, "rmsnorm: weight type or shapes");
    norm_rms<<<(unsigned)x->rows, VK_NORM_NT, 0, c->stream>>>(
        (float *)y->data, (const float *)x->data, w->data, (int)w->type, x->cols, eps);
    vk_note(c, cudaGetLastError(), "rmsnorm");
}

extern "C" void vk_layernorm(VkCtx *c, Tensor *y, const Tensor *x, const Tensor *w,
                             const Tensor *bias, float eps)
{
    if (x->rows == 0)
        return;
    if (!vk_dense_type(w) || w->rows * w->cols != x->cols || (bias && !vk_dense_type(bias)) ||
        (bias && bias->rows * bias->cols != x->cols) || y->cols != x->cols || y->rows != x->rows ||
        x->rows > 0x7fffffff)
        return (void)vk_note(c, cudaErrorInvalidValue, "layernorm: weight type or shapes");
    norm_layer<<<(unsigned)x->rows, VK_NORM_NT, 0, c->stream>>>(
        (float *)y->data, (const float *)x->data, w->data, (int)w->type, bias ? bias->data : NULL,
        bias ? (int)bias->type : 0, x->cols, eps);
    vk_note(c, cudaGetLastError(), "layernorm");
}

extern "C" void vk_add(VkCtx *c, Tensor *y, const Tensor *a, const Tensor *b)
{
    int64_t n = y->rows * y->cols;
    if (n == 0)
        return;
    elem_add<<<vk_elem_blocks(c, n), VK_ELEM_NT, 0, c->stream>>>(
        (float *)y->data, (const float *)a->data, (const float *)b->data, n);
    vk_note(c, cudaGetLastError(), "add");
}

extern "C" void vk_swiglu(VkCtx *c, Tensor *y, const Tensor *gate, const Tensor *up)
{
    int64_t n = y->rows * y->cols;
    if (n == 0)
        return;
    elem_swiglu<<<vk_elem_blocks(c, n), VK_ELEM_NT, 0, c->stream>>>(
        (float *)y->data, (const float *)gate->data, (const float *)up->data, n);
    vk_note(c, cudaGetLastError(), "swiglu");
}

extern "C" void vk_gelu_tanh(VkCtx *c, Tensor *x)
{
    int64_t n = x->rows * x->cols;
    if (n == 0)
        return;
    elem_gelu<<<vk_elem_blocks(c, n), VK_ELEM_NT, 0, c->stream>>>((float *)x->data, n, 0);
    vk_note(c, cudaGetLastError(), "gelu_tanh");
}

extern "C" void vk_gelu_erf(VkCtx *c, Tensor *x)
{
    int64_t n = x->rows * x->cols;
    if (n == 0)
        return;
    elem_gelu<<<vk_elem_blocks(c, n), VK_ELEM_NT, 0, c->stream>>>((float *)x->data, n, 1);
    vk_note(c, cudaGetLastError(), "gelu_erf");
}
