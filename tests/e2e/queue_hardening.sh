#!/bin/bash
# Queue hardening through the real binaries: unknown job kinds are refused at submit,
# listing the kinds of that binary (the test binary's own registry, not a fixed list);
# a long idempotency key over several files is never cut (a cut key merged two files).
set -u
T="$VLQ_TESTKINDS_BIN"
V="$VLQ_BIN"
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$TEST_TMPDIR"
export VLQ_DB="$TEST_TMPDIR/q.db"
echo data > a.txt

# ---- unknown job kinds ----
out=$("$V" submit nosuchkind a.txt 2>&1); rc=$?
[ $rc = 2 ] || fail "unknown kind: exit $rc: $out"
echo "$out" | grep -q "unknown job kind 'nosuchkind' (this vlq runs: ocr, summarize)" ||
    fail "unknown kind message: $out"
out=$("$V" submit "" a.txt 2>&1); rc=$?
[ $rc = 2 ] && echo "$out" | grep -q "the job kind is empty" || fail "empty kind: $rc $out"
# the test binary knows its own kinds, and only those
out=$("$T" submit ocr a.txt 2>&1); rc=$?
[ $rc = 2 ] && echo "$out" | grep -q "this vlq runs: test.echo, test.sleep, test.flaky, test.bad" ||
    fail "test binary, ocr: $rc $out"
id=$("$T" submit test.echo a.txt) || fail "a known kind was refused"
[ -n "$id" ] || fail "no job id"
[ "$("$T" list --limit 0 | wc -l)" = 1 ] || fail "a refused submit queued something"

# ---- a long idempotency key over several files: one job per file, none merged ----
echo other > b.txt
key=$(printf 'k%.0s' $(seq 1 600))
ids=$("$T" submit test.echo a.txt b.txt --key "$key") || fail "long key submit"
[ "$(echo "$ids" | sort -u | wc -l)" = 2 ] || fail "long key: ids '$ids' (a cut key merged two files)"
again=$("$T" submit test.echo a.txt b.txt --key "$key")
[ "$again" = "$ids" ] || fail "long key resubmit: '$again' vs '$ids'"

echo "ok"
