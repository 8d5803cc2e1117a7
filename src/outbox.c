/* outbox: delivering the queue's webhook events (rules in outbox.h).
 *
 * Design: the queue decides nothing about delivery; this file turns one webhook.c outcome
 * into the event's next state and time, so the rules live in one place (outbox_decide).
 * The attempt number of an event is its recorded attempts + 1, so retries survive a
 * restart: the schedule continues where the database says it stopped.
 * The delivery thread owns its Queue connection and its settings copy; the only state
 * shared with other threads is the mutex/cond pair and the stop and poke flags. */
#include "outbox.h"

#include "log.h"
#include "util.h"
#include "webhook.h"
#include "whsec.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- settings ---- */

/* One schedule entry: digits with an optional s/m/h/d unit. 0 or -1. */
static int outbox_parse_delay(const char *p, size_t len, int64_t *out)
{
    while (len && isspace((unsigned char)*p))
        p++, len--;
    while (len && isspace((unsigned char)p[len - 1]))
        len--;
    if (len == 0 || len > 20)
        return -1;
    int64_t mult = 1;
    char unit = p[len - 1];
    if (unit == 's' || unit == 'm' || unit == 'h' || unit == 'd') {
        mult = unit == 's' ? 1 : unit == 'm' ? 60 : unit == 'h' ? 3600 : 86400;
        len--;
    }
    if (len == 0)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)p[i]))
            return -1;
        v = v * 10 + (p[i] - '0');
        if (v > 30LL * 86400)
            return -1;
    }
    *out = v * mult;
    return 0;
}

