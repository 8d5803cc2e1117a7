/* queue_sqlite: the queue's SQLite driver (see queue_int.h for what a driver owns).
 *
 * Design:
 *   - One connection per Queue; WAL, synchronous=NORMAL, foreign keys on. Every write is
 *     a short BEGIN IMMEDIATE transaction run by queue_tx(), which retries the whole
 *     transaction on SQLITE_BUSY/SQLITE_LOCKED until busy_timeout passes, so callers
 *     never see "database is locked"; after the deadline it is VLQ_EBUSY.
 *   - Fencing: every write after a claim has `WHERE id=? AND claim_token=? AND
 *     state='running'`; zero rows changed is VLQ_EBUSY "job N: lease lost".
 *   - The finishing writes (result, state, attempt row, outbox event) share one
 *     transaction: exactly-once results.
 *   - Migrations are compiled in (build/schema_sql.c, from schema/sqlite/NNN_*.sql) and
 *     recorded in PRAGMA user_version; a newer database is refused untouched.
 * SQLite codes and messages never leave this file (style rule 12). */
#include "queue_int.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

extern const char *const queue_migrations_sqlite[]; /* build/schema_sql.c */

/* The connection state behind q->conn. */
typedef struct {
    sqlite3 *db;
    int busy_hit;  /* a statement of the current transaction found the database busy */
} SqConn;

#define SQ(q) ((SqConn *)(q)->conn)

/* ---- statements ---- */

static int queue_is_busy(int rc)
{
    rc &= 0xff;
    return rc == SQLITE_BUSY || rc == SQLITE_LOCKED;
}

/* Translate a SQLite failure into a VLQ code with "path: what: message". */
static int queue_access_reason(const char *path, char *why, size_t cap);

static int queue_sqlerr(Queue *q, int rc, const char *what, char *err)
{
    if (queue_is_busy(rc))
        SQ(q)->busy_hit = 1;
    int prim = rc & 0xff;
    char why[VLQ_ERRLEN];
    /* "attempt to write a readonly database" names neither the file nor the reason */
    if ((prim == SQLITE_READONLY || prim == SQLITE_CANTOPEN || prim == SQLITE_PERM) &&
        queue_access_reason(q->location, why, sizeof why))
        return err_set(err, VLQ_EINPUT, "%s", why);
    if (prim == SQLITE_CORRUPT || prim == SQLITE_NOTADB)
        return err_set(err, VLQ_EINPUT, "%s: %s: the file is damaged or not a database (%s)",
                       q->location, what, sqlite3_errmsg(SQ(q)->db));
    int code = queue_is_busy(rc) ? VLQ_EBUSY : (rc & 0xff) == SQLITE_CORRUPT ||
                                                   (rc & 0xff) == SQLITE_NOTADB
                                                   ? VLQ_EINPUT
                                                   : VLQ_EIO;
    return err_set(err, code, "%s: %s: %s", q->location, what, sqlite3_errmsg(SQ(q)->db));
}

static sqlite3_stmt *queue_prep(Queue *q, const char *sql, int *rc)
{
    sqlite3_stmt *st = NULL;
    *rc = sqlite3_prepare_v2(SQ(q)->db, sql, -1, &st, NULL);
    return st;
}

/* Bind helpers: NULL strings bind NULL. */
static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

static char *col_text(sqlite3_stmt *st, int i)
{
    const unsigned char *s = sqlite3_column_text(st, i);
    return s ? xstrdup((const char *)s) : NULL;
}

/* Run one statement that returns no rows; *changes gets the rows changed. */
static int queue_exec1(Queue *q, const char *sql, int64_t *changes, char *err,
                       void (*bind)(sqlite3_stmt *, const void *), const void *arg)
{
    int rc;
    sqlite3_stmt *st = queue_prep(q, sql, &rc);
    if (!st)
        return queue_sqlerr(q, rc, "prepare", err);
    if (bind)
        bind(st, arg);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return queue_sqlerr(q, rc, "write", err);
    if (changes)
        *changes = sqlite3_changes(SQ(q)->db);
    return 0;
}

/* ---- transactions with busy retry ---- */

typedef int (*QueueTxFn)(Queue *q, void *arg, char *err);

/* Run fn inside BEGIN IMMEDIATE ... COMMIT, retrying the whole transaction while the
 * database is busy (a busy BEGIN, statement or COMMIT sets SQ(q)->busy_hit), up to
 * busy_timeout_ms. fn returns 0 to commit; any other code rolls back and is returned. */
static int queue_tx(Queue *q, QueueTxFn fn, void *arg, char *err)
{
    double deadline = util_mono_s() + q->busy_timeout_ms / 1000.0;
    int64_t sleep_ms = 1;
    for (;;) {
        SQ(q)->busy_hit = 0;
        int rc = sqlite3_exec(SQ(q)->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc == SQLITE_OK) {
            rc = fn(q, arg, err);
            if (rc == 0) {
                int crc = sqlite3_exec(SQ(q)->db, "COMMIT", NULL, NULL, NULL);
                if (crc == SQLITE_OK)
                    return 0;
                rc = queue_sqlerr(q, crc, "commit", err);
            }
            sqlite3_exec(SQ(q)->db, "ROLLBACK", NULL, NULL, NULL);
            if (!SQ(q)->busy_hit)
                return rc;
        } else if (!queue_is_busy(rc)) {
            return queue_sqlerr(q, rc, "begin", err);
        }
        if (util_mono_s() > deadline)
            return err_set(err, VLQ_EBUSY, "%s: the database stayed busy for %d ms", q->location,
                           q->busy_timeout_ms);
        queue_retry_sleep(q, sleep_ms);
        sleep_ms = sleep_ms < 32 ? sleep_ms * 2 : 32;
    }
}

/* ---- open and migrate ---- */

static int queue_count_migrations(void)
{
    int n = 0;
    while (queue_migrations_sqlite[n])
        n++;
    return n;
}

static int queue_migrate_tx(Queue *q, void *arg, char *err)
{
    int *version = arg, rc;
    sqlite3_stmt *st = queue_prep(q, "PRAGMA user_version", &rc);
    if (!st)
        return queue_sqlerr(q, rc, "read the schema version", err);
    rc = sqlite3_step(st);
    int have = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW)
        return queue_sqlerr(q, rc, "read the schema version", err);
    int newest = queue_count_migrations();
    if (have < 0)
        return err_set(err, VLQ_EINPUT,
                       "%s: the schema version is corrupt (%d, PRAGMA user_version); not changed",
                       q->location, have);
    if (have == 0) {
        /* version 0 means empty: vlq's tables under it mean the version record was lost */
        st = queue_prep(q, "SELECT count(*) FROM sqlite_master WHERE type='table' AND "
                           "name='jobs'", &rc);
        if (!st)
            return queue_sqlerr(q, rc, "read the schema", err);
        int jobs = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
        sqlite3_finalize(st);
        if (jobs)
            return err_set(err, VLQ_EINPUT,
                           "%s: the schema version is 0 (PRAGMA user_version) but the database "
                           "holds vlq's tables: the version record is damaged; not changed",
                           q->location);
    }
    if (have > newest)
        return err_set(err, VLQ_EINPUT,
                       "%s: written by a newer vlq (schema %d, this vlq knows %d); not changed",
                       q->location, have, newest);
    for (int v = have; v < newest; v++) {
        char *msg = NULL;
        if (sqlite3_exec(SQ(q)->db, queue_migrations_sqlite[v], NULL, NULL, &msg) != SQLITE_OK) {
            int code = err_set(err, VLQ_EIO, "%s: migration %d: %s", q->location, v + 1,
                               msg ? msg : "failed");
            sqlite3_free(msg);
            return code;
        }
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", v + 1);
        if (sqlite3_exec(SQ(q)->db, pragma, NULL, NULL, NULL) != SQLITE_OK)
            return queue_sqlerr(q, SQLITE_ERROR, "set the schema version", err);
    }
    *version = newest;
    return 0;
}

