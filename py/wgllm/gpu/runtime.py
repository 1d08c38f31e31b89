"""Device, shader and pipeline cache, buffers and dispatch through wgpu-py.

One GpuContext per process, on the adapter's own limits. Pipelines are cached by
(shader file, entry point, override constants) and bind groups by the buffers they bind, so
nothing is rebuilt per token. Shaders are the WGSL files in the repository's shaders/ folder,
the same files the browser bundle imports (an installed wheel carries a copy).
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
import weakref
from pathlib import Path

import numpy as np

from wgllm.resources import data_dir

# $WGLLM_SHADER_DIR, else the wheel's packaged copy, else the checkout's shaders/ (wgllm.resources)
SHADER_DIR = Path(os.environ.get("WGLLM_SHADER_DIR") or data_dir("shaders"))
_WANTED_FEATURES = ("shader-f16", "subgroup")
# The one variation of shader text (WGSL has no preprocessor and no type overrides): a shader that
# touches the KV cache declares its element type with this line, and its "f16 KV" variant, for
# adapters with shader-f16, is the same file with `enable f16;` first and the alias made f16.
# web/src/shaders.ts applies the same rule (tests check the two agree).
KV_ALIAS = "alias kv_t = f32;"
KV_ALIAS_F16 = "alias kv_t = f16;"


def kv_f16_variant(name: str, source: str) -> str:
    """shaders/<name>'s text with its KV cache in f16 (see KV_ALIAS); a shader without exactly one
    KV_ALIAS line has no such variant."""
    if source.count(KV_ALIAS) != 1:
        raise GpuError(f"shaders/{name} has no f16 KV variant: it needs exactly one line `{KV_ALIAS}`")
    return "enable f16;\n" + source.replace(KV_ALIAS, KV_ALIAS_F16)


# The second variation: a shader's subgroup variant, for devices with subgroups. Lines ending in
# SG_DROP are the workgroup-memory path and are dropped; lines starting with SG_LINE are the subgroup
# path, commented out in the file, and are kept without that prefix. Only the entry points in
# SUBGROUP_ENTRIES are compiled from it (the gpu family's matvec). Chrome needs `enable subgroups;`
# first, which naga (wgpu-py) refuses while accepting the builtins: web/src/shaders.ts adds the line,
# this does not.
SG_DROP = "// !sg"
SG_LINE = "//sg "
SUBGROUP_ENTRIES = ("matvec_split",)


def subgroup_variant(name: str, source: str) -> str:
    """shaders/<name>'s subgroup variant (see SG_DROP / SG_LINE); a shader without such lines has none."""
    lines = source.split("\n")
    if not any(line.startswith(SG_LINE) for line in lines):
        raise GpuError(f"shaders/{name} has no subgroup variant: it has no lines starting `{SG_LINE}`")
    return "\n".join(line[len(SG_LINE):] if line.startswith(SG_LINE) else line for line in lines if not line.rstrip().endswith(SG_DROP))


# The two kernel families (bench/NOTES.md, "Kernel families"): `cpu` is shaped for CPU-emulated WebGPU
# (lavapipe/llvmpipe, SwiftShader: a thread owns whole weight rows, no workgroup memory, few barriers),
# `gpu` for real GPUs (the reduction dimension split over neighbouring threads so loads coalesce,
# workgroup-memory reductions and tiles). web/src/gpu.ts chooses the same way.
KERNEL_FAMILIES = ("gpu", "cpu")
_CPU_ADAPTER_WORDS = ("llvmpipe", "lavapipe", "swiftshader", "softpipe", "software")


def is_cpu_adapter(info: dict) -> bool:
    """Whether a wgpu-py adapter info describes CPU-emulated WebGPU: adapter_type "CPU", or Mesa's
    llvmpipe/lavapipe or SwiftShader named in its vendor, architecture, device or description."""
    if str(info.get("adapter_type", "")).lower() == "cpu":
        return True
    text = " ".join(str(info.get(k, "")) for k in ("vendor", "architecture", "device", "description")).lower()
    return any(w in text for w in _CPU_ADAPTER_WORDS)


