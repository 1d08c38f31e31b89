// GGUF weights on the GPU: the browser twin of py/wgllm/gpu/weights.py (read its docstring for the
// repacked layout). Each (n_out, k) matrix is split, block by block, into its fields (quants apart
// from the f16 scales), one array per field, row-major, so any range of rows is a contiguous slice;
// the arrays are cut into chunks of whole rows so that no binding exceeds the device's
// maxStorageBufferBindingSize. F32/F16/BF16 rows of k % 32 != 0 (k % 4 == 0) are zero-padded to whole
// 32-element units (paddedK), as the kernels walk them. Weights arrive from the stream a few MiB of
// rows at a time, are repacked and written with queue.writeBuffer: the file is never held whole.
// A pairs weight (ffn_gate and ffn_up as one matmul writing act(gate) * up) has row 2p = gate row p and
// row 2p + 1 = up row p; each chunk holds its pairs' gate rows, then their up rows (weights.py's upload_pairs).

import { DeviceLimitError, ModelFormatError } from "./errors";
import type { GGUFTensorInfo } from "./gguf";
import { type GpuContext, shaderConstant } from "./gpu";
import { WEIGHT_TYPES, type WeightTypeRow } from "./weight_types";

/** A type's block layout; each field is bytes [start, end) of every GGUF block, or decoded scales ("sm": Q4_K's, Q5_K's; "sc3": Q3_K's). */
type TypeLayout = WeightTypeRow;

/** ggml type id -> layout; the order of `fields` is the shaders' binding order (weight_types.ts, composed with the shaders from shaders/compose/types). */
export const GPU_TYPES: Readonly<Record<number, TypeLayout>> = WEIGHT_TYPES;
const SUPPORTED = Object.values(GPU_TYPES).map((t) => t.name).join(", ");

/** Raw bytes staged per repack: a few MiB, whatever the tensor's size. */
const STAGE_BYTES = 4 << 20;

export interface GpuChunk {
  readonly rowStart: number;
  readonly rows: number;
  readonly buffers: GPUBuffer[]; // one per field, rows [rowStart, rowStart + rows)
}

/** The plan of one matrix: checked against the limits before anything is allocated. */
export class WeightPlan {
  readonly layout: TypeLayout;
  readonly nOut: number;
  readonly k: number;
  readonly rowBytes: number; // GGUF bytes per row
  readonly fieldRowBytes: number[]; // repacked bytes per row of each field (float rows padded to paddedK(k))
  readonly chunkRows: number;

  constructor(readonly file: string, readonly tensor: GGUFTensorInfo, maxBinding: number, readonly pairs = false) {
    const name = `${file}: tensor ${tensor.name}`;
    const layout = GPU_TYPES[tensor.type];
    if (!layout) throw new ModelFormatError(`${name}: GGML type ${tensor.typeName} has no GPU kernels (supported: ${SUPPORTED})`);
    if (tensor.shape.length !== 2) throw new ModelFormatError(`${name}: a GPU weight must be 2-D (n_out, k), got shape [${tensor.shape}]`);
    const [nOut, k] = tensor.shape;
    const shape = `${name}: ${layout.name} weight of shape [${nOut}, ${k}]`;
    if (k === 0 || nOut === 0) throw new ModelFormatError(`${shape} is empty`);
    if (layout.block === 1 && k % 4) throw new ModelFormatError(`${shape}: k = ${k} is not a multiple of 4 (the kernels read x rows of k as vec4s)`);
    if (layout.block > 1 && k % 32) throw new ModelFormatError(`${shape}: k must be a positive multiple of 32 (and of the ${layout.block}-element block)`);
    if (k % layout.block) throw new ModelFormatError(`${shape}: k = ${k} is not a multiple of the ${layout.name} block of ${layout.block}`);
    const nb = k / layout.block;
    this.layout = layout;
    this.nOut = nOut;
    this.k = k;
    this.rowBytes = nb * layout.size;
    // float rows zero-padded to whole 32-element units (paddedK; quantised rows are whole blocks already)
    this.fieldRowBytes = layout.fields.map((fl) => (paddedK(k) / layout.block) * (fl.end - fl.start));
    const perRow = Math.max(...this.fieldRowBytes);
    const rows = Math.floor(maxBinding / perRow);
    if (rows < 1) throw new DeviceLimitError("maxStorageBufferBindingSize", perRow, maxBinding, `${name}: one ${layout.name} row (${perRow} bytes)`);
    // Field rows are whole 2-byte units: chunks of an even number of rows keep every write 4-byte aligned
    // (a pairs weight's: an even number of pairs, so that its up half starts aligned too).
    if (pairs && rows < 4) throw new DeviceLimitError("maxStorageBufferBindingSize", 4 * perRow, maxBinding, `${name}: two (gate, up) pairs of ${layout.name} rows`);
    this.chunkRows = pairs ? rows - (rows % 4) : rows > 1 ? rows - (rows % 2) : 1;
  }

