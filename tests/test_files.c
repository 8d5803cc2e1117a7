/* Tests of the file rules (util.h "files"): every reader refuses a FIFO, a directory or a
 * device without blocking (util, cfg, tokenizer, model, safetensors, media and PDF
 * readers); the atomic writer replaces regular files, writes through symlinks and
 * refuses FIFOs, devices, directories and dangling links; shape products never wrap.
 * A reader that blocked on a FIFO would hang: each test arms alarm() so that is a
 * failure (SIGALRM), not a wait for the runner's timeout. */
#include "cfg.h"
#include "convert.h"
#include "err.h"
#include "media.h"
#include "model.h"
#include "safetensors.h"
#include "test.h"
#include "tok.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* The error mentions both phrases (path and reason). */
static void tf_err_has(const char *file, int line, const char *err, const char *a, const char *b)
{
    if (!strstr(err, a) || (b && !strstr(err, b)))
        test_fail(file, line, "error '%s' lacks '%s'%s%s", err, a, b ? " or " : "", b ? b : "");
}
#define ERR_HAS(err, a, b) tf_err_has(__FILE__, __LINE__, err, a, b)

static void tf_fifo(const char *path)
{
    if (mkfifo(path, 0644) != 0)
        test_fail(__FILE__, __LINE__, "mkfifo %s: %s", path, strerror(errno));
}

static void test_open_regular(void)
{
    alarm(20);
    char err[VLQ_ERRLEN];
    int fd = -1;
    struct stat st;
    CHECK_EQ(util_write_file("f", "abc", 3, err), 0);
    CHECK_EQ(util_open_regular("f", 0, &fd, &st, err), 0);
    CHECK(fd >= 0 && st.st_size == 3);
    CHECK_EQ(fcntl(fd, F_GETFL) & O_NONBLOCK, 0); /* cleared for the caller */
    close(fd);
    tf_fifo("fifo");
    CHECK_EQ(util_open_regular("fifo", 0, &fd, NULL, err), VLQ_EINPUT);
    CHECK_STR(err, "fifo: not a regular file (a FIFO)");
    CHECK_EQ(fd, -1);
    mkdir("dir", 0755);
    CHECK_EQ(util_open_regular("dir", 0, &fd, NULL, err), VLQ_EINPUT);
    CHECK_STR(err, "dir: not a regular file (a directory)");
    CHECK_EQ(util_open_regular("/dev/null", 0, &fd, NULL, err), VLQ_EINPUT);
    CHECK_STR(err, "/dev/null: not a regular file (a character device)");
    CHECK_EQ(util_open_regular("absent", 0, &fd, NULL, err), VLQ_EINPUT);
    CHECK_STR(err, "absent: No such file or directory");
    CHECK_EQ(symlink("loop", "loop"), 0);
    CHECK_EQ(util_open_regular("loop", 0, &fd, NULL, err), VLQ_EINPUT);
    ERR_HAS(err, "loop: symlink loop", NULL);
    /* a symlink to a FIFO is the FIFO */
    CHECK_EQ(symlink("fifo", "to-fifo"), 0);
    CHECK_EQ(util_open_regular("to-fifo", 0, &fd, NULL, err), VLQ_EINPUT);
    CHECK_STR(err, "to-fifo: not a regular file (a FIFO)");
    /* the wrappers: whole-file read, stdio, SHA-256 */
    char *data = NULL, hex[65];
    size_t len;
    FILE *f = NULL;
    CHECK_EQ(util_read_file("fifo", 0, &data, &len, err), VLQ_EINPUT);
    CHECK(data == NULL);
    CHECK_EQ(util_fopen_regular("fifo", &f, NULL, err), VLQ_EINPUT);
    CHECK(f == NULL);
    CHECK_EQ(util_sha256_file("fifo", hex, err), VLQ_EINPUT);
    CHECK_STR(err, "fifo: not a regular file (a FIFO)");
    CHECK_EQ(util_sha256_file("dir", hex, err), VLQ_EINPUT);
}

