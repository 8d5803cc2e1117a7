#!/bin/bash
# Numeric flags and config values (issue 10): every numeric flag of every command refuses
# NaN, infinities, overflow, garbage and out-of-range values as a usage error (exit 2,
# "vlq: COMMAND: --flag: 'VALUE' ... RANGE"), never a crash; every numeric config key
# refuses them with file:line: key: and the range (exit 1, a config error); and a flag
# that stands for a key accepts exactly what the key accepts (one range, in cfg.c).
set -u
V="$VLQ_BIN"
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$TEST_TMPDIR" || exit 1
unset VLQ_CONFIG VLQ_DB
echo x > a.txt
"$V" -q init || fail "init"

# refused CMD FLAG VALUE ARGS...: exit 2 and a message naming the command, flag, value
# and a range; no core dump, nothing on stdout
refused() {
    local cmd=$1 flag=$2 val=$3; shift 3
    local out err rc
    out=$("$V" $cmd "$@" "$flag" "$val" 2>err.txt); rc=$?
    err=$(cat err.txt)
    [ $rc = 2 ] || fail "$cmd $flag '$val': exit $rc, want 2 ($err)"
    [ -z "$out" ] || fail "$cmd $flag '$val': printed '$out'"
    case "$err" in
    "vlq: $cmd: $flag: '${val:0:40}"*) ;;
    *) fail "$cmd $flag '$val': message '$err'" ;;
    esac
    echo "$err" | grep -Eq "[[(].*, .*[])]" || fail "$cmd $flag '$val': no range in '$err'"
}
# accepted CMD FLAG VALUE ARGS...: not refused as a usage error
accepted() {
    local cmd=$1 flag=$2 val=$3; shift 3
    "$V" $cmd "$@" "$flag" "$val" >/dev/null 2>err.txt; local rc=$?
    [ $rc != 2 ] && [ $rc -lt 128 ] || fail "$cmd $flag '$val': exit $rc ($(cat err.txt))"
}

BAD="nan -inf 1e999 -99999999999999999999 1x"
for v in $BAD ""; do # (num/int and num/real test the rest of the spellings)
    for f in --max-new-tokens --seed --temperature --top-k --top-p --repetition-penalty; do
        refused run "$f" "$v" --model none.vlq
    done
    for f in --priority --max-attempts --temperature --top-p --top-k --repetition-penalty --seed; do
        refused submit "$f" "$v" ocr a.txt
    done
    refused list --limit "$v"
    refused purge --older-than "$v"
    for f in --max-jobs --lease-seconds --concurrency; do refused worker "$f" "$v"; done
    refused "webhooks list" --job "$v"
    refused "webhooks send" --max "$v"
    for f in --budget --max-new-tokens --prompt-tokens --fps --from --to --max-frames --dpi \
             --max-pixels; do
        refused plan "$f" "$v" --kind ocr a.txt
    done
    refused convert --group "$v" -o out.vlq hf
    refused selftest --seed "$v"
done

# out of range, per flag (the edges of the reference's ranges)
refused run --top-p 0 --model none.vlq
refused run --top-p 2 --model none.vlq
refused run --top-p 1e-60 --model none.vlq      # > 0 as a double, 0 as the float it becomes
refused run --repetition-penalty 0 --model none.vlq
refused run --temperature -0.5 --model none.vlq
refused run --top-k -1 --model none.vlq
refused run --top-k 2.5 --model none.vlq
refused run --max-new-tokens 0 --model none.vlq
refused run --seed -1 --model none.vlq
refused submit --priority 1000001 ocr a.txt
refused submit --priority 1.5 ocr a.txt
refused submit --max-attempts 0 ocr a.txt
refused submit --top-p 1.5 ocr a.txt
refused list --limit -1
refused list --limit 3000000000
refused purge --older-than -1
refused worker --lease-seconds 0
refused worker --concurrency 0
refused "webhooks list" --job 0
refused "webhooks send" --max 0
refused plan --fps 0 --kind ocr a.txt
refused plan --dpi 5 --kind ocr a.txt
refused convert --group 16 -o out.vlq hf
# accepted edges (they may fail later for other reasons, but not as usage errors)
accepted run --top-p 1 --model none.vlq hi
accepted run --temperature 0 --model none.vlq hi
accepted run --top-k 0 --model none.vlq hi
accepted list --limit 0
accepted purge --older-than 0

