/* Tests of the queue: every state transition, fencing, lease takeover, retries with
 * backoff, idempotency, cancel, retry by hand, purge, results and the outbox, migrations
 * and concurrent claimers. Time is a fake clock (QueueOptions.now_ms): no sleeps.
 *
 * One suite, two backends: group `queue` runs every test on SQLite files in the test's
 * temp dir; group `queue_pg` runs the same functions on PostgreSQL, where each database
 * name a test uses (db("q.db")) becomes a fresh database on the server named by
 * $VLQ_TEST_PG, dropped after the test. Without $VLQ_TEST_PG (or without a server
 * there) the PostgreSQL tests are skipped, saying why; with VLQ_REQUIRE_PG=1 that skip
 * is a failure. */
#include "err.h"
#include "queue.h"
#include "test.h"
#include "util.h"

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static int64_t fake_now = 1700000000000;
static int64_t fake_clock(void) { return fake_now; }

/* ---- the backend fixture ---- */

static const char *pg_server; /* $VLQ_TEST_PG in the queue_pg group, else NULL (SQLite) */
static char pg_dbs[8][64];    /* the databases this test created (dropped after it) */
static int pg_n_dbs;

/* The server's URL with its database replaced by dbname (static buffer per call site use:
 * the caller copies it). */
static const char *pg_url_for(const char *dbname)
{
    static char url[1024];
    const char *auth = strstr(pg_server, "://");
    auth = auth ? auth + 3 : pg_server;
    const char *query = strchr(auth, '?');
    const char *slash = strchr(auth, '/');
    size_t head = (size_t)((slash && (!query || slash < query) ? slash
                                                               : query ? query
                                                                       : auth + strlen(auth)) -
                           pg_server);
    snprintf(url, sizeof url, "%.*s/%s%s", (int)head, pg_server, dbname, query ? query : "");
    return url;
}

/* Run sql on the server's own database; 0 or the error text in err. */
static int pg_admin(const char *sql, char *err)
{
    PGconn *c = PQconnectdb(pg_server);
    int ok = PQstatus(c) == CONNECTION_OK;
    if (ok) {
        PGresult *r = PQexec(c, sql);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
        PQclear(r);
    }
    if (!ok)
        snprintf(err, VLQ_ERRLEN, "%s", PQerrorMessage(c));
    PQfinish(c);
    return ok ? 0 : -1;
}

/* Where a test's database called name lives: the file name itself on SQLite; on
 * PostgreSQL a database made for this test on first use. The string is stable until the
 * next db() call of another name. */
static const char *db(const char *name)
{
    static char loc[1024];
    if (!pg_server)
        return name;
    char dbname[64];
    snprintf(dbname, sizeof dbname, "vlqt_%d_", (int)getpid());
    for (size_t i = strlen(dbname), k = 0; name[k] && i < sizeof dbname - 1; k++)
        if ((name[k] >= 'a' && name[k] <= 'z') || (name[k] >= '0' && name[k] <= '9'))
            dbname[i++] = name[k], dbname[i] = '\0';
    int known = 0;
    for (int i = 0; i < pg_n_dbs; i++)
        known |= !strcmp(pg_dbs[i], dbname);
    if (!known && pg_n_dbs < 8) {
        char sql[128], err[VLQ_ERRLEN];
        snprintf(sql, sizeof sql, "CREATE DATABASE %s", dbname);
        if (pg_admin(sql, err))
            test_fail(__FILE__, __LINE__, "%s: %s", sql, err);
        snprintf(pg_dbs[pg_n_dbs++], sizeof pg_dbs[0], "%s", dbname);
    }
    snprintf(loc, sizeof loc, "%s", pg_url_for(dbname));
    return loc;
}

