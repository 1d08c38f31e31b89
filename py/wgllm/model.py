"""A GGUF model opened for inference: hyperparameters (ModelConfig) and weights by llama.cpp name.

ModelConfig is the one place where GGUF metadata becomes the flags every backend runs on (the numpy
reference, the wgpu engine and, mirrored in TypeScript, the browser bundle). Each architecture's
quirks are spelled out in `_ARCH_RECIPES` so that the forward passes stay generic.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wgllm.errors import ModelFormatError
from wgllm.gguf_io import GGUFFile


@dataclass(frozen=True)
class ArchRecipe:
    norm: str  # "rms" | "layer"
    ffn: str  # "swiglu" | "geglu" (gelu-tanh gate) | "gelu" (tanh) | "gelu_erf"
    rope: str  # "norm" (adjacent pairs, llama.cpp's permuted Q/K) | "neox" (halves) | "none"
    parallel: bool = False  # attention and MLP read the same normed input (Phi-2)
    post_norms: bool = False  # Gemma-2/3: norms after attention and after the MLP
    qk_norm: bool = False  # Gemma-3, Qwen3: RMSNorm over each head of Q and K
    embed_scale: bool = False  # Gemma: embeddings times sqrt(n_embd)
    learned_pos: bool = False  # GPT-2: position_embd added to the token embeddings
    swa_pattern: int = 0  # every swa_pattern-th layer is global, the others sliding (0: none)
    alibi: bool = False  # Falcon-RW: ALiBi instead of RoPE
    qkv_bias: bool = False  # Qwen2: Q, K and V biases on every layer (required, as llama.cpp requires them)
    fused_gate_up: bool = False  # Phi-3: ffn_up holds the gate's n_ff rows, then up's (split into two views at load)
    swa_all: bool = False  # Phi-3, llama (Mistral): every layer slides when the file sets attention.sliding_window
    nope_every: int = 0  # SmolLM3: every nope_every-th layer skips RoPE (llama.cpp hard-codes 4; no GGUF key)


_ARCH_RECIPES: dict[str, ArchRecipe] = {
    "llama": ArchRecipe(norm="rms", ffn="swiglu", rope="norm", swa_all=True),  # Mistral-7B v0.1: a window on every layer when set
    "gemma": ArchRecipe(norm="rms", ffn="geglu", rope="neox", embed_scale=True),
    "gemma2": ArchRecipe(norm="rms", ffn="geglu", rope="neox", embed_scale=True, post_norms=True, swa_pattern=2),
    "gemma3": ArchRecipe(
        norm="rms", ffn="geglu", rope="neox", embed_scale=True, post_norms=True, qk_norm=True, swa_pattern=6
    ),
    "phi2": ArchRecipe(norm="layer", ffn="gelu", rope="neox", parallel=True),
    "falcon": ArchRecipe(norm="layer", ffn="gelu_erf", rope="none", alibi=True),
    "stablelm": ArchRecipe(norm="layer", ffn="swiglu", rope="neox"),
    "gpt2": ArchRecipe(norm="layer", ffn="gelu", rope="none", learned_pos=True),
    "qwen2": ArchRecipe(norm="rms", ffn="swiglu", rope="neox", qkv_bias=True),
    "qwen3": ArchRecipe(norm="rms", ffn="swiglu", rope="neox", qk_norm=True),
    "phi3": ArchRecipe(norm="rms", ffn="swiglu", rope="neox", fused_gate_up=True, swa_all=True),
    "smollm3": ArchRecipe(norm="rms", ffn="swiglu", rope="norm", nope_every=4),
}
SUPPORTED_ARCHITECTURES = tuple(_ARCH_RECIPES)
# Architectures llama.cpp runs whose text decoder needs more than a recipe: what is missing, named
# when such a file is refused (web/src/model.ts says the same; docs/gemma4.md has the details).
_NOT_YET_SUPPORTED: dict[str, tuple[str, ...]] = {
    "gemma4": (
        "head size and KV head count per layer (global heads of 512 > the attention kernels' 256)",
        "KV cache shared across layers (attention.shared_kv_layers)",
        "per-layer token embeddings (per_layer_token_embd)",
        "mixture-of-experts FFN (ffn_gate_inp, ffn_gate_up_exps, ffn_down_exps)",
        "FFN width per layer",
    ),
}

# llama.cpp scales Gemma-2/3 queries by 1/sqrt(n_embd/n_head) for the 27B models only (identified
# there by their layer count); every other size uses 1/sqrt(head_dim).
_GEMMA_27B_LAYERS = {"gemma2": 46, "gemma3": 62}
_GEMMA3_LOCAL_ROPE_BASE = 10000.0  # hard-coded in llama.cpp, not stored in GGUF


@dataclass(frozen=True)
class ModelConfig:
    arch: str
    recipe: ArchRecipe
    n_vocab: int
    n_ctx_train: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int  # of Q and K
    head_dim_v: int
    n_ff: int
    norm_eps: float
    n_rot: int  # rotary dimensions per head (0 without RoPE)
    rope_base: float  # global layers
    rope_base_local: float  # sliding-window layers (Gemma-3)
    rope_scale: float  # positions divided by this on global layers (linear scaling)
    attn_scale: float
    attn_softcap: float  # 0: off
    final_softcap: float  # 0: off
    sliding_window: int  # 0: off
    swa_layers: tuple[bool, ...]
    alibi_max_bias: float
    tied_output: bool
    has_output_bias: bool
    rope_freqs: bool  # rope_freqs.weight (llama-3's RoPE scaling): each rotary frequency divided by its factor
    # LongRoPE (Phi-3): rope_factors_long/short.weight, the long ones for a context above rope_ctx_orig
    longrope: bool = False
    rope_ctx_orig: int = 0
    rope_attn_factor: float = 1.0  # rope.scaling.attn_factor: cos and sin multiplied by it (llama.cpp's mscale)

    @property
    def kv_dim(self) -> int:
        return self.n_head_kv * self.head_dim

    def rope_factors_name(self, n_ctx: int) -> str | None:
        """The tensor dividing the rotary frequencies for a context of n_ctx tokens (llama.cpp's
        get_rope_factors: LongRoPE's long factors when n_ctx > the original context), or None."""
        if self.rope_freqs:
            return "rope_freqs.weight"
        if self.longrope:
            return "rope_factors_long.weight" if n_ctx > self.rope_ctx_orig else "rope_factors_short.weight"
        return None

    def matrix_shape(self, name: str) -> tuple[int, int] | None:
        """The (rows, row length) a weight matrix of this model must have, by its llama.cpp name (the
        shapes the reference reads it with), or None for a tensor that is not one of them."""
        q, kv, v, e = self.n_head * self.head_dim, self.kv_dim, self.n_head_kv * self.head_dim_v, self.n_embd
        if name in ("token_embd.weight", "output.weight"):
            return (self.n_vocab, e)
        part = name.split(".")[-2] if name.startswith("blk.") and name.endswith(".weight") else None
        shapes = {
            "attn_q": (q, e), "attn_k": (kv, e), "attn_v": (v, e), "attn_qkv": (q + kv + v, e), "attn_output": (e, self.n_head * self.head_dim_v),
            "ffn_up": (self.n_ff, e), "ffn_gate": (self.n_ff, e), "ffn_down": (e, self.n_ff),
        }
        return shapes.get(part)

    def layer_n_rot(self, layer: int) -> int:
        """Rotary dims of `layer`: 0 on SmolLM3's NoPE layers (every nope_every-th: 3, 7, ...)."""
        every = self.recipe.nope_every
        return 0 if every and (layer + 1) % every == 0 else self.n_rot

    def layer_rope(self, layer: int) -> tuple[float, float]:
        """(base, position scale) of the RoPE used by `layer`."""
        if self.arch == "gemma3" and self.swa_layers[layer]:
            return self.rope_base_local, 1.0
        return self.rope_base, self.rope_scale

    @classmethod
    def from_gguf(cls, g: GGUFFile) -> "ModelConfig":
        arch = g.architecture
        if arch in _NOT_YET_SUPPORTED:
            raise ModelFormatError(
                f"{g.path}: the {arch} text decoder is not supported yet; missing: {'; '.join(_NOT_YET_SUPPORTED[arch])} (see docs/{arch}.md)"
            )
        if arch not in _ARCH_RECIPES:
            raise ModelFormatError(
                f"{g.path}: unsupported architecture {arch!r}; supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
            )
        recipe = _ARCH_RECIPES[arch]
        num = (int, float)

        def key(name: str, default=None):
            full = f"{arch}.{name}"
            if default is None:
                return g.require(full, num)
            value = g.get(full, default)
            if not isinstance(value, num):
                raise ModelFormatError(f"{g.path}: metadata key {full} is {value!r}, expected a number")
            return value

        def whole(name: str, default=None) -> int:
            return _whole(g, f"{arch}.{name}", key(name, default))

        n_embd = whole("embedding_length")
        n_layer = whole("block_count")
        if not 1 <= n_layer <= len(g.tensors):  # every layer has tensors of its own
            raise ModelFormatError(f"{g.path}: {arch}.block_count = {n_layer}, expected 1..{len(g.tensors)} (the file's tensor count)")
        n_head = _whole(g, f"{arch}.attention.head_count", _per_layer_constant(g, f"{arch}.attention.head_count", required=True))
        n_head_kv = _whole(g, f"{arch}.attention.head_count_kv", _per_layer_constant(g, f"{arch}.attention.head_count_kv", default=n_head))
        if n_head <= 0 or n_head_kv <= 0 or n_head % n_head_kv:
            raise ModelFormatError(f"{g.path}: {n_head} attention heads cannot be shared by {n_head_kv} KV heads")
        head_dim = whole("attention.key_length", n_embd // n_head)
        head_dim_v = whole("attention.value_length", head_dim)
        n_ff = _whole(g, f"{arch}.feed_forward_length", _per_layer_constant(g, f"{arch}.feed_forward_length", required=True))
        if min(n_embd, head_dim, head_dim_v, n_ff) <= 0:
            raise ModelFormatError(
                f"{g.path}: {arch} sizes embedding {n_embd}, head {head_dim} (values {head_dim_v}), feed-forward {n_ff}: expected positive ones"
            )
        eps_key = "attention.layer_norm_rms_epsilon" if recipe.norm == "rms" else "attention.layer_norm_epsilon"
        norm_eps = float(key(eps_key))
        n_rot = 0 if recipe.rope == "none" else whole("rope.dimension_count", head_dim)
        if n_rot % 2 or n_rot > head_dim:
            raise ModelFormatError(f"{g.path}: {arch}.rope.dimension_count = {n_rot}, expected an even number <= {head_dim}")
        rope_scale = 1.0
        scaling = g.get(f"{arch}.rope.scaling.type")
        if scaling not in (None, "none"):
            if scaling != "linear":
                raise ModelFormatError(f"{g.path}: {arch}.rope.scaling.type = {scaling!r}; only 'linear' is supported")
            rope_scale = float(key("rope.scaling.factor", 1.0))
        head_for_scale = head_dim
        if _GEMMA_27B_LAYERS.get(arch) == n_layer:
            head_for_scale = n_embd // n_head
        window = whole("attention.sliding_window", 0) if recipe.swa_pattern or recipe.swa_all else 0
        swa = tuple(
            bool(window) and (recipe.swa_all or (layer % recipe.swa_pattern) < recipe.swa_pattern - 1) for layer in range(n_layer)
        )
        if recipe.fused_gate_up:
            _split_gate_up(g, arch, n_layer, n_ff)
        for layer in range(n_layer):  # what the recipe needs on every layer, named before any weight is read
            for name, why in _required(recipe):
                if f"blk.{layer}.{name}" not in g.tensors:
                    raise ModelFormatError(f"{g.path}: tensor blk.{layer}.{name} is missing; {arch} has {why} on every layer")
        rope_freqs = "rope_freqs.weight" in g.tensors
        if rope_freqs:
            shape = tuple(g.tensor("rope_freqs.weight").shape)
            if not n_rot or shape != (n_rot // 2,):
                raise ModelFormatError(
                    f"{g.path}: tensor rope_freqs.weight has shape {shape}, expected ({n_rot // 2},) (half of {arch}'s {n_rot} rotary dimensions)"
                )
        longrope = "rope_factors_long.weight" in g.tensors or "rope_factors_short.weight" in g.tensors
        if longrope:
            for name in ("rope_factors_long.weight", "rope_factors_short.weight"):
                shape = tuple(g.tensor(name).shape)
                if not n_rot or shape != (n_rot // 2,):
                    raise ModelFormatError(
                        f"{g.path}: tensor {name} has shape {shape}, expected ({n_rot // 2},) (half of {arch}'s {n_rot} rotary dimensions)"
                    )
        tokens = g.get("tokenizer.ggml.tokens")
        embd = g.tensor("token_embd.weight")
        n_vocab = embd.shape[0]
        if tokens is not None and len(tokens) != n_vocab:
            raise ModelFormatError(
                f"{g.path}: the tokenizer has {len(tokens)} tokens but token_embd.weight has {n_vocab} rows"
            )
        return cls(
            arch=arch,
            recipe=recipe,
            n_vocab=n_vocab,
            n_ctx_train=whole("context_length", 0),
            n_embd=n_embd,
            n_layer=n_layer,
            n_head=n_head,
            n_head_kv=n_head_kv,
            head_dim=head_dim,
            head_dim_v=head_dim_v,
            n_ff=n_ff,
            norm_eps=norm_eps,
            n_rot=n_rot,
            rope_base=float(key("rope.freq_base", 10000.0)),
            rope_base_local=_GEMMA3_LOCAL_ROPE_BASE,
            rope_scale=rope_scale,
            attn_scale=1.0 / math.sqrt(head_for_scale),
            attn_softcap=float(key("attn_logit_softcapping", 0.0)) if arch == "gemma2" else 0.0,
            final_softcap=float(key("final_logit_softcapping", 0.0)) if arch == "gemma2" else 0.0,
            sliding_window=window,
            swa_layers=swa,
            alibi_max_bias=float(key("attention.max_alibi_bias", 8.0)) if recipe.alibi else 0.0,
            tied_output="output.weight" not in g.tensors,
            has_output_bias="output.bias" in g.tensors,
            rope_freqs=rope_freqs,
            longrope=longrope,
            rope_ctx_orig=whole("rope.scaling.original_context_length", whole("context_length", 0)),
            rope_attn_factor=float(key("rope.scaling.attn_factor", 1.0)),
        )


def _split_gate_up(g: GGUFFile, arch: str, n_layer: int, n_ff: int) -> None:
    """Each layer's fused ffn_up (2 * n_ff rows: the gate's, then up's) becomes two views of its bytes,
    ffn_gate and ffn_up of n_ff rows (whole rows are whole quant blocks), so every backend runs the
    SwiGLU of separate tensors. Done once: a file already split is left as it is."""
    from wgllm.gguf_io import TensorInfo

    for layer in range(n_layer):
        gate_name, up_name = f"blk.{layer}.ffn_gate.weight", f"blk.{layer}.ffn_up.weight"
        if gate_name in g.tensors:
            continue
        t = g.tensor(up_name)
        if len(t.shape) != 2 or t.shape[0] != 2 * n_ff:
            raise ModelFormatError(
                f"{g.path}: tensor {up_name} has shape {t.shape}, expected ({2 * n_ff}, n_embd): {arch}'s gate and up rows (2 x feed_forward_length {n_ff})"
            )
        half = t.n_bytes // 2
        shape = (n_ff, t.shape[1])
        g.tensors[gate_name] = TensorInfo(gate_name, t.ggml_type, shape, t.offset, half, t.raw[:half])
        g.tensors[up_name] = TensorInfo(up_name, t.ggml_type, shape, t.offset + half, half, t.raw[half:])


def _required(recipe: ArchRecipe) -> list[tuple[str, str]]:
    """(tensor name within a block, what it is) that `recipe` needs on every layer beyond the common ones."""
    out = []
    if recipe.qkv_bias:
        out += [(f"attn_{p}.bias", "Q, K and V biases") for p in "qkv"]
    if recipe.qk_norm:
        out += [(f"attn_{p}_norm.weight", "an RMSNorm over each head of Q and K") for p in "qk"]
    return out


def _whole(g: GGUFFile, full_key: str, value: int | float) -> int:
    """`value` as an int, refusing a fractional, infinite or NaN number (a corrupt file's)."""
    if isinstance(value, float) and not value.is_integer():
        raise ModelFormatError(f"{g.path}: metadata key {full_key} is {value!r}, expected a whole number")
    return int(value)


def _per_layer_constant(g: GGUFFile, full_key: str, *, required: bool = False, default=None):
    """A hyperparameter that GGUF may store per layer (an array); we need it constant."""
    value = g.get(full_key, default)
    if value is None and required:
        value = g.require(full_key)
    if isinstance(value, np.ndarray):
        if value.size == 0 or np.any(value != value.flat[0]):
            raise ModelFormatError(f"{g.path}: {full_key} varies per layer ({value.tolist()}); wgllm needs one value")
        value = value.flat[0].item()
    if not isinstance(value, (int, float)):
        raise ModelFormatError(f"{g.path}: metadata key {full_key} is {value!r}, expected a number")
    return value


@dataclass
class Model:
    """A loaded GGUF model: config, tokenizer, and weights dequantised to float32 on first use."""

    gguf: GGUFFile
    config: ModelConfig
    tokenizer: "object"
    _cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def path(self) -> Path:
        return self.gguf.path

    def has(self, name: str) -> bool:
        return name in self.gguf.tensors

    def weight(self, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """A float32 tensor by its llama.cpp name, checked against `shape` (numpy order)."""
        if name not in self._cache:
            self._cache[name] = self.gguf.dequantize(name, shape)
        w = self._cache[name]
        if shape is not None and w.shape != tuple(shape):
            raise ModelFormatError(f"{self.path}: tensor {name} has shape {w.shape}, expected {tuple(shape)}")
        return w

    def output_weight(self) -> np.ndarray:
        c = self.config
        name = "token_embd.weight" if c.tied_output else "output.weight"
        return self.weight(name, (c.n_vocab, c.n_embd))


def load_model(path: str | os.PathLike[str]) -> Model:
    """Open a GGUF model: parse and check its header, build its config and tokenizer (no weights read)."""
    from wgllm.tokenizer import Tokenizer

    g = GGUFFile(path)
    config = ModelConfig.from_gguf(g)
    return Model(gguf=g, config=config, tokenizer=Tokenizer.from_gguf(g))
