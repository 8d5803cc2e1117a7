/* vcache: the visual feature cache (see vcache.h).
 *
 * Memory: entries in a doubly linked LRU list (head = most recently used) and a chained
 * hash table on the key's first 8 bytes; `bytes` is the sum of the payloads held, kept
 * <= limit by evicting from the tail. An entry larger than the limit is never held in
 * memory (it would evict everything and then itself).
 *
 * Disk (optional): one file per key, <dir>/<64 hex>.vfc, written to a mkstemp name in
 * the same directory and renamed, so a reader sees a whole file or none. The file is
 * a fixed header then the floats (host byte order: the cache is local to a machine):
 *
 *   magic "VLQVFC\0\0" | u32 version | u32 header_bytes | i64 n_floats | key[32]
 *   | model_hash[32] (SHA-256 of the model id) | u32 payload crc32 | u32 header crc32
 *
 * A file that fails any check (short, wrong magic or version, other model, other key,
 * other size, bad checksum) is a miss and is unlinked. Disk errors are logged once at
 * warn (then at debug) and otherwise ignored: the cache is only an optimisation.
 *
 * The key is SHA-256("vlq-vcache-1" | model_id | NUL | grid | n_pixel_floats | pixels),
 * so two models never share an entry even in memory. */
#define _GNU_SOURCE
#include "vcache.h"

#include "err.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define VCACHE_MAGIC "VLQVFC\0\0"
#define VCACHE_VERSION 1u
#define VCACHE_NBUCKETS 256

typedef struct {
    char magic[8];
    uint32_t version;
    uint32_t header_bytes;
    int64_t n_floats;
    uint8_t key[32];
    uint8_t model_hash[32];
    uint32_t payload_crc;
    uint32_t header_crc; /* crc32 of every field above */
} VCacheFileHeader;
_Static_assert(sizeof(VCacheFileHeader) == 96, "vcache file header is 96 bytes");

typedef struct VCacheEntry VCacheEntry;
struct VCacheEntry {
    VCacheKey key;
    int64_t n_floats;
    float *data;               /* n_floats, owned */
    VCacheEntry *prev, *next;  /* LRU list, head = most recent */
    VCacheEntry *chain;        /* hash bucket chain */
};

struct VCache {
    char *model_id;          /* owned */
    uint8_t model_hash[32];  /* SHA-256 of model_id, stored in disk headers */
    int64_t limit_bytes;     /* memory budget for payloads */
    char *dir;               /* owned; NULL: no disk cache */
    int disk_warned;         /* a disk error has been logged at warn */
    VCacheEntry *head, *tail;
    VCacheEntry *buckets[VCACHE_NBUCKETS];
    VCacheStats st;
};

/* ---- helpers ---- */

static void vcache_disk_error(VCache *c, const char *what, const char *path)
{
    int level = c->disk_warned ? LOG_DEBUG : LOG_WARN;
    c->disk_warned = 1;
    log_msg(level, "feature cache: %s %s: %s (disk cache errors are ignored)", what, path,
            strerror(errno));
}

static unsigned vcache_bucket(const VCacheKey *key)
{
    uint64_t h;
    memcpy(&h, key->bytes, sizeof h);
    return (unsigned)(h % VCACHE_NBUCKETS);
}

static uint32_t vcache_crc(const void *p, size_t n)
{
    return (uint32_t)crc32_z(0, p, n);
}

/* mkdir -p; 0 or -1 with errno set. */
static int vcache_mkdirs(const char *dir)
{
    char *p = xstrdup(dir);
    int rc = 0;
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == 0) {
            char saved = *s;
            *s = 0;
            if (mkdir(p, 0755) && errno != EEXIST) {
                rc = -1;
                break;
            }
            *s = saved;
            if (!saved)
                break;
        }
    }
    free(p);
    if (!rc) {
        struct stat sb;
        if (stat(dir, &sb))
            return -1;
        if (!S_ISDIR(sb.st_mode)) {
            errno = ENOTDIR;
            return -1;
        }
    }
    return rc;
}

static char *vcache_path(const VCache *c, const VCacheKey *key)
{
    static const char hexd[] = "0123456789abcdef";
    char hex[65];
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = hexd[key->bytes[i] >> 4];
        hex[2 * i + 1] = hexd[key->bytes[i] & 15];
    }
    hex[64] = 0;
    return xasprintf("%s/%s.vfc", c->dir, hex);
}

/* ---- memory LRU ---- */

static VCacheEntry *vcache_find(const VCache *c, const VCacheKey *key)
{
    for (VCacheEntry *e = c->buckets[vcache_bucket(key)]; e; e = e->chain)
        if (!memcmp(e->key.bytes, key->bytes, 32))
            return e;
    return NULL;
}

