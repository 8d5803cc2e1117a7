/* decoder: the Qwen3-VL text decoder, mirroring transformers 4.57.1
 * models/qwen3_vl/modeling_qwen3_vl.py: Qwen3VLTextModel.forward (+ _deepstack_process),
 * Qwen3VLTextDecoderLayer, Qwen3VLTextAttention (q_norm/k_norm per head before RoPE),
 * Qwen3VLTextRotaryEmbedding (interleaved MRoPE), Qwen3VLTextMLP, the tied lm_head of
 * Qwen3VLForConditionalGeneration, and Qwen3VLModel.get_rope_index.
 *
 * The batch is the concatenation of every sequence's new tokens (row r of the
 * activations); keys and values go to KV cache row kv_row0 + position-in-sequence (the
 * rows the caller's slot names), then attention reads each sequence's rows. DeepStack
 * features are added after layers 0..n_deep-1 at the visual rows of the new tokens only
 * (a decode step has none). Activations are fp32; the KV cache (the caller's) is f16 or
 * f32, converted by the backend's set_rows and read by its attention. */
#include "decoder.h"
#include "err.h"
#include "util.h"
#include "weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    Tensor in_norm, post_norm, q_norm, k_norm;
    Tensor wq, wk, wv, wo, w_gate, w_up, w_down;
    Tensor kc, vc; /* views of the caller's KV cache [kv rows, n_kv_heads*head_dim] */
} DecoderLayer;

struct Decoder {
    Backend *b;
    const ModelConfig *cfg;
    DecoderOptions opt;
    int64_t kv_rows_total; /* rows of the KV cache */
    Tensor embed, norm, lm_head;
    DecoderLayer *layers;
    /* activations [max_tok, ...] */
    Tensor x, n, q, k, v, att, tmp, gate, up, vis, last, logits;
    /* host scratch [max_tok] / [max_seq] */
    int32_t *ids, *pos, *kv_rows, *vis_rows, *last_rows;
    BackendSeq *bseqs;
    BackendTap tap;
    void *tap_user;
};

static int decoder_check_config(const ModelConfig *c, char *err)
{
    if (c->n_heads <= 0 || c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads ||
        c->head_dim <= 0 || c->head_dim % 2 || c->head_dim > 1024 || c->n_layers <= 0 ||
        3 * c->mrope_section[1] > c->head_dim / 2 || 3 * c->mrope_section[2] > c->head_dim / 2 ||
        !c->mrope_interleaved || c->n_deepstack > c->n_layers)
        return err_set(err, VLQ_EMODEL, "text config: unsupported shape (heads %d/%d, head_dim "
                       "%d, mrope [%d,%d,%d] interleaved %d)", c->n_heads, c->n_kv_heads,
                       c->head_dim, c->mrope_section[0], c->mrope_section[1],
                       c->mrope_section[2], c->mrope_interleaved);
    return 0;
}

static int decoder_bind_layer(Decoder *d, const Model *m, int i, DecoderLayer *l, char *err)
{
    const ModelConfig *c = d->cfg;
    int64_t h = c->hidden_size, qd = (int64_t)c->n_heads * c->head_dim;
    int64_t kvd = (int64_t)c->n_kv_heads * c->head_dim, inter = c->intermediate_size;
    char name[160];
    int rc = 0, mapped = i >= c->n_layers - d->opt.offload_layers;
#define LW(field, suffix, r, cc)                                                                \
    if (!rc) {                                                                                   \
        snprintf(name, sizeof name, "model.language_model.layers.%d.%s", i, suffix);             \
        rc = weights_get_at(d->b, m, name, r, cc, mapped, &l->field, err);                       \
    }
    LW(in_norm, "input_layernorm.weight", 1, h);
    LW(post_norm, "post_attention_layernorm.weight", 1, h);
    LW(q_norm, "self_attn.q_norm.weight", 1, c->head_dim);
    LW(k_norm, "self_attn.k_norm.weight", 1, c->head_dim);
    LW(wq, "self_attn.q_proj.weight", qd, h);
    LW(wk, "self_attn.k_proj.weight", kvd, h);
    LW(wv, "self_attn.v_proj.weight", kvd, h);
    LW(wo, "self_attn.o_proj.weight", h, qd);
    LW(w_gate, "mlp.gate_proj.weight", inter, h);
    LW(w_up, "mlp.up_proj.weight", inter, h);
    LW(w_down, "mlp.down_proj.weight", h, inter);
#undef LW
    return rc;
}

