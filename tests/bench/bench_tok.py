#!/usr/bin/env python3
"""Tokenizer benchmark, vlq beside Hugging Face tokenizers, single thread, same text.

usage: bench_tok.py BENCH_TOK_BINARY [TOKENIZER_JSON]
Builds the >= 1 MB text of tests/tok/gen_fixtures.py (big_text), times HF
Tokenizer.encode on it (best of 5, RAYON_NUM_THREADS=1), runs the C benchmark on the
same file, and prints MB/s of both and the ratio, load times and vlq's resident memory.
"""
import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import json
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def big_text():
    with open(os.path.join(ROOT, "tests/tok/corpus.json"), encoding="utf-8") as f:
        fx = json.load(f)
    sys.path.insert(0, os.path.join(ROOT, "tests/tok"))
    strings = [c["text"] for c in fx["cases"]]
    x, mask = int(fx["big"]["seed"], 16), (1 << 64) - 1
    seps, parts, size = ["", " ", "\n", "\n\n", ". "], [], 0
    while size < fx["big"]["min_bytes"]:  # the same recipe as gen_fixtures.big_text
        x ^= (x << 13) & mask
        x ^= x >> 7
        x ^= (x << 17) & mask
        i = fx["prose_first"] + (x >> 8) % fx["prose_count"] if x % 10 < 7 else (x >> 8) % len(strings)
        sep = seps[(x >> 40) % 5]
        parts += [strings[i], sep]
        size += len(strings[i].encode()) + len(sep.encode())
    return "".join(parts), fx["big"]["n_ids"]


def main():
    binary = sys.argv[1]
    tok_json = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        ROOT, "tests/data/qwen3-tokenizer/tokenizer.json")
    text, n_ids = big_text()
    nbytes = len(text.encode())
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
        f.write(text.encode())
        path = f.name
    hf = {}
    try:
        from tokenizers import Tokenizer
        import tokenizers
        t0 = time.perf_counter()
        tok = Tokenizer.from_file(tok_json)
        hf["load_ms"] = (time.perf_counter() - t0) * 1e3
        best = 1e9
        for _ in range(5):
            t0 = time.perf_counter()
            ids = tok.encode(text).ids
            best = min(best, time.perf_counter() - t0)
        assert len(ids) == n_ids, "HF ids differ from the fixture"
        hf["encode_mb_s"] = nbytes / best / 1e6
        lines, best = text.split("\n"), 1e9
        for _ in range(5):
            t0 = time.perf_counter()
            for line in lines:
                tok.encode(line)
            best = min(best, time.perf_counter() - t0)
        hf["lines_mb_s"] = nbytes / best / 1e6
        hf["version"] = tokenizers.__version__
    except ImportError:
        print("HF tokenizers not importable: vlq figures only", file=sys.stderr)
    out = subprocess.run([binary, tok_json, path, "5"], capture_output=True, text=True, check=True)
    os.unlink(path)
    c = dict(line.split("=", 1) for line in out.stdout.split())
    assert int(c["n_ids"]) == n_ids, "vlq ids differ from the fixture"
    print("tokenizer benchmark: %.2f MB text, %d ids, single thread (a shared machine: noisy)"
          % (nbytes / 1e6, n_ids))
    print("  %-28s %10s %10s" % ("", "vlq", "HF " + hf.get("version", "(absent)")))
    print("  %-28s %10.2f %10s" % ("encode MB/s (best of 5)", float(c["encode_mb_s"]),
                                    "%.2f" % hf["encode_mb_s"] if hf else "-"))
    print("  %-28s %10.2f %10s" % ("encode MB/s line by line", float(c["lines_mb_s"]),
                                    "%.2f" % hf["lines_mb_s"] if hf else "-"))
    print("  %-28s %10.1f %10s" % ("load ms", float(c["load_ms"]),
                                    "%.1f" % hf["load_ms"] if hf else "-"))
    print("  %-28s %10.1f" % ("RSS of loaded tokenizer MB", float(c["rss_mb"])))
    print("  %-28s %10.1f" % ("peak RSS (with JSON) MB", float(c["peak_rss_mb"])))
    print("  %-28s %10.1f" % ("decode MB/s", float(c["decode_mb_s"])))
    if hf:
        print("  encode ratio vlq/HF: %.2fx whole text, %.2fx line by line (target >= 1, goal 2)"
              % (float(c["encode_mb_s"]) / hf["encode_mb_s"],
                 float(c["lines_mb_s"]) / hf["lines_mb_s"]))


if __name__ == "__main__":
    main()
