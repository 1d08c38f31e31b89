"""phi2 (PhiForCausalLM): LayerNorm with bias, attention and MLP in parallel off one norm, partial NeoX RoPE.

Q, K and V stay separate tensors with biases (llama.cpp's phi2 graph takes attn_q/k/v or a fused
attn_qkv); the output layer has a bias too.
"""

from __future__ import annotations

from wgllm.arch.base import TIED, ArchSpec, Dims, Group, HFConfig, Rule, check_activation, common_metadata, partial_rotary_dims, read_dims

A, F, E, N = Group.ATTENTION, Group.FEEDFORWARD, Group.EMBEDDING, Group.FLOAT


def read_config(cfg: HFConfig) -> Dims:
    check_activation(cfg, ("hidden_act",), ("gelu_new",))
    cfg.expect("qk_layernorm", (False,), False)
    cfg.rope_plain()
    return read_dims(cfg, n_ctx=int(cfg.require("max_position_embeddings", int)), norm_eps_keys=("layer_norm_eps",))


def metadata(cfg: HFConfig, d: Dims) -> dict:
    return common_metadata("phi2", d, rms=False, n_rot=partial_rotary_dims(cfg, d.head_dim), rope_base=cfg.rope()["theta"])


def weight_map(cfg: HFConfig, d: Dims) -> dict[str, Rule]:
    q, kv = d.n_head * d.head_dim, d.n_head_kv * d.head_dim
    L = "model.layers.{bid}."
    WEIGHT_MAP = {
        "model.embed_tokens.weight": Rule("token_embd.weight", E, (d.n_vocab, d.n_embd)),
        L + "input_layernorm.weight": Rule("blk.{bid}.attn_norm.weight", N, (d.n_embd,)),
        L + "input_layernorm.bias": Rule("blk.{bid}.attn_norm.bias", N, (d.n_embd,)),
        L + "self_attn.q_proj.weight": Rule("blk.{bid}.attn_q.weight", A, (q, d.n_embd)),
        L + "self_attn.q_proj.bias": Rule("blk.{bid}.attn_q.bias", N, (q,)),
        L + "self_attn.k_proj.weight": Rule("blk.{bid}.attn_k.weight", A, (kv, d.n_embd)),
        L + "self_attn.k_proj.bias": Rule("blk.{bid}.attn_k.bias", N, (kv,)),
        L + "self_attn.v_proj.weight": Rule("blk.{bid}.attn_v.weight", A, (kv, d.n_embd)),
        L + "self_attn.v_proj.bias": Rule("blk.{bid}.attn_v.bias", N, (kv,)),
        L + "self_attn.dense.weight": Rule("blk.{bid}.attn_output.weight", A, (d.n_embd, q)),
        L + "self_attn.dense.bias": Rule("blk.{bid}.attn_output.bias", N, (d.n_embd,)),
        L + "mlp.fc1.weight": Rule("blk.{bid}.ffn_up.weight", F, (d.n_ff, d.n_embd)),
        L + "mlp.fc1.bias": Rule("blk.{bid}.ffn_up.bias", N, (d.n_ff,)),
        L + "mlp.fc2.weight": Rule("blk.{bid}.ffn_down.weight", F, (d.n_embd, d.n_ff)),
        L + "mlp.fc2.bias": Rule("blk.{bid}.ffn_down.bias", N, (d.n_embd,)),
        "model.final_layernorm.weight": Rule("output_norm.weight", N, (d.n_embd,)),
        "model.final_layernorm.bias": Rule("output_norm.bias", N, (d.n_embd,)),
        "lm_head.weight": Rule(TIED if d.tied else "output.weight", E, (d.n_vocab, d.n_embd)),
        "lm_head.bias": Rule("output.bias", N, (d.n_vocab,)),
    }
    return WEIGHT_MAP


SPEC = ArchSpec(
    arch="phi2",
    hf_model_types=("phi",),
    hf_architectures=("PhiForCausalLM",),
    read_config=read_config,
    metadata=metadata,
    weight_map=weight_map,
    buffers=("rotary_emb.inv_freq",),
)
