/* result: the stored results of the ocr and summarize kinds, and their renderings.
 *
 * A kind stores one JSON document per job (format "json"), built here from its units:
 *   ocr        {"kind":"ocr", "input", "prompt_version", "pages": [{"page", "text",
 *               "tok_in", "tok_out", "seconds", "error": null | {"code", "message"}}],
 *               "pages_failed"}
 *   summarize  {"kind":"summarize", "input", "prompt_version", "duration_s", "fps",
 *               "segments": [{"start_s", "end_s", "frames", "summary", "tok_in",
 *               "tok_out", "seconds"}], "summary"}
 * and `vlq result --format txt|md|json` and [output] dir render it: txt and md join the
 * pages in order with page separators (a failed page shows its error in its place); a
 * summary's md is a report with hh:mm:ss times. Pure: jansson and strings only, no
 * queue, no engine. */
#ifndef VLQ_RESULT_H
#define VLQ_RESULT_H

#include "util.h"

#include <stddef.h>

/* Render a job's stored result (stored_format, data[len]) as want ("txt", "md", "json";
 * "text" and "markdown" are accepted too) for a job of kind, appended to out. Returns 0,
 * VLQ_ENOTSUP when kind has no renderings (the caller shows the stored bytes), or
 * VLQ_EINPUT (an unknown format, or a stored document that is not the kind's). */
int result_render(const char *kind, const char *stored_format, const char *data, size_t len,
                  const char *want, Buf *out, char *err);
/* The file name extension of a format ("md" for md and markdown, "txt" for txt and
 * text, "json"); the format itself otherwise. Cannot fail. */
const char *result_extension(const char *format);
/* "01:02:03.5" style time of s seconds into buf: hh:mm:ss (tenths dropped). */
void result_hms(char *buf, size_t n, double s);

#endif
