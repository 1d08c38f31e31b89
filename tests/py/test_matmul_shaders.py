"""Quantised matmul (decode and prefill) and embedding kernels against wgllm.reference.

Weights are random valid blocks of each GGUF type (random quant bytes, random finite f16 scales)
or tensors from the real model files; the oracle is reference.matmul / reference.embedding on the
same weights dequantised by gguf.quants (llama.cpp's own Python package), in float64. Outputs are
poisoned with NaN before every kernel runs.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # silences lavapipe's warning about a missing runtime dir

import gguf.quants
import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gpu_tolerances import ATOL_FLOOR, TOLERANCES

from wgllm import reference
from wgllm.gguf_io import GGUFFile
from wgllm.gpu import weights
from wgllm.gpu.runtime import GpuContext, get_context, shader_constant

T = GGMLQuantizationType
NAN_BITS = 0x7FC00001
TYPES = [T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q4_K, T.Q6_K, T.Q5_1, T.IQ4_NL, T.Q5_K, T.IQ4_XS, T.Q3_K, T.Q2_K]
# Byte offsets of each block's f16 scale fields: random bytes there could be inf/NaN.
F16_FIELDS = {T.Q8_0: (0,), T.Q4_0: (0,), T.Q4_1: (0, 2), T.Q5_0: (0,), T.Q4_K: (0, 2), T.Q6_K: (208,), T.Q5_1: (0, 2), T.IQ4_NL: (0,), T.Q5_K: (0, 2), T.IQ4_XS: (0,), T.Q3_K: (108,), T.Q2_K: (80, 82)}
INPUT_RANGES = [(1.0, 0.5), (30.0, -100.0), (0.01, 3.0)]
# Both kernel families run every test below: cpu (matvec, main) and gpu (matvec_split, main_tiled).
KERNELS = ["cpu", "gpu"]


@pytest.fixture(scope="module")
def ctx():
    return get_context()


def random_weight(rng, t: GGMLQuantizationType, n_out: int, k: int) -> np.ndarray:
    """GGUF bytes (n_out, row_bytes) of a random weight: floats for F32/F16/BF16, otherwise random
    quant bytes (every bit pattern of quants, scales and mins occurs) with finite f16 scales."""
    if t in (T.F32, T.F16, T.BF16):
        w = rng.standard_normal((n_out, k)).astype(np.float32) * np.float32(0.2)
        if t == T.F16:
            return w.astype("<f2").view(np.uint8)
        if t == T.BF16:
            return (w.view(np.uint32) >> 16).astype("<u2").view(np.uint8)
        return w.view(np.uint8)
    block, size = GGML_QUANT_SIZES[t]
    blocks = rng.integers(0, 256, (n_out, k // block, size), dtype=np.uint8)
    for off in F16_FIELDS[t]:
        scale = (rng.uniform(0.002, 0.05, blocks.shape[:2]) * rng.choice([-1.0, 1.0], blocks.shape[:2])).astype("<f2")
        blocks[:, :, off : off + 2] = scale.view(np.uint8).reshape(*blocks.shape[:2], 2)
    return blocks.reshape(n_out, -1)


def dequantized(raw: np.ndarray, t: GGMLQuantizationType, n_out: int, k: int) -> np.ndarray:
    return gguf.quants.dequantize(np.ascontiguousarray(raw).reshape(n_out, -1), t).reshape(n_out, k).astype(np.float32)


def poisoned(ctx, n_words: int):
    return ctx.buffer(np.full(n_words, NAN_BITS, dtype=np.uint32))


def check(op: str, got: np.ndarray, want: np.ndarray, magnitude: float = 0.0) -> None:
    """got ~ want within TOLERANCES[op]; the absolute part is relative to the largest |want|, or to
    `magnitude` where the sums' terms are larger than their result (cancellation)."""
    rtol, atol_rel = TOLERANCES[op]
    assert got.shape == want.shape
    assert np.all(np.isfinite(got)), f"{op}: {np.sum(~np.isfinite(got))} non-finite outputs (unwritten or overflowed)"
    atol = max(atol_rel * max(float(np.max(np.abs(want))), magnitude), ATOL_FLOOR)
    np.testing.assert_allclose(got, want.astype(np.float32), rtol=rtol, atol=atol, err_msg=op)


def gpu_matmul(ctx, gw, x: np.ndarray, bias: np.ndarray | None, residual: np.ndarray | None = None, kernels: str = "cpu") -> np.ndarray:
    n = x.shape[0]
    y = poisoned(ctx, n * gw.n_out)
    bias_buf = None if bias is None else ctx.buffer(bias)
    residual_buf = None if residual is None else ctx.buffer(residual)
    weights.matmul(ctx, None, gw, ctx.buffer(x), y, n, bias_buf, residual_buf, kernels=kernels)
    return ctx.read(y, shape=(n, gw.n_out))


def expected_matmul(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, residual: np.ndarray | None = None) -> np.ndarray:
    y = reference.matmul(x.astype(np.float64), w.astype(np.float64), None if bias is None else bias.astype(np.float64))
    return y if residual is None else reference.add(y, residual.astype(np.float64))


