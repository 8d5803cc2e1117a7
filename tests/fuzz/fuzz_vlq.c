/* libFuzzer target for the .vlq metadata reader (model_open) and the config parser
 * under it (model_config_parse). The file is built around the input: a valid 64-byte
 * header (magic, version, sizes, the metadata CRC32) whose metadata is the bytes up to
 * the first NUL, followed by the rest of the input as the data area, so the fuzzer
 * explores the JSON (config, tensor directory, blobs) rather than the checksum. An input
 * starting with 0xff is written raw, to fuzz the header itself. The same metadata bytes
 * also go to model_config_parse as a config.json text. Every tensor the reader lists is
 * read at its first and last byte: it promised they are inside the mapping.
 * Build: make fuzz; run: build-fuzz/fuzz_vlq -max_total_time=600. */
#include "err.h"
#include "fuzz_util.h"
#include "model.h"
#include "tok.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* The file image: header, metadata at offset 64, then the data area. */
static uint8_t *fuzz_image(const uint8_t *meta, size_t meta_len, const uint8_t *rest,
                           size_t rest_len, size_t *len)
{
    *len = MODEL_HEADER_SIZE + meta_len + rest_len;
    uint8_t *img = calloc(1, *len);
    if (!img)
        abort();
    memcpy(img, MODEL_MAGIC, 8);
    put_u32(img + 8, MODEL_VERSION);
    put_u32(img + 12, MODEL_HEADER_SIZE);
    put_u64(img + 16, *len);
    put_u64(img + 24, MODEL_HEADER_SIZE);
    put_u64(img + 32, meta_len);
    put_u32(img + 40, (uint32_t)crc32(0L, meta, (uInt)meta_len));
    memcpy(img + MODEL_HEADER_SIZE, meta, meta_len);
    if (rest_len)
        memcpy(img + MODEL_HEADER_SIZE + meta_len, rest, rest_len);
    return img;
}

static void fuzz_model(const Model *m)
{
    volatile unsigned sum = 0;
    for (int i = 0; i < model_tensor_count(m); i++) {
        const ModelTensor *t = model_tensor_at(m, i);
        if (model_tensor(m, t->name) == NULL)
            abort();
        if (t->nbytes)
            sum += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->nbytes - 1];
    }
    size_t len;
    model_tokenizer_json(m, &len);
    model_chat_template(m);
    model_config(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_path("model.vlq");
    const uint8_t *nul = memchr(data, 0, size);
    size_t meta_len = nul ? (size_t)(nul - data) : size;
    if (size && data[0] == 0xff) {
        fuzz_write(path, data + 1, size - 1, NULL, 0);
    } else {
        size_t len;
        uint8_t *img = fuzz_image(data, meta_len, nul ? nul + 1 : NULL,
                                  nul ? size - meta_len - 1 : 0, &len);
        fuzz_write(path, img, len, NULL, 0);
        free(img);
    }
    char err[VLQ_ERRLEN];
    Model *m = NULL;
    if (model_open_ex(path, MODEL_OPEN_NO_POPULATE, &m, err) == 0) {
        fuzz_model(m);
        model_close(m);
    }
    unlink(path);

    char *text = fuzz_str(data, meta_len);
    ModelConfig cfg;
    model_config_parse(text, NULL, &cfg, err);
    free(text);
    return 0;
}
