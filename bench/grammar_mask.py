"""The cost of the JSON-schema mask (wgllm.grammar_mask) per decode step on a real vocabulary.

    python bench/grammar_mask.py [--model FILE] [--json OUT]

For each of a few schemas of tests/data/grammar_schemas.json, a document written by the model's
tokenizer is fed token by token; each step computes token_mask from a cold cache (the worst case:
in a generation, states met before are answered from the cache) and advances. Reports the median,
90th percentile and largest time per step and where the time goes (steps inside strings use the
plain-token tables). Compare with decode time per token (wgllm bench) for the 25 % budget of issue 13.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("person", "calendar_event", "math_reasoning", "unicode_strings", "json_object", "ui_component", "anyof_objects")


def main() -> None:
    from wgllm.assets import default_model_path
    from wgllm.gguf_io import GGUFFile
    from wgllm.grammar import JsonGrammar, canonical_json
    from wgllm.grammar_mask import GrammarVocabulary, token_mask
    from wgllm.tokenizer import Tokenizer

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="GGUF file (default: SmolLM2-135M-Instruct)")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args()
    path = Path(args.model) if args.model else default_model_path()
    tok = Tokenizer.from_gguf(GGUFFile(path))
    t0 = time.perf_counter()
    vocab = GrammarVocabulary.from_tokenizer(tok, cache_size=0)
    build_s = time.perf_counter() - t0
    corpus = {e["name"]: e for e in json.loads((ROOT / "tests" / "data" / "grammar_schemas.json").read_text())["schemas"]}
    per_schema, all_ms = {}, []
    for name in NAMES:
        entry = corpus[name]
        grammar = JsonGrammar.from_schema(entry["schema"])
        ids = tok.encode(json.dumps(entry["documents"][0], ensure_ascii=False) if not entry.get("canonical_only")
                         else canonical_json(entry["documents"][0], "#").decode())
        state, ms = grammar.start(), []
        for tid in ids + [None]:
            vocab.cache.clear()
            t = time.perf_counter()
            mask = token_mask(state, vocab)
            ms.append(1e3 * (time.perf_counter() - t))
            if tid is not None:
                assert mask[tid], (name, tok.token_bytes(tid))
                state = state.advance(tok.token_bytes(tid))
        per_schema[name] = {"steps": len(ms), "median_ms": round(statistics.median(ms), 3), "max_ms": round(max(ms), 3)}
        all_ms += ms
    all_ms.sort()
    result = {
        "model": path.name, "vocab": vocab.size, "python": platform.python_version(), "machine": platform.machine(),
        "vocab_build_s": round(build_s, 2), "steps": len(all_ms),
        "median_ms": round(statistics.median(all_ms), 3), "p90_ms": round(all_ms[int(0.9 * len(all_ms))], 3),
        "max_ms": round(all_ms[-1], 3), "mean_ms": round(statistics.fmean(all_ms), 3), "per_schema": per_schema,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
