/* safetensors: Hugging Face safetensors reading (mmap) and writing (see safetensors.h).
 *
 * File layout: u64 little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
 * then the data; offsets are relative to the byte after the header. A sharded
 * checkpoint adds model.safetensors.index.json, {"weight_map": {"name": "shard file"}};
 * every shard the map names is opened, and a tensor the map assigns to one shard must
 * be found in that shard. */
#define _GNU_SOURCE
#include "safetensors.h"

#include "err.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SAFETENSORS_MAX_HEADER (100u << 20)
#define SAFETENSORS_MAX_NUMEL ((int64_t)1 << 40) /* 4 TiB of f32: no real tensor */

typedef struct {
    char *path;
    const unsigned char *map;
    size_t len;
} SafeShard;

struct SafeSet {
    SafeShard *shards;
    int n_shards;
    SafeTensor *tensors;
    int n_tensors;
    int cap_tensors;
};

static size_t safetensors_elsize(QuantType t) { return t == QUANT_F32 ? 4 : 2; }

const char *safetensors_dtype_name(QuantType t)
{
    switch (t) {
    case QUANT_F32: return "F32";
    case QUANT_F16: return "F16";
    case QUANT_BF16: return "BF16";
    default: return "?";
    }
}

static int safetensors_parse_dtype(const char *s, QuantType *t)
{
    if (!strcmp(s, "F32"))
        *t = QUANT_F32;
    else if (!strcmp(s, "F16"))
        *t = QUANT_F16;
    else if (!strcmp(s, "BF16"))
        *t = QUANT_BF16;
    else
        return -1;
    return 0;
}

static int safetensors_map(const char *path, SafeShard *sh, char *err)
{
    int fd;
    struct stat st;
    int rc = util_open_regular(path, 0, &fd, &st, err);
    if (rc) /* missing, unreadable or not a regular file: the checkpoint is wrong */
        return rc == VLQ_EINPUT ? VLQ_EMODEL : rc;
    if (st.st_size < 8) {
        close(fd);
        return err_set(err, VLQ_EMODEL, "%s: truncated (%lld bytes)", path,
                       (long long)st.st_size);
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED)
        return err_set(err, VLQ_EIO, "%s: mmap: %s", path, strerror(e));
    sh->path = xstrdup(path);
    sh->map = map;
    sh->len = (size_t)st.st_size;
    return 0;
}

static SafeTensor *safetensors_add(SafeSet *s)
{
    if (s->n_tensors == s->cap_tensors) {
        s->cap_tensors = s->cap_tensors ? 2 * s->cap_tensors : 256;
        s->tensors = xrealloc(s->tensors, (size_t)s->cap_tensors * sizeof *s->tensors);
    }
    SafeTensor *t = &s->tensors[s->n_tensors++];
    memset(t, 0, sizeof *t);
    return t;
}

/* Parse one tensor entry of a shard's header and check its range against the file. */
static int safetensors_entry(SafeSet *s, const SafeShard *sh, size_t data_start, const char *name,
                             json_t *e, char *err)
{
    json_t *dt = json_object_get(e, "dtype"), *shape = json_object_get(e, "shape"),
           *offs = json_object_get(e, "data_offsets");
    if (!json_is_string(dt) || !json_is_array(shape) || !json_is_array(offs) ||
        json_array_size(offs) != 2 || json_array_size(shape) > SAFETENSORS_MAX_DIMS)
        return err_set(err, VLQ_EMODEL, "%s: tensor %s: bad header entry", sh->path, name);
    if (safetensors_find(s, name))
        return err_set(err, VLQ_EMODEL, "%s: tensor %s listed twice", sh->path, name);
    QuantType type;
    if (safetensors_parse_dtype(json_string_value(dt), &type))
        return err_set(err, VLQ_EMODEL, "%s: tensor %s: unsupported dtype %s (F32, F16, BF16)",
                       sh->path, name, json_string_value(dt));
    SafeTensor *t = safetensors_add(s);
    t->name = xstrdup(name);
    t->dtype = type;
    t->file = sh->path;
    t->ndim = (int)json_array_size(shape);
    for (int d = 0; d < t->ndim; d++) {
        json_t *v = json_array_get(shape, (size_t)d);
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return err_set(err, VLQ_EMODEL, "%s: tensor %s: bad shape (dimension %d is not a "
                           "count)", sh->path, name, d);
        t->shape[d] = json_integer_value(v);
    }
    if (util_numel(t->shape, t->ndim, SAFETENSORS_MAX_NUMEL, &t->numel)) {
        char dims[160] = "";
        for (int d = 0, o = 0; d < t->ndim && o < (int)sizeof dims; d++)
            o += snprintf(dims + o, sizeof dims - (size_t)o, "%s%lld", d ? ", " : "",
                          (long long)t->shape[d]);
        return err_set(err, VLQ_EMODEL, "%s: tensor %s: shape [%s] overflows: more than 2^40 "
                       "elements", sh->path, name, dims);
    }
    json_t *b = json_array_get(offs, 0), *en = json_array_get(offs, 1);
    if (!json_is_integer(b) || !json_is_integer(en))
        return err_set(err, VLQ_EMODEL, "%s: tensor %s: bad data_offsets", sh->path, name);
    json_int_t begin = json_integer_value(b), end = json_integer_value(en);
    size_t avail = sh->len - data_start;
    if (begin < 0 || end < begin || (uint64_t)end > avail)
        return err_set(err, VLQ_EMODEL,
                       "%s: tensor %s: data [%lld, %lld) outside the file (%zu data bytes): "
                       "truncated?", sh->path, name, (long long)begin, (long long)end, avail);
    if ((uint64_t)(end - begin) != (uint64_t)t->numel * safetensors_elsize(type))
        return err_set(err, VLQ_EMODEL, "%s: tensor %s: %lld bytes for %lld %s elements",
                       sh->path, name, (long long)(end - begin), (long long)t->numel,
                       safetensors_dtype_name(type));
    t->data = sh->map + data_start + begin;
    t->nbytes = (size_t)(end - begin);
    return 0;
}

