/* Tests of vcache: memory hits and misses, LRU order at the byte limit, an oversized
 * entry, the disk round trip across close/open, damaged, truncated and foreign files,
 * another model id, and the counters. */
#include "err.h"
#include "test.h"
#include "util.h"
#include "vcache.h"

#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* An item's pixels and features, distinct per seed. */
static void fill(float *p, int64_t n, int seed)
{
    for (int64_t i = 0; i < n; i++)
        p[i] = (float)seed * 1000.0f + (float)i * 0.25f;
}

static VCacheKey key_of(const VCache *c, int seed)
{
    float px[48];
    fill(px, 48, seed);
    int32_t grid[3] = {1, 4, 3};
    return vcache_key(c, px, 48, grid);
}

/* The single .vfc file in dir (path in a static buffer), or NULL if not exactly one. */
static const char *only_file(const char *dir)
{
    static char path[4096];
    DIR *d = opendir(dir);
    if (!d)
        return NULL;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strstr(de->d_name, ".vfc")) {
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            n++;
        }
    closedir(d);
    return n == 1 ? path : NULL;
}

static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static void test_hit_miss(void)
{
    char err[VLQ_ERRLEN];
    VCache *c;
    CHECK_EQ(vcache_open("m.vlq:123:abcd", 1 << 20, NULL, &c, err), 0);
    float feat[100], out[100];
    fill(feat, 100, 7);
    VCacheKey k = key_of(c, 1), k2 = key_of(c, 2);
    CHECK(memcmp(k.bytes, k2.bytes, 32) != 0);
    /* the grid is part of the key */
    float px[48];
    fill(px, 48, 1);
    int32_t g2[3] = {1, 3, 4};
    VCacheKey k3 = vcache_key(c, px, 48, g2);
    CHECK(memcmp(k.bytes, k3.bytes, 32) != 0);

    CHECK_EQ(vcache_get(c, &k, out, 100), 0);
    vcache_put(c, &k, feat, 100);
    memset(out, 0, sizeof out);
    CHECK_EQ(vcache_get(c, &k, out, 100), 1);
    CHECK(!memcmp(out, feat, sizeof feat));
    CHECK_EQ(vcache_get(c, &k2, out, 100), 0);
    /* another size is a miss, not a short copy */
    CHECK_EQ(vcache_get(c, &k, out, 50), 0);
    VCacheStats s;
    vcache_stats(c, &s);
    CHECK_EQ(s.hits, 1);
    CHECK_EQ(s.misses, 3);
    CHECK_EQ(s.entries, 1);
    CHECK_EQ(s.bytes, 400);
    CHECK_EQ(s.disk_hits, 0);
    CHECK_EQ(s.disk_writes, 0);
    vcache_close(c);
    vcache_close(NULL);
}

static void test_lru(void)
{
    char err[VLQ_ERRLEN];
    VCache *c;
    /* room for exactly three 100-float entries */
    CHECK_EQ(vcache_open("m", 1200, NULL, &c, err), 0);
    float feat[100], out[100];
    VCacheKey k[5];
    for (int i = 0; i < 5; i++)
        k[i] = key_of(c, i);
    for (int i = 0; i < 3; i++) {
        fill(feat, 100, i);
        vcache_put(c, &k[i], feat, 100);
    }
    VCacheStats s;
    vcache_stats(c, &s);
    CHECK_EQ(s.entries, 3);
    CHECK_EQ(s.bytes, 1200);
    /* use 0: now 1 is the least recently used and goes first */
    CHECK_EQ(vcache_get(c, &k[0], out, 100), 1);
    fill(feat, 100, 3);
    vcache_put(c, &k[3], feat, 100);
    CHECK_EQ(vcache_get(c, &k[1], out, 100), 0);
    CHECK_EQ(vcache_get(c, &k[0], out, 100), 1);
    CHECK_EQ(vcache_get(c, &k[2], out, 100), 1);
    CHECK_EQ(vcache_get(c, &k[3], out, 100), 1);
    fill(feat, 100, 3);
    CHECK(!memcmp(out, feat, sizeof feat));
    /* order now (most recent first): 3 2 0; a put evicts 0 */
    fill(feat, 100, 4);
    vcache_put(c, &k[4], feat, 100);
    CHECK_EQ(vcache_get(c, &k[0], out, 100), 0);
    CHECK_EQ(vcache_get(c, &k[2], out, 100), 1);
    vcache_stats(c, &s);
    CHECK_EQ(s.entries, 3);
    CHECK(s.bytes <= 1200);
    /* a 200-float entry evicts two */
    float big[200];
    fill(big, 200, 9);
    VCacheKey kb = key_of(c, 9);
    vcache_put(c, &kb, big, 200);
    vcache_stats(c, &s);
    CHECK_EQ(s.entries, 2);
    CHECK_EQ(s.bytes, 1200);
    CHECK_EQ(vcache_get(c, &k[2], out, 100), 1); /* the most recent survived */
    vcache_close(c);
}

