"""In-process A/B timing shared by the bench scripts that compare variants in one process
(bench/pass_layout.py, qkv_stack.py, fuse_epilogue.py, kv_f16.py and attention_ab.py).

Alternates blocks of `steps` calls between the variants (the order flips every block), so that each
block's ratio is taken under the same machine load; prints ms per call per block and the ratios.
The decode scripts share their setup too: the options (decode_parser), the model and a random
prompt (model_and_prompt), and greedy prefill and decode-step calls per engine that are checked to
sample the same token (prefill_steps, decode_steps).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import TYPE_CHECKING, Callable

import numpy as np

from wgllm.model import load_model

if TYPE_CHECKING:
    from wgllm.gpu.engine import GpuEngine
    from wgllm.model import Model


def same_result(runs: dict[str, Callable[[], object]], what: str) -> object:
    """Every variant must give the same result (the same sampled token), or the timing is void;
    returns that result."""
    first = {name: run() for name, run in runs.items()}
    if len(set(first.values())) != 1:
        raise SystemExit(f"the variants {what}: {first}")
    return next(iter(first.values()))


def decode_parser(doc: str) -> argparse.ArgumentParser:
    """The options of a decode A/B script (MODEL, --prompt-tokens, --blocks, --steps), described by
    the first line of its docstring; the script adds its own before parsing."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    return ap


def model_and_prompt(args: argparse.Namespace) -> tuple["Model", list[int]]:
    """The model at args.model and args.prompt_tokens random token ids (seed 0)."""
    model = load_model(args.model)
    ids = [int(i) for i in np.random.default_rng(0).integers(0, model.config.n_vocab, args.prompt_tokens)]
    return model, ids


def prefill_steps(engines: dict[str, "GpuEngine"], ids: list[int]) -> dict[str, Callable[[], int]]:
    """Per engine: a greedy prefill of `ids` from position 0, returning the sampled token."""
    return {name: (lambda e=e: e.sample_step(ids, 0, 1, 0.0, 0, 0)) for name, e in engines.items()}


def decode_steps(engines: dict[str, "GpuEngine"], ids: list[int]) -> tuple[int, dict[str, Callable[[], int]]]:
    """Prefill every engine with `ids` (all must sample the same token), then per engine a greedy
    decode step of that token at position len(ids) (all must sample the same token again): returns
    the token after the prompt and the decode-step calls, ready for `alternate`."""
    token = same_result(prefill_steps(engines, ids), "sampled different tokens after the prompt")
    pos0 = len(ids)
    steps = {name: (lambda e=e: e.sample_step([token], pos0, 1, 0.0, 0, 0)) for name, e in engines.items()}
    same_result(steps, "sampled different tokens")
    return token, steps


def alternate(runs: dict[str, Callable[[], object]], blocks: int, steps: int, slow: str, fast: str) -> dict[str, list[float]]:
    """Time `runs` in alternating blocks; print each variant's ms/step and slow/fast ratios; return
    the ms/step of each block by variant."""
    ms: dict[str, list[float]] = {name: [] for name in runs}
    for b in range(blocks):
        for name in (list(runs) if b % 2 else list(runs)[::-1]):
            start = time.perf_counter()
            for _ in range(steps):
                runs[name]()
            ms[name].append((time.perf_counter() - start) / steps * 1e3)
    width = max(map(len, runs))
    for name, values in ms.items():
        print(f"{name:{width}} ms/step median {statistics.median(values):6.1f}   blocks: {' '.join(f'{v:.1f}' for v in values)}")
    ratios = [a / b for a, b in zip(ms[slow], ms[fast])]
    print(f"{slow} / {fast}: median {statistics.median(ratios):.3f}   blocks: {' '.join(f'{r:.3f}' for r in ratios)}")
    return ms
