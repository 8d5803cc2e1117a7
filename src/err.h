/* err: the error vocabulary shared by every module.
 *
 * A function that can fail for reasons outside the program returns int: 0 or a
 * negative VLQ_E* code, and writes one line (no trailing newline) into the caller's
 * char err[VLQ_ERRLEN], passed last; err may be NULL. Messages name the thing, then
 * the reason: "scan.pdf: page 3: Invalid data found when processing input".
 * This module owns the table that says, for each code, whether a job failing with it
 * is retried, which exit status a command returns, and its log level. */
#ifndef VLQ_ERR_H
#define VLQ_ERR_H

#include <stddef.h>

#define VLQ_ERRLEN 256

enum {
    VLQ_OK = 0,
    VLQ_EINPUT = -1,  /* bad media, config or arguments: deterministic, no retry */
    VLQ_EBUSY = -2,   /* database locked, lease lost: transient */
    VLQ_ENOMEM = -3,  /* the memory plan (or an input-sized allocation) refuses */
    VLQ_EMODEL = -4,  /* model file missing, wrong or corrupt */
    VLQ_EIO = -5,     /* I/O error: transient */
    VLQ_EDEVICE = -6, /* accelerator error: transient */
    VLQ_ENET = -7,    /* network error: transient */
    VLQ_ECANCEL = -8, /* the job was cancelled */
    VLQ_ENOTSUP = -9, /* unsupported format or feature: deterministic */
};

/* Write "fmt..." into err (if not NULL) and return code. */
int err_set(char *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Prefix err in place with "context: " (if err is not NULL and not empty). */
void err_prefix(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The code's short name ("EINPUT"); "EUNKNOWN" for an unknown code. Cannot fail. */
const char *err_name(int code);

/* 1 if a job that failed with code should be retried (transient), else 0. */
int err_is_transient(int code);

#endif