  /** The plan of ffn_gate and ffn_up (one type and shape, an even number of rows) as one weight of
   * (gate, up) row pairs named `name` (weights.py's upload_pairs). */
  static pairs(file: string, name: string, gate: GGUFTensorInfo, up: GGUFTensorInfo, maxBinding: number): WeightPlan {
    const [nFf, k] = gate.shape;
    if (gate.type !== up.type || up.shape[0] !== nFf || up.shape[1] !== k || nFf % 2) throw new Error(`internal: ${name} needs gate and up of one type and even shape`);
    const info: GGUFTensorInfo = { ...gate, name, shape: [2 * nFf, k], nBytes: 2 * gate.nBytes, nElements: 2 * gate.nElements, offset: -1 };
    return new WeightPlan(file, info, maxBinding, true);
  }

  /** The plan of `parts` (of one type and width, as attn_q, attn_k, attn_v) stacked row-wise as one
   * weight named `name`: rows are independent in every GGUF type, so the stacked weight's repacked
   * arrays are the parts' arrays one after another (weights.py's stacked_qkv). */
  static stacked(file: string, name: string, parts: GGUFTensorInfo[], maxBinding: number): WeightPlan {
    const [first] = parts;
    const nOut = parts.reduce((s, t) => s + t.shape[0], 0);
    const nBytes = parts.reduce((s, t) => s + t.nBytes, 0);
    const info: GGUFTensorInfo = { ...first, name, shape: [nOut, first.shape[1]], nBytes, nElements: nOut * first.shape[1], offset: -1 };
    return new WeightPlan(file, info, maxBinding);
  }

  get shader(): string {
    return this.layout.name.toLowerCase();
  }

  /** Buffer sizes of every chunk's fields, in order. */
  chunkSizes(): { rowStart: number; rows: number; sizes: number[] }[] {
    const out = [];
    for (let start = 0; start < this.nOut; start += this.chunkRows) {
      const rows = Math.min(this.chunkRows, this.nOut - start);
      out.push({ rowStart: start, rows, sizes: this.fieldRowBytes.map((b) => rows * b) });
    }
    return out;
  }
}

export class GpuWeight {
  readonly chunks: GpuChunk[];

  constructor(readonly plan: WeightPlan, buffers: GPUBuffer[]) {
    const per = plan.layout.fields.length;
    this.chunks = plan.chunkSizes().map((c, i) => ({ rowStart: c.rowStart, rows: c.rows, buffers: buffers.slice(i * per, (i + 1) * per) }));
  }

  static async allocate(ctx: GpuContext, plan: WeightPlan): Promise<GpuWeight> {
    const buffers = await ctx.allocating(`${plan.file}: tensor ${plan.tensor.name}`, () =>
      plan.chunkSizes().flatMap((c) =>
        c.sizes.map((size, fi) => ctx.buffer(size, `${plan.tensor.name}.${plan.layout.fields[fi].name}[${c.rowStart}:${c.rowStart + c.rows}]`)),
      ),
    );
    return new GpuWeight(plan, buffers);
  }

  get buffers(): GPUBuffer[] {
    return this.chunks.flatMap((c) => c.buffers);
  }

