/* backend_open: backend instances and the plugin loader (see backend.h).
 *
 * An instance is a heap copy of a table (built in, or returned by a plugin's
 * vlq_backend_entry) with its own ctx, so two instances of one backend (two devices,
 * say) never share state, and closing one unloads its plugin (dlopen counts
 * references). The copy sits first in BackendInstance, so backend_close recovers the
 * instance from the Backend pointer the caller holds.
 *
 * Plugins are found by name only, never by a path from the user, and the name is
 * restricted to [a-z0-9_-] so it cannot leave the plugin directory. RTLD_LOCAL keeps a
 * plugin's symbols (its copies of the host helpers) out of the global namespace. */
#define _GNU_SOURCE
#include "backend.h"
#include "backend_int.h"
#include "err.h"
#include "util.h"

#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    Backend b;  /* the instance's table: first, see above */
    void *dl;   /* the plugin's dlopen handle, or NULL for a built-in backend */
} BackendInstance;

/* 1 if name is a plausible backend name (letters, digits, '_', '-'; 1..64 chars). */
static int backend_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* The directory of the running executable into dir[len]; 0, or -1 if unknown. */
static int backend_exe_dir(char *dir, size_t len)
{
    char path[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n <= 0 || n >= (ssize_t)sizeof path - 1) /* a full buffer may be a cut path */
        return -1;
    path[n] = 0;
    char *slash = strrchr(path, '/');
    if (!slash)
        return -1;
    *slash = 0;
    snprintf(dir, len, "%s", path[0] ? path : "/");
    return 0;
}

/* The plugin directories in search order (backend.h) into dirs; returns how many. */
static int backend_plugin_dirs(char dirs[2][PATH_MAX])
{
    int nd = 0;
    const char *env = getenv("VLQ_BACKEND_DIR");
    if (env && *env) {
        snprintf(dirs[nd++], PATH_MAX, "%s", env);
    } else {
        if (!backend_exe_dir(dirs[nd], PATH_MAX))
            nd++;
        snprintf(dirs[nd++], PATH_MAX, "%s", BACKEND_PLUGIN_DIR);
    }
    return nd;
}

/* Find vlq-backend-<name>.so in the search order (backend.h) and write its path into
 * path[len]; 0, or VLQ_EINPUT naming every place looked at. */
static int backend_find_plugin(const char *name, char *path, size_t len, char *err)
{
    char dirs[2][PATH_MAX];
    int nd = backend_plugin_dirs(dirs);
    const char *env = getenv("VLQ_BACKEND_DIR");
    if (env && strlen(env) >= PATH_MAX)
        return err_set(err, VLQ_EINPUT, "$VLQ_BACKEND_DIR: longer than %d bytes", PATH_MAX - 1);
    char tried[2 * PATH_MAX + 16] = "";
    for (int i = 0; i < nd; i++) {
        if (snprintf(path, len, "%s/vlq-backend-%s.so", dirs[i], name) >= (int)len)
            return err_set(err, VLQ_EINPUT, "backend '%s': plugin path in %s too long", name,
                           dirs[i]);
        struct stat sb;
        if (!stat(path, &sb) && S_ISREG(sb.st_mode))
            return 0;
        snprintf(tried + strlen(tried), sizeof tried - strlen(tried), "%s%s", i ? ", " : "",
                 dirs[i]);
    }
    return err_set(err, VLQ_EINPUT,
                   "backend '%s': not built in (%s) and no vlq-backend-%s.so in %s%s", name,
                   backend_names(), name, tried, env && *env ? " ($VLQ_BACKEND_DIR)" : "");
}

/* Load the plugin for name: its table in *table and its handle in *dl. 0, or an error
 * naming the path and the reason. */
static int backend_load_plugin(const char *name, const Backend **table, void **dl, char *err)
{
    char path[PATH_MAX + 64];
    int rc = backend_find_plugin(name, path, sizeof path, err);
    if (rc)
        return rc;
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return err_set(err, VLQ_ENOTSUP, "%s: cannot load: %s", path, dlerror());
    dlerror();
    void *sym = dlsym(h, BACKEND_ENTRY_SYMBOL);
    if (!sym) {
        dlclose(h);
        return err_set(err, VLQ_ENOTSUP, "%s: not a vlq backend (no %s symbol)", path,
                       BACKEND_ENTRY_SYMBOL);
    }
    BackendEntry entry;
    memcpy(&entry, &sym, sizeof entry); /* ISO C has no object-to-function cast */
    const Backend *t = entry(BACKEND_ABI_VERSION);
    if (!t) {
        dlclose(h);
        return err_set(err, VLQ_ENOTSUP,
                       "%s: refuses backend ABI version %d (built for another vlq: rebuild it)",
                       path, BACKEND_ABI_VERSION);
    }
    if (t->abi_version != BACKEND_ABI_VERSION) {
        int v = t->abi_version;
        dlclose(h);
        return err_set(err, VLQ_ENOTSUP,
                       "%s: built for backend ABI version %d, this vlq needs %d (rebuild it)",
                       path, v, BACKEND_ABI_VERSION);
    }
    *table = t;
    *dl = h;
    return 0;
}

