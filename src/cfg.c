/* cfg: the key table, the INI reader (inih) and the typed reads. See cfg.h. */
#include "cfg.h"

#include "err.h"
#include "log.h"
#include "util.h"
#include "webhook.h"

#include <ini.h>

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef enum { CFG_INT, CFG_DOUBLE, CFG_STRING, CFG_BOOL, CFG_LIST } CfgType;

typedef struct {
    const char *name;    /* "section.key" */
    CfgType type;
    const char *def;     /* the default, as it is written in vlq.conf */
    double min, max;     /* bounds of an int or double (of each element of an int list) */
    const char *allowed; /* a string's allowed values, "a|b|c", or NULL for any */
    const char *doc;     /* one line */
} CfgKey;

#define NOB 0, 0
static const CfgKey cfg_keys[] = {
    {"queue.db", CFG_STRING, "./vlq.db", NOB, NULL, "the SQLite queue database"},
    {"queue.busy_timeout_ms", CFG_INT, "5000", 0, 600000, NULL, "wait on a locked database, ms"},
    {"model.path", CFG_STRING, "", NOB, NULL, "the .vlq model file"},
    {"model.backend", CFG_STRING, "cpu", NOB, "cpu|ref|cuda", "inference backend"},
    {"model.threads", CFG_INT, "0", 0, 1024, NULL, "CPU threads, 0 = all cores"},
    {"model.device", CFG_INT, "0", 0, 64, NULL, "accelerator index"},
    {"budgets.ocr", CFG_INT, "8192", 256, 262144, NULL, "token budget of an OCR input"},
    {"budgets.video", CFG_INT, "16384", 256, 262144, NULL, "token budget of a video input"},
    {"budgets.document", CFG_INT, "32768", 256, 262144, NULL, "token budget of a document"},
    {"budgets.max_new_tokens", CFG_INT, "2048", 1, 32768, NULL, "generated tokens per input"},
    {"budgets.summarize_max_new_tokens", CFG_INT, "1024", 1, 32768, NULL,
     "generated tokens of a summary"},
    {"sampling.temperature", CFG_DOUBLE, "0", 0, 2, NULL, "0 = greedy (OCR)"},
    {"sampling.top_p", CFG_DOUBLE, "0.8", 0, 1, NULL, "nucleus sampling mass"},
    {"sampling.top_k", CFG_INT, "20", 0, 1000, NULL, "top-k sampling, 0 = off"},
    {"sampling.repetition_penalty", CFG_DOUBLE, "1.0", 1, 2, NULL, "1.0 = off"},
    {"sampling.seed", CFG_INT, "0", 0, 4294967295.0, NULL, "sampling seed"},
    {"worker.lease_seconds", CFG_INT, "300", 10, 86400, NULL, "job lease, s"},
    {"worker.max_attempts", CFG_INT, "3", 1, 100, NULL, "runs of a job before it fails"},
    {"worker.poll_ms", CFG_INT, "1000", 10, 60000, NULL, "idle poll interval, ms"},
    {"worker.backoff_base_s", CFG_INT, "1", 0, 3600, NULL,
     "retry backoff = attempt^4 * base, s"},
    {"webhooks.secret", CFG_STRING, "", NOB, NULL, "signing secret, whsec_<base64>"},
    {"webhooks.timeout_ms", CFG_INT, "15000", 100, 300000, NULL, "request timeout, ms"},
    {"webhooks.connect_timeout_ms", CFG_INT, "5000", 100, 300000, NULL,
     "connect timeout, ms"},
    {"webhooks.max_attempts", CFG_INT, "10", 1, 100, NULL, "deliveries of an event"},
    {"webhooks.schedule", CFG_LIST, "0,5,300,1800,7200,18000,36000,50400,72000,86400", 0,
     2592000, NULL, "delay before each attempt, s"},
    {"webhooks.allow_hosts", CFG_LIST, "", NOB, NULL, "hosts webhooks may reach"},
    {"media.fps", CFG_DOUBLE, "2", 0.01, 60, NULL, "video frames sampled per second"},
    {"media.min_frames", CFG_INT, "4", 1, 100000, NULL, "fewest frames of a video"},
    {"media.max_frames", CFG_INT, "768", 1, 100000, NULL, "most frames of a video"},
    {"media.max_image_pixels", CFG_INT, "178956970", 1, 4294967295.0, NULL,
     "largest image accepted, pixels"},
    {"media.pdf_dpi", CFG_INT, "144", 36, 1200, NULL, "PDF render resolution, dpi"},
    {"media.threads", CFG_INT, "0", 0, 1024, NULL, "decoder threads, 0 = auto"},
    {"plan.min_group_tokens", CFG_INT, "64", 1, 262144, NULL, "smallest input group, tokens"},
    {"offload.folder", CFG_STRING, "", NOB, NULL, "folder for offloaded layers"},
    {"offload.layers", CFG_INT, "0", 0, 1024, NULL, "decoder layers kept off the device"},
};
#define CFG_NKEYS ((int)(sizeof cfg_keys / sizeof cfg_keys[0]))