  /** Receives a tensor's bytes in order, repacks them a bounded number of rows at a time, and
   * writes them to rows [rowStart, rowStart + nRows) (default: the whole weight; a part of a
   * stacked weight, such as attn_k in a stacked QKV, is written to its own row range). For a pairs
   * weight, `half` says which of each pair the tensor's rows are (0: gate, 1: up). */
  uploader(ctx: GpuContext, rowStart = 0, nRows = this.plan.nOut, half?: 0 | 1): (bytes: Uint8Array | null) => void {
    const p = this.plan;
    if (p.pairs !== (half !== undefined) || (p.pairs && (rowStart !== 0 || nRows !== p.nOut / 2))) {
      throw new Error(`internal: ${p.tensor.name} takes ${p.pairs ? "a whole gate or up tensor" : "row ranges"}`);
    }
    const name = nRows === p.nOut ? p.tensor.name : p.pairs ? `${half ? "up" : "gate"} rows of ${p.tensor.name}` : `rows ${rowStart}..${rowStart + nRows} of ${p.tensor.name}`;
    if (rowStart % 2 || rowStart + nRows > p.nOut || (rowStart + nRows < p.nOut && nRows % 2)) {
      throw new Error(`internal: ${name} is not a range of whole pairs of rows of ${p.nOut}`); // writes must stay 4-byte aligned
    }
    let stageRows = Math.max(2, Math.floor(STAGE_BYTES / p.rowBytes));
    stageRows -= stageRows % 2; // even, as chunkRows is: every write lands 4-byte aligned
    stageRows = Math.min(stageRows, nRows + (nRows % 2));
    const stage = new Uint8Array(stageRows * p.rowBytes);
    const out = p.fieldRowBytes.map((b) => new Uint8Array(stageRows * b + 4)); // + padding to 4
    let filled = 0;
    let row0 = rowStart; // first row in `stage`
    const flush = () => {
      if (filled % p.rowBytes) throw new Error(`internal: ${name} staged ${filled} bytes, not whole rows`);
      const rows = filled / p.rowBytes;
      if (rows === 0) return;
      repackRows(p.layout, stage, rows, p.k, out);
      for (const chunk of this.chunks) {
        // the chunk's rows of this tensor: its own, or a pairs chunk's gate or up half
        const [start, count, at] = p.pairs ? [chunk.rowStart / 2, chunk.rows / 2, half! * (chunk.rows / 2)] : [chunk.rowStart, chunk.rows, 0];
        const a = Math.max(row0, start);
        const b = Math.min(row0 + rows, start + count);
        if (a >= b) continue;
        chunk.buffers.forEach((buf, fi) => {
          const fb = p.fieldRowBytes[fi];
          const size = Math.ceil(((b - a) * fb) / 4) * 4;
          ctx.device.queue.writeBuffer(buf, (at + a - start) * fb, out[fi].buffer, (a - row0) * fb, size);
        });
      }
      row0 += rows;
      filled = 0;
    };
    return (bytes) => {
      if (bytes === null) {
        flush();
        if (row0 !== rowStart + nRows) throw new Error(`internal: ${name} got ${row0 - rowStart} of ${nRows} rows`);
        return;
      }
      let at = 0;
      while (at < bytes.length) {
        const n = Math.min(bytes.length - at, stage.length - filled);
        stage.set(bytes.subarray(at, at + n), filled);
        filled += n;
        at += n;
        if (filled === stage.length) flush();
      }
    };
  }
}

/** Elements a repacked row holds: k rounded up to whole 32-element units (weights.py's padded_k):
 * F32/F16/BF16 rows of k % 32 != 0 get zeros after the k-th, which the kernels walk as a last unit. */
export function paddedK(k: number): number {
  return Math.ceil(k / 32) * 32;
}

/** Split `rows` rows (of k elements) of GGUF blocks in `raw` into the field arrays `out` (weights.py's repack). */
function repackRows(layout: TypeLayout, raw: Uint8Array, rows: number, k: number, out: Uint8Array[]): void {
  const nb = k / layout.block;
  const nBlocks = rows * nb;
  const size = layout.size;
  if (layout.block === 1) {
    const [rowBytes, padded] = [k * size, paddedK(k) * size];
    if (rowBytes === padded) {
      out[0].set(raw.subarray(0, nBlocks * size)); // float rows are already one aligned array
      return;
    }
    for (let r = 0; r < rows; r++) {
      out[0].set(raw.subarray(r * rowBytes, (r + 1) * rowBytes), r * padded);
      out[0].fill(0, r * padded + rowBytes, (r + 1) * padded);
    }
    return;
  }
  layout.fields.forEach((fl, fi) => {
    const dst = out[fi];
    const len = fl.end - fl.start;
    if (fl.name === "sm") {
      for (let b = 0; b < nBlocks; b++) scaleMinK4(raw, b * size + fl.start, dst, b * 16);
      return;
    }
    if (fl.name === "sc3") {
      for (let b = 0; b < nBlocks; b++) scalesQ3K(raw, b * size + fl.start, dst, b * 16);
      return;
    }
    for (let b = 0, o = 0; b < nBlocks; b++) {
      const s = b * size + fl.start;
      for (let j = 0; j < len; j++) dst[o++] = raw[s + j];
    }
  });
}

