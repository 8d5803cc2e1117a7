/* backend_cuda: the Backend table of the "cuda" plugin (vlq-backend-cuda.so): device
 * selection, memory, uploads, the VkCtx every launcher gets (kernels/vk.h), and each op
 * forwarded to its kernel family's launcher (kernels/matmul.cu, rows.cu, norm.cu, rope.cu,
 * attn.cu). No arithmetic here: the ops' reference is src/ops_ref.c, checked op by op by
 * `vlq selftest --backend cuda`.
 *
 * Loading. The CUDA runtime is linked statically and opens the driver (libcuda.so.1)
 * itself at the first call, so the plugin loads on a machine without a driver and open
 * says why it cannot run: "no CUDA driver (libcuda.so.1 not found)", "no CUDA device",
 * or the runtime's own words. cuBLAS comes from the toolkit (rpath).
 *
 * Threads. The runtime's current device is per thread and the engine's ops run on its
 * driver thread, not the opening one: every entry that touches the device first makes
 * the instance's device current (cheap when it already is).
 *
 * Memory. Everything is allocated at open (the workspace, the ring, cuBLAS's workspace:
 * Backend.reserved_bytes) or when the model is loaded (alloc, alloc_typed, weight,
 * weight_mapped), as the engine's plan counted; an op never allocates. Tensor.owned
 * says how release frees: CU_OWNED_DEVICE (cudaMalloc) or CU_OWNED_PINNED (cudaHostAlloc,
 * an offloaded weight the kernels read over the bus through its mapped address).
 *
 * Errors. Ops cannot fail (backend.h): a failed call or launch is recorded in the ctx
 * (vk_note: the first since the last sync wins) and reported by sync as VLQ_EDEVICE,
 * which fails the engine's batch as a transient error. */
#include "vk.h"

extern "C" {
#include "../src/err.h" /* C: err_set comes from src/err.c, linked in */
}

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CU_OWNED_DEVICE 1
#define CU_OWNED_PINNED 2
/* cuBLAS's own workspace (cublasSetWorkspace), so it never allocates in a call */
#define CU_BLAS_WORK ((size_t)32 << 20)
/* device allocations are padded to this, and a quantised weight's scale plane starts at
 * such an offset, so every kernel may use 16-byte (and wider) accesses from any start */
#define CU_ALIGN ((size_t)256)

typedef struct {
    VkCtx vk;        /* first: vk_stage gets the VkCtx and finds the rest from it */
    void *blas_work;
    void *ring_host; /* pinned host twin of vk.ring: vk_stage copies through it */
    cudaDeviceProp prop;
} CuCtx;

static size_t cu_pad(size_t n)
{
    return (n + CU_ALIGN - 1) / CU_ALIGN * CU_ALIGN;
}

static CuCtx *cu_ctx(Backend *b)
{
    CuCtx *c = (CuCtx *)b->ctx;
    cudaSetDevice(c->vk.device);
    return c;
}

static VkCtx *cu_vk(Backend *b)
{
    return &cu_ctx(b)->vk;
}

/* ---- the contract's two helpers (vk.h) ---- */

/* Record the first error since the last sync with its words. */
static int cu_note(VkCtx *c, int e, const char *why, const char *what)
{
    if (e == 0)
        return 0;
    if (!c->error) {
        c->error = e;
        snprintf(c->err, sizeof c->err, "%s: %s (error %d)", what, why ? why : "?", e);
    }
    return 1;
}

extern "C" int vk_note(VkCtx *c, int e, const char *what)
{
    return cu_note(c, e, e ? cudaGetErrorString((cudaError_t)e) : NULL, what);
}

extern "C" int vk_note_blas(VkCtx *c, int status, const char *what)
{
    return cu_note(c, status, status ? cublasGetStatusString((cublasStatus_t)status) : NULL,
                   what);
}

