/* vision: the Qwen3-VL vision encoder, mirroring transformers 4.57.1
 * models/qwen3_vl/modeling_qwen3_vl.py: Qwen3VLVisionModel.forward,
 * .fast_pos_embed_interpolate, .rot_pos_emb, Qwen3VLVisionBlock, Qwen3VLVisionAttention,
 * Qwen3VLVisionPatchMerger.
 *
 * Tokens stay in the processor's 2x2 block order throughout (Qwen3VLImageProcessor's
 * patchify): the pos-embed rows and rotary positions are generated in that order, and 4 consecutive rows form one
 * merge block, so the merger's [n/4, 4*hidden] view is a reshape, not a gather.
 * Activations are fp32 whatever the weights' type; the pos-embed bilinear weights (and
 * the 4-term sum) are rounded to the table's dtype when it is bf16 or f16, as torch
 * does (fast_pos_embed_interpolate). */
#include "vision.h"
#include "err.h"
#include "util.h"
#include "weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_int.h" /* bk_round_bf16, bk_round_half */

typedef struct {
    Tensor norm1_w, norm1_b, norm2_w, norm2_b;
    Tensor wq, wk, wv, bq, bk, bv; /* row views of attn.qkv */
    Tensor proj_w, proj_b, fc1_w, fc1_b, fc2_w, fc2_b;
} VisionBlock;

typedef struct {
    Tensor norm_w, norm_b, fc1_w, fc1_b, fc2_w, fc2_b;
} VisionMerger;

struct Vision {
    Backend *b;
    const ModelConfig *cfg;
    int max_patches, patch_dim, side; /* side: sqrt(num_position_embeddings) */
    Tensor patch_w, patch_b, pos_embed;
    VisionBlock *blocks;
    VisionMerger merger, deep[MODEL_MAX_DEEPSTACK];
    /* run state: [max_patches, ...] activations */
    Tensor pix, h, n, q, k, v, att, tmp, mlp, big, out;
    /* host scratch */
    int32_t *mix_idx, *rope_pos, *cu;
    float *mix_w;
    BackendTap tap;
    void *tap_user;
};

static int vision_merger_bind(Vision *v, const Model *m, const char *prefix, VisionMerger *mg,
                              int post_norm, char *err)
{
    const ModelConfig *c = v->cfg;
    int64_t d = c->v_hidden_size, big = d * c->v_spatial_merge_size * c->v_spatial_merge_size;
    int64_t nd = post_norm ? big : d;
    char name[160];
    int rc = 0;
#define VW(field, suffix, r, cc)                                                                \
    if (!rc) {                                                                                   \
        snprintf(name, sizeof name, "%s.%s", prefix, suffix);                                    \
        rc = weights_get(v->b, m, name, r, cc, &mg->field, err);                                 \
    }
    VW(norm_w, "norm.weight", 1, nd);
    VW(norm_b, "norm.bias", 1, nd);
    VW(fc1_w, "linear_fc1.weight", big, big);
    VW(fc1_b, "linear_fc1.bias", 1, big);
    VW(fc2_w, "linear_fc2.weight", c->v_out_hidden_size, big);
    VW(fc2_b, "linear_fc2.bias", 1, c->v_out_hidden_size);
#undef VW
    return rc;
}

