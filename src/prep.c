/* prep: smart resize, antialiased bicubic resize, normalise and patchify (prep.h).
 *
 * Mirrors transformers 4.57.1: qwen2_vl/image_processing_qwen2_vl.py `smart_resize`,
 * qwen2_vl/image_processing_qwen2_vl_fast.py `Qwen2VLImageProcessorFast._preprocess`,
 * qwen3_vl/video_processing_qwen3_vl.py `smart_resize` and `_preprocess`.
 *
 * Resize: the fast processors call torchvision.transforms.v2.functional.resize with
 * BICUBIC and antialias=True on uint8 tensors, which on CPU runs torch's native uint8
 * path (aten UpSampleKernel, the Pillow-SIMD algorithm): per axis, Pillow's bicubic
 * (a = -0.5) weights widened by the downscale factor, normalised in double, then
 * rounded to int16 with the largest precision that keeps the largest weight below
 * 2^15; horizontal pass first into a uint8 buffer, then vertical; each output is
 * (sum + 2^(p-1)) >> p clamped to 0..255. A pass whose size does not change is
 * skipped, so an input already at the target size is copied bit for bit.
 * Normalise: torch fuses rescale and normalise into (p - 127.5) / 127.5 in float32.
 * Speed: both passes have an SSE2 path (x86-64 baseline; Pillow-SIMD's pmaddwd on
 * pairs of taps) doing the same integer arithmetic as the plain-C rows; test_prep
 * checks they agree byte for byte.
 * Global: prep_force_ref (tests only: run the plain-C rows), set by prep_set_reference. */
#include "prep.h"

#include "err.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* ---- smart resize ---- */

static int prep_check_aspect(int height, int width, char *err)
{
    if (height < 1 || width < 1)
        return err_set(err, VLQ_EINPUT, "image size %dx%d is empty", width, height);
    double ar = (double)(height > width ? height : width) / (height > width ? width : height);
    if (ar > 200)
        return err_set(err, VLQ_EINPUT, "aspect ratio %.1f of %dx%d exceeds 200", ar, width,
                       height);
    return 0;
}

/* prep_smart_resize: see prep.h. */
int prep_smart_resize(int height, int width, int64_t min_px, int64_t max_px, int *out_h,
                      int *out_w, char *err)
{
    int ret = prep_check_aspect(height, width, err);
    if (ret)
        return ret;
    const double f = PREP_FACTOR;
    int64_t h = (int64_t)rint(height / f) * PREP_FACTOR;
    int64_t w = (int64_t)rint(width / f) * PREP_FACTOR;
    if (h * w > max_px) {
        double beta = sqrt((double)height * width / (double)max_px);
        h = (int64_t)floor(height / beta / f) * PREP_FACTOR;
        w = (int64_t)floor(width / beta / f) * PREP_FACTOR;
        h = h < PREP_FACTOR ? PREP_FACTOR : h;
        w = w < PREP_FACTOR ? PREP_FACTOR : w;
    } else if (h * w < min_px) {
        double beta = sqrt((double)min_px / ((double)height * width));
        h = (int64_t)ceil(height * beta / f) * PREP_FACTOR;
        w = (int64_t)ceil(width * beta / f) * PREP_FACTOR;
    }
    *out_h = (int)h;
    *out_w = (int)w;
    return 0;
}

