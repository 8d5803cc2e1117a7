/* cfg: the effective configuration (see cfg.h).
 *
 * One table, cfg_keys[], lists every key with its type, default, bounds and a one-line
 * doc; config/vlq.conf documents the same keys in place and a test keeps the two equal.
 * The file is read with inih through ini_parse_stream and a reader that counts lines, so
 * every message names file:line (Debian's inih is built without INI_HANDLER_LINENO).
 * Values are kept as text and parsed once into their typed field when set. */
#include "cfg.h"

#include "err.h"
#include "log.h"
#include "num.h"
#include "redact.h"
#include "util.h"
#include "whsec.h"

#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

typedef enum { CFG_INT, CFG_DOUBLE, CFG_STR, CFG_BOOL } CfgType;

typedef struct {
    const char *key;  /* "section.key" */
    CfgType type;
    const char *def;  /* default, as text */
    NumRange range;   /* what a number accepts (num.h); the flags that set the key use it */
    const char *doc;  /* one line */
    int secret;       /* never printed: `vlq config` shows it redacted */
} CfgKey;

#define CFG_TEXT {0} /* the range of a string key: unused */

static const CfgKey cfg_keys[] = {
    {"queue.db", CFG_STR, "./vlq.db", CFG_TEXT, "the queue: an SQLite file, or a postgresql:// URL"},
    {"queue.busy_timeout_ms", CFG_INT, "5000", NUM_INT(1, 600000), "how long a statement waits for a lock"},
    {"queue.file_mode", CFG_STR, "0600", CFG_TEXT, "mode of a new queue database and its -wal/-shm files (octal; 0660 for a group)"},
    {"model.path", CFG_STR, "", CFG_TEXT, "the converted model file (.vlq)"},
    {"model.backend", CFG_STR, "auto", CFG_TEXT,
     "auto (cuda when a device is usable, else cpu), cpu, ref (the scalar oracle, slow), "
     "cuda, or a vlq-backend-NAME.so plugin"},
    {"model.threads", CFG_INT, "0", NUM_INT(0, 4096), "CPU threads, 0 = all cores"},
    {"budgets.ocr", CFG_INT, "8192", NUM_INT(256, 1048576), "context tokens of one image or page"},
    {"budgets.video", CFG_INT, "16384", NUM_INT(256, 1048576), "context tokens of one video segment"},
    {"budgets.document", CFG_INT, "32768", NUM_INT(256, 1048576), "context tokens of a long document"},
    {"budgets.max_new_tokens", CFG_INT, "2048", NUM_INT(1, 1048576), "answer tokens of an OCR unit"},
    {"budgets.summarize_max_new_tokens", CFG_INT, "1024", NUM_INT(1, 1048576),
     "answer tokens of a summary segment"},
    {"engine.ocr_slots", CFG_INT, "1", NUM_INT(0, 4096), "requests of the ocr budget running at once"},
    {"engine.video_slots", CFG_INT, "1", NUM_INT(0, 4096), "requests of the video budget running at once"},
    {"engine.document_slots", CFG_INT, "0", NUM_INT(0, 4096),
     "requests of the document budget running at once"},
    {"engine.max_batch_tok", CFG_INT, "512", NUM_INT(1, 65536), "tokens per decoder step, all requests"},
    {"engine.kv_type", CFG_STR, "f16", CFG_TEXT, "KV cache type: f16 or f32"},
    {"engine.mem_limit_mb", CFG_INT, "0", NUM_INT(0, 1e9), "memory the plan may use, 0 = MemAvailable"},
    {"engine.vcache_mb", CFG_INT, "256", NUM_INT(0, 1e7), "visual feature cache in memory, 0 = off"},
    {"engine.vcache_dir", CFG_STR, "", CFG_TEXT, "visual feature cache on disk; empty = none"},
    {"offload.layers", CFG_STR, "auto", CFG_TEXT,
     "device backends: decoder layers kept in pinned host memory, read over the bus; auto = "
     "as many as the device needs"},
    {"sampling.temperature", CFG_DOUBLE, "0", NUM_REAL_F32(0, 100), "0 = greedy"},
    {"sampling.top_p", CFG_DOUBLE, "0.8", NUM_REAL_F32_GT(0, 1), "nucleus sampling mass"},
    {"sampling.top_k", CFG_INT, "20", NUM_INT(0, 1000000), "0 = no top-k"},
    {"sampling.repetition_penalty", CFG_DOUBLE, "1.0", NUM_REAL_F32_GT(0, 100), "1 = none"},
    {"sampling.seed", CFG_INT, "0", NUM_INT(0, 9.2e18), "random seed of sampling"},
    {"worker.lease_seconds", CFG_INT, "300", NUM_INT(1, 86400), "lease of a claimed job, renewed on progress"},
    {"worker.max_attempts", CFG_INT, "3", NUM_INT(1, 1000), "runs of a job before it is dead"},
    {"worker.poll_ms", CFG_INT, "1000", NUM_INT(10, 3600000), "idle wait between looks at the queue"},
    {"worker.concurrency", CFG_INT, "1", NUM_INT(1, 256), "jobs in flight at once (their requests share the engine's batches)"},
    {"summarize.temperature", CFG_DOUBLE, "0.7", NUM_REAL_F32(0, 100), "sampling of summaries; 0 = greedy"},
    {"summarize.top_p", CFG_DOUBLE, "0.9", NUM_REAL_F32_GT(0, 1), "nucleus sampling mass of summaries"},
    {"summarize.top_k", CFG_INT, "0", NUM_INT(0, 1000000), "top-k of summaries; 0 = off"},
    {"summarize.repetition_penalty", CFG_DOUBLE, "1.1", NUM_REAL_F32_GT(0, 100), "repetition penalty of summaries; 1 = none"},
    {"output.dir", CFG_STR, "", CFG_TEXT, "also write each finished job's result here; empty = no"},
    {"output.format", CFG_STR, "md", CFG_TEXT, "txt, md or json: the rendering written there"},
    {"webhooks.secret", CFG_STR, "", CFG_TEXT, "whsec_<base64> signing secret", 1},
    {"webhooks.timeout_ms", CFG_INT, "15000", NUM_INT(100, 600000), "total time of one delivery"},
    {"webhooks.connect_timeout_ms", CFG_INT, "5000", NUM_INT(100, 600000), "connect time of one delivery"},
    {"webhooks.max_attempts", CFG_INT, "10", NUM_INT(1, 100), "deliveries of an event before it fails"},
    {"webhooks.schedule", CFG_STR, "0,5,300,1800,7200,18000,36000,50400,72000,86400", CFG_TEXT,
     "retry delays in seconds"},
    {"webhooks.allow_hosts", CFG_STR, "", CFG_TEXT, "comma-separated hosts; empty = any"},
    {"webhooks.max_parallel", CFG_INT, "4", NUM_INT(1, 64), "endpoints delivered to at once (each endpoint's events one at a time, in order)"},
    {"media.fps", CFG_DOUBLE, "2", NUM_REAL(0.01, 120), "video frames sampled per second"},
    {"media.min_frames", CFG_INT, "4", NUM_INT(2, 100000), "fewest frames sampled from a video"},
    {"media.max_frames", CFG_INT, "768", NUM_INT(2, 100000), "most frames sampled from a video"},
    {"media.max_image_pixels", CFG_INT, "178956970", NUM_INT(1, 4e9), "larger images are refused"},
    {"media.pdf_dpi", CFG_INT, "144", NUM_INT(18, 1200), "PDF rendering resolution"},
    {"media.threads", CFG_INT, "0", NUM_INT(0, 256), "decoding threads, 0 = FFmpeg's choice"},
    {"plan.min_group_tokens", CFG_INT, "64", NUM_INT(4, 1048576), "smallest frame pair before splitting"},
    {"inputs.allowed_hosts", CFG_STR, "", CFG_TEXT, "hosts http(s) inputs may come from, comma-separated; empty = no URL inputs"},
    {"inputs.max_download_mb", CFG_INT, "1024", NUM_INT(1, 1048576), "a larger downloaded input fails its job"},
    {"inputs.connect_timeout_ms", CFG_INT, "10000", NUM_INT(100, 600000), "connect time of one download"},
    {"inputs.timeout_ms", CFG_INT, "600000", NUM_INT(100, 86400000), "total time of one download"},
    {"inputs.download_dir", CFG_STR, "", CFG_TEXT, "where the per-job download directories go; empty = $TMPDIR or /tmp"},
};
#define CFG_NKEYS ((int)(sizeof cfg_keys / sizeof cfg_keys[0]))

