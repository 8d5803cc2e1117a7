#!/usr/bin/env bash
# layers: includes point down the layers, never up or sideways (DEVELOPERS: "commands ->
# job kinds -> queue, media, engine -> model -> backend ops -> base; nothing includes
# upward"). Each module (file stem) belongs to one group; a group may include only the
# groups listed for it. A new module must be added to a group here, or this test fails.
set -euo pipefail
cd "${VLQ_ROOT:?}"

group_of() {
    case "$1" in
    err|log|util|half|quant|version|cpucaps|cfg|whsec|num|redact) echo base ;;
    backend|backend_int|backend_cpu|backend_open|ops_ref|cpu_*) echo ops ;;
    queue|queue_int|queue_*|webhook|outbox|fetch|media|media_int|media_pdf|tok|tok_int|tok_*|prep|plan|plan_load|safetensors|sample|vcache) echo io ;;
    model|weights|convert) echo model ;;
    decoder|decoder_pos|vision) echo compute ;;
    engine|engine_int|engine_*|selftest) echo engine ;;
    jobs|jobs_int|prompts|worker|ocr|summarize|gen|result|progress|*_job) echo jobs ;;
    cli|cli_*|main) echo cli ;;
    *) echo unknown ;;
    esac
}

allowed() { # group -> the groups it may include
    case "$1" in
    base) echo "base" ;;
    ops) echo "base ops" ;;
    io) echo "base io" ;;
    model) echo "base io ops model" ;;
    compute) echo "base ops model compute" ;;
    engine) echo "base io ops model compute engine" ;;
    jobs) echo "base io model engine jobs" ;;
    cli) echo "base io ops model compute engine jobs cli" ;;
    esac
}

bad=0
for f in src/*.c src/*.h jobs/*.c jobs/*.h; do
    [ -e "$f" ] || continue
    stem=$(basename "$f"); stem=${stem%.*}
    g=$(group_of "$stem")
    if [ "$g" = unknown ]; then
        echo "FAIL: $f: module '$stem' is in no layer group (add it to tests/e2e/layers.sh)"
        bad=1
        continue
    fi
    ok=" $(allowed "$g") "
    while read -r inc; do
        [ -n "$inc" ] || continue
        ig=$(group_of "$inc")
        if [[ "$ok" != *" $ig "* ]]; then
            echo "FAIL: $f ($g) includes $inc.h ($ig): an upward or sideways include"
            bad=1
        fi
    done < <(sed -n 's/^#include "\([a-z_0-9]*\)\.[a-z]*"$/\1/p' "$f")
done
[ "$bad" = 0 ] && echo "layers ok"
exit "$bad"
