/* cli_jobs: `vlq init`, `vlq submit`, `vlq list`, `vlq show`, `vlq result`, `vlq cancel`,
 * `vlq retry`, `vlq purge`: the queue from the shell.
 *
 * Every command loads the config, opens the queue at cfg_db_path, does one thing and
 * prints data on stdout (text, or JSON with --json), errors on stderr. Submit checks
 * every input before it enqueues anything, so a bad path leaves the queue untouched. */
#define _GNU_SOURCE /* strptime, timegm */
#include "cfg.h"
#include "cli.h"
#include "err.h"
#include "fetch.h"
#include "jobs.h"
#include "num.h"
#include "queue.h"
#include "result.h"
#include "util.h"
#include "webhook.h"
#include "whsec.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- shared ---- */

/* A job id argument: a positive integer; else the usage error is printed, -1. */
static int jobs_parse_id(const char *cmd, const char *s, int64_t *id)
{
    static const NumRange ids = NUM_INT(1, 9.2e18);
    if (num_parse_i64(s, &ids, id, NULL) == 0)
        return 0;
    cli_usage(cmd, "'%s' is not a job id (a positive integer; `vlq list` shows them)", s ? s : "");
    return -1;
}

static void jobs_time(char *buf, size_t n, int64_t ms)
{
    if (!ms) {
        snprintf(buf, n, "-");
        return;
    }
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* A time for JSON: the ISO string, or null when unset (as every command's JSON). */
static json_t *jobs_time_json(int64_t ms)
{
    char t[40];
    jobs_time(t, sizeof t, ms);
    return ms ? json_string(t) : json_null();
}

/* A stored string as JSON: secrets redacted (a URL's password), null when unset. */
static json_t *jobs_str_json(const char *s) { return cli_json_str(s, 1); }

static json_t *jobs_json(const Job *j)
{
    json_t *inputs = json_array();
    for (int i = 0; i < j->n_inputs; i++)
        json_array_append_new(inputs, json_pack("{s:o, s:I, s:s}", "path",
                                                jobs_str_json(j->inputs[i].path), "size",
                                                (json_int_t)j->inputs[i].size_bytes, "sha256",
                                                j->inputs[i].sha256));
    return json_pack("{s:I, s:o, s:s, s:i, s:i, s:i, s:o, s:o, s:o, s:o, s:s?, s:o, s:o, s:o}",
                     "id", (json_int_t)j->id, "kind", jobs_str_json(j->kind), "status",
                     queue_state_name(j->state), "priority", j->priority, "attempts",
                     j->attempts, "max_attempts", j->max_attempts, "created_at",
                     jobs_time_json(j->created_ms), "started_at", jobs_time_json(j->started_ms),
                     "finished_at", jobs_time_json(j->finished_ms), "run_after",
                     jobs_time_json(j->run_after_ms), "error_code", j->error_code, "error",
                     jobs_str_json(j->error), "webhook", jobs_str_json(j->webhook_url),
                     "inputs", inputs);
}

static void jobs_print_json(json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    puts(s);
    free(s);
    json_decref(v);
}

/* ---- vlq init ---- */

int cli_init(int argc, char **argv, const CliCommon *common)
{
    if (cli_wants_help(argc, argv)) {
        printf("usage: vlq init\n\nCreate the queue database (or bring an older one up to "
               "this vlq's schema).\nThe path is --db, else $VLQ_DB, else [queue] db.\n");
        return CLI_EXIT_OK;
    }
    if (argc > 1)
        return cli_usage("init", "unexpected argument '%s'", argv[1]);
    Cfg *cfg = NULL;
    Queue *q = cli_open_queue(common, 1, &cfg);
    if (!q)
        return CLI_EXIT_FAIL;
    if (common->verbosity >= 0)
        cli_error("queue ready at %s", cfg_db_path(cfg, common->db_path)); /* redacted */
    queue_close(q);
    cfg_free(cfg);
    return CLI_EXIT_OK;
}

/* ---- vlq submit ---- */

/* --priority: higher runs first; a range wide enough for any scheme, stated when refused */
#define SUBMIT_PRIORITY_MIN -1000000
#define SUBMIT_PRIORITY_MAX 1000000

static void submit_usage(FILE *out)
{
    fprintf(out,
            "usage: vlq submit KIND FILE|URL... [options]\n\n"
            "Queue one job per FILE (KIND is ocr or summarize) and print one job id per line.\n"
            "Every input is checked first (exists, regular file, readable); a bad one is an\n"
            "error naming it and nothing is queued. The absolute path, size, mtime and SHA-256\n"
            "of each input are recorded, so a file changed before its run is reported.\n"
            "A FILE may also be an http:// or https:// URL on a host in [inputs]\n"
            "allowed_hosts: the worker downloads it when the job runs.\n\n"
            "  --webhook URL        POST a signed event when the job ends (http or https)\n"
            "  --secret whsec_...   this job's signing secret (else [webhooks] secret)\n"
            "  --priority N         higher runs first (default 0; -1000000 to 1000000)\n"
            "  --key KEY            idempotency key: a second submit with the same key\n"
            "                       returns the first job's id and queues nothing\n"
            "                       (with several files, KEY:N names the N-th, from 1)\n"
            "  --run-after TIME     not before TIME: ISO-8601 UTC (2026-11-25T03:00:00Z) or\n"
            "                       +N[s|m|h|d] from now\n"
            "  --max-attempts N     runs before the job is dead (default [worker] "
            "max_attempts)\n"
            "  --prompt TEXT        replace the kind's default prompt (stored with the job)\n"
            "  --prompt-file FILE   the same, read from FILE (UTF-8)\n"
            "  --temperature T, --top-p P, --top-k K, --repetition-penalty R, --seed N\n"
            "                       summarize: this job's sampling (else [summarize] keys)\n"
            "  --recursive          a directory stands for every file below it\n"
            "  --json               print [{\"id\": N, \"file\": PATH, \"existed\": BOOL}]\n");
}

/* --run-after: an offset of at most ten years, a date between 1970 and 9999 */
#define SUBMIT_RUN_AFTER_MAX_S (10LL * 366 * 86400)

/* Parse --run-after into *ms (since the epoch): "+N[s|m|h|d]" from now, or an ISO-8601
 * UTC time of a day that exists (timegm would take 2026-02-30 for March 2). Returns 0,
 * or prints the usage error and returns -1. */
static int submit_parse_time(const char *s, int64_t *ms)
{
    static const char *const use = "use 2026-11-25T03:00:00Z or +30m";
    if (s[0] == '+') {
        size_t n = strlen(s + 1);
        char num[64];
        char last = n ? s[n] : '\0';
        double unit = last == 'm' ? 60 : last == 'h' ? 3600 : last == 'd' ? 86400 : 1;
        int has_unit = last == 's' || last == 'm' || last == 'h' || last == 'd';
        if (n == 0 || n >= sizeof num || (has_unit && n == 1)) {
            cli_usage("submit", "--run-after '%s': %s", s, use);
            return -1;
        }
        snprintf(num, sizeof num, "%.*s", (int)(n - has_unit), s + 1);
        double v;
        char err[VLQ_ERRLEN];
        const NumRange r = NUM_REAL(0, SUBMIT_RUN_AFTER_MAX_S / unit);
        if (num_parse_double(num, &r, &v, err)) {
            cli_usage("submit", "--run-after '%s': the offset %s (%s; at most 10 years)", s,
                      err, use);
            return -1;
        }
        *ms = util_now_ms() + (int64_t)(v * unit * 1000);
        return 0;
    }
    struct tm tm = {0};
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end)
        end = strptime(s, "%Y-%m-%d %H:%M:%S", &tm);
    if (!end || (*end && strcmp(end, "Z"))) {
        cli_usage("submit", "--run-after '%s': %s", s, use);
        return -1;
    }
    struct tm want = tm;
    time_t t = timegm(&tm);
    struct tm got;
    if (want.tm_year < 70 || want.tm_year > 9999 - 1900 || t == (time_t)-1 ||
        !gmtime_r(&t, &got) || got.tm_year != want.tm_year || got.tm_mon != want.tm_mon ||
        got.tm_mday != want.tm_mday || got.tm_hour != want.tm_hour ||
        got.tm_min != want.tm_min || got.tm_sec != want.tm_sec) {
        cli_usage("submit", "--run-after '%s': no such time (a date from 1970 to 9999, "
                  "hours 00-23, minutes and seconds 00-59)", s);
        return -1;
    }
    *ms = (int64_t)t * 1000;
    return 0;
}

typedef struct {
    JobInput *v;
    int n, cap;
} InputList;

/* The directories being walked by --recursive, innermost first: a symlink back to one
 * of them is a loop. */
typedef struct SubmitDir {
    dev_t dev;
    ino_t ino;
    const char *path;
    const struct SubmitDir *up;
} SubmitDir;

static int submit_add_file(InputList *l, const char *path, int recursive, const SubmitDir *up,
                           char *err);

static int submit_cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int submit_add_dir(InputList *l, const char *path, const SubmitDir *up, char *err)
{
    DIR *d = opendir(path);
    if (!d)
        return err_set(err, VLQ_EINPUT, "%s: %s", path, strerror(errno));
    char **names = NULL;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        names = xrealloc(names, (size_t)(n + 1) * sizeof *names);
        names[n++] = xasprintf("%s/%s", path, e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, submit_cmp_names); /* jobs in name order */
    int rc = 0;
    for (int i = 0; i < n; i++) {
        if (rc == 0)
            rc = submit_add_file(l, names[i], 1, up, err);
        free(names[i]);
    }
    free(names);
    return rc;
}

static int submit_add_file(InputList *l, const char *path, int recursive, const SubmitDir *up,
                           char *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return err_set(err, VLQ_EINPUT, "%s: %s", path,
                       errno == ELOOP ? "symlink loop (too many levels of symbolic links)"
                                      : strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        if (!recursive)
            return err_set(err, VLQ_EINPUT, "%s: is a directory (use --recursive)", path);
        for (const SubmitDir *d = up; d; d = d->up)
            if (d->dev == st.st_dev && d->ino == st.st_ino)
                return err_set(err, VLQ_EINPUT, "%s: symlink loop under --recursive (it is %s "
                               "again)", path, d->path);
        SubmitDir here = {.dev = st.st_dev, .ino = st.st_ino, .path = path, .up = up};
        return submit_add_dir(l, path, &here, err);
    }
    /* size, mtime and SHA-256 all of the one file opened (never blocks on a FIFO) */
    int fd;
    int rc = util_open_regular(path, 0, &fd, &st, err);
    if (rc)
        return rc;
    JobInput in = {.size_bytes = st.st_size, .mtime_s = st.st_mtime};
    rc = util_sha256_fd(fd, path, in.sha256, err);
    close(fd);
    if (rc)
        return rc;
    if (!(in.path = util_abspath(path, err)))
        return VLQ_EINPUT;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 8;
        l->v = xrealloc(l->v, (size_t)l->cap * sizeof *l->v);
    }
    l->v[l->n++] = in;
    return 0;
}

