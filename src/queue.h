/* queue: the durable job queue: jobs, their inputs, attempts, results, and the webhook
 * outbox. One interface, two backends behind a driver table (src/queue_int.h): SQLite
 * (src/queue_sqlite.c) and PostgreSQL (src/queue_pg.c, FOR UPDATE SKIP LOCKED); what
 * does not depend on the database (states, backoff, the webhook payload) is src/queue.c.
 *
 * States: queued -> running -> succeeded | failed | cancelled | dead.
 *   - A worker claims the best runnable job (priority desc, run_after, id) of the kinds
 *     it can run in one statement, under a lease (lease_expires_at) with a fresh claim
 *     token. Every renew, result write, finish and fail carries the token: a worker whose
 *     lease was taken over gets VLQ_EBUSY ("lease lost") and can no longer write (fencing).
 *   - A job whose lease expired is claimed again by the next worker; the lost run counts
 *     as an attempt (attempts is incremented at claim time).
 *   - queue_fail with a transient code while attempts < max_attempts: state failed with
 *     run_after = now + backoff (attempt^4 s +-10% jitter); failed jobs are claimable
 *     again once run_after passes. Out of attempts, or a deterministic code: dead at once
 *     with its reason (code + message) and the job.failed event. Dead jobs are kept,
 *     listed, and can be retried by hand.
 *   - Results and the final state are written in one transaction (exactly-once results),
 *     together with the outbox event when the job has a webhook.
 * Concurrency: one short transaction per call, none held across media or model work.
 * SQLite: WAL, BEGIN IMMEDIATE; a busy database is retried inside and reported as
 * VLQ_EBUSY only after busy_timeout_ms. PostgreSQL: READ COMMITTED, claims with
 * FOR UPDATE SKIP LOCKED, conflicts retried likewise; a lost connection (server restart)
 * is VLQ_EIO and the next call reconnects. Times are always the queue's clock
 * (QueueOptions.now_ms), never the server's. A database written by a newer vlq is
 * refused untouched (SQLite: PRAGMA user_version; PostgreSQL: vlq_schema_version). */
#ifndef VLQ_QUEUE_H
#define VLQ_QUEUE_H

#include "err.h"

#include <stddef.h>
#include <stdint.h>

typedef struct Queue Queue;

typedef enum {
    JOB_QUEUED = 0,
    JOB_RUNNING,
    JOB_SUCCEEDED,
    JOB_FAILED,
    JOB_DEAD,
    JOB_CANCELLED,
} JobState;

/* "queued", "running", ...; and back (-1 if unknown). */
const char *queue_state_name(JobState s);
int queue_state_parse(const char *name);

/* One input file of a job, as recorded at submit. */
typedef struct {
    char *path;         /* absolute */
    int64_t size_bytes;
    int64_t mtime_s;
    char sha256[65];    /* hex */
} JobInput;

/* A job as read from the queue; free with queue_job_free. */
typedef struct {
    int64_t id;
    char *kind;            /* "ocr", "summarize", test kinds */
    JobState state;
    int priority;          /* higher first */
    int attempts;          /* runs started so far (claims) */
    int max_attempts;
    int64_t created_ms, run_after_ms, started_ms, finished_ms, lease_expires_ms;
    char *idem_key;        /* idempotency key or NULL */
    char *prompt;          /* user prompt override or NULL */
    char *webhook_url;     /* or NULL */
    char *webhook_secret;  /* per-job secret or NULL (config's is used) */
    char *params_json;     /* kind-specific parameters as a JSON object text, or NULL */
    char *error_code;      /* last error: "EINPUT", ... or NULL */
    char *error;           /* last error message or NULL */
    int cancel_requested;  /* a running job was asked to stop */
    char *claim_token;     /* set for the claiming worker's copy, else NULL */
    int units_total;       /* units (pages, segments) the kind planned; 0: not yet */
    int units_done;        /* units stored (queue_unit_store), failed ones included */
    JobInput *inputs;
    int n_inputs;
} Job;

void queue_job_free(Job *j);

