/* gen: one engine request from a job thread, with the job's duties kept while it waits.
 *
 * gen_run submits a request to the worker's shared Engine (whose driver thread batches it
 * with the requests of the other jobs in flight), collects the streamed text, and blocks
 * until its end; every third of a lease it runs jobs_checkpoint, so a long page renews
 * the job's lease, and a cancel, a stopping worker or a lost lease cancels the request
 * at once (engine_cancel) and is returned as that checkpoint's code. */
#ifndef VLQ_GEN_H
#define VLQ_GEN_H

#include "engine.h"
#include "jobs.h"

#include <stddef.h>

/* What one request produced. */
typedef struct {
    char *text;        /* the generated text (NUL-terminated, caller frees with gen_clear) */
    size_t len;        /* its bytes */
    EngineResult res;  /* the engine's end record: reason, tokens, timings */
    double seconds;    /* wall time from submit to end */
} GenOut;

/* Run r (its callbacks are gen's own: leave them NULL) on ctx->engine. Returns 0 when
 * the request ended with eos or length (out filled), the engine's code for a refused
 * request (VLQ_EINPUT over budget, ...) or an ERROR end, or the checkpoint's code
 * (VLQ_ECANCEL, VLQ_EBUSY) when the job stopped while waiting; err says why. */
int gen_run(JobCtx *ctx, const EngineRequest *r, GenOut *out, char *err);
/* Free out's text. NULL-safe. */
void gen_clear(GenOut *out);

#endif
