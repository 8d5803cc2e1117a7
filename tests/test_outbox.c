/* Tests of outbox: real events written by the queue (submit, claim, succeed) delivered to
 * examples/webhook_receiver.py on 127.0.0.1, which verifies each signature with Python's
 * hmac and records the bytes it accepted; the outbox rows are then read back through
 * queue_events_list. Schedules are short ("0,1,1": seconds) so retries happen in-test. */
#include "cfg.h"
#include "err.h"
#include "outbox.h"
#include "queue.h"
#include "receiver.h"
#include "test.h"
#include "util.h"
#include "webhook.h"

#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* Every receiver of these tests records accepted events and every request. */
#define OUTBOX_RECEIVER_ARGS "--out events.jsonl --log requests.jsonl "

#define SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define JOB_SECRET "whsec_dGhpcyBpcyBhIGpvYiBzZWNyZXQgb2YgMzIgYnl0ZXMh"

/* ---- receiver (examples/webhook_receiver.py) ---- */

/* A loopback port nobody listens on (bound, then closed). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* ---- queue fixtures ---- */

static Queue *open_queue(void)
{
    char err[VLQ_ERRLEN];
    QueueOptions qo = {0};
    Queue *q = NULL;
    int rc = queue_open("q.db", &qo, 1, &q, err);
    if (rc != 0)
        test_fail(__FILE__, __LINE__, "queue_open: %s", err);
    return q;
}

/* Submit, claim and finish one job with a webhook to url: its event is then in the outbox.
 * ok: succeed, else fail it for good. Returns the job id (0 after a failed check). */
static int64_t finish_job(Queue *q, const char *url, const char *secret, int ok)
{
    char err[VLQ_ERRLEN];
    util_write_file("in.txt", "page", 4, NULL);
    char *abs = util_abspath("in.txt", NULL);
    JobInput in = {.path = abs, .size_bytes = 4, .mtime_s = 0};
    util_sha256_hex("page", 4, in.sha256);
    JobSpec spec = {.kind = "test", .inputs = &in, .n_inputs = 1, .max_attempts = 1,
                    .webhook_url = url, .webhook_secret = secret};
    int64_t id = 0;
    int existed = 0;
    Job *job = NULL;
    const char *kinds[] = {"test"};
    int rc = queue_submit(q, &spec, &id, &existed, err);
    if (rc == 0)
        rc = queue_claim(q, kinds, 1, 60000, "w1", &job, err);
    if (rc == 0 && !job)
        rc = err_set(err, VLQ_EINPUT, "nothing claimed");
    if (rc == 0 && ok)
        rc = queue_succeed(q, job, "text", "hello \"world\"\n", 14, "hello", err);
    else if (rc == 0)
        rc = queue_fail(q, job, VLQ_EINPUT, "bad page", NULL, err);
    free(abs);
    queue_job_free(job);
    if (rc != 0) {
        test_fail(__FILE__, __LINE__, "job: %s", err);
        return 0;
    }
    return id;
}

/* The events of job_id (newest first); *n events; the caller frees. */
static OutboxEvent **job_events(Queue *q, int64_t job_id, int *n)
{
    char err[VLQ_ERRLEN];
    OutboxEvent **ev = NULL;
    *n = 0;
    if (queue_events_list(q, job_id, &ev, n, err) != 0)
        test_fail(__FILE__, __LINE__, "queue_events_list: %s", err);
    return ev;
}

static void events_free(OutboxEvent **ev, int n)
{
    for (int i = 0; i < n; i++)
        queue_event_free(ev[i]);
    free(ev);
}

static OutboxSettings settings(const char *schedule, int timeout_ms)
{
    OutboxSettings s;
    memset(&s, 0, sizeof s);
    snprintf(s.secret, sizeof s.secret, "%s", SECRET);
    s.timeout_ms = timeout_ms;
    s.connect_timeout_ms = 1000;
    char err[VLQ_ERRLEN];
    if (outbox_parse_schedule(schedule, s.schedule_s, OUTBOX_MAX_SCHEDULE, &s.n_schedule, err))
        test_fail(__FILE__, __LINE__, "schedule: %s", err);
    return s;
}

