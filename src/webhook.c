/* webhook: Standard Webhooks signing, one libcurl POST per call, the retry schedule,
 * and random event ids and secrets (see webhook.h).
 *
 * Design decisions:
 * - The URL is parsed once with curl_url() and that same handle is given to the easy
 *   handle (CURLOPT_CURLU), so the URL we checked is the URL we fetch; only http and
 *   https are allowed, both at the check and in CURLOPT_PROTOCOLS(_STR).
 * - One easy handle per delivery: no shared state between threads, no connection reuse
 *   (deliveries are rare next to jobs). curl_global_init runs once under pthread_once.
 * - The signature is computed with EVP_MAC over id "." ts "." body, streamed, so the
 *   body is never copied; the body buffer itself is what curl sends (POSTFIELDS).
 * - libcurl codes never leave this file: the outcome is decided here and the reason is
 *   one line in WebhookResult.error, named by the URL without userinfo or query (which
 *   may carry tokens).
 * - The response body is drained up to WEBHOOK_MAX_RESPONSE_BYTES; past that the
 *   transfer is cut off and the outcome follows the status line already received, so a
 *   receiver cannot hold a worker by streaming. A body that trickles is cut by the total
 *   time (CURLOPT_TIMEOUT_MS) and, sooner when timeout_ms is long, by libcurl's low-speed
 *   limit; either way the attempt is a retry, even after a 2xx status line, since the
 *   receiver did not finish its answer.
 * No mutable globals besides the pthread_once flag and the init result below. */
#include "webhook.h"

#include "log.h"
#include "util.h"
#include "whsec.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "version.h"


#define WEBHOOK_MAX_RESPONSE_BYTES (64 * 1024)
/* Below this many bytes per second for WEBHOOK_LOW_SPEED_S (or the total time when that
 * is shorter), an attempt is cut off: a receiver that trickles its answer (or neither
 * answers nor reads) cannot hold a sender until a long timeout_ms runs out. */
#define WEBHOOK_LOW_SPEED_BYTES 16
#define WEBHOOK_LOW_SPEED_S 10
#define WEBHOOK_SNIPPET_BYTES 120 /* start of a failed response's body kept for the error */
#define WEBHOOK_MAX_ID_LEN 256

const int64_t WEBHOOK_DEFAULT_SCHEDULE_S[10] = {
    0, 5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 14 * 3600, 20 * 3600, 24 * 3600,
};

/* ---- libcurl global init ---- */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_OK; /* written once under global_once */

