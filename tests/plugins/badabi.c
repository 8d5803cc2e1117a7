/* Broken plugins for the loader's error tests. Built twice:
 *   -DBADABI_REFUSE=1: vlq-backend-refuse.so, whose entry refuses every ABI version
 *     (what a plugin built against another backend.h does);
 *   otherwise: vlq-backend-badabi.so, whose entry ignores the version it is given and
 *     returns a table claiming the next ABI version (a careless plugin). */
#include "backend.h"

BACKEND_EXPORT const Backend *vlq_backend_entry(int abi_version);

#ifdef BADABI_REFUSE
const Backend *vlq_backend_entry(int abi_version)
{
    return NULL;
}
#else
static const Backend badabi_table = {.abi_version = BACKEND_ABI_VERSION + 1, .name = "badabi"};

const Backend *vlq_backend_entry(int abi_version)
{
    return &badabi_table;
}
#endif