static OutboxStats send_due(Queue *q, const OutboxSettings *s)
{
    char err[VLQ_ERRLEN];
    OutboxStats st = {0};
    if (outbox_send_due_with(q, s, 0, &st, err) != 0)
        test_fail(__FILE__, __LINE__, "outbox_send_due: %s", err);
    return st;
}

/* ---- tests ---- */

static void test_schedule_parse(void)
{
    int64_t s[OUTBOX_MAX_SCHEDULE];
    int n = 0;
    char err[VLQ_ERRLEN];
    CHECK_EQ(outbox_parse_schedule("0,1,1", s, OUTBOX_MAX_SCHEDULE, &n, err), 0);
    CHECK_EQ(n, 3);
    CHECK_EQ(s[0] + s[1] + s[2], 2);
    CHECK_EQ(outbox_parse_schedule(" 0, 5s ,5m,2h,1d", s, OUTBOX_MAX_SCHEDULE, &n, err), 0);
    CHECK_EQ(n, 5);
    CHECK_EQ(s[1], 5);
    CHECK_EQ(s[2], 300);
    CHECK_EQ(s[3], 7200);
    CHECK_EQ(s[4], 86400);
    CHECK_EQ(outbox_parse_schedule("", s, OUTBOX_MAX_SCHEDULE, &n, err), 0);
    CHECK_EQ(n, WEBHOOK_DEFAULT_SCHEDULE_N);
    CHECK_EQ(s[9], WEBHOOK_DEFAULT_SCHEDULE_S[9]);
    CHECK_EQ(outbox_parse_schedule("0,x", s, OUTBOX_MAX_SCHEDULE, &n, err), VLQ_EINPUT);
    CHECK(strstr(err, "webhooks.schedule") != NULL);
    CHECK_EQ(outbox_parse_schedule("0,,1", s, OUTBOX_MAX_SCHEDULE, &n, err), VLQ_EINPUT);
    CHECK_EQ(outbox_parse_schedule("-1", s, OUTBOX_MAX_SCHEDULE, &n, err), VLQ_EINPUT);
    CHECK_EQ(outbox_parse_schedule("0,1", s, 1, &n, err), VLQ_EINPUT);
}

/* One event, one verified POST with the exact stored body; nothing due afterwards. */
static void test_delivered_once(void)
{
    Receiver r;
    if (receiver_start(&r, OUTBOX_RECEIVER_ARGS "--secret %s", SECRET))
        return;
    Queue *q = open_queue();
    OutboxSettings s = settings("0,1,1", 3000);
    int64_t id = finish_job(q, r.url, NULL, 1);
    OutboxStats st = send_due(q, &s);
    CHECK_EQ(st.due, 1);
    CHECK_EQ(st.delivered, 1);
    st = send_due(q, &s);
    CHECK_EQ(st.due, 0);
    int n;
    OutboxEvent **ev = job_events(q, id, &n);
    CHECK_EQ(n, 1);
    if (n == 1) {
        CHECK_EQ(ev[0]->state, EVENT_DELIVERED);
        CHECK_EQ(ev[0]->attempts, 1);
        CHECK_EQ(ev[0]->last_status, 200);
        CHECK_STR(ev[0]->type, "job.succeeded");
        char hex[65], needle[100];
        util_sha256_hex(ev[0]->body, strlen(ev[0]->body), hex);
        snprintf(needle, sizeof needle, "\"body_sha256\": \"%s\"", hex);
        CHECK_EQ(test_count_in_file("events.jsonl", needle), 1);
        snprintf(needle, sizeof needle, "\"id\": \"%s\"", ev[0]->event_id);
        CHECK_EQ(test_count_in_file("events.jsonl", needle), 1);
    }
    CHECK_EQ(test_count_lines("events.jsonl"), 1);
    events_free(ev, n);
    queue_close(q);
    receiver_stop(&r);
}

