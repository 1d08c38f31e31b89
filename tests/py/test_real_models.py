"""Real GGUF files from the ecosystem: the reference against transformers' own GGUF loader.

transformers dequantises the GGUF with gguf-py and runs its own modeling code, so agreement here
checks our reader, dequantisers, config mapping and forward pass on real quantised weights.
"""

from __future__ import annotations

import numpy as np
import pytest

from wgllm import reference
from wgllm.generation import generate
from wgllm.model import load_model

PROMPT_32 = (
    "In the early morning, the small fishing village woke to the sound of gulls. "
    "Maria walked down to the harbour, where her father was already mending the nets"
)


def _transformers_logits(path, ids: list[int]) -> np.ndarray:
    import torch
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    hf.eval()
    with torch.no_grad():
        return hf(torch.tensor([ids])).logits[0].numpy()


@pytest.fixture(scope="module")
def smollm2(smollm2_path):
    return load_model(smollm2_path)


def test_smollm2_top1_matches_transformers_on_every_position(smollm2, smollm2_path):
    ids = smollm2.tokenizer.encode(PROMPT_32)[:32]
    assert len(ids) == 32
    ours = reference.forward(smollm2, ids)
    theirs = _transformers_logits(smollm2_path, ids)
    assert ours.shape == theirs.shape == (32, smollm2.config.n_vocab)
    np.testing.assert_array_equal(ours.argmax(-1), theirs.argmax(-1))
    # same weights, same math in float32: the logits themselves agree closely too
    assert np.abs(ours - theirs).max() / np.abs(theirs).max() < 1e-4


def test_smollm2_greedy_knows_the_capital_of_france(smollm2):
    pieces: list[tuple[str, bool]] = []
    text = generate(smollm2, "The capital of France is", max_tokens=24, top_k=1, listener=lambda p, d: pieces.append((p, d)))
    assert "Paris" in text
    assert "".join(p for p, _ in pieces) == text
    assert pieces[-1][1] is True and not any(done for _, done in pieces[:-1])


def test_gemma3_270m_matches_transformers(gemma3_path):
    model = load_model(gemma3_path)
    ids = model.tokenizer.encode(PROMPT_32, add_special=True)[:24]
    assert ids[0] == model.tokenizer.bos_id
    ours = reference.forward(model, ids)
    theirs = _transformers_logits(gemma3_path, ids)
    np.testing.assert_array_equal(ours.argmax(-1), theirs.argmax(-1))
    assert np.abs(ours - theirs).max() / np.abs(theirs).max() < 1e-4


def test_qwen25_coder_matches_transformers(qwen25_coder_path):
    """Qwen2.5-Coder-0.5B (qwen2: Q/K/V biases, NeoX RoPE; Q4_K_M, so Q4_K, Q6_K, Q5_0, Q8_0): the
    reference and the GPU engine as users get it (f16 KV cache on lavapipe) pick transformers' top-1
    at every position of a 32-token prompt."""
    import os

    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    from wgllm.gpu.engine import GpuEngine

    model = load_model(qwen25_coder_path)
    ids = model.tokenizer.encode(PROMPT_32)[:32]
    assert len(ids) == 32 and model.config.arch == "qwen2"
    ours = reference.forward(model, ids)
    theirs = _transformers_logits(qwen25_coder_path, ids)
    assert ours.shape == theirs.shape == (32, model.config.n_vocab)
    np.testing.assert_array_equal(ours.argmax(-1), theirs.argmax(-1))
    assert np.abs(ours - theirs).max() / np.abs(theirs).max() < 1e-4
    engine = GpuEngine(model, max_tokens=32, all_logits=True)
    np.testing.assert_array_equal(engine.forward_logits(ids, 0).argmax(-1), theirs.argmax(-1))
    engine.close()