/* What a submit asks for. */
typedef struct {
    const char *kind;
    const JobInput *inputs;
    int n_inputs;
    int priority;             /* default 0 */
    int max_attempts;         /* 0: the queue's default (config worker.max_attempts) */
    int64_t run_after_ms;     /* 0: now */
    const char *idem_key;     /* NULL: none */
    const char *prompt;       /* NULL: the kind's default */
    const char *webhook_url;  /* NULL: no webhook */
    const char *webhook_secret;
    const char *params_json;  /* NULL: {} */
} JobSpec;

typedef struct {
    int busy_timeout_ms;       /* how long one statement waits for a lock (default 5000) */
    int default_max_attempts;  /* default 3 */
    int64_t (*now_ms)(void);   /* clock, swappable by tests; NULL: util_now_ms */
    const char *file_mode;     /* [queue] file_mode of an SQLite database created here, octal
                                * ("0600", "0660"); NULL or "": 0600 */
} QueueOptions;

/* ---- open, migrate ---- */

/* Open (creating if create) the queue at path and apply the migrations in schema/. The
 * location picks the backend: a postgresql:// or postgres:// URL (libpq's URI syntax) is
 * PostgreSQL, anything else is an SQLite file path. Returns 0 and *out, or VLQ_EINPUT
 * (newer schema, not a vlq database, cannot create, no database there), VLQ_EIO,
 * VLQ_EBUSY with "location: reason" (a URL's password is never printed). */
int queue_open(const char *path, const QueueOptions *opt, int create, Queue **out, char *err);
void queue_close(Queue *q);
/* 1 if location names a PostgreSQL queue (postgresql:// or postgres://), else 0. */
int queue_is_url(const char *location);
/* location for messages and logs into out: a URL's password (user:password@) becomes
 * "***"; anything else is copied (truncated to size). Cannot fail. */
void queue_redact(const char *location, char *out, size_t size);
/* The backend's name: "sqlite" or "postgresql". Cannot fail. */
const char *queue_backend(const Queue *q);
/* Idle wait of a worker: return when a job may have been submitted, or after timeout_ms.
 * PostgreSQL wakes on a notification sent by every submit (LISTEN/NOTIFY); SQLite just
 * sleeps timeout_ms (the caller polls with queue_claim either way). 0, or a transient
 * VLQ_EIO/VLQ_EBUSY when the connection is lost (the next call reconnects). */
int queue_wait(Queue *q, int timeout_ms, char *err);

/* ---- submit ---- */

/* Enqueue a job. With an idempotency key already used, enqueues nothing and returns the
 * first job's id in *id with *existed = 1. */
int queue_submit(Queue *q, const JobSpec *spec, int64_t *id, int *existed, char *err);

/* ---- the worker side (every call after claim carries the job's claim token) ---- */

/* Claim the best runnable job whose kind is in kinds[0..n_kinds), with a lease of
 * lease_ms. Returns 0 and *out (NULL when nothing is runnable), or an error. */
int queue_claim(Queue *q, const char *const *kinds, int n_kinds, int64_t lease_ms,
                const char *worker_id, Job **out, char *err);
/* Extend the lease (call on real progress: a page, a frame chunk). Also reports whether
 * a cancel was requested (*cancel). VLQ_EBUSY "lease lost" when the token is stale. */
int queue_renew(Queue *q, const Job *j, int64_t lease_ms, int *cancel, char *err);
/* Finish successfully: store the result (format e.g. "text", "json", "markdown") and
 * mark succeeded, with the job.succeeded outbox event, in one transaction. */
int queue_succeed(Queue *q, const Job *j, const char *format, const char *result,
                  size_t result_len, const char *summary, char *err);
/* Record a failed attempt with its VLQ_E* code and message: failed with a backoff
 * (transient, attempts left), else dead with the reason and the job.failed event.
 * *new_state (may be NULL) tells which. */
int queue_fail(Queue *q, const Job *j, int code, const char *message, JobState *new_state,
               char *err);
