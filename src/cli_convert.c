/* cli_convert: `vlq convert` (Hugging Face checkpoint -> .vlq) and `vlq export`
 * (.vlq -> dequantised safetensors), thin wrappers over convert.h with progress on a
 * terminal. */
#include "cli.h"
#include "convert.h"
#include "err.h"
#include "model.h"
#include "util.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cli_convert(int argc, char **argv, const CliCommon *common);
int cli_export(int argc, char **argv, const CliCommon *common);

static void cli_convert_usage(FILE *out)
{
    fprintf(out,
            "usage: vlq convert HF_DIR -o MODEL.vlq [--quant q4|q8|f16|none] [--group N]\n"
            "                   [--tokenizer FILE] [--force]\n\n"
            "Convert a Hugging Face Qwen3-VL checkpoint (config.json, model.safetensors or\n"
            "shards with model.safetensors.index.json, tokenizer.json, chat template,\n"
            "generation_config.json) into one vlq model file.\n\n"
            "  -o, --output FILE   the .vlq file to write\n"
            "  --quant KIND        q4 (default): text decoder weights and embeddings in 4 bits\n"
            "                      with an f16 scale per group; q8: 8 bits; f16: 16-bit floats;\n"
            "                      none: every tensor exactly as in the checkpoint\n"
            "  --group N           columns per scale for q4/q8 (multiple of 32, default %d)\n"
            "  --tokenizer FILE    tokenizer.json to embed (default HF_DIR/tokenizer.json)\n"
            "  --force             replace an existing MODEL.vlq (never one of the inputs)\n",
            QUANT_DEFAULT_GROUP);
}

typedef struct {
    int tty;
    double t0;
    double last;
} CliProgress;

static void cli_convert_progress(void *ctx, int done, int total, uint64_t bytes_done,
                                 uint64_t bytes_total)
{
    CliProgress *p = ctx;
    double now = util_mono_s();
    if (!p->tty || (done < total && now - p->last < 0.2))
        return;
    p->last = now;
    fprintf(stderr, "\rconvert: %d/%d tensors, %.2f/%.2f GB read, %.0f s ", done, total,
            bytes_done / 1e9, bytes_total / 1e9, now - p->t0);
    if (done == total)
        fputc('\n', stderr);
    fflush(stderr);
}

int cli_convert(int argc, char **argv, const CliCommon *common)
{
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'}, {"quant", required_argument, NULL, 'q'},
        {"group", required_argument, NULL, 'g'},  {"tokenizer", required_argument, NULL, 't'},
        {"force", no_argument, NULL, 'f'},        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    ConvertOptions opt = {.quant = CONVERT_QUANT_Q4, .group = QUANT_DEFAULT_GROUP};
    const char *out = NULL;
    int c;
    optind = 1;
    while ((c = cli_getopt("convert", argc, argv, "o:h", opts)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 't': opt.tokenizer_path = optarg; break;
        case 'f': opt.force = 1; break;
        case 'q':
            if (!strcmp(optarg, "q4"))
                opt.quant = CONVERT_QUANT_Q4;
            else if (!strcmp(optarg, "q8"))
                opt.quant = CONVERT_QUANT_Q8;
            else if (!strcmp(optarg, "f16"))
                opt.quant = CONVERT_QUANT_F16;
            else if (!strcmp(optarg, "none"))
                opt.quant = CONVERT_QUANT_NONE;
            else
                return cli_usage("convert", "--quant '%s': expected q4, q8, f16 or none", optarg);
            break;
        case 'g': {
            int64_t g;
            static const NumRange groups = NUM_INT(32, 4096);
            if (cli_num_i64("convert", "--group", &groups, optarg, &g))
                return CLI_EXIT_USAGE;
            if (g % 32)
                return cli_usage("convert", "--group: '%s' is not a multiple of 32", optarg);
            opt.group = (int)g;
            break;
        }
        case 'h': cli_convert_usage(stdout); return CLI_EXIT_OK;
        default: return CLI_EXIT_USAGE;
        }
    }
    if (optind != argc - 1 || !out) {
        return cli_usage("convert", "%s (see `vlq convert --help`)",
                         !out ? "-o MODEL.vlq is required" : "one HF_DIR is required");
    }
    CliProgress prog = {.tty = isatty(2) && common->verbosity >= 0, .t0 = util_mono_s()};
    opt.progress = cli_convert_progress;
    opt.progress_ctx = &prog;
    char err[VLQ_ERRLEN];
    int rc = convert_run(argv[optind], out, &opt, err);
    if (rc) {
        cli_error("%s", err);
        return CLI_EXIT_FAIL;
    }
    struct stat st;
    double dt = util_mono_s() - prog.t0;
    if (common->verbosity >= 0 && stat(out, &st) == 0)
        fprintf(stderr, "wrote %s: %.1f MB in %.1f s\n", out, st.st_size / 1e6, dt);
    return CLI_EXIT_OK;
}

int cli_export(int argc, char **argv, const CliCommon *common)
{
    const char *out = NULL, *in = NULL;
    int force = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: vlq export MODEL.vlq -o DIR [--force]\n\n"
                   "Write the model's weights as vlq uses them (quantised ones dequantised),\n"
                   "in f32, as a Hugging Face checkpoint in DIR: model.safetensors,\n"
                   "config.json, generation_config.json, chat_template.json, tokenizer.json.\n"
                   "Files of those names already in DIR are refused unless --force.\n");
            return CLI_EXIT_OK;
        }
        if ((!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) && i + 1 < argc)
            out = argv[++i];
        else if (!strcmp(argv[i], "--force"))
            force = 1;
        else if (argv[i][0] != '-' && !in)
            in = argv[i];
        else
            return cli_usage("export", "unexpected argument '%s' (see `vlq export --help`)",
                             argv[i]);
    }
    if (!in || !out)
        return cli_usage("export", "usage: vlq export MODEL.vlq -o DIR [--force]");
    char err[VLQ_ERRLEN];
    double t0 = util_mono_s();
    if (convert_export(in, out, force, err)) {
        cli_error("%s", err);
        return CLI_EXIT_FAIL;
    }
    if (common->verbosity >= 0)
        fprintf(stderr, "exported %s to %s in %.1f s\n", in, out, util_mono_s() - t0);
    return CLI_EXIT_OK;
}
