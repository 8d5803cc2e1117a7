/* decoder: the Qwen3-VL text decoder (Qwen3VLTextModel + the tied lm_head) over a KV
 * cache it is given, and the 3-D MRoPE positions of a prompt (get_rope_index).
 *
 * Batch-first: one decoder_forward call runs the new tokens of several sequences (each
 * in its own range of KV rows, each with its own past length: a prefill of one beside
 * decode steps of others), which is what the engine's continuous batching feeds it.
 * Visual features arrive as host rows (from vision.h or the feature cache) with their
 * row indices; the decoder scatters them into the embeddings and adds the DeepStack
 * features after the first layers.
 *
 * The KV cache is not the decoder's: the caller (the engine) owns one arena per layer
 * (DecoderKV, made by decoder_kv_init: f16 or f32) and carves it into slots; each
 * sequence names its rows (kv_row0, kv_cap). The activations and logits are allocated
 * once by decoder_new; decoder_forward allocates nothing. It never samples (sample.h)
 * and never tokenises (tok.h). */
#ifndef VLQ_DECODER_H
#define VLQ_DECODER_H

#include "backend.h"
#include "model.h"

#include <stdint.h>

typedef struct Decoder Decoder;

/* The KV cache: one key and one value matrix per layer, [rows, n_kv_heads*head_dim],
 * F32 or F16. Caller-owned struct (decoder_kv_init / decoder_kv_clear). */
typedef struct {
    Backend *b;       /* the backend the tensors live on */
    int n_layers;     /* entries of kc and vc */
    int64_t rows;     /* KV rows of every layer (all slots together) */
    QuantType type;   /* QUANT_F32 or QUANT_F16 */
    Tensor *kc, *vc;  /* [n_layers] each */
} DecoderKV;

/* Allocate rows KV rows per layer of type (QUANT_F16 or QUANT_F32) for c on b. Returns 0,
 * or VLQ_ENOMEM / VLQ_EINPUT with err set (kv is then empty). */
int decoder_kv_init(DecoderKV *kv, const ModelConfig *c, Backend *b, QuantType type,
                    int64_t rows, char *err);
/* Release the tensors. NULL-safe; kv is zeroed. */
void decoder_kv_clear(DecoderKV *kv);
/* Bytes of one token of KV over all layers. Cannot fail. */
int64_t decoder_kv_bytes_per_tok(const ModelConfig *c, QuantType type);

typedef struct {
    int max_tok;     /* new tokens per decoder_forward call, all sequences together */
    int max_seq;     /* sequences per decoder_forward call */
    int all_logits;  /* 1: room for logits of every row (tests); 0: the last row of each */
    int offload_layers; /* the last N decoder layers' weights stay in pinned host memory
                         * the device reads over the bus (Backend.weight_mapped; the
                         * engine's plan sets it when the weights do not fit); 0: none */
} DecoderOptions;

/* The new tokens of one sequence in a forward call. */
typedef struct {
    int64_t kv_row0;          /* the sequence's first KV row (its slot) */
    int kv_cap;               /* KV rows of its slot: n_past + n_tok <= kv_cap */
    int n_past;               /* tokens of this sequence already in the slot */
    int n_tok;                /* new tokens */
    const int32_t *ids;       /* [n_tok] token ids */
    const int32_t *pos;       /* [3][n_tok] MRoPE positions (t row, h row, w row) */
    int n_visual;             /* rows of the new tokens that carry visual features */
    const int32_t *visual_rows; /* [n_visual] indices in 0..n_tok-1, ascending */
    const float *visual;      /* [n_visual, hidden] merger output in sequence order */
    const float *deepstack;   /* [n_deep][n_visual, hidden], or NULL (no DeepStack adds) */
} DecoderSeq;

/* Bind the text weights on b and allocate the activations; kv (borrowed: it must outlive
 * the Decoder) is the cache every forward reads and writes. Returns 0 and *out, or
 * VLQ_EMODEL (a weight missing or misshaped, an unsupported config), VLQ_EINPUT (kv of
 * another shape) or VLQ_ENOMEM. */
int decoder_new(const Model *m, Backend *b, const DecoderOptions *opt, const DecoderKV *kv,
                Decoder **out, char *err);
/* Bytes decoder_new allocates for opt (activations, logits, host scratch), for the
 * engine's memory plan. Cannot fail. */
int64_t decoder_run_bytes(const ModelConfig *c, const DecoderOptions *opt);
/* Release the run state. NULL-safe. The model must outlive the Decoder. */
void decoder_free(Decoder *d);

/* Run the new tokens of n_seq sequences through the decoder, storing their keys and
 * values in their KV rows. logits (host, may be NULL): [n_seq, vocab], the last row of
 * each sequence; with all_rows (needs all_logits), [total new tokens, vocab] in batch
 * order. Returns 0, or VLQ_EINPUT (too many tokens or sequences, KV rows outside the
 * cache or past kv_cap, a bad id). */
int decoder_forward(Decoder *d, const DecoderSeq *seqs, int n_seq, float *logits, int all_rows,
                    char *err);

/* Call tap with "embed" (after the visual scatter), "layer" i (after layer i and its
 * DeepStack add) and "norm" (final norm, the rows whose logits are computed) in later
 * forwards; NULL turns it off. */
void decoder_set_tap(Decoder *d, BackendTap tap, void *user);

/* The MRoPE positions of a prompt, as Qwen3VLModel.get_rope_index: ids[n]; image_grid
 * [n_img][3] and video_grid [n_vid][3] (t, h, w in patches) in prompt order; each video
 * is split into t groups of (1, h, w), one per <vision_start><video_pad...> block. Writes
 * pos[3][n] and *rope_delta (decode position p uses p + rope_delta on all axes).
 * Returns 0, or VLQ_EINPUT when the placeholders and grids disagree. */
int decoder_rope_index(const ModelConfig *c, const int32_t *ids, int n, const int32_t *image_grid,
                       int n_img, const int32_t *video_grid, int n_vid, int32_t *pos,
                       int *rope_delta, char *err);

#endif
