/* cli_run: `vlq run`, one-off generation for people trying a model: images and a video
 * through media + prep, the chat prompt through tok, the vision encoder and the decoder
 * on one backend, tokens streamed to stdout as they come.
 *
 * One sequence in KV slot 0, everything sized for this one prompt: the run state is
 * allocated once after the prompt is known (prompt + max_new_tokens), and the loop of
 * decode steps allocates nothing. Each visual item is encoded on its own, so the vision
 * run state fits the largest item, not their sum. Inputs are planned and loaded by
 * plan.h (the reference's resolution, frames and timestamps). Timing goes to stderr. */
#include "cfg.h"
#include "cli.h"
#include "decoder.h"
#include "err.h"
#include "log.h"
#include "model.h"
#include "plan.h"
#include "prep.h"
#include "sample.h"
#include "tok.h"
#include "util.h"
#include "vision.h"

#include <getopt.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RUN_MAX_IMAGES 16

/* Context budget for planning `vlq run`'s inputs: the model's position range, so the
 * reference's own resolution and frame count are kept (plan.h). */
#define RUN_BUDGET_TOK 262144

typedef struct {
    PrepVisual vis[RUN_MAX_IMAGES + 1]; /* images, then the video */
    int n_vis;
    int is_video[RUN_MAX_IMAGES + 1];
    double *times_s;                    /* the video's group timestamps (grid_t values) */
} RunMedia;

static void run_usage(FILE *out)
{
    fprintf(out,
            "usage: vlq run --model MODEL.vlq [--image FILE]... [--video FILE]\n"
            "               [--max-new-tokens N] [--seed N] [--temperature T] [--top-k K]\n"
            "               [--top-p P] [--repetition-penalty R] [--backend cpu|ref] PROMPT\n\n"
            "Generate a reply to PROMPT (with the images and the video before it in the user\n"
            "turn) and print it to stdout as it comes.\n\n"
            "  --model FILE            a converted model (vlq convert)\n"
            "  --image FILE            an image (any format FFmpeg reads; a PDF's first page);\n"
            "                          repeat for several, at most %d\n"
            "  --video FILE            a video, sampled at 2 frames/s as the reference does\n"
            "  --max-new-tokens N      stop after N tokens (default 256)\n"
            "  --seed N                sampling seed (default 0)\n"
            "  --temperature T         0 for greedy; default: the model's generation config\n"
            "  --top-k K, --top-p P, --repetition-penalty R\n"
            "                          default: the model's generation config\n"
            "  --backend NAME          cpu (default) or ref (the scalar oracle: slow)\n",
            RUN_MAX_IMAGES);
}

/* ---- media ---- */

/* Plan and load the first page of an image or PDF, or a whole video (one segment under
 * RUN_BUDGET_TOK), through plan.h: the reference's resolution, frame sampling and group
 * timestamps. */
static int run_load(RunMedia *rm, const char *path, int video, int max_new, char *err)
{
    PlanOptions po = {.budget_tok = RUN_BUDGET_TOK, .max_new_tok = max_new,
                      .media = {.last_page = 1}};
    PlanUnit *units = NULL;
    int n = 0, rc = plan_file(path, &po, &units, &n, err);
    if (!rc && n != 1)
        rc = err_set(err, VLQ_EINPUT, "%s: %d segments: too long for one run", path, n);
    if (!rc && (units[0].page == 0) != video)
        rc = err_set(err, VLQ_EINPUT, "%s: %s", path,
                     video ? "not a video (use --image)" : "a video (use --video)");
    if (!rc && video)
        rm->times_s = xcalloc((size_t)units[0].grid_t, sizeof *rm->times_s);
    if (!rc)
        rc = plan_load(path, &po, &units[0], &rm->vis[rm->n_vis], video ? rm->times_s : NULL,
                       err);
    free(units);
    if (rc)
        return rc;
    rm->is_video[rm->n_vis++] = video;
    return 0;
}

