#!/bin/bash
# vlq selftest and the device plumbing without a GPU: every op and the tiny model's
# forward through the cputest plugin pass (text and --json); a plugin with one wrong op
# fails (exit 1, that op named); the cuda backend says why it cannot run (no plugin, no
# driver, no device) and selftest exits 1; auto says what it picked and why; the device
# memory plan and the layer offload through the devtest plugin (a pretend device): the
# plan offloads the last layers when the device is short, the run loads them through
# weight_mapped and answers as the cpu backend does.
set -u
V="$VLQ_BIN"
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$TEST_TMPDIR" || exit 1
unset VLQ_CONFIG
BUILD=$(dirname "$V")
export VLQ_BACKEND_DIR="$BUILD"

"$V" selftest --help | grep -q "usage: vlq selftest" || fail "--help"
"$V" selftest --bogus 2>/dev/null; [ $? = 2 ] || fail "a bad flag is not exit 2"
"$V" selftest --seed -3 2>/dev/null; [ $? = 2 ] || fail "a bad seed is not exit 2"

"$VLQ_MAKE_TINY_BIN" tiny 7 > /dev/null || fail "make-tiny"
"$V" -q convert tiny -o tiny.vlq --quant q4 || fail "convert"

# the plugin built from the cpu sources: every op and the model, within tolerance
"$V" selftest --backend cputest --model tiny.vlq > ok.txt 2> ok.err || fail "cputest: $(cat ok.txt ok.err)"
grep -q "^selftest: cputest: [0-9]* cases, 0 beyond tolerance: passed$" ok.txt || fail "summary: $(tail -3 ok.txt)"
for op in matmul embed embed_mix4 set_rows add_rows get_rows rmsnorm layernorm add swiglu \
          gelu_tanh gelu_erf mrope rope2d attention attention_seg argmax forward; do
    grep -Eq "^ok +$op " ok.txt || fail "no case of $op: $(cat ok.txt)"
done
for t in f32 f16 bf16 q8 q4; do
    grep -Eq "^ok +matmul +$t" ok.txt || fail "no $t matmul"
    grep -Eq "^ok +attention +kv $t" ok.txt || [ "$t" = q8 ] || [ "$t" = q4 ] || fail "no $t KV attention"
done
grep -q "forward  *vision encoder" ok.txt || fail "the tiny model has vision: no encoder check"
grep -q "decode step logits" ok.txt || fail "no decode step check"
"$V" selftest --backend cputest --ops-only --json > ok.json || fail "json: exit $?"
python3 - <<'PY' || fail "json: $(head -c 400 ok.json)"
import json
d = json.load(open("ok.json"))
assert d["backend"] == "cputest" and d["ref"] == "cpu" and d["failed"] == 0, d
assert d["cases_run"] == len(d["cases"]) >= 45, d["cases_run"]
assert all(c["ok"] and c["max_abs"] == 0 for c in d["cases"]), d["cases"]
assert not any(c["op"] == "forward" for c in d["cases"])
PY

# one wrong op: exit 1, that op's cases fail and only them
"$V" selftest --backend broken --model tiny.vlq > bad.txt 2>&1; [ $? = 1 ] || fail "broken: exit $?"
grep -Eq "^FAIL +rmsnorm +\[7 x 2560\] +max abs 1.00e-02" bad.txt || fail "broken: $(cat bad.txt)"
grep -E "^FAIL" bad.txt | grep -Ev "^FAIL +(rmsnorm|forward) " && fail "broken: other ops fail"
grep -q "beyond tolerance$" bad.txt || fail "broken: summary"

# cuda: without a GPU it says why and selftest exits 1
if command -v nvidia-smi > /dev/null && nvidia-smi -L > /dev/null 2>&1; then
    echo "selftest.sh: a GPU is here: the cuda checks are tests/gpu/prove.sh's"
