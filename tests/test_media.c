#define _GNU_SOURCE /* memmem */
/* Tests of media: media made at run time with the ffmpeg CLI (skipped without it), PDFs
 * written by hand, two tiny committed images (tests/media: multi-page TIFF, CMYK JPEG). */
#include "err.h"
#include "media.h"
#include "test.h"
#include "util.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <zlib.h>

/* The runner ends each test with _exit, where LeakSanitizer does not run: under ASan
 * the bad-input tests ask for a leak check themselves. */
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#define LEAK_CHECK() CHECK(__lsan_do_recoverable_leak_check() == 0)
#else
#define LEAK_CHECK() ((void)0)
#endif

static void need_ffmpeg(void)
{
    if (test_sh("ffmpeg -version >/dev/null 2>&1") != 0)
        test_skip("no ffmpeg CLI");
}

/* ffmpeg with quiet flags; returns its exit status. */
#define FF(...) test_sh("ffmpeg -nostdin -v error -y " __VA_ARGS__)

/* What the callback saw. */
typedef struct {
    int n;
    int w[1024], h[1024];
    double pts[1024];
    int64_t idx[1024];
    uint8_t first_px[1024][3]; /* pixel (0,0) */
    uint8_t mid_px[1024][3];   /* pixel (w/2,h/2) */
} Seen;

static int seen_cb(void *ctx, const MediaFrame *f, char *err)
{
    Seen *s = ctx;
    if (s->n < 1024) {
        s->w[s->n] = f->width;
        s->h[s->n] = f->height;
        s->pts[s->n] = f->pts_s;
        s->idx[s->n] = f->frame_idx;
        memcpy(s->first_px[s->n], f->rgb, 3);
        memcpy(s->mid_px[s->n], f->rgb + (size_t)(f->height / 2) * f->stride + (f->width / 2) * 3,
               3);
    }
    s->n++;
    return 0;
}

static int near(int a, int b, int tol) { return abs(a - b) <= tol; }

/* ---- images ---- */

