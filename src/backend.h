/* backend: the op interface the model runs on, and the Tensor handle it works over.
 *
 * A Backend is a table of function pointers (SQLite's VFS, ggml_backend_i), narrow and
 * specific to Qwen3-VL: the few ops vision.c and decoder.c need, nothing general. Built
 * in: "ref" (src/ops_ref.c: scalar C, fp32 accumulation, a fixed reduction order: the
 * oracle) and "cpu" (src/backend_cpu.c: OpenMP over rows and heads, vectorised kernels);
 * the CUDA plugin (kernels/, vlq-backend-cuda.so) implements the same table.
 *
 * Batch-first: every op works on a batch of rows, and the attention ops take a list of
 * sequences (BackendSeq: which rows of the batch, which KV rows, how many tokens are
 * already cached), so rows from several sequences, pages and jobs share one call; the
 * engine's continuous batching packs them, the ops never assume one sequence.
 *
 * Tensors: a Tensor describes a matrix in backend memory (host memory for ref and cpu,
 * device memory for CUDA). Activations are always F32; weights may be F32, F16, BF16,
 * Q8 or Q4 (layouts in quant.h). Host code never dereferences Tensor.data: data crosses
 * between host and backend only through write() and read(). Views (rows of a matrix, a
 * reshape) are plain descriptors made by backend_view_rows / backend_reshape and own
 * nothing. Memory comes from alloc(), called only when a run state is built (model load),
 * never in a forward pass. Ops cannot fail: shapes are the caller's invariant (asserted);
 * a device backend reports an asynchronous failure at the next sync().
 *
 * Lifecycle: backend_open gives an instance (a copy of the table with its own ctx) of a
 * built-in backend ("ref", "cpu") or of a plugin: any other name is loaded from
 * vlq-backend-<name>.so (ggml's GGML_BACKEND_DL), so vlq never links a device runtime
 * and runs where no driver is installed. A plugin exports one symbol,
 * `const Backend *vlq_backend_entry(int abi_version)` (BACKEND_ENTRY), returning its
 * table (abi_version set to BACKEND_ABI_VERSION) or NULL when it was built for another
 * ABI. Any change to struct Backend or Tensor raises BACKEND_ABI_VERSION.
 *
 * Device backends (flags & BACKEND_DEVICE: the CUDA plugin) allocate from device memory:
 * the engine's plan splits its items between the device (weights, KV, activations) and
 * the host, counts the workspace the instance set aside at open (reserved_bytes), and
 * when the weights do not fit keeps some decoder layers in pinned host memory that the
 * kernels read over the bus (weight_mapped). */
#ifndef VLQ_BACKEND_H
#define VLQ_BACKEND_H

#include "quant.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    QuantType type;  /* element type; activations are QUANT_F32 */
    int64_t rows;    /* outermost dimension; a vector has rows = 1 */
    int64_t cols;    /* innermost (contiguous) dimension */
    int group;       /* Q4/Q8: columns per scale group, else 0 */
    void *data;      /* backend memory, rows*cols elements (Q4/Q8: the qs plane) */
    void *scale;     /* Q4/Q8: the half-float scale plane, rows*cols/group; else NULL */
    int owned;       /* 1 when the backend allocated data (release frees it); 0 for views */
} Tensor;

/* One sequence of a batch for the attention ops. Its new tokens are rows
 * row0 .. row0+n_tok-1 of q and o; its keys and values are the KV cache rows
 * kv_row0 .. kv_row0+n_past+n_tok-1 (its slot), the new ones already stored. */
typedef struct {
    int row0;        /* first row of this sequence in the batch */
    int n_tok;       /* new tokens (rows) */
    int64_t kv_row0; /* first KV cache row of the sequence's slot */
    int n_past;      /* tokens already in the cache before these */
} BackendSeq;

typedef struct Backend Backend;

/* The ABI between vlq and a backend plugin: struct Backend, Tensor, BackendSeq and
 * BackendOpenOptions as laid out in this header. */
