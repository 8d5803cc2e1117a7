/* test_ops: every op of every backend against the scalar oracle (ops_ref), at odd and
 * real shapes with fixed seeds and a tolerance per op; plus a few hand-checked values of
 * the oracle itself (Q4 layout, bf16 rounding, rotary, ties in argmax), the backend
 * lifecycle (open, describe, meminfo, sync, close) and the plugin loader's errors.
 *
 * The backends under test are ops_names: the built-in cpu and vlq-backend-cputest.so
 * (the same code loaded as a plugin, built beside vlq-test by the Makefile). Each case
 * computes the oracle on host tensors, then for each backend uploads the inputs with
 * alloc/write (activations) or weight (weights), runs the op, reads the result back
 * and compares: the interface a device backend has, so a CUDA plugin is one more name. */
#include "backend.h"
#include "backend_int.h"
#include "err.h"
#include "test.h"

#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* ---- the backends under test ---- */

static const char *const ops_names[] = {"cpu", "cputest"};
#define OPS_NBACKENDS (int)(sizeof ops_names / sizeof ops_names[0])
static Backend *ops_list[OPS_NBACKENDS];
static int ops_opened = -1; /* how many of ops_list are open; -1 before the first use */

/* The backends, opened on first use in this test's process; one that fails to open is a
 * failed check (the plugin is built with the tests). */
static int ops_count(void)
{
    if (ops_opened >= 0)
        return ops_opened;
    ops_opened = 0;
    for (int i = 0; i < OPS_NBACKENDS; i++) {
        char err[VLQ_ERRLEN] = "";
        Backend *b = NULL;
        int rc = backend_open(ops_names[i], NULL, &b, err);
        if (rc)
            test_fail(__FILE__, __LINE__, "backend_open(%s): %s", ops_names[i], err);
        else
            ops_list[ops_opened++] = b;
    }
    return ops_opened;
}

#define OPS_FOR_EACH(b) for (int bi_ = 0; bi_ < ops_count() && ((b) = ops_list[bi_]); bi_++)

/* Close the backends; each test ends with it. */
static void ops_done(void)
{
    for (int i = 0; i < ops_opened; i++)
        backend_close(ops_list[i]);
    ops_opened = -1;
}

/* h on backend b: activations (host tensors the test allocated) through alloc + write,
 * weights (views over host bytes) through weight. Release with b->release. */
static Tensor ops_up(Backend *b, const Tensor *h)
{
    Tensor t;
    char err[VLQ_ERRLEN];
    if (h->owned) {
        CHECK_EQ(b->alloc(b, &t, h->rows, h->cols, err), 0);
        b->write(b, &t, 0, h->data, h->rows);
    } else {
        CHECK_EQ(b->weight(b, &t, h->type, h->rows, h->cols, h->group, h->data, err), 0);
    }
    return t;
}

/* A zeroed F32 [rows, cols] on b. */
static Tensor ops_new(Backend *b, int64_t rows, int64_t cols)
{
    Tensor t;
    CHECK_EQ(b->alloc(b, &t, rows, cols, NULL), 0);
    return t;
}

/* Read d back from b and compare it with the host tensor r. */
static void ops_check(int line, Backend *b, const char *what, const Tensor *d, const Tensor *r,
                      float atol, float rtol)
{
    CHECK(b->sync(b, NULL) == 0);
    CHECK(d->rows == r->rows && d->cols == r->cols);
    size_t n = (size_t)(r->rows * r->cols);
    float *got = malloc(n * sizeof(float) + 1);
    b->read(b, d, 0, got, d->rows);
    char name[128];
    snprintf(name, sizeof name, "%s: %s", b->name, what);
    test_check_tensor(__FILE__, line, name, got, r->data, n, atol, rtol); /* fails the test */
    free(got);
}
#define OPS_CHECK(b, d, r, atol, rtol) ops_check(__LINE__, (b), #d, &(d), &(r), (atol), (rtol))