/* A job's own secret signs its events (the receiver only knows that one). */
static void test_job_secret(void)
{
    Receiver r;
    if (receiver_start(&r, OUTBOX_RECEIVER_ARGS "--secret %s", JOB_SECRET))
        return;
    Queue *q = open_queue();
    OutboxSettings s = settings("0", 3000);
    finish_job(q, r.url, JOB_SECRET, 0);
    OutboxStats st = send_due(q, &s);
    CHECK_EQ(st.delivered, 1);
    CHECK_EQ(test_count_lines("events.jsonl"), 1); /* one verified event: the job's own secret */
    CHECK(test_count_in_file("events.jsonl", "job.failed") >= 1);
    queue_close(q);
    receiver_stop(&r);
}

/* Receiver down: rescheduled; once it is up on the same port, delivered. */
static void test_down_then_up(void)
{
    int port = free_port();
    CHECK(port > 0);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hook", port);
    Queue *q = open_queue();
    OutboxSettings s = settings("0,1,1", 2000);
    int64_t id = finish_job(q, url, NULL, 1);
    OutboxStats st = send_due(q, &s);
    CHECK_EQ(st.retrying, 1);
    int n;
    OutboxEvent **ev = job_events(q, id, &n);
    CHECK(n == 1 && ev[0]->state == EVENT_PENDING && ev[0]->attempts == 1 &&
          ev[0]->last_error != NULL);
    events_free(ev, n);
    Receiver r;
    if (receiver_start(&r, OUTBOX_RECEIVER_ARGS "--secret %s --port %d", SECRET, port))
        return;
    util_sleep_ms(1200); /* the second delay: 1 s +- 10% */
    st = send_due(q, &s);
    CHECK_EQ(st.delivered, 1);
    CHECK_EQ(test_count_lines("events.jsonl"), 1);
    queue_close(q);
    receiver_stop(&r);
}

/* 500 then 200: the retry carries the same webhook-id. */
static void test_retry_same_id(void)
{
    Receiver r;
    if (receiver_start(&r, OUTBOX_RECEIVER_ARGS "--secret %s --fail-first 1", SECRET))
        return;
    Queue *q = open_queue();
    OutboxSettings s = settings("0,1,1", 3000);
    int64_t id = finish_job(q, r.url, NULL, 1);
    CHECK_EQ(send_due(q, &s).retrying, 1);
    CHECK_EQ(send_due(q, &s).due, 0); /* not due before its time */
    util_sleep_ms(1200);
    CHECK_EQ(send_due(q, &s).delivered, 1);
    int n;
    OutboxEvent **ev = job_events(q, id, &n);
    if (n == 1) {
        char needle[100];
        snprintf(needle, sizeof needle, "\"id\": \"%s\"", ev[0]->event_id);
        CHECK_EQ(test_count_in_file("requests.jsonl", needle), 2);
        CHECK_EQ(ev[0]->attempts, 2);
        CHECK_EQ(ev[0]->state, EVENT_DELIVERED);
    }
    CHECK_EQ(test_count_in_file("requests.jsonl", "\"status\": 500"), 1);
    events_free(ev, n);
    queue_close(q);
    receiver_stop(&r);
}

/* A receiver that never answers: the attempt times out and is retried. */
static void test_hang_times_out(void)
{
    Receiver r;
    if (receiver_start(&r, OUTBOX_RECEIVER_ARGS "--secret %s --hang --fail-first 1", SECRET))
        return;
    Queue *q = open_queue();
    OutboxSettings s = settings("0,1", 500);
    int64_t id = finish_job(q, r.url, NULL, 1);
    double t0 = util_mono_s();
    CHECK_EQ(send_due(q, &s).retrying, 1);
    CHECK(util_mono_s() - t0 < 3.0);
    util_sleep_ms(1200);
    CHECK_EQ(send_due(q, &s).delivered, 1);
    int n;
    OutboxEvent **ev = job_events(q, id, &n);
    CHECK(n == 1 && ev[0]->attempts == 2);
    events_free(ev, n);
    queue_close(q);
    receiver_stop(&r);
}

