/* Tests of the golden fixture loader and of the fixtures' own consistency: the shapes
 * the engine tests rely on, and the DeepStack and scatter semantics (the layer-0 output
 * after the add minus before it is DeepStack feature 0 at the visual rows; the embedded
 * rows of the image tokens are the merger's output). */
#include "err.h"
#include "fixture.h"
#include "test.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>

#define FX_HIDDEN 64
#define FX_VOCAB 2048
#define FX_LAYERS 4
#define FX_IMAGE_ID 2044
#define FX_VIDEO_ID 2045

static Fixture *fx_open(const char *name)
{
    char path[4096], err[VLQ_ERRLEN];
    snprintf(path, sizeof path, "%s/tests/golden/%s", test_root(), name);
    Fixture *f = NULL;
    if (fixture_open(path, &f, err)) {
        test_fail(__FILE__, __LINE__, "%s", err);
        return NULL;
    }
    return f;
}

/* Visual rows of the prompt in sequence order; returns their count. */
static int fx_visual_rows(const int32_t *ids, size_t n, int *rows)
{
    int k = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] == FX_IMAGE_ID || ids[i] == FX_VIDEO_ID)
            rows[k++] = (int)i;
    return k;
}

static void fx_check_prompt(const char *file, int has_image, int has_video)
{
    Fixture *f = fx_open(file);
    if (!f)
        return;
    CHECK(strstr(fixture_meta(f), "\"transformers\": \"4.57.1\"") != NULL);
    size_t L, n;
    const int32_t *ids = fixture_i32(f, "input_ids", &L);
    CHECK(ids != NULL && L > 8);
    if (!ids)
        goto out;
    const FixtureArray *pos = fixture_find(f, "position_ids");
    CHECK(pos && pos->ndim == 2 && pos->shape[0] == 3 && pos->shape[1] == (int64_t)L);
    const FixtureArray *lg = fixture_find(f, "logits_last");
    CHECK(lg && lg->shape[0] == 4 && lg->shape[1] == FX_VOCAB);
    CHECK(fixture_i32(f, "gen_tokens", &n) && n == 20);
    for (int i = 0; i < FX_LAYERS; i++) {
        char name[64];
        snprintf(name, sizeof name, "text.layer.%d", i);
        const FixtureArray *a = fixture_find(f, name);
        CHECK(a && a->shape[0] == (int64_t)L && a->shape[1] == FX_HIDDEN);
    }
    /* generate's first step is the full forward's last position (KV cache or not) */
    const int32_t *gen = fixture_i32(f, "gen_tokens", NULL);
    const int32_t *am = fixture_i32(f, "argmax_all", NULL);
    const float *gl = fixture_f32(f, "gen_logits", NULL), *ll = fixture_f32(f, "logits_last", NULL);
    CHECK(gen && am && gl && ll);
    if (gen && am && gl && ll) {
        CHECK_EQ(gen[0], am[L - 1]);
        CHECK_TENSOR(gl, ll + 3 * FX_VOCAB, FX_VOCAB, 1e-4f, 1e-4f);
    }
    int *rows = xmalloc(L * sizeof *rows);
    int nvis = fx_visual_rows(ids, L, rows);
    CHECK_EQ(nvis > 0, has_image || has_video);
    const float *emb = fixture_f32(f, "text.embed", NULL);
    const float *out0 = fixture_f32(f, "text.layer_out.0", NULL);
    const float *post0 = fixture_f32(f, "text.layer.0", NULL);
    CHECK(emb && out0 && post0);
    if (has_image && !has_video && emb) {
        size_t nm;
        const float *merger = fixture_f32(f, "vision.image.merger", &nm);
        const float *ds0 = fixture_f32(f, "vision.image.deepstack.0", NULL);
        CHECK(merger && ds0 && nm == (size_t)nvis * FX_HIDDEN);
        for (int r = 0; merger && ds0 && r < nvis; r++)
            for (int c = 0; c < FX_HIDDEN; c++) {
                size_t at = (size_t)rows[r] * FX_HIDDEN + c;
                if (emb[at] != merger[r * FX_HIDDEN + c] ||
                    fabsf(post0[at] - out0[at] - ds0[r * FX_HIDDEN + c]) > 1e-5f) {
                    test_fail(__FILE__, __LINE__, "%s: visual row %d col %d", file, r, c);
                    r = nvis;
                    break;
                }
            }
    }
    /* text rows: no DeepStack add */
    for (size_t i = 0; post0 && out0 && i < L * FX_HIDDEN; i++) {
        int32_t id = ids[i / FX_HIDDEN];
        if (id != FX_IMAGE_ID && id != FX_VIDEO_ID && post0[i] != out0[i]) {
            test_fail(__FILE__, __LINE__, "%s: text row %zu changed by DeepStack", file,
                      i / FX_HIDDEN);
            break;
        }
    }
    free(rows);
out:
    fixture_close(f);
}

static void test_prompts(void)
{
    fx_check_prompt("fx_text.bin", 0, 0);
    fx_check_prompt("fx_image.bin", 1, 0);
    fx_check_prompt("fx_two_images.bin", 1, 0);
    fx_check_prompt("fx_video.bin", 0, 1);
    fx_check_prompt("fx_image_video.bin", 1, 1);
    fx_check_prompt("fx_image_bf16.bin", 1, 0);
}

static void test_bad_files(void)
{
    char src[4096], err[VLQ_ERRLEN];
    snprintf(src, sizeof src, "%s/tests/golden/fx_text.bin", test_root());
    char *data;
    size_t len;
    CHECK_EQ(util_read_file(src, 0, &data, &len, err), 0);
    Fixture *f = NULL;
    CHECK_EQ(util_write_file("trunc.bin", data, len - 100, err), 0);
    CHECK_EQ(fixture_open("trunc.bin", &f, err), VLQ_EINPUT);
    CHECK(f == NULL && strstr(err, "trunc.bin: ") == err && strstr(err, "truncated"));
    data[8] = 9;
    CHECK_EQ(util_write_file("ver.bin", data, len, err), 0);
    CHECK_EQ(fixture_open("ver.bin", &f, err), VLQ_EINPUT);
    CHECK(strstr(err, "version 9"));
    CHECK_EQ(util_write_file("foreign.bin", "hello world, not a fixture", 26, err), 0);
    CHECK_EQ(fixture_open("foreign.bin", &f, err), VLQ_EINPUT);
    CHECK(strstr(err, "bad magic"));
    CHECK(fixture_open("missing.bin", &f, err) != 0);
    free(data);
}

TEST_GROUP(fixture, {"prompts", test_prompts}, {"bad_files", test_bad_files})
