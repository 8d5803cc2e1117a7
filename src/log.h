/* log: leveled logging to stderr, the only writer of stderr besides cli_* and main.
 *
 * On a terminal: short human lines. Otherwise (cron, pipes): one logfmt line per event,
 * `ts=2026-11-25T03:00:00Z level=info job=42 msg="page 3/12"`. The job id comes from a
 * per-thread context the worker sets (log_set_job), so modules never pass it around.
 * The level is checked before formatting. */
#ifndef VLQ_LOG_H
#define VLQ_LOG_H

#include <stdint.h>

enum { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* Set the global level (messages above it are dropped) and the output style
 * (fmt: 0 auto by isatty(stderr), 1 human, 2 logfmt). Call once at start. */
void log_setup(int level, int fmt);
int log_level(void);

/* Set the calling thread's job id for log lines (0 clears it). */
void log_set_job(int64_t job_id);

void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* log_msg with logfmt fields: kv ("unit=3 total=12 tok_s=41.2", already logfmt-safe) is
 * written after msg=... in logfmt and left out of the human line. */
void log_msg_kv(int level, const char *kv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* 1 when lines are logfmt (not a terminal, or forced), 0 for human lines. */
int log_is_logfmt(void);
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
