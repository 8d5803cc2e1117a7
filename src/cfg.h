/* cfg: the effective configuration: built-in defaults, then vlq.conf (INI, read with
 * inih), then environment variables and command-line flags; every value remembers where
 * it came from, for `vlq config`.
 *
 * Keys are named "section.key" ("worker.lease_seconds"). The table of keys (name, type,
 * default, bounds, one-line doc) lives in cfg.c; config/vlq.conf documents every key in
 * place. A malformed line or a bad value is VLQ_EINPUT naming file, line and key; an
 * unknown key or section is a warning (logged), never an error. Asking for a key that is
 * not in the table is a bug (VLQ_ASSERT). The Cfg is immutable after loading and the
 * flags, so it may be read from several threads. */
#ifndef VLQ_CFG_H
#define VLQ_CFG_H

#include "num.h"

#include <stdint.h>
#include <stdio.h>

typedef struct Cfg Cfg;

/* Load the configuration. path: the --config flag, or NULL to search $VLQ_CONFIG,
 * ./vlq.conf, /etc/vlq/vlq.conf in that order (none found: built-in defaults). A path
 * given by flag or $VLQ_CONFIG must exist. Returns 0 and *out (free with cfg_free), or
 * VLQ_EINPUT/VLQ_EIO with "file:line: key: reason" in err. */
int cfg_load(const char *path, Cfg **out, char *err);
void cfg_free(Cfg *c);

/* Override a key from a command-line flag or the environment; source says which, e.g.
 * "flag --lease-seconds" or "env VLQ_DB". Returns 0 or VLQ_EINPUT ("key: reason"). */
int cfg_set(Cfg *c, const char *key, const char *value, const char *source, char *err);

/* Typed reads of a key of the table (asserts the key exists and has that type). */
const char *cfg_str(const Cfg *c, const char *key); /* "" when unset */
int64_t cfg_int(const Cfg *c, const char *key);
double cfg_double(const Cfg *c, const char *key);
/* Where the value of key came from: "default", "/etc/vlq/vlq.conf:12", "env VLQ_DB", ... */
const char *cfg_source(const Cfg *c, const char *key);
/* The config file that was read, or NULL when built-in defaults only. */
const char *cfg_file(const Cfg *c);

/* The queue database path: flag (--db) if not NULL, else $VLQ_DB, else [queue] db. The
 * returned string is owned by c. */
const char *cfg_db_path(Cfg *c, const char *flag);

/* What the numeric key accepts (the one source of truth for the flags that set it, so a
 * flag and the config refuse the same values with the same words; config/vlq.conf states
 * it after each key's doc); NULL for a string key. A key not in the table is a bug
 * (VLQ_ASSERT). */
const NumRange *cfg_key_range(const char *key);

/* Print every key with its value and source (`vlq config`): aligned text, or JSON
 * {"file": ..., "keys": [{"key", "type", "value", "source", "doc", "range"}...]}; an
 * unset (empty) string value is JSON null, and so is the range of a string key. Secrets are redacted (redact.h): webhooks.secret shows "whsec_***", a
 * password in a URL "user:***@". */
void cfg_print(const Cfg *c, FILE *out, int json);

/* The table of keys, for documentation checks: count, then name/default/doc of key i
 * (NULL when i is out of range). */
int cfg_key_count(void);
const char *cfg_key_name(int i);
const char *cfg_key_default(int i);
const char *cfg_key_doc(int i);

#endif
