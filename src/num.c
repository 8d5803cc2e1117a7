/* num: checked numbers from text (see num.h).
 *
 * strtoll/strtod do the parsing; what they accept beyond a plain number is refused here:
 * an empty string, trailing text, ERANGE (overflow), NaN and the infinities. A range
 * check on a double is exact for every bound we use (all below 2^53 or given as reals). */
#include "num.h"

#include "err.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The value as quoted in messages: at most 40 bytes of it, so a pasted page stays one line. */
#define NUM_QUOTE "'%.40s%s'"
#define NUM_QUOTE_ARGS(t) (t), strlen(t) > 40 ? "..." : ""

static void num_bound(double v, int is_int, char *buf, size_t n)
{
    if (is_int && fabs(v) < 9.3e18)
        snprintf(buf, n, "%.0f", v);
    else
        snprintf(buf, n, "%g", v);
}

/* num_range_text: see num.h; cannot fail. */
const char *num_range_text(const NumRange *r, char *buf, size_t n)
{
    char lo[32], hi[32];
    num_bound(r->lo, r->is_int, lo, sizeof lo);
    num_bound(r->hi, r->is_int, hi, sizeof hi);
    snprintf(buf, n, "%c%s, %s%c", r->lo_open ? '(' : '[', lo, hi, r->hi_open ? ')' : ']');
    return buf;
}

static int num_out_of_range(const char *text, const NumRange *r, char *err)
{
    char range[80];
    return err_set(err, VLQ_EINPUT, NUM_QUOTE " is out of range %s", NUM_QUOTE_ARGS(text),
                   num_range_text(r, range, sizeof range));
}

static int num_in_range(double v, const NumRange *r)
{
    return (r->lo_open ? v > r->lo : v >= r->lo) && (r->hi_open ? v < r->hi : v <= r->hi);
}

/* num_parse_i64: see num.h. */
int num_parse_i64(const char *text, const NumRange *r, int64_t *out, char *err)
{
    char *end = NULL;
    errno = 0;
    long long v = text && *text ? strtoll(text, &end, 10) : 0;
    char range[80];
    if (!text || !*text || *end)
        return err_set(err, VLQ_EINPUT, NUM_QUOTE " is not an integer in %s",
                       NUM_QUOTE_ARGS(text ? text : ""), num_range_text(r, range, sizeof range));
    if (errno == ERANGE || !num_in_range((double)v, r))
        return num_out_of_range(text, r, err);
    *out = v;
    return 0;
}

/* num_parse_double: see num.h. */
int num_parse_double(const char *text, const NumRange *r, double *out, char *err)
{
    if (r->is_int) {
        int64_t i;
        int rc = num_parse_i64(text, r, &i, err);
        if (!rc)
            *out = (double)i;
        return rc;
    }
    char *end = NULL;
    errno = 0;
    double v = text && *text ? strtod(text, &end) : 0;
    char range[80];
    num_range_text(r, range, sizeof range);
    if (!text || !*text || *end)
        return err_set(err, VLQ_EINPUT, NUM_QUOTE " is not a number in %s",
                       NUM_QUOTE_ARGS(text ? text : ""), range);
    if (isnan(v) || (isinf(v) && errno != ERANGE))
        return err_set(err, VLQ_EINPUT, NUM_QUOTE " is not a finite number in %s",
                       NUM_QUOTE_ARGS(text), range);
    if (r->f32 && isfinite(v) && fabs(v) <= FLT_MAX)
        v = (double)(float)v;
    if (isinf(v) || (r->f32 && fabs(v) > FLT_MAX) || !num_in_range(v, r))
        return num_out_of_range(text, r, err);
    *out = v;
    return 0;
}
