/* engine: open, the memory plan, submit and the request handles (engine.h). The
 * scheduler step, the vision encoder path and the driver thread are in engine_sched.c.
 *
 * The plan is made before anything is allocated, from the same size functions the
 * allocations use (decoder_run_bytes, vision_run_bytes, decoder_kv_bytes_per_tok), so
 * what engine_open allocates is what the plan counted. A request is checked against its
 * budget and the vision workspace at submit, so nothing can fail half-way for want of
 * memory: a request that fits waits for a slot, one that never can is refused at once. */
#include "engine_int.h"

#include "cfg.h"
#include "err.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define ENGINE_DEFAULT_CTX 8192
#define ENGINE_DEFAULT_BATCH_TOK 512
#define ENGINE_DEFAULT_PATCHES 16384
#define ENGINE_MARGIN_MIN (64LL << 20)

/* ---- options ---- */

int engine_norm_options(const EngineOptions *in, EngineOptions *o, char *err)
{
    *o = *in;
    if (!o->backend || !o->backend[0])
        o->backend = "cpu";
    if (o->n_classes == 0) {
        o->classes[0] = (EngineClass){.name = "ocr", .ctx_tok = ENGINE_DEFAULT_CTX, .n_slots = 1};
        o->n_classes = 1;
    }
    if (o->max_batch_tok == 0)
        o->max_batch_tok = ENGINE_DEFAULT_BATCH_TOK;
    if (o->max_patches == 0)
        o->max_patches = ENGINE_DEFAULT_PATCHES;
    if (o->n_classes < 0 || o->n_classes > ENGINE_MAX_CLASSES)
        return err_set(err, VLQ_EINPUT, "engine: %d budget classes (1..%d)", o->n_classes,
                       ENGINE_MAX_CLASSES);
    int slots = 0;
    for (int i = 0; i < o->n_classes; i++) {
        const EngineClass *c = &o->classes[i];
        if (c->ctx_tok < 2 || c->n_slots < 0 || c->n_slots > 4096)
            return err_set(err, VLQ_EINPUT, "engine: class %s: %d tokens, %d slots",
                           c->name ? c->name : "?", c->ctx_tok, c->n_slots);
        if (!c->name)
            o->classes[i].name = "class";
        slots += c->n_slots;
    }
    if (slots < 1)
        return err_set(err, VLQ_EINPUT, "engine: no slots in any budget class");
    if (o->max_batch_tok < slots || o->max_patches < 4 || o->mem_limit < 0 ||
        o->vcache_bytes < 0)
        return err_set(err, VLQ_EINPUT, "engine: max_batch_tok %d (at least one row per slot: "
                       "%d), max_patches %d, mem_limit %lld", o->max_batch_tok, slots,
                       o->max_patches, (long long)o->mem_limit);
    return 0;
}

void engine_options_from_cfg(const Cfg *cfg, EngineOptions *o)
{
    memset(o, 0, sizeof *o);
    o->model_path = cfg_str(cfg, "model.path")[0] ? cfg_str(cfg, "model.path") : NULL;
    o->backend = cfg_str(cfg, "model.backend");
    o->threads = (int)cfg_int(cfg, "model.threads");
    o->kv_f32 = !strcmp(cfg_str(cfg, "engine.kv_type"), "f32");
    static const char *const names[] = {"ocr", "video", "document"};
    for (int i = 0; i < 3; i++) {
        char ctx_key[64], slots_key[64];
        snprintf(ctx_key, sizeof ctx_key, "budgets.%s", names[i]);
        snprintf(slots_key, sizeof slots_key, "engine.%s_slots", names[i]);
        o->classes[i] = (EngineClass){.name = names[i], .ctx_tok = (int)cfg_int(cfg, ctx_key),
                                      .n_slots = (int)cfg_int(cfg, slots_key)};
    }
    o->n_classes = 3;
    o->max_batch_tok = (int)cfg_int(cfg, "engine.max_batch_tok");
    o->mem_limit = cfg_int(cfg, "engine.mem_limit_mb") << 20;
    o->vcache_bytes = cfg_int(cfg, "engine.vcache_mb") << 20;
    o->vcache_dir = cfg_str(cfg, "engine.vcache_dir")[0] ? cfg_str(cfg, "engine.vcache_dir")
                                                          : NULL;
    const char *off = cfg_str(cfg, "offload.layers"); /* cfg checked: auto or a count */
    o->offload_layers = strcmp(off, "auto") ? atoi(off) : -1;
}