/* The worker saw the cancel request: mark cancelled, job.cancelled event. */
int queue_ack_cancel(Queue *q, const Job *j, char *err);
/* Give a claimed job back untouched (graceful stop): queued, the attempt not counted. */
int queue_release(Queue *q, const Job *j, char *err);

/* ---- per-unit results (pages, segments) ----
 * A kind stores each unit's outcome as it finishes; a later attempt reads them back and
 * skips those units. A unit row is written once: the (job, unit) key refuses a second
 * one, and the write is fenced by the claim token like every other. Rows stay with the
 * job (purged with it); `vlq retry` by hand drops the failed ones so they run again. */

typedef struct {
    int idx;            /* 0-based unit index */
    char *result;       /* the unit's text, or NULL when it failed */
    char *meta_json;    /* kind-specific JSON object text, or NULL */
    int64_t tok_in;     /* prompt tokens (visual included) */
    int64_t tok_out;    /* generated tokens */
    double seconds;     /* wall time of the unit */
    char *error_code;   /* "EINPUT", ... for a failed unit, else NULL */
    char *error;        /* its message, else NULL */
    int attempt;        /* the job attempt that stored it (read back only) */
} JobUnit;

/* Record how many units the claimed job has (for progress). Fenced: VLQ_EBUSY "lease
 * lost" when the token is stale. */
int queue_set_units_total(Queue *q, const Job *j, int units_total, char *err);
/* Store one unit's outcome (strings copied), fenced by j's claim token. Returns 0,
 * VLQ_EBUSY "lease lost", or VLQ_EINPUT "job N: unit K: already stored" (nothing
 * written: a unit is never stored twice). */
int queue_unit_store(Queue *q, const Job *j, const JobUnit *u, char *err);
/* The stored units of job id in unit order (free with queue_units_free). */
int queue_units(Queue *q, int64_t id, JobUnit **out, int *n, char *err);
void queue_units_free(JobUnit *u, int n);

/* The backoff before retry after `attempt` failed runs: attempt^4 s, +-10% jitter. */
int64_t queue_backoff_ms(int attempt, uint64_t *rng);

/* ---- admin ---- */

typedef struct {
    int state;          /* -1: any */
    const char *kind;   /* NULL: any */
    int limit;          /* 0: no limit */
} JobFilter;

/* Jobs matching f, newest first, into *jobs (free each with queue_job_free, then the
 * array with free). */
int queue_list(Queue *q, const JobFilter *f, Job ***jobs, int *n, char *err);
/* One job by id; VLQ_EINPUT "job N: no such job". */
int queue_get(Queue *q, int64_t id, Job **out, char *err);
/* The stored result of a succeeded job (caller frees *result and *format). */
int queue_result(Queue *q, int64_t id, char **format, char **result, size_t *len, char *err);
/* Cancel: a queued job becomes cancelled at once (event written); a running one gets
 * cancel_requested and stops at its next checkpoint. Finished jobs: VLQ_EINPUT. */
int queue_cancel(Queue *q, int64_t id, JobState *new_state, char *err);
/* Retry by hand a dead, failed or cancelled job: queued now, attempts reset to 0. */
int queue_retry(Queue *q, int64_t id, char *err);
/* Delete finished jobs (succeeded, dead, cancelled) older than older_than_ms, with their
 * results, attempts and delivered outbox events. *n_deleted jobs. */
int queue_purge(Queue *q, int64_t older_than_ms, int *n_deleted, char *err);

/* One run of a job (a claim), for `vlq show`. */
typedef struct {
    int attempt;          /* 1-based */
    char *worker_id;
    int64_t started_ms, finished_ms; /* finished 0: still running or lost */
    char *outcome;        /* "succeeded", "failed", "lease_expired", "cancelled", "released", or NULL */
    char *error;          /* or NULL */
} JobAttempt;

/* The attempts of a job, oldest first (free with queue_attempts_free). */
int queue_attempts(Queue *q, int64_t id, JobAttempt **out, int *n, char *err);
void queue_attempts_free(JobAttempt *a, int n);