def resolve_kernels(kernels: str | None, cpu_adapter: bool) -> str:
    """The kernel family to run: `kernels` when given ("gpu" or "cpu"), else the adapter's ("cpu" on
    CPU-emulated WebGPU, "gpu" everywhere else)."""
    if kernels is None or kernels == "auto":
        return "cpu" if cpu_adapter else "gpu"
    if kernels not in KERNEL_FAMILIES:
        raise ValueError(f"kernels = {kernels!r}: expected one of 'gpu', 'cpu' or 'auto' (None: chosen from the adapter)")
    return kernels


@functools.lru_cache(maxsize=None)
@functools.lru_cache(maxsize=None)  # grids ask at every step; the shader files do not change while a process runs
def shader_constant(name: str, const: str) -> int:
    """A `const NAME: u32 = N;` (or override default) of shaders/<name>: kernel geometry is read from
    the shaders themselves, as web/src/gpu.ts shaderConstant does."""
    text = (SHADER_DIR / name).read_text()
    m = re.search(rf"(?:const|override)\s+{const}\s*:\s*u32\s*=\s*(\d+)u?\s*;", text)
    if not m:
        raise GpuError(f"shaders/{name} has no 'const {const}: u32 = ...;' (the host reads its kernel geometry from it)")
    return int(m.group(1))


class GpuError(RuntimeError):
    """No usable adapter, a shader that fails to compile (named by file), or a model that does not fit."""


