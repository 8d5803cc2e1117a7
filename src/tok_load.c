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

static int tok_nfc_is_opaque(uint32_t cp)
{
    size_t lo = 0, hi = tok_n_nfc_opaque;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (tok_nfc_opaque[mid] == cp)
            return 1;
        if (tok_nfc_opaque[mid] < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

/* The class byte of cp: regex class from the generated table, NFC flags. */
uint8_t tok_class_compute(uint32_t cp)
{
    if (tok_nfc_is_opaque(cp))
        return tok_class_lookup(cp) | TOK_CL_NFC_SAFE | TOK_CL_NFC_OPAQUE;
    return tok_class_lookup(cp) | (tok_nfc_safe(cp) ? TOK_CL_NFC_SAFE : 0);
}

/* The class byte of cp: the BMP from the table built at load. Cannot fail. */
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

/* Look up raw bytes in the vocabulary map; -1 if absent. Cannot fail. */
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

/* The vocabulary map: model entries in the byte-level alphabet only (the others can
 * never be produced by merging bytes), keyed by their bytes. */
static int tok_fill_vmap(TokLoad *L, Tok *t, const char *keys, const size_t *koff,
                         const int32_t *kid, size_t n)
{
    size_t cap = tok_pow2_above((size_t)t->n_vocab);
    t->vmask = cap - 1;
    t->vmap = xmalloc(cap * sizeof *t->vmap);
    memset(t->vmap, 0xff, cap * sizeof *t->vmap);
    char *tmp = NULL;
    size_t tmp_cap = 0;
    int rc = 0;
    for (size_t k = 0; k < n && !rc; k++) {
        size_t len = koff[k + 1] - koff[k];
        if (len + 1 > tmp_cap) {
            tmp_cap = 2 * len + 64;
            tmp = xrealloc(tmp, tmp_cap);
        }
        long m = tok_unbyte(L->inv, keys + koff[k], len, tmp);
        if (m <= 0)
            continue;
        if (tok_vocab_get(t, tmp, (size_t)m) >= 0) {
            rc = err_set(L->err, VLQ_EINPUT, "%s: vocab entry %zu is a duplicate", L->name, k);
            break;
        }
        int32_t id = kid[k];
        if (t->off[id + 1] - t->off[id] != (size_t)m || memcmp(t->blob + t->off[id], tmp, (size_t)m))
            continue; /* an added token took this id: its content is what decodes */
        size_t h = tok_hash_bytes(tmp, (size_t)m) & t->vmask;
        while (t->vmap[h] >= 0)
            h = (h + 1) & t->vmask;
        t->vmap[h] = id;
    }
    free(tmp);
    for (int b = 0; b < 256 && !rc; b++) {
        char c = (char)b;
        t->byte_id[b] = tok_vocab_get(t, &c, 1);
        if (t->byte_id[b] < 0)
            rc = err_set(L->err, VLQ_EINPUT, "%s: vocab lacks the token for byte 0x%02x", L->name,
                         b);
    }
    return rc;
}

/* ---- a JSON scanner for the two big members ----
 * model.vocab (151k entries) and model.merges (151k pairs) are most of the file; parsing
 * them into jansson objects and freeing those took two thirds of the load time, so they
 * are read straight from the text here and everything else goes through jansson. */

typedef struct {
    const char *p, *end; /* the unread text */
} TokScan;

static void tok_scan_ws(TokScan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
        s->p++;
}

static int tok_scan_char(TokScan *s, char c)
{
    tok_scan_ws(s);
    if (s->p < s->end && *s->p == c) {
        s->p++;
        return 1;
    }
    return 0;
}

static int tok_scan_hex4(TokScan *s, uint32_t *v)
{
    if (s->end - s->p < 4)
        return -1;
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = *s->p++;
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        *v = *v << 4 | (uint32_t)d;
    }
    return 0;
}

/* A JSON string, decoded to UTF-8 and appended to out. Returns 0 or -1. */
static int tok_scan_string(TokScan *s, Buf *out)
{
    if (!tok_scan_char(s, '"'))
        return -1;
    for (;;) {
        const char *q = s->p;
        while (q < s->end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20)
            q++;
        buf_append(out, s->p, (size_t)(q - s->p));
        if (q >= s->end || (unsigned char)*q < 0x20)
            return -1;
        s->p = q + 1;
        if (*q == '"')
            return 0;
        if (s->p >= s->end)
            return -1;
        char e = *s->p++, c;
        uint32_t cp, lo;
        switch (e) {
        case '"': case '\\': case '/': c = e; break;
        case 'b': c = '\b'; break;
        case 'f': c = '\f'; break;
        case 'n': c = '\n'; break;
        case 'r': c = '\r'; break;
        case 't': c = '\t'; break;
        case 'u':
            if (tok_scan_hex4(s, &cp))
                return -1;
            if (cp >= 0xDC00 && cp < 0xE000)
                return -1;
            if (cp >= 0xD800 && cp < 0xDC00) {
                if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u')
                    return -1;
                s->p += 2;
                if (tok_scan_hex4(s, &lo) || lo < 0xDC00 || lo >= 0xE000)
                    return -1;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            {
                utf8proc_uint8_t u[4];
                buf_append(out, u, (size_t)utf8proc_encode_char((utf8proc_int32_t)cp, u));
            }
            continue;
        default: return -1;
        }
        buf_append(out, &c, 1);
    }
}

/* Skip one JSON value of any kind (not validated: jansson parses what is used). */
static int tok_scan_skip(TokScan *s)
{
    tok_scan_ws(s);
    int depth = 0;
    while (s->p < s->end) {
        char c = *s->p;
        if (c == '"') {
            const char *q = s->p + 1;
            for (;;) { /* the closing quote: one not preceded by an odd run of backslashes */
                q = memchr(q, '"', (size_t)(s->end - q));
                if (!q)
                    return -1;
                const char *b = q;
                while (b > s->p && b[-1] == '\\')
                    b--;
                if ((q - b) % 2 == 0)
                    break;
                q++;
            }
            s->p = q + 1;
        } else if (c == '{' || c == '[') {
            depth++;
            s->p++;
        } else if (c == '}' || c == ']') {
            if (depth == 0)
                return 0;
            depth--;
            s->p++;
        } else if (c == ',' && depth == 0) {
            return 0;
        } else {
            s->p++;
        }
        if (depth == 0 && (c == '"' || c == '}' || c == ']')) {
            return 0;
        }
    }
    return depth ? -1 : 0;
}

/* The members of an object: calls fn(key, value span) for each. Returns 0 or -1. */
static int tok_scan_object(TokScan *s, int (*fn)(void *, const char *, const char *, size_t),
                           void *ctx)
{
    if (!tok_scan_char(s, '{'))
        return -1;
    if (tok_scan_char(s, '}'))
        return 0;
    Buf key = {0};
    int rc = 0;
    do {
        key.len = 0;
        if (tok_scan_string(s, &key) || !tok_scan_char(s, ':')) {
            rc = -1;
            break;
        }
        buf_puts(&key, "");
        tok_scan_ws(s);
        const char *v = s->p;
        if (tok_scan_skip(s) || (rc = fn(ctx, key.data, v, (size_t)(s->p - v))))
            break;
    } while (tok_scan_char(s, ','));
    if (!rc && !tok_scan_char(s, '}'))
        rc = -1;
    buf_clear(&key);
    return rc;
}

typedef struct {
    json_t *obj;              /* the members parsed by jansson */
    const char *vocab, *merges; /* spans of model.vocab and model.merges, or NULL */
    size_t vocab_len, merges_len;
    int is_model;             /* collecting the model object's members */
} TokSplit;

static int tok_split_member(void *ctx, const char *key, const char *v, size_t n)
{
    TokSplit *sp = ctx;
    if (sp->is_model && !strcmp(key, "vocab")) {
        sp->vocab = v, sp->vocab_len = n;
        return 0;
    }
    if (sp->is_model && !strcmp(key, "merges")) {
        sp->merges = v, sp->merges_len = n;
        return 0;
    }
    if (!sp->is_model && !strcmp(key, "model")) {
        TokSplit inner = {.obj = json_object(), .is_model = 1};
        TokScan s = {v, v + n};
        int rc = tok_scan_object(&s, tok_split_member, &inner);
        json_object_set_new(sp->obj, "model", inner.obj);
        sp->vocab = inner.vocab, sp->vocab_len = inner.vocab_len;
        sp->merges = inner.merges, sp->merges_len = inner.merges_len;
        return rc;
    }
    json_t *val = json_loadb(v, n, JSON_DECODE_ANY, NULL);
    if (!val)
        return -1;
    json_object_set_new(sp->obj, key, val);
    return 0;
}

/* ---- vocabulary and merges ---- */

/* model.vocab as read from the text: entry k has key bytes (byte-level form)
 * keys[koff[k] .. koff[k+1]) and id kid[k]. */
typedef struct {
    Buf keys;        /* the keys, one after another */
    size_t *koff;    /* n + 1 offsets into keys */
    int32_t *kid;    /* n ids */
    size_t n, cap;   /* entries, allocated */
    int64_t max_id;  /* the largest id, -1 if none */
} TokVocabList;

static void tok_vocab_list_clear(TokVocabList *v)
{
    buf_clear(&v->keys);
    free(v->koff);
    free(v->kid);
}

/* Read the model.vocab span into v. Returns 0 or VLQ_EINPUT with err set. */
static int tok_vocab_list_scan(TokLoad *L, const TokSplit *sp, TokVocabList *v)
{
    *v = (TokVocabList){.max_id = -1};
    if (!sp->vocab)
        return tok_bad(L, VLQ_EINPUT, "model.vocab missing");
    TokScan s = {sp->vocab, sp->vocab + sp->vocab_len};
    if (!tok_scan_char(&s, '{'))
        return tok_bad(L, VLQ_EINPUT, "model.vocab: malformed JSON");
    while (!tok_scan_char(&s, '}')) {
        if (v->n + 1 >= v->cap) {
            v->cap = v->cap ? v->cap * 2 : 1024;
            v->koff = xrealloc(v->koff, (v->cap + 1) * sizeof *v->koff);
            v->kid = xrealloc(v->kid, v->cap * sizeof *v->kid);
        }
        v->koff[v->n] = v->keys.len;
        if ((v->n && !tok_scan_char(&s, ',')) || tok_scan_string(&s, &v->keys) ||
            !tok_scan_char(&s, ':'))
            return tok_bad(L, VLQ_EINPUT, "model.vocab: malformed JSON");
        tok_scan_ws(&s);
        char *e = NULL;
        /* digits are followed by ',' or '}' inside the span: strtol stops in the buffer */
        long id = s.p < s.end && *s.p >= '0' && *s.p <= '9' ? strtol(s.p, &e, 10) : -1;
        if (id < 0 || id >= (1 << 24) || e > s.end)
            return err_set(L->err, VLQ_EINPUT, "%s: model.vocab entry %zu: bad id", L->name,
                           v->n);
        s.p = e;
        v->kid[v->n++] = (int32_t)id;
        v->max_id = id > v->max_id ? id : v->max_id;
    }
    if (v->n == 0)
        return tok_bad(L, VLQ_EINPUT, "model.vocab is empty");
    v->koff[v->n] = v->keys.len;
    return 0;
}

/* The decoded piece of every id (the reference decodes an added id as its content), and
 * the flags. */
static void tok_build_pieces(TokLoad *L, Tok *t, const TokVocabList *v, json_t *added)
{
    const char **strs = xcalloc((size_t)t->n_vocab, sizeof *strs);
    size_t *lens = xcalloc((size_t)t->n_vocab, sizeof *lens), i;
    t->is_model = xcalloc((size_t)t->n_vocab, 1);
    t->is_special = xcalloc((size_t)t->n_vocab, 1);
    for (size_t k = 0; k < v->n; k++) {
        strs[v->kid[k]] = v->keys.data + v->koff[k];
        lens[v->kid[k]] = v->koff[k + 1] - v->koff[k];
        t->is_model[v->kid[k]] = 1;
    }
    json_t *a;
    json_array_foreach(added, i, a) {
        int32_t id = (int32_t)json_integer_value(json_object_get(a, "id"));
        strs[id] = json_string_value(json_object_get(a, "content"));
        lens[id] = json_string_length(json_object_get(a, "content"));
        t->is_special[id] = json_is_true(json_object_get(a, "special"));
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
    free(strs);
    free(lens);
}

/* Fill ids, pieces and the vocabulary map from the model.vocab span and added tokens. */
static int tok_load_vocab(TokLoad *L, const TokSplit *sp, json_t *root, Tok *t)
{
    json_t *added = json_object_get(root, "added_tokens"), *a;
    if (added && !json_is_array(added))
        return tok_bad(L, VLQ_EINPUT, "added_tokens is not an array");
    TokVocabList v;
    int rc = tok_vocab_list_scan(L, sp, &v);
    size_t i;
    json_array_foreach(added, i, a) {
        json_int_t id = json_integer_value(json_object_get(a, "id"));
        if (rc)
            break;
        if (!json_is_integer(json_object_get(a, "id")) || id < 0 || id >= (1 << 24) ||
            !json_is_string(json_object_get(a, "content")) ||
            !*json_string_value(json_object_get(a, "content")))
            rc = err_set(L->err, VLQ_EINPUT, "%s: added_tokens[%zu]: bad id or content", L->name,
                         i);
        v.max_id = id > v.max_id ? id : v.max_id;
    }
    if (!rc) {
        t->n_vocab = (int32_t)v.max_id + 1;
        tok_build_pieces(L, t, &v, added);
        rc = tok_fill_vmap(L, t, v.keys.data, v.koff, v.kid, v.n);
    }
    tok_vocab_list_clear(&v);
    return rc;
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

/* Add merge number i, the pair a[0..na) b[0..nb) (byte-level form). */
static int tok_add_merge(TokLoad *L, Tok *t, size_t i, const char *a, size_t na, const char *b,
                         size_t nb)
{
    char *tmp = xmalloc(na + nb + 1);
    int32_t ia = tok_merge_side(L, t, a, na, tmp);
    int32_t ib = tok_merge_side(L, t, b, nb, tmp);
    int32_t ic = -1;
    if (ia >= 0 && ib >= 0) {
        size_t la = t->off[ia + 1] - t->off[ia], lb = t->off[ib + 1] - t->off[ib];
        if (la + lb <= na + nb) {
            memcpy(tmp, t->blob + t->off[ia], la);
            memcpy(tmp + la, t->blob + t->off[ib], lb);
            ic = tok_vocab_get(t, tmp, la + lb);
        }
    }
    free(tmp);
    if (ic < 0)
        return err_set(L->err, VLQ_EINPUT, "%s: model.merges[%zu]: token not in vocab", L->name,
                       i);
    uint64_t key = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
    TokMerge *slot = tok_merge_slot(t, key);
    if (slot->key == UINT64_MAX && ++t->n_merges * 2 > t->mmask + 1)
        return err_set(L->err, VLQ_EINPUT, "%s: model.merges: too many", L->name);
    /* a repeated pair takes its later rank, as the reference's HashMap insert */
    *slot = (TokMerge){.key = key, .rank = (int32_t)i, .id = ic};
    return 0;
}

#define TOK_MALFORMED (-1000) /* a scan error, before it is told in err */

static int tok_load_merges(TokLoad *L, const TokSplit *sp, Tok *t)
{
    if (!sp->merges)
        return tok_bad(L, VLQ_EINPUT, "model.merges missing");
    /* size the table by a count of the pairs' opening brackets or strings (an upper bound) */
    size_t n_est = 1;
    for (size_t k = 0; k < sp->merges_len; k++)
        n_est += sp->merges[k] == ',';
    size_t cap = tok_pow2_above(n_est);
    t->mmask = cap - 1;
    t->merges = xmalloc(cap * sizeof *t->merges);
    for (size_t k = 0; k < cap; k++)
        t->merges[k].key = UINT64_MAX;
    TokScan s = {sp->merges, sp->merges + sp->merges_len};
    Buf a = {0}, b = {0};
    int rc = tok_scan_char(&s, '[') ? 0 : TOK_MALFORMED;
    for (size_t i = 0; !rc && !tok_scan_char(&s, ']'); i++) {
        a.len = b.len = 0;
        if (i && !tok_scan_char(&s, ',')) {
            rc = TOK_MALFORMED;
        } else if (tok_scan_char(&s, '[')) {
            if (tok_scan_string(&s, &a) || !tok_scan_char(&s, ',') || tok_scan_string(&s, &b) ||
                !tok_scan_char(&s, ']'))
                rc = TOK_MALFORMED;
            else
                rc = tok_add_merge(L, t, i, a.data ? a.data : "", a.len, b.data ? b.data : "",
                                   b.len);
        } else if (!tok_scan_string(&s, &a) && a.data && memchr(a.data, ' ', a.len)) {
            const char *sp_at = memchr(a.data, ' ', a.len); /* the older "left right" form */
            rc = tok_add_merge(L, t, i, a.data, (size_t)(sp_at - a.data), sp_at + 1,
                               a.len - (size_t)(sp_at - a.data) - 1);
        } else {
            rc = err_set(L->err, VLQ_EINPUT, "%s: model.merges[%zu] is not a pair", L->name, i);
        }
        if (rc == TOK_MALFORMED)
            rc = err_set(L->err, VLQ_EINPUT, "%s: model.merges[%zu]: malformed JSON", L->name, i);
    }
    if (rc == TOK_MALFORMED)
        rc = tok_bad(L, VLQ_EINPUT, "model.merges: malformed JSON");
    buf_clear(&a);
    buf_clear(&b);
    return rc;
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
        if (a->single_word) /* Qwen files have none: refused rather than guessed */
            return err_set(L->err, VLQ_ENOTSUP, "%s: added_tokens[%zu]: single_word is not "
                           "supported", L->name, i);
        if (a->normalized)
            t->has_normalized_added = 1;
        else
            t->added_first[(unsigned char)a->content[0]] = 1;
    }
    /* Longest first: at one position the longest token wins (leftmost-longest). */
    qsort(t->added, t->n_added, sizeof *t->added, tok_added_cmp);
    return 0;
}

/* Build a Tok from tokenizer.json bytes; see tok.h for the returns. */
int tok_load_json(const char *json, size_t len, const char *name, Tok **out, char *err)
{
    *out = NULL;
    TokLoad L = {.name = name ? name : "tokenizer.json", .err = err};
    /* A first strict parse would cost the time the scanner saves; jansson checks every
     * member but the two big ones, the scanner those. */
    TokSplit sp = {.obj = json_object()};
    TokScan scan = {json, json + len};
    int rc = tok_scan_object(&scan, tok_split_member, &sp);
    tok_scan_ws(&scan);
    if (rc || scan.p != scan.end) {
        json_decref(sp.obj);
        json_error_t jerr; /* let jansson name the place of the error */
        json_t *j = json_loadb(json, len, 0, &jerr);
        if (!j)
            return err_set(err, VLQ_EINPUT, "%s: line %d: %s", L.name, jerr.line, jerr.text);
        int is_obj = json_is_object(j);
        json_decref(j);
        return tok_bad(&L, VLQ_EINPUT, is_obj ? "malformed JSON" : "not a JSON object");
    }
    json_t *root = sp.obj;
    uint32_t chars[256];
    tok_byte_chars(chars);
    memset(L.inv, 0xff, sizeof L.inv);
    for (int b = 0; b < 256; b++)
        L.inv[chars[b]] = (int16_t)b;
    Tok *t = xcalloc(1, sizeof *t);
    rc = tok_check_pipeline(&L, root, t);
    if (!rc)
        rc = tok_load_vocab(&L, &sp, root, t);
    if (!rc)
        rc = tok_load_merges(&L, &sp, t);
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

/* Read the file (at most 1 GiB) and load it with tok_load_json. */
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

/* Free the tokenizer and all it owns; NULL-safe. */
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

/* Largest id + 1. Cannot fail. */
int32_t tok_n_vocab(const Tok *t)
{
    return t->n_vocab;
}

/* An added token by content first (as the reference), else a vocabulary entry. */
int32_t tok_find(const Tok *t, const char *token, size_t len)
{
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == len && !memcmp(t->added[i].content, token, len))
            return t->added[i].id;
    return tok_vocab_get(t, token, len);
}

/* 1 for added tokens marked special; 0 for others and ids out of range. */
int tok_is_special(const Tok *t, int32_t id)
{
    return id >= 0 && id < t->n_vocab && t->is_special[id];
}
