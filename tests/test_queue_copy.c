/* queue_copy (and queue_input_fetched) through the queue API, on SQLite and, in the
 * queue_pg_copy group, with PostgreSQL as the other end ($VLQ_TEST_PG, see
 * tests/pg/with_cluster.sh; skipped without it, a failure under VLQ_REQUIRE_PG=1):
 *   - a copy keeps ids, states, inputs, results and units, and the copy works on (a claim,
 *     a new submit takes the next id past the copied ones);
 *   - a non-empty target is refused with nothing written; force replaces it;
 *   - a table with a column the copy does not know is refused (no silent loss);
 *   - a URL input's first download is recorded once, fenced by the claim token.
 * (tests/e2e/queue_copy.sh and pg_queue_copy.sh cover every state through the CLI.) */
#include "err.h"
#include "queue.h"
#include "test.h"
#include "util.h"

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *pg_server; /* $VLQ_TEST_PG in the queue_pg_copy group, else NULL */
static char pg_db[64];        /* the database made for the test (dropped after it) */

/* Run sql on the server's own database; 0 or -1 after a failed check. */
static int pg_admin(const char *sql)
{
    PGconn *c = PQconnectdb(pg_server);
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        test_fail(__FILE__, __LINE__, "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    return ok ? 0 : -1;
}

/* The "other end" of a copy: a fresh PostgreSQL database in the pg group, else a second
 * SQLite file. */
static const char *other_db(void)
{
    static char url[1024];
    if (!pg_server)
        return "other.db";
    snprintf(pg_db, sizeof pg_db, "vlqcopy_%d", (int)getpid());
    char sql[128];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", pg_db);
    pg_admin(sql);
    /* the server URL is postgresql:///vlqtest?... or postgresql://host/vlqtest?... */
    const char *auth = strstr(pg_server, "://") + 3;
    const char *q = strchr(auth, '?'), *slash = strchr(auth, '/');
    const char *end = slash && (!q || slash < q) ? slash : q ? q : auth + strlen(auth);
    snprintf(url, sizeof url, "%.*s/%s%s", (int)(end - pg_server), pg_server, pg_db,
             q ? q : "");
    return url;
}

static void pg_run(void (*fn)(void))
{
    const char *url = getenv("VLQ_TEST_PG");
    const char *req = getenv("VLQ_REQUIRE_PG");
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
        if (req && !strcmp(req, "1")) {
            test_fail(__FILE__, __LINE__, "VLQ_REQUIRE_PG=1 but %s", why);
            return;
        }
        test_skip("%s", why);
    }
    pg_server = url;
    fn();
    if (pg_db[0]) {
        char sql[128];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", pg_db);
        pg_admin(sql);
    }
}

static Queue *open_at(const char *loc)
{
    char err[VLQ_ERRLEN];
    Queue *q = NULL;
    if (queue_open(loc, NULL, 1, &q, err))
        test_fail(__FILE__, __LINE__, "queue_open %s: %s", loc, err);
    return q;
}

static int64_t submit(Queue *q, const char *path, int priority)
{
    char err[VLQ_ERRLEN];
    JobInput in = {.path = (char *)path, .size_bytes = 3, .mtime_s = 1};
    util_sha256_hex(path, strlen(path), in.sha256);
    JobSpec s = {.kind = "k", .inputs = &in, .n_inputs = 1, .priority = priority};
    int64_t id = 0;
    if (queue_submit(q, &s, &id, NULL, err))
        test_fail(__FILE__, __LINE__, "submit: %s", err);
    return id;
}

static const char *const kinds[] = {"k"};

/* A source with a succeeded job (result, 2 units), a running one and a queued one. */
static void fill(Queue *q, int64_t ids[3])
{
    char err[VLQ_ERRLEN];
    ids[0] = submit(q, "/in/a.pdf", 9);
    ids[1] = submit(q, "/in/b.pdf", 5);
    ids[2] = submit(q, "/in/c.pdf", 0);
    Job *j = NULL;
    CHECK_EQ(queue_claim(q, kinds, 1, 60000, "w", &j, err), 0);
    for (int u = 0; j && u < 2; u++) {
        JobUnit unit = {.idx = u, .result = u ? "two" : "one", .tok_in = 7, .seconds = 0.5};
        CHECK_EQ(queue_unit_store(q, j, &unit, err), 0);
    }
    if (j)
        CHECK_EQ(queue_succeed(q, j, "text", "done\0bytes", 10, NULL, err), 0);
    queue_job_free(j);
    j = NULL;
    CHECK_EQ(queue_claim(q, kinds, 1, 60000, "w", &j, err), 0); /* b: left running */
    queue_job_free(j);
}

