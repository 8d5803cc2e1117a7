/* media: FFmpeg demux/decode of images and video into upright RGB24 frames (media.h).
 *
 * The decode loop is FFmpeg's doc/examples/demux_decode.c shape: open, find stream
 * info, best video stream, decoder from the stream parameters, send/receive until
 * EAGAIN or EOF, flush with a NULL packet, one cleanup label.
 *
 * Decisions:
 * - Pixel limit: the decoder's own "max_pixels" option is set to max_image_pixels for
 *   stream probing and decoding, so a header that claims 50000x50000 is refused by the
 *   codec's header parser before any picture buffer exists.
 * - FFmpeg's log goes through log.c at warning level; the last error line FFmpeg logged
 *   on this thread is kept so an AVERROR can be reported with FFmpeg's own reason.
 * - Colour: sws converts with the frame's matrix and range; alpha (any format with an
 *   alpha channel, and palettes, which may carry transparency) goes through RGBA and is
 *   composited over white as qwen-vl-utils does.
 * - Orientation: the EXIF "Orientation" frame tag when present (FFmpeg 5.1's mjpeg
 *   decoder exports both the tag and a display matrix), else the frame's or stream's
 *   display matrix (video rotation); flips come from the matrix's determinant.
 * - Video sampling mirrors Qwen3VLVideoProcessor.sample_frames on the selected range:
 *   n = int(frames/video_fps*fps) clamped to [min_frames, max_frames, frames], indices
 *   rint(linspace(0, frames-1, n)); each index i becomes the target time from + i/fps
 *   and the frame shown at that time (the last one with pts <= target + 1/4 period) is
 *   emitted, so variable frame rate files are sampled by presentation time.
 * - Speed: decoding threads; non-reference frames far from the next target are not
 *   decoded (skip_frame); a target more than MEDIA_SEEK_GAP_S ahead is reached by seeking.
 * Globals: none besides the thread-local last FFmpeg error line and a pthread_once. */
#include "media.h"
#include "media_int.h"

#include "err.h"
#include "log.h"
#include "util.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/display.h>
#include <libavutil/imgutils.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- FFmpeg logging and errors ---- */

static _Thread_local char media_av_last[160];
static pthread_once_t media_once = PTHREAD_ONCE_INIT;

static void media_av_log(void *avcl, int level, const char *fmt, va_list vl)
{
    if (level > AV_LOG_WARNING)
        return;
    char line[512];
    vsnprintf(line, sizeof line, fmt, vl);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    if (!n)
        return;
    const char *name = avcl ? (*(AVClass **)avcl)->item_name(avcl) : "ffmpeg";
    if (level <= AV_LOG_ERROR && !media_av_last[0]) /* the first error is the cause */
        snprintf(media_av_last, sizeof media_av_last, "%s", line);
    /* FFmpeg's errors are ours to report (with context) or to recover from: log them at
     * warning level, debug-only when a caller will report them anyway. */
    log_msg(level <= AV_LOG_WARNING ? LOG_WARN : LOG_DEBUG, "ffmpeg %s: %s", name, line);
}

static void media_setup_once(void)
{
    av_log_set_callback(media_av_log);
    av_log_set_level(AV_LOG_WARNING);
}

static void media_setup(void) { pthread_once(&media_once, media_setup_once); }

/* Translate an AVERROR into a VLQ code with "path: what: reason" in err. */
static int media_averr(char *err, const char *path, const char *what, int averr)
{
    char buf[AV_ERROR_MAX_STRING_SIZE];
    av_strerror(averr, buf, sizeof buf);
    int code = averr == AVERROR(ENOMEM) ? VLQ_ENOMEM
               : averr == AVERROR(EIO)  ? VLQ_EIO
               : averr == AVERROR_DECODER_NOT_FOUND || averr == AVERROR_PATCHWELCOME
                   ? VLQ_ENOTSUP
                   : VLQ_EINPUT;
    if (media_av_last[0] && averr != AVERROR(ENOMEM))
        err_set(err, code, "%s: %s: %s (%s)", path, what, buf, media_av_last);
    else
        err_set(err, code, "%s: %s: %s", path, what, buf);
    media_av_last[0] = '\0';
    return code;
}

/* ---- kind and open ---- */

static int media_has_ext(const char *path, const char *ext)
{
    size_t n = strlen(path), e = strlen(ext);
    return n > e && path[n - e - 1] == '.' && !strcasecmp(path + n - e, ext);
}

/* media_kind: PDF by magic or extension, still images by extension, else video. */
int media_kind(const char *path)
{
    FILE *f;
    if (util_fopen_regular(path, &f, NULL, NULL) == 0) { /* never blocks on a FIFO */
        char magic[5] = {0};
        size_t n = fread(magic, 1, 5, f);
        fclose(f);
        if (n == 5 && !memcmp(magic, "%PDF-", 5))
            return MEDIA_PDF;
    }
    if (media_has_ext(path, "pdf"))
        return MEDIA_PDF;
    static const char *const image_ext[] = {"png", "jpg", "jpeg", "webp", "bmp", "gif",
                                            "tif", "tiff", "pgm", "ppm", "pbm", "jp2",
                                            "tga", "qoi", NULL};
    for (int i = 0; image_ext[i]; i++)
        if (media_has_ext(path, image_ext[i]))
            return MEDIA_IMAGE;
    return MEDIA_VIDEO;
}

