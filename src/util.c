/* util: allocation, string buffer, file I/O, clocks, SHA-256 (see util.h).
 * Globals: one atomic counter that makes atomic-write temp names unique across threads
 * (mkstemp would do it, but creates mode 0600 where an output should get 0666 & ~umask). */
#define _GNU_SOURCE
#include "util.h"

#include "err.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void util_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "vlq: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}

static void *oom(size_t n)
{
    fprintf(stderr, "vlq: out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    return p ? p : oom(n);
}

void *xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    return p ? p : oom(count * size);
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    return q ? q : oom(n);
}

char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    VLQ_ASSERT(n >= 0);
    char *s = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* ---- string buffer ---- */

static void buf_reserve(Buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1)
        cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

void buf_append(Buf *b, const void *data, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void buf_puts(Buf *b, const char *s) { buf_append(b, s, strlen(s)); }

void buf_printf(Buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    VLQ_ASSERT(n >= 0);
    buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void util_json_str(Buf *b, const char *s)
{
    if (!s) {
        buf_puts(b, "null");
        return;
    }
    buf_puts(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            buf_printf(b, "\\%c", *p);
        else if (*p == '\n')
            buf_puts(b, "\\n");
        else if (*p == '\t')
            buf_puts(b, "\\t");
        else if (*p < 0x20)
            buf_printf(b, "\\u%04x", *p);
        else
            buf_append(b, p, 1);
    }
    buf_puts(b, "\"");
}

/* The length of the valid UTF-8 sequence at p (1..4), or 0 if it is not one; the
 * encodings of C1 controls (U+0080..U+009F) count as not valid, to be escaped. */
static size_t util_utf8_len(const unsigned char *p)
{
    size_t n = p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 ? 2 : 0;
    if (p[0] >= 0xf5)
        n = 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    if ((n == 2 && p[0] == 0xc2 && p[1] < 0xa0) || (n == 3 && p[0] == 0xe0 && p[1] < 0xa0) ||
        (n == 3 && p[0] == 0xed && p[1] >= 0xa0) || (n == 4 && p[0] == 0xf0 && p[1] < 0x90) ||
        (n == 4 && p[0] == 0xf4 && p[1] >= 0x90))
        return 0; /* C1 controls, overlong forms, surrogates, past U+10FFFF */
    return n;
}

/* util_buf_escaped: see util.h. */
void util_buf_escaped(Buf *b, const char *s)
{
    if (!s)
        return;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = *p < 0x80 ? 1 : util_utf8_len(p);
        if (*p == '\\')
            buf_puts(b, "\\\\");
        else if (*p == '\n')
            buf_puts(b, "\\n");
        else if (*p == '\t')
            buf_puts(b, "\\t");
        else if (*p == '\r')
            buf_puts(b, "\\r");
        else if (*p < 0x20 || *p == 0x7f || n == 0)
            buf_printf(b, "\\x%02x", *p);
        else
            buf_append(b, p, n);
        p += n ? n : 1;
    }
}

/* util_escape: see util.h. */
char *util_escape(const char *s)
{
    Buf b = {0};
    util_buf_escaped(&b, s);
    return buf_take(&b);
}

void buf_clear(Buf *b)
{
    if (!b)
        return;
    free(b->data);
    *b = (Buf){0};
}

char *buf_take(Buf *b)
{
    if (!b->data)
        return xstrdup("");
    char *s = b->data;
    *b = (Buf){0};
    return s;
}

/* ---- files: safe opening for reading, atomic writing (see util.h) ----
 * One place decides what a command may open and what a write may replace, so no
 * caller opens a path by itself: a FIFO given as an input would block open() or read()
 * forever, and a rename over a symlink or a FIFO would silently replace it. */

const char *util_file_type(mode_t mode)
{
    if (S_ISREG(mode))
        return "a regular file";
    if (S_ISDIR(mode))
        return "a directory";
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISCHR(mode))
        return "a character device";
    if (S_ISBLK(mode))
        return "a block device";
    if (S_ISSOCK(mode))
        return "a socket";
    if (S_ISLNK(mode))
        return "a symbolic link";
    return "not a file";
}

