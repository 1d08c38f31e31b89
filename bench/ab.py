"""In-process A/B timing shared by bench/pass_layout.py, bench/qkv_stack.py and bench/fuse_epilogue.py.

Alternates blocks of `steps` calls between the variants (the order flips every block), so that each
block's ratio is taken under the same machine load; prints ms per call per block and the ratios.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable


def same_result(runs: dict[str, Callable[[], object]], what: str) -> None:
    """Every variant must give the same result (the same sampled token), or the timing is void."""
    first = {name: run() for name, run in runs.items()}
    if len(set(first.values())) != 1:
        raise SystemExit(f"the variants {what}: {first}")


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
