/* model: the .vlq model file (see model.h): config parsing, the expected tensor list,
 * open (mmap, header, metadata, tensor directory, checksums) and accessors.
 *
 * The config parser mirrors transformers 4.57.1 configuration_qwen3_vl.py
 * (Qwen3VLConfig, Qwen3VLTextConfig, Qwen3VLVisionConfig); fields that the engine needs
 * are required (the class defaults are not the checkpoints' values, so a missing field
 * is an error, not a default). The tensor list mirrors the module tree of
 * modeling_qwen3_vl.py (Qwen3VLForConditionalGeneration). model_open trusts nothing in
 * the file: every offset and size is checked against the mapping before a pointer is
 * formed, and every tensor's CRC32 is checked (in parallel over tensors) unless the
 * caller asks not to.
 *
 * Residency: the file is mapped without MAP_POPULATE. model_open populates (and checks)
 * only the text decoder's tensors and the blobs; the vision tower's tensors (names
 * "model.visual.*") are populated and checked by model_prepare_vision, which vision_new
 * calls, so a text-only run never holds the vision tower in its RSS. Populating uses
 * MADV_POPULATE_READ (Linux 5.14+; one call per tensor), else reads one byte per page.
 * MADV_HUGEPAGE is asked for on the whole mapping; whether the kernel maps any of it
 * with huge pages (file THP needs a filesystem with large folios) is read back from
 * /proc/self/smaps and reported by model_residency, not assumed. */
#define _GNU_SOURCE
#include "model.h"

#include "err.h"
#include "tok.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* Elements one tensor may have: 4 TiB of f32, far above any real weight; a directory
 * entry past it is corrupt, and the products of its dimensions never wrap. */
#define MODEL_MAX_NUMEL ((int64_t)1 << 40)

/* What model_open and model_prepare_vision did to bring the mapping in; mutable behind
 * a const Model (model_prepare_vision, model_residency take one). */
typedef struct {
    int flags;             /* the MODEL_OPEN_* flags of model_open_ex */
    const char *how;       /* "MADV_POPULATE_READ" or "page reads" (the fallback) */
    const char *huge;      /* what MADV_HUGEPAGE answered */
    size_t text_bytes;     /* tensors populated at open (and blobs) */
    size_t vision_bytes;   /* the vision tower's tensors */
    int vision_state;      /* 0 not yet, 1 populated (and checked), < 0 its VLQ_E* error */
    char vision_err[VLQ_ERRLEN]; /* the error of a failed model_prepare_vision */
    char text[384];        /* model_residency's line */
} ModelResidency;

struct Model {
    char *path;
    unsigned char *map;    /* the whole file, read-only */
    size_t len;
    ModelResidency *res;   /* owned */
    uint32_t *crcs;        /* each tensor's expected CRC32 (the vision ones are checked late) */
    json_t *meta;          /* owns the strings tensors[i].name points at */
    char *config_text;     /* config.json, re-serialised */
    char *generation_text; /* generation_config.json or NULL */
    ModelConfig cfg;
    ModelTensor *tensors;
    int n_tensors;
    const char *chat_template;
    const char *tokenizer;
    size_t tokenizer_len;
};

/* ---- config ---- */

static int model_get_int(json_t *o, const char *where, const char *key, int required, int dflt,
                         int *out, char *err)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required)
            return err_set(err, VLQ_EMODEL, "%s%s missing", where, key);
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < -1 || json_integer_value(v) > (1 << 30))
        return err_set(err, VLQ_EMODEL, "%s%s is not a valid integer", where, key);
    *out = (int)json_integer_value(v);
    return 0;
}

static int model_get_float(json_t *o, const char *where, const char *key, int required,
                           double dflt, float *out, char *err)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required)
            return err_set(err, VLQ_EMODEL, "%s%s missing", where, key);
        *out = (float)dflt;
        return 0;
    }
    if (!json_is_number(v))
        return err_set(err, VLQ_EMODEL, "%s%s is not a number", where, key);
    *out = (float)json_number_value(v);
    return 0;
}

/* Integer list (e.g. deepstack_visual_indexes); *n its length, at most max. */
static int model_get_ints(json_t *o, const char *where, const char *key, int max, int *vals,
                          int *n, char *err)
{
    json_t *a = json_object_get(o, key);
    if (!json_is_array(a))
        return err_set(err, VLQ_EMODEL, "%s%s missing or not a list", where, key);
    if ((int)json_array_size(a) > max)
        return err_set(err, VLQ_EMODEL, "%s%s has %zu entries (at most %d)", where, key,
                       json_array_size(a), max);
    *n = (int)json_array_size(a);
    for (int i = 0; i < *n; i++) {
        json_t *v = json_array_get(a, (size_t)i);
        if (!json_is_integer(v))
            return err_set(err, VLQ_EMODEL, "%s%s[%d] is not an integer", where, key, i);
        vals[i] = (int)json_integer_value(v);
    }
    return 0;
}

