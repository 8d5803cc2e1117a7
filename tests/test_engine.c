/* test_engine: the engine (engine.h) on a tiny random Qwen3-VL with the real vocabulary
 * (build/make-tiny, converted to Q4 by `vlq convert`, as tests/e2e/run_tiny.sh does).
 *
 * batch_equals_alone: requests of different prompt lengths, max_new_tokens and an
 * image, submitted at different steps into slots of a small max_batch_tok (prefills cut
 * into chunks beside decodes), each give the greedy tokens they give alone on an engine
 * that does not chunk. refusals: over budget, no class, no room, too many patches, with
 * the numbers. cancel: mid-decode, the slot goes to the next request. mem_limit: the plan
 * refuses slots that do not fit; one slot serves several requests in turn. image: the
 * vision encoder runs once per item, the same image again comes from the feature cache
 * (in memory, then on disk for another engine), a video encoded in chunks of frame
 * groups gives the same tokens. threads: engine_req_wait from several threads over engine_start. */
#include "engine.h"
#include "err.h"
#include "model.h"
#include "test.h"
#include "util.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SINK_MAX 256

/* What a request's callbacks saw. */
typedef struct {
    int32_t toks[SINK_MAX];
    int n_tok;
    Buf text;
    EngineResult res;
    int n_end;
} Sink;

static void sink_token(void *user, int32_t id, const char *text, size_t len)
{
    Sink *s = user;
    if (id != ENGINE_TOKEN_TAIL && s->n_tok < SINK_MAX)
        s->toks[s->n_tok++] = id;
    buf_append(&s->text, text, len);
}

static void sink_end(void *user, const EngineResult *r)
{
    Sink *s = user;
    s->res = *r;
    s->n_end++;
}

/* The tiny model in the test's temp dir; skips without the tools. */
static const char *tiny_model(void)
{
    const char *vlq = getenv("VLQ_BIN"), *mk = getenv("VLQ_MAKE_TINY_BIN");
    if (!vlq || !mk)
        test_skip("VLQ_BIN or VLQ_MAKE_TINY_BIN not set (run through make test)");
    static char path[4200];
    snprintf(path, sizeof path, "%s", test_path("tiny.vlq"));
    int rc = test_sh("cd '%s' && VLQ_ROOT='%s' '%s' tiny 7 && '%s' -q convert tiny -o tiny.vlq "
                     "--quant q4", test_tmpdir(), test_root(), mk, vlq);
    CHECK_EQ(rc, 0);
    return path;
}

static EngineOptions tiny_opts(const char *path, int ocr_slots, int max_batch_tok)
{
    EngineOptions o = {.model_path = path, .backend = "cpu",
                       .max_batch_tok = max_batch_tok, .mem_limit = 8LL << 30};
    o.classes[0] = (EngineClass){.name = "ocr", .ctx_tok = 256, .n_slots = ocr_slots};
    o.classes[1] = (EngineClass){.name = "video", .ctx_tok = 512, .n_slots = 1};
    o.n_classes = 2;
    return o;
}

/* A request: the chat parts, its pixels, the sink. */
typedef struct {
    TokPart parts[3];
    TokChat chat;
    const PrepVisual *vis[2];
    EngineRequest r;
    Sink sink;
} Req;

static void req_init(Req *q, const char *text, const PrepVisual *img, int video, int max_new)
{
    memset(q, 0, sizeof *q);
    static const double times[8] = {0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5};
    int n = 0;
    if (img) {
        q->parts[n++] = (TokPart){.kind = video ? TOK_PART_VIDEO : TOK_PART_IMAGE,
                                  .grid_t = img->grid_t, .grid_h = img->grid_h,
                                  .grid_w = img->grid_w, .times_s = video ? times : NULL};
        q->vis[0] = img;
    }
    q->parts[n++] = (TokPart){.kind = TOK_PART_TEXT, .text = text};
    q->chat = (TokChat){.parts = q->parts, .n_parts = (size_t)n};
    q->r = (EngineRequest){.chat = &q->chat, .visual = q->vis, .n_visual = img ? 1 : 0,
                           .budget_tok = video ? 512 : 256, .max_new_tok = max_new,
                           .on_token = sink_token, .on_end = sink_end, .user = &q->sink};
}

