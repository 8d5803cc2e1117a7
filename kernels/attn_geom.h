/* attn_geom: the launch geometry of the attention kernels (kernels/attn.cu): which rows
 * and keys each block and each thread covers, the causal bounds, the key splits of
 * decode, and the host-side work lists. Shared with tests/test_kmath_attn.c, which checks
 * that every (query, key) pair inside the causal bounds is covered exactly once and runs
 * the kernels' algorithm on the host through these very functions.
 *
 * Tile kernel (prefill rows, vision segments): a block of VK_ATTN_NT threads takes one
 * item (a run of bq query rows of one sequence) and one KV head. A query row is a pair
 * (token, query head of that KV head's group), pairs numbered p = token * rep + j, so
 * the rep heads that share a KV head (GQA) share every K/V tile a block loads, and a
 * sequence of few tokens still fills the rows. Keys go in tiles of VK_ATTN_BK; thread
 * tid owns rows vk_attn_srow(tid, i) (i < rq), scores of keys vk_attn_skey(tid, j)
 * (j < VK_ATTN_BK / 8) and output columns vk_attn_ocol(tid, j, e) (j < nj, e < 4): the
 * eight threads of a row are eight consecutive lanes of one warp, so a row's max and sum
 * are reduced by three shuffles and its P row is shared under __syncwarp.
 *
 * Decode kernel (sequences with one new token): a block takes one item (a key range of
 * one sequence) and up to rb query heads of one KV head; its 8 lane groups of 16 lanes
 * take keys k0 + g, k0 + g + 8, ...; a lane holds head-dim chunks of 8 (vk_dec_chunk).
 * Each block writes a partial state per head to the workspace; the combine kernel
 * merges the partials of a sequence's items. */
#ifndef VLQ_ATTN_GEOM_H
#define VLQ_ATTN_GEOM_H

#include "../src/backend.h"
#include "vk_hd.h"

#include <stdint.h>

/* ---- tile kernel ---- */
#define VK_ATTN_NT 128 /* threads per block */
#define VK_ATTN_BK 32  /* keys per tile */
#define VK_ATTN_HD_MAX 256

/* Head-dim chunks of 32 columns the tile kernel is compiled for (1, 2, 3, 4, 6, 8): the
 * head is zero-padded to 32 * nj columns in shared memory. */
VK_HD int vk_attn_nj(int hd)
{
    int n = (hd + 31) / 32;
    return n <= 4 ? n : n <= 6 ? 6 : 8;
}

/* Rows per thread: the accumulators (4 * rq * nj floats) stay in registers and shared
 * memory within 99 KB (the sm_86/sm_89 per-block limit). */
#define VK_ATTN_RQ(nj) ((nj) <= 4 ? 4 : (nj) == 6 ? 2 : 1)
VK_HD int vk_attn_rq(int nj) { return VK_ATTN_RQ(nj); }

/* Query rows (pairs) per block. */
VK_HD int vk_attn_bq(int rq) { return 16 * rq; }

/* Dynamic shared memory of the tile kernel: Q [bq][ld], K and V [VK_ATTN_BK][ld] and P
 * [bq][VK_ATTN_BK + 1] floats, ld = 32 nj + 4 (rows padded by one 16-byte access, so the
 * 8 keys a quarter-warp reads sit in distinct banks). At most 99 KB (sm_86/89). */
VK_HD int vk_attn_ld(int nj) { return 32 * nj + 4; }
VK_HD int vk_attn_smem(int nj)
{
    int ld = vk_attn_ld(nj), bq = vk_attn_bq(vk_attn_rq(nj));
    return (bq * ld + 2 * VK_ATTN_BK * ld + bq * (VK_ATTN_BK + 1)) * 4;
}

