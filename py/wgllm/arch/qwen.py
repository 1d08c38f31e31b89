"""qwen2 (Qwen2ForCausalLM: Qwen2, Qwen2.5, Qwen2.5-Coder) and qwen3 (Qwen3ForCausalLM).

Both are llama-shaped (RMSNorm, SwiGLU) with NeoX RoPE, so unlike llama the Q/K rows are stored
as Hugging Face has them (no permutation). Qwen2 adds biases to Q, K and V (never to the output
projection); Qwen3 has no biases but an RMSNorm over each head of Q and K before RoPE, whose
weight is used as is (no Gemma-style 1 + w), and its head_dim is its own config field (128 for
Qwen3-0.6B, whose hidden size 1024 has 16 heads). Embeddings may be tied (the small models) or
not; a tied lm_head is not stored and llama.cpp falls back to token_embd. Sliding-window
attention (use_sliding_window) and RoPE scaling are refused: llama.cpp's graphs for these
architectures run neither as transformers does for these checkpoints.
"""

from __future__ import annotations

from wgllm.arch.base import TIED, ArchSpec, Dims, Group, HFConfig, Rule, check_activation, common_metadata, read_dims

A, F, E, N = Group.ATTENTION, Group.FEEDFORWARD, Group.EMBEDDING, Group.FLOAT


def _read(cfg: HFConfig, arch: str) -> Dims:
    check_activation(cfg, ("hidden_act",), ("silu",))
    cfg.expect("use_sliding_window", (False,), False)
    layer_types = cfg.get("layer_types")
    if layer_types is not None and any(t != "full_attention" for t in layer_types):
        raise cfg.unsupported(f"layer_types {layer_types}", f"wgllm runs {arch} with full attention on every layer")
    if arch == "qwen3":
        # llama.cpp's qwen3 graph has no projection biases
        cfg.expect("attention_bias", (False,), False)
    cfg.rope_plain()
    return read_dims(cfg, n_ctx=int(cfg.require("max_position_embeddings", int)), norm_eps_keys=("rms_norm_eps",))


def _metadata(cfg: HFConfig, d: Dims, arch: str) -> dict:
    return common_metadata(arch, d, rms=True, n_rot=d.head_dim, rope_base=cfg.rope()["theta"])


def _weight_map(cfg: HFConfig, d: Dims, arch: str) -> dict[str, Rule]:
    q, kv = d.n_head * d.head_dim, d.n_head_kv * d.head_dim
    L = "model.layers.{bid}."
    WEIGHT_MAP = {
        "model.embed_tokens.weight": Rule("token_embd.weight", E, (d.n_vocab, d.n_embd)),
        L + "input_layernorm.weight": Rule("blk.{bid}.attn_norm.weight", N, (d.n_embd,)),
        L + "self_attn.q_proj.weight": Rule("blk.{bid}.attn_q.weight", A, (q, d.n_embd)),
        L + "self_attn.k_proj.weight": Rule("blk.{bid}.attn_k.weight", A, (kv, d.n_embd)),
        L + "self_attn.v_proj.weight": Rule("blk.{bid}.attn_v.weight", A, (kv, d.n_embd)),
        L + "self_attn.o_proj.weight": Rule("blk.{bid}.attn_output.weight", A, (d.n_embd, q)),
    }
    if arch == "qwen2":
        for p, rows in (("q", q), ("k", kv), ("v", kv)):
            WEIGHT_MAP[L + f"self_attn.{p}_proj.bias"] = Rule(f"blk.{{bid}}.attn_{p}.bias", N, (rows,))
    else:
        WEIGHT_MAP[L + "self_attn.q_norm.weight"] = Rule("blk.{bid}.attn_q_norm.weight", N, (d.head_dim,))
        WEIGHT_MAP[L + "self_attn.k_norm.weight"] = Rule("blk.{bid}.attn_k_norm.weight", N, (d.head_dim,))
    WEIGHT_MAP |= {
        L + "post_attention_layernorm.weight": Rule("blk.{bid}.ffn_norm.weight", N, (d.n_embd,)),
        L + "mlp.gate_proj.weight": Rule("blk.{bid}.ffn_gate.weight", F, (d.n_ff, d.n_embd)),
        L + "mlp.up_proj.weight": Rule("blk.{bid}.ffn_up.weight", F, (d.n_ff, d.n_embd)),
        L + "mlp.down_proj.weight": Rule("blk.{bid}.ffn_down.weight", F, (d.n_embd, d.n_ff)),
        "model.norm.weight": Rule("output_norm.weight", N, (d.n_embd,)),
        "lm_head.weight": Rule(TIED if d.tied else "output.weight", E, (d.n_vocab, d.n_embd)),
    }
    return WEIGHT_MAP


def _spec(arch: str, model_type: str, architecture: str) -> ArchSpec:
    return ArchSpec(
        arch=arch,
        hf_model_types=(model_type,),
        hf_architectures=(architecture,),
        read_config=lambda cfg: _read(cfg, arch),
        metadata=lambda cfg, d: _metadata(cfg, d, arch),
        weight_map=lambda cfg, d: _weight_map(cfg, d, arch),
        buffers=("rotary_emb.inv_freq",),
    )


QWEN2 = _spec("qwen2", "qwen2", "Qwen2ForCausalLM")
QWEN3 = _spec("qwen3", "qwen3", "Qwen3ForCausalLM")