static int model_parse_text(json_t *t, ModelConfig *c, char *err)
{
    const char *w = "text_config.";
    int rc;
    if ((rc = model_get_int(t, w, "vocab_size", 1, 0, &c->vocab_size, err)) ||
        (rc = model_get_int(t, w, "hidden_size", 1, 0, &c->hidden_size, err)) ||
        (rc = model_get_int(t, w, "num_hidden_layers", 1, 0, &c->n_layers, err)) ||
        (rc = model_get_int(t, w, "num_attention_heads", 1, 0, &c->n_heads, err)) ||
        (rc = model_get_int(t, w, "num_key_value_heads", 0, c->n_heads, &c->n_kv_heads, err)) ||
        (rc = model_get_int(t, w, "intermediate_size", 1, 0, &c->intermediate_size, err)) ||
        (rc = model_get_float(t, w, "rms_norm_eps", 0, 1e-6, &c->rms_norm_eps, err)) ||
        (rc = model_get_int(t, w, "bos_token_id", 0, -1, &c->bos_token_id, err)))
        return rc;
    if (c->n_heads <= 0)
        return err_set(err, VLQ_EMODEL, "text_config.num_attention_heads must be positive");
    if ((rc = model_get_int(t, w, "head_dim", 0, c->hidden_size / c->n_heads, &c->head_dim, err)))
        return rc;
    json_t *act = json_object_get(t, "hidden_act");
    if (act && (!json_is_string(act) || strcmp(json_string_value(act), "silu")))
        return err_set(err, VLQ_EMODEL, "text_config.hidden_act: only silu is supported");
    if (json_is_true(json_object_get(t, "attention_bias")))
        return err_set(err, VLQ_EMODEL, "text_config.attention_bias: true is not supported");
    /* 4.57: rope_theta + rope_scaling; v5: rope_parameters with both */
    json_t *rope = json_object_get(t, "rope_scaling");
    if (!json_is_object(rope))
        rope = json_object_get(t, "rope_parameters");
    if (!json_is_object(rope))
        return err_set(err, VLQ_EMODEL, "text_config.rope_scaling missing (mrope_section)");
    json_t *rt = json_object_get(rope, "rope_type");
    if (rt && (!json_is_string(rt) || strcmp(json_string_value(rt), "default")))
        return err_set(err, VLQ_EMODEL, "text_config.rope_scaling.rope_type: only default");
    int nsec = 0;
    if ((rc = model_get_ints(rope, "text_config.rope_scaling.", "mrope_section", 3,
                             c->mrope_section, &nsec, err)))
        return rc;
    if (nsec != 3)
        return err_set(err, VLQ_EMODEL, "text_config.rope_scaling.mrope_section: 3 entries needed");
    c->mrope_interleaved = json_is_true(json_object_get(rope, "mrope_interleaved"));
    json_t *theta = json_object_get(t, "rope_theta");
    if (!theta)
        theta = json_object_get(rope, "rope_theta");
    if (!json_is_number(theta))
        return err_set(err, VLQ_EMODEL, "text_config.rope_theta missing");
    c->rope_theta = (float)json_number_value(theta);
    /* eos from text_config; generation_config's list, when present, replaces it */
    int eos = -1;
    if ((rc = model_get_int(t, w, "eos_token_id", 0, -1, &eos, err)))
        return rc;
    c->n_eos = eos >= 0;
    c->eos_token_ids[0] = eos;
    return 0;
}

static int model_parse_vision(json_t *v, ModelConfig *c, char *err)
{
    const char *w = "vision_config.";
    int rc;
    if ((rc = model_get_int(v, w, "depth", 1, 0, &c->v_depth, err)) ||
        (rc = model_get_int(v, w, "hidden_size", 1, 0, &c->v_hidden_size, err)) ||
        (rc = model_get_int(v, w, "num_heads", 1, 0, &c->v_n_heads, err)) ||
        (rc = model_get_int(v, w, "intermediate_size", 1, 0, &c->v_intermediate_size, err)) ||
        (rc = model_get_int(v, w, "out_hidden_size", 1, 0, &c->v_out_hidden_size, err)) ||
        (rc = model_get_int(v, w, "patch_size", 1, 0, &c->v_patch_size, err)) ||
        (rc = model_get_int(v, w, "temporal_patch_size", 1, 0, &c->v_temporal_patch_size, err)) ||
        (rc = model_get_int(v, w, "spatial_merge_size", 1, 0, &c->v_spatial_merge_size, err)) ||
        (rc = model_get_int(v, w, "num_position_embeddings", 1, 0, &c->v_num_position_embeddings,
                            err)) ||
        (rc = model_get_int(v, w, "in_channels", 0, 3, &c->v_in_channels, err)) ||
        (rc = model_get_ints(v, w, "deepstack_visual_indexes", MODEL_MAX_DEEPSTACK,
                             c->deepstack_indexes, &c->n_deepstack, err)))
        return rc;
    json_t *act = json_object_get(v, "hidden_act");
    if (act && (!json_is_string(act) || strcmp(json_string_value(act), "gelu_pytorch_tanh")))
        return err_set(err, VLQ_EMODEL, "vision_config.hidden_act: only gelu_pytorch_tanh");
    return 0;
}

