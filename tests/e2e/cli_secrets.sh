#!/bin/bash
# Secrets are never printed (issue 10): the webhook secret (config and per job) and the
# password in a URL (a webhook URL, a --db postgresql:// URL, $VLQ_DB) stay out of
# `vlq config` (text and JSON), list, show, webhooks list, the worker's logs and the error
# messages; each shows them redacted ("whsec_***", "user:***@").
set -u
V="$VLQ_BIN"
T="$VLQ_TESTKINDS_BIN"
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$TEST_TMPDIR" || exit 1
unset VLQ_CONFIG VLQ_DB
CFG_SECRET=whsec_Y29uZmlnLXNlY3JldC1jb25maWctc2VjcmV0LTEyMzQ=
JOB_SECRET=whsec_am9iLXNlY3JldC1qb2Itc2VjcmV0LWpvYi1zZWNyZXQ=
PW=hunter2pw
PGPW=pgs3cretpw
# the secrets and the base64 of the keys, none of which may be printed
SECRETS="$PW $PGPW ${CFG_SECRET#whsec_} ${JOB_SECRET#whsec_}"
printf '[webhooks]\nsecret = %s\nschedule = 0\nmax_attempts = 1\ntimeout_ms = 500\n' \
    "$CFG_SECRET" > vlq.conf
printf 'connect_timeout_ms = 500\n[worker]\npoll_ms = 50\n' >> vlq.conf
export VLQ_DB="$TEST_TMPDIR/q.db"
echo data > a.txt
: > all.out
# run ARGS...: run a command, keep everything it printed (stdout and stderr) in all.out
run() { "$@" >> all.out 2>&1; }
check() { # what: no secret anywhere in all.out, and the redacted forms are there
    for s in $SECRETS; do
        ! grep -F -q -- "$s" all.out || fail "$1: a secret is printed: $(grep -F -- "$s" all.out | head -3)"
    done
}

"$T" -q init || fail "init"
# a closed port: the delivery fails, its error is recorded and logged
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL="http://bob:$PW@127.0.0.1:$PORT/hook"
id=$("$T" submit test.echo a.txt --webhook "$URL" --secret "$JOB_SECRET") || fail "submit"
run "$T" -v worker --drain
run "$T" -v webhooks send
check "worker logs"
for c in "list" "--json list" "show $id" "--json show $id" "webhooks list" \
         "--json webhooks list" "config" "--json config" "--db postgresql://app:$PGPW@127.0.0.1:1/vlq config" \
         "--db postgresql://app:$PGPW@127.0.0.1:1/vlq --json config"; do
    : > one.out
    "$T" $c > one.out 2>&1
    cat one.out >> all.out
    check "$c"
done
grep -q "bob:\*\*\*@127.0.0.1" all.out || fail "the webhook URL is not shown redacted"
grep -q '"url": "http://bob:\*\*\*@127.0.0.1' all.out || fail "webhooks list --json: no redacted url"
grep -Eq '^webhooks.secret +=  *whsec_\*\*\* ' all.out || fail "config: secret not shown redacted"
grep -q '"value": "whsec_\*\*\*"' all.out || fail "config --json: secret not shown redacted"
grep -q "postgresql://app:\*\*\*@127.0.0.1:1/vlq" all.out || fail "config: --db URL not redacted"
out=$(VLQ_DB="postgresql://app:$PGPW@127.0.0.1:1/vlq" "$T" config 2>&1)
echo "$out" >> all.out
echo "$out" | grep -Eq "^queue.db += postgresql://app:\*\*\*@127.0.0.1:1/vlq +; env VLQ_DB" ||
    fail "config: \$VLQ_DB URL: $out"

# error messages that quote a URL or a database location
run "$T" submit test.echo a.txt --webhook "ftp://bob:$PW@example.com/x"
run "$T" submit test.echo a.txt --webhook "http://bob:$PW@"
run "$T" --db "postgresql://app:$PGPW@127.0.0.1:1/vlq" list
run "$T" --db "postgresql://app:$PGPW@127.0.0.1:1/vlq" submit test.echo a.txt
run "$T" --db "host=127.0.0.1 port=1 password=$PGPW dbname=vlq" list
run "$T" submit test.echo a.txt --secret "whsec_${PW}notbase64!"
check "error messages"
grep -q "ftp://bob:\*\*\*@example.com" all.out || fail "submit: bad URL not quoted redacted"
exit 0
