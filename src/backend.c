/* backend: the choice of Backend by name, tensor views, and the host-memory parts
 * (alloc, weight views, read, write) that the ref and cpu tables share.
 *
 * Host weights are views into the model mapping: the mapping outlives every Tensor made
 * from it (the run state is freed before model_close). */
#include "backend.h"
#include "backend_int.h"
#include "cpucaps.h"
#include "err.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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
    int owned = 1;
    void *p = NULL;
    if (bytes >= BK_MMAP_MIN) {
        /* Large tensors (the KV cache above all) come from the kernel as zero pages that
         * take memory only once written: a slot's KV rows cost RSS as its context fills,
         * while the memory plan still counts them whole. */
        p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            p = NULL;
        owned = BK_OWNED_MMAP;
    } else if (bytes) {
        p = aligned_alloc(64, bytes);
        if (p)
            memset(p, 0, bytes);
    }
    if (bytes && !p)
        return err_set(err, VLQ_ENOMEM, "%s backend: out of memory for a [%lld, %lld] tensor",
                       b->name, (long long)rows, (long long)cols);
    *t = (Tensor){.type = type, .rows = rows, .cols = cols, .data = p, .owned = owned};
    return 0;
}

void bk_host_release(Backend *b, Tensor *t)
{
    if (!t)
        return;
    if (t->owned == BK_OWNED_MMAP)
        munmap(t->data, (bk_dense_bytes(t->type, t->rows * t->cols) + 63) / 64 * 64);
    else if (t->owned)
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

/* ---- host lifecycle ---- */

int bk_host_open(Backend *b, const BackendOpenOptions *o, char *err)
{
    if (o && o->threads > 0)
        omp_set_num_threads(o->threads);
    return 0;
}

int bk_host_sync(Backend *b, char *err)
{
    return 0; /* host ops finish before they return */
}

/* The first number of the line starting with key in /proc/meminfo, in bytes; -1. */
static int64_t bk_meminfo_field(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    if (!p)
        return -1;
    long long kb;
    if (sscanf(p + strlen(key), " %lld", &kb) != 1)
        return -1;
    return (int64_t)kb * 1024;
}

/* A cgroup v2 memory file's value in bytes; -1 when absent or "max". */
static int64_t bk_cgroup_value(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long long v = -1;
    if (fscanf(f, "%lld", &v) != 1)
        v = -1;
    fclose(f);
    return v;
}

int bk_host_meminfo(Backend *b, int64_t *free_bytes, int64_t *total_bytes, char *err)
{
    *free_bytes = *total_bytes = 0;
    char text[8192];
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return err_set(err, VLQ_EIO, "/proc/meminfo: %s", strerror(errno));
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    int64_t total = bk_meminfo_field(text, "MemTotal:"),
            avail = bk_meminfo_field(text, "MemAvailable:");
    if (total < 0 || avail < 0)
        return err_set(err, VLQ_EIO, "/proc/meminfo: no MemTotal or MemAvailable");
    /* In a container the cgroup's limit is what the kernel enforces (the OOM killer
     * acts on it), not the machine's memory. */
    int64_t limit = bk_cgroup_value("/sys/fs/cgroup/memory.max"),
            used = bk_cgroup_value("/sys/fs/cgroup/memory.current");
    if (limit > 0 && limit < total) {
        total = limit;
        int64_t left = used >= 0 ? limit - used : limit;
        if (left < avail)
            avail = left > 0 ? left : 0;
    }
    *free_bytes = avail;
    *total_bytes = total;
    return 0;
}

void bk_host_describe(Backend *b, char *buf, size_t len)
{
    snprintf(buf, len, "%s: host memory, CPU features: %s", b->name,
             cpucaps_describe(cpucaps_get()));
}