# (n rows of x, n_out, blocks per row): n = 1 runs the decode kernel, the rest the tiled one (cpu
# family: 32 x 32 tiles; gpu: 64 W rows by 32 x rows, so 579 rows end in a tile of 3 and 33 x rows
# in one of 1).
CASES = [(1, 1, 3), (1, 7, 2), (1, 579, 3), (1, 127, 1), (7, 127, 2), (33, 579, 3), (128, 7, 2), (7, 1, 1)]


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("t", TYPES, ids=lambda t: t.name)
def test_matmul_random_weights(ctx, t, kernels):
    block = GGML_QUANT_SIZES[t][0]
    unit = 256 if block == 256 else 32  # K-quants need whole 256-blocks; the rest 32-element rows
    for i, (n, n_out, blocks) in enumerate(CASES):
        rng = np.random.default_rng(1000 * int(t) + i)
        k = unit * blocks
        raw = random_weight(rng, t, n_out, k)
        w = dequantized(raw, t, n_out, k)
        assert np.all(np.isfinite(w))
        scale, shift = INPUT_RANGES[i % len(INPUT_RANGES)]
        x = (rng.standard_normal((n, k)) * scale + shift).astype(np.float32)
        bias = (rng.standard_normal(n_out) * 3).astype(np.float32) if i % 2 else None
        gw = weights.upload(ctx, weights.repack(raw.reshape(-1), t, (n_out, k)))
        got = gpu_matmul(ctx, gw, x, bias, kernels=kernels)
        check("matmul", got, expected_matmul(x, w, bias))


@pytest.mark.parametrize("kernels", KERNELS)
def test_matmul_caches_stay_bounded_over_prompt_lengths(ctx, kernels):
    """A weight keeps uniforms and bind groups for its decode launch and the last PREFILL_NS_KEPT
    prefill lengths only: 40 prompt lengths in turn (each checked against the reference) leave the
    caches no larger than after the first few, and a length seen again is rebuilt correctly."""
    t, n_out, k = T.Q8_0, 70, 64
    rng = np.random.default_rng(77)
    raw = random_weight(rng, t, n_out, k)
    w = dequantized(raw, t, n_out, k)
    gw = weights.upload(ctx, weights.repack(raw.reshape(-1), t, (n_out, k)))
    x_all = rng.standard_normal((64, k)).astype(np.float32)
    x_buf, y_buf = ctx.buffer(x_all), poisoned(ctx, 64 * n_out)
    sizes = []
    for n in [1, *range(2, 42), 3, 1]:
        weights.matmul(ctx, None, gw, x_buf, y_buf, n, kernels=kernels)
        check("matmul", ctx.read(y_buf, shape=(64, n_out))[:n], expected_matmul(x_all[:n], w, None))
        sizes.append((len(gw._params), len(gw._bind_groups)))
    kept = 1 + weights.PREFILL_NS_KEPT  # the decode length and the last prefill lengths, one chunk
    assert max(p for p, _ in sizes) == kept and max(b for _, b in sizes) == kept, sizes
    assert gw._prefill_ns == [39, 40, 41, 3]


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("t", TYPES, ids=lambda t: t.name)
def test_matmul_residual_epilogue(ctx, t, kernels):
    """y = x W^T (+ bias) + residual in one launch (the engine's fused residual add), decode and
    prefill kernels of the family, odd shapes; the residual is large and shifted so that a missed or
    doubled add shows."""
    block = GGML_QUANT_SIZES[t][0]
    unit = 256 if block == 256 else 32
    for i, (n, n_out, blocks) in enumerate(CASES):
        rng = np.random.default_rng(2000 * int(t) + i)
        k = unit * blocks
        raw = random_weight(rng, t, n_out, k)
        w = dequantized(raw, t, n_out, k)
        x = (rng.standard_normal((n, k)) + 0.5).astype(np.float32)
        bias = (rng.standard_normal(n_out) * 3).astype(np.float32) if i % 2 else None
        residual = (rng.standard_normal((n, n_out)) * 20 - 7).astype(np.float32)
        gw = weights.upload(ctx, weights.repack(raw.reshape(-1), t, (n_out, k)))
        got = gpu_matmul(ctx, gw, x, bias, residual, kernels)
        check("matmul", got, expected_matmul(x, w, bias, residual))
        # the same sum as matmul then add.wgsl's a + b (f32 addition commutes): bit for bit
        np.testing.assert_array_equal(got, gpu_matmul(ctx, gw, x, bias, kernels=kernels) + residual)


def test_matmul_residual_checks(ctx):
    rng = np.random.default_rng(3)
    gw = weights.upload(ctx, weights.repack(random_weight(rng, T.Q8_0, 8, 32).reshape(-1), T.Q8_0, (8, 32)))
    x, y = ctx.buffer(np.ones((2, 32), np.float32)), poisoned(ctx, 16)
    with pytest.raises(ValueError, match=r"residual of 32 bytes is shorter than n \* n_out = 2 \* 8 floats"):
        weights.matmul(ctx, None, gw, x, y, 2, None, ctx.buffer(np.ones(8, np.float32)))
    with pytest.raises(ValueError, match="the residual buffer is y itself"):
        weights.matmul(ctx, None, gw, x, y, 2, None, y)


