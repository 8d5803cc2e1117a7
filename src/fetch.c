/* fetch: download http(s) job inputs into a per-job directory (see fetch.h).
 *
 * Design decisions:
 * - Redirects are followed here, not by libcurl: each Location is parsed and checked
 *   against the allowed hosts before it is requested, so an allowed host cannot send the
 *   worker to one that is not. At most FETCH_MAX_REDIRECTS.
 * - The cap is enforced twice: CURLOPT_MAXFILESIZE_LARGE refuses a declared
 *   Content-Length over it before any byte, and the write callback stops a body that
 *   grows past it (chunked, or a server that lies).
 * - The file is opened O_EXCL|O_NOFOLLOW in the job's own 0700 directory (mkdtemp), so
 *   nothing else can be written through it; the SHA-256 is computed while writing.
 * - One easy handle per download: the worker's threads share nothing here.
 * No mutable globals besides the pthread_once flag and the init result below. */
#include "fetch.h"

#include "cfg.h"
#include "log.h"
#include "util.h"

#include <ctype.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define FETCH_MAX_REDIRECTS 5
#define FETCH_MAX_NAME 80 /* bytes of the URL's last segment kept in the file name */

static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;
static CURLcode fetch_init_rc = CURLE_OK; /* written once under fetch_once */

static void fetch_init_once(void)
{
    fetch_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); /* reference-counted by libcurl */
}

int fetch_is_url(const char *s)
{
    return s && (!strncasecmp(s, "http://", 7) || !strncasecmp(s, "https://", 8));
}

void fetch_options_from_cfg(const Cfg *cfg, FetchOptions *o)
{
    memset(o, 0, sizeof *o);
    o->allowed_hosts = cfg_str(cfg, "inputs.allowed_hosts");
    o->max_bytes = cfg_int(cfg, "inputs.max_download_mb") * (1 << 20);
    o->connect_timeout_ms = cfg_int(cfg, "inputs.connect_timeout_ms");
    o->timeout_ms = cfg_int(cfg, "inputs.timeout_ms");
    o->dir = cfg_str(cfg, "inputs.download_dir");
}

/* url for messages: without userinfo, query and fragment (they may hold tokens). A new
 * string; when url does not parse, a fixed placeholder rather than the raw text. */
static char *fetch_display(const char *url)
{
    CURLU *h = curl_url();
    char *s = NULL;
    if (h && curl_url_set(h, CURLUPART_URL, url, 0) == CURLUE_OK) {
        curl_url_set(h, CURLUPART_USER, NULL, 0);
        curl_url_set(h, CURLUPART_PASSWORD, NULL, 0);
        curl_url_set(h, CURLUPART_QUERY, NULL, 0);
        curl_url_set(h, CURLUPART_FRAGMENT, NULL, 0);
        curl_url_get(h, CURLUPART_URL, &s, 0);
    }
    char *out = xstrdup(s ? s : "(unparsable URL)");
    curl_free(s);
    curl_url_cleanup(h);
    return out;
}

/* Parse and check url into a new CURLU (caller cleans up), or NULL with err set. */
static CURLU *fetch_parse(const FetchOptions *o, const char *url, char *err)
{
    pthread_once(&fetch_once, fetch_init_once);
    if (fetch_init_rc != CURLE_OK) {
        err_set(err, VLQ_EIO, "libcurl: %s", curl_easy_strerror(fetch_init_rc));
        return NULL;
    }
    CURLU *h = curl_url();
    char *shown = fetch_display(url), *scheme = NULL, *host = NULL;
    CURLUcode uc;
    if (!h) {
        err_set(err, VLQ_EIO, "%s: out of memory parsing the URL", shown);
        goto fail;
    }
    if ((uc = curl_url_set(h, CURLUPART_URL, url, 0)) != CURLUE_OK) {
        err_set(err, VLQ_EINPUT, "%s: invalid URL: %s", shown, curl_url_strerror(uc));
        goto fail;
    }
    if (curl_url_get(h, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcasecmp(scheme, "http") && strcasecmp(scheme, "https"))) {
        err_set(err, VLQ_EINPUT, "%s: only http:// and https:// inputs can be downloaded",
                shown);
        goto fail;
    }
    if (curl_url_get(h, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host) {
        err_set(err, VLQ_EINPUT, "%s: the URL has no host", shown);
        goto fail;
    }
    if (!o->allowed_hosts || !*o->allowed_hosts) {
        err_set(err, VLQ_EINPUT,
                "%s: URL inputs are refused: no host is allowed (set [inputs] allowed_hosts, "
                "e.g. allowed_hosts = %s)", shown, host);
        goto fail;
    }
    if (!util_host_listed(host, o->allowed_hosts)) {
        err_set(err, VLQ_EINPUT, "%s: host %s is not in [inputs] allowed_hosts (%s)", shown,
                host, o->allowed_hosts);
        goto fail;
    }
    curl_free(scheme);
    curl_free(host);
    free(shown);
    return h;
fail:
    curl_free(scheme);
    curl_free(host);
    free(shown);
    curl_url_cleanup(h);
    return NULL;
}

int fetch_check_url(const FetchOptions *o, const char *url, char *err)
{
    CURLU *h = fetch_parse(o, url, err);
    if (!h)
        return VLQ_EINPUT;
    curl_url_cleanup(h);
    return 0;
}

int fetch_dir_new(const FetchOptions *o, int64_t job_id, char **dir, char *err)
{
    const char *parent = o->dir && *o->dir ? o->dir : getenv("TMPDIR");
    if (!parent || !*parent)
        parent = "/tmp";
    char *tmpl = xasprintf("%s/vlq-job%lld-XXXXXX", parent, (long long)job_id);
    if (!mkdtemp(tmpl)) {
        int e = errno;
        free(tmpl);
        return err_set(err, VLQ_EIO, "%s: cannot make a download directory: %s", parent,
                       strerror(e));
    }
    *dir = tmpl;
    return 0;
}

void fetch_dir_remove(const char *dir)
{
    if (!dir)
        return;
    DIR *d = opendir(dir);
    if (d) {
        for (struct dirent *e; (e = readdir(d));) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char *p = xasprintf("%s/%s", dir, e->d_name);
            if (unlink(p) != 0)
                log_warn("%s: cannot remove: %s", p, strerror(errno));
            free(p);
        }
        closedir(d);
    }
    if (rmdir(dir) != 0 && errno != ENOENT)
        log_warn("%s: cannot remove the download directory: %s", dir, strerror(errno));
}

