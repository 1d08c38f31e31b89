"""Hugging Face checkpoint -> one GGUF file in llama.cpp's conventions.

The API mirrors MediaPipe's `mediapipe.tasks.python.genai.converter`: build a `ConversionConfig`,
call `convert_checkpoint(config)`. Architecture knowledge (config fields, WEIGHT_MAP, transforms)
lives in `wgllm.arch`; this module finds the checkpoint files, checks that they hold exactly the
tensors the architecture expects, and streams them tensor by tensor into the GGUF writer.

Quantisation is chosen per group: attention, feed-forward and embedding matrices get the type of
their *_quant_bits (32: F32, 16: F16, 8: Q8_0, 4: Q4_0); norms, biases and 1-D tensors stay F32.
"""

from __future__ import annotations

import glob
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from gguf import GGML_QUANT_SIZES, GGML_QUANT_VERSION, GGMLQuantizationType, GGUFWriter, Keys, LlamaFileType

from wgllm.arch import ARCHITECTURES, MODEL_TYPES, ArchSpec, Dims, Group, HFConfig, Rule, architecture_for, expand
from wgllm.errors import ConversionError
from wgllm.gguf_io import atomic_output
from wgllm.quant import quantize

log = logging.getLogger("wgllm.convert")

T = GGMLQuantizationType
_TYPE_FOR_BITS = {32: T.F32, 16: T.F16, 8: T.Q8_0, 4: T.Q4_0}
_FILE_TYPE = {T.F32: LlamaFileType.ALL_F32, T.F16: LlamaFileType.MOSTLY_F16, T.Q8_0: LlamaFileType.MOSTLY_Q8_0, T.Q4_0: LlamaFileType.MOSTLY_Q4_0}
_FORMATS = {"safetensors": (".safetensors",), "pytorch": (".bin", ".pt", ".pth")}
_INDEX_FILES = {"safetensors": "model.safetensors.index.json", "pytorch": "pytorch_model.bin.index.json"}
GGUF_BLOCK = 32  # Q8_0 and Q4_0 blocks hold 32 weights