typedef struct {
    char *text;       /* the value as written (normalised for numbers: as given) */
    int64_t i;        /* CFG_INT, CFG_BOOL */
    double d;         /* CFG_DOUBLE */
    char source[300]; /* "default", "file:line", "env VLQ_DB", "flag --db" */
} CfgValue;

struct Cfg {
    char *file; /* the config file read, or NULL */
    int warnings;
    CfgValue v[CFG_NKEYS];
};

static int cfg_find(const char *key)
{
    for (int i = 0; i < CFG_NKEYS; i++)
        if (!strcmp(cfg_keys[i].name, key))
            return i;
    return -1;
}

static int cfg_lookup(const char *key, CfgType type)
{
    int i = cfg_find(key);
    VLQ_ASSERT(i >= 0);
    VLQ_ASSERT(cfg_keys[i].type == type || (type == CFG_STRING && cfg_keys[i].type == CFG_LIST));
    return i;
}

static int cfg_parse_int(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno)
        return -1;
    *out = v;
    return 0;
}

static int cfg_parse_bool(const char *s, int64_t *out)
{
    static const char *yes[] = {"true", "yes", "1", "on"}, *no[] = {"false", "no", "0", "off"};
    for (int i = 0; i < 4; i++) {
        if (!strcasecmp(s, yes[i]))
            return *out = 1, 0;
        if (!strcasecmp(s, no[i]))
            return *out = 0, 0;
    }
    return -1;
}

static int cfg_in_allowed(const char *allowed, const char *s)
{
    size_t n = strlen(s);
    for (const char *p = allowed; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !strncmp(p, s, n))
            return 1;
        p += len + (bar ? 1 : 0);
    }
    return 0;
}

/* Each comma-separated element of an int list: an int within bounds. */
static int cfg_check_int_list(const CfgKey *k, const char *s, char *err)
{
    if (!*s)
        return 0;
    char *copy = xstrdup(s);
    int rc = 0;
    for (char *tok = strtok(copy, ","); tok && !rc; tok = strtok(NULL, ",")) {
        while (isspace((unsigned char)*tok))
            tok++;
        char *e = tok + strlen(tok);
        while (e > tok && isspace((unsigned char)e[-1]))
            *--e = '\0';
        int64_t v;
        if (cfg_parse_int(tok, &v))
            rc = err_set(err, VLQ_EINPUT, "'%s' is not an integer", tok);
        else if (v < k->min || v > k->max)
            rc = err_set(err, VLQ_EINPUT, "%lld is out of bounds %.15g..%.15g", (long long)v,
                         k->min, k->max);
    }
    free(copy);
    return rc;
}

