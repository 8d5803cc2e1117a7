#!/bin/bash
# Messages (issue 10): --priority states its range; --run-after refuses days that do not
# exist and absurd offsets; an empty JSON config says so; `vlq list` and `vlq show`
# escape control characters of file names and stored strings; JSON has null for unset
# values in every command; `vlq show` is a readable view unless --json.
set -u
V="$VLQ_BIN"
T="$VLQ_TESTKINDS_BIN"
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$TEST_TMPDIR" || exit 1
unset VLQ_CONFIG
export VLQ_DB="$TEST_TMPDIR/q.db"
echo data > a.txt
"$T" -q init || fail "init"

# --priority: the range is stated
err=$("$T" submit test.echo a.txt --priority 5000000 2>&1); rc=$?
[ $rc = 2 ] && [ "$err" = "vlq: submit: --priority: '5000000' is out of range [-1000000, 1000000]" ] ||
    fail "priority: $rc '$err'"
err=$("$T" submit test.echo a.txt --priority high 2>&1); rc=$?
[ $rc = 2 ] && echo "$err" | grep -q "\[-1000000, 1000000\]" || fail "priority word: $rc '$err'"
"$T" submit --help | grep -q -- "--priority N .*-1000000 to 1000000" || fail "priority help"

# --run-after: days that do not exist, times out of range, absurd offsets
for t in 2026-02-30T00:00:00Z 2026-02-29T10:00:00Z 2025-04-31T00:00:00Z 2026-13-01T00:00:00Z \
         2026-01-01T25:00:00Z 2026-01-01T00:61:00Z 1969-12-31T23:59:59Z 2026-00-10T00:00:00Z \
         +1e300d +99999999999999999999 +inf +nan +-5m +5y + +m "" 2026-01-01T00:00:00+05; do
    err=$("$T" submit test.echo a.txt --run-after "$t" 2>&1); rc=$?
    [ $rc = 2 ] && echo "$err" | grep -q "^vlq: submit: --run-after '$t'" || fail "run-after '$t': $rc '$err'"
done
err=$("$T" submit test.echo a.txt --run-after 2026-02-30T00:00:00Z 2>&1)
echo "$err" | grep -q "no such time" || fail "run-after: '$err'"
err=$("$T" submit test.echo a.txt --run-after +4000d 2>&1)
echo "$err" | grep -q "at most 10 years" || fail "run-after offset: '$err'"
# the good ones still work: a leap day, an offset, a date far ahead
for t in 2028-02-29T12:00:00Z "2030-01-01 00:00:00" +30m +2h +1.5d +0 +3650d 9999-12-31T23:59:59Z; do
    "$T" submit test.echo a.txt --run-after "$t" > /dev/null || fail "run-after '$t' refused"
done
ra=$("$T" --json list --limit 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["run_after"])')
[ "$ra" = 9999-12-31T23:59:59Z ] || fail "run-after stored as $ra"

# an empty JSON config (a checkpoint's config.json) says so
mkdir hf; : > hf/config.json
err=$("$V" convert hf -o out.vlq 2>&1); rc=$?
[ $rc = 1 ] && [ "$err" = "vlq: hf/config.json: the file is empty (a JSON object was expected)" ] ||
    fail "empty config.json: $rc '$err'"

# control characters in a file name and in stored strings: escaped in text output
evil=$(printf 'ev\033[2Jil\nname\t.txt')
echo x > "$evil"
id=$("$T" submit test.echo "$evil") || fail "submit evil"
"$T" list > list.txt || fail "list"
! grep -q "$(printf '\033')" list.txt || fail "list prints an escape character"
grep -q 'ev\\x1b\[2Jil\\nname\\t.txt' list.txt || fail "list: $(cat list.txt)"
[ "$(grep -c . list.txt)" = "$("$T" --json list | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" ] ||
    fail "list: a file name broke a line: $(cat list.txt)"
