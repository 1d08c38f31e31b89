"""Fixtures for tests/browser/shader_precision.spec.ts: inputs and float64 reference outputs of every
position-dependent or transcendental kernel, for the browser to run through plain WebGPU calls.

    python tests/browser/shader_precision_fixtures.py OUT_DIR

Writes OUT_DIR/cases.json and one OUT_DIR/<case>.bin per case. A case names its shader and entry
point, its grid, and its bindings in binding order; each binding is a byte range of the .bin (a
uniform's Params, an input, or an output's initial contents, NaN-poisoned unless the kernel works in
place) and an output also names the range holding its float64-reference value as float32, where NaN
means "must keep the poison bits". Bindings, Params and grids mirror tests/py/test_shaders.py; the
tolerances are gpu_tolerances.TOLERANCES, the table the Python engine's shader tests use on lavapipe.
"""

from __future__ import annotations

import json
import math
import struct
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "py"))

import numpy as np  # noqa: E402
from gpu_tolerances import ATOL_FLOOR, ROPE_ATOL_PER_RADIAN, TOLERANCES  # noqa: E402

from wgllm import reference  # noqa: E402
from wgllm.gpu.runtime import shader_constant  # noqa: E402

NAN_BITS = 0x7FC00001  # test_shaders.py's poison: a quiet NaN with a payload


def data(rng, shape, scale: float = 1.0, shift: float = 0.0) -> np.ndarray:
    x = rng.standard_normal(shape).astype(np.float32) * np.float32(scale) + np.float32(shift)
    assert np.all(x != 0)
    return x


def exact(fn, *args, **kwargs) -> np.ndarray:
    """The reference in float64 on the same float32 inputs (as test_shaders.exact)."""
    cast = lambda a: a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype == np.float32 else a  # noqa: E731
    return fn(*map(cast, args), **{k: cast(v) for k, v in kwargs.items()})


def poison(n_words: int) -> np.ndarray:
    return np.full(n_words, NAN_BITS, np.uint32)


class Case:
    """One kernel launch: bindings in binding order, packed into one .bin."""

    def __init__(self, name: str, op: str, grid, entry: str = "main", extra_atol_rel: float = 0.0, note: str = "", per_element: bool = False):
        """per_element: each output held to rtol of its own value (atol only ATOL_FLOOR), not to a share of max|output|."""
        self.name, self.op, self.entry, self.grid = name, op, entry, [int(g) for g in grid]
        rtol, atol_rel = TOLERANCES[op]
        self.rtol, self.atol_rel = rtol, 0.0 if per_element else atol_rel + extra_atol_rel
        self.note = note
        self.chunks: list[bytes] = []
        self.bindings: list[dict] = []
        self.size = 0

    def _put(self, raw: bytes) -> dict:
        raw = raw + b"\0" * (-len(raw) % 16)
        at = {"offset": self.size, "bytes": len(raw)}
        self.chunks.append(raw)
        self.size += len(raw)
        return at

    def uniform(self, fmt: str, *values) -> Case:
        self.bindings.append({"role": "uniform", **self._put(struct.pack("<" + fmt, *values))})
        return self

    def input(self, a: np.ndarray) -> Case:
        self.bindings.append({"role": "input", **self._put(np.ascontiguousarray(a).tobytes())})
        return self

    def output(self, initial: np.ndarray, want: np.ndarray) -> Case:
        """`want` (float64 or float32, NaN where the initial bits must stay) has initial's word count."""
        want = np.asarray(want, np.float32).ravel()
        assert want.size * 4 == initial.nbytes
        init = self._put(np.ascontiguousarray(initial).tobytes())
        self.bindings.append({"role": "output", **init, "words": int(want.size), "want": self._put(want.tobytes())})
        return self

    def manifest(self) -> dict:
        return {
            "name": self.name, "op": self.op, "entry": self.entry, "grid": self.grid, "note": self.note,
            "rtol": self.rtol, "atol_rel": self.atol_rel, "atol_floor": ATOL_FLOOR, "bindings": self.bindings,
        }


