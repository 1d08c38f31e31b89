"""GGUF fixtures for the browser tests, and what wgllm's Python reader makes of them.

    python tests/browser/gguf_fixtures.py OUT_DIR

Writes small GGUF files (every metadata value type, every supported tensor type, three layouts)
with llama.cpp's `gguf` package, corrupt variants, and links to the real SmolLM2 (Q4_1) and Gemma-3 270M (Q4_K_M) models, then
summary.json: for each file the metadata, tensor table and per-tensor CRC-32 as read by
wgllm.gguf_io.GGUFFile (or the ModelFormatError it raises). The TypeScript reader must agree.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType, GGUFWriter

from wgllm.errors import ModelFormatError
from wgllm.gguf_io import SUPPORTED_TENSOR_TYPES, GGUFFile

REPO = Path(__file__).resolve().parents[2]
T, V = GGMLQuantizationType, GGUFValueType


def encode(value) -> dict:
    """A metadata value as JSON that keeps its kind exactly (64-bit integers as strings)."""
    if isinstance(value, bool):
        return {"t": "bool", "v": value}
    if isinstance(value, int):
        return {"t": "int", "v": str(value)}
    if isinstance(value, float):
        return {"t": "float", "v": value}
    if isinstance(value, str):
        return {"t": "str", "v": value}
    if isinstance(value, list):
        return {"t": "strings", "v": value}
    if isinstance(value, np.ndarray):
        items = value.tolist()
        if value.dtype.kind in "iu":
            items = [str(x) for x in items]
        return {"t": "array", "dtype": value.dtype.str, "v": items}
    raise TypeError(f"unexpected metadata value {value!r}")


def summarize(path: Path) -> dict:
    try:
        f = GGUFFile(path)
    except ModelFormatError as e:
        return {"size": path.stat().st_size, "error": str(e)}
    out = {
        "size": path.stat().st_size,
        "version": f.version,
        "metadata": {k: encode(v) for k, v in f.metadata.items()},
        "tensors": [
            {
                "name": t.name,
                "type": int(t.ggml_type),
                "type_name": t.ggml_type.name,
                "shape": list(t.shape),
                "offset": t.offset,
                "n_bytes": t.n_bytes,
                "crc32": zlib.crc32(t.raw),
            }
            for t in f.tensors.values()
        ],
    }
    f.close()
    return out


def write_tiny(path: Path, alignment: int | None) -> None:
    rng = np.random.default_rng(7)
    w = GGUFWriter(path, "llama")
    if alignment is not None:
        w.add_custom_alignment(alignment)
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 65000)
    w.add_int16("test.i16", -32000)
    w.add_uint32("test.u32", 4_000_000_000)
    w.add_int32("test.i32", -2_000_000_000)
    w.add_float32("test.f32", 0.1)
    w.add_uint64("test.u64_small", 12345)
    w.add_uint64("test.u64_big", 2**64 - 1)
    w.add_int64("test.i64", -(2**62) - 3)
    w.add_float64("test.f64", -1.0 / 3.0)
    w.add_bool("test.bool_true", True)
    w.add_bool("test.bool_false", False)
    w.add_string("test.str", "héllo ▁wörld 🙂")
    w.add_string("test.empty", "")
    w.add_array("test.strings", ["a", "", "▁the", "🙂", "\ufeff", "\ufeff//", "<|im_start|>"])
    for name, vtype, values in [
        ("u8", V.UINT8, [0, 1, 255]),
        ("i8", V.INT8, [-128, 0, 127]),
        ("u16", V.UINT16, [0, 65535]),
        ("i16", V.INT16, [-32768, 32767]),
        ("u32", V.UINT32, [0, 4294967295, 7]),
        ("i32", V.INT32, [-(2**31), 2**31 - 1]),
        ("f32", V.FLOAT32, [0.5, -1e-30, 3.4e38, 1.0 / 3.0]),
        ("u64", V.UINT64, [0, 2**53 + 1, 2**64 - 1]),
        ("i64", V.INT64, [-(2**63), 2**63 - 1, -5]),
        ("f64", V.FLOAT64, [1e-300, -2.5]),
        ("bool", V.BOOL, [True, False, True]),
    ]:
        w.add_key_value(f"test.array_{name}", values, V.ARRAY, vtype)
    # one tensor of each supported type, rows of one or a few blocks, random bytes as data
    for ggml_type in SUPPORTED_TENSOR_TYPES:
        block, type_size = GGML_QUANT_SIZES[ggml_type]
        rows, row = 3, block * (2 if block > 1 else 37)
        raw = rng.integers(0, 256, size=(rows, row // block * type_size), dtype=np.uint8)
        if ggml_type == T.F32:
            w.add_tensor("t.f32", rng.standard_normal((rows, row)).astype(np.float32))
        else:
            w.add_tensor(f"t.{ggml_type.name.lower()}", raw, raw_dtype=ggml_type)
    w.add_tensor("t.vector_f32", rng.standard_normal(5).astype(np.float32))
    w.add_tensor("t.4d_f16", rng.standard_normal((2, 3, 1, 4)).astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def kv(key: str, vtype: int, payload: bytes) -> bytes:
    k = key.encode()
    return struct.pack("<Q", len(k)) + k + struct.pack("<I", vtype) + payload


def raw_gguf(kvs: list[bytes], tensors: list[tuple[str, list[int], int, int]], data: bytes, version: int = 3) -> bytes:
    """A GGUF file built byte by byte (for layouts GGUFWriter refuses to write)."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs)) + b"".join(kvs)
    for name, dims, ggml_type, offset in tensors:
        n = name.encode()
        out += struct.pack("<Q", len(n)) + n + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
        out += struct.pack("<IQ", ggml_type, offset)
    return out + b"\0" * (-len(out) % 32) + data


