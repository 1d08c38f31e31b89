"""Where a forward step's time goes: each launch of the engine's program timed on its own, summed by kind.

    .venv/bin/python bench/profile_ops.py MODEL.gguf [--prompt-tokens 128] [--reps 3]

Prints, for a prefill of --prompt-tokens tokens and for one decode step after it, the share of
time per kind of launch (matmul per weight type, attention, norms, ...), with the bytes each
matmul kind reads and its GB/s next to the adapter's copy bandwidth. Launches run back to back
on the same buffers, each launch's reps in one compute pass as the engine records a step, so the
figures are the kernels' own cost (with the in-pass launch cost) without the per-step host work.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from wgllm.bench import copy_bandwidth, timed
from wgllm.gpu.engine import GpuEngine
from wgllm.model import load_model


def profile(engine: GpuEngine, n: int, pos0: int, reps: int) -> dict[str, float]:
    prog, ctx = engine.program, engine.ctx
    seconds: dict[str, float] = defaultdict(float)
    for i, label in enumerate(prog.labels):
        seconds[label] += timed(ctx, lambda enc, i=i: prog.encode_step(enc, i, n, pos0), reps)
    return seconds


def launches(engine: GpuEngine) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for label in engine.program.labels:
        counts[label] += 1
    return counts


def report(title: str, seconds: dict[str, float], counts: dict[str, int], matmul_bytes: dict[str, int] | None, copy_gb_s: float) -> None:
    total = sum(seconds.values())
    print(f"\n{title}: {total * 1e3:.1f} ms in all")
    for label, sec in sorted(seconds.items(), key=lambda kv: -kv[1]):
        line = f"  {label:28} {sec * 1e3:9.2f} ms  {100 * sec / total:5.1f} %  {counts[label]:4d} x {sec / counts[label] * 1e6:8.0f} us"
        if matmul_bytes and label in matmul_bytes:
            gb_s = matmul_bytes[label] / sec / 1e9
            line += f"   {matmul_bytes[label] / 1e6:7.1f} MB  {gb_s:6.2f} GB/s  {gb_s / copy_gb_s:5.3f} of copy"
        print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    model = load_model(args.model)
    engine = GpuEngine(model, max_tokens=args.prompt_tokens + 1)
    ids = [int(i) for i in np.random.default_rng(0).integers(0, model.config.n_vocab, args.prompt_tokens)]
    session = engine.session(top_k=1, temperature=0.0, seed=0)
    session.decode(session.prefill(ids))  # pipelines built, cache filled
    copy_gb_s = copy_bandwidth(engine.ctx)
    print(f"adapter: {engine.ctx.adapter_name}\ncopy bandwidth: {copy_gb_s:.2f} GB/s (read + write)")

    # bytes a decode step's matmuls read, per kind (the repacked arrays as uploaded)
    matmul_bytes: dict[str, int] = defaultdict(int)
    for name, w in engine._weights.items():
        if not hasattr(w, "chunks"):
            continue  # an f32 vector
        is_output = name == "output.weight" or (name == "token_embd.weight" and model.config.tied_output)
        if name == "token_embd.weight" and not is_output:
            continue  # only one row of it is read per token
        label = f"matmul_{w.shader_suffix}" + (" (output)" if is_output else "")
        matmul_bytes[label] += sum(b.size for c in w.chunks for b in c.buffers)

    counts = launches(engine)
    prog = engine.program
    for n, pos0, reps, what in ((args.prompt_tokens, 0, args.reps, "prefill"), (1, args.prompt_tokens, 10 * args.reps, "decode")):
        whole = timed(engine.ctx, lambda enc, n=n, pos0=pos0: prog.encode(enc, n, pos0), reps)
        print(f"{what}: the whole program of {len(prog.labels)} launches in one submission takes {whole * 1e3:.1f} ms")
    report(f"prefill of {args.prompt_tokens} tokens", profile(engine, args.prompt_tokens, 0, args.reps), counts, None, copy_gb_s)
    # a decode launch takes ~0.1-1 ms, as little as the submit-and-wait around timed(): more reps amortise it
    report(f"decode at position {args.prompt_tokens}", profile(engine, 1, args.prompt_tokens, 10 * args.reps), counts, matmul_bytes, copy_gb_s)


if __name__ == "__main__":
    main()
