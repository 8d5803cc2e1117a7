/* queue_pg: the queue's PostgreSQL driver, through libpq (see queue_int.h for what a
 * driver owns, queue.h for the semantics it keeps exactly as the SQLite driver does).
 *
 * Design:
 *   - One connection per Queue. Every operation is one short transaction under READ
 *     COMMITTED (pg_tx); a serialization failure, a deadlock or a lock wait past
 *     lock_timeout (= busy_timeout_ms) rolls it back and runs it again until
 *     busy_timeout_ms passes, then it is VLQ_EBUSY.
 *   - The claim is one UPDATE whose subquery picks the best runnable job with
 *     FOR UPDATE SKIP LOCKED, so concurrent claimers never wait on each other and never
 *     take the same job. The reaping of lost leases before it also skips locked rows.
 *   - Fencing as in SQLite: `WHERE id=$1 AND claim_token=$2 AND state='running'`.
 *   - Time is always vlq's clock (queue_now), passed as a parameter; never now().
 *   - Wake-ups: submit, retry and release NOTIFY vlq_jobs in their transaction (sent at
 *     commit); queue_wait LISTENs and waits on the connection's socket.
 *   - A lost connection (server restart, network) fails the current call with VLQ_EIO;
 *     the next call resets the connection (backoff 0.1 s doubling to 5 s between tries)
 *     and LISTENs again. Nothing is retried blindly: a commit whose answer was lost is
 *     reported, and the claim token keeps a stale writer out.
 *   - Migrations are compiled in (build/schema_sql.c, from schema/pg/NNN_*.sql), applied
 *     under an advisory lock in one transaction and recorded in vlq_schema_version; a
 *     database with a newer version is refused untouched.
 * libpq codes and messages never leave this file (style rule 12). */
#include "queue_int.h"

#include "log.h"
#include "util.h"

#include <libpq-fe.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const char *const queue_migrations_pg[]; /* build/schema_sql.c */

#define PG_CHANNEL "vlq_jobs"
#define PG_MAX_PARAMS 12
#define PG_BACKOFF_MAX_MS 5000

/* The connection state behind q->conn. */
typedef struct {
    PGconn *pg;
    int listening;      /* LISTEN done on this connection (redone after a reconnect) */
    int backoff_ms;     /* reconnect backoff; 0 while connected */
    double next_try_s;  /* no reconnect attempt before this (util_mono_s) */
    int retry_hit;      /* the current transaction hit a conflict worth running again */
} PgConn;

#define PGC(q) ((PgConn *)(q)->conn)

/* ---- statements ---- */

/* The parameters of one statement: text, or binary where fmt is 1. */
typedef struct {
    const char *v[PG_MAX_PARAMS];
    int len[PG_MAX_PARAMS];
    int fmt[PG_MAX_PARAMS];
    char num[PG_MAX_PARAMS][32];
    int n;
} PgArgs;

static void pa_str(PgArgs *a, const char *s)
{
    VLQ_ASSERT(a->n < PG_MAX_PARAMS);
    a->v[a->n++] = s;
}

static void pa_i64(PgArgs *a, int64_t x)
{
    VLQ_ASSERT(a->n < PG_MAX_PARAMS);
    snprintf(a->num[a->n], sizeof a->num[0], "%lld", (long long)x);
    a->v[a->n] = a->num[a->n];
    a->n++;
}

static void pa_f64(PgArgs *a, double x)
{
    VLQ_ASSERT(a->n < PG_MAX_PARAMS);
    snprintf(a->num[a->n], sizeof a->num[0], "%.17g", x);
    a->v[a->n] = a->num[a->n];
    a->n++;
}

static void pa_bin(PgArgs *a, const void *p, int n)
{
    VLQ_ASSERT(a->n < PG_MAX_PARAMS);
    a->v[a->n] = p;
    a->len[a->n] = n;
    a->fmt[a->n] = 1;
    a->n++;
}

/* The first line of a libpq or server message, for err. */
static void pg_msg(const char *m, char *out, size_t size)
{
    snprintf(out, size, "%s", m && m[0] ? m : "unknown error");
    out[strcspn(out, "\n")] = '\0';
}

/* Translate a failed statement (r may be NULL) into a VLQ code with "location: what:
 * message": a lost connection is VLQ_EIO; a conflict worth running the transaction again
 * (serialization failure, deadlock, lock timeout) sets retry_hit and is VLQ_EBUSY. */
static int pg_err(Queue *q, const PGresult *r, const char *what, char *err)
{
    PgConn *c = PGC(q);
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    char msg[160];
    pg_msg(r && PQresultErrorMessage(r)[0] ? PQresultErrorMessage(r) : PQerrorMessage(c->pg),
           msg, sizeof msg);
    if (PQstatus(c->pg) != CONNECTION_OK || (state && (!strncmp(state, "08", 2) ||
                                                       !strncmp(state, "57P", 3))))
        return err_set(err, VLQ_EIO, "%s: %s: the connection was lost (%s)", q->location, what,
                       msg);
    if (state && (!strcmp(state, "40001") || !strcmp(state, "40P01") ||
                  !strcmp(state, "55P03"))) {
        c->retry_hit = 1;
        return err_set(err, VLQ_EBUSY, "%s: %s: %s", q->location, what, msg);
    }
    return err_set(err, VLQ_EIO, "%s: %s: %s", q->location, what, msg);
}

/* Run sql with args a (may be NULL); binary results if bin. 0 and *out (PQclear it; out
 * may be NULL), or the error. */
static int pg_run(Queue *q, const char *sql, const PgArgs *a, int bin, PGresult **out,
                  const char *what, char *err)
{
    if (out)
        *out = NULL;
    PGresult *r = PQexecParams(PGC(q)->pg, sql, a ? a->n : 0, NULL, a ? a->v : NULL,
                               a ? a->len : NULL, a ? a->fmt : NULL, bin);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        int rc = pg_err(q, r, what, err);
        PQclear(r);
        return rc;
    }
    if (out)
        *out = r;
    else
        PQclear(r);
    return 0;
}

/* Rows changed by a command result. */
static int64_t pg_changes(const PGresult *r) { return strtoll(PQcmdTuples((PGresult *)r), NULL, 10); }

static char *pg_text(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : xstrdup(PQgetvalue(r, row, col));
}

