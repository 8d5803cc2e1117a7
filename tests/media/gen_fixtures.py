#!/usr/bin/env python3
"""Golden fixtures for src/prep.c from transformers' Qwen3-VL processors.

Run with the reference venv:  /opt/ref/venv/bin/python tests/media/gen_fixtures.py
Writes tests/media/prep_golden.bin. The inputs are not stored: every pixel comes from
pattern() below, which tests/test_prep.c computes identically in integer arithmetic.
The outputs are the processors' pixel_values mapped back to uint8 (exact: every
value is (u - 127.5) / 127.5 in float32 for an integer u, checked here), in the
reference patch order, zlib-compressed.

File layout (little endian): magic "VLQPRP01", u32 version (1), u32 header bytes (20),
u32 case count; per case: u32 kind (1 image, 2 video), u32 width, height, frames,
u64 min_pixels, max_pixels, u32 grid_t, grid_h, grid_w, u32 compressed bytes,
u64 raw bytes, then the zlib data.
"""
import json
import os
import struct
import zlib

import numpy as np
import torch
import transformers
from transformers.models.qwen2_vl.image_processing_qwen2_vl_fast import Qwen2VLImageProcessorFast
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

HERE = os.path.dirname(os.path.abspath(__file__))
CFG = os.path.join(HERE, "..", "data", "qwen3-vl-4b-instruct")


def pattern(w, h, frame):
    """uint8 [h, w, 3]: gradients, a checkerboard, hashed noise and a moving box."""
    y, x = np.mgrid[0:h, 0:w].astype(np.int64)
    r = (x * 255) // max(w - 1, 1)
    g = (y * 255) // max(h - 1, 1)
    b = ((x // 8 + y // 8) % 2) * 180 + 30
    noise = ((x * 73856093) ^ (y * 19349663) ^ (frame * 83492791)) & 7
    r = (r + noise) % 256
    box = (x >= 5 + 3 * frame) & (x < 25 + 3 * frame) & (y >= 7) & (y < 30)
    g = np.where(box, 255 - g, g)
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def to_u8(pv):
    pv = pv.numpy().astype(np.float32)
    u = np.rint(pv * 127.5 + 127.5)
    assert u.min() >= 0 and u.max() <= 255
    back = ((u.astype(np.float32) - np.float32(127.5)) / np.float32(127.5)).astype(np.float32)
    assert np.array_equal(back, pv), "pixel_values are not an exact uint8 image"
    return u.astype(np.uint8)


def main():
    img_cfg = json.load(open(os.path.join(CFG, "preprocessor_config.json")))
    vid_cfg = json.load(open(os.path.join(CFG, "video_preprocessor_config.json")))
    img_cfg.pop("processor_class", None); img_cfg.pop("image_processor_type", None)
    vid_cfg.pop("processor_class", None); vid_cfg.pop("video_processor_type", None)
    improc = Qwen2VLImageProcessorFast(**img_cfg)
    vidproc = Qwen3VLVideoProcessor(**vid_cfg)
    imin, imax = img_cfg["size"]["shortest_edge"], img_cfg["size"]["longest_edge"]
    vmin, vmax = vid_cfg["size"]["shortest_edge"], vid_cfg["size"]["longest_edge"]

    cases = []
    # Images with the real config: already at the target size (bit exact), upscaled
    # by the min_pixels branch, odd sizes.
    for w, h in [(256, 256), (200, 300), (333, 257)]:
        cases.append((1, w, h, 1, imin, imax))
    # Downscale (antialias) through a smaller max_pixels, as the planner asks for.
    for w, h, mx in [(400, 300, 70000), (1001, 333, 70000)]:
        cases.append((1, w, h, 1, imin, mx))
    # Videos with the real config: sizes stay near the input (min is on T*H*W), so
    # rounding to 32 resizes one or both axes; an odd frame count pads T.
    for w, h, t in [(96, 64, 8), (200, 130, 6), (160, 90, 5), (64, 64, 4)]:
        cases.append((2, w, h, t, vmin, vmax))
    cases.append((2, 320, 180, 4, vmin, 4 * 30000))  # a budget-limited downscale

    out = bytearray(b"VLQPRP01" + struct.pack("<III", 1, 20, len(cases)))
    for kind, w, h, t, mn, mx in cases:
        size = {"shortest_edge": mn, "longest_edge": mx}
        if kind == 1:
            img = torch.from_numpy(pattern(w, h, 0)).permute(2, 0, 1).contiguous()
            res = improc(images=[img], size=size, return_tensors="pt")
            pv, grid = res["pixel_values"], res["image_grid_thw"][0].tolist()
        else:
            frames = np.stack([pattern(w, h, f) for f in range(t)])
            vid = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()
            res = vidproc(videos=[vid], size=size, do_sample_frames=False, return_tensors="pt")
            pv, grid = res["pixel_values_videos"], res["video_grid_thw"][0].tolist()
        raw = to_u8(pv).tobytes()
        comp = zlib.compress(raw, 9)
        out += struct.pack("<IIIIQQIIIIQ", kind, w, h, t, mn, mx, *grid, len(comp), len(raw))
        out += comp
        print(f"kind {kind} {w}x{h}x{t} -> grid {grid} ({len(raw)} -> {len(comp)} bytes)")
    path = os.path.join(HERE, "prep_golden.bin")
    open(path, "wb").write(out)
    print(f"wrote {path}: {len(out)} bytes, transformers {transformers.__version__}, "
          f"torch {torch.__version__}, cpu {torch.backends.cpu.get_cpu_capability()}")


def images():
    """Formats the ffmpeg CLI cannot write: a 3-page TIFF and a CMYK JPEG (Pillow)."""
    from PIL import Image
    pages = [Image.new("RGB", (40, 30), (255, 0, 0)), Image.new("RGB", (50, 20), (0, 255, 0)),
             Image.new("RGB", (30, 30), (0, 0, 255))]
    pages[0].save(os.path.join(HERE, "pages3.tif"), save_all=True, append_images=pages[1:])
    Image.new("CMYK", (32, 24), (255, 0, 0, 0)).save(os.path.join(HERE, "cmyk.jpg"), quality=95)


def sampling():
    """Qwen3VLVideoProcessor.sample_frames on many (frames, video fps, fps) triples:
    one line each, "total video_fps fps n idx...", in sample_golden.txt."""
    from transformers.video_utils import VideoMetadata
    vid_cfg = json.load(open(os.path.join(CFG, "video_preprocessor_config.json")))
    vid_cfg.pop("processor_class", None); vid_cfg.pop("video_processor_type", None)
    proc = Qwen3VLVideoProcessor(**vid_cfg)
    lines = []
    for total in [1, 2, 3, 4, 5, 7, 24, 25, 30, 31, 49, 100, 149, 250, 299, 300, 301, 1000,
                  1499, 1500, 3000, 17982, 90000]:
        big = total >= 1000
        for vfps in [25.0, 29.97002997002997] if big else [23.976023976023978, 25.0,
                                                             29.97002997002997, 30.0, 5.0, 60.0]:
            for fps in [2.0, 0.5] if big else [2.0, 1.0, 0.5, 3.0]:
                idx = proc.sample_frames(VideoMetadata(total_num_frames=total, fps=vfps), fps=fps)
                lines.append(f"{total} {vfps!r} {fps!r} {len(idx)} " + " ".join(map(str, idx)))
    open(os.path.join(HERE, "sample_golden.txt"), "w").write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
    images()
    sampling()
