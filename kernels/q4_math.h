/* q4_math: the arithmetic of the matmul and rows kernels (kernels/matmul.cu, rows.cu) as
 * VK_HD functions, so tests/test_kmath_mm.c compiles the very code the kernels run with
 * gcc and compares it against the plain C (src/half.h, bk_elem, ops_ref).
 *
 * Contents: bit casts and IEEE-exact f32 mul/add (no FMA contraction, so embed_mix4 matches
 * ops_ref bit for bit); f16 and bf16 conversions with round to nearest even (bit-exact with
 * half.h, NaN included); the element of any weight type (bk_elem's twin); the Q4/Q8 unpack
 * of a 16-byte chunk to exact floats (the GEMV inner step) and to f16 (the GEMM's weight
 * tiles); the GEMV's per-lane step on one chunk; the activation scaling of the tensor-core
 * path. The rows kernels' own arithmetic (embed_mix4, argmax) is in rows_math.h.
 *
 * C only (no C++), no globals, no allocation. */
#ifndef VLQ_Q4_MATH_H
#define VLQ_Q4_MATH_H

#include "../src/quant.h"
#include "vk_hd.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#include <cuda_fp16.h>
#endif

/* unroll hint for the device pass only (the host compilers warn on an unknown pragma) */
#ifdef __CUDA_ARCH__
#define VK_UNROLL _Pragma("unroll")
#else
#define VK_UNROLL
#endif

/* ---- bits and IEEE-exact arithmetic ---- */

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

VK_HD uint32_t vk_f32_bits(float f)
{
#ifdef __CUDA_ARCH__
    return __float_as_uint(f);
#else
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
#endif
}

/* a*b and a+b rounded once each: nvcc contracts a*b+c into an FMA (one rounding) unless
 * told not to, which would differ from ops_ref's two roundings. */
VK_HD float vk_mul_rn(float a, float b)
{
#ifdef __CUDA_ARCH__
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}

VK_HD float vk_add_rn(float a, float b)
{
#ifdef __CUDA_ARCH__
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}

/* ---- f16 / bf16 (bit-exact with src/half.h) ---- */

VK_HD float vk_bf16_to_f32(uint16_t h)
{
    return vk_bits_f32((uint32_t)h << 16);
}

/* f rounded to nearest even bf16; NaN stays a quiet NaN with its sign and top payload. */
VK_HD uint16_t vk_f32_to_bf16(float f)
{
    uint32_t u = vk_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

VK_HD float vk_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f)
        return vk_bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) { /* zero or subnormal: man * 2^-24, exact in f32 */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return vk_bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

/* f rounded to nearest even f16 (overflow to infinity, NaN to 0x7e00 with f's sign), by
 * integer arithmetic, so host and device agree without relying on either's cvt. */
VK_HD uint16_t vk_f32_to_f16(float f)
{
    uint32_t u = vk_f32_bits(f), sign = (u >> 16) & 0x8000, a = u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00);
    if (a >= 0x477ff000u) /* rounds to >= 65520: infinity */
        return (uint16_t)(sign | 0x7c00);
    if (a < 0x38800000u) { /* below 2^-14: subnormal or zero */
        /* a * 2^24 is exact (a is at most 24 significant bits above 2^-149) and below 1024;
         * round it to an integer, half to even */
        uint32_t e = a >> 23, m = (a & 0x7fffffu) | (e ? 0x800000u : 0);
        int sh = (int)(e ? e : 1) - 127 + 24 - 23; /* value = m * 2^(e-150); in 2^-24 units */
        /* sh <= 0 here; shift right by -sh with round to nearest even */
        int rs = -sh;
        if (rs > 24)
            return (uint16_t)sign; /* below 2^-25: rounds to zero */
        uint32_t q = m >> rs, rem = m & ((1u << rs) - 1), halfway = 1u << (rs - 1);
        if (rem > halfway || (rem == halfway && (q & 1)))
            q++;
        return (uint16_t)(sign | q);
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1); /* round to nearest even at bit 13 */
    return (uint16_t)(sign | (((r >> 23) - 112) << 10) | ((r >> 13) & 0x3ff));
}