/* ---- the memory plan ---- */

/* The host memory free for the plan: MemAvailable, within the cgroup's limit (the host
 * backends' meminfo), or -1. */
static int64_t engine_mem_available(void)
{
    Backend *host = backend_get("cpu");
    int64_t free_bytes = 0, total_bytes = 0;
    if (host->meminfo(host, &free_bytes, &total_bytes, NULL))
        return -1;
    return free_bytes;
}

/* Floats of one merged visual row with its DeepStack rows. */
static int64_t engine_feat_floats(const ModelConfig *c)
{
    return (int64_t)c->hidden_size * (1 + c->n_deepstack);
}

/* The activations and step scratch for max_batch_tok rows and `slots` sequences. */
static int64_t engine_act_bytes(const EngineOptions *o, const ModelConfig *c, int64_t slots)
{
    DecoderOptions dopt = {.max_tok = o->max_batch_tok, .max_seq = (int)slots};
    return decoder_run_bytes(c, &dopt) + slots * c->vocab_size * 4 +
           (int64_t)o->max_batch_tok * (engine_feat_floats(c) * 4 + 4 * 4) +
           slots * (int64_t)(sizeof(DecoderSeq) + sizeof(void *) + 12);
}

/* The weight bytes of each decoder layer into layer[n_layers] (tensors named
 * model.language_model.layers.<i>.*). */
static void engine_layer_bytes(const Model *m, int n_layers, int64_t *layer)
{
    static const char prefix[] = "model.language_model.layers.";
    memset(layer, 0, (size_t)n_layers * sizeof *layer);
    for (int i = 0; i < model_tensor_count(m); i++) {
        const ModelTensor *t = model_tensor_at(m, i);
        if (strncmp(t->name, prefix, sizeof prefix - 1))
            continue;
        int k = atoi(t->name + sizeof prefix - 1);
        if (k >= 0 && k < n_layers)
            layer[k] += (int64_t)t->nbytes;
    }
}

/* The margin over a sum: a fixed part (allocator rounding, a device's context
 * growth) and a share of the sum. */
static int64_t engine_margin(int64_t sum)
{
    return ENGINE_MARGIN_MIN + sum / 64;
}

int engine_plan(const EngineOptions *in, const Model *m, EnginePlan *p, char *err)
{
    if (!in->backend || !in->backend[0] || backend_is_host(in->backend))
        return engine_plan_on(in, m, NULL, p, err);
    /* a device or plugin backend: its own memory, so open it to ask */
    memset(p, 0, sizeof *p);
    Backend *b = NULL;
    BackendOpenOptions bo = {.threads = in->threads};
    int rc = backend_open(in->backend, &bo, &b, err);
    if (!rc)
        rc = engine_plan_on(in, m, b, p, err);
    backend_close(b);
    return rc;
}