/** Q4_K's 12 packed scale bytes -> eight 6-bit scales then eight mins (ggml's get_scale_min_k4). */
function scaleMinK4(raw: Uint8Array, at: number, dst: Uint8Array, o: number): void {
  for (let j = 0; j < 4; j++) {
    const lo = raw[at + j];
    const mid = raw[at + 4 + j];
    const hi = raw[at + 8 + j];
    dst[o + j] = lo & 0x3f;
    dst[o + 4 + j] = (hi & 0x0f) | ((lo >> 6) << 4);
    dst[o + 8 + j] = mid & 0x3f;
    dst[o + 12 + j] = (hi >> 4) | ((mid >> 6) << 4);
  }
}

/** Q3_K's 12 packed scale bytes -> its sixteen 6-bit scales less 32, as int8 bytes (quant.py's q3_k_scales, which weights.py's repack uses). */
function scalesQ3K(raw: Uint8Array, at: number, dst: Uint8Array, o: number): void {
  for (let s = 0; s < 16; s++) {
    const low = (raw[at + (s % 8)] >> (4 * (s >> 3))) & 0x0f;
    const high = (raw[at + 8 + (s % 4)] >> (2 * (s >> 2))) & 3;
    dst[o + s] = ((low | (high << 4)) - 32) & 0xff;
  }
}

// -- vectors (norm weights, biases, GPT-2's learned positions): kept in f32 --------------------

function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** The float32 values of a tensor's GGUF bytes (every type wgllm/quant.py dequantises). */
export function dequantize(file: string, t: GGUFTensorInfo, raw: Uint8Array): Float32Array {
  const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const out = new Float32Array(t.nElements);
  const f16 = (at: number) => f16ToF32(v.getUint16(at, true));
  const nb = t.nElements / 32;
  switch (t.typeName) {
    case "F32":
      for (let i = 0; i < out.length; i++) out[i] = v.getFloat32(4 * i, true);
      return out;
    case "F16":
      for (let i = 0; i < out.length; i++) out[i] = f16(2 * i);
      return out;
    case "BF16": {
      const bits = new Uint32Array(out.buffer); // the top halves of f32s
      for (let i = 0; i < out.length; i++) bits[i] = v.getUint16(2 * i, true) << 16;
      return out;
    }
    case "Q8_0":
      for (let b = 0; b < nb; b++) {
        const d = f16(34 * b);
        for (let j = 0; j < 32; j++) out[32 * b + j] = d * v.getInt8(34 * b + 2 + j);
      }
      return out;
    case "Q4_0":
    case "Q4_1":
    case "Q5_0": {
      const size = { Q4_0: 18, Q4_1: 20, Q5_0: 22 }[t.typeName];
      const qsAt = { Q4_0: 2, Q4_1: 4, Q5_0: 6 }[t.typeName];
      for (let b = 0; b < nb; b++) {
        const at = size * b;
        const d = f16(at);
        const m = t.typeName === "Q4_1" ? f16(at + 2) : 0;
        const qh = t.typeName === "Q5_0" ? v.getUint32(at + 2, true) : 0;
        for (let j = 0; j < 16; j++) {
          const byte = raw[at + qsAt + j];
          let lo = byte & 15;
          let hi = byte >> 4;
          if (t.typeName === "Q4_1") {
            out[32 * b + j] = d * lo + m;
            out[32 * b + j + 16] = d * hi + m;
            continue;
          }
          if (t.typeName === "Q5_0") {
            lo |= ((qh >>> j) & 1) << 4;
            hi |= ((qh >>> (j + 16)) & 1) << 4;
          }
          const off = t.typeName === "Q5_0" ? 16 : 8;
          out[32 * b + j] = d * (lo - off);
          out[32 * b + j + 16] = d * (hi - off);
        }
      }
      return out;
    }
    default: {
      const blocks = BLOCK_DEQUANTIZERS[t.typeName];
      if (!blocks) throw new ModelFormatError(`${file}: tensor ${t.name} is ${t.typeName}; wgllm dequantises 1-D tensors and position tables from ${DEQUANTIZED_TYPES.join(", ")}`);
      blocks(v, raw, out);
      return out;
    }
  }
}