/* 429 with Retry-After: 30 waits 30 s even though the schedule says 1 s. */
static void test_retry_after(void)
{
    Receiver r;
    if (receiver_start(&r, OUTBOX_RECEIVER_ARGS "--secret %s --status 429 --retry-after 30", SECRET))
        return;
    Queue *q = open_queue();
    OutboxSettings s = settings("0,1,1", 3000);
    int64_t id = finish_job(q, r.url, NULL, 1);
    int64_t t0 = util_now_ms();
    CHECK_EQ(send_due(q, &s).retrying, 1);
    int n;
    OutboxEvent **ev = job_events(q, id, &n);
    if (n == 1) {
        CHECK_EQ(ev[0]->last_status, 429);
        CHECK(ev[0]->next_attempt_ms >= t0 + 30000);
        CHECK(ev[0]->next_attempt_ms <= util_now_ms() + 31000);
    }
    events_free(ev, n);
    queue_close(q);
    receiver_stop(&r);
}

/* 410: failed, endpoint disabled; a later event for that URL is never sent. */
static void test_gone_disables(void)
{
    Receiver r;
    if (receiver_start(&r, OUTBOX_RECEIVER_ARGS "--secret %s --status 410", SECRET))
        return;
    Queue *q = open_queue();
    OutboxSettings s = settings("0,1,1", 3000);
    int64_t a = finish_job(q, r.url, NULL, 1);
    int64_t a2 = finish_job(q, r.url, NULL, 0); /* due in the same batch, after a */
    OutboxStats st = send_due(q, &s);
    CHECK_EQ(st.failed, 2);
    int64_t b = finish_job(q, r.url, NULL, 1);
    st = send_due(q, &s);
    CHECK_EQ(test_count_lines("requests.jsonl"), 1);
    int n;
    OutboxEvent **ev = job_events(q, a, &n);
    CHECK(n == 1 && ev[0]->state == EVENT_FAILED && ev[0]->last_status == 410);
    events_free(ev, n);
    ev = job_events(q, a2, &n);
    CHECK(n == 1 && ev[0]->state == EVENT_FAILED && ev[0]->last_error &&
          strstr(ev[0]->last_error, "not sent"));
    events_free(ev, n);
    ev = job_events(q, b, &n);
    CHECK(n == 1 && ev[0]->state != EVENT_DELIVERED && ev[0]->attempts == 0);
    events_free(ev, n);
    queue_close(q);
    receiver_stop(&r);
}

/* Schedule spent: failed and listed; redeliver sends it again with the same id. */
static void test_spent_then_redeliver(void)
{
    Receiver r;
    if (receiver_start(&r, OUTBOX_RECEIVER_ARGS "--secret %s --fail-first 2", SECRET))
        return;
    Queue *q = open_queue();
    OutboxSettings s = settings("0,1", 3000);
    int64_t id = finish_job(q, r.url, NULL, 1);
    CHECK_EQ(send_due(q, &s).retrying, 1);
    util_sleep_ms(1200);
    CHECK_EQ(send_due(q, &s).failed, 1);
    int n;
    OutboxEvent **ev = job_events(q, id, &n);
    char eid[WEBHOOK_EVENT_ID_SIZE] = "";
    if (n == 1) {
        CHECK_EQ(ev[0]->state, EVENT_FAILED);
        CHECK_EQ(ev[0]->attempts, 2);
        CHECK(ev[0]->last_error && strstr(ev[0]->last_error, "schedule spent"));
        snprintf(eid, sizeof eid, "%s", ev[0]->event_id);
    }
    events_free(ev, n);
    CHECK_EQ(send_due(q, &s).due, 0);
    char err[VLQ_ERRLEN];
    CHECK_EQ(queue_event_redeliver(q, eid, err), 0);
    CHECK_EQ(send_due(q, &s).delivered, 1);
    char needle[100];
    snprintf(needle, sizeof needle, "\"id\": \"%s\"", eid);
    CHECK_EQ(test_count_in_file("events.jsonl", needle), 1);
    queue_close(q);
    receiver_stop(&r);
}