extern "C" void *vk_stage(VkCtx *c, const void *host, size_t bytes)
{
    CuCtx *cc = (CuCtx *)c;
    size_t n = cu_pad(bytes ? bytes : 1);
    if (n > c->ring_bytes) {
        vk_note(c, (int)cudaErrorMemoryAllocation, "vk_stage: a host array larger than the ring");
        return NULL;
    }
    /* The array goes through the pinned twin at the same offset, so the copy is truly
     * asynchronous (from pageable memory the runtime may wait for the stream). The device
     * side is safe by stream order: the copy that overwrites an older array runs after
     * every launch enqueued before it, its only readers. The host side is written now, so
     * before a lap reuses it the copies of the last lap must be done: one wait per lap of
     * the ring (8 MiB of staged arrays), nothing otherwise. */
    if (c->ring_head + n > c->ring_bytes) {
        if (vk_note(c, (int)cudaStreamSynchronize(c->stream), "vk_stage: wrap"))
            return NULL;
        c->ring_head = 0;
    }
    void *dst = (char *)c->ring + c->ring_head, *pin = (char *)cc->ring_host + c->ring_head;
    c->ring_head += n;
    memcpy(pin, host, bytes);
    if (vk_note(c, (int)cudaMemcpyAsync(dst, pin, bytes, cudaMemcpyHostToDevice, c->stream),
                "vk_stage: copy"))
        return NULL;
    return dst;
}

/* ---- lifecycle ---- */

static int cu_fail(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int cu_fail(char *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, VLQ_ERRLEN, fmt, ap);
        va_end(ap);
    }
    return VLQ_EDEVICE;
}

static void cu_close(Backend *b)
{
    CuCtx *c = (CuCtx *)b->ctx;
    if (!c)
        return;
    cudaSetDevice(c->vk.device);
    if (c->vk.stream)
        cudaStreamSynchronize(c->vk.stream);
    if (c->vk.blas)
        cublasDestroy(c->vk.blas);
    cudaFree(c->blas_work);
    cudaFree(c->vk.work);
    cudaFree(c->vk.ring);
    cudaFreeHost(c->ring_host);
    if (c->vk.stream)
        cudaStreamDestroy(c->vk.stream);
    free(c);
    b->ctx = NULL;
    b->reserved_bytes = 0;
}

static int cu_open(Backend *b, const BackendOpenOptions *o, char *err)
{
    /* the runtime would say "driver version is insufficient" for a missing driver: probe
     * for it first, so the message says what is wrong */
    void *drv = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (!drv)
        return cu_fail(err, "no CUDA driver (libcuda.so.1 not found)");
    dlclose(drv);
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e == cudaErrorNoDevice || (e == cudaSuccess && n == 0))
        return cu_fail(err, "no CUDA device");
    if (e != cudaSuccess)
        return cu_fail(err, "CUDA: %s", cudaGetErrorString(e));
    int dev = o ? o->device : 0;
    if (dev < 0 || dev >= n)
        return cu_fail(err, "no CUDA device %d (%d found)", dev, n);
    CuCtx *c = (CuCtx *)calloc(1, sizeof *c);
    if (!c)
        return cu_fail(err, "out of host memory");
    b->ctx = c;
    c->vk.device = dev;
    const char *what = "cudaSetDevice";
    e = cudaSetDevice(dev);
    if (!e) {
        what = "cudaGetDeviceProperties";
        e = cudaGetDeviceProperties(&c->prop, dev);
    }
    if (!e) {
        c->vk.sm_major = c->prop.major;
        c->vk.sm_minor = c->prop.minor;
        c->vk.n_sm = c->prop.multiProcessorCount;
        what = "cudaStreamCreate";
        e = cudaStreamCreateWithFlags(&c->vk.stream, cudaStreamNonBlocking);
    }
    if (!e) {
        what = "workspace";
        e = cudaMalloc(&c->vk.work, VK_WORK_MIN);
    }
    if (!e) {
        what = "ring";
        e = cudaMalloc(&c->vk.ring, VK_RING_BYTES);
    }
    if (!e) {
        what = "pinned ring";
        e = cudaHostAlloc(&c->ring_host, VK_RING_BYTES, cudaHostAllocDefault);
    }
    if (!e) {
        what = "cuBLAS workspace";
        e = cudaMalloc(&c->blas_work, CU_BLAS_WORK);
    }
    if (e) {
        cu_close(b);
        return cu_fail(err, "device %d: %s: %s", dev, what, cudaGetErrorString(e));
    }
    c->vk.work_bytes = VK_WORK_MIN;
    c->vk.ring_bytes = VK_RING_BYTES;
    cublasStatus_t s = cublasCreate(&c->vk.blas);
    if (s != CUBLAS_STATUS_SUCCESS)
        c->vk.blas = NULL; /* unspecified after a failure: close must not destroy it */
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasSetStream(c->vk.blas, c->vk.stream);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasSetWorkspace(c->vk.blas, c->blas_work, CU_BLAS_WORK);
    if (s != CUBLAS_STATUS_SUCCESS) {
        cu_close(b);
        return cu_fail(err, "device %d: cuBLAS: %s", dev, cublasGetStatusString(s));
    }
    b->reserved_bytes = (int64_t)(VK_WORK_MIN + VK_RING_BYTES + CU_BLAS_WORK);
    return 0;
}

