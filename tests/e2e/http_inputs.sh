#!/bin/bash
# http(s) inputs through the real binaries, served by tests/tools/http_files.py on
# 127.0.0.1: submit records the URL (refused without [inputs] allowed_hosts, naming the
# key), the worker downloads into a per-job directory that is gone afterwards (also after
# a failure), the SHA-256 is recorded at the first download and a retry that downloads
# other bytes is dead (EINPUT); 404 is dead at once, 503 is retried, the size cap holds.
set -u
T="$VLQ_TESTKINDS_BIN"
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$TEST_TMPDIR"
unset http_proxy HTTP_PROXY https_proxy HTTPS_PROXY all_proxy ALL_PROXY
export VLQ_DB="$TEST_TMPDIR/q.db"
mkdir srv dl
python3 "$VLQ_ROOT/tests/tools/http_files.py" --dir srv --port-file port.txt --log req.log &
srv=$!
trap 'kill $srv 2>/dev/null' EXIT
for _ in $(seq 1 200); do [ -s port.txt ] && break; sleep 0.02; done
[ -s port.txt ] || fail "http_files.py did not start"
base="http://127.0.0.1:$(cat port.txt)"
field() { "$T" --json show "$1" | python3 -c "import json,sys; j=json.load(sys.stdin); print($2)"; }

# no allowed host: refused at submit, the message names the key; nothing queued
"$T" init 2>/dev/null
if "$T" submit test.echo "$base/files/a.pdf" 2> refused.err; then fail "submit without allowed_hosts"; fi
grep -q "allowed_hosts" refused.err || fail "the refusal does not name [inputs] allowed_hosts: $(cat refused.err)"
[ "$("$T" list --limit 0 | wc -l)" = 0 ] || fail "a refused submit queued a job"

cat > vlq.conf <<EOF
[inputs]
allowed_hosts = 127.0.0.1
download_dir = $TEST_TMPDIR/dl
max_download_mb = 1
[worker]
poll_ms = 50
EOF
export VLQ_CONFIG="$TEST_TMPDIR/vlq.conf"
if "$T" submit test.echo "http://localhost:1/a.pdf" 2> host.err; then fail "a host not allowed was accepted"; fi
grep -q "not in \[inputs\] allowed_hosts" host.err || fail "host refusal: $(cat host.err)"

# a plain download: the result is the SHA-256 and size of the served bytes, recorded
printf 'first version of the document\n' > srv/doc.txt
want="$(sha256sum srv/doc.txt | cut -d' ' -f1) $(stat -c %s srv/doc.txt)"
id=$("$T" submit test.echo "$base/files/doc.txt?sig=abc") || fail "submit of a URL"
[ "$(field "$id" 'j["inputs"][0]["path"]')" = "$base/files/doc.txt?sig=abc" ] || fail "the URL is not what was recorded"
grep -q doc.txt req.log 2>/dev/null && fail "submit downloaded the input"
"$T" worker --drain 2> w1.log || fail "worker: $(cat w1.log)"
[ "$("$T" result "$id")" = "$want" ] || fail "result '$("$T" result "$id")' != '$want'"
[ "$(field "$id" 'j["inputs"][0]["sha256"]')" = "${want%% *}" ] || fail "the SHA-256 was not recorded"
[ -z "$(ls -A dl)" ] || fail "download directory left behind: $(ls -A dl)"

# the first download is recorded; a retry that gets other bytes is dead (EINPUT)
printf 'version one\n' > srv/flip.txt
id=$("$T" submit test.flaky "$base/files/flip.txt" --prompt 1 --max-attempts 3)
"$T" worker --max-jobs 1 2> w2.log
[ "$(field "$id" 'j["status"]')" = failed ] || fail "flaky attempt 1: $(field "$id" 'j["status"]')"
[ -z "$(ls -A dl)" ] || fail "download directory left behind after a failure"
printf 'version two, longer\n' > srv/flip.txt
sleep 1.2 # the backoff after attempt 1 (1 s +-10%)
"$T" worker --drain 2> w3.log
[ "$(field "$id" 'j["status"]')" = dead ] || fail "a changed download: $(field "$id" 'j["status"]'), not dead"
[ "$(field "$id" 'j["error_code"]')" = EINPUT ] || fail "a changed download: not EINPUT"
field "$id" 'j["error"]' | grep -q "differs from the first" || fail "changed download message: $(field "$id" 'j["error"]')"
[ -z "$(ls -A dl)" ] || fail "download directory left behind after a dead job"

# 404: dead at once; 503 then 200: retried, succeeds; over the cap: dead
id404=$("$T" submit test.echo "$base/files/absent.txt")
cp srv/doc.txt srv/later.txt
id503=$("$T" submit test.echo "$base/fail-first/1/later.txt")
head -c 2000000 /dev/zero > srv/big.bin
idbig=$("$T" submit test.echo "$base/files/big.bin")
"$T" worker --drain 2> w4.log
[ "$(field "$id404" 'j["status"]')" = dead ] || fail "404: not dead"
field "$id404" 'j["error"]' | grep -q "HTTP 404" || fail "404 message"
[ "$(field "$idbig" 'j["status"]')" = dead ] || fail "over the cap: not dead"
field "$idbig" 'j["error"]' | grep -q "max_download_mb" || fail "cap message"
[ "$(field "$id503" 'j["status"]')" = failed ] || fail "503: not failed (transient)"
[ "$(field "$id503" 'j["error_code"]')" = ENET ] || fail "503: not ENET"
sleep 1.2
"$T" worker --drain 2> w5.log
[ "$(field "$id503" 'j["status"]')" = succeeded ] || fail "503 then 200: not succeeded"
[ "$("$T" result "$id503")" = "$want" ] || fail "503 then 200: wrong result"
[ -z "$(ls -A dl)" ] || fail "download directory left behind"
echo "http inputs ok"
