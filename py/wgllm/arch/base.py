"""What every architecture module provides to the converter: a config reader, a weight map, transforms.

An architecture module reads Hugging Face's config.json into `Dims` (refusing options wgllm does
not implement), lists the GGUF metadata llama.cpp expects, and gives its WEIGHT_MAP: HF tensor
name -> (llama.cpp tensor name, quantisation group, HF shape). Names use `{bid}` for the layer.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from gguf import Keys

from wgllm.errors import ConversionError


class Group(enum.Enum):
    """Which quantisation setting applies to a tensor (ConversionConfig's *_quant_bits)."""

    ATTENTION = "attention"
    FEEDFORWARD = "feedforward"
    EMBEDDING = "embedding"
    FLOAT = "float"  # norms, biases, every 1-D tensor: always F32


@dataclass(frozen=True)
class Rule:
    gguf: str | None  # None: a known tensor that is not stored (lm_head tied to the embeddings)
    group: Group
    shape: tuple[int, ...]  # as the checkpoint stores it
    transpose: bool = False  # stored (in, out) in the checkpoint (GPT-2's Conv1D): GGUF wants (out, in)


# A tensor that is stored nowhere: tied output weights the checkpoint may still carry.
TIED = None


class HFConfig:
    """config.json with errors that name the file and key."""

    def __init__(self, data: dict[str, Any], path: Path):
        self.data, self.path = data, path

    def get(self, key: str, default: Any = None) -> Any:
        value = self.data.get(key)
        return default if value is None else value

    def require(self, key: str, kind: type | tuple[type, ...] = (int, float)) -> Any:
        if self.data.get(key) is None:
            raise ConversionError(f"{self.path}: missing config field {key!r}")
        value = self.data[key]
        if not isinstance(value, kind) or isinstance(value, bool) and kind in ((int, float), int):
            raise ConversionError(f"{self.path}: config field {key!r} is {value!r}, expected {kind}")
        return value

    def first(self, *keys: str) -> Any:
        """The first of several spellings that is present (configs renamed fields over time)."""
        for key in keys:
            if self.data.get(key) is not None:
                return self.require(key)
        raise ConversionError(f"{self.path}: missing config field, expected one of {', '.join(keys)}")

    def unsupported(self, what: str, hint: str = "") -> ConversionError:
        return ConversionError(f"{self.path}: {what} is not supported" + (f"; {hint}" if hint else ""))

    def expect(self, key: str, allowed: tuple[Any, ...], default: Any = None) -> None:
        """Refuse a config option whose value wgllm does not implement."""
        value = self.get(key, default)
        if value not in allowed:
            raise self.unsupported(f"{key} = {value!r}", f"wgllm implements {' or '.join(map(repr, allowed))}")

    def rope(self, layer_type: str | None = None) -> dict[str, Any]:
        """RoPE settings in one form: theta, type ('default' | 'linear' | ...), factor, partial factor.

        transformers >= 5 writes `rope_parameters` (per layer type for Gemma-3); older configs
        write rope_theta / rope_scaling / partial_rotary_factor at the top level.
        """
        params = self.data.get("rope_parameters")
        if isinstance(params, dict) and layer_type is not None and layer_type in params:
            params = params[layer_type]
        if isinstance(params, dict) and "rope_theta" in params:
            rope_type = params.get("rope_type", params.get("type", "default"))
            return {
                "theta": float(params["rope_theta"]),
                "type": rope_type,
                "factor": params.get("factor"),
                "partial": params.get("partial_rotary_factor", self.get("partial_rotary_factor", 1.0)),
            }
        scaling = self.data.get("rope_scaling") or {}
        rope_type = scaling.get("rope_type", scaling.get("type", "default")) if scaling else "default"
        theta_key = "rope_local_base_freq" if layer_type == "sliding_attention" else "rope_theta"
        default_theta = 10000.0
        return {
            "theta": float(self.get(theta_key, default_theta)),
            "type": "default" if layer_type == "sliding_attention" else rope_type,
            "factor": scaling.get("factor") if layer_type != "sliding_attention" else None,
            "partial": self.get("partial_rotary_factor", 1.0),
        }

    def rope_plain(self) -> dict[str, Any]:
        """RoPE that must be unscaled (the architectures whose llama.cpp graph has no scaling)."""
        rope = self.rope()
        if rope["type"] != "default":
            raise self.unsupported(f"rope scaling type {rope['type']!r}", "wgllm implements unscaled RoPE for this architecture")
        return rope


@dataclass(frozen=True)
class Dims:
    n_vocab: int
    n_ctx: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    norm_eps: float
    tied: bool


def read_dims(cfg: HFConfig, *, n_ctx: int, norm_eps_keys: tuple[str, ...], n_ff: int | None = None) -> Dims:
    """The dimensions that (almost) every config spells the same way."""
    n_embd = int(cfg.require("hidden_size", int))
    n_head = int(cfg.require("num_attention_heads", int))
    n_head_kv = int(cfg.get("num_key_value_heads", n_head))
    head_dim = int(cfg.get("head_dim", n_embd // n_head if n_head else 0))
    if n_head <= 0 or n_head_kv <= 0 or n_head % n_head_kv:
        raise ConversionError(f"{cfg.path}: {n_head} attention heads cannot be shared by {n_head_kv} KV heads")
    return Dims(
        n_vocab=int(cfg.require("vocab_size", int)),
        n_ctx=n_ctx,
        n_embd=n_embd,
        n_layer=int(cfg.require("num_hidden_layers", int)),
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim=head_dim,
        n_ff=int(n_ff if n_ff is not None else cfg.require("intermediate_size", int)),
        norm_eps=float(cfg.first(*norm_eps_keys)),
        tied=bool(cfg.get("tie_word_embeddings", True)),
    )


def check_activation(cfg: HFConfig, keys: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    for key in keys:
        if cfg.get(key) is not None:
            cfg.expect(key, allowed)
            return


def common_metadata(arch: str, d: Dims, *, rms: bool, n_rot: int | None, rope_base: float | None) -> dict[str, Any]:
    """llama.cpp's `{arch}.*` hyperparameters; key/value lengths only where head_dim != n_embd/n_head."""
    m: dict[str, Any] = {
        Keys.LLM.VOCAB_SIZE: d.n_vocab,
        Keys.LLM.CONTEXT_LENGTH: d.n_ctx,
        Keys.LLM.EMBEDDING_LENGTH: d.n_embd,
        Keys.LLM.BLOCK_COUNT: d.n_layer,
        Keys.LLM.FEED_FORWARD_LENGTH: d.n_ff,
        Keys.Attention.HEAD_COUNT: d.n_head,
        Keys.Attention.HEAD_COUNT_KV: d.n_head_kv,
        (Keys.Attention.LAYERNORM_RMS_EPS if rms else Keys.Attention.LAYERNORM_EPS): float(d.norm_eps),
    }
    if n_rot is not None:
        m[Keys.Rope.DIMENSION_COUNT] = n_rot
    if rope_base is not None:
        m[Keys.Rope.FREQ_BASE] = float(rope_base)
    if d.head_dim * d.n_head != d.n_embd:
        m[Keys.Attention.KEY_LENGTH] = d.head_dim
        m[Keys.Attention.VALUE_LENGTH] = d.head_dim
    return {key.format(arch=arch): value for key, value in m.items()}


def partial_rotary_dims(cfg: HFConfig, head_dim: int) -> int:
    """Rotary dimensions per head as transformers computes them: int(partial_rotary_factor * head_dim)."""
    factor = float(cfg.rope()["partial"])
    n_rot = int(factor * head_dim)
    if not 0 < n_rot <= head_dim or n_rot % 2:
        raise ConversionError(f"{cfg.path}: partial_rotary_factor {factor} gives {n_rot} rotary dims of {head_dim}, expected an even number")
    return n_rot


def identity(name: str, x: np.ndarray, d: Dims) -> np.ndarray:
    return x


@dataclass(frozen=True)
class ArchSpec:
    """One architecture: how to recognise its config, read it, map and transform its tensors."""

    arch: str  # llama.cpp's name (gguf.MODEL_ARCH_NAMES)
    hf_model_types: tuple[str, ...]
    hf_architectures: tuple[str, ...]
    read_config: Callable[[HFConfig], Dims]
    metadata: Callable[[HFConfig, Dims], dict[str, Any]]
    weight_map: Callable[[HFConfig, Dims], dict[str, Rule]]
    transform: Callable[[str, np.ndarray, Dims], np.ndarray] = identity  # by GGUF name, on float32
    # Checkpoint keys that are buffers, not weights (attention masks, rotary tables), by suffix.
    buffers: tuple[str, ...] = ()
    rename: Callable[[str], str] = field(default=lambda name: name)  # normalise older key spellings
    # Tensors the checkpoint does not hold but llama.cpp's file does (llama-3's rope_freqs), by GGUF name, float32.
    extra_tensors: Callable[[HFConfig, Dims], dict[str, np.ndarray]] = field(default=lambda cfg, d: {})


def expand(weight_map: dict[str, Rule], n_layer: int) -> dict[str, Rule]:
    """Per-layer names ({bid}) written out for every layer, in map order: globals, blocks, then the rest."""
    head, per_layer, tail = {}, {}, {}
    seen_block = False
    for hf, rule in weight_map.items():
        if "{bid}" in hf:
            per_layer[hf] = rule
            seen_block = True
        elif seen_block:
            tail[hf] = rule
        else:
            head[hf] = rule
    out = dict(head)
    for bid in range(n_layer):
        for hf, rule in per_layer.items():
            gguf = rule.gguf.format(bid=bid) if rule.gguf else None
            out[hf.format(bid=bid)] = Rule(gguf, rule.group, rule.shape, rule.transpose)
    out.update(tail)
    return out


def permute_rope_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF's rotate-half Q/K rows -> llama.cpp's interleaved pairs (convert_hf_to_gguf's LlamaModel.permute)."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