static void global_init_once(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Initialise libcurl once per process. 0 or VLQ_ENET with the reason. */
int webhook_global_init(char *err)
{
    pthread_once(&global_once, global_init_once);
    if (global_rc != CURLE_OK)
        return err_set(err, VLQ_ENET, "libcurl: global init failed: %s",
                       curl_easy_strerror(global_rc));
    return 0;
}

/* ---- base64 ---- */

/* Encode n bytes as padded standard base64 into a new string (caller frees). */
static char *b64_encode(const unsigned char *data, size_t n)
{
    char *out = xmalloc((n + 2) / 3 * 4 + 1);
    EVP_EncodeBlock((unsigned char *)out, data, (int)n);
    return out;
}

/* ---- secrets and signatures ---- */

/* HMAC-SHA256(key, id "." ts "." body) into mac[32]. 0 or VLQ_EINPUT (libcrypto failed,
 * which only happens when SHA-256 is unavailable, e.g. a broken FIPS config). */
static int hmac_sha256(const unsigned char *key, size_t key_len, const char *id, const char *ts,
                       const char *body, size_t body_len, unsigned char mac[32], char *err)
{
    int rc = VLQ_EINPUT;
    EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = hmac ? EVP_MAC_CTX_new(hmac) : NULL;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    size_t mac_len = 0;
    if (!ctx || !EVP_MAC_init(ctx, key, key_len, params) ||
        !EVP_MAC_update(ctx, (const unsigned char *)id, strlen(id)) ||
        !EVP_MAC_update(ctx, (const unsigned char *)".", 1) ||
        !EVP_MAC_update(ctx, (const unsigned char *)ts, strlen(ts)) ||
        !EVP_MAC_update(ctx, (const unsigned char *)".", 1) ||
        (body_len && !EVP_MAC_update(ctx, (const unsigned char *)body, body_len)) ||
        !EVP_MAC_final(ctx, mac, &mac_len, 32) || mac_len != 32) {
        err_set(err, VLQ_EINPUT, "webhook signature: HMAC-SHA256 unavailable in libcrypto");
        goto out;
    }
    rc = 0;
out:
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(hmac);
    return rc;
}

/* The webhook-signature value "v1,<base64 HMAC>" in a new string (caller frees), or NULL
 * with err set when the secret is malformed. */
char *webhook_sign(const char *secret, const char *event_id, int64_t timestamp_s, const char *body,
                   size_t body_len, char *err)
{
    size_t key_len;
    unsigned char *key = whsec_key(secret, &key_len, err);
    if (!key)
        return NULL;
    char ts[24];
    snprintf(ts, sizeof ts, "%" PRId64, timestamp_s);
    unsigned char mac[32];
    int rc = hmac_sha256(key, key_len, event_id ? event_id : "", ts, body, body_len, mac, err);
    OPENSSL_cleanse(key, key_len);
    free(key);
    if (rc != 0)
        return NULL;
    char *b64 = b64_encode(mac, sizeof mac);
    char *sig = xasprintf("v1,%s", b64);
    free(b64);
    return sig;
}

/* ---- URLs ---- */

/* Parse and check url into a new CURLU (caller frees with curl_url_cleanup), or NULL with
 * err set (VLQ_EINPUT). */
static CURLU *url_parse(const char *url, const char *allow_hosts, char *err)
{
    if (!url || !*url) {
        err_set(err, VLQ_EINPUT, "webhook URL: empty");
        return NULL;
    }
    CURLU *h = curl_url();
    if (!h) {
        err_set(err, VLQ_EINPUT, "%s: out of memory parsing the URL", url);
        return NULL;
    }
    char *scheme = NULL, *host = NULL;
    CURLUcode uc = curl_url_set(h, CURLUPART_URL, url, 0);
    if (uc != CURLUE_OK) {
        err_set(err, VLQ_EINPUT, "%s: invalid URL: %s", url, curl_url_strerror(uc));
        goto fail;
    }
    if (curl_url_get(h, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)) {
        err_set(err, VLQ_EINPUT, "%s: only http:// and https:// URLs are allowed", url);
        goto fail;
    }
    if (curl_url_get(h, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host) {
        err_set(err, VLQ_EINPUT, "%s: the URL has no host", url);
        goto fail;
    }
    if (allow_hosts && *allow_hosts && !util_host_listed(host, allow_hosts)) {
        err_set(err, VLQ_EINPUT, "%s: host %s is not in the allowed hosts (%s)", url, host,
                allow_hosts);
        goto fail;
    }
    curl_free(scheme);
    curl_free(host);
    return h;
fail:
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(h);
    return NULL;
}

/* Check that url is http(s) with a host, and the host is allowed. 0 or VLQ_EINPUT. */
int webhook_check_url(const char *url, const char *allow_hosts, char *err)
{
    CURLU *h = url_parse(url, allow_hosts, err);
    if (!h)
        return VLQ_EINPUT;
    curl_url_cleanup(h);
    return 0;
}

/* The URL for messages: without userinfo, query and fragment, which may hold tokens.
 * A new string (caller frees). */
static char *url_display(CURLU *h)
{
    CURLU *d = curl_url_dup(h);
    char *s = NULL;
    if (d) {
        curl_url_set(d, CURLUPART_USER, NULL, 0);
        curl_url_set(d, CURLUPART_PASSWORD, NULL, 0);
        curl_url_set(d, CURLUPART_QUERY, NULL, 0);
        curl_url_set(d, CURLUPART_FRAGMENT, NULL, 0);
        curl_url_get(d, CURLUPART_URL, &s, 0);
        curl_url_cleanup(d);
    }
    char *out = xstrdup(s ? s : "webhook URL");
    curl_free(s);
    return out;
}

/* ---- one delivery ---- */

/* What the curl callbacks collect about the response. */
typedef struct {
    char reason[64];                         /* reason phrase of the last status line */
    char retry_after[64];                    /* Retry-After value of the last response */
    char snippet[WEBHOOK_SNIPPET_BYTES + 1]; /* start of the body */
    size_t body_bytes;                       /* body bytes seen */
    int capped;                              /* 1: we cut the body off at the cap */
} Response;

/* Copy n bytes of a response header value into dst[cap], trimmed, with control and
 * non-ASCII bytes as '?' (they end up in logs and the attempt table). */
static void trim_copy(char *dst, size_t cap, const char *src, size_t n)
{
    while (n > 0 && isspace((unsigned char)*src)) {
        src++;
        n--;
    }
    while (n > 0 && isspace((unsigned char)src[n - 1]))
        n--;
    if (n >= cap)
        n = cap - 1;
    for (size_t i = 0; i < n; i++)
        dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
    dst[n] = '\0';
}

static size_t on_header(char *data, size_t size, size_t nitems, void *userdata)
{
    Response *r = userdata;
    size_t n = size * nitems;
    static const char ra[] = "retry-after:";
    if (n >= 5 && !memcmp(data, "HTTP/", 5)) {
        /* A new response (e.g. after 100 Continue): forget the previous one's headers. */
        r->retry_after[0] = '\0';
        const char *sp = memchr(data, ' ', n); /* before the code */
        const char *sp2 = sp ? memchr(sp + 1, ' ', n - (sp + 1 - data)) : NULL; /* after */
        if (sp2)
            trim_copy(r->reason, sizeof r->reason, sp2 + 1, n - (sp2 + 1 - data));
        else
            r->reason[0] = '\0';
    } else if (n > sizeof ra - 1 && !strncasecmp(data, ra, sizeof ra - 1)) {
        trim_copy(r->retry_after, sizeof r->retry_after, data + sizeof ra - 1, n - (sizeof ra - 1));
    }
    return n;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    Response *r = userdata;
    size_t n = size * nmemb;
    for (size_t i = 0; i < n && r->body_bytes + i < WEBHOOK_SNIPPET_BYTES; i++) {
        unsigned char c = (unsigned char)data[i];
        r->snippet[r->body_bytes + i] = (c >= 0x20 && c < 0x7f) ? (char)c : ' ';
        r->snippet[r->body_bytes + i + 1] = '\0';
    }
    r->body_bytes += n;
    if (r->body_bytes > WEBHOOK_MAX_RESPONSE_BYTES) {
        r->capped = 1;
        return 0; /* cuts the transfer off: the status line is already in */
    }
    return n;
}

/* Retry-After (delta seconds or an HTTP date) as seconds from now, clamped to
 * [0, WEBHOOK_MAX_RETRY_AFTER_S]; -1 when absent or unparsable. */
static int64_t parse_retry_after(const char *v)
{
    size_t n = strlen(v);
    int64_t s;
    if (n == 0)
        return -1;
    if (strspn(v, "0123456789") == n) {
        if (n > 12) /* more than ~30,000 years: clamp without overflowing */
            return WEBHOOK_MAX_RETRY_AFTER_S;
        util_parse_i64(v, &s);
    } else {
        time_t t = curl_getdate(v, NULL);
        if (t == (time_t)-1)
            return -1;
        s = (int64_t)t - (int64_t)time(NULL);
    }
    if (s < 0)
        return 0;
    return s > WEBHOOK_MAX_RETRY_AFTER_S ? WEBHOOK_MAX_RETRY_AFTER_S : s;
}

/* 1 if the event id is safe in a header: 1..256 visible ASCII chars. */
static int event_id_ok(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > WEBHOOK_MAX_ID_LEN)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)id[i] <= 0x20 || (unsigned char)id[i] >= 0x7f)
            return 0;
    return 1;
}

