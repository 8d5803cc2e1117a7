/* ops_ref: the scalar reference of every backend op, the oracle the cpu backend (and the
 * CUDA kernels later) are tested against, and `--backend ref` for debugging.
 *
 * Plain loops a reviewer can hold beside modeling_qwen3_vl.py: no OpenMP, no SIMD, fp32
 * accumulation, every reduction in index order. Weights are read one element at a time
 * through bk_elem (slow, obviously right). Nothing here allocates: attention recomputes
 * the scores in a second pass instead of keeping them. */
#include "backend.h"
#include "backend_int.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>

static const float *ref_row(const Tensor *t, int64_t r)
{
    return (const float *)t->data + r * t->cols;
}

static float *ref_row_mut(Tensor *t, int64_t r)
{
    return (float *)t->data + r * t->cols;
}

/* ---- rows ---- */

static void ref_embed(Backend *b, Tensor *y, const Tensor *table, const int32_t *ids, int n)
{
    assert(y->cols == table->cols && y->rows >= n);
    for (int i = 0; i < n; i++) {
        assert(ids[i] >= 0 && ids[i] < table->rows);
        float *out = ref_row_mut(y, i);
        for (int64_t c = 0; c < y->cols; c++)
            out[c] = bk_elem(table, ids[i], c);
    }
}

static void ref_embed_mix4(Backend *b, Tensor *y, const Tensor *table, const int32_t *idx,
                           const float *w, int n)
{
    assert(y->cols == table->cols && y->rows >= n);
    /* torch computes in the table's dtype: round every product and partial sum to it */
    float (*round)(float) = table->type == QUANT_BF16  ? bk_round_bf16
                            : table->type == QUANT_F16 ? bk_round_half
                                                       : NULL;
    for (int i = 0; i < n; i++) {
        float *out = ref_row_mut(y, i);
        for (int64_t c = 0; c < y->cols; c++) {
            float acc = 0.0f;
            for (int k = 0; k < 4; k++) {
                float term = w[i * 4 + k] * bk_elem(table, idx[i * 4 + k], c);
                if (round)
                    term = round(term);
                acc = k == 0 ? term : acc + term;
                if (round)
                    acc = round(acc);
            }
            out[c] = acc;
        }
    }
}

static void ref_set_rows(Backend *b, Tensor *dst, const int32_t *rows, const Tensor *src, int n)
{
    assert(dst->cols == src->cols && dst->type <= QUANT_BF16);
    for (int i = 0; i < n; i++) {
        assert(rows[i] >= 0 && rows[i] < dst->rows);
        for (int64_t c = 0; c < dst->cols; c++) {
            float f = ref_row(src, i)[c];
            int64_t e = (int64_t)rows[i] * dst->cols + c;
            if (dst->type == QUANT_F16) /* round to nearest even */
                ((uint16_t *)dst->data)[e] = half_f32_to_f16(f);
            else if (dst->type == QUANT_BF16)
                ((uint16_t *)dst->data)[e] = half_f32_to_bf16(f);
            else
                ((float *)dst->data)[e] = f;
        }
    }
}

static void ref_add_rows(Backend *b, Tensor *dst, const int32_t *rows, const Tensor *src, int n)
{
    assert(dst->cols == src->cols);
    for (int i = 0; i < n; i++) {
        assert(rows[i] >= 0 && rows[i] < dst->rows);
        for (int64_t c = 0; c < dst->cols; c++)
            ref_row_mut(dst, rows[i])[c] += ref_row(src, i)[c];
    }
}

static void ref_get_rows(Backend *b, Tensor *dst, const Tensor *src, const int32_t *rows, int n)
{
    assert(dst->cols == src->cols);
    for (int i = 0; i < n; i++) {
        assert(rows[i] >= 0 && rows[i] < src->rows);
        for (int64_t c = 0; c < dst->cols; c++)
            ref_row_mut(dst, i)[c] = ref_row(src, rows[i])[c];
    }
}

/* ---- dense ---- */

static void ref_matmul(Backend *b, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *bias)
{
    assert(x->cols == w->cols && y->cols == w->rows && y->rows == x->rows);
    for (int64_t i = 0; i < x->rows; i++) {
        const float *xi = ref_row(x, i);
        for (int64_t o = 0; o < w->rows; o++) {
            float acc = 0.0f;
            for (int64_t k = 0; k < w->cols; k++)
                acc += xi[k] * bk_elem(w, o, k);
            if (bias)
                acc += bk_elem(bias, 0, o);
            ref_row_mut(y, i)[o] = acc;
        }
    }
}

