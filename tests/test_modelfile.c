/* Tests of model_open on damaged and foreign files: each a clear VLQ_EMODEL error that
 * names the file and the reason, never a crash (run under SAN=1 too). The file is made
 * by convert_run from the tiny golden checkpoint. */
#include "convert.h"
#include "err.h"
#include "model.h"
#include "test.h"
#include "util.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/prctl.h>

static char *tm_data;
static size_t tm_len;

/* Convert the tiny checkpoint (q4) to m.vlq and read it into tm_data. */
static int tm_make(void)
{
    char dir[4096], tok[4096], err[VLQ_ERRLEN];
    snprintf(dir, sizeof dir, "%s/tests/golden/tiny", test_root());
    snprintf(tok, sizeof tok, "%s/tests/data/qwen3-tokenizer/tokenizer.json", test_root());
    ConvertOptions o = {.quant = CONVERT_QUANT_Q4, .tokenizer_path = tok};
    if (convert_run(dir, "m.vlq", &o, err) || util_read_file("m.vlq", 0, &tm_data, &tm_len, err)) {
        test_fail(__FILE__, __LINE__, "%s", err);
        return -1;
    }
    return 0;
}

/* Write data (len bytes) to path, open it, expect VLQ_EMODEL with both phrases. */
static void tm_expect(const char *path, const void *data, size_t len, int flags, const char *why)
{
    char err[VLQ_ERRLEN] = "";
    CHECK_EQ(util_write_file(path, data, len, err), 0);
    Model *m = NULL;
    int rc = model_open_ex(path, flags, &m, err);
    CHECK_EQ(rc, VLQ_EMODEL);
    CHECK(m == NULL);
    if (strncmp(err, path, strlen(path)) || !strstr(err, why))
        test_fail(__FILE__, __LINE__, "%s: error '%s' lacks the path or '%s'", path, err, why);
    model_close(m);
}

static void test_open_ok(void)
{
    if (tm_make())
        return;
    char err[VLQ_ERRLEN];
    Model *m = NULL;
    CHECK_EQ(model_open_ex("m.vlq", MODEL_OPEN_NO_POPULATE, &m, err), 0);
    if (m) {
        CHECK(!strncmp(model_residency(m), "mmap, not populated", 19));
        const ModelTensor *t = model_tensor(m, "model.language_model.layers.3.mlp.down_proj.weight");
        CHECK(t && t->type == QUANT_Q4 && t->group == 32 && t->shape[0] == 64 &&
              t->shape[1] == 128 && t->nbytes == quant_nbytes(QUANT_Q4, 64, 128, 32));
        CHECK(model_tensor(m, "no.such.tensor") == NULL);
        CHECK(strstr(model_config_json(m), "\"qwen3_vl\"") != NULL);
        CHECK(strstr(model_generation_json(m), "2034") != NULL);
    }
    model_close(m);
    model_close(NULL);
    free(tm_data);
}

static void test_corrupt(void)
{
    if (tm_make())
        return;
    /* a byte in the last tensor's data (the text model's final norm) */
    Model *m = NULL;
    char err[VLQ_ERRLEN];
    CHECK_EQ(model_open("m.vlq", &m, err), 0);
    const ModelTensor *t = m ? model_tensor(m, "model.language_model.norm.weight") : NULL;
    /* the tokenizer blob starts right after the 64-byte header: file offsets follow */
    size_t at = t ? MODEL_HEADER_SIZE + 3 +
                        (size_t)((const char *)t->data - model_tokenizer_json(m, NULL)) : 0;
    model_close(m);
    tm_data[at] ^= 0x10;
    tm_expect("flip.vlq", tm_data, tm_len, 0, "model.language_model.norm.weight: checksum mismatch");
    /* without verification the same file opens (the flag is for fast loads) */
    CHECK_EQ(util_write_file("flip.vlq", tm_data, tm_len, err), 0);
    CHECK_EQ(model_open_ex("flip.vlq", MODEL_OPEN_NO_VERIFY, &m, err), 0);
    model_close(m);
    tm_data[at] ^= 0x10;
    /* a byte in the metadata (at the end of the file) */
    tm_data[tm_len - 10] ^= 0x01;
    tm_expect("meta.vlq", tm_data, tm_len, MODEL_OPEN_NO_VERIFY, "metadata checksum mismatch");
    tm_data[tm_len - 10] ^= 0x01;
    /* a byte of the tokenizer */
    tm_data[100] ^= 0x01;
    tm_expect("tok.vlq", tm_data, tm_len, 0, "tokenizer.json: checksum mismatch");
    free(tm_data);
}

static void test_truncated(void)
{
    if (tm_make())
        return;
    tm_expect("t1.vlq", tm_data, tm_len - 1, 0, "truncated");
    tm_expect("t2.vlq", tm_data, tm_len / 2, 0, "truncated");
    tm_expect("t3.vlq", tm_data, 40, 0, "truncated");
    tm_expect("t4.vlq", tm_data, 0, 0, "truncated");
    free(tm_data);
}

static void test_foreign(void)
{
    char text[200];
    memset(text, 'x', sizeof text);
    tm_expect("text.vlq", text, sizeof text, 0, "not a vlq model file");
    char path[4096], *st;
    size_t n;
    char err[VLQ_ERRLEN];
    snprintf(path, sizeof path, "%s/tests/golden/tiny-bf16/model-00001-of-00003.safetensors",
             test_root());
    CHECK_EQ(util_read_file(path, 0, &st, &n, err), 0);
    tm_expect("st.vlq", st, n, 0, "not a vlq model file");
    free(st);
    Model *m = NULL;
    CHECK_EQ(model_open("absent.vlq", &m, err), VLQ_EMODEL);
    CHECK(strstr(err, "absent.vlq: No such file"));
    CHECK_EQ(model_open(".", &m, err), VLQ_EMODEL);
    CHECK(strstr(err, "not a regular file"));
}

