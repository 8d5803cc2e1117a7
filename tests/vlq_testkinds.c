/* vlq-testkinds: the vlq program with test-only job kinds, for the process tests
 * (tests/e2e/queue_*.sh). Kinds read their parameters from the job's --prompt text:
 *   test.echo    result = "<sha256 of the input> <size>"
 *   test.sleep   prompt "N MS": N steps of MS milliseconds, a checkpoint after each
 *   test.flaky   prompt "K": a transient error (EIO) on attempts 1..K, then like echo
 *   test.bad     a deterministic error (EINPUT) */
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

static const JobKind test_kinds[] = {
    {"test.echo", "the input's SHA-256 and size", echo_run},
    {"test.sleep", "sleep in steps with checkpoints", sleep_run},
    {"test.flaky", "fail transiently K times", flaky_run},
    {"test.bad", "fail deterministically", bad_run},
};

int main(int argc, char **argv)
{
    for (size_t i = 0; i < sizeof test_kinds / sizeof test_kinds[0]; i++)
        jobs_register(&test_kinds[i]);
    return cli_main(argc, argv);
}
