/* Tests of webhook: signatures checked against Python's hmac + base64 and the Standard
 * Webhooks example vector, URL and secret checks, the retry schedule, and deliveries to
 * examples/webhook_receiver.py started on 127.0.0.1 (a free port it picks itself), which
 * verifies every signature independently. */
#include "err.h"
#include "receiver.h"
#include "test.h"
#include "util.h"
#include "webhook.h"
#include "whsec.h"

#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The example of the Standard Webhooks / Svix documentation (a 24-byte key). */
#define SPEC_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define SPEC_ID "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define SPEC_TS 1614265330
#define SPEC_BODY "{\"test\": 2432232314}"
#define SPEC_SIG "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

/* ---- receiver ---- */

static WebhookRequest request(const char *url, const char *body, const char *secret)
{
    return (WebhookRequest){.url = url,
                            .event_id = "msg_test0001",
                            .timestamp_s = util_now_ms() / 1000,
                            .body = body,
                            .body_len = strlen(body),
                            .secret = secret};
}

static const WebhookOptions fast = {.connect_timeout_ms = 2000, .timeout_ms = 3000};

/* ---- signing ---- */

static void test_sign_spec_vector(void)
{
    char err[VLQ_ERRLEN];
    char *sig = webhook_sign(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY, strlen(SPEC_BODY), err);
    CHECK_STR(sig, SPEC_SIG);
    free(sig);
    /* A 25-byte key needs "==" padding; given without it, it signs the same. */
    char *a = webhook_sign("whsec_QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQg==", "m", 1, "", 0, err);
    char *b = webhook_sign("whsec_QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQg", "m", 1, "", 0, err);
    CHECK(a && b && !strcmp(a, b));
    free(a);
    free(b);
}

/* An independent signer: Python's hmac + base64. Each line of cases.txt is
 * "secret id timestamp body-file"; it writes one signature per line to sigs.txt. */
static const char *python_sign =
    "import base64, hashlib, hmac\n"
    "out = []\n"
    "for line in open('cases.txt'):\n"
    "    secret, msg_id, ts, path = line.split()\n"
    "    b64 = secret[len('whsec_'):]\n"
    "    key = base64.b64decode(b64 + '=' * (-len(b64) % 4), validate=True)\n"
    "    body = open(path, 'rb').read()\n"
    "    signed = msg_id.encode() + b'.' + ts.encode() + b'.' + body\n"
    "    mac = hmac.new(key, signed, hashlib.sha256).digest()\n"
    "    out.append('v1,' + base64.b64encode(mac).decode())\n"
    "open('sigs.txt', 'w').write('\\n'.join(out) + '\\n')\n";

static void test_sign_matches_python(void)
{
    char err[VLQ_ERRLEN];
    CHECK_EQ(util_write_file("sign.py", python_sign, strlen(python_sign), err), 0);
    char fresh[WEBHOOK_SECRET_SIZE];
    CHECK_EQ(webhook_new_secret(fresh, err), 0);
    /* A 64-byte key given without its "==" padding. */
    const char *long_secret = "whsec_CzBVep/E6Q4zWH2ix+wRNluApcrvFDleg6jN8hc8YYar0PUaP2"
                              "SJrtP4HUJnjLHW+yBFao+02f4jSG2St9wBJg";
    const char *secrets[] = {SPEC_SECRET, fresh, long_secret};
    const struct {
        const char *data;
        size_t len;
    } bodies[] = {
        {"", 0},
        {SPEC_BODY, sizeof SPEC_BODY - 1},
        {"{\"city\":\"Zürich\",\"jp\":\"日本語\",\"emoji\":\"🎉\"}", 0},
        {"bin\0ary\xff\xfe\n\r", 12},
    };
    enum { NS = sizeof secrets / sizeof *secrets, NB = sizeof bodies / sizeof *bodies };
    Buf cases = {0};
    char *got[NS][NB];
    for (int s = 0; s < NS; s++) {
        CHECK_EQ(whsec_check(secrets[s], err), 0);
        for (int b = 0; b < NB; b++) {
            size_t len = bodies[b].len ? bodies[b].len : strlen(bodies[b].data);
            char path[32], id[32];
            snprintf(path, sizeof path, "body%d.bin", b);
            snprintf(id, sizeof id, "msg_%d_%d", s, b);
            CHECK_EQ(util_write_file(path, bodies[b].data, len, err), 0);
            int64_t ts = 1764043200 + b;
            buf_printf(&cases, "%s %s %lld %s\n", secrets[s], id, (long long)ts, path);
            got[s][b] = webhook_sign(secrets[s], id, ts, bodies[b].data, len, err);
            CHECK(got[s][b] && strlen(got[s][b]) == 3 + 44); /* "v1," + base64 of 32 bytes */
        }
    }
    CHECK_EQ(util_write_file("cases.txt", cases.data, cases.len, err), 0);
    buf_clear(&cases);
    CHECK_EQ(test_sh("python3 sign.py"), 0);
    char *want = NULL;
    size_t want_len = 0;
    CHECK_EQ(util_read_file("sigs.txt", 0, &want, &want_len, err), 0);
    char *line = want;
    for (int s = 0; s < NS; s++) {
        for (int b = 0; b < NB; b++) {
            char *nl = line ? strchr(line, '\n') : NULL;
            if (nl)
                *nl = '\0';
            CHECK_STR(got[s][b], line);
            line = nl ? nl + 1 : NULL;
            free(got[s][b]);
        }
    }
    free(want);
}