int engine_plan_on(const EngineOptions *in, const Model *m, Backend *b, EnginePlan *p,
                   char *err)
{
    memset(p, 0, sizeof *p);
    EngineOptions o;
    int rc = engine_norm_options(in, &o, err);
    if (rc)
        return rc;
    const ModelConfig *c = model_config(m);
    for (int i = 0; i < model_tensor_count(m); i++) {
        const ModelTensor *t = model_tensor_at(m, i);
        *(strncmp(t->name, "model.visual.", 13) ? &p->weights_text : &p->weights_vision) +=
            (int64_t)t->nbytes;
    }
    int64_t slots = 0, rows = 0, feat_tok = engine_feat_floats(c) * 4;
    for (int i = 0; i < o.n_classes; i++) {
        slots += o.classes[i].n_slots;
        rows += (int64_t)o.classes[i].n_slots * o.classes[i].ctx_tok;
    }
    p->device = b && (b->flags & BACKEND_DEVICE);
    p->kv_per_token = decoder_kv_bytes_per_tok(c, o.kv_f32 ? QUANT_F32 : QUANT_F16);
    p->kv = rows * p->kv_per_token;
    p->activations = engine_act_bytes(&o, c, slots);
    /* the encoder and one chunk's DeepStack rows */
    p->vision_ws = vision_run_bytes(c, o.max_patches) +
                   (int64_t)(o.max_patches / 4 + 1) * c->hidden_size * c->n_deepstack * 4;
    /* a running request holds its items' features until its prompt is prefilled: at most
     * its budget's tokens (the feature cache reads into and stores from them) */
    p->features = rows * feat_tok;
    p->vcache = o.vcache_bytes;
    int64_t free_bytes = 0, total_bytes = 0;
    if (!o.mem_limit && b && b->meminfo &&
        (rc = b->meminfo(b, &free_bytes, &total_bytes, err)) != 0) {
        err_prefix(err, "memory plan");
        return rc;
    }
    if (!p->device) {
        int64_t sum = p->weights_text + p->weights_vision + p->kv + p->activations +
                      p->vision_ws + p->features + p->vcache;
        p->margin = engine_margin(sum);
        p->total = sum + p->margin;
        p->available = o.mem_limit ? o.mem_limit : b ? free_bytes : engine_mem_available();
        if (p->available < 0)
            return err_set(err, VLQ_EIO, "memory plan: cannot read the free memory from "
                           "/proc/meminfo (set [engine] mem_limit_mb)");
        /* slots of one class alone: the largest n with plan(n slots) <= available, the
         * margin included (it grows with the sum) */
        int64_t act0 = engine_act_bytes(&o, c, 0), act1 = engine_act_bytes(&o, c, 1);
        int64_t fixed = sum - p->kv - p->features - p->activations + act0;
        for (int i = 0; i < o.n_classes; i++) {
            int64_t per = o.classes[i].ctx_tok * (p->kv_per_token + feat_tok) + act1 - act0;
            int64_t n = 0, room = p->available - ENGINE_MARGIN_MIN;
            if (room > 0) {
                n = (room - fixed - fixed / 64) * 64 / (per * 65);
                n = n < 0 ? 0 : n > 1000000 ? 1000000 : n;
                while (n > 0 && fixed + n * per + (fixed + n * per) / 64 > room)
                    n--;
                while (n < 1000000 && fixed + (n + 1) * per + (fixed + (n + 1) * per) / 64 <= room)
                    n++;
            }
            p->slots_fit[i] = (int)n;
        }
        p->fits = p->total <= p->available;
        return 0;
    }
    /* A device: weights, KV, activations and the workspaces on it (the run state's host
     * scratch is counted there too: a few KiB, on the safe side); the features, the
     * feature cache and any offloaded layers in host memory. The workspace open set
     * aside is already gone from the free bytes: it counts on both sides. */
    p->workspace = b->reserved_bytes;
    p->available = o.mem_limit ? o.mem_limit : free_bytes + p->workspace;
    p->host_available = engine_mem_available();
    if (p->host_available < 0)
        return err_set(err, VLQ_EIO, "memory plan: cannot read the free host memory from "
                       "/proc/meminfo");
    int64_t *layer = xcalloc((size_t)c->n_layers, sizeof *layer);
    engine_layer_bytes(m, c->n_layers, layer);
    for (int i = 0; i < c->n_layers; i++)
        p->layer_bytes = layer[i] > p->layer_bytes ? layer[i] : p->layer_bytes;
    int64_t rest = p->kv + p->activations + p->vision_ws + p->workspace;
    int max_off = b->weight_mapped ? c->n_layers : 0;
    int off = o.offload_layers < 0 ? 0 : o.offload_layers > max_off ? max_off : o.offload_layers;
    int64_t off_bytes = 0;
    for (int i = 0; i < off; i++)
        off_bytes += layer[c->n_layers - 1 - i];
    for (;;) { /* auto: the fewest layers (the last ones) that make the device side fit */
        int64_t sum = p->weights_text - off_bytes + p->weights_vision + rest;
        p->margin = engine_margin(sum);
        p->total = sum + p->margin;
        if (o.offload_layers >= 0 || p->total <= p->available || off >= max_off)
            break;
        off_bytes += layer[c->n_layers - 1 - off];
        off++;
    }
    free(layer);
    p->offload_layers = off;
    p->offload_bytes = off_bytes;
    p->host_total = p->features + p->vcache + p->offload_bytes;
    /* slots of one class alone on the device: its KV and its share of the activations;
     * the offload as planned */
    int64_t act0 = engine_act_bytes(&o, c, 0), act1 = engine_act_bytes(&o, c, 1);
    int64_t fixed = p->total - p->margin - p->kv - p->activations + act0;
    for (int i = 0; i < o.n_classes; i++) {
        int64_t per = o.classes[i].ctx_tok * p->kv_per_token + act1 - act0, lo = 0, hi = 1000000;
        while (lo < hi) { /* the largest n in 0..1e6 that fits: the need grows with n */
            int64_t n = (lo + hi + 1) / 2, need = fixed + n * per;
            if (need + engine_margin(need) <= p->available)
                lo = n;
            else
                hi = n - 1;
        }
        p->slots_fit[i] = (int)lo;
    }
    p->fits = p->total <= p->available && p->host_total <= p->host_available;
    return 0;
}