static void test_image_formats(void)
{
    need_ffmpeg();
    struct {
        const char *file, *args;
    } cases[] = {
        {"a.png", "-pix_fmt rgb24"},     {"a.jpg", "-q:v 2"},
        {"a.bmp", "-pix_fmt bgr24"},     {"a.gif", "-vf \"split[a][b];[a]palettegen[p];[b][p]paletteuse\""},
        {"a16.png", "-pix_fmt rgb48be"}, {"a.tif", "-pix_fmt rgb24"},
        {"a.webp", "-lossless 1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        /* A solid colour (200, 100, 50) so every format keeps it within a few levels. */
        if (FF("-f lavfi -i color=c=0xCC6633:s=67x45:d=1,format=rgb24 -frames:v 1 %s %s",
               cases[i].args,
               cases[i].file) != 0) {
            printf("    (no encoder for %s)\n", cases[i].file);
            continue;
        }
        Seen s = {0};
        char err[VLQ_ERRLEN];
        CHECK_EQ(media_kind(cases[i].file), MEDIA_IMAGE);
        int ret = media_decode_pages(cases[i].file, NULL, seen_cb, &s, err);
        if (ret)
            printf("    %s: %s\n", cases[i].file, err);
        CHECK_EQ(ret, 0);
        CHECK_EQ(s.n, 1);
        CHECK_EQ(s.w[0], 67);
        CHECK_EQ(s.h[0], 45);
        int tol = 6;
        if (!near(s.mid_px[0][0], 204, tol) || !near(s.mid_px[0][1], 102, tol) ||
            !near(s.mid_px[0][2], 51, tol))
            test_fail(__FILE__, __LINE__, "%s: colour %d,%d,%d, want 204,102,51", cases[i].file,
                      s.mid_px[0][0], s.mid_px[0][1], s.mid_px[0][2]);
        MediaInfo info;
        CHECK_EQ(media_probe(cases[i].file, NULL, &info, err), 0);
        CHECK_EQ(info.kind, MEDIA_IMAGE);
    }
}

static void test_image_alpha_gray(void)
{
    need_ffmpeg();
    /* Fully transparent black over white is white; half-transparent red is pink. */
    CHECK_EQ(FF("-f lavfi -i color=c=black@0.0:s=32x32:d=1,format=rgba -frames:v 1 t.png"), 0);
    CHECK_EQ(FF("-f lavfi -i color=c=red@0.5:s=32x32:d=1,format=rgba -frames:v 1 h.png"), 0);
    CHECK_EQ(FF("-f lavfi -i color=c=gray:s=32x32:d=1 -pix_fmt gray -frames:v 1 g.png"), 0);
    CHECK_EQ(FF("-f lavfi -i color=c=gray:s=32x32:d=1 -pix_fmt gray16be -frames:v 1 g16.png"), 0);
    char err[VLQ_ERRLEN];
    Seen s = {0};
    CHECK_EQ(media_decode_pages("t.png", NULL, seen_cb, &s, err), 0);
    CHECK(s.mid_px[0][0] == 255 && s.mid_px[0][1] == 255 && s.mid_px[0][2] == 255);
    memset(&s, 0, sizeof s);
    CHECK_EQ(media_decode_pages("h.png", NULL, seen_cb, &s, err), 0);
    CHECK(s.mid_px[0][0] == 255 && near(s.mid_px[0][1], 127, 2) && near(s.mid_px[0][2], 127, 2));
    for (int k = 0; k < 2; k++) {
        memset(&s, 0, sizeof s);
        CHECK_EQ(media_decode_pages(k ? "g16.png" : "g.png", NULL, seen_cb, &s, err), 0);
        CHECK(near(s.mid_px[0][0], 128, 2) && s.mid_px[0][0] == s.mid_px[0][1] &&
              s.mid_px[0][1] == s.mid_px[0][2]);
    }
}

static void test_gif_first_frame(void)
{
    need_ffmpeg();
    /* Three frames: red, green, blue; only the first one is the image. */
    CHECK_EQ(FF("-f lavfi -i color=c=red:s=40x30:d=0.1:r=10 -f lavfi -i color=c=lime:s=40x30:"
                "d=0.1:r=10 -f lavfi -i color=c=blue:s=40x30:d=0.1:r=10 -filter_complex "
                "concat=n=3 anim.gif"), 0);
    Seen s = {0};
    char err[VLQ_ERRLEN];
    CHECK_EQ(media_decode_pages("anim.gif", NULL, seen_cb, &s, err), 0);
    CHECK_EQ(s.n, 1);
    CHECK(s.mid_px[0][0] > 200 && s.mid_px[0][1] < 60 && s.mid_px[0][2] < 60);
}

static void test_tiff_pages_cmyk(void)
{
    char path[1024], err[VLQ_ERRLEN];
    snprintf(path, sizeof path, "%s/tests/media/pages3.tif", test_root());
    Seen s = {0};
    CHECK_EQ(media_decode_pages(path, NULL, seen_cb, &s, err), 0);
    CHECK_EQ(s.n, 3);
    CHECK(s.w[0] == 40 && s.h[0] == 30 && s.w[1] == 50 && s.h[1] == 20 && s.w[2] == 30);
    CHECK(s.mid_px[0][0] == 255 && s.mid_px[1][1] == 255 && s.mid_px[2][2] == 255);
    MediaInfo info;
    CHECK_EQ(media_probe(path, NULL, &info, err), 0);
    CHECK_EQ(info.n_pages, 3);
    MediaOptions o = {.first_page = 2, .last_page = 2};
    memset(&s, 0, sizeof s);
    CHECK_EQ(media_decode_pages(path, &o, seen_cb, &s, err), 0);
    CHECK(s.n == 1 && s.w[0] == 50);
    o = (MediaOptions){.first_page = 2, .last_page = 5};
    CHECK_EQ(media_decode_pages(path, &o, seen_cb, &s, err), VLQ_EINPUT);
    char want[1100];
    snprintf(want, sizeof want, "%s: pages 2-5 requested, the image has 3", path);
    CHECK_STR(err, want);

    snprintf(path, sizeof path, "%s/tests/media/cmyk.jpg", test_root());
    memset(&s, 0, sizeof s);
    CHECK_EQ(media_decode_pages(path, NULL, seen_cb, &s, err), 0);
    /* Pure cyan ink: little red, full green and blue. */
    CHECK(s.n == 1 && s.mid_px[0][0] < 40 && s.mid_px[0][1] > 200 && s.mid_px[0][2] > 200);
    LEAK_CHECK();
}

/* Insert an EXIF APP1 with Orientation o after the JPEG's SOI. */
static void jpeg_set_orientation(const char *in, const char *out, int o)
{
    char *d, err[VLQ_ERRLEN];
    size_t n;
    CHECK_EQ(util_read_file(in, 0, &d, &n, err), 0);
    uint8_t app[] = {0xFF, 0xE1, 0, 34, 'E', 'x', 'i', 'f', 0, 0, 'M', 'M', 0, 0x2A, 0, 0, 0, 8,
                     0,    1,    0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, (uint8_t)o, 0, 0, 0, 0, 0, 0};
    Buf b = {0};
    buf_append(&b, d, 2);
    buf_append(&b, app, sizeof app);
    buf_append(&b, d + 2, n - 2);
    CHECK_EQ(util_write_file(out, b.data, b.len, err), 0);
    buf_clear(&b);
    free(d);
}

static void test_exif_orientation(void)
{
    need_ffmpeg();
    /* 64x32: left half red, right half blue. */
    CHECK_EQ(FF("-f lavfi -i color=c=red:s=32x32:d=1 -f lavfi -i color=c=blue:s=32x32:d=1 "
                "-filter_complex hstack -frames:v 1 -q:v 2 lr.jpg"), 0);
    int want_w[9] = {0, 64, 64, 64, 64, 32, 32, 32, 32};
    /* Colour of the upright picture's top-left corner for each orientation. */
    const char *corner[9] = {"", "red", "blue", "blue", "red", "red", "red", "blue", "blue"};
    for (int o = 1; o <= 8; o++) {
        char name[32], err[VLQ_ERRLEN];
        snprintf(name, sizeof name, "o%d.jpg", o);
        jpeg_set_orientation("lr.jpg", name, o);
        Seen s = {0};
        CHECK_EQ(media_decode_pages(name, NULL, seen_cb, &s, err), 0);
        CHECK_EQ(s.w[0], want_w[o]);
        int red = s.first_px[0][0] > 150 && s.first_px[0][2] < 100;
        if (red != !strcmp(corner[o], "red"))
            test_fail(__FILE__, __LINE__, "orientation %d: corner %d,%d,%d, want %s", o,
                      s.first_px[0][0], s.first_px[0][1], s.first_px[0][2], corner[o]);
    }
}

/* A PNG whose IHDR claims w x h, with valid CRC and no image data. */
static void write_png_header(const char *path, uint32_t w, uint32_t h)
{
    uint8_t png[8 + 25] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0, 0, 0, 13,
                           'I', 'H', 'D', 'R'};
    uint8_t *p = png + 16;
    uint32_t v[2] = {w, h};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 4; i++)
            *p++ = (uint8_t)(v[k] >> (24 - 8 * i));
    *p++ = 8; /* depth */
    *p++ = 2; /* RGB */
    *p++ = 0;
    *p++ = 0;
    *p++ = 0;
    uint32_t crc = (uint32_t)crc32(0, png + 12, 17);
    for (int i = 0; i < 4; i++)
        *p++ = (uint8_t)(crc >> (24 - 8 * i));
    char err[VLQ_ERRLEN];
    CHECK_EQ(util_write_file(path, png, sizeof png, err), 0);
}