"$T" show "$id" > show.txt || fail "show"
! grep -q "$(printf '\033')" show.txt || fail "show prints an escape character"
grep -q '^input .*ev\\x1b\[2Jil\\nname\\t.txt' show.txt || fail "show: $(cat show.txt)"
"$T" --json show "$id" | python3 -c '
import json, sys
j = json.load(sys.stdin)
assert j["inputs"][0]["path"].endswith("ev\x1b[2Jil\nname\t.txt"), j["inputs"]' ||
    fail "show --json does not keep the exact name"

# show: readable unless --json
"$T" show "$id" | head -n 1 | grep -q "^job $id  test.echo  queued  attempt 0/3$" ||
    fail "show text: $(head -n 2 show.txt)"
! grep -q '^[{"]' show.txt || fail "show text looks like JSON"
grep -q "^started   -$" show.txt || fail "show: unset time: $(cat show.txt)"
"$T" show "$id" --json | python3 -c 'import json,sys; json.load(sys.stdin)' || fail "show --json"

# JSON: unset values are null in every command
"$T" --json list | python3 -c '
import json, sys
j = [x for x in json.load(sys.stdin) if x["status"] == "queued"][0]
for k in ("started_at", "finished_at", "error_code", "error", "webhook"):
    assert j[k] is None, (k, j[k])
assert isinstance(j["created_at"], str)' || fail "list --json nulls"
"$T" --json show "$id" | python3 -c '
import json, sys
j = json.load(sys.stdin)
for k in ("started_at", "finished_at", "error_code", "error", "webhook", "progress"):
    assert j[k] is None, (k, j[k])' || fail "show --json nulls"
"$T" --json config | python3 -c '
import json, sys
d = json.load(sys.stdin)
k = {x["key"]: x for x in d["keys"]}
assert d["file"] is None, d["file"]
assert k["model.path"]["value"] is None, k["model.path"]
assert k["webhooks.secret"]["value"] is None, k["webhooks.secret"]
assert k["worker.poll_ms"]["value"] == "1000"
assert "" not in [x["value"] for x in d["keys"]]' || fail "config --json nulls"
# a webhook event that was never tried: null status and error, in list and show alike
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
wid=$("$T" submit test.echo a.txt --webhook "http://127.0.0.1:$PORT/h") || fail "submit webhook"
printf '[webhooks]\nschedule = 1d\n' > late.conf
"$T" --config late.conf cancel "$wid" 2>/dev/null || fail "cancel"
"$T" --json webhooks list | python3 -c '
import json, sys
e = json.load(sys.stdin)[0]
assert e["last_status"] is None and e["last_error"] is None, e' || fail "webhooks list --json nulls"
"$T" --json show "$wid" | python3 -c '
import json, sys
e = json.load(sys.stdin)["events"][0]
assert e["last_status"] is None and e["last_error"] is None, e' || fail "show --json event nulls"
# the job's error names the file: escaped in the worker's log (logfmt, not a terminal) and in list
evil2=$(printf 'ch\033]0;title\007anged.txt')
echo one > "$evil2"
cid=$("$T" submit test.echo "$evil2") || fail "submit evil2"
echo "two, longer" > "$evil2" # changed after submit (another size): the job fails naming it
"$T" worker --drain 2> w.log; rc=$?
[ $rc = 3 ] || fail "worker: exit $rc: $(cat w.log)"
! grep -q "$(printf '\033')" w.log || fail "worker log prints an escape character: $(cat -A w.log)"
grep -q 'ch\\x1b\]0;title\\x07anged.txt' w.log || fail "worker log: $(cat w.log)"
"$T" list --status dead > dead.txt
! grep -q "$(printf '\033')" dead.txt || fail "list prints the error's escape character"
grep -q "^$cid "'.*ch\\x1b\]0;title\\x07anged.txt.*changed' dead.txt || fail "list error: $(cat dead.txt)"
exit 0