static void vcache_unlink_lru(VCache *c, VCacheEntry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void vcache_push_head(VCache *c, VCacheEntry *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head)
        c->head->prev = e;
    c->head = e;
    if (!c->tail)
        c->tail = e;
}

static void vcache_drop(VCache *c, VCacheEntry *e)
{
    vcache_unlink_lru(c, e);
    VCacheEntry **pp = &c->buckets[vcache_bucket(&e->key)];
    while (*pp != e)
        pp = &(*pp)->chain;
    *pp = e->chain;
    c->st.bytes -= e->n_floats * (int64_t)sizeof(float);
    c->st.entries--;
    free(e->data);
    free(e);
}

/* Hold a copy of data in memory, evicting least recently used entries to fit; does
 * nothing if it cannot fit or memory is short. */
static void vcache_mem_put(VCache *c, const VCacheKey *key, const float *data, int64_t n_floats)
{
    int64_t size = n_floats * (int64_t)sizeof(float);
    VCacheEntry *old = vcache_find(c, key);
    if (old)
        vcache_drop(c, old);
    if (size > c->limit_bytes)
        return;
    while (c->tail && c->st.bytes + size > c->limit_bytes)
        vcache_drop(c, c->tail);
    VCacheEntry *e = calloc(1, sizeof *e);
    float *copy = malloc(size ? (size_t)size : 1);
    if (!e || !copy) {
        free(e);
        free(copy);
        log_debug("feature cache: no memory for a %lld-byte entry", (long long)size);
        return;
    }
    memcpy(copy, data, (size_t)size);
    e->key = *key;
    e->n_floats = n_floats;
    e->data = copy;
    unsigned b = vcache_bucket(key);
    e->chain = c->buckets[b];
    c->buckets[b] = e;
    vcache_push_head(c, e);
    c->st.bytes += size;
    c->st.entries++;
}

/* ---- disk ---- */

static void vcache_header_fill(const VCache *c, const VCacheKey *key, const float *data,
                               int64_t n_floats, VCacheFileHeader *h)
{
    memset(h, 0, sizeof *h);
    memcpy(h->magic, VCACHE_MAGIC, 8);
    h->version = VCACHE_VERSION;
    h->header_bytes = sizeof *h;
    h->n_floats = n_floats;
    memcpy(h->key, key->bytes, 32);
    memcpy(h->model_hash, c->model_hash, 32);
    h->payload_crc = vcache_crc(data, (size_t)n_floats * sizeof(float));
    h->header_crc = vcache_crc(h, offsetof(VCacheFileHeader, header_crc));
}

