/* cli_worker: `vlq worker`, the loop that claims jobs, runs their kind, and stores the
 * outcome; webhook events are delivered by a background thread (outbox) it starts.
 *
 * A job's inputs are checked against what submit recorded (size, mtime, SHA-256) before
 * it runs: a changed or vanished file fails that job (EINPUT), never the worker. SIGINT
 * and SIGTERM stop the worker at the running job's next checkpoint; that job is released
 * untouched (its attempt not counted) for another worker. */
#include "cfg.h"
#include "cli.h"
#include "err.h"
#include "jobs.h"
#include "log.h"
#include "outbox.h"
#include "queue.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static volatile sig_atomic_t worker_stop_flag;
static volatile int worker_stop; /* what JobCtx.stop points at */

static void worker_on_signal(int sig)
{
    worker_stop_flag = 1;
    worker_stop = 1;
}

static void worker_usage(FILE *out)
{
    fprintf(out,
            "usage: vlq worker [--drain] [--once] [--max-jobs N] [--lease-seconds N]\n\n"
            "Claim jobs from the queue and run them; deliver webhook events meanwhile.\n"
            "Logs go to stderr (one logfmt line per event when not on a terminal).\n\n"
            "  --drain            run until nothing is runnable, then exit\n"
            "  --once             run at most one job, then exit\n"
            "  --max-jobs N       exit after N jobs\n"
            "  --lease-seconds N  lease of a claimed job (default [worker] lease_seconds)\n\n"
            "exit status: 0 every job it ran succeeded (or there was none), 3 some of them\n"
            "failed or died (they stay recorded: `vlq list --status dead`), 1 a worker error\n"
            "(config, database), 2 a usage error. SIGINT/SIGTERM: stop after the running\n"
            "job's next checkpoint, handing that job back.\n");
}

/* The job's inputs are still what submit saw. */
static int worker_check_inputs(const Job *j, char *err)
{
    for (int i = 0; i < j->n_inputs; i++) {
        const JobInput *in = &j->inputs[i];
        struct stat st;
        if (stat(in->path, &st) != 0)
            return err_set(err, VLQ_EINPUT, "%s: %s (gone since submit)", in->path,
                           strerror(errno));
        if (st.st_size != in->size_bytes || (int64_t)st.st_mtime != in->mtime_s) {
            char hex[65];
            int rc = util_sha256_file(in->path, hex, err);
            if (rc)
                return rc;
            if (strcmp(hex, in->sha256))
                return err_set(err, VLQ_EINPUT, "%s: changed since submit (SHA-256 differs)",
                               in->path);
        }
    }
    return 0;
}

/* Run one claimed job to its end. Returns 1 if it ended succeeded, 0 if not, -1 on a
 * database error that should stop the worker. */
static int worker_run(Queue *q, Job *j, int64_t lease_ms)
{
    char err[VLQ_ERRLEN] = "", qerr[VLQ_ERRLEN];
    log_set_job(j->id);
    const JobKind *kind = jobs_find(j->kind);
    JobCtx ctx = {.queue = q, .job = j, .lease_ms = lease_ms, .stop = &worker_stop};
    double t0 = util_mono_s();
    log_info("start kind=%s attempt=%d/%d", j->kind, j->attempts, j->max_attempts);
    int rc = worker_check_inputs(j, err);
    if (rc == 0)
        rc = kind->run(&ctx, err);
    if (rc == 0 && !ctx.format)
        rc = err_set(err, VLQ_EIO, "%s: finished without a result", j->kind);
    int ok = 0, qrc;
    if (rc == 0) {
        qrc = queue_succeed(q, j, ctx.format, ctx.result, ctx.result_len, ctx.summary, qerr);
        ok = qrc == 0;
        if (ok)
            log_info("succeeded in %.2f s (%zu bytes)", util_mono_s() - t0, ctx.result_len);
    } else if (rc == VLQ_ECANCEL && ctx.stopping) {
        qrc = queue_release(q, j, qerr);
        log_info("handed back: the worker is stopping");
        ok = 1; /* not a failure of the job */
    } else if (rc == VLQ_ECANCEL) {
        qrc = queue_ack_cancel(q, j, qerr);
        log_info("cancelled");
    } else if (rc == VLQ_EBUSY && strstr(err, "lease lost")) {
        qrc = 0; /* another worker owns the job now; it is not ours to record */
        log_warn("%s", err);
    } else {
        JobState st = JOB_DEAD;
        qrc = queue_fail(q, j, rc, err, &st, qerr);
        log_warn("%s: %s (%s)", st == JOB_FAILED ? "failed, will retry" : "dead", err,
                 err_name(rc));
    }
    jobs_ctx_clear(&ctx);
    log_set_job(0);
    if (qrc && !strstr(qerr, "lease lost")) {
        log_error("%s", qerr);
        return -1;
    }
    return ok;
}