/* 2: flags, reserved_bytes and weight_mapped (device backends, layer offload). */
#define BACKEND_ABI_VERSION 2
#define BACKEND_ENTRY_SYMBOL "vlq_backend_entry"
typedef const Backend *(*BackendEntry)(int abi_version);
/* Backend.flags: its memory is a device's (alloc, alloc_typed and weight take device
 * memory; meminfo reports the device's), not the host's. */
#define BACKEND_DEVICE 1u
/* A plugin is built with -fvisibility=hidden and marks only its entry with this. */
#define BACKEND_EXPORT __attribute__((visibility("default")))

/* What backend_open passes to the backend's open hook. Zero means the default. */
typedef struct {
    int threads; /* host threads for the ops (cpu: OpenMP threads of the opening thread) */
    int device;  /* accelerator index (device backends; host backends ignore it) */
} BackendOpenOptions;

/* A debugging and test hook the model code calls with an intermediate tensor (what names
 * the stage, e.g. "layer", index its number); read it with b->read. NULL: no calls. */
typedef void (*BackendTap)(void *user, Backend *b, const char *what, int index, const Tensor *t);

struct Backend {
    int abi_version;  /* BACKEND_ABI_VERSION: first, so a mismatched plugin is detected */
    const char *name; /* "ref", "cpu", or the plugin's name */
    unsigned flags;   /* BACKEND_DEVICE ... (below) */
    /* Device memory the instance's open set aside for itself (the kernels' workspace),
     * already gone from meminfo's free bytes; set by open. 0 for host backends. */
    int64_t reserved_bytes;

    /* ---- lifecycle and device (backend_open / backend_close call open and close) ---- */
    /* Set up an instance: b is the caller's copy of the table; sets b->ctx. NULL: nothing
     * to do. VLQ_EDEVICE (no such device, driver error) with err set. */
    int (*open)(Backend *b, const BackendOpenOptions *o, char *err);
    /* Release what open made (b->ctx). NULL: nothing to do. */
    void (*close)(Backend *b);
    /* Wait for queued work; 0, or VLQ_EDEVICE with err set when the device failed since
     * the last sync (the engine fails the batch). Host backends return 0. */
    int (*sync)(Backend *b, char *err);
    /* Memory the backend allocates from: host backends report MemAvailable and MemTotal
     * (capped by the cgroup's memory.max), a device backend its device memory. 0, or
     * VLQ_EIO/VLQ_EDEVICE with err set. */
    int (*meminfo)(Backend *b, int64_t *free_bytes, int64_t *total_bytes, char *err);
    /* One line for humans (vlq doctor, -v): the device or CPU features and the kernels
     * chosen, into buf[len] (always NUL-terminated). Cannot fail. */
    void (*describe)(Backend *b, char *buf, size_t len);

    /* ---- memory ---- */
    /* A new F32 tensor [rows, cols] in backend memory, zeroed. VLQ_ENOMEM with err set. */
    int (*alloc)(Backend *b, Tensor *t, int64_t rows, int64_t cols, char *err);
    /* A new tensor [rows, cols] of a dense type (F32, F16 or BF16) in backend memory,
     * zeroed: the KV cache is F16 by default. VLQ_ENOMEM or VLQ_EINPUT with err set. */
    int (*alloc_typed)(Backend *b, Tensor *t, QuantType type, int64_t rows, int64_t cols,
                       char *err);
    /* Release what alloc, alloc_typed or weight gave t; t is zeroed. NULL data is fine. */
    void (*release)(Backend *b, Tensor *t);
    /* A weight tensor over host bytes laid out as quant.h says (a model mapping): ref and
     * cpu make a view (no copy), a device backend uploads. VLQ_ENOMEM with err set. */
    int (*weight)(Backend *b, Tensor *t, QuantType type, int64_t rows, int64_t cols, int group,
                  const void *bytes, char *err);
    /* As weight, but the bytes stay in host memory the device reads over the bus (pinned
     * and mapped: an offloaded decoder layer). NULL for host backends, whose weights are
     * host memory already (weights.c then calls weight). VLQ_ENOMEM with err set. */
    int (*weight_mapped)(Backend *b, Tensor *t, QuantType type, int64_t rows, int64_t cols,
                         int group, const void *bytes, char *err);
    /* t[row0 .. row0+n) = src[n, t->cols] (F32 tensors only). */
    void (*write)(Backend *b, Tensor *t, int64_t row0, const float *src, int64_t n);
    /* dst[n, t->cols] = t[row0 .. row0+n) (F32 tensors only). */
    void (*read)(Backend *b, const Tensor *t, int64_t row0, float *dst, int64_t n);

