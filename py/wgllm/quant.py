"""numpy (de)quantisers for the GGUF tensor types the project supports.

They serve the converter (quantize) and are the oracle the GPU shaders are tested against
(dequantize), so the block layouts are llama.cpp's (ggml-common.h), byte for byte:

  type  elems bytes  block layout                                   value
  F32     1     4    f32                                            x
  F16     1     2    f16                                            x
  BF16    1     2    top half of an f32                             x
  Q8_0   32    34    d:f16, qs:i8[32]                               d*q
  Q4_0   32    18    d:f16, qs:u8[16] (elem j low nibble, j+16 high) d*(q-8)
  Q4_1   32    20    d:f16, m:f16, qs:u8[16] (as Q4_0)              d*q + m
  Q5_0   32    22    d:f16, qh:u32 (bit j = 5th bit of elem j), qs   d*(q-16)
  Q5_1   32    24    d:f16, m:f16, qh:u32, qs:u8[16] (as Q5_0)       d*q + m
  IQ4_NL 32    18    d:f16, qs:u8[16] (as Q4_0)                     d*KV[q]
  Q2_K  256    84    scales:u8[16], qs:u8[64], d:f16, dmin:f16      (d*sc)*q - (dmin*m)
  Q3_K  256   110    hmask:u8[32], qs:u8[64], scales:u8[12], d:f16  (d*(sc-32))*(q - 4*!hbit)
  Q4_K  256   144    d:f16, dmin:f16, scales:u8[12], qs:u8[128]      (d*sc)*q - (dmin*m)
  Q5_K  256   176    d, dmin:f16, scales:u8[12], qh:u8[32], qs:u8[128] (d*sc)*q - (dmin*m)
  Q6_K  256   210    ql:u8[128], qh:u8[64], scales:i8[16], d:f16     (d*sc)*(q-32)
  IQ4_XS 256  136    d:f16, scales_h:u16, scales_l:u8[4], qs:u8[128] (d*(sc-32))*KV[q]

Q4_K: eight sub-blocks of 32 with 6-bit scale sc and min m packed in 12 bytes (get_scale_min_k4);
qs byte l of 32-byte group g holds elem 64g+l (low nibble) and 64g+32+l (high nibble).
Q6_K: two halves of 128; in half h, elem 128h+32k+l takes the low (k<2) or high (k>=2) nibble of
ql[64h+32(k%2)+l] and bits 2k..2k+1 of qh[32h+l]; sub-block scale i covers elems 16i..16i+15.
Q5_K: as Q4_K, with elem 64g+l's fifth bit bit 2g of qh[l], elem 64g+32+l's bit 2g+1.
Q2_K and Q3_K: in half h, elem 128h+32j+l (l < 32) is bits 2j..2j+1 of qs[32h+l]; Q3_K's third bit
is bit 4h+j of hmask[l] (set: q, clear: q - 4); sixteen 16-element sub-blocks, scale 8h+2j+(l>=16).
Q2_K's scale byte holds sc (low nibble) and m (high); Q3_K's 6-bit scales are packed in 12 bytes:
scale s's low nibble is nibble s // 8 of byte s % 8, its top two bits bits 2(s // 4).. of byte
8 + s % 4. IQ4_NL and IQ4_XS: a nibble indexes KV, the 16 non-linear levels IQ4_NL_VALUES; IQ4_XS
has eight 32-element sub-blocks laid out as IQ4_NL blocks, each with a 6-bit scale: low nibble
nibble ib % 2 of scales_l[ib // 2], top two bits bits 2ib.. of scales_h.

Dequantisation multiplies in the same order as ggml's dequantize_row_* so the result is bit-exact.
Quantisation of F16/BF16/Q8_0/Q4_0/Q4_1/Q5_0 follows quantize_row_*_ref (same float32 operations,
same roundf / truncation), so its bytes equal gguf.quants' and llama.cpp's. Q4_K and Q6_K use a
simple min/max (absmax) fit instead of llama.cpp's iterative scale search: the blocks are valid and
the error bound is stated on `quantize`, but the bytes differ from llama-quantize's.
Q2_K, Q3_K, Q5_K, IQ4_NL and IQ4_XS are dequantise-only (DEQUANTIZE_ONLY): files of those types
are read and run, but `quantize` (so the converter) refuses them as output types by name. Q5_1
quantises as quantize_row_q5_1_ref does (bytes equal to gguf.quants').
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

T = GGMLQuantizationType
QK_K = 256

SUPPORTED_TYPES = (T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.IQ4_NL, T.IQ4_XS)
# Types read but never written: no quantiser (llama.cpp's need an importance-weighted search).
DEQUANTIZE_ONLY = (T.Q2_K, T.Q3_K, T.Q5_K, T.IQ4_NL, T.IQ4_XS)
# IQ4_NL's and IQ4_XS's 16 levels (ggml-common.h's kvalues_iq4nl)
IQ4_NL_VALUES = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.int8)

# Elements per chunk: temporaries stay a few MB (cache friendly, no 4x blow-up on 262k-row tensors).
_CHUNK_ELEMENTS = 1 << 19
_F16, _F32 = np.dtype("<f2"), np.dtype("<f4")


def _check_type(ggml_type: GGMLQuantizationType, what: str) -> GGMLQuantizationType:
    try:
        t = T(ggml_type)
    except ValueError:
        raise ValueError(f"{what}: unknown GGML type {ggml_type!r}") from None
    if t not in SUPPORTED_TYPES:
        names = ", ".join(s.name for s in SUPPORTED_TYPES)
        raise ValueError(f"{what}: GGML type {t.name} is not supported (supported: {names})")
    return t


def block_size(ggml_type: GGMLQuantizationType) -> int:
    """Elements per block of `ggml_type` (1 for F32/F16/BF16)."""
    return GGML_QUANT_SIZES[_check_type(ggml_type, "block_size")][0]


def type_nbytes(ggml_type: GGMLQuantizationType, n_elements: int) -> int:
    """Bytes taken by `n_elements` values of `ggml_type`; n_elements must fill whole blocks."""
    t = _check_type(ggml_type, "type_nbytes")
    block, size = GGML_QUANT_SIZES[t]
    if n_elements < 0 or n_elements % block:
        raise ValueError(f"type_nbytes: {n_elements} elements is not a whole number of {t.name} blocks of {block}")
    return n_elements // block * size


def _check_shape(t: GGMLQuantizationType, shape: tuple[int, ...], what: str) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if not shape or any(s < 0 for s in shape):
        raise ValueError(f"{what}: shape {shape} for {t.name} must have at least one axis and no negative sizes")
    block = GGML_QUANT_SIZES[t][0]
    if shape[-1] % block:
        raise ValueError(
            f"{what}: {t.name} rows of shape {shape} have {shape[-1]} elements, not a multiple of the {t.name} block of {block}"
        )
    return shape


# -- dequantisers: (blocks (n, type_size) uint8, out (n, block) float32) -> fills out ---------------


def _f16_field(blocks: np.ndarray, offset: int) -> np.ndarray:
    """The f16 at byte `offset` of every block, as float32 (n, 1)."""
    return np.ascontiguousarray(blocks[:, offset : offset + 2]).view(_F16).astype(np.float32)


def _nibbles_into(qs: np.ndarray, out: np.ndarray) -> None:
    """qs (n, 16) -> out (n, 32): element j is the low nibble of qs[j], element j+16 the high one."""
    halves = out.reshape(len(out), 2, 16)
    halves[:, 0] = qs & 0x0F
    halves[:, 1] = qs >> 4


def _dequantize_f32(blocks: np.ndarray, out: np.ndarray) -> None:
    out[:] = blocks.view(_F32)


def _dequantize_f16(blocks: np.ndarray, out: np.ndarray) -> None:
    out[:] = blocks.view(_F16)


def _dequantize_bf16(blocks: np.ndarray, out: np.ndarray) -> None:
    out.view(np.uint32)[:] = blocks.view("<u2").astype(np.uint32) << 16


def _dequantize_q8_0(blocks: np.ndarray, out: np.ndarray) -> None:
    out[:] = blocks[:, 2:].view(np.int8)
    out *= _f16_field(blocks, 0)


def _dequantize_q4_0(blocks: np.ndarray, out: np.ndarray) -> None:
    _nibbles_into(blocks[:, 2:], out)
    out -= 8
    out *= _f16_field(blocks, 0)


def _dequantize_q4_1(blocks: np.ndarray, out: np.ndarray) -> None:
    _nibbles_into(blocks[:, 4:], out)
    out *= _f16_field(blocks, 0)
    out += _f16_field(blocks, 2)


def _dequantize_q5_0(blocks: np.ndarray, out: np.ndarray) -> None:
    qh = np.ascontiguousarray(blocks[:, 2:6]).view("<u4")  # (n, 1)
    high = ((qh >> np.arange(32, dtype=np.uint32)) & 1).astype(np.uint8) << 4  # (n, 32)
    q = np.empty(out.shape, np.uint8)
    q[:, :16] = blocks[:, 6:] & 0x0F
    q[:, 16:] = blocks[:, 6:] >> 4
    q |= high
    out[:] = q
    out -= 16
    out *= _f16_field(blocks, 0)


def _dequantize_q5_1(blocks: np.ndarray, out: np.ndarray) -> None:
    qh = np.ascontiguousarray(blocks[:, 4:8]).view("<u4")  # (n, 1)
    high = ((qh >> np.arange(32, dtype=np.uint32)) & 1).astype(np.uint8) << 4  # (n, 32)
    q = np.empty(out.shape, np.uint8)
    q[:, :16] = blocks[:, 8:] & 0x0F
    q[:, 16:] = blocks[:, 8:] >> 4
    q |= high
    out[:] = q
    out *= _f16_field(blocks, 0)
    out += _f16_field(blocks, 2)


def _dequantize_iq4_nl(blocks: np.ndarray, out: np.ndarray) -> None:
    q = np.empty(out.shape, np.uint8)
    _nibbles_into(blocks[:, 2:], q)
    out[:] = IQ4_NL_VALUES[q]
    out *= _f16_field(blocks, 0)


def _scale_min_k4(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ggml's get_scale_min_k4 for all eight sub-blocks: packed (n, 12) -> sc, m (n, 8) uint8.

    bytes 0-3: sc[0:4] in bits 0-5, bits 4-5 of sc[4:8] in bits 6-7;
    bytes 4-7: m[0:4] likewise with m[4:8]; bytes 8-11: sc[4:8] low nibble, m[4:8] high nibble.
    """
    lo, mid, hi = packed[:, 0:4], packed[:, 4:8], packed[:, 8:12]
    sc = np.concatenate([lo & 0x3F, (hi & 0x0F) | ((lo >> 6) << 4)], axis=1)
    m = np.concatenate([mid & 0x3F, (hi >> 4) | ((mid >> 6) << 4)], axis=1)
    return sc, m


