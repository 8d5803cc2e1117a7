/* engine_sched: the scheduler step, the vision path of an admitted request, the end of a
 * request, and the driver thread (engine.h).
 *
 * One step: (1) admit waiting requests in FIFO order into a free slot of their class
 * (a request whose class is full waits; one of another class may pass it), encode their
 * visual items (the vision encoder is made on first use); (2) end the running requests
 * that were cancelled; (3) build one decoder batch: the decode row of every request past
 * its prompt, then prefill chunks in admission order until max_batch_tok rows; (4) run
 * it, sample the rows that end a prompt or decode, stream text, and end a request at a
 * stop token, at max_new_tokens, or when its budget is full, freeing its slot at once.
 *
 * A video item is encoded a few frame groups at a time (as many as max_patches holds):
 * the encoder attends within one frame group and everything else is per patch, so this
 * gives the features of the whole item while the workspace stays fixed. */
#include "engine_int.h"

#include "err.h"
#include "log.h"
#include "util.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- ends ---- */

/* Free what a running request holds for the run (not its result). */
static void engine_run_clear(Engine *e, EngineReq *q)
{
    for (int k = 0; q->feat && k < q->r.n_visual; k++)
        free(q->feat[k]);
    free(q->feat);
    q->feat = NULL;
    free(q->seen);
    q->seen = NULL;
    sample_free(q->sampler);
    q->sampler = NULL;
    tok_stream_clear(&q->ts);
    if (q->slot >= 0)
        e->slots[q->slot].req = NULL;
    q->slot = -1;
}

void engine_end(Engine *e, EngineReq *q, EngineEndReason why, int code, const char *msg)
{
    int was_running = q->state == ENGINE_REQ_RUNNING;
    double now = util_mono_s();
    EngineResult *res = &q->res;
    res->reason = why;
    res->code = code;
    snprintf(res->err, sizeof res->err, "%s", msg ? msg : "");
    res->gen_tok = q->n_gen;
    if (q->t_first > 0) {
        res->prefill_s = q->t_first - q->t_admit - res->vision_s;
        res->decode_s = q->t_last - q->t_first;
    }
    if (!was_running)
        res->queue_s = now - q->t_submit;
    pthread_mutex_lock(&q->mu);
    if (!q->user_gone) {
        size_t len = 0;
        const char *tail = was_running && q->ts.tok ? tok_stream_flush(&q->ts, &len) : NULL;
        if (len && q->r.on_token)
            q->r.on_token(q->r.user, ENGINE_TOKEN_TAIL, tail, len);
        if (q->r.on_end)
            q->r.on_end(q->r.user, res);
    }
    engine_run_clear(e, q);
    q->state = ENGINE_REQ_ENDED;
    q->ended = 1;
    int gone = q->user_gone;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    pthread_mutex_lock(&e->mu);
    e->stats.requests_done++;
    if (was_running)
        e->n_running--;
    pthread_mutex_unlock(&e->mu);
    if (gone)
        engine_req_destroy(q);
}

/* ---- vision ---- */

/* Encode visual item k of q into out ([nm, h] then [n_deep][nm, h]), a few frame groups
 * at a time. */
static int engine_encode_item(Engine *e, const PrepVisual *v, float *out, char *err)
{
    const ModelConfig *c = e->cfg;
    int64_t h = c->hidden_size, group = (int64_t)v->grid_h * v->grid_w;
    int64_t nm = group / 4 * v->grid_t;
    int per = (int)(e->opt.max_patches / group), nd = c->n_deepstack;
    for (int g0 = 0; g0 < v->grid_t; g0 += per) {
        int gt = v->grid_t - g0 < per ? v->grid_t - g0 : per;
        int32_t grid[3] = {gt, v->grid_h, v->grid_w};
        int64_t row0 = (int64_t)g0 * group / 4, rows = (int64_t)gt * group / 4;
        int rc = vision_encode(e->vision, v->pixels + (int64_t)g0 * group * PREP_ROW, grid, 1,
                               out + row0 * h, nd ? e->vision_deep : NULL, err);
        if (rc)
            return rc;
        for (int j = 0; j < nd; j++)
            memcpy(out + ((int64_t)(1 + j) * nm + row0) * h, e->vision_deep + j * rows * h,
                   (size_t)(rows * h) * sizeof(float));
    }
    return 0;
}

