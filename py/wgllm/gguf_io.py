"""Read GGUF files (memory-mapped, validated) and write them atomically.

Constants (value types, tensor types, block sizes) come from the `gguf` package, llama.cpp's own.
The header parser is ours: it checks every length against the bytes that remain before it reads,
so a truncated or corrupted file ends in a ModelFormatError naming the file, never in a hang on a
forged array length, and it reads numeric arrays (a 262k-entry vocabulary's scores) in one go.
Writing goes through `gguf.GGUFWriter`, to a temporary name that is renamed once complete.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from wgllm.errors import ModelFormatError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32

_SCALAR_DTYPES: dict[int, np.dtype] = {
    GGUFValueType.UINT8: np.dtype("<u1"),
    GGUFValueType.INT8: np.dtype("<i1"),
    GGUFValueType.UINT16: np.dtype("<u2"),
    GGUFValueType.INT16: np.dtype("<i2"),
    GGUFValueType.UINT32: np.dtype("<u4"),
    GGUFValueType.INT32: np.dtype("<i4"),
    GGUFValueType.FLOAT32: np.dtype("<f4"),
    GGUFValueType.UINT64: np.dtype("<u8"),
    GGUFValueType.INT64: np.dtype("<i8"),
    GGUFValueType.FLOAT64: np.dtype("<f8"),
    GGUFValueType.BOOL: np.dtype("u1"),
}

# Tensor types the project reads (quantised matmuls and dequantisers exist for each).
SUPPORTED_TENSOR_TYPES = (
    GGMLQuantizationType.F32,
    GGMLQuantizationType.F16,
    GGMLQuantizationType.BF16,
    GGMLQuantizationType.Q8_0,
    GGMLQuantizationType.Q4_0,
    GGMLQuantizationType.Q4_1,
    GGMLQuantizationType.Q5_0,
    GGMLQuantizationType.Q4_K,
    GGMLQuantizationType.Q6_K,
    GGMLQuantizationType.Q5_1,
    GGMLQuantizationType.IQ4_NL,
    GGMLQuantizationType.Q5_K,
    GGMLQuantizationType.IQ4_XS,
    GGMLQuantizationType.Q3_K,
    GGMLQuantizationType.Q2_K,
)
_SUPPORTED_NAMES = ", ".join(t.name for t in SUPPORTED_TENSOR_TYPES)


@dataclass(frozen=True)
class TensorInfo:
    name: str
    ggml_type: GGMLQuantizationType
    shape: tuple[int, ...]  # numpy order: the last axis is the contiguous one (ggml's ne[0])
    offset: int  # absolute byte offset in the file
    n_bytes: int
    raw: np.ndarray  # uint8 view of the file's bytes, memory-mapped

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


class _Cursor:
    """Bounds-checked little-endian reads over a byte buffer."""

    def __init__(self, buf: np.ndarray, path: Path):
        self.buf, self.pos, self.path = buf, 0, path

    def fail(self, what: str) -> ModelFormatError:
        return ModelFormatError(f"{self.path}: not a valid GGUF file: {what} (at byte {self.pos})")

    def take(self, n: int, what: str) -> np.ndarray:
        if n < 0 or self.pos + n > len(self.buf):
            raise self.fail(f"{what} needs {n} bytes but the file ends after {len(self.buf) - self.pos}")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def scalar(self, dtype: np.dtype, what: str) -> Any:
        return self.take(dtype.itemsize, what).view(dtype)[0].item()

    def u32(self, what: str) -> int:
        return self.scalar(_SCALAR_DTYPES[GGUFValueType.UINT32], what)

    def u64(self, what: str) -> int:
        return self.scalar(_SCALAR_DTYPES[GGUFValueType.UINT64], what)

    def string(self, what: str) -> str:
        n = self.u64(f"length of {what}")
        raw = self.take(n, what)
        try:
            return raw.tobytes().decode("utf-8")
        except UnicodeDecodeError as e:
            raise self.fail(f"{what} is not UTF-8 ({e})") from None

    def value(self, vtype: int, key: str) -> Any:
        if vtype in _SCALAR_DTYPES:
            v = self.scalar(_SCALAR_DTYPES[vtype], f"value of {key}")
            return bool(v) if vtype == GGUFValueType.BOOL else v
        if vtype == GGUFValueType.STRING:
            return self.string(f"value of {key}")
        if vtype == GGUFValueType.ARRAY:
            itype = self.u32(f"element type of {key}")
            count = self.u64(f"length of {key}")
            if itype in _SCALAR_DTYPES:
                dt = _SCALAR_DTYPES[itype]
                arr = np.array(self.take(count * dt.itemsize, f"array {key}").view(dt))
                return arr.astype(bool) if itype == GGUFValueType.BOOL else arr
            if itype == GGUFValueType.STRING:
                # every string costs at least its 8-byte length: refuse counts the file cannot hold
                if count * 8 > len(self.buf) - self.pos:
                    raise self.fail(f"array {key} claims {count} strings, more than the file can hold")
                return [self.string(f"element {i} of {key}") for i in range(count)]
            raise self.fail(f"array {key} has unsupported element type {itype}")
        raise self.fail(f"key {key} has unknown value type {vtype}")


class GGUFFile:
    """A GGUF file opened read-only: metadata as Python values, tensors as memory-mapped bytes."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelFormatError(f"{self.path}: no such model file")
        try:
            self._buf = np.memmap(self.path, dtype=np.uint8, mode="r")
        except (OSError, ValueError) as e:  # ValueError: an empty file cannot be mapped
            raise ModelFormatError(f"{self.path}: not a valid GGUF file: cannot map it ({e})") from None
        cur = _Cursor(self._buf, self.path)
        if cur.take(4, "magic").tobytes() != GGUF_MAGIC:
            raise ModelFormatError(f"{self.path}: not a GGUF file (expected the magic bytes 'GGUF' at the start)")
        self.version = cur.u32("version")
        if self.version not in SUPPORTED_VERSIONS:
            if int.from_bytes(self.version.to_bytes(4, "little"), "big") in SUPPORTED_VERSIONS:
                raise cur.fail("it is a big-endian GGUF file; wgllm reads little-endian ones")
            raise cur.fail(f"version {self.version} is not one of {SUPPORTED_VERSIONS}")
        n_tensors = cur.u64("tensor count")
        n_kv = cur.u64("metadata count")
        if n_kv * 12 > len(self._buf) or n_tensors * 24 > len(self._buf):
            raise cur.fail(f"header claims {n_kv} keys and {n_tensors} tensors, more than the file can hold")
        self.metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = cur.string("metadata key")
            if key in self.metadata:
                raise cur.fail(f"metadata key {key} appears twice")
            vtype = cur.u32(f"value type of {key}")
            self.metadata[key] = cur.value(vtype, key)
        infos = []
        for _ in range(n_tensors):
            name = cur.string("tensor name")
            n_dims = cur.u32(f"dimension count of tensor {name}")
            if n_dims > 4:
                raise cur.fail(f"tensor {name} has {n_dims} dimensions, at most 4 expected")
            dims = [cur.u64(f"dimension of tensor {name}") for _ in range(n_dims)]
            raw_type = cur.u32(f"type of tensor {name}")
            rel_offset = cur.u64(f"offset of tensor {name}")
            infos.append((name, dims, raw_type, rel_offset))
        alignment = self.metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise cur.fail(f"general.alignment = {alignment!r}, expected a power of two")
        data_start = -(-cur.pos // alignment) * alignment
        self.tensors: dict[str, TensorInfo] = {}
        for name, dims, raw_type, rel_offset in infos:
            self.tensors[name] = self._tensor_info(name, dims, raw_type, rel_offset, data_start, alignment)
        # Tensors must not overlap (llama.cpp packs them back to back; the browser reads them in one pass).
        by_offset = sorted(self.tensors.values(), key=lambda t: t.offset)
        for prev, t in zip(by_offset, by_offset[1:]):
            if t.offset < prev.offset + prev.n_bytes:
                raise ModelFormatError(
                    f"{self.path}: tensor {t.name} starts at byte {t.offset}, inside tensor {prev.name} "
                    f"(bytes {prev.offset}..{prev.offset + prev.n_bytes})"
                )

    def _tensor_info(self, name: str, dims: list[int], raw_type: int, rel_offset: int, data_start: int, alignment: int) -> TensorInfo:
        where = f"{self.path}: tensor {name}"
        if name in self.tensors:
            raise ModelFormatError(f"{where} appears twice")
        try:
            ggml_type = GGMLQuantizationType(raw_type)
        except ValueError:
            raise ModelFormatError(f"{where} has unknown tensor type {raw_type}; supported: {_SUPPORTED_NAMES}") from None
        if ggml_type not in SUPPORTED_TENSOR_TYPES:
            raise ModelFormatError(f"{where} has tensor type {ggml_type.name}, which wgllm does not read; supported: {_SUPPORTED_NAMES}")
        block, type_size = GGML_QUANT_SIZES[ggml_type]
        if any(d <= 0 for d in dims) or not dims:
            raise ModelFormatError(f"{where} has shape {dims}, expected positive dimensions")
        if dims[0] % block:
            raise ModelFormatError(f"{where} has a row of {dims[0]} elements, not a multiple of the {ggml_type.name} block of {block}")
        if rel_offset % alignment:
            raise ModelFormatError(f"{where} has data offset {rel_offset}, not a multiple of general.alignment {alignment}")
        offset = data_start + rel_offset
        n_elements = int(np.prod(dims, dtype=object))
        n_bytes = n_elements // block * type_size
        if offset + n_bytes > len(self._buf):
            raise ModelFormatError(
                f"{where} needs bytes {offset}..{offset + n_bytes} but the file has {len(self._buf)}: the file is truncated"
            )
        raw = self._buf[offset : offset + n_bytes]
        return TensorInfo(name, ggml_type, tuple(reversed(dims)), offset, n_bytes, raw)

    # -- metadata ------------------------------------------------------------------------------
    @property
    def architecture(self) -> str:
        return self.require("general.architecture", str)

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    def require(self, key: str, kind: type | tuple[type, ...] | None = None) -> Any:
        if key not in self.metadata:
            raise ModelFormatError(f"{self.path}: missing metadata key {key}")
        value = self.metadata[key]
        if kind is not None and not isinstance(value, kind):
            raise ModelFormatError(f"{self.path}: metadata key {key} is {type(value).__name__} {value!r}, expected {kind}")
        return value

    # -- tensors -------------------------------------------------------------------------------
    def tensor(self, name: str, shape: tuple[int, ...] | None = None) -> TensorInfo:
        """The tensor `name`, checked against `shape` (numpy order) when one is given."""
        if name not in self.tensors:
            raise ModelFormatError(f"{self.path}: missing tensor {name}")
        t = self.tensors[name]
        if shape is not None and tuple(t.shape) != tuple(shape):
            raise ModelFormatError(f"{self.path}: tensor {name} has shape {t.shape}, expected {tuple(shape)}")
        return t

    def dequantize(self, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """The tensor as float32 in numpy shape."""
        from wgllm.quant import dequantize

        t = self.tensor(name, shape)
        return dequantize(t.raw, t.ggml_type, t.shape)

    def close(self) -> None:
        mm = getattr(self._buf, "_mmap", None)
        self.tensors.clear()
        self._buf = np.empty(0, np.uint8)
        if mm is not None:
            try:
                mm.close()
            except BufferError:  # views still alive elsewhere; the map closes with them
                pass


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` only if the block succeeds.

    Whatever fails (an exception, a full disk, a killed process), `path` keeps its old content or
    stays absent. The temporary name is `.<name>.<random>.partial`: hidden, never `path` itself,
    and removed on any exception (a killed process leaves it behind; delete it by hand). Its data
    reach the disk (fsync) before the rename, so a crash cannot leave `path` naming an empty file.
    An OSError of the block is raised again naming `path` (same errno and type)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; the result gets a normal file's mode
    try:
        yield tmp_path
        fsync_path(tmp_path)
        os.replace(tmp_path, path)
    except OSError as e:
        again = not_written(path, e)
        if again is e:
            raise
        raise again from e
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    if os.name == "posix":
        fsync_path(path.parent)  # the rename itself


def fsync_path(path: Path) -> None:
    """Flush a file's data (or, on POSIX, a folder's entries) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def not_written(path: Path, e: OSError) -> OSError:
    """`e` restated to say `path` was not written, of the same type; `e` itself when it cannot be."""
    detail = str(e).removeprefix(f"[Errno {e.errno}] ")
    text = f"{path} was not written: {detail}"
    again = OSError(e.errno, text) if e.errno is not None else OSError(text)
    return e if type(again) is not type(e) or str(path) in detail else again


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
