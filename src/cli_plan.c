/* cli_plan: `vlq plan FILE... --kind ocr|summarize [--budget N] [--json]`.
 *
 * Prints the planner's units (plan.h): per page or video segment, the resized size,
 * grid, frame count and the token accounting against the budget. The prompt's token
 * count is an input of the planner: with --tokenizer it is the kind's default prompt
 * (jobs/prompts.h) rendered by tok's chat template with one vision placeholder block,
 * and the timestamp texts of video groups are counted by tok exactly; --prompt-tokens
 * gives the count instead (timestamps then bounded by their byte length); without
 * either, the tokenizer carried by the configured model ([model] path) is used. */
#include "cfg.h"
#include "cli.h"
#include "err.h"
#include "model.h"
#include "num.h"
#include "plan.h"
#include "prompts.h"
#include "tok.h"
#include "util.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void cli_plan_usage(FILE *out)
{
    fprintf(out,
            "usage: vlq plan FILE... --kind ocr|summarize [--budget N] [--json]\n"
            "\n"
            "Show how each file would be cut into model inputs: one unit per page or video\n"
            "segment, with its resized size, grid and tokens against the context budget.\n"
            "\n"
            "  --kind K            ocr (pages) or summarize (videos); sets the defaults\n"
            "  --budget N          context budget in tokens (default [budgets] ocr or video)\n"
            "  --max-new-tokens N  tokens reserved for the answer (default [budgets]\n"
            "                      max_new_tokens or summarize_max_new_tokens)\n"
            "  --tokenizer FILE    tokenizer.json: count the kind's default prompt exactly\n"
            "  --prompt-tokens N   or give the count of the chat prompt with one vision\n"
            "                      placeholder block (without either, the tokenizer of\n"
            "                      the configured model, [model] path, counts it)\n"
            "  --fps F             video sampling rate (default [media] fps)\n"
            "  --from S, --to S    video range in seconds\n"
            "  --max-frames N      most frames per segment (default [media] max_frames)\n"
            "  --pages A-B         page range (PDF, TIFF)\n"
            "  --dpi N             PDF render resolution (default [media] pdf_dpi)\n"
            "  --max-pixels N      refuse larger images (default [media] max_image_pixels)\n"
            "  --json              {\"units\": [...]} on stdout\n"
            "\nDefaults come from the configuration (`vlq config` shows them).\n");
}

/* The numeric flags: the range of the config key each stands for (cfg_key_range), or
 * their own. Returns 0 and *out, or prints the usage error and returns -1. */
static int cli_plan_num(const char *opt, const char *s, double *out)
{
    static const NumRange prompt_tok = NUM_INT(3, 1048576), seconds = NUM_REAL(0, 1e9);
    static const struct {
        const char *flag, *key;
        const NumRange *own;
    } flags[] = {
        {"--budget", "budgets.ocr", NULL},
        {"--max-new-tokens", "budgets.max_new_tokens", NULL},
        {"--prompt-tokens", NULL, &prompt_tok},
        {"--fps", "media.fps", NULL},
        {"--from", NULL, &seconds},
        {"--to", NULL, &seconds},
        {"--max-frames", "media.max_frames", NULL},
        {"--dpi", "media.pdf_dpi", NULL},
        {"--max-pixels", "media.max_image_pixels", NULL},
    };
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (!strcmp(flags[i].flag, opt))
            return cli_num_double("plan", opt, flags[i].key ? cfg_key_range(flags[i].key)
                                                            : flags[i].own, s, out);
    VLQ_ASSERT(!"a numeric flag of plan without a range");
    return -1;
}