/* An http(s) input: checked against [inputs] allowed_hosts (the submitter's config; the
 * worker checks its own again) and recorded as it is, nothing downloaded. Size and
 * SHA-256 stay empty until the first download records them (queue_input_fetched). */
static int submit_add_url(InputList *l, const char *url, const CliCommon *common, char *err)
{
    Cfg *cfg = NULL;
    int rc = cfg_load(common->config_path, &cfg, err);
    FetchOptions fo;
    if (rc == 0) {
        fetch_options_from_cfg(cfg, &fo);
        rc = fetch_check_url(&fo, url, err);
    }
    cfg_free(cfg);
    if (rc)
        return rc;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 8;
        l->v = xrealloc(l->v, (size_t)l->cap * sizeof *l->v);
    }
    l->v[l->n++] = (JobInput){.path = xstrdup(url)};
    return 0;
}

int cli_submit(int argc, char **argv, const CliCommon *common)
{
    static const struct option opts[] = {
        {"webhook", required_argument, NULL, 'w'},  {"secret", required_argument, NULL, 's'},
        {"priority", required_argument, NULL, 'p'}, {"key", required_argument, NULL, 'k'},
        {"run-after", required_argument, NULL, 'r'}, {"max-attempts", required_argument, NULL, 'm'},
        {"prompt", required_argument, NULL, 'P'},   {"recursive", no_argument, NULL, 'R'},
        {"prompt-file", required_argument, NULL, 'F'},
        {"temperature", required_argument, NULL, 1},  {"top-p", required_argument, NULL, 2},
        {"top-k", required_argument, NULL, 3},        {"repetition-penalty", required_argument, NULL, 4},
        {"seed", required_argument, NULL, 5},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0}};
    JobSpec spec = {0};
    int recursive = 0, c;
    int64_t v = 0;
    double d;
    const char *prompt_file = NULL;
    json_t *params = json_object();
    /* the sampling flags stand for the [summarize] keys and take their ranges */
    static const char *const sampling_keys[] = {NULL, "temperature", "top_p", "top_k",
                                                "repetition_penalty", "seed"};
    static const char *const sampling_cfg[] = {NULL, "summarize.temperature", "summarize.top_p",
                                               "summarize.top_k", "summarize.repetition_penalty",
                                               "sampling.seed"};
    static const NumRange priority_range = NUM_INT(SUBMIT_PRIORITY_MIN, SUBMIT_PRIORITY_MAX);
    optind = 1;
    while ((c = cli_getopt("submit", argc, argv, "hR", opts)) != -1) {
        if (c >= 1 && c <= 5) {
            char flag[32];
            snprintf(flag, sizeof flag, "--%s", opts[c + 8].name);
            int is_int = c == 3 || c == 5;
            if (is_int ? cli_num_i64("submit", flag, cfg_key_range(sampling_cfg[c]), optarg, &v)
                       : cli_num_double("submit", flag, cfg_key_range(sampling_cfg[c]), optarg,
                                        &d)) {
                json_decref(params);
                return CLI_EXIT_USAGE;
            }
            json_object_set_new(params, sampling_keys[c],
                                is_int ? json_integer((json_int_t)v) : json_real(d));
            continue;
        }
        int bad = 0;
        switch (c) {
        case 'F': prompt_file = optarg; break;
        case 'w': spec.webhook_url = optarg; break;
        case 's': spec.webhook_secret = optarg; break;
        case 'k': spec.idem_key = optarg; break;
        case 'P': spec.prompt = optarg; break;
        case 'R': recursive = 1; break;
        case 'p':
            bad = cli_num_i64("submit", "--priority", &priority_range, optarg, &v);
            spec.priority = (int)v;
            break;
        case 'm':
            bad = cli_num_i64("submit", "--max-attempts", cfg_key_range("worker.max_attempts"),
                              optarg, &v);
            spec.max_attempts = (int)v;
            break;
        case 'r':
            bad = submit_parse_time(optarg, &spec.run_after_ms);
            break;
        case 'h': submit_usage(stdout); json_decref(params); return CLI_EXIT_OK;
        default: bad = 1; break;
        }
        if (bad) {
            json_decref(params);
            return CLI_EXIT_USAGE;
        }
    }
    if (argc - optind < 2) {
        json_decref(params);
        return cli_usage("submit", "need a kind and at least one file (see `vlq submit --help`)");
    }
    if (!argv[optind][0]) {
        json_decref(params);
        return cli_usage("submit", "the job kind is empty");
    }
    if ((spec.idem_key && !spec.idem_key[0]) || (spec.prompt && !spec.prompt[0])) {
        json_decref(params);
        return cli_usage("submit", "%s is empty", spec.prompt && !spec.prompt[0] ? "--prompt"
                                                                                 : "--key");
    }
    spec.kind = argv[optind++];
    char err[VLQ_ERRLEN];
    if (jobs_check_kind(spec.kind, err)) { /* no worker could ever run it */
        cli_error("submit: %s", err);
        json_decref(params);
        return CLI_EXIT_USAGE;
    }
    char *prompt_text = NULL, *params_text = NULL;
    if (prompt_file && spec.prompt) {
        json_decref(params);
        return cli_usage("submit", "--prompt and --prompt-file: give one");
    }
    if (prompt_file) {
        size_t plen;
        if (util_read_file(prompt_file, 1 << 20, &prompt_text, &plen, err)) {
            cli_error("submit: --prompt-file: %s", err);
            json_decref(params);
            return CLI_EXIT_FAIL;
        }
        if (strlen(prompt_text) != plen || !plen) {
            cli_error("submit: --prompt-file: %s: %s", prompt_file,
                      plen ? "holds a NUL byte" : "is empty");
            free(prompt_text);
            json_decref(params);
            return CLI_EXIT_FAIL;
        }
        while (plen > 0 && (prompt_text[plen - 1] == '\n' || prompt_text[plen - 1] == '\r'))
            prompt_text[--plen] = '\0'; /* an editor's final newline is not part of it */
        spec.prompt = prompt_text;
    }
    if (json_object_size(params))
        spec.params_json = params_text = json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(params);
    if (spec.webhook_url && webhook_check_url(spec.webhook_url, NULL, err)) {
        cli_error("submit: --webhook: %s", err);
        free(prompt_text);
        free(params_text);
        return CLI_EXIT_FAIL;
    }
    if (spec.webhook_secret && whsec_check(spec.webhook_secret, err)) {
        cli_error("submit: --secret: %s", err);
        free(prompt_text);
        free(params_text);
        return CLI_EXIT_FAIL;
    }
    InputList inputs = {0};
    int rc = 0;
    for (int i = optind; i < argc && rc == 0; i++)
        rc = fetch_is_url(argv[i]) ? submit_add_url(&inputs, argv[i], common, err)
                                   : submit_add_file(&inputs, argv[i], recursive, NULL, err);
    if (rc == 0 && inputs.n == 0)
        rc = err_set(err, VLQ_EINPUT, "no files to submit");
    Queue *q = NULL;
    if (rc) {
        cli_error("%s", err);
    } else if (!(q = cli_open_queue(common, 1, NULL))) {
        rc = VLQ_EIO;
    }
    json_t *out = json_array();
    for (int i = 0; q && i < inputs.n && rc == 0; i++) {
        JobSpec one = spec;
        one.inputs = &inputs.v[i];
        one.n_inputs = 1;
        char *key = NULL; /* never cut: a cut key would match another file's job */
        if (spec.idem_key && inputs.n > 1)
            one.idem_key = key = xasprintf("%s:%d", spec.idem_key, i + 1);
        int64_t id;
        int existed = 0;
        rc = queue_submit(q, &one, &id, &existed, err);
        free(key);
        if (rc != 0) {
            cli_error("%s", err);
            break;
        }
        if (common->json)
            json_array_append_new(out, json_pack("{s:I, s:o, s:b}", "id", (json_int_t)id, "file",
                                                 jobs_str_json(inputs.v[i].path), "existed",
                                                 existed));
        else
            printf("%lld\n", (long long)id);
    }
    if (rc == 0 && common->json)
        jobs_print_json(out);
    else
        json_decref(out);
    for (int i = 0; i < inputs.n; i++)
        free(inputs.v[i].path);
    free(inputs.v);
    free(prompt_text);
    free(params_text);
    queue_close(q);
    return rc ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