static int vision_block_bind(Vision *v, const Model *m, int i, VisionBlock *bl, char *err)
{
    const ModelConfig *c = v->cfg;
    int64_t d = c->v_hidden_size, inter = c->v_intermediate_size;
    char name[160];
    int rc = 0;
    Tensor qkv_w, qkv_b;
#define BW(field, suffix, r, cc)                                                                \
    if (!rc) {                                                                                   \
        snprintf(name, sizeof name, "model.visual.blocks.%d.%s", i, suffix);                     \
        rc = weights_get(v->b, m, name, r, cc, field, err);                                     \
    }
    BW(&bl->norm1_w, "norm1.weight", 1, d);
    BW(&bl->norm1_b, "norm1.bias", 1, d);
    BW(&bl->norm2_w, "norm2.weight", 1, d);
    BW(&bl->norm2_b, "norm2.bias", 1, d);
    BW(&qkv_w, "attn.qkv.weight", 3 * d, d);
    BW(&qkv_b, "attn.qkv.bias", 1, 3 * d);
    BW(&bl->proj_w, "attn.proj.weight", d, d);
    BW(&bl->proj_b, "attn.proj.bias", 1, d);
    BW(&bl->fc1_w, "mlp.linear_fc1.weight", inter, d);
    BW(&bl->fc1_b, "mlp.linear_fc1.bias", 1, inter);
    BW(&bl->fc2_w, "mlp.linear_fc2.weight", d, inter);
    BW(&bl->fc2_b, "mlp.linear_fc2.bias", 1, d);
#undef BW
    if (rc)
        return rc;
    if (qkv_b.type == QUANT_Q4 || qkv_b.type == QUANT_Q8)
        return err_set(err, VLQ_EMODEL, "model.visual.blocks.%d.attn.qkv.bias: quantised", i);
    /* q, k, v are rows [0, d), [d, 2d), [2d, 3d) of qkv (reshape(n, 3, heads, hd)) */
    bl->wq = backend_view_rows(&qkv_w, 0, d);
    bl->wk = backend_view_rows(&qkv_w, d, d);
    bl->wv = backend_view_rows(&qkv_w, 2 * d, d);
    Tensor b3 = backend_reshape(&qkv_b, 3, d);
    bl->bq = backend_view_rows(&b3, 0, 1);
    bl->bk = backend_view_rows(&b3, 1, 1);
    bl->bv = backend_view_rows(&b3, 2, 1);
    return 0;
}

static int vision_check_config(const ModelConfig *c, char *err)
{
    int side = (int)lrint(sqrt((double)c->v_num_position_embeddings));
    if (c->v_depth <= 0 || c->v_n_heads <= 0 || c->v_hidden_size % c->v_n_heads ||
        (c->v_hidden_size / c->v_n_heads) % 4 || side * side != c->v_num_position_embeddings ||
        c->v_spatial_merge_size != 2 || c->n_deepstack > MODEL_MAX_DEEPSTACK ||
        c->v_out_hidden_size != c->hidden_size)
        return err_set(err, VLQ_EMODEL, "vision config: unsupported shape (depth %d, hidden %d, "
                       "heads %d, pos %d, merge %d)", c->v_depth, c->v_hidden_size,
                       c->v_n_heads, c->v_num_position_embeddings, c->v_spatial_merge_size);
    for (int i = 0; i < c->n_deepstack; i++)
        if (c->deepstack_indexes[i] < 0 || c->deepstack_indexes[i] >= c->v_depth)
            return err_set(err, VLQ_EMODEL, "vision config: deepstack index %d out of range",
                           c->deepstack_indexes[i]);
    return 0;
}

