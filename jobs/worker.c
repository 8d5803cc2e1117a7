/* worker: claim, run, record, with [worker] concurrency jobs in flight (see worker.h).
 *
 * Each thread runs the whole loop on its own Queue connection. What the threads share
 * lives in Worker and is guarded by its mutex: the count of jobs started (so --once and
 * --max-jobs hold across threads), the counts for the exit status, and the first fatal
 * error (a database failure stops every thread at its next look at the queue), and the
 * first device error. The stop flag is the caller's, written by a signal handler and
 * only read here.
 *
 * A device error (VLQ_EDEVICE from the engine: an Xid, an illegal access; never a
 * memory-plan refusal, which is ENOMEM) poisons the device context for good: CUDA's
 * errors are sticky, so every later request on this engine fails too. The first job to
 * report one records a transient failure (the attempt counted: failed with a retry after
 * the backoff, or dead when it was the last attempt, so an input that breaks the device
 * every time cannot restart the worker forever); from then on no thread claims a job,
 * the jobs in flight run on to their end, and those that fail with EDEVICE too are
 * handed back unspent (queued, the attempt not counted: they only shared the broken
 * device). A device error thus costs one attempt in all, not one per job in flight.
 * worker_run then returns VLQ_EDEVICE, for `vlq worker` to exit with its own status so
 * that a supervisor restarts it with a fresh device context.
 *
 * A job's inputs are checked against what submit recorded (size, SHA-256) before it
 * runs: a changed or vanished file, or one replaced by a FIFO or a directory, fails that
 * job (EINPUT), never the worker, and never blocks it. After a
 * success the result is also written under [output] dir (when set), atomically, named
 * after the job's first input. */
#include "worker.h"

#include "cfg.h"
#include "engine.h"
#include "err.h"
#include "fetch.h"
#include "jobs.h"
#include "log.h"
#include "model.h"
#include "outbox.h"
#include "queue.h"
#include "result.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WORKER_MAX_THREADS 256

typedef struct {
    const WorkerOptions *o;
    const char *const *kinds; /* the kinds this worker claims */
    int n_kinds;
    int64_t lease_ms, poll_ms;
    const char *out_dir;      /* [output] dir, or "" */
    const char *out_format;   /* [output] format */
    OutboxThread *outbox;
    Engine *engine;           /* o->engine, or the one opened here */
    char worker_id[300];      /* host:pid (host up to 255 bytes) */
    pthread_mutex_t mu;       /* guards the fields below */
    int64_t started, done, failed;
    int fatal;                /* a thread hit a database error: everyone stops */
    char fatal_err[VLQ_ERRLEN];
    int fatal_code;
    int device_failed;        /* a job reported a device error: no more claims */
    char device_err[VLQ_ERRLEN + 32]; /* the first one, "job N: message" (whole) */
} Worker;

/* A database error or a signal: stop at once (a finishing write is not tried again). */
static int worker_interrupted(Worker *w)
{
    pthread_mutex_lock(&w->mu);
    int f = w->fatal;
    pthread_mutex_unlock(&w->mu);
    return f || (w->o->stop && *w->o->stop);
}

/* No more claims: interrupted, or the device failed (the jobs in flight run on). */
static int worker_stopping(Worker *w)
{
    pthread_mutex_lock(&w->mu);
    int d = w->device_failed;
    pthread_mutex_unlock(&w->mu);
    return d || worker_interrupted(w);
}

/* Job j's run ended with a device error (message err). Returns 1 when it is the first
 * in this worker (the job is charged the attempt), 0 when the device had already failed
 * (the job is handed back unspent). */
static int worker_device_error(Worker *w, const Job *j, const char *err)
{
    pthread_mutex_lock(&w->mu);
    int first = !w->device_failed;
    if (first) {
        w->device_failed = 1;
        snprintf(w->device_err, sizeof w->device_err, "job %lld: %s", (long long)j->id, err);
    }
    pthread_mutex_unlock(&w->mu);
    return first;
}

static void worker_set_fatal(Worker *w, int code, const char *err)
{
    pthread_mutex_lock(&w->mu);
    if (!w->fatal) {
        w->fatal = 1;
        w->fatal_code = code;
        snprintf(w->fatal_err, sizeof w->fatal_err, "%s", err);
    }
    pthread_mutex_unlock(&w->mu);
}

