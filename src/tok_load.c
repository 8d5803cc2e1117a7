/* tok_load: build a Tok from a Hugging Face tokenizer.json (jansson).
 *
 * Only the Qwen2/Qwen3 form is accepted, and anything else is refused by name
 * (VLQ_ENOTSUP) rather than tokenised differently from the reference: model BPE without
 * dropout, byte fallback or subword affixes; normalizer NFC or none; pre-tokenizer
 * Sequence[Split(the Qwen regex, Isolated), ByteLevel(use_regex false)]; ByteLevel
 * decoder. The vocabulary is stored as raw bytes (the byte-level alphabet undone), so
 * encoding works on the text's bytes directly and decoding is a copy.
 *
 * Reference: tokenizers/src/models/bpe/model.rs (BPE::from builder, merges map),
 * tokenizers/src/pre_tokenizers/byte_level.rs (bytes_char), added_vocabulary.rs. */
#include "tok_int.h"

#include "err.h"
#include "util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* The pre-tokenizer regex this module implements by hand (tok_bpe.c). */
static const char tok_qwen_regex[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* ---- Unicode classes ---- */

static uint8_t tok_class_lookup(uint32_t cp)
{
    size_t lo = 0, hi = tok_n_class_ranges;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < tok_class_ranges[mid].lo)
            hi = mid;
        else if (cp > tok_class_ranges[mid].hi)
            lo = mid + 1;
        else
            return tok_class_ranges[mid].cls;
    }
    return TOK_CL_O;
}

/* NFC-inert: combining class 0, never the second half of a composition, and NFC of the
 * codepoint alone is itself. Text made of such codepoints is already NFC, and NFC never
 * reorders or composes across one (so the encoder can normalise only the spans between
 * them). */
static int tok_nfc_safe(uint32_t cp)
{
    if (cp >= 0x110000 || (cp >= 0xD800 && cp < 0xE000))
        return 0;
    if ((cp >= 0x1161 && cp <= 0x1175) || (cp >= 0x11A8 && cp <= 0x11C2))
        return 0; /* Hangul vowel and trailing jamo compose with what precedes */
    const utf8proc_property_t *p = utf8proc_get_property((utf8proc_int32_t)cp);
    if (p->combining_class != 0)
        return 0;
    if (p->comb_index != UINT16_MAX && p->comb_index >= 0x8000)
        return 0; /* utf8proc marks second elements of compositions so */
    if (p->decomp_seqindex == UINT16_MAX || p->decomp_type != 0)
        return 1;
    utf8proc_uint8_t in[4], *out = NULL;
    utf8proc_ssize_t n = utf8proc_encode_char((utf8proc_int32_t)cp, in);
    utf8proc_ssize_t m = utf8proc_map(in, n, &out, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    int same = m == n && !memcmp(in, out, (size_t)n);
    free(out);
    return same;
}

uint8_t tok_class_compute(uint32_t cp)
{
    return tok_class_lookup(cp) | (tok_nfc_safe(cp) ? TOK_CL_NFC_SAFE : 0);
}

uint8_t tok_class_of(const Tok *t, uint32_t cp)
{
    return cp < 0x10000 ? t->cls[cp] : tok_class_compute(cp);
}

/* ---- byte-level alphabet (GPT-2 bytes_to_unicode) ---- */

/* The codepoint standing for each byte. */
static void tok_byte_chars(uint32_t map[256])
{
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        map[b] = printable ? (uint32_t)b : (uint32_t)(256 + n++);
    }
}

/* Undo the byte-level alphabet: the bytes of a vocabulary string s[0..n) into out
 * (at least n bytes). Returns the byte count, or -1 if a character is not in the
 * alphabet (the reference decoder then keeps the token's UTF-8 as it is). */
static long tok_unbyte(const int16_t inv[324], const char *s, size_t n, char *out)
{
    size_t i = 0, o = 0;
    while (i < n) {
        uint32_t cp;
        int k = tok_utf8_next((const unsigned char *)s + i, n - i, &cp);
        if (k <= 0 || cp >= 324 || inv[cp] < 0)
            return -1;
        out[o++] = (char)inv[cp];
        i += (size_t)k;
    }
    return (long)o;
}