else
    "$V" selftest --backend cuda > cuda.txt 2> cuda.err; rc=$?
    [ $rc = 1 ] || fail "cuda without a GPU: exit $rc"
    if [ -f "$BUILD/vlq-backend-cuda.so" ]; then
        grep -Eq "backend 'cuda': (no CUDA driver \(libcuda.so.1 not found\)|no CUDA device)" cuda.err ||
            fail "cuda: $(cat cuda.err)"
    else
        grep -q "no vlq-backend-cuda.so in" cuda.err || fail "cuda, no plugin: $(cat cuda.err)"
    fi
    # auto falls back to cpu and says why, in doctor and at the start of a run
    "$V" doctor > doc.txt || fail "doctor: exit $?"
    grep -q "^backend auto: cpu, as cuda is not usable (backend 'cuda': " doc.txt || fail "doctor auto: $(cat doc.txt)"
    "$V" run --model tiny.vlq --max-new-tokens 3 "Hi" > auto.txt 2> auto.err || fail "run auto: $(cat auto.err)"
    grep -q "backend auto: cpu, as cuda is not usable" auto.err || fail "run auto line: $(cat auto.err)"
fi
# names are checked where the backend opens
"$V" run --model tiny.vlq --backend nope --max-new-tokens 3 "Hi" > /dev/null 2> nope.err; [ $? = 1 ] ||
    fail "unknown backend: exit"
grep -q "backend 'nope': not built in" nope.err || fail "unknown backend: $(cat nope.err)"
"$V" selftest --backend nope > /dev/null 2> nope2.err; [ $? = 1 ] || fail "selftest nope: exit"

# the device plan (devtest: a pretend device of $VLQ_DEVTEST_MEM bytes)
"$V" doctor --model tiny.vlq --backend devtest --json > big.json || fail "devtest doctor: exit $?"
read -r total layer < <(python3 -c 'import json; p = json.load(open("big.json"))["plan"]
assert p["device"] and p["offload_layers"] == 0 and p["workspace_bytes"] == 8 << 20, p
print(p["total_bytes"], p["layer_bytes"])') || fail "devtest plan: $(cat big.json)"
# short of half a layer: auto offloads the last layer, and says what it costs
VLQ_DEVTEST_MEM=$((total - layer / 2)) "$V" doctor --model tiny.vlq --backend devtest > short.txt ||
    fail "short device: exit $?: $(cat short.txt)"
grep -Eq "^  offloaded layers +[0-9]+ MiB +\(1 layers, pinned: .* over the bus per decoder step" short.txt ||
    fail "short device: $(cat short.txt)"
grep -q "^host memory (" short.txt || fail "no host side: $(cat short.txt)"
# with offload forbidden, it does not fit and says what to change
printf '[offload]\nlayers = 0\n' > none.conf
VLQ_DEVTEST_MEM=$((total - layer / 2)) "$V" --config none.conf doctor --model tiny.vlq --backend devtest > nofit.txt
[ $? = 1 ] || fail "offload 0: exit"
grep -q "DOES NOT FIT" nofit.txt && grep -q "set \[offload\] layers = auto" nofit.txt || fail "offload 0: $(cat nofit.txt)"
# a run with two layers offloaded: 2 x 11 weights through weight_mapped, the cpu's answer
printf '[offload]\nlayers = 2\n' > two.conf
"$V" --config two.conf run --model tiny.vlq --backend devtest --max-new-tokens 6 "Hello" > dev.txt 2> dev.err ||
    fail "devtest run: $(cat dev.err)"
grep -q "the last 2 decoder layers .* stay in pinned host memory (\[offload\] layers)" dev.err ||
    fail "no offload warning: $(cat dev.err)"
grep -q "^devtest: 22 weights mapped" dev.err || fail "mapped weights: $(cat dev.err)"
"$V" run --model tiny.vlq --backend cpu --max-new-tokens 6 "Hello" > cpu.txt 2> /dev/null || fail "cpu run"
cmp -s dev.txt cpu.txt || fail "offloaded run differs from cpu: $(cat dev.txt) / $(cat cpu.txt)"
"$V" selftest --backend devtest --model tiny.vlq > /dev/null || fail "devtest selftest"
# a device error at a sync fails the request with EDEVICE, a clear message, exit 1
VLQ_DEVTEST_FAIL_SYNC=1 "$V" run --model tiny.vlq --backend devtest --max-new-tokens 4 "Hello" \
    > /dev/null 2> fault.err; [ $? = 1 ] || fail "device error: exit"
grep -q "devtest: an injected device error (sync 1)" fault.err || fail "device error: $(cat fault.err)"
exit 0