typedef struct {
    char *text;    /* the value as given */
    char *source;  /* "default", "file:line", "env X", "flag --x" */
    int64_t i;     /* CFG_INT, CFG_BOOL */
    double d;      /* CFG_DOUBLE */
} CfgVal;

struct Cfg {
    char *file;               /* the file read, or NULL */
    CfgVal vals[CFG_NKEYS];
    char *db_path;            /* resolved by cfg_db_path */
};

static int cfg_find(const char *key)
{
    for (int i = 0; i < CFG_NKEYS; i++)
        if (!strcmp(cfg_keys[i].key, key))
            return i;
    return -1;
}

/* Parse text as key k's type into v (text and source untouched). */
static int cfg_parse_value(int k, const char *text, CfgVal *v, char *err)
{
    const CfgKey *ck = &cfg_keys[k];
    double d = 0;
    int64_t i;
    int rc;
    switch (ck->type) {
    case CFG_STR:
        if (!strcmp(ck->key, "webhooks.secret") && text[0])
            return whsec_check(text, err);
        if (!strcmp(ck->key, "offload.layers") && strcmp(text, "auto") &&
            (util_parse_i64(text, &i) || i < 0 || i > 4096))
            return err_set(err, VLQ_EINPUT, "'%s' is not auto or a layer count (0..4096)", text);
        if (!strcmp(ck->key, "output.format") && strcmp(text, "txt") && strcmp(text, "md") &&
            strcmp(text, "json"))
            return err_set(err, VLQ_EINPUT, "'%s' is not txt, md or json", text);
        if (!strcmp(ck->key, "engine.kv_type") && strcmp(text, "f16") && strcmp(text, "f32"))
            return err_set(err, VLQ_EINPUT, "'%s' is not f16 or f32", text);
        return 0;
    case CFG_BOOL:
        if (!strcasecmp(text, "true") || !strcasecmp(text, "yes") || !strcmp(text, "1"))
            v->i = 1;
        else if (!strcasecmp(text, "false") || !strcasecmp(text, "no") || !strcmp(text, "0"))
            v->i = 0;
        else
            return err_set(err, VLQ_EINPUT, "'%s' is not true or false", text);
        return 0;
    case CFG_INT:
        if ((rc = num_parse_i64(text, &ck->range, &i, err)))
            return rc;
        v->i = i;
        return 0;
    case CFG_DOUBLE:
        if ((rc = num_parse_double(text, &ck->range, &d, err)))
            return rc;
        v->d = d;
        return 0;
    }
    return 0;
}

