/* queue_int: what the backend-neutral queue (src/queue.c) and its drivers
 * (src/queue_sqlite.c, src/queue_pg.c) share. Private to the queue module.
 *
 * queue.c owns the semantics that do not depend on the database: argument checks,
 * defaults, the state names, the backoff, the retry/dead decision, the automatic result
 * summary and the webhook payload (queue_event_new). A driver owns one database dialect:
 * its connection, its migrations, its transactions and every SQL statement, and nothing
 * else. Each public function of queue.h checks its arguments, prepares what is neutral,
 * then calls exactly one driver operation below.
 *
 * Rules every driver keeps (so the backends behave the same):
 *   - Time comes from queue_now(q) (QueueOptions.now_ms), passed to SQL as a parameter;
 *     never the database's clock.
 *   - Every write after a claim is fenced by the job's claim token and state='running';
 *     zero rows changed is queue_lease_lost().
 *   - The finishing writes (result or state, attempt row, outbox event) are one
 *     transaction; no transaction is held between two operations.
 *   - Errors are VLQ_E* codes with "location: what: reason"; a busy database or a lost
 *     connection is VLQ_EBUSY or VLQ_EIO (transient), never a crash. Driver codes and
 *     messages never leave the driver file.
 *
 * Adding an operation: add a field to QueueDriver (documented like the others), the
 * public wrapper in queue.c (argument checks, then q->drv->op), and the operation in
 * every driver. */
#ifndef VLQ_QUEUE_INT_H
#define VLQ_QUEUE_INT_H

#include "queue.h"

#include <stddef.h>
#include <stdint.h>

typedef struct QueueDriver QueueDriver;

struct Queue {
    const QueueDriver *drv;   /* the backend, chosen by queue_open from the location */
    void *conn;               /* the driver's connection state */
    char *location;           /* path or URL for messages (a URL's password removed) */
    int busy_timeout_ms;      /* how long a busy transaction is retried */
    int default_max_attempts; /* for specs with max_attempts 0 */
    int64_t (*now_ms)(void);  /* the clock (QueueOptions.now_ms or util_now_ms) */
    uint64_t rng;             /* backoff jitter and retry sleeps */
    unsigned file_mode;       /* mode of a database file created here (SQLite; 0600) */
};

/* What queue_claim asks the driver for (kinds non-empty, token fresh). */
typedef struct {
    const char *const *kinds;
    int n_kinds;
    int64_t lease_ms;
    const char *worker_id;
    const char *token;        /* the new claim token (32 hex characters) */
} QueueClaimArgs;

/* A failed attempt as queue_fail decided it: the driver only writes it. */
typedef struct {
    int retry;                /* 1: state failed, claimable at run_after_ms; 0: dead */
    int64_t at_ms;            /* retry: the new run_after_ms; dead: finished_ms */
    const char *code_name;    /* "EINPUT", ... */
    const char *message;      /* the attempt's error message (may be NULL) */
} QueueFailArgs;

/* A succeeded job's result (format and summary already defaulted by queue.c). */
typedef struct {
    const char *format;
    const char *result;
    size_t len;
    const char *summary;
} QueueResultArgs;

/* One delivery attempt of an outbox event, as the caller decided it. */
typedef struct {
    EventState state;
    int64_t next_attempt_ms;
    int http_status;          /* 0: no HTTP status (stored NULL) */
    const char *error;        /* NULL or "" : none */
    double duration_s;
    int gone;                 /* disable the endpoint (410) */
} QueueDeliveryArgs;

/* A new outbox event, built by queue_event_new for the driver to insert. */
typedef struct {
    char event_id[64];        /* "msg_..." */
    char *body;               /* the JSON payload (owned; free) */
    int64_t now_ms;           /* created_ms and first next_attempt_ms */
} QueueNewEvent;

/* ---- vlq queue copy (src/queue_copy.c): whole tables through the drivers ---- */

typedef enum { QUEUE_COL_INT, QUEUE_COL_REAL, QUEUE_COL_TEXT, QUEUE_COL_BLOB } QueueColType;

typedef struct {
    const char *name;
    QueueColType type;
} QueueCol;

