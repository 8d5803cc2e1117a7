/* cli_run: `vlq run`, one-off generation for people trying a model: images and a video
 * through media + prep (planned by plan.h as the reference processor does), the chat
 * prompt, then one request to the engine (engine.h), tokens streamed to stdout as they
 * come. Timing goes to stderr.
 *
 * The engine is opened for this one request: one slot of the smallest budget class of
 * the configuration that holds the prompt + max_new_tokens (so the KV memory is what the
 * job kinds would use for it, not more). The prompt is counted first with the model's
 * tokenizer, before the engine allocates anything. */
#include "backend.h"
#include "cfg.h"
#include "cli.h"
#include "engine.h"
#include "err.h"
#include "log.h"
#include "model.h"
#include "plan.h"
#include "prep.h"
#include "sample.h"
#include "tok.h"
#include "util.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RUN_MAX_IMAGES 16

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
            "               [--top-p P] [--repetition-penalty R] [--backend NAME] PROMPT\n\n"
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
            "  --backend NAME          auto (default: cuda when a device is usable, else cpu;\n"
            "                          it says which on stderr), cpu, ref (the scalar oracle:\n"
            "                          slow), cuda, or a vlq-backend-NAME.so plugin\n",
            RUN_MAX_IMAGES);
}

/* ---- media ---- */

/* Plan and load the first page of an image or PDF, or a whole video (one segment within
 * budget_tok, the largest budget class), through plan.h: the reference's resolution,
 * frame sampling and group timestamps whenever they fit. */
static int run_load(RunMedia *rm, const char *path, int video, int budget_tok, int max_new,
                    char *err)
{
    PlanOptions po = {.budget_tok = budget_tok, .max_new_tok = max_new,
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
    Cfg *cfg;            /* the configuration (strings of eo are borrowed from it) */
    EngineOptions eo;    /* from the configuration and the flags */
} RunArgs;

static void run_on_token(void *user, int32_t id, const char *text, size_t len)
{
    fwrite(text, 1, len, stdout);
    fflush(stdout);
}

/* The budget: prompt + max_new_tokens rounded up to the smallest configured class; the
 * engine gets one slot of it. */
static int run_pick_class(RunArgs *a, int prompt_tok, char *err)
{
    int64_t need = (int64_t)prompt_tok + a->max_new;
    int best = -1, largest = 0;
    for (int i = 0; i < a->eo.n_classes; i++) {
        const EngineClass *c = &a->eo.classes[i];
        largest = c->ctx_tok > largest ? c->ctx_tok : largest;
        if (c->ctx_tok >= need && (best < 0 || c->ctx_tok < a->eo.classes[best].ctx_tok))
            best = i;
    }
    if (best < 0)
        return err_set(err, VLQ_EINPUT, "%d prompt tokens + max_new_tokens %d = %lld: over the "
                       "largest budget (%d tokens)", prompt_tok, a->max_new, (long long)need,
                       largest);
    a->eo.classes[0] = (EngineClass){.name = a->eo.classes[best].name,
                                     .ctx_tok = a->eo.classes[best].ctx_tok, .n_slots = 1};
    a->eo.n_classes = 1;
    return 0;
}

/* Count the prompt with the model's tokenizer (the file opened without the weight
 * checks: the engine opens it for real). */
static int run_count(const RunArgs *a, const TokChat *chat, size_t *n_tok, char *err)
{
    Model *m = NULL;
    Tok *tok = NULL;
    int rc = model_open_ex(a->model_path, MODEL_OPEN_NO_VERIFY | MODEL_OPEN_NO_POPULATE, &m, err);
    if (!rc)
        rc = model_load_tok(m, &tok, err);
    if (!rc && tok_n_vocab(tok) > model_config(m)->vocab_size)
        rc = err_set(err, VLQ_EMODEL, "%s: the tokenizer has %d ids, the model only %d (a test "
                     "model with remapped ids?)", a->model_path, (int)tok_n_vocab(tok),
                     model_config(m)->vocab_size);
    if (!rc)
        rc = tok_chat_count(tok, chat, n_tok, err);
    tok_free(tok);
    model_close(m);
    return rc;
}

/* Run the request on an engine of one slot, streaming text to stdout. */
static int run_generate(RunArgs *a, const TokChat *chat, RunMedia *rm, char *err)
{
    size_t n_tok = 0;
    int rc = run_count(a, chat, &n_tok, err);
    if (!rc)
        rc = run_pick_class(a, (int)n_tok, err);
    /* the vision workspace fits the largest item (or one frame group of it, past the
     * default), not more: a small picture does not pay for a large one */
    int64_t most = 0, group = 0;
    for (int i = 0; i < rm->n_vis; i++) {
        int64_t g = (int64_t)rm->vis[i].grid_h * rm->vis[i].grid_w;
        most = g * rm->vis[i].grid_t > most ? g * rm->vis[i].grid_t : most;
        group = g > group ? g : group;
    }
    a->eo.max_patches = (int)(most <= 16384 ? most : group > 16384 ? group : 16384);
    Engine *e = NULL;
    if (!rc)
        rc = engine_open(&a->eo, &e, err);
    if (rc)
        return rc;
    const ModelConfig *c = model_config(engine_model(e));
    if (!a->set_temp)
        a->sp.temperature = c->temperature;
    if (!a->set_k)
        a->sp.top_k = c->top_k;
    if (!a->set_p)
        a->sp.top_p = c->top_p;
    if (!a->set_rep)
        a->sp.repetition_penalty = c->repetition_penalty;
    const PrepVisual *vis[RUN_MAX_IMAGES + 1];
    for (int i = 0; i < rm->n_vis; i++)
        vis[i] = &rm->vis[i];
    EngineRequest r = {.chat = chat, .visual = vis, .n_visual = rm->n_vis,
                       .budget_tok = a->eo.classes[0].ctx_tok, .max_new_tok = a->max_new,
                       .sampling = a->sp, .on_token = run_on_token};
    EngineReq *q = NULL;
    rc = engine_submit(e, &r, &q, err);
    int left = rc ? 0 : 1;
    while (left > 0)
        left = engine_step(e, err);
    if (left < 0)
        rc = left;
    EngineResult res = {0};
    if (rc == 0 && engine_req_poll(q, &res)) {
        fputc('\n', stdout);
        if (res.reason == ENGINE_END_ERROR)
            rc = err_set(err, res.code, "%s", res.err);
        int L = res.prompt_tok;
        log_info("prefill: %d tokens in %.2f s (%.1f tok/s)", L, res.prefill_s,
                 res.prefill_s > 0 ? L / res.prefill_s : 0.0);
        log_info("decode: %d tokens in %.2f s (%.1f tok/s)", res.gen_tok, res.decode_s,
                 res.decode_s > 0 ? res.gen_tok / res.decode_s : 0.0);
    }
    engine_req_free(q);
    engine_close(e);
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
    while ((ch = cli_getopt("run", argc, argv, "h", opts)) != -1) {
        int64_t iv = 0;
        double dv = 0;
        /* each numeric flag is checked against the range of the config key it stands for */
        const char *key = ch == 'n' ? "budgets.max_new_tokens" : ch == 's' ? "sampling.seed"
                          : ch == 'k' ? "sampling.top_k" : ch == 't' ? "sampling.temperature"
                          : ch == 'p' ? "sampling.top_p"
                          : ch == 'r' ? "sampling.repetition_penalty" : NULL;
        char flag[32];
        for (const struct option *o = opts; key && o->name; o++)
            if (o->val == ch)
                snprintf(flag, sizeof flag, "--%s", o->name);
        if (key && strchr("nsk", ch) && cli_num_i64("run", flag, cfg_key_range(key), optarg, &iv))
            return CLI_EXIT_USAGE;
        if (key && strchr("tpr", ch) &&
            cli_num_double("run", flag, cfg_key_range(key), optarg, &dv))
            return CLI_EXIT_USAGE;
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
            if (a->n_images == RUN_MAX_IMAGES)
                return cli_usage("run", "at most %d images", RUN_MAX_IMAGES);
            a->images[a->n_images++] = optarg;
            break;
        case 'h': run_usage(stdout); return -1;
        default: return CLI_EXIT_USAGE;
        }
    }
    if (optind != argc - 1)
        return cli_usage("run", "one PROMPT is required");
    a->prompt = argv[optind];
    return 0;
}