@dataclass
class ConversionConfig:
    """What to convert and how (MediaPipe's ConversionConfig fields; `output_file` is the GGUF path).

    LoRA: lora_ckpt (PEFT adapter_model.safetensors, adapter_config.json beside it), lora_rank (must
    equal the adapter's r; optional) and lora_output_file. As in MediaPipe the base model and the
    adapter are converted in one run; with neither output_file nor output_dir, only the adapter is.

    input_ckpt: a checkpoint file, its folder, or a glob over shards ("model-*.safetensors").
    ckpt_format: "safetensors" or "pytorch". model_type: MediaPipe's name (GEMMA_2B, PHI_2, ...),
    GPT2 or LLAMA; inferred from config.json when None. *_quant_bits: 32, 16, 8 or 4.
    """

    input_ckpt: str
    ckpt_format: str
    model_type: str | None = None
    backend: str = "gpu"
    output_dir: str | None = None
    vocab_model_file: str | None = None
    output_file: str | None = None
    attention_quant_bits: int = 8
    feedforward_quant_bits: int = 8
    embedding_quant_bits: int = 8
    block_size: int = 32
    combine_file_only: bool = False
    lora_ckpt: str | None = None
    lora_rank: int | None = None
    lora_output_file: str | None = None
    output_tflite_file: str | None = None  # MediaPipe's spelling of output_file
    lora_output_tflite_file: str | None = None  # MediaPipe's spelling of lora_output_file

    def __post_init__(self) -> None:
        self.output_file = _alias(self.output_file, self.output_tflite_file, "output_file", "output_tflite_file")
        self.output_tflite_file = self.output_file
        self.lora_output_file = _alias(self.lora_output_file, self.lora_output_tflite_file, "lora_output_file", "lora_output_tflite_file")
        self.lora_output_tflite_file = self.lora_output_file
        if self.ckpt_format not in _FORMATS:
            raise ConversionError(f"ckpt_format {self.ckpt_format!r} is not supported; expected one of {', '.join(_FORMATS)}")
        if self.model_type is not None and self.model_type not in MODEL_TYPES:
            raise ConversionError(f"unknown model_type {self.model_type!r}; expected one of {', '.join(MODEL_TYPES)}")
        if self.backend not in ("gpu", "cpu"):
            raise ConversionError(f"backend {self.backend!r} is not supported; expected 'gpu' or 'cpu'")
        for name in ("attention_quant_bits", "feedforward_quant_bits", "embedding_quant_bits"):
            bits = getattr(self, name)
            if bits not in _TYPE_FOR_BITS:
                raise ConversionError(f"{name} = {bits!r} is not supported; expected one of {sorted(_TYPE_FOR_BITS)}")
        if self.block_size != GGUF_BLOCK:
            raise ConversionError(f"block_size = {self.block_size} is not supported: GGUF's Q8_0/Q4_0 blocks hold {GGUF_BLOCK} weights")
        if self.combine_file_only:
            raise ConversionError("combine_file_only = True is not supported: wgllm writes one GGUF file directly, there are no weight files to combine")
        if self.lora_ckpt is None:
            for name in ("lora_rank", "lora_output_file"):
                if getattr(self, name) is not None:
                    raise ConversionError(f"{name} was given without lora_ckpt (the PEFT adapter_model.safetensors to convert)")
        else:
            if self.lora_rank is not None and (not isinstance(self.lora_rank, int) or isinstance(self.lora_rank, bool) or self.lora_rank < 1):
                raise ConversionError(f"lora_rank = {self.lora_rank!r}, expected a positive integer")
            if self.lora_output_file is None:
                if self.output_dir is None:
                    raise ConversionError("lora_ckpt needs lora_output_file (or lora_output_tflite_file) or output_dir")
                self.lora_output_file = self.lora_output_tflite_file = str(Path(self.output_dir) / "lora.gguf")
        if self.output_file is None:
            if self.output_dir is not None:
                self.output_file = self.output_tflite_file = str(Path(self.output_dir) / "model.gguf")
            elif self.lora_ckpt is None:
                raise ConversionError("give output_file (or output_tflite_file) or output_dir")
            # else: a LoRA-only conversion (the base model's config.json is still read)

    def tensor_type(self, group: Group) -> GGMLQuantizationType:
        bits = {
            Group.ATTENTION: self.attention_quant_bits,
            Group.FEEDFORWARD: self.feedforward_quant_bits,
            Group.EMBEDDING: self.embedding_quant_bits,
            Group.FLOAT: 32,
        }[group]
        return _TYPE_FOR_BITS[bits]


def _alias(a: str | None, b: str | None, name_a: str, name_b: str) -> str | None:
    if a is not None and b is not None and a != b:
        raise ConversionError(f"{name_a} = {a!r} and {name_b} = {b!r} disagree; give one of them")
    return a if a is not None else b


# -- checkpoint files ------------------------------------------------------------------------------


def _checkpoint_files(input_ckpt: str, ckpt_format: str) -> tuple[list[Path], Path]:
    """The checkpoint files (sorted) and the folder holding config.json."""
    path = Path(input_ckpt)
    suffixes = _FORMATS[ckpt_format]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(suffixes) and not p.name.startswith("."))
        if ckpt_format == "pytorch":
            files = [p for p in files if p.name not in ("training_args.bin", "optimizer.pt", "scheduler.pt")]
        if not files:
            raise ConversionError(f"{path}: no {ckpt_format} checkpoint files (*{' / *'.join(suffixes)}) in this folder")
        return files, path
    if path.is_file():
        files = [path]
    elif glob.has_magic(input_ckpt):
        files = sorted(Path(p) for p in glob.glob(input_ckpt) if Path(p).is_file())
        if not files:
            raise ConversionError(f"the pattern {input_ckpt!r} matches no files")
    else:
        raise ConversionError(f"{input_ckpt}: no such checkpoint file or folder")
    for f in files:
        if not f.name.endswith(suffixes):
            raise ConversionError(f"{f}: not a {ckpt_format} checkpoint (expected a name ending in {' or '.join(suffixes)})")
    return files, files[0].parent


