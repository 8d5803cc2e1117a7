/* The test runner: every registered C test and every shell script in tests/e2e, each in a forked
 * child with its own temp dir and a timeout. `vlq-test [PREFIX...]` runs the tests
 * whose full name ("group/name", "e2e/script") starts with one of the prefixes.
 * The last line is exactly "N passed, N failed, N skipped"; exit 1 on any failure. */
#define _GNU_SOURCE
#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TEST_MAX_GROUPS 64
#define TEST_DEFAULT_TIMEOUT_S 120
#define TEST_E2E_TIMEOUT_S 900
#define TEST_SKIP_STATUS 77

static struct {
    const char *group;
    const TestCase *cases;
} test_groups[TEST_MAX_GROUPS];
static int test_ngroups;
static int test_failures;     /* in the child: failed checks of the current test */
static char test_dir[4096];   /* in the child: its temp dir */
static char test_root_dir[4096];

void test_register(const char *group, const TestCase *cases)
{
    if (test_ngroups < TEST_MAX_GROUPS)
        test_groups[test_ngroups++] = (typeof(test_groups[0])){group, cases};
}

void test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "    %s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    test_failures++;
}

void test_skip(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "    skip: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(NULL);
    _exit(TEST_SKIP_STATUS);
}

const char *test_root(void) { return test_root_dir; }
const char *test_tmpdir(void) { return test_dir; }

const char *test_path(const char *name)
{
    static char path[8192];
    snprintf(path, sizeof path, "%s/%s", test_dir, name);
    return path;
}

/* Read a whole file into a new NUL-terminated buffer, or NULL. */
static char *test_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0, r;
    char *data = malloc(cap + 1);
    while (data && (r = fread(data + n, 1, cap - n, f)) > 0)
        if ((n += r) == cap)
            data = realloc(data, (cap *= 2) + 1);
    fclose(f);
    if (data)
        data[n] = '\0';
    *len = n;
    return data;
}

int test_count_lines(const char *path)
{
    size_t len;
    char *data = test_slurp(path, &len);
    int n = 0;
    for (size_t i = 0; data && i < len; i++)
        n += data[i] == '\n';
    free(data);
    return n;
}

int test_count_in_file(const char *path, const char *needle)
{
    size_t len;
    char *data = test_slurp(path, &len);
    int n = 0;
    for (const char *p = data; p && (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    free(data);
    return n;
}

int test_sh(const char *fmt, ...)
{
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&cmd, fmt, ap) < 0)
        abort();
    va_end(ap);
    fflush(NULL);
    int st = system(cmd);
    free(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int test_check_tensor(const char *file, int line, const char *what, const float *got,
                      const float *ref, size_t n, float atol, float rtol)
{
    double maxdiff = 0;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]);
        if (!(d <= maxdiff) || isnan(d))
            maxdiff = isnan(d) ? INFINITY : d;
        if (!(d <= atol + rtol * fabs((double)ref[i]))) {
            if (bad < 5)
                fprintf(stderr, "    %s[%zu]: got %.8g, want %.8g\n", what, i, got[i], ref[i]);
            bad++;
        }
    }
    if (bad) {
        test_fail(file, line, "%s: %zu of %zu values off (max abs diff %.3g, atol %g rtol %g)",
                  what, bad, n, maxdiff, atol, rtol);
        return 0;
    }
    return 1;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int matches(const char *name, int nprefix, char **prefixes)
{
    if (nprefix == 0)
        return 1;
    for (int i = 0; i < nprefix; i++)
        if (!strncmp(name, prefixes[i], strlen(prefixes[i])))
            return 1;
    return 0;
}