/* The job's inputs are still what submit saw: each opened with util_open_regular (a
 * file swapped for a FIFO or a directory is refused without blocking) and its content
 * hashed and compared with the SHA-256 recorded at submit. Size is the fast path (a
 * different size fails without reading); equal size and mtime prove nothing, as a
 * rewrite within the same second keeps both. VLQ_EINPUT (the job dies, no retry),
 * VLQ_ECANCEL when the worker is told to stop meanwhile, or VLQ_EIO. j is the job as the
 * kind sees it, submitted as claimed: its URL inputs were just downloaded and checked. */
static int worker_check_inputs(const Job *j, const Job *submitted, volatile int *stop,
                               char *err)
{
    for (int i = 0; i < j->n_inputs; i++) {
        const JobInput *in = &j->inputs[i];
        if (fetch_is_url(submitted->inputs[i].path))
            continue; /* just downloaded: worker_fetch_inputs hashed and compared it */
        if (stop && *stop)
            return err_set(err, VLQ_ECANCEL, "the worker is stopping");
        int fd;
        struct stat st;
        int rc = util_open_regular(in->path, 0, &fd, &st, err);
        if (rc) {
            size_t n = strlen(err);
            snprintf(err + n, VLQ_ERRLEN - n, " (changed since submit)");
            return rc;
        }
        if (st.st_size != in->size_bytes) {
            close(fd);
            return err_set(err, VLQ_EINPUT, "%s: changed since submit (%lld bytes, %lld at "
                           "submit)", in->path, (long long)st.st_size,
                           (long long)in->size_bytes);
        }
        char hex[65];
        if (in->sha256[0]) {
            rc = util_sha256_fd(fd, in->path, hex, err);
        } else if ((int64_t)st.st_mtime != in->mtime_s) { /* no hash recorded: mtime only */
            close(fd);
            return err_set(err, VLQ_EINPUT, "%s: changed since submit (modified)", in->path);
        }
        close(fd);
        if (stop && *stop) /* told to stop during a long read: hand the job back */
            return err_set(err, VLQ_ECANCEL, "the worker is stopping");
        if (rc)
            return rc;
        if (in->sha256[0] && strcmp(hex, in->sha256))
            return err_set(err, VLQ_EINPUT, "%s: changed since submit (SHA-256 differs)",
                           in->path);
    }
    return 0;
}

/* The job's http(s) inputs, downloaded (renewing the lease on the way, through ctx): a
 * new directory (*dir, the caller removes it with
 * fetch_dir_remove and frees it) and in *local a copy of the job's input list with each
 * URL replaced by its local file, size and mtime (so worker_check_inputs passes it and
 * the kind reads the file); *local is NULL when the job has no URL input. The SHA-256 of
 * the first download is recorded in the queue; a later attempt that downloads other
 * bytes fails the job with EINPUT (its input changed since it was first seen). */
static int worker_fetch_progress(void *arg, char *err)
{
    return jobs_checkpoint(arg, err); /* renews the lease; stops on a cancel or SIGTERM */
}

