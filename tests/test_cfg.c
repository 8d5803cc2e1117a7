/* test_cfg: defaults, file values and their sources, override order, every error class
 * with its file:line message, warnings, and the shipped config/vlq.conf against the table. */
#include "test.h"

#include "cfg.h"
#include "err.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void write_conf(const char *name, const char *text)
{
    FILE *f = fopen(name, "w");
    CHECK(f != NULL);
    fputs(text, f);
    fclose(f);
}

/* Load text as ./t.conf; returns cfg_load's status, err filled. */
static int load_text(const char *text, Cfg **c, char *err)
{
    write_conf("t.conf", text);
    return cfg_load("t.conf", c, err);
}

static void t_defaults(void)
{
    unsetenv("VLQ_CONFIG");
    unsetenv("VLQ_DB");
    char err[VLQ_ERRLEN];
    Cfg *c;
    CHECK_EQ(cfg_load(NULL, &c, err), 0); /* the temp dir has no vlq.conf */
    if (!cfg_file(c) || strcmp(cfg_file(c), "/etc/vlq/vlq.conf")) {
        CHECK(cfg_file(c) == NULL);
        CHECK_STR(cfg_str(c, "queue.db"), "./vlq.db");
        CHECK_STR(cfg_source(c, "queue.db"), "default");
        CHECK_EQ(cfg_int(c, "worker.lease_seconds"), 300);
        CHECK_EQ(cfg_int(c, "media.max_image_pixels"), 178956970);
        CHECK(cfg_double(c, "sampling.top_p") == 0.8);
        CHECK_STR(cfg_str(c, "webhooks.schedule"),
                  "0,5,300,1800,7200,18000,36000,50400,72000,86400");
        CHECK_STR(cfg_str(c, "model.path"), "");
        CHECK_STR(cfg_db_path(c, NULL), "./vlq.db");
    }
    cfg_free(c);
}

static void t_file_values(void)
{
    char err[VLQ_ERRLEN] = "";
    Cfg *c;
    CHECK_EQ(load_text("; comment\n[worker]\nlease_seconds = 60 ; a minute\n"
                       "poll_ms=50 # fast\n\n[model]\nbackend = \"ref\"\npath = 'm.vlq'\n"
                       "[sampling]\ntemperature = 0.5\n[webhooks]\nschedule = 1, 2,3\n",
                       &c, err),
             0);
    CHECK_STR(err, "");
    CHECK_STR(cfg_file(c), "t.conf");
    CHECK_EQ(cfg_int(c, "worker.lease_seconds"), 60);
    CHECK_STR(cfg_source(c, "worker.lease_seconds"), "t.conf:3");
    CHECK_EQ(cfg_int(c, "worker.poll_ms"), 50);
    CHECK_STR(cfg_source(c, "worker.poll_ms"), "t.conf:4");
    CHECK_STR(cfg_str(c, "model.backend"), "ref");
    CHECK_STR(cfg_source(c, "model.backend"), "t.conf:7");
    CHECK_STR(cfg_str(c, "model.path"), "m.vlq");
    CHECK(cfg_double(c, "sampling.temperature") == 0.5);
    CHECK_STR(cfg_str(c, "webhooks.schedule"), "1, 2,3");
    CHECK_STR(cfg_source(c, "worker.max_attempts"), "default");
    CHECK_EQ(cfg_warnings(c), 0);
    cfg_free(c);
}