/* prep_smart_resize_video: see prep.h. */
int prep_smart_resize_video(int n_frames, int height, int width, int64_t min_px, int64_t max_px,
                            int *out_h, int *out_w, char *err)
{
    if (n_frames < PREP_TEMPORAL)
        return err_set(err, VLQ_EINPUT, "%d frames: a video needs at least %d", n_frames,
                       PREP_TEMPORAL);
    if (height < PREP_FACTOR || width < PREP_FACTOR)
        return err_set(err, VLQ_EINPUT, "video size %dx%d: both sides must be at least %d",
                       width, height, PREP_FACTOR);
    int ret = prep_check_aspect(height, width, err);
    if (ret)
        return ret;
    const double f = PREP_FACTOR;
    int64_t h = (int64_t)rint(height / f) * PREP_FACTOR;
    int64_t w = (int64_t)rint(width / f) * PREP_FACTOR;
    int64_t t = (int64_t)rint(n_frames / (double)PREP_TEMPORAL) * PREP_TEMPORAL;
    if (t * h * w > max_px) {
        double beta = sqrt((double)n_frames * height * width / (double)max_px);
        h = (int64_t)floor(height / beta / f) * PREP_FACTOR;
        w = (int64_t)floor(width / beta / f) * PREP_FACTOR;
        h = h < PREP_FACTOR ? PREP_FACTOR : h;
        w = w < PREP_FACTOR ? PREP_FACTOR : w;
    } else if (t * h * w < min_px) {
        double beta = sqrt((double)min_px / ((double)n_frames * height * width));
        h = (int64_t)ceil(height * beta / f) * PREP_FACTOR;
        w = (int64_t)ceil(width * beta / f) * PREP_FACTOR;
    }
    *out_h = (int)h;
    *out_w = (int)w;
    return 0;
}

/* ---- resize ---- */

/* The weights of one axis: output i reads in[start[i] .. start[i]+size[i]). */
typedef struct {
    int in, out;
    int taps;          /* stride of w per output */
    int *start, *size;
    int16_t *w;
    int precision;     /* fixed-point bits */
} PrepAxis;

struct PrepResizer {
    int src_w, src_h, dst_w, dst_h;
    PrepAxis x, y;
    uint8_t *tmp;      /* horizontal pass output: src_h rows of dst_w pixels */
};

static double prep_cubic(double x)
{
    const double a = -0.5;
    x = fabs(x);
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0)
        return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
    return 0.0;
}

static void prep_axis_init(PrepAxis *ax, int in, int out)
{
    memset(ax, 0, sizeof *ax);
    ax->in = in;
    ax->out = out;
    if (in == out)
        return;
    double scale = (double)in / out;
    double support = scale >= 1.0 ? 2.0 * scale : 2.0;
    double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
    ax->taps = (int)ceil(support) * 2 + 1;
    ax->start = xmalloc(sizeof(int) * out);
    ax->size = xmalloc(sizeof(int) * out);
    double *wd = xcalloc((size_t)out * ax->taps, sizeof(double));
    double wmax = 0;
    for (int i = 0; i < out; i++) {
        double center = scale * (i + 0.5);
        int64_t xmin = (int64_t)(center - support + 0.5);
        xmin = xmin < 0 ? 0 : xmin;
        int64_t xmax = (int64_t)(center + support + 0.5);
        xmax = xmax > in ? in : xmax;
        int n = (int)(xmax - xmin);
        n = n > ax->taps ? ax->taps : n;
        double total = 0;
        double *w = wd + (size_t)i * ax->taps;
        for (int j = 0; j < n; j++) {
            w[j] = prep_cubic((j + xmin - center + 0.5) * invscale);
            total += w[j];
        }
        for (int j = 0; j < n; j++) {
            w[j] = total != 0.0 ? w[j] / total : 0.0;
            wmax = w[j] > wmax ? w[j] : wmax;
        }
        ax->start[i] = (int)xmin;
        ax->size[i] = n;
    }
    int p;
    for (p = 0; p < 22; p++)
        if ((int)(0.5 + wmax * (1 << (p + 1))) >= (1 << 15))
            break;
    ax->precision = p;
    ax->w = xmalloc(sizeof(int16_t) * (size_t)out * ax->taps);
    for (size_t k = 0; k < (size_t)out * ax->taps; k++) {
        double v = wd[k] * (1 << p);
        ax->w[k] = (int16_t)(v < 0 ? -0.5 + v : 0.5 + v);
    }
    free(wd);
}

static void prep_axis_clear(PrepAxis *ax)
{
    free(ax->start);
    free(ax->size);
    free(ax->w);
}