/* --pages A-B or A: 1 <= A <= B. Returns 0, or prints the usage error and returns -1. */
static int cli_plan_pages(const char *s, int *first, int *last)
{
    static const NumRange pages = NUM_INT(1, 1000000);
    const char *dash = strchr(s, '-');
    char a[32], b[32];
    snprintf(a, sizeof a, "%.*s", dash ? (int)(dash - s) : (int)strlen(s), s);
    snprintf(b, sizeof b, "%s", dash ? dash + 1 : a);
    int64_t x = 0, y = 0;
    if (strlen(s) >= sizeof a || num_parse_i64(a, &pages, &x, NULL) ||
        num_parse_i64(b, &pages, &y, NULL) || x > y) {
        cli_usage("plan", "--pages: '%s' is not A-B or A with 1 <= A <= B <= 1000000", s);
        return -1;
    }
    *first = (int)x;
    *last = (int)y;
    return 0;
}

static json_t *cli_plan_unit_json(const char *file, const PlanUnit *u)
{
    json_t *o = json_object();
    json_object_set_new(o, "file", cli_json_str(file, 0));
    json_object_set_new(o, "page", u->page ? json_integer(u->page) : json_null());
    json_object_set_new(o, "start_s", u->page ? json_null() : json_real(u->start_s));
    json_object_set_new(o, "end_s", u->page ? json_null() : json_real(u->end_s));
    json_object_set_new(o, "frames", json_integer(u->frames));
    json_object_set_new(o, "src_width", json_integer(u->src_width));
    json_object_set_new(o, "src_height", json_integer(u->src_height));
    json_object_set_new(o, "width", json_integer(u->width));
    json_object_set_new(o, "height", json_integer(u->height));
    json_object_set_new(o, "grid", json_pack("[iii]", u->grid_t, u->grid_h, u->grid_w));
    json_object_set_new(o, "visual_tokens", json_integer(u->visual_tok));
    json_object_set_new(o, "prompt_tokens", json_integer(u->prompt_tok));
    json_object_set_new(o, "max_new_tokens", json_integer(u->max_new_tok));
    json_object_set_new(o, "downscaled", json_boolean(u->downscaled));
    return o;
}

/* PlanCountFn over tok: the exact token count of a plain text (a timestamp). */
static int cli_plan_count_text(void *ctx, const char *text)
{
    TokIds ids = {0};
    int n = tok_encode(ctx, text, strlen(text), &ids, NULL) == 0 ? (int)ids.n : (int)strlen(text);
    tok_ids_clear(&ids);
    return n;
}

/* The kind's default prompt with one placeholder block, as the planner counts it:
 * image: <|vision_start|><|image_pad|><|vision_end|> + text; video: the same with
 * <|video_pad|>. tok renders a video group with its "<t seconds>" text, which is
 * subtracted (the planner adds every group's own). */
static int cli_plan_prompt_tokens(const Tok *tok, const char *kind, int64_t *image,
                                  int64_t *video, char *err)
{
    const char *text = prompts_default(kind, NULL);
    double t0 = 0.0;
    TokPart parts[2] = {{.kind = TOK_PART_IMAGE, .grid_t = 1, .grid_h = 2, .grid_w = 2},
                        {.kind = TOK_PART_TEXT, .text = text}};
    TokChat chat = {.parts = parts, .n_parts = 2};
    size_t n;
    int ret = tok_chat_count(tok, &chat, &n, err);
    if (ret)
        return ret;
    *image = (int64_t)n;
    parts[0] = (TokPart){.kind = TOK_PART_VIDEO, .grid_t = 1, .grid_h = 2, .grid_w = 2,
                         .times_s = &t0};
    ret = tok_chat_count(tok, &chat, &n, err);
    if (ret)
        return ret;
    *video = (int64_t)n - cli_plan_count_text((void *)tok, "<0.0 seconds>");
    return 0;
}

