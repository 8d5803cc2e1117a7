#!/bin/sh
# vlq tokenize: encode, decode, --json, and the errors (exit statuses and messages).
set -u
TOK="$VLQ_ROOT/tests/data/qwen3-tokenizer/tokenizer.json"
fail() { echo "FAIL: $*" >&2; exit 1; }

out=$(printf 'Hello world!<|im_start|>' | "$VLQ_BIN" tokenize --tokenizer "$TOK") || fail "encode exit $?"
[ "$out" = "9707 1879 0 151644" ] || fail "encode: '$out'"
out=$(printf 'Hello' | "$VLQ_BIN" --json tokenize --tokenizer "$TOK") || fail "json exit"
[ "$out" = '{"ids": [9707]}' ] || fail "json: '$out'"
out=$(echo '9707 1879 0 151644' | "$VLQ_BIN" tokenize --tokenizer "$TOK" --decode) || fail "decode exit"
[ "$out" = 'Hello world!<|im_start|>' ] || fail "decode: '$out'"
out=$(echo '9707 151644' | "$VLQ_BIN" tokenize --tokenizer "$TOK" --decode --skip-special)
[ "$out" = 'Hello' ] || fail "skip-special: '$out'"
out=$(echo '9707 1879' | "$VLQ_BIN" tokenize --tokenizer "$TOK" --decode --json)
[ "$out" = '{"text": "Hello world"}' ] || fail "decode json: '$out'"
# round trip of a multilingual text
txt='Grüße, 世界! e\314\201 <think>ok</think>'
ids=$(printf "$txt" | "$VLQ_BIN" tokenize --tokenizer "$TOK")
back=$(echo "$ids" | "$VLQ_BIN" tokenize --tokenizer "$TOK" --decode)
[ "$back" = "$(printf 'Grüße, 世界! \303\251 <think>ok</think>')" ] || fail "round trip: '$back'"

# errors: invalid UTF-8 (exit 1, byte offset), no tokenizer (exit 2), bad file (exit 1)
err=$(printf 'ab\377' | "$VLQ_BIN" tokenize --tokenizer "$TOK" 2>&1 >/dev/null); rc=$?
[ $rc = 1 ] && [ "$err" = "vlq: stdin: byte 2: invalid UTF-8" ] || fail "utf8: $rc '$err'"
err=$(echo x | "$VLQ_BIN" tokenize 2>&1); rc=$?
[ $rc = 2 ] && echo "$err" | grep -q -- 'give one of --tokenizer FILE or --model FILE' || fail "no flag: $rc '$err'"
echo '{"model":' > "$TEST_TMPDIR/bad.json"
err=$(echo x | "$VLQ_BIN" tokenize --tokenizer "$TEST_TMPDIR/bad.json" 2>&1); rc=$?
[ $rc = 1 ] && echo "$err" | grep -q 'bad.json: line' || fail "bad json: $rc '$err'"
err=$(echo 12x | "$VLQ_BIN" tokenize --tokenizer "$TOK" --decode 2>&1); rc=$?
[ $rc = 1 ] && echo "$err" | grep -q "'12x' is not a token id" || fail "bad id: $rc '$err'"
"$VLQ_BIN" tokenize --help | grep -q 'no default' || fail "help"

# --model: the tokenizer a converted model file carries gives the same ids
"$VLQ_BIN" convert "$VLQ_ROOT/tests/golden/tiny" -o m.vlq --quant q8 --tokenizer "$TOK" 2>log ||
    fail "convert: $(cat log)"
want=$(printf 'Grüße, 世界!<|im_end|>' | "$VLQ_BIN" tokenize --tokenizer "$TOK")
got=$(printf 'Grüße, 世界!<|im_end|>' | "$VLQ_BIN" tokenize --model m.vlq) || fail "--model exit $?"
[ "$got" = "$want" ] || fail "--model: '$got' != '$want'"
err=$(echo x | "$VLQ_BIN" tokenize --model "$TOK" 2>&1); rc=$?
[ $rc = 1 ] && echo "$err" | grep -q 'tokenizer.json' || fail "--model on a non-model: $rc '$err'"
err=$(echo x | "$VLQ_BIN" tokenize --model m.vlq --tokenizer "$TOK" 2>&1); rc=$?
[ $rc = 2 ] || fail "both flags: $rc '$err'"
exit 0