/* Release tensors of backend b. */
#define OPS_REL(b, ...)                                                                          \
    do {                                                                                         \
        Tensor *ts_[] = {__VA_ARGS__};                                                           \
        for (size_t i_ = 0; i_ < sizeof ts_ / sizeof ts_[0]; i_++)                               \
            (b)->release((b), ts_[i_]);                                                          \
    } while (0)

static const QuantType ops_types[] = {QUANT_F32, QUANT_F16, QUANT_BF16, QUANT_Q8, QUANT_Q4};

static void ops_matmul_case(QuantType type, int64_t n, int64_t in, int64_t out, int group,
                            int with_bias)
{
    Tensor w, bias, x = ops_act(n, in), yr;
    void *wb = ops_weight(&w, type, out, in, group);
    void *bb = ops_weight(&bias, QUANT_BF16, 1, out, 0);
    bk_host_alloc(&ops_ref_backend, &yr, n, out, NULL);
    ops_ref_backend.matmul(NULL, &yr, &x, &w, with_bias ? &bias : NULL);
    /* |error| grows with sqrt(in) * |w| |x|: sums of `in` terms in a different order */
    float atol = 2e-6f * (float)in;
    /* Q4/Q8 on cpu: int8 activations (cpu_qmm.c), error sd <= sqrt(in) |w|max (1/127)/sqrt(12)
     * with |w| <= 0.11 * 8 (Q4) or 0.11 * 127 (Q8) here; 6 sd. tests/test_qmm.c checks
     * it output by output. */
    if (type == QUANT_Q4 || type == QUANT_Q8)
        atol = 6.0f * sqrtf((float)in) * 0.11f * (type == QUANT_Q4 ? 8.0f : 127.0f) / 127.0f /
               sqrtf(12.0f);
    Backend *b;
    OPS_FOR_EACH(b) {
        Tensor dx = ops_up(b, &x), dw = ops_up(b, &w), dbias = ops_up(b, &bias),
               dy = ops_new(b, n, out);
        b->matmul(b, &dy, &dx, &dw, with_bias ? &dbias : NULL);
        OPS_CHECK(b, dy, yr, atol, 1e-5f);
        OPS_REL(b, &dx, &dw, &dbias, &dy);
    }
    free(wb);
    free(bb);
    bk_host_release(NULL, &x);
    bk_host_release(NULL, &yr);
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
    ops_done();
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
    Tensor want;
    bk_host_alloc(&ops_ref_backend, &want, 1, 32, NULL);
    for (int c = 0; c < 32; c++)
        ((float *)want.data)[c] = bk_elem(&w, 0, c);
    int32_t id = 0;
    Backend *b;
    OPS_FOR_EACH(b) {
        Tensor dw = ops_up(b, &w), dy = ops_new(b, 1, 32);
        b->embed(b, &dy, &dw, &id, 1);
        OPS_CHECK(b, dy, want, 0.0f, 0.0f);
        OPS_REL(b, &dw, &dy);
    }
    bk_host_release(NULL, &want);
    ops_done();
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
        Tensor table, yr;
        int g = ops_types[i] >= QUANT_Q8 ? 32 : 0;
        void *tb = ops_weight(&table, ops_types[i], 50, 96, g);
        int32_t ids[5] = {0, 49, 7, 7, 13};
        bk_host_alloc(NULL, &yr, 5, 96, NULL);
        ops_ref_backend.embed(NULL, &yr, &table, ids, 5);
        Backend *b;
        OPS_FOR_EACH(b) {
            Tensor dt = ops_up(b, &table), dy = ops_new(b, 5, 96);
            b->embed(b, &dy, &dt, ids, 5);
            OPS_CHECK(b, dy, yr, 0.0f, 0.0f);
            OPS_REL(b, &dt, &dy);
        }
        free(tb);
        bk_host_release(NULL, &yr);
    }
    ops_done();
}