/* A database that has tables but no jobs table is someone else's. */
static int queue_check_foreign(Queue *q, char *err)
{
    int rc;
    sqlite3_stmt *st = queue_prep(
        q, "SELECT (SELECT count(*) FROM sqlite_master), (SELECT count(*) FROM sqlite_master "
           "WHERE type='table' AND name='jobs'), (SELECT user_version FROM pragma_user_version)",
        &rc);
    if (!st)
        return queue_sqlerr(q, rc, "not a vlq queue database", err);
    rc = sqlite3_step(st);
    int n = sqlite3_column_int(st, 0), jobs = sqlite3_column_int(st, 1);
    int version = sqlite3_column_int(st, 2);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW)
        return queue_sqlerr(q, rc, "not a vlq queue database", err);
    if (n > 0 && !jobs && version <= queue_count_migrations())
        return err_set(err, VLQ_EINPUT, "%s: not a vlq queue database (it has other tables)",
                       q->location);
    return 0;
}

/* ---- where the database lives: durable, private, writable ---- */

/* Why path (a plain file path; URIs are not looked at) cannot be opened or written, in
 * words, into why[cap]: a missing or read-only directory, a read-only file system, or a
 * database, WAL or SHM file this user cannot write. 1 when a reason was found, else 0. */
static int queue_access_reason(const char *path, char *why, size_t cap)
{
    if (!path || !*path || !strncmp(path, "file:", 5))
        return 0;
    char *dir = xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, strlen(dir) + 1, ".");
    else if (slash == dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    struct statvfs vfs;
    int found = 1;
    char *wal = xasprintf("%s-wal", path), *shm = xasprintf("%s-shm", path);
    if (access(dir, F_OK) != 0)
        snprintf(why, cap, "%s: directory %s: %s", path, dir, strerror(errno));
    else if (statvfs(dir, &vfs) == 0 && (vfs.f_flag & ST_RDONLY))
        snprintf(why, cap, "%s: read-only file system (the queue database needs to write there)",
                 dir);
    else if (access(path, F_OK) == 0 && access(path, W_OK) != 0)
        snprintf(why, cap, "%s: the database file is read-only for this user", path);
    else if (access(wal, F_OK) == 0 && access(wal, W_OK) != 0)
        snprintf(why, cap, "%s: read-only for this user (the database's write-ahead log)", wal);
    else if (access(shm, F_OK) == 0 && access(shm, W_OK) != 0)
        snprintf(why, cap, "%s: read-only for this user (the database's shared memory file)",
                 shm);
    else if (access(dir, W_OK) != 0)
        snprintf(why, cap, "%s: directory is read-only (the queue keeps %s and its -wal and "
                 "-shm files there)", dir, path);
    else
        found = 0;
    free(wal);
    free(shm);
    free(dir);
    return found;
}

/* After the open and journal_mode=WAL (whose answer is journal_mode): the database is a
 * file that outlives the command, not ":memory:", a file: URI with mode=memory or an
 * empty name (SQLite's private temporary database), or the memdb VFS. 0 or VLQ_EINPUT. */
static int queue_check_durable(Queue *q, const char *journal_mode, char *err)
{
    const char *file = sqlite3_db_filename(SQ(q)->db, "main");
    if (!file || !*file)
        return err_set(err, VLQ_EINPUT, "%s: a temporary or in-memory database: jobs would be "
                       "lost when the command exits; give a database file", q->location);
    if (strcmp(journal_mode, "wal"))
        return err_set(err, VLQ_EINPUT, "%s: not a durable database file (journal mode '%s', "
                       "not WAL: in memory, or a file system without shared memory)",
                       q->location, journal_mode);
    return 0;
}

/* A database file this open just created (still empty) gets q->file_mode; SQLite gives
 * its -wal and -shm files the database's mode. An existing one that other users can read
 * is warned about, never changed. 0, or VLQ_EIO when the mode cannot be set. */
