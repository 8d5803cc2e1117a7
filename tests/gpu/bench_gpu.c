/* vlq-bench-gpu: decode and prefill speed of a model on a backend, through the decoder
 * as the engine drives it (tests/gpu/prove.sh runs it on the cuda backend and a random
 * 4B-shaped model; on the cpu backends it runs anywhere, which is how the script is
 * checked without a GPU).
 *
 * usage: vlq-bench-gpu MODEL.vlq BACKEND COPY_GBPS [PREFILL_TOK [BATCHES...]]
 *
 * Prefill: one sequence of PREFILL_TOK tokens (default 512) in chunks of 512, tokens/s.
 * Decode: for each batch size B (default 1 16 64), B sequences with PREFILL_TOK tokens
 * cached each take 16 steps of one token; tokens/s = B * 16 / time. The bandwidth share
 * at batch B is (bytes one step must read) / (step time) / COPY_GBPS, where a step reads
 * every text weight once except the embedding table (a gather of B rows; but the tied
 * lm_head reads it whole) plus each sequence's KV rows; COPY_GBPS is the device's copy
 * bandwidth (bytes read + written per second, tests/gpu/copy_bw.cu), 0 for none. The
 * device memory in use after loading (meminfo's total - free) is printed too. Numbers
 * only: random weights, token ids 0..999. */
#include "backend.h"
#include "decoder.h"
#include "err.h"
#include "model.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BENCH_CHUNK 512
#define BENCH_STEPS 16
#define BENCH_MAX_BATCH 256