def _dequantize_q4_k(blocks: np.ndarray, out: np.ndarray) -> None:
    n = len(blocks)
    sc, m = _scale_min_k4(blocks[:, 4:16])
    scale = _f16_field(blocks, 0) * sc.astype(np.float32)  # (n, 8)
    offset = _f16_field(blocks, 2) * m.astype(np.float32)  # (n, 8)
    groups = out.reshape(n, 4, 2, 32)  # (group of 64, nibble, l)
    qs = blocks[:, 16:].reshape(n, 4, 32)
    groups[:, :, 0] = qs & 0x0F
    groups[:, :, 1] = qs >> 4
    sub = out.reshape(n, 8, 32)
    sub *= scale[:, :, None]
    sub -= offset[:, :, None]


def _dequantize_q5_k(blocks: np.ndarray, out: np.ndarray) -> None:
    n = len(blocks)
    sc, m = _scale_min_k4(blocks[:, 4:16])
    scale = _f16_field(blocks, 0) * sc.astype(np.float32)  # (n, 8)
    offset = _f16_field(blocks, 2) * m.astype(np.float32)  # (n, 8)
    q = np.empty((n, 4, 2, 32), np.uint8)  # (group of 64, nibble, l)
    qs = blocks[:, 48:].reshape(n, 4, 32)
    q[:, :, 0] = qs & 0x0F
    q[:, :, 1] = qs >> 4
    fifth = (blocks[:, None, 16:48] >> np.arange(8, dtype=np.uint8)[:, None]) & 1  # (n, sub-block, l)
    q |= fifth.reshape(n, 4, 2, 32) << 4
    out[:] = q.reshape(n, QK_K)
    sub = out.reshape(n, 8, 32)
    sub *= scale[:, :, None]
    sub -= offset[:, :, None]