static void req_clear(Req *q)
{
    buf_clear(&q->sink.text);
}

/* Synthetic pixels: a grid of t x h x w patches, seeded noise in [-1, 1]. */
static void tiny_visual(PrepVisual *v, int t, int h, int w, uint64_t seed)
{
    memset(v, 0, sizeof *v);
    v->grid_t = t;
    v->grid_h = h;
    v->grid_w = w;
    size_t n = (size_t)t * h * w * PREP_ROW;
    v->pixels = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        v->pixels[i] = (float)((double)(seed >> 11) / 4503599627370496.0 - 1.0);
    }
}

/* Step e until idle (at most max_steps); returns the steps taken. */
static int run_until_idle(Engine *e, int max_steps)
{
    char err[VLQ_ERRLEN] = "";
    int steps = 0, left = 1;
    while (left > 0 && steps < max_steps) {
        left = engine_step(e, err);
        steps++;
    }
    CHECK_EQ(left, 0);
    return steps;
}

/* The tokens of q run alone on a fresh engine of options o. */
static void run_alone(const EngineOptions *o, Req *q)
{
    char err[VLQ_ERRLEN] = "";
    Engine *e = NULL;
    CHECK_EQ(engine_open(o, &e, err), 0);
    if (!e) {
        test_fail(__FILE__, __LINE__, "engine_open: %s", err);
        return;
    }
    EngineReq *h = NULL;
    CHECK_EQ(engine_submit(e, &q->r, &h, err), 0);
    run_until_idle(e, 1000);
    CHECK(engine_req_poll(h, NULL));
    engine_req_free(h);
    engine_close(e);
}

static void check_same_tokens(const char *what, const Sink *got, const Sink *want)
{
    int same = got->n_tok == want->n_tok && !memcmp(got->toks, want->toks,
                                                     (size_t)got->n_tok * sizeof got->toks[0]);
    if (!same)
        test_fail(__FILE__, __LINE__, "%s: %d tokens, alone %d (first %d vs %d)", what,
                  got->n_tok, want->n_tok, got->n_tok ? got->toks[0] : -1,
                  want->n_tok ? want->toks[0] : -1);
    CHECK_EQ(got->n_end, 1);
    CHECK(got->res.reason == want->res.reason);
    CHECK_STR(got->text.data ? got->text.data : "", want->text.data ? want->text.data : "");
}

static const char *const long_text =
    "Read the following carefully and answer in one word: the quick brown fox jumps over "
    "the lazy dog, while seven wizards quietly judge boxing matches in the old town hall.";

