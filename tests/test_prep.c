/* Tests of prep against the reference processors' golden output
 * (tests/media/gen_fixtures.py -> tests/media/prep_golden.bin). */
#include "err.h"
#include "prep.h"
#include "test.h"
#include "util.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <zlib.h>

/* The generator's pattern(): same integer arithmetic as numpy int64. */
static uint8_t *golden_pattern(int w, int h, int frame)
{
    uint8_t *p = malloc((size_t)w * h * 3);
    for (int64_t y = 0; y < h; y++) {
        for (int64_t x = 0; x < w; x++) {
            int64_t r = (x * 255) / (w - 1 > 1 ? w - 1 : 1);
            int64_t g = (y * 255) / (h - 1 > 1 ? h - 1 : 1);
            int64_t b = ((x / 8 + y / 8) % 2) * 180 + 30;
            int64_t noise = ((x * 73856093) ^ (y * 19349663) ^ ((int64_t)frame * 83492791)) & 7;
            r = (r + noise) % 256;
            int box = x >= 5 + 3 * frame && x < 25 + 3 * frame && y >= 7 && y < 30;
            if (box)
                g = 255 - g;
            uint8_t *o = p + ((size_t)y * w + x) * 3;
            o[0] = (uint8_t)r;
            o[1] = (uint8_t)g;
            o[2] = (uint8_t)b;
        }
    }
    return p;
}

typedef struct {
    uint32_t kind, w, h, t;
    uint64_t min_px, max_px;
    uint32_t gt, gh, gw, comp;
    uint64_t raw;
} GoldenCase;

/* Run one case through prep; returns the visual (caller clears). */
static int golden_run(const GoldenCase *c, PrepVisual *v, char *err)
{
    int oh, ow, ret;
    if (c->kind == 1) {
        uint8_t *img = golden_pattern(c->w, c->h, 0);
        ret = prep_image(img, c->w, c->h, c->w * 3, c->min_px, c->max_px, v, err);
        free(img);
        return ret;
    }
    ret = prep_smart_resize_video(c->t, c->h, c->w, c->min_px, c->max_px, &oh, &ow, err);
    if (ret)
        return ret;
    ret = prep_visual_init(v, c->t, ow, oh, err);
    if (ret)
        return ret;
    PrepResizer *r = prep_resizer_new(c->w, c->h, ow, oh);
    uint8_t *tmp = malloc((size_t)ow * oh * 3);
    for (uint32_t f = 0; f < c->t; f++) {
        uint8_t *img = golden_pattern(c->w, c->h, f);
        prep_resize(r, img, c->w * 3, tmp);
        prep_visual_add(v, tmp, ow * 3);
        free(img);
    }
    prep_visual_finish(v);
    free(tmp);
    prep_resizer_free(r);
    return 0;
}

static void test_golden(void)
{
    char path[1024], err[VLQ_ERRLEN];
    snprintf(path, sizeof path, "%s/tests/media/prep_golden.bin", test_root());
    char *data;
    size_t len;
    if (util_read_file(path, 0, &data, &len, err) != 0)
        test_skip("%s", err);
    CHECK(len > 20 && !memcmp(data, "VLQPRP01", 8));
    uint32_t hdr[3];
    memcpy(hdr, data + 8, sizeof hdr);
    CHECK_EQ(hdr[0], 1);
    size_t off = hdr[1];
    double worst_lsb = 0;
    for (uint32_t k = 0; k < hdr[2] && off < len; k++) {
        GoldenCase c;
        memcpy(&c.kind, data + off, 16);
        memcpy(&c.min_px, data + off + 16, 16);
        memcpy(&c.gt, data + off + 32, 16);
        memcpy(&c.raw, data + off + 48, 8);
        off += 56;
        uint8_t *ref = malloc(c.raw);
        uLongf rawlen = c.raw;
        CHECK_EQ(uncompress(ref, &rawlen, (const Bytef *)data + off, c.comp), Z_OK);
        off += c.comp;
        PrepVisual v;
        CHECK_EQ(golden_run(&c, &v, err), 0);
        CHECK_EQ(v.grid_t, c.gt);
        CHECK_EQ(v.grid_h, c.gh);
        CHECK_EQ(v.grid_w, c.gw);
        size_t n = (size_t)c.gt * c.gh * c.gw * PREP_ROW;
        if (v.pixels && n == c.raw) {
            float *reff = malloc(n * sizeof(float));
            size_t off_by_one = 0, differ = 0;
            float maxd = 0;
            for (size_t i = 0; i < n; i++) {
                reff[i] = ((float)ref[i] - 127.5f) / 127.5f;
                float d = fabsf(reff[i] - v.pixels[i]);
                maxd = d > maxd ? d : maxd;
                differ += d > 0;
                off_by_one += d > 0 && d <= 1.0f / 127.5f + 1e-6f;
            }
            printf("    case %u: %ux%ux%u -> grid [%u,%u,%u]: max |diff| %.3g (%.0f LSB), %zu of "
                   "%zu values differ (%zu by 1 LSB)\n",
                   k, c.w, c.h, c.t, c.gt, c.gh, c.gw, maxd, maxd * 127.5, differ, n, off_by_one);
            if (maxd * 127.5 > worst_lsb)
                worst_lsb = maxd * 127.5;
            /* Bit exact against torch 2.15 CPU (AVX512 uint8 path) on every case. */
            CHECK_TENSOR(v.pixels, reff, n, 0.0f, 0.0f);
            /* Already at the target size: identical. */
            if (c.kind == 1 && c.w == (uint32_t)v.width && c.h == (uint32_t)v.height)
                CHECK(differ == 0);
            free(reff);
        }
        prep_visual_clear(&v);
        free(ref);
    }
    printf("    worst: %.0f LSB\n", worst_lsb);
    free(data);
}

