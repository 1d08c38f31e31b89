"""The GELU kernels element by element against float64, on the negative inputs where GELU is tiny.

test_shaders.py allows each element an error of 1e-6 of max|output| (gpu_tolerances), which cannot see
the small outputs of x << 0. There the kernels once computed 0.5 x (1 + tanh z), z clamped to
[-10, 10], and 0.5 x (1 + erf(x / sqrt 2)), both cancelling: on lavapipe every gelu_tanh output
below ~1e-7 (x < -5) came out 0, and gelu_erf was 4.8% off at x = -5 and 0 from about -5.5; where tanh(-10)
rounds above -1 the clamp gives 2e-9 x instead (-1.4e-7 at x = -70, where GELU is about -1e-10677).

Here every output is held to the table's rtol of its own value (ATOL_FLOOR only for results that
underflow f32), against oracles built in float64 from the standard library: the logistic form of
gelu_tanh, x / (1 + e^-2z), and 0.5 x erfc(-x / sqrt 2) with math.erfc. The reference itself is checked
against the same oracles in float64 and float32. Inputs: x in [-100, -5] (tiny or underflowing
outputs), [-5, -0.5] (the cancelling range), both signs, and a few exact points.
"""

from __future__ import annotations

import math
import os

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # silences lavapipe's warning about a missing runtime dir

import numpy as np
import pytest
from gguf import GGMLQuantizationType
from gpu_tolerances import ATOL_FLOOR, TOLERANCES

from wgllm import reference
from wgllm.gpu import weights
from wgllm.gpu.runtime import get_context

NAN_BITS = 0x7FC00001
N = 4099
POINTS = np.array([-100.0, -70.0, -20.0, -13.0, -10.0, -9.0, -7.0, -5.0, -3.0, -1.0, -0.5, -1e-3, 1e-3, 0.5, 3.0, 70.0], np.float32)


def gelu_tanh_exact(x: np.ndarray) -> np.ndarray:
    """0.5 x (1 + tanh z) = x / (1 + e^-2z) in float64: no cancellation (e^-2z = inf gives -0)."""
    x = x.astype(np.float64)
    z2 = 2.0 * math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)
    with np.errstate(over="ignore"):
        return x / (1.0 + np.exp(-z2))


def gelu_erf_exact(x: np.ndarray) -> np.ndarray:
    """0.5 x (1 + erf(x / sqrt 2)) = 0.5 x erfc(-x / sqrt 2), math.erfc's float64 to the last bits."""
    x = x.astype(np.float64)
    return 0.5 * x * np.vectorize(math.erfc)(-x / math.sqrt(2.0))


EXACT = {"gelu_tanh": gelu_tanh_exact, "gelu_erf": gelu_erf_exact}
REFERENCE = {"gelu_tanh": reference.gelu_tanh, "gelu_erf": reference.gelu_erf}

# (name, low, high): x uniform in [low, high]
RANGES = [("strongly negative", -100.0, -5.0), ("moderately negative", -5.0, -0.5), ("both signs", -8.0, 8.0)]


def inputs(low: float, high: float, n: int = N, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.uniform(low, high, n).astype(np.float32)
    assert np.all(x != 0)
    return x


def check_elementwise(what: str, got: np.ndarray, want: np.ndarray, rtol: float) -> None:
    """|got - want| <= rtol |want| + ATOL_FLOOR at every element, finite, and the worst named."""
    got64, want = got.astype(np.float64).ravel(), want.ravel()
    assert np.all(np.isfinite(got)), f"{what}: {np.sum(~np.isfinite(got))} non-finite outputs"
    excess = np.abs(got64 - want) / (rtol * np.abs(want) + ATOL_FLOOR)
    i = int(np.argmax(excess))
    assert excess[i] <= 1.0, (
        f"{what}: {np.sum(excess > 1)} of {want.size} outputs off by more than rtol {rtol:g} of their own value; worst at "
        f"element {i}: got {got64[i]:.9g}, want {want[i]:.9g} (relative error {abs(got64[i] - want[i]) / max(abs(want[i]), 1e-300):.3g})"
    )


# -- the reference (the oracle of every other test) --------------------------------------------


@pytest.mark.parametrize("op", sorted(EXACT))
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 2e-6)])
def test_reference_gelu_relative(op, dtype, rtol):
    """reference.gelu_tanh / gelu_erf to rtol of each value: float64 to ~1e-7 (the erfc approximation's
    own error) for gelu_erf, to rounding for gelu_tanh; float32 (the reference's forward pass) without
    cancellation."""
    x = np.concatenate([inputs(lo, hi, seed=i) for i, (_, lo, hi) in enumerate(RANGES)] + [POINTS])
    with np.errstate(over="raise", divide="raise", invalid="raise"):  # no overflow warnings either (underflow is the point)
        got = REFERENCE[op](x.astype(dtype))
    assert got.dtype == dtype
    tol = max(rtol, 2.5e-7) if op == "gelu_erf" else rtol  # erfc's approximation: 1.2e-7 relative
    check_elementwise(f"reference.{op} {np.dtype(dtype).name}", got, EXACT[op](x), tol)


