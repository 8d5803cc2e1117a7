/* tok_bpe: encoding and decoding, exact to Hugging Face `tokenizers` on Qwen's file.
 *
 * Encode, in the reference's order (tokenizer/mod.rs encode_single_sequence):
 *  1. the raw text is split on added tokens (leftmost-longest, added_vocabulary.rs
 *     find_matches; special and non-special alike);
 *  2. each other span is NFC-normalised: only the windows around codepoints that are not
 *     NFC-inert go through utf8proc, so ASCII and most scripts are never copied;
 *  3. split by the Qwen regex, written by hand below as a matcher that takes the regex's
 *     alternatives in order (the classes come from tok_unicode.c, read off the reference);
 *  4. each piece is BPE-merged by rank over its bytes (models/bpe/word.rs merge_all:
 *     lowest rank first, leftmost among equals), with a per-call cache of piece -> ids.
 * Decode concatenates the pieces' bytes and replaces invalid UTF-8 as Rust's
 * String::from_utf8_lossy (decoders/byte_level.rs). */
#include "tok_int.h"

#include "err.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---- UTF-8 ---- */

/* One UTF-8 sequence at s (Unicode table 3-7 ranges); see tok_int.h. */
int tok_utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned b0 = s[0];
    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    int len;
    unsigned lo = 0x80, hi = 0xBF; /* the range of the second byte */
    if (b0 >= 0xC2 && b0 <= 0xDF)
        len = 2;
    else if (b0 >= 0xE0 && b0 <= 0xEF)
        len = 3, lo = b0 == 0xE0 ? 0xA0 : 0x80, hi = b0 == 0xED ? 0x9F : 0xBF;
    else if (b0 >= 0xF0 && b0 <= 0xF4)
        len = 4, lo = b0 == 0xF0 ? 0x90 : 0x80, hi = b0 == 0xF4 ? 0x8F : 0xBF;
    else
        return -1;
    uint32_t c = b0 & (0x7F >> len);
    for (int k = 1; k < len; k++) {
        if ((size_t)k >= n)
            return 0;
        unsigned b = s[k];
        if (k == 1 ? (b < lo || b > hi) : (b & 0xC0) != 0x80)
            return -k;
        c = c << 6 | (b & 0x3F);
    }
    *cp = c;
    return len;
}

static void tok_out_append(char **out, size_t *len, size_t *cap, const void *p, size_t n)
{
    if (n == 0 && *out)
        return;
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 64;
        while (c < *len + n + 1)
            c *= 2;
        *out = xrealloc(*out, c);
        *cap = c;
    }
    if (n)
        memcpy(*out + *len, p, n);
    *len += n;
    (*out)[*len] = '\0';
}

/* Lossy UTF-8 copy, one U+FFFD per maximal invalid subpart (Rust from_utf8_lossy). */
size_t tok_utf8_lossy(const unsigned char *s, size_t n, int final, char **out, size_t *out_len,
                      size_t *out_cap)
{
    if (n == 0)
        return 0;
    size_t i = 0, run = 0; /* valid bytes s[run..i) not yet copied */
    while (i < n) {
        uint32_t cp;
        int k = tok_utf8_next(s + i, n - i, &cp);
        if (k > 0) {
            i += (size_t)k;
            continue;
        }
        tok_out_append(out, out_len, out_cap, s + run, i - run);
        if (k == 0 && !final) {
            return i;
        }
        tok_out_append(out, out_len, out_cap, "\xEF\xBF\xBD", 3);
        i += k == 0 ? n - i : (size_t)-k;
        run = i;
    }
    tok_out_append(out, out_len, out_cap, s + run, i - run);
    return n;
}

/* Decode one codepoint of valid UTF-8 (the encoder validates first). */
static inline size_t tok_cp(const unsigned char *s, uint32_t *cp)
{
    unsigned b = s[0];
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    if (b < 0xE0) {
        *cp = (b & 0x1F) << 6 | (s[1] & 0x3F);
        return 2;
    }
    if (b < 0xF0) {
        *cp = (b & 0x0F) << 12 | (s[1] & 0x3F) << 6 | (s[2] & 0x3F);
        return 3;
    }
    *cp = (b & 0x07) << 18 | (s[1] & 0x3F) << 12 | (s[2] & 0x3F) << 6 | (s[3] & 0x3F);
    return 4;
}

