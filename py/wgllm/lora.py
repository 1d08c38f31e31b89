"""LoRA adapters in llama.cpp's GGUF adapter format: PEFT -> GGUF conversion, loading, checks.

File format (llama.cpp's convert_lora_to_gguf.py / llama-adapter.cpp):
  general.architecture   the base model's architecture
  general.type           "adapter";  adapter.type "lora";  adapter.lora.alpha (float32)
  general.base_model.count = 1, general.base_model.0.name: the base model's name
  <base tensor>.lora_a   numpy (r, n_in)   (ggml ne = [n_in, r]), F32 or F16
  <base tensor>.lora_b   numpy (n_out, r)  (ggml ne = [r, n_out])
where <base tensor> is the adapted weight's full name, e.g. blk.0.attn_q.weight.lora_a.

A projection y = W x becomes y = W x + scale * B (A x), scale = alpha / r (1 when alpha is 0, as
in llama.cpp). The base weight is never merged: several adapters can serve one resident model.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wgllm.convert import read_json_object
from wgllm.errors import ConversionError, ModelFormatError
from wgllm.gguf_io import GGUFFile

log = logging.getLogger("wgllm.lora")

# Architectures whose attention projections the converter adapts, and their PEFT module names
# (MediaPipe's LoRA targets: q, k, v and the output projection, `dense` in Phi-2, fused qkv_proj in Phi-3).
LORA_TARGETS: dict[str, tuple[str, ...]] = {
    "gemma": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "gemma2": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "gemma3": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "llama": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "phi2": ("q_proj", "k_proj", "v_proj", "dense"),
    "qwen2": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "qwen3": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "phi3": ("qkv_proj", "o_proj"),
    "smollm3": ("q_proj", "k_proj", "v_proj", "o_proj"),  # Phi-3's fused Q/K/V: one adapter on attn_qkv, as llama.cpp applies it
}
_PEFT_PREFIX = "base_model.model."


@dataclass
class LoraAdapter:
    """An adapter file's factors as float32, by the base tensor they adapt."""

    path: Path
    arch: str
    alpha: float
    rank: int
    factors: dict[str, tuple[np.ndarray, np.ndarray]]  # base name -> (A (r, n_in), B (n_out, r))
    base_model: str | None = None

    @property
    def scale(self) -> float:
        return self.alpha / self.rank if self.alpha else 1.0


def load_lora(path: str | os.PathLike[str]) -> LoraAdapter:
    """Read and check a GGUF LoRA adapter (its own consistency; `check_lora` checks it against a model)."""
    g = GGUFFile(path)
    where = g.path
    if g.get("general.type") != "adapter" or g.get("adapter.type") != "lora":
        raise ModelFormatError(
            f"{where}: not a LoRA adapter (general.type = {g.get('general.type')!r}, adapter.type = {g.get('adapter.type')!r}; "
            "expected 'adapter' and 'lora')"
        )
    alpha = g.get("adapter.lora.alpha", 0.0)
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not np.isfinite(alpha):
        raise ModelFormatError(f"{where}: adapter.lora.alpha is {alpha!r}, expected a number")
    halves: dict[str, dict[str, object]] = {}
    for name, info in g.tensors.items():
        for suffix in (".lora_a", ".lora_b"):
            if name.endswith(suffix):
                halves.setdefault(name[: -len(suffix)], {})[suffix] = info
                break
        else:
            raise ModelFormatError(f"{where}: tensor {name} is not a LoRA factor (expected names ending in .lora_a or .lora_b)")
    if not halves:
        raise ModelFormatError(f"{where}: the adapter holds no tensors")
    factors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    rank = None
    for base, pair in halves.items():
        for suffix in (".lora_a", ".lora_b"):
            if suffix not in pair:
                raise ModelFormatError(f"{where}: tensor {base}{suffix} is missing (its pair is present)")
        a = g.dequantize(base + ".lora_a")
        b = g.dequantize(base + ".lora_b")
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise ModelFormatError(
                f"{where}: {base}.lora_a has shape {a.shape} and {base}.lora_b {b.shape}; expected (r, n_in) and (n_out, r)"
            )
        if rank is not None and a.shape[0] != rank:
            raise ModelFormatError(f"{where}: {base}.lora_a has rank {a.shape[0]}, other tensors rank {rank}; wgllm needs one rank per adapter")
        rank = a.shape[0]
        factors[base] = (np.array(a, np.float32), np.array(b, np.float32))  # copies: the file is closed below
    base_model = g.get("general.base_model.0.name")
    adapter = LoraAdapter(g.path, g.architecture, float(alpha), int(rank), factors, base_model if isinstance(base_model, str) else None)
    g.close()
    return adapter


