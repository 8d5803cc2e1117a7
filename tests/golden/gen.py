#!/usr/bin/env python3
"""Golden fixtures for vlq's Qwen3-VL engine, made with Hugging Face transformers.

Builds a tiny random Qwen3-VL of the real architecture (design: shared/design/qwen3-vl.md
§10), saves it as Hugging Face checkpoints (tests/golden/tiny: f32, one file;
tests/golden/tiny-bf16: bf16, sharded with an index), runs the reference on a few prompts
and writes the inputs and reference outputs as fixture files tests/golden/fx_<prompt>.bin
(format below; C loader: tests/golden_fixture.h).

    python3 tests/golden/gen.py                 # checkpoints + f32 fixtures (+ bf16-weight ones)
    python3 tests/golden/gen.py --quantized DIR --tag q4
        # reference on weights exported by `vlq export` (the dequantised INT4 model):
        # fx_<prompt>_q4.bin, and the INT4-vs-f32 error figures (top-1 agreement, KL)

Needs the packages pinned in requirements.txt beside this file (CPU torch is enough).
Everything is seeded; the outputs are committed, so `make test` never needs PyPI.

Vocabulary: the tiny model has VOCAB = 2048 ids. Prompts are tokenised with the real Qwen3
tokenizer and processor (so the placeholder expansion and timestamps are the real ones,
kept as `input_ids_real`), then remapped: the special ids 151643..151658 go to
VOCAB-16 .. VOCAB-1 (so <|im_end|> 151645 -> 2034, <|image_pad|> 151655 -> 2044), every other
id to id % (VOCAB-16). The tiny config.json carries the remapped special ids.

Fixture file format (little-endian), version 1:
    offset 0   char[8]  magic "VLQFIXT\\0"
           8   u32      version (1)
          12   u32      header size in bytes (24): where the metadata starts
          16   u32      number of arrays
          20   u32      metadata length in bytes (UTF-8 JSON: versions, prompt, notes)
          24   metadata, then zero padding to a multiple of 16
    then per array:
               u32      name length n (no NUL), then n bytes of name
               u32      dtype: 0 = f32, 1 = i32
               u32      ndim (1..4), then ndim x u32 dims (outermost first)
               zero padding to a multiple of 16 (from the file start)
               data: prod(dims) x 4 bytes, row-major, then zero padding to a multiple of 16
The arrays of each fixture and their meaning are listed in README.md beside this file.
"""
import argparse
import json
import math
import os
import shutil
import struct
import sys

import numpy as np
import torch

import transformers
from transformers import (AutoTokenizer, GenerationConfig, Qwen2VLImageProcessorFast,
                          Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor,
                          Qwen3VLVideoProcessor)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
REAL = os.path.join(ROOT, "tests", "data", "qwen3-vl-4b-instruct")
TOKDIR = os.path.join(ROOT, "tests", "data", "qwen3-tokenizer")

VOCAB = 2048
SPECIAL0 = 151643            # <|endoftext|>; the specials run to 151658
N_SPECIAL = 16
N_GEN = 20                   # greedy tokens per prompt
N_LAST = 4                   # logits kept in full for the last N_LAST prompt positions
FIX_MAGIC = b"VLQFIXT\0"
FIX_VERSION = 1


def tiny_id(real_id):
    if real_id >= SPECIAL0:
        assert real_id < SPECIAL0 + N_SPECIAL, real_id
        return VOCAB - N_SPECIAL + real_id - SPECIAL0
    return real_id % (VOCAB - N_SPECIAL)