static int worker_fetch_inputs(Worker *w, Queue *q, const Job *j, JobCtx *ctx, char **dir,
                               JobInput **local, char *err)
{
    *dir = NULL;
    *local = NULL;
    int n_urls = 0;
    for (int i = 0; i < j->n_inputs; i++)
        n_urls += fetch_is_url(j->inputs[i].path);
    if (!n_urls)
        return 0;
    FetchOptions fo;
    fetch_options_from_cfg(w->o->cfg, &fo);
    fo.on_progress = worker_fetch_progress;
    fo.progress_arg = ctx;
    int rc = fetch_dir_new(&fo, j->id, dir, err);
    if (rc)
        return rc;
    JobInput *in = xcalloc((size_t)j->n_inputs, sizeof *in);
    memcpy(in, j->inputs, (size_t)j->n_inputs * sizeof *in);
    *local = in; /* paths borrowed from j, except the downloaded ones (see worker_local_free) */
    for (int i = 0; i < j->n_inputs; i++)
        if (fetch_is_url(j->inputs[i].path))
            in[i].path = NULL; /* owned from here: set to the download, or freed as NULL */
    for (int i = 0; i < j->n_inputs; i++) {
        const JobInput *u = &j->inputs[i];
        if (!fetch_is_url(u->path))
            continue;
        FetchResult r;
        double t0 = util_mono_s();
        if ((rc = fetch_url(&fo, u->path, *dir, i, &r, err)) != 0)
            return rc;
        in[i].path = r.path;
        in[i].size_bytes = r.size_bytes;
        memcpy(in[i].sha256, r.sha256, sizeof in[i].sha256);
        struct stat st;
        in[i].mtime_s = stat(r.path, &st) == 0 ? (int64_t)st.st_mtime : 0;
        log_info("input %d downloaded: %lld bytes in %.2f s, sha256 %.12s", i,
                 (long long)r.size_bytes, util_mono_s() - t0, r.sha256);
        if (!u->sha256[0]) {
            if ((rc = queue_input_fetched(q, j, i, r.sha256, r.size_bytes, err)) != 0)
                return rc;
        } else if (strcmp(u->sha256, r.sha256)) {
            return err_set(err, VLQ_EINPUT,
                           "input %d: the download differs from the first one (SHA-256 %.12s, "
                           "was %.12s): the input changed since the job first ran", i,
                           r.sha256, u->sha256);
        }
    }
    return 0;
}

/* Free worker_fetch_inputs' list: the downloaded paths are its own, the others j's. */
static void worker_local_free(const Job *j, JobInput *local)
{
    for (int i = 0; local && i < j->n_inputs; i++)
        if (fetch_is_url(j->inputs[i].path))
            free(local[i].path);
    free(local);
}

/* Is the job still ours? 1 yes, 0 no (another worker took it over, or it left
 * 'running'), -1 the queue could not say. This is how a VLQ_EBUSY is told apart: a lost
 * lease by the job's state, never by the message. */
static int worker_still_owner(Queue *q, const Job *j)
{
    Job *now = NULL;
    char err[VLQ_ERRLEN];
    if (queue_get(q, j->id, &now, err))
        return -1;
    int ours = now->state == JOB_RUNNING && now->claim_token && j->claim_token &&
               !strcmp(now->claim_token, j->claim_token);
    queue_job_free(now);
    return ours;
}

/* Write the result under [output] dir as <input file name>.<ext>, atomically. A failure
 * is logged, never the job's: the result is safe in the queue. */
static void worker_write_output(Worker *w, const Job *j, const JobCtx *ctx)
{
    if (!w->out_dir[0] || !j->n_inputs)
        return;
    char err[VLQ_ERRLEN];
    Buf out = {0};
    const char *fmt = w->out_format;
    int rc = result_render(j->kind, ctx->format, ctx->result, ctx->result_len, fmt, &out, err);
    if (rc == VLQ_ENOTSUP) { /* a kind without renderings: its result as stored */
        buf_clear(&out);
        buf_append(&out, ctx->result, ctx->result_len);
        fmt = ctx->format;
        rc = 0;
    }
    const char *base = strrchr(j->inputs[0].path, '/');
    base = base ? base + 1 : j->inputs[0].path;
    /* a URL input is named by its last path segment, without its query */
    int base_len = fetch_is_url(j->inputs[0].path) ? (int)strcspn(base, "?#") : (int)strlen(base);
    char *path = xasprintf("%s/%.*s.%s", w->out_dir, base_len, base, result_extension(fmt));
    if (rc == 0)
        rc = util_write_file(path, out.data ? out.data : "", out.len, err);
    if (rc)
        log_warn("output: %s", err);
    else
        log_info("output written to %s", path);
    free(path);
    buf_clear(&out);
}

/* Run one claimed job to its end on connection q. Returns 1 if it ended succeeded (or
 * was handed back), 0 if not, -1 on a database error that should stop the worker. */