static int queue_set_mode(Queue *q, char *err)
{
    const char *file = sqlite3_db_filename(SQ(q)->db, "main");
    struct stat st;
    if (!file || !*file || stat(file, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    mode_t mode = (mode_t)(q->file_mode ? q->file_mode : 0600);
    if (st.st_size == 0 && (st.st_mode & 0777) != mode && chmod(file, mode) != 0)
        return err_set(err, VLQ_EIO, "%s: cannot set mode %04o: %s", file, (unsigned)mode,
                       strerror(errno));
    if (st.st_size > 0 && (st.st_mode & 0007))
        log_warn("%s: other users can read it (mode %04o) and it holds webhook secrets: "
                 "chmod 600 it (or 660 with [queue] file_mode for a group)", file,
                 (unsigned)(st.st_mode & 0777));
    return 0;
}

static void queue_sqlite_log(void *arg, int code, const char *msg)
{
    if (!queue_is_busy(code)) /* busy is retried; not worth a line */
        log_debug("sqlite: %s (%d)", msg, code);
}

static int sq_open(Queue *q, const char *path, int create, char *err)
{
    static int log_set;
    if (!log_set) {
        sqlite3_config(SQLITE_CONFIG_LOG, queue_sqlite_log, NULL);
        log_set = 1;
    }
    /* said before SQLite's own "unable to open database file", which names no cause */
    if (!create && access(path, F_OK) != 0)
        return err_set(err, VLQ_EINPUT,
                       "%s: no queue database here (run `vlq init`, or pass --db PATH)", path);
    if (!strcmp(path, ":memory:"))
        return err_set(err, VLQ_EINPUT, "%s: an in-memory database: jobs would be lost when "
                       "the command exits; give a database file", path);
    SqConn *c = xcalloc(1, sizeof *c);
    q->conn = c;
    int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0) | SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(path, &c->db, flags, NULL);
    int version = 0;
    char why[VLQ_ERRLEN];
    if (rc != SQLITE_OK && queue_access_reason(path, why, sizeof why))
        return err_set(err, VLQ_EINPUT, "%s", why);
    if (rc != SQLITE_OK)
        return err_set(err, VLQ_EINPUT, "%s: cannot open the queue database: %s%s", path,
                       c->db ? sqlite3_errmsg(c->db) : "out of memory",
                       create ? "" : " (run `vlq init` or any `vlq submit` to create it)");
    sqlite3_busy_timeout(c->db, 20); /* short: queue_tx retries whole transactions */
    sqlite3_extended_result_codes(c->db, 1);
    if ((rc = queue_check_foreign(q, err)) != 0)
        return rc;
    if (create && (rc = queue_set_mode(q, err)) != 0)
        return rc;
    /* journal_mode=WAL needs a write lock the first time: retry while busy; its answer
     * tells a real file ("wal") from a database in memory ("memory") */
    char journal[16] = "";
    for (double end = util_mono_s() + q->busy_timeout_ms / 1000.0;;) {
        sqlite3_stmt *st = queue_prep(q, "PRAGMA journal_mode=WAL", &rc);
        if (st && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            const unsigned char *m = sqlite3_column_text(st, 0);
            snprintf(journal, sizeof journal, "%s", m ? (const char *)m : "");
            rc = SQLITE_OK;
        }
        sqlite3_finalize(st);
        if (rc == SQLITE_OK || !queue_is_busy(rc) || util_mono_s() > end)
            break;
        util_sleep_ms(5);
    }
    if (rc != SQLITE_OK)
        return queue_sqlerr(q, rc, "set WAL mode", err);
    if ((rc = queue_check_durable(q, journal, err)) != 0)
        return rc;
    sqlite3_exec(c->db, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON", NULL, NULL, NULL);
    return queue_tx(q, queue_migrate_tx, &version, err);
}

static void sq_close(Queue *q)
{
    SqConn *c = q->conn;
    if (!c)
        return;
    sqlite3_close(c->db);
    free(c);
    q->conn = NULL;
}

/* No notification channel here: sleep, and the caller polls. */
static int sq_wait(Queue *q, int timeout_ms, char *err)
{
    (void)q;
    (void)err;
    if (timeout_ms > 0)
        util_sleep_ms(timeout_ms);
    return 0;
}

/* ---- jobs: reading ---- */

#define JOB_COLS                                                                                \
    "id, kind, state, priority, attempts, max_attempts, created_ms, run_after_ms, "             \
    "coalesce(started_ms,0), coalesce(finished_ms,0), coalesce(lease_expires_ms,0), idem_key, " \
    "prompt, webhook_url, webhook_secret, params_json, error_code, error, cancel_requested, "    \
    "claim_token, units_total, (SELECT count(*) FROM job_units u WHERE u.job_id=jobs.id)"

static Job *queue_row_job(sqlite3_stmt *st)
{
    Job *j = xcalloc(1, sizeof *j);
    j->id = sqlite3_column_int64(st, 0);
    j->kind = col_text(st, 1);
    j->state = queue_state_parse((const char *)sqlite3_column_text(st, 2));
    j->priority = sqlite3_column_int(st, 3);
    j->attempts = sqlite3_column_int(st, 4);
    j->max_attempts = sqlite3_column_int(st, 5);
    j->created_ms = sqlite3_column_int64(st, 6);
    j->run_after_ms = sqlite3_column_int64(st, 7);
    j->started_ms = sqlite3_column_int64(st, 8);
    j->finished_ms = sqlite3_column_int64(st, 9);
    j->lease_expires_ms = sqlite3_column_int64(st, 10);
    j->idem_key = col_text(st, 11);
    j->prompt = col_text(st, 12);
    j->webhook_url = col_text(st, 13);
    j->webhook_secret = col_text(st, 14);
    j->params_json = col_text(st, 15);
    j->error_code = col_text(st, 16);
    j->error = col_text(st, 17);
    j->cancel_requested = sqlite3_column_int(st, 18);
    j->claim_token = col_text(st, 19);
    j->units_total = sqlite3_column_int(st, 20);
    j->units_done = sqlite3_column_int(st, 21);
    return j;
}

static int queue_load_inputs(Queue *q, Job *j, char *err)
{
    int rc;
    sqlite3_stmt *st = queue_prep(
        q, "SELECT path, size_bytes, mtime_s, sha256 FROM job_inputs WHERE job_id=? ORDER BY idx",
        &rc);
    if (!st)
        return queue_sqlerr(q, rc, "read inputs", err);
    sqlite3_bind_int64(st, 1, j->id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        j->inputs = xrealloc(j->inputs, (size_t)(j->n_inputs + 1) * sizeof *j->inputs);
        JobInput *in = &j->inputs[j->n_inputs++];
        in->path = col_text(st, 0);
        in->size_bytes = sqlite3_column_int64(st, 1);
        in->mtime_s = sqlite3_column_int64(st, 2);
        snprintf(in->sha256, sizeof in->sha256, "%s", sqlite3_column_text(st, 3));
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : queue_sqlerr(q, rc, "read inputs", err);
}

/* Read job id (inside or outside a transaction); *out NULL if there is none. */
static int queue_read_job(Queue *q, int64_t id, Job **out, char *err)
{
    *out = NULL;
    int rc;
    sqlite3_stmt *st = queue_prep(q, "SELECT " JOB_COLS " FROM jobs WHERE id=?", &rc);
    if (!st)
        return queue_sqlerr(q, rc, "read a job", err);
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = queue_row_job(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return queue_sqlerr(q, rc, "read a job", err);
    return *out ? queue_load_inputs(q, *out, err) : 0;
}

/* ---- submit ---- */

typedef struct {
    const JobSpec *spec;
    int64_t id;
    int existed;
} SubmitArg;

static int queue_submit_tx(Queue *q, void *arg, char *err)
{
    SubmitArg *a = arg;
    const JobSpec *s = a->spec;
    int rc;
    if (s->idem_key) {
        sqlite3_stmt *st = queue_prep(q, "SELECT id FROM jobs WHERE idem_key=?", &rc);
        if (!st)
            return queue_sqlerr(q, rc, "submit", err);
        bind_text(st, 1, s->idem_key);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            a->id = sqlite3_column_int64(st, 0);
            a->existed = 1;
        }
        sqlite3_finalize(st);
        if (a->existed)
            return 0;
        if (rc != SQLITE_DONE)
            return queue_sqlerr(q, rc, "submit", err);
    }
    int64_t now = queue_now(q);
    sqlite3_stmt *st = queue_prep(
        q,
        "INSERT INTO jobs (kind, priority, max_attempts, created_ms, run_after_ms, idem_key, "
        "prompt, webhook_url, webhook_secret, params_json) VALUES (?,?,?,?,?,?,?,?,?,?)",
        &rc);
    if (!st)
        return queue_sqlerr(q, rc, "submit", err);
    bind_text(st, 1, s->kind);
    sqlite3_bind_int(st, 2, s->priority);
    sqlite3_bind_int(st, 3, s->max_attempts);
    sqlite3_bind_int64(st, 4, now);
    sqlite3_bind_int64(st, 5, s->run_after_ms);
    bind_text(st, 6, s->idem_key);
    bind_text(st, 7, s->prompt);
    bind_text(st, 8, s->webhook_url);
    bind_text(st, 9, s->webhook_secret);
    bind_text(st, 10, s->params_json);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return queue_sqlerr(q, rc, "submit", err);
    a->id = sqlite3_last_insert_rowid(SQ(q)->db);
    st = queue_prep(q,
                    "INSERT INTO job_inputs (job_id, idx, path, size_bytes, mtime_s, sha256) "
                    "VALUES (?,?,?,?,?,?)",
                    &rc);
    if (!st)
        return queue_sqlerr(q, rc, "submit", err);
    for (int i = 0; i < s->n_inputs && rc != -1; i++) {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, a->id);
        sqlite3_bind_int(st, 2, i);
        bind_text(st, 3, s->inputs[i].path);
        sqlite3_bind_int64(st, 4, s->inputs[i].size_bytes);
        sqlite3_bind_int64(st, 5, s->inputs[i].mtime_s);
        bind_text(st, 6, s->inputs[i].sha256);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = -1;
    }
    sqlite3_finalize(st);
    return rc == -1 ? queue_sqlerr(q, SQLITE_ERROR, "submit inputs", err) : 0;
}

static int sq_submit(Queue *q, const JobSpec *spec, int64_t *id, int *existed, char *err)
{
    SubmitArg a = {.spec = spec};
    int rc = queue_tx(q, queue_submit_tx, &a, err);
    if (rc == 0) {
        *id = a.id;
        *existed = a.existed;
    }
    return rc;
}

static int sq_get(Queue *q, int64_t id, Job **out, char *err)
{
    return queue_read_job(q, id, out, err);
}

/* ---- events (written inside the finishing transaction) ---- */

/* Write the outbox row for job id's event type, if the job has a webhook. Re-reads the
 * job so the payload shows the committed-to-be state. */
static int queue_add_event(Queue *q, int64_t id, const char *type, const QueueResultArgs *r,
                           char *err)
{
    Job *j;
    int rc = queue_read_job(q, id, &j, err);
    if (rc || !j || !j->webhook_url) {
        queue_job_free(j);
        return rc;
    }
    QueueNewEvent ev;
    rc = queue_event_new(j, type, queue_now(q), r, &ev, err);
    if (rc) {
        queue_job_free(j);
        return rc;
    }
    /* an endpoint disabled by a 410 gets no more events: recorded failed, listed */
    sqlite3_stmt *st = queue_prep(
        q,
        "INSERT INTO events (event_id, job_id, type, url, secret, body, next_attempt_ms, "
        "created_ms, state, last_error) SELECT ?1,?2,?3,?4,?5,?6,?7,?8, "
        "CASE WHEN d.url IS NULL THEN 'pending' ELSE 'failed' END, "
        "CASE WHEN d.url IS NULL THEN NULL ELSE 'endpoint disabled (410 Gone), not sent' END "
        "FROM (SELECT 1) LEFT JOIN disabled_endpoints d ON d.url=?4",
        &rc);
    if (st) {
        bind_text(st, 1, ev.event_id);
        sqlite3_bind_int64(st, 2, id);
        bind_text(st, 3, type);
        bind_text(st, 4, j->webhook_url);
        bind_text(st, 5, j->webhook_secret);
        bind_text(st, 6, ev.body);
        sqlite3_bind_int64(st, 7, ev.now_ms);
        sqlite3_bind_int64(st, 8, ev.now_ms);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
    }
    rc = rc == SQLITE_DONE ? 0 : queue_sqlerr(q, rc, "write the webhook event", err);
    free(ev.body);
    queue_job_free(j);
    return rc;
}

/* ---- the worker side ---- */

typedef struct {
    const QueueClaimArgs *c;
    int64_t id;
} ClaimArg;

/* Jobs whose lease expired: close their lost attempt; those out of attempts go dead
 * (with their job.failed event) instead of running again. */
static int queue_reap_tx(Queue *q, int64_t now, char *err)
{
    int rc;
    sqlite3_stmt *st = queue_prep(
        q,
        "UPDATE attempts SET finished_ms=?1, outcome='lease_expired', error='the worker was lost "
        "(lease expired)' WHERE finished_ms IS NULL AND job_id IN (SELECT id FROM jobs WHERE "
        "state='running' AND lease_expires_ms<?1)",
        &rc);
    if (!st)
        return queue_sqlerr(q, rc, "reap", err);
    sqlite3_bind_int64(st, 1, now);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return queue_sqlerr(q, rc, "reap", err);
    st = queue_prep(q,
                    "UPDATE jobs SET state='dead', finished_ms=?1, claim_token=NULL, "
                    "error_code='EBUSY', error='the worker was lost (lease expired) on the last "
                    "attempt' WHERE state='running' AND lease_expires_ms<?1 AND "
                    "attempts>=max_attempts RETURNING id",
                    &rc);
    if (!st)
        return queue_sqlerr(q, rc, "reap", err);
    sqlite3_bind_int64(st, 1, now);
    /* every job that died here gets its event, however many leases expired at once */
    int64_t *dead = NULL;
    int n = 0, cap = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            dead = xrealloc(dead, (size_t)cap * sizeof *dead);
        }
        dead[n++] = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        free(dead);
        return queue_sqlerr(q, rc, "reap", err);
    }
    rc = 0;
    for (int i = 0; i < n && rc == 0; i++)
        rc = queue_add_event(q, dead[i], "job.failed", NULL, err);
    free(dead);
    return rc;
}

