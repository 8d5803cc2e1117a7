#!/usr/bin/env python3
"""Write the text decoder of a Qwen3-VL checkpoint (bf16 safetensors, e.g. from make-4b)
as a BF16 GGUF of llama.cpp's qwen3 architecture, bit for bit the same weights, for
`make bench-engine` (llama-quantize then makes the Q4_0 and Q4_K files from it):

    python3 tests/bench/make_gguf.py HF_DIR OUT.gguf

The text decoder of Qwen3-VL is Qwen3's (same shapes, q/k norms, tied embeddings; MRoPE
only differs for image positions, which the llama.cpp side of the benchmark never
runs), so the tensors map one to one and no output.weight is written (llama.cpp then
uses token_embd as the output head, as vlq does). Reference tooling only: needs numpy
and gguf (PyPI)."""
import json
import os
import struct
import sys

import numpy as np
import gguf

LAYER_MAP = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
PREFIX = "model.language_model."


def safetensors_index(hf_dir):
    """name -> (file, dtype, shape, offset) over every shard of hf_dir."""
    files = sorted(f for f in os.listdir(hf_dir) if f.endswith(".safetensors"))
    out = {}
    for fn in files:
        path = os.path.join(hf_dir, fn)
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            out[name] = (path, info["dtype"], info["shape"], 8 + n + info["data_offsets"][0])
    return out


def tensor(index, name):
    path, dtype, shape, off = index[name]
    if dtype != "BF16":
        sys.exit("make_gguf: %s is %s, expected BF16" % (name, dtype))
    return np.memmap(path, dtype=np.uint16, mode="r", offset=off, shape=tuple(shape))


def add(w, gg_name, t):
    """Matrices stay BF16 (the bytes as they are); vectors (norms) become F32, exactly,
    as llama.cpp's own converter stores them."""
    if t.ndim == 1:
        w.add_tensor(gg_name, (t.astype(np.uint32) << 16).view(np.float32))
    else:
        w.add_tensor(gg_name, t, raw_dtype=gguf.GGMLQuantizationType.BF16)


def main():
    hf_dir, out = sys.argv[1], sys.argv[2]
    cfg = json.load(open(os.path.join(hf_dir, "config.json")))
    tc = cfg["text_config"]
    index = safetensors_index(hf_dir)
    w = gguf.GGUFWriter(out + ".tmp", "qwen3")
    w.add_name("qwen3-vl-4b-text-random")
    w.add_context_length(tc["max_position_embeddings"])
    w.add_embedding_length(tc["hidden_size"])
    w.add_block_count(tc["num_hidden_layers"])
    w.add_feed_forward_length(tc["intermediate_size"])
    w.add_head_count(tc["num_attention_heads"])
    w.add_head_count_kv(tc["num_key_value_heads"])
    w.add_key_length(tc["head_dim"])
    w.add_value_length(tc["head_dim"])
    w.add_rope_freq_base(float(tc["rope_theta"]))
    w.add_layer_norm_rms_eps(float(tc["rms_norm_eps"]))
    w.add_file_type(gguf.LlamaFileType.MOSTLY_BF16)

    # tokenizer: byte-level BPE with Qwen2's pre-tokeniser, padded to the model's vocab
    tj = json.load(open(os.path.join(hf_dir, "tokenizer.json"), encoding="utf-8"))
    vocab = tc["vocab_size"]
    toks = ["[PAD%d]" % i for i in range(vocab)]
    types = [gguf.TokenType.UNUSED] * vocab
    for t, i in tj["model"]["vocab"].items():
        toks[i], types[i] = t, gguf.TokenType.NORMAL
    for a in tj.get("added_tokens", []):
        toks[a["id"]] = a["content"]
        types[a["id"]] = gguf.TokenType.CONTROL if a.get("special") else gguf.TokenType.USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(toks)
    w.add_token_types(types)
    w.add_token_merges(merges)
    gen = json.load(open(os.path.join(hf_dir, "generation_config.json")))
    eos = gen.get("eos_token_id", cfg.get("eos_token_id", 151645))
    w.add_eos_token_id(eos[0] if isinstance(eos, list) else eos)
    w.add_pad_token_id(151643)
    w.add_add_bos_token(False)

    add(w, "token_embd.weight", tensor(index, PREFIX + "embed_tokens.weight"))
    for i in range(tc["num_hidden_layers"]):
        for hf, gg in LAYER_MAP.items():
            add(w, "blk.%d.%s" % (i, gg), tensor(index, "%slayers.%d.%s" % (PREFIX, i, hf)))
    add(w, "output_norm.weight", tensor(index, PREFIX + "norm.weight"))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.rename(out + ".tmp", out)
    print("make_gguf: wrote %s" % out)


if __name__ == "__main__":
    main()