static int worker_job(Worker *w, Queue *q, Job *j)
{
    char err[VLQ_ERRLEN] = "", qerr[VLQ_ERRLEN] = "";
    log_set_job(j->id);
    const JobKind *kind = jobs_find(j->kind);
    JobCtx ctx = {.queue = q, .job = j, .lease_ms = w->lease_ms, .stop = w->o->stop,
                  .cfg = w->o->cfg, .engine = w->engine};
    double t0 = util_mono_s();
    log_info("start kind=%s attempt=%d/%d", j->kind, j->attempts, j->max_attempts);
    char *fetch_dir = NULL;
    JobInput *local = NULL;
    Job fetched; /* j with its URL inputs replaced by the downloads, for the kind */
    int rc = worker_fetch_inputs(w, q, j, &ctx, &fetch_dir, &local, err);
    if (rc == 0 && local) {
        fetched = *j;
        fetched.inputs = local;
        ctx.job = &fetched;
        ctx.submitted = j;
    }
    if (rc == 0) {
        rc = worker_check_inputs(ctx.job, j, w->o->stop, err);
        if (rc == VLQ_ECANCEL)
            ctx.stopping = 1; /* a stop during the check: the job goes back, unspent */
    }
    if (rc == 0)
        rc = kind->run(&ctx, err);
    if (rc == 0 && !ctx.format)
        rc = err_set(err, VLQ_EIO, "%s: finished without a result", j->kind);
    /* a device error after the first one is the broken context's, not this job's */
    int device_handback = rc == VLQ_EDEVICE && !worker_device_error(w, j, err);
    int ok = 0, qrc = 0;
    double t_rec = util_mono_s();
    /* a transient failure of the finishing write (a lost connection, a busy database) is
     * tried again while the job may still be ours: the claim token fences a second write */
    for (int64_t pause_ms = 250;; pause_ms = pause_ms < 4000 ? pause_ms * 2 : 4000) {
        if (rc == 0) {
            qrc = queue_succeed(q, j, ctx.format, ctx.result, ctx.result_len, ctx.summary, qerr);
            ok = qrc == 0;
            if (ok) {
                log_info("succeeded in %.2f s (%zu bytes)", util_mono_s() - t0, ctx.result_len);
                worker_write_output(w, j, &ctx);
            }
        } else if (rc == VLQ_ECANCEL && ctx.stopping) {
            qrc = queue_release(q, j, qerr);
            log_info("handed back: the worker is stopping");
            ok = 1; /* not a failure of the job */
        } else if (device_handback) {
            qrc = queue_release(q, j, qerr);
            if (qrc == 0)
                log_warn("handed back (attempt not counted): %s (EDEVICE; the device had "
                         "already failed for another job)", err);
            ok = 1;
        } else if (rc == VLQ_ECANCEL) {
            qrc = queue_ack_cancel(q, j, qerr);
            log_info("cancelled");
        } else if (rc == VLQ_EBUSY && worker_still_owner(q, j) == 0) {
            log_warn("%s", err); /* another worker owns the job now: not ours to record */
        } else {
            JobState st = JOB_DEAD;
            qrc = queue_fail(q, j, rc, err, &st, qerr);
            if (qrc == 0)
                log_warn("%s: %s (%s)", st == JOB_FAILED ? "failed, will retry" : "dead", err,
                         err_name(rc));
        }
        if (!(qrc == VLQ_EIO || qrc == VLQ_EBUSY) || worker_still_owner(q, j) == 0 ||
            util_mono_s() - t_rec > w->lease_ms / 1000.0 || worker_interrupted(w))
            break;
        log_warn("%s (trying again in %lld ms)", qerr, (long long)pause_ms);
        util_sleep_ms(pause_ms);
    }
    /* a finishing write refused because the lease was lost is not a worker error */
    if (qrc == VLQ_EBUSY && worker_still_owner(q, j) == 0) {
        log_warn("%s", qerr);
        qrc = 0;
        ok = 0;
    }
    jobs_ctx_clear(&ctx);
    fetch_dir_remove(fetch_dir); /* the downloads go whatever the outcome */
    free(fetch_dir);
    worker_local_free(j, local);
    log_set_job(0);
    if (qrc == VLQ_EIO || qrc == VLQ_EBUSY) { /* the lease runs out; another worker redoes it */
        log_error("%s (the job is left to its lease)", qerr);
        return 0;
    }
    if (qrc) {
        log_error("%s", qerr);
        worker_set_fatal(w, qrc, qerr);
        return -1;
    }
    return ok;
}

