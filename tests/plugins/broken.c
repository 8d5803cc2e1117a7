/* vlq-backend-broken.so: the cpu backend with one op wrong, so `vlq selftest` is seen to
 * refuse a backend (tests/e2e/selftest.sh): its rmsnorm adds 1e-2 to the first element
 * of every row, an error far above the op's tolerance that only a check can see (the
 * output is otherwise right, finite and plausible). Test-only: never installed. */
#include "backend.h"
#include "backend_int.h"

BACKEND_EXPORT const Backend *vlq_backend_entry(int abi_version);

/* cpu's rmsnorm, then the deliberate error. */
static void broken_rmsnorm(Backend *b, Tensor *y, const Tensor *x, const Tensor *w, float eps)
{
    backend_cpu.rmsnorm(b, y, x, w, eps);
    for (int64_t r = 0; r < y->rows; r++)
        ((float *)y->data)[r * y->cols] += 1e-2f;
}

/* The table for this ABI, or NULL for another. */
const Backend *vlq_backend_entry(int abi_version)
{
    static Backend table;
    if (abi_version != BACKEND_ABI_VERSION)
        return NULL;
    table = backend_cpu;
    table.name = "broken";
    table.rmsnorm = broken_rmsnorm;
    return &table;
}