static int cu_sync(Backend *b, char *err)
{
    VkCtx *c = cu_vk(b);
    cudaError_t e = cudaStreamSynchronize(c->stream);
    vk_note(c, (int)e, "cudaStreamSynchronize");
    if (!c->error)
        return 0;
    if (err)
        snprintf(err, VLQ_ERRLEN, "cuda device %d: %s", c->device, c->err);
    c->error = 0;
    c->err[0] = 0;
    return VLQ_EDEVICE;
}

static int cu_meminfo(Backend *b, int64_t *free_bytes, int64_t *total_bytes, char *err)
{
    cu_ctx(b);
    size_t f = 0, t = 0;
    cudaError_t e = cudaMemGetInfo(&f, &t);
    *free_bytes = (int64_t)f;
    *total_bytes = (int64_t)t;
    if (e)
        return cu_fail(err, "cudaMemGetInfo: %s", cudaGetErrorString(e));
    return 0;
}

static void cu_describe(Backend *b, char *buf, size_t len)
{
    CuCtx *c = cu_ctx(b);
    int drv = 0, rt = 0;
    cudaDriverGetVersion(&drv);
    cudaRuntimeGetVersion(&rt);
    snprintf(buf, len,
             "%s: device %d, %s, compute capability %d.%d, %d SMs, %.0f MiB, driver %d.%d, "
             "runtime %d.%d",
             b->name, c->vk.device, c->prop.name, c->prop.major, c->prop.minor,
             c->prop.multiProcessorCount, (double)c->prop.totalGlobalMem / (1 << 20),
             drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10);
}

/* ---- memory ---- */

static size_t cu_elem_bytes(QuantType t)
{
    return t == QUANT_F32 ? 4 : 2;
}

static int cu_alloc_typed(Backend *b, Tensor *t, QuantType type, int64_t rows, int64_t cols,
                          char *err)
{
    memset(t, 0, sizeof *t);
    if ((type != QUANT_F32 && type != QUANT_F16 && type != QUANT_BF16) || rows < 0 || cols < 0)
        return err_set(err, VLQ_EINPUT, "%s backend: cannot allocate type %d [%lld, %lld]",
                       b->name, (int)type, (long long)rows, (long long)cols);
    VkCtx *c = cu_vk(b);
    size_t bytes = cu_pad((size_t)(rows * cols) * cu_elem_bytes(type));
    void *p = NULL;
    cudaError_t e = bytes ? cudaMalloc(&p, bytes) : cudaSuccess;
    if (!e && p)
        e = cudaMemsetAsync(p, 0, bytes, c->stream);
    if (e) {
        cudaFree(p);
        cudaGetLastError(); /* not sticky: clear it for the next call */
        return err_set(err, VLQ_ENOMEM, "%s backend: %zu bytes of device memory for a "
                       "[%lld, %lld] tensor: %s", b->name, bytes, (long long)rows,
                       (long long)cols, cudaGetErrorString(e));
    }
    *t = (Tensor){.type = type, .rows = rows, .cols = cols, .data = p, .owned = CU_OWNED_DEVICE};
    return 0;
}

