"""A decode step with the residual adds in the matmuls' epilogue against add launches, in one process.

    .venv/bin/python bench/fuse_residual.py MODEL.gguf [--blocks 8] [--steps 10]

Two engines on the same model, GpuEngine(fuse_residual=True) and (fuse_residual=False), each
prefilled with the same prompt; alternates blocks of --steps decode steps (same token, same position)
between them, so that the ratio per block is taken under the same load, and checks that both sample
the same token. Prints the program steps, ms per step per block and the apart/fused ratios.
A model with post-norms (Gemma-3) keeps its add launches in both: its ratio is the noise floor.
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
    engines = {"fused": GpuEngine(model, max_tokens=pos0 + 1), "apart": GpuEngine(model, max_tokens=pos0 + 1, fuse_residual=False)}
    tokens = {name: e.session(top_k=1, temperature=0.0, seed=0).prefill(ids) for name, e in engines.items()}
    if len(set(tokens.values())) != 1:
        raise SystemExit(f"the layouts sampled different tokens after the prompt: {tokens}")
    token = tokens["fused"]
    steps = {name: (lambda e=e: e.sample_step([token], pos0, 1, 0.0, 0, 0)) for name, e in engines.items()}
    same_result(steps, "sampled different tokens")
    for name, e in engines.items():
        adds = e.program.labels.count("add")
        print(f"{name:6} program steps {len(e.program.steps)} (add launches {adds}; a matmul step is a launch per row chunk)")
    alternate(steps, args.blocks, args.steps, slow="apart", fast="fused")


if __name__ == "__main__":
    main()