static int model_parse_generation(const char *text, ModelConfig *c, char *err)
{
    json_error_t je;
    json_t *g = json_loads(text, 0, &je);
    if (!json_is_object(g)) {
        json_decref(g);
        return err_set(err, VLQ_EMODEL, "generation_config.json: %s", je.text);
    }
    int rc = 0;
    json_t *eos = json_object_get(g, "eos_token_id");
    if (json_is_integer(eos)) {
        c->n_eos = 1;
        c->eos_token_ids[0] = (int)json_integer_value(eos);
    } else if (json_is_array(eos)) {
        rc = model_get_ints(g, "generation_config.", "eos_token_id", MODEL_MAX_EOS,
                            c->eos_token_ids, &c->n_eos, err);
    }
    int bos = c->bos_token_id;
    if (!rc)
        rc = model_get_int(g, "generation_config.", "bos_token_id", 0, bos, &c->bos_token_id, err);
    if (!rc)
        rc = model_get_float(g, "generation_config.", "temperature", 0, 0, &c->temperature, err);
    if (!rc)
        rc = model_get_float(g, "generation_config.", "top_p", 0, 0, &c->top_p, err);
    if (!rc)
        rc = model_get_int(g, "generation_config.", "top_k", 0, 0, &c->top_k, err);
    if (!rc)
        rc = model_get_float(g, "generation_config.", "repetition_penalty", 0, 0,
                             &c->repetition_penalty, err);
    json_decref(g);
    return rc;
}

/* The consistency rules of the config (Qwen3VLConfig, Qwen3VLTextConfig,
 * Qwen3VLVisionConfig) that the engine's loops rely on. */