static double bench_mib(int64_t b)
{
    return (double)b / (1 << 20);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: vlq-bench-gpu MODEL.vlq BACKEND COPY_GBPS [PREFILL_TOK "
                        "[BATCHES...]]\n");
        return 2;
    }
    const char *path = argv[1], *name = argv[2];
    double copy_gbps = atof(argv[3]);
    int prefill = argc > 4 ? atoi(argv[4]) : 512;
    int batches[16] = {1, 16, 64}, n_b = 3;
    if (argc > 5) {
        n_b = 0;
        for (int i = 5; i < argc && n_b < 16; i++)
            batches[n_b++] = atoi(argv[i]);
    }
    int max_b = 1;
    for (int i = 0; i < n_b; i++) {
        if (batches[i] < 1 || batches[i] > BENCH_MAX_BATCH || prefill < 1) {
            fprintf(stderr, "vlq-bench-gpu: batch sizes 1..%d, prefill >= 1\n", BENCH_MAX_BATCH);
            return 2;
        }
        max_b = batches[i] > max_b ? batches[i] : max_b;
    }
    char err[VLQ_ERRLEN] = "";
    Backend *b = NULL;
    Model *m = NULL;
    DecoderKV kv = {0};
    Decoder *d = NULL;
    int rc = backend_open(name, NULL, &b, err);
    int64_t free0 = 0, total = 0, free1 = 0;
    if (!rc)
        rc = b->meminfo(b, &free0, &total, err);
    if (!rc)
        rc = model_open(path, &m, err);
    const ModelConfig *c = m ? model_config(m) : NULL;
    int64_t slot = prefill + BENCH_STEPS + 1;
    if (!rc)
        rc = decoder_kv_init(&kv, c, b, QUANT_F16, slot * max_b, err);
    DecoderOptions opt = {.max_tok = BENCH_CHUNK > max_b ? BENCH_CHUNK : max_b, .max_seq = max_b};
    if (!rc)
        rc = decoder_new(m, b, &opt, &kv, &d, err);
    if (!rc)
        rc = b->meminfo(b, &free1, &total, err);
    if (rc) {
        fprintf(stderr, "vlq-bench-gpu: %s\n", err);
        decoder_free(d);
        decoder_kv_clear(&kv);
        model_close(m);
        backend_close(b);
        return 1;
    }
    /* bytes a decode step reads: the text weights but the embedding gather, the tied
     * lm_head's table in full, and the KV rows */
    int64_t weights = 0, embed = 0;
    for (int i = 0; i < model_tensor_count(m); i++) {
        const ModelTensor *t = model_tensor_at(m, i);
        if (!strncmp(t->name, "model.visual.", 13))
            continue;
        weights += (int64_t)t->nbytes;
        if (!strcmp(t->name, "model.language_model.embed_tokens.weight"))
            embed = (int64_t)t->nbytes;
    }
    int64_t step_weights = weights - (model_tensor(m, "lm_head.weight") ? embed : 0);
    int64_t kv_tok = decoder_kv_bytes_per_tok(c, QUANT_F16);
    char desc[512];
    b->describe(b, desc, sizeof desc);
    printf("backend: %s\nmodel: %s (%d layers, hidden %d): %.0f MiB text weights, %.0f MiB "
           "read per decode step\nmemory in use after load: %.0f MiB (%.0f MiB by the load; "
           "KV %lld slots x %lld tokens f16)\n", desc, path, c->n_layers, c->hidden_size,
           bench_mib(weights), bench_mib(step_weights), bench_mib(total - free1),
           bench_mib(free0 - free1), (long long)max_b, (long long)slot);
    int32_t *ids = xmalloc((size_t)BENCH_CHUNK * sizeof *ids);
    int32_t *pos = xmalloc((size_t)BENCH_CHUNK * 3 * sizeof *pos);
    float *logits = xmalloc((size_t)max_b * c->vocab_size * sizeof *logits);
    DecoderSeq *seqs = xcalloc((size_t)max_b, sizeof *seqs);
    int32_t *dpos = xmalloc((size_t)max_b * 3 * sizeof *dpos);
    /* prefill every slot (slot 0 timed), chunk by chunk */
    double t_prefill = 0;
    for (int s = 0; s < max_b && !rc; s++) {
        double t0 = util_mono_s();
        for (int done = 0; done < prefill && !rc; done += BENCH_CHUNK) {
            int n = prefill - done < BENCH_CHUNK ? prefill - done : BENCH_CHUNK;
            for (int i = 0; i < n; i++) {
                ids[i] = (done + i) * 7 % 1000;
                pos[i] = pos[n + i] = pos[2 * n + i] = done + i;
            }
            DecoderSeq sq = {.kv_row0 = (int64_t)s * slot, .kv_cap = (int)slot, .n_past = done,
                             .n_tok = n, .ids = ids, .pos = pos};
            rc = decoder_forward(d, &sq, 1, logits, 0, err);
            if (!rc)
                rc = b->sync(b, err);
        }
        if (s == 0)
            t_prefill = util_mono_s() - t0;
    }
    if (!rc)
        printf("prefill: %d tokens in %.3f s: %.0f tokens/s\n", prefill, t_prefill,
               prefill / t_prefill);
    printf("%-6s %12s %12s %14s %10s\n", "batch", "tokens/s", "ms/step", "GB/s read", "of copy");
    for (int k = 0; k < n_b && !rc; k++) {
        int B = batches[k];
        double t0 = 0;
        for (int step = -1; step < BENCH_STEPS && !rc; step++) { /* step -1: warm-up */
            if (step == 0)
                t0 = util_mono_s();
            int past = prefill + (step < 0 ? 0 : step);
            for (int s = 0; s < B; s++) {
                ids[s] = (s * 31 + step + 1) % 1000;
                dpos[3 * s] = dpos[3 * s + 1] = dpos[3 * s + 2] = past;
                seqs[s] = (DecoderSeq){.kv_row0 = (int64_t)s * slot, .kv_cap = (int)slot,
                                       .n_past = past, .n_tok = 1, .ids = &ids[s],
                                       .pos = &dpos[3 * s]};
            }
            rc = decoder_forward(d, seqs, B, logits, 0, err);
            if (!rc)
                rc = b->sync(b, err);
        }
        if (rc)
            break;
        double dt = (util_mono_s() - t0) / BENCH_STEPS;
        double bytes = (double)step_weights + (double)B * (prefill + BENCH_STEPS / 2) * kv_tok;
        double gbps = bytes / dt / 1e9;
        char share[32] = "-";
        if (copy_gbps > 0)
            snprintf(share, sizeof share, "%.0f%%", 100.0 * gbps / copy_gbps);
        printf("%-6d %12.1f %12.2f %14.1f %10s\n", B, B / dt, dt * 1e3, gbps, share);
    }
    if (rc)
        fprintf(stderr, "vlq-bench-gpu: %s\n", err);
    free(ids);
    free(pos);
    free(logits);
    free(seqs);
    free(dpos);
    decoder_free(d);
    decoder_kv_clear(&kv);
    model_close(m);
    backend_close(b);
    return rc ? 1 : 0;
}
