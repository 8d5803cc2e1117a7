/* fetch: job inputs given as http(s) URLs, for workers on hosts that share no file system.
 *
 * A URL input is recorded at submit as it is (nothing is downloaded then). The worker
 * makes a private directory for the job (fetch_dir_new), downloads each URL into it
 * (fetch_url: libcurl, a size cap, connect and total timeouts, only allowed hosts, every
 * redirect target checked against the same list), runs the job on the local copies and
 * removes the directory afterwards, also when the job failed (fetch_dir_remove).
 * The SHA-256 of what was downloaded is returned so the caller can record it at the first
 * download and compare it on retries; this module never sees the queue.
 *
 * Errors: a refused URL or host, an HTTP 4xx, a body over the cap: VLQ_EINPUT (the job is
 * dead, a retry would get the same). A connection failure, a timeout, an HTTP 5xx, 408 or
 * 429: VLQ_ENET (transient, retried). A local write failure: VLQ_EIO. Messages name the
 * URL without userinfo, query or fragment, which may hold credentials. libcurl codes
 * never leave this module. */
#ifndef VLQ_FETCH_H
#define VLQ_FETCH_H

#include "err.h"

#include <stdint.h>

typedef struct Cfg Cfg;

typedef struct {
    const char *allowed_hosts;  /* comma-separated host names; "" refuses every URL */
    int64_t max_bytes;          /* a larger body fails the download (VLQ_EINPUT) */
    int64_t connect_timeout_ms; /* connecting to the server */
    int64_t timeout_ms;         /* the whole transfer, redirects included */
    const char *dir;            /* parent of the per-job directories; "" = $TMPDIR or /tmp */
} FetchOptions;

/* 1 when s starts with http:// or https:// (any case): a URL input, not a path. */
int fetch_is_url(const char *s);
/* The options from [inputs] (allowed_hosts, max_download_mb, connect_timeout_ms,
 * timeout_ms, download_dir); strings are borrowed from cfg. Cannot fail. */
void fetch_options_from_cfg(const Cfg *cfg, FetchOptions *o);
/* Check that url is http(s) with a host in o->allowed_hosts. 0 or VLQ_EINPUT with the
 * reason (for an empty list: the key to set). */
int fetch_check_url(const FetchOptions *o, const char *url, char *err);

/* Make a new private (0700) directory for job_id's downloads under o->dir; *dir is the
 * caller's to free (after fetch_dir_remove). 0, or VLQ_EIO with the reason. */
int fetch_dir_new(const FetchOptions *o, int64_t job_id, char **dir, char *err);
/* Remove dir and the files in it (fetch_url writes plain files only). NULL-safe; a
 * failure is logged, never returned: the job's outcome does not depend on it. */
void fetch_dir_remove(const char *dir);

/* What one download produced. */
typedef struct {
    char *path;          /* the local file (inside the job's directory); caller frees */
    int64_t size_bytes;  /* bytes downloaded */
    char sha256[65];     /* hex SHA-256 of them */
} FetchResult;

/* Download url into a new file in dir, named n-<last path segment> (n keeps the inputs
 * of one job apart, the name keeps the extension). 0 and *r, or an error as above (no
 * file is left behind on failure; r->path is NULL). */
int fetch_url(const FetchOptions *o, const char *url, const char *dir, int n, FetchResult *r,
              char *err);

#endif