static void test_bad_images(void)
{
    char err[VLQ_ERRLEN];
    Seen s = {0};
    write_png_header("huge.png", 50000, 50000);
    int ret = media_decode_pages("huge.png", NULL, seen_cb, &s, err);
    CHECK_EQ(ret, VLQ_EINPUT);
    CHECK(strstr(err, "huge.png: ") == err);
    CHECK(strstr(err, "max_image_pixels") || strstr(err, "50000x50000"));
    printf("    %s\n", err);
    /* A configurable limit: 1000x1000 refused under a 100000-pixel limit. */
    need_ffmpeg();
    CHECK_EQ(FF("-f lavfi -i color=c=red:s=1000x1000:d=1 -frames:v 1 big.png"), 0);
    MediaOptions o = {.max_image_pixels = 100000};
    ret = media_decode_pages("big.png", &o, seen_cb, &s, err);
    CHECK_EQ(ret, VLQ_EINPUT);
    printf("    %s\n", err);
    CHECK(strstr(err, "big.png") == err);
    CHECK_EQ(s.n, 0);
    CHECK_EQ(util_write_file("empty.png", "", 0, err), 0);
    CHECK_EQ(media_decode_pages("empty.png", NULL, seen_cb, &s, err), VLQ_EINPUT);
    CHECK_STR(err, "empty.png: empty file");
    CHECK_EQ(media_decode_pages("missing.png", NULL, seen_cb, &s, err), VLQ_EINPUT);
    CHECK_STR(err, "missing.png: No such file or directory");
    LEAK_CHECK();
}