static int64_t pg_i64(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static double pg_f64(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtod(PQgetvalue(r, row, col), NULL);
}

/* ---- the connection ---- */

/* Notices ("relation already exists, skipping") go to the debug log, not stderr. */
static void pg_notice(void *arg, const char *msg)
{
    (void)arg;
    char line[200];
    pg_msg(msg, line, sizeof line);
    log_debug("postgresql: %s", line);
}

/* Session settings, after every (re)connect: lock waits bounded by busy_timeout_ms. */
static int pg_session(Queue *q, char *err)
{
    PQsetNoticeProcessor(PGC(q)->pg, pg_notice, NULL);
    char sql[128];
    snprintf(sql, sizeof sql,
             "SET lock_timeout = %d; SET client_min_messages = warning; SET TIME ZONE 'UTC'",
             q->busy_timeout_ms);
    PGresult *r = PQexec(PGC(q)->pg, sql);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : pg_err(q, r, "session settings", err);
    PQclear(r);
    return rc;
}

static int pg_listen(Queue *q, char *err)
{
    int rc = pg_run(q, "LISTEN " PG_CHANNEL, NULL, 0, NULL, "listen", err);
    PGC(q)->listening = rc == 0;
    return rc;
}

/* A usable connection: reconnect a lost one (not before its backoff passes). */
static int pg_ensure(Queue *q, char *err)
{
    PgConn *c = PGC(q);
    if (PQstatus(c->pg) == CONNECTION_OK)
        return 0;
    double now = util_mono_s();
    if (now < c->next_try_s)
        return err_set(err, VLQ_EIO, "%s: the connection is lost; reconnecting in %d ms",
                       q->location, (int)((c->next_try_s - now) * 1000) + 1);
    PQreset(c->pg);
    if (PQstatus(c->pg) != CONNECTION_OK) {
        c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : 100;
        if (c->backoff_ms > PG_BACKOFF_MAX_MS)
            c->backoff_ms = PG_BACKOFF_MAX_MS;
        c->next_try_s = util_mono_s() + c->backoff_ms / 1000.0;
        char msg[160];
        pg_msg(PQerrorMessage(c->pg), msg, sizeof msg);
        return err_set(err, VLQ_EIO, "%s: cannot reconnect: %s", q->location, msg);
    }
    c->backoff_ms = 0;
    log_info("%s: reconnected", q->location);
    int rc = pg_session(q, err);
    if (rc == 0 && c->listening)
        rc = pg_listen(q, err);
    return rc;
}

/* ---- transactions with conflict retry ---- */

typedef int (*PgTxFn)(Queue *q, void *arg, char *err);

/* Run fn inside BEGIN ... COMMIT (READ COMMITTED), running the whole transaction again
 * while it meets conflicts (retry_hit), up to busy_timeout_ms. fn returns 0 to commit;
 * any other code rolls back and is returned. */
static int pg_tx(Queue *q, PgTxFn fn, void *arg, char *err)
{
    PgConn *c = PGC(q);
    int rc = pg_ensure(q, err);
    if (rc)
        return rc;
    double deadline = util_mono_s() + q->busy_timeout_ms / 1000.0;
    int64_t sleep_ms = 1;
    for (;;) {
        c->retry_hit = 0;
        rc = pg_run(q, "BEGIN ISOLATION LEVEL READ COMMITTED", NULL, 0, NULL, "begin", err);
        if (rc == 0) {
            rc = fn(q, arg, err);
            if (rc == 0 && (rc = pg_run(q, "COMMIT", NULL, 0, NULL, "commit", err)) == 0)
                return 0;
        }
        if (PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
            PQclear(PQexec(c->pg, "ROLLBACK"));
        if (!c->retry_hit)
            return rc;
        if (util_mono_s() > deadline)
            return err_set(err, VLQ_EBUSY, "%s: the database stayed busy for %d ms", q->location,
                           q->busy_timeout_ms);
        queue_retry_sleep(q, sleep_ms);
        sleep_ms = sleep_ms < 32 ? sleep_ms * 2 : 32;
    }
}

/* ---- open and migrate ---- */

static int pg_count_migrations(void)
{
    int n = 0;
    while (queue_migrations_pg[n])
        n++;
    return n;
}

typedef struct {
    int create;
} MigrateArg;

static int pg_migrate_tx(Queue *q, void *arg, char *err)
{
    MigrateArg *a = arg;
    PGresult *r;
    /* one migrator at a time: a second opener waits here, then finds the work done */
    int rc = pg_run(q, "SELECT pg_advisory_xact_lock(7236082617318166065)", NULL, 0, NULL,
                    "lock the schema", err);
    if (rc)
        return rc;
    rc = pg_run(q,
                "SELECT (SELECT count(*) FROM pg_tables WHERE schemaname=current_schema()), "
                "to_regclass('jobs') IS NOT NULL, to_regclass('vlq_schema_version') IS NOT NULL",
                NULL, 0, &r, "read the schema", err);
    if (rc)
        return rc;
    int64_t n_tables = pg_i64(r, 0, 0);
    int has_jobs = PQgetvalue(r, 0, 1)[0] == 't', has_version = PQgetvalue(r, 0, 2)[0] == 't';
    PQclear(r);
    int newest = pg_count_migrations(), have = 0;
    if (has_version) {
        if ((rc = pg_run(q, "SELECT max(version) FROM vlq_schema_version", NULL, 0, &r,
                         "read the schema version", err)) != 0)
            return rc;
        have = (int)pg_i64(r, 0, 0);
        PQclear(r);
        if (have > newest)
            return err_set(err, VLQ_EINPUT,
                           "%s: written by a newer vlq (schema %d, this vlq knows %d); not changed",
                           q->location, have, newest);
    } else if (n_tables > 0 || has_jobs) {
        return err_set(err, VLQ_EINPUT, "%s: not a vlq queue database (it has other tables)",
                       q->location);
    } else if (!a->create) {
        return err_set(err, VLQ_EINPUT,
                       "%s: no queue in this database (run `vlq init`, or pass --db URL)",
                       q->location);
    } else if ((rc = pg_run(q, "CREATE TABLE vlq_schema_version (version INTEGER NOT NULL)",
                            NULL, 0, NULL, "create the version table", err)) != 0 ||
               (rc = pg_run(q, "INSERT INTO vlq_schema_version VALUES (0)", NULL, 0, NULL,
                            "create the version table", err)) != 0) {
        return rc;
    }
    for (int v = have; v < newest; v++) {
        PGresult *m = PQexec(PGC(q)->pg, queue_migrations_pg[v]);
        if (PQresultStatus(m) != PGRES_COMMAND_OK) {
            char what[32];
            snprintf(what, sizeof what, "migration %d", v + 1);
            rc = pg_err(q, m, what, err);
            PQclear(m);
            return rc;
        }
        PQclear(m);
        PgArgs p = {0};
        pa_i64(&p, v + 1);
        if ((rc = pg_run(q, "UPDATE vlq_schema_version SET version=$1", &p, 0, NULL,
                         "set the schema version", err)) != 0)
            return rc;
    }
    return 0;
}

static int pgq_open(Queue *q, const char *url, int create, char *err)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &perr);
    if (!opts) {
        char msg[160];
        pg_msg(perr ? perr : "cannot parse", msg, sizeof msg);
        PQfreemem(perr);
        return err_set(err, VLQ_EINPUT, "%s: not a valid PostgreSQL URL: %s", q->location, msg);
    }
    PQconninfoFree(opts);
    PgConn *c = xcalloc(1, sizeof *c);
    q->conn = c;
    /* defaults the URL may override (it comes after them): a dead host or a silent
     * network fails a connect or a query in seconds instead of hanging a worker */
    static const char *const keys[] = {"connect_timeout", "keepalives", "keepalives_idle",
                                       "keepalives_interval", "keepalives_count",
                                       "application_name", "dbname", NULL};
    const char *const vals[] = {"10", "1", "30", "10", "3", "vlq", url, NULL};
    c->pg = PQconnectdbParams(keys, vals, 1);
    if (!c->pg)
        return err_set(err, VLQ_ENOMEM, "%s: out of memory", q->location);
    if (PQstatus(c->pg) != CONNECTION_OK) {
        char msg[200];
        pg_msg(PQerrorMessage(c->pg), msg, sizeof msg);
        return err_set(err, VLQ_EIO, "%s: cannot connect: %s", q->location, msg);
    }
    int rc = pg_session(q, err);
    MigrateArg m = {.create = create};
    if (rc == 0)
        rc = pg_tx(q, pg_migrate_tx, &m, err);
    return rc;
}

static void pgq_close(Queue *q)
{
    PgConn *c = q->conn;
    if (!c)
        return;
    PQfinish(c->pg);
    free(c);
    q->conn = NULL;
}

/* Drain the notifications libpq holds; 1 if there was any. */
static int pg_notified(PgConn *c)
{
    int any = 0;
    PGnotify *n;
    while ((n = PQnotifies(c->pg)) != NULL) {
        any = 1;
        PQfreemem(n);
    }
    return any;
}

static int pg_wait_socket(Queue *q, int timeout_ms, char *err)
{
    PgConn *c = PGC(q);
    int rc = pg_ensure(q, err);
    if (rc == 0 && !c->listening)
        rc = pg_listen(q, err);
    if (rc)
        return rc;
    if (!PQconsumeInput(c->pg))
        return pg_err(q, NULL, "wait", err);
    if (pg_notified(c))
        return 1;
    struct pollfd p = {.fd = PQsocket(c->pg), .events = POLLIN};
    if (p.fd < 0)
        return pg_err(q, NULL, "wait", err);
    if (poll(&p, 1, timeout_ms) <= 0) /* timeout, or a signal: the caller polls anyway */
        return 0;
    if (!PQconsumeInput(c->pg))
        return pg_err(q, NULL, "wait", err);
    return pg_notified(c);
}

static int pgq_wait(Queue *q, int timeout_ms, char *err)
{
    double t0 = util_mono_s();
    int rc = pg_wait_socket(q, timeout_ms, err);
    if (rc < 0) { /* keep the caller's pace while the server is away */
        int64_t left = timeout_ms - (int64_t)((util_mono_s() - t0) * 1000);
        if (left > 0)
            util_sleep_ms(left);
    }
    return rc;
}

/* ---- jobs: reading ---- */

#define JOB_COLS                                                                                \
    "id, kind, state, priority, attempts, max_attempts, created_ms, run_after_ms, "             \
    "coalesce(started_ms,0), coalesce(finished_ms,0), coalesce(lease_expires_ms,0), idem_key, " \
    "prompt, webhook_url, webhook_secret, params_json, error_code, error, cancel_requested, "    \
    "claim_token, units_total, (SELECT count(*) FROM job_units u WHERE u.job_id=jobs.id)"

static Job *pg_row_job(const PGresult *r, int i)
{
    Job *j = xcalloc(1, sizeof *j);
    j->id = pg_i64(r, i, 0);
    j->kind = pg_text(r, i, 1);
    j->state = queue_state_parse(PQgetvalue(r, i, 2));
    j->priority = (int)pg_i64(r, i, 3);
    j->attempts = (int)pg_i64(r, i, 4);
    j->max_attempts = (int)pg_i64(r, i, 5);
    j->created_ms = pg_i64(r, i, 6);
    j->run_after_ms = pg_i64(r, i, 7);
    j->started_ms = pg_i64(r, i, 8);
    j->finished_ms = pg_i64(r, i, 9);
    j->lease_expires_ms = pg_i64(r, i, 10);
    j->idem_key = pg_text(r, i, 11);
    j->prompt = pg_text(r, i, 12);
    j->webhook_url = pg_text(r, i, 13);
    j->webhook_secret = pg_text(r, i, 14);
    j->params_json = pg_text(r, i, 15);
    j->error_code = pg_text(r, i, 16);
    j->error = pg_text(r, i, 17);
    j->cancel_requested = (int)pg_i64(r, i, 18);
    j->claim_token = pg_text(r, i, 19);
    j->units_total = (int)pg_i64(r, i, 20);
    j->units_done = (int)pg_i64(r, i, 21);
    return j;
}

