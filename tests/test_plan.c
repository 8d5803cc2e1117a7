/* Tests of the budget planner: the reference's choice when it fits, downscaling, then
 * segments; every unit within the budget. */
#include "err.h"
#include "plan.h"
#include "prep.h"
#include "prompts.h"
#include "test.h"
#include "tok.h"

#include <math.h>
#include <stdlib.h>

static int64_t unit_total(const PlanUnit *u)
{
    return u->visual_tok + u->prompt_tok + u->max_new_tok;
}

static void test_page(void)
{
    char err[VLQ_ERRLEN];
    PlanUnit u;
    PlanOptions o = {.budget_tok = 8192, .prompt_tok = 60, .max_new_tok = 2048};
    /* A letter page at 144 dpi fits as the reference resizes it. */
    CHECK_EQ(plan_page(&o, 1224, 1584, 1, &u, err), 0);
    int h, w;
    CHECK_EQ(prep_smart_resize(1584, 1224, PREP_IMAGE_MIN_PIXELS, PREP_IMAGE_MAX_PIXELS, &h, &w,
                               err), 0);
    CHECK(u.width == w && u.height == h && !u.downscaled);
    CHECK_EQ(u.visual_tok, (int64_t)w * h / 1024);
    CHECK_EQ(u.grid_t, 1);
    CHECK_EQ(u.grid_h, h / 16);
    CHECK_EQ(u.prompt_tok, 59);
    /* A 300 dpi page does not: downscaled to fit exactly under the budget. */
    CHECK_EQ(plan_page(&o, 2550, 3300, 2, &u, err), 0);
    CHECK(u.downscaled);
    CHECK(unit_total(&u) <= o.budget_tok);
    CHECK(unit_total(&u) > o.budget_tok - 200); /* not needlessly small */
    CHECK(fabs((double)u.width / u.height - 2550.0 / 3300) < 0.05);
    CHECK(u.width % 32 == 0 && u.height % 32 == 0);
    /* Too small a budget: a clear error. */
    o.budget_tok = 2600;
    CHECK_EQ(plan_page(&o, 1224, 1584, 1, &u, err), 0);
    CHECK(u.downscaled && unit_total(&u) <= 2600);
    o.budget_tok = 2000;
    CHECK_EQ(plan_page(&o, 1224, 1584, 1, &u, err), VLQ_EINPUT);
    CHECK(strstr(err, "budget 2000 too small") == err);
}

static MediaInfo video_info(double dur, double fps, int w, int h)
{
    MediaInfo i = {.kind = MEDIA_VIDEO, .width = w, .height = h, .duration_s = dur,
                   .video_fps = fps, .total_frames = (int64_t)llround(dur * fps)};
    return i;
}

static void test_video_one_segment(void)
{
    char err[VLQ_ERRLEN];
    PlanOptions o = {.budget_tok = 16384, .prompt_tok = 80, .max_new_tok = 1024};
    /* 60 s of 1080p at 25 fps: 120 frames; the reference's size fits. */
    MediaInfo info = video_info(60, 25, 1920, 1080);
    PlanUnit *u;
    int n;
    CHECK_EQ(plan_video(&o, &info, &u, &n, err), 0);
    CHECK_EQ(n, 1);
    int h, w;
    CHECK_EQ(prep_smart_resize_video(120, 1080, 1920, PREP_VIDEO_MIN_PIXELS,
                                     PREP_VIDEO_MAX_PIXELS, &h, &w, err), 0);
    CHECK(u[0].frames == 120 && u[0].width == w && u[0].height == h && !u[0].downscaled);
    CHECK(u[0].grid_t == 60 && u[0].grid_h == h / 16 && u[0].grid_w == w / 16);
    CHECK(u[0].start_s == 0 && u[0].end_s == 60);
    /* prompt: 80 - 3 + per group 2 + "<x.y seconds>" bytes */
    CHECK(u[0].prompt_tok > 80 - 3 + 60 * 2 + 60 * 13);
    CHECK(unit_total(&u[0]) <= o.budget_tok);
    free(u);
    /* A tighter budget: same frames, smaller frames. */
    o.budget_tok = 8192;
    CHECK_EQ(plan_video(&o, &info, &u, &n, err), 0);
    CHECK_EQ(n, 1);
    CHECK(u[0].frames == 120 && u[0].downscaled && u[0].width < w);
    CHECK(unit_total(&u[0]) <= o.budget_tok);
    CHECK(u[0].visual_tok / u[0].grid_t >= PLAN_DEFAULT_MIN_GROUP_TOK);
    free(u);
}

/* An exact counter for the tests: one token per character except digits grouped. */
static int count_chars(void *ctx, const char *text)
{
    int *calls = ctx;
    (*calls)++;
    return (int)strlen(text);
}

