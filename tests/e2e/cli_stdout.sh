#!/bin/bash
# A failed write to stdout is a failure (issue 10): every command that prints, writing
# to a full disk (/dev/full) or to a pipe whose reader is gone while SIGPIPE is ignored,
# exits 1 with "vlq: COMMAND: stdout: <reason>", never 0 with the output lost.
set -u
V="$VLQ_BIN"
T="$VLQ_TESTKINDS_BIN"
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$TEST_TMPDIR" || exit 1
unset VLQ_CONFIG
export VLQ_DB="$TEST_TMPDIR/q.db"
[ -w /dev/full ] || { echo "skip: no /dev/full on this system" >&2; exit 77; }
echo data > a.txt
"$T" -q init || fail "init"
id=$("$T" submit test.echo a.txt) || fail "submit"
"$T" -q worker --drain 2>/dev/null || fail "worker"
TOKJ="$VLQ_ROOT/tests/data/qwen3-tokenizer/tokenizer.json"
have_png=0
if command -v ffmpeg >/dev/null 2>&1; then
    ffmpeg -nostdin -v error -y -f lavfi -i testsrc=size=64x48 -frames:v 1 p.png && have_png=1
fi

# Each line: a command that succeeds and prints (checked first, to a file), then the same
# to /dev/full and to a closed pipe.
cmds=(
    "--help" "--version" "list --help" "submit --help" "webhooks --help" "run --help"
    "list" "--json list" "show $id" "--json show $id" "result $id"
    "config" "--json config" "webhooks list" "--json webhooks list" "webhooks send"
    "purge --older-than 365" "submit test.echo a.txt" "--json submit test.echo a.txt"
    "doctor" "--json doctor"
)
[ -f "$TOKJ" ] && cmds+=("tokenize --tokenizer $TOKJ")
# vlq run streams tokens as they come: on a tiny random model (tests/tools/make_tiny.c)
if [ -x "${VLQ_MAKE_TINY_BIN:-}" ] && "$VLQ_MAKE_TINY_BIN" tiny 7 >/dev/null 2>&1 &&
    "$V" -q convert tiny -o tiny.vlq --quant q4 2>/dev/null; then
    cmds+=("run --model tiny.vlq --max-new-tokens 4 hello")
else
    echo "note: no tiny model (make-tiny), vlq run is not checked here" >&2
fi
[ $have_png = 1 ] && cmds+=("plan p.png --kind ocr --prompt-tokens 40" "--json plan p.png --kind ocr --prompt-tokens 40")
for c in "${cmds[@]}"; do
    # shellcheck disable=SC2086
    echo hello | "$T" $c > ok.out 2> ok.err || fail "$c: exit $? before any write error: $(cat ok.err)"
    [ -s ok.out ] || fail "$c: printed nothing, so it tests nothing"
    name=$(echo "$c" | sed 's/^--json //; s/ .*//') # the command names the message
    echo hello | "$T" $c > /dev/full 2> full.err; rc=$?
    [ $rc = 1 ] || fail "$c > /dev/full: exit $rc, want 1 ($(cat full.err))"
    # (the reason is known when the last flush fails; a write that failed earlier, in a
    # long output, is reported as a write error)
    grep -Eq "^vlq: $name: stdout: (No space left on device|write error)$" full.err ||
        fail "$c > /dev/full: message '$(cat full.err)'"
    # a pipe whose reader has closed, SIGPIPE ignored (as under some supervisors): EPIPE
    python3 - "$T" $c <<'PY' || fail "$c into a closed pipe"
import os, signal, subprocess, sys
r, w = os.pipe()
os.close(r)
p = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=w, stderr=subprocess.PIPE,
                   preexec_fn=lambda: signal.signal(signal.SIGPIPE, signal.SIG_IGN))
err = p.stderr.decode()
if p.returncode != 1 or not ("stdout: Broken pipe" in err or "stdout: write error" in err):
    sys.exit("exit %d, stderr %r" % (p.returncode, err))
PY
done
exit 0