/* The inputs of jobs[0..n), in one query. */
static int pg_load_inputs(Queue *q, Job **jobs, int n, char *err)
{
    if (n == 0)
        return 0;
    Buf ids = {0};
    buf_puts(&ids, "{");
    for (int i = 0; i < n; i++)
        buf_printf(&ids, "%s%lld", i ? "," : "", (long long)jobs[i]->id);
    buf_puts(&ids, "}");
    PgArgs a = {0};
    pa_str(&a, ids.data);
    PGresult *r;
    int rc = pg_run(q,
                    "SELECT job_id, path, size_bytes, mtime_s, sha256 FROM job_inputs WHERE "
                    "job_id = ANY($1::bigint[]) ORDER BY job_id, idx",
                    &a, 0, &r, "read inputs", err);
    buf_clear(&ids);
    if (rc)
        return rc;
    for (int row = 0, rows = PQntuples(r); row < rows; row++) {
        int64_t id = pg_i64(r, row, 0);
        for (int i = 0; i < n; i++) {
            Job *j = jobs[i];
            if (j->id != id)
                continue;
            j->inputs = xrealloc(j->inputs, (size_t)(j->n_inputs + 1) * sizeof *j->inputs);
            JobInput *in = &j->inputs[j->n_inputs++];
            in->path = pg_text(r, row, 1);
            in->size_bytes = pg_i64(r, row, 2);
            in->mtime_s = pg_i64(r, row, 3);
            snprintf(in->sha256, sizeof in->sha256, "%s", PQgetvalue(r, row, 4));
            break;
        }
    }
    PQclear(r);
    return 0;
}

/* Read job id (inside or outside a transaction); *out NULL if there is none. */
static int pg_read_job(Queue *q, int64_t id, Job **out, char *err)
{
    *out = NULL;
    PgArgs a = {0};
    pa_i64(&a, id);
    PGresult *r;
    int rc = pg_run(q, "SELECT " JOB_COLS " FROM jobs WHERE id=$1", &a, 0, &r, "read a job", err);
    if (rc)
        return rc;
    if (PQntuples(r) == 1)
        *out = pg_row_job(r, 0);
    PQclear(r);
    if (*out && (rc = pg_load_inputs(q, out, 1, err)) != 0) {
        queue_job_free(*out);
        *out = NULL;
    }
    return rc;
}

static int pgq_get(Queue *q, int64_t id, Job **out, char *err)
{
    int rc = pg_ensure(q, err);
    return rc ? rc : pg_read_job(q, id, out, err);
}

/* ---- submit ---- */

static int pg_notify(Queue *q, char *err)
{
    return pg_run(q, "NOTIFY " PG_CHANNEL, NULL, 0, NULL, "notify", err);
}

typedef struct {
    const JobSpec *spec;
    int64_t id;
    int existed;
} SubmitArg;

static int pg_submit_tx(Queue *q, void *arg, char *err)
{
    SubmitArg *a = arg;
    const JobSpec *s = a->spec;
    a->existed = 0;
    PgArgs p = {0};
    pa_str(&p, s->kind);
    pa_i64(&p, s->priority);
    pa_i64(&p, s->max_attempts);
    pa_i64(&p, queue_now(q));
    pa_i64(&p, s->run_after_ms);
    pa_str(&p, s->idem_key);
    pa_str(&p, s->prompt);
    pa_str(&p, s->webhook_url);
    pa_str(&p, s->webhook_secret);
    pa_str(&p, s->params_json);
    PGresult *r;
    /* a concurrent submit of the same key waits for the first, then finds its job */
    int rc = pg_run(q,
                    "INSERT INTO jobs (kind, priority, max_attempts, created_ms, run_after_ms, "
                    "idem_key, prompt, webhook_url, webhook_secret, params_json) VALUES "
                    "($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) ON CONFLICT (idem_key) DO NOTHING "
                    "RETURNING id",
                    &p, 0, &r, "submit", err);
    if (rc)
        return rc;
    int inserted = PQntuples(r) == 1;
    a->id = inserted ? pg_i64(r, 0, 0) : 0;
    PQclear(r);
    if (!inserted) {
        PgArgs k = {0};
        pa_str(&k, s->idem_key);
        if ((rc = pg_run(q, "SELECT id FROM jobs WHERE idem_key=$1", &k, 0, &r, "submit",
                         err)) != 0)
            return rc;
        a->id = PQntuples(r) == 1 ? pg_i64(r, 0, 0) : 0;
        PQclear(r);
        if (!a->id) /* only a NULL key never conflicts: cannot happen */
            return err_set(err, VLQ_EIO, "%s: submit: the job was neither stored nor found",
                           q->location);
        a->existed = 1;
        return 0;
    }
    for (int i = 0; i < s->n_inputs; i++) {
        PgArgs in = {0};
        pa_i64(&in, a->id);
        pa_i64(&in, i);
        pa_str(&in, s->inputs[i].path);
        pa_i64(&in, s->inputs[i].size_bytes);
        pa_i64(&in, s->inputs[i].mtime_s);
        pa_str(&in, s->inputs[i].sha256);
        if ((rc = pg_run(q,
                         "INSERT INTO job_inputs (job_id, idx, path, size_bytes, mtime_s, "
                         "sha256) VALUES ($1,$2,$3,$4,$5,$6)",
                         &in, 0, NULL, "submit inputs", err)) != 0)
            return rc;
    }
    return pg_notify(q, err);
}

static int pgq_submit(Queue *q, const JobSpec *spec, int64_t *id, int *existed, char *err)
{
    SubmitArg a = {.spec = spec};
    int rc = pg_tx(q, pg_submit_tx, &a, err);
    if (rc == 0) {
        *id = a.id;
        *existed = a.existed;
    }
    return rc;
}

/* ---- events (written inside the finishing transaction) ---- */

/* Write the outbox row for job id's event type, if the job has a webhook; the payload is
 * built by queue.c from the job as re-read here (the committed-to-be state). */
static int pg_add_event(Queue *q, int64_t id, const char *type, const QueueResultArgs *res,
                        char *err)
{
    Job *j;
    int rc = pg_read_job(q, id, &j, err);
    if (rc || !j || !j->webhook_url) {
        queue_job_free(j);
        return rc;
    }
    QueueNewEvent ev;
    if ((rc = queue_event_new(j, type, queue_now(q), res, &ev, err)) != 0) {
        queue_job_free(j);
        return rc;
    }
    PgArgs a = {0};
    pa_str(&a, ev.event_id);
    pa_i64(&a, id);
    pa_str(&a, type);
    pa_str(&a, j->webhook_url);
    pa_str(&a, j->webhook_secret);
    pa_str(&a, ev.body);
    pa_i64(&a, ev.now_ms);
    /* an endpoint disabled by a 410 gets no more events: recorded failed, listed */
    rc = pg_run(q,
                "INSERT INTO events (event_id, job_id, type, url, secret, body, next_attempt_ms, "
                "created_ms, state, last_error) SELECT $1::text, $2::bigint, $3::text, $4::text, "
                "$5::text, $6::text, $7::bigint, $7::bigint, "
                "CASE WHEN d.url IS NULL THEN 'pending' ELSE 'failed' END, "
                "CASE WHEN d.url IS NULL THEN NULL ELSE 'endpoint disabled (410 Gone), not sent' "
                "END FROM (SELECT 1) AS one LEFT JOIN disabled_endpoints d ON d.url=$4::text",
                &a, 0, NULL, "write the webhook event", err);
    free(ev.body);
    queue_job_free(j);
    return rc;
}

/* ---- the worker side ---- */

/* Jobs whose lease expired: close their lost attempt; those out of attempts go dead
 * (with their job.failed event) instead of running again. Rows another claimer is
 * reaping or claiming right now are skipped (it will do it). */
