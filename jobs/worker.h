/* worker: the loop that claims jobs, runs their kind and records the outcome, with
 * several jobs in flight at once. `vlq worker` (src/cli_worker.c) parses flags and the
 * config and calls worker_run; webhook events are delivered by the outbox thread it
 * starts, and by one synchronous pass at the end of a drain.
 *
 * Concurrency: [worker] concurrency threads, each a complete claim -> run -> record loop
 * with its own Queue connection (SQLite connections are never shared across threads),
 * so each in-flight job has its own lease renewals, fencing and cancel checks, done by
 * the thread that runs it. Jobs that need the model share one Engine, opened once per
 * worker; its driver thread batches the requests of every job in flight (engine.h), and
 * each job thread blocks on its own requests, renewing its lease while it waits. The
 * engine is sized for the concurrency: the ocr and video classes get one slot per job in
 * flight unless [engine] ocr_slots / video_slots are set explicitly, shrunk (with a
 * warning) to what the memory plan allows. Threads
 * per job (not one step-driven loop) because a kind is then straight-line code (decode a
 * page, ask the engine, store the page), and one job's FFmpeg decoding and preprocessing
 * overlap the engine's steps for the others without a hand-written state machine.
 *
 * Outcomes are classified by error code, never by message text: 0 succeeded; ECANCEL
 * with the worker stopping is a hand-back (the attempt not counted), otherwise a cancel;
 * EBUSY is a lost lease when the queue says the job is no longer ours (nothing recorded),
 * else a transient failure; other codes go to queue_fail (transient ones are retried).
 *
 * A device error (EDEVICE: the device context is broken for good) stops the worker: the
 * first job that reports it records a transient failure (its attempt counted), no job is
 * claimed after it, the jobs in flight run to their end and those that fail with EDEVICE
 * too are handed back unspent; then worker_run returns VLQ_EDEVICE (worker.c says why). */
#ifndef VLQ_WORKER_H
#define VLQ_WORKER_H

#include <stdint.h>

typedef struct Cfg Cfg;
typedef struct Engine Engine;

typedef struct {
    const Cfg *cfg;         /* the configuration (read-only while running) */
    const char *db_path;    /* the queue database */
    int drain;              /* 1: exit once nothing is runnable */
    int64_t max_jobs;       /* exit after this many jobs (0: no limit) */
    int concurrency;        /* jobs in flight at once (0: [worker] concurrency) */
    int64_t lease_ms;       /* lease of a claimed job (0: [worker] lease_seconds) */
    volatile int *stop;     /* set asynchronously (signals): stop at the next checkpoint */
    Engine *engine;         /* the model for kinds that need it, or NULL: those kinds are
                             * not claimed (their jobs stay queued, no attempt spent) */
} WorkerOptions;

typedef struct {
    int64_t done;           /* jobs run to an outcome (hand-backs included) */
    int64_t failed;         /* of which failed, dead or cancelled */
    int device_error;       /* 1: it stopped for a device error (worker_run returned
                             * VLQ_EDEVICE for it, not for a backend that cannot open) */
} WorkerStats;

/* Run the worker until drained, max_jobs, *stop, a database error or a device error.
 * Returns 0; VLQ_EDEVICE with stats->device_error set after a device error in a job
 * (every job recorded; logged as "device error: ...; exiting so that a restart gets a
 * fresh device context", err says "device error: job N: ..."); or the VLQ_E* code of
 * the error that stopped it (database, config, a model or backend that cannot open, a
 * VLQ_EDEVICE too) with err set. */
int worker_run(const WorkerOptions *o, WorkerStats *stats, char *err);

#endif
