/* vlq-testkinds: the vlq program with test-only job kinds, for the process tests
 * (tests/e2e/queue_*.sh). Kinds read their parameters from the job's --prompt text:
 *   test.echo    result = "<sha256 of the input> <size>"
 *   test.sleep   prompt "N MS": N steps of MS milliseconds, a checkpoint after each
 *   test.flaky   prompt "K": a transient error (EIO) on attempts 1..K, then like echo
 *   test.bad     a deterministic error (EINPUT)
 *   test.pages   prompt "N MS": N units of MS milliseconds each, each stored as it ends
 *                (a later attempt resumes after the stored ones); result = the units'
 *                texts, one per line */
#include "cli.h"
#include "err.h"
#include "jobs.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int echo_run(JobCtx *ctx, char *err)
{
    const JobInput *in = &ctx->job->inputs[0];
    char out[128];
    int n = snprintf(out, sizeof out, "%s %lld", in->sha256, (long long)in->size_bytes);
    jobs_set_result(ctx, "text", out, (size_t)n, NULL);
    return 0;
}

static int sleep_run(JobCtx *ctx, char *err)
{
    int steps = 10, ms = 100;
    if (ctx->job->prompt)
        sscanf(ctx->job->prompt, "%d %d", &steps, &ms);
    for (int i = 0; i < steps; i++) {
        util_sleep_ms(ms);
        int rc = jobs_checkpoint(ctx, err);
        if (rc)
            return rc;
    }
    return echo_run(ctx, err);
}

static int flaky_run(JobCtx *ctx, char *err)
{
    int k = ctx->job->prompt ? atoi(ctx->job->prompt) : 1;
    if (ctx->job->attempts <= k)
        return err_set(err, VLQ_EIO, "flaky: attempt %d fails on purpose", ctx->job->attempts);
    return echo_run(ctx, err);
}

static int bad_run(JobCtx *ctx, char *err)
{
    return err_set(err, VLQ_EINPUT, "%s: not a document this kind reads",
                   ctx->job->inputs[0].path);
}

static int pages_run(JobCtx *ctx, char *err)
{
    int n = 3, ms = 10;
    if (ctx->job->prompt)
        sscanf(ctx->job->prompt, "%d %d", &n, &ms);
    JobUnit *units = NULL;
    int n_units = 0;
    int rc = queue_units(ctx->queue, ctx->job->id, &units, &n_units, err);
    if (rc == 0)
        rc = jobs_progress_start(ctx, "page", n, n_units, err);
    for (int i = n_units; rc == 0 && i < n; i++) {
        util_sleep_ms(ms);
        char text[96];
        snprintf(text, sizeof text, "page %d of %.12s", i + 1, ctx->job->inputs[0].sha256);
        JobUnit u = {.idx = i, .result = text, .tok_in = 100 + i, .tok_out = 10 + i,
                     .seconds = ms / 1000.0};
        if ((rc = queue_unit_store(ctx->queue, ctx->job, &u, err)) == 0)
            rc = jobs_checkpoint(ctx, err);
    }
    queue_units_free(units, n_units);
    units = NULL;
    if (rc == 0)
        rc = queue_units(ctx->queue, ctx->job->id, &units, &n_units, err);
    if (rc == 0) {
        Buf b = {0};
        for (int i = 0; i < n_units; i++)
            buf_printf(&b, "%s\n", units[i].result ? units[i].result : "");
        jobs_set_result(ctx, "text", b.data ? b.data : "", b.len, NULL);
        buf_clear(&b);
    }
    queue_units_free(units, n_units);
    return rc;
}

static const JobKind test_kinds[] = {
    {"test.echo", "the input's SHA-256 and size", echo_run},
    {"test.sleep", "sleep in steps with checkpoints", sleep_run},
    {"test.flaky", "fail transiently K times", flaky_run},
    {"test.bad", "fail deterministically", bad_run},
    {"test.pages", "units stored one by one, resumable", pages_run},
};

int main(int argc, char **argv)
{
    for (size_t i = 0; i < sizeof test_kinds / sizeof test_kinds[0]; i++)
        jobs_register(&test_kinds[i]);
    return cli_main(argc, argv);
}
