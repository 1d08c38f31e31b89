"""Cases for tests/browser/tokenizer.spec.ts: what wgllm's Python tokenizer makes of many texts.

    python tests/browser/tokenizer_fixtures.py OUT_DIR

For every llama.cpp test vocabulary the Python tests cover (tests/py/test_tokenizer.py
LLAMA_CPP_VOCABS) and the real SmolLM2 and Gemma-3 270M models, links the GGUF file into OUT_DIR
(the browser streams only its header) and writes <name>.json:
  - the tokenizer's special ids, flags and end-of-generation ids;
  - cases: llama.cpp's .inp texts (with llama.cpp's .out ids) and ~200 seeded random texts, each
    with Python's ids for every add_special/parse_special combination, Python's decode of them and
    the pieces Python's incremental UTF-8 decoder gives token by token (what a streaming decoder
    must return);
  - random id sequences (all token types, byte tokens that split characters) with the same decodes;
  - token_bytes of a sample of ids (every special and byte token, random others).
flags.json holds Python's Unicode category flags for every code point, as runs;
pre_tokenizers.json Python's pre-tokenizer table (tokenizer.ggml.pre -> regexes and flags) and the
words Python's pre_tokenize cuts test_tokenizer.py's SPLIT_TEXTS and ~60 seeded random texts into,
for every entry.
Work already done is kept: a stamp of the inputs (this file, the tokenizer, the vocab files)
decides whether a file is rewritten.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import random
import sys
import unicodedata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "py"))

import assets  # noqa: E402  the tests' shared, cached fetchers
from gguf import TokenType  # noqa: E402
from test_tokenizer import LLAMA_CPP_VOCABS, SPLIT_TEXTS, read_cases  # noqa: E402

from wgllm.gguf_io import GGUFFile  # noqa: E402
from wgllm.tokenizer import PRE_TOKENIZERS, codepoint_flags, pre_tokenize, Tokenizer  # noqa: E402

RANDOM_TEXTS = 200
RANDOM_ID_SEQUENCES = 40
VARIANTS = [(False, False), (True, False), (False, True), (True, True)]  # (add_special, parse_special)
WHITESPACE = [" ", "  ", "\t", "\n", "\r\n", "\n\n", "\u00a0", "\u3000", "\u2009", "\x0b", "\x85", "\u2028", "   \n "]
SPECIAL_TEXTS = ["<|im_start|>", "<|im_end|>", "<s>", "</s>", "<start_of_turn>", "<end_of_turn>", "<|endoftext|>",
                 "<eos>", "<bos>", "<|eot_id|>", "<unk>"]
EMOJI = ["😁", "🦙", "😶‍🌫️", "👨‍👩‍👧‍👦", "🇫🇷", "✅", "👋🏽", "🚀"]


def assigned(cp: int) -> bool:
    """A code point Python's Unicode (14.0) assigns: newer ones may have another category in the browser."""
    return unicodedata.category(chr(cp)) not in ("Cn", "Cs")


def random_char(rng: random.Random, lo: int, hi: int) -> str:
    while True:
        cp = rng.randrange(lo, hi)
        if assigned(cp):
            return chr(cp)


