/* Tests of util and err. */
#include "err.h"
#include "test.h"
#include "util.h"

#include <stdlib.h>

static void test_sha256(void)
{
    char hex[65];
    util_sha256_hex("abc", 3, hex);
    CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    char err[VLQ_ERRLEN];
    CHECK_EQ(util_write_file("f", "abc", 3, err), 0);
    char hex2[65];
    CHECK_EQ(util_sha256_file("f", hex2, err), 0);
    CHECK_STR(hex2, hex);
    CHECK_EQ(util_sha256_file("missing", hex2, err), VLQ_EINPUT);
    CHECK_STR(err, "missing: No such file or directory");
}

static void test_buf(void)
{
    Buf b = {0};
    for (int i = 0; i < 1000; i++)
        buf_printf(&b, "%d,", i);
    CHECK(b.len > 3000);
    CHECK(!strncmp(b.data, "0,1,2,", 6));
    char *s = buf_take(&b);
    CHECK(b.data == NULL && b.len == 0);
    free(s);
    buf_clear(NULL);
}

static void test_read_file(void)
{
    char err[VLQ_ERRLEN];
    CHECK_EQ(util_write_file("x", "hello", 5, err), 0);
    char *data;
    size_t len;
    CHECK_EQ(util_read_file("x", 0, &data, &len, err), 0);
    CHECK_EQ(len, 5);
    CHECK_STR(data, "hello");
    free(data);
    CHECK_EQ(util_read_file("x", 4, &data, &len, err), VLQ_EINPUT);
    CHECK(data == NULL);
}

static void test_err_prefix(void)
{
    char err[VLQ_ERRLEN];
    CHECK_EQ(err_set(err, VLQ_EIO, "disk %s", "full"), VLQ_EIO);
    err_prefix(err, "page %d", 3);
    CHECK_STR(err, "page 3: disk full");
    CHECK(err_is_transient(VLQ_EIO));
    CHECK(!err_is_transient(VLQ_EINPUT));
    CHECK_STR(err_name(VLQ_EBUSY), "EBUSY");
}

static void test_parse(void)
{
    int64_t v;
    double d;
    CHECK(util_parse_i64("42", &v) == 0 && v == 42);
    CHECK(util_parse_i64("4x", &v) < 0);
    CHECK(util_parse_i64("", &v) < 0);
    CHECK(util_parse_double("0.5", &d) == 0 && d == 0.5);
}

TEST_GROUP(util, {"sha256", test_sha256}, {"buf", test_buf}, {"read_file", test_read_file},
           {"err_prefix", test_err_prefix}, {"parse", test_parse})
