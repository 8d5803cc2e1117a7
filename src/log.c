/* log: leveled stderr logging (see log.h).
 * Globals owned here: the level and style, set once at start by log_setup; the job id
 * is thread-local. One fprintf per line so concurrent threads do not interleave. */
#include "log.h"

#include "redact.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int log_cur_level = LOG_INFO;
static int log_logfmt = -1; /* -1: not decided yet */
static _Thread_local int64_t log_job;

static const char *const log_names[] = {"error", "warn", "info", "debug"};

void log_setup(int level, int fmt)
{
    log_cur_level = level;
    log_logfmt = fmt == 0 ? !isatty(2) : fmt == 2;
}

int log_level(void) { return log_cur_level; }

void log_set_job(int64_t job_id) { log_job = job_id; }

static void log_vmsg(int level, const char *kv, const char *fmt, va_list ap)
{
    if (log_logfmt < 0)
        log_logfmt = !isatty(2);
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    redact_in_place(msg, sizeof msg); /* a URL or an error may carry a password or secret */
    char job[32] = "";
    if (!log_logfmt) {
        if (log_job)
            snprintf(job, sizeof job, "job %lld: ", (long long)log_job);
        char *safe = util_escape(msg); /* a file name in a message cannot drive the terminal */
        fprintf(stderr, "vlq: %s%s%s%s\n", job, level <= LOG_WARN ? log_names[level] : "",
                level <= LOG_WARN ? ": " : "", safe);
        free(safe);
        return;
    }
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (log_job)
        snprintf(job, sizeof job, " job=%lld", (long long)log_job);
    /* Escape quotes and backslashes so the msg stays one logfmt value. */
    char esc[2 * sizeof msg];
    size_t n = 0;
    for (const char *p = msg; *p && n + 5 < sizeof esc; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch != '\n' && (ch < 0x20 || ch == 0x7f)) { /* other control characters */
            n += (size_t)snprintf(esc + n, sizeof esc - n, "\\x%02x", ch);
            continue;
        }
        if (*p == '"' || *p == '\\')
            esc[n++] = '\\';
        esc[n++] = *p == '\n' ? ' ' : *p;
    }
    esc[n] = '\0';
    fprintf(stderr, "ts=%s level=%s%s msg=\"%s\"%s%s\n", ts, log_names[level], job, esc,
            kv && kv[0] ? " " : "", kv ? kv : "");
}

void log_msg(int level, const char *fmt, ...)
{
    if (level > log_cur_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, NULL, fmt, ap);
    va_end(ap);
}

void log_msg_kv(int level, const char *kv, const char *fmt, ...)
{
    if (level > log_cur_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, kv, fmt, ap);
    va_end(ap);
}