static void test_oversized(void)
{
    char err[VLQ_ERRLEN];
    VCache *c;
    CHECK_EQ(vcache_open("m", 1000, NULL, &c, err), 0);
    float small[10], big[300], out[300];
    fill(small, 10, 1);
    fill(big, 300, 2);
    VCacheKey ks = key_of(c, 1), kb = key_of(c, 2);
    vcache_put(c, &ks, small, 10);
    vcache_put(c, &kb, big, 300); /* 1200 bytes > 1000: not held, evicts nothing */
    VCacheStats s;
    vcache_stats(c, &s);
    CHECK_EQ(s.entries, 1);
    CHECK_EQ(s.bytes, 40);
    CHECK_EQ(vcache_get(c, &kb, out, 300), 0);
    CHECK_EQ(vcache_get(c, &ks, out, 10), 1);
    vcache_close(c);

    /* limit 0 keeps nothing in memory */
    CHECK_EQ(vcache_open("m", 0, NULL, &c, err), 0);
    vcache_put(c, &ks, small, 10);
    CHECK_EQ(vcache_get(c, &ks, out, 10), 0);
    vcache_stats(c, &s);
    CHECK_EQ(s.entries, 0);
    vcache_close(c);
}

static void test_disk_roundtrip(void)
{
    char err[VLQ_ERRLEN];
    VCache *c;
    const char *dir = test_path("cache/sub"); /* created with its parents */
    char *d = xstrdup(dir);
    CHECK_EQ(vcache_open("model-a", 0, d, &c, err), 0);
    float feat[1000], out[1000];
    fill(feat, 1000, 5);
    VCacheKey k = key_of(c, 5);
    vcache_put(c, &k, feat, 1000);
    vcache_put(c, &k, feat, 1000); /* already on disk: not written again */
    VCacheStats s;
    vcache_stats(c, &s);
    CHECK_EQ(s.disk_writes, 1);
    vcache_close(c);
    CHECK_EQ(count_files(d), 1); /* no temp file left */

    CHECK_EQ(vcache_open("model-a", 1 << 20, d, &c, err), 0);
    k = key_of(c, 5);
    memset(out, 0, sizeof out);
    CHECK_EQ(vcache_get(c, &k, out, 1000), 1);
    CHECK(!memcmp(out, feat, sizeof feat));
    /* the disk hit is now held in memory: a second get does not read the disk */
    CHECK_EQ(vcache_get(c, &k, out, 1000), 1);
    vcache_stats(c, &s);
    CHECK_EQ(s.hits, 2);
    CHECK_EQ(s.disk_hits, 1);
    CHECK_EQ(s.misses, 0);
    CHECK_EQ(s.entries, 1);
    vcache_close(c);

    /* another model id: a miss (another key), and its file is untouched */
    CHECK_EQ(vcache_open("model-b", 1 << 20, d, &c, err), 0);
    VCacheKey kb = key_of(c, 5);
    CHECK(memcmp(kb.bytes, k.bytes, 32) != 0);
    CHECK_EQ(vcache_get(c, &kb, out, 1000), 0);
    vcache_close(c);
    CHECK_EQ(count_files(d), 1);
    free(d);
}

/* Write an entry with model "m" and return its file's path (static). */
static const char *write_one(const char *dir, VCacheKey *k, float *feat, int64_t n)
{
    char err[VLQ_ERRLEN];
    VCache *c;
    CHECK_EQ(vcache_open("m", 0, dir, &c, err), 0);
    *k = key_of(c, 3);
    fill(feat, n, 3);
    vcache_put(c, k, feat, n);
    vcache_close(c);
    return only_file(dir);
}