static void test_batch_equals_alone(void)
{
    const char *path = tiny_model();
    PrepVisual img;
    tiny_visual(&img, 1, 8, 8, 11); /* 16 visual tokens: they cross a 16-row chunk */
    enum { N = 5 };
    static const char *texts[N] = {"Hi", "Describe the weather.", NULL, "What is this?",
                                   "Tell a story about a cat."};
    int max_new[N] = {6, 9, 5, 7, 4};
    Req alone[N], batch[N];
    for (int i = 0; i < N; i++) {
        const char *t = texts[i] ? texts[i] : long_text;
        req_init(&alone[i], t, i == 3 ? &img : NULL, 0, max_new[i]);
        req_init(&batch[i], t, i == 3 ? &img : NULL, 0, max_new[i]);
    }
    EngineOptions big = tiny_opts(path, 1, 512);
    for (int i = 0; i < N; i++)
        run_alone(&big, &alone[i]);
    /* 3 ocr slots, 16 rows a step: the long prompt and the image take several chunks */
    EngineOptions o = tiny_opts(path, 3, 16);
    char err[VLQ_ERRLEN] = "";
    Engine *e = NULL;
    CHECK_EQ(engine_open(&o, &e, err), 0);
    if (!e) {
        test_fail(__FILE__, __LINE__, "%s", err);
        return;
    }
    EngineReq *h[N] = {0};
    int arrive[N] = {0, 0, 1, 3, 5}, submitted = 0, step = 0, left = 1;
    while ((left > 0 || submitted < N) && step < 500) {
        while (submitted < N && arrive[submitted] <= step) {
            CHECK_EQ(engine_submit(e, &batch[submitted].r, &h[submitted], err), 0);
            submitted++;
        }
        left = engine_step(e, err);
        CHECK(left >= 0);
        step++;
    }
    CHECK_EQ(left, 0);
    int64_t prompt_tok = 0;
    for (int i = 0; i < N; i++) {
        char what[32];
        snprintf(what, sizeof what, "request %d", i);
        check_same_tokens(what, &batch[i].sink, &alone[i].sink);
        CHECK(engine_req_poll(h[i], NULL));
        prompt_tok += batch[i].sink.res.prompt_tok;
        engine_req_free(h[i]);
    }
    EngineStats st;
    engine_stats(e, &st);
    fprintf(stderr, "    %lld steps, %lld decode rows, %lld prefill rows\n", (long long)st.steps,
            (long long)st.rows_decode, (long long)st.rows_prefill);
    CHECK_EQ(st.rows_prefill, prompt_tok);
    CHECK(st.rows_prefill + st.rows_decode <= st.steps * 16);
    CHECK(st.steps > prompt_tok / 16);
    CHECK_EQ(st.requests_done, N);
    CHECK_EQ(st.vision_calls, 1);
    CHECK_EQ(batch[3].sink.res.visual_tok, 16);
    engine_close(e);
    for (int i = 0; i < N; i++) {
        req_clear(&alone[i]);
        req_clear(&batch[i]);
    }
    prep_visual_clear(&img);
}

static void test_refusals(void)
{
    const char *path = tiny_model();
    EngineOptions o = tiny_opts(path, 1, 64);
    o.max_patches = 64;
    char err[VLQ_ERRLEN] = "";
    Engine *e = NULL;
    CHECK_EQ(engine_open(&o, &e, err), 0);
    if (!e) {
        test_fail(__FILE__, __LINE__, "%s", err);
        return;
    }
    Req q;
    EngineReq *h = NULL;
    /* over budget: prompt + max_new_tokens > budget */
    req_init(&q, "Hello there.", NULL, 0, 250);
    CHECK_EQ(engine_submit(e, &q.r, &h, err), VLQ_EINPUT);
    CHECK(h == NULL);
    fprintf(stderr, "    %s\n", err);
    CHECK(strstr(err, "0 visual") && strstr(err, "max_new_tokens 250") &&
          strstr(err, "budget of 256"));
    /* no class large enough */
    q.r.max_new_tok = 10;
    q.r.budget_tok = 100000;
    CHECK_EQ(engine_submit(e, &q.r, &h, err), VLQ_EINPUT);
    fprintf(stderr, "    %s\n", err);
    CHECK(strstr(err, "100000") && strstr(err, "no budget class"));
    /* no room for one token */
    req_init(&q, long_text, NULL, 0, 1);
    q.r.budget_tok = 20;
    CHECK_EQ(engine_submit(e, &q.r, &h, err), VLQ_EINPUT);
    fprintf(stderr, "    %s\n", err);
    CHECK(strstr(err, "no room for one new token") && strstr(err, "budget of 20"));
    /* too many patches for the vision workspace (64): one 16 x 8 frame */
    PrepVisual img;
    tiny_visual(&img, 1, 16, 8, 3);
    req_init(&q, "What is this?", &img, 0, 4);
    CHECK_EQ(engine_submit(e, &q.r, &h, err), VLQ_EINPUT);
    fprintf(stderr, "    %s\n", err);
    CHECK(strstr(err, "128 patches") && strstr(err, "64"));
    /* pixels that disagree with the chat's grid */
    PrepVisual other = img;
    other.grid_h = 8;
    q.vis[0] = &other;
    CHECK_EQ(engine_submit(e, &q.r, &h, err), VLQ_EINPUT);
    CHECK(strstr(err, "grid") != NULL);
    EngineStats st;
    engine_stats(e, &st);
    CHECK_EQ(st.requests_refused, 5);
    CHECK_EQ(st.vision_calls, 0);
    CHECK_EQ(engine_step(e, err), 0); /* nothing queued */
    engine_close(e);
    prep_visual_clear(&img);
}

