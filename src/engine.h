/* engine: the model as a service to the job kinds. One Engine owns the model file, the
 * tokenizer it carries, the backend instance, the KV memory, the vision encoder, the
 * visual feature cache (vcache.h) and the scheduler; `vlq run`, `vlq doctor`, the job
 * kinds and the tests all go through it.
 *
 * Requests. A request is a one-turn chat (text and visual parts, as tok.h's TokChat)
 * with its decoded pixels (prep.h PrepVisual, one per image or video part), a context
 * budget, max_new_tokens and sampling settings. engine_submit checks it against the
 * budget and the memory plan up front (the prompt is tokenised then): a request that can
 * never fit is refused at once with the numbers; one that fits waits for a free slot of
 * its budget. Events come through callbacks, called on the thread that runs
 * engine_step: each new token (with its text, streamed UTF-8; a last call with id
 * ENGINE_TOKEN_TAIL carries what the stream held back, if anything), then exactly one
 * end (EngineEnd: eos, length, cancelled, error), after which the engine no longer
 * touches the request's inputs. The caller's TokChat and PrepVisual pixels must stay
 * valid until the end callback (the engine copies nothing large). A callback must not
 * free its own request (engine_req_free); it may cancel it.
 *
 * Slots. Each budget class ([budgets] in the config: ocr 8192, video 16384, document
 * 32768 tokens) has a fixed number of slots, each with KV rows for its whole budget,
 * carved at engine_open from one KV arena per layer (f16 by default). A running request
 * holds one slot of the smallest class whose budget is at least its own; a finished or
 * cancelled request frees its slot at once.
 *
 * Continuous batching. engine_step runs one decoder forward over the decode row of every
 * running request plus chunks of pending prefills (a long prompt is cut into chunks of
 * at most max_batch_tok tokens in all, so decodes keep flowing), samples, emits events
 * and admits waiting requests into free slots (running the vision encoder for them, via
 * the feature cache). Greedy tokens are identical whether a request runs alone or
 * batched with others.
 *
 * Memory. engine_open makes the memory plan (EnginePlan) from the memory available (or
 * EngineOptions.mem_limit) before allocating anything: weights + KV slots + activation
 * and vision workspace + the visual features of running requests + feature cache +
 * margin. The vision encoder (its run state) is made on the first visual request, so a
 * text-only run never touches the vision tower, but it is always counted. If the configured slots do not fit it
 * refuses with the plan's numbers (VLQ_ENOMEM). Nothing is allocated past the plan while
 * requests run: a request over its budget, or over the vision workspace's patch limit,
 * is refused at submit, never half-way.
 *
 * Threads. engine_submit, engine_cancel and the EngineReq accessors are thread-safe;
 * engine_step must be called by one thread at a time (the "driver"). engine_start runs a
 * driver thread that steps whenever there is work, for callers that prefer to block in
 * engine_req_wait (one thread per job); tests call engine_step themselves to control
 * arrival order. The ops inside a step use the backend's own threads (OpenMP). */
#ifndef VLQ_ENGINE_H
#define VLQ_ENGINE_H

#include "model.h"
#include "prep.h"
#include "sample.h"
#include "tok.h"

#include <stddef.h>
#include <stdint.h>

#define ENGINE_MAX_CLASSES 4
#define ENGINE_MAX_VISUAL 64 /* visual parts per request */
#define ENGINE_TOKEN_TAIL (-1) /* on_token id of the text held back by the stream, at the end */

typedef struct Engine Engine;
typedef struct Cfg Cfg;
typedef struct EngineReq EngineReq;
typedef struct Backend Backend;

/* One budget class: n_slots slots of ctx_tok tokens each (prompt + answer). */
typedef struct {
    const char *name; /* "ocr", "video", "document" (for messages and vlq doctor) */
    int ctx_tok;
    int n_slots;
} EngineClass;

