#!/bin/bash
# Outputs through the real binaries: vlq convert and vlq export refuse an existing output
# unless --force and their own inputs always; every atomic write (result -o, [output] dir,
# convert, export) writes through a symlink to a regular file and refuses a FIFO, a
# directory or a device, which stay as they were.
set -u
T="$VLQ_TESTKINDS_BIN"
V="$VLQ_BIN"
tiny="$VLQ_ROOT/tests/golden/tiny"
tok="$VLQ_ROOT/tests/data/qwen3-tokenizer/tokenizer.json"
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$TEST_TMPDIR"
export VLQ_DB="$TEST_TMPDIR/q.db"

# $1: what, $2: phrase; the rest: the command, which must end within 60 s with exit 1
# and the phrase on stderr
refused() {
    local what=$1 phrase=$2; shift 2
    local rc=0
    timeout 60 "$@" > out.txt 2> err.txt || rc=$?
    [ "$rc" = 1 ] && grep -q -- "$phrase" err.txt || fail "$what: exit $rc: $(cat err.txt)"
}

# convert: an existing output only with --force; never an input, even with --force
"$V" -q convert "$tiny" -o m.vlq --tokenizer "$tok" || fail "convert"
sum=$(sha256sum m.vlq)
refused "convert over m.vlq" "m.vlq: exists (use --force to replace it)" \
    "$V" convert "$tiny" -o m.vlq --tokenizer "$tok"
[ "$(sha256sum m.vlq)" = "$sum" ] || fail "a refused convert changed m.vlq"
"$V" -q convert "$tiny" -o m.vlq --tokenizer "$tok" --quant q8 --force || fail "convert --force"
[ "$(sha256sum m.vlq)" != "$sum" ] || fail "convert --force did not replace m.vlq"
cp -r "$tiny" ck && rm -f ck/tokenizer.json && cp "$tok" ck/tokenizer.json
shard=$(ls ck/*.safetensors | head -1)
ssum=$(sha256sum "$shard" | cut -d' ' -f1)
refused "convert over its shard" "is the input" "$V" convert ck -o "$shard" --force
refused "convert over its config" "is the input" "$V" convert ck -o ck/config.json --force
cp "$tok" tok2.json
refused "convert over its tokenizer" "is the tokenizer being read" \
    "$V" convert ck -o tok2.json --tokenizer tok2.json --force
cmp -s "$tok" tok2.json || fail "the tokenizer was overwritten"
ln -s "$shard" via-link.vlq
refused "convert over a link to its shard" "is the input" "$V" convert ck -o via-link.vlq --force
[ "$(sha256sum "$shard" | cut -d' ' -f1)" = "$ssum" ] || fail "a shard was overwritten"
mkfifo fifo.vlq
refused "convert over a FIFO" "fifo.vlq: not a regular file (a FIFO)" \
    "$V" convert "$tiny" -o fifo.vlq --tokenizer "$tok" --force
[ -p fifo.vlq ] || fail "the FIFO was replaced"
ls -a | grep -q '\.tmp\.' && fail "a temp file was left: $(ls -a)"

# export: refused over existing files unless --force, never over the model itself
"$V" -q export m.vlq -o ex || fail "export"
refused "export over ex" "ex/model.safetensors: exists (use --force to replace it)" \
    "$V" export m.vlq -o ex
"$V" -q export m.vlq -o ex --force || fail "export --force"
mkdir ex2 && cp m.vlq ex2/model.safetensors
refused "export over its model" "is the model being exported" \
    "$V" export ex2/model.safetensors -o ex2 --force
mkdir ex3 && echo keep > ex3/config.json
refused "export over one existing file" "ex3/config.json: exists" "$V" export m.vlq -o ex3
[ ! -e ex3/model.safetensors ] || fail "a refused export wrote model.safetensors first"
echo x > notadir
refused "export into a file" "notadir: not a directory" "$V" export m.vlq -o notadir

# result -o: through a symlink to a regular file; refused for a FIFO, a directory, a device
echo data > a.txt
id=$("$T" submit test.echo a.txt) || fail "submit"
"$T" worker --drain 2> w.log || fail "worker: $(cat w.log)"
mkdir real && echo old > real/res.txt && ln -s real/res.txt link.txt
"$T" result "$id" -o link.txt || fail "result -o link"
[ -L link.txt ] || fail "result -o replaced the symlink"
grep -q "$(sha256sum a.txt | cut -d' ' -f1)" real/res.txt || fail "not written through the link"
mkfifo res.fifo
refused "result -o FIFO" "res.fifo: not a regular file (a FIFO)" "$T" result "$id" -o res.fifo
[ -p res.fifo ] || fail "result -o replaced the FIFO"
refused "result -o directory" "real: is a directory" "$T" result "$id" -o real
refused "result -o device" "not a regular file (a character device)" \
    "$T" result "$id" -o /dev/null
ln -s nowhere dangling
refused "result -o dangling" "a symlink to a missing file" "$T" result "$id" -o dangling
if [ "$(id -u)" != 0 ]; then
    mkdir ro && chmod 555 ro
    refused "result -o read-only" "ro: read-only directory" "$T" result "$id" -o ro/r.txt
fi

# [output] dir: the same rule in the worker (a failure is logged, the job still succeeds)
mkdir outdir
cat > w.conf <<EOF
[output]
dir = $TEST_TMPDIR/outdir
format = txt
EOF
mkfifo outdir/b.txt.txt
echo bee > b.txt
idb=$("$T" submit test.echo b.txt) || fail "submit b"
timeout 60 "$T" --config w.conf worker --drain 2> w2.log; rc=$?
[ "$rc" != 124 ] || fail "the worker hung on a FIFO output"
[ -p outdir/b.txt.txt ] || fail "[output] dir replaced a FIFO"
grep -q "b.txt.txt: not a regular file (a FIFO)" w2.log || fail "no warning: $(cat w2.log)"
echo ok