/* ---- KV cache ---- */

int64_t decoder_kv_bytes_per_tok(const ModelConfig *c, QuantType type)
{
    return (int64_t)c->n_layers * 2 * c->n_kv_heads * c->head_dim * (type == QUANT_F32 ? 4 : 2);
}

int decoder_kv_init(DecoderKV *kv, const ModelConfig *c, Backend *b, QuantType type,
                    int64_t rows, char *err)
{
    memset(kv, 0, sizeof *kv);
    if ((type != QUANT_F32 && type != QUANT_F16) || rows <= 0 || rows > INT32_MAX)
        return err_set(err, VLQ_EINPUT, "KV cache: %lld rows of type %d (f16 or f32, 1..2^31)",
                       (long long)rows, (int)type);
    int64_t kvd = (int64_t)c->n_kv_heads * c->head_dim;
    *kv = (DecoderKV){.b = b, .n_layers = c->n_layers, .rows = rows, .type = type,
                      .kc = xcalloc((size_t)c->n_layers, sizeof(Tensor)),
                      .vc = xcalloc((size_t)c->n_layers, sizeof(Tensor))};
    int rc = 0;
    for (int i = 0; i < c->n_layers && !rc; i++) {
        rc = b->alloc_typed(b, &kv->kc[i], type, rows, kvd, err);
        if (!rc)
            rc = b->alloc_typed(b, &kv->vc[i], type, rows, kvd, err);
    }
    if (rc) {
        err_prefix(err, "KV cache");
        decoder_kv_clear(kv);
    }
    return rc;
}

void decoder_kv_clear(DecoderKV *kv)
{
    if (!kv)
        return;
    for (int i = 0; kv->kc && i < kv->n_layers; i++) {
        kv->b->release(kv->b, &kv->kc[i]);
        kv->b->release(kv->b, &kv->vc[i]);
    }
    free(kv->kc);
    free(kv->vc);
    memset(kv, 0, sizeof *kv);
}

/* ---- run state ---- */

/* The activation tensors of a Decoder and their shapes for opt: one table, so
 * decoder_new and decoder_run_bytes cannot disagree. */
typedef struct {
    Tensor *t;
    int64_t rows, cols;
} DecoderAlloc;

enum { DECODER_N_ACT = 12 };

static int64_t decoder_logit_rows(const DecoderOptions *opt)
{
    int64_t T = opt->max_tok;
    return opt->all_logits ? (T > opt->max_seq ? T : opt->max_seq) : opt->max_seq;
}

static void decoder_act_plan(Decoder *d, const ModelConfig *c, const DecoderOptions *opt,
                             DecoderAlloc plan[DECODER_N_ACT])
{
    int64_t h = c->hidden_size, v = c->vocab_size, T = opt->max_tok, lr = decoder_logit_rows(opt);
    int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    DecoderAlloc p[DECODER_N_ACT] = {
        {&d->x, T, h},    {&d->n, T, h},
        {&d->q, T, qd},   {&d->k, T, kvd},
        {&d->v, T, kvd},  {&d->att, T, qd},
        {&d->tmp, T, h},  {&d->gate, T, c->intermediate_size},
        {&d->up, T, c->intermediate_size}, {&d->vis, T, h},
        {&d->last, lr, h}, {&d->logits, lr, v},
    };
    memcpy(plan, p, sizeof p);
}

int64_t decoder_run_bytes(const ModelConfig *c, const DecoderOptions *opt)
{
    Decoder d;
    DecoderAlloc plan[DECODER_N_ACT];
    decoder_act_plan(&d, c, opt, plan);
    int64_t bytes = 0;
    for (int i = 0; i < DECODER_N_ACT; i++)
        bytes += (plan[i].rows * plan[i].cols * 4 + 63) / 64 * 64;
    /* host scratch: ids, pos[3], kv_rows, vis_rows per token; last_rows; bseqs */
    bytes += (int64_t)opt->max_tok * 6 * 4 + decoder_logit_rows(opt) * 4 +
             (int64_t)opt->max_seq * (int64_t)sizeof(BackendSeq);
    return bytes;
}

