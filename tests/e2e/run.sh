#!/bin/sh
# vlq run: usage errors and bad inputs give the documented exit statuses and a message
# naming the problem; the golden model tests (test_forward.c) cover the numbers.
set -u
VLQ=${VLQ_BIN:?VLQ_BIN not set}
T=${TEST_TMPDIR:-$(mktemp -d)}
fail() { echo "run.sh: $*" >&2; exit 1; }

"$VLQ" run --help >"$T/help" 2>&1 || fail "--help exit $?"
grep -q -- "--max-new-tokens" "$T/help" || fail "--help does not list --max-new-tokens"

"$VLQ" run "hello" >/dev/null 2>"$T/err"; rc=$?
[ $rc -eq 2 ] || fail "no --model: exit $rc, want 2"
grep -q -- "--model" "$T/err" || fail "no --model: message does not say so"

"$VLQ" run --model "$T/none.vlq" "hello" >/dev/null 2>"$T/err"; rc=$?
[ $rc -eq 1 ] || fail "missing model: exit $rc, want 1"
grep -q "none.vlq" "$T/err" || fail "missing model: message does not name the file"

"$VLQ" run --model x --max-new-tokens abc "hi" >/dev/null 2>"$T/err"; rc=$?
[ $rc -eq 2 ] || fail "bad --max-new-tokens: exit $rc, want 2"

# the tiny golden model speaks remapped ids (tests/golden/README.md): a clear refusal
"$VLQ" -q convert "$VLQ_ROOT/tests/golden/tiny" -o "$T/tiny.vlq" || fail "convert tiny"
"$VLQ" run --model "$T/tiny.vlq" "hi" >/dev/null 2>"$T/err"; rc=$?
[ $rc -eq 1 ] || fail "tiny model: exit $rc, want 1"
grep -q "tokenizer has" "$T/err" || fail "tiny model: $(cat "$T/err")"
exit 0