typedef struct {
    const char *model_path;  /* the .vlq file */
    const char *backend;     /* "cpu" (default when NULL), "ref", "auto" (cuda when a
                              * device is usable, else cpu), or a plugin name ("cuda") */
    int threads;             /* backend threads; 0: all cores */
    int kv_f32;              /* 1: f32 KV cache (tests compare it with f16) */
    EngineClass classes[ENGINE_MAX_CLASSES];
    int n_classes;           /* 0: one class "ocr" of 8192 tokens, 1 slot */
    int max_batch_tok;       /* tokens per step over all requests; 0: 512 */
    int max_patches;         /* vision workspace in patches; 0: 16384. A video is encoded a
                              * few frame groups at a time, so one group (h*w) must fit */
    int64_t mem_limit;       /* bytes the plan may use; 0: what the backend has free (host:
                              * MemAvailable within the cgroup's limit) */
    int64_t vcache_bytes;    /* feature cache in memory; 0: off */
    const char *vcache_dir;  /* on-disk feature cache directory; NULL: none */
    int verify_model;        /* 1: check every tensor's CRC at open (slower) */
    int offload_layers;      /* device backends: decoder layers kept in pinned host memory
                              * ([offload] layers); -1: as many as the device needs (auto) */
} EngineOptions;

/* The memory plan, in bytes (vlq doctor prints it item by item). */
typedef struct {
    int64_t available;       /* what the plan may use (mem_limit, or free memory) */
    int64_t weights_text;    /* decoder + embeddings (the tied lm_head included) */
    int64_t weights_vision;  /* the vision tower, resident only once an image arrives */
    int64_t kv;              /* every configured slot */
    int64_t kv_per_token;    /* one token of KV over all layers */
    int64_t activations;     /* decoder workspace for max_batch_tok rows + logits */
    int64_t vision_ws;       /* vision workspace for max_patches patches */
    int64_t features;        /* visual features of running requests until prefilled */
    int64_t vcache;          /* feature cache limit */
    int64_t margin;          /* safety margin */
    int64_t total;           /* the sum of the above */
    int slots_fit[ENGINE_MAX_CLASSES]; /* slots of each class alone that would fit in
                                        * available beside everything but the KV */
    int fits;                /* total <= available (and host_total <= host_available) */
    /* A device backend (Backend.flags & BACKEND_DEVICE): available, total and the items
     * from weights to vision_ws, workspace and margin are device memory; features,
     * vcache and the offloaded layers are host memory, planned against host_available. */
    int device;
    int64_t workspace;       /* the kernels' workspace, set aside at open */
    int64_t host_available;  /* host memory free (MemAvailable) */
    int64_t host_total;      /* features + vcache + offload_bytes */
    int offload_layers;      /* decoder layers whose weights stay in pinned host memory */
    int64_t offload_bytes;   /* their bytes: read over the bus once per decoder step */
    int64_t layer_bytes;     /* the largest decoder layer's weights */
} EnginePlan;

typedef enum {
    ENGINE_END_EOS = 0,      /* a stop token (not emitted as text) */
    ENGINE_END_LENGTH,       /* max_new_tokens reached, or the budget is full */
    ENGINE_END_CANCELLED,    /* engine_cancel */
    ENGINE_END_ERROR,        /* code/err say why (a backend error: VLQ_EDEVICE ...) */
} EngineEndReason;

typedef struct {
    EngineEndReason reason;
    int code;                /* 0, or the VLQ_E* code of an ERROR end */
    char err[256];           /* the message of an ERROR end */
    int prompt_tok;          /* tokens of the prompt (visual ones included) */
    int visual_tok;          /* of which visual */
    int gen_tok;             /* tokens generated (the stop token not counted) */
    double queue_s;          /* waited for a slot */
    double vision_s;         /* vision encoder (0 on a cache hit) */
    double prefill_s;        /* first token's latency after admission, vision excluded */
    double decode_s;         /* from the first to the last token */
} EngineResult;