/* Reserve one job start under max_jobs; 0 when the limit is reached. */
static int worker_reserve(Worker *w)
{
    pthread_mutex_lock(&w->mu);
    int ok = !w->o->max_jobs || w->started < w->o->max_jobs;
    w->started += ok;
    pthread_mutex_unlock(&w->mu);
    return ok;
}

static void worker_unreserve(Worker *w)
{
    pthread_mutex_lock(&w->mu);
    w->started--;
    pthread_mutex_unlock(&w->mu);
}

static void *worker_thread(void *arg)
{
    Worker *w = arg;
    const Cfg *cfg = w->o->cfg;
    char err[VLQ_ERRLEN];
    QueueOptions qo = {.busy_timeout_ms = (int)cfg_int(cfg, "queue.busy_timeout_ms"),
                       .default_max_attempts = (int)cfg_int(cfg, "worker.max_attempts"),
                       .file_mode = cfg_str(cfg, "queue.file_mode")};
    Queue *q = NULL;
    int rc = queue_open(w->o->db_path, &qo, 1, &q, err);
    if (rc) {
        worker_set_fatal(w, rc, err);
        return NULL;
    }
    while (!worker_stopping(w) && worker_reserve(w)) {
        Job *j = NULL;
        if ((rc = queue_claim(q, w->kinds, w->n_kinds, w->lease_ms, w->worker_id, &j, err))) {
            worker_unreserve(w);
            if ((rc == VLQ_EIO || rc == VLQ_EBUSY) && !w->o->drain) { /* reconnects next call */
                log_warn("%s (trying again)", err);
                for (int64_t t = 0; t < w->poll_ms && !worker_stopping(w); t += 50)
                    queue_wait(q, 50, err);
                continue;
            }
            log_error("%s", err);
            worker_set_fatal(w, rc, err);
            break;
        }
        if (!j) {
            worker_unreserve(w);
            if (w->o->drain || w->o->max_jobs)
                break;
            /* woken early by a submit (PostgreSQL's NOTIFY); polling stays the fallback */
            for (int64_t t = 0; t < w->poll_ms && !worker_stopping(w); t += 50)
                if (queue_wait(q, 50, err) > 0)
                    break;
            continue;
        }
        int ok = worker_job(w, q, j);
        queue_job_free(j);
        outbox_poke(w->outbox);
        if (ok < 0)
            break;
        pthread_mutex_lock(&w->mu);
        w->done++;
        w->failed += !ok;
        pthread_mutex_unlock(&w->mu);
    }
    queue_close(q);
    return NULL;
}

/* Size the ocr and video classes for `conc` jobs in flight: a class whose slot key the
 * config leaves at its default gets one slot per job (with the default of 1, four jobs
 * would queue their pages behind one another), then shrinks to what the memory plan
 * allows: first each class to its slots_fit, then, while the whole plan still does not
 * fit, the larger-budget sized class loses a slot (never below 1, so engine_open's own
 * refusal with the numbers still comes when even that is too much). Explicit slot keys
 * are kept as they are. 0, or the code of opening the model / making the plan. */