/* ---- video ---- */

static void test_video_1s(void)
{
    need_ffmpeg();
    CHECK_EQ(FF("-f lavfi -i testsrc=size=160x120:rate=25:duration=1 -pix_fmt yuv420p "
                "-c:v libx264 v1.mp4"), 0);
    char err[VLQ_ERRLEN];
    MediaInfo info;
    CHECK_EQ(media_probe("v1.mp4", NULL, &info, err), 0);
    CHECK_EQ(info.kind, MEDIA_VIDEO);
    CHECK_EQ(info.total_frames, 25);
    CHECK(fabs(info.video_fps - 25) < 1e-9);
    Seen s = {0};
    int lost = -1;
    CHECK_EQ(media_decode_video("v1.mp4", NULL, seen_cb, &s, &lost, err), 0);
    /* n = int(25/25*2) = 2 -> min_frames 4; rint(linspace(0, 24, 4)) = 0, 8, 16, 24 */
    CHECK_EQ(s.n, 4);
    CHECK_EQ(lost, 0);
    int64_t want[4] = {0, 8, 16, 24};
    for (int i = 0; i < 4 && i < s.n; i++) {
        CHECK_EQ(s.idx[i], want[i]);
        CHECK(fabs(s.pts[i] - want[i] / 25.0) < 1.0 / 25);
        CHECK(s.w[i] == 160 && s.h[i] == 120);
    }
}

static void test_sample_indices(void)
{
    int64_t idx[768];
    /* 10 s at 30 fps, fps 2: n = 20, linspace(0, 299, 20) rounded half to even. */
    CHECK_EQ(media_sample_indices(300, 30, NULL, idx), 20);
    CHECK_EQ(idx[0], 0);
    CHECK_EQ(idx[1], 16); /* 15.736... */
    CHECK_EQ(idx[19], 299);
    /* Half-to-even: linspace(0, 9, 3) = 0, 4.5, 9 -> 0, 4, 9 */
    MediaOptions o = {.fps = 3, .min_frames = 1};
    CHECK_EQ(media_sample_indices(10, 10, &o, idx), 3);
    CHECK_EQ(idx[1], 4);
    /* caps: max_frames and the frame count */
    CHECK_EQ(media_sample_indices(100000, 25, NULL, NULL), 768);
    CHECK_EQ(media_sample_indices(3, 25, NULL, NULL), 3);
    CHECK_EQ(media_sample_indices(0, 25, NULL, NULL), 0);
}

/* media_sample_indices against Qwen3VLVideoProcessor.sample_frames on 432 cases
 * (tests/media/sample_golden.txt from gen_fixtures.py). */
static void test_sample_golden(void)
{
    char path[1024], err[VLQ_ERRLEN];
    snprintf(path, sizeof path, "%s/tests/media/sample_golden.txt", test_root());
    char *data;
    size_t len;
    if (util_read_file(path, 0, &data, &len, err) != 0)
        test_skip("%s", err);
    int cases = 0, bad = 0;
    int64_t *idx = malloc(sizeof *idx * 768);
    for (char *line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
        char *p = line;
        int64_t total = strtoll(p, &p, 10);
        double vfps = strtod(p, &p), fps = strtod(p, &p);
        int n_ref = (int)strtol(p, &p, 10);
        MediaOptions o = {.fps = fps};
        int n = media_sample_indices(total, vfps, &o, idx);
        int same = n == n_ref;
        for (int i = 0; same && i < n; i++)
            same = idx[i] == strtoll(p, &p, 10);
        if (!same && bad++ < 5)
            test_fail(__FILE__, __LINE__, "total %lld video_fps %g fps %g: differs",
                      (long long)total, vfps, fps);
        cases++;
    }
    CHECK_EQ(cases, 432);
    CHECK_EQ(bad, 0);
    free(idx);
    free(data);
}

