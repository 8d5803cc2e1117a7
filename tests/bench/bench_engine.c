/* vlq-bench-engine: vlq's side of `make bench-engine` (tests/bench/bench_engine.sh runs
 * it beside llama.cpp and prints the table; tests/bench/README.md). One figure per
 * process, so each process's peak RSS is that figure's own. Results go to stdout as
 * "key value" lines, progress to stderr.
 *
 *   membw THREADS                  read bandwidth: sum over a 1 GiB array, best of 5 (GB/s)
 *   bytes MODEL                    weight bytes one decode step reads (the text weights,
 *                                  the tied output head counted once) and the file size
 *   decode MODEL THREADS NTOK      batch-1 decode from position 0, NTOK tokens (tok/s)
 *   prefill MODEL THREADS NTOK     one prompt of NTOK tokens in one forward (tok/s)
 *   engine MODEL THREADS NREQ NTOK NREQ concurrent requests through the engine API, NTOK
 *                                  new tokens each: total decode tokens/s
 *   batch MODEL THREADS NREQ NTOK  the same rows through the decoder directly (no engine):
 *                                  NREQ sequences decoding together, NTOK steps
 *   vision MODEL THREADS SIDE      the vision encoder on one SIDE x SIDE image (seconds)
 *   exec CMD [ARG...]              run CMD, then print its peak RSS (for the peer)
 *
 * The weights are whatever the model file holds (random for the benchmark); token ids
 * are seeded noise. The decode and prefill timings call the decoder directly (the same
 * forward the engine drives, F16 KV cache as the engine's default), without sampling or
 * tokenising; the concurrent figure goes through the engine (engine.h). */
#include "backend.h"
#include "decoder.h"
#include "engine.h"
#include "err.h"
#include "model.h"
#include "util.h"
#include "vision.h"

#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t bench_rng = 0x243f6a8885a308d3ULL;

static uint32_t bench_next(void)
{
    bench_rng ^= bench_rng << 13, bench_rng ^= bench_rng >> 7, bench_rng ^= bench_rng << 17;
    return (uint32_t)(bench_rng >> 32);
}

static void bench_rss(const char *key)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("%s %.3f\n", key, ru.ru_maxrss * 1024.0 / 1e9); /* GB */
}

/* ---- membw ---- */
typedef uint64_t BenchV2 __attribute__((vector_size(16)));

/* The sum of n words (n a multiple of 8) with four independent vector accumulators, so
 * the loads, not the adds, bound it. */
static uint64_t bench_sum(const uint64_t *a, int64_t n)
{
    BenchV2 s0 = {0, 0}, s1 = s0, s2 = s0, s3 = s0;
    for (int64_t i = 0; i < n; i += 8) {
        BenchV2 v0, v1, v2, v3;
        memcpy(&v0, a + i, 16);
        memcpy(&v1, a + i + 2, 16);
        memcpy(&v2, a + i + 4, 16);
        memcpy(&v3, a + i + 6, 16);
        s0 += v0, s1 += v1, s2 += v2, s3 += v3;
    }
    BenchV2 s = s0 + s1 + s2 + s3;
    return s[0] + s[1];
}

static int bench_membw(int threads)
{
    int64_t bytes = (int64_t)1 << 30, n = bytes / 8;
    uint64_t *a;
    if (posix_memalign((void **)&a, 4096, (size_t)bytes)) {
        fprintf(stderr, "membw: out of memory\n");
        return 1;
    }
    omp_set_num_threads(threads);
    /* first touch from the threads that read, so pages land where they will be read */
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        a[i] = (uint64_t)i;
    double best = 0;
    uint64_t check = 0;
    for (int rep = 0; rep < 5; rep++) {
        uint64_t total = 0;
        double t0 = util_mono_s();
#pragma omp parallel reduction(+ : total)
        {
            int nt = omp_get_num_threads(), id = omp_get_thread_num();
            int64_t per = (n / nt) & ~(int64_t)7, lo = per * id, hi = id == nt - 1 ? n : lo + per;
            total += bench_sum(a + lo, hi - lo);
        }
        double dt = util_mono_s() - t0, gbs = bytes / dt / 1e9;
        best = gbs > best ? gbs : best;
        check = total;
    }
    /* sum of 0..n-1: the reads happened */
    if (check != (uint64_t)(n - 1) * (uint64_t)n / 2) {
        fprintf(stderr, "membw: wrong sum\n");
        free(a);
        return 1;
    }
    printf("membw_t%d %.2f\n", threads, best);
    free(a);
    return 0;
}

