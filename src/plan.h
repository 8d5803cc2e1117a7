/* plan: the budget planner. For each input file it chooses the resized resolution and
 * the number of sampled frames so that prompt + visual tokens + max_new_tokens fit the
 * job's context budget, and splits a video that cannot fit into consecutive segments,
 * each with its time range. A page too large for the budget is downscaled (never
 * truncated); the reference's own choice is kept whenever it fits.
 *
 * It reads sizes through media_probe and the grid arithmetic of prep; planning never
 * decodes pictures (plan_load, in plan_load.c, then decodes one planned unit into the
 * encoder's input, joining media and prep), and nothing here tokenises: the prompt's token count is an input
 * (computed by the caller with tok), and the timestamp texts of video groups are
 * counted by an optional caller function, else bounded by their byte length (a
 * byte-level BPE token covers at least one byte, so the bound always holds). */
#ifndef VLQ_PLAN_H
#define VLQ_PLAN_H

#include "media.h"
#include "prep.h"

#include <stdint.h>

#define PLAN_DEFAULT_MIN_GROUP_TOK 64 /* fewest visual tokens per 2-frame group (~256x256) */

/* Counts the tokens of a plain text (a timestamp such as "<12.5 seconds>"). */
typedef int (*PlanCountFn)(void *ctx, const char *text);

typedef struct {
    int64_t budget_tok;      /* the job's context budget, tokens */
    int64_t prompt_tok;      /* the chat prompt with ONE vision placeholder block
                              * (<|vision_start|><|image_pad|> or <|video_pad|><|vision_end|>) */
    int64_t max_new_tok;     /* tokens reserved for the answer */
    int64_t image_min_px;    /* 0: PREP_IMAGE_MIN_PIXELS */
    int64_t image_max_px;    /* 0: PREP_IMAGE_MAX_PIXELS */
    int64_t video_min_px;    /* on T*H*W; 0: PREP_VIDEO_MIN_PIXELS */
    int64_t video_max_px;    /* on T*H*W; 0: PREP_VIDEO_MAX_PIXELS */
    int min_group_tok;       /* 0: PLAN_DEFAULT_MIN_GROUP_TOK; below it a video is split */
    PlanCountFn count_text;  /* timestamp token counter, or NULL for the byte bound */
    void *count_ctx;
    MediaOptions media;      /* fps, min/max frames, page range, pdf_dpi, pixel limit */
} PlanOptions;

/* One unit of work: a page (image or PDF page) or a video segment. */
typedef struct {
    int page;              /* 1-based page; 0 for a video segment */
    double start_s, end_s; /* video: the segment's range from the stream start; -1 for pages */
    int frames;            /* sampled frames (1 for a page) */
    int src_width, src_height; /* upright size before resizing */
    int width, height;     /* resized size (multiples of 32) */
    int grid_t, grid_h, grid_w; /* in patches */
    int64_t visual_tok;    /* <|image_pad|>/<|video_pad|> tokens */
    int64_t prompt_tok;    /* every other token of the expanded prompt */
    int64_t max_new_tok;   /* reserved for the answer */
    int downscaled;        /* 1 when the budget forced a smaller size than the reference's */
} PlanUnit;

/* Plan one page of width x height. Returns 0, or VLQ_EINPUT when even the smallest
 * grid cannot fit the budget (err says by how much). */
int plan_page(const PlanOptions *o, int width, int height, int page, PlanUnit *u, char *err);

/* Plan a video (info from media_probe) as one or more segments: *units (caller frees)
 * gets *n units. Returns 0 or VLQ_EINPUT with err set. */
int plan_video(const PlanOptions *o, const MediaInfo *info, PlanUnit **units, int *n,
               char *err);

/* Probe path and plan it: one unit per page (in the page range) or per video segment.
 * Returns 0 or a VLQ_E* code with "path: reason" in err. */
int plan_file(const char *path, const PlanOptions *o, PlanUnit **units, int *n, char *err);

/* Decode unit u of path (planned by plan_file with the same o) into v (caller clears):
 * its frames resized to u->width x u->height, normalised and patchified, grid as
 * planned. times_s (may be NULL, else u->grid_t values) gets each temporal group's time
 * in seconds from the stream start, as Qwen3VLProcessor averages a pair (0 for a page).
 * A truncated video gives fewer groups (v->grid_t says how many, a warning is logged).
 * Returns 0 or a VLQ_E* code with "path: reason" in err. */
int plan_load(const char *path, const PlanOptions *o, const PlanUnit *u, PrepVisual *v,
              double *times_s, char *err);

#endif
