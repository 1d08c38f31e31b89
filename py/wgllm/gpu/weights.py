"""GGUF weights on the GPU: repacked at load into 4-byte-aligned arrays, split into row chunks.

A GGUF matrix (n_out, k) is stored as rows of blocks; the blocks' fields (f16 scales next to
bytes of quants) are not 4-byte aligned, so shaders could only read them with byte shuffling.
`repack` splits every block into its fields, one array per field, each array row-major
(n_out, per_row) so that any range of rows is a contiguous slice. The shaders
(shaders/matmul_<type>.wgsl, shaders/embedding_<type>.wgsl) bind the arrays in this order, as
array<u32> (or array<f32> for F32), and index them from the first row of the chunk they are given
(the fields' byte ranges are weight_types.WEIGHT_TYPES, composed with the kernels from
shaders/compose/types/ by scripts/compose_shaders.py; web/src/weights.ts repacks by the same table):

  type  arrays (per row, nb = k / block)                  element e of the row (b = e / block)
  F32   w: f32[kp]                                        w[e]
  F16   w: f16[kp]  (word i = elems 2i | 2i+1 << 16)      w[e]
  BF16  w: u16[kp]  (the top halves of f32s, same pairing) f32(w[e] << 16)
  Q8_0  qs: i8[k]; d: f16[nb]                             d[b] * qs[e]
  Q4_0  qs: u8[16 nb] (GGUF's bytes); d: f16[nb]          d[b] * (nib - 8)
  Q4_1  qs: as Q4_0; dm: f16[2 nb] (d, m per block)       d[b] * nib + m[b]
  Q5_0  qs: as Q4_0; qh: u32[nb]; d: f16[nb]              d[b] * (nib | bit(qh[b], j) << 4 - 16)
  Q5_1  qs: as Q4_0; qh: as Q5_0; dm: as Q4_1             d[b] * (nib | bit(qh[b], j) << 4) + m[b]
  Q4_K  qs: u8[128 nb] (GGUF's); sm: u8[16 nb]; dm: f16[2 nb]   (d*sc) * nib - (dmin*m)
  Q5_K  qs: as Q4_K; qh: u8[32 nb] (GGUF's); sm, dm: as Q4_K     (d*sc) * (nib | bit << 4) - (dmin*m)
  Q6_K  ql: u8[128 nb]; qh: u8[64 nb]; sc: i8[16 nb]; d: f16[nb] (d*sc) * (q6 - 32)
  Q2_K  qs: u8[64 nb] (GGUF's); sc: u8[16 nb]; dm: f16[2 nb]    (d*(sc&15)) * q2 - (dmin*(sc>>4))
  Q3_K  hm: u8[32 nb]; qs: as Q2_K; sc3: i8[16 nb]; d: f16[nb]   (d*sc3) * (q2 | hbit << 2 - 4)
  IQ4_XS qs: u8[128 nb] (GGUF's); sl: u8[4 nb]; dh: (f16, u16)[nb]   (d*(sc-32)) * KV[nib]

F32/F16/BF16 take any k % 4 == 0: each row is zero-padded to kp = padded_k(k), whole 32-element
units, which the kernels walk; they read x (rows of the true k, Params.k) only up to k. Quantised
rows are whole blocks (k % 32 == 0), kp = k.
Nibbles keep GGUF's order: in a 32-element block (Q4_0/Q4_1/Q5_0) byte j of qs holds element j
(low nibble) and j + 16 (high); so u32 word w of a block holds elements 4w..4w+3 in its bytes'
low nibbles and 16+4w..16+4w+3 in the high ones, and bit j of qh is element j's fifth bit.
Q4_K: byte l of 32-byte group g holds elements 64g + l (low nibble, sub-block 2g) and 64g + 32 + l
(high, sub-block 2g+1); sm holds the eight 6-bit sub-block scales sc[0..8] then the eight mins
m[0..8], decoded from GGUF's 12 packed bytes (ggml's get_scale_min_k4); dm is (d, dmin).
Q5_K: as Q4_K (its scales decoded the same way, "sm"), element 32s + l (sub-block s, l < 32) with
bit s of qh byte l as its fifth bit.
Q2_K and Q3_K: element 128h + 32j + l (half h, quarter j, l < 32) is bits 2j..2j+1 of qs byte
32h + l, in sub-block 8h + 2j + l // 16; Q3_K's third bit is bit 4h + j of hm byte l (GGUF's hmask),
and sc3 its sixteen scales less 32, decoded from GGUF's 12 packed bytes (nibble s // 8 of byte s % 8
below bits 2(s // 4).. of byte 8 + s % 4); Q2_K's sc are GGUF's scale bytes (scale | min << 4).
IQ4_XS: eight 32-element sub-blocks, each 16 bytes of qs laid out as an IQ4_NL block; dh holds
the block's f16 d and GGUF's scales_h (sub-block ib's scale has bits 2ib..2ib+1 of scales_h on top
of bits 4ib..4ib+3 of sl, GGUF's scales_l, then less 32).
Q6_K: element 128h + 32i + l (half h, quarter i, l < 32) is the low (i < 2) or high (i >= 2) nibble
of ql byte 64h + 32(i % 2) + l plus bits 2i..2i+1 of qh byte 32h + l as bits 4-5; sc[16] are the
signed scales of its sixteen 16-element sub-blocks. f16 and u16 arrays pair elements 2i, 2i+1 in
word i (low half first), u8/i8 arrays hold four in a word (lowest byte first). The quant arrays
(w, qs, ql, qh) are bound as array<vec4<u32>> or array<vec2<u32>>: their rows are multiples of 16
(8 for F16/BF16) bytes. Signed and unsigned bytes are unpacked with shifts rather than
unpack4x8snorm/unorm, which would map -128 to -127 and round q / 127 (the kernels are exact).

Kernels: matmul_<type>.wgsl has two entry points per kernel family (runtime.KERNEL_FAMILIES). The
cpu family, for CPU-emulated WebGPU: `matvec` (n = 1, decode: a workgroup of MATVEC_WG threads per
MATVEC_ROWS output rows, each thread owning four whole rows and walking k alone, x loaded once for
its four rows, no workgroup memory or barrier) and `main` (n > 1, prefill: 32 x 32 output tiles,
32 threads of 4 x rows by 8 W rows each, a W unit dequantised once for 4 x rows, no workgroup
memory). The gpu family, for real GPUs: `matvec_split` (n = 1: MV_ROWS rows a workgroup, their k
units split over its MV_WG threads so that neighbouring threads read neighbouring blocks, partial
sums added in workgroup memory) and `main_tiled` (n > 1: a workgroup of 64 threads per tile of
TILED_ROWS = 64 W rows by TILED_N = 32 x rows; per 32-element unit of k each W row's unit is
dequantised once into workgroup memory and the x tile staged beside it, then each thread multiplies
4 x rows by 8 W rows from there in f32; 13.5 KiB of workgroup memory). embedding_<type>.wgsl gathers
rows. Every kernel dequantises on the fly; no float copy of W exists in GPU memory.
The matmul epilogue adds the bias, then optionally a residual (n, n_out); or, for a weight of
(gate, up) row pairs (upload_pairs: ffn_gate and ffn_up as one matmul), writes act(gate) * up.

The GPU copy is split into chunks of whole rows so that no binding exceeds the adapter's
maxStorageBufferBindingSize (Gemma-3's 262144 x 640 Q8_0 embedding is 178 MB against 128 MiB);
each chunk has its own buffer per array, and the shaders get the chunk's first row and row count.
A pairs weight's chunk holds the gate rows of its pairs, then their up rows (an even number of
each, so that the browser's writes of either half stay 4-byte aligned).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from wgllm.gpu.runtime import KERNEL_FAMILIES, GpuError, OpenPass, shader_constant
from wgllm.gpu.weight_types import WEIGHT_TYPES
from wgllm.quant import q3_k_scales

T = GGMLQuantizationType
SUPPORTED_TYPES = tuple(T(i) for i in WEIGHT_TYPES)
_F16 = np.dtype("<f2")

# Kernel geometry is read from the WGSL files' own constants (runtime.shader_constant), as web/src does.
_MAX_GROUPS = 65535


@dataclass
class RepackedWeight:
    """A (n_out, k) weight as its fields' arrays, each (n_out, bytes_per_row) uint8, in binding order."""

    ggml_type: GGMLQuantizationType
    shape: tuple[int, int]
    arrays: list[np.ndarray]
    names: list[str]

    @property
    def n_out(self) -> int:
        return self.shape[0]

    @property
    def k(self) -> int:
        return self.shape[1]


