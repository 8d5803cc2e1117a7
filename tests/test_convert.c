/* Tests of safetensors reading, `vlq convert` (convert_run), the quantiser and
 * `vlq export`, on the tiny golden checkpoints (tests/golden/tiny, f32 in one file;
 * tests/golden/tiny-bf16, bf16 in three shards) and on the real 4B config. */
#include "convert.h"
#include "err.h"
#include "half.h"
#include "model.h"
#include "safetensors.h"
#include "test.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>

static const char *tc_tokenizer(void)
{
    static char p[4096];
    snprintf(p, sizeof p, "%s/tests/data/qwen3-tokenizer/tokenizer.json", test_root());
    return p;
}

static const char *tc_golden(const char *name)
{
    static char p[4096];
    snprintf(p, sizeof p, "%s/tests/golden/%s", test_root(), name);
    return p;
}

static int tc_convert(const char *dir, const char *out, ConvertQuant q, char *err)
{
    ConvertOptions o = {.quant = q, .tokenizer_path = tc_tokenizer()};
    return convert_run(dir, out, &o, err);
}

/* Every tensor of m equal, bit for bit, to the checkpoint's. */
static void tc_check_bit_equal(const Model *m, const SafeSet *st)
{
    CHECK(model_tensor_count(m) > 100);
    for (int i = 0; i < model_tensor_count(m); i++) {
        const ModelTensor *t = model_tensor_at(m, i);
        const SafeTensor *s = safetensors_find(st, t->name);
        CHECK(s != NULL);
        if (!s)
            continue;
        CHECK_EQ(t->type, s->dtype);
        CHECK_EQ(t->nbytes, s->nbytes);
        CHECK_EQ((uintptr_t)t->data % QUANT_ALIGN, 0);
        if (t->nbytes == s->nbytes && memcmp(t->data, s->data, s->nbytes))
            test_fail(__FILE__, __LINE__, "%s differs", t->name);
    }
}

static void test_roundtrip_none(void)
{
    char err[VLQ_ERRLEN];
    CHECK_EQ(tc_convert(tc_golden("tiny"), "m.vlq", CONVERT_QUANT_NONE, err), 0);
    Model *m = NULL;
    CHECK_EQ(model_open("m.vlq", &m, err), 0);
    if (!m) {
        test_fail(__FILE__, __LINE__, "%s", err);
        return;
    }
    SafeSet *st = NULL;
    CHECK_EQ(safetensors_open_dir(tc_golden("tiny"), &st, err), 0);
    tc_check_bit_equal(m, st);
    const ModelConfig *c = model_config(m);
    CHECK_EQ(c->vocab_size, 2048);
    CHECK_EQ(c->hidden_size, 64);
    CHECK_EQ(c->n_layers, 4);
    CHECK_EQ(c->n_kv_heads, 2);
    CHECK_EQ(c->head_dim, 16);
    CHECK_EQ(c->mrope_section[0], 4);
    CHECK_EQ(c->mrope_interleaved, 1);
    CHECK_EQ(c->n_deepstack, 2);
    CHECK_EQ(c->deepstack_indexes[1], 2);
    CHECK_EQ(c->image_token_id, 2044);
    CHECK_EQ(c->n_eos, 2);
    CHECK_EQ(c->eos_token_ids[0], 2034);
    CHECK_EQ(c->eos_token_ids[1], 2032);
    CHECK_EQ(c->top_k, 20);
    CHECK(fabsf(c->temperature - 0.7f) < 1e-6f);
    CHECK_EQ(c->tie_word_embeddings, 1);
    const ModelTensor *pe = model_tensor(m, "model.visual.patch_embed.proj.weight");
    CHECK(pe && pe->ndim == 2 && pe->shape[0] == 64 && pe->shape[1] == 1536);
    CHECK(model_tensor(m, "lm_head.weight") == NULL);
    size_t len, tlen;
    char *tok;
    CHECK_EQ(util_read_file(tc_tokenizer(), 0, &tok, &tlen, err), 0);
    const char *mt = model_tokenizer_json(m, &len);
    CHECK(mt && len == tlen && !memcmp(mt, tok, len));
    free(tok);
    CHECK(model_chat_template(m) && strstr(model_chat_template(m), "<|vision_start|>"));
    CHECK(strstr(model_residency(m), "text populated") != NULL);
    safetensors_close(st);
    model_close(m);
}

