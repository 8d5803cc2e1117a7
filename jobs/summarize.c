/* summarize: the "summarize" job kind: a video summarised segment by segment (map), then
 * the segment summaries combined into one (reduce).
 *
 * Map: the planner splits the video into consecutive segments that each fit the video
 * budget ([budgets] video, answer tokens [budgets] summarize_max_new_tokens), with
 * sampled frames and their timestamps (each temporal group carries "<t seconds>" in the
 * prompt, as the reference processor writes it). Each segment is one request: the chat
 * [its time range as text, the video part, the prompt]. Segment outcomes are stored as
 * they end (units 0..n-1) and skipped on resume, like OCR pages.
 *
 * Reduce: the segment summaries, each prefixed with its hh:mm:ss range, are combined by
 * one text-only request when they fit one budget; otherwise in rounds, each round
 * combining consecutive groups that fit (result_reduce_groups: a round at least halves
 * the count, so the rounds end). Reduce outputs are stored as units n, n+1, ... in the
 * order they run; the grouping depends only on the stored texts, so a resumed job asks
 * the same questions and skips the answers it has. A video of one segment needs no
 * reduce: its summary is the segment's.
 *
 * Sampling: [summarize] temperature 0.7, top_p 0.9, top_k 0, repetition_penalty 1.1
 * (the seed's settings), each overridable per job (submit --temperature ...; stored in
 * the job's params), seed [sampling] seed or the job's, plus the unit's index so every
 * request draws its own stream and a rerun draws the same.
 *
 * Segment errors follow OCR's rule: a final one (EINPUT, ENOTSUP, ENOMEM) is stored and
 * the summary is made from the other segments; the job is dead when every segment
 * failed. A reduce error ends the attempt with its code. */
#include "cfg.h"
#include "engine.h"
#include "err.h"
#include "gen.h"
#include "jobs.h"
#include "log.h"
#include "media.h"
#include "plan.h"
#include "prompts.h"
#include "result.h"
#include "tok.h"
#include "util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    JobCtx *ctx;
    const Tok *tok;
    const char *path;
    const char *prompt;
    PlanOptions po;
    SampleParams sp;
    int n_seg;          /* segment units; reduce units follow */
    JobUnit *done;      /* the units stored so far (by idx lookup) */
    int n_done;
} Sum;

static int sum_final_error(int code)
{
    return code == VLQ_EINPUT || code == VLQ_ENOTSUP || code == VLQ_ENOMEM;
}

/* Tokens of a plain text (planner callback and reduce sizing). */
static int sum_count(void *p, const char *text)
{
    TokIds ids = {0};
    int n = tok_encode(p, text, strlen(text), &ids, NULL) ? (int)strlen(text) : (int)ids.n;
    tok_ids_clear(&ids);
    return n;
}

static const JobUnit *sum_find(const Sum *s, int idx)
{
    for (int i = 0; i < s->n_done; i++)
        if (s->done[i].idx == idx)
            return &s->done[i];
    return NULL;
}

/* Sampling: the [summarize] keys, the job's params over them. */
static void sum_sampling(const JobCtx *ctx, SampleParams *sp)
{
    const Cfg *c = ctx->cfg;
    *sp = (SampleParams){.temperature = 0.7f, .top_p = 0.9f, .repetition_penalty = 1.1f};
    if (c) {
        sp->temperature = (float)cfg_double(c, "summarize.temperature");
        sp->top_p = (float)cfg_double(c, "summarize.top_p");
        sp->top_k = (int)cfg_int(c, "summarize.top_k");
        sp->repetition_penalty = (float)cfg_double(c, "summarize.repetition_penalty");
        sp->seed = (uint64_t)cfg_int(c, "sampling.seed");
    }
    json_t *p = ctx->job->params_json ? json_loads(ctx->job->params_json, 0, NULL) : NULL;
    json_t *v;
    if ((v = json_object_get(p, "temperature")))
        sp->temperature = (float)json_number_value(v);
    if ((v = json_object_get(p, "top_p")))
        sp->top_p = (float)json_number_value(v);
    if ((v = json_object_get(p, "top_k")))
        sp->top_k = (int)json_integer_value(v);
    if ((v = json_object_get(p, "repetition_penalty")))
        sp->repetition_penalty = (float)json_number_value(v);
    if ((v = json_object_get(p, "seed")))
        sp->seed = (uint64_t)json_integer_value(v);
    json_decref(p);
}