@dataclass
class GpuChunk:
    row_start: int
    rows: int
    buffers: list  # one per RepackedWeight array, rows [row_start, row_start + rows)


@dataclass
class GpuWeight:
    ggml_type: GGMLQuantizationType
    shape: tuple[int, int]
    chunks: list[GpuChunk]
    # rows are (gate, up) pairs, each chunk holding its pairs' gate rows then their up rows (upload_pairs)
    pairs: bool = False
    # Caches so that a call encodes without creating anything: uniforms by (op, chunk, n or scale),
    # bind groups by (op, chunk, buffers). Those of a prefill n (n > 1) are kept for the last
    # PREFILL_NS_KEPT such n only (_prefill_ns, oldest first): each new prompt length would otherwise
    # add a uniform and a bind group per chunk for good. Dropping them is safe at any time: a command
    # encoder that recorded one holds its own reference.
    _params: dict = field(default_factory=dict, repr=False)
    _bind_groups: dict = field(default_factory=dict, repr=False)
    _prefill_ns: list = field(default_factory=list, repr=False)

    @property
    def n_out(self) -> int:
        return self.shape[0]

    @property
    def k(self) -> int:
        return self.shape[1]

    @property
    def shader_suffix(self) -> str:
        return self.ggml_type.name.lower()


