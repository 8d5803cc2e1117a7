/* fetch: http(s) inputs downloaded from tests/tools/http_files.py on 127.0.0.1: the
 * allow-list (and its message), the size cap (declared and chunked), redirects checked
 * host by host, error classes (4xx dead, 5xx and timeouts transient), the SHA-256 and
 * size of what was written, and the per-job directory removed with its files. */
#include "fetch.h"

#include "queue.h"
#include "receiver.h"
#include "test.h"
#include "util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    pid_t pid;
    char base[64]; /* http://127.0.0.1:PORT */
} Server;

/* Start http_files.py serving ./srv; 0, or -1 after a failed check. */
static int server_start(Server *s)
{
    receiver_no_proxy();
    mkdir("srv", 0700);
    unlink("port.txt");
    char *cmd = xasprintf("exec python3 %s/tests/tools/http_files.py --dir srv --port-file "
                          "port.txt --log requests.log", test_root());
    fflush(NULL);
    s->pid = fork();
    if (s->pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    free(cmd);
    for (int i = 0; i < 500; i++) {
        char *data = NULL;
        size_t len;
        if (util_read_file("port.txt", 64, &data, &len, NULL) == 0 && len > 0) {
            snprintf(s->base, sizeof s->base, "http://127.0.0.1:%d", atoi(data));
            free(data);
            return 0;
        }
        free(data);
        if (waitpid(s->pid, NULL, WNOHANG) == s->pid)
            break;
        util_sleep_ms(10);
    }
    test_fail(__FILE__, __LINE__, "http_files.py did not start");
    return -1;
}

static void server_stop(Server *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        waitpid(s->pid, NULL, 0);
    }
}

static FetchOptions opts(void)
{
    FetchOptions o = {.allowed_hosts = "127.0.0.1", .max_bytes = 1 << 20,
                      .connect_timeout_ms = 2000, .timeout_ms = 5000, .dir = ""};
    return o;
}

/* Number of entries in dir besides . and .. (-1 when it cannot be opened). */
static int dir_entries(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "test -d '%s' && [ \"$(ls -A '%s' | wc -l)\" = 0 ]", dir, dir);
    return test_sh("%s", cmd) == 0 ? 0 : 1;
}

static void test_is_url(void)
{
    CHECK(fetch_is_url("http://a/b"));
    CHECK(fetch_is_url("HTTPS://a/b"));
    CHECK(!fetch_is_url("/tmp/http://x"));
    CHECK(!fetch_is_url("ftp://a/b"));
    CHECK(!fetch_is_url("http:/a"));
    CHECK(!fetch_is_url(NULL));
}

static void test_allow_list(void)
{
    char err[VLQ_ERRLEN] = "";
    FetchOptions o = opts();
    o.allowed_hosts = "";
    CHECK_EQ(fetch_check_url(&o, "http://127.0.0.1/x", err), VLQ_EINPUT);
    CHECK(strstr(err, "[inputs] allowed_hosts") != NULL);
    o.allowed_hosts = "example.org, files.internal";
    CHECK_EQ(fetch_check_url(&o, "https://FILES.internal/a.pdf", err), 0);
    CHECK_EQ(fetch_check_url(&o, "http://evil.example/a.pdf", err), VLQ_EINPUT);
    CHECK(strstr(err, "not in [inputs] allowed_hosts") != NULL);
    CHECK_EQ(fetch_check_url(&o, "http://files.internal.evil/a", err), VLQ_EINPUT);
    CHECK_EQ(fetch_check_url(&o, "ftp://example.org/a", err), VLQ_EINPUT);
    /* credentials and query never appear in a message */
    CHECK_EQ(fetch_check_url(&o, "http://user:s3cret@evil.example/a?token=t0k", err),
             VLQ_EINPUT);
    CHECK(strstr(err, "s3cret") == NULL && strstr(err, "t0k") == NULL);
    o.allowed_hosts = "[::1]";
    CHECK_EQ(fetch_check_url(&o, "http://[::1]:8080/a", err), 0);
}

static void test_download(void)
{
    Server s;
    if (server_start(&s))
        return;
    const char body[] = "hello, fetched world\n";
    util_write_file("srv/doc.pdf", body, sizeof body - 1, NULL);
    FetchOptions o = opts();
    o.dir = test_tmpdir();
    char err[VLQ_ERRLEN] = "", *dir = NULL;
    CHECK_EQ(fetch_dir_new(&o, 42, &dir, err), 0);
    CHECK(dir && strstr(dir, "/vlq-job42-"));
    struct stat st;
    CHECK(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0700);
    char url[256];
    snprintf(url, sizeof url, "%s/files/doc.pdf?v=1", s.base);
    FetchResult r;
    CHECK_EQ(fetch_url(&o, url, dir, 0, &r, err), 0);
    char hex[65];
    util_sha256_hex(body, sizeof body - 1, hex);
    CHECK_STR(r.sha256, hex);
    CHECK_EQ(r.size_bytes, sizeof body - 1);
    CHECK(r.path && strstr(r.path, "/0-doc.pdf"));
    char *got = NULL;
    size_t len = 0;
    CHECK_EQ(util_read_file(r.path, 0, &got, &len, err), 0);
    CHECK(len == sizeof body - 1 && got && !memcmp(got, body, len));
    free(got);
    /* through a redirect on an allowed host: the same bytes, the redirect's body dropped */
    char url2[512];
    snprintf(url2, sizeof url2, "%s/redirect?to=%s/files/doc.pdf", s.base, s.base);
    FetchResult r2;
    CHECK_EQ(fetch_url(&o, url2, dir, 1, &r2, err), 0);
    CHECK_STR(r2.sha256, hex);
    free(r.path);
    free(r2.path);
    fetch_dir_remove(dir);
    CHECK(stat(dir, &st) != 0);
    free(dir);
    server_stop(&s);
}