static int safetensors_parse_shard(SafeSet *s, const SafeShard *sh, char *err)
{
    uint64_t n;
    memcpy(&n, sh->map, 8);
    if (n > SAFETENSORS_MAX_HEADER || n > sh->len - 8)
        return err_set(err, VLQ_EMODEL, "%s: header of %llu bytes in a file of %zu: "
                       "not safetensors or truncated", sh->path, (unsigned long long)n, sh->len);
    json_error_t je;
    json_t *root = json_loadb((const char *)sh->map + 8, (size_t)n, 0, &je);
    if (!json_is_object(root)) {
        json_decref(root);
        return err_set(err, VLQ_EMODEL, "%s: header is not a JSON object: %s", sh->path, je.text);
    }
    const char *name;
    json_t *e;
    int rc = 0;
    json_object_foreach(root, name, e) {
        if (!strcmp(name, "__metadata__"))
            continue;
        if ((rc = safetensors_entry(s, sh, 8 + (size_t)n, name, e, err)))
            break;
    }
    json_decref(root);
    return rc;
}

static SafeShard *safetensors_new_shard(SafeSet *s)
{
    s->shards = xrealloc(s->shards, (size_t)(s->n_shards + 1) * sizeof *s->shards);
    SafeShard *sh = &s->shards[s->n_shards];
    memset(sh, 0, sizeof *sh);
    return sh;
}

