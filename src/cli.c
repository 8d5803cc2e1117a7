/* cli: shared helpers of the commands (see cli.h): how an error, a usage error, a bad
 * option, a numeric flag, a user string and a failed stdout look and exit, written once
 * so every command says them alike. */
#include "cli.h"

#include "cfg.h"
#include "err.h"
#include "queue.h"
#include "redact.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Format, redact and escape one message line; print "vlq: " + prefix + it. */
static void cli_verror(const char *prefix, const char *fmt, va_list ap)
{
    char msg[4096];
    vsnprintf(msg, sizeof msg, fmt, ap);
    redact_in_place(msg, sizeof msg);
    char *safe = util_escape(msg);
    fprintf(stderr, "vlq: %s%s\n", prefix, safe);
    free(safe);
}

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cli_verror("", fmt, ap);
    va_end(ap);
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s: ", cmd);
    va_list ap;
    va_start(ap, fmt);
    cli_verror(prefix, fmt, ap);
    va_end(ap);
    return CLI_EXIT_USAGE;
}

int cli_getopt(const char *cmd, int argc, char **argv, const char *shortopts,
               const struct option *longopts)
{
    char spec[64];
    snprintf(spec, sizeof spec, ":%s", shortopts); /* ':' first: a missing value is ':' */
    opterr = 0;
    optopt = 0;
    int c = getopt_long(argc, argv, spec, longopts, NULL);
    if (c != '?' && c != ':')
        return c;
    const char *arg = optind > 0 && optind <= argc ? argv[optind - 1] : "";
    char shortname[3] = {'-', (char)optopt, '\0'};
    /* a long option is named as written (without "=value"); a short one by its letter */
    const char *name = !strncmp(arg, "--", 2) || !optopt ? arg : shortname;
    int len = (int)strcspn(name, "=");
    if (c == ':')
        cli_usage(cmd, "option '%.*s' needs a value", len, name);
    else if (optopt && !strncmp(arg, "--", 2))
        cli_usage(cmd, "option '%.*s' takes no value", len, name);
    else {
        /* getopt_long takes unique prefixes: name the options a prefix could mean */
        int n_match = 0;
        char matches[256] = "";
        for (const struct option *o = longopts; !strncmp(name, "--", 2) && o->name; o++)
            if (len > 2 && !strncmp(o->name, name + 2, (size_t)len - 2)) {
                size_t used = strlen(matches);
                snprintf(matches + used, sizeof matches - used, "%s--%s", n_match ? ", " : "",
                         o->name);
                n_match++;
            }
        if (n_match > 1)
            cli_usage(cmd, "ambiguous option '%.*s' (%s)", len, name, matches);
        else
            cli_usage(cmd, "unknown option '%.*s' (see `vlq %s --help`)", len, name, cmd);
    }
    return '?';
}

int cli_num_i64(const char *cmd, const char *flag, const NumRange *r, const char *text,
                int64_t *out)
{
    char err[VLQ_ERRLEN];
    if (num_parse_i64(text, r, out, err) == 0)
        return 0;
    cli_usage(cmd, "%s: %s", flag, err);
    return -1;
}

int cli_num_double(const char *cmd, const char *flag, const NumRange *r, const char *text,
                   double *out)
{
    char err[VLQ_ERRLEN];
    if (num_parse_double(text, r, out, err) == 0)
        return 0;
    cli_usage(cmd, "%s: %s", flag, err);
    return -1;
}

const char *cli_str(CliStrs *pool, const char *s)
{
    if (!s || !*s)
        return "";
    if (pool->n == (int)(sizeof pool->s / sizeof pool->s[0]))
        cli_strs_clear(pool); /* a line never holds this many: reuse rather than grow */
    char *r = redact_text(s);
    pool->s[pool->n] = util_escape(r);
    free(r);
    return pool->s[pool->n++];
}

void cli_strs_clear(CliStrs *pool)
{
    for (int i = 0; i < pool->n; i++)
        free(pool->s[i]);
    pool->n = 0;
}

json_t *cli_json_str(const char *s, int redact)
{
    if (!s)
        return json_null();
    char *r = redact ? redact_text(s) : xstrdup(s);
    json_t *v = json_string(r);
    if (!v) {
        char *e = util_escape(r);
        v = json_string(e);
        free(e);
    }
    free(r);
    return v ? v : json_null();
}

int cli_finish_stdout(const char *cmd, int status)
{
    errno = 0;
    int flushed = fflush(stdout) == 0;
    int e = errno;
    if (flushed && !ferror(stdout))
        return status;
    cli_error("%s: stdout: %s", cmd, e ? strerror(e) : "write error");
    return status == CLI_EXIT_OK ? CLI_EXIT_FAIL : status;
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
                      .default_max_attempts = (int)cfg_int(cfg, "worker.max_attempts"),
                      .file_mode = cfg_str(cfg, "queue.file_mode")};
    Queue *q = NULL;
    if (queue_open(db, &o, create, &q, err)) /* the driver says when nothing is there */
        cli_error("%s", err);
    if (q && cfg_out)
        *cfg_out = cfg;
    else
        cfg_free(cfg);
    return q;
}