/* What the flags left open comes from the configuration: [model] path, backend and
 * threads, the [budgets] and [engine] keys (engine_options_from_cfg), and the
 * [sampling] keys a config file sets (else the model's own defaults). */
static int run_config(RunArgs *a, const CliCommon *common)
{
    char err[VLQ_ERRLEN];
    if (cfg_load(common->config_path, &a->cfg, err)) {
        cli_error("run: %s", err);
        return CLI_EXIT_FAIL;
    }
    Cfg *cfg = a->cfg;
    engine_options_from_cfg(cfg, &a->eo);
    if (!a->model_path)
        a->model_path = a->eo.model_path;
    if (!a->backend)
        a->backend = a->eo.backend;
    a->eo.model_path = a->model_path;
    a->eo.backend = a->backend;
    a->eo.verify_model = 1; /* one run: check the weights' CRCs, as before the engine */
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
    if (!a->model_path)
        return cli_usage("run", "--model is required (or [model] path in the configuration)");
    return 0;
}

int cli_run(int argc, char **argv, const CliCommon *common)
{
    RunArgs a = {0};
    int rc = run_parse(argc, argv, &a);
    if (rc == 0)
        rc = run_config(&a, common);
    if (rc) {
        cfg_free(a.cfg);
        return rc < 0 ? CLI_EXIT_OK : rc;
    }
    char err[VLQ_ERRLEN] = "";
    RunMedia *rm = xcalloc(1, sizeof *rm);
    TokPart parts[RUN_MAX_IMAGES + 2];
    size_t n_parts = 0;
    int largest = 0;
    for (int i = 0; i < a.eo.n_classes; i++)
        largest = a.eo.classes[i].ctx_tok > largest ? a.eo.classes[i].ctx_tok : largest;
    for (int i = 0; i < a.n_images && !rc; i++)
        rc = run_load(rm, a.images[i], 0, largest, a.max_new, err);
    if (a.video && !rc)
        rc = run_load(rm, a.video, 1, largest, a.max_new, err);
    for (int i = 0; i < rm->n_vis && !rc; i++)
        parts[n_parts++] = (TokPart){.kind = rm->is_video[i] ? TOK_PART_VIDEO : TOK_PART_IMAGE,
                                     .grid_t = rm->vis[i].grid_t, .grid_h = rm->vis[i].grid_h,
                                     .grid_w = rm->vis[i].grid_w,
                                     .times_s = rm->is_video[i] ? rm->times_s : NULL};
    parts[n_parts++] = (TokPart){.kind = TOK_PART_TEXT, .text = a.prompt};
    TokChat chat = {.parts = parts, .n_parts = n_parts};
    if (!rc)
        rc = run_generate(&a, &chat, rm, err);
    if (rc)
        cli_error("run: %s", err);
    for (int i = 0; i < rm->n_vis; i++)
        prep_visual_clear(&rm->vis[i]);
    free(rm->times_s);
    free(rm);
    cfg_free(a.cfg);
    return rc ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}