/* Open an instance (see backend.h). */
int backend_open(const char *name, const BackendOpenOptions *o, Backend **out, char *err)
{
    if (name && !strcmp(name, BACKEND_AUTO))
        return backend_open_auto(name, o, out, NULL, 0, err);
    *out = NULL;
    if (!name || !backend_name_ok(name))
        return err_set(err, VLQ_EINPUT, "backend '%s': not a backend name (%s)",
                       name ? name : "(null)", backend_names());
    static const BackendOpenOptions defaults = {0};
    if (!o)
        o = &defaults;
    const Backend *table = backend_get(name);
    void *dl = NULL;
    if (!table) {
        int rc = backend_load_plugin(name, &table, &dl, err);
        if (rc)
            return rc;
    }
    BackendInstance *in = calloc(1, sizeof *in);
    if (!in) {
        if (dl)
            dlclose(dl);
        return err_set(err, VLQ_ENOMEM, "backend '%s': out of memory", name);
    }
    in->b = *table;
    in->b.ctx = NULL;
    in->dl = dl;
    if (in->b.open) {
        int rc = in->b.open(&in->b, o, err);
        if (rc) {
            err_prefix(err, "backend '%s'", name);
            if (dl)
                dlclose(dl);
            free(in);
            return rc;
        }
    }
    *out = &in->b;
    return 0;
}

/* "auto": cuda when it opens, else cpu; the line says which and why (the cuda open's
 * error: no plugin, no driver, no device). */
int backend_open_auto(const char *name, const BackendOpenOptions *o, Backend **out, char *why,
                      size_t len, char *err)
{
    if (why && len)
        why[0] = 0;
    if (!name || strcmp(name, BACKEND_AUTO))
        return backend_open(name, o, out, err);
    char cuda_err[VLQ_ERRLEN] = "";
    int rc = backend_open("cuda", o, out, cuda_err);
    if (!rc) {
        if (why && len) {
            char desc[200] = "";
            (*out)->describe(*out, desc, sizeof desc);
            snprintf(why, len, "backend auto: cuda, a device is usable (%s)", desc);
        }
        return 0;
    }
    rc = backend_open("cpu", o, out, err);
    if (!rc && why && len)
        snprintf(why, len, "backend auto: cpu, as cuda is not usable (%s)", cuda_err);
    return rc;
}

int backend_is_host(const char *name)
{
    return name && (!strcmp(name, "cpu") || !strcmp(name, "ref"));
}

/* Close an instance: the backend's close, then its plugin. NULL-safe. */
void backend_close(Backend *b)
{
    if (!b)
        return;
    BackendInstance *in = (BackendInstance *)b;
    if (b->close)
        b->close(b);
    if (in->dl)
        dlclose(in->dl);
    free(in);
}

/* The names of the plugins in the search directories (vlq-backend-<name>.so with a
 * valid name), space-separated, each once (a name in an earlier directory shadows the
 * later ones), in a new string the caller frees ("" when none). Whether each loads is
 * backend_open's to say. Cannot fail. */
char *backend_plugin_list(void)
{
    char dirs[2][PATH_MAX];
    int nd = backend_plugin_dirs(dirs);
    Buf list = {0}; /* " a b c " while building, so " name " finds whole names */
    buf_puts(&list, " ");
    for (int i = 0; i < nd; i++) {
        DIR *d = opendir(dirs[i]);
        if (!d)
            continue;
        struct dirent *de;
        while ((de = readdir(d))) {
            size_t n = strlen(de->d_name);
            if (n <= 15 || n > 15 + 64 || strncmp(de->d_name, "vlq-backend-", 12) ||
                strcmp(de->d_name + n - 3, ".so"))
                continue;
            char name[80];
            snprintf(name, sizeof name, " %.*s ", (int)(n - 15), de->d_name + 12);
            name[strlen(name) - 1] = 0; /* the name alone, after its leading space */
            if (!backend_name_ok(name + 1) || backend_get(name + 1))
                continue;
            strcat(name, " ");
            if (!strstr(list.data, name))
                buf_puts(&list, name + 1);
        }
        closedir(d);
    }
    char *all = buf_take(&list);
    size_t len = strlen(all);
    if (len)
        all[len - 1] = 0; /* the trailing space */
    memmove(all, all + 1, len); /* the leading one */
    return all;
}