/* Many events, a flaky receiver: every event arrives exactly once. */
static void test_nothing_lost(void)
{
    Receiver r;
    if (receiver_start(&r, OUTBOX_RECEIVER_ARGS "--secret %s --fail-first 5", SECRET))
        return;
    Queue *q = open_queue();
    OutboxSettings s = settings("0,1,1,1", 3000);
    enum { N = 12 };
    for (int i = 0; i < N; i++)
        finish_job(q, r.url, NULL, i % 3 != 0);
    for (int round = 0; round < 4; round++) {
        send_due(q, &s);
        util_sleep_ms(1150);
    }
    int n;
    OutboxEvent **ev = job_events(q, 0, &n);
    CHECK_EQ(n, N);
    for (int i = 0; i < n; i++) {
        char needle[100];
        snprintf(needle, sizeof needle, "\"id\": \"%s\"", ev[i]->event_id);
        CHECK_EQ(ev[i]->state, EVENT_DELIVERED);
        CHECK_EQ(test_count_in_file("events.jsonl", needle), 1);
    }
    CHECK_EQ(test_count_lines("events.jsonl"), N);
    events_free(ev, n);
    queue_close(q);
    receiver_stop(&r);
}

/* The delivery thread: a poke delivers at once; stop waits for a hanging attempt only up
 * to the timeout. */
static void test_thread(void)
{
    Receiver r;
    if (receiver_start(&r, OUTBOX_RECEIVER_ARGS "--secret %s --hang --fail-first 1", SECRET))
        return;
    char err[VLQ_ERRLEN];
    const char *conf = "[webhooks]\nsecret = " SECRET "\ntimeout_ms = 1000\nschedule = 0,1\n";
    util_write_file("vlq.conf", conf, strlen(conf), NULL);
    Cfg *cfg = NULL;
    if (cfg_load("vlq.conf", &cfg, err) != 0) {
        test_fail(__FILE__, __LINE__, "cfg_load: %s", err);
        receiver_stop(&r);
        return;
    }
    Queue *q = open_queue();
    OutboxThread *t = NULL;
    CHECK_EQ(outbox_start("q.db", cfg, &t, err), 0);
    cfg_free(cfg);
    finish_job(q, r.url, NULL, 1);
    outbox_poke(t);
    util_sleep_ms(300); /* the first attempt hangs now */
    double t0 = util_mono_s();
    outbox_stop(t);
    CHECK(util_mono_s() - t0 < 2.0);
    CHECK_EQ(test_count_lines("events.jsonl"), 0);
    /* started again, it retries on its own after the 1 s schedule step */
    cfg_load("vlq.conf", &cfg, err);
    CHECK_EQ(outbox_start("q.db", cfg, &t, err), 0);
    cfg_free(cfg);
    for (int i = 0; i < 60 && test_count_lines("events.jsonl") < 1; i++)
        util_sleep_ms(100);
    outbox_stop(t);
    CHECK_EQ(test_count_lines("events.jsonl"), 1);
    queue_close(q);
    receiver_stop(&r);
}

/* ---- a bad endpoint beside good ones ---- */

/* The receiver's received_at (seconds since the epoch) of event_id in events.jsonl, or -1
 * when it was not received. */
static double received_at(const char *event_id)
{
    char *data = NULL;
    size_t len;
    double at = -1;
    if (util_read_file("events.jsonl", 1 << 24, &data, &len, NULL) != 0)
        return -1;
    char needle[100];
    snprintf(needle, sizeof needle, "\"id\": \"%s\"", event_id);
    const char *p = strstr(data, needle);
    const char *ra = p ? strstr(p, "\"received_at\": ") : NULL;
    const char *eol = p ? strchr(p, '\n') : NULL;
    if (ra && (!eol || ra < eol))
        at = strtod(ra + strlen("\"received_at\": "), NULL);
    free(data);
    return at;
}

/* The line number (0-based) of the first line of path holding needle, or -1. */
static int line_of(const char *path, const char *needle)
{
    char *data = NULL;
    size_t len;
    if (util_read_file(path, 1 << 24, &data, &len, NULL) != 0)
        return -1;
    const char *p = strstr(data, needle);
    int line = -1;
    if (p) {
        line = 0;
        for (const char *c = data; c < p; c++)
            line += *c == '\n';
    }
    free(data);
    return line;
}