static void result_set(WebhookResult *res, WebhookOutcome outcome, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void result_set(WebhookResult *res, WebhookOutcome outcome, const char *fmt, ...)
{
    res->outcome = outcome;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->error, sizeof res->error, fmt, ap);
    va_end(ap);
}

/* Decide the outcome from a complete status line. */
static void classify_status(WebhookResult *res, const char *where, const Response *r,
                            const char *location)
{
    int st = res->http_status;
    char snippet[sizeof r->snippet];
    trim_copy(snippet, sizeof snippet, r->snippet, strlen(r->snippet));
    const char *sep = snippet[0] ? ": " : "";
    const char *sp = r->reason[0] ? " " : ""; /* HTTP/2 has no reason phrase */
    if (st >= 200 && st < 300) {
        res->outcome = WEBHOOK_DELIVERED;
        res->error[0] = '\0';
    } else if (st == 410) {
        result_set(res, WEBHOOK_GONE, "%s: HTTP 410%s%s: the receiver says the endpoint is gone",
                   where, sp, r->reason);
    } else if (st >= 300 && st < 400) {
        result_set(res, WEBHOOK_RETRY, "%s: HTTP %d%s%s: redirects are not followed (Location: %s)",
                   where, st, sp, r->reason, location ? location : "none");
    } else {
        if (st == 429 || st == 502 || st == 503 || st == 504)
            res->retry_after_s = parse_retry_after(r->retry_after);
        result_set(res, WEBHOOK_RETRY, "%s: HTTP %d%s%s%s%s", where, st, sp, r->reason, sep,
                   snippet);
    }
}

