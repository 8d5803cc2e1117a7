/* media_pdf: PDF pages rendered to RGB frames with poppler-glib and cairo (media.h).
 *
 * Each page is rendered at opt->pdf_dpi onto a white cairo RGB24 image surface, then
 * repacked from cairo's native-endian xRGB words to RGB24. The page's pixel size is
 * checked against max_image_pixels before the surface is created.
 *
 * Default DPI (MEDIA_DEFAULT_PDF_DPI = 144, i.e. 2x PDF's 72 units per inch): a letter
 * page becomes 1224x1584 px, about 1,900 visual tokens of 32x32 px, so a page, its
 * prompt and a few thousand output tokens fit the default OCR budget of 8192 without
 * downscaling; 10 pt body text gets an x-height of about 10 px, legible to the vision
 * encoder, where 72-100 DPI blurs small print and 300 DPI (8.4 Mpx, ~8,200 tokens)
 * would have to be downscaled by the planner anyway. Configurable: [media] pdf_dpi.
 * poppler errors (GError) are translated here; poppler types never leave this file. */
#include "err.h"
#include "media.h"
#include "media_int.h"
#include "util.h"

#include <cairo.h>
#include <errno.h>
#include <glib.h>
#include <math.h>
#include <poppler.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int media_pdf_dpi(const MediaOptions *opt)
{
    return opt && opt->pdf_dpi > 0 ? opt->pdf_dpi : MEDIA_DEFAULT_PDF_DPI;
}

/* Open path as a PoppleDocument or fail with "path: reason". */
static int media_pdf_open(const char *path, PopplerDocument **doc, char *err)
{
    *doc = NULL;
    struct stat sb;
    int fd;
    int rc = util_open_regular(path, 0, &fd, &sb, err);
    if (rc)
        return rc;
    if (sb.st_size == 0) {
        close(fd);
        return err_set(err, VLQ_EINPUT, "%s: empty file", path);
    }
    /* poppler reads the descriptor we checked (and owns it from here, even on error),
     * never the path: a swap for a FIFO after the check cannot block it */
    GError *gerr = NULL;
    *doc = poppler_document_new_from_fd(fd, NULL, &gerr);
    if (*doc)
        return 0;
    int code = VLQ_EINPUT;
    const char *why = gerr ? gerr->message : "cannot open";
    if (gerr && gerr->domain == POPPLER_ERROR && gerr->code == POPPLER_ERROR_ENCRYPTED)
        why = "encrypted PDF (a password is needed)";
    else if (gerr && gerr->domain == G_FILE_ERROR)
        code = VLQ_EIO;
    err_set(err, code, "%s: not a readable PDF: %s", path, why);
    g_clear_error(&gerr);
    return code;
}

/* Rendered size of page p at dpi, or -1 when it is unreasonable. */
static void media_pdf_px(PopplerPage *page, int dpi, int *w, int *h)
{
    double pw = 0, ph = 0;
    poppler_page_get_size(page, &pw, &ph);
    *w = (int)ceil(pw * dpi / 72.0);
    *h = (int)ceil(ph * dpi / 72.0);
}

/* media_pdf_probe: the first page's size at the render DPI and the page count. */
int media_pdf_probe(const char *path, const MediaOptions *opt, MediaInfo *info, char *err)
{
    PopplerDocument *doc;
    int ret = media_pdf_open(path, &doc, err);
    if (ret)
        return ret;
    memset(info, 0, sizeof *info);
    info->kind = MEDIA_PDF;
    snprintf(info->codec, sizeof info->codec, "pdf");
    info->n_pages = poppler_document_get_n_pages(doc);
    if (info->n_pages <= 0) {
        ret = err_set(err, VLQ_EINPUT, "%s: the PDF has no pages", path);
    } else {
        PopplerPage *page = poppler_document_get_page(doc, 0);
        if (page) {
            media_pdf_px(page, media_pdf_dpi(opt), &info->width, &info->height);
            g_object_unref(page);
        }
    }
    g_object_unref(doc);
    return ret;
}

