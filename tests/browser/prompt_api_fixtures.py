"""Fixtures for tests/browser/prompt_api.spec.ts: what Python's LlmInference.generate answers, and
what its tokenizer counts, for the conversations the browser's LanguageModel (web/src/prompt_api.ts)
holds.

    python tests/browser/prompt_api_fixtures.py OUT_DIR

The model is openai_fixtures.py's tiny Phi-2 with a ChatML template (built there, into
OUT_DIR/../openai). Each conversation is rendered here with jinja2 as transformers renders it, by
the rules prompt_api.ts documents: the whole history each turn, the assistant's opening added for a
prompt; context usage = the tokens of the messages rendered without that opening; a prompt's
measured usage = history + input with the opening, less the usage; an answer ends after
min(MAX_RESPONSE, context - prompt tokens) tokens; a responseConstraint's schema appended to the
last user message unless omitResponseConstraintInput; on overflow, the oldest user/assistant turn
after initialPrompts dropped. Answers come from LlmInference.generate on the WebGPU engine (f32 KV
cache and cpu kernels, as on the browser's SwiftShader) with the session's topK and temperature and
the configuration's seed (0). Work already done (same inputs) is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

import openai_fixtures  # noqa: E402  (builds the model)

CONTEXT = 1024
MAX_RESPONSE = 64
TOP_K, TEMPERATURE, SEED = 40, 0.8, 0  # LlmInference's defaults: the session's when create() names none
SYSTEM = {"role": "system", "content": "You are terse."}
INITIAL = [SYSTEM, {"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}]
Q1, Q2, Q3 = "Name a fruit.", "And a vegetable?", "How many legs has a cat?"
APPEND_PARTS = ["Part one. ", "Part two."]
QJ = "Pick a colour."
PREFIX = "The answer is"
COLOR = {"type": "object", "properties": {"color": {"type": "string", "enum": ["red", "green", "blue"]}}, "required": ["color"], "additionalProperties": False}
GUIDANCE = "\n\nRespond with JSON that matches this JSON schema: "
JSON_SAMPLING = {"top_k": 40, "temperature": 1.0}  # the JSON prompts' session: create({topK: 40, temperature: 1})


def inputs_digest() -> str:
    h = hashlib.sha256(openai_fixtures.inputs_digest().encode())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    digest = inputs_digest()
    expected_path = out / "expected.json"
    if expected_path.is_file() and json.loads(expected_path.read_text()).get("digest") == digest:
        return
    model_dir = out.parent / "openai"
    openai_fixtures.main(model_dir)
    import jinja2.sandbox

    from wgllm.inference import LlmInference

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(openai_fixtures.TEMPLATE)

    def render(messages: list[dict], opening: bool) -> str:
        return template.render(messages=messages, add_generation_prompt=opening, bos_token="", eos_token="")

    expected: dict = {
        "digest": digest, "context": CONTEXT, "max_response": MAX_RESPONSE, "model": "openai/phi2-chat.gguf",
        "initial": INITIAL, "system": SYSTEM, "q1": Q1, "q2": Q2, "q3": Q3, "append_parts": APPEND_PARTS, "qj": QJ, "prefix_text": PREFIX, "guidance": GUIDANCE, "color": COLOR,
        "params": {"defaultTopK": TOP_K, "defaultTemperature": TEMPERATURE},
    }
    with LlmInference.create_from_options(str(model_dir / "phi2-chat.gguf"), backend="gpu", force_f32=True, kernels="cpu", max_tokens=CONTEXT) as llm:
        tok = llm.model.tokenizer
        assert not tok.add_bos

        def count(messages: list[dict], opening: bool) -> int:
            return len(tok.encode(render(messages, opening), add_special=True, parse_special=True)) if messages else 0

        def answer(messages: list[dict], sampling: dict | None = None, prefix: str | None = None, **options) -> dict:
            text = render(messages, True) + (prefix or "")
            tokens = len(tok.encode(text, add_special=True, parse_special=True))
            s = sampling or {"top_k": TOP_K, "temperature": TEMPERATURE}
            (g,) = llm.generate(text, **s, random_seed=SEED, max_new_tokens=min(MAX_RESPONSE, CONTEXT - tokens), **options)
            return {"text": g.text, "tokens": g.tokens, "finish": g.finish_reason, "prompt_tokens": tokens}

        def user(text: str) -> dict:
            return {"role": "user", "content": text}

        def assistant(text: str) -> dict:
            return {"role": "assistant", "content": text}

        # the documented page: initialPrompts, prompt, promptStreaming, the usage numbers
        a1 = answer([*INITIAL, user(Q1)])
        h1 = [*INITIAL, user(Q1), assistant(a1["text"])]
        a2 = answer([*h1, user(Q2)])
        h2 = [*h1, user(Q2), assistant(a2["text"])]
        expected["page"] = {
            "usage0": count(INITIAL, False), "a1": a1, "usage1": count(h1, False),
            "measure_q2": count([*h1, user(Q2)], True) - count(h1, False), "a2": a2, "usage2": count(h2, False),
            "measure_q3": count([*h2, user(Q3)], True) - count(h2, False),
        }
        # a prefix: the assistant's answer begun by the page
        p = answer([*INITIAL, user(Q3)], prefix=PREFIX)
        expected["prefix"] = {"answer": p, "usage": count([*INITIAL, user(Q3), assistant(PREFIX + p["text"])], False)}
        # clone after the first answer: its own next turn; the source's next turn unchanged
        expected["clone"] = {"c3": answer([*h1, user(Q3)]), "usage_c3": None}
        expected["clone"]["usage_c3"] = count([*h1, user(Q3), assistant(expected["clone"]["c3"]["text"])], False)
        # append: text parts joined, counted, and run with the next prompt
        appended = [SYSTEM, user("".join(APPEND_PARTS))]
        b = answer([*appended, user(Q3)])
        expected["append"] = {"usage": count(appended, False), "b": b, "usage_after": count([*appended, user(Q3), assistant(b["text"])], False)}
        # responseConstraint: the schema in the prompt, or omitted
        schema_text = json.dumps(COLOR, separators=(",", ":"), ensure_ascii=False)
        fmt = {"type": "json_schema", "json_schema": {"name": "response", "schema": COLOR, "strict": True}}
        guided = [SYSTEM, user(QJ + GUIDANCE + schema_text)]
        expected["json"] = {
            "guided": answer(guided, JSON_SAMPLING, response_format=fmt),
            "guided_measure": count(guided, True) - count([SYSTEM], False),
            "omitted": answer([SYSTEM, user(QJ)], JSON_SAMPLING, response_format=fmt),
            "free": answer(guided, JSON_SAMPLING),
        }
        assert expected["json"]["guided"]["finish"] == expected["json"]["omitted"]["finish"] == "stop", expected["json"]
        # overflow: after the first turn, a prompt that fits only without that turn
        def fewest_words(history: list[dict]) -> int:
            """The fewest words "apple " of a prompt after `history` that leave no token for the answer."""
            lo, hi = 1, 2 * CONTEXT
            while lo < hi:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if count([*history, user("apple " * mid)], True) + 1 > CONTEXT else (mid + 1, hi)
            return lo

        long_text = "apple " * fewest_words(h1)
        assert count([*INITIAL, user(long_text)], True) + 1 <= CONTEXT
        over = answer([*INITIAL, user(long_text)])
        too_long = "apple " * fewest_words(INITIAL)
        expected["overflow"] = {
            "long": long_text, "answer": over, "usage_after": count([*INITIAL, user(long_text), assistant(over["text"])], False),
            "too_long": too_long, "too_long_requested": count([*INITIAL, user(too_long)], True) + 1,
        }
        expected["vocab"] = llm.model.config.n_vocab

    tmp = expected_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(expected))
    tmp.rename(expected_path)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