/* One table of the queue as vlq queue copy moves it. */
typedef struct {
    const char *name;      /* table name, the same in every dialect */
    const char *order_by;  /* its key: rows are read in this order */
    const char *serial;    /* the column whose id sequence must pass the copied ids, or NULL */
    const QueueCol *cols;  /* every column, in this order in the rows */
    int n_cols;
} QueueTable;

/* One column value of a row; s/len for TEXT and BLOB (borrowed until the callback
 * returns). */
typedef struct {
    int null;
    int64_t i;
    double d;
    const char *s;
    size_t len;
} QueueValue;

/* The tables, parents before children (queue_copy.c). */
extern const QueueTable queue_tables[];
extern const int queue_n_tables;

/* Called for each row read; a nonzero return stops the read and is returned. */
typedef int (*QueueRowFn)(void *arg, const QueueValue *row, char *err);

#define QUEUE_COPY_MAX_COLS 32 /* the widest table has 22 */

/* The driver table: one operation per public function that touches the database. Every
 * operation returns 0 or a negative VLQ_E* with err set; arguments are already checked. */
struct QueueDriver {
    const char *name; /* "sqlite", "postgresql" */
    /* Connect to location (create the database if create and the dialect can), apply the
     * migrations, set q->conn. On failure q->conn may be set: close is still called. */
    int (*open)(Queue *q, const char *location, int create, char *err);
    /* Release q->conn (NULL-safe). */
    void (*close)(Queue *q);
    /* Return when a job may have been submitted or timeout_ms passed (0 either way). */
    int (*wait)(Queue *q, int timeout_ms, char *err);

    /* Insert the job (max_attempts and run_after_ms already resolved, > 0), or find the
     * job of the same idempotency key (*existed = 1). */
    int (*submit)(Queue *q, const JobSpec *spec, int64_t *id, int *existed, char *err);
    /* Job id with its inputs into *out; *out NULL (and 0) when there is none. */
    int (*get)(Queue *q, int64_t id, Job **out, char *err);
    /* Reap jobs whose lease expired (dead ones get job.failed), then claim the best
     * runnable job; *id 0 when none. One transaction. */
    int (*claim)(Queue *q, const QueueClaimArgs *a, int64_t *id, char *err);
    /* Fenced: lease_expires_ms = lease_until_ms; *cancel = cancel_requested. */
    int (*renew)(Queue *q, const Job *j, int64_t lease_until_ms, int *cancel, char *err);
    /* Fenced: succeeded + result + attempt closed + job.succeeded event. */
    int (*succeed)(Queue *q, const Job *j, const QueueResultArgs *r, char *err);
    /* Fenced: failed (retry) or dead (+ job.failed event), attempt closed "failed". */
    int (*fail)(Queue *q, const Job *j, const QueueFailArgs *f, char *err);
    /* Fenced: cancelled, attempt closed, job.cancelled event. */
    int (*ack_cancel)(Queue *q, const Job *j, char *err);
    /* Fenced: back to queued (failed if attempts > 1), the attempt not counted. */
    int (*release)(Queue *q, const Job *j, char *err);

    /* Fenced: units_total. */
    int (*set_units_total)(Queue *q, const Job *j, int units_total, char *err);
    /* Fenced insert of one unit; a second store of (job, unit) is VLQ_EINPUT "already
     * stored" with nothing written. */
    int (*unit_store)(Queue *q, const Job *j, const JobUnit *u, char *err);
    /* The units of job id, in unit order. */
    int (*units)(Queue *q, int64_t id, JobUnit **out, int *n, char *err);

    /* Jobs matching f (not NULL), newest first, with their inputs. */
    int (*list)(Queue *q, const JobFilter *f, Job ***jobs, int *n, char *err);
    /* The result row of job id; VLQ_EIO "result missing" when there is none. */
    int (*result)(Queue *q, int64_t id, char **format, char **result, size_t *len, char *err);
    /* In one transaction: queue_cancel_check, then cancelled (+ event) or
     * cancel_requested; *new_state says which. */
    int (*cancel)(Queue *q, int64_t id, JobState *new_state, char *err);
    /* In one transaction: queue_retry_check, drop the failed units, queued now. */
    int (*retry)(Queue *q, int64_t id, char *err);
    /* Delete finished jobs with finished_ms < cutoff_ms and no pending event. */
    int (*purge)(Queue *q, int64_t cutoff_ms, int *n_deleted, char *err);
    /* The attempt rows of job id, oldest first. */
    int (*attempts)(Queue *q, int64_t id, JobAttempt **out, int *n, char *err);