/* ---- the model ---- */
static int bench_open(const char *path, int threads, Model **m, Backend **b, char *err)
{
    omp_set_num_threads(threads);
    double t0 = util_mono_s();
    int rc = model_open_ex(path, MODEL_OPEN_NO_VERIFY, m, err);
    if (!rc)
        fprintf(stderr, "bench: %s open in %.1f s (%s)\n", path, util_mono_s() - t0,
                model_residency(*m));
    BackendOpenOptions bo = {.threads = threads};
    if (!rc)
        rc = backend_open("cpu", &bo, b, err);
    return rc;
}

static int bench_bytes(const char *path)
{
    char err[VLQ_ERRLEN];
    Model *m;
    if (model_open_ex(path, MODEL_OPEN_NO_VERIFY | MODEL_OPEN_NO_POPULATE, &m, err)) {
        fprintf(stderr, "bytes: %s\n", err);
        return 1;
    }
    /* every text tensor is read once per token; the embedding table is the tied output
     * head (the lookup of one row is noise beside it) */
    uint64_t text = 0;
    for (int i = 0; i < model_tensor_count(m); i++) {
        const ModelTensor *t = model_tensor_at(m, i);
        if (!strstr(t->name, ".visual."))
            text += t->nbytes;
    }
    struct stat st;
    stat(path, &st);
    printf("bytes_per_token %llu\nfile_bytes %lld\n", (unsigned long long)text,
           (long long)st.st_size);
    model_close(m);
    return 0;
}

static void bench_ids(int32_t *ids, int n, int vocab)
{
    for (int i = 0; i < n; i++)
        ids[i] = (int32_t)(bench_next() % (uint32_t)(vocab < 151643 ? vocab : 151643));
}

static void bench_pos(int32_t *pos, int n, int start)
{
    for (int i = 0; i < n; i++)
        pos[i] = pos[n + i] = pos[2 * n + i] = start + i;
}

/* decode (prompt 0: NTOK steps of one token from position 0) and prefill (one forward
 * of NTOK tokens, after a 1-token warm-up forward) */
static int bench_text(const char *path, int threads, int ntok, int prefill)
{
    char err[VLQ_ERRLEN];
    Model *m = NULL;
    Backend *b = NULL;
    Decoder *d = NULL;
    DecoderKV kv = {0};
    int rc = bench_open(path, threads, &m, &b, err);
    const ModelConfig *c = rc ? NULL : model_config(m);
    DecoderOptions opt = {.max_tok = prefill ? ntok : 1, .max_seq = 1};
    if (!rc)
        rc = decoder_kv_init(&kv, c, b, QUANT_F16, ntok + 1, err);
    if (!rc)
        rc = decoder_new(m, b, &opt, &kv, &d, err);
    int32_t *ids = xmalloc((size_t)(ntok + 1) * sizeof *ids);
    int32_t *pos = xmalloc((size_t)(ntok + 1) * 3 * sizeof *pos);
    float *logits = rc ? NULL : xmalloc((size_t)c->vocab_size * sizeof *logits);
    if (!rc) {
        bench_ids(ids, ntok + 1, c->vocab_size);
        int32_t p3[3] = {0, 0, 0};
        DecoderSeq warm = {.kv_cap = ntok + 1, .n_tok = 1, .ids = ids, .pos = p3};
        rc = decoder_forward(d, &warm, 1, logits, 0, err);
    }
    double t0 = util_mono_s();
    if (!rc && prefill) {
        bench_pos(pos, ntok, 0);
        DecoderSeq s = {.kv_cap = ntok + 1, .n_tok = ntok, .ids = ids, .pos = pos};
        rc = decoder_forward(d, &s, 1, logits, 0, err);
    } else if (!rc) {
        /* the warm-up step was position 0: time positions 0..ntok-1 afresh */
        for (int i = 0; i < ntok && !rc; i++) {
            int32_t p3[3] = {i, i, i};
            DecoderSeq s = {.kv_cap = ntok + 1, .n_past = i, .n_tok = 1, .ids = ids + i,
                            .pos = p3};
            rc = decoder_forward(d, &s, 1, logits, 0, err);
        }
    }
    double dt = util_mono_s() - t0;
    if (!rc) {
        printf("%s_t%d_n%d %.3f\n", prefill ? "prefill" : "decode", threads, ntok, ntok / dt);
        bench_rss("rss_gb");
    } else {
        fprintf(stderr, "bench: %s\n", err);
    }
    free(ids);
    free(pos);
    free(logits);
    decoder_free(d);
    decoder_kv_clear(&kv);
    backend_close(b);
    model_close(m);
    return rc ? 1 : 0;
}

/* NREQ sequences in NREQ slots, each after a 16-token prompt, decoding NTOK steps
 * together (one forward of NREQ rows per step): the decoder's batched decode, what the
 * engine's continuous batching runs once every request is past its prefill. */
