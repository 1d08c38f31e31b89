"""Fixtures for tests/browser/structured.spec.ts: what the PYTHON GPU engine answers with a response_format.

    python tests/browser/structured_fixtures.py OUT_DIR

Converts the tiny Phi-2 (F32; a byte-level vocabulary of 300 ids that can spell any JSON) and writes
expected.json from wgllm.inference.LlmInference (WebGPU on this machine's lavapipe, f32 KV cache as
on the browser's SwiftShader, cpu kernels): for schemas of tests/data/grammar_schemas.json and
{"type": "json_object"}, the tokens, text and finish reason of LlmInference.generate(...,
response_format=...) for the first seed (of a few) whose document is whole within max_tokens (a
random tiny model wanders through long strings and whitespace, so some seeds run out of room), and
the same prompt and seed without the format; plus GrammarState.can_continue on a few prefixes.
Work already done (same inputs) is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "py"))

PROMPT = "Answer in JSON:"
OPTIONS = {"max_tokens": 200, "top_k": 40, "temperature": 1.0}
SCHEMAS = ["enum_color", "integers", "anyof_scalars", "array_bounds", "nullable_type_list", "const_numbers", "boolean_root", "weather_tool"]
SEEDS = range(12)
# (schema name or "json_object", prefix): GrammarState.can_continue after the prefix
CONTINUE = [
    ("boolean_root", "true"), ("boolean_root", "fals"), ("integers", "[1,2]"), ("integers", "[1,2"),
    ("integer_root", "12"), ("array_bounds", "[1,2,3,4"), ("enum_color", '{"color":"red"}'), ("enum_color", '{"color":"blue"'), ("json_object", "{}"),
]


def inputs_digest() -> str:
    h = hashlib.sha256()
    files = [Path(__file__), REPO / "shaders/sample.wgsl", REPO / "tests/data/grammar_schemas.json", *sorted((REPO / "py" / "wgllm").rglob("*.py"))]
    for f in files:
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def response_format(name: str, schemas: dict) -> dict:
    if name == "json_object":
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schemas[name], "strict": True}}


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    digest = inputs_digest()
    expected_path = out / "expected.json"
    if expected_path.is_file() and json.loads(expected_path.read_text()).get("digest") == digest:
        return
    from tiny_models import convert_tiny

    from wgllm.grammar import grammar_for_response_format
    from wgllm.inference import LlmInference

    path = out / "phi2-32.gguf"
    if not path.is_file():
        convert_tiny("phi2", 32, path.with_suffix(".tmp")).rename(path)
    schemas = {s["name"]: s["schema"] for s in json.loads((REPO / "tests/data/grammar_schemas.json").read_text())["schemas"]}
    expected: dict = {"digest": digest, "prompt": PROMPT, "options": {"maxTokens": 200, "topK": 40, "temperature": 1.0}, "cases": [], "skipped": []}
    with LlmInference.create_from_options(str(path), backend="gpu", force_f32=True, kernels="cpu", **OPTIONS) as llm:
        for name in [*SCHEMAS, "json_object"]:
            rf = response_format(name, schemas)
            for seed in SEEDS:
                g = llm.generate(PROMPT, response_format=rf, random_seed=seed)[0]
                if g.finish_reason == "stop":
                    break
            else:
                expected["skipped"].append(name)  # no seed finished: the spec checks the rest
                continue
            free = llm.generate(PROMPT, random_seed=seed)[0]
            expected["cases"].append({
                "name": name, "responseFormat": rf, "seed": seed,
                "tokens": g.tokens, "text": g.text, "finish": g.finish_reason,
                "free": {"tokens": free.tokens, "text": free.text, "finish": free.finish_reason},
            })
    expected["continue"] = []
    for name, prefix in CONTINUE:
        rf = response_format(name, schemas)
        state = grammar_for_response_format(rf).start().advance(prefix.encode())
        expected["continue"].append({"responseFormat": rf, "prefix": prefix, "accepting": state.is_accepting(), "canContinue": state.can_continue()})

    tmp = expected_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(expected))
    tmp.rename(expected_path)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
