/* convert: Hugging Face Qwen3-VL safetensors -> .vlq, the Q4/Q8 quantiser, and export
 * back to safetensors (see convert.h for what is quantised; model.h and README "Models"
 * for the file format).
 *
 * convert_run checks everything before it writes a byte: the config (model_config_parse),
 * every tensor the config implies (model_tensor_specs) present in the checkpoint with
 * its exact shape, and every quantised matrix's column count divisible by the group.
 * It then writes the file in one pass to a temp file: header placeholder, tokenizer
 * blob, tensors (each at a 64-byte aligned offset, CRC32 computed as written), the
 * metadata JSON, and finally the real header; then renames. Quantisation runs over rows
 * with OpenMP, converting source rows to f32 one at a time, so memory stays at one
 * output tensor plus a row per thread. */
#define _GNU_SOURCE
#include "convert.h"

#include "err.h"
#include "half.h"
#include "safetensors.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define CONVERT_PATCH_NAME "model.visual.patch_embed.proj.weight"

/* ---- the quantiser ---- */

/* Round to nearest even for |v| < 2^22 with two additions, so the loops below
 * vectorise with plain SSE2 (rintf does not); the compiler may not fold it without
 * -ffast-math, which this project never uses. */
#define CONVERT_RINT_MAGIC 12582912.0f /* 1.5 * 2^23 */

/* q = clamp(rint(v), lo, hi) */
static inline float convert_qclamp(float v, float lo, float hi)
{
    float q = (v + CONVERT_RINT_MAGIC) - CONVERT_RINT_MAGIC;
    q = q < lo ? lo : q;
    return q > hi ? hi : q;
}

/* Squared error of the group x[g] quantised with scale d (id = 1/d) to [-8, 7]. */
static float convert_q4_sse(const float *x, int g, float d, float id)
{
    float e = 0;
#pragma omp simd reduction(+ : e)
    for (int j = 0; j < g; j++) {
        float diff = x[j] - d * convert_qclamp(x[j] * id, -8.0f, 7.0f);
        e += diff * diff;
    }
    return e;
}

static void convert_q4_group(const float *x, int g, uint8_t *qs, uint16_t *scale)
{
    float amax = 0, maxv = 0;
    for (int j = 0; j < g; j++)
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            maxv = x[j];
        }
    /* candidates around Q4_0's max/-8 (the extreme lands on -8 exactly) and quant.h's
     * amax/7; least squared error wins (on N(0,1) groups of 32: relative RMS error
     * 8.4% against 9.7% for amax/7 alone) */
    static const float cands[] = {-8.0f, -7.75f, -7.5f, -7.25f, -7.0f, 7.0f, 7.25f, 7.5f};
    float best_d = 0, best_err = INFINITY;
    for (size_t c = 0; amax > 0 && c < sizeof cands / sizeof cands[0]; c++) {
        float d = half_f16_to_f32(half_f32_to_f16(maxv / cands[c]));
        if (d == 0 || !isfinite(d) || !isfinite(1.0f / d))
            continue;
        float e = convert_q4_sse(x, g, d, 1.0f / d);
        if (e < best_err) {
            best_err = e;
            best_d = d;
        }
    }
    *scale = half_f32_to_f16(best_d);
    float id = best_d != 0 ? 1.0f / best_d : 0.0f;
    for (int j = 0; j < g / 2; j++) {
        int lo = (int)convert_qclamp(x[j] * id, -8.0f, 7.0f) + 8;
        int hi = (int)convert_qclamp(x[j + g / 2] * id, -8.0f, 7.0f) + 8;
        qs[j] = (uint8_t)(lo | hi << 4);
    }
}

static void convert_q8_group(const float *x, int g, int8_t *qs, uint16_t *scale)
{
    float amax = 0;
    for (int j = 0; j < g; j++)
        amax = fmaxf(amax, fabsf(x[j]));
    float d = half_f16_to_f32(half_f32_to_f16(amax / 127.0f));
    *scale = half_f32_to_f16(d);
    float id = d != 0 && isfinite(1.0f / d) ? 1.0f / d : 0.0f;
    for (int j = 0; j < g; j++)
        qs[j] = (int8_t)convert_qclamp(x[j] * id, -127.0f, 127.0f);
}