static int model_check_config(const ModelConfig *c, char *err)
{
    const int pos_side = (int)lrint(sqrt((double)c->v_num_position_embeddings));
    const int v_head_dim = c->v_n_heads > 0 ? c->v_hidden_size / c->v_n_heads : 0;
    int sec = c->mrope_section[0] + c->mrope_section[1] + c->mrope_section[2];
    const char *why =
        c->vocab_size <= 0 || c->hidden_size <= 0 || c->n_layers <= 0 || c->head_dim <= 0 ||
                c->intermediate_size <= 0 ? "text sizes must be positive"
        : c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads ? "num_attention_heads % num_key_value_heads != 0"
        : c->head_dim % 2 ? "head_dim must be even"
        : sec != c->head_dim / 2 ? "sum(mrope_section) != head_dim/2"
        : 3 * c->mrope_section[1] > c->head_dim / 2 || 3 * c->mrope_section[2] > c->head_dim / 2
            ? "3*mrope_section[1|2] > head_dim/2"
        : c->v_depth <= 0 || c->v_hidden_size <= 0 || c->v_n_heads <= 0 ||
                c->v_intermediate_size <= 0 || c->v_patch_size <= 0 ||
                c->v_temporal_patch_size <= 0 || c->v_spatial_merge_size <= 0 ||
                c->v_in_channels <= 0 ? "vision sizes must be positive"
        : c->v_hidden_size % c->v_n_heads || v_head_dim % 4 ? "vision head_dim must be a multiple of 4"
        : pos_side * pos_side != c->v_num_position_embeddings ? "num_position_embeddings is not a square"
        : c->v_out_hidden_size != c->hidden_size ? "vision out_hidden_size != text hidden_size"
        : c->n_deepstack > c->n_layers ? "more DeepStack taps than text layers"
        : NULL;
    if (why)
        return err_set(err, VLQ_EMODEL, "config: %s", why);
    for (int i = 0; i < c->n_deepstack; i++)
        if (c->deepstack_indexes[i] < 0 || c->deepstack_indexes[i] >= c->v_depth)
            return err_set(err, VLQ_EMODEL, "config: deepstack_visual_indexes[%d] = %d outside "
                           "the %d vision blocks", i, c->deepstack_indexes[i], c->v_depth);
    const int ids[] = {c->image_token_id, c->video_token_id, c->vision_start_token_id,
                       c->vision_end_token_id};
    for (int i = 0; i < 4; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return err_set(err, VLQ_EMODEL, "config: special token id %d outside the vocabulary",
                           ids[i]);
    return 0;
}

int model_config_parse(const char *config_json, const char *generation_json, ModelConfig *cfg,
                       char *err)
{
    memset(cfg, 0, sizeof *cfg);
    json_error_t je;
    json_t *root = json_loads(config_json, 0, &je);
    if (!json_is_object(root)) {
        json_decref(root);
        return err_set(err, VLQ_EMODEL, "config.json: line %d: %s", je.line, je.text);
    }
    int rc = 0;
    json_t *mt = json_object_get(root, "model_type");
    json_t *arch = json_array_get(json_object_get(root, "architectures"), 0);
    if (!json_is_string(mt) || strcmp(json_string_value(mt), "qwen3_vl")) {
        rc = err_set(err, VLQ_EMODEL, "config.json: unknown architecture (model_type %s, %s); "
                     "vlq reads qwen3_vl (Qwen3VLForConditionalGeneration)",
                     json_is_string(mt) ? json_string_value(mt) : "missing",
                     json_is_string(arch) ? json_string_value(arch) : "no architectures");
        goto out;
    }
    json_t *text = json_object_get(root, "text_config"), *vis = json_object_get(root, "vision_config");
    if (!json_is_object(text) || !json_is_object(vis)) {
        rc = err_set(err, VLQ_EMODEL, "config.json: text_config or vision_config missing");
        goto out;
    }
    if ((rc = model_parse_text(text, cfg, err)) || (rc = model_parse_vision(vis, cfg, err)))
        goto out;
    const char *w = "";
    if ((rc = model_get_int(root, w, "image_token_id", 1, 0, &cfg->image_token_id, err)) ||
        (rc = model_get_int(root, w, "video_token_id", 1, 0, &cfg->video_token_id, err)) ||
        (rc = model_get_int(root, w, "vision_start_token_id", 1, 0, &cfg->vision_start_token_id,
                            err)) ||
        (rc = model_get_int(root, w, "vision_end_token_id", 1, 0, &cfg->vision_end_token_id, err)))
        goto out;
    /* tie: the top-level flag is what Qwen3VLForConditionalGeneration uses */
    json_t *tie = json_object_get(root, "tie_word_embeddings");
    if (!tie)
        tie = json_object_get(text, "tie_word_embeddings");
    cfg->tie_word_embeddings = json_is_true(tie);
    if (generation_json && (rc = model_parse_generation(generation_json, cfg, err)))
        goto out;
    rc = model_check_config(cfg, err);
out:
    json_decref(root);
    return rc;
}

/* ---- expected tensors ---- */

static void model_spec(ModelTensorSpec *s, int *n, ModelRole role, int64_t d0, int64_t d1,
                       const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void model_spec(ModelTensorSpec *s, int *n, ModelRole role, int64_t d0, int64_t d1,
                       const char *fmt, ...)
{
    ModelTensorSpec *t = &s[(*n)++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->role = role;
    t->ndim = d1 ? 2 : 1;
    t->shape[0] = d0;
    t->shape[1] = d1 ? d1 : 1;
    t->shape[2] = t->shape[3] = 1;
}

/* A Linear (weight [out, in] and bias [out]) of the vision tower. */
static void model_spec_vlinear(ModelTensorSpec *s, int *n, int64_t out, int64_t in,
                               const char *prefix)
{
    model_spec(s, n, MODEL_ROLE_VISION, out, in, "%s.weight", prefix);
    model_spec(s, n, MODEL_ROLE_VISION, out, 0, "%s.bias", prefix);
}

static void model_spec_merger(ModelTensorSpec *s, int *n, const ModelConfig *c, const char *prefix,
                              int64_t norm_dim)
{
    int64_t m = (int64_t)c->v_hidden_size * c->v_spatial_merge_size * c->v_spatial_merge_size;
    char p[80];
    snprintf(p, sizeof p, "%s.norm", prefix);
    model_spec_vlinear(s, n, norm_dim, 0, p); /* LayerNorm weight, bias: [norm_dim] */
    snprintf(p, sizeof p, "%s.linear_fc1", prefix);
    model_spec_vlinear(s, n, m, m, p);
    snprintf(p, sizeof p, "%s.linear_fc2", prefix);
    model_spec_vlinear(s, n, c->v_out_hidden_size, m, p);
}

ModelTensorSpec *model_tensor_specs(const ModelConfig *c, int *n)
{
    int cap = 8 + 12 * c->v_depth + 6 * (1 + c->n_deepstack) + 11 * c->n_layers + 4;
    ModelTensorSpec *s = xcalloc((size_t)cap, sizeof *s);
    *n = 0;
    const int64_t vh = c->v_hidden_size, vi = c->v_intermediate_size;
    const int64_t patch = (int64_t)c->v_in_channels * c->v_temporal_patch_size * c->v_patch_size *
                          c->v_patch_size;
    model_spec_vlinear(s, n, vh, patch, "model.visual.patch_embed.proj");
    model_spec(s, n, MODEL_ROLE_VISION, c->v_num_position_embeddings, vh,
               "model.visual.pos_embed.weight");
    for (int i = 0; i < c->v_depth; i++) {
        char p[80];
        const char *parts[] = {"norm1", "norm2"};
        for (int k = 0; k < 2; k++) {
            snprintf(p, sizeof p, "model.visual.blocks.%d.%s", i, parts[k]);
            model_spec_vlinear(s, n, vh, 0, p);
        }
        snprintf(p, sizeof p, "model.visual.blocks.%d.attn.qkv", i);
        model_spec_vlinear(s, n, 3 * vh, vh, p);
        snprintf(p, sizeof p, "model.visual.blocks.%d.attn.proj", i);
        model_spec_vlinear(s, n, vh, vh, p);
        snprintf(p, sizeof p, "model.visual.blocks.%d.mlp.linear_fc1", i);
        model_spec_vlinear(s, n, vi, vh, p);
        snprintf(p, sizeof p, "model.visual.blocks.%d.mlp.linear_fc2", i);
        model_spec_vlinear(s, n, vh, vi, p);
    }
    const int64_t m = vh * c->v_spatial_merge_size * c->v_spatial_merge_size;
    model_spec_merger(s, n, c, "model.visual.merger", vh);
    for (int j = 0; j < c->n_deepstack; j++) {
        char p[80];
        snprintf(p, sizeof p, "model.visual.deepstack_merger_list.%d", j);
        model_spec_merger(s, n, c, p, m);
    }
    const int64_t h = c->hidden_size, q = (int64_t)c->n_heads * c->head_dim,
                  kv = (int64_t)c->n_kv_heads * c->head_dim, in = c->intermediate_size;
    const char *lm = "model.language_model";
    model_spec(s, n, MODEL_ROLE_EMBED, c->vocab_size, h, "%s.embed_tokens.weight", lm);
    for (int i = 0; i < c->n_layers; i++) {
        model_spec(s, n, MODEL_ROLE_NORM, h, 0, "%s.layers.%d.input_layernorm.weight", lm, i);
        model_spec(s, n, MODEL_ROLE_NORM, h, 0, "%s.layers.%d.post_attention_layernorm.weight",
                   lm, i);
        model_spec(s, n, MODEL_ROLE_LINEAR, q, h, "%s.layers.%d.self_attn.q_proj.weight", lm, i);
        model_spec(s, n, MODEL_ROLE_LINEAR, kv, h, "%s.layers.%d.self_attn.k_proj.weight", lm, i);
        model_spec(s, n, MODEL_ROLE_LINEAR, kv, h, "%s.layers.%d.self_attn.v_proj.weight", lm, i);
        model_spec(s, n, MODEL_ROLE_LINEAR, h, q, "%s.layers.%d.self_attn.o_proj.weight", lm, i);
        model_spec(s, n, MODEL_ROLE_NORM, c->head_dim, 0, "%s.layers.%d.self_attn.q_norm.weight",
                   lm, i);
        model_spec(s, n, MODEL_ROLE_NORM, c->head_dim, 0, "%s.layers.%d.self_attn.k_norm.weight",
                   lm, i);
        model_spec(s, n, MODEL_ROLE_LINEAR, in, h, "%s.layers.%d.mlp.gate_proj.weight", lm, i);
        model_spec(s, n, MODEL_ROLE_LINEAR, in, h, "%s.layers.%d.mlp.up_proj.weight", lm, i);
        model_spec(s, n, MODEL_ROLE_LINEAR, h, in, "%s.layers.%d.mlp.down_proj.weight", lm, i);
    }
    model_spec(s, n, MODEL_ROLE_NORM, h, 0, "%s.norm.weight", lm);
    if (!c->tie_word_embeddings)
        model_spec(s, n, MODEL_ROLE_LINEAR, c->vocab_size, h, "lm_head.weight");
    VLQ_ASSERT(*n <= cap);
    return s;
}

/* ---- open ---- */

static uint64_t model_u64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static uint32_t model_u32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static int model_parse_type(const char *s, QuantType *t)
{
    static const char *names[] = {"f32", "f16", "bf16", "q8", "q4"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(s, names[i])) {
            *t = (QuantType)i;
            return 0;
        }
    return -1;
}

/* A byte range [off, off+size) of the file, checked: 0, or -1 when outside. */
static int model_range_ok(const Model *m, uint64_t off, uint64_t size)
{
    return off <= m->len && size <= m->len - off;
}

static int model_header(Model *m, uint64_t *meta_off, uint64_t *meta_size, char *err)
{
    const unsigned char *h = m->map;
    if (m->len < MODEL_HEADER_SIZE || memcmp(h, MODEL_MAGIC, 8))
        return err_set(err, VLQ_EMODEL, "not a vlq model file (bad magic)");
    uint32_t version = model_u32(h + 8), hsize = model_u32(h + 12);
    if (version != MODEL_VERSION)
        return err_set(err, VLQ_EMODEL, "format version %u, this vlq reads version %d: "
                       "convert the model again", version, MODEL_VERSION);
    if (hsize != MODEL_HEADER_SIZE)
        return err_set(err, VLQ_EMODEL, "header size %u, expected %d", hsize, MODEL_HEADER_SIZE);
    uint64_t fsize = model_u64(h + 16);
    if (fsize != m->len)
        return err_set(err, VLQ_EMODEL, "%s: the header says %llu bytes, the file has %zu",
                       fsize > m->len ? "truncated" : "trailing bytes",
                       (unsigned long long)fsize, m->len);
    *meta_off = model_u64(h + 24);
    *meta_size = model_u64(h + 32);
    if (*meta_off < MODEL_HEADER_SIZE || !model_range_ok(m, *meta_off, *meta_size))
        return err_set(err, VLQ_EMODEL, "metadata range outside the file");
    uint32_t crc = (uint32_t)crc32(0L, m->map + *meta_off, (uInt)*meta_size);
    if (crc != model_u32(h + 40))
        return err_set(err, VLQ_EMODEL, "metadata checksum mismatch: the file is corrupt");
    return 0;
}

/* One directory entry: type, shape, group, range, size consistent with quant.h. */
static int model_dir_entry(Model *m, json_t *e, ModelTensor *t, uint32_t *crc, char *err)
{
    json_t *name = json_object_get(e, "name"), *type = json_object_get(e, "type"),
           *shape = json_object_get(e, "shape");
    if (!json_is_string(name) || !json_is_string(type) || !json_is_array(shape) ||
        json_array_size(shape) < 1 || json_array_size(shape) > 4)
        return err_set(err, VLQ_EMODEL, "bad tensor directory entry");
    t->name = json_string_value(name);
    if (model_parse_type(json_string_value(type), &t->type))
        return err_set(err, VLQ_EMODEL, "%s: unknown type %s", t->name, json_string_value(type));
    t->ndim = (int)json_array_size(shape);
    int64_t numel = 1;
    for (int d = 0; d < 4; d++) {
        json_t *v = json_array_get(shape, (size_t)d);
        t->shape[d] = d < t->ndim ? (int64_t)json_integer_value(v) : 1;
        if (d < t->ndim && (!json_is_integer(v) || t->shape[d] <= 0 || t->shape[d] > (1 << 30)))
            return err_set(err, VLQ_EMODEL, "%s: bad shape", t->name);
    }
    /* each dimension fits, their product may not: checked, never wrapped */
    if (util_numel(t->shape, 4, MODEL_MAX_NUMEL, &numel))
        return err_set(err, VLQ_EMODEL, "%s: shape [%lld, %lld, %lld, %lld] overflows: more "
                       "than 2^40 elements", t->name, (long long)t->shape[0],
                       (long long)t->shape[1], (long long)t->shape[2], (long long)t->shape[3]);
    json_int_t group = json_integer_value(json_object_get(e, "group"));
    json_int_t off = json_integer_value(json_object_get(e, "offset"));
    json_int_t nbytes = json_integer_value(json_object_get(e, "nbytes"));
    int64_t rows = t->shape[0], cols = numel / t->shape[0];
    t->group = 0;
    if (t->type == QUANT_Q4 || t->type == QUANT_Q8) {
        if (t->ndim != 2 || group < 32 || group % 32 || cols % group)
            return err_set(err, VLQ_EMODEL, "%s: bad quantisation group %lld for %lld columns",
                           t->name, (long long)group, (long long)cols);
        t->group = (int)group;
    }
    size_t want = quant_nbytes(t->type, rows, cols, t->group ? t->group : 32);
    if (off < 0 || off % QUANT_ALIGN || nbytes != (json_int_t)want)
        return err_set(err, VLQ_EMODEL, "%s: bad offset %lld or size %lld (expected %zu)",
                       t->name, (long long)off, (long long)nbytes, want);
    if (!model_range_ok(m, (uint64_t)off, (uint64_t)nbytes))
        return err_set(err, VLQ_EMODEL, "%s: data outside the file", t->name);
    t->data = m->map + off;
    t->nbytes = (size_t)nbytes;
    *crc = (uint32_t)json_integer_value(json_object_get(e, "crc32"));
    return 0;
}

/* CRC32 of each tensor against the directory, in parallel over tensors. */
/* 1 if t belongs to the vision tower (populated and checked by model_prepare_vision). */
static int model_is_vision(const ModelTensor *t)
{
    return !strncmp(t->name, "model.visual.", 13);
}

/* Check the CRC32 of every tensor of the vision tower (vision 1) or of the rest (0). */
static int model_verify(const Model *m, int vision, char *err)
{
    const uint32_t *crcs = m->crcs;
    int bad = -1;
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < m->n_tensors; i++) {
        const ModelTensor *t = &m->tensors[i];
        if (model_is_vision(t) != vision)
            continue;
        uLong c = crc32(0L, Z_NULL, 0);
        for (size_t o = 0; o < t->nbytes; o += 1u << 30) {
            size_t n = t->nbytes - o < (1u << 30) ? t->nbytes - o : (1u << 30);
            c = crc32(c, (const Bytef *)t->data + o, (uInt)n);
        }
        if ((uint32_t)c != crcs[i]) {
#pragma omp critical
            if (bad < 0 || i < bad)
                bad = i;
        }
    }
    if (bad >= 0)
        return err_set(err, VLQ_EMODEL, "%s: checksum mismatch: the file is corrupt",
                       m->tensors[bad].name);
    return 0;
}

/* Every tensor the config needs: present, the right shape, a type it may have. */
static int model_check_tensors(Model *m, char *err)
{
    int n;
    ModelTensorSpec *spec = model_tensor_specs(&m->cfg, &n);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        const ModelTensor *t = model_tensor(m, spec[i].name);
        if (!t) {
            rc = err_set(err, VLQ_EMODEL, "tensor %s missing", spec[i].name);
            break;
        }
        for (int d = 0; d < 4; d++)
            if (t->ndim != spec[i].ndim || t->shape[d] != spec[i].shape[d]) {
                rc = err_set(err, VLQ_EMODEL, "%s: shape [%lld, %lld], expected [%lld, %lld]",
                             t->name, (long long)t->shape[0], (long long)t->shape[1],
                             (long long)spec[i].shape[0], (long long)spec[i].shape[1]);
                break;
            }
        if (!rc && spec[i].ndim == 1 && (t->type == QUANT_Q4 || t->type == QUANT_Q8))
            rc = err_set(err, VLQ_EMODEL, "%s: a 1-D tensor cannot be quantised", t->name);
    }
    free(spec);
    return rc;
}

/* ---- residency ---- */

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* Linux 5.14; older headers lack it */
#endif

/* Bring bytes [p, p+n) of the mapping into this process's page tables. */
static void model_populate_range(ModelResidency *r, const unsigned char *p, size_t n)
{
    if (!n)
        return;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(page - 1);
    size_t len = (uintptr_t)p + n - a;
    if (r->how != NULL && !strcmp(r->how, "MADV_POPULATE_READ")) {
        if (!madvise((void *)a, len, MADV_POPULATE_READ))
            return;
        /* EINVAL: a kernel before 5.14; anything else (EFAULT past a truncated file's
         * end, ENOMEM): read the pages and let a fault say what is wrong */
    }
    r->how = "page reads";
    volatile unsigned char sink = 0;
    for (size_t o = 0; o < len; o += page)
        sink ^= ((const volatile unsigned char *)a)[o];
    (void)sink;
}

/* Populate the text part (vision 0: every tensor not in the vision tower, and the
 * tokenizer blob) or the vision tower (1), counting its bytes. */
static void model_populate_part(const Model *m, int vision)
{
    ModelResidency *r = m->res;
    size_t total = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const ModelTensor *t = &m->tensors[i];
        if (model_is_vision(t) != vision)
            continue;
        model_populate_range(r, t->data, t->nbytes);
        total += t->nbytes;
    }
    if (vision) {
        r->vision_bytes = total;
    } else {
        model_populate_range(r, (const unsigned char *)m->tokenizer, m->tokenizer_len);
        r->text_bytes = total + m->tokenizer_len;
    }
}

