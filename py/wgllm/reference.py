"""The numpy reference transformer: one function per op (named like its shader), and the forward pass.

It is the oracle for the GPU engine and is itself checked against `transformers`. float32 by
default; `dtype=np.float64` on request. Shapes: n = tokens in this call, m = tokens in the KV cache.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from wgllm.model import Model, ModelConfig

# -- ops (one per shader) ------------------------------------------------------------------------


def embedding(table: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(vocab, dim)[ids] -> (n, dim)"""
    return table[ids]


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    """x * w / sqrt(mean(x^2) + eps) over the last axis (Gemma's 1+w is already in GGUF's w)."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = np.mean(x, axis=-1, keepdims=True)
    var = np.mean((x - mean) ** 2, axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def matmul(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """(n, k) x (m, k)^T [+ (m,)] -> (n, m): GGUF stores weights as (out, in) rows."""
    y = x @ w.T
    return y if bias is None else y + bias


def lora_shrink(x: np.ndarray, a: np.ndarray) -> np.ndarray:
    """t = x A^T: (n, n_in) x (r, n_in) -> (n, r), the first half of a LoRA update."""
    return x @ a.T


def lora_expand(y: np.ndarray, t: np.ndarray, b: np.ndarray, scale: float) -> np.ndarray:
    """y + scale * t B^T: (n, n_out) + (n, r) x (n_out, r)^T, added after the base matmul."""
    return y + y.dtype.type(scale) * (t @ b.T)


def rope(
    x: np.ndarray, positions: np.ndarray, n_rot: int, base: float, neox: bool, pos_scale: float = 1.0, freq_factors: np.ndarray | None = None,
    mscale: float = 1.0,
) -> np.ndarray:
    """Rotate the first n_rot dims of each head of x (n, heads, head_dim) by position * base^(-2i/n_rot)
    (divided by freq_factors[i] when given: llama-3's rope_freqs, LongRoPE's factors), cos and sin
    multiplied by mscale (LongRoPE's attention factor; the dims past n_rot are left as they are).

    neox: pairs (i, i + n_rot/2); otherwise adjacent pairs (2i, 2i+1), llama.cpp's layout for the
    llama architecture (whose Q/K rows the converter permuted to match).
    """
    half = n_rot // 2
    inv_freq = base ** (-np.arange(half, dtype=np.float64) * 2.0 / n_rot)
    if freq_factors is not None:
        inv_freq = inv_freq / freq_factors.astype(np.float64)
    angles = (positions.astype(np.float64)[:, None] / pos_scale) * inv_freq[None, :]  # (n, half)
    cos = (np.cos(angles) * mscale).astype(x.dtype)[:, None, :]
    sin = (np.sin(angles) * mscale).astype(x.dtype)[:, None, :]
    out = x.copy()
    if neox:
        a, b = x[..., :half], x[..., half:n_rot]
        out[..., :half] = a * cos - b * sin
        out[..., half:n_rot] = b * cos + a * sin
    else:
        a, b = x[..., 0:n_rot:2], x[..., 1:n_rot:2]
        out[..., 0:n_rot:2] = a * cos - b * sin
        out[..., 1:n_rot:2] = b * cos + a * sin
    return out


def alibi_slopes(n_head: int, max_bias: float) -> np.ndarray:
    """ALiBi slope per head, as ggml_soft_max_ext computes it (equal to BLOOM's for max_bias 8)."""
    n_log2 = 2 ** math.floor(math.log2(n_head))
    m0 = 2.0 ** (-max_bias / n_log2)
    m1 = 2.0 ** (-(max_bias / 2.0) / n_log2)
    h = np.arange(n_head)
    return np.where(h < n_log2, m0 ** (h + 1), m1 ** (2 * (h - n_log2) + 1)).astype(np.float64)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def softcap(x: np.ndarray, cap: float) -> np.ndarray:
    """cap * tanh(x / cap)"""
    return cap * np.tanh(x / cap)


def attention(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    q_pos: np.ndarray,
    k_pos: np.ndarray,
    scale: float,
    *,
    softcap_value: float = 0.0,
    window: int = 0,
    slopes: np.ndarray | None = None,
) -> np.ndarray:
    """Causal attention. q (n, H, d), k (m, Hkv, d), v (m, Hkv, dv) -> (n, H, dv).

    Key j is visible to query i when k_pos[j] <= q_pos[i] (and q_pos[i] - k_pos[j] < window when
    window > 0). Scores are scale * (q.k + slope_h * k_pos) with ALiBi (Falcon-RW adds the bias
    before scaling), then soft-capped when softcap_value > 0.
    """
    n_head, n_head_kv = q.shape[1], k.shape[1]
    group = n_head // n_head_kv
    kh = np.repeat(k, group, axis=1)  # (m, H, d)
    vh = np.repeat(v, group, axis=1)
    scores = np.einsum("nhd,mhd->hnm", q, kh)  # (H, n, m)
    if slopes is not None:
        scores = scores + slopes.astype(q.dtype)[:, None, None] * k_pos.astype(q.dtype)[None, None, :]
    scores = scores * q.dtype.type(scale)
    if softcap_value:
        scores = softcap(scores, softcap_value)
    dist = q_pos[:, None] - k_pos[None, :]  # (n, m)
    visible = dist >= 0
    if window:
        visible &= dist < window
    scores = np.where(visible[None], scores, -np.inf)
    return np.einsum("hnm,mhd->nhd", softmax(scores, axis=-1), vh)


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """0.5 x (1 + tanh z), z = sqrt(2/pi) (x + 0.044715 x^3), as gelu_tanh.wgsl: x / (1 + e^-2z) from
    e = e^-2|z| <= 1, with no cancellation in 1 + tanh z for x < 0 and no overflow. Computed in float64
    and returned in x's dtype: the oracle of the kernels, good to the last bits of a float32."""
    x64 = np.asarray(x, np.float64)
    z2 = 2.0 * math.sqrt(2.0 / math.pi) * x64 * (1.0 + 0.044715 * x64 * x64)
    e = np.exp(-np.abs(z2))
    return (x64 * np.where(z2 >= 0.0, 1.0, e) / (1.0 + e)).astype(np.asarray(x).dtype)


def erfc(t: np.ndarray) -> np.ndarray:
    """erfc(t) for t >= 0: Numerical Recipes' fit u e^(p(u) - t^2), u = 1 / (1 + t / 2), relative error
    < 1.2e-7 for every t >= 0. WGSL has no erf: gelu_erf.wgsl uses this fit term for term."""
    u = 1.0 / (1.0 + 0.5 * t)
    p = -1.26551223 + u * (1.00002368 + u * (0.37409196 + u * (0.09678418 + u * (-0.18628806
        + u * (0.27886807 + u * (-1.13520398 + u * (1.48851587 + u * (-0.82215223 + u * 0.17087277))))))))
    return u * np.exp(p - t * t)


def gelu_erf(x: np.ndarray) -> np.ndarray:
    """0.5 x (1 + erf(x / sqrt 2)) = 0.5 x erfc(-x / sqrt 2), as gelu_erf.wgsl: 0.5 x erfc(|x| / sqrt 2)
    for x < 0 (no cancellation in 1 + erf), x (1 - erfc(x / sqrt 2) / 2) otherwise. Computed in float64
    and returned in x's dtype."""
    x64 = np.asarray(x, np.float64)
    half = 0.5 * erfc(np.abs(x64) / math.sqrt(2.0))
    return (x64 * np.where(x64 < 0.0, half, 1.0 - half)).astype(np.asarray(x).dtype)


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def swiglu(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    return silu(gate) * up


def geglu(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    return gelu_tanh(gate) * up


def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a + b


# -- the forward pass ----------------------------------------------------------------------------


@dataclass
class KVCache:
    """Per layer, K after RoPE (m, Hkv, d) and V (m, Hkv, dv), and the positions held.

    dtype: what K and V are stored as; None keeps them in the forward pass's dtype. np.float16 is
    the GPU engine's f16 KV cache: K and V are rounded to float16 when stored and attention uses the
    rounded values (converted back to the forward pass's dtype: the arithmetic stays in it).
    n_ctx: the context the cache is for (llama.cpp's n_ctx, the GPU engine's max_tokens), which picks
    LongRoPE's factors; 0: the model's training context (llama.cpp's default).
    """

    dtype: type | None = None
    n_ctx: int = 0
    k: list[np.ndarray] = field(default_factory=list)
    v: list[np.ndarray] = field(default_factory=list)
    positions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def length(self) -> int:
        return len(self.positions)


class _Layer:
    """Weights of one block, dequantised, as the dtype asked for, and the LoRA adapter applied to them."""

    def __init__(self, model: Model, prefix: str, dtype, lora=None):
        self.model, self.prefix, self.dtype, self.lora = model, prefix, dtype, lora

    def linear(self, name: str, x: np.ndarray, n_out: int) -> np.ndarray:
        """x W^T + bias for the weight `name`.weight (n_out, x's width), plus the adapter's
        scale * B (A x) when it adapts this weight (never merged into W)."""
        y = matmul(x, self.need(f"{name}.weight", (n_out, x.shape[-1])), self.get(f"{name}.bias", (n_out,)))
        factors = self.lora.factors.get(f"{self.prefix}{name}.weight") if self.lora is not None else None
        if factors is not None:
            a, b = factors
            y = lora_expand(y, lora_shrink(x, a.astype(self.dtype, copy=False)), b.astype(self.dtype, copy=False), self.lora.scale)
        return y

    def get(self, name: str, shape=None) -> np.ndarray | None:
        full = self.prefix + name
        if not self.model.has(full):
            return None
        return self.model.weight(full, shape).astype(self.dtype, copy=False)

    def need(self, name: str, shape=None) -> np.ndarray:
        return self.model.weight(self.prefix + name, shape).astype(self.dtype, copy=False)


def _norm(c: ModelConfig, layer: _Layer, name: str, x: np.ndarray) -> np.ndarray:
    w = layer.need(f"{name}.weight", (x.shape[-1],))
    if c.recipe.norm == "rms":
        return rms_norm(x, w, c.norm_eps)
    b = layer.get(f"{name}.bias", (x.shape[-1],))
    return layer_norm(x, w, b if b is not None else np.zeros_like(w), c.norm_eps)


def _qkv(c: ModelConfig, layer: _Layer, h: np.ndarray):
    n = h.shape[0]
    q_dim, kv_dim, v_dim = c.n_head * c.head_dim, c.kv_dim, c.n_head_kv * c.head_dim_v
    if layer.model.has(layer.prefix + "attn_qkv.weight"):
        qkv = layer.linear("attn_qkv", h, q_dim + kv_dim + v_dim)
        q, k, v = np.split(qkv, [q_dim, q_dim + kv_dim], axis=-1)
    else:
        q = layer.linear("attn_q", h, q_dim)
        k = layer.linear("attn_k", h, kv_dim)
        v = layer.linear("attn_v", h, v_dim)
    return (
        q.reshape(n, c.n_head, c.head_dim),
        k.reshape(n, c.n_head_kv, c.head_dim),
        v.reshape(n, c.n_head_kv, c.head_dim_v),
    )


def _attention_block(c: ModelConfig, layer: _Layer, i: int, h: np.ndarray, positions: np.ndarray, cache: KVCache, rec=None):
    """rec: a dict to record the checkpoints q, k, v (as the KV cache holds them) and attn in, or None."""
    n = h.shape[0]
    q, k, v = _qkv(c, layer, h)
    if c.recipe.qk_norm:
        q = rms_norm(q, layer.need("attn_q_norm.weight", (c.head_dim,)), c.norm_eps)
        k = rms_norm(k, layer.need("attn_k_norm.weight", (c.head_dim,)), c.norm_eps)
    if c.layer_n_rot(i):  # 0 on SmolLM3's NoPE layers
        base, pos_scale = c.layer_rope(i)
        neox = c.recipe.rope == "neox"
        factors_name = c.rope_factors_name(cache.n_ctx or c.n_ctx_train)
        factors = layer.model.weight(factors_name, (c.n_rot // 2,)) if factors_name else None
        q = rope(q, positions, c.n_rot, base, neox, pos_scale, factors, c.rope_attn_factor)
        k = rope(k, positions, c.n_rot, base, neox, pos_scale, factors, c.rope_attn_factor)
    if cache.dtype is not None:
        k, v = k.astype(cache.dtype), v.astype(cache.dtype)
    if len(cache.k) > i:
        cache.k[i] = np.concatenate([cache.k[i], k])
        cache.v[i] = np.concatenate([cache.v[i], v])
    else:
        cache.k.append(k)
        cache.v.append(v)
    if rec is not None:
        rec[layer.prefix + "q"], rec[layer.prefix + "k"], rec[layer.prefix + "v"] = q.reshape(n, -1), k.reshape(n, -1), v.reshape(n, -1)
    k_pos = np.concatenate([cache.positions, positions])
    slopes = alibi_slopes(c.n_head, c.alibi_max_bias) if c.recipe.alibi else None
    out = attention(
        q,
        cache.k[i].astype(q.dtype, copy=False),
        cache.v[i].astype(q.dtype, copy=False),
        positions,
        k_pos,
        c.attn_scale,
        softcap_value=c.attn_softcap,
        window=c.sliding_window if c.swa_layers[i] else 0,
        slopes=slopes,
    )
    if rec is not None:
        rec[layer.prefix + "attn"] = out.reshape(n, -1)
    return layer.linear("attn_output", out.reshape(n, -1), c.n_embd)


def _ffn_block(c: ModelConfig, layer: _Layer, h: np.ndarray) -> np.ndarray:
    up = layer.linear("ffn_up", h, c.n_ff)
    kind = c.recipe.ffn
    if kind in ("swiglu", "geglu"):
        gate = layer.linear("ffn_gate", h, c.n_ff)
        act = swiglu(gate, up) if kind == "swiglu" else geglu(gate, up)
    else:
        act = gelu_tanh(up) if kind == "gelu" else gelu_erf(up)
    return layer.linear("ffn_down", act, c.n_embd)


def forward(model: Model, ids, dtype=np.float32, cache: KVCache | None = None, lora=None, checkpoints: dict | None = None) -> np.ndarray:
    """Logits (len(ids), vocab) for `ids` appended after what `cache` holds (a fresh one if None).

    lora: a wgllm.lora.LoraAdapter whose updates are added to the projections it adapts.
    checkpoints: a dict that gets the named intermediate tensors, (len(ids), width) each, in order:
    embd, per layer blk.{i}.attn_norm, .q, .k, .v (after q/k norms and RoPE), .attn (before
    attn_output), .attn_residual (x + attention, post-norm included), .ffn_norm (not in a parallel
    block), .x (the layer's output), then output_norm and logits -- what the GPU engines'
    checkpoints() give (wgllm diff).
    """
    rec = checkpoints
    c = model.config
    if lora is not None:
        from wgllm.lora import check_lora

        check_lora(lora, model)
    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim != 1 or len(ids) == 0:
        raise ValueError(f"forward needs a non-empty 1-D list of token ids, got shape {ids.shape}")
    if ids.min() < 0 or ids.max() >= c.n_vocab:
        raise ValueError(f"token id {int(ids.max() if ids.max() >= c.n_vocab else ids.min())} is outside the vocabulary of {c.n_vocab}")
    cache = cache if cache is not None else KVCache()
    positions = cache.length + np.arange(len(ids), dtype=np.int64)
    x = embedding(model.weight("token_embd.weight", (c.n_vocab, c.n_embd)), ids).astype(dtype)
    if c.recipe.embed_scale:
        x = x * dtype(math.sqrt(c.n_embd))
    if c.recipe.learned_pos:
        pos_table = model.weight("position_embd.weight")
        if positions[-1] >= pos_table.shape[0]:
            raise ValueError(f"position {positions[-1]} is beyond the model's {pos_table.shape[0]} learned positions")
        x = x + pos_table[positions].astype(dtype)
    record = (lambda name, v: rec.__setitem__(name, v)) if rec is not None else (lambda name, v: None)  # noqa: E731
    record("embd", x)
    for i in range(c.n_layer):
        layer = _Layer(model, f"blk.{i}.", dtype, lora)
        h = _norm(c, layer, "attn_norm", x)
        record(layer.prefix + "attn_norm", h)
        attn = _attention_block(c, layer, i, h, positions, cache, rec)
        if c.recipe.post_norms:
            attn = _norm(c, layer, "post_attention_norm", attn)
        if c.recipe.parallel:
            record(layer.prefix + "attn_residual", x + attn)
            x = x + attn + _ffn_block(c, layer, h)
            record(layer.prefix + "x", x)
            continue
        x = x + attn
        record(layer.prefix + "attn_residual", x)
        h = _norm(c, layer, "ffn_norm", x)
        record(layer.prefix + "ffn_norm", h)
        ffn = _ffn_block(c, layer, h)
        if c.recipe.post_norms:
            ffn = _norm(c, layer, "post_ffw_norm", ffn)
        x = x + ffn
        record(layer.prefix + "x", x)
    cache.positions = np.concatenate([cache.positions, positions])
    out = _Layer(model, "", dtype)
    x = _norm(c, out, "output_norm", x)
    record("output_norm", x)
    logits = matmul(x, model.output_weight().astype(dtype, copy=False), out.get("output.bias", (c.n_vocab,)))
    if c.final_softcap:
        logits = softcap(logits, c.final_softcap)
    record("logits", logits)
    return logits


# -- sampling (sample.wgsl) ----------------------------------------------------------------------

_U32 = 0xFFFFFFFF


def pcg_hash(v: int) -> int:
    """PCG-RXS-M-XS 32-bit hash (Jarzynski & Olano); the shader computes the same in u32."""
    state = (v * 747796405 + 2891336453) & _U32
    word = (((state >> ((state >> 28) + 4)) ^ state) * 277803737) & _U32
    return ((word >> 22) ^ word) & _U32


def random_uniform(seed: int, step: int) -> float:
    """A uniform number in [0, 1) with 24 random bits, from (seed, step) alone: counter-based."""
    return (pcg_hash((seed & _U32) ^ pcg_hash(step & _U32)) >> 8) / 16777216.0


def sample_top_k(logits: np.ndarray, top_k: int, temperature: float, u: float) -> int:
    """MediaPipe's sampler: keep the top_k logits, divide by temperature, softmax, draw with u.

    top_k <= 1 or temperature <= 0 is greedy (ties go to the lowest id). Candidates are ordered by
    logit, then id; the draw is the first candidate whose cumulative probability exceeds u.
    """
    return sample(logits, top_k=top_k, temperature=temperature, u=u).token


# The sampler chain, in llama.cpp's order (common/sampling.cpp): logit_bias, penalties, top-k,
# top-p, min-p, temperature, draw. Each step is a plain function; `sample` chains them as
# sample.wgsl does. All arithmetic is float32 and in the shader's order, so the GPU picks the same
# token for the same u (exp may differ by an ulp between numpy and a GPU: a draw that lands within
# that of a boundary may differ, as it may for top-k and temperature alone).


def apply_logit_bias(logits: np.ndarray, bias: dict[int, float]) -> np.ndarray:
    """logits[id] += bias[id] (OpenAI's logit_bias; the first step of the chain)."""
    out = np.array(logits, dtype=np.float32)
    for i, b in bias.items():
        out[i] = out[i] + np.float32(b)
    return out


def penalty_counts(history, last_n: int) -> dict[int, int]:
    """How often each id occurs in the last `last_n` ids of `history` (-1: all of it; 0: none)."""
    history = list(history)
    window = history if last_n < 0 else history[max(0, len(history) - last_n) :] if last_n else []
    counts: dict[int, int] = {}
    for t in window:
        counts[int(t)] = counts.get(int(t), 0) + 1
    return counts


def penalty_offset(count: int, frequency_penalty: float, presence_penalty: float) -> np.float32:
    """count * frequency_penalty + presence_penalty in float32 (the host computes it for the GPU)."""
    return np.float32(np.float32(count) * np.float32(frequency_penalty) + np.float32(presence_penalty))


def apply_penalties(
    logits: np.ndarray, counts: dict[int, int], repetition_penalty: float, frequency_penalty: float, presence_penalty: float
) -> np.ndarray:
    """llama.cpp's penalties sampler, for every id with count > 0: the repetition penalty divides a
    positive logit and multiplies one <= 0, then OpenAI's frequency and presence penalties subtract
    count * frequency_penalty + presence_penalty."""
    out = np.array(logits, dtype=np.float32)
    rp = np.float32(repetition_penalty)
    for i, n in counts.items():
        if n <= 0:
            continue
        v = out[i]
        v = v * rp if v <= 0 else v / rp
        out[i] = v - penalty_offset(n, frequency_penalty, presence_penalty)
    return out


def top_k_ids(logits: np.ndarray, k: int) -> np.ndarray:
    """The ids of the k largest logits, by logit descending then id ascending."""
    ids = np.arange(logits.shape[0])
    return np.lexsort((ids, -logits))[: min(int(k), logits.shape[0])]


def top_p_keep(values: np.ndarray, top_p: float) -> int:
    """How many of the sorted candidate logits nucleus sampling keeps: the shortest prefix whose
    probability (softmax over the candidates, temperature 1) reaches top_p; all for top_p >= 1."""
    if top_p >= 1.0:
        return len(values)
    cdf = np.cumsum(np.exp((values - values[0]).astype(np.float32)), dtype=np.float32)
    reached = np.nonzero(cdf >= np.float32(top_p) * cdf[-1])[0]
    return int(reached[0]) + 1 if len(reached) else len(values)


def min_p_keep(values: np.ndarray, min_p: float) -> int:
    """How many of the sorted candidate logits min-p keeps: those whose probability is at least
    min_p times the largest one's (exp(v - max) >= min_p, temperature 1); at least one."""
    if min_p <= 0.0:
        return len(values)
    rel = np.exp((values - values[0]).astype(np.float32))
    return max(1, int(np.count_nonzero(rel >= np.float32(min_p))))


def draw(values: np.ndarray, temperature: float, u: float) -> int:
    """The index drawn by u from softmax(values / temperature) over sorted candidate logits: the
    first whose cumulative weight exceeds u * total (a MASKED candidate weighs 0)."""
    with np.errstate(over="ignore"):
        p = np.exp(((values - values[0]) / np.float32(temperature)).astype(np.float32))
    p[values == MASKED] = 0
    cdf = np.cumsum(p, dtype=np.float32)
    return min(int(np.searchsorted(cdf, np.float32(u) * cdf[-1], side="right")), len(values) - 1)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    m = x.max()
    return (x - (m + np.log(np.exp(x - m).sum()))).astype(np.float32)


MASKED = np.finfo(np.float32).min  # a logit a grammar's mask leaves out (sample.wgsl's MASKED)


def apply_token_mask(logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The logits with every id the boolean `mask` leaves out set to MASKED (sample.wgsl's step 0)."""
    return np.where(mask, logits, MASKED).astype(np.float32)


@dataclass
class Sampled:
    """A sampled token; with logprobs, its log-probability and the top_logprobs best (id, logprob)."""

    token: int
    logprob: float | None = None
    top: list[tuple[int, float]] | None = None


def sample(
    logits: np.ndarray,
    *,
    top_k: int,
    temperature: float,
    u: float,
    top_p: float = 1.0,
    min_p: float = 0.0,
    logit_bias: dict[int, float] | None = None,
    counts: dict[int, int] | None = None,
    repetition_penalty: float = 1.0,
    frequency_penalty: float = 0.0,
    presence_penalty: float = 0.0,
    logprobs: bool = False,
    top_logprobs: int = 0,
    mask: np.ndarray | None = None,
) -> Sampled:
    """The whole chain (see above). top_k <= 1 or temperature <= 0 is greedy: the largest adjusted
    logit, ties to the lowest id. Log-probabilities are the log-softmax over the whole vocabulary of
    the logits after logit_bias and the penalties, before truncation and temperature. `mask`
    (bool, one per id): a grammar's, the ids it leaves out read as MASKED after the penalties."""
    x = np.asarray(logits, dtype=np.float32)
    if logit_bias:
        x = apply_logit_bias(x, logit_bias)
    if counts:
        x = apply_penalties(x, counts, repetition_penalty, frequency_penalty, presence_penalty)
    if mask is not None:
        x = apply_token_mask(x, mask)
    greedy = top_k <= 1 or temperature <= 0
    ids = top_k_ids(x, 1 if greedy else top_k)
    if greedy:
        pick = 0
    else:
        values = x[ids]
        m = min(top_p_keep(values, top_p), min_p_keep(values, min_p))
        pick = draw(values[:m], temperature, u)
    out = Sampled(int(ids[pick]))
    if logprobs:
        lp = log_softmax(x)
        out.logprob = float(lp[out.token])
        out.top = [(int(i), float(lp[i])) for i in top_k_ids(x, top_logprobs)] if top_logprobs else []
    return out
