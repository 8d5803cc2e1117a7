/* cli_queue: `vlq queue copy --from DB --to DB [--force]`: move a whole queue between
 * databases (SQLite file to PostgreSQL when one host is no longer enough, and back).
 * The copy itself is queue_copy's (every table through the drivers, ids preserved, one
 * transaction on the target); this file parses, opens both ends, and reports. */
#include "cfg.h"
#include "cli.h"
#include "err.h"
#include "queue.h"
#include "util.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void cli_queue_usage(FILE *out)
{
    fprintf(out,
            "usage: vlq queue copy --from DB --to DB [--force]\n\n"
            "Copy a whole queue (jobs in every state with their inputs, attempts, results\n"
            "and per-page or per-segment results, webhook events with their delivery state\n"
            "and attempts, disabled endpoints) from one database to another, ids kept. DB\n"
            "is a SQLite file or a postgresql:// URL. The target is created or migrated as\n"
            "needed and written in one transaction: an interrupted copy leaves it as it was.\n"
            "Stop the workers first: jobs running during the copy are copied as running and\n"
            "taken over on the target when their lease expires.\n\n"
            "  --from DB   the queue to read (not changed)\n"
            "  --to DB     the queue to write; it must hold no jobs and no events\n"
            "  --force     delete what the target holds first\n");
}

/* Progress on stderr, one line per table (not with -q). */
static void cli_queue_progress(void *arg, const char *table, int64_t rows)
{
    const CliCommon *common = arg;
    if (common->verbosity >= 0 && !common->json)
        fprintf(stderr, "vlq: queue copy: %-18s %lld rows\n", table, (long long)rows);
}

static int cli_queue_copy(int argc, char **argv, const CliCommon *common)
{
    static const struct option opts[] = {{"from", required_argument, NULL, 'f'},
                                         {"to", required_argument, NULL, 't'},
                                         {"force", no_argument, NULL, 'F'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *from = NULL, *to = NULL;
    int force = 0, c;
    optind = 1;
    while ((c = cli_getopt("queue copy", argc, argv, "h", opts)) != -1) {
        switch (c) {
        case 'f': from = optarg; break;
        case 't': to = optarg; break;
        case 'F': force = 1; break;
        case 'h': cli_queue_usage(stdout); return CLI_EXIT_OK;
        default: return CLI_EXIT_USAGE;
        }
    }
    if (optind < argc)
        return cli_usage("queue copy", "unexpected argument '%s'", argv[optind]);
    if (!from || !*from || !to || !*to)
        return cli_usage("queue copy", "give both --from DB and --to DB (see `vlq queue copy "
                         "--help`)");
    if (!strcmp(from, to))
        return cli_usage("queue copy", "--from and --to are the same queue (%s)", from);
    char err[VLQ_ERRLEN];
    Cfg *cfg = NULL;
    if (cfg_load(common->config_path, &cfg, err)) {
        cli_error("%s", err);
        return CLI_EXIT_FAIL;
    }
    QueueOptions o = {.busy_timeout_ms = (int)cfg_int(cfg, "queue.busy_timeout_ms"),
                      .default_max_attempts = (int)cfg_int(cfg, "worker.max_attempts")};
    cfg_free(cfg);
    Queue *src = NULL, *dst = NULL;
    int rc = queue_open(from, &o, 0, &src, err);
    if (rc)
        err_prefix(err, "queue copy: --from");
    if (rc == 0 && (rc = queue_open(to, &o, 1, &dst, err)) != 0)
        err_prefix(err, "queue copy: --to");
    QueueCopyStats st = {0};
    double t0 = util_mono_s();
    if (rc == 0)
        rc = queue_copy(src, dst, force, cli_queue_progress, (void *)common, &st, err);
    queue_close(src);
    queue_close(dst);
    if (rc) {
        cli_error("%s", err);
        return CLI_EXIT_FAIL;
    }
    if (common->json) {
        json_t *j = json_pack("{s:I, s:I, s:I, s:f}", "jobs", (json_int_t)st.jobs, "events",
                              (json_int_t)st.events, "rows", (json_int_t)st.rows, "seconds",
                              util_mono_s() - t0);
        char *s = json_dumps(j, JSON_COMPACT);
        printf("%s\n", s);
        free(s);
        json_decref(j);
    } else if (common->verbosity >= 0) {
        printf("copied %lld jobs and %lld webhook events (%lld rows) in %.1f s\n",
               (long long)st.jobs, (long long)st.events, (long long)st.rows,
               util_mono_s() - t0);
    }
    return CLI_EXIT_OK; /* stdout is flushed and checked once for every command (cli_main) */
}

int cli_queue(int argc, char **argv, const CliCommon *common)
{
    if (argc < 2)
        return cli_usage("queue", "a command is required: copy (see `vlq queue --help`)");
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        cli_queue_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (!strcmp(argv[1], "copy"))
        return cli_queue_copy(argc - 1, argv + 1, common);
    return cli_usage("queue", "unknown command '%s' (copy)", argv[1]);
}
