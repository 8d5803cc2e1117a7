#!/bin/sh
# vlq convert / vlq export through the real binary: the tiny golden checkpoint to Q4 and
# back, usage errors (exit 2), failures (exit 1 with "vlq: <file>: <reason>").
set -eu
: "${VLQ_BIN:?}" "${VLQ_ROOT:?}" "${TEST_TMPDIR:=$(mktemp -d)}"
cd "$TEST_TMPDIR"
tiny="$VLQ_ROOT/tests/golden/tiny"
tok="$VLQ_ROOT/tests/data/qwen3-tokenizer/tokenizer.json"
fail() { echo "FAIL: $*" >&2; exit 1; }

"$VLQ_BIN" convert --help | grep -q "usage: vlq convert" || fail "convert --help"
"$VLQ_BIN" export --help | grep -q "usage: vlq export" || fail "export --help"
"$VLQ_BIN" convert "$tiny" -o q4.vlq --tokenizer "$tok" 2>log || fail "convert: $(cat log)"
grep -q "wrote q4.vlq" log || fail "no summary line"
[ "$(head -c 8 q4.vlq)" = VLQMODEL ] || fail "magic"
"$VLQ_BIN" export q4.vlq -o out 2>log || fail "export: $(cat log)"
[ -s out/model.safetensors ] && [ -s out/config.json ] || fail "export files"

rc=0; "$VLQ_BIN" convert "$tiny" 2>log || rc=$?
[ "$rc" = 2 ] || fail "missing -o: exit $rc"
rc=0; "$VLQ_BIN" convert "$tiny" -o x.vlq --quant q3 2>log || rc=$?
[ "$rc" = 2 ] && grep -q "expected q4, q8, f16 or none" log || fail "bad --quant: exit $rc"
rc=0; "$VLQ_BIN" convert "$tiny" -o x.vlq --group 48 2>log || rc=$?
[ "$rc" = 2 ] || fail "bad --group: exit $rc"
rc=0; "$VLQ_BIN" convert "$VLQ_ROOT/tests/data/qwen3-vl-4b-instruct" -o x.vlq --tokenizer "$tok" 2>log || rc=$?
[ "$rc" = 1 ] && grep -q "^vlq: .*model.safetensors: No such file" log || fail "no weights: $(cat log)"
[ ! -e x.vlq ] || fail "a failed convert left x.vlq"
head -c 1000 q4.vlq > cut.vlq
rc=0; "$VLQ_BIN" export cut.vlq -o out2 2>log || rc=$?
[ "$rc" = 1 ] && grep -q "cut.vlq: truncated" log || fail "truncated: $(cat log)"
echo ok