/* The claim: one UPDATE ... RETURNING whose subquery takes the best of two candidates,
 * the best job whose worker was lost (lease expired) and the best runnable queued or
 * failed job; each candidate query names its partial index's condition, so SQLite walks
 * that index in claim order and stops at the first job of a wanted kind. Sets a->id (0:
 * none) and *attempt. */
static int queue_claim_one(Queue *q, ClaimArg *a, int64_t now, int *attempt, char *err)
{
    Buf kinds = {0}, sql = {0};
    for (int i = 0; i < a->c->n_kinds; i++)
        buf_printf(&kinds, "%s?%d", i ? "," : "", 5 + i);
    buf_printf(&sql,
               "UPDATE jobs SET state='running', claim_token=?1, lease_expires_ms=?2+?3, "
               "attempts=attempts+1, started_ms=coalesce(started_ms, ?2), worker_id=?4 "
               "WHERE id=(SELECT id FROM ("
               "SELECT * FROM (SELECT id, priority, run_after_ms FROM jobs WHERE "
               "state='running' AND lease_expires_ms<?2 AND kind IN (%s) "
               "ORDER BY priority DESC, run_after_ms, id LIMIT 1) UNION ALL "
               "SELECT * FROM (SELECT id, priority, run_after_ms FROM jobs WHERE "
               "state IN ('queued','failed') AND run_after_ms<=?2 AND kind IN (%s) "
               "ORDER BY priority DESC, run_after_ms, id LIMIT 1)) "
               "ORDER BY priority DESC, run_after_ms, id LIMIT 1) RETURNING id, attempts",
               kinds.data, kinds.data);
    buf_clear(&kinds);
    int rc;
    sqlite3_stmt *st = queue_prep(q, sql.data, &rc);
    buf_clear(&sql);
    if (!st)
        return queue_sqlerr(q, rc, "claim", err);
    bind_text(st, 1, a->c->token);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_int64(st, 3, a->c->lease_ms);
    bind_text(st, 4, a->c->worker_id);
    for (int i = 0; i < a->c->n_kinds; i++)
        bind_text(st, 5 + i, a->c->kinds[i]);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        a->id = sqlite3_column_int64(st, 0);
        *attempt = sqlite3_column_int(st, 1);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : queue_sqlerr(q, rc, "claim", err);
}

static int queue_claim_tx(Queue *q, void *arg, char *err)
{
    ClaimArg *a = arg;
    a->id = 0;
    int64_t now = queue_now(q);
    int attempt = 0;
    int rc = queue_reap_tx(q, now, err);
    if (rc == 0)
        rc = queue_claim_one(q, a, now, &attempt, err);
    if (rc)
        return rc;
    sqlite3_stmt *st;
    if (!a->id)
        return 0;
    st = queue_prep(q,
                    "INSERT OR REPLACE INTO attempts (job_id, attempt, worker_id, started_ms) "
                    "VALUES (?,?,?,?)",
                    &rc);
    if (!st)
        return queue_sqlerr(q, rc, "claim", err);
    sqlite3_bind_int64(st, 1, a->id);
    sqlite3_bind_int(st, 2, attempt);
    bind_text(st, 3, a->c->worker_id);
    sqlite3_bind_int64(st, 4, now);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : queue_sqlerr(q, rc, "claim", err);
}

static int sq_claim(Queue *q, const QueueClaimArgs *c, int64_t *id, char *err)
{
    ClaimArg a = {.c = c};
    int rc = queue_tx(q, queue_claim_tx, &a, err);
    *id = rc ? 0 : a.id;
    return rc;
}

/* The parameters of the fenced statements: ?1 id, ?2 claim token, then ?3.. as each
 * statement needs (binding a parameter a statement lacks is a harmless no-op). */
typedef struct {
    const Job *job;
    int64_t i3;      /* ?3 */
    const char *s4;  /* ?4 */
    const char *s5;  /* ?5 */
    int64_t i6;      /* ?6 */
} FenceArg;

static void bind_fence(sqlite3_stmt *st, const void *p)
{
    const FenceArg *f = p;
    sqlite3_bind_int64(st, 1, f->job->id);
    bind_text(st, 2, f->job->claim_token);
    sqlite3_bind_int64(st, 3, f->i3);
    bind_text(st, 4, f->s4);
    bind_text(st, 5, f->s5);
    sqlite3_bind_int64(st, 6, f->i6);
}

/* A fenced update of the job row: zero rows changed means the lease is lost. */
static int queue_fenced(Queue *q, const char *set_sql, const FenceArg *f, char *err)
{
    char *sql = xasprintf("UPDATE jobs SET %s WHERE id=?1 AND claim_token=?2 AND "
                          "state='running'", set_sql);
    int64_t changes = 0;
    int rc = queue_exec1(q, sql, &changes, err, bind_fence, f);
    free(sql);
    if (rc == 0 && changes == 0)
        return queue_lease_lost(f->job, err);
    return rc;
}

/* Close the job's current attempt row with an outcome. */
static int queue_close_attempt(Queue *q, const Job *j, const char *outcome, const char *error,
                               char *err)
{
    FenceArg f = {.job = j, .i3 = queue_now(q), .s4 = outcome, .s5 = error, .i6 = j->attempts};
    return queue_exec1(q,
                       "UPDATE attempts SET finished_ms=?3, outcome=?4, error=?5 WHERE "
                       "job_id=?1 AND attempt=?6",
                       NULL, err, bind_fence, &f);
}

typedef struct {
    const Job *job;
    int64_t lease_until_ms;
    int cancel;
} RenewArg;

static int queue_renew_tx(Queue *q, void *arg, char *err)
{
    RenewArg *a = arg;
    FenceArg f = {.job = a->job, .i3 = a->lease_until_ms};
    int rc = queue_fenced(q, "lease_expires_ms=?3", &f, err);
    if (rc)
        return rc;
    sqlite3_stmt *st = queue_prep(q, "SELECT cancel_requested FROM jobs WHERE id=?", &rc);
    if (!st)
        return queue_sqlerr(q, rc, "renew", err);
    sqlite3_bind_int64(st, 1, a->job->id);
    if (sqlite3_step(st) == SQLITE_ROW)
        a->cancel = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return 0;
}

static int sq_renew(Queue *q, const Job *j, int64_t lease_until_ms, int *cancel, char *err)
{
    RenewArg a = {.job = j, .lease_until_ms = lease_until_ms};
    int rc = queue_tx(q, queue_renew_tx, &a, err);
    *cancel = rc == 0 && a.cancel;
    return rc;
}

typedef struct {
    const Job *job;
    const QueueResultArgs *r;
} SucceedArg;