int vision_new(const Model *m, Backend *b, int max_patches, Vision **out, char *err)
{
    *out = NULL;
    const ModelConfig *c = model_config(m);
    int rc = vision_check_config(c, err);
    if (!rc) /* the vision tower's pages and checksums: model_open left them for now */
        rc = model_prepare_vision(m, err);
    if (rc)
        return rc;
    max_patches = (max_patches + 3) / 4 * 4;
    Vision *v = xcalloc(1, sizeof *v);
    v->b = b;
    v->cfg = c;
    v->max_patches = max_patches;
    v->side = (int)lrint(sqrt((double)c->v_num_position_embeddings));
    v->patch_dim = c->v_in_channels * c->v_temporal_patch_size * c->v_patch_size * c->v_patch_size;
    int64_t d = c->v_hidden_size;
    rc = weights_get(b, m, "model.visual.patch_embed.proj.weight", d, v->patch_dim, &v->patch_w,
                     err);
    if (!rc)
        rc = weights_get(b, m, "model.visual.patch_embed.proj.bias", 1, d, &v->patch_b, err);
    if (!rc)
        rc = weights_get(b, m, "model.visual.pos_embed.weight", c->v_num_position_embeddings, d,
                         &v->pos_embed, err);
    v->blocks = xcalloc((size_t)c->v_depth, sizeof *v->blocks);
    for (int i = 0; i < c->v_depth && !rc; i++)
        rc = vision_block_bind(v, m, i, &v->blocks[i], err);
    if (!rc)
        rc = vision_merger_bind(v, m, "model.visual.merger", &v->merger, 0, err);
    for (int j = 0; j < c->n_deepstack && !rc; j++) {
        char prefix[96];
        snprintf(prefix, sizeof prefix, "model.visual.deepstack_merger_list.%d", j);
        rc = vision_merger_bind(v, m, prefix, &v->deep[j], 1, err);
    }
    /* run state */
    int64_t np = max_patches, nm = max_patches / 4;
    struct {
        Tensor *t;
        int64_t rows, cols;
    } plan[] = {
        {&v->pix, np, v->patch_dim}, {&v->h, np, d},   {&v->n, np, d},
        {&v->q, np, d},              {&v->k, np, d},   {&v->v, np, d},
        {&v->att, np, d},            {&v->tmp, np, d}, {&v->mlp, np, c->v_intermediate_size},
        {&v->big, nm, 4 * d},        {&v->out, nm, c->v_out_hidden_size},
    };
    for (size_t i = 0; i < sizeof plan / sizeof plan[0] && !rc; i++)
        rc = b->alloc(b, plan[i].t, plan[i].rows, plan[i].cols, err);
    if (rc) {
        err_prefix(err, "vision");
        vision_free(v);
        return rc;
    }
    v->mix_idx = xmalloc((size_t)np * 4 * sizeof(int32_t));
    v->mix_w = xmalloc((size_t)np * 4 * sizeof(float));
    v->rope_pos = xmalloc((size_t)np * 2 * sizeof(int32_t));
    v->cu = xmalloc((size_t)(np + 1) * sizeof(int32_t));
    *out = v;
    return 0;
}

void vision_free(Vision *v)
{
    if (!v)
        return;
    Tensor *ts[] = {&v->pix, &v->h, &v->n, &v->q, &v->k, &v->v,
                    &v->att, &v->tmp, &v->mlp, &v->big, &v->out};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        v->b->release(v->b, ts[i]);
    free(v->blocks);
    free(v->mix_idx);
    free(v->mix_w);
    free(v->rope_pos);
    free(v->cu);
    free(v);
}

int64_t vision_run_bytes(const ModelConfig *c, int max_patches)
{
    /* the run state of vision_new, tensor by tensor (keep the two in step) */
    int64_t np = (max_patches + 3) / 4 * 4, nm = np / 4, d = c->v_hidden_size;
    int64_t pd = (int64_t)c->v_in_channels * c->v_temporal_patch_size * c->v_patch_size *
                 c->v_patch_size;
    int64_t floats = np * pd + 8 * np * d + np * c->v_intermediate_size + nm * 4 * d +
                     nm * c->v_out_hidden_size;
    int64_t host = np * 4 * 4 + np * 4 * 4 + np * 2 * 4 + (np + 1) * 4;
    return floats * 4 + 11 * 64 + host;
}

int vision_patch_dim(const Vision *v)
{
    return v->patch_dim;
}

void vision_set_tap(Vision *v, BackendTap tap, void *user)
{
    v->tap = tap;
    v->tap_user = user;
}

static void vision_tap(Vision *v, const char *what, int index, const Tensor *t)
{
    if (v->tap)
        v->tap(v->tap_user, v->b, what, index, t);
}

/* torch.linspace(0, end, steps) in fp32, element i, bit-exact: aten's CPU kernel counts
 * from the start for the first half and back from the end for the second, and its
 * vectorised path fuses the multiply-add (checked against torch 2.x for steps < 80:
 * without the fma, 68 of 3159 values differ by an ulp). */