/* Parse "0,5,5m,2h" (see outbox.h). 0 or VLQ_EINPUT. */
int outbox_parse_schedule(const char *text, int64_t *s, int max, int *n, char *err)
{
    *n = 0;
    if (!text || !*text) {
        for (int i = 0; i < WEBHOOK_DEFAULT_SCHEDULE_N && i < max; i++)
            s[(*n)++] = WEBHOOK_DEFAULT_SCHEDULE_S[i];
        return 0;
    }
    const char *p = text;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (*n == max)
            return err_set(err, VLQ_EINPUT, "webhooks.schedule: more than %d entries", max);
        if (outbox_parse_delay(p, len, &s[*n]) != 0)
            return err_set(err, VLQ_EINPUT,
                           "webhooks.schedule: '%.*s' is not a delay (seconds, or N with s/m/h/d, "
                           "at most 30 days)", (int)len, p);
        (*n)++;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

/* Read the [webhooks] keys (see outbox.h). */
int outbox_settings_init(OutboxSettings *s, const Cfg *cfg, char *err)
{
    memset(s, 0, sizeof *s);
    const char *secret = cfg_str(cfg, "webhooks.secret");
    const char *hosts = cfg_str(cfg, "webhooks.allow_hosts");
    if (strlen(secret) >= sizeof s->secret)
        return err_set(err, VLQ_EINPUT, "webhooks.secret: too long");
    if (strlen(hosts) >= sizeof s->allow_hosts)
        return err_set(err, VLQ_EINPUT, "webhooks.allow_hosts: too long");
    if (*secret && whsec_check(secret, err) != 0) {
        err_prefix(err, "webhooks.secret");
        return VLQ_EINPUT;
    }
    strcpy(s->secret, secret);
    strcpy(s->allow_hosts, hosts);
    s->timeout_ms = (int)cfg_int(cfg, "webhooks.timeout_ms");
    s->connect_timeout_ms = (int)cfg_int(cfg, "webhooks.connect_timeout_ms");
    s->max_attempts = (int)cfg_int(cfg, "webhooks.max_attempts");
    return outbox_parse_schedule(cfg_str(cfg, "webhooks.schedule"), s->schedule_s,
                                 OUTBOX_MAX_SCHEDULE, &s->n_schedule, err);
}

/* ---- one event ---- */

typedef struct {
    EventState state;
    int64_t next_ms;
    int gone;
} OutboxNext;

/* The event's next state after attempt number `attempt` (1-based) ended with r at now_ms. */
static OutboxNext outbox_decide(const OutboxSettings *s, int attempt, const WebhookResult *r,
                                int64_t now_ms, uint64_t *rng)
{
    OutboxNext next = {.state = EVENT_FAILED, .next_ms = 0, .gone = 0};
    switch (r->outcome) {
    case WEBHOOK_DELIVERED:
        next.state = EVENT_DELIVERED;
        return next;
    case WEBHOOK_GONE:
        next.gone = 1;
        return next;
    case WEBHOOK_REFUSED:
        return next;
    case WEBHOOK_RETRY:
        break;
    }
    int limit = s->n_schedule;
    if (s->max_attempts > 0 && s->max_attempts < limit)
        limit = s->max_attempts;
    if (attempt >= limit)
        return next; /* the schedule is spent */
    /* schedule_s[attempt] is the delay before attempt + 1 */
    int64_t delay_ms = webhook_retry_delay_ms(attempt + 1, s->schedule_s, s->n_schedule, rng);
    if (delay_ms < 0)
        return next;
    if (r->retry_after_s >= 0 && r->retry_after_s * 1000 > delay_ms)
        delay_ms = r->retry_after_s * 1000;
    next.state = EVENT_PENDING;
    next.next_ms = now_ms + delay_ms;
    return next;
}

static const char *outbox_event_state_name(EventState st)
{
    return st == EVENT_DELIVERED ? "delivered" : st == EVENT_PENDING ? "retry" : "failed";
}

/* POST one event and record the attempt (*gone: it got 410). 0 or the queue's error. */
static int outbox_deliver_one(Queue *q, const OutboxSettings *s, const OutboxEvent *e,
                              OutboxStats *st, uint64_t *rng, int *gone, char *err)
{
    const char *secret = e->secret && *e->secret ? e->secret : s->secret;
    int64_t now_ms = util_now_ms();
    WebhookRequest req = {
        .url = e->url,
        .event_id = e->event_id,
        .timestamp_s = now_ms / 1000,
        .body = e->body,
        .body_len = strlen(e->body),
        .secret = secret,
    };
    WebhookOptions opt = {
        .connect_timeout_ms = s->connect_timeout_ms,
        .timeout_ms = s->timeout_ms,
        .allow_hosts = s->allow_hosts,
    };
    WebhookResult r;
    webhook_deliver(&req, &opt, &r);
    int attempt = e->attempts + 1;
    OutboxNext next = outbox_decide(s, attempt, &r, util_now_ms(), rng);
    char error[VLQ_ERRLEN];
    snprintf(error, sizeof error, "%s", r.error);
    if (r.outcome == WEBHOOK_GONE)
        snprintf(error, sizeof error, "410 Gone: endpoint disabled");
    else if (next.state == EVENT_FAILED && r.outcome == WEBHOOK_RETRY)
        snprintf(error, sizeof error, "%s (retry schedule spent after %d attempts)", r.error,
                 attempt);
    log_info("webhook event=%s job=%lld type=%s attempt=%d status=%d outcome=%s next=%s "
             "duration_ms=%.0f error=\"%s\"",
             e->event_id, (long long)e->job_id, e->type, attempt, r.http_status,
             webhook_outcome_name(r.outcome), outbox_event_state_name(next.state),
             r.duration_s * 1000.0, error);
    int rc = queue_event_attempt(q, e, next.state, next.next_ms, r.http_status,
                                 next.state == EVENT_DELIVERED ? NULL : error, r.duration_s,
                                 next.gone, err);
    if (rc != 0)
        return rc;
    *gone = next.gone;
    if (next.state == EVENT_DELIVERED)
        st->delivered++;
    else if (next.state == EVENT_PENDING)
        st->retrying++;
    else
        st->failed++;
    return 0;
}

/* 1 if an event before i in this batch got 410 from the same URL. */
static int outbox_url_gone(OutboxEvent *const *ev, const int *gone, int i)
{
    for (int j = 0; j < i; j++)
        if (gone[j] && !strcmp(ev[j]->url, ev[i]->url))
            return 1;
    return 0;
}

/* Events whose lease could not be given back (the connection was lost), kept by the
 * delivery thread to give back once the queue answers again: until then they would hold
 * their endpoint for the whole lease. */
typedef struct {
    OutboxEvent **ev;
    int n;
} OutboxHeld;

/* Give back what h holds; 0 when it holds nothing any more, else the error. */
static int outbox_release_held(Queue *q, OutboxHeld *h, char *err)
{
    int k = 0, rc = 0;
    for (int i = 0; i < h->n; i++) {
        if (rc == 0 && (rc = queue_event_release(q, h->ev[i], err)) == 0)
            queue_event_free(h->ev[i]);
        else
            h->ev[k++] = h->ev[i];
    }
    h->n = k;
    return rc;
}

/* Deliver due events until none is due, max is reached, or *stop is set. held (may be
 * NULL) keeps the leases this call could not give back, for the next call. */
static int outbox_run(Queue *q, const OutboxSettings *s, int max, OutboxStats *stats,
                      const atomic_int *stop, OutboxHeld *held, char *err)
{
    OutboxStats local = {0};
    OutboxStats *st = stats ? stats : &local;
    memset(st, 0, sizeof *st);
    if (held && outbox_release_held(q, held, err) != 0)
        return VLQ_EIO;
    if (max <= 0)
        max = 100;
    uint64_t rng = (uint64_t)util_now_ms() ^ ((uint64_t)getpid() << 32);
    OutboxEvent **ev = NULL;
    int n = 0;
    /* the batch is leased to this deliverer for as long as sending all of it may take */
    int64_t lease_ms = (int64_t)max * (s->timeout_ms + s->connect_timeout_ms) + 30000;
    int rc = queue_events_due(q, max, lease_ms, &ev, &n, err);
    if (rc != 0)
        return rc;
    int *gone = xcalloc((size_t)n + 1, sizeof *gone);
    int i = 0;
    for (; i < n && rc == 0; i++) {
        if (stop && atomic_load(stop))
            break;
        st->due++;
        if (outbox_url_gone(ev, gone, i)) {
            /* an earlier event of this batch got 410: the endpoint is disabled now */
            log_info("webhook event=%s job=%lld type=%s outcome=gone next=failed "
                     "error=\"endpoint disabled (410), not sent\"",
                     ev[i]->event_id, (long long)ev[i]->job_id, ev[i]->type);
            rc = queue_event_attempt(q, ev[i], EVENT_FAILED, 0, 0,
                                     "endpoint disabled (410), not sent", 0.0, 1, err);
            st->failed++;
            continue;
        }
        rc = outbox_deliver_one(q, s, ev[i], st, &rng, &gone[i], err);
    }
    /* the events not tried (stopping, or an error) go back to the outbox now; after an
     * error so does the one whose attempt was not recorded (it may be sent again: at
     * least once), and what cannot be given back now is held for the next call */
    if (rc != 0 && i > 0)
        i--;
    for (int k = i; k < n; k++) {
        if (queue_event_release(q, ev[k], NULL) != 0 && held) {
            held->ev = xrealloc(held->ev, (size_t)(held->n + 1) * sizeof *held->ev);
            held->ev[held->n++] = ev[k];
            ev[k] = NULL;
        }
    }
    free(gone);
    for (i = 0; i < n; i++)
        queue_event_free(ev[i]);
    free(ev);
    return rc;
}

/* Deliver every due event once with settings already read (see outbox.h). */
int outbox_send_due_with(Queue *q, const OutboxSettings *s, int max, OutboxStats *stats,
                         char *err)
{
    return outbox_run(q, s, max, stats, NULL, NULL, err);
}

/* Deliver every due event once (see outbox.h). */
int outbox_send_due(Queue *q, const Cfg *cfg, int max, OutboxStats *stats, char *err)
{
    OutboxSettings s;
    int rc = outbox_settings_init(&s, cfg, err);
    if (rc != 0)
        return rc;
    return outbox_run(q, &s, max, stats, NULL, NULL, err);
}

/* ---- the delivery thread ---- */

struct OutboxThread {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    atomic_int stop;
    int poked;           /* under mu */
    Queue *q;            /* the thread's own connection */
    OutboxSettings s;
    OutboxHeld held;     /* leases to give back when the queue answers again */
};

static void *outbox_thread_main(void *arg)
{
    OutboxThread *t = arg;
    while (!atomic_load(&t->stop)) {
        char err[VLQ_ERRLEN];
        OutboxStats st;
        if (outbox_run(t->q, &t->s, 100, &st, &t->stop, &t->held, err) != 0)
            log_warn("webhooks: %s", err);
        pthread_mutex_lock(&t->mu);
        if (!t->poked && !atomic_load(&t->stop)) {
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_sec += OUTBOX_POLL_MS / 1000;
            until.tv_nsec += (long)(OUTBOX_POLL_MS % 1000) * 1000000L;
            if (until.tv_nsec >= 1000000000L)
                until.tv_sec++, until.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&t->cond, &t->mu, &until);
        }
        t->poked = 0;
        pthread_mutex_unlock(&t->mu);
    }
    return NULL;
}

