/* convert: a Hugging Face Qwen3-VL checkpoint -> one .vlq file (`vlq convert`), the
 * weight quantiser, and the way back (`vlq export`: dequantised weights as safetensors
 * so the reference can run on exactly the weights vlq uses).
 *
 * What gets quantised: the text decoder's Linear weights and embed_tokens (tied: it is
 * also the lm_head, the biggest read per token), to Q4 or Q8 in the layout of quant.h,
 * group size per tensor. Everything else (text norms, the whole vision tower) keeps 16
 * bits: a bf16/f16 source as is; an f32 source gives bf16 matrices and f32 vectors.
 * CONVERT_QUANT_NONE keeps every tensor's source type exactly. The Conv3d patch
 * embedding is stored as the 2-D matrix [hidden, C*kt*p*p]. This module reads files and
 * writes one; it never prints (progress goes through a callback). */
#ifndef VLQ_CONVERT_H
#define VLQ_CONVERT_H

#include "model.h"
#include "quant.h"

#include <stdint.h>

typedef enum {
    CONVERT_QUANT_Q4 = 0,   /* default */
    CONVERT_QUANT_Q8 = 1,
    CONVERT_QUANT_F16 = 2,  /* decoder weights in f16, unquantised */
    CONVERT_QUANT_NONE = 3, /* every tensor in its source dtype */
} ConvertQuant;

typedef struct {
    ConvertQuant quant;
    int group;                  /* columns per scale, multiple of 32; 0: QUANT_DEFAULT_GROUP */
    const char *tokenizer_path; /* NULL: HF_DIR/tokenizer.json */
    int force;                  /* replace an existing output file (never an input) */
    /* called after each tensor (may be NULL) */
    void (*progress)(void *ctx, int done, int total, uint64_t bytes_done, uint64_t bytes_total);
    void *progress_ctx;
} ConvertOptions;

/* Convert the checkpoint in hf_dir into out_path (written to a temp file beside it, then
 * renamed: util_atomic_*). An output that is one of the files read is refused; an
 * existing output is refused unless opt->force. Returns 0, VLQ_EMODEL (missing/wrong
 * tensor, unknown architecture, bad config: err names the file, the tensor and the
 * reason), VLQ_EINPUT (the output refused), VLQ_EIO or VLQ_ENOMEM. */
int convert_run(const char *hf_dir, const char *out_path, const ConvertOptions *opt, char *err);

/* Write the weights of a .vlq file, dequantised to f32, as a Hugging Face checkpoint
 * in out_dir (created if missing): model.safetensors, config.json,
 * generation_config.json, chat_template.json, tokenizer.json, each atomically. Unless
 * force, an existing one of those files is refused before anything is written; one that
 * is the model itself is refused always. Returns 0 or a VLQ_E*. */
int convert_export(const char *model_path, const char *out_dir, int force, char *err);

/* ---- the quantiser (quant.h layout) ---- */
/* Quantise w[rows, cols] (f32) to Q4 or Q8 into out (quant_nbytes bytes). Per group it
 * picks, among a few candidate scales around max/-8 and amax/7, the one with the least
 * squared error. Cannot fail; cols % group == 0 is the caller's check. */
void convert_quantize(QuantType t, const float *w, int64_t rows, int64_t cols, int group,
                      void *out);
/* Row r of a tensor (any type) as f32 into out[cols], cols = numel / shape[0]. */
void convert_dequantize_row(const ModelTensor *t, int64_t r, float *out);

#endif