static void test_secret_malformed(void)
{
    char err[VLQ_ERRLEN];
    const char *bad[] = {
        "",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",        /* no prefix */
        "whsec_",                                  /* no key */
        "whsec_dGVzdA==",                          /* 4-byte key: too short */
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS!",  /* not base64 */
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa Sw", /* space */
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw=", /* wrong padding */
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwA", /* 33 chars: not a base64 length */
        "whsec_MfKQ9r8GKYqr=TwjUPD8ILPZIo2LaLaSw", /* padding inside */
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw_", /* base64url alphabet */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        if (whsec_check(bad[i], err) != VLQ_EINPUT)
            test_fail(__FILE__, __LINE__, "secret \"%s\" was accepted", bad[i]);
        CHECK(!strncmp(err, "webhook secret: ", 16));
        CHECK(webhook_sign(bad[i], "msg_1", 1, "{}", 2, err) == NULL);
    }
    CHECK_EQ(whsec_check(NULL, err), VLQ_EINPUT);
    CHECK_EQ(whsec_check("whsec_dGVzdA==", err), VLQ_EINPUT);
    CHECK_STR(err, "webhook secret: key is 4 bytes, must be 24 to 64");
    /* 65 bytes is one too many. */
    const char *big = "whsec_QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"
                      "QUFBQUFBQUFBQUFBQUFBQUFBQUE=";
    CHECK_EQ(whsec_check(big, err), VLQ_EINPUT);
    CHECK_STR(err, "webhook secret: key is 65 bytes, must be 24 to 64");
    CHECK_EQ(whsec_check(SPEC_SECRET, err), 0);
}

static void test_new_ids_and_secrets(void)
{
    char err[VLQ_ERRLEN];
    char a[WEBHOOK_EVENT_ID_SIZE], b[WEBHOOK_EVENT_ID_SIZE];
    CHECK_EQ(webhook_new_event_id(a, err), 0);
    CHECK_EQ(webhook_new_event_id(b, err), 0);
    CHECK_EQ(strlen(a), WEBHOOK_EVENT_ID_SIZE - 1);
    CHECK(!strncmp(a, "msg_", 4));
    CHECK_EQ(strspn(a + 4, "abcdefghijklmnopqrstuvwxyz234567"), 24);
    CHECK(strcmp(a, b) != 0);
    char s1[WEBHOOK_SECRET_SIZE], s2[WEBHOOK_SECRET_SIZE];
    CHECK_EQ(webhook_new_secret(s1, err), 0);
    CHECK_EQ(webhook_new_secret(s2, err), 0);
    CHECK_EQ(strlen(s1), WEBHOOK_SECRET_SIZE - 1);
    CHECK(!strncmp(s1, "whsec_", 6));
    CHECK(strcmp(s1, s2) != 0);
    CHECK_EQ(whsec_check(s1, err), 0);
    /* Every base32 char shows up over many ids: the 5-bit groups cover the alphabet. */
    int seen[256] = {0};
    for (int i = 0; i < 200; i++) {
        CHECK_EQ(webhook_new_event_id(a, err), 0);
        for (int j = 4; j < 28; j++)
            seen[(unsigned char)a[j]] = 1;
    }
    int kinds = 0;
    for (int i = 0; i < 256; i++)
        kinds += seen[i];
    CHECK_EQ(kinds, 32);
}

