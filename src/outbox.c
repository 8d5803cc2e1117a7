/* outbox: delivering the queue's webhook events (rules in outbox.h).
 *
 * Design: the queue decides nothing about delivery; this file turns one webhook.c outcome
 * into the event's next state and time, so the rules live in one place (outbox_decide).
 * The attempt number of an event is its recorded attempts + 1, so retries survive a
 * restart: the schedule continues where the database says it stopped.
 * Concurrency (a pool, OutboxPool): the events of one fetch are grouped by URL into lanes;
 * a lane is sent in order by one sender thread, lanes of different URLs in parallel (at most
 * max_parallel senders). The queue connection is shared by the fetch and the senders under
 * one lock (qmu), held only around queue calls, never across an HTTP request. In the
 * delivery thread a URL with a lane queued or in flight is "busy": a later fetch skips its
 * events (they are still pending in the database), so an endpoint never has two events in
 * flight, and a sender that finishes a lane pokes the thread to fetch again at once.
 * The delivery thread owns its Queue connection, its settings copy and its pool; the only
 * state shared with other threads (the worker) is the mutex/cond pair and the stop and poke
 * flags. */
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
    s->max_parallel = (int)cfg_int(cfg, "webhooks.max_parallel");
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

/* ---- the pool of senders ---- */

/* One endpoint's events of one fetch, sent in this order by one sender. */
typedef struct OutboxLane {
    struct OutboxLane *next; /* the pool's list of lanes waiting for a sender */
    OutboxEvent **ev;        /* owned, with the events */
    int n;
    int64_t lease_end_ms;    /* the fetch's lease runs out then (util_now_ms clock) */
} OutboxLane;

typedef struct OutboxThread OutboxThread;

typedef struct {
    Queue *q;                 /* used by the fetch and the senders, one at a time, under qmu */
    pthread_mutex_t qmu;      /* lock order: qmu before mu; senders never hold both */
    const OutboxSettings *s;
    const atomic_int *stop;   /* set: senders stop between events; NULL: never */
    OutboxThread *owner;      /* poked when a lane is done (the delivery thread), or NULL */
    int track_busy;           /* 1: skip the events of URLs with a lane queued or in flight */
    pthread_mutex_t mu;       /* guards everything below */
    pthread_cond_t work;      /* a lane was queued, or quit was set */
    OutboxLane *head, *tail;  /* lanes waiting for a sender */
    char **busy;              /* URLs with a lane queued or in flight (when track_busy) */
    int n_busy, cap_busy;
    int quit;                 /* 1: senders exit once the list is empty (drain) or at once */
    int drain;                /* 1: quit means "when the list is empty" */
    OutboxStats st;           /* summed over the lanes sent */
    int rc;                   /* the first database error of a sender, 0 none */
    char err[VLQ_ERRLEN];
    uint64_t seed;            /* jitter seed; each sender derives its own */
    pthread_t *threads;
    int n_threads;
} OutboxPool;

static void outbox_poke_owner(OutboxThread *t);

/* A fetch's lease covers this many sends at the full timeout (see outbox_dispatch). */
#define OUTBOX_LEASE_SENDS 16
static void outbox_lane_release(OutboxPool *p, const struct OutboxLane *l, int from);

static void outbox_lane_free(OutboxLane *l)
{
    if (!l)
        return;
    for (int i = 0; i < l->n; i++)
        queue_event_free(l->ev[i]);
    free(l->ev);
    free(l);
}

static void outbox_pool_init(OutboxPool *p, Queue *q, const OutboxSettings *s,
                             const atomic_int *stop, OutboxThread *owner, int track_busy)
{
    memset(p, 0, sizeof *p);
    p->q = q;
    p->s = s;
    p->stop = stop;
    p->owner = owner;
    p->track_busy = track_busy;
    pthread_mutex_init(&p->qmu, NULL);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    p->seed = (uint64_t)util_now_ms() ^ ((uint64_t)getpid() << 32);
}

/* Free what init and the lanes left; the senders are joined already. */
static void outbox_pool_clear(OutboxPool *p)
{
    while (p->head) {
        OutboxLane *l = p->head;
        p->head = l->next;
        outbox_lane_release(p, l, 0);
        outbox_lane_free(l);
    }
    for (int i = 0; i < p->n_busy; i++)
        free(p->busy[i]);
    free(p->busy);
    free(p->threads);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->qmu);
}

/* Under mu: the index of url in the busy list, or -1. */
static int outbox_busy_find(const OutboxPool *p, const char *url)
{
    for (int i = 0; i < p->n_busy; i++)
        if (!strcmp(p->busy[i], url))
            return i;
    return -1;
}

