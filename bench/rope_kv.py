"""A decode step with Q's and K's RoPE and V's cache store in one launch against three, in one process.

    .venv/bin/python bench/rope_kv.py MODEL.gguf [--prompt-tokens 128] [--blocks 8] [--steps 10] [--kernels gpu|cpu]

Two engines on the same model: "three" GpuEngine(fuse_rope_kv=False) (rope of Q, rope of K into the
cache, kv_store of V: the program before rope.wgsl's qkv entry) and "fused" (the default: one launch
where a layer's Q, K and V come out of one matmul). Each is prefilled with the same prompt; blocks of
--steps decode steps alternate between them (each block's ratio taken under the same load), and both
must sample the same token. Prints the launches a decode step records and ms per step per block.
Gemma-3 (Q and K normed per head) gets its norms in one qk_norm launch on the stacked rows first. Prints only.
"""

from __future__ import annotations

from wgllm.gpu.engine import GpuEngine

from ab import alternate, decode_parser, decode_steps, model_and_prompt  # bench/ab.py (this script runs from bench/)


def main() -> None:
    ap = decode_parser(__doc__)
    ap.add_argument("--kernels", choices=("gpu", "cpu"), help="the kernel family (default: the adapter's)")
    args = ap.parse_args()
    model, ids = model_and_prompt(args)
    pos0 = args.prompt_tokens
    engines = {
        "three": GpuEngine(model, max_tokens=pos0 + 1, fuse_rope_kv=False, kernels=args.kernels),
        "fused": GpuEngine(model, max_tokens=pos0 + 1, kernels=args.kernels),
    }
    _, steps = decode_steps(engines, ids)
    for name, e in engines.items():
        print(f"{name:6} kernels {e.kernels}: {e.launches_per_step(1, pos0)} launches a decode step, rope_qkv {e.program.labels.count('rope_qkv')}")
    alternate(steps, args.blocks, args.steps, slow="three", fast="fused")


if __name__ == "__main__":
    main()
