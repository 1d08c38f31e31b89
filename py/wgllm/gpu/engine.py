"""The WebGPU forward pass: weights uploaded once, a fixed program of dispatches, one submit per step.

The program mirrors reference.forward op for op (the same ModelConfig flags drive both). Buffers
are allocated once for max_tokens rows; each step writes the token ids, positions and the small
Params uniforms that depend on (n tokens, first position), records every dispatch, the sampler's
included, into one compute pass of one command buffer, and reads back only the sampled token id
(and its logprobs when asked).
A step has no command other than dispatches (the last row is copied by a kernel, kv_store), so
nothing breaks the pass: on lavapipe a launch in an open pass costs about a third of one in a pass
of its own, and decode is hundreds of small launches (bench/NOTES.md). For the same reason a layer's
separate attn_q/k/v run as one matmul of their stacked rows where they can (stack_qkv), into the
fused qkv buffer that Phi-2-style attn_qkv files use, and the residual adds after the attention
output and ffn_down matmuls run in those matmuls' epilogue (fuse_residual), and a gated MLP's
ffn_gate and ffn_up run as one matmul that writes act(gate) * up (fuse_glu).

KV cache: with the adapter's shader-f16 and not force_f32 it holds f16 (2 bytes an element, as
llama.cpp's default F16 cache type): the rope of K and the kv_store of V write it and attention
reads it through the shaders' "f16 KV" variant (runtime.kv_f16_variant). Every sum, score and
softmax stays f32; only the stored K and V are rounded. Otherwise (or force_f32) it is f32.

LoRA: each layer matmul's step ends with its LoRA update for the step's adapter; the adapters'
upload, the stacked-QKV sites and the shrink/expand launches are wgllm.gpu.lora's.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Callable

import numpy as np

from wgllm.gpu.lora import GpuLora, LoraSites
from wgllm.gpu.runtime import GpuContext, GpuError, TracingPass, get_context, shader_constant
from wgllm.model import Model
from wgllm.reference import Sampled
from wgllm.sampling import MAX_LOGIT_BIAS, MAX_TOP_K, MAX_TOP_LOGPROBS, SamplingParams, mask_words

_MAX_GROUPS = 65535
_SAMPLE_PARAMS = "IIIfIIfffIIII"  # sample.wgsl's Params


def _grid_rows(groups: int) -> tuple[int, int, int]:
    gx = max(1, min(groups, _MAX_GROUPS))
    return (gx, -(-groups // gx), 1)


def _pack(fmt: str, *values) -> bytes:
    return struct.pack("<" + fmt, *values)


def decode_splits(n_kv: int, window: int) -> int:
    """The gpu family's decode attention: how many splits of SPLIT_KEYS keys (attention.wgsl's
    decode_split workgroups per head group, and attention_combine.wgsl's n_splits) cover the keys the
    query at position n_kv - 1 sees (all n_kv, or the last `window` of them)."""
    visible = min(n_kv, window) if window else n_kv
    return -(-visible // shader_constant("attention.wgsl", "SPLIT_KEYS"))


def decode_head_groups(n_head: int, n_head_kv: int) -> int:
    """decode_split workgroups per split: one per KV head and chunk of up to G_MAX of its query heads."""
    return n_head_kv * -(-(n_head // n_head_kv) // shader_constant("attention.wgsl", "G_MAX"))


@dataclass
class _Dispatch:
    """One kernel launch: its Params depend on (n, pos0); its buffers never change."""

    shader: str
    bindings: list  # buffers after the params uniform
    params: Callable[[int, int], bytes]
    grid: Callable[[int, int], tuple[int, int, int]]
    entry: str = "main"
    constants: dict | None = None
    uniform: object = None
    written: bytes = b""  # what the uniform holds now
    bind_group: object = None
    pipeline: object = None


class _Program:
    """The ordered launches of one forward pass, with their uniforms and bind groups made once."""

    def __init__(self, ctx: GpuContext):
        self.ctx = ctx
        self.steps: list = []  # _Dispatch, or a callable(cpass, n, pos0) for matmuls (a launch per row chunk)
        self.labels: list[str] = []  # what each step is, for bench/profile_ops.py
        # named checkpoints: (steps before it, name, buffer, row width, f16) -- the buffer's first n rows
        # hold the named tensor once those steps ran (GpuEngine.checkpoints)
        self.marks: list[tuple[int, str, object, int, bool]] = []

    def add(self, shader: str, bindings: list, params, grid, entry: str = "main", constants=None, label: str = "", kv_f16: bool = False) -> None:
        """kv_f16: run the shader's f16 KV variant (its KV cache binding holds f16)."""
        d = _Dispatch(shader, bindings, params, grid, entry, constants)
        d.pipeline = self.ctx.pipeline(shader, constants, entry, kv_f16)
        d.uniform = self.ctx.buffer(size=max(16, len(params(1, 0))), uniform=True, label=shader)
        d.bind_group = self.ctx.bind_group(d.pipeline, [d.uniform, *bindings])
        self.steps.append(d)
        self.labels.append(label or shader.removesuffix(".wgsl"))

    def mark(self, name: str, buf, width: int, f16: bool = False) -> None:
        """Name what `buf`'s first n rows of `width` hold after the steps so far (f16: its elements are f16)."""
        self.marks.append((len(self.steps), name, buf, width, f16))

    def call(self, fn: Callable[[object, int, int], None], label: str) -> None:
        self.steps.append(fn)
        self.labels.append(label)

    def encode_step(self, cpass, i: int, n: int, pos0: int) -> None:
        """Record step i into an open compute pass; its uniform is written now, on the queue, so
        it holds this step's value when the command buffer is submitted."""
        s = self.steps[i]
        if isinstance(s, _Dispatch):
            grid = s.grid(n, pos0)
            if 0 in grid:  # a launch that does not run at this n (the gpu attention's prefill or decode launches)
                return
            params = s.params(n, pos0)
            if params != s.written:  # most launches' params do not move between decode steps
                self.ctx.write(s.uniform, params)
                s.written = params
            self.ctx.dispatch(cpass, s.pipeline, s.bind_group, grid)
        else:
            s(cpass, n, pos0)

    def encode(self, cpass, n: int, pos0: int) -> None:
        for i in range(len(self.steps)):
            self.encode_step(cpass, i, n, pos0)


class _CountingPass:
    """Stands in for a compute pass: counts the launches recorded into it and runs none."""

    def __init__(self):
        self.launches = 0

    def set_pipeline(self, pipeline) -> None:
        pass

    def set_bind_group(self, index, group) -> None:
        pass

    def dispatch_workgroups(self, *grid) -> None:
        self.launches += 1