/* Every product reader, given a FIFO: a clear refusal, never a wait. */
static void test_readers_fifo(void)
{
    alarm(30);
    char err[VLQ_ERRLEN];
    tf_fifo("in.png");
    tf_fifo("in.pdf");
    tf_fifo("in.mp4");
    tf_fifo("model.vlq");
    tf_fifo("tokenizer.json");
    tf_fifo("vlq.conf");
    tf_fifo("x.safetensors");
    MediaInfo info;
    CHECK_EQ(media_kind("in.png"), MEDIA_IMAGE); /* decided by the name: nothing read */
    CHECK_EQ(media_probe("in.png", NULL, &info, err), VLQ_EINPUT);
    CHECK_STR(err, "in.png: not a regular file (a FIFO)");
    CHECK_EQ(media_probe("in.pdf", NULL, &info, err), VLQ_EINPUT);
    CHECK_STR(err, "in.pdf: not a regular file (a FIFO)");
    CHECK_EQ(media_probe("in.mp4", NULL, &info, err), VLQ_EINPUT);
    CHECK_STR(err, "in.mp4: not a regular file (a FIFO)");
    Model *m = NULL;
    CHECK_EQ(model_open("model.vlq", &m, err), VLQ_EMODEL);
    CHECK_STR(err, "model.vlq: not a regular file (a FIFO)");
    Tok *t = NULL;
    CHECK(tok_load_file("tokenizer.json", &t, err) != 0);
    ERR_HAS(err, "tokenizer.json: not a regular file (a FIFO)", NULL);
    Cfg *c = NULL;
    CHECK_EQ(cfg_load("vlq.conf", &c, err), VLQ_EINPUT);
    ERR_HAS(err, "vlq.conf: not a regular file", NULL);
    cfg_free(c);
    SafeSet *s = NULL;
    CHECK_EQ(safetensors_open_file("x.safetensors", &s, err), VLQ_EMODEL);
    CHECK_STR(err, "x.safetensors: not a regular file (a FIFO)");
    /* a directory and a device where a picture is expected */
    mkdir("pic.png", 0755);
    CHECK_EQ(media_probe("pic.png", NULL, &info, err), VLQ_EINPUT);
    CHECK_STR(err, "pic.png: not a regular file (a directory)");
    CHECK_EQ(media_probe("/dev/zero", NULL, &info, err), VLQ_EINPUT);
    CHECK_STR(err, "/dev/zero: not a regular file (a character device)");
}

/* The media readers still read real files through their descriptor (FFmpeg's
 * AVIOContext, poppler's fd): one image, one PDF, one video. */
static void test_readers_by_fd(void)
{
    char path[4096], err[VLQ_ERRLEN];
    MediaInfo info;
    snprintf(path, sizeof path, "%s/tests/media/cmyk.jpg", test_root());
    CHECK_EQ(media_probe(path, NULL, &info, err), 0);
    CHECK(info.width > 0 && info.height > 0);
    /* a name with a '%' is not an image2 pattern when FFmpeg reads our descriptor */
    char *data;
    size_t len;
    CHECK_EQ(util_read_file(path, 0, &data, &len, err), 0);
    CHECK_EQ(util_write_file("100%d.jpg", data, len, err), 0);
    free(data);
    CHECK_EQ(media_probe("100%d.jpg", NULL, &info, err), 0);
    snprintf(path, sizeof path, "%s/tests/media/pages3.tif", test_root());
    CHECK_EQ(media_probe(path, NULL, &info, err), 0);
    if (test_sh("command -v ffmpeg >/dev/null && ffmpeg -loglevel error -f lavfi -i "
                "testsrc=size=64x48:rate=10 -t 1 -pix_fmt yuv420p v.mp4") == 0) {
        CHECK_EQ(media_probe("v.mp4", NULL, &info, err), 0);
        CHECK(info.width == 64 && info.height == 48);
    } else {
        printf("    no ffmpeg command: the video case is covered by media/videos\n");
    }
}