/* Parse s as key i's type and bounds into val (not changed on error). err: "reason". */
static int cfg_parse_value(int i, const char *s, CfgValue *val, char *err)
{
    const CfgKey *k = &cfg_keys[i];
    int64_t iv = 0;
    double dv = 0;
    switch (k->type) {
    case CFG_INT:
        if (cfg_parse_int(s, &iv))
            return err_set(err, VLQ_EINPUT, "'%s' is not an integer", s);
        if (iv < k->min || iv > k->max)
            return err_set(err, VLQ_EINPUT, "%s is out of bounds %.15g..%.15g", s, k->min,
                           k->max);
        break;
    case CFG_DOUBLE: {
        char *end;
        errno = 0;
        dv = strtod(s, &end);
        if (!*s || *end || errno || dv != dv)
            return err_set(err, VLQ_EINPUT, "'%s' is not a number", s);
        if (dv < k->min || dv > k->max)
            return err_set(err, VLQ_EINPUT, "%s is out of bounds %.15g..%.15g", s, k->min,
                           k->max);
        break;
    }
    case CFG_BOOL:
        if (cfg_parse_bool(s, &iv))
            return err_set(err, VLQ_EINPUT, "'%s' is not a boolean (true/false/yes/no/1/0)",
                           s);
        break;
    case CFG_STRING:
        if (k->allowed && !cfg_in_allowed(k->allowed, s))
            return err_set(err, VLQ_EINPUT, "'%s' is not one of %s", s, k->allowed);
        if (!strcmp(k->name, "webhooks.secret") && *s && webhook_check_secret(s, err))
            return VLQ_EINPUT;
        break;
    case CFG_LIST:
        if (k->max > 0 && cfg_check_int_list(k, s, err))
            return VLQ_EINPUT;
        break;
    }
    free(val->text);
    val->text = xstrdup(s);
    val->i = iv;
    val->d = dv;
    return 0;
}

static void cfg_set_source(CfgValue *val, const char *source)
{
    snprintf(val->source, sizeof val->source, "%s", source);
}

/* Reading a file: inih calls the reader once per line, so the reader counts lines. */
typedef struct {
    Cfg *c;
    FILE *f;
    const char *path;
    int line;      /* the line inih is handling */
    int at_start;  /* the last read ended a line */
    int long_line; /* a line longer than inih's buffer (its number), 0 if none */
    int max_line;  /* inih's line buffer size */
    int err_line;  /* the first handler error's line, 0 if none */
    int err_code;
    char err[VLQ_ERRLEN];
    char seen[CFG_NKEYS]; /* keys set by this file */
    char last_section[128];
} CfgReader;

static char *cfg_read_line(char *str, int num, void *stream)
{
    CfgReader *r = stream;
    if (r->at_start)
        r->line++;
    char *s = fgets(str, num, r->f);
    if (s) {
        size_t n = strlen(s);
        r->at_start = n > 0 && s[n - 1] == '\n';
        /* inih would read the rest of a long line as another line: stop instead. */
        if (!r->at_start && (int)n == num - 1 && !feof(r->f)) {
            r->long_line = r->line;
            r->max_line = num;
            return NULL;
        }
    }
    return s;
}

/* The value without a " #" comment (inih strips " ;" ones), trimmed and unquoted. */
static char *cfg_clean_value(const char *value)
{
    char *s = xstrdup(value);
    for (char *p = s; *p; p++)
        if (*p == '#' && p > s && isspace((unsigned char)p[-1])) {
            *p = '\0';
            break;
        }
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    if (n >= 2 && ((s[0] == '"' && s[n - 1] == '"') || (s[0] == '\'' && s[n - 1] == '\''))) {
        memmove(s, s + 1, n - 2);
        s[n - 2] = '\0';
    }
    return s;
}