static void test_copy_roundtrip(void)
{
    char err[VLQ_ERRLEN] = "";
    Queue *src = open_at("src.db");
    int64_t ids[3];
    fill(src, ids);
    const char *loc = other_db();
    Queue *dst = open_at(loc);
    QueueCopyStats st;
    CHECK_EQ(queue_copy(src, dst, 0, NULL, NULL, &st, err), 0);
    CHECK_EQ(st.jobs, 3);
    Job *j = NULL;
    CHECK_EQ(queue_get(dst, ids[0], &j, err), 0);
    if (j) {
        CHECK_EQ(j->state, JOB_SUCCEEDED);
        CHECK_STR(j->inputs[0].path, "/in/a.pdf");
        CHECK_EQ(j->units_done, 2);
    }
    queue_job_free(j);
    char *format = NULL, *result = NULL;
    size_t len = 0;
    CHECK_EQ(queue_result(dst, ids[0], &format, &result, &len, err), 0);
    CHECK(len == 10 && result && !memcmp(result, "done\0bytes", 10)); /* bytes, NUL too */
    free(format);
    free(result);
    JobUnit *u = NULL;
    int n = 0;
    CHECK_EQ(queue_units(dst, ids[0], &u, &n, err), 0);
    CHECK(n == 2 && u && !strcmp(u[1].result, "two") && u[1].tok_in == 7 && u[1].seconds == 0.5);
    queue_units_free(u, n);
    CHECK_EQ(queue_get(dst, ids[1], &j, err), 0);
    CHECK(j && j->state == JOB_RUNNING);
    queue_job_free(j);
    /* the copy works on: the queued job is claimable, a new job gets the next id */
    j = NULL;
    CHECK_EQ(queue_claim(dst, kinds, 1, 60000, "w2", &j, err), 0);
    CHECK(j && j->id == ids[2]);
    queue_job_free(j);
    CHECK_EQ(submit(dst, "/in/d.pdf", 0), ids[2] + 1);
    /* not empty now: refused, nothing written; force replaces */
    CHECK_EQ(queue_copy(src, dst, 0, NULL, NULL, &st, err), VLQ_EINPUT);
    CHECK(strstr(err, "not empty") && strstr(err, "--force"));
    Job **all = NULL;
    JobFilter f = {.state = -1};
    CHECK_EQ(queue_list(dst, &f, &all, &n, err), 0);
    CHECK_EQ(n, 4);
    for (int i = 0; i < n; i++)
        queue_job_free(all[i]);
    free(all);
    CHECK_EQ(queue_copy(src, dst, 1, NULL, NULL, &st, err), 0);
    CHECK_EQ(queue_list(dst, &f, &all, &n, err), 0);
    CHECK_EQ(n, 3);
    for (int i = 0; i < n; i++)
        queue_job_free(all[i]);
    free(all);
    queue_close(dst);
    queue_close(src);
}

/* A column the copy does not know (a later migration it was not told about) is refused:
 * copying without it would lose it silently. */
static void test_copy_unknown_column(void)
{
    char err[VLQ_ERRLEN] = "";
    Queue *src = open_at("src.db");
    int64_t ids[3];
    fill(src, ids);
    queue_close(src);
    sqlite3 *h;
    CHECK_EQ(sqlite3_open("src.db", &h), SQLITE_OK);
    CHECK_EQ(sqlite3_exec(h, "ALTER TABLE results ADD COLUMN extra TEXT", NULL, NULL, NULL),
             SQLITE_OK);
    sqlite3_close(h);
    src = open_at("src.db");
    Queue *dst = open_at(other_db());
    QueueCopyStats st;
    CHECK_EQ(queue_copy(src, dst, 0, NULL, NULL, &st, err), VLQ_EINPUT);
    CHECK(strstr(err, "results") && strstr(err, "extra"));
    Job **all = NULL;
    int n = -1;
    JobFilter f = {.state = -1};
    CHECK_EQ(queue_list(dst, &f, &all, &n, err), 0);
    CHECK_EQ(n, 0); /* the failed copy left nothing */
    free(all);
    queue_close(dst);
    queue_close(src);
}

/* A URL input: submitted with an empty SHA-256; the first download is recorded by the
 * claimer only, once. */
static void test_input_fetched(void)
{
    char err[VLQ_ERRLEN] = "";
    Queue *q = open_at(pg_server ? other_db() : "q.db");
    JobInput in = {.path = "https://files.example/a.pdf"};
    JobSpec spec = {.kind = "k", .inputs = &in, .n_inputs = 1};
    int64_t id = 0;
    CHECK_EQ(queue_submit(q, &spec, &id, NULL, err), 0);
    Job *j = NULL;
    CHECK_EQ(queue_claim(q, kinds, 1, 60000, "w", &j, err), 0);
    CHECK(j && j->inputs[0].sha256[0] == '\0');
    if (j) {
        char sha1[65], sha2[65];
        util_sha256_hex("one", 3, sha1);
        util_sha256_hex("two", 3, sha2);
        Job stale = *j;
        stale.claim_token = "0000";
        CHECK_EQ(queue_input_fetched(q, &stale, 0, sha2, 3, err), VLQ_EBUSY);
        CHECK_EQ(queue_input_fetched(q, j, 0, sha1, 3, err), 0);
        CHECK_EQ(queue_input_fetched(q, j, 0, sha2, 3, err), 0); /* the first one stays */
        CHECK_EQ(queue_input_fetched(q, j, 1, sha2, 3, err), VLQ_EINPUT); /* no input 1 */
        Job *back = NULL;
        CHECK_EQ(queue_get(q, id, &back, err), 0);
        CHECK(back && !strcmp(back->inputs[0].sha256, sha1) && back->inputs[0].size_bytes == 3);
        queue_job_free(back);
    }
    queue_job_free(j);
    queue_close(q);
}

static void test_copy_roundtrip_pg(void) { pg_run(test_copy_roundtrip); }
static void test_copy_unknown_column_pg(void) { pg_run(test_copy_unknown_column); }
static void test_input_fetched_pg(void) { pg_run(test_input_fetched); }

TEST_GROUP(queue_copy, {"roundtrip", test_copy_roundtrip, 0},
           {"unknown_column", test_copy_unknown_column, 0},
           {"input_fetched", test_input_fetched, 0})
TEST_GROUP(queue_pg_copy, {"roundtrip", test_copy_roundtrip_pg, 0},
           {"unknown_column", test_copy_unknown_column_pg, 0},
           {"input_fetched", test_input_fetched_pg, 0})