/* The event id of job_id's single event into out (empty when there is not one). */
static void job_event_id(Queue *q, int64_t job_id, char out[WEBHOOK_EVENT_ID_SIZE])
{
    int n;
    OutboxEvent **ev = job_events(q, job_id, &n);
    snprintf(out, WEBHOOK_EVENT_ID_SIZE, "%s", n == 1 ? ev[0]->event_id : "");
    events_free(ev, n);
}

/* One send: an endpoint that hangs and one that trickles its answer beside a good one.
 * The good endpoint's events arrive at once and in order, the bad ones each cost one
 * timeout (in parallel, not one per event in a row), and their later events stay pending,
 * never sent before the first one's attempt is settled. */
static void test_bad_endpoint_send(void)
{
    Receiver r;
    if (receiver_start(&r, OUTBOX_RECEIVER_ARGS "--secret %s --hang-path /hang "
                       "--trickle-path /slow --trickle-s 0.2", SECRET))
        return;
    char hang[80], slow[80];
    receiver_url(&r, "/hang", hang, sizeof hang);
    receiver_url(&r, "/slow", slow, sizeof slow);
    Queue *q = open_queue();
    OutboxSettings s = settings("0,1,1", 1500);
    s.max_parallel = 4;
    enum { NGOOD = 4 };
    int64_t good[NGOOD], hangs[2], slows[2];
    for (int i = 0; i < 2; i++) {
        hangs[i] = finish_job(q, hang, NULL, 1);
        slows[i] = finish_job(q, slow, NULL, 1);
        good[2 * i] = finish_job(q, r.url, NULL, 1);
        good[2 * i + 1] = finish_job(q, r.url, NULL, 0);
    }
    double t0 = (double)util_now_ms() / 1000.0, m0 = util_mono_s();
    OutboxStats st = send_due(q, &s);
    double took = util_mono_s() - m0;
    CHECK_EQ(st.delivered, NGOOD);
    CHECK_EQ(st.retrying, 2); /* the first event of /hang and of /slow */
    CHECK_EQ(st.due, NGOOD + 2);
    CHECK(took < 2.9); /* one timeout (1.5 s) in parallel, not four in a row (6 s) */
    double worst = 0;
    int prev_line = -1;
    for (int i = 0; i < NGOOD; i++) {
        char eid[WEBHOOK_EVENT_ID_SIZE], needle[100];
        job_event_id(q, good[i], eid);
        double at = received_at(eid);
        CHECK(at > 0);
        if (at - t0 > worst)
            worst = at - t0;
        snprintf(needle, sizeof needle, "\"id\": \"%s\"", eid);
        int line = line_of("events.jsonl", needle);
        CHECK(line > prev_line); /* the good endpoint's events in submission order */
        prev_line = line;
    }
    CHECK(worst < 1.0); /* not held behind the hanging endpoint's 1.5 s */
    fprintf(stderr, "outbox: good endpoint beside a hanging and a trickling one: last event "
                    "received %.0f ms after the send began; the send took %.0f ms\n",
            worst * 1000, took * 1000);
    for (int i = 0; i < 2; i++) {
        int n;
        OutboxEvent **ev = job_events(q, hangs[i], &n);
        CHECK(n == 1 && ev[0]->state == EVENT_PENDING && ev[0]->attempts == (i == 0));
        events_free(ev, n);
        ev = job_events(q, slows[i], &n);
        CHECK(n == 1 && ev[0]->state == EVENT_PENDING && ev[0]->attempts == (i == 0));
        if (n == 1 && i == 0)
            CHECK(ev[0]->last_error && (strstr(ev[0]->last_error, "timed out") ||
                                        strstr(ev[0]->last_error, "too slow")));
        events_free(ev, n);
    }
    CHECK_EQ(test_count_in_file("requests.jsonl", "\"hang\": true"), 1);
    CHECK_EQ(test_count_in_file("requests.jsonl", "\"trickle\": true"), 1);
    queue_close(q);
    receiver_stop(&r);
}

