"""Decode (matrix x vector) bandwidth of each quantised matmul kernel against a plain copy kernel.

    .venv/bin/python bench/matmul_bench.py [--n-out 4096] [--k 4096] [--reps 20]

GB/s counts the bytes the kernel must read (the repacked weight; x is negligible) or, for the copy,
the bytes read plus written. The copy kernel (bench/copy.wgsl) is a bench tool, not a model op. The ratio says how close each kernel gets to the adapter's streaming
bandwidth; a memory-bound kernel should approach 1 on a real GPU. Prints only: no assertions.
"""

from __future__ import annotations

import argparse
import os
import struct
import time
from pathlib import Path

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")

import numpy as np

from wgllm import quant
from wgllm.gpu import weights
from wgllm.gpu.runtime import get_context

def timed(ctx, record, reps: int) -> float:
    """Seconds per run of `record(encoder)`, all reps in one submission (one warm-up before)."""
    enc = ctx.device.create_command_encoder()
    record(enc)
    ctx.device.queue.submit([enc.finish()])
    ctx.device.queue.read_buffer(ctx.buffer(size=4))  # waits for the queue
    enc = ctx.device.create_command_encoder()
    for _ in range(reps):
        record(enc)
    start = time.perf_counter()
    ctx.device.queue.submit([enc.finish()])
    ctx.device.queue.read_buffer(ctx.buffer(size=4))
    return (time.perf_counter() - start) / reps


def random_weight(rng, t, n_out: int, k: int) -> np.ndarray:
    """GGUF bytes of a random normal (n_out, k) weight quantised to `t`."""
    return quant.quantize(rng.standard_normal((n_out, k)).astype(np.float32), t).reshape(-1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-out", type=int, default=4096)
    ap.add_argument("--k", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    ctx = get_context()
    print(f"adapter: {ctx.adapter_name}")
    rng = np.random.default_rng(0)

    n4 = args.n_out * args.k // 4  # copy as many bytes as an F32 weight, vec4 at a time
    src, dst = ctx.buffer(size=n4 * 16), ctx.buffer(size=n4 * 16)
    module = ctx.device.create_shader_module(label="copy.wgsl", code=(Path(__file__).parent / "copy.wgsl").read_text())
    pipe = ctx.device.create_compute_pipeline(layout="auto", compute={"module": module, "entry_point": "main"})
    groups = -(-n4 // 256)
    gx = min(groups, 65535)
    bg = ctx.bind_group(pipe, [ctx.buffer(struct.pack("<I", n4), uniform=True), src, dst])
    sec = timed(ctx, lambda e: ctx.encode(e, pipe, bg, (gx, -(-groups // gx), 1)), args.reps)
    copy_gbs = 2 * n4 * 16 / sec / 1e9
    print(f"copy  {n4 * 16 / 1e6:8.1f} MB  {sec * 1e3:8.3f} ms  {copy_gbs:7.2f} GB/s (read + write)")

    x = ctx.buffer(rng.standard_normal(args.k).astype(np.float32))
    y = ctx.buffer(size=args.n_out * 4)
    for t in weights.SUPPORTED_TYPES:
        repacked = weights.repack(random_weight(rng, t, args.n_out, args.k), t, (args.n_out, args.k))
        nbytes = sum(a.nbytes for a in repacked.arrays)
        gw = weights.upload(ctx, repacked)
        sec = timed(ctx, lambda e: weights.matmul(ctx, e, gw, x, y, 1), args.reps)
        gbs = nbytes / sec / 1e9
        print(f"{t.name:5} {nbytes / 1e6:8.1f} MB  {sec * 1e3:8.3f} ms  {gbs:7.2f} GB/s  ratio to copy {gbs / copy_gbs:5.2f}")


if __name__ == "__main__":
    main()
