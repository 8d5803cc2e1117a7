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

#define WEBHOOK_DEFAULT_CONNECT_TIMEOUT_MS 5000
#define WEBHOOK_DEFAULT_TIMEOUT_MS 15000
#define WEBHOOK_MAX_RETRY_AFTER_S (7 * 86400) /* a longer Retry-After is clamped to this */

typedef struct {
    int connect_timeout_ms; /* <= 0: WEBHOOK_DEFAULT_CONNECT_TIMEOUT_MS */
    int timeout_ms;         /* total; <= 0: WEBHOOK_DEFAULT_TIMEOUT_MS */
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
    int64_t retry_after_s;   /* Retry-After of a 429/502/503/504 (seconds or HTTP date,
                              * 0..WEBHOOK_MAX_RETRY_AFTER_S), else -1 */
    double duration_s;
    int no_answer;           /* 1: no complete answer came (connect failure, timeout, an
                              * answer cut by the time limits, even after its status line) */
    char error[VLQ_ERRLEN];  /* empty when delivered */
} WebhookResult;

/* Initialise libcurl once per process (pthread_once); webhook_deliver calls it itself,
 * so calling it is optional (e.g. from main before threads start). 0 or VLQ_ENET. */
int webhook_global_init(char *err);

/* Check that url is http(s) with a host, and the host is allowed. 0 or VLQ_EINPUT. */
int webhook_check_url(const char *url, const char *allow_hosts, char *err);
/* The webhook-signature header value ("v1,<base64>") into a new string (caller frees),
 * or NULL with err set when the secret is malformed. */
char *webhook_sign(const char *secret, const char *event_id, int64_t timestamp_s,
                   const char *body, size_t body_len, char *err);
/* POST one event; fills *res. Never blocks longer than opt's timeouts (an answer that
 * makes less than 16 bytes/s of progress for 10 s is cut sooner). opt may be NULL
 * (defaults); a NULL or "" secret sends the event unsigned. The response body is read
 * up to 64 KiB and discarded (its start goes into res->error when not delivered). */
void webhook_deliver(const WebhookRequest *req, const WebhookOptions *opt, WebhookResult *res);
/* The outcome's lowercase name: "delivered", "retry", "gone", "refused" (for the
 * attempt log); "unknown" for any other value. Cannot fail. */
const char *webhook_outcome_name(WebhookOutcome outcome);

/* Delay before retry number `attempt` (1 = the first retry after the first failure),
 * from schedule_s[0..n-1] with +-10% jitter from *rng (any caller-held seed, e.g. the
 * time or the event id's hash; NULL: no jitter); -1 when the schedule is spent.
 * attempt < 1 is taken as 1. Cannot fail. */
int64_t webhook_retry_delay_ms(int attempt, const int64_t *schedule_s, int n, uint64_t *rng);
/* The Standard Webhooks schedule: 0, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h. */
extern const int64_t WEBHOOK_DEFAULT_SCHEDULE_S[10];
#define WEBHOOK_DEFAULT_SCHEDULE_N 10

/* ---- identifiers and secrets for the outbox (the queue and `vlq webhooks` use them) ---- */
/* "msg_" + 24 lowercase base32 chars (120 random bits) + NUL */
#define WEBHOOK_EVENT_ID_SIZE 29
/* "whsec_" + base64 of 32 random bytes (44 chars) + NUL */
#define WEBHOOK_SECRET_SIZE 51
/* A new random event id (webhook-id) into out. 0, or VLQ_EIO when the system RNG fails. */
int webhook_new_event_id(char out[WEBHOOK_EVENT_ID_SIZE], char *err);
/* A new random secret into out. 0, or VLQ_EIO when the system RNG fails. */
int webhook_new_secret(char out[WEBHOOK_SECRET_SIZE], char *err);

#endif
