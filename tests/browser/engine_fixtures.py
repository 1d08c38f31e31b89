"""Fixtures for tests/browser/engine.spec.ts: models and what the PYTHON GPU engine makes of them.

    python tests/browser/engine_fixtures.py OUT_DIR

Converts tiny random models of all twelve architectures (Phi-3 as Phi-3.5-mini: LongRoPE, sliding window; SmolLM3 with its NoPE layer) (every converter type F32/F16/Q8_0/Q4_0
appears at least twice) and the tiny Llama with Llama-3.x's RoPE scaling (rope_freqs), links the
real SmolLM2-135M (Q4_1), Gemma-3 270M (Q4_K_M, so Q4_K and Q6_K) and Qwen2.5-Coder-0.5B (qwen2,
Q4_K_M: Q4_K, Q6_K, Q5_0, Q8_0), and writes expected.json
from wgllm.gpu.engine.GpuEngine on this machine's WebGPU adapter (lavapipe): greedy and seeded sampled continuations, the all-row logits of the prompt, and
SmolLM2's greedy / Gemma-3's and Qwen2.5's per-position top-1, each with both kernel families (lavapipe's own
"cpu", and "gpu" forced; the browser forces each too). Also files the engine must refuse. Work already
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
from gguf import GGMLQuantizationType, GGUFWriter  # noqa: E402

# (arch, converter bits): every architecture once, every type at least twice
TINY = [
    ("llama", 4), ("gemma", 16), ("gemma2", 32), ("gemma3", 8), ("phi2", 8), ("falcon", 4), ("stablelm", 8), ("gpt2", 32),
    ("qwen2", 8), ("qwen3", 4), ("phi3", 16), ("smollm3", 32),
]
# Phi-3 as Phi-3.5-mini: LongRoPE (the long factors: every context here passes the original 8), window 5.
# The StableLM is the converter's tiny one, n_ff 80: ffn_down's rows of 80 (F16 beside Q8_0: the
# converter quantises whole 32-element units only) are not whole units (zero-padded at repack;
# tests/py/test_gpu_engine.py test_weight_rows_not_in_32_element_units_run).
from tiny_models import PHI3_LONGROPE  # noqa: E402

OVERRIDES = {"phi3": PHI3_LONGROPE}
# A tiny Llama of n_embd 80 and n_ff 112: every matrix, the token embedding, the tied head, the GLU
# pairs and the gpu family's fused decode norms on rows that are not whole 32-element units
LLAMA_80 = {"hidden_size": 80, "num_attention_heads": 5, "num_key_value_heads": 5, "head_dim": 16, "intermediate_size": 112}
# a StableLM whose ffn_down rows (78) are not whole vec4s of x: refused by name
STABLELM_78 = {"intermediate_size": 78}
GREEDY_TOKENS = 32
SAMPLING = {"top_k": 40, "temperature": 0.8, "seed": 1234}
SMOLLM2_PROMPT = "The capital of France is"
SMOLLM2_TOKENS = 16
GEMMA3_PROMPT = "The old lighthouse keeper climbed the spiral stairs"


# The browser's SwiftShader has no shader-f16, so its engine keeps an f32 KV cache: the Python
# engine whose answers it must match does too (force_f32), whatever this machine's adapter offers.
F32_KV = True


def inputs_digest() -> str:
    h = hashlib.sha256()
    files = [Path(__file__), *sorted((REPO / "shaders").glob("*.wgsl")), *sorted((REPO / "py" / "wgllm" / "gpu").glob("*.py")), REPO / "py/wgllm/model.py"]
    for f in files:
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def run_session(engine, prompt: list[int], n: int, top_k: int, temperature: float, seed: int) -> list[int]:
    session = engine.session(top_k=top_k, temperature=temperature, seed=seed)
    out = [session.prefill(prompt)]
    while len(out) < n:
        out.append(session.decode(out[-1]))
    return out


def tiny_expected(path: Path, kernels: str) -> dict:
    from wgllm import reference
    from wgllm.gpu.engine import GpuEngine
    from wgllm.model import load_model

    model = load_model(path)
    prompt = [int(i) for i in np.random.default_rng(1).integers(3, model.config.n_vocab, 6)]
    engine = GpuEngine(model, max_tokens=GREEDY_TOKENS + len(prompt), force_f32=F32_KV, kernels=kernels)
    greedy = run_session(engine, prompt, GREEDY_TOKENS, 1, 0.0, 0)
    sampled = run_session(engine, prompt, GREEDY_TOKENS, **SAMPLING)
    engine.close()
    # every row of a 4-token prefill, then two decode steps against the KV cache
    all_rows = GpuEngine(model, max_tokens=len(prompt), all_logits=True, force_f32=F32_KV, kernels=kernels)
    logits = np.concatenate([all_rows.forward_logits(prompt[:4], 0), *(all_rows.forward_logits([prompt[j]], j) for j in (4, 5))])
    all_rows.close()
    # what gpu_tolerances' MODEL_LOGITS_REL is defined against, with the engine's context (len(prompt)):
    # it picks Phi-3's LongRoPE factors (the short ones here, the long ones for the tokens above)
    ref = reference.forward(model, prompt, cache=reference.KVCache(n_ctx=len(prompt)))
    return {
        "prompt": prompt,
        "greedy": greedy,
        "sampled": sampled,
        "logits": logits.astype(np.float32).ravel().tolist(),
        "reference_logits": ref.astype(np.float32).ravel().tolist(),
        "vocab": model.config.n_vocab,
    }


def write_refused(out: Path) -> None:
    """An architecture wgllm does not run, one whose decoder it does not run yet (gemma4: the header
    of tests/py/test_gemma4.py's file), and a tensor type it does not read."""
    w = GGUFWriter(str(out / "unsupported_arch.gguf"), "mamba")
    w.add_block_count(1)
    w.add_embedding_length(32)
    w.add_tensor("token_embd.weight", np.ones((8, 32), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    from test_gemma4 import write_gemma4

    write_gemma4(out / "gemma4.gguf")
    w = GGUFWriter(str(out / "unsupported_type.gguf"), "llama")
    w.add_block_count(1)
    q8_1 = np.zeros((8, 40), np.uint8)  # 8 rows of one 32-element Q8_1 block (40 bytes as gguf-py sizes it)
    w.add_tensor("token_embd.weight", q8_1, raw_shape=(8, 40), raw_dtype=GGMLQuantizationType.Q8_1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    digest = inputs_digest()
    expected_path = out / "expected.json"
    if expected_path.is_file() and json.loads(expected_path.read_text()).get("digest") == digest:
        return
    import assets
    from tiny_models import convert_tiny

    from wgllm.gpu.engine import GpuEngine
    from wgllm.model import load_model

    expected: dict = {"digest": digest, "sampling": SAMPLING, "tiny": {}, "tiny_gpu": {}}
    from gpu_tolerances import MODEL_LOGITS_REL

    expected["logits_rel"] = MODEL_LOGITS_REL
    for arch, bits in TINY:
        path = out / f"{arch}-{bits}.gguf"
        if not path.is_file():
            convert_tiny(arch, bits, path.with_suffix(".tmp"), **OVERRIDES.get(arch, {})).rename(path)
        expected["tiny"][path.name] = tiny_expected(path, "cpu")
        expected["tiny_gpu"][path.name] = tiny_expected(path, "gpu")
    from tiny_models import LLAMA3_ROPE

    # (file stem, arch, bits, config overrides): the tiny Llama with Llama-3.x's RoPE scaling (rope_freqs.weight),
    # the tiny Mistral (a llama file with llama.attention.sliding_window 5 on every layer)
    for stem, arch, bits, overrides in [("llama3rope", "llama", 8, {"rope_parameters": LLAMA3_ROPE}), ("mistral", "mistral", 16, {}), ("llama80", "llama", 16, LLAMA_80)]:
        path = out / f"{stem}-{bits}.gguf"
        if not path.is_file():
            convert_tiny(arch, bits, path.with_suffix(".tmp"), **overrides).rename(path)
        expected["tiny"][path.name] = tiny_expected(path, "cpu")
        expected["tiny_gpu"][path.name] = tiny_expected(path, "gpu")
    refused = out / "stablelm-78.gguf"  # ffn_down rows of 78: not whole vec4s
    if not refused.is_file():
        convert_tiny("stablelm", 8, refused.with_suffix(".tmp"), **STABLELM_78).rename(refused)
    write_refused(out)
    no_bias = out / "qwen2-no-bias.gguf"  # a qwen2 file without one of its Q/K/V biases
    if not no_bias.is_file():
        from tiny_models import gguf_without

        gguf_without(convert_tiny("qwen2", 32, out / "qwen2-32.tmp"), no_bias.with_suffix(".tmp"), "blk.1.attn_k.bias").rename(no_bias)
        (out / "qwen2-32.tmp").unlink()
    bad_up = out / "phi3-bad-up.gguf"  # a phi3 file whose fused ffn_up holds up's rows alone
    if not bad_up.is_file():
        from tiny_models import gguf_without

        full = convert_tiny("phi3", 32, out / "phi3-32.tmp", **PHI3_LONGROPE)
        gguf_without(full, bad_up.with_suffix(".tmp"), "", {"blk.1.ffn_up.weight": np.ones((128, 64), np.float32)}).rename(bad_up)
        full.unlink()
    no_knorm = out / "qwen3-no-knorm.gguf"  # a qwen3 file without one of its per-head K norms
    if not no_knorm.is_file():
        from tiny_models import gguf_without

        full = convert_tiny("qwen3", 32, out / "qwen3-32.tmp")
        gguf_without(full, no_knorm.with_suffix(".tmp"), "blk.1.attn_k_norm.weight").rename(no_knorm)
        full.unlink()
    bad_factors = out / "phi3-bad-factors.gguf"  # a phi3 file whose LongRoPE long factors are too short
    if not bad_factors.is_file():
        from tiny_models import gguf_without

        full = convert_tiny("phi3", 32, out / "phi3-32.tmp", **PHI3_LONGROPE)
        gguf_without(full, bad_factors.with_suffix(".tmp"), "", {"rope_factors_long.weight": np.ones((3,), np.float32)}).rename(bad_factors)
        full.unlink()

    for name, target in (("smollm2.gguf", assets.smollm2_path()), ("gemma3.gguf", assets.gemma3_path()), ("qwen25.gguf", assets.qwen25_coder_path())):
        (out / name).unlink(missing_ok=True)
        os.symlink(target, out / name)
    smol = load_model(out / "smollm2.gguf")
    prompt = smol.tokenizer.encode(SMOLLM2_PROMPT)
    expected["smollm2"] = {"prompt": prompt}
    for kernels, key in (("cpu", "greedy"), ("gpu", "greedy_gpu")):
        engine = GpuEngine(smol, max_tokens=len(prompt) + SMOLLM2_TOKENS, force_f32=F32_KV, kernels=kernels)
        expected["smollm2"][key] = run_session(engine, prompt, SMOLLM2_TOKENS, 1, 0.0, 0)
        engine.close()
    for file, stem in (("gemma3.gguf", "gemma3"), ("qwen25.gguf", "qwen25")):
        model = load_model(out / file)
        prompt = model.tokenizer.encode(GEMMA3_PROMPT, add_special=True)
        for kernels, key in (("cpu", stem), ("gpu", f"{stem}_gpu")):
            engine = GpuEngine(model, max_tokens=len(prompt), all_logits=True, force_f32=F32_KV, kernels=kernels)
            logits = engine.forward_logits(prompt, 0)
            engine.close()
            top = logits.argmax(-1)
            expected[key] = {
                "prompt": prompt,
                "vocab": model.config.n_vocab,
                "top1": top.tolist(),
                "top1_logit": logits[np.arange(len(prompt)), top].tolist(),
                "row_max_abs": np.abs(logits).max(-1).tolist(),
            }
    tmp = expected_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(expected))
    tmp.rename(expected_path)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
