/* jobs: the job kind table and the job context (see jobs.h).
 * The one global here is the kind table: filled by jobs_register before any thread
 * starts, read-only afterwards. */
#include "jobs.h"

#include "util.h"

#include <stdlib.h>
#include <string.h>

#define JOBS_MAX_KINDS 32

static const JobKind *jobs_kinds[JOBS_MAX_KINDS];
static int jobs_n;

void jobs_register(const JobKind *kind)
{
    VLQ_ASSERT(jobs_n < JOBS_MAX_KINDS && !jobs_find(kind->name));
    jobs_kinds[jobs_n++] = kind;
}

const JobKind *jobs_find(const char *name)
{
    for (int i = 0; i < jobs_n; i++)
        if (!strcmp(jobs_kinds[i]->name, name))
            return jobs_kinds[i];
    return NULL;
}

int jobs_count(void) { return jobs_n; }

const JobKind *jobs_at(int i) { return i >= 0 && i < jobs_n ? jobs_kinds[i] : NULL; }

int jobs_checkpoint(JobCtx *ctx, char *err)
{
    if (ctx->stop && *ctx->stop) {
        ctx->stopping = 1;
        return err_set(err, VLQ_ECANCEL, "the worker is stopping");
    }
    int cancel = 0;
    int rc = queue_renew(ctx->queue, ctx->job, ctx->lease_ms, &cancel, err);
    if (rc)
        return rc;
    return cancel ? err_set(err, VLQ_ECANCEL, "cancelled") : 0;
}

void jobs_set_result(JobCtx *ctx, const char *format, const char *data, size_t len,
                     const char *summary)
{
    jobs_ctx_clear(ctx);
    ctx->format = xstrdup(format);
    ctx->result = xmalloc(len + 1);
    memcpy(ctx->result, data, len);
    ctx->result[len] = '\0';
    ctx->result_len = len;
    ctx->summary = summary ? xstrdup(summary) : NULL;
}

void jobs_ctx_clear(JobCtx *ctx)
{
    free(ctx->format);
    free(ctx->result);
    free(ctx->summary);
    ctx->format = ctx->result = ctx->summary = NULL;
    ctx->result_len = 0;
}