/* ---- URLs ---- */

static void test_check_url(void)
{
    char err[VLQ_ERRLEN];
    CHECK_EQ(webhook_check_url("http://127.0.0.1:8080/hook", NULL, err), 0);
    CHECK_EQ(webhook_check_url("https://example.com/a?b=c", "", err), 0);
    CHECK_EQ(webhook_check_url("HTTPS://Example.COM/", "example.com", err), 0);
    CHECK_EQ(webhook_check_url("https://hooks.example.com/x", " a.org , hooks.example.com ", err),
             0);
    CHECK_EQ(webhook_check_url("http://[::1]:9/x", "::1", err), 0);
    CHECK_EQ(webhook_check_url("http://[::1]:9/x", "[::1]", err), 0);

    CHECK_EQ(webhook_check_url("ftp://example.com/x", NULL, err), VLQ_EINPUT);
    CHECK_STR(err, "ftp://example.com/x: only http:// and https:// URLs are allowed");
    CHECK_EQ(webhook_check_url("file:///etc/passwd", NULL, err), VLQ_EINPUT);
    CHECK_EQ(webhook_check_url("example.com/hook", NULL, err), VLQ_EINPUT);
    CHECK_EQ(webhook_check_url("http://", NULL, err), VLQ_EINPUT);
    CHECK_EQ(webhook_check_url("http://exa mple.com/", NULL, err), VLQ_EINPUT);
    CHECK_EQ(webhook_check_url("", NULL, err), VLQ_EINPUT);
    CHECK_STR(err, "webhook URL: empty");
    CHECK_EQ(webhook_check_url(NULL, NULL, err), VLQ_EINPUT);
    CHECK_EQ(webhook_check_url("https://evil.com/x", "example.com", err), VLQ_EINPUT);
    CHECK_STR(err, "https://evil.com/x: host evil.com is not in the allowed hosts (example.com)");
    CHECK_EQ(webhook_check_url("https://example.com.evil.com/", "example.com", err), VLQ_EINPUT);
    CHECK_EQ(webhook_check_url("https://ample.com/", "example.com", err), VLQ_EINPUT);
    CHECK_EQ(webhook_check_url("https://example.com@evil.com/", "example.com", err), VLQ_EINPUT);
}

/* ---- schedule ---- */

static void test_schedule_jitter(void)
{
    uint64_t rng = 42;
    const int64_t *s = WEBHOOK_DEFAULT_SCHEDULE_S;
    const int n = WEBHOOK_DEFAULT_SCHEDULE_N;
    CHECK_EQ(s[0], 0);
    CHECK_EQ(s[1], 5);
    CHECK_EQ(s[2], 300);
    CHECK_EQ(s[9], 86400);
    for (int attempt = 1; attempt <= n; attempt++) {
        int64_t base = s[attempt - 1] * 1000, lo = INT64_MAX, hi = INT64_MIN;
        for (int i = 0; i < 500; i++) {
            int64_t d = webhook_retry_delay_ms(attempt, s, n, &rng);
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
        }
        if (lo < base - base / 10 || hi > base + base / 10)
            test_fail(__FILE__, __LINE__, "attempt %d: delays %lld..%lld outside %lld +-10%%",
                      attempt, (long long)lo, (long long)hi, (long long)base);
        if (base > 0 && (lo > base - base / 20 || hi < base + base / 20))
            test_fail(__FILE__, __LINE__, "attempt %d: delays %lld..%lld hardly jittered", attempt,
                      (long long)lo, (long long)hi);
        CHECK_EQ(webhook_retry_delay_ms(attempt, s, n, NULL), base);
    }
    CHECK_EQ(webhook_retry_delay_ms(n + 1, s, n, &rng), -1);
    CHECK_EQ(webhook_retry_delay_ms(1000, s, n, &rng), -1);
    CHECK_EQ(webhook_retry_delay_ms(0, s, n, &rng), 0); /* taken as the first retry */
    const int64_t custom[2] = {10, 60};
    int64_t d = webhook_retry_delay_ms(2, custom, 2, &rng);
    CHECK(d >= 54000 && d <= 66000);
    CHECK_EQ(webhook_retry_delay_ms(3, custom, 2, &rng), -1);
    /* The same seed gives the same delays (the caller may persist it). */
    uint64_t r1 = 7, r2 = 7;
    CHECK_EQ(webhook_retry_delay_ms(5, s, n, &r1), webhook_retry_delay_ms(5, s, n, &r2));
}

