/* bench_tok: the tokenizer's speed and memory, for `make bench-tok`.
 *
 * usage: bench-tok TOKENIZER_JSON TEXT_FILE [REPS]
 * Prints key=value lines: load_ms (best of 3 loads), rss_mb (resident memory the loaded
 * tokenizer adds, read from /proc/self/status), peak_rss_mb (high-water mark of the whole
 * process, JSON parsing included), encode_mb_s (best of REPS single-threaded encodes of
 * the whole file), n_ids, decode_mb_s, lines_mb_s (the file encoded line by line). tests/bench/bench_tok.py runs it beside HF. */
#include "err.h"
#include "tok.h"
#include "util.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A field of /proc/self/status in MiB ("VmRSS", "VmHWM"), or -1. */
static double bench_status_mb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double mb = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':')
            mb = atof(line + n + 1) / 1024.0;
    if (f)
        fclose(f);
    return mb;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench-tok TOKENIZER_JSON TEXT_FILE [REPS]\n");
        return 2;
    }
    int reps = argc > 3 ? atoi(argv[3]) : 5;
    char err[VLQ_ERRLEN], *text;
    size_t len;
    if (util_read_file(argv[2], 0, &text, &len, err)) {
        fprintf(stderr, "bench-tok: %s\n", err);
        return 1;
    }
    double rss0 = bench_status_mb("VmRSS"), best_load = 1e9;
    Tok *t = NULL;
    for (int i = 0; i < 3; i++) {
        tok_free(t);
        malloc_trim(0);
        double t0 = util_mono_s();
        if (tok_load_file(argv[1], &t, err)) {
            fprintf(stderr, "bench-tok: %s\n", err);
            return 1;
        }
        double dt = util_mono_s() - t0;
        best_load = dt < best_load ? dt : best_load;
    }
    malloc_trim(0); /* give back what the JSON parse used, so RSS is the tokenizer's */
    double rss1 = bench_status_mb("VmRSS");
    double best = 1e9;
    TokIds ids = {0};
    for (int r = 0; r < reps; r++) {
        ids.n = 0;
        double t0 = util_mono_s();
        if (tok_encode(t, text, len, &ids, err)) {
            fprintf(stderr, "bench-tok: %s: %s\n", argv[2], err);
            return 1;
        }
        double dt = util_mono_s() - t0;
        best = dt < best ? dt : best;
    }
    /* The same text line by line (each line a separate encode, as prompts are). */
    double best_lines = 1e9;
    for (int r = 0; r < reps; r++) {
        double t0 = util_mono_s();
        for (size_t i = 0; i < len;) {
            const char *nl = memchr(text + i, '\n', len - i);
            size_t e = nl ? (size_t)(nl - text) : len;
            ids.n = 0;
            if (tok_encode(t, text + i, e - i, &ids, err)) {
                fprintf(stderr, "bench-tok: %s: %s\n", argv[2], err);
                return 1;
            }
            i = e + 1;
        }
        double dt = util_mono_s() - t0;
        best_lines = dt < best_lines ? dt : best_lines;
    }
    ids.n = 0;
    tok_encode(t, text, len, &ids, err);
    double best_dec = 1e9;
    for (int r = 0; r < reps; r++) {
        double t0 = util_mono_s();
        free(tok_decode(t, ids.ids, ids.n, 0, NULL));
        double dt = util_mono_s() - t0;
        best_dec = dt < best_dec ? dt : best_dec;
    }
    printf("load_ms=%.1f\nrss_mb=%.1f\npeak_rss_mb=%.1f\nencode_mb_s=%.2f\nn_ids=%zu\n"
           "decode_mb_s=%.1f\nlines_mb_s=%.2f\n",
           best_load * 1e3, rss1 - rss0, bench_status_mb("VmHWM"), len / best / 1e6, ids.n,
           len / best_dec / 1e6, len / best_lines / 1e6);
    tok_ids_clear(&ids);
    tok_free(t);
    free(text);
    return 0;
}
