"""Fixtures for tests/browser/trace_dawn.spec.ts: what the PYTHON GPU engine's program is, as JSON, for
every tiny fixture model and a spread of options, to be compared with the browser engine's.

    python tests/browser/trace_fixtures.py OUT_DIR

Converts the tiny models of tests/browser/engine_fixtures.py (every architecture; F32, F16, Q8_0 and
Q4_0; Llama-3's rope_freqs and a Mistral file besides) and writes expected.json: per case (file and
options) the model config (dataclasses.asdict of ModelConfig, recipe included) and, for a few steps
(n tokens at pos0), GpuEngine.trace: every launch's shader, entry, constants, f16-KV variant, grid,
Params words and bindings by label and size — the weight plan (stacked Q/K/V, paired gate/up, chunks)
and the activation sizes are in those bindings. Per model and kernel family also the named checkpoints
of a prefill (GpuEngine.checkpoints, as wgllm diff reads them), each as the sha256 of its f32 bytes: the
browser engine's must be bit-identical. Work already done (same inputs) is skipped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "py"))
sys.path.insert(0, str(REPO / "tests" / "browser"))

from engine_fixtures import OVERRIDES, TINY  # noqa: E402

MAX_TOKENS = 320
STEPS = [(6, 0), (1, 6), (1, 300)]  # a prefill, a decode step, a decode step whose keys pass a split
NO_FUSION = {"stack_qkv": False, "fuse_residual": False, "fuse_glu": False, "fuse_rope_kv": False, "fuse_norm": False}
# options besides the two families on every model: LoRA ranks (no GLU pairing, no norm fusion),
# every row's logits, an f32 KV cache, two ranks, weights in row chunks, the fusions off
EXTRA = {
    "llama-4.gguf": [{"kernels": "gpu", "lora_ranks": [4]}, {"kernels": "cpu", "all_logits": True}],
    "phi2-8.gguf": [{"kernels": "gpu", "lora_ranks": [4], "all_logits": True}],
    "qwen3-4.gguf": [{"kernels": "cpu", "lora_ranks": [4]}],
    "gemma2-32.gguf": [{"kernels": "gpu", "all_logits": True}],
    # weights bound in row chunks (a binding of at most 2 KiB: several chunks per matrix)
    "qwen2-8.gguf": [{"kernels": "cpu", "max_weight_binding": 2048}, {"kernels": "gpu", "max_weight_binding": 2048}],
    "gemma-16.gguf": [{"kernels": "gpu", "max_weight_binding": 4096}],
    # every fusion off (the A/B switches), in both families and on the parallel and post-norm blocks
    "smollm3-32.gguf": [{"kernels": "cpu", **NO_FUSION}],
    "falcon-4.gguf": [{"kernels": "gpu", **NO_FUSION}],
    "gemma3-8.gguf": [{"kernels": "gpu", "force_f32": True}, {"kernels": "cpu", "lora_ranks": [2, 8]}, {"kernels": "gpu", **NO_FUSION}],
    "phi3-16.gguf": [{"kernels": "cpu", "fuse_rope_kv": False}, {"kernels": "gpu", "fuse_norm": False, "fuse_residual": False}],
}
MORE_MODELS = [("llama3rope", "llama", 8), ("mistral", "mistral", 16)]
CHECKPOINT_IDS = [3, 17, 5, 29, 11, 8]  # a prefill, below every tiny vocabulary


def inputs_digest() -> str:
    h = hashlib.sha256()
    wgllm = REPO / "py" / "wgllm"
    files = [Path(__file__), REPO / "tests/browser/engine_fixtures.py", *sorted((REPO / "shaders").glob("*.wgsl")), *sorted((wgllm / "gpu").glob("*.py")), wgllm / "model.py"]
    for f in files:
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def models(out: Path) -> list[Path]:
    from tiny_models import LLAMA3_ROPE, convert_tiny

    paths = []
    for stem, arch, bits, overrides in [(a, a, b, OVERRIDES.get(a, {})) for a, b in TINY] + [
        (s, a, b, {"rope_parameters": LLAMA3_ROPE} if s == "llama3rope" else {}) for s, a, b in MORE_MODELS
    ]:
        path = out / f"{stem}-{bits}.gguf"
        if not path.is_file():
            convert_tiny(arch, bits, path.with_suffix(".tmp"), **overrides).rename(path)
        paths.append(path)
    return paths


def case(path: Path, options: dict) -> dict:
    from wgllm.gpu.engine import GpuEngine
    from wgllm.model import load_model

    model = load_model(path)
    engine = GpuEngine(model, max_tokens=MAX_TOKENS, **options)
    try:
        traces = {f"{n},{pos0}": engine.trace(n, pos0) for n, pos0 in STEPS}
    finally:
        engine.close()
    config = dataclasses.asdict(model.config)
    return {"file": path.name, "options": options, "max_tokens": MAX_TOKENS, "config": config, "traces": traces}


def checkpoint_digests(path: Path, kernels: str) -> dict:
    import numpy as np

    from wgllm.gpu.engine import GpuEngine
    from wgllm.model import load_model

    engine = GpuEngine(load_model(path), max_tokens=len(CHECKPOINT_IDS), all_logits=True, kernels=kernels)
    try:
        got = engine.checkpoints(CHECKPOINT_IDS)
    finally:
        engine.close()
    digests = {name: hashlib.sha256(np.ascontiguousarray(v, np.float32).tobytes()).hexdigest() for name, v in got.items()}
    return {"file": path.name, "options": {"kernels": kernels, "max_tokens": len(CHECKPOINT_IDS)}, "ids": CHECKPOINT_IDS, "digests": digests}


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    digest = inputs_digest()
    expected_path = out / "expected.json"
    if expected_path.is_file() and json.loads(expected_path.read_text()).get("digest") == digest:
        return
    cases, checkpoints = [], []
    for path in models(out):
        for options in [{"kernels": "cpu"}, {"kernels": "gpu"}, *EXTRA.get(path.name, [])]:
            cases.append(case(path, options))
        checkpoints += [checkpoint_digests(path, kernels) for kernels in ("cpu", "gpu")]
    tmp = expected_path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"digest": digest, "steps": STEPS, "cases": cases, "checkpoints": checkpoints}))
    tmp.rename(expected_path)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