static int pg_reap(Queue *q, int64_t now, char *err)
{
    PgArgs a = {0};
    pa_i64(&a, now);
    int rc = pg_run(q,
                    "WITH lost AS (SELECT id FROM jobs WHERE state='running' AND "
                    "lease_expires_ms<$1 FOR UPDATE SKIP LOCKED) "
                    "UPDATE attempts t SET finished_ms=$1, outcome='lease_expired', "
                    "error='the worker was lost (lease expired)' FROM lost "
                    "WHERE t.job_id=lost.id AND t.finished_ms IS NULL",
                    &a, 0, NULL, "reap", err);
    if (rc)
        return rc;
    PGresult *r;
    rc = pg_run(q,
                "UPDATE jobs SET state='dead', finished_ms=$1, claim_token=NULL, "
                "error_code='EBUSY', error='the worker was lost (lease expired) on the last "
                "attempt' WHERE id IN (SELECT id FROM jobs WHERE state='running' AND "
                "lease_expires_ms<$1 AND attempts>=max_attempts FOR UPDATE SKIP LOCKED) "
                "RETURNING id",
                &a, 0, &r, "reap", err);
    if (rc)
        return rc;
    for (int i = 0, n = PQntuples(r); i < n && rc == 0; i++)
        rc = pg_add_event(q, pg_i64(r, i, 0), "job.failed", NULL, err);
    PQclear(r);
    return rc;
}

typedef struct {
    const QueueClaimArgs *c;
    int64_t id;
} ClaimArg;

/* kinds as a PostgreSQL text[] literal: {"a","b"} with " and \ escaped. */
static char *pg_text_array(const char *const *v, int n)
{
    Buf b = {0};
    buf_puts(&b, "{");
    for (int i = 0; i < n; i++) {
        buf_puts(&b, i ? ",\"" : "\"");
        for (const char *s = v[i]; *s; s++) {
            if (*s == '"' || *s == '\\')
                buf_puts(&b, "\\");
            buf_append(&b, s, 1);
        }
        buf_puts(&b, "\"");
    }
    buf_puts(&b, "}");
    return buf_take(&b);
}

static int pg_claim_tx(Queue *q, void *arg, char *err)
{
    ClaimArg *a = arg;
    a->id = 0;
    int64_t now = queue_now(q);
    int rc = pg_reap(q, now, err);
    if (rc)
        return rc;
    char *kinds = pg_text_array(a->c->kinds, a->c->n_kinds);
    PgArgs p = {0};
    pa_str(&p, a->c->token);
    pa_i64(&p, now);
    pa_i64(&p, a->c->lease_ms);
    pa_str(&p, a->c->worker_id);
    pa_str(&p, kinds);
    PGresult *r;
    /* the best of two candidates that no other claimer holds right now: the best job
     * whose worker was lost (lease expired) and the best queued or failed job whose
     * run_after passed. Each candidate walks its partial index in claim order (one query
     * with OR would sort every runnable job: 36 ms instead of 0.5 ms at 20,000 queued);
     * the candidate not chosen stays locked only until this transaction ends. */
    rc = pg_run(q,
                "WITH lost AS (SELECT id, priority, run_after_ms FROM jobs WHERE "
                "state='running' AND lease_expires_ms<$2::bigint AND kind = ANY($5::text[]) "
                "ORDER BY priority DESC, run_after_ms, id LIMIT 1 FOR UPDATE SKIP LOCKED), "
                "ready AS (SELECT id, priority, run_after_ms FROM jobs WHERE "
                "state IN ('queued','failed') AND run_after_ms<=$2 AND kind = ANY($5) "
                "ORDER BY priority DESC, run_after_ms, id LIMIT 1 FOR UPDATE SKIP LOCKED) "
                "UPDATE jobs SET state='running', claim_token=$1, lease_expires_ms=$2+$3, "
                "attempts=attempts+1, started_ms=coalesce(started_ms, $2), worker_id=$4 "
                "WHERE id=(SELECT id FROM (SELECT * FROM lost UNION ALL SELECT * FROM ready) c "
                "ORDER BY priority DESC, run_after_ms, id LIMIT 1) RETURNING id, attempts",
                &p, 0, &r, "claim", err);
    free(kinds);
    if (rc)
        return rc;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return 0;
    }
    a->id = pg_i64(r, 0, 0);
    int attempt = (int)pg_i64(r, 0, 1);
    PQclear(r);
    PgArgs t = {0};
    pa_i64(&t, a->id);
    pa_i64(&t, attempt);
    pa_str(&t, a->c->worker_id);
    pa_i64(&t, now);
    return pg_run(q,
                  "INSERT INTO attempts (job_id, attempt, worker_id, started_ms) VALUES "
                  "($1,$2,$3,$4) ON CONFLICT (job_id, attempt) DO UPDATE SET "
                  "worker_id=EXCLUDED.worker_id, started_ms=EXCLUDED.started_ms, "
                  "finished_ms=NULL, outcome=NULL, error=NULL",
                  &t, 0, NULL, "claim", err);
}

static int pgq_claim(Queue *q, const QueueClaimArgs *c, int64_t *id, char *err)
{
    ClaimArg a = {.c = c};
    int rc = pg_tx(q, pg_claim_tx, &a, err);
    *id = rc ? 0 : a.id;
    return rc;
}

/* A fenced update of job j's row: `UPDATE jobs SET set_sql WHERE id=$1 AND
 * claim_token=$2 AND state='running'`; set_sql uses $3.. from extra (may be NULL).
 * Zero rows changed means the lease is lost. *r (may be NULL) gets a RETURNING row. */
static int pg_fenced(Queue *q, const Job *j, const char *set_sql, const PgArgs *extra,
                     const char *returning, PGresult **r, char *err)
{
    PgArgs a = {0};
    pa_i64(&a, j->id);
    pa_str(&a, j->claim_token);
    for (int i = 0; extra && i < extra->n; i++) { /* extra outlives the statement */
        VLQ_ASSERT(a.n < PG_MAX_PARAMS);
        a.v[a.n] = extra->v[i];
        a.len[a.n] = extra->len[i];
        a.fmt[a.n] = extra->fmt[i];
        a.n++;
    }
    char sql[1024];
    snprintf(sql, sizeof sql,
             "UPDATE jobs SET %s WHERE id=$1 AND claim_token=$2 AND state='running'%s%s",
             set_sql, returning ? " RETURNING " : "", returning ? returning : "");
    PGresult *res;
    int rc = pg_run(q, sql, &a, 0, &res, "write", err);
    if (rc)
        return rc;
    if (pg_changes(res) == 0) {
        PQclear(res);
        return queue_lease_lost(j, err);
    }
    if (r)
        *r = res;
    else
        PQclear(res);
    return 0;
}

/* Close the job's current attempt row with an outcome. */
static int pg_close_attempt(Queue *q, const Job *j, const char *outcome, const char *error,
                            char *err)
{
    PgArgs a = {0};
    pa_i64(&a, j->id);
    pa_i64(&a, j->attempts);
    pa_i64(&a, queue_now(q));
    pa_str(&a, outcome);
    pa_str(&a, error);
    return pg_run(q,
                  "UPDATE attempts SET finished_ms=$3, outcome=$4, error=$5 WHERE job_id=$1 AND "
                  "attempt=$2",
                  &a, 0, NULL, "close the attempt", err);
}

typedef struct {
    const Job *job;
    int64_t lease_until_ms;
    int cancel;
} RenewArg;

static int pg_renew_tx(Queue *q, void *arg, char *err)
{
    RenewArg *a = arg;
    PgArgs x = {0};
    pa_i64(&x, a->lease_until_ms);
    PGresult *r;
    int rc = pg_fenced(q, a->job, "lease_expires_ms=$3", &x, "cancel_requested", &r, err);
    if (rc)
        return rc;
    a->cancel = (int)pg_i64(r, 0, 0);
    PQclear(r);
    return 0;
}

static int pgq_renew(Queue *q, const Job *j, int64_t lease_until_ms, int *cancel, char *err)
{
    RenewArg a = {.job = j, .lease_until_ms = lease_until_ms};
    int rc = pg_tx(q, pg_renew_tx, &a, err);
    *cancel = rc == 0 && a.cancel;
    return rc;
}

typedef struct {
    const Job *job;
    const QueueResultArgs *r;
} SucceedArg;

static int pg_succeed_tx(Queue *q, void *arg, char *err)
{
    SucceedArg *a = arg;
    int64_t now = queue_now(q);
    PgArgs x = {0};
    pa_i64(&x, now);
    int rc = pg_fenced(q, a->job,
                       "state='succeeded', finished_ms=$3, claim_token=NULL, "
                       "lease_expires_ms=NULL, error_code=NULL, error=NULL",
                       &x, NULL, NULL, err);
    if (rc)
        return rc;
    PgArgs p = {0};
    pa_i64(&p, a->job->id);
    pa_str(&p, a->r->format);
    pa_bin(&p, a->r->result ? a->r->result : "", (int)a->r->len);
    pa_str(&p, a->r->summary);
    pa_i64(&p, now);
    rc = pg_run(q,
                "INSERT INTO results (job_id, format, body, summary, created_ms) VALUES "
                "($1,$2,$3,$4,$5) ON CONFLICT (job_id) DO UPDATE SET format=EXCLUDED.format, "
                "body=EXCLUDED.body, summary=EXCLUDED.summary, created_ms=EXCLUDED.created_ms",
                &p, 0, NULL, "store the result", err);
    if (rc == 0)
        rc = pg_close_attempt(q, a->job, "succeeded", NULL, err);
    if (rc == 0)
        rc = pg_add_event(q, a->job->id, "job.succeeded", a->r, err);
    return rc;
}