def random_text(rng: random.Random, vocab_specials: list[str], vocab_words: list[str]) -> str:
    parts = []
    for _ in range(rng.randrange(0, 14)):
        kind = rng.randrange(13)
        if kind == 0:
            parts.append("".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(rng.randrange(1, 9))))
        elif kind == 1:
            parts.append("".join(rng.choice(WHITESPACE) for _ in range(rng.randrange(1, 4))))
        elif kind == 2:
            parts.append("".join(rng.choice("0123456789٣３") for _ in range(rng.randrange(1, 13))))
        elif kind == 3:
            parts.append("".join(random_char(rng, 0x4E00, 0xA000) for _ in range(rng.randrange(1, 5))))
        elif kind == 4:
            parts.append(rng.choice(EMOJI) if rng.random() < 0.5 else random_char(rng, 0x1F300, 0x1FB00))
        elif kind == 5:  # a letter with combining marks
            parts.append(rng.choice("aeoun") + "".join(random_char(rng, 0x300, 0x370) for _ in range(rng.randrange(1, 3))))
        elif kind == 6:  # any astral character
            parts.append(random_char(rng, 0x10000, 0x110000))
        elif kind == 7:  # any BMP character
            parts.append(random_char(rng, 0x80, 0x10000))
        elif kind == 8:
            parts.append(rng.choice(SPECIAL_TEXTS + vocab_specials))
        elif kind == 9:
            parts.append(rng.choice(["'s", "'t", "'LL", "'Re", "'VE", "'d", "'m", "'x", "\u2581", "\u2581\u2581"]))
        elif kind == 10:
            parts.append("".join(rng.choice("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") for _ in range(rng.randrange(1, 5))))
        elif kind == 11:
            parts.append(rng.choice(vocab_words))
        else:
            parts.append("".join(chr(rng.randrange(0, 0x80)) for _ in range(rng.randrange(1, 6))))
    return "".join(parts)


def pieces(tok: Tokenizer, ids: list[int]) -> list[str]:
    """What a streaming decoder returns after each id, and at the end: Python's incremental
    UTF-8 decoder, fed each token's bytes (the first token's space prefix dropped, as decode does)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out = []
    for k, tid in enumerate(ids):
        data = tok.token_bytes(tid)
        if k == 0 and tok.add_space_prefix and data.startswith(b" "):
            data = data[1:]
        out.append(decoder.decode(data))
    out.append(decoder.decode(b"", final=True))
    assert "".join(out) == tok.decode(ids), ids
    return out


def case(tok: Tokenizer, text: str, add_special: bool, parse_special: bool, **extra) -> dict:
    ids = tok.encode(text, add_special=add_special, parse_special=parse_special)
    return {"text": text, "add_special": add_special, "parse_special": parse_special, "ids": ids,
            "decoded": tok.decode(ids), "pieces": pieces(tok, ids), **extra}


def describe(name: str, path: Path, inp: Path | None) -> dict:
    tok = Tokenizer.from_gguf(GGUFFile(path))
    rng = random.Random(f"wgllm-tokenizer-{name}")
    n = tok.vocab_size
    specials = [i for i, t in enumerate(tok.types) if t in (TokenType.CONTROL, TokenType.USER_DEFINED, TokenType.UNKNOWN)]
    words = [tok.decode([rng.randrange(n)]) for _ in range(200)]
    cases = []
    if inp is not None:
        for text, expected in read_cases(inp):
            cases.append(case(tok, text, False, False, llama_cpp=expected))
    special_texts = [tok.tokens[i] for i in rng.sample(specials, min(len(specials), 30))]
    for _ in range(RANDOM_TEXTS):
        text = random_text(rng, special_texts, words)
        cases += [case(tok, text, a, p) for a, p in VARIANTS]
    # decoding arbitrary ids: byte tokens split characters, unused and control tokens mix in
    byte_ids = [i for i, t in enumerate(tok.types) if t == TokenType.BYTE] or [
        tok.token_to_id[c] for c in ("\u0100", "\u0101", "Ã", "©", "ð", "Ł") if c in tok.token_to_id]
    id_sequences = []
    for _ in range(RANDOM_ID_SEQUENCES):
        pool = [lambda: rng.randrange(n), lambda: rng.choice(byte_ids), lambda: rng.choice(specials)]
        ids = [rng.choice(pool)() for _ in range(rng.randrange(1, 12))]
        id_sequences.append({"ids": ids, "decoded": tok.decode(ids), "pieces": pieces(tok, ids)})
    sample = sorted({*specials[:2000], *byte_ids, *rng.sample(range(n), min(n, 500))})
    return {
        "name": name,
        "file": path.name if inp is not None else f"{name}.gguf",
        "n_vocab": n,
        "bos_id": tok.bos_id,
        "eos_id": tok.eos_id,
        "add_bos": tok.add_bos,
        "add_eos": tok.add_eos,
        "add_space_prefix": tok.add_space_prefix,
        "eog_ids": sorted(tok.eog_ids),
        "cases": cases,
        "id_sequences": id_sequences,
        "token_bytes": {str(i): tok.token_bytes(i).hex() for i in sample},
    }


def describe_pre_tokenizers() -> dict:
    rng = random.Random("wgllm-pre-tokenizers")
    words = ["hello", "World", "camelCase", "HTTPServer", "getURL", "naïve", "ÉCOLE", "x86_64", "'s", "I'M"]
    texts = SPLIT_TEXTS + [random_text(rng, [], words) for _ in range(60)]
    return {
        "pre_tokenizers": {
            name: {"regexes": list(p.regexes), "ignoreMerges": p.ignore_merges, "addBos": p.add_bos,
                   "byteLevel": p.byte_level, "alwaysBos": p.always_bos, "wholeNewlineWords": p.whole_newline_words}
            for name, p in PRE_TOKENIZERS.items()},
        "texts": texts,
        "splits": {name: [pre_tokenize(t, p) for t in texts] for name, p in PRE_TOKENIZERS.items()},
    }


def flag_runs() -> list[list[int]]:
    """Python's codepoint_flags over every code point as [first code point, flags] runs."""
    runs: list[list[int]] = []
    for cp in range(0x110000):
        f = codepoint_flags.__wrapped__(chr(cp))
        if not runs or runs[-1][1] != f:
            runs.append([cp, f])
    return runs