static void test_video_codecs(void)
{
    need_ffmpeg();
    const char *cases[] = {
        "-c:v mpeg4 c.avi", "-c:v libvpx-vp9 -b:v 200k c.webm", "-c:v mjpeg c.mkv",
        "-c:v ffv1 c.nut", "-c:v libx264 c.ts", "-c:v libaom-av1 -cpu-used 8 c.mp4",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (FF("-f lavfi -i smptebars=size=96x64:rate=10:duration=3 -pix_fmt yuv420p %s",
               cases[i]) != 0) {
            printf("    (cannot encode %s)\n", cases[i]);
            continue;
        }
        const char *file = strrchr(cases[i], ' ') + 1;
        Seen s = {0};
        char err[VLQ_ERRLEN];
        int ret = media_decode_video(file, NULL, seen_cb, &s, NULL, err);
        if (ret)
            printf("    %s: %s\n", file, err);
        CHECK_EQ(ret, 0);
        /* 30 frames at 10 fps, fps 2: n = 6 */
        /* (a container without a frame count gives an estimate from its duration) */
        if (s.n != 6 && s.n != 5)
            test_fail(__FILE__, __LINE__, "%s: %d samples, want 6", file, s.n);
        for (int k = 0; k < s.n && k < 6; k++)
            CHECK(fabs(s.pts[k] - s.idx[k] / 10.0) < 0.1 + 1e-9);
        CHECK(s.w[0] == 96 && s.h[0] == 64);
    }
}

static void test_video_rotated_odd(void)
{
    need_ffmpeg();
    /* Odd size, display matrix rotation (the mov muxer writes it from "rotate"). */
    CHECK_EQ(FF("-f lavfi -i testsrc=size=161x97:rate=25:duration=1 -pix_fmt yuv444p "
                "-c:v libx264 rot.mp4"), 0);
    /* FFmpeg 5.1's CLI cannot set a display matrix: write one into the track header
     * (tkhd version 0: the matrix is 44 bytes after the box type), a 90-degree turn. */
    char err[VLQ_ERRLEN], *d;
    size_t n;
    CHECK_EQ(util_read_file("rot.mp4", 0, &d, &n, err), 0);
    char *tkhd = memmem(d, n, "tkhd", 4);
    CHECK(tkhd != NULL && tkhd[4] == 0);
    if (tkhd) {
        static const uint8_t m[36] = {0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
                                      0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                      0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0};
        memcpy(tkhd + 44, m, sizeof m);
        CHECK_EQ(util_write_file("rot.mp4", d, n, err), 0);
    }
    free(d);
    MediaInfo info;
    CHECK_EQ(media_probe("rot.mp4", NULL, &info, err), 0);
    CHECK(info.rotation == 90 || info.rotation == 270);
    if (info.width != 97 || info.height != 161)
        test_fail(__FILE__, __LINE__, "rotation %d: %dx%d", info.rotation, info.width, info.height);
    Seen s = {0};
    CHECK_EQ(media_decode_video("rot.mp4", NULL, seen_cb, &s, NULL, err), 0);
    if (s.n != 4 || s.w[0] != 97 || s.h[0] != 161)
        test_fail(__FILE__, __LINE__, "%d frames of %dx%d", s.n, s.w[0], s.h[0]);
}