static int pgq_succeed(Queue *q, const Job *j, const QueueResultArgs *r, char *err)
{
    if (r->len > INT_MAX)
        return err_set(err, VLQ_EINPUT, "job %lld: a result of %zu bytes (at most 2 GiB)",
                       (long long)j->id, r->len);
    SucceedArg a = {.job = j, .r = r};
    return pg_tx(q, pg_succeed_tx, &a, err);
}

typedef struct {
    const Job *job;
    const QueueFailArgs *f;
} FailArg;

static int pg_fail_tx(Queue *q, void *arg, char *err)
{
    FailArg *a = arg;
    PgArgs x = {0};
    pa_i64(&x, a->f->at_ms);
    pa_str(&x, a->f->code_name);
    pa_str(&x, a->f->message);
    int rc = pg_fenced(q, a->job,
                       a->f->retry ? "state='failed', run_after_ms=$3, claim_token=NULL, "
                                     "lease_expires_ms=NULL, error_code=$4, error=$5"
                                   : "state='dead', finished_ms=$3, claim_token=NULL, "
                                     "lease_expires_ms=NULL, error_code=$4, error=$5",
                       &x, NULL, NULL, err);
    if (rc == 0)
        rc = pg_close_attempt(q, a->job, "failed", a->f->message, err);
    if (rc == 0 && !a->f->retry)
        rc = pg_add_event(q, a->job->id, "job.failed", NULL, err);
    return rc;
}

static int pgq_fail(Queue *q, const Job *j, const QueueFailArgs *f, char *err)
{
    FailArg a = {.job = j, .f = f};
    return pg_tx(q, pg_fail_tx, &a, err);
}

static int pg_ack_cancel_tx(Queue *q, void *arg, char *err)
{
    const Job *j = arg;
    PgArgs x = {0};
    pa_i64(&x, queue_now(q));
    int rc = pg_fenced(q, j,
                       "state='cancelled', finished_ms=$3, claim_token=NULL, "
                       "lease_expires_ms=NULL, error_code='ECANCEL', error='cancelled'",
                       &x, NULL, NULL, err);
    if (rc == 0)
        rc = pg_close_attempt(q, j, "cancelled", NULL, err);
    if (rc == 0)
        rc = pg_add_event(q, j->id, "job.cancelled", NULL, err);
    return rc;
}

static int pgq_ack_cancel(Queue *q, const Job *j, char *err)
{
    return pg_tx(q, pg_ack_cancel_tx, (void *)j, err);
}

static int pg_release_tx(Queue *q, void *arg, char *err)
{
    const Job *j = arg;
    int rc = pg_close_attempt(q, j, "released", NULL, err);
    if (rc == 0)
        rc = pg_fenced(q, j,
                       "state=CASE WHEN attempts>1 THEN 'failed' ELSE 'queued' END, "
                       "attempts=attempts-1, claim_token=NULL, lease_expires_ms=NULL",
                       NULL, NULL, NULL, err);
    return rc ? rc : pg_notify(q, err);
}

static int pgq_release(Queue *q, const Job *j, char *err)
{
    return pg_tx(q, pg_release_tx, (void *)j, err);
}

/* ---- per-unit results ---- */

typedef struct {
    const Job *job;
    int total;
    const JobUnit *unit;
} UnitArg;

static int pg_units_total_tx(Queue *q, void *arg, char *err)
{
    UnitArg *a = arg;
    PgArgs x = {0};
    pa_i64(&x, a->total);
    return pg_fenced(q, a->job, "units_total=$3", &x, NULL, NULL, err);
}

static int pgq_set_units_total(Queue *q, const Job *j, int units_total, char *err)
{
    UnitArg a = {.job = j, .total = units_total};
    return pg_tx(q, pg_units_total_tx, &a, err);
}

static int pg_unit_store_tx(Queue *q, void *arg, char *err)
{
    UnitArg *a = arg;
    const JobUnit *u = a->unit;
    /* a no-op update of the job row is the fence (and locks it against a takeover) */
    int rc = pg_fenced(q, a->job, "lease_expires_ms=lease_expires_ms", NULL, NULL, NULL, err);
    if (rc)
        return rc;
    PgArgs p = {0};
    pa_i64(&p, a->job->id);
    pa_i64(&p, u->idx);
    pa_str(&p, u->result);
    pa_str(&p, u->meta_json);
    pa_i64(&p, u->tok_in);
    pa_i64(&p, u->tok_out);
    pa_f64(&p, u->seconds);
    pa_str(&p, u->error_code);
    pa_str(&p, u->error);
    pa_i64(&p, a->job->attempts);
    pa_i64(&p, queue_now(q));
    PGresult *r;
    rc = pg_run(q,
                "INSERT INTO job_units (job_id, idx, result, meta_json, tok_in, tok_out, "
                "seconds, error_code, error, attempt, created_ms) VALUES "
                "($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) ON CONFLICT (job_id, idx) DO NOTHING",
                &p, 0, &r, "store a unit", err);
    if (rc)
        return rc;
    int64_t n = pg_changes(r);
    PQclear(r);
    if (n == 0)
        return err_set(err, VLQ_EINPUT, "job %lld: unit %d: already stored",
                       (long long)a->job->id, u->idx);
    return 0;
}

static int pgq_unit_store(Queue *q, const Job *j, const JobUnit *u, char *err)
{
    UnitArg a = {.job = j, .unit = u};
    return pg_tx(q, pg_unit_store_tx, &a, err);
}

static int pgq_units(Queue *q, int64_t id, JobUnit **out, int *n, char *err)
{
    int rc = pg_ensure(q, err);
    if (rc)
        return rc;
    PgArgs a = {0};
    pa_i64(&a, id);
    PGresult *r;
    if ((rc = pg_run(q,
                     "SELECT idx, result, meta_json, tok_in, tok_out, seconds, error_code, error, "
                     "attempt FROM job_units WHERE job_id=$1 ORDER BY idx",
                     &a, 0, &r, "read units", err)) != 0)
        return rc;
    int rows = PQntuples(r);
    *out = rows ? xcalloc((size_t)rows, sizeof **out) : NULL;
    for (int i = 0; i < rows; i++) {
        JobUnit *u = &(*out)[i];
        u->idx = (int)pg_i64(r, i, 0);
        u->result = pg_text(r, i, 1);
        u->meta_json = pg_text(r, i, 2);
        u->tok_in = pg_i64(r, i, 3);
        u->tok_out = pg_i64(r, i, 4);
        u->seconds = pg_f64(r, i, 5);
        u->error_code = pg_text(r, i, 6);
        u->error = pg_text(r, i, 7);
        u->attempt = (int)pg_i64(r, i, 8);
    }
    *n = rows;
    PQclear(r);
    return 0;
}

/* ---- admin ---- */

static int pgq_list(Queue *q, const JobFilter *f, Job ***jobs, int *n, char *err)
{
    int rc = pg_ensure(q, err);
    if (rc)
        return rc;
    PgArgs a = {0};
    pa_str(&a, f->state >= 0 ? queue_state_name(f->state) : NULL);
    pa_str(&a, f->kind);
    if (f->limit > 0)
        pa_i64(&a, f->limit);
    else
        pa_str(&a, NULL); /* LIMIT NULL: all */
    PGresult *r;
    if ((rc = pg_run(q,
                     "SELECT " JOB_COLS " FROM jobs WHERE ($1::text IS NULL OR state=$1) AND "
                     "($2::text IS NULL OR kind=$2) ORDER BY id DESC LIMIT $3::bigint",
                     &a, 0, &r, "list", err)) != 0)
        return rc;
    int rows = PQntuples(r);
    *jobs = rows ? xcalloc((size_t)rows, sizeof **jobs) : NULL;
    for (int i = 0; i < rows; i++)
        (*jobs)[i] = pg_row_job(r, i);
    *n = rows;
    PQclear(r);
    return pg_load_inputs(q, *jobs, *n, err);
}

static int pgq_result(Queue *q, int64_t id, char **format, char **result, size_t *len,
                      char *err)
{
    int rc = pg_ensure(q, err);
    if (rc)
        return rc;
    PgArgs a = {0};
    pa_i64(&a, id);
    PGresult *r;
    /* binary results: the body's bytes as stored, the format's text as is */
    if ((rc = pg_run(q, "SELECT format, body FROM results WHERE job_id=$1", &a, 1, &r,
                     "read the result", err)) != 0)
        return rc;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return err_set(err, VLQ_EIO, "job %lld: result missing", (long long)id);
    }
    *format = xstrdup(PQgetvalue(r, 0, 0));
    *len = (size_t)PQgetlength(r, 0, 1);
    *result = xmalloc(*len + 1);
    memcpy(*result, PQgetvalue(r, 0, 1), *len);
    (*result)[*len] = '\0';
    PQclear(r);
    return 0;
}