/* ---- generation ---- */

typedef struct {
    const char *model_path, *video, *prompt, *backend;
    const char *images[RUN_MAX_IMAGES];
    int n_images, max_new;
    SampleParams sp;
    int set_temp, set_k, set_p, set_rep, set_seed;
    char *model_path_cfg, *backend_cfg; /* owned copies when they came from the config */
} RunArgs;

/* Encode every visual item and lay out the decoder's visual rows, features and
 * DeepStack features in prompt order. The arrays are the caller's to free. */
static int run_vision(const Model *m, Backend *b, RunMedia *rm, const TokPrompt *pr,
                      DecoderSeq *seq, int32_t **rows_out, float **vis_out, float **deep_out,
                      char *err)
{
    const ModelConfig *c = model_config(m);
    int64_t h = c->hidden_size, n_vis = 0, max_patches = 0;
    for (int i = 0; i < rm->n_vis; i++) {
        int64_t np = (int64_t)rm->vis[i].grid_t * rm->vis[i].grid_h * rm->vis[i].grid_w;
        n_vis += np / 4;
        max_patches = np > max_patches ? np : max_patches;
    }
    *rows_out = NULL;
    *vis_out = *deep_out = NULL;
    if (!n_vis)
        return 0;
    Vision *v;
    int rc = vision_new(m, b, (int)max_patches, &v, err);
    if (rc)
        return rc;
    int32_t *rows = xmalloc((size_t)n_vis * sizeof *rows);
    int64_t nd = c->n_deepstack ? c->n_deepstack : 1;
    float *vis = malloc((size_t)(n_vis * h) * sizeof *vis);
    float *deep = malloc((size_t)(n_vis * h * nd) * sizeof *deep);
    float *item_deep = malloc((size_t)(max_patches / 4 * h * nd) * sizeof *item_deep);
    if (!vis || !deep || !item_deep)
        rc = err_set(err, VLQ_ENOMEM, "visual features: out of memory");
    int64_t off = 0;
    for (int i = 0; i < rm->n_vis && !rc; i++) {
        PrepVisual *pv = &rm->vis[i];
        int32_t grid[3] = {pv->grid_t, pv->grid_h, pv->grid_w};
        int64_t nm = (int64_t)pv->grid_t * pv->grid_h * pv->grid_w / 4;
        double t0 = util_mono_s();
        rc = vision_encode(v, pv->pixels, grid, 1, vis + off * h, item_deep, err);
        for (int j = 0; j < c->n_deepstack && !rc; j++)
            memcpy(deep + ((int64_t)j * n_vis + off) * h, item_deep + j * nm * h,
                   (size_t)(nm * h) * 4);
        log_info("vision: item %d: %dx%dx%d patches in %.2f s", i + 1, pv->grid_t, pv->grid_h,
                 pv->grid_w, util_mono_s() - t0);
        off += nm;
    }
    vision_free(v);
    free(item_deep);
    /* the pad runs of the prompt are the visual rows, in the same order */
    int64_t r = 0;
    for (size_t p = 0; p < pr->n_pads && !rc; p++)
        for (size_t k = 0; k < pr->pads[p].n_tok && r < n_vis; k++)
            rows[r++] = (int32_t)(pr->pads[p].start + k);
    if (!rc && r != n_vis)
        rc = err_set(err, VLQ_EINPUT, "prompt: %lld pad tokens for %lld visual features",
                     (long long)r, (long long)n_vis);
    if (rc) {
        free(rows);
        free(vis);
        free(deep);
        return rc;
    }
    seq->n_visual = (int)n_vis;
    seq->visual_rows = rows;
    seq->visual = vis;
    seq->deepstack = c->n_deepstack ? deep : NULL;
    *rows_out = rows;
    *vis_out = vis;
    *deep_out = deep;
    return 0;
}