/* ---- ids ---- */

/* Free the ids and reset to empty; NULL-safe. */
void tok_ids_clear(TokIds *v)
{
    if (!v)
        return;
    free(v->ids);
    *v = (TokIds){0};
}

static void tok_ids_reserve(TokIds *v, size_t more)
{
    if (v->n + more <= v->cap)
        return;
    size_t c = v->cap ? v->cap * 2 : 64;
    while (c < v->n + more)
        c *= 2;
    v->ids = xrealloc(v->ids, c * sizeof *v->ids);
    v->cap = c;
}

static inline void tok_ids_push(TokIds *v, int32_t id)
{
    if (v->n == v->cap)
        tok_ids_reserve(v, 1);
    v->ids[v->n++] = id;
}

/* ---- BPE ---- */

static inline const TokMerge *tok_merge_get(const Tok *t, int32_t a, int32_t b)
{
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & t->mmask;
    for (;; i = (i + 1) & t->mmask) {
        const TokMerge *m = &t->merges[i];
        if (m->key == key)
            return m;
        if (m->key == UINT64_MAX)
            return NULL;
    }
}

#define TOK_SHORT 48 /* pieces up to this many bytes merge by a plain scan */

/* Short pieces: a scan for the lowest rank over an array, shifted after each merge. */
static void tok_bpe_short(const Tok *t, const unsigned char *s, size_t n, TokIds *out)
{
    int32_t sym[TOK_SHORT], rank[TOK_SHORT], nid[TOK_SHORT];
    for (size_t i = 0; i < n; i++)
        sym[i] = t->byte_id[s[i]];
    for (size_t i = 0; i + 1 < n; i++) {
        const TokMerge *m = tok_merge_get(t, sym[i], sym[i + 1]);
        rank[i] = m ? m->rank : INT32_MAX;
        nid[i] = m ? m->id : -1;
    }
    while (n > 1) {
        size_t best = 0;
        for (size_t i = 1; i + 1 < n; i++)
            if (rank[i] < rank[best])
                best = i;
        if (rank[best] == INT32_MAX)
            break;
        sym[best] = nid[best];
        memmove(sym + best + 1, sym + best + 2, (n - best - 2) * sizeof *sym);
        if (best + 2 < n) {
            memmove(rank + best + 1, rank + best + 2, (n - best - 3) * sizeof *rank);
            memmove(nid + best + 1, nid + best + 2, (n - best - 3) * sizeof *nid);
        }
        n--;
        for (size_t i = best ? best - 1 : 0; i <= best && i + 1 < n; i++) {
            const TokMerge *m = tok_merge_get(t, sym[i], sym[i + 1]);
            rank[i] = m ? m->rank : INT32_MAX;
            nid[i] = m ? m->id : -1;
        }
    }
    tok_ids_reserve(out, n);
    memcpy(out->ids + out->n, sym, n * sizeof *sym);
    out->n += n;
}

typedef struct {
    int32_t rank; /* merge rank */
    int32_t pos;  /* left symbol */
} TokHeapItem;

static inline int tok_heap_less(TokHeapItem a, TokHeapItem b)
{
    return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos);
}

static void tok_heap_push(TokHeapItem *h, size_t *n, TokHeapItem x)
{
    size_t i = (*n)++;
    while (i > 0 && tok_heap_less(x, h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = x;
}

static TokHeapItem tok_heap_pop(TokHeapItem *h, size_t *n)
{
    TokHeapItem top = h[0], x = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && tok_heap_less(h[c + 1], h[c]))
            c++;
        if (!tok_heap_less(h[c], x))
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n)
        h[i] = x;
    return top;
}

/* Long pieces: a linked list of symbols and a heap of candidate merges (stale entries
 * skipped when popped), as the reference's word.rs. */
