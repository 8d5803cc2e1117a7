/* vlq-backend-cputest.so: the cpu backend built as a plugin (the cpu sources compiled
 * with -fPIC and -fvisibility=hidden, this file the only export), so the loader and
 * every op are tested through the same path a device plugin takes. */
#include "backend.h"
#include "backend_int.h"

BACKEND_EXPORT const Backend *vlq_backend_entry(int abi_version);

/* The table for this ABI, or NULL for another. */
const Backend *vlq_backend_entry(int abi_version)
{
    static Backend table; /* the plugin's own copy, named apart from the built-in cpu */
    if (abi_version != BACKEND_ABI_VERSION)
        return NULL;
    table = backend_cpu;
    table.name = "cputest";
    return &table;
}
