"""Decode and prefill steps with an f16 KV cache against an f32 one, in one process.

    .venv/bin/python bench/kv_f16.py MODEL.gguf [--prompt-tokens 128] [--blocks 8] [--steps 10] [--prefill-blocks 6]

Two engines on the same model, GpuEngine() (f16 KV: needs shader-f16) and GpuEngine(force_f32=True),
each prefilled with the same prompt; alternates blocks of --steps decode steps (same token, same
position, so attention reads --prompt-tokens + 1 cache rows) between them, then blocks of one
prefill of the whole prompt, so that each block's ratio is taken under the same load, and checks
that both sample the same token. Prints ms per step per block and the f32/f16 ratios. Prints only.
"""

from __future__ import annotations

from wgllm.gpu.engine import GpuEngine

from ab import alternate, decode_parser, decode_steps, model_and_prompt, prefill_steps  # bench/ab.py (this script runs from bench/)


def main() -> None:
    ap = decode_parser(__doc__)
    ap.add_argument("--prefill-blocks", type=int, default=6)
    args = ap.parse_args()
    model, ids = model_and_prompt(args)
    pos0 = args.prompt_tokens
    engines = {"f16 KV": GpuEngine(model, max_tokens=pos0 + 1), "f32 KV": GpuEngine(model, max_tokens=pos0 + 1, force_f32=True)}
    if not engines["f16 KV"].kv_f16:
        raise SystemExit(f"{engines['f16 KV'].ctx.adapter_name} has no shader-f16: there is no f16 KV cache to time")
    _, decode = decode_steps(engines, ids)
    prefill = prefill_steps(engines, ids)
    for name, e in engines.items():
        kv_bytes = sum(b.size for b in (*e.k_cache, *e.v_cache))
        print(f"{name}  KV cache {kv_bytes / 1e6:.2f} MB for {pos0 + 1} tokens   program steps {len(e.program.steps)}")
    print(f"decode at position {pos0} ({args.steps} steps a block):")
    alternate(decode, args.blocks, args.steps, slow="f32 KV", fast="f16 KV")
    print(f"prefill of {args.prompt_tokens} tokens (one a block):")
    alternate(prefill, args.prefill_blocks, 1, slow="f32 KV", fast="f16 KV")


if __name__ == "__main__":
    main()
