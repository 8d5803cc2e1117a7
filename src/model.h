/* model: a converted model file (.vlq): open (mmap, checks), its config, its tensors,
 * and the tokenizer and chat template it carries.
 *
 * The file is written by convert (src/convert.c, `vlq convert`). model_open checks the
 * magic, the format version, the header size, every tensor's bounds and checksum, and
 * that every tensor the config needs is present with the right shape and a supported
 * type; a truncated, corrupt or foreign file is VLQ_EMODEL with the path and the reason.
 * The vision tower's checksums are checked when it is first used (model_prepare_vision),
 * so a text-only run neither reads nor holds it.
 * Tensors are borrowed views into the mapping, valid until model_close. This module
 * never computes: the forward pass (vision.c, decoder.c) reads tensors through it. */
#ifndef VLQ_MODEL_H
#define VLQ_MODEL_H

#include "quant.h"

#include <stddef.h>
#include <stdint.h>

#define MODEL_MAX_DEEPSTACK 8
#define MODEL_MAX_EOS 4

typedef struct {
    /* text decoder (Qwen3VLTextConfig) */
    int vocab_size;
    int hidden_size;
    int n_layers;          /* num_hidden_layers */
    int n_heads;           /* num_attention_heads */
    int n_kv_heads;        /* num_key_value_heads */
    int head_dim;
    int intermediate_size;
    float rms_norm_eps;
    float rope_theta;
    int mrope_section[3];  /* t, h, w frequency counts */
    int mrope_interleaved; /* 1 for Qwen3-VL */
    int tie_word_embeddings;
    /* vision encoder (Qwen3VLVisionConfig) */
    int v_depth;
    int v_hidden_size;
    int v_n_heads;
    int v_intermediate_size;
    int v_out_hidden_size;
    int v_patch_size;
    int v_temporal_patch_size;
    int v_spatial_merge_size;
    int v_num_position_embeddings;
    int v_in_channels;
    int n_deepstack;
    int deepstack_indexes[MODEL_MAX_DEEPSTACK];
    /* special tokens */
    int image_token_id;
    int video_token_id;
    int vision_start_token_id;
    int vision_end_token_id;
    int bos_token_id;
    int n_eos;
    int eos_token_ids[MODEL_MAX_EOS];
    /* sampling defaults from generation_config.json (0 when absent) */
    float temperature;
    float top_p;
    int top_k;
    float repetition_penalty;
} ModelConfig;

typedef struct {
    const char *name;   /* Hugging Face name, e.g. "model.language_model.norm.weight" */
    QuantType type;
    int ndim;
    int64_t shape[4];   /* shape[0] outermost; a Linear weight is [out, in] */
    int group;          /* columns per scale group for Q4/Q8, else 0 */
    const void *data;   /* in the mapping, QUANT_ALIGN-aligned */
    size_t nbytes;
} ModelTensor;

typedef struct Model Model;

/* ---- the .vlq file (written by convert.c; full description in README "Models") ----
 * A 64-byte header: magic "VLQMODEL", u32 version, u32 header size, u64 file size,
 * u64 metadata offset, u64 metadata size, u32 CRC32 of the metadata, zeros. The
 * metadata is JSON: the checkpoint's config.json and generation_config.json, the chat
 * template, the tensor directory (name, type, shape, group, offset, nbytes, crc32) and
 * blobs (tokenizer.json). Every tensor and blob starts at a 64-byte aligned offset. */
#define MODEL_MAGIC "VLQMODEL"   /* 8 bytes, no NUL */
#define MODEL_VERSION 1
#define MODEL_HEADER_SIZE 64

enum {
    MODEL_OPEN_NO_VERIFY = 1,   /* skip the per-tensor CRC32 check (bounds still checked) */
    MODEL_OPEN_NO_POPULATE = 2, /* plain mmap, pages fault in on first use (tools) */
};

/* Open and check a .vlq file. Returns 0 and *out, or VLQ_EMODEL/VLQ_EIO with err set. */
int model_open(const char *path, Model **out, char *err);
/* model_open with MODEL_OPEN_* flags (model_open is flags 0: verify, populate). */
int model_open_ex(const char *path, int flags, Model **out, char *err);
/* Unmap and free. NULL-safe. */
void model_close(Model *m);

/* The parsed config; valid until model_close. Cannot fail. */
const ModelConfig *model_config(const Model *m);
/* The tensor called name, or NULL when the file has none. */
const ModelTensor *model_tensor(const Model *m, const char *name);
/* Number of tensors and the i-th one (0 <= i < count), in file order. */
int model_tensor_count(const Model *m);
const ModelTensor *model_tensor_at(const Model *m, int i);
/* The tokenizer.json bytes and the chat template text the file carries (borrowed,
 * not NUL-terminated for the tokenizer: use *len); NULL when absent. */
const char *model_tokenizer_json(const Model *m, size_t *len);
const char *model_chat_template(const Model *m);
/* Load the tokenizer the file carries into *out (free with tok_free). Returns 0, or
 * VLQ_EMODEL "path: carries no tokenizer", or tok_load_json's errors. */
typedef struct Tok Tok;
int model_load_tok(const Model *m, Tok **out, char *err);
/* Make the vision tower resident: populate its tensors' pages and check their CRC32
 * (model_open does the text decoder's; see model.c). Called by vision_new; idempotent.
 * Returns 0, or VLQ_EMODEL "path: tensor: checksum mismatch" (on every call after). */
int model_prepare_vision(const Model *m, char *err);
/* One line on how the weights are held, for `vlq doctor` and -v: "mmap, text populated
 * (N MiB, MADV_POPULATE_READ), vision lazy (N MiB), hugepages: <what madvise answered>,
 * N of N MiB mapped huge"; "mmap, not populated ..." with MODEL_OPEN_NO_POPULATE.
 * Borrowed until the next call. Cannot fail. */
const char *model_residency(const Model *m);
/* The generation_config.json and config.json texts the file carries (borrowed, NUL-
 * terminated); NULL when absent. For `vlq export`. */
const char *model_generation_json(const Model *m);
const char *model_config_json(const Model *m);

/* ---- config and the tensors it implies (shared by convert and model_open) ---- */

/* Parse a Hugging Face Qwen3-VL config.json text, and optionally its
 * generation_config.json text (NULL: none), into *cfg. Checks the architecture and the
 * consistency rules the engine relies on. Returns 0 or VLQ_EMODEL with err naming the
 * field and the reason. */
int model_config_parse(const char *config_json, const char *generation_json, ModelConfig *cfg,
                       char *err);

typedef enum {
    MODEL_ROLE_LINEAR = 0, /* text decoder Linear weight [out, in] (and an untied lm_head) */
    MODEL_ROLE_EMBED = 1,  /* embed_tokens [vocab, hidden]: the tied lm_head too */
    MODEL_ROLE_NORM = 2,   /* text RMSNorm weights (1-D) */
    MODEL_ROLE_VISION = 3, /* every tensor of the vision tower, norms and biases included */
} ModelRole;

typedef struct {
    char name[96];     /* Hugging Face name */
    int ndim;          /* as stored in .vlq: the 5-D patch-embedding conv is 2-D here */
    int64_t shape[4];
    ModelRole role;
} ModelTensorSpec;

/* The tensors cfg needs, vision then text, in a new array (*n entries) the caller frees.
 * The Conv3d patch embedding [hidden, C, kt, p, p] is listed (and stored) as
 * [hidden, C*kt*p*p], the matrix the forward pass multiplies by. Cannot fail. */
ModelTensorSpec *model_tensor_specs(const ModelConfig *cfg, int *n);

#endif