/* ---- deliveries ---- */

static void test_deliver_signed_200(void)
{
    Receiver r;
    if (receiver_start(&r, "--secret %s --out events.jsonl --log requests.jsonl", SPEC_SECRET))
        return;
    const char *bodies[] = {"{\"type\":\"job.succeeded\",\"data\":{\"id\":42}}",
                            "{\"text\":\"Zürich 日本語 🎉\"}", ""};
    for (int i = 0; i < 3; i++) {
        WebhookRequest req = request(r.url, bodies[i], SPEC_SECRET);
        char id[32];
        snprintf(id, sizeof id, "msg_body%d", i);
        req.event_id = id;
        WebhookResult res;
        webhook_deliver(&req, &fast, &res);
        CHECK_EQ(res.outcome, WEBHOOK_DELIVERED);
        CHECK_EQ(res.http_status, 200);
        CHECK_STR(res.error, "");
        CHECK_EQ(res.retry_after_s, -1);
        CHECK(res.duration_s > 0 && res.duration_s < 3);
        CHECK_EQ(test_count_lines("events.jsonl"), i + 1);
        char hex[65], want[128];
        util_sha256_hex(bodies[i], strlen(bodies[i]), hex);
        snprintf(want, sizeof want, "\"id\": \"%s\"", id);
        CHECK(test_count_in_file("events.jsonl", want));
        snprintf(want, sizeof want, "\"body_sha256\": \"%s\"", hex);
        CHECK(test_count_in_file("events.jsonl", want));
    }
    CHECK(test_count_in_file("events.jsonl", "\"user_agent\": \"vlq/"));
    CHECK(test_count_in_file("events.jsonl", "\"content_type\": \"application/json\""));
    CHECK(test_count_in_file("events.jsonl", "\"event\": {\"type\": \"job.succeeded\""));
    CHECK(test_count_in_file("events.jsonl", "Zürich 日本語 🎉"));
    CHECK_EQ(test_count_lines("requests.jsonl"), 3); /* each delivered exactly once */
    receiver_stop(&r);
}

static void test_deliver_large_body(void)
{
    Receiver r;
    if (receiver_start(&r, "--secret %s --out events.jsonl", SPEC_SECRET))
        return;
    size_t n = 3 << 20;
    char *body = xmalloc(n + 1);
    for (size_t i = 0; i < n; i++)
        body[i] = (char)('a' + i % 26);
    body[n] = '\0';
    WebhookRequest req = request(r.url, body, SPEC_SECRET);
    WebhookResult res;
    webhook_deliver(&req, &fast, &res);
    CHECK_EQ(res.outcome, WEBHOOK_DELIVERED);
    char hex[65], want[128];
    util_sha256_hex(body, n, hex);
    snprintf(want, sizeof want, "\"body_sha256\": \"%s\"", hex);
    CHECK(test_count_in_file("events.jsonl", want));
    free(body);
    receiver_stop(&r);
}