static void test_video_segments(void)
{
    char err[VLQ_ERRLEN];
    int calls = 0;
    PlanOptions o = {.budget_tok = 16384, .prompt_tok = 80, .max_new_tok = 1024,
                     .count_text = count_chars, .count_ctx = &calls};
    /* 10 minutes at 2 fps = 1200 samples: more than one budget holds. */
    MediaInfo info = video_info(600, 30, 640, 360);
    PlanUnit *u;
    int n;
    CHECK_EQ(plan_video(&o, &info, &u, &n, err), 0);
    CHECK(n >= 2);
    CHECK(calls > 0);
    printf("    10 min: %d segments of %d frames at %dx%d\n", n, u[0].frames, u[0].width,
           u[0].height);
    double t = 0;
    int frames = 0;
    for (int i = 0; i < n; i++) {
        CHECK(fabs(u[i].start_s - t) < 1e-9); /* consecutive */
        CHECK(u[i].end_s > u[i].start_s);
        CHECK(unit_total(&u[i]) <= o.budget_tok);
        /* the reference's own size, or a downscale no lower than the floor */
        CHECK(!u[i].downscaled || u[i].visual_tok / u[i].grid_t >= PLAN_DEFAULT_MIN_GROUP_TOK);
        t = u[i].end_s;
        frames += u[i].frames;
    }
    CHECK(fabs(t - 600) < 1e-9);
    CHECK(frames >= 1190); /* every segment sampled at 2 fps */
    free(u);
    /* With room for more frames per segment, fewer segments. */
    o.budget_tok = 32768;
    int n2;
    CHECK_EQ(plan_video(&o, &info, &u, &n2, err), 0);
    CHECK(n2 < n);
    free(u);
    /* --from/--to restrict the range. */
    o.media.from_s = 100;
    o.media.to_s = 160;
    CHECK_EQ(plan_video(&o, &info, &u, &n, err), 0);
    CHECK(n == 1 && u[0].start_s == 100 && u[0].end_s == 160 && u[0].frames == 120);
    free(u);
    /* A budget that cannot hold even one frame pair. */
    o.budget_tok = 1100;
    CHECK_EQ(plan_video(&o, &info, &u, &n, err), VLQ_EINPUT);
    CHECK(strstr(err, "too small") != NULL);
}

static void test_plan_file(void)
{
    if (test_sh("ffmpeg -version >/dev/null 2>&1") != 0)
        test_skip("no ffmpeg CLI");
    CHECK_EQ(test_sh("ffmpeg -nostdin -v error -y -f lavfi -i testsrc=size=320x240:rate=25:"
                     "duration=10 -pix_fmt yuv420p v.mp4"), 0);
    CHECK_EQ(test_sh("ffmpeg -nostdin -v error -y -f lavfi -i testsrc=size=3000x2000 "
                     "-frames:v 1 big.png"), 0);
    char err[VLQ_ERRLEN];
    PlanOptions o = {.budget_tok = 16384, .prompt_tok = 50, .max_new_tok = 1024};
    PlanUnit *u;
    int n;
    CHECK_EQ(plan_file("v.mp4", &o, &u, &n, err), 0);
    CHECK(n == 1 && u[0].page == 0 && u[0].frames == 20 && u[0].end_s == 10);
    free(u);
    o.budget_tok = 4096;
    CHECK_EQ(plan_file("big.png", &o, &u, &n, err), 0);
    CHECK(n == 1 && u[0].page == 1 && u[0].downscaled && unit_total(&u[0]) <= 4096);
    CHECK(u[0].src_width == 3000 && u[0].src_height == 2000);
    free(u);
    CHECK_EQ(plan_file("missing.mp4", &o, &u, &n, err), VLQ_EINPUT);
    CHECK_STR(err, "missing.mp4: No such file or directory");
}

static int tok_count(void *ctx, const char *text)
{
    TokIds ids = {0};
    CHECK_EQ(tok_encode(ctx, text, strlen(text), &ids, NULL), 0);
    int n = (int)ids.n;
    tok_ids_clear(&ids);
    return n;
}

/* With the real tokenizer, the planner's prompt + visual tokens equal the length of the
 * fully expanded chat prompt (tok, itself checked against the HF processor). */
