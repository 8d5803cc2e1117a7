/* redact: masking secrets in text (see redact.h).
 *
 * One left-to-right scan copies the text and masks three shapes: a URL's userinfo
 * (found from "://": the authority runs to the first '/', '?', '#', space or quote, and
 * its last '@' ends the userinfo), "whsec_" + base64, and "password" [spaces] "="
 * [spaces] value (a quoted value to its closing quote, else to a space, '&' or quote).
 * The scan errs toward masking: a false positive costs a few characters of display. */
#include "redact.h"

#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int redact_is_b64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/' || c == '=' || c == '-' || c == '_';
}

static int redact_ends_authority(char c)
{
    return !c || c == '/' || c == '?' || c == '#' || c == ' ' || c == '\t' || c == '\n' ||
           c == '"' || c == '\'' || c == '<' || c == '>' || c == '`';
}

/* At p (just after "://"): if the authority has a userinfo, append its masked form and
 * return the length of the userinfo + '@' consumed; else 0. */
static size_t redact_userinfo(Buf *b, const char *p)
{
    size_t end = 0, at = 0;
    int has_at = 0;
    while (!redact_ends_authority(p[end])) {
        if (p[end] == '@') {
            at = end;
            has_at = 1;
        }
        end++;
    }
    if (!has_at)
        return 0;
    const char *colon = memchr(p, ':', at);
    if (colon && colon > p)
        buf_append(b, p, (size_t)(colon - p) + 1); /* keep the user name */
    buf_puts(b, REDACT_MASK "@");
    return at + 1;
}

/* At p (just after "password"): if "[spaces]=[spaces]value" follows, append it masked
 * and return the bytes consumed; else 0. */
static size_t redact_password(Buf *b, const char *p)
{
    size_t i = 0;
    while (p[i] == ' ')
        i++;
    if (p[i] != '=')
        return 0;
    i++;
    while (p[i] == ' ')
        i++;
    size_t v = i;
    if (p[i] == '\'' || p[i] == '"') {
        char q = p[i++];
        while (p[i] && p[i] != q)
            i += p[i] == '\\' && p[i + 1] ? 2 : 1;
        if (p[i])
            i++;
    } else {
        while (p[i] && p[i] != ' ' && p[i] != '\t' && p[i] != '\n' && p[i] != '&' &&
               p[i] != '"' && p[i] != '\'')
            i++;
    }
    if (i == v)
        return 0; /* "password=" with nothing after it: nothing to hide */
    buf_append(b, p, v);
    buf_puts(b, REDACT_MASK);
    return i;
}

/* redact_text: see redact.h. */
char *redact_text(const char *text)
{
    if (!text)
        return NULL;
    Buf b = {0};
    const char *p = text;
    while (*p) {
        if (p[0] == ':' && p[1] == '/' && p[2] == '/' && p > text) {
            buf_puts(&b, "://");
            p += 3;
            p += redact_userinfo(&b, p);
            continue;
        }
        if (!strncmp(p, "whsec_", 6) && redact_is_b64(p[6])) {
            buf_puts(&b, "whsec_" REDACT_MASK);
            p += 6;
            while (redact_is_b64(*p))
                p++;
            continue;
        }
        if (!strncmp(p, "password", 8)) {
            buf_puts(&b, "password");
            p += 8;
            p += redact_password(&b, p);
            continue;
        }
        buf_append(&b, p, 1);
        p++;
    }
    return buf_take(&b);
}

/* redact_in_place: see redact.h. */
void redact_in_place(char *buf, size_t n)
{
    if (!buf || !n)
        return;
    char *r = redact_text(buf);
    snprintf(buf, n, "%s", r);
    free(r);
}

/* redact_secret: see redact.h. */
const char *redact_secret(const char *secret)
{
    if (!secret || !*secret)
        return "";
    return strncmp(secret, "whsec_", 6) ? REDACT_MASK : "whsec_" REDACT_MASK;
}