/* Set key k to text from source; on error the old value stays. */
static int cfg_assign(Cfg *c, int k, const char *text, const char *source, char *err)
{
    CfgVal v = c->vals[k];
    int rc = cfg_parse_value(k, text, &v, err);
    if (rc)
        return rc;
    free(c->vals[k].text);
    free(c->vals[k].source);
    v.text = xstrdup(text);
    v.source = xstrdup(source);
    c->vals[k] = v;
    return 0;
}

/* ---- reading the file ---- */

typedef struct {
    Cfg *cfg;
    FILE *f;
    const char *path;
    int line;         /* lines read so far: the line of the current handler call */
    int rc;           /* first error */
    char *err;
    char seen[CFG_NKEYS];
} CfgReader;

static char *cfg_read_line(char *str, int num, void *stream)
{
    CfgReader *r = stream;
    char *s = fgets(str, num, r->f);
    if (s)
        r->line++;
    /* inih would take the rest of a long line for another line: stop with an error. */
    if (s && !r->rc && !strchr(s, '\n') && (int)strlen(s) == num - 1 && !feof(r->f)) {
        r->rc = err_set(r->err, VLQ_EINPUT, "%s:%d: line longer than %d bytes", r->path,
                        r->line, num - 2);
        return NULL;
    }
    return s;
}

/* The value without a " #" comment (inih strips " ;" ones), trimmed, and unquoted when
 * in double or single quotes. Returns a new string. */
