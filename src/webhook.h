/* webhook: Standard Webhooks signing and one HTTP delivery attempt, plus the retry
 * schedule. It never touches the database: the queue keeps the outbox rows and the
 * attempt log; the caller (worker, `vlq webhooks send`) asks this module to sign and
 * POST one event and to say when to try again.
 *
 * Signing: webhook-signature = "v1," + base64(HMAC-SHA256(key, id "." ts "." body)),
 * key = base64-decoded part after "whsec_" of the secret. The bytes signed are the
 * bytes sent. TLS verification is on, redirects are not followed, connect and total
 * timeouts apply, and an optional host allowlist refuses other hosts. */
#ifndef VLQ_WEBHOOK_H
#define VLQ_WEBHOOK_H

#include "err.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *url;       /* http:// or https:// */
    const char *event_id;  /* webhook-id, the same on every retry of an event */
    int64_t timestamp_s;   /* webhook-timestamp of this attempt (seconds since epoch) */
    const char *body;      /* the JSON payload, exactly the bytes signed and sent */
    size_t body_len;
    const char *secret;    /* "whsec_<base64>", or NULL to send unsigned */
} WebhookRequest;

typedef struct {
    int connect_timeout_ms; /* default 5000 */
    int timeout_ms;         /* total, default 15000 */
    const char *allow_hosts; /* comma-separated host names, NULL or "" allows any */
} WebhookOptions;

typedef enum {
    WEBHOOK_DELIVERED = 0, /* 2xx */
    WEBHOOK_RETRY = 1,     /* anything else that may succeed later (5xx, timeout, refused, 3xx) */
    WEBHOOK_GONE = 2,      /* 410: stop and disable that endpoint */
    WEBHOOK_REFUSED = 3,   /* invalid URL, host not allowed, bad secret: never retried */
} WebhookOutcome;

typedef struct {
    WebhookOutcome outcome;
    int http_status;         /* 0 when no response came */
    int64_t retry_after_s;   /* Retry-After of a 429/502/503/504, else -1 */
    double duration_s;
    char error[VLQ_ERRLEN];  /* empty when delivered */
} WebhookResult;

/* Check that url is http(s) with a host, and the host is allowed. 0 or VLQ_EINPUT. */
int webhook_check_url(const char *url, const char *allow_hosts, char *err);
/* Check a "whsec_<base64>" secret. 0 or VLQ_EINPUT. */
int webhook_check_secret(const char *secret, char *err);
/* The webhook-signature header value ("v1,<base64>") into a new string (caller frees),
 * or NULL with err set when the secret is malformed. */
char *webhook_sign(const char *secret, const char *event_id, int64_t timestamp_s,
                   const char *body, size_t body_len, char *err);
/* POST one event; fills *res. Never blocks longer than opt's timeouts. */
void webhook_deliver(const WebhookRequest *req, const WebhookOptions *opt, WebhookResult *res);
/* Delay before retry number `attempt` (1 = the first retry after the first failure),
 * from schedule_s[0..n-1] with +-10% jitter from *rng; -1 when the schedule is spent. */
int64_t webhook_retry_delay_ms(int attempt, const int64_t *schedule_s, int n, uint64_t *rng);
/* The Standard Webhooks schedule: 0, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h. */
extern const int64_t WEBHOOK_DEFAULT_SCHEDULE_S[10];
#define WEBHOOK_DEFAULT_SCHEDULE_N 10

#endif