    /* ---- rows ---- */
    /* y[n, d] = dequant(table[ids[i], :]), ids on the host, table any type. */
    void (*embed)(Backend *b, Tensor *y, const Tensor *table, const int32_t *ids, int n);
    /* y[n, d] = sum_k round(w[i][k] * table[idx[i][k], :]) over k < 4, idx and w [n][4] on
     * the host (vision pos-embed interpolation). When table is BF16 or F16 each product
     * and each partial sum is rounded to that type, as torch computes in the weights'
     * dtype (the caller rounds w to it too). */
    void (*embed_mix4)(Backend *b, Tensor *y, const Tensor *table, const int32_t *idx,
                       const float *w, int n);
    /* dst[rows[i], :] = src[i, :] for i < n (rows on the host): KV store, visual scatter.
     * src F32; dst F32, or F16 / BF16 (a KV cache): each value rounded to nearest even. */
    void (*set_rows)(Backend *b, Tensor *dst, const int32_t *rows, const Tensor *src, int n);
    /* dst[rows[i], :] += src[i, :] for i < n: DeepStack injection at visual rows. */
    void (*add_rows)(Backend *b, Tensor *dst, const int32_t *rows, const Tensor *src, int n);
    /* dst[i, :] = src[rows[i], :] for i < n: the last row of each sequence before lm_head. */
    void (*get_rows)(Backend *b, Tensor *dst, const Tensor *src, const int32_t *rows, int n);

    /* ---- dense ---- */
    /* y[n, out] = x[n, in] @ W[out, in]^T (+ bias[out]); W any type, bias F32/F16/BF16 or
     * NULL. y must not alias x. */
    void (*matmul)(Backend *b, Tensor *y, const Tensor *x, const Tensor *w, const Tensor *bias);
    /* y[n, d] = w[d] * (x / sqrt(mean(x^2) + eps)) per row; y may alias x. w any 16/32-bit. */
    void (*rmsnorm)(Backend *b, Tensor *y, const Tensor *x, const Tensor *w, float eps);
    /* y[n, d] = (x - mean) / sqrt(var + eps) * w + bias per row (biased variance). */
    void (*layernorm)(Backend *b, Tensor *y, const Tensor *x, const Tensor *w,
                      const Tensor *bias, float eps);
    /* y = a + c elementwise, all [n, d]; y may alias a or c. */
    void (*add)(Backend *b, Tensor *y, const Tensor *a, const Tensor *c);
    /* y[n, f] = silu(gate) * up; y may alias gate. */
    void (*swiglu)(Backend *b, Tensor *y, const Tensor *gate, const Tensor *up);
    /* x = gelu(x) in place: tanh approximation (gelu_pytorch_tanh) or exact erf (nn.GELU). */
    void (*gelu_tanh)(Backend *b, Tensor *x);
    void (*gelu_erf)(Backend *b, Tensor *x);

    /* ---- rotary ---- */
    /* Interleaved MRoPE in place on x[n, n_heads*head_dim] (q or k): frequency j < head_dim/2
     * takes the h position when j%3==1 && j<3*section[1], w when j%3==2 && j<3*section[2],
     * else t; pos[3][n] on the host (t row, h row, w row); rotate_half pairs d, d+half. */
    void (*mrope)(Backend *b, Tensor *x, const int32_t *pos, int n_heads, const int section[3],
                  float theta);
    /* Vision 2-D rotary in place on x[n, n_heads*head_dim]: the first head_dim/4 frequencies
     * take the row, the next head_dim/4 the column; pos[n][2] = (row, col) on the host. */
    void (*rope2d)(Backend *b, Tensor *x, const int32_t *pos, int n_heads, float theta);