# job ids
for cmd in show cancel retry result; do
    for v in 0 -1 abc 1.5 99999999999999999999 ""; do
        "$V" $cmd "$v" >/dev/null 2>err.txt; rc=$?
        # (result parses options: "-1" is an unknown option there, still a usage error)
        [ $rc = 2 ] && grep -Eq "^vlq: $cmd: ('.*' is not a job id|unknown option '-1')" err.txt ||
            fail "$cmd '$v': exit $rc, $(cat err.txt)"
    done
done

# --temperature nan used to crash `vlq run` inside the sampler: it is refused before the
# model is opened, and the config's NaN likewise
"$V" run --model none.vlq --temperature nan hi 2>err.txt; rc=$?
[ $rc = 2 ] || fail "run --temperature nan: exit $rc"

# every numeric key of the table refuses the same bad values, naming file:line, the key,
# the value and the range; exit 1 (a config error)
keys=$("$V" config --json | python3 -c '
import json, sys
for k in json.load(sys.stdin)["keys"]:
    if k["type"] in ("int", "number"):
        print(k["key"])')
[ "$(echo "$keys" | wc -l)" -ge 30 ] || fail "numeric keys: $keys"
for key in $keys; do
    sec=${key%%.*}; name=${key#*.}
    for v in nan 1e999 99999999999999999999 abc; do
        printf '[%s]\n%s = %s\n' "$sec" "$name" "$v" > k.conf
        "$V" --config k.conf config >/dev/null 2>err.txt; rc=$?
        err=$(cat err.txt)
        [ $rc = 1 ] || fail "$key = $v: exit $rc ($err)"
        case "$err" in "vlq: k.conf:2: $key: '$v' is "*) ;; *) fail "$key = $v: '$err'" ;; esac
        echo "$err" | grep -Eq "[[(].*, .*[])]$" || fail "$key = $v: no range in '$err'"
    done
done

# one source of truth: a flag and the key it stands for agree on every value
agree() { # section.key, command, flag, extra args...
    local key=$1 cmd=$2 flag=$3; shift 3
    for v in 0 1 2 0.5 1e-60 -1 100 101 1000000 1000001 nan 2.5; do
        printf '[%s]\n%s = %s\n' "${key%%.*}" "${key#*.}" "$v" > k.conf
        "$V" --config k.conf config >/dev/null 2>&1; local krc=$?
        "$V" $cmd "$@" "$flag" "$v" >/dev/null 2>&1; local frc=$?
        { [ $krc = 0 ] && [ $frc != 2 ]; } || { [ $krc = 1 ] && [ $frc = 2 ]; } ||
            fail "$key and $cmd $flag disagree on '$v': config exit $krc, flag exit $frc"
    done
}
agree sampling.top_p run --top-p --model none.vlq hi
agree sampling.temperature run --temperature --model none.vlq hi
agree sampling.top_k run --top-k --model none.vlq hi
agree sampling.repetition_penalty run --repetition-penalty --model none.vlq hi
agree summarize.top_p submit --top-p ocr none.txt
agree summarize.repetition_penalty submit --repetition-penalty ocr none.txt
agree worker.lease_seconds worker --lease-seconds --db /nonexistent/dir/q.db --drain
agree worker.concurrency worker --concurrency --db /nonexistent/dir/q.db --drain
agree media.fps plan --fps --kind ocr --prompt-tokens 10 none.png
agree media.pdf_dpi plan --dpi --kind ocr --prompt-tokens 10 none.png
exit 0