static void test_deliver_bad_signature_rejected(void)
{
    Receiver r;
    if (receiver_start(&r, "--secret %s --out events.jsonl", SPEC_SECRET))
        return;
    char other[WEBHOOK_SECRET_SIZE], err[VLQ_ERRLEN];
    CHECK_EQ(webhook_new_secret(other, err), 0);
    WebhookRequest req = request(r.url, "{}", other);
    WebhookResult res;
    webhook_deliver(&req, &fast, &res);
    CHECK_EQ(res.outcome, WEBHOOK_RETRY);
    CHECK_EQ(res.http_status, 401);
    CHECK(strstr(res.error, "HTTP 401 Unauthorized: no valid v1 signature") != NULL);
    req.secret = NULL; /* unsigned */
    webhook_deliver(&req, &fast, &res);
    CHECK_EQ(res.http_status, 400);
    /* A timestamp ten minutes old is refused by the receiver as a possible replay. */
    req = request(r.url, "{}", SPEC_SECRET);
    req.timestamp_s -= 600;
    webhook_deliver(&req, &fast, &res);
    CHECK_EQ(res.outcome, WEBHOOK_RETRY);
    CHECK_EQ(res.http_status, 400);
    CHECK(strstr(res.error, "more than 300 s away") != NULL);
    CHECK_EQ(test_count_lines("events.jsonl"), 0);
    receiver_stop(&r);
}

static void test_deliver_500_retry(void)
{
    Receiver r;
    if (receiver_start(&r, "--secret %s --status 500 --retry-after 9", SPEC_SECRET))
        return;
    WebhookRequest req = request(r.url, "{}", SPEC_SECRET);
    WebhookResult res;
    webhook_deliver(&req, &fast, &res);
    CHECK_EQ(res.outcome, WEBHOOK_RETRY);
    CHECK_EQ(res.http_status, 500);
    CHECK_EQ(res.retry_after_s, -1); /* Retry-After counts only on 429/502/503/504 */
    char want[128];
    snprintf(want, sizeof want, "%s: HTTP 500 Internal Server Error: ok", r.url);
    CHECK_STR(res.error, want);
    receiver_stop(&r);
}

static void test_deliver_fail_first_then_ok(void)
{
    Receiver r;
    if (receiver_start(&r, "--secret %s --fail-first 2 --fail-status 503 --out events.jsonl",
                       SPEC_SECRET))
        return;
    WebhookRequest req = request(r.url, "{\"n\":1}", SPEC_SECRET);
    WebhookResult res;
    for (int i = 0; i < 2; i++) {
        webhook_deliver(&req, &fast, &res);
        CHECK_EQ(res.outcome, WEBHOOK_RETRY);
        CHECK_EQ(res.http_status, 503);
        CHECK_EQ(res.retry_after_s, -1); /* no header sent */
    }
    req.timestamp_s++; /* a later attempt: same id, new timestamp */
    webhook_deliver(&req, &fast, &res);
    CHECK_EQ(res.outcome, WEBHOOK_DELIVERED);
    CHECK_EQ(test_count_lines("events.jsonl"), 1);
    CHECK(test_count_in_file("events.jsonl", "\"id\": \"msg_test0001\""));
    receiver_stop(&r);
}

static void test_deliver_410_gone(void)
{
    Receiver r;
    if (receiver_start(&r, "--secret %s --status 410", SPEC_SECRET))
        return;
    WebhookRequest req = request(r.url, "{}", SPEC_SECRET);
    WebhookResult res;
    webhook_deliver(&req, &fast, &res);
    CHECK_EQ(res.outcome, WEBHOOK_GONE);
    CHECK_EQ(res.http_status, 410);
    CHECK(strstr(res.error, "HTTP 410") != NULL);
    receiver_stop(&r);
}

