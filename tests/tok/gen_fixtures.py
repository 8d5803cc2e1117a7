#!/usr/bin/env python3
"""Regenerate the tokenizer fixtures from the reference (HF tokenizers, transformers).

Writes, next to this script:
  corpus.json  the test strings with their reference ids (and the reference decode when
               it differs from the string, i.e. when NFC changed it), the prose range and
               the recipe + SHA-256 of the ids of the >= 1 MB text (big_text below; the
               C test rebuilds the same text from the corpus)
  decode.json  id sequences (random, broken UTF-8, special tokens) with their decodes
  chat.json    Qwen3-VL chat prompts with images / videos, ids from Qwen3VLProcessor
  added_flags.json  added tokens with lstrip / rstrip / normalized set on a copy of the
               tokenizer, and the reference ids of strings around them

Usage (from the repo root): /opt/ref/venv/bin/python tests/tok/gen_fixtures.py
Pinned versions: tests/tok/requirements.txt.
"""
import hashlib
import json
import os
import random
import shutil
import struct
import sys
import tempfile

import numpy as np
import tokenizers
import transformers
from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TOK_JSON = os.path.join(ROOT, "tests/data/qwen3-tokenizer/tokenizer.json")
BIG_SEED = 0x9E3779B97F4A7C15
BIG_BYTES = 1 << 20
MASK64 = (1 << 64) - 1