/* ---- webhook outbox ---- */

typedef enum {
    EVENT_PENDING = 0,
    EVENT_DELIVERED,
    EVENT_FAILED,   /* the retry schedule is spent, or the endpoint is gone (410) */
} EventState;

typedef struct {
    int64_t id;             /* row id */
    char *event_id;         /* webhook-id, "msg_..." */
    int64_t job_id;
    char *type;             /* "job.succeeded", ... */
    char *url;
    char *secret;           /* the per-job secret or NULL (use config's) */
    char *body;             /* the exact JSON bytes to sign and send */
    EventState state;
    int attempts;
    int64_t next_attempt_ms;
    char *last_error;       /* or NULL */
    int last_status;        /* last HTTP status, 0 none */
    char *lease_token;      /* set by queue_events_due (this deliverer's lease), else NULL */
} OutboxEvent;

void queue_event_free(OutboxEvent *e);
/* "pending", "delivered" or "failed". Cannot fail. */
const char *queue_event_state_name(EventState s);

/* Events due now (pending, next_attempt_ms <= now, endpoint not disabled), oldest first,
 * at most max (<= 0: all), leased to the caller for lease_ms: the outbox is shared by the
 * delivery threads of every worker, and no other caller gets a leased event (nor any
 * event of an endpoint with a leased one) until its attempt is recorded or the lease
 * passes. The caller delivers them, then records each attempt. */
int queue_events_due(Queue *q, int max, int64_t lease_ms, OutboxEvent ***events, int *n,
                     char *err);
/* Record one delivery attempt (logged in the attempt table): state and next attempt time
 * as the caller decided from the outcome and the schedule; gone = 1 disables the
 * endpoint (URL) for later events. Fenced by e's lease_token (an event read otherwise,
 * with no token, only while nobody holds it): VLQ_EBUSY "lease lost" when another
 * deliverer took the event over; the lease ends with the attempt. */
int queue_event_attempt(Queue *q, const OutboxEvent *e, EventState new_state,
                        int64_t next_attempt_ms, int http_status, const char *error,
                        double duration_s, int gone, char *err);
/* Give back the lease of an event from queue_events_due that was not tried, so that any
 * deliverer may send it now. Nothing happens when the lease is no longer e's. */
int queue_event_release(Queue *q, const OutboxEvent *e, char *err);
/* Events of one job (job_id > 0) or all, newest first. */
int queue_events_list(Queue *q, int64_t job_id, OutboxEvent ***events, int *n, char *err);
/* Make a failed or delivered event pending again, due now. */
int queue_event_redeliver(Queue *q, const char *event_id, char *err);

/* ---- http(s) inputs ---- */

/* Record what the first download of the claimed job's URL input idx gave (hex SHA-256
 * and size), fenced by j's claim token; later attempts compare against it. A URL input
 * is submitted with an empty sha256; once recorded it is never changed (a second call
 * changes nothing). Returns 0, VLQ_EBUSY "lease lost", or a database error. */
int queue_input_fetched(Queue *q, const Job *j, int idx, const char *sha256,
                        int64_t size_bytes, char *err);

/* ---- copying a whole queue (vlq queue copy) ---- */

typedef struct {
    int64_t jobs;    /* job rows copied */
    int64_t events;  /* outbox event rows copied */
    int64_t rows;    /* rows of every table */
} QueueCopyStats;

/* Called after each table with the rows copied (arg is queue_copy's). */
typedef void (*QueueCopyProgressFn)(void *arg, const char *table, int64_t rows);

/* Copy every row of every table of from into to (any backends), ids kept: jobs in every
 * state with inputs, attempts, results and units, outbox events with their attempts,
 * disabled endpoints. from is read in one snapshot and not changed; to is written in one
 * transaction and must hold no rows (VLQ_EINPUT naming the table, nothing written) unless
 * force, which deletes what it holds first. progress may be NULL. */
int queue_copy(Queue *from, Queue *to, int force, QueueCopyProgressFn progress, void *arg,
               QueueCopyStats *st, char *err);

#endif
