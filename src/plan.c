/* plan: fit pages and video segments into a context budget (plan.h).
 *
 * Token accounting (processing_qwen3_vl.py, Qwen3VLProcessor.__call__): the prompt has
 * one placeholder block. An image's <|image_pad|> becomes h*w/1024 pads (grid/4), so a
 * page costs prompt - 1 + pads. A video's whole <|vision_start|><|video_pad|>
 * <|vision_end|> becomes, per temporal group of 2 frames, "<t seconds>" + start +
 * pads + end, so a segment costs prompt - 3 + sum(ts + 2 + h*w/1024) over its groups.
 *
 * Choices, in order of preference:
 * 1. the reference's own resolution and frame count (identical output when it fits);
 * 2. the same frames at a smaller resolution (smart_resize with max_pixels lowered
 *    to what the budget leaves), down to min_group_tok tokens per group;
 * 3. consecutive segments of equal duration, each sampled at fps like a whole video,
 *    with as few segments as fit.
 * Timestamps are counted as absolute times from the stream start (what a job that
 * stitches segments will print), by the caller's counter or by their byte length. */
#include "plan.h"

#include "err.h"
#include "prep.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int64_t plan_or(int64_t v, int64_t dflt) { return v > 0 ? v : dflt; }

/* plan_page: see plan.h. */
int plan_page(const PlanOptions *o, int width, int height, int page, PlanUnit *u, char *err)
{
    memset(u, 0, sizeof *u);
    int64_t min_px = plan_or(o->image_min_px, PREP_IMAGE_MIN_PIXELS);
    int64_t max_px = plan_or(o->image_max_px, PREP_IMAGE_MAX_PIXELS);
    int64_t text = o->prompt_tok - 1;
    int64_t avail = o->budget_tok - text - o->max_new_tok;
    int h, w;
    int ret = prep_smart_resize(height, width, min_px, max_px, &h, &w, err);
    if (ret)
        return ret;
    int downscaled = 0;
    /* Lower max_pixels until the pads fit; smart_resize keeps h*w under it except
     * where its 32-px floor per side binds, hence the loop. */
    if ((int64_t)h * w / 1024 > avail) {
        downscaled = 1;
        for (int64_t allow = avail; allow >= 1; allow--) {
            int64_t mx = allow * 1024;
            ret = prep_smart_resize(height, width, min_px < mx ? min_px : mx, mx, &h, &w, err);
            if (ret)
                return ret;
            if ((int64_t)h * w / 1024 <= avail)
                break;
        }
    }
    if (avail < 1 || (int64_t)h * w / 1024 > avail)
        return err_set(err, VLQ_EINPUT,
                       "budget %lld too small: prompt %lld + max_new_tokens %lld leave %lld "
                       "tokens, the smallest image grid needs %lld",
                       (long long)o->budget_tok, (long long)o->prompt_tok,
                       (long long)o->max_new_tok, (long long)avail, (long long)h * w / 1024);
    *u = (PlanUnit){.page = page, .start_s = -1, .end_s = -1, .frames = 1,
                    .src_width = width, .src_height = height, .width = w, .height = h,
                    .grid_t = 1, .grid_h = h / PREP_PATCH, .grid_w = w / PREP_PATCH,
                    .visual_tok = (int64_t)h * w / 1024, .prompt_tok = text,
                    .max_new_tok = o->max_new_tok, .downscaled = downscaled};
    return 0;
}

/* Tokens of the timestamps of one segment's groups, as the processor prints them. */
static int64_t plan_ts_tokens(const PlanOptions *o, const int64_t *idx, int n, double start_s,
                              double fps_v)
{
    int64_t total = 0;
    for (int k = 0; k < n; k += PREP_TEMPORAL) {
        int64_t a = idx[k], b = idx[k + 1 < n ? k + 1 : n - 1];
        double t = start_s + (a / fps_v + b / fps_v) / 2;
        char text[64];
        snprintf(text, sizeof text, "<%.1f seconds>", t);
        total += o->count_text ? o->count_text(o->count_ctx, text) : (int64_t)strlen(text);
    }
    return total;
}