static void tok_bpe_long(const Tok *t, const unsigned char *s, size_t n, TokIds *out)
{
    int32_t *sym = xmalloc(n * sizeof *sym), *next = xmalloc(n * sizeof *next);
    int32_t *prev = xmalloc(n * sizeof *prev);
    TokHeapItem *heap = xmalloc(3 * n * sizeof *heap); /* (n-1) + 2 per merge */
    size_t nh = 0;
    for (size_t i = 0; i < n; i++) {
        sym[i] = t->byte_id[s[i]];
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        const TokMerge *m = tok_merge_get(t, sym[i], sym[i + 1]);
        if (m)
            tok_heap_push(heap, &nh, (TokHeapItem){m->rank, (int32_t)i});
    }
    while (nh) {
        TokHeapItem top = tok_heap_pop(heap, &nh);
        int32_t p = top.pos, q = next[p];
        if (sym[p] < 0 || q < 0)
            continue;
        const TokMerge *m = tok_merge_get(t, sym[p], sym[q]);
        if (!m || m->rank != top.rank)
            continue; /* stale: one side merged since */
        sym[p] = m->id;
        sym[q] = -1;
        next[p] = next[q];
        if (next[q] >= 0)
            prev[next[q]] = p;
        if (prev[p] >= 0 && (m = tok_merge_get(t, sym[prev[p]], sym[p])))
            tok_heap_push(heap, &nh, (TokHeapItem){m->rank, prev[p]});
        if (next[p] >= 0 && (m = tok_merge_get(t, sym[p], sym[next[p]])))
            tok_heap_push(heap, &nh, (TokHeapItem){m->rank, p});
    }
    for (int32_t i = 0; i >= 0; i = next[i])
        tok_ids_push(out, sym[i]);
    free(sym);
    free(next);
    free(prev);
    free(heap);
}

/* ---- per-call piece cache ---- */

typedef struct {
    uint64_t hash;  /* 0: empty slot */
    uint32_t key;   /* piece bytes at keys.data + key */
    uint32_t len;   /* piece length */
    uint32_t ids;   /* first id in pool */
    uint32_t n_ids; /* ids */
} TokCacheSlot;

typedef struct {
    TokCacheSlot *slots;
    size_t mask, used;
    Buf keys;     /* piece bytes */
    TokIds pool;  /* ids of cached pieces */
} TokCache;

#define TOK_CACHE_MAX_PIECE 256

static void tok_cache_clear(TokCache *c)
{
    free(c->slots);
    buf_clear(&c->keys);
    tok_ids_clear(&c->pool);
}

static uint64_t tok_piece_hash(const unsigned char *s, size_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 0x100000001B3ull;
    return h | 1;
}

static void tok_cache_grow(TokCache *c)
{
    size_t cap = c->slots ? (c->mask + 1) * 2 : 1024;
    TokCacheSlot *old = c->slots;
    size_t old_cap = old ? c->mask + 1 : 0;
    c->slots = xcalloc(cap, sizeof *c->slots);
    c->mask = cap - 1;
    for (size_t i = 0; i < old_cap; i++) {
        if (!old[i].hash)
            continue;
        size_t j = old[i].hash & c->mask;
        while (c->slots[j].hash)
            j = (j + 1) & c->mask;
        c->slots[j] = old[i];
    }
    free(old);
}

/* The BPE ids of one piece, appended to out. */
static void tok_piece(const Tok *t, TokCache *c, const unsigned char *s, size_t n, TokIds *out)
{
    if (n == 1) {
        tok_ids_push(out, t->byte_id[s[0]]);
        return;
    }
    if (n > TOK_CACHE_MAX_PIECE) {
        tok_bpe_long(t, s, n, out);
        return;
    }
    if (!c->slots || c->used * 2 >= c->mask + 1)
        tok_cache_grow(c);
    uint64_t h = tok_piece_hash(s, n);
    size_t j = h & c->mask;
    for (; c->slots[j].hash; j = (j + 1) & c->mask) {
        TokCacheSlot *e = &c->slots[j];
        if (e->hash == h && e->len == n && !memcmp(c->keys.data + e->key, s, n)) {
            tok_ids_reserve(out, e->n_ids);
            memcpy(out->ids + out->n, c->pool.ids + e->ids, e->n_ids * sizeof(int32_t));
            out->n += e->n_ids;
            return;
        }
    }
    size_t first = out->n;
    if (n <= TOK_SHORT)
        tok_bpe_short(t, s, n, out);
    else
        tok_bpe_long(t, s, n, out);
    size_t k = out->n - first;
    if (c->keys.len + n > UINT32_MAX / 2 || c->pool.n + k > UINT32_MAX / 2)
        return; /* a cache this big is not worth growing further */
    c->slots[j] = (TokCacheSlot){.hash = h, .key = (uint32_t)c->keys.len, .len = (uint32_t)n,
                                 .ids = (uint32_t)c->pool.n, .n_ids = (uint32_t)k};
    c->used++;
    buf_append(&c->keys, s, n);
    tok_ids_reserve(&c->pool, k);
    memcpy(c->pool.ids + c->pool.n, out->ids + first, k * sizeof(int32_t));
    c->pool.n += k;
}