static void test_deliver_retry_after(void)
{
    Receiver r;
    if (receiver_start(&r, "--secret %s --status 429 --retry-after 7", SPEC_SECRET))
        return;
    WebhookRequest req = request(r.url, "{}", SPEC_SECRET);
    WebhookResult res;
    webhook_deliver(&req, &fast, &res);
    CHECK_EQ(res.outcome, WEBHOOK_RETRY);
    CHECK_EQ(res.http_status, 429);
    CHECK_EQ(res.retry_after_s, 7);
    receiver_stop(&r);

    /* An HTTP date two minutes ahead, on a 503. */
    char date[64];
    time_t t = time(NULL) + 120;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (receiver_start(&r, "--secret %s --status 503 --retry-after '%s'", SPEC_SECRET, date))
        return;
    req = request(r.url, "{}", SPEC_SECRET);
    webhook_deliver(&req, &fast, &res);
    CHECK_EQ(res.http_status, 503);
    CHECK(res.retry_after_s >= 115 && res.retry_after_s <= 120);
    receiver_stop(&r);

    /* A date already past: retry now. */
    if (receiver_start(&r, "--secret %s --status 503 --retry-after 'Wed, 21 Oct 2015 07:28:00 GMT'",
                       SPEC_SECRET))
        return;
    req = request(r.url, "{}", SPEC_SECRET);
    webhook_deliver(&req, &fast, &res);
    CHECK_EQ(res.retry_after_s, 0);
    receiver_stop(&r);

    /* Far too long: clamped. Unparsable: ignored. */
    if (receiver_start(&r, "--secret %s --status 502 --retry-after 99999999999999999999",
                       SPEC_SECRET))
        return;
    req = request(r.url, "{}", SPEC_SECRET);
    webhook_deliver(&req, &fast, &res);
    CHECK_EQ(res.retry_after_s, WEBHOOK_MAX_RETRY_AFTER_S);
    receiver_stop(&r);
    if (receiver_start(&r, "--secret %s --status 504 --retry-after soon", SPEC_SECRET))
        return;
    req = request(r.url, "{}", SPEC_SECRET);
    webhook_deliver(&req, &fast, &res);
    CHECK_EQ(res.http_status, 504);
    CHECK_EQ(res.retry_after_s, -1);
    receiver_stop(&r);
}

static void test_deliver_redirect_not_followed(void)
{
    Receiver r;
    if (receiver_start(&r, "--secret %s --status 302 --location /elsewhere --log requests.jsonl",
                       SPEC_SECRET))
        return;
    WebhookRequest req = request(r.url, "{}", SPEC_SECRET);
    WebhookResult res;
    webhook_deliver(&req, &fast, &res);
    CHECK_EQ(res.outcome, WEBHOOK_RETRY);
    CHECK_EQ(res.http_status, 302);
    CHECK(strstr(res.error, "HTTP 302 Found: redirects are not followed (Location: http://"
                            "127.0.0.1:") != NULL);
    CHECK(strstr(res.error, "/elsewhere)") != NULL);
    CHECK_EQ(test_count_lines("requests.jsonl"), 1);
    receiver_stop(&r);
}

static void test_deliver_hang_times_out(void)
{
    Receiver r;
    if (receiver_start(&r, "--secret %s --hang --log requests.jsonl", SPEC_SECRET))
        return;
    WebhookRequest req = request(r.url, "{}", SPEC_SECRET);
    WebhookOptions opt = {.connect_timeout_ms = 300, .timeout_ms = 500};
    WebhookResult res;
    webhook_deliver(&req, &opt, &res);
    CHECK_EQ(res.outcome, WEBHOOK_RETRY);
    CHECK_EQ(res.http_status, 0);
    CHECK(res.duration_s >= 0.45 && res.duration_s < 1.5);
    CHECK(strstr(res.error, "timed out") != NULL);
    CHECK(!strncmp(res.error, r.url, strlen(r.url)));
    CHECK_EQ(test_count_lines("requests.jsonl"), 1); /* it did reach the receiver */
    receiver_stop(&r);
}