static void ref_rmsnorm(Backend *b, Tensor *y, const Tensor *x, const Tensor *w, float eps)
{
    assert(x->cols == y->cols && x->rows == y->rows && w->rows * w->cols == x->cols);
    for (int64_t i = 0; i < x->rows; i++) {
        const float *xi = ref_row(x, i);
        float ss = 0.0f;
        for (int64_t c = 0; c < x->cols; c++)
            ss += xi[c] * xi[c];
        float inv = 1.0f / sqrtf(ss / (float)x->cols + eps);
        for (int64_t c = 0; c < x->cols; c++)
            ref_row_mut(y, i)[c] = bk_elem(w, 0, c) * (xi[c] * inv);
    }
}

static void ref_layernorm(Backend *b, Tensor *y, const Tensor *x, const Tensor *w,
                          const Tensor *bias, float eps)
{
    assert(x->cols == y->cols && x->rows == y->rows);
    for (int64_t i = 0; i < x->rows; i++) {
        const float *xi = ref_row(x, i);
        float sum = 0.0f;
        for (int64_t c = 0; c < x->cols; c++)
            sum += xi[c];
        float mean = sum / (float)x->cols, var = 0.0f;
        for (int64_t c = 0; c < x->cols; c++)
            var += (xi[c] - mean) * (xi[c] - mean);
        float inv = 1.0f / sqrtf(var / (float)x->cols + eps);
        for (int64_t c = 0; c < x->cols; c++)
            ref_row_mut(y, i)[c] = (xi[c] - mean) * inv * bk_elem(w, 0, c) + bk_elem(bias, 0, c);
    }
}

static void ref_add(Backend *b, Tensor *y, const Tensor *a, const Tensor *c)
{
    int64_t n = y->rows * y->cols;
    assert(a->rows * a->cols == n && c->rows * c->cols == n);
    for (int64_t i = 0; i < n; i++)
        ((float *)y->data)[i] = ((const float *)a->data)[i] + ((const float *)c->data)[i];
}

static void ref_swiglu(Backend *b, Tensor *y, const Tensor *gate, const Tensor *up)
{
    int64_t n = y->rows * y->cols;
    for (int64_t i = 0; i < n; i++) {
        float g = ((const float *)gate->data)[i];
        ((float *)y->data)[i] = g / (1.0f + expf(-g)) * ((const float *)up->data)[i];
    }
}

static void ref_gelu_tanh(Backend *b, Tensor *x)
{
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    for (int64_t i = 0; i < x->rows * x->cols; i++) {
        float v = ((float *)x->data)[i];
        ((float *)x->data)[i] = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
    }
}

static void ref_gelu_erf(Backend *b, Tensor *x)
{
    for (int64_t i = 0; i < x->rows * x->cols; i++) {
        float v = ((float *)x->data)[i];
        ((float *)x->data)[i] = 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
    }
}

/* ---- rotary ---- */

/* Rotate one head in place by angle[d] for d < half (rotate_half: pairs d, d+half). */
static void ref_rotate(float *x, const float *angle, int half)
{
    for (int d = 0; d < half; d++) {
        float c = cosf(angle[d]), s = sinf(angle[d]);
        float x0 = x[d], x1 = x[d + half];
        x[d] = x0 * c - x1 * s;
        x[d + half] = x1 * c + x0 * s;
    }
}

/* inv_freq[j] = 1 / theta^(2j/dim) in fp32, as the HF rotary inits compute it. */
static float ref_inv_freq(float theta, int j, int dim)
{
    return 1.0f / powf(theta, (float)(2 * j) / (float)dim);
}

static void ref_mrope(Backend *b, Tensor *x, const int32_t *pos, int n_heads, const int section[3],
                      float theta)
{
    int64_t n = x->rows;
    int head_dim = (int)(x->cols / n_heads), half = head_dim / 2;
    float angle[512];
    assert(half <= 512);
    for (int64_t i = 0; i < n; i++) {
        for (int j = 0; j < half; j++) {
            int axis = (j % 3 == 1 && j < 3 * section[1]) ? 1
                       : (j % 3 == 2 && j < 3 * section[2]) ? 2
                                                            : 0;
            angle[j] = (float)pos[axis * n + i] * ref_inv_freq(theta, j, head_dim);
        }
        for (int h = 0; h < n_heads; h++)
            ref_rotate(ref_row_mut(x, i) + h * head_dim, angle, half);
    }
}

static void ref_rope2d(Backend *b, Tensor *x, const int32_t *pos, int n_heads, float theta)
{
    int head_dim = (int)(x->cols / n_heads), half = head_dim / 2, quarter = head_dim / 4;
    float angle[512];
    assert(half <= 512);
    for (int64_t i = 0; i < x->rows; i++) {
        for (int j = 0; j < quarter; j++) {
            float inv = ref_inv_freq(theta, j, half);
            angle[j] = (float)pos[i * 2] * inv;
            angle[quarter + j] = (float)pos[i * 2 + 1] * inv;
        }
        for (int h = 0; h < n_heads; h++)
            ref_rotate(ref_row_mut(x, i) + h * head_dim, angle, half);
    }
}

/* ---- attention ---- */