static int cfg_handler(void *user, const char *section, const char *name, const char *value)
{
    CfgReader *r = user;
    if (!name) /* a section header: inih calls with name NULL only if INI_CALL_HANDLER_ON_NEW_SECTION */
        return 1;
    char key[256];
    snprintf(key, sizeof key, "%s.%s", section, name);
    int i = cfg_find(key);
    if (i < 0) {
        int known_section = 0;
        size_t sl = strlen(section);
        for (int j = 0; j < CFG_NKEYS; j++)
            if (!strncmp(cfg_keys[j].name, section, sl) && cfg_keys[j].name[sl] == '.')
                known_section = 1;
        if (!*section)
            log_warn("%s:%d: key '%s' outside any [section] (ignored)", r->path, r->line, name);
        else if (known_section)
            log_warn("%s:%d: unknown key '%s' (ignored)", r->path, r->line, key);
        else
            log_warn("%s:%d: unknown section [%s] (ignored)", r->path, r->line, section);
        r->c->warnings++;
        return 1;
    }
    if (!value) {
        if (!r->err_line) {
            r->err_line = r->line;
            r->err_code = err_set(r->err, VLQ_EINPUT, "%s:%d: %s: no value", r->path,
                                  r->line, key);
        }
        return 0;
    }
    char *clean = cfg_clean_value(value);
    char reason[VLQ_ERRLEN];
    int rc = cfg_parse_value(i, clean, &r->c->v[i], reason);
    free(clean);
    if (rc) {
        if (!r->err_line) {
            r->err_line = r->line;
            r->err_code = err_set(r->err, rc, "%s:%d: %s: %s", r->path, r->line, key, reason);
        }
        return 0;
    }
    if (r->seen[i]) {
        log_warn("%s:%d: %s set again; this value replaces the one at %s", r->path, r->line,
                 key, r->c->v[i].source);
        r->c->warnings++;
    }
    r->seen[i] = 1;
    char src[300];
    snprintf(src, sizeof src, "%s:%d", r->path, r->line);
    cfg_set_source(&r->c->v[i], src);
    return 1;
}

static int cfg_read_file(Cfg *c, const char *path, char *err)
{
    struct stat st;
    if (stat(path, &st))
        return err_set(err, errno == ENOENT ? VLQ_EINPUT : VLQ_EIO, "%s: %s", path,
                       strerror(errno));
    if (!S_ISREG(st.st_mode))
        return err_set(err, VLQ_EINPUT, "%s: not a regular file", path);
    CfgReader r = {.c = c, .path = path, .at_start = 1};
    r.f = fopen(path, "r");
    if (!r.f)
        return err_set(err, VLQ_EIO, "%s: %s", path, strerror(errno));
    c->file = xstrdup(path);
    int ret = ini_parse_stream(cfg_read_line, &r, cfg_handler, &r);
    int read_error = ferror(r.f);
    fclose(r.f);
    if (read_error)
        return err_set(err, VLQ_EIO, "%s: read error", path);
    if (ret < 0)
        return err_set(err, VLQ_EIO, "%s: cannot read", path);
    if (r.long_line && (!r.err_line || r.long_line < r.err_line))
        return err_set(err, VLQ_EINPUT, "%s:%d: line longer than %d bytes", path, r.long_line,
                       r.max_line - 2);
    /* ret is the first failing line, a handler error or a malformed line. */
    if (ret > 0 && (!r.err_line || ret < r.err_line))
        return err_set(err, VLQ_EINPUT, "%s:%d: malformed line (want key = value or [section])",
                       path, ret);
    if (r.err_line) {
        if (err)
            snprintf(err, VLQ_ERRLEN, "%s", r.err);
        return r.err_code;
    }
    return 0;
}

static int cfg_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

int cfg_load(const char *path, Cfg **out, char *err)
{
    *out = NULL;
    Cfg *c = xcalloc(1, sizeof *c);
    for (int i = 0; i < CFG_NKEYS; i++) {
        int rc = cfg_parse_value(i, cfg_keys[i].def, &c->v[i], err);
        VLQ_ASSERT(rc == 0); /* the table's defaults are within its bounds */
        cfg_set_source(&c->v[i], "default");
    }
    const char *env = getenv("VLQ_CONFIG");
    const char *file = path;
    const char *given_by = "--config";
    if (!file && env && *env) {
        file = env;
        given_by = "$VLQ_CONFIG";
    }
    if (file && !cfg_exists(file)) {
        err_set(err, VLQ_EINPUT, "%s: no such config file (given by %s)", file, given_by);
        cfg_free(c);
        return VLQ_EINPUT;
    }
    if (!file)
        file = cfg_exists("vlq.conf") ? "vlq.conf"
               : cfg_exists("/etc/vlq/vlq.conf") ? "/etc/vlq/vlq.conf"
                                                  : NULL;
    if (file) {
        int rc = cfg_read_file(c, file, err);
        if (rc) {
            cfg_free(c);
            return rc;
        }
    }
    *out = c;
    return 0;
}

