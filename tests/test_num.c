/* Tests of num (checked numbers), redact (secrets out of printed text) and util_escape
 * (control characters out of printed text): the base helpers every command's flags,
 * config keys and output go through. */
#include "cfg.h"
#include "err.h"
#include "num.h"
#include "redact.h"
#include "test.h"
#include "util.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

static void test_num_int(void)
{
    static const NumRange r = NUM_INT(1, 86400);
    char err[VLQ_ERRLEN];
    int64_t v = -7;
    CHECK_EQ(num_parse_i64("30", &r, &v, err), 0);
    CHECK_EQ(v, 30);
    CHECK_EQ(num_parse_i64("1", &r, &v, err), 0);
    CHECK_EQ(num_parse_i64("86400", &r, &v, err), 0);
    v = -7;
    CHECK_EQ(num_parse_i64("0", &r, &v, err), VLQ_EINPUT);
    CHECK_STR(err, "'0' is out of range [1, 86400]");
    CHECK_EQ(v, -7); /* untouched on error */
    CHECK_EQ(num_parse_i64("86401", &r, &v, err), VLQ_EINPUT);
    CHECK_EQ(num_parse_i64("99999999999999999999", &r, &v, err), VLQ_EINPUT); /* overflows int64 */
    CHECK_STR(err, "'99999999999999999999' is out of range [1, 86400]");
    CHECK_EQ(num_parse_i64("-99999999999999999999", &r, &v, err), VLQ_EINPUT);
    CHECK_EQ(num_parse_i64("1.5", &r, &v, err), VLQ_EINPUT);
    CHECK_STR(err, "'1.5' is not an integer in [1, 86400]");
    CHECK_EQ(num_parse_i64("1e3", &r, &v, err), VLQ_EINPUT);
    CHECK_EQ(num_parse_i64("", &r, &v, err), VLQ_EINPUT);
    CHECK_STR(err, "'' is not an integer in [1, 86400]");
    CHECK_EQ(num_parse_i64(NULL, &r, &v, err), VLQ_EINPUT);
    CHECK_EQ(num_parse_i64("12abc", &r, &v, err), VLQ_EINPUT);
    CHECK_EQ(num_parse_i64("nan", &r, &v, err), VLQ_EINPUT);
    /* a long value is quoted short, so the message stays one readable line */
    CHECK_EQ(num_parse_i64("1111111111111111111111111111111111111111111111111111", &r, &v, err),
             VLQ_EINPUT);
    CHECK_STR(err, "'1111111111111111111111111111111111111111...' is out of range [1, 86400]");
    static const NumRange big = NUM_INT(0, 9.2e18);
    CHECK_EQ(num_parse_i64("9200000000000000000", &big, &v, err), 0);
    CHECK_EQ(num_parse_i64("9223372036854775807", &big, &v, err), VLQ_EINPUT);
    CHECK_STR(err, "'9223372036854775807' is out of range [0, 9200000000000000000]");
    CHECK_EQ(num_parse_i64("-1", &big, &v, err), VLQ_EINPUT);
}

