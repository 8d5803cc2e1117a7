/* queue: the backend-neutral half of the job queue (see queue.h for the semantics and
 * queue_int.h for the driver contract).
 *
 * This file never sees SQL: it picks the driver from the location, checks arguments,
 * resolves defaults, decides retry or dead and the backoff, builds the webhook payload
 * (queue_event_new, called by the drivers inside their finishing transaction), frees
 * what the queue hands out, and dispatches each public function to one driver operation.
 * So both backends share one definition of every state change's meaning. */
#include "queue_int.h"

#include "util.h"
#include "webhook.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- names ---- */

static const char *const queue_state_names[] = {"queued", "running", "succeeded",
                                                "failed", "dead",    "cancelled"};

const char *queue_state_name(JobState s)
{
    return s >= 0 && s <= JOB_CANCELLED ? queue_state_names[s] : "unknown";
}

int queue_state_parse(const char *name)
{
    for (int i = 0; i <= JOB_CANCELLED; i++)
        if (name && !strcmp(name, queue_state_names[i]))
            return i;
    return -1;
}

static const char *const queue_event_states[] = {"pending", "delivered", "failed"};

const char *queue_event_state_name(EventState s)
{
    return s >= EVENT_PENDING && s <= EVENT_FAILED ? queue_event_states[s] : "unknown";
}

int queue_event_state_parse(const char *name)
{
    for (int i = 0; i <= EVENT_FAILED; i++)
        if (name && !strcmp(name, queue_event_states[i]))
            return i;
    return -1;
}

/* ---- open, close ---- */

int queue_is_url(const char *location)
{
    return location && (!strncasecmp(location, "postgresql://", 13) ||
                        !strncasecmp(location, "postgres://", 11));
}

void queue_redact(const char *location, char *out, size_t size)
{
    const char *scheme = strstr(location, "://");
    const char *auth = scheme ? scheme + 3 : NULL;
    const char *at = auth ? strchr(auth, '@') : NULL, *slash = auth ? strchr(auth, '/') : NULL;
    const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (!at || (slash && slash < at) || !colon)
        snprintf(out, size, "%s", location);
    else
        snprintf(out, size, "%.*s:***%s", (int)(colon - location), location, at);
}

/* The [queue] file_mode text ("0600") as a mode into *mode; NULL or "" is 0600. The owner
 * must read and write; execute bits and other users' bits are refused, since the database
 * holds per-job webhook secrets. 0 or VLQ_EINPUT. */
static int queue_file_mode(const char *text, unsigned *mode, char *err)
{
    *mode = 0600;
    if (!text || !*text)
        return 0;
    char *end = NULL;
    errno = 0;
    long v = text[0] >= '0' && text[0] <= '7' ? strtol(text, &end, 8) : -1;
    if (v < 0 || errno || !end || *end || v > 0777)
        return err_set(err, VLQ_EINPUT,
                       "queue.file_mode: '%s' is not an octal mode such as 0600 or 0660", text);
    if ((v & 0600) != 0600 || (v & 0111) || (v & 0007))
        return err_set(err, VLQ_EINPUT,
                       "queue.file_mode: %04lo: the owner must read and write it and other "
                       "users get nothing (it holds webhook secrets): use 0600, 0640 or 0660",
                       v);
    *mode = (unsigned)v;
    return 0;
}

int queue_open(const char *path, const QueueOptions *opt, int create, Queue **out, char *err)
{
    *out = NULL;
    if (!path || !path[0])
        return err_set(err, VLQ_EINPUT, "no queue database given (an empty path)");
    unsigned file_mode;
    int mrc = queue_file_mode(opt ? opt->file_mode : NULL, &file_mode, err);
    if (mrc != 0)
        return mrc;
    Queue *q = xcalloc(1, sizeof *q);
    q->drv = queue_is_url(path) ? &queue_pg_driver : &queue_sqlite_driver;
    size_t size = strlen(path) + 8;
    q->location = xmalloc(size);
    queue_redact(path, q->location, size);
    q->busy_timeout_ms = opt && opt->busy_timeout_ms > 0 ? opt->busy_timeout_ms : 5000;
    q->default_max_attempts = opt && opt->default_max_attempts > 0 ? opt->default_max_attempts : 3;
    q->now_ms = opt && opt->now_ms ? opt->now_ms : util_now_ms;
    q->file_mode = file_mode;
    RAND_bytes((unsigned char *)&q->rng, sizeof q->rng);
    int rc = q->drv->open(q, path, create, err);
    if (rc) {
        queue_close(q);
        return rc;
    }
    *out = q;
    return 0;
}

