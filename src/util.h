/* util: small allocation wrappers, a growable string buffer, whole-file I/O, clocks,
 * SHA-256, and the always-on assertion.
 *
 * x*alloc abort on failure: use them only for small, fixed allocations. Anything sized
 * by input (pixels, pages, weights) is checked by the caller and fails that job with
 * VLQ_ENOMEM instead. */
#ifndef VLQ_UTIL_H
#define VLQ_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Always-on invariant check: logs file:line and aborts. For invariants that protect
 * data (state transitions, fencing, tensor shapes), not for input validation. */
#define VLQ_ASSERT(c) ((c) ? (void)0 : util_assert_fail(#c, __FILE__, __LINE__))
void util_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));

/* ---- allocation (abort on failure) ---- */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* A newly allocated formatted string; the caller frees it. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- string buffer: caller-owned struct, init with {0} ---- */
typedef struct {
    char *data; /* NUL-terminated contents, NULL until the first append */
    size_t len; /* bytes used, excluding the NUL */
    size_t cap; /* bytes allocated */
} Buf;
void buf_append(Buf *b, const void *data, size_t n);
void buf_puts(Buf *b, const char *s);
void buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append s as a JSON string literal (quoted, escaped); NULL appends null. */
void util_json_str(Buf *b, const char *s);
/* Append s for a terminal: control characters (C0, DEL, C1), backslashes and bytes that
 * are not UTF-8 written as \n, \t, \r, \\ or \xHH, so a file name or a stored error
 * cannot move the cursor or recolour the screen (as `ls -b`). NULL appends nothing. */
void util_buf_escaped(Buf *b, const char *s);
/* util_buf_escaped into a new string (the caller frees it); NULL gives "". */
char *util_escape(const char *s);
/* Release the contents and reset to empty. NULL-safe. */
void buf_clear(Buf *b);
/* Hand the contents (never NULL) to the caller, who frees them; b is reset. */
char *buf_take(Buf *b);

/* ---- files ---- */
/* Read a whole file into a new NUL-terminated buffer (*data, caller frees), at most
 * max_bytes (0: no limit). Returns 0 or VLQ_EIO/VLQ_EINPUT with "path: reason". */
int util_read_file(const char *path, size_t max_bytes, char **data, size_t *len, char *err);
/* Write a file atomically (temp file in the same folder, fsync, rename). */
int util_write_file(const char *path, const void *data, size_t len, char *err);
/* The absolute path of path (which must exist) in a new string, or NULL with err set. */
char *util_abspath(const char *path, char *err);

/* ---- clocks ---- */
int64_t util_now_ms(void);   /* wall clock, ms since the epoch */
double util_mono_s(void);    /* monotonic seconds, for durations */
void util_sleep_ms(int64_t ms);

/* ---- hashing ---- */
/* SHA-256 of a buffer as 64 lowercase hex chars + NUL into hex[65]. Cannot fail. */
void util_sha256_hex(const void *data, size_t len, char hex[65]);
/* SHA-256 of a file's contents, streamed. Returns 0 or VLQ_EIO with "path: reason". */
int util_sha256_file(const char *path, char hex[65], char *err);

/* ---- misc ---- */
/* Parse a whole string as a base-10 int64; 0 on success, -1 if not a number. */
int util_parse_i64(const char *s, int64_t *out);
/* Parse a whole string as a double; 0 on success, -1 if not a number. */
int util_parse_double(const char *s, double *out);

#endif