/* The features of every visual item of q (through the feature cache). */
static int engine_vision(Engine *e, EngineReq *q, char *err)
{
    const ModelConfig *c = e->cfg;
    if (!q->r.n_visual)
        return 0;
    int rc = 0;
    if (!e->vision) {
        rc = vision_new(e->m, e->b, e->opt.max_patches, &e->vision, err);
        if (!rc) {
            size_t n = (size_t)(e->opt.max_patches / 4 + 1) * (size_t)c->hidden_size *
                       (size_t)(c->n_deepstack ? c->n_deepstack : 1);
            e->vision_deep = malloc(n * sizeof(float));
            if (!e->vision_deep)
                rc = err_set(err, VLQ_ENOMEM, "vision: out of memory for the DeepStack rows");
        }
        if (rc) {
            vision_free(e->vision);
            e->vision = NULL;
            return rc;
        }
    }
    double t0 = util_mono_s();
    q->feat = xcalloc((size_t)q->r.n_visual, sizeof *q->feat);
    for (int k = 0; k < q->r.n_visual && !rc; k++) {
        const PrepVisual *v = q->r.visual[k];
        int64_t nm = (int64_t)v->grid_t * v->grid_h * v->grid_w / 4;
        q->feat[k] = malloc((size_t)(nm * (int64_t)c->hidden_size * (1 + c->n_deepstack)) *
                            sizeof(float));
        if (!q->feat[k])
            return err_set(err, VLQ_ENOMEM, "visual item %d: out of memory for its features",
                           k + 1);
        double t1 = util_mono_s();
        rc = engine_encode_item(e, v, q->feat[k], err);
        pthread_mutex_lock(&e->mu);
        e->stats.vision_calls++;
        pthread_mutex_unlock(&e->mu);
        log_info("vision: item %d: %dx%dx%d patches in %.2f s", k + 1, v->grid_t, v->grid_h,
                 v->grid_w, util_mono_s() - t1);
        if (rc)
            err_prefix(err, "visual item %d", k + 1);
    }
    q->res.vision_s = util_mono_s() - t0;
    return rc;
}

/* ---- admission ---- */

/* Start q in the slot it was given: its run state, then its visual features. */
static int engine_admit(Engine *e, EngineReq *q, char *err)
{
    const ModelConfig *c = e->cfg;
    q->admit_seq = e->admit_counter++;
    q->t_admit = util_mono_s();
    q->res.queue_s = q->t_admit - q->t_submit;
    int L = (int)q->pr.ids.n;
    q->seen = malloc(((size_t)L + (size_t)q->r.max_new_tok) * sizeof *q->seen);
    if (!q->seen)
        return err_set(err, VLQ_ENOMEM, "request: out of memory for its tokens");
    memcpy(q->seen, q->pr.ids.ids, (size_t)L * sizeof *q->seen);
    q->sampler = sample_new(c->vocab_size, &q->r.sampling);
    tok_stream_init(&q->ts, e->tok, 1);
    return engine_vision(e, q, err);
}

/* Move the admissible waiting requests to their slots; end the cancelled ones. */
static void engine_admit_waiting(Engine *e)
{
    EngineReq *admitted = NULL, *cancelled = NULL, **at = &admitted, **ct = &cancelled;
    pthread_mutex_lock(&e->mu);
    for (EngineReq **pp = &e->wait_head, *prev = NULL; *pp;) {
        EngineReq *q = *pp;
        pthread_mutex_lock(&q->mu);
        int cancel = q->cancel;
        pthread_mutex_unlock(&q->mu);
        int s = -1;
        for (int i = 0; !cancel && i < e->n_slots && s < 0; i++)
            if (e->slots[i].cls == q->cls && !e->slots[i].req)
                s = i;
        if (!cancel && s < 0) {
            prev = q;
            pp = &q->next;
            continue;
        }
        *pp = q->next; /* unlink */
        if (e->wait_tail == q)
            e->wait_tail = prev;
        e->n_waiting--;
        q->next = NULL;
        if (cancel) {
            *ct = q;
            ct = &q->next;
        } else {
            q->state = ENGINE_REQ_RUNNING;
            q->slot = s;
            e->slots[s].req = q;
            e->n_running++;
            *at = q;
            at = &q->next;
        }
    }
    pthread_mutex_unlock(&e->mu);
    while (cancelled) {
        EngineReq *next = cancelled->next;
        engine_end(e, cancelled, ENGINE_END_CANCELLED, 0, NULL);
        cancelled = next;
    }
    while (admitted) {
        EngineReq *next = admitted->next;
        char err[VLQ_ERRLEN] = "";
        admitted->next = NULL;
        int rc = engine_admit(e, admitted, err);
        if (rc)
            engine_end(e, admitted, ENGINE_END_ERROR, rc, err);
        admitted = next;
    }
}

/* ---- the batch ---- */

