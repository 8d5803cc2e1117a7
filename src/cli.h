/* cli: what every command shares: the global options and the command signature.
 *
 * main.c strips the global options (--db, --config, --json, -q, -v) from anywhere in
 * argv before the command sees it, so `vlq --db x list` and `vlq list --db x` agree.
 * A command gets argv starting at its own name, parses the rest with getopt_long,
 * prints its own --help, writes data to stdout and errors to stderr, and returns the
 * process exit status (CLI_EXIT_*); only main.c calls exit(). */
#ifndef VLQ_CLI_H
#define VLQ_CLI_H

#include "num.h"

#include <stdint.h>

enum {
    CLI_EXIT_OK = 0,     /* success */
    CLI_EXIT_FAIL = 1,   /* the command failed (bad input, I/O, database) */
    CLI_EXIT_USAGE = 2,  /* bad arguments */
    CLI_EXIT_JOBS = 3,   /* worker --drain: some jobs it ran failed (they stay recorded) */
};

typedef struct {
    const char *db_path;     /* --db, or NULL */
    const char *config_path; /* --config, or NULL */
    int json;                /* --json: machine-readable output */
    int verbosity;           /* 0 normal, <0 quieter (-q), >0 more verbose (-v) */
} CliCommon;

/* A command: argv[0] is the command's name. Returns the exit status. */
typedef int (*CliCommandFn)(int argc, char **argv, const CliCommon *common);

typedef struct Cfg Cfg;
typedef struct Queue Queue;

/* Load the configuration and open the queue at cfg_db_path (--db, $VLQ_DB, [queue] db)
 * with the [queue]/[worker] options, creating the database file when create. On success
 * returns the queue and, if cfg is not NULL, the config in *cfg (the caller frees both);
 * on failure prints the error and returns NULL. A missing database without create is an
 * error that says how to make one. */
Queue *cli_open_queue(const CliCommon *common, int create, Cfg **cfg);

/* The whole program: global options, command dispatch; returns the exit status. */
int cli_main(int argc, char **argv);

/* Print "vlq: <message>" to stderr for the user (the one formatting of CLI errors), with
 * secrets redacted (redact.h) and control characters escaped: an error may quote a URL
 * or a file name. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A usage error: print "vlq: CMD: <message>" and return CLI_EXIT_USAGE, so every command
 * words and exits them alike (`return cli_usage("list", "--limit ...")`). */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

struct option;
/* getopt_long for a command: the same contract, but an unknown option or a missing value
 * is reported as "vlq: CMD: unknown option '--x'" / "vlq: CMD: option '--x' needs a
 * value" and returned as '?', so the caller only returns CLI_EXIT_USAGE. */
int cli_getopt(const char *cmd, int argc, char **argv, const char *shortopts,
               const struct option *longopts);

/* A numeric flag: text parsed within r (num.h). Returns 0 and *out, or prints "vlq: CMD:
 * FLAG: '<text>' is out of range (0, 1]" (or the other reasons) and returns -1; the
 * caller returns CLI_EXIT_USAGE. For a flag that sets a config key, r is
 * cfg_key_range(key), so the flag and the key accept the same values. */
int cli_num_i64(const char *cmd, const char *flag, const NumRange *r, const char *text,
                int64_t *out);
int cli_num_double(const char *cmd, const char *flag, const NumRange *r, const char *text,
                   double *out);

/* A user string made safe for a text line (secrets redacted, control characters escaped),
 * kept in the pool until cli_strs_clear; NULL gives "". For printf arguments. */
typedef struct {
    char *s[16]; /* the strings handed out */
    int n;       /* how many */
} CliStrs;
const char *cli_str(CliStrs *pool, const char *s);
void cli_strs_clear(CliStrs *pool);

struct json_t;
/* A stored or given string as a JSON value: null when NULL, the bytes as \xHH where they
 * are not UTF-8 (jansson refuses those, and the value would silently go missing), secrets
 * redacted when redact. A new reference. */
struct json_t *cli_json_str(const char *s, int redact);

/* Flush stdout at the end of command cmd: a write that failed (a full disk, a closed
 * pipe with SIGPIPE ignored) is an error, "vlq: CMD: stdout: <reason>", and turns a
 * success into CLI_EXIT_FAIL. Returns the exit status to use. */
int cli_finish_stdout(const char *cmd, int status);

/* True if argv (after argv[0]) contains -h or --help before any "--". */
int cli_wants_help(int argc, char **argv);

/* vlq tokenize (src/cli_tokenize.c). */
int cli_tokenize(int argc, char **argv, const CliCommon *common);
/* vlq init, submit, list, show, result, cancel, retry, purge (src/cli_jobs.c). */
int cli_init(int argc, char **argv, const CliCommon *common);
int cli_submit(int argc, char **argv, const CliCommon *common);
int cli_list(int argc, char **argv, const CliCommon *common);
int cli_show(int argc, char **argv, const CliCommon *common);
int cli_result(int argc, char **argv, const CliCommon *common);
int cli_cancel(int argc, char **argv, const CliCommon *common);
int cli_retry(int argc, char **argv, const CliCommon *common);
int cli_purge(int argc, char **argv, const CliCommon *common);
/* vlq worker (src/cli_worker.c). */
int cli_worker(int argc, char **argv, const CliCommon *common);
/* vlq config (src/cli_config.c). */
int cli_config(int argc, char **argv, const CliCommon *common);
/* vlq plan (src/cli_plan.c). */
int cli_plan(int argc, char **argv, const CliCommon *common);

/* vlq run (src/cli_run.c). */
int cli_run(int argc, char **argv, const CliCommon *common);

/* vlq webhooks list|send|redeliver (src/cli_webhooks.c). */
int cli_webhooks(int argc, char **argv, const CliCommon *common);

/* vlq doctor (src/cli_doctor.c). */
int cli_doctor(int argc, char **argv, const CliCommon *common);
/* vlq queue copy (src/cli_queue.c). */
int cli_queue(int argc, char **argv, const CliCommon *common);
/* vlq selftest (src/cli_selftest.c). */
int cli_selftest(int argc, char **argv, const CliCommon *common);

#endif