int cli_worker(int argc, char **argv, const CliCommon *common)
{
    static const struct option opts[] = {{"drain", no_argument, NULL, 'd'},
                                         {"once", no_argument, NULL, 'o'},
                                         {"max-jobs", required_argument, NULL, 'm'},
                                         {"lease-seconds", required_argument, NULL, 'l'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int drain = 0, c;
    int64_t max_jobs = 0;
    const char *lease_flag = NULL;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': drain = 1; break;
        case 'o': max_jobs = 1; break;
        case 'm':
            if (util_parse_i64(optarg, &max_jobs) || max_jobs < 1) {
                cli_error("worker: --max-jobs '%s' is not a positive count", optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        case 'l': lease_flag = optarg; break;
        case 'h': worker_usage(stdout); return CLI_EXIT_OK;
        default: worker_usage(stderr); return CLI_EXIT_USAGE;
        }
    }
    if (optind != argc) {
        cli_error("worker: unexpected argument '%s'", argv[optind]);
        return CLI_EXIT_USAGE;
    }
    char err[VLQ_ERRLEN];
    Cfg *cfg = NULL;
    if (cfg_load(common->config_path, &cfg, err) ||
        (lease_flag && cfg_set(cfg, "worker.lease_seconds", lease_flag, "flag --lease-seconds",
                               err))) {
        cli_error("%s", err);
        cfg_free(cfg);
        return CLI_EXIT_FAIL;
    }
    const char *db = cfg_db_path(cfg, common->db_path);
    QueueOptions qo = {.busy_timeout_ms = (int)cfg_int(cfg, "queue.busy_timeout_ms"),
                       .default_max_attempts = (int)cfg_int(cfg, "worker.max_attempts")};
    Queue *q = NULL;
    OutboxThread *outbox = NULL;
    if (queue_open(db, &qo, 1, &q, err) || outbox_start(db, cfg, &outbox, err)) {
        cli_error("%s", err);
        queue_close(q);
        cfg_free(cfg);
        return CLI_EXIT_FAIL;
    }
    int n_kinds = jobs_count();
    const char **kinds = xcalloc((size_t)n_kinds + 1, sizeof *kinds);
    for (int i = 0; i < n_kinds; i++)
        kinds[i] = jobs_at(i)->name;
    if (n_kinds == 0)
        log_warn("no job kinds are built into this vlq yet: ocr and summarize jobs stay queued "
                 "(no attempt is spent) until a vlq that runs them takes them");
    else
        log_info("worker ready: db=%s kinds=%d", db, n_kinds);
    struct sigaction sa = {.sa_handler = worker_on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    char worker_id[96], host[64] = "host";
    gethostname(host, sizeof host - 1);
    snprintf(worker_id, sizeof worker_id, "%s:%ld", host, (long)getpid());
    int64_t lease_ms = cfg_int(cfg, "worker.lease_seconds") * 1000;
    int64_t poll_ms = cfg_int(cfg, "worker.poll_ms"), done = 0;
    int failed = 0, status = CLI_EXIT_OK;
    while (!worker_stop_flag && (!max_jobs || done < max_jobs)) {
        Job *j = NULL;
        if (queue_claim(q, kinds, n_kinds, lease_ms, worker_id, &j, err)) {
            log_error("%s", err);
            status = CLI_EXIT_FAIL;
            break;
        }
        if (!j) {
            if (drain || max_jobs)
                break;
            for (int64_t t = 0; t < poll_ms && !worker_stop_flag; t += 50)
                util_sleep_ms(50);
            continue;
        }
        int ok = worker_run(q, j, lease_ms);
        queue_job_free(j);
        outbox_poke(outbox);
        if (ok < 0) {
            status = CLI_EXIT_FAIL;
            break;
        }
        failed += !ok;
        done++;
    }
    outbox_stop(outbox);
    /* a drained cron run leaves no due event behind: one synchronous pass, bounded by the
     * webhook timeouts; later retries go to the next worker or `vlq webhooks send` */
    if (drain && status == CLI_EXIT_OK && outbox_send_due(q, cfg, 0, NULL, err))
        log_warn("webhooks: %s", err);
    free(kinds);
    queue_close(q);
    cfg_free(cfg);
    if (status == CLI_EXIT_OK && failed)
        status = CLI_EXIT_JOBS;
    log_info("worker done: %lld jobs, %d not succeeded", (long long)done, failed);
    return status;
}