/* Row r of a quantised [rows, cols] matrix: x[cols] -> its bytes inside out. */
static void convert_quantize_row(QuantType t, const float *x, int64_t r, int64_t rows,
                                 int64_t cols, int group, unsigned char *out)
{
    uint16_t *scales = (uint16_t *)(out + quant_scale_offset(t, rows, cols)) + r * (cols / group);
    for (int64_t g = 0; g < cols / group; g++) {
        if (t == QUANT_Q4)
            convert_q4_group(x + g * group, group, out + (r * cols + g * group) / 2, &scales[g]);
        else
            convert_q8_group(x + g * group, group, (int8_t *)out + r * cols + g * group,
                             &scales[g]);
    }
}

void convert_quantize(QuantType t, const float *w, int64_t rows, int64_t cols, int group,
                      void *out)
{
    memset(out, 0, quant_nbytes(t, rows, cols, group));
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
        convert_quantize_row(t, w + r * cols, r, rows, cols, group, out);
}

void convert_dequantize_row(const ModelTensor *t, int64_t r, float *out)
{
    int64_t rows = t->shape[0], cols = 1;
    for (int d = 1; d < t->ndim; d++)
        cols *= t->shape[d];
    const unsigned char *p = t->data;
    switch (t->type) {
    case QUANT_F32:
        memcpy(out, p + r * cols * 4, (size_t)cols * 4);
        return;
    case QUANT_F16:
    case QUANT_BF16:
        for (int64_t j = 0; j < cols; j++) {
            uint16_t h;
            memcpy(&h, p + (r * cols + j) * 2, 2);
            out[j] = t->type == QUANT_F16 ? half_f16_to_f32(h) : half_bf16_to_f32(h);
        }
        return;
    case QUANT_Q8:
    case QUANT_Q4: {
        const int g = t->group;
        const unsigned char *sp = p + quant_scale_offset(t->type, rows, cols);
        for (int64_t k = 0; k < cols / g; k++) {
            uint16_t sh;
            memcpy(&sh, sp + (r * (cols / g) + k) * 2, 2);
            float s = half_f16_to_f32(sh);
            float *o = out + k * g;
            if (t->type == QUANT_Q8) {
                const int8_t *q = (const int8_t *)p + r * cols + k * g;
                for (int j = 0; j < g; j++)
                    o[j] = s * (float)q[j];
            } else {
                const unsigned char *q = p + (r * cols + k * g) / 2;
                for (int j = 0; j < g / 2; j++) {
                    o[j] = s * (float)((q[j] & 15) - 8);
                    o[j + g / 2] = s * (float)((q[j] >> 4) - 8);
                }
            }
        }
        return;
    }
    }
}

/* ---- conversion plan ---- */

typedef struct {
    const ModelTensorSpec *spec;
    const SafeTensor *src;
    QuantType type;    /* in the .vlq */
    int group;         /* Q4/Q8 only */
    int64_t rows, cols;
    size_t nbytes;
    uint64_t offset;
    uint32_t crc;
} ConvertItem;

static const char *convert_type_name(QuantType t)
{
    static const char *names[] = {"f32", "f16", "bf16", "q8", "q4"};
    return names[t];
}

/* The source tensor for spec, shape-checked (the patch embedding is 5-D in HF). */
static int convert_match(const SafeSet *st, const ModelConfig *cfg, const ModelTensorSpec *spec,
                         const SafeTensor **out, char *err)
{
    const SafeTensor *s = safetensors_find(st, spec->name);
    if (!s)
        return err_set(err, VLQ_EMODEL, "tensor %s missing from the checkpoint", spec->name);
    int ok;
    if (!strcmp(spec->name, CONVERT_PATCH_NAME)) {
        ok = s->ndim == 5 && s->shape[0] == cfg->v_hidden_size &&
             s->shape[1] == cfg->v_in_channels && s->shape[2] == cfg->v_temporal_patch_size &&
             s->shape[3] == cfg->v_patch_size && s->shape[4] == cfg->v_patch_size;
    } else {
        ok = s->ndim == spec->ndim;
        for (int d = 0; ok && d < spec->ndim; d++)
            ok = s->shape[d] == spec->shape[d];
    }
    if (!ok) {
        char got[128] = "", want[128] = "";
        for (int d = 0; d < s->ndim; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "",
                     (long long)s->shape[d]);
        for (int d = 0; d < spec->ndim; d++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? ", " : "",
                     (long long)spec->shape[d]);
        return err_set(err, VLQ_EMODEL, "%s: tensor %s has shape [%s], the config implies [%s]",
                       s->file, spec->name, got, want);
    }
    *out = s;
    return 0;
}

