/* cli_config: `vlq config`, the effective configuration with the source of each value. */
#include "cfg.h"
#include "cli.h"
#include "err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void config_usage(FILE *out)
{
    fprintf(out, "usage: vlq config [--json]\n\n"
                 "Print every configuration key with its effective value and where it came\n"
                 "from: default, FILE:LINE, env VLQ_DB, flag --db. The file is --config PATH,\n"
                 "else $VLQ_CONFIG, else ./vlq.conf, else /etc/vlq/vlq.conf, else none.\n\n"
                 "  --json   {\"file\": ..., \"keys\": [{\"key\", \"type\", \"value\", \"source\", "
                 "\"doc\", \"range\"}]}\n"
                 "           (unset values are null; secrets are shown redacted)\n");
}

int cli_config(int argc, char **argv, const CliCommon *common)
{
    if (cli_wants_help(argc, argv)) {
        config_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (argc > 1) {
        return cli_usage("config", "unexpected argument '%s' (see `vlq config --help`)", argv[1]);
    }
    char err[VLQ_ERRLEN];
    Cfg *cfg;
    if (cfg_load(common->config_path, &cfg, err)) {
        cli_error("%s", err);
        return CLI_EXIT_FAIL;
    }
    const char *env = getenv("VLQ_DB");
    const char *db = cfg_db_path(cfg, common->db_path);
    if (common->db_path || (env && *env))
        cfg_set(cfg, "queue.db", db, common->db_path ? "flag --db" : "env VLQ_DB", NULL);
    cfg_print(cfg, stdout, common->json);
    cfg_free(cfg);
    return CLI_EXIT_OK;
}