    /* Lease the events due now (max <= 0: all) to token until now + lease_ms, and return
     * them oldest first with lease_token set. One transaction. */
    int (*events_due)(Queue *q, int max, int64_t lease_ms, const char *token,
                      OutboxEvent ***events, int *n, char *err);
    /* Events of job_id (> 0) or all, newest first. */
    int (*events_list)(Queue *q, int64_t job_id, OutboxEvent ***events, int *n, char *err);
    /* Record a delivery attempt of e, fenced by e->lease_token (NULL: only an unleased
     * event), ending the lease; VLQ_EINPUT when the event does not exist, else
     * queue_event_lease_lost when the fence fails. */
    int (*event_attempt)(Queue *q, const OutboxEvent *e, const QueueDeliveryArgs *d, char *err);
    /* End e's lease if it is still e->lease_token's (else nothing). */
    int (*event_release)(Queue *q, const OutboxEvent *e, char *err);
    /* Event pending again, due now; its endpoint re-enabled. */
    int (*event_redeliver)(Queue *q, const char *event_id, char *err);
    /* ---- vlq queue copy (queue_copy.c) ---- */
    /* Start a copy: write 0, a read snapshot of every table (the source); write 1, the
     * one write transaction of the whole copy (the target). */
    int (*copy_begin)(Queue *q, int write, char *err);
    /* Call row() for each row of t in t->order_by order, the columns as t->cols; refuses
     * (VLQ_EINPUT) a table whose columns are not exactly t->cols. */
    int (*copy_read)(Queue *q, const QueueTable *t, QueueRowFn row, void *arg, char *err);
    /* Insert one row of t (ids as given). */
    int (*copy_write)(Queue *q, const QueueTable *t, const QueueValue *row, char *err);
    /* Delete every row of t (vlq queue copy --force). */
    int (*copy_clear)(Queue *q, const QueueTable *t, char *err);
    /* End the copy: commit (write side: after moving the id sequences past the copied
     * ids), or roll back. */
    int (*copy_end)(Queue *q, int commit, char *err);
    /* Fenced: record a URL input's first download (sha256 still ''). */
    int (*input_fetched)(Queue *q, const Job *j, int idx, const char *sha256,
                         int64_t size_bytes, char *err);
};

extern const QueueDriver queue_sqlite_driver; /* queue_sqlite.c */
extern const QueueDriver queue_pg_driver;     /* queue_pg.c */

static inline int64_t queue_now(const Queue *q) { return q->now_ms(); }

/* The outbox event of type about job j as it is after the finishing write (j read back
 * inside the transaction); r NULL for events without a result. Fills *ev (free ev->body). */
int queue_event_new(const Job *j, const char *type, int64_t now_ms, const QueueResultArgs *r,
                    QueueNewEvent *ev, char *err);
/* "job N: lease lost (another worker took the job over)" as VLQ_EBUSY. */
int queue_lease_lost(const Job *j, char *err);
/* "event X: lease lost (...)" as VLQ_EBUSY. */
int queue_event_lease_lost(const OutboxEvent *e, char *err);
/* A fresh random token: 32 hex characters. 0 or VLQ_EIO. */
int queue_new_token(char out[33], char *err);
/* "job N: no such job" as VLQ_EINPUT. */
int queue_no_job(int64_t id, char *err);
/* 0 when job id in state s can be cancelled, else VLQ_EINPUT "already ..." . */
int queue_cancel_check(int64_t id, JobState s, char *err);
/* 0 when job id in state s can be retried by hand, else VLQ_EINPUT. */
int queue_retry_check(int64_t id, JobState s, char *err);
/* The state from its name, or -1 (same as queue_state_parse). */
int queue_event_state_parse(const char *name);
/* Sleep about ms (+ a little jitter from q->rng), for busy retries. */
void queue_retry_sleep(Queue *q, int64_t ms);

#endif