class GpuEngine:
    """A model resident on the GPU, ready to run sessions of at most max_tokens tokens.

    lora_ranks: the LoRA ranks adapters may have (declared up front, as in MediaPipe). With any,
    every layer matmul is followed by lora_shrink/lora_expand for the adapter chosen per step (none:
    nothing is dispatched); adapters are uploaded by load_lora and stay resident together.

    stack_qkv: run a layer's separate attn_q, attn_k and attn_v as one matmul of their stacked rows
    where fuse_qkv allows (two launches fewer per layer); False keeps three (the A/B of bench/ and tests).

    fuse_residual: the attention output and ffn_down matmuls add the residual stream in their epilogue
    and write the next residual directly (two add launches fewer per layer; a post-norm between the
    matmul and the add, Gemma-2/3's, keeps that add); False keeps the add launches (the A/B).

    fuse_glu: a gated MLP's (swiglu, geglu) ffn_gate and ffn_up run as one matmul of their rows in
    pairs that writes act(gate) * up (the gate matmul and the activation launch fewer per layer), where
    pair_glu allows and no LoRA ranks are declared (an adapter's update must land before the
    activation); False keeps three launches (the A/B).

    fuse_rope_kv: where a layer's Q, K and V come out of one matmul (stacked or the file's attn_qkv),
    rotate Q, rotate K into the cache and store V in one launch (rope.wgsl's qkv entry) instead of
    three; False keeps three (the A/B).

    fuse_norm: in a decode step (and for the output head, which always runs on one row) the matmuls
    after an RMSNorm take the residual stream and norm it on the way in (the matmul kernels'
    Params.norm): the attn_norm, ffn_norm and output_norm launches are saved; prefill keeps them. Not
    with LoRA ranks (the adapters' shrink reads the normed rows) nor LayerNorm; False keeps them (the A/B).
    None (the default): on in the gpu family, off (and True refused) in the cpu family, where every
    invocation of a matvec owns whole rows and would redo the norm over all of x for its rows, with
    the norm weight read a scalar at a time: on lavapipe a SmolLM2 decode step took 333 ms fused
    against 261 ms apart (the 62 launches saved are worth ~1 % there), so the cpu family keeps the
    norm launches (bench/NOTES.md).

    force_f32: keep the KV cache in f32 even when the adapter has shader-f16 (kv_f16 says which it is).

    kernels: the kernel family, "gpu" or "cpu"; None chooses from the adapter (runtime.resolve_kernels:
    "cpu" on CPU-emulated WebGPU such as lavapipe, "gpu" on real GPUs). self.kernels says which runs.

    context: the GpuContext to run on (default: the process's one, on the adapter's own limits).

    max_weight_binding: bind weights in row chunks of at most this many bytes (tests: the browser's
    maxWeightBinding; default the adapter's maxStorageBufferBindingSize).
    """

    def __init__(
        self,
        model: Model,
        *,
        max_tokens: int,
        force_f32: bool = False,
        all_logits: bool = False,
        lora_ranks=None,
        stack_qkv: bool = True,
        fuse_residual: bool = True,
        fuse_glu: bool = True,
        fuse_rope_kv: bool = True,
        fuse_norm: bool | None = None,
        kernels: str | None = None,
        context: GpuContext | None = None,
        max_weight_binding: int | None = None,
    ):
        from wgllm.gpu import weights as gw  # noqa: PLC0415

        self.model, self.max_tokens, self.force_f32, self.all_logits = model, max_tokens, force_f32, all_logits
        self.fuse_residual = fuse_residual
        self.fuse_rope_kv = fuse_rope_kv
        self.lora_ranks = sorted(set(lora_ranks or []))
        self.ctx = ctx = context or get_context()
        self.kernels = ctx.kernels(kernels)
        if fuse_norm and self.kernels != "gpu":
            raise ValueError(f"fuse_norm=True needs the gpu kernel family (the cpu family's matvec has no norm), got kernels={self.kernels!r}")
        fuse_norm = self.kernels == "gpu" if fuse_norm is None else fuse_norm
        self.fuse_norm = fuse_norm and not lora_ranks and model.config.recipe.norm == "rms" and not model.config.recipe.parallel
        self._lora = LoraSites(ctx)  # the layer matmuls' LoRA sites, the resident adapters (wgllm.gpu.lora)
        self.kv_f16 = ctx.has_f16 and not force_f32
        self._gw = gw
        self.max_weight_binding = max_weight_binding
        c = self.c = model.config
        max_head_dim = shader_constant("attention.wgsl", "MAX_HEAD_DIM")
        if max(c.head_dim, c.head_dim_v) > max_head_dim:
            raise GpuError(f"{model.path}: head dimension {max(c.head_dim, c.head_dim_v)} is above the attention kernel's {max_head_dim}")
        self._weights: dict[str, object] = {}
        # rope.wgsl divides each rotary frequency by its factor: llama-3's rope_freqs, LongRoPE's long or
        # short factors (long when max_tokens, the context, passes the original one: llama.cpp's choice), else ones
        factors_name = c.rope_factors_name(max_tokens)
        factors = model.weight(factors_name, (c.n_rot // 2,)) if factors_name else np.ones(max(1, c.n_rot // 2), np.float32)
        self.rope_factors = ctx.buffer(np.ascontiguousarray(factors, np.float32), label=factors_name or "rope_ones")
        f32 = lambda n, label: ctx.buffer(size=4 * n, label=label)  # noqa: E731  (labels: the browser's names, buffer_plan.ts activationSizes; out-of-memory errors and launch traces name them)
        rows = max_tokens
        q_dim, kv_dim, v_dim = c.n_head * c.head_dim, c.kv_dim, c.n_head_kv * c.head_dim_v
        self.ids = ctx.buffer(size=4 * rows, label="ids")
        self.positions = ctx.buffer(size=4 * rows, label="positions")
        self.x = [f32(rows * c.n_embd, "x0"), f32(rows * c.n_embd, "x1")]  # residual stream, ping-pong
        self.h = f32(rows * c.n_embd, "h")
        self.fused = "blk.0.attn_qkv.weight" in model.gguf.tensors  # the file's own attn_qkv (Phi-2)
        # layers whose separate attn_q/k/v run as one matmul of their stacked rows (see fuse_qkv)
        self.qkv_stacked = [stack_qkv and not self.fused and self.fuse_qkv(i) for i in range(c.n_layer)]
        # layers whose ffn_gate and ffn_up run as one matmul of (gate, up) row pairs (see pair_glu)
        self.glu_paired = [fuse_glu and not self.lora_ranks and self.pair_glu(i) for i in range(c.n_layer)]
        one_matmul = self.fused or any(self.qkv_stacked)
        self.qkv = f32(rows * (q_dim + kv_dim + v_dim), "qkv") if one_matmul else None
        unstacked = not self.fused and not all(self.qkv_stacked)
        self.q, self.k, self.v = (f32(rows * q_dim, "q"), f32(rows * kv_dim, "k"), f32(rows * v_dim, "v")) if unstacked else (None, None, None)
        self.q_rot = f32(rows * q_dim, "q_rot")
        self.attn = f32(rows * c.n_head * c.head_dim_v, "attn")
        # the gpu family's decode attention: each split's (max, sum, output) per head (decode_splits)
        self.attn_splits = f32(decode_splits(rows, 0) * c.n_head * (c.head_dim_v + 2), "attn_splits") if self.kernels == "gpu" else None
        self.o = f32(rows * c.n_embd, "o")
        self.up, self.gate, self.act = f32(rows * c.n_ff, "up"), f32(rows * c.n_ff, "gate"), f32(rows * c.n_ff, "act")
        self.ffn = f32(rows * c.n_embd, "ffn")
        self.last = f32(c.n_embd, "last")
        self.last_norm = f32(c.n_embd, "last_norm")
        logit_rows = rows if all_logits else 1
        if logit_rows * c.n_vocab * 4 > ctx.max_binding:
            raise GpuError(
                f"logits for {logit_rows} rows of {c.n_vocab} need {logit_rows * c.n_vocab * 4} bytes, above the "
                f"adapter's maxStorageBufferBindingSize of {ctx.max_binding}: use fewer tokens"
            )
        self.logits = f32(logit_rows * c.n_vocab, "logits")
        self.logits_capped = f32(logit_rows * c.n_vocab, "logits_capped") if c.final_softcap else None
        self.sampled = ctx.buffer(size=16, label="sampled")
        self.zeros = ctx.buffer(np.zeros(max(c.n_embd, c.n_ff), np.float32), label="zeros")
        kv_bytes = 2 if self.kv_f16 else 4  # per element; ctx.buffer pads an f16 cache's size to 4 bytes
        self.k_cache = [ctx.buffer(size=kv_bytes * rows * kv_dim, label=f"k_cache.{i}") for i in range(c.n_layer)]
        self.v_cache = [ctx.buffer(size=kv_bytes * rows * v_dim, label=f"v_cache.{i}") for i in range(c.n_layer)]
        # (n, r) scratch; a stacked QKV site's adapter has up to three ranks' worth of columns
        lora_width = max(self.lora_ranks, default=0) * (3 if any(self.qkv_stacked) else 1)
        self.lora_t = f32(rows * lora_width, "lora_t") if self.lora_ranks else None
        self.program = self._build()

    # -- weights -------------------------------------------------------------------------------
    def vec(self, name: str):
        """A small tensor kept in f32 (norm weight, bias, GPT-2's learned positions), or None if absent."""
        if name not in self.model.gguf.tensors:
            return None
        if name not in self._weights:
            self._weights[name] = self.ctx.buffer(self.model.weight(name).astype(np.float32), label=name)
        return self._weights[name]

    def _repack(self, name: str):
        """The file's weight `name` in the GPU layout (weights.repack), not yet uploaded; one of a shape
        other than the model's (ModelConfig.matrix_shape) is refused by name, as the reference does."""
        t = self.model.gguf.tensor(name, self.c.matrix_shape(name))
        return self._gw.repack(t.raw, t.ggml_type, t.shape, name=f"{self.model.path}: {name}")

    def mat(self, name: str):
        if name not in self._weights:
            self._weights[name] = self._gw.upload(self.ctx, self._repack(name), self.max_weight_binding, label=name)
        return self._weights[name]

    def _one_kind(self, names: list[str], same_shape: bool) -> bool:
        """Whether the weights `names` are all in the file, 2-D, of one GGML type and one input width
        (and, with same_shape, one shape): what running them as one matmul of their rows needs."""
        tensors = self.model.gguf.tensors
        if not all(n in tensors for n in names):
            return False
        infos = [self.model.gguf.tensor(n) for n in names]
        shapes = {tuple(t.shape) if same_shape else tuple(t.shape[1:]) for t in infos}
        return len({t.ggml_type for t in infos}) == 1 and len(shapes) == 1 and all(len(t.shape) == 2 for t in infos)

    def fuse_qkv(self, i: int) -> bool:
        """Whether layer i's attn_q, attn_k and attn_v run as one matmul: all three present, of one
        GGML type and one input width, each an even number of rows (the browser's writes of a stacked
        weight stay 4-byte aligned; the two engines take the same decision); q/k norms then run in
        place on the stacked rows (qk_norm.wgsl)."""
        names = [f"blk.{i}.attn_{p}.weight" for p in "qkv"]
        return self._one_kind(names, same_shape=False) and all(self.model.gguf.tensor(n).shape[0] % 2 == 0 for n in names)

    def stacked_qkv(self, i: int):
        """Layer i's attn_q, attn_k and attn_v as one weight of their rows stacked (rows are independent
        in every GGUF type, so the repacked whole is the three repacked arrays concatenated), and their
        biases stacked (zeros for an absent one), or None for the bias if none has one."""
        blk = f"blk.{i}."
        key = blk + "attn_q+k+v.weight"
        if key not in self._weights:
            gw = self._gw
            parts = [self._repack(f"{blk}attn_{p}.weight") for p in "qkv"]
            arrays = [np.concatenate([r.arrays[j] for r in parts], axis=0) for j in range(len(parts[0].arrays))]
            stacked = gw.RepackedWeight(parts[0].ggml_type, (sum(r.n_out for r in parts), parts[0].k), arrays, parts[0].names)
            self._weights[key] = gw.upload(self.ctx, stacked, self.max_weight_binding, label=key)
            biases = [f"{blk}attn_{p}.bias" for p in "qkv"]
            if any(b in self.model.gguf.tensors for b in biases):
                vals = [
                    self.model.weight(b).astype(np.float32).reshape(-1) if b in self.model.gguf.tensors else np.zeros(r.n_out, np.float32)
                    for b, r in zip(biases, parts)
                ]
                self._weights[blk + "attn_q+k+v.bias"] = self.ctx.buffer(np.concatenate(vals), label=blk + "attn_q+k+v.bias")
        return self._weights[key], self._weights.get(blk + "attn_q+k+v.bias")

    def pair_glu(self, i: int) -> bool:
        """Whether layer i's ffn_gate and ffn_up can run as one matmul of row pairs: a gated MLP, both
        of one GGML type and shape, no biases (no gated MLP of the supported architectures has any),
        and an even n_ff (so that the browser's writes of a chunk's up half stay 4-byte aligned, as
        weights.ts needs)."""
        if self.c.recipe.ffn not in ("swiglu", "geglu"):
            return False
        names = [f"blk.{i}.ffn_{p}.weight" for p in ("gate", "up")]
        if not self._one_kind(names, same_shape=True) or any(f"blk.{i}.ffn_{p}.bias" in self.model.gguf.tensors for p in ("gate", "up")):
            return False
        return self.model.gguf.tensor(names[0]).shape[0] % 2 == 0

    def paired_glu(self, i: int):
        """Layer i's ffn_gate and ffn_up as one weight of (gate, up) row pairs (weights.upload_pairs)."""
        key = f"blk.{i}.ffn_gate+up.weight"
        if key not in self._weights:
            parts = [self._repack(f"blk.{i}.ffn_{p}.weight") for p in ("gate", "up")]
            self._weights[key] = self._gw.upload_pairs(self.ctx, *parts, self.max_weight_binding, label=key)
        return self._weights[key]

    # -- program -------------------------------------------------------------------------------
    def _matmul(self, prog: _Program, name: str, x, y, bias_name: str | None = None, weight=None, residual=None, glu=None, norm=None) -> None:
        """A layer matmul (followed by its LoRA step when ranks are declared); `weight` = (w, bias)
        when given (a stacked QKV), `name` then naming its LoRA site; `residual` added in its epilogue
        (the LoRA update then lands on y = x W^T + bias + residual, the same sum). `norm` = (norm
        weight, the un-normed rows) when x is an RMSNorm's output that a decode step does not make
        (fuse_norm): then a decode step reads those rows and norms them in the kernel."""
        w, bias = weight if weight else (self.mat(name), self.vec(bias_name) if bias_name else None)
        gw, ctx = self._gw, self.ctx
        if norm is not None:
            assert not self.lora_ranks and glu in (None, "swiglu", "geglu")
            (norm_w, raw), eps = norm, self.c.norm_eps
            prog.call(
                lambda cpass, n, pos0: gw.matmul(
                    ctx, cpass, w, raw if n == 1 else x, y, n, bias, residual, glu, self.kernels, norm=(norm_w, eps) if n == 1 else None, zeros=self.zeros
                ),
                f"matmul_{w.shader_suffix}",
            )
            return
        if not self.lora_ranks:
            prog.call(lambda cpass, n, pos0: gw.matmul(ctx, cpass, w, x, y, n, bias, residual, glu, self.kernels, zeros=self.zeros), f"matmul_{w.shader_suffix}")
            return
        assert glu is None  # pair_glu is not taken with LoRA ranks
        self._lora.sites[name] = (x, y, w.k, w.n_out)

        def matmul_and_lora(cpass, n, pos0):
            gw.matmul(ctx, cpass, w, x, y, n, bias, residual, kernels=self.kernels, zeros=self.zeros)
            self._lora.apply(cpass, name, n)

        prog.call(matmul_and_lora, f"matmul_{w.shader_suffix}")

    # -- LoRA ----------------------------------------------------------------------------------
    def load_lora(self, adapter) -> GpuLora:
        """Upload a checked adapter (wgllm.lora.LoraAdapter): factors, uniforms and bind groups, once."""
        return self._lora.load(self, adapter, self.lora_t)

    def _norm(self, prog: _Program, prefix: str, x, y, rows: Callable[[int], int] | None = None, dim: int | None = None, decode: bool = True):
        """Norm rows(n) rows of x into y; decode=False: not in a decode step (its matmuls norm x
        themselves, fuse_norm). Returns what such a matmul needs, (norm weight, x), or None when the
        norm launch runs at every n."""
        c = self.c
        dim = dim or c.n_embd
        rows = rows or (lambda n: n)
        w = self.vec(f"{prefix}.weight")
        params, constants = lambda n, p: _pack("IIf", rows(n), dim, c.norm_eps), self._row_constants()
        grid = lambda n, p: (0, 0, 0) if n == 1 and not decode else _grid_rows(rows(n))  # noqa: E731
        if c.recipe.norm == "rms":
            prog.add("rms_norm.wgsl", [x, w, y], params, grid, constants=constants)
        else:
            b = self.vec(f"{prefix}.bias") or self.zeros
            prog.add("layer_norm.wgsl", [x, w, b, y], params, grid, constants=constants)
        return None if decode else (w, x)

    def _row_constants(self) -> dict | None:
        """Override constants of the row kernels (norms) and the sampler: the cpu family keeps the
        shaders' defaults (8 threads a norm row, one llvmpipe SIMD vector; 64 for the sampler); the gpu
        family runs a workgroup of up to 256."""
        return {"WG_SIZE": min(256, self.ctx.max_invocations)} if self.kernels == "gpu" else None

    def _add(self, prog: _Program, a, b, y, width: int) -> None:
        wg = shader_constant("add.wgsl", "WG_SIZE")
        prog.add("add.wgsl", [a, b, y], lambda n, p: _pack("I", n * width), lambda n, p: (-(-n * width // wg), 1, 1))

    def _elementwise(self, prog: _Program, shader: str, inputs: list, y, width: int) -> None:
        wg = shader_constant(shader, "WG_SIZE")
        prog.add(shader, [*inputs, y], lambda n, p: _pack("I", n * width), lambda n, p: _grid_rows(-(-n * width // wg)))

    def _build(self) -> _Program:
        c, ctx = self.c, self.ctx
        prog = _Program(ctx)
        q_dim, kv_dim, v_dim = c.n_head * c.head_dim, c.kv_dim, c.n_head_kv * c.head_dim_v
        cur = 0
        # embeddings
        embd = self.mat("token_embd.weight")
        scale = math.sqrt(c.n_embd) if c.recipe.embed_scale else 1.0
        gw = self._gw
        prog.call(lambda cpass, n, pos0: gw.embedding_lookup(ctx, cpass, embd, self.ids, self.x[0], n, scale), f"embedding_{embd.shader_suffix}")
        if c.recipe.learned_pos:
            pos_table = self.vec("position_embd.weight")
            prog.add(
                "embedding.wgsl",
                [pos_table, self.positions, self.h],
                lambda n, p: _pack("If", c.n_embd, 1.0),
                lambda n, p, wg=shader_constant("embedding.wgsl", "WG_SIZE"): (-(-c.n_embd // wg), n, 1),
            )
            self._add(prog, self.x[0], self.h, self.x[1], c.n_embd)
            cur = 1
        prog.mark("embd", self.x[cur], c.n_embd)
        for i in range(c.n_layer):
            blk = f"blk.{i}."
            x, x_next = self.x[cur], self.x[1 - cur]
            normed = self._norm(prog, blk + "attn_norm", x, self.h, decode=not self.fuse_norm)  # the matmuls reading h
            prog.mark(blk + "attn_norm", self.h, c.n_embd)
            one_matmul = self.fused or self.qkv_stacked[i]
            if one_matmul:
                if self.fused:
                    self._matmul(prog, blk + "attn_qkv.weight", self.h, self.qkv, blk + "attn_qkv.bias", norm=normed)
                else:
                    site = blk + "attn_q+k+v.weight"
                    self._matmul(prog, site, self.h, self.qkv, weight=self.stacked_qkv(i), norm=normed)
                    for p, col in zip("qkv", (0, q_dim, q_dim + kv_dim)):
                        self._lora.parts[f"{blk}attn_{p}.weight"] = (site, col)
                row = q_dim + kv_dim + v_dim
                src_q, src_k, src_v = (self.qkv, row, 0), (self.qkv, row, q_dim), (self.qkv, row, q_dim + kv_dim)
                if c.recipe.qk_norm:  # both norms in place on the stacked rows, one launch
                    heads = c.n_head + c.n_head_kv
                    prog.add(
                        "qk_norm.wgsl",
                        [self.qkv, self.vec(blk + "attn_q_norm.weight"), self.vec(blk + "attn_k_norm.weight")],
                        lambda n, p, heads=heads, row=row: _pack("IIfIII", n * heads, c.head_dim, c.norm_eps, c.n_head, heads, row),
                        lambda n, p, heads=heads: _grid_rows(n * heads),
                        constants=self._row_constants(),
                    )
            else:
                self._matmul(prog, blk + "attn_q.weight", self.h, self.q, blk + "attn_q.bias", norm=normed)
                self._matmul(prog, blk + "attn_k.weight", self.h, self.k, blk + "attn_k.bias", norm=normed)
                self._matmul(prog, blk + "attn_v.weight", self.h, self.v, blk + "attn_v.bias", norm=normed)
                if c.recipe.qk_norm:
                    self._norm(prog, blk + "attn_q_norm", self.q, self.q_rot, rows=lambda n: n * c.n_head, dim=c.head_dim)
                    self._norm(prog, blk + "attn_k_norm", self.k, self.attn, rows=lambda n: n * c.n_head_kv, dim=c.head_dim)
                    src_q, src_k = (self.q_rot, q_dim, 0), (self.attn, kv_dim, 0)
                else:
                    src_q, src_k = (self.q, q_dim, 0), (self.k, kv_dim, 0)
                src_v = (self.v, v_dim, 0)
            base, pos_scale = c.layer_rope(i)
            neox = int(c.recipe.rope == "neox")
            q_out = self.q if (c.recipe.qk_norm and not one_matmul) else self.q_rot
            if one_matmul and self.fuse_rope_kv:  # Q, K and V in one buffer: one launch for all three
                self._rope_qkv(prog, q_out, i, base, pos_scale, neox)
            else:
                self._rope(prog, src_q, (q_out, q_dim, False), c.n_head, base, pos_scale, neox, c.layer_n_rot(i))
                self._rope(prog, src_k, (self.k_cache[i], kv_dim, True), c.n_head_kv, base, pos_scale, neox, c.layer_n_rot(i))
                self._kv_store(prog, src_v, self.v_cache[i], v_dim, kv_f16=self.kv_f16)
            prog.mark(blk + "q", q_out, q_dim)
            prog.mark(blk + "k", self.k_cache[i], kv_dim, self.kv_f16)
            prog.mark(blk + "v", self.v_cache[i], v_dim, self.kv_f16)
            window = c.sliding_window if c.swa_layers[i] else 0
            if self.kernels == "gpu":
                self._attention_gpu(prog, q_out, i, window)
            else:
                q_per_group = 4 * shader_constant("attention.wgsl", "WG_SIZE")  # a vec4 of queries per invocation
                prog.add(
                    "attention.wgsl",
                    [q_out, self.k_cache[i], self.v_cache[i], self.positions, self.attn],
                    lambda n, p, window=window: _pack(
                        "IIIIIIfffII", c.n_head, c.n_head_kv, c.head_dim, c.head_dim_v, p + n, window, c.attn_scale, c.attn_softcap, c.alibi_max_bias, n, 0
                    ),
                    lambda n, p: (c.n_head, -(-n // q_per_group), 1),
                    kv_f16=self.kv_f16,
                )
            prog.mark(blk + "attn", self.attn, c.n_head * c.head_dim_v)
            # x_next = x + attention out, then x = x_next + ffn out (parallel: ffn of the same h); without
            # a post-norm between, each add is the epilogue of the matmul before it (fuse_residual)
            fuse = self.fuse_residual and not c.recipe.post_norms
            if fuse:
                self._matmul(prog, blk + "attn_output.weight", self.attn, x_next, blk + "attn_output.bias", residual=x)
            else:
                self._matmul(prog, blk + "attn_output.weight", self.attn, self.o, blk + "attn_output.bias")
                attn_out = self.o
                if c.recipe.post_norms:
                    self._norm(prog, blk + "post_attention_norm", self.o, self.ffn)
                    attn_out = self.ffn
                self._add(prog, x, attn_out, x_next, c.n_embd)
            prog.mark(blk + "attn_residual", x_next, c.n_embd)
            if not c.recipe.parallel:
                normed = self._norm(prog, blk + "ffn_norm", x_next, self.h, decode=not self.fuse_norm)
                prog.mark(blk + "ffn_norm", self.h, c.n_embd)
            if fuse:
                self._ffn(prog, i, self.h, x, residual=x_next, norm=normed)
                prog.mark(blk + "x", x, c.n_embd)
                continue  # x holds the result again
            ffn_out = self.o if c.recipe.parallel else self.ffn
            self._ffn(prog, i, self.h, ffn_out, norm=normed)
            if c.recipe.post_norms and not c.recipe.parallel:  # as reference.forward: no post_ffw_norm when parallel
                self._norm(prog, blk + "post_ffw_norm", self.ffn, self.o)
                ffn_out = self.o
            self._add(prog, x_next, ffn_out, x, c.n_embd)
            prog.mark(blk + "x", x, c.n_embd)
        # x is self.x[cur] again after every layer. The head runs on the last row only, or on
        # every row when all_logits (the logits CLI and the tests that compare each position).
        x = self.x[cur]
        out_name = "token_embd.weight" if c.tied_output else "output.weight"
        w_out, bias = self.mat(out_name), self.vec("output.bias")
        if self.all_logits:
            self._norm(prog, "output_norm", x, self.h)
            prog.mark("output_norm", self.h, c.n_embd)
            prog.call(lambda cpass, n, pos0: gw.matmul(ctx, cpass, w_out, self.h, self.logits, n, bias, kernels=self.kernels, zeros=self.zeros), f"matmul_{w_out.shader_suffix} (output)")
        else:
            # the last row to self.last by a kernel (kv_store's strided row copy), not copy_buffer_to_buffer,
            # which would end the step's compute pass
            if self.fuse_norm:  # the head norms its one row itself; a decode step's one row is x itself, not copied
                decode_copy = lambda n: 0 if n == 1 else 1  # noqa: E731
                self._kv_store(prog, (x, c.n_embd, 0), self.last, c.n_embd, rows=decode_copy, first=lambda n: n - 1, label="copy last row")
                norm_w = self.vec("output_norm.weight")
                prog.call(
                    lambda cpass, n, pos0: gw.matmul(
                        ctx, cpass, w_out, x if n == 1 else self.last, self.logits, 1, bias, kernels=self.kernels, norm=(norm_w, c.norm_eps), zeros=self.zeros
                    ),
                    f"matmul_{w_out.shader_suffix} (output)",
                )
            else:
                self._kv_store(prog, (x, c.n_embd, 0), self.last, c.n_embd, rows=lambda n: 1, first=lambda n: n - 1, label="copy last row")
                self._norm(prog, "output_norm", self.last, self.last_norm, rows=lambda n: 1)
                prog.call(
                    lambda cpass, n, pos0: gw.matmul(ctx, cpass, w_out, self.last_norm, self.logits, 1, bias, kernels=self.kernels, zeros=self.zeros),
                    f"matmul_{w_out.shader_suffix} (output)",
                )
        logits = self.logits
        if c.final_softcap:
            rows = (lambda n: n) if self.all_logits else (lambda n: 1)
            prog.add(
                "softcap.wgsl",
                [self.logits, self.logits_capped],
                lambda n, p: _pack("If", rows(n) * c.n_vocab, c.final_softcap),
                lambda n, p, wg=shader_constant("softcap.wgsl", "WG_SIZE"): _grid_rows(-(-rows(n) * c.n_vocab // wg)),
            )
            logits = self.logits_capped
        self.final_logits = logits
        if self.all_logits:
            prog.mark("logits", logits, c.n_vocab)
        # the sampler's inputs: one Adjust entry per id with a logit_bias or a count in the penalty
        # window (at most the whole context's ids and MAX_LOGIT_BIAS biases); its logprobs output
        self.sample_adjust = ctx.buffer(size=16 * (self.max_tokens + MAX_LOGIT_BIAS), label="sampler adjust entries")
        self.sample_logprobs = ctx.buffer(size=4 * (2 + 2 * MAX_TOP_LOGPROBS), label="sampler logprobs")
        self.sample_mask = ctx.buffer(size=max(16, 4 * -(-c.n_vocab // 32)), label="sampler token mask")  # a grammar's, a bit per id
        sampler = _Program(ctx)
        sampler.add("sample.wgsl", [self.sample_adjust, logits, self.sampled, self.sample_logprobs, self.sample_mask], lambda n, p: _pack(_SAMPLE_PARAMS, *[0] * 13), lambda n, p: (1, 1, 1),
                    constants=self._row_constants())
        self.sampler = sampler.steps[0]
        return prog

    def _attention_gpu(self, prog: _Program, q, i: int, window: int) -> None:
        """Layer i's attention in the gpu family: prefill (n > 1) is one launch of prefill_tiled; decode
        is decode_split over the keys in splits into attn_splits, then attention_combine into attn; or,
        while the keys are one split, decode_split alone straight into attn (Params.direct; the same
        values: the combine of one split is o / l). Each launch's grid is empty, so it is not recorded,
        where another runs instead."""
        c = self.c
        params = lambda n, p, direct=0: _pack(  # noqa: E731  (the cpu family's Params)
            "IIIIIIfffII", c.n_head, c.n_head_kv, c.head_dim, c.head_dim_v, p + n, window, c.attn_scale, c.attn_softcap, c.alibi_max_bias, n, direct
        )
        inputs = [q, self.k_cache[i], self.v_cache[i], self.positions]
        q_tile, groups = shader_constant("attention.wgsl", "Q_TILE"), decode_head_groups(c.n_head, c.n_head_kv)
        prefill_grid = lambda n, p: (c.n_head, -(-n // q_tile), 1) if n > 1 else (0, 0, 0)  # noqa: E731
        one_split = lambda n, p: n == 1 and decode_splits(p + n, window) == 1  # noqa: E731
        split_grid = lambda n, p: (groups, decode_splits(p + n, window), 1) if n == 1 and not one_split(n, p) else (0, 0, 0)  # noqa: E731
        kv_f16 = self.kv_f16
        prog.add("attention.wgsl", [*inputs, self.attn], params, prefill_grid, "prefill_tiled", label="attention prefill_tiled", kv_f16=kv_f16)
        prog.add(
            "attention.wgsl",
            [*inputs, self.attn],
            lambda n, p: params(n, p, direct=1),
            lambda n, p: (groups, 1, 1) if one_split(n, p) else (0, 0, 0),
            "decode_split",
            label="attention decode_split (one split)",
            kv_f16=kv_f16,
        )
        prog.add("attention.wgsl", [*inputs, self.attn_splits], params, split_grid, "decode_split", label="attention decode_split", kv_f16=kv_f16)
        prog.add(
            "attention_combine.wgsl",
            [self.attn_splits, self.attn],
            lambda n, p: _pack("III", c.n_head, c.head_dim_v, decode_splits(p + n, window)),
            lambda n, p: (c.n_head, 1, 1) if n == 1 and not one_split(n, p) else (0, 0, 0),
        )

    def _rope(self, prog: _Program, src, dst, heads: int, base: float, pos_scale: float, neox: int, n_rot: int) -> None:
        """Rotate the first n_rot dims of n rows of heads from src into dst, copying the rest (all of them
        without RoPE or on a NoPE layer, n_rot 0); dst in the KV cache is at row pos0 and of the cache's
        element type (f16 when kv_f16)."""
        c = self.c
        src_buf, src_stride, src_off = src
        dst_buf, dst_stride, into_cache = dst
        prog.add(
            "rope.wgsl",
            [self.positions, src_buf, dst_buf, self.rope_factors],
            lambda n, p: _pack(
                "IIIIIIIIffIf", n, heads, c.head_dim, n_rot, src_stride, src_off, dst_stride, p * dst_stride if into_cache else 0, base, pos_scale, neox,
                c.rope_attn_factor,
            ),
            lambda n, p, wg=shader_constant("rope.wgsl", "WG_SIZE"): (-(-heads * c.head_dim // 2 // wg), n, 1),
            kv_f16=into_cache and self.kv_f16,
        )

    def _rope_qkv(self, prog: _Program, q_out, i: int, base: float, pos_scale: float, neox: int) -> None:
        """After a layer's one Q/K/V matmul (the qkv buffer): Q rotated into q_out, K rotated into the
        K cache and V copied into the V cache at row pos0, in one launch (rope.wgsl's qkv entry)."""
        c = self.c
        q_dim, kv_dim, v_dim = c.n_head * c.head_dim, c.kv_dim, c.n_head_kv * c.head_dim_v
        items = (q_dim + kv_dim) // 2 + v_dim
        wg = shader_constant("rope.wgsl", "WG_SIZE")
        prog.add(
            "rope.wgsl",
            [self.positions, self.qkv, self.k_cache[i], q_out, self.v_cache[i], self.rope_factors],
            lambda n, p: _pack(
                "IIIIIIIIffIf", c.n_head, c.n_head_kv, c.head_dim, v_dim, c.layer_n_rot(i), q_dim + kv_dim + v_dim, p * kv_dim, p * v_dim, base, pos_scale, neox,
                c.rope_attn_factor,
            ),
            lambda n, p: (-(-items // wg), n, 1),
            entry="qkv",
            label="rope_qkv",
            kv_f16=self.kv_f16,
        )

    def _kv_store(self, prog: _Program, src, cache, row_len: int, rows=None, first=None, label: str = "", kv_f16: bool = False) -> None:
        """Copy rows(n) rows (default n) of src, from its row first(n) (default 0), to cache at row pos0
        (or, with `first` given, to its row 0: the last-row copy before the output head); kv_f16: the
        cache holds f16 (the V cache of an f16 KV engine)."""
        src_buf, src_stride, src_off = src
        rows = rows or (lambda n: n)
        if first is None:
            params = lambda n, p: _pack("IIIII", row_len, src_stride, src_off, row_len, p * row_len)  # noqa: E731
        else:
            params = lambda n, p: _pack("IIIII", row_len, src_stride, src_off + first(n) * src_stride, row_len, 0)  # noqa: E731
        wg = shader_constant("kv_store.wgsl", "WG_SIZE")
        prog.add("kv_store.wgsl", [src_buf, cache], params, lambda n, p: (-(-row_len // wg), rows(n), 1), label=label, kv_f16=kv_f16)

    def _ffn(self, prog: _Program, i: int, h, out, residual=None, norm=None) -> None:
        """The MLP of layer i on h; norm: h is an RMSNorm's output that a decode step does not make
        (see _matmul)."""
        c, blk = self.c, f"blk.{i}."
        kind = c.recipe.ffn
        if self.glu_paired[i]:  # one launch writes act(gate) * up
            self._matmul(prog, blk + "ffn_gate+up.weight", h, self.act, weight=(self.paired_glu(i), None), glu=kind, norm=norm)
        elif kind in ("swiglu", "geglu"):
            self._matmul(prog, blk + "ffn_up.weight", h, self.up, blk + "ffn_up.bias", norm=norm)
            self._matmul(prog, blk + "ffn_gate.weight", h, self.gate, blk + "ffn_gate.bias", norm=norm)
            self._elementwise(prog, f"{kind}.wgsl", [self.gate, self.up], self.act, c.n_ff)
        else:
            self._matmul(prog, blk + "ffn_up.weight", h, self.up, blk + "ffn_up.bias", norm=norm)
            self._elementwise(prog, "gelu_tanh.wgsl" if kind == "gelu" else "gelu_erf.wgsl", [self.up], self.act, c.n_ff)
        self._matmul(prog, blk + "ffn_down.weight", self.act, out, blk + "ffn_down.bias", residual=residual)

    # -- running -------------------------------------------------------------------------------
    def launches_per_step(self, n: int = 1, pos0: int = 0) -> int:
        """Kernel launches of one forward step of n tokens at pos0, the sampler's included (what the
        bench reports as dispatches per decode step): the program recorded into a pass that counts."""
        counter = _CountingPass()
        self.program.encode(counter, n, pos0)
        return counter.launches + 1

    def trace(self, n: int = 1, pos0: int = 0) -> list[dict]:
        """The launches of one forward step of n tokens at pos0, the sampler's not included, as
        runtime.GpuContext.describe_launch names them (shader, entry, constants, kv_f16, grid, Params
        words, bindings by label and size): the program recorded into a pass that runs nothing. The
        browser engine's Engine.trace is its twin; the trace parity test compares the two."""
        tracer = TracingPass(self.ctx)
        self._lora.activate(self, None)  # no adapter: a LoRA step records nothing, as in the browser's trace
        self.program.encode(tracer, n, pos0)
        return tracer.launches

    def checkpoints(self, ids: list[int]) -> dict[str, np.ndarray]:
        """The named intermediate tensors of a prefill of `ids` at position 0 (at least 2 ids, so that
        every norm runs as a launch; an engine with all_logits, so that the head runs on every row):
        {name: (n, width) f32} in program order -- embd, then per layer blk.{i}.attn_norm, .q, .k, .v
        (after their norms and RoPE, as the KV cache holds them), .attn (before attn_output),
        .attn_residual (x + attention), .ffn_norm, .x (the layer's output), then output_norm and
        logits: the names reference.forward(checkpoints=) records. The program runs in pieces, each
        submitted and its checkpoint read back before the next (slow; for wgllm diff and tests)."""
        n = len(ids)
        if n < 2 or not self.all_logits:
            raise ValueError(f"checkpoints need at least 2 ids (got {n}) and an engine with all_logits=True (got {self.all_logits})")
        self._step(ids, 0)[1].end()  # checks the ids and writes them and the positions; the pass is dropped unsubmitted
        out, done = {}, 0
        for at, name, buf, width, f16 in self.program.marks:
            enc = self.ctx.device.create_command_encoder()
            cpass = enc.begin_compute_pass()
            for i in range(done, at):
                self.program.encode_step(cpass, i, n, 0)
            cpass.end()
            self.ctx.device.queue.submit([enc.finish()])
            done = at
            dtype, size = (np.float16, 2) if f16 else (np.float32, 4)
            values = self.ctx.read(buf, dtype, nbytes=-(-n * width * size // 4) * 4)
            out[name] = values[: n * width].reshape(n, width).astype(np.float32)
        return out

    def forward_logits(self, ids: list[int], pos0: int, lora: GpuLora | None = None) -> np.ndarray:
        """Run one step (with `lora` applied, if given); the logits of its last row, or of every
        row (n, vocab) when all_logits."""
        enc, cpass = self._step(ids, pos0, lora)
        cpass.end()
        self.ctx.device.queue.submit([enc.finish()])
        rows = len(ids) if self.all_logits else 1
        out = self.ctx.read(self.final_logits, np.float32, (rows, self.c.n_vocab), nbytes=rows * self.c.n_vocab * 4)
        return out if self.all_logits else out[0]

    def _step(self, ids: list[int], pos0: int, lora: GpuLora | None = None):
        n = len(ids)
        self._lora.activate(self, lora)
        if pos0 + n > self.max_tokens:
            raise ValueError(f"{pos0 + n} tokens do not fit in max_tokens={self.max_tokens}")
        bad = [t for t in ids if not 0 <= t < self.c.n_vocab]
        if bad:
            raise ValueError(f"token id {bad[0]} is outside the vocabulary of {self.c.n_vocab}")
        self.ctx.write(self.ids, np.asarray(ids, np.uint32))
        self.ctx.write(self.positions, np.arange(pos0, pos0 + n, dtype=np.uint32))
        enc = self.ctx.device.create_command_encoder()
        cpass = enc.begin_compute_pass()
        self.program.encode(cpass, n, pos0)
        return enc, cpass  # the pass still open, for the sampler

    def sample_step(self, ids: list[int], pos0: int, top_k: int, temperature: float, seed: int, step: int, lora: GpuLora | None = None) -> int:
        """Run `ids` at pos0 and sample the next token with top-k and temperature alone."""
        return self.sample_with(ids, pos0, SamplingParams(top_k=top_k, temperature=temperature, seed=seed), step, (), lora).token

    def sample_with(self, ids: list[int], pos0: int, params: SamplingParams, step: int, history, lora: GpuLora | None = None, mask: np.ndarray | None = None) -> Sampled:
        """Run `ids` at pos0 and sample the next token with `params` (checked SamplingParams),
        `history` (every id fed so far, `ids` included) for the penalties, and a grammar's `mask`
        (bool, one per id; uploaded as bits). Reads back the id, and the logprobs only when params
        asks for them."""
        if not params.greedy and params.top_k > MAX_TOP_K:
            raise ValueError(f"top_k = {params.top_k} is above the GPU sampler's maximum of {MAX_TOP_K}")
        entries = params.adjust_entries(history)
        if len(entries) * 16 > self.sample_adjust.size:
            raise ValueError(f"{len(entries)} logit_bias and penalty entries do not fit the sampler's {self.sample_adjust.size // 16}")
        enc, cpass = self._step(ids, pos0, lora)
        if len(entries):
            self.ctx.write(self.sample_adjust, entries)
        if mask is not None:
            if mask.shape != (self.c.n_vocab,):
                raise ValueError(f"the token mask has shape {mask.shape}, expected ({self.c.n_vocab},): one entry per vocabulary id")
            self.ctx.write(self.sample_mask, mask_words(mask))
        d = self.sampler
        offset = (len(ids) - 1) * self.c.n_vocab if self.all_logits else 0
        n_top = params.top_logprobs if params.logprobs else 0
        packed = _pack(
            _SAMPLE_PARAMS, self.c.n_vocab, offset, params.top_k, params.temperature, params.seed & 0xFFFFFFFF, step,
            params.top_p, params.min_p, params.repetition_penalty, len(entries), n_top, int(params.logprobs), int(mask is not None),
        )
        self.ctx.write(d.uniform, packed)
        self.ctx.dispatch(cpass, d.pipeline, d.bind_group, (1, 1, 1))
        cpass.end()
        self.ctx.device.queue.submit([enc.finish()])
        out = Sampled(int(self.ctx.read(self.sampled, np.uint32, (1,))[0]))
        if params.logprobs:
            n = min(n_top, self.c.n_vocab)
            raw = self.ctx.read(self.sample_logprobs, np.uint32, (2 + 2 * n,), nbytes=4 * (2 + 2 * n))
            out.logprob = float(raw[:1].view(np.float32)[0])
            pairs = raw[2:].reshape(n, 2)
            out.top = [(int(i), float(v)) for i, v in zip(pairs[:, 0], pairs[:, 1].copy().view(np.float32))]
        return out

    def session(self, *, top_k: int, temperature: float, seed: int, lora: GpuLora | None = None, **options) -> "GpuSession":
        """A generation with top_k, temperature, seed and any other SamplingParams field."""
        params = SamplingParams(top_k=top_k, temperature=temperature, seed=seed, **options).checked(self.c.n_vocab)
        if not params.greedy and top_k > MAX_TOP_K:
            raise ValueError(f"top_k = {top_k} is above the GPU sampler's maximum of {MAX_TOP_K}")
        return GpuSession(self, params, lora)

    def close(self) -> None:
        self._lora.release_all()
        for b in [*self._weights.values()]:
            destroy = getattr(b, "destroy", None)
            if destroy:
                destroy()
        self._weights.clear()


class GpuSession:
    """One generation on the engine: positions advance, the KV cache fills, the GPU samples."""

    def __init__(self, engine: GpuEngine, params: SamplingParams, lora: GpuLora | None = None):
        self.engine, self.params, self.lora = engine, params, lora
        self.pos = 0
        self.history: list[int] = []  # every id fed, for the penalties
        self.sampled: list[Sampled] = []

    def _run(self, ids: list[int], mask) -> int:
        self.history.extend(ids)
        s = self.engine.sample_with(ids, self.pos, self.params, len(self.sampled), self.history, self.lora, mask)
        self.pos += len(ids)
        self.sampled.append(s)
        return s.token

    def prefill(self, ids: list[int], mask: np.ndarray | None = None) -> int:
        return self._run(ids, mask)

    def decode(self, token: int, mask: np.ndarray | None = None) -> int:
        return self._run([token], mask)
