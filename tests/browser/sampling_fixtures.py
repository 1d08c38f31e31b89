"""Fixtures for tests/browser/sampling.spec.ts: what the PYTHON GPU engine samples with each option.

    python tests/browser/sampling_fixtures.py OUT_DIR

Converts the tiny Phi-2 (its answers vary, unlike the other tiny models') and links SmolLM2, then
writes expected.json from wgllm.gpu.engine.GpuEngine on this machine's lavapipe: per option set,
the tokens and logprobs of a seeded continuation; through LlmInference, the answers (two responses)
with every option and a stop string that spans a token boundary; and SmolLM2 with all options. The
KV cache is f32, as on the browser's SwiftShader. Work already done (same inputs) is skipped.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "py"))

PROMPT = [5, 17, 42, 7, 5, 17]
TOKENS = 20
BASE = {"top_k": 40, "temperature": 1.0, "seed": 11}
CASES = {
    "top_p": {"top_k": 64, "top_p": 0.6},
    "min_p": {"top_k": 64, "min_p": 0.3},
    "repetition_penalty": {"repetition_penalty": 2.0},
    "frequency_penalty": {"frequency_penalty": 1.5, "penalty_last_n": -1},
    "presence_penalty": {"presence_penalty": 2.0},
    "logit_bias": {"logit_bias": {40: 5.0, 41: 5.0, 42: 5.0}},
    "logprobs": {"logprobs": True, "top_logprobs": 20},
    "greedy_penalized": {"top_k": 1, "temperature": 0.0, "repetition_penalty": 1.5, "logit_bias": {40: 3.0}, "logprobs": True, "top_logprobs": 2},
    "combined": {
        "top_k": 64, "top_p": 0.9, "min_p": 0.02, "temperature": 1.2, "repetition_penalty": 1.3, "frequency_penalty": 0.5,
        "presence_penalty": 0.5, "penalty_last_n": 8, "logit_bias": {40: 2.0}, "logprobs": True, "top_logprobs": 5,
    },
}
LLM_PROMPT = "The quick brown"
LLM_OPTIONS = {"max_tokens": 30, "top_k": 64, "temperature": 1.0, "random_seed": 5, "top_p": 0.9, "repetition_penalty": 1.5, "num_responses": 2, "logprobs": True, "top_logprobs": 3}
SMOLLM2_PROMPT = "The capital of France is"
SMOLLM2_TOKENS = 8


def camel(options: dict) -> dict:
    """Python's option names and values as the browser's (topP, logitBias with string keys, ...)."""
    out = {}
    for k, v in options.items():
        name = {"seed": "seed", "random_seed": "randomSeed"}.get(k) or "".join(w.capitalize() if i else w for i, w in enumerate(k.split("_")))
        out[name] = {str(i): b for i, b in v.items()} if k == "logit_bias" else v
    return out


def inputs_digest() -> str:
    h = hashlib.sha256()
    files = [Path(__file__), REPO / "shaders/sample.wgsl", *sorted((REPO / "py" / "wgllm").glob("*.py")), *sorted((REPO / "py" / "wgllm" / "gpu").glob("*.py"))]
    for f in files:
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def continuation(engine, prompt: list[int], n: int, options: dict) -> dict:
    session = engine.session(**options)
    out = [session.prefill(prompt)]
    while len(out) < n:
        out.append(session.decode(out[-1]))
    lp = [{"logprob": s.logprob, "top": s.top} for s in session.sampled] if options.get("logprobs") else None
    return {"tokens": out, "logprobs": lp}


def stop_across_boundary(model, tokens: list[int]) -> str:
    """A stop string made of the end of one generated token's text and the start of the next one's."""
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
    texts = [utf8.decode(model.tokenizer.token_bytes(t)) for t in tokens]
    ok = [bool(t) and t.isprintable() and "\ufffd" not in t for t in texts]
    j = next(j for j in range(3, len(texts) - 1) if ok[j] and ok[j + 1] and len(texts[j] + texts[j + 1]) >= 3)
    return texts[j][-2:] + texts[j + 1][:2]


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    digest = inputs_digest()
    expected_path = out / "expected.json"
    if expected_path.is_file() and json.loads(expected_path.read_text()).get("digest") == digest:
        return
    import assets
    from tiny_models import convert_tiny

    from wgllm.gpu.engine import GpuEngine
    from wgllm.inference import LlmInference
    from wgllm.model import load_model

    path = out / "phi2-32.gguf"
    if not path.is_file():
        convert_tiny("phi2", 32, path.with_suffix(".tmp")).rename(path)
    model = load_model(path)
    engine = GpuEngine(model, max_tokens=48, force_f32=True, kernels="cpu")
    expected: dict = {"digest": digest, "prompt": PROMPT, "vocab": model.config.n_vocab, "cases": {}}
    expected["plain"] = continuation(engine, PROMPT, TOKENS, BASE)
    for name, extra in CASES.items():
        options = {**BASE, **extra}
        expected["cases"][name] = {"options": camel(options), **continuation(engine, PROMPT, TOKENS, options)}
    engine.close()

    llm_options = dict(backend="gpu", force_f32=True, kernels="cpu", **LLM_OPTIONS)
    with LlmInference.create_from_options(str(path), **llm_options) as llm:
        whole = llm.generate_responses(LLM_PROMPT)
        stop = stop_across_boundary(model, llm.last_generations[0].tokens)
    with LlmInference.create_from_options(str(path), stop=["never there", stop], **llm_options) as llm:
        texts = llm.generate_responses(LLM_PROMPT)
        gens = llm.last_generations
    assert texts[0] == whole[0][: whole[0].find(stop)] and gens[0].stop == stop
    expected["llm"] = {
        "prompt": LLM_PROMPT,
        "options": {**camel(LLM_OPTIONS), "stop": ["never there", stop]},
        "texts": texts,
        "tokens": [g.tokens for g in gens],
        "finish": [g.finish_reason for g in gens],
        "stops": [g.stop for g in gens],
        "logprobs": [[{"logprob": s.logprob, "top": s.top} for s in g.sampled] for g in gens],
    }

    (out / "smollm2.gguf").unlink(missing_ok=True)
    os.symlink(assets.smollm2_path(), out / "smollm2.gguf")
    smol = load_model(out / "smollm2.gguf")
    prompt = smol.tokenizer.encode(SMOLLM2_PROMPT, add_special=True)
    options = {**BASE, **CASES["combined"], "logit_bias": {smol.tokenizer.encode(" Paris")[0]: -100.0}}
    engine = GpuEngine(smol, max_tokens=len(prompt) + SMOLLM2_TOKENS, force_f32=True, kernels="cpu")
    expected["smollm2"] = {"prompt": prompt, "options": camel(options), **continuation(engine, prompt, SMOLLM2_TOKENS, options)}
    engine.close()

    tmp = expected_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(expected))
    tmp.rename(expected_path)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