int safetensors_open_file(const char *path, SafeSet **out, char *err)
{
    *out = NULL;
    SafeSet *s = xcalloc(1, sizeof *s);
    SafeShard *sh = safetensors_new_shard(s);
    int rc = safetensors_map(path, sh, err);
    if (!rc) {
        s->n_shards++;
        rc = safetensors_parse_shard(s, sh, err);
    }
    if (rc) {
        safetensors_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* Open every shard the index names, then check each mapped name is where it says. */
static int safetensors_open_index(SafeSet *s, const char *dir, const char *index, char *err)
{
    json_error_t je;
    char *text = NULL;
    size_t len = 0;
    int rc = util_read_file(index, SAFETENSORS_MAX_HEADER, &text, &len, err);
    if (rc)
        return rc == VLQ_EINPUT ? VLQ_EMODEL : rc;
    json_t *root = json_loadb(text, len, 0, &je);
    free(text);
    json_t *map = json_object_get(root, "weight_map");
    if (!json_is_object(map)) {
        json_decref(root);
        return err_set(err, VLQ_EMODEL, "%s: no weight_map object (%s)", index,
                       root ? "bad index" : je.text);
    }
    const char *name;
    json_t *v;
    json_object_foreach(map, name, v) {
        const char *file = json_string_value(v);
        if (!file || strchr(file, '/')) {
            rc = err_set(err, VLQ_EMODEL, "%s: %s: bad shard name", index, name);
            break;
        }
        char *path = xasprintf("%s/%s", dir, file);
        int seen = 0;
        for (int i = 0; i < s->n_shards && !seen; i++)
            seen = !strcmp(s->shards[i].path, path);
        if (!seen) {
            SafeShard *sh = safetensors_new_shard(s);
            rc = safetensors_map(path, sh, err);
            if (rc == VLQ_EMODEL && access(path, F_OK))
                err_prefix(err, "shard listed in %s is missing", index);
            if (!rc) {
                s->n_shards++;
                rc = safetensors_parse_shard(s, sh, err);
            }
        }
        if (!rc) {
            const SafeTensor *t = safetensors_find(s, name);
            if (!t || strcmp(t->file, path))
                rc = err_set(err, VLQ_EMODEL, "%s: tensor %s is not in %s as the index says",
                             index, name, path);
        }
        free(path);
        if (rc)
            break;
    }
    json_decref(root);
    return rc;
}

int safetensors_open_dir(const char *dir, SafeSet **out, char *err)
{
    *out = NULL;
    char *index = xasprintf("%s/model.safetensors.index.json", dir);
    int rc;
    if (access(index, F_OK) == 0) {
        SafeSet *s = xcalloc(1, sizeof *s);
        rc = safetensors_open_index(s, dir, index, err);
        if (rc)
            safetensors_close(s);
        else
            *out = s;
    } else {
        char *one = xasprintf("%s/model.safetensors", dir);
        rc = safetensors_open_file(one, out, err);
        free(one);
    }
    free(index);
    return rc;
}

void safetensors_close(SafeSet *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n_tensors; i++)
        free((char *)s->tensors[i].name);
    free(s->tensors);
    for (int i = 0; i < s->n_shards; i++) {
        munmap((void *)s->shards[i].map, s->shards[i].len);
        free(s->shards[i].path);
    }
    free(s->shards);
    free(s);
}

const SafeTensor *safetensors_find(const SafeSet *s, const char *name)
{
    for (int i = 0; i < s->n_tensors; i++)
        if (!strcmp(s->tensors[i].name, name))
            return &s->tensors[i];
    return NULL;
}

int safetensors_count(const SafeSet *s) { return s->n_tensors; }
const SafeTensor *safetensors_at(const SafeSet *s, int i) { return &s->tensors[i]; }

/* ---- writing ---- */

static int safetensors_cmp_name(const void *a, const void *b)
{
    const SafeWriteTensor *x = *(const SafeWriteTensor *const *)a;
    const SafeWriteTensor *y = *(const SafeWriteTensor *const *)b;
    return strcmp(x->name, y->name);
}

int safetensors_write_ex(const char *path, int flags, const SafeWriteTensor *t, int n,
                         SafeFillFn fill, void *ctx, char *err)
{
    /* data in name order (what HF writes too), header padded with spaces to 8 bytes */
    const SafeWriteTensor **order = xmalloc((size_t)(n ? n : 1) * sizeof *order);
    for (int i = 0; i < n; i++)
        order[i] = &t[i];
    qsort(order, (size_t)n, sizeof *order, safetensors_cmp_name);
    json_t *root = json_object();
    json_object_set_new(root, "__metadata__", json_pack("{s:s}", "format", "pt"));
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const SafeWriteTensor *w = order[i];
        json_t *shape = json_array();
        int64_t numel = 1;
        for (int d = 0; d < w->ndim; d++) {
            json_array_append_new(shape, json_integer(w->shape[d]));
            numel *= w->shape[d];
        }
        uint64_t nb = (uint64_t)numel * safetensors_elsize(w->dtype);
        json_object_set_new(root, w->name,
                            json_pack("{s:s,s:o,s:[I,I]}", "dtype",
                                      safetensors_dtype_name(w->dtype), "shape", shape,
                                      "data_offsets", (json_int_t)off, (json_int_t)(off + nb)));
        off += nb;
    }
    char *hdr = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    size_t hlen = strlen(hdr), padded = (hlen + 7) / 8 * 8;
    UtilAtomic a;
    int rc = util_atomic_open(path, flags, &a, err);
    if (rc)
        goto out;
    FILE *f = a.f;
    uint64_t n64 = padded;
    int ok = fwrite(&n64, 8, 1, f) == 1 && fwrite(hdr, 1, hlen, f) == hlen;
    for (size_t i = hlen; ok && i < padded; i++)
        ok = fputc(' ', f) != EOF;
    for (int i = 0; ok && !rc && i < n; i++) {
        int64_t numel = 1;
        for (int d = 0; d < order[i]->ndim; d++)
            numel *= order[i]->shape[d];
        size_t nb = (size_t)numel * safetensors_elsize(order[i]->dtype);
        const void *data = order[i]->data;
        void *scratch = NULL;
        if (!data) {
            scratch = malloc(nb ? nb : 1);
            if (!scratch)
                rc = err_set(err, VLQ_ENOMEM, "%s: %zu bytes for %s", path, nb, order[i]->name);
            else
                rc = fill(ctx, (int)(order[i] - t), scratch, err);
            data = scratch;
        }
        if (!rc)
            ok = fwrite(data, 1, nb, f) == nb;
        free(scratch);
    }
    if (!rc && !ok)
        rc = err_set(err, VLQ_EIO, "%s: write failed: %s", path, strerror(errno));
    if (rc)
        util_atomic_abort(&a);
    else
        rc = util_atomic_commit(&a, err);
out:
    free(hdr);
    free(order);
    return rc;
}

int safetensors_write(const char *path, const SafeWriteTensor *t, int n, SafeFillFn fill,
                      void *ctx, char *err)
{
    return safetensors_write_ex(path, 0, t, n, fill, ctx, err);
}
