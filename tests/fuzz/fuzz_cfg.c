/* libFuzzer target for cfg: the bytes up to the first NUL are a vlq.conf file, loaded
 * with cfg_load (inih, then every key's type and bounds); what follows is "key\0value",
 * applied with cfg_set as a flag would be. A loaded config is printed (text and JSON)
 * so every stored value is read back. Any error is fine; a crash, a leak or UB is not.
 * Build: make fuzz; run: build-fuzz/fuzz_cfg -max_total_time=600. */
#include "cfg.h"
#include "err.h"
#include "fuzz_util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t file_len = nul ? (size_t)(nul - data) : size;
    const char *path = fuzz_path("vlq.conf");
    fuzz_write(path, data, file_len, NULL, 0);

    char err[VLQ_ERRLEN];
    Cfg *c = NULL;
    if (cfg_load(path, &c, err) == 0) {
        if (nul) {
            size_t m = size - file_len - 1;
            char *rest = fuzz_str(nul + 1, m);
            size_t key_len = strlen(rest);
            const char *value = key_len < m ? rest + key_len + 1 : "";
            cfg_set(c, rest, value, "flag --fuzz", err);
            free(rest);
        }
        FILE *sink = fopen("/dev/null", "w");
        if (!sink)
            abort();
        cfg_print(c, sink, 0);
        cfg_print(c, sink, 1);
        fclose(sink);
        cfg_free(c);
    }
    unlink(path);
    return 0;
}