VK_HD float vk_round_bf16(float f)
{
    return vk_bf16_to_f32(vk_f32_to_bf16(f));
}
VK_HD float vk_round_f16(float f)
{
    return vk_f16_to_f32(vk_f32_to_f16(f));
}

/* ---- element access (bk_elem's twin) ---- */

/* Element i (= r*cols + c) of a tensor of type t: data, scale (Q4/Q8) and group as in
 * src/quant.h. The slow, general path: embed, bias, the tests. */
VK_HD float vk_elem(int t, const void *data, const void *scale, int group, int64_t i)
{
    switch (t) {
    case QUANT_F32:
        return ((const float *)data)[i];
    case QUANT_F16:
        return vk_f16_to_f32(((const uint16_t *)data)[i]);
    case QUANT_BF16:
        return vk_bf16_to_f32(((const uint16_t *)data)[i]);
    case QUANT_Q8: {
        float s = vk_f16_to_f32(((const uint16_t *)scale)[i / group]);
        return s * (float)((const int8_t *)data)[i];
    }
    case QUANT_Q4: {
        int64_t g = i / group, j = i % group, half = group / 2;
        uint8_t byte = ((const uint8_t *)data)[g * half + (j % half)];
        int q = j < half ? (byte & 0xf) : (byte >> 4);
        float s = vk_f16_to_f32(((const uint16_t *)scale)[g]);
        return s * (float)(q - 8);
    }
    }
    return 0.0f;
}

/* ---- Q4/Q8 unpack of one 16-byte chunk (four little-endian words q[4]) ----
 * A byte b becomes the float 2^23 + b by placing it under the exponent of 2^23 (exact, no
 * int-to-float conversion), and one subtraction removes 2^23 and the offset, exactly. On
 * the device the placing is one PRMT (byte permute) per weight: result byte 0 = byte b of
 * w, bytes 1, 2 = 0x00, byte 3 = 0x4b, taken from the pair {VK_MAGIC, w}; the host does the
 * same with shifts and masks, and tests/test_kmath_mm.c checks VK_MAGIC_SEL against PTX's
 * definition of prmt. Integer work per Q4 weight: 1 PRMT + 3/8 of a mask and shift, so
 * the unpack stays under the INT32 pipe's rate at memory speed. */

#define VK_MAGIC 0x4b000000u                      /* the bits of 2^23 */
#define VK_MAGIC_SEL(b) (0x7540u | (unsigned)(b)) /* prmt selector: byte b of w, 0, 0, 0x4b */

/* 2^23 + byte b of w, as a float. */
VK_HD float vk_magic_byte(uint32_t w, int b)
{
#ifdef __CUDA_ARCH__
    return __uint_as_float(__byte_perm(w, VK_MAGIC, VK_MAGIC_SEL(b)));
#else
    return vk_bits_f32(VK_MAGIC | ((w >> (8 * b)) & 0xffu));
#endif
}

/* Q4: w[j] = low nibble of byte j - 8, w[16 + j] = high nibble of byte j - 8 (j < 16):
 * in a group, byte b holds elements b and b + group/2 (quant.h), so w[0..15] are 16
 * consecutive elements and w[16..31] the 16 elements group/2 further. */
VK_HD void vk_q4_unpack32(const uint32_t q[4], float w[32])
{
    VK_UNROLL
    for (int i = 0; i < 4; i++) {
        uint32_t lo = q[i] & 0x0f0f0f0fu, hi = (q[i] >> 4) & 0x0f0f0f0fu;
        VK_UNROLL
        for (int b = 0; b < 4; b++) {
            w[4 * i + b] = vk_magic_byte(lo, b) - 8388616.0f;
            w[16 + 4 * i + b] = vk_magic_byte(hi, b) - 8388616.0f;
        }
    }
}

