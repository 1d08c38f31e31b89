"""Mistral (MistralForCausalLM) as a llama file: the tiny Mistral (sliding window 5 on every layer,
shorter than the prompts) converted, its window written as llama.attention.sliding_window, the
reference against transformers (and far from transformers without the window), a null window
writing no key, and the Python GPU engine against the reference on both kernel families."""

from __future__ import annotations

import json

import gguf
import numpy as np
import pytest
import torch
from tiny_models import convert_tiny, copy_tokenizer, tiny_model

from wgllm.convert import ConversionConfig, convert_checkpoint
from wgllm.errors import ConversionError
from wgllm.model import load_model
from wgllm.reference import forward

F32_BOUND = 1e-4


def _ids(n_vocab: int, n: int) -> list[int]:
    return [int(i) for i in np.random.default_rng(11).integers(0, n_vocab, n)]


@pytest.fixture(scope="module")
def mistral_gguf(tmp_path_factory):
    return convert_tiny("mistral", 32, tmp_path_factory.mktemp("mistral") / "mistral.gguf")


def test_window_written_as_llama_attention_sliding_window(mistral_gguf):
    fields = {f.name: f.contents() for f in gguf.GGUFReader(mistral_gguf).fields.values()}
    assert fields["general.architecture"] == "llama"
    assert fields["llama.attention.sliding_window"] == 5
    c = load_model(mistral_gguf).config
    assert (c.arch, c.sliding_window, c.swa_layers) == ("llama", 5, (True, True))


def test_reference_matches_transformers_with_the_window():
    """20 tokens through a window of 5: transformers (eager attention) within 1e-4; the same weights
    with the window removed are far from it, so the window is what makes them agree."""
    hf = tiny_model("mistral").model
    assert hf.config._attn_implementation == "eager"
    with_window = load_model(convert_tiny("mistral", 32, tiny_model("mistral").folder.parent / "mistral-ref.gguf"))
    ids = _ids(with_window.config.n_vocab, 20)
    with torch.no_grad():
        want = hf(torch.tensor([ids])).logits[0].numpy()
        hf.config.sliding_window = None
        try:
            no_window = hf(torch.tensor([ids])).logits[0].numpy()
        finally:
            hf.config.sliding_window = 5
    ref = forward(with_window, ids)
    scale = np.abs(want).max()
    assert np.abs(ref - want).max() / scale <= F32_BOUND
    assert np.abs(no_window - want).max() / scale > 1e-2


def _convert_with(tmp_path, change):
    src = tiny_model("mistral").folder
    folder = tmp_path / "changed"
    folder.mkdir()
    data = json.loads((src / "config.json").read_text())
    change(data)
    (folder / "config.json").write_text(json.dumps(data))
    (folder / "model.safetensors").symlink_to(src / "model.safetensors")
    copy_tokenizer(src, folder)
    out = tmp_path / "out.gguf"
    convert_checkpoint(ConversionConfig(str(folder), "safetensors", output_file=str(out)))
    return out


def test_null_window_writes_no_key(tmp_path):
    """Mistral-7B v0.2/v0.3 set sliding_window null: no key, and no layer slides."""
    out = _convert_with(tmp_path, lambda d: d.update(sliding_window=None))
    assert "llama.attention.sliding_window" not in {f.name for f in gguf.GGUFReader(out).fields.values()}
    c = load_model(out).config
    assert (c.sliding_window, c.swa_layers) == (0, (False, False))


def test_bad_window_refused_by_name(tmp_path):
    with pytest.raises(ConversionError, match=r"config\.json: sliding_window = -3 is not supported; expected a positive integer or null"):
        _convert_with(tmp_path, lambda d: d.update(sliding_window=-3))
    assert not (tmp_path / "out.gguf").exists()


@pytest.mark.parametrize("kernels", ["cpu", "gpu"])
def test_gpu_engine_slides_as_the_reference(mistral_gguf, kernels):
    """12 tokens through a window of 5: every prefill row (7) and each decode step against the reference."""
    import os

    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    from gpu_tolerances import MODEL_LOGITS_REL

    from wgllm.gpu.engine import GpuEngine

    model = load_model(mistral_gguf)
    ids = _ids(model.config.n_vocab, 12)
    want = forward(model, ids)
    engine = GpuEngine(model, max_tokens=12, all_logits=True, force_f32=True, kernels=kernels)
    got = np.concatenate([engine.forward_logits(ids[:7], 0), *(engine.forward_logits([ids[j]], j) for j in range(7, 12))])
    engine.close()
    assert np.abs(got - want).max() / np.abs(want).max() < MODEL_LOGITS_REL
