"""falcon, the Falcon-RW layout only (FalconForCausalLM with alibi, sequential residuals, one K/V per head).

HF's fused query_key_value interleaves heads ([q_h, k_h, v_h] for every head h); llama.cpp's
attn_qkv holds all Q rows, then all K rows, then all V rows, so the rows (and the bias) are
reordered. post_attention_layernorm is stored as ffn_norm.

ALiBi: `falcon.attention.max_alibi_bias = 8` marks the file as an ALiBi model. llama.cpp's falcon
graph has no ALiBi (it applies RoPE), so llama.cpp itself would run these files wrong; wgllm's
reference and engines read the key and add the ALiBi bias. The rotary Falcon-7B/40B layouts
(parallel attention, multi-query, new_decoder_architecture) are refused.
"""

from __future__ import annotations

import numpy as np
from gguf import Keys

from wgllm.arch.base import TIED, ArchSpec, Dims, Group, HFConfig, Rule, check_activation, common_metadata, read_dims

A, F, E, N = Group.ATTENTION, Group.FEEDFORWARD, Group.EMBEDDING, Group.FLOAT
MAX_ALIBI_BIAS = 8.0


def read_config(cfg: HFConfig) -> Dims:
    for key, want in (("alibi", True), ("parallel_attn", False), ("new_decoder_architecture", False), ("multi_query", False), ("bias", True)):
        if cfg.get(key) != want:
            raise cfg.unsupported(
                f"{key} = {cfg.get(key)!r}",
                "wgllm converts the Falcon-RW layout only (alibi=true, parallel_attn=false, new_decoder_architecture=false, multi_query=false, bias=true)",
            )
    check_activation(cfg, ("activation",), ("gelu",))
    n_embd = int(cfg.require("hidden_size", int))
    n_ff = int(cfg.get("ffn_hidden_size", 4 * n_embd))
    d = read_dims(cfg, n_ctx=int(cfg.get("max_position_embeddings", 2048)), norm_eps_keys=("layer_norm_epsilon",), n_ff=n_ff)
    kv_heads = cfg.get("num_kv_heads", d.n_head)
    if kv_heads != d.n_head:
        raise cfg.unsupported(f"num_kv_heads = {kv_heads} with {d.n_head} heads", "Falcon-RW has one K/V head per query head")
    return d


def metadata(cfg: HFConfig, d: Dims) -> dict:
    m = common_metadata("falcon", d, rms=False, n_rot=None, rope_base=None)
    m[Keys.Attention.MAX_ALIBI_BIAS.format(arch="falcon")] = MAX_ALIBI_BIAS
    return m


def weight_map(cfg: HFConfig, d: Dims) -> dict[str, Rule]:
    L = "transformer.h.{bid}."
    qkv = 3 * d.n_head * d.head_dim
    WEIGHT_MAP = {
        "transformer.word_embeddings.weight": Rule("token_embd.weight", E, (d.n_vocab, d.n_embd)),
        L + "input_layernorm.weight": Rule("blk.{bid}.attn_norm.weight", N, (d.n_embd,)),
        L + "input_layernorm.bias": Rule("blk.{bid}.attn_norm.bias", N, (d.n_embd,)),
        L + "self_attention.query_key_value.weight": Rule("blk.{bid}.attn_qkv.weight", A, (qkv, d.n_embd)),
        L + "self_attention.query_key_value.bias": Rule("blk.{bid}.attn_qkv.bias", N, (qkv,)),
        L + "self_attention.dense.weight": Rule("blk.{bid}.attn_output.weight", A, (d.n_embd, d.n_embd)),
        L + "self_attention.dense.bias": Rule("blk.{bid}.attn_output.bias", N, (d.n_embd,)),
        L + "post_attention_layernorm.weight": Rule("blk.{bid}.ffn_norm.weight", N, (d.n_embd,)),
        L + "post_attention_layernorm.bias": Rule("blk.{bid}.ffn_norm.bias", N, (d.n_embd,)),
        L + "mlp.dense_h_to_4h.weight": Rule("blk.{bid}.ffn_up.weight", F, (d.n_ff, d.n_embd)),
        L + "mlp.dense_h_to_4h.bias": Rule("blk.{bid}.ffn_up.bias", N, (d.n_ff,)),
        L + "mlp.dense_4h_to_h.weight": Rule("blk.{bid}.ffn_down.weight", F, (d.n_embd, d.n_ff)),
        L + "mlp.dense_4h_to_h.bias": Rule("blk.{bid}.ffn_down.bias", N, (d.n_embd,)),
        "transformer.ln_f.weight": Rule("output_norm.weight", N, (d.n_embd,)),
        "transformer.ln_f.bias": Rule("output_norm.bias", N, (d.n_embd,)),
        "lm_head.weight": Rule(TIED if d.tied else "output.weight", E, (d.n_vocab, d.n_embd)),
    }
    return WEIGHT_MAP


def transform(name: str, x: np.ndarray, d: Dims) -> np.ndarray:
    if name.endswith(("attn_qkv.weight", "attn_qkv.bias")):
        heads = x.reshape(d.n_head, 3, d.head_dim, *x.shape[1:])  # per head: q, k, v
        return np.concatenate([heads[:, 0], heads[:, 1], heads[:, 2]]).reshape(x.shape)
    return x


SPEC = ArchSpec(
    arch="falcon",
    hf_model_types=("falcon",),
    hf_architectures=("FalconForCausalLM",),
    read_config=read_config,
    metadata=metadata,
    weight_map=weight_map,
    transform=transform,
)