/* Bytes of the mapping mapped with huge pages (FilePmdMapped in /proc/self/smaps); -1
 * when smaps cannot be read. */
static int64_t model_huge_bytes(const Model *m)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return -1;
    char line[512];
    int in = 0;
    int64_t kb = -1;
    uintptr_t start = (uintptr_t)m->map;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            if (in)
                break;
            in = lo == start;
            continue;
        }
        long long v;
        if (in && sscanf(line, "FilePmdMapped: %lld kB", &v) == 1) {
            kb = v;
            break;
        }
    }
    fclose(f);
    return kb < 0 ? (in ? 0 : -1) : kb * 1024;
}

static int model_load_meta(Model *m, uint64_t meta_off, uint64_t meta_size, int flags, char *err)
{
    json_error_t je;
    m->meta = json_loadb((const char *)m->map + meta_off, (size_t)meta_size, 0, &je);
    json_t *cfg = json_object_get(m->meta, "config"), *dir = json_object_get(m->meta, "tensors");
    if (!json_is_object(cfg) || !json_is_array(dir))
        return err_set(err, VLQ_EMODEL, "metadata: config or tensors missing (%s)",
                       m->meta ? "bad metadata" : je.text);
    m->config_text = json_dumps(cfg, JSON_COMPACT);
    json_t *gen = json_object_get(m->meta, "generation_config");
    if (json_is_object(gen))
        m->generation_text = json_dumps(gen, JSON_COMPACT);
    int rc = model_config_parse(m->config_text, m->generation_text, &m->cfg, err);
    if (rc)
        return rc;
    m->chat_template = json_string_value(json_object_get(m->meta, "chat_template"));
    json_t *tok = json_object_get(json_object_get(m->meta, "blobs"), "tokenizer.json");
    if (json_is_object(tok)) {
        json_int_t off = json_integer_value(json_object_get(tok, "offset"));
        json_int_t size = json_integer_value(json_object_get(tok, "size"));
        if (off < 0 || size < 0 || !model_range_ok(m, (uint64_t)off, (uint64_t)size))
            return err_set(err, VLQ_EMODEL, "tokenizer.json: outside the file");
        uint32_t crc = (uint32_t)crc32(0L, m->map + off, (uInt)size);
        if (!(flags & MODEL_OPEN_NO_VERIFY) &&
            crc != (uint32_t)json_integer_value(json_object_get(tok, "crc32")))
            return err_set(err, VLQ_EMODEL, "tokenizer.json: checksum mismatch: the file is corrupt");
        m->tokenizer = (const char *)m->map + off;
        m->tokenizer_len = (size_t)size;
    }
    m->n_tensors = (int)json_array_size(dir);
    m->tensors = xcalloc((size_t)(m->n_tensors ? m->n_tensors : 1), sizeof *m->tensors);
    m->crcs = xcalloc((size_t)(m->n_tensors ? m->n_tensors : 1), sizeof *m->crcs);
    for (int i = 0; i < m->n_tensors && !rc; i++)
        rc = model_dir_entry(m, json_array_get(dir, (size_t)i), &m->tensors[i], &m->crcs[i], err);
    if (!rc)
        rc = model_check_tensors(m, err);
    if (!rc && !(flags & MODEL_OPEN_NO_POPULATE))
        model_populate_part(m, 0);
    if (!rc && !(flags & MODEL_OPEN_NO_VERIFY))
        rc = model_verify(m, 0, err);
    return rc;
}