static QuantType convert_out_type(const ModelTensorSpec *spec, const SafeTensor *src,
                                  ConvertQuant q)
{
    if (q == CONVERT_QUANT_NONE)
        return src->dtype;
    if (spec->role == MODEL_ROLE_LINEAR || spec->role == MODEL_ROLE_EMBED)
        return q == CONVERT_QUANT_Q4 ? QUANT_Q4 : q == CONVERT_QUANT_Q8 ? QUANT_Q8 : QUANT_F16;
    if (src->dtype != QUANT_F32)
        return src->dtype;
    return spec->ndim == 1 ? QUANT_F32 : QUANT_BF16;
}

static int convert_plan(const SafeSet *st, const ModelConfig *cfg, const ModelTensorSpec *specs,
                        int n, const ConvertOptions *opt, ConvertItem *items, char *err)
{
    int group = opt->group ? opt->group : QUANT_DEFAULT_GROUP;
    if (group < 32 || group % 32)
        return err_set(err, VLQ_EINPUT, "group %d: must be a positive multiple of 32", group);
    for (int i = 0; i < n; i++) {
        ConvertItem *it = &items[i];
        it->spec = &specs[i];
        int rc = convert_match(st, cfg, &specs[i], &it->src, err);
        if (rc)
            return rc;
        it->type = convert_out_type(&specs[i], it->src, opt->quant);
        it->rows = specs[i].shape[0];
        it->cols = specs[i].ndim == 2 ? specs[i].shape[1] : 1;
        if (specs[i].ndim == 1) {
            it->rows = 1;
            it->cols = specs[i].shape[0];
        }
        if (it->type == QUANT_Q4 || it->type == QUANT_Q8) {
            if (it->cols % group)
                return err_set(err, VLQ_EINPUT, "%s: %lld columns are not a multiple of the "
                               "group size %d (--group)", specs[i].name, (long long)it->cols,
                               group);
            it->group = group;
        }
        it->nbytes = quant_nbytes(it->type, it->rows, it->cols, group);
    }
    return 0;
}

/* ---- writing ---- */

typedef struct {
    FILE *f;
    const char *path;
    uint64_t pos;
} ConvertOut;

static int convert_write(ConvertOut *o, const void *data, size_t n, char *err)
{
    if (n && fwrite(data, 1, n, o->f) != n)
        return err_set(err, VLQ_EIO, "%s: write: %s", o->path, strerror(errno));
    o->pos += n;
    return 0;
}

static int convert_align(ConvertOut *o, char *err)
{
    static const unsigned char zeros[QUANT_ALIGN];
    size_t pad = (size_t)((QUANT_ALIGN - o->pos % QUANT_ALIGN) % QUANT_ALIGN);
    return convert_write(o, zeros, pad, err);
}

/* The converted bytes of one tensor, in a new buffer (NULL when the source bytes are
 * written as they are: *direct is set then). */
static unsigned char *convert_tensor(const ConvertItem *it, const void **direct, char *err)
{
    *direct = NULL;
    if (it->type == it->src->dtype) {
        *direct = it->src->data;
        return NULL;
    }
    unsigned char *out = malloc(it->nbytes);
    if (!out) {
        err_set(err, VLQ_ENOMEM, "%s: %zu bytes", it->spec->name, it->nbytes);
        return NULL;
    }
    memset(out, 0, it->nbytes);
    /* the source seen as a matrix [rows, cols] of its own type */
    ModelTensor src = {.name = it->spec->name, .type = it->src->dtype, .ndim = 2,
                       .shape = {it->rows, it->cols, 1, 1}, .data = it->src->data,
                       .nbytes = it->src->nbytes};
#pragma omp parallel
    {
        float *row = xmalloc((size_t)it->cols * sizeof *row);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < it->rows; r++) {
            convert_dequantize_row(&src, r, row);
            if (it->type == QUANT_Q4 || it->type == QUANT_Q8) {
                convert_quantize_row(it->type, row, r, it->rows, it->cols, it->group, out);
            } else if (it->type == QUANT_F32) {
                memcpy(out + r * it->cols * 4, row, (size_t)it->cols * 4);
            } else {
                uint16_t *o = (uint16_t *)out + r * it->cols;
                for (int64_t j = 0; j < it->cols; j++)
                    o[j] = it->type == QUANT_F16 ? half_f32_to_f16(row[j])
                                                 : half_f32_to_bf16(row[j]);
            }
        }
        free(row);
    }
    return out;
}