/* ---- vlq list / show / result ---- */

int cli_list(int argc, char **argv, const CliCommon *common)
{
    static const struct option opts[] = {{"status", required_argument, NULL, 's'},
                                         {"kind", required_argument, NULL, 'k'},
                                         {"limit", required_argument, NULL, 'l'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    JobFilter f = {.state = -1, .limit = 100};
    int64_t v;
    int c;
    optind = 1;
    while ((c = cli_getopt("list", argc, argv, "h", opts)) != -1) {
        switch (c) {
        case 's':
            if ((f.state = queue_state_parse(optarg)) < 0)
                return cli_usage("list", "--status '%s': one of queued, running, succeeded, "
                                 "failed, dead, cancelled", optarg);
            break;
        case 'k': f.kind = optarg; break;
        case 'l': {
            static const NumRange limits = NUM_INT(0, 2147483647);
            if (cli_num_i64("list", "--limit", &limits, optarg, &v))
                return CLI_EXIT_USAGE;
            f.limit = (int)v;
            break;
        }
        case 'h':
            printf("usage: vlq list [--status S] [--kind K] [--limit N (default 100, 0 = all)] "
                   "[--json]\n\nJobs, newest first: id, status, kind, attempts, inputs, and "
                   "the error of failed and dead jobs.\n");
            return CLI_EXIT_OK;
        default: return CLI_EXIT_USAGE;
        }
    }
    if (optind < argc)
        return cli_usage("list", "unexpected argument '%s'", argv[optind]);
    Queue *q = cli_open_queue(common, 0, NULL);
    if (!q)
        return CLI_EXIT_FAIL;
    char err[VLQ_ERRLEN];
    Job **jobs;
    int n, rc = queue_list(q, &f, &jobs, &n, err);
    if (rc) {
        cli_error("%s", err);
    } else if (common->json) {
        json_t *arr = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(arr, jobs_json(jobs[i]));
        jobs_print_json(arr);
    } else {
        CliStrs str = {0}; /* names and errors escaped: a file name may hold a newline */
        for (int i = 0; i < n; i++) {
            const Job *j = jobs[i];
            printf("%-6lld %-9s %-10s %d/%d  %s%s%s%s\n", (long long)j->id,
                   queue_state_name(j->state), cli_str(&str, j->kind), j->attempts,
                   j->max_attempts, j->n_inputs ? cli_str(&str, j->inputs[0].path) : "",
                   j->n_inputs > 1 ? " ..." : "", j->error_code ? "  " : "",
                   j->error_code ? cli_str(&str, j->error) : "");
            cli_strs_clear(&str);
        }
    }
    for (int i = 0; !rc && i < n; i++)
        queue_job_free(jobs[i]);
    if (!rc)
        free(jobs);
    queue_close(q);
    return rc ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

/* A string field of o for a text line: "-" when null or absent. */
static const char *show_field(json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "-";
}

/* The readable view of `vlq show`: the same facts as --json, one per line; every stored
 * string escaped and redacted (cli_str). */
static void show_text(json_t *o, const Job *j)
{
    CliStrs str = {0};
    printf("job %lld  %s  %s  attempt %d/%d\n", (long long)j->id, cli_str(&str, j->kind),
           queue_state_name(j->state), j->attempts, j->max_attempts);
    for (int i = 0; i < j->n_inputs; i++)
        printf("input     %s (%lld bytes, sha256 %.12s...)\n", cli_str(&str, j->inputs[i].path),
               (long long)j->inputs[i].size_bytes, j->inputs[i].sha256);
    cli_strs_clear(&str);
    if (j->units_total || j->units_done) {
        const char *unit = !strcmp(j->kind, "ocr")         ? "pages"
                           : !strcmp(j->kind, "summarize") ? "segments"
                                                           : "units";
        if (j->units_total)
            printf("progress  %d/%d %s done\n", j->units_done, j->units_total, unit);
        else
            printf("progress  %d %s done\n", j->units_done, unit);
    }
    printf("created   %s\nstarted   %s\nfinished  %s\n", show_field(o, "created_at"),
           show_field(o, "started_at"), show_field(o, "finished_at"));
    if (j->state == JOB_QUEUED || j->state == JOB_FAILED)
        printf("run after %s\n", show_field(o, "run_after"));
    if (j->error_code)
        printf("error     %s: %s\n", cli_str(&str, j->error_code), cli_str(&str, j->error));
    if (j->webhook_url)
        printf("webhook   %s\n", cli_str(&str, j->webhook_url));
    cli_strs_clear(&str);
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(o, "attempt_log"), i, a) {
        const char *out = json_string_value(json_object_get(a, "outcome"));
        const char *e = json_string_value(json_object_get(a, "error"));
        printf("attempt %lld  %s  %s .. %s  %s%s%s\n",
               (long long)json_integer_value(json_object_get(a, "attempt")),
               cli_str(&str, show_field(a, "worker")), show_field(a, "started_at"),
               show_field(a, "finished_at"), out ? cli_str(&str, out) : "running",
               e ? ": " : "", e ? cli_str(&str, e) : "");
        cli_strs_clear(&str);
    }
    json_array_foreach(json_object_get(o, "events"), i, a) {
        printf("event     %s  %s  %s (%lld attempts)\n", cli_str(&str, show_field(a, "event_id")),
               cli_str(&str, show_field(a, "type")), show_field(a, "state"),
               (long long)json_integer_value(json_object_get(a, "attempts")));
        cli_strs_clear(&str);
    }
    json_decref(o);
}

int cli_show(int argc, char **argv, const CliCommon *common)
{
    if (cli_wants_help(argc, argv)) {
        printf("usage: vlq show ID [--json]\n\nOne job: its inputs, state, progress (pages or "
               "segments done of total), attempts\n(worker, times, outcome, error) and webhook "
               "events; --json for the same as JSON.\n");
        return CLI_EXIT_OK;
    }
    if (argc != 2)
        return cli_usage("show", "one job ID is required (see `vlq show --help`)");
    int64_t id;
    if (jobs_parse_id("show", argv[1], &id))
        return CLI_EXIT_USAGE;
    Queue *q = cli_open_queue(common, 0, NULL);
    if (!q)
        return CLI_EXIT_FAIL;
    char err[VLQ_ERRLEN];
    Job *j = NULL;
    JobAttempt *at = NULL;
    OutboxEvent **ev = NULL;
    int n_at = 0, n_ev = 0;
    int rc = queue_get(q, id, &j, err);
    if (!rc)
        rc = queue_attempts(q, id, &at, &n_at, err);
    if (!rc)
        rc = queue_events_list(q, id, &ev, &n_ev, err);
    if (rc) {
        cli_error("%s", err);
    } else {
        json_t *o = jobs_json(j), *atts = json_array(), *evs = json_array();
        for (int i = 0; i < n_at; i++)
            json_array_append_new(atts, json_pack("{s:i, s:o, s:o, s:o, s:s?, s:o}", "attempt",
                                                  at[i].attempt, "worker",
                                                  jobs_str_json(at[i].worker_id), "started_at",
                                                  jobs_time_json(at[i].started_ms),
                                                  "finished_at",
                                                  jobs_time_json(at[i].finished_ms), "outcome",
                                                  at[i].outcome, "error",
                                                  jobs_str_json(at[i].error)));
        for (int i = 0; i < n_ev; i++)
            json_array_append_new(
                evs, json_pack("{s:s, s:s, s:s, s:i, s:o, s:o}", "event_id", ev[i]->event_id,
                               "type", ev[i]->type, "state",
                               queue_event_state_name(ev[i]->state), "attempts",
                               ev[i]->attempts, "last_status",
                               ev[i]->last_status ? json_integer(ev[i]->last_status)
                                                  : json_null(),
                               "last_error", jobs_str_json(ev[i]->last_error)));
        json_object_set_new(o, "attempt_log", atts);
        json_object_set_new(o, "events", evs);
        json_object_set_new(o, "progress", j->units_total || j->units_done
                                               ? json_pack("{s:i, s:i}", "units_done",
                                                           j->units_done, "units_total",
                                                           j->units_total)
                                               : json_null());
        if (common->json)
            jobs_print_json(o);
        else
            show_text(o, j);
    }
    queue_job_free(j);
    queue_attempts_free(at, n_at);
    for (int i = 0; i < n_ev; i++)
        queue_event_free(ev[i]);
    free(ev);
    queue_close(q);
    return rc ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

int cli_result(int argc, char **argv, const CliCommon *common)
{
    static const struct option opts[] = {{"format", required_argument, NULL, 'f'},
                                         {"output", required_argument, NULL, 'o'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *format = NULL, *out_path = NULL;
    int c;
    optind = 1;
    while ((c = cli_getopt("result", argc, argv, "ho:f:", opts)) != -1) {
        switch (c) {
        case 'f': format = optarg; break;
        case 'o': out_path = optarg; break;
        case 'h':
            printf("usage: vlq result ID [--format txt|md|json] [-o FILE]\n\nThe result of "
                   "a succeeded job, to stdout or FILE (written atomically).\nocr: txt and md "
                   "(the default) join the pages in order with page separators,\na failed "
                   "page showing its error in its place; json gives per page its number,\n"
                   "text, tokens in and out, seconds and error. summarize: md is a report with\n"
                   "hh:mm:ss times, txt plain text, json {duration_s, fps, segments: [{start_s,\n"
                   "end_s, frames, summary}], summary}. Other kinds: the result as stored\n"
                   "(--format only checks it).\n");
            return CLI_EXIT_OK;
        default: return CLI_EXIT_USAGE;
        }
    }
    int64_t id;
    if (optind + 1 != argc)
        return cli_usage("result", "one job ID is required (see `vlq result --help`)");
    if (jobs_parse_id("result", argv[optind], &id))
        return CLI_EXIT_USAGE;
    Queue *q = cli_open_queue(common, 0, NULL);
    if (!q)
        return CLI_EXIT_FAIL;
    char err[VLQ_ERRLEN], *fmt = NULL, *res = NULL;
    size_t len = 0;
    int rc = queue_result(q, id, &fmt, &res, &len, err);
    Job *j = NULL;
    Buf out = {0};
    if (!rc)
        rc = queue_get(q, id, &j, err);
    /* ocr and summarize results render as txt, md (default) or json; other kinds' results
     * are shown as stored, and --format only checks them */
    int r = rc ? rc : result_render(j->kind, fmt, res, len, format ? format : "md", &out, err);
    if (!rc && r == VLQ_ENOTSUP) {
        if (format && strcmp(result_extension(format), result_extension(fmt)))
            rc = err_set(err, VLQ_EINPUT, "job %lld: the result is %s, not %s", (long long)id,
                         fmt, format);
        else
            buf_append(&out, res, len);
    } else if (!rc && r) {
        rc = r;
        err_prefix(err, "job %lld", (long long)id);
    }
    if (!rc && out_path)
        rc = util_write_file(out_path, out.data ? out.data : "", out.len, err);
    else if (!rc)
        fwrite(out.data ? out.data : "", 1, out.len, stdout);
    buf_clear(&out);
    queue_job_free(j);
    if (rc)
        cli_error("%s", err);
    free(fmt);
    free(res);
    queue_close(q);
    return rc ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

/* ---- vlq cancel / retry / purge ---- */

int cli_cancel(int argc, char **argv, const CliCommon *common)
{
    if (cli_wants_help(argc, argv)) {
        printf("usage: vlq cancel ID\n\nA queued job is cancelled at once; a running one stops "
               "at its next checkpoint\n(a page or a chunk of frames).\n");
        return CLI_EXIT_OK;
    }
    if (argc != 2)
        return cli_usage("cancel", "one job ID is required (see `vlq cancel --help`)");
    int64_t id;
    if (jobs_parse_id("cancel", argv[1], &id))
        return CLI_EXIT_USAGE;
    Queue *q = cli_open_queue(common, 0, NULL);
    if (!q)
        return CLI_EXIT_FAIL;
    char err[VLQ_ERRLEN];
    JobState st;
    int rc = queue_cancel(q, id, &st, err);
    if (rc)
        cli_error("%s", err);
    else if (common->verbosity >= 0)
        fprintf(stderr, "vlq: job %lld: %s\n", (long long)id,
                st == JOB_CANCELLED ? "cancelled" : "cancel requested (it stops at its next "
                                                    "checkpoint)");
    queue_close(q);
    return rc ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

int cli_retry(int argc, char **argv, const CliCommon *common)
{
    if (cli_wants_help(argc, argv)) {
        printf("usage: vlq retry ID\n\nQueue a dead, failed or cancelled job again now, with "
               "its attempts reset.\n");
        return CLI_EXIT_OK;
    }
    if (argc != 2)
        return cli_usage("retry", "one job ID is required (see `vlq retry --help`)");
    int64_t id;
    if (jobs_parse_id("retry", argv[1], &id))
        return CLI_EXIT_USAGE;
    Queue *q = cli_open_queue(common, 0, NULL);
    if (!q)
        return CLI_EXIT_FAIL;
    char err[VLQ_ERRLEN];
    int rc = queue_retry(q, id, err);
    if (rc)
        cli_error("%s", err);
    queue_close(q);
    return rc ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

int cli_purge(int argc, char **argv, const CliCommon *common)
{
    static const struct option opts[] = {{"older-than", required_argument, NULL, 'o'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    double days = -1;
    int c;
    optind = 1;
    /* days: up to 100 years, so days * 86400000 stays far inside int64 */
    static const NumRange day_range = NUM_REAL(0, 36525);
    while ((c = cli_getopt("purge", argc, argv, "h", opts)) != -1) {
        switch (c) {
        case 'o':
            if (cli_num_double("purge", "--older-than", &day_range, optarg, &days))
                return CLI_EXIT_USAGE;
            break;
        case 'h':
            printf("usage: vlq purge --older-than DAYS\n\nDelete succeeded, dead and cancelled "
                   "jobs that finished more than DAYS ago,\nwith their results and attempts "
                   "(jobs with undelivered webhook events are kept).\n");
            return CLI_EXIT_OK;
        default: return CLI_EXIT_USAGE;
        }
    }
    if (optind != argc)
        return cli_usage("purge", "unexpected argument '%s'", argv[optind]);
    if (days < 0)
        return cli_usage("purge", "--older-than DAYS is required");
    Queue *q = cli_open_queue(common, 0, NULL);
    if (!q)
        return CLI_EXIT_FAIL;
    char err[VLQ_ERRLEN];
    int n = 0, rc = queue_purge(q, (int64_t)(days * 86400000.0), &n, err);
    if (rc)
        cli_error("%s", err);
    else
        printf("%d\n", n);
    queue_close(q);
    return rc ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}
