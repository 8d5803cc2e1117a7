/* Tests of tok: encode/decode against the reference fixtures in tests/tok/ (made by
 * tests/tok/gen_fixtures.py with HF tokenizers and transformers), the 1 MB text, the
 * streaming decoder, the chat prompt, and the errors. */
#include "err.h"
#include "test.h"
#include "tok.h"
#include "util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static Tok *tok_test_load(void)
{
    char path[4096], err[VLQ_ERRLEN];
    snprintf(path, sizeof path, "%s/tests/data/qwen3-tokenizer/tokenizer.json", test_root());
    Tok *t = NULL;
    if (tok_load_file(path, &t, err))
        test_fail(__FILE__, __LINE__, "load: %s", err);
    return t;
}

static json_t *tok_test_fixture(const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/tok/%s", test_root(), name);
    json_error_t jerr;
    json_t *j = json_load_file(path, JSON_ALLOW_NUL, &jerr);
    if (!j)
        test_fail(__FILE__, __LINE__, "%s: %s", path, jerr.text);
    return j;
}

/* Compare ids with a JSON array; prints the first difference. Returns 1 if equal. */
static int tok_test_same(const TokIds *ids, const json_t *want, const char *what)
{
    size_t n = json_array_size(want);
    for (size_t i = 0; i < n || i < ids->n; i++) {
        long long w = i < n ? json_integer_value(json_array_get(want, i)) : -1;
        long long g = i < ids->n ? ids->ids[i] : -1;
        if (w != g) {
            test_fail(__FILE__, __LINE__, "%.60s: id %zu: got %lld, want %lld (%zu vs %zu ids)",
                      what, i, g, w, ids->n, n);
            return 0;
        }
    }
    return 1;
}

static void test_corpus(void)
{
    Tok *t = tok_test_load();
    json_t *fx = tok_test_fixture("corpus.json");
    json_t *cases = json_object_get(fx, "cases"), *c;
    size_t i, bad = 0;
    CHECK(json_array_size(cases) >= 300);
    json_array_foreach(cases, i, c) {
        json_t *text = json_object_get(c, "text");
        const char *s = json_string_value(text);
        size_t len = json_string_length(text);
        TokIds ids = {0};
        char err[VLQ_ERRLEN];
        CHECK_EQ(tok_encode(t, s, len, &ids, err), 0);
        if (!tok_test_same(&ids, json_object_get(c, "ids"), s))
            bad++;
        json_t *d = json_object_get(c, "decoded");
        const char *want = d ? json_string_value(d) : s;
        size_t want_len = d ? json_string_length(d) : len, got_len;
        char *got = tok_decode(t, ids.ids, ids.n, 0, &got_len);
        if (got_len != want_len || memcmp(got, want, want_len)) {
            test_fail(__FILE__, __LINE__, "case %zu: decode(encode(s)) != NFC(s): \"%.60s\"", i, got);
            bad++;
        }
        free(got);
        tok_ids_clear(&ids);
    }
    CHECK_EQ(bad, 0);
    json_decref(fx);
    tok_free(t);
}

/* The >= 1 MB text of gen_fixtures.py big_text(): corpus strings picked by xorshift64. */
static char *tok_test_big_text(json_t *fx, size_t *len)
{
    json_t *cases = json_object_get(fx, "cases"), *big = json_object_get(fx, "big");
    size_t n = json_array_size(cases);
    uint64_t pf = (uint64_t)json_integer_value(json_object_get(fx, "prose_first"));
    uint64_t pc = (uint64_t)json_integer_value(json_object_get(fx, "prose_count"));
    size_t min = (size_t)json_integer_value(json_object_get(big, "min_bytes"));
    uint64_t x = strtoull(json_string_value(json_object_get(big, "seed")), NULL, 16);
    static const char *const seps[] = {"", " ", "\n", "\n\n", ". "};
    Buf b = {0};
    while (b.len < min) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t i = x % 10 < 7 ? (size_t)(pf + (x >> 8) % pc) : (size_t)((x >> 8) % n);
        json_t *s = json_object_get(json_array_get(cases, i), "text");
        buf_append(&b, json_string_value(s), json_string_length(s));
        buf_puts(&b, seps[(x >> 40) % 5]);
    }
    *len = b.len;
    return buf_take(&b);
}