static void test_num_real(void)
{
    static const NumRange top_p = NUM_REAL_F32_GT(0, 1), temp = NUM_REAL_F32(0, 100),
                          fps = NUM_REAL(0.01, 120);
    char err[VLQ_ERRLEN];
    double d = -1;
    CHECK_EQ(num_parse_double("0.8", &top_p, &d, err), 0);
    CHECK(d == (double)0.8f); /* rounded to the float it will be kept as */
    CHECK_EQ(num_parse_double("1", &top_p, &d, err), 0);
    CHECK_EQ(num_parse_double("0", &top_p, &d, err), VLQ_EINPUT);
    CHECK_STR(err, "'0' is out of range (0, 1]");
    CHECK_EQ(num_parse_double("2", &top_p, &d, err), VLQ_EINPUT);
    CHECK_STR(err, "'2' is out of range (0, 1]");
    /* positive as a double, 0 as a float: refused, not passed on as 0.0f */
    CHECK_EQ(num_parse_double("1e-60", &top_p, &d, err), VLQ_EINPUT);
    for (const char *const *s = (const char *const[]){"nan", "NaN", "-nan", "inf", "-inf",
                                                       "infinity", NULL};
         *s; s++) {
        CHECK_EQ(num_parse_double(*s, &temp, &d, err), VLQ_EINPUT);
        CHECK(strstr(err, "is not a finite number in [0, 100]") != NULL);
    }
    CHECK_EQ(num_parse_double("1e400", &temp, &d, err), VLQ_EINPUT); /* overflows double */
    CHECK_STR(err, "'1e400' is out of range [0, 100]");
    CHECK_EQ(num_parse_double("1e39", &temp, &d, err), VLQ_EINPUT); /* overflows float */
    CHECK_EQ(num_parse_double("-0.1", &temp, &d, err), VLQ_EINPUT);
    CHECK_EQ(num_parse_double("0", &temp, &d, err), 0);
    CHECK(d == 0);
    CHECK_EQ(num_parse_double("0.5x", &temp, &d, err), VLQ_EINPUT);
    CHECK_STR(err, "'0.5x' is not a number in [0, 100]");
    CHECK_EQ(num_parse_double("", &temp, &d, err), VLQ_EINPUT);
    CHECK_EQ(num_parse_double("0.01", &fps, &d, err), 0);
    CHECK(d == 0.01);
    CHECK_EQ(num_parse_double("0.001", &fps, &d, err), VLQ_EINPUT);
    CHECK_STR(err, "'0.001' is out of range [0.01, 120]");
    /* an integer range read as a double still wants an integer */
    static const NumRange k = NUM_INT(0, 10);
    CHECK_EQ(num_parse_double("3", &k, &d, err), 0);
    CHECK(d == 3);
    CHECK_EQ(num_parse_double("3.5", &k, &d, err), VLQ_EINPUT);
    char buf[64];
    static const NumRange open_hi = {.lo = 0, .hi = 1, .hi_open = 1};
    CHECK_STR(num_range_text(&open_hi, buf, sizeof buf), "[0, 1)");
    CHECK_EQ(num_parse_double("1", &open_hi, &d, err), VLQ_EINPUT);
}

/* The config keys and the flags share ranges: the reference's bounds hold in the table. */
static void test_num_cfg_ranges(void)
{
    char err[VLQ_ERRLEN];
    double d;
    const char *const p_keys[] = {"sampling.top_p", "summarize.top_p"};
    for (int i = 0; i < 2; i++) {
        const NumRange *r = cfg_key_range(p_keys[i]);
        CHECK_EQ(num_parse_double("1", r, &d, err), 0);
        CHECK_EQ(num_parse_double("0", r, &d, err), VLQ_EINPUT);
        CHECK_EQ(num_parse_double("1.0001", r, &d, err), VLQ_EINPUT);
    }
    const char *const rep_keys[] = {"sampling.repetition_penalty", "summarize.repetition_penalty"};
    for (int i = 0; i < 2; i++) {
        const NumRange *r = cfg_key_range(rep_keys[i]);
        CHECK_EQ(num_parse_double("0.001", r, &d, err), 0); /* > 0: the reference's bound */
        CHECK_EQ(num_parse_double("0", r, &d, err), VLQ_EINPUT);
    }
    const char *const t_keys[] = {"sampling.temperature", "summarize.temperature"};
    for (int i = 0; i < 2; i++) {
        const NumRange *r = cfg_key_range(t_keys[i]);
        CHECK_EQ(num_parse_double("0", r, &d, err), 0); /* greedy */
        CHECK_EQ(num_parse_double("nan", r, &d, err), VLQ_EINPUT);
        CHECK_EQ(num_parse_double("-1", r, &d, err), VLQ_EINPUT);
    }
    int64_t v;
    CHECK_EQ(num_parse_i64("0", cfg_key_range("sampling.top_k"), &v, err), 0);
    CHECK_EQ(num_parse_i64("-1", cfg_key_range("sampling.top_k"), &v, err), VLQ_EINPUT);
    CHECK_EQ(num_parse_i64("0", cfg_key_range("budgets.max_new_tokens"), &v, err), VLQ_EINPUT);
}

/* config/vlq.conf states each numeric key's range, as num_range_text writes it, on the
 * doc line above the key: the documentation cannot drift from the table. */
