"""wgllm.quant against gguf.quants (llama.cpp's own Python (de)quantisers) and on its own round trip.

- dequantize is bit-exact with gguf.quants.dequantize on random valid blocks of every type and on
  real tensors of SmolLM2 (Q4_1, Q8_0) and Gemma-3 270M (Q8_0, Q5_0, Q4_K, Q6_K, F32) (Q5_1, Q2_K,
  Q3_K, Q5_K, IQ4_NL, IQ4_XS: random blocks only, and quantize refuses the dequantise-only ones);
- quantize is byte-identical with gguf.quants.quantize for every type gguf.quants can quantise;
- quantize -> dequantize stays within the per-type bounds of ERROR_BOUNDS, and gguf.quants decodes
  our blocks to the same values (so the layout is llama.cpp's, not merely self-consistent).
"""

from __future__ import annotations

from pathlib import Path

import gguf.quants as gguf_quants
import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T

from wgllm.gguf_io import GGUFFile
from wgllm.quant import DEQUANTIZE_ONLY, block_size, dequantize, quantize, type_nbytes

SCALAR_TYPES = (T.F32, T.F16, T.BF16)
BLOCK_TYPES = (T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.IQ4_NL, T.IQ4_XS)
ALL_TYPES = SCALAR_TYPES + BLOCK_TYPES
QUANTIZABLE = tuple(t for t in ALL_TYPES if t not in DEQUANTIZE_ONLY)
GGUF_CAN_QUANTIZE = (T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1)  # gguf.quants 0.19
# byte offsets of the f16 scale/min fields inside one block (ggml-common.h's block_* structs)
F16_FIELDS = {
    T.Q8_0: (0,), T.Q4_0: (0,), T.Q4_1: (0, 2), T.Q5_0: (0,), T.Q5_1: (0, 2), T.Q2_K: (80, 82), T.Q3_K: (108,),
    T.Q4_K: (0, 2), T.Q5_K: (0, 2), T.Q6_K: (208,), T.IQ4_NL: (0,), T.IQ4_XS: (0,),
}

# -- error bounds of quantize -> dequantize, per element ------------------------------------------
# f16_err(v): how far f16 rounding can move v (half an ulp: 2^-11 relative, 2^-25 among subnormals).
# Q4_0/Q5_0 allow a whole step: the value opposite in sign to the absmax lands one step past the top
# level (ggml maps absmax to -8/-16, the grid ends at +7/+15). Q4_K: the sub-block scale is rounded
# up to the 6-bit grid of step d, the min to nearest on the grid of dmin. Q6_K: the 8-bit sub-block
# scale can be off by one step D, which the 32 levels multiply at the clamped end.
F16_REL, F16_ABS = 2.0**-11, 2.0**-25
FLOAT_SLACK = 2.0**-20  # float32 rounding inside the quantisers, relative to the block's absmax


def f16_err(v):
    return np.maximum(np.abs(v) * F16_REL, F16_ABS)


def _absmax(b):
    return np.abs(b).max(axis=-1, keepdims=True)


def _bound_q4_k(b):  # b: (n, 256)
    sub = b.reshape(len(b), 8, 32)
    lo = np.minimum(sub.min(axis=-1, keepdims=True), 0)
    span = sub.max(axis=-1, keepdims=True) - lo  # (n, 8, 1)
    d = span.max(axis=1, keepdims=True) / 15 / 63
    dmin = (-lo).max(axis=1, keepdims=True) / 63
    per_sub = span / 30 + (d + 2 * f16_err(d)) / 2 + (dmin + f16_err(dmin)) / 2 + 63 * f16_err(dmin)
    return np.broadcast_to(per_sub, sub.shape).reshape(b.shape)


def _bound_q6_k(b):  # b: (n, 256)
    sub = b.reshape(len(b), 16, 16)
    step = _absmax(b)[:, :, None] / 4096  # D
    per_sub = _absmax(sub) / 32 + 33 * (step + 128 * f16_err(step))
    return np.broadcast_to(per_sub, sub.shape).reshape(b.shape)


