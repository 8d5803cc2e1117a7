/* util: allocation, string buffer, file I/O, clocks, SHA-256 (see util.h). */
#include "util.h"

#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* ---- files ---- */

int util_read_file(const char *path, size_t max_bytes, char **data, size_t *len, char *err)
{
    *data = NULL;
    if (len)
        *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return err_set(err, errno == ENOENT || errno == EACCES ? VLQ_EINPUT : VLQ_EIO, "%s: %s",
                       path, strerror(errno));
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

int util_write_file(const char *path, const void *data, size_t len, char *err)
{
    char *tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int rc = 0;
    if (fd < 0) {
        rc = err_set(err, VLQ_EIO, "%s: %s", path, strerror(errno));
        goto out;
    }
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            rc = err_set(err, VLQ_EIO, "%s: %s", path, strerror(errno));
            break;
        }
        p += w;
        len -= (size_t)w;
    }
    if (rc == 0 && fsync(fd) != 0)
        rc = err_set(err, VLQ_EIO, "%s: %s", path, strerror(errno));
    if (close(fd) != 0 && rc == 0)
        rc = err_set(err, VLQ_EIO, "%s: %s", path, strerror(errno));
    if (rc == 0 && rename(tmp, path) != 0)
        rc = err_set(err, VLQ_EIO, "%s: %s", path, strerror(errno));
    if (rc != 0)
        unlink(tmp);
out:
    free(tmp);
    return rc;
}

char *util_abspath(const char *path, char *err)
{
    char buf[PATH_MAX];
    if (!realpath(path, buf)) {
        err_set(err, VLQ_EINPUT, "%s: %s", path, strerror(errno));
        return NULL;
    }
    return xstrdup(buf);
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

int util_sha256_file(const char *path, char hex[65], char *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return err_set(err, errno == ENOENT || errno == EACCES ? VLQ_EINPUT : VLQ_EIO, "%s: %s",
                       path, strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    VLQ_ASSERT(ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1);
    char chunk[1 << 16];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        EVP_DigestUpdate(ctx, chunk, n);
    int rc = 0;
    if (ferror(f)) {
        rc = err_set(err, VLQ_EIO, "%s: %s", path, strerror(errno));
    } else {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned mdn = 0;
        EVP_DigestFinal_ex(ctx, md, &mdn);
        hex_encode(md, mdn, hex);
    }
    EVP_MD_CTX_free(ctx);
    fclose(f);
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
