/* rows_math: the arithmetic of kernels/rows.cu as VK_HD functions (embed_mix4's rounded
 * sum, argmax's combine step), compiled by the host tests (tests/test_kmath_mm.c) and
 * compared bit for bit with ops_ref. Element access and conversions are q4_math.h's.
 *
 * C only (no C++), no globals. */
#ifndef VLQ_ROWS_MATH_H
#define VLQ_ROWS_MATH_H

#include "q4_math.h"

#include <stdint.h>

/* Column c of sum_k round(w[k] * table[idx[k], c]) over k < 4 (ref_embed_mix4): for a
 * BF16 or F16 table each product and each partial sum is rounded to it, as torch computes
 * in the weights' dtype; each f32 operation rounds once (no FMA), so the result is ops_ref's
 * bit for bit. */
VK_HD float vk_mix4(int t, const void *data, const void *scale, int group, int64_t cols,
                    const int32_t *idx, const float *w, int64_t c)
{
    int rnd = t == QUANT_BF16 ? 1 : t == QUANT_F16 ? 2 : 0;
    float acc = 0.0f;
    for (int k = 0; k < 4; k++) {
        float term = vk_mul_rn(w[k], vk_elem(t, data, scale, group, (int64_t)idx[k] * cols + c));
        if (rnd)
            term = rnd == 1 ? vk_round_bf16(term) : vk_round_f16(term);
        acc = k == 0 ? term : vk_add_rn(acc, term);
        if (rnd)
            acc = rnd == 1 ? vk_round_bf16(acc) : vk_round_f16(acc);
    }
    return acc;
}

/* Whether candidate (v, i) beats the current best (bv, bi) under the order whose maximum
 * is ref_argmax's scan result ("first index of the maximum" with strict >): that scan
 * starts at element 0 and moves only to a strictly greater value, so a NaN at element 0
 * is kept whatever follows, and any other NaN is never taken. Hence the total order: NaN
 * at index 0 above everything; then values by size, equal values by lower index; other
 * NaNs last. A maximum under a total order, so any reduction tree gives the scan's
 * answer. */
VK_HD int vk_argmax_better(float v, int64_t i, float bv, int64_t bi)
{
    int vn = v != v, bn = bv != bv;
    if (bn || vn) {
        if (bn && bi == 0)
            return 0;
        if (vn && i == 0)
            return 1;
        if (vn && bn)
            return i < bi;
        return bn;
    }
    return v > bv || (v == bv && i < bi);
}

#endif