static void test_cancel(void)
{
    const char *path = tiny_model();
    EngineOptions o = tiny_opts(path, 1, 64);
    char err[VLQ_ERRLEN] = "";
    Engine *e = NULL;
    CHECK_EQ(engine_open(&o, &e, err), 0);
    if (!e) {
        test_fail(__FILE__, __LINE__, "%s", err);
        return;
    }
    Req a, b, c, b_alone;
    req_init(&a, "Count to one hundred.", NULL, 0, 100);
    req_init(&b, "Describe the weather.", NULL, 0, 6);
    req_init(&c, "Hi", NULL, 0, 50);
    req_init(&b_alone, "Describe the weather.", NULL, 0, 6);
    run_alone(&o, &b_alone);
    EngineReq *ha = NULL, *hb = NULL, *hc = NULL;
    CHECK_EQ(engine_submit(e, &a.r, &ha, err), 0);
    CHECK_EQ(engine_submit(e, &b.r, &hb, err), 0);
    for (int i = 0; i < 100 && a.sink.n_tok < 3; i++)
        engine_step(e, err);
    CHECK(a.sink.n_tok >= 3);
    CHECK_EQ(b.sink.n_tok, 0); /* one slot: b waits */
    CHECK(!engine_req_poll(hb, NULL));
    engine_cancel(ha);
    engine_step(e, err);
    EngineResult r;
    CHECK(engine_req_poll(ha, &r));
    CHECK_EQ(r.reason, ENGINE_END_CANCELLED);
    CHECK_EQ(r.gen_tok, a.sink.n_tok);
    CHECK_EQ(a.sink.n_end, 1);
    /* b got the slot in the same step */
    CHECK_EQ(engine_submit(e, &c.r, &hc, err), 0);
    run_until_idle(e, 200);
    check_same_tokens("after cancel", &b.sink, &b_alone.sink);
    CHECK_EQ(c.sink.res.reason, ENGINE_END_LENGTH);
    /* freeing a running request cancels it; the engine frees it at its end */
    Req d;
    req_init(&d, "Hi", NULL, 0, 50);
    EngineReq *hd = NULL;
    CHECK_EQ(engine_submit(e, &d.r, &hd, err), 0);
    engine_step(e, err);
    engine_step(e, err);
    engine_req_free(hd);
    run_until_idle(e, 10);
    CHECK_EQ(d.sink.n_end, 0); /* no callbacks after free */
    /* cancelling a waiting request ends it before it runs */
    Req w;
    req_init(&w, "Hi", NULL, 0, 5);
    EngineReq *hw = NULL;
    CHECK_EQ(engine_submit(e, &w.r, &hw, err), 0);
    engine_cancel(hw);
    CHECK_EQ(engine_step(e, err), 0);
    CHECK(engine_req_poll(hw, &r));
    CHECK_EQ(r.reason, ENGINE_END_CANCELLED);
    CHECK_EQ(r.gen_tok, 0);
    engine_req_free(ha);
    engine_req_free(hb);
    engine_req_free(hc);
    engine_req_free(hw);
    engine_close(e);
    req_clear(&a);
    req_clear(&b);
    req_clear(&c);
    req_clear(&d);
    req_clear(&w);
    req_clear(&b_alone);
}