static double engine_mib(int64_t b)
{
    return (double)b / (1 << 20);
}

/* ---- open and close ---- */

/* The feature cache, keyed by the model file's identity (path, size, modification time:
 * a converted file is rewritten, never edited in place). */
static int engine_open_vcache(Engine *e, char *err)
{
    struct stat st;
    char *id;
    if (stat(e->model_path, &st) == 0)
        id = xasprintf("%s:%lld:%lld.%09ld", e->model_path, (long long)st.st_size,
                       (long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec);
    else
        id = xstrdup(e->model_path);
    int rc = vcache_open(id, e->opt.vcache_bytes, e->vcache_dir, &e->vcache, err);
    free(id);
    if (rc)
        err_prefix(err, "feature cache");
    return rc;
}

/* The step scratch: the batch's sequences, positions, visual rows and logits. */
static int engine_alloc_scratch(Engine *e, char *err)
{
    const ModelConfig *c = e->cfg;
    int64_t T = e->opt.max_batch_tok, h = c->hidden_size;
    e->seqs = xcalloc((size_t)e->n_slots, sizeof *e->seqs);
    e->batch_req = xcalloc((size_t)e->n_slots, sizeof *e->batch_req);
    e->pos3 = xcalloc((size_t)e->n_slots * 3, sizeof *e->pos3);
    e->chunk_pos = malloc((size_t)T * 3 * sizeof *e->chunk_pos);
    e->chunk_vrows = malloc((size_t)T * sizeof *e->chunk_vrows);
    e->chunk_vis = malloc((size_t)(T * h) * sizeof(float));
    e->chunk_deep = malloc((size_t)(T * h * (c->n_deepstack ? c->n_deepstack : 1)) *
                           sizeof(float));
    e->logits = malloc((size_t)e->n_slots * (size_t)c->vocab_size * sizeof(float));
    if (!e->chunk_pos || !e->chunk_vrows || !e->chunk_vis || !e->chunk_deep || !e->logits)
        return err_set(err, VLQ_ENOMEM, "engine: out of memory for the step scratch");
    return 0;
}

int engine_open(const EngineOptions *o, Engine **out, char *err)
{
    *out = NULL;
    Engine *e = xcalloc(1, sizeof *e);
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->work, NULL);
    int rc = engine_norm_options(o, &e->opt, err);
    if (!rc && !e->opt.model_path)
        rc = err_set(err, VLQ_EINPUT, "engine: no model file given");
    if (rc)
        goto fail;
    e->model_path = xstrdup(e->opt.model_path);
    e->backend_name = xstrdup(e->opt.backend);
    e->vcache_dir = e->opt.vcache_dir ? xstrdup(e->opt.vcache_dir) : NULL;
    e->opt.model_path = e->model_path;
    e->opt.backend = e->backend_name;
    e->opt.vcache_dir = e->vcache_dir;
    BackendOpenOptions bo = {.threads = e->opt.threads};
    char why[VLQ_ERRLEN + 128];
    rc = backend_open_auto(e->backend_name, &bo, &e->b, why, sizeof why, err);
    if (rc)
        goto fail;
    if (why[0]) /* auto says which it picked and why, once, at the start of a run */
        log_info("%s", why);
    rc = model_open_ex(e->model_path, e->opt.verify_model ? 0 : MODEL_OPEN_NO_VERIFY, &e->m, err);
    if (!rc)
        rc = model_load_tok(e->m, &e->tok, err);
    if (rc)
        goto fail;
    e->cfg = model_config(e->m);
    if (tok_n_vocab(e->tok) > e->cfg->vocab_size) {
        rc = err_set(err, VLQ_EMODEL, "%s: the tokenizer has %d ids, the model only %d (a test "
                     "model with remapped ids?)", e->model_path, (int)tok_n_vocab(e->tok),
                     e->cfg->vocab_size);
        goto fail;
    }
    rc = engine_plan_on(&e->opt, e->m, e->b, &e->plan, err);
    if (rc)
        goto fail;
    const EnginePlan *p = &e->plan;
    if (!p->fits) {
        Buf fit = {0};
        for (int i = 0; i < e->opt.n_classes; i++)
            buf_printf(&fit, "%s%s %d", i ? ", " : "", e->opt.classes[i].name, p->slots_fit[i]);
        rc = err_set(err, VLQ_ENOMEM, "memory plan: %.0f MiB needed, %.0f MiB available "
                     "(weights %.0f text + %.0f vision, KV %.0f, activations %.0f, vision %.0f, "
                     "features %.0f, cache %.0f, margin %.0f MiB); slots that would fit: %s",
                     engine_mib(p->total), engine_mib(p->available), engine_mib(p->weights_text),
                     engine_mib(p->weights_vision), engine_mib(p->kv),
                     engine_mib(p->activations), engine_mib(p->vision_ws),
                     engine_mib(p->features), engine_mib(p->vcache), engine_mib(p->margin),
                     fit.data);
        if (p->device)
            err_prefix(err, "%s (device; %d layers offloaded, host side %.0f of %.0f MiB)",
                       e->b->name, p->offload_layers, engine_mib(p->host_total),
                       engine_mib(p->host_available));
        buf_clear(&fit);
        goto fail;
    }
    if (p->offload_layers > 0)
        log_warn("memory plan: the last %d decoder layers (%.1f MiB) stay in pinned host memory "
                 "(%s), read over the bus at every decoder step (%.1f MiB per step, shared by "
                 "the batch's sequences)", p->offload_layers, engine_mib(p->offload_bytes),
                 e->opt.offload_layers < 0 ? "the device cannot hold every weight"
                                           : "[offload] layers",
                 engine_mib(p->offload_bytes));
    for (int i = 0; i < e->opt.n_classes; i++)
        e->n_slots += e->opt.classes[i].n_slots;
    e->slots = xcalloc((size_t)e->n_slots, sizeof *e->slots);
    int64_t row = 0;
    for (int i = 0, s = 0; i < e->opt.n_classes; i++)
        for (int k = 0; k < e->opt.classes[i].n_slots; k++, s++) {
            e->slots[s] = (EngineSlot){.cls = i, .kv_row0 = row, .cap = e->opt.classes[i].ctx_tok};
            row += e->opt.classes[i].ctx_tok;
        }
    rc = decoder_kv_init(&e->kv, e->cfg, e->b, e->opt.kv_f32 ? QUANT_F32 : QUANT_F16, row, err);
    DecoderOptions dopt = {.max_tok = e->opt.max_batch_tok, .max_seq = e->n_slots,
                           .offload_layers = p->offload_layers};
    if (!rc)
        rc = decoder_new(e->m, e->b, &dopt, &e->kv, &e->dec, err);
    /* a device allocates all its memory at open, the vision encoder's too, so nothing can
     * fail for memory half-way (a host backend makes it on the first visual request:
     * text runs never touch the tower; engine_sched.c) */
    if (!rc && p->device && p->weights_vision > 0) {
        rc = vision_new(e->m, e->b, e->opt.max_patches, &e->vision, err);
        size_t n = (size_t)(e->opt.max_patches / 4 + 1) * (size_t)e->cfg->hidden_size *
                   (size_t)(e->cfg->n_deepstack ? e->cfg->n_deepstack : 1);
        if (!rc && !(e->vision_deep = malloc(n * sizeof(float))))
            rc = err_set(err, VLQ_ENOMEM, "vision: out of memory for the DeepStack rows");
    }
    if (!rc)
        rc = engine_alloc_scratch(e, err);
    if (!rc && (e->opt.vcache_bytes > 0 || e->vcache_dir))
        rc = engine_open_vcache(e, err);
    if (rc)
        goto fail;
    log_info("engine: %d slots, KV %.0f MiB (%s), plan %.0f of %.0f MiB", e->n_slots,
             engine_mib(p->kv), e->opt.kv_f32 ? "f32" : "f16", engine_mib(p->total),
             engine_mib(p->available));
    *out = e;
    return 0;
fail:
    engine_close(e);
    return rc;
}