static int bench_batch(const char *path, int threads, int nreq, int ntok)
{
    enum { PROMPT = 16 };
    char err[VLQ_ERRLEN];
    Model *m = NULL;
    Backend *b = NULL;
    Decoder *d = NULL;
    DecoderKV kv = {0};
    int rc = bench_open(path, threads, &m, &b, err);
    const ModelConfig *c = rc ? NULL : model_config(m);
    int cap = PROMPT + ntok;
    DecoderOptions opt = {.max_tok = PROMPT * nreq, .max_seq = nreq};
    if (!rc)
        rc = decoder_kv_init(&kv, c, b, QUANT_F16, (int64_t)cap * nreq, err);
    if (!rc)
        rc = decoder_new(m, b, &opt, &kv, &d, err);
    int32_t *ids = xmalloc((size_t)nreq * (PROMPT + ntok) * sizeof *ids);
    int32_t *pos = xmalloc((size_t)nreq * 3 * PROMPT * sizeof *pos);
    DecoderSeq *seq = xcalloc((size_t)nreq, sizeof *seq);
    float *logits = rc ? NULL : xmalloc((size_t)nreq * c->vocab_size * sizeof *logits);
    if (!rc) {
        bench_ids(ids, nreq * (PROMPT + ntok), c->vocab_size);
        bench_pos(pos, PROMPT, 0);
        for (int r = 0; r < nreq; r++)
            seq[r] = (DecoderSeq){.kv_row0 = (int64_t)r * cap, .kv_cap = cap, .n_tok = PROMPT,
                                  .ids = ids + r * cap, .pos = pos};
        rc = decoder_forward(d, seq, nreq, logits, 0, err);
    }
    int32_t *p3 = xmalloc((size_t)nreq * 3 * sizeof *p3);
    double t0 = util_mono_s();
    for (int i = 0; i < ntok && !rc; i++) {
        for (int r = 0; r < nreq; r++) {
            int p = PROMPT + i;
            p3[3 * r] = p3[3 * r + 1] = p3[3 * r + 2] = p;
            seq[r] = (DecoderSeq){.kv_row0 = (int64_t)r * cap, .kv_cap = cap, .n_past = p,
                                  .n_tok = 1, .ids = ids + r * cap + p, .pos = p3 + 3 * r};
        }
        rc = decoder_forward(d, seq, nreq, logits, 0, err);
    }
    double dt = util_mono_s() - t0;
    if (!rc)
        printf("batch_t%d_r%d %.3f\n", threads, nreq, (double)nreq * ntok / dt);
    else
        fprintf(stderr, "bench: %s\n", err);
    free(p3);
    free(ids);
    free(pos);
    free(seq);
    free(logits);
    decoder_free(d);
    decoder_kv_clear(&kv);
    backend_close(b);
    model_close(m);
    return rc ? 1 : 0;
}

/* ---- concurrent requests through the engine ---- */
typedef struct {
    int *n_tok;        /* tokens emitted, all requests */
    int *n_started;    /* requests that have emitted their first token */
    int *n_ended;
    int started;       /* this request's first token seen */
    EngineResult res;
} BenchReq;

static void bench_on_token(void *user, int32_t id, const char *text, size_t len)
{
    BenchReq *q = user;
    if (id == ENGINE_TOKEN_TAIL) /* held-back text, not a token */
        return;
    (*q->n_tok)++;
    if (!q->started) {
        q->started = 1;
        (*q->n_started)++;
    }
}

static void bench_on_end(void *user, const EngineResult *r)
{
    BenchReq *q = user;
    q->res = *r;
    (*q->n_ended)++;
}

/* NREQ requests submitted at once (a short text prompt each, greedy, NTOK new tokens),
 * stepped by this thread: total decode tokens/s counted from the step where every
 * request has its first token to the last end, so prefill is not in the figure. */
