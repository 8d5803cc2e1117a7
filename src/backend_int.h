/* backend_int: what the backend implementations share (private to backend*.c and
 * ops_ref.c): rounding helpers (conversions are in half.h) and the element access of every weight type. */
#ifndef VLQ_BACKEND_INT_H
#define VLQ_BACKEND_INT_H

#include "backend.h"
#include "half.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* f rounded to the nearest bf16 value, as a float. */
static inline float bk_round_bf16(float f)
{
    return half_bf16_to_f32(half_f32_to_bf16(f));
}

/* f rounded to the nearest half value, as a float. */
static inline float bk_round_half(float f)
{
    return half_f16_to_f32(half_f32_to_f16(f));
}

/* Element (r, c) of t as a float, any type (the slow, obvious path: ops_ref). */
static inline float bk_elem(const Tensor *t, int64_t r, int64_t c)
{
    int64_t i = r * t->cols + c;
    switch (t->type) {
    case QUANT_F32: return ((const float *)t->data)[i];
    case QUANT_F16: return half_f16_to_f32(((const uint16_t *)t->data)[i]);
    case QUANT_BF16: return half_bf16_to_f32(((const uint16_t *)t->data)[i]);
    case QUANT_Q8: {
        float s = half_f16_to_f32(((const uint16_t *)t->scale)[i / t->group]);
        return s * (float)((const int8_t *)t->data)[i];
    }
    case QUANT_Q4: {
        int64_t g = i / t->group, j = i % t->group, half = t->group / 2;
        uint8_t byte = ((const uint8_t *)t->data)[g * half + (j % half)];
        int q = j < half ? (byte & 0xf) : (byte >> 4);
        float s = half_f16_to_f32(((const uint16_t *)t->scale)[g]);
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

/* Host tensors of at least this many bytes are anonymous mappings (zero pages, backed
 * only once written), released with munmap: Tensor.owned says which. */
#define BK_MMAP_MIN ((size_t)4 << 20)
#define BK_OWNED_MMAP 3

/* The shared generic parts of a table (memory, views); backend.c. */
int bk_host_alloc(Backend *b, Tensor *t, int64_t rows, int64_t cols, char *err);
int bk_host_alloc_typed(Backend *b, Tensor *t, QuantType type, int64_t rows, int64_t cols,
                        char *err);
void bk_host_release(Backend *b, Tensor *t);
int bk_host_weight(Backend *b, Tensor *t, QuantType type, int64_t rows, int64_t cols, int group,
                   const void *bytes, char *err);
void bk_host_write(Backend *b, Tensor *t, int64_t row0, const float *src, int64_t n);
void bk_host_read(Backend *b, const Tensor *t, int64_t row0, float *dst, int64_t n);
/* Host lifecycle parts: open applies o->threads (omp_set_num_threads on the opening
 * thread); sync has nothing to wait for; meminfo reads /proc/meminfo and the cgroup
 * limit; describe prints the name and the CPU features. */
int bk_host_open(Backend *b, const BackendOpenOptions *o, char *err);
int bk_host_sync(Backend *b, char *err);
int bk_host_meminfo(Backend *b, int64_t *free_bytes, int64_t *total_bytes, char *err);
void bk_host_describe(Backend *b, char *buf, size_t len);

extern Backend ops_ref_backend;
extern Backend backend_cpu;

#endif