static int cu_alloc(Backend *b, Tensor *t, int64_t rows, int64_t cols, char *err)
{
    return cu_alloc_typed(b, t, QUANT_F32, rows, cols, err);
}

static void cu_release(Backend *b, Tensor *t)
{
    if (!t)
        return;
    if (t->owned && t->data) {
        cu_ctx(b);
        if (t->owned == CU_OWNED_PINNED)
            cudaFreeHost(t->data);
        else
            cudaFree(t->data);
    }
    memset(t, 0, sizeof *t);
}

/* Check a weight's type and group; its qs and scale plane sizes into *qs, *sc. */
static int cu_weight_shape(Backend *b, QuantType type, int64_t rows, int64_t cols, int group,
                           size_t *qs, size_t *sc, char *err)
{
    if (type == QUANT_Q4 || type == QUANT_Q8) {
        if (group <= 0 || cols % group || group % 16)
            return err_set(err, VLQ_EMODEL, "%s backend: bad quantisation group %d for %lld "
                           "columns", b->name, group, (long long)cols);
        *qs = quant_scale_offset(type, rows, cols);
        *sc = quant_nbytes(type, rows, cols, group) - *qs;
    } else {
        *qs = (size_t)(rows * cols) * cu_elem_bytes(type);
        *sc = 0;
    }
    return 0;
}

/* A weight in memory p (device or mapped pinned host) laid out as [qs | pad | scales],
 * copied from the file's bytes ([qs | scales], quant.h) by copy(dst, src, n). */
static void cu_weight_tensor(Tensor *t, QuantType type, int64_t rows, int64_t cols, int group,
                             void *p, size_t qs, int owned)
{
    *t = (Tensor){.type = type, .rows = rows, .cols = cols, .group = 0, .data = p,
                  .owned = owned};
    if (type == QUANT_Q4 || type == QUANT_Q8) {
        t->group = group;
        t->scale = (char *)p + cu_pad(qs);
    }
}

static int cu_weight(Backend *b, Tensor *t, QuantType type, int64_t rows, int64_t cols, int group,
                     const void *bytes, char *err)
{
    memset(t, 0, sizeof *t);
    size_t qs = 0, sc = 0;
    int rc = cu_weight_shape(b, type, rows, cols, group, &qs, &sc, err);
    if (rc)
        return rc;
    cu_ctx(b);
    size_t n = cu_pad(qs) + cu_pad(sc);
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, n ? n : CU_ALIGN);
    /* from the file mapping (pageable): synchronous copies, the mapping's pages may be
     * dropped as soon as this returns (weights.c) */
    if (!e)
        e = cudaMemcpy(p, bytes, qs, cudaMemcpyHostToDevice);
    if (!e && sc)
        e = cudaMemcpy((char *)p + cu_pad(qs), (const char *)bytes + qs, sc,
                       cudaMemcpyHostToDevice);
    if (e) {
        cudaFree(p);
        cudaGetLastError();
        return err_set(err, e == cudaErrorMemoryAllocation ? VLQ_ENOMEM : VLQ_EDEVICE,
                       "%s backend: uploading a [%lld, %lld] weight (%zu bytes): %s", b->name,
                       (long long)rows, (long long)cols, n, cudaGetErrorString(e));
    }
    cu_weight_tensor(t, type, rows, cols, group, p, qs, CU_OWNED_DEVICE);
    return 0;
}

