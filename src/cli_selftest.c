/* cli_selftest: `vlq selftest`, a backend checked against the cpu backend (selftest.h):
 * every op on random inputs of the model's shapes, then a model's whole forward when one
 * is given or configured. The first thing to run where a device backend is new: it says
 * plainly when the backend cannot open (no plugin, no driver, no device) and exits 1,
 * and exits 1 when any case is beyond its tolerance. */
#include "backend.h"
#include "cfg.h"
#include "cli.h"
#include "err.h"
#include "model.h"
#include "selftest.h"
#include "util.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void selftest_usage(FILE *out)
{
    fprintf(out,
            "usage: vlq selftest [--backend NAME] [--ref NAME] [--model PATH] [--seed N]\n"
            "                    [--ops-only] [--json]\n\n"
            "Run every op of a backend on random inputs of the model's shapes (each weight\n"
            "type, the KV types, batches mixing prefill and decode) beside a reference\n"
            "backend, print the largest absolute and the relative error of each with its\n"
            "tolerance, then the model's forward pass (vision encoder, prompt and decode\n"
            "logits) on both when a model is given.\n\n"
            "  --backend NAME  the backend to check (default [model] backend; auto: cuda when\n"
            "                  a device is usable, else cpu)\n"
            "  --ref NAME      the reference (default cpu; ref is the scalar oracle, slow)\n"
            "  --model PATH    also the model's forward (default [model] path, if set)\n"
            "  --seed N        the inputs' seed (default 1)\n"
            "  --ops-only      the ops alone, no model\n"
            "  --json          one JSON object\n\n"
            "exit status: 0 every case within its tolerance, 1 a case beyond it, or the\n"
            "backend or the model cannot be opened (the reason is printed), 2 usage.\n");
}

typedef struct {
    int json;
    Buf *out;
    int n;
} SelftestOut;

static void selftest_line(void *user, const SelftestCase *c)
{
    SelftestOut *o = user;
    if (o->json) {
        buf_puts(o->out, o->n++ ? ", {\"op\": " : "{\"op\": ");
        util_json_str(o->out, c->op);
        buf_puts(o->out, ", \"case\": ");
        util_json_str(o->out, c->what);
        buf_printf(o->out, ", \"max_abs\": %.6g, \"rel\": %.6g, \"atol\": %.6g, \"rtol\": %.6g, "
                   "\"rel_tol\": %.6g, \"ok\": %s", c->max_abs, c->rel, c->atol, c->rtol,
                   c->rel_tol, c->ok ? "true" : "false");
        if (c->err[0]) {
            buf_puts(o->out, ", \"error\": ");
            util_json_str(o->out, c->err);
        }
        buf_puts(o->out, "}");
        return;
    }
    char tol[64];
    if (c->rel_tol > 0)
        snprintf(tol, sizeof tol, "rel <= %.0e", c->rel_tol);
    else
        snprintf(tol, sizeof tol, "|d| <= %.1e + %.0e|want|", c->atol, c->rtol);
    if (c->err[0])
        printf("%-4s  %-13s %s: %s\n", c->ok ? "ok" : "FAIL", c->op, c->what, c->err);
    else
        printf("%-4s  %-13s %-58s max abs %.2e  rel %.2e  (%s)\n", c->ok ? "ok" : "FAIL", c->op,
               c->what, c->max_abs, c->rel, tol);
    fflush(stdout);
    o->n++;
}

