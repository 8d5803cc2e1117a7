/* mm_geom: the launch geometry of kernels/matmul.cu as VK_HD functions (which rows, tiles,
 * chunks and fragment elements each block, warp, lane and register covers), so
 * tests/test_kmath_mm.c checks on the host that every output row and tile is covered
 * exactly once and that the index maps match the weights' layout (src/quant.h).
 *
 * C only (no C++), no globals. */
#ifndef VLQ_MM_GEOM_H
#define VLQ_MM_GEOM_H

#include "vk_hd.h"

#include <stddef.h>
#include <stdint.h>

/* ---- GEMV (decode: n <= VK_GEMV_MAX_N token rows, Q4/Q8 weights) ----
 * A block of VK_GEMV_WARPS warps works on row groups of VK_GEMV_ROWS_PER_BLOCK weight
 * rows: group rg, warp w owns rows (rg*VK_GEMV_WARPS + w)*VK_GEMV_RPW + r, r < VK_GEMV_RPW
 * (the rows past out idle). Its 32 lanes stream those rows' 16-byte chunks side by side
 * (lane l takes chunks l, l+32, ... of each k-chunk), so a warp's loads are 512
 * contiguous bytes per row. The grid is at most VK_GEMV_BLOCKS_PER_SM blocks per SM and
 * block b takes row groups b, b + grid, ...: when all of x fits one k-chunk (kc >= in) a
 * block stages x into shared memory once for all its row groups (the 151936-row lm_head
 * stages it ~1000 times, not 9496). Otherwise the columns go in k-chunks of kc (a
 * multiple of the group) whose x for all tokens fits the block's shared memory. */
#define VK_GEMV_MAX_N 8
#define VK_GEMV_WARPS 8
#define VK_GEMV_RPW 2
#define VK_GEMV_THREADS (VK_GEMV_WARPS * 32)
#define VK_GEMV_ROWS_PER_BLOCK (VK_GEMV_WARPS * VK_GEMV_RPW)
#define VK_GEMV_BLOCKS_PER_SM 8
#define VK_GEMV_XS_MAX_BYTES (48 << 10) /* without an opt-in to more shared memory */
#define VK_GEMV_XS_FLOATS (VK_GEMV_XS_MAX_BYTES / 4)

/* Row groups of out weight rows. */
VK_HD int64_t vk_gemv_groups(int64_t out)
{
    return (out + VK_GEMV_ROWS_PER_BLOCK - 1) / VK_GEMV_ROWS_PER_BLOCK;
}

/* Blocks of the GEMV grid for out weight rows on n_sm multiprocessors (at least 1). */
VK_HD int64_t vk_gemv_blocks(int64_t out, int n_sm)
{
    int64_t g = vk_gemv_groups(out), cap = (int64_t)(n_sm > 0 ? n_sm : 1) * VK_GEMV_BLOCKS_PER_SM;
    return g < cap ? (g > 0 ? g : 1) : cap;
}

/* Weight row r (< VK_GEMV_RPW) of warp w in row group rg (may be >= out: idle). */
VK_HD int64_t vk_gemv_row(int64_t rg, int w, int r)
{
    return (rg * VK_GEMV_WARPS + w) * VK_GEMV_RPW + r;
}

/* Columns per k-chunk for nt tokens, in columns and this group: all of in when it fits,
 * else the largest multiple of the group whose x for nt tokens fits
 * VK_GEMV_XS_MAX_BYTES; 0 when even one group does not (the caller takes the GEMM). */
VK_HD int vk_gemv_kc(int nt, int group, int64_t in)
{
    int64_t kc = VK_GEMV_XS_FLOATS / nt / group * group;
    if (kc > in)
        kc = in;
    if (kc < group)
        kc = group;
    return (size_t)kc * (size_t)nt * 4 <= VK_GEMV_XS_MAX_BYTES ? (int)kc : 0;
}

/* Trailing zero bits of d > 0. */
VK_HD int vk_ctz(int d)
{
#ifdef __CUDA_ARCH__
    return __ffs(d) - 1;
#else
    return __builtin_ctz((unsigned)d);
#endif
}

/* a / d for a >= 0, d > 0: a shift when d is a power of two (the usual group sizes 32,
 * 64, 128: the hot loops then divide by none), else a division (group 96). */
VK_HD int vk_udiv(int a, int d)
{
    return (d & (d - 1)) == 0 ? a >> vk_ctz(d) : a / d;
}

/* Q4 chunk c (16 bytes, 32 weights) of a k-chunk starting at a group boundary: its bytes
 * start at c*16 from the k-chunk's first byte, its low nibbles are local columns
 * *e_lo .. +15 and its high nibbles *e_hi .. +15, in local group c / (group/32). */
VK_HD void vk_q4_chunk(int c, int group, int *e_lo, int *e_hi, int *g)
{
    int per = group / 32; /* chunks per group */
    *g = vk_udiv(c, per);
    *e_lo = *g * group + (c - *g * per) * 16;
    *e_hi = *e_lo + group / 2;
}

/* Q8 chunk c (16 bytes, 16 weights): local columns *e0 .. +15, local group *g. */
VK_HD void vk_q8_chunk(int c, int group, int *e0, int *g)
{
    *e0 = c * 16;
    *g = vk_udiv(*e0, group);
}

