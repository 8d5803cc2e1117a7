/* Tests of the queue's hardening on SQLite: throwaway locations refused at open, the
 * database and its WAL and SHM files created owner-only (or with [queue] file_mode), a
 * damaged schema version named as such, and the reaper's job.failed event for every job
 * whose lease expired in one step, however many. Time is a fake clock. */
#include "err.h"
#include "queue.h"
#include "test.h"
#include "util.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int64_t hard_now = 1700000000000;
static int64_t hard_clock(void) { return hard_now; }

static Queue *open_mode(const char *path, const char *mode, char *err)
{
    Queue *q = NULL;
    QueueOptions o = {.now_ms = hard_clock, .default_max_attempts = 1, .file_mode = mode};
    if (queue_open(path, &o, 1, &q, err) != 0)
        return NULL;
    return q;
}

static int64_t submit_one(Queue *q, const char *hook)
{
    JobInput in = {.path = "/tmp/in.png", .size_bytes = 3, .mtime_s = 1};
    snprintf(in.sha256, sizeof in.sha256, "%064d", 0);
    JobSpec s = {.kind = "k", .inputs = &in, .n_inputs = 1, .webhook_url = hook,
                 .max_attempts = 1};
    int64_t id = 0;
    int existed = 0;
    char err[VLQ_ERRLEN];
    if (queue_submit(q, &s, &id, &existed, err) != 0)
        test_fail(__FILE__, __LINE__, "submit: %s", err);
    return id;
}

/* The permission bits of path, or -1 when it does not exist. */
static int mode_of(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int)(st.st_mode & 0777) : -1;
}

/* An empty path, :memory: and the URI forms of a throwaway database are refused: a job
 * submitted there would be gone when the command exits. */
static void test_throwaway_refused(void)
{
    char err[VLQ_ERRLEN], memdb[600];
    snprintf(memdb, sizeof memdb, "file:%s/m.db?vfs=memdb", test_tmpdir());
    const char *paths[] = {"", ":memory:", "file::memory:", "file:x.db?mode=memory",
                           "file:?", "file::memory:?cache=shared", memdb};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        Queue *q = NULL;
        int rc = queue_open(paths[i], NULL, 1, &q, err);
        CHECK_EQ(rc, VLQ_EINPUT);
        CHECK(q == NULL);
        CHECK(strstr(err, "empty") || strstr(err, "memory") || strstr(err, "temporary"));
        queue_close(q);
    }
    CHECK(access("x.db", F_OK) != 0);
    /* a file: URI naming a real file is a durable database */
    char uri[600];
    snprintf(uri, sizeof uri, "file:%s/u.db", test_tmpdir());
    Queue *q = open_mode(uri, NULL, err);
    CHECK(q != NULL);
    queue_close(q);
}

/* Created 0600, and the WAL and SHM files too (while a connection holds them); with
 * file_mode 0660 all three are 0660 whatever the umask; modes that open the secrets to
 * other users are refused. */
static void test_file_mode(void)
{
    char err[VLQ_ERRLEN];
    mode_t old = umask(022);
    Queue *q = open_mode("p.db", NULL, err);
    CHECK(q != NULL);
    if (q) {
        submit_one(q, "http://127.0.0.1:9/h");
        CHECK_EQ(mode_of("p.db"), 0600);
        CHECK_EQ(mode_of("p.db-wal"), 0600);
        CHECK_EQ(mode_of("p.db-shm"), 0600);
        queue_close(q);
    }
    q = open_mode("g.db", "0660", err);
    CHECK(q != NULL);
    if (q) {
        submit_one(q, NULL);
        CHECK_EQ(mode_of("g.db"), 0660);
        CHECK_EQ(mode_of("g.db-wal"), 0660);
        CHECK_EQ(mode_of("g.db-shm"), 0660);
        queue_close(q);
    }
    /* an existing database keeps its mode */
    q = open_mode("p.db", "0660", err);
    CHECK(q != NULL);
    queue_close(q);
    CHECK_EQ(mode_of("p.db"), 0600);
    umask(old);
    const char *bad[] = {"0644", "0666", "0700", "0400", "abc", "08", "-600", "1600", " 600"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(open_mode("bad.db", bad[i], err) == NULL);
        CHECK(strstr(err, "queue.file_mode") != NULL);
    }
    CHECK(access("bad.db", F_OK) != 0); /* refused before anything was created */
}

/* A schema version of 0 over vlq's tables, or a negative one, is named as damaged, and
 * the file is left as it was. */
static void test_schema_version_damaged(void)
{
    char err[VLQ_ERRLEN], before[65], after[65];
    const int versions[] = {0, -3};
    for (int i = 0; i < 2; i++) {
        Queue *q = open_mode("s.db", NULL, err);
        CHECK(q != NULL);
        queue_close(q);
        sqlite3 *db;
        sqlite3_open("s.db", &db);
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA user_version=%d", versions[i]);
        sqlite3_exec(db, sql, NULL, NULL, NULL);
        sqlite3_close(db);
        util_sha256_file("s.db", before, err);
        q = open_mode("s.db", NULL, err);
        CHECK(q == NULL);
        CHECK(strstr(err, versions[i] ? "schema version is corrupt (-3" : "schema version is 0"));
        CHECK(strstr(err, "not changed") != NULL);
        util_sha256_file("s.db", after, err);
        CHECK_STR(after, before);
        queue_close(q);
        unlink("s.db");
    }
}

/* 150 leases expire at once, each on its last attempt: all 150 jobs die in one reap and
 * each gets its job.failed event (the reaper once kept 64). */
static void test_reaper_many(void)
{
    char err[VLQ_ERRLEN];
    Queue *q = open_mode("r.db", NULL, err);
    CHECK(q != NULL);
    if (!q)
        return;
    enum { N = 150 };
    for (int i = 0; i < N; i++)
        submit_one(q, "http://127.0.0.1:9/r");
    const char *kinds[] = {"k"};
    for (int i = 0; i < N; i++) {
        Job *j = NULL;
        CHECK_EQ(queue_claim(q, kinds, 1, 1000, "w", &j, err), 0);
        CHECK(j != NULL);
        queue_job_free(j);
    }
    hard_now += 5000;
    Job *j = NULL;
    CHECK_EQ(queue_claim(q, kinds, 1, 1000, "w", &j, err), 0); /* reaps */
    CHECK(j == NULL);
    OutboxEvent **ev = NULL;
    int n = 0;
    CHECK_EQ(queue_events_list(q, 0, &ev, &n, err), 0);
    CHECK_EQ(n, N);
    int failed = 0;
    for (int i = 0; i < n; i++) {
        failed += !strcmp(ev[i]->type, "job.failed");
        queue_event_free(ev[i]);
    }
    free(ev);
    CHECK_EQ(failed, N);
    queue_close(q);
}

TEST_GROUP(queue_hard, {"throwaway_refused", test_throwaway_refused, 0},
           {"file_mode", test_file_mode, 0},
           {"schema_version_damaged", test_schema_version_damaged, 0},
           {"reaper_many", test_reaper_many, 0})
