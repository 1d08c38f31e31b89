"""Fixtures for tests/browser/llm_inference.spec.ts: models and what Python's LlmInference says.

    python tests/browser/api_fixtures.py OUT_DIR

Writes OUT_DIR/tiny-gemma2-q8.gguf (a tiny random Gemma-2 with its SentencePiece vocabulary),
OUT_DIR/not-a-model.gguf, OUT_DIR/unsupported-arch.gguf and OUT_DIR/expected.json: the answers of
wgllm.inference.LlmInference on the WebGPU backend (lavapipe; force_f32, since the browser's
SwiftShader has no shader-f16 and so an f32 KV cache) for the scenarios the browser
replays with the same options — MediaPipe's documented sample options, greedy, seeded sampling,
numResponses, token counts — plus SmolLM2's chat template rendered by jinja2 the way transformers
renders chat templates. Work already done (same script, same inputs) is kept.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests" / "py"))  # tiny_models, assets

PROMPTS = ["The quick brown fox", "Numbers 0 1 2 and some punctuation:", "A small model runs"]
TOKEN_TEXTS = ["", "The quick brown fox jumps over the lazy dog.", "  two  spaces\nand a newline", "émoji 🦊 and 漢字", "<s> literal"]
# MediaPipe's documented web sample (ai.google.dev LLM Inference guide for Web) passes these.
MEDIAPIPE_SAMPLE = dict(max_tokens=1000, top_k=40, temperature=0.8, random_seed=101)
CHAT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "Name a colour."},
]


def _stamp() -> str:
    """Changes when this script, the shaders or the Python engine change (their answers may)."""
    h = hashlib.sha256(Path(__file__).read_bytes())
    for f in sorted([*(REPO / "shaders").glob("*.wgsl"), *(REPO / "py" / "wgllm").rglob("*.py")]):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    expected_path = out / "expected.json"
    if expected_path.is_file() and json.loads(expected_path.read_text()).get("stamp") == _stamp():
        return
    import gguf
    import jinja2.sandbox

    from tiny_models import convert_tiny  # noqa: PLC0415
    from wgllm.inference import LlmInference

    model = convert_tiny("gemma2", 8, out / "tiny-gemma2-q8.gguf")  # its answers vary with the seed (the tiny llama's do not)
    results: dict = {"stamp": _stamp(), "model": model.name, "model_size": model.stat().st_size}

    def answers(**options) -> list[str]:
        with LlmInference.create_from_options(str(model), force_f32=True, **options) as llm:
            return [llm.generate_response(p) for p in PROMPTS]

    with LlmInference.create_from_options(str(model), force_f32=True, **MEDIAPIPE_SAMPLE) as llm:
        results["mediapipe_sample"] = {"prompt": PROMPTS[0], "answer": llm.generate_response(PROMPTS[0])}
        results["mediapipe_sample"]["tokens"] = llm.size_in_tokens(PROMPTS[0] + results["mediapipe_sample"]["answer"])
    results["greedy"] = answers(max_tokens=48, top_k=1, temperature=0.0)
    results["greedy_512"] = answers(max_tokens=512, top_k=1, temperature=0.0)
    with LlmInference.create_from_options(str(model), force_f32=True) as llm:  # MediaPipe's defaults
        results["defaults_answer"] = llm.generate_response(PROMPTS[0])
    results["sampled"] = {"options": dict(max_tokens=48, top_k=40, temperature=0.8, random_seed=7), "answers": answers(max_tokens=48, top_k=40, temperature=0.8, random_seed=7)}
    with LlmInference.create_from_options(str(model), max_tokens=40, top_k=20, temperature=1.0, random_seed=3, num_responses=3, force_f32=True) as llm:
        results["multi"] = {"options": dict(max_tokens=40, top_k=20, temperature=1.0, random_seed=3, num_responses=3), "answers": llm.generate_responses(PROMPTS[0])}
        # MediaPipe's sizeInTokens leaves the start token out: the tokens of the text alone, counted
        # here without the special tokens, and Python's size_in_tokens must say the same
        tok = llm.model.tokenizer
        results["size_in_tokens"] = {t: len(tok.encode(t, add_special=False, parse_special=True)) for t in TOKEN_TEXTS + PROMPTS}
        results["prompt_ids"] = {t: len(tok.encode(t, add_special=True, parse_special=True)) for t in TOKEN_TEXTS + PROMPTS}
        assert tok.add_bos and all(results["prompt_ids"][t] == results["size_in_tokens"][t] + 1 for t in results["size_in_tokens"])
        wrong = {t: llm.size_in_tokens(t) for t in TOKEN_TEXTS + PROMPTS if llm.size_in_tokens(t) != results["size_in_tokens"][t]}
        if wrong:
            raise SystemExit(f"api_fixtures: Python's size_in_tokens counts the start token: {wrong}")
    results["prompts"] = PROMPTS

    # Bad files: not GGUF at all, and a GGUF of an architecture wgllm does not run.
    (out / "not-a-model.gguf").write_bytes(b"<!doctype html><title>404 page served as a model</title>\n" * 8)
    w = gguf.GGUFWriter(str(out / "unsupported-arch.gguf"), "mamba")
    w.add_uint32("mamba.block_count", 1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    # SmolLM2's chat template, rendered as transformers renders chat templates.
    from assets import smollm2_path  # noqa: PLC0415
    from wgllm.gguf_io import GGUFFile

    template = GGUFFile(smollm2_path()).metadata["tokenizer.chat_template"]
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    results["chat"] = {
        "template": template,
        "messages": CHAT,
        "rendered": env.from_string(template).render(messages=CHAT, add_generation_prompt=True, bos_token="", eos_token=""),
        "rendered_no_prompt": env.from_string(template).render(messages=CHAT, add_generation_prompt=False, bos_token="", eos_token=""),
    }
    expected_path.write_text(json.dumps(results, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
