"""The engine with another commit's shaders against the working tree's, in one process.

    .venv/bin/python bench/shader_ab.py MODEL.gguf --rev REV [--kernels cpu|gpu] [--prompt-tokens 128] [--blocks 8] [--steps 10] [--prefill-blocks 6]

Two GpuEngines on the same model and adapter, each on a GpuContext (a device) of its own: one reads
shaders/ as it is, the other shaders/ as commit REV has them (git show REV:shaders/NAME). The host code
is the same for both, so this times a kernel change alone (a Params or binding change would need the
host of REV too). Alternates blocks of --steps decode steps, then blocks of one prefill, between them
(bench/ab.py), checking that both sample the same token; prints ms per step per block and the ratios.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from wgllm.gpu.engine import GpuEngine
from wgllm.gpu.runtime import GpuContext, GpuError

from ab import alternate, decode_parser, decode_steps, model_and_prompt, prefill_steps  # bench/ab.py (this script runs from bench/)

REPO = Path(__file__).resolve().parents[1]


class ShadersAt(GpuContext):
    """A GpuContext whose shaders/<name> is commit `rev`'s."""

    def __init__(self, rev: str):
        super().__init__()
        self.rev = rev

    def shader_source(self, name: str) -> str:
        run = subprocess.run(["git", "show", f"{self.rev}:shaders/{name}"], cwd=REPO, capture_output=True, text=True)
        if run.returncode != 0:
            raise GpuError(f"shaders/{name} at {self.rev}: {run.stderr.strip()}")
        return run.stdout


def main() -> None:
    ap = decode_parser(__doc__)
    ap.add_argument("--rev", required=True, help="the commit whose shaders are the other variant")
    ap.add_argument("--kernels", choices=("cpu", "gpu"))
    ap.add_argument("--prefill-blocks", type=int, default=6)
    args = ap.parse_args()
    model, ids = model_and_prompt(args)
    pos0 = args.prompt_tokens
    rev = f"shaders@{args.rev}"
    engines = {
        "shaders now": GpuEngine(model, max_tokens=pos0 + 1, kernels=args.kernels, context=GpuContext()),
        rev: GpuEngine(model, max_tokens=pos0 + 1, kernels=args.kernels, context=ShadersAt(args.rev)),
    }
    print(f"{engines[rev].ctx.adapter_name}, {engines[rev].kernels} kernels, {len(engines[rev].program.steps)} program steps")
    _, decode = decode_steps(engines, ids)
    prefill = prefill_steps(engines, ids)
    print(f"decode at position {pos0} ({args.steps} steps a block):")
    alternate(decode, args.blocks, args.steps, slow=rev, fast="shaders now")
    print(f"prefill of {args.prompt_tokens} tokens (one a block):")
    alternate(prefill, args.prefill_blocks, 1, slow=rev, fast="shaders now")


if __name__ == "__main__":
    main()
