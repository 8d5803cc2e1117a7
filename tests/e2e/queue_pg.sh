#!/bin/bash
# The queue on PostgreSQL through the real commands: 2 workers and 2 submitters on one
# database, 60 jobs; the server is restarted (pg_ctl restart) in the middle of the run:
# the workers reconnect and carry on, every job succeeds exactly once, and each job's
# webhook event is delivered once. Its own throwaway cluster (tests/pg/cluster.sh);
# skipped when none can start, a failure then under VLQ_REQUIRE_PG=1.
set -u
T="$VLQ_TESTKINDS_BIN"
R="$VLQ_ROOT/examples/webhook_receiver.py"
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$TEST_TMPDIR"
pgdir=$(mktemp -d /tmp/vlq-pg.XXXXXX) || fail "mktemp"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; "$VLQ_ROOT/tests/pg/cluster.sh" stop "$pgdir"; }
trap cleanup EXIT
if ! url=$("$VLQ_ROOT/tests/pg/cluster.sh" start "$pgdir" 2> cluster.err); then
    [ "${VLQ_REQUIRE_PG:-}" = 1 ] && fail "VLQ_REQUIRE_PG=1 but no cluster: $(tail -n 1 cluster.err)"
    echo "skip: no PostgreSQL cluster could start: $(tail -n 1 cluster.err)"
    exit 77
fi
export VLQ_DB="$url"
SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
printf '[webhooks]\nsecret = %s\nschedule = 0,1,1,1,1\n[worker]\npoll_ms = 2000\n' "$SECRET" > vlq.conf
export VLQ_CONFIG="$TEST_TMPDIR/vlq.conf"
python3 "$R" --port 0 --port-file hook.port --secret "$SECRET" --out hook.jsonl 2> hook.err &
pids+=($!)
for _ in $(seq 1 100); do [ -s hook.port ] && break; sleep 0.05; done
[ -s hook.port ] || fail "receiver did not start: $(cat hook.err)"
HOOK="http://127.0.0.1:$(cat hook.port)/hook"

"$T" init 2>/dev/null || fail "init"
mkdir in
for i in $(seq 1 60); do echo "file $i" > "in/f$i.txt"; done
wpids=()
for w in 1 2; do
    "$T" worker --lease-seconds 20 --concurrency 2 2> "worker$w.log" &
    wpids+=($!)
done
pids+=("${wpids[@]}")
submit_range() { # first last
    for i in $(seq "$1" "$2"); do
        for _ in 1 2 3 4 5 6 7 8 9 10; do # a submit during the restart fails: try again
            "$T" submit test.echo "in/f$i.txt" --webhook "$HOOK" --key "k$i" \
                >> ids.txt 2>> submit.log && break
            sleep 0.5
        done
    done
}
submit_range 1 20 & s1=$!
submit_range 21 40 & s2=$!
wait $s1 $s2
"$T" submit test.echo in/f1.txt --webhook "$HOOK" --key k1 >> ids.txt # an old key: no new job
for _ in $(seq 1 300); do
    [ "$("$T" list --status succeeded --limit 0 2>/dev/null | wc -l)" -ge 40 ] && break
    sleep 0.1
done
pg_ctl_bin=$( [ -x /usr/lib/postgresql/15/bin/pg_ctl ] && echo /usr/lib/postgresql/15/bin/pg_ctl || echo "$(pg_config --bindir)/pg_ctl")
runas() { # as the cluster's owner (tests/pg/cluster.sh: nobody when root)
    if [ "$(id -u)" = 0 ]; then "$(command -v runuser || echo /usr/sbin/runuser)" -u nobody -- "$@"
    else "$@"; fi
}
submit_range 41 50 & s1=$!
runas "$pg_ctl_bin" -D "$pgdir/data" -m fast -w restart > restart.log 2>&1 || fail "restart: $(cat restart.log)"
submit_range 51 60 & s2=$!
wait $s1 $s2
[ "$(sort -u ids.txt | wc -l)" = 60 ] || fail "expected 60 distinct ids, got $(sort -u ids.txt | wc -l)"
for _ in $(seq 1 600); do
    n=$("$T" list --status succeeded --limit 0 2>/dev/null | wc -l)
    [ "$n" = 60 ] && break
    sleep 0.1
done
for _ in $(seq 1 300); do [ "$(wc -l < hook.jsonl)" -ge 60 ] && break; sleep 0.1; done
kill -TERM "${wpids[@]}"
for p in "${wpids[@]}"; do wait "$p"; done
[ "$n" = 60 ] || fail "only $n of 60 jobs succeeded: $(tail -n 5 worker*.log)"
grep -q "reconnected" worker*.log || fail "no worker logged a reconnect"
# exactly once: one result and one attempt per job, one delivery per event
res=$(psql -X -A -t -q "$url" -c "select count(*), count(distinct job_id) from results" \
      -c "select max(attempts), min(attempts) from jobs" -c "select count(*) from attempts")
[ "$(echo $res)" = "60|60 1|1 60" ] || fail "exactly-once check: $(echo $res)"
python3 - hook.jsonl <<'PY' || fail "webhook events lost or duplicated"
import json, sys
ids = [json.loads(l)["id"] for l in open(sys.argv[1])]
assert len(ids) == 60 and len(set(ids)) == 60, (len(ids), len(set(ids)))
PY
if grep -i "password\|segmentation\|assert" worker*.log; then fail "a worker log line is wrong"; fi
exit 0
