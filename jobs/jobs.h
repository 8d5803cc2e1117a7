/* jobs: the job kinds a worker can run, and the context a kind runs in.
 *
 * A binary registers its kinds (jobs_register) before cli_main; the table is read-only
 * from then on. The kinds ocr and summarize arrive with their engine; until then the
 * vlq binary registers none and its worker leaves those jobs queued. Test binaries
 * register test-only kinds (tests/vlq_testkinds.c). A kind's run() turns one job into a
 * result, calling jobs_checkpoint() on real progress (a page, a frame chunk): that renews
 * the lease and tells the kind to stop when the job was cancelled or the worker is
 * stopping. run() returns 0 after jobs_set_result, or a VLQ_E* code with err set; the
 * worker classifies it (transient codes are retried). */
#ifndef VLQ_JOBS_H
#define VLQ_JOBS_H

#include "queue.h"

#include <stddef.h>
#include <stdint.h>

typedef struct JobCtx JobCtx;

typedef struct {
    const char *name;                 /* "ocr", "summarize", "test.echo" */
    const char *summary;              /* one line for --help */
    int (*run)(JobCtx *ctx, char *err);
} JobKind;

/* What a running job sees; the worker owns it. */
struct JobCtx {
    Queue *queue;
    const Job *job;
    int64_t lease_ms;
    volatile int *stop;   /* set by the worker's signal handler: stop at the next checkpoint */
    int stopping;         /* jobs_checkpoint saw *stop */
    char *format;         /* the result, set by jobs_set_result */
    char *result;
    size_t result_len;
    char *summary;
};

/* Add a kind (name must be unique). Call before cli_main; not thread-safe. */
void jobs_register(const JobKind *kind);
/* The kind called name, or NULL. */
const JobKind *jobs_find(const char *name);
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

#endif