/* A JSON file of the checkpoint, read with util_read_file (never blocks on a FIFO). */
static json_t *convert_load_json(const char *path, int required, char *err, int *rc)
{
    *rc = 0;
    if (!required && access(path, F_OK))
        return NULL;
    char *text = NULL;
    size_t len = 0;
    if ((*rc = util_read_file(path, 64 << 20, &text, &len, err)))
        return NULL;
    json_error_t je;
    json_t *j = json_loadb(text, len, 0, &je);
    free(text);
    if (!j && len == 0)
        *rc = err_set(err, VLQ_EMODEL, "%s: the file is empty (a JSON object was expected)", path);
    else if (!j)
        *rc = err_set(err, VLQ_EMODEL, "%s: %s", path, je.text);
    return j;
}

/* The chat template: chat_template.jinja, chat_template.json, or tokenizer_config.json's. */
static char *convert_chat_template(const char *dir)
{
    char *p = xasprintf("%s/chat_template.jinja", dir), *text = NULL;
    size_t len;
    if (util_read_file(p, 0, &text, &len, NULL) == 0) {
        free(p);
        return text;
    }
    free(p);
    const char *files[] = {"chat_template.json", "tokenizer_config.json"};
    for (int i = 0; i < 2 && !text; i++) {
        p = xasprintf("%s/%s", dir, files[i]);
        int rc;
        json_t *j = convert_load_json(p, 0, NULL, &rc);
        const char *s = json_string_value(json_object_get(j, "chat_template"));
        if (s)
            text = xstrdup(s);
        json_decref(j);
        free(p);
    }
    return text;
}

static json_t *convert_meta(const ConvertItem *items, int n, json_t *config, json_t *gen,
                            const char *tmpl, const char *quant_name, int group)
{
    json_t *tensors = json_array();
    for (int i = 0; i < n; i++) {
        const ConvertItem *it = &items[i];
        json_t *shape = json_array();
        for (int d = 0; d < it->spec->ndim; d++)
            json_array_append_new(shape, json_integer(it->spec->shape[d]));
        json_array_append_new(tensors, json_pack("{s:s,s:s,s:o,s:i,s:I,s:I,s:I}", "name",
                                                 it->spec->name, "type",
                                                 convert_type_name(it->type), "shape", shape,
                                                 "group", it->group, "offset",
                                                 (json_int_t)it->offset, "nbytes",
                                                 (json_int_t)it->nbytes, "crc32",
                                                 (json_int_t)it->crc));
    }
    json_t *m = json_pack("{s:s,s:i,s:s,s:s,s:i,s:O,s:o}", "format", "vlq-model", "version",
                          MODEL_VERSION, "converter", "vlq convert", "quant", quant_name,
                          "group", group, "config", config, "tensors", tensors);
    json_object_set(m, "generation_config", gen ? gen : json_null());
    json_object_set_new(m, "chat_template", tmpl ? json_string(tmpl) : json_null());
    return m;
}

static int convert_finish(ConvertOut *o, json_t *meta, char *err)
{
    char *text = json_dumps(meta, JSON_COMPACT);
    size_t len = strlen(text);
    uint64_t meta_off = o->pos;
    int rc = convert_write(o, text, len, err);
    uint32_t crc = (uint32_t)crc32(0L, (const Bytef *)text, (uInt)len);
    free(text);
    if (rc)
        return rc;
    unsigned char h[MODEL_HEADER_SIZE] = {0};
    uint32_t version = MODEL_VERSION, hsize = MODEL_HEADER_SIZE;
    uint64_t fsize = o->pos, msize = len;
    memcpy(h, MODEL_MAGIC, 8);
    memcpy(h + 8, &version, 4);
    memcpy(h + 12, &hsize, 4);
    memcpy(h + 16, &fsize, 8);
    memcpy(h + 24, &meta_off, 8);
    memcpy(h + 32, &msize, 8);
    memcpy(h + 40, &crc, 4);
    if (fseek(o->f, 0, SEEK_SET) || fwrite(h, 1, sizeof h, o->f) != sizeof h ||
        fflush(o->f) || fsync(fileno(o->f)))
        return err_set(err, VLQ_EIO, "%s: write: %s", o->path, strerror(errno));
    return 0;
}

