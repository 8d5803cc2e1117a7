#!/bin/bash
# Inputs through the real binaries: a FIFO, a directory or a device is refused at once by
# every command that reads a file (submit, plan, run --image/--video, --model, --config,
# tokenize --tokenizer), never waited on; an input replaced after submit by a FIFO or a
# directory, or rewritten with the same size and mtime, fails its job (EINPUT, dead) and
# never hangs the worker; a symlink loop under --recursive is named.
set -u
T="$VLQ_TESTKINDS_BIN"
V="$VLQ_BIN"
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$TEST_TMPDIR"
export VLQ_DB="$TEST_TMPDIR/q.db"
mkfifo fifo.png fifo.mp4 fifo.pdf fifo.vlq fifo.json fifo.conf
mkdir dir.png

# $1: what; the rest: the command. It must end within 20 s, exit non-zero, and say
# "not a regular file" on stderr.
refuses() {
    local what=$1; shift
    local rc=0
    timeout 20 "$@" > out.txt 2> err.txt || rc=$?
    [ "$rc" != 124 ] || fail "$what: hung on a FIFO"
    [ "$rc" != 0 ] || fail "$what: accepted"
    grep -q "not a regular file" err.txt || fail "$what: $(cat err.txt)"
}

refuses "submit FIFO" "$T" submit test.echo fifo.png
refuses "submit device" "$T" submit test.echo /dev/zero
refuses "plan FIFO image" "$V" plan --kind ocr --prompt-tokens 20 fifo.png
refuses "plan FIFO video" "$V" plan --kind summarize --prompt-tokens 20 fifo.mp4
refuses "plan FIFO pdf" "$V" plan --kind ocr --prompt-tokens 20 fifo.pdf
refuses "plan directory" "$V" plan --kind ocr --prompt-tokens 20 dir.png
refuses "run --model FIFO" "$V" run --model fifo.vlq "hi"
refuses "--config FIFO" "$V" --config fifo.conf config
refuses "tokenize --tokenizer FIFO" "$V" tokenize --tokenizer fifo.json
refuses "submit --prompt-file FIFO" "$T" submit test.echo --prompt-file fifo.json /dev/null
refuses "convert --tokenizer FIFO" "$V" convert "$VLQ_ROOT/tests/golden/tiny" -o x.vlq \
    --tokenizer fifo.json
[ ! -e x.vlq ] || fail "a refused convert left x.vlq"

# run --image / --video with a real (tiny) model
"$VLQ_MAKE_TINY_BIN" tiny 7 > /dev/null || fail "make-tiny"
"$V" -q convert tiny -o tiny.vlq --quant q4 || fail "convert tiny"
refuses "run --image FIFO" "$V" run --model tiny.vlq --max-new-tokens 2 --image fifo.png "hi"
refuses "run --video FIFO" "$V" run --model tiny.vlq --max-new-tokens 2 --video fifo.mp4 "hi"
refuses "run --image directory" "$V" run --model tiny.vlq --max-new-tokens 2 --image dir.png "hi"

# --recursive: a symlink back to a folder being walked is a loop, named as such
mkdir -p tree/sub && echo a > tree/a.txt && ln -s .. tree/sub/up
rc=0; timeout 20 "$T" submit test.echo --recursive tree > out.txt 2> err.txt || rc=$?
[ "$rc" = 1 ] && grep -q "tree/sub/up: symlink loop under --recursive" err.txt ||
    fail "recursive loop: exit $rc: $(cat err.txt)"
ln -s self tree/self
rc=0; timeout 20 "$T" submit test.echo tree/self > out.txt 2> err.txt || rc=$?
[ "$rc" = 1 ] && grep -q "tree/self: symlink loop" err.txt || fail "self loop: $(cat err.txt)"
[ ! -e q.db ] || [ "$("$T" list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" = 0 ] ||
    fail "a refused submit queued something"

show() { "$T" --json show "$1" | python3 -c "import json,sys; j=json.load(sys.stdin); print(j['status'], j['error_code'], j['error'])"; }

# after submit: replaced by a FIFO, by a directory, rewritten with the same size and mtime;
# one untouched file as the control
printf 'abcdef\n' > fifo_later.txt
printf 'abcdef\n' > dir_later.txt
printf 'abcdef\n' > same_size.txt
printf 'abcdef\n' > untouched.txt
touch -d '2026-01-02 03:04:05' same_size.txt
id1=$("$T" submit test.echo fifo_later.txt) || fail "submit 1"
id2=$("$T" submit test.echo dir_later.txt) || fail "submit 2"
id3=$("$T" submit test.echo same_size.txt) || fail "submit 3"
id4=$("$T" submit test.echo untouched.txt) || fail "submit 4"
rm fifo_later.txt && mkfifo fifo_later.txt
rm dir_later.txt && mkdir dir_later.txt
printf 'ABCDEF\n' > same_size.txt
touch -d '2026-01-02 03:04:05' same_size.txt # size and mtime as at submit
rc=0; timeout 60 "$T" worker --drain 2> w.log || rc=$?
[ "$rc" != 124 ] || fail "the worker hung on a FIFO input"
s=$(show "$id1"); case $s in "dead EINPUT "*"fifo_later.txt: not a regular file (a FIFO)"*) ;; *) fail "FIFO: $s" ;; esac
s=$(show "$id2"); case $s in "dead EINPUT "*"dir_later.txt: not a regular file (a directory)"*) ;; *) fail "directory: $s" ;; esac
s=$(show "$id3"); case $s in "dead EINPUT "*"same_size.txt: changed since submit (SHA-256 differs)"*) ;; *) fail "same size and mtime: $s" ;; esac
s=$(show "$id4"); case $s in "succeeded "*) ;; *) fail "untouched: $s" ;; esac

# a touch alone (new mtime, same content) is not a change
printf 'xyz\n' > touched.txt
id5=$("$T" submit test.echo touched.txt) || fail "submit 5"
touch -d '2030-01-01' touched.txt
timeout 60 "$T" worker --drain 2> w2.log
s=$(show "$id5"); case $s in "succeeded "*) ;; *) fail "touched only: $s" ;; esac
# SIGTERM while the worker reads an input to check it: the job is handed back (queued,
# its attempt not spent), not failed and not run; a 1 GiB sparse file keeps the read long
truncate -s 1G big.bin
id6=$("$T" submit test.echo big.bin) || fail "submit big"
"$T" worker 2> w3.log & wp=$!
for _ in $(seq 1 400); do
    [ "$("$T" --json show "$id6" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')" = running ] && break
    sleep 0.05
done
kill -TERM $wp
rc=0; timeout 120 tail --pid=$wp -f /dev/null || rc=$?
[ "$rc" = 0 ] || fail "the worker did not stop on SIGTERM"
"$T" --json show "$id6" | python3 -c '
import json, sys
j = json.load(sys.stdin)
assert j["status"] == "queued" and j["attempts"] == 0, (j["status"], j["attempts"], j["error"])
' || fail "SIGTERM during the input check: not handed back: $(cat w3.log)"
rm -f big.bin
echo ok