static void test_video_vfr(void)
{
    need_ffmpeg();
    /* Frames at 0, 0.1, ..., 0.9 s, then every 0.5 s up to 5.5 s. */
    CHECK_EQ(FF("-f lavfi -i testsrc=size=64x48:rate=10:duration=6 -vf "
                "\"setpts='if(lt(N,10),N*0.1,1+(N-10)*0.5)/TB'\" -vsync vfr -c:v libx264 "
                "-frames:v 20 vfr.mkv"), 0);
    char err[VLQ_ERRLEN];
    MediaInfo info;
    CHECK_EQ(media_probe("vfr.mkv", NULL, &info, err), 0);
    Seen s = {0};
    CHECK_EQ(media_decode_video("vfr.mkv", NULL, seen_cb, &s, NULL, err), 0);
    CHECK(s.n >= 4);
    /* Each sample is a real frame time (a multiple of 0.1 before 1 s, of 0.5 after),
     * the one shown at its target, non-decreasing. */
    for (int k = 0; k < s.n; k++) {
        double t = s.pts[k], target = s.idx[k] / info.video_fps;
        int on_grid = t < 1 ? fabs(t * 10 - rint(t * 10)) < 1e-6
                            : fabs((t - 1) * 2 - rint((t - 1) * 2)) < 1e-6;
        CHECK(on_grid);
        CHECK(t <= target + 0.25 / info.video_fps + 1e-9);
        CHECK(target - t < 0.5 + 1e-9);
        if (k)
            CHECK(s.pts[k] >= s.pts[k - 1]);
    }
}

static void test_video_long_trim_seek(void)
{
    need_ffmpeg();
    /* 10 minutes, 64x64, 5 fps, keyframe every 10 s. */
    CHECK_EQ(FF("-f lavfi -i testsrc=size=64x64:rate=5:duration=600 -c:v libx264 "
                "-preset ultrafast -g 50 long.mp4"), 0);
    char err[VLQ_ERRLEN];
    Seen *s = calloc(1, sizeof *s);
    double t0 = util_mono_s();
    CHECK_EQ(media_decode_video("long.mp4", NULL, seen_cb, s, NULL, err), 0);
    /* int(3000/5*2) = 1200 -> max_frames 768 */
    CHECK_EQ(s->n, 768);
    CHECK(fabs(s->pts[s->n - 1] - 599.8) < 0.2 + 1e-9);
    printf("    768 of 3000 frames in %.2f s\n", util_mono_s() - t0);
    /* --from/--to: 100-130 s at 2 fps = 60 frames from 100.0 s */
    memset(s, 0, sizeof *s);
    MediaOptions o = {.from_s = 100, .to_s = 130};
    CHECK_EQ(media_decode_video("long.mp4", &o, seen_cb, s, NULL, err), 0);
    CHECK_EQ(s->n, 60);
    CHECK(fabs(s->pts[0] - 100.0) < 0.2);
    CHECK(fabs(s->pts[59] - (100.0 + s->idx[59] / 5.0)) < 0.2);
    /* A sparse rate: one frame every 20 s, reached by seeking; same frames as decoding. */
    memset(s, 0, sizeof *s);
    o = (MediaOptions){.fps = 0.05};
    t0 = util_mono_s();
    CHECK_EQ(media_decode_video("long.mp4", &o, seen_cb, s, NULL, err), 0);
    CHECK_EQ(s->n, 30);
    for (int k = 0; k < s->n; k++)
        CHECK(fabs(s->pts[k] - s->idx[k] / 5.0) < 0.2 + 1e-9);
    printf("    30 samples with seeking in %.2f s\n", util_mono_s() - t0);
    free(s);
    LEAK_CHECK();
}

