"""smollm3 (SmolLM3ForCausalLM): llama's layers (and llama.cpp's Q/K row permutation), with RoPE skipped
on every fourth layer (NoPE: layers 3, 7, 11, ...).

llama.cpp stores no key for the NoPE layers: its smollm3 graph hard-codes n_no_rope_layer_step = 4,
the pattern transformers builds from no_rope_layer_interval 4. A config whose no_rope_layers list
(1 = RoPE, 0 = NoPE) is not that pattern, sliding-window attention, RoPE scaling, or biases are refused
by name: a GGUF file could not say what they mean.
"""

from __future__ import annotations

from wgllm.arch import llama
from wgllm.arch.base import ArchSpec, Dims, HFConfig, check_activation, common_metadata, read_dims

NOPE_EVERY = 4  # llama.cpp's n_no_rope_layer_step for smollm3


def read_config(cfg: HFConfig) -> Dims:
    check_activation(cfg, ("hidden_act",), ("silu",))
    cfg.expect("attention_bias", (False,), False)
    cfg.expect("mlp_bias", (False,), False)
    cfg.expect("use_sliding_window", (False,), False)
    cfg.rope_plain()
    d = read_dims(cfg, n_ctx=int(cfg.require("max_position_embeddings", int)), norm_eps_keys=("rms_norm_eps",))
    if d.head_dim * d.n_head != d.n_embd:  # llama.cpp's smollm3 graph rotates n_embd / n_head dims
        raise cfg.unsupported(f"head_dim = {d.head_dim}", f"smollm3 has head_dim = hidden_size / num_attention_heads = {d.n_embd // d.n_head}")
    want = [int((i + 1) % NOPE_EVERY != 0) for i in range(d.n_layer)]
    layers = cfg.get("no_rope_layers")
    if layers is None and cfg.get("no_rope_layer_interval", NOPE_EVERY) != NOPE_EVERY:
        raise cfg.unsupported(f"no_rope_layer_interval = {cfg.get('no_rope_layer_interval')!r}", f"llama.cpp's smollm3 skips RoPE on every {NOPE_EVERY}th layer")
    if layers is not None and [int(x) for x in layers[: d.n_layer]] != want:
        raise cfg.unsupported(f"no_rope_layers {layers}", f"llama.cpp's smollm3 skips RoPE on every {NOPE_EVERY}th layer exactly ({want})")
    return d


def metadata(cfg: HFConfig, d: Dims) -> dict:
    return common_metadata("smollm3", d, rms=True, n_rot=d.head_dim, rope_base=cfg.rope()["theta"])


SPEC = ArchSpec(
    arch="smollm3",
    hf_model_types=("smollm3",),
    hf_architectures=("SmolLM3ForCausalLM",),
    read_config=read_config,
    metadata=metadata,
    weight_map=llama.weight_map,
    transform=llama.transform,
    buffers=("rotary_emb.inv_freq",),
)