/* Row of the tile that thread tid's i-th row is; 16 row groups of 8 lanes. */
VK_HD int vk_attn_srow(int tid, int i, int rq) { return (tid >> 3) * rq + i; }
/* Key of the tile that thread tid's j-th score is (j < VK_ATTN_BK / 8). */
VK_HD int vk_attn_skey(int tid, int j) { return (tid & 7) + 8 * j; }
/* Output column of thread tid's chunk j, element e: the 8 lanes of a row read one
 * 32-float run of a V row (conflict-free 16-byte loads). */
VK_HD int vk_attn_ocol(int tid, int j, int e) { return 32 * j + 4 * (tid & 7) + e; }

/* Pair p of a sequence: its token and its query head (kvh's group of rep heads). */
VK_HD int vk_attn_pair_tok(int p, int rep) { return p / rep; }
VK_HD int vk_attn_pair_head(int p, int rep, int kvh) { return kvh * rep + p % rep; }

/* Keys (from the sequence's first KV row) that token t sees: causal, the cached ones and
 * the new ones up to itself; within a segment (not causal), all n_keys. */
VK_HD int vk_attn_limit(int causal, int n_past, int t, int n_keys)
{
    return causal ? n_past + t + 1 : n_keys;
}

/* Keys a block of pairs [p0, p0 + bq) reads: the largest limit among its rows (the
 * last valid pair's token); keys past it are never loaded. */
VK_HD int vk_attn_block_keys(int causal, int n_past, int n_tok, int rep, int p0, int bq,
                             int n_keys)
{
    int last = p0 + bq < n_tok * rep ? p0 + bq - 1 : n_tok * rep - 1;
    return vk_attn_limit(causal, n_past, vk_attn_pair_tok(last, rep), n_keys);
}

/* A block's work: pairs p0 .. p0+bq-1 of sequence seq (an index into the staged
 * BackendSeq array). */
typedef struct {
    int seq, p0;
} VkAttnItem;

/* Fill items[cap] with the blocks of seqs[n_seq] from the cursor (*s, *p), which it
 * advances: each sequence's n_tok * rep pairs cut into runs of bq. Sequences with one
 * token are skipped when skip_decode (the decode kernel takes them), as are empty ones.
 * Returns the number of items; 0 when all are done. */
static inline int vk_attn_fill(const BackendSeq *seqs, int n_seq, int skip_decode, int rep,
                               int bq, int *s, int *p, VkAttnItem *items, int cap)
{
    int n = 0;
    while (*s < n_seq && n < cap) {
        const BackendSeq *sq = &seqs[*s];
        if (sq->n_tok == 0 || (skip_decode && sq->n_tok == 1) || *p >= sq->n_tok * rep) {
            (*s)++;
            *p = 0;
            continue;
        }
        items[n].seq = *s;
        items[n].p0 = *p;
        n++;
        *p += bq;
    }
    return n;
}

/* ---- decode kernel ---- */
#define VK_DEC_NT 128 /* threads per block */
#define VK_DEC_G 8    /* lane groups per block (16 lanes each) */
#define VK_DEC_GL 16  /* lanes per group */

/* Head-dim chunks of 8 per lane (1 up to head_dim 128, 2 up to 256): chunk
 * c = lane + 16 * ci covers dims 8c .. 8c+7, so a group reads a 128-dim f16 row as 16
 * lanes x 16 bytes. */
VK_HD int vk_dec_nch(int hd) { return (hd + 127) / 128; }
VK_HD int vk_dec_chunk(int gl, int ci) { return gl + VK_DEC_GL * ci; }
/* Query heads per block (q and acc in registers: 8 * nch * rb floats each). */
#define VK_DEC_RB(nch) ((nch) == 1 ? 4 : 2)
VK_HD int vk_dec_rb(int nch) { return VK_DEC_RB(nch); }
/* Blocks per KV head: its rep query heads in runs of rb. */
VK_HD int vk_dec_hgroups(int rep, int rb) { return (rep + rb - 1) / rb; }