/* cli_plan: the command (see the file comment); returns the exit status. */
int cli_plan(int argc, char **argv, const CliCommon *common)
{
    if (cli_wants_help(argc, argv)) {
        cli_plan_usage(stdout);
        return CLI_EXIT_OK;
    }
    static const struct option longopts[] = {
        {"kind", required_argument, NULL, 'k'},       {"budget", required_argument, NULL, 'b'},
        {"max-new-tokens", required_argument, NULL, 'n'},
        {"prompt-tokens", required_argument, NULL, 'p'}, {"fps", required_argument, NULL, 'f'},
        {"from", required_argument, NULL, 'F'},       {"to", required_argument, NULL, 'T'},
        {"max-frames", required_argument, NULL, 'm'}, {"pages", required_argument, NULL, 'P'},
        {"dpi", required_argument, NULL, 'd'},        {"max-pixels", required_argument, NULL, 'x'},
        {"tokenizer", required_argument, NULL, 't'},  {NULL, 0, NULL, 0},
    };
    const char *kind = NULL, *tok_path = NULL;
    double budget = 0, max_new = -1, prompt = -1, v;
    PlanOptions o = {0};
    char cerr[VLQ_ERRLEN];
    Cfg *cfg = NULL;
    if (cfg_load(common->config_path, &cfg, cerr)) {
        cli_error("%s", cerr);
        return CLI_EXIT_FAIL;
    }
    /* the config gives the defaults; flags override them */
    o.media.fps = cfg_double(cfg, "media.fps");
    o.media.min_frames = (int)cfg_int(cfg, "media.min_frames");
    o.media.max_frames = (int)cfg_int(cfg, "media.max_frames");
    o.media.max_image_pixels = cfg_int(cfg, "media.max_image_pixels");
    o.media.pdf_dpi = (int)cfg_int(cfg, "media.pdf_dpi");
    o.media.threads = (int)cfg_int(cfg, "media.threads");
    o.min_group_tok = (int)cfg_int(cfg, "plan.min_group_tokens");
    int64_t cfg_budget[2] = {cfg_int(cfg, "budgets.ocr"), cfg_int(cfg, "budgets.video")};
    int64_t cfg_max_new[2] = {cfg_int(cfg, "budgets.max_new_tokens"),
                              cfg_int(cfg, "budgets.summarize_max_new_tokens")};
    char model_path[4096];
    int path_cut = snprintf(model_path, sizeof model_path, "%s", cfg_str(cfg, "model.path")) >=
                   (int)sizeof model_path;
    cfg_free(cfg);
    if (path_cut) { /* refused, never cut: a cut path would name another file */
        cli_error("[model] path: longer than %zu bytes", sizeof model_path - 1);
        return CLI_EXIT_FAIL;
    }
    optind = 1;
    int c;
    while ((c = cli_getopt("plan", argc, argv, "", longopts)) != -1) {
        const char *name = NULL;
        char flag[32] = "";
        for (const struct option *lo = longopts; lo->name; lo++)
            if (lo->val == c)
                name = lo->name;
        if (name)
            snprintf(flag, sizeof flag, "--%s", name);
        int bad = 0;
        switch (c) {
        case 'k': kind = optarg; break;
        case 't': tok_path = optarg; break;
        case 'b': bad = cli_plan_num(flag, optarg, &budget); break;
        case 'n': bad = cli_plan_num(flag, optarg, &max_new); break;
        case 'p': bad = cli_plan_num(flag, optarg, &prompt); break;
        case 'f': bad = cli_plan_num(flag, optarg, &o.media.fps); break;
        case 'F': bad = cli_plan_num(flag, optarg, &o.media.from_s); break;
        case 'T': bad = cli_plan_num(flag, optarg, &o.media.to_s); break;
        case 'm': bad = cli_plan_num(flag, optarg, &v); o.media.max_frames = (int)v; break;
        case 'd': bad = cli_plan_num(flag, optarg, &v); o.media.pdf_dpi = (int)v; break;
        case 'x': bad = cli_plan_num(flag, optarg, &v); o.media.max_image_pixels = (int64_t)v; break;
        case 'P': bad = cli_plan_pages(optarg, &o.media.first_page, &o.media.last_page); break;
        default: bad = 1; break;
        }
        if (bad)
            return CLI_EXIT_USAGE;
    }
    if (!kind || (strcmp(kind, "ocr") && strcmp(kind, "summarize")))
        return cli_usage("plan", "--kind ocr|summarize is required");
    if (optind >= argc)
        return cli_usage("plan", "no FILE given");
    if (prompt < 0 && !tok_path && !model_path[0])
        return cli_usage("plan", "the prompt's token count is needed: pass --tokenizer FILE "
                         "(tokenizer.json) or --prompt-tokens N, or set [model] path");
    Tok *tok = NULL;
    int64_t prompt_image = (int64_t)prompt, prompt_video = (int64_t)prompt;
    if (tok_path || prompt < 0) {
        /* --tokenizer, else the tokenizer the configured model carries */
        char err[VLQ_ERRLEN];
        Model *m = NULL;
        int rc = tok_path ? tok_load_file(tok_path, &tok, err) : model_open(model_path, &m, err);
        if (rc == 0 && m)
            rc = model_load_tok(m, &tok, err);
        model_close(m);
        if (rc == 0)
            rc = cli_plan_prompt_tokens(tok, kind, &prompt_image, &prompt_video, err);
        if (rc) {
            cli_error("plan: %s", err);
            tok_free(tok);
            return CLI_EXIT_FAIL;
        }
        if (prompt >= 0)
            prompt_image = prompt_video = (int64_t)prompt; /* an explicit count wins */
        o.count_text = cli_plan_count_text;
        o.count_ctx = tok;
    }
    int ocr = !strcmp(kind, "ocr");
    o.budget_tok = budget > 0 ? (int64_t)budget : cfg_budget[!ocr];
    o.max_new_tok = max_new >= 0 ? (int64_t)max_new : cfg_max_new[!ocr];
    json_t *units = json_array();
    int status = CLI_EXIT_OK;
    for (int i = optind; i < argc; i++) {
        PlanUnit *u;
        int n;
        char err[VLQ_ERRLEN];
        o.prompt_tok = media_kind(argv[i]) == MEDIA_VIDEO ? prompt_video : prompt_image;
        if (plan_file(argv[i], &o, &u, &n, err) != 0) {
            cli_error("%s", err);
            status = CLI_EXIT_FAIL;
            continue;
        }
        CliStrs str = {0};
        const char *name = cli_str(&str, argv[i]); /* a file name may hold a newline */
        for (int k = 0; k < n; k++) {
            if (common->json) {
                json_array_append_new(units, cli_plan_unit_json(argv[i], &u[k]));
                continue;
            }
            if (u[k].page)
                printf("%s page %d: %dx%d -> %dx%d", name, u[k].page, u[k].src_width,
                       u[k].src_height, u[k].width, u[k].height);
            else
                printf("%s %.3f-%.3f s: %d frames %dx%d -> %dx%d", name, u[k].start_s,
                       u[k].end_s, u[k].frames, u[k].src_width, u[k].src_height, u[k].width,
                       u[k].height);
            printf(" grid [%d,%d,%d] visual %lld + prompt %lld + max_new %lld = %lld / %lld%s\n",
                   u[k].grid_t, u[k].grid_h, u[k].grid_w, (long long)u[k].visual_tok,
                   (long long)u[k].prompt_tok, (long long)u[k].max_new_tok,
                   (long long)(u[k].visual_tok + u[k].prompt_tok + u[k].max_new_tok),
                   (long long)o.budget_tok, u[k].downscaled ? " (downscaled)" : "");
        }
        cli_strs_clear(&str);
        free(u);
    }
    if (common->json) {
        json_t *root = json_pack("{so}", "units", units);
        char *s = json_dumps(root, JSON_COMPACT);
        puts(s);
        free(s);
        json_decref(root);
    } else {
        json_decref(units);
    }
    tok_free(tok);
    return status;
}