static void t_override_order(void)
{
    char err[VLQ_ERRLEN];
    Cfg *c;
    write_conf("vlq.conf", "[queue]\ndb = file.db\n");
    write_conf("other.conf", "[queue]\ndb = other.db\n");
    unsetenv("VLQ_DB");
    unsetenv("VLQ_CONFIG");
    CHECK_EQ(cfg_load(NULL, &c, err), 0); /* ./vlq.conf is found */
    CHECK_STR(cfg_file(c), "vlq.conf");
    CHECK_STR(cfg_db_path(c, NULL), "file.db");
    CHECK_STR(cfg_source(c, "queue.db"), "vlq.conf:2");
    setenv("VLQ_DB", "env.db", 1);
    CHECK_STR(cfg_db_path(c, NULL), "env.db");
    CHECK_STR(cfg_source(c, "queue.db"), "env VLQ_DB");
    CHECK_STR(cfg_db_path(c, "flag.db"), "flag.db");
    CHECK_STR(cfg_source(c, "queue.db"), "flag --db");
    cfg_free(c);
    /* $VLQ_CONFIG beats ./vlq.conf; --config beats $VLQ_CONFIG */
    setenv("VLQ_CONFIG", "other.conf", 1);
    CHECK_EQ(cfg_load(NULL, &c, err), 0);
    CHECK_STR(cfg_file(c), "other.conf");
    cfg_free(c);
    CHECK_EQ(cfg_load("vlq.conf", &c, err), 0);
    CHECK_STR(cfg_file(c), "vlq.conf");
    CHECK_EQ(cfg_set(c, "worker.lease_seconds", "42", "flag --lease-seconds", err), 0);
    CHECK_EQ(cfg_int(c, "worker.lease_seconds"), 42);
    CHECK_STR(cfg_source(c, "worker.lease_seconds"), "flag --lease-seconds");
    CHECK_EQ(cfg_set(c, "worker.lease_seconds", "x", "flag --lease-seconds", err), VLQ_EINPUT);
    CHECK_STR(err, "flag --lease-seconds: worker.lease_seconds: 'x' is not an integer");
    CHECK_EQ(cfg_int(c, "worker.lease_seconds"), 42); /* unchanged on error */
    CHECK_EQ(cfg_set(c, "worker.nope", "1", "flag --nope", err), VLQ_EINPUT);
    CHECK_STR(err, "worker.nope: no such key");
    cfg_free(c);
    /* a path given by flag or env that does not exist is an error naming it */
    setenv("VLQ_CONFIG", "missing.conf", 1);
    CHECK_EQ(cfg_load(NULL, &c, err), VLQ_EINPUT);
    CHECK_STR(err, "missing.conf: no such config file (given by $VLQ_CONFIG)");
    CHECK(c == NULL);
    CHECK_EQ(cfg_load("gone.conf", &c, err), VLQ_EINPUT);
    CHECK_STR(err, "gone.conf: no such config file (given by --config)");
    unsetenv("VLQ_CONFIG");
    unsetenv("VLQ_DB");
}

static void expect_error(const char *text, const char *message)
{
    char err[VLQ_ERRLEN] = "";
    Cfg *c = (Cfg *)1;
    CHECK_EQ(load_text(text, &c, err), VLQ_EINPUT);
    CHECK(c == NULL);
    CHECK_STR(err, message);
}