/* Prefill, then sample and decode one token at a time, streaming text to stdout. */
static int run_generate(const Model *m, Backend *b, const Tok *tok, const TokPrompt *pr,
                        RunMedia *rm, const RunArgs *a, char *err)
{
    const ModelConfig *c = model_config(m);
    int L = (int)pr->ids.n, n_img = 0, n_vid = 0, rope_delta = 0;
    int32_t grids_img[3 * RUN_MAX_IMAGES], grid_vid[3];
    for (int i = 0; i < rm->n_vis; i++) {
        int32_t *g = rm->is_video[i] ? grid_vid : grids_img + 3 * n_img;
        g[0] = rm->vis[i].grid_t;
        g[1] = rm->vis[i].grid_h;
        g[2] = rm->vis[i].grid_w;
        *(rm->is_video[i] ? &n_vid : &n_img) += 1;
    }
    int32_t *pos = xmalloc((size_t)L * 3 * sizeof *pos);
    int32_t *seen = xmalloc((size_t)(L + a->max_new) * sizeof *seen);
    float *logits = xmalloc((size_t)c->vocab_size * sizeof *logits);
    int32_t *rows = NULL;
    float *vis = NULL, *deep = NULL;
    Decoder *d = NULL;
    Sampler *s = NULL;
    TokStream ts;
    tok_stream_init(&ts, tok, 1);
    DecoderSeq seq = {.slot = 0, .n_past = 0, .n_tok = L, .ids = pr->ids.ids, .pos = pos};
    int rc = decoder_rope_index(c, pr->ids.ids, L, grids_img, n_img, grid_vid, n_vid, pos,
                                &rope_delta, err);
    if (!rc)
        rc = run_vision(m, b, rm, pr, &seq, &rows, &vis, &deep, err);
    DecoderOptions opt = {.n_slots = 1, .max_ctx = L + a->max_new, .max_tok = L, .max_seq = 1};
    if (!rc)
        rc = decoder_new(m, b, &opt, &d, err);
    double t0 = util_mono_s();
    if (!rc)
        rc = decoder_forward(d, &seq, 1, logits, 0, err);
    double t_prefill = util_mono_s() - t0;
    if (rc)
        goto out;
    log_info("prefill: %d tokens in %.2f s (%.1f tok/s)", L, t_prefill, L / t_prefill);
    s = sample_new(c->vocab_size, &a->sp);
    memcpy(seen, pr->ids.ids, (size_t)L * sizeof *seen);
    int n_gen = 0;
    t0 = util_mono_s();
    for (;;) {
        int next = sample_next(s, logits, seen, L + n_gen);
        if (sample_is_stop(next, c->eos_token_ids, c->n_eos))
            break;
        seen[L + n_gen++] = next;
        size_t len;
        const char *text = tok_stream_push(&ts, next, &len);
        fwrite(text, 1, len, stdout);
        fflush(stdout);
        if (n_gen >= a->max_new)
            break;
        int p = L + n_gen - 1 + rope_delta;
        int32_t id = next, p3[3] = {p, p, p};
        DecoderSeq step = {.slot = 0, .n_past = L + n_gen - 1, .n_tok = 1, .ids = &id, .pos = p3};
        rc = decoder_forward(d, &step, 1, logits, 0, err);
        if (rc)
            goto out;
    }
    size_t len;
    const char *tail = tok_stream_flush(&ts, &len);
    fwrite(tail, 1, len, stdout);
    fputc('\n', stdout);
    double t_dec = util_mono_s() - t0;
    log_info("decode: %d tokens in %.2f s (%.1f tok/s)", n_gen, t_dec,
             t_dec > 0 ? n_gen / t_dec : 0.0);
out:
    tok_stream_clear(&ts);
    sample_free(s);
    decoder_free(d);
    free(rows);
    free(vis);
    free(deep);
    free(pos);
    free(seen);
    free(logits);
    return rc;
}