static int queue_succeed_tx(Queue *q, void *arg, char *err)
{
    SucceedArg *a = arg;
    int64_t now = queue_now(q);
    FenceArg f = {.job = a->job, .i3 = now};
    int rc = queue_fenced(q,
                          "state='succeeded', finished_ms=?3, claim_token=NULL, "
                          "lease_expires_ms=NULL, error_code=NULL, error=NULL",
                          &f, err);
    if (rc)
        return rc;
    sqlite3_stmt *st = queue_prep(q,
                                  "INSERT OR REPLACE INTO results (job_id, format, body, summary, "
                                  "created_ms) VALUES (?,?,?,?,?)",
                                  &rc);
    if (!st)
        return queue_sqlerr(q, rc, "store the result", err);
    sqlite3_bind_int64(st, 1, a->job->id);
    bind_text(st, 2, a->r->format);
    sqlite3_bind_blob64(st, 3, a->r->result ? a->r->result : "", a->r->len, SQLITE_TRANSIENT);
    bind_text(st, 4, a->r->summary);
    sqlite3_bind_int64(st, 5, now);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return queue_sqlerr(q, rc, "store the result", err);
    if ((rc = queue_close_attempt(q, a->job, "succeeded", NULL, err)) != 0)
        return rc;
    return queue_add_event(q, a->job->id, "job.succeeded", a->r, err);
}

static int sq_succeed(Queue *q, const Job *j, const QueueResultArgs *r, char *err)
{
    SucceedArg a = {.job = j, .r = r};
    return queue_tx(q, queue_succeed_tx, &a, err);
}

typedef struct {
    const Job *job;
    const QueueFailArgs *f;
} FailArg;

static int queue_fail_tx(Queue *q, void *arg, char *err)
{
    FailArg *a = arg;
    FenceArg f = {.job = a->job, .i3 = a->f->at_ms, .s4 = a->f->code_name, .s5 = a->f->message};
    int rc = queue_fenced(q,
                          a->f->retry ? "state='failed', run_after_ms=?3, claim_token=NULL, "
                                        "lease_expires_ms=NULL, error_code=?4, error=?5"
                                      : "state='dead', finished_ms=?3, claim_token=NULL, "
                                        "lease_expires_ms=NULL, error_code=?4, error=?5",
                          &f, err);
    if (rc == 0)
        rc = queue_close_attempt(q, a->job, "failed", a->f->message, err);
    if (rc == 0 && !a->f->retry)
        rc = queue_add_event(q, a->job->id, "job.failed", NULL, err);
    return rc;
}

static int sq_fail(Queue *q, const Job *j, const QueueFailArgs *fa, char *err)
{
    FailArg a = {.job = j, .f = fa};
    return queue_tx(q, queue_fail_tx, &a, err);
}

static int queue_ack_cancel_tx(Queue *q, void *arg, char *err)
{
    const Job *j = arg;
    FenceArg f = {.job = j, .i3 = queue_now(q)};
    int rc = queue_fenced(q,
                          "state='cancelled', finished_ms=?3, claim_token=NULL, "
                          "lease_expires_ms=NULL, error_code='ECANCEL', error='cancelled'",
                          &f, err);
    if (rc == 0)
        rc = queue_close_attempt(q, j, "cancelled", NULL, err);
    if (rc == 0)
        rc = queue_add_event(q, j->id, "job.cancelled", NULL, err);
    return rc;
}

static int sq_ack_cancel(Queue *q, const Job *j, char *err)
{
    return queue_tx(q, queue_ack_cancel_tx, (void *)j, err);
}

static int queue_release_tx(Queue *q, void *arg, char *err)
{
    const Job *j = arg;
    FenceArg f = {.job = j};
    int rc = queue_close_attempt(q, j, "released", NULL, err);
    if (rc == 0)
        rc = queue_fenced(q,
                          "state=CASE WHEN attempts>1 THEN 'failed' ELSE 'queued' END, "
                          "attempts=attempts-1, claim_token=NULL, lease_expires_ms=NULL",
                          &f, err);
    return rc;
}

static int sq_release(Queue *q, const Job *j, char *err)
{
    return queue_tx(q, queue_release_tx, (void *)j, err);
}

/* ---- per-unit results ---- */

typedef struct {
    const Job *job;
    int total;
} UnitsTotalArg;

static int queue_units_total_tx(Queue *q, void *arg, char *err)
{
    UnitsTotalArg *a = arg;
    FenceArg f = {.job = a->job, .i3 = a->total};
    return queue_fenced(q, "units_total=?3", &f, err);
}

static int sq_set_units_total(Queue *q, const Job *j, int units_total, char *err)
{
    UnitsTotalArg a = {.job = j, .total = units_total};
    return queue_tx(q, queue_units_total_tx, &a, err);
}

typedef struct {
    const Job *job;
    const JobUnit *unit;
} UnitArg;

static int queue_unit_store_tx(Queue *q, void *arg, char *err)
{
    UnitArg *a = arg;
    const JobUnit *u = a->unit;
    FenceArg f = {.job = a->job};
    /* a no-op update of the job row is the fence: zero rows means the lease is lost */
    int rc = queue_fenced(q, "lease_expires_ms=lease_expires_ms", &f, err);
    if (rc)
        return rc;
    sqlite3_stmt *st = queue_prep(q,
                                  "INSERT INTO job_units (job_id, idx, result, meta_json, tok_in, "
                                  "tok_out, seconds, error_code, error, attempt, created_ms) "
                                  "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                                  &rc);
    if (!st)
        return queue_sqlerr(q, rc, "store a unit", err);
    sqlite3_bind_int64(st, 1, a->job->id);
    sqlite3_bind_int(st, 2, u->idx);
    bind_text(st, 3, u->result);
    bind_text(st, 4, u->meta_json);
    sqlite3_bind_int64(st, 5, u->tok_in);
    sqlite3_bind_int64(st, 6, u->tok_out);
    sqlite3_bind_double(st, 7, u->seconds);
    bind_text(st, 8, u->error_code);
    bind_text(st, 9, u->error);
    sqlite3_bind_int(st, 10, a->job->attempts);
    sqlite3_bind_int64(st, 11, queue_now(q));
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc == SQLITE_CONSTRAINT_PRIMARYKEY)
        return err_set(err, VLQ_EINPUT, "job %lld: unit %d: already stored",
                       (long long)a->job->id, u->idx);
    return rc == SQLITE_DONE ? 0 : queue_sqlerr(q, rc, "store a unit", err);
}

static int sq_unit_store(Queue *q, const Job *j, const JobUnit *u, char *err)
{
    UnitArg a = {.job = j, .unit = u};
    return queue_tx(q, queue_unit_store_tx, &a, err);
}