/* The headers of one attempt; the caller frees the list with curl_slist_free_all. */
static struct curl_slist *request_headers(const WebhookRequest *req, const char *signature)
{
    char line[WEBHOOK_MAX_ID_LEN + 64];
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "content-type: application/json");
    snprintf(line, sizeof line, "webhook-id: %s", req->event_id);
    h = curl_slist_append(h, line);
    snprintf(line, sizeof line, "webhook-timestamp: %" PRId64, req->timestamp_s);
    h = curl_slist_append(h, line);
    if (signature) {
        snprintf(line, sizeof line, "webhook-signature: %s", signature);
        h = curl_slist_append(h, line);
    }
    h = curl_slist_append(h, "Expect:"); /* no 100-continue round trip for large bodies */
    return h;
}

/* Set the easy handle's options for one POST of req. 0, or a CURLcode. */
static CURLcode setup_easy(CURL *c, CURLU *url, const WebhookRequest *req,
                           const struct curl_slist *headers, int connect_ms, int total_ms,
                           Response *resp, char *errbuf)
{
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(c, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_ERRORBUFFER, errbuf);
    SET(CURLOPT_CURLU, url);
#if LIBCURL_VERSION_NUM >= 0x075500
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
    SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    SET(CURLOPT_POST, 1L);
    SET(CURLOPT_POSTFIELDS, req->body ? req->body : "");
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    SET(CURLOPT_HTTPHEADER, headers);
    SET(CURLOPT_USERAGENT, "vlq/" VLQ_VERSION);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)connect_ms);
    SET(CURLOPT_TIMEOUT_MS, (long)total_ms);
    long low_s = (total_ms + 999) / 1000;
    SET(CURLOPT_LOW_SPEED_LIMIT, (long)WEBHOOK_LOW_SPEED_BYTES);
    SET(CURLOPT_LOW_SPEED_TIME, low_s < WEBHOOK_LOW_SPEED_S ? low_s : (long)WEBHOOK_LOW_SPEED_S);
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, resp);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, resp);
#undef SET
    return rc;
}

/* Translate a failed transfer (no usable status line) into res. */
static void classify_transfer_error(WebhookResult *res, const char *where, CURL *c, CURLcode rc,
                                    const char *errbuf)
{
    const char *reason = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    long os_errno = 0;
    curl_easy_getinfo(c, CURLINFO_OS_ERRNO, &os_errno);
    const char *os = os_errno ? strerror((int)os_errno) : NULL;
    /* Name the system's reason ("Connection refused") when curl's text does not. */
    if (os && !strstr(reason, os))
        result_set(res, WEBHOOK_RETRY, "%s: %s (%s)", where, reason, os);
    else
        result_set(res, WEBHOOK_RETRY, "%s: %s", where, reason);
    if (rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL)
        res->outcome = WEBHOOK_REFUSED;
    res->no_answer = res->outcome == WEBHOOK_RETRY;
}

/* POST one event and fill *res (see webhook.h). Never blocks longer than the timeouts. */
void webhook_deliver(const WebhookRequest *req, const WebhookOptions *opt, WebhookResult *res)
{
    double t0 = util_mono_s();
    *res = (WebhookResult){.outcome = WEBHOOK_REFUSED, .http_status = 0, .retry_after_s = -1};
    int connect_ms = opt && opt->connect_timeout_ms > 0 ? opt->connect_timeout_ms
                                                        : WEBHOOK_DEFAULT_CONNECT_TIMEOUT_MS;
    int total_ms = opt && opt->timeout_ms > 0 ? opt->timeout_ms : WEBHOOK_DEFAULT_TIMEOUT_MS;
    char *signature = NULL, *where = NULL;
    CURLU *url = NULL;
    CURL *c = NULL;
    struct curl_slist *headers = NULL;
    char errbuf[CURL_ERROR_SIZE] = "";
    Response resp = {0};

    if (webhook_global_init(res->error) != 0) {
        res->outcome = WEBHOOK_RETRY;
        goto out;
    }
    url = url_parse(req->url, opt ? opt->allow_hosts : NULL, res->error);
    if (!url)
        goto out; /* refused */
    where = url_display(url);
    if (!event_id_ok(req->event_id)) {
        result_set(res, WEBHOOK_REFUSED, "%s: webhook-id must be 1 to %d visible ASCII chars",
                   where, WEBHOOK_MAX_ID_LEN);
        goto out;
    }
    if (!req->body && req->body_len) {
        result_set(res, WEBHOOK_REFUSED, "%s: no body bytes for a %zu-byte body", where,
                   req->body_len);
        goto out;
    }
    if (req->secret && *req->secret) {
        signature = webhook_sign(req->secret, req->event_id, req->timestamp_s, req->body,
                                 req->body_len, res->error);
        if (!signature)
            goto out; /* refused, with the secret's reason */
    }
    c = curl_easy_init();
    headers = request_headers(req, signature);
    if (!c || !headers) {
        result_set(res, WEBHOOK_RETRY, "%s: libcurl: out of memory", where);
        goto out;
    }
    CURLcode rc = setup_easy(c, url, req, headers, connect_ms, total_ms, &resp, errbuf);
    if (rc != CURLE_OK) {
        result_set(res, WEBHOOK_REFUSED, "%s: libcurl: %s", where, curl_easy_strerror(rc));
        goto out;
    }
    rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    res->http_status = (int)status;
    if (rc == CURLE_OK || (rc == CURLE_WRITE_ERROR && resp.capped && status > 0)) {
        char *location = NULL;
        curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &location);
        classify_status(res, where, &resp, location);
    } else {
        classify_transfer_error(res, where, c, rc, errbuf);
    }