void engine_close(Engine *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&e->mu);
    e->stop = 1;
    pthread_cond_broadcast(&e->work);
    pthread_mutex_unlock(&e->mu);
    if (e->started)
        pthread_join(e->driver, NULL);
    EngineStats st;
    engine_stats(e, &st);
    log_debug("engine: %lld steps, %lld decode and %lld prefill rows; vision encoder %lld "
              "items; feature cache %lld hits, %lld misses, %lld bytes",
              (long long)st.steps, (long long)st.rows_decode, (long long)st.rows_prefill,
              (long long)st.vision_calls, (long long)st.vcache_hits,
              (long long)st.vcache_misses, (long long)st.vcache_bytes);
    /* every request still queued or running ends as cancelled */
    pthread_mutex_lock(&e->mu);
    EngineReq *w = e->wait_head;
    e->wait_head = e->wait_tail = NULL;
    e->n_waiting = 0;
    pthread_mutex_unlock(&e->mu);
    while (w) {
        EngineReq *next = w->next;
        engine_end(e, w, ENGINE_END_CANCELLED, 0, NULL);
        w = next;
    }
    for (int s = 0; e->slots && s < e->n_slots; s++)
        if (e->slots[s].req)
            engine_end(e, e->slots[s].req, ENGINE_END_CANCELLED, 0, NULL);
    decoder_free(e->dec);
    vision_free(e->vision);
    decoder_kv_clear(&e->kv);
    vcache_close(e->vcache);
    free(e->vision_deep);
    free(e->slots);
    free(e->seqs);
    free(e->batch_req);
    free(e->pos3);
    free(e->chunk_pos);
    free(e->chunk_vrows);
    free(e->chunk_vis);
    free(e->chunk_deep);
    free(e->logits);
    tok_free(e->tok);
    model_close(e->m);
    backend_close(e->b);
    free(e->model_path);
    free(e->backend_name);
    free(e->vcache_dir);
    pthread_cond_destroy(&e->work);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

