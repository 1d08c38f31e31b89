"""`wgllm bench`: load time, prefill and decode speed of the WebGPU engine, and how close decode
comes to the adapter's own streaming bandwidth, all measured in one run on one adapter.

Bandwidths: the copy kernel (shaders/copy.wgsl) moves N bytes by reading N and writing N, and its
GB/s counts both. Decode streams the model's weights once per token: weight_bytes_per_token is the
GGUF bytes of every tensor a decode step reads in full (all weights but the token embedding, which
is read one row per token unless it doubles as the output matrix). decode_bandwidth_fraction =
weight_bytes_per_token * decode_tok_s / copy bandwidth. The copy bandwidth is sampled several
times through the run (before prefill, between prefill and decode, halfway through decode and after
it) and its median is used, so one dip of a shared machine cannot skew the fraction; the samples
are reported with it. Nothing here asserts a speed.
"""

from __future__ import annotations

import json
import statistics
import struct
import time
from pathlib import Path
from typing import Callable

import numpy as np

from wgllm.gpu.runtime import GpuContext, get_context

_COPY_WG = 256


def timed(ctx: GpuContext, record: Callable[[object], None], reps: int) -> float:
    """Seconds per run of `record(cpass)`, all reps in one compute pass of one submission (as the
    engine records a step), after one warm-up run."""
    for count in (1, reps):
        enc = ctx.device.create_command_encoder()
        cpass = enc.begin_compute_pass()
        for _ in range(count):
            record(cpass)
        cpass.end()
        start = time.perf_counter()
        ctx.device.queue.submit([enc.finish()])
        ctx.device.queue.read_buffer(ctx.buffer(size=4))  # returns once the queue has drained
    return (time.perf_counter() - start) / reps


def copy_bandwidth(ctx: GpuContext, nbytes: int = 64 << 20, reps: int = 10) -> float:
    """GB/s (bytes read + written) of a plain WGSL copy of `nbytes` on this adapter."""
    n4 = min(nbytes, ctx.max_binding) // 16
    src, dst = ctx.buffer(size=n4 * 16, label="copy source"), ctx.buffer(size=n4 * 16, label="copy destination")
    pipeline = ctx.pipeline("copy.wgsl")
    bind_group = ctx.bind_group(pipeline, [ctx.buffer(struct.pack("<I", n4), uniform=True, label="copy params"), src, dst])
    groups = -(-n4 // _COPY_WG)
    gx = min(groups, 65535)
    seconds = timed(ctx, lambda cpass: ctx.dispatch(cpass, pipeline, bind_group, (gx, -(-groups // gx), 1)), reps)
    return 2 * n4 * 16 / seconds / 1e9


def weight_bytes_per_token(model) -> int:
    """GGUF bytes a decode step reads in full (see the module docstring)."""
    skip = set() if model.config.tied_output else {"token_embd.weight"}
    return sum(t.n_bytes for name, t in model.gguf.tensors.items() if name not in skip)


def bench_model(path: str | Path, prompt_tokens: int = 128, gen_tokens: int = 128, force_f32: bool = False, kernels: str | None = None) -> dict:
    from wgllm.gpu.engine import GpuEngine
    from wgllm.model import load_model

    if prompt_tokens < 2 or gen_tokens < 2:
        raise ValueError(f"--prompt-tokens and --gen-tokens must be at least 2, got {prompt_tokens} and {gen_tokens}")
    ctx = get_context()
    start = time.perf_counter()
    model = load_model(path)
    engine = GpuEngine(model, max_tokens=prompt_tokens + gen_tokens, force_f32=force_f32, kernels=kernels)
    load_s = time.perf_counter() - start

    ids = [int(i) for i in np.random.default_rng(0).integers(0, model.config.n_vocab, prompt_tokens)]
    warm = engine.session(top_k=1, temperature=0.0, seed=0)  # builds the prefill pipelines, touches every buffer
    warm.decode(warm.prefill(ids[:8]))

    copy_samples = [copy_bandwidth(ctx)]
    session = engine.session(top_k=1, temperature=0.0, seed=0)
    start = time.perf_counter()
    token = session.prefill(ids)  # the sampled id is read back: the GPU has finished
    prefill_s = time.perf_counter() - start
    copy_samples.append(copy_bandwidth(ctx))
    decode_s = 0.0
    for count in (gen_tokens // 2, gen_tokens - gen_tokens // 2):  # a copy sample halfway, outside the timing
        start = time.perf_counter()
        for _ in range(count):
            token = session.decode(token)
        decode_s += time.perf_counter() - start
        copy_samples.append(copy_bandwidth(ctx))
    copy_gb_s = statistics.median(copy_samples)
    per_token = weight_bytes_per_token(model)
    decode_tok_s = gen_tokens / decode_s
    prefill_tok_s = prompt_tokens / prefill_s
    return {
        "model": str(path),
        "adapter": ctx.adapter_name,
        "kv_cache_type": "f16" if engine.kv_f16 else "f32",
        "kernels": engine.kernels,
        "dispatches_per_decode_step": engine.launches_per_step(1, prompt_tokens),
        "layers": model.config.n_layer,
        "prompt_tokens": prompt_tokens,
        "gen_tokens": gen_tokens,
        "load_s": load_s,
        "prefill_tok_s": prefill_tok_s,
        "decode_tok_s": decode_tok_s,
        "weight_bytes_per_token": per_token,
        "copy_bandwidth_gb_s": copy_gb_s,
        "copy_bandwidth_samples_gb_s": copy_samples,
        "decode_bandwidth_fraction": per_token * decode_tok_s / 1e9 / copy_gb_s,
        "prefill_over_decode": prefill_tok_s / decode_tok_s,
    }


def format_table(result: dict) -> str:
    rows = [
        ("adapter", result["adapter"]),
        ("model", result["model"]),
        ("KV cache", result["kv_cache_type"]),
        ("kernels", result["kernels"]),
        ("dispatches per decode step", f"{result['dispatches_per_decode_step']} ({result['dispatches_per_decode_step'] / result['layers']:.1f} a layer)"),
        ("load", f"{result['load_s']:.2f} s"),
        ("prefill", f"{result['prefill_tok_s']:.1f} tok/s ({result['prompt_tokens']} tokens)"),
        ("decode", f"{result['decode_tok_s']:.2f} tok/s ({result['gen_tokens']} tokens)"),
        ("weights read per token", f"{result['weight_bytes_per_token'] / 1e6:.1f} MB"),
        (
            "copy bandwidth",
            f"{result['copy_bandwidth_gb_s']:.2f} GB/s (read + write; median of "
            + ", ".join(f"{g:.2f}" for g in result["copy_bandwidth_samples_gb_s"])
            + ")",
        ),
        ("decode / copy bandwidth", f"{result['decode_bandwidth_fraction']:.3f}"),
        ("prefill / decode tok/s", f"{result['prefill_over_decode']:.1f}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def write_json(result: dict, out: str | Path) -> None:
    from wgllm.gguf_io import atomic_output

    with atomic_output(out) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=2) + "\n")