static void test_smart_resize(void)
{
    char err[VLQ_ERRLEN];
    int h, w;
    /* rounding branch, half to even: 48/32 = 1.5 -> 2, 80/32 = 2.5 -> 2 */
    CHECK_EQ(prep_smart_resize(48 * 8, 80 * 8, 1024, 1 << 30, &h, &w, err), 0);
    CHECK_EQ(h, 384);
    CHECK_EQ(w, 640);
    CHECK_EQ(prep_smart_resize(48, 80, 1024, 1 << 30, &h, &w, err), 0);
    CHECK_EQ(h, 64);
    CHECK_EQ(w, 64);
    /* max branch */
    CHECK_EQ(prep_smart_resize(1080, 1920, 65536, 500000, &h, &w, err), 0);
    CHECK(h * w <= 500000 && h % 32 == 0 && w % 32 == 0);
    CHECK_EQ(h, 512);
    CHECK_EQ(w, 928);
    /* min branch */
    CHECK_EQ(prep_smart_resize(10, 10, 65536, 1 << 24, &h, &w, err), 0);
    CHECK_EQ(h, 256);
    CHECK_EQ(w, 256);
    CHECK_EQ(prep_smart_resize(10, 2010, 65536, 1 << 24, &h, &w, err), VLQ_EINPUT);
    CHECK(strstr(err, "aspect ratio") != NULL);
    /* video: T*H*W budget; sides < 32 refused as the reference does */
    CHECK_EQ(prep_smart_resize_video(120, 1080, 1920, 4096, 25165824, &h, &w, err), 0);
    CHECK_EQ(h, 320);
    CHECK_EQ(w, 608);
    CHECK_EQ(prep_smart_resize_video(4, 20, 64, 4096, 25165824, &h, &w, err), VLQ_EINPUT);
    CHECK_EQ(prep_smart_resize_video(1, 64, 64, 4096, 25165824, &h, &w, err), VLQ_EINPUT);
    CHECK_EQ(prep_visual_tokens(2, 16, 28), 224);
}

/* The patch order on a hand-made 32x32 image: each patch's values land in the
 * row (block order) and columns (c, t, y, x) the reference uses. */
static void test_patch_order(void)
{
    uint8_t img[32 * 32 * 3];
    for (int y = 0; y < 32; y++)
        for (int x = 0; x < 32; x++)
            for (int c = 0; c < 3; c++)
                img[(y * 32 + x) * 3 + c] = (uint8_t)((y / 16) * 2 + (x / 16) + 4 * c);
    PrepVisual v;
    char err[VLQ_ERRLEN];
    CHECK_EQ(prep_visual_init(&v, 1, 32, 32, err), 0);
    prep_visual_add(&v, img, 32 * 3);
    prep_visual_finish(&v);
    CHECK_EQ(v.grid_t * v.grid_h * v.grid_w, 4);
    for (int row = 0; row < 4; row++)
        for (int c = 0; c < 3; c++)
            for (int t = 0; t < 2; t++) {
                float want = ((float)(row + 4 * c) - 127.5f) / 127.5f;
                CHECK(v.pixels[row * PREP_ROW + (c * 2 + t) * 256 + 17] == want);
            }
    prep_visual_clear(&v);
}

/* The SIMD resize rows against the plain-C rows, byte for byte, on odd sizes up and
 * down (the golden test covers the SIMD path against torch). */
static void test_simd_matches_ref(void)
{
    const int sizes[][4] = {{1920, 1080, 608, 320}, {333, 257, 352, 256}, {61, 47, 32, 96},
                            {1001, 333, 896, 288}, {97, 161, 97, 64}, {64, 64, 65, 64}};
    uint32_t seed = 12345;
    for (size_t c = 0; c < sizeof sizes / sizeof sizes[0]; c++) {
        int sw = sizes[c][0], sh = sizes[c][1], dw = sizes[c][2], dh = sizes[c][3];
        uint8_t *src = malloc((size_t)sw * sh * 3), *a = malloc((size_t)dw * dh * 3),
                *b = malloc((size_t)dw * dh * 3);
        for (size_t i = 0; i < (size_t)sw * sh * 3; i++) {
            seed = seed * 1664525u + 1013904223u;
            src[i] = (uint8_t)(seed >> 24);
        }
        PrepResizer *r = prep_resizer_new(sw, sh, dw, dh);
        prep_set_reference(1);
        prep_resize(r, src, sw * 3, a);
        prep_set_reference(0);
        prep_resize(r, src, sw * 3, b);
        if (memcmp(a, b, (size_t)dw * dh * 3))
            test_fail(__FILE__, __LINE__, "%dx%d -> %dx%d: SIMD differs", sw, sh, dw, dh);
        prep_resizer_free(r);
        free(src);
        free(a);
        free(b);
    }
}

TEST_GROUP(prep, {"simd_matches_ref", test_simd_matches_ref}, {"smart_resize", test_smart_resize}, {"patch_order", test_patch_order},
           {"golden", test_golden})
