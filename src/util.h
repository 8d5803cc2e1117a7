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
#include <stdio.h>
#include <sys/types.h>

struct stat;

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

/* ---- files: safe opening for reading, atomic writing ----
 * Every file a command reads is opened with util_open_regular (or a wrapper below): it
 * never blocks on a FIFO or a device and refuses anything but a regular file with
 * "PATH: not a regular file (a FIFO)". Every file a command writes goes through
 * util_atomic_*: a temp file beside the target, fsync, rename. The rule for what may be
 * replaced (README "Files vlq writes"): a regular file is replaced; a symlink is written
 * through to its target when that target is a regular file (the link stays a link); a
 * FIFO, device, socket, directory, dangling symlink or symlink loop is refused, never
 * replaced. */

/* "a FIFO", "a directory", "a character device", ... for messages. Cannot fail. */
const char *util_file_type(mode_t mode);
/* Open path for reading without blocking (O_RDONLY|O_NONBLOCK|O_NOCTTY|O_CLOEXEC plus
 * extra_flags), fstat the descriptor and refuse anything but a regular file; then
 * clear O_NONBLOCK. On success *fd is the caller's to close and *st (may be NULL) its
 * fstat. Returns 0, VLQ_EINPUT (missing, unreadable, not a regular file, symlink loop)
 * or VLQ_EIO, with "path: reason". */
int util_open_regular(const char *path, int extra_flags, int *fd, struct stat *st, char *err);
/* util_open_regular as a stdio stream ("rb"); *f is the caller's to fclose. */
int util_fopen_regular(const char *path, FILE **f, struct stat *st, char *err);
/* Read a whole file into a new NUL-terminated buffer (*data, caller frees), at most
 * max_bytes (0: no limit). Returns 0 or VLQ_EIO/VLQ_EINPUT with "path: reason". */
int util_read_file(const char *path, size_t max_bytes, char **data, size_t *len, char *err);
/* 1 when a and b both exist and are the same file (device and inode, symlinks
 * followed), else 0. Cannot fail. */
int util_same_file(const char *a, const char *b);

/* An atomic write in progress: write to f, then util_atomic_commit or _abort. */
typedef struct {
    FILE *f;      /* the temp file, open for writing */
    char *path;   /* the path as the caller named it (for messages) */
    char *target; /* what the rename replaces: path, or its symlink's final target */
    char *tmp;    /* the temp file beside target */
    int flags;    /* UTIL_ATOMIC_* */
} UtilAtomic;
/* Refuse to replace an existing file: commit fails with VLQ_EINPUT "exists". */
#define UTIL_ATOMIC_NO_CLOBBER 1
/* Start writing path (rule above). Returns 0, VLQ_EINPUT (a target that may not be
 * replaced, an existing file under NO_CLOBBER, a read-only or missing directory) or
 * VLQ_EIO. On failure a is left empty and needs no abort. */
int util_atomic_open(const char *path, int flags, UtilAtomic *a, char *err);
/* Flush, fsync and close the temp file, rename it over the target, fsync the folder.
 * Returns 0 or VLQ_EIO/VLQ_EINPUT; the temp file is removed either way; a is cleared. */
int util_atomic_commit(UtilAtomic *a, char *err);
/* Drop the temp file. NULL-safe and safe on a cleared UtilAtomic. */
void util_atomic_abort(UtilAtomic *a);
/* Write a whole file atomically with util_atomic_* (flags as util_atomic_open). */
int util_write_file_ex(const char *path, int flags, const void *data, size_t len, char *err);
/* util_write_file_ex with flags 0: replace an existing regular file. */
int util_write_file(const char *path, const void *data, size_t len, char *err);
/* The absolute path of path (which must exist) in a new string, or NULL with err set. */
char *util_abspath(const char *path, char *err);
/* Elements of a tensor shape: 0 and *numel, or -1 when a dimension is negative or the
 * product exceeds max (checked at each step, so it never wraps). */
int util_numel(const int64_t *shape, int ndim, int64_t max, int64_t *numel);

/* 1 if host is one of the comma-separated names in list (case-insensitive, spaces around
 * a name ignored; an IPv6 literal matches with or without its brackets on either side),
 * else 0 (an empty list names nothing). */
int util_host_listed(const char *host, const char *list);

/* ---- clocks ---- */
int64_t util_now_ms(void);   /* wall clock, ms since the epoch */
double util_mono_s(void);    /* monotonic seconds, for durations */
void util_sleep_ms(int64_t ms);

/* ---- hashing ---- */
/* SHA-256 of a buffer as 64 lowercase hex chars + NUL into hex[65]. Cannot fail. */
void util_sha256_hex(const void *data, size_t len, char hex[65]);
/* SHA-256 of a file's contents, streamed (opened with util_open_regular). Returns 0 or
 * VLQ_EINPUT/VLQ_EIO with "path: reason". */
int util_sha256_file(const char *path, char hex[65], char *err);
/* SHA-256 of what remains to read from fd (path names it in messages). 0 or VLQ_EIO. */
int util_sha256_fd(int fd, const char *path, char hex[65], char *err);

/* ---- misc ---- */
/* Parse a whole string as a base-10 int64; 0 on success, -1 if not a number. */
int util_parse_i64(const char *s, int64_t *out);
/* Parse a whole string as a double; 0 on success, -1 if not a number. */
int util_parse_double(const char *s, double *out);

#endif
