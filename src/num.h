/* num: numbers read from text (command-line flags, configuration values) checked
 * against a range, with one wording of every refusal.
 *
 * One NumRange describes what a setting accepts: integer or real, the bounds, each
 * closed or open, and whether the value is kept as a float (then the check is made
 * after rounding to float, so 1e-50 cannot pass "> 0" and become 0.0f). NaN, the
 * infinities, values that overflow the type and trailing garbage are refused. The
 * caller names the setting: messages are "'<text>' is <reason>" and a caller prefixes
 * "--top-p: " or "file:line: sampling.top_p: ". A base module: no I/O, no state. */
#ifndef VLQ_NUM_H
#define VLQ_NUM_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    double lo, hi;          /* bounds (integers compare exactly below 2^53) */
    unsigned char is_int;   /* a base-10 integer: no fraction, no exponent */
    unsigned char lo_open;  /* lo itself is refused: (lo, ... */
    unsigned char hi_open;  /* hi itself is refused: ..., hi) */
    unsigned char f32;      /* kept as a float: checked after rounding to float */
} NumRange;

/* Designated initializers for tables: an integer in [lo, hi], a real in [lo, hi], a real
 * in (lo, hi] (every real kept as a float is marked so by the _F32 forms). */
#define NUM_INT(l, h) {.lo = (l), .hi = (h), .is_int = 1}
#define NUM_REAL(l, h) {.lo = (l), .hi = (h)}
#define NUM_REAL_F32(l, h) {.lo = (l), .hi = (h), .f32 = 1}
#define NUM_REAL_F32_GT(l, h) {.lo = (l), .hi = (h), .lo_open = 1, .f32 = 1}

/* Parse text as an integer within r (r->is_int must be set). Returns 0 and *out, or
 * VLQ_EINPUT with "'<text>' is not an integer in [lo, hi]" / "... is out of range
 * [lo, hi]" in err (every refusal states the range); *out is untouched on error. */
int num_parse_i64(const char *text, const NumRange *r, int64_t *out, char *err);
/* Parse text as a finite real within r (an integer range also takes "3" but not "3.5").
 * Returns 0 and *out (rounded to float when r->f32), or VLQ_EINPUT with the reason. */
int num_parse_double(const char *text, const NumRange *r, double *out, char *err);
/* The range as text, "[1, 86400]", "(0, 1]", into buf (n bytes). Returns buf. */
const char *num_range_text(const NumRange *r, char *buf, size_t n);

#endif