static int bench_engine_conc(const char *path, int threads, int nreq, int ntok)
{
    char err[VLQ_ERRLEN];
    EngineOptions o = {.model_path = path, .threads = threads, .n_classes = 1,
                       .classes = {{.name = "bench", .ctx_tok = 256 + ntok, .n_slots = nreq}},
                       .max_patches = 1024 /* text only: keep the plan's vision share small */};
    Engine *e = NULL;
    omp_set_num_threads(threads);
    int rc = engine_open(&o, &e, err);
    int n_tok = 0, n_started = 0, n_ended = 0;
    BenchReq *q = xcalloc((size_t)nreq, sizeof *q);
    EngineReq **req = xcalloc((size_t)nreq, sizeof *req);
    TokPart part = {.kind = TOK_PART_TEXT,
                    .text = "Write a long story about a lighthouse keeper and the sea."};
    TokChat chat = {.parts = &part, .n_parts = 1};
    for (int r = 0; r < nreq && !rc; r++) {
        q[r] = (BenchReq){.n_tok = &n_tok, .n_started = &n_started, .n_ended = &n_ended};
        EngineRequest er = {.chat = &chat, .budget_tok = 256 + ntok, .max_new_tok = ntok,
                            .on_token = bench_on_token, .on_end = bench_on_end, .user = &q[r]};
        rc = engine_submit(e, &er, &req[r], err);
    }
    double t0 = 0;
    int tok0 = 0;
    while (!rc && n_ended < nreq) {
        int st = engine_step(e, err);
        if (st < 0)
            rc = st;
        if (!t0 && n_started == nreq) {
            t0 = util_mono_s();
            tok0 = n_tok;
        }
    }
    double dt = util_mono_s() - t0;
    for (int r = 0; r < nreq && !rc; r++)
        if (q[r].res.reason == ENGINE_END_ERROR)
            rc = err_set(err, q[r].res.code, "%s", q[r].res.err);
    if (!rc && n_tok > tok0) {
        printf("engine_t%d_r%d %.3f\n", threads, nreq, (n_tok - tok0) / dt);
        bench_rss("rss_gb");
    } else if (!rc) {
        rc = err_set(err, VLQ_EINPUT, "every request ended at its first token");
    }
    if (rc)
        fprintf(stderr, "bench: %s\n", err);
    for (int r = 0; r < nreq; r++)
        engine_req_free(req[r]);
    engine_close(e);
    free(req);
    free(q);
    return rc ? 1 : 0;
}

static int bench_vision(const char *path, int threads, int side)
{
    char err[VLQ_ERRLEN];
    Model *m = NULL;
    Backend *b = NULL;
    Vision *v = NULL;
    int rc = bench_open(path, threads, &m, &b, err);
    const ModelConfig *c = rc ? NULL : model_config(m);
    int g = rc ? 0 : side / c->v_patch_size, np = g * g;
    if (!rc)
        rc = vision_new(m, b, np, &v, err);
    float *px = NULL, *emb = NULL, *deep = NULL;
    if (!rc) {
        int64_t pd = vision_patch_dim(v), nm = np / 4, h = c->v_out_hidden_size;
        int nd = c->n_deepstack ? c->n_deepstack : 1;
        px = xmalloc((size_t)(np * pd) * sizeof *px);
        emb = xmalloc((size_t)(nm * h) * sizeof *emb);
        deep = xmalloc((size_t)(nd * nm * h) * sizeof *deep);
        for (int64_t i = 0; i < np * pd; i++) /* normalised pixels lie in [-1, 1] */
            px[i] = (float)(bench_next() >> 8) / 8388608.0f - 1.0f;
        int32_t grid[3] = {1, g, g};
        double t0 = util_mono_s();
        rc = vision_encode(v, px, grid, 1, emb, deep, err);
        double dt = util_mono_s() - t0;
        if (!rc) {
            printf("vision_t%d_s%d %.3f\n", threads, side, dt);
            bench_rss("rss_gb");
        }
    }
    if (rc)
        fprintf(stderr, "bench: %s\n", err);
    free(px);
    free(emb);
    free(deep);
    vision_free(v);
    backend_close(b);
    model_close(m);
    return rc ? 1 : 0;
}

/* Run argv as a child; print its peak RSS (GB). Its stdout passes through. */
static int bench_exec(char **argv)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        execvp(argv[0], argv);
        perror(argv[0]);
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) {
        perror("wait4");
        return 1;
    }
    printf("child_rss_gb %.3f\n", ru.ru_maxrss * 1024.0 / 1e9);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : "";
    int rc = 2;
    if (!strcmp(cmd, "membw") && argc == 3)
        rc = bench_membw(atoi(argv[2]));
    else if (!strcmp(cmd, "bytes") && argc == 3)
        rc = bench_bytes(argv[2]);
    else if (!strcmp(cmd, "decode") && argc == 5)
        rc = bench_text(argv[2], atoi(argv[3]), atoi(argv[4]), 0);
    else if (!strcmp(cmd, "prefill") && argc == 5)
        rc = bench_text(argv[2], atoi(argv[3]), atoi(argv[4]), 1);
    else if (!strcmp(cmd, "engine") && argc == 6)
        rc = bench_engine_conc(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    else if (!strcmp(cmd, "batch") && argc == 6)
        rc = bench_batch(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    else if (!strcmp(cmd, "vision") && argc == 5)
        rc = bench_vision(argv[2], atoi(argv[3]), atoi(argv[4]));
    else if (!strcmp(cmd, "exec") && argc >= 3)
        rc = bench_exec(argv + 2);
    else
        fprintf(stderr, "usage: vlq-bench-engine membw T | bytes MODEL | decode MODEL T N | "
                        "prefill MODEL T N | engine MODEL T NREQ N | batch MODEL T NREQ N | vision MODEL T SIDE | "
                        "exec CMD...\n");
    return rc;
}
