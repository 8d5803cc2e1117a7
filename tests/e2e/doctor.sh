#!/bin/bash
# vlq doctor: the CPU, every backend (built in and the plugins found, broken ones with
# their reason), the model and its residency, text and --json; exit statuses.
set -u
V="$VLQ_BIN"
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$TEST_TMPDIR" || exit 1
unset VLQ_CONFIG VLQ_BACKEND_DIR

"$V" doctor --help | grep -q "usage: vlq doctor" || fail "--help"
"$V" doctor --bogus 2>/dev/null; [ $? = 2 ] || fail "a bad flag is not exit 2"

# no model: the machine only, exit 0
out=$("$V" doctor) || fail "no model: exit $?"
echo "$out" | grep -q "^cpu: [0-9]* cores, features: " || fail "cpu line: $out"
echo "$out" | grep -Eq "^  cpu +cpu: host memory, [0-9]+ OpenMP threads, CPU features: .*kernels: " ||
    fail "cpu backend: $out"
echo "$out" | grep -Eq "^  ref +ref: the scalar oracle" || fail "ref backend: $out"
echo "$out" | grep -Eq "^ +memory: [0-9]+ MiB free of [0-9]+ MiB$" || fail "memory: $out"
echo "$out" | grep -q "^model: none" || fail "no model line: $out"

# plugins: the ones in $VLQ_BACKEND_DIR, a broken one with the reason
mkdir plugins && echo junk > plugins/vlq-backend-junk.so
out=$(VLQ_BACKEND_DIR=$PWD/plugins "$V" doctor) || fail "plugins: exit $?"
echo "$out" | grep -Eq "^  junk +unavailable: $PWD/plugins/vlq-backend-junk.so: cannot load" ||
    fail "broken plugin: $out"

# a model that does not exist: exit 1 naming it
"$V" doctor --model absent.vlq > out.txt 2> err.txt; [ $? = 1 ] || fail "absent model: exit"
grep -q "absent.vlq" err.txt || fail "absent model: $(cat err.txt)"

# a model: its shapes and residency (text populated, vision lazy)
"$VLQ_MAKE_TINY_BIN" tiny 3 || fail "make-tiny"
"$V" convert tiny -o tiny.vlq --quant q4 2> convert.log || fail "convert: $(cat convert.log)"
out=$("$V" doctor --model tiny.vlq) || fail "model: exit $?"
echo "$out" | grep -q "^model: tiny.vlq$" || fail "model line: $out"
echo "$out" | grep -Eq "^  text: 2 layers, hidden 64, [0-9]+ MiB; vision: 2 blocks, hidden 64" ||
    fail "shapes: $out"
echo "$out" | grep -Eq "^  residency: mmap, text populated \([0-9]+ MiB, [A-Z_a-z ]+\), vision lazy" ||
    fail "residency: $out"
# the configured model, --json
printf '[model]\npath = tiny.vlq\n' > vlq.conf
"$V" doctor --json > d.json || fail "json: exit $?"
python3 - d.json <<'PY' || fail "json: $(cat d.json)"
import json, sys
d = json.load(open(sys.argv[1]))
names = [b["name"] for b in d["backends"]]
assert names[:2] == ["cpu", "ref"], names
assert d["backends"][0]["mem_total_bytes"] >= d["backends"][0]["mem_free_bytes"] > 0
assert "kernels:" in d["backends"][0]["describe"]
m = d["model"]
assert m["path"] == "tiny.vlq" and m["layers"] == 2 and m["vision_depth"] == 2, m
assert m["residency"].startswith("mmap, text populated"), m
assert m["vision_bytes"] > 0 and m["text_bytes"] > 0
PY
# the global --json too (free memory and huge pages move between runs: compare the rest)
"$V" --json doctor > g.json || fail "global --json: exit $?"
python3 -c '
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:])
for d in (a, b):
    for x in d["backends"]:
        x.pop("mem_free_bytes", None)
    d["model"].pop("residency")
assert a == b
' d.json g.json || fail "global --json differs"
exit 0
