/* cli_config: `vlq config [--json]`: every key's effective value and its source. */
#include "cfg.h"
#include "cli.h"
#include "err.h"

#include <getopt.h>
#include <stdio.h>

static void config_usage(FILE *out)
{
    fprintf(out, "usage: vlq config [--json]\n\n"
                 "Print every configuration key with its effective value and where it came\n"
                 "from (default, file:line, env, flag). The file is --config, else\n"
                 "$VLQ_CONFIG, else ./vlq.conf, else /etc/vlq/vlq.conf.\n\n"
                 "  --json      {\"file\": ..., \"keys\": [{\"key\", \"value\", \"source\"}...]}\n"
                 "  -h, --help  this help\n");
}

int cli_config(int argc, char **argv, const CliCommon *common)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {0, 0, 0, 0}};
    int json = common->json;
    optind = 1;
    for (int o; (o = getopt_long(argc, argv, "h", opts, NULL)) != -1;) {
        if (o == 'j') {
            json = 1;
        } else if (o == 'h') {
            config_usage(stdout);
            return CLI_EXIT_OK;
        } else {
            config_usage(stderr);
            return CLI_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        cli_error("config: unexpected argument '%s'", argv[optind]);
        return CLI_EXIT_USAGE;
    }
    char err[VLQ_ERRLEN];
    Cfg *cfg;
    if (cfg_load(common->config_path, &cfg, err)) {
        cli_error("%s", err);
        return CLI_EXIT_FAIL;
    }
    cfg_db_path(cfg, common->db_path);
    cfg_print(cfg, stdout, json);
    cfg_free(cfg);
    return CLI_EXIT_OK;
}
