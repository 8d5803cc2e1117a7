/* make-tiny: write a tiny random Qwen3-VL checkpoint that speaks the real Qwen3
 * vocabulary (151936 ids, the real special-token ids), for end-to-end runs of `vlq run`
 * and the job kinds. Not a golden reference (tests/golden/gen.py is): the values are
 * seeded noise at sane scales; the names and shapes are exactly what `vlq convert`
 * expects, from model_tensor_specs.
 *
 * usage: make-tiny OUT_DIR [SEED [CONFIG_JSON]]
 * Needs $VLQ_ROOT (the repository) for the real config, chat template and tokenizer.
 * With CONFIG_JSON, that config.json's shapes instead of the tiny ones (a model of any
 * size for measurements, e.g. tests/bench/residency.sh's real vision tower). */
#include "err.h"
#include "half.h"
#include "model.h"
#include "safetensors.h"
#include "util.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    const ModelTensorSpec *specs;
    uint64_t seed;
} Fill;

static double tiny_normal(uint64_t *s)
{
    double u[2];
    for (int i = 0; i < 2; i++) {
        *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
        u[i] = ((double)(*s >> 11) + 0.5) / 9007199254740992.0;
    }
    return sqrt(-2 * log(u[0])) * cos(6.283185307179586 * u[1]);
}

static int tiny_fill(void *ctx, int i, void *dst, char *err)
{
    const Fill *f = ctx;
    const ModelTensorSpec *sp = &f->specs[i];
    int64_t n = 1;
    for (int d = 0; d < sp->ndim; d++)
        n *= sp->shape[d];
    uint64_t s = f->seed * 0x9e3779b97f4a7c15ULL + (uint64_t)i * 0x632be59bd9b4e5ULL + 1;
    size_t len = strlen(sp->name);
    int is_bias = len > 5 && !strcmp(sp->name + len - 5, ".bias");
    int is_norm = sp->ndim == 1 && !is_bias; /* RMSNorm / LayerNorm weights */
    uint16_t *out = dst;
    for (int64_t k = 0; k < n; k++) {
        double v = tiny_normal(&s);
        double x = is_norm ? 1.0 + 0.1 * v : is_bias ? 0.02 * v : 0.08 * v;
        out[k] = half_f32_to_bf16((float)x);
    }
    return 0;
}

/* The real 4B config with tiny widths and depths (vocabulary and token ids unchanged). */
static char *tiny_config(const char *root, char *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/data/qwen3-vl-4b-instruct/config.json", root);
    json_error_t je;
    json_t *c = json_load_file(path, 0, &je);
    if (!c) {
        err_set(err, VLQ_EINPUT, "%s: %s", path, je.text);
        return NULL;
    }
    json_t *t = json_object_get(c, "text_config"), *v = json_object_get(c, "vision_config");
    json_object_set_new(t, "hidden_size", json_integer(64));
    json_object_set_new(t, "intermediate_size", json_integer(128));
    json_object_set_new(t, "num_hidden_layers", json_integer(2));
    json_object_set_new(t, "num_attention_heads", json_integer(4));
    json_object_set_new(t, "num_key_value_heads", json_integer(2));
    json_object_set_new(t, "head_dim", json_integer(16));
    json_object_set_new(json_object_get(t, "rope_scaling"), "mrope_section",
                        json_pack("[i,i,i]", 4, 2, 2));
    json_object_set_new(v, "depth", json_integer(2));
    json_object_set_new(v, "hidden_size", json_integer(64));
    json_object_set_new(v, "num_heads", json_integer(4));
    json_object_set_new(v, "intermediate_size", json_integer(128));
    json_object_set_new(v, "out_hidden_size", json_integer(64));
    json_object_set_new(v, "num_position_embeddings", json_integer(64));
    json_object_set_new(v, "deepstack_visual_indexes", json_pack("[i]", 0));
    char *s = json_dumps(c, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(c);
    return s;
}

static int tiny_copy(const char *root, const char *rel, const char *dir, const char *name,
                     char *err)
{
    char src[4096], dst[4096], *data;
    size_t len;
    snprintf(src, sizeof src, "%s/%s", root, rel);
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    int rc = util_read_file(src, 0, &data, &len, err);
    if (rc == 0)
        rc = util_write_file(dst, data, len, err);
    free(data);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: make-tiny OUT_DIR [SEED [CONFIG_JSON]]\n");
        return 2;
    }
    const char *dir = argv[1], *root = getenv("VLQ_ROOT");
    uint64_t seed = argc >= 3 ? strtoull(argv[2], NULL, 10) : 1;
    if (!root)
        root = ".";
    char err[VLQ_ERRLEN], path[4096];
    mkdir(dir, 0755);
    char *config = NULL, *gen = NULL;
    size_t gen_len;
    if (argc == 4) {
        if (util_read_file(argv[3], 0, &config, &gen_len, err))
            config = NULL;
    } else {
        config = tiny_config(root, err);
    }
    ModelConfig mc;
    int rc = config ? 0 : VLQ_EINPUT;
    snprintf(path, sizeof path, "%s/tests/data/qwen3-vl-4b-instruct/generation_config.json", root);
    if (rc == 0)
        rc = util_read_file(path, 0, &gen, &gen_len, err);
    if (rc == 0)
        rc = model_config_parse(config, gen, &mc, err);
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (rc == 0)
        rc = util_write_file(path, config, strlen(config), err);
    static const char *const files[][2] = {
        {"tests/data/qwen3-vl-4b-instruct/generation_config.json", "generation_config.json"},
        {"tests/data/qwen3-vl-4b-instruct/chat_template.json", "chat_template.json"},
        {"tests/data/qwen3-vl-4b-instruct/preprocessor_config.json", "preprocessor_config.json"},
        {"tests/data/qwen3-vl-4b-instruct/video_preprocessor_config.json",
         "video_preprocessor_config.json"},
        {"tests/data/qwen3-tokenizer/tokenizer.json", "tokenizer.json"},
    };
    for (size_t i = 0; rc == 0 && i < sizeof files / sizeof files[0]; i++)
        rc = tiny_copy(root, files[i][0], dir, files[i][1], err);
    if (rc == 0) {
        int n;
        ModelTensorSpec *specs = model_tensor_specs(&mc, &n);
        SafeWriteTensor *t = xcalloc((size_t)n, sizeof *t);
        for (int i = 0; i < n; i++) {
            t[i] = (SafeWriteTensor){.name = specs[i].name, .dtype = QUANT_BF16,
                                     .ndim = specs[i].ndim};
            memcpy(t[i].shape, specs[i].shape, sizeof specs[i].shape);
            if (strstr(specs[i].name, "patch_embed.proj.weight")) { /* Conv3d, as HF stores it */
                int p = mc.v_patch_size;
                int64_t shape[5] = {mc.v_hidden_size, mc.v_in_channels, mc.v_temporal_patch_size,
                                    p, p};
                t[i].ndim = 5;
                memcpy(t[i].shape, shape, sizeof shape);
            }
        }
        Fill f = {.specs = specs, .seed = seed};
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        rc = safetensors_write(path, t, n, tiny_fill, &f, err);
        free(t);
        free(specs);
    }
    free(config);
    free(gen);
    if (rc) {
        fprintf(stderr, "make-tiny: %s\n", err);
        return 1;
    }
    return 0;
}