/* The text before a segment's frames: its place in the video. */
static void sum_intro(char *buf, size_t n, double from_s, double to_s, double total_s)
{
    char a[32], b[32], t[32];
    result_hms(a, sizeof a, from_s);
    result_hms(b, sizeof b, to_s);
    result_hms(t, sizeof t, total_s);
    snprintf(buf, n, "This is the part of the video from %s to %s (the whole video is %s long).",
             a, b, t);
}

/* Run segment k and store it. 0 when stored (success or a final error), else the code
 * that ends the attempt. */
static int sum_segment(Sum *s, const PlanUnit *u, int k, double duration_s, char *err)
{
    PrepVisual vis = {0};
    GenOut g = {0};
    double t0 = util_mono_s();
    double *times = xcalloc((size_t)(u->grid_t > 0 ? u->grid_t : 1), sizeof *times);
    char perr[VLQ_ERRLEN] = "", intro[160];
    int rc = plan_load(s->path, &s->po, u, &vis, times, perr);
    if (rc == 0) {
        sum_intro(intro, sizeof intro, u->start_s, u->end_s, duration_s);
        TokPart parts[3] = {
            {.kind = TOK_PART_TEXT, .text = intro},
            {.kind = TOK_PART_VIDEO, .grid_t = vis.grid_t, .grid_h = vis.grid_h,
             .grid_w = vis.grid_w, .times_s = times},
            {.kind = TOK_PART_TEXT, .text = s->prompt},
        };
        TokChat chat = {.parts = parts, .n_parts = 3};
        const PrepVisual *visual[1] = {&vis};
        EngineRequest r = {.chat = &chat, .visual = visual, .n_visual = 1,
                           .budget_tok = (int)s->po.budget_tok,
                           .max_new_tok = (int)s->po.max_new_tok, .sampling = s->sp};
        r.sampling.seed += (uint64_t)k;
        rc = gen_run(s->ctx, &r, &g, perr);
    }
    prep_visual_clear(&vis);
    free(times);
    if (rc && !sum_final_error(rc)) {
        snprintf(err, VLQ_ERRLEN, "segment %d: %s", k + 1, perr);
        return rc;
    }
    char meta[160];
    snprintf(meta, sizeof meta, "{\"start_s\": %.3f, \"end_s\": %.3f, \"frames\": %d}",
             u->start_s, u->end_s, u->frames);
    JobUnit unit = {.idx = k, .meta_json = meta, .seconds = util_mono_s() - t0};
    if (rc == 0) {
        unit.result = g.text;
        unit.tok_in = g.res.prompt_tok;
        unit.tok_out = g.res.gen_tok;
    } else {
        unit.error_code = (char *)err_name(rc);
        unit.error = perr;
    }
    int src = queue_unit_store(s->ctx->queue, s->ctx->job, &unit, err);
    if (src == 0)
        jobs_progress_unit(s->ctx, k, unit.tok_out, unit.seconds, rc ? perr : NULL);
    gen_clear(&g);
    return src;
}

/* One item of a reduce round: a summary and the time range it covers. */
typedef struct {
    char *text;
    double from_s, to_s;
} SumItem;

/* "[hh:mm:ss - hh:mm:ss] text" */
static char *sum_item_line(const SumItem *it)
{
    char a[32], b[32];
    result_hms(a, sizeof a, it->from_s);
    result_hms(b, sizeof b, it->to_s);
    return xasprintf("[%s - %s] %s", a, b, it->text);
}

/* Combine items[from..to) with reduce unit idx (stored, or run and stored now); *out
 * gets the combined text (caller frees). */
