/* prompts: the default prompt texts of each job kind, versioned.
 *
 * A prompt text never changes once released: a new wording is a new version with a
 * new constant, and PROMPTS_*_VERSION names the default, so a stored result can say
 * which prompt made it (the version goes into the job's result and feature-cache key).
 * Owns only constant strings; rendering them into a chat prompt is tok's job. */
#ifndef VLQ_PROMPTS_H
#define VLQ_PROMPTS_H

#define PROMPTS_OCR_VERSION 1
#define PROMPTS_SUMMARIZE_VERSION 1
#define PROMPTS_REDUCE_VERSION 1 /* "summarize.reduce": combining segment summaries */

/* The default prompt of kind ("ocr", "summarize", "summarize.reduce") at its current version, or NULL for
 * an unknown kind. *version (may be NULL) gets the version. Cannot fail. */
const char *prompts_default(const char *kind, int *version);

/* A specific version of a kind's prompt, or NULL if there is none. Cannot fail. */
const char *prompts_get(const char *kind, int version);

#endif
