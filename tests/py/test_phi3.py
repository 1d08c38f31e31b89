"""Phi-3 beyond the per-architecture matrices (where the tiny phi3 is Phi-4-mini-like: partial rotary,
tied embeddings): Phi-3.5-mini's LongRoPE and sliding window (tiny_models.PHI3_LONGROPE) against
transformers with the short and the long factors, the converter's refusals, and files the loaders
must refuse."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from tiny_models import PHI3_LONGROPE, convert_tiny, copy_tokenizer, gguf_without, tiny_model

from wgllm.convert import ConversionConfig, convert_checkpoint
from wgllm.errors import ConversionError, ModelFormatError
from wgllm.model import load_model
from wgllm.reference import KVCache, forward

F32_BOUND = 1e-4


def _ids(n_vocab: int, n: int) -> list[int]:
    return [int(i) for i in np.random.default_rng(7).integers(0, n_vocab, n)]


@pytest.fixture(scope="module")
def longrope_gguf(tmp_path_factory):
    return convert_tiny("phi3", 32, tmp_path_factory.mktemp("phi3") / "phi3-longrope.gguf", **PHI3_LONGROPE)


@pytest.mark.parametrize("n", [7, 20], ids=["short-factors", "long-factors"])
def test_longrope_and_sliding_window_match_transformers(longrope_gguf, n):
    """transformers picks the long factors when the sequence passes the original context (8), llama.cpp
    when the context does: the reference is run with a context of the sequence's length, as transformers
    runs it. The window (5) is shorter than both sequences; the other factor set is far off."""
    model = load_model(longrope_gguf)
    c = model.config
    assert (c.longrope, c.rope_ctx_orig, c.sliding_window, c.swa_layers, c.n_rot) == (True, 8, 5, (True, True), 12)
    assert c.rope_attn_factor == pytest.approx(np.sqrt(1 + np.log(16) / np.log(8)), rel=1e-6)
    ids = _ids(c.n_vocab, n)
    with torch.no_grad():
        hf = tiny_model("phi3", **PHI3_LONGROPE).model(torch.tensor([ids])).logits[0].numpy()
    ref = forward(model, ids, cache=KVCache(n_ctx=n))
    scale = np.abs(hf).max()
    assert np.abs(ref - hf).max() / scale <= F32_BOUND
    other = forward(model, ids, cache=KVCache(n_ctx=28 - n))  # 21 > 8 or 8: the other set
    assert np.abs(other - hf).max() / scale > 1e-2


def test_longrope_factors_and_attn_factor_written_as_llama_cpp_does(longrope_gguf):
    r = gguf.GGUFReader(longrope_gguf)
    fields = {f.name: f.contents() for f in r.fields.values()}
    assert fields["phi3.rope.scaling.original_context_length"] == 8
    assert fields["phi3.rope.scaling.attn_factor"] == pytest.approx(np.sqrt(1 + np.log(128 / 8) / np.log(8)), rel=1e-6)
    assert fields["phi3.attention.sliding_window"] == 5
    assert fields["phi3.rope.dimension_count"] == 12
    tensors = {t.name: np.array(t.data) for t in r.tensors}
    rope = PHI3_LONGROPE["rope_parameters"]
    np.testing.assert_array_equal(tensors["rope_factors_long.weight"], np.float32(rope["long_factor"]))
    np.testing.assert_array_equal(tensors["rope_factors_short.weight"], np.float32(rope["short_factor"]))
    assert tensors["blk.0.ffn_up.weight"].shape == (256, 64)  # gate and up, 2 x 128 rows


def _convert_with(tmp_path, change) -> None:
    src = tiny_model("phi3", **PHI3_LONGROPE).folder
    folder = tmp_path / "changed"
    folder.mkdir()
    data = json.loads((src / "config.json").read_text())
    change(data)
    (folder / "config.json").write_text(json.dumps(data))
    (folder / "model.safetensors").symlink_to(src / "model.safetensors")
    copy_tokenizer(src, folder)
    convert_checkpoint(ConversionConfig(str(folder), "safetensors", output_file=str(tmp_path / "out.gguf")))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["rope_parameters"].update(rope_type="yarn"), r"config\.json: rope scaling type 'yarn' is not supported; wgllm implements LongRoPE"),
        (lambda d: d["rope_parameters"].update(long_factor=[1.0, 2.0]), r"config\.json: rope long_factor \[1\.0, 2\.0\] is not supported; LongRoPE needs a list of 6 numbers"),
        (lambda d: d.update(hidden_act="gelu"), r"hidden_act = 'gelu'"),
    ],
)
def test_converter_refuses_what_it_cannot_run(tmp_path, change, message):
    with pytest.raises(ConversionError, match=message):
        _convert_with(tmp_path, change)
    assert not (tmp_path / "out.gguf").exists()


def test_mis_shaped_tensors_are_refused_by_name(longrope_gguf, tmp_path):
    up = np.zeros((128, 64), np.float32)  # up's rows alone: the gate's are missing
    with pytest.raises(ModelFormatError, match=r"bad-up\.gguf: tensor blk\.1\.ffn_up\.weight has shape \(128, 64\), expected \(256, n_embd\): phi3's gate and up rows"):
        load_model(gguf_without(longrope_gguf, tmp_path / "bad-up.gguf", "", {"blk.1.ffn_up.weight": up}))
    short = np.ones(5, np.float32)
    with pytest.raises(ModelFormatError, match=r"bad-rope\.gguf: tensor rope_factors_short\.weight has shape \(5,\), expected \(6,\) \(half of phi3's 12 rotary dimensions\)"):
        load_model(gguf_without(longrope_gguf, tmp_path / "bad-rope.gguf", "", {"rope_factors_short.weight": short}))


@pytest.mark.parametrize("kernels", ["cpu", "gpu"])
def test_gpu_engine_short_factors_for_a_short_context(longrope_gguf, kernels):
    """A context of 8 tokens (not above the original 8) runs on the short factors, as the reference
    with n_ctx 8 does (tests/py/test_gpu_engine.py runs the long ones): every prefill row and decode."""
    import os

    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    from gpu_tolerances import MODEL_LOGITS_REL

    from wgllm.gpu.engine import GpuEngine

    model = load_model(longrope_gguf)
    ids = _ids(model.config.n_vocab, 8)
    want = forward(model, ids, cache=KVCache(n_ctx=8))
    assert np.abs(forward(model, ids, cache=KVCache(n_ctx=9)) - want).max() / np.abs(want).max() > 1e-2
    engine = GpuEngine(model, max_tokens=8, all_logits=True, force_f32=True, kernels=kernels)
    got = np.concatenate([engine.forward_logits(ids[:5], 0), *(engine.forward_logits([ids[j]], j) for j in range(5, 8))])
    assert np.abs(got - want).max() / np.abs(want).max() < MODEL_LOGITS_REL
    engine.close()


PHI35_TEMPLATE = Path(__file__).resolve().parents[1] / "data" / "phi3" / "phi3.5_chat_template.jinja"


def test_phi35_chat_template_renders_as_transformers():
    """Phi-3.5-mini's template (tests/data/phi3/phi3.5_chat_template.jinja: its tokenizer_config.json's
    chat_template, the model is MIT-licensed) renders every chat case of tests/py/qwen_chat.py as
    transformers does, with and without the generation prompt (the end: eos_token) and an empty
    system message (left out)."""
    from qwen_chat import cases
    from transformers.utils.chat_template_utils import render_jinja_template

    from wgllm.chat import render_chat

    template = PHI35_TEMPLATE.read_text(encoding="utf-8")
    extra = [{"name": "empty-system", "messages": [{"role": "system", "content": ""}, {"role": "user", "content": "Hi"}], "tools": None, "add_generation_prompt": True}]
    for case in cases() + extra:
        kw = dict(tools=case["tools"], add_generation_prompt=case["add_generation_prompt"], bos_token="<s>", eos_token="<|endoftext|>")
        want = render_jinja_template([case["messages"]], chat_template=template, **kw)[0][0]
        assert render_chat(template, case["messages"], **kw) == want, case["name"]
    user = next(c for c in cases() if c["name"] == "system+prompt")
    assert render_chat(template, user["messages"]) == "<|system|>\nYou are terse.<|end|>\n<|user|>\nName a prime.<|end|>\n<|assistant|>\n"


def test_phi35_template_travels_into_the_gguf(tmp_path):
    """The converter writes tokenizer_config.json's template into tokenizer.chat_template verbatim."""
    import shutil

    from wgllm.gguf_io import GGUFFile

    folder = tmp_path / "phi3"
    shutil.copytree(tiny_model("phi3").folder, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    template = PHI35_TEMPLATE.read_text(encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": template}))
    out = convert_checkpoint(ConversionConfig(str(folder), "safetensors", output_file=str(tmp_path / "p.gguf")))
    g = GGUFFile(out)
    assert g.get("tokenizer.chat_template") == template
    g.close()
