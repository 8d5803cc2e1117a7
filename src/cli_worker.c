/* cli_worker: `vlq worker`: flags and config, signals, then the loop in jobs/worker.c
 * (claim, run, record; several jobs in flight; webhooks delivered meanwhile).
 *
 * SIGINT and SIGTERM stop the worker at each running job's next checkpoint; those jobs
 * are released untouched (their attempts not counted) for another worker. A device
 * error exits with EX_TEMPFAIL (75), once the jobs in flight are recorded: the device
 * context is broken for good, and a restart (systemd's Restart=on-failure) gets a new
 * one. */
#include "cfg.h"
#include "cli.h"
#include "err.h"
#include "log.h"
#include "util.h"
#include "worker.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

static volatile int worker_stop; /* what WorkerOptions.stop points at */

static void worker_on_signal(int sig) { worker_stop = 1; }

static void worker_usage(FILE *out)
{
    fprintf(out,
            "usage: vlq worker [--drain] [--once] [--max-jobs N] [--lease-seconds N]\n"
            "                  [--concurrency N] [--backend NAME]\n\n"
            "Claim jobs from the queue and run them; deliver webhook events meanwhile.\n"
            "Logs go to stderr (one logfmt line per event when not on a terminal).\n\n"
            "  --drain            run until nothing is runnable, then exit\n"
            "  --once             run at most one job, then exit\n"
            "  --max-jobs N       exit after N jobs\n"
            "  --lease-seconds N  lease of a claimed job (default [worker] lease_seconds)\n"
            "  --concurrency N    jobs in flight at once (default [worker] concurrency)\n"
            "  --backend NAME     auto, cpu, ref, cuda or a plugin (default [model] backend;\n"
            "                     auto says on stderr which it picked and why)\n\n"
            "exit status: 0 every job it ran succeeded (or there was none), 3 some of them\n"
            "failed or died (they stay recorded: `vlq list --status dead`), 1 a worker error\n"
            "(config, database), 2 a usage error, 75 a device error (an Xid, an illegal\n"
            "access): it took no new job, recorded those in flight (the first one's attempt\n"
            "counted, the others handed back) and exited so that a restart gets a fresh\n"
            "device context. SIGINT/SIGTERM: stop at each running job's next checkpoint,\n"
            "handing those jobs back.\n");
}

int cli_worker(int argc, char **argv, const CliCommon *common)
{
    static const struct option opts[] = {{"drain", no_argument, NULL, 'd'},
                                         {"once", no_argument, NULL, 'o'},
                                         {"max-jobs", required_argument, NULL, 'm'},
                                         {"lease-seconds", required_argument, NULL, 'l'},
                                         {"concurrency", required_argument, NULL, 'c'},
                                         {"backend", required_argument, NULL, 'b'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int drain = 0, c;
    int64_t max_jobs = 0;
    const char *lease_flag = NULL, *conc_flag = NULL, *backend_flag = NULL;
    optind = 1;
    static const NumRange counts = NUM_INT(1, 1000000000);
    int64_t v;
    while ((c = cli_getopt("worker", argc, argv, "h", opts)) != -1) {
        switch (c) {
        case 'd': drain = 1; break;
        case 'o': max_jobs = 1; break;
        case 'm':
            if (cli_num_i64("worker", "--max-jobs", &counts, optarg, &max_jobs))
                return CLI_EXIT_USAGE;
            break;
        /* flags that set a config key are checked against its range here (a usage error);
         * cfg_set below then records them with their source */
        case 'l':
            if (cli_num_i64("worker", "--lease-seconds", cfg_key_range("worker.lease_seconds"),
                            optarg, &v))
                return CLI_EXIT_USAGE;
            lease_flag = optarg;
            break;
        case 'c':
            if (cli_num_i64("worker", "--concurrency", cfg_key_range("worker.concurrency"),
                            optarg, &v))
                return CLI_EXIT_USAGE;
            conc_flag = optarg;
            break;
        case 'b': backend_flag = optarg; break;
        case 'h': worker_usage(stdout); return CLI_EXIT_OK;
        default: return CLI_EXIT_USAGE;
        }
    }
    if (optind != argc)
        return cli_usage("worker", "unexpected argument '%s'", argv[optind]);
    char err[VLQ_ERRLEN];
    Cfg *cfg = NULL;
    if (cfg_load(common->config_path, &cfg, err) ||
        (lease_flag && cfg_set(cfg, "worker.lease_seconds", lease_flag, "flag --lease-seconds",
                               err)) ||
        (conc_flag && cfg_set(cfg, "worker.concurrency", conc_flag, "flag --concurrency", err)) ||
        (backend_flag && cfg_set(cfg, "model.backend", backend_flag, "flag --backend", err))) {
        cli_error("%s", err);
        cfg_free(cfg);
        return CLI_EXIT_FAIL;
    }
    struct sigaction sa = {.sa_handler = worker_on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    WorkerOptions wo = {.cfg = cfg, .db_path = cfg_db_path(cfg, common->db_path),
                        .drain = drain, .max_jobs = max_jobs, .stop = &worker_stop};
    WorkerStats st = {0};
    int rc = worker_run(&wo, &st, err), status = CLI_EXIT_OK;
    if (rc && st.device_error) {
        status = EX_TEMPFAIL; /* worker_run logged it: restart for a fresh device context */
    } else if (rc) {
        cli_error("%s", err);
        status = CLI_EXIT_FAIL;
    } else if (st.failed) {
        status = CLI_EXIT_JOBS;
    }
    log_info("worker done: %lld jobs, %lld not succeeded", (long long)st.done,
             (long long)st.failed);
    cfg_free(cfg);
    return status;
}