/* Q8: w[j] = (int8) byte j, j < 16 (16 consecutive elements of one group). */
VK_HD void vk_q8_unpack16(const uint32_t q[4], float w[16])
{
    VK_UNROLL
    for (int i = 0; i < 4; i++) {
        uint32_t u = q[i] ^ 0x80808080u; /* q + 128 as unsigned bytes */
        VK_UNROLL
        for (int b = 0; b < 4; b++)
            w[4 * i + b] = vk_magic_byte(u, b) - 8388736.0f;
    }
}

/* ---- the GEMV (decode) ----
 * x of nt token rows sits in shared memory, one k-chunk of kc columns per token (token t
 * at xs + t*kc), float4-swizzled: the float4 p of a token's row is stored at p ^ ((p>>3)&7),
 * so the 8 lanes of a quarter-warp reading 8 consecutive 32-column spans (Q4 at group 32)
 * hit 8 different 16-byte bank groups. kc is a multiple of 32, so the swizzle stays
 * inside the row. */
VK_HD int vk_xs_idx(int e)
{
    int p = e >> 2;
    return ((p ^ ((p >> 3) & 7)) << 2) | (e & 3);
}

/* The 4 floats of xs at logical columns e .. e+3 (e % 4 == 0), one 16-byte load on the
 * device. */
VK_HD void vk_xs_ld4(const float *xs, int e, float v[4])
{
    const float *p = xs + vk_xs_idx(e);
#ifdef __CUDA_ARCH__
    float4 f = *(const float4 *)p;
    v[0] = f.x, v[1] = f.y, v[2] = f.z, v[3] = f.w;
#else
    v[0] = p[0], v[1] = p[1], v[2] = p[2], v[3] = p[3];
#endif
}

/* One lane's work on one Q4 chunk (16 bytes = 32 weights) of rpw weight rows that share
 * its columns: acc[r*nt + t] += s[r] * sum_j (q_rj - 8) x_t[col_j], the chunk's low
 * nibbles at local columns e_lo .. e_lo+15 and its high ones at e_hi .. e_hi+15.
 * x is read once per token for all rows (the rows share it: half the shared-memory
 * traffic of a row at a time). */
VK_HD void vk_gemv_q4_step(const uint32_t *q, const float *s, int rpw, const float *xs, int kc,
                           int nt, int e_lo, int e_hi, float *acc)
{
    float w[4][32];
    VK_UNROLL
    for (int r = 0; r < rpw; r++)
        vk_q4_unpack32(q + 4 * r, w[r]);
    VK_UNROLL
    for (int t = 0; t < nt; t++) {
        float x[32];
        VK_UNROLL
        for (int j = 0; j < 16; j += 4) {
            vk_xs_ld4(xs + t * kc, e_lo + j, x + j);
            vk_xs_ld4(xs + t * kc, e_hi + j, x + 16 + j);
        }
        VK_UNROLL
        for (int r = 0; r < rpw; r++) {
            float d = 0.0f;
            VK_UNROLL
            for (int j = 0; j < 32; j++)
                d += w[r][j] * x[j];
            acc[r * nt + t] += s[r] * d;
        }
    }
}

/* The same for a Q8 chunk (16 bytes = 16 consecutive weights at local column e0). */
VK_HD void vk_gemv_q8_step(const uint32_t *q, const float *s, int rpw, const float *xs, int kc,
                           int nt, int e0, float *acc)
{
    float w[4][16];
    VK_UNROLL
    for (int r = 0; r < rpw; r++)
        vk_q8_unpack16(q + 4 * r, w[r]);
    VK_UNROLL
    for (int t = 0; t < nt; t++) {
        float x[16];
        VK_UNROLL
        for (int j = 0; j < 16; j += 4)
            vk_xs_ld4(xs + t * kc, e0 + j, x + j);
        VK_UNROLL
        for (int r = 0; r < rpw; r++) {
            float d = 0.0f;
            VK_UNROLL
            for (int j = 0; j < 16; j++)
                d += w[r][j] * x[j];
            acc[r * nt + t] += s[r] * d;
        }
    }
}