class _Checkpoint:
    """The tensors of one or more checkpoint shards, read one at a time as float32."""

    def __init__(self, files: list[Path], ckpt_format: str, spec: ArchSpec):
        self.files, self.format = files, ckpt_format
        self._open: dict[Path, Any] = {}
        self.where: dict[str, Path] = {}  # normalised key -> file
        self._raw_key: dict[str, str] = {}
        for f in files:
            for key in self._keys(f):
                name = spec.rename(key)
                if name in self.where:
                    raise ConversionError(f"tensor {key} appears in both {self.where[name]} and {f}")
                self.where[name] = f
                self._raw_key[name] = key

    def _handle(self, f: Path) -> Any:
        if f not in self._open:
            if self.format == "safetensors":
                from safetensors import safe_open

                try:
                    self._open[f] = safe_open(f, framework="pt" if _torch() else "numpy")
                except Exception as e:  # safetensors raises its own error types
                    raise ConversionError(f"{f}: not a readable safetensors file ({e})") from None
            else:
                torch = _torch()
                if torch is None:
                    raise ConversionError(f"{f}: reading pytorch checkpoints needs torch: pip install 'wgllm[dev]'")
                try:  # memory-mapped, so shards are not read whole; legacy (non-zip) files cannot be
                    self._open[f] = torch.load(f, weights_only=True, map_location="cpu", mmap=True)
                except RuntimeError:
                    try:
                        self._open[f] = torch.load(f, weights_only=True, map_location="cpu")
                    except Exception as e:  # torch raises many types for a bad file
                        raise ConversionError(f"{f}: not a readable pytorch checkpoint ({e})") from None
                except Exception as e:
                    raise ConversionError(f"{f}: not a readable pytorch checkpoint ({e})") from None
                if not isinstance(self._open[f], dict):
                    raise ConversionError(f"{f}: expected a state dict (name -> tensor), found {type(self._open[f]).__name__}")
        return self._open[f]

    def _keys(self, f: Path) -> list[str]:
        h = self._handle(f)
        return list(h.keys())

    def shape(self, name: str) -> tuple[int, ...]:
        h = self._handle(self.where[name])
        key = self._raw_key[name]
        if self.format == "safetensors":
            return tuple(h.get_slice(key).get_shape())
        return tuple(h[key].shape)

    def load(self, name: str) -> np.ndarray:
        f = self.where[name]
        h = self._handle(f)
        key = self._raw_key[name]
        try:
            t = h.get_tensor(key) if self.format == "safetensors" else h[key]
        except TypeError as e:  # numpy framework: bfloat16 has no numpy dtype
            raise ConversionError(f"{f}: tensor {key} cannot be read without torch ({e}): pip install 'wgllm[dev]'") from None
        if not isinstance(t, np.ndarray):
            t = t.detach().to(dtype=_torch().float32).numpy()
        return np.ascontiguousarray(t, dtype=np.float32)

    def close(self) -> None:
        self._open.clear()


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _expected_file(folder: Path, ckpt_format: str, name: str, files: list[Path]) -> str:
    index = folder / _INDEX_FILES[ckpt_format]
    if index.is_file():
        try:
            where = json.loads(index.read_text())["weight_map"].get(name)
        except (json.JSONDecodeError, KeyError, AttributeError):
            where = None
        if where:
            return str(folder / where)
    return ", ".join(str(f) for f in files)


# -- conversion --------------------------------------------------------------------------------------


def read_json_object(path: Path, where: str) -> dict:
    """The JSON object in `path` (config.json, adapter_config.json); `where` says where it belongs."""
    if not path.is_file():
        raise ConversionError(f"{path}: missing {path.name} ({where})")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConversionError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ConversionError(f"{path}: expected a JSON object")
    return data