// The other block types, as wgllm/quant.py's numpy dequantisers compute them: every product and sum
// rounded to f32 in numpy's order (Math.fround), so the values are bit-identical to Python's.
const fr = Math.fround;
const IQ4_NL_VALUES = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];
type BlockDequantizer = (v: DataView, raw: Uint8Array, out: Float32Array) => void;

/** Q4_K (bits 4, 144 bytes) and Q5_K (bits 5, 176 bytes): d, dmin, packed scales, [qh,] qs; 8 sub-blocks of 32. */
function kQuant45(bits: 4 | 5): BlockDequantizer {
  const size = bits === 4 ? 144 : 176;
  const qsAt = bits === 4 ? 16 : 48;
  const sm = new Uint8Array(16); // eight scales, then eight mins
  return (v, raw, out) => {
    for (let b = 0; b < out.length / 256; b++) {
      const at = size * b;
      const d = f16ToF32(v.getUint16(at, true));
      const dmin = f16ToF32(v.getUint16(at + 2, true));
      scaleMinK4(raw, at + 4, sm, 0);
      for (let sub = 0; sub < 8; sub++) {
        const scale = fr(d * sm[sub]);
        const offset = fr(dmin * sm[8 + sub]);
        const g = sub >> 1;
        const nib = sub & 1;
        for (let l = 0; l < 32; l++) {
          let q = nib ? raw[at + qsAt + 32 * g + l] >> 4 : raw[at + qsAt + 32 * g + l] & 15;
          if (bits === 5) q |= ((raw[at + 16 + l] >> sub) & 1) << 4;
          out[256 * b + 32 * sub + l] = fr(fr(q * scale) - offset);
        }
      }
    }
  };
}

/** Q2_K/Q3_K's 2-bit element e of a block whose qs start at `at`: bits 2j..2j+1 of qs[32h+l], e = 128h+32j+l. */
function crumb(raw: Uint8Array, at: number, e: number): number {
  return (raw[at + 32 * (e >> 7) + (e & 31)] >> (2 * ((e >> 5) & 3))) & 3;
}

const q3 = new Uint8Array(16); // Q3_K's sixteen scales less 32 (scalesQ3K), read as int8
const q3s = new Int8Array(q3.buffer);