/* The error of a failed open/stat of path for reading. */
static int util_open_errno(const char *path, int e, char *err)
{
    if (e == ELOOP)
        return err_set(err, VLQ_EINPUT, "%s: symlink loop (too many levels of symbolic links)",
                       path);
    int input = e == ENOENT || e == EACCES || e == ENOTDIR || e == ENAMETOOLONG || e == EPERM ||
                e == ENXIO || e == ENODEV || e == EISDIR;
    return err_set(err, input ? VLQ_EINPUT : VLQ_EIO, "%s: %s", path, strerror(e));
}

int util_open_regular(const char *path, int extra_flags, int *fd, struct stat *st, char *err)
{
    *fd = -1;
    struct stat sb;
    /* a look first, so a device is refused without being opened (opening some has
     * effects); the fstat below is what decides, as the path may change meanwhile */
    if (stat(path, &sb) != 0)
        return util_open_errno(path, errno, err);
    if (!S_ISREG(sb.st_mode))
        return err_set(err, VLQ_EINPUT, "%s: not a regular file (%s)", path,
                       util_file_type(sb.st_mode));
    int f = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | extra_flags);
    if (f < 0)
        return util_open_errno(path, errno, err);
    if (fstat(f, &sb) != 0) {
        int e = errno;
        close(f);
        return err_set(err, VLQ_EIO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(f);
        return err_set(err, VLQ_EINPUT, "%s: not a regular file (%s)", path,
                       util_file_type(sb.st_mode));
    }
    int fl = fcntl(f, F_GETFL);
    if (fl < 0 || fcntl(f, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        int e = errno;
        close(f);
        return err_set(err, VLQ_EIO, "%s: %s", path, strerror(e));
    }
    if (st)
        *st = sb;
    *fd = f;
    return 0;
}

int util_fopen_regular(const char *path, FILE **f, struct stat *st, char *err)
{
    *f = NULL;
    int fd;
    int rc = util_open_regular(path, 0, &fd, st, err);
    if (rc)
        return rc;
    if (!(*f = fdopen(fd, "rb"))) {
        int e = errno;
        close(fd);
        return err_set(err, VLQ_EIO, "%s: %s", path, strerror(e));
    }
    return 0;
}

int util_read_file(const char *path, size_t max_bytes, char **data, size_t *len, char *err)
{
    *data = NULL;
    if (len)
        *len = 0;
    FILE *f;
    int rc = util_fopen_regular(path, &f, NULL, err);
    if (rc)
        return rc;
    Buf b = {0};
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (max_bytes && b.len + n > max_bytes) {
            fclose(f);
            buf_clear(&b);
            return err_set(err, VLQ_EINPUT, "%s: larger than %zu bytes", path, max_bytes);
        }
        buf_append(&b, chunk, n);
    }
    int failed = ferror(f);
    int saved = errno;
    fclose(f);
    if (failed) {
        buf_clear(&b);
        return err_set(err, VLQ_EIO, "%s: %s", path, strerror(saved));
    }
    if (len)
        *len = b.len;
    *data = buf_take(&b);
    return 0;
}

int util_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

/* The folder part of path in a new string ("." when there is none). */
static char *util_dirname(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return xstrdup(".");
    if (slash == path)
        return xstrdup("/");
    char *d = xmalloc((size_t)(slash - path) + 1);
    memcpy(d, path, (size_t)(slash - path));
    d[slash - path] = '\0';
    return d;
}

/* What a write to path replaces: path itself, or the final target of its symlink. A
 * new string, or NULL with err set when the rule refuses (see util.h). *exists and
 * *mode say whether the target exists and its permission bits. */
static char *util_atomic_target(const char *path, int *exists, mode_t *mode, char *err)
{
    struct stat ls, st;
    *exists = 0;
    *mode = 0;
    if (!path[0]) {
        err_set(err, VLQ_EINPUT, "empty output path");
        return NULL;
    }
    if (lstat(path, &ls) != 0) {
        if (errno == ENOENT)
            return xstrdup(path);
        util_open_errno(path, errno, err);
        return NULL;
    }
    char *target = NULL;
    if (S_ISLNK(ls.st_mode)) {
        target = realpath(path, NULL);
        if (!target) {
            if (errno == ENOENT)
                err_set(err, VLQ_EINPUT, "%s: a symlink to a missing file: not written "
                        "through (create the target, or remove the link)", path);
            else
                util_open_errno(path, errno, err);
            return NULL;
        }
        if (stat(target, &st) != 0) {
            util_open_errno(path, errno, err);
            free(target);
            return NULL;
        }
    } else {
        target = xstrdup(path);
        st = ls;
    }
    if (S_ISDIR(st.st_mode)) {
        err_set(err, VLQ_EINPUT, "%s: is a directory: not replaced by a file", path);
        free(target);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        err_set(err, VLQ_EINPUT, "%s: not a regular file (%s): not replaced", path,
                util_file_type(st.st_mode));
        free(target);
        return NULL;
    }
    *exists = 1;
    *mode = st.st_mode & 07777;
    return target;
}

