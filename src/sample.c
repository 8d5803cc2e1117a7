/* sample: Hugging Face's logits processing order (transformers generation/utils.py
 * _get_logits_processor; logits_process.py RepetitionPenaltyLogitsProcessor,
 * TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper):
 *   repetition penalty (l < 0 ? l*p : l/p, each distinct seen token once)
 *   -> temperature (l / T) -> top-k (keep scores >= the k-th largest: ties survive)
 *   -> top-p (sort ascending, softmax, cumulative sum; drop where cumsum <= 1 - top_p,
 *      always keeping the largest) -> softmax -> one draw.
 * The draw uses splitmix64, so a seed gives the same tokens on every machine (not the
 * same tokens as torch's multinomial: the RNGs differ). */
#include "sample.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct Sampler {
    int vocab;
    SampleParams p;
    uint64_t rng;
    int32_t *order; /* [vocab] indices sorted by logit */
    int32_t *tmp;   /* [vocab] merge sort scratch */
    float *heap;    /* [vocab] min-heap of the top_k largest logits */
    uint8_t *mark;  /* [vocab] seen-token marks for the penalty */
};

Sampler *sample_new(int vocab, const SampleParams *p)
{
    Sampler *s = xcalloc(1, sizeof *s);
    s->vocab = vocab;
    s->p = *p;
    s->rng = p->seed;
    s->order = xmalloc((size_t)vocab * sizeof(int32_t));
    s->tmp = xmalloc((size_t)vocab * sizeof(int32_t));
    s->heap = xmalloc((size_t)vocab * sizeof(float));
    s->mark = xcalloc((size_t)vocab, 1);
    return s;
}

void sample_free(Sampler *s)
{
    if (!s)
        return;
    free(s->order);
    free(s->tmp);
    free(s->heap);
    free(s->mark);
    free(s);
}

int sample_is_stop(int tok, const int *stop, int n)
{
    for (int i = 0; i < n; i++)
        if (stop[i] == tok)
            return 1;
    return 0;
}

static double sample_uniform(Sampler *s) /* [0, 1) */
{
    uint64_t z = (s->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}

static int sample_argmax(const float *l, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[best])
            best = i;
    return best;
}

/* i before j: a larger logit first, then the smaller index (a total, stable order). */
static int sample_before(const float *l, int32_t i, int32_t j)
{
    return l[i] > l[j] || (l[i] == l[j] && i < j);
}

/* Sort s->order[0..n) by sample_before: bottom-up merge sort through s->tmp (qsort has
 * no context argument, and a global would make samplers unsafe across threads). */
static void sample_sort(Sampler *s, const float *l, int n)
{
    int32_t *a = s->order, *b = s->tmp;
    for (int w = 1; w < n; w *= 2) {
        for (int lo = 0; lo < n; lo += 2 * w) {
            int mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                b[k++] = sample_before(l, a[j], a[i]) ? a[j++] : a[i++];
            while (i < mid)
                b[k++] = a[i++];
            while (j < hi)
                b[k++] = a[j++];
        }
        int32_t *t = a;
        a = b;
        b = t;
    }
    if (a != s->order)
        memcpy(s->order, a, (size_t)n * sizeof *a);
}

/* The k-th largest of l[0..n), 0 < k < n: one pass with a min-heap of k values. */
static float sample_kth(Sampler *s, const float *l, int n, int k)
{
    float *h = s->heap;
    for (int i = 0; i < n; i++) {
        float v = l[i];
        int j;
        if (i < k) { /* sift up */
            for (j = i; j > 0 && h[(j - 1) / 2] > v; j = (j - 1) / 2)
                h[j] = h[(j - 1) / 2];
            h[j] = v;
        } else if (v > h[0]) { /* replace the root, sift down */
            for (j = 0;;) {
                int c = 2 * j + 1;
                if (c >= k)
                    break;
                if (c + 1 < k && h[c + 1] < h[c])
                    c++;
                if (h[c] >= v)
                    break;
                h[j] = h[c];
                j = c;
            }
            h[j] = v;
        }
    }
    return h[0];
}

static void sample_penalty(Sampler *s, float *l, const int32_t *seen, int n_seen)
{
    float pen = s->p.repetition_penalty;
    for (int i = 0; i < n_seen; i++) {
        int t = seen[i];
        if (t < 0 || t >= s->vocab || s->mark[t])
            continue;
        s->mark[t] = 1;
        l[t] = l[t] < 0 ? l[t] * pen : l[t] / pen;
    }
    for (int i = 0; i < n_seen; i++)
        if (seen[i] >= 0 && seen[i] < s->vocab)
            s->mark[seen[i]] = 0;
}

int sample_next(Sampler *s, float *l, const int32_t *seen, int n_seen)
{
    int n = s->vocab;
    if (s->p.repetition_penalty > 0 && s->p.repetition_penalty != 1.0f)
        sample_penalty(s, l, seen, n_seen);
    if (s->p.temperature <= 0)
        return sample_argmax(l, n);
    for (int i = 0; i < n; i++)
        l[i] /= s->p.temperature;
    /* top-k first (ties with the k-th largest survive): only those need sorting */
    int keep = 0;
    if (s->p.top_k > 0 && s->p.top_k < n) {
        float kth = sample_kth(s, l, n, s->p.top_k);
        for (int i = 0; i < n; i++)
            if (l[i] >= kth)
                s->order[keep++] = i;
    } else {
        for (int i = 0; i < n; i++)
            s->order[keep++] = i;
    }
    sample_sort(s, l, keep);
    /* softmax over the kept tokens, in fp64 for a stable cumulative sum */
    double mx = l[s->order[0]], sum = 0.0;
    for (int i = 0; i < keep; i++)
        sum += exp((double)l[s->order[i]] - mx);
    if (s->p.top_p > 0 && s->p.top_p < 1.0f) {
        /* HF sorts ascending and drops the prefix whose cumsum <= 1 - top_p; from the top
         * that is: keep tokens until the mass of the ones after them is <= 1 - top_p */
        double tail = 1.0, limit = 1.0 - (double)s->p.top_p;
        int k = 0;
        while (k < keep) {
            tail -= exp((double)l[s->order[k]] - mx) / sum;
            k++;
            if (tail <= limit)
                break;
        }
        keep = k;
        sum = 0.0;
        for (int i = 0; i < keep; i++)
            sum += exp((double)l[s->order[i]] - mx);
    }
    double u = sample_uniform(s) * sum, acc = 0.0;
    for (int i = 0; i < keep; i++) {
        acc += exp((double)l[s->order[i]] - mx);
        if (u < acc)
            return s->order[i];
    }
    return s->order[keep - 1];
}