def corpus_strings():
    s = []
    # English
    s += ["Hello world!", "The quick brown fox jumps over the lazy dog.",
          "It was the best of times, it was the worst of times.", "hello", " hello", "  hello",
          "Hello, World", "HELLO WORLD", "e-mail: someone@example.com", "U.S.A. vs. U.K.",
          "Mr. O'Neil's dog isn't here; he's gone.", "rock'n'roll", "state-of-the-art",
          "This costs $3.50 (or €3,20) — roughly 30% less.", "a", "A", "I", "ok.", "Yes? No! Maybe...",
          "semi;colon:colon", "tab\tseparated\tvalues", "quote \"double\" and 'single'"]
    # Other scripts
    s += ["你好，世界！", "我爱自然语言处理。", "中华人民共和国成立于1949年。", "一二三四五六七八九十",
          "繁體中文測試：資訊與電腦", "こんにちは世界", "日本語のテキストです。カタカナ、ひらがな、漢字。",
          "ｶﾀｶﾅ半角", "東京は2024年に", "안녕하세요 세계", "한국어 문장입니다. 테스트!",
          "مرحبا بالعالم", "اللغة العربية جميلة، أليس كذلك؟", "مَرْحَبًا", "١٢٣٤٥ عربي",
          "नमस्ते दुनिया", "हिन्दी भाषा में वाक्य।", "क्षत्रिय", "สวัสดีชาวโลก", "ภาษาไทยไม่มีช่องว่างระหว่างคำ",
          "Привет, мир!", "Съешь же ещё этих мягких французских булок.", "ПРИВЕТ мир",
          "Γειά σου Κόσμε", "Ελληνικά: αβγδεζηθ ΑΒΓΔ", "שלום עולם", "Tiếng Việt có dấu",
          "Zażółć gęślą jaźń", "Straße Größe ÄÖÜ äöü ß", "ᚠᛇᚻ᛫ᛒᛦᚦ", "ሰላም ልዑል", "Ꭰꭰ cherokee",
          "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙", "𠀀𠀁𠀂 ext-B", "ꙮ many eyes"]
    # Emoji
    s += ["😀", "😀😃😄", "👍🏽", "👩‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷🇯🇵", "1️⃣", "❤️", "🫠 new",
          "I ❤️ NY 🗽", "👋🏻👋🏼👋🏽👋🏾👋🏿", "🧑🏾‍🚀 astronaut", "emoji😀inside"]
    # Combining marks and NFC
    s += ["e\u0301", "cafe\u0301", "A\u030A", "\u212B", "\u2126", "a\u0323\u0302", "a\u0302\u0323",
          "\u1100\u1161\u11A8", "\u1100\u1161", "\uAC00\u11A8", "\u0958", "<\u0338", "=\u0338",
          "Vie\u0323\u0302t Nam", "n\u0303o", "\u0041\u0308\u0304", "x\u0301\u0301\u0301",
          "\u0301 leading mark", "\u0B47\u0B3E", "\u0CBF\u0CD5", "\u3099", "か\u3099", "ﬁ ligature",
          "\u00C5\u0301", "o\u031B\u0323", "\u0344", "\u0F73", "e\u0301\u0020e\u0301",
          # marks newer than the reference's Unicode data: it does not reorder them
          "x\u08CF\u3099", "\u0301\u1DF7", "a\u0301\u1DF7", "\u0B97\u0301\u1DF7",
          "\U00011F41\u0301", "\u0301\U00011F41\u0323"]
    # Full-width and compatibility forms
    s += ["ＡＢＣ１２３！", "Ｈｅｌｌｏ　ｗｏｒｌｄ", "（全角）", "①②③", "½ ¼ ¾", "x² + y³", "Ⅻ Ⅳ",
          "\u3000\u3000indent"]
    # Line endings and whitespace
    s += ["a\r\nb", "a\rb", "a\nb", "\r\n", "\r", "\n", "\r\n\r\n", "line1\n\n\nline2",
          "  \n  x", "x  \n", "a\r\n\r\nb", "\n\r", "end\r", "\t", "\t\t\ta", "a\t\tb",
          "a \tb", "\n\n\n\n", " \n \n ", "   ", "x   ", "   x", "a    b", "a\u00a0b",
          "a\u2028b", "a\u0085b", "\u200b", "a\u200bb", "\ufeffbom", "\u2003em space", "a \u3000b",
          "\u00a0\u00a0x", "tail\n", "\n\nlead"]
    s += [" " * n for n in (2, 3, 4, 7, 8, 16, 33)] + ["a" + " " * n + "b" for n in (2, 5, 17)]
    s += ["\t" * n + "x" for n in (2, 5)] + ["\n" * n for n in (2, 7)] + [" \t\n" * 5]
    # Digits and numbers
    s += ["0", "12345", "3.14159", "1,000,000", "-42", "+1 (555) 123-4567", "2024-01-31T12:00:00Z",
          "0x1F4A9", "1e-10", "٣٤٥", "१२३", "12abc34", "v1.2.3", "100%", "9999999999999999999"]
    # Code
    s += ["def f(x):\n    return x ** 2\n", "int main(void) { return 0; }",
          "for (int i = 0; i < n; i++) {\n\tsum += a[i];\n}",
          "const x = () => { console.log(`t=${t}`); };", "if x != nil {\n    panic(err)\n}",
          "#include <stdio.h>\n", "    indented code\n        more", "foo_bar_baz = FooBar.baz()",
          "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
          "INSERT INTO t (a, b) VALUES ('x''y', NULL);",
          "<html><body><p class=\"x\">Hi &amp; bye</p></body></html>", "<br/>", "<!-- comment -->",
          "https://example.com/path?query=1&x=y#frag", "http://localhost:8080/", "ftp://a.b/c",
          "user@host:~$ ls -la | grep foo", "C:\\Windows\\System32", "$$E = mc^2$$",
          "\\frac{a}{b} + \\sqrt{x^2+y^2}", "\\begin{equation} \\int_0^\\infty e^{-x} dx \\end{equation}",
          '{"key": [1, 2, 3], "nested": {"a": null}}', "a->b", "x:=1", "!==", "...", "---", "***",
          "~~~", "/* */", "// comment", "#!/bin/sh"]
    # Contractions, upper and lower case
    s += ["I'm", "YOU'RE", "we'Ve", "they'LL", "it'S", "He'D", "don't", "DON'T", "'s", "'S",
          "'t", "'re", "'RE", "'Re", "'rE", "'ve", "'m", "'ll", "'LL", "'d", "'", "''", "'x", "' s",
          "'ſ", "'ſx", "'\u212A", "'K", "ſ", "O'Neil", "'re'", "cat's", "CAT'S", "shouldn't've",
          "y'all", "'sup", "'Twas", "’s curly", "the '90s"]
    # Special tokens inside text, and look-alikes
    s += ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "a<|im_start|>b", "<|im_start|><|im_end|>",
          "<think>x</think>", "<tool_call>{}</tool_call>", "<|vision_start|><|image_pad|><|vision_end|>",
          "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", " <|im_start|> ",
          "\n<|im_end|>\n", "<|im_start|", "<|im_start>", "<| im_start |>", "<|IM_START|>",
          "<<|im_start|>>", "<|im_start|>|>", "<|im_sta", "rt|>", "< |endoftext|>", "<|endoftext||>",
          "<|fim_prefix|>x<|fim_suffix|>y<|fim_middle|>", "<|object_ref_start|>", "<think>",
          "</think>", "<thinking>", "<|box_start|>(1,2)<|box_end|>", "<|endoftext|><|endoftext|>",
          "text<|endoftext|>more", "<|>", "<||>", "<|unknown|>"]
    # Very long words
    s += ["a" * 1000, "supercalifragilistic" * 50, "あ" * 500, "7" * 300, "!" * 400, "-" * 1000,
          "ab" * 700, "Ä" * 300, "x" * 47, "y" * 48, "z" * 49, "qwertyuiop" * 4,
          "pneumonoultramicroscopicsilicovolcanoconiosis",
          "Donaudampfschifffahrtselektrizitätenhauptbetriebswerkbauunterbeamtengesellschaft"]
    # Odd characters
    s += ["", " ", "\x00", "a\x00b", "\x7f", "\x01\x02\x03", "\ue000 private", "\U0010FFFF",
          "\U000E0001 tag", "\u0600\u0601", "\ufffd", "\U0001F9D1\u200D\U0001F91D\u200D\U0001F9D1"]
    rng = random.Random(1234)
    base = [p for p in s if p]
    for _ in range(6):
        s.append("".join(rng.choice(base) for _ in range(rng.randint(2, 6))))
    # Random mixtures of characters from every class.
    alphabet = ("abcXYZ019 \t\n\r'!?.,;:-_()[]{}<>|/\\\"@#$%^&*~`" "éüñçßøÆ" "你好世界中文" "こんにちはカタカナ"
                "한국어" "مرحبا" "नमस्ते" "สวัสดี" "Привет" "Γειά" "\u0301\u0308\u0323\u0338\u3099"
                "\u00a0\u2003\u3000\u200b\u2028" "😀👍🏽\u200d❤️🇫" "①½²Ⅻ١२" "ſ\u212A")
    for _ in range(60):
        s.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))))
    # Random codepoints from every plane, with marks and the regex's literals mixed in.
    for _ in range(150):
        cps = []
        for _ in range(rng.randint(1, 12)):
            r = rng.random()
            cp = (rng.randint(1, 0x2FFF) if r < 0.3 else rng.randint(0x3000, 0xFFFF) if r < 0.5
                  else rng.randint(0x10000, 0x10FFFF) if r < 0.6 else rng.randint(0x10000, 0x1FFFF)
                  if r < 0.8 else rng.choice([0x20, 0x0A, 0x0D, 0x27, 0x61, 0x41, 0x31, 0x2E, 0x301,
                                              0x3099, 0x1161, 0x11A8, 0x1DF7, 0x8CF]))
            cps.append(chr(0x41 if 0xD800 <= cp < 0xE000 else cp))
        s.append("".join(cps))
    return s