/* Gather the visual rows of prompt rows [r0, r0+n) of q into the chunk scratch at visual
 * offset *off (rows relative to r0); fill seq's visual fields. */
static void engine_chunk_visual(Engine *e, EngineReq *q, int r0, int n, int *off, DecoderSeq *sq)
{
    const ModelConfig *c = e->cfg;
    int64_t h = c->hidden_size, nd = c->n_deepstack;
    int nv = 0;
    /* count first: the DeepStack layers are laid out [nd][nv, h] */
    for (int i = 0; i < q->n_runs; i++) {
        int64_t a = q->runs[i].row > r0 ? q->runs[i].row : r0;
        int64_t b = q->runs[i].row + q->runs[i].n < r0 + n ? q->runs[i].row + q->runs[i].n
                                                          : r0 + n;
        nv += b > a ? (int)(b - a) : 0;
    }
    if (!nv)
        return;
    int32_t *rows = e->chunk_vrows + *off;
    float *vis = e->chunk_vis + (int64_t)*off * h, *deep = e->chunk_deep + (int64_t)*off * h * nd;
    int k = 0;
    for (int i = 0; i < q->n_runs; i++) {
        const EngineVisRun *run = &q->runs[i];
        const PrepVisual *v = q->r.visual[run->item];
        int64_t nm = (int64_t)v->grid_t * v->grid_h * v->grid_w / 4;
        const float *f = q->feat[run->item];
        int64_t a = run->row > r0 ? run->row : r0;
        int64_t b = run->row + run->n < r0 + n ? run->row + run->n : r0 + n;
        for (int64_t r = a; r < b; r++) {
            int64_t ir = run->item_row + (r - run->row);
            rows[k] = (int32_t)(r - r0);
            memcpy(vis + k * h, f + ir * h, (size_t)h * sizeof(float));
            for (int64_t j = 0; j < nd; j++)
                memcpy(deep + (j * nv + k) * h, f + ((1 + j) * nm + ir) * h,
                       (size_t)h * sizeof(float));
            k++;
        }
    }
    sq->n_visual = nv;
    sq->visual_rows = rows;
    sq->visual = vis;
    sq->deepstack = nd ? deep : NULL;
    *off += nv;
}

/* Lay out the step's batch in e->seqs; returns the number of sequences. */
static int engine_build_batch(Engine *e, int *rows_decode, int *rows_prefill)
{
    int n = 0, rows = 0, T = e->opt.max_batch_tok, pos_off = 0, vis_off = 0;
    *rows_decode = *rows_prefill = 0;
    for (int s = 0; s < e->n_slots; s++) {
        EngineReq *q = e->slots[s].req;
        int L;
        if (!q || q->n_done < (L = (int)q->pr.ids.n))
            continue;
        int p = L + q->n_gen - 1 + q->rope_delta;
        int32_t *p3 = e->pos3 + 3 * n;
        p3[0] = p3[1] = p3[2] = p;
        e->seqs[n] = (DecoderSeq){.kv_row0 = e->slots[s].kv_row0, .kv_cap = e->slots[s].cap,
                                  .n_past = L + q->n_gen - 1, .n_tok = 1, .ids = &q->next_tok,
                                  .pos = p3};
        e->batch_req[n++] = q;
        rows++;
    }
    *rows_decode = rows;
    /* prefills in admission order */
    for (;;) {
        EngineReq *best = NULL;
        for (int s = 0; s < e->n_slots; s++) {
            EngineReq *q = e->slots[s].req;
            int taken = 0;
            for (int i = 0; q && i < n; i++)
                taken |= e->batch_req[i] == q;
            if (q && !taken && q->n_done < (int)q->pr.ids.n &&
                (!best || q->admit_seq < best->admit_seq))
                best = q;
        }
        if (!best || rows >= T)
            break;
        EngineReq *q = best;
        int L = (int)q->pr.ids.n, chunk = L - q->n_done < T - rows ? L - q->n_done : T - rows;
        int32_t *pos = e->chunk_pos + pos_off;
        for (int a = 0; a < 3; a++)
            memcpy(pos + a * chunk, q->pos + (int64_t)a * L + q->n_done,
                   (size_t)chunk * sizeof *pos);
        pos_off += 3 * chunk;
        const EngineSlot *sl = &e->slots[q->slot];
        e->seqs[n] = (DecoderSeq){.kv_row0 = sl->kv_row0, .kv_cap = sl->cap, .n_past = q->n_done,
                                  .n_tok = chunk, .ids = q->pr.ids.ids + q->n_done, .pos = pos};
        engine_chunk_visual(e, q, q->n_done, chunk, &vis_off, &e->seqs[n]);
        e->batch_req[n++] = q;
        rows += chunk;
        *rows_prefill += chunk;
    }
    return n;
}