static float vision_linspace(float end, int steps, int i)
{
    if (steps == 1)
        return 0.0f;
    float step = end / (float)(steps - 1);
    return i < steps / 2 ? step * (float)i : fmaf(-step, (float)(steps - i - 1), end);
}

/* Fill the host tables of one item at patch offset off: bilinear pos-embed indices and
 * weights (fast_pos_embed_interpolate), rotary (row, col) (rot_pos_emb), both in block
 * order and repeated for each of the t frames. */
static void vision_item_tables(Vision *v, int off, int t, int gh, int gw)
{
    int s = v->side;
    QuantType et = v->pos_embed.type;
    float end = (float)(s - 1);
    int n = 0;
    for (int f = 0; f < t; f++)
        for (int br = 0; br < gh / 2; br++)
            for (int bc = 0; bc < gw / 2; bc++)
                for (int r = 0; r < 2; r++)
                    for (int c = 0; c < 2; c++) {
                        int row = br * 2 + r, col = bc * 2 + c, i = off + n++;
                        float hs = vision_linspace(end, gh, row);
                        float ws = vision_linspace(end, gw, col);
                        int h0 = (int)hs, w0 = (int)ws;
                        int h1 = h0 + 1 < s ? h0 + 1 : s - 1, w1 = w0 + 1 < s ? w0 + 1 : s - 1;
                        float dh = hs - (float)h0, dw = ws - (float)w0;
                        float w4[4] = {(1 - dh) * (1 - dw), (1 - dh) * dw, dh * (1 - dw), dh * dw};
                        int32_t i4[4] = {h0 * s + w0, h0 * s + w1, h1 * s + w0, h1 * s + w1};
                        for (int k = 0; k < 4; k++) {
                            v->mix_idx[i * 4 + k] = i4[k];
                            v->mix_w[i * 4 + k] = et == QUANT_BF16  ? bk_round_bf16(w4[k])
                                                  : et == QUANT_F16 ? bk_round_half(w4[k])
                                                                    : w4[k];
                        }
                        v->rope_pos[i * 2] = row;
                        v->rope_pos[i * 2 + 1] = col;
                    }
}

static void vision_merge(Vision *v, const VisionMerger *mg, int post_norm, int np, float *dst)
{
    Backend *b = v->b;
    int64_t d = v->cfg->v_hidden_size, nm = np / 4;
    Tensor h = backend_view_rows(&v->h, 0, np), n = backend_view_rows(&v->n, 0, np);
    Tensor big = backend_view_rows(&v->big, 0, nm), out = backend_view_rows(&v->out, 0, nm);
    Tensor n4 = backend_reshape(&n, nm, 4 * d);
    if (post_norm) { /* DeepStack: concatenate 2x2, then LayerNorm(4d) */
        Tensor h4 = backend_reshape(&h, nm, 4 * d);
        b->layernorm(b, &n4, &h4, &mg->norm_w, &mg->norm_b, 1e-6f);
    } else { /* final merger: LayerNorm(d) per patch, then concatenate */
        b->layernorm(b, &n, &h, &mg->norm_w, &mg->norm_b, 1e-6f);
    }
    b->matmul(b, &big, &n4, &mg->fc1_w, &mg->fc1_b);
    b->gelu_erf(b, &big);
    b->matmul(b, &out, &big, &mg->fc2_w, &mg->fc2_b);
    b->read(b, &out, 0, dst, nm);
}

