/* rope: the rotary embeddings of the CUDA backend (vk.h: vk_mrope, vk_rope2d), in place.
 *
 * The index and angle arithmetic is rope_math.h's: the inverse frequencies are computed
 * on the host with ops_ref's formula (bit-equal) and staged with the positions; a block
 * forms its row's angles once (pos * inv_freq in f32, as ops_ref), takes cosf/sinf of
 * them into shared memory and rotates every head's pairs (d, d + head_dim/2). */
#include "vk.h"

#include "rope_math.h"

#define VK_ROPE_NT 128
#define VK_ROPE_HALF_MAX 512 /* head_dim up to 1024, as ops_ref */

namespace
{

/* Reference: ops_ref mrope (mode 0) and rope2d (mode 1). Tolerance: |x - ref| <= 2e-6 +
 * 1e-5 |ref| for |pos| < 2^16 (cosf/sinf within 2 ulp of an exact angle, and FMA in the
 * rotation). Launch: one block of VK_ROPE_NT threads per row of x.
 * mrope: pos [3][n] (t, h, w rows), inv [head_dim / 2], the axis of frequency j by
 * vk_mrope_axis; rope2d: pos [n][2] (row, col), inv [head_dim / 4] over dim head_dim / 2, the axis
 * and frequency of angle j by vk_rope2d_axis / vk_rope2d_freq. */
__global__ void __launch_bounds__(VK_ROPE_NT)
    rope_rows(float *x, const int32_t *pos, const float *inv, int64_t n, int n_heads, int hd,
              int mode, int sec1, int sec2)
{
    __shared__ float cs[VK_ROPE_HALF_MAX], sn[VK_ROPE_HALF_MAX];
    const int64_t row = blockIdx.x;
    const int nhalf = hd / 2, quarter = hd / 4;
    for (int j = threadIdx.x; j < nhalf; j += VK_ROPE_NT) {
        float ang;
        if (mode == 0)
            ang = vk_rope_angle(pos[(int64_t)vk_mrope_axis(j, sec1, sec2) * n + row], inv[j]);
        else
            ang = vk_rope_angle(pos[row * 2 + vk_rope2d_axis(j, quarter)],
                                inv[vk_rope2d_freq(j, quarter)]);
        cs[j] = cosf(ang);
        sn[j] = sinf(ang);
    }
    __syncthreads();
    float *xr = x + row * (int64_t)n_heads * hd;
    for (int idx = threadIdx.x; idx < n_heads * nhalf; idx += VK_ROPE_NT) {
        int h = idx / nhalf, d = idx % nhalf;
        float x0 = xr[h * hd + d], x1 = xr[h * hd + d + nhalf];
        vk_rope_rotate(&x0, &x1, cs[d], sn[d]);
        xr[h * hd + d] = x0;
        xr[h * hd + d + nhalf] = x1;
    }
}

/* Stage pos[npos] and inv[ninv]; launch. */
void vk_rope_launch(VkCtx *c, Tensor *x, const int32_t *pos, size_t npos, const float *inv,
                    int ninv, int n_heads, int hd, int mode, int sec1, int sec2, const char *what)
{
    const int32_t *dpos = (const int32_t *)vk_stage(c, pos, npos * sizeof(int32_t));
    const float *dinv = (const float *)vk_stage(c, inv, (size_t)ninv * sizeof(float));
    if (!dpos || !dinv)
        return;
    rope_rows<<<(unsigned)x->rows, VK_ROPE_NT, 0, c->stream>>>(
        (float *)x->data, dpos, dinv, x->rows, n_heads, hd, mode, sec1, sec2);
    vk_note(c, cudaGetLastError(), what);
}

} // namespace

extern "C" void vk_mrope(VkCtx *c, Tensor *x, const int32_t *pos, int n_heads, const int section[3],
                         float theta)
{
    if (x->rows == 0)
        return;
    int hd = n_heads > 0 ? (int)(x->cols / n_heads) : 0, nhalf = hd / 2;
    if (n_heads <= 0 || x->cols % n_heads || hd % 2 || nhalf > VK_ROPE_HALF_MAX ||
        x->rows > 0x7fffffff)
        return (void)vk_note(c, cudaErrorInvalidValue, "mrope: head_dim");
    float inv[VK_ROPE_HALF_MAX];
    for (int j = 0; j < nhalf; j++)
        inv[j] = vk_rope_inv_freq(theta, j, hd);
    vk_rope_launch(c, x, pos, (size_t)x->rows * 3, inv, nhalf, n_heads, hd, 0, section[1],
                   section[2], "mrope");
}

extern "C" void vk_rope2d(VkCtx *c, Tensor *x, const int32_t *pos, int n_heads, float theta)
{
    if (x->rows == 0)
        return;
    int hd = n_heads > 0 ? (int)(x->cols / n_heads) : 0, nhalf = hd / 2, quarter = hd / 4;
    /* head_dim % 4 == 0: ops_ref leaves the last angle unset otherwise */
    if (n_heads <= 0 || x->cols % n_heads || hd % 4 || nhalf > VK_ROPE_HALF_MAX ||
        x->rows > 0x7fffffff)
        return (void)vk_note(c, cudaErrorInvalidValue, "rope2d: head_dim");
    float inv[VK_ROPE_HALF_MAX / 2];
    for (int j = 0; j < quarter; j++)
        inv[j] = vk_rope_inv_freq(theta, j, nhalf);
    vk_rope_launch(c, x, pos, (size_t)x->rows * 2, inv, quarter, n_heads, hd, 1, 0, 0, "rope2d");
}