def gpu_glu(ctx, gw, x: np.ndarray, bias: np.ndarray | None, kind: str, kernels: str = "cpu") -> np.ndarray:
    n = x.shape[0]
    y = poisoned(ctx, n * gw.n_out // 2)
    weights.matmul(ctx, None, gw, ctx.buffer(x), y, n, None if bias is None else ctx.buffer(bias), glu=kind, kernels=kernels)
    return ctx.read(y, shape=(n, gw.n_out // 2))


def expected_glu(x, w_gate, w_up, b_gate, b_up, kind: str) -> np.ndarray:
    act = {"swiglu": reference.swiglu, "geglu": reference.geglu}[kind]
    return act(expected_matmul(x, w_gate, b_gate), expected_matmul(x, w_up, b_up))


def glu_magnitude(x, w_gate, w_up) -> float:
    """The largest |gate| * sum|x||w_up| + 1.13 |up| * sum|x||w_gate| (|act(g)| <= |g|, |act'| <= 1.13
    for silu and gelu): the scale of act(gate) * up's f32 rounding when the sums cancel, which can
    leave a one-pair output far smaller than its terms."""
    x64, wg, wu = (np.abs(a.astype(np.float64)) for a in (x, w_gate, w_up))
    gate, up = x.astype(np.float64) @ w_gate.T.astype(np.float64), x.astype(np.float64) @ w_up.T.astype(np.float64)
    return float(np.max(np.abs(gate) * (x64 @ wu.T) + 1.13 * np.abs(up) * (x64 @ wg.T)))


def glu_pair(rng, t, n_ff: int, k: int, with_bias: bool):
    """A random (gate, up) of type t: their raw bytes, dequantised weights and biases (interleaved too)."""
    raws = [random_weight(rng, t, n_ff, k) for _ in range(2)]
    ws = [dequantized(r, t, n_ff, k) for r in raws]
    biases = [(rng.standard_normal(n_ff) * 2).astype(np.float32) for _ in range(2)] if with_bias else [None, None]
    interleaved = np.stack(biases, axis=1).reshape(-1) if with_bias else None
    return raws, ws, biases, interleaved


# (n rows of x, pairs, blocks per row)
GLU_CASES = [(1, 1, 3), (1, 7, 2), (1, 290, 3), (7, 63, 2), (33, 290, 3), (128, 7, 2), (7, 1, 1)]


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("t", TYPES, ids=lambda t: t.name)
def test_matmul_glu_epilogue(ctx, t, kernels):
    """ffn_gate and ffn_up as one matmul of (gate, up) row pairs writing act(gate) * up, decode and
    prefill kernels of the family, odd shapes, swiglu and geglu, with and without biases."""
    block = GGML_QUANT_SIZES[t][0]
    unit = 256 if block == 256 else 32
    for i, (n, n_ff, blocks) in enumerate(GLU_CASES):
        rng = np.random.default_rng(3000 * int(t) + i)
        k = unit * blocks
        (g_raw, u_raw), (wg, wu), (bg, bu), bias = glu_pair(rng, t, n_ff, k, with_bias=i % 2 == 1)
        x = rng.standard_normal((n, k)) + 0.2
        x = (x * 2.5 / np.abs(x @ wg.T.astype(np.float64)).max()).astype(np.float32)  # gates within +-2.5: act's curved part
        gw = weights.upload_pairs(ctx, *(weights.repack(r.reshape(-1), t, (n_ff, k)) for r in (g_raw, u_raw)))
        assert gw.pairs and gw.shape == (2 * n_ff, k)
        for kind in ("swiglu", "geglu"):
            check(kind, gpu_glu(ctx, gw, x, bias, kind, kernels), expected_glu(x, wg, wu, bg, bu, kind), glu_magnitude(x, wg, wu))


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("t", [T.Q8_0, T.Q4_K])
def test_split_pairs_match_unsplit(ctx, t, kernels):
    """A pairs weight forced into several chunks (each its pairs' gate rows, then their up rows) gives
    the same result as one chunk; an odd number of pairs leaves the last chunk odd."""
    rng = np.random.default_rng(6)
    n_ff, k = 2049, 512
    (g_raw, u_raw), (wg, wu), (bg, bu), bias = glu_pair(rng, t, n_ff, k, with_bias=True)
    repacked = [weights.repack(r.reshape(-1), t, (n_ff, k)) for r in (g_raw, u_raw)]
    whole = weights.upload_pairs(ctx, *repacked)
    split = weights.upload_pairs(ctx, *repacked, max_binding=1 << 20)
    assert len(whole.chunks) == 1 and len(split.chunks) >= 2
    assert all(c.rows % 4 == 0 for c in split.chunks[:-1]) and sum(c.rows for c in split.chunks) == 2 * n_ff
    for n, kind in ((1, "swiglu"), (33, "geglu")):
        x = rng.standard_normal((n, k))
        x = (x * 4 / np.abs(x @ wg.T.astype(np.float64)).max()).astype(np.float32)
        got = gpu_glu(ctx, split, x, bias, kind, kernels)
        np.testing.assert_array_equal(got, gpu_glu(ctx, whole, x, bias, kind, kernels))
        check(kind, got, expected_glu(x, wg, wu, bg, bu, kind))


def test_matmul_glu_checks(ctx):
    rng = np.random.default_rng(9)
    raw = random_weight(rng, T.Q8_0, 8, 32).reshape(-1)
    plain = weights.upload(ctx, weights.repack(raw, T.Q8_0, (8, 32)))
    pairs = weights.upload_pairs(ctx, weights.repack(raw, T.Q8_0, (8, 32)), weights.repack(raw, T.Q8_0, (8, 32)))
    x, y = ctx.buffer(np.ones((1, 32), np.float32)), poisoned(ctx, 16)
    with pytest.raises(ValueError, match="glu = 'swiglu' needs one of .* a weight from upload_pairs"):
        weights.matmul(ctx, None, plain, x, y, 1, glu="swiglu")
    with pytest.raises(ValueError, match="glu = 'relu' needs one of"):
        weights.matmul(ctx, None, pairs, x, y, 1, glu="relu")
    with pytest.raises(ValueError, match=r"runs with glu only"):
        weights.matmul(ctx, None, pairs, x, y, 1)
    with pytest.raises(ValueError, match=r"gate Q8_0 \(8, 32\) and up Q4_0 \(8, 32\) differ"):
        weights.upload_pairs(ctx, weights.repack(raw, T.Q8_0, (8, 32)), weights.repack(random_weight(rng, T.Q4_0, 8, 32).reshape(-1), T.Q4_0, (8, 32)))


@pytest.mark.parametrize("t", TYPES, ids=lambda t: t.name)
def test_embedding_random_tables(ctx, t):
    rng = np.random.default_rng(77 + int(t))
    block = GGML_QUANT_SIZES[t][0]
    vocab, dim = 131, (768 if block == 256 else 96)
    raw = random_weight(rng, t, vocab, dim)
    table = dequantized(raw, t, vocab, dim)
    ids = np.array([0, 130, 5, 5, 64, 129, 1], np.uint32)
    scale = math.sqrt(dim)
    repacked = weights.repack(raw.reshape(-1), t, (vocab, dim))
    row_bytes = max(a.shape[1] for a in repacked.arrays)
    gw = weights.upload(ctx, repacked, max_binding=row_bytes * 40)  # 40 rows a chunk: 4 chunks
    assert len(gw.chunks) == 4
    y = poisoned(ctx, len(ids) * dim)
    weights.embedding_lookup(ctx, None, gw, ctx.buffer(ids), y, len(ids), scale)
    check("embedding_q", ctx.read(y, shape=(len(ids), dim)), reference.embedding(table, ids).astype(np.float64) * scale)


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("t", [T.Q8_0, T.Q4_K, T.Q3_K], ids=lambda t: t.name)  # Q3_K: a decoded field and a 2-byte one
def test_split_weight_matches_unsplit(ctx, t, kernels):
    """A weight forced into several chunks (small max binding) gives the same result as one chunk."""
    rng = np.random.default_rng(5)
    n_out, k = 4099, 512
    raw = random_weight(rng, t, n_out, k)
    w = dequantized(raw, t, n_out, k)
    repacked = weights.repack(raw.reshape(-1), t, (n_out, k))
    whole = weights.upload(ctx, repacked)
    split = weights.upload(ctx, repacked, max_binding=1500 * max(a.shape[1] for a in repacked.arrays))  # 1500 rows a chunk
    assert len(whole.chunks) == 1 and len(split.chunks) == 3
    assert sum(c.rows for c in split.chunks) == n_out
    for n in (1, 33):
        x = (rng.standard_normal((n, k)) * 2 - 1).astype(np.float32)
        bias = rng.standard_normal(n_out).astype(np.float32)
        got_split = gpu_matmul(ctx, split, x, bias, kernels=kernels)
        np.testing.assert_array_equal(got_split, gpu_matmul(ctx, whole, x, bias, kernels=kernels))
        check("matmul", got_split, expected_matmul(x, w, bias))
        residual = (rng.standard_normal((n, n_out)) * 10 + 4).astype(np.float32)  # each chunk adds its own columns
        got_split = gpu_matmul(ctx, split, x, bias, residual, kernels)
        np.testing.assert_array_equal(got_split, gpu_matmul(ctx, whole, x, bias, residual, kernels))
        check("matmul", got_split, expected_matmul(x, w, bias, residual))


@pytest.mark.parametrize(
    "file,name,n",
    [
        ("gemma3", "blk.0.attn_output.weight", 1),  # Q4_K
        ("gemma3", "blk.0.attn_output.weight", 33),
        ("gemma3", "blk.0.ffn_down.weight", 1),  # Q6_K
        ("gemma3", "blk.0.ffn_down.weight", 7),
        ("gemma3", "blk.0.attn_q.weight", 1),  # Q5_0
        ("gemma3", "blk.0.attn_v.weight", 7),  # Q8_0
        ("smollm2", "blk.0.ffn_up.weight", 1),  # Q4_1
        ("smollm2", "blk.0.attn_q.weight", 33),
    ],
)
def test_matmul_real_tensors(ctx, request, file, name, n):
    info = GGUFFile(request.getfixturevalue(f"{file}_path")).tensors[name]
    n_out, k = info.shape
    w = dequantized(np.asarray(info.raw), info.ggml_type, n_out, k)
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((n, k)) * 3 + 1).astype(np.float32)
    gw = weights.upload(ctx, weights.repack(info.raw, info.ggml_type, info.shape, name))
    check("matmul", gpu_matmul(ctx, gw, x, None), expected_matmul(x, w, None))


def test_gemma3_token_embd_uploads_split(ctx, gemma3_path):
    """262144 x 640 Q8_0 (178 MB) exceeds the 128 MiB binding: it must be split and still gather right."""
    info = GGUFFile(gemma3_path).tensors["token_embd.weight"]
    assert info.ggml_type == T.Q8_0 and info.shape == (262144, 640)
    gw = weights.upload(ctx, weights.repack(info.raw, info.ggml_type, info.shape, "token_embd.weight"))
    assert info.n_bytes > ctx.max_binding and len(gw.chunks) >= 2
    boundary = gw.chunks[1].row_start
    ids = np.array([0, 2, boundary - 1, boundary, 106, 262143], np.uint32)
    y = poisoned(ctx, len(ids) * 640)
    weights.embedding_lookup(ctx, None, gw, ctx.buffer(ids), y, len(ids), math.sqrt(640))
    row_bytes = info.n_bytes // 262144
    rows = np.stack([np.asarray(info.raw[int(i) * row_bytes : (int(i) + 1) * row_bytes]) for i in ids])
    want = dequantized(rows, T.Q8_0, len(ids), 640).astype(np.float64) * math.sqrt(640)
    check("embedding_q", ctx.read(y, shape=(len(ids), 640)), want)


FLOATS = [T.F32, T.F16, T.BF16]
# (n rows of x, n_out, k): float rows whose k is not whole 32-element units (k % 4 == 0), decode and
# prefill, tiles with partial ends; k = 4 is one vec4 of a unit, 200 six units and a part.
ODD_K_CASES = [(1, 7, 80), (1, 579, 48), (7, 127, 40), (33, 579, 200), (128, 7, 80), (1, 130, 4), (40, 66, 36)]


def padded_rows(ctx, t, n_out: int, k: int, rng):
    """A random (n_out, k) weight of float type t: its raw bytes, dequantised values and GPU copy,
    after checking that the repacked rows are the GGUF rows followed by zeros to whole units."""
    raw = random_weight(rng, t, n_out, k)
    repacked = weights.repack(raw.reshape(-1), t, (n_out, k))
    elem = GGML_QUANT_SIZES[t][1]
    (arr,) = repacked.arrays
    assert repacked.shape == (n_out, k) and arr.shape == (n_out, weights.padded_k(k) * elem) and weights.padded_k(k) % 32 == 0
    np.testing.assert_array_equal(arr[:, : k * elem], raw.reshape(n_out, -1))
    assert not arr[:, k * elem :].any()
    return raw, dequantized(raw, t, n_out, k), repacked


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("t", FLOATS, ids=lambda t: t.name)
def test_matmul_float_rows_not_in_whole_units(ctx, t, kernels):
    """F32/F16/BF16 weights whose k is not a multiple of 32 (zero-padded at repack, x masked past k):
    every entry point of the family (decode and prefill), plain, bias, bias + residual; x is strided
    at the true k and NaN follows its last row, so a read past k there (NaN times a zero pad) shows."""
    for i, (n, n_out, k) in enumerate(ODD_K_CASES):
        rng = np.random.default_rng(4000 * int(t) + i)
        raw, w, repacked = padded_rows(ctx, t, n_out, k, rng)
        gw = weights.upload(ctx, repacked)
        scale, shift = INPUT_RANGES[i % len(INPUT_RANGES)]
        x = (rng.standard_normal((n, k)) * scale + shift).astype(np.float32)
        x_buf_data = np.concatenate([x.reshape(-1), np.full(64, np.nan, np.float32)])  # past the last row: NaN
        bias = (rng.standard_normal(n_out) * 3).astype(np.float32)
        residual = (rng.standard_normal((n, n_out)) * 20 - 7).astype(np.float32)
        for b, r in ((None, None), (bias, None), (bias, residual)):
            y = poisoned(ctx, n * n_out)
            weights.matmul(ctx, None, gw, ctx.buffer(x_buf_data), y, n, None if b is None else ctx.buffer(b),
                           None if r is None else ctx.buffer(r), kernels=kernels)
            check("matmul", ctx.read(y, shape=(n, n_out)), expected_matmul(x, w, b, r))


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("t", FLOATS, ids=lambda t: t.name)
def test_matmul_glu_float_rows_not_in_whole_units(ctx, t, kernels):
    """The GLU epilogue (swiglu, geglu; with and without biases) on (gate, up) pairs of float rows of
    k % 32 != 0, decode and prefill."""
    for i, (n, n_ff, k) in enumerate([(1, 7, 80), (7, 63, 48), (33, 290, 40), (1, 290, 200), (40, 9, 4)]):
        rng = np.random.default_rng(5000 * int(t) + i)
        (g_raw, u_raw), (wg, wu), (bg, bu), bias = glu_pair(rng, t, n_ff, k, with_bias=i % 2 == 1)
        x = rng.standard_normal((n, k)) + 0.2
        x = (x * 2.5 / np.abs(x @ wg.T.astype(np.float64)).max()).astype(np.float32)
        gw = weights.upload_pairs(ctx, *(weights.repack(r.reshape(-1), t, (n_ff, k)) for r in (g_raw, u_raw)))
        assert gw.pairs and gw.shape == (2 * n_ff, k)
        for kind in ("swiglu", "geglu"):
            check(kind, gpu_glu(ctx, gw, x, bias, kind, kernels), expected_glu(x, wg, wu, bg, bu, kind), glu_magnitude(x, wg, wu))


@pytest.mark.parametrize("t", FLOATS, ids=lambda t: t.name)
def test_matmul_fused_norm_float_rows_not_in_whole_units(ctx, t):
    """The decode kernels' fused RMSNorm (gpu family's matvec_split, the engine's fuse_norm) over
    x of k % 32 != 0: the mean is over the true k, and the norm weight (k,) is not read past its end
    (a buffer of exactly k floats); with bias and with glu too."""
    for i, (n_out, k) in enumerate([(7, 80), (579, 48), (130, 40), (66, 200), (9, 4)]):
        rng = np.random.default_rng(6000 * int(t) + i)
        raw, w, repacked = padded_rows(ctx, t, n_out, k, rng)
        x = (rng.standard_normal((1, k)) * 3 + 1).astype(np.float32)
        g = (rng.standard_normal(k) + 1).astype(np.float32)
        eps = 1e-5
        normed = reference.rms_norm(x.astype(np.float64), g.astype(np.float64), eps)
        bias = (rng.standard_normal(n_out) * 3).astype(np.float32) if i % 2 else None
        x_buf = ctx.buffer(np.concatenate([x.reshape(-1), np.full(64, np.nan, np.float32)]))  # past x: NaN
        y = poisoned(ctx, n_out)
        weights.matmul(ctx, None, weights.upload(ctx, repacked), x_buf, y, 1, None if bias is None else ctx.buffer(bias),
                       kernels="gpu", norm=(ctx.buffer(g), eps))
        check("matmul", ctx.read(y, shape=(1, n_out)), expected_matmul(normed, w, bias))
        (g_raw, u_raw), (wg, wu), (bg, bu), pair_bias = glu_pair(rng, t, n_out, k, with_bias=i % 2 == 1)
        pairs = weights.upload_pairs(ctx, *(weights.repack(r.reshape(-1), t, (n_out, k)) for r in (g_raw, u_raw)))
        y = poisoned(ctx, n_out)
        weights.matmul(ctx, None, pairs, x_buf, y, 1, None if pair_bias is None else ctx.buffer(pair_bias), glu="swiglu",
                       kernels="gpu", norm=(ctx.buffer(g), eps))
        check("swiglu", ctx.read(y, shape=(1, n_out)), expected_glu(normed, wg, wu, bg, bu, "swiglu"), glu_magnitude(normed, wg, wu))


@pytest.mark.parametrize("t", FLOATS, ids=lambda t: t.name)
def test_embedding_float_rows_not_in_whole_units(ctx, t):
    """A float table of dim % 32 != 0 (rows padded at repack): rows gathered at the true dim, in chunks."""
    for dim in (80, 36, 4):
        rng = np.random.default_rng(7000 * int(t) + dim)
        vocab = 131
        raw, table, repacked = padded_rows(ctx, t, vocab, dim, rng)
        gw = weights.upload(ctx, repacked, max_binding=repacked.arrays[0].shape[1] * 40)  # 40 rows a chunk: 4 chunks
        assert len(gw.chunks) == 4
        ids = np.array([0, 130, 5, 5, 64, 129, 1, 39, 40], np.uint32)
        y = poisoned(ctx, len(ids) * dim)
        weights.embedding_lookup(ctx, None, gw, ctx.buffer(ids), y, len(ids), 2.0)
        check("embedding_q", ctx.read(y, shape=(len(ids), dim)), reference.embedding(table, ids).astype(np.float64) * 2.0)


def test_repack_rejects_bad_shapes():
    raw = np.zeros(34 * 2, np.uint8)
    with pytest.raises(ValueError, match="multiple of 32"):
        weights.repack(raw, T.Q8_0, (1, 48))
    for t in FLOATS:  # float rows need whole vec4s of x
        with pytest.raises(ValueError, match=rf"w: {t.name} weight of shape \(2, 34\): k = 34 is not a multiple of 4"):
            weights.repack(np.zeros(2 * 34 * GGML_QUANT_SIZES[t][1], np.uint8), t, (2, 34), name="w")
    with pytest.raises(ValueError, match="needs 68 uint8 bytes"):
        weights.repack(raw[:-1], T.Q8_0, (2, 32))
    with pytest.raises(ValueError, match="no GPU kernels"):
        weights.repack(raw, T.Q8_1, (2, 32))


def test_chained_in_one_encoder_reuses_bind_groups(ctx):
    """Two matmuls recorded into one encoder (the second reads the first's output); calling again
    creates no new bind groups or uniforms and gives the same result."""
    rng = np.random.default_rng(11)
    raw1, raw2 = random_weight(rng, T.Q4_K, 96, 256), random_weight(rng, T.Q4_0, 64, 96)
    w1, w2 = dequantized(raw1, T.Q4_K, 96, 256), dequantized(raw2, T.Q4_0, 64, 96)
    g1 = weights.upload(ctx, weights.repack(raw1.reshape(-1), T.Q4_K, (96, 256)))
    g2 = weights.upload(ctx, weights.repack(raw2.reshape(-1), T.Q4_0, (64, 96)))
    for n in (1, 9):
        x = (rng.standard_normal((n, 256)) + 0.5).astype(np.float32)
        x_buf, mid, out = ctx.buffer(x), poisoned(ctx, n * 96), poisoned(ctx, n * 64)
        results, cache_sizes = [], []
        for _ in range(2):
            enc = ctx.device.create_command_encoder()
            weights.matmul(ctx, enc, g1, x_buf, mid, n)
            weights.matmul(ctx, enc, g2, mid, out, n)
            ctx.device.queue.submit([enc.finish()])
            results.append(ctx.read(out, shape=(n, 64)))
            cache_sizes.append((len(g1._bind_groups), len(g1._params), len(g2._bind_groups), len(g2._params)))
        assert cache_sizes[0] == cache_sizes[1]
        np.testing.assert_array_equal(results[0], results[1])
        got_mid = ctx.read(mid, shape=(n, 96))
        check("matmul", got_mid, expected_matmul(x, w1, None))
        check("matmul", results[0], expected_matmul(got_mid, w2, None))


# The limits of a small device: WebGPU's defaults for workgroup memory (16 KiB) and, below its default
# of 256, the 128 invocations a workgroup that issue 10 asks the gpu family to run within.
SMALL_DEVICE_LIMITS = {
    "max-compute-invocations-per-workgroup": 128,
    "max-compute-workgroup-size-x": 128,
    "max-compute-workgroup-size-y": 128,
    "max-compute-workgroup-size-z": 64,
    "max-compute-workgroup-storage-size": 16384,
}


@pytest.fixture(scope="module")
def small_ctx():
    """A second context on the same adapter, its device requested with SMALL_DEVICE_LIMITS."""
    small = GpuContext(limits=SMALL_DEVICE_LIMITS)
    assert dict(small.device.limits)["max-compute-invocations-per-workgroup"] == 128
    assert (small.max_invocations, small.max_workgroup_storage) == (128, 16384)
    return small


def workgroup_bytes(shader: str, entry: str) -> int:
    """Bytes of the var<workgroup> arrays that `entry` of shaders/<shader> uses, their lengths
    evaluated from the file's own constants (wgpu does not check this limit; Dawn does)."""
    from wgllm.gpu.runtime import SHADER_DIR

    text = (SHADER_DIR / shader).read_text()
    body = re.search(rf"\bfn {entry}\(.*?\n}}\n", text, re.S)
    assert body, f"{shader} has no entry {entry}"
    total = 0
    for name, elem, length in re.findall(r"var<workgroup>\s+(\w+)\s*:\s*array<(\w+(?:<f32>)?)\s*,\s*([^;]+)>\s*;", text):
        if re.search(rf"\b{name}\b", body.group(0)):
            expr = re.sub(r"[A-Z_][A-Z0-9_]*", lambda m: str(shader_constant(shader, m.group(0))), length)
            assert re.fullmatch(r"[0-9u +*()]+", expr), f"{shader}: cannot evaluate the length {length!r} of {name}"
            total += {"f32": 4, "u32": 4, "vec4<f32>": 16}[elem] * eval(expr.replace("u", ""))
    return total


@pytest.mark.parametrize("kernels", KERNELS)
def test_kernels_run_on_a_small_device(ctx, small_ctx, kernels):
    """Every matmul entry point fits a device with 128 invocations a workgroup and 16 KiB of workgroup
    memory, and on such a device gives what it gives on the adapter's own limits, bit for bit: plain,
    bias + residual, glu, decode and prefill, odd shapes."""
    refused = small_ctx.device.create_shader_module(code="@compute @workgroup_size(256) fn main() {}")
    with pytest.raises(Exception, match="256"):  # the device holds the limit: a 256-thread kernel is refused
        small_ctx.device.create_compute_pipeline(layout="auto", compute={"module": refused, "entry_point": "main"})
    for t in TYPES:
        for entry in ("matvec", "main", "matvec_split", "main_tiled"):
            assert workgroup_bytes(f"matmul_{t.name.lower()}.wgsl", entry) <= SMALL_DEVICE_LIMITS["max-compute-workgroup-storage-size"]
    assert workgroup_bytes("matmul_q8_0.wgsl", "main_tiled") > 0
    rng = np.random.default_rng(12)
    for t, n, n_out, blocks in ((T.Q4_K, 33, 579, 2), (T.Q8_0, 1, 127, 5), (T.F16, 7, 66, 3)):
        k = blocks * (256 if GGML_QUANT_SIZES[t][0] == 256 else 32)
        raw = random_weight(rng, t, n_out, k)
        w = dequantized(raw, t, n_out, k)
        x = (rng.standard_normal((n, k)) + 0.3).astype(np.float32)
        bias = rng.standard_normal(n_out).astype(np.float32)
        residual = (rng.standard_normal((n, n_out)) * 5).astype(np.float32)
        repacked = weights.repack(raw.reshape(-1), t, (n_out, k))
        got = gpu_matmul(small_ctx, weights.upload(small_ctx, repacked), x, bias, residual, kernels)
        check("matmul", got, expected_matmul(x, w, bias, residual))
        np.testing.assert_array_equal(got, gpu_matmul(ctx, weights.upload(ctx, repacked), x, bias, residual, kernels))
    (g_raw, u_raw), (wg, wu), (bg, bu), bias = glu_pair(rng, T.Q4_0, 45, 64, with_bias=True)
    pair = [weights.repack(r.reshape(-1), T.Q4_0, (45, 64)) for r in (g_raw, u_raw)]
    for n in (1, 40):
        x = rng.standard_normal((n, 64))
        x = (x * 2 / np.abs(x @ wg.T.astype(np.float64)).max()).astype(np.float32)
        got = gpu_glu(small_ctx, weights.upload_pairs(small_ctx, *pair), x, bias, "swiglu", kernels)
        check("swiglu", got, expected_glu(x, wg, wu, bg, bu, "swiglu"))
        np.testing.assert_array_equal(got, gpu_glu(ctx, weights.upload_pairs(ctx, *pair), x, bias, "swiglu", kernels))


@pytest.mark.parametrize("t", TYPES, ids=lambda t: t.name)
def test_matvec_split_subgroup_and_workgroup_reductions(ctx, t):
    """The gpu family's decode matvec ends with subgroupAdd where the device has subgroups (lavapipe:
    subgroups of 8) and with a workgroup-memory tree where it does not (a context requested without
    the feature): both against the reference on odd shapes, with and without the fused norm; the
    subgroup variant is what runs on the first (its pipeline compiled from the variant's module)."""
    from wgllm.gpu.runtime import SUBGROUP_ENTRIES, subgroup_variant

    plain = GpuContext(features=("shader-f16",))
    assert ctx.has_subgroups and not plain.has_subgroups, "lavapipe offers subgroups: the subgroup path must be tested"
    assert SUBGROUP_ENTRIES == ("matvec_split",)
    name = f"matmul_{t.name.lower()}.wgsl"
    variant = subgroup_variant(name, ctx.shader_source(name))
    lines = variant.split("\n")
    assert "subgroupAdd(acc)" in variant and not any(x.rstrip().endswith("// !sg") or x.startswith("//sg ") for x in lines)
    unit = 256 if GGML_QUANT_SIZES[t][0] == 256 else 32
    for i, (n_out, blocks) in enumerate(((1, 3), (7, 2), (579, 3), (130, 9))):
        rng = np.random.default_rng(3000 * int(t) + i)
        k = unit * blocks
        raw = random_weight(rng, t, n_out, k)
        w = dequantized(raw, t, n_out, k)
        x = (rng.standard_normal((1, k)) * 2 + 0.5).astype(np.float32)
        bias = (rng.standard_normal(n_out) * 3).astype(np.float32) if i % 2 else None
        repacked = weights.repack(raw.reshape(-1), t, (n_out, k))
        want = expected_matmul(x, w, bias)
        for c in (ctx, plain):
            got = gpu_matmul(c, weights.upload(c, repacked), x, bias, kernels="gpu")
            check("matmul", got, want)
    assert (name, False, True) in ctx._modules and (name, False, True) not in plain._modules and (name, False, False) in plain._modules


def test_shared_kernel_text_is_identical_across_types():
    """Each matmul_<type>.wgsl repeats the same `matvec`, `main`, `matvec_split` and `main_tiled` (WGSL
    has no includes): only the dequantiser above them may differ, so a fix to one kernel must reach
    all nine files."""
    from wgllm.gpu.runtime import SHADER_DIR

    tails = {t.name: (SHADER_DIR / f"matmul_{t.name.lower()}.wgsl").read_text().split("// ---- decode", 1)[1] for t in TYPES}
    assert len(set(tails.values())) == 1, {name: hash(tail) for name, tail in tails.items()}
    entries = {t.name: (SHADER_DIR / f"embedding_{t.name.lower()}.wgsl").read_text().split("@compute", 1)[1] for t in TYPES}
    assert len(set(entries.values())) == 1


def test_upload_beyond_memory_names_tensor_and_bytes(tmp_path):
    """A weight larger than what is left is refused with the tensor, the bytes asked and those held.
    WebGPU has no memory query, so the child process caps its address space (RLIMIT_AS) 512 MiB above
    what it holds and uploads an 805 MB F32 weight: lavapipe's allocation fails for real."""
    script = tmp_path / "oom.py"
    script.write_text(
        "import resource, numpy as np\n"
        "from wgllm.gpu.runtime import get_context\n"
        "from wgllm.gpu import weights\n"
        "ctx = get_context()\n"
        "rp = weights.repack(np.zeros(3072 * 65536 * 4, np.uint8), weights.T.F32, (3072, 65536))\n"
        "vm = int(open('/proc/self/status').read().split('VmSize:')[1].split()[0]) * 1024\n"
        "resource.setrlimit(resource.RLIMIT_AS, (vm + (512 << 20), resource.RLIM_INFINITY))\n"
        "weights.upload(ctx, rp, label='blk.9.ffn_up.weight')\n"
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    m = re.fullmatch(
        r"wgllm\.gpu\.runtime\.GpuError: blk\.9\.ffn_up\.weight: F32 weight \(3072, 65536\) of 805306368 bytes does not fit: "
        r"out of GPU memory: buffer 'blk\.9\.ffn_up\.weight\.w\[(\d+):(\d+)\]' of (\d+) bytes was refused with (\d+) bytes already held .*",
        last,
    )
    assert m, proc.stderr[-2000:]
    start, end, asked, held = (int(g) for g in m.groups())
    assert asked == (end - start) * 65536 * 4 and held >= start * 65536 * 4