const BLOCK_DEQUANTIZERS: Record<string, BlockDequantizer> = {
  Q5_1: (v, raw, out) => {
    for (let b = 0; b < out.length / 32; b++) {
      const at = 24 * b;
      const d = f16ToF32(v.getUint16(at, true));
      const m = f16ToF32(v.getUint16(at + 2, true));
      const qh = v.getUint32(at + 4, true);
      for (let j = 0; j < 16; j++) {
        const lo = (raw[at + 8 + j] & 15) | (((qh >>> j) & 1) << 4);
        const hi = (raw[at + 8 + j] >> 4) | (((qh >>> (j + 16)) & 1) << 4);
        out[32 * b + j] = fr(fr(lo * d) + m);
        out[32 * b + j + 16] = fr(fr(hi * d) + m);
      }
    }
  },
  IQ4_NL: (v, raw, out) => {
    for (let b = 0; b < out.length / 32; b++) {
      const at = 18 * b;
      const d = f16ToF32(v.getUint16(at, true));
      for (let j = 0; j < 16; j++) {
        out[32 * b + j] = fr(IQ4_NL_VALUES[raw[at + 2 + j] & 15] * d);
        out[32 * b + j + 16] = fr(IQ4_NL_VALUES[raw[at + 2 + j] >> 4] * d);
      }
    }
  },
  Q4_K: kQuant45(4),
  Q5_K: kQuant45(5),
  Q2_K: (v, raw, out) => {
    for (let b = 0; b < out.length / 256; b++) {
      const at = 84 * b; // scales (16), qs (64), d, dmin
      const d = f16ToF32(v.getUint16(at + 80, true));
      const dmin = f16ToF32(v.getUint16(at + 82, true));
      for (let e = 0; e < 256; e++) {
        const sc = raw[at + (e >> 4)];
        out[256 * b + e] = fr(fr(crumb(raw, at + 16, e) * fr(d * (sc & 15))) - fr(dmin * (sc >> 4)));
      }
    }
  },
  Q3_K: (v, raw, out) => {
    for (let b = 0; b < out.length / 256; b++) {
      const at = 110 * b; // hmask (32), qs (64), scales (12), d
      const d = f16ToF32(v.getUint16(at + 108, true));
      scalesQ3K(raw, at + 96, q3, 0);
      for (let e = 0; e < 256; e++) {
        const hbit = (raw[at + (e & 31)] >> (e >> 5)) & 1;
        const q = crumb(raw, at + 32, e) - ((hbit ^ 1) << 2);
        out[256 * b + e] = fr(q * fr(d * q3s[e >> 4]));
      }
    }
  },
  IQ4_XS: (v, raw, out) => {
    for (let b = 0; b < out.length / 256; b++) {
      const at = 136 * b; // d, scales_h (u16), scales_l (4), qs (128)
      const d = f16ToF32(v.getUint16(at, true));
      const scalesH = v.getUint16(at + 2, true);
      for (let ib = 0; ib < 8; ib++) {
        const low = (raw[at + 4 + (ib >> 1)] >> (4 * (ib & 1))) & 15;
        const high = (scalesH >> (2 * ib)) & 3;
        const scale = fr(d * (low + 16 * high - 32));
        for (let j = 0; j < 16; j++) {
          const byte = raw[at + 8 + 16 * ib + j];
          out[256 * b + 32 * ib + j] = fr(IQ4_NL_VALUES[byte & 15] * scale);
          out[256 * b + 32 * ib + 16 + j] = fr(IQ4_NL_VALUES[byte >> 4] * scale);
        }
      }
    }
  },
  Q6_K: (v, raw, out) => {
    for (let b = 0; b < out.length / 256; b++) {
      const at = 210 * b; // ql (128), qh (64), scales (16 int8), d
      const d = f16ToF32(v.getUint16(at + 208, true));
      for (let e = 0; e < 256; e++) {
        const h = e >> 7;
        const k = (e >> 5) & 3;
        const l = e & 31;
        const ql = raw[at + 64 * h + 32 * (k & 1) + l];
        const q = (k < 2 ? ql & 15 : ql >> 4) | (((raw[at + 128 + 32 * h + l] >> (2 * k)) & 3) << 4);
        out[256 * b + e] = fr((q - 32) * fr(d * v.getInt8(at + 192 + (e >> 4))));
      }
    }
  },
};

/** Every type the 1-D dequantiser reads (wgllm/quant.py's SUPPORTED_TYPES). */
export const DEQUANTIZED_TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", ...Object.keys(BLOCK_DEQUANTIZERS)];

// -- dispatch geometry, read from the kernels --------------------------------------------------

export interface MatmulGeometry {
  matvecRows: number; // output rows per matvec workgroup
  tile: number; // output rows and x rows per matmul workgroup
  splitRows: number; // output rows per gpu-family matvec (matvec_split) workgroup
  splitThreads: number; // its default thread count (MV_WG), capped by the device's invocation limit
  tiledRows: number; // output rows per gpu-family prefill (main_tiled) workgroup
  tiledN: number; // its x rows
}

export function matmulGeometry(shader: string): MatmulGeometry {
  const op = `matmul_${shader}`;
  return {
    matvecRows: shaderConstant(op, "MATVEC_ROWS"),
    tile: shaderConstant(op, "TILE"),
    splitRows: shaderConstant(op, "MV_ROWS"),
    splitThreads: shaderConstant(op, "MV_WG"),
    tiledRows: shaderConstant(op, "TILED_ROWS"),
    tiledN: shaderConstant(op, "TILED_N"),
  };
}

export function embeddingGroupSize(shader: string): number {
  return shaderConstant(`embedding_${shader}`, "WG_SIZE");
}