def check_rank(adapter: "LoraAdapter", lora_ranks: list[int], owner: str) -> None:
    """The adapter's rank must be one declared at creation (MediaPipe's lora_ranks)."""
    if adapter.rank not in lora_ranks:
        declared = ", ".join(map(str, lora_ranks)) if lora_ranks else "none"
        raise ValueError(
            f"{adapter.path}: LoRA rank {adapter.rank} was not declared when this {owner} was created "
            f"(lora_ranks: {declared}); create it with lora_ranks including {adapter.rank}"
        )


def check_lora(adapter: LoraAdapter, model) -> None:
    """Refuse an adapter made for another base model: architecture, missing or differently shaped weights."""
    where = adapter.path
    if adapter.arch != model.config.arch:
        raise ModelFormatError(
            f"{where}: the LoRA adapter is for a {adapter.arch} model"
            + (f" ({adapter.base_model})" if adapter.base_model else "")
            + f", but {model.path} is a {model.config.arch} model"
        )
    for base, (a, b) in adapter.factors.items():
        if not model.has(base):
            n_layer = model.config.n_layer
            raise ModelFormatError(
                f"{where}: tensors {base}.lora_a/.lora_b adapt {base}, which {model.path} does not have "
                f"(a {model.config.arch} model with {n_layer} layers, blk.0 to blk.{n_layer - 1})"
            )
        if not base.startswith("blk."):
            raise ModelFormatError(f"{where}: tensor {base}.lora_a adapts {base}; wgllm applies LoRA to the layers' projections only")
        shape = model.gguf.tensor(base).shape
        if len(shape) != 2 or a.shape[1] != shape[1] or b.shape[0] != shape[0]:
            raise ModelFormatError(
                f"{where}: tensor {base}.lora_a has shape {a.shape} and {base}.lora_b {b.shape}, but {model.path}'s "
                f"{base} has shape {tuple(shape)}: expected (r, {shape[-1]}) and ({shape[0]}, r); the adapter is for another base model"
            )


# -- conversion: PEFT adapter_model.safetensors -> GGUF ---------------------------------------------


def _read_adapter_config(ckpt: Path) -> dict:
    path = ckpt.parent / "adapter_config.json"
    data = read_json_object(path, f"it must sit beside the LoRA checkpoint {ckpt.name}; lora_alpha is read from it")
    data["_path"] = path
    return data