/* POST one event and record the attempt under qmu. *gone: it got 410; *no_answer: no
 * HTTP answer came (timeout, refused). 0 or the queue's error. */
static int outbox_deliver_one(OutboxPool *p, const OutboxEvent *e, OutboxStats *st,
                              uint64_t *rng, int *gone, int *no_answer, char *err)
{
    const OutboxSettings *s = p->s;
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
    pthread_mutex_lock(&p->qmu);
    int rc = queue_event_attempt(p->q, e, next.state, next.next_ms, r.http_status,
                                 next.state == EVENT_DELIVERED ? NULL : error, r.duration_s,
                                 next.gone, err);
    pthread_mutex_unlock(&p->qmu);
    if (rc != 0)
        return rc;
    *gone = next.gone;
    *no_answer = r.no_answer;
    if (next.state == EVENT_DELIVERED)
        st->delivered++;
    else if (next.state == EVENT_PENDING)
        st->retrying++;
    else
        st->failed++;
    return 0;
}

/* Give back the leases of a lane's events from index from on (not tried: stopping, an
 * endpoint that did not answer, an error), so that any deliverer may send them now. */
static void outbox_lane_release(OutboxPool *p, const OutboxLane *l, int from)
{
    if (from >= l->n)
        return;
    pthread_mutex_lock(&p->qmu);
    for (int i = from; i < l->n; i++)
        queue_event_release(p->q, l->ev[i], NULL);
    pthread_mutex_unlock(&p->qmu);
}

/* Send one lane's events in order (see outbox.h for when it stops early), add its counts
 * to the pool's, free it, and mark its URL idle. */
static void outbox_lane_send(OutboxPool *p, OutboxLane *l, uint64_t *rng)
{
    OutboxStats st = {0};
    char err[VLQ_ERRLEN] = "";
    int rc = 0, gone = 0, i = 0;
    for (; i < l->n && rc == 0; i++) {
        if (p->stop && atomic_load(p->stop))
            break;
        const OutboxEvent *e = l->ev[i];
        if (util_now_ms() + p->s->timeout_ms + p->s->connect_timeout_ms + 5000 > l->lease_end_ms)
            break; /* this send could outlast the lease: the rest go back, next round */
        st.due++;
        if (gone) {
            /* an earlier event of this endpoint got 410: the endpoint is disabled now */
            log_info("webhook event=%s job=%lld type=%s outcome=gone next=failed "
                     "error=\"endpoint disabled (410), not sent\"",
                     e->event_id, (long long)e->job_id, e->type);
            pthread_mutex_lock(&p->qmu);
            rc = queue_event_attempt(p->q, e, EVENT_FAILED, 0, 0,
                                     "endpoint disabled (410), not sent", 0.0, 1, err);
            pthread_mutex_unlock(&p->qmu);
            st.failed++;
            continue;
        }
        int no_answer = 0;
        rc = outbox_deliver_one(p, e, &st, rng, &gone, &no_answer, err);
        if (no_answer) {
            i++;
            break; /* the rest would each wait out the same timeout: next round */
        }
    }
    outbox_lane_release(p, l, i);
    pthread_mutex_lock(&p->mu);
    p->st.due += st.due;
    p->st.delivered += st.delivered;
    p->st.retrying += st.retrying;
    p->st.failed += st.failed;
    if (rc != 0 && p->rc == 0) {
        p->rc = rc;
        snprintf(p->err, sizeof p->err, "%s", err);
    }
    int b = p->track_busy ? outbox_busy_find(p, l->ev[0]->url) : -1;
    if (b >= 0) {
        free(p->busy[b]);
        p->busy[b] = p->busy[--p->n_busy];
    }
    pthread_mutex_unlock(&p->mu);
    outbox_lane_free(l);
    outbox_poke_owner(p->owner);
}

/* The next lane to send, waiting for one unless the pool quits; NULL: exit. */
static OutboxLane *outbox_pool_next(OutboxPool *p)
{
    pthread_mutex_lock(&p->mu);
    while (!p->head && !p->quit)
        pthread_cond_wait(&p->work, &p->mu);
    OutboxLane *l = NULL;
    if (p->head && (!p->quit || p->drain)) {
        l = p->head;
        p->head = l->next;
        if (!p->head)
            p->tail = NULL;
    }
    pthread_mutex_unlock(&p->mu);
    return l;
}

typedef struct {
    OutboxPool *p;
    uint64_t rng;
} OutboxSender;

static void *outbox_sender_main(void *arg)
{
    OutboxSender *sd = arg;
    OutboxLane *l;
    while ((l = outbox_pool_next(sd->p)))
        outbox_lane_send(sd->p, l, &sd->rng);
    free(sd);
    return NULL;
}

