/* libFuzzer target for the safetensors header reader. The file is built around the
 * input so the fuzzer spends its time in the JSON header, not on the length prefix: the
 * bytes up to the first NUL are the header (its u64 length prefixed as a writer would),
 * the rest is the data section. An input starting with 0xff is written raw instead, so
 * the length prefix itself is fuzzed too. Every listed tensor's first and last data
 * bytes are read: the reader promised they are inside the mapping. Any error is fine.
 * Build: make fuzz; run: build-fuzz/fuzz_safetensors -max_total_time=600. */
#include "err.h"
#include "fuzz_util.h"
#include "safetensors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Read the first and last byte of every tensor (a fault here is the reader's bug). */
static unsigned fuzz_touch(const SafeSet *s)
{
    unsigned sum = 0;
    for (int i = 0; i < safetensors_count(s); i++) {
        const SafeTensor *t = safetensors_at(s, i);
        if (!safetensors_find(s, t->name))
            abort(); /* every listed name is found */
        if (t->nbytes) {
            sum += ((const volatile uint8_t *)t->data)[0];
            sum += ((const volatile uint8_t *)t->data)[t->nbytes - 1];
        }
    }
    return sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_path("model.safetensors");
    if (size && data[0] == 0xff) {
        fuzz_write(path, data + 1, size - 1, NULL, 0);
    } else {
        const uint8_t *nul = memchr(data, 0, size);
        size_t hlen = nul ? (size_t)(nul - data) : size;
        uint8_t *buf = malloc(8 + size + 1);
        if (!buf)
            abort();
        for (int i = 0; i < 8; i++)
            buf[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
        memcpy(buf + 8, data, hlen);
        size_t rest = nul ? size - hlen - 1 : 0;
        if (rest)
            memcpy(buf + 8 + hlen, nul + 1, rest);
        fuzz_write(path, buf, 8 + hlen + rest, NULL, 0);
        free(buf);
    }
    char err[VLQ_ERRLEN];
    SafeSet *s = NULL;
    if (safetensors_open_file(path, &s, err) == 0) {
        fuzz_touch(s);
        safetensors_close(s);
    }
    unlink(path);
    return 0;
}