/* ---- the tensor-core GEMM (prefill) ----
 * Activations go to f16 as x * 2^e rounded to nearest even, with e per token row chosen
 * so the row's largest |x| lands in [2^14, 2^15): no overflow past 65504 whatever the
 * activations' range, and no loss to f16 subnormals above amax * 2^-29. The scaling is
 * exact (a power of two), undone on the f32 result. */

/* The exponent e for a row whose largest magnitude is amax: 15 - frexp exponent, at most
 * VK_ACT_EXP_MAX so that 2^e and 2^-e are normal floats (any finite amax gives e >= -113;
 * a row whose amax is below 2^-111 is scaled less than ideal, its values then lose to
 * f16's subnormals: noise against any real activation); 0 when amax is 0, infinite or NaN
 * (the row then goes through unscaled: inf/NaN propagate). */
#define VK_ACT_EXP_MAX 126
VK_HD int vk_act_exp(float amax)
{
    if (!(amax > 0.0f) || !(amax <= 3.4028234663852886e38f))
        return 0;
    int e;
    (void)frexpf(amax, &e);
    e = 15 - e;
    return e > VK_ACT_EXP_MAX ? VK_ACT_EXP_MAX : e < -VK_ACT_EXP_MAX ? -VK_ACT_EXP_MAX : e;
}

/* 2^e as a float, |e| <= 126 (built from its bits: exact, no libm). */
VK_HD float vk_exp2i(int e)
{
    return vk_bits_f32((uint32_t)(127 + e) << 23);
}

/* x * 2^e as f16 bits (round to nearest even); |e| <= VK_ACT_EXP_MAX, so the product is
 * exact unless it falls below 2^-126, where f16 rounds it to zero anyway. */
VK_HD uint16_t vk_act_f16(float x, int e)
{
    return vk_f32_to_f16(x * vk_exp2i(e));
}

/* f rounded to nearest even f16, for values that are never NaN (the dequantised weights
 * of finite scales): the device's cvt.rn.f16.f32 (one instruction; IEEE round to nearest
 * even with subnormals and overflow to infinity, so it equals vk_f32_to_f16 on every
 * non-NaN input), the host's vk_f32_to_f16. */
VK_HD uint16_t vk_f32_to_f16_num(float f)
{
#ifdef __CUDA_ARCH__
    return __half_as_ushort(__float2half_rn(f));
#else
    return vk_f32_to_f16(f);
#endif
}

/* Q4: 16 weights of one group as f16 bits: the low (hi = 0) or high (hi = 1) nibbles of
 * the chunk's 16 bytes, times the group's scale s, each rounded to nearest even (the
 * product is exact in f32: an 11-bit scale times a 4-bit integer). */
VK_HD void vk_q4_deq16_f16(const uint32_t q[4], int hi, float s, uint16_t h[16])
{
    VK_UNROLL
    for (int i = 0; i < 4; i++) {
        uint32_t u = (hi ? q[i] >> 4 : q[i]) & 0x0f0f0f0fu;
        VK_UNROLL
        for (int b = 0; b < 4; b++)
            h[4 * i + b] = vk_f32_to_f16_num(s * (vk_magic_byte(u, b) - 8388616.0f));
    }
}

/* Q8: 16 consecutive weights of one group as f16 bits (s * q rounded to nearest even). */
VK_HD void vk_q8_deq16_f16(const uint32_t q[4], float s, uint16_t h[16])
{
    float w[16];
    vk_q8_unpack16(q, w);
    VK_UNROLL
    for (int j = 0; j < 16; j++)
        h[j] = vk_f32_to_f16_num(s * w[j]);
}

#endif
