/* test_attn: the cpu backend's tiled attention, f16 KV cache and vector math.
 *
 * Every kernel level (VLQ_CPUCAPS=none, avx2, avx512) runs in its own forked child, since
 * cpucaps_get() reads the cap once per process; the oracle (ops_ref) runs once in the
 * parent before the fork. A level the CPU lacks runs the next lower one (said in the log).
 *
 * Tolerances: cpu against ops_ref over the same cache, |diff| <= 2e-6 + 1e-5 |ref| (fp32
 * sums in another order, a polynomial exp within 2 ulp); an f16 cache against an f32
 * cache of the same values, |diff| <= 1e-3 (keys and values in [-1, 1] rounded to 11
 * bits: 3.5e-4 seen);
 * vector exp within 2 ulp of expf on [-86.9, 88.72]; erfc within 1e-6 + 1.2e-7 x^2
 * relative of libm's double erfc on [0, 9] (the x^2 term is what one ulp of x moves
 * erfc); silu and both GELUs against double-precision libm formulas on [-30, 30] within
 * a relative 2e-7 (silu, gelu_tanh) or 1e-6 (gelu_erf) plus their arguments' conditioning,
 * or 1e-30 absolute where the result underflows. */
#include "backend.h"
#include "backend_int.h"
#include "cpu_attn.h"
#include "cpu_elem.h"
#include "cpucaps.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t attn_rng = 1;

