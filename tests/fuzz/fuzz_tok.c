/* libFuzzer target for tok: encode arbitrary bytes (valid or not), decode the ids back
 * and check decode(encode(s)) is the NFC of s when s is valid UTF-8 (NFC is idempotent:
 * encoding the decode gives the same ids), stream-decode arbitrary ids, and render a
 * chat prompt with the bytes as text. Build: make fuzz; run: build-fuzz/fuzz_tok.
 * The tokenizer comes from $VLQ_TOKENIZER, else tests/data/qwen3-tokenizer/tokenizer.json
 * under the current directory. */
#include "err.h"
#include "tok.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static Tok *fuzz_tok;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *path = getenv("VLQ_TOKENIZER");
    char err[VLQ_ERRLEN];
    if (tok_load_file(path ? path : "tests/data/qwen3-tokenizer/tokenizer.json", &fuzz_tok, err)) {
        fprintf(stderr, "fuzz_tok: %s\n", err);
        abort();
    }
    return 0;
}

static void fuzz_encode_decode(const uint8_t *data, size_t size)
{
    TokIds ids = {0}, again = {0};
    if (tok_encode(fuzz_tok, (const char *)data, size, &ids, NULL) != 0)
        return; /* invalid UTF-8: refused */
    size_t len;
    char *text = tok_decode(fuzz_tok, ids.ids, ids.n, 0, &len);
    if (tok_encode(fuzz_tok, text, len, &again, NULL) != 0)
        abort(); /* a decode of valid text is valid */
    if (again.n != ids.n || memcmp(again.ids, ids.ids, ids.n * sizeof *ids.ids))
        abort(); /* encode(decode(encode(s))) == encode(s) */
    free(text);
    tok_ids_clear(&ids);
    tok_ids_clear(&again);
}

static void fuzz_ids(const uint8_t *data, size_t size)
{
    size_t n = size / 3;
    int32_t *ids = malloc((n + 1) * sizeof *ids);
    for (size_t i = 0; i < n; i++) /* 3 bytes per id: the whole vocabulary and beyond */
        ids[i] = (int32_t)(data[3 * i] | data[3 * i + 1] << 8 | (data[3 * i + 2] & 3) << 16);
    size_t len;
    char *whole = tok_decode(fuzz_tok, ids, n, 0, &len);
    TokStream st;
    tok_stream_init(&st, fuzz_tok, 0);
    char *cat = malloc(len + 1);
    size_t at = 0, m;
    for (size_t i = 0; i < n; i++) {
        const char *p = tok_stream_push(&st, ids[i], &m);
        if (at + m > len)
            abort();
        memcpy(cat + at, p, m);
        at += m;
    }
    const char *p = tok_stream_flush(&st, &m);
    if (at + m != len)
        abort();
    memcpy(cat + at, p, m);
    if (memcmp(cat, whole, len))
        abort(); /* the stream equals the whole decode */
    tok_stream_clear(&st);
    free(cat);
    free(whole);
    free(ids);
}

static void fuzz_chat(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    double times[2] = {0.25, 1.0};
    TokPart parts[3] = {{.kind = TOK_PART_TEXT, .text = text},
                        {.kind = TOK_PART_VIDEO, .grid_t = 2, .grid_h = 4, .grid_w = 6,
                         .times_s = times},
                        {.kind = TOK_PART_IMAGE, .grid_t = 1, .grid_h = 2, .grid_w = 2}};
    TokChat chat = {.system = size % 2 ? text : NULL, .parts = parts, .n_parts = 3};
    TokPrompt pr = {0};
    size_t count = 0;
    int rc = tok_chat_encode(fuzz_tok, &chat, &pr, NULL);
    if (rc == 0 && (tok_chat_count(fuzz_tok, &chat, &count, NULL) != 0 || count != pr.ids.n ||
                    pr.n_pads != 3))
        abort();
    tok_prompt_clear(&pr);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    switch (data[0] % 3) {
    case 0: fuzz_encode_decode(data + 1, size - 1); break;
    case 1: fuzz_ids(data + 1, size - 1); break;
    default: fuzz_chat(data + 1, size - 1); break;
    }
    return 0;
}