static int run_parse(int argc, char **argv, RunArgs *a)
{
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},
        {"image", required_argument, NULL, 'i'},
        {"video", required_argument, NULL, 'V'},
        {"max-new-tokens", required_argument, NULL, 'n'},
        {"seed", required_argument, NULL, 's'},
        {"temperature", required_argument, NULL, 't'},
        {"top-k", required_argument, NULL, 'k'},
        {"top-p", required_argument, NULL, 'p'},
        {"repetition-penalty", required_argument, NULL, 'r'},
        {"backend", required_argument, NULL, 'b'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    a->max_new = 256;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int64_t iv = 0;
        double dv = 0;
        int bad = 0;
        if (strchr("nsk", ch))
            bad = util_parse_i64(optarg, &iv) || iv < 0 || iv > 1000000000;
        if (strchr("tpr", ch))
            bad = util_parse_double(optarg, &dv) || dv < 0;
        if (bad) {
            cli_error("run: --%s: not a valid value: %s", ch == 'n' ? "max-new-tokens"
                      : ch == 's' ? "seed" : ch == 'k' ? "top-k" : ch == 't' ? "temperature"
                      : ch == 'p' ? "top-p" : "repetition-penalty", optarg);
            return CLI_EXIT_USAGE;
        }
        switch (ch) {
        case 'm': a->model_path = optarg; break;
        case 'V': a->video = optarg; break;
        case 'b': a->backend = optarg; break;
        case 'n': a->max_new = (int)iv; break;
        case 's': a->sp.seed = (uint64_t)iv; a->set_seed = 1; break;
        case 't': a->sp.temperature = (float)dv; a->set_temp = 1; break;
        case 'k': a->sp.top_k = (int)iv; a->set_k = 1; break;
        case 'p': a->sp.top_p = (float)dv; a->set_p = 1; break;
        case 'r': a->sp.repetition_penalty = (float)dv; a->set_rep = 1; break;
        case 'i':
            if (a->n_images == RUN_MAX_IMAGES) {
                cli_error("run: at most %d images", RUN_MAX_IMAGES);
                return CLI_EXIT_USAGE;
            }
            a->images[a->n_images++] = optarg;
            break;
        case 'h': run_usage(stdout); return -1;
        default: run_usage(stderr); return CLI_EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        cli_error("run: one PROMPT is required");
        return CLI_EXIT_USAGE;
    }
    if (a->max_new < 1) {
        cli_error("run: --max-new-tokens must be at least 1");
        return CLI_EXIT_USAGE;
    }
    a->prompt = argv[optind];
    return 0;
}

/* Sampling flags not given come from the model's generation config. */
static void run_defaults(RunArgs *a, const ModelConfig *c)
{
    if (!a->set_temp)
        a->sp.temperature = c->temperature;
    if (!a->set_k)
        a->sp.top_k = c->top_k;
    if (!a->set_p)
        a->sp.top_p = c->top_p;
    if (!a->set_rep)
        a->sp.repetition_penalty = c->repetition_penalty;
}

/* What the flags left open comes from the configuration: [model] path, backend and
 * threads, and the [sampling] keys a config file sets (else the model's own defaults). */