/* Plan one segment [from, to); *fits = 0 when even min_group_tok per group is over. */
static int plan_segment(const PlanOptions *o, const MediaInfo *info, double from, double to,
                        PlanUnit *u, int *fits, char *err)
{
    int64_t min_px = plan_or(o->video_min_px, PREP_VIDEO_MIN_PIXELS);
    int64_t max_px = plan_or(o->video_max_px, PREP_VIDEO_MAX_PIXELS);
    int64_t min_g = plan_or(o->min_group_tok, PLAN_DEFAULT_MIN_GROUP_TOK);
    int64_t total = media_range_frames(info->total_frames, info->duration_s, info->video_fps,
                                       from, to >= info->duration_s ? 0 : to);
    int n = media_sample_indices(total, info->video_fps, &o->media, NULL);
    if (n < PREP_TEMPORAL)
        return err_set(err, VLQ_EINPUT, "%.3f-%.3f s holds %d frame(s), a video needs %d",
                       from, to, n, PREP_TEMPORAL);
    int64_t *idx = xmalloc(sizeof *idx * (size_t)n);
    media_sample_indices(total, info->video_fps, &o->media, idx);
    int64_t groups = (n + PREP_TEMPORAL - 1) / PREP_TEMPORAL;
    int64_t text = o->prompt_tok - 3 + 2 * groups + plan_ts_tokens(o, idx, n, from, info->video_fps);
    free(idx);
    int64_t avail = o->budget_tok - text - o->max_new_tok;
    int h, w;
    int ret = prep_smart_resize_video(n, info->height, info->width, min_px, max_px, &h, &w, err);
    if (ret)
        return ret;
    int downscaled = 0;
    int64_t per_group = avail / groups;
    for (int64_t g = per_group; groups * h * w / 1024 > avail && g >= min_g; g--) {
        int64_t mx = (int64_t)n * g * 1024;
        ret = prep_smart_resize_video(n, info->height, info->width, min_px < mx ? min_px : mx,
                                      mx, &h, &w, err);
        if (ret)
            return ret;
        downscaled = 1;
    }
    *fits = groups * h * w / 1024 <= avail && (int64_t)h * w / 1024 >= (downscaled ? min_g : 0);
    *u = (PlanUnit){.page = 0, .start_s = from, .end_s = to, .frames = n,
                    .src_width = info->width, .src_height = info->height, .width = w,
                    .height = h, .grid_t = (int)groups, .grid_h = h / PREP_PATCH,
                    .grid_w = w / PREP_PATCH, .visual_tok = groups * h * w / 1024,
                    .prompt_tok = text, .max_new_tok = o->max_new_tok, .downscaled = downscaled};
    return 0;
}

/* plan_video: see plan.h. Tries 1, 2, 3... equal segments until every one fits. */
int plan_video(const PlanOptions *o, const MediaInfo *info, PlanUnit **units, int *n, char *err)
{
    *units = NULL;
    *n = 0;
    double from = o->media.from_s > 0 ? o->media.from_s : 0;
    double to = o->media.to_s > 0 && o->media.to_s < info->duration_s ? o->media.to_s
                                                                        : info->duration_s;
    if (to <= from)
        return err_set(err, VLQ_EINPUT, "empty range %.3f-%.3f s (duration %.3f s)", from, to,
                       info->duration_s);
    double fps = o->media.fps > 0 ? o->media.fps : MEDIA_DEFAULT_FPS;
    /* Enough segments that each holds at least 2 samples; beyond that nothing helps. */
    int max_seg = (int)((to - from) * fps / PREP_TEMPORAL);
    max_seg = max_seg < 1 ? 1 : max_seg;
    PlanUnit *u = NULL;
    for (int s = 1; s <= max_seg; s++) {
        u = xrealloc(u, sizeof *u * (size_t)s);
        int all = 1;
        for (int i = 0; i < s && all; i++) {
            double a = from + (to - from) * i / s;
            double b = i == s - 1 ? to : from + (to - from) * (i + 1) / s;
            int fits = 0;
            int ret = plan_segment(o, info, a, b, &u[i], &fits, err);
            if (ret) {
                free(u);
                return ret;
            }
            all = fits;
        }
        if (all) {
            *units = u;
            *n = s;
            return 0;
        }
    }
    free(u);
    return err_set(err, VLQ_EINPUT,
                   "budget %lld too small for any segment: prompt %lld + max_new_tokens %lld "
                   "leave no room for %d tokens per frame pair",
                   (long long)o->budget_tok, (long long)o->prompt_tok, (long long)o->max_new_tok,
                   (int)plan_or(o->min_group_tok, PLAN_DEFAULT_MIN_GROUP_TOK));
}

/* plan_file: see plan.h. */
int plan_file(const char *path, const PlanOptions *o, PlanUnit **units, int *n, char *err)
{
    *units = NULL;
    *n = 0;
    MediaInfo info;
    int ret = media_probe(path, &o->media, &info, err);
    if (ret)
        return ret;
    if (info.kind == MEDIA_VIDEO) {
        ret = plan_video(o, &info, units, n, err);
        if (ret)
            err_prefix(err, "%s", path);
        return ret;
    }
    int *sizes, np;
    ret = media_page_sizes(path, &o->media, &sizes, &np, err);
    if (ret)
        return ret;
    PlanUnit *u = xcalloc((size_t)np, sizeof *u);
    int first = o->media.first_page > 0 ? o->media.first_page : 1;
    for (int i = 0; i < np && !ret; i++) {
        ret = plan_page(o, sizes[2 * i], sizes[2 * i + 1], first + i, &u[i], err);
        if (ret)
            err_prefix(err, "%s: page %d", path, first + i);
    }
    free(sizes);
    if (ret) {
        free(u);
        return ret;
    }
    *units = u;
    *n = np;
    return 0;
}
