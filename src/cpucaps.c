/* cpucaps: __builtin_cpu_supports, once, capped by $VLQ_CPUCAPS. */
#include "cpucaps.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* clang 14 (the fuzz build) does not know the "f16c" and "avxvnni" feature names: there,
 * F16C is taken to come with AVX2 (every AVX2 CPU has it) and AVX-VNNI is left off. */
#if defined(__clang__)
#define CPUCAPS_F16C() 1
#define CPUCAPS_AVXVNNI() 0
#else
#define CPUCAPS_F16C() __builtin_cpu_supports("f16c")
#define CPUCAPS_AVXVNNI() __builtin_cpu_supports("avxvnni")
#endif

static int cpucaps_probe(void)
{
    int caps = 0;
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        CPUCAPS_F16C())
        caps |= CPUCAPS_AVX2;
    if ((caps & CPUCAPS_AVX2) && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq"))
        caps |= CPUCAPS_AVX512;
    if ((caps & CPUCAPS_AVX512) && __builtin_cpu_supports("avx512vnni"))
        caps |= CPUCAPS_AVX512VNNI;
    if ((caps & CPUCAPS_AVX2) && CPUCAPS_AVXVNNI())
        caps |= CPUCAPS_AVXVNNI;
    if ((caps & CPUCAPS_AVX512) && __builtin_cpu_supports("avx512bf16"))
        caps |= CPUCAPS_AVX512BF16;
#endif
    const char *cap = getenv("VLQ_CPUCAPS");
    if (cap && !strcmp(cap, "none"))
        caps = 0;
    else if (cap && !strcmp(cap, "avx2"))
        caps &= CPUCAPS_AVX2;
    else if (cap && !strcmp(cap, "avx512"))
        caps &= CPUCAPS_AVX2 | CPUCAPS_AVX512;
    return caps;
}

int cpucaps_get(void)
{
    /* computed once; a race between two first callers writes the same value */
    static int caps = -1;
    if (caps < 0)
        caps = cpucaps_probe();
    return caps;
}

const char *cpucaps_describe(int caps)
{
    static const struct {
        int bit;
        const char *name;
    } names[] = {{CPUCAPS_AVX2, "avx2"}, {CPUCAPS_AVX512, "avx512"},
                 {CPUCAPS_AVX512VNNI, "avx512vnni"}, {CPUCAPS_AVXVNNI, "avxvnni"},
                 {CPUCAPS_AVX512BF16, "avx512bf16"}};
    static __thread char buf[96];
    buf[0] = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (caps & names[i].bit)
            snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", buf[0] ? " " : "",
                     names[i].name);
    return buf[0] ? buf : "none (plain C kernels)";
}
