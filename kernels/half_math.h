/* half_math: f16 and bf16 to f32 (exact widening) and the dense-element read of an
 * F32/F16/BF16 array, for kernels and host tests alike (VK_HD): the same integer code
 * runs on both sides; only the final bit reinterpretation differs (__uint_as_float on the
 * device, memcpy on the host), so a host test over all 65,536 codes proves the device's
 * conversion. Equal to half_f16_to_f32 / half_bf16_to_f32 (src/half.h) bit for bit. */
#ifndef VLQ_HALF_MATH_H
#define VLQ_HALF_MATH_H

#include "vk_hd.h"

#include <stdint.h>
#ifndef __CUDA_ARCH__
#include <string.h>
#endif

VK_HD float vk_bits_f32(uint32_t u)
{
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, 4);
    return f;
#endif
}

VK_HD float vk_bf16_to_f32(uint16_t h) { return vk_bits_f32((uint32_t)h << 16); }

VK_HD float vk_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) /* infinity or NaN (payload kept) */
        return vk_bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) { /* zero or subnormal: man * 2^-24, exact in f32 */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return vk_bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

/* The dense element types, numbered as QuantType (src/quant.h): F32 0, F16 1, BF16 2. */
#define VK_T_F32 0
#define VK_T_F16 1
#define VK_T_BF16 2

/* Element i of a dense array of type t as f32 (bk_elem's dense cases). */
VK_HD float vk_dense_elem(const void *p, int t, int64_t i)
{
    if (t == VK_T_F16)
        return vk_f16_to_f32(((const uint16_t *)p)[i]);
    if (t == VK_T_BF16)
        return vk_bf16_to_f32(((const uint16_t *)p)[i]);
    return ((const float *)p)[i];
}

#endif
