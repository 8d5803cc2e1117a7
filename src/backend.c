/* backend: the choice of Backend by name, tensor views, and the host-memory parts
 * (alloc, weight views, read, write) that the ref and cpu tables share.
 *
 * Host weights are views into the model mapping: the mapping outlives every Tensor made
 * from it (the run state is freed before model_close). */
#include "backend.h"
#include "backend_int.h"
#include "err.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

Backend *backend_get(const char *name)
{
    if (!strcmp(name, "ref"))
        return &ops_ref_backend;
    if (!strcmp(name, "cpu"))
        return &backend_cpu;
    return NULL;
}

const char *backend_names(void)
{
    return "cpu, ref";
}

Tensor backend_view_rows(const Tensor *t, int64_t row0, int64_t n)
{
    assert(row0 >= 0 && n >= 0 && row0 + n <= t->rows);
    Tensor v = *t;
    v.rows = n;
    v.owned = 0;
    switch (t->type) {
    case QUANT_F32:
    case QUANT_F16:
    case QUANT_BF16:
        v.data = (char *)t->data + bk_dense_bytes(t->type, row0 * t->cols);
        break;
    case QUANT_Q8:
        v.data = (char *)t->data + row0 * t->cols;
        v.scale = (char *)t->scale + row0 * t->cols / t->group * 2;
        break;
    case QUANT_Q4:
        v.data = (char *)t->data + row0 * t->cols / 2;
        v.scale = (char *)t->scale + row0 * t->cols / t->group * 2;
        break;
    }
    return v;
}

Tensor backend_reshape(const Tensor *t, int64_t rows, int64_t cols)
{
    assert(rows * cols == t->rows * t->cols);
    assert(t->type == QUANT_F32 || t->type == QUANT_F16 || t->type == QUANT_BF16);
    Tensor v = *t;
    v.owned = 0;
    v.rows = rows;
    v.cols = cols;
    return v;
}

/* ---- host memory ---- */

int bk_host_alloc(Backend *b, Tensor *t, int64_t rows, int64_t cols, char *err)
{
    return bk_host_alloc_typed(b, t, QUANT_F32, rows, cols, err);
}

int bk_host_alloc_typed(Backend *b, Tensor *t, QuantType type, int64_t rows, int64_t cols,
                        char *err)
{
    memset(t, 0, sizeof *t);
    if (type != QUANT_F32 && type != QUANT_F16 && type != QUANT_BF16)
        return err_set(err, VLQ_EINPUT, "%s backend: cannot allocate a quantised tensor",
                       b->name);
    size_t n = (size_t)rows * (size_t)cols;
    /* 64-byte alignment keeps rows of the common widths on cache lines for SIMD loads. */
    size_t bytes = (bk_dense_bytes(type, (int64_t)n) + 63) / 64 * 64;
    void *p = bytes ? aligned_alloc(64, bytes) : NULL;
    if (bytes && !p)
        return err_set(err, VLQ_ENOMEM, "%s backend: out of memory for a [%lld, %lld] tensor",
                       b->name, (long long)rows, (long long)cols);
    if (p)
        memset(p, 0, bytes);
    *t = (Tensor){.type = type, .rows = rows, .cols = cols, .data = p, .owned = 1};
    return 0;
}

void bk_host_release(Backend *b, Tensor *t)
{
    if (!t)
        return;
    if (t->owned)
        free(t->data);
    memset(t, 0, sizeof *t);
}

int bk_host_weight(Backend *b, Tensor *t, QuantType type, int64_t rows, int64_t cols, int group,
                   const void *bytes, char *err)
{
    memset(t, 0, sizeof *t);
    if ((type == QUANT_Q4 || type == QUANT_Q8) && (group <= 0 || cols % group || group % 16))
        return err_set(err, VLQ_EMODEL, "%s backend: bad quantisation group %d for %lld columns",
                       b->name, group, (long long)cols);
    *t = (Tensor){.type = type, .rows = rows, .cols = cols, .group = group,
                  .data = (void *)bytes};
    if (type == QUANT_Q4 || type == QUANT_Q8)
        t->scale = (char *)bytes + quant_scale_offset(type, rows, cols);
    else
        t->group = 0;
    return 0;
}

void bk_host_write(Backend *b, Tensor *t, int64_t row0, const float *src, int64_t n)
{
    assert(t->type == QUANT_F32 && row0 + n <= t->rows);
    memcpy((float *)t->data + row0 * t->cols, src, (size_t)(n * t->cols) * 4);
}

void bk_host_read(Backend *b, const Tensor *t, int64_t row0, float *dst, int64_t n)
{
    assert(t->type == QUANT_F32 && row0 + n <= t->rows);
    memcpy(dst, (const float *)t->data + row0 * t->cols, (size_t)(n * t->cols) * 4);
}