static void vision_block(Vision *v, const VisionBlock *bl, int np, int n_seg)
{
    Backend *b = v->b;
    const ModelConfig *c = v->cfg;
    int heads = c->v_n_heads;
    float scale = 1.0f / sqrtf((float)(c->v_hidden_size / heads));
    Tensor h = backend_view_rows(&v->h, 0, np), n = backend_view_rows(&v->n, 0, np);
    Tensor q = backend_view_rows(&v->q, 0, np), k = backend_view_rows(&v->k, 0, np);
    Tensor vv = backend_view_rows(&v->v, 0, np), att = backend_view_rows(&v->att, 0, np);
    Tensor tmp = backend_view_rows(&v->tmp, 0, np), mlp = backend_view_rows(&v->mlp, 0, np);
    b->layernorm(b, &n, &h, &bl->norm1_w, &bl->norm1_b, 1e-6f);
    b->matmul(b, &q, &n, &bl->wq, &bl->bq);
    b->matmul(b, &k, &n, &bl->wk, &bl->bk);
    b->matmul(b, &vv, &n, &bl->wv, &bl->bv);
    b->rope2d(b, &q, v->rope_pos, heads, 10000.0f);
    b->rope2d(b, &k, v->rope_pos, heads, 10000.0f);
    b->attention_seg(b, &att, &q, &k, &vv, v->cu, n_seg, heads, scale);
    b->matmul(b, &tmp, &att, &bl->proj_w, &bl->proj_b);
    b->add(b, &h, &h, &tmp);
    b->layernorm(b, &n, &h, &bl->norm2_w, &bl->norm2_b, 1e-6f);
    b->matmul(b, &mlp, &n, &bl->fc1_w, &bl->fc1_b);
    b->gelu_tanh(b, &mlp);
    b->matmul(b, &tmp, &mlp, &bl->fc2_w, &bl->fc2_b);
    b->add(b, &h, &h, &tmp);
}

int vision_encode(Vision *v, const float *pixels, const int32_t *grid, int n_items,
                  float *embeds, float *deepstack, char *err)
{
    const ModelConfig *c = v->cfg;
    Backend *b = v->b;
    int64_t np = 0;
    int n_seg = 0;
    v->cu[0] = 0;
    for (int i = 0; i < n_items; i++) {
        int t = grid[i * 3], gh = grid[i * 3 + 1], gw = grid[i * 3 + 2];
        if (t <= 0 || gh <= 0 || gw <= 0 || gh % 2 || gw % 2)
            return err_set(err, VLQ_EINPUT, "vision: item %d: grid %dx%dx%d is not a positive "
                           "multiple of the 2x2 merge", i, t, gh, gw);
        if (np + (int64_t)t * gh * gw > v->max_patches)
            return err_set(err, VLQ_EINPUT, "vision: %lld+ patches exceed the run state's %d",
                           (long long)(np + (int64_t)t * gh * gw), v->max_patches);
        vision_item_tables(v, (int)np, t, gh, gw);
        for (int f = 0; f < t; f++, n_seg++) /* one attention segment per frame group */
            v->cu[n_seg + 1] = v->cu[n_seg] + gh * gw;
        np += (int64_t)t * gh * gw;
    }
    if (np == 0)
        return 0;
    Tensor pix = backend_view_rows(&v->pix, 0, np), h = backend_view_rows(&v->h, 0, np);
    Tensor tmp = backend_view_rows(&v->tmp, 0, np);
    b->write(b, &pix, 0, pixels, np);
    b->matmul(b, &h, &pix, &v->patch_w, &v->patch_b);
    vision_tap(v, "patch_embed", 0, &h);
    b->embed_mix4(b, &tmp, &v->pos_embed, v->mix_idx, v->mix_w, (int)np);
    vision_tap(v, "pos_embed", 0, &tmp);
    b->add(b, &h, &h, &tmp);
    int64_t nm = np / 4, out_d = c->v_out_hidden_size;
    for (int i = 0; i < c->v_depth; i++) {
        vision_block(v, &v->blocks[i], (int)np, n_seg);
        vision_tap(v, "block", i, &h);
        for (int j = 0; j < c->n_deepstack; j++)
            if (c->deepstack_indexes[j] == i && deepstack)
                vision_merge(v, &v->deep[j], 1, (int)np, deepstack + j * nm * out_d);
    }
    vision_merge(v, &v->merger, 0, (int)np, embeds);
    return 0;
}
