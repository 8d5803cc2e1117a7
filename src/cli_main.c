/* cli_main: the command table, global options and exit statuses.
 *
 * Each command lives in a cli_*.c (or its module) and is listed once in
 * main_commands[] below; `vlq --help` prints the table. main.c and the test binary
 * with extra job kinds (tests/vlq_testkinds.c) both call cli_main. */
#include "cli.h"
#include "log.h"
#include "version.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


typedef struct {
    const char *name;
    CliCommandFn fn;
    const char *summary;
} MainCommand;

int cli_convert(int argc, char **argv, const CliCommon *common);
int cli_export(int argc, char **argv, const CliCommon *common);

static const MainCommand main_commands[] = {
    {"init", cli_init, "create the queue database"},
    {"submit", cli_submit, "queue OCR or summary jobs for files"},
    {"worker", cli_worker, "run queued jobs (--drain for cron) and deliver webhooks"},
    {"list", cli_list, "list jobs"},
    {"show", cli_show, "one job: inputs, attempts, events"},
    {"result", cli_result, "print or save a job's result"},
    {"cancel", cli_cancel, "cancel a queued or running job"},
    {"retry", cli_retry, "queue a dead, failed or cancelled job again"},
    {"purge", cli_purge, "delete old finished jobs"},
    {"config", cli_config, "the effective configuration and where each value came from"},
    {"tokenize", cli_tokenize, "text to token ids and back (tokenizer.json)"},
    {"convert", cli_convert, "convert a Hugging Face Qwen3-VL checkpoint into a .vlq model"},
    {"run", cli_run, "generate a reply to a prompt with images or a video (one-off)"},
    {"export", cli_export, "write a .vlq model's weights back as safetensors (dequantised)"},
    {"plan", cli_plan, "how files are cut into model inputs under a token budget"},
    {"webhooks", cli_webhooks, "webhook events: list, send what is due, redeliver"},
    {"doctor", cli_doctor, "CPU, backends, model residency and the memory plan: what fits"},
    {"queue", cli_queue, "vlq queue copy: move a whole queue to another database"},
    {"selftest", cli_selftest, "every backend op and a model's forward against the cpu backend"},
    {NULL, NULL, NULL},
};

static void main_usage(FILE *out)
{
    fprintf(out, "usage: vlq [--db PATH] [--config PATH] [--json] [-q|-v] COMMAND [ARGS]\n\n"
                 "Batch OCR and video summaries with Qwen3-VL.\n\ncommands:\n");
    for (const MainCommand *c = main_commands; c->name; c++)
        fprintf(out, "  %-12s %s\n", c->name, c->summary);
    fprintf(out, "\nglobal options:\n"
                 "  --db PATH      queue database (else $VLQ_DB, else config [queue] db, "
                 "else ./vlq.db)\n"
                 "  --config PATH  config file (else $VLQ_CONFIG, else ./vlq.conf, else "
                 "/etc/vlq/vlq.conf)\n"
                 "  --json         machine-readable output where a command prints data\n"
                 "  -q, -v         quieter, more verbose logs (stderr)\n"
                 "  --version      print the version\n"
                 "  -h, --help     this help; `vlq COMMAND --help` for a command\n"
                 "\nexit status:\n"
                 "  0  success\n"
                 "  1  failure (bad input, I/O or database error, a worker error)\n"
                 "  2  usage error\n"
                 "  3  worker --drain: some jobs it ran failed (they stay recorded)\n");
}

/* Take the global options out of argv wherever they stand (before "--"). Returns the
 * new argc, or -1 on a usage error. */
static int main_strip_globals(int argc, char **argv, CliCommon *common)
{
    int out = 1;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (!strcmp(a, "--")) {
            while (i < argc)
                argv[out++] = argv[i++];
            break;
        }
        const char **slot = !strncmp(a, "--db", 4) && (a[4] == '\0' || a[4] == '=')
                                ? &common->db_path
                            : !strncmp(a, "--config", 8) && (a[8] == '\0' || a[8] == '=')
                                ? &common->config_path
                                : NULL;
        if (slot) {
            char *eq = strchr(a, '=');
            if (eq) {
                *slot = eq + 1;
            } else if (i + 1 < argc) {
                *slot = argv[++i];
            } else {
                cli_error("%s needs a value", a);
                return -1;
            }
        } else if (!strcmp(a, "--json")) {
            common->json = 1;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            common->verbosity--;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            common->verbosity++;
        } else {
            argv[out++] = a;
        }
    }
    argv[out] = NULL;
    return out;
}

static int main_dispatch(int argc, char **argv);

/* The whole program; whatever the command printed is flushed and checked here, once for
 * every command (cli_finish_stdout). */
int cli_main(int argc, char **argv)
{
    int status = main_dispatch(argc, argv);
    /* argv[1] is the command once main_dispatch has taken the global options out */
    return cli_finish_stdout(argc > 1 && argv[1] ? argv[1] : "vlq", status);
}

static int main_dispatch(int argc, char **argv)
{
    CliCommon common = {0};
    argc = main_strip_globals(argc, argv, &common);
    if (argc < 0)
        return CLI_EXIT_USAGE;
    int level = LOG_INFO + common.verbosity;
    log_setup(level < LOG_ERROR ? LOG_ERROR : level > LOG_DEBUG ? LOG_DEBUG : level, 0);
    if (argc < 2) {
        main_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        main_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("vlq %s\n", VLQ_VERSION);
        return CLI_EXIT_OK;
    }
    for (const MainCommand *c = main_commands; c->name; c++)
        if (!strcmp(c->name, cmd))
            return c->fn(argc - 1, argv + 1, &common);
    cli_error("unknown command '%s'; `vlq --help` lists the commands", cmd);
    return CLI_EXIT_USAGE;
}
