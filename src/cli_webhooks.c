/* cli_webhooks: `vlq webhooks list|send|redeliver`: the outbox seen from the shell.
 * list reads queue_events_list, send runs outbox_send_due once (for cron, or when no
 * worker runs), redeliver makes an event pending again. Delivery itself is outbox.c's. */
#include "cfg.h"
#include "cli.h"
#include "err.h"
#include "outbox.h"
#include "queue.h"
#include "util.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void cli_webhooks_usage(FILE *out)
{
    fprintf(out,
            "usage: vlq webhooks COMMAND [ARGS]\n\n"
            "The webhook outbox: one event per finished job that has a webhook URL.\n\n"
            "commands:\n"
            "  list [--job ID]      events, newest first (--json: a JSON array)\n"
            "  send [--max N]       deliver every event due now, once (for cron)\n"
            "  redeliver EVENT_ID   make a delivered or failed event due again\n\n"
            "`vlq webhooks COMMAND --help` for a command; README \"Webhooks\" for details.\n");
}


static void cli_webhooks_time(int64_t ms, char *out, size_t n)
{
    if (ms <= 0) {
        snprintf(out, n, "-");
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static json_t *cli_webhooks_event_json(const OutboxEvent *e)
{
    json_t *o = json_object();
    json_object_set_new(o, "event_id", json_string(e->event_id));
    json_object_set_new(o, "job", json_integer(e->job_id));
    json_object_set_new(o, "type", json_string(e->type));
    json_object_set_new(o, "url", cli_json_str(e->url, 1));
    json_object_set_new(o, "state", json_string(queue_event_state_name(e->state)));
    json_object_set_new(o, "attempts", json_integer(e->attempts));
    json_object_set_new(o, "next_attempt_ms", e->state == EVENT_PENDING
                                                  ? json_integer(e->next_attempt_ms)
                                                  : json_null());
    json_object_set_new(o, "last_status", e->last_status ? json_integer(e->last_status)
                                                         : json_null());
    json_object_set_new(o, "last_error", cli_json_str(e->last_error, 1));
    return o;
}

static int cli_webhooks_list(int argc, char **argv, const CliCommon *common)
{
    static const struct option opts[] = {
        {"job", required_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {0}};
    int64_t job = 0;
    int c;
    optind = 1;
    static const NumRange ids = NUM_INT(1, 9.2e18);
    while ((c = cli_getopt("webhooks list", argc, argv, "h", opts)) != -1) {
        if (c == 'h') {
            printf("usage: vlq webhooks list [--job ID] [--json]\n\n"
                   "Webhook events, newest first: event id, job, type, state (pending,\n"
                   "delivered, failed), attempts, next attempt (UTC), last HTTP status, last\n"
                   "error. --json prints an array of objects with those fields and the URL.\n");
            return CLI_EXIT_OK;
        }
        if (c == 'j' && cli_num_i64("webhooks list", "--job", &ids, optarg, &job) == 0)
            continue;
        return CLI_EXIT_USAGE;
    }
    if (optind < argc)
        return cli_usage("webhooks list", "unexpected argument '%s'", argv[optind]);
    Cfg *cfg;
    Queue *q;
    if (!(q = cli_open_queue(common, 0, &cfg)))
        return CLI_EXIT_FAIL;
    int rc = 0;
    char err[VLQ_ERRLEN];
    OutboxEvent **ev = NULL;
    int n = 0;
    if (queue_events_list(q, job, &ev, &n, err) != 0) {
        cli_error("%s", err);
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    if (common->json) {
        json_t *arr = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(arr, cli_webhooks_event_json(ev[i]));
        json_dumpf(arr, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
        json_decref(arr);
    } else {
        printf("%-28s %6s %-15s %-9s %8s %-20s %6s  %s\n", "EVENT", "JOB", "TYPE", "STATE",
               "ATTEMPTS", "NEXT", "STATUS", "ERROR");
        CliStrs str = {0}; /* stored strings escaped and redacted */
        for (int i = 0; i < n; i++) {
            const OutboxEvent *e = ev[i];
            char next[32], status[16];
            cli_webhooks_time(e->state == EVENT_PENDING ? e->next_attempt_ms : 0, next,
                              sizeof next);
            snprintf(status, sizeof status, "%d", e->last_status);
            printf("%-28s %6lld %-15s %-9s %8d %-20s %6s  %s\n", cli_str(&str, e->event_id),
                   (long long)e->job_id, cli_str(&str, e->type), queue_event_state_name(e->state),
                   e->attempts, next, e->last_status ? status : "-", cli_str(&str, e->last_error));
            cli_strs_clear(&str);
        }
    }
out:
    for (int i = 0; i < n; i++)
        queue_event_free(ev[i]);
    free(ev);
    queue_close(q);
    cfg_free(cfg);
    return rc;
}

static int cli_webhooks_send(int argc, char **argv, const CliCommon *common)
{
    static const struct option opts[] = {
        {"max", required_argument, NULL, 'm'}, {"help", no_argument, NULL, 'h'}, {0}};
    int64_t max = 1000;
    static const NumRange counts = NUM_INT(1, 1000000);
    int c;
    optind = 1;
    while ((c = cli_getopt("webhooks send", argc, argv, "h", opts)) != -1) {
        if (c == 'h') {
            printf("usage: vlq webhooks send [--max N]\n\n"
                   "Deliver every webhook event due now, once each (at most N, default 1000),\n"
                   "and record each attempt; for cron, or when no worker is running.\n"
                   "Failures are rescheduled per [webhooks] schedule.\n\n"
                   "exit status: 0 every due event was delivered or rescheduled (or failed for\n"
                   "good and recorded), 1 a database or config error\n");
            return CLI_EXIT_OK;
        }
        if (c == 'm' && cli_num_i64("webhooks send", "--max", &counts, optarg, &max) == 0)
            continue;
        return CLI_EXIT_USAGE;
    }
    if (optind < argc)
        return cli_usage("webhooks send", "unexpected argument '%s'", argv[optind]);
    Cfg *cfg;
    Queue *q;
    if (!(q = cli_open_queue(common, 0, &cfg)))
        return CLI_EXIT_FAIL;
    int rc = 0;
    char err[VLQ_ERRLEN];
    OutboxStats st;
    if (outbox_send_due(q, cfg, (int)max, &st, err) != 0) {
        cli_error("webhooks send: %s", err);
        rc = CLI_EXIT_FAIL;
    }
    if (rc == 0 && common->json)
        printf("{\"due\": %d, \"delivered\": %d, \"retrying\": %d, \"failed\": %d}\n", st.due,
               st.delivered, st.retrying, st.failed);
    else if (rc == 0 && common->verbosity >= 0)
        printf("%d due: %d delivered, %d rescheduled, %d failed\n", st.due, st.delivered,
               st.retrying, st.failed);
    queue_close(q);
    cfg_free(cfg);
    return rc;
}

static int cli_webhooks_redeliver(int argc, char **argv, const CliCommon *common)
{
    if (cli_wants_help(argc, argv)) {
        printf("usage: vlq webhooks redeliver EVENT_ID\n\n"
               "Make a delivered or failed event pending and due now; the next `vlq webhooks\n"
               "send` or the worker sends it again with the same webhook-id. A 410-disabled\n"
               "endpoint stays disabled for other events.\n");
        return CLI_EXIT_OK;
    }
    if (argc != 2)
        return cli_usage("webhooks redeliver", "one EVENT_ID is required (see `vlq webhooks "
                         "redeliver --help`)");
    if (argv[1][0] == '-')
        return cli_usage("webhooks redeliver", "unknown option '%s'", argv[1]);
    Cfg *cfg;
    Queue *q;
    if (!(q = cli_open_queue(common, 0, &cfg)))
        return CLI_EXIT_FAIL;
    int rc = 0;
    char err[VLQ_ERRLEN];
    if (queue_event_redeliver(q, argv[1], err) != 0) {
        cli_error("%s", err);
        rc = CLI_EXIT_FAIL;
    } else if (common->verbosity >= 0) {
        CliStrs str = {0};
        printf("%s: due now\n", cli_str(&str, argv[1]));
        cli_strs_clear(&str);
    }
    queue_close(q);
    cfg_free(cfg);
    return rc;
}

/* vlq webhooks: dispatch to list, send, redeliver. Returns the exit status. */
int cli_webhooks(int argc, char **argv, const CliCommon *common)
{
    if (argc < 2) {
        return cli_usage("webhooks", "a command is required: list, send or redeliver (see `vlq "
                         "webhooks --help`)");
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        cli_webhooks_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (!strcmp(argv[1], "list"))
        return cli_webhooks_list(argc - 1, argv + 1, common);
    if (!strcmp(argv[1], "send"))
        return cli_webhooks_send(argc - 1, argv + 1, common);
    if (!strcmp(argv[1], "redeliver"))
        return cli_webhooks_redeliver(argc - 1, argv + 1, common);
    return cli_usage("webhooks", "unknown command '%s' (list, send, redeliver)", argv[1]);
}
