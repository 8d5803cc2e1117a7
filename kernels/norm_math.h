/* norm_math: the per-element formulas of the norm and activation kernels
 * (kernels/norm.cu), written as ops_ref writes them (same operations, same order), so
 * the device differs from ops_ref only in the reduction order of the row sums and in the
 * math library (expf, tanhf, erff: the CUDA math library's, within 2 ulp; the build
 * must not use --use_fast_math). */
#ifndef VLQ_NORM_MATH_H
#define VLQ_NORM_MATH_H

#include "vk_hd.h"

#include <math.h>
#include <stdint.h>

/* RMSNorm's factor from the row's sum of squares over n columns. */
VK_HD float vk_rms_inv(float ss, int64_t n, float eps) { return 1.0f / sqrtf(ss / (float)n + eps); }
/* RMSNorm output: w * (x * inv). */
VK_HD float vk_rms_out(float x, float inv, float w) { return w * (x * inv); }

/* LayerNorm: the mean from the row sum, the factor from the sum of squared deviations
 * (biased variance), the output (x - mean) * inv * w + b. */
VK_HD float vk_ln_mean(float sum, int64_t n) { return sum / (float)n; }
VK_HD float vk_ln_inv(float var_sum, int64_t n, float eps)
{
    return 1.0f / sqrtf(var_sum / (float)n + eps);
}
VK_HD float vk_ln_out(float x, float mean, float inv, float w, float b)
{
    return (x - mean) * inv * w + b;
}

/* silu(g) * u. */
VK_HD float vk_swiglu(float g, float u) { return g / (1.0f + expf(-g)) * u; }

/* gelu_pytorch_tanh. */
VK_HD float vk_gelu_tanh(float v)
{
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
}

/* nn.GELU (exact erf). */
VK_HD float vk_gelu_erf(float v) { return 0.5f * v * (1.0f + erff(v * 0.7071067811865476f)); }

#endif