static void test_big_text(void)
{
    Tok *t = tok_test_load();
    json_t *fx = tok_test_fixture("corpus.json");
    json_t *big = json_object_get(fx, "big");
    size_t len;
    char *text = tok_test_big_text(fx, &len);
    CHECK_EQ(len, json_integer_value(json_object_get(big, "bytes")));
    TokIds ids = {0};
    char err[VLQ_ERRLEN], hex[65];
    CHECK_EQ(tok_encode(t, text, len, &ids, err), 0);
    CHECK_EQ(ids.n, json_integer_value(json_object_get(big, "n_ids")));
    unsigned char *le = xmalloc(ids.n * 4 + 1);
    for (size_t i = 0; i < ids.n; i++)
        for (int k = 0; k < 4; k++)
            le[4 * i + k] = (unsigned char)((uint32_t)ids.ids[i] >> (8 * k));
    util_sha256_hex(le, ids.n * 4, hex);
    CHECK_STR(hex, json_string_value(json_object_get(big, "ids_sha256")));
    size_t dlen;
    char *dec = tok_decode(t, ids.ids, ids.n, 0, &dlen);
    util_sha256_hex(dec, dlen, hex);
    CHECK_STR(hex, json_string_value(json_object_get(big, "decoded_sha256")));
    free(dec);
    free(le);
    free(text);
    tok_ids_clear(&ids);
    json_decref(fx);
    tok_free(t);
}

static void test_decode_stream(void)
{
    Tok *t = tok_test_load();
    json_t *fx = tok_test_fixture("decode.json");
    json_t *c;
    size_t i;
    json_array_foreach(json_object_get(fx, "cases"), i, c) {
        json_t *arr = json_object_get(c, "ids");
        size_t n = json_array_size(arr);
        int32_t *ids = xmalloc((n + 1) * sizeof *ids);
        for (size_t k = 0; k < n; k++) {
            json_int_t v = json_integer_value(json_array_get(arr, k));
            ids[k] = v > INT32_MAX ? -1 : (int32_t)v; /* out of range either way: skipped */
        }
        for (int skip = 0; skip < 2; skip++) {
            json_t *w = json_object_get(c, skip ? "text_skip" : "text");
            size_t len;
            char *got = tok_decode(t, ids, n, skip, &len);
            if (len != json_string_length(w) || memcmp(got, json_string_value(w), len))
                test_fail(__FILE__, __LINE__, "decode case %zu skip %d: \"%s\" != \"%s\"", i, skip,
                          got, json_string_value(w));
            TokStream st;
            tok_stream_init(&st, t, skip);
            Buf b = {0};
            buf_puts(&b, "");
            for (size_t k = 0; k < n; k++) {
                size_t m;
                const char *p = tok_stream_push(&st, ids[k], &m);
                buf_append(&b, p, m);
                /* never a partial UTF-8 sequence: every piece is valid on its own */
                TokIds probe = {0};
                CHECK_EQ(tok_encode(t, p, m, &probe, NULL), 0);
                tok_ids_clear(&probe);
            }
            size_t m;
            const char *p = tok_stream_flush(&st, &m);
            buf_append(&b, p, m);
            CHECK(b.len == len && !memcmp(b.data, got, len));
            buf_clear(&b);
            tok_stream_clear(&st);
            free(got);
        }
        free(ids);
    }
    json_decref(fx);
    tok_free(t);
}