static int sum_reduce_one(Sum *s, const SumItem *items, int from, int to, int idx, int round,
                          char **out, char *err)
{
    const JobUnit *have = sum_find(s, idx);
    if (have && have->result) {
        *out = xstrdup(have->result);
        return 0;
    }
    int rc = jobs_checkpoint(s->ctx, err);
    if (rc)
        return rc;
    Buf text = {0};
    buf_puts(&text, prompts_default("summarize.reduce", NULL));
    buf_puts(&text, "\n");
    for (int i = from; i < to; i++) {
        char *line = sum_item_line(&items[i]);
        buf_printf(&text, "\n%s", line);
        free(line);
    }
    TokPart part = {.kind = TOK_PART_TEXT, .text = text.data};
    TokChat chat = {.parts = &part, .n_parts = 1};
    EngineRequest r = {.chat = &chat, .budget_tok = (int)s->po.budget_tok,
                       .max_new_tok = (int)s->po.max_new_tok, .sampling = s->sp};
    r.sampling.seed += (uint64_t)idx;
    GenOut g = {0};
    double t0 = util_mono_s();
    rc = gen_run(s->ctx, &r, &g, err);
    buf_clear(&text);
    if (rc) {
        err_prefix(err, "combining summaries %d..%d (round %d)", from + 1, to, round);
        return rc;
    }
    char meta[160];
    snprintf(meta, sizeof meta,
             "{\"reduce_round\": %d, \"start_s\": %.3f, \"end_s\": %.3f, \"items\": %d}", round,
             items[from].from_s, items[to - 1].to_s, to - from);
    JobUnit unit = {.idx = idx, .result = g.text, .meta_json = meta, .tok_in = g.res.prompt_tok,
                    .tok_out = g.res.gen_tok, .seconds = util_mono_s() - t0};
    rc = queue_unit_store(s->ctx->queue, s->ctx->job, &unit, err);
    if (rc == 0) {
        log_info("reduce round %d: summaries %d..%d combined (%d tokens)", round, from + 1, to,
                 g.res.gen_tok);
        *out = g.text;
        g.text = NULL;
    }
    gen_clear(&g);
    return rc;
}

/* Map's outcomes items[0..*n_items) to one summary, in rounds: each round replaces the
 * items by its outputs (*n_items follows, so the caller frees what is left on any
 * return). *summary gets the summary (caller frees). */
static int sum_reduce(Sum *s, SumItem *items, int *n_items, char **summary, char *err)
{
    int n = *n_items;
    int64_t limit = s->po.budget_tok - s->po.max_new_tok;
    TokPart part = {.kind = TOK_PART_TEXT, .text = prompts_default("summarize.reduce", NULL)};
    TokChat chat = {.parts = &part, .n_parts = 1};
    size_t overhead = 0;
    int rc = tok_chat_count(s->tok, &chat, &overhead, err);
    int next_idx = s->n_seg, round = 0;
    int64_t *tok = xcalloc((size_t)n, sizeof *tok);
    int *group = xcalloc((size_t)n, sizeof *group);
    while (rc == 0 && n > 1) {
        round++;
        for (int i = 0; i < n; i++) {
            char *line = sum_item_line(&items[i]);
            tok[i] = sum_count((void *)s->tok, line) + 2; /* + the newline before it */
            free(line);
        }
        int n_groups = result_reduce_groups(tok, n, (int64_t)overhead + 2, limit, group, err);
        if (n_groups < 0) {
            rc = n_groups;
            break;
        }
        /* the plan grows by this round's requests: keep `vlq show` honest */
        jobs_progress_grow(s->ctx, n_groups);
        SumItem *next = xcalloc((size_t)n_groups, sizeof *next);
        for (int g = 0, from = 0; g < n_groups && rc == 0; g++) {
            int to = from;
            while (to < n && group[to] == g)
                to++;
            rc = sum_reduce_one(s, items, from, to, next_idx++, round, &next[g].text, err);
            next[g].from_s = items[from].from_s;
            next[g].to_s = items[to - 1].to_s;
            from = to;
        }
        for (int i = 0; i < n; i++)
            free(items[i].text);
        memset(items, 0, (size_t)n * sizeof *items);
        memcpy(items, next, (size_t)n_groups * sizeof *items); /* NULL texts where it failed */
        free(next);
        n = *n_items = n_groups;
    }
    free(tok);
    free(group);
    if (rc == 0) {
        *summary = items[0].text;
        items[0].text = NULL;
    }
    return rc;
}