int cli_selftest(int argc, char **argv, const CliCommon *common)
{
    if (cli_wants_help(argc, argv)) {
        selftest_usage(stdout);
        return CLI_EXIT_OK;
    }
    static const struct option opts[] = {{"backend", required_argument, NULL, 'b'},
                                         {"ref", required_argument, NULL, 'r'},
                                         {"model", required_argument, NULL, 'm'},
                                         {"seed", required_argument, NULL, 's'},
                                         {"ops-only", no_argument, NULL, 'o'},
                                         {"json", no_argument, NULL, 'j'},
                                         {NULL, 0, NULL, 0}};
    const char *backend = NULL, *ref_name = "cpu", *model_path = NULL;
    int json = common->json, ops_only = 0, c;
    int64_t seed = 1;
    optind = 1;
    static const NumRange seeds = NUM_INT(0, 9.2e18);
    while ((c = cli_getopt("selftest", argc, argv, "", opts)) != -1) {
        switch (c) {
        case 'b': backend = optarg; break;
        case 'r': ref_name = optarg; break;
        case 'm': model_path = optarg; break;
        case 'o': ops_only = 1; break;
        case 'j': json = 1; break;
        case 's':
            if (cli_num_i64("selftest", "--seed", &seeds, optarg, &seed))
                return CLI_EXIT_USAGE;
            break;
        default: return CLI_EXIT_USAGE;
        }
    }
    if (optind < argc)
        return cli_usage("selftest", "unexpected argument '%s'", argv[optind]);
    char err[VLQ_ERRLEN] = "";
    Cfg *cfg = NULL;
    if (cfg_load(common->config_path, &cfg, err)) {
        cli_error("%s", err);
        return CLI_EXIT_FAIL;
    }
    if (!backend)
        backend = cfg_str(cfg, "model.backend");
    if (!model_path && !ops_only && cfg_str(cfg, "model.path")[0])
        model_path = cfg_str(cfg, "model.path");
    if (ops_only)
        model_path = NULL;
    BackendOpenOptions bo = {.threads = (int)cfg_int(cfg, "model.threads")};
    Backend *b = NULL, *ref = NULL;
    Model *m = NULL;
    char why[VLQ_ERRLEN + 128] = "";
    int status = CLI_EXIT_FAIL;
    if (backend_open_auto(backend, &bo, &b, why, sizeof why, err)) {
        cli_error("selftest: no usable backend: %s", err);
        goto done;
    }
    if (why[0])
        fprintf(stderr, "%s\n", why);
    if (backend_open(ref_name, &bo, &ref, err)) {
        cli_error("selftest: the reference: %s", err);
        goto done;
    }
    if (model_path && model_open(model_path, &m, err)) {
        cli_error("selftest: %s", err);
        goto done;
    }
    Buf out = {0};
    SelftestOut so = {.json = json, .out = &out};
    char desc[512];
    b->describe(b, desc, sizeof desc);
    if (json) {
        buf_puts(&out, "{\"backend\": ");
        util_json_str(&out, b->name);
        buf_puts(&out, ", \"describe\": ");
        util_json_str(&out, desc);
        buf_puts(&out, ", \"ref\": ");
        util_json_str(&out, ref->name);
        buf_puts(&out, ", \"cases\": [");
    } else {
        printf("selftest: %s against %s (seed %lld)\n  %s\n", b->name, ref->name,
               (long long)seed, desc);
    }
    int failed = selftest_ops(ref, b, (uint64_t)seed, selftest_line, &so);
    int model_rc = 0;
    if (m) {
        if (!json)
            printf("model %s:\n", model_path);
        model_rc = selftest_model(m, ref, b, (uint64_t)seed, selftest_line, &so, err);
        if (model_rc > 0)
            failed += model_rc;
    }
    if (json) {
        buf_printf(&out, "], \"cases_run\": %d, \"failed\": %d", so.n, failed);
        if (model_rc < 0) {
            buf_puts(&out, ", \"model_error\": ");
            util_json_str(&out, err);
        }
        buf_puts(&out, "}\n");
        fputs(out.data, stdout);
    } else {
        printf("selftest: %s: %d cases, %d beyond tolerance%s\n", b->name, so.n, failed,
               failed || model_rc < 0 ? "" : ": passed");
    }
    buf_clear(&out);
    if (model_rc < 0)
        cli_error("selftest: model: %s", err);
    status = failed || model_rc < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
done:
    model_close(m);
    backend_close(ref);
    backend_close(b);
    cfg_free(cfg);
    return status;
}