class GpuContext:
    """limits: lower some of the adapter's limits (WebGPU names with dashes, e.g.
    {"max-compute-invocations-per-workgroup": 128}) and features: use only these of the wanted ones —
    what a smaller device offers, so that tests can run the kernels under it; the engine's process-wide
    context (get_context) takes the adapter's own."""

    def __init__(self, power_preference: str = "high-performance", limits: dict | None = None, features: tuple | None = None):
        if not os.environ.get("XDG_RUNTIME_DIR"):
            # Mesa's Vulkan loader prints an error line without one; a private folder is enough
            os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="wgllm-xdg-")
        try:
            import wgpu
        except ImportError as e:  # pragma: no cover - wgpu is a runtime dependency
            raise GpuError(f"wgpu-py is not installed ({e}); pip install wgpu") from None
        self.wgpu = wgpu
        try:
            adapter = wgpu.gpu.request_adapter_sync(power_preference=power_preference)
        except Exception as e:  # wgpu raises plain RuntimeError when no backend/driver exists
            adapter, reason = None, str(e)
        else:
            reason = "no adapter was offered"
        if adapter is None:
            raise GpuError(
                f"No WebGPU adapter is available ({reason}). On Debian/Ubuntu without a GPU, install the "
                "software Vulkan driver: apt-get install mesa-vulkan-drivers"
            )
        self.adapter = adapter
        self.features = {f for f in (_WANTED_FEATURES if features is None else features) if f in adapter.features}
        self.limits = dict(adapter.limits)
        for name, value in (limits or {}).items():
            if name not in self.limits:
                raise GpuError(f"limits: {name!r} is not a WebGPU limit of this adapter (known: {', '.join(sorted(self.limits))})")
            self.limits[name] = min(int(value), int(self.limits[name]))
        self.device = adapter.request_device_sync(required_features=sorted(self.features), required_limits=self.limits)
        self.max_binding = int(self.limits["max-storage-buffer-binding-size"])
        self.max_buffer = int(self.limits["max-buffer-size"])
        self.has_f16 = "shader-f16" in self.features
        self.has_subgroups = "subgroup" in self.features  # the entries in SUBGROUP_ENTRIES then run their subgroup variant
        self.cpu_adapter = is_cpu_adapter(dict(adapter.info))
        # the gpu family's workgroups are sized within this (a device may allow as few as 128 or 256)
        self.max_invocations = int(self.limits["max-compute-invocations-per-workgroup"])
        self.max_workgroup_storage = int(self.limits["max-compute-workgroup-storage-size"])
        self._modules: dict[str, object] = {}
        self._pipelines: dict[tuple, object] = {}
        self._live: dict[int, int] = {}  # id(buffer) -> bytes, for the out-of-memory message
        # What a launch trace (TracingPass) names: each pipeline's shader, entry, constants and
        # variant; each bind group's bindings as (label, size[, offset]); each uniform's bytes as last
        # written. Keyed by id, dropped when the object dies.
        self._pipeline_meta: dict[int, dict] = {}
        self._bind_meta: dict[int, tuple[int, list]] = {}
        self._uniform_bytes: dict[int, bytes] = {}

    def kernels(self, requested: str | None = None) -> str:
        """The kernel family for this adapter, or `requested` ("gpu"/"cpu") when given (resolve_kernels)."""
        return resolve_kernels(requested, self.cpu_adapter)

    @property
    def adapter_name(self) -> str:
        info = self.adapter.info
        return f"{info.get('device', '?')} ({info.get('description', '')}, {info.get('backend_type', '')})"

    # -- shaders and pipelines -----------------------------------------------------------------
    def shader_source(self, name: str) -> str:
        path = SHADER_DIR / name
        if not path.is_file():
            raise GpuError(f"shader file {path} not found")
        return path.read_text()

    def module(self, name: str, kv_f16: bool = False, subgroups: bool = False):
        """The compiled shaders/<name>, or its f16 KV variant (kv_f16_variant; needs shader-f16), or its
        subgroup variant (subgroup_variant; needs subgroups)."""
        key = (name, kv_f16, subgroups)
        if key not in self._modules:
            if kv_f16 and not self.has_f16:
                raise GpuError(f"shaders/{name}: the f16 KV variant needs the shader-f16 feature, which this adapter lacks")
            if subgroups and not self.has_subgroups:
                raise GpuError(f"shaders/{name}: the subgroup variant needs the subgroup feature, which this device lacks")
            code = self.shader_source(name)
            code = kv_f16_variant(name, code) if kv_f16 else code
            code = subgroup_variant(name, code) if subgroups else code
            what = f"shaders/{name}" + (" (f16 KV variant)" if kv_f16 else "") + (" (subgroup variant)" if subgroups else "")
            try:
                self._modules[key] = self.device.create_shader_module(label=name, code=code)
            except Exception as e:
                raise GpuError(f"{what} failed to compile: {e}") from None
        return self._modules[key]

    def pipeline(self, name: str, constants: dict[str, float | int] | None = None, entry: str = "main", kv_f16: bool = False):
        """shaders/<name>'s `entry` with these override constants (cached); kv_f16: of its f16 KV
        variant. An entry in SUBGROUP_ENTRIES runs the subgroup variant where the device has subgroups."""
        key = (name, entry, tuple(sorted((constants or {}).items())), kv_f16)
        if key not in self._pipelines:
            compute = {"module": self.module(name, kv_f16, self.has_subgroups and entry in SUBGROUP_ENTRIES), "entry_point": entry}
            if constants:
                compute["constants"] = dict(constants)
            try:
                self._pipelines[key] = p = self.device.create_compute_pipeline(label=f"{name}:{entry}", layout="auto", compute=compute)
            except Exception as e:
                variant = ", f16 KV variant" if kv_f16 else ""
                raise GpuError(f"shaders/{name} (entry {entry}, constants {constants}{variant}) failed validation: {e}") from None
            self._pipeline_meta[id(p)] = {"shader": name.removesuffix(".wgsl"), "entry": entry, "constants": dict(sorted((constants or {}).items())) or None, "kv_f16": kv_f16}
        return self._pipelines[key]

    # -- buffers -------------------------------------------------------------------------------
    def buffer(self, data: np.ndarray | bytes | None = None, size: int | None = None, *, uniform: bool = False, label: str = ""):
        """A storage (or uniform) buffer, filled with `data` when given; size padded to 4 bytes."""
        u = self.wgpu.BufferUsage
        usage = (u.UNIFORM if uniform else u.STORAGE) | u.COPY_DST | u.COPY_SRC
        raw = None if data is None else (data.tobytes() if isinstance(data, np.ndarray) else bytes(data))
        nbytes = size if size is not None else len(raw)
        nbytes = max(4, -(-nbytes // 4) * 4)
        if uniform:
            nbytes = -(-nbytes // 16) * 16
        if nbytes > self.max_buffer:
            raise GpuError(f"buffer {label!r} needs {nbytes} bytes; the adapter's maxBufferSize is {self.max_buffer}")
        try:
            buf = self.device.create_buffer(label=label, size=nbytes, usage=usage)
        except Exception as e:
            if "memory" not in str(e).lower():
                raise
            # WebGPU exposes no memory size: running out shows only here, when one more buffer is refused
            raise GpuError(
                f"out of GPU memory: buffer {label or '(unlabelled)'!r} of {nbytes} bytes was refused with {self.live_bytes} "
                f"bytes already held in {len(self._live)} buffers; the model's weights, KV cache and scratch do not fit "
                f"this adapter (try a smaller model, fewer max tokens or a smaller quantisation). "
                f"Adapter said: {str(e).strip().splitlines()[-1].strip()}"
            ) from None
        self._live[id(buf)] = nbytes
        weakref.finalize(buf, self._live.pop, id(buf), None)
        if uniform:
            self._uniform_bytes[id(buf)] = raw or b""
            weakref.finalize(buf, self._uniform_bytes.pop, id(buf), None)
        if raw:
            padded = raw + b"\0" * (-len(raw) % 4)
            self.device.queue.write_buffer(buf, 0, padded)
        return buf

    @property
    def live_bytes(self) -> int:
        """Bytes in this context's buffers that are still alive (WebGPU has no memory query to ask)."""
        return sum(self._live.values())

    def write(self, buf, data: np.ndarray | bytes, offset: int = 0) -> None:
        raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
        self.device.queue.write_buffer(buf, offset, raw + b"\0" * (-len(raw) % 4))
        if id(buf) in self._uniform_bytes and offset == 0:
            self._uniform_bytes[id(buf)] = raw

    def read(self, buf, dtype=np.float32, shape=None, offset: int = 0, nbytes: int | None = None) -> np.ndarray:
        mem = self.device.queue.read_buffer(buf, offset, nbytes)
        arr = np.frombuffer(mem, dtype=dtype).copy()
        if shape is not None:
            arr = arr[: int(np.prod(shape))].reshape(shape)
        return arr

    # -- dispatch ------------------------------------------------------------------------------
    def bind_group(self, pipeline, bindings: list):
        """bindings: buffers, or (buffer, offset, size) for a window into one, in binding order."""
        entries = []
        for i, b in enumerate(bindings):
            buf, offset, size = b if isinstance(b, tuple) else (b, 0, b.size)
            entries.append({"binding": i, "resource": {"buffer": buf, "offset": offset, "size": size}})
        group = self.device.create_bind_group(layout=pipeline.get_bind_group_layout(0), entries=entries)
        first = bindings[0][0] if isinstance(bindings[0], tuple) else bindings[0]
        names = [[e["resource"]["buffer"].label, e["resource"]["size"]] + ([e["resource"]["offset"]] if e["resource"]["offset"] else []) for e in entries]
        self._bind_meta[id(group)] = (id(first), names)
        weakref.finalize(group, self._bind_meta.pop, id(group), None)
        return group

    def describe_launch(self, pipeline, bind_group, grid) -> dict:
        """One launch as a trace names it (TracingPass): shader, entry, constants, kv_f16, grid, the
        Params uniform's words as last written (u32, floats by their bits) and the other bindings
        as [label, bytes(, offset)]; the twin of web/src/gpu.ts describeLaunch."""
        uniform, names = self._bind_meta[id(bind_group)]
        raw = self._uniform_bytes.get(uniform)
        params = None if raw is None else [int(w) for w in np.frombuffer(raw[: len(raw) // 4 * 4], np.uint32)]
        bindings = names[1:] if raw is not None else names
        return {**self._pipeline_meta[id(pipeline)], "grid": [int(g) for g in grid], "params": params, "bindings": bindings}

    def dispatch(self, cpass, pipeline, bind_group, grid: tuple[int, int, int]) -> None:
        """Record one launch into an open compute pass. The engine records a whole forward step into
        one pass: WebGPU runs a pass's dispatches in order, each seeing the writes of those before
        it, and on lavapipe a launch in an open pass costs about a third of one in its own pass."""
        limit = int(self.limits["max-compute-workgroups-per-dimension"])
        if any(g > limit for g in grid):
            raise GpuError(f"dispatch grid {grid} exceeds maxComputeWorkgroupsPerDimension {limit}")
        cpass.set_pipeline(pipeline)
        cpass.set_bind_group(0, bind_group)
        cpass.dispatch_workgroups(*grid)

    def encode(self, encoder, pipeline, bind_group, grid: tuple[int, int, int]) -> None:
        """Record one launch in a compute pass of its own on a command encoder."""
        cpass = encoder.begin_compute_pass()
        self.dispatch(cpass, pipeline, bind_group, grid)
        cpass.end()

    def run(self, name: str, bindings: list, grid: tuple[int, int, int], constants=None, entry: str = "main", kv_f16: bool = False) -> None:
        """One-shot: compile (cached), bind, dispatch, submit. Tests and setup use this; the engine encodes."""
        pipeline = self.pipeline(name, constants, entry, kv_f16)
        encoder = self.device.create_command_encoder()
        self.encode(encoder, pipeline, self.bind_group(pipeline, bindings), grid)
        self.device.queue.submit([encoder.finish()])


class TracingPass:
    """Stands in for a compute pass: records each launch as GpuContext.describe_launch names it and
    runs none (the engine's trace; the uniforms are still written, as a step would)."""

    def __init__(self, ctx: GpuContext):
        self.ctx, self.launches = ctx, []
        self._pipeline = self._group = None

    def set_pipeline(self, pipeline) -> None:
        self._pipeline = pipeline

    def set_bind_group(self, index, group) -> None:
        self._group = group

    def dispatch_workgroups(self, *grid) -> None:
        self.launches.append(self.ctx.describe_launch(self._pipeline, self._group, grid))


class OpenPass:
    """`with OpenPass(ctx, encoder) as cpass:` -- or, with encoder None, a new command encoder that
    is submitted when the block ends. Helpers that take "an encoder or an open pass" use it to
    record into whichever they were given."""

    def __init__(self, ctx: GpuContext, target):
        self.ctx, self.target = ctx, target
        self.encoder = self.cpass = None

    def __enter__(self):
        if is_pass(self.target):
            return self.target
        self.encoder = self.target if self.target is not None else self.ctx.device.create_command_encoder()
        self.cpass = self.encoder.begin_compute_pass()
        return self.cpass

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.cpass is None:
            return
        self.cpass.end()
        if self.target is None and exc_type is None:
            self.ctx.device.queue.submit([self.encoder.finish()])


def is_pass(target) -> bool:
    """Whether `target` is an open compute pass (rather than a command encoder or None)."""
    return hasattr(target, "dispatch_workgroups")


_CONTEXT: GpuContext | None = None


def get_context() -> GpuContext:
    """The process's one GpuContext, created on first use."""
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = GpuContext()
    return _CONTEXT