static int run_config(RunArgs *a, const CliCommon *common)
{
    char err[VLQ_ERRLEN];
    Cfg *cfg;
    if (cfg_load(common->config_path, &cfg, err)) {
        cli_error("%s", err);
        return CLI_EXIT_FAIL;
    }
    int rc = 0;
    if (!a->model_path && cfg_str(cfg, "model.path")[0])
        a->model_path = a->model_path_cfg = xstrdup(cfg_str(cfg, "model.path"));
    if (!a->backend)
        a->backend = a->backend_cfg = xstrdup(cfg_str(cfg, "model.backend"));
    if (cfg_int(cfg, "model.threads") > 0)
        omp_set_num_threads((int)cfg_int(cfg, "model.threads"));
    if (!a->set_temp && strcmp(cfg_source(cfg, "sampling.temperature"), "default")) {
        a->sp.temperature = (float)cfg_double(cfg, "sampling.temperature");
        a->set_temp = 1;
    }
    if (!a->set_k && strcmp(cfg_source(cfg, "sampling.top_k"), "default")) {
        a->sp.top_k = (int)cfg_int(cfg, "sampling.top_k");
        a->set_k = 1;
    }
    if (!a->set_p && strcmp(cfg_source(cfg, "sampling.top_p"), "default")) {
        a->sp.top_p = (float)cfg_double(cfg, "sampling.top_p");
        a->set_p = 1;
    }
    if (!a->set_rep && strcmp(cfg_source(cfg, "sampling.repetition_penalty"), "default")) {
        a->sp.repetition_penalty = (float)cfg_double(cfg, "sampling.repetition_penalty");
        a->set_rep = 1;
    }
    if (!a->set_seed && strcmp(cfg_source(cfg, "sampling.seed"), "default"))
        a->sp.seed = (uint64_t)cfg_int(cfg, "sampling.seed");
    if (!a->model_path) {
        cli_error("run: --model is required (or [model] path in the configuration)");
        rc = CLI_EXIT_USAGE;
    } else if (!backend_get(a->backend)) {
        cli_error("run: unknown backend '%s' (%s)", a->backend, backend_names());
        rc = CLI_EXIT_USAGE;
    }
    cfg_free(cfg);
    return rc;
}

int cli_run(int argc, char **argv, const CliCommon *common)
{
    RunArgs a = {0};
    int rc = run_parse(argc, argv, &a);
    if (rc == 0)
        rc = run_config(&a, common);
    if (rc) {
        free(a.model_path_cfg);
        free(a.backend_cfg);
        return rc < 0 ? CLI_EXIT_OK : rc;
    }
    char err[VLQ_ERRLEN] = "";
    Model *m = NULL;
    Tok *tok = NULL;
    RunMedia *rm = xcalloc(1, sizeof *rm);
    TokPrompt pr = {0};
    TokPart parts[RUN_MAX_IMAGES + 2];
    size_t n_parts = 0;
    rc = model_open(a.model_path, &m, err);
    if (!rc)
        rc = model_load_tok(m, &tok, err);
    if (!rc && tok_n_vocab(tok) > model_config(m)->vocab_size)
        rc = err_set(err, VLQ_EMODEL, "%s: the tokenizer has %d ids, the model only %d (a test "
                     "model with remapped ids?)", a.model_path, (int)tok_n_vocab(tok),
                     model_config(m)->vocab_size);
    for (int i = 0; i < a.n_images && !rc; i++)
        rc = run_load(rm, a.images[i], 0, a.max_new, err);
    if (a.video && !rc)
        rc = run_load(rm, a.video, 1, a.max_new, err);
    for (int i = 0; i < rm->n_vis && !rc; i++)
        parts[n_parts++] = (TokPart){.kind = rm->is_video[i] ? TOK_PART_VIDEO : TOK_PART_IMAGE,
                                     .grid_t = rm->vis[i].grid_t, .grid_h = rm->vis[i].grid_h,
                                     .grid_w = rm->vis[i].grid_w,
                                     .times_s = rm->is_video[i] ? rm->times_s : NULL};
    parts[n_parts++] = (TokPart){.kind = TOK_PART_TEXT, .text = a.prompt};
    TokChat chat = {.parts = parts, .n_parts = n_parts};
    if (!rc)
        rc = tok_chat_encode(tok, &chat, &pr, err);
    if (!rc) {
        run_defaults(&a, model_config(m));
        rc = run_generate(m, backend_get(a.backend), tok, &pr, rm, &a, err);
    }
    if (rc)
        cli_error("run: %s", err);
    tok_prompt_clear(&pr);
    for (int i = 0; i < rm->n_vis; i++)
        prep_visual_clear(&rm->vis[i]);
    free(rm->times_s);
    free(rm);
    tok_free(tok);
    free(a.model_path_cfg);
    free(a.backend_cfg);
    model_close(m);
    return rc ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}