static void test_deliver_connection_refused(void)
{
    receiver_no_proxy();

    /* A port nobody listens on: bind one, note it, close it. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&a, &alen) == 0);
    close(fd);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hook", ntohs(a.sin_port));
    WebhookRequest req = request(url, "{}", SPEC_SECRET);
    WebhookResult res;
    webhook_deliver(&req, &fast, &res);
    CHECK_EQ(res.outcome, WEBHOOK_RETRY);
    CHECK_EQ(res.http_status, 0);
    CHECK(strstr(res.error, "Connection refused") != NULL);
    CHECK(!strncmp(res.error, url, strlen(url)));
    CHECK(res.duration_s < 1.5);
}

static void test_deliver_refused_before_sending(void)
{
    Receiver r;
    if (receiver_start(&r, "--log requests.jsonl --out events.jsonl"))
        return;
    WebhookResult res;
    WebhookRequest req = request(r.url, "{}", SPEC_SECRET);
    WebhookOptions allow = {.allow_hosts = "hooks.example.com"};
    webhook_deliver(&req, &allow, &res);
    CHECK_EQ(res.outcome, WEBHOOK_REFUSED);
    CHECK(strstr(res.error, "host 127.0.0.1 is not in the allowed hosts") != NULL);
    allow.allow_hosts = "127.0.0.1";
    webhook_deliver(&req, &allow, &res);
    CHECK_EQ(res.outcome, WEBHOOK_DELIVERED); /* the same URL once allowed */

    req.url = "ftp://127.0.0.1/hook";
    webhook_deliver(&req, &fast, &res);
    CHECK_EQ(res.outcome, WEBHOOK_REFUSED);
    CHECK_STR(res.error, "ftp://127.0.0.1/hook: only http:// and https:// URLs are allowed");
    CHECK_EQ(res.http_status, 0);
    CHECK_EQ(res.retry_after_s, -1);

    req = request(r.url, "{}", "whsec_dGVzdA==");
    webhook_deliver(&req, &fast, &res);
    CHECK_EQ(res.outcome, WEBHOOK_REFUSED);
    CHECK_STR(res.error, "webhook secret: key is 4 bytes, must be 24 to 64");

    req = request(r.url, "{}", SPEC_SECRET);
    req.event_id = "msg_1\r\nx-injected: 1";
    webhook_deliver(&req, &fast, &res);
    CHECK_EQ(res.outcome, WEBHOOK_REFUSED);
    CHECK(strstr(res.error, "webhook-id must be") != NULL);
    req.event_id = "";
    webhook_deliver(&req, &fast, &res);
    CHECK_EQ(res.outcome, WEBHOOK_REFUSED);
    CHECK_EQ(test_count_lines("requests.jsonl"), 1); /* only the allowed one went out */
    receiver_stop(&r);
}

static void test_deliver_response_capped(void)
{
    Receiver r;
    if (receiver_start(&r, "--response-bytes 50000000 --out events.jsonl"))
        return;
    WebhookRequest req = request(r.url, "{}", NULL);
    WebhookResult res;
    webhook_deliver(&req, &fast, &res);
    CHECK_EQ(res.outcome, WEBHOOK_DELIVERED);
    CHECK_EQ(res.http_status, 200);
    CHECK(res.duration_s < 2);
    receiver_stop(&r);
    if (receiver_start(&r, "--status 500 --response-bytes 50000000"))
        return;
    webhook_deliver(&req, &fast, &res);
    CHECK_EQ(res.outcome, WEBHOOK_RETRY);
    CHECK_EQ(res.http_status, 500);
    CHECK(strlen(res.error) < VLQ_ERRLEN);
    receiver_stop(&r);
}

static void test_deliver_tls_verified(void)
{
    /* A self-signed certificate for 127.0.0.1: with verification on, curl must refuse it
     * and nothing reaches the receiver. */
    if (test_sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                "-keyout key.pem -out cert.pem -days 2 -subj /CN=127.0.0.1 "
                "-addext subjectAltName=IP:127.0.0.1 2>/dev/null") != 0)
        test_skip("the openssl command cannot make a test certificate");
    Receiver r;
    if (receiver_start(&r, "--cert cert.pem --key key.pem --log requests.jsonl --out ev.jsonl"))
        return;
    char url[80];
    snprintf(url, sizeof url, "https://127.0.0.1:%d/hook", r.port);
    WebhookRequest req = request(url, "{}", SPEC_SECRET);
    WebhookResult res;
    webhook_deliver(&req, &fast, &res);
    CHECK_EQ(res.outcome, WEBHOOK_RETRY);
    CHECK_EQ(res.http_status, 0);
    CHECK(strstr(res.error, "certificate") != NULL);
    CHECK_EQ(test_count_lines("requests.jsonl"), 0);
    receiver_stop(&r);
}