SOURCES = [Path(__file__), REPO / "py" / "wgllm" / "tokenizer.py", REPO / "py" / "wgllm" / "pretokenizer.py"]


def stamp(*files: Path) -> str:
    h = hashlib.sha256()
    for f in (*SOURCES, *files):
        st = f.stat()
        h.update(f"{f.resolve()} {st.st_size} {st.st_mtime_ns}\n".encode())
    for f in SOURCES:
        h.update(f.read_bytes())
    return h.hexdigest()


def write_json(path: Path, value: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)


def up_to_date(path: Path, key: str) -> bool:
    if not path.exists():
        return False
    with path.open(encoding="utf-8") as f:
        head = f.read(200)
    return f'"stamp": "{key}"' in head


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    vocab_dir = assets.llama_vocab_dir()
    models: dict[str, tuple[Path, Path | None]] = {
        name: (vocab_dir / f"ggml-vocab-{name}.gguf", vocab_dir / f"ggml-vocab-{name}.gguf") for name in LLAMA_CPP_VOCABS}
    models["smollm2"] = (assets.smollm2_path(), None)
    models["gemma3"] = (assets.gemma3_path(), None)
    written = []
    for name, (path, inp) in models.items():
        link = out / (path.name if inp is not None else f"{name}.gguf")
        if not (link.is_symlink() and link.resolve() == path.resolve()):
            link.unlink(missing_ok=True)
            os.symlink(path, link)
        deps = [path] + ([Path(f"{inp}.inp"), Path(f"{inp}.out")] if inp is not None else [])
        key = stamp(*deps)
        target = out / f"{name}.json"
        if not up_to_date(target, key):
            write_json(target, {"stamp": key, **describe(name, path, inp)})
            written.append(name)
    flags = out / "flags.json"
    key = stamp()
    if not up_to_date(flags, key):
        write_json(flags, {"stamp": key, "unidata_version": unicodedata.unidata_version, "runs": flag_runs()})
        written.append("flags")
    target = out / "pre_tokenizers.json"
    key = stamp(REPO / "tests" / "py" / "test_tokenizer.py")  # SPLIT_TEXTS
    if not up_to_date(target, key):
        write_json(target, {"stamp": key, **describe_pre_tokenizers()})
        written.append("pre_tokenizers")
    write_json(out / "index.json", {"stamp": "-", "vocabs": list(models)})
    print(f"tokenizer fixtures in {out}: {', '.join(written) or 'all up to date'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
