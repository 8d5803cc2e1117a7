/* fixture: golden fixture files (see fixture.h; the writer is tests/golden/gen.py).
 *
 * The file is read whole (a few hundred KB) and parsed once; every length and offset is
 * checked against the file size before use, so a truncated or damaged fixture is an
 * error message, not a crash. */
#include "fixture.h"

#include "err.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#define FIXTURE_HEADER_SIZE 24
#define FIXTURE_MAX_ARRAYS 4096

struct Fixture {
    char *buf;           /* the whole file */
    size_t len;
    char *meta;          /* NUL-terminated copy of the metadata */
    FixtureArray *arrays;
    char **names;        /* NUL-terminated copies of the names */
    int count;
};

static uint32_t fixture_u32(const char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v; /* little-endian host (x86-64, aarch64) */
}

static size_t fixture_pad16(size_t off) { return (off + 15) / 16 * 16; }

/* Read a u32 at *off, advancing it; -1 when the file ends first. */
static int fixture_take_u32(const Fixture *f, size_t *off, uint32_t *v)
{
    if (*off > f->len || f->len - *off < 4)
        return -1;
    *v = fixture_u32(f->buf + *off);
    *off += 4;
    return 0;
}

static int fixture_parse_array(Fixture *f, size_t *off, int i, char *err)
{
    uint32_t name_len, dtype, ndim;
    if (fixture_take_u32(f, off, &name_len) || name_len == 0 || name_len > 1024 ||
        f->len - *off < name_len)
        return err_set(err, VLQ_EINPUT, "array %d: truncated or bad name", i);
    f->names[i] = xmalloc(name_len + 1);
    memcpy(f->names[i], f->buf + *off, name_len);
    f->names[i][name_len] = '\0';
    *off += name_len;
    if (fixture_take_u32(f, off, &dtype) || fixture_take_u32(f, off, &ndim))
        return err_set(err, VLQ_EINPUT, "%s: truncated", f->names[i]);
    if (dtype > FIXTURE_I32 || ndim < 1 || ndim > 4)
        return err_set(err, VLQ_EINPUT, "%s: bad dtype %u or ndim %u", f->names[i], dtype, ndim);
    FixtureArray *a = &f->arrays[i];
    a->name = f->names[i];
    a->dtype = (int)dtype;
    a->ndim = (int)ndim;
    a->n = 1;
    for (int d = 0; d < 4; d++) {
        uint32_t dim = 1;
        if (d < (int)ndim && fixture_take_u32(f, off, &dim))
            return err_set(err, VLQ_EINPUT, "%s: truncated shape", a->name);
        a->shape[d] = dim;
        if (dim > (1u << 28) || a->n > ((size_t)1 << 32))
            return err_set(err, VLQ_EINPUT, "%s: shape too large", a->name);
        a->n *= dim;
    }
    *off = fixture_pad16(*off);
    if (*off > f->len || (f->len - *off) / 4 < a->n)
        return err_set(err, VLQ_EINPUT, "%s: truncated data", a->name);
    a->data = f->buf + *off;
    *off = fixture_pad16(*off + a->n * 4);
    return 0;
}

static int fixture_parse(Fixture *f, char *err)
{
    if (f->len < FIXTURE_HEADER_SIZE || memcmp(f->buf, FIXTURE_MAGIC, 8))
        return err_set(err, VLQ_EINPUT, "not a vlq fixture (bad magic)");
    uint32_t version = fixture_u32(f->buf + 8), header = fixture_u32(f->buf + 12);
    uint32_t count = fixture_u32(f->buf + 16), meta_len = fixture_u32(f->buf + 20);
    if (version != FIXTURE_VERSION)
        return err_set(err, VLQ_EINPUT, "fixture version %u, this loader reads %d", version,
                       FIXTURE_VERSION);
    if (header < FIXTURE_HEADER_SIZE || header > f->len || f->len - header < meta_len ||
        count > FIXTURE_MAX_ARRAYS)
        return err_set(err, VLQ_EINPUT, "bad header (size %u, %u arrays, metadata %u bytes)",
                       header, count, meta_len);
    f->meta = xmalloc(meta_len + 1);
    memcpy(f->meta, f->buf + header, meta_len);
    f->meta[meta_len] = '\0';
    f->arrays = xcalloc(count ? count : 1, sizeof *f->arrays);
    f->names = xcalloc(count ? count : 1, sizeof *f->names);
    f->count = (int)count;
    size_t off = fixture_pad16((size_t)header + meta_len);
    for (int i = 0; i < f->count; i++) {
        int rc = fixture_parse_array(f, &off, i, err);
        if (rc)
            return rc;
    }
    return 0;
}

int fixture_open(const char *path, Fixture **out, char *err)
{
    *out = NULL;
    Fixture *f = xcalloc(1, sizeof *f);
    int rc = util_read_file(path, 0, &f->buf, &f->len, err);
    if (rc) {
        free(f);
        return rc;
    }
    rc = fixture_parse(f, err);
    if (rc) {
        err_prefix(err, "%s", path);
        fixture_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

void fixture_close(Fixture *f)
{
    if (!f)
        return;
    for (int i = 0; f->names && i < f->count; i++)
        free(f->names[i]);
    free(f->names);
    free(f->arrays);
    free(f->meta);
    free(f->buf);
    free(f);
}

const FixtureArray *fixture_find(const Fixture *f, const char *name)
{
    for (int i = 0; i < f->count; i++)
        if (!strcmp(f->arrays[i].name, name))
            return &f->arrays[i];
    return NULL;
}

const float *fixture_f32(const Fixture *f, const char *name, size_t *n)
{
    const FixtureArray *a = fixture_find(f, name);
    if (!a || a->dtype != FIXTURE_F32)
        return NULL;
    if (n)
        *n = a->n;
    return a->data;
}

const int32_t *fixture_i32(const Fixture *f, const char *name, size_t *n)
{
    const FixtureArray *a = fixture_find(f, name);
    if (!a || a->dtype != FIXTURE_I32)
        return NULL;
    if (n)
        *n = a->n;
    return a->data;
}

int fixture_count(const Fixture *f) { return f->count; }
const FixtureArray *fixture_at(const Fixture *f, int i) { return &f->arrays[i]; }
const char *fixture_meta(const Fixture *f) { return f->meta; }
