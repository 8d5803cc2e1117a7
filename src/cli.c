/* cli: shared helpers of the commands (see cli.h). */
#include "cli.h"

#include "cfg.h"
#include "err.h"
#include "queue.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("vlq: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--"))
            return 0;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return 1;
    }
    return 0;
}

Queue *cli_open_queue(const CliCommon *common, int create, Cfg **cfg_out)
{
    char err[VLQ_ERRLEN];
    Cfg *cfg = NULL;
    if (cfg_out)
        *cfg_out = NULL;
    if (cfg_load(common->config_path, &cfg, err)) {
        cli_error("%s", err);
        return NULL;
    }
    const char *db = cfg_db_path(cfg, common->db_path);
    QueueOptions o = {.busy_timeout_ms = (int)cfg_int(cfg, "queue.busy_timeout_ms"),
                      .default_max_attempts = (int)cfg_int(cfg, "worker.max_attempts")};
    Queue *q = NULL;
    if (queue_open(db, &o, create, &q, err)) /* the driver says when nothing is there */
        cli_error("%s", err);
    if (q && cfg_out)
        *cfg_out = cfg;
    else
        cfg_free(cfg);
    return q;
}
