"""gemma, gemma2, gemma3 (GemmaForCausalLM, Gemma2ForCausalLM, Gemma3ForCausalLM text models).

RMSNorm weights are stored +1: HF keeps w and multiplies by (1 + w), llama.cpp multiplies by the
stored weight. The output is always tied to the embeddings (never stored). Gemma-2 adds norms
after attention and after the MLP, logit soft-capping and sliding-window attention on every other
layer; Gemma-3 drops the soft-capping, adds RMSNorm over each Q/K head and slides on 5 of every 6
layers, whose RoPE base llama.cpp hard-codes to 10000 (only the global base is stored).
"""

from __future__ import annotations

from gguf import Keys

from wgllm.arch.base import TIED, ArchSpec, Dims, Group, HFConfig, Rule, check_activation, common_metadata, read_dims

A, F, E, N = Group.ATTENTION, Group.FEEDFORWARD, Group.EMBEDDING, Group.FLOAT

# llama.cpp picks the 27B models' query scale 1/sqrt(n_embd/n_head) by their layer count.
_LAYERS_27B = {"gemma2": 46, "gemma3": 62}
# Every swa_pattern-th layer is global (full attention), the others slide.
_SWA_PATTERN = {"gemma2": 2, "gemma3": 6}
_LOCAL_ROPE_BASE = 10000.0  # llama.cpp's Gemma-3 sliding layers


def _read(cfg: HFConfig, arch: str) -> Dims:
    # Gemma's reference GELU is the tanh approximation, whatever early configs called it
    check_activation(cfg, ("hidden_activation", "hidden_act"), ("gelu_pytorch_tanh", "gelu_new", "gelu"))
    cfg.expect("attention_bias", (False,), False)
    d = read_dims(cfg, n_ctx=int(cfg.require("max_position_embeddings", int)), norm_eps_keys=("rms_norm_eps",))
    if not d.tied:
        raise cfg.unsupported("tie_word_embeddings = false", "Gemma's output layer is its embedding table")
    if arch == "gemma":
        cfg.rope_plain()
        return d
    scalar = cfg.get("query_pre_attn_scalar", d.head_dim)
    is_27b_rule = d.n_layer == _LAYERS_27B[arch] and scalar == d.n_embd // d.n_head
    if scalar != d.head_dim and not is_27b_rule:
        raise cfg.unsupported(
            f"query_pre_attn_scalar = {scalar} with head_dim {d.head_dim}",
            f"llama.cpp scales queries by 1/sqrt(head_dim), or by 1/sqrt(hidden_size/num_attention_heads) for the {_LAYERS_27B[arch]}-layer 27B model",
        )
    pattern = _SWA_PATTERN[arch]
    expected = ["full_attention" if (i + 1) % pattern == 0 else "sliding_attention" for i in range(d.n_layer)]
    layer_types = cfg.get("layer_types")
    if layer_types is not None and list(layer_types) != expected:
        raise cfg.unsupported(f"layer_types {layer_types}", f"{arch} needs {pattern - 1} sliding layers then 1 global layer, repeated")
    legacy_pattern = cfg.get("sliding_window_pattern", cfg.get("_sliding_window_pattern", pattern))
    if legacy_pattern != pattern:
        raise cfg.unsupported(f"sliding_window_pattern = {legacy_pattern}", f"{arch} needs {pattern}")
    if arch == "gemma2":
        cfg.rope_plain()
        return d
    for key in ("attn_logit_softcapping", "final_logit_softcapping"):
        if cfg.get(key) is not None:
            raise cfg.unsupported(f"{key} = {cfg.get(key)}", "llama.cpp's gemma3 graph has no soft-capping")
    local = cfg.rope("sliding_attention")
    if local["theta"] != _LOCAL_ROPE_BASE or local["type"] != "default":
        raise cfg.unsupported(
            f"sliding-layer RoPE (base {local['theta']}, type {local['type']!r})",
            f"llama.cpp hard-codes an unscaled base of {_LOCAL_ROPE_BASE:g} for Gemma-3's local layers",
        )
    full = cfg.rope("full_attention")
    if full["type"] not in ("default", "linear"):
        raise cfg.unsupported(f"rope scaling type {full['type']!r}", "wgllm implements 'linear' for Gemma-3")
    return d