static void test_roundtrip_bf16_shards(void)
{
    char err[VLQ_ERRLEN];
    SafeSet *st = NULL;
    CHECK_EQ(safetensors_open_dir(tc_golden("tiny-bf16"), &st, err), 0);
    if (!st)
        return;
    CHECK_EQ(safetensors_find(st, "model.language_model.norm.weight")->dtype, QUANT_BF16);
    /* none and q4 keep a bf16 vision tower and bf16 norms exactly */
    CHECK_EQ(tc_convert(tc_golden("tiny-bf16"), "m.vlq", CONVERT_QUANT_NONE, err), 0);
    Model *m = NULL;
    CHECK_EQ(model_open("m.vlq", &m, err), 0);
    if (m)
        tc_check_bit_equal(m, st);
    model_close(m);
    CHECK_EQ(tc_convert(tc_golden("tiny-bf16"), "q.vlq", CONVERT_QUANT_Q4, err), 0);
    CHECK_EQ(model_open("q.vlq", &m, err), 0);
    for (int i = 0; m && i < model_tensor_count(m); i++) {
        const ModelTensor *t = model_tensor_at(m, i);
        const SafeTensor *s = safetensors_find(st, t->name);
        if (t->type == QUANT_Q4)
            CHECK(strstr(t->name, "language_model") && t->group == 32);
        else if (t->type != QUANT_BF16 || memcmp(t->data, s->data, s->nbytes))
            test_fail(__FILE__, __LINE__, "%s not kept as bf16", t->name);
    }
    model_close(m);
    safetensors_close(st);
}

/* Dequantise element (r, j) from the raw bytes by quant.h's formulas, independently of
 * convert_dequantize_row. */
static float tc_deq(const ModelTensor *t, int64_t r, int64_t j)
{
    int64_t rows = t->shape[0], cols = t->shape[1];
    const unsigned char *p = t->data;
    uint16_t sh;
    memcpy(&sh, p + quant_scale_offset(t->type, rows, cols) + (r * (cols / t->group) + j / t->group) * 2, 2);
    float s = half_f16_to_f32(sh);
    if (t->type == QUANT_Q8)
        return s * (float)((const int8_t *)p)[r * cols + j];
    int64_t g0 = j / t->group * t->group, k = j - g0, half = t->group / 2;
    unsigned char b = p[(r * cols + g0) / 2 + (k < half ? k : k - half)];
    return s * (float)((k < half ? b & 15 : b >> 4) - 8);
}

/* Quantised tensors within the quantiser's bound of the source; dequantisation by
 * convert_dequantize_row equal to quant.h's formulas. */