typedef struct {
    int64_t id;
    JobState state;
} IdArg;

/* The state of job id, its row locked until the transaction ends. */
static int pg_lock_state(Queue *q, int64_t id, JobState *s, char *err)
{
    PgArgs a = {0};
    pa_i64(&a, id);
    PGresult *r;
    int rc = pg_run(q, "SELECT state FROM jobs WHERE id=$1 FOR UPDATE", &a, 0, &r, "read a job",
                    err);
    if (rc)
        return rc;
    int found = PQntuples(r) == 1;
    if (found)
        *s = (JobState)queue_state_parse(PQgetvalue(r, 0, 0));
    PQclear(r);
    return found ? 0 : queue_no_job(id, err);
}

static int pg_cancel_tx(Queue *q, void *arg, char *err)
{
    IdArg *a = arg;
    JobState s;
    int rc = pg_lock_state(q, a->id, &s, err);
    if (rc == 0)
        rc = queue_cancel_check(a->id, s, err);
    if (rc)
        return rc;
    PgArgs p = {0};
    pa_i64(&p, a->id);
    if (s == JOB_RUNNING) {
        a->state = JOB_RUNNING;
        return pg_run(q, "UPDATE jobs SET cancel_requested=1 WHERE id=$1", &p, 0, NULL,
                      "cancel", err);
    }
    pa_i64(&p, queue_now(q));
    rc = pg_run(q,
                "UPDATE jobs SET state='cancelled', finished_ms=$2, error_code='ECANCEL', "
                "error='cancelled' WHERE id=$1",
                &p, 0, NULL, "cancel", err);
    a->state = JOB_CANCELLED;
    return rc ? rc : pg_add_event(q, a->id, "job.cancelled", NULL, err);
}

static int pgq_cancel(Queue *q, int64_t id, JobState *new_state, char *err)
{
    IdArg a = {.id = id};
    int rc = pg_tx(q, pg_cancel_tx, &a, err);
    if (rc == 0)
        *new_state = a.state;
    return rc;
}

static int pg_retry_tx(Queue *q, void *arg, char *err)
{
    IdArg *a = arg;
    JobState s;
    int rc = pg_lock_state(q, a->id, &s, err);
    if (rc == 0)
        rc = queue_retry_check(a->id, s, err);
    if (rc)
        return rc;
    PgArgs p = {0};
    pa_i64(&p, a->id);
    /* the failed units run again; the ones that succeeded are kept and skipped */
    if ((rc = pg_run(q, "DELETE FROM job_units WHERE job_id=$1 AND error_code IS NOT NULL", &p,
                     0, NULL, "retry", err)) != 0)
        return rc;
    pa_i64(&p, queue_now(q));
    if ((rc = pg_run(q,
                     "UPDATE jobs SET state='queued', attempts=0, run_after_ms=$2, "
                     "finished_ms=NULL, cancel_requested=0, error_code=NULL, error=NULL "
                     "WHERE id=$1",
                     &p, 0, NULL, "retry", err)) != 0)
        return rc;
    return pg_notify(q, err);
}

static int pgq_retry(Queue *q, int64_t id, char *err)
{
    IdArg a = {.id = id};
    return pg_tx(q, pg_retry_tx, &a, err);
}

typedef struct {
    int64_t cutoff;
    int deleted;
} PurgeArg;

static int pg_purge_tx(Queue *q, void *arg, char *err)
{
    PurgeArg *a = arg;
    PgArgs p = {0};
    pa_i64(&p, a->cutoff);
    PGresult *r;
    int rc = pg_run(q,
                    "DELETE FROM jobs WHERE state IN ('succeeded','dead','cancelled') AND "
                    "finished_ms<$1 AND NOT EXISTS (SELECT 1 FROM events e WHERE "
                    "e.job_id=jobs.id AND e.state='pending')",
                    &p, 0, &r, "purge", err);
    if (rc)
        return rc;
    a->deleted = (int)pg_changes(r);
    PQclear(r);
    return 0;
}

static int pgq_purge(Queue *q, int64_t cutoff_ms, int *n_deleted, char *err)
{
    PurgeArg a = {.cutoff = cutoff_ms};
    int rc = pg_tx(q, pg_purge_tx, &a, err);
    *n_deleted = rc ? 0 : a.deleted;
    return rc;
}

static int pgq_attempts(Queue *q, int64_t id, JobAttempt **out, int *n, char *err)
{
    int rc = pg_ensure(q, err);
    if (rc)
        return rc;
    PgArgs a = {0};
    pa_i64(&a, id);
    PGresult *r;
    if ((rc = pg_run(q,
                     "SELECT attempt, worker_id, started_ms, coalesce(finished_ms,0), outcome, "
                     "error FROM attempts WHERE job_id=$1 ORDER BY attempt",
                     &a, 0, &r, "read attempts", err)) != 0)
        return rc;
    int rows = PQntuples(r);
    *out = rows ? xcalloc((size_t)rows, sizeof **out) : NULL;
    for (int i = 0; i < rows; i++) {
        JobAttempt *t = &(*out)[i];
        t->attempt = (int)pg_i64(r, i, 0);
        t->worker_id = pg_text(r, i, 1);
        t->started_ms = pg_i64(r, i, 2);
        t->finished_ms = pg_i64(r, i, 3);
        t->outcome = pg_text(r, i, 4);
        t->error = pg_text(r, i, 5);
    }
    *n = rows;
    PQclear(r);
    return 0;
}

/* ---- webhook outbox ---- */

/* The event columns; the lease token is handed out by events_due only. */
#define EVENT_COLS                                                                        \
    "id, event_id, job_id, type, url, secret, body, state, attempts, next_attempt_ms, " \
    "last_error, coalesce(last_status,0)"
#define EVENT_COLS_LEASED EVENT_COLS ", lease_token"
#define EVENT_COLS_LISTED EVENT_COLS ", NULL"

static OutboxEvent *pg_row_event(const PGresult *r, int i)
{
    OutboxEvent *e = xcalloc(1, sizeof *e);
    e->id = pg_i64(r, i, 0);
    e->event_id = pg_text(r, i, 1);
    e->job_id = pg_i64(r, i, 2);
    e->type = pg_text(r, i, 3);
    e->url = pg_text(r, i, 4);
    e->secret = pg_text(r, i, 5);
    e->body = pg_text(r, i, 6);
    int state = queue_event_state_parse(PQgetvalue(r, i, 7));
    e->state = state < 0 ? EVENT_PENDING : (EventState)state;
    e->attempts = (int)pg_i64(r, i, 8);
    e->next_attempt_ms = pg_i64(r, i, 9);
    e->last_error = pg_text(r, i, 10);
    e->last_status = (int)pg_i64(r, i, 11);
    e->lease_token = pg_text(r, i, 12);
    return e;
}

static int pg_read_events(Queue *q, const char *sql, const PgArgs *a, OutboxEvent ***events,
                          int *n, char *err)
{
    PGresult *r;
    int rc;
    if ((rc = pg_run(q, sql, a, 0, &r, "read events", err)) != 0)
        return rc;
    int rows = PQntuples(r);
    *events = rows ? xcalloc((size_t)rows, sizeof **events) : NULL;
    for (int i = 0; i < rows; i++)
        (*events)[i] = pg_row_event(r, i);
    *n = rows;
    PQclear(r);
    return 0;
}

typedef struct {
    int max;
    int64_t lease_ms;
    const char *token;
    OutboxEvent **events;
    int n;
} DueArg;

static void pg_events_free(OutboxEvent **ev, int n)
{
    for (int i = 0; i < n; i++)
        queue_event_free(ev[i]);
    free(ev);
}

/* Lease the due events no other deliverer holds (endpoints with a leased event are
 * skipped: one deliverer per endpoint keeps its order), then read them back by token. */
static int pg_events_due_tx(Queue *q, void *arg, char *err)
{
    DueArg *a = arg;
    pg_events_free(a->events, a->n); /* a transaction run again starts afresh */
    a->events = NULL;
    a->n = 0;
    PgArgs p = {0};
    pa_i64(&p, queue_now(q));
    if (a->max > 0)
        pa_i64(&p, a->max);
    else
        pa_str(&p, NULL);
    pa_i64(&p, a->lease_ms);
    pa_str(&p, a->token);
    int rc = pg_run(q,
                    "UPDATE events SET lease_until_ms=$1::bigint+$3, lease_token=$4 WHERE id IN "
                    "(SELECT id FROM events WHERE state='pending' AND next_attempt_ms<=$1 AND "
                    "url NOT IN (SELECT url FROM disabled_endpoints) AND url NOT IN (SELECT url "
                    "FROM events WHERE state='pending' AND lease_until_ms>$1) "
                    "ORDER BY next_attempt_ms, id LIMIT $2::bigint FOR UPDATE SKIP LOCKED)",
                    &p, 0, NULL, "lease events", err);
    if (rc)
        return rc;
    PgArgs t = {0};
    pa_str(&t, a->token);
    return pg_read_events(q,
                          "SELECT " EVENT_COLS_LEASED " FROM events WHERE lease_token=$1 "
                          "ORDER BY next_attempt_ms, id",
                          &t, &a->events, &a->n, err);
}