static int worker_size_engine(const Cfg *cfg, int conc, EngineOptions *eo, char *err)
{
    static const char *const names[] = {"ocr", "video"};
    static const char *const keys[] = {"engine.ocr_slots", "engine.video_slots"};
    int sized[ENGINE_MAX_CLASSES] = {0}, any = 0;
    for (int i = 0; i < eo->n_classes; i++)
        for (int k = 0; k < 2; k++)
            if (!strcmp(eo->classes[i].name, names[k]) &&
                !strcmp(cfg_source(cfg, keys[k]), "default") && conc > eo->classes[i].n_slots) {
                eo->classes[i].n_slots = conc;
                sized[i] = any = 1;
            }
    if (!any || !eo->model_path)
        return 0;
    Model *m = NULL;
    int rc = model_open_ex(eo->model_path, MODEL_OPEN_NO_VERIFY | MODEL_OPEN_NO_POPULATE, &m,
                           err);
    EnginePlan plan;
    if (!rc)
        rc = engine_plan(eo, m, &plan, err);
    for (int i = 0; !rc && i < eo->n_classes; i++)
        if (sized[i] && eo->classes[i].n_slots > plan.slots_fit[i])
            eo->classes[i].n_slots = plan.slots_fit[i] > 1 ? plan.slots_fit[i] : 1;
    while (!rc && !(rc = engine_plan(eo, m, &plan, err)) && !plan.fits) {
        int big = -1;
        for (int i = 0; i < eo->n_classes; i++)
            if (sized[i] && eo->classes[i].n_slots > 1 &&
                (big < 0 || eo->classes[i].ctx_tok > eo->classes[big].ctx_tok))
                big = i;
        if (big < 0)
            break;
        eo->classes[big].n_slots--;
    }
    model_close(m);
    for (int i = 0; !rc && i < eo->n_classes; i++)
        if (sized[i] && eo->classes[i].n_slots < conc)
            log_warn("engine: %d %s slot(s) of %d tokens, not %d (concurrency): that is what "
                     "the memory plan allows (%.0f MiB available); the other jobs' requests "
                     "wait for a slot", eo->classes[i].n_slots, eo->classes[i].name,
                     eo->classes[i].ctx_tok, conc, (double)plan.available / (1 << 20));
    return rc;
}

/* Open the model for the kinds that need it ([model] path, [budgets], [engine]), its
 * slots sized for `conc` jobs in flight, and start its driver thread. 0 and *out, or
 * engine_open's code with err. */
static int worker_open_engine(const Cfg *cfg, int conc, Engine **out, char *err)
{
    EngineOptions eo;
    engine_options_from_cfg(cfg, &eo);
    int rc0 = worker_size_engine(cfg, conc, &eo, err);
    if (rc0)
        return rc0;
    double t0 = util_mono_s();
    int rc = engine_open(&eo, out, err);
    if (rc == 0 && (rc = engine_start(*out, err)) != 0) {
        engine_close(*out);
        *out = NULL;
    }
    if (rc == 0)
        log_info("model %s ready in %.1f s (slots: ocr %d, video %d, document %d)",
                 eo.model_path, util_mono_s() - t0, eo.classes[0].n_slots,
                 eo.classes[1].n_slots, eo.classes[2].n_slots);
    return rc;
}