def _rows(x: np.ndarray, n_out: int) -> np.ndarray:
    return np.ascontiguousarray(x).reshape(n_out, -1).view(np.uint8)


def padded_k(k: int) -> int:
    """Elements a repacked row holds: k rounded up to whole 32-element units (F32/F16/BF16 rows of
    k % 32 != 0 get zeros after the k-th; quantised rows are whole blocks already)."""
    return -(-k // 32) * 32


def _scale_min_k4(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_K's 12 packed bytes (..., 12) -> six-bit sc, m (..., 8): ggml's get_scale_min_k4."""
    lo, mid, hi = packed[..., 0:4], packed[..., 4:8], packed[..., 8:12]
    sc = np.concatenate([lo & 0x3F, (hi & 0x0F) | ((lo >> 6) << 4)], axis=-1)
    m = np.concatenate([mid & 0x3F, (hi >> 4) | ((mid >> 6) << 4)], axis=-1)
    return sc, m


def repack(raw: np.ndarray, ggml_type: GGMLQuantizationType, shape: tuple[int, ...], name: str = "weight") -> RepackedWeight:
    """Split the GGUF bytes of a (n_out, k) tensor into the aligned arrays documented above."""
    try:
        t = T(ggml_type)
    except ValueError:
        raise ValueError(f"{name}: unknown GGML type {ggml_type!r}") from None
    if t not in SUPPORTED_TYPES:
        raise ValueError(f"{name}: GGML type {t.name} has no GPU kernels (supported: {', '.join(s.name for s in SUPPORTED_TYPES)})")
    if len(shape) != 2:
        raise ValueError(f"{name}: a GPU weight must be 2-D (n_out, k), got shape {tuple(shape)}")
    n_out, k = (int(s) for s in shape)
    block, size = GGML_QUANT_SIZES[t]
    if k == 0 or n_out == 0:
        raise ValueError(f"{name}: {t.name} weight of shape {(n_out, k)} is empty")
    if block == 1 and k % 4:
        raise ValueError(f"{name}: {t.name} weight of shape {(n_out, k)}: k = {k} is not a multiple of 4 (the kernels read x rows of k as vec4s)")
    if block > 1 and k % 32:
        raise ValueError(f"{name}: {t.name} weight of shape {(n_out, k)}: k must be a positive multiple of 32 (and of the {block}-element block)")
    if k % block:
        raise ValueError(f"{name}: {t.name} weight of shape {(n_out, k)}: k = {k} is not a multiple of the {t.name} block of {block}")
    nb = k // block
    raw = np.asarray(raw)
    if raw.dtype != np.uint8 or raw.size != n_out * nb * size:
        raise ValueError(f"{name}: {t.name} weight of shape {(n_out, k)} needs {n_out * nb * size} uint8 bytes, got {raw.size} of {raw.dtype}")
    blocks = raw.reshape(n_out, nb, size)
    if block == 1 and k % 32:  # float rows zero-padded to whole 32-element units (padded_k), as the kernels read them
        blocks = np.concatenate([blocks, np.zeros((n_out, padded_k(k) - k, size), np.uint8)], axis=1)
    arrays = []
    for field, start, end in WEIGHT_TYPES[int(t)][3]:  # the layout table shared with web/src (weight_types)
        if field == "sm":  # Q4_K, Q5_K: their 12 packed scale bytes decoded to eight scales, then eight mins
            arrays.append(np.concatenate(_scale_min_k4(blocks[:, :, start : start + 12]), axis=-1))
        elif field == "sc3":  # Q3_K: its 12 packed scale bytes decoded to sixteen signed scales
            arrays.append(q3_k_scales(blocks[:, :, start : start + 12]).view(np.uint8))  # web/src/weights.ts: scalesQ3K
        else:
            arrays.append(blocks[:, :, start:end])
    return RepackedWeight(t, (n_out, k), [_rows(a, n_out) for a in arrays], [f[0] for f in WEIGHT_TYPES[int(t)][3]])


def chunk_rows(repacked: RepackedWeight, max_binding: int) -> int:
    """Most rows one chunk may hold so that none of its arrays exceeds `max_binding` bytes."""
    per_row = max(a.shape[1] for a in repacked.arrays)
    rows = max_binding // per_row
    if rows < 1:
        raise ValueError(f"{repacked.ggml_type.name} weight {repacked.shape}: one row takes {per_row} bytes, more than the max binding of {max_binding}")
    return rows


def upload(ctx, repacked: RepackedWeight, max_binding: int | None = None, label: str = "weight") -> GpuWeight:
    """Copy to the GPU in chunks of whole rows, none of whose bindings exceeds `max_binding`
    (default: the adapter's maxStorageBufferBindingSize; tests pass a small one to force splits)."""
    limit = min(int(max_binding or ctx.max_binding), int(ctx.max_binding))
    rows = lambda a, b: [arr[a:b] for arr in repacked.arrays]  # noqa: E731
    return _upload_chunks(ctx, repacked, repacked.shape, chunk_rows(repacked, limit), rows, 1, label)


def _upload_chunks(ctx, like: RepackedWeight, shape, step: int, arrays, rows_per: int, label: str) -> GpuWeight:
    """A GpuWeight of `shape` from units [a, b) of `like`'s rows, `step` units a chunk, each chunk's
    buffers being arrays(a, b) (one per array of `like`) and holding rows_per rows a unit."""
    chunks = []
    for start in range(0, like.n_out, step):
        end = min(start + step, like.n_out)
        try:
            buffers = [ctx.buffer(a, label=f"{label}.{n}[{rows_per * start}:{rows_per * end}]") for a, n in zip(arrays(start, end), like.names)]
        except GpuError as e:
            total = rows_per * sum(a.nbytes for a in like.arrays)
            raise GpuError(f"{label}: {like.ggml_type.name} weight {shape} of {total} bytes does not fit: {e}") from None
        chunks.append(GpuChunk(rows_per * start, rows_per * (end - start), buffers))
    return GpuWeight(like.ggml_type, shape, chunks, pairs=rows_per == 2)


def upload_pairs(ctx, gate: RepackedWeight, up: RepackedWeight, max_binding: int | None = None, label: str = "weight") -> GpuWeight:
    """ffn_gate and ffn_up as one (2 n_ff, k) weight whose row 2p is gate row p and row 2p + 1 up row
    p, for matmul(glu=...): each chunk holds an even number of pairs [a, b) as gate[a:b] then up[a:b]
    (rows are independent in every GGUF type), so a kernel thread's rows hold whole pairs."""
    if gate.ggml_type != up.ggml_type or gate.shape != up.shape:
        raise ValueError(f"{label}: gate {gate.ggml_type.name} {gate.shape} and up {up.ggml_type.name} {up.shape} differ in type or shape")
    limit = min(int(max_binding or ctx.max_binding), int(ctx.max_binding))
    step = chunk_rows(gate, limit) // 4 * 2  # pairs per chunk: two rows each, an even number of them
    if step < 2:
        raise ValueError(f"{label}: {gate.ggml_type.name} rows of {gate.shape} do not fit two pairs in a max binding of {limit} bytes")
    halves = lambda a, b: [np.concatenate([g[a:b], u[a:b]]) for g, u in zip(gate.arrays, up.arrays)]  # noqa: E731
    return _upload_chunks(ctx, gate, (2 * gate.n_out, gate.k), step, halves, 2, label)


# -- dispatch ------------------------------------------------------------------------------------


def _grid_2d(groups: int) -> tuple[int, int]:
    gx = max(1, min(groups, _MAX_GROUPS))
    return gx, -(-groups // gx)


def _dummy(ctx):
    buf = getattr(ctx, "_wgllm_zero_bias", None)
    if buf is None:
        buf = ctx.buffer(np.zeros(4, np.float32), label="no bias or residual")
        ctx._wgllm_zero_bias = buf
    return buf


GLU_KINDS = {"swiglu": 1, "geglu": 2}  # Params.glu of the matmul kernels


def matvec_split_size(ctx) -> int:
    """Threads of a gpu-family matvec workgroup (MV_WG): the shader's default within the device's limit."""
    return min(shader_constant("matmul_f32.wgsl", "MV_WG"), ctx.max_invocations)


def _matmul_entry(ctx, shader: str, n: int, kernels: str) -> tuple[str, dict | None, int, int]:
    """(entry point, override constants, output rows per workgroup, x rows per workgroup) of a matmul
    launch: for n = 1 one x row, its workgroups laid out by _grid_2d; for n > 1 a 2-D grid of tiles."""
    if n > 1:
        if kernels == "gpu":
            return "main_tiled", None, shader_constant(shader, "TILED_ROWS"), shader_constant(shader, "TILED_N")
        tile = shader_constant(shader, "TILE")
        return "main", None, tile, tile
    if kernels == "gpu":
        return "matvec_split", {"MV_WG": matvec_split_size(ctx)}, shader_constant(shader, "MV_ROWS"), 1
    return "matvec", None, shader_constant(shader, "MATVEC_ROWS"), 1


def matmul(
    ctx,
    target,
    weight: GpuWeight,
    x_buf,
    y_buf,
    n_rows_x: int,
    bias_buf=None,
    residual_buf=None,
    glu: str | None = None,
    kernels: str = "cpu",
    norm: tuple | None = None,
    zeros=None,
) -> None:
    """y (n, n_out) = x (n, k) @ W^T [+ bias] [+ residual], x, y and residual (n, n_out) f32 buffers:
    the decode kernel (matvec) when n == 1, the tiled prefill kernel otherwise, once per row chunk of
    W. The residual is added in the kernels' epilogue (the engine's residual stream, one add launch
    fewer); it must be another buffer than y. With glu ("swiglu" or "geglu"; W from upload_pairs,
    bias interleaved as its rows are), y (n, n_out / 2) = act(x W_gate^T + b_gate) * (x W_up^T + b_up).

    target: an open compute pass to record into (the engine's), a command encoder (the chunks'
    launches then get one pass of their own on it), or None to submit at once.

    kernels: the kernel family ("cpu" or "gpu", runtime.resolve_kernels); the gpu family's decode
    kernel is `matvec_split` (k split over a workgroup's threads, MV_ROWS rows a workgroup), its
    prefill kernel `main_tiled` (workgroup-memory tiles of TILED_ROWS W rows by TILED_N x rows).

    norm: (weight buffer (k,) f32, eps) for n == 1: x is RMS-normed in the kernel, y = (x / rms(x) * w)
    W^T ... (the decode kernels' Params.norm; the norm launch before the matmul saved). Not with a
    residual, whose binding carries the norm weight.

    zeros: the f32 buffer bound where there is no bias or residual (the engine's own `zeros`, as the
    browser's binds; default a small one per context).
    """
    n = int(n_rows_x)
    if kernels not in KERNEL_FAMILIES:
        raise ValueError(f"matmul: kernels = {kernels!r}, expected one of {KERNEL_FAMILIES}")
    if n < 1:
        raise ValueError(f"matmul: n_rows_x must be >= 1, got {n}")
    y_cols = weight.n_out // 2 if weight.pairs else weight.n_out
    if x_buf.size < n * weight.k * 4 or y_buf.size < n * y_cols * 4:
        raise ValueError(
            f"matmul: {weight.ggml_type.name} weight {weight.shape} with n = {n} needs x >= {n * weight.k * 4} and "
            f"y >= {n * y_cols * 4} bytes, got {x_buf.size} and {y_buf.size}"
        )
    if bias_buf is not None and bias_buf.size < weight.n_out * 4:
        raise ValueError(f"matmul: bias of {bias_buf.size} bytes is shorter than n_out = {weight.n_out} floats")
    if residual_buf is not None and residual_buf.size < n * weight.n_out * 4:
        raise ValueError(f"matmul: residual of {residual_buf.size} bytes is shorter than n * n_out = {n} * {weight.n_out} floats")
    if glu is not None and (glu not in GLU_KINDS or not weight.pairs or residual_buf is not None):
        raise ValueError(f"matmul: glu = {glu!r} needs one of {sorted(GLU_KINDS)}, a weight from upload_pairs and no residual")
    if weight.pairs and glu is None:
        raise ValueError("matmul: a weight of (gate, up) pairs (upload_pairs) runs with glu only")
    if residual_buf is y_buf:
        raise ValueError("matmul: the residual buffer is y itself (a buffer cannot be read and written by one launch)")
    if norm is not None and (n != 1 or residual_buf is not None or norm[0].size < weight.k * 4):
        raise ValueError(f"matmul: norm needs n = 1 (got {n}), no residual and a norm weight of k = {weight.k} floats")
    shader = f"matmul_{weight.shader_suffix}.wgsl"
    entry, constants, rows_per_group, n_per_group = _matmul_entry(ctx, shader, n, kernels)
    pipeline = ctx.pipeline(shader, constants, entry=entry)
    zeros = zeros if zeros is not None else _dummy(ctx)
    bias = bias_buf if bias_buf is not None else zeros
    residual = residual_buf if residual_buf is not None else norm[0] if norm is not None else zeros
    eps = float(norm[1]) if norm is not None else 0.0
    if n > 1:
        _keep_prefill_n(weight, n)
    launches = []
    for ci, chunk in enumerate(weight.chunks):
        pkey = ("matmul", ci, n, bias_buf is not None, residual_buf is not None, glu, eps if norm is not None else None)
        params = weight._params.get(pkey)
        if params is None:
            flags = (int(bias_buf is not None), int(residual_buf is not None), GLU_KINDS.get(glu, 0), int(norm is not None))
            data = struct.pack("<9If", weight.k, weight.n_out, chunk.rows, chunk.row_start, n, *flags, eps)
            params = weight._params[pkey] = ctx.buffer(data, uniform=True, label="matmul params")
        bkey = (entry, ci, n, id(x_buf), id(y_buf), id(bias), id(residual))
        cached = weight._bind_groups.get(bkey)
        if cached is None:  # kept with the buffers so that their ids stay theirs
            group = ctx.bind_group(pipeline, [params, *chunk.buffers, x_buf, bias, residual, y_buf])
            cached = weight._bind_groups[bkey] = (group, x_buf, y_buf, bias, residual)
        if n == 1:
            grid = (*_grid_2d(-(-chunk.rows // rows_per_group)), 1)
        else:
            grid = (-(-chunk.rows // rows_per_group), -(-n // n_per_group), 1)
        launches.append((cached[0], grid))
    with OpenPass(ctx, target) as cpass:
        for bind_group, grid in launches:
            ctx.dispatch(cpass, pipeline, bind_group, grid)


PREFILL_NS_KEPT = 4  # prefill lengths whose matmul uniforms and bind groups a weight keeps


def _keep_prefill_n(weight: GpuWeight, n: int) -> None:
    """Mark prefill length n as the most recent one; past PREFILL_NS_KEPT, the oldest length's
    uniforms and bind groups are dropped (the matmul keys hold n third)."""
    if n in weight._prefill_ns:
        weight._prefill_ns.remove(n)
    weight._prefill_ns.append(n)
    while len(weight._prefill_ns) > PREFILL_NS_KEPT:
        old = weight._prefill_ns.pop(0)
        for cache in (weight._params, weight._bind_groups):
            for key in [k for k in cache if k[2] == old and k[0] != "embedding"]:
                del cache[key]


def embedding_lookup(ctx, target, table: GpuWeight, ids_buf, y_buf, n_ids: int, scale: float = 1.0) -> None:
    """y (n, dim) = table[ids] * scale, ids a u32 buffer: one dispatch per row chunk of the table,
    each writing the rows whose id falls in it (an id >= vocab is written by none).

    target: an open compute pass, a command encoder or None, as for matmul.
    """
    n = int(n_ids)
    if n < 1 or ids_buf.size < 4 * n or y_buf.size < 4 * n * table.k:
        raise ValueError(f"embedding_lookup: {n} ids of a {table.shape} table need ids >= {4 * n} and y >= {4 * n * table.k} bytes")
    pipeline = ctx.pipeline(f"embedding_{table.shader_suffix}.wgsl")
    groups_x = -(-(table.k // 4) // shader_constant(f"embedding_{table.shader_suffix}.wgsl", "WG_SIZE"))
    bind_groups = []
    for ci, chunk in enumerate(table.chunks):
        pkey = ("embedding", ci, float(scale))
        params = table._params.get(pkey)
        if params is None:
            data = struct.pack("<3If", table.k, chunk.row_start, chunk.rows, float(scale))
            params = table._params[pkey] = ctx.buffer(data, uniform=True, label="embedding params")
        bkey = ("embedding", ci, float(scale), id(ids_buf), id(y_buf))
        entry = table._bind_groups.get(bkey)
        if entry is None:
            entry = table._bind_groups[bkey] = (ctx.bind_group(pipeline, [params, *chunk.buffers, ids_buf, y_buf]), ids_buf, y_buf)
        bind_groups.append(entry[0])
    with OpenPass(ctx, target) as cpass:
        for bind_group in bind_groups:
            ctx.dispatch(cpass, pipeline, bind_group, (groups_x, n, 1))