static int pgq_events_due(Queue *q, int max, int64_t lease_ms, const char *token,
                          OutboxEvent ***events, int *n, char *err)
{
    DueArg a = {.max = max, .lease_ms = lease_ms, .token = token};
    int rc = pg_tx(q, pg_events_due_tx, &a, err);
    if (rc) {
        pg_events_free(a.events, a.n);
        return rc;
    }
    *events = a.events;
    *n = a.n;
    return 0;
}

static int pgq_events_list(Queue *q, int64_t job_id, OutboxEvent ***events, int *n, char *err)
{
    int rc = pg_ensure(q, err);
    if (rc)
        return rc;
    PgArgs a = {0};
    pa_i64(&a, job_id);
    return pg_read_events(q,
                          "SELECT " EVENT_COLS_LISTED " FROM events WHERE $1::bigint<=0 OR "
                          "job_id=$1 ORDER BY id DESC",
                          &a, events, n, err);
}

typedef struct {
    const OutboxEvent *e;
    const QueueDeliveryArgs *d;
} AttemptArg;

static int pg_event_attempt_tx(Queue *q, void *arg, char *err)
{
    AttemptArg *a = arg;
    const QueueDeliveryArgs *d = a->d;
    int64_t now = queue_now(q);
    const char *error = d->error && d->error[0] ? d->error : NULL;
    PgArgs p = {0};
    pa_i64(&p, a->e->id);
    pa_str(&p, queue_event_state_name(d->state));
    pa_i64(&p, d->next_attempt_ms);
    if (d->http_status)
        pa_i64(&p, d->http_status);
    else
        pa_str(&p, NULL);
    pa_str(&p, error);
    pa_str(&p, a->e->lease_token);
    PGresult *r;
    int rc = pg_run(q,
                    "UPDATE events SET state=$2, attempts=attempts+1, next_attempt_ms=$3, "
                    "last_status=$4, last_error=$5, lease_until_ms=NULL, lease_token=NULL "
                    "WHERE id=$1 AND lease_token IS NOT DISTINCT FROM $6::text RETURNING attempts",
                    &p, 0, &r, "record a delivery", err);
    if (rc)
        return rc;
    int attempt = PQntuples(r) == 1 ? (int)pg_i64(r, 0, 0) : 0;
    PQclear(r);
    if (!attempt) { /* the fence failed: gone, or leased to another deliverer */
        PgArgs x = {0};
        pa_i64(&x, a->e->id);
        if ((rc = pg_run(q, "SELECT 1 FROM events WHERE id=$1", &x, 0, &r, "record a delivery",
                         err)) != 0)
            return rc;
        int found = PQntuples(r) == 1;
        PQclear(r);
        return found ? queue_event_lease_lost(a->e, err)
                     : err_set(err, VLQ_EINPUT, "event %s: no such event", a->e->event_id);
    }
    PgArgs t = {0};
    pa_i64(&t, a->e->id);
    pa_i64(&t, attempt);
    pa_i64(&t, now);
    if (d->http_status)
        pa_i64(&t, d->http_status);
    else
        pa_str(&t, NULL);
    pa_str(&t, error);
    pa_f64(&t, d->duration_s);
    if ((rc = pg_run(q,
                     "INSERT INTO event_attempts (event_row, attempt, at_ms, http_status, error, "
                     "duration_s) VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (event_row, attempt) DO "
                     "UPDATE SET at_ms=EXCLUDED.at_ms, http_status=EXCLUDED.http_status, "
                     "error=EXCLUDED.error, duration_s=EXCLUDED.duration_s",
                     &t, 0, NULL, "record a delivery", err)) != 0)
        return rc;
    if (!d->gone)
        return 0;
    /* disable the endpoint, and fail what was still pending for it */
    PgArgs g = {0};
    pa_str(&g, a->e->url);
    pa_i64(&g, now);
    if ((rc = pg_run(q,
                     "INSERT INTO disabled_endpoints (url, since_ms, reason) VALUES "
                     "($1,$2,'410 Gone') ON CONFLICT (url) DO NOTHING",
                     &g, 0, NULL, "disable an endpoint", err)) != 0)
        return rc;
    g.n = 1;
    return pg_run(q,
                  "UPDATE events SET state='failed', last_error='endpoint disabled (410 Gone), "
                  "not sent' WHERE url=$1 AND state='pending'",
                  &g, 0, NULL, "disable an endpoint", err);
}

static int pgq_event_attempt(Queue *q, const OutboxEvent *e, const QueueDeliveryArgs *d,
                             char *err)
{
    AttemptArg a = {.e = e, .d = d};
    return pg_tx(q, pg_event_attempt_tx, &a, err);
}

static int pg_event_release_tx(Queue *q, void *arg, char *err)
{
    const OutboxEvent *e = arg;
    PgArgs p = {0};
    pa_i64(&p, e->id);
    pa_str(&p, e->lease_token);
    return pg_run(q,
                  "UPDATE events SET lease_until_ms=NULL, lease_token=NULL WHERE id=$1 AND "
                  "lease_token=$2",
                  &p, 0, NULL, "release an event", err);
}

static int pgq_event_release(Queue *q, const OutboxEvent *e, char *err)
{
    return pg_tx(q, pg_event_release_tx, (void *)e, err);
}

static int pg_redeliver_tx(Queue *q, void *arg, char *err)
{
    const char *event_id = arg;
    PgArgs p = {0};
    pa_str(&p, event_id);
    pa_i64(&p, queue_now(q));
    PGresult *r;
    int rc = pg_run(q,
                    "UPDATE events SET state='pending', next_attempt_ms=$2 WHERE event_id=$1 "
                    "RETURNING url",
                    &p, 0, &r, "redeliver", err);
    if (rc)
        return rc;
    char *url = PQntuples(r) == 1 ? pg_text(r, 0, 0) : NULL;
    PQclear(r);
    if (!url)
        return err_set(err, VLQ_EINPUT, "event %s: no such event", event_id);
    /* a redelivery by hand re-enables the endpoint that answered 410 */
    PgArgs u = {0};
    pa_str(&u, url);
    rc = pg_run(q, "DELETE FROM disabled_endpoints WHERE url=$1", &u, 0, NULL, "redeliver", err);
    free(url);
    return rc;
}

static int pgq_event_redeliver(Queue *q, const char *event_id, char *err)
{
    return pg_tx(q, pg_redeliver_tx, (void *)event_id, err);
}

/* ---- http(s) inputs ---- */

typedef struct {
    const Job *job;
    int idx;
    const char *sha256;
    int64_t size_bytes;
} FetchedArg;

static int pg_input_fetched_tx(Queue *q, void *arg, char *err)
{
    FetchedArg *a = arg;
    int rc = pg_fenced(q, a->job, "lease_expires_ms=lease_expires_ms", NULL, NULL, NULL, err);
    if (rc)
        return rc;
    PgArgs x = {0};
    pa_i64(&x, a->job->id);
    pa_i64(&x, a->idx);
    pa_str(&x, a->sha256);
    pa_i64(&x, a->size_bytes);
    /* sha256='' is a URL input never downloaded: the first record wins, for good */
    return pg_run(q,
                  "UPDATE job_inputs SET sha256=$3, size_bytes=$4 WHERE job_id=$1 AND idx=$2 "
                  "AND sha256=''",
                  &x, 0, NULL, "record a download", err);
}

static int pgq_input_fetched(Queue *q, const Job *j, int idx, const char *sha256,
                             int64_t size_bytes, char *err)
{
    FetchedArg a = {.job = j, .idx = idx, .sha256 = sha256, .size_bytes = size_bytes};
    return pg_tx(q, pg_input_fetched_tx, &a, err);
}

/* ---- vlq queue copy: rows in and out (see queue_copy.c) ---- */

#define PG_COPY_BYTEAOID 17 /* pg_type.oid of bytea (catalog/pg_type_d.h, not installed) */

/* Run sql with no parameters; PGRES_COMMAND_OK or PGRES_TUPLES_OK expected. */
static int pg_copy_exec(Queue *q, const char *sql, const char *what, char *err)
{
    PGresult *r = PQexec(PGC(q)->pg, sql);
    ExecStatusType s = PQresultStatus(r);
    int rc = s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK ? 0 : pg_err(q, r, what, err);
    PQclear(r);
    return rc;
}