/* The file name for input n of url: "n-" + the last path segment, with bytes outside
 * [A-Za-z0-9._-] as '_' (a name never holds '/', never starts with '.'). New string. */
static char *fetch_file_name(CURLU *h, int n)
{
    char *path = NULL;
    curl_url_get(h, CURLUPART_PATH, &path, 0);
    const char *seg = path ? strrchr(path, '/') : NULL;
    seg = seg ? seg + 1 : path ? path : "";
    char name[FETCH_MAX_NAME + 1];
    size_t k = 0;
    for (; seg[k] && k < FETCH_MAX_NAME; k++) {
        unsigned char c = (unsigned char)seg[k];
        name[k] = isalnum(c) || c == '.' || c == '_' || c == '-' ? (char)c : '_';
    }
    name[k] = '\0';
    curl_free(path);
    return xasprintf("%d-%s", n, k ? name : "input");
}

/* The state of one transfer, seen by the write callback. */
typedef struct {
    int fd;
    int64_t bytes, max_bytes;
    int over_cap;        /* the body grew past max_bytes */
    int write_errno;     /* a local write failed */
    EVP_MD_CTX *md;
    const FetchOptions *o;
    double next_progress_s; /* util_mono_s() of the next on_progress call */
    int stop_code;          /* on_progress stopped the download with this code */
    char stop_err[VLQ_ERRLEN];
} Sink;

/* libcurl's progress hook: on_progress about once a second. */
static int fetch_on_progress(void *userdata, curl_off_t dltotal, curl_off_t dlnow,
                             curl_off_t ultotal, curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    Sink *s = userdata;
    double now = util_mono_s();
    if (!s->o->on_progress || now < s->next_progress_s)
        return 0;
    s->next_progress_s = now + 1.0;
    s->stop_code = s->o->on_progress(s->o->progress_arg, s->stop_err);
    return s->stop_code != 0; /* nonzero aborts the transfer */
}

static size_t fetch_on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    Sink *s = userdata;
    size_t n = size * nmemb;
    if (s->bytes + (int64_t)n > s->max_bytes) {
        s->over_cap = 1;
        return 0; /* aborts the transfer */
    }
    for (size_t off = 0; off < n;) {
        ssize_t w = write(s->fd, data + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            s->write_errno = w < 0 ? errno : EIO;
            return 0;
        }
        off += (size_t)w;
    }
    EVP_DigestUpdate(s->md, data, n);
    s->bytes += (int64_t)n;
    return n;
}

/* Is this libcurl failure worth a retry (the network or the server, not the request)? */
static int fetch_transient(CURLcode c)
{
    switch (c) {
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_FILESIZE_EXCEEDED:
    case CURLE_TOO_MANY_REDIRECTS:
    case CURLE_PEER_FAILED_VERIFICATION: /* a wrong certificate stays wrong */
        return 0;
    default:
        return 1;
    }
}

/* One request of url (already checked) into s, from the start of the file. Returns 0 with
 * *status (and *location, a new string, for a redirect), or an error. */