def _crumbs(qs: np.ndarray) -> np.ndarray:
    """Q2_K/Q3_K's qs (n, 64) -> (n, 256) uint8: elem 128h+32j+l is bits 2j..2j+1 of qs[32h+l]."""
    n = len(qs)
    return ((qs.reshape(n, 2, 1, 32) >> np.array([0, 2, 4, 6], np.uint8)[:, None]) & 3).reshape(n, QK_K)


def _dequantize_q2_k(blocks: np.ndarray, out: np.ndarray) -> None:
    n = len(blocks)
    sc = blocks[:, :16]
    scale = _f16_field(blocks, 80) * (sc & 0x0F).astype(np.float32)  # (n, 16)
    offset = _f16_field(blocks, 82) * (sc >> 4).astype(np.float32)
    out[:] = _crumbs(blocks[:, 16:80])
    sub = out.reshape(n, 16, 16)
    sub *= scale[:, :, None]
    sub -= offset[:, :, None]


def q3_k_scales(packed: np.ndarray) -> np.ndarray:
    """Q3_K's 12 packed scale bytes (..., 12) -> its sixteen 6-bit scales minus 32 (..., 16) int8."""
    s = np.arange(16)
    low = (packed[..., s % 8] >> (4 * (s // 8)).astype(np.uint8)) & 0x0F
    high = (packed[..., 8 + s % 4] >> (2 * (s // 4)).astype(np.uint8)) & 3
    return ((low | (high << 4)).astype(np.int16) - 32).astype(np.int8)


def _dequantize_q3_k(blocks: np.ndarray, out: np.ndarray) -> None:
    n = len(blocks)
    scale = _f16_field(blocks, 108) * q3_k_scales(blocks[:, 96:108]).astype(np.float32)  # (n, 16)
    q = _crumbs(blocks[:, 32:96]).astype(np.int8)
    hbit = ((blocks[:, None, :32] >> np.arange(8, dtype=np.uint8)[:, None]) & 1).reshape(n, QK_K)  # bit 4h+j of hmask[l]
    q -= ((hbit ^ 1) << 2).astype(np.int8)
    out[:] = q
    sub = out.reshape(n, 16, 16)
    sub *= scale[:, :, None]


def _dequantize_iq4_xs(blocks: np.ndarray, out: np.ndarray) -> None:
    n = len(blocks)
    ib = np.arange(8)
    low = (blocks[:, 4 + ib // 2] >> (4 * (ib % 2)).astype(np.uint8)) & 0x0F  # (n, 8)
    high = (np.ascontiguousarray(blocks[:, 2:4]).view("<u2") >> (2 * ib).astype(np.uint16)) & 3
    scale = _f16_field(blocks, 0) * (low.astype(np.float32) + 16 * high.astype(np.float32) - 32)  # (n, 8)
    q = np.empty((n, 8, 32), np.uint8)
    qs = blocks[:, 8:].reshape(n, 8, 16)
    q[:, :, :16] = qs & 0x0F
    q[:, :, 16:] = qs >> 4
    out[:] = IQ4_NL_VALUES[q].reshape(n, QK_K)
    sub = out.reshape(n, 8, 32)
    sub *= scale[:, :, None]


def _dequantize_q6_k(blocks: np.ndarray, out: np.ndarray) -> None:
    n = len(blocks)
    ql = blocks[:, :128].reshape(n, 2, 2, 32)  # (half, k % 2, l)
    qh = blocks[:, 128:192].reshape(n, 2, 1, 32)  # (half, -, l)
    q = np.empty((n, 2, 4, 32), np.uint8)  # (half, k, l)
    q[:, :, :2] = ql & 0x0F
    q[:, :, 2:] = ql >> 4
    q |= ((qh >> np.array([0, 2, 4, 6], np.uint8)[:, None]) & 3) << 4
    scale = _f16_field(blocks, 208) * blocks[:, 192:208].view(np.int8).astype(np.float32)  # (n, 16)
    out[:] = q.reshape(n, QK_K)
    out -= 32
    sub = out.reshape(n, 16, 16)
    sub *= scale[:, :, None]


_DEQUANTIZERS: dict[GGMLQuantizationType, Callable[[np.ndarray, np.ndarray], None]] = {
    T.F32: _dequantize_f32,
    T.F16: _dequantize_f16,
    T.BF16: _dequantize_bf16,
    T.Q8_0: _dequantize_q8_0,
    T.Q4_0: _dequantize_q4_0,
    T.Q4_1: _dequantize_q4_1,
    T.Q5_0: _dequantize_q5_0,
    T.Q5_1: _dequantize_q5_1,
    T.Q2_K: _dequantize_q2_k,
    T.Q3_K: _dequantize_q3_k,
    T.Q4_K: _dequantize_q4_k,
    T.Q5_K: _dequantize_q5_k,
    T.Q6_K: _dequantize_q6_k,
    T.IQ4_NL: _dequantize_iq4_nl,
    T.IQ4_XS: _dequantize_iq4_xs,
}


def dequantize(raw: np.ndarray, ggml_type: GGMLQuantizationType, shape: tuple[int, ...]) -> np.ndarray:
    """The float32 array of `shape` (numpy order, last axis = row) held in `raw`, the tensor's bytes.

    `raw` is a uint8 array of exactly type_nbytes(ggml_type, prod(shape)) bytes (a read-only
    memmap slice is fine; it is never written). The result is a new, writable array.
    """
    t = _check_type(ggml_type, "dequantize")
    shape = _check_shape(t, shape, "dequantize")
    buf = np.asarray(raw)
    if buf.dtype != np.uint8:
        raise ValueError(f"dequantize: {t.name} tensor of shape {shape}: raw data must be uint8 bytes, got {buf.dtype}")
    n_elements = int(np.prod(shape, dtype=np.int64))
    expected = type_nbytes(t, n_elements)
    if buf.size != expected:
        raise ValueError(
            f"dequantize: {t.name} tensor of shape {shape} needs {expected} bytes, got {buf.size}"
        )
    block, size = GGML_QUANT_SIZES[t]
    n_blocks = n_elements // block
    blocks = buf.reshape(n_blocks, size)
    out = np.empty((n_blocks, block), np.float32)
    kernel, chunk = _DEQUANTIZERS[t], max(1, _CHUNK_ELEMENTS // block)
    for start in range(0, n_blocks, chunk):
        end = min(start + chunk, n_blocks)
        kernel(blocks[start:end], out[start:end])
    return out.reshape(shape)


# -- quantisers: blocks (n, block) float32 -> (n, type_size) uint8 -----------------------------------


def _safe_inverse(d: np.ndarray) -> np.ndarray:
    """ggml's `id = d ? 1.0f/d : 0.0f`."""
    with np.errstate(divide="ignore"):
        return np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)


def _f16_bytes(values: np.ndarray, t: GGMLQuantizationType, field: str) -> np.ndarray:
    """float32 (n, 1) -> their f16 bytes (n, 2); an overflow to inf is an error, not a silent inf block."""
    with np.errstate(over="ignore"):
        half = values.astype(_F16)
    if not np.isfinite(half).all():
        worst = float(np.max(np.abs(values)))
        raise ValueError(f"quantize: {t.name} {field} {worst:g} does not fit in f16: the values are too large for {t.name}")
    return half.view(np.uint8).reshape(len(values), 2)


def _round_half_away(v: np.ndarray) -> np.ndarray:
    """C's roundf: halves round away from zero (np.rint would round them to even)."""
    a = np.abs(v)
    whole = np.floor(a)
    return np.copysign(whole + (a - whole >= 0.5), v)  # a - whole is exact in float32


def _absmax_signed(blocks: np.ndarray) -> np.ndarray:
    """Per row, the value with the largest magnitude, first one on ties (ggml's `amax < fabsf(v)`)."""
    i = np.abs(blocks).argmax(axis=-1)[..., None]
    return np.take_along_axis(blocks, i, axis=-1)


def _pack_nibbles(q: np.ndarray) -> np.ndarray:
    """q (n, 32) of 0..15 -> (n, 16): element j in the low nibble of byte j, j+16 in the high one."""
    return (q[:, :16] & 0x0F) | ((q[:, 16:] & 0x0F) << 4)


def _quantize_f32(blocks: np.ndarray, t: GGMLQuantizationType) -> np.ndarray:
    return blocks.astype(_F32).view(np.uint8)


def _quantize_f16(blocks: np.ndarray, t: GGMLQuantizationType) -> np.ndarray:
    return blocks.astype(_F16).view(np.uint8)


def _quantize_bf16(blocks: np.ndarray, t: GGMLQuantizationType) -> np.ndarray:
    # ggml_compute_fp32_to_bf16: round to nearest even, NaN kept NaN (quiet bit set)
    u = blocks.view(np.uint32)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    rounded = (u.astype(np.uint64) + 0x7FFF + ((u >> 16) & 1)) >> 16
    bits = np.where(nan, (u >> 16) | 64, rounded).astype("<u2")
    return bits.view(np.uint8)


def _quantize_q8_0(blocks: np.ndarray, t: GGMLQuantizationType) -> np.ndarray:
    d = np.abs(blocks).max(axis=1, keepdims=True) / np.float32(127)
    q = _round_half_away(blocks * _safe_inverse(d)).astype(np.int8)
    return np.concatenate([_f16_bytes(d, t, "scale"), q.view(np.uint8)], axis=1)


def _quantize_q4_0(blocks: np.ndarray, t: GGMLQuantizationType) -> np.ndarray:
    d = _absmax_signed(blocks) / np.float32(-8)
    q = np.minimum(np.trunc(blocks * _safe_inverse(d) + np.float32(8.5)), 15).astype(np.uint8)
    return np.concatenate([_f16_bytes(d, t, "scale"), _pack_nibbles(q)], axis=1)


def _quantize_q4_1(blocks: np.ndarray, t: GGMLQuantizationType) -> np.ndarray:
    lo = blocks.min(axis=1, keepdims=True)
    d = (blocks.max(axis=1, keepdims=True) - lo) / np.float32(15)
    q = np.minimum(np.trunc((blocks - lo) * _safe_inverse(d) + np.float32(0.5)), 15).astype(np.uint8)
    return np.concatenate([_f16_bytes(d, t, "scale"), _f16_bytes(lo, t, "minimum"), _pack_nibbles(q)], axis=1)


def _quantize_q5_0(blocks: np.ndarray, t: GGMLQuantizationType) -> np.ndarray:
    d = _absmax_signed(blocks) / np.float32(-16)
    q = np.minimum(np.trunc(blocks * _safe_inverse(d) + np.float32(16.5)), 31).astype(np.uint8)
    fifth_bits = ((q >> 4) & 1).astype(np.uint32) << np.arange(32, dtype=np.uint32)
    qh = np.bitwise_or.reduce(fifth_bits, axis=1, keepdims=True).astype("<u4").view(np.uint8)
    return np.concatenate([_f16_bytes(d, t, "scale"), qh, _pack_nibbles(q)], axis=1)


def _quantize_q5_1(blocks: np.ndarray, t: GGMLQuantizationType) -> np.ndarray:
    lo = blocks.min(axis=1, keepdims=True)
    d = (blocks.max(axis=1, keepdims=True) - lo) / np.float32(31)
    q = np.minimum(np.trunc((blocks - lo) * _safe_inverse(d) + np.float32(0.5)), 31).astype(np.uint8)
    fifth_bits = ((q >> 4) & 1).astype(np.uint32) << np.arange(32, dtype=np.uint32)
    qh = np.bitwise_or.reduce(fifth_bits, axis=1, keepdims=True).astype("<u4").view(np.uint8)
    return np.concatenate([_f16_bytes(d, t, "scale"), _f16_bytes(lo, t, "minimum"), qh, _pack_nibbles(q)], axis=1)


def _quantize_q4_k(blocks: np.ndarray, t: GGMLQuantizationType) -> np.ndarray:
    """Each sub-block of 32 spans [min(min, 0), max] in 15 steps (ggml keeps mins <= 0).

    Scales are rounded *up* to the 6-bit grid (and the super-block scale d up to the next f16 if
    f16 rounding shrank it) so every sub-block's range stays covered; mins are rounded to nearest.
    """
    n = len(blocks)
    sub = blocks.reshape(n, 8, 32)
    lo = np.minimum(sub.min(axis=2), 0)  # (n, 8)
    scale = (sub.max(axis=2) - lo) / np.float32(15)
    neg_min = -lo
    max_scale = scale.max(axis=1, keepdims=True)  # (n, 1)
    d_half = (max_scale / np.float32(63)).astype(_F16)
    with np.errstate(over="ignore"):
        rounded_down = d_half.astype(np.float32) * np.float32(63) < max_scale
        d_half = np.where(rounded_down, np.nextafter(d_half, _F16.type(np.inf)), d_half)
    d_bytes = _f16_bytes(d_half.astype(np.float32), t, "scale")
    dmin_bytes = _f16_bytes(neg_min.max(axis=1, keepdims=True) / np.float32(63), t, "minimum")
    d_f = d_half.astype(np.float32)
    dmin_f = dmin_bytes.view(_F16).astype(np.float32)  # (n, 1)
    ls = np.clip(np.ceil(scale * _safe_inverse(d_f)), 0, 63).astype(np.uint8)  # (n, 8)
    lm = np.clip(np.rint(neg_min * _safe_inverse(dmin_f)), 0, 63).astype(np.uint8)
    # as quantize_row_q4_K_ref: l = nearest_int((x + dm) / d) with the stored, quantised d and dm
    sub_scale = (d_f * ls.astype(np.float32))[:, :, None]
    sub_offset = (dmin_f * lm.astype(np.float32))[:, :, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        levels = np.rint((sub + sub_offset) / sub_scale)
    levels = np.clip(np.where(sub_scale == 0, 0, levels), 0, 15).astype(np.uint8).reshape(n, 4, 2, 32)
    packed = np.concatenate(
        [ls[:, :4] | ((ls[:, 4:] >> 4) << 6), lm[:, :4] | ((lm[:, 4:] >> 4) << 6), (ls[:, 4:] & 0x0F) | ((lm[:, 4:] & 0x0F) << 4)],
        axis=1,
    )
    qs = (levels[:, :, 0] | (levels[:, :, 1] << 4)).reshape(n, 128)
    return np.concatenate([d_bytes, dmin_bytes, packed, qs], axis=1)


def _quantize_q6_k(blocks: np.ndarray, t: GGMLQuantizationType) -> np.ndarray:
    """Each sub-block of 16 maps its largest-magnitude value to -32 (as Q4_0 does to -8); the 16
    sub-block scales go on an 8-bit grid whose step d maps the largest one to -128 (as ggml)."""
    n = len(blocks)
    sub = blocks.reshape(n, 16, 16)
    scale = _absmax_signed(sub)[:, :, 0] / np.float32(-32)  # (n, 16)
    max_scale = _absmax_signed(scale)  # (n, 1)
    iscale = np.float32(-128) * _safe_inverse(max_scale)
    d_bytes = _f16_bytes(_safe_inverse(iscale), t, "scale")
    d_f = d_bytes.view(_F16).astype(np.float32)  # (n, 1)
    sc = np.minimum(np.rint(iscale * scale), 127).astype(np.int8)  # (n, 16)
    sub_scale = (d_f * sc.astype(np.float32))[:, :, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        levels = np.rint(sub / sub_scale)
    levels = (np.clip(np.where(sub_scale == 0, 0, levels), -32, 31) + 32).astype(np.uint8)
    levels = levels.reshape(n, 2, 4, 32)  # (half, k, l)
    ql = (levels[:, :, :2] & 0x0F) | ((levels[:, :, 2:] & 0x0F) << 4)  # (n, 2, 2, 32)
    qh = np.bitwise_or.reduce((levels >> 4) << np.array([0, 2, 4, 6], np.uint8)[:, None], axis=2)  # (n, 2, 32)
    return np.concatenate([ql.reshape(n, 128), qh.reshape(n, 64), sc.view(np.uint8), d_bytes], axis=1)


_QUANTIZERS: dict[GGMLQuantizationType, Callable[[np.ndarray, GGMLQuantizationType], np.ndarray]] = {
    T.F32: _quantize_f32,
    T.F16: _quantize_f16,
    T.BF16: _quantize_bf16,
    T.Q8_0: _quantize_q8_0,
    T.Q4_0: _quantize_q4_0,
    T.Q4_1: _quantize_q4_1,
    T.Q5_0: _quantize_q5_0,
    T.Q5_1: _quantize_q5_1,
    T.Q4_K: _quantize_q4_k,
    T.Q6_K: _quantize_q6_k,
}


def quantize(x: np.ndarray, ggml_type: GGMLQuantizationType) -> np.ndarray:
    """The bytes of `x` (float, last axis = row) stored as `ggml_type`: uint8 of shape
    (*x.shape[:-1], bytes per row), the same byte shape gguf.quants gives for block types.

    Worst-case error per element after dequantize (from the input, before the small f16
    rounding of the stored scales; s is the block's scale):
      F16, BF16: half an ulp;  Q8_0: s/2, s = absmax/127;  Q4_0: s, s = absmax/8 (the value
      opposite in sign to the absmax may sit one step past the top level);  Q5_0: s, s = absmax/16;
      Q4_1: s/2, s = (max - min)/15;  Q5_1: s/2, s = (max - min)/31;  Q4_K: s_j/2 + d/2 + dmin/2, s_j = (max_j - min(min_j, 0))/15,
      d = max_j s_j/63, dmin = max_j -min(min_j, 0)/63;  Q6_K: s_j + 33*D, s_j = absmax_j/32,
      D = absmax/4096 (absmax over the 256-element super-block).
    """
    t = _check_type(ggml_type, "quantize")
    if t in DEQUANTIZE_ONLY:
        raise ValueError(f"quantize: {t.name} is read but not written by wgllm (no quantiser); write one of {', '.join(s.name for s in _QUANTIZERS)}")
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"quantize: {t.name} needs float values, got an array of {arr.dtype}")
    shape = _check_shape(t, arr.shape, "quantize")
    block, size = GGML_QUANT_SIZES[t]
    # F16 rounds straight from the input's precision (as numpy's astype and gguf do), the rest via f32
    values = np.ascontiguousarray(arr, dtype=arr.dtype if t == T.F16 else np.float32).reshape(-1, block)
    if block > 1 and not np.isfinite(values).all():
        bad = int(np.count_nonzero(~np.isfinite(values)))
        raise ValueError(f"quantize: {bad} non-finite values in a tensor of shape {shape}: {t.name} blocks cannot hold NaN or inf")
    out, chunk = np.empty((len(values), size), np.uint8), max(1, _CHUNK_ELEMENTS // block)
    for start in range(0, len(values), chunk):
        end = min(start + chunk, len(values))
        out[start:end] = _QUANTIZERS[t](values[start:end], t).reshape(end - start, size)
    return out.reshape(*shape[:-1], shape[-1] // block * size)