def grid_2d(groups: int, max_x: int) -> tuple[int, int, int]:
    gx = max(1, min(groups, max_x))
    return (gx, -(-groups // gx), 1)


def norm_cases(rng) -> list[Case]:
    cases = []
    for scale, shift in [(1.0, 0.5), (30.0, -100.0), (0.01, 3.0)]:
        rows, dim = 7, 4099
        x, w, b = data(rng, (rows, dim), scale, shift), data(rng, (dim,), 0.3, 1.0), data(rng, (dim,), 0.2, 0.1)
        tag = f"{rows}x{dim} x*{scale}{shift:+}"
        cases.append(
            Case(f"rms_norm {tag}", "rms_norm", grid_2d(rows, 5)).uniform("IIf", rows, dim, 1e-6)
            .input(x).input(w).output(poison(x.size), exact(reference.rms_norm, x, w, 1e-6))
        )
        cases.append(
            Case(f"layer_norm {tag}", "layer_norm", grid_2d(rows, 5)).uniform("IIf", rows, dim, 1e-5)
            .input(x).input(w).input(b).output(poison(x.size), exact(reference.layer_norm, x, w, b, 1e-5))
        )
    return cases


def elementwise_cases(rng) -> list[Case]:
    n = 4099
    unary = {"gelu_tanh": reference.gelu_tanh, "gelu_erf": reference.gelu_erf}
    gated = {"swiglu": reference.swiglu, "geglu": reference.geglu}
    grid = grid_2d(-(-n // 256), 3)
    cases = []
    for scale, shift in [(1.0, 0.5), (4.0, 0.0), (0.01, 0.0), (30.0, -100.0)]:
        x, up = data(rng, (n,), scale, shift), data(rng, (n,), 2.0, 0.5)
        tag = f"n={n} x*{scale}{shift:+}"
        for op, fn in unary.items():
            cases.append(Case(f"{op} {tag}", op, grid).uniform("I", n).input(x).output(poison(n), exact(fn, x)))
        for op, fn in gated.items():
            cases.append(Case(f"{op} {tag}", op, grid).uniform("I", n).input(x).input(up).output(poison(n), exact(fn, x, up)))
    for cap, scale in [(30.0, 1.0), (30.0, 400.0), (50.0, 20.0)]:
        x = data(rng, (n,), scale, 0.0)
        cases.append(
            Case(f"softcap cap={cap} n={n} x*{scale}", "softcap", grid).uniform("If", n, cap)
            .input(x).output(poison(n), exact(reference.softcap, x, cap))
        )
    return cases


def gelu_tail_cases(rng) -> list[Case]:
    """The GELUs where they are tiny, each output to rtol of its own value (tests/py/test_shader_precision.py
    on lavapipe): x in [-100, -5] (outputs down to f32's underflow, where the clamped tanh once gave
    2e-9 x) and [-5, -0.5] (where 1 + tanh z and 1 + erf cancelled)."""
    n = 4099
    grid = grid_2d(-(-n // 256), 3)
    cases = []
    for low, high in [(-100.0, -5.0), (-5.0, -0.5)]:
        x, up = rng.uniform(low, high, n).astype(np.float32), data(rng, (n,), 2.0, 0.5)
        tag = f"n={n} x in [{low:g}, {high:g}] per element"
        for op, fn in {"gelu_tanh": reference.gelu_tanh, "gelu_erf": reference.gelu_erf}.items():
            cases.append(Case(f"{op} {tag}", op, grid, per_element=True).uniform("I", n).input(x).output(poison(n), exact(fn, x)))
        cases.append(
            Case(f"geglu {tag}", "geglu", grid, per_element=True).uniform("I", n).input(x).input(up)
            .output(poison(n), exact(reference.geglu, x, up))
        )
    return cases


ROPE_CASES = [
    # n, heads, head_dim, n_rot, base, pos_scale, neox, max position
    (7, 4, 80, 32, 10000.0, 1.0, True, 300),  # phi-2: partial rotary
    (16, 2, 256, 256, 1000000.0, 8.0, True, 300),  # gemma-3 global layers
    (5, 7, 128, 32, 500000.0, 1.0, False, 300),  # llama-3: base 5e5 and rope_freqs (random factors in [1, 8])
    (9, 3, 64, 64, 10000.0, 1.0, False, 40),  # positions of the tiny models' prompts
    (6, 2, 64, 64, 10000.0, 1.0, True, 4096),  # a long context
]


def rope_cases(rng) -> list[Case]:
    cases = []
    for n, heads, head_dim, n_rot, base, pos_scale, neox, max_pos in ROPE_CASES:
        width = heads * head_dim
        positions = np.sort(rng.permutation(max_pos)[:n]).astype(np.uint32)
        positions[-1] = max_pos - 1
        extra = ROPE_ATOL_PER_RADIAN * float(positions.max()) / pos_scale
        grid = (-(-width // 2 // 64), n, 1)
        fields = lambda ins, ino, outs, outo: (n, heads, head_dim, n_rot, ins, ino, outs, outo, base, pos_scale, int(neox), 1.0)  # noqa: E731  (mscale 1)
        tag = f"n={n} heads={heads} d={head_dim} rot={n_rot} base={base:g}/{pos_scale:g} {'neox' if neox else 'pairs'} pos<{max_pos}"
        # rope.wgsl's frequency divisors: llama-3's rope_freqs for the base 5e5 case, ones otherwise
        factors = rng.uniform(1.0, 8.0, n_rot // 2).astype(np.float32) if base == 500000.0 else np.ones(n_rot // 2, np.float32)
        # main: rows read out of a wider fused buffer, written into a cache at an offset
        in_stride, in_offset, out_offset = 3 * width + 5, width + 3, 11 * width
        fused = data(rng, (n * in_stride + in_offset,), 2.0, -0.5)
        x = np.stack([fused[in_offset + t * in_stride :][:width] for t in range(n)]).reshape(n, heads, head_dim)
        cache_words = out_offset + (n + 13) * width
        want = np.full(cache_words, np.nan)
        want[out_offset : out_offset + n * width] = exact(reference.rope, x, positions, n_rot, base, neox, pos_scale, factors).ravel()
        cases.append(
            Case(f"rope main {tag}", "rope", grid, "main", extra).uniform("IIIIIIIIffIf", *fields(in_stride, in_offset, width, out_offset))
            .input(positions).input(fused).output(poison(cache_words), want).input(factors)
        )
        data(rng, (n, heads, head_dim), 2.0, -0.5)  # what the removed in_place case drew: the later cases keep their data
    return cases


ATTENTION_CASES = [
    # n_head, n_head_kv, head_dim, m, n, window, softcap, alibi_max_bias
    (8, 2, 64, 300, 37, 0, 0.0, 0.0),  # GQA prefill after a cached prefix
    (4, 1, 256, 130, 130, 0, 50.0, 0.0),  # MQA prefill from empty, gemma-2 soft-capping
    (4, 2, 64, 300, 20, 96, 0.0, 0.0),  # sliding window
    (8, 8, 64, 200, 9, 0, 0.0, 8.0),  # ALiBi
    (6, 6, 64, 70, 1, 0, 0.0, 8.0),  # ALiBi past 2^floor(log2 H), decode
]


def attention_cases(rng) -> list[Case]:
    cases = []
    for n_head, n_head_kv, d, m, n, window, cap, max_bias in ATTENTION_CASES:
        q = data(rng, (n, n_head, d), 1.0, 0.1)
        k = data(rng, (m, n_head_kv, d), 1.0, -0.1)
        v = data(rng, (m, n_head_kv, d), 3.0, 1.0)
        pad = poison(17 * n_head_kv * d).view(np.float32).reshape(17, n_head_kv, d)  # rows past n_kv are NaN
        q_pos = np.arange(m - n, m, dtype=np.uint32)
        scale = 1.0 / math.sqrt(d) * (4.0 if cap else 1.0)
        slopes = reference.alibi_slopes(n_head, max_bias) if max_bias else None
        want = exact(reference.attention, q, k, v, q_pos.astype(np.int64), np.arange(m), scale, softcap_value=cap, window=window, slopes=slopes)
        tag = f"heads={n_head}/{n_head_kv} d={d} keys={m} queries={n} window={window} softcap={cap:g} alibi={max_bias:g}"
        # the cpu family's main, and for prefill the gpu family's prefill_tiled (its decode is two launches: the engine tests)
        launches = [("main", (n_head, -(-n // 32), 1))] + ([("prefill_tiled", (n_head, -(-n // shader_constant("attention.wgsl", "Q_TILE")), 1))] if n > 1 else [])
        for entry, grid in launches:
            cases.append(
                Case(f"attention {entry} {tag}", "attention", grid, entry)
                .uniform("IIIIIIfffII", n_head, n_head_kv, d, d, m, window, scale, cap, max_bias, n, 0)
                .input(q).input(np.concatenate([k, pad])).input(np.concatenate([v, pad])).input(q_pos)
                .output(poison(n * n_head * d), want)
            )
    return cases


def main(out: Path) -> None:
    rng = np.random.default_rng(8)
    cases = rope_cases(rng) + attention_cases(rng) + elementwise_cases(rng) + norm_cases(rng) + gelu_tail_cases(rng)  # new cases last: the others keep their data
    out.mkdir(parents=True, exist_ok=True)
    manifest = []
    for i, case in enumerate(cases):
        file = f"case{i:03d}.bin"
        (out / file).write_bytes(b"".join(case.chunks))
        manifest.append({**case.manifest(), "file": file})
    tmp = out / "cases.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.rename(out / "cases.json")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: shader_precision_fixtures.py OUT_DIR")
    main(Path(sys.argv[1]))