static int pg_copy_begin(Queue *q, int write, char *err)
{
    int rc = pg_ensure(q, err);
    if (rc)
        return rc;
    /* the source: one snapshot of every table; the target: one transaction */
    return pg_copy_exec(q, write ? "BEGIN" : "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
                        "begin the copy", err);
}

static int pg_copy_end(Queue *q, int commit, char *err)
{
    int rc = 0;
    char sql[512];
    /* the id sequences continue after the copied ids (a no-op on a read snapshot's end,
     * which never commits) */
    for (int k = 0; commit && rc == 0 && k < queue_n_tables; k++) {
        const QueueTable *t = &queue_tables[k];
        if (!t->serial)
            continue;
        snprintf(sql, sizeof sql,
                 "SELECT setval(pg_get_serial_sequence('%s', '%s'), "
                 "coalesce((SELECT max(%s) FROM %s), 1), (SELECT max(%s) FROM %s) IS NOT NULL)",
                 t->name, t->serial, t->serial, t->name, t->serial, t->name);
        rc = pg_copy_exec(q, sql, "move the id sequence past the copied ids", err);
    }
    if (commit && rc == 0)
        return pg_copy_exec(q, "COMMIT", "commit the copy", err);
    char err2[VLQ_ERRLEN];
    pg_copy_exec(q, "ROLLBACK", "roll back the copy", err2);
    return rc;
}

static void pg_copy_cols(Buf *b, const QueueTable *t)
{
    for (int c = 0; c < t->n_cols; c++)
        buf_printf(b, "%s%s", c ? ", " : "", t->cols[c].name);
}

/* 0 when t's columns in the database are exactly t->cols (as a set), else VLQ_EINPUT. */
static int pg_copy_check_cols(Queue *q, const QueueTable *t, char *err)
{
    const char *params[1] = {t->name};
    PGresult *r = PQexecParams(PGC(q)->pg,
                               "SELECT column_name FROM information_schema.columns WHERE "
                               "table_schema = current_schema() AND table_name = $1",
                               1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        int rc = pg_err(q, r, "read the columns", err);
        PQclear(r);
        return rc;
    }
    int n = PQntuples(r), rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        const char *name = PQgetvalue(r, i, 0);
        int known = 0;
        for (int c = 0; c < t->n_cols && !known; c++)
            known = !strcmp(name, t->cols[c].name);
        if (!known)
            rc = err_set(err, VLQ_EINPUT, "%s: table %s has a column this vlq cannot copy (%s)",
                         q->location, t->name, name);
    }
    if (rc == 0 && n != t->n_cols)
        rc = err_set(err, VLQ_EINPUT, "%s: table %s lacks %d column(s) this vlq copies",
                     q->location, t->name, t->n_cols - n);
    PQclear(r);
    return rc;
}

static int pg_copy_read(Queue *q, const QueueTable *t, QueueRowFn row, void *arg, char *err)
{
    int rc = pg_copy_check_cols(q, t, err);
    if (rc)
        return rc;
    Buf b = {0};
    buf_puts(&b, "SELECT ");
    pg_copy_cols(&b, t);
    buf_printf(&b, " FROM %s ORDER BY %s", t->name, t->order_by);
    /* rows one at a time: a queue with large results is never all in memory */
    int sent = PQsendQuery(PGC(q)->pg, b.data) && PQsetSingleRowMode(PGC(q)->pg);
    buf_clear(&b);
    if (!sent)
        return pg_err(q, NULL, "read for the copy", err);
    QueueValue v[QUEUE_COPY_MAX_COLS];
    unsigned char *unesc[QUEUE_COPY_MAX_COLS];
    PGresult *r;
    while ((r = PQgetResult(PGC(q)->pg))) {
        ExecStatusType s = PQresultStatus(r);
        if (s == PGRES_SINGLE_TUPLE && rc == 0) {
            for (int c = 0; c < t->n_cols; c++) {
                QueueValue *x = &v[c];
                memset(x, 0, sizeof *x);
                unesc[c] = NULL;
                x->null = PQgetisnull(r, 0, c);
                if (x->null)
                    continue;
                const char *s0 = PQgetvalue(r, 0, c);
                switch (t->cols[c].type) {
                case QUEUE_COL_INT:
                    x->i = !strcmp(s0, "t") ? 1 : !strcmp(s0, "f") ? 0 : strtoll(s0, NULL, 10);
                    break;
                case QUEUE_COL_REAL: x->d = strtod(s0, NULL); break;
                case QUEUE_COL_TEXT:
                    x->s = s0;
                    x->len = (size_t)PQgetlength(r, 0, c);
                    break;
                case QUEUE_COL_BLOB:
                    if (PQftype(r, c) == PG_COPY_BYTEAOID) {
                        size_t len = 0;
                        unesc[c] = PQunescapeBytea((const unsigned char *)s0, &len);
                        x->s = unesc[c] ? (const char *)unesc[c] : "";
                        x->len = len;
                    } else {
                        x->s = s0;
                        x->len = (size_t)PQgetlength(r, 0, c);
                    }
                    break;
                }
            }
            rc = row(arg, v, err);
            for (int c = 0; c < t->n_cols; c++)
                if (t->cols[c].type == QUEUE_COL_BLOB && !v[c].null)
                    PQfreemem(unesc[c]);
        } else if (s != PGRES_SINGLE_TUPLE && s != PGRES_TUPLES_OK && rc == 0) {
            rc = pg_err(q, r, "read for the copy", err);
        }
        PQclear(r); /* read every result, also after a failure, so the connection is free */
    }
    return rc;
}

static int pg_copy_write(Queue *q, const QueueTable *t, const QueueValue *v, char *err)
{
    Buf b = {0};
    buf_printf(&b, "INSERT INTO %s (", t->name);
    pg_copy_cols(&b, t);
    buf_printf(&b, ")%s VALUES (", t->serial ? " OVERRIDING SYSTEM VALUE" : "");
    for (int c = 0; c < t->n_cols; c++)
        buf_printf(&b, "%s$%d", c ? ", " : "", c + 1);
    buf_puts(&b, ")");
    const char *vals[QUEUE_COPY_MAX_COLS];
    int lens[QUEUE_COPY_MAX_COLS], fmts[QUEUE_COPY_MAX_COLS];
    char num[QUEUE_COPY_MAX_COLS][32];
    for (int c = 0; c < t->n_cols; c++) {
        const QueueValue *x = &v[c];
        lens[c] = 0;
        fmts[c] = 0;
        vals[c] = NULL;
        if (x->null)
            continue;
        switch (t->cols[c].type) {
        case QUEUE_COL_INT:
            snprintf(num[c], sizeof num[c], "%lld", (long long)x->i);
            vals[c] = num[c];
            break;
        case QUEUE_COL_REAL:
            snprintf(num[c], sizeof num[c], "%.17g", x->d);
            vals[c] = num[c];
            break;
        case QUEUE_COL_TEXT: vals[c] = x->s; break; /* NUL-terminated in both drivers */
        case QUEUE_COL_BLOB: /* binary: bytea takes the bytes as they are */
            vals[c] = x->s;
            lens[c] = (int)x->len;
            fmts[c] = 1;
            break;
        }
    }
    PGresult *r = PQexecParams(PGC(q)->pg, b.data, t->n_cols, NULL, vals, lens, fmts, 0);
    buf_clear(&b);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : pg_err(q, r, "write the copy", err);
    PQclear(r);
    return rc;
}

static int pg_copy_clear(Queue *q, const QueueTable *t, char *err)
{
    char sql[96];
    snprintf(sql, sizeof sql, "DELETE FROM %s", t->name);
    return pg_copy_exec(q, sql, "empty the target", err);
}

const QueueDriver queue_pg_driver = {
    .name = "postgresql",
    .open = pgq_open,
    .close = pgq_close,
    .wait = pgq_wait,
    .submit = pgq_submit,
    .get = pgq_get,
    .claim = pgq_claim,
    .renew = pgq_renew,
    .succeed = pgq_succeed,
    .fail = pgq_fail,
    .ack_cancel = pgq_ack_cancel,
    .release = pgq_release,
    .set_units_total = pgq_set_units_total,
    .unit_store = pgq_unit_store,
    .units = pgq_units,
    .list = pgq_list,
    .result = pgq_result,
    .cancel = pgq_cancel,
    .retry = pgq_retry,
    .purge = pgq_purge,
    .attempts = pgq_attempts,
    .events_due = pgq_events_due,
    .events_list = pgq_events_list,
    .event_attempt = pgq_event_attempt,
    .event_release = pgq_event_release,
    .event_redeliver = pgq_event_redeliver,
    .copy_begin = pg_copy_begin,
    .copy_read = pg_copy_read,
    .copy_write = pg_copy_write,
    .copy_clear = pg_copy_clear,
    .copy_end = pg_copy_end,
    .input_fetched = pgq_input_fetched,
};