/* The worker's delivery thread with a hanging endpoint: events of a good endpoint that
 * become due while the hanging one holds a sender still go out at once; the hanging
 * endpoint never has two events in flight, and its events go in order. */
static void test_bad_endpoint_thread(void)
{
    Receiver r;
    if (receiver_start(&r, OUTBOX_RECEIVER_ARGS "--secret %s --hang-path /hang", SECRET))
        return;
    char hang[80], err[VLQ_ERRLEN];
    receiver_url(&r, "/hang", hang, sizeof hang);
    const char *conf = "[webhooks]\nsecret = " SECRET "\ntimeout_ms = 2000\nschedule = 0,1,1\n"
                       "max_parallel = 2\n";
    util_write_file("vlq.conf", conf, strlen(conf), NULL);
    Cfg *cfg = NULL;
    if (cfg_load("vlq.conf", &cfg, err) != 0) {
        test_fail(__FILE__, __LINE__, "cfg_load: %s", err);
        receiver_stop(&r);
        return;
    }
    Queue *q = open_queue();
    OutboxThread *t = NULL;
    CHECK_EQ(outbox_start("q.db", cfg, &t, err), 0);
    cfg_free(cfg);
    int64_t h1 = finish_job(q, hang, NULL, 1);
    int64_t h2 = finish_job(q, hang, NULL, 0);
    outbox_poke(t);
    util_sleep_ms(200); /* h1 hangs now, for 2 s */
    enum { NGOOD = 6 };
    int64_t good[NGOOD];
    double done_at[NGOOD];
    for (int i = 0; i < NGOOD; i++) {
        good[i] = finish_job(q, r.url, NULL, 1);
        done_at[i] = (double)util_now_ms() / 1000.0;
        outbox_poke(t); /* as the worker does when a job ends */
        util_sleep_ms(400);
    }
    double worst = 0;
    for (int i = 0; i < NGOOD; i++) {
        char eid[WEBHOOK_EVENT_ID_SIZE];
        job_event_id(q, good[i], eid);
        double at = -1;
        for (int k = 0; k < 30 && (at = received_at(eid)) < 0; k++)
            util_sleep_ms(100);
        CHECK(at > 0);
        if (at - done_at[i] > worst)
            worst = at - done_at[i];
    }
    outbox_stop(t);
    CHECK(worst < 1.0); /* each within a poke's time, though /hang held a sender for 2 s */
    fprintf(stderr, "outbox: delivery thread, good endpoint while another hangs: worst "
                    "latency %.0f ms over %d events\n", worst * 1000, NGOOD);
    /* /hang: h1 first, h2 only after h1's attempt timed out (never both in flight) */
    char e1[WEBHOOK_EVENT_ID_SIZE], e2[WEBHOOK_EVENT_ID_SIZE], n1[100], n2[100];
    job_event_id(q, h1, e1);
    job_event_id(q, h2, e2);
    snprintf(n1, sizeof n1, "\"id\": \"%s\"", e1);
    snprintf(n2, sizeof n2, "\"id\": \"%s\"", e2);
    int l1 = line_of("requests.jsonl", n1), l2 = line_of("requests.jsonl", n2);
    CHECK(l1 >= 0);
    CHECK(l2 < 0 || l2 > l1);
    int n;
    OutboxEvent **ev = job_events(q, h1, &n);
    CHECK(n == 1 && ev[0]->attempts >= 1 && ev[0]->state == EVENT_PENDING);
    events_free(ev, n);
    queue_close(q);
    receiver_stop(&r);
}

/* A hanging endpoint with a backlog larger than one fetch (150 due events, the thread
 * looks at 100 at a time): the good endpoint's events behind that backlog still go out at
 * once instead of waiting for the backlog's timeouts one by one. */
