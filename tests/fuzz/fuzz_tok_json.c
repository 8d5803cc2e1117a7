/* libFuzzer target for tok's loader: arbitrary bytes as a tokenizer.json (the scanner for
 * model.vocab and model.merges, jansson for the rest, the checks of the Qwen form). A
 * tokenizer that loads is used once. Build: make fuzz; run: build-fuzz/fuzz_tok_json,
 * best with the seed made by -seed_inputs or a small real file as corpus. */
#include "err.h"
#include "tok.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Tok *t = NULL;
    char err[VLQ_ERRLEN];
    if (tok_load_json((const char *)data, size, "fuzz", &t, err) != 0)
        return 0;
    TokIds ids = {0};
    static const char text[] = "Hello <x> world's 123 \xe4\xbd\xa0";
    tok_encode(t, text, sizeof text - 1, &ids, NULL);
    free(tok_decode(t, ids.ids, ids.n, 0, NULL));
    tok_ids_clear(&ids);
    tok_free(t);
    return 0;
}
