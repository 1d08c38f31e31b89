"""SmolLM3 beyond the per-architecture matrices (oracle, converter, GPU engine): the NoPE layer is what
makes the reference match transformers, and the converter refuses what a GGUF file cannot say."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import convert_tiny, copy_tokenizer, gguf_without, tiny_model

from wgllm.convert import ConversionConfig, convert_checkpoint
from wgllm.errors import ConversionError, ModelFormatError
from wgllm.gpu.engine import GpuEngine
from wgllm.model import load_model
from wgllm.reference import forward


def test_layer_3_skips_rope_as_transformers_does(tmp_path):
    """The tiny SmolLM3's layer 3 (of 5) has no RoPE; transformers with RoPE on every layer (the same
    weights) is far from the reference, transformers as configured within 1e-4 of it."""
    model = load_model(convert_tiny("smollm3", 32, tmp_path / "s.gguf"))
    c = model.config
    assert [c.layer_n_rot(i) for i in range(c.n_layer)] == [16, 16, 16, 0, 16]
    ids = [int(i) for i in np.random.default_rng(3).integers(0, c.n_vocab, 20)]
    hf = tiny_model("smollm3").model
    ref = forward(model, ids)
    with torch.no_grad():
        want = hf(torch.tensor([ids])).logits[0].numpy()
        for layer in hf.model.layers:
            layer.self_attn.use_rope = True
        try:
            all_rope = hf(torch.tensor([ids])).logits[0].numpy()
        finally:
            hf.model.layers[3].self_attn.use_rope = False
    scale = np.abs(want).max()
    assert np.abs(ref - want).max() / scale <= 1e-4
    assert np.abs(ref - all_rope).max() / scale > 1e-2


def _convert_with(tmp_path, change) -> None:
    src = tiny_model("smollm3").folder
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
        (lambda d: d.update(no_rope_layers=[1, 1, 0, 1, 1]), r"no_rope_layers \[1, 1, 0, 1, 1\] is not supported; llama\.cpp's smollm3 skips RoPE on every 4th layer exactly \(\[1, 1, 1, 0, 1\]\)"),
        (lambda d: d.update(no_rope_layers=None, no_rope_layer_interval=3), r"no_rope_layer_interval = 3 is not supported"),
        (lambda d: d.update(use_sliding_window=True, sliding_window=4), r"use_sliding_window = True is not supported"),
        (lambda d: d.update(rope_parameters={"rope_type": "yarn", "factor": 2.0, "rope_theta": 10000.0}), r"rope scaling type 'yarn'"),
    ],
)
def test_converter_refuses_what_a_gguf_cannot_say(tmp_path, change, message):
    with pytest.raises(ConversionError, match=message):
        _convert_with(tmp_path, change)
    assert not (tmp_path / "out.gguf").exists()


SMOLLM3_TEMPLATE = Path(__file__).resolve().parents[1] / "data" / "smollm3" / "smollm3_chat_template.jinja"


def test_smollm3_chat_template_renders_as_transformers():
    """SmolLM3's template (tests/data/smollm3/: HuggingFaceTB/SmolLM3-3B's chat_template.jinja, Apache-2.0,
    as quoted in a public repository with its indentation removed: every tag trims the whitespace
    around it, so it renders as the original) renders every chat case of tests/py/qwen_chat.py as
    transformers does: {% generation %} blocks, strftime_now, the XML tool section, /no_think in the
    system message."""
    from qwen_chat import cases
    from transformers.utils.chat_template_utils import render_jinja_template

    from wgllm.chat import render_chat

    template = SMOLLM3_TEMPLATE.read_text(encoding="utf-8")
    no_think = [{"name": "no_think", "messages": [{"role": "system", "content": "Be brief. /no_think"}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}], "tools": None, "add_generation_prompt": True}]
    for case in cases() + no_think:
        kw = dict(tools=case["tools"], add_generation_prompt=case["add_generation_prompt"])
        want = render_jinja_template([case["messages"]], chat_template=template, **kw)[0][0]
        assert render_chat(template, case["messages"], **kw) == want, case["name"]
    rendered = render_chat(template, no_think[0]["messages"])
    assert "Reasoning Mode: /no_think" in rendered and rendered.endswith("<|im_start|>assistant\n<think>\n\n</think>\n")


@pytest.mark.parametrize(
    "drop, replace, message",
    [
        ("blk.2.attn_k.weight", None, r"no-k\.gguf: missing tensor blk\.2\.attn_k\.weight"),
        ("", {"blk.1.attn_k.weight": np.zeros((32, 60), np.float32)}, r"bad-k\.gguf: tensor blk\.1\.attn_k\.weight has shape \(32, 60\), expected \(32, 64\)"),
        ("", {"blk.0.ffn_down.weight": np.zeros((64, 96), np.float32)}, r"bad-down\.gguf: tensor blk\.0\.ffn_down\.weight has shape \(64, 96\), expected \(64, 128\)"),
    ],
    ids=["missing", "mis-shaped-k", "mis-shaped-down"],
)
def test_a_broken_smollm3_file_is_refused_by_name_everywhere(tmp_path, drop, replace, message):
    """A SmolLM3 file missing a tensor or holding one of the wrong shape: the reference and the GPU
    engine (both kernel families) name the file, the tensor and the expected shape (the GPU engine
    before it uploads anything; it used to say only that a row length was not a multiple of 32)."""
    full = convert_tiny("smollm3", 32, tmp_path / "smollm3.gguf")
    c = load_model(full).config
    assert (c.kv_dim, c.n_embd, c.n_ff) == (32, 64, 128)  # the shapes the messages expect
    name = {"blk.2.attn_k.weight": "no-k", "": "bad-k" if "blk.1.attn_k.weight" in (replace or {}) else "bad-down"}[drop]
    broken = load_model(gguf_without(full, tmp_path / f"{name}.gguf", drop, replace))
    with pytest.raises(ModelFormatError, match=message):
        forward(broken, [1, 2, 3])
    for kernels in ("cpu", "gpu"):
        with pytest.raises(ModelFormatError, match=message):
            GpuEngine(broken, max_tokens=8, kernels=kernels)