static void test_bad_endpoint_backlog(void)
{
    Receiver r;
    if (receiver_start(&r, OUTBOX_RECEIVER_ARGS "--secret %s --hang-path /hang", SECRET))
        return;
    char hang[80], err[VLQ_ERRLEN];
    receiver_url(&r, "/hang", hang, sizeof hang);
    const char *conf = "[webhooks]\nsecret = " SECRET "\ntimeout_ms = 3000\nschedule = 0,1\n"
                       "max_parallel = 2\n";
    util_write_file("vlq.conf", conf, strlen(conf), NULL);
    Cfg *cfg = NULL;
    if (cfg_load("vlq.conf", &cfg, err) != 0) {
        test_fail(__FILE__, __LINE__, "cfg_load: %s", err);
        receiver_stop(&r);
        return;
    }
    Queue *q = open_queue();
    for (int i = 0; i < 150; i++)
        finish_job(q, hang, NULL, 1);
    OutboxThread *t = NULL;
    CHECK_EQ(outbox_start("q.db", cfg, &t, err), 0);
    cfg_free(cfg);
    util_sleep_ms(300); /* the first /hang event is in flight for 3 s */
    enum { NGOOD = 3 };
    int64_t good[NGOOD];
    for (int i = 0; i < NGOOD; i++)
        good[i] = finish_job(q, r.url, NULL, 1);
    double t0 = (double)util_now_ms() / 1000.0;
    outbox_poke(t);
    double worst = 0;
    for (int i = 0; i < NGOOD; i++) {
        char eid[WEBHOOK_EVENT_ID_SIZE];
        job_event_id(q, good[i], eid);
        double at = -1;
        for (int k = 0; k < 40 && (at = received_at(eid)) < 0; k++)
            util_sleep_ms(50);
        CHECK(at > 0);
        if (at - t0 > worst)
            worst = at - t0;
    }
    outbox_stop(t);
    CHECK(worst < 1.5); /* not behind the /hang event's 3 s timeout */
    CHECK_EQ(test_count_in_file("requests.jsonl", "\"hang\": true"), 1);
    fprintf(stderr, "outbox: good endpoint behind a 150-event backlog of a hanging one: "
                    "delivered %.0f ms after the poke\n", worst * 1000);
    queue_close(q);
    receiver_stop(&r);
}

/* A body that trickles is cut by libcurl's low-speed limit before a long total time. */
static void test_trickle_low_speed(void)
{
    Receiver r;
    if (receiver_start(&r, OUTBOX_RECEIVER_ARGS "--trickle-path /slow --trickle-s 0.5"))
        return;
    char slow[80];
    receiver_url(&r, "/slow", slow, sizeof slow);
    WebhookRequest req = {.url = slow, .event_id = "msg_trickle", .timestamp_s = 1,
                          .body = "{}", .body_len = 2};
    WebhookOptions opt = {.timeout_ms = 60000, .connect_timeout_ms = 1000};
    WebhookResult res;
    double t0 = util_mono_s();
    webhook_deliver(&req, &opt, &res);
    double took = util_mono_s() - t0;
    CHECK_EQ(res.outcome, WEBHOOK_RETRY);
    CHECK_EQ(res.no_answer, 1);
    CHECK(took > 5 && took < 20); /* the 10 s low-speed window, not the 60 s total */
    CHECK(strstr(res.error, "slow") != NULL);
    fprintf(stderr, "webhook: trickling answer (2 bytes/s) cut after %.1f s: %s\n", took,
            res.error);
    receiver_stop(&r);
}

TEST_GROUP(outbox, {"schedule_parse", test_schedule_parse, 0},
           {"delivered_once", test_delivered_once, 0}, {"job_secret", test_job_secret, 0},
           {"down_then_up", test_down_then_up, 0}, {"retry_same_id", test_retry_same_id, 0},
           {"hang_times_out", test_hang_times_out, 0}, {"retry_after", test_retry_after, 0},
           {"gone_disables", test_gone_disables, 0},
           {"spent_then_redeliver", test_spent_then_redeliver, 0},
           {"nothing_lost", test_nothing_lost, 0}, {"thread", test_thread, 0},
           {"bad_endpoint_send", test_bad_endpoint_send, 0},
           {"bad_endpoint_thread", test_bad_endpoint_thread, 0},
           {"bad_endpoint_backlog", test_bad_endpoint_backlog, 0},
           {"trickle_low_speed", test_trickle_low_speed, 0})