    /* ---- attention ---- */
    /* Causal GQA attention over a KV cache: for each sequence s and each new row t of it,
     * o[row0+t] = softmax(q k^T * scale) v over the cache rows kv_row0 .. kv_row0+n_past+t.
     * q, o [n, n_heads*head_dim]; kc, vc [cache rows, n_kv_heads*head_dim]; query head h
     * reads kv head h / (n_heads/n_kv_heads). kc and vc are F32, F16 or BF16 (one type for
     * both; the KV cache is F16 by default), their values widened to f32 exactly. */
    void (*attention)(Backend *b, Tensor *o, const Tensor *q, const Tensor *kc, const Tensor *vc,
                      const BackendSeq *seqs, int n_seq, int n_heads, int n_kv_heads,
                      float scale);
    /* Non-causal attention within segments (vision: one per image or video frame group):
     * rows cu_seqlens[s] .. cu_seqlens[s+1]-1 attend to each other only. q, k, v, o
     * [n, n_heads*head_dim]; cu_seqlens[n_seg+1] on the host. */
    void (*attention_seg)(Backend *b, Tensor *o, const Tensor *q, const Tensor *k,
                          const Tensor *v, const int32_t *cu_seqlens, int n_seg, int n_heads,
                          float scale);

    /* ---- output ---- */
    /* out[i] = the first index of the maximum of row i of x[n, V], for i < n (host out). */
    void (*argmax)(Backend *b, const Tensor *x, int32_t *out);

    void *ctx; /* the implementation's state */
};

/* An instance of the backend named name in *out, the caller's to backend_close: a
 * built-in one ("ref", "cpu") or the plugin vlq-backend-<name>.so, looked for in
 * $VLQ_BACKEND_DIR when set (only there), else beside the running executable, then in
 * BACKEND_PLUGIN_DIR. o may be NULL (defaults). Errors, each naming the name or path and
 * the reason: VLQ_EINPUT (a bad name, no such plugin), VLQ_ENOTSUP (the library does
 * not load, lacks vlq_backend_entry, or has another ABI version), or what the backend's
 * open returns (VLQ_EDEVICE). */
int backend_open(const char *name, const BackendOpenOptions *o, Backend **out, char *err);
/* backend_open, where the name "auto" (BACKEND_AUTO) opens the cuda plugin when it opens
 * (a driver and a usable device), else cpu. why[len] (may be NULL) gets one line saying
 * which was picked and why ("" for any other name). backend_open itself takes "auto"
 * too, without the line. */
int backend_open_auto(const char *name, const BackendOpenOptions *o, Backend **out, char *why,
                      size_t len, char *err);
#define BACKEND_AUTO "auto"
/* 1 if name is a built-in host backend ("cpu", "ref"), whose memory is the host's. */
int backend_is_host(const char *name);
/* Close an instance from backend_open (its open state, then its plugin). NULL-safe. */
void backend_close(Backend *b);
/* The plugin names found where backend_open looks, space-separated, each once, in a new
 * string the caller frees ("" when none; NULL only when out of memory). */
char *backend_plugin_list(void);
#define BACKEND_PLUGIN_DIR "/usr/local/lib/vlq"

/* The built-in backend named name ("ref", "cpu"): a static table, never freed, with no
 * open state (ctx NULL; its open hook not called). NULL if unknown. backend_open is the
 * way to get a backend; this stays for tests and tools that want the bare table. */
Backend *backend_get(const char *name);
/* The backend names, comma-separated, for messages and --help. */
const char *backend_names(void);

/* A view of rows row0 .. row0+n of t (any type; Q4/Q8 move both planes). Owns nothing. */
Tensor backend_view_rows(const Tensor *t, int64_t row0, int64_t n);
/* The same memory seen as [rows, cols] (rows*cols unchanged; F32/F16/BF16). Owns nothing. */
Tensor backend_reshape(const Tensor *t, int64_t rows, int64_t cols);

#endif