static void test_atomic_rule(void)
{
    alarm(20);
    char err[VLQ_ERRLEN], *data = NULL;
    size_t len;
    struct stat st;
    /* new file, then replaced, its mode kept */
    CHECK_EQ(util_write_file("out.txt", "one", 3, err), 0);
    chmod("out.txt", 0600);
    CHECK_EQ(util_write_file("out.txt", "two", 3, err), 0);
    CHECK_EQ(stat("out.txt", &st), 0);
    CHECK_EQ(st.st_mode & 0777, 0600);
    CHECK_EQ(util_read_file("out.txt", 0, &data, &len, err), 0);
    CHECK(len == 3 && !memcmp(data, "two", 3));
    free(data);
    /* a symlink: written through to its target, the link kept */
    mkdir("real", 0755);
    CHECK_EQ(util_write_file("real/target.txt", "old", 3, err), 0);
    CHECK_EQ(symlink("real/target.txt", "link.txt"), 0);
    CHECK_EQ(util_write_file("link.txt", "new!", 4, err), 0);
    CHECK_EQ(lstat("link.txt", &st), 0);
    CHECK(S_ISLNK(st.st_mode));
    CHECK_EQ(util_read_file("real/target.txt", 0, &data, &len, err), 0);
    CHECK(len == 4 && !memcmp(data, "new!", 4));
    free(data);
    /* refused, and left as they were: FIFO, directory, device, dangling link, loop */
    tf_fifo("fifo");
    CHECK_EQ(util_write_file("fifo", "x", 1, err), VLQ_EINPUT);
    CHECK_STR(err, "fifo: not a regular file (a FIFO): not replaced");
    CHECK_EQ(lstat("fifo", &st), 0);
    CHECK(S_ISFIFO(st.st_mode));
    CHECK_EQ(symlink("fifo", "to-fifo"), 0);
    CHECK_EQ(util_write_file("to-fifo", "x", 1, err), VLQ_EINPUT);
    ERR_HAS(err, "to-fifo: not a regular file (a FIFO)", NULL);
    CHECK_EQ(util_write_file("real", "x", 1, err), VLQ_EINPUT);
    CHECK_STR(err, "real: is a directory: not replaced by a file");
    CHECK_EQ(util_write_file("/dev/null", "x", 1, err), VLQ_EINPUT);
    ERR_HAS(err, "/dev/null: not a regular file (a character device)", NULL);
    CHECK_EQ(symlink("nowhere", "dangling"), 0);
    CHECK_EQ(util_write_file("dangling", "x", 1, err), VLQ_EINPUT);
    ERR_HAS(err, "dangling: a symlink to a missing file", NULL);
    CHECK_EQ(lstat("nowhere", &st), -1);
    CHECK_EQ(symlink("loop", "loop"), 0);
    CHECK_EQ(util_write_file("loop", "x", 1, err), VLQ_EINPUT);
    ERR_HAS(err, "loop: symlink loop", NULL);
    /* no clobber: an existing file stays */
    CHECK_EQ(util_write_file_ex("out.txt", UTIL_ATOMIC_NO_CLOBBER, "3", 1, err), VLQ_EINPUT);
    CHECK_STR(err, "out.txt: exists (use --force to replace it)");
    CHECK_EQ(util_write_file_ex("fresh.txt", UTIL_ATOMIC_NO_CLOBBER, "3", 1, err), 0);
    /* a missing folder; nothing left behind anywhere */
    CHECK_EQ(util_write_file("nodir/x.txt", "x", 1, err), VLQ_EINPUT);
    ERR_HAS(err, "nodir: no such directory", NULL);
    CHECK_EQ(test_sh("ls -a | grep -q '\\.tmp\\.' || ls -a real | grep -q '\\.tmp\\.'"), 1);
    /* an abort leaves nothing */
    UtilAtomic a;
    CHECK_EQ(util_atomic_open("aborted.txt", 0, &a, err), 0);
    fputs("partial", a.f);
    util_atomic_abort(&a);
    CHECK_EQ(lstat("aborted.txt", &st), -1);
    util_atomic_abort(&a); /* twice is fine */
}

static void test_atomic_readonly(void)
{
    char err[VLQ_ERRLEN];
    mkdir("ro", 0755);
    CHECK_EQ(util_write_file("ro/keep.txt", "k", 1, err), 0);
    chmod("ro", 0555);
    if (geteuid() == 0) {
        /* root writes anywhere: be nobody for the rest of this (forked) test */
        chmod(test_tmpdir(), 0755);
        if (setgid(65534) != 0 || setuid(65534) != 0)
            test_skip("running as root and cannot become nobody: %s", strerror(errno));
    }
    CHECK_EQ(util_write_file("ro/new.txt", "x", 1, err), VLQ_EINPUT);
    CHECK_STR(err, "ro: read-only directory (no permission to create files): cannot write "
                   "ro/new.txt");
    CHECK_EQ(util_write_file("ro/keep.txt", "x", 1, err), VLQ_EINPUT);
    ERR_HAS(err, "ro: read-only directory", NULL);
}

static void test_numel(void)
{
    int64_t n = 0;
    const int64_t ok[] = {64, 128, 3};
    CHECK_EQ(util_numel(ok, 3, (int64_t)1 << 40, &n), 0);
    CHECK_EQ(n, 64 * 128 * 3);
    const int64_t wrap[] = {(int64_t)1 << 40, (int64_t)1 << 40}; /* 2^80: wraps int64 */
    CHECK_EQ(util_numel(wrap, 2, INT64_MAX, &n), -1);
    const int64_t wrap0[] = {(int64_t)1 << 32, (int64_t)1 << 32}; /* wraps to exactly 0 */
    CHECK_EQ(util_numel(wrap0, 2, INT64_MAX, &n), -1);
    const int64_t big[] = {(int64_t)1 << 30, (int64_t)1 << 11};
    CHECK_EQ(util_numel(big, 2, (int64_t)1 << 40, &n), -1);
    const int64_t neg[] = {4, -1};
    CHECK_EQ(util_numel(neg, 2, INT64_MAX, &n), -1);
    CHECK_EQ(util_numel(NULL, 0, 1, &n), 0);
    CHECK_EQ(n, 1);
}

