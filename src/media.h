/* media: every input file turned into RGB frames with presentation times.
 *
 * Owns FFmpeg (demux, decode, pixel conversion) and poppler (PDF pages, media_pdf.c):
 * their types, error codes and log output never leave this module (style rule 12).
 * Images come out as one frame per image (one per page for multi-page TIFF and PDF),
 * video as frames sampled at `fps` by presentation time, the way the reference
 * processor samples them (Qwen3VLVideoProcessor.sample_frames). Every frame is packed
 * RGB24, upright (rotation and EXIF orientation applied), alpha composited on white.
 * Frames are handed to a caller's callback one at a time and are borrowed for the
 * call only, so memory stays bounded by one source frame however long the video.
 * This module does not resize to the model grid or normalise: that is prep. */
#ifndef VLQ_MEDIA_H
#define VLQ_MEDIA_H

#include <stdint.h>

#define MEDIA_DEFAULT_FPS 2.0
#define MEDIA_DEFAULT_MIN_FRAMES 4         /* reference min_frames */
#define MEDIA_DEFAULT_MAX_FRAMES 768       /* reference max_frames */
#define MEDIA_DEFAULT_MAX_IMAGE_PIXELS 178956970LL /* same bound as Pillow's bomb check */
#define MEDIA_DEFAULT_PDF_DPI 144          /* see media_pdf.c: OCR wants ~12 px x-height */
#define MEDIA_DEFAULT_MAX_PAGES 10000
#define MEDIA_SEEK_GAP_S 3.0               /* seek when the next sample is this far ahead */

enum { MEDIA_IMAGE = 1, MEDIA_VIDEO = 2, MEDIA_PDF = 3 };

/* Options of one open/decode; designated initializers, zero means the default. */
typedef struct {
    double fps;               /* video sampling rate, frames/s (0: MEDIA_DEFAULT_FPS) */
    int min_frames;           /* fewest sampled frames (0: 4, as the reference) */
    int max_frames;           /* most sampled frames (0: 768, as the reference) */
    double from_s;            /* start of the video range, seconds from stream start */
    double to_s;              /* end of the range (<= 0: the end of the stream) */
    int64_t max_image_pixels; /* refuse any frame larger than this, before allocating
                               * (0: MEDIA_DEFAULT_MAX_IMAGE_PIXELS) */
    int pdf_dpi;              /* PDF render resolution (0: MEDIA_DEFAULT_PDF_DPI) */
    int first_page;           /* first page, 1-based, PDFs and TIFFs (0: 1) */
    int last_page;            /* last page inclusive (0: the last) */
    int threads;              /* decoding threads (0: FFmpeg's automatic choice) */
} MediaOptions;

/* What media_probe learns without decoding the pictures. */
typedef struct {
    int kind;              /* MEDIA_IMAGE, MEDIA_VIDEO or MEDIA_PDF */
    int width, height;     /* video: upright frame size; PDF: first page at pdf_dpi;
                            * images: the stored size, before EXIF orientation
                            * (media_page_sizes gives upright sizes) */
    int n_pages;           /* images: pages (1 unless a multi-page TIFF); PDF pages */
    double duration_s;     /* video: duration of the video stream (0 for images) */
    double video_fps;      /* video: average frame rate (24 when the file has none) */
    int64_t total_frames;  /* video: frame count (from the container or duration*fps) */
    int rotation;          /* video: clockwise rotation applied to frames: 0/90/180/270 */
    char codec[32];        /* decoder name ("h264", "png", "pdf") */
} MediaInfo;

/* One decoded picture, borrowed by the callback for the duration of the call. */
typedef struct {
    const uint8_t *rgb; /* packed RGB24, rows of `stride` bytes */
    int width, height;  /* upright size in pixels */
    int stride;         /* bytes per row (>= 3*width) */
    double pts_s;       /* presentation time in seconds from the stream start (0: image) */
    int index;          /* sample number (video) or page number, 1-based (images) */
    int64_t frame_idx;  /* video: the reference's frame index this sample stands for */
} MediaFrame;

/* Receives each frame in order; a negative VLQ_E* return stops decoding and is
 * returned by the media call (the callback writes err). */
typedef int (*MediaFrameFn)(void *ctx, const MediaFrame *frame, char *err);

/* The kind of a file from its name and first bytes. Cannot fail: unknown files are
 * MEDIA_VIDEO (FFmpeg decides). */
int media_kind(const char *path);

/* Fill info for path. Returns 0, VLQ_EINPUT (missing, empty, not media, no video
 * stream, too large), VLQ_ENOTSUP, or VLQ_EIO, with "path: reason" in err. */
int media_probe(const char *path, const MediaOptions *opt, MediaInfo *info, char *err);

/* Decode every page of an image or PDF (within opt's page range) and pass each one to
 * fn. Returns 0 or a VLQ_E* code with "path: page N: reason" in err. */
int media_decode_pages(const char *path, const MediaOptions *opt, MediaFrameFn fn, void *ctx,
                       char *err);

/* The reference's sampling plan for a video range: how many frames and which
 * indices (rint(linspace(0, total-1, n))) of the range's frames. idx (may be NULL) gets
 * n values; returns n (>= 1), or 0 when the range holds no frame. Cannot fail. */
int media_sample_indices(int64_t total_frames, double video_fps, const MediaOptions *opt,
                         int64_t *idx);

/* Frames in [from_s, to_s) of a video (to_s <= 0: the end): the whole stream's count
 * when the range is the whole stream, else round((to - from) * video_fps), at least 1.
 * media_decode_video and the planner both use it, so they agree. Cannot fail. */
int64_t media_range_frames(int64_t total_frames, double duration_s, double video_fps,
                           double from_s, double to_s);

/* Upright sizes of every page of an image, TIFF or PDF within opt's page range:
 * *sizes (caller frees) gets 2 ints (width, height) per page, *n the page count. Images
 * are decoded (so EXIF orientation counts); PDF pages are measured, not rendered.
 * Returns 0 or a VLQ_E* code with "path: reason" in err. */
int media_page_sizes(const char *path, const MediaOptions *opt, int **sizes, int *n, char *err);

/* Decode a video, sampled per media_sample_indices over [from_s, to_s], and pass each
 * sampled frame to fn in time order. A truncated file yields the frames that are there
 * and logs a warning saying how many samples were lost; *n_lost (may be NULL) gets that
 * count. Returns 0 or a VLQ_E* code with "path: reason" in err. */
int media_decode_video(const char *path, const MediaOptions *opt, MediaFrameFn fn, void *ctx,
                       int *n_lost, char *err);

#endif