static void test_embed_mix4(void)
{
    ops_rng = 13;
    Tensor table, yr;
    void *tb = ops_weight(&table, QUANT_BF16, 16, 40, 0);
    int32_t idx[12] = {0, 1, 4, 5, 5, 6, 9, 10, 15, 15, 15, 15};
    float w[12] = {0.25f, 0.25f, 0.25f, 0.25f, 0.5f, 0.5f, 0.0f, 0.0f, 1.0f, 0.0f, 0.0f, 0.0f};
    bk_host_alloc(NULL, &yr, 3, 40, NULL);
    ops_ref_backend.embed_mix4(NULL, &yr, &table, idx, w, 3);
    Backend *b;
    OPS_FOR_EACH(b) {
        Tensor dt = ops_up(b, &table), dy = ops_new(b, 3, 40);
        b->embed_mix4(b, &dy, &dt, idx, w, 3);
        OPS_CHECK(b, dy, yr, 0.0f, 0.0f);
        OPS_REL(b, &dt, &dy);
    }
    /* weight 1 on one row: that row exactly; the result is a bf16 value */
    for (int c = 0; c < 40; c++) {
        float v = ((float *)yr.data)[2 * 40 + c];
        CHECK(v == bk_elem(&table, 15, c));
        float m = ((float *)yr.data)[c];
        CHECK(m == bk_round_bf16(m));
    }
    free(tb);
    bk_host_release(NULL, &yr);
    ops_done();
}

static void test_rows(void)
{
    ops_rng = 14;
    Tensor d0 = ops_act(9, 33), dr = ops_copy(&d0), src = ops_act(3, 33);
    int32_t rows[3] = {8, 0, 4};
    Tensor sr = ops_copy(&dr); /* after set_rows */
    ops_ref_backend.set_rows(NULL, &sr, rows, &src, 3);
    CHECK(((float *)sr.data)[8 * 33 + 5] == ((float *)src.data)[5]);
    Tensor ar = ops_copy(&sr); /* after add_rows */
    ops_ref_backend.add_rows(NULL, &ar, rows, &src, 3);
    CHECK(((float *)ar.data)[4 * 33 + 1] == 2.0f * ((float *)src.data)[2 * 33 + 1]);
    Tensor gr;
    bk_host_alloc(NULL, &gr, 3, 33, NULL);
    ops_ref_backend.get_rows(NULL, &gr, &ar, rows, 3);
    Backend *b;
    OPS_FOR_EACH(b) {
        Tensor dd = ops_up(b, &d0), ds = ops_up(b, &src), dg = ops_new(b, 3, 33);
        b->set_rows(b, &dd, rows, &ds, 3);
        OPS_CHECK(b, dd, sr, 0.0f, 0.0f);
        b->add_rows(b, &dd, rows, &ds, 3);
        OPS_CHECK(b, dd, ar, 0.0f, 0.0f);
        b->get_rows(b, &dg, &dd, rows, 3);
        OPS_CHECK(b, dg, gr, 0.0f, 0.0f);
        OPS_REL(b, &dd, &ds, &dg);
    }
    OPS_REL(&ops_ref_backend, &d0, &dr, &src, &sr, &ar, &gr);
    ops_done();
}

