/* cpu_elem: the cpu backend's elementwise and per-row ops (private to backend_cpu.c,
 * cpu_elem.c and the tests): norms, add, SwiGLU and GELU with the vector exp / erfc of
 * cpu_kern.inc (AVX-512 / AVX2 / plain vectors chosen at run time by cpucaps_get), and the
 * rotary ops with sin/cos computed once per (row, frequency) for all heads. */
#ifndef VLQ_CPU_ELEM_H
#define VLQ_CPU_ELEM_H

#include "backend.h"

#include <stdint.h>

/* The backend ops (backend.h states each contract). */
void cpu_elem_rmsnorm(Backend *b, Tensor *y, const Tensor *x, const Tensor *w, float eps);
void cpu_elem_layernorm(Backend *b, Tensor *y, const Tensor *x, const Tensor *w,
                        const Tensor *bias, float eps);
void cpu_elem_add(Backend *b, Tensor *y, const Tensor *a, const Tensor *c);
void cpu_elem_swiglu(Backend *b, Tensor *y, const Tensor *gate, const Tensor *up);
void cpu_elem_gelu_tanh(Backend *b, Tensor *x);
void cpu_elem_gelu_erf(Backend *b, Tensor *x);
void cpu_elem_mrope(Backend *b, Tensor *x, const int32_t *pos, int n_heads, const int section[3],
                    float theta);
void cpu_elem_rope2d(Backend *b, Tensor *x, const int32_t *pos, int n_heads, float theta);

/* The vector math alone, for the tests against libm: y[i] = exp(x[i]), erfc(|x[i]|), for
 * i < n, at the level cpucaps_get() picks. y may alias x. Cannot fail. */
void cpu_elem_exp(float *y, const float *x, int64_t n);
void cpu_elem_erfc_abs(float *y, const float *x, int64_t n);

#endif
