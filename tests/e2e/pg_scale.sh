#!/bin/bash
# pg_scale: many workers on one PostgreSQL queue, as on several hosts. 8 worker processes
# in two groups (each group its own TMPDIR, standing in for a host) and 4 submitters
# (batches of jobs while the workers run) on one database, 2,000 test.echo jobs with a
# webhook each, plus 4 slower test.pages jobs:
#   - every job succeeds exactly once (one succeeded attempt, one result, the result is
#     its input's SHA-256), and exactly one job.succeeded event per job, received once;
#   - a worker killed with SIGKILL mid-job: its job finishes on another worker after the
#     (short) lease expires, resuming after the units already stored;
#   - the server restarted (pg_ctl restart) mid-run: workers and submitters reconnect,
#     nothing is lost.
# Skipped, saying why, when no PostgreSQL server can start (tests/pg/cluster.sh).
set -u
T="$VLQ_TESTKINDS_BIN"
CL="$VLQ_ROOT/tests/pg/cluster.sh"
R="$VLQ_ROOT/examples/webhook_receiver.py"
N_JOBS=${PG_SCALE_JOBS:-2000}
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$TEST_TMPDIR"
unset http_proxy HTTP_PROXY https_proxy HTTPS_PROXY all_proxy ALL_PROXY
# the cluster's directory must be reachable by its unprivileged owner (and its socket
# path short): not under the test's own private directory
PGDIR=$(mktemp -d /tmp/vlq-pg.XXXXXX) || fail "mktemp"
if ! url=$("$CL" start "$PGDIR" 2> pg.err); then
    why="no PostgreSQL server could start: $(tail -1 pg.err)"
    rm -rf "$PGDIR"
    [ "${VLQ_REQUIRE_PG:-}" = 1 ] && fail "VLQ_REQUIRE_PG=1 but $why"
    echo "skip: $why"
    exit 77
fi
pids=()
cleanup() {
    kill "${pids[@]}" 2>/dev/null
    wait 2>/dev/null
    "$CL" stop "$PGDIR" > /dev/null 2>&1
}
trap cleanup EXIT
export VLQ_DB="$url"
SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
printf '[webhooks]\nsecret = %s\nschedule = 0,1,1,1,1,1,1,1\n[worker]\npoll_ms = 200\n' \
    "$SECRET" > vlq.conf
export VLQ_CONFIG="$TEST_TMPDIR/vlq.conf"
"$T" init 2> init.err || fail "init on $url: $(cat init.err)"
python3 "$R" --port 0 --port-file hook.port --secret "$SECRET" --out events.jsonl 2> hook.err &
pids+=($!)
for _ in $(seq 1 100); do [ -s hook.port ] && break; sleep 0.05; done
[ -s hook.port ] || fail "receiver did not start: $(cat hook.err)"
hook="http://127.0.0.1:$(cat hook.port)/hook"

mkdir -p in hostA hostB logs
for i in $(seq 1 "$N_JOBS"); do echo "job input $i" > "in/$i.txt"; done
for i in 1 2 3 4; do echo "pages input $i" > "in/p$i.txt"; done
# the slow jobs first, at a high priority, so that some are mid-run when a worker dies
for i in 1 2 3 4; do
    "$T" submit test.pages "in/p$i.txt" --prompt "60 50" --priority 5 --webhook "$hook" \
        > /dev/null || fail "submit pages"
done

# pg_ctl restart of the cluster, as its owner (cluster.sh runs it as nobody under root).
# A fast shutdown: clients are disconnected, every committed transaction is kept.
pg_restart() {
    local bindir
    bindir=$(pg_config --bindir 2>/dev/null)
    [ -x "$bindir/pg_ctl" ] || bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -1)
    if [ "$(id -u)" = 0 ]; then
        runuser -u nobody -- "$bindir/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" -m fast -w -t 60 restart
    else
        "$bindir/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" -m fast -w -t 60 restart
    fi
}

LEASE=2
start_worker() { # group n
    TMPDIR="$TEST_TMPDIR/host$1" "$T" worker --lease-seconds "$LEASE" 2> "logs/w$1$2.log" &
    pids+=($!)
    eval "W_$1$2=$!"
}
for g in A B; do for n in 1 2 3 4; do start_worker $g $n; done; done