static void test_num_conf_ranges(void)
{
    char path[4200], err[VLQ_ERRLEN];
    snprintf(path, sizeof path, "%s/config/vlq.conf", test_root());
    char *text;
    size_t len;
    CHECK_EQ(util_read_file(path, 0, &text, &len, err), 0);
    int n_num = 0;
    for (int i = 0; i < cfg_key_count(); i++) {
        const NumRange *r = cfg_key_range(cfg_key_name(i));
        if (!r)
            continue;
        n_num++;
        const char *dot = strchr(cfg_key_name(i), '.');
        char section[64], want[256], range[80];
        snprintf(section, sizeof section, "[%.*s]", (int)(dot - cfg_key_name(i)), cfg_key_name(i));
        snprintf(want, sizeof want, " %s\n; %s = %s\n", num_range_text(r, range, sizeof range),
                 dot + 1, cfg_key_default(i));
        const char *sec = strstr(text, section);
        if (!sec || !strstr(sec, want))
            test_fail(__FILE__, __LINE__, "config/vlq.conf: %s: the doc line does not end with %s",
                      cfg_key_name(i), range);
    }
    CHECK(n_num >= 30);
    CHECK(cfg_key_range("queue.db") == NULL);
    free(text);
}

static void test_redact(void)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"https://bob:hunter2@example.com/hook?x=1", "https://bob:***@example.com/hook?x=1"},
        {"http://tok3n@example.com", "http://***@example.com"},
        {"https://example.com/hook", "https://example.com/hook"},
        {"postgresql://app:s3cret@db.local:5432/vlq", "postgresql://app:***@db.local:5432/vlq"},
        {"postgres://u:p@h/d?sslmode=require", "postgres://u:***@h/d?sslmode=require"},
        {"curl: (7) http://a:b@h:1/x: failed", "curl: (7) http://a:***@h:1/x: failed"},
        {"x https://a:b@c https://d:e@f y", "x https://a:***@c https://d:***@f y"},
        {"https://us:er:pa@ss@host/p", "https://us:***@host/p"}, /* the last '@' ends it */
        {"mailto-like a@b.c stays", "mailto-like a@b.c stays"},
        {"https://host/path@v2", "https://host/path@v2"}, /* '@' past the authority */
        {"secret whsec_MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIz!", "secret whsec_***!"},
        {"whsec_", "whsec_"},
        {"host=db user=app password=s3cret dbname=vlq", "host=db user=app password=*** dbname=vlq"},
        {"password = 'a b c' rest", "password = *** rest"},
        {"https://h/x?user=a&password=b&z=1", "https://h/x?user=a&password=***&z=1"},
        {"wrong password for user", "wrong password for user"},
        {"password=", "password="},
        {"", ""},
        {"x://@h", "x://***@h"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *r = redact_text(cases[i].in);
        CHECK_STR(r, cases[i].out);
        free(r);
    }
    CHECK(redact_text(NULL) == NULL);
    char buf[24] = "https://a:b@host/abcdef";
    redact_in_place(buf, sizeof buf); /* longer after masking: truncated, never overflows */
    CHECK_STR(buf, "https://a:***@host/abcd");
    CHECK_STR(redact_secret(""), "");
    CHECK_STR(redact_secret("whsec_abc"), "whsec_***");
    CHECK_STR(redact_secret("other"), "***");
}

static void test_escape(void)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"plain/path.pdf", "plain/path.pdf"},
        {"a\nb\tc\rd", "a\\nb\\tc\\rd"},
        {"evil\033[31mred", "evil\\x1b[31mred"},
        {"back\\slash", "back\\\\slash"},
        {"del\x7f", "del\\x7f"},
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
        {"c1 \xc2\x9b csi", "c1 \\xc2\\x9b csi"},       /* U+009B: a C1 control */
        {"bad \xff\xfe", "bad \\xff\\xfe"},             /* not UTF-8 */
        {"cut \xe2\x82", "cut \\xe2\\x82"},             /* truncated sequence */
        {"overlong \xc0\xaf", "overlong \\xc0\\xaf"},
        {"surrogate \xed\xa0\x80", "surrogate \\xed\\xa0\\x80"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *r = util_escape(cases[i].in);
        CHECK_STR(r, cases[i].out);
        free(r);
    }
    char *r = util_escape(NULL);
    CHECK_STR(r, "");
    free(r);
}

TEST_GROUP(num, {"int", test_num_int}, {"real", test_num_real},
           {"cfg_ranges", test_num_cfg_ranges},
           {"conf_ranges", test_num_conf_ranges}, {"redact", test_redact}, {"escape", test_escape})
