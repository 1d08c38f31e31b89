"""The converter: llama.cpp's names, keys and layouts for all eight architectures, quantisation, inputs, errors.

GGUF files are read back with gguf-py's own GGUFReader and dequantised with gguf.quants (llama.cpp's
Python package), so these checks do not lean on wgllm's reader or quantisers. The expected layouts
are written here independently of wgllm.arch: row formulas for the RoPE permutation and the Falcon
QKV reorder, +1 for Gemma norms, transposes for GPT-2's Conv1D.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize
from safetensors.torch import load_file, save_file
from tiny_models import ARCHS, copy_tokenizer, tiny_model

from wgllm.convert import ConversionConfig, convert_checkpoint
from wgllm.errors import ConversionError

QTYPE = {32: T.F32, 16: T.F16, 8: T.Q8_0, 4: T.Q4_0}

# HF parameter name (layer index as {bid}) -> llama.cpp tensor name, per architecture.
_LLAMA_LIKE = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.layers.{bid}.input_layernorm.weight": "blk.{bid}.attn_norm.weight",
    "model.layers.{bid}.self_attn.q_proj.weight": "blk.{bid}.attn_q.weight",
    "model.layers.{bid}.self_attn.k_proj.weight": "blk.{bid}.attn_k.weight",
    "model.layers.{bid}.self_attn.v_proj.weight": "blk.{bid}.attn_v.weight",
    "model.layers.{bid}.self_attn.o_proj.weight": "blk.{bid}.attn_output.weight",
    "model.layers.{bid}.mlp.gate_proj.weight": "blk.{bid}.ffn_gate.weight",
    "model.layers.{bid}.mlp.up_proj.weight": "blk.{bid}.ffn_up.weight",
    "model.layers.{bid}.mlp.down_proj.weight": "blk.{bid}.ffn_down.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_GEMMA2_NORMS = {
    "model.layers.{bid}.post_attention_layernorm.weight": "blk.{bid}.post_attention_norm.weight",
    "model.layers.{bid}.pre_feedforward_layernorm.weight": "blk.{bid}.ffn_norm.weight",
    "model.layers.{bid}.post_feedforward_layernorm.weight": "blk.{bid}.post_ffw_norm.weight",
}
NAMES = {
    "phi3": {  # fused as llama.cpp writes Phi-3: qkv_proj -> attn_qkv, gate_up_proj -> ffn_up (2 * n_ff rows)
        "model.embed_tokens.weight": "token_embd.weight",
        "model.layers.{bid}.input_layernorm.weight": "blk.{bid}.attn_norm.weight",
        "model.layers.{bid}.self_attn.qkv_proj.weight": "blk.{bid}.attn_qkv.weight",
        "model.layers.{bid}.self_attn.o_proj.weight": "blk.{bid}.attn_output.weight",
        "model.layers.{bid}.post_attention_layernorm.weight": "blk.{bid}.ffn_norm.weight",
        "model.layers.{bid}.mlp.gate_up_proj.weight": "blk.{bid}.ffn_up.weight",
        "model.layers.{bid}.mlp.down_proj.weight": "blk.{bid}.ffn_down.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    },
    "llama": {**_LLAMA_LIKE, "model.layers.{bid}.post_attention_layernorm.weight": "blk.{bid}.ffn_norm.weight"},
    "smollm3": {**_LLAMA_LIKE, "model.layers.{bid}.post_attention_layernorm.weight": "blk.{bid}.ffn_norm.weight"},
    "gemma": {**_LLAMA_LIKE, "model.layers.{bid}.post_attention_layernorm.weight": "blk.{bid}.ffn_norm.weight"},
    "gemma2": {**_LLAMA_LIKE, **_GEMMA2_NORMS},
    "gemma3": {
        **_LLAMA_LIKE,
        **_GEMMA2_NORMS,
        "model.layers.{bid}.self_attn.q_norm.weight": "blk.{bid}.attn_q_norm.weight",
        "model.layers.{bid}.self_attn.k_norm.weight": "blk.{bid}.attn_k_norm.weight",
    },
    "stablelm": {
        **_LLAMA_LIKE,
        **{f"model.layers.{{bid}}.self_attn.{p}_proj.bias": f"blk.{{bid}}.attn_{p}.bias" for p in "qkv"},
        "model.layers.{bid}.input_layernorm.bias": "blk.{bid}.attn_norm.bias",
        "model.layers.{bid}.post_attention_layernorm.weight": "blk.{bid}.ffn_norm.weight",
        "model.layers.{bid}.post_attention_layernorm.bias": "blk.{bid}.ffn_norm.bias",
        "model.norm.bias": "output_norm.bias",
    },
    "qwen2": {
        **_LLAMA_LIKE,
        **{f"model.layers.{{bid}}.self_attn.{p}_proj.bias": f"blk.{{bid}}.attn_{p}.bias" for p in "qkv"},
        "model.layers.{bid}.post_attention_layernorm.weight": "blk.{bid}.ffn_norm.weight",
    },
    "qwen3": {
        **_LLAMA_LIKE,
        "model.layers.{bid}.self_attn.q_norm.weight": "blk.{bid}.attn_q_norm.weight",
        "model.layers.{bid}.self_attn.k_norm.weight": "blk.{bid}.attn_k_norm.weight",
        "model.layers.{bid}.post_attention_layernorm.weight": "blk.{bid}.ffn_norm.weight",
    },
    "phi2": {
        "model.embed_tokens.weight": "token_embd.weight",
        **{f"model.layers.{{bid}}.self_attn.{p}_proj.{w}": f"blk.{{bid}}.attn_{p}.{w}" for p in "qkv" for w in ("weight", "bias")},
        **{f"model.layers.{{bid}}.self_attn.dense.{w}": f"blk.{{bid}}.attn_output.{w}" for w in ("weight", "bias")},
        **{f"model.layers.{{bid}}.mlp.fc1.{w}": f"blk.{{bid}}.ffn_up.{w}" for w in ("weight", "bias")},
        **{f"model.layers.{{bid}}.mlp.fc2.{w}": f"blk.{{bid}}.ffn_down.{w}" for w in ("weight", "bias")},
        **{f"model.layers.{{bid}}.input_layernorm.{w}": f"blk.{{bid}}.attn_norm.{w}" for w in ("weight", "bias")},
        **{f"model.final_layernorm.{w}": f"output_norm.{w}" for w in ("weight", "bias")},
        **{f"lm_head.{w}": f"output.{w}" for w in ("weight", "bias")},
    },
    "falcon": {
        "transformer.word_embeddings.weight": "token_embd.weight",
        **{
            f"transformer.h.{{bid}}.{hf}.{w}": f"blk.{{bid}}.{g}.{w}"
            for hf, g in (
                ("input_layernorm", "attn_norm"),
                ("self_attention.query_key_value", "attn_qkv"),
                ("self_attention.dense", "attn_output"),
                ("post_attention_layernorm", "ffn_norm"),
                ("mlp.dense_h_to_4h", "ffn_up"),
                ("mlp.dense_4h_to_h", "ffn_down"),
            )
            for w in ("weight", "bias")
        },
        **{f"transformer.ln_f.{w}": f"output_norm.{w}" for w in ("weight", "bias")},
    },
    "gpt2": {
        "transformer.wte.weight": "token_embd.weight",
        "transformer.wpe.weight": "position_embd.weight",
        **{
            f"transformer.h.{{bid}}.{hf}.{w}": f"blk.{{bid}}.{g}.{w}"
            for hf, g in (("ln_1", "attn_norm"), ("attn.c_attn", "attn_qkv"), ("attn.c_proj", "attn_output"), ("ln_2", "ffn_norm"), ("mlp.c_fc", "ffn_up"), ("mlp.c_proj", "ffn_down"))
            for w in ("weight", "bias")
        },
        **{f"transformer.ln_f.{w}": f"output_norm.{w}" for w in ("weight", "bias")},
    },
}
_CONV1D = ("attn_qkv.weight", "attn_output.weight", "ffn_up.weight", "ffn_down.weight")


def hf_to_gguf_names(arch: str, n_layer: int) -> dict[str, str]:
    out = {}
    for hf, g in NAMES[arch].items():
        for bid in range(n_layer) if "{bid}" in hf else [None]:
            out[hf.format(bid=bid)] = g.format(bid=bid)
    return out


def expected_gguf_tensor(arch: str, gguf_name: str, w: np.ndarray, cfg) -> np.ndarray:
    """The HF weight in llama.cpp's layout, written from the layout definitions (not wgllm.arch)."""
    if arch.startswith("gemma") and gguf_name.endswith("norm.weight"):
        return w + 1.0  # HF multiplies by (1 + w)
    if arch == "gpt2" and gguf_name.endswith(_CONV1D):
        return w.T  # Conv1D stores (in, out)
    if arch in ("llama", "smollm3") and gguf_name.endswith(("attn_q.weight", "attn_k.weight")):
        n_head = cfg.num_attention_heads if "attn_q" in gguf_name else cfg.num_key_value_heads
        d = w.shape[0] // n_head
        out = np.empty_like(w)
        for h in range(n_head):  # GGUF rows (2i, 2i+1) of a head = HF rows (i, i + d/2): pairs instead of halves
            for i in range(d // 2):
                out[h * d + 2 * i] = w[h * d + i]
                out[h * d + 2 * i + 1] = w[h * d + d // 2 + i]
        return out
    if arch == "falcon" and "attn_qkv" in gguf_name:
        n_head, d = cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads
        out = np.empty_like(w)
        for part in range(3):  # HF: [q_h, k_h, v_h] per head h; GGUF: all q, all k, all v
            for h in range(n_head):
                out[(part * n_head + h) * d : (part * n_head + h + 1) * d] = w[(h * 3 + part) * d : (h * 3 + part + 1) * d]
        return out
    return w


def read(path: Path) -> tuple[dict, dict]:
    """(metadata key -> value, tensor name -> (type, numpy shape, raw bytes)) via gguf-py's reader."""
    r = gguf.GGUFReader(path)
    meta = {}
    for f in r.fields.values():
        if f.types and f.types[0] == gguf.GGUFValueType.ARRAY:
            continue
        meta[f.name] = f.contents()
    tensors = {t.name: (T(t.tensor_type), tuple(int(x) for x in reversed(t.shape)), np.array(t.data)) for t in r.tensors}
    return meta, tensors


def as_f32(ggml_type: T, data: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return dequantize(data.view(np.uint8) if ggml_type not in (T.F32, T.F16) else data, ggml_type).reshape(shape).astype(np.float32)


def convert(folder, out: Path, bits: int | tuple[int, int, int] = 32, **kw) -> Path:
    a, f, e = (bits, bits, bits) if isinstance(bits, int) else bits
    cfg = ConversionConfig(str(folder), kw.pop("ckpt_format", "safetensors"), output_file=str(out), attention_quant_bits=a, feedforward_quant_bits=f, embedding_quant_bits=e, **kw)
    return convert_checkpoint(cfg)


def hf_params(model) -> dict[str, np.ndarray]:
    return {n: p.detach().numpy().astype(np.float32) for n, p in model.named_parameters()}


def expected_metadata(arch: str, c) -> dict:
    """llama.cpp's hyperparameter keys, from transformers' config object."""
    if arch == "gpt2":
        m = dict(context_length=c.n_positions, embedding_length=c.n_embd, block_count=c.n_layer, feed_forward_length=4 * c.n_embd)
        m.update({"attention.head_count": c.n_head, "attention.head_count_kv": c.n_head, "attention.layer_norm_epsilon": c.layer_norm_epsilon})
        return m
    m = dict(context_length=c.max_position_embeddings, embedding_length=c.hidden_size, block_count=c.num_hidden_layers)
    m["feed_forward_length"] = c.ffn_hidden_size if arch == "falcon" else c.intermediate_size
    m["attention.head_count"] = c.num_attention_heads
    m["attention.head_count_kv"] = c.num_kv_heads if arch == "falcon" else c.num_key_value_heads
    if arch in ("llama", "gemma", "gemma2", "gemma3", "qwen2", "qwen3", "phi3", "smollm3"):
        m["attention.layer_norm_rms_epsilon"] = c.rms_norm_eps
    else:
        m["attention.layer_norm_epsilon"] = c.layer_norm_epsilon if arch == "falcon" else c.layer_norm_eps
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    rope = c.rope_parameters.get("full_attention", c.rope_parameters)
    if arch in ("llama", "gemma", "gemma2", "gemma3", "qwen2", "qwen3", "smollm3"):
        m["rope.dimension_count"] = head_dim
    elif arch in ("phi2", "stablelm", "phi3"):
        m["rope.dimension_count"] = int(rope["partial_rotary_factor"] * head_dim)
    if arch != "falcon":
        m["rope.freq_base"] = rope["rope_theta"]
    if arch.startswith("gemma") or arch == "qwen3":  # Qwen3's head_dim is 32, not 64/4
        m["attention.key_length"] = m["attention.value_length"] = head_dim
    if arch in ("gemma2", "gemma3"):
        m["attention.sliding_window"] = c.sliding_window
    if arch == "gemma2":
        m["attn_logit_softcapping"] = c.attn_logit_softcapping
        m["final_logit_softcapping"] = c.final_logit_softcapping
    if arch == "gemma3":
        m["rope.scaling.type"] = "linear"
        m["rope.scaling.factor"] = rope["factor"]
    if arch == "falcon":
        m["attention.max_alibi_bias"] = 8.0
    if arch == "phi3":  # llama.cpp writes 0 where the config has no window (Phi-4-mini)
        m["attention.sliding_window"] = c.sliding_window or 0
    if arch == "stablelm":
        m["use_parallel_residual"] = False
    return m


@pytest.mark.parametrize("arch", ARCHS)
def test_f32_names_keys_and_values_follow_llama_cpp(arch, tmp_path):
    tm = tiny_model(arch)
    c = tm.model.config
    meta, tensors = read(convert(tm.folder, tmp_path / "m.gguf", 32))

    assert meta["general.architecture"] == arch
    assert meta["general.name"] == tm.folder.name
    assert meta["general.file_type"] == gguf.LlamaFileType.ALL_F32
    assert meta["general.quantization_version"] == gguf.GGML_QUANT_VERSION
    for key, want in expected_metadata(arch, c).items():
        got = meta.get(f"{arch}.{key}")
        assert got == pytest.approx(want, rel=1e-7) if isinstance(want, float) else got == want, (key, got, want)
    assert meta["tokenizer.ggml.model"] in ("llama", "gpt2")

    # every name is one llama.cpp knows for this architecture; Falcon-RW's post-attention norm has no
    # slot in llama.cpp's falcon list (its graph has none) and is stored under the generic ffn_norm
    known = {gguf.TENSOR_NAMES[t].format(bid=b) for t in gguf.MODEL_TENSORS[gguf.MODEL_ARCH[arch.upper()]] for b in range(c.num_hidden_layers if arch != "gpt2" else c.n_layer)}
    if arch == "falcon":
        known |= {f"blk.{b}.ffn_norm" for b in range(c.num_hidden_layers)}
    assert {n.rsplit(".", 1)[0] for n in tensors} <= known

    params = hf_params(tm.model)
    n_layer = c.n_layer if arch == "gpt2" else c.num_hidden_layers
    mapping = hf_to_gguf_names(arch, n_layer)
    tied = "lm_head.weight" not in params  # transformers drops a tied lm_head from named_parameters
    if tied:
        assert "output.weight" not in tensors
    assert set(params) == {hf for hf in mapping if hf in params}
    assert set(tensors) == {mapping[hf] for hf in params}
    for hf, w in params.items():
        name = mapping[hf]
        ggml_type, shape, data = tensors[name]
        assert ggml_type == T.F32, name
        np.testing.assert_array_equal(as_f32(ggml_type, data, shape), expected_gguf_tensor(arch, name, w, c), err_msg=name)


@pytest.mark.parametrize("arch", ["llama", "gemma3", "falcon", "gpt2", "stablelm"])
@pytest.mark.parametrize("bits", [8, 4])
def test_quantised_tensors_match_gguf_py_and_the_quant_bound(arch, bits, tmp_path):
    tm = tiny_model(arch)
    c = tm.model.config
    meta, tensors = read(convert(tm.folder, tmp_path / "m.gguf", bits))
    qtype = QTYPE[bits]
    assert meta["general.file_type"] == {8: gguf.LlamaFileType.MOSTLY_Q8_0, 4: gguf.LlamaFileType.MOSTLY_Q4_0}[bits]
    n_layer = c.n_layer if arch == "gpt2" else c.num_hidden_layers
    mapping = hf_to_gguf_names(arch, n_layer)
    saw_f16_fallback = False
    for hf, w in hf_params(tm.model).items():
        name = mapping[hf]
        want = np.ascontiguousarray(expected_gguf_tensor(arch, name, w, c), dtype=np.float32)
        ggml_type, shape, data = tensors[name]
        if want.ndim == 1:
            assert ggml_type == T.F32, name
            continue
        if want.shape[-1] % 32:
            assert ggml_type == T.F16, name  # rows that do not fill Q blocks
            np.testing.assert_array_equal(as_f32(ggml_type, data, shape), want.astype(np.float16).astype(np.float32))
            saw_f16_fallback = True
            continue
        assert ggml_type == qtype, name
        np.testing.assert_array_equal(data.view(np.uint8).reshape(-1), quantize(want, qtype).reshape(-1), err_msg=name)
        # per 32-weight block: Q8_0 rounds to d/2 with d = amax/127; Q4_0 to d = amax/8 (its top value
        # clamps, costing up to a whole step); the f16 scale adds |q| * d * 2^-11 = amax * 2^-11
        blocks = want.reshape(-1, 32)
        amax = np.abs(blocks).max(axis=1, keepdims=True)
        bound = amax * ((0.5 / 127 if bits == 8 else 1 / 8) + 2.0**-11) + 1e-7
        err = np.abs(as_f32(ggml_type, data, shape).reshape(-1, 32) - blocks)
        assert np.all(err <= bound), (name, float((err - bound).max()))
    assert saw_f16_fallback == (arch == "stablelm")  # its ffn_down rows are 80 long


def test_quant_bits_apply_per_group(tmp_path):
    tm = tiny_model("phi2")
    meta, tensors = read(convert(tm.folder, tmp_path / "m.gguf", (4, 8, 16)))  # attention, feed-forward, embedding
    assert tensors["blk.0.attn_q.weight"][0] == T.Q4_0
    assert tensors["blk.1.attn_output.weight"][0] == T.Q4_0
    assert tensors["blk.0.ffn_up.weight"][0] == T.Q8_0
    assert tensors["blk.1.ffn_down.weight"][0] == T.Q8_0
    assert tensors["token_embd.weight"][0] == T.F16
    assert tensors["output.weight"][0] == T.F16
    assert tensors["output.bias"][0] == T.F32
    assert tensors["blk.0.attn_norm.weight"][0] == T.F32


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_sharded_and_pytorch_checkpoints_give_the_same_file(arch, tmp_path):
    tm = tiny_model(arch)
    reference = convert(tm.folder, tmp_path / "single.gguf", 8).read_bytes()
    name = tm.folder.name  # general.name is the folder's name: keep it equal

    sharded = tmp_path / "sharded" / name
    tm.model.save_pretrained(sharded, max_shard_size="40KB")
    copy_tokenizer(tm.folder, sharded)
    shards = sorted(sharded.glob("model-*.safetensors"))
    assert len(shards) > 2 and (sharded / "model.safetensors.index.json").is_file()
    assert convert(sharded, tmp_path / "sharded.gguf", 8).read_bytes() == reference
    assert convert(str(sharded / "model-*.safetensors"), tmp_path / "glob.gguf", 8).read_bytes() == reference

    bin_dir = tmp_path / "bin" / name
    bin_dir.mkdir(parents=True)
    shutil.copy(tm.folder / "config.json", bin_dir / "config.json")
    copy_tokenizer(tm.folder, bin_dir)
    torch.save(tm.model.state_dict(), bin_dir / "pytorch_model.bin")  # holds the tied lm_head too
    assert convert(bin_dir, tmp_path / "bin.gguf", 8, ckpt_format="pytorch").read_bytes() == reference
    assert convert(bin_dir / "pytorch_model.bin", tmp_path / "bin2.gguf", 8, ckpt_format="pytorch").read_bytes() == reference


def test_model_type_and_mediapipe_spellings(tmp_path):
    tm = tiny_model("gemma2")
    out = tmp_path / "m.gguf"
    cfg = ConversionConfig(str(tm.folder), "safetensors", model_type="GEMMA2_2B", output_tflite_file=str(out))
    assert cfg.output_file == str(out)
    assert convert_checkpoint(cfg) == out and out.is_file()
    default = ConversionConfig(str(tm.folder), "safetensors", output_dir=str(tmp_path / "d"))
    assert convert_checkpoint(default) == tmp_path / "d" / "model.gguf"
    with pytest.raises(ConversionError, match="model_type GEMMA_2B is a gemma model.*describes gemma2"):
        convert_checkpoint(ConversionConfig(str(tm.folder), "safetensors", model_type="GEMMA_2B", output_dir=str(tmp_path)))


# -- errors -----------------------------------------------------------------------------------------


def _copy(arch: str, dst: Path, config_edit=None, tensors_edit=None) -> Path:
    src = tiny_model(arch).folder
    shutil.copytree(src, dst)
    if config_edit is not None:
        data = json.loads((dst / "config.json").read_text())
        config_edit(data)
        (dst / "config.json").write_text(json.dumps(data))
    if tensors_edit is not None:
        state = load_file(dst / "model.safetensors")
        tensors_edit(state)
        save_file(state, dst / "model.safetensors")
    return dst


def test_failed_conversion_leaves_no_file(tmp_path, monkeypatch):
    folder = _copy("llama", tmp_path / "m", tensors_edit=lambda s: s.pop("model.layers.1.self_attn.k_proj.weight"))
    out = tmp_path / "out" / "model.gguf"
    with pytest.raises(ConversionError, match=r"missing tensor model\.layers\.1\.self_attn\.k_proj\.weight \(expected in .*model\.safetensors\)"):
        convert(folder, out)
    assert not out.exists()
    assert not out.parent.exists() or not list(out.parent.iterdir())

    # a failure while tensors are being written: the old file stays, no partial file is left
    out.parent.mkdir(exist_ok=True)
    out.write_bytes(b"previous")
    import wgllm.convert as conv

    real_encode, calls = conv._encode, []

    def failing_encode(x, t):
        calls.append(t)
        if len(calls) == 5:
            raise OSError("disk full")
        return real_encode(x, t)

    monkeypatch.setattr(conv, "_encode", failing_encode)
    with pytest.raises(OSError, match="disk full"):
        convert(tiny_model("llama").folder, out)
    assert len(calls) == 5
    assert out.read_bytes() == b"previous"
    assert [p.name for p in out.parent.iterdir()] == ["model.gguf"]


def _bad_rope(d):
    d["rope_parameters"] = {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}


def _gemma3_local_base(d):
    d["rope_parameters"]["sliding_attention"]["rope_theta"] = 20000.0


def _gemma3_pattern(d):
    d["layer_types"] = ["sliding_attention", "full_attention"] * 3 + ["sliding_attention"]


@pytest.mark.parametrize(
    "arch, edit, message",
    [
        ("llama", _bad_rope, r"rope scaling type 'dynamic' is not supported"),
        ("llama", lambda d: d.update(rope_scaling={"rope_type": "yarn", "factor": 4.0}, rope_parameters=None), r"rope scaling type 'yarn'"),
        ("stablelm", lambda d: d.update(use_parallel_residual=True), r"use_parallel_residual = True is not supported"),
        ("gemma3", _gemma3_local_base, r"sliding-layer RoPE \(base 20000.0.*hard-codes"),
        ("gemma3", _gemma3_pattern, r"layer_types .* is not supported; gemma3 needs 5 sliding layers then 1 global"),
        ("gemma2", lambda d: d.update(query_pre_attn_scalar=24), r"query_pre_attn_scalar = 24 with head_dim 16 is not supported"),
        ("gemma3", lambda d: d.update(query_pre_attn_scalar=32), r"query_pre_attn_scalar = 32"),
        ("gemma3", lambda d: d.update(final_logit_softcapping=30.0), r"final_logit_softcapping = 30.0 is not supported"),
        ("falcon", lambda d: d.update(parallel_attn=True), r"parallel_attn = True is not supported; wgllm converts the Falcon-RW layout only"),
        ("falcon", lambda d: d.update(alibi=False), r"alibi = False"),
        ("phi2", lambda d: d.update(qk_layernorm=True), r"qk_layernorm = True"),
        ("gpt2", lambda d: d.update(activation_function="relu"), r"activation_function = 'relu'"),
        ("qwen2", lambda d: d.update(use_sliding_window=True), r"use_sliding_window = True is not supported"),
        ("qwen2", lambda d: d.update(rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e6}), r"rope scaling type 'yarn'"),
        ("qwen3", lambda d: d.update(attention_bias=True), r"attention_bias = True is not supported"),
        ("qwen3", lambda d: d.update(layer_types=["sliding_attention", "full_attention"]), r"layer_types .* is not supported; wgllm runs qwen3 with full attention"),
        ("llama", lambda d: d.update(model_type="bert", architectures=["BertModel"]), r"unsupported architecture \(model_type 'bert'.*supported: llama \(LlamaForCausalLM\), gemma"),
        ("llama", lambda d: d.pop("hidden_size"), r"config.json: missing config field 'hidden_size'"),
    ],
)
def test_unsupported_configs_are_refused(arch, edit, message, tmp_path):
    folder = _copy(arch, tmp_path / "m", config_edit=edit)
    with pytest.raises(ConversionError, match=message):
        convert(folder, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


def test_checkpoint_errors(tmp_path):
    with pytest.raises(ConversionError, match=r"the pattern '.*nowhere-\*\.safetensors' matches no files"):
        convert(str(tmp_path / "nowhere-*.safetensors"), tmp_path / "o.gguf")

    no_config = tmp_path / "no_config"
    no_config.mkdir()
    shutil.copy(tiny_model("gpt2").folder / "model.safetensors", no_config)
    with pytest.raises(ConversionError, match=r"no_config/config.json: missing config.json"):
        convert(no_config / "model.safetensors", tmp_path / "o.gguf")

    extra = _copy("gpt2", tmp_path / "extra", tensors_edit=lambda s: s.update({"transformer.h.0.attn.rotary.weight": torch.zeros(4)}))
    with pytest.raises(ConversionError, match=r"unexpected tensor transformer\.h\.0\.attn\.rotary\.weight in .*extra/model.safetensors"):
        convert(extra, tmp_path / "o.gguf")

    def wrong(s):
        s["transformer.h.1.mlp.c_fc.weight"] = torch.zeros(64, 128)

    shape = _copy("gpt2", tmp_path / "shape", tensors_edit=wrong)
    with pytest.raises(ConversionError, match=r"tensor transformer\.h\.1\.mlp\.c_fc\.weight has shape \(64, 128\), expected \(64, 256\)"):
        convert(shape, tmp_path / "o.gguf")

    no_vocab = _copy("falcon", tmp_path / "no_vocab")
    (no_vocab / "tokenizer.json").unlink()
    with pytest.raises(ConversionError, match=r"no tokenizer.model or tokenizer.json beside the checkpoint; give vocab_model_file"):
        convert(no_vocab, tmp_path / "o.gguf")
    # an explicit vocab_model_file is used instead
    assert convert(no_vocab, tmp_path / "o.gguf", vocab_model_file=str(tiny_model("falcon").folder)).is_file()

    with pytest.raises(ConversionError, match=r"not a pytorch checkpoint"):
        convert(tiny_model("gpt2").folder / "model.safetensors", tmp_path / "o.gguf", ckpt_format="pytorch")
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob(".*.partial"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(block_size=64), r"block_size = 64 is not supported: GGUF's Q8_0/Q4_0 blocks hold 32 weights"),
        (dict(lora_ckpt="adapter.safetensors", lora_rank=4), r"lora_ckpt needs lora_output_file"),
        (dict(attention_quant_bits=5), r"attention_quant_bits = 5 is not supported; expected one of \[4, 8, 16, 32\]"),
        (dict(model_type="GEMMA_9B"), r"unknown model_type 'GEMMA_9B'"),
        (dict(output_file="a.gguf", output_tflite_file="b.gguf"), r"output_file = 'a.gguf' and output_tflite_file = 'b.gguf' disagree"),
        (dict(ckpt_format="gguf"), r"ckpt_format 'gguf' is not supported"),
        (dict(output_file=None), r"give output_file \(or output_tflite_file\) or output_dir"),
    ],
)
def test_bad_conversion_options(kwargs, message):
    args = dict(input_ckpt="ckpt", ckpt_format="safetensors", output_file="m.gguf")
    args.update(kwargs)
    with pytest.raises(ConversionError, match=message):
        ConversionConfig(**args)
