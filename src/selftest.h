/* selftest: a backend checked against a reference backend, op by op and on a model's
 * whole forward pass (`vlq selftest`). The first check to run on a new machine or a new
 * plugin: every op of the Backend table on random inputs of the 4B model's shapes (each
 * weight type, the KV types, batches of several sequences mixing prefill and decode),
 * through the table only (alloc, write, weight, the op, sync, read), so a device backend
 * is checked exactly as the engine uses it.
 *
 * Each case reports the largest absolute error, the relative error ||got - want|| /
 * ||want||, and its tolerance: an op passes when every element is within atol + rtol *
 * |want| and nothing is NaN; a model check passes on the relative error. Tolerances are
 * stated per op in selftest.c with the arithmetic that sets them. */
#ifndef VLQ_SELFTEST_H
#define VLQ_SELFTEST_H

#include "backend.h"
#include "model.h"

#include <stdint.h>

/* One checked case. */
typedef struct {
    const char *op;     /* the Backend op ("matmul"), or "forward" for the model's */
    char what[96];      /* the case: types and shape */
    double max_abs;     /* max |got - want| */
    double rel;         /* ||got - want|| / ||want|| (0 when want is all zero) */
    double atol, rtol;  /* elementwise tolerance: |got - want| <= atol + rtol * |want| */
    double rel_tol;     /* > 0: the case passes on rel <= rel_tol instead (model checks) */
    int ok;             /* 1 passed */
    char err[160];      /* a backend error instead of numbers ("" when none) */
} SelftestCase;

/* Called after each case with its result. */
typedef void (*SelftestReport)(void *user, const SelftestCase *c);

/* Run every op on ref and b with inputs drawn from seed; report each case. Returns the
 * number of failed cases (0: all passed). */
int selftest_ops(Backend *ref, Backend *b, uint64_t seed, SelftestReport report, void *user);

/* The model's forward pass on ref and b: the vision encoder on a random image when the
 * model has one, the logits of a short prompt (with the image's features and DeepStack
 * rows), then of one decode step over the cache. Returns the number of failed cases, or
 * a negative VLQ_E* code with err set when the model cannot be run at all. */
int selftest_model(const Model *m, Backend *ref, Backend *b, uint64_t seed,
                   SelftestReport report, void *user, char *err);

#endif
