/* cpucaps: the CPU's instruction-set features, found once at run time, so one binary
 * picks the fastest kernels the machine has (AVX-512 VNNI, AVX-VNNI, AVX2) and `vlq
 * doctor` can say which it found. Base layer: no other module is used. */
#ifndef VLQ_CPUCAPS_H
#define VLQ_CPUCAPS_H

enum {
    CPUCAPS_AVX2 = 1 << 0,       /* AVX2 + FMA + F16C (x86-64-v3) */
    CPUCAPS_AVX512 = 1 << 1,     /* AVX-512 F, BW, VL, DQ */
    CPUCAPS_AVX512VNNI = 1 << 2, /* vpdpbusd on zmm */
    CPUCAPS_AVXVNNI = 1 << 3,    /* vpdpbusd on ymm (VEX) */
    CPUCAPS_AVX512BF16 = 1 << 4, /* vdpbf16ps */
};

/* The features of this CPU (CPUCAPS_* bits), read once; VLQ_CPUCAPS=avx2 (or =none,
 * =avx512) in the environment caps them, to test the slower paths on a fast machine.
 * Cannot fail. */
int cpucaps_get(void);
/* The features as text, e.g. "avx2 avx512 avx512vnni avxvnni avx512bf16". */
const char *cpucaps_describe(int caps);

#endif