int model_open_ex(const char *path, int flags, Model **out, char *err)
{
    *out = NULL;
    int fd;
    struct stat st;
    int orc = util_open_regular(path, 0, &fd, &st, err); /* never blocks on a FIFO */
    if (orc)
        return orc == VLQ_EINPUT ? VLQ_EMODEL : orc;
    if (st.st_size < MODEL_HEADER_SIZE) {
        close(fd);
        return err_set(err, VLQ_EMODEL, "%s: %lld bytes: truncated or not a vlq model file", path,
                       (long long)st.st_size);
    }
    Model *m = xcalloc(1, sizeof *m);
    m->path = xstrdup(path);
    m->len = (size_t)st.st_size;
    m->res = xcalloc(1, sizeof *m->res);
    m->res->flags = flags;
    m->res->how = "MADV_POPULATE_READ";
    /* No MAP_POPULATE: that would read the vision tower in for a text-only run. The
     * tensors a run needs are populated before it starts (decode then never waits on a
     * page fault: perf-targets.md), the text ones here, the vision ones on first use. */
    void *map = mmap(NULL, m->len, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) {
        free(m->res);
        free(m->path);
        free(m);
        return err_set(err, VLQ_EIO, "%s: mmap: %s", path, strerror(e));
    }
    m->map = map;
    if (flags & MODEL_OPEN_NO_POPULATE)
        m->res->huge = "not asked";
    else if (!madvise(map, m->len, MADV_HUGEPAGE))
        m->res->huge = "MADV_HUGEPAGE accepted";
    else
        m->res->huge = errno == EINVAL ? "MADV_HUGEPAGE refused (kernel without THP)"
                                       : "MADV_HUGEPAGE failed";
    uint64_t meta_off = 0, meta_size = 0;
    int rc = model_header(m, &meta_off, &meta_size, err);
    if (!rc)
        rc = model_load_meta(m, meta_off, meta_size, flags, err);
    if (rc) {
        err_prefix(err, "%s", path);
        model_close(m);
        return rc;
    }
    *out = m;
    return 0;
}

