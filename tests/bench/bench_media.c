/* bench_media: decode + sample + resize to the model grid, vlq against the ffmpeg CLI.
 *
 * usage: vlq-bench-media VIDEO [FPS]
 * Runs vlq's path (media_decode_video at FPS, default 2, each sample resized with
 * prep's bicubic to the size the reference's smart_resize picks for that many frames),
 * then `ffmpeg -vf fps=FPS,scale=W:H:flags=bicubic -f rawvideo -pix_fmt rgb24` to
 * /dev/null, both with FFmpeg's automatic thread count, and prints sampled frames per
 * second of each, their ratio and peak RSS (vlq: this process; ffmpeg: the child). */
#include "err.h"
#include "log.h"
#include "media.h"
#include "prep.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

typedef struct {
    PrepResizer *rs;
    uint8_t *out;
    int w, h;
    uint64_t sum;
    int n;
} BenchCtx;

static int bench_frame(void *ctx, const MediaFrame *f, char *err)
{
    BenchCtx *b = ctx;
    if (!b->rs)
        b->rs = prep_resizer_new(f->width, f->height, b->w, b->h);
    prep_resize(b->rs, f->rgb, f->stride, b->out);
    b->sum += b->out[(size_t)b->n % ((size_t)b->w * b->h * 3)];
    b->n++;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s VIDEO [FPS]\n", argv[0]);
        return 2;
    }
    log_setup(LOG_WARN, 1);
    const char *path = argv[1];
    double fps = argc > 2 ? atof(argv[2]) : 2.0;
    char err[VLQ_ERRLEN];
    MediaInfo info;
    MediaOptions o = {.fps = fps};
    if (media_probe(path, &o, &info, err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int n = media_sample_indices(info.total_frames, info.video_fps, &o, NULL);
    BenchCtx b = {0};
    if (prep_smart_resize_video(n, info.height, info.width, PREP_VIDEO_MIN_PIXELS,
                                PREP_VIDEO_MAX_PIXELS, &b.h, &b.w, err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    b.out = xmalloc((size_t)b.w * b.h * 3);
    printf("video %s: %dx%d, %.1f s, %lld frames at %.3f fps; %d samples at %g fps -> %dx%d\n",
           path, info.width, info.height, info.duration_s, (long long)info.total_frames,
           info.video_fps, n, fps, b.w, b.h);
    double t0 = util_mono_s();
    if (media_decode_video(path, &o, bench_frame, &b, NULL, err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    double t_vlq = util_mono_s() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long rss_vlq = ru.ru_maxrss;
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "ffmpeg -nostdin -v error -i '%s' -vf fps=%g,scale=%d:%d:flags=bicubic "
             "-f rawvideo -pix_fmt rgb24 -y /dev/null",
             path, fps, b.w, b.h);
    t0 = util_mono_s();
    int rc = system(cmd);
    double t_cli = util_mono_s() - t0;
    getrusage(RUSAGE_CHILDREN, &ru);
    if (rc != 0) {
        fprintf(stderr, "ffmpeg CLI failed (%d): %s\n", rc, cmd);
        return 1;
    }
    printf("vlq        %4d frames in %6.2f s = %7.2f frames/s, peak RSS %6.1f MiB\n", b.n, t_vlq,
           b.n / t_vlq, rss_vlq / 1024.0);
    printf("ffmpeg CLI %4d frames in %6.2f s = %7.2f frames/s, peak RSS %6.1f MiB\n", n, t_cli,
           n / t_cli, ru.ru_maxrss / 1024.0);
    printf("ratio vlq/CLI (frames/s): %.2f  [%s]\n", (b.n / t_vlq) / (n / t_cli),
           (b.n / t_vlq) >= (n / t_cli) ? "at least as fast" : "slower");
    prep_resizer_free(b.rs);
    free(b.out);
    return 0;
}
