/* rope_math: the rotary embeddings' index and angle arithmetic (kernels/rope.cu), as
 * ops_ref mrope and rope2d compute it.
 *
 * The inverse frequencies are computed on the host by vk_rope_inv_freq (the formula and
 * the libm powf of ops_ref, so bit-equal to it) and staged; the kernels form the angle
 * pos * inv_freq in f32 exactly as ops_ref does, and differ from it only in cosf/sinf
 * (the CUDA math library's, within 2 ulp, full range reduction) and in the rotation's
 * fused multiply-adds. */
#ifndef VLQ_ROPE_MATH_H
#define VLQ_ROPE_MATH_H

#include "vk_hd.h"

#include <math.h>

/* inv_freq[j] = 1 / theta^(2j/dim) in f32 (the HF rotary init; ops_ref's ref_inv_freq). */
VK_HD float vk_rope_inv_freq(float theta, int j, int dim)
{
    return 1.0f / powf(theta, (float)(2 * j) / (float)dim);
}

/* Interleaved MRoPE: the position row (0 t, 1 h, 2 w) of frequency j: h when j % 3 == 1
 * and j < 3 * section[1], w when j % 3 == 2 and j < 3 * section[2], else t. */
VK_HD int vk_mrope_axis(int j, int sec1, int sec2)
{
    return (j % 3 == 1 && j < 3 * sec1) ? 1 : (j % 3 == 2 && j < 3 * sec2) ? 2 : 0;
}

/* Rope2d: angle j < head_dim/2 uses frequency j % quarter of the half-dim table and the
 * row position (axis 0) for j < quarter, the column (axis 1) after. */
VK_HD int vk_rope2d_axis(int j, int quarter) { return j / quarter; }
VK_HD int vk_rope2d_freq(int j, int quarter) { return j % quarter; }

/* The angle of a position under an inverse frequency, in f32 as ops_ref forms it. */
VK_HD float vk_rope_angle(int pos, float inv) { return (float)pos * inv; }

/* rotate_half on the pair (x[d], x[d + half]) by the angle whose cos and sin are c, s. */
VK_HD void vk_rope_rotate(float *x0, float *x1, float c, float s)
{
    float a = *x0, b = *x1;
    *x0 = a * c - b * s;
    *x1 = b * c + a * s;
}

#endif
