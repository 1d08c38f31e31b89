"""The correctness oracle: transformers' logits vs wgllm's numpy reference on the converted GGUF.

For each of the ten architectures a tiny random-weight model (tiny_models.py) is converted and
run on the same 24 token ids by transformers (float32, eager attention) and by
`wgllm.reference.forward(load_model(gguf))`. Errors are max |Δ| / max |HF logit|.

- F32: <= 1e-4 (float32 rounding only; measured <= 2e-6).
- Q8_0 / Q4_0, exact path: HF run on the very weights the GGUF holds (each HF matrix quantised and
  dequantised by gguf.quants, llama.cpp's Python code) must again agree to 1e-4, so any error
  beyond quantisation itself (a wrong block layout, scale, or fallback type) fails.
- Q8_0 / Q4_0 vs the unquantised HF model, the quantisation error itself. Bounds from measuring
  the first eight models: Q8_0 cosine >= 0.9994, max error <= 0.086, top-1 agreement >= 96%;
  Q4_0 cosine >= 0.979, top-1 >= 58%; Qwen2 / Qwen3: Q8_0 cosine 0.99993 / 0.9999, max error
  0.0095 / 0.017, top-1 100% / 96%; Q4_0 cosine 0.981 / 0.972, top-1 96% / 83%. Q4_0 moves each weight by up to 1/16 of its block's range
  (~9% rms noise per matrix); untrained random models have nearly flat logits, so near-ties flip
  top-1 and a max-error bound is meaningless at Q4_0 (Gemma-2's final soft-cap at 3 squeezes all
  logits into [-3, 3]). Stated bounds: Q8_0 cos >= 0.999, error <= 0.15, top-1 >= 90%;
  Q4_0 cos >= 0.95, top-1 >= 50%.

Falcon is checked against transformers' SDPA attention instead of eager: in transformers 5.23
the eager ALiBi path adds the bias twice (once folded into the causal mask, once in
FalconAttention.forward), which moves its logits by ~7% relative to SDPA; the reference matches
SDPA, whose mask carries the bias once as Falcon-RW was trained, to ~1e-6.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import transformers
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize
from tiny_models import ARCHS, convert_tiny, tiny_model

from wgllm.model import load_model
from wgllm.reference import forward

F32_BOUND = 1e-4
QUANT_BOUNDS = {8: dict(cos=0.999, max_err=0.15, top1=0.90), 4: dict(cos=0.95, max_err=None, top1=0.50)}
QTYPE = {8: T.Q8_0, 4: T.Q4_0}
_CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def token_ids(n_vocab: int, n: int = 24) -> list[int]:
    return [int(i) for i in np.random.default_rng(1234).integers(0, n_vocab, n)]


def hf_model(arch: str) -> torch.nn.Module:
    tm = tiny_model(arch)
    if arch == "falcon":  # see the module docstring: transformers' eager ALiBi counts the bias twice
        return transformers.FalconForCausalLM.from_pretrained(tm.folder, attn_implementation="sdpa", dtype=torch.float32).eval()
    return tm.model


def hf_logits(model: torch.nn.Module, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy().astype(np.float32)


def with_gguf_rounding(model: torch.nn.Module, arch: str, bits: int) -> torch.nn.Module:
    """A copy whose matrices went through the converter's storage type: Q blocks run along GGUF rows."""
    rounded = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in rounded.named_parameters():
            if p.ndim != 2:
                continue  # norms and biases are stored as F32
            w = p.numpy()
            conv1d = arch == "gpt2" and name.endswith(_CONV1D_SUFFIXES)
            rows = np.ascontiguousarray(w.T if conv1d else w, dtype=np.float32)
            if rows.shape[-1] % 32:
                back = rows.astype(np.float16).astype(np.float32)
            else:
                back = dequantize(quantize(rows, QTYPE[bits]), QTYPE[bits]).reshape(rows.shape)
            p.copy_(torch.from_numpy(np.ascontiguousarray(back.T if conv1d else back)))
    return rounded


def relative_error(ref: np.ndarray, hf: np.ndarray) -> float:
    return float(np.abs(ref - hf).max() / np.abs(hf).max())


@pytest.mark.parametrize("arch", ARCHS)
def test_f32_reference_matches_transformers(arch, tmp_path):
    model = load_model(convert_tiny(arch, 32, tmp_path / f"{arch}-32.gguf"))
    ids = token_ids(model.config.n_vocab)
    ref = forward(model, ids)
    hf = hf_logits(hf_model(arch), ids)
    assert ref.shape == hf.shape == (len(ids), model.config.n_vocab)
    assert relative_error(ref, hf) <= F32_BOUND
    # the reference's top token is HF's top token, or ties with it within the bound (Gemma-2's
    # soft-cap squeezes the largest logits together)
    picked = hf[np.arange(len(ids)), ref.argmax(-1)]
    assert np.all(picked >= hf.max(-1) - F32_BOUND * np.abs(hf).max())


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("bits", [8, 4])
def test_quantised_reference_matches_transformers(arch, bits, tmp_path):
    model = load_model(convert_tiny(arch, bits, tmp_path / f"{arch}-{bits}.gguf"))
    ids = token_ids(model.config.n_vocab)
    ref = forward(model, ids)
    hf = hf_model(arch)

    exact = hf_logits(with_gguf_rounding(hf, arch, bits), ids)
    assert relative_error(ref, exact) <= F32_BOUND

    original = hf_logits(hf, ids)
    bound = QUANT_BOUNDS[bits]
    cos = float((ref * original).sum() / np.linalg.norm(ref) / np.linalg.norm(original))
    top1 = float((ref.argmax(-1) == original.argmax(-1)).mean())
    assert cos >= bound["cos"], cos
    assert top1 >= bound["top1"], top1
    if bound["max_err"] is not None:
        assert relative_error(ref, original) <= bound["max_err"]
    # quantisation must have changed something: the exact-path check above is not vacuous
    assert relative_error(exact, original) > 1e-4
