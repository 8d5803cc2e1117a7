/* libFuzzer target for the webhook URL check: the bytes up to the first newline are the
 * URL, the rest the allowed-hosts list ([webhook] allow_hosts), both as C strings (an
 * embedded NUL ends them, as it would from the command line). webhook_check_url parses
 * with libcurl's URL API and applies the scheme, host and allow-list rules; any verdict
 * is fine, a crash, a leak or UB is not.
 * Build: make fuzz; run: build-fuzz/fuzz_url -max_total_time=600. */
#include "err.h"
#include "fuzz_util.h"
#include "webhook.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[VLQ_ERRLEN];
    if (webhook_global_init(err))
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_str(data, size);
    char *nl = memchr(s, '\n', size);
    const char *allow = "";
    if (nl) {
        *nl = 0;
        allow = nl + 1;
    }
    char err[VLQ_ERRLEN];
    webhook_check_url(s, allow, err);
    webhook_check_url(s, NULL, err);
    free(s);
    return 0;
}
