#!/bin/bash
# vlq queue copy: a SQLite queue with jobs in every state (queued, running with stored
# units and an expiring lease, succeeded, failed with a backoff, dead, cancelled) and
# webhook events in every state (delivered, pending with failed attempts, failed at a
# disabled endpoint) is copied; the copy reads back the same jobs and events; a second
# copy into it is refused without --force; then workers drain the original and the copy,
# and both end with the same states, results and events.
# COPY_VIA=URL (tests/e2e/pg_queue_copy.sh) copies through that database and back:
# SQLite -> URL -> SQLite.
set -u
T="$VLQ_TESTKINDS_BIN"
R="$VLQ_ROOT/examples/webhook_receiver.py"
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$TEST_TMPDIR"
unset http_proxy HTTP_PROXY https_proxy HTTPS_PROXY all_proxy ALL_PROXY
SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
printf '[webhooks]\nsecret = %s\nschedule = 0,3600\ntimeout_ms = 2000\n[worker]\npoll_ms = 50\n' \
    "$SECRET" > vlq.conf
export VLQ_CONFIG="$TEST_TMPDIR/vlq.conf"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; }
trap cleanup EXIT
start_receiver() { # name, extra args...
    local name=$1; shift
    rm -f "$name.port"
    python3 "$R" --port 0 --port-file "$name.port" --secret "$SECRET" --out "$name.jsonl" \
        "$@" 2> "$name.err" &
    pids+=($!)
    for _ in $(seq 1 100); do [ -s "$name.port" ] && break; sleep 0.05; done
    [ -s "$name.port" ] || fail "receiver $name did not start: $(cat "$name.err")"
}
for i in 1 2 3 4 5 6 7 8; do echo "input $i" > "in$i.txt"; done

# ---- the original queue ----
O="$TEST_TMPDIR/orig.db"
export VLQ_DB="$O"
start_receiver ok
start_receiver gone --status 410
ok="http://127.0.0.1:$(cat ok.port)/hook"
gone="http://127.0.0.1:$(cat gone.port)/hook"
down="http://127.0.0.1:1/hook" # nobody listens: events stay pending, attempts recorded
s1=$("$T" submit test.echo in1.txt --webhook "$ok")           # succeeded, delivered
s2=$("$T" submit test.pages in2.txt --prompt "3 1" --webhook "$down") # succeeded, units, pending
s3=$("$T" submit test.echo in3.txt --webhook "$gone")         # succeeded, event failed (410)
d1=$("$T" submit test.bad in4.txt --webhook "$ok")            # dead, job.failed delivered
f1=$("$T" submit test.flaky in5.txt --prompt 1 --max-attempts 3) # failed, backoff
"$T" worker --drain 2> w0.log
[ "$("$T" list --status failed --limit 0 | wc -l)" = 1 ] || fail "setup: the flaky job did not fail once"
c1=$("$T" submit test.echo in6.txt --webhook "$ok")
"$T" cancel "$c1" 2>/dev/null || fail "setup: cancel"            # cancelled, event pending
q1=$("$T" submit test.pages in7.txt --prompt "2 1" --priority -5 --run-after +1h) # queued
# running: a pages job killed after storing some units; its lease (1 s) expires later
r1=$("$T" submit test.pages in8.txt --prompt "40 50" --priority 9 --webhook "$ok")
"$T" worker --lease-seconds 1 2> wk.log & wk=$!
for _ in $(seq 1 200); do
    done_n=$("$T" --json show "$r1" | python3 -c 'import json,sys; print((json.load(sys.stdin).get("progress") or {}).get("units_done", 0))')
    [ "$done_n" -ge 3 ] && break
    sleep 0.05