WORDS = ("the of and to in is was for on that with as by at from it an be this which or are have "
         "not had but were his they their one all been has more when will would who so no out up "
         "time system model data value process result page video frame token image text document "
         "queue worker job batch engine memory cache kernel layer attention vision language summary "
         "report figure table section chapter scan invoice receipt address number date total amount "
         "quickly slowly carefully however therefore meanwhile although because").split()
EXTRA = ["naïve café", "Zürich", "São Paulo", "东京", "北京大学", "Москва", "résumé", "jalapeño",
         "I'm", "don't", "it's", "we'll", "they've", "(see Fig. 3)", "e.g.", "i.e.", "etc.", "—", "“quoted”"]


def prose(rng, n_par):
    out = []
    for _ in range(n_par):
        sents = []
        for _ in range(rng.randint(3, 8)):
            words = []
            for _ in range(rng.randint(5, 18)):
                r = rng.random()
                if r < 0.08:
                    words.append(rng.choice(EXTRA))
                elif r < 0.12:
                    words.append(str(rng.randint(0, 100000)))
                else:
                    words.append(rng.choice(WORDS))
            w = " ".join(words)
            sents.append(w[0].upper() + w[1:] + rng.choice([".", ".", ".", "?", "!", ";", ":"]))
        out.append(" ".join(sents))
    return out