def tiny_config():
    text = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                num_attention_heads=4, num_key_value_heads=2, head_dim=16, hidden_act="silu",
                rms_norm_eps=1e-6, rope_theta=5000000.0, max_position_embeddings=4096,
                rope_scaling={"rope_type": "default", "mrope_section": [4, 2, 2],
                              "mrope_interleaved": True},
                attention_bias=False, tie_word_embeddings=True, initializer_range=0.2,
                bos_token_id=tiny_id(151643), eos_token_id=tiny_id(151645))
    vision = dict(depth=4, hidden_size=64, hidden_act="gelu_pytorch_tanh", intermediate_size=128,
                  num_heads=4, in_channels=3, patch_size=16, spatial_merge_size=2,
                  temporal_patch_size=2, out_hidden_size=64, num_position_embeddings=64,
                  deepstack_visual_indexes=[0, 2], initializer_range=0.2)
    return Qwen3VLConfig(text_config=text, vision_config=vision,
                         image_token_id=tiny_id(151655), video_token_id=tiny_id(151656),
                         vision_start_token_id=tiny_id(151652),
                         vision_end_token_id=tiny_id(151653), tie_word_embeddings=True)


def build_model():
    torch.manual_seed(0)
    cfg = tiny_config()
    cfg._attn_implementation = "eager"
    model = Qwen3VLForConditionalGeneration(cfg).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            # init leaves norms at 1/0 and biases at 0: randomise them so a missed norm
            # weight, bias or a swapped tensor shows in the fixtures
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return model


def copy_side_files(out_dir):
    for f in ("chat_template.json", "preprocessor_config.json", "video_preprocessor_config.json"):
        shutil.copy(os.path.join(REAL, f), os.path.join(out_dir, f))
    gen = json.load(open(os.path.join(REAL, "generation_config.json")))
    gen["bos_token_id"] = tiny_id(151643)
    gen["pad_token_id"] = tiny_id(151643)
    gen["eos_token_id"] = [tiny_id(151645), tiny_id(151643)]
    json.dump(gen, open(os.path.join(out_dir, "generation_config.json"), "w"), indent=2)
    # the real tokenizer (11 MB) is referenced, not copied: its ids are the real ones, the
    # tiny model's are remapped (module docstring)
    link = os.path.join(out_dir, "tokenizer.json")
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(os.path.relpath(os.path.join(TOKDIR, "tokenizer.json"), out_dir), link)


def save_checkpoints(model):
    d32 = os.path.join(HERE, "tiny")
    d16 = os.path.join(HERE, "tiny-bf16")
    for d in (d32, d16):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    model.save_pretrained(d32, safe_serialization=True)
    m16 = Qwen3VLForConditionalGeneration(model.config).eval()
    m16.load_state_dict(model.state_dict())
    m16 = m16.to(torch.bfloat16)
    # sharded on purpose: the converter's index + shard path and the missing-shard test
    m16.save_pretrained(d16, safe_serialization=True, max_shard_size="600KB")
    for d in (d32, d16):
        copy_side_files(d)
        gc = os.path.join(d, "generation_config.json")
        # save_pretrained wrote its own generation_config; ours (copied) replaces it
        assert os.path.exists(gc)
    return d32, d16


# ---- inputs ----------------------------------------------------------------------------