/* Key k0 + 8 i + g is lane group g's i-th key (valid while < k1). */
VK_HD int vk_dec_key(int k0, int i, int g) { return k0 + VK_DEC_G * i + g; }
/* Iterations of the block's key loop over [k0, k1): the same for every group, so the
 * shuffles always see the whole warp; a group past k1 runs them with a masked key. */
VK_HD int vk_dec_iters(int k0, int k1) { return (k1 - k0 + VK_DEC_G - 1) / VK_DEC_G; }

/* A decode block's work: keys [k0, k1) of sequence seq; its partials sit at item index
 * it (workspace float offset (it * n_heads + h) * (hd + 2): m, l, acc[hd]). */
typedef struct {
    int seq, k0, k1;
} VkDecItem;
/* A decode sequence for the combine kernel: its items first .. first+n-1. */
typedef struct {
    int seq, first, n;
} VkDecSeq;

/* Splits of a sequence of n_kv keys into chunks of ch. */
VK_HD int vk_dec_nsplit(int n_kv, int ch) { return (n_kv + ch - 1) / ch; }

/* Blocks and the largest split count of the decode sequences (n_tok == 1) at chunk ch. */
static inline long long vk_dec_blocks(const BackendSeq *seqs, int n_seq, int ch,
                                      int blocks_per_item, int *max_ns)
{
    long long blocks = 0;
    *max_ns = 0;
    for (int s = 0; s < n_seq; s++) {
        if (seqs[s].n_tok != 1)
            continue;
        int ns = vk_dec_nsplit(seqs[s].n_past + 1, ch);
        blocks += (long long)ns * blocks_per_item;
        if (ns > *max_ns)
            *max_ns = ns;
    }
    return blocks;
}

/* The key chunk (a power of two, at least 64): from 1024 (long enough that the partials
 * and the combine cost little), halved while the decode blocks (blocks_per_item per
 * item) fill under two waves of n_sm multiprocessors, doubled while the longest sequence
 * would need more than max_splits items (the item list's capacity). */
static inline int vk_dec_pick_chunk(const BackendSeq *seqs, int n_seq, int blocks_per_item,
                                    int n_sm, int max_splits)
{
    int ch = 1024, max_ns;
    while (vk_dec_blocks(seqs, n_seq, ch, blocks_per_item, &max_ns) < 2LL * n_sm && ch > 64)
        ch /= 2;
    while (max_ns > max_splits && ch < (1 << 30)) {
        ch *= 2;
        vk_dec_blocks(seqs, n_seq, ch, blocks_per_item, &max_ns);
    }
    return ch;
}

/* Fill items[cap] and dseqs[] with the decode sequences (n_tok == 1) of seqs from the
 * cursor *s, which it advances; a sequence goes in whole (all its splits) or waits for
 * the next batch. Returns the number of items (0: all done), *n_dseq the sequences. A
 * sequence whose splits exceed cap alone is an error the caller prevents by its chunk
 * (vk_dec_pick_chunk's max_splits = cap). */
static inline int vk_dec_fill(const BackendSeq *seqs, int n_seq, int ch, int *s,
                              VkDecItem *items, int cap, VkDecSeq *dseqs, int *n_dseq)
{
    int n = 0;
    *n_dseq = 0;
    for (; *s < n_seq; (*s)++) {
        const BackendSeq *sq = &seqs[*s];
        if (sq->n_tok != 1)
            continue;
        int n_kv = sq->n_past + 1, ns = vk_dec_nsplit(n_kv, ch);
        if (n + ns > cap)
            break;
        dseqs[*n_dseq].seq = *s;
        dseqs[*n_dseq].first = n;
        dseqs[*n_dseq].n = ns;
        (*n_dseq)++;
        for (int i = 0; i < ns; i++) {
            items[n].seq = *s;
            items[n].k0 = i * ch;
            items[n].k1 = (i + 1) * ch < n_kv ? (i + 1) * ch : n_kv;
            n++;
        }
    }
    return n;
}

#endif