int util_atomic_open(const char *path, int flags, UtilAtomic *a, char *err)
{
    static _Atomic unsigned util_atomic_seq; /* unique temp names across threads */
    memset(a, 0, sizeof *a);
    int exists;
    mode_t mode;
    char *target = util_atomic_target(path, &exists, &mode, err);
    if (!target)
        return VLQ_EINPUT;
    if (exists && (flags & UTIL_ATOMIC_NO_CLOBBER)) {
        free(target);
        return err_set(err, VLQ_EINPUT, "%s: exists (use --force to replace it)", path);
    }
    char *dir = util_dirname(target);
    const char *base = strrchr(target, '/');
    base = base ? base + 1 : target;
    char *tmp = xasprintf("%s/.%s.tmp.%ld.%u", dir, base, (long)getpid(), util_atomic_seq++);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0666);
    int rc = 0;
    if (fd < 0) {
        int e = errno;
        if (e == EACCES || e == EPERM || e == EROFS)
            rc = err_set(err, VLQ_EINPUT, "%s: read-only directory (%s): cannot write %s", dir,
                         e == EROFS ? "read-only file system" : "no permission to create files",
                         path);
        else if (e == ENOENT || e == ENOTDIR)
            rc = err_set(err, VLQ_EINPUT, "%s: no such directory: cannot write %s", dir, path);
        else
            rc = err_set(err, VLQ_EIO, "%s: %s", path, strerror(e));
    } else if (exists && fchmod(fd, mode) != 0) {
        rc = err_set(err, VLQ_EIO, "%s: %s", path, strerror(errno));
    } else if (!(a->f = fdopen(fd, "wb"))) {
        rc = err_set(err, VLQ_EIO, "%s: %s", path, strerror(errno));
    }
    free(dir);
    if (rc) {
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        free(tmp);
        free(target);
        memset(a, 0, sizeof *a);
        return rc;
    }
    a->path = xstrdup(path);
    a->target = target;
    a->tmp = tmp;
    a->flags = flags;
    return 0;
}

static void util_atomic_clear(UtilAtomic *a)
{
    free(a->path);
    free(a->target);
    free(a->tmp);
    memset(a, 0, sizeof *a);
}

void util_atomic_abort(UtilAtomic *a)
{
    if (!a)
        return;
    if (a->f)
        fclose(a->f);
    if (a->tmp)
        unlink(a->tmp);
    util_atomic_clear(a);
}

int util_atomic_commit(UtilAtomic *a, char *err)
{
    int rc = 0;
    if (fflush(a->f) != 0 || ferror(a->f))
        rc = err_set(err, VLQ_EIO, "%s: write failed: %s", a->path, strerror(errno));
    if (!rc && fsync(fileno(a->f)) != 0)
        rc = err_set(err, VLQ_EIO, "%s: %s", a->path, strerror(errno));
    if (fclose(a->f) != 0 && !rc)
        rc = err_set(err, VLQ_EIO, "%s: %s", a->path, strerror(errno));
    a->f = NULL;
    if (!rc) {
        /* the target may have been made a FIFO or a directory since the open: look again
         * just before the rename, which cannot be made conditional on the file type */
        int exists;
        mode_t mode;
        char *again = util_atomic_target(a->target, &exists, &mode, err);
        if (!again)
            rc = VLQ_EINPUT;
        free(again);
    }
    if (!rc && (a->flags & UTIL_ATOMIC_NO_CLOBBER)) {
        /* link() fails with EEXIST instead of replacing, unlike rename(); a file system
         * without hard links gets a look and a rename (a race, but no worse) */
        struct stat st;
        int e = link(a->tmp, a->target) == 0 ? 0 : errno;
        if ((e == EPERM || e == EOPNOTSUPP) && lstat(a->target, &st) != 0)
            e = rename(a->tmp, a->target) == 0 ? 0 : errno;
        else if (e == EPERM || e == EOPNOTSUPP)
            e = EEXIST;
        if (e)
            rc = e == EEXIST
                     ? err_set(err, VLQ_EINPUT, "%s: exists (use --force to replace it)", a->path)
                     : err_set(err, VLQ_EIO, "%s: %s", a->path, strerror(e));
    } else if (!rc && rename(a->tmp, a->target) != 0) {
        rc = err_set(err, VLQ_EIO, "%s: %s", a->path, strerror(errno));
    }
    unlink(a->tmp); /* after link() the name is still there; after rename() it is gone */
    if (!rc) {
        char *dir = util_dirname(a->target);
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd); /* the rename itself durable; a failure here changes nothing */
            close(dfd);
        }
        free(dir);
    }
    util_atomic_clear(a);
    return rc;
}

