/* quant: the storage formats of quantised weights, shared by gcc and nvcc.
 *
 * A quantised matrix W[rows, cols] (Linear weight, y = x W^T) is stored planar, row by
 * row, in groups of `group` consecutive columns (group is a property of the tensor,
 * recorded in its directory entry; cols % group == 0; group is a multiple of 32):
 *
 *   Q4: qs    = rows*cols/2 bytes: for each group of a row, group/2 bytes; byte j of a
 *               group holds element j in its low nibble and element j + group/2 in its
 *               high nibble (so a SIMD unpack of one group is two masked shifts).
 *       scale = rows*cols/group IEEE half floats, after qs (at a 64-byte aligned offset).
 *       w = scale * (q - 8), q in 0..15. Symmetric, no zero point: 4 + 16/group bits
 *       per weight (4.5 at group 32). Quantiser: scale = amax/7 (0 if amax is 0),
 *       q = clamp(rint(w/scale), -8, 7) + 8.
 *   Q8: qs    = rows*cols int8, same group order (element j of a group is byte j).
 *       scale = as for Q4. w = scale * q. Quantiser: scale = amax/127, q = rint(w/scale).
 *
 * Everything else is F32, F16 or BF16, row-major. */
#ifndef VLQ_QUANT_H
#define VLQ_QUANT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    QUANT_F32 = 0,
    QUANT_F16 = 1,
    QUANT_BF16 = 2,
    QUANT_Q8 = 3,
    QUANT_Q4 = 4,
} QuantType;

#define QUANT_DEFAULT_GROUP 32
#define QUANT_ALIGN 64

/* Byte offset of the scale plane of a quantised [rows, cols] matrix. */
static inline size_t quant_scale_offset(QuantType t, int64_t rows, int64_t cols)
{
    size_t qs = t == QUANT_Q4 ? (size_t)(rows * cols / 2) : (size_t)(rows * cols);
    return (qs + QUANT_ALIGN - 1) / QUANT_ALIGN * QUANT_ALIGN;
}

/* Total bytes of a tensor of n elements (rows*cols for matrices) in type t. */
static inline size_t quant_nbytes(QuantType t, int64_t rows, int64_t cols, int group)
{
    switch (t) {
    case QUANT_F32: return (size_t)(rows * cols) * 4;
    case QUANT_F16:
    case QUANT_BF16: return (size_t)(rows * cols) * 2;
    case QUANT_Q8:
    case QUANT_Q4: return quant_scale_offset(t, rows, cols) + (size_t)(rows * cols / group) * 2;
    }
    return 0;
}

#ifdef __cplusplus
}
#endif
#endif