static inline uint8_t prep_clip(int32_t v, int p)
{
    v >>= p;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* prep_resizer_new: precompute both axes. Small fixed allocations: aborts on OOM. */
PrepResizer *prep_resizer_new(int src_w, int src_h, int dst_w, int dst_h)
{
    PrepResizer *r = xcalloc(1, sizeof *r);
    r->src_w = src_w;
    r->src_h = src_h;
    r->dst_w = dst_w;
    r->dst_h = dst_h;
    prep_axis_init(&r->x, src_w, dst_w);
    prep_axis_init(&r->y, src_h, dst_h);
    if (src_w != dst_w && src_h != dst_h)
        r->tmp = xmalloc((size_t)src_h * dst_w * 3);
    return r;
}

/* prep_resizer_free: NULL-safe. */
void prep_resizer_free(PrepResizer *r)
{
    if (!r)
        return;
    prep_axis_clear(&r->x);
    prep_axis_clear(&r->y);
    free(r->tmp);
    free(r);
}

#ifdef __SSE2__
/* One row of the horizontal pass with SSE2 (baseline on x86-64), the Pillow-SIMD way:
 * the row widened to 4 channels, two taps per pmaddwd. Integer arithmetic identical to
 * prep_row_x_ref (exact int32 sums, arithmetic shift, saturation = clamp to 0..255);
 * test_prep compares the two. rgbx holds 4*ax->in bytes. */
static void prep_row_x_sse2(const PrepAxis *ax, const uint8_t *src, uint8_t *rgbx, uint8_t *dst)
{
    for (int x = 0; x < ax->in; x++) {
        rgbx[4 * x] = src[3 * x];
        rgbx[4 * x + 1] = src[3 * x + 1];
        rgbx[4 * x + 2] = src[3 * x + 2];
        rgbx[4 * x + 3] = 0;
    }
    const __m128i zero = _mm_setzero_si128();
    const __m128i half = _mm_set1_epi32(ax->precision > 0 ? 1 << (ax->precision - 1) : 0);
    for (int i = 0; i < ax->out; i++) {
        const int16_t *w = ax->w + (size_t)i * ax->taps;
        const uint8_t *s = rgbx + (size_t)ax->start[i] * 4;
        int n = ax->size[i], j = 0;
        __m128i acc = half;
        for (; j + 1 < n; j += 2) {
            int64_t two;
            memcpy(&two, s + 4 * j, 8);
            __m128i px = _mm_unpacklo_epi8(_mm_cvtsi64_si128(two), zero); /* p0 | p1, 16-bit */
            __m128i p = _mm_unpacklo_epi16(px, _mm_srli_si128(px, 8));    /* r0 r1 g0 g1 ... */
            uint32_t pair = (uint16_t)w[j] | ((uint32_t)(uint16_t)w[j + 1] << 16);
            __m128i ww = _mm_set1_epi32((int32_t)pair);
            acc = _mm_add_epi32(acc, _mm_madd_epi16(p, ww));
        }
        if (j < n) {
            int32_t one;
            memcpy(&one, s + 4 * j, 4);
            __m128i p = _mm_unpacklo_epi16(_mm_unpacklo_epi8(_mm_cvtsi32_si128(one), zero), zero);
            acc = _mm_add_epi32(acc, _mm_madd_epi16(p, _mm_set1_epi32((uint16_t)w[j])));
        }
        acc = _mm_srai_epi32(acc, ax->precision);
        acc = _mm_packus_epi16(_mm_packs_epi32(acc, acc), zero);
        uint32_t v = (uint32_t)_mm_cvtsi128_si32(acc);
        dst[3 * i] = (uint8_t)v;
        dst[3 * i + 1] = (uint8_t)(v >> 8);
        dst[3 * i + 2] = (uint8_t)(v >> 16);
    }
}
#endif

/* One row of the horizontal pass, plain C: the reference the SIMD row is checked against. */
static void prep_row_x_ref(const PrepAxis *ax, const uint8_t *src, uint8_t *dst)
{
    const int32_t half = ax->precision > 0 ? 1 << (ax->precision - 1) : 0;
    for (int i = 0; i < ax->out; i++) {
        const int16_t *w = ax->w + (size_t)i * ax->taps;
        const uint8_t *s = src + (size_t)ax->start[i] * 3;
        int32_t r = half, g = half, b = half;
        for (int j = 0; j < ax->size[i]; j++) {
            r += s[3 * j] * w[j];
            g += s[3 * j + 1] * w[j];
            b += s[3 * j + 2] * w[j];
        }
        dst[3 * i] = prep_clip(r, ax->precision);
        dst[3 * i + 1] = prep_clip(g, ax->precision);
        dst[3 * i + 2] = prep_clip(b, ax->precision);
    }
}

/* Use the plain-C rows everywhere (tests compare both paths). */
static int prep_force_ref;
/* prep_set_reference: see prep.h. */
void prep_set_reference(int on) { prep_force_ref = on; }

/* Horizontal pass: rows of in (stride in_stride) to rows of out (dst_w*3). Single
 * threaded on purpose: the decoder's threads already use the cores while frames are
 * resized, and parallel rows measured slower on a loaded machine. */
static void prep_pass_x(const PrepAxis *ax, const uint8_t *in, int in_stride, int rows,
                        uint8_t *out)
{
#ifdef __SSE2__
    uint8_t *rgbx = prep_force_ref ? NULL : xmalloc((size_t)ax->in * 4 + 8);
#endif
    for (int y = 0; y < rows; y++) {
        const uint8_t *src = in + (size_t)y * in_stride;
        uint8_t *dst = out + (size_t)y * ax->out * 3;
#ifdef __SSE2__
        if (rgbx) {
            prep_row_x_sse2(ax, src, rgbx, dst);
            continue;
        }
#endif
        prep_row_x_ref(ax, src, dst);
    }
#ifdef __SSE2__
    free(rgbx);
#endif
}

/* Output row i of the vertical pass over values [k0, n) of each row, plain C. */
static void prep_row_y_ref(const PrepAxis *ax, int i, const uint8_t *in, int in_stride, int k0,
                           int n, int32_t *acc, uint8_t *d)
{
    const int32_t half = ax->precision > 0 ? 1 << (ax->precision - 1) : 0;
    const int16_t *w = ax->w + (size_t)i * ax->taps;
    for (int k = k0; k < n; k++)
        acc[k] = half;
    for (int j = 0; j < ax->size[i]; j++) {
        const uint8_t *s = in + (size_t)(ax->start[i] + j) * in_stride;
        int32_t wj = w[j];
        for (int k = k0; k < n; k++)
            acc[k] += s[k] * wj;
    }
    for (int k = k0; k < n; k++)
        d[k] = prep_clip(acc[k], ax->precision);
}

#ifdef __SSE2__
/* Output row i of the vertical pass, 8 values at a time, two source rows per pmaddwd;
 * the last n % 8 values go through prep_row_y_ref. Same integer arithmetic. */
static void prep_row_y_sse2(const PrepAxis *ax, int i, const uint8_t *in, int in_stride, int n,
                            int32_t *acc, uint8_t *d)
{
    const __m128i zero = _mm_setzero_si128();
    const __m128i half = _mm_set1_epi32(ax->precision > 0 ? 1 << (ax->precision - 1) : 0);
    const int16_t *w = ax->w + (size_t)i * ax->taps;
    const uint8_t *base = in + (size_t)ax->start[i] * in_stride;
    int cnt = ax->size[i], k = 0;
    for (; k + 8 <= n; k += 8) {
        __m128i lo = half, hi = half;
        int j = 0;
        for (; j + 1 < cnt; j += 2) {
            const uint8_t *r0 = base + (size_t)j * in_stride + k;
            __m128i a = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)r0), zero);
            __m128i b = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)(r0 + in_stride)), zero);
            uint32_t pair = (uint16_t)w[j] | ((uint32_t)(uint16_t)w[j + 1] << 16);
            __m128i ww = _mm_set1_epi32((int32_t)pair);
            lo = _mm_add_epi32(lo, _mm_madd_epi16(_mm_unpacklo_epi16(a, b), ww));
            hi = _mm_add_epi32(hi, _mm_madd_epi16(_mm_unpackhi_epi16(a, b), ww));
        }
        if (j < cnt) {
            const uint8_t *r0 = base + (size_t)j * in_stride + k;
            __m128i a = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)r0), zero);
            __m128i ww = _mm_set1_epi32((uint16_t)w[j]);
            lo = _mm_add_epi32(lo, _mm_madd_epi16(_mm_unpacklo_epi16(a, zero), ww));
            hi = _mm_add_epi32(hi, _mm_madd_epi16(_mm_unpackhi_epi16(a, zero), ww));
        }
        lo = _mm_srai_epi32(lo, ax->precision);
        hi = _mm_srai_epi32(hi, ax->precision);
        _mm_storel_epi64((__m128i *)(d + k), _mm_packus_epi16(_mm_packs_epi32(lo, hi), zero));
    }
    if (k < n)
        prep_row_y_ref(ax, i, in, in_stride, k, n, acc, d);
}
#endif