int util_write_file_ex(const char *path, int flags, const void *data, size_t len, char *err)
{
    UtilAtomic a;
    int rc = util_atomic_open(path, flags, &a, err);
    if (rc)
        return rc;
    if (len && fwrite(data, 1, len, a.f) != len) {
        rc = err_set(err, VLQ_EIO, "%s: write failed: %s", path, strerror(errno));
        util_atomic_abort(&a);
        return rc;
    }
    return util_atomic_commit(&a, err);
}

int util_write_file(const char *path, const void *data, size_t len, char *err)
{
    return util_write_file_ex(path, 0, data, len, err);
}

char *util_abspath(const char *path, char *err)
{
    char *abs = realpath(path, NULL); /* allocated: no PATH_MAX buffer to outgrow */
    if (!abs)
        util_open_errno(path, errno, err);
    return abs;
}

int util_numel(const int64_t *shape, int ndim, int64_t max, int64_t *numel)
{
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || __builtin_mul_overflow(n, shape[d], &n) || n > max)
            return -1;
    }
    *numel = n;
    return 0;
}

/* ---- clocks ---- */

int64_t util_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double util_mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void util_sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- hashing ---- */

static void hex_encode(const unsigned char *md, unsigned n, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    for (unsigned i = 0; i < n; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[2 * n] = '\0';
}

void util_sha256_hex(const void *data, size_t len, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    VLQ_ASSERT(EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) == 1);
    hex_encode(md, n, hex);
}

int util_sha256_fd(int fd, const char *path, char hex[65], char *err)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    VLQ_ASSERT(ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1);
    char chunk[1 << 16];
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = err_set(err, VLQ_EIO, "%s: %s", path, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        EVP_DigestUpdate(ctx, chunk, (size_t)n);
    }
    if (!rc) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned mdn = 0;
        EVP_DigestFinal_ex(ctx, md, &mdn);
        hex_encode(md, mdn, hex);
    }
    EVP_MD_CTX_free(ctx);
    return rc;
}

int util_sha256_file(const char *path, char hex[65], char *err)
{
    int fd;
    int rc = util_open_regular(path, 0, &fd, NULL, err);
    if (rc)
        return rc;
    rc = util_sha256_fd(fd, path, hex, err);
    close(fd);
    return rc;
}

/* ---- misc ---- */

int util_parse_i64(const char *s, int64_t *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

int util_parse_double(const char *s, double *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

/* The allow-lists of hosts ([webhooks] allow_hosts, [inputs] allowed_hosts): see util.h. */
int util_host_listed(const char *host, const char *list)
{
    size_t hlen = strlen(host);
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
        host++;
        hlen -= 2;
    }
    for (const char *p = list; *p;) {
        while (*p == ',' || isspace((unsigned char)*p))
            p++;
        const char *end = p;
        while (*end && *end != ',')
            end++;
        const char *e = end;
        while (e > p && isspace((unsigned char)e[-1]))
            e--;
        if (e - p >= 2 && *p == '[' && e[-1] == ']') {
            p++;
            e--;
        }
        if ((size_t)(e - p) == hlen && hlen > 0 && !strncasecmp(p, host, hlen))
            return 1;
        p = end;
    }
    return 0;
}
