"""Gemma 4 (llama.cpp's `gemma4`): its tokenizer runs (test_tokenizer.py), its text decoder does not
yet. A gemma4 file is refused by name with what is missing (docs/gemma4.md), before its tokenizer or
any weight is read; the browser says the same (tests/browser/engine.spec.ts, "gemma4.gguf")."""

import re
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter

from wgllm.errors import ModelFormatError
from wgllm.gguf_io import GGUFFile
from wgllm.model import load_model

MISSING = (
    "head size and KV head count per layer (global heads of 512 > the attention kernels' 256); "
    "KV cache shared across layers (attention.shared_kv_layers); "
    "per-layer token embeddings (per_layer_token_embd); "
    "mixture-of-experts FFN (ffn_gate_inp, ffn_gate_up_exps, ffn_down_exps); "
    "FFN width per layer"
)


def refusal(path) -> str:
    return f"{path}: the gemma4 text decoder is not supported yet; missing: {MISSING} (see docs/gemma4.md)"


def write_gemma4(path: Path) -> Path:
    """A gemma4 header as llama.cpp's Gemma4Model writes it for an E2B-like model (per-layer head
    sizes, shared KV layers, per-layer embeddings), with one tensor and no tokenizer."""
    w = GGUFWriter(str(path), "gemma4")
    w.add_block_count(5)
    w.add_embedding_length(32)
    w.add_feed_forward_length([64, 64, 64, 128, 128])
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_key_length(32)
    w.add_value_length(32)
    w.add_key_length_swa(16)
    w.add_value_length_swa(16)
    w.add_sliding_window(8)
    w.add_sliding_window_pattern([True, True, True, True, False])
    w.add_shared_kv_layers(2)
    w.add_embedding_length_per_layer_input(8)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_tensor("token_embd.weight", np.ones((16, 32), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_gemma4_file_is_refused_naming_what_is_missing(tmp_path):
    path = write_gemma4(tmp_path / "gemma4-tiny.gguf")
    with pytest.raises(ModelFormatError) as err:
        load_model(path)
    assert str(err.value) == refusal(path)
    assert (Path(__file__).parents[2] / "docs" / "gemma4.md").is_file()  # where the message points


def test_other_unknown_architectures_keep_the_generic_message(tmp_path):
    w = GGUFWriter(str(tmp_path / "mamba.gguf"), "mamba")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.ones((8, 32), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ModelFormatError, match=re.escape("unsupported architecture 'mamba'; supported: llama, gemma")):
        load_model(tmp_path / "mamba.gguf")


def test_llama_cpp_gemma4_header_has_the_missing_pieces_and_is_refused(llama_vocab_dir):
    """llama.cpp's own gemma4 test vocabulary carries the header of a real conversion (Gemma 4
    26B-A4B: 30 layers, 128 experts): what docs/gemma4.md says such a file holds, and the refusal."""
    path = llama_vocab_dir / "ggml-vocab-gemma-4.gguf"
    g = GGUFFile(path)
    meta = g.metadata
    assert g.architecture == "gemma4"
    swa = np.asarray(meta["gemma4.attention.sliding_window_pattern"], bool)
    kv_heads = np.asarray(meta["gemma4.attention.head_count_kv"])
    assert swa.shape == kv_heads.shape == (meta["gemma4.block_count"],) == (30,)
    assert swa.tolist() == ([True] * 5 + [False]) * 5  # every sixth layer global
    assert set(kv_heads[swa].tolist()) == {8} and set(kv_heads[~swa].tolist()) == {2}  # KV heads per layer
    assert (meta["gemma4.attention.key_length"], meta["gemma4.attention.key_length_swa"]) == (512, 256)  # head size per layer
    assert (meta["gemma4.rope.dimension_count"], meta["gemma4.rope.dimension_count_swa"]) == (512, 256)
    assert (meta["gemma4.expert_count"], meta["gemma4.expert_used_count"], meta["gemma4.expert_feed_forward_length"]) == (128, 8, 704)
    assert meta["gemma4.attention.shared_kv_layers"] == 0 and meta["gemma4.embedding_length_per_layer_input"] == 0
    assert (meta["gemma4.rope.freq_base"], meta["gemma4.rope.freq_base_swa"]) == (1e6, 1e4)
    assert meta["gemma4.final_logit_softcapping"] == 30.0
    with pytest.raises(ModelFormatError) as err:
        load_model(path)
    assert str(err.value) == refusal(path)