/* Open with model "m", look k up (must miss) and check the file was removed. */
static void expect_miss_removed(const char *dir, const VCacheKey *k, int64_t n)
{
    char err[VLQ_ERRLEN];
    VCache *c;
    float *out = xmalloc((size_t)n * sizeof(float));
    CHECK_EQ(vcache_open("m", 1 << 20, dir, &c, err), 0);
    CHECK_EQ(vcache_get(c, k, out, n), 0);
    VCacheStats s;
    vcache_stats(c, &s);
    CHECK_EQ(s.misses, 1);
    CHECK_EQ(s.disk_hits, 0);
    vcache_close(c);
    CHECK_EQ(count_files(dir), 0);
    free(out);
}

static void test_disk_damaged(void)
{
    char err[VLQ_ERRLEN];
    const char *dir = "c";
    VCacheKey k;
    float feat[500];

    /* a flipped payload byte */
    const char *path = write_one(dir, &k, feat, 500);
    CHECK(path != NULL);
    if (!path)
        return;
    char *p = xstrdup(path);
    char *data;
    size_t len;
    CHECK_EQ(util_read_file(p, 0, &data, &len, err), 0);
    CHECK_EQ(len, 96 + 500 * 4);
    data[200] ^= 0x40;
    CHECK_EQ(util_write_file(p, data, len, err), 0);
    expect_miss_removed(dir, &k, 500);

    /* truncated */
    write_one(dir, &k, feat, 500);
    CHECK_EQ(truncate(p, 96 + 100), 0);
    expect_miss_removed(dir, &k, 500);

    /* a damaged header (the version) */
    write_one(dir, &k, feat, 500);
    data[8] = 99;
    data[200] ^= 0x40; /* payload restored */
    CHECK_EQ(util_write_file(p, data, len, err), 0);
    expect_miss_removed(dir, &k, 500);

    /* a foreign file under the key's name */
    write_one(dir, &k, feat, 500);
    CHECK_EQ(util_write_file(p, "not a cache entry", 17, err), 0);
    expect_miss_removed(dir, &k, 500);

    /* a valid entry of another model renamed to this key's name: the model hash in the
     * header makes it a miss */
    VCache *c;
    CHECK_EQ(vcache_open("other", 0, dir, &c, err), 0);
    VCacheKey ko = key_of(c, 3);
    vcache_put(c, &ko, feat, 500);
    vcache_close(c);
    const char *po = only_file(dir);
    CHECK(po != NULL);
    if (po)
        CHECK_EQ(rename(po, p), 0);
    expect_miss_removed(dir, &k, 500);

    /* an intact file is still a hit after all that */
    write_one(dir, &k, feat, 500);
    CHECK_EQ(vcache_open("m", 0, dir, &c, err), 0);
    float out[500];
    CHECK_EQ(vcache_get(c, &k, out, 500), 1);
    CHECK(!memcmp(out, feat, sizeof out));
    vcache_close(c);
    free(data);
    free(p);
}

static void test_disk_errors(void)
{
    char err[VLQ_ERRLEN];
    VCache *c;
    /* a directory that cannot be created is an error */
    CHECK_EQ(util_write_file("file", "x", 1, err), 0);
    CHECK_EQ(vcache_open("m", 0, "file/sub", &c, err), VLQ_EIO);
    CHECK(strstr(err, "file/sub") != NULL);
    CHECK_EQ(vcache_open("m", 0, "file", &c, err), VLQ_EIO);
    /* a directory removed under the cache: puts are ignored (logged once), memory
     * still works */
    CHECK_EQ(vcache_open("m", 1 << 20, "gone", &c, err), 0);
    CHECK_EQ(rmdir("gone"), 0);
    float feat[10], out[10];
    fill(feat, 10, 1);
    VCacheKey k = key_of(c, 1), k2 = key_of(c, 2);
    vcache_put(c, &k, feat, 10);
    vcache_put(c, &k2, feat, 10);
    CHECK_EQ(vcache_get(c, &k, out, 10), 1);
    CHECK(!memcmp(out, feat, sizeof out));
    VCacheKey k3 = key_of(c, 3);
    CHECK_EQ(vcache_get(c, &k3, out, 10), 0);
    VCacheStats s;
    vcache_stats(c, &s);
    CHECK_EQ(s.disk_writes, 0);
    CHECK_EQ(s.entries, 2);
    vcache_close(c);
}

TEST_GROUP(vcache, {"hit_miss", test_hit_miss}, {"lru", test_lru}, {"oversized", test_oversized},
           {"disk_roundtrip", test_disk_roundtrip}, {"disk_damaged", test_disk_damaged},
           {"disk_errors", test_disk_errors})
