"""Every non-matmul shader against its wgllm.reference function on the WebGPU device (lavapipe in CI).

Fixed seeds, odd shapes, scaled and shifted inputs, outputs poisoned with NaN before each kernel
runs so an element the kernel forgets to write fails the comparison.
"""

from __future__ import annotations

import math
import os
import re
import struct

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # silences lavapipe's warning about a missing runtime dir

import numpy as np
import pytest
from gpu_tolerances import ATOL_FLOOR, ROPE_ATOL_PER_RADIAN, TOLERANCES

from wgllm import reference
from wgllm.gpu.engine import decode_head_groups, decode_splits
from wgllm.gpu.runtime import KV_ALIAS, KV_ALIAS_F16, SHADER_DIR, GpuContext, GpuError, get_context, kv_f16_variant, shader_constant

MAX_GROUPS = 65535
NAN_BITS = 0x7FC00001  # a quiet NaN with a payload: no kernel computes this by accident
NAN_BITS_F16 = 0x7E01  # the same for the f16 KV cache


@pytest.fixture(scope="module")
def ctx():
    return get_context()


@pytest.fixture(scope="module")
def ctx_f16(ctx):
    """The context, for the f16 KV variants: lavapipe has shader-f16 (a test of them cannot pass without)."""
    assert ctx.has_f16, "this adapter lacks shader-f16 (lavapipe has it): the f16 KV variants cannot be tested here"
    return ctx


def params(fmt: str, *values) -> bytes:
    """A Params uniform: `fmt` is struct's letters (I = u32, f = f32), all 4-byte fields."""
    return struct.pack("<" + fmt, *values)


def poisoned(ctx, n_words: int):
    return ctx.buffer(np.full(n_words, NAN_BITS, dtype=np.uint32))