static void tc_check_quant(QuantType want, ConvertQuant q)
{
    char err[VLQ_ERRLEN];
    CHECK_EQ(tc_convert(tc_golden("tiny"), "q.vlq", q, err), 0);
    Model *m = NULL;
    SafeSet *st = NULL;
    CHECK_EQ(model_open("q.vlq", &m, err), 0);
    CHECK_EQ(safetensors_open_dir(tc_golden("tiny"), &st, err), 0);
    int nq = 0;
    for (int i = 0; m && st && i < model_tensor_count(m); i++) {
        const ModelTensor *t = model_tensor_at(m, i);
        const SafeTensor *s = safetensors_find(st, t->name);
        if (t->type != want) {
            /* f32 source: vectors stay f32, matrices become bf16 */
            CHECK(!strstr(t->name, "proj.weight") || strstr(t->name, "visual"));
            CHECK_EQ(t->type, t->ndim == 1 ? QUANT_F32 : QUANT_BF16);
            continue;
        }
        nq++;
        int64_t cols = t->shape[1];
        float *row = xmalloc((size_t)cols * sizeof *row);
        const float *src = s->data;
        double num = 0, den = 0;
        for (int64_t r = 0; r < t->shape[0]; r++) {
            convert_dequantize_row(t, r, row);
            for (int64_t g = 0; g < cols; g += t->group) {
                float amax = 0;
                for (int j = 0; j < t->group; j++)
                    amax = fmaxf(amax, fabsf(src[r * cols + g + j]));
                for (int j = 0; j < t->group; j++) {
                    float w = src[r * cols + g + j], d = row[g + j];
                    /* Q4: the scale is in [amax/8, amax/7] (f16-rounded): half a step is at
                     * most amax/14, and an element on the side that reaches only 7 steps
                     * clamps by at most amax - 7 amax/8 = amax/8. Q8: half of amax/127. */
                    float bound = (want == QUANT_Q4 ? amax / 8 : amax / 254) * 1.002f + 1e-7f;
                    if (fabsf(w - d) > bound || d != tc_deq(t, r, g + j)) {
                        test_fail(__FILE__, __LINE__, "%s[%lld,%lld]: %g -> %g (bound %g)",
                                  t->name, (long long)r, (long long)(g + j), w, d, bound);
                        g = cols;
                        r = t->shape[0];
                        break;
                    }
                    num += (double)(w - d) * (w - d);
                    den += (double)w * w;
                }
            }
        }
        free(row);
        CHECK(sqrt(num / den) < (want == QUANT_Q4 ? 0.1 : 0.006));
    }
    CHECK_EQ(nq, 1 + 4 * 7); /* embed_tokens + 7 Linear weights per layer */
    safetensors_close(st);
    model_close(m);
}

static void test_q4(void) { tc_check_quant(QUANT_Q4, CONVERT_QUANT_Q4); }
static void test_q8(void) { tc_check_quant(QUANT_Q8, CONVERT_QUANT_Q8); }

static void test_quantizer_layout(void)
{
    /* one row of two groups: the nibble order of quant.h (j low, j + 16 high) */
    float w[64];
    for (int j = 0; j < 64; j++)
        w[j] = (float)(j % 16) - 8.0f + (j >= 32 ? 0.25f : 0.0f);
    w[5] = -8.0f; /* group 0: amax 8 at a negative value: scale 1 exactly */
    size_t nb = quant_nbytes(QUANT_Q4, 1, 64, 32);
    unsigned char *q = xcalloc(1, nb);
    convert_quantize(QUANT_Q4, w, 1, 64, 32, q);
    uint16_t s0;
    memcpy(&s0, q + quant_scale_offset(QUANT_Q4, 1, 64), 2);
    CHECK(half_f16_to_f32(s0) == 1.0f || half_f16_to_f32(s0) == -1.0f);
    for (int j = 0; j < 16; j++) {
        float s = half_f16_to_f32(s0);
        CHECK_EQ(s * (float)((q[j] & 15) - 8), w[j]);
        CHECK_EQ(s * (float)((q[j] >> 4) - 8), w[j + 16]);
    }
    ModelTensor t = {.name = "t", .type = QUANT_Q4, .ndim = 2, .shape = {1, 64, 1, 1},
                     .group = 32, .data = q, .nbytes = nb};
    float back[64];
    convert_dequantize_row(&t, 0, back);
    for (int j = 0; j < 32; j++)
        CHECK_EQ(back[j], w[j]);
    for (int j = 32; j < 64; j++)
        CHECK(fabsf(back[j] - w[j]) <= 8.25f / 7 / 2 + 1e-3f);
    free(q);
    /* f16/bf16 conversions: round to nearest even, subnormals, overflow */
    CHECK_EQ(half_f32_to_f16(1.0f), 0x3c00);
    CHECK_EQ(half_f32_to_f16(65504.0f), 0x7bff);
    CHECK_EQ(half_f32_to_f16(65520.0f), 0x7c00);
    CHECK_EQ(half_f32_to_f16(5.9604645e-8f), 0x0001);
    CHECK_EQ(half_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00); /* tie to even */
    CHECK(half_f16_to_f32(0x0001) == 5.9604645e-8f);
    CHECK_EQ(half_f32_to_bf16(1.0f + 1.0f / 256), 0x3f80);  /* tie to even */
    CHECK(half_bf16_to_f32(0x3f81) == 1.0078125f);
}