int worker_run(const WorkerOptions *o, WorkerStats *stats, char *err)
{
    const Cfg *cfg = o->cfg;
    *stats = (WorkerStats){0};
    Worker w = {.o = o, .out_dir = cfg_str(cfg, "output.dir"),
                .out_format = cfg_str(cfg, "output.format")};
    pthread_mutex_init(&w.mu, NULL);
    w.lease_ms = o->lease_ms > 0 ? o->lease_ms : cfg_int(cfg, "worker.lease_seconds") * 1000;
    w.poll_ms = cfg_int(cfg, "worker.poll_ms");
    int64_t conc = o->concurrency > 0 ? o->concurrency : cfg_int(cfg, "worker.concurrency");
    if (conc > WORKER_MAX_THREADS) { /* refused, not quietly cut to the limit */
        pthread_mutex_destroy(&w.mu);
        return err_set(err, VLQ_EINPUT, "worker: concurrency %lld: at most %d jobs in flight",
                       (long long)conc, WORKER_MAX_THREADS);
    }
    int n_threads = conc > 0 ? (int)conc : 1;
    /* the worker id names the host in `vlq show` and the attempt log: room for the whole
     * name (HOST_NAME_MAX is 64 on Linux), where 64 bytes used to cut a 64-byte name */
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0 || !host[0])
        snprintf(host, sizeof host, "host");
    snprintf(w.worker_id, sizeof w.worker_id, "%s:%ld", host, (long)getpid());
    /* the model, when a kind needs it and the config names one */
    int n_all = jobs_count(), n_skipped = 0, need_engine = 0;
    for (int i = 0; i < n_all; i++)
        need_engine |= jobs_at(i)->needs_engine;
    Engine *own_engine = NULL;
    w.engine = o->engine;
    if (!w.engine && need_engine && cfg_str(cfg, "model.path")[0]) {
        int erc = worker_open_engine(cfg, n_threads, &own_engine, err);
        if (erc) {
            err_prefix(err, "model");
            pthread_mutex_destroy(&w.mu);
            return erc;
        }
        w.engine = own_engine;
    }
    /* the kinds this worker can run: those needing the model only with an engine */
    const char **kinds = xcalloc((size_t)n_all + 1, sizeof *kinds);
    for (int i = 0; i < n_all; i++) {
        const JobKind *k = jobs_at(i);
        if (k->needs_engine && !w.engine)
            n_skipped++;
        else
            kinds[w.n_kinds++] = k->name;
    }
    w.kinds = kinds;
    if (n_all == 0)
        log_warn("no job kinds are built into this vlq yet: ocr and summarize jobs stay queued "
                 "(no attempt is spent) until a vlq that runs them takes them");
    else if (n_skipped)
        log_warn("no model ([model] path): %d kind(s) that need it are not run; their jobs "
                 "stay queued (no attempt is spent)", n_skipped);
    if (w.n_kinds) {
        char db[1024];
        queue_redact(o->db_path, db, sizeof db); /* a URL's password stays out of logs */
        log_info("worker ready: db=%s kinds=%d concurrency=%d", db, w.n_kinds, n_threads);
    }
    /* open (creating and migrating) once up front, so a bad database is one clear error
     * before any thread starts */
    QueueOptions qo = {.busy_timeout_ms = (int)cfg_int(cfg, "queue.busy_timeout_ms"),
                       .default_max_attempts = (int)cfg_int(cfg, "worker.max_attempts"),
                       .file_mode = cfg_str(cfg, "queue.file_mode")};
    Queue *q0 = NULL;
    int rc = queue_open(o->db_path, &qo, 1, &q0, err);
    if (rc == 0)
        rc = outbox_start(o->db_path, cfg, &w.outbox, err);
    pthread_t th[WORKER_MAX_THREADS];
    int n_started = 0;
    for (int i = 0; rc == 0 && i < n_threads; i++) {
        if (pthread_create(&th[i], NULL, worker_thread, &w) != 0) {
            rc = err_set(err, VLQ_EIO, "worker: cannot start thread %d", i + 1);
            worker_set_fatal(&w, rc, err);
            break;
        }
        n_started++;
    }
    for (int i = 0; i < n_started; i++)
        pthread_join(th[i], NULL);
    outbox_stop(w.outbox);
    if (rc == 0 && w.fatal) {
        rc = w.fatal_code;
        snprintf(err, VLQ_ERRLEN, "%s", w.fatal_err);
    } else if (rc == 0 && w.device_failed) {
        /* every job it ran is recorded (failed, handed back or finished): say why it ends */
        log_error("device error: %s; exiting so that a restart gets a fresh device context",
                  w.device_err); /* logged whole: err may cut a long device message */
        rc = err_set(err, VLQ_EDEVICE, "device error: %s", w.device_err);
    }
    /* a drained cron run leaves no due event behind: one synchronous pass, bounded by the
     * webhook timeouts; later retries go to the next worker or `vlq webhooks send` */
    char werr[VLQ_ERRLEN];
    if (rc == 0 && o->drain && outbox_send_due(q0, cfg, 0, NULL, werr))
        log_warn("webhooks: %s", werr);
    queue_close(q0);
    stats->done = w.done;
    stats->failed = w.failed;
    stats->device_error = rc == VLQ_EDEVICE && w.device_failed;
    if (w.engine) {
        /* batch occupancy: rows per decoder step over the worker's life */
        EngineStats es;
        engine_stats(w.engine, &es);
        char kv[160];
        snprintf(kv, sizeof kv, "steps=%lld rows_decode=%lld rows_prefill=%lld requests=%lld",
                 (long long)es.steps, (long long)es.rows_decode, (long long)es.rows_prefill,
                 (long long)es.requests_done);
        log_msg_kv(LOG_INFO, kv, "engine: %lld requests, %lld steps, %.2f decode rows per step",
                   (long long)es.requests_done, (long long)es.steps,
                   es.steps ? (double)es.rows_decode / es.steps : 0);
    }
    engine_close(own_engine);
    free(kinds);
    pthread_mutex_destroy(&w.mu);
    return rc;
}
