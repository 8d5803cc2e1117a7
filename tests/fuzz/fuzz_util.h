/* fuzz_util: what the file-reading fuzz targets share: the input bytes written to a
 * per-process temporary file, since the readers under test take a path (as the product
 * calls them). Header-only so every target stays one .c file (the Makefile builds one
 * binary per tests/fuzz/<name>.c). */
#ifndef VLQ_FUZZ_UTIL_H
#define VLQ_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The path of this process's scratch file NAME under $TMPDIR (or /tmp), in a static
 * buffer: a fuzzer process runs one input at a time. */
static const char *fuzz_path(const char *name)
{
    static char path[512];
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/vlq-fuzz-%d-%s", dir && *dir ? dir : "/tmp", (int)getpid(),
             name);
    return path;
}

/* Write the parts a[0..na) then b[0..nb) (b may be NULL) to path; abort on failure (the
 * harness, not the code under test, failed). */
static void fuzz_write(const char *path, const void *a, size_t na, const void *b, size_t nb)
{
    FILE *f = fopen(path, "wb");
    if (!f || (na && fwrite(a, 1, na, f) != na) || (nb && fwrite(b, 1, nb, f) != nb) ||
        fclose(f)) {
        perror(path);
        abort();
    }
}

/* A NUL-terminated copy of data[0..n) (caller frees). */
static char *fuzz_str(const uint8_t *data, size_t n)
{
    char *s = malloc(n + 1);
    if (!s)
        abort();
    memcpy(s, data, n);
    s[n] = 0;
    return s;
}

#endif
