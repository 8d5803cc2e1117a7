/* cli_doctor: `vlq doctor`, what this machine and configuration give the engine: the CPU
 * features, every backend (built in, and each plugin found where backend_open looks)
 * with its describe() line and its memory, the model file and how it is held in memory,
 * and the memory plan item by item with how many slots of each budget fit.
 *
 * It opens the model as a run does (model_open: text tensors populated and checked), so
 * the residency line is what a run gets. The exit status says whether the configured
 * plan fits: 0 yes (or no model to plan for), 1 no (with what to change) or the model
 * cannot be opened. */
#include "backend.h"
#include "cfg.h"
#include "cli.h"
#include "cpucaps.h"
#include "engine.h"
#include "err.h"
#include "model.h"
#include "util.h"
#include "version.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DOCTOR_MAX_BACKENDS 16

static void doctor_usage(FILE *out)
{
    fprintf(out,
            "usage: vlq doctor [--model PATH] [--backend NAME] [--json]\n\n"
            "What this machine and configuration give the engine: the CPU features, each\n"
            "backend (built in, and the vlq-backend-NAME.so plugins found in $VLQ_BACKEND_DIR,\n"
            "else beside vlq, then " BACKEND_PLUGIN_DIR ") with its kernels and memory, the\n"
            "model file and how it is held in memory, and the memory plan item by item\n"
            "with how many slots of each budget fit.\n\n"
            "  --model PATH   the model (else [model] path in the configuration)\n"
            "  --backend NAME the backend to plan for (else [model] backend; auto: cuda when\n"
            "                 a device is usable, else cpu, and the line says why)\n"
            "  --json         one JSON object instead of text\n\n"
            "exit status: 0 the plan fits (or no model is configured), 1 it does not (the\n"
            "output says what to change) or the model cannot be opened.\n");
}

static double doctor_mib(int64_t b)
{
    return (double)b / (1024.0 * 1024.0);
}

/* One backend's report: opened, or the reason it cannot be. */
typedef struct {
    char name[72];
    int rc;             /* 0, or backend_open's error */
    char text[512];     /* describe(), or the error */
    int mem_rc;         /* meminfo's result */
    int64_t free_bytes, total_bytes;
} DoctorBackend;

static void doctor_backend(const char *name, int threads, DoctorBackend *d)
{
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", name);
    Backend *b = NULL;
    BackendOpenOptions o = {.threads = threads};
    d->rc = backend_open(name, &o, &b, d->text);
    if (d->rc)
        return;
    b->describe(b, d->text, sizeof d->text);
    char err[VLQ_ERRLEN];
    d->mem_rc = b->meminfo(b, &d->free_bytes, &d->total_bytes, err);
    backend_close(b);
}

/* The built-in backends, then every plugin found; returns how many (at most max). */
static int doctor_backends(int threads, DoctorBackend *out, int max)
{
    int n = 0;
    doctor_backend("cpu", threads, &out[n++]);
    doctor_backend("ref", threads, &out[n++]);
    char *list = backend_plugin_list();
    char *save = NULL;
    for (char *name = list ? strtok_r(list, " ", &save) : NULL; name && n < max;
         name = strtok_r(NULL, " ", &save))
        doctor_backend(name, threads, &out[n++]);
    free(list);
    return n;
}

/* The memory plan for the configured engine and what to change when it does not fit. */
typedef struct {
    int rc;                 /* engine_plan's result */
    char err[VLQ_ERRLEN];   /* its error */
    EngineOptions o;        /* the options planned for (from the configuration) */
    EnginePlan p;
    char backend[72];       /* the backend planned for (auto resolved) */
    char describe[512];     /* its describe() line */
    char why[VLQ_ERRLEN + 128]; /* auto: which it picked and why */
    char advice[6][200];    /* when it does not fit: one change per line */
    int n_advice;
} DoctorPlan;

static void doctor_advise(DoctorPlan *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void doctor_advise(DoctorPlan *d, const char *fmt, ...)
{
    if (d->n_advice >= 6)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->advice[d->n_advice++], sizeof d->advice[0], fmt, ap);
    va_end(ap);
}

