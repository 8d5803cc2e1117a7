/* queue_copy: a whole queue from one database to another (vlq queue copy), through the
 * drivers' row operations, so SQLite to PostgreSQL and back (and any pair) is one loop.
 *
 * The tables and their columns are listed once here (queue_tables[], parents before
 * children), in the neutral types of QueueValue; each driver turns a table into its own
 * SELECT and INSERT. A driver refuses to read a table whose columns are not exactly
 * these, so a column added by a later migration cannot be dropped silently by a copy
 * that does not know it (add it here with the migration).
 *
 * The source is read in one snapshot (copy_begin(write=0)); the target is written in one
 * transaction (copy_begin(write=1) .. copy_end), so a failed copy leaves the target as it
 * was. Ids are kept; the drivers move their id sequences past the copied ids. */
#include "queue_int.h"

#include <stdio.h>
#include <string.h>

#define I QUEUE_COL_INT
#define R QUEUE_COL_REAL
#define T QUEUE_COL_TEXT
#define B QUEUE_COL_BLOB

static const QueueCol cols_jobs[] = {
    {"id", I},           {"kind", T},         {"state", T},          {"priority", I},
    {"attempts", I},     {"max_attempts", I}, {"created_ms", I},     {"run_after_ms", I},
    {"started_ms", I},   {"finished_ms", I},  {"lease_expires_ms", I}, {"claim_token", T},
    {"worker_id", T},    {"idem_key", T},     {"prompt", T},         {"webhook_url", T},
    {"webhook_secret", T}, {"params_json", T}, {"error_code", T},    {"error", T},
    {"cancel_requested", I}, {"units_total", I},
};
static const QueueCol cols_inputs[] = {
    {"job_id", I}, {"idx", I}, {"path", T}, {"size_bytes", I}, {"mtime_s", I}, {"sha256", T},
};
static const QueueCol cols_attempts[] = {
    {"job_id", I},      {"attempt", I}, {"worker_id", T}, {"started_ms", I},
    {"finished_ms", I}, {"outcome", T}, {"error", T},
};
static const QueueCol cols_results[] = {
    {"job_id", I}, {"format", T}, {"body", B}, {"summary", T}, {"created_ms", I},
};
static const QueueCol cols_units[] = {
    {"job_id", I},  {"idx", I},        {"result", T}, {"meta_json", T},
    {"tok_in", I},  {"tok_out", I},    {"seconds", R}, {"error_code", T},
    {"error", T},   {"attempt", I},    {"created_ms", I},
};
static const QueueCol cols_events[] = {
    {"id", I},          {"event_id", T},       {"job_id", I},      {"type", T},
    {"url", T},         {"secret", T},         {"body", T},        {"state", T},
    {"attempts", I},    {"next_attempt_ms", I}, {"last_status", I}, {"last_error", T},
    {"created_ms", I},
};
static const QueueCol cols_event_attempts[] = {
    {"event_row", I}, {"attempt", I}, {"at_ms", I},
    {"http_status", I}, {"error", T}, {"duration_s", R},
};
static const QueueCol cols_disabled[] = {
    {"url", T}, {"since_ms", I}, {"reason", T},
};

#define N(a) ((int)(sizeof a / sizeof a[0]))

const QueueTable queue_tables[] = {
    {"jobs", "id", "id", cols_jobs, N(cols_jobs)},
    {"job_inputs", "job_id, idx", NULL, cols_inputs, N(cols_inputs)},
    {"attempts", "job_id, attempt", NULL, cols_attempts, N(cols_attempts)},
    {"results", "job_id", NULL, cols_results, N(cols_results)},
    {"job_units", "job_id, idx", NULL, cols_units, N(cols_units)},
    {"events", "id", "id", cols_events, N(cols_events)},
    {"event_attempts", "event_row, attempt", NULL, cols_event_attempts, N(cols_event_attempts)},
    {"disabled_endpoints", "url", NULL, cols_disabled, N(cols_disabled)},
};
const int queue_n_tables = N(queue_tables);

#undef I
#undef R
#undef T
#undef B

/* The copy's state, seen by the row callbacks. */
typedef struct {
    Queue *to;
    const QueueTable *t;
    int64_t rows;       /* of the current table */
} CopyArg;

static int copy_row(void *arg, const QueueValue *row, char *err)
{
    CopyArg *a = arg;
    int rc = a->to->drv->copy_write(a->to, a->t, row, err);
    if (rc == 0)
        a->rows++;
    return rc;
}

/* Stops the read at the first row: the table is not empty. */
static int copy_any_row(void *arg, const QueueValue *row, char *err)
{
    (void)row;
    *(int *)arg = 1;
    return err_set(err, VLQ_ECANCEL, "not empty");
}

int queue_copy(Queue *from, Queue *to, int force, QueueCopyProgressFn progress, void *arg,
               QueueCopyStats *st, char *err)
{
    memset(st, 0, sizeof *st);
    for (int k = 0; k < 2; k++) {
        const Queue *x = k ? to : from;
        if (!x->drv->copy_begin || !x->drv->copy_read || !x->drv->copy_write ||
            !x->drv->copy_clear || !x->drv->copy_end)
            return err_set(err, VLQ_EINPUT, "%s: the %s driver cannot copy queues",
                           x->location, x->drv->name);
    }
    int rc = to->drv->copy_begin(to, 1, err);
    if (rc) {
        err_prefix(err, "%s", to->location);
        return rc;
    }
    int src_open = 0;
    /* the target holds nothing, or (force) is emptied, children first */
    for (int k = 0; rc == 0 && k < queue_n_tables; k++) {
        const QueueTable *t = &queue_tables[k];
        int any = 0;
        rc = to->drv->copy_read(to, t, copy_any_row, &any, err);
        if (rc == VLQ_ECANCEL && any)
            rc = 0;
        if (rc == 0 && any && !force) {
            rc = err_set(err, VLQ_EINPUT,
                         "%s is not empty (table %s has rows): copy into an empty queue, or "
                         "pass --force to replace what it holds", to->location, t->name);
        }
        if (rc == 0 && any && force)
            for (int c = queue_n_tables - 1; rc == 0 && c >= 0; c--)
                rc = to->drv->copy_clear(to, &queue_tables[c], err);
        if (any)
            break;
    }
    if (rc == 0 && (rc = from->drv->copy_begin(from, 0, err)) == 0)
        src_open = 1;
    for (int k = 0; rc == 0 && k < queue_n_tables; k++) {
        CopyArg a = {.to = to, .t = &queue_tables[k]};
        rc = from->drv->copy_read(from, a.t, copy_row, &a, err);
        if (rc) {
            err_prefix(err, "table %s, after %lld rows", a.t->name, (long long)a.rows);
            break;
        }
        st->rows += a.rows;
        if (!strcmp(a.t->name, "jobs"))
            st->jobs = a.rows;
        if (!strcmp(a.t->name, "events"))
            st->events = a.rows;
        if (progress)
            progress(arg, a.t->name, a.rows);
    }
    char err2[VLQ_ERRLEN];
    if (src_open)
        from->drv->copy_end(from, 0, err2); /* a read snapshot: nothing to commit */
    int erc = to->drv->copy_end(to, rc == 0, rc ? err2 : err);
    return rc ? rc : erc;
}
