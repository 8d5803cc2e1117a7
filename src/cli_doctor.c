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
#include "err.h"
#include "model.h"
#include "util.h"
#include "version.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DOCTOR_MAX_BACKENDS 16

static void doctor_usage(FILE *out)
{
    fprintf(out,
            "usage: vlq doctor [--model PATH] [--json]\n\n"
            "What this machine and configuration give the engine: the CPU features, each\n"
            "backend (built in, and the vlq-backend-NAME.so plugins found in $VLQ_BACKEND_DIR,\n"
            "else beside vlq, then " BACKEND_PLUGIN_DIR ") with its kernels and memory, the\n"
            "model file and how it is held in memory, and the memory plan item by item\n"
            "with how many slots of each budget fit.\n\n"
            "  --model PATH   the model (else [model] path in the configuration)\n"
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
                                         {NULL, 0, NULL, 0}};
    const char *model_flag = NULL;
    int json = common->json, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_flag = optarg; break;
        case 'j': json = 1; break;
        default: doctor_usage(stderr); return CLI_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        cli_error("doctor: unexpected argument '%s'", argv[optind]);
        doctor_usage(stderr);
        return CLI_EXIT_USAGE;
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

    Model *m = NULL;
    int model_rc = model_path ? model_open(model_path, &m, err) : 0;
    int exit_rc = model_rc ? CLI_EXIT_FAIL : CLI_EXIT_OK;

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
        buf_puts(&o, "], \"model\": ");
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
        buf_puts(&o, ", \"plan\": null");
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
        if (!model_path) {
            buf_puts(&o, "model: none (--model PATH or [model] path): no memory plan\n");
        } else if (model_rc) {
            buf_printf(&o, "model: %s\n", err);
        } else {
            int64_t tb, vb;
            doctor_model_bytes(m, &tb, &vb);
            const ModelConfig *mc = model_config(m);
            buf_printf(&o, "model: %s\n", model_path);
            buf_printf(&o, "  text: %d layers, hidden %d, %.0f MiB; vision: %d blocks, hidden %d, "
                           "%.0f MiB\n",
                       mc->n_layers, mc->hidden_size, doctor_mib(tb), mc->v_depth,
                       mc->v_hidden_size, doctor_mib(vb));
            buf_printf(&o, "  residency: %s\n", model_residency(m));
        }
    }
    fputs(o.data, stdout);
    buf_clear(&o);
    if (model_rc)
        cli_error("doctor: %s", err);
    model_close(m);
    free(be);
    cfg_free(cfg);
    return exit_rc;
}