void cfg_free(Cfg *c)
{
    if (!c)
        return;
    for (int i = 0; i < CFG_NKEYS; i++)
        free(c->v[i].text);
    free(c->file);
    free(c);
}

int cfg_set(Cfg *c, const char *key, const char *value, const char *source, char *err)
{
    int i = cfg_find(key);
    if (i < 0)
        return err_set(err, VLQ_EINPUT, "%s: no such key", key);
    int rc = cfg_parse_value(i, value, &c->v[i], err);
    if (rc) {
        err_prefix(err, "%s: %s", source, key);
        return rc;
    }
    cfg_set_source(&c->v[i], source);
    return 0;
}

const char *cfg_str(const Cfg *c, const char *key)
{
    return c->v[cfg_lookup(key, CFG_STRING)].text;
}

int64_t cfg_int(const Cfg *c, const char *key)
{
    int i = cfg_find(key);
    VLQ_ASSERT(i >= 0 && (cfg_keys[i].type == CFG_INT || cfg_keys[i].type == CFG_BOOL));
    return c->v[i].i;
}

double cfg_double(const Cfg *c, const char *key)
{
    return c->v[cfg_lookup(key, CFG_DOUBLE)].d;
}

const char *cfg_source(const Cfg *c, const char *key)
{
    int i = cfg_find(key);
    VLQ_ASSERT(i >= 0);
    return c->v[i].source;
}

const char *cfg_file(const Cfg *c)
{
    return c->file;
}

int cfg_warnings(const Cfg *c)
{
    return c->warnings;
}

const char *cfg_key_at(int i)
{
    return i >= 0 && i < CFG_NKEYS ? cfg_keys[i].name : NULL;
}

const char *cfg_default(const char *key)
{
    int i = cfg_find(key);
    VLQ_ASSERT(i >= 0);
    return cfg_keys[i].def;
}

int cfg_bounds(const char *key, double *min, double *max)
{
    int i = cfg_find(key);
    VLQ_ASSERT(i >= 0);
    *min = cfg_keys[i].min;
    *max = cfg_keys[i].max;
    return cfg_keys[i].max > cfg_keys[i].min;
}

const char *cfg_db_path(Cfg *c, const char *flag)
{
    const char *env = getenv("VLQ_DB");
    const char *value = flag ? flag : env && *env ? env : NULL;
    int i = cfg_find("queue.db");
    if (value) {
        free(c->v[i].text);
        c->v[i].text = xstrdup(value);
        cfg_set_source(&c->v[i], flag ? "flag --db" : "env VLQ_DB");
    }
    return c->v[i].text;
}

static void cfg_json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

void cfg_print(const Cfg *c, FILE *out, int json)
{
    if (json) {
        fprintf(out, "{\"file\": ");
        if (c->file)
            cfg_json_string(out, c->file);
        else
            fprintf(out, "null");
        fprintf(out, ", \"keys\": [");
        for (int i = 0; i < CFG_NKEYS; i++) {
            fprintf(out, "%s{\"key\": ", i ? ", " : "");
            cfg_json_string(out, cfg_keys[i].name);
            fprintf(out, ", \"value\": ");
            cfg_json_string(out, c->v[i].text);
            fprintf(out, ", \"source\": ");
            cfg_json_string(out, c->v[i].source);
            fprintf(out, "}");
        }
        fprintf(out, "]}\n");
        return;
    }
    fprintf(out, "# config file: %s\n", c->file ? c->file : "(none: built-in defaults)");
    for (int i = 0; i < CFG_NKEYS; i++)
        fprintf(out, "%-34s = %-24s ; %s\n", cfg_keys[i].name,
                cfg_keys[i].type == CFG_STRING || cfg_keys[i].type == CFG_LIST
                    ? (c->v[i].text[0] ? c->v[i].text : "\"\"")
                    : c->v[i].text,
                c->v[i].source);
}