const EnginePlan *engine_get_plan(const Engine *e)
{
    return &e->plan;
}

const Model *engine_model(const Engine *e)
{
    return e->m;
}

const Tok *engine_tok(const Engine *e)
{
    return e->tok;
}

void engine_stats(const Engine *e, EngineStats *s)
{
    Engine *me = (Engine *)e; /* the lock is not part of the value */
    pthread_mutex_lock(&me->mu);
    *s = e->stats;
    pthread_mutex_unlock(&me->mu);
}

/* ---- the visual layout of a prompt ---- */

int engine_visual_runs(const TokPrompt *pr, const TokChat *chat, EngineVisRun **runs,
                       int *n_runs, int *n_vis_tok, char *err)
{
    *runs = NULL;
    *n_runs = 0;
    *n_vis_tok = 0;
    if (!pr->n_pads)
        return 0;
    /* the item number of every part (-1 for text) */
    int *item_of = xmalloc(chat->n_parts * sizeof *item_of);
    for (size_t p = 0, k = 0; p < chat->n_parts; p++)
        item_of[p] = chat->parts[p].kind == TOK_PART_TEXT ? -1 : (int)k++;
    EngineVisRun *r = xcalloc(pr->n_pads, sizeof *r);
    int64_t total = 0;
    int rc = 0;
    for (size_t i = 0; i < pr->n_pads && !rc; i++) {
        const TokPads *pd = &pr->pads[i];
        const TokPart *part = pd->part < chat->n_parts ? &chat->parts[pd->part] : NULL;
        int64_t per_group = part ? (int64_t)part->grid_h * part->grid_w / 4 : 0;
        int64_t want = part && part->kind == TOK_PART_IMAGE ? per_group * part->grid_t
                                                             : per_group;
        if (!part || item_of[pd->part] < 0 || pd->group < 0 || pd->group >= part->grid_t ||
            (int64_t)pd->n_tok != want || (part->kind == TOK_PART_IMAGE && pd->group))
            rc = err_set(err, VLQ_EINPUT, "prompt: pad run %zu does not match its visual part",
                         i);
        else
            r[i] = (EngineVisRun){.item = item_of[pd->part],
                                  .item_row = (int64_t)pd->group * per_group,
                                  .row = (int64_t)pd->start, .n = (int64_t)pd->n_tok};
        total += (int64_t)pd->n_tok;
    }
    free(item_of);
    if (rc) {
        free(r);
        return rc;
    }
    *runs = r;
    *n_runs = (int)pr->n_pads;
    *n_vis_tok = (int)total;
    return 0;
}