/* Vertical pass: in (rows of in_stride bytes, width px pixels) to out (out rows). */
static void prep_pass_y(const PrepAxis *ax, const uint8_t *in, int in_stride, int px,
                        uint8_t *out)
{
    int n = px * 3;
    int32_t *acc = xmalloc(sizeof(int32_t) * n);
    for (int i = 0; i < ax->out; i++) {
        uint8_t *d = out + (size_t)i * n;
#ifdef __SSE2__
        if (!prep_force_ref) {
            prep_row_y_sse2(ax, i, in, in_stride, n, acc, d);
            continue;
        }
#endif
        prep_row_y_ref(ax, i, in, in_stride, 0, n, acc, d);
    }
    free(acc);
}

/* prep_resize: see prep.h. */
void prep_resize(PrepResizer *r, const uint8_t *src, int src_stride, uint8_t *dst)
{
    int need_x = r->src_w != r->dst_w, need_y = r->src_h != r->dst_h;
    if (need_x && need_y) {
        prep_pass_x(&r->x, src, src_stride, r->src_h, r->tmp);
        prep_pass_y(&r->y, r->tmp, r->dst_w * 3, r->dst_w, dst);
    } else if (need_x) {
        prep_pass_x(&r->x, src, src_stride, r->src_h, dst);
    } else if (need_y) {
        prep_pass_y(&r->y, src, src_stride, r->src_w, dst);
    } else {
        for (int y = 0; y < r->src_h; y++)
            memcpy(dst + (size_t)y * r->dst_w * 3, src + (size_t)y * src_stride,
                   (size_t)r->dst_w * 3);
    }
}