static void test_refusals(void)
{
    Server s;
    if (server_start(&s))
        return;
    FetchOptions o = opts();
    char err[VLQ_ERRLEN] = "", *dir = NULL, url[512];
    CHECK_EQ(fetch_dir_new(&o, 7, &dir, err), 0);
    FetchResult r;
    /* 404: the input is not there, a retry would not help */
    snprintf(url, sizeof url, "%s/files/absent.pdf", s.base);
    CHECK_EQ(fetch_url(&o, url, dir, 0, &r, err), VLQ_EINPUT);
    CHECK(strstr(err, "HTTP 404") != NULL);
    CHECK(r.path == NULL);
    /* 5xx and 429: transient */
    snprintf(url, sizeof url, "%s/status/503", s.base);
    CHECK_EQ(fetch_url(&o, url, dir, 1, &r, err), VLQ_ENET);
    snprintf(url, sizeof url, "%s/status/429", s.base);
    CHECK_EQ(fetch_url(&o, url, dir, 2, &r, err), VLQ_ENET);
    /* over the cap: declared (Content-Length) and streamed (chunked) */
    o.max_bytes = 1000;
    util_write_file("srv/big.bin", "", 0, NULL);
    CHECK_EQ(test_sh("head -c 5000 /dev/zero > srv/big.bin"), 0);
    snprintf(url, sizeof url, "%s/files/big.bin", s.base);
    CHECK_EQ(fetch_url(&o, url, dir, 3, &r, err), VLQ_EINPUT);
    CHECK(strstr(err, "max_download_mb") != NULL);
    snprintf(url, sizeof url, "%s/chunked/5000", s.base);
    CHECK_EQ(fetch_url(&o, url, dir, 4, &r, err), VLQ_EINPUT);
    CHECK(strstr(err, "max_download_mb") != NULL);
    o.max_bytes = 1 << 20;
    /* a redirect to a host that is not allowed is not followed */
    snprintf(url, sizeof url, "%s/redirect?to=http://localhost:1/files/x", s.base);
    CHECK_EQ(fetch_url(&o, url, dir, 5, &r, err), VLQ_EINPUT);
    CHECK(strstr(err, "redirected") && strstr(err, "localhost"));
    /* a server slower than the timeout: transient */
    o.timeout_ms = 300;
    snprintf(url, sizeof url, "%s/slow/3000", s.base);
    CHECK_EQ(fetch_url(&o, url, dir, 6, &r, err), VLQ_ENET);
    /* nobody listening: transient */
    o.timeout_ms = 5000;
    CHECK_EQ(fetch_url(&o, "http://127.0.0.1:1/x", dir, 7, &r, err), VLQ_ENET);
    /* nothing of the failed downloads stays behind */
    CHECK_EQ(dir_entries(dir), 0);
    fetch_dir_remove(dir);
    free(dir);
    server_stop(&s);
}

/* The queue side: a URL input is submitted with an empty SHA-256; the first download's
 * is recorded by the claimer only (fenced), once, and read back with the job. */
static void test_recorded_once(void)
{
    char err[VLQ_ERRLEN] = "";
    Queue *q = NULL;
    CHECK_EQ(queue_open("q.db", NULL, 1, &q, err), 0);
    if (!q)
        return;
    JobInput in = {.path = "https://files.example/a.pdf"};
    JobSpec spec = {.kind = "test.echo", .inputs = &in, .n_inputs = 1};
    int64_t id = 0;
    int existed = 0;
    CHECK_EQ(queue_submit(q, &spec, &id, &existed, err), 0);
    const char *kinds[] = {"test.echo"};
    Job *j = NULL;
    CHECK_EQ(queue_claim(q, kinds, 1, 60000, "w1", &j, err), 0);
    CHECK(j && j->inputs[0].sha256[0] == '\0');
    if (!j) {
        queue_close(q);
        return;
    }
    char sha1[65], sha2[65];
    util_sha256_hex("one", 3, sha1);
    util_sha256_hex("two", 3, sha2);
    /* a stale claim token writes nothing */
    Job stale = *j;
    stale.claim_token = "0000";
    CHECK_EQ(queue_input_fetched(q, &stale, 0, sha2, 3, err), VLQ_EBUSY);
    CHECK_EQ(queue_input_fetched(q, j, 0, sha1, 3, err), 0);
    CHECK_EQ(queue_input_fetched(q, j, 0, sha2, 3, err), 0); /* the first one stays */
    Job *back = NULL;
    CHECK_EQ(queue_get(q, id, &back, err), 0);
    if (back) {
        CHECK_STR(back->inputs[0].sha256, sha1);
        CHECK_EQ(back->inputs[0].size_bytes, 3);
        CHECK_STR(back->inputs[0].path, "https://files.example/a.pdf");
    }
    queue_job_free(back);
    queue_job_free(j);
    queue_close(q);
}

TEST_GROUP(fetch, {"is_url", test_is_url, 0}, {"allow_list", test_allow_list, 0},
           {"download", test_download, 0}, {"refusals", test_refusals, 30},
           {"recorded_once", test_recorded_once, 0})