def big_text(corpus, prose_first, prose_count):
    """The >= 1 MB text: corpus strings picked by xorshift64 (70% prose), joined by
    separators. tests/test_tok.c rebuilds it the same way (tok_test_big_text)."""
    x = BIG_SEED
    seps = ["", " ", "\n", "\n\n", ". "]
    parts, size = [], 0
    while size < BIG_BYTES:
        x ^= (x << 13) & MASK64
        x ^= x >> 7
        x ^= (x << 17) & MASK64
        if x % 10 < 7:
            i = prose_first + (x >> 8) % prose_count
        else:
            i = (x >> 8) % len(corpus)
        sep = seps[(x >> 40) % 5]
        parts += [corpus[i], sep]
        size += len(corpus[i].encode()) + len(sep.encode())
    return "".join(parts)


def ids_sha256(ids):
    return hashlib.sha256(struct.pack("<%di" % len(ids), *ids)).hexdigest()


def gen_corpus(tok):
    strings = corpus_strings()
    prose_first = len(strings)
    pr = prose(random.Random(42), 120)
    strings += pr
    entries = []
    for text in strings:
        ids = tok.encode(text).ids
        dec = tok.decode(ids, skip_special_tokens=False)
        nfc = tok.normalizer.normalize_str(text)
        assert dec == nfc, (text, dec, nfc)
        e = {"text": text, "ids": ids}
        if dec != text:
            e["decoded"] = dec
        entries.append(e)
    big = big_text(strings, prose_first, len(pr))
    big_ids = tok.encode(big).ids
    assert tok.decode(big_ids, skip_special_tokens=False) == tok.normalizer.normalize_str(big)
    return {"tokenizers_version": tokenizers.__version__, "prose_first": prose_first,
            "prose_count": len(pr),
            "big": {"seed": "%016x" % BIG_SEED, "min_bytes": BIG_BYTES, "bytes": len(big.encode()),
                    "n_ids": len(big_ids), "ids_sha256": ids_sha256(big_ids),
                    "decoded_sha256": hashlib.sha256(
                        tok.normalizer.normalize_str(big).encode()).hexdigest()},
            "cases": entries}, big


def gen_decode(tok):
    rng = random.Random(7)
    n = tok.get_vocab_size()
    cases = [[], [151644, 872, 198], [151643], [33, 151645, 33], [151667, 40, 151668],
             [126], [127, 128], [155, 156], [1, 159999], [999999999], [220, 151655, 220]]
    byte_ids = [tok.token_to_id(c) for c in ("Ã", "Ä", "ä", "ð", "Ł", "ł", "¤", "¢", "Ģ", "Ġ")]
    for _ in range(30):
        cases.append([rng.choice(byte_ids) for _ in range(rng.randint(1, 8))])
    for _ in range(30):
        cases.append([rng.randrange(n) for _ in range(rng.randint(1, 20))])
    out = []
    for ids in cases:
        ok = [i for i in ids if 0 <= i < 2**32]
        out.append({"ids": ok, "text": tok.decode(ok, skip_special_tokens=False),
                    "text_skip": tok.decode(ok, skip_special_tokens=True)})
    return {"cases": out}


# Added-token flags the Qwen file does not use, set on a copy of it (tests/test_tok.c
# makes the same copy): lstrip, rstrip, normalized (matched after NFC).
FLAGS = {"<think>": {"lstrip": True}, "</think>": {"rstrip": True},
         "<tool_call>": {"lstrip": True, "rstrip": True}, "<|fim_pad|>": {"normalized": True}}
FLAG_TOKENS = [{"id": 151669, "content": "\u00e9\u0301x", "normalized": True},
               {"id": 151670, "content": "e\u0301z", "normalized": True}]