/* ---- normalise and patchify ---- */

/* prep_visual_tokens: merged tokens of a grid. Cannot fail. */
int64_t prep_visual_tokens(int grid_t, int grid_h, int grid_w)
{
    return (int64_t)grid_t * grid_h * grid_w / (PREP_MERGE * PREP_MERGE);
}

/* prep_visual_init: see prep.h. The pixel array is sized by input: checked, not x*. */
int prep_visual_init(PrepVisual *v, int n_frames, int width, int height, char *err)
{
    memset(v, 0, sizeof *v);
    if (n_frames < 1 || width < PREP_FACTOR || height < PREP_FACTOR || width % PREP_FACTOR ||
        height % PREP_FACTOR)
        return err_set(err, VLQ_EINPUT, "bad visual shape: %d frames of %dx%d", n_frames, width,
                       height);
    v->grid_t = (n_frames + PREP_TEMPORAL - 1) / PREP_TEMPORAL;
    v->grid_h = height / PREP_PATCH;
    v->grid_w = width / PREP_PATCH;
    v->width = width;
    v->height = height;
    size_t n = (size_t)v->grid_t * v->grid_h * v->grid_w * PREP_ROW;
    v->pixels = malloc(n * sizeof(float));
    if (!v->pixels)
        return err_set(err, VLQ_ENOMEM, "out of memory for %zu visual values", n);
    return 0;
}

/* The row of patch (py, px) of temporal group t in the reference order: time,
 * merge-block row, merge-block column, row in block, column in block. */
