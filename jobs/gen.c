/* gen: a job thread's engine request (see gen.h).
 *
 * The callbacks run on the engine's driver thread; they only append to this call's
 * buffer and, at the end, signal this call's condition variable: the one lock here
 * guards those fields, and nothing else is shared with the driver. */
#include "gen.h"

#include "err.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    Buf text;           /* appended by on_token */
    EngineResult res;   /* set by on_end */
    int ended;
} GenWait;

static void gen_on_token(void *user, int32_t id, const char *text, size_t len)
{
    GenWait *w = user;
    pthread_mutex_lock(&w->mu);
    buf_append(&w->text, text, len);
    pthread_mutex_unlock(&w->mu);
}

static void gen_on_end(void *user, const EngineResult *r)
{
    GenWait *w = user;
    pthread_mutex_lock(&w->mu);
    w->res = *r;
    w->ended = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Wait for the end, at most ms milliseconds; 1 if it ended. */
static int gen_wait(GenWait *w, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->mu);
    while (!w->ended)
        if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) == ETIMEDOUT)
            break;
    int ended = w->ended;
    pthread_mutex_unlock(&w->mu);
    return ended;
}

int gen_run(JobCtx *ctx, const EngineRequest *r, GenOut *out, char *err)
{
    memset(out, 0, sizeof *out);
    VLQ_ASSERT(ctx->engine);
    GenWait w = {0};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    EngineRequest req = *r;
    req.on_token = gen_on_token;
    req.on_end = gen_on_end;
    req.user = &w;
    double t0 = util_mono_s();
    EngineReq *q = NULL;
    int rc = engine_submit(ctx->engine, &req, &q, err);
    /* renew well before the lease runs out; at least every 10 s for prompt cancels */
    int64_t tick = ctx->lease_ms / 3 < 10000 ? ctx->lease_ms / 3 : 10000;
    if (tick < 50)
        tick = 50;
    while (rc == 0 && !gen_wait(&w, tick)) {
        int crc = jobs_checkpoint(ctx, err);
        if (crc) {
            engine_cancel(q);
            gen_wait(&w, INT32_MAX); /* the end event always comes */
            rc = crc;
        }
    }
    if (rc == 0 && w.res.reason == ENGINE_END_ERROR)
        rc = err_set(err, w.res.code ? w.res.code : VLQ_EDEVICE, "%s", w.res.err);
    else if (rc == 0 && w.res.reason == ENGINE_END_CANCELLED)
        rc = err_set(err, VLQ_ECANCEL, "the request was cancelled");
    engine_req_free(q);
    if (rc == 0) {
        out->res = w.res;
        out->len = w.text.len;
        out->text = buf_take(&w.text);
        out->seconds = util_mono_s() - t0;
    }
    buf_clear(&w.text);
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    return rc;
}

void gen_clear(GenOut *out)
{
    if (!out)
        return;
    free(out->text);
    out->text = NULL;
    out->len = 0;
}