/* ---- hash tables ---- */

static uint64_t tok_hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

int32_t tok_vocab_get(const Tok *t, const char *s, size_t n)
{
    size_t i = tok_hash_bytes(s, n) & t->vmask;
    for (;; i = (i + 1) & t->vmask) {
        int32_t id = t->vmap[i];
        if (id < 0)
            return -1;
        uint32_t a = t->off[id], b = t->off[id + 1];
        if (b - a == n && !memcmp(t->blob + a, s, n))
            return id;
    }
}

static size_t tok_pow2_above(size_t n)
{
    size_t c = 16;
    while (c < n * 2)
        c *= 2;
    return c;
}

/* ---- loading ---- */

typedef struct {
    const char *name; /* for messages */
    char *err;
    int16_t inv[324]; /* codepoint of the byte-level alphabet -> byte, -1 if none */
} TokLoad;

static int tok_bad(TokLoad *L, int code, const char *what)
{
    return err_set(L->err, code, "%s: %s", L->name, what);
}

/* Is the value the JSON string s? */
static int tok_json_is(const json_t *v, const char *s)
{
    return json_is_string(v) && !strcmp(json_string_value(v), s);
}

static int tok_check_pipeline(TokLoad *L, json_t *root, Tok *t)
{
    json_t *norm = json_object_get(root, "normalizer");
    if (norm && !json_is_null(norm)) {
        if (!tok_json_is(json_object_get(norm, "type"), "NFC"))
            return tok_bad(L, VLQ_ENOTSUP, "normalizer is not NFC (only NFC or none is supported)");
        t->nfc = 1;
    }
    json_t *pre = json_object_get(root, "pre_tokenizer");
    json_t *seq = json_object_get(pre, "pretokenizers");
    json_t *split = json_array_get(seq, 0), *bl = json_array_get(seq, 1);
    json_t *re = json_object_get(json_object_get(split, "pattern"), "Regex");
    if (!tok_json_is(json_object_get(pre, "type"), "Sequence") || json_array_size(seq) != 2 ||
        !tok_json_is(json_object_get(split, "type"), "Split") ||
        !tok_json_is(json_object_get(split, "behavior"), "Isolated") ||
        json_is_true(json_object_get(split, "invert")) ||
        !tok_json_is(json_object_get(bl, "type"), "ByteLevel") ||
        json_is_true(json_object_get(bl, "use_regex")) ||
        json_is_true(json_object_get(bl, "add_prefix_space")))
        return tok_bad(L, VLQ_ENOTSUP,
                       "pre_tokenizer is not Sequence[Split(Isolated), ByteLevel] of Qwen form");
    if (!tok_json_is(re, tok_qwen_regex))
        return tok_bad(L, VLQ_ENOTSUP, "pre_tokenizer Split regex is not the Qwen2/Qwen3 one");
    if (!tok_json_is(json_object_get(json_object_get(root, "decoder"), "type"), "ByteLevel"))
        return tok_bad(L, VLQ_ENOTSUP, "decoder is not ByteLevel");
    json_t *m = json_object_get(root, "model");
    json_t *pfx = json_object_get(m, "continuing_subword_prefix");
    json_t *sfx = json_object_get(m, "end_of_word_suffix");
    if (!tok_json_is(json_object_get(m, "type"), "BPE"))
        return tok_bad(L, VLQ_ENOTSUP, "model is not BPE");
    if ((json_object_get(m, "dropout") && !json_is_null(json_object_get(m, "dropout"))) ||
        json_is_true(json_object_get(m, "byte_fallback")) ||
        json_is_true(json_object_get(m, "ignore_merges")) ||
        (json_is_string(pfx) && *json_string_value(pfx)) ||
        (json_is_string(sfx) && *json_string_value(sfx)))
        return tok_bad(L, VLQ_ENOTSUP,
                       "BPE with dropout, byte_fallback, ignore_merges or subword affixes");
    return 0;
}

