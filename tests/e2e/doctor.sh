#!/bin/bash
# vlq doctor: the CPU, every backend (built in and the plugins found, broken ones with
# their reason), the model and its residency, the memory plan (fits: exit 0; does not:
# exit 1 with what to change), text and --json.
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
# the memory plan: every item, the total, the slots of each budget
echo "$out" | grep -q "^memory plan (backend cpu; [0-9]* MiB available, from MemAvailable):$" ||
    fail "plan header: $out"
for item in "text weights" "vision weights" "KV cache" "decoder activations" \
    "vision workspace" "visual features" "feature cache" "margin"; do
    echo "$out" | grep -Eq "^  $item +[0-9]+ MiB" || fail "plan item $item: $out"
done
echo "$out" | grep -Eq "^  total +[0-9]+ MiB: fits, [0-9]+ MiB to spare$" || fail "total: $out"
echo "$out" | grep -Eq "^slots that fit, each budget alone: ocr \(8192 tokens\) [1-9][0-9]*, video" ||
    fail "slots: $out"
# a plan that does not fit: exit 1, what to change
printf '[engine]\nmem_limit_mb = 1\n' > small.conf
"$V" --config small.conf doctor --model tiny.vlq > small.txt; [ $? = 1 ] || fail "small: exit"
grep -Eq "^  total +[0-9]+ MiB: DOES NOT FIT, [0-9]+ MiB over$" small.txt || fail "small: $(cat small.txt)"
grep -q "^memory plan (backend cpu; 1 MiB available, from \[engine\] mem_limit_mb):$" small.txt ||
    fail "small: header: $(cat small.txt)"
grep -q "^to fit, change:$" small.txt || fail "small: advice: $(cat small.txt)"
grep -q "^  lower \[engine\] ocr_slots (now 1; each holds" small.txt || fail "small: slots advice"
grep -q "^  raise \[engine\] mem_limit_mb (now 1; " small.txt || fail "small: limit advice"

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
p = d["plan"]
assert p["fits"] is True and p["backend"] == "cpu", p
assert p["total_bytes"] == sum(p["items"].values()) <= p["available_bytes"], p
assert p["items"]["weights_vision"] == m["vision_bytes"], p
assert [c["name"] for c in p["classes"]] == ["ocr", "video", "document"], p
assert all(c["slots_fit"] >= c["n_slots"] for c in p["classes"]), p
assert p["advice"] == []
PY
# the global --json too (free memory, hence the plan's room, and huge pages move between
# runs: compare the rest)
"$V" --json doctor > g.json || fail "global --json: exit $?"
python3 -c '
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:])
for d in (a, b):
    for x in d["backends"]:
        x.pop("mem_free_bytes", None)
    d["model"].pop("residency")
    assert d.pop("plan")["fits"] is True
assert a == b
' d.json g.json || fail "global --json differs"
exit 0
