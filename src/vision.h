/* vision: the Qwen3-VL vision encoder (Qwen3VLVisionModel): patch embedding, the learned
 * position embedding interpolated to each grid, 2-D rotary attention within each image
 * or video frame group, the blocks, the 2x2 patch merger and the DeepStack mergers.
 *
 * It owns its weights' backend views and a run state sized once (vision_new) for at most
 * max_patches patches per call; vision_encode allocates nothing. Inputs and outputs are
 * host arrays (features go to the visual feature cache and the decoder from there).
 * It never tokenises or preprocesses: pixels come patchified (prep.h: Qwen3VLImageProcessor's patch order). */
#ifndef VLQ_VISION_H
#define VLQ_VISION_H

#include "backend.h"
#include "model.h"

#include <stdint.h>

typedef struct Vision Vision;

/* Bind the model's vision weights on b and allocate the run state for max_patches
 * patches per encode. Returns 0 and *out, or VLQ_EMODEL (a weight missing or misshaped)
 * or VLQ_ENOMEM, with err set. */
int vision_new(const Model *m, Backend *b, int max_patches, Vision **out, char *err);
/* Release the run state. NULL-safe. The model must outlive the Vision. */
void vision_free(Vision *v);
/* Bytes vision_new allocates for max_patches (activations and host scratch), for the
 * engine's memory plan. Cannot fail. */
int64_t vision_run_bytes(const ModelConfig *c, int max_patches);

/* Columns of one patch row: in_channels * temporal_patch_size * patch_size^2 (1536). */
int vision_patch_dim(const Vision *v);

/* Encode n_items images or videos in one batch: pixels[n_patches, patch_dim] (their
 * patches concatenated, each in the processor's block order), grid[n_items][3] = (t, h, w) in
 * patches, n_patches = sum t*h*w. Writes embeds[n_patches/4, out_hidden] and, when
 * deepstack is not NULL, deepstack[n_deep][n_patches/4][out_hidden]. Returns 0, or
 * VLQ_EINPUT (a grid not a multiple of the merge size, more patches than max_patches). */
int vision_encode(Vision *v, const float *pixels, const int32_t *grid, int n_items,
                  float *embeds, float *deepstack, char *err);

/* Call tap with intermediate tensors ("patch_embed", "pos_embed", "block" i) in later
 * encodes; NULL turns it off. For tests and debugging. */
void vision_set_tap(Vision *v, BackendTap tap, void *user);

#endif
