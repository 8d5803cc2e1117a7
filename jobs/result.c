/* result: renderings of the ocr and summarize results (see result.h). */
#include "result.h"

#include "err.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *result_extension(const char *format)
{
    if (!strcmp(format, "md") || !strcmp(format, "markdown"))
        return "md";
    if (!strcmp(format, "txt") || !strcmp(format, "text"))
        return "txt";
    return format;
}

void result_hms(char *buf, size_t n, double s)
{
    long t = s > 0 ? (long)s : 0;
    snprintf(buf, n, "%02ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
}

static const char *json_str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static double json_num(const json_t *o, const char *key)
{
    return json_number_value(json_object_get(o, key));
}

static void render_ocr(const json_t *doc, int md, Buf *out)
{
    const json_t *pages = json_object_get(doc, "pages");
    size_t i;
    const json_t *p;
    json_array_foreach(pages, i, p) {
        int page = (int)json_integer_value(json_object_get(p, "page"));
        const json_t *e = json_object_get(p, "error");
        if (md)
            buf_printf(out, "%s<!-- page %d -->\n\n", i ? "\n---\n\n" : "", page);
        else
            buf_printf(out, "%s--- page %d ---\n", i ? "\n" : "", page);
        if (json_is_object(e))
            buf_printf(out, "%s[page %d failed: %s: %s]\n", md ? "> " : "", page,
                       json_str(e, "code"), json_str(e, "message"));
        else {
            const char *t = json_str(p, "text");
            buf_puts(out, t);
            if (!t[0] || t[strlen(t) - 1] != '\n')
                buf_puts(out, "\n");
        }
    }
}

static void render_summary(const json_t *doc, int md, Buf *out)
{
    char a[32], b[32], d[32];
    result_hms(d, sizeof d, json_num(doc, "duration_s"));
    const char *input = json_str(doc, "input");
    const char *base = strrchr(input, '/');
    base = base ? base + 1 : input;
    if (md)
        buf_printf(out, "# Summary of %s\n\nDuration %s, %zu segment(s).\n\n%s\n\n## Segments\n",
                   base, d, json_array_size(json_object_get(doc, "segments")),
                   json_str(doc, "summary"));
    else
        buf_printf(out, "%s (%s)\n\n%s\n\n", base, d, json_str(doc, "summary"));
    size_t i;
    const json_t *s;
    json_array_foreach(json_object_get(doc, "segments"), i, s) {
        result_hms(a, sizeof a, json_num(s, "start_s"));
        result_hms(b, sizeof b, json_num(s, "end_s"));
        int frames = (int)json_integer_value(json_object_get(s, "frames"));
        const json_t *e = json_object_get(s, "error");
        char failed[VLQ_ERRLEN + 64] = "";
        if (json_is_object(e))
            snprintf(failed, sizeof failed, "[segment failed: %s: %s]", json_str(e, "code"),
                     json_str(e, "message"));
        const char *text = failed[0] ? failed : json_str(s, "summary");
        if (md)
            buf_printf(out, "\n### %s - %s (%d frames)\n\n%s\n", a, b, frames, text);
        else
            buf_printf(out, "[%s - %s]\n%s\n\n", a, b, text);
    }
}

int result_render(const char *kind, const char *stored_format, const char *data, size_t len,
                  const char *want, Buf *out, char *err)
{
    int ocr = !strcmp(kind, "ocr"), sum = !strcmp(kind, "summarize");
    if (!ocr && !sum)
        return VLQ_ENOTSUP;
    const char *ext = result_extension(want);
    if (strcmp(ext, "txt") && strcmp(ext, "md") && strcmp(ext, "json"))
        return err_set(err, VLQ_EINPUT, "format '%s': one of txt, md, json", want);
    if (strcmp(stored_format, "json"))
        return err_set(err, VLQ_EINPUT, "%s result stored as %s, not json", kind,
                       stored_format);
    if (!strcmp(ext, "json")) {
        buf_append(out, data, len);
        if (!len || data[len - 1] != '\n')
            buf_puts(out, "\n");
        return 0;
    }
    json_error_t je;
    json_t *doc = json_loadb(data, len, 0, &je);
    if (!doc || !json_is_array(json_object_get(doc, ocr ? "pages" : "segments"))) {
        json_decref(doc);
        return err_set(err, VLQ_EINPUT, "the stored %s result is not a %s document", kind, kind);
    }
    int md = !strcmp(ext, "md");
    if (ocr)
        render_ocr(doc, md, out);
    else
        render_summary(doc, md, out);
    json_decref(doc);
    return 0;
}

/* The unit's meta object (a new reference; an empty object when missing or bad). */
static json_t *result_meta(const JobUnit *u)
{
    json_t *m = u->meta_json ? json_loads(u->meta_json, 0, NULL) : NULL;
    if (!json_is_object(m)) {
        json_decref(m);
        m = json_object();
    }
    return m;
}

/* A stored text as JSON: null when NULL; a text that is not UTF-8 (a file name may be
 * any bytes) with those bytes as \xHH (util_escape), so json_pack never fails on it and
 * result_dump's assertion is not reachable from an input's name or a model's output. */
static json_t *result_jstr(const char *s)
{
    if (!s)
        return json_null();
    json_t *v = json_string(s);
    if (!v) {
        char *e = util_escape(s);
        v = json_string(e);
        free(e);
    }
    return v ? v : json_null();
}

static char *result_dump(json_t *doc)
{
    char *s = json_dumps(doc, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    json_decref(doc);
    VLQ_ASSERT(s);
    return s;
}

char *result_ocr_doc(const char *input, int prompt_version, const JobUnit *units, int n,
                     int *n_failed)
{
    json_t *pages = json_array();
    int failed = 0;
    for (int i = 0; i < n; i++) {
        const JobUnit *u = &units[i];
        json_t *m = result_meta(u);
        json_t *p = json_object();
        json_t *page = json_object_get(m, "page");
        json_object_set_new(p, "page", page ? json_incref(page) : json_integer(u->idx + 1));
        json_object_set_new(p, "text", u->error_code ? json_null()
                                                     : result_jstr(u->result ? u->result : ""));
        json_object_set_new(p, "tok_in", json_integer(u->tok_in));
        json_object_set_new(p, "tok_out", json_integer(u->tok_out));
        json_object_set_new(p, "seconds", json_real(u->seconds));
        if (u->error_code) {
            failed++;
            json_object_set_new(p, "error", json_pack("{s:o, s:o}", "code",
                                                      result_jstr(u->error_code), "message",
                                                      result_jstr(u->error)));
        } else {
            json_object_set_new(p, "error", json_null());
        }
        json_array_append_new(pages, p);
        json_decref(m);
    }
    *n_failed = failed;
    json_t *doc = json_pack("{s:s, s:o, s:o, s:o, s:i}", "kind", "ocr", "input", result_jstr(input),
                            "prompt_version",
                            prompt_version ? json_integer(prompt_version) : json_null(),
                            "pages", pages, "pages_failed", failed);
    return result_dump(doc);
}

char *result_summary_doc(const char *input, int prompt_version, double duration_s,
                         double fps, const JobUnit *units, int n, const char *summary)
{
    json_t *segs = json_array();
    for (int i = 0; i < n; i++) {
        const JobUnit *u = &units[i];
        json_t *m = result_meta(u);
        json_array_append_new(
            segs, json_pack("{s:f, s:f, s:I, s:o, s:I, s:I, s:f, s:o}", "start_s",
                            json_number_value(json_object_get(m, "start_s")), "end_s",
                            json_number_value(json_object_get(m, "end_s")), "frames",
                            (json_int_t)json_integer_value(json_object_get(m, "frames")),
                            "summary",
                            u->error_code ? json_null() : result_jstr(u->result ? u->result : ""),
                            "tok_in",
                            (json_int_t)u->tok_in, "tok_out", (json_int_t)u->tok_out,
                            "seconds", u->seconds, "error",
                            u->error_code ? json_pack("{s:o, s:o}", "code",
                                                      result_jstr(u->error_code), "message",
                                                      result_jstr(u->error))
                                          : json_null()));
        json_decref(m);
    }
    json_t *doc = json_pack("{s:s, s:o, s:o, s:f, s:f, s:o, s:o}", "kind", "summarize", "input",
                            result_jstr(input), "prompt_version",
                            prompt_version ? json_integer(prompt_version) : json_null(),
                            "duration_s", duration_s, "fps", fps, "segments", segs, "summary",
                            result_jstr(summary));
    return result_dump(doc);
}

int result_reduce_groups(const int64_t *tok, int n, int64_t overhead_tok, int64_t limit_tok,
                         int *group, char *err)
{
    int g = 0;
    int64_t used = -1; /* -1: the current group is empty */
    int in_group = 0;
    for (int i = 0; i < n; i++) {
        if (used >= 0 && used + tok[i] <= limit_tok) {
            used += tok[i];
            in_group++;
        } else {
            if (used >= 0 && in_group < 2 && i > 0)
                return err_set(err, VLQ_EINPUT,
                               "summaries %d and %d (%lld + %lld tokens, %lld of prompt) do "
                               "not fit one reduce budget of %lld tokens",
                               i, i + 1, (long long)tok[i - 1], (long long)tok[i],
                               (long long)overhead_tok, (long long)limit_tok);
            if (overhead_tok + tok[i] > limit_tok)
                return err_set(err, VLQ_EINPUT,
                               "summary %d (%lld tokens, %lld of prompt) does not fit one "
                               "reduce budget of %lld tokens",
                               i + 1, (long long)tok[i], (long long)overhead_tok,
                               (long long)limit_tok);
            if (used >= 0)
                g++;
            used = overhead_tok + tok[i];
            in_group = 1;
        }
        group[i] = g;
    }
    return n ? g + 1 : 0;
}
