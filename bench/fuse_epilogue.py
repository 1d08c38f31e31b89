"""A decode step with the matmul epilogue fusions against without them, in one process.

    .venv/bin/python bench/fuse_epilogue.py MODEL.gguf [--prompt-tokens 128] [--blocks 8] [--steps 10]

Three engines on the same model: "apart" GpuEngine(fuse_residual=False, fuse_glu=False) (v4's
program), "residual" (fuse_glu=False: the residual adds in the attention output and ffn_down
matmuls) and "fused" (the default: also ffn_gate and ffn_up as one matmul writing act(gate) * up).
Each is prefilled with the same prompt; blocks of --steps decode steps (same token, same position)
alternate between them, so that each block's ratios are taken under the same load, and all must
sample the same token. Prints the program steps, ms per step per block and the ratios to "fused".
Gemma-3 (post-norms) keeps its adds: only its GLU fusion differs.
Prints only.
"""

from __future__ import annotations

import statistics

from wgllm.gpu.engine import GpuEngine

from ab import alternate, decode_parser, decode_steps, model_and_prompt  # bench/ab.py (this script runs from bench/)


def main() -> None:
    args = decode_parser(__doc__).parse_args()
    model, ids = model_and_prompt(args)
    pos0 = args.prompt_tokens
    engines = {
        "apart": GpuEngine(model, max_tokens=pos0 + 1, fuse_residual=False, fuse_glu=False),
        "residual": GpuEngine(model, max_tokens=pos0 + 1, fuse_glu=False),
        "fused": GpuEngine(model, max_tokens=pos0 + 1),
    }
    _, steps = decode_steps(engines, ids)
    for name, e in engines.items():
        labels = e.program.labels
        print(
            f"{name:8} program steps {len(labels)} (add {labels.count('add')}, swiglu/geglu {labels.count('swiglu') + labels.count('geglu')}, "
            f"matmul steps {sum(label.startswith('matmul_') for label in labels)}; a matmul step is a launch per row chunk)"
        )
    ms = alternate(steps, args.blocks, args.steps, slow="apart", fast="fused")
    ratios = [a / b for a, b in zip(ms["residual"], ms["fused"])]
    print(f"residual / fused: median {statistics.median(ratios):.3f}   blocks: {' '.join(f'{r:.3f}' for r in ratios)}")


if __name__ == "__main__":
    main()
