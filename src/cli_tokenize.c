/* cli_tokenize: `vlq tokenize`, the tokenizer from the shell.
 *
 * Reads UTF-8 text on stdin and prints its ids separated by spaces (one line), or with
 * --decode reads ids (whitespace-separated) and prints the text. --json prints
 * {"ids": [...]} or {"text": "..."}. The tokenizer is a tokenizer.json given by
 * --tokenizer, or the one a converted model file carries (--model); there is no
 * default, so naming neither is a usage error that says so. */
#include "cli.h"
#include "err.h"
#include "model.h"
#include "tok.h"
#include "util.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void tokenize_usage(FILE *out)
{
    fprintf(out,
            "usage: vlq tokenize (--tokenizer FILE | --model FILE) [--decode] [--skip-special]\n"
            "                    [--json]\n\n"
            "Encode UTF-8 text from stdin to token ids (one line, space-separated), or\n"
            "with --decode read ids from stdin and print the text.\n\n"
            "  --tokenizer FILE  a Hugging Face tokenizer.json of Qwen2/Qwen3 form\n"
            "  --model FILE      the tokenizer carried by a converted model file (.vlq)\n"
            "                    (one of the two is required: there is no default)\n"
            "  --decode          ids -> text\n"
            "  --skip-special    with --decode: leave out special tokens\n"
            "  --json            print {\"ids\": [...]} or {\"text\": \"...\"}\n\n"
            "Invalid UTF-8 input is refused with the offset of the first bad byte.\n");
}

/* Read all of stdin into a new buffer (caller frees). */
static char *tokenize_read_stdin(size_t *len)
{
    Buf b = {0};
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0)
        buf_append(&b, chunk, n);
    *len = b.len;
    return buf_take(&b);
}

static int tokenize_encode(const Tok *t, const char *in, size_t len, int json)
{
    char err[VLQ_ERRLEN];
    TokIds ids = {0};
    if (tok_encode(t, in, len, &ids, err)) {
        cli_error("stdin: %s", err);
        return CLI_EXIT_FAIL;
    }
    fputs(json ? "{\"ids\": [" : "", stdout);
    for (size_t i = 0; i < ids.n; i++)
        printf("%s%d", i ? (json ? ", " : " ") : "", ids.ids[i]);
    fputs(json ? "]}\n" : "\n", stdout);
    tok_ids_clear(&ids);
    return CLI_EXIT_OK;
}

static int tokenize_decode(const Tok *t, char *in, int skip_special, int json)
{
    TokIds ids = {0};
    size_t cap = 0;
    for (char *tok = strtok(in, " \t\r\n,"); tok; tok = strtok(NULL, " \t\r\n,")) {
        int64_t v;
        if (util_parse_i64(tok, &v) || v < 0 || v > INT32_MAX) {
            cli_error("stdin: '%s' is not a token id", tok);
            free(ids.ids);
            return CLI_EXIT_FAIL;
        }
        if (ids.n == cap) {
            cap = cap ? cap * 2 : 256;
            ids.ids = xrealloc(ids.ids, cap * sizeof *ids.ids);
        }
        ids.ids[ids.n++] = (int32_t)v;
    }
    size_t len;
    char *text = tok_decode(t, ids.ids, ids.n, skip_special, &len);
    if (json) {
        json_t *o = json_pack("{s:s%}", "text", text, len);
        char *s = json_dumps(o, JSON_ENSURE_ASCII);
        puts(s);
        free(s);
        json_decref(o);
    } else {
        fwrite(text, 1, len, stdout);
    }
    free(text);
    free(ids.ids);
    return CLI_EXIT_OK;
}

/* The tokenizer from a tokenizer.json, or from a model file: only its tokenizer bytes are
 * needed, so the weights are neither checksummed nor paged in. */
static int tokenize_load(const char *path, const char *model_path, Tok **out, char *err)
{
    if (path)
        return tok_load_file(path, out, err);
    Model *m;
    int rc = model_open_ex(model_path, MODEL_OPEN_NO_VERIFY | MODEL_OPEN_NO_POPULATE, &m, err);
    if (rc == 0)
        rc = model_load_tok(m, out, err);
    model_close(m);
    return rc;
}

int cli_tokenize(int argc, char **argv, const CliCommon *common)
{
    static const struct option opts[] = {
        {"tokenizer", required_argument, NULL, 't'}, {"model", required_argument, NULL, 'm'},
        {"decode", no_argument, NULL, 'd'},
        {"skip-special", no_argument, NULL, 's'},    {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},            {NULL, 0, NULL, 0}};
    const char *path = NULL, *model_path = NULL;
    int decode = 0, skip = 0, json = common->json, c;
    optind = 1;
    while ((c = cli_getopt("tokenize", argc, argv, "h", opts)) != -1) {
        switch (c) {
        case 't': path = optarg; break;
        case 'm': model_path = optarg; break;
        case 'd': decode = 1; break;
        case 's': skip = 1; break;
        case 'j': json = 1; break;
        case 'h': tokenize_usage(stdout); return CLI_EXIT_OK;
        default: return CLI_EXIT_USAGE;
        }
    }
    if (optind < argc)
        return cli_usage("tokenize", "unexpected argument '%s'", argv[optind]);
    if (!path == !model_path)
        return cli_usage("tokenize", "give one of --tokenizer FILE or --model FILE (there is no "
                         "default)");
    char err[VLQ_ERRLEN];
    Tok *t = NULL;
    if (tokenize_load(path, model_path, &t, err)) {
        cli_error("%s", err);
        return CLI_EXIT_FAIL;
    }
    size_t len;
    char *in = tokenize_read_stdin(&len);
    int rc = decode ? tokenize_decode(t, in, skip, json) : tokenize_encode(t, in, len, json);
    free(in);
    tok_free(t);
    return rc;
}
