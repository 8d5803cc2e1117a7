/* test_sample: the sampler against hand-computed cases of Hugging Face's processors
 * (greedy ties, repetition penalty, top-k ties, top-p boundary) and seed determinism. */
#include "sample.h"
#include "test.h"

#include <math.h>
#include <string.h>

static void test_greedy(void)
{
    SampleParams p = {0};
    Sampler *s = sample_new(5, &p);
    float l[5] = {1.0f, 4.0f, -2.0f, 4.0f, 3.9f};
    CHECK_EQ(sample_next(s, l, NULL, 0), 1); /* first index on ties */
    float neg[5] = {-3.0f, -1.0f, -1.0f, -7.0f, -2.0f};
    CHECK_EQ(sample_next(s, neg, NULL, 0), 1);
    sample_free(s);
}

static void test_penalty(void)
{
    /* HF: l < 0 ? l*p : l/p, each seen token once however often it occurs */
    SampleParams p = {.repetition_penalty = 2.0f};
    Sampler *s = sample_new(4, &p);
    float l[4] = {3.0f, 2.9f, -1.0f, 1.0f};
    int32_t seen[3] = {0, 0, 2};
    CHECK_EQ(sample_next(s, l, seen, 3), 1); /* 3/2 = 1.5 < 2.9 */
    CHECK(l[0] == 1.5f && l[2] == -2.0f && l[1] == 2.9f && l[3] == 1.0f);
    sample_free(s);
}

static void test_top_k_ties(void)
{
    /* top_k 1 with a tie at the boundary keeps both (HF masks only scores < k-th) */
    SampleParams p = {.temperature = 1.0f, .top_k = 1, .seed = 7};
    Sampler *s = sample_new(4, &p);
    int hits[4] = {0};
    for (int i = 0; i < 400; i++) {
        float l[4] = {5.0f, 1.0f, 5.0f, 4.9f};
        hits[sample_next(s, l, NULL, 0)]++;
    }
    CHECK(hits[0] > 100 && hits[2] > 100);
    CHECK_EQ(hits[1] + hits[3], 0);
    sample_free(s);
}

static void test_top_k_large(void)
{
    /* 1000 logits: every draw is one of the 5 largest */
    SampleParams p = {.temperature = 2.0f, .top_k = 5, .seed = 9};
    Sampler *s = sample_new(1000, &p);
    float base[1000];
    for (int j = 0; j < 1000; j++)
        base[j] = sinf((float)j * 12.9898f) * 43.0f;
    int n_above[1000] = {0};
    for (int j = 0; j < 1000; j++)
        for (int k = 0; k < 1000; k++)
            n_above[j] += base[k] > base[j];
    for (int i = 0; i < 200; i++) {
        float l[1000];
        memcpy(l, base, sizeof l);
        int t = sample_next(s, l, NULL, 0);
        CHECK(n_above[t] < 5);
    }
    sample_free(s);
}

static void test_top_p(void)
{
    /* probs 0.5, 0.3, 0.2 (logits = log p): top_p 0.6 keeps {0, 1} (ascending cumsum
     * 0.2 <= 0.4 drops token 2; 0.5 > 0.4 keeps token 1); top_p 0.4 keeps {0} only. */
    float base[3] = {logf(0.5f), logf(0.3f), logf(0.2f)};
    SampleParams p = {.temperature = 1.0f, .top_p = 0.6f, .seed = 3};
    Sampler *s = sample_new(3, &p);
    int hits[3] = {0};
    for (int i = 0; i < 500; i++) {
        float l[3];
        memcpy(l, base, sizeof l);
        hits[sample_next(s, l, NULL, 0)]++;
    }
    CHECK(hits[0] > 200 && hits[1] > 100);
    CHECK_EQ(hits[2], 0);
    sample_free(s);
    p.top_p = 0.4f;
    s = sample_new(3, &p);
    for (int i = 0; i < 50; i++) {
        float l[3];
        memcpy(l, base, sizeof l);
        CHECK_EQ(sample_next(s, l, NULL, 0), 0);
    }
    sample_free(s);
}

static void test_seed(void)
{
    SampleParams p = {.temperature = 0.7f, .top_k = 20, .top_p = 0.8f, .seed = 42};
    int a[64], b[64], c[64];
    for (int run = 0; run < 3; run++) {
        p.seed = run == 2 ? 43 : 42;
        Sampler *s = sample_new(50, &p);
        for (int i = 0; i < 64; i++) {
            float l[50];
            for (int j = 0; j < 50; j++)
                l[j] = sinf((float)(j * 7 + i));
            (run == 0 ? a : run == 1 ? b : c)[i] = sample_next(s, l, NULL, 0);
        }
        sample_free(s);
    }
    CHECK(!memcmp(a, b, sizeof a));
    CHECK(memcmp(a, c, sizeof a) != 0);
}

static void test_stop(void)
{
    int stop[2] = {151645, 151643};
    CHECK(sample_is_stop(151643, stop, 2));
    CHECK(!sample_is_stop(151644, stop, 2));
    CHECK(!sample_is_stop(1, stop, 0));
}

TEST_GROUP(sample, {"greedy", test_greedy}, {"penalty", test_penalty},
           {"top_k_ties", test_top_k_ties},
           {"top_k_large", test_top_k_large}, {"top_p", test_top_p}, {"seed", test_seed},
           {"stop", test_stop})
