#!/bin/bash
# Webhooks through the real worker: delivered once with a valid signature; a receiver
# that is down is served after it comes back, across a worker restart; 500 then 200 is
# retried with the same webhook-id; a hanging receiver is timed out and retried; and no
# event is lost (the receiver's file against the outbox).
set -u
T="$VLQ_TESTKINDS_BIN"
R="$VLQ_ROOT/examples/webhook_receiver.py"
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$TEST_TMPDIR"
export VLQ_DB="$TEST_TMPDIR/q.db"
SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
printf '[webhooks]\nsecret = %s\nschedule = 0,1,1,1,1\ntimeout_ms = 700\n[worker]\npoll_ms = 100\n' \
    "$SECRET" > vlq.conf
export VLQ_CONFIG="$TEST_TMPDIR/vlq.conf"
echo data > a.txt
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; }
trap cleanup EXIT
start_receiver() { # name, extra args...
    local name=$1; shift
    rm -f "$name.port"
    python3 "$R" --port "${PORT:-0}" --port-file "$name.port" --secret "$SECRET" \
        --out "$name.jsonl" "$@" 2> "$name.err" &
    pids+=($!)
    for _ in $(seq 1 100); do [ -s "$name.port" ] && break; sleep 0.05; done
    [ -s "$name.port" ] || fail "receiver $name did not start: $(cat "$name.err")"
    RPID=$!
}
count() { [ -f "$1" ] && wc -l < "$1" || echo 0; }
wait_count() { # file n
    for _ in $(seq 1 200); do [ "$(count "$1")" -ge "$2" ] && return 0; sleep 0.05; done
    fail "$1: $(count "$1") events, want $2"
}

# delivered once, signature verified by the receiver (python hmac)
start_receiver ok
"$T" submit test.echo a.txt --webhook "http://127.0.0.1:$(cat ok.port)/hook" > /dev/null
"$T" worker --drain 2> w1.log || fail "drain: $(cat w1.log)"
wait_count ok.jsonl 1
sleep 0.3
[ "$(count ok.jsonl)" = 1 ] || fail "delivered more than once"
grep -q '"job.succeeded"' ok.jsonl || fail "not a job.succeeded event"

# down, then up after a worker restart: delivered by the new worker
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$T" submit test.echo a.txt --webhook "http://127.0.0.1:$PORT/hook" > /dev/null
"$T" worker --drain 2> w2.log
"$T" webhooks list | grep -q pending || fail "the undeliverable event is not pending"
start_receiver up
"$T" worker 2> w3.log & w3=$!; pids+=($w3)
wait_count up.jsonl 1
kill -TERM $w3; wait $w3
unset PORT

# 500 then 200: retried, the same webhook-id both times
start_receiver flaky --fail-first 1 --fail-status 500 --log flaky.log
"$T" submit test.echo a.txt --webhook "http://127.0.0.1:$(cat flaky.port)/hook" > /dev/null
"$T" worker 2> w4.log & w4=$!; pids+=($w4)
wait_count flaky.jsonl 1
kill -TERM $w4; wait $w4
[ "$(count flaky.log)" = 2 ] || fail "500 then 200: $(count flaky.log) requests"

# a receiver that hangs on the first request: timed out, retried, delivered
start_receiver slow --hang --fail-first 1
"$T" submit test.echo a.txt --webhook "http://127.0.0.1:$(cat slow.port)/hook" > /dev/null
"$T" worker 2> w5.log & w5=$!; pids+=($w5)
wait_count slow.jsonl 1
kill -TERM $w5; wait $w5
grep -qi "timed out\|timeout" w5.log || fail "no timeout was logged"

# nothing lost: every event the outbox has is delivered, once
"$T" --json webhooks list > events.json
python3 - events.json ok.jsonl up.jsonl flaky.jsonl slow.jsonl <<'PY' || fail "events lost or duplicated"
import json, sys
events = json.load(open(sys.argv[1]))
events = events["events"] if isinstance(events, dict) else events
got = [json.loads(l)["id"] for f in sys.argv[2:] for l in open(f)]
ids = [e.get("event_id") or e.get("id") for e in events]
assert len(ids) == 4 and sorted(ids) == sorted(got), (ids, got)
assert all(e["state"] == "delivered" for e in events), events
PY
exit 0