/* ---- submit ---- */

/* Check the visual parts of r against its pixels and the vision workspace; fill the
 * grids of rope_index (images, videos in prompt order). */
static int engine_check_visual(const Engine *e, const EngineRequest *r, int32_t *img_grid,
                               int *n_img, int32_t *vid_grid, int *n_vid, char *err)
{
    const ModelConfig *c = e->cfg;
    int k = 0;
    *n_img = *n_vid = 0;
    for (size_t p = 0; p < r->chat->n_parts; p++) {
        const TokPart *part = &r->chat->parts[p];
        if (part->kind == TOK_PART_TEXT)
            continue;
        if (k >= r->n_visual || !r->visual || !r->visual[k] || !r->visual[k]->pixels)
            return err_set(err, VLQ_EINPUT, "request: visual part %d has no pixels (%d given)",
                           k + 1, r->n_visual);
        const PrepVisual *v = r->visual[k];
        if (v->grid_t != part->grid_t || v->grid_h != part->grid_h || v->grid_w != part->grid_w)
            return err_set(err, VLQ_EINPUT, "request: visual part %d: grid %dx%dx%d, pixels of "
                           "%dx%dx%d", k + 1, part->grid_t, part->grid_h, part->grid_w,
                           v->grid_t, v->grid_h, v->grid_w);
        int64_t group = (int64_t)v->grid_h * v->grid_w;
        if (group > e->opt.max_patches)
            return err_set(err, VLQ_EINPUT, "request: visual part %d: %d x %d = %lld patches per "
                           "frame, more than the vision workspace's %d (max_patches)", k + 1,
                           v->grid_h, v->grid_w, (long long)group, e->opt.max_patches);
        int32_t *g = part->kind == TOK_PART_VIDEO ? vid_grid + 3 * (*n_vid)++
                                                  : img_grid + 3 * (*n_img)++;
        g[0] = v->grid_t;
        g[1] = v->grid_h;
        g[2] = v->grid_w;
        k++;
    }
    if (k != r->n_visual)
        return err_set(err, VLQ_EINPUT, "request: %d visual parts in the chat, %d pixel sets",
                       k, r->n_visual);
    int64_t pd = (int64_t)c->v_in_channels * c->v_temporal_patch_size * c->v_patch_size *
                 c->v_patch_size;
    if (k && pd != PREP_ROW)
        return err_set(err, VLQ_EINPUT, "request: the model's patches have %lld values, the "
                       "preprocessor's %d", (long long)pd, PREP_ROW);
    return 0;
}

/* The smallest class with slots whose budget holds budget_tok, or -1. */
static int engine_class_for(const Engine *e, int budget_tok)
{
    int best = -1;
    for (int i = 0; i < e->opt.n_classes; i++) {
        const EngineClass *c = &e->opt.classes[i];
        if (c->n_slots > 0 && c->ctx_tok >= budget_tok &&
            (best < 0 || c->ctx_tok < e->opt.classes[best].ctx_tok))
            best = i;
    }
    return best;
}

