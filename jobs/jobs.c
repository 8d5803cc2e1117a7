/* jobs: the job kind table and the job context (see jobs.h).
 * The one global here is the kind table: filled by jobs_register before any thread
 * starts, read-only afterwards. */
#include "jobs.h"

#include "cfg.h"
#include "log.h"
#include "util.h"

#include <stdio.h>

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

/* Is name a registered kind (see jobs.h)? The list is built in full, never cut: the
 * table is small (JOBS_MAX_KINDS) and err_set truncates only the final line. */
int jobs_check_kind(const char *name, char *err)
{
    if (name && *name && jobs_find(name))
        return 0;
    Buf known = {0};
    for (int i = 0; i < jobs_n; i++)
        buf_printf(&known, "%s%s", i ? ", " : "", jobs_kinds[i]->name);
    int rc;
    if (!name || !*name)
        rc = err_set(err, VLQ_EINPUT, "the job kind is empty (this vlq runs: %s)",
                     jobs_n ? known.data : "no kinds");
    else
        rc = err_set(err, VLQ_EINPUT, "unknown job kind '%s' (this vlq runs: %s)", name,
                     jobs_n ? known.data : "no kinds");
    buf_clear(&known);
    return rc;
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

int jobs_progress_start(JobCtx *ctx, const char *unit_name, int units_total, int resumed,
                        char *err)
{
    ctx->unit_name = unit_name;
    ctx->units_total = units_total;
    ctx->units_done = resumed;
    ctx->units_run = 0;
    ctx->tok_out = 0;
    ctx->t_start = util_mono_s();
    int rc = queue_set_units_total(ctx->queue, ctx->job, units_total, err);
    if (rc)
        return rc;
    char kv[96];
    snprintf(kv, sizeof kv, "units=%d resumed=%d", units_total, resumed);
    if (resumed)
        log_msg_kv(LOG_INFO, kv, "%d %ss, %d done by an earlier attempt: resuming", units_total,
                   unit_name, resumed);
    else
        log_msg_kv(LOG_INFO, kv, "%d %ss", units_total, unit_name);
    return 0;
}

void jobs_progress_grow(JobCtx *ctx, int more)
{
    char err[VLQ_ERRLEN];
    ctx->units_total += more;
    if (queue_set_units_total(ctx->queue, ctx->job, ctx->units_total, err))
        log_debug("progress: %s", err);
}

/* "1:02:03" or "2:03" from seconds. */
static void jobs_hms(char *buf, size_t n, double s)
{
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

void jobs_progress_unit(JobCtx *ctx, int unit_idx, int64_t tok_out, double seconds,
                        const char *error)
{
    ctx->units_done++;
    ctx->units_run++;
    ctx->tok_out += tok_out;
    double el = util_mono_s() - ctx->t_start;
    double tok_s = el > 0 ? (double)ctx->tok_out / el : 0;
    int left = ctx->units_total - ctx->units_done;
    /* the ETA is this attempt's pace per unit times the units left */
    double eta = left > 0 ? el / ctx->units_run * left : 0;
    char kv[256], eta_h[32];
    jobs_hms(eta_h, sizeof eta_h, eta);
    snprintf(kv, sizeof kv, "unit=%d done=%d total=%d tok_out=%lld unit_s=%.2f tok_s=%.1f eta_s=%.0f%s",
             unit_idx + 1, ctx->units_done, ctx->units_total, (long long)tok_out, seconds, tok_s,
             eta, error ? " unit_error=1" : "");
    const char *name = ctx->unit_name ? ctx->unit_name : "unit";
    if (error)
        log_msg_kv(LOG_WARN, kv, "%s %d failed (%d/%d done): %s", name, unit_idx + 1,
                   ctx->units_done, ctx->units_total, error);
    else
        log_msg_kv(LOG_INFO, kv, "%s %d/%d done, %.1f tok/s, ETA %s", name, unit_idx + 1,
                   ctx->units_total, tok_s, eta_h);
}

void jobs_plan_options(const Cfg *cfg, const char *budget_key, const char *max_new_key,
                       PlanOptions *po)
{
    memset(po, 0, sizeof *po);
    if (!cfg) {
        po->budget_tok = 8192;
        po->max_new_tok = 2048;
        return;
    }
    po->budget_tok = cfg_int(cfg, budget_key);
    po->max_new_tok = cfg_int(cfg, max_new_key);
    po->min_group_tok = (int)cfg_int(cfg, "plan.min_group_tokens");
    po->media.fps = cfg_double(cfg, "media.fps");
    po->media.min_frames = (int)cfg_int(cfg, "media.min_frames");
    po->media.max_frames = (int)cfg_int(cfg, "media.max_frames");
    po->media.max_image_pixels = cfg_int(cfg, "media.max_image_pixels");
    po->media.pdf_dpi = (int)cfg_int(cfg, "media.pdf_dpi");
    po->media.threads = (int)cfg_int(cfg, "media.threads");
}