static void test_bad_videos(void)
{
    need_ffmpeg();
    char err[VLQ_ERRLEN];
    Seen s = {0};
    CHECK_EQ(util_write_file("empty.mp4", "", 0, err), 0);
    CHECK_EQ(media_decode_video("empty.mp4", NULL, seen_cb, &s, NULL, err), VLQ_EINPUT);
    CHECK_STR(err, "empty.mp4: empty file");
    CHECK_EQ(util_write_file("text.mp4", "hello, this is not a video\n", 27, err), 0);
    CHECK_EQ(media_decode_video("text.mp4", NULL, seen_cb, &s, NULL, err), VLQ_EINPUT);
    CHECK(strstr(err, "text.mp4: ") == err);
    printf("    %s\n", err);
    CHECK_EQ(FF("-f lavfi -i sine=frequency=440:duration=1 -c:a aac audio.m4a"), 0);
    CHECK_EQ(media_decode_video("audio.m4a", NULL, seen_cb, &s, NULL, err), VLQ_EINPUT);
    CHECK(strstr(err, "audio.m4a: no video") == err);
    printf("    %s\n", err);
    /* Truncated at 40%: an MP4 with its index first, and a Matroska file, both still
     * claim 8 s: the frames there are decoded, the rest reported lost. */
    const char *trunc[] = {"-movflags +faststart full.mp4", "full.mkv"};
    for (int k = 0; k < 2; k++) {
        CHECK_EQ(FF("-f lavfi -i testsrc=size=128x96:rate=25:duration=8 -c:v libx264 %s",
                    trunc[k]), 0);
        const char *full = strrchr(trunc[k], ' ') ? strrchr(trunc[k], ' ') + 1 : trunc[k];
        char cut[32];
        snprintf(cut, sizeof cut, "cut%s", strchr(full, '.'));
        char *d;
        size_t n;
        CHECK_EQ(util_read_file(full, 0, &d, &n, err), 0);
        CHECK_EQ(util_write_file(cut, d, n * 2 / 5, err), 0);
        free(d);
        int lost = 0;
        memset(&s, 0, sizeof s);
        int ret = media_decode_video(cut, NULL, seen_cb, &s, &lost, err);
        if (ret)
            printf("    %s\n", err);
        CHECK_EQ(ret, 0);
        CHECK(s.n > 0 && lost > 0 && s.n + lost == 16);
        printf("    truncated %s: %d samples decoded, %d lost\n", cut, s.n, lost);
    }
    LEAK_CHECK();
}

/* ---- PDF ---- */

/* Write a PDF with n_pages pages of w x h points, each with a filled black square
 * at its lower left; encrypt adds a standard-security /Encrypt dictionary (RC4,
 * user password "secret", values computed once with the PDF 1.7 algorithms 3.2-3.5). */
static void write_pdf(const char *path, int n_pages, int w, int h, int encrypt)
{
    Buf b = {0};
    long off[64];
    int obj = 0;
    buf_puts(&b, "%PDF-1.4\n");
    off[++obj] = (long)b.len;
    buf_puts(&b, "1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n");
    off[++obj] = (long)b.len;
    buf_puts(&b, "2 0 obj << /Type /Pages /Kids [");
    for (int i = 0; i < n_pages; i++)
        buf_printf(&b, "%d 0 R ", 4 + 2 * i);
    buf_printf(&b, "] /Count %d >> endobj\n", n_pages);
    off[++obj] = (long)b.len;
    const char *content = "0 0 0 rg 0 0 36 36 re f\n";
    buf_printf(&b, "3 0 obj << /Length %zu >> stream\n%sendstream endobj\n", strlen(content),
               content);
    for (int i = 0; i < n_pages; i++) {
        off[++obj] = (long)b.len;
        buf_printf(&b, "%d 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] "
                   "/Contents 3 0 R >> endobj\n", obj, w, h);
        off[++obj] = (long)b.len;
        buf_printf(&b, "%d 0 obj << >> endobj\n", obj);
    }
    int enc = 0;
    if (encrypt) {
        enc = ++obj;
        off[enc] = (long)b.len;
        buf_printf(&b, "%d 0 obj << /Filter /Standard /V 1 /R 2 /P -4 "
                   "/O <92fe0f4454ad4c9644693f33c07cb54f587dce1e2682fe9ecea6107a1ef630dd> "
                   "/U <4ff547683854c55579f773676c577528c7fed8921ae823b77eb1052f257a65fe> "
                   ">> endobj\n", enc);
    }
    long xref = (long)b.len;
    buf_printf(&b, "xref\n0 %d\n0000000000 65535 f \n", obj + 1);
    for (int i = 1; i <= obj; i++)
        buf_printf(&b, "%010ld 00000 n \n", off[i]);
    buf_printf(&b, "trailer << /Size %d /Root 1 0 R", obj + 1);
    if (encrypt)
        buf_printf(&b, " /Encrypt %d 0 R /ID [<766c7174657374766c71746573743132> "
                   "<766c7174657374766c71746573743132>]", enc);
    buf_printf(&b, " >>\nstartxref\n%ld\n%%%%EOF\n", xref);
    char err[VLQ_ERRLEN];
    CHECK_EQ(util_write_file(path, b.data, b.len, err), 0);
    buf_clear(&b);
}