static const char *convert_quant_name(ConvertQuant q)
{
    static const char *names[] = {"q4", "q8", "f16", "none"};
    return names[q];
}

/* Drop a source tensor's pages from this process once written: the checkpoint is read
 * once, and without this the whole of it (8.9 GB for the 4B) stays mapped in our RSS. */
static void convert_drop_pages(const SafeTensor *s)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)s->data + page - 1) / page * page;
    uintptr_t b = ((uintptr_t)s->data + s->nbytes) / page * page;
    if (b > a)
        madvise((void *)a, b - a, MADV_DONTNEED);
}

/* Write the header placeholder, the tokenizer and every tensor into o, filling each
 * item's offset and CRC; *tok_off is where the tokenizer starts. */
static int convert_body(ConvertOut *o, ConvertItem *items, int n, const char *tok, size_t tok_len,
                        uint64_t *tok_off, const ConvertOptions *opt, char *err)
{
    unsigned char zero[MODEL_HEADER_SIZE] = {0};
    int rc = convert_write(o, zero, sizeof zero, err);
    if (rc)
        return rc;
    *tok_off = o->pos;
    if ((rc = convert_write(o, tok, tok_len, err)))
        return rc;
    uint64_t total = 0, done = 0;
    for (int i = 0; i < n; i++)
        total += items[i].src->nbytes;
    for (int i = 0; i < n; i++) {
        ConvertItem *it = &items[i];
        if ((rc = convert_align(o, err)))
            return rc;
        const void *direct;
        unsigned char *buf = convert_tensor(it, &direct, err);
        if (!buf && !direct)
            return VLQ_ENOMEM;
        const unsigned char *bytes = buf ? buf : direct;
        it->offset = o->pos;
        uLong crc = crc32(0L, Z_NULL, 0);
        for (size_t off = 0; off < it->nbytes; off += 1u << 30) {
            size_t c = it->nbytes - off < (1u << 30) ? it->nbytes - off : (1u << 30);
            crc = crc32(crc, bytes + off, (uInt)c);
        }
        it->crc = (uint32_t)crc;
        rc = convert_write(o, bytes, it->nbytes, err);
        free(buf);
        if (rc)
            return rc;
        convert_drop_pages(it->src);
        done += it->src->nbytes;
        if (opt->progress)
            opt->progress(opt->progress_ctx, i + 1, n, done, total);
    }
    return 0;
}

/* Refuse an output that is one of the files convert reads: its config, tokenizer, chat
 * template, index or a shard (a rename over a shard would destroy the checkpoint, even
 * with --force). */
static int convert_check_output(const char *hf_dir, const char *p_tok, const SafeSet *st,
                                const char *out_path, char *err)
{
    static const char *const names[] = {"config.json", "generation_config.json",
                                        "tokenizer.json", "chat_template.jinja",
                                        "chat_template.json", "tokenizer_config.json",
                                        "model.safetensors.index.json", "model.safetensors"};
    int rc = 0;
    if (util_same_file(out_path, p_tok))
        return err_set(err, VLQ_EINPUT, "%s: is the tokenizer being read (%s): choose another "
                       "output", out_path, p_tok);
    for (size_t i = 0; !rc && i < sizeof names / sizeof *names; i++) {
        char *p = xasprintf("%s/%s", hf_dir, names[i]);
        if (util_same_file(out_path, p))
            rc = err_set(err, VLQ_EINPUT, "%s: is the input %s: choose another output",
                         out_path, p);
        free(p);
    }
    for (int i = 0; !rc && i < safetensors_count(st); i++)
        if (util_same_file(out_path, safetensors_at(st, i)->file))
            rc = err_set(err, VLQ_EINPUT, "%s: is the input %s: choose another output",
                         out_path, safetensors_at(st, i)->file);
    return rc;
}