/* ---- the activation conversion for the tensor-core GEMM and cuBLAS ----
 * c->work holds x as 16-bit values [rows, in] (256-byte aligned) then one int32 exponent
 * per row. The token rows a pass can take: the most whose buffers fit work_bytes (at
 * least 1 for any in the engine uses; 0 means even one row does not fit). */
#define VK_MM_ALIGN 256
VK_HD size_t vk_mm_align(size_t b)
{
    return (b + VK_MM_ALIGN - 1) / VK_MM_ALIGN * VK_MM_ALIGN;
}

VK_HD size_t vk_mm_work_bytes(int64_t rows, int64_t in)
{
    return vk_mm_align((size_t)(rows * in) * 2) + (size_t)rows * 4;
}

VK_HD int64_t vk_mm_work_rows(size_t work_bytes, int64_t in)
{
    int64_t r = (int64_t)(work_bytes / (size_t)(in * 2 + 4));
    while (r > 0 && vk_mm_work_bytes(r, in) > work_bytes)
        r--;
    return r;
}

/* ---- the tensor-core GEMM (prefill) ----
 * y[n, out] = x[n, in] W^T as D[M, N] = A[M, K] B[K, N] with M = out (A = W, row-major:
 * the weights' own layout), N = tokens (B = x^T, i.e. x row-major: "col" in mma terms),
 * K = in. A block computes a BM x BN tile of D over K in steps of BK (one k-step never
 * crosses a weight group: group % 32 == 0). 4 warps in a 2 x 2 grid, each a 32 x 64 warp
 * tile = 2 x 8 mma.m16n8k16 tiles. Grid: x over the M tiles (fastest, so consecutive
 * blocks share one x tile in L2), y over the N tiles. */
#define VK_MMQ_BM 64
#define VK_MMQ_BN 128
#define VK_MMQ_BK 32
#define VK_MMQ_WARPS 4
#define VK_MMQ_THREADS (VK_MMQ_WARPS * 32)
#define VK_MMQ_WM 32               /* warp tile rows (M) */
#define VK_MMQ_WN 64               /* warp tile columns (N) */
#define VK_MMQ_MT (VK_MMQ_WM / 16) /* m16 tiles per warp */
#define VK_MMQ_NT (VK_MMQ_WN / 8)  /* n8 tiles per warp */
/* shared row stride in halves: 80 bytes, conflict-free 32-bit fragment loads, 16-byte
 * aligned rows */
#define VK_MMQ_LDS (VK_MMQ_BK + 8)

VK_HD int64_t vk_mmq_grid_m(int64_t out)
{
    return (out + VK_MMQ_BM - 1) / VK_MMQ_BM;
}
VK_HD int64_t vk_mmq_grid_n(int64_t n)
{
    return (n + VK_MMQ_BN - 1) / VK_MMQ_BN;
}

/* Warp w's tile origin inside the block tile: rows *m0, tokens *n0. */
VK_HD void vk_mmq_warp(int w, int *m0, int *n0)
{
    *m0 = (w & 1) * VK_MMQ_WM;
    *n0 = (w >> 1) * VK_MMQ_WN;
}

/* The weight tile load: thread tid dequantises 16 weights, row *row of the tile, local
 * columns *k .. *k+15 (one 16-byte chunk of Q4 or Q8: 64 rows x 32 columns = 128
 * threads x 16). */
VK_HD void vk_mmq_wload(int tid, int *row, int *k)
{
    *row = tid >> 1;
    *k = (tid & 1) * 16;
}

/* Where the 16 weights at group-local column j (j % 16 == 0) of a group live in a row:
 * Q4: bytes *byte .. +15 of the group (from the group's first byte), nibble *hi; Q8:
 * bytes j .. j+15. */
VK_HD void vk_q4_loc16(int j, int group, int *byte, int *hi)
{
    int half = group / 2;
    *hi = j >= half;
    *byte = j - (*hi ? half : 0);
}

/* The activation tile load: x tile BN tokens x BK halves = 4 chunks of 16 bytes per
 * token; thread tid's i-th chunk (i < 4) is token *tok, halves *k .. *k+7. */
#define VK_MMQ_XCHUNKS (VK_MMQ_BN * VK_MMQ_BK / 8 / VK_MMQ_THREADS)
VK_HD void vk_mmq_xload(int tid, int i, int *tok, int *k)
{
    int id = tid + i * VK_MMQ_THREADS;
    *tok = id / (VK_MMQ_BK / 8);
    *k = (id % (VK_MMQ_BK / 8)) * 8;
}

/* mma.m16n8k16 fragments (PTX ISA, "Matrix Fragments for mma.m16n8k16" with .f16
 * inputs); g = lane / 4, t = lane % 4.
 * A (16 x 16, row-major): register i (two halves at columns k, k+1). */
VK_HD void vk_mma_a(int lane, int i, int *row, int *k)
{
    *row = (lane >> 2) + 8 * (i & 1);
    *k = 2 * (lane & 3) + 8 * (i >> 1);
}

/* B (16 x 8, K x N; stored as [n][k]): register i (two halves at rows k, k+1). */
VK_HD void vk_mma_b(int lane, int i, int *k, int *col)
{
    *k = 2 * (lane & 3) + 8 * i;
    *col = lane >> 2;
}

/* C/D (16 x 8, f32): element i < 4. */
VK_HD void vk_mma_c(int lane, int i, int *row, int *col)
{
    *row = (lane >> 2) + 8 * (i >> 1);
    *col = 2 * (lane & 3) + (i & 1);
}

#endif
