"""stablelm (StableLmForCausalLM, StableLM-3B-4E1T): LayerNorm with bias, SwiGLU, partial NeoX RoPE.

Sequential residuals only (use_parallel_residual = false) and no per-head Q/K norms: the options
of the larger StableLM-2 models are refused rather than converted into a file wgllm runs wrong.
"""

from __future__ import annotations

from gguf import Keys

from wgllm.arch.base import TIED, ArchSpec, Dims, Group, HFConfig, Rule, check_activation, common_metadata, partial_rotary_dims, read_dims

A, F, E, N = Group.ATTENTION, Group.FEEDFORWARD, Group.EMBEDDING, Group.FLOAT


def read_config(cfg: HFConfig) -> Dims:
    check_activation(cfg, ("hidden_act",), ("silu",))
    cfg.expect("use_parallel_residual", (False,), False)
    cfg.expect("qk_layernorm", (False,), False)
    cfg.rope_plain()
    return read_dims(cfg, n_ctx=int(cfg.require("max_position_embeddings", int)), norm_eps_keys=("layer_norm_eps",))


def metadata(cfg: HFConfig, d: Dims) -> dict:
    m = common_metadata("stablelm", d, rms=False, n_rot=partial_rotary_dims(cfg, d.head_dim), rope_base=cfg.rope()["theta"])
    m[Keys.LLM.USE_PARALLEL_RESIDUAL.format(arch="stablelm")] = False
    return m


def weight_map(cfg: HFConfig, d: Dims) -> dict[str, Rule]:
    q, kv = d.n_head * d.head_dim, d.n_head_kv * d.head_dim
    L = "model.layers.{bid}."
    WEIGHT_MAP = {
        "model.embed_tokens.weight": Rule("token_embd.weight", E, (d.n_vocab, d.n_embd)),
        L + "input_layernorm.weight": Rule("blk.{bid}.attn_norm.weight", N, (d.n_embd,)),
        L + "input_layernorm.bias": Rule("blk.{bid}.attn_norm.bias", N, (d.n_embd,)),
        L + "self_attn.q_proj.weight": Rule("blk.{bid}.attn_q.weight", A, (q, d.n_embd)),
        L + "self_attn.k_proj.weight": Rule("blk.{bid}.attn_k.weight", A, (kv, d.n_embd)),
        L + "self_attn.v_proj.weight": Rule("blk.{bid}.attn_v.weight", A, (kv, d.n_embd)),
        L + "self_attn.o_proj.weight": Rule("blk.{bid}.attn_output.weight", A, (d.n_embd, q)),
        L + "post_attention_layernorm.weight": Rule("blk.{bid}.ffn_norm.weight", N, (d.n_embd,)),
        L + "post_attention_layernorm.bias": Rule("blk.{bid}.ffn_norm.bias", N, (d.n_embd,)),
        L + "mlp.gate_proj.weight": Rule("blk.{bid}.ffn_gate.weight", F, (d.n_ff, d.n_embd)),
        L + "mlp.up_proj.weight": Rule("blk.{bid}.ffn_up.weight", F, (d.n_ff, d.n_embd)),
        L + "mlp.down_proj.weight": Rule("blk.{bid}.ffn_down.weight", F, (d.n_embd, d.n_ff)),
        "model.norm.weight": Rule("output_norm.weight", N, (d.n_embd,)),
        "model.norm.bias": Rule("output_norm.bias", N, (d.n_embd,)),
        "lm_head.weight": Rule(TIED if d.tied else "output.weight", E, (d.n_vocab, d.n_embd)),
    }
    if cfg.get("use_qkv_bias", False):
        for p, rows in (("q", q), ("k", kv), ("v", kv)):
            WEIGHT_MAP[L + f"self_attn.{p}_proj.bias"] = Rule(f"blk.{{bid}}.attn_{p}.bias", N, (rows,))
    return WEIGHT_MAP


SPEC = ArchSpec(
    arch="stablelm",
    hf_model_types=("stablelm",),
    hf_architectures=("StableLmForCausalLM",),
    read_config=read_config,
    metadata=metadata,
    weight_map=weight_map,
    buffers=("rotary_emb.inv_freq",),
)
