/* weights: name -> backend Tensor with shape checks (see weights.h). */
#include "weights.h"
#include "err.h"

#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

/* The backend copied mt (the cpu backend's packed layout, a device upload) and never
 * reads the mapping's bytes again: drop their pages so RSS holds the weights once. The
 * model is a private read-only file mapping, so this only drops pages (a later read
 * faults them in again from the file); only the page-aligned interior, as neighbours may
 * share the edge pages. */
static void weights_drop_pages(const ModelTensor *mt)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)mt->data + page - 1) / page * page;
    uintptr_t b = ((uintptr_t)mt->data + mt->nbytes) / page * page;
    if (b > a)
        madvise((void *)a, b - a, MADV_DONTNEED);
}

int weights_get(Backend *b, const Model *m, const char *name, int64_t rows, int64_t cols,
                Tensor *t, char *err)
{
    return weights_get_at(b, m, name, rows, cols, 0, t, err);
}

int weights_get_at(Backend *b, const Model *m, const char *name, int64_t rows, int64_t cols,
                   int mapped, Tensor *t, char *err)
{
    const ModelTensor *mt = model_tensor(m, name);
    if (!mt)
        return err_set(err, VLQ_EMODEL, "%s: missing from the model file", name);
    int64_t n = 1;
    for (int i = 0; i < mt->ndim; i++)
        n *= mt->shape[i];
    int64_t inner = mt->ndim > 1 ? n / mt->shape[0] : n;
    int64_t outer = mt->ndim > 1 ? mt->shape[0] : 1;
    if (n != rows * cols || (rows > 1 && (outer != rows || inner != cols)))
        return err_set(err, VLQ_EMODEL, "%s: shape [%lld, %lld] where [%lld, %lld] is needed",
                       name, (long long)outer, (long long)inner, (long long)rows,
                       (long long)cols);
    int rc = mapped && b->weight_mapped
                 ? b->weight_mapped(b, t, mt->type, rows, cols, mt->group, mt->data, err)
                 : b->weight(b, t, mt->type, rows, cols, mt->group, mt->data, err);
    if (rc)
        err_prefix(err, "%s", name);
    else if (t->owned)
        weights_drop_pages(mt);
    return rc;
}