static void test_mem_limit(void)
{
    const char *path = tiny_model();
    char err[VLQ_ERRLEN] = "";
    Model *m = NULL;
    CHECK_EQ(model_open(path, &m, err), 0);
    if (!m) {
        test_fail(__FILE__, __LINE__, "%s", err);
        return;
    }
    EngineOptions o4 = tiny_opts(path, 4, 64), o1 = tiny_opts(path, 1, 64);
    o4.classes[1].n_slots = o1.classes[1].n_slots = 0;
    EnginePlan p4, p1;
    CHECK_EQ(engine_plan(&o4, m, &p4, err), 0);
    CHECK_EQ(engine_plan(&o1, m, &p1, err), 0);
    model_close(m);
    CHECK(p4.fits && p1.fits);
    CHECK_EQ(p4.kv, 4 * 256 * p4.kv_per_token);
    CHECK(p4.total > p1.total);
    CHECK(p4.weights_text > 0 && p4.weights_vision > 0 && p4.activations > 0);
    fprintf(stderr, "    plan: total %lld, kv %lld (%lld per token), weights %lld + %lld\n",
            (long long)p1.total, (long long)p1.kv, (long long)p1.kv_per_token,
            (long long)p1.weights_text, (long long)p1.weights_vision);
    /* four slots do not fit where one does */
    o4.mem_limit = o1.mem_limit = p1.total;
    Engine *e = NULL;
    CHECK_EQ(engine_open(&o4, &e, err), VLQ_ENOMEM);
    CHECK(e == NULL);
    fprintf(stderr, "    %s\n", err);
    CHECK(strstr(err, "MiB needed") && strstr(err, "slots that would fit: ocr 1"));
    CHECK_EQ(engine_open(&o1, &e, err), 0);
    if (!e) {
        test_fail(__FILE__, __LINE__, "%s", err);
        return;
    }
    CHECK_EQ(engine_get_plan(e)->slots_fit[0], 1);
    /* three requests through one slot: they wait their turn, all finish */
    Req q[3];
    EngineReq *h[3];
    for (int i = 0; i < 3; i++) {
        req_init(&q[i], i == 1 ? long_text : "Hi", NULL, 0, 5 + i);
        CHECK_EQ(engine_submit(e, &q[i].r, &h[i], err), 0);
    }
    run_until_idle(e, 300);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(q[i].sink.n_end, 1);
        CHECK(q[i].sink.res.reason == ENGINE_END_LENGTH || q[i].sink.res.reason == ENGINE_END_EOS);
        CHECK_EQ(q[i].sink.res.code, 0);
        engine_req_free(h[i]);
        req_clear(&q[i]);
    }
    CHECK(q[2].sink.res.queue_s > q[0].sink.res.queue_s);
    engine_close(e);
}

