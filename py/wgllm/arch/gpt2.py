"""gpt2 (GPT2LMHeadModel): learned positions, LayerNorm with bias, fused QKV, GELU (tanh) MLP.

GPT-2's Conv1D layers store weights as (in, out); GGUF wants (out, in) rows, so they are
transposed (Rule.transpose). The output layer is tied to the token embeddings and not stored. OpenAI's original
checkpoints name tensors without the `transformer.` prefix; both spellings are accepted.
"""

from __future__ import annotations

from wgllm.arch.base import TIED, ArchSpec, Dims, Group, HFConfig, Rule, check_activation, common_metadata

A, F, E, N = Group.ATTENTION, Group.FEEDFORWARD, Group.EMBEDDING, Group.FLOAT


def read_config(cfg: HFConfig) -> Dims:
    check_activation(cfg, ("activation_function",), ("gelu_new",))
    cfg.expect("scale_attn_weights", (True,), True)
    cfg.expect("scale_attn_by_inverse_layer_idx", (False,), False)
    n_embd = int(cfg.require("n_embd", int))
    n_head = int(cfg.require("n_head", int))
    if n_head <= 0 or n_embd % n_head:
        raise cfg.unsupported(f"n_embd = {n_embd} with n_head = {n_head}", "n_embd must be a multiple of n_head")
    return Dims(
        n_vocab=int(cfg.require("vocab_size", int)),
        n_ctx=int(cfg.require("n_positions", int)),
        n_embd=n_embd,
        n_layer=int(cfg.require("n_layer", int)),
        n_head=n_head,
        n_head_kv=n_head,
        head_dim=n_embd // n_head,
        n_ff=int(cfg.get("n_inner", 4 * n_embd)),
        norm_eps=float(cfg.require("layer_norm_epsilon")),
        tied=bool(cfg.get("tie_word_embeddings", True)),
    )


def metadata(cfg: HFConfig, d: Dims) -> dict:
    return common_metadata("gpt2", d, rms=False, n_rot=None, rope_base=None)


def weight_map(cfg: HFConfig, d: Dims) -> dict[str, Rule]:
    L = "transformer.h.{bid}."
    WEIGHT_MAP = {
        "transformer.wte.weight": Rule("token_embd.weight", E, (d.n_vocab, d.n_embd)),
        "transformer.wpe.weight": Rule("position_embd.weight", E, (d.n_ctx, d.n_embd)),
        L + "ln_1.weight": Rule("blk.{bid}.attn_norm.weight", N, (d.n_embd,)),
        L + "ln_1.bias": Rule("blk.{bid}.attn_norm.bias", N, (d.n_embd,)),
        L + "attn.c_attn.weight": Rule("blk.{bid}.attn_qkv.weight", A, (d.n_embd, 3 * d.n_embd), transpose=True),
        L + "attn.c_attn.bias": Rule("blk.{bid}.attn_qkv.bias", N, (3 * d.n_embd,)),
        L + "attn.c_proj.weight": Rule("blk.{bid}.attn_output.weight", A, (d.n_embd, d.n_embd), transpose=True),
        L + "attn.c_proj.bias": Rule("blk.{bid}.attn_output.bias", N, (d.n_embd,)),
        L + "ln_2.weight": Rule("blk.{bid}.ffn_norm.weight", N, (d.n_embd,)),
        L + "ln_2.bias": Rule("blk.{bid}.ffn_norm.bias", N, (d.n_embd,)),
        L + "mlp.c_fc.weight": Rule("blk.{bid}.ffn_up.weight", F, (d.n_embd, d.n_ff), transpose=True),
        L + "mlp.c_fc.bias": Rule("blk.{bid}.ffn_up.bias", N, (d.n_ff,)),
        L + "mlp.c_proj.weight": Rule("blk.{bid}.ffn_down.weight", F, (d.n_ff, d.n_embd), transpose=True),
        L + "mlp.c_proj.bias": Rule("blk.{bid}.ffn_down.bias", N, (d.n_embd,)),
        "transformer.ln_f.weight": Rule("output_norm.weight", N, (d.n_embd,)),
        "transformer.ln_f.bias": Rule("output_norm.bias", N, (d.n_embd,)),
        "lm_head.weight": Rule(TIED if d.tied else "output.weight", E, (d.n_vocab, d.n_embd)),
    }
    return WEIGHT_MAP


def rename(key: str) -> str:
    return key if key.startswith(("transformer.", "lm_head.")) else "transformer." + key


SPEC = ArchSpec(
    arch="gpt2",
    hf_model_types=("gpt2",),
    hf_architectures=("GPT2LMHeadModel",),
    read_config=read_config,
    metadata=metadata,
    weight_map=weight_map,
    buffers=(".attn.bias", ".attn.masked_bias"),
    rename=rename,
)
