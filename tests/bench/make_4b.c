/* make-4b: write a random-weight checkpoint of the real Qwen3-VL-4B-Instruct shape
 * (bf16, one model.safetensors, about 8.9 GB) for `make bench-engine`.
 *
 * The C counterpart of make_4b_checkpoint.py that needs no torch: names and shapes come
 * from model_tensor_specs on the real config (so they are exactly what `vlq convert`
 * expects), weights are N(0, 0.02) with norm weights 1, seeded per 1 Mi-element chunk so
 * the fill runs on every core and gives the same bytes for any thread count. Numbers
 * for timing, not for text.
 *
 * usage: make-4b OUT_DIR     ($VLQ_ROOT: the repository, for the config and tokenizer) */
#include "err.h"
#include "half.h"
#include "model.h"
#include "safetensors.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAKE4B_CHUNK ((int64_t)1 << 20)

typedef struct {
    const ModelTensorSpec *specs;
} Make4bFill;

static double make4b_uniform(uint64_t *s)
{
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return ((double)(*s >> 11) + 0.5) / 9007199254740992.0;
}

static int make4b_fill(void *ctx, int i, void *dst, char *err)
{
    const Make4bFill *f = ctx;
    const ModelTensorSpec *sp = &f->specs[i];
    int64_t n = 1;
    for (int d = 0; d < sp->ndim; d++)
        n *= sp->shape[d];
    size_t len = strlen(sp->name);
    int is_bias = len > 5 && !strcmp(sp->name + len - 5, ".bias");
    int is_norm = sp->ndim == 1 && !is_bias; /* RMSNorm / LayerNorm weights */
    uint16_t *out = dst;
    if (is_norm) {
        for (int64_t k = 0; k < n; k++)
            out[k] = half_f32_to_bf16(1.0f);
        return 0;
    }
    int64_t nchunks = (n + MAKE4B_CHUNK - 1) / MAKE4B_CHUNK;
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t c = 0; c < nchunks; c++) {
        uint64_t s = ((uint64_t)i + 1) * 0x9e3779b97f4a7c15ULL ^ ((uint64_t)c + 1) * 0x632be59bd9b4e5ULL;
        int64_t end = (c + 1) * MAKE4B_CHUNK < n ? (c + 1) * MAKE4B_CHUNK : n;
        /* Box-Muller, both outputs used */
        for (int64_t k = c * MAKE4B_CHUNK; k < end; k += 2) {
            double r = 0.02 * sqrt(-2 * log(make4b_uniform(&s))), a = 6.283185307179586 * make4b_uniform(&s);
            out[k] = half_f32_to_bf16((float)(r * cos(a)));
            if (k + 1 < end)
                out[k + 1] = half_f32_to_bf16((float)(r * sin(a)));
        }
    }
    return 0;
}

static int make4b_copy(const char *root, const char *rel, const char *dir, const char *name,
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
    if (argc != 2) {
        fprintf(stderr, "usage: make-4b OUT_DIR\n");
        return 2;
    }
    const char *dir = argv[1], *root = getenv("VLQ_ROOT");
    if (!root)
        root = ".";
    char err[VLQ_ERRLEN], path[4096];
    mkdir(dir, 0755);
    static const char *const files[][2] = {
        {"tests/data/qwen3-vl-4b-instruct/config.json", "config.json"},
        {"tests/data/qwen3-vl-4b-instruct/generation_config.json", "generation_config.json"},
        {"tests/data/qwen3-vl-4b-instruct/chat_template.json", "chat_template.json"},
        {"tests/data/qwen3-vl-4b-instruct/preprocessor_config.json", "preprocessor_config.json"},
        {"tests/data/qwen3-vl-4b-instruct/video_preprocessor_config.json",
         "video_preprocessor_config.json"},
        {"tests/data/qwen3-tokenizer/tokenizer.json", "tokenizer.json"},
    };
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof files / sizeof files[0]; i++)
        rc = make4b_copy(root, files[i][0], dir, files[i][1], err);
    char *config = NULL, *gen = NULL;
    size_t clen, glen;
    ModelConfig mc;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (rc == 0)
        rc = util_read_file(path, 0, &config, &clen, err);
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    if (rc == 0)
        rc = util_read_file(path, 0, &gen, &glen, err);
    if (rc == 0)
        rc = model_config_parse(config, gen, &mc, err);
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
        Make4bFill f = {.specs = specs};
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        rc = safetensors_write(path, t, n, make4b_fill, &f, err);
        if (rc == 0)
            printf("make-4b: wrote %s (%d tensors)\n", path, n);
        free(t);
        free(specs);
    }
    free(config);
    free(gen);
    if (rc) {
        fprintf(stderr, "make-4b: %s\n", err);
        return 1;
    }
    return 0;
}