/* Start up to n sender threads (fewer when the system refuses more). The count started. */
static int outbox_pool_start(OutboxPool *p, int n)
{
    p->threads = xcalloc((size_t)n, sizeof *p->threads);
    for (int i = 0; i < n; i++) {
        OutboxSender *sd = xcalloc(1, sizeof *sd);
        sd->p = p;
        sd->rng = p->seed ^ ((uint64_t)(i + 1) * 0x9e3779b97f4a7c15ULL);
        int e = pthread_create(&p->threads[p->n_threads], NULL, outbox_sender_main, sd);
        if (e != 0) {
            log_warn("webhooks: cannot start sender %d of %d: %s", i + 1, n, strerror(e));
            free(sd);
            break;
        }
        p->n_threads++;
    }
    return p->n_threads;
}

/* Make the senders exit (drain: after the queued lanes; else after the lane in hand, the
 * queued ones left pending in the database) and join them. */
static void outbox_pool_join(OutboxPool *p, int drain)
{
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    p->drain = drain;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    p->n_threads = 0;
}

/* An event of a fetch and its position there; sorted by URL, then position, so each
 * URL's events keep the queue's order (qsort is not stable by itself). */
typedef struct {
    OutboxEvent *e;
    int pos;
} OutboxRef;

static int outbox_ref_cmp(const void *a, const void *b)
{
    const OutboxRef *x = a, *y = b;
    int c = strcmp(x->e->url, y->e->url);
    return c ? c : (x->pos > y->pos) - (x->pos < y->pos);
}

/* Fetch up to max due events and queue one lane per URL (in the fetch's order within a
 * URL), skipping the events of busy URLs. *lanes: the number queued; *fetched and
 * *skipped (may be NULL): events fetched, and of those the busy URLs' ones. 0 or the
 * queue's error. */
static int outbox_dispatch(OutboxPool *p, int max, int *lanes, int *fetched, int *skipped,
                           char *err)
{
    *lanes = 0;
    int n_skipped = 0;
    OutboxEvent **ev = NULL;
    int n = 0;
    /* qmu is held from the fetch to the lanes' queueing: a sender records its attempt
     * (under qmu) and only then marks its URL idle, so an event this fetch saw still due
     * is either in a lane still busy here, or was recorded before the fetch. Without it,
     * an event just sent could be queued again from a fetch taken before its record. */
    pthread_mutex_lock(&p->qmu);
    /* The fetch is leased to this deliverer for a bounded time (OUTBOX_LEASE_SENDS sends'
     * worth, so a crashed worker's events wait minutes, not hours); a lane stops before
     * a send that could outlast the lease and gives the rest back. */
    int64_t lease_ms = (int64_t)OUTBOX_LEASE_SENDS *
                           (p->s->timeout_ms + p->s->connect_timeout_ms) + 30000;
    int64_t lease_end_ms = util_now_ms() + lease_ms;
    int rc = queue_events_due(p->q, max, lease_ms, &ev, &n, err);
    if (rc != 0) {
        pthread_mutex_unlock(&p->qmu);
        return rc;
    }
    OutboxRef *ref = xcalloc((size_t)n + 1, sizeof *ref);
    for (int i = 0; i < n; i++)
        ref[i] = (OutboxRef){.e = ev[i], .pos = i};
    qsort(ref, (size_t)n, sizeof *ref, outbox_ref_cmp);
    free(ev);
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < n;) {
        int j = i + 1;
        while (j < n && !strcmp(ref[j].e->url, ref[i].e->url))
            j++;
        if (p->track_busy && outbox_busy_find(p, ref[i].e->url) >= 0) {
            for (int k = i; k < j; k++) { /* in flight: given back, fetched again later */
                queue_event_release(p->q, ref[k].e, NULL);
                queue_event_free(ref[k].e);
            }
            n_skipped += j - i;
        } else {
            OutboxLane *l = xcalloc(1, sizeof *l);
            l->n = j - i;
            l->lease_end_ms = lease_end_ms;
            l->ev = xcalloc((size_t)l->n, sizeof *l->ev);
            for (int k = i; k < j; k++)
                l->ev[k - i] = ref[k].e;
            if (p->track_busy) {
                if (p->n_busy == p->cap_busy) {
                    p->cap_busy = p->cap_busy ? 2 * p->cap_busy : 16;
                    p->busy = xrealloc(p->busy, (size_t)p->cap_busy * sizeof *p->busy);
                }
                p->busy[p->n_busy++] = xstrdup(l->ev[0]->url);
            }
            if (p->tail)
                p->tail->next = l;
            else
                p->head = l;
            p->tail = l;
            (*lanes)++;
        }
        i = j;
    }
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_unlock(&p->qmu);
    free(ref);
    if (fetched)
        *fetched = n;
    if (skipped)
        *skipped = n_skipped;
    return 0;
}