int decoder_new(const Model *m, Backend *b, const DecoderOptions *opt, const DecoderKV *kv,
                Decoder **out, char *err)
{
    *out = NULL;
    const ModelConfig *c = model_config(m);
    int rc = decoder_check_config(c, err);
    if (rc)
        return rc;
    if (opt->max_tok <= 0 || opt->max_seq <= 0)
        return err_set(err, VLQ_EINPUT, "decoder: tokens and sequences must be positive");
    int64_t kvd = (int64_t)c->n_kv_heads * c->head_dim;
    if (!kv || kv->n_layers != c->n_layers || kv->rows <= 0 || kv->kc[0].cols != kvd)
        return err_set(err, VLQ_EINPUT, "decoder: the KV cache does not match the model "
                       "(%d layers of %lld columns)", c->n_layers, (long long)kvd);
    Decoder *d = xcalloc(1, sizeof *d);
    d->b = b;
    d->cfg = c;
    d->opt = *opt;
    d->kv_rows_total = kv->rows;
    int64_t h = c->hidden_size, v = c->vocab_size, T = opt->max_tok;
    rc = weights_get(b, m, "model.language_model.embed_tokens.weight", v, h, &d->embed, err);
    if (!rc)
        rc = weights_get(b, m, "model.language_model.norm.weight", 1, h, &d->norm, err);
    if (!rc) {
        /* tied: save_pretrained drops lm_head; use it when the file has one */
        if (model_tensor(m, "lm_head.weight"))
            rc = weights_get(b, m, "lm_head.weight", v, h, &d->lm_head, err);
        else if (c->tie_word_embeddings)
            d->lm_head = d->embed;
        else
            rc = err_set(err, VLQ_EMODEL, "lm_head.weight: missing and embeddings not tied");
    }
    d->layers = xcalloc((size_t)c->n_layers, sizeof *d->layers);
    for (int i = 0; i < c->n_layers && !rc; i++) {
        rc = decoder_bind_layer(d, m, i, &d->layers[i], err);
        d->layers[i].kc = backend_view_rows(&kv->kc[i], 0, kv->rows);
        d->layers[i].vc = backend_view_rows(&kv->vc[i], 0, kv->rows);
    }
    DecoderAlloc plan[DECODER_N_ACT];
    decoder_act_plan(d, c, opt, plan);
    for (int i = 0; i < DECODER_N_ACT && !rc; i++)
        rc = b->alloc(b, plan[i].t, plan[i].rows, plan[i].cols, err);
    if (rc) {
        err_prefix(err, "decoder");
        decoder_free(d);
        return rc;
    }
    int64_t logit_rows = decoder_logit_rows(opt);
    d->ids = xmalloc((size_t)T * sizeof(int32_t));
    d->pos = xmalloc((size_t)T * 3 * sizeof(int32_t));
    d->kv_rows = xmalloc((size_t)T * sizeof(int32_t));
    d->vis_rows = xmalloc((size_t)T * sizeof(int32_t));
    d->last_rows = xmalloc((size_t)logit_rows * sizeof(int32_t));
    d->bseqs = xmalloc((size_t)opt->max_seq * sizeof(BackendSeq));
    *out = d;
    return 0;
}

void decoder_free(Decoder *d)
{
    if (!d)
        return;
    Backend *b = d->b;
    Tensor *ts[] = {&d->x, &d->n, &d->q, &d->k, &d->v, &d->att, &d->tmp,
                    &d->gate, &d->up, &d->vis, &d->last, &d->logits};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        b->release(b, ts[i]);
    /* weights: views (no-ops) or what the backend copied (the cpu backend's packed Q4/Q8) */
    for (int i = 0; d->layers && i < d->cfg->n_layers; i++) {
        DecoderLayer *l = &d->layers[i];
        Tensor *ws[] = {&l->in_norm, &l->post_norm, &l->q_norm, &l->k_norm, &l->wq, &l->wk,
                        &l->wv, &l->wo, &l->w_gate, &l->w_up, &l->w_down};
        for (size_t k = 0; k < sizeof ws / sizeof ws[0]; k++)
            b->release(b, ws[k]);
    }
    if (d->lm_head.data != d->embed.data) /* tied: the same tensor */
        b->release(b, &d->lm_head);
    b->release(b, &d->embed);
    b->release(b, &d->norm);
    free(d->layers);
    free(d->ids);
    free(d->pos);
    free(d->kv_rows);
    free(d->vis_rows);
    free(d->last_rows);
    free(d->bseqs);
    free(d);
}

