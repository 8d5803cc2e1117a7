/* tok: the Qwen byte-level BPE tokenizer and the Qwen3-VL chat prompt.
 *
 * Owns: loading a Hugging Face tokenizer.json of Qwen2/Qwen3 form (BPE model, NFC
 * normalizer, the Split + ByteLevel pre-tokenizer, ByteLevel decoder, added tokens),
 * encoding text to ids exactly as Hugging Face `tokenizers` does, decoding ids (whole or
 * streamed), and rendering the Qwen3-VL Instruct chat prompt with its image and video
 * placeholders expanded as transformers' Qwen3VLProcessor does.
 * Never: reads media, knows the model weights, or decides budgets (the planner calls
 * tok_chat_count).
 *
 * A loaded Tok is immutable: every function taking a const Tok * may be called from
 * several threads at once. Encoding keeps its word cache per call.
 *
 * Input text must be valid UTF-8: invalid bytes are rejected with VLQ_EINPUT and a
 * message naming the byte offset (Python cannot hand such bytes to the reference). */
#ifndef VLQ_TOK_H
#define VLQ_TOK_H

#include <stddef.h>
#include <stdint.h>

typedef struct Tok Tok;

/* A growable array of token ids; caller-owned, initialise with {0}. */
typedef struct {
    int32_t *ids; /* the ids, NULL until the first append */
    size_t n;     /* ids used */
    size_t cap;   /* ids allocated */
} TokIds;

/* Release the ids and reset to empty. NULL-safe. */
void tok_ids_clear(TokIds *v);

/* ---- loading ---- */

/* Load a tokenizer.json file. Returns 0 with *out set (free with tok_free), or
 * VLQ_EIO/VLQ_EINPUT/VLQ_ENOTSUP with "path: reason" in err. */
int tok_load_file(const char *path, Tok **out, char *err);
/* Load from the bytes of a tokenizer.json (json need not be NUL-terminated); name is
 * used in error messages. Same returns as tok_load_file. */
int tok_load_json(const char *json, size_t len, const char *name, Tok **out, char *err);
/* Free a tokenizer. NULL-safe. */
void tok_free(Tok *t);

/* ---- vocabulary ---- */

/* One more than the largest id (model vocabulary and added tokens). Cannot fail. */
int32_t tok_n_vocab(const Tok *t);
/* The id of an added token by its exact content ("<|im_end|>"), or of a vocabulary
 * entry whose bytes are token[0..len); -1 if none. */
int32_t tok_find(const Tok *t, const char *token, size_t len);
/* 1 if id is an added token marked special (skipped by skip_special decoding). */
int tok_is_special(const Tok *t, int32_t id);

/* ---- encode and decode ---- */

/* Append the ids of text[0..len) to ids: NFC, added tokens matched in the text (special
 * or not, leftmost-longest, as the reference), Split pre-tokenizer, byte-level BPE.
 * Returns 0, or VLQ_EINPUT "byte N: invalid UTF-8" (ids unchanged), or VLQ_ENOMEM
 * when the text is too large (> 1 GiB). */
int tok_encode(const Tok *t, const char *text, size_t len, TokIds *ids, char *err);

/* Decode ids to a new NUL-terminated UTF-8 string (caller frees), its length in *len
 * (may be NULL). Ids outside the vocabulary are skipped, special tokens too when
 * skip_special; byte sequences that are not valid UTF-8 become U+FFFD, as the
 * reference (Rust from_utf8_lossy). Cannot fail. */
char *tok_decode(const Tok *t, const int32_t *ids, size_t n, int skip_special, size_t *len);

/* Streaming decoder: feed ids as they are generated, get text that never ends inside a
 * UTF-8 sequence. The concatenation of every piece returned, then tok_stream_flush,
 * equals tok_decode of all the ids. Caller-owned struct. */
typedef struct {
    const Tok *tok;    /* the tokenizer (borrowed) */
    int skip_special;  /* skip special tokens */
    unsigned char *held; /* bytes held back: the start of an incomplete UTF-8 sequence */
    size_t n_held;       /* bytes in held */
    size_t held_cap;     /* bytes allocated in held */
    char *out;           /* the text returned by the last call */
    size_t out_cap;      /* bytes allocated in out */
} TokStream;

/* Start a stream over t. Cannot fail. */
void tok_stream_init(TokStream *s, const Tok *t, int skip_special);
/* Add one id; returns the text now complete (borrowed until the next call on s, *len
 * bytes, may be 0). Cannot fail. */
const char *tok_stream_push(TokStream *s, int32_t id, size_t *len);
/* End of ids: returns what was held back, an incomplete sequence as U+FFFD. */
const char *tok_stream_flush(TokStream *s, size_t *len);
/* Release the stream's memory. NULL-safe. */
void tok_stream_clear(TokStream *s);

/* ---- Qwen3-VL chat prompt ---- */

typedef enum {
    TOK_PART_TEXT = 0, /* text, rendered verbatim */
    TOK_PART_IMAGE,    /* one image: <|vision_start|> image_pad x t*h*w/4 <|vision_end|> */
    TOK_PART_VIDEO,    /* one video: per temporal group "<%.1f seconds>" + vision block */
} TokPartKind;

/* One item of the user turn, in order. */
typedef struct {
    TokPartKind kind;
    const char *text;       /* TEXT: NUL-terminated UTF-8 */
    int grid_t;             /* IMAGE, VIDEO: temporal groups (1 for an image) */
    int grid_h, grid_w;     /* IMAGE, VIDEO: patch grid, both even (2x2 merge) */
    const double *times_s;  /* VIDEO: grid_t timestamps in seconds, one per group */
} TokPart;

/* A one-turn conversation: optional system turn, the user turn, then the assistant
 * generation prompt. */
typedef struct {
    const char *system;    /* system text, NULL: no system turn (Qwen3-VL adds none) */
    const TokPart *parts;  /* the user turn's items */
    size_t n_parts;        /* number of items */
} TokChat;

/* Where one run of pad tokens lies in the prompt: an image, or one temporal group of
 * a video. Runs are in prompt order. */
typedef struct {
    size_t part;   /* index into TokChat.parts */
    int group;     /* temporal group of a video (0 for an image) */
    int32_t id;    /* the pad id: image_pad or video_pad */
    size_t start;  /* index in ids of the first pad */
    size_t n_tok;  /* number of pads (grid_h*grid_w/4, times grid_t for an image) */
} TokPads;

/* A rendered prompt; caller-owned, initialise with {0}, release with tok_prompt_clear. */
typedef struct {
    TokIds ids;     /* the prompt's ids */
    TokPads *pads;  /* the pad runs, in order */
    size_t n_pads;  /* number of pad runs */
} TokPrompt;

/* Render chat to ids, equal id for id to Qwen3VLProcessor(apply_chat_template(...,
 * add_generation_prompt=True)). Text is tokenised as the reference does (special token
 * strings inside it are recognised), except the four vision tokens, which are refused.
 * Returns 0, or VLQ_EINPUT naming the part (bad grid, bad text, missing timestamps),
 * VLQ_ENOTSUP if the tokenizer lacks the Qwen chat tokens, VLQ_ENOMEM past 2^28 ids. */
int tok_chat_encode(const Tok *t, const TokChat *chat, TokPrompt *out, char *err);
/* The number of ids tok_chat_encode would give, without building the pad runs (cost:
 * encoding the text only). Same returns. */
int tok_chat_count(const Tok *t, const TokChat *chat, size_t *n_tok, char *err);
/* Release a prompt and reset it to empty. NULL-safe. */
void tok_prompt_clear(TokPrompt *p);

#endif
