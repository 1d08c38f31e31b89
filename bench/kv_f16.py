"""Decode and prefill steps with an f16 KV cache against an f32 one, in one process.

    .venv/bin/python bench/kv_f16.py MODEL.gguf [--prompt-tokens 128] [--blocks 8] [--steps 10] [--prefill-blocks 6]

Two engines on the same model, GpuEngine() (f16 KV: needs shader-f16) and GpuEngine(force_f32=True),
each prefilled with the same prompt; alternates blocks of --steps decode steps (same token, same
position, so attention reads --prompt-tokens + 1 cache rows) between them, then blocks of one
prefill of the whole prompt, so that each block's ratio is taken under the same load, and checks
that both sample the same token. Prints ms per step per block and the f32/f16 ratios. Prints only.
"""

from __future__ import annotations

import argparse

import numpy as np

from wgllm.gpu.engine import GpuEngine
from wgllm.model import load_model

from ab import alternate, same_result  # bench/ab.py (this script runs from bench/)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--prefill-blocks", type=int, default=6)
    args = ap.parse_args()
    model = load_model(args.model)
    ids = [int(i) for i in np.random.default_rng(0).integers(0, model.config.n_vocab, args.prompt_tokens)]
    pos0 = args.prompt_tokens
    engines = {"f16 KV": GpuEngine(model, max_tokens=pos0 + 1), "f32 KV": GpuEngine(model, max_tokens=pos0 + 1, force_f32=True)}
    if not engines["f16 KV"].kv_f16:
        raise SystemExit(f"{engines['f16 KV'].ctx.adapter_name} has no shader-f16: there is no f16 KV cache to time")
    prefill = {name: (lambda e=e: e.sample_step(ids, 0, 1, 0.0, 0, 0)) for name, e in engines.items()}
    same_result(prefill, "sampled different tokens after the prompt")
    token = prefill["f16 KV"]()
    decode = {name: (lambda e=e: e.sample_step([token], pos0, 1, 0.0, 0, 0)) for name, e in engines.items()}
    same_result(decode, "sampled different tokens")
    for name, e in engines.items():
        kv_bytes = sum(b.size for b in (*e.k_cache, *e.v_cache))
        print(f"{name}  KV cache {kv_bytes / 1e6:.2f} MB for {pos0 + 1} tokens   program steps {len(e.program.steps)}")
    print(f"decode at position {pos0} ({args.steps} steps a block):")
    alternate(decode, args.blocks, args.steps, slow="f32 KV", fast="f16 KV")
    print(f"prefill of {args.prompt_tokens} tokens (one a block):")
    alternate(prefill, args.prefill_blocks, 1, slow="f32 KV", fast="f16 KV")


if __name__ == "__main__":
    main()