/* Sample the next token of q from its logits row; emit it or end q. */
static void engine_sample(Engine *e, EngineReq *q, float *row)
{
    const ModelConfig *c = e->cfg;
    int L = (int)q->pr.ids.n;
    int tok = sample_next(q->sampler, row, q->seen, L + q->n_gen);
    double now = util_mono_s();
    if (q->t_first == 0)
        q->t_first = now;
    if (sample_is_stop(tok, c->eos_token_ids, c->n_eos)) {
        q->t_last = now;
        engine_end(e, q, ENGINE_END_EOS, 0, NULL);
        return;
    }
    q->seen[L + q->n_gen++] = tok;
    q->next_tok = tok;
    q->t_last = now;
    size_t len;
    const char *text = tok_stream_push(&q->ts, tok, &len);
    pthread_mutex_lock(&q->mu);
    if (!q->user_gone && q->r.on_token)
        q->r.on_token(q->r.user, tok, text, len);
    pthread_mutex_unlock(&q->mu);
    /* the next decode needs a KV row: L + n_gen <= the slot and the budget */
    if (q->n_gen >= q->r.max_new_tok || L + q->n_gen >= q->r.budget_tok)
        engine_end(e, q, ENGINE_END_LENGTH, 0, NULL);
}

int engine_step(Engine *e, char *err)
{
    engine_admit_waiting(e);
    for (int s = 0; s < e->n_slots; s++) {
        EngineReq *q = e->slots[s].req;
        if (!q)
            continue;
        pthread_mutex_lock(&q->mu);
        int cancel = q->cancel;
        pthread_mutex_unlock(&q->mu);
        if (cancel)
            engine_end(e, q, ENGINE_END_CANCELLED, 0, NULL);
    }
    int rows_decode, rows_prefill;
    int n = engine_build_batch(e, &rows_decode, &rows_prefill);
    int rc = 0;
    if (n > 0) {
        rc = decoder_forward(e->dec, e->seqs, n, e->logits, 0, err);
        if (rc) {
            for (int s = 0; s < e->n_slots; s++)
                if (e->slots[s].req)
                    engine_end(e, e->slots[s].req, ENGINE_END_ERROR, rc, err);
        }
        for (int i = 0; i < n && !rc; i++) {
            EngineReq *q = e->batch_req[i];
            const DecoderSeq *sq = &e->seqs[i];
            int L = (int)q->pr.ids.n;
            if (q->n_done < L) {
                q->n_done += sq->n_tok;
                if (q->n_done < L)
                    continue;
                for (int k = 0; q->feat && k < q->r.n_visual; k++) /* prefilled: not needed */
                    free(q->feat[k]);
                free(q->feat);
                q->feat = NULL;
            }
            engine_sample(e, q, e->logits + (size_t)i * (size_t)e->cfg->vocab_size);
        }
    }
    pthread_mutex_lock(&e->mu);
    if (n > 0) {
        e->stats.steps++;
        e->stats.rows_decode += rows_decode;
        e->stats.rows_prefill += rows_prefill;
    }
    int left = e->n_waiting + e->n_running;
    pthread_mutex_unlock(&e->mu);
    return rc ? rc : left;
}

/* ---- the driver thread ---- */

static void *engine_driver(void *arg)
{
    Engine *e = arg;
    /* OpenMP's thread count is per thread: this one starts at the process default */
    if (e->opt.threads > 0)
        omp_set_num_threads(e->opt.threads);
    for (;;) {
        pthread_mutex_lock(&e->mu);
        while (!e->stop && e->n_waiting + e->n_running == 0)
            pthread_cond_wait(&e->work, &e->mu);
        int stop = e->stop;
        pthread_mutex_unlock(&e->mu);
        if (stop)
            return NULL;
        char err[VLQ_ERRLEN] = "";
        int rc = engine_step(e, err);
        if (rc < 0)
            log_error("engine: %s", err);
    }
}

int engine_start(Engine *e, char *err)
{
    pthread_mutex_lock(&e->mu);
    int started = e->started;
    pthread_mutex_unlock(&e->mu);
    if (started)
        return err_set(err, VLQ_EINPUT, "engine: the driver thread is already running");
    if (pthread_create(&e->driver, NULL, engine_driver, e))
        return err_set(err, VLQ_ENOMEM, "engine: cannot start the driver thread");
    pthread_mutex_lock(&e->mu);
    e->started = 1;
    pthread_mutex_unlock(&e->mu);
    return 0;
}