static void test_image(void)
{
    const char *path = tiny_model();
    PrepVisual img, vid;
    tiny_visual(&img, 1, 4, 6, 5);
    tiny_visual(&vid, 3, 4, 4, 9); /* 3 frame groups of 16 patches */
    char err[VLQ_ERRLEN] = "";
    /* the video alone with a workspace of all its patches, then of one group (16 patches) */
    Req v_whole, v_chunked;
    req_init(&v_whole, "What happens?", &vid, 1, 6);
    req_init(&v_chunked, "What happens?", &vid, 1, 6);
    EngineOptions o = tiny_opts(path, 1, 64);
    run_alone(&o, &v_whole);
    o.max_patches = 16;
    run_alone(&o, &v_chunked);
    check_same_tokens("video encoded one group at a time", &v_chunked.sink, &v_whole.sink);
    CHECK_EQ(v_whole.sink.res.visual_tok, 12);
    CHECK(v_whole.sink.res.vision_s > 0);
    /* an image end to end; the vision encoder is made on demand and counted; the same
     * image again comes from the feature cache */
    o.max_patches = 0;
    o.vcache_bytes = 16 << 20;
    o.vcache_dir = test_path("vcache");
    Engine *e = NULL;
    CHECK_EQ(engine_open(&o, &e, err), 0);
    if (!e) {
        test_fail(__FILE__, __LINE__, "%s", err);
        return;
    }
    Req a, b, t, c;
    req_init(&t, "Hi", NULL, 0, 3);
    req_init(&a, "What is in the picture?", &img, 0, 6);
    req_init(&b, "What is in the picture?", &img, 0, 6);
    req_init(&c, "What is in the picture?", &img, 0, 6);
    EngineReq *ht, *ha, *hb, *hc;
    CHECK_EQ(engine_submit(e, &t.r, &ht, err), 0);
    run_until_idle(e, 50);
    EngineStats st;
    engine_stats(e, &st);
    CHECK_EQ(st.vision_calls, 0); /* text only: no vision */
    CHECK_EQ(engine_submit(e, &a.r, &ha, err), 0);
    run_until_idle(e, 50);
    CHECK_EQ(engine_submit(e, &b.r, &hb, err), 0);
    run_until_idle(e, 50);
    engine_stats(e, &st);
    CHECK_EQ(a.sink.res.visual_tok, 6);
    CHECK_EQ(a.sink.res.reason, ENGINE_END_LENGTH);
    check_same_tokens("the same image again", &b.sink, &a.sink);
    CHECK_EQ(st.vision_calls, 1);
    CHECK_EQ(st.vcache_hits, 1);
    CHECK_EQ(st.vcache_misses, 1);
    CHECK(st.vcache_bytes > 0);
    engine_close(e);
    /* another engine on the same model finds it on disk */
    CHECK_EQ(engine_open(&o, &e, err), 0);
    if (e) {
        CHECK_EQ(engine_submit(e, &c.r, &hc, err), 0);
        run_until_idle(e, 50);
        engine_stats(e, &st);
        CHECK_EQ(st.vision_calls, 0);
        CHECK_EQ(st.vcache_hits, 1);
        check_same_tokens("the image from the disk cache", &c.sink, &a.sink);
        engine_req_free(hc);
        engine_close(e);
    }
    req_clear(&c);
    engine_req_free(ht);
    engine_req_free(ha);
    engine_req_free(hb);
    req_clear(&a);
    req_clear(&b);
    req_clear(&t);
    req_clear(&v_whole);
    req_clear(&v_chunked);
    prep_visual_clear(&img);
    prep_visual_clear(&vid);
}

/* The f16 KV cache (the default) and the f32 one give the same greedy tokens, batched
 * with chunked prefills and an image; the plan counts half the bytes per token. */
static void test_kv_f16_f32(void)
{
    const char *path = tiny_model();
    PrepVisual img;
    tiny_visual(&img, 1, 8, 8, 13);
    enum { N = 3 };
    static const char *texts[N] = {"Describe the weather.", NULL, "What is this?"};
    Req q[2][N];
    EnginePlan plan[2];
    for (int f32 = 0; f32 < 2; f32++) {
        EngineOptions o = tiny_opts(path, 3, 16);
        o.kv_f32 = f32;
        char err[VLQ_ERRLEN] = "";
        Engine *e = NULL;
        CHECK_EQ(engine_open(&o, &e, err), 0);
        if (!e) {
            test_fail(__FILE__, __LINE__, "%s", err);
            return;
        }
        plan[f32] = *engine_get_plan(e);
        EngineReq *h[N];
        for (int i = 0; i < N; i++) {
            req_init(&q[f32][i], texts[i] ? texts[i] : long_text, i == 2 ? &img : NULL, 0, 12);
            CHECK_EQ(engine_submit(e, &q[f32][i].r, &h[i], err), 0);
        }
        run_until_idle(e, 300);
        for (int i = 0; i < N; i++)
            engine_req_free(h[i]);
        engine_close(e);
    }
    CHECK_EQ(plan[1].kv_per_token, 2 * plan[0].kv_per_token);
    /* The tiny random model's logits are nearly flat (hidden 64), so after the first token
     * a rounding difference can flip a near-tie and the two generations part: the f16
     * cache's tolerance is checked on logits, teacher-forced, by forward/golden_f16_kv_*
     * (within 1e-3 of the range, 20/20 greedy tokens). Here: the first token (computed
     * from the prompt's cached keys and values) agrees and every request completes. */
    for (int i = 0; i < N; i++) {
        CHECK_EQ(q[0][i].sink.n_tok, 12);
        CHECK_EQ(q[1][i].sink.n_tok, 12);
        CHECK_EQ(q[0][i].sink.toks[0], q[1][i].sink.toks[0]);
        CHECK_EQ(q[0][i].sink.n_end, 1);
        req_clear(&q[0][i]);
        req_clear(&q[1][i]);
    }
    prep_visual_clear(&img);
}