int model_open(const char *path, Model **out, char *err) { return model_open_ex(path, 0, out, err); }

void model_close(Model *m)
{
    if (!m)
        return;
    free(m->tensors);
    free(m->crcs);
    free(m->res);
    free(m->config_text);
    free(m->generation_text);
    json_decref(m->meta);
    if (m->map)
        munmap(m->map, m->len);
    free(m->path);
    free(m);
}

const ModelConfig *model_config(const Model *m) { return &m->cfg; }

const ModelTensor *model_tensor(const Model *m, const char *name)
{
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name))
            return &m->tensors[i];
    return NULL;
}

int model_tensor_count(const Model *m) { return m->n_tensors; }
const ModelTensor *model_tensor_at(const Model *m, int i) { return &m->tensors[i]; }

const char *model_tokenizer_json(const Model *m, size_t *len)
{
    if (len)
        *len = m->tokenizer_len;
    return m->tokenizer;
}

const char *model_chat_template(const Model *m) { return m->chat_template; }

int model_load_tok(const Model *m, Tok **out, char *err)
{
    size_t len = 0;
    const char *json = model_tokenizer_json(m, &len);
    if (!json)
        return err_set(err, VLQ_EMODEL, "%s: carries no tokenizer", m->path);
    return tok_load_json(json, len, m->path, out, err);
}
/* Populate and check the vision tower's tensors once (see the top of this file): 0, or
 * VLQ_EMODEL "tensor: checksum mismatch" (again on every later call). */
