"""Decode (matrix x vector) bandwidth of each quantised matmul kernel against a plain copy kernel.

    .venv/bin/python bench/matmul_bench.py [--n-out 4096] [--k 4096] [--reps 20] [--types Q4_0,Q8_0] [--kernels cpu,gpu]

GB/s counts the bytes the kernel must read (the repacked weight; x is negligible) or, for the copy,
the bytes read plus written. The copy kernel is shaders/copy.wgsl, measured by wgllm.bench.copy_bandwidth. The ratio says how close each kernel gets to the adapter's streaming
bandwidth; a memory-bound kernel should approach 1 on a real GPU. Prints only: no assertions.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")

import numpy as np

from wgllm import quant
from wgllm.gpu import weights
from wgllm.bench import copy_bandwidth, timed
from wgllm.gpu.runtime import get_context

def random_weight(rng, t, n_out: int, k: int) -> np.ndarray:
    """GGUF bytes of a random normal (n_out, k) weight quantised to `t`."""
    return quant.quantize(rng.standard_normal((n_out, k)).astype(np.float32), t).reshape(-1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-out", type=int, default=4096)
    ap.add_argument("--k", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--types", default=None, help="comma-separated GGML type names (default: every supported type)")
    ap.add_argument("--kernels", default="cpu", help="comma-separated kernel families to time on the same weights (cpu, gpu)")
    args = ap.parse_args()
    types = weights.SUPPORTED_TYPES if args.types is None else [weights.T[name.strip().upper()] for name in args.types.split(",")]
    families = [f.strip() for f in args.kernels.split(",")]
    ctx = get_context()
    print(f"adapter: {ctx.adapter_name}")
    rng = np.random.default_rng(0)

    copy_gbs = copy_bandwidth(ctx, args.n_out * args.k * 4, args.reps)  # as many bytes as an F32 weight
    print(f"copy  {copy_gbs:7.2f} GB/s (read + write)")

    x = ctx.buffer(rng.standard_normal(args.k).astype(np.float32))
    y = ctx.buffer(size=args.n_out * 4)
    for t in types:
        repacked = weights.repack(random_weight(rng, t, args.n_out, args.k), t, (args.n_out, args.k))
        nbytes = sum(a.nbytes for a in repacked.arrays)
        gw = weights.upload(ctx, repacked)
        for family in families:
            sec = timed(ctx, lambda e: weights.matmul(ctx, e, gw, x, y, 1, kernels=family), args.reps)
            gbs = nbytes / sec / 1e9
            print(f"{t.name:5} {family:3} {nbytes / 1e6:8.1f} MB  {sec * 1e3:8.3f} ms  {gbs:7.2f} GB/s  ratio to copy {gbs / copy_gbs:5.2f}")


if __name__ == "__main__":
    main()