ERROR_BOUNDS = {  # type -> (blocks (n, block) float64) -> bound (n, block)
    T.F32: lambda b: np.zeros_like(b),
    T.F16: lambda b: f16_err(b),
    T.BF16: lambda b: np.abs(b) * 2.0**-8,
    T.Q8_0: lambda b: (s := _absmax(b) / 127) / 2 + 127 * f16_err(s),
    T.Q4_0: lambda b: (s := _absmax(b) / 8) + 8 * f16_err(s),
    T.Q5_0: lambda b: (s := _absmax(b) / 16) + 16 * f16_err(s),
    T.Q4_1: lambda b: (s := (b.max(-1, keepdims=True) - b.min(-1, keepdims=True)) / 15) / 2
    + 15 * f16_err(s)
    + f16_err(b.min(-1, keepdims=True)),
    T.Q5_1: lambda b: (s := (b.max(-1, keepdims=True) - b.min(-1, keepdims=True)) / 31) / 2
    + 31 * f16_err(s)
    + f16_err(b.min(-1, keepdims=True)),
    T.Q4_K: _bound_q4_k,
    T.Q6_K: _bound_q6_k,
}


# -- inputs ------------------------------------------------------------------------------------------


def shapes_for(t):
    block = GGML_QUANT_SIZES[t][0]
    if block == 1:
        return [(1, 32), (7, 33), (127, 5), (3, 5, 7)]
    return [(1, block), (7, 3 * block), (127, 2 * block), (2, 3, 5 * block)]


