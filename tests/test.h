/* test: the plain-C test harness. Each test is a static void function listed in a
 * TEST_GROUP table at the end of its tests/test_<module>.c. The runner (tests/main.c)
 * runs each test in a forked child, inside a fresh temp dir (the child's cwd), with a
 * timeout, so a crash or hang is one failure. A failed CHECK records file:line and the
 * test runs on. Skips exit with a reason. */
#ifndef VLQ_TEST_H
#define VLQ_TEST_H

#include <stddef.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;  /* short name; the full name is "group/name" */
    void (*fn)(void);  /* the test */
    int timeout_s;     /* 0: the default (120 s) */
} TestCase;

void test_register(const char *group, const TestCase *cases);
void test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* End the test as skipped, with the reason printed. */
void test_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* The repository root (for fixtures), from $VLQ_ROOT or ".." of the binary's cwd. */
const char *test_root(void);
/* The test's own temp dir (also its cwd), removed after the test. */
const char *test_tmpdir(void);
/* A path under the test's temp dir in a static buffer (valid until the next call). */
const char *test_path(const char *name);
/* The number of lines (newlines) in the file at path; 0 if it cannot be read. */
int test_count_lines(const char *path);
/* How many times needle occurs in the file at path (0 if it cannot be read); a nonzero
 * result also answers "does the file contain needle". */
int test_count_in_file(const char *path, const char *needle);
/* Run a shell command (sh -c); returns its exit status, or -1 if it did not exit. */
int test_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Compare float arrays: max |got-ref| <= atol + rtol*|ref| elementwise; prints the
 * first mismatches and the max abs diff. Returns 1 if all match. */
int test_check_tensor(const char *file, int line, const char *what, const float *got,
                      const float *ref, size_t n, float atol, float rtol);

#define TEST_GROUP(group, ...)                                                                   \
    static const TestCase test_cases_##group[] = {__VA_ARGS__, {NULL, NULL, 0}};                 \
    __attribute__((constructor)) static void test_register_##group(void)                         \
    {                                                                                            \
        test_register(#group, test_cases_##group);                                               \
    }

#define CHECK(c) ((c) ? (void)0 : test_fail(__FILE__, __LINE__, "CHECK(%s)", #c))
#define CHECK_EQ(a, b)                                                                           \
    do {                                                                                         \
        long long a_ = (long long)(a), b_ = (long long)(b);                                      \
        if (a_ != b_)                                                                            \
            test_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, a_, b_);             \
    } while (0)
#define CHECK_STR(a, b)                                                                          \
    do {                                                                                         \
        const char *a_ = (a), *b_ = (b);                                                         \
        if (!a_ || !b_ || strcmp(a_, b_))                                                        \
            test_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b,                  \
                      a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                   \
    } while (0)
#define CHECK_TENSOR(got, ref, n, atol, rtol)                                                    \
    test_check_tensor(__FILE__, __LINE__, #got, (got), (ref), (n), (atol), (rtol))

#endif