static char *cfg_clean_value(const char *value)
{
    char *s = xstrdup(value);
    for (char *p = s; *p; p++) /* from s: an empty value has no s[1] */
        if (*p == '#' && p > s && (p[-1] == ' ' || p[-1] == '\t')) {
            *p = '\0';
            break;
        }
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    if (n >= 2 && (s[0] == '"' || s[0] == '\'') && s[n - 1] == s[0]) {
        memmove(s, s + 1, n - 2);
        s[n - 2] = '\0';
    }
    return s;
}

static int cfg_handler(void *user, const char *section, const char *name, const char *value)
{
    CfgReader *r = user;
    if (r->rc)
        return 0;
    char key[256], where[4200];
    snprintf(key, sizeof key, "%s.%s", section, name);
    snprintf(where, sizeof where, "%s:%d", r->path, r->line);
    int k = cfg_find(key);
    if (k < 0) {
        log_warn("%s: unknown key %s (ignored)", where, key);
        return 1;
    }
    if (r->seen[k])
        log_warn("%s: %s set again; the later value wins", where, key);
    r->seen[k] = 1;
    char why[VLQ_ERRLEN];
    char *clean = cfg_clean_value(value);
    int rc = cfg_assign(r->cfg, k, clean, where, why);
    free(clean);
    if (rc) {
        r->rc = err_set(r->err, VLQ_EINPUT, "%s: %s: %s", where, key, why);
        return 0;
    }
    return 1;
}