/* Put the id's decoded piece (token string with the byte-level alphabet undone, or its
 * UTF-8 as is when it is not all in the alphabet) at the end of blob. */
static void tok_put_piece(TokLoad *L, Buf *blob, const char *s, size_t n)
{
    char *tmp = xmalloc(n + 1);
    long k = tok_unbyte(L->inv, s, n, tmp);
    if (k >= 0)
        buf_append(blob, tmp, (size_t)k);
    else
        buf_append(blob, s, n);
    free(tmp);
}

/* Fill ids, pieces and the vocabulary map. */
static int tok_load_vocab(TokLoad *L, json_t *root, Tok *t)
{
    json_t *vocab = json_object_get(json_object_get(root, "model"), "vocab");
    json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_object(vocab) || json_object_size(vocab) == 0)
        return tok_bad(L, VLQ_EINPUT, "model.vocab missing or empty");
    if (added && !json_is_array(added))
        return tok_bad(L, VLQ_EINPUT, "added_tokens is not an array");
    int64_t max_id = -1;
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) {
        json_int_t id = json_integer_value(v);
        if (!json_is_integer(v) || id < 0 || id >= (1 << 24))
            return err_set(L->err, VLQ_EINPUT, "%s: vocab entry \"%.40s\": bad id", L->name, key);
        max_id = id > max_id ? id : max_id;
    }
    size_t i;
    json_array_foreach(added, i, v) {
        json_int_t id = json_integer_value(json_object_get(v, "id"));
        if (!json_is_integer(json_object_get(v, "id")) || id < 0 || id >= (1 << 24) ||
            !json_is_string(json_object_get(v, "content")) ||
            !*json_string_value(json_object_get(v, "content")))
            return err_set(L->err, VLQ_EINPUT, "%s: added_tokens[%zu]: bad id or content",
                           L->name, i);
        max_id = id > max_id ? id : max_id;
    }
    t->n_vocab = (int32_t)max_id + 1;
    const char **strs = xcalloc((size_t)t->n_vocab, sizeof *strs);
    size_t *lens = xcalloc((size_t)t->n_vocab, sizeof *lens);
    t->is_model = xcalloc((size_t)t->n_vocab, 1);
    t->is_special = xcalloc((size_t)t->n_vocab, 1);
    json_object_foreach(vocab, key, v) {
        int32_t id = (int32_t)json_integer_value(v);
        strs[id] = key;
        lens[id] = strlen(key);
        t->is_model[id] = 1;
    }
    json_array_foreach(added, i, v) { /* the reference decodes an added id as its content */
        int32_t id = (int32_t)json_integer_value(json_object_get(v, "id"));
        strs[id] = json_string_value(json_object_get(v, "content"));
        lens[id] = json_string_length(json_object_get(v, "content"));
        t->is_special[id] = json_is_true(json_object_get(v, "special"));
    }
    Buf blob = {0};
    t->off = xmalloc(((size_t)t->n_vocab + 1) * sizeof *t->off);
    for (int32_t id = 0; id < t->n_vocab; id++) {
        t->off[id] = (uint32_t)blob.len;
        if (strs[id])
            tok_put_piece(L, &blob, strs[id], lens[id]);
    }
    t->off[t->n_vocab] = (uint32_t)blob.len;
    t->blob = buf_take(&blob);
    /* The vocabulary map holds model entries in the byte-level alphabet only: the others
     * can never be produced by merging bytes. */
    size_t cap = tok_pow2_above((size_t)t->n_vocab);
    t->vmask = cap - 1;
    t->vmap = xmalloc(cap * sizeof *t->vmap);
    memset(t->vmap, 0xff, cap * sizeof *t->vmap);
    int rc = 0;
    json_object_foreach(vocab, key, v) {
        int32_t id = (int32_t)json_integer_value(v);
        char *tmp = xmalloc(lens[id] + 1);
        long k = tok_unbyte(L->inv, key, strlen(key), tmp);
        free(tmp);
        if (k <= 0)
            continue;
        const char *p = t->blob + t->off[id];
        if (tok_vocab_get(t, p, (size_t)k) >= 0) {
            rc = err_set(L->err, VLQ_EINPUT, "%s: vocab entry \"%.40s\" is a duplicate", L->name,
                         key);
            break;
        }
        size_t h = tok_hash_bytes(p, (size_t)k) & t->vmask;
        while (t->vmap[h] >= 0)
            h = (h + 1) & t->vmask;
        t->vmap[h] = id;
    }
    free(strs);
    free(lens);
    if (rc)
        return rc;
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        t->byte_id[b] = tok_vocab_get(t, &c, 1);
        if (t->byte_id[b] < 0)
            return err_set(L->err, VLQ_EINPUT, "%s: vocab lacks the token for byte 0x%02x",
                           L->name, b);
    }
    return 0;
}

