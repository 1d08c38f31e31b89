"""Fixtures for tests/browser/kv_f16_dawn.spec.ts: models, and what the PYTHON GPU engine makes of them
with an f16 KV cache (lavapipe's shader-f16, force_f32=False) and with force_f32.

    python tests/browser/kv_f16_fixtures.py OUT_DIR

Converts four tiny random models (llama Q4_0, gemma2 F32 with its soft-caps, phi2 Q8_0 with a fused
QKV, gemma3 Q8_0 with q/k norms and sliding windows), links the real SmolLM2-135M (Q4_1), and writes
expected.json from wgllm.gpu.engine.GpuEngine on this machine's adapter: per model, with the f16
cache, greedy and seeded sampled tokens and the logits of a 4-row prefill and two decode steps; with
force_f32, the greedy tokens and the same logits; for SmolLM2, the greedy answer of
wgllm.inference.LlmInference (the API the browser's LlmInference mirrors) both ways. Work already
done (same inputs: this script, the shaders, the Python engine) is skipped.
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

import numpy as np  # noqa: E402

TINY = [("llama", 4), ("gemma2", 32), ("phi2", 8), ("gemma3", 8)]
TOKENS = 24
SAMPLING = {"top_k": 40, "temperature": 0.8, "seed": 1234}
SMOLLM2_PROMPT = "The capital of France is"
API_MAX_TOKENS = 32


def inputs_digest() -> str:
    h = hashlib.sha256()
    wgllm = REPO / "py" / "wgllm"
    files = [Path(__file__), *sorted((REPO / "shaders").glob("*.wgsl")), *sorted((wgllm / "gpu").glob("*.py")), *(wgllm / f for f in ("model.py", "inference.py", "generation.py"))]
    for f in files:
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def engine(model, force_f32: bool, **kw):
    from wgllm.gpu.engine import GpuEngine

    e = GpuEngine(model, force_f32=force_f32, **kw)
    if getattr(e, "kv_f16", None) is not (not force_f32):
        e.close()
        sys.exit(
            f"kv_f16_fixtures: the Python engine's KV cache is not {'f32' if force_f32 else 'f16'} with force_f32={force_f32} "
            "(this needs an adapter with shader-f16, such as lavapipe, and the engine's f16 KV cache)"
        )
    return e


def tokens(e, prompt: list[int], n: int, top_k: int, temperature: float, seed: int) -> list[int]:
    session = e.session(top_k=top_k, temperature=temperature, seed=seed)
    out = [session.prefill(prompt)]
    while len(out) < n:
        out.append(session.decode(out[-1]))
    return out


def logit_rows(model, prompt: list[int], force_f32: bool) -> list[float]:
    """Every row of a 4-token prefill, then two decode steps against the KV cache."""
    e = engine(model, force_f32, max_tokens=len(prompt), all_logits=True)
    rows = np.concatenate([e.forward_logits(prompt[:4], 0), *(e.forward_logits([prompt[j]], j) for j in (4, 5))])
    e.close()
    return rows.astype(np.float32).ravel().tolist()


def tiny_expected(path: Path) -> dict:
    from wgllm.model import load_model

    model = load_model(path)
    prompt = [int(i) for i in np.random.default_rng(1).integers(3, model.config.n_vocab, 6)]
    f16 = engine(model, False, max_tokens=TOKENS + len(prompt))
    greedy, sampled = tokens(f16, prompt, TOKENS, 1, 0.0, 0), tokens(f16, prompt, TOKENS, **SAMPLING)
    f16.close()
    f32 = engine(model, True, max_tokens=TOKENS + len(prompt))
    greedy_f32 = tokens(f32, prompt, TOKENS, 1, 0.0, 0)
    f32.close()
    return {
        "prompt": prompt,
        "f16": {"greedy": greedy, "sampled": sampled, "logits": logit_rows(model, prompt, False)},
        "f32": {"greedy": greedy_f32, "logits": logit_rows(model, prompt, True)},
    }


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    digest = inputs_digest()
    expected_path = out / "expected.json"
    if expected_path.is_file() and json.loads(expected_path.read_text()).get("digest") == digest:
        return
    import assets
    from gpu_tolerances import MODEL_LOGITS_REL
    from tiny_models import convert_tiny

    from wgllm.inference import LlmInference

    expected: dict = {"digest": digest, "logits_rel": MODEL_LOGITS_REL, "sampling": SAMPLING, "tiny": {}}
    for arch, bits in TINY:
        path = out / f"{arch}-{bits}.gguf"
        if not path.is_file():
            convert_tiny(arch, bits, path.with_suffix(".tmp")).rename(path)
        expected["tiny"][path.name] = tiny_expected(path)
    (out / "smollm2.gguf").unlink(missing_ok=True)
    os.symlink(assets.smollm2_path(), out / "smollm2.gguf")
    expected["api"] = {"prompt": SMOLLM2_PROMPT, "max_tokens": API_MAX_TOKENS}
    for kind, force_f32 in (("f16", False), ("f32", True)):
        with LlmInference.create_from_options(str(out / "smollm2.gguf"), max_tokens=API_MAX_TOKENS, top_k=1, temperature=0.0, force_f32=force_f32) as llm:
            if getattr(llm._engine, "kv_f16", None) is not (not force_f32):
                sys.exit(f"kv_f16_fixtures: LlmInference(force_f32={force_f32}) did not get the KV cache it asks for")
            expected["api"][kind] = llm.generate_response(SMOLLM2_PROMPT)
    tmp = expected_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(expected))
    tmp.rename(expected_path)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
