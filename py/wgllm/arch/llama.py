"""llama (LlamaForCausalLM: SmolLM2, TinyLlama): RMSNorm, SwiGLU, RoPE on llama.cpp's interleaved pairs.

HF rotates halves of each head; llama.cpp rotates adjacent pairs, so Q and K rows are permuted
(convert_hf_to_gguf's LlamaModel.permute). A tied lm_head is not stored: llama.cpp falls back
to token_embd.
"""

from __future__ import annotations

from wgllm.arch.base import TIED, ArchSpec, Dims, Group, HFConfig, Rule, check_activation, common_metadata, permute_rope_rows, read_dims

A, F, E, N = Group.ATTENTION, Group.FEEDFORWARD, Group.EMBEDDING, Group.FLOAT


def read_config(cfg: HFConfig) -> Dims:
    check_activation(cfg, ("hidden_act",), ("silu",))
    cfg.expect("attention_bias", (False,), False)
    cfg.expect("mlp_bias", (False,), False)
    cfg.rope_plain()
    return read_dims(cfg, n_ctx=int(cfg.require("max_position_embeddings", int)), norm_eps_keys=("rms_norm_eps",))


def metadata(cfg: HFConfig, d: Dims) -> dict:
    return common_metadata("llama", d, rms=True, n_rot=d.head_dim, rope_base=cfg.rope()["theta"])


def weight_map(cfg: HFConfig, d: Dims) -> dict[str, Rule]:
    q, kv = d.n_head * d.head_dim, d.n_head_kv * d.head_dim
    WEIGHT_MAP = {
        "model.embed_tokens.weight": Rule("token_embd.weight", E, (d.n_vocab, d.n_embd)),
        "model.layers.{bid}.input_layernorm.weight": Rule("blk.{bid}.attn_norm.weight", N, (d.n_embd,)),
        "model.layers.{bid}.self_attn.q_proj.weight": Rule("blk.{bid}.attn_q.weight", A, (q, d.n_embd)),
        "model.layers.{bid}.self_attn.k_proj.weight": Rule("blk.{bid}.attn_k.weight", A, (kv, d.n_embd)),
        "model.layers.{bid}.self_attn.v_proj.weight": Rule("blk.{bid}.attn_v.weight", A, (kv, d.n_embd)),
        "model.layers.{bid}.self_attn.o_proj.weight": Rule("blk.{bid}.attn_output.weight", A, (d.n_embd, q)),
        "model.layers.{bid}.post_attention_layernorm.weight": Rule("blk.{bid}.ffn_norm.weight", N, (d.n_embd,)),
        "model.layers.{bid}.mlp.gate_proj.weight": Rule("blk.{bid}.ffn_gate.weight", F, (d.n_ff, d.n_embd)),
        "model.layers.{bid}.mlp.up_proj.weight": Rule("blk.{bid}.ffn_up.weight", F, (d.n_ff, d.n_embd)),
        "model.layers.{bid}.mlp.down_proj.weight": Rule("blk.{bid}.ffn_down.weight", F, (d.n_embd, d.n_ff)),
        "model.norm.weight": Rule("output_norm.weight", N, (d.n_embd,)),
        "lm_head.weight": Rule(TIED if d.tied else "output.weight", E, (d.n_vocab, d.n_embd)),
    }
    return WEIGHT_MAP


def transform(name: str, x, d: Dims):
    if name.endswith("attn_q.weight"):
        return permute_rope_rows(x, d.n_head)
    if name.endswith("attn_k.weight"):
        return permute_rope_rows(x, d.n_head_kv)
    return x


SPEC = ArchSpec(
    arch="llama",
    hf_model_types=("llama",),
    hf_architectures=("LlamaForCausalLM",),
    read_config=read_config,
    metadata=metadata,
    weight_map=weight_map,
    transform=transform,
    buffers=("rotary_emb.inv_freq",),
)
