/* selftest: a backend against a reference backend, op by op and on a model (selftest.h).
 *
 * Every case draws its inputs on the host, runs them through the reference and the
 * backend under test the same way (alloc + write for activations, weight for weights,
 * the op, sync, read), and compares the two host copies. Inputs are uniform in [-1, 1)
 * (weights too; Q4/Q8 scales in [0.01, 0.11)), never zeros, at the 4B model's widths.
 *
 * Tolerances. The reference is normally the cpu backend (itself held to the scalar
 * oracle by tests/test_ops.c); a device may reorder sums, round activations to f16 for
 * its tensor cores, and use its own libm: each tolerance below bounds what those may
 * change, and no more, so an indexing or masking error (errors of the order of the
 * values) always fails. */
#include "selftest.h"

#include "backend_int.h"
#include "decoder.h"
#include "err.h"
#include "half.h"
#include "quant.h"
#include "util.h"
#include "vision.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A run of cases: the two backends, the input generator, the report. */
typedef struct {
    Backend *ref, *b;
    uint64_t rng;
    SelftestReport report;
    void *user;
    int failed;
} St;

static float st_rand(St *s) /* uniform in [-1, 1) */
{
    s->rng = s->rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((s->rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static float *st_floats(St *s, int64_t n)
{
    float *p = xmalloc((size_t)n * sizeof *p);
    for (int64_t i = 0; i < n; i++)
        p[i] = st_rand(s);
    return p;
}

/* Random weight bytes [rows, cols] of type in quant.h's layout (caller frees). */
static void *st_weight_bytes(St *s, QuantType type, int64_t rows, int64_t cols, int group)
{
    size_t nb = quant_nbytes(type, rows, cols, group ? group : 1);
    uint8_t *p = xcalloc(1, nb);
    int64_t n = rows * cols;
    if (type == QUANT_Q4 || type == QUANT_Q8) {
        uint16_t *scale = (uint16_t *)(p + quant_scale_offset(type, rows, cols));
        for (int64_t g = 0; g < n / group; g++) {
            scale[g] = half_f32_to_f16(0.01f + 0.1f * fabsf(st_rand(s)));
            for (int j = 0; j < group; j++) {
                int64_t i = g * group + j;
                if (type == QUANT_Q8) {
                    ((int8_t *)p)[i] = (int8_t)(st_rand(s) * 127.0f);
                } else {
                    int q = (int)((st_rand(s) + 1.0f) * 8.0f) & 15, half = group / 2;
                    p[g * half + j % half] |= (uint8_t)(j < half ? q : q << 4);
                }
            }
        }
        return p;
    }
    for (int64_t i = 0; i < n; i++) {
        float v = st_rand(s);
        if (type == QUANT_F32)
            ((float *)p)[i] = v;
        else if (type == QUANT_F16)
            ((uint16_t *)p)[i] = half_f32_to_f16(v);
        else
            ((uint16_t *)p)[i] = half_f32_to_bf16(v);
    }
    return p;
}

static const char *st_type_name(QuantType t)
{
    switch (t) {
    case QUANT_F32: return "f32";
    case QUANT_F16: return "f16";
    case QUANT_BF16: return "bf16";
    case QUANT_Q8: return "q8";
    case QUANT_Q4: return "q4";
    }
    return "?";
}

/* ---- the two sides of a case ---- */

/* What one backend's run of a case holds: up to 8 tensors, released together. */
typedef struct {
    Backend *b;
    Tensor t[8];
    int n;
    int rc;
    char err[VLQ_ERRLEN];
} StSide;

static Tensor *st_side_slot(StSide *d)
{
    return d->n < 8 ? &d->t[d->n++] : &d->t[7];
}

/* An F32 activation [rows, cols] = host (NULL: zeros) on d's backend. */
static Tensor *st_act(StSide *d, const float *host, int64_t rows, int64_t cols)
{
    Tensor *t = st_side_slot(d);
    memset(t, 0, sizeof *t);
    if (!d->rc && !(d->rc = d->b->alloc(d->b, t, rows, cols, d->err)) && host)
        d->b->write(d->b, t, 0, host, rows);
    return t;
}

/* A dense tensor of type [rows, cols] (a KV cache) on d's backend, zeroed. */
static Tensor *st_typed(StSide *d, QuantType type, int64_t rows, int64_t cols)
{
    Tensor *t = st_side_slot(d);
    memset(t, 0, sizeof *t);
    if (!d->rc)
        d->rc = d->b->alloc_typed(d->b, t, type, rows, cols, d->err);
    return t;
}

/* A weight over bytes on d's backend. */
static Tensor *st_weight(StSide *d, const void *bytes, QuantType type, int64_t rows,
                         int64_t cols, int group)
{
    Tensor *t = st_side_slot(d);
    memset(t, 0, sizeof *t);
    if (!d->rc)
        d->rc = d->b->weight(d->b, t, type, rows, cols, group, bytes, d->err);
    return t;
}

/* Sync, read t into a new host array (NULL on an error, in d), release everything. */
static float *st_finish(StSide *d, const Tensor *t)
{
    float *out = NULL;
    if (!d->rc)
        d->rc = d->b->sync(d->b, d->err);
    if (!d->rc) {
        out = xmalloc((size_t)(t->rows * t->cols) * sizeof *out);
        d->b->read(d->b, t, 0, out, t->rows);
        if ((d->rc = d->b->sync(d->b, d->err)) != 0) {
            free(out);
            out = NULL;
        }
    }
    for (int i = 0; i < d->n; i++)
        d->b->release(d->b, &d->t[i]);
    d->n = 0;
    return out;
}

/* Compare got with want (n floats) and report the case; frees both. */
static void st_compare(St *s, SelftestCase *c, float *got, float *want, int64_t n,
                       const StSide *dr, const StSide *db)
{
    c->ok = 0;
    if (!got || !want) {
        const StSide *bad = !want ? dr : db;
        snprintf(c->err, sizeof c->err, "%s: %s", bad->b->name, bad->err);
    } else {
        double d2 = 0, w2 = 0, worst = 0;
        int over = 0, nan = 0;
        for (int64_t i = 0; i < n; i++) {
            double d = fabs((double)got[i] - (double)want[i]);
            nan += isnan(got[i]) || isnan(want[i]);
            worst = d > worst ? d : worst;
            d2 += d * d;
            w2 += (double)want[i] * want[i];
            over += d > c->atol + c->rtol * fabs((double)want[i]);
        }
        c->max_abs = worst;
        c->rel = w2 > 0 ? sqrt(d2 / w2) : sqrt(d2);
        c->ok = !nan && (c->rel_tol > 0 ? c->rel <= c->rel_tol : !over);
        if (nan)
            snprintf(c->err, sizeof c->err, "%d NaN values", nan);
    }
    free(got);
    free(want);
    s->failed += !c->ok;
    if (s->report)
        s->report(s->user, c);
}

/* Both sides of a case: the same body runs on each backend (one loop, two passes). */
#define ST_SIDES(s, d, outv)                                                                    \
    StSide sides_[2] = {{.b = (s)->ref}, {.b = (s)->b}};                                         \
    float *outv[2] = {NULL, NULL};                                                               \
    for (int k_ = 0; k_ < 2; k_++)                                                               \
        for (StSide *d = &sides_[k_]; d; d = NULL)

#define ST_DONE(s, c, outv, n) st_compare((s), (c), outv[1], outv[0], (n), &sides_[0], &sides_[1])

/* ---- the op cases ---- */

/* matmul: y[n, out] = x W^T (+ bias). The sums of `in` products may run in any order
 * (2e-6 per term, as test_ops) and a device may round x to f16 for its tensor cores
 * (2^-11 relative per element: sd 2^-11 / sqrt(3) |w| |x| per term, 6 sd over sqrt(in)
 * terms); Q4/Q8 on the cpu reference round x to int8 (tests/test_qmm.c's bound, 6 sd). */
static void st_matmul(St *s, QuantType type, int group, int64_t n, int64_t in, int64_t out,
                      int with_bias)
{
    float *x = st_floats(s, n * in);
    void *w = st_weight_bytes(s, type, out, in, group);
    void *bias = st_weight_bytes(s, QUANT_F32, 1, out, 0);
    float wmax = type == QUANT_Q4 ? 0.11f * 8.0f : type == QUANT_Q8 ? 0.11f * 127.0f : 1.0f;
    SelftestCase c = {.op = "matmul", .rtol = 1e-5};
    c.atol = 2e-6 * (double)in + 6.0 * sqrt((double)in) * wmax * ldexp(1.0, -11) / sqrt(3.0);
    if (type == QUANT_Q4 || type == QUANT_Q8)
        c.atol += 6.0 * sqrt((double)in) * wmax / 127.0 / sqrt(12.0);
    snprintf(c.what, sizeof c.what, "%s%s%.0d [%lld x %lld -> %lld]%s", st_type_name(type),
             group ? " g" : "", group, (long long)n, (long long)in, (long long)out,
             with_bias ? " + bias" : "");
    ST_SIDES(s, d, res) {
        Tensor *dx = st_act(d, x, n, in), *dw = st_weight(d, w, type, out, in, group);
        Tensor *db = st_weight(d, bias, QUANT_F32, 1, out, 0), *dy = st_act(d, NULL, n, out);
        if (!d->rc)
            d->b->matmul(d->b, dy, dx, dw, with_bias ? db : NULL);
        res[k_] = st_finish(d, dy);
    }
    ST_DONE(s, &c, res, n * out);
    free(x);
    free(w);
    free(bias);
}

/* embed: rows of a table of any type, dequantised exactly (s * q is exact in f32). */
static void st_embed(St *s, QuantType type, int group)
{
    int64_t rows = 300, d = 2560;
    int32_t ids[9];
    for (int i = 0; i < 9; i++)
        ids[i] = (int32_t)((st_rand(s) + 1.0f) * 150.0f) % (int32_t)rows;
    ids[8] = ids[0]; /* a repeat */
    void *table = st_weight_bytes(s, type, rows, d, group);
    SelftestCase c = {.op = "embed"};
    snprintf(c.what, sizeof c.what, "%s [9 of %lld x %lld]", st_type_name(type),
             (long long)rows, (long long)d);
    ST_SIDES(s, dd, res) {
        Tensor *dt = st_weight(dd, table, type, rows, d, group), *dy = st_act(dd, NULL, 9, d);
        if (!dd->rc)
            dd->b->embed(dd->b, dy, dt, ids, 9);
        res[k_] = st_finish(dd, dy);
    }
    ST_DONE(s, &c, res, 9 * d);
    free(table);
}

/* embed_mix4 (vision pos-embed interpolation, bf16 table): every product and partial
 * sum rounded to bf16 by rule, so at most one bf16 ulp (2^-8) from a fused multiply-add. */
static void st_embed_mix4(St *s)
{
    int64_t rows = 48 * 48, d = 1024;
    int n = 64;
    int32_t *idx = xmalloc((size_t)n * 4 * sizeof *idx);
    float *w = xmalloc((size_t)n * 4 * sizeof *w);
    for (int i = 0; i < n * 4; i++) {
        idx[i] = (int32_t)((st_rand(s) + 1.0f) * 0.5f * (float)rows) % (int32_t)rows;
        w[i] = half_bf16_to_f32(half_f32_to_bf16(fabsf(st_rand(s)) * 0.5f));
    }
    void *table = st_weight_bytes(s, QUANT_BF16, rows, d, 0);
    SelftestCase c = {.op = "embed_mix4", .atol = 1e-6, .rtol = 1.0 / 256};
    snprintf(c.what, sizeof c.what, "bf16 [%d x 4 of %lld x %lld]", n, (long long)rows,
             (long long)d);
    ST_SIDES(s, dd, res) {
        Tensor *dt = st_weight(dd, table, QUANT_BF16, rows, d, 0), *dy = st_act(dd, NULL, n, d);
        if (!dd->rc)
            dd->b->embed_mix4(dd->b, dy, dt, idx, w, n);
        res[k_] = st_finish(dd, dy);
    }
    ST_DONE(s, &c, res, n * d);
    free(table);
    free(idx);
    free(w);
}

/* set_rows, add_rows and get_rows on F32 (exact). read() takes F32 only, so set_rows into
 * F16 and BF16 caches is checked through the attention cases, which store their keys and
 * values with it. */
static void st_rows(St *s)
{
    int64_t rows = 1000, d = 1024;
    int n = 17;
    int32_t r[17];
    for (int i = 0; i < n; i++)
        r[i] = (int32_t)(i * 59 % rows); /* distinct */
    float *dst0 = st_floats(s, rows * d), *src = st_floats(s, n * d);
    static const char *const ops[3] = {"set_rows", "add_rows", "get_rows"};
    for (int op = 0; op < 3; op++) {
        SelftestCase c = {.op = ops[op]};
        snprintf(c.what, sizeof c.what, "f32 [%d rows of %lld x %lld]", n, (long long)rows,
                 (long long)d);
        ST_SIDES(s, dd, res) {
            Tensor *dt = st_act(dd, dst0, rows, d), *ds = st_act(dd, src, n, d);
            Tensor *dg = st_act(dd, NULL, n, d);
            if (!dd->rc && op == 0)
                dd->b->set_rows(dd->b, dt, r, ds, n);
            if (!dd->rc && op == 1)
                dd->b->add_rows(dd->b, dt, r, ds, n);
            if (!dd->rc && op == 2)
                dd->b->get_rows(dd->b, dg, dt, r, n);
            res[k_] = st_finish(dd, op == 2 ? dg : dt);
        }
        ST_DONE(s, &c, res, op == 2 ? n * d : rows * d);
    }
    free(dst0);
    free(src);
}

/* rmsnorm (per row of the hidden size, and per head as q_norm/k_norm) and layernorm:
 * a different summation order and a device's rsqrt (a few ulp): 1e-6 + 1e-5 |y|. */
static void st_norms(St *s)
{
    int64_t shapes[3][2] = {{7, 2560}, {33 * 32, 128}, {64, 1024}};
    for (int k = 0; k < 3; k++) {
        int64_t n = shapes[k][0], d = shapes[k][1];
        float *x = st_floats(s, n * d);
        void *w = st_weight_bytes(s, QUANT_BF16, 1, d, 0);
        void *bias = st_weight_bytes(s, QUANT_F32, 1, d, 0);
        for (int op = 0; op < 3; op++) {
            if (op == 2 && k != 2)
                continue; /* layernorm: the vision width */
            SelftestCase c = {.op = op == 2 ? "layernorm" : "rmsnorm", .atol = 1e-6, .rtol = 1e-5};
            snprintf(c.what, sizeof c.what, "[%lld x %lld]%s", (long long)n, (long long)d,
                     op == 1 ? " in place" : "");
            ST_SIDES(s, dd, res) {
                Tensor *dx = st_act(dd, x, n, d), *dy = st_act(dd, NULL, n, d);
                Tensor *dw = st_weight(dd, w, QUANT_BF16, 1, d, 0);
                Tensor *db = st_weight(dd, bias, QUANT_F32, 1, d, 0);
                if (!dd->rc && op == 0)
                    dd->b->rmsnorm(dd->b, dy, dx, dw, 1e-6f);
                if (!dd->rc && op == 1)
                    dd->b->rmsnorm(dd->b, dx, dx, dw, 1e-6f);
                if (!dd->rc && op == 2)
                    dd->b->layernorm(dd->b, dy, dx, dw, db, 1e-6f);
                res[k_] = st_finish(dd, op == 1 ? dx : dy);
            }
            ST_DONE(s, &c, res, n * d);
        }
        free(x);
        free(w);
        free(bias);
    }
}

/* add (exact), swiglu and the two GELUs (a device's expf / tanhf / erff: a few ulp). */
static void st_elementwise(St *s)
{
    int64_t n = 9, d = 9728;
    float *a = st_floats(s, n * d), *b = st_floats(s, n * d);
    static const char *const ops[4] = {"add", "swiglu", "gelu_tanh", "gelu_erf"};
    for (int op = 0; op < 4; op++) {
        SelftestCase c = {.op = ops[op], .atol = op ? 1e-6 : 0, .rtol = op ? 1e-5 : 0};
        snprintf(c.what, sizeof c.what, "[%lld x %lld]", (long long)n, (long long)d);
        ST_SIDES(s, dd, res) {
            Tensor *da = st_act(dd, a, n, d), *db = st_act(dd, b, n, d);
            Tensor *dy = st_act(dd, NULL, n, d), *out = dy;
            if (!dd->rc) {
                if (op == 0)
                    dd->b->add(dd->b, dy, da, db);
                else if (op == 1)
                    dd->b->swiglu(dd->b, dy, da, db);
                else if (op == 2)
                    dd->b->gelu_tanh(dd->b, out = da);
                else
                    dd->b->gelu_erf(dd->b, out = da);
            }
            res[k_] = st_finish(dd, out);
        }
        ST_DONE(s, &c, res, n * d);
    }
    free(a);
    free(b);
}

/* mrope (the 4B's 32 heads of 128, sections [24, 20, 20]) and rope2d (16 heads of 64):
 * the angle pos * theta^(-2j/d) may differ by an ulp of theta's power between libms, an
 * absolute angle error of up to pos * 2^-23 radians: 3e-4 at positions below 2048. */
static void st_rotary(St *s)
{
    int n = 13, heads = 32, hd = 128;
    int sec[3] = {24, 20, 20};
    int32_t pos[3 * 13], pos2[2 * 64];
    for (int i = 0; i < 3 * n; i++)
        pos[i] = (int32_t)((st_rand(s) + 1.0f) * 1000.0f);
    for (int i = 0; i < 2 * 64; i++)
        pos2[i] = (int32_t)((st_rand(s) + 1.0f) * 24.0f);
    float *x = st_floats(s, (int64_t)n * heads * hd), *v = st_floats(s, 64 * 16 * 64);
    for (int op = 0; op < 2; op++) {
        SelftestCase c = {.op = op ? "rope2d" : "mrope", .atol = 3e-4};
        int64_t rows = op ? 64 : n, cols = op ? 16 * 64 : (int64_t)heads * hd;
        snprintf(c.what, sizeof c.what, "[%lld x %d heads of %d]", (long long)rows,
                 op ? 16 : heads, op ? 64 : hd);
        ST_SIDES(s, dd, res) {
            Tensor *dx = st_act(dd, op ? v : x, rows, cols);
            if (!dd->rc && op == 0)
                dd->b->mrope(dd->b, dx, pos, heads, sec, 5e6f);
            if (!dd->rc && op == 1)
                dd->b->rope2d(dd->b, dx, pos2, 16, 10000.0f);
            res[k_] = st_finish(dd, dx);
        }
        ST_DONE(s, &c, res, rows * cols);
    }
    free(x);
    free(v);
}

/* attention over a KV cache of each type, 32 query heads over 8 KV heads of 128, four
 * sequences in one batch: a prefill from empty, a prefill after 40 cached tokens, and two
 * decode steps (300 and 0 cached). The keys and values are stored by the backend's own
 * set_rows (checked above for F32; the F16/BF16 rounding rule is exact), so both sides
 * read the same cache. A flash-attention kernel may round scores' inputs and the
 * probabilities to f16 (2^-11 relative): the output, a convex combination of values in
 * [-1, 1], moves by at most ~1e-3; 3e-3 allowed. */
static void st_attention(St *s, QuantType kv_type)
{
    int heads = 32, kvh = 8, hd = 128, slot = 512;
    BackendSeq seqs[4] = {{.row0 = 0, .n_tok = 37, .kv_row0 = 0, .n_past = 0},
                          {.row0 = 37, .n_tok = 16, .kv_row0 = slot, .n_past = 40},
                          {.row0 = 53, .n_tok = 1, .kv_row0 = 2 * slot, .n_past = 300},
                          {.row0 = 54, .n_tok = 1, .kv_row0 = 3 * slot, .n_past = 0}};
    int n = 55, n_seq = 4;
    int64_t cache = 4 * slot, kvd = (int64_t)kvh * hd;
    /* every cache row a sequence reads is written: rows kv_row0 .. +n_past+n_tok */
    int n_kv = 0;
    int32_t *kv_rows = xmalloc((size_t)cache * sizeof *kv_rows);
    for (int q = 0; q < n_seq; q++)
        for (int r = 0; r < seqs[q].n_past + seqs[q].n_tok; r++)
            kv_rows[n_kv++] = (int32_t)(seqs[q].kv_row0 + r);
    float *kin = st_floats(s, (int64_t)n_kv * kvd), *vin = st_floats(s, (int64_t)n_kv * kvd);
    float *q = st_floats(s, (int64_t)n * heads * hd);
    SelftestCase c = {.op = "attention", .atol = 3e-3};
    snprintf(c.what, sizeof c.what, "kv %s, %d/%d heads of %d, prefill 37|16+40, decode 300|0",
             st_type_name(kv_type), heads, kvh, hd);
    ST_SIDES(s, dd, res) {
        Tensor *dk = st_typed(dd, kv_type, cache, kvd), *dv = st_typed(dd, kv_type, cache, kvd);
        Tensor *sk = st_act(dd, kin, n_kv, kvd), *sv = st_act(dd, vin, n_kv, kvd);
        Tensor *dq = st_act(dd, q, n, (int64_t)heads * hd);
        Tensor *dout = st_act(dd, NULL, n, (int64_t)heads * hd);
        if (!dd->rc) {
            dd->b->set_rows(dd->b, dk, kv_rows, sk, n_kv);
            dd->b->set_rows(dd->b, dv, kv_rows, sv, n_kv);
            dd->b->attention(dd->b, dout, dq, dk, dv, seqs, n_seq, heads, kvh,
                             1.0f / sqrtf((float)hd));
        }
        res[k_] = st_finish(dd, dout);
    }
    ST_DONE(s, &c, res, (int64_t)n * heads * hd);
    free(kv_rows);
    free(kin);
    free(vin);
    free(q);
}

/* attention_seg (vision): 16 heads of 64, segments of 64, 136 and 1 rows. */
static void st_attention_seg(St *s)
{
    int32_t cu[4] = {0, 64, 200, 201};
    int n = 201, heads = 16, cols = 16 * 64;
    float *q = st_floats(s, (int64_t)n * cols), *k = st_floats(s, (int64_t)n * cols);
    float *v = st_floats(s, (int64_t)n * cols);
    SelftestCase c = {.op = "attention_seg", .atol = 3e-3};
    snprintf(c.what, sizeof c.what, "segments 64, 136, 1; %d heads of 64", heads);
    ST_SIDES(s, dd, res) {
        Tensor *dq = st_act(dd, q, n, cols), *dk = st_act(dd, k, n, cols);
        Tensor *dv = st_act(dd, v, n, cols), *dout = st_act(dd, NULL, n, cols);
        if (!dd->rc)
            dd->b->attention_seg(dd->b, dout, dq, dk, dv, cu, 3, heads, 0.125f);
        res[k_] = st_finish(dd, dout);
    }
    ST_DONE(s, &c, res, (int64_t)n * cols);
    free(q);
    free(k);
    free(v);
}

/* argmax over the vocabulary's width: the same indices (max_abs counts mismatches). */
static void st_argmax(St *s)
{
    int64_t n = 4, vocab = 151936;
    float *x = st_floats(s, n * vocab);
    SelftestCase c = {.op = "argmax"};
    snprintf(c.what, sizeof c.what, "[%lld x %lld]", (long long)n, (long long)vocab);
    int32_t idx[2][4] = {{-1, -1, -1, -1}, {-1, -1, -1, -1}};
    ST_SIDES(s, dd, res) {
        Tensor *dx = st_act(dd, x, n, vocab);
        if (!dd->rc)
            dd->b->argmax(dd->b, dx, idx[k_]);
        res[k_] = st_finish(dd, dx); /* also syncs: argmax's errors show here */
        if (res[k_])
            for (int i = 0; i < n; i++)
                res[k_][i] = (float)idx[k_][i];
    }
    ST_DONE(s, &c, res, n);
    free(x);
}

int selftest_ops(Backend *ref, Backend *b, uint64_t seed, SelftestReport report, void *user)
{
    St s = {.ref = ref, .b = b, .rng = seed * 2654435761u + 1, .report = report, .user = user};
    static const QuantType types[5] = {QUANT_F32, QUANT_F16, QUANT_BF16, QUANT_Q8, QUANT_Q4};
    for (int t = 0; t < 5; t++) {
        int g = types[t] >= QUANT_Q8 ? 32 : 0;
        st_matmul(&s, types[t], g, 1, 2560, 256, 0);  /* decode: one row */
        st_matmul(&s, types[t], g, 4, 2560, 256, 1);  /* a decode batch */
        st_matmul(&s, types[t], g, 67, 2560, 192, 0); /* prefill */
    }
    st_matmul(&s, QUANT_Q4, 128, 3, 9728, 64, 0); /* down_proj's width, wider groups */
    st_matmul(&s, QUANT_Q4, 32, 128, 2560, 128, 0);
    st_matmul(&s, QUANT_BF16, 0, 200, 1536, 96, 1); /* vision patch embed */
    for (int t = 0; t < 5; t++)
        st_embed(&s, types[t], types[t] >= QUANT_Q8 ? 32 : 0);
    st_embed_mix4(&s);
    st_rows(&s);
    st_norms(&s);
    st_elementwise(&s);
    st_rotary(&s);
    st_attention(&s, QUANT_F16);
    st_attention(&s, QUANT_BF16);
    st_attention(&s, QUANT_F32);
    st_attention_seg(&s);
    st_argmax(&s);
    return s.failed;
}

/* ---- the model ---- */

/* One backend's forward of the model: the vision features (when it has vision), the
 * prompt's logits, one decode step's logits. */
typedef struct {
    float *embeds, *deep, *logits, *logits2;
} StForward;

static void st_forward_free(StForward *f)
{
    free(f->embeds);
    free(f->deep);
    free(f->logits);
    free(f->logits2);
    memset(f, 0, sizeof *f);
}

#define ST_PROMPT 24
#define ST_GRID 8 /* an 8 x 8 patch image: 16 merged rows */

static int st_forward(const Model *m, Backend *b, const float *pixels, StForward *f, char *err)
{
    const ModelConfig *c = model_config(m);
    int has_vision = c->v_depth > 0 && model_tensor(m, "model.visual.patch_embed.proj.weight");
    int np = ST_GRID * ST_GRID, nm = np / 4, h = c->hidden_size, rc = 0;
    int32_t grid[3] = {1, ST_GRID, ST_GRID};
    memset(f, 0, sizeof *f);
    if (has_vision) {
        Vision *v = NULL;
        f->embeds = xmalloc((size_t)nm * h * sizeof(float));
        f->deep = xmalloc((size_t)(c->n_deepstack ? c->n_deepstack : 1) * nm * h * sizeof(float));
        rc = vision_new(m, b, np, &v, err);
        if (!rc)
            rc = vision_encode(v, pixels, grid, 1, f->embeds, c->n_deepstack ? f->deep : NULL,
                               err);
        if (!rc)
            rc = b->sync(b, err);
        vision_free(v);
        if (rc)
            return rc;
    }
    DecoderKV kv;
    Decoder *d = NULL;
    DecoderOptions opt = {.max_tok = ST_PROMPT + nm, .max_seq = 1};
    rc = decoder_kv_init(&kv, c, b, QUANT_F16, ST_PROMPT + nm + 8, err);
    if (rc)
        return rc;
    rc = decoder_new(m, b, &opt, &kv, &d, err);
    /* a prompt of fixed ids, the image's rows (when there is one) after the first 4;
     * positions t = h = w = index: valid MRoPE input, both sides get the same */
    int L = ST_PROMPT + (has_vision ? nm : 0);
    int32_t ids[ST_PROMPT + 64], pos[3 * (ST_PROMPT + 64)], vrows[64];
    for (int i = 0; i < L; i++) {
        ids[i] = (int32_t)((i * 7919 + 13) % (c->vocab_size > 1 ? c->vocab_size : 1));
        pos[i] = pos[L + i] = pos[2 * L + i] = i;
    }
    for (int i = 0; has_vision && i < nm; i++)
        vrows[i] = 4 + i;
    DecoderSeq sq = {.kv_row0 = 0, .kv_cap = L + 8, .n_past = 0, .n_tok = L, .ids = ids,
                     .pos = pos, .n_visual = has_vision ? nm : 0, .visual_rows = vrows,
                     .visual = f->embeds, .deepstack = c->n_deepstack ? f->deep : NULL};
    f->logits = xmalloc((size_t)c->vocab_size * sizeof(float));
    f->logits2 = xmalloc((size_t)c->vocab_size * sizeof(float));
    if (!rc)
        rc = decoder_forward(d, &sq, 1, f->logits, 0, err);
    if (!rc)
        rc = b->sync(b, err);
    int32_t next = 42, p1[3] = {L, L, L};
    DecoderSeq s1 = {.kv_row0 = 0, .kv_cap = L + 8, .n_past = L, .n_tok = 1, .ids = &next,
                     .pos = p1};
    if (!rc)
        rc = decoder_forward(d, &s1, 1, f->logits2, 0, err);
    if (!rc)
        rc = b->sync(b, err);
    decoder_free(d);
    decoder_kv_clear(&kv);
    return rc;
}

int selftest_model(const Model *m, Backend *ref, Backend *b, uint64_t seed,
                   SelftestReport report, void *user, char *err)
{
    St s = {.ref = ref, .b = b, .rng = seed * 2654435761u + 7, .report = report, .user = user};
    const ModelConfig *c = model_config(m);
    int pd = c->v_in_channels * c->v_temporal_patch_size * c->v_patch_size * c->v_patch_size;
    float *pixels = st_floats(&s, (int64_t)ST_GRID * ST_GRID * (pd > 0 ? pd : 1));
    StForward f[2];
    char errs[2][VLQ_ERRLEN] = {"", ""};
    int rc[2];
    for (int k = 0; k < 2; k++)
        rc[k] = st_forward(m, k ? b : ref, pixels, &f[k], errs[k]);
    free(pixels);
    if (rc[0]) {
        snprintf(err, VLQ_ERRLEN, "%s: %s", ref->name, errs[0]);
        for (int k = 0; k < 2; k++)
            st_forward_free(&f[k]);
        return rc[0];
    }
    /* Whole passes: errors within tolerance at each op compound over the layers, so the
     * check is on the relative error of the outputs (the golden tests' bounds). */
    int nm = ST_GRID * ST_GRID / 4;
    struct {
        const char *what;
        float *got, *want;
        int64_t n;
    } outs[3] = {
        {"vision encoder: merged features of an 8x8-patch image", f[1].embeds, f[0].embeds,
         f[0].embeds ? (int64_t)nm * c->hidden_size : 0},
        {"prompt logits (text, and the image's rows with DeepStack)", f[1].logits, f[0].logits,
         c->vocab_size},
        {"decode step logits (one token over the cache)", f[1].logits2, f[0].logits2,
         c->vocab_size},
    };
    for (int i = 0; i < 3; i++) {
        if (!outs[i].n)
            continue;
        SelftestCase cs = {.op = "forward", .rel_tol = 2e-2};
        snprintf(cs.what, sizeof cs.what, "%s", outs[i].what);
        StSide dr = {.b = ref}, db = {.b = b};
        snprintf(db.err, sizeof db.err, "%s", errs[1]);
        float *got = NULL, *want = xmalloc((size_t)outs[i].n * sizeof(float));
        memcpy(want, outs[i].want, (size_t)outs[i].n * sizeof(float));
        if (!rc[1]) {
            got = xmalloc((size_t)outs[i].n * sizeof(float));
            memcpy(got, outs[i].got, (size_t)outs[i].n * sizeof(float));
        }
        st_compare(&s, &cs, got, want, outs[i].n, &dr, &db);
    }
    for (int k = 0; k < 2; k++)
        st_forward_free(&f[k]);
    return s.failed;
}