static void doctor_plan(const Cfg *cfg, const char *backend, const char *model_path,
                        const Model *m, DoctorPlan *d)
{
    memset(d, 0, sizeof *d);
    engine_options_from_cfg(cfg, &d->o);
    d->o.model_path = model_path;
    if (backend)
        d->o.backend = backend;
    /* the backend a run would open (auto resolved), asked for its memory */
    Backend *b = NULL;
    BackendOpenOptions bo = {.threads = d->o.threads};
    d->rc = backend_open_auto(d->o.backend, &bo, &b, d->why, sizeof d->why, d->err);
    if (!d->rc) {
        snprintf(d->backend, sizeof d->backend, "%s", b->name);
        b->describe(b, d->describe, sizeof d->describe);
        d->rc = engine_plan_on(&d->o, m, b, &d->p, d->err);
    }
    backend_close(b);
    if (d->rc || d->p.fits)
        return;
    const EnginePlan *p = &d->p;
    for (int i = 0; i < d->o.n_classes; i++) {
        const EngineClass *c = &d->o.classes[i];
        if (c->n_slots > 0)
            doctor_advise(d, "lower [engine] %s_slots (now %d; each holds %.0f MiB of KV for %d "
                          "tokens; %d fit with no other budget)", c->name, c->n_slots,
                          doctor_mib((int64_t)c->ctx_tok * p->kv_per_token), c->ctx_tok,
                          p->slots_fit[i]);
    }
    if (d->o.kv_f32)
        doctor_advise(d, "set [engine] kv_type = f16 (halves the %.0f MiB KV cache)",
                      doctor_mib(p->kv));
    if (p->vcache > 0)
        doctor_advise(d, "set [engine] vcache_mb = 0 (saves %.0f MiB)", doctor_mib(p->vcache));
    if (p->device && p->offload_layers < model_config(m)->n_layers && d->o.offload_layers >= 0)
        doctor_advise(d, "set [offload] layers = auto (layers the device cannot hold stay in "
                      "pinned host memory, %.0f MiB each at most)", doctor_mib(p->layer_bytes));
    if (p->device && p->host_total > p->host_available)
        doctor_advise(d, "free host memory: its side of the plan (features, cache, offloaded "
                      "layers) is %.0f MiB over MemAvailable",
                      doctor_mib(p->host_total - p->host_available));
    if (d->o.mem_limit > 0)
        doctor_advise(d, "raise [engine] mem_limit_mb (now %lld; the plan needs %.0f MiB)",
                      (long long)(d->o.mem_limit >> 20), doctor_mib(p->total));
    else if (p->device)
        doctor_advise(d, "use a smaller model (vlq convert --quant q4) or a larger device: the "
                      "plan is %.0f MiB over the device's free memory",
                      doctor_mib(p->total - p->available));
    else
        doctor_advise(d, "free memory, or use a smaller model (vlq convert --quant q4): the plan "
                      "is %.0f MiB over MemAvailable", doctor_mib(p->total - p->available));
}

/* One line of the plan: what, MiB, an optional note. */
static void doctor_item(Buf *o, const char *what, int64_t bytes, const char *note)
{
    buf_printf(o, "  %-20s %8.0f MiB%s%s%s\n", what, doctor_mib(bytes), note[0] ? "  (" : "",
               note, note[0] ? ")" : "");
}

static void doctor_total(Buf *o, int64_t total, int64_t available)
{
    if (total <= available)
        buf_printf(o, "  %-20s %8.0f MiB: fits, %.0f MiB to spare\n", "total", doctor_mib(total),
                   doctor_mib(available - total));
    else
        buf_printf(o, "  %-20s %8.0f MiB: DOES NOT FIT, %.0f MiB over\n", "total",
                   doctor_mib(total), doctor_mib(total - available));
}