void decoder_set_tap(Decoder *d, BackendTap tap, void *user)
{
    d->tap = tap;
    d->tap_user = user;
}

static void decoder_tap(Decoder *d, const char *what, int index, const Tensor *t)
{
    if (d->tap)
        d->tap(d->tap_user, d->b, what, index, t);
}

/* Check the batch and lay it out in the host scratch: ids, positions [3][T], KV rows,
 * backend sequences. Returns the total new tokens, or a negative VLQ_E* code. */
static int decoder_pack(Decoder *d, const DecoderSeq *seqs, int n_seq, char *err)
{
    const DecoderOptions *o = &d->opt;
    if (n_seq <= 0 || n_seq > o->max_seq)
        return err_set(err, VLQ_EINPUT, "decoder: %d sequences (1..%d per call)", n_seq,
                       o->max_seq);
    int total = 0;
    for (int s = 0; s < n_seq; s++) {
        const DecoderSeq *sq = &seqs[s];
        if (sq->kv_row0 < 0 || sq->kv_cap <= 0 || sq->kv_row0 + sq->kv_cap > d->kv_rows_total ||
            sq->n_tok <= 0 || sq->n_past < 0 || sq->n_past + sq->n_tok > sq->kv_cap)
            return err_set(err, VLQ_EINPUT, "decoder: sequence %d: %d+%d tokens do not fit its "
                           "KV rows %lld..%lld (of %lld)", s, sq->n_past, sq->n_tok,
                           (long long)sq->kv_row0, (long long)(sq->kv_row0 + sq->kv_cap),
                           (long long)d->kv_rows_total);
        if (total + sq->n_tok > o->max_tok)
            return err_set(err, VLQ_EINPUT, "decoder: more than %d tokens in one call",
                           o->max_tok);
        total += sq->n_tok;
    }
    int r = 0;
    for (int s = 0; s < n_seq; s++) {
        const DecoderSeq *sq = &seqs[s];
        d->bseqs[s] = (BackendSeq){.row0 = r, .n_tok = sq->n_tok,
                                   .kv_row0 = sq->kv_row0,
                                   .n_past = sq->n_past};
        for (int t = 0; t < sq->n_tok; t++, r++) {
            if (sq->ids[t] < 0 || sq->ids[t] >= d->cfg->vocab_size)
                return err_set(err, VLQ_EINPUT, "decoder: token id %d out of the vocabulary",
                               sq->ids[t]);
            d->ids[r] = sq->ids[t];
            for (int a = 0; a < 3; a++)
                d->pos[a * total + r] = sq->pos[a * sq->n_tok + t];
            d->kv_rows[r] = (int32_t)(d->bseqs[s].kv_row0 + sq->n_past + t);
        }
    }
    return total;
}

/* Upload the visual rows of every sequence (embeds when layer < 0, else DeepStack layer
 * `layer`) into d->vis and their batch rows into d->vis_rows. Returns their count. */
static int decoder_load_visual(Decoder *d, const DecoderSeq *seqs, int n_seq, int layer)
{
    int n = 0, r0 = 0;
    int64_t h = d->cfg->hidden_size;
    for (int s = 0; s < n_seq; s++) {
        const DecoderSeq *sq = &seqs[s];
        const float *src = layer < 0 ? sq->visual
                           : sq->deepstack ? sq->deepstack + (int64_t)layer * sq->n_visual * h
                                           : NULL;
        if (src && sq->n_visual > 0) {
            d->b->write(d->b, &d->vis, n, src, sq->n_visual);
            for (int i = 0; i < sq->n_visual; i++)
                d->vis_rows[n + i] = r0 + sq->visual_rows[i];
            n += sq->n_visual;
        }
        r0 += sq->n_tok;
    }
    return n;
}