void queue_close(Queue *q)
{
    if (!q)
        return;
    q->drv->close(q);
    free(q->location);
    free(q);
}

const char *queue_backend(const Queue *q) { return q->drv->name; }

int queue_wait(Queue *q, int timeout_ms, char *err)
{
    return q->drv->wait(q, timeout_ms > 0 ? timeout_ms : 0, err);
}

void queue_retry_sleep(Queue *q, int64_t ms)
{
    q->rng = q->rng * 6364136223846793005ULL + 1442695040888963407ULL;
    util_sleep_ms(ms + (int64_t)(q->rng >> 61));
}

/* ---- frees ---- */

void queue_job_free(Job *j)
{
    if (!j)
        return;
    for (int i = 0; i < j->n_inputs; i++)
        free(j->inputs[i].path);
    free(j->inputs);
    free(j->kind);
    free(j->idem_key);
    free(j->prompt);
    free(j->webhook_url);
    free(j->webhook_secret);
    free(j->params_json);
    free(j->error_code);
    free(j->error);
    free(j->claim_token);
    free(j);
}

void queue_units_free(JobUnit *u, int n)
{
    for (int i = 0; u && i < n; i++) {
        free(u[i].result);
        free(u[i].meta_json);
        free(u[i].error_code);
        free(u[i].error);
    }
    free(u);
}

void queue_attempts_free(JobAttempt *a, int n)
{
    for (int i = 0; a && i < n; i++) {
        free(a[i].worker_id);
        free(a[i].outcome);
        free(a[i].error);
    }
    free(a);
}

void queue_event_free(OutboxEvent *e)
{
    if (!e)
        return;
    free(e->event_id);
    free(e->type);
    free(e->url);
    free(e->secret);
    free(e->body);
    free(e->last_error);
    free(e->lease_token);
    free(e);
}

/* ---- what drivers share ---- */

int queue_lease_lost(const Job *j, char *err)
{
    return err_set(err, VLQ_EBUSY, "job %lld: lease lost (another worker took the job over)",
                   (long long)j->id);
}

int queue_event_lease_lost(const OutboxEvent *e, char *err)
{
    return err_set(err, VLQ_EBUSY, "event %s: lease lost (another deliverer took it over)",
                   e->event_id);
}

int queue_new_token(char out[33], char *err)
{
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return err_set(err, VLQ_EIO, "no random bytes for a token");
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    return 0;
}

int queue_no_job(int64_t id, char *err)
{
    return err_set(err, VLQ_EINPUT, "job %lld: no such job", (long long)id);
}

int queue_cancel_check(int64_t id, JobState s, char *err)
{
    if (s == JOB_QUEUED || s == JOB_FAILED || s == JOB_RUNNING)
        return 0;
    return err_set(err, VLQ_EINPUT, "job %lld: already %s", (long long)id, queue_state_name(s));
}

int queue_retry_check(int64_t id, JobState s, char *err)
{
    if (s == JOB_DEAD || s == JOB_FAILED || s == JOB_CANCELLED)
        return 0;
    return err_set(err, VLQ_EINPUT,
                   "job %lld: is %s; only dead, failed or cancelled jobs are retried",
                   (long long)id, queue_state_name(s));
}

static void json_time(json_t *o, const char *key, int64_t ms)
{
    if (!ms) {
        json_object_set_new(o, key, json_null());
        return;
    }
    char buf[40];
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof buf - n, ".%03dZ", (int)(ms % 1000));
    json_object_set_new(o, key, json_string(buf));
}

