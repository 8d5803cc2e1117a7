/* engine_int: what engine.c (open, plan, submit, the request handles) and engine_sched.c
 * (the scheduler step, vision, the driver thread) share. Private to the engine module.
 *
 * Locks. e->mu guards the waiting queue, the counts and the stats; each request's q->mu
 * (recursive) guards its cancel/ended/user_gone flags and is held while its callbacks
 * run, so engine_req_free never races a callback. Order: e->mu before q->mu. Everything
 * else of a running request (slot, progress, sampler, features) is the driver's alone. */
#ifndef VLQ_ENGINE_INT_H
#define VLQ_ENGINE_INT_H

#include "backend.h"
#include "decoder.h"
#include "engine.h"
#include "vision.h"

#include <pthread.h>

/* One run of pad tokens of a prompt and the features it takes: prompt rows row ..
 * row+n-1 take merged rows item_row .. of visual item `item` (engine_visual_runs). */
typedef struct {
    int item;
    int64_t item_row;
    int64_t row;
    int64_t n;
} EngineVisRun;

/* One slot: kv rows kv_row0 .. kv_row0+cap-1 of every layer, of class cls. */
typedef struct {
    int cls;
    int64_t kv_row0;
    int cap;
    EngineReq *req; /* the request running in it, NULL when free (driver only) */
} EngineSlot;

typedef enum { ENGINE_REQ_WAITING = 0, ENGINE_REQ_RUNNING, ENGINE_REQ_ENDED } EngineReqState;

struct EngineReq {
    Engine *e;
    EngineRequest r;           /* the caller's request (its pointers borrowed) */
    /* under q->mu */
    pthread_mutex_t mu;        /* recursive */
    pthread_cond_t cv;         /* ended */
    int cancel;                /* engine_cancel or engine_req_free asked */
    int ended;                 /* the end event was delivered; res is final */
    int user_gone;             /* engine_req_free was called: the engine frees it at the end */
    EngineResult res;
    /* set at submit, read-only after */
    TokPrompt pr;              /* the rendered prompt */
    int32_t *pos;              /* [3][L] MRoPE positions */
    int rope_delta;
    int cls;                   /* budget class */
    int vis_tok;               /* visual tokens of the prompt */
    EngineVisRun *runs;        /* pad runs -> features */
    int n_runs;
    double t_submit;
    EngineReq *next;           /* waiting queue link (under e->mu) */
    /* the driver's */
    EngineReqState state;
    int slot;
    int64_t admit_seq;         /* admission order: prefills are served in it */
    int n_done;                /* prompt tokens prefilled */
    int n_gen;                 /* tokens generated */
    int32_t next_tok;          /* the last generated token, fed at the next decode step */
    int32_t *seen;             /* [L + max_new] the sequence so far (repetition penalty) */
    float **feat;              /* [n_visual] item features: [nm, h] then [n_deep][nm, h] */
    Sampler *sampler;
    TokStream ts;
    double t_admit, t_first, t_last;
};

struct Engine {
    EngineOptions opt;         /* normalised copy; strings owned (below) */
    char *model_path, *backend_name, *vcache_dir;
    Model *m;
    const ModelConfig *cfg;
    Tok *tok;
    Backend *b;
    EnginePlan plan;
    DecoderKV kv;
    Decoder *dec;
    Vision *vision;            /* made on the first visual request */
    float *vision_deep;        /* [n_deep][max_patches/4, h] one chunk's DeepStack rows */
    EngineSlot *slots;
    int n_slots;
    /* step scratch, sized at open */
    DecoderSeq *seqs;          /* [n_slots] */
    EngineReq **batch_req;     /* [n_slots] the request of each sequence */
    int32_t *pos3;             /* [n_slots][3] decode positions */
    int32_t *chunk_pos;        /* [3 * max_batch_tok] prefill chunk positions */
    int32_t *chunk_vrows;      /* [max_batch_tok] visual rows of the chunks */
    float *chunk_vis;          /* [max_batch_tok, h] their features */
    float *chunk_deep;         /* [n_deep * max_batch_tok, h] their DeepStack rows */
    float *logits;             /* [n_slots, vocab] */
    int64_t admit_counter;
    /* under mu */
    pthread_mutex_t mu;
    pthread_cond_t work;       /* a request arrived, or stop */
    EngineReq *wait_head, *wait_tail;
    int n_waiting, n_running;
    EngineStats stats;
    int stop;                  /* the driver thread must return */
    int started;               /* the driver thread exists */
    pthread_t driver;
};

/* Normalise options (defaults filled in, classes checked). Returns 0 or VLQ_EINPUT. */
int engine_norm_options(const EngineOptions *in, EngineOptions *out, char *err);

/* The pad runs of pr and the features each takes (see EngineVisRun): pad run p comes
 * from part pr->pads[p].part, the k-th visual part of chat, so item k; a video's group g
 * starts at merged row g*h*w/4 of its item. Checks every run against its item's grid.
 * Returns 0 and *runs (caller frees), *n_runs, *n_vis_tok, or VLQ_EINPUT. */
int engine_visual_runs(const TokPrompt *pr, const TokChat *chat, EngineVisRun **runs,
                       int *n_runs, int *n_vis_tok, char *err);

/* Deliver the end of q (callbacks, result, wake waiters), free its slot and run state,
 * and free q when its owner already let it go. Driver only; q is no longer in a queue. */
void engine_end(Engine *e, EngineReq *q, EngineEndReason why, int code, const char *msg);

/* Release a request's memory (prompt, buffers, locks). */
void engine_req_destroy(EngineReq *q);

#endif