static void t_errors(void)
{
    expect_error("[worker]\n\nlease_seconds = 5\n",
                 "t.conf:3: worker.lease_seconds: 5 is out of bounds 10..86400");
    expect_error("[worker]\npoll_ms = fast\n", "t.conf:2: worker.poll_ms: 'fast' is not an integer");
    expect_error("[worker]\npoll_ms = 10x\n", "t.conf:2: worker.poll_ms: '10x' is not an integer");
    expect_error("[sampling]\ntop_p = 1.5\n",
                 "t.conf:2: sampling.top_p: 1.5 is out of bounds 0..1");
    expect_error("[sampling]\ntop_p = high\n", "t.conf:2: sampling.top_p: 'high' is not a number");
    expect_error("[model]\nbackend = gpu\n",
                 "t.conf:2: model.backend: 'gpu' is not one of cpu|ref|cuda");
    expect_error("[webhooks]\nschedule = 0,5,x\n",
                 "t.conf:2: webhooks.schedule: 'x' is not an integer");
    expect_error("[webhooks]\nschedule = 0,-5\n",
                 "t.conf:2: webhooks.schedule: -5 is out of bounds 0..2592000");
    expect_error("[worker]\nlease_seconds = 60\nthis is not ini\n",
                 "t.conf:3: malformed line (want key = value or [section])");
    expect_error("[worker\nlease_seconds = 60\n",
                 "t.conf:1: malformed line (want key = value or [section])");
    /* the first error wins: a bad value before a malformed line */
    expect_error("[worker]\npoll_ms = 1\nnonsense\n",
                 "t.conf:2: worker.poll_ms: 1 is out of bounds 10..60000");
    /* a line longer than inih's buffer is an error, not two lines */
    char text[1024] = "[webhooks]\nallow_hosts = ";
    for (int i = 0; i < 40; i++)
        strcat(text, "host.example.com,");
    strcat(text, "\n[worker]\npoll_ms = 100\n");
    char want[VLQ_ERRLEN];
    snprintf(want, sizeof want, "t.conf:2: line longer than %d bytes", 200 - 2);
    expect_error(text, want);
    /* the secret is checked by webhook_check_secret */
    char err[VLQ_ERRLEN] = "";
    Cfg *c;
    CHECK_EQ(load_text("[webhooks]\nsecret = nope\n", &c, err), VLQ_EINPUT);
    CHECK(!strncmp(err, "t.conf:2: webhooks.secret: ", 27));
    CHECK_EQ(load_text("[webhooks]\nsecret = whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n", &c, err),
             0);
    CHECK_STR(cfg_str(c, "webhooks.secret"), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    cfg_free(c);
    /* not a regular file */
    mkdir("dir.conf", 0755);
    CHECK_EQ(cfg_load("dir.conf", &c, err), VLQ_EINPUT);
    CHECK_STR(err, "dir.conf: not a regular file");
    /* unreadable (root reads anything: then only check it loads) */
    write_conf("locked.conf", "[worker]\npoll_ms = 100\n");
    chmod("locked.conf", 0);
    int rc = cfg_load("locked.conf", &c, err);
    if (rc) {
        CHECK_EQ(rc, VLQ_EIO);
        CHECK_STR(err, "locked.conf: Permission denied");
    } else {
        cfg_free(c);
    }
}

static void t_warnings(void)
{
    char err[VLQ_ERRLEN];
    Cfg *c;
    CHECK_EQ(load_text("[worker]\nlease_seconds = 60\nbogus = 1\n[nosuch]\nx = 1\n"
                       "[worker]\nlease_seconds = 90\n",
                       &c, err),
             0);
    CHECK_EQ(cfg_warnings(c), 3); /* unknown key, unknown section, duplicate */
    CHECK_EQ(cfg_int(c, "worker.lease_seconds"), 90); /* the later wins */
    CHECK_STR(cfg_source(c, "worker.lease_seconds"), "t.conf:7");
    cfg_free(c);
    /* the warnings name file:line */
    CHECK_EQ(test_sh("printf '[worker]\\nbogus = 1\\n[nosuch]\\nx = 2\\n' > w.conf && "
                     "\"$VLQ_BIN\" --config w.conf config >/dev/null 2>w.err && "
                     "grep -q 'w.conf:2: unknown key .worker.bogus.' w.err && "
                     "grep -q 'w.conf:4: unknown section .nosuch.' w.err"),
             0);
}

/* The shipped file: every key of the table is there, commented out at its default, and
 * the file uncommented parses with no warning and gives every default from the file. */
static void t_shipped_conf(void)
{
    char path[4096], err[VLQ_ERRLEN];
    snprintf(path, sizeof path, "%s/config/vlq.conf", test_root());
    Cfg *c;
    CHECK_EQ(cfg_load(path, &c, err), 0);
    CHECK_EQ(cfg_warnings(c), 0);
    for (int i = 0; cfg_key_at(i); i++)
        CHECK_STR(cfg_source(c, cfg_key_at(i)), "default"); /* all commented out */
    cfg_free(c);
    CHECK_EQ(test_sh("sed 's/^;\\([a-z_]* =\\)/\\1/' '%s' > on.conf", path), 0);
    CHECK_EQ(cfg_load("on.conf", &c, err), 0);
    CHECK_EQ(cfg_warnings(c), 0);
    for (int i = 0; cfg_key_at(i); i++) {
        const char *k = cfg_key_at(i);
        if (strncmp(cfg_source(c, k), "on.conf:", 8))
            test_fail(__FILE__, __LINE__, "%s is not in config/vlq.conf", k);
        /* each key documents its default and bounds in the comment above it */
        char want[512];
        double lo, hi;
        int n = snprintf(want, sizeof want, "Default %s", cfg_default(k));
        if (!*cfg_default(k))
            snprintf(want, sizeof want, "Default \"\"");
        else if (cfg_bounds(k, &lo, &hi))
            snprintf(want + n, sizeof want - n, "%%bounds %.15g..%.15g", lo, hi);
        const char *dot = strchr(k, '.');
        if (test_sh("awk -v want='%s' 'BEGIN { n = split(want, w, \"%%\") } "
                    "/^\\[/ { sec = $0 } "
                    "sec == \"[%.*s]\" && /^;%s =/ { "
                    "for (i = 1; i <= n; i++) if (index(doc, w[i]) == 0) exit 1; found = 1 } "
                    "/^#/ { doc = doc \" \" substr($0, 3); next } { doc = \"\" } "
                    "END { exit !found }' '%s'",
                    want, (int)(dot - k), k, dot + 1, path))
            test_fail(__FILE__, __LINE__, "config/vlq.conf: %s: the comment lacks '%s'", k,
                      want);
    }
    /* the values equal the table's defaults */
    CHECK_STR(cfg_str(c, "webhooks.schedule"), cfg_default("webhooks.schedule"));
    CHECK_EQ(cfg_int(c, "media.max_image_pixels"), 178956970);
    CHECK_STR(cfg_str(c, "model.backend"), "cpu");
    CHECK_STR(cfg_str(c, "model.path"), "");
    cfg_free(c);
}

static void t_print(void)
{
    char err[VLQ_ERRLEN];
    Cfg *c;
    CHECK_EQ(load_text("[worker]\npoll_ms = 50\n[model]\npath = a\"b\n", &c, err), 0);
    FILE *f = fopen("out.json", "w");
    cfg_print(c, f, 1);
    fclose(f);
    f = fopen("out.txt", "w");
    cfg_print(c, f, 0);
    fclose(f);
    cfg_free(c);
    CHECK_EQ(test_sh("python3 -c 'import json,sys; d=json.load(open(\"out.json\")); "
                     "k={x[\"key\"]: x for x in d[\"keys\"]}; "
                     "assert d[\"file\"] == \"t.conf\"; "
                     "assert k[\"worker.poll_ms\"] == {\"key\": \"worker.poll_ms\", "
                     "\"value\": \"50\", \"source\": \"t.conf:2\"}, k[\"worker.poll_ms\"]; "
                     "assert k[\"model.path\"][\"value\"] == \"a\" + chr(34) + \"b\"; "
                     "assert k[\"queue.db\"][\"source\"] == \"default\"'"),
             0);
    CHECK_EQ(test_sh("grep -Eq '^worker.poll_ms +=  *50 +; t.conf:2$' out.txt"), 0);
}

/* The README's key table lists every key of the table with its default. */
static void t_readme(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/README.md", test_root());
    for (int i = 0; cfg_key_at(i); i++) {
        const char *k = cfg_key_at(i), *d = cfg_default(k);
        char want[512];
        snprintf(want, sizeof want, "| `%s` | `%s` |", k, *d ? d : "\"\"");
        if (test_sh("grep -qF '%s' '%s'", want, path))
            test_fail(__FILE__, __LINE__, "README.md has no row '%s'", want);
    }
}

TEST_GROUP(cfg, {"defaults", t_defaults}, {"file_values", t_file_values},
           {"override_order", t_override_order}, {"errors", t_errors}, {"warnings", t_warnings},
           {"shipped_conf", t_shipped_conf}, {"print", t_print},
           {"readme", t_readme})