static size_t prep_row(const PrepVisual *v, int t, int py, int px)
{
    int bw = v->grid_w / PREP_MERGE;
    size_t block = ((size_t)t * (v->grid_h / PREP_MERGE) + py / PREP_MERGE) * bw + px / PREP_MERGE;
    return block * PREP_MERGE * PREP_MERGE + (py % PREP_MERGE) * PREP_MERGE + px % PREP_MERGE;
}

/* Scatter frame f (RGB24) into temporal slot tt of group t; columns are ordered
 * channel, temporal slot, y, x. */
static void prep_scatter(PrepVisual *v, int t, int tt, const uint8_t *rgb, int stride)
{
    float lut[256];
    for (int i = 0; i < 256; i++)
        lut[i] = ((float)i - 127.5f) / 127.5f;
    for (int y = 0; y < v->height; y++) {
        const uint8_t *row = rgb + (size_t)y * stride;
        int py = y / PREP_PATCH, iy = y % PREP_PATCH;
        for (int px = 0; px < v->grid_w; px++) {
            float *dst = v->pixels + prep_row(v, t, py, px) * PREP_ROW;
            const uint8_t *s = row + (size_t)px * PREP_PATCH * 3;
            for (int c = 0; c < 3; c++) {
                float *d = dst + ((size_t)c * PREP_TEMPORAL + tt) * PREP_PATCH * PREP_PATCH +
                           iy * PREP_PATCH;
                for (int ix = 0; ix < PREP_PATCH; ix++)
                    d[ix] = lut[s[3 * ix + c]];
            }
        }
    }
}

/* prep_visual_add: see prep.h; the frame count is an invariant (VLQ_ASSERT). */
void prep_visual_add(PrepVisual *v, const uint8_t *rgb, int stride)
{
    VLQ_ASSERT(v->n_frames < v->grid_t * PREP_TEMPORAL);
    prep_scatter(v, v->n_frames / PREP_TEMPORAL, v->n_frames % PREP_TEMPORAL, rgb, stride);
    v->n_frames++;
}

/* prep_visual_finish: copy the last frame's slot into the remaining slots of its
 * group, as the reference repeats the last frame. Cannot fail. */
void prep_visual_finish(PrepVisual *v)
{
    if (v->n_frames == 0)
        return;
    int t = (v->n_frames - 1) / PREP_TEMPORAL, src = (v->n_frames - 1) % PREP_TEMPORAL;
    size_t rows = (size_t)v->grid_h * v->grid_w, slot = PREP_PATCH * PREP_PATCH;
    for (int tt = src + 1; tt < PREP_TEMPORAL; tt++) {
        for (size_t r = 0; r < rows; r++) {
            float *row = v->pixels + ((size_t)t * rows + r) * PREP_ROW;
            for (int c = 0; c < 3; c++)
                memcpy(row + ((size_t)c * PREP_TEMPORAL + tt) * slot,
                       row + ((size_t)c * PREP_TEMPORAL + src) * slot, slot * sizeof(float));
        }
        v->n_frames++;
    }
}

/* prep_visual_clear: release the pixels, reset the struct. NULL-safe. */
void prep_visual_clear(PrepVisual *v)
{
    if (!v)
        return;
    free(v->pixels);
    memset(v, 0, sizeof *v);
}

/* prep_image: see prep.h. */
int prep_image(const uint8_t *rgb, int width, int height, int stride, int64_t min_px,
               int64_t max_px, PrepVisual *v, char *err)
{
    int h, w;
    int ret = prep_smart_resize(height, width, min_px, max_px, &h, &w, err);
    if (ret)
        return ret;
    ret = prep_visual_init(v, 1, w, h, err);
    if (ret)
        return ret;
    uint8_t *tmp = malloc((size_t)w * h * 3);
    if (!tmp) {
        prep_visual_clear(v);
        return err_set(err, VLQ_ENOMEM, "out of memory for a %dx%d image", w, h);
    }
    PrepResizer *r = prep_resizer_new(width, height, w, h);
    prep_resize(r, rgb, stride, tmp);
    prep_resizer_free(r);
    prep_visual_add(v, tmp, w * 3);
    prep_visual_finish(v);
    free(tmp);
    return 0;
}
