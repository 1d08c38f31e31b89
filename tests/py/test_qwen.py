"""Qwen2 and Qwen3 beyond the per-architecture matrices (oracle, converter, GPU engine, LoRA):
files the loaders must refuse, and the chat template rendered as transformers renders it."""

from __future__ import annotations

import pytest
from tiny_models import convert_tiny, gguf_without

from wgllm.errors import ModelFormatError
from wgllm.model import load_model
from wgllm.reference import forward


def test_qwen2_without_a_qkv_bias_is_refused(tmp_path):
    full = convert_tiny("qwen2", 32, tmp_path / "qwen2.gguf")
    assert load_model(full).has("blk.1.attn_k.bias")
    broken = gguf_without(full, tmp_path / "no-bias.gguf", "blk.1.attn_k.bias")
    with pytest.raises(ModelFormatError, match=r"no-bias\.gguf: tensor blk\.1\.attn_k\.bias is missing; qwen2 has Q, K and V biases on every layer"):
        load_model(broken)


def test_qwen3_without_a_head_norm_is_refused(tmp_path):
    full = convert_tiny("qwen3", 32, tmp_path / "qwen3.gguf")
    broken = load_model(gguf_without(full, tmp_path / "no-norm.gguf", "blk.0.attn_q_norm.weight"))
    with pytest.raises(ModelFormatError, match=r"no-norm\.gguf: .*blk\.0\.attn_q_norm\.weight"):
        forward(broken, [1, 2, 3])
