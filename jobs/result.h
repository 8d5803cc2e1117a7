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

#include "queue.h"
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
/* The hh:mm:ss time of s seconds into buf (fractions dropped). Cannot fail. */
void result_hms(char *buf, size_t n, double s);

/* ---- building the stored documents from the job's units ---- */

/* The ocr document of input from its units (each with meta {"page": N}), in unit order.
 * prompt_version 0 means the job's own prompt. *n_failed gets the failed pages. Returns
 * the JSON text (caller frees). Cannot fail. */
char *result_ocr_doc(const char *input, int prompt_version, const JobUnit *units, int n,
                     int *n_failed);
/* The summarize document: units[0..n) are the segments (meta {"start_s", "end_s",
 * "frames"}), in order; summary the whole video's. Returns the JSON text (caller frees).
 * Cannot fail. */
char *result_summary_doc(const char *input, int prompt_version, double duration_s,
                         double fps, const JobUnit *units, int n, const char *summary);

/* Group n consecutive items of tok[i] tokens for one reduce round: each group's
 * overhead_tok + sum of its items' tokens stays <= limit_tok; greedy in order, so every
 * group but the last holds at least two items when any two fit together. group[i] gets
 * item i's group. Returns the number of groups, or VLQ_EINPUT when two items (or one)
 * cannot fit together (the rounds would not shrink: err says the numbers). */
int result_reduce_groups(const int64_t *tok, int n, int64_t overhead_tok, int64_t limit_tok,
                         int *group, char *err);

#endif
