/* media_int: what media.c and media_pdf.c share, private to the media module. */
#ifndef VLQ_MEDIA_INT_H
#define VLQ_MEDIA_INT_H

#include "media.h"

/* media_pdf.c: the PDF side of media_probe, media_page_sizes and media_decode_pages. */
int media_pdf_probe(const char *path, const MediaOptions *opt, MediaInfo *info, char *err);
int media_pdf_sizes(const char *path, const MediaOptions *opt, int **sizes, int *n, char *err);
int media_pdf_decode(const char *path, const MediaOptions *opt, MediaFrameFn fn, void *ctx,
                     char *err);

#endif