static void test_chat(void)
{
    Tok *t = tok_test_load();
    json_t *fx = tok_test_fixture("chat.json");
    json_t *c;
    size_t i;
    int32_t vstart = tok_find(t, "<|vision_start|>", 16);
    json_array_foreach(json_object_get(fx, "cases"), i, c) {
        json_t *jparts = json_object_get(c, "parts"), *jp;
        size_t np = json_array_size(jparts), k;
        TokPart *parts = xcalloc(np, sizeof *parts);
        double *times[8] = {0};
        json_array_foreach(jparts, k, jp) {
            const char *type = json_string_value(json_object_get(jp, "type"));
            json_t *g = json_object_get(jp, "grid");
            parts[k].kind = !strcmp(type, "text")    ? TOK_PART_TEXT
                            : !strcmp(type, "image") ? TOK_PART_IMAGE
                                                     : TOK_PART_VIDEO;
            parts[k].text = json_string_value(json_object_get(jp, "text"));
            parts[k].grid_t = (int)json_integer_value(json_array_get(g, 0));
            parts[k].grid_h = (int)json_integer_value(json_array_get(g, 1));
            parts[k].grid_w = (int)json_integer_value(json_array_get(g, 2));
            json_t *ts = json_object_get(jp, "times");
            if (ts && k < 8) {
                times[k] = xcalloc(json_array_size(ts), sizeof(double));
                for (size_t q = 0; q < json_array_size(ts); q++)
                    times[k][q] = json_real_value(json_array_get(ts, q));
                parts[k].times_s = times[k];
            }
        }
        TokChat chat = {.system = json_string_value(json_object_get(c, "system")),
                        .parts = parts, .n_parts = np};
        TokPrompt pr = {0};
        char err[VLQ_ERRLEN];
        CHECK_EQ(tok_chat_encode(t, &chat, &pr, err), 0);
        tok_test_same(&pr.ids, json_object_get(c, "ids"), "chat");
        size_t count = 0;
        CHECK_EQ(tok_chat_count(t, &chat, &count, err), 0);
        CHECK_EQ(count, pr.ids.n);
        for (size_t r = 0; r < pr.n_pads; r++) {
            const TokPads *p = &pr.pads[r];
            CHECK(p->start > 0 && p->start + p->n_tok < pr.ids.n);
            CHECK_EQ(pr.ids.ids[p->start - 1], vstart);
            for (size_t q = 0; q < p->n_tok; q++)
                CHECK_EQ(pr.ids.ids[p->start + q], p->id);
            CHECK(pr.ids.ids[p->start + p->n_tok] != p->id);
        }
        tok_prompt_clear(&pr);
        for (size_t q = 0; q < 8; q++)
            free(times[q]);
        free(parts);
    }
    json_decref(fx);
    tok_free(t);
}

static void test_chat_errors(void)
{
    Tok *t = tok_test_load();
    char err[VLQ_ERRLEN];
    TokPrompt pr = {0};
    TokPart bad_grid = {.kind = TOK_PART_IMAGE, .grid_t = 1, .grid_h = 3, .grid_w = 4};
    TokChat chat = {.parts = &bad_grid, .n_parts = 1};
    CHECK_EQ(tok_chat_encode(t, &chat, &pr, err), VLQ_EINPUT);
    CHECK(strstr(err, "chat part 0: bad grid") != NULL);
    TokPart video = {.kind = TOK_PART_VIDEO, .grid_t = 2, .grid_h = 4, .grid_w = 4};
    chat.parts = &video;
    CHECK_EQ(tok_chat_encode(t, &chat, &pr, err), VLQ_EINPUT);
    CHECK(strstr(err, "without timestamps") != NULL);
    TokPart text = {.kind = TOK_PART_TEXT, .text = "look <|image_pad|>"};
    chat.parts = &text;
    CHECK_EQ(tok_chat_encode(t, &chat, &pr, err), VLQ_EINPUT);
    CHECK(strstr(err, "<|image_pad|>") != NULL);
    TokPart huge = {.kind = TOK_PART_IMAGE, .grid_t = 65536, .grid_h = 65536, .grid_w = 2};
    chat.parts = &huge;
    size_t n;
    CHECK_EQ(tok_chat_count(t, &chat, &n, err), VLQ_ENOMEM);
    /* text only, no system turn: <|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n */
    TokPart hi = {.kind = TOK_PART_TEXT, .text = "hi"};
    chat.parts = &hi;
    CHECK_EQ(tok_chat_encode(t, &chat, &pr, err), 0);
    int32_t want[] = {151644, 872, 198, 6023, 151645, 198, 151644, 77091, 198};
    CHECK_EQ(pr.ids.n, 9);
    for (size_t i = 0; i < 9 && i < pr.ids.n; i++)
        CHECK_EQ(pr.ids.ids[i], want[i]);
    CHECK_EQ(pr.n_pads, 0);
    tok_prompt_clear(&pr);
    tok_prompt_clear(NULL);
    tok_free(t);
}