static void test_export(void)
{
    char err[VLQ_ERRLEN];
    CHECK_EQ(tc_convert(tc_golden("tiny"), "q.vlq", CONVERT_QUANT_Q4, err), 0);
    CHECK_EQ(convert_export("q.vlq", "out", 0, err), 0);
    Model *m = NULL;
    SafeSet *st = NULL;
    CHECK_EQ(model_open("q.vlq", &m, err), 0);
    CHECK_EQ(safetensors_open_dir("out", &st, err), 0);
    if (!m || !st) {
        model_close(m);
        safetensors_close(st);
        return;
    }
    CHECK_EQ(safetensors_count(st), model_tensor_count(m));
    for (int i = 0; i < model_tensor_count(m); i++) {
        const ModelTensor *t = model_tensor_at(m, i);
        const SafeTensor *s = safetensors_find(st, t->name);
        CHECK(s && s->dtype == QUANT_F32);
        if (!s)
            continue;
        int64_t cols = s->numel / t->shape[0];
        float *row = xmalloc((size_t)cols * sizeof *row);
        for (int64_t r = 0; r < t->shape[0]; r++) {
            convert_dequantize_row(t, r, row);
            if (memcmp(row, (const float *)s->data + r * cols, (size_t)cols * 4)) {
                test_fail(__FILE__, __LINE__, "%s row %lld", t->name, (long long)r);
                break;
            }
            for (int64_t j = 0; t->type == QUANT_Q4 && j < cols; j++)
                if (row[j] != tc_deq(t, r, j)) {
                    test_fail(__FILE__, __LINE__, "%s: dequantisation", t->name);
                    r = t->shape[0];
                    break;
                }
        }
        free(row);
    }
    const SafeTensor *pe = safetensors_find(st, "model.visual.patch_embed.proj.weight");
    CHECK(pe && pe->ndim == 5 && pe->shape[1] == 3 && pe->shape[4] == 16);
    /* the export converts again into the same Q4 tensors? no: it is f32; but none of it
     * back gives a model whose tensors are the dequantised ones */
    CHECK_EQ(test_sh("test -s out/config.json && test -s out/tokenizer.json && "
                     "test -s out/chat_template.json && test -s out/generation_config.json"), 0);
    safetensors_close(st);
    model_close(m);
}

/* ---- bad input ---- */

/* Copy a golden checkpoint into the temp dir (the tokenizer symlink is not needed). */
static void tc_copy(const char *name, const char *to)
{
    CHECK_EQ(test_sh("mkdir -p %s && cp %s/*.json %s/*.safetensors %s/ && rm -f %s/tokenizer.json",
                     to, tc_golden(name), tc_golden(name), to, to), 0);
}

static void tc_expect(const char *dir, const char *what1, const char *what2)
{
    char err[VLQ_ERRLEN] = "";
    int rc = tc_convert(dir, "bad.vlq", CONVERT_QUANT_Q4, err);
    CHECK(rc != 0);
    if (!strstr(err, what1) || (what2 && !strstr(err, what2)))
        test_fail(__FILE__, __LINE__, "error '%s' lacks '%s' / '%s'", err, what1,
                  what2 ? what2 : "");
    CHECK_EQ(test_sh("test ! -e bad.vlq && ! ls bad.vlq.tmp* >/dev/null 2>&1"), 0);
}

static void test_missing_shard(void)
{
    tc_copy("tiny-bf16", "ck");
    CHECK_EQ(test_sh("rm ck/model-00002-of-00003.safetensors"), 0);
    tc_expect("ck", "model-00002-of-00003.safetensors", "missing");
}