typedef struct {
    Engine *e;
    Req *q;
    int rc;
} Waiter;

static void *waiter_main(void *arg)
{
    Waiter *w = arg;
    char err[VLQ_ERRLEN];
    EngineReq *h = NULL;
    w->rc = engine_submit(w->e, &w->q->r, &h, err);
    if (w->rc)
        return NULL;
    EngineResult r;
    engine_req_wait(h, &r);
    w->rc = r.reason == ENGINE_END_ERROR ? -1 : 0;
    engine_req_free(h);
    return NULL;
}

static void test_threads(void)
{
    const char *path = tiny_model();
    enum { N = 4 };
    static const char *texts[N] = {"Hi", "Describe the weather.", "What is two plus two?",
                                   "Tell a story."};
    Req alone[N], q[N];
    EngineOptions o = tiny_opts(path, 2, 32);
    for (int i = 0; i < N; i++) {
        req_init(&alone[i], texts[i], NULL, 0, 4 + i);
        req_init(&q[i], texts[i], NULL, 0, 4 + i);
        run_alone(&o, &alone[i]);
    }
    char err[VLQ_ERRLEN] = "";
    Engine *e = NULL;
    CHECK_EQ(engine_open(&o, &e, err), 0);
    if (!e) {
        test_fail(__FILE__, __LINE__, "%s", err);
        return;
    }
    CHECK_EQ(engine_start(e, err), 0);
    CHECK_EQ(engine_start(e, err), VLQ_EINPUT);
    pthread_t th[N];
    Waiter w[N];
    for (int i = 0; i < N; i++) {
        w[i] = (Waiter){.e = e, .q = &q[i]};
        pthread_create(&th[i], NULL, waiter_main, &w[i]);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(w[i].rc, 0);
        check_same_tokens(texts[i], &q[i].sink, &alone[i].sink);
    }
    /* a request left running is ended by engine_close, and stays readable */
    Req last;
    req_init(&last, "Count to one hundred.", NULL, 0, 200);
    EngineReq *h = NULL;
    CHECK_EQ(engine_submit(e, &last.r, &h, err), 0);
    engine_close(e);
    EngineResult r;
    CHECK(engine_req_poll(h, &r));
    CHECK(r.reason == ENGINE_END_CANCELLED || r.reason == ENGINE_END_LENGTH ||
          r.reason == ENGINE_END_EOS);
    CHECK_EQ(last.sink.n_end, 1);
    engine_req_free(h);
    req_clear(&last);
    for (int i = 0; i < N; i++) {
        req_clear(&alone[i]);
        req_clear(&q[i]);
    }
}

TEST_GROUP(engine, {"batch_equals_alone", test_batch_equals_alone, 300},
           {"refusals", test_refusals, 0}, {"cancel", test_cancel, 0},
           {"mem_limit", test_mem_limit, 0}, {"image", test_image, 0},
           {"threads", test_threads, 0}, {"kv_f16_f32", test_kv_f16_f32, 0})