def synth_image(h, w, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([128 + 100 * np.sin(x / (7 + seed) + c) * np.cos(y / (5 + c + seed))
                    for c in range(3)], axis=-1)
    img += rng.normal(0, 20, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def synth_video(n, h, w, seed):
    return np.stack([synth_image(h, w, seed + 3 * i) for i in range(n)])


def make_processor():
    tok = AutoTokenizer.from_pretrained(TOKDIR)
    ip = Qwen2VLImageProcessorFast(patch_size=16, temporal_patch_size=2, merge_size=2,
                                   image_mean=[0.5] * 3, image_std=[0.5] * 3)
    vp = Qwen3VLVideoProcessor(patch_size=16, temporal_patch_size=2, merge_size=2,
                               image_mean=[0.5] * 3, image_std=[0.5] * 3)
    tmpl = json.load(open(os.path.join(REAL, "chat_template.json")))["chat_template"]
    return Qwen3VLProcessor(image_processor=ip, tokenizer=tok, video_processor=vp,
                            chat_template=tmpl)


def prompts():
    """name -> (messages content list, images, videos, video_metadata)"""
    img1 = synth_image(96, 160, 1)      # grid 6x10, merged 3x5: odd, gh != gw
    img2a = synth_image(64, 96, 2)      # merged 2x3
    img2b = synth_image(96, 64, 3)      # merged 3x2
    img3 = synth_image(64, 64, 4)       # merged 2x2
    vid = synth_video(4, 64, 96, 5)     # 2 temporal groups of merged 2x3
    # timestamps (0+0.5)/2 = 0.25 and 1.25 print as "<0.2 seconds>", "<1.2 seconds>"
    vmeta = {"fps": 24.0, "total_num_frames": 37, "frames_indices": [0, 12, 24, 36],
             "duration": 37 / 24.0}
    return {
        "text": ([{"type": "text", "text": "Write one line about the sea."}], None, None, None),
        "image": ([{"type": "image"}, {"type": "text", "text": "Read the text in this image."}],
                  [img1], None, None),
        "two_images": ([{"type": "image"}, {"type": "image"},
                        {"type": "text", "text": "What differs between these pictures?"}],
                       [img2a, img2b], None, None),
        "video": ([{"type": "video"}, {"type": "text", "text": "Summarise this video."}],
                  None, [vid], [vmeta]),
        "image_video": ([{"type": "image"}, {"type": "video"},
                         {"type": "text", "text": "Does the image appear in the video?"}],
                        [img3], [vid], [vmeta]),
    }


def make_inputs(proc, content, images, videos, vmeta):
    msgs = [{"role": "user", "content": content}]
    text = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    kw = dict(text=[text], return_tensors="pt")
    if images is not None:
        kw["images"] = images
        kw["images_kwargs"] = {"do_resize": False}
    if videos is not None:
        kw["videos"] = videos
        kw["videos_kwargs"] = {"do_resize": False, "do_sample_frames": False,
                               "video_metadata": vmeta}
    inp = proc(**kw)
    real = inp["input_ids"][0].clone()
    inp["input_ids"] = torch.tensor([[tiny_id(int(t)) for t in real]], dtype=torch.long)
    inp["attention_mask"] = torch.ones_like(inp["input_ids"])
    # the chat-templated text, then the processor's expansion of it (placeholders,
    # timestamps) as the real tokenizer decodes input_ids_real
    return {"text": text, "expanded": proc.tokenizer.decode(real)}, real, inp


# ---- fixture file ----------------------------------------------------------------------

def pad16(b):
    return b + b"\0" * (-len(b) % 16)


def write_fixture(path, arrays, meta, with_inputs=True):
    if not with_inputs:
        # the inputs are the f32 fixture's (fx_<prompt>.bin): keep the ids only
        arrays = [(n, a) for n, a in arrays if not n.startswith("pixel_values")]
        meta = dict(meta, inputs="pixel_values* are in fx_%s.bin" % meta["prompt"])
    out = bytearray()
    m = json.dumps(meta, sort_keys=True).encode()
    out += FIX_MAGIC + struct.pack("<IIII", FIX_VERSION, 24, len(arrays), len(m)) + m
    out = bytearray(pad16(bytes(out)))
    for name, a in arrays:
        a = np.ascontiguousarray(a)
        if a.dtype in (np.int64, np.int32, np.bool_):
            a, dt = a.astype("<i4"), 1
        else:
            a, dt = a.astype("<f4"), 0
        assert 1 <= a.ndim <= 4, (name, a.shape)
        nb = name.encode()
        out += struct.pack("<I", len(nb)) + nb + struct.pack("<II", dt, a.ndim)
        out += struct.pack("<%dI" % a.ndim, *a.shape)
        out = bytearray(pad16(bytes(out)))
        out += pad16(a.tobytes())
    with open(path, "wb") as f:
        f.write(out)
    return len(out)


def t2n(t):
    return t.detach().to(torch.float32).cpu().numpy() if t.is_floating_point() else \
        t.detach().cpu().numpy()


# ---- reference runs --------------------------------------------------------------------

def vision_dumps(model, pix, grid, prefix, fine_taps):
    """Vision tower on one kind of input (images or videos), stage by stage."""
    vis = model.model.visual
    arrays = []
    blocks = []
    hooks = [b.register_forward_hook(lambda m, a, o: blocks.append(o.detach().clone()))
             for b in vis.blocks]
    b0 = {}
    for part in ("norm1", "attn", "norm2", "mlp"):
        hooks.append(getattr(vis.blocks[0], part).register_forward_hook(
            lambda m, a, o, part=part: b0.__setitem__(part, o.detach().clone())))
    with torch.no_grad():
        arrays.append((prefix + "patch_embed", t2n(vis.patch_embed(pix))))
        arrays.append((prefix + "pos_embed", t2n(vis.fast_pos_embed_interpolate(grid))))
        arrays.append((prefix + "rot_pos_emb", t2n(vis.rot_pos_emb(grid))))
        merged, deep = vis(pix, grid_thw=grid)
    for h in hooks:
        h.remove()
    for i, b in enumerate(blocks):
        arrays.append((prefix + "block.%d" % i, t2n(b)))
    for part in ("norm1", "attn", "norm2", "mlp") if fine_taps else ():
        arrays.append((prefix + "block0." + part, t2n(b0[part])))
    arrays.append((prefix + "merger", t2n(merged)))
    for j, d in enumerate(deep):
        arrays.append((prefix + "deepstack.%d" % j, t2n(d)))
    return arrays


def text_dumps(model, inp, fine_taps):
    """Full forward with hooks on the decoder; returns (arrays, full logits [L, V])."""
    lm = model.model.language_model
    n = len(lm.layers)
    raw, post = {}, {}
    hooks = []
    for i, layer in enumerate(lm.layers):
        # output hook: the layer's own output, before the DeepStack add (which is in place,
        # hence the clone); pre-hook of the next module: the value after the add
        hooks.append(layer.register_forward_hook(
            lambda m, a, kw, o, i=i: raw.__setitem__(i, o.detach().clone()), with_kwargs=True))
        nxt = lm.layers[i + 1] if i + 1 < n else lm.norm
        hooks.append(nxt.register_forward_pre_hook(
            lambda m, a, kw, i=i: post.__setitem__(i, (a[0] if a else kw["hidden_states"])
                                                   .detach().clone()), with_kwargs=True))
    emb = {}
    hooks.append(lm.layers[0].register_forward_pre_hook(
        lambda m, a, kw: emb.__setitem__(0, (a[0] if a else kw["hidden_states"]).detach().clone()),
        with_kwargs=True))
    normed = {}
    hooks.append(lm.norm.register_forward_hook(
        lambda m, a, o: normed.__setitem__(0, o.detach().clone())))
    # finer taps for debugging one layer: rotary cos/sin, q/k after the per-head norm
    # (before RoPE), attention and MLP outputs (before their residual adds)
    fine = {}

    def keep(key):
        return lambda m, a, o: fine.__setitem__(key, (o[0] if isinstance(o, tuple) else o)
                                                .detach().clone())
    hooks.append(lm.rotary_emb.register_forward_hook(
        lambda m, a, o: fine.update(cos=o[0].detach().clone(), sin=o[1].detach().clone())))
    for i, layer in enumerate(lm.layers):
        hooks.append(layer.self_attn.q_norm.register_forward_hook(keep("q_norm.%d" % i)))
        hooks.append(layer.self_attn.k_norm.register_forward_hook(keep("k_norm.%d" % i)))
        hooks.append(layer.self_attn.register_forward_hook(keep("attn.%d" % i)))
        hooks.append(layer.mlp.register_forward_hook(keep("mlp.%d" % i)))
    with torch.no_grad():
        out = model(**inp, use_cache=False)
    for h in hooks:
        h.remove()
    arrays = [("text.embed", t2n(emb[0][0]))]
    for i in range(n):
        arrays.append(("text.layer_out.%d" % i, t2n(raw[i][0])))
        arrays.append(("text.layer.%d" % i, t2n(post[i][0])))
    arrays.append(("text.norm", t2n(normed[0][0])))
    L = emb[0].shape[1]
    if fine_taps:
        arrays += [("text.rope_cos", t2n(fine["cos"][0])),
                   ("text.rope_sin", t2n(fine["sin"][0]))]
    for i in range(n if fine_taps else 0):
        for k in ("q_norm", "k_norm", "attn", "mlp"):
            arrays.append(("text.%s.%d" % (k, i), t2n(fine["%s.%d" % (k, i)][0].reshape(L, -1))))
    logits = out.logits[0].float()
    return arrays, logits


def greedy(model, inp):
    gc = GenerationConfig(do_sample=False, max_new_tokens=N_GEN, min_new_tokens=0,
                          eos_token_id=None, pad_token_id=0, output_scores=True,
                          return_dict_in_generate=True, use_cache=True)
    saved = model.generation_config
    model.generation_config = GenerationConfig(eos_token_id=None, pad_token_id=0)
    with torch.no_grad():
        g = model.generate(**inp, generation_config=gc)
    model.generation_config = saved
    L = inp["input_ids"].shape[1]
    toks = g.sequences[0, L:]
    scores = torch.stack([s[0].float() for s in g.scores])     # [N_GEN, V]
    top2 = scores.topk(2, dim=-1).values
    return toks, scores, top2[:, 0] - top2[:, 1]


def run_prompt(model, name, text, real_ids, inp, versions, weights):
    """All dumps of one prompt; the finer per-op taps only for the f32 reference."""
    fine_taps = weights == "f32"
    arrays = [("input_ids", t2n(inp["input_ids"][0])), ("input_ids_real", t2n(real_ids))]
    ig, vg = inp.get("image_grid_thw"), inp.get("video_grid_thw")
    with torch.no_grad():
        pos, deltas = model.model.get_rope_index(inp["input_ids"], ig, vg, inp["attention_mask"])
    arrays += [("position_ids", t2n(pos[:, 0, :])), ("rope_deltas", t2n(deltas[0]))]
    if ig is not None:
        arrays += [("pixel_values", t2n(inp["pixel_values"])), ("image_grid_thw", t2n(ig))]
        arrays += vision_dumps(model, inp["pixel_values"], ig, "vision.image.", fine_taps)
    if vg is not None:
        arrays += [("pixel_values_videos", t2n(inp["pixel_values_videos"])),
                   ("video_grid_thw", t2n(vg))]
        arrays += vision_dumps(model, inp["pixel_values_videos"], vg, "vision.video.",
                               fine_taps)
    ta, logits = text_dumps(model, inp, fine_taps)
    arrays += ta
    L = logits.shape[0]
    arrays.append(("logits_last", t2n(logits[L - N_LAST:])))
    arrays.append(("argmax_all", t2n(logits.argmax(-1))))
    toks, scores, margin = greedy(model, inp)
    arrays += [("gen_tokens", t2n(toks)), ("gen_margin", t2n(margin)),
               ("gen_logits", t2n(scores[:4]))]
    eos = [model.config.text_config.eos_token_id, model.config.text_config.bos_token_id]
    meta = dict(versions, prompt=name, text=text["text"], text_expanded=text["expanded"],
                weights=weights, n_last=N_LAST,
                vocab=VOCAB, eos_in_generation=[int(t) for t in toks if int(t) in eos],
                notes="greedy generation ran with no stop ids (max_new_tokens=%d); "
                      "gen_logits are the first 4 steps' logits; text.layer_out.i is layer i's "
                      "output before the DeepStack add, text.layer.i after it" % N_GEN)
    return arrays, meta, logits


def versions():
    return {"transformers": transformers.__version__, "torch": torch.__version__,
            "numpy": np.__version__, "format": "VLQFIXT 1"}


def kl_stats(ref_logits, q_logits):
    p = torch.log_softmax(ref_logits, -1)
    q = torch.log_softmax(q_logits, -1)
    kl = (p.exp() * (p - q)).sum(-1)
    agree = (ref_logits.argmax(-1) == q_logits.argmax(-1)).float()
    return kl, agree


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quantized", help="HF dir exported by `vlq export` (dequantised weights)")
    ap.add_argument("--tag", default="q4", help="fixture suffix for --quantized")
    ap.add_argument("--no-save", action="store_true", help="do not rewrite the checkpoints")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = build_model()
    if not args.quantized and not args.no_save:
        save_checkpoints(model)
    # reload from disk so the fixtures come from exactly the committed weights
    ref = Qwen3VLForConditionalGeneration.from_pretrained(
        os.path.join(HERE, "tiny"), torch_dtype=torch.float32, attn_implementation="eager").eval()
    proc = make_processor()
    ver = versions()
    total = 0
    if args.quantized:
        qm = Qwen3VLForConditionalGeneration.from_pretrained(
            args.quantized, torch_dtype=torch.float32, attn_implementation="eager").eval()
        kls, agrees, rows = [], [], []
        for name, (content, imgs, vids, vmeta) in prompts().items():
            text, real, inp = make_inputs(proc, content, imgs, vids, vmeta)
            _, _, lref = run_prompt(ref, name, text, real, inp, ver, "f32")
            arrays, meta, lq = run_prompt(qm, name, text, real, inp, ver, args.tag)
            total += write_fixture(os.path.join(HERE, "fx_%s_%s.bin" % (name, args.tag)),
                                   arrays, meta, with_inputs=False)
            kl, agree = kl_stats(lref, lq)
            kls.append(kl)
            agrees.append(agree)
            rows.append((name, agree.mean().item(), kl.mean().item(), kl.max().item()))
        for r in rows:
            print("%-12s top1 %.4f  KL mean %.5f max %.5f" % r)
        kl, agree = torch.cat(kls), torch.cat(agrees)
        print("all %d positions: top-1 agreement %.4f, KL mean %.5f nats, max %.5f"
              % (kl.numel(), agree.mean().item(), kl.mean().item(), kl.max().item()))
    else:
        # the bf16 checkpoint's reference: f32 compute on the bf16-rounded weights (what vlq
        # computes with when it keeps a bf16 file's weights)
        bf = Qwen3VLForConditionalGeneration.from_pretrained(
            os.path.join(HERE, "tiny-bf16"), torch_dtype=torch.float32,
            attn_implementation="eager").eval()
        for name, (content, imgs, vids, vmeta) in prompts().items():
            text, real, inp = make_inputs(proc, content, imgs, vids, vmeta)
            arrays, meta, _ = run_prompt(ref, name, text, real, inp, ver, "f32")
            total += write_fixture(os.path.join(HERE, "fx_%s.bin" % name), arrays, meta)
            print("%-12s L=%d gen=%s min margin %.4f" % (
                name, inp["input_ids"].shape[1],
                [int(x) for x in dict(arrays)["gen_tokens"]],
                float(dict(arrays)["gen_margin"].min())))
            arrays, meta, _ = run_prompt(bf, name, text, real, inp, ver, "bf16")
            total += write_fixture(os.path.join(HERE, "fx_%s_bf16.bin" % name), arrays, meta,
                                   with_inputs=False)
    print("fixtures: %d bytes" % total)


if __name__ == "__main__":
    main()