/* One fetch, sent by min(max_parallel, lanes) senders (inline when that is 1), all joined
 * before it returns. */
static int outbox_run(Queue *q, const OutboxSettings *s, int max, OutboxStats *stats, char *err)
{
    OutboxStats local;
    OutboxStats *st = stats ? stats : &local;
    memset(st, 0, sizeof *st);
    if (max <= 0)
        max = 100;
    OutboxPool p;
    outbox_pool_init(&p, q, s, NULL, NULL, 0);
    int lanes = 0;
    int rc = outbox_dispatch(&p, max, &lanes, NULL, NULL, err);
    int want = s->max_parallel > 1 ? s->max_parallel : 1;
    if (want > lanes)
        want = lanes;
    if (rc == 0 && want > 1 && outbox_pool_start(&p, want) > 0) {
        outbox_pool_join(&p, 1);
    } else if (rc == 0) {
        uint64_t rng = p.seed;
        OutboxLane *l;
        p.quit = p.drain = 1; /* the list is complete: next returns NULL once it is empty */
        while ((l = outbox_pool_next(&p)))
            outbox_lane_send(&p, l, &rng);
    }
    *st = p.st;
    if (rc == 0 && p.rc != 0) {
        rc = p.rc;
        err_set(err, rc, "%s", p.err);
    }
    outbox_pool_clear(&p);
    return rc;
}

/* Deliver every due event once with settings already read (see outbox.h). */
int outbox_send_due_with(Queue *q, const OutboxSettings *s, int max, OutboxStats *stats,
                         char *err)
{
    return outbox_run(q, s, max, stats, err);
}

/* Deliver every due event once (see outbox.h). */
int outbox_send_due(Queue *q, const Cfg *cfg, int max, OutboxStats *stats, char *err)
{
    OutboxSettings s;
    int rc = outbox_settings_init(&s, cfg, err);
    if (rc != 0)
        return rc;
    return outbox_run(q, &s, max, stats, err);
}

/* ---- the delivery thread ---- */

#define OUTBOX_BATCH 100       /* events fetched per look at the queue */
#define OUTBOX_MAX_FETCH 6400  /* the most one look grows to (see outbox_thread_look) */

struct OutboxThread {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    atomic_int stop;
    int poked;           /* under mu */
    Queue *q;            /* the thread's own connection, shared with its senders via pool */
    OutboxSettings s;
    OutboxPool pool;
};

static void outbox_poke_owner(OutboxThread *t)
{
    outbox_poke(t);
}

/* One look at the queue. The fetch is oldest due first, so an endpoint that hangs with a
 * backlog of due events can fill a whole batch while its lane is busy, and the other
 * endpoints' events behind them would wait for its timeouts one by one: when more than
 * half of a full batch belongs to busy endpoints, look again further (x4, up to
 * OUTBOX_MAX_FETCH events). */
static int outbox_thread_look(OutboxThread *t, char *err)
{
    for (int max = OUTBOX_BATCH;; max *= 4) {
        int lanes = 0, fetched = 0, skipped = 0;
        int rc = outbox_dispatch(&t->pool, max, &lanes, &fetched, &skipped, err);
        if (rc != 0 || fetched < max || skipped * 2 <= fetched || max >= OUTBOX_MAX_FETCH)
            return rc;
    }
}

static void *outbox_thread_main(void *arg)
{
    OutboxThread *t = arg;
    while (!atomic_load(&t->stop)) {
        char err[VLQ_ERRLEN];
        if (outbox_thread_look(t, err) != 0)
            log_warn("webhooks: %s", err);
        pthread_mutex_lock(&t->pool.mu);
        if (t->pool.rc != 0) {
            log_warn("webhooks: %s", t->pool.err);
            t->pool.rc = 0;
        }
        pthread_mutex_unlock(&t->pool.mu);
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
    outbox_pool_init(&t->pool, t->q, &t->s, &t->stop, t, 1);
    int e = 0;
    if (outbox_pool_start(&t->pool, t->s.max_parallel > 1 ? t->s.max_parallel : 1) == 0)
        e = EAGAIN;
    else
        e = pthread_create(&t->thread, NULL, outbox_thread_main, t);
    if (e != 0) {
        outbox_pool_join(&t->pool, 0);
        outbox_pool_clear(&t->pool);
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

/* Stop and free the delivery thread (see outbox.h): the dispatcher first (no new lanes),
 * then the senders, each after the attempt in hand. */
void outbox_stop(OutboxThread *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    atomic_store(&t->stop, 1);
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->thread, NULL);
    outbox_pool_join(&t->pool, 0);
    outbox_pool_clear(&t->pool);
    queue_close(t->q);
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->mu);
    free(t);
}
