#!/bin/bash
# Usage errors (issue 10): every command and subcommand answers an unknown option, a
# missing option value and a stray argument with exit 2 and one line that starts
# "vlq: COMMAND: "; no input reaches an assertion (an empty job kind used to abort
# `vlq submit`).
set -u
V="$VLQ_BIN"
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$TEST_TMPDIR" || exit 1
unset VLQ_CONFIG VLQ_DB
echo x > a.txt
"$V" -q init || fail "init"

# usage CMD ARGS...: exit 2, stderr's first line "vlq: CMD: ...", no abort, empty stdout
usage() {
    local cmd=$1; shift
    local out rc
    out=$("$V" $cmd "$@" 2>err.txt); rc=$?
    [ $rc = 2 ] || fail "$cmd $*: exit $rc, want 2 ($(cat err.txt))"
    [ -z "$out" ] || fail "$cmd $*: stdout '$out'"
    head -n 1 err.txt | grep -q "^vlq: $cmd: ." || fail "$cmd $*: stderr '$(cat err.txt)'"
    ! grep -q "assertion failed" err.txt || fail "$cmd $*: an assertion: $(cat err.txt)"
}

# every command of `vlq --help` is covered here
cmds=$("$V" --help | sed -n 's/^  \([a-z]*\)  .*/\1/p')
for c in $cmds; do
    case " init submit worker list show result cancel retry purge config tokenize convert run \
          export plan webhooks doctor queue selftest " in *" $c "*) ;; *) fail "command $c is not tested" ;; esac
done

for c in init submit worker list show result cancel retry purge config tokenize convert run \
         export plan webhooks "webhooks list" "webhooks send" "webhooks redeliver" doctor \
         queue "queue copy" selftest; do
    usage "$c" --no-such-option
done
usage init extra
usage config extra
usage worker extra
usage list extra
usage purge --older-than 1 extra
usage show
usage show 1 2
usage cancel
usage retry 1 2
usage result
usage result 1 2
usage tokenize --tokenizer t.json extra
usage tokenize
usage doctor extra
usage webhooks
usage webhooks nope
usage "webhooks list" extra
usage "webhooks send" extra
usage "webhooks redeliver"
usage export
usage export m.vlq
usage selftest extra
usage queue
usage queue nope
usage "queue copy" --from a.db
usage "queue copy" --from a.db --to a.db
usage "queue copy" --from a.db --to b.db extra
usage convert hf
usage run
usage run --model m.vlq
usage plan a.txt
usage plan --kind nope a.txt
usage plan --kind ocr
usage submit
usage submit ocr
usage submit ocr a.txt --prompt x --prompt-file p.txt
usage submit ocr a.txt --run-after tomorrow
usage list --status nope
usage convert hf -o out.vlq --quant q3

# a missing value, for every option that takes one
for spec in "submit ocr a.txt --webhook" "submit ocr a.txt --secret" "submit ocr a.txt --key" \
            "submit ocr a.txt --prompt" "submit ocr a.txt --run-after" "list --status" \
            "list --kind" "result 1 --format" "result 1 -o" "purge --older-than" \
            "worker --max-jobs" "webhooks list --job" "webhooks send --max" \
            "tokenize --tokenizer" "convert hf -o" "convert hf -o x --quant" "run --model" \
            "run hi --image" "plan a.txt --kind" "plan --kind ocr a.txt --pages" \
            "doctor --model" "queue copy --from" "selftest --seed"; do
    set -- $spec
    c=$1; shift
    [ "$c" = webhooks ] || [ "$c" = queue ] && { c="$c $1"; shift; }
    usage "$c" "$@"
    grep -q "needs a value" err.txt || fail "$spec: $(cat err.txt)"
done
# a value given to an option that takes none
usage worker --drain=yes
grep -q "takes no value" err.txt || fail "--drain=yes: $(cat err.txt)"

# an unfinished prefix that fits several options names them
usage run --top 1 hi
grep -q "ambiguous option '--top' (--top-k, --top-p)" err.txt || fail "--top: $(cat err.txt)"

# an empty job kind is a usage error, not an assertion; nothing is queued
n0=$("$V" list --limit 0 | wc -l)
usage submit "" a.txt
grep -q "the job kind is empty" err.txt || fail "empty kind: $(cat err.txt)"
[ "$("$V" list --limit 0 | wc -l)" = "$n0" ] || fail "empty kind: something was queued"
# and so are an empty idempotency key and an empty prompt
usage submit ocr a.txt --key ""
grep -q -- "--key is empty" err.txt || fail "empty key: $(cat err.txt)"
usage submit ocr a.txt --prompt=
grep -q -- "--prompt is empty" err.txt || fail "empty prompt: $(cat err.txt)"
exit 0