static void test_invalid_utf8(void)
{
    Tok *t = tok_test_load();
    char err[VLQ_ERRLEN];
    TokIds ids = {0};
    static const struct {
        const char *s;
        size_t len, at;
    } bad[] = {{"ab\xff", 3, 2},      {"\xc3", 1, 0},          {"x\xc0\xaf", 3, 1},
               {"ok \xed\xa0\x80", 6, 3}, {"\xf4\x90\x80\x80", 4, 0}, {"abc\xe4\xbd", 5, 3},
               {"\x80", 1, 0}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ(tok_encode(t, bad[i].s, bad[i].len, &ids, err), VLQ_EINPUT);
        char want[64];
        snprintf(want, sizeof want, "byte %zu: invalid UTF-8", bad[i].at);
        CHECK_STR(err, want);
        CHECK_EQ(ids.n, 0);
    }
    /* decode of broken bytes: U+FFFD per maximal subpart, as from_utf8_lossy */
    int32_t ids2[] = {tok_find(t, "\xe4", 1), tok_find(t, "\xbd", 1), 33};
    char *s = tok_decode(t, ids2, 3, 0, NULL);
    CHECK_STR(s, "\xef\xbf\xbd" "B");
    free(s);
    tok_free(t);
}

/* A small tokenizer.json in the Qwen form, with the given normalizer, regex and merges. */
static char *tok_test_tiny(const char *normalizer, const char *regex, const char *merges)
{
    Buf b = {0};
    buf_printf(&b, "{\"normalizer\": %s, \"pre_tokenizer\": {\"type\": \"Sequence\", "
               "\"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"%s\"}, "
               "\"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", "
               "\"add_prefix_space\": false, \"use_regex\": false}]}, \"decoder\": {\"type\": "
               "\"ByteLevel\"}, \"added_tokens\": [{\"id\": 300, \"content\": \"<x>\", \"special\": true}],"
               " \"model\": {\"type\": \"BPE\", \"vocab\": {", normalizer, regex);
    int n = 0;
    for (int c = 0; c < 256; c++) { /* GPT-2 bytes_to_unicode */
        int printable = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE;
        unsigned cp = printable ? (unsigned)c : 256u + (unsigned)n++;
        buf_printf(&b, "\"\\u%04x\": %d, ", cp, c);
    }
    buf_printf(&b, "\"ab\": 256, \"abab\": 257}, \"merges\": %s}}", merges);
    return buf_take(&b);
}