def write_fixtures(out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    tiny = out / "tiny.gguf"
    write_tiny(tiny, None)
    write_tiny(out / "tiny_align64.gguf", 64)
    good = tiny.read_bytes()
    infos = GGUFFile(tiny).tensors.values()
    data_start, data_end = min(t.offset for t in infos), max(t.offset + t.n_bytes for t in infos)
    f32 = struct.pack("<f", 1.5)
    files: dict[str, tuple[bytes, str | None]] = {
        # name -> (bytes, a word both readers' messages must contain; None: a valid file)
        "tiny_v2.gguf": (good[:4] + struct.pack("<I", 2) + good[8:], None),
        # empty arrays (GGUFWriter refuses them) and tensor data in another order than the header's
        "hand_built.gguf": (
            raw_gguf(
                [kv("test.no_ints", V.ARRAY, struct.pack("<IQ", V.INT32, 0)), kv("test.no_strings", V.ARRAY, struct.pack("<IQ", V.STRING, 0))],
                [("second", [3], T.F32, 32), ("first", [2], T.F32, 0)],
                struct.pack("<2f", 1, 2) + bytes(24) + struct.pack("<3f", 3, 4, 5),
            ),
            None,
        ),
        "bad_magic.gguf": (b"GGUX" + good[4:], "GGUF"),
        "bad_version.gguf": (good[:4] + struct.pack("<I", 4) + good[8:], "version 4"),
        "truncated_header.gguf": (good[: data_start // 2], "not a valid GGUF file"),
        "truncated_data.gguf": (good[: data_end - 7], "truncated"),
        "empty.gguf": (b"", "GGUF"),
        "forged_string_array.gguf": (
            raw_gguf([kv("forged.strings", V.ARRAY, struct.pack("<IQ", V.STRING, 2**40))], [], b""),
            "forged.strings",
        ),
        "forged_numeric_array.gguf": (
            raw_gguf([kv("forged.u32s", V.ARRAY, struct.pack("<IQ", V.UINT32, 2**61))], [], b""),
            "forged.u32s",
        ),
        "forged_string_length.gguf": (raw_gguf([kv("forged.str", V.STRING, struct.pack("<Q", 2**62))], [], b""), "forged.str"),
        "unknown_value_type.gguf": (raw_gguf([kv("odd.key", 13, b"")], [], b""), "odd.key"),
        "not_utf8.gguf": (raw_gguf([kv("bad.utf8", V.STRING, struct.pack("<Q", 2) + b"\xff\xfe")], [], b""), "bad.utf8"),
        "unsupported_tensor_type.gguf": (raw_gguf([], [("blk.0.iq2", [256], T.IQ2_XXS, 0)], bytes(66)), "blk.0.iq2"),
        "unknown_tensor_type.gguf": (raw_gguf([], [("blk.0.odd", [8], 99, 0)], bytes(32)), "blk.0.odd"),
        "partial_block.gguf": (raw_gguf([], [("blk.0.q8", [33], T.Q8_0, 0)], bytes(68)), "blk.0.q8"),
        "too_many_dims.gguf": (raw_gguf([], [("blk.0.5d", [1, 1, 1, 1, 1], T.F32, 0)], f32), "blk.0.5d"),
        "duplicate_tensor.gguf": (raw_gguf([], [("dup", [1], T.F32, 0), ("dup", [1], T.F32, 32)], f32 + bytes(28) + f32), "dup"),
        "bad_alignment.gguf": (raw_gguf([kv("general.alignment", V.UINT32, struct.pack("<I", 24))], [], b""), "general.alignment"),
        # both readers refuse these (llama.cpp packs tensors back to back; the stream is read once)
        "misaligned_tensor.gguf": (raw_gguf([], [("a", [1], T.F32, 0), ("b", [1], T.F32, 4)], f32 + f32), "b"),
        "overlapping_tensors.gguf": (raw_gguf([], [("a", [2], T.F32, 0), ("b", [2], T.F32, 0)], f32 + f32), "b"),
        "duplicate_key.gguf": (raw_gguf([kv("dup.key", V.UINT32, struct.pack("<I", 1)), kv("dup.key", V.UINT32, struct.pack("<I", 2))], [], b""), "dup.key"),
    }
    for name, (data, _) in files.items():
        (out / name).write_bytes(data)

    summary = {
        "files": {name: summarize(out / name) for name in ["tiny.gguf", "tiny_align64.gguf", *files]},
        "expect_in_error": {name: word for name, (_, word) in files.items() if word is not None},
        "ggml_types": {t.name: int(t) for t in T},
        "supported_types": {int(t): [t.name, *GGML_QUANT_SIZES[t]] for t in SUPPORTED_TENSOR_TYPES},
        "value_types": {v.name: int(v) for v in V},
    }
    for name, word in summary["expect_in_error"].items():
        error = summary["files"][name].get("error")
        if error is None or word not in error:
            raise SystemExit(f"fixture {name}: Python's reader should reject it naming {word!r}, got {error!r}")

    for name, model in real_models().items():
        link = out / name
        link.unlink(missing_ok=True)
        os.symlink(model, link)
        summary["files"][name] = summarize(model)
    return summary


def real_models() -> dict[str, Path]:
    sys.path.insert(0, str(REPO / "tests" / "py"))
    import assets  # the tests' shared, cached fetchers

    return {"smollm2.gguf": assets.smollm2_path(), "gemma3.gguf": assets.gemma3_path()}


if __name__ == "__main__":
    out_dir = Path(sys.argv[1])
    result = write_fixtures(out_dir)
    (out_dir / "summary.json").write_text(json.dumps(result))
    print(f"wrote {len(result['files'])} GGUF fixtures and summary.json to {out_dir}")