static void decoder_layer(Decoder *d, DecoderLayer *l, int T, int n_seq)
{
    Backend *b = d->b;
    const ModelConfig *c = d->cfg;
    Tensor x = backend_view_rows(&d->x, 0, T), n = backend_view_rows(&d->n, 0, T);
    Tensor q = backend_view_rows(&d->q, 0, T), k = backend_view_rows(&d->k, 0, T);
    Tensor v = backend_view_rows(&d->v, 0, T), att = backend_view_rows(&d->att, 0, T);
    Tensor tmp = backend_view_rows(&d->tmp, 0, T), gate = backend_view_rows(&d->gate, 0, T);
    Tensor up = backend_view_rows(&d->up, 0, T);
    b->rmsnorm(b, &n, &x, &l->in_norm, c->rms_norm_eps);
    b->matmul(b, &q, &n, &l->wq, NULL);
    b->matmul(b, &k, &n, &l->wk, NULL);
    b->matmul(b, &v, &n, &l->wv, NULL);
    Tensor qh = backend_reshape(&q, (int64_t)T * c->n_heads, c->head_dim);
    Tensor kh = backend_reshape(&k, (int64_t)T * c->n_kv_heads, c->head_dim);
    b->rmsnorm(b, &qh, &qh, &l->q_norm, c->rms_norm_eps);
    b->rmsnorm(b, &kh, &kh, &l->k_norm, c->rms_norm_eps);
    b->mrope(b, &q, d->pos, c->n_heads, c->mrope_section, c->rope_theta);
    b->mrope(b, &k, d->pos, c->n_kv_heads, c->mrope_section, c->rope_theta);
    b->set_rows(b, &l->kc, d->kv_rows, &k, T);
    b->set_rows(b, &l->vc, d->kv_rows, &v, T);
    b->attention(b, &att, &q, &l->kc, &l->vc, d->bseqs, n_seq, c->n_heads, c->n_kv_heads,
                 1.0f / sqrtf((float)c->head_dim));
    b->matmul(b, &tmp, &att, &l->wo, NULL);
    b->add(b, &x, &x, &tmp);
    b->rmsnorm(b, &n, &x, &l->post_norm, c->rms_norm_eps);
    b->matmul(b, &gate, &n, &l->w_gate, NULL);
    b->matmul(b, &up, &n, &l->w_up, NULL);
    b->swiglu(b, &gate, &gate, &up);
    b->matmul(b, &tmp, &gate, &l->w_down, NULL);
    b->add(b, &x, &x, &tmp);
}

int decoder_forward(Decoder *d, const DecoderSeq *seqs, int n_seq, float *logits, int all_rows,
                    char *err)
{
    Backend *b = d->b;
    const ModelConfig *c = d->cfg;
    if (all_rows && !d->opt.all_logits)
        return err_set(err, VLQ_EINPUT, "decoder: logits of every row need all_logits");
    int T = decoder_pack(d, seqs, n_seq, err);
    if (T < 0)
        return T;
    Tensor x = backend_view_rows(&d->x, 0, T);
    b->embed(b, &x, &d->embed, d->ids, T);
    int nv = decoder_load_visual(d, seqs, n_seq, -1);
    if (nv) {
        Tensor vis = backend_view_rows(&d->vis, 0, nv);
        b->set_rows(b, &x, d->vis_rows, &vis, nv);
    }
    decoder_tap(d, "embed", 0, &x);
    for (int i = 0; i < c->n_layers; i++) {
        decoder_layer(d, &d->layers[i], T, n_seq);
        if (i < c->n_deepstack && (nv = decoder_load_visual(d, seqs, n_seq, i)) > 0) {
            Tensor vis = backend_view_rows(&d->vis, 0, nv);
            b->add_rows(b, &x, d->vis_rows, &vis, nv);
        }
        decoder_tap(d, "layer", i, &x);
    }
    int n_out = all_rows ? T : n_seq;
    for (int s = 0, r = 0; s < n_seq; r += seqs[s++].n_tok)
        if (!all_rows)
            d->last_rows[s] = r + seqs[s].n_tok - 1;
    for (int i = 0; all_rows && i < T; i++)
        d->last_rows[i] = i;
    Tensor last = backend_view_rows(&d->last, 0, n_out);
    Tensor lg = backend_view_rows(&d->logits, 0, n_out);
    b->get_rows(b, &last, &x, d->last_rows, n_out);
    b->rmsnorm(b, &last, &last, &d->norm, c->rms_norm_eps);
    decoder_tap(d, "norm", 0, &last);
    if (logits) {
        b->matmul(b, &lg, &last, &d->lm_head, NULL);
        b->read(b, &lg, 0, logits, n_out);
    }
    return 0;
}