/* Render one page into a white RGB24 frame and pass it to fn. */
static int media_pdf_page(PopplerDocument *doc, int p, const char *path, const MediaOptions *opt,
                          MediaFrameFn fn, void *ctx, char *err)
{
    PopplerPage *page = poppler_document_get_page(doc, p - 1);
    if (!page)
        return err_set(err, VLQ_EINPUT, "%s: page %d: cannot be read", path, p);
    int dpi = media_pdf_dpi(opt), w, h, ret = 0;
    media_pdf_px(page, dpi, &w, &h);
    int64_t limit = opt && opt->max_image_pixels > 0 ? opt->max_image_pixels
                                                      : MEDIA_DEFAULT_MAX_IMAGE_PIXELS;
    cairo_surface_t *s = NULL;
    cairo_t *cr = NULL;
    uint8_t *rgb = NULL;
    if (w <= 0 || h <= 0 || (int64_t)w * h > limit) {
        ret = err_set(err, VLQ_EINPUT, "%s: page %d: %dx%d pixels at %d dpi is empty or exceeds "
                      "the limit of %lld (media max_image_pixels)", path, p, w, h, dpi,
                      (long long)limit);
        goto out;
    }
    s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
    rgb = malloc((size_t)w * h * 3);
    if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS || !rgb) {
        ret = err_set(err, VLQ_ENOMEM, "%s: page %d: out of memory for %dx%d pixels", path, p,
                      w, h);
        goto out;
    }
    cr = cairo_create(s);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_scale(cr, dpi / 72.0, dpi / 72.0);
    poppler_page_render(page, cr);
    cairo_surface_flush(s);
    if (cairo_status(cr) != CAIRO_STATUS_SUCCESS) {
        ret = err_set(err, VLQ_EINPUT, "%s: page %d: rendering failed: %s", path, p,
                      cairo_status_to_string(cairo_status(cr)));
        goto out;
    }
    const uint8_t *data = cairo_image_surface_get_data(s);
    int stride = cairo_image_surface_get_stride(s);
    for (int y = 0; y < h; y++) {
        const uint32_t *row = (const uint32_t *)(data + (size_t)y * stride);
        uint8_t *o = rgb + (size_t)y * w * 3;
        for (int x = 0; x < w; x++) {
            uint32_t px = row[x];
            o[3 * x] = (uint8_t)(px >> 16);
            o[3 * x + 1] = (uint8_t)(px >> 8);
            o[3 * x + 2] = (uint8_t)px;
        }
    }
    MediaFrame mf = {.rgb = rgb, .width = w, .height = h, .stride = w * 3, .index = p};
    ret = fn(ctx, &mf, err);
out:
    free(rgb);
    if (cr)
        cairo_destroy(cr);
    if (s)
        cairo_surface_destroy(s);
    g_object_unref(page);
    return ret;
}

/* media_pdf_sizes: the rendered size of every page in the range, without rendering. */
int media_pdf_sizes(const char *path, const MediaOptions *opt, int **sizes, int *n, char *err)
{
    PopplerDocument *doc;
    *sizes = NULL;
    *n = 0;
    int ret = media_pdf_open(path, &doc, err);
    if (ret)
        return ret;
    int np = poppler_document_get_n_pages(doc);
    int first = opt && opt->first_page > 0 ? opt->first_page : 1;
    int last = opt && opt->last_page > 0 ? opt->last_page : np;
    if (np <= 0)
        ret = err_set(err, VLQ_EINPUT, "%s: the PDF has no pages", path);
    else if (first > np || last > np || first > last)
        ret = err_set(err, VLQ_EINPUT, "%s: pages %d-%d requested, the PDF has %d", path, first,
                      last, np);
    if (!ret) {
        *n = last - first + 1;
        *sizes = xmalloc(sizeof(int) * 2 * (size_t)*n);
        for (int p = first; p <= last; p++) {
            PopplerPage *page = poppler_document_get_page(doc, p - 1);
            int w = 0, h = 0;
            if (page) {
                media_pdf_px(page, media_pdf_dpi(opt), &w, &h);
                g_object_unref(page);
            }
            (*sizes)[2 * (p - first)] = w;
            (*sizes)[2 * (p - first) + 1] = h;
        }
    }
    g_object_unref(doc);
    return ret;
}

/* media_pdf_decode: every page in opt's range, in order. */
int media_pdf_decode(const char *path, const MediaOptions *opt, MediaFrameFn fn, void *ctx,
                     char *err)
{
    PopplerDocument *doc;
    int ret = media_pdf_open(path, &doc, err);
    if (ret)
        return ret;
    int n = poppler_document_get_n_pages(doc);
    int first = opt && opt->first_page > 0 ? opt->first_page : 1;
    int last = opt && opt->last_page > 0 ? opt->last_page : n;
    if (n <= 0)
        ret = err_set(err, VLQ_EINPUT, "%s: the PDF has no pages", path);
    else if (first > n || last > n || first > last)
        ret = err_set(err, VLQ_EINPUT, "%s: pages %d-%d requested, the PDF has %d", path, first,
                      last, n);
    for (int p = first; !ret && p <= last; p++)
        ret = media_pdf_page(doc, p, path, opt, fn, ctx, err);
    g_object_unref(doc);
    return ret;
}
