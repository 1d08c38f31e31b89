"""llama (LlamaForCausalLM: SmolLM2, TinyLlama): RMSNorm, SwiGLU, RoPE on llama.cpp's interleaved pairs.

HF rotates halves of each head; llama.cpp rotates adjacent pairs, so Q and K rows are permuted
(convert_hf_to_gguf's LlamaModel.permute). A tied lm_head is not stored: llama.cpp falls back
to token_embd. Llama-3.x's RoPE scaling (rope_type llama3) becomes rope_freqs.weight, the divisor
of each rotary frequency, as llama.cpp writes it; other scalings are refused.
"""

from __future__ import annotations

from wgllm.arch.base import TIED, ArchSpec, Dims, Group, HFConfig, Rule, check_activation, common_metadata, permute_rope_rows, read_dims

A, F, E, N = Group.ATTENTION, Group.FEEDFORWARD, Group.EMBEDDING, Group.FLOAT


def read_config(cfg: HFConfig) -> Dims:
    check_activation(cfg, ("hidden_act",), ("silu",))
    cfg.expect("attention_bias", (False,), False)
    cfg.expect("mlp_bias", (False,), False)
    if cfg.rope()["type"] != "llama3":
        cfg.rope_plain()
    d = read_dims(cfg, n_ctx=int(cfg.require("max_position_embeddings", int)), norm_eps_keys=("rms_norm_eps",))
    if cfg.rope()["type"] == "llama3":
        _llama3_rope_factors(cfg, d)  # refuses missing or degenerate fields before anything is written
    return d


def _llama3_parameters(cfg: HFConfig) -> dict:
    params = cfg.data.get("rope_parameters")
    if not (isinstance(params, dict) and "rope_theta" in params):
        params = cfg.data.get("rope_scaling") or {}
    return params


def _llama3_rope_factors(cfg: HFConfig, d: Dims):
    """llama.cpp's rope_freqs.weight (n_rot/2,): what each rotary frequency base^(-2i/n_rot) is divided
    by under llama-3's scaling (convert_hf_to_gguf's LlamaModel): 1 for wavelengths under
    original_max_position_embeddings / high_freq_factor, `factor` above it / low_freq_factor, and a
    smooth blend between."""
    import math

    import numpy as np

    params = _llama3_parameters(cfg)
    names = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
    values = {}
    for name in names:
        value = params.get(name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise cfg.unsupported(f"llama3 RoPE scaling with {name} = {value!r}", "expected a positive number")
        values[name] = float(value)
    factor, low, high, old_ctx = (values[n] for n in names)
    if high <= low:
        raise cfg.unsupported(f"llama3 RoPE scaling with high_freq_factor {high} <= low_freq_factor {low}", "expected high > low")
    base = cfg.rope()["theta"]
    freqs = 1.0 / base ** (np.arange(0, d.head_dim, 2, dtype=np.float64) / d.head_dim)
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old_ctx / high:
            out.append(1.0)
        elif wavelen > old_ctx / low:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1.0 / ((1.0 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def extra_tensors(cfg: HFConfig, d: Dims) -> dict:
    if cfg.rope()["type"] == "llama3":
        return {"rope_freqs.weight": _llama3_rope_factors(cfg, d)}
    return {}


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
    extra_tensors=extra_tensors,
)
