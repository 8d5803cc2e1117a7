#!/usr/bin/env python3
"""Write a random-weight Hugging Face checkpoint of the real Qwen3-VL-4B-Instruct shape
(bf16, sharded, with index) for benchmarks of `vlq convert`, model loading and the engine:

    python3 tests/bench/make_4b_checkpoint.py OUT_DIR

Tensor names and shapes come from transformers itself (the model built on the meta
device from tests/data/qwen3-vl-4b-instruct/config.json), so the converter's expected
tensor list is checked against the reference's module tree. Weights are N(0, 0.02)
(norm weights 1): numbers for timing, not for text. About 8.9 GB; needs the packages in
tests/golden/requirements.txt."""
import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file
from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
REAL = os.path.join(ROOT, "tests", "data", "qwen3-vl-4b-instruct")
SHARD_BYTES = 2 << 30


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    cfg = Qwen3VLConfig.from_pretrained(REAL)
    with torch.device("meta"):
        model = Qwen3VLForConditionalGeneration(cfg)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if cfg.tie_word_embeddings:
        shapes.pop("lm_head.weight", None)
    g = torch.Generator().manual_seed(0)
    shard, size, n, wmap = {}, 0, 0, {}
    names = sorted(shapes)

    def flush():
        nonlocal shard, size, n
        if shard:
            n += 1
            fn = "model-%05d.safetensors" % n
            save_file(shard, os.path.join(out, fn), metadata={"format": "pt"})
            for k in shard:
                wmap[k] = fn
            shard, size = {}, 0

    for k in names:
        s = shapes[k]
        if "norm" in k and k.endswith("weight"):
            t = torch.ones(s, dtype=torch.bfloat16)
        else:
            t = (torch.randn(s, generator=g) * 0.02).to(torch.bfloat16)
        shard[k] = t
        size += t.numel() * 2
        if size >= SHARD_BYTES:
            flush()
    flush()
    # the file names need the total: rename model-0000i -> model-0000i-of-0000n
    final = {}
    for k, fn in wmap.items():
        i = int(fn[6:11])
        final[k] = "model-%05d-of-%05d.safetensors" % (i, n)
    for i in range(1, n + 1):
        os.rename(os.path.join(out, "model-%05d.safetensors" % i),
                  os.path.join(out, "model-%05d-of-%05d.safetensors" % (i, n)))
    json.dump({"metadata": {}, "weight_map": final},
              open(os.path.join(out, "model.safetensors.index.json"), "w"), indent=2)
    for f in os.listdir(REAL):
        if f.endswith(".json"):
            shutil.copy(os.path.join(REAL, f), out)
    shutil.copy(os.path.join(ROOT, "tests", "data", "qwen3-tokenizer", "tokenizer.json"), out)
    print("wrote %s: %d tensors in %d shards" % (out, len(names), n))


if __name__ == "__main__":
    main()