static int64_t media_max_pixels(const MediaOptions *opt)
{
    return opt && opt->max_image_pixels > 0 ? opt->max_image_pixels : MEDIA_DEFAULT_MAX_IMAGE_PIXELS;
}

/* The file under FFmpeg's demuxer: a descriptor opened and checked by
 * util_open_regular. FFmpeg reads through an AVIOContext over it and never opens a path
 * itself, so a file swapped for a FIFO after the check cannot block it. */
typedef struct {
    int fd;
    int64_t size;
} MediaFile;

static int media_file_read(void *opaque, uint8_t *buf, int n)
{
    MediaFile *mf = opaque;
    for (;;) {
        ssize_t r = read(mf->fd, buf, (size_t)n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return AVERROR(errno);
        return r == 0 ? AVERROR_EOF : (int)r;
    }
}

static int64_t media_file_seek(void *opaque, int64_t off, int whence)
{
    MediaFile *mf = opaque;
    if (whence & AVSEEK_SIZE)
        return mf->size;
    off_t r = lseek(mf->fd, (off_t)off, whence & ~AVSEEK_FORCE);
    return r < 0 ? AVERROR(errno) : (int64_t)r;
}

/* FFmpeg asks to open another file (a playlist entry, a reference in a container): an
 * input is one file, so every such open is refused. */
static int media_no_open(struct AVFormatContext *s, AVIOContext **pb, const char *url, int flags,
                         AVDictionary **options)
{
    return AVERROR(EPERM);
}

/* An open input: the demuxer, the chosen video stream and its decoder. */
typedef struct {
    AVFormatContext *fmt;
    AVCodecContext *dec;
    AVStream *st;
    int stream;
    AVIOContext *pb;  /* our reader over file->fd */
    MediaFile *file;  /* NULL when not open */
} MediaInput;

static void media_input_close(MediaInput *in)
{
    avcodec_free_context(&in->dec);
    avformat_close_input(&in->fmt); /* leaves a custom pb alone */
    if (in->pb) {
        av_freep(&in->pb->buffer);
        avio_context_free(&in->pb);
    }
    if (in->file) {
        close(in->file->fd);
        free(in->file);
    }
    memset(in, 0, sizeof *in);
}

/* Open a decoder for in->st (again: a still image is decoded once per page). */
static int media_open_decoder(MediaInput *in, const char *path, const MediaOptions *opt,
                              char *err)
{
    const AVCodec *codec = avcodec_find_decoder(in->st->codecpar->codec_id);
    if (!codec)
        return err_set(err, VLQ_ENOTSUP, "%s: no decoder for codec %s", path,
                       avcodec_get_name(in->st->codecpar->codec_id));
    avcodec_free_context(&in->dec);
    in->dec = avcodec_alloc_context3(codec);
    if (!in->dec)
        return err_set(err, VLQ_ENOMEM, "%s: out of memory", path);
    int ret = avcodec_parameters_to_context(in->dec, in->st->codecpar);
    if (ret < 0)
        return media_averr(err, path, "decoder parameters", ret);
    in->dec->pkt_timebase = in->st->time_base;
    in->dec->thread_count = opt && opt->threads > 0 ? opt->threads : 0;
    in->dec->thread_type = FF_THREAD_FRAME | FF_THREAD_SLICE;
    AVDictionary *o = NULL;
    av_dict_set_int(&o, "max_pixels", media_max_pixels(opt), 0);
    ret = avcodec_open2(in->dec, codec, &o);
    av_dict_free(&o);
    if (ret < 0)
        return media_averr(err, path, "open decoder", ret);
    return 0;
}

/* Open path and pick its best video stream. Empty files, files that are not media
 * and files with no video stream are VLQ_EINPUT with a plain reason. */
static int media_input_open(MediaInput *in, const char *path, const MediaOptions *opt, char *err)
{
    media_setup();
    memset(in, 0, sizeof *in);
    struct stat sb;
    int fd;
    int ret = util_open_regular(path, 0, &fd, &sb, err);
    if (ret)
        return ret;
    if (sb.st_size == 0) {
        close(fd);
        return err_set(err, VLQ_EINPUT, "%s: empty file", path);
    }
    in->file = xmalloc(sizeof *in->file);
    *in->file = (MediaFile){.fd = fd, .size = (int64_t)sb.st_size};
    const int io_size = 1 << 16;
    unsigned char *io_buf = av_malloc(io_size);
    in->pb = io_buf ? avio_alloc_context(io_buf, io_size, 0, in->file, media_file_read, NULL,
                                         media_file_seek)
                    : NULL;
    in->fmt = in->pb ? avformat_alloc_context() : NULL;
    if (!in->pb || !in->fmt) {
        if (!in->pb)
            av_free(io_buf);
        ret = err_set(err, VLQ_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    in->fmt->pb = in->pb;
    in->fmt->io_open = media_no_open;
    media_av_last[0] = '\0';
    /* the path still names the input, for the demuxers that look at its extension */
    ret = avformat_open_input(&in->fmt, path, NULL, NULL);
    if (ret < 0) { /* it has freed fmt (not our pb) */
        ret = media_averr(err, path, "not a media file FFmpeg can read", ret);
        goto fail;
    }
    /* Probe with the pixel limit so no oversized picture is decoded while probing. */
    unsigned ns = in->fmt->nb_streams;
    AVDictionary **sopt = ns ? calloc(ns, sizeof *sopt) : NULL;
    for (unsigned i = 0; sopt && i < ns; i++)
        av_dict_set_int(&sopt[i], "max_pixels", media_max_pixels(opt), 0);
    ret = avformat_find_stream_info(in->fmt, sopt);
    for (unsigned i = 0; sopt && i < ns; i++)
        av_dict_free(&sopt[i]);
    free(sopt);
    if (ret < 0) {
        ret = media_averr(err, path, "reading stream info", ret);
        goto fail;
    }
    in->stream = av_find_best_stream(in->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
    if (in->stream < 0) {
        ret = err_set(err, VLQ_EINPUT, "%s: no video or image stream (%s)", path,
                      in->fmt->nb_streams ? "audio or data only" : "no streams");
        goto fail;
    }
    in->st = in->fmt->streams[in->stream];
    AVCodecParameters *par = in->st->codecpar;
    if (par->width > 0 && par->height > 0 &&
        (int64_t)par->width * par->height > media_max_pixels(opt)) {
        ret = err_set(err, VLQ_EINPUT, "%s: %dx%d pixels exceeds the limit of %lld "
                      "(media max_image_pixels)", path, par->width, par->height,
                      (long long)media_max_pixels(opt));
        goto fail;
    }
    if (par->width <= 0 || par->height <= 0) {
        ret = err_set(err, VLQ_EINPUT, "%s: picture size refused or unreadable (%s); the "
                      "limit is %lld pixels (media max_image_pixels)", path,
                      media_av_last[0] ? media_av_last : "corrupt header",
                      (long long)media_max_pixels(opt));
        goto fail;
    }
    for (unsigned i = 0; i < in->fmt->nb_streams; i++)
        in->fmt->streams[i]->discard = (int)i == in->stream ? AVDISCARD_DEFAULT : AVDISCARD_ALL;
    return 0;
fail:
    media_input_close(in);
    return ret;
}

/* ---- pixel conversion and orientation ---- */

/* A reusable RGB conversion: sws context and the upright output buffers. */
typedef struct {
    struct SwsContext *sws;
    uint8_t *rgba;      /* converted picture, 3 or 4 bytes per pixel */
    size_t rgba_cap;
    uint8_t *rgb;       /* upright RGB24 */
    size_t rgb_cap;
} MediaConv;

static void media_conv_clear(MediaConv *c)
{
    sws_freeContext(c->sws);
    free(c->rgba);
    free(c->rgb);
    memset(c, 0, sizeof *c);
}

static int media_grow(uint8_t **p, size_t *cap, size_t n)
{
    if (n <= *cap)
        return 0;
    uint8_t *q = realloc(*p, n);
    if (!q)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

/* EXIF orientation (1..8) of a frame: the tag, else the frame's or stream's display
 * matrix. */
static int media_orientation(const AVFrame *f, const AVStream *st)
{
    AVDictionaryEntry *e = av_dict_get(f->metadata, "Orientation", NULL, 0);
    if (e) {
        int o = atoi(e->value);
        if (o >= 1 && o <= 8)
            return o;
    }
    const int32_t *m = NULL;
    AVFrameSideData *sd = av_frame_get_side_data(f, AV_FRAME_DATA_DISPLAYMATRIX);
    if (sd && sd->size >= 9 * 4)
        m = (const int32_t *)sd->data;
    if (!m && st) {
        size_t size = 0;
        const uint8_t *p = av_stream_get_side_data(st, AV_PKT_DATA_DISPLAYMATRIX, &size);
        if (p && size >= 9 * 4)
            m = (const int32_t *)p;
    }
    if (!m)
        return 1;
    double ccw = av_display_rotation_get(m);
    if (isnan(ccw))
        return 1;
    int cw = ((int)lrint(-ccw / 90.0) % 4 + 4) % 4 * 90;
    int mirrored = ((int64_t)m[0] * m[4] - (int64_t)m[1] * m[3]) < 0;
    if (!mirrored)
        return cw == 90 ? 6 : cw == 180 ? 3 : cw == 270 ? 8 : 1;
    return cw == 90 ? 7 : cw == 180 ? 4 : cw == 270 ? 5 : 2;
}

/* Upright size for orientation o. */
static void media_oriented_size(int o, int w, int h, int *ow, int *oh)
{
    int swap = o >= 5;
    *ow = swap ? h : w;
    *oh = swap ? w : h;
}

/* dst (upright, ow x oh) pixel (x, y) comes from src pixel (sx, sy) per EXIF o. */
static void media_orient_copy(int o, const uint8_t *src, int w, int h, uint8_t *dst)
{
    int ow, oh;
    media_oriented_size(o, w, h, &ow, &oh);
    if (o == 1) {
        memcpy(dst, src, (size_t)w * h * 3);
        return;
    }
    for (int y = 0; y < oh; y++) {
        for (int x = 0; x < ow; x++) {
            int sx, sy;
            switch (o) {
            case 2: sx = w - 1 - x; sy = y; break;
            case 3: sx = w - 1 - x; sy = h - 1 - y; break;
            case 4: sx = x; sy = h - 1 - y; break;
            case 5: sx = y; sy = x; break;
            case 6: sx = y; sy = h - 1 - x; break;
            case 7: sx = w - 1 - y; sy = h - 1 - x; break;
            default: sx = w - 1 - y; sy = x; break; /* 8 */
            }
            const uint8_t *s = src + ((size_t)sy * w + sx) * 3;
            uint8_t *d = dst + ((size_t)y * ow + x) * 3;
            d[0] = s[0];
            d[1] = s[1];
            d[2] = s[2];
        }
    }
}

static int media_has_alpha(enum AVPixelFormat f)
{
    const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(f);
    return d && (d->flags & (AV_PIX_FMT_FLAG_ALPHA | AV_PIX_FMT_FLAG_PAL));
}

/* Convert a decoded frame to upright RGB24 in c->rgb; fills out's size fields. */
static int media_convert(MediaConv *c, const AVFrame *f, const AVStream *st, const char *path,
                         MediaFrame *out, char *err)
{
    int w = f->width, h = f->height;
    int alpha = media_has_alpha(f->format);
    /* The yuvj formats are yuv with full range: convert them as such (sws warns on
     * the deprecated names). */
    enum AVPixelFormat src_fmt = f->format == AV_PIX_FMT_YUVJ420P   ? AV_PIX_FMT_YUV420P
                                 : f->format == AV_PIX_FMT_YUVJ422P ? AV_PIX_FMT_YUV422P
                                 : f->format == AV_PIX_FMT_YUVJ444P ? AV_PIX_FMT_YUV444P
                                 : f->format == AV_PIX_FMT_YUVJ440P ? AV_PIX_FMT_YUV440P
                                                                    : f->format;
    enum AVPixelFormat dst_fmt = alpha ? AV_PIX_FMT_RGBA : AV_PIX_FMT_RGB24;
    int bpp = alpha ? 4 : 3;
    /* Same-size conversion: sws's SIMD yuv2rgb path (bilinear chroma upsampling, as
     * PyAV's to_ndarray, which decodes frames for the reference). The accurate-rounding
     * full-chroma path costs ~4x more per 1080p frame for no visible difference. */
    c->sws = sws_getCachedContext(c->sws, w, h, src_fmt, w, h, dst_fmt, SWS_BILINEAR, NULL,
                                  NULL, NULL);
    if (!c->sws)
        return err_set(err, VLQ_ENOTSUP, "%s: cannot convert pixel format %s to RGB", path,
                       av_get_pix_fmt_name(f->format));
    int full = f->color_range == AVCOL_RANGE_JPEG || src_fmt != f->format;
    int cs = f->colorspace != AVCOL_SPC_UNSPECIFIED ? (int)f->colorspace : SWS_CS_DEFAULT;
    const int *coef = sws_getCoefficients(cs);
    sws_setColorspaceDetails(c->sws, coef, full, sws_getCoefficients(SWS_CS_DEFAULT), 1, 0,
                             1 << 16, 1 << 16);
    size_t n = (size_t)w * h;
    if (media_grow(&c->rgba, &c->rgba_cap, n * bpp) || media_grow(&c->rgb, &c->rgb_cap, n * 3))
        return err_set(err, VLQ_ENOMEM, "%s: out of memory for a %dx%d picture", path, w, h);
    int o = media_orientation(f, st);
    /* Upright RGB needs no second pass: convert straight into the output. */
    int direct = !alpha && o == 1;
    uint8_t *dst[4] = {direct ? c->rgb : c->rgba, NULL, NULL, NULL};
    int dst_stride[4] = {w * bpp, 0, 0, 0};
    sws_scale(c->sws, (const uint8_t *const *)f->data, f->linesize, 0, h, dst, dst_stride);
    const uint8_t *rgb = c->rgba;
    if (alpha) {
        /* Composite over white: out = a*c + (1-a)*255, rounded. Compact in place. */
        uint8_t *p = c->rgba;
        for (size_t i = 0; i < n; i++) {
            unsigned a = p[4 * i + 3];
            for (int k = 0; k < 3; k++)
                p[3 * i + k] = (uint8_t)((p[4 * i + k] * a + 255 * (255 - a) + 127) / 255);
        }
    }
    if (!direct)
        media_orient_copy(o, rgb, w, h, c->rgb);
    media_oriented_size(o, w, h, &out->width, &out->height);
    out->rgb = c->rgb;
    out->stride = out->width * 3;
    return 0;
}

/* ---- TIFF pages ---- */

static uint32_t media_rd(const uint8_t *p, int bytes, int le)
{
    uint32_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint32_t)p[le ? i : bytes - 1 - i] << (8 * (le ? i : bytes - 1 - i));
    return v;
}

/* Walk the IFD chain of a classic TIFF in d[0..n): the count of pages, their offsets in
 * offs (may be NULL). FFmpeg 5.1's tiff decoder finds pages only through the optional
 * PageNumber tag, so vlq finds them itself and points the header at the page it wants
 * (every TIFF offset is absolute, so the rest of the file stays valid). */
static int media_tiff_ifds(const uint8_t *d, size_t n, uint32_t *offs, int max)
{
    if (n < 8 || !((d[0] == 'I' && d[1] == 'I') || (d[0] == 'M' && d[1] == 'M')))
        return 0;
    int le = d[0] == 'I';
    if (media_rd(d + 2, 2, le) != 42)
        return 0; /* BigTIFF: FFmpeg does not read it */
    uint32_t off = media_rd(d + 4, 4, le);
    int k = 0;
    while (off && (size_t)off + 2 <= n && k < max) {
        if (offs)
            offs[k] = off;
        k++;
        size_t next = (size_t)off + 2 + 12 * (size_t)media_rd(d + off, 2, le);
        if (next + 4 > n)
            break;
        uint32_t nxt = media_rd(d + next, 4, le);
        if (nxt == off)
            break;
        off = nxt;
    }
    return k;
}

/* A copy of pkt whose TIFF header points at IFD offset ifd. */
static AVPacket *media_tiff_page_packet(const AVPacket *pkt, uint32_t ifd)
{
    AVPacket *p = av_packet_alloc();
    if (!p || av_new_packet(p, pkt->size) < 0) {
        av_packet_free(&p);
        return NULL;
    }
    memcpy(p->data, pkt->data, pkt->size);
    int le = p->data[0] == 'I';
    for (int i = 0; i < 4; i++)
        p->data[4 + (le ? i : 3 - i)] = (uint8_t)(ifd >> (8 * i));
    return p;
}

/* ---- probe ---- */

static double media_stream_fps(const AVStream *st)
{
    AVRational r = st->avg_frame_rate;
    if (r.num > 0 && r.den > 0)
        return av_q2d(r);
    r = st->r_frame_rate;
    if (r.num > 0 && r.den > 0)
        return av_q2d(r);
    return 24.0; /* the reference's assumption when a video has no rate */
}

static double media_stream_duration(const MediaInput *in)
{
    if (in->st->duration != AV_NOPTS_VALUE && in->st->duration > 0)
        return in->st->duration * av_q2d(in->st->time_base);
    if (in->fmt->duration != AV_NOPTS_VALUE && in->fmt->duration > 0)
        return in->fmt->duration / (double)AV_TIME_BASE;
    return 0;
}

static int media_is_still(const MediaInput *in)
{
    const char *n = in->fmt->iformat->name;
    return strstr(n, "_pipe") || !strcmp(n, "image2") || !strcmp(n, "gif") ||
           !strcmp(n, "webp") || in->st->codecpar->codec_id == AV_CODEC_ID_GIF;
}

/* media_probe: see media.h. */
int media_probe(const char *path, const MediaOptions *opt, MediaInfo *info, char *err)
{
    memset(info, 0, sizeof *info);
    if (media_kind(path) == MEDIA_PDF)
        return media_pdf_probe(path, opt, info, err);
    MediaInput in;
    int ret = media_input_open(&in, path, opt, err);
    if (ret)
        return ret;
    AVCodecParameters *par = in.st->codecpar;
    snprintf(info->codec, sizeof info->codec, "%s", avcodec_get_name(par->codec_id));
    info->kind = media_is_still(&in) ? MEDIA_IMAGE : MEDIA_VIDEO;
    info->width = par->width;
    info->height = par->height;
    info->n_pages = 1;
    if (info->kind == MEDIA_VIDEO) {
        info->video_fps = media_stream_fps(in.st);
        info->duration_s = media_stream_duration(&in);
        info->total_frames = in.st->nb_frames > 0
                                 ? in.st->nb_frames
                                 : (int64_t)llround(info->duration_s * info->video_fps);
        AVFrame dummy = {0};
        int o = media_orientation(&dummy, in.st);
        info->rotation = o == 6 ? 90 : o == 3 ? 180 : o == 8 ? 270 : 0;
        media_oriented_size(o, par->width, par->height, &info->width, &info->height);
    } else if (par->codec_id == AV_CODEC_ID_TIFF) {
        AVPacket *pkt = av_packet_alloc();
        if (pkt && av_read_frame(in.fmt, pkt) >= 0)
            info->n_pages = media_tiff_ifds(pkt->data, (size_t)pkt->size, NULL,
                                            MEDIA_DEFAULT_MAX_PAGES);
        info->n_pages = info->n_pages < 1 ? 1 : info->n_pages;
        av_packet_free(&pkt);
    }
    media_input_close(&in);
    return 0;
}

/* ---- images ---- */

/* Decode one packet (a whole still image) into f. */
static int media_decode_packet(MediaInput *in, const AVPacket *pkt, AVFrame *f)
{
    int ret = avcodec_send_packet(in->dec, pkt);
    if (ret < 0 && ret != AVERROR_EOF)
        return ret;
    ret = avcodec_receive_frame(in->dec, f);
    if (ret == AVERROR(EAGAIN)) {
        avcodec_send_packet(in->dec, NULL);
        ret = avcodec_receive_frame(in->dec, f);
    }
    return ret;
}

/* media_decode_pages: see media.h. Images are one packet (GIF: its first frame);
 * TIFF pages are decoded from that packet with the tiff decoder's "page" option. */
int media_decode_pages(const char *path, const MediaOptions *opt, MediaFrameFn fn, void *ctx,
                       char *err)
{
    if (media_kind(path) == MEDIA_PDF)
        return media_pdf_decode(path, opt, fn, ctx, err);
    MediaInput in;
    int ret = media_input_open(&in, path, opt, err);
    if (ret)
        return ret;
    MediaConv conv = {0};
    AVPacket *pkt = av_packet_alloc();
    AVFrame *f = av_frame_alloc();
    uint32_t *ifds = NULL;
    int n_pages = 1;
    if (!pkt || !f) {
        ret = err_set(err, VLQ_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    ret = av_read_frame(in.fmt, pkt);
    if (ret < 0) {
        ret = media_averr(err, path, "reading the image", ret);
        goto out;
    }
    int tiff = in.st->codecpar->codec_id == AV_CODEC_ID_TIFF;
    if (tiff) {
        n_pages = media_tiff_ifds(pkt->data, (size_t)pkt->size, NULL, MEDIA_DEFAULT_MAX_PAGES);
        ifds = xmalloc(sizeof *ifds * (size_t)(n_pages > 0 ? n_pages : 1));
        media_tiff_ifds(pkt->data, (size_t)pkt->size, ifds, n_pages);
        n_pages = n_pages < 1 ? 1 : n_pages;
    }
    int first = opt && opt->first_page > 0 ? opt->first_page : 1;
    int last = opt && opt->last_page > 0 ? opt->last_page : n_pages;
    if (first > n_pages || last > n_pages || first > last) {
        ret = err_set(err, VLQ_EINPUT, "%s: pages %d-%d requested, the image has %d", path,
                      first, last, n_pages);
        goto out;
    }
    for (int p = first; p <= last; p++) {
        ret = media_open_decoder(&in, path, opt, err);
        if (ret)
            goto out;
        AVPacket *page_pkt = tiff && p > 1 ? media_tiff_page_packet(pkt, ifds[p - 1]) : NULL;
        ret = media_decode_packet(&in, page_pkt ? page_pkt : pkt, f);
        av_packet_free(&page_pkt);
        if (ret < 0) {
            ret = media_averr(err, path, n_pages > 1 ? "decoding the page" : "decoding the image",
                              ret);
            if (n_pages > 1)
                err_prefix(err, "page %d", p);
            goto out;
        }
        if ((int64_t)f->width * f->height > media_max_pixels(opt)) {
            ret = err_set(err, VLQ_EINPUT, "%s: %dx%d pixels exceeds the limit of %lld "
                          "(media max_image_pixels)", path, f->width, f->height,
                          (long long)media_max_pixels(opt));
            goto out;
        }
        MediaFrame mf = {.index = p, .pts_s = 0, .frame_idx = 0};
        ret = media_convert(&conv, f, NULL, path, &mf, err);
        av_frame_unref(f);
        if (ret)
            goto out;
        ret = fn(ctx, &mf, err);
        if (ret)
            goto out;
    }
out:
    free(ifds);
    av_frame_free(&f);
    av_packet_free(&pkt);
    media_conv_clear(&conv);
    media_input_close(&in);
    return ret;
}

static int media_size_cb(void *ctx, const MediaFrame *f, char *err)
{
    Buf *b = ctx;
    int wh[2] = {f->width, f->height};
    buf_append(b, wh, sizeof wh);
    return 0;
}

/* media_page_sizes: see media.h. */
int media_page_sizes(const char *path, const MediaOptions *opt, int **sizes, int *n, char *err)
{
    *sizes = NULL;
    *n = 0;
    if (media_kind(path) == MEDIA_PDF)
        return media_pdf_sizes(path, opt, sizes, n, err);
    Buf b = {0};
    int ret = media_decode_pages(path, opt, media_size_cb, &b, err);
    if (ret) {
        buf_clear(&b);
        return ret;
    }
    *n = (int)(b.len / (2 * sizeof(int)));
    *sizes = (int *)buf_take(&b);
    return 0;
}

/* ---- video ---- */

/* media_sample_indices: see media.h. */
int media_sample_indices(int64_t total_frames, double video_fps, const MediaOptions *opt,
                         int64_t *idx)
{
    if (total_frames <= 0)
        return 0;
    double fps = opt && opt->fps > 0 ? opt->fps : MEDIA_DEFAULT_FPS;
    int64_t min_f = opt && opt->min_frames > 0 ? opt->min_frames : MEDIA_DEFAULT_MIN_FRAMES;
    int64_t max_f = opt && opt->max_frames > 0 ? opt->max_frames : MEDIA_DEFAULT_MAX_FRAMES;
    if (video_fps <= 0)
        video_fps = 24.0;
    int64_t n = (int64_t)(total_frames / video_fps * fps); /* Python int(): truncation */
    n = n < min_f ? min_f : n;
    n = n > max_f ? max_f : n;
    n = n > total_frames ? total_frames : n;
    if (idx) {
        /* numpy linspace(0, total-1, n): start + i*step, the last value exactly stop;
         * .round() is half-to-even, as rint in the default rounding mode. */
        double stop = (double)(total_frames - 1);
        double step = n > 1 ? stop / (double)(n - 1) : 0;
        for (int64_t i = 0; i < n; i++)
            idx[i] = (int64_t)rint(i == n - 1 && n > 1 ? stop : (double)i * step);
    }
    return (int)n;
}

/* media_range_frames: see media.h. */
int64_t media_range_frames(int64_t total_frames, double duration_s, double video_fps,
                           double from_s, double to_s)
{
    double to = to_s > 0 && to_s < duration_s ? to_s : duration_s;
    double from = from_s > 0 ? from_s : 0;
    if (from <= 0 && to >= duration_s)
        return total_frames;
    int64_t n = (int64_t)llround((to - from) * video_fps);
    return n < 1 ? 1 : n;
}

/* The state of one sampled decode. */
typedef struct {
    MediaInput in;
    MediaConv conv;
    AVFrame *prev;        /* the last decoded frame not yet passed (a reference) */
    double prev_t;        /* its time from the stream start, s */
    int64_t *idx;         /* sample indices within the range */
    int n, next;          /* sample count and the next one to emit */
    double from_s, fps_v; /* range start, video frame rate */
    double start_pts_s;   /* stream start time, s */
    double tb;            /* stream time base, s */
    MediaFrameFn fn;
    void *ctx;
    const char *path;
    int damaged;          /* some data could not be decoded */
} MediaVideo;

static double media_target(const MediaVideo *v, int k)
{
    return v->from_s + (double)v->idx[k] / v->fps_v;
}

static int media_emit(MediaVideo *v, AVFrame *f, double t, char *err)
{
    MediaFrame mf = {.pts_s = t, .index = v->next + 1, .frame_idx = v->idx[v->next]};
    int ret = media_convert(&v->conv, f, v->in.st, v->path, &mf, err);
    if (!ret)
        ret = v->fn(v->ctx, &mf, err);
    v->next++;
    return ret;
}

/* Take the decoded frame f at time t: every target whose shown frame is now known
 * (the previous frame, since f comes after the target) is emitted. */
static int media_take(MediaVideo *v, AVFrame *f, double t, char *err)
{
    double eps = 0.25 / v->fps_v;
    while (v->next < v->n && t > media_target(v, v->next) + eps) {
        int ret = v->prev->buf[0] ? media_emit(v, v->prev, v->prev_t, err)
                                  : media_emit(v, f, t, err);
        if (ret)
            return ret;
    }
    av_frame_unref(v->prev);
    av_frame_move_ref(v->prev, f);
    v->prev_t = t;
    return 0;
}

static double media_frame_time(const MediaVideo *v, const AVFrame *f)
{
    int64_t ts = f->best_effort_timestamp != AV_NOPTS_VALUE ? f->best_effort_timestamp : f->pts;
    if (ts == AV_NOPTS_VALUE)
        return v->prev_t + 1.0 / v->fps_v;
    return ts * v->tb - v->start_pts_s;
}

/* Drain decoded frames; returns 0, or a VLQ code. */
static int media_receive(MediaVideo *v, AVFrame *f, char *err)
{
    for (;;) {
        int ret = avcodec_receive_frame(v->in.dec, f);
        if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF)
            return 0;
        if (ret == AVERROR(ENOMEM))
            return media_averr(err, v->path, "decoding", ret);
        if (ret < 0) {
            /* Damaged data: the decoder resynchronises on the next packets. */
            log_warn("%s: damaged frame skipped: %s", v->path, av_err2str(ret));
            media_av_last[0] = '\0';
            v->damaged = 1;
            return 0;
        }
        ret = media_take(v, f, media_frame_time(v, f), err);
        av_frame_unref(f);
        if (ret || v->next >= v->n)
            return ret;
    }
}

/* Seek so that the next target is reached without decoding the gap. */
static void media_seek(MediaVideo *v, double target)
{
    int64_t ts = (int64_t)((target + v->start_pts_s) / v->tb);
    if (av_seek_frame(v->in.fmt, v->in.stream, ts, AVSEEK_FLAG_BACKWARD) >= 0) {
        avcodec_flush_buffers(v->in.dec);
        av_frame_unref(v->prev);
    }
}

/* The sampling plan of a decode: time base, start, frame rate, range and the
 * reference's indices within it (v->idx, v->n). */
static int media_video_setup(MediaVideo *v, const MediaOptions *opt, char *err)
{
    v->tb = av_q2d(v->in.st->time_base);
    v->start_pts_s = v->in.st->start_time != AV_NOPTS_VALUE ? v->in.st->start_time * v->tb : 0;
    v->fps_v = media_stream_fps(v->in.st);
    double dur = media_stream_duration(&v->in);
    int64_t nb = v->in.st->nb_frames > 0 ? v->in.st->nb_frames : (int64_t)llround(dur * v->fps_v);
    v->from_s = opt && opt->from_s > 0 ? opt->from_s : 0;
    double to = opt && opt->to_s > 0 && opt->to_s < dur ? opt->to_s : dur;
    if (to <= v->from_s)
        return err_set(err, VLQ_EINPUT, "%s: empty range %.3f-%.3f s (duration %.3f s)",
                       v->path, v->from_s, to, dur);
    int64_t total = media_range_frames(nb, dur, v->fps_v, v->from_s, opt ? opt->to_s : 0);
    v->n = media_sample_indices(total, v->fps_v, opt, NULL);
    if (v->n <= 0)
        return err_set(err, VLQ_EINPUT, "%s: the video has no frames", v->path);
    v->idx = xmalloc(sizeof *v->idx * (size_t)v->n);
    media_sample_indices(total, v->fps_v, opt, v->idx);
    return 0;
}

/* media_decode_video: see media.h. */
int media_decode_video(const char *path, const MediaOptions *opt, MediaFrameFn fn, void *ctx,
                       int *n_lost, char *err)
{
    MediaVideo v = {.fn = fn, .ctx = ctx, .path = path};
    if (n_lost)
        *n_lost = 0;
    int ret = media_input_open(&v.in, path, opt, err);
    if (ret)
        return ret;
    AVPacket *pkt = av_packet_alloc();
    AVFrame *f = av_frame_alloc();
    v.prev = av_frame_alloc();
    if (!pkt || !f || !v.prev) {
        ret = err_set(err, VLQ_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    ret = media_open_decoder(&v.in, path, opt, err);
    if (ret)
        goto out;
    ret = media_video_setup(&v, opt, err);
    if (ret)
        goto out;
    double seeked_for = -1;
    if (v.from_s > 0) {
        seeked_for = media_target(&v, 0);
        media_seek(&v, seeked_for);
    }
    double period = 1.0 / v.fps_v;
    int lost_data = 0;
    while (v.next < v.n) {
        ret = av_read_frame(v.in.fmt, pkt);
        if (ret == AVERROR_EOF)
            break;
        if (ret < 0) {
            /* A damaged tail: keep what was decoded, report the rest as lost. */
            log_warn("%s: reading stopped early: %s", path, av_err2str(ret));
            lost_data = 1;
            break;
        }
        if (pkt->stream_index != v.in.stream) {
            av_packet_unref(pkt);
            continue;
        }
        double target = media_target(&v, v.next);
        double pt = pkt->pts != AV_NOPTS_VALUE ? pkt->pts * v.tb - v.start_pts_s : -1;
        /* Non-reference frames well before the next target are never shown. */
        v.in.dec->skip_frame = pt >= 0 && pt < target - 2 * period ? AVDISCARD_NONREF
                                                                   : AVDISCARD_DEFAULT;
        /* At a keyframe far before the next target, seek (once per target: a seek
         * that lands on this same keyframe must not loop). */
        if (pt >= 0 && target - pt > MEDIA_SEEK_GAP_S && (pkt->flags & AV_PKT_FLAG_KEY) &&
            seeked_for != target) {
            av_packet_unref(pkt);
            seeked_for = target;
            media_seek(&v, target);
            continue;
        }
        ret = avcodec_send_packet(v.in.dec, pkt);
        if (ret == AVERROR(EAGAIN)) {
            /* The decoder's output is full (a damaged frame stopped the last drain):
             * drain, then send again. */
            ret = media_receive(&v, f, err);
            if (ret) {
                av_packet_unref(pkt);
                goto out;
            }
            ret = avcodec_send_packet(v.in.dec, pkt);
        }
        av_packet_unref(pkt);
        if (ret < 0 && ret != AVERROR(EAGAIN)) {
            log_warn("%s: skipping a damaged packet: %s", path, av_err2str(ret));
            lost_data = 1;
            continue;
        }
        ret = media_receive(&v, f, err);
        if (ret)
            goto out;
    }
    v.in.dec->skip_frame = AVDISCARD_DEFAULT;
    avcodec_send_packet(v.in.dec, NULL);
    ret = media_receive(&v, f, err);
    if (ret)
        goto out;
    /* Targets after the last frame: the last frame stands for those within one period. */
    while (v.next < v.n && v.prev->buf[0] && media_target(&v, v.next) <= v.prev_t + period) {
        ret = media_emit(&v, v.prev, v.prev_t, err);
        if (ret)
            goto out;
    }
    int lost = v.n - v.next;
    if (lost == v.n) {
        ret = err_set(err, VLQ_EINPUT, "%s: no frame could be decoded%s", path,
                      lost_data || v.damaged ? " (damaged data)" : "");
        goto out;
    }
    if (lost > 0)
        log_warn("%s: truncated or damaged: %d of %d sampled frames lost after %.3f s", path,
                 lost, v.n, v.prev_t);
    if (n_lost)
        *n_lost = lost;
    ret = 0;
out:
    free(v.idx);
    av_frame_free(&v.prev);
    av_frame_free(&f);
    av_packet_free(&pkt);
    media_conv_clear(&v.conv);
    media_input_close(&v.in);
    return ret;
}