int convert_run(const char *hf_dir, const char *out_path, const ConvertOptions *opt, char *err)
{
    int rc = 0, n = 0;
    char *p_cfg = xasprintf("%s/config.json", hf_dir);
    char *p_gen = xasprintf("%s/generation_config.json", hf_dir);
    char *p_tok = opt->tokenizer_path ? xstrdup(opt->tokenizer_path)
                                      : xasprintf("%s/tokenizer.json", hf_dir);
    json_t *config = NULL, *gen = NULL, *meta = NULL;
    char *cfg_text = NULL, *gen_text = NULL, *tok = NULL, *tmpl = NULL;
    SafeSet *st = NULL;
    ModelTensorSpec *specs = NULL;
    ConvertItem *items = NULL;
    UtilAtomic out = {0};
    ConvertOut o = {.path = out_path};
    size_t len, tok_len = 0;
    uint64_t tok_off = 0;
    ModelConfig cfg;
    const int group = opt->group ? opt->group : QUANT_DEFAULT_GROUP;
    if ((rc = util_read_file(p_cfg, 1 << 20, &cfg_text, &len, err)))
        goto out;
    if (!(config = convert_load_json(p_cfg, 1, err, &rc)))
        goto out;
    gen = convert_load_json(p_gen, 0, err, &rc);
    if (rc)
        goto out;
    gen_text = gen ? json_dumps(gen, JSON_COMPACT) : NULL;
    if ((rc = model_config_parse(cfg_text, gen_text, &cfg, err))) {
        err_prefix(err, "%s", hf_dir);
        goto out;
    }
    if ((rc = util_read_file(p_tok, 0, &tok, &tok_len, err))) {
        err_prefix(err, "tokenizer (pass --tokenizer FILE)");
        goto out;
    }
    if ((rc = safetensors_open_dir(hf_dir, &st, err)))
        goto out;
    if ((rc = convert_check_output(hf_dir, p_tok, st, out_path, err)))
        goto out;
    /* opened now, so an existing output (without --force) is refused before the work */
    if ((rc = util_atomic_open(out_path, opt->force ? 0 : UTIL_ATOMIC_NO_CLOBBER, &out, err)))
        goto out;
    o.f = out.f;
    specs = model_tensor_specs(&cfg, &n);
    items = xcalloc((size_t)n, sizeof *items);
    if ((rc = convert_plan(st, &cfg, specs, n, opt, items, err)))
        goto out;
    tmpl = convert_chat_template(hf_dir);
    if ((rc = convert_body(&o, items, n, tok, tok_len, &tok_off, opt, err)))
        goto out;
    meta = convert_meta(items, n, config, gen, tmpl, convert_quant_name(opt->quant), group);
    json_object_set_new(meta, "blobs",
                        json_pack("{s:{s:I,s:I,s:I}}", "tokenizer.json", "offset",
                                  (json_int_t)tok_off, "size", (json_int_t)tok_len, "crc32",
                                  (json_int_t)crc32(0L, (const Bytef *)tok, (uInt)tok_len)));
    if ((rc = convert_finish(&o, meta, err)))
        goto out;
    rc = util_atomic_commit(&out, err);
out:
    util_atomic_abort(&out); /* a no-op after the commit */
    json_decref(meta);
    json_decref(config);
    json_decref(gen);
    safetensors_close(st);
    free(items);
    free(specs);
    free(tmpl);
    free(tok);
    free(gen_text);
    free(cfg_text);
    free(p_tok);
    free(p_gen);
    free(p_cfg);
    return rc;
}

/* ---- export ---- */

typedef struct {
    const Model *m;
} ConvertExport;

static int convert_export_fill(void *ctx, int i, void *dst, char *err)
{
    const ConvertExport *x = ctx;
    const ModelTensor *t = model_tensor_at(x->m, i);
    int64_t cols = 1;
    for (int d = 1; d < t->ndim; d++)
        cols *= t->shape[d];
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < t->shape[0]; r++)
        convert_dequantize_row(t, r, (float *)dst + r * cols);
    return 0;
}

static int convert_write_text(const char *dir, const char *name, const char *text, size_t len,
                              int flags, char *err)
{
    char *p = xasprintf("%s/%s", dir, name);
    int rc = util_write_file_ex(p, flags, text, len, err);
    free(p);
    return rc;
}

/* The files export writes into its folder. */
static const char *const convert_export_names[] = {"model.safetensors", "config.json",
                                                   "generation_config.json", "tokenizer.json",
                                                   "chat_template.json"};