out:
    res->duration_s = util_mono_s() - t0;
    log_debug("webhook %s id=%s outcome=%d status=%d duration_s=%.3f%s%s",
              where ? where : "(invalid URL)", req->event_id ? req->event_id : "",
              (int)res->outcome, res->http_status, res->duration_s, res->error[0] ? " error=" : "",
              res->error);
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    curl_url_cleanup(url);
    free(where);
    free(signature);
}

/* The outcome's lowercase name ("delivered", "retry", "gone", "refused"). Cannot fail. */
const char *webhook_outcome_name(WebhookOutcome outcome)
{
    switch (outcome) {
    case WEBHOOK_DELIVERED:
        return "delivered";
    case WEBHOOK_RETRY:
        return "retry";
    case WEBHOOK_GONE:
        return "gone";
    case WEBHOOK_REFUSED:
        return "refused";
    }
    return "unknown";
}

/* ---- retry schedule ---- */

/* splitmix64: any state, zero included, gives a full-period sequence. */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Delay in ms before retry `attempt` (see webhook.h); -1 when the schedule is spent. */
int64_t webhook_retry_delay_ms(int attempt, const int64_t *schedule_s, int n, uint64_t *rng)
{
    if (attempt < 1)
        attempt = 1;
    if (!schedule_s || attempt > n)
        return -1;
    int64_t base_ms = schedule_s[attempt - 1] * 1000;
    if (base_ms <= 0)
        return 0;
    int64_t spread = base_ms / 10; /* the delay lies in [base - spread, base + spread] */
    if (!rng || spread == 0)
        return base_ms;
    uint64_t r = splitmix64(rng) % (uint64_t)(2 * spread + 1);
    return base_ms - spread + (int64_t)r;
}

/* ---- ids and secrets ---- */

/* Event id "msg_" + 24 base32 chars from 15 random bytes. 0 or VLQ_EIO. */
int webhook_new_event_id(char out[WEBHOOK_EVENT_ID_SIZE], char *err)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
    unsigned char rnd[15];
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        out[0] = '\0';
        return err_set(err, VLQ_EIO, "webhook id: the system random generator failed");
    }
    memcpy(out, "msg_", 4);
    /* 15 bytes = 120 bits = 24 groups of 5 bits, taken MSB first. */
    for (int i = 0; i < 24; i++) {
        int bit = i * 5, byte = bit / 8, shift = bit % 8;
        unsigned v = (unsigned)rnd[byte] << 8 | (byte + 1 < 15 ? rnd[byte + 1] : 0);
        out[4 + i] = alphabet[(v >> (11 - shift)) & 31];
    }
    out[28] = '\0';
    return 0;
}

/* Secret "whsec_" + base64 of 32 random bytes. 0 or VLQ_EIO. */
int webhook_new_secret(char out[WEBHOOK_SECRET_SIZE], char *err)
{
    unsigned char key[32];
    if (RAND_bytes(key, sizeof key) != 1) {
        out[0] = '\0';
        return err_set(err, VLQ_EIO, "webhook secret: the system random generator failed");
    }
    char *b64 = b64_encode(key, sizeof key);
    OPENSSL_cleanse(key, sizeof key);
    snprintf(out, WEBHOOK_SECRET_SIZE, "%s%s", WHSEC_PREFIX, b64);
    free(b64);
    return 0;
}
