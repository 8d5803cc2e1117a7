/* result: renderings of the ocr and summarize results (see result.h). */
#include "result.h"

#include "err.h"

#include <jansson.h>
#include <stdio.h>
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
        if (md)
            buf_printf(out, "\n### %s - %s (%d frames)\n\n%s\n", a, b, frames,
                       json_str(s, "summary"));
        else
            buf_printf(out, "[%s - %s]\n%s\n\n", a, b, json_str(s, "summary"));
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