static void test_norms(void)
{
    ops_rng = 15;
    int64_t shapes[][2] = {{1, 16}, {7, 33}, {5, 2560}, {3, 1024}, {64, 128}};
    for (int s = 0; s < 5; s++) {
        int64_t n = shapes[s][0], d = shapes[s][1];
        Tensor x = ops_act(n, d), w, bias, rr, lr;
        void *wb = ops_weight(&w, QUANT_BF16, 1, d, 0), *bb = ops_weight(&bias, QUANT_F32, 1, d, 0);
        bk_host_alloc(NULL, &rr, n, d, NULL);
        bk_host_alloc(NULL, &lr, n, d, NULL);
        ops_ref_backend.rmsnorm(NULL, &rr, &x, &w, 1e-6f);
        ops_ref_backend.layernorm(NULL, &lr, &x, &w, &bias, 1e-6f);
        Backend *b;
        OPS_FOR_EACH(b) {
            Tensor dx = ops_up(b, &x), dw = ops_up(b, &w), dbias = ops_up(b, &bias),
                   dy = ops_new(b, n, d);
            b->rmsnorm(b, &dy, &dx, &dw, 1e-6f);
            OPS_CHECK(b, dy, rr, 1e-6f, 1e-5f);
            b->layernorm(b, &dy, &dx, &dw, &dbias, 1e-6f);
            OPS_CHECK(b, dy, lr, 1e-6f, 1e-5f);
            b->rmsnorm(b, &dx, &dx, &dw, 1e-6f); /* y may alias x */
            OPS_CHECK(b, dx, rr, 1e-6f, 1e-5f);
            OPS_REL(b, &dx, &dw, &dbias, &dy);
        }
        free(wb);
        free(bb);
        OPS_REL(&ops_ref_backend, &x, &rr, &lr);
    }
    /* a hand value: rmsnorm of (3, 4) with w = 1 is x / sqrt(12.5) */
    float xv[2] = {3.0f, 4.0f}, wv[2] = {1.0f, 1.0f}, yv[2];
    Tensor x2 = {.type = QUANT_F32, .rows = 1, .cols = 2, .data = xv};
    Tensor w2 = {.type = QUANT_F32, .rows = 1, .cols = 2, .data = wv};
    Tensor y2 = {.type = QUANT_F32, .rows = 1, .cols = 2, .data = yv};
    ops_ref_backend.rmsnorm(NULL, &y2, &x2, &w2, 0.0f);
    CHECK(fabsf(yv[0] - 3.0f / sqrtf(12.5f)) < 1e-6f && fabsf(yv[1] - 4.0f / sqrtf(12.5f)) < 1e-6f);
    ops_done();
}

static void test_elementwise(void)
{
    ops_rng = 16;
    Tensor a = ops_act(7, 301), c = ops_act(7, 301);
    Tensor add = ops_copy(&a), sw = ops_copy(&a), gt = ops_copy(&a), ge = ops_copy(&a);
    ops_ref_backend.add(NULL, &add, &a, &c);
    ops_ref_backend.swiglu(NULL, &sw, &a, &c);
    ops_ref_backend.gelu_tanh(NULL, &gt);
    ops_ref_backend.gelu_erf(NULL, &ge);
    /* the cpu backend's vector exp / erfc (cpu_kern.inc) differ from libm by a few ulp:
     * tests/test_attn.c bounds them over wide ranges */
    Backend *b;
    OPS_FOR_EACH(b) {
        Tensor da = ops_up(b, &a), dc = ops_up(b, &c), dy = ops_new(b, 7, 301);
        b->add(b, &dy, &da, &dc);
        OPS_CHECK(b, dy, add, 0.0f, 0.0f);
        b->swiglu(b, &dy, &da, &dc);
        OPS_CHECK(b, dy, sw, 2e-7f, 1e-6f);
        Tensor dt = ops_up(b, &a), de = ops_up(b, &a);
        b->gelu_tanh(b, &dt);
        OPS_CHECK(b, dt, gt, 2e-7f, 1e-6f);
        b->gelu_erf(b, &de);
        OPS_CHECK(b, de, ge, 2e-7f, 1e-6f);
        b->add(b, &da, &da, &dc); /* y may alias a */
        OPS_CHECK(b, da, add, 0.0f, 0.0f);
        OPS_REL(b, &da, &dc, &dy, &dt, &de);
    }
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
    OPS_REL(&ops_ref_backend, &a, &c, &add, &sw, &gt, &ge);
    ops_done();
}

