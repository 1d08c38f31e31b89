"""attention.wgsl against an earlier version of it, on the engine's attention shapes, in one process.

    .venv/bin/python bench/attention_ab.py [--old-rev efda0c4 | --old-file F] [--new-file F] [--blocks 8] [--steps 3] [--launches 10] [--kv-f16]

The old text is `git show OLD_REV:shaders/attention.wgsl` (or --old-file), the new one the working
tree's file (or --new-file); each is launched as the engines launch it: a text whose Params end
in `n: u32` with grid (n_head, ceil(n / 32), 1), an earlier one (Params without n) with grid
(n_head, n, 1). Shapes: SmolLM2-135M (9 heads, 3 KV heads, head_dim 64) and
Gemma-3 270M (4 heads, 1 KV head, head_dim 256, a 512-key sliding window): a 128-token prefill
from position 0, and decode steps at positions 128 and 512, on random q and caches. Both variants
must give the same output (within the tolerance table's attention entry) before they are timed.
A call records --launches launches in one compute pass (as a step records one per layer) and
waits for the queue; blocks of --steps calls alternate between old and new (bench/ab.py).
Prints ms per call per block and the old/new ratios, per shape.
"""

from __future__ import annotations

import argparse
import math
import struct
import subprocess
from pathlib import Path

import numpy as np

from wgllm.gpu.runtime import KV_ALIAS, kv_f16_variant, get_context

from ab import alternate  # bench/ab.py (this script runs from bench/)

ROOT = Path(__file__).resolve().parents[1]

SHAPES = [
    # name, n_head, n_head_kv, head_dim, window, n, pos0
    ("smollm2 prefill 128", 9, 3, 64, 0, 128, 0),
    ("smollm2 decode @128", 9, 3, 64, 0, 1, 128),
    ("smollm2 decode @512", 9, 3, 64, 0, 1, 512),
    ("gemma3 prefill 128", 4, 1, 256, 512, 128, 0),
    ("gemma3 decode @128", 4, 1, 256, 512, 1, 128),
    ("gemma3 decode @512", 4, 1, 256, 512, 1, 512),
]


def variant(ctx, name: str, source: str, kv_f16: bool):
    with_n = "    n: u32," in source  # since the kernel with a workgroup per 32 queries
    rows_per_group = 32 if with_n else 1
    code = kv_f16_variant("attention.wgsl", source) if kv_f16 else source
    module = ctx.device.create_shader_module(label=name, code=code)
    pipeline = ctx.device.create_compute_pipeline(label=name, layout="auto", compute={"module": module, "entry_point": "main"})
    return pipeline, with_n, rows_per_group


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old-rev", default="efda0c4")
    ap.add_argument("--old-file", help="the old text from this file instead of git")
    ap.add_argument("--new-file", help="the new text from this file instead of shaders/attention.wgsl")
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--launches", type=int, default=10)
    ap.add_argument("--kv-f16", action="store_true", help="both variants' f16 KV text (caches in f16)")
    ap.add_argument("--only", default="", help="run only the shapes whose name contains this")
    args = ap.parse_args()
    ctx = get_context()
    if args.old_file:
        old_text = Path(args.old_file).read_text()
    else:
        old_text = subprocess.run(["git", "show", f"{args.old_rev}:shaders/attention.wgsl"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    new_text = Path(args.new_file or ROOT / "shaders" / "attention.wgsl").read_text()
    assert KV_ALIAS in old_text and KV_ALIAS in new_text
    variants = {
        "old": variant(ctx, "old", old_text, args.kv_f16),
        "new": variant(ctx, "new", new_text, args.kv_f16),
    }
    print(f"adapter: {ctx.adapter_name}   old: {args.old_file or args.old_rev}   new: {args.new_file or 'shaders/attention.wgsl'}   kv: {'f16' if args.kv_f16 else 'f32'}   a call = {args.launches} launches")
    rng = np.random.default_rng(0)
    kv_dtype = np.float16 if args.kv_f16 else np.float32
    for shape, n_head, n_head_kv, d, window, n, pos0 in SHAPES:
        if args.only not in shape:
            continue
        m = pos0 + n
        q = rng.standard_normal((n, n_head, d), dtype=np.float32)
        k = rng.standard_normal((m, n_head_kv, d), dtype=np.float32).astype(kv_dtype)
        v = rng.standard_normal((m, n_head_kv, d), dtype=np.float32).astype(kv_dtype)
        q_pos = np.arange(pos0, m, dtype=np.uint32)
        bufs = [ctx.buffer(q), ctx.buffer(k), ctx.buffer(v), ctx.buffer(q_pos)]
        runs, outs = {}, {}
        for name, (pipeline, with_n, rows_per_group) in variants.items():
            fields = [n_head, n_head_kv, d, d, m, window, 1.0 / math.sqrt(d), 0.0, 0.0] + ([n] if with_n else [])
            fmt = "<IIIIIIfff" + ("I" if with_n else "")
            out = ctx.buffer(size=n * n_head * d * 4)
            bind_group = ctx.bind_group(pipeline, [ctx.buffer(struct.pack(fmt, *fields), uniform=True), *bufs, out])
            grid = (n_head, -(-n // rows_per_group), 1)

            def run(pipeline=pipeline, bind_group=bind_group, grid=grid):
                enc = ctx.device.create_command_encoder()
                cpass = enc.begin_compute_pass()
                for _ in range(args.launches):
                    ctx.dispatch(cpass, pipeline, bind_group, grid)
                cpass.end()
                ctx.device.queue.submit([enc.finish()])
                ctx.device.queue.read_buffer(ctx.buffer(size=4))  # returns once the queue has drained

            run()
            outs[name] = ctx.read(out, np.float32)
            runs[name] = run
        diff = np.abs(outs["old"] - outs["new"]).max() / np.abs(outs["old"]).max()
        if not diff < 4e-6:
            raise SystemExit(f"{shape}: old and new differ by {diff:.2e} of max|out|")
        print(f"\n{shape}: heads {n_head}/{n_head_kv}, head_dim {d}, window {window}, queries {n}, keys {m}; max|old - new| / max|old| = {diff:.1e}")
        alternate(runs, args.blocks, args.steps, slow="old", fast="new")


if __name__ == "__main__":
    main()
