/* tok_int: the private layout of Tok, shared by tok_load.c (building it from JSON),
 * tok_bpe.c (encode/decode) and tok_chat.c (chat prompt). Not for other modules. */
#ifndef VLQ_TOK_INT_H
#define VLQ_TOK_INT_H

#include "tok.h"

#include <stddef.h>
#include <stdint.h>

/* Character classes of the Split regex: \p{L}, \p{N}, \s, anything else. */
enum { TOK_CL_O = 0, TOK_CL_L = 1, TOK_CL_N = 2, TOK_CL_S = 3 };
/* Flag in a class byte: the codepoint is NFC-inert (ccc 0, NFC_QC yes, never the second
 * half of a composition), so NFC never changes text across or around it. */
#define TOK_CL_NFC_SAFE 4
/* Flag: a codepoint the reference's NFC does not know (its Unicode data is older than
 * utf8proc's): it is treated as class 0 without decomposition, so it composes with
 * nothing on either side (also NFC-safe). */
#define TOK_CL_NFC_OPAQUE 8

/* An added token (tokenizer.json "added_tokens"). */
typedef struct {
    char *content;    /* the text matched (NFC of it when normalized), owned */
    size_t len;       /* bytes of content */
    int32_t id;       /* its id */
    uint8_t special;  /* skipped by skip_special decoding */
    uint8_t lstrip;   /* swallows whitespace on its left */
    uint8_t rstrip;   /* swallows whitespace on its right */
    uint8_t single_word; /* matches only between word boundaries (refused at load) */
    uint8_t normalized;  /* matched in the normalized text instead of the raw text */
} TokAdded;

/* An entry of the merge table: the pair (left, right) merges into id at rank. */
typedef struct {
    uint64_t key;   /* (left << 32) | right; UINT64_MAX marks an empty slot */
    int32_t rank;   /* merge priority, lower first */
    int32_t id;     /* the merged token */
} TokMerge;

struct Tok {
    int32_t n_vocab;      /* max id + 1 */
    /* decoded bytes of every id: piece(id) = blob[off[id] .. off[id+1]) */
    char *blob;
    uint32_t *off;        /* n_vocab + 1 offsets */
    uint8_t *is_special;  /* n_vocab flags */
    uint8_t *is_model;    /* n_vocab flags: the id is in the BPE vocabulary */
    /* BPE vocabulary: bytes -> id, open addressing over ids (-1 empty) */
    int32_t *vmap;
    size_t vmask;
    int32_t byte_id[256]; /* id of each single byte */
    TokMerge *merges;     /* open-addressing table, mmask + 1 slots */
    size_t mmask;
    size_t n_merges;      /* distinct pairs in merges */
    TokAdded *added;      /* added tokens, longest first */
    size_t n_added;
    uint8_t added_first[256]; /* 1 if some raw (non-normalized) added token starts with the byte */
    int has_normalized_added; /* some added token is matched after normalization */
    int nfc;              /* the normalizer is NFC (else none) */
    uint8_t *cls;         /* class | TOK_CL_NFC_SAFE for each BMP codepoint (65536) */
};

/* A run of codepoints lo..hi (inclusive) of one class; the generated table in
 * tok_unicode.c lists every codepoint not of class TOK_CL_O, sorted. */
typedef struct {
    uint32_t lo, hi; /* first and last codepoint */
    uint8_t cls;     /* TOK_CL_L, TOK_CL_N or TOK_CL_S */
} TokClassRange;
extern const TokClassRange tok_class_ranges[];
extern const size_t tok_n_class_ranges;
/* The codepoints of TOK_CL_NFC_OPAQUE, sorted (tok_unicode.c). */
extern const uint32_t tok_nfc_opaque[];
extern const size_t tok_n_nfc_opaque;

/* Class byte of any codepoint (BMP from the table, the rest computed). */
uint8_t tok_class_of(const Tok *t, uint32_t cp);
/* Compute the class byte of a codepoint from utf8proc (used to fill the table). */
uint8_t tok_class_compute(uint32_t cp);
/* The vocabulary id of bytes s[0..n), or -1. */
int32_t tok_vocab_get(const Tok *t, const char *s, size_t n);

/* Decode one UTF-8 sequence at s[0..n): returns its length (1-4) and sets *cp, 0 if it
 * needs more bytes than n to tell, or -k when it is invalid and its maximal subpart
 * (to be replaced by one U+FFFD) is k bytes. */
int tok_utf8_next(const unsigned char *s, size_t n, uint32_t *cp);

/* Append the UTF-8 lossy form of bytes s[0..n) to out: valid sequences copied,
 * invalid maximal subparts as U+FFFD. When final is 0, an incomplete sequence at the end
 * is left out; returns the number of bytes consumed. */
size_t tok_utf8_lossy(const unsigned char *s, size_t n, int final, char **out, size_t *out_len,
                      size_t *out_cap);

#endif
