/* fixture: the loader of golden fixture files (tests/golden/fx_*.bin), written by
 * tests/golden/gen.py from Hugging Face transformers.
 *
 * A fixture holds named f32 or i32 arrays with shapes, and a JSON metadata text (the
 * transformers and torch versions, the prompt, notes). The whole file is read into
 * memory; arrays are borrowed views into it, valid until fixture_close. The format and
 * the arrays each fixture carries are described in tests/golden/README.md. Test code
 * only: the product never reads fixtures. */
#ifndef VLQ_FIXTURE_H
#define VLQ_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#define FIXTURE_MAGIC "VLQFIXT"  /* 8 bytes on disk with the NUL */
#define FIXTURE_VERSION 1

enum { FIXTURE_F32 = 0, FIXTURE_I32 = 1 };

typedef struct {
    const char *name;  /* e.g. "vision.image.merger", NUL-terminated */
    int dtype;         /* FIXTURE_F32 or FIXTURE_I32 */
    int ndim;          /* 1..4 */
    int64_t shape[4];  /* outermost first; unused dims are 1 */
    size_t n;          /* number of elements, the product of the shape */
    const void *data;  /* n floats or int32s, 16-byte aligned */
} FixtureArray;

typedef struct Fixture Fixture;

/* Read and check a fixture file. Returns 0 and *out, or VLQ_EIO / VLQ_EINPUT with err
 * set to "path: reason" (missing, truncated, bad magic, wrong version, bad record). */
int fixture_open(const char *path, Fixture **out, char *err);
/* Free. NULL-safe. */
void fixture_close(Fixture *f);

/* The array called name, or NULL. */
const FixtureArray *fixture_find(const Fixture *f, const char *name);
/* The f32 (i32) data of the array called name and its element count in *n (may be
 * NULL); NULL when absent or of the other dtype. */
const float *fixture_f32(const Fixture *f, const char *name, size_t *n);
const int32_t *fixture_i32(const Fixture *f, const char *name, size_t *n);
/* Number of arrays and the i-th one, in file order. */
int fixture_count(const Fixture *f);
const FixtureArray *fixture_at(const Fixture *f, int i);
/* The metadata JSON text (NUL-terminated). */
const char *fixture_meta(const Fixture *f);

#endif