static int cfg_read_file(Cfg *c, const char *path, char *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return err_set(err, VLQ_EINPUT, "%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return err_set(err, VLQ_EINPUT, "%s: not a regular file", path);
    CfgReader r = {.cfg = c, .path = path, .err = err};
    if (util_fopen_regular(path, &r.f, NULL, err)) /* never blocks on a FIFO */
        return VLQ_EINPUT;
    int line = ini_parse_stream(cfg_read_line, &r, cfg_handler, &r);
    fclose(r.f);
    if (r.rc)
        return r.rc;
    if (line > 0)
        return err_set(err, VLQ_EINPUT, "%s:%d: malformed line (expected [section] or key = value)",
                       path, line);
    if (line < 0)
        return err_set(err, VLQ_EIO, "%s: cannot read", path);
    c->file = xstrdup(path);
    return 0;
}

/* ---- the interface ---- */

int cfg_load(const char *path, Cfg **out, char *err)
{
    *out = NULL;
    Cfg *c = xcalloc(1, sizeof *c);
    for (int k = 0; k < CFG_NKEYS; k++)
        VLQ_ASSERT(cfg_assign(c, k, cfg_keys[k].def, "default", NULL) == 0);
    const char *env = getenv("VLQ_CONFIG");
    const char *file = path ? path : env && *env ? env : NULL;
    if (!file) {
        static const char *const search[] = {"./vlq.conf", "/etc/vlq/vlq.conf"};
        for (size_t i = 0; i < sizeof search / sizeof search[0] && !file; i++)
            if (access(search[i], F_OK) == 0)
                file = search[i];
    }
    int rc = file ? cfg_read_file(c, file, err) : 0;
    if (rc) {
        cfg_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void cfg_free(Cfg *c)
{
    if (!c)
        return;
    for (int k = 0; k < CFG_NKEYS; k++) {
        free(c->vals[k].text);
        free(c->vals[k].source);
    }
    free(c->file);
    free(c->db_path);
    free(c);
}

int cfg_set(Cfg *c, const char *key, const char *value, const char *source, char *err)
{
    int k = cfg_find(key);
    if (k < 0)
        return err_set(err, VLQ_EINPUT, "%s: unknown configuration key", key);
    char why[VLQ_ERRLEN];
    if (cfg_assign(c, k, value, source, why))
        return err_set(err, VLQ_EINPUT, "%s: %s: %s", source, key, why);
    return 0;
}

static const CfgVal *cfg_val(const Cfg *c, const char *key, CfgType type)
{
    int k = cfg_find(key);
    VLQ_ASSERT(k >= 0 && cfg_keys[k].type == type);
    return &c->vals[k];
}

const char *cfg_str(const Cfg *c, const char *key) { return cfg_val(c, key, CFG_STR)->text; }

int64_t cfg_int(const Cfg *c, const char *key)
{
    int k = cfg_find(key);
    VLQ_ASSERT(k >= 0 && (cfg_keys[k].type == CFG_INT || cfg_keys[k].type == CFG_BOOL));
    return c->vals[k].i;
}

double cfg_double(const Cfg *c, const char *key) { return cfg_val(c, key, CFG_DOUBLE)->d; }

const char *cfg_source(const Cfg *c, const char *key)
{
    int k = cfg_find(key);
    VLQ_ASSERT(k >= 0);
    return c->vals[k].source;
}

const char *cfg_file(const Cfg *c) { return c->file; }

const char *cfg_db_path(Cfg *c, const char *flag)
{
    const char *env = getenv("VLQ_DB");
    const char *p = flag ? flag : env && *env ? env : cfg_str(c, "queue.db");
    free(c->db_path);
    c->db_path = xstrdup(p);
    return c->db_path;
}

static const char *cfg_type_name(CfgType t)
{
    return t == CFG_INT ? "int" : t == CFG_DOUBLE ? "number" : t == CFG_BOOL ? "bool" : "string";
}

/* The value of key k as printed: secrets masked, then (text) control characters escaped. */
static char *cfg_shown(const Cfg *c, int k, int json)
{
    const char *v = c->vals[k].text;
    char *r = cfg_keys[k].secret ? xstrdup(redact_secret(v)) : redact_text(v);
    if (json)
        return r;
    char *e = util_escape(r);
    free(r);
    return e;
}

void cfg_print(const Cfg *c, FILE *out, int json)
{
    Buf b = {0};
    if (!json) {
        char *file = c->file ? util_escape(c->file) : xstrdup("(none: built-in defaults)");
        buf_printf(&b, "# config file: %s\n", file);
        free(file);
        for (int k = 0; k < CFG_NKEYS; k++) {
            char *v = cfg_shown(c, k, 0), *src = redact_text(c->vals[k].source);
            buf_printf(&b, "%-34s = %-24s ; ", cfg_keys[k].key, v);
            util_buf_escaped(&b, src);
            buf_puts(&b, "\n");
            free(v);
            free(src);
        }
        fputs(b.data, out);
        buf_clear(&b);
        return;
    }
    buf_puts(&b, "{\"file\": ");
    util_json_str(&b, c->file);
    buf_puts(&b, ", \"keys\": [");
    for (int k = 0; k < CFG_NKEYS; k++) {
        buf_puts(&b, k ? ", {\"key\": " : "{\"key\": ");
        util_json_str(&b, cfg_keys[k].key);
        buf_printf(&b, ", \"type\": \"%s\", \"value\": ", cfg_type_name(cfg_keys[k].type));
        char *v = cfg_shown(c, k, 1), *src = redact_text(c->vals[k].source);
        util_json_str(&b, v[0] ? v : NULL); /* unset is null, as in every command's JSON */
        buf_puts(&b, ", \"source\": ");
        util_json_str(&b, src);
        free(v);
        free(src);
        buf_puts(&b, ", \"doc\": ");
        util_json_str(&b, cfg_keys[k].doc);
        char range[80];
        int num = cfg_keys[k].type == CFG_INT || cfg_keys[k].type == CFG_DOUBLE;
        buf_puts(&b, ", \"range\": ");
        util_json_str(&b, num ? num_range_text(&cfg_keys[k].range, range, sizeof range) : NULL);
        buf_puts(&b, "}");
    }
    buf_puts(&b, "]}\n");
    fputs(b.data, out);
    buf_clear(&b);
}

const NumRange *cfg_key_range(const char *key)
{
    int k = cfg_find(key);
    VLQ_ASSERT(k >= 0);
    return cfg_keys[k].type == CFG_INT || cfg_keys[k].type == CFG_DOUBLE ? &cfg_keys[k].range
                                                                         : NULL;
}

int cfg_key_count(void) { return CFG_NKEYS; }
const char *cfg_key_name(int i) { return i >= 0 && i < CFG_NKEYS ? cfg_keys[i].key : NULL; }
const char *cfg_key_default(int i) { return i >= 0 && i < CFG_NKEYS ? cfg_keys[i].def : NULL; }
const char *cfg_key_doc(int i) { return i >= 0 && i < CFG_NKEYS ? cfg_keys[i].doc : NULL; }