static void doctor_plan_text(Buf *o, const DoctorPlan *d)
{
    /* auto's choice and reason are on the backends' list already */
    if (d->rc) {
        buf_printf(o, "memory plan: %s\n", d->err);
        return;
    }
    const EnginePlan *p = &d->p;
    const char *from = d->o.mem_limit ? "[engine] mem_limit_mb"
                       : p->device    ? "the device's free memory"
                                      : "MemAvailable";
    if (p->device)
        buf_printf(o, "memory plan (backend %s, device memory; %.0f MiB available, from %s):\n"
                      "  device: %s\n", d->backend, doctor_mib(p->available), from, d->describe);
    else
        buf_printf(o, "memory plan (backend %s; %.0f MiB available, from %s):\n", d->backend,
                   doctor_mib(p->available), from);
    Buf classes = {0};
    for (int i = 0; i < d->o.n_classes; i++)
        if (d->o.classes[i].n_slots > 0)
            buf_printf(&classes, "%s%s %d x %d", classes.len ? ", " : "", d->o.classes[i].name,
                       d->o.classes[i].n_slots, d->o.classes[i].ctx_tok);
    char note[256];
    if (p->device && p->offload_layers)
        snprintf(note, sizeof note, "on the device; %.1f MiB of %d layers offloaded, below",
                 doctor_mib(p->offload_bytes), p->offload_layers);
    else
        snprintf(note, sizeof note, "%s", p->device ? "uploaded at open" : "mapped, populated at open");
    doctor_item(o, "text weights", p->weights_text - p->offload_bytes, note);
    doctor_item(o, "vision weights", p->weights_vision,
                p->device ? "uploaded at open" : "mapped, populated once an image arrives");
    snprintf(note, sizeof note, "%s, %.1f KiB per token; tokens: %s", d->o.kv_f32 ? "f32" : "f16",
             (double)p->kv_per_token / 1024.0, classes.data ? classes.data : "none");
    doctor_item(o, "KV cache", p->kv, note);
    buf_clear(&classes);
    doctor_item(o, "decoder activations", p->activations, "");
    snprintf(note, sizeof note, "%d patches", d->o.max_patches ? d->o.max_patches : 16384);
    doctor_item(o, "vision workspace", p->vision_ws, note);
    if (p->device) {
        doctor_item(o, "kernel workspace", p->workspace, "set aside at open");
        doctor_item(o, "margin", p->margin, "");
        doctor_total(o, p->total, p->available);
        buf_printf(o, "host memory (%.0f MiB available, from MemAvailable):\n",
                   doctor_mib(p->host_available));
        doctor_item(o, "visual features", p->features, "of running requests, until prefilled");
        doctor_item(o, "feature cache", p->vcache, "[engine] vcache_mb");
        /* a decoder step reads each offloaded weight once over the bus, whatever the batch:
         * at PCIe 4.0 x16's ~25 GB/s that is the step's floor */
        snprintf(note, sizeof note, "%d layers, pinned: %.1f MiB over the bus per decoder step, "
                 ">= %.1f ms at 25 GB/s", p->offload_layers, doctor_mib(p->offload_bytes),
                 (double)p->offload_bytes / 25e9 * 1e3);
        doctor_item(o, "offloaded layers", p->offload_bytes, note);
        doctor_total(o, p->host_total, p->host_available);
    } else {
        doctor_item(o, "visual features", p->features, "of running requests, until prefilled");
        doctor_item(o, "feature cache", p->vcache, "[engine] vcache_mb");
        doctor_item(o, "margin", p->margin, "");
        doctor_total(o, p->total, p->available);
    }
    buf_puts(o, "slots that fit, each budget alone:");
    for (int i = 0; i < d->o.n_classes; i++)
        buf_printf(o, "%s %s (%d tokens) %d", i ? "," : "", d->o.classes[i].name,
                   d->o.classes[i].ctx_tok, p->slots_fit[i]);
    buf_puts(o, "\n");
    if (d->n_advice) {
        buf_puts(o, "to fit, change:\n");
        for (int i = 0; i < d->n_advice; i++)
            buf_printf(o, "  %s\n", d->advice[i]);
    }
}