/* The payload of an event about job j (as it is after the finishing write). */
static char *queue_event_body(const Job *j, const char *type, int64_t now,
                              const QueueResultArgs *res)
{
    json_t *data = json_object();
    json_object_set_new(data, "id", json_integer(j->id));
    json_object_set_new(data, "kind", json_string(j->kind));
    json_object_set_new(data, "status", json_string(queue_state_name(j->state)));
    json_t *inputs = json_array();
    for (int i = 0; i < j->n_inputs; i++) {
        json_t *in = json_object();
        json_object_set_new(in, "path", json_string(j->inputs[i].path));
        json_object_set_new(in, "size", json_integer(j->inputs[i].size_bytes));
        json_object_set_new(in, "sha256", json_string(j->inputs[i].sha256));
        json_array_append_new(inputs, in);
    }
    json_object_set_new(data, "inputs", inputs);
    json_object_set_new(data, "attempts", json_integer(j->attempts));
    json_object_set_new(data, "max_attempts", json_integer(j->max_attempts));
    json_time(data, "created_at", j->created_ms);
    json_time(data, "started_at", j->started_ms);
    json_time(data, "finished_at", j->finished_ms);
    json_object_set_new(data, "duration_s", j->started_ms && j->finished_ms
                                                ? json_real((j->finished_ms - j->started_ms) / 1e3)
                                                : json_null());
    if (j->error_code) {
        json_t *e = json_object();
        json_object_set_new(e, "code", json_string(j->error_code));
        json_object_set_new(e, "message", json_string(j->error ? j->error : ""));
        json_object_set_new(data, "error", e);
    } else {
        json_object_set_new(data, "error", json_null());
    }
    if (res) {
        json_t *r = json_object();
        char fetch[64];
        snprintf(fetch, sizeof fetch, "vlq result %lld", (long long)j->id);
        json_object_set_new(r, "format", json_string(res->format));
        json_object_set_new(r, "bytes", json_integer((json_int_t)res->len));
        json_object_set_new(r, "summary", res->summary ? json_string(res->summary) : json_null());
        json_object_set_new(r, "fetch", json_string(fetch));
        json_object_set_new(data, "result", r);
    } else {
        json_object_set_new(data, "result", json_null());
    }
    json_t *root = json_object();
    json_object_set_new(root, "type", json_string(type));
    json_time(root, "timestamp", now);
    json_object_set_new(root, "data", data);
    char *body = json_dumps(root, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER);
    json_decref(root);
    VLQ_ASSERT(body);
    return body;
}

int queue_event_new(const Job *j, const char *type, int64_t now_ms, const QueueResultArgs *r,
                    QueueNewEvent *ev, char *err)
{
    memset(ev, 0, sizeof *ev);
    int rc = webhook_new_event_id(ev->event_id, err);
    if (rc)
        return rc;
    ev->now_ms = now_ms;
    ev->body = queue_event_body(j, type, now_ms, r);
    return 0;
}

/* ---- submit ---- */

int queue_submit(Queue *q, const JobSpec *spec, int64_t *id, int *existed, char *err)
{
    if (!spec->kind || !spec->kind[0])
        return err_set(err, VLQ_EINPUT, "submit: no job kind given");
    JobSpec s = *spec;
    if (s.max_attempts <= 0)
        s.max_attempts = q->default_max_attempts;
    if (s.run_after_ms <= 0)
        s.run_after_ms = queue_now(q);
    int dummy = 0;
    return q->drv->submit(q, &s, id, existed ? existed : &dummy, err);
}

/* ---- the worker side ---- */

int64_t queue_backoff_ms(int attempt, uint64_t *rng)
{
    double base = (double)attempt * attempt * attempt * attempt * 1000.0;
    double jitter = 1.0;
    if (rng) {
        *rng = *rng * 6364136223846793005ULL + 1442695040888963407ULL;
        jitter = 0.9 + 0.2 * (double)(*rng >> 11) / 9007199254740992.0;
    }
    return (int64_t)(base * jitter);
}