/* Tokenise, check and lay out r into q (which the caller frees on error). */
static int engine_prepare(Engine *e, const EngineRequest *r, EngineReq *q, char *err)
{
    if (!r->chat || r->max_new_tok < 1 || r->budget_tok < 1 || r->n_visual < 0 ||
        r->n_visual > ENGINE_MAX_VISUAL)
        return err_set(err, VLQ_EINPUT, "request: no chat, or budget %d, max_new_tokens %d, "
                       "%d visual parts (1.., 1.., 0..%d)", r->budget_tok, r->max_new_tok,
                       r->n_visual, ENGINE_MAX_VISUAL);
    int32_t img[3 * ENGINE_MAX_VISUAL], vid[3 * ENGINE_MAX_VISUAL];
    int n_img, n_vid;
    int rc = engine_check_visual(e, r, img, &n_img, vid, &n_vid, err);
    if (!rc)
        rc = tok_chat_encode(e->tok, r->chat, &q->pr, err);
    if (!rc)
        rc = engine_visual_runs(&q->pr, r->chat, &q->runs, &q->n_runs, &q->vis_tok, err);
    if (rc)
        return rc;
    int L = (int)q->pr.ids.n, largest = 0;
    for (int i = 0; i < e->opt.n_classes; i++)
        if (e->opt.classes[i].n_slots > 0 && e->opt.classes[i].ctx_tok > largest)
            largest = e->opt.classes[i].ctx_tok;
    q->cls = engine_class_for(e, r->budget_tok);
    if (q->cls < 0)
        return err_set(err, VLQ_EINPUT, "budget of %d tokens: no budget class is that large "
                       "(the largest with slots has %d)", r->budget_tok, largest);
    if (L + 1 > r->budget_tok)
        return err_set(err, VLQ_EINPUT, "%d visual + %d text = %d prompt tokens leave no room "
                       "for one new token in the budget of %d", q->vis_tok, L - q->vis_tok, L,
                       r->budget_tok);
    if ((int64_t)L + r->max_new_tok > r->budget_tok)
        return err_set(err, VLQ_EINPUT, "%d visual + %d text = %d prompt tokens + "
                       "max_new_tokens %d = %lld: over the budget of %d", q->vis_tok,
                       L - q->vis_tok, L, r->max_new_tok, (long long)L + r->max_new_tok,
                       r->budget_tok);
    q->pos = xmalloc((size_t)L * 3 * sizeof *q->pos);
    return decoder_rope_index(e->cfg, q->pr.ids.ids, L, img, n_img, vid, n_vid, q->pos,
                              &q->rope_delta, err);
}

int engine_submit(Engine *e, const EngineRequest *r, EngineReq **out, char *err)
{
    *out = NULL;
    EngineReq *q = xcalloc(1, sizeof *q);
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&q->mu, &ma);
    pthread_mutexattr_destroy(&ma);
    pthread_cond_init(&q->cv, NULL);
    q->e = e;
    q->r = *r;
    q->slot = -1;
    q->t_submit = util_mono_s();
    int rc = engine_prepare(e, r, q, err);
    pthread_mutex_lock(&e->mu);
    if (rc) {
        e->stats.requests_refused++;
        pthread_mutex_unlock(&e->mu);
        engine_req_destroy(q);
        return rc;
    }
    q->res.prompt_tok = (int)q->pr.ids.n;
    q->res.visual_tok = q->vis_tok;
    if (e->wait_tail)
        e->wait_tail->next = q;
    else
        e->wait_head = q;
    e->wait_tail = q;
    e->n_waiting++;
    pthread_cond_signal(&e->work);
    pthread_mutex_unlock(&e->mu);
    *out = q;
    return 0;
}

/* ---- request handles ---- */

void engine_req_destroy(EngineReq *q)
{
    tok_prompt_clear(&q->pr);
    free(q->pos);
    free(q->runs);
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

void engine_cancel(EngineReq *q)
{
    pthread_mutex_lock(&q->mu);
    q->cancel = 1;
    pthread_mutex_unlock(&q->mu);
}

int engine_req_poll(EngineReq *q, EngineResult *res)
{
    pthread_mutex_lock(&q->mu);
    int ended = q->ended;
    if (ended && res)
        *res = q->res;
    pthread_mutex_unlock(&q->mu);
    return ended;
}

void engine_req_wait(EngineReq *q, EngineResult *res)
{
    pthread_mutex_lock(&q->mu);
    while (!q->ended)
        pthread_cond_wait(&q->cv, &q->mu);
    if (res)
        *res = q->res;
    pthread_mutex_unlock(&q->mu);
}

void engine_req_free(EngineReq *q)
{
    if (!q)
        return;
    pthread_mutex_lock(&q->mu);
    int ended = q->ended;
    if (!ended) {
        /* the engine still holds it: it ends as cancelled and the engine frees it */
        q->user_gone = 1;
        q->cancel = 1;
    }
    pthread_mutex_unlock(&q->mu);
    if (ended)
        engine_req_destroy(q);
}