/* out[hd] = softmax_j(q . k_j * scale) v_j over the n_kv rows r0 .. r0+n_kv-1 of k and
 * v, columns c0 .. c0+hd-1 (the head), any dense type, each element converted by bk_elem.
 * Two passes: the max, then exp-weights with the dots recomputed. */
static void ref_attend(float *out, const float *q, const Tensor *k, const Tensor *v, int64_t r0,
                       int64_t c0, int64_t n_kv, int hd, float scale)
{
    float mx = -INFINITY;
    for (int64_t j = 0; j < n_kv; j++) {
        float s = 0.0f;
        for (int d = 0; d < hd; d++)
            s += q[d] * bk_elem(k, r0 + j, c0 + d);
        s *= scale;
        if (s > mx)
            mx = s;
    }
    float sum = 0.0f;
    for (int d = 0; d < hd; d++)
        out[d] = 0.0f;
    for (int64_t j = 0; j < n_kv; j++) {
        float s = 0.0f;
        for (int d = 0; d < hd; d++)
            s += q[d] * bk_elem(k, r0 + j, c0 + d);
        float p = expf(s * scale - mx);
        sum += p;
        for (int d = 0; d < hd; d++)
            out[d] += p * bk_elem(v, r0 + j, c0 + d);
    }
    for (int d = 0; d < hd; d++)
        out[d] /= sum;
}

static void ref_attention(Backend *b, Tensor *o, const Tensor *q, const Tensor *kc,
                          const Tensor *vc, const BackendSeq *seqs, int n_seq, int n_heads,
                          int n_kv_heads, float scale)
{
    int hd = (int)(q->cols / n_heads), rep = n_heads / n_kv_heads;
    assert(kc->cols == (int64_t)n_kv_heads * hd);
    assert(kc->type <= QUANT_BF16 && vc->type <= QUANT_BF16); /* F32, F16 or BF16 caches */
    for (int s = 0; s < n_seq; s++) {
        const BackendSeq *sq = &seqs[s];
        for (int t = 0; t < sq->n_tok; t++) {
            int64_t row = sq->row0 + t, n_kv = sq->n_past + t + 1;
            assert(sq->kv_row0 + n_kv <= kc->rows);
            for (int h = 0; h < n_heads; h++)
                ref_attend(ref_row_mut(o, row) + h * hd, ref_row(q, row) + h * hd, kc, vc,
                           sq->kv_row0, (int64_t)(h / rep) * hd, n_kv, hd, scale);
        }
    }
}

static void ref_attention_seg(Backend *b, Tensor *o, const Tensor *q, const Tensor *k,
                              const Tensor *v, const int32_t *cu_seqlens, int n_seg, int n_heads,
                              float scale)
{
    int hd = (int)(q->cols / n_heads);
    for (int s = 0; s < n_seg; s++) {
        int64_t r0 = cu_seqlens[s], n = cu_seqlens[s + 1] - cu_seqlens[s];
        for (int64_t r = r0; r < r0 + n; r++)
            for (int h = 0; h < n_heads; h++)
                ref_attend(ref_row_mut(o, r) + h * hd, ref_row(q, r) + h * hd, k, v, r0,
                           (int64_t)h * hd, n, hd, scale);
    }
}

/* ---- output ---- */

static void ref_argmax(Backend *b, const Tensor *x, int32_t *out)
{
    for (int64_t i = 0; i < x->rows; i++) {
        const float *xi = ref_row(x, i);
        int64_t best = 0;
        for (int64_t c = 1; c < x->cols; c++)
            if (xi[c] > xi[best])
                best = c;
        out[i] = (int32_t)best;
    }
}

static void ref_describe(Backend *b, char *buf, size_t len)
{
    snprintf(buf, len, "%s: the scalar oracle (plain C, one thread, no SIMD): slow", b->name);
}

Backend ops_ref_backend = {
    .abi_version = BACKEND_ABI_VERSION,
    .name = "ref",
    .sync = bk_host_sync,
    .meminfo = bk_host_meminfo,
    .describe = ref_describe,
    .alloc = bk_host_alloc,
    .alloc_typed = bk_host_alloc_typed,
    .release = bk_host_release,
    .weight = bk_host_weight,
    .write = bk_host_write,
    .read = bk_host_read,
    .embed = ref_embed,
    .embed_mix4 = ref_embed_mix4,
    .set_rows = ref_set_rows,
    .add_rows = ref_add_rows,
    .get_rows = ref_get_rows,
    .matmul = ref_matmul,
    .rmsnorm = ref_rmsnorm,
    .layernorm = ref_layernorm,
    .add = ref_add,
    .swiglu = ref_swiglu,
    .gelu_tanh = ref_gelu_tanh,
    .gelu_erf = ref_gelu_erf,
    .mrope = ref_mrope,
    .rope2d = ref_rope2d,
    .attention = ref_attention,
    .attention_seg = ref_attention_seg,
    .argmax = ref_argmax,
};