def crafted_row(n: int) -> np.ndarray:
    """Blocks of 32 that hit the corner cases: all zero, constant, exact .5 ties for Q8_0's roundf
    (absmax 127 -> scale 1) and Q4_0's truncation (absmax -8 -> scale 1), one huge outlier, all
    positive (Q4_K keeps its min at 0), all negative."""
    ties = np.arange(32) - 15.5
    ties[3] = 127.0
    q4_ties = np.linspace(-7.5, 7.5, 32)
    q4_ties[0] = -8.0
    outlier = np.linspace(-0.01, 0.02, 32)
    outlier[17] = -300.0
    patterns = [np.zeros(32), np.full(32, 1.25), ties, q4_ties, outlier, np.linspace(0.5, 2, 32), np.linspace(-9, -3, 32)]
    row = np.concatenate(patterns * (n // (32 * len(patterns)) + 1))[:n]
    return row


def make_input(kind: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "normal":
        x = rng.standard_normal(shape)
    elif kind == "scaled_shifted":
        x = rng.standard_normal(shape) * 250 + 40
    elif kind == "small":
        x = rng.standard_normal(shape) * 0.05 - 0.01
    elif kind == "heavy_tailed":
        x = rng.standard_t(2, shape) * np.exp(rng.uniform(-3, 3, shape[:-1] + (1,)))
    else:
        assert kind == "crafted"
        x = np.broadcast_to(crafted_row(shape[-1]), shape) * rng.choice([1.0, -1.0, 3.0], shape[:-1] + (1,))
    return np.ascontiguousarray(x, dtype=np.float32)


INPUT_KINDS = ("normal", "scaled_shifted", "small", "heavy_tailed", "crafted")


def random_raw(t, shape, seed: int) -> np.ndarray:
    """Random bytes that form valid blocks of `t`: every f16 field finite (scales of both signs,
    varied magnitudes, some zero); F32/F16/BF16 from finite float32 values."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    values = (rng.standard_normal(n) * np.exp(rng.uniform(-8, 8, n))).astype(np.float32)
    if t == T.F32:
        return values.view(np.uint8)
    if t == T.F16:
        return values.astype(np.float16).view(np.uint8)
    if t == T.BF16:  # top halves of finite float32s are finite bf16s
        return (values.view(np.uint32) >> 16).astype("<u2").view(np.uint8)
    block, size = GGML_QUANT_SIZES[t]
    raw = rng.integers(0, 256, (n // block, size), dtype=np.uint8)
    for offset in F16_FIELDS[t]:
        field = (rng.standard_normal(len(raw)) * np.exp(rng.uniform(-6, 4, len(raw)))).astype(np.float16)
        field[rng.random(len(raw)) < 0.05] = 0
        raw[:, offset : offset + 2] = field.view(np.uint8).reshape(-1, 2)
    return raw.reshape(-1)


def gguf_dequantize(raw: np.ndarray, t, shape) -> np.ndarray:
    rows = int(np.prod(shape[:-1]))
    return np.asarray(gguf_quants.dequantize(np.asarray(raw).reshape(rows, -1), t), np.float32).reshape(shape)


def gguf_quantize_bytes(x: np.ndarray, t) -> np.ndarray:
    out = np.ascontiguousarray(gguf_quants.quantize(x, t))
    return out.view(np.uint8).reshape(*x.shape[:-1], -1)


def assert_bit_equal(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    ours_bits, theirs_bits = ours.view(np.uint32), np.ascontiguousarray(theirs, np.float32).view(np.uint32)
    differ = np.flatnonzero(ours_bits.ravel() != theirs_bits.ravel())
    assert differ.size == 0, f"{differ.size} values differ, first at {differ[0]}: {ours.ravel()[differ[0]]} vs {theirs.ravel()[differ[0]]}"


# -- dequantize ----------------------------------------------------------------------------------


@pytest.mark.parametrize("t", ALL_TYPES, ids=lambda t: t.name)
def test_dequantize_is_bit_exact_with_gguf_on_random_blocks(t):
    for i, shape in enumerate(shapes_for(t)):
        raw = random_raw(t, shape, seed=100 + i)
        raw.setflags(write=False)  # as a read-only memmap slice
        before = raw.copy()
        ours = dequantize(raw, t, shape)
        assert ours.shape == shape and ours.flags.writeable
        assert np.isfinite(ours).all()
        assert_bit_equal(ours, gguf_dequantize(raw, t, shape))
        np.testing.assert_array_equal(raw, before)


def test_dequantize_sees_every_nibble_and_bit():
    """Random bytes above cover the layouts; here each quant byte is swept through all 256 values
    so no bit (Q5_0's qh, Q6_K's qh pairs, Q4_K's, Q5_K's and Q3_K's packed 6-bit scales, IQ4_XS's
    split scales) escapes comparison."""
    for t in BLOCK_TYPES:
        block, size = GGML_QUANT_SIZES[t]
        raw = np.empty((256, size), np.uint8)
        raw[:] = (np.arange(256, dtype=np.uint8)[:, None] + np.arange(size, dtype=np.uint8) * 37).astype(np.uint8)
        for offset in F16_FIELDS[t]:
            raw[:, offset : offset + 2] = np.linspace(-2, 3, 256).astype(np.float16).view(np.uint8).reshape(-1, 2)
        shape = (256, block)
        assert_bit_equal(dequantize(raw.reshape(-1), t, shape), gguf_dequantize(raw, t, shape))


# -- quantize ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", INPUT_KINDS)
@pytest.mark.parametrize("t", GGUF_CAN_QUANTIZE, ids=lambda t: t.name)
def test_quantize_is_byte_identical_to_gguf(t, kind):
    for i, shape in enumerate(shapes_for(t)):
        x = make_input(kind, shape, seed=200 + i)
        ours = quantize(x, t)
        assert ours.dtype == np.uint8
        assert ours.shape == (*shape[:-1], type_nbytes(t, shape[-1]))
        theirs = gguf_quantize_bytes(x, t)
        differ = np.flatnonzero(ours.ravel() != theirs.ravel())
        assert differ.size == 0, f"{t.name} {kind} {shape}: {differ.size} bytes differ, first at {differ[0]}"
    # float64 input rounds as gguf's does too; 1 + 2^-11 + 2^-30 is an f16 tie only after f32 rounding
    x64 = make_input(kind, shapes_for(t)[1], seed=250).astype(np.float64)
    x64.ravel()[::7] = 1 + 2.0**-11 + 2.0**-30
    np.testing.assert_array_equal(quantize(x64, t), gguf_quantize_bytes(x64, t))


@pytest.mark.parametrize("kind", INPUT_KINDS)
@pytest.mark.parametrize("t", QUANTIZABLE, ids=lambda t: t.name)
def test_quantize_round_trip_within_bound(t, kind):
    block = GGML_QUANT_SIZES[t][0]
    bound_block = 256 if t in (T.Q4_K, T.Q6_K) else block
    for i, shape in enumerate(shapes_for(t)):
        x = make_input(kind, shape, seed=300 + i)
        raw = quantize(x, t)
        back = dequantize(raw.reshape(-1), t, shape)
        # an independent decoder reads our bytes the same way: the blocks are llama.cpp's layout
        assert_bit_equal(back, gguf_dequantize(raw, t, shape))
        blocks = x.astype(np.float64).reshape(-1, bound_block)
        bound = ERROR_BOUNDS[t](blocks)
        if t in BLOCK_TYPES:
            bound = bound + FLOAT_SLACK * _absmax(blocks)
        err = np.abs(back.astype(np.float64).reshape(blocks.shape) - blocks)
        worst = np.unravel_index(np.argmax(err - bound), err.shape)
        assert (err <= bound).all(), f"{t.name} {kind} {shape}: error {err[worst]:g} > bound {bound[worst]:g} at {worst}"


def test_quantize_of_exact_grid_values_is_lossless():
    """Values already on a type's grid come back exactly (checks scale choice, not just bounds)."""
    rng = np.random.default_rng(7)
    levels = {T.Q8_0: (-127, 127), T.Q4_0: (-8, 7), T.Q5_0: (-16, 15), T.Q6_K: (-32, 31)}
    for t, (lo, hi) in levels.items():
        block = 256 if t == T.Q6_K else 32
        q = rng.integers(lo, hi + 1, (5, block)).astype(np.float32)
        q[:, 0] = lo  # ggml maps the absmax to the low end (or +127 for Q8_0's symmetric grid)
        if t == T.Q6_K:
            q.reshape(5, 16, 16)[:, :, 0] = lo  # every sub-block reaches -32, so all 16 scales are 1
        x = q * np.float32(0.25)
        np.testing.assert_array_equal(dequantize(quantize(x, t).reshape(-1), t, x.shape), x)


# -- helpers and errors ----------------------------------------------------------------------------

# sizeof(block_*) from ggml-common.h's struct fields, elements per block
BLOCK_STRUCTS = {
    T.Q8_0: (32, 2 + 32),
    T.Q4_0: (32, 2 + 16),
    T.Q4_1: (32, 2 + 2 + 16),
    T.Q5_0: (32, 2 + 4 + 16),
    T.Q5_1: (32, 2 + 2 + 4 + 16),
    T.Q2_K: (256, 256 // 16 + 256 // 4 + 2 + 2),
    T.Q3_K: (256, 256 // 8 + 256 // 4 + 12 + 2),
    T.Q4_K: (256, 2 + 2 + 12 + 256 // 2),
    T.Q5_K: (256, 2 + 2 + 12 + 256 // 8 + 256 // 2),
    T.Q6_K: (256, 256 // 2 + 256 // 4 + 256 // 16 + 2),
    T.IQ4_NL: (32, 2 + 16),
    T.IQ4_XS: (256, 2 + 2 + 256 // 64 + 256 // 2),
    T.F32: (1, 4),
    T.F16: (1, 2),
    T.BF16: (1, 2),
}


@pytest.mark.parametrize("t", ALL_TYPES, ids=lambda t: t.name)
def test_block_size_and_type_nbytes(t):
    block, size = BLOCK_STRUCTS[t]
    assert block_size(t) == block
    assert type_nbytes(t, 7 * 256) == 7 * 256 // block * size
    if t in DEQUANTIZE_ONLY:
        with pytest.raises(ValueError, match=f"quantize: {t.name} is read but not written by wgllm"):
            quantize(make_input("normal", (3, 256), 1), t)
    else:
        assert quantize(make_input("normal", (3, 256), 1), t).nbytes == type_nbytes(t, 3 * 256)


def test_errors_name_the_type_shape_and_sizes():
    with pytest.raises(ValueError, match="Q8_1 is not supported"):
        dequantize(np.zeros(36, np.uint8), T.Q8_1, (32,))
    with pytest.raises(ValueError, match="IQ2_XXS is not supported"):
        quantize(np.ones((1, 256), np.float32), T.IQ2_XXS)
    with pytest.raises(ValueError, match="Q2_K is read but not written by wgllm"):
        quantize(np.ones((1, 256), np.float32), T.Q2_K)
    with pytest.raises(ValueError, match=r"Q4_K.*\(3, 250\).*250 elements.*block of 256"):
        dequantize(np.zeros(3 * 144, np.uint8), T.Q4_K, (3, 250))
    with pytest.raises(ValueError, match=r"Q8_0.*\(2, 48\).*48 elements.*block of 32"):
        quantize(np.ones((2, 48), np.float32), T.Q8_0)
    with pytest.raises(ValueError, match=r"Q6_K tensor of shape \(2, 256\) needs 420 bytes, got 419"):
        dequantize(np.zeros(419, np.uint8), T.Q6_K, (2, 256))
    with pytest.raises(ValueError, match="uint8"):
        dequantize(np.zeros(32, np.float32), T.F32, (32,))
    with pytest.raises(ValueError, match=r"1 non-finite.*Q4_0"):
        quantize(np.array([[np.nan] + [1.0] * 31], np.float32), T.Q4_0)
    with pytest.raises(ValueError, match="too large for Q8_0"):
        quantize(np.full((1, 32), 1e9, np.float32), T.Q8_0)
    with pytest.raises(ValueError, match="not a whole number of Q4_1 blocks"):
        type_nbytes(T.Q4_1, 33)


# -- real files ----------------------------------------------------------------------------------
def _compare_real(path: Path, names: list[str], expected_types: set) -> None:
    f = GGUFFile(path)
    seen = set()
    for name in names:
        t = f.tensor(name)
        rows = min(t.shape[0], 2048) if len(t.shape) > 1 else 1
        shape = (rows, *t.shape[1:]) if len(t.shape) > 1 else t.shape
        raw = t.raw[: type_nbytes(t.ggml_type, int(np.prod(shape)))]
        ours = dequantize(raw, t.ggml_type, shape)
        assert_bit_equal(ours, gguf_dequantize(raw, t.ggml_type, shape))
        assert np.abs(ours).max() > 0
        seen.add(t.ggml_type)
    assert seen == expected_types


def test_real_smollm2_tensors_match_gguf(smollm2_path):
    names = ["token_embd.weight", "blk.0.ffn_down.weight", "blk.0.attn_k.weight", "blk.29.ffn_up.weight", "blk.0.attn_norm.weight"]
    _compare_real(smollm2_path, names, {T.Q8_0, T.Q4_1, T.F32})


def test_real_gemma3_tensors_match_gguf(gemma3_path):
    names = ["token_embd.weight", "blk.0.attn_k.weight", "blk.0.attn_output.weight", "blk.0.ffn_down.weight", "blk.17.ffn_gate.weight", "output_norm.weight"]
    _compare_real(gemma3_path, names, {T.Q8_0, T.Q5_0, T.Q4_K, T.Q6_K, T.F32})

    f = GGUFFile(gemma3_path)
    embd = f.tensor("token_embd.weight")
    assert embd.ggml_type == T.Q8_0 and embd.shape == (262144, 640)
    full = dequantize(embd.raw, embd.ggml_type, embd.shape)
    # the last rows too (the comparison above covered the first 2048)
    tail = embd.raw[-type_nbytes(T.Q8_0, 1000 * 640) :]
    assert_bit_equal(full[-1000:], gguf_dequantize(tail, T.Q8_0, (1000, 640)))
