/* prep: RGB frames to the vision encoder's input, exactly as the reference processor.
 *
 * Owns the model-grid arithmetic (smart_resize for images and for videos on the
 * T*H*W budget), the resize (torchvision's antialiased bicubic on uint8, the same
 * int16 fixed-point separable filter torch runs on CPU), rescale + normalise, the
 * temporal pairing and the patch order of Qwen2VLImageProcessorFast /
 * Qwen3VLVideoProcessor (transformers 4.57.1). It never decodes files (media does)
 * and never decides budgets (plan does). Pure computation: no library types. */
#ifndef VLQ_PREP_H
#define VLQ_PREP_H

#include <stddef.h>
#include <stdint.h>

#define PREP_PATCH 16            /* patch_size */
#define PREP_MERGE 2             /* merge_size */
#define PREP_TEMPORAL 2          /* temporal_patch_size */
#define PREP_FACTOR 32           /* patch_size * merge_size */
#define PREP_ROW (3 * PREP_TEMPORAL * PREP_PATCH * PREP_PATCH) /* 1536 values per patch */
/* Checkpoint preprocessor_config.json / video_preprocessor_config.json sizes. */
#define PREP_IMAGE_MIN_PIXELS 65536LL
#define PREP_IMAGE_MAX_PIXELS 16777216LL
#define PREP_VIDEO_MIN_PIXELS 4096LL     /* on T*H*W */
#define PREP_VIDEO_MAX_PIXELS 25165824LL /* on T*H*W */

/* smart_resize for an image: h, w to multiples of 32 with min_px <= h*w <= max_px
 * (image_processing_qwen2_vl.smart_resize, float64, Python round = half-to-even).
 * Returns 0, or VLQ_EINPUT when the aspect ratio exceeds 200 or a side is < 1. */
int prep_smart_resize(int height, int width, int64_t min_px, int64_t max_px, int *out_h,
                      int *out_w, char *err);

/* smart_resize for a video of n_frames (video_processing_qwen3_vl.smart_resize): the
 * budget is on n_frames*h*w. Returns 0, or VLQ_EINPUT when n_frames < 2, a side is
 * < 32 or the aspect ratio exceeds 200 (the reference raises there too). */
int prep_smart_resize_video(int n_frames, int height, int width, int64_t min_px, int64_t max_px,
                            int *out_h, int *out_w, char *err);

/* A resize from one size to another with precomputed filter weights, reusable for
 * every frame of a video. Opaque; prep_resizer_free releases it (NULL-safe). */
typedef struct PrepResizer PrepResizer;
PrepResizer *prep_resizer_new(int src_w, int src_h, int dst_w, int dst_h);
void prep_resizer_free(PrepResizer *r);
/* dst[dst_h][dst_w][3] = bicubic-antialias resize of src (RGB24, rows of src_stride
 * bytes). Uses the resizer's scratch row buffer: one thread at a time. Cannot fail. */
void prep_resize(PrepResizer *r, const uint8_t *src, int src_stride, uint8_t *dst);

/* Run the resize on the plain-C rows instead of the SIMD ones (1), or back (0), for
 * tests that compare them. Process-wide; set before resizing. Cannot fail. */
void prep_set_reference(int on);

/* The encoder input of one image or one video clip. Caller-owned struct. */
typedef struct {
    int grid_t, grid_h, grid_w; /* in patches: frames/2, height/16, width/16 */
    int width, height;          /* resized frame size in pixels */
    int n_frames;               /* frames added so far */
    float *pixels;              /* [grid_t*grid_h*grid_w][1536], owned */
} PrepVisual;

/* Allocate pixels for n_frames frames of width x height (multiples of 32). Returns 0,
 * or VLQ_EINPUT (bad size), VLQ_ENOMEM (allocation refused), with err set. */
int prep_visual_init(PrepVisual *v, int n_frames, int width, int height, char *err);
/* Write frame number n_frames (already resized to width x height, RGB24, rows of
 * stride bytes) rescaled, normalised ((p/255 - 0.5)/0.5, fused as torch does) and
 * scattered to the reference patch order. Cannot fail (asserts the frame count). */
void prep_visual_add(PrepVisual *v, const uint8_t *rgb, int stride);
/* Complete the temporal pairs: an odd count repeats the last frame, as the
 * reference pads T (an image becomes two identical frames). Cannot fail. */
void prep_visual_finish(PrepVisual *v);
void prep_visual_clear(PrepVisual *v);

/* Number of merged visual tokens of a grid: t*h*w/4. */
int64_t prep_visual_tokens(int grid_t, int grid_h, int grid_w);

/* Whole image: smart_resize (min/max pixels), resize, normalise, patchify into v.
 * Returns 0 or VLQ_EINPUT/VLQ_ENOMEM with err set. */
int prep_image(const uint8_t *rgb, int width, int height, int stride, int64_t min_px,
               int64_t max_px, PrepVisual *v, char *err);

#endif
