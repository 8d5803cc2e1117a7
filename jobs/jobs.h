/* jobs: the job kinds a worker can run, and the context a kind runs in.
 *
 * A binary registers its kinds (jobs_register) before cli_main; the table is read-only
 * from then on. Test binaries register test-only kinds (tests/vlq_testkinds.c). A kind's
 * run() turns one job into a result, calling jobs_checkpoint() on real progress (a page,
 * a frame chunk): that renews the lease and tells the kind to stop when the job was
 * cancelled or the worker is stopping. run() returns 0 after jobs_set_result, or a VLQ_E*
 * code with err set; the worker (jobs/worker.c) classifies it by code: transient codes
 * are retried, ECANCEL is a cancel or a hand-back, a lost lease is not recorded.
 *
 * Several jobs run at once, each on its own worker thread with its own JobCtx and Queue
 * connection; what they share (the engine, the config, the stop flag) is thread-safe. */
#ifndef VLQ_JOBS_H
#define VLQ_JOBS_H

#include "plan.h"
#include "queue.h"

#include <stddef.h>
#include <stdint.h>

typedef struct JobCtx JobCtx;
typedef struct Cfg Cfg;
typedef struct Engine Engine;

typedef struct {
    const char *name;                 /* "ocr", "summarize", "test.echo" */
    const char *summary;              /* one line for --help */
    int (*run)(JobCtx *ctx, char *err);
    int needs_engine;                 /* 1: run() needs ctx->engine (the model) */
} JobKind;

/* What a running job sees; the worker owns it. */
struct JobCtx {
    Queue *queue;         /* this worker thread's own connection */
    const Job *job;
    int64_t lease_ms;
    volatile int *stop;   /* set by the worker's signal handler: stop at the next checkpoint */
    int stopping;         /* jobs_checkpoint saw *stop */
    const Cfg *cfg;       /* the worker's configuration (read-only), or NULL in tests */
    Engine *engine;       /* shared by every job in flight; NULL unless the kind needs it */
    char *format;         /* the result, set by jobs_set_result */
    char *result;
    size_t result_len;
    char *summary;
    /* progress, for the worker's lines (jobs_progress) */
    const char *unit_name; /* "page", "segment" */
    int units_total;       /* 0: not known yet */
    int units_done;        /* stored in this or an earlier attempt */
    int units_run;         /* generated in this attempt (for the rate and the ETA) */
    int64_t tok_out;       /* tokens generated in this attempt */
    double t_start;        /* util_mono_s() when this attempt started its first unit */
};

/* The kinds built into vlq (jobs/ocr.c, jobs/summarize.c); they need the engine. */
extern const JobKind ocr_kind;
extern const JobKind summarize_kind;

/* Add a kind (name must be unique). Call before cli_main; not thread-safe. */
void jobs_register(const JobKind *kind);
/* The kind called name, or NULL. */
const JobKind *jobs_find(const char *name);
/* 0 if a kind called name is registered; else VLQ_EINPUT with err naming it and listing
 * the known kinds ("unknown job kind 'x' (this vlq runs: ocr, summarize)"), so a job no
 * worker can run is refused at submit instead of sitting queued forever. */
int jobs_check_kind(const char *name, char *err);
int jobs_count(void);
const JobKind *jobs_at(int i);

/* Renew the lease; VLQ_ECANCEL when the job was cancelled or the worker is stopping
 * (ctx->stopping tells which), VLQ_EBUSY when the lease was lost, else 0. */
int jobs_checkpoint(JobCtx *ctx, char *err);
/* Keep the result (copied) for the worker to store. */
void jobs_set_result(JobCtx *ctx, const char *format, const char *data, size_t len,
                     const char *summary);
/* Free what jobs_set_result kept. */
void jobs_ctx_clear(JobCtx *ctx);

/* Planner options for a kind: budget and answer tokens from the config keys budget_key
 * and max_new_key ("budgets.ocr", "budgets.max_new_tokens"), media sampling, page and
 * pixel limits from [media], min_group_tokens from [plan]; built-in defaults when cfg is
 * NULL. prompt_tok and count_text are the caller's to set. Cannot fail. */
void jobs_plan_options(const Cfg *cfg, const char *budget_key, const char *max_new_key,
                       PlanOptions *po);

/* Progress: the job has units_total units of unit_name ("page"), of which `resumed`
 * were done by an earlier attempt; stores the total in the queue (fenced: VLQ_EBUSY on
 * a lost lease) and logs the plan. */
int jobs_progress_start(JobCtx *ctx, const char *unit_name, int units_total, int resumed,
                        char *err);
/* The job has `more` units than planned (a reduce round): the total grows and is stored
 * (a failure to store it is logged: the progress is informative). Cannot fail. */
void jobs_progress_grow(JobCtx *ctx, int more);
/* One unit finished in this attempt with tok_out tokens: logs "page 3/12" with tokens/s
 * and the ETA (a human line on a terminal, logfmt fields otherwise). Cannot fail. */
void jobs_progress_unit(JobCtx *ctx, int unit_idx, int64_t tok_out, double seconds,
                        const char *error);

#endif