def read_hf_config(folder: Path) -> HFConfig:
    path = folder / "config.json"
    return HFConfig(read_json_object(path, "it must sit beside the checkpoint files"), path)


def _vocab_path(config: ConversionConfig, folder: Path) -> Path:
    if config.vocab_model_file is not None:
        path = Path(config.vocab_model_file)
        if not path.exists():
            raise ConversionError(f"vocab_model_file {path}: no such file or folder")
        return path
    if (folder / "tokenizer.model").is_file():
        return folder / "tokenizer.model"
    if (folder / "tokenizer.json").is_file():
        return folder
    raise ConversionError(f"{folder}: no tokenizer.model or tokenizer.json beside the checkpoint; give vocab_model_file")


@dataclass(frozen=True)
class _Planned:
    hf_name: str | None  # None: made by the architecture (ArchSpec.extra_tensors), not read
    rule: Rule
    shape: tuple[int, ...]  # GGUF tensor in numpy order
    ggml_type: GGMLQuantizationType
    made: np.ndarray | None = None


def _plan(config: ConversionConfig, ckpt: _Checkpoint, spec: ArchSpec, cfg: HFConfig, d: Dims, folder: Path) -> list[_Planned]:
    rules = expand(spec.weight_map(cfg, d), d.n_layer)
    buffers = {k for k in ckpt.where if k not in rules and k.endswith(spec.buffers)}
    if buffers:
        log.info("skipped %d non-weight buffers (%s)", len(buffers), ", ".join(sorted(buffers)[:3]))
    extra = [k for k in ckpt.where if k not in rules and k not in buffers]
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise ConversionError(f"unexpected tensor {shown} in {ckpt.where[extra[0]]}: not part of a {spec.arch} model as {cfg.path} describes it")
    plan = []
    for hf_name, rule in rules.items():
        if hf_name not in ckpt.where:
            if rule.gguf is None:
                continue  # tied output layer, rightly absent
            where = _expected_file(folder, config.ckpt_format, hf_name, ckpt.files)
            raise ConversionError(f"missing tensor {hf_name} (expected in {where})")
        actual = ckpt.shape(hf_name)
        if actual != rule.shape:
            raise ConversionError(f"{ckpt.where[hf_name]}: tensor {hf_name} has shape {actual}, expected {rule.shape} from {cfg.path}")
        if rule.gguf is None:
            log.info("%s: skipped, the output layer is tied to the token embeddings", hf_name)
            continue
        shape = tuple(reversed(actual)) if rule.transpose else actual
        ggml_type = T.F32 if len(shape) == 1 else config.tensor_type(rule.group)
        if ggml_type in (T.Q8_0, T.Q4_0) and shape[-1] % GGUF_BLOCK:
            log.info("%s: rows of %d are not a multiple of %d, stored as F16 instead of %s", rule.gguf, shape[-1], GGUF_BLOCK, ggml_type.name)
            ggml_type = T.F16
        plan.append(_Planned(hf_name, rule, shape, ggml_type))
    for name, x in spec.extra_tensors(cfg, d).items():  # always F32, as llama.cpp writes them
        plan.append(_Planned(None, Rule(name, Group.FLOAT, x.shape), x.shape, T.F32, np.ascontiguousarray(x, np.float32)))
    return plan


def _n_bytes(shape: tuple[int, ...], ggml_type: GGMLQuantizationType) -> int:
    block, size = GGML_QUANT_SIZES[ggml_type]
    return int(np.prod(shape, dtype=np.int64)) // block * size


def _encode(x: np.ndarray, ggml_type: GGMLQuantizationType) -> np.ndarray:
    """The tensor's bytes as `ggml_type` (uint8, one row of bytes per row of x)."""
    return quantize(x, ggml_type)