done
kill -9 $wk; wait $wk 2>/dev/null
[ "$("$T" --json show "$r1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')" = running ] ||
    fail "setup: job $r1 is not running"
"$T" webhooks send > /dev/null 2>&1 # what is due goes out once (the 'down' one fails)

# a stable view of a queue: jobs with inputs, attempts, progress, results; events
dump() { # db out
    VLQ_DB=$1 "$T" --json list --limit 0 > "$2.list" || fail "list $1"
    python3 - "$1" "$2" "$T" <<'EOF' || fail "dump $1"
import json, subprocess, sys
db, out, t = sys.argv[1:4]
env = dict(__import__("os").environ, VLQ_DB=db)
jobs = json.load(open(out + ".list"))
view = []
for j in sorted(jobs, key=lambda j: j["id"]):
    s = json.loads(subprocess.check_output([t, "--json", "show", str(j["id"])], env=env))
    r = subprocess.run([t, "result", str(j["id"])], env=env, capture_output=True, text=True)
    s["result"] = r.stdout if r.returncode == 0 else None
    view.append(s)
ev = json.loads(subprocess.check_output([t, "--json", "webhooks", "list"], env=env))
json.dump({"jobs": view, "events": sorted(ev, key=lambda e: e["event_id"])}, open(out, "w"),
          indent=1, sort_keys=True)
EOF
}
dump "$O" orig.before

# ---- copy ----
C="$TEST_TMPDIR/copy.db"
if [ -n "${COPY_VIA:-}" ]; then
    "$T" queue copy --from "$O" --to "$COPY_VIA" > copy1.out 2> copy1.err || fail "copy to $COPY_VIA: $(cat copy1.err)"
    "$T" queue copy --from "$COPY_VIA" --to "$C" > copy2.out 2> copy2.err || fail "copy back: $(cat copy2.err)"
    dump "$COPY_VIA" via.before
    cmp -s orig.before via.before || { diff orig.before via.before | head -20; fail "the copy in $COPY_VIA differs"; }
else
    "$T" queue copy --from "$O" --to "$C" > copy1.out 2> copy1.err || fail "copy: $(cat copy1.err)"
fi
grep -q "^copied 8 jobs" copy1.out || fail "copy summary: $(cat copy1.out)"
grep -q "jobs .* 8 rows" copy1.err || fail "copy progress: $(cat copy1.err)"
dump "$C" copy.before
cmp -s orig.before copy.before || { diff orig.before copy.before | head -20; fail "the copy differs"; }

# a non-empty target is refused (nothing changed), --force replaces it
if "$T" queue copy --from "$O" --to "$C" 2> again.err; then fail "copy into a non-empty queue"; fi
grep -q "not empty.*--force" again.err || fail "refusal message: $(cat again.err)"
"$T" queue copy --from "$O" --to "$C" --force > /dev/null 2>&1 || fail "copy --force"
dump "$C" copy.forced
cmp -s orig.before copy.forced || fail "copy --force differs"
# usage errors
"$T" queue copy --from "$O" 2> /dev/null; [ $? = 2 ] || fail "copy without --to: not a usage error"
"$T" queue copy --from "$TEST_TMPDIR/absent.db" --to "$TEST_TMPDIR/new.db" 2> absent.err &&
    fail "copy from a missing queue"

# ---- workers on both: the same outcome ----
sleep 1.2 # the killed worker's lease and the flaky job's backoff pass
for db in "$O" "$C"; do
    VLQ_DB=$db "$T" worker --drain 2>> wd.log
    VLQ_DB=$db "$T" webhooks send > /dev/null 2>&1
done
dump "$O" orig.after
dump "$C" copy.after
# the same up to what differs by nature: times, worker ids, new event ids
python3 - orig.after copy.after <<'EOF' || fail "the original and the copy ended differently"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
def norm(d):
    jobs = []
    for j in d["jobs"]:
        jobs.append((j["id"], j["kind"], j["status"], j["attempts"], j.get("error_code"),
                     j["result"], json.dumps(j.get("progress"), sort_keys=True),
                     tuple(x["outcome"] for x in j.get("attempt_log", []))))
    ev = sorted((e["job"], e["type"], e["state"], e["url"]) for e in d["events"])
    return jobs, ev
na, nb = norm(a), norm(b)
if na != nb:
    for x, y in zip(na[0], nb[0]):
        if x != y: print("job", x, "!=", y)
    if na[1] != nb[1]: print("events", na[1], "!=", nb[1])
    sys.exit(1)
states = sorted(j[2] for j in na[0])
assert states == sorted(["succeeded"] * 5 + ["dead", "cancelled", "queued"]), states
EOF
echo "queue copy ok"