/* A safetensors file whose one tensor has the given shape (JSON) and 8 data bytes. */
static void tf_safetensors(const char *path, const char *shape)
{
    char hdr[512];
    int n = snprintf(hdr, sizeof hdr,
                     "{\"w\":{\"dtype\":\"F32\",\"shape\":%s,\"data_offsets\":[0,8]}}", shape);
    uint64_t n64 = (uint64_t)n;
    FILE *f = fopen(path, "wb");
    fwrite(&n64, 8, 1, f);
    fwrite(hdr, 1, (size_t)n, f);
    fwrite("\0\0\0\0\0\0\0\0", 1, 8, f);
    fclose(f);
}

static void test_safetensors_overflow(void)
{
    char err[VLQ_ERRLEN];
    SafeSet *s = NULL;
    /* 2^32 * 2^32 wraps to 0 elements: 0 bytes would then "match" nothing, and a
     * product that wrapped to 2 would match these 8 bytes */
    tf_safetensors("wrap.safetensors", "[4294967296,4294967296]");
    CHECK_EQ(safetensors_open_file("wrap.safetensors", &s, err), VLQ_EMODEL);
    CHECK_STR(err, "wrap.safetensors: tensor w: shape [4294967296, 4294967296] overflows: more "
                   "than 2^40 elements");
    tf_safetensors("wrap2.safetensors", "[9223372036854775807,2]");
    CHECK_EQ(safetensors_open_file("wrap2.safetensors", &s, err), VLQ_EMODEL);
    ERR_HAS(err, "tensor w: shape [9223372036854775807, 2] overflows", NULL);
    tf_safetensors("neg.safetensors", "[2,-1]");
    CHECK_EQ(safetensors_open_file("neg.safetensors", &s, err), VLQ_EMODEL);
    ERR_HAS(err, "tensor w: bad shape", NULL);
    tf_safetensors("ok.safetensors", "[2,1]");
    CHECK_EQ(safetensors_open_file("ok.safetensors", &s, err), 0);
    safetensors_close(s);
}

/* A converted tiny model whose directory entry for one tensor claims four dimensions of
 * 2^30 (each allowed alone, 2^120 together): refused with the shape, never wrapped. */
static void test_model_shape_overflow(void)
{
    char dir[4096], tok[4096], err[VLQ_ERRLEN];
    snprintf(dir, sizeof dir, "%s/tests/golden/tiny", test_root());
    snprintf(tok, sizeof tok, "%s/tests/data/qwen3-tokenizer/tokenizer.json", test_root());
    ConvertOptions o = {.quant = CONVERT_QUANT_Q4, .tokenizer_path = tok};
    char *data = NULL;
    size_t len = 0;
    if (convert_run(dir, "m.vlq", &o, err) || util_read_file("m.vlq", 0, &data, &len, err)) {
        test_fail(__FILE__, __LINE__, "%s", err);
        return;
    }
    uint64_t meta_off, meta_size;
    memcpy(&meta_off, data + 24, 8);
    memcpy(&meta_size, data + 32, 8);
    json_t *meta = json_loadb(data + meta_off, (size_t)meta_size, 0, NULL);
    json_t *t0 = json_array_get(json_object_get(meta, "tensors"), 0);
    CHECK(t0 != NULL);
    json_object_set_new(t0, "shape", json_pack("[I,I,I,I]", (json_int_t)1 << 30,
                                               (json_int_t)1 << 30, (json_int_t)1 << 30,
                                               (json_int_t)1 << 30));
    char *text = json_dumps(meta, JSON_COMPACT);
    json_decref(meta);
    size_t tlen = strlen(text);
    uint64_t fsize = meta_off + tlen, msize = tlen;
    uint32_t crc = (uint32_t)crc32(0L, (const Bytef *)text, (uInt)tlen);
    memcpy(data + 16, &fsize, 8);
    memcpy(data + 32, &msize, 8);
    memcpy(data + 40, &crc, 4);
    FILE *f = fopen("big.vlq", "wb");
    fwrite(data, 1, (size_t)meta_off, f);
    fwrite(text, 1, tlen, f);
    fclose(f);
    free(text);
    free(data);
    Model *m = NULL;
    CHECK_EQ(model_open_ex("big.vlq", MODEL_OPEN_NO_VERIFY, &m, err), VLQ_EMODEL);
    ERR_HAS(err, "shape [1073741824, 1073741824, 1073741824, 1073741824] overflows", NULL);
    model_close(m);
}

TEST_GROUP(files, {"open_regular", test_open_regular}, {"readers_fifo", test_readers_fifo},
           {"readers_by_fd", test_readers_by_fd}, {"atomic_rule", test_atomic_rule},
           {"atomic_readonly", test_atomic_readonly}, {"numel", test_numel},
           {"safetensors_overflow", test_safetensors_overflow},
           {"model_shape_overflow", test_model_shape_overflow})