static void test_pdf(void)
{
    write_pdf("doc.pdf", 3, 200, 100, 0);
    char err[VLQ_ERRLEN];
    MediaInfo info;
    CHECK_EQ(media_kind("doc.pdf"), MEDIA_PDF);
    CHECK_EQ(media_probe("doc.pdf", NULL, &info, err), 0);
    CHECK_EQ(info.n_pages, 3);
    /* 200x100 pt at 144 dpi */
    CHECK(info.width == 400 && info.height == 200);
    Seen s = {0};
    MediaOptions o = {.pdf_dpi = 72, .first_page = 2, .last_page = 3};
    CHECK_EQ(media_decode_pages("doc.pdf", &o, seen_cb, &s, err), 0);
    CHECK_EQ(s.n, 2);
    CHECK(s.w[0] == 200 && s.h[0] == 100);
    /* White page, black square at the lower left (PDF's origin). */
    CHECK(s.first_px[0][0] == 255 && s.mid_px[0][0] == 255);
    int *sizes, n;
    CHECK_EQ(media_page_sizes("doc.pdf", NULL, &sizes, &n, err), 0);
    CHECK(n == 3 && sizes[0] == 400 && sizes[1] == 200);
    free(sizes);
    o = (MediaOptions){.first_page = 4};
    CHECK_EQ(media_decode_pages("doc.pdf", &o, seen_cb, &s, err), VLQ_EINPUT);
    CHECK_STR(err, "doc.pdf: pages 4-3 requested, the PDF has 3");
    LEAK_CHECK();
}

static void test_bad_pdfs(void)
{
    char err[VLQ_ERRLEN];
    Seen s = {0};
    write_pdf("none.pdf", 0, 200, 100, 0);
    int ret = media_decode_pages("none.pdf", NULL, seen_cb, &s, err);
    CHECK_EQ(ret, VLQ_EINPUT);
    CHECK(strstr(err, "none.pdf: ") == err);
    printf("    %s\n", err);
    write_pdf("enc.pdf", 1, 200, 100, 1);
    CHECK_EQ(media_decode_pages("enc.pdf", NULL, seen_cb, &s, err), VLQ_EINPUT);
    CHECK_STR(err, "enc.pdf: not a readable PDF: encrypted PDF (a password is needed)");
    CHECK_EQ(util_write_file("broken.pdf", "%PDF-1.4\n1 0 obj << /Type /Cat", 31, err), 0);
    CHECK_EQ(media_decode_pages("broken.pdf", NULL, seen_cb, &s, err), VLQ_EINPUT);
    CHECK(strstr(err, "broken.pdf: ") == err);
    printf("    %s\n", err);
    CHECK_EQ(util_write_file("zero.pdf", "", 0, err), 0);
    CHECK_EQ(media_decode_pages("zero.pdf", NULL, seen_cb, &s, err), VLQ_EINPUT);
    CHECK_STR(err, "zero.pdf: empty file");
    write_pdf("huge.pdf", 1, 14400, 14400, 0);
    CHECK_EQ(media_decode_pages("huge.pdf", NULL, seen_cb, &s, err), VLQ_EINPUT);
    CHECK(strstr(err, "max_image_pixels") != NULL);
    CHECK_EQ(s.n, 0);
    LEAK_CHECK();
}

TEST_GROUP(media, {"image_formats", test_image_formats}, {"alpha_gray", test_image_alpha_gray},
           {"gif_first_frame", test_gif_first_frame}, {"tiff_pages_cmyk", test_tiff_pages_cmyk}, {"exif_orientation", test_exif_orientation},
           {"bad_images", test_bad_images}, {"sample_indices", test_sample_indices}, {"sample_golden", test_sample_golden},
           {"video_1s", test_video_1s}, {"video_codecs", test_video_codecs},
           {"video_rotated_odd", test_video_rotated_odd}, {"video_vfr", test_video_vfr},
           {"video_long_trim_seek", test_video_long_trim_seek, 300},
           {"bad_videos", test_bad_videos}, {"pdf", test_pdf}, {"bad_pdfs", test_bad_pdfs})