static int sq_units(Queue *q, int64_t id, JobUnit **out, int *n, char *err)
{
    *out = NULL;
    *n = 0;
    int rc;
    sqlite3_stmt *st = queue_prep(q,
                                  "SELECT idx, result, meta_json, tok_in, tok_out, seconds, "
                                  "error_code, error, attempt FROM job_units WHERE job_id=? "
                                  "ORDER BY idx",
                                  &rc);
    if (!st)
        return queue_sqlerr(q, rc, "read units", err);
    sqlite3_bind_int64(st, 1, id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        *out = xrealloc(*out, (size_t)(*n + 1) * sizeof **out);
        JobUnit *u = &(*out)[(*n)++];
        u->idx = sqlite3_column_int(st, 0);
        u->result = col_text(st, 1);
        u->meta_json = col_text(st, 2);
        u->tok_in = sqlite3_column_int64(st, 3);
        u->tok_out = sqlite3_column_int64(st, 4);
        u->seconds = sqlite3_column_double(st, 5);
        u->error_code = col_text(st, 6);
        u->error = col_text(st, 7);
        u->attempt = sqlite3_column_int(st, 8);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : queue_sqlerr(q, rc, "read units", err);
}

/* ---- admin ---- */

static int sq_list(Queue *q, const JobFilter *f, Job ***jobs, int *n, char *err)
{
    int rc;
    sqlite3_stmt *st = queue_prep(q,
                                  "SELECT " JOB_COLS " FROM jobs WHERE (?1 IS NULL OR state=?1) "
                                  "AND (?2 IS NULL OR kind=?2) ORDER BY id DESC LIMIT ?3",
                                  &rc);
    if (!st)
        return queue_sqlerr(q, rc, "list", err);
    bind_text(st, 1, f->state >= 0 ? queue_state_name(f->state) : NULL);
    bind_text(st, 2, f->kind);
    sqlite3_bind_int64(st, 3, f->limit > 0 ? f->limit : -1);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        *jobs = xrealloc(*jobs, (size_t)(*n + 1) * sizeof **jobs);
        (*jobs)[(*n)++] = queue_row_job(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return queue_sqlerr(q, rc, "list", err);
    for (int i = 0; i < *n; i++)
        if ((rc = queue_load_inputs(q, (*jobs)[i], err)) != 0)
            return rc;
    return 0;
}

static int sq_result(Queue *q, int64_t id, char **format, char **result, size_t *len,
                     char *err)
{
    int rc;
    sqlite3_stmt *st = queue_prep(q, "SELECT format, body FROM results WHERE job_id=?", &rc);
    if (!st)
        return queue_sqlerr(q, rc, "read the result", err);
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *format = col_text(st, 0);
        *len = (size_t)sqlite3_column_bytes(st, 1);
        *result = xmalloc(*len + 1);
        memcpy(*result, sqlite3_column_blob(st, 1), *len);
        (*result)[*len] = '\0';
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? err_set(err, VLQ_EIO, "job %lld: result missing", (long long)id)
                                 : queue_sqlerr(q, rc, "read the result", err);
    return 0;
}

typedef struct {
    int64_t id;
    JobState state;
} IdArg;

/* ?1 = v[0], ?2 = v[1] (a statement may use only ?1). */
static void bind_id_now(sqlite3_stmt *st, const void *p)
{
    const int64_t *v = p;
    sqlite3_bind_int64(st, 1, v[0]);
    sqlite3_bind_int64(st, 2, v[1]);
}

static int queue_cancel_tx(Queue *q, void *arg, char *err)
{
    IdArg *a = arg;
    Job *j;
    int rc = queue_read_job(q, a->id, &j, err);
    if (rc)
        return rc;
    if (!j)
        return queue_no_job(a->id, err);
    JobState s = j->state;
    queue_job_free(j);
    int64_t v[2] = {a->id, queue_now(q)};
    if (s == JOB_QUEUED || s == JOB_FAILED) {
        rc = queue_exec1(q,
                         "UPDATE jobs SET state='cancelled', finished_ms=?2, "
                         "error_code='ECANCEL', error='cancelled' WHERE id=?1",
                         NULL, err, bind_id_now, v);
        a->state = JOB_CANCELLED;
        return rc ? rc : queue_add_event(q, a->id, "job.cancelled", NULL, err);
    }
    if (s == JOB_RUNNING) {
        a->state = JOB_RUNNING;
        return queue_exec1(q, "UPDATE jobs SET cancel_requested=1 WHERE id=?1", NULL,
                           err, bind_id_now, v);
    }
    return queue_cancel_check(a->id, s, err);
}

static int sq_cancel(Queue *q, int64_t id, JobState *new_state, char *err)
{
    IdArg a = {.id = id};
    int rc = queue_tx(q, queue_cancel_tx, &a, err);
    if (rc == 0)
        *new_state = a.state;
    return rc;
}

static int queue_retry_tx(Queue *q, void *arg, char *err)
{
    IdArg *a = arg;
    Job *j;
    int rc = queue_read_job(q, a->id, &j, err);
    if (rc)
        return rc;
    if (!j)
        return queue_no_job(a->id, err);
    JobState s = j->state;
    queue_job_free(j);
    if ((rc = queue_retry_check(a->id, s, err)) != 0)
        return rc;
    int64_t v[2] = {a->id, queue_now(q)};
    /* the failed units run again; the ones that succeeded are kept and skipped */
    rc = queue_exec1(q, "DELETE FROM job_units WHERE job_id=?1 AND error_code IS NOT NULL",
                     NULL, err, bind_id_now, v);
    if (rc)
        return rc;
    return queue_exec1(q,
                       "UPDATE jobs SET state='queued', attempts=0, run_after_ms=?2, "
                       "finished_ms=NULL, cancel_requested=0, error_code=NULL, error=NULL "
                       "WHERE id=?1",
                       NULL, err, bind_id_now, v);
}

static int sq_retry(Queue *q, int64_t id, char *err)
{
    IdArg a = {.id = id};
    return queue_tx(q, queue_retry_tx, &a, err);
}

typedef struct {
    int64_t cutoff;
    int deleted;
} PurgeArg;

static int queue_purge_tx(Queue *q, void *arg, char *err)
{
    PurgeArg *a = arg;
    int64_t v[2] = {a->cutoff, 0}, changes = 0;
    int rc = queue_exec1(q,
                         "DELETE FROM jobs WHERE state IN ('succeeded','dead','cancelled') AND "
                         "finished_ms<?1 AND NOT EXISTS (SELECT 1 FROM events e WHERE "
                         "e.job_id=jobs.id AND e.state='pending')",
                         &changes, err, bind_id_now, v);
    a->deleted = (int)changes;
    return rc;
}

static int sq_purge(Queue *q, int64_t cutoff_ms, int *n_deleted, char *err)
{
    PurgeArg a = {.cutoff = cutoff_ms};
    int rc = queue_tx(q, queue_purge_tx, &a, err);
    *n_deleted = rc ? 0 : a.deleted;
    return rc;
}

static int sq_attempts(Queue *q, int64_t id, JobAttempt **out, int *n, char *err)
{
    int rc;
    sqlite3_stmt *st = queue_prep(q,
                                  "SELECT attempt, worker_id, started_ms, coalesce(finished_ms,0), "
                                  "outcome, error FROM attempts WHERE job_id=? ORDER BY attempt",
                                  &rc);
    if (!st)
        return queue_sqlerr(q, rc, "read attempts", err);
    sqlite3_bind_int64(st, 1, id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        *out = xrealloc(*out, (size_t)(*n + 1) * sizeof **out);
        JobAttempt *a = &(*out)[(*n)++];
        a->attempt = sqlite3_column_int(st, 0);
        a->worker_id = col_text(st, 1);
        a->started_ms = sqlite3_column_int64(st, 2);
        a->finished_ms = sqlite3_column_int64(st, 3);
        a->outcome = col_text(st, 4);
        a->error = col_text(st, 5);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : queue_sqlerr(q, rc, "read attempts", err);
}

/* ---- webhook outbox ---- */

/* The event columns; the lease token is handed out by events_due only. */
#define EVENT_COLS                                                                        \
    "id, event_id, job_id, type, url, secret, body, state, attempts, next_attempt_ms, " \
    "last_error, coalesce(last_status,0)"
#define EVENT_COLS_LEASED EVENT_COLS ", lease_token"
#define EVENT_COLS_LISTED EVENT_COLS ", NULL"

static OutboxEvent *queue_row_event(sqlite3_stmt *st)
{
    OutboxEvent *e = xcalloc(1, sizeof *e);
    e->id = sqlite3_column_int64(st, 0);
    e->event_id = col_text(st, 1);
    e->job_id = sqlite3_column_int64(st, 2);
    e->type = col_text(st, 3);
    e->url = col_text(st, 4);
    e->secret = col_text(st, 5);
    e->body = col_text(st, 6);
    int state = queue_event_state_parse((const char *)sqlite3_column_text(st, 7));
    e->state = state < 0 ? EVENT_PENDING : (EventState)state;
    e->attempts = sqlite3_column_int(st, 8);
    e->next_attempt_ms = sqlite3_column_int64(st, 9);
    e->last_error = col_text(st, 10);
    e->last_status = sqlite3_column_int(st, 11);
    e->lease_token = col_text(st, 12);
    return e;
}

/* The events of sql, binding ?1 = a1 and ?2 = s2. */
static int queue_read_events(Queue *q, const char *sql, int64_t a1, const char *s2,
                             OutboxEvent ***events, int *n, char *err)
{
    *events = NULL;
    *n = 0;
    int rc;
    sqlite3_stmt *st = queue_prep(q, sql, &rc);
    if (!st)
        return queue_sqlerr(q, rc, "read events", err);
    sqlite3_bind_int64(st, 1, a1);
    bind_text(st, 2, s2);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        *events = xrealloc(*events, (size_t)(*n + 1) * sizeof **events);
        (*events)[(*n)++] = queue_row_event(st);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : queue_sqlerr(q, rc, "read events", err);
}

typedef struct {
    int max;
    int64_t lease_ms;
    const char *token;
    OutboxEvent **events;
    int n;
} DueArg;

/* Lease the due events (endpoints with a leased event are skipped: one deliverer per
 * endpoint at a time keeps its order), then read them back by the token. */
static int queue_events_due_tx(Queue *q, void *arg, char *err)
{
    DueArg *a = arg;
    int64_t now = queue_now(q);
    int rc;
    sqlite3_stmt *st = queue_prep(
        q,
        "UPDATE events SET lease_until_ms=?1+?3, lease_token=?4 WHERE id IN (SELECT id FROM "
        "events WHERE state='pending' AND next_attempt_ms<=?1 AND url NOT IN (SELECT url FROM "
        "disabled_endpoints) AND url NOT IN (SELECT url FROM events WHERE state='pending' AND "
        "lease_until_ms>?1) ORDER BY next_attempt_ms, id LIMIT ?2)",
        &rc);
    if (!st)
        return queue_sqlerr(q, rc, "lease events", err);
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int64(st, 2, a->max > 0 ? a->max : -1);
    sqlite3_bind_int64(st, 3, a->lease_ms);
    bind_text(st, 4, a->token);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return queue_sqlerr(q, rc, "lease events", err);
    return queue_read_events(q,
                             "SELECT " EVENT_COLS_LEASED " FROM events WHERE ?1=?1 AND "
                             "lease_token=?2 ORDER BY next_attempt_ms, id",
                             0, a->token, &a->events, &a->n, err);
}

static int sq_events_due(Queue *q, int max, int64_t lease_ms, const char *token,
                         OutboxEvent ***events, int *n, char *err)
{
    DueArg a = {.max = max, .lease_ms = lease_ms, .token = token};
    int rc = queue_tx(q, queue_events_due_tx, &a, err);
    if (rc) { /* a retried transaction may have read some before */
        for (int i = 0; i < a.n; i++)
            queue_event_free(a.events[i]);
        free(a.events);
        return rc;
    }
    *events = a.events;
    *n = a.n;
    return 0;
}

static int sq_events_list(Queue *q, int64_t job_id, OutboxEvent ***events, int *n, char *err)
{
    return queue_read_events(q,
                             "SELECT " EVENT_COLS_LISTED " FROM events WHERE ?1<=0 OR job_id=?1 "
                             "ORDER BY id DESC",
                             job_id, NULL, events, n, err);
}

typedef struct {
    const OutboxEvent *e;
    const QueueDeliveryArgs *d;
} AttemptArg;

static int queue_event_attempt_tx(Queue *q, void *arg, char *err)
{
    AttemptArg *a = arg;
    int64_t now = queue_now(q);
    int rc;
    sqlite3_stmt *st = queue_prep(
        q,
        "UPDATE events SET state=?2, attempts=attempts+1, next_attempt_ms=?3, last_status=?4, "
        "last_error=?5, lease_until_ms=NULL, lease_token=NULL WHERE id=?1 AND lease_token IS ?6 "
        "RETURNING attempts",
        &rc);
    if (!st)
        return queue_sqlerr(q, rc, "record a delivery", err);
    sqlite3_bind_int64(st, 1, a->e->id);
    bind_text(st, 2, queue_event_state_name(a->d->state));
    sqlite3_bind_int64(st, 3, a->d->next_attempt_ms);
    if (a->d->http_status)
        sqlite3_bind_int(st, 4, a->d->http_status);
    else
        sqlite3_bind_null(st, 4);
    bind_text(st, 5, a->d->error && a->d->error[0] ? a->d->error : NULL);
    bind_text(st, 6, a->e->lease_token);
    rc = sqlite3_step(st);
    int attempt = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
    if (rc == SQLITE_ROW)
        rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return queue_sqlerr(q, rc, "record a delivery", err);
    if (!attempt) { /* the fence failed: gone, or leased to another deliverer */
        if (!(st = queue_prep(q, "SELECT 1 FROM events WHERE id=?", &rc)))
            return queue_sqlerr(q, rc, "record a delivery", err);
        sqlite3_bind_int64(st, 1, a->e->id);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return queue_sqlerr(q, rc, "record a delivery", err);
        return rc == SQLITE_ROW ? queue_event_lease_lost(a->e, err)
                     : err_set(err, VLQ_EINPUT, "event %s: no such event", a->e->event_id);
    }
    st = queue_prep(q,
                    "INSERT OR REPLACE INTO event_attempts (event_row, attempt, at_ms, "
                    "http_status, error, duration_s) VALUES (?,?,?,?,?,?)",
                    &rc);
    if (!st)
        return queue_sqlerr(q, rc, "record a delivery", err);
    sqlite3_bind_int64(st, 1, a->e->id);
    sqlite3_bind_int(st, 2, attempt);
    sqlite3_bind_int64(st, 3, now);
    if (a->d->http_status)
        sqlite3_bind_int(st, 4, a->d->http_status);
    else
        sqlite3_bind_null(st, 4);
    bind_text(st, 5, a->d->error && a->d->error[0] ? a->d->error : NULL);
    sqlite3_bind_double(st, 6, a->d->duration_s);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return queue_sqlerr(q, rc, "record a delivery", err);
    if (!a->d->gone)
        return 0;
    /* disable the endpoint, and fail what was still pending for it */
    static const char *const disable[] = {
        "INSERT OR IGNORE INTO disabled_endpoints (url, since_ms, reason) VALUES "
        "(?1,?2,'410 Gone')",
        "UPDATE events SET state='failed', last_error='endpoint disabled (410 Gone), not sent' "
        "WHERE url=?1 AND state='pending' AND ?2>=0",
    };
    for (int i = 0; i < 2; i++) {
        if (!(st = queue_prep(q, disable[i], &rc)))
            return queue_sqlerr(q, rc, "disable an endpoint", err);
        bind_text(st, 1, a->e->url);
        sqlite3_bind_int64(st, 2, now);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE)
            return queue_sqlerr(q, rc, "disable an endpoint", err);
    }
    return 0;
}

static int sq_event_attempt(Queue *q, const OutboxEvent *e, const QueueDeliveryArgs *d,
                            char *err)
{
    AttemptArg a = {.e = e, .d = d};
    return queue_tx(q, queue_event_attempt_tx, &a, err);
}

typedef struct {
    const OutboxEvent *e;
} ReleaseArg;

static void bind_release(sqlite3_stmt *st, const void *p)
{
    const OutboxEvent *e = ((const ReleaseArg *)p)->e;
    sqlite3_bind_int64(st, 1, e->id);
    bind_text(st, 2, e->lease_token);
}

static int queue_event_release_tx(Queue *q, void *arg, char *err)
{
    return queue_exec1(q,
                       "UPDATE events SET lease_until_ms=NULL, lease_token=NULL WHERE id=?1 "
                       "AND lease_token=?2",
                       NULL, err, bind_release, arg);
}

static int sq_event_release(Queue *q, const OutboxEvent *e, char *err)
{
    ReleaseArg a = {.e = e};
    return queue_tx(q, queue_event_release_tx, &a, err);
}

typedef struct {
    const char *event_id;
} RedeliverArg;

static int queue_redeliver_tx(Queue *q, void *arg, char *err)
{
    RedeliverArg *a = arg;
    int rc;
    sqlite3_stmt *st = queue_prep(q,
                                  "UPDATE events SET state='pending', next_attempt_ms=?2 WHERE "
                                  "event_id=?1 RETURNING url",
                                  &rc);
    if (!st)
        return queue_sqlerr(q, rc, "redeliver", err);
    bind_text(st, 1, a->event_id);
    sqlite3_bind_int64(st, 2, queue_now(q));
    rc = sqlite3_step(st);
    char *url = rc == SQLITE_ROW ? col_text(st, 0) : NULL;
    if (rc == SQLITE_ROW)
        rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        free(url);
        return queue_sqlerr(q, rc, "redeliver", err);
    }
    if (!url)
        return err_set(err, VLQ_EINPUT, "event %s: no such event", a->event_id);
    /* a redelivery by hand re-enables the endpoint that answered 410 */
    st = queue_prep(q, "DELETE FROM disabled_endpoints WHERE url=?", &rc);
    if (st) {
        bind_text(st, 1, url);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
    }
    free(url);
    return rc == SQLITE_DONE ? 0 : queue_sqlerr(q, rc, "redeliver", err);
}

static int sq_event_redeliver(Queue *q, const char *event_id, char *err)
{
    RedeliverArg a = {.event_id = event_id};
    return queue_tx(q, queue_redeliver_tx, &a, err);
}

/* ---- http(s) inputs ---- */

typedef struct {
    const Job *job;
    int idx;
    const char *sha256;
    int64_t size_bytes;
} FetchedArg;

static int sq_input_fetched_tx(Queue *q, void *arg, char *err)
{
    FetchedArg *a = arg;
    FenceArg f = {.job = a->job, .i3 = a->idx, .s4 = a->sha256, .i6 = a->size_bytes};
    int rc = queue_fenced(q, "lease_expires_ms=lease_expires_ms", &f, err);
    if (rc)
        return rc;
    /* sha256='' is a URL input never downloaded: the first record wins, for good */
    return queue_exec1(q,
                       "UPDATE job_inputs SET sha256=?4, size_bytes=?6 WHERE job_id=?1 AND "
                       "idx=?3 AND sha256=''",
                       NULL, err, bind_fence, &f);
}

static int sq_input_fetched(Queue *q, const Job *j, int idx, const char *sha256,
                            int64_t size_bytes, char *err)
{
    FetchedArg a = {.job = j, .idx = idx, .sha256 = sha256, .size_bytes = size_bytes};
    return queue_tx(q, sq_input_fetched_tx, &a, err);
}

/* ---- vlq queue copy: rows in and out (see queue_copy.c) ---- */

static int sq_copy_begin(Queue *q, int write, char *err)
{
    /* the source: a deferred transaction is one snapshot in WAL mode; the target: one
     * write transaction for the whole copy */
    double deadline = util_mono_s() + q->busy_timeout_ms / 1000.0;
    int rc;
    while ((rc = sqlite3_exec(SQ(q)->db, write ? "BEGIN IMMEDIATE" : "BEGIN", NULL, NULL,
                              NULL)) != SQLITE_OK &&
           queue_is_busy(rc) && util_mono_s() < deadline)
        util_sleep_ms(10); /* a worker's short transaction: wait for it */
    return rc == SQLITE_OK ? 0 : queue_sqlerr(q, rc, "begin the copy", err);
}

static int sq_copy_end(Queue *q, int commit, char *err)
{
    if (commit) {
        int rc = sqlite3_exec(SQ(q)->db, "COMMIT", NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            return 0;
        rc = queue_sqlerr(q, rc, "commit the copy", err);
        sqlite3_exec(SQ(q)->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    sqlite3_exec(SQ(q)->db, "ROLLBACK", NULL, NULL, NULL);
    return 0;
}

/* "c1, c2, ..." of t into b. */
static void sq_copy_cols(Buf *b, const QueueTable *t)
{
    for (int c = 0; c < t->n_cols; c++)
        buf_printf(b, "%s%s", c ? ", " : "", t->cols[c].name);
}

/* 0 when t's columns in the database are exactly t->cols (as a set), else VLQ_EINPUT. */
static int sq_copy_check_cols(Queue *q, const QueueTable *t, char *err)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT name FROM pragma_table_info('%s')", t->name);
    int rc, n = 0, unknown = 0;
    char bad[64] = "";
    sqlite3_stmt *st = queue_prep(q, sql, &rc);
    if (!st)
        return queue_sqlerr(q, rc, "read the columns", err);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        int known = 0;
        for (int c = 0; c < t->n_cols && !known; c++)
            known = name && !strcmp(name, t->cols[c].name);
        if (!known && !unknown++)
            snprintf(bad, sizeof bad, "%s", name ? name : "?");
        n++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return queue_sqlerr(q, rc, "read the columns", err);
    if (unknown)
        return err_set(err, VLQ_EINPUT, "%s: table %s has a column this vlq cannot copy (%s)",
                       q->location, t->name, bad);
    if (n != t->n_cols)
        return err_set(err, VLQ_EINPUT, "%s: table %s lacks %d column(s) this vlq copies",
                       q->location, t->name, t->n_cols - n);
    return 0;
}

static int sq_copy_read(Queue *q, const QueueTable *t, QueueRowFn row, void *arg, char *err)
{
    int rc = sq_copy_check_cols(q, t, err);
    if (rc)
        return rc;
    Buf b = {0};
    buf_puts(&b, "SELECT ");
    sq_copy_cols(&b, t);
    buf_printf(&b, " FROM %s ORDER BY %s", t->name, t->order_by);
    sqlite3_stmt *st = queue_prep(q, b.data, &rc);
    buf_clear(&b);
    if (!st)
        return queue_sqlerr(q, rc, "read for the copy", err);
    QueueValue v[QUEUE_COPY_MAX_COLS];
    int code = 0;
    while (code == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        for (int c = 0; c < t->n_cols; c++) {
            QueueValue *x = &v[c];
            memset(x, 0, sizeof *x);
            x->null = sqlite3_column_type(st, c) == SQLITE_NULL;
            if (x->null)
                continue;
            switch (t->cols[c].type) {
            case QUEUE_COL_INT: x->i = sqlite3_column_int64(st, c); break;
            case QUEUE_COL_REAL: x->d = sqlite3_column_double(st, c); break;
            case QUEUE_COL_TEXT:
                x->s = (const char *)sqlite3_column_text(st, c);
                x->len = (size_t)sqlite3_column_bytes(st, c);
                break;
            case QUEUE_COL_BLOB:
                x->s = sqlite3_column_blob(st, c);
                x->len = (size_t)sqlite3_column_bytes(st, c);
                if (!x->s)
                    x->s = "";
                break;
            }
        }
        code = row(arg, v, err);
    }
    if (code == 0 && rc != SQLITE_DONE)
        code = queue_sqlerr(q, rc, "read for the copy", err);
    sqlite3_finalize(st);
    return code;
}

static int sq_copy_write(Queue *q, const QueueTable *t, const QueueValue *v, char *err)
{
    Buf b = {0};
    buf_printf(&b, "INSERT INTO %s (", t->name);
    sq_copy_cols(&b, t);
    buf_puts(&b, ") VALUES (");
    for (int c = 0; c < t->n_cols; c++)
        buf_puts(&b, c ? ", ?" : "?");
    buf_puts(&b, ")");
    int rc;
    sqlite3_stmt *st = queue_prep(q, b.data, &rc);
    buf_clear(&b);
    if (!st)
        return queue_sqlerr(q, rc, "write the copy", err);
    for (int c = 0; c < t->n_cols; c++) {
        const QueueValue *x = &v[c];
        if (x->null) {
            sqlite3_bind_null(st, c + 1);
            continue;
        }
        switch (t->cols[c].type) {
        case QUEUE_COL_INT: sqlite3_bind_int64(st, c + 1, x->i); break;
        case QUEUE_COL_REAL: sqlite3_bind_double(st, c + 1, x->d); break;
        case QUEUE_COL_TEXT:
            sqlite3_bind_text64(st, c + 1, x->s, x->len, SQLITE_TRANSIENT, SQLITE_UTF8);
            break;
        case QUEUE_COL_BLOB:
            sqlite3_bind_blob64(st, c + 1, x->s, x->len, SQLITE_TRANSIENT);
            break;
        }
    }
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : queue_sqlerr(q, rc, "write the copy", err);
}

static int sq_copy_clear(Queue *q, const QueueTable *t, char *err)
{
    char sql[96];
    snprintf(sql, sizeof sql, "DELETE FROM %s", t->name);
    return queue_exec1(q, sql, NULL, err, NULL, NULL);
}

const QueueDriver queue_sqlite_driver = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .wait = sq_wait,
    .submit = sq_submit,
    .get = sq_get,
    .claim = sq_claim,
    .renew = sq_renew,
    .succeed = sq_succeed,
    .fail = sq_fail,
    .ack_cancel = sq_ack_cancel,
    .release = sq_release,
    .set_units_total = sq_set_units_total,
    .unit_store = sq_unit_store,
    .units = sq_units,
    .list = sq_list,
    .result = sq_result,
    .cancel = sq_cancel,
    .retry = sq_retry,
    .purge = sq_purge,
    .attempts = sq_attempts,
    .events_due = sq_events_due,
    .events_list = sq_events_list,
    .event_attempt = sq_event_attempt,
    .event_release = sq_event_release,
    .event_redeliver = sq_event_redeliver,
    .copy_begin = sq_copy_begin,
    .copy_read = sq_copy_read,
    .copy_write = sq_copy_write,
    .copy_clear = sq_copy_clear,
    .copy_end = sq_copy_end,
    .input_fetched = sq_input_fetched,
};