# -- the kernels on lavapipe ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def ctx():
    return get_context()


def run_elementwise(ctx, op: str, arrays: list[np.ndarray]) -> np.ndarray:
    n = arrays[0].size
    y = ctx.buffer(np.full(n, NAN_BITS, np.uint32))
    bindings = [ctx.buffer(np.array([n], np.uint32).tobytes(), uniform=True), *(ctx.buffer(a) for a in arrays), y]
    groups = -(-n // 256)
    ctx.run(f"{op}.wgsl", bindings, (min(groups, 3), -(-groups // 3), 1))
    return ctx.read(y, np.float32, (n,))


@pytest.mark.parametrize("op", sorted(EXACT))
@pytest.mark.parametrize("name,low,high", RANGES + [("points", 0.0, 0.0)], ids=[r[0] for r in RANGES] + ["points"])
def test_gelu_relative(ctx, op, name, low, high):
    x = POINTS if name == "points" else inputs(low, high)
    check_elementwise(f"{op} {name}", run_elementwise(ctx, op, [x]), EXACT[op](x), TOLERANCES[op][0])


@pytest.mark.parametrize("name,low,high", RANGES, ids=[r[0] for r in RANGES])
def test_geglu_relative(ctx, name, low, high):
    gate, up = inputs(low, high), inputs(-3.0, 3.0, seed=1)
    got = run_elementwise(ctx, "geglu", [gate, up])
    check_elementwise(f"geglu {name}", got, gelu_tanh_exact(gate) * up.astype(np.float64), TOLERANCES["geglu"][0])


@pytest.mark.parametrize("kernels", ["cpu", "gpu"])
@pytest.mark.parametrize("n", [1, 5])  # the decode kernel of the family, and its prefill kernel
def test_matmul_geglu_epilogue_relative(ctx, kernels, n):
    """The matmul's fused geglu epilogue (glu = 2) on exact gates: F32 weights and one-hot x rows make
    each gate and up exactly a weight (x @ W^T adds zeros to one product by 1.0), so the output is
    the epilogue's gelu_tanh(gate) * up alone, with no accumulation error for GELU to amplify."""
    rng = np.random.default_rng(n)
    n_ff, k = 4 * 64 + 3, 32
    gate_w = np.concatenate([inputs(lo, hi, n_ff * k // 3 + 1, seed=i) for i, (_, lo, hi) in enumerate(RANGES)])[: n_ff * k]
    gate_w = rng.permutation(gate_w).reshape(n_ff, k).astype(np.float32)
    up_w = inputs(-3.0, 3.0, n_ff * k, seed=7).reshape(n_ff, k)
    hot = rng.choice(k, n, replace=False)
    x = np.zeros((n, k), np.float32)
    x[np.arange(n), hot] = 1.0
    f32 = GGMLQuantizationType.F32
    gw = weights.upload_pairs(ctx, *(weights.repack(w.view(np.uint8).reshape(-1), f32, (n_ff, k)) for w in (gate_w, up_w)))
    y = ctx.buffer(np.full(n * n_ff, NAN_BITS, np.uint32))
    weights.matmul(ctx, None, gw, ctx.buffer(x), y, n, glu="geglu", kernels=kernels)
    got = ctx.read(y, np.float32, (n, n_ff))
    gate, up = gate_w[:, hot].T, up_w[:, hot].T
    check_elementwise(f"matmul geglu epilogue ({kernels}, n = {n})", got, gelu_tanh_exact(gate) * up.astype(np.float64), TOLERANCES["matmul"][0])