int model_prepare_vision(const Model *m, char *err)
{
    ModelResidency *r = m->res;
    if (r->vision_state == 0) {
        if (!(r->flags & MODEL_OPEN_NO_POPULATE))
            model_populate_part(m, 1);
        int rc = r->flags & MODEL_OPEN_NO_VERIFY ? 0 : model_verify(m, 1, r->vision_err);
        if (rc)
            err_prefix(r->vision_err, "%s", m->path);
        r->vision_state = rc ? rc : 1;
    }
    if (r->vision_state < 0)
        return err_set(err, r->vision_state, "%s", r->vision_err);
    return 0;
}

/* One line on how the weights are held (see model.h); borrowed until the next call. */
const char *model_residency(const Model *m)
{
    ModelResidency *r = m->res;
    const double mib = 1024.0 * 1024.0;
    if (r->flags & MODEL_OPEN_NO_POPULATE) {
        snprintf(r->text, sizeof r->text, "mmap, not populated (pages fault in on use)");
        return r->text;
    }
    size_t vb = 0;
    for (int i = 0; i < m->n_tensors; i++)
        if (model_is_vision(&m->tensors[i]))
            vb += m->tensors[i].nbytes;
    int64_t huge = model_huge_bytes(m);
    char hs[64] = "unknown";
    if (huge >= 0)
        snprintf(hs, sizeof hs, "%.0f MiB", (double)huge / mib);
    snprintf(r->text, sizeof r->text,
             "mmap, text populated (%.0f MiB, %s), vision %s (%.0f MiB), hugepages: %s, %s of "
             "%.0f MiB mapped huge",
             (double)r->text_bytes / mib, r->how,
             r->vision_state == 1 ? "populated" : r->vision_state < 0 ? "failed its check" : "lazy",
             (double)vb / mib, r->huge, hs, (double)m->len / mib);
    return r->text;
}
const char *model_generation_json(const Model *m) { return m->generation_text; }
const char *model_config_json(const Model *m) { return m->config_text; }
