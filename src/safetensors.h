/* safetensors: read Hugging Face safetensors checkpoints (one file, or shards with
 * model.safetensors.index.json) and write single-file ones (vlq export).
 *
 * Reading maps every shard read-only and parses each JSON header (jansson); every
 * tensor's dtype, shape and byte range are checked against its file before it is
 * listed, so a tensor's data is always inside its mapping. Only F32, F16 and BF16
 * tensors are accepted (Qwen3-VL checkpoints have nothing else); any other dtype is an
 * error naming the tensor. Tensors are borrowed views, valid until safetensors_close. */
#ifndef VLQ_SAFETENSORS_H
#define VLQ_SAFETENSORS_H

#include "quant.h"

#include <stddef.h>
#include <stdint.h>

#define SAFETENSORS_MAX_DIMS 8

typedef struct {
    const char *name;   /* e.g. "model.language_model.norm.weight" */
    QuantType dtype;    /* QUANT_F32, QUANT_F16 or QUANT_BF16 */
    int ndim;
    int64_t shape[SAFETENSORS_MAX_DIMS]; /* outermost first */
    int64_t numel;      /* product of the shape */
    const void *data;   /* in the shard's mapping */
    size_t nbytes;
    const char *file;   /* the shard's path, for messages */
} SafeTensor;

typedef struct SafeSet SafeSet;

/* Open the checkpoint in dir: model.safetensors.index.json and its shards if the index
 * exists, else model.safetensors. Returns 0 and *out, or VLQ_EMODEL / VLQ_EIO with err
 * naming the file and the reason (missing shard, bad header, bad dtype, range outside
 * the file, a tensor listed twice). */
int safetensors_open_dir(const char *dir, SafeSet **out, char *err);
/* Open one .safetensors file. Same returns. */
int safetensors_open_file(const char *path, SafeSet **out, char *err);
/* Unmap and free. NULL-safe. */
void safetensors_close(SafeSet *s);

/* The tensor called name, or NULL. */
const SafeTensor *safetensors_find(const SafeSet *s, const char *name);
int safetensors_count(const SafeSet *s);
const SafeTensor *safetensors_at(const SafeSet *s, int i);
/* "F32", "F16", "BF16" (the safetensors dtype strings); "?" for others. */
const char *safetensors_dtype_name(QuantType t);

/* ---- writing ---- */
typedef struct {
    const char *name;
    QuantType dtype;    /* F32, F16 or BF16 */
    int ndim;
    int64_t shape[SAFETENSORS_MAX_DIMS];
    const void *data;   /* numel * element size bytes, or NULL: ask fill */
} SafeWriteTensor;

/* Fill dst (numel * element size bytes) with tensor i's data; 0 or a VLQ_E* code. */
typedef int (*SafeFillFn)(void *ctx, int i, void *dst, char *err);

/* Write tensors to path as one safetensors file, in name order (as HF writes), atomically
 * (util_atomic_*: a temp file renamed over path, by util.h's rule for what may be
 * replaced). A tensor with data NULL is produced by fill(ctx, i, ...) into a scratch
 * buffer just before it is written, so a large export never holds more than one tensor.
 * Returns 0, fill's error, VLQ_EINPUT (path may not be replaced) or VLQ_EIO with
 * "path: reason". */
int safetensors_write(const char *path, const SafeWriteTensor *t, int n, SafeFillFn fill,
                      void *ctx, char *err);
/* safetensors_write with util_atomic_open's flags (UTIL_ATOMIC_NO_CLOBBER). */
int safetensors_write_ex(const char *path, int flags, const SafeWriteTensor *t, int n,
                         SafeFillFn fill, void *ctx, char *err);

#endif