static void test_exact_with_tok(void)
{
    char path[1024], err[VLQ_ERRLEN];
    snprintf(path, sizeof path, "%s/tests/data/qwen3-tokenizer/tokenizer.json", test_root());
    Tok *tok;
    if (tok_load_file(path, &tok, err) != 0)
        test_skip("%s", err);
    const char *text = prompts_default("summarize", NULL);
    double t0 = 0;
    TokPart parts[2] = {{.kind = TOK_PART_VIDEO, .grid_t = 1, .grid_h = 2, .grid_w = 2,
                         .times_s = &t0},
                        {.kind = TOK_PART_TEXT, .text = text}};
    TokChat chat = {.parts = parts, .n_parts = 2};
    size_t n1;
    CHECK_EQ(tok_chat_count(tok, &chat, &n1, err), 0);
    PlanOptions o = {.budget_tok = 16384, .max_new_tok = 1024, .count_text = tok_count,
                     .count_ctx = tok};
    o.prompt_tok = (int64_t)n1 - tok_count(tok, "<0.0 seconds>");
    MediaInfo info = video_info(37.3, 29.97, 854, 480);
    PlanUnit *u;
    int n;
    CHECK_EQ(plan_video(&o, &info, &u, &n, err), 0);
    CHECK_EQ(n, 1);
    /* The reference's timestamps for the unit's frames. */
    int64_t idx[768];
    int nf = media_sample_indices(info.total_frames, info.video_fps, NULL, idx);
    CHECK_EQ(nf, u[0].frames);
    double times[384];
    for (int g = 0; g < u[0].grid_t; g++) {
        int64_t a = idx[2 * g], b = idx[2 * g + 1 < nf ? 2 * g + 1 : nf - 1];
        times[g] = (a / info.video_fps + b / info.video_fps) / 2;
    }
    parts[0] = (TokPart){.kind = TOK_PART_VIDEO, .grid_t = u[0].grid_t, .grid_h = u[0].grid_h,
                         .grid_w = u[0].grid_w, .times_s = times};
    size_t full;
    CHECK_EQ(tok_chat_count(tok, &chat, &full, err), 0);
    CHECK_EQ((int64_t)full, u[0].prompt_tok + u[0].visual_tok);
    free(u);
    /* A page: same identity with an image part. */
    parts[0] = (TokPart){.kind = TOK_PART_IMAGE, .grid_t = 1, .grid_h = 2, .grid_w = 2};
    CHECK_EQ(tok_chat_count(tok, &chat, &n1, err), 0);
    o.prompt_tok = (int64_t)n1;
    PlanUnit pu;
    CHECK_EQ(plan_page(&o, 1224, 1584, 1, &pu, err), 0);
    parts[0].grid_h = pu.grid_h;
    parts[0].grid_w = pu.grid_w;
    CHECK_EQ(tok_chat_count(tok, &chat, &full, err), 0);
    CHECK_EQ((int64_t)full, pu.prompt_tok + pu.visual_tok);
    tok_free(tok);
}

static int first_frame_cb(void *ctx, const MediaFrame *f, char *err)
{
    uint8_t *dst = ctx;
    for (int y = 0; y < f->height; y++)
        memcpy(dst + (size_t)y * f->width * 3, f->rgb + (size_t)y * f->stride, f->width * 3);
    return 0;
}

/* plan_load gives the planned grid, the reference's timestamps, and the pixels. */
static void test_load(void)
{
    if (test_sh("ffmpeg -version >/dev/null 2>&1") != 0)
        test_skip("no ffmpeg CLI");
    CHECK_EQ(test_sh("ffmpeg -nostdin -v error -y -f lavfi -i testsrc=size=320x240:rate=25:"
                     "duration=10 -pix_fmt yuv420p v.mp4"), 0);
    CHECK_EQ(test_sh("ffmpeg -nostdin -v error -y -f lavfi -i testsrc=size=256x256 "
                     "-frames:v 1 p.png"), 0);
    char err[VLQ_ERRLEN];
    PlanOptions o = {.budget_tok = 16384, .prompt_tok = 50, .max_new_tok = 1024};
    PlanUnit *u;
    int n;
    CHECK_EQ(plan_file("v.mp4", &o, &u, &n, err), 0);
    PrepVisual v;
    double times[16];
    CHECK_EQ(plan_load("v.mp4", &o, &u[0], &v, times, err), 0);
    CHECK(v.grid_t == u[0].grid_t && v.grid_h == u[0].grid_h && v.grid_w == u[0].grid_w);
    int64_t idx[20];
    CHECK_EQ(media_sample_indices(250, 25, NULL, idx), 20);
    for (int g = 0; g < v.grid_t; g++)
        CHECK(fabs(times[g] - (idx[2 * g] + idx[2 * g + 1]) / 50.0) < 1e-9);
    prep_visual_clear(&v);
    free(u);
    /* A page already at its target size: the pixels are the decoded ones, normalised. */
    CHECK_EQ(plan_file("p.png", &o, &u, &n, err), 0);
    CHECK(u[0].width == 256 && u[0].height == 256);
    CHECK_EQ(plan_load("p.png", &o, &u[0], &v, NULL, err), 0);
    uint8_t *rgb = malloc(256 * 256 * 3);
    CHECK_EQ(media_decode_pages("p.png", NULL, first_frame_cb, rgb, err), 0);
    PrepVisual w;
    CHECK_EQ(prep_visual_init(&w, 1, 256, 256, err), 0);
    prep_visual_add(&w, rgb, 256 * 3);
    prep_visual_finish(&w);
    CHECK(!memcmp(v.pixels, w.pixels, sizeof(float) * 256 * 256 * 6));
    prep_visual_clear(&w);
    prep_visual_clear(&v);
    free(rgb);
    free(u);
}

TEST_GROUP(plan, {"load", test_load}, {"exact_with_tok", test_exact_with_tok}, {"page", test_page}, {"video_one_segment", test_video_one_segment},
           {"video_segments", test_video_segments}, {"plan_file", test_plan_file})
