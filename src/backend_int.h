/* backend_int: what the backend implementations share (private to backend*.c and
 * ops_ref.c): number conversions and the element access of every weight type. */
#ifndef VLQ_BACKEND_INT_H
#define VLQ_BACKEND_INT_H

#include "backend.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* IEEE half to float, exact (subnormals, inf, NaN included). */
static inline float bk_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                man <<= 1;
                e++;
            } while (!(man & 0x400));
            bits = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | man << 13;
    } else {
        bits = sign | (exp + 127 - 15) << 23 | man << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline float bk_bf16_to_float(uint16_t v)
{
    uint32_t bits = (uint32_t)v << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* float to bf16 bits, round to nearest even (torch's .to(bfloat16)); NaN stays NaN. */
static inline uint16_t bk_float_to_bf16(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((bits >> 16) | 0x40);
    bits += 0x7fffu + ((bits >> 16) & 1);
    return (uint16_t)(bits >> 16);
}

/* float to IEEE half bits, round to nearest even (torch's .to(float16)): overflow to
 * inf, subnormals kept, NaN stays NaN. */
static inline uint16_t bk_float_to_half(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, 4);
    uint16_t sign = (uint16_t)((bits >> 16) & 0x8000);
    uint32_t abs = bits & 0x7fffffffu;
    if (abs > 0x7f800000u)
        return sign | 0x7e00;
    if (abs >= 0x477ff000u) /* rounds to >= 65520: inf */
        return sign | 0x7c00;
    if (abs < 0x38800000u) { /* below 2^-14: a subnormal half, units of 2^-24 */
        float a;
        memcpy(&a, &abs, 4);
        return sign | (uint16_t)lrintf(a * 16777216.0f); /* exact scaling, then RNE */
    }
    uint32_t man = abs & 0x1fff, h = ((abs >> 13) - ((127 - 15) << 10));
    if (man > 0x1000 || (man == 0x1000 && (h & 1)))
        h++;
    return sign | (uint16_t)h;
}

/* f rounded to the nearest bf16 value, as a float. */
static inline float bk_round_bf16(float f)
{
    return bk_bf16_to_float(bk_float_to_bf16(f));
}

/* f rounded to the nearest half value, as a float. */
static inline float bk_round_half(float f)
{
    return bk_half_to_float(bk_float_to_half(f));
}

/* Element (r, c) of t as a float, any type (the slow, obvious path: ops_ref). */
static inline float bk_elem(const Tensor *t, int64_t r, int64_t c)
{
    int64_t i = r * t->cols + c;
    switch (t->type) {
    case QUANT_F32: return ((const float *)t->data)[i];
    case QUANT_F16: return bk_half_to_float(((const uint16_t *)t->data)[i]);
    case QUANT_BF16: return bk_bf16_to_float(((const uint16_t *)t->data)[i]);
    case QUANT_Q8: {
        float s = bk_half_to_float(((const uint16_t *)t->scale)[i / t->group]);
        return s * (float)((const int8_t *)t->data)[i];
    }
    case QUANT_Q4: {
        int64_t g = i / t->group, j = i % t->group, half = t->group / 2;
        uint8_t byte = ((const uint8_t *)t->data)[g * half + (j % half)];
        int q = j < half ? (byte & 0xf) : (byte >> 4);
        float s = bk_half_to_float(((const uint16_t *)t->scale)[g]);
        return s * (float)(q - 8);
    }
    }
    return 0.0f;
}

/* Bytes of n elements of a dense type (F32/F16/BF16). */
static inline size_t bk_dense_bytes(QuantType t, int64_t n)
{
    return (size_t)n * (t == QUANT_F32 ? 4 : 2);
}

/* The shared generic parts of a table (memory, views); backend.c. */
int bk_host_alloc(Backend *b, Tensor *t, int64_t rows, int64_t cols, char *err);
void bk_host_release(Backend *b, Tensor *t);
int bk_host_weight(Backend *b, Tensor *t, QuantType type, int64_t rows, int64_t cols, int group,
                   const void *bytes, char *err);
void bk_host_write(Backend *b, Tensor *t, int64_t row0, const float *src, int64_t n);
void bk_host_read(Backend *b, const Tensor *t, int64_t row0, float *dst, int64_t n);

extern Backend ops_ref_backend;
extern Backend backend_cpu;

#endif