/* ---- the Split pre-tokenizer ---- */

/* Class (low 2 bits) of the codepoint at s[i], its end in *end. i < n. */
static inline int tok_cls(const Tok *t, const unsigned char *s, size_t i, size_t *end)
{
    uint32_t cp;
    *end = i + tok_cp(s + i, &cp);
    return tok_class_of(t, cp) & 3;
}

static inline int tok_is_nl(unsigned char b)
{
    return b == '\r' || b == '\n';
}

/* Lower-case ASCII letter of the codepoint at s[i] for the (?i:...) contractions, with
 * its end in *end; 0 when it is not one of the letters they use. The case fold also
 * maps U+017F (long s) to 's' and U+212A (Kelvin) to 'k', as Oniguruma does. */
static int tok_fold(const unsigned char *s, size_t i, size_t n, size_t *end)
{
    if (i >= n)
        return 0;
    unsigned b = s[i];
    if (b < 0x80) {
        *end = i + 1;
        return b >= 'A' && b <= 'Z' ? (int)(b + 32) : (int)b;
    }
    uint32_t cp;
    *end = i + tok_cp(s + i, &cp);
    return cp == 0x17F ? 's' : cp == 0x212A ? 'k' : 0;
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d) at i: the end of the match, or 0. */
static size_t tok_contraction(const unsigned char *s, size_t i, size_t n)
{
    size_t e1, e2;
    int c1 = tok_fold(s, i + 1, n, &e1);
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd')
        return e1;
    int c2 = (c1 == 'r' || c1 == 'v' || c1 == 'l') ? tok_fold(s, e1, n, &e2) : 0;
    if (((c1 == 'r' || c1 == 'v') && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
        return e2;
    return 0;
}

/* The end of the regex match that starts at i (i < n); every position starts one. */
static size_t tok_split_next(const Tok *t, const unsigned char *s, size_t i, size_t n)
{
    size_t e, e2;
    if (s[i] == '\'') {
        size_t c = tok_contraction(s, i, n);
        if (c)
            return c;
    }
    int c0 = tok_cls(t, s, i, &e);
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (c0 == TOK_CL_L || (c0 != TOK_CL_N && !tok_is_nl(s[i]) && e < n &&
                           tok_cls(t, s, e, &e2) == TOK_CL_L)) {
        size_t j = c0 == TOK_CL_L ? e : e2;
        while (j < n && tok_cls(t, s, j, &e2) == TOK_CL_L)
            j = e2;
        return j;
    }
    if (c0 == TOK_CL_N) /* \p{N} */
        return e;
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    size_t j = s[i] == ' ' ? e : i;
    if (j < n && tok_cls(t, s, j, &e2) == TOK_CL_O) {
        j = e2;
        while (j < n && tok_cls(t, s, j, &e2) == TOK_CL_O)
            j = e2;
        while (j < n && tok_is_nl(s[j]))
            j++;
        return j;
    }
    /* whitespace: \s*[\r\n]+ | \s+(?!\S) | \s+ */
    size_t k = i, last_nl = SIZE_MAX, last_start = i;
    while (k < n && tok_cls(t, s, k, &e2) == TOK_CL_S) {
        if (tok_is_nl(s[k]))
            last_nl = k;
        last_start = k;
        k = e2;
    }
    if (last_nl != SIZE_MAX)
        return last_nl + 1;
    if (k == n || last_start == i)
        return k;
    return last_start;
}

/* Pre-tokenize and BPE one normalised span. */
static void tok_encode_span(const Tok *t, TokCache *c, const unsigned char *s, size_t n,
                            TokIds *out)
{
    size_t i = 0;
    while (i < n) {
        size_t e = tok_split_next(t, s, i, n);
        tok_piece(t, c, s + i, e - i, out);
        i = e;
    }
}

/* ---- added tokens ---- */

static int tok_is_ws_cp(uint32_t cp)
{
    return (cp >= 9 && cp <= 13) || cp == ' ' || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

/* The start of the whitespace run that ends at s[end] (Rust char::is_whitespace). */
static size_t tok_ws_back(const unsigned char *s, size_t from, size_t end)
{
    while (end > from) {
        size_t k = end - 1;
        while (k > from && (s[k] & 0xC0) == 0x80)
            k--;
        uint32_t cp;
        tok_cp(s + k, &cp);
        if (!tok_is_ws_cp(cp))
            break;
        end = k;
    }
    return end;
}

static size_t tok_ws_fwd(const unsigned char *s, size_t i, size_t n)
{
    while (i < n) {
        uint32_t cp;
        size_t k = tok_cp(s + i, &cp);
        if (!tok_is_ws_cp(cp))
            break;
        i += k;
    }
    return i;
}

/* The next added token (of the given normalized flag) in s[from..n): its index in
 * t->added, or -1; *start and *stop include the stripped whitespace. */
static int tok_find_added(const Tok *t, int normalized, const unsigned char *s, size_t from,
                          size_t n, size_t *start, size_t *stop)
{
    for (size_t i = from; i < n; i++) {
        if (!normalized && !t->added_first[s[i]])
            continue;
        for (size_t k = 0; k < t->n_added; k++) {
            const TokAdded *a = &t->added[k];
            if (a->normalized != normalized || a->len > n - i ||
                memcmp(s + i, a->content, a->len))
                continue;
            *start = a->lstrip ? tok_ws_back(s, from, i) : i;
            *stop = a->rstrip ? tok_ws_fwd(s, i + a->len, n) : i + a->len;
            return (int)k;
        }
    }
    return -1;
}

/* ---- normalisation ---- */

/* NFC of s[0..n): returns s itself when nothing changes, else a new buffer in *tmp
 * (caller frees) with its length in *out_n. */
static const unsigned char *tok_nfc(const Tok *t, const unsigned char *s, size_t n,
                                    unsigned char **tmp, size_t *out_n)
{
    *out_n = n;
    if (!t->nfc)
        return s;
    size_t i = 0, safe_end = 0; /* s[..safe_end) ends on an NFC-inert codepoint */
    int opaque_end = 0;         /* ... which the reference does not know */
    Buf b = {0};
    size_t copied = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            safe_end = i;
            opaque_end = 0;
            continue;
        }
        uint32_t cp;
        size_t k = tok_cp(s + i, &cp);
        uint8_t cl = tok_class_of(t, cp);
        if (cl & TOK_CL_NFC_SAFE) {
            i += k;
            safe_end = i;
            opaque_end = (cl & TOK_CL_NFC_OPAQUE) != 0;
            continue;
        }
        /* Window: from the last inert codepoint before i (it may compose with what
         * follows, unless the reference does not know it) to the next inert one. */
        size_t w0 = safe_end;
        if (w0 > copied && !opaque_end) {
            size_t p = w0 - 1;
            while (p > copied && (s[p] & 0xC0) == 0x80)
                p--;
            w0 = p;
        }
        size_t w1 = i + k;
        while (w1 < n) {
            size_t k2 = tok_cp(s + w1, &cp);
            if (s[w1] < 0x80 || (tok_class_of(t, cp) & TOK_CL_NFC_SAFE))
                break;
            w1 += k2;
        }
        utf8proc_uint8_t *norm = NULL;
        utf8proc_ssize_t m = utf8proc_map(s + w0, (utf8proc_ssize_t)(w1 - w0), &norm,
                                          UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        VLQ_ASSERT(m >= 0); /* the text was validated */
        buf_append(&b, s + copied, w0 - copied);
        buf_append(&b, norm, (size_t)m);
        free(norm);
        copied = w1;
        i = w1;
        safe_end = w1; /* the window's end is inert (or the end) */
        opaque_end = 0;
    }
    if (!b.data)
        return s;
    buf_append(&b, s + copied, n - copied);
    *out_n = b.len;
    *tmp = (unsigned char *)buf_take(&b);
    return *tmp;
}

/* Normalise, then split on normalized added tokens, then pre-tokenize and BPE. */
static void tok_encode_plain(const Tok *t, TokCache *c, const unsigned char *s, size_t n,
                             TokIds *out)
{
    unsigned char *tmp = NULL;
    size_t m;
    const unsigned char *ns = tok_nfc(t, s, n, &tmp, &m);
    size_t from = 0, start, stop;
    int k;
    while (t->has_normalized_added && (k = tok_find_added(t, 1, ns, from, m, &start, &stop)) >= 0) {
        tok_encode_span(t, c, ns + from, start - from, out);
        tok_ids_push(out, t->added[k].id);
        from = stop;
    }
    tok_encode_span(t, c, ns + from, m - from, out);
    free(tmp);
}

/* Validate, split on raw added tokens, then normalise, pre-tokenize and BPE each span
 * (see the file comment). Appends to ids; on error ids is unchanged. */
int tok_encode(const Tok *t, const char *text, size_t len, TokIds *ids, char *err)
{
    const unsigned char *s = (const unsigned char *)text;
    if (len > (1u << 30))
        return err_set(err, VLQ_ENOMEM, "text of %zu bytes: over the 1 GiB limit", len);
    for (size_t i = 0; i < len;) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        int k = tok_utf8_next(s + i, len - i, &cp);
        if (k <= 0)
            return err_set(err, VLQ_EINPUT, "byte %zu: invalid UTF-8", i);
        i += (size_t)k;
    }
    TokCache cache = {0};
    size_t from = 0, start, stop;
    int k;
    while ((k = tok_find_added(t, 0, s, from, len, &start, &stop)) >= 0) {
        tok_encode_plain(t, &cache, s + from, start - from, ids);
        tok_ids_push(ids, t->added[k].id);
        from = stop;
    }
    tok_encode_plain(t, &cache, s + from, len - from, ids);
    tok_cache_clear(&cache);
    return 0;
}

/* ---- decode ---- */

static int tok_decodable(const Tok *t, int32_t id, int skip_special)
{
    return id >= 0 && id < t->n_vocab && !(skip_special && t->is_special[id]);
}

/* Concatenate the pieces, then the lossy UTF-8 pass. The result is the caller's. */
char *tok_decode(const Tok *t, const int32_t *ids, size_t n, int skip_special, size_t *len)
{
    Buf raw = {0};
    for (size_t i = 0; i < n; i++)
        if (tok_decodable(t, ids[i], skip_special))
            buf_append(&raw, t->blob + t->off[ids[i]], t->off[ids[i] + 1] - t->off[ids[i]]);
    char *out = NULL;
    size_t out_len = 0, cap = 0;
    tok_out_append(&out, &out_len, &cap, "", 0);
    tok_utf8_lossy((const unsigned char *)raw.data, raw.len, 1, &out, &out_len, &cap);
    buf_clear(&raw);
    if (len)
        *len = out_len;
    return out;
}

/* A fresh stream; holds nothing until the first push. Cannot fail. */
void tok_stream_init(TokStream *s, const Tok *t, int skip_special)
{
    *s = (TokStream){.tok = t, .skip_special = skip_special};
}

/* Run the held bytes through the lossy conversion into s->out, keeping an incomplete
 * tail held when not final. */
static const char *tok_stream_emit(TokStream *s, int final, size_t *len)
{
    size_t out_len = 0;
    tok_out_append(&s->out, &out_len, &s->out_cap, "", 0);
    size_t used = tok_utf8_lossy(s->held, s->n_held, final, &s->out, &out_len, &s->out_cap);
    if (used < s->n_held)
        memmove(s->held, s->held + used, s->n_held - used);
    s->n_held -= used;
    *len = out_len;
    return s->out;
}

/* Append the id's bytes to what is held and emit the complete part. */
const char *tok_stream_push(TokStream *s, int32_t id, size_t *len)
{
    const Tok *t = s->tok;
    if (tok_decodable(t, id, s->skip_special)) {
        size_t k = t->off[id + 1] - t->off[id];
        if (s->n_held + k > s->held_cap) {
            s->held_cap = (s->n_held + k) * 2 + 16;
            s->held = xrealloc(s->held, s->held_cap);
        }
        memcpy(s->held + s->n_held, t->blob + t->off[id], k);
        s->n_held += k;
    }
    return tok_stream_emit(s, 0, len);
}

/* Emit all that is held, an unfinished sequence as U+FFFD. */
const char *tok_stream_flush(TokStream *s, size_t *len)
{
    return tok_stream_emit(s, 1, len);
}

/* Free the stream's buffers; NULL-safe. */
void tok_stream_clear(TokStream *s)
{
    if (!s)
        return;
    free(s->held);
    free(s->out);
    *s = (TokStream){0};
}
