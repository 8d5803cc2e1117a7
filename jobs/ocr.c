/* ocr: the "ocr" job kind: every page of an image, multi-page TIFF or PDF transcribed by
 * the model, one engine request per page.
 *
 * One job is one input file (vlq submit makes one per file): a corrupt or unreadable
 * file then fails only its own job, with its reason, and the pages of different files
 * run as different jobs in flight at once, sharing the engine's batches.
 *
 * Per page: the planner's unit at the OCR budget ([budgets] ocr, answer tokens
 * [budgets] max_new_tokens; a page too large for the budget is downscaled, never cut),
 * decoded and preprocessed by plan_load, sent as the chat [image, prompt] with greedy
 * decoding; the prompt is the job's own (submit --prompt/--prompt-file) or
 * jobs/prompts' versioned default. Each page's outcome is stored as soon as it ends
 * (queue_unit_store, fenced by the claim token): a later attempt reads the stored pages
 * and runs only the others, and a page is never stored twice.
 *
 * Page errors: a page that fails for a deterministic reason (bad data, over the budget,
 * too many pixels: EINPUT, ENOTSUP, ENOMEM) is stored with its error and the others go
 * on; a transient one (EIO, EDEVICE, EBUSY) fails the attempt, to be retried from the
 * pages already stored. The job succeeds, listing its page errors, unless every page
 * failed: then it is dead with the first page's reason. */
#include "cfg.h"
#include "engine.h"
#include "err.h"
#include "gen.h"
#include "jobs.h"
#include "log.h"
#include "plan.h"
#include "prompts.h"
#include "result.h"
#include "tok.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A page failure that retrying cannot fix: stored with the page, the job goes on. */
static int ocr_page_error_is_final(int code)
{
    return code == VLQ_EINPUT || code == VLQ_ENOTSUP || code == VLQ_ENOMEM;
}

/* Run page k (planned unit u) and store its outcome. Returns 0 when stored (success or
 * a final page error), else the code that ends the attempt. */
static int ocr_page(JobCtx *ctx, const char *path, const PlanOptions *po, const PlanUnit *u,
                    int k, const char *prompt, char *err)
{
    PrepVisual vis = {0};
    GenOut g = {0};
    double t0 = util_mono_s();
    char perr[VLQ_ERRLEN] = "";
    int rc = plan_load(path, po, u, &vis, NULL, perr);
    if (rc == 0) {
        TokPart parts[2] = {
            {.kind = TOK_PART_IMAGE, .grid_t = vis.grid_t, .grid_h = vis.grid_h,
             .grid_w = vis.grid_w},
            {.kind = TOK_PART_TEXT, .text = prompt},
        };
        TokChat chat = {.parts = parts, .n_parts = 2};
        const PrepVisual *visual[1] = {&vis};
        EngineRequest r = {.chat = &chat, .visual = visual, .n_visual = 1,
                           .budget_tok = (int)po->budget_tok, .max_new_tok = (int)po->max_new_tok,
                           .sampling = {.temperature = 0}};
        rc = gen_run(ctx, &r, &g, perr);
    }
    prep_visual_clear(&vis);
    if (rc && !ocr_page_error_is_final(rc)) {
        snprintf(err, VLQ_ERRLEN, "page %d: %s", u->page, perr);
        return rc;
    }
    char meta[96];
    snprintf(meta, sizeof meta, "{\"page\": %d, \"width\": %d, \"height\": %d%s}", u->page,
             u->width, u->height,
             rc == 0 && g.res.reason == ENGINE_END_LENGTH ? ", \"truncated\": true" : "");
    JobUnit unit = {.idx = k, .meta_json = meta, .seconds = util_mono_s() - t0};
    if (rc == 0) {
        unit.result = g.text;
        unit.tok_in = g.res.prompt_tok;
        unit.tok_out = g.res.gen_tok;
    } else {
        unit.error_code = (char *)err_name(rc);
        unit.error = perr;
    }
    int src = queue_unit_store(ctx->queue, ctx->job, &unit, err);
    if (src == 0)
        jobs_progress_unit(ctx, k, unit.tok_out, unit.seconds, rc ? perr : NULL);
    gen_clear(&g);
    return src;
}

static int ocr_run(JobCtx *ctx, char *err)
{
    const Job *j = ctx->job;
    if (j->n_inputs != 1)
        return err_set(err, VLQ_EINPUT, "an ocr job reads one file, not %d", j->n_inputs);
    const char *path = j->inputs[0].path;
    const Tok *tok = engine_tok(ctx->engine);
    int version = 0;
    const char *prompt = j->prompt ? j->prompt : prompts_default("ocr", &version);
    /* the prompt's tokens around one image placeholder, for the planner */
    TokPart parts[2] = {{.kind = TOK_PART_IMAGE, .grid_t = 1, .grid_h = 2, .grid_w = 2},
                        {.kind = TOK_PART_TEXT, .text = prompt}};
    TokChat chat = {.parts = parts, .n_parts = 2};
    size_t prompt_tok = 0;
    int rc = tok_chat_count(tok, &chat, &prompt_tok, err);
    if (rc) {
        err_prefix(err, "prompt");
        return rc;
    }
    PlanOptions po;
    jobs_plan_options(ctx->cfg, "budgets.ocr", "budgets.max_new_tokens", &po);
    po.prompt_tok = (int64_t)prompt_tok;
    PlanUnit *units = NULL;
    JobUnit *done = NULL;
    int n = 0, n_done = 0;
    char *doc = NULL;
    if ((rc = plan_file(path, &po, &units, &n, err)) != 0)
        goto out;
    if (n == 0 || units[0].page == 0) {
        rc = err_set(err, VLQ_EINPUT, "%s: a video, not a document (use summarize)", path);
        goto out;
    }
    if ((rc = queue_units(ctx->queue, j->id, &done, &n_done, err)) != 0)
        goto out;
    char *is_done = xcalloc((size_t)n, 1);
    for (int i = 0; i < n_done; i++)
        if (done[i].idx < n)
            is_done[done[i].idx] = 1;
    queue_units_free(done, n_done);
    done = NULL;
    rc = jobs_progress_start(ctx, "page", n, n_done, err);
    for (int k = 0; k < n && rc == 0; k++) {
        if (is_done[k])
            continue; /* stored by an earlier attempt */
        if ((rc = jobs_checkpoint(ctx, err)) == 0)
            rc = ocr_page(ctx, path, &po, &units[k], k, prompt, err);
    }
    free(is_done);
    if (rc || (rc = queue_units(ctx->queue, j->id, &done, &n_done, err)) != 0)
        goto out;
    int failed = 0;
    doc = result_ocr_doc(jobs_input_name(ctx, 0), version, done, n_done, &failed);
    if (failed == n_done) {
        rc = err_set(err, VLQ_EINPUT, "every page failed; page %d: %s", done[0].idx + 1,
                     done[0].error ? done[0].error : "");
        goto out;
    }
    char summary[128];
    snprintf(summary, sizeof summary, "%d page%s, %d failed", n_done, n_done == 1 ? "" : "s",
             failed);
    jobs_set_result(ctx, "json", doc, strlen(doc), summary);
out:
    free(doc);
    queue_units_free(done, n_done);
    free(units);
    return rc;
}

const JobKind ocr_kind = {
    .name = "ocr",
    .summary = "transcribe every page of images and PDFs (one request per page)",
    .run = ocr_run,
    .needs_engine = 1,
};
