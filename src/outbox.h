/* outbox: delivers the queue's webhook events. It reads due events from the queue,
 * signs and POSTs each through webhook.c, decides from the outcome and the retry schedule
 * what happens next, and records every attempt back in the queue (queue_event_attempt).
 * It owns no table and no HTTP code: the queue keeps the rows, webhook.c does one POST.
 *
 * Rules, per attempt (the timestamp signed is the attempt's time, the body the stored bytes,
 * the secret the job's own or else [webhooks] secret):
 *   delivered (2xx)     -> delivered
 *   retry (5xx, 429, timeout, connection refused, 3xx)
 *                       -> pending, next = now + max(Retry-After, schedule delay) (jittered),
 *                          or failed when the schedule (or [webhooks] max_attempts) is spent
 *   gone (410)          -> failed, and the endpoint (URL) is disabled for later events
 *   refused (bad URL, host not allowed, bad secret) -> failed at once
 * Schedule: [webhooks] schedule "s0,s1,..." (seconds, or with an s/m/h/d suffix): s[i] is
 * the delay before attempt i+1 counted from the previous one; s0 is normally 0 (the first
 * attempt is immediate), so the schedule has as many attempts as entries.
 *
 * Endpoints: events of different endpoints (URLs) are delivered concurrently by up to
 * [webhooks] max_parallel sender threads, so an endpoint that hangs holds one sender for at
 * most timeout_ms and never delays the others. One endpoint's events go one at a time, in
 * the order the queue gives them (oldest due first): the next is not sent before the
 * previous attempt is recorded. An attempt that got no answer at all (timeout, refused
 * connection) ends that endpoint's turn: its later events wait for the next round rather
 * than each waiting out a timeout in a row.
 *
 * Threads: outbox_send_due runs on the caller's Queue (its senders use it one at a time,
 * under a lock, and are joined before it returns). outbox_start runs a delivery thread with
 * its own Queue connection, shared the same way by that thread's senders only (the
 * worker's connection is never shared across threads). */
#ifndef VLQ_OUTBOX_H
#define VLQ_OUTBOX_H

#include "cfg.h"
#include "queue.h"

#include <stdint.h>

#define OUTBOX_MAX_SCHEDULE 32
#define OUTBOX_POLL_MS 1000 /* the delivery thread wakes this often when not poked */

/* What outbox_send_due did. */
typedef struct {
    int due;        /* events taken as due */
    int delivered;  /* 2xx */
    int retrying;   /* rescheduled */
    int failed;     /* failed now: schedule spent, 410, refused */
} OutboxStats;

/* Delivery settings read once from the config ([webhooks] keys). */
typedef struct {
    char secret[128];                   /* "" : unsigned unless the job has its own */
    char allow_hosts[1024];             /* "" : any host */
    int timeout_ms, connect_timeout_ms; /* <= 0: webhook.c's defaults */
    int max_attempts;                   /* <= 0: the schedule's length */
    int64_t schedule_s[OUTBOX_MAX_SCHEDULE];
    int n_schedule;
    int max_parallel;                   /* endpoints sent to at once; <= 0: 1 */
} OutboxSettings;

/* Read [webhooks] secret, timeout_ms, connect_timeout_ms, max_attempts, schedule,
 * allow_hosts and max_parallel into *s. 0, or VLQ_EINPUT ("webhooks.schedule: reason"). */
int outbox_settings_init(OutboxSettings *s, const Cfg *cfg, char *err);
/* Parse a schedule "0,5,5m,30m,2h" into s[0..*n) (at most max entries; "" gives the
 * Standard Webhooks default). 0 or VLQ_EINPUT. */
int outbox_parse_schedule(const char *text, int64_t *s, int max, int *n, char *err);

/* Deliver every event due now once (at most max events; max <= 0: 100 per call) and
 * record each attempt; endpoints in parallel as above (an endpoint that did not answer
 * keeps its later events for the next call, which stats->due does not count). Returns 0 (whatever the receivers answered), or the error of the
 * database or config (VLQ_EBUSY, VLQ_EIO, VLQ_EINPUT) with err set; stats may be NULL. */
int outbox_send_due(Queue *q, const Cfg *cfg, int max, OutboxStats *stats, char *err);
/* The same with settings already read (the delivery thread's form). */
int outbox_send_due_with(Queue *q, const OutboxSettings *s, int max, OutboxStats *stats,
                         char *err);

/* ---- the worker's background delivery thread ---- */
typedef struct OutboxThread OutboxThread;

/* Start a thread that opens its own connection to the queue at db_path and delivers due
 * events every OUTBOX_POLL_MS, or at once when poked, through max_parallel senders: while
 * an endpoint's events are in flight, newly due events of other endpoints still go out. The config is read at start (cfg
 * may be freed afterwards). 0 and *out, or VLQ_EINPUT/VLQ_EIO/VLQ_EBUSY with err. */
int outbox_start(const char *db_path, const Cfg *cfg, OutboxThread **out, char *err);
/* Wake the thread now (e.g. a job just finished and wrote an event). NULL-safe, cannot
 * fail, never blocks on a delivery. */
void outbox_poke(OutboxThread *t);
/* Stop the thread: it finishes the attempt in flight (bounded by the webhook timeouts),
 * records it, and exits; then its connection is closed and t freed. NULL-safe. */
void outbox_stop(OutboxThread *t);

#endif