static int cu_weight_mapped(Backend *b, Tensor *t, QuantType type, int64_t rows, int64_t cols,
                            int group, const void *bytes, char *err)
{
    memset(t, 0, sizeof *t);
    size_t qs = 0, sc = 0;
    int rc = cu_weight_shape(b, type, rows, cols, group, &qs, &sc, err);
    if (rc)
        return rc;
    cu_ctx(b);
    size_t n = cu_pad(qs) + cu_pad(sc);
    void *h = NULL, *d = NULL;
    cudaError_t e = cudaHostAlloc(&h, n ? n : CU_ALIGN,
                                  cudaHostAllocMapped | cudaHostAllocPortable);
    if (!e) {
        memcpy(h, bytes, qs);
        if (sc)
            memcpy((char *)h + cu_pad(qs), (const char *)bytes + qs, sc);
        /* with unified addressing (every 64-bit platform CUDA supports) d == h; ask
         * anyway, it is what the kernels must be given */
        e = cudaHostGetDevicePointer(&d, h, 0);
    }
    if (e) {
        if (h)
            cudaFreeHost(h);
        cudaGetLastError();
        return err_set(err, VLQ_ENOMEM, "%s backend: %zu bytes of pinned host memory for an "
                       "offloaded [%lld, %lld] weight: %s", b->name, n, (long long)rows,
                       (long long)cols, cudaGetErrorString(e));
    }
    if (d != h) { /* release frees by the host address: keep them one */
        cudaFreeHost(h);
        return err_set(err, VLQ_ENOTSUP, "%s backend: no unified addressing for mapped host "
                       "memory", b->name);
    }
    cu_weight_tensor(t, type, rows, cols, group, d, qs, CU_OWNED_PINNED);
    return 0;
}

static void cu_write(Backend *b, Tensor *t, int64_t row0, const float *src, int64_t n)
{
    VkCtx *c = cu_vk(b);
    if (t->type != QUANT_F32 || row0 < 0 || row0 + n > t->rows) {
        vk_note(c, (int)cudaErrorInvalidValue, "write: not an F32 tensor, or rows outside it");
        return;
    }
    /* pageable source: the call returns once src is staged, so the caller may reuse it */
    vk_note(c, (int)cudaMemcpyAsync((float *)t->data + row0 * t->cols, src,
                                    (size_t)(n * t->cols) * 4, cudaMemcpyHostToDevice,
                                    c->stream), "write");
}

static void cu_read(Backend *b, const Tensor *t, int64_t row0, float *dst, int64_t n)
{
    VkCtx *c = cu_vk(b);
    if (t->type != QUANT_F32 || row0 < 0 || row0 + n > t->rows) {
        vk_note(c, (int)cudaErrorInvalidValue, "read: not an F32 tensor, or rows outside it");
        return;
    }
    if (!vk_note(c, (int)cudaMemcpyAsync(dst, (const float *)t->data + row0 * t->cols,
                                         (size_t)(n * t->cols) * 4, cudaMemcpyDeviceToHost,
                                         c->stream), "read"))
        vk_note(c, (int)cudaStreamSynchronize(c->stream), "read: synchronize");
}

/* ---- ops: the launchers of vk.h ---- */

static void cu_embed(Backend *b, Tensor *y, const Tensor *table, const int32_t *ids, int n)
{
    vk_embed(cu_vk(b), y, table, ids, n);
}

static void cu_embed_mix4(Backend *b, Tensor *y, const Tensor *table, const int32_t *idx,
                          const float *w, int n)
{
    vk_embed_mix4(cu_vk(b), y, table, idx, w, n);
}

static void cu_set_rows(Backend *b, Tensor *dst, const int32_t *rows, const Tensor *src, int n)
{
    vk_set_rows(cu_vk(b), dst, rows, src, n);
}

static void cu_add_rows(Backend *b, Tensor *dst, const int32_t *rows, const Tensor *src, int n)
{
    vk_add_rows(cu_vk(b), dst, rows, src, n);
}

static void cu_get_rows(Backend *b, Tensor *dst, const Tensor *src, const int32_t *rows, int n)
{
    vk_get_rows(cu_vk(b), dst, src, rows, n);
}

static void cu_matmul(Backend *b, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *bias)
{
    vk_matmul(cu_vk(b), y, x, w, bias);
}