typedef struct {
    const char *url;
    int index;
    int delivered;
} SenderArg;

static void *sender_thread(void *p)
{
    SenderArg *a = p;
    for (int i = 0; i < 5; i++) {
        char id[32], body[64];
        snprintf(id, sizeof id, "msg_t%d_%d", a->index, i);
        snprintf(body, sizeof body, "{\"thread\":%d,\"n\":%d}", a->index, i);
        WebhookRequest req = request(a->url, body, SPEC_SECRET);
        req.event_id = id;
        WebhookResult res;
        webhook_deliver(&req, &fast, &res);
        a->delivered += res.outcome == WEBHOOK_DELIVERED;
    }
    return NULL;
}

static void test_deliver_threads(void)
{
    /* Four threads deliver at once from a process that never called webhook_global_init:
     * the lazy init and the per-call handles must hold up. */
    Receiver r;
    if (receiver_start(&r, "--secret %s --out events.jsonl", SPEC_SECRET))
        return;
    pthread_t th[4];
    SenderArg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (SenderArg){.url = r.url, .index = i};
        CHECK_EQ(pthread_create(&th[i], NULL, sender_thread, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(args[i].delivered, 5);
    }
    CHECK_EQ(test_count_lines("events.jsonl"), 20);
    CHECK(test_count_in_file("events.jsonl", "\"id\": \"msg_t3_4\""));
    receiver_stop(&r);
}

static void test_outcome_names(void)
{
    CHECK_STR(webhook_outcome_name(WEBHOOK_DELIVERED), "delivered");
    CHECK_STR(webhook_outcome_name(WEBHOOK_RETRY), "retry");
    CHECK_STR(webhook_outcome_name(WEBHOOK_GONE), "gone");
    CHECK_STR(webhook_outcome_name(WEBHOOK_REFUSED), "refused");
    CHECK_STR(webhook_outcome_name((WebhookOutcome)99), "unknown");
}

static void test_deliver_url_redacted(void)
{
    WebhookRequest req = request("http://user:pw@127.0.0.1:1/hook?token=s3cret#frag", "{}", NULL);
    WebhookOptions opt = {.connect_timeout_ms = 500, .timeout_ms = 500};
    WebhookResult res;
    receiver_no_proxy();
    webhook_deliver(&req, &opt, &res);
    CHECK_EQ(res.outcome, WEBHOOK_RETRY);
    CHECK(strstr(res.error, "s3cret") == NULL);
    CHECK(strstr(res.error, "pw") == NULL);
    CHECK(!strncmp(res.error, "http://127.0.0.1:1/hook: ", 25));
}

TEST_GROUP(webhook, {"sign_spec_vector", test_sign_spec_vector, 0},
           {"sign_matches_python", test_sign_matches_python, 0},
           {"secret_malformed", test_secret_malformed, 0},
           {"new_ids_and_secrets", test_new_ids_and_secrets, 0}, {"check_url", test_check_url, 0},
           {"schedule_jitter", test_schedule_jitter, 0},
           {"deliver_signed_200", test_deliver_signed_200, 0},
           {"deliver_large_body", test_deliver_large_body, 0},
           {"deliver_bad_signature_rejected", test_deliver_bad_signature_rejected, 0},
           {"deliver_500_retry", test_deliver_500_retry, 0},
           {"deliver_fail_first_then_ok", test_deliver_fail_first_then_ok, 0},
           {"deliver_410_gone", test_deliver_410_gone, 0},
           {"deliver_retry_after", test_deliver_retry_after, 0},
           {"deliver_redirect_not_followed", test_deliver_redirect_not_followed, 0},
           {"deliver_hang_times_out", test_deliver_hang_times_out, 0},
           {"deliver_connection_refused", test_deliver_connection_refused, 0},
           {"deliver_refused_before_sending", test_deliver_refused_before_sending, 0},
           {"deliver_response_capped", test_deliver_response_capped, 0},
           {"deliver_tls_verified", test_deliver_tls_verified, 0},
           {"deliver_threads", test_deliver_threads, 0}, {"outcome_names", test_outcome_names, 0},
           {"deliver_url_redacted", test_deliver_url_redacted, 0})
