/* vcache: the visual feature cache. The vision encoder's outputs for one visual item
 * (the merger's rows and the DeepStack rows) keyed by a SHA-256 of the preprocessed
 * pixels, the grid and the model file's identity, so a page or video segment seen again
 * (a retried job, a resubmitted file) skips the encoder.
 *
 * In memory with a byte limit (least recently used evicted first); optionally also on
 * disk under a directory (one file per entry, written atomically, checked on read: a
 * damaged or foreign file is a miss, never an error). A VCache is used by one thread at
 * a time (the engine's driver). Counters for -v and tests. */
#ifndef VLQ_VCACHE_H
#define VLQ_VCACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct VCache VCache;

typedef struct {
    uint8_t bytes[32];
} VCacheKey;

/* model_id: a string naming the model file's identity (path + size + header CRC, say);
 * limit_bytes 0 keeps nothing in memory; dir NULL: no disk cache. Returns 0 or
 * VLQ_EIO (dir cannot be created) with err set. */
int vcache_open(const char *model_id, int64_t limit_bytes, const char *dir, VCache **out,
                char *err);
void vcache_close(VCache *c);

/* The key of one item: pixels [n_patches, patch_dim] floats, grid (t, h, w). */
VCacheKey vcache_key(const VCache *c, const float *pixels, int64_t n_floats,
                     const int32_t grid[3]);

/* Look up key: on a hit copies n_floats floats (embeds then deepstack rows, the layout
 * the caller stored) into out and returns 1; 0 on a miss. */
int vcache_get(VCache *c, const VCacheKey *key, float *out, int64_t n_floats);
/* Store n_floats floats under key (copied; evicts as needed; disk write errors are
 * logged once and ignored: the cache is an optimisation). */
void vcache_put(VCache *c, const VCacheKey *key, const float *data, int64_t n_floats);

typedef struct {
    int64_t hits, misses, bytes, entries, disk_hits, disk_writes;
} VCacheStats;
void vcache_stats(const VCache *c, VCacheStats *s);

#endif