def _metadata(cfg: HFConfig, d: Dims, arch: str) -> dict:
    if arch == "gemma3":
        rope = cfg.rope("full_attention")
    else:
        rope = cfg.rope()
    m = common_metadata(arch, d, rms=True, n_rot=d.head_dim, rope_base=rope["theta"])
    # llama.cpp's Gemma converters always write the head sizes
    m[Keys.Attention.KEY_LENGTH.format(arch=arch)] = d.head_dim
    m[Keys.Attention.VALUE_LENGTH.format(arch=arch)] = d.head_dim
    if arch in ("gemma2", "gemma3") and cfg.get("sliding_window") is not None:
        m[Keys.Attention.SLIDING_WINDOW.format(arch=arch)] = int(cfg.require("sliding_window", int))
    if arch == "gemma2":
        for key, name in ((Keys.LLM.ATTN_LOGIT_SOFTCAPPING, "attn_logit_softcapping"), (Keys.LLM.FINAL_LOGIT_SOFTCAPPING, "final_logit_softcapping")):
            if cfg.get(name) is not None:
                m[key.format(arch=arch)] = float(cfg.require(name))
    if arch == "gemma3" and rope["type"] == "linear":
        m[Keys.Rope.SCALING_TYPE.format(arch=arch)] = "linear"
        m[Keys.Rope.SCALING_FACTOR.format(arch=arch)] = float(rope["factor"])
    return m


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
        L + "mlp.gate_proj.weight": Rule("blk.{bid}.ffn_gate.weight", F, (d.n_ff, d.n_embd)),
        L + "mlp.up_proj.weight": Rule("blk.{bid}.ffn_up.weight", F, (d.n_ff, d.n_embd)),
        L + "mlp.down_proj.weight": Rule("blk.{bid}.ffn_down.weight", F, (d.n_embd, d.n_ff)),
    }
    if arch == "gemma":
        WEIGHT_MAP[L + "post_attention_layernorm.weight"] = Rule("blk.{bid}.ffn_norm.weight", N, (d.n_embd,))
    else:
        WEIGHT_MAP[L + "post_attention_layernorm.weight"] = Rule("blk.{bid}.post_attention_norm.weight", N, (d.n_embd,))
        WEIGHT_MAP[L + "pre_feedforward_layernorm.weight"] = Rule("blk.{bid}.ffn_norm.weight", N, (d.n_embd,))
        WEIGHT_MAP[L + "post_feedforward_layernorm.weight"] = Rule("blk.{bid}.post_ffw_norm.weight", N, (d.n_embd,))
    if arch == "gemma3":
        WEIGHT_MAP[L + "self_attn.q_norm.weight"] = Rule("blk.{bid}.attn_q_norm.weight", N, (d.head_dim,))
        WEIGHT_MAP[L + "self_attn.k_norm.weight"] = Rule("blk.{bid}.attn_k_norm.weight", N, (d.head_dim,))
    WEIGHT_MAP["model.norm.weight"] = Rule("output_norm.weight", N, (d.n_embd,))
    WEIGHT_MAP["lm_head.weight"] = Rule(TIED, E, (d.n_vocab, d.n_embd))
    return WEIGHT_MAP


def transform(name: str, x, d: Dims):
    if name.endswith("norm.weight"):
        return x + 1.0
    return x


def _spec(arch: str, model_types: tuple[str, ...], architectures: tuple[str, ...]) -> ArchSpec:
    return ArchSpec(
        arch=arch,
        hf_model_types=model_types,
        hf_architectures=architectures,
        read_config=lambda cfg: _read(cfg, arch),
        metadata=lambda cfg, d: _metadata(cfg, d, arch),
        weight_map=lambda cfg, d: _weight_map(cfg, d, arch),
        transform=transform,
        buffers=("rotary_emb.inv_freq",),
    )


GEMMA = _spec("gemma", ("gemma",), ("GemmaForCausalLM",))
GEMMA2 = _spec("gemma2", ("gemma2",), ("Gemma2ForCausalLM",))
GEMMA3 = _spec("gemma3", ("gemma3_text",), ("Gemma3ForCausalLM",))

