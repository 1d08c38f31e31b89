"""phi3 (Phi3ForCausalLM: Phi-3-mini, Phi-3.5-mini, Phi-4-mini): llama-shaped (RMSNorm, SwiGLU), NeoX RoPE.

The checkpoint's fused projections stay fused, as llama.cpp's convert_hf_to_gguf writes them:
qkv_proj (Q rows, then K, then V) is attn_qkv and gate_up_proj (the gate's n_ff rows first, then
up's) is ffn_up of 2 * n_ff rows. Phi-4-mini rotates only part of each head
(partial_rotary_factor 0.75). LongRoPE (rope_type "longrope", or its older name "su") becomes
llama.cpp's rope_factors_long.weight and rope_factors_short.weight (n_rot/2 divisors of the rotary
frequencies, chosen by context length against rope.scaling.original_context_length) and
rope.scaling.attn_factor, which multiplies cos and sin: the config's attention_factor, else
sqrt(1 + ln(s) / ln(original)) with s = max_position_embeddings / original (1 when s <= 1), as
transformers and llama.cpp compute it. sliding_window is written as the config has it (0 when
absent, as llama.cpp writes Phi-4-mini's). Other RoPE scaling types are refused by name.
"""

from __future__ import annotations

import math

import numpy as np

from wgllm.arch.base import TIED, ArchSpec, Dims, Group, HFConfig, Rule, check_activation, common_metadata, partial_rotary_dims, read_dims

A, F, E, N = Group.ATTENTION, Group.FEEDFORWARD, Group.EMBEDDING, Group.FLOAT


def _rope_parameters(cfg: HFConfig) -> dict:
    params = cfg.data.get("rope_parameters")
    if isinstance(params, dict) and ("rope_type" in params or "type" in params):
        return params
    return cfg.data.get("rope_scaling") or {}


def _longrope(cfg: HFConfig, d: Dims) -> tuple[np.ndarray, np.ndarray, float, int] | None:
    """(long factors, short factors, attention factor, original context) or None without scaling."""
    params = _rope_parameters(cfg)
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type == "default":
        return None
    if rope_type not in ("longrope", "su"):
        raise cfg.unsupported(f"rope scaling type {rope_type!r}", "wgllm implements LongRoPE ('longrope', 'su') for phi3")
    n_rot = partial_rotary_dims(cfg, d.head_dim)
    factors = []
    for key in ("long_factor", "short_factor"):
        value = params.get(key)
        if not isinstance(value, list) or len(value) != n_rot // 2:
            raise cfg.unsupported(f"rope {key} {value!r}", f"LongRoPE needs a list of {n_rot // 2} numbers (half of {n_rot} rotary dims)")
        factors.append(np.asarray(value, np.float32))
    original = cfg.data.get("original_max_position_embeddings") or params.get("original_max_position_embeddings")
    if not isinstance(original, int) or original <= 1:
        raise cfg.unsupported(f"original_max_position_embeddings = {original!r}", "LongRoPE needs the pretraining context (an integer > 1)")
    attn_factor = params.get("attention_factor")
    if attn_factor is None:
        scale = d.n_ctx / original
        attn_factor = math.sqrt(1 + math.log(scale) / math.log(original)) if scale > 1.0 else 1.0
    return factors[0], factors[1], float(attn_factor), original


def read_config(cfg: HFConfig) -> Dims:
    check_activation(cfg, ("hidden_act",), ("silu",))
    d = read_dims(cfg, n_ctx=int(cfg.require("max_position_embeddings", int)), norm_eps_keys=("rms_norm_eps",), n_ff=None)
    if cfg.get("head_dim") not in (None, d.n_embd // d.n_head):  # llama.cpp's phi3 graph has head_dim = n_embd / n_head
        raise cfg.unsupported(f"head_dim = {cfg.get('head_dim')!r}", f"phi3 has head_dim = hidden_size / num_attention_heads = {d.n_embd // d.n_head}")
    _longrope(cfg, d)  # refuses an unknown scaling type or broken factors before anything is written
    return d


def metadata(cfg: HFConfig, d: Dims) -> dict:
    m = common_metadata("phi3", d, rms=True, n_rot=partial_rotary_dims(cfg, d.head_dim), rope_base=cfg.rope()["theta"])
    m["phi3.attention.sliding_window"] = int(cfg.get("sliding_window", 0))
    scaling = _longrope(cfg, d)
    if scaling is not None:
        m["phi3.rope.scaling.attn_factor"] = scaling[2]
        m["phi3.rope.scaling.original_context_length"] = scaling[3]
    return m


def extra_tensors(cfg: HFConfig, d: Dims) -> dict[str, np.ndarray]:
    scaling = _longrope(cfg, d)
    if scaling is None:
        return {}
    return {"rope_factors_long.weight": scaling[0], "rope_factors_short.weight": scaling[1]}


def weight_map(cfg: HFConfig, d: Dims) -> dict[str, Rule]:
    qkv = (d.n_head + 2 * d.n_head_kv) * d.head_dim
    L = "model.layers.{bid}."
    WEIGHT_MAP = {
        "model.embed_tokens.weight": Rule("token_embd.weight", E, (d.n_vocab, d.n_embd)),
        L + "input_layernorm.weight": Rule("blk.{bid}.attn_norm.weight", N, (d.n_embd,)),
        L + "self_attn.qkv_proj.weight": Rule("blk.{bid}.attn_qkv.weight", A, (qkv, d.n_embd)),
        L + "self_attn.o_proj.weight": Rule("blk.{bid}.attn_output.weight", A, (d.n_embd, d.n_head * d.head_dim)),
        L + "post_attention_layernorm.weight": Rule("blk.{bid}.ffn_norm.weight", N, (d.n_embd,)),
        L + "mlp.gate_up_proj.weight": Rule("blk.{bid}.ffn_up.weight", F, (2 * d.n_ff, d.n_embd)),
        L + "mlp.down_proj.weight": Rule("blk.{bid}.ffn_down.weight", F, (d.n_embd, d.n_ff)),
        "model.norm.weight": Rule("output_norm.weight", N, (d.n_embd,)),
        "lm_head.weight": Rule(TIED if d.tied else "output.weight", E, (d.n_vocab, d.n_embd)),
    }
    return WEIGHT_MAP


SPEC = ArchSpec(
    arch="phi3",
    hf_model_types=("phi3",),
    hf_architectures=("Phi3ForCausalLM",),
    read_config=read_config,
    metadata=metadata,
    weight_map=weight_map,
    buffers=("rotary_emb.inv_freq", "rotary_emb.long_inv_freq", "rotary_emb.original_inv_freq"),
    extra_tensors=extra_tensors,
)