static TokMerge *tok_merge_slot(Tok *t, uint64_t key)
{
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & t->mmask;
    while (t->merges[i].key != UINT64_MAX && t->merges[i].key != key)
        i = (i + 1) & t->mmask;
    return &t->merges[i];
}

/* One side of a merge, its vocabulary string in s (n bytes) -> id. */
static int32_t tok_merge_side(TokLoad *L, Tok *t, const char *s, size_t n, char *tmp)
{
    long k = tok_unbyte(L->inv, s, n, tmp);
    return k > 0 ? tok_vocab_get(t, tmp, (size_t)k) : -1;
}

static int tok_load_merges(TokLoad *L, json_t *root, Tok *t)
{
    json_t *merges = json_object_get(json_object_get(root, "model"), "merges");
    if (!json_is_array(merges))
        return tok_bad(L, VLQ_EINPUT, "model.merges missing");
    size_t n = json_array_size(merges);
    size_t cap = tok_pow2_above(n);
    t->mmask = cap - 1;
    t->merges = xmalloc(cap * sizeof *t->merges);
    for (size_t i = 0; i < cap; i++)
        t->merges[i].key = UINT64_MAX;
    size_t i;
    json_t *m;
    json_array_foreach(merges, i, m) {
        const char *a, *b;
        size_t na, nb;
        if (json_is_array(m) && json_array_size(m) == 2 &&
            json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            na = json_string_length(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
            nb = json_string_length(json_array_get(m, 1));
        } else if (json_is_string(m) && strchr(json_string_value(m), ' ')) {
            a = json_string_value(m); /* the older "left right" form */
            b = strchr(a, ' ') + 1;
            na = (size_t)(b - 1 - a);
            nb = strlen(b);
        } else {
            return err_set(L->err, VLQ_EINPUT, "%s: model.merges[%zu] is not a pair", L->name, i);
        }
        char *tmp = xmalloc(na + nb + 1);
        int32_t ia = tok_merge_side(L, t, a, na, tmp);
        int32_t ib = tok_merge_side(L, t, b, nb, tmp);
        int32_t ic = -1;
        if (ia >= 0 && ib >= 0) {
            size_t la = t->off[ia + 1] - t->off[ia], lb = t->off[ib + 1] - t->off[ib];
            memcpy(tmp, t->blob + t->off[ia], la);
            memcpy(tmp + la, t->blob + t->off[ib], lb);
            ic = tok_vocab_get(t, tmp, la + lb);
        }
        free(tmp);
        if (ic < 0)
            return err_set(L->err, VLQ_EINPUT, "%s: model.merges[%zu]: token not in vocab",
                           L->name, i);
        uint64_t key = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
        TokMerge *slot = tok_merge_slot(t, key);
        /* a repeated pair takes its later rank, as the reference's HashMap insert */
        *slot = (TokMerge){.key = key, .rank = (int32_t)i, .id = ic};
    }
    return 0;
}

/* NFC of s[0..n) in a new string (caller frees), or NULL if it is not valid UTF-8. */
static char *tok_nfc_dup(const char *s, size_t n, size_t *out_len)
{
    utf8proc_uint8_t *out = NULL;
    utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &out,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (m < 0)
        return NULL;
    *out_len = (size_t)m;
    return (char *)out;
}

static int tok_added_cmp(const void *a, const void *b)
{
    const TokAdded *x = a, *y = b;
    return x->len != y->len ? (x->len < y->len ? 1 : -1) : (x->id > y->id) - (x->id < y->id);
}

static int tok_load_added(TokLoad *L, json_t *root, Tok *t)
{
    json_t *added = json_object_get(root, "added_tokens");
    size_t n = json_array_size(added), i;
    json_t *v;
    t->added = xcalloc(n ? n : 1, sizeof *t->added);
    json_array_foreach(added, i, v) {
        TokAdded *a = &t->added[t->n_added++];
        json_t *c = json_object_get(v, "content");
        a->id = (int32_t)json_integer_value(json_object_get(v, "id"));
        a->special = json_is_true(json_object_get(v, "special"));
        a->lstrip = json_is_true(json_object_get(v, "lstrip"));
        a->rstrip = json_is_true(json_object_get(v, "rstrip"));
        a->single_word = json_is_true(json_object_get(v, "single_word"));
        a->normalized = t->nfc && json_is_true(json_object_get(v, "normalized"));
        a->len = json_string_length(c);
        if (a->normalized)
            a->content = tok_nfc_dup(json_string_value(c), a->len, &a->len);
        else
            a->content = xstrdup(json_string_value(c));
        if (!a->content)
            return err_set(L->err, VLQ_EINPUT, "%s: added_tokens[%zu]: bad content", L->name, i);
        if (a->normalized)
            t->has_normalized_added = 1;
        else
            t->added_first[(unsigned char)a->content[0]] = 1;
    }
    /* Longest first: at one position the longest token wins (leftmost-longest). */
    qsort(t->added, t->n_added, sizeof *t->added, tok_added_cmp);
    return 0;
}

int tok_load_json(const char *json, size_t len, const char *name, Tok **out, char *err)
{
    *out = NULL;
    TokLoad L = {.name = name ? name : "tokenizer.json", .err = err};
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr);
    if (!root)
        return err_set(err, VLQ_EINPUT, "%s: line %d: %s", L.name, jerr.line, jerr.text);
    uint32_t chars[256];
    tok_byte_chars(chars);
    memset(L.inv, 0xff, sizeof L.inv);
    for (int b = 0; b < 256; b++)
        L.inv[chars[b]] = (int16_t)b;
    Tok *t = xcalloc(1, sizeof *t);
    int rc = json_is_object(root) ? 0 : tok_bad(&L, VLQ_EINPUT, "not a JSON object");
    if (!rc)
        rc = tok_check_pipeline(&L, root, t);
    if (!rc)
        rc = tok_load_vocab(&L, root, t);
    if (!rc)
        rc = tok_load_merges(&L, root, t);
    if (!rc)
        rc = tok_load_added(&L, root, t);
    json_decref(root);
    if (rc) {
        tok_free(t);
        return rc;
    }
    t->cls = xmalloc(0x10000);
    for (uint32_t cp = 0; cp < 0x10000; cp++)
        t->cls[cp] = tok_class_compute(cp);
    *out = t;
    return 0;
}

int tok_load_file(const char *path, Tok **out, char *err)
{
    char *data;
    size_t len;
    *out = NULL;
    int rc = util_read_file(path, 1u << 30, &data, &len, err);
    if (rc)
        return rc;
    rc = tok_load_json(data, len, path, out, err);
    free(data);
    return rc;
}

void tok_free(Tok *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_added; i++)
        free(t->added[i].content);
    free(t->added);
    free(t->blob);
    free(t->off);
    free(t->is_special);
    free(t->is_model);
    free(t->vmap);
    free(t->merges);
    free(t->cls);
    free(t);
}

int32_t tok_n_vocab(const Tok *t)
{
    return t->n_vocab;
}

int32_t tok_find(const Tok *t, const char *token, size_t len)
{
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == len && !memcmp(t->added[i].content, token, len))
            return t->added[i].id;
    return tok_vocab_get(t, token, len);
}

int tok_is_special(const Tok *t, int32_t id)
{
    return id >= 0 && id < t->n_vocab && t->is_special[id];
}
