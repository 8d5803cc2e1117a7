#!/bin/sh
# vlq config: text and --json output with sources, override order, and a malformed
# config (exit 1 with file:line: key: reason).
set -u
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$TEST_TMPDIR" || exit 1
unset VLQ_CONFIG VLQ_DB

printf '[worker]\nlease_seconds = 60\n[queue]\ndb = file.db\n' > vlq.conf
out=$("$VLQ_BIN" config) || fail "config exit $?"
echo "$out" | grep -Eq '^worker.lease_seconds +=  *60 +; ./vlq.conf:2$' || fail "text: $out"
echo "$out" | grep -Eq '^worker.poll_ms +=  *1000 +; default$' || fail "default: $out"
echo "$out" | grep -Eq '^queue.db +=  *file.db +; ./vlq.conf:4$' || fail "db file: $out"
out=$(VLQ_DB=env.db "$VLQ_BIN" config) || fail "env exit"
echo "$out" | grep -Eq '^queue.db +=  *env.db +; env VLQ_DB$' || fail "db env: $out"
out=$(VLQ_DB=env.db "$VLQ_BIN" --db flag.db config) || fail "flag exit"
echo "$out" | grep -Eq '^queue.db +=  *flag.db +; flag --db$' || fail "db flag: $out"

out=$("$VLQ_BIN" config --json) || fail "json exit"
echo "$out" | python3 -c '
import json, sys
d = json.load(sys.stdin)
k = {x["key"]: x for x in d["keys"]}
assert d["file"] == "./vlq.conf", d["file"]
w = k["worker.lease_seconds"]
assert (w["value"], w["source"]) == ("60", "./vlq.conf:2"), w
assert k["webhooks.max_attempts"]["source"] == "default"
assert len(k) == len(d["keys"]) >= 25
' || fail "json: $out"
[ "$("$VLQ_BIN" --json config)" = "$out" ] || fail "global --json differs"

printf '[other]\n' > other.conf
out=$(VLQ_CONFIG=other.conf "$VLQ_BIN" config --json) || fail "VLQ_CONFIG exit"
echo "$out" | grep -q '"file": "other.conf"' || fail "VLQ_CONFIG: $out"

printf '[worker]\nlease_seconds = 60\npoll_ms = soon\n' > bad.conf
err=$("$VLQ_BIN" --config bad.conf config 2>&1 >/dev/null); rc=$?
[ $rc = 1 ] && [ "$err" = "vlq: bad.conf:3: worker.poll_ms: 'soon' is not an integer in [10, 3600000]" ] ||
    fail "bad value: $rc '$err'"
printf '[worker]\nwhat\n' > bad.conf
err=$("$VLQ_BIN" --config bad.conf config 2>&1 >/dev/null); rc=$?
[ $rc = 1 ] && [ "$err" = "vlq: bad.conf:2: malformed line (expected [section] or key = value)" ] ||
    fail "malformed: $rc '$err'"
err=$(VLQ_CONFIG=nope.conf "$VLQ_BIN" config 2>&1 >/dev/null); rc=$?
[ $rc = 1 ] && [ "$err" = 'vlq: nope.conf: No such file or directory' ] ||
    fail "missing: $rc '$err'"
"$VLQ_BIN" config extra >/dev/null 2>&1; [ $? = 2 ] || fail "usage exit"
"$VLQ_BIN" config --help | grep -q 'usage: vlq config' || fail "help"
# the shipped file loads with no warning
err=$("$VLQ_BIN" --config "$VLQ_ROOT/config/vlq.conf" config 2>&1 >/dev/null) || fail "shipped exit"
[ -z "$err" ] || fail "shipped warnings: $err"
exit 0