static int sum_run(JobCtx *ctx, char *err)
{
    const Job *j = ctx->job;
    if (j->n_inputs != 1)
        return err_set(err, VLQ_EINPUT, "a summarize job reads one video, not %d", j->n_inputs);
    int version = 0;
    Sum s = {.ctx = ctx, .tok = engine_tok(ctx->engine), .path = j->inputs[0].path};
    s.prompt = j->prompt ? j->prompt : prompts_default("summarize", &version);
    sum_sampling(ctx, &s.sp);
    jobs_plan_options(ctx->cfg, "budgets.video", "budgets.summarize_max_new_tokens", &s.po);
    s.po.count_text = sum_count;
    s.po.count_ctx = (void *)s.tok;
    /* the prompt around one video placeholder of one group; hh:mm:ss texts have a fixed
     * length, so the intro's count holds for every segment */
    char intro[160];
    sum_intro(intro, sizeof intro, 0, 0, 0);
    double t0 = 0;
    TokPart parts[3] = {{.kind = TOK_PART_TEXT, .text = intro},
                        {.kind = TOK_PART_VIDEO, .grid_t = 1, .grid_h = 2, .grid_w = 2,
                         .times_s = &t0},
                        {.kind = TOK_PART_TEXT, .text = s.prompt}};
    TokChat chat = {.parts = parts, .n_parts = 3};
    size_t prompt_tok = 0;
    int rc = tok_chat_count(s.tok, &chat, &prompt_tok, err);
    if (rc) {
        err_prefix(err, "prompt");
        return rc;
    }
    /* tok renders the one group's "<0.0 seconds>"; the planner adds every group's own */
    s.po.prompt_tok = (int64_t)prompt_tok - sum_count((void *)s.tok, "<0.0 seconds>");
    MediaInfo info;
    PlanUnit *units = NULL;
    SumItem *items = NULL;
    char *summary = NULL, *doc = NULL;
    int n = 0, n_items = 0;
    if ((rc = media_probe(s.path, &s.po.media, &info, err)) != 0)
        goto out;
    if (info.kind != MEDIA_VIDEO) {
        rc = err_set(err, VLQ_EINPUT, "%s: not a video (use ocr)", s.path);
        goto out;
    }
    if ((rc = plan_video(&s.po, &info, &units, &n, err)) != 0)
        goto out;
    s.n_seg = n;
    if ((rc = queue_units(ctx->queue, j->id, &s.done, &s.n_done, err)) != 0)
        goto out;
    int seg_done = 0;
    for (int i = 0; i < s.n_done; i++)
        seg_done += s.done[i].idx < n;
    rc = jobs_progress_start(ctx, "segment", n, seg_done, err);
    for (int k = 0; k < n && rc == 0; k++) {
        if (sum_find(&s, k))
            continue;
        if ((rc = jobs_checkpoint(ctx, err)) == 0)
            rc = sum_segment(&s, &units[k], k, info.duration_s, err);
    }
    queue_units_free(s.done, s.n_done);
    s.done = NULL;
    if (rc || (rc = queue_units(ctx->queue, j->id, &s.done, &s.n_done, err)) != 0)
        goto out;
    /* map's good outcomes, in order, are the first round's items */
    items = xcalloc((size_t)n + 1, sizeof *items);
    const JobUnit *first_err = NULL;
    for (int k = 0; k < n; k++) {
        const JobUnit *u = sum_find(&s, k);
        if (u && u->result)
            items[n_items++] = (SumItem){.text = xstrdup(u->result), .from_s = units[k].start_s,
                                         .to_s = units[k].end_s};
        else if (u && !first_err)
            first_err = u;
    }
    if (n_items == 0) {
        rc = err_set(err, VLQ_EINPUT, "every segment failed; segment %d: %s",
                     first_err ? first_err->idx + 1 : 1,
                     first_err && first_err->error ? first_err->error : "no segment");
        goto out;
    }
    if ((rc = sum_reduce(&s, items, &n_items, &summary, err)) != 0)
        goto out;
    doc = result_summary_doc(jobs_input_name(ctx, 0), version, info.duration_s, s.po.media.fps > 0 ? s.po.media.fps
                                                                                 : MEDIA_DEFAULT_FPS,
                             s.done, n <= s.n_done ? n : s.n_done, summary);
    jobs_set_result(ctx, "json", doc, strlen(doc), summary);
out:
    for (int i = 0; items && i < n_items; i++)
        free(items[i].text);
    free(items);
    free(summary);
    free(doc);
    queue_units_free(s.done, s.n_done);
    free(units);
    return rc;
}

const JobKind summarize_kind = {
    .name = "summarize",
    .summary = "summarise a video: segments within the budget, then one combined summary",
    .run = sum_run,
    .needs_engine = 1,
};