static int fetch_once_url(const FetchOptions *o, CURLU *h, const char *shown, Sink *s,
                          int64_t deadline_ms, long *status, char **location, char *err)
{
    CURL *c = curl_easy_init();
    if (!c)
        return err_set(err, VLQ_EIO, "%s: cannot start a download (libcurl)", shown);
    char cerr[CURL_ERROR_SIZE] = "";
    int64_t left = deadline_ms - util_now_ms();
    if (left < 1)
        left = 1;
    curl_easy_setopt(c, CURLOPT_CURLU, h);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)o->connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)left);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)o->max_bytes);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, fetch_on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "vlq-fetch");
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, fetch_on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, s);
    CURLcode rc = curl_easy_perform(c);
    int code = 0;
    *status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    if (s->stop_code) {
        code = err_set(err, s->stop_code, "%s", s->stop_err);
    } else if (s->over_cap || rc == CURLE_FILESIZE_EXCEEDED) {
        code = err_set(err, VLQ_EINPUT, "%s: larger than [inputs] max_download_mb (%lld MiB)",
                       shown, (long long)(o->max_bytes >> 20));
    } else if (s->write_errno) {
        code = err_set(err, VLQ_EIO, "%s: cannot write the download: %s", shown,
                       strerror(s->write_errno));
    } else if (rc != CURLE_OK) {
        code = err_set(err, fetch_transient(rc) ? VLQ_ENET : VLQ_EINPUT, "%s: %s", shown,
                       cerr[0] ? cerr : curl_easy_strerror(rc));
    } else if (*status >= 300 && *status < 400) {
        char *loc = NULL;
        curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &loc);
        if (!loc)
            code = err_set(err, VLQ_EINPUT, "%s: HTTP %ld without a Location", shown, *status);
        else
            *location = xstrdup(loc);
    }
    curl_easy_cleanup(c);
    return code;
}

int fetch_url(const FetchOptions *o, const char *url, const char *dir, int n, FetchResult *r,
              char *err)
{
    memset(r, 0, sizeof *r);
    CURLU *h = fetch_parse(o, url, err);
    if (!h)
        return VLQ_EINPUT;
    char *shown = fetch_display(url), *name = fetch_file_name(h, n), *next = NULL;
    char *path = xasprintf("%s/%s", dir, name);
    int64_t deadline_ms = util_now_ms() + o->timeout_ms;
    Sink s = {.fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600),
              .max_bytes = o->max_bytes, .md = EVP_MD_CTX_new(), .o = o,
              .next_progress_s = util_mono_s() + 1.0};
    int rc = 0, created = s.fd >= 0; /* only a file made here is removed on failure */
    if (s.fd < 0) {
        rc = err_set(err, VLQ_EIO, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (!s.md || !EVP_DigestInit_ex(s.md, EVP_sha256(), NULL)) {
        rc = err_set(err, VLQ_EIO, "%s: cannot start SHA-256", shown);
        goto out;
    }
    for (int hop = 0;; hop++) {
        long status = 0;
        free(next);
        next = NULL;
        if ((rc = fetch_once_url(o, h, shown, &s, deadline_ms, &status, &next, err)) != 0)
            goto out;
        if (!next) {
            if (status >= 500 || status == 408 || status == 429)
                rc = err_set(err, VLQ_ENET, "%s: HTTP %ld from the server", shown, status);
            else if (status >= 400 || status < 200)
                rc = err_set(err, VLQ_EINPUT, "%s: HTTP %ld", shown, status);
            if (rc)
                goto out;
            break;
        }
        if (hop == FETCH_MAX_REDIRECTS) {
            rc = err_set(err, VLQ_EINPUT, "%s: more than %d redirects", shown,
                         FETCH_MAX_REDIRECTS);
            goto out;
        }
        /* a redirect's own body is not the input: start the file and the hash over */
        if (ftruncate(s.fd, 0) != 0 || lseek(s.fd, 0, SEEK_SET) != 0 ||
            !EVP_DigestInit_ex(s.md, EVP_sha256(), NULL)) {
            rc = err_set(err, VLQ_EIO, "%s: %s", path, strerror(errno));
            goto out;
        }
        s.bytes = 0;
        curl_url_cleanup(h);
        if (!(h = fetch_parse(o, next, err))) {
            err_prefix(err, "%s: redirected", shown);
            rc = VLQ_EINPUT;
            goto out;
        }
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (!EVP_DigestFinal_ex(s.md, md, &md_len) || md_len != 32) {
        rc = err_set(err, VLQ_EIO, "%s: cannot finish SHA-256", shown);
        goto out;
    }
    for (unsigned i = 0; i < 32; i++)
        snprintf(r->sha256 + 2 * i, 3, "%02x", md[i]);
    if (fsync(s.fd) != 0 || close(s.fd) != 0) {
        s.fd = -1;
        rc = err_set(err, VLQ_EIO, "%s: %s", path, strerror(errno));
        goto out;
    }
    s.fd = -1;
    r->size_bytes = s.bytes;
    r->path = path;
    path = NULL;
out:
    if (s.fd >= 0)
        close(s.fd);
    if (rc && created)
        unlink(path);
    EVP_MD_CTX_free(s.md);
    curl_url_cleanup(h);
    free(next);
    free(path);
    free(name);
    free(shown);
    return rc;
}
