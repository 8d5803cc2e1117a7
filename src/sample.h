/* sample: the next token from a row of logits, as Hugging Face generate does it:
 * repetition penalty, temperature, top-k, top-p, softmax, a seeded draw; greedy (the
 * first index of the maximum) when temperature is 0. Plus the stop-token test.
 *
 * A Sampler owns its scratch (sized by the vocabulary at sample_new) and its RNG state,
 * so sample_next allocates nothing and a seed reproduces a run. One per sequence. */
#ifndef VLQ_SAMPLE_H
#define VLQ_SAMPLE_H

#include <stdint.h>

typedef struct {
    float temperature;        /* 0: greedy */
    int top_k;                /* 0: off */
    float top_p;              /* 0 or >= 1: off */
    float repetition_penalty; /* 0 or 1: off */
    uint64_t seed;            /* RNG seed */
} SampleParams;

typedef struct Sampler Sampler;

/* A sampler over vocab logits. Cannot fail (small fixed allocation). */
Sampler *sample_new(int vocab, const SampleParams *p);
/* Free. NULL-safe. */
void sample_free(Sampler *s);
/* The next token from logits[vocab] (modified in place: the penalties and warpers are
 * applied to it). seen[n_seen]: every token of the sequence so far, prompt included, for
 * the repetition penalty. Cannot fail. */
int sample_next(Sampler *s, float *logits, const int32_t *seen, int n_seen);
/* 1 if tok is one of the n stop ids, else 0. */
int sample_is_stop(int tok, const int *stop, int n);

#endif