typedef struct {
    /* the conversation: TokChat parts; each IMAGE or VIDEO part i has its pixels in
     * visual[k] for the k-th visual part (in order) */
    const TokChat *chat;
    const PrepVisual *const *visual;
    int n_visual;
    int budget_tok;          /* the request's context budget (<= its class's ctx_tok) */
    int max_new_tok;         /* answer tokens at most (>= 1) */
    SampleParams sampling;   /* temperature 0: greedy */
    /* events (called on the driver thread; may be NULL) */
    void (*on_token)(void *user, int32_t id, const char *text, size_t len);
    void (*on_end)(void *user, const EngineResult *r);
    void *user;
} EngineRequest;

/* The options the configuration gives ([model], [budgets], [engine]); strings are
 * borrowed from cfg, which must outlive the options. Cannot fail (cfg checked its keys). */
void engine_options_from_cfg(const Cfg *cfg, EngineOptions *o);

/* Open the model, make the memory plan and allocate everything it holds. Returns 0 and
 * *out, or VLQ_EMODEL (the file), VLQ_ENOMEM (the plan does not fit: err gives the
 * numbers), VLQ_EINPUT (bad options), VLQ_EDEVICE (the backend). */
int engine_open(const EngineOptions *o, Engine **out, char *err);
/* Cancel everything (each request gets its end), stop the driver thread, release all.
 * Requests not yet freed stay valid for engine_req_poll/_wait/_free. NULL-safe. */
void engine_close(Engine *e);

/* The plan engine_open would make, without allocating (vlq doctor, tests). A backend
 * other than cpu and ref (auto, cuda, a plugin) is opened for its memory and closed:
 * VLQ_EDEVICE, VLQ_EINPUT or VLQ_ENOTSUP when it cannot be. */
int engine_plan(const EngineOptions *o, const Model *m, EnginePlan *plan, char *err);
/* engine_plan on an open backend b (NULL: the host). */
int engine_plan_on(const EngineOptions *o, const Model *m, Backend *b, EnginePlan *plan,
                   char *err);
const EnginePlan *engine_get_plan(const Engine *e);
const Model *engine_model(const Engine *e);
const Tok *engine_tok(const Engine *e);

/* Queue a request. Returns 0 and *out (free with engine_req_free after its end), or,
 * before anything runs: VLQ_EINPUT (over its budget: err names visual tokens, prompt
 * tokens, max_new_tokens and the budget; no class large enough; too many patches for
 * the vision workspace; a bad prompt). */
int engine_submit(Engine *e, const EngineRequest *r, EngineReq **out, char *err);
/* Ask a request to end (ENGINE_END_CANCELLED at the next step). Thread-safe. */
void engine_cancel(EngineReq *q);
/* 1 once the end event has been delivered; then *res (may be NULL) gets the result. */
int engine_req_poll(EngineReq *q, EngineResult *res);
/* Block until the end (needs a driver: engine_start, or another thread stepping). */
void engine_req_wait(EngineReq *q, EngineResult *res);
/* Release an ended request (NULL-safe). Freeing a waiting or running request cancels it
 * (the engine frees it at its end); none of its callbacks runs after this returns. */
void engine_req_free(EngineReq *q);

/* One scheduler step (see above). Returns the number of requests still waiting or
 * running (0: idle), or a negative VLQ_E* code for an engine-wide failure (every
 * running request has then ended with ENGINE_END_ERROR). */
int engine_step(Engine *e, char *err);
/* Run a driver thread that calls engine_step while there is work. Returns 0 or VLQ_E*. */
int engine_start(Engine *e, char *err);

/* Counters for -v and tests. */
typedef struct {
    int64_t steps, rows_decode, rows_prefill; /* batch occupancy = rows per step */
    int64_t vision_calls;                     /* visual items encoded (not cache hits) */
    int64_t vcache_hits, vcache_misses, vcache_bytes;
    int64_t requests_done;                    /* ended: eos, length, cancelled, error */
    int64_t requests_refused;                 /* refused by engine_submit */
} EngineStats;
void engine_stats(const Engine *e, EngineStats *s);

#endif