static void test_rotary(void)
{
    ops_rng = 17;
    Backend *b;
    /* mrope: tiny (head_dim 16, [4,2,2]) and real (head_dim 128, [24,20,20]) */
    int secs[2][3] = {{4, 2, 2}, {24, 20, 20}}, hds[2] = {16, 128};
    for (int s = 0; s < 2; s++) {
        int n = 6, heads = 3;
        Tensor x = ops_act(n, heads * hds[s]), r = ops_copy(&x);
        int32_t pos[18];
        for (int i = 0; i < 18; i++)
            pos[i] = (i * 37) % 1000;
        ops_ref_backend.mrope(NULL, &r, pos, heads, secs[s], 5e6f);
        OPS_FOR_EACH(b) {
            Tensor dx = ops_up(b, &x);
            b->mrope(b, &dx, pos, heads, secs[s], 5e6f);
            OPS_CHECK(b, dx, r, 0.0f, 0.0f);
            OPS_REL(b, &dx);
        }
        /* a rotation keeps each (d, d+half) pair's norm */
        const float *xa = x.data, *ra = r.data;
        int half = hds[s] / 2;
        float n0 = xa[0] * xa[0] + xa[half] * xa[half], n1 = ra[0] * ra[0] + ra[half] * ra[half];
        CHECK(fabsf(n0 - n1) < 1e-5f);
        OPS_REL(&ops_ref_backend, &x, &r);
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
    OPS_REL(&ops_ref_backend, &x, &r, &r2);
    /* rope2d at vision shapes: head_dim 16 (tiny) and 64 (real) */
    for (int hd = 16; hd <= 64; hd *= 4) {
        Tensor v = ops_act(8, 4 * hd), vr = ops_copy(&v);
        int32_t p[16];
        for (int i = 0; i < 16; i++)
            p[i] = i * 3 % 7;
        ops_ref_backend.rope2d(NULL, &vr, p, 4, 10000.0f);
        OPS_FOR_EACH(b) {
            Tensor dv = ops_up(b, &v);
            b->rope2d(b, &dv, p, 4, 10000.0f);
            OPS_CHECK(b, dv, vr, 0.0f, 0.0f);
            OPS_REL(b, &dv);
        }
        OPS_REL(&ops_ref_backend, &v, &vr);
    }
    ops_done();
}

/* Causal attention over the KV cache on every backend against the oracle. */
static void ops_attention_case(const BackendSeq *seqs, int n_seq, int n, int heads, int kvh,
                               int hd, int64_t cache_rows, float scale)
{
    Tensor q = ops_act(n, heads * hd), kc = ops_act(cache_rows, kvh * hd),
           vc = ops_act(cache_rows, kvh * hd), orr;
    bk_host_alloc(NULL, &orr, n, heads * hd, NULL);
    ops_ref_backend.attention(NULL, &orr, &q, &kc, &vc, seqs, n_seq, heads, kvh, scale);
    Backend *b;
    OPS_FOR_EACH(b) {
        Tensor dq = ops_up(b, &q), dk = ops_up(b, &kc), dv = ops_up(b, &vc),
               dout = ops_new(b, n, heads * hd);
        b->attention(b, &dout, &dq, &dk, &dv, seqs, n_seq, heads, kvh, scale);
        OPS_CHECK(b, dout, orr, 1e-6f, 1e-5f);
        OPS_REL(b, &dq, &dk, &dv, &dout);
    }
    OPS_REL(&ops_ref_backend, &q, &kc, &vc, &orr);
}

/* Segmented attention (vision) on every backend against the oracle. */
static void ops_attention_seg_case(const int32_t *cu, int n_seg, int heads, int cols, float scale)
{
    int n = cu[n_seg];
    Tensor q = ops_act(n, cols), k = ops_act(n, cols), v = ops_act(n, cols), sr;
    bk_host_alloc(NULL, &sr, n, cols, NULL);
    ops_ref_backend.attention_seg(NULL, &sr, &q, &k, &v, cu, n_seg, heads, scale);
    Backend *b;
    OPS_FOR_EACH(b) {
        Tensor dq = ops_up(b, &q), dk = ops_up(b, &k), dv = ops_up(b, &v), dout = ops_new(b, n, cols);
        b->attention_seg(b, &dout, &dq, &dk, &dv, cu, n_seg, heads, scale);
        OPS_CHECK(b, dout, sr, 1e-6f, 1e-5f);
        OPS_REL(b, &dq, &dk, &dv, &dout);
    }
    /* a segment of one row (the last, when it has one): o = v */
    if (cu[n_seg] - cu[n_seg - 1] == 1)
        for (int d = 0; d < cols; d++)
            CHECK(fabsf(((float *)sr.data)[(n - 1) * cols + d] -
                        ((float *)v.data)[(n - 1) * cols + d]) < 1e-6f);
    OPS_REL(&ops_ref_backend, &q, &k, &v, &sr);
}

static void test_attention(void)
{
    ops_rng = 18;
    /* two sequences in one batch: one prefill of 5 with 2 cached, one decode of 1 with 9 */
    int heads = 4, kvh = 2, hd = 16;
    BackendSeq seqs[2] = {{.row0 = 0, .n_tok = 5, .kv_row0 = 0, .n_past = 2},
                          {.row0 = 5, .n_tok = 1, .kv_row0 = 16, .n_past = 9}};
    ops_attention_case(seqs, 2, 6, heads, kvh, hd, 32, 0.25f);
    /* the oracle: the first token of a sequence with nothing cached sees only itself: o = v */
    Tensor q = ops_act(6, heads * hd), kc = ops_act(32, kvh * hd), vc = ops_act(32, kvh * hd);
    Tensor orr;
    bk_host_alloc(NULL, &orr, 6, heads * hd, NULL);
    BackendSeq one = {.row0 = 0, .n_tok = 1, .kv_row0 = 3, .n_past = 0};
    ops_ref_backend.attention(NULL, &orr, &q, &kc, &vc, &one, 1, heads, kvh, 0.25f);
    for (int h = 0; h < heads; h++)
        for (int d = 0; d < hd; d++)
            CHECK(fabsf(((float *)orr.data)[h * hd + d] -
                        ((float *)vc.data)[3 * kvh * hd + (h / 2) * hd + d]) < 1e-6f);
    OPS_REL(&ops_ref_backend, &q, &kc, &vc, &orr);
    /* segmented (vision): segments of 4, 7 and 1 rows */
    int32_t cu[4] = {0, 4, 11, 12};
    ops_attention_seg_case(cu, 3, 4, 64, 0.25f);
    /* large enough for the cpu backend's parallel path: 4B head_dim, 8 heads over 2 */
    BackendSeq big[3] = {{.row0 = 0, .n_tok = 40, .kv_row0 = 0, .n_past = 30},
                         {.row0 = 40, .n_tok = 1, .kv_row0 = 100, .n_past = 99},
                         {.row0 = 41, .n_tok = 7, .kv_row0 = 200, .n_past = 0}};
    ops_attention_case(big, 3, 48, 8, 2, 128, 300, 0.0884f);
    int32_t cu2[3] = {0, 64, 100};
    ops_attention_seg_case(cu2, 2, 4, 256, 0.125f);
    ops_done();
}

static void test_argmax(void)
{
    float v[8] = {1.0f, 3.0f, 3.0f, -1.0f, /* row 2 */ -5.0f, -5.0f, -5.0f, -6.0f};
    Tensor x = {.type = QUANT_F32, .rows = 2, .cols = 4, .data = v, .owned = 1};
    int32_t r[2];
    ops_ref_backend.argmax(NULL, &x, r);
    CHECK_EQ(r[0], 1); /* first index on ties */
    CHECK_EQ(r[1], 0);
    /* and a wide random row set (the vocabulary's width) */
    ops_rng = 20;
    Tensor big = ops_act(3, 151936);
    int32_t rb[3];
    ops_ref_backend.argmax(NULL, &big, rb);
    Backend *b;
    OPS_FOR_EACH(b) {
        int32_t c[2] = {-1, -1}, cb[3] = {-1, -1, -1};
        Tensor dx = ops_up(b, &x), db = ops_up(b, &big);
        b->argmax(b, &dx, c);
        CHECK_EQ(c[0], 1);
        CHECK_EQ(c[1], 0);
        b->argmax(b, &db, cb);
        for (int i = 0; i < 3; i++)
            CHECK_EQ(cb[i], rb[i]);
        OPS_REL(b, &dx, &db);
    }
    bk_host_release(NULL, &big);
    ops_done();
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

/* ---- lifecycle and loader ---- */

static void test_lifecycle(void)
{
    const char *names[] = {"ref", "cpu", "cputest"};
    for (int i = 0; i < 3; i++) {
        char err[VLQ_ERRLEN] = "";
        Backend *b = NULL;
        BackendOpenOptions o = {.threads = 2};
        CHECK_EQ(backend_open(names[i], &o, &b, err), 0);
        if (!b) {
            test_fail(__FILE__, __LINE__, "%s: %s", names[i], err);
            continue;
        }
        CHECK_STR(b->name, names[i]);
        CHECK_EQ(b->abi_version, BACKEND_ABI_VERSION);
        char d[512];
        b->describe(b, d, sizeof d);
        CHECK(!strncmp(d, names[i], strlen(names[i])));
        if (i > 0) { /* cpu and its plugin: threads as asked, features, kernels */
            CHECK(strstr(d, "2 OpenMP threads") != NULL);
            CHECK(strstr(d, "CPU features:") != NULL);
            CHECK(strstr(d, "kernels:") != NULL);
        }
        int64_t free_b = -1, total_b = -1;
        CHECK_EQ(b->meminfo(b, &free_b, &total_b, err), 0);
        CHECK(total_b > (int64_t)64 << 20);
        CHECK(free_b > 0 && free_b <= total_b);
        CHECK_EQ(b->sync(b, err), 0);
        backend_close(b);
    }
    backend_close(NULL);
    /* two instances of one plugin are independent: closing one leaves the other working */
    char err[VLQ_ERRLEN];
    Backend *b1, *b2;
    CHECK_EQ(backend_open("cputest", NULL, &b1, err), 0);
    CHECK_EQ(backend_open("cputest", NULL, &b2, err), 0);
    CHECK(b1 != b2);
    backend_close(b1);
    Tensor t;
    float in[4] = {1, -2, 3, 0.5f}, out[4] = {0};
    CHECK_EQ(b2->alloc(b2, &t, 1, 4, err), 0);
    b2->write(b2, &t, 0, in, 1);
    b2->gelu_erf(b2, &t);
    b2->read(b2, &t, 0, out, 1);
    CHECK(fabsf(out[0] - 0.8413447f) < 1e-6f);
    b2->release(b2, &t);
    backend_close(b2);
}

/* The plugin is built with -fvisibility=hidden: its only export is the entry. */
static void test_plugin_exports(void)
{
    char dir[4096];
    ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
    CHECK(n > 0);
    if (n <= 0)
        return;
    dir[n] = 0;
    *strrchr(dir, '/') = 0;
    char path[4200];
    snprintf(path, sizeof path, "%s/vlq-backend-cputest.so", dir);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    CHECK(h != NULL);
    if (!h)
        return;
    CHECK(dlsym(h, BACKEND_ENTRY_SYMBOL) != NULL);
    CHECK(dlsym(h, "backend_cpu") == NULL);
    CHECK(dlsym(h, "bk_host_alloc") == NULL);
    CHECK(dlsym(h, "err_set") == NULL);
    dlclose(h);
}

static void test_loader_errors(void)
{
    char err[VLQ_ERRLEN];
    Backend *b = (Backend *)1;
    /* not a name */
    CHECK_EQ(backend_open("../cpu", NULL, &b, err), VLQ_EINPUT);
    CHECK(b == NULL);
    CHECK(strstr(err, "not a backend name") != NULL);
    CHECK_EQ(backend_open("", NULL, &b, err), VLQ_EINPUT);
    /* no such plugin: the places looked at are named */
    CHECK_EQ(backend_open("nosuch", NULL, &b, err), VLQ_EINPUT);
    CHECK(strstr(err, "vlq-backend-nosuch.so") != NULL);
    CHECK(strstr(err, BACKEND_PLUGIN_DIR) != NULL);
    /* a shared object without the entry */
    CHECK_EQ(backend_open("nosym", NULL, &b, err), VLQ_ENOTSUP);
    CHECK(strstr(err, "/vlq-backend-nosym.so: not a vlq backend (no vlq_backend_entry") != NULL);
    /* a plugin that refuses this ABI, and one that claims another */
    CHECK_EQ(backend_open("refuse", NULL, &b, err), VLQ_ENOTSUP);
    CHECK(strstr(err, "/vlq-backend-refuse.so: refuses backend ABI version") != NULL);
    CHECK_EQ(backend_open("badabi", NULL, &b, err), VLQ_ENOTSUP);
    char want[128];
    snprintf(want, sizeof want, "built for backend ABI version %d, this vlq needs %d",
             BACKEND_ABI_VERSION + 1, BACKEND_ABI_VERSION);
    CHECK(strstr(err, want) != NULL);
    CHECK(strstr(err, "/vlq-backend-badabi.so") != NULL);
    /* the right ABI but a table without ops: refused before any op is called */
    CHECK_EQ(backend_open("empty", NULL, &b, err), VLQ_ENOTSUP);
    CHECK(strstr(err, "/vlq-backend-empty.so: its table has no 'describe' op") != NULL);
    /* the plugins beside this binary, each once, built-in names never */
    char *list = backend_plugin_list();
    CHECK(list != NULL);
    const char *want_list[] = {"cputest", "nosym", "badabi", "refuse"};
    char padded[512];
    snprintf(padded, sizeof padded, " %s ", list ? list : "");
    for (int i = 0; i < 4; i++) {
        char w[32];
        snprintf(w, sizeof w, " %s ", want_list[i]);
        CHECK(strstr(padded, w) != NULL);
    }
    CHECK(strstr(padded, " cpu ") == NULL && padded[1] != ' ');
    free(list);
    /* a file that is not a shared object */
    CHECK_EQ(test_sh("echo junk > vlq-backend-junk.so && touch vlq-backend-.so vlq-backend-A.so"), 0);
    setenv("VLQ_BACKEND_DIR", test_tmpdir(), 1);
    list = backend_plugin_list();
    CHECK_STR(list, "junk");
    free(list);
    CHECK_EQ(backend_open("junk", NULL, &b, err), VLQ_ENOTSUP);
    CHECK(strstr(err, "/vlq-backend-junk.so: cannot load") != NULL);
    /* $VLQ_BACKEND_DIR is the only place looked at when set */
    CHECK_EQ(backend_open("cputest", NULL, &b, err), VLQ_EINPUT);
    CHECK(strstr(err, test_tmpdir()) != NULL && strstr(err, "$VLQ_BACKEND_DIR") != NULL);
    CHECK(strstr(err, BACKEND_PLUGIN_DIR) == NULL);
    /* built-in names never touch the loader */
    CHECK_EQ(backend_open("cpu", NULL, &b, err), 0);
    backend_close(b);
    unsetenv("VLQ_BACKEND_DIR");
}

TEST_GROUP(ops, {"matmul", test_matmul}, {"q4_layout", test_q4_layout},
           {"bf16_round", test_bf16_round}, {"embed", test_embed},
           {"embed_mix4", test_embed_mix4}, {"rows", test_rows}, {"norms", test_norms},
           {"elementwise", test_elementwise}, {"rotary", test_rotary},
           {"attention", test_attention}, {"argmax", test_argmax}, {"views", test_views},
           {"lifecycle", test_lifecycle}, {"plugin_exports", test_plugin_exports},
           {"loader_errors", test_loader_errors})