/* Before anything is written: out_dir is a folder (made if missing), none of the files
 * export writes is the model being read (refused even with --force), and without force
 * none of them exists, so a refused export leaves the folder as it was. */
static int convert_export_check(const char *model_path, const char *out_dir, int force,
                                char *err)
{
    struct stat sb;
    if (mkdir(out_dir, 0755) && errno != EEXIST)
        return err_set(err, errno == EACCES || errno == EROFS || errno == ENOENT ? VLQ_EINPUT
                                                                                 : VLQ_EIO,
                       "%s: %s", out_dir, strerror(errno));
    if (stat(out_dir, &sb) || !S_ISDIR(sb.st_mode))
        return err_set(err, VLQ_EINPUT, "%s: not a directory", out_dir);
    int rc = 0;
    size_t n = sizeof convert_export_names / sizeof *convert_export_names;
    for (size_t i = 0; !rc && i < n; i++) {
        char *p = xasprintf("%s/%s", out_dir, convert_export_names[i]);
        struct stat st;
        if (util_same_file(p, model_path))
            rc = err_set(err, VLQ_EINPUT, "%s: is the model being exported: choose another "
                         "folder", p);
        else if (!force && lstat(p, &st) == 0)
            rc = err_set(err, VLQ_EINPUT, "%s: exists (use --force to replace it)", p);
        free(p);
    }
    return rc;
}

int convert_export(const char *model_path, const char *out_dir, int force, char *err)
{
    Model *m = NULL;
    int rc = convert_export_check(model_path, out_dir, force, err);
    if (!rc)
        rc = model_open(model_path, &m, err);
    if (rc)
        return rc;
    const int wflags = force ? 0 : UTIL_ATOMIC_NO_CLOBBER;
    const ModelConfig *c = model_config(m);
    int n = model_tensor_count(m);
    SafeWriteTensor *w = xcalloc((size_t)(n ? n : 1), sizeof *w);
    for (int i = 0; i < n; i++) {
        const ModelTensor *t = model_tensor_at(m, i);
        w[i] = (SafeWriteTensor){.name = t->name, .dtype = QUANT_F32, .ndim = t->ndim};
        for (int d = 0; d < t->ndim; d++)
            w[i].shape[d] = t->shape[d];
        if (!strcmp(t->name, CONVERT_PATCH_NAME)) {
            /* back to the Conv3d weight HF expects */
            const int64_t s5[5] = {c->v_hidden_size, c->v_in_channels, c->v_temporal_patch_size,
                                   c->v_patch_size, c->v_patch_size};
            w[i].ndim = 5;
            memcpy(w[i].shape, s5, sizeof s5);
        }
    }
    ConvertExport x = {.m = m};
    char *p = xasprintf("%s/model.safetensors", out_dir);
    rc = safetensors_write_ex(p, wflags, w, n, convert_export_fill, &x, err);
    free(p);
    free(w);
    /* config.json says f32 now: the weights are */
    json_t *cfg = json_loads(model_config_json(m), 0, NULL);
    json_object_set_new(cfg, "dtype", json_string("float32"));
    json_object_set_new(json_object_get(cfg, "text_config"), "dtype", json_string("float32"));
    char *cfg_text = json_dumps(cfg, JSON_INDENT(2));
    json_decref(cfg);
    if (!rc)
        rc = convert_write_text(out_dir, "config.json", cfg_text, strlen(cfg_text), wflags, err);
    free(cfg_text);
    const char *gen = model_generation_json(m);
    if (!rc && gen)
        rc = convert_write_text(out_dir, "generation_config.json", gen, strlen(gen), wflags,
                                err);
    size_t tok_len;
    const char *tok = model_tokenizer_json(m, &tok_len);
    if (!rc && tok)
        rc = convert_write_text(out_dir, "tokenizer.json", tok, tok_len, wflags, err);
    if (!rc && model_chat_template(m)) {
        json_t *j = json_pack("{s:s}", "chat_template", model_chat_template(m));
        char *text = json_dumps(j, JSON_INDENT(2));
        rc = convert_write_text(out_dir, "chat_template.json", text, strlen(text), wflags, err);
        free(text);
        json_decref(j);
    }
    model_close(m);
    return rc;
}
