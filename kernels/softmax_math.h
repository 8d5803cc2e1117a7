/* softmax_math: the online softmax of the attention kernels (kernels/attn.cu), for one
 * query row: its running state is (m, l, acc[hd]): the largest score seen, the sum of
 * 2^(s - m) over the keys seen, and the sum of 2^(s - m) v over them.
 *
 * Scores live in the log2 domain: the kernels fold scale * log2(e) into q once
 * (vk_sm_qscale), so s2 = q'.k = s * log2(e) and 2^(s2 - m2) = e^(s - m): one exp2 per
 * key, no multiply. ops_ref computes expf(s * scale - max); the two agree to a few ulp of
 * the exponent's argument (tests/test_kmath_attn.c states the tolerance).
 *
 * Masked keys have s = -inf. A row that has seen no unmasked key yet has m = -inf, and
 * every helper keeps that state inert (factor 1 on an empty state, weight 0 for a masked
 * key) instead of producing exp2(-inf - -inf) = NaN: rows past the end of a tile and
 * keys past a row's causal limit go through the same code as the others. */
#ifndef VLQ_SOFTMAX_MATH_H
#define VLQ_SOFTMAX_MATH_H

#include "vk_hd.h"

#include <math.h>

#define VK_LOG2E 1.4426950408889634f
/* -infinity as a constant expression both compilers accept in device and host code */
#define VK_NEG_INF (-__builtin_huge_valf())

/* The factor folded into q: scores come out as s * log2(e). */
VK_HD float vk_sm_qscale(float scale) { return scale * VK_LOG2E; }

/* 2^x (exp2f on both sides: libm on the host, the CUDA math library's on the device,
 * both within 2 ulp; 2^-inf = 0). */
VK_HD float vk_sm_exp2(float x) { return exp2f(x); }

/* Take a block of scores whose max is bm into the running max *m; returns the factor the
 * old sum and acc are multiplied by (2^(m_old - m_new): 0 when the state was empty and
 * the block is not, 1 while both are empty). */
VK_HD float vk_sm_rescale(float *m, float bm)
{
    float mn = fmaxf(*m, bm);
    float alpha = mn == VK_NEG_INF ? 1.0f : vk_sm_exp2(*m - mn);
    *m = mn;
    return alpha;
}

/* The weight of a key with score s under the (already updated) running max m: 0 for a
 * masked key, and for every key of a row with no unmasked key yet. */
VK_HD float vk_sm_p(float s, float m) { return m == VK_NEG_INF ? 0.0f : vk_sm_exp2(s - m); }

/* Merge state (m2, l2) into (*m, *l): *a1 and *a2 are the factors of the two accs
 * (acc = acc * a1 + acc2 * a2). Either state may be empty (m = -inf, l = 0). */
VK_HD void vk_sm_merge(float *m, float *l, float m2, float l2, float *a1, float *a2)
{
    float mn = fmaxf(*m, m2);
    if (mn == VK_NEG_INF) { /* both empty */
        *a1 = 1.0f;
        *a2 = 0.0f;
        return;
    }
    *a1 = vk_sm_exp2(*m - mn);
    *a2 = vk_sm_exp2(m2 - mn);
    *l = *l * *a1 + l2 * *a2;
    *m = mn;
}

/* The output of a finished row: acc / l, as ops_ref divides; 0 for a row with no key
 * (never written back by the kernels, which only finish rows that have one). */
VK_HD float vk_sm_out(float acc, float l) { return l > 0.0f ? acc / l : 0.0f; }

#endif