static void cu_rmsnorm(Backend *b, Tensor *y, const Tensor *x, const Tensor *w, float eps)
{
    vk_rmsnorm(cu_vk(b), y, x, w, eps);
}

static void cu_layernorm(Backend *b, Tensor *y, const Tensor *x, const Tensor *w,
                         const Tensor *bias, float eps)
{
    vk_layernorm(cu_vk(b), y, x, w, bias, eps);
}

static void cu_add(Backend *b, Tensor *y, const Tensor *a, const Tensor *c)
{
    vk_add(cu_vk(b), y, a, c);
}

static void cu_swiglu(Backend *b, Tensor *y, const Tensor *gate, const Tensor *up)
{
    vk_swiglu(cu_vk(b), y, gate, up);
}

static void cu_gelu_tanh(Backend *b, Tensor *x)
{
    vk_gelu_tanh(cu_vk(b), x);
}

static void cu_gelu_erf(Backend *b, Tensor *x)
{
    vk_gelu_erf(cu_vk(b), x);
}

static void cu_mrope(Backend *b, Tensor *x, const int32_t *pos, int n_heads, const int section[3],
                     float theta)
{
    vk_mrope(cu_vk(b), x, pos, n_heads, section, theta);
}

static void cu_rope2d(Backend *b, Tensor *x, const int32_t *pos, int n_heads, float theta)
{
    vk_rope2d(cu_vk(b), x, pos, n_heads, theta);
}

static void cu_attention(Backend *b, Tensor *o, const Tensor *q, const Tensor *kc, const Tensor *vc,
                         const BackendSeq *seqs, int n_seq, int n_heads, int n_kv_heads,
                         float scale)
{
    vk_attention(cu_vk(b), o, q, kc, vc, seqs, n_seq, n_heads, n_kv_heads, scale);
}

static void cu_attention_seg(Backend *b, Tensor *o, const Tensor *q, const Tensor *k,
                             const Tensor *v, const int32_t *cu_seqlens, int n_seg, int n_heads,
                             float scale)
{
    vk_attention_seg(cu_vk(b), o, q, k, v, cu_seqlens, n_seg, n_heads, scale);
}

static void cu_argmax(Backend *b, const Tensor *x, int32_t *out)
{
    vk_argmax(cu_vk(b), x, out);
}

static Backend cu_table(void)
{
    Backend t;
    memset(&t, 0, sizeof t);
    t.abi_version = BACKEND_ABI_VERSION;
    t.name = "cuda";
    t.flags = BACKEND_DEVICE;
    t.open = cu_open;
    t.close = cu_close;
    t.sync = cu_sync;
    t.meminfo = cu_meminfo;
    t.describe = cu_describe;
    t.alloc = cu_alloc;
    t.alloc_typed = cu_alloc_typed;
    t.release = cu_release;
    t.weight = cu_weight;
    t.weight_mapped = cu_weight_mapped;
    t.write = cu_write;
    t.read = cu_read;
    t.embed = cu_embed;
    t.embed_mix4 = cu_embed_mix4;
    t.set_rows = cu_set_rows;
    t.add_rows = cu_add_rows;
    t.get_rows = cu_get_rows;
    t.matmul = cu_matmul;
    t.rmsnorm = cu_rmsnorm;
    t.layernorm = cu_layernorm;
    t.add = cu_add;
    t.swiglu = cu_swiglu;
    t.gelu_tanh = cu_gelu_tanh;
    t.gelu_erf = cu_gelu_erf;
    t.mrope = cu_mrope;
    t.rope2d = cu_rope2d;
    t.attention = cu_attention;
    t.attention_seg = cu_attention_seg;
    t.argmax = cu_argmax;
    return t;
}

extern "C" BACKEND_EXPORT const Backend *vlq_backend_entry(int abi_version);

/* The table for this ABI, or NULL for another. */
extern "C" const Backend *vlq_backend_entry(int abi_version)
{
    static const Backend table = cu_table();
    if (abi_version != BACKEND_ABI_VERSION)
        return NULL;
    return &table;
}