count() { "$T" list --status "$1" --limit 0 2>/dev/null | wc -l; }
state_of() { "$T" --json show "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])'; }

# SIGKILL the worker of a pages job once that job has stored a few units
victim=""
vpid=""
for _ in $(seq 1 400); do
    for id in 1 2 3 4; do
        read -r st units pid < <("$T" --json show "$id" | python3 -c '
import json, sys
j = json.load(sys.stdin)
a = j["attempt_log"]
print(j["status"], (j.get("progress") or {}).get("units_done", 0),
      a[-1]["worker"].rsplit(":", 1)[1] if a and a[-1]["worker"] else "-")')
        if [ "$st" = running ] && [ "$units" -ge 3 ] && [ "$pid" != - ]; then
            victim=$id
            vpid=$pid
            break
        fi
    done
    [ -n "$victim" ] && break
    sleep 0.05
done
[ -n "$victim" ] || fail "no pages job got going"
# no job has ended yet, so no webhook event exists that the killed worker's delivery
# thread could hold leased (a killed deliverer's lease blocks its endpoint until it
# expires: not what this test is about)
n_ev=$(psql -X -q -t -A -d "$url" -c "SELECT count(*) FROM events")
kill -9 "$vpid" || fail "kill -9 $vpid"
[ "$n_ev" = 0 ] || fail "$n_ev events existed when the worker was killed"
start_worker A 5 # the dead one's replacement, on the same "host"

# 4 submitters, each a quarter of the jobs in batches of 50
per=$((N_JOBS / 4))
subs=()
for s in 0 1 2 3; do
    (
        for ((b = 0; b < per; b += 50)); do
            files=()
            for ((k = b; k < b + 50 && k < per; k++)); do files+=("in/$((s * per + k + 1)).txt"); done
            # a submit that meets the restart is retried: the key makes the retry safe
            for try in 1 2 3 4 5 6 7 8 9 10; do
                "$T" submit test.echo "${files[@]}" --webhook "$hook" --key "s$s-b$b" \
                    > /dev/null 2>> "logs/submit$s.err" && break
                sleep 0.5
            done || exit 1
        done
    ) &
    subs+=($!)
done


# restart the server once about a third of the jobs are done
for _ in $(seq 1 600); do
    [ "$(count succeeded)" -ge $((N_JOBS / 3)) ] && break
    sleep 0.1
done
at_restart=$(count succeeded)
pg_restart > restart.log 2>&1 || fail "pg_ctl restart: $(cat restart.log)"

for p in "${subs[@]}"; do wait "$p" || fail "a submitter gave up: $(cat logs/submit*.err)"; done
total=$((N_JOBS + 4))
for _ in $(seq 1 900); do
    [ "$(count succeeded)" = "$total" ] && break
    sleep 0.1
done
[ "$(count succeeded)" = "$total" ] || fail "$(count succeeded) of $total succeeded (queued $(count queued), running $(count running), failed $(count failed), dead $(count dead))"
# every event delivered (by the workers' outbox threads)
pending() { psql -X -q -t -A -d "$url" -c "SELECT count(*) FROM events WHERE state <> 'delivered'"; }
for _ in $(seq 1 600); do
    [ "$(pending)" = 0 ] && break
    sleep 0.1
done
for p in "${pids[@]:1}"; do kill -TERM "$p" 2>/dev/null; done
for p in "${pids[@]:1}"; do wait "$p" 2>/dev/null; done
# (under make test SAN=1 the workers' reports land in their logs)
! grep -l "Sanitizer\|runtime error" logs/*.log || fail "sanitizer reports in the logs above"

# the killed job: lease expired, then finished elsewhere, resuming after stored units
"$T" --json show "$victim" | python3 -c '
import json, sys
j = json.load(sys.stdin)
log = [a["outcome"] for a in j["attempt_log"]]
assert log[0] == "lease_expired" and log[-1] == "succeeded" and log.count("succeeded") == 1, log
' || fail "job $victim (its worker killed): attempts not as expected"
grep -q "done by an earlier attempt: resuming" logs/*.log || fail "no worker resumed the killed job's units"
"$T" result "$victim" | python3 -c '
import sys
lines = sys.stdin.read().splitlines()
assert len(lines) == 60 and all(l.startswith("page %d of" % (i + 1)) for i, l in enumerate(lines)), lines
' || fail "job $victim: result not 60 pages in order"

# exactly once: jobs, attempts, results, events (straight from the database)
psql -X -q -t -A -d "$url" -F ' ' > db.check <<'EOF' || fail "psql"
SELECT 'jobs', count(*) FROM jobs;
SELECT 'not_succeeded', count(*) FROM jobs WHERE state <> 'succeeded';
SELECT 'results', count(*) FROM results;
SELECT 'multi_success', count(*) FROM (SELECT job_id FROM attempts WHERE outcome = 'succeeded'
    GROUP BY job_id HAVING count(*) > 1) x;
SELECT 'events', count(*) FROM events WHERE type = 'job.succeeded';
SELECT 'multi_events', count(*) FROM (SELECT job_id FROM events GROUP BY job_id, type
    HAVING count(*) > 1) x;
SELECT 'undelivered', count(*) FROM events WHERE state <> 'delivered';
EOF
want="jobs $total
not_succeeded 0
results $total
multi_success 0
events $total
multi_events 0
undelivered 0"
[ "$(cat db.check)" = "$want" ] || fail "database counts: $(cat db.check | tr '\n' ' ') (want: $(echo $want))"
# each echo result is its input's SHA-256 and size
"$T" --json list --kind test.echo --limit 0 > jobs.json
python3 - "$N_JOBS" <<'EOF' || fail "results"
import hashlib, json, sys
jobs = json.load(open("jobs.json"))
assert len(jobs) == int(sys.argv[1]), len(jobs)
paths = sorted(j["inputs"][0]["path"] for j in jobs)
assert len(set(paths)) == len(paths), "a file was queued twice"
for j in jobs:
    data = open(j["inputs"][0]["path"], "rb").read()
    assert j["inputs"][0]["sha256"] == hashlib.sha256(data).hexdigest(), j["id"]
EOF
psql -X -q -t -A -d "$url" -c "SELECT count(*) FROM results r JOIN job_inputs i ON
    i.job_id = r.job_id AND i.idx = 0 JOIN jobs j ON j.id = r.job_id WHERE j.kind = 'test.echo'
    AND convert_from(r.body::bytea, 'UTF8') <> i.sha256 || ' ' || i.size_bytes" > bad.txt 2>&1
[ "$(cat bad.txt)" = 0 ] || fail "results that are not their input's SHA-256: $(cat bad.txt)"
# the receiver got one event per job, each sent once: a webhook-id comes again only
# where a delivery's record was lost with the connection (at least once, README
# "Webhooks"), and each such loss is a "webhooks:" warning of a worker
lost=$(cat logs/w*.log | grep -c 'level=warn msg="webhooks: ')
python3 - "$total" "$lost" <<'EOF' || fail "webhook deliveries"
import json, sys, collections
total, lost = int(sys.argv[1]), int(sys.argv[2])
ev = [json.loads(l) for l in open("events.jsonl")]
ids = collections.Counter(e["id"] for e in ev)
per_job = collections.defaultdict(set)
for e in ev:
    per_job[e["event"]["data"]["id"]].add(e["id"])
assert len(per_job) == total, "events for %d jobs, not %d" % (len(per_job), total)
assert all(len(v) == 1 for v in per_job.values()), "a job with two different events"
again = sum(n - 1 for n in ids.values())
assert again <= lost, "%d repeated deliveries, only %d lost records to explain them" % (again, lost)
print("webhooks: %d events, %d sent again after a lost record" % (len(ids), again))
EOF
# both "hosts" ran jobs, and the restart came mid-run and was survived
[ "$at_restart" -lt "$total" ] || fail "the restart came after the run ($at_restart done)"
grep -q "reconnected" logs/w*.log || fail "no worker reconnected after the restart"
grep -l "succeeded in" logs/wA*.log > /dev/null || fail "group A ran nothing"
grep -l "succeeded in" logs/wB*.log > /dev/null || fail "group B ran nothing"
echo "pg_scale ok: $total jobs, 8 workers, one killed, one server restart"