static void test_version(void)
{
    if (tm_make())
        return;
    tm_data[8] = 7;
    tm_expect("v.vlq", tm_data, tm_len, 0, "format version 7, this vlq reads version 1");
    tm_data[8] = 1;
    tm_data[12] = 32;
    tm_expect("h.vlq", tm_data, tm_len, 0, "header size 32");
    tm_data[12] = 64;
    /* trailing garbage: the size in the header no longer matches */
    char *more = xmalloc(tm_len + 5);
    memcpy(more, tm_data, tm_len);
    memset(more + tm_len, 0, 5);
    tm_expect("tail.vlq", more, tm_len + 5, 0, "trailing bytes");
    free(more);
    free(tm_data);
}

/* Rss in bytes of the mapping that holds address p (from /proc/self/smaps); -1. */
static int64_t tm_rss_of(const void *p)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return -1;
    char line[512];
    int in = 0;
    int64_t rss = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char c;
        if (sscanf(line, "%lx-%lx %c", &lo, &hi, &c) == 3 && strchr(line, '-') < strchr(line, ' ')) {
            in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
            continue;
        }
        long long kb;
        if (in && sscanf(line, "Rss: %lld kB", &kb) == 1) {
            rss = kb * 1024;
            break;
        }
    }
    fclose(f);
    return rss;
}

/* model_open populates the text tensors only; model_prepare_vision the vision tower,
 * which then shows in the mapping's Rss; model_residency says which. */
static void test_residency(void)
{
    if (tm_make())
        return;
    /* page-sized mappings only: a huge page could hold text and vision bytes together */
    CHECK_EQ(prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0), 0);
    char err[VLQ_ERRLEN];
    Model *m = NULL;
    CHECK_EQ(model_open("m.vlq", &m, err), 0);
    if (!m)
        return;
    size_t vb = 0;
    for (int i = 0; i < model_tensor_count(m); i++)
        if (!strncmp(model_tensor_at(m, i)->name, "model.visual.", 13))
            vb += model_tensor_at(m, i)->nbytes;
    CHECK(vb > 256 * 1024); /* big enough to see in Rss */
    const char *r = model_residency(m);
    CHECK(!strncmp(r, "mmap, text populated (", 22));
    CHECK(strstr(r, "vision lazy (") != NULL);
    CHECK(strstr(r, "hugepages: MADV_HUGEPAGE") != NULL);
    const void *v0 = model_tensor(m, "model.visual.patch_embed.proj.weight")->data;
    int64_t before = tm_rss_of(v0);
    CHECK(before > 0);
    /* the text part (and the header and metadata pages) only */
    CHECK(before <= (int64_t)(tm_len - vb) + 128 * 1024);
    CHECK_EQ(model_prepare_vision(m, err), 0);
    CHECK_EQ(model_prepare_vision(m, err), 0);
    int64_t after = tm_rss_of(v0);
    /* fault-around (64 KiB windows) may have mapped a few vision pages at each edge of
     * the text ranges already */
    if (after - before < (int64_t)vb - 128 * 1024)
        test_fail(__FILE__, __LINE__, "Rss grew by %lld bytes, the vision tower is %zu",
                  (long long)(after - before), vb);
    CHECK(strstr(model_residency(m), "vision populated (") != NULL);
    model_close(m);
    free(tm_data);
}

/* A damaged vision tensor does not stop a text-only open: model_prepare_vision (hence
 * vision_new) fails naming it, every time it is asked. */
static void test_vision_corrupt(void)
{
    if (tm_make())
        return;
    Model *m = NULL;
    char err[VLQ_ERRLEN];
    CHECK_EQ(model_open("m.vlq", &m, err), 0);
    const char *name = "model.visual.blocks.1.mlp.linear_fc1.weight";
    const ModelTensor *t = m ? model_tensor(m, name) : NULL;
    CHECK(t != NULL);
    if (!t) {
        model_close(m);
        return;
    }
    size_t at = MODEL_HEADER_SIZE + 5 + (size_t)((const char *)t->data - model_tokenizer_json(m, NULL));
    model_close(m);
    tm_data[at] ^= 0x20;
    CHECK_EQ(util_write_file("v.vlq", tm_data, tm_len, err), 0);
    CHECK_EQ(model_open("v.vlq", &m, err), 0);
    if (m) {
        CHECK_EQ(model_prepare_vision(m, err), VLQ_EMODEL);
        CHECK(strstr(err, "v.vlq: model.visual.blocks.1.mlp.linear_fc1.weight: checksum mismatch"));
        err[0] = 0;
        CHECK_EQ(model_prepare_vision(m, err), VLQ_EMODEL);
        CHECK(strstr(err, "checksum mismatch") != NULL);
        CHECK(strstr(model_residency(m), "vision failed its check") != NULL);
    }
    model_close(m);
    /* unchecked opens take the file as it is */
    CHECK_EQ(model_open_ex("v.vlq", MODEL_OPEN_NO_VERIFY, &m, err), 0);
    if (m)
        CHECK_EQ(model_prepare_vision(m, err), 0);
    model_close(m);
    free(tm_data);
}

TEST_GROUP(model, {"open_ok", test_open_ok}, {"corrupt", test_corrupt},
           {"truncated", test_truncated}, {"foreign", test_foreign}, {"version", test_version},
           {"residency", test_residency}, {"vision_corrupt", test_vision_corrupt})
