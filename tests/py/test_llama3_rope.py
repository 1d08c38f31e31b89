"""Llama-3.x's RoPE scaling (rope_type llama3): the converter writes llama.cpp's rope_freqs.weight and
the numpy reference divides each rotary frequency by it. The tiny Llama's original context is 32
positions, so with head_dim 16 its frequencies fall in all three bands (kept, divided by the factor,
blended) within a 24-token prompt (tiny_models.LLAMA3_ROPE). The Python GPU engine (rope.wgsl's factors binding) is checked
against the reference here, the browser's in tests/browser/engine.spec.ts."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from tiny_models import LLAMA3_ROPE as LLAMA3
from tiny_models import convert_tiny, gguf_without, tiny_model

from wgllm.convert import ConversionConfig, convert_checkpoint
from wgllm.errors import ConversionError, ModelFormatError
from wgllm.model import load_model
from wgllm.reference import forward


def tiny_llama3():
    return tiny_model("llama", rope_parameters=LLAMA3)


def test_rope_freqs_are_transformers_frequency_ratios(tmp_path):
    model = load_model(convert_tiny("llama", 32, tmp_path / "llama3.gguf", rope_parameters=LLAMA3))
    assert model.config.rope_freqs
    scaled = tiny_llama3().model.model.rotary_emb.inv_freq.numpy().astype(np.float64)  # transformers' own llama3 frequencies
    ratio = 1.0 / (LLAMA3["rope_theta"] ** (np.arange(0, 16, 2) / 16)) / scaled
    got = model.weight("rope_freqs.weight", (8,))
    np.testing.assert_allclose(got, ratio, rtol=1e-6)
    assert got.min() == 1.0 and got.max() == 8.0 and np.any((got > 1.0) & (got < 8.0))  # every band is present


def test_reference_matches_transformers_and_needs_the_factors(tmp_path):
    path = convert_tiny("llama", 32, tmp_path / "llama3.gguf", rope_parameters=LLAMA3)
    model = load_model(path)
    ids = [int(i) for i in np.random.default_rng(1234).integers(0, model.config.n_vocab, 24)]
    with torch.no_grad():
        hf = tiny_llama3().model(torch.tensor([ids])).logits[0].numpy()
    ref = forward(model, ids)
    assert np.abs(ref - hf).max() / np.abs(hf).max() <= 1e-4
    # without the factors the same weights give other logits: the check above is not vacuous
    plain = forward(load_model(gguf_without(path, tmp_path / "plain.gguf", "rope_freqs.weight")), ids)
    assert np.abs(plain - hf).max() / np.abs(hf).max() > 1e-2


@pytest.mark.parametrize("kernels", ["cpu", "gpu"])
@pytest.mark.parametrize("bits", [32, 8])
def test_gpu_engine_matches_reference(tmp_path, bits, kernels):
    """Prefill (every row) and decode against the reference, then 24 greedy tokens identical."""
    import os

    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    from gpu_tolerances import MODEL_LOGITS_REL

    from wgllm.generation import ReferenceSession
    from wgllm.gpu.engine import GpuEngine

    model = load_model(convert_tiny("llama", bits, tmp_path / "llama3.gguf", rope_parameters=LLAMA3))
    ids = [int(i) for i in np.random.default_rng(bits).integers(3, model.config.n_vocab, 24)]
    want = forward(model, ids)
    engine = GpuEngine(model, max_tokens=48, all_logits=True, force_f32=True, kernels=kernels)
    rel = lambda got, ref: float(np.abs(got - ref).max() / np.abs(ref).max())  # noqa: E731
    assert rel(engine.forward_logits(ids[:17], 0), want[:17]) < MODEL_LOGITS_REL
    for j in range(17, 24):
        assert rel(engine.forward_logits([ids[j]], j)[0], want[j]) < MODEL_LOGITS_REL
    gpu, ref = engine.session(top_k=1, temperature=0.0, seed=0), ReferenceSession(model, top_k=1, temperature=0.0, seed=0)
    a, b = [gpu.prefill(ids[:6])], [ref.prefill(ids[:6])]
    while len(a) < 24:
        a.append(gpu.decode(a[-1]))
        b.append(ref.decode(b[-1]))
    assert a == b


def test_bad_llama3_configs_and_files_are_refused(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(tiny_llama3().folder, folder)
    config = json.loads((folder / "config.json").read_text())
    params = config.get("rope_parameters") or config["rope_scaling"]
    params.pop("low_freq_factor")
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConversionError, match=r"llama3 RoPE scaling with low_freq_factor = None is not supported; expected a positive number"):
        convert_checkpoint(ConversionConfig(str(folder), "safetensors", output_file=str(tmp_path / "o.gguf")))
    assert not (tmp_path / "o.gguf").exists()

    import gguf

    good = convert_tiny("llama", 32, tmp_path / "llama3.gguf", rope_parameters=LLAMA3)
    r = gguf.GGUFReader(good)
    w = gguf.GGUFWriter(str(tmp_path / "short.gguf"), "llama")
    for f in r.fields.values():
        if not f.name.startswith("GGUF.") and f.name != "general.architecture":
            w.add_key_value(f.name, f.contents(), f.types[0], sub_type=f.types[-1] if f.types[0] == gguf.GGUFValueType.ARRAY else None)
    for t in r.tensors:
        data = np.array(t.data)
        w.add_tensor(t.name, data[:4] if t.name == "rope_freqs.weight" else data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ModelFormatError, match=r"short\.gguf: tensor rope_freqs\.weight has shape \(4,\), expected \(8,\) \(half of llama's 16 rotary dimensions\)"):
        load_model(tmp_path / "short.gguf")