int queue_claim(Queue *q, const char *const *kinds, int n_kinds, int64_t lease_ms,
                const char *worker_id, Job **out, char *err)
{
    *out = NULL;
    if (n_kinds <= 0)
        return 0;
    if (n_kinds >= 900)
        return err_set(err, VLQ_EINPUT, "claim: %d job kinds (at most 899)", n_kinds);
    char token[33];
    int rc = queue_new_token(token, err);
    if (rc)
        return rc;
    QueueClaimArgs a = {.kinds = kinds, .n_kinds = n_kinds, .lease_ms = lease_ms,
                        .worker_id = worker_id, .token = token};
    int64_t id = 0;
    rc = q->drv->claim(q, &a, &id, err);
    if (rc || !id)
        return rc;
    return queue_get(q, id, out, err);
}

int queue_renew(Queue *q, const Job *j, int64_t lease_ms, int *cancel, char *err)
{
    int c = 0;
    int rc = q->drv->renew(q, j, queue_now(q) + lease_ms, &c, err);
    if (cancel)
        *cancel = rc == 0 && c;
    return rc;
}

int queue_succeed(Queue *q, const Job *j, const char *format, const char *result,
                  size_t result_len, const char *summary, char *err)
{
    char auto_summary[501];
    if (!summary) {
        size_t n = result_len < 500 ? result_len : 500;
        while (n > 0 && n < result_len && ((unsigned char)result[n] & 0xc0) == 0x80)
            n--; /* do not cut a UTF-8 sequence */
        memcpy(auto_summary, result ? result : "", result ? n : 0);
        auto_summary[result ? n : 0] = '\0';
        summary = auto_summary;
    }
    QueueResultArgs r = {.format = format ? format : "text", .result = result,
                         .len = result_len, .summary = summary};
    return q->drv->succeed(q, j, &r, err);
}

int queue_fail(Queue *q, const Job *j, int code, const char *message, JobState *new_state,
               char *err)
{
    uint64_t rng = q->rng ^ (uint64_t)j->id;
    q->rng = q->rng * 6364136223846793005ULL + 1;
    int64_t now = queue_now(q);
    QueueFailArgs f = {.retry = err_is_transient(code) && j->attempts < j->max_attempts,
                       .code_name = err_name(code), .message = message};
    f.at_ms = f.retry ? now + queue_backoff_ms(j->attempts, &rng) : now;
    int rc = q->drv->fail(q, j, &f, err);
    if (rc == 0 && new_state)
        *new_state = f.retry ? JOB_FAILED : JOB_DEAD;
    return rc;
}

int queue_ack_cancel(Queue *q, const Job *j, char *err) { return q->drv->ack_cancel(q, j, err); }

int queue_release(Queue *q, const Job *j, char *err) { return q->drv->release(q, j, err); }

/* ---- per-unit results ---- */

int queue_set_units_total(Queue *q, const Job *j, int units_total, char *err)
{
    if (units_total < 0)
        return err_set(err, VLQ_EINPUT, "job %lld: %d units", (long long)j->id, units_total);
    return q->drv->set_units_total(q, j, units_total, err);
}

int queue_unit_store(Queue *q, const Job *j, const JobUnit *u, char *err)
{
    if (u->idx < 0)
        return err_set(err, VLQ_EINPUT, "job %lld: unit %d: a negative index", (long long)j->id,
                       u->idx);
    return q->drv->unit_store(q, j, u, err);
}

int queue_units(Queue *q, int64_t id, JobUnit **out, int *n, char *err)
{
    *out = NULL;
    *n = 0;
    return q->drv->units(q, id, out, n, err);
}

/* ---- admin ---- */

int queue_list(Queue *q, const JobFilter *f, Job ***jobs, int *n, char *err)
{
    *jobs = NULL;
    *n = 0;
    JobFilter any = {.state = -1};
    return q->drv->list(q, f ? f : &any, jobs, n, err);
}

int queue_get(Queue *q, int64_t id, Job **out, char *err)
{
    int rc = q->drv->get(q, id, out, err);
    if (rc == 0 && !*out)
        return queue_no_job(id, err);
    return rc;
}

