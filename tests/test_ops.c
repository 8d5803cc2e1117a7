/* test_ops: every op of the cpu backend against the scalar oracle (ops_ref), at odd and
 * real shapes with fixed seeds and a tolerance per op; plus a few hand-checked values of
 * the oracle itself (Q4 layout, bf16 rounding, rotary, ties in argmax). */
#include "backend.h"
#include "backend_int.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t ops_rng = 1;

static float ops_rand(void) /* uniform in [-1, 1) */
{
    ops_rng = ops_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((ops_rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static uint16_t ops_float_to_half(float f) /* round to nearest, normal range only */
{
    uint32_t bits;
    memcpy(&bits, &f, 4);
    uint32_t sign = (bits >> 16) & 0x8000;
    int exp = (int)((bits >> 23) & 0xff) - 127 + 15;
    uint32_t man = bits & 0x7fffff;
    if (exp <= 0)
        return (uint16_t)sign;
    uint32_t h = sign | (uint32_t)exp << 10 | man >> 13;
    if ((man & 0x1fff) > 0x1000 || ((man & 0x1fff) == 0x1000 && (h & 1)))
        h++;
    return (uint16_t)h;
}

/* A weight [rows, cols] of type t with random values, in quant.h's layout; the bytes
 * are returned (caller frees) and t wraps them. */
static void *ops_weight(Tensor *t, QuantType type, int64_t rows, int64_t cols, int group)
{
    size_t nb = quant_nbytes(type, rows, cols, group ? group : 1);
    uint8_t *bytes = aligned_alloc(64, (nb + 63) / 64 * 64);
    memset(bytes, 0, (nb + 63) / 64 * 64);
    int64_t n = rows * cols;
    for (int64_t i = 0; i < n; i++) {
        float v = ops_rand();
        if (type == QUANT_F32)
            ((float *)bytes)[i] = v;
        else if (type == QUANT_F16)
            ((uint16_t *)bytes)[i] = ops_float_to_half(v);
        else if (type == QUANT_BF16)
            ((uint16_t *)bytes)[i] = half_f32_to_bf16(v);
    }
    if (type == QUANT_Q4 || type == QUANT_Q8) {
        uint16_t *scale = (uint16_t *)(bytes + quant_scale_offset(type, rows, cols));
        for (int64_t g = 0; g < n / group; g++) {
            scale[g] = ops_float_to_half(0.01f + 0.1f * fabsf(ops_rand()));
            for (int j = 0; j < group; j++) {
                int64_t i = g * group + j;
                if (type == QUANT_Q8) {
                    ((int8_t *)bytes)[i] = (int8_t)(ops_rand() * 127.0f);
                } else {
                    int q = (int)((ops_rand() + 1.0f) * 8.0f) & 15, half = group / 2;
                    uint8_t *byte = bytes + g * half + j % half;
                    *byte |= (uint8_t)(j < half ? q : q << 4);
                }
            }
        }
    }
    CHECK_EQ(bk_host_weight(&ops_ref_backend, t, type, rows, cols, group, bytes, NULL), 0);
    return bytes;
}

static Tensor ops_act(int64_t rows, int64_t cols)
{
    Tensor t;
    CHECK_EQ(bk_host_alloc(&ops_ref_backend, &t, rows, cols, NULL), 0);
    for (int64_t i = 0; i < rows * cols; i++)
        ((float *)t.data)[i] = ops_rand();
    return t;
}

static Tensor ops_copy(const Tensor *src)
{
    Tensor t;
    CHECK_EQ(bk_host_alloc(&ops_ref_backend, &t, src->rows, src->cols, NULL), 0);
    memcpy(t.data, src->data, (size_t)(src->rows * src->cols) * 4);
    return t;
}

#define OPS_CMP(a, r, atol, rtol)                                                                \
    CHECK(test_check_tensor(__FILE__, __LINE__, #a, (const float *)(a).data,                     \
                            (const float *)(r).data, (size_t)((r).rows * (r).cols), (atol),      \
                            (rtol)))

static const QuantType ops_types[] = {QUANT_F32, QUANT_F16, QUANT_BF16, QUANT_Q8, QUANT_Q4};

static void ops_matmul_case(QuantType type, int64_t n, int64_t in, int64_t out, int group,
                            int with_bias)
{
    Tensor w, bias, x = ops_act(n, in), yr, yc;
    void *wb = ops_weight(&w, type, out, in, group);
    void *bb = ops_weight(&bias, QUANT_BF16, 1, out, 0);
    bk_host_alloc(&ops_ref_backend, &yr, n, out, NULL);
    bk_host_alloc(&ops_ref_backend, &yc, n, out, NULL);
    ops_ref_backend.matmul(NULL, &yr, &x, &w, with_bias ? &bias : NULL);
    backend_cpu.matmul(NULL, &yc, &x, &w, with_bias ? &bias : NULL);
    /* |error| grows with sqrt(in) * |w| |x|: sums of `in` terms in a different order */
    OPS_CMP(yc, yr, 2e-6f * (float)in, 1e-5f);
    free(wb);
    free(bb);
    bk_host_release(NULL, &x);
    bk_host_release(NULL, &yr);
    bk_host_release(NULL, &yc);
}

static void test_matmul(void)
{
    ops_rng = 11;
    for (size_t i = 0; i < sizeof ops_types / sizeof ops_types[0]; i++) {
        int g = ops_types[i] >= QUANT_Q8 ? 32 : 0;
        ops_matmul_case(ops_types[i], 1, 64, 5, g, 1);
        ops_matmul_case(ops_types[i], 3, 96, 17, g, 0);
        ops_matmul_case(ops_types[i], 37, 160, 33, g, 1); /* > one token block */
        ops_matmul_case(ops_types[i], 5, 2560, 48, g, 0);  /* 4B hidden width */
    }
    ops_matmul_case(QUANT_Q4, 4, 1024, 9, 64, 0);
    ops_matmul_case(QUANT_Q4, 2, 9728, 7, 128, 0); /* 4B intermediate, chunk boundary */
    ops_matmul_case(QUANT_BF16, 3, 1536, 11, 0, 1);  /* vision patch embed width */
}

/* Hand-checked Q4 layout: element j of a group is the low nibble of byte j, element
 * j+group/2 the high nibble; w = scale*(q-8). */
static void test_q4_layout(void)
{
    uint8_t bytes[128] = {0};
    for (int j = 0; j < 16; j++)
        bytes[j] = (uint8_t)((j & 15) | ((15 - j) << 4));
    uint16_t *scale = (uint16_t *)(bytes + quant_scale_offset(QUANT_Q4, 1, 32));
    scale[0] = 0x3800; /* 0.5 */
    Tensor w;
    CHECK_EQ(bk_host_weight(&ops_ref_backend, &w, QUANT_Q4, 1, 32, 32, bytes, NULL), 0);
    CHECK(bk_elem(&w, 0, 0) == 0.5f * (0 - 8));
    CHECK(bk_elem(&w, 0, 3) == 0.5f * (3 - 8));
    CHECK(bk_elem(&w, 0, 16) == 0.5f * (15 - 8));
    CHECK(bk_elem(&w, 0, 31) == 0.5f * (0 - 8));
    Tensor y;
    bk_host_alloc(&ops_ref_backend, &y, 1, 32, NULL);
    int32_t id = 0;
    backend_cpu.embed(NULL, &y, &w, &id, 1);
    for (int c = 0; c < 32; c++)
        CHECK(((float *)y.data)[c] == bk_elem(&w, 0, c));
    bk_host_release(NULL, &y);
}

static void test_bf16_round(void)
{
    CHECK_EQ(half_f32_to_bf16(1.0f), 0x3f80);
    CHECK_EQ(half_f32_to_bf16(1.0f + 1.0f / 256.0f), 0x3f80);        /* tie to even: down */
    CHECK_EQ(half_f32_to_bf16(1.0f + 3.0f / 256.0f), 0x3f82);        /* tie to even: up */
    CHECK_EQ(half_f32_to_bf16(-2.0f), 0xc000);
    CHECK(half_f16_to_f32(0x3c00) == 1.0f);
    CHECK(half_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    CHECK(half_f16_to_f32(0xc000) == -2.0f);
    /* float -> half: ties to even, subnormals, overflow; round trips of every half */
    CHECK_EQ(half_f32_to_f16(1.0f + 1.0f / 2048.0f), 0x3c00);
    CHECK_EQ(half_f32_to_f16(1.0f + 3.0f / 2048.0f), 0x3c02);
    CHECK_EQ(half_f32_to_f16(ldexpf(1.0f, -24)), 0x0001);
    CHECK_EQ(half_f32_to_f16(70000.0f), 0x7c00);
    CHECK_EQ(half_f32_to_f16(-65504.0f), 0xfbff);
    int bad = 0;
    for (uint32_t h = 0; h < 0x7c00; h++)
        bad += half_f32_to_f16(half_f16_to_f32((uint16_t)h)) != h;
    CHECK_EQ(bad, 0);
}

static void test_embed(void)
{
    ops_rng = 12;
    for (size_t i = 0; i < sizeof ops_types / sizeof ops_types[0]; i++) {
        Tensor table, yr, yc;
        int g = ops_types[i] >= QUANT_Q8 ? 32 : 0;
        void *tb = ops_weight(&table, ops_types[i], 50, 96, g);
        int32_t ids[5] = {0, 49, 7, 7, 13};
        bk_host_alloc(NULL, &yr, 5, 96, NULL);
        bk_host_alloc(NULL, &yc, 5, 96, NULL);
        ops_ref_backend.embed(NULL, &yr, &table, ids, 5);
        backend_cpu.embed(NULL, &yc, &table, ids, 5);
        OPS_CMP(yc, yr, 0.0f, 0.0f);
        free(tb);
        bk_host_release(NULL, &yr);
        bk_host_release(NULL, &yc);
    }
}

static void test_embed_mix4(void)
{
    ops_rng = 13;
    Tensor table, yr, yc;
    void *tb = ops_weight(&table, QUANT_BF16, 16, 40, 0);
    int32_t idx[12] = {0, 1, 4, 5, 5, 6, 9, 10, 15, 15, 15, 15};
    float w[12] = {0.25f, 0.25f, 0.25f, 0.25f, 0.5f, 0.5f, 0.0f, 0.0f, 1.0f, 0.0f, 0.0f, 0.0f};
    bk_host_alloc(NULL, &yr, 3, 40, NULL);
    bk_host_alloc(NULL, &yc, 3, 40, NULL);
    ops_ref_backend.embed_mix4(NULL, &yr, &table, idx, w, 3);
    backend_cpu.embed_mix4(NULL, &yc, &table, idx, w, 3);
    OPS_CMP(yc, yr, 0.0f, 0.0f);
    /* weight 1 on one row: that row exactly; the result is a bf16 value */
    for (int c = 0; c < 40; c++) {
        float v = ((float *)yr.data)[2 * 40 + c];
        CHECK(v == bk_elem(&table, 15, c));
        float m = ((float *)yr.data)[c];
        CHECK(m == bk_round_bf16(m));
    }
    free(tb);
    bk_host_release(NULL, &yr);
    bk_host_release(NULL, &yc);
}

static void test_rows(void)
{
    ops_rng = 14;
    Tensor dr = ops_act(9, 33), dc = ops_copy(&dr), src = ops_act(3, 33);
    int32_t rows[3] = {8, 0, 4};
    ops_ref_backend.set_rows(NULL, &dr, rows, &src, 3);
    backend_cpu.set_rows(NULL, &dc, rows, &src, 3);
    OPS_CMP(dc, dr, 0.0f, 0.0f);
    CHECK(((float *)dr.data)[8 * 33 + 5] == ((float *)src.data)[5]);
    ops_ref_backend.add_rows(NULL, &dr, rows, &src, 3);
    backend_cpu.add_rows(NULL, &dc, rows, &src, 3);
    OPS_CMP(dc, dr, 0.0f, 0.0f);
    CHECK(((float *)dr.data)[4 * 33 + 1] == 2.0f * ((float *)src.data)[2 * 33 + 1]);
    Tensor gr, gc;
    bk_host_alloc(NULL, &gr, 3, 33, NULL);
    bk_host_alloc(NULL, &gc, 3, 33, NULL);
    ops_ref_backend.get_rows(NULL, &gr, &dr, rows, 3);
    backend_cpu.get_rows(NULL, &gc, &dc, rows, 3);
    OPS_CMP(gc, gr, 0.0f, 0.0f);
    Tensor *all[] = {&dr, &dc, &src, &gr, &gc};
    for (int i = 0; i < 5; i++)
        bk_host_release(NULL, all[i]);
}

static void test_norms(void)
{
    ops_rng = 15;
    int64_t shapes[][2] = {{1, 16}, {7, 33}, {5, 2560}, {3, 1024}, {64, 128}};
    for (int s = 0; s < 5; s++) {
        int64_t n = shapes[s][0], d = shapes[s][1];
        Tensor x = ops_act(n, d), w, bias, yr, yc;
        void *wb = ops_weight(&w, QUANT_BF16, 1, d, 0), *bb = ops_weight(&bias, QUANT_F32, 1, d, 0);
        bk_host_alloc(NULL, &yr, n, d, NULL);
        bk_host_alloc(NULL, &yc, n, d, NULL);
        ops_ref_backend.rmsnorm(NULL, &yr, &x, &w, 1e-6f);
        backend_cpu.rmsnorm(NULL, &yc, &x, &w, 1e-6f);
        OPS_CMP(yc, yr, 1e-6f, 1e-5f);
        ops_ref_backend.layernorm(NULL, &yr, &x, &w, &bias, 1e-6f);
        backend_cpu.layernorm(NULL, &yc, &x, &w, &bias, 1e-6f);
        OPS_CMP(yc, yr, 1e-6f, 1e-5f);
        free(wb);
        free(bb);
        bk_host_release(NULL, &x);
        bk_host_release(NULL, &yr);
        bk_host_release(NULL, &yc);
    }
    /* a hand value: rmsnorm of (3, 4) with w = 1 is x / sqrt(12.5) */
    float xv[2] = {3.0f, 4.0f}, wv[2] = {1.0f, 1.0f}, yv[2];
    Tensor x2 = {.type = QUANT_F32, .rows = 1, .cols = 2, .data = xv};
    Tensor w2 = {.type = QUANT_F32, .rows = 1, .cols = 2, .data = wv};
    Tensor y2 = {.type = QUANT_F32, .rows = 1, .cols = 2, .data = yv};
    ops_ref_backend.rmsnorm(NULL, &y2, &x2, &w2, 0.0f);
    CHECK(fabsf(yv[0] - 3.0f / sqrtf(12.5f)) < 1e-6f && fabsf(yv[1] - 4.0f / sqrtf(12.5f)) < 1e-6f);
}

static void test_elementwise(void)
{
    ops_rng = 16;
    Tensor a = ops_act(7, 301), c = ops_act(7, 301), r = ops_copy(&a), k = ops_copy(&a);
    ops_ref_backend.add(NULL, &r, &a, &c);
    backend_cpu.add(NULL, &k, &a, &c);
    OPS_CMP(k, r, 0.0f, 0.0f);
    /* the cpu backend's vector exp / erfc (cpu_kern.inc) differ from libm by a few ulp:
     * tests/test_attn.c bounds them over wide ranges */
    ops_ref_backend.swiglu(NULL, &r, &a, &c);
    backend_cpu.swiglu(NULL, &k, &a, &c);
    OPS_CMP(k, r, 2e-7f, 1e-6f);
    Tensor r2 = ops_copy(&a), k2 = ops_copy(&a);
    ops_ref_backend.gelu_tanh(NULL, &r2);
    backend_cpu.gelu_tanh(NULL, &k2);
    OPS_CMP(k2, r2, 2e-7f, 1e-6f);
    Tensor r3 = ops_copy(&a), k3 = ops_copy(&a);
    ops_ref_backend.gelu_erf(NULL, &r3);
    backend_cpu.gelu_erf(NULL, &k3);
    OPS_CMP(k3, r3, 2e-7f, 1e-6f);
    /* hand values: gelu_erf(1) = 0.8413447, gelu_tanh(1) = 0.8411920, silu(1)*2 */
    float v[3] = {1.0f, 1.0f, 1.0f}, u[1] = {2.0f};
    Tensor t1 = {.type = QUANT_F32, .rows = 1, .cols = 1, .data = &v[0]};
    Tensor t2 = {.type = QUANT_F32, .rows = 1, .cols = 1, .data = &v[1]};
    Tensor t3 = {.type = QUANT_F32, .rows = 1, .cols = 1, .data = &v[2]};
    Tensor tu = {.type = QUANT_F32, .rows = 1, .cols = 1, .data = u};
    ops_ref_backend.gelu_erf(NULL, &t1);
    ops_ref_backend.gelu_tanh(NULL, &t2);
    ops_ref_backend.swiglu(NULL, &t3, &t3, &tu);
    CHECK(fabsf(v[0] - 0.8413447f) < 1e-6f);
    CHECK(fabsf(v[1] - 0.8411920f) < 1e-6f);
    CHECK(fabsf(v[2] - 2.0f * 0.7310586f) < 1e-6f);
    Tensor *all[] = {&a, &c, &r, &k, &r2, &k2, &r3, &k3};
    for (int i = 0; i < 8; i++)
        bk_host_release(NULL, all[i]);
}

static void test_rotary(void)
{
    ops_rng = 17;
    /* mrope: tiny (head_dim 16, [4,2,2]) and real (head_dim 128, [24,20,20]) */
    int secs[2][3] = {{4, 2, 2}, {24, 20, 20}}, hds[2] = {16, 128};
    for (int s = 0; s < 2; s++) {
        int n = 6, heads = 3;
        Tensor x = ops_act(n, heads * hds[s]), r = ops_copy(&x), k = ops_copy(&x);
        int32_t pos[18];
        for (int i = 0; i < 18; i++)
            pos[i] = (i * 37) % 1000;
        ops_ref_backend.mrope(NULL, &r, pos, heads, secs[s], 5e6f);
        backend_cpu.mrope(NULL, &k, pos, heads, secs[s], 5e6f);
        OPS_CMP(k, r, 0.0f, 0.0f);
        /* a rotation keeps each (d, d+half) pair's norm */
        const float *xa = x.data, *ra = r.data;
        int half = hds[s] / 2;
        float n0 = xa[0] * xa[0] + xa[half] * xa[half], n1 = ra[0] * ra[0] + ra[half] * ra[half];
        CHECK(fabsf(n0 - n1) < 1e-5f);
        bk_host_release(NULL, &x);
        bk_host_release(NULL, &r);
        bk_host_release(NULL, &k);
    }
    /* position 0 on every axis is the identity */
    Tensor x = ops_act(1, 32), r = ops_copy(&x);
    int32_t zero[3] = {0, 0, 0};
    int sec[3] = {4, 2, 2};
    ops_ref_backend.mrope(NULL, &r, zero, 2, sec, 5e6f);
    OPS_CMP(r, x, 0.0f, 0.0f);
    /* frequency j = 1 takes the h position: (t, h, w) = (0, 1, 0) rotates pair (1, 9) of
     * head 0 by inv_freq[1] = 5e6^(-2/16), and pair (0, 8) not at all */
    int32_t p_h[3] = {0, 1, 0};
    Tensor r2 = ops_copy(&x);
    ops_ref_backend.mrope(NULL, &r2, p_h, 2, sec, 5e6f);
    const float *xa = x.data, *ra = r2.data;
    float ang = powf(5e6f, -2.0f / 16.0f);
    CHECK(ra[0] == xa[0] && ra[8] == xa[8]);
    CHECK(fabsf(ra[1] - (xa[1] * cosf(ang) - xa[9] * sinf(ang))) < 1e-6f);
    bk_host_release(NULL, &x);
    bk_host_release(NULL, &r);
    bk_host_release(NULL, &r2);
    /* rope2d at vision shapes: head_dim 16 (tiny) and 64 (real) */
    for (int hd = 16; hd <= 64; hd *= 4) {
        Tensor v = ops_act(8, 4 * hd), vr = ops_copy(&v), vc = ops_copy(&v);
        int32_t p[16];
        for (int i = 0; i < 16; i++)
            p[i] = i * 3 % 7;
        ops_ref_backend.rope2d(NULL, &vr, p, 4, 10000.0f);
        backend_cpu.rope2d(NULL, &vc, p, 4, 10000.0f);
        OPS_CMP(vc, vr, 0.0f, 0.0f);
        bk_host_release(NULL, &v);
        bk_host_release(NULL, &vr);
        bk_host_release(NULL, &vc);
    }
}

static void test_attention(void)
{
    ops_rng = 18;
    /* two sequences in one batch: one prefill of 5 with 2 cached, one decode of 1 with 9 */
    int heads = 4, kvh = 2, hd = 16;
    BackendSeq seqs[2] = {{.row0 = 0, .n_tok = 5, .kv_row0 = 0, .n_past = 2},
                          {.row0 = 5, .n_tok = 1, .kv_row0 = 16, .n_past = 9}};
    Tensor q = ops_act(6, heads * hd), kc = ops_act(32, kvh * hd), vc = ops_act(32, kvh * hd);
    Tensor orr, oc;
    bk_host_alloc(NULL, &orr, 6, heads * hd, NULL);
    bk_host_alloc(NULL, &oc, 6, heads * hd, NULL);
    ops_ref_backend.attention(NULL, &orr, &q, &kc, &vc, seqs, 2, heads, kvh, 0.25f);
    backend_cpu.attention(NULL, &oc, &q, &kc, &vc, seqs, 2, heads, kvh, 0.25f);
    OPS_CMP(oc, orr, 1e-6f, 1e-5f);
    /* the first token of a sequence with nothing cached sees only itself: o = v */
    BackendSeq one = {.row0 = 0, .n_tok = 1, .kv_row0 = 3, .n_past = 0};
    ops_ref_backend.attention(NULL, &orr, &q, &kc, &vc, &one, 1, heads, kvh, 0.25f);
    for (int h = 0; h < heads; h++)
        for (int d = 0; d < hd; d++)
            CHECK(fabsf(((float *)orr.data)[h * hd + d] -
                        ((float *)vc.data)[3 * kvh * hd + (h / 2) * hd + d]) < 1e-6f);
    /* segmented (vision): segments of 4, 7 and 1 rows */
    int32_t cu[4] = {0, 4, 11, 12};
    Tensor vq = ops_act(12, 64), vk = ops_act(12, 64), vv = ops_act(12, 64), sr, sc;
    bk_host_alloc(NULL, &sr, 12, 64, NULL);
    bk_host_alloc(NULL, &sc, 12, 64, NULL);
    ops_ref_backend.attention_seg(NULL, &sr, &vq, &vk, &vv, cu, 3, 4, 0.25f);
    backend_cpu.attention_seg(NULL, &sc, &vq, &vk, &vv, cu, 3, 4, 0.25f);
    OPS_CMP(sc, sr, 1e-6f, 1e-5f);
    for (int d = 0; d < 64; d++) /* a segment of one row: o = v */
        CHECK(fabsf(((float *)sr.data)[11 * 64 + d] - ((float *)vv.data)[11 * 64 + d]) < 1e-6f);
    Tensor *all[] = {&q, &kc, &vc, &orr, &oc, &vq, &vk, &vv, &sr, &sc};
    for (int i = 0; i < 10; i++)
        bk_host_release(NULL, all[i]);
    /* large enough for the cpu backend's parallel path: 4B head_dim, 8 heads over 2 */
    BackendSeq big[3] = {{.row0 = 0, .n_tok = 40, .kv_row0 = 0, .n_past = 30},
                         {.row0 = 40, .n_tok = 1, .kv_row0 = 100, .n_past = 99},
                         {.row0 = 41, .n_tok = 7, .kv_row0 = 200, .n_past = 0}};
    Tensor bq = ops_act(48, 8 * 128), bkc = ops_act(300, 2 * 128), bvc = ops_act(300, 2 * 128);
    Tensor bo, bor;
    bk_host_alloc(NULL, &bo, 48, 8 * 128, NULL);
    bk_host_alloc(NULL, &bor, 48, 8 * 128, NULL);
    ops_ref_backend.attention(NULL, &bor, &bq, &bkc, &bvc, big, 3, 8, 2, 0.0884f);
    backend_cpu.attention(NULL, &bo, &bq, &bkc, &bvc, big, 3, 8, 2, 0.0884f);
    OPS_CMP(bo, bor, 1e-6f, 1e-5f);
    int32_t cu2[3] = {0, 64, 100};
    Tensor sq = ops_act(100, 256), sk = ops_act(100, 256), sv = ops_act(100, 256), so, sor;
    bk_host_alloc(NULL, &so, 100, 256, NULL);
    bk_host_alloc(NULL, &sor, 100, 256, NULL);
    ops_ref_backend.attention_seg(NULL, &sor, &sq, &sk, &sv, cu2, 2, 4, 0.125f);
    backend_cpu.attention_seg(NULL, &so, &sq, &sk, &sv, cu2, 2, 4, 0.125f);
    OPS_CMP(so, sor, 1e-6f, 1e-5f);
    Tensor *more[] = {&bq, &bkc, &bvc, &bo, &bor, &sq, &sk, &sv, &so, &sor};
    for (int i = 0; i < 10; i++)
        bk_host_release(NULL, more[i]);
}

static void test_argmax(void)
{
    float v[8] = {1.0f, 3.0f, 3.0f, -1.0f, /* row 2 */ -5.0f, -5.0f, -5.0f, -6.0f};
    Tensor x = {.type = QUANT_F32, .rows = 2, .cols = 4, .data = v};
    int32_t r[2], c[2];
    ops_ref_backend.argmax(NULL, &x, r);
    backend_cpu.argmax(NULL, &x, c);
    CHECK_EQ(r[0], 1); /* first index on ties */
    CHECK_EQ(r[1], 0);
    CHECK_EQ(c[0], 1);
    CHECK_EQ(c[1], 0);
}

static void test_views(void)
{
    Tensor w;
    ops_rng = 19;
    void *wb = ops_weight(&w, QUANT_Q4, 6, 64, 32);
    Tensor v = backend_view_rows(&w, 4, 2);
    for (int c = 0; c < 64; c++)
        CHECK(bk_elem(&v, 1, c) == bk_elem(&w, 5, c));
    CHECK(backend_get("cpu") == &backend_cpu && backend_get("ref") == &ops_ref_backend);
    CHECK(backend_get("nope") == NULL);
    free(wb);
}

TEST_GROUP(ops, {"matmul", test_matmul}, {"q4_layout", test_q4_layout},
           {"bf16_round", test_bf16_round}, {"embed", test_embed},
           {"embed_mix4", test_embed_mix4}, {"rows", test_rows}, {"norms", test_norms},
           {"elementwise", test_elementwise}, {"rotary", test_rotary},
           {"attention", test_attention}, {"argmax", test_argmax}, {"views", test_views})
