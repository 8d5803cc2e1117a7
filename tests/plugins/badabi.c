/* Broken plugins for the loader's error tests. Built twice:
 *   -DBADABI_REFUSE=1: vlq-backend-refuse.so, whose entry refuses every ABI version
 *     (what a plugin built against another backend.h does);
 *   -DBADABI_EMPTY=1: vlq-backend-empty.so, this ABI version but a table with no ops;
 *   otherwise: vlq-backend-badabi.so, whose entry ignores the version it is given and
 *     returns a table claiming the next ABI version (a careless plugin). */
#include "backend.h"

BACKEND_EXPORT const Backend *vlq_backend_entry(int abi_version);

#if defined(BADABI_REFUSE)
const Backend *vlq_backend_entry(int abi_version)
{
    return NULL;
}
#elif defined(BADABI_EMPTY)
static const Backend empty_table = {.abi_version = BACKEND_ABI_VERSION, .name = "empty"};

const Backend *vlq_backend_entry(int abi_version)
{
    return &empty_table;
}
#else
static const Backend badabi_table = {.abi_version = BACKEND_ABI_VERSION + 1, .name = "badabi"};

const Backend *vlq_backend_entry(int abi_version)
{
    return &badabi_table;
}
#endif