def grid_2d(groups: int, max_x: int = MAX_GROUPS) -> tuple[int, int, int]:
    """(gx, gy, 1) with gx * gy >= groups: the shaders number workgroups as wid.y * gx + wid.x."""
    gx = max(1, min(groups, max_x))
    return (gx, -(-groups // gx), 1)


def data(rng, shape, scale: float = 1.0, shift: float = 0.0) -> np.ndarray:
    x = rng.standard_normal(shape).astype(np.float32) * np.float32(scale) + np.float32(shift)
    assert np.all(x != 0)
    return x


def exact(fn, *args, **kwargs) -> np.ndarray:
    """The reference evaluated in float64 on the same float32 inputs: the GPU's own error is measured,
    not the sum of its error and the float32 reference's (which matters for ill-conditioned rows,
    such as layer_norm of 3 + 0.01 * noise)."""
    cast = lambda a: a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype == np.float32 else a  # noqa: E731
    return fn(*map(cast, args), **{k: cast(v) for k, v in kwargs.items()})


def check(op: str, got: np.ndarray, want: np.ndarray, extra_atol_rel: float = 0.0) -> None:
    rtol, atol_rel = TOLERANCES[op]
    atol_rel += extra_atol_rel
    want = np.asarray(want, dtype=np.float32)
    assert got.shape == want.shape
    assert np.all(np.isfinite(got)), f"{op}: {np.sum(~np.isfinite(got))} non-finite outputs (unwritten or overflowed)"
    atol = max(atol_rel * float(np.max(np.abs(want))), ATOL_FLOOR)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=op)


INPUT_RANGES = [(1.0, 0.5), (30.0, -100.0), (0.01, 3.0)]


# -- embedding, norms ----------------------------------------------------------------------------


@pytest.mark.parametrize("n,dim,scale", [(1, 7, 1.0), (7, 4099, math.sqrt(4099)), (127, 300, 1.0)])
def test_embedding(ctx, n, dim, scale):
    rng = np.random.default_rng(n * 1000 + dim)
    vocab = 1009
    table = data(rng, (vocab, dim), 3.0, -1.0)
    ids = rng.integers(0, vocab, n).astype(np.uint32)
    ids[0] = vocab - 1
    want = reference.embedding(table, ids) * np.float32(scale)
    y = poisoned(ctx, n * dim)
    ctx.run("embedding.wgsl", [ctx.buffer(params("If", dim, scale), uniform=True), ctx.buffer(table), ctx.buffer(ids), y], (-(-dim // 256), n, 1))
    check("embedding", ctx.read(y, np.float32, (n, dim)), want)


@pytest.mark.parametrize("rows,dim", [(1, 7), (7, 4099), (127, 2048), (5, 1)])
@pytest.mark.parametrize("scale,shift", INPUT_RANGES)
def test_rms_norm(ctx, rows, dim, scale, shift):
    rng = np.random.default_rng(rows * 7 + dim)
    x, w, eps = data(rng, (rows, dim), scale, shift), data(rng, (dim,), 0.3, 1.0), 1e-6
    y = poisoned(ctx, rows * dim)
    ctx.run(
        "rms_norm.wgsl",
        [ctx.buffer(params("IIf", rows, dim, eps), uniform=True), ctx.buffer(x), ctx.buffer(w), y],
        grid_2d(rows, max_x=5),  # several rows of workgroups: exercises the row = wid.y * gx + wid.x numbering
    )
    check("rms_norm", ctx.read(y, np.float32, (rows, dim)), exact(reference.rms_norm, x, w, eps))


@pytest.mark.parametrize("wg", [None, 256])  # the cpu family's 8 threads a row, the gpu family's 256
@pytest.mark.parametrize("n,n_head,n_head_kv,head_dim,v_dim", [(1, 4, 1, 256, 256), (7, 3, 3, 6, 18), (33, 8, 2, 64, 128)])
def test_qk_norm_on_stacked_rows(ctx, n, n_head, n_head_kv, head_dim, v_dim, wg):
    """Q's and K's per-head RMSNorm in place on stacked Q/K/V rows: every Q head with the q weight,
    every K head with the k weight, V untouched (compared bit for bit), several rows of workgroups."""
    rng = np.random.default_rng(n * 13 + head_dim)
    q_dim, kv_dim = n_head * head_dim, n_head_kv * head_dim
    stride = q_dim + kv_dim + v_dim
    qkv = data(rng, (n, stride), 3.0, 0.5)
    q_w, k_w, eps = data(rng, (head_dim,), 0.3, 1.0), data(rng, (head_dim,), 0.3, -1.0), 1e-6
    buf = ctx.buffer(qkv)
    heads = n_head + n_head_kv
    ctx.run(
        "qk_norm.wgsl",
        [ctx.buffer(params("IIfIII", n * heads, head_dim, eps, n_head, heads, stride), uniform=True), buf, ctx.buffer(q_w), ctx.buffer(k_w)],
        grid_2d(n * heads, max_x=5),
        constants={"WG_SIZE": wg} if wg else None,
    )
    got = ctx.read(buf, np.float32, (n, stride))
    q = qkv[:, :q_dim].reshape(n * n_head, head_dim)
    k = qkv[:, q_dim : q_dim + kv_dim].reshape(n * n_head_kv, head_dim)
    check("rms_norm", got[:, :q_dim].reshape(-1, head_dim), exact(reference.rms_norm, q, q_w, eps))
    check("rms_norm", got[:, q_dim : q_dim + kv_dim].reshape(-1, head_dim), exact(reference.rms_norm, k, k_w, eps))
    np.testing.assert_array_equal(got[:, q_dim + kv_dim :], qkv[:, q_dim + kv_dim :])


@pytest.mark.parametrize("rows,dim", [(1, 7), (7, 4099), (127, 2048)])
@pytest.mark.parametrize("scale,shift", INPUT_RANGES)
def test_layer_norm(ctx, rows, dim, scale, shift):
    rng = np.random.default_rng(rows * 11 + dim)
    x, eps = data(rng, (rows, dim), scale, shift), 1e-5
    w, b = data(rng, (dim,), 0.3, 1.0), data(rng, (dim,), 0.2, 0.1)
    y = poisoned(ctx, rows * dim)
    ctx.run(
        "layer_norm.wgsl",
        [ctx.buffer(params("IIf", rows, dim, eps), uniform=True), ctx.buffer(x), ctx.buffer(w), ctx.buffer(b), y],
        grid_2d(rows, max_x=5),
    )
    check("layer_norm", ctx.read(y, np.float32, (rows, dim)), exact(reference.layer_norm, x, w, b, eps))


# -- elementwise ---------------------------------------------------------------------------------

UNARY = {"gelu_tanh": reference.gelu_tanh, "gelu_erf": reference.gelu_erf}
GATED = {"swiglu": reference.swiglu, "geglu": reference.geglu}


def run_elementwise(ctx, op: str, inputs: list[np.ndarray], extra_params: bytes = b"", max_x: int = MAX_GROUPS) -> np.ndarray:
    n = inputs[0].size
    y = poisoned(ctx, n)
    bindings = [ctx.buffer(params("I", n) + extra_params, uniform=True), *(ctx.buffer(a) for a in inputs), y]
    ctx.run(f"{op}.wgsl", bindings, grid_2d(-(-n // 256), max_x))
    return ctx.read(y, np.float32, inputs[0].shape)


@pytest.mark.parametrize("op", sorted(UNARY))
@pytest.mark.parametrize("n", [1, 7, 127, 4099])
@pytest.mark.parametrize("scale,shift", INPUT_RANGES + [(4.0, 0.0)])
def test_unary(ctx, op, n, scale, shift):
    rng = np.random.default_rng(n)
    x = data(rng, (n,), scale, shift)
    check(op, run_elementwise(ctx, op, [x], max_x=3), exact(UNARY[op], x))


@pytest.mark.parametrize("op", sorted(GATED))
@pytest.mark.parametrize("n", [1, 7, 127, 4099])
@pytest.mark.parametrize("scale,shift", INPUT_RANGES + [(4.0, 0.0)])
def test_gated(ctx, op, n, scale, shift):
    rng = np.random.default_rng(n + 1)
    gate, up = data(rng, (n,), scale, shift), data(rng, (n,), 2.0, 0.5)
    check(op, run_elementwise(ctx, op, [gate, up], max_x=3), exact(GATED[op], gate, up))


# -- rope ----------------------------------------------------------------------------------------

ROPE_CASES = [
    # n, heads, head_dim, n_rot, base, pos_scale, neox
    (1, 1, 2, 2, 10000.0, 1.0, True),
    (7, 3, 64, 64, 10000.0, 1.0, False),
    (7, 4, 80, 32, 10000.0, 1.0, True),  # phi-2: partial rotary
    (127, 2, 256, 256, 1000000.0, 8.0, True),  # gemma-3 global layers: base 1e6, linear scaling 8
    (5, 7, 128, 32, 500000.0, 1.0, False),  # llama-3: base 5e5 and rope_freqs (see rope_factors)
    (9, 3, 16, 12, 10000.0, 1.0, True),  # phi-3.5/4-mini: partial rotary, LongRoPE factors and attention factor (rope_mscale)
]


def rope_mscale(n_rot: int) -> float:
    """rope.wgsl's cos/sin multiplier: LongRoPE's attention factor (sqrt(1 + ln 16 / ln 8)) in the phi-3 case."""
    return 1.5275252 if n_rot == 12 else 1.0


def rope_factors(n_rot: int, base: float) -> np.ndarray:
    """rope.wgsl's frequency divisors: llama-3's rope_freqs (random ones in [1, 8] here) for the base
    5e5 case, ones (no scaling) for the others."""
    if base == 500000.0 or n_rot == 12:
        return np.random.default_rng(n_rot).uniform(1.0, 8.0, n_rot // 2).astype(np.float32)
    return np.ones(max(1, n_rot // 2), np.float32)


def rope_uniform(ctx, n, heads, head_dim, n_rot, base, pos_scale, neox, in_stride, in_offset, out_stride, out_offset):
    fields = (n, heads, head_dim, n_rot, in_stride, in_offset, out_stride, out_offset, base, pos_scale, int(neox), rope_mscale(n_rot))
    return ctx.buffer(params("IIIIIIIIffIf", *fields), uniform=True)


def check_rope(got, x, positions, n_rot, base, pos_scale, neox):
    max_theta = float(np.max(positions)) / pos_scale  # the largest angle: frequency 0 is 1 rad per position
    want = exact(reference.rope, x, positions, n_rot, base, neox, pos_scale, rope_factors(n_rot, base), rope_mscale(n_rot))
    check("rope", got, want, extra_atol_rel=ROPE_ATOL_PER_RADIAN * max_theta)


def rope_grid(n, heads, head_dim, wg=64):
    return (-(-heads * head_dim // 2 // wg), n, 1)


@pytest.mark.parametrize("n,heads,head_dim,n_rot,base,pos_scale,neox", ROPE_CASES)
@pytest.mark.parametrize("scale,shift", INPUT_RANGES)
def test_rope_strided(ctx, n, heads, head_dim, n_rot, base, pos_scale, neox, scale, shift):
    """Out of place: rows read from a wider 'fused QKV' buffer, written into a 'cache' at an offset."""
    rng = np.random.default_rng(n * 31 + head_dim)
    width = heads * head_dim
    in_stride, in_offset = 3 * width + 5, width + 3
    out_stride, out_offset, cache_rows = width, 11 * width, n + 13
    fused = data(rng, (n * in_stride + in_offset,), scale, shift)
    x = np.stack([fused[in_offset + t * in_stride :][:width] for t in range(n)]).reshape(n, heads, head_dim)
    positions = rng.permutation(300)[:n].astype(np.uint32) if n > 1 else np.array([299], np.uint32)
    cache = poisoned(ctx, cache_rows * width)
    uni = rope_uniform(ctx, n, heads, head_dim, n_rot, base, pos_scale, neox, in_stride, in_offset, out_stride, out_offset)
    ctx.run("rope.wgsl", [uni, ctx.buffer(positions), ctx.buffer(fused), cache, ctx.buffer(rope_factors(n_rot, base))], rope_grid(n, heads, head_dim))
    words = ctx.read(cache, np.uint32)
    inside = slice(out_offset, out_offset + n * width)
    assert np.all(np.delete(words, np.arange(len(words))[inside]) == NAN_BITS), "rope wrote outside its rows"
    got = words[inside].view(np.float32).reshape(n, heads, head_dim)
    check_rope(got, x, positions, n_rot, base, pos_scale, neox)


@pytest.mark.parametrize("n,heads,head_dim,n_rot,base,pos_scale,neox", ROPE_CASES)
@pytest.mark.parametrize("scale,shift", INPUT_RANGES)
def test_rope_into_f16_cache(ctx_f16, n, heads, head_dim, n_rot, base, pos_scale, neox, scale, shift):
    """The f16 KV variant (K rotated straight into an f16 cache): the exact rotation rounded to f16,
    within one f16 ulp plus rope's f32 tolerance (the f32 result may lie across a rounding boundary)."""
    ctx = ctx_f16
    rng = np.random.default_rng(n * 41 + head_dim)
    width = heads * head_dim
    in_stride, in_offset = 2 * width + 3, 5
    out_stride, out_offset, cache_rows = width, 3 * width + 1, n + 5  # an odd offset: f16 writes into half words
    fused = data(rng, (n * in_stride + in_offset,), scale, shift)
    x = np.stack([fused[in_offset + t * in_stride :][:width] for t in range(n)]).reshape(n, heads, head_dim)
    positions = rng.permutation(300)[:n].astype(np.uint32) if n > 1 else np.array([299], np.uint32)
    cache = ctx.buffer(np.full(cache_rows * width + 1, NAN_BITS_F16, np.uint16))
    uni = rope_uniform(ctx, n, heads, head_dim, n_rot, base, pos_scale, neox, in_stride, in_offset, out_stride, out_offset)
    ctx.run("rope.wgsl", [uni, ctx.buffer(positions), ctx.buffer(fused), cache, ctx.buffer(rope_factors(n_rot, base))], rope_grid(n, heads, head_dim), kv_f16=True)
    halves = ctx.read(cache, np.uint16)[: cache_rows * width + 1]
    inside = slice(out_offset, out_offset + n * width)
    assert np.all(np.delete(halves, np.arange(len(halves))[inside]) == NAN_BITS_F16), "rope wrote outside its rows"
    got = halves[inside].view(np.float16).astype(np.float32).reshape(n, heads, head_dim)
    want = exact(reference.rope, x, positions, n_rot, base, neox, pos_scale, rope_factors(n_rot, base), rope_mscale(n_rot))
    want16 = want.astype(np.float16).astype(np.float32)
    rtol, atol_rel = TOLERANCES["rope"]
    atol = (atol_rel + ROPE_ATOL_PER_RADIAN * float(np.max(positions)) / pos_scale) * float(np.max(np.abs(want)))
    ulp = np.spacing(np.maximum(np.abs(got), np.abs(want16)).astype(np.float16)).astype(np.float32)
    assert np.all(np.isfinite(got))
    np.testing.assert_array_less(np.abs(got - want16), ulp + rtol * np.abs(want) + atol + ATOL_FLOOR)


# -- softcap ----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 7, 127, 4099])
@pytest.mark.parametrize("cap", [30.0, 50.0])
@pytest.mark.parametrize("scale,shift", INPUT_RANGES + [(400.0, 0.0)])
def test_softcap(ctx, n, cap, scale, shift):
    rng = np.random.default_rng(n + 5)
    x = data(rng, (n,), scale, shift)
    check("softcap", run_elementwise(ctx, "softcap", [x], params("f", cap), max_x=3), exact(reference.softcap, x, cap))


# -- attention, kv_store -------------------------------------------------------------------------

ATTENTION_CASES = [
    # n_head, n_head_kv, head_dim, m, n, window, softcap, alibi_max_bias
    (8, 2, 64, 300, 1, 0, 0.0, 0.0),  # GQA decode
    (8, 2, 64, 300, 37, 0, 0.0, 0.0),  # GQA prefill after a cached prefix
    (4, 1, 256, 130, 130, 0, 50.0, 0.0),  # MQA prefill from empty, gemma-2 soft-capping, head_dim 256
    (4, 1, 256, 257, 1, 0, 0.0, 0.0),  # MQA decode, head_dim 256
    (4, 2, 64, 300, 20, 96, 0.0, 0.0),  # sliding window across tile boundaries
    (4, 4, 64, 150, 1, 7, 0.0, 0.0),  # window shorter than a tile
    (8, 8, 64, 200, 9, 0, 0.0, 8.0),  # ALiBi (Falcon-RW, BLOOM): power-of-two heads
    (6, 6, 64, 70, 1, 0, 0.0, 8.0),  # ALiBi: heads past 2^floor(log2 H) use m1's odd powers
    (2, 1, 7, 1, 1, 0, 0.0, 0.0),  # a single key; head_dim below a tile
    # the gpu family's decode splits (SPLIT_KEYS = 256 keys each) and head chunks (G_MAX = 8 heads)
    (24, 2, 64, 600, 1, 0, 0.0, 0.0),  # three splits, the last partial; 12 heads a KV group: two chunks
    (4, 1, 256, 701, 1, 300, 30.0, 0.0),  # a window over two splits, soft-capped, head_dim 256
    (8, 8, 64, 513, 1, 0, 0.0, 8.0),  # ALiBi past one split; a split of one key
    (4, 2, 64, 517, 33, 0, 0.0, 0.0),  # odd prefill after a long prefix: tiles before the causal edge
]
KERNELS = ["cpu", "gpu"]


def run_attention(ctx, q, k_cache, v_cache, q_pos, n_kv, scale, window, softcap, max_bias, kv_f16=False, kernels="cpu"):
    """The attention launches of a kernel family, as the engine makes them: cpu `main`; gpu
    `prefill_tiled` for n > 1, `decode_split` into a poisoned split buffer then attention_combine for n = 1."""
    n, n_head, head_dim = q.shape
    n_head_kv, head_dim_v = k_cache.shape[1], v_cache.shape[2]
    uni = params("IIIIIIfffI", n_head, n_head_kv, head_dim, head_dim_v, n_kv, window, scale, softcap, max_bias, n)
    out = poisoned(ctx, n * n_head * head_dim_v)
    inputs = [ctx.buffer(uni, uniform=True), ctx.buffer(q), ctx.buffer(k_cache), ctx.buffer(v_cache), ctx.buffer(q_pos)]
    if kernels == "cpu":
        ctx.run("attention.wgsl", [*inputs, out], (n_head, -(-n // 32), 1), kv_f16=kv_f16)
    elif n > 1:
        grid = (n_head, -(-n // shader_constant("attention.wgsl", "Q_TILE")), 1)
        ctx.run("attention.wgsl", [*inputs, out], grid, entry="prefill_tiled", kv_f16=kv_f16)
    else:
        splits = decode_splits(n_kv, window)
        part = poisoned(ctx, splits * n_head * (head_dim_v + 2))
        grid = (decode_head_groups(n_head, n_head_kv), splits, 1)
        ctx.run("attention.wgsl", [*inputs, part], grid, entry="decode_split", kv_f16=kv_f16)
        combine = ctx.buffer(params("III", n_head, head_dim_v, splits), uniform=True)
        ctx.run("attention_combine.wgsl", [combine, part, out], (n_head, 1, 1))
    return ctx.read(out, np.float32, (n, n_head, head_dim_v))


@pytest.mark.parametrize("n_head,n_head_kv,head_dim,m,window,softcap,max_bias", [(9, 3, 64, 200, 0, 0.0, 0.0), (4, 1, 256, 256, 100, 30.0, 0.0), (8, 8, 64, 7, 0, 0.0, 8.0), (24, 2, 32, 129, 0, 0.0, 0.0)])
def test_decode_split_direct_equals_split_and_combine(ctx, n_head, n_head_kv, head_dim, m, window, softcap, max_bias):
    """While a decode's keys are one split, decode_split with Params.direct writes the output itself
    (the engine then skips attention_combine): bit for bit what the split buffer and the combine give."""
    rng = np.random.default_rng(m + n_head)
    q = data(rng, (1, n_head, head_dim), 1.0, 0.1)
    k_cache = data(rng, (m, n_head_kv, head_dim), 1.0, -0.1)
    v_cache = data(rng, (m, n_head_kv, head_dim), 3.0, 1.0)
    q_pos = np.array([m - 1], np.uint32)
    scale = 1.0 / math.sqrt(head_dim) * (4.0 if softcap else 1.0)
    assert decode_splits(m, window) == 1
    two_launches = run_attention(ctx, q, k_cache, v_cache, q_pos, m, scale, window, softcap, max_bias, kernels="gpu")
    uni = params("IIIIIIfffII", n_head, n_head_kv, head_dim, head_dim, m, window, scale, softcap, max_bias, 1, 1)
    out = poisoned(ctx, n_head * head_dim)
    inputs = [ctx.buffer(uni, uniform=True), ctx.buffer(q), ctx.buffer(k_cache), ctx.buffer(v_cache), ctx.buffer(q_pos)]
    ctx.run("attention.wgsl", [*inputs, out], (decode_head_groups(n_head, n_head_kv), 1, 1), entry="decode_split")
    np.testing.assert_array_equal(ctx.read(out, np.float32, (1, n_head, head_dim)), two_launches)


def test_decode_splits():
    """The gpu family's decode covers the visible keys (all n_kv, or the window's) in splits of 256."""
    assert shader_constant("attention.wgsl", "SPLIT_KEYS") == 256
    assert [decode_splits(m, 0) for m in (1, 255, 256, 257, 600)] == [1, 1, 1, 2, 3]
    assert [decode_splits(m, 300) for m in (1, 299, 300, 301, 5000)] == [1, 2, 2, 2, 2]
    assert [decode_head_groups(h, kv) for h, kv in ((8, 2), (24, 2), (8, 8), (71, 1))] == [2, 4, 8, 9]


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("n_head,n_head_kv,head_dim,m,n,window,softcap,max_bias", ATTENTION_CASES)
def test_attention(ctx, n_head, n_head_kv, head_dim, m, n, window, softcap, max_bias, kernels):
    rng = np.random.default_rng(n_head * 1000 + m + n)
    max_tokens = m + 17
    q = data(rng, (n, n_head, head_dim), 1.0, 0.1)
    k = data(rng, (m, n_head_kv, head_dim), 1.0, -0.1)
    v = data(rng, (m, n_head_kv, head_dim), 3.0, 1.0)
    # Rows past the m valid ones hold NaN: a kernel that reads beyond n_kv returns NaN.
    nan = np.full((max_tokens - m, n_head_kv, head_dim), NAN_BITS, np.uint32).view(np.float32)
    k_cache, v_cache = np.concatenate([k, nan]), np.concatenate([v, nan])
    q_pos = np.arange(m - n, m, dtype=np.uint32)
    scale = 1.0 / math.sqrt(head_dim) * (4.0 if softcap else 1.0)  # larger scores so that the cap bites
    got = run_attention(ctx, q, k_cache, v_cache, q_pos, m, scale, window, softcap, max_bias, kernels=kernels)
    slopes = reference.alibi_slopes(n_head, max_bias) if max_bias else None
    want = exact(
        reference.attention, q, k, v, q_pos.astype(np.int64), np.arange(m), scale, softcap_value=softcap, window=window, slopes=slopes
    )
    check("attention", got, want)


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("n_head,n_head_kv,head_dim,m,n,window,softcap,max_bias", ATTENTION_CASES)
def test_attention_f16_kv_cache(ctx_f16, n_head, n_head_kv, head_dim, m, n, window, softcap, max_bias, kernels):
    """The f16 KV variant: K and V read from f16 caches, everything else f32, against the exact
    attention of the f16-rounded K and V at attention's own tolerance."""
    ctx = ctx_f16
    rng = np.random.default_rng(n_head * 1000 + m + n + 1)
    max_tokens = m + 17
    q = data(rng, (n, n_head, head_dim), 1.0, 0.1)
    k = data(rng, (m, n_head_kv, head_dim), 1.0, -0.1).astype(np.float16)
    v = data(rng, (m, n_head_kv, head_dim), 3.0, 1.0).astype(np.float16)
    nan = np.full((max_tokens - m, n_head_kv, head_dim), NAN_BITS_F16, np.uint16).view(np.float16)
    k_cache, v_cache = np.concatenate([k, nan]), np.concatenate([v, nan])
    q_pos = np.arange(m - n, m, dtype=np.uint32)
    scale = 1.0 / math.sqrt(head_dim) * (4.0 if softcap else 1.0)
    got = run_attention(ctx, q, k_cache, v_cache, q_pos, m, scale, window, softcap, max_bias, kv_f16=True, kernels=kernels)
    slopes = reference.alibi_slopes(n_head, max_bias) if max_bias else None
    k32, v32 = k.astype(np.float32), v.astype(np.float32)
    want = exact(
        reference.attention, q, k32, v32, q_pos.astype(np.int64), np.arange(m), scale, softcap_value=softcap, window=window, slopes=slopes
    )
    check("attention", got, want)


@pytest.mark.parametrize("kernels", KERNELS)
def test_attention_sharp_scores(ctx, kernels):
    """Scores far apart (x30, shifted): the online softmax must rescale its running sum exactly once per new max."""
    rng = np.random.default_rng(5)
    n_head, n_head_kv, d, m, n = 4, 2, 64, 200, 5
    q = data(rng, (n, n_head, d), 30.0, -100.0)
    k = data(rng, (m, n_head_kv, d), 1.0, 0.5)
    v = data(rng, (m, n_head_kv, d), 30.0, -100.0)
    q_pos = np.array([3, 70, 64, 150, 199], dtype=np.uint32)  # out of order, mid-cache: causality per query
    got = run_attention(ctx, q, k, v, q_pos, m, 0.01, 0, 0.0, 0.0, kernels=kernels)
    check("attention", got, exact(reference.attention, q, k, v, q_pos.astype(np.int64), np.arange(m), 0.01))


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("head_dim,head_dim_v,n", [(64, 96, 1), (64, 96, 37), (128, 48, 1), (128, 48, 9)])
def test_attention_value_dim(ctx, head_dim, head_dim_v, n, kernels):
    """head_dim_v != head_dim: V rows, the accumulator and out have their own width."""
    rng = np.random.default_rng(head_dim_v + n)
    n_head, n_head_kv, m = 6, 2, 90
    q = data(rng, (n, n_head, head_dim), 1.0, 0.1)
    k = data(rng, (m, n_head_kv, head_dim), 1.0, -0.1)
    v = data(rng, (m, n_head_kv, head_dim_v), 3.0, 1.0)
    q_pos = np.arange(m - n, m, dtype=np.uint32)
    scale = 1.0 / math.sqrt(head_dim)
    got = run_attention(ctx, q, k, v, q_pos, m, scale, 0, 0.0, 0.0, kernels=kernels)
    check("attention", got, exact(reference.attention, q, k, v, q_pos.astype(np.int64), np.arange(m), scale))


def workgroup_bytes(shader: str, entry: str) -> int:
    """Bytes of the var<workgroup> arrays that `entry` of shaders/<shader> names in its body, their
    lengths evaluated from the file's constants (wgpu does not check this limit; Dawn does)."""
    import re

    text = (SHADER_DIR / shader).read_text()
    body = re.search(rf"\nfn {entry}\(.*?\n}}\n", text, re.S)
    assert body, f"{shader} has no entry {entry}"
    total = 0
    for name, length in re.findall(r"var<workgroup>\s+(\w+)\s*:\s*array<f32\s*,\s*([^;]+)>\s*;", text):
        if re.search(rf"\b{name}\b", body.group(0)):
            expr = re.sub(r"[A-Z_][A-Z0-9_]*", lambda m: str(shader_constant(shader, m.group(0))), length)
            assert re.fullmatch(r"[0-9u +*()]+", expr), f"{shader}: cannot evaluate the length {length!r} of {name}"
            total += 4 * eval(expr.replace("u", ""))
    return total


def test_attention_gpu_family_on_a_small_device(ctx):
    """prefill_tiled and decode_split fit a device with 128 invocations a workgroup and 16 KiB of
    workgroup memory, and there give what they give on the adapter's own limits, bit for bit."""
    small = GpuContext()  # its device replaced before anything is compiled on it
    limits = {
        "max-compute-invocations-per-workgroup": 128,
        "max-compute-workgroup-size-x": 128,
        "max-compute-workgroup-size-y": 128,
        "max-compute-workgroup-size-z": 64,
        "max-compute-workgroup-storage-size": 16384,
    }
    small.device = small.adapter.request_device_sync(required_features=sorted(small.features), required_limits={**small.limits, **limits})
    assert small.device.limits["max-compute-invocations-per-workgroup"] == 128
    assert shader_constant("attention.wgsl", "GPU_WG") <= 128
    for entry in ("prefill_tiled", "decode_split"):
        assert 8192 < workgroup_bytes("attention.wgsl", entry) <= 16384
    rng = np.random.default_rng(21)
    for n, m, head_dim in ((1, 600, 256), (1, 300, 64), (19, 300, 256), (40, 90, 64)):
        q = data(rng, (n, 8, head_dim), 1.0, 0.1)
        k = data(rng, (m, 2, head_dim), 1.0, -0.1)
        v = data(rng, (m, 2, head_dim), 3.0, 1.0)
        q_pos = np.arange(m - n, m, dtype=np.uint32)
        args = (q, k, v, q_pos, m, 1.0 / math.sqrt(head_dim), 0, 0.0, 0.0)
        got = run_attention(small, *args, kernels="gpu")
        check("attention", got, exact(reference.attention, q, k, v, q_pos.astype(np.int64), np.arange(m), 1.0 / math.sqrt(head_dim)))
        np.testing.assert_array_equal(got, run_attention(ctx, *args, kernels="gpu"))


@pytest.mark.parametrize("n,row_len", [(1, 7), (7, 4099), (127, 128)])
def test_kv_store(ctx, n, row_len):
    rng = np.random.default_rng(n + row_len)
    src_stride, src_offset = 3 * row_len + 1, row_len + 2
    fused = data(rng, (n * src_stride + src_offset,), 2.0, 1.0)
    m, max_tokens = 11, n + 20
    cache_before = data(rng, (max_tokens, row_len), 1.0, -3.0)
    cache = ctx.buffer(cache_before)
    uni = params("IIIII", row_len, src_stride, src_offset, row_len, m * row_len)
    ctx.run("kv_store.wgsl", [ctx.buffer(uni, uniform=True), ctx.buffer(fused), cache], (-(-row_len // 256), n, 1))
    want = cache_before.copy()
    want[m : m + n] = np.stack([fused[src_offset + t * src_stride :][:row_len] for t in range(n)])
    np.testing.assert_array_equal(ctx.read(cache, np.float32, (max_tokens, row_len)), want)


@pytest.mark.parametrize("n,row_len", [(1, 7), (7, 4099), (127, 128)])
def test_kv_store_f16(ctx_f16, n, row_len):
    """The f16 KV variant: rows rounded to f16 exactly as numpy's astype(float16) (round to nearest
    even, subnormals and overflow to inf included), at odd element offsets, other rows untouched."""
    ctx = ctx_f16
    rng = np.random.default_rng(n + row_len + 1)
    src_stride, src_offset = 3 * row_len + 1, row_len + 2
    fused = data(rng, (n * src_stride + src_offset,), 2.0, 1.0)
    fused[::7] *= np.float32(1e-5)  # f16 subnormals
    fused[3::11] *= np.float32(3e4)  # beyond f16's 65504 for some: inf
    m, max_tokens = 11, n + 20
    cache_before = data(rng, (max_tokens, row_len), 1.0, -3.0).astype(np.float16)
    cache = ctx.buffer(cache_before)
    uni = params("IIIII", row_len, src_stride, src_offset, row_len, m * row_len)
    ctx.run("kv_store.wgsl", [ctx.buffer(uni, uniform=True), ctx.buffer(fused), cache], (-(-row_len // 256), n, 1), kv_f16=True)
    rows = np.stack([fused[src_offset + t * src_stride :][:row_len] for t in range(n)])
    want = cache_before.copy()
    with np.errstate(over="ignore"):
        want[m : m + n] = rows.astype(np.float16)
    got = ctx.read(cache, np.float16, (max_tokens, row_len))
    np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))


def test_kv_f16_variant_needs_exactly_one_alias_line(ctx):
    """The f16 KV variant is `enable f16;` plus the alias made f16; a shader without exactly one
    alias line has none, and the error names its file."""
    for name in ("rope.wgsl", "kv_store.wgsl", "attention.wgsl"):
        source = ctx.shader_source(name)
        variant = kv_f16_variant(name, source)
        assert variant == "enable f16;\n" + source.replace(KV_ALIAS, KV_ALIAS_F16)
        assert KV_ALIAS not in variant and variant.count(KV_ALIAS_F16) == 1
    with pytest.raises(GpuError, match=r"shaders/add\.wgsl has no f16 KV variant.*alias kv_t = f32;"):
        kv_f16_variant("add.wgsl", ctx.shader_source("add.wgsl"))
    twice = ctx.shader_source("kv_store.wgsl") + KV_ALIAS + "\n"
    with pytest.raises(GpuError, match=r"shaders/kv_store\.wgsl has no f16 KV variant"):
        kv_f16_variant("kv_store.wgsl", twice)
    with pytest.raises(GpuError, match=r"shaders/softcap\.wgsl has no f16 KV variant"):
        ctx.pipeline("softcap.wgsl", kv_f16=True)


# -- sampling ------------------------------------------------------------------------------------


def run_sample(ctx, logits_buf, vocab, offset, top_k, temperature, seed, step) -> int:
    """sample.wgsl with top-k and temperature alone (no adjust entries, no logprobs); the rest of
    its chain is tested in test_sampling.py."""
    out = ctx.buffer(np.array([NAN_BITS], np.uint32))
    uni = params("IIIfIIfffIIII", vocab, offset, top_k, temperature, seed, step, 1.0, 0.0, 1.0, 0, 0, 0, 0)
    no_entries, no_logprobs, no_mask = (ctx.buffer(np.zeros(4, np.uint32)) for _ in range(3))
    ctx.run("sample.wgsl", [ctx.buffer(uni, uniform=True), no_entries, logits_buf, out, no_logprobs, no_mask], (1, 1, 1))
    return int(ctx.read(out, np.uint32)[0])


@pytest.mark.parametrize("vocab", [1, 7, 4099, 262144])
def test_sample_greedy(ctx, vocab):
    """top_k 1 or temperature 0 is argmax; ties go to the lowest id; the row is found by its offset."""
    rng = np.random.default_rng(vocab)
    rows = data(rng, (3, vocab), 3.0, -20.0)
    rows[1] = np.round(rows[1])  # many ties, including at the max
    rows[2] = data(rng, (vocab,), 1.0, -1e4)  # all far below zero
    if vocab > 7:
        top = rows[2].max() + 1.0
        rows[2][[vocab - 1, vocab // 2, 5]] = top  # three-way tie at the max: id 5 wins
    buf = ctx.buffer(rows)
    for r in range(3):
        want = int(np.argmax(rows[r]))
        assert want == reference.sample_top_k(rows[r], 1, 1.0, 0.5)
        assert run_sample(ctx, buf, vocab, r * vocab, 1, 1.0, 7, r) == want
        assert run_sample(ctx, buf, vocab, r * vocab, 40, 0.0, 7, r) == want
    if vocab > 7:
        assert int(np.argmax(rows[2])) == 5


def reference_picks(logits, top_k, temperature, u, du=1e-5) -> tuple[int, set[int]]:
    """The reference's pick for u, and the set of its picks for u and u -+ du: where u * total lies
    within du of a cumulative-probability boundary, the GPU's exp may land the draw on either side."""
    picks = [reference.sample_top_k(logits, top_k, temperature, min(max(x, 0.0), 1.0 - 2**-24)) for x in (u, u - du, u + du)]
    return picks[0], set(picks)


@pytest.mark.parametrize(
    "vocab,top_k,temperature,ties,steps",
    [(4099, 2, 1.0, False, 8), (32000, 40, 0.8, False, 8), (32000, 64, 1.5, True, 8), (262144, 40, 1.0, False, 2), (50, 64, 0.7, True, 8)],
)
def test_sample_top_k_matches_reference(ctx, vocab, top_k, temperature, ties, steps):
    rng = np.random.default_rng(vocab + top_k)
    logits = data(rng, (vocab,), 2.0, 5.0)
    if ties:
        logits = np.round(logits * 2.0) / np.float32(2.0)  # equal logits inside the top k: order by id matters
    buf = ctx.buffer(logits)
    picks, ambiguous = [], 0
    for seed, step in [(s, t) for s in (0, 1, 12345, 2**32 - 1) for t in range(steps)]:
        got = run_sample(ctx, buf, vocab, 0, top_k, temperature, seed, step)
        want, allowed = reference_picks(logits, top_k, temperature, reference.random_uniform(seed, step))
        ambiguous += len(allowed) > 1
        assert got == want or got in allowed, f"seed {seed} step {step}: GPU picked {got}, reference {want}"
        picks.append(got)
    assert ambiguous <= 1, "draws too close to a boundary to be a test"
    assert len(set(picks)) >= min(top_k, 3), "the draws do not depend on (seed, step)"


def test_sample_same_seed_same_ids(ctx):
    rng = np.random.default_rng(99)
    logits = data(rng, (32000,), 1.0, 0.0)
    buf = ctx.buffer(logits)
    first = [run_sample(ctx, buf, 32000, 0, 40, 1.0, 2024, step) for step in range(12)]
    again = [run_sample(ctx, buf, 32000, 0, 40, 1.0, 2024, step) for step in range(12)]
    other_seed = [run_sample(ctx, buf, 32000, 0, 40, 1.0, 2025, step) for step in range(12)]
    assert first == again
    assert first != other_seed
    assert first == [reference.sample_top_k(logits, 40, 1.0, reference.random_uniform(2024, s)) for s in range(12)]