static const char tok_test_regex[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| "
    "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+";

static void test_load_errors(void)
{
    char err[VLQ_ERRLEN];
    Tok *t = (Tok *)1;
    CHECK_EQ(tok_load_file("missing.json", &t, err), VLQ_EINPUT);
    CHECK(t == NULL);
    CHECK(strstr(err, "missing.json") != NULL);
    CHECK_EQ(tok_load_json("{\"model\": ", 10, "cut.json", &t, err), VLQ_EINPUT);
    CHECK(!strncmp(err, "cut.json: line 1:", 17));
    CHECK_EQ(tok_load_json("[]", 2, "arr.json", &t, err), VLQ_EINPUT);

    /* the tiny tokenizer loads and merges; the older "a b" merge form too */
    const char *forms[] = {"[[\"a\", \"b\"], [\"ab\", \"ab\"]]", "[\"a b\", \"ab ab\"]"};
    for (int f = 0; f < 2; f++) {
        char *j = tok_test_tiny("{\"type\": \"NFC\"}", tok_test_regex, forms[f]);
        CHECK_EQ(tok_load_json(j, strlen(j), "tiny", &t, err), 0);
        TokIds ids = {0};
        CHECK_EQ(tok_encode(t, "abab ab<x>a", 11, &ids, err), 0);
        int32_t want[] = {257, ' ', 256, 300, 'a'}; /* "abab", " ab" -> ' ' "ab", <x>, "a" */
        CHECK_EQ(ids.n, 5);
        for (size_t i = 0; i < 5 && i < ids.n; i++)
            CHECK_EQ(ids.ids[i], want[i]);
        CHECK_EQ(tok_n_vocab(t), 301);
        CHECK(tok_is_special(t, 300) && !tok_is_special(t, 257));
        tok_ids_clear(&ids);
        tok_free(t);
        free(j);
    }
    char *j = tok_test_tiny("{\"type\": \"NFKC\"}", tok_test_regex, "[]");
    CHECK_EQ(tok_load_json(j, strlen(j), "tiny", &t, err), VLQ_ENOTSUP);
    CHECK(strstr(err, "normalizer") != NULL);
    free(j);
    j = tok_test_tiny("null", "\\\\s+", "[]");
    CHECK_EQ(tok_load_json(j, strlen(j), "tiny", &t, err), VLQ_ENOTSUP);
    CHECK(strstr(err, "regex") != NULL);
    free(j);
    j = tok_test_tiny("null", tok_test_regex, "[[\"a\", \"zz\"]]");
    CHECK_EQ(tok_load_json(j, strlen(j), "tiny", &t, err), VLQ_EINPUT);
    CHECK_STR(err, "tiny: model.merges[0]: token not in vocab");
    free(j);
    j = tok_test_tiny("null", tok_test_regex, "[[\"a\"]]");
    CHECK_EQ(tok_load_json(j, strlen(j), "tiny", &t, err), VLQ_EINPUT);
    CHECK_STR(err, "tiny: model.merges[0]: malformed JSON");
    free(j);
    const char *bad_vocab = "{\"normalizer\": null, \"model\": {\"vocab\": {\"a\": -1}}}";
    CHECK_EQ(tok_load_json(bad_vocab, strlen(bad_vocab), "v", &t, err), VLQ_ENOTSUP);
    const char *trunc = "{\"model\": {\"vocab\": {\"a\": 1";
    CHECK_EQ(tok_load_json(trunc, strlen(trunc), "t", &t, err), VLQ_EINPUT);
    CHECK(!strncmp(err, "t: line 1:", 10));
    tok_free(NULL);
}

/* lstrip, rstrip and normalized added tokens (unused by Qwen's file) on a copy of the
 * tokenizer with those flags set, as gen_fixtures.py gen_added_flags(). */
static void test_added_flags(void)
{
    char path[4096], err[VLQ_ERRLEN];
    snprintf(path, sizeof path, "%s/tests/data/qwen3-tokenizer/tokenizer.json", test_root());
    json_t *root = json_load_file(path, 0, NULL);
    json_t *fx = tok_test_fixture("added_flags.json");
    json_t *flags = json_object_get(fx, "flags"), *a, *c;
    json_t *added = json_object_get(root, "added_tokens");
    size_t i;
    json_array_foreach(added, i, a) {
        json_t *f = json_object_get(flags, json_string_value(json_object_get(a, "content")));
        if (f)
            json_object_update(a, f);
    }
    json_array_foreach(json_object_get(fx, "tokens"), i, a) {
        json_t *tk = json_deep_copy(a);
        json_object_set_new(tk, "special", json_false());
        json_array_append_new(added, tk);
    }
    char *text = json_dumps(root, JSON_COMPACT);
    Tok *t = NULL;
    CHECK_EQ(tok_load_json(text, strlen(text), "flags", &t, err), 0);
    json_array_foreach(json_object_get(fx, "cases"), i, c) {
        json_t *s = json_object_get(c, "text");
        TokIds ids = {0};
        CHECK_EQ(tok_encode(t, json_string_value(s), json_string_length(s), &ids, err), 0);
        tok_test_same(&ids, json_object_get(c, "ids"), json_string_value(s));
        tok_ids_clear(&ids);
    }
    tok_free(t);
    /* single_word is refused rather than guessed */
    json_object_set_new(json_array_get(added, 0), "single_word", json_true());
    free(text);
    text = json_dumps(root, JSON_COMPACT);
    CHECK_EQ(tok_load_json(text, strlen(text), "flags", &t, err), VLQ_ENOTSUP);
    CHECK(strstr(err, "single_word") != NULL);
    free(text);
    json_decref(root);
    json_decref(fx);
}

TEST_GROUP(tok, {"corpus", test_corpus}, {"big_text", test_big_text},
           {"decode_stream", test_decode_stream}, {"chat", test_chat},
           {"chat_errors", test_chat_errors}, {"invalid_utf8", test_invalid_utf8},
           {"load_errors", test_load_errors}, {"added_flags", test_added_flags})
