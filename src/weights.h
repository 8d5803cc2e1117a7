/* weights: binds a model's tensors (model.h) to backend Tensors by name, checking each
 * one's shape and type, so vision.c and decoder.c ask for "what they need" in one line
 * and a file that lacks it is a clear error at load, never a crash in a forward pass. */
#ifndef VLQ_WEIGHTS_H
#define VLQ_WEIGHTS_H

#include "backend.h"
#include "model.h"

/* t = the tensor called name, seen as [rows, cols] (a conv weight [out, C, kt, kh, kw] is
 * [out, C*kt*kh*kw]; a vector is [1, n]). Its element count must be rows*cols. Returns 0,
 * or VLQ_EMODEL "name: missing" / "name: shape ..." with err set. */
int weights_get(Backend *b, const Model *m, const char *name, int64_t rows, int64_t cols,
                Tensor *t, char *err);
/* weights_get, with mapped = 1 keeping the tensor in pinned host memory the device reads
 * over the bus (Backend.weight_mapped: an offloaded layer) where the backend has it. */
int weights_get_at(Backend *b, const Model *m, const char *name, int64_t rows, int64_t cols,
                   int mapped, Tensor *t, char *err);

#endif
