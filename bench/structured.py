"""Decode speed with and without a JSON schema (issue 13's budget: the mask costs <= 25 % of decode).

    python bench/structured.py [--model FILE] [--rounds 3] [--kernels cpu|gpu] [--json OUT]

One LlmInference (the Python GPU engine) answers the same chat prompts greedily, alternating
rounds with response_format (the grammar's mask computed on the CPU each step, uploaded as bits,
applied in the sampler) and without it (max_new_tokens = the constrained answer's length). Decode
time per token is taken from the stream's timestamps: from the first token to the last, over
tokens - 1, so prefill is left out. The overhead is (with - without) / without, per prompt, with
the median over rounds; the JSON keeps every sample and the machine's load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAT = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
CASES = [
    ("person", "Describe a person who lives in a European city, in JSON.", {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 24}, "age": {"type": "integer"}, "city": {"type": "string"},
                       "hobbies": {"type": "array", "items": {"type": "string"}, "maxItems": 3}},
        "required": ["name", "age", "city", "hobbies"], "additionalProperties": False,
    }),
    ("json_object", "Give me a JSON object describing a book.", None),
]


def timed(llm, prompt: str, **options) -> tuple[int, float, str, str]:
    """(tokens, decode seconds per token after the first, text, finish reason)."""
    stamps: list[float] = []
    (g,) = llm.generate(prompt, stream=lambda i, text: stamps.append(time.perf_counter()), **options)
    n = len(g.tokens)
    per = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else float("nan")
    # pieces can be held back (UTF-8, stop strings): scale to tokens
    return n, per * (len(stamps) - 1) / max(n - 1, 1), g.text, g.finish_reason


def main() -> None:
    from wgllm.assets import default_model_path
    from wgllm.inference import LlmInference

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="GGUF file (default: SmolLM2-135M-Instruct)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--kernels", default=None)
    p.add_argument("--max-new-tokens", type=int, default=160)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    path = Path(args.model) if args.model else default_model_path()
    results = []
    with LlmInference.create_from_options(str(path), backend="gpu", max_tokens=512, top_k=1, temperature=0.0, kernels=args.kernels) as llm:
        for name, ask, schema in CASES:
            fmt = {"type": "json_object"} if schema is None else {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}
            prompt = CHAT.format(ask)
            timed(llm, prompt, response_format=fmt, max_new_tokens=8)  # warm: the vocabulary's tables, pipelines
            rows = []
            for r in range(args.rounds):
                n, with_s, text, finish = timed(llm, prompt, response_format=fmt, max_new_tokens=args.max_new_tokens)
                n_plain, without_s, _, _ = timed(llm, prompt, max_new_tokens=n)
                rows.append({"tokens": n, "plain_tokens": n_plain, "with_ms": 1e3 * with_s, "without_ms": 1e3 * without_s,
                             "overhead": with_s / without_s - 1, "load": os.getloadavg()[0]})
                print(f"{name} round {r}: {n} tokens, {1e3 * with_s:.1f} ms/token with the schema, {1e3 * without_s:.1f} without "
                      f"({100 * (with_s / without_s - 1):+.1f} %), load {os.getloadavg()[0]:.1f}", flush=True)
            results.append({"case": name, "schema": schema, "answer": text, "finish_reason": finish, "rounds": rows,
                            "median_overhead": statistics.median(r["overhead"] for r in rows)})
            if finish == "stop":
                json.loads(text)  # a finished answer parses (a cut one is a valid prefix, timed all the same)
    out = {
        "what": "decode ms/token with and without response_format, alternating, one process",
        "model": path.name, "kernels": args.kernels or "adapter's", "machine": platform.machine(), "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M"), "results": results,
    }
    for r in results:
        print(f"{r['case']}: median overhead {100 * r['median_overhead']:+.1f} %")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