static void test_truncated_shard(void)
{
    tc_copy("tiny-bf16", "ck");
    CHECK_EQ(test_sh("truncate -s 300000 ck/model-00003-of-00003.safetensors"), 0);
    tc_expect("ck", "model-00003-of-00003.safetensors: tensor", "outside the file");
    CHECK_EQ(test_sh("truncate -s 4 ck/model-00003-of-00003.safetensors"), 0);
    tc_expect("ck", "model-00003-of-00003.safetensors", "truncated");
    CHECK_EQ(test_sh("printf 'garbage!garbage!' > ck/model-00003-of-00003.safetensors"), 0);
    tc_expect("ck", "model-00003-of-00003.safetensors", "not safetensors");
}

static void test_wrong_dtype(void)
{
    tc_copy("tiny", "ck");
    /* the first F32 in the header becomes F64 (same length, so the file stays valid) */
    CHECK_EQ(test_sh("perl -0pi -e 's/\"F32\"/\"F64\"/' ck/model.safetensors"), 0);
    tc_expect("ck", "unsupported dtype F64", "model.safetensors");
}

static void test_wrong_shape(void)
{
    tc_copy("tiny", "ck");
    CHECK_EQ(test_sh("perl -0pi -e 's/\"intermediate_size\": 128/\"intermediate_size\": 256/' "
                     "ck/config.json"), 0);
    tc_expect("ck", "has shape [128, 64], the config implies [256, 64]", "mlp.gate_proj");
}

static void test_missing_tensor(void)
{
    tc_copy("tiny", "ck");
    CHECK_EQ(test_sh("perl -0pi -e 's/\"num_hidden_layers\": 4/\"num_hidden_layers\": 5/' "
                     "ck/config.json"), 0);
    tc_expect("ck", "layers.4", "missing");
}

static void test_unknown_architecture(void)
{
    tc_copy("tiny", "ck");
    CHECK_EQ(test_sh("perl -0pi -e 's/\"model_type\": \"qwen3_vl\"/\"model_type\": \"llava\"/' "
                     "ck/config.json"), 0);
    tc_expect("ck", "unknown architecture", "llava");
    /* no weights at all: the real 4B folder */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/data/qwen3-vl-4b-instruct", test_root());
    tc_expect(dir, "model.safetensors", "No such file");
}

static void test_bad_group(void)
{
    char err[VLQ_ERRLEN];
    ConvertOptions o = {.quant = CONVERT_QUANT_Q4, .group = 96, .tokenizer_path = tc_tokenizer()};
    CHECK_EQ(convert_run(tc_golden("tiny"), "g.vlq", &o, err), VLQ_EINPUT);
    CHECK(strstr(err, "not a multiple of the group size 96"));
    o.group = 64;
    CHECK_EQ(convert_run(tc_golden("tiny"), "g.vlq", &o, err), 0);
    Model *m = NULL;
    CHECK_EQ(model_open("g.vlq", &m, err), 0);
    if (m)
        CHECK_EQ(model_tensor(m, "model.language_model.embed_tokens.weight")->group, 64);
    model_close(m);
}

/* ---- real configurations ---- */

static char *tc_read(const char *rel)
{
    char p[4096], err[VLQ_ERRLEN], *d = NULL;
    size_t n;
    snprintf(p, sizeof p, "%s/%s", test_root(), rel);
    if (util_read_file(p, 0, &d, &n, err))
        test_fail(__FILE__, __LINE__, "%s", err);
    return d;
}