int queue_result(Queue *q, int64_t id, char **format, char **result, size_t *len, char *err)
{
    *format = *result = NULL;
    *len = 0;
    Job *j;
    int rc = queue_get(q, id, &j, err);
    if (rc)
        return rc;
    JobState state = j->state;
    queue_job_free(j);
    if (state != JOB_SUCCEEDED)
        return err_set(err, VLQ_EINPUT, "job %lld: no result (the job is %s)", (long long)id,
                       queue_state_name(state));
    return q->drv->result(q, id, format, result, len, err);
}

int queue_cancel(Queue *q, int64_t id, JobState *new_state, char *err)
{
    JobState s = JOB_CANCELLED;
    int rc = q->drv->cancel(q, id, &s, err);
    if (rc == 0 && new_state)
        *new_state = s;
    return rc;
}

int queue_retry(Queue *q, int64_t id, char *err) { return q->drv->retry(q, id, err); }

int queue_purge(Queue *q, int64_t older_than_ms, int *n_deleted, char *err)
{
    int n = 0;
    int rc = q->drv->purge(q, queue_now(q) - older_than_ms, &n, err);
    if (n_deleted)
        *n_deleted = rc ? 0 : n;
    return rc;
}

int queue_attempts(Queue *q, int64_t id, JobAttempt **out, int *n, char *err)
{
    *out = NULL;
    *n = 0;
    return q->drv->attempts(q, id, out, n, err);
}

/* ---- webhook outbox ---- */

int queue_events_due(Queue *q, int max, int64_t lease_ms, OutboxEvent ***events, int *n,
                     char *err)
{
    *events = NULL;
    *n = 0;
    if (lease_ms <= 0)
        return err_set(err, VLQ_EINPUT, "events: a lease of %lld ms", (long long)lease_ms);
    char token[33];
    int rc = queue_new_token(token, err);
    return rc ? rc : q->drv->events_due(q, max, lease_ms, token, events, n, err);
}

int queue_events_list(Queue *q, int64_t job_id, OutboxEvent ***events, int *n, char *err)
{
    *events = NULL;
    *n = 0;
    return q->drv->events_list(q, job_id, events, n, err);
}

int queue_event_attempt(Queue *q, const OutboxEvent *e, EventState new_state,
                        int64_t next_attempt_ms, int http_status, const char *error,
                        double duration_s, int gone, char *err)
{
    if (new_state < EVENT_PENDING || new_state > EVENT_FAILED)
        return err_set(err, VLQ_EINPUT, "event %s: unknown state %d", e->event_id,
                       (int)new_state);
    QueueDeliveryArgs d = {.state = new_state, .next_attempt_ms = next_attempt_ms,
                           .http_status = http_status, .error = error,
                           .duration_s = duration_s, .gone = gone};
    return q->drv->event_attempt(q, e, &d, err);
}

int queue_event_release(Queue *q, const OutboxEvent *e, char *err)
{
    if (!e->lease_token) /* not leased by this caller: nothing to give back */
        return 0;
    return q->drv->event_release(q, e, err);
}

int queue_event_redeliver(Queue *q, const char *event_id, char *err)
{
    if (!event_id || !event_id[0])
        return err_set(err, VLQ_EINPUT, "redeliver: no event id given");
    return q->drv->event_redeliver(q, event_id, err);
}

/* ---- http(s) inputs ---- */

int queue_input_fetched(Queue *q, const Job *j, int idx, const char *sha256,
                        int64_t size_bytes, char *err)
{
    if (!j || idx < 0 || idx >= j->n_inputs || !sha256 || strlen(sha256) != 64 ||
        size_bytes < 0)
        return err_set(err, VLQ_EINPUT, "job %lld: input %d: a bad download record",
                       j ? (long long)j->id : 0LL, idx);
    if (!q->drv->input_fetched)
        return err_set(err, VLQ_EIO, "%s: the %s driver cannot record downloads", q->location,
                       q->drv->name);
    return q->drv->input_fetched(q, j, idx, sha256, size_bytes, err);
}