def _file_type(plan: list[_Planned]) -> LlamaFileType:
    """The type that holds most of the matrix weights (llama.cpp's 'mostly X')."""
    counts: dict[GGMLQuantizationType, int] = {}
    for p in plan:
        if len(p.shape) > 1:
            counts[p.ggml_type] = counts.get(p.ggml_type, 0) + int(np.prod(p.shape))
    return _FILE_TYPE[max(counts, key=counts.__getitem__)] if counts else LlamaFileType.ALL_F32


def _put(writer: GGUFWriter, key: str, value: Any) -> None:
    if isinstance(value, bool):
        writer.add_bool(key, value)
    elif isinstance(value, int):
        writer.add_uint32(key, value)
    elif isinstance(value, float):
        writer.add_float32(key, value)
    elif isinstance(value, str):
        writer.add_string(key, value)
    else:
        raise TypeError(f"metadata {key}: unexpected value {value!r}")


def _tensors(plan: list[_Planned], ckpt: _Checkpoint, spec: ArchSpec, d: Dims) -> Iterator[tuple[_Planned, np.ndarray]]:
    for p in plan:
        if p.made is not None:
            yield p, _encode(p.made, p.ggml_type)
            continue
        x = ckpt.load(p.hf_name)
        if p.rule.transpose:
            x = np.ascontiguousarray(x.T)
        x = np.ascontiguousarray(spec.transform(p.rule.gguf, x, d), dtype=np.float32)
        assert x.shape == p.shape, (p.rule.gguf, x.shape, p.shape)
        yield p, _encode(x, p.ggml_type)


def convert_checkpoint(config: ConversionConfig) -> Path:
    """Convert the checkpoint `config` names into one GGUF file, and its LoRA adapter into another
    when lora_ckpt is given; returns the base model's path (the adapter's in a LoRA-only run)."""
    files, folder = _checkpoint_files(config.input_ckpt, config.ckpt_format)
    cfg = read_hf_config(folder)
    spec = architecture_for(cfg, config.model_type)
    d = spec.read_config(cfg)
    lora_plan = None
    if config.lora_ckpt is not None:  # checked before anything is written
        from wgllm.lora import plan_lora, write_lora

        lora_plan = plan_lora(config.lora_ckpt, config.lora_rank, spec, cfg, d)
        if config.output_file is None:
            return write_lora(lora_plan, Path(config.lora_output_file), folder.resolve().name)
    metadata = spec.metadata(cfg, d)
    ckpt = _Checkpoint(files, config.ckpt_format, spec)
    plan = _plan(config, ckpt, spec, cfg, d, folder)

    from wgllm.vocab import load_vocab, write_vocab

    vocab = load_vocab(_vocab_path(config, folder), architecture=spec.arch, vocab_size=d.n_vocab)
    out = Path(config.output_file)
    with atomic_output(out) as tmp:
        writer = GGUFWriter(tmp, spec.arch)
        try:
            writer.add_string(Keys.General.NAME, folder.resolve().name)
            writer.add_uint32(Keys.General.FILE_TYPE, int(_file_type(plan)))
            writer.add_uint32(Keys.General.QUANTIZATION_VERSION, GGML_QUANT_VERSION)
            for key, value in metadata.items():
                _put(writer, key, value)
            write_vocab(writer, vocab)
            for p in plan:
                writer.add_tensor_info(p.rule.gguf, p.shape, np.dtype(np.float32), _n_bytes(p.shape, p.ggml_type), raw_dtype=p.ggml_type)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            for p, data in _tensors(plan, ckpt, spec, d):
                log.debug("%s <- %s %s %s", p.rule.gguf, p.hf_name, p.shape, p.ggml_type.name)
                writer.write_tensor_data(data)
        finally:
            writer.close()
            ckpt.close()
    log.info("wrote %s (%s, %d tensors)", out, spec.arch, len(plan))
    if lora_plan is not None:
        write_lora(lora_plan, Path(config.lora_output_file), folder.resolve().name)
    return out


__all__ = ["ARCHITECTURES", "MODEL_TYPES", "ConversionConfig", "convert_checkpoint"]