static void test_config_4b(void)
{
    char *cfg = tc_read("tests/data/qwen3-vl-4b-instruct/config.json");
    char *gen = tc_read("tests/data/qwen3-vl-4b-instruct/generation_config.json");
    char err[VLQ_ERRLEN];
    ModelConfig c;
    CHECK_EQ(model_config_parse(cfg, gen, &c, err), 0);
    CHECK_EQ(c.vocab_size, 151936);
    CHECK_EQ(c.hidden_size, 2560);
    CHECK_EQ(c.n_layers, 36);
    CHECK_EQ(c.n_heads, 32);
    CHECK_EQ(c.n_kv_heads, 8);
    CHECK_EQ(c.head_dim, 128);
    CHECK_EQ(c.intermediate_size, 9728);
    CHECK(c.rope_theta == 5000000.0f);
    CHECK_EQ(c.mrope_section[0], 24);
    CHECK_EQ(c.mrope_section[2], 20);
    CHECK_EQ(c.v_depth, 24);
    CHECK_EQ(c.v_hidden_size, 1024);
    CHECK_EQ(c.v_num_position_embeddings, 2304);
    CHECK_EQ(c.n_deepstack, 3);
    CHECK_EQ(c.deepstack_indexes[2], 17);
    CHECK_EQ(c.image_token_id, 151655);
    CHECK_EQ(c.n_eos, 2);
    CHECK_EQ(c.eos_token_ids[0], 151645);
    CHECK_EQ(c.eos_token_ids[1], 151643);
    CHECK_EQ(c.tie_word_embeddings, 1);
    int n;
    ModelTensorSpec *s = model_tensor_specs(&c, &n);
    /* vision: 3 + 24*12 + 6*(1+3); text: 1 + 36*11 + 1 */
    CHECK_EQ(n, 3 + 24 * 12 + 24 + 1 + 36 * 11 + 1);
    int64_t params = 0;
    for (int i = 0; i < n; i++)
        params += s[i].shape[0] * s[i].shape[1];
    /* Qwen3-VL-4B-Instruct: 4,437,815,808 parameters (the Hub's count, lm_head tied) */
    CHECK_EQ(params, 4437815808LL);
    for (int i = 0; i < n; i++) {
        if (!strcmp(s[i].name, "model.visual.patch_embed.proj.weight"))
            CHECK(s[i].shape[0] == 1024 && s[i].shape[1] == 1536);
        if (!strcmp(s[i].name, "model.language_model.layers.35.self_attn.q_proj.weight"))
            CHECK(s[i].shape[0] == 4096 && s[i].shape[1] == 2560 && s[i].role == MODEL_ROLE_LINEAR);
        if (!strcmp(s[i].name, "model.visual.deepstack_merger_list.2.linear_fc2.weight"))
            CHECK(s[i].shape[0] == 2560 && s[i].shape[1] == 4096);
        if (!strcmp(s[i].name, "model.visual.deepstack_merger_list.0.norm.weight"))
            CHECK(s[i].ndim == 1 && s[i].shape[0] == 4096);
        if (!strcmp(s[i].name, "model.visual.merger.norm.bias"))
            CHECK(s[i].ndim == 1 && s[i].shape[0] == 1024);
    }
    free(s);
    /* 8B-like: untied embeddings need an lm_head */
    char *c8 = xstrdup(cfg);
    char *tie = strstr(c8, "\"tie_word_embeddings\": true,\n  \"transformers_version\"");
    CHECK(tie != NULL);
    if (tie)
        memcpy(tie, "\"tie_word_embeddings\":false", 27); /* same length as ": true" */
    CHECK_EQ(model_config_parse(c8, NULL, &c, err), 0);
    CHECK_EQ(c.tie_word_embeddings, 0);
    s = model_tensor_specs(&c, &n);
    CHECK_STR(s[n - 1].name, "lm_head.weight");
    free(s);
    free(c8);
    /* inconsistent: out_hidden_size != hidden_size */
    char *bad = xstrdup(cfg);
    char *o = strstr(bad, "\"out_hidden_size\": 2560");
    if (o)
        memcpy(o, "\"out_hidden_size\": 2048", 23);
    CHECK_EQ(model_config_parse(bad, NULL, &c, err), VLQ_EMODEL);
    CHECK(strstr(err, "out_hidden_size"));
    free(bad);
    free(cfg);
    free(gen);
}

TEST_GROUP(convert, {"roundtrip_none", test_roundtrip_none},
           {"roundtrip_bf16_shards", test_roundtrip_bf16_shards}, {"q4", test_q4}, {"q8", test_q8},
           {"quantizer_layout", test_quantizer_layout}, {"export", test_export},
           {"missing_shard", test_missing_shard}, {"truncated_shard", test_truncated_shard},
           {"wrong_dtype", test_wrong_dtype},
           {"wrong_shape", test_wrong_shape}, {"missing_tensor", test_missing_tensor},
           {"unknown_architecture", test_unknown_architecture}, {"bad_group", test_bad_group},
           {"config_4b", test_config_4b})
