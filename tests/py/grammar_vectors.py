"""Writes tests/data/grammar_vectors.json: what wgllm.grammar answers for the schemas of
tests/data/grammar_schemas.json, which web/src/grammar.ts must answer the same
(tests/grammar_vectors.mjs checks it; test_grammar.py checks the file is current).

    python tests/py/grammar_vectors.py        # rewrite the file

Per schema, byte strings: its documents (compact and, unless canonical_only, as json.dumps spaces
them), walks of a small vocabulary of awkward tokens (split UTF-8, escapes, keys with their colon)
that take allowed tokens at random until end of generation, and each of those cut short, with a
byte changed or with a byte put in. For each: the index of the first byte the grammar rejects (-1:
none), whether the whole is accepted, and the mask over the small vocabulary after it.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np

from wgllm.grammar import JsonGrammar, SchemaError, canonical_json
from wgllm.grammar_mask import GrammarVocabulary, token_mask

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "tests" / "data" / "grammar_schemas.json"
VECTORS = ROOT / "tests" / "data" / "grammar_vectors.json"
CONTROL = b"<|im_end|>"  # a control token: never text
TOKENS = [bytes([b]) for b in range(256)] + [t.encode("utf-8") if isinstance(t, str) else t for t in [
    '{"', '":', '",', '"}', '},', ' "', '\n  ', "\n\t", "true", "false", "null", "nul", "tr", "\\u00", "\\u001",
    "\\n", '\\"', "\\\\", "é", "中", "😀", b"\xc3", b"\xa9", b"\xe4\xb8", b"\xf0\x9f", b"\x98\x80", b"\xed\xa0", b"\xe0\x80",
    "12", "-0.", "0.5", "e+", "1e", "E-", "00", '"name"', '"age":', "]}", "[]", "{}", "[{", "}]", " ", "  ", "\t\t",
    " " * 25, "ab", "abc", "blue", '-green"', 'red"}', '", "', 'point"', "go", "gone", '"g', "10", "100", "0,", "1,",
    ", ", ": ", '":"', '""', '"a', 'b"', "größe", '"名前":', "with \\\"", "new\\nline", "\\t", "\\b", "\\u0007",
    "\\u000a", "\\u001f", "\\/", "\\uD83D", "x", "[1", "2]", "1.5", "-", "9007199254740991", "1234567890123456789",
    "12345678901234567890", "0.1234567890123456", "e99", "e100",
]] + [b"", CONTROL, b"</s>"]
CONTROL_ID, EOS_ID = len(TOKENS) - 2, len(TOKENS) - 1
STRUCTURAL = frozenset(b'"]},:')
OPTIONS = [{}, {"max_depth": 3, "max_whitespace": 2}]  # the second for a few schemas only


def mask_hex(mask: np.ndarray) -> str:
    return np.packbits(mask, bitorder="little").tobytes().hex()


def run(grammar: JsonGrammar, vocab: GrammarVocabulary, data: bytes) -> dict:
    state, reject = grammar.start(), -1
    for i in range(len(data)):
        nxt = state.advance(data[i : i + 1])
        if nxt is None:
            reject = i
            break
        state = nxt
    out = {"hex": data.hex(), "reject": reject}
    if reject < 0:
        out["accepting"] = state.is_accepting()
        out["mask"] = mask_hex(token_mask(state, vocab))
    return out


def walk(grammar: JsonGrammar, vocab: GrammarVocabulary, rng: random.Random, limit: int = 300) -> bytes:
    state, out = grammar.start(), b""
    while len(out) < limit:
        ids = np.flatnonzero(token_mask(state, vocab)).tolist()
        closing = [i for i in ids if i == EOS_ID or any(b in STRUCTURAL for b in TOKENS[i])]
        tid = rng.choice(closing if closing and rng.random() < 0.6 else ids)
        if tid == EOS_ID:
            break
        out += TOKENS[tid]
        state = state.advance(TOKENS[tid])
    return out


def mutations(data: bytes, rng: random.Random) -> list[bytes]:
    if not data:
        return []
    at = rng.randrange(len(data))
    return [data[:at], data[:at] + bytes([rng.randrange(256)]) + data[at + 1 :],
            data[:at] + bytes([rng.choice(b'"\\,}] :\xc3\x80\xff09e.')]) + data[at:]]


def build() -> dict:
    corpus = json.loads(SCHEMAS.read_text())
    vocab = GrammarVocabulary(TOKENS, [EOS_ID], [CONTROL_ID])
    rng = random.Random(13)
    cases = []
    for k, entry in enumerate(corpus["schemas"]):
        for options in OPTIONS if k % 7 == 0 else OPTIONS[:1]:
            grammar = JsonGrammar.from_schema(entry["schema"], **options)
            texts = [canonical_json(d, "#") for d in entry["documents"]]
            if not entry.get("canonical_only"):
                texts += [json.dumps(d, ensure_ascii=False).encode() for d in entry["documents"]]
            texts += [walk(grammar, vocab, rng) for _ in range(3)]
            texts += [m for t in texts for m in mutations(t, rng)]
            cases.append({"name": entry["name"], "schema": entry["schema"], "options": options,
                          "strings": [run(grammar, vocab, t) for t in dict.fromkeys(texts)]})
    errors = []
    for entry in corpus["errors"]:
        try:
            JsonGrammar.from_schema(entry["schema"])
        except SchemaError as e:
            errors.append({"schema": entry["schema"], "path": e.path, "message": str(e)})
        else:
            raise AssertionError(f"{entry['schema']} compiled")
    return {"about": __doc__.split("\n\n")[0], "vocab": [t.hex() for t in TOKENS], "eos": EOS_ID, "control": CONTROL_ID,
            "cases": cases, "errors": errors}


def text(vectors: dict) -> str:
    return json.dumps(vectors, ensure_ascii=False, indent=0) + "\n"


if __name__ == "__main__":
    VECTORS.write_text(text(build()))
    print(f"wrote {VECTORS}", file=sys.stderr)
