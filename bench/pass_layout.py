"""A decode step recorded as the engine records it (one compute pass) against one pass per launch.

    .venv/bin/python bench/pass_layout.py MODEL.gguf [--prompt-tokens 128] [--blocks 8] [--steps 10]

Alternates blocks of --steps decode steps (same token, same position) between the two layouts in
one process, so that the ratio per block is taken under the same load, and checks that both sample
the same token. Prints ms per step per block and the per-pass/one-pass ratios. Prints only.
"""

from __future__ import annotations

import numpy as np

from wgllm.gpu.engine import GpuEngine, _pack

from ab import alternate, decode_parser, decode_steps, model_and_prompt, same_result  # bench/ab.py (this script runs from bench/)


def pass_per_launch(engine: GpuEngine, token: int, pos0: int) -> int:
    """The layout before one-pass steps: every program step (a launch, or a matmul's chunks) and
    the sampler in a compute pass of its own."""
    ctx, prog = engine.ctx, engine.program
    ctx.write(engine.ids, np.asarray([token], np.uint32))
    ctx.write(engine.positions, np.asarray([pos0], np.uint32))
    enc = ctx.device.create_command_encoder()
    for i in range(len(prog.steps)):
        cpass = enc.begin_compute_pass()
        prog.encode_step(cpass, i, 1, pos0)
        cpass.end()
    d = engine.sampler
    ctx.write(d.uniform, _pack("IIIfII", engine.c.n_vocab, 0, 1, 0.0, 0, 0))
    ctx.encode(enc, d.pipeline, d.bind_group, (1, 1, 1))
    ctx.device.queue.submit([enc.finish()])
    return int(ctx.read(engine.sampled, np.uint32, (1,))[0])


def main() -> None:
    args = decode_parser(__doc__).parse_args()
    model, ids = model_and_prompt(args)
    pos0 = args.prompt_tokens
    engine = GpuEngine(model, max_tokens=pos0 + 1)
    token, layouts = decode_steps({"one pass": engine}, ids)
    layouts["pass per launch"] = lambda: pass_per_launch(engine, token, pos0)
    same_result(layouts, "sampled different tokens")
    alternate(layouts, args.blocks, args.steps, slow="pass per launch", fast="one pass")

if __name__ == "__main__":
    main()