/* Run fn (or the script) in a child; returns 0 pass, 1 fail, 2 skip. */
static int run_one(const char *name, void (*fn)(void), const char *script, int timeout_s)
{
    char tmpl[] = "/tmp/vlq-test-XXXXXX";
    if (!mkdtemp(tmpl)) {
        fprintf(stderr, "FAIL %s: mkdtemp: %s\n", name, strerror(errno));
        return 1;
    }
    struct timespec ts0, ts1;
    clock_gettime(CLOCK_MONOTONIC, &ts0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        snprintf(test_dir, sizeof test_dir, "%s", tmpl);
        if (chdir(test_dir) != 0)
            _exit(1);
        setenv("TEST_TMPDIR", test_dir, 1);
        if (script) {
            execlp("bash", "bash", script, (char *)NULL);
            _exit(127);
        }
        fn();
        fflush(NULL);
        _exit(test_failures ? 1 : 0);
    }
    int status = 0, timed_out = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        clock_gettime(CLOCK_MONOTONIC, &ts1);
        if (ts1.tv_sec - ts0.tv_sec > timeout_s) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            timed_out = 1;
            break;
        }
        usleep(2000);
    }
    kill(-pid, SIGKILL); /* leftovers of the test's process group */
    clock_gettime(CLOCK_MONOTONIC, &ts1);
    double secs = (double)(ts1.tv_sec - ts0.tv_sec) + (ts1.tv_nsec - ts0.tv_nsec) * 1e-9;
    nftw(tmpl, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    int result;
    if (timed_out) {
        printf("FAIL %s (timed out after %d s)\n", name, timeout_s);
        result = 1;
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        printf("ok   %s (%.2fs)\n", name, secs);
        result = 0;
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == TEST_SKIP_STATUS) {
        printf("skip %s\n", name);
        result = 2;
    } else if (WIFSIGNALED(status)) {
        printf("FAIL %s (signal %d: %s)\n", name, WTERMSIG(status), strsignal(WTERMSIG(status)));
        result = 1;
    } else {
        printf("FAIL %s (exit %d)\n", name, WEXITSTATUS(status));
        result = 1;
    }
    fflush(stdout);
    return result;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    const char *root = getenv("VLQ_ROOT");
    if (root)
        snprintf(test_root_dir, sizeof test_root_dir, "%s", root);
    else if (!getcwd(test_root_dir, sizeof test_root_dir))
        return 1;
    setenv("VLQ_ROOT", test_root_dir, 1);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int counts[3] = {0, 0, 0};
    int nprefix = argc - 1;
    char **prefixes = argv + 1;

    for (int g = 0; g < test_ngroups; g++)
        for (const TestCase *c = test_groups[g].cases; c->name; c++) {
            char name[256];
            snprintf(name, sizeof name, "%s/%s", test_groups[g].group, c->name);
            if (matches(name, nprefix, prefixes))
                counts[run_one(name, c->fn, NULL,
                               c->timeout_s ? c->timeout_s : TEST_DEFAULT_TIMEOUT_S)]++;
        }

    char e2e_dir[4200];
    snprintf(e2e_dir, sizeof e2e_dir, "%s/tests/e2e", test_root_dir);
    DIR *d = opendir(e2e_dir);
    char *scripts[512];
    int nscripts = 0;
    for (struct dirent *e; d && (e = readdir(d)) && nscripts < 512;) {
        size_t n = strlen(e->d_name);
        if (n > 3 && !strcmp(e->d_name + n - 3, ".sh"))
            scripts[nscripts++] = strdup(e->d_name);
    }
    if (d)
        closedir(d);
    qsort(scripts, (size_t)nscripts, sizeof scripts[0], cmp_str);
    for (int i = 0; i < nscripts; i++) {
        char name[300], path[4800];
        snprintf(name, sizeof name, "e2e/%.*s", (int)strlen(scripts[i]) - 3, scripts[i]);
        snprintf(path, sizeof path, "%s/%s", e2e_dir, scripts[i]);
        if (matches(name, nprefix, prefixes))
            counts[run_one(name, NULL, path, TEST_E2E_TIMEOUT_S)]++;
        free(scripts[i]);
    }
    printf("%d passed, %d failed, %d skipped\n", counts[0], counts[1], counts[2]);
    return counts[1] ? 1 : 0;
}