def gen_added_flags():
    d = json.load(open(TOK_JSON, encoding="utf-8"))
    for a in d["added_tokens"]:
        a.update(FLAGS.get(a["content"], {}))
    for a in FLAG_TOKENS:
        d["added_tokens"].append(dict(single_word=False, lstrip=False, rstrip=False, special=False,
                                      **a))
    tok = Tokenizer.from_str(json.dumps(d))
    strings = ["a <think> b", "a  \t<think>b", "x</think>   y", "x</think>\n\ny", " <tool_call> ",
               "\n\n<tool_call>\n\nz", "<think><think>", "</think></think> ", "a<|fim_pad|>b",
               "q\u00e9z", "qe\u0301z", "\u00e9\u0301x", "<think>  </think>  <think>", "   <think>",
               "</think>   ", "\u3000<think>\u3000", "a\u00a0<tool_call>\u00a0b", "<|im_start|> <think>",
               "e\u0301z<think>e\u0301z", "x <|fim_pad|> y"]
    return {"flags": FLAGS, "tokens": FLAG_TOKENS,
            "cases": [{"text": t, "ids": tok.encode(t).ids} for t in strings]}


def gen_chat():
    from transformers import AutoProcessor
    from transformers.video_utils import VideoMetadata
    tmp = tempfile.mkdtemp()
    for d in ("tests/data/qwen3-tokenizer", "tests/data/qwen3-vl-4b-instruct"):
        for f in os.listdir(os.path.join(ROOT, d)):
            if f.endswith(".json"):
                shutil.copy(os.path.join(ROOT, d, f), tmp)
    proc = AutoProcessor.from_pretrained(tmp)
    shutil.rmtree(tmp)
    cases = [
        {"system": None, "parts": [("image", (64, 96)), ("text", "Describe this image.")]},
        {"system": "You are terse.", "parts": [("text", "Watch: "), ("video", (8, 64, 64, 2.0)),
                                               ("text", "Summarize.")]},
        {"system": None, "parts": [("text", "Read the page.\n"), ("image", (600, 400))]},
        {"system": "Sys <think> ok", "parts": [("video", (10, 96, 128, 3.0)), ("text", "What happens?"),
                                               ("image", (32, 32)), ("text", " And <|im_end|> here")]},
    ]
    out = []
    for c in cases:
        content, images, videos, metas = [], [], [], []
        for kind, arg in c["parts"]:
            if kind == "text":
                content.append({"type": "text", "text": arg})
            elif kind == "image":
                content.append({"type": "image"})
                images.append(np.full((arg[0], arg[1], 3), 128, np.uint8))
            else:
                content.append({"type": "video"})
                t, h, w, fps = arg
                videos.append(np.full((t, h, w, 3), 100, np.uint8))
                metas.append(VideoMetadata(total_num_frames=t, fps=fps, frames_indices=list(range(t))))
        msgs = ([{"role": "system", "content": c["system"]}] if c["system"] else []) + \
               [{"role": "user", "content": content}]
        text = proc.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        kw = {"images": images} if images else {}
        if videos:
            kw.update(videos=videos, video_metadata=metas, do_sample_frames=False)
        enc = proc(text=[text], return_tensors="pt", **kw)
        igrids = enc["image_grid_thw"].tolist() if images else []
        vgrids = enc["video_grid_thw"].tolist() if videos else []
        parts, vi = [], 0
        for kind, arg in c["parts"]:
            if kind == "text":
                parts.append({"type": "text", "text": arg})
            elif kind == "image":
                parts.append({"type": "image", "grid": igrids.pop(0)})
            else:
                g = vgrids.pop(0)
                times = proc._calculate_timestamps(metas[vi].frames_indices, metas[vi].fps,
                                                   proc.video_processor.merge_size)
                vi += 1
                parts.append({"type": "video", "grid": g, "times": [float(x) for x in times]})
        out.append({"system": c["system"], "parts": parts, "ids": enc["input_ids"][0].tolist()})
    return {"transformers_version": transformers.__version__, "cases": out}


def main():
    tok = Tokenizer.from_file(TOK_JSON)
    corpus, _ = gen_corpus(tok)
    dump = lambda obj, name: json.dump(obj, open(os.path.join(HERE, name), "w"), ensure_ascii=False,
                                       separators=(",", ":"))
    dump(corpus, "corpus.json")
    dump(gen_decode(tok), "decode.json")
    dump(gen_chat(), "chat.json")
    dump(gen_added_flags(), "added_flags.json")
    print("corpus: %d strings, big text %d bytes, %d ids" %
          (len(corpus["cases"]), corpus["big"]["bytes"], corpus["big"]["n_ids"]), file=sys.stderr)


if __name__ == "__main__":
    main()