static void doctor_plan_json(Buf *o, const DoctorPlan *d)
{
    if (d->rc) {
        buf_puts(o, "{\"error\": ");
        util_json_str(o, d->err);
        buf_puts(o, ", \"backend_why\": ");
        util_json_str(o, d->why);
        buf_puts(o, "}");
        return;
    }
    const EnginePlan *p = &d->p;
    buf_puts(o, "{\"backend\": ");
    util_json_str(o, d->backend);
    buf_puts(o, ", \"backend_why\": ");
    util_json_str(o, d->why);
    buf_printf(o, ", \"device\": %s, \"workspace_bytes\": %lld, \"offload_layers\": %d, "
               "\"offload_bytes\": %lld, \"layer_bytes\": %lld, \"host_available_bytes\": %lld, "
               "\"host_total_bytes\": %lld", p->device ? "true" : "false",
               (long long)p->workspace, p->offload_layers, (long long)p->offload_bytes,
               (long long)p->layer_bytes,
               (long long)p->host_available, (long long)p->host_total);
    buf_printf(o, ", \"available_bytes\": %lld, \"items\": {\"weights_text\": %lld, "
               "\"weights_vision\": %lld, \"kv\": %lld, \"activations\": %lld, "
               "\"vision_ws\": %lld, \"features\": %lld, \"vcache\": %lld, \"margin\": %lld}, "
               "\"kv_per_token_bytes\": %lld, \"kv_type\": \"%s\", \"total_bytes\": %lld, "
               "\"fits\": %s, \"classes\": [",
               (long long)p->available, (long long)p->weights_text, (long long)p->weights_vision,
               (long long)p->kv, (long long)p->activations, (long long)p->vision_ws,
               (long long)p->features, (long long)p->vcache, (long long)p->margin,
               (long long)p->kv_per_token, d->o.kv_f32 ? "f32" : "f16", (long long)p->total,
               p->fits ? "true" : "false");
    for (int i = 0; i < d->o.n_classes; i++) {
        buf_puts(o, i ? ", {\"name\": " : "{\"name\": ");
        util_json_str(o, d->o.classes[i].name);
        buf_printf(o, ", \"ctx_tok\": %d, \"n_slots\": %d, \"slots_fit\": %d}",
                   d->o.classes[i].ctx_tok, d->o.classes[i].n_slots, p->slots_fit[i]);
    }
    buf_puts(o, "], \"advice\": [");
    for (int i = 0; i < d->n_advice; i++) {
        if (i)
            buf_puts(o, ", ");
        util_json_str(o, d->advice[i]);
    }
    buf_puts(o, "]}");
}

/* Tensor bytes of the vision tower and of the rest. */
static void doctor_model_bytes(const Model *m, int64_t *text, int64_t *vision)
{
    *text = *vision = 0;
    for (int i = 0; i < model_tensor_count(m); i++) {
        const ModelTensor *t = model_tensor_at(m, i);
        *(strncmp(t->name, "model.visual.", 13) ? text : vision) += (int64_t)t->nbytes;
    }
}