/* Run sql on the test database loc (either backend): for setting up odd states. */
static void db_exec(const char *loc, const char *sql)
{
    if (!pg_server) {
        sqlite3 *h;
        CHECK_EQ(sqlite3_open(loc, &h), SQLITE_OK);
        CHECK_EQ(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(h);
        return;
    }
    PGconn *c = PQconnectdb(loc);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        test_fail(__FILE__, __LINE__, "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

/* A digest of the whole database at loc, to prove a refused open changed nothing. */
static void db_digest(const char *loc, char out[65])
{
    char err[VLQ_ERRLEN];
    if (!pg_server) {
        util_sha256_file(loc, out, err);
        return;
    }
    PGconn *c = PQconnectdb(loc);
    PGresult *r = PQexec(c, "SELECT md5(string_agg(table_name || ':' || column_name || ':' || "
                            "data_type, ',' ORDER BY table_name, column_name)) || "
                            "(SELECT string_agg(version::text, ',') FROM vlq_schema_version) "
                            "FROM information_schema.columns WHERE table_schema='public'");
    snprintf(out, 65, "%s", PQresultStatus(r) == PGRES_TUPLES_OK ? PQgetvalue(r, 0, 0) : "?");
    PQclear(r);
    PQfinish(c);
}

/* Run test fn on PostgreSQL: skip (or fail, with VLQ_REQUIRE_PG=1) when no server. */
static void pg_run_test(void (*fn)(void))
{
    const char *url = getenv("VLQ_TEST_PG");
    const char *req = getenv("VLQ_REQUIRE_PG");
    int required = req && !strcmp(req, "1");
    char why[VLQ_ERRLEN + 64] = "";
    if (!url || !url[0]) {
        snprintf(why, sizeof why, "VLQ_TEST_PG not set (no PostgreSQL server to test on)");
    } else {
        PGconn *c = PQconnectdb(url);
        if (PQstatus(c) != CONNECTION_OK)
            snprintf(why, sizeof why, "no server at VLQ_TEST_PG: %s", PQerrorMessage(c));
        PQfinish(c);
    }
    if (why[0]) {
        why[strcspn(why, "\n")] = '\0';
        if (required) {
            test_fail(__FILE__, __LINE__, "VLQ_REQUIRE_PG=1 but %s", why);
            return;
        }
        test_skip("%s", why);
    }
    pg_server = url;
    fn();
    for (int i = 0; i < pg_n_dbs; i++) {
        char sql[128], err[VLQ_ERRLEN];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", pg_dbs[i]);
        if (pg_admin(sql, err))
            test_fail(__FILE__, __LINE__, "%s: %s", sql, err);
    }
}

static Queue *open_q(const char *name)
{
    char err[VLQ_ERRLEN];
    Queue *q = NULL;
    QueueOptions o = {.now_ms = fake_clock, .default_max_attempts = 3};
    int rc = queue_open(db(name), &o, 1, &q, err);
    if (rc)
        test_fail(__FILE__, __LINE__, "queue_open: %s", err);
    return q;
}

static int64_t submit(Queue *q, const char *kind, const char *key, const char *hook, int prio)
{
    JobInput in = {.path = "/tmp/in.png", .size_bytes = 3, .mtime_s = 1};
    snprintf(in.sha256, sizeof in.sha256, "%064d", 0);
    JobSpec s = {.kind = kind, .inputs = &in, .n_inputs = 1, .idem_key = key,
                 .webhook_url = hook, .priority = prio};
    int64_t id = 0;
    int existed = 0;
    char err[VLQ_ERRLEN];
    CHECK_EQ(queue_submit(q, &s, &id, &existed, err), 0);
    return id;
}

static Job *claim(Queue *q, const char *kind)
{
    const char *kinds[] = {kind};
    Job *j = NULL;
    char err[VLQ_ERRLEN];
    CHECK_EQ(queue_claim(q, kinds, 1, 60000, "w1", &j, err), 0);
    return j;
}

static JobState state_of(Queue *q, int64_t id)
{
    Job *j;
    char err[VLQ_ERRLEN];
    CHECK_EQ(queue_get(q, id, &j, err), 0);
    JobState s = j ? j->state : (JobState)-1;
    queue_job_free(j);
    return s;
}

static void test_succeed_once(void)
{
    Queue *q = open_q("q.db");
    int64_t id = submit(q, "k", NULL, "http://127.0.0.1:9/h", 0);
    CHECK_EQ(state_of(q, id), JOB_QUEUED);
    Job *j = claim(q, "other");
    CHECK(j == NULL); /* kinds the worker lacks stay queued, no attempt spent */
    j = claim(q, "k");
    CHECK(j && j->id == id && j->attempts == 1 && j->claim_token && j->n_inputs == 1);
    CHECK(claim(q, "k") == NULL);
    char err[VLQ_ERRLEN];
    CHECK_EQ(queue_succeed(q, j, "text", "hello", 5, NULL, err), 0);
    CHECK_EQ(queue_succeed(q, j, "text", "again", 5, NULL, err), VLQ_EBUSY); /* fenced */
    CHECK_EQ(state_of(q, id), JOB_SUCCEEDED);
    char *fmt, *res;
    size_t len;
    CHECK_EQ(queue_result(q, id, &fmt, &res, &len, err), 0);
    CHECK_STR(res, "hello");
    CHECK_STR(fmt, "text");
    free(fmt);
    free(res);
    OutboxEvent **ev;
    int n;
    CHECK_EQ(queue_events_due(q, 10, 60000, &ev, &n, err), 0);
    CHECK_EQ(n, 1);
    if (n == 1) {
        CHECK_STR(ev[0]->type, "job.succeeded");
        CHECK(strstr(ev[0]->body, "\"status\":\"succeeded\"") != NULL);
        CHECK(strstr(ev[0]->body, "\"fetch\":\"vlq result 1\"") != NULL);
        CHECK(!strncmp(ev[0]->event_id, "msg_", 4));
        queue_event_free(ev[0]);
    }
    free(ev);
    queue_job_free(j);
    queue_close(q);
}

static void test_retry_backoff_dead(void)
{
    Queue *q = open_q("q.db");
    int64_t id = submit(q, "k", NULL, "http://127.0.0.1:9/h", 0);
    char err[VLQ_ERRLEN];
    JobState st;
    for (int attempt = 1; attempt <= 3; attempt++) {
        Job *j = claim(q, "k");
        CHECK(j && j->attempts == attempt);
        if (!j)
            break;
        CHECK_EQ(queue_fail(q, j, VLQ_EIO, "disk hiccup", &st, err), 0);
        Job *g;
        queue_get(q, id, &g, err);
        if (attempt < 3) {
            CHECK_EQ(st, JOB_FAILED);
            int64_t wait = g->run_after_ms - fake_now;
            int64_t base = (int64_t)attempt * attempt * attempt * attempt * 1000;
            CHECK(wait >= base * 9 / 10 && wait <= base * 11 / 10);
            CHECK(claim(q, "k") == NULL); /* not before the backoff */
            fake_now += wait;
        } else {
            CHECK_EQ(st, JOB_DEAD);
            CHECK_STR(g->error_code, "EIO");
            CHECK_STR(g->error, "disk hiccup");
        }
        queue_job_free(g);
        queue_job_free(j);
    }
    CHECK(claim(q, "k") == NULL);
    OutboxEvent **ev;
    int n;
    CHECK_EQ(queue_events_due(q, 10, 60000, &ev, &n, err), 0);
    CHECK_EQ(n, 1); /* job.failed only once, at the end */
    for (int i = 0; i < n; i++) {
        CHECK_STR(ev[i]->type, "job.failed");
        queue_event_free(ev[i]);
    }
    free(ev);
    CHECK_EQ(queue_retry(q, id, err), 0);
    Job *j = claim(q, "k");
    CHECK(j && j->attempts == 1);
    queue_job_free(j);
    queue_close(q);
}

static void test_deterministic_dead(void)
{
    Queue *q = open_q("q.db");
    int64_t id = submit(q, "k", NULL, NULL, 0);
    Job *j = claim(q, "k");
    char err[VLQ_ERRLEN];
    JobState st;
    CHECK_EQ(queue_fail(q, j, VLQ_EINPUT, "not a PDF", &st, err), 0);
    CHECK_EQ(st, JOB_DEAD);
    CHECK_EQ(state_of(q, id), JOB_DEAD);
    CHECK_EQ(queue_retry(q, id, err), 0);
    CHECK_EQ(state_of(q, id), JOB_QUEUED);
    CHECK_EQ(queue_retry(q, id, err), VLQ_EINPUT);
    queue_job_free(j);
    queue_close(q);
}

static void test_lease_takeover_fencing(void)
{
    Queue *q = open_q("q.db");
    int64_t id = submit(q, "k", NULL, NULL, 0);
    Job *a = claim(q, "k");
    char err[VLQ_ERRLEN];
    int cancel = 0;
    CHECK_EQ(queue_renew(q, a, 60000, &cancel, err), 0);
    fake_now += 59000;
    CHECK(claim(q, "k") == NULL); /* renewed: still a's */
    fake_now += 2000;
    Job *b = claim(q, "k");
    CHECK(b && b->id == id && b->attempts == 2);
    CHECK_EQ(queue_renew(q, a, 60000, &cancel, err), VLQ_EBUSY);
    CHECK(strstr(err, "lease lost") != NULL);
    CHECK_EQ(queue_succeed(q, a, "text", "old", 3, NULL, err), VLQ_EBUSY);
    CHECK_EQ(queue_succeed(q, b, "text", "new", 3, NULL, err), 0);
    JobAttempt *at;
    int n;
    CHECK_EQ(queue_attempts(q, id, &at, &n, err), 0);
    CHECK_EQ(n, 2);
    if (n == 2) {
        CHECK_STR(at[0].outcome, "lease_expired");
        CHECK_STR(at[1].outcome, "succeeded");
    }
    queue_attempts_free(at, n);
    /* a job lost on its last attempt goes dead instead of running again */
    int64_t id2 = submit(q, "k2", NULL, NULL, 0);
    for (int i = 0; i < 3; i++) {
        Job *j = claim(q, "k2");
        CHECK(j != NULL);
        queue_job_free(j);
        fake_now += 61000;
    }
    CHECK(claim(q, "k2") == NULL);
    CHECK_EQ(state_of(q, id2), JOB_DEAD);
    queue_job_free(a);
    queue_job_free(b);
    queue_close(q);
}

static void test_idempotency_priority(void)
{
    Queue *q = open_q("q.db");
    int64_t a = submit(q, "k", "key-1", NULL, 0);
    JobSpec s = {.kind = "k", .idem_key = "key-1"};
    int64_t b;
    int existed = 0;
    char err[VLQ_ERRLEN];
    CHECK_EQ(queue_submit(q, &s, &b, &existed, err), 0);
    CHECK_EQ(b, a);
    CHECK_EQ(existed, 1);
    int64_t low = submit(q, "k", NULL, NULL, -5), high = submit(q, "k", NULL, NULL, 10);
    (void)low;
    JobSpec later = {.kind = "k", .priority = 100, .run_after_ms = fake_now + 3600000};
    int64_t sched;
    CHECK_EQ(queue_submit(q, &later, &sched, NULL, err), 0);
    Job *j = claim(q, "k");
    CHECK(j && j->id == high); /* the scheduled job is not due yet */
    queue_job_free(j);
    j = claim(q, "k");
    CHECK(j && j->id == a);
    queue_job_free(j);
    fake_now += 3600000;
    j = claim(q, "k");
    CHECK(j && j->id == sched);
    queue_job_free(j);
    queue_close(q);
}

static void test_cancel_release_purge(void)
{
    Queue *q = open_q("q.db");
    char err[VLQ_ERRLEN];
    JobState st;
    int64_t queued = submit(q, "k", NULL, NULL, 0);
    CHECK_EQ(queue_cancel(q, queued, &st, err), 0);
    CHECK_EQ(st, JOB_CANCELLED);
    CHECK_EQ(queue_cancel(q, queued, &st, err), VLQ_EINPUT); /* already finished */
    int64_t running = submit(q, "k", NULL, NULL, 0);
    Job *j = claim(q, "k");
    CHECK_EQ(queue_cancel(q, running, &st, err), 0);
    CHECK_EQ(st, JOB_RUNNING);
    int cancel = 0;
    CHECK_EQ(queue_renew(q, j, 60000, &cancel, err), 0);
    CHECK_EQ(cancel, 1);
    CHECK_EQ(queue_ack_cancel(q, j, err), 0);
    CHECK_EQ(state_of(q, running), JOB_CANCELLED);
    queue_job_free(j);
    int64_t rel = submit(q, "k", NULL, NULL, 0);
    j = claim(q, "k");
    CHECK_EQ(queue_release(q, j, err), 0);
    queue_job_free(j);
    j = claim(q, "k");
    CHECK(j && j->id == rel && j->attempts == 1); /* a release is not an attempt */
    CHECK_EQ(queue_succeed(q, j, "text", "x", 1, NULL, err), 0);
    queue_job_free(j);
    CHECK_EQ(queue_cancel(q, 999, &st, err), VLQ_EINPUT);
    fake_now += 10 * 86400000LL;
    int64_t fresh = submit(q, "k", NULL, NULL, 0);
    int n = 0;
    CHECK_EQ(queue_purge(q, 86400000LL, &n, err), 0);
    CHECK_EQ(n, 3);
    CHECK_EQ(state_of(q, fresh), JOB_QUEUED);
    Job *gone;
    CHECK_EQ(queue_get(q, rel, &gone, err), VLQ_EINPUT);
    queue_close(q);
}

static void test_outbox(void)
{
    Queue *q = open_q("q.db");
    char err[VLQ_ERRLEN];
    submit(q, "k", NULL, "http://127.0.0.1:9/a", 0);
    submit(q, "k", NULL, "http://127.0.0.1:9/b", 0);
    for (int i = 0; i < 2; i++) {
        Job *j = claim(q, "k");
        queue_succeed(q, j, "text", "r", 1, NULL, err);
        queue_job_free(j);
    }
    OutboxEvent **ev;
    int n;
    CHECK_EQ(queue_events_due(q, 10, 60000, &ev, &n, err), 0);
    CHECK_EQ(n, 2);
    if (n == 2) {
        CHECK_EQ(queue_event_attempt(q, ev[0], EVENT_PENDING, fake_now + 5000, 500, "HTTP 500",
                                     0.1, 0, err), 0);
        CHECK_EQ(queue_event_attempt(q, ev[1], EVENT_FAILED, fake_now, 410, "gone", 0.1, 1, err),
                 0);
    }
    char id0[64] = "", id1[64] = "";
    if (n == 2) {
        snprintf(id0, sizeof id0, "%s", ev[0]->event_id);
        snprintf(id1, sizeof id1, "%s", ev[1]->event_id);
    }
    for (int i = 0; i < n; i++)
        queue_event_free(ev[i]);
    free(ev);
    CHECK_EQ(queue_events_due(q, 10, 60000, &ev, &n, err), 0);
    CHECK_EQ(n, 0);
    free(ev);
    fake_now += 5000;
    CHECK_EQ(queue_events_due(q, 10, 60000, &ev, &n, err), 0);
    CHECK_EQ(n, 1);
    if (n == 1) {
        CHECK_STR(ev[0]->event_id, id0);
        CHECK_EQ(ev[0]->attempts, 1);
        CHECK_EQ(ev[0]->last_status, 500);
        queue_event_free(ev[0]);
    }
    free(ev);
    CHECK_EQ(queue_event_redeliver(q, id1, err), 0);
    fake_now += 60000; /* the lease on the event read above (and not attempted) passes */
    CHECK_EQ(queue_events_due(q, 10, 60000, &ev, &n, err), 0);
    CHECK_EQ(n, 2);
    for (int i = 0; i < n; i++)
        queue_event_free(ev[i]);
    free(ev);
    CHECK_EQ(queue_event_redeliver(q, "msg_nope", err), VLQ_EINPUT);
    /* after a 410, a new event for that URL is recorded failed, never due */
    fake_now += 60000; /* the leases on the two events read above (not attempted) pass */
    CHECK_EQ(queue_events_due(q, 10, 60000, &ev, &n, err), 0);
    for (int i = 0; i < n; i++) {
        if (!strcmp(ev[i]->url, "http://127.0.0.1:9/b"))
            CHECK_EQ(queue_event_attempt(q, ev[i], EVENT_FAILED, fake_now, 410, "gone", 0.1, 1,
                                         err), 0);
        queue_event_free(ev[i]);
    }
    free(ev);
    submit(q, "k", NULL, "http://127.0.0.1:9/b", 0);
    Job *j = claim(q, "k");
    queue_succeed(q, j, "text", "r", 1, NULL, err);
    queue_job_free(j);
    CHECK_EQ(queue_events_list(q, 0, &ev, &n, err), 0);
    int failed_new = 0;
    for (int i = 0; i < n; i++) {
        if (i == 0) /* newest first: the event just written */
            failed_new = ev[i]->state == EVENT_FAILED && ev[i]->last_error &&
                         strstr(ev[i]->last_error, "endpoint disabled");
        queue_event_free(ev[i]);
    }
    free(ev);
    CHECK(failed_new);
    queue_close(q);
}

static void events_free(OutboxEvent **ev, int n)
{
    for (int i = 0; i < n; i++)
        queue_event_free(ev[i]);
    free(ev);
}

/* 100 jobs lost at once on their last attempt: each goes dead with its own event. */
static void test_many_lost(void)
{
    Queue *q = open_q("q.db");
    char err[VLQ_ERRLEN];
    for (int i = 0; i < 100; i++) {
        JobSpec s = {.kind = "k", .max_attempts = 1, .webhook_url = "http://127.0.0.1:9/h"};
        int64_t id;
        CHECK_EQ(queue_submit(q, &s, &id, NULL, err), 0);
    }
    for (int i = 0; i < 100; i++)
        queue_job_free(claim(q, "k"));
    fake_now += 61000;
    CHECK(claim(q, "k") == NULL); /* the reaping comes with a claim */
    Job **jobs;
    int n;
    JobFilter f = {.state = JOB_DEAD};
    CHECK_EQ(queue_list(q, &f, &jobs, &n, err), 0);
    CHECK_EQ(n, 100);
    for (int i = 0; i < n; i++)
        queue_job_free(jobs[i]);
    free(jobs);
    OutboxEvent **ev;
    CHECK_EQ(queue_events_list(q, 0, &ev, &n, err), 0);
    CHECK_EQ(n, 100);
    events_free(ev, n);
    queue_close(q);
}

/* The outbox is shared: an event handed out is leased to one deliverer; nobody else gets
 * it (nor another event of its endpoint) until the lease passes, and the first
 * deliverer's late attempt is then refused (fenced by the lease token). */
static void test_outbox_lease(void)
{
    Queue *q = open_q("q.db"), *q2 = open_q("q.db");
    char err[VLQ_ERRLEN];
    submit(q, "k", NULL, "http://127.0.0.1:9/a", 0);
    submit(q, "k", NULL, "http://127.0.0.1:9/a", 0);
    submit(q, "k", NULL, "http://127.0.0.1:9/b", 0);
    for (int i = 0; i < 3; i++) {
        Job *j = claim(q, "k");
        queue_succeed(q, j, "text", "r", 1, NULL, err);
        queue_job_free(j);
    }
    OutboxEvent **ev, **ev2, **ev3;
    int n, n2, n3;
    CHECK_EQ(queue_events_due(q, 1, 1000, &ev, &n, err), 0); /* the oldest: /a's first */
    CHECK_EQ(n, 1);
    CHECK(n == 1 && ev[0]->lease_token && strlen(ev[0]->lease_token) == 32);
    /* the other deliverer gets /b only: /a has an event out */
    CHECK_EQ(queue_events_due(q2, 10, 1000, &ev2, &n2, err), 0);
    CHECK_EQ(n2, 1);
    CHECK(n2 == 1 && !strcmp(ev2[0]->url, "http://127.0.0.1:9/b"));
    CHECK_EQ(queue_events_due(q2, 10, 1000, &ev3, &n3, err), 0);
    CHECK_EQ(n3, 0);
    events_free(ev3, n3);
    /* the lease passes: the first deliverer is presumed lost, the second takes over */
    fake_now += 1000;
    CHECK_EQ(queue_events_due(q2, 1, 1000, &ev3, &n3, err), 0);
    CHECK_EQ(n3, 1);
    if (n == 1 && n3 == 1) {
        CHECK_STR(ev3[0]->event_id, ev[0]->event_id);
        CHECK(strcmp(ev3[0]->lease_token, ev[0]->lease_token) != 0);
        CHECK_EQ(queue_event_attempt(q, ev[0], EVENT_DELIVERED, fake_now, 200, NULL, 0.1, 0,
                                     err), VLQ_EBUSY);
        CHECK(strstr(err, "lease lost") != NULL);
        CHECK_EQ(queue_event_attempt(q2, ev3[0], EVENT_DELIVERED, fake_now, 200, NULL, 0.1, 0,
                                     err), 0);
        /* the lease ended with the attempt: a second record with the token is refused */
        CHECK_EQ(queue_event_attempt(q2, ev3[0], EVENT_DELIVERED, fake_now, 200, NULL, 0.1, 0,
                                     err), VLQ_EBUSY);
    }
    if (n2 == 1)
        CHECK_EQ(queue_event_attempt(q2, ev2[0], EVENT_DELIVERED, fake_now, 200, NULL, 0.1, 0,
                                     err), 0);
    events_free(ev, n);
    events_free(ev2, n2);
    events_free(ev3, n3);
    /* /a's second event is free now: its endpoint has nothing out */
    CHECK_EQ(queue_events_due(q, 10, 1000, &ev, &n, err), 0);
    CHECK_EQ(n, 1);
    if (n == 1) {
        CHECK_STR(ev[0]->url, "http://127.0.0.1:9/a");
        CHECK_EQ(ev[0]->attempts, 0);
        CHECK_EQ(queue_event_release(q, ev[0], err), 0);
    }
    events_free(ev, n);
    /* an event given back untried is anyone's at once */
    CHECK_EQ(queue_events_due(q, 10, 1000, &ev, &n, err), 0);
    CHECK_EQ(n, 1);
    for (int i = 0; i < n; i++)
        CHECK_EQ(queue_event_release(q, ev[i], err), 0);
    events_free(ev, n);
    CHECK_EQ(queue_events_due(q2, 10, 1000, &ev, &n, err), 0);
    CHECK_EQ(n, 1);
    events_free(ev, n);
    CHECK_EQ(queue_events_list(q, 0, &ev, &n, err), 0);
    CHECK_EQ(n, 3);
    int delivered = 0, tokens = 0;
    for (int i = 0; i < n; i++) {
        delivered += ev[i]->state == EVENT_DELIVERED && ev[i]->attempts == 1;
        tokens += ev[i]->lease_token != NULL; /* a listed event carries no lease */
    }
    CHECK_EQ(delivered, 2);
    CHECK_EQ(tokens, 0);
    events_free(ev, n);
    queue_close(q);
    queue_close(q2);
}

/* queue_wait: on PostgreSQL a submit through another connection wakes the waiter at
 * once; on SQLite it only sleeps the timeout (the worker polls). */
static void test_wait(void)
{
    Queue *q = open_q("q.db"), *q2 = open_q("q.db");
    char err[VLQ_ERRLEN];
    int pg = !strcmp(queue_backend(q), "postgresql");
    CHECK_EQ(pg, pg_server != NULL);
    CHECK_EQ(queue_wait(q, 0, err), 0); /* (PostgreSQL: LISTENs from now on) */
    double t0 = util_mono_s();
    CHECK_EQ(queue_wait(q, 100, err), 0);
    CHECK(util_mono_s() - t0 >= 0.09);
    submit(q2, "k", NULL, NULL, 0);
    t0 = util_mono_s();
    int rc = queue_wait(q, pg ? 5000 : 100, err);
    double dt = util_mono_s() - t0;
    if (pg) {
        CHECK_EQ(rc, 1);
        CHECK(dt < 2.0);
        CHECK_EQ(queue_wait(q, 0, err), 0); /* the notification was consumed */
    } else {
        CHECK_EQ(rc, 0);
        CHECK(dt >= 0.09);
    }
    queue_close(q);
    queue_close(q2);
}

static void test_newer_db_refused(void)
{
    Queue *q = open_q("q.db");
    queue_close(q);
    char loc[1024];
    snprintf(loc, sizeof loc, "%s", db("q.db"));
    db_exec(loc, pg_server ? "UPDATE vlq_schema_version SET version=999"
                           : "PRAGMA user_version=999");
    char before[65], after[65], err[VLQ_ERRLEN];
    db_digest(loc, before);
    CHECK_EQ(queue_open(loc, NULL, 1, &q, err), VLQ_EINPUT);
    CHECK(strstr(err, "written by a newer vlq (schema 999") != NULL);
    db_digest(loc, after);
    CHECK_STR(after, before);
    if (!pg_server) { /* a file that is not a database: SQLite's own case */
        util_write_file("junk.db", "this is not a database at all, not even close........",
                        53, NULL);
        CHECK(queue_open("junk.db", NULL, 1, &q, err) != 0);
        CHECK(strstr(err, "junk.db") != NULL);
    }
    snprintf(loc, sizeof loc, "%s", db("other.db"));
    db_exec(loc, "CREATE TABLE t (x INTEGER)");
    CHECK_EQ(queue_open(loc, NULL, 1, &q, err), VLQ_EINPUT);
    CHECK(strstr(err, "not a vlq queue database") != NULL);
    CHECK(queue_open(pg_server ? pg_url_for("vlqt_never_created") : "missing/dir/q.db", NULL, 1,
                     &q, err) != 0);
}

/* 4 processes claim 200 jobs from one file: each job exactly once, no EBUSY escapes. */
static void test_concurrent_claimers(void)
{
    char err[VLQ_ERRLEN], cdb[1024];
    snprintf(cdb, sizeof cdb, "%s", db("c.db"));
    Queue *q;
    CHECK_EQ(queue_open(cdb, NULL, 1, &q, err), 0);
    for (int i = 0; i < 200; i++) {
        JobSpec s = {.kind = "k"};
        int64_t id;
        queue_submit(q, &s, &id, NULL, err);
    }
    queue_close(q);
    pid_t kids[4];
    for (int w = 0; w < 4; w++) {
        if ((kids[w] = fork()) == 0) {
            Queue *wq;
            if (queue_open(cdb, NULL, 0, &wq, err))
                _exit(2);
            const char *kinds[] = {"k"};
            for (;;) {
                Job *j;
                if (queue_claim(wq, kinds, 1, 60000, "w", &j, err)) {
                    fprintf(stderr, "claim: %s\n", err);
                    _exit(3);
                }
                if (!j)
                    break;
                char res[32];
                snprintf(res, sizeof res, "%d", w);
                if (queue_succeed(wq, j, "text", res, strlen(res), NULL, err)) {
                    fprintf(stderr, "succeed: %s\n", err);
                    _exit(4);
                }
                queue_job_free(j);
            }
            queue_close(wq);
            _exit(0);
        }
    }
    for (int w = 0; w < 4; w++) {
        int st;
        waitpid(kids[w], &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    CHECK_EQ(queue_open(cdb, NULL, 0, &q, err), 0);
    Job **jobs;
    int n;
    JobFilter f = {.state = JOB_SUCCEEDED};
    CHECK_EQ(queue_list(q, &f, &jobs, &n, err), 0);
    CHECK_EQ(n, 200);
    int once = 1;
    for (int i = 0; i < n; i++) {
        once &= jobs[i]->attempts == 1;
        queue_job_free(jobs[i]);
    }
    free(jobs);
    CHECK(once);
    queue_close(q);
}

static void test_backoff(void)
{
    uint64_t rng = 42;
    for (int a = 1; a <= 6; a++)
        for (int k = 0; k < 100; k++) {
            int64_t ms = queue_backoff_ms(a, &rng);
            double base = (double)a * a * a * a * 1000;
            CHECK(ms >= base * 0.9 - 1 && ms <= base * 1.1 + 1);
        }
    CHECK_EQ(queue_backoff_ms(2, NULL), 16000);
    CHECK_STR(queue_state_name(JOB_DEAD), "dead");
    CHECK_EQ(queue_state_parse("cancelled"), JOB_CANCELLED);
    CHECK_EQ(queue_state_parse("nope"), -1);
}

/* Per-unit results: fenced by the claim token, never stored twice, read back in order
 * after a takeover (resume), progress counts on the job, failed units dropped by a
 * retry by hand, and the rows purged with their job. */
static void test_units(void)
{
    Queue *q = open_q("q.db");
    int64_t id = submit(q, "k", NULL, NULL, 0);
    Job *a = claim(q, "k");
    char err[VLQ_ERRLEN];
    CHECK_EQ(queue_set_units_total(q, a, 3, err), 0);
    JobUnit u0 = {.idx = 0, .result = "page one", .meta_json = "{\"page\":1}", .tok_in = 100,
                  .tok_out = 7, .seconds = 1.5};
    CHECK_EQ(queue_unit_store(q, a, &u0, err), 0);
    JobUnit dup = {.idx = 0, .result = "again"};
    CHECK_EQ(queue_unit_store(q, a, &dup, err), VLQ_EINPUT);
    CHECK(strstr(err, "unit 0: already stored") != NULL);
    Job *j;
    CHECK_EQ(queue_get(q, id, &j, err), 0);
    CHECK(j && j->units_total == 3 && j->units_done == 1);
    queue_job_free(j);
    /* worker a is lost; b takes the job over: a can no longer write a unit */
    fake_now += 61000;
    Job *b = claim(q, "k");
    CHECK(b && b->id == id);
    JobUnit u1 = {.idx = 1, .error_code = "EINPUT", .error = "page 2: bad data"};
    CHECK_EQ(queue_unit_store(q, a, &u1, err), VLQ_EBUSY);
    CHECK(strstr(err, "lease lost") != NULL);
    CHECK_EQ(queue_set_units_total(q, a, 3, err), VLQ_EBUSY);
    CHECK_EQ(queue_unit_store(q, b, &u1, err), 0);
    CHECK_EQ(queue_unit_store(q, b, &u0, err), VLQ_EINPUT); /* b resumes: unit 0 is there */
    JobUnit *us;
    int n;
    CHECK_EQ(queue_units(q, id, &us, &n, err), 0);
    CHECK_EQ(n, 2);
    if (n == 2) {
        CHECK_EQ(us[0].idx, 0);
        CHECK_STR(us[0].result, "page one");
        CHECK_STR(us[0].meta_json, "{\"page\":1}");
        CHECK_EQ(us[0].tok_in, 100);
        CHECK_EQ(us[0].tok_out, 7);
        CHECK(us[0].seconds == 1.5);
        CHECK_EQ(us[0].attempt, 1);
        CHECK(us[0].error_code == NULL);
        CHECK_EQ(us[1].idx, 1);
        CHECK(us[1].result == NULL);
        CHECK_STR(us[1].error_code, "EINPUT");
        CHECK_EQ(us[1].attempt, 2);
    }
    queue_units_free(us, n);
    /* the job dies; a retry by hand keeps the good unit and drops the failed one */
    CHECK_EQ(queue_fail(q, b, VLQ_EINPUT, "every page failed", NULL, err), 0);
    CHECK_EQ(queue_retry(q, id, err), 0);
    CHECK_EQ(queue_units(q, id, &us, &n, err), 0);
    CHECK_EQ(n, 1);
    CHECK(n == 1 && us[0].idx == 0);
    queue_units_free(us, n);
    Job *c = claim(q, "k");
    CHECK(c != NULL);
    CHECK_EQ(queue_unit_store(q, c, &u1, err), 0);
    CHECK_EQ(queue_succeed(q, c, "json", "{}", 2, NULL, err), 0);
    CHECK_EQ(queue_unit_store(q, c, &(JobUnit){.idx = 2}, err), VLQ_EBUSY); /* finished */
    fake_now += 86400000;
    int deleted = 0;
    CHECK_EQ(queue_purge(q, 1000, &deleted, err), 0);
    CHECK_EQ(deleted, 1);
    CHECK_EQ(queue_units(q, id, &us, &n, err), 0);
    CHECK_EQ(n, 0);
    queue_units_free(us, n);
    queue_job_free(a);
    queue_job_free(b);
    queue_job_free(c);
    queue_close(q);
}

TEST_GROUP(queue, {"succeed_once", test_succeed_once}, {"retry_backoff_dead", test_retry_backoff_dead},
           {"deterministic_dead", test_deterministic_dead},
           {"lease_takeover_fencing", test_lease_takeover_fencing},
           {"idempotency_priority", test_idempotency_priority},
           {"cancel_release_purge", test_cancel_release_purge}, {"outbox", test_outbox},
           {"newer_db_refused", test_newer_db_refused},
           {"concurrent_claimers", test_concurrent_claimers}, {"backoff", test_backoff}, {"units", test_units},
           {"outbox_lease", test_outbox_lease}, {"wait", test_wait},
           {"many_lost", test_many_lost})


/* PostgreSQL only (SQLite has no connection to lose): the server ends every session of
 * the database, as a restart does. Each call fails with a transient code, never a crash;
 * a later call reconnects (after its backoff) and LISTENs again; the job claimed before
 * is still fenced by its token and finishes once. */
static void test_reconnect(void)
{
    Queue *q = open_q("q.db"), *q2 = open_q("q.db");
    char err[VLQ_ERRLEN], sql[256];
    int64_t id = submit(q, "k", NULL, NULL, 0);
    Job *j = claim(q, "k");
    CHECK(j != NULL);
    CHECK_EQ(queue_wait(q, 0, err), 0); /* LISTENing */
    snprintf(sql, sizeof sql,
             "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname='%s'",
             pg_dbs[0]);
    CHECK_EQ(pg_admin(sql, err), 0);
    int rc = queue_renew(q, j, 60000, NULL, err);
    CHECK(rc == VLQ_EIO || rc == VLQ_EBUSY);
    for (int i = 0; i < 100 && rc; i++) {
        util_sleep_ms(50);
        rc = queue_renew(q, j, 60000, NULL, err);
    }
    CHECK_EQ(rc, 0);
    /* the other connection was cut too: its submit gets through after a reconnect... */
    JobSpec spec = {.kind = "k"};
    int64_t id2 = 0;
    rc = queue_submit(q2, &spec, &id2, NULL, err);
    for (int i = 0; i < 100 && rc; i++) {
        CHECK(rc == VLQ_EIO || rc == VLQ_EBUSY);
        util_sleep_ms(50);
        rc = queue_submit(q2, &spec, &id2, NULL, err);
    }
    CHECK_EQ(rc, 0);
    /* ...and wakes q, which LISTENs again on its new connection */
    CHECK_EQ(queue_wait(q, 5000, err), 1);
    CHECK_EQ(queue_succeed(q, j, "text", "once", 4, NULL, err), 0);
    CHECK_EQ(queue_succeed(q, j, "text", "twice", 5, NULL, err), VLQ_EBUSY);
    char *format, *result;
    size_t len;
    CHECK_EQ(queue_result(q2, id, &format, &result, &len, err), 0);
    CHECK_STR(result, "once");
    free(format);
    free(result);
    queue_job_free(j);
    queue_close(q);
    queue_close(q2);
}

/* The same tests on PostgreSQL. */
static void test_succeed_once_pg(void) { pg_run_test(test_succeed_once); }
static void test_retry_backoff_dead_pg(void) { pg_run_test(test_retry_backoff_dead); }
static void test_deterministic_dead_pg(void) { pg_run_test(test_deterministic_dead); }
static void test_lease_takeover_fencing_pg(void) { pg_run_test(test_lease_takeover_fencing); }
static void test_idempotency_priority_pg(void) { pg_run_test(test_idempotency_priority); }
static void test_cancel_release_purge_pg(void) { pg_run_test(test_cancel_release_purge); }
static void test_outbox_pg(void) { pg_run_test(test_outbox); }
static void test_newer_db_refused_pg(void) { pg_run_test(test_newer_db_refused); }
static void test_concurrent_claimers_pg(void) { pg_run_test(test_concurrent_claimers); }
static void test_backoff_pg(void) { pg_run_test(test_backoff); }
static void test_units_pg(void) { pg_run_test(test_units); }
static void test_outbox_lease_pg(void) { pg_run_test(test_outbox_lease); }
static void test_wait_pg(void) { pg_run_test(test_wait); }
static void test_reconnect_pg(void) { pg_run_test(test_reconnect); }
static void test_many_lost_pg(void) { pg_run_test(test_many_lost); }

TEST_GROUP(queue_pg, {"succeed_once", test_succeed_once_pg},
           {"retry_backoff_dead", test_retry_backoff_dead_pg},
           {"deterministic_dead", test_deterministic_dead_pg},
           {"lease_takeover_fencing", test_lease_takeover_fencing_pg},
           {"idempotency_priority", test_idempotency_priority_pg},
           {"cancel_release_purge", test_cancel_release_purge_pg}, {"outbox", test_outbox_pg},
           {"newer_db_refused", test_newer_db_refused_pg},
           {"concurrent_claimers", test_concurrent_claimers_pg}, {"backoff", test_backoff_pg},
           {"units", test_units_pg}, {"outbox_lease", test_outbox_lease_pg},
           {"wait", test_wait_pg}, {"reconnect", test_reconnect_pg},
           {"many_lost", test_many_lost_pg})
