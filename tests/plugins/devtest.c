/* vlq-backend-devtest.so: the cpu backend presented as a device, so the engine's device
 * memory plan, the layer offload (weight_mapped) and vlq doctor's device report run on a
 * machine without a GPU (tests/e2e/selftest.sh). Test-only: never installed.
 *
 * Its "device memory" is $VLQ_DEVTEST_MEM bytes (default 1 GiB), of which open sets 8 MiB
 * aside as a device backend's workspace would be (reserved_bytes); meminfo reports the
 * rest as free. weight_mapped makes the same host view as weight (the cpu kernels read
 * host memory either way) and counts its calls and bytes, which close prints to stderr
 * ("devtest: N weights mapped, B bytes"), so a test sees which layers were offloaded.
 * With $VLQ_DEVTEST_FAIL_SYNC = N, the N-th sync and every later one fail with
 * VLQ_EDEVICE, as a device that hit an illegal access would. */
#include "backend.h"
#include "backend_int.h"
#include "err.h"

#include <stdio.h>
#include <stdlib.h>

BACKEND_EXPORT const Backend *vlq_backend_entry(int abi_version);

#define DEVTEST_RESERVED ((int64_t)8 << 20)

typedef struct {
    int64_t mem;      /* the pretended device's memory */
    int64_t n_mapped; /* weight_mapped calls */
    int64_t mapped;   /* their bytes */
    int64_t fail_at;  /* the sync that fails first (0: none) */
    int64_t syncs;    /* syncs so far */
} DevTest;

static int devtest_open(Backend *b, const BackendOpenOptions *o, char *err)
{
    DevTest *d = calloc(1, sizeof *d);
    if (!d)
        return err_set(err, VLQ_ENOMEM, "devtest: out of memory");
    const char *env = getenv("VLQ_DEVTEST_MEM");
    d->mem = env && *env ? atoll(env) : (int64_t)1 << 30;
    env = getenv("VLQ_DEVTEST_FAIL_SYNC");
    d->fail_at = env && *env ? atoll(env) : 0;
    b->ctx = d;
    b->reserved_bytes = DEVTEST_RESERVED;
    return bk_host_open(b, o, err);
}

static void devtest_close(Backend *b)
{
    DevTest *d = b->ctx;
    if (d && d->n_mapped)
        fprintf(stderr, "devtest: %lld weights mapped, %lld bytes\n", (long long)d->n_mapped,
                (long long)d->mapped);
    free(d);
    b->ctx = NULL;
}

static int devtest_sync(Backend *b, char *err)
{
    DevTest *d = b->ctx;
    if (d->fail_at > 0 && ++d->syncs >= d->fail_at)
        return err_set(err, VLQ_EDEVICE, "devtest: an injected device error (sync %lld)",
                       (long long)d->syncs);
    return 0;
}

static int devtest_meminfo(Backend *b, int64_t *free_bytes, int64_t *total_bytes, char *err)
{
    DevTest *d = b->ctx;
    *total_bytes = d->mem;
    *free_bytes = d->mem > DEVTEST_RESERVED ? d->mem - DEVTEST_RESERVED : 0;
    return 0;
}

static void devtest_describe(Backend *b, char *buf, size_t len)
{
    DevTest *d = b->ctx;
    snprintf(buf, len, "devtest: the cpu backend as a pretend device of %lld bytes",
             (long long)d->mem);
}

static int devtest_weight_mapped(Backend *b, Tensor *t, QuantType type, int64_t rows,
                                 int64_t cols, int group, const void *bytes, char *err)
{
    DevTest *d = b->ctx;
    int rc = backend_cpu.weight(b, t, type, rows, cols, group, bytes, err);
    if (!rc) {
        d->n_mapped++;
        d->mapped += (int64_t)quant_nbytes(type, rows, cols, group ? group : 1);
    }
    return rc;
}

/* The table for this ABI, or NULL for another. */
const Backend *vlq_backend_entry(int abi_version)
{
    static Backend table;
    if (abi_version != BACKEND_ABI_VERSION)
        return NULL;
    table = backend_cpu;
    table.name = "devtest";
    table.flags = BACKEND_DEVICE;
    table.open = devtest_open;
    table.close = devtest_close;
    table.meminfo = devtest_meminfo;
    table.sync = devtest_sync;
    table.describe = devtest_describe;
    table.weight_mapped = devtest_weight_mapped;
    return &table;
}