int cli_doctor(int argc, char **argv, const CliCommon *common)
{
    if (cli_wants_help(argc, argv)) {
        doctor_usage(stdout);
        return CLI_EXIT_OK;
    }
    static const struct option opts[] = {{"model", required_argument, NULL, 'm'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"backend", required_argument, NULL, 'b'},
                                         {NULL, 0, NULL, 0}};
    const char *model_flag = NULL, *backend_flag = NULL;
    int json = common->json, c;
    optind = 1;
    while ((c = cli_getopt("doctor", argc, argv, "m:", opts)) != -1) {
        switch (c) {
        case 'm': model_flag = optarg; break;
        case 'j': json = 1; break;
        case 'b': backend_flag = optarg; break;
        default: return CLI_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        return cli_usage("doctor", "unexpected argument '%s' (see `vlq doctor --help`)",
                         argv[optind]);
    }
    char err[VLQ_ERRLEN] = "";
    Cfg *cfg;
    if (cfg_load(common->config_path, &cfg, err)) {
        cli_error("%s", err);
        return CLI_EXIT_FAIL;
    }
    const char *model_path = model_flag ? model_flag : cfg_str(cfg, "model.path");
    if (!*model_path)
        model_path = NULL;
    int threads = (int)cfg_int(cfg, "model.threads");
    int caps = cpucaps_get();
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    DoctorBackend *be = xcalloc(DOCTOR_MAX_BACKENDS, sizeof *be);
    int n_be = doctor_backends(threads, be, DOCTOR_MAX_BACKENDS);
    /* what "auto" picks here, and why (no plugin, no driver, no device) */
    char auto_why[VLQ_ERRLEN + 128] = "", auto_err[VLQ_ERRLEN] = "";
    Backend *ab = NULL;
    BackendOpenOptions abo = {.threads = threads};
    if (backend_open_auto(BACKEND_AUTO, &abo, &ab, auto_why, sizeof auto_why, auto_err))
        snprintf(auto_why, sizeof auto_why, "backend auto: %s", auto_err);
    backend_close(ab);

    Model *m = NULL;
    int model_rc = model_path ? model_open(model_path, &m, err) : 0;
    DoctorPlan *plan = NULL;
    if (m) {
        plan = xcalloc(1, sizeof *plan);
        doctor_plan(cfg, backend_flag, model_path, m, plan);
    }
    int exit_rc = model_rc || (plan && (plan->rc || !plan->p.fits)) ? CLI_EXIT_FAIL : CLI_EXIT_OK;

    Buf o = {0};
    if (json) {
        buf_printf(&o, "{\"version\": \"%s\", \"cpu\": {\"features\": ", VLQ_VERSION);
        util_json_str(&o, cpucaps_describe(caps));
        buf_printf(&o, ", \"cores\": %ld}, \"backends\": [", cores);
        for (int i = 0; i < n_be; i++) {
            buf_puts(&o, i ? ", {\"name\": " : "{\"name\": ");
            util_json_str(&o, be[i].name);
            if (be[i].rc) {
                buf_puts(&o, ", \"error\": ");
                util_json_str(&o, be[i].text);
                buf_puts(&o, "}");
                continue;
            }
            buf_puts(&o, ", \"describe\": ");
            util_json_str(&o, be[i].text);
            if (!be[i].mem_rc)
                buf_printf(&o, ", \"mem_free_bytes\": %lld, \"mem_total_bytes\": %lld",
                           (long long)be[i].free_bytes, (long long)be[i].total_bytes);
            buf_puts(&o, "}");
        }
        buf_puts(&o, "], \"auto\": ");
        util_json_str(&o, auto_why);
        buf_puts(&o, ", \"model\": ");
        if (!model_path) {
            buf_puts(&o, "null");
        } else {
            buf_puts(&o, "{\"path\": ");
            util_json_str(&o, model_path);
            if (model_rc) {
                buf_puts(&o, ", \"error\": ");
                util_json_str(&o, err);
            } else {
                int64_t tb, vb;
                doctor_model_bytes(m, &tb, &vb);
                const ModelConfig *mc = model_config(m);
                buf_printf(&o, ", \"text_bytes\": %lld, \"vision_bytes\": %lld, \"layers\": %d, "
                           "\"hidden_size\": %d, \"vision_depth\": %d, \"residency\": ",
                           (long long)tb, (long long)vb, mc->n_layers, mc->hidden_size,
                           mc->v_depth);
                util_json_str(&o, model_residency(m));
            }
            buf_puts(&o, "}");
        }
        buf_puts(&o, ", \"plan\": ");
        if (plan)
            doctor_plan_json(&o, plan);
        else
            buf_puts(&o, "null");
        buf_puts(&o, "}\n");
    } else {
        buf_printf(&o, "vlq %s\n", VLQ_VERSION);
        buf_printf(&o, "cpu: %ld cores, features: %s\n", cores, cpucaps_describe(caps));
        buf_puts(&o, "backends:\n");
        for (int i = 0; i < n_be; i++) {
            if (be[i].rc) {
                buf_printf(&o, "  %-8s unavailable: %s\n", be[i].name, be[i].text);
                continue;
            }
            buf_printf(&o, "  %-8s %s\n", be[i].name, be[i].text);
            if (be[i].mem_rc)
                buf_printf(&o, "           memory: unknown\n");
            else
                buf_printf(&o, "           memory: %.0f MiB free of %.0f MiB\n",
                           doctor_mib(be[i].free_bytes), doctor_mib(be[i].total_bytes));
        }
        buf_printf(&o, "%s\n", auto_why);
        if (!model_path) {
            buf_puts(&o, "model: none (--model PATH or [model] path): no memory plan\n");
        } else if (model_rc) {
            buf_puts(&o, "model: ");
            util_buf_escaped(&o, err); /* it names a file: escaped as every printed name */
            buf_puts(&o, "\n");
        } else {
            int64_t tb, vb;
            doctor_model_bytes(m, &tb, &vb);
            const ModelConfig *mc = model_config(m);
            buf_puts(&o, "model: ");
            util_buf_escaped(&o, model_path);
            buf_puts(&o, "\n");
            buf_printf(&o, "  text: %d layers, hidden %d, %.0f MiB; vision: %d blocks, hidden %d, "
                           "%.0f MiB\n",
                       mc->n_layers, mc->hidden_size, doctor_mib(tb), mc->v_depth,
                       mc->v_hidden_size, doctor_mib(vb));
            buf_printf(&o, "  residency: %s\n", model_residency(m));
            doctor_plan_text(&o, plan);
        }
    }
    fputs(o.data, stdout);
    buf_clear(&o);
    if (model_rc)
        cli_error("doctor: %s", err);
    model_close(m);
    free(plan);
    free(be);
    cfg_free(cfg);
    return exit_rc;
}