static float attn_rand(void) /* uniform in [-1, 1) */
{
    attn_rng = attn_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((attn_rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static Tensor attn_act(int64_t rows, int64_t cols, float amp)
{
    Tensor t;
    CHECK_EQ(bk_host_alloc(&ops_ref_backend, &t, rows, cols, NULL), 0);
    for (int64_t i = 0; i < rows * cols; i++)
        ((float *)t.data)[i] = amp * attn_rand();
    return t;
}

static Tensor attn_zeros(int64_t rows, int64_t cols)
{
    Tensor t;
    CHECK_EQ(bk_host_alloc(&ops_ref_backend, &t, rows, cols, NULL), 0);
    return t;
}

/* The number of mismatches (0 or 1) of got against ref within atol + rtol |ref|. */
static int attn_cmp(const char *what, const Tensor *got, const Tensor *ref, float atol, float rtol)
{
    return !test_check_tensor(__FILE__, __LINE__, what, got->data, ref->data,
                              (size_t)(ref->rows * ref->cols), atol, rtol);
}

/* max |a - b| over two tensors of the same shape */
static double attn_maxdiff(const Tensor *a, const Tensor *b)
{
    double m = 0.0;
    for (int64_t i = 0; i < a->rows * a->cols; i++) {
        double d = fabs((double)((const float *)a->data)[i] - ((const float *)b->data)[i]);
        m = d > m ? d : m;
    }
    return m;
}

/* Run body(ctx) at each kernel level in a forked child; the child's exit status is its
 * number of failed comparisons. */
static void attn_each_level(int (*body)(void *), void *ctx)
{
    static const char *levels[] = {"none", "avx2", "avx512"};
    for (int i = 0; i < 3; i++) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            setenv("VLQ_CPUCAPS", levels[i], 1);
            int caps = cpucaps_get();
            if ((i == 0 && caps) || (i == 1 && (caps & ~CPUCAPS_AVX2))) {
                fprintf(stderr, "    level %s: the cap did not take (%s)\n", levels[i],
                        cpucaps_describe(caps));
                _exit(99);
            }
            int bad = body(ctx);
            fprintf(stderr, "    level %s (%s): %s\n", levels[i], cpucaps_describe(caps),
                    bad ? "FAILED" : "ok");
            fflush(NULL);
            _exit(bad > 90 ? 90 : bad);
        }
        int st = 0;
        CHECK(pid > 0 && waitpid(pid, &st, 0) == pid);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            test_fail(__FILE__, __LINE__, "level %s: status %d", levels[i], st);
    }
}

/* ---- vector math against libm ---- */

static int attn_math_body(void *ctx)
{
    int bad = 0, n = 1 << 20;
    float *x = malloc((size_t)n * 4), *y = malloc((size_t)n * 4);
    /* exp: a dense sweep of [-87.5, 89] plus special values */
    for (int i = 0; i < n; i++)
        x[i] = -87.5f + 176.5f * (float)i / (float)n;
    cpu_elem_exp(y, x, n);
    double max_ulp = 0.0;
    for (int i = 0; i < n; i++) {
        float want = expf(x[i]);
        if (x[i] >= -86.9f && x[i] <= 88.72f) {
            double ulp = fabs((double)y[i] - want) / (nextafterf(want, INFINITY) - want);
            max_ulp = ulp > max_ulp ? ulp : max_ulp;
        } else if (x[i] < -86.9f) {
            bad += !(fabsf(y[i] - want) < 2.4e-38f);
        } else if (x[i] > 88.7228394f) {
            bad += !(y[i] == INFINITY);
        }
    }
    fprintf(stderr, "    exp: max %.2f ulp on [-86.9, 88.72]\n", max_ulp);
    bad += max_ulp > 2.0;
    float sp[6] = {-INFINITY, INFINITY, NAN, 0.0f, -0.0f, -1000.0f}, ys[6];
    cpu_elem_exp(ys, sp, 6);
    bad += !(ys[0] == 0.0f && ys[1] == INFINITY && isnan(ys[2]) && ys[3] == 1.0f &&
             ys[4] == 1.0f && ys[5] == 0.0f);
    /* erfc(|x|) on [-9, 9] (normal results), relative to libm's double erfc: within
     * 2e-7 plus what one ulp of the input moves erfc (its condition number is 2x^2) */
    for (int i = 0; i < n; i++)
        x[i] = -9.0f + 18.0f * (float)i / (float)n;
    cpu_elem_erfc_abs(y, x, n);
    double max_rel = 0.0;
    for (int i = 0; i < n; i++) {
        double a = fabs((double)x[i]), want = erfc(a), rel = fabs(y[i] - want) / want;
        max_rel = rel > max_rel ? rel : max_rel;
        if (rel > 1e-6 + 1.2e-7 * a * a && bad++ < 5)
            fprintf(stderr, "    erfc: x %.9g: got %.9g, want %.9g\n", x[i], y[i], want);
    }
    fprintf(stderr, "    erfc: max rel err %.3g on [0, 9]\n", max_rel);
    /* silu (through swiglu, up = 1) and both GELUs on [-30, 30] against double libm,
     * relative error within 2e-7 plus the argument's conditioning (gelu_tanh: the exp of
     * 2u, u = sqrt(2/pi)(v + 0.044715 v^3); gelu_erf: erfc of v/sqrt 2), or 1e-30 absolute
     * where the result underflows */
    int m = 1 << 18;
    Tensor t = attn_zeros(1, m), g = attn_zeros(1, m), one = attn_zeros(1, m);
    float *tx = t.data, *gx = g.data;
    for (int i = 0; i < m; i++) {
        tx[i] = -30.0f + 60.0f * (float)i / (float)m;
        ((float *)one.data)[i] = 1.0f;
    }
    double errs[3] = {0, 0, 0}, near[3] = {0, 0, 0}; /* near: |v| <= 6 */
    for (int op = 0; op < 3; op++) {
        memcpy(gx, tx, (size_t)m * 4);
        if (op == 0)
            backend_cpu.swiglu(NULL, &g, &g, &one);
        else if (op == 1)
            backend_cpu.gelu_tanh(NULL, &g);
        else
            backend_cpu.gelu_erf(NULL, &g);
        for (int i = 0; i < m; i++) {
            double v = tx[i], u = 0.7978845608028654 * (v + 0.044715 * v * v * v), want, tol;
            if (op == 0) {
                want = v / (1.0 + exp(-v));
                tol = 2e-7 + 1.2e-7 * fabs(v);
            } else if (op == 1) {
                want = v / (1.0 + exp(-2.0 * u)); /* = 0.5 v (1 + tanh u), exactly */
                tol = 2e-7 + 2.4e-7 * fabs(2.0 * u);
            } else {
                want = 0.5 * v * erfc(-v / sqrt(2.0));
                tol = 1e-6 + 1.2e-7 * v * v;
            }
            double diff = fabs(gx[i] - want);
            if (fabs(want) > 1e-30) {
                double rel = diff / fabs(want);
                errs[op] = rel > errs[op] ? rel : errs[op];
                if (fabs(v) <= 6.0)
                    near[op] = rel > near[op] ? rel : near[op];
            }
            if (diff > 1e-30 + tol * fabs(want) && bad++ < 5)
                fprintf(stderr, "    op %d: v %.9g: got %.9g, want %.9g\n", op, v, gx[i], want);
        }
    }
    fprintf(stderr, "    max rel err on [-30, 30]: silu %.3g, gelu_tanh %.3g, gelu_erf %.3g\n",
            errs[0], errs[1], errs[2]);
    fprintf(stderr, "    max rel err on [-6, 6]: silu %.3g, gelu_tanh %.3g, gelu_erf %.3g\n",
            near[0], near[1], near[2]);
    bk_host_release(NULL, &t);
    bk_host_release(NULL, &g);
    bk_host_release(NULL, &one);
    free(x);
    free(y);
    return bad;
}

static void test_vmath(void) { attn_each_level(attn_math_body, NULL); }

/* ---- elementwise ops at each level against ops_ref ---- */

typedef struct {
    Tensor a, c, w, bias;                /* inputs [7, 301], w/bias [1, 301] bf16 / f16 */
    Tensor add, swiglu, gtanh, gerf;     /* ops_ref results */
    Tensor rms, ln, mrope, rope2d, x, xr; /* ops_ref results; x, xr: rotary inputs */
    int32_t pos[3 * 9], pos2[2 * 9];
} AttnElem;

static int attn_elem_body(void *ctx)
{
    AttnElem *e = ctx;
    int bad = 0, n = (int)e->a.rows, d = (int)e->a.cols;
    Tensor y = attn_zeros(n, d), g = attn_zeros(n, d);
    backend_cpu.add(NULL, &y, &e->a, &e->c);
    bad += attn_cmp("add", &y, &e->add, 0.0f, 0.0f);
    backend_cpu.swiglu(NULL, &y, &e->a, &e->c);
    bad += attn_cmp("swiglu", &y, &e->swiglu, 2e-7f, 1e-6f);
    memcpy(g.data, e->a.data, (size_t)n * d * 4);
    backend_cpu.gelu_tanh(NULL, &g);
    bad += attn_cmp("gelu_tanh", &g, &e->gtanh, 2e-7f, 1e-6f);
    memcpy(g.data, e->a.data, (size_t)n * d * 4);
    backend_cpu.gelu_erf(NULL, &g);
    bad += attn_cmp("gelu_erf", &g, &e->gerf, 2e-7f, 1e-6f);
    backend_cpu.rmsnorm(NULL, &y, &e->a, &e->w, 1e-6f);
    bad += attn_cmp("rmsnorm", &y, &e->rms, 1e-6f, 1e-5f);
    backend_cpu.layernorm(NULL, &y, &e->a, &e->w, &e->bias, 1e-6f);
    bad += attn_cmp("layernorm", &y, &e->ln, 1e-6f, 1e-5f);
    Tensor r = attn_zeros(e->x.rows, e->x.cols);
    int sec[3] = {24, 20, 20};
    memcpy(r.data, e->x.data, (size_t)(e->x.rows * e->x.cols) * 4);
    backend_cpu.mrope(NULL, &r, e->pos, 3, sec, 5e6f);
    bad += attn_cmp("mrope", &r, &e->mrope, 0.0f, 0.0f);
    Tensor r2 = attn_zeros(e->xr.rows, e->xr.cols);
    memcpy(r2.data, e->xr.data, (size_t)(e->xr.rows * e->xr.cols) * 4);
    backend_cpu.rope2d(NULL, &r2, e->pos2, 6, 10000.0f);
    bad += attn_cmp("rope2d", &r2, &e->rope2d, 0.0f, 0.0f);
    bk_host_release(NULL, &y);
    bk_host_release(NULL, &g);
    bk_host_release(NULL, &r);
    bk_host_release(NULL, &r2);
    return bad;
}

static void test_elementwise(void)
{
    attn_rng = 21;
    AttnElem e;
    int n = 7, d = 301;
    e.a = attn_act(n, d, 6.0f);
    e.c = attn_act(n, d, 1.0f);
    e.w = attn_act(1, d, 1.0f);
    e.bias = attn_act(1, d, 1.0f);
    /* weights as bf16 and f16, as the model stores them */
    uint16_t *wb = malloc((size_t)d * 2), *bb = malloc((size_t)d * 2);
    for (int i = 0; i < d; i++) {
        wb[i] = half_f32_to_bf16(((float *)e.w.data)[i]);
        bb[i] = half_f32_to_f16(((float *)e.bias.data)[i]);
    }
    Tensor w16 = {.type = QUANT_BF16, .rows = 1, .cols = d, .data = wb};
    Tensor b16 = {.type = QUANT_F16, .rows = 1, .cols = d, .data = bb};
    Tensor *outs[] = {&e.add, &e.swiglu, &e.gtanh, &e.gerf, &e.rms, &e.ln};
    for (int i = 0; i < 6; i++)
        *outs[i] = attn_zeros(n, d);
    ops_ref_backend.add(NULL, &e.add, &e.a, &e.c);
    ops_ref_backend.swiglu(NULL, &e.swiglu, &e.a, &e.c);
    memcpy(e.gtanh.data, e.a.data, (size_t)n * d * 4);
    ops_ref_backend.gelu_tanh(NULL, &e.gtanh);
    memcpy(e.gerf.data, e.a.data, (size_t)n * d * 4);
    ops_ref_backend.gelu_erf(NULL, &e.gerf);
    ops_ref_backend.rmsnorm(NULL, &e.rms, &e.a, &w16, 1e-6f);
    ops_ref_backend.layernorm(NULL, &e.ln, &e.a, &w16, &b16, 1e-6f);
    e.w = w16;
    e.bias = b16;
    e.x = attn_act(9, 3 * 128, 1.0f);
    e.xr = attn_act(9, 6 * 64, 1.0f);
    e.mrope = attn_zeros(9, 3 * 128);
    e.rope2d = attn_zeros(9, 6 * 64);
    for (int i = 0; i < 27; i++)
        e.pos[i] = (i * 53) % 4000;
    for (int i = 0; i < 18; i++)
        e.pos2[i] = (i * 7) % 64;
    int sec[3] = {24, 20, 20};
    memcpy(e.mrope.data, e.x.data, (size_t)9 * 3 * 128 * 4);
    ops_ref_backend.mrope(NULL, &e.mrope, e.pos, 3, sec, 5e6f);
    memcpy(e.rope2d.data, e.xr.data, (size_t)9 * 6 * 64 * 4);
    ops_ref_backend.rope2d(NULL, &e.rope2d, e.pos2, 6, 10000.0f);
    attn_each_level(attn_elem_body, &e);
    Tensor *all[] = {&e.a, &e.c, &e.add, &e.swiglu, &e.gtanh, &e.gerf, &e.rms, &e.ln,
                     &e.x, &e.xr, &e.mrope, &e.rope2d};
    for (int i = 0; i < 12; i++)
        bk_host_release(NULL, all[i]);
    free(wb);
    free(bb);
}

/* ---- KV cache in f16 / bf16 ---- */

/* A cache [rows, cols] of type, zeroed (alloc_typed). */
static Tensor attn_cache(QuantType type, int64_t rows, int64_t cols)
{
    Tensor t;
    CHECK_EQ(backend_cpu.alloc_typed(&backend_cpu, &t, type, rows, cols, NULL), 0);
    return t;
}

static void test_set_rows(void)
{
    attn_rng = 22;
    Tensor src = attn_act(5, 77, 3.0f);
    ((float *)src.data)[0] = 1.0f + 1.0f / 2048.0f; /* a tie: to even */
    ((float *)src.data)[1] = 1e-6f;                 /* f16 subnormal */
    ((float *)src.data)[2] = 1e5f;                  /* f16 overflow: inf */
    int32_t rows[5] = {9, 0, 4, 7, 2};
    QuantType types[3] = {QUANT_F32, QUANT_F16, QUANT_BF16};
    for (int i = 0; i < 3; i++) {
        Tensor r = attn_cache(types[i], 10, 77), c = attn_cache(types[i], 10, 77);
        ops_ref_backend.set_rows(NULL, &r, rows, &src, 5);
        backend_cpu.set_rows(NULL, &c, rows, &src, 5);
        CHECK(memcmp(r.data, c.data, bk_dense_bytes(types[i], 10 * 77)) == 0);
        for (int j = 0; j < 5; j++)
            for (int k = 0; k < 77; k++) {
                float v = ((float *)src.data)[j * 77 + k], got = bk_elem(&r, rows[j], k);
                float want = types[i] == QUANT_F16    ? bk_round_half(v)
                             : types[i] == QUANT_BF16 ? bk_round_bf16(v)
                                                      : v;
                CHECK(got == want);
            }
        if (types[i] == QUANT_F16) {
            CHECK_EQ(((uint16_t *)r.data)[9 * 77], 0x3c00);
            CHECK_EQ(((uint16_t *)r.data)[9 * 77 + 2], 0x7c00);
        }
        backend_cpu.release(&backend_cpu, &r);
        backend_cpu.release(&backend_cpu, &c);
    }
    bk_host_release(NULL, &src);
}

/* ---- attention at each level against ops_ref ---- */

#define ATTN_NSEQ 6
#define ATTN_NCASE 16

typedef struct {
    int n_heads, n_kv_heads, hd;
    QuantType type;
    Tensor q, kc, vc, want, want32; /* want: ref over this cache; want32: ref over f32 */
} AttnCase;

typedef struct {
    BackendSeq seqs[ATTN_NSEQ];
    int n_tok;
    AttnCase c[ATTN_NCASE];
    int n_case;
    /* attention_seg */
    int32_t cu[8];
    int n_seg;
    Tensor sq, sk, sv, swant;
    Tensor sq2, sk2, sv2, swant2; /* head_dim 128, segments of 1..600 rows */
    int32_t cu2[4];
} AttnData;

static int attn_body(void *ctx)
{
    AttnData *a = ctx;
    int bad = 0;
    char what[96];
    for (int i = 0; i < a->n_case; i++) {
        AttnCase *c = &a->c[i];
        Tensor o = attn_zeros(c->q.rows, c->q.cols);
        backend_cpu.attention(&backend_cpu, &o, &c->q, &c->kc, &c->vc, a->seqs, ATTN_NSEQ,
                              c->n_heads, c->n_kv_heads, 1.0f / sqrtf((float)c->hd));
        snprintf(what, sizeof what, "attention hd %d heads %d/%d %s", c->hd, c->n_heads,
                 c->n_kv_heads, c->type == QUANT_F32 ? "f32" : c->type == QUANT_F16 ? "f16" : "bf16");
        bad += attn_cmp(what, &o, &c->want, 2e-6f, 1e-5f);
        if (c->type == QUANT_F16) {
            snprintf(what, sizeof what, "f16 cache vs f32 cache, hd %d heads %d/%d", c->hd,
                     c->n_heads, c->n_kv_heads);
            bad += attn_cmp(what, &o, &c->want32, 1e-3f, 0.0f);
            fprintf(stderr, "    hd %d heads %d/%d: max |diff| %.3g against ref over f16, "
                    "%.3g against f32 cache\n", c->hd, c->n_heads, c->n_kv_heads,
                    attn_maxdiff(&o, &c->want), attn_maxdiff(&o, &c->want32));
        }
        bk_host_release(NULL, &o);
    }
    Tensor so = attn_zeros(a->sq.rows, a->sq.cols);
    backend_cpu.attention_seg(&backend_cpu, &so, &a->sq, &a->sk, &a->sv, a->cu, a->n_seg, 4,
                              0.125f);
    bad += attn_cmp("attention_seg hd 64", &so, &a->swant, 2e-6f, 1e-5f);
    Tensor so2 = attn_zeros(a->sq2.rows, a->sq2.cols);
    backend_cpu.attention_seg(&backend_cpu, &so2, &a->sq2, &a->sk2, &a->sv2, a->cu2, 3, 2,
                              0.0884f);
    bad += attn_cmp("attention_seg hd 128", &so2, &a->swant2, 2e-6f, 1e-5f);
    bk_host_release(NULL, &so);
    bk_host_release(NULL, &so2);
    return bad;
}

static void test_attention(void)
{
    attn_rng = 23;
    AttnData *a = calloc(1, sizeof *a);
    /* several sequences in one call: prefill with and without a cached prefix, decode
     * steps with long and short caches, a chunk that ends mid-tile; slots 400 rows apart */
    int n_past[ATTN_NSEQ] = {0, 300, 5, 257, 0, 130}, n_tok[ATTN_NSEQ] = {37, 1, 70, 3, 1, 9};
    int row = 0;
    for (int s = 0; s < ATTN_NSEQ; s++) {
        a->seqs[s] = (BackendSeq){.row0 = row, .n_tok = n_tok[s], .kv_row0 = 400 * s,
                                  .n_past = n_past[s]};
        row += n_tok[s];
    }
    a->n_tok = row;
    int shapes[][3] = {{4, 4, 64}, {8, 4, 64}, {16, 4, 64}, {2, 2, 128}, {4, 2, 128}, {8, 2, 128},
                       {16, 2, 128}, {32, 8, 16}};
    for (int s = 0; s < 8; s++)
        for (int f16 = 0; f16 < 2; f16++) {
            AttnCase *c = &a->c[a->n_case++];
            c->n_heads = shapes[s][0], c->n_kv_heads = shapes[s][1], c->hd = shapes[s][2];
            c->type = f16 ? (s == 7 ? QUANT_BF16 : QUANT_F16) : QUANT_F32;
            int64_t kvd = (int64_t)c->n_kv_heads * c->hd, rows = 400 * ATTN_NSEQ;
            c->q = attn_act(row, (int64_t)c->n_heads * c->hd, 1.0f);
            /* the cache is written through set_rows as the decoder does */
            Tensor k32 = attn_act(rows, kvd, 1.0f), v32 = attn_act(rows, kvd, 1.0f);
            int32_t *idx = malloc((size_t)rows * 4);
            for (int i = 0; i < rows; i++)
                idx[i] = i;
            c->kc = attn_cache(c->type, rows, kvd);
            c->vc = attn_cache(c->type, rows, kvd);
            ops_ref_backend.set_rows(NULL, &c->kc, idx, &k32, (int)rows);
            ops_ref_backend.set_rows(NULL, &c->vc, idx, &v32, (int)rows);
            c->want = attn_zeros(row, c->q.cols);
            c->want32 = attn_zeros(row, c->q.cols);
            float scale = 1.0f / sqrtf((float)c->hd);
            ops_ref_backend.attention(NULL, &c->want, &c->q, &c->kc, &c->vc, a->seqs, ATTN_NSEQ,
                                      c->n_heads, c->n_kv_heads, scale);
            ops_ref_backend.attention(NULL, &c->want32, &c->q, &k32, &v32, a->seqs, ATTN_NSEQ,
                                      c->n_heads, c->n_kv_heads, scale);
            free(idx);
            bk_host_release(NULL, &k32);
            bk_host_release(NULL, &v32);
        }
    /* segments of 1 .. 100 rows, head_dim 64, 4 heads */
    int32_t cu[8] = {0, 1, 3, 20, 84, 85, 185, 218};
    memcpy(a->cu, cu, sizeof cu);
    a->n_seg = 7;
    a->sq = attn_act(218, 256, 2.0f);
    a->sk = attn_act(218, 256, 2.0f);
    a->sv = attn_act(218, 256, 1.0f);
    a->swant = attn_zeros(218, 256);
    ops_ref_backend.attention_seg(NULL, &a->swant, &a->sq, &a->sk, &a->sv, a->cu, a->n_seg, 4,
                                  0.125f);
    /* segments of 600, 33 and 1 rows, head_dim 128, 2 heads */
    int32_t cu2[4] = {0, 600, 633, 634};
    memcpy(a->cu2, cu2, sizeof cu2);
    a->sq2 = attn_act(634, 256, 2.0f);
    a->sk2 = attn_act(634, 256, 2.0f);
    a->sv2 = attn_act(634, 256, 1.0f);
    a->swant2 = attn_zeros(634, 256);
    ops_ref_backend.attention_seg(NULL, &a->swant2, &a->sq2, &a->sk2, &a->sv2, a->cu2, 3, 2,
                                  0.0884f);
    attn_each_level(attn_body, a);
    for (int i = 0; i < a->n_case; i++) {
        AttnCase *c = &a->c[i];
        bk_host_release(NULL, &c->q);
        backend_cpu.release(&backend_cpu, &c->kc);
        backend_cpu.release(&backend_cpu, &c->vc);
        bk_host_release(NULL, &c->want);
        bk_host_release(NULL, &c->want32);
    }
    Tensor *all[] = {&a->sq, &a->sk, &a->sv, &a->swant, &a->sq2, &a->sk2, &a->sv2, &a->swant2};
    for (int i = 0; i < 8; i++)
        bk_host_release(NULL, all[i]);
    free(a);
}

/* The scratch bound the stack buffer is sized by holds for every head_dim up to 256. */
static void test_scratch(void)
{
    for (int hd = 8; hd <= CPU_ATTN_MAX_HD; hd += 8)
        CHECK(cpu_attn_scratch_bytes(hd) <= CPU_ATTN_SCRATCH_FLOATS * sizeof(float));
    CHECK(cpu_attn_scratch_bytes(64) > 0);
}

TEST_GROUP(attn, {"vmath", test_vmath}, {"elementwise", test_elementwise},
           {"set_rows", test_set_rows}, {"attention", test_attention}, {"scratch", test_scratch})
