"""bench/synth_model.py: the random-weight GGUFs that bench/gpu.sh writes on a GPU machine.

They must be models wgllm runs as it runs real ones: every matrix type's random blocks decode to
finite weights of the intended size, a preset file loads and the GPU engine's logits agree with the
reference on it (both kernel families), and a skeleton rebuilds a file whose header is the original
one byte for byte.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from gpu_tolerances import MODEL_LOGITS_REL

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import synth_model  # noqa: E402

from wgllm import quant, reference  # noqa: E402
from wgllm.model import load_model  # noqa: E402


@pytest.mark.parametrize("ggml_type", synth_model.MATRIX_TYPES, ids=lambda t: t.name)
def test_random_rows_decode_to_finite_weights_of_the_intended_size(ggml_type):
    k = 512
    w = quant.dequantize(synth_model.random_rows(ggml_type, 96, k, seed=7), ggml_type, (96, k))
    assert np.isfinite(w).all()
    # element standard deviation about 1/sqrt(k): float types within their exponent's factor of 2
    assert 0.7 < w.std() * math.sqrt(k) < 1.3, w.std() * math.sqrt(k)
    assert abs(w.mean()) * math.sqrt(k) < 0.2
    assert len(np.unique(w)) > 8  # random, not one repeated value


def test_preset_model_runs_like_a_real_one(tmp_path):
    path = tmp_path / "tiny.gguf"
    synth_model.main(["--preset", "tiny", "--dims", "n_vocab=1000,n_layer=3", "--type", "Q4_K", "--out", str(path), "--workers", "2"])
    model = load_model(path)
    c = model.config
    assert (c.arch, c.n_layer, c.n_embd, c.n_head, c.n_head_kv, c.n_ff, c.n_vocab, c.tied_output) == ("llama", 3, 256, 4, 2, 768, 1000, False)
    assert model.gguf.tensors["blk.2.ffn_down.weight"].ggml_type.name == "Q4_K"
    assert model.gguf.tensors["output.weight"].ggml_type.name == "Q6_K"
    assert model.tokenizer.decode(model.tokenizer.encode("a synthetic vocabulary, wörds")) == "a synthetic vocabulary, wörds"

    from wgllm.gpu.engine import GpuEngine

    ids = [1, 300, 301, 7, 999]
    want = reference.forward(model, ids)[-1]
    assert np.isfinite(want).all() and 0.1 < want.std() < 10  # O(1) logits, as the scales intend
    for kernels in ("gpu", "cpu"):
        got = GpuEngine(model, max_tokens=8, force_f32=True, kernels=kernels).forward_logits(ids, 0)
        assert np.abs(got - want).max() / np.abs(want).max() < MODEL_LOGITS_REL, kernels


def test_skeleton_rebuilds_the_header_byte_for_byte(tmp_path):
    original = tmp_path / "original.gguf"
    synth_model.main(["--preset", "tiny", "--dims", "n_layer=1", "--out", str(original), "--seed", "3", "--workers", "1"])
    synth_model.save_skeleton(original, tmp_path / "skel" / "tiny")
    same, other = tmp_path / "same.gguf", tmp_path / "other.gguf"
    synth_model.main(["--skeleton", str(tmp_path / "skel" / "tiny"), "--out", str(same), "--seed", "3", "--workers", "2"])
    synth_model.main(["--skeleton", str(tmp_path / "skel" / "tiny"), "--out", str(other), "--seed", "4", "--workers", "2"])
    a, b, c = original.read_bytes(), same.read_bytes(), other.read_bytes()
    assert a == b  # same layout and seed: the same file, whichever writer made the header
    header = (tmp_path / "skel" / "tiny.header").read_bytes()
    assert c[: len(header)] == a[: len(header)] == header and len(c) == len(a)
    assert c != a  # another seed: other weights
    names = set(load_model(other).gguf.tensors)
    assert {"token_embd.weight", "blk.0.attn_q.weight", "output.weight"} <= names


def test_bad_input_is_named(tmp_path):
    with pytest.raises(ValueError, match="n_layers"):
        synth_model.main(["--preset", "tiny", "--dims", "n_layers=3", "--out", str(tmp_path / "x.gguf")])
    with pytest.raises(FileNotFoundError, match="--save-skeleton"):
        synth_model.main(["--skeleton", str(tmp_path / "missing"), "--out", str(tmp_path / "x.gguf")])
    with pytest.raises(SystemExit):
        synth_model.main(["--preset", "tiny", "--type", "Q2_K", "--out", str(tmp_path / "x.gguf")])
    assert not (tmp_path / "x.gguf").exists()