static int vcache_write_all(int fd, const void *p, size_t n)
{
    const char *s = p;
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

static int vcache_read_all(int fd, void *p, size_t n)
{
    char *s = p;
    while (n) {
        ssize_t r = read(fd, s, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        s += r;
        n -= (size_t)r;
    }
    return 0;
}

static void vcache_disk_put(VCache *c, const VCacheKey *key, const float *data, int64_t n_floats)
{
    char *path = vcache_path(c, key);
    char *tmp = xasprintf("%s/.tmp-XXXXXX", c->dir);
    if (!access(path, F_OK))
        goto out; /* already there (same key, same contents) */
    VCacheFileHeader h;
    vcache_header_fill(c, key, data, n_floats, &h);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        vcache_disk_error(c, "cannot create a file in", c->dir);
        goto out;
    }
    int bad = vcache_write_all(fd, &h, sizeof h) ||
              vcache_write_all(fd, data, (size_t)n_floats * sizeof(float));
    if (close(fd))
        bad = 1;
    if (bad) {
        vcache_disk_error(c, "cannot write", tmp);
        unlink(tmp);
        goto out;
    }
    if (rename(tmp, path)) {
        vcache_disk_error(c, "cannot rename to", path);
        unlink(tmp);
        goto out;
    }
    c->st.disk_writes++;
out:
    free(tmp);
    free(path);
}

/* Read key's file into out (n_floats): 1 on a hit; 0 on a miss, removing the file if it
 * exists but fails a check. */
static int vcache_disk_get(VCache *c, const VCacheKey *key, float *out, int64_t n_floats)
{
    char *path = vcache_path(c, key);
    int hit = 0, bad = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO: a bad size, no wait */
    if (fd < 0) {
        if (errno != ENOENT)
            vcache_disk_error(c, "cannot open", path);
        goto out;
    }
    size_t payload = (size_t)n_floats * sizeof(float);
    VCacheFileHeader h;
    struct stat sb;
    bad = 1;
    if (fstat(fd, &sb) || sb.st_size != (off_t)(sizeof h + payload))
        goto close;
    if (vcache_read_all(fd, &h, sizeof h))
        goto close;
    if (memcmp(h.magic, VCACHE_MAGIC, 8) || h.version != VCACHE_VERSION ||
        h.header_bytes != sizeof h ||
        h.header_crc != vcache_crc(&h, offsetof(VCacheFileHeader, header_crc)) ||
        h.n_floats != n_floats || memcmp(h.key, key->bytes, 32) ||
        memcmp(h.model_hash, c->model_hash, 32))
        goto close;
    if (vcache_read_all(fd, out, payload) || vcache_crc(out, payload) != h.payload_crc)
        goto close;
    bad = 0;
    hit = 1;
close:
    close(fd);
    if (bad) {
        log_debug("feature cache: %s: damaged or foreign entry, removed", path);
        if (unlink(path) && errno != ENOENT)
            vcache_disk_error(c, "cannot remove", path);
    }
out:
    free(path);
    return hit;
}

/* ---- public ---- */

/* Open a cache (see vcache.h). *out is the caller's to vcache_close. */
int vcache_open(const char *model_id, int64_t limit_bytes, const char *dir, VCache **out,
                char *err)
{
    *out = NULL;
    if (dir && *dir && vcache_mkdirs(dir))
        return err_set(err, VLQ_EIO, "%s: cannot create the feature cache directory: %s", dir,
                       strerror(errno));
    VCache *c = xcalloc(1, sizeof *c);
    c->model_id = xstrdup(model_id ? model_id : "");
    unsigned n = 0;
    VLQ_ASSERT(EVP_Digest(c->model_id, strlen(c->model_id), c->model_hash, &n, EVP_sha256(),
                          NULL) == 1 &&
               n == 32);
    c->limit_bytes = limit_bytes > 0 ? limit_bytes : 0;
    c->dir = dir && *dir ? xstrdup(dir) : NULL;
    *out = c;
    return 0;
}

/* Free every entry in memory (disk files stay). NULL-safe. */
void vcache_close(VCache *c)
{
    if (!c)
        return;
    while (c->head)
        vcache_drop(c, c->head);
    free(c->dir);
    free(c->model_id);
    free(c);
}

/* The key of one item (see the top of this file). Cannot fail. */
VCacheKey vcache_key(const VCache *c, const float *pixels, int64_t n_floats,
                     const int32_t grid[3])
{
    static const char tag[] = "vlq-vcache-1";
    VCacheKey k;
    unsigned n = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    VLQ_ASSERT(ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1);
    EVP_DigestUpdate(ctx, tag, sizeof tag);
    EVP_DigestUpdate(ctx, c->model_id, strlen(c->model_id) + 1);
    EVP_DigestUpdate(ctx, grid, 3 * sizeof(int32_t));
    EVP_DigestUpdate(ctx, &n_floats, sizeof n_floats);
    EVP_DigestUpdate(ctx, pixels, (size_t)n_floats * sizeof(float));
    VLQ_ASSERT(EVP_DigestFinal_ex(ctx, k.bytes, &n) == 1 && n == 32);
    EVP_MD_CTX_free(ctx);
    return k;
}

/* Look up key (see vcache.h): memory first, then disk; a disk hit is also held in
 * memory. A stored entry of another size is a miss (the caller's layout changed). */
int vcache_get(VCache *c, const VCacheKey *key, float *out, int64_t n_floats)
{
    if (n_floats < 0) {
        c->st.misses++;
        return 0;
    }
    VCacheEntry *e = vcache_find(c, key);
    if (e && e->n_floats == n_floats) {
        memcpy(out, e->data, (size_t)n_floats * sizeof(float));
        vcache_unlink_lru(c, e);
        vcache_push_head(c, e);
        c->st.hits++;
        return 1;
    }
    if (c->dir && vcache_disk_get(c, key, out, n_floats)) {
        vcache_mem_put(c, key, out, n_floats);
        c->st.hits++;
        c->st.disk_hits++;
        return 1;
    }
    c->st.misses++;
    return 0;
}

/* Store a copy (see vcache.h). Cannot fail: what cannot be stored is not. */
void vcache_put(VCache *c, const VCacheKey *key, const float *data, int64_t n_floats)
{
    if (n_floats < 0)
        return;
    vcache_mem_put(c, key, data, n_floats);
    if (c->dir)
        vcache_disk_put(c, key, data, n_floats);
}

/* The counters; bytes and entries are what memory holds now. Cannot fail. */
void vcache_stats(const VCache *c, VCacheStats *s)
{
    *s = c->st;
}
