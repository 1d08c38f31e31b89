"""A decode step with each layer's attn_q/k/v as one stacked matmul against three, in one process.

    .venv/bin/python bench/qkv_stack.py MODEL.gguf [--blocks 8] [--steps 10]

Two engines on the same model, GpuEngine(stack_qkv=True) and (stack_qkv=False), each prefilled
with the same prompt; alternates blocks of --steps decode steps (same token, same position) between
them, so that the ratio per block is taken under the same load, and checks that both sample the
same token. Prints the program steps, ms per step per block and the three/stacked ratios.
A model with q/k norms (Gemma-3) keeps three matmuls in both: its ratio is the noise floor.
Prints only.
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
    args = ap.parse_args()
    model = load_model(args.model)
    ids = [int(i) for i in np.random.default_rng(0).integers(0, model.config.n_vocab, args.prompt_tokens)]
    pos0 = args.prompt_tokens
    engines = {"stacked": GpuEngine(model, max_tokens=pos0 + 1), "three": GpuEngine(model, max_tokens=pos0 + 1, stack_qkv=False)}
    tokens = {name: e.session(top_k=1, temperature=0.0, seed=0).prefill(ids) for name, e in engines.items()}
    if len(set(tokens.values())) != 1:
        raise SystemExit(f"the layouts sampled different tokens after the prompt: {tokens}")
    token = tokens["stacked"]
    steps = {name: (lambda e=e: e.sample_step([token], pos0, 1, 0.0, 0, 0)) for name, e in engines.items()}
    same_result(steps, "sampled different tokens")
    for name, e in engines.items():
        matmuls = sum(label.startswith("matmul_") for label in e.program.labels)
        print(f"{name:8} layers stacked {sum(e.qkv_stacked)}/{e.c.n_layer}   program steps {len(e.program.steps)} (matmuls {matmuls}, a launch per row chunk)")
    alternate(steps, args.blocks, args.steps, slow="three", fast="stacked")

if __name__ == "__main__":
    main()
