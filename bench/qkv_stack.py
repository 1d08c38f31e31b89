"""A decode step with each layer's attn_q/k/v as one stacked matmul against three, in one process.

    .venv/bin/python bench/qkv_stack.py MODEL.gguf [--prompt-tokens 128] [--blocks 8] [--steps 10]

Two engines on the same model, GpuEngine(stack_qkv=True) and (stack_qkv=False), each prefilled
with the same prompt; alternates blocks of --steps decode steps (same token, same position) between
them, so that the ratio per block is taken under the same load, and checks that both sample the
same token. Prints the program steps, ms per step per block and the three/stacked ratios.
A model with q/k norms (Gemma-3) keeps three matmuls in both: its ratio is the noise floor.
Prints only.
"""

from __future__ import annotations

from wgllm.gpu.engine import GpuEngine

from ab import alternate, decode_parser, decode_steps, model_and_prompt  # bench/ab.py (this script runs from bench/)


def main() -> None:
    args = decode_parser(__doc__).parse_args()
    model, ids = model_and_prompt(args)
    pos0 = args.prompt_tokens
    engines = {"stacked": GpuEngine(model, max_tokens=pos0 + 1), "three": GpuEngine(model, max_tokens=pos0 + 1, stack_qkv=False)}
    _, steps = decode_steps(engines, ids)
    for name, e in engines.items():
        matmuls = sum(label.startswith("matmul_") for label in e.program.labels)
        print(f"{name:8} layers stacked {sum(e.qkv_stacked)}/{e.c.n_layer}   program steps {len(e.program.steps)} (matmuls {matmuls}, a launch per row chunk)")
    alternate(steps, args.blocks, args.steps, slow="three", fast="stacked")

if __name__ == "__main__":
    main()