def _peft_tensors(ckpt: Path) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    try:
        with safe_open(ckpt, framework="pt") as f:
            return {k: f.get_tensor(k).float().numpy() for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types
        raise ConversionError(f"{ckpt}: not a readable safetensors LoRA checkpoint ({e})") from None


@dataclass
class LoraPlan:
    """A checked PEFT adapter, ready to write: GGUF factors by base tensor name."""

    source: Path
    arch: str
    alpha: float
    rank: int
    factors: list[tuple[str, np.ndarray, np.ndarray]]  # (base name, A (r, n_in), B (n_out, r))


def plan_lora(lora_ckpt: str, lora_rank: int | None, spec, cfg, d) -> LoraPlan:
    """Read and check the PEFT adapter `lora_ckpt` against the base model (spec, config, dims)."""
    from wgllm.arch import expand

    ckpt = Path(lora_ckpt)
    if not ckpt.is_file():
        raise ConversionError(f"lora_ckpt {ckpt}: no such file (expected a PEFT adapter_model.safetensors)")
    if not ckpt.name.endswith(".safetensors"):
        raise ConversionError(f"lora_ckpt {ckpt}: expected a PEFT adapter in safetensors format (adapter_model.safetensors)")
    targets = LORA_TARGETS.get(spec.arch)
    if targets is None:
        raise ConversionError(f"LoRA conversion is not supported for the {spec.arch} architecture; supported: {', '.join(LORA_TARGETS)}")
    acfg = _read_adapter_config(ckpt)
    cpath = acfg["_path"]
    for key, allowed in (("use_dora", (False, None)), ("use_rslora", (False, None)), ("fan_in_fan_out", (False, None)), ("bias", ("none", None))):
        if acfg.get(key) not in allowed:
            raise ConversionError(f"{cpath}: {key} = {acfg.get(key)!r} is not supported; wgllm converts plain LoRA ({key} = {allowed[0]!r})")
    for key in ("rank_pattern", "alpha_pattern"):
        if acfg.get(key):
            raise ConversionError(f"{cpath}: {key} = {acfg[key]!r} is not supported; wgllm needs one rank and alpha for every module")
    if acfg.get("modules_to_save"):
        raise ConversionError(f"{cpath}: modules_to_save = {acfg['modules_to_save']!r} is not supported; wgllm converts LoRA factors only")
    r_cfg, alpha = acfg.get("r"), acfg.get("lora_alpha")
    if not isinstance(r_cfg, int) or isinstance(r_cfg, bool) or r_cfg < 1:
        raise ConversionError(f"{cpath}: r = {r_cfg!r}, expected a positive integer")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool):
        raise ConversionError(f"{cpath}: lora_alpha = {alpha!r}, expected a number")
    if lora_rank is not None and lora_rank != r_cfg:
        raise ConversionError(f"lora_rank = {lora_rank} does not match the adapter's rank r = {r_cfg} in {cpath}")

    rules = expand(spec.weight_map(cfg, d), d.n_layer)
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, value in _peft_tensors(ckpt).items():
        for half in ("lora_A", "lora_B"):
            suffix = f".{half}.weight"
            if key.endswith(suffix):
                module = key[: -len(suffix)].removeprefix(_PEFT_PREFIX)
                pairs.setdefault(module, {})[half] = value
                break
        else:
            raise ConversionError(f"{ckpt}: tensor {key} is not a LoRA factor (expected <module>.lora_A.weight / .lora_B.weight)")
    if not pairs:
        raise ConversionError(f"{ckpt}: no LoRA factors in this file")
    factors = []
    for module, halves in pairs.items():
        leaf = module.rsplit(".", 1)[-1]
        rule = rules.get(module + ".weight")
        if leaf not in targets or rule is None or rule.gguf is None:
            raise ConversionError(
                f"{ckpt}: LoRA target module {module} is not supported for {spec.arch}; "
                f"wgllm adapts the attention projections {', '.join(targets)} of each layer"
            )
        for half in ("lora_A", "lora_B"):
            if half not in halves:
                raise ConversionError(f"{ckpt}: tensor {_PEFT_PREFIX}{module}.{half}.weight is missing (its pair is present)")
        a, b = halves["lora_A"], halves["lora_B"]
        n_out, n_in = rule.shape
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != n_in or b.shape[0] != n_out or a.shape[0] != b.shape[1]:
            raise ConversionError(
                f"{ckpt}: {module} has lora_A {tuple(a.shape)} and lora_B {tuple(b.shape)}; the base weight {module}.weight is "
                f"({n_out}, {n_in}) in {cfg.path}, so expected (r, {n_in}) and ({n_out}, r)"
            )
        if a.shape[0] != r_cfg:
            raise ConversionError(f"{ckpt}: {module}.lora_A has rank {a.shape[0]}, but {cpath} says r = {r_cfg}")
        # B's rows are the output rows: whatever reorders the base weight's rows reorders them too
        # (llama's Q/K rope permutation); A sees the inputs, which no transform touches.
        b = np.ascontiguousarray(spec.transform(rule.gguf, np.ascontiguousarray(b, np.float32), d), np.float32)
        factors.append((rule.gguf, np.ascontiguousarray(a, np.float32), b))
    factors.sort(key=lambda f: _layer_order(f[0]))
    return LoraPlan(ckpt, spec.arch, float(alpha), r_cfg, factors)


def write_lora(plan: LoraPlan, out: Path, base_name: str) -> Path:
    """The planned adapter as a GGUF file (F32 factors), written atomically."""
    from gguf import GGUFWriter

    from wgllm.gguf_io import atomic_output

    with atomic_output(out) as tmp:
        writer = GGUFWriter(tmp, plan.arch)
        try:
            writer.add_type("adapter")
            writer.add_string("adapter.type", "lora")
            writer.add_float32("adapter.lora.alpha", plan.alpha)
            writer.add_string("general.name", plan.source.resolve().parent.name)
            writer.add_base_model_count(1)
            writer.add_base_model_name(0, base_name)
            for name, a, b in plan.factors:
                writer.add_tensor(name + ".lora_a", a)
                writer.add_tensor(name + ".lora_b", b)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        finally:
            writer.close()
    log.info("wrote %s (LoRA rank %d, alpha %g, %d adapted weights)", out, plan.rank, plan.alpha, len(plan.factors))
    return Path(out)


def _layer_order(name: str) -> tuple:
    parts = name.split(".")
    return (int(parts[1]), name) if parts[0] == "blk" and parts[1].isdigit() else (-1, name)


__all__ = ["LORA_TARGETS", "LoraAdapter", "LoraPlan", "check_lora", "load_lora", "plan_lora", "write_lora"]