/* Start the delivery thread (see outbox.h). */
int outbox_start(const char *db_path, const Cfg *cfg, OutboxThread **out, char *err)
{
    *out = NULL;
    OutboxThread *t = xcalloc(1, sizeof *t);
    int rc = outbox_settings_init(&t->s, cfg, err);
    if (rc == 0)
        rc = webhook_global_init(err);
    if (rc == 0) {
        QueueOptions qo = {0};
        rc = queue_open(db_path, &qo, 0, &t->q, err);
    }
    if (rc != 0) {
        free(t);
        return rc;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&t->mu, NULL);
    atomic_init(&t->stop, 0);
    int e = pthread_create(&t->thread, NULL, outbox_thread_main, t);
    if (e != 0) {
        queue_close(t->q);
        pthread_cond_destroy(&t->cond);
        pthread_mutex_destroy(&t->mu);
        free(t);
        return err_set(err, VLQ_EIO, "webhooks: cannot start the delivery thread: %s",
                       strerror(e));
    }
    *out = t;
    return 0;
}

/* Wake the delivery thread (see outbox.h). */
void outbox_poke(OutboxThread *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    t->poked = 1;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->mu);
}

/* Stop and free the delivery thread (see outbox.h). */
void outbox_stop(OutboxThread *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    atomic_store(&t->stop, 1);
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->thread, NULL);
    char err[VLQ_ERRLEN];
    outbox_release_held(t->q, &t->held, err);
    for (int i = 0; i < t->held.n; i++) /* their leases expire on their own */
        queue_event_free(t->held.ev[i]);
    free(t->held.ev);
    queue_close(t->q);
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->mu);
    free(t);
}
