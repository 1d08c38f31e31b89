"""LoRA on the GPU, for one GpuEngine (web/src/lora_gpu.ts is its twin).

The ranks are declared up front (the engine's lora_ranks). With any, each layer matmul is a LoRA
site: its step is followed by lora_shrink then lora_expand into the matmul's output for the adapter
chosen per step (none: nothing is dispatched). Adapters are read and checked by wgllm.lora, uploaded
here with their uniforms and bind groups, once, and stay resident together.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from wgllm.gpu.engine import GpuEngine
    from wgllm.gpu.runtime import GpuContext

LORA_EXPAND_WG = 64  # lora_expand.wgsl's default WG_SIZE


@dataclass
class LoraWeight:
    """One adapted weight of a resident adapter: its factors, uniforms and bind groups, made once."""

    rank: int
    n_out: int
    buffers: list
    shrink: tuple  # (pipeline, uniform, bind group)
    expand: tuple
    written: tuple = (b"", b"")


class GpuLora:
    """A LoRA adapter resident on one engine (LlmInference's LoraModel holds one)."""

    def __init__(self, engine: GpuEngine, adapter, weights: dict[str, LoraWeight]):
        self.engine, self.adapter, self.weights = engine, adapter, weights

    def release(self) -> None:
        for w in self.weights.values():
            for b in w.buffers:
                b.destroy()
        self.weights = {}


class LoraSites:
    """The LoRA side of one engine: its sites (the layer matmuls' buffers), the stacked-QKV parts
    that map onto a site, the resident adapters and the adapter of the running step."""

    def __init__(self, ctx: GpuContext):
        self.ctx = ctx
        self.sites: dict[str, tuple] = {}  # weight name -> (x, y, k, n_out) of its matmul
        self.parts: dict[str, tuple[str, int]] = {}  # attn_q/k/v name of a stacked layer -> (its site, first column)
        self.loras: list[GpuLora] = []
        self.active: GpuLora | None = None

    def load(self, engine: GpuEngine, adapter, scratch) -> GpuLora:
        """Upload a checked adapter: factors, uniforms and bind groups, once. `scratch` is the (n, r)
        buffer between shrink and expand."""
        from wgllm.lora import check_lora, check_rank  # noqa: PLC0415

        check_lora(adapter, engine.model)
        check_rank(adapter, engine.lora_ranks, "model")
        ctx = self.ctx
        shrink_pipe, expand_pipe = ctx.pipeline("lora_shrink.wgsl"), ctx.pipeline("lora_expand.wgsl")
        # factors by the matmul they follow: a stacked QKV's q, k and v adapters become one of
        # rank up to 3r, A their A's stacked, B block-diagonal (each B in its columns' rows and its
        # own r columns, zeros elsewhere), so y[:, cols] += scale * x A_p^T B_p^T exactly as apart
        sites: dict[str, list] = {}
        for name, (a, b) in adapter.factors.items():
            site, col = self.parts.get(name, (name, 0))
            if site not in self.sites:
                raise ValueError(f"{adapter.path}: tensor {name}.lora_a adapts {name}, which the GPU engine does not run as a layer matmul")
            sites.setdefault(site, []).append((col, a, b))
        weights: dict[str, LoraWeight] = {}
        for name, parts in sites.items():
            x, y, k, n_out = self.sites[name]
            parts.sort(key=lambda p: p[0])
            r = adapter.rank
            a = np.concatenate([p[1] for p in parts], axis=0)
            b = np.zeros((n_out, r * len(parts)), np.float32)
            for j, (col, _, bp) in enumerate(parts):
                b[col : col + bp.shape[0], j * r : (j + 1) * r] = bp
            a_buf, b_buf = ctx.buffer(a, label=f"{name}.lora_a"), ctx.buffer(b, label=f"{name}.lora_b")
            u_shrink, u_expand = ctx.buffer(size=16, uniform=True, label="lora_shrink"), ctx.buffer(size=16, uniform=True, label="lora_expand")
            weights[name] = LoraWeight(
                rank=r * len(parts),
                n_out=n_out,
                buffers=[a_buf, b_buf, u_shrink, u_expand],
                shrink=(shrink_pipe, u_shrink, ctx.bind_group(shrink_pipe, [u_shrink, x, a_buf, scratch])),
                expand=(expand_pipe, u_expand, ctx.bind_group(expand_pipe, [u_expand, scratch, b_buf, y])),
            )
        handle = GpuLora(engine, adapter, weights)
        self.loras.append(handle)
        return handle

    def activate(self, engine: GpuEngine, lora: GpuLora | None) -> None:
        """Make `lora` (or none) the adapter of the next step; one this engine did not load is refused."""
        if lora is not None and (lora.engine is not engine or lora not in self.loras):
            raise ValueError("The LoRA model was not loaded by this LLM Inference task.")
        self.active = lora

    def apply(self, cpass, name: str, n: int) -> None:
        """shrink t = x A^T, then expand y += scale * t B^T, for the active adapter's factors of `name`."""
        lora = self.active
        w = lora.weights.get(name) if lora is not None else None
        if w is None:
            return
        k = self.sites[name][2]
        shrink, expand = struct.pack("<III", n, k, w.rank), struct.pack("<IIIf", n, w.n_out, w.rank, lora.adapter.scale)
        if (shrink, expand) != w.written:  # only n moves between steps
            self.ctx.write(w.shrink[1], shrink)
            self.ctx.write(w.expand[1], expand)
            w.written = (shrink, expand)
        self.ctx.dispatch(cpass, w.shrink[0], w.shrink[2], (w.rank, n, 1))
        self.ctx.dispatch(cpass, w.expand[0], w.expand[2], (-(-w.n_out // LORA_EXPAND_WG), n, 1))

    def release_all(self) -> None:
        for lora in self.loras:
            lora.release()
        self.loras.clear()
