// Streaming GGUF reader, the browser twin of py/wgllm/gguf_io.py (same validation, same messages
// where they can be the same). It reads a ReadableStream (fetch(url).body) once, front to back:
// the header is parsed from the first bytes (its buffer grows only until the header is complete),
// then each tensor's bytes are handed out chunk by chunk in file order, as views of the stream's
// own chunks, so the whole file is never held in one buffer and no Range request is ever needed.
//
// Every length is checked before it is read: against the file size when it is known (the
// Content-Length), else against MAX_HEADER_BYTES, so a forged array count fails fast instead of
// buffering the rest of the file. Little-endian throughout (as GGUF and every WebGPU host are).

import { ModelFetchError, ModelFormatError } from "./errors";

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const SUPPORTED_VERSIONS = [2, 3] as const;
export const DEFAULT_ALIGNMENT = 32;
/** The largest header accepted when the file size is unknown (Gemma 3's 262k-token vocabulary is ~6 MiB). */
export const MAX_HEADER_BYTES = 64 * 1024 * 1024;

/** GGUF metadata value types (gguf.GGUFValueType). */
export const GGUFValueType = {
  UINT8: 0, INT8: 1, UINT16: 2, INT16: 3, UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7,
  STRING: 8, ARRAY: 9, UINT64: 10, INT64: 11, FLOAT64: 12,
} as const;

/** Every ggml tensor type by name (gguf.GGMLQuantizationType), to name the ones we refuse. */
export const GGML_TYPE_NAMES: Readonly<Record<number, string>> = {
  0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
  10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS",
  17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS",
  24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 30: "BF16", 34: "TQ1_0",
  35: "TQ2_0", 39: "MXFP4", 40: "NVFP4", 41: "Q1_0",
};

/** The tensor types wgllm reads: type id -> [name, elements per block, bytes per block]. */
export const SUPPORTED_TENSOR_TYPES: Readonly<Record<number, readonly [string, number, number]>> = {
  0: ["F32", 1, 4],
  1: ["F16", 1, 2],
  30: ["BF16", 1, 2],
  8: ["Q8_0", 32, 34],
  2: ["Q4_0", 32, 18],
  3: ["Q4_1", 32, 20],
  6: ["Q5_0", 32, 22],
  12: ["Q4_K", 256, 144],
  14: ["Q6_K", 256, 210],
  7: ["Q5_1", 32, 24],
  20: ["IQ4_NL", 32, 18],
  13: ["Q5_K", 256, 176],
  23: ["IQ4_XS", 256, 136],
  11: ["Q3_K", 256, 110],
  10: ["Q2_K", 256, 84],
};
const SUPPORTED_NAMES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q4_K", "Q6_K", "Q5_1", "IQ4_NL", "Q5_K", "IQ4_XS", "Q3_K", "Q2_K"].join(", ");

export type GGUFNumericArray =
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array
  | Float32Array | Float64Array | BigUint64Array | BigInt64Array;
/** 64-bit integers are numbers when they fit exactly, else bigints; numeric arrays are typed arrays. */
export type GGUFValue = number | bigint | boolean | string | GGUFNumericArray | boolean[] | string[];

export interface GGUFTensorInfo {
  readonly name: string;
  readonly type: number; // ggml type id
  readonly typeName: string;
  readonly shape: readonly number[]; // numpy order: the last axis is the contiguous one (ggml's ne[0])
  readonly offset: number; // absolute byte offset in the file
  readonly nBytes: number;
  readonly nElements: number;
}

/** One piece of a tensor's bytes: `bytes` go at `offset` within the tensor. */
export interface GGUFTensorChunk {
  readonly tensor: GGUFTensorInfo;
  readonly offset: number;
  readonly bytes: Uint8Array;
}

type Kind = "string" | "number" | "bigint" | "boolean" | "array";

export class GGUFHeader {
  constructor(
    readonly source: string,
    readonly version: number,
    readonly metadata: ReadonlyMap<string, GGUFValue>,
    readonly valueTypes: ReadonlyMap<string, number>, // key -> GGUFValueType of its value
    readonly tensors: readonly GGUFTensorInfo[], // in header order
    readonly alignment: number,
    readonly dataOffset: number, // where tensor data starts (header end rounded up to alignment)
  ) {}

  get architecture(): string {
    return this.require("general.architecture", "string") as string;
  }

  get(key: string): GGUFValue | undefined {
    return this.metadata.get(key);
  }

  /** The value of `key`, checked to be of `kind` ("array": a typed array or a list). */
  require(key: string, kind?: Kind): GGUFValue {
    const value = this.metadata.get(key);
    if (value === undefined) throw new ModelFormatError(`${this.source}: missing metadata key ${key}`);
    const actual = typeof value === "object" ? "array" : typeof value;
    if (kind !== undefined && actual !== kind) {
      throw new ModelFormatError(`${this.source}: metadata key ${key} is ${actual} ${String(value).slice(0, 80)}, expected ${kind}`);
    }
    return value;
  }

  /** The tensor `name`, checked against `shape` (numpy order) when one is given. */
  tensor(name: string, shape?: readonly number[]): GGUFTensorInfo {
    const t = this.tensors.find((x) => x.name === name);
    if (!t) throw new ModelFormatError(`${this.source}: missing tensor ${name}`);
    if (shape && (shape.length !== t.shape.length || shape.some((d, i) => d !== t.shape[i]))) {
      throw new ModelFormatError(`${this.source}: tensor ${name} has shape [${t.shape}], expected [${shape}]`);
    }
    return t;
  }
}

/** Buffers the stream's unread bytes: buf[start, end) begins at file position `pos`. */
class StreamCursor {
  private buf = new Uint8Array(0);
  private start = 0;
  private end = 0;
  pos = 0;

  constructor(
    private readonly reader: ReadableStreamDefaultReader<Uint8Array>,
    readonly source: string,
    readonly size: number | undefined,
  ) {}

  get available(): number {
    return this.end - this.start;
  }

  fail(what: string): ModelFormatError {
    return new ModelFormatError(`${this.source}: not a valid GGUF file: ${what} (at byte ${this.pos})`);
  }

  private eof(n: number | bigint, what: string, left: number): ModelFormatError {
    return this.fail(`${what} needs ${n} bytes but the file ends after ${left}`);
  }

  /** Make `n` bytes available (header phase), or fail naming `what`. */
  async need(n: number | bigint, what: string): Promise<void> {
    if (typeof n === "number" && n <= this.available) return;
    const left = this.size === undefined ? undefined : this.size - this.pos;
    if (left !== undefined && BigInt(n) > BigInt(left)) throw this.eof(n, what, left);
    if (BigInt(this.pos) + BigInt(n) > BigInt(MAX_HEADER_BYTES)) {
      throw this.fail(`${what} needs ${n} bytes, which would make the header larger than ${MAX_HEADER_BYTES} bytes`);
    }
    const want = Number(n);
    while (this.available < want) {
      const { done, value } = await this.reader.read();
      if (done) throw this.eof(n, what, this.available);
      this.append(value);
    }
  }

  private append(chunk: Uint8Array): void {
    const keep = this.available;
    if (this.end + chunk.length > this.buf.length) {
      if (keep + chunk.length <= this.buf.length) {
        this.buf.copyWithin(0, this.start, this.end);
      } else {
        const grown = new Uint8Array(Math.max(2 * this.buf.length, keep + chunk.length));
        grown.set(this.buf.subarray(this.start, this.end));
        this.buf = grown;
      }
      this.start = 0;
      this.end = keep;
    }
    this.buf.set(chunk, this.end);
    this.end += chunk.length;
  }

  /** `n` bytes already made available by need(), as a view valid until the next need(). */
  take(n: number): Uint8Array {
    const out = this.buf.subarray(this.start, this.start + n);
    this.start += n;
    this.pos += n;
    return out;
  }

  private view(n: number): DataView {
    const b = this.take(n);
    return new DataView(b.buffer, b.byteOffset, n);
  }

  async u32(what: string): Promise<number> {
    await this.need(4, what);
    return this.view(4).getUint32(0, true);
  }

  async u64(what: string): Promise<bigint> {
    await this.need(8, what);
    return this.view(8).getBigUint64(0, true);
  }

  // ignoreBOM: a token that starts with U+FEFF (Gemma has "\uFEFF//") must keep it
  private readonly decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

  async string(what: string): Promise<string> {
    const n = await this.u64(`length of ${what}`);
    await this.need(n, what);
    try {
      return this.decoder.decode(this.take(Number(n)));
    } catch (e) {
      throw this.fail(`${what} is not UTF-8 (${(e as Error).message})`);
    }
  }

  /** The unread bytes left from the header phase; the cursor gives up its buffer. */
  drain(): Uint8Array {
    const rest = this.buf.subarray(this.start, this.end);
    this.buf = new Uint8Array(0);
    this.start = this.end = 0;
    return rest;
  }
}

const SCALARS: Record<number, [number, (v: DataView) => number | bigint | boolean]> = {
  [GGUFValueType.UINT8]: [1, (v) => v.getUint8(0)],
  [GGUFValueType.INT8]: [1, (v) => v.getInt8(0)],
  [GGUFValueType.UINT16]: [2, (v) => v.getUint16(0, true)],
  [GGUFValueType.INT16]: [2, (v) => v.getInt16(0, true)],
  [GGUFValueType.UINT32]: [4, (v) => v.getUint32(0, true)],
  [GGUFValueType.INT32]: [4, (v) => v.getInt32(0, true)],
  [GGUFValueType.FLOAT32]: [4, (v) => v.getFloat32(0, true)],
  [GGUFValueType.BOOL]: [1, (v) => v.getUint8(0) !== 0],
  [GGUFValueType.UINT64]: [8, (v) => v.getBigUint64(0, true)],
  [GGUFValueType.INT64]: [8, (v) => v.getBigInt64(0, true)],
  [GGUFValueType.FLOAT64]: [8, (v) => v.getFloat64(0, true)],
};

const ARRAYS: Record<number, { BYTES_PER_ELEMENT: number; new (b: ArrayBuffer): GGUFNumericArray }> = {
  [GGUFValueType.UINT8]: Uint8Array,
  [GGUFValueType.INT8]: Int8Array,
  [GGUFValueType.UINT16]: Uint16Array,
  [GGUFValueType.INT16]: Int16Array,
  [GGUFValueType.UINT32]: Uint32Array,
  [GGUFValueType.INT32]: Int32Array,
  [GGUFValueType.FLOAT32]: Float32Array,
  [GGUFValueType.UINT64]: BigUint64Array,
  [GGUFValueType.INT64]: BigInt64Array,
  [GGUFValueType.FLOAT64]: Float64Array,
};

function toNumber(v: number | bigint | boolean): number | bigint | boolean {
  return typeof v === "bigint" && v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

async function readValue(cur: StreamCursor, vtype: number, key: string): Promise<GGUFValue> {
  const scalar = SCALARS[vtype];
  if (scalar) {
    await cur.need(scalar[0], `value of ${key}`);
    const b = cur.take(scalar[0]);
    return toNumber(scalar[1](new DataView(b.buffer, b.byteOffset, scalar[0])));
  }
  if (vtype === GGUFValueType.STRING) return cur.string(`value of ${key}`);
  if (vtype !== GGUFValueType.ARRAY) throw cur.fail(`key ${key} has unknown value type ${vtype}`);
  const itype = await cur.u32(`element type of ${key}`);
  const count = await cur.u64(`length of ${key}`);
  const Typed = ARRAYS[itype];
  if (Typed) {
    const nBytes = count * BigInt(Typed.BYTES_PER_ELEMENT);
    await cur.need(nBytes, `array ${key}`);
    return new Typed(cur.take(Number(nBytes)).slice().buffer); // a copy: aligned, and the cursor's buffer moves on
  }
  if (itype === GGUFValueType.BOOL) {
    await cur.need(count, `array ${key}`);
    return Array.from(cur.take(Number(count)), (x) => x !== 0);
  }
  if (itype === GGUFValueType.STRING) {
    // every string costs at least its 8-byte length: refuse counts the file cannot hold
    const room = cur.size === undefined ? MAX_HEADER_BYTES : cur.size - cur.pos;
    if (count * 8n > BigInt(room)) throw cur.fail(`array ${key} claims ${count} strings, more than the file can hold`);
    const out: string[] = new Array(Number(count));
    for (let i = 0; i < out.length; i++) out[i] = await cur.string(`element ${i} of ${key}`);
    return out;
  }
  throw cur.fail(`array ${key} has unsupported element type ${itype}`);
}

async function readHeader(cur: StreamCursor): Promise<GGUFHeader> {
  const src = cur.source;
  await cur.need(4, "magic");
  const magic = new DataView(cur.take(4).slice().buffer).getUint32(0, true);
  if (magic !== GGUF_MAGIC) throw new ModelFormatError(`${src}: not a GGUF file (expected the magic bytes 'GGUF' at the start)`);
  const version = await cur.u32("version");
  if (!(SUPPORTED_VERSIONS as readonly number[]).includes(version)) {
    throw cur.fail(`version ${version} is not one of (${SUPPORTED_VERSIONS.join(", ")})`);
  }
  const nTensors = await cur.u64("tensor count");
  const nKv = await cur.u64("metadata count");
  const room = BigInt(cur.size ?? MAX_HEADER_BYTES);
  if (nKv * 12n > room || nTensors * 24n > room) {
    throw cur.fail(`header claims ${nKv} keys and ${nTensors} tensors, more than the file can hold`);
  }
  const metadata = new Map<string, GGUFValue>();
  const valueTypes = new Map<string, number>();
  for (let i = 0n; i < nKv; i++) {
    const key = await cur.string("metadata key");
    if (metadata.has(key)) throw cur.fail(`metadata key ${key} appears twice`);
    const vtype = await cur.u32(`value type of ${key}`);
    metadata.set(key, await readValue(cur, vtype, key));
    valueTypes.set(key, vtype);
  }
  const raw: [string, bigint[], number, bigint][] = [];
  for (let i = 0n; i < nTensors; i++) {
    const name = await cur.string("tensor name");
    const nDims = await cur.u32(`dimension count of tensor ${name}`);
    if (nDims > 4) throw cur.fail(`tensor ${name} has ${nDims} dimensions, at most 4 expected`);
    const dims: bigint[] = [];
    for (let d = 0; d < nDims; d++) dims.push(await cur.u64(`dimension of tensor ${name}`));
    const type = await cur.u32(`type of tensor ${name}`);
    raw.push([name, dims, type, await cur.u64(`offset of tensor ${name}`)]);
  }
  const alignment = metadata.get("general.alignment") ?? DEFAULT_ALIGNMENT;
  const intTypes: number[] = [0, 1, 2, 3, 4, 5, 10, 11];
  const alignType = valueTypes.get("general.alignment");
  if (typeof alignment !== "number" || (alignType !== undefined && !intTypes.includes(alignType)) || alignment <= 0 || (alignment & (alignment - 1)) !== 0) {
    throw cur.fail(`general.alignment = ${String(alignment)}, expected a power of two`);
  }
  const dataOffset = Math.ceil(cur.pos / alignment) * alignment;
  const seen = new Set<string>();
  const tensors = raw.map(([name, dims, type, rel]) => {
    const t = tensorInfo(src, name, dims, type, rel, dataOffset, alignment, cur.size);
    if (seen.has(name)) throw new ModelFormatError(`${src}: tensor ${name} appears twice`);
    seen.add(name);
    return t;
  });
  // The stream is read once: tensors must not overlap (llama.cpp packs them back to back).
  const byOffset = [...tensors].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < byOffset.length; i++) {
    const [prev, t] = [byOffset[i - 1], byOffset[i]];
    if (t.offset < prev.offset + prev.nBytes) {
      throw new ModelFormatError(
        `${src}: tensor ${t.name} starts at byte ${t.offset}, inside tensor ${prev.name} (bytes ${prev.offset}..${prev.offset + prev.nBytes})`,
      );
    }
  }
  return new GGUFHeader(src, version, metadata, valueTypes, tensors, alignment, dataOffset);
}

function tensorInfo(
  src: string, name: string, dims: bigint[], type: number, rel: bigint, dataOffset: number, alignment: number, size?: number,
): GGUFTensorInfo {
  const where = `${src}: tensor ${name}`;
  const supported = SUPPORTED_TENSOR_TYPES[type];
  if (!supported) {
    const known = GGML_TYPE_NAMES[type];
    throw new ModelFormatError(
      known
        ? `${where} has tensor type ${known}, which wgllm does not read; supported: ${SUPPORTED_NAMES}`
        : `${where} has unknown tensor type ${type}; supported: ${SUPPORTED_NAMES}`,
    );
  }
  const [typeName, block, typeSize] = supported;
  if (dims.length === 0 || dims.some((d) => d <= 0n)) throw new ModelFormatError(`${where} has shape [${dims}], expected positive dimensions`);
  if (dims[0] % BigInt(block) !== 0n) {
    throw new ModelFormatError(`${where} has a row of ${dims[0]} elements, not a multiple of the ${typeName} block of ${block}`);
  }
  if (rel % BigInt(alignment) !== 0n) {
    throw new ModelFormatError(`${where} has data offset ${rel}, not a multiple of general.alignment ${alignment}`);
  }
  const nElements = dims.reduce((a, b) => a * b, 1n);
  const nBytes = (nElements / BigInt(block)) * BigInt(typeSize);
  const end = BigInt(dataOffset) + rel + nBytes;
  if (end > BigInt(size ?? Number.MAX_SAFE_INTEGER)) {
    throw new ModelFormatError(
      size === undefined
        ? `${where} ends at byte ${end}, beyond what a file can hold here`
        : `${where} needs bytes ${BigInt(dataOffset) + rel}..${end} but the file has ${size}: the file is truncated`,
    );
  }
  return {
    name, type, typeName,
    shape: dims.map(Number).reverse(),
    offset: dataOffset + Number(rel),
    nBytes: Number(nBytes),
    nElements: Number(nElements),
  };
}

/** A GGUF file being read: its header, then its tensors' bytes (iterate once). */
export class GGUFStream implements AsyncIterable<GGUFTensorChunk> {
  private started = false;

  constructor(
    readonly header: GGUFHeader,
    private readonly reader: ReadableStreamDefaultReader<Uint8Array>,
    private rest: Uint8Array, // bytes read past the header, starting at file position `pos`
    private pos: number,
  ) {}

  /** Each tensor's bytes, in file order, as views of the stream's chunks (no copies). */
  async *[Symbol.asyncIterator](): AsyncGenerator<GGUFTensorChunk> {
    if (this.started) throw new Error("a GGUFStream can be iterated only once");
    this.started = true;
    const src = this.header.source;
    let chunk = this.rest;
    this.rest = new Uint8Array(0);
    try {
      for (const tensor of [...this.header.tensors].sort((a, b) => a.offset - b.offset)) {
        let done = 0; // bytes of `tensor` handed out
        while (done < tensor.nBytes) {
          if (chunk.length === 0) {
            const r = await this.reader.read();
            if (r.done) {
              throw new ModelFormatError(
                `${src}: tensor ${tensor.name} needs bytes ${tensor.offset}..${tensor.offset + tensor.nBytes} but the file ends at ${this.pos}: the file is truncated`,
              );
            }
            chunk = r.value;
          }
          const skip = Math.min(chunk.length, Math.max(0, tensor.offset - this.pos)); // padding
          const n = Math.min(chunk.length - skip, tensor.nBytes - done);
          if (n > 0) yield { tensor, offset: done, bytes: chunk.subarray(skip, skip + n) };
          chunk = chunk.subarray(skip + n);
          this.pos += skip + n;
          done += n;
        }
      }
    } finally {
      await this.cancel();
    }
  }

  /** Stop reading (the rest of the download is abandoned). */
  async cancel(): Promise<void> {
    await this.reader.cancel().catch(() => undefined);
  }
}

export interface ReadGGUFOptions {
  /** Names the file in error messages (its URL). */
  source?: string;
  /** The file's size in bytes when known: lengths are then checked against it before any read. */
  size?: number;
}

/** Parse the header of the GGUF file arriving on `stream`; iterate the result for tensor bytes. */
export async function readGGUF(stream: ReadableStream<Uint8Array>, options: ReadGGUFOptions = {}): Promise<GGUFStream> {
  const reader = stream.getReader();
  const cur = new StreamCursor(reader, options.source ?? "GGUF stream", options.size);
  try {
    const header = await readHeader(cur);
    const pos = cur.pos;
    return new GGUFStream(header, reader, cur.drain(), pos);
  } catch (e) {
    await reader.cancel().catch(() => undefined);
    throw e;
  }
}

/** Fetch `url` and parse its header; the body streams on as the tensors are iterated. */
export async function fetchGGUF(url: string, init?: RequestInit): Promise<GGUFStream> {
  let response: Response;
  try {
    response = await fetch(url, init);
  } catch (e) {
    throw new ModelFetchError(url, undefined, "", { cause: e });
  }
  if (!response.ok || !response.body) throw new ModelFetchError(url, response.status, response.statusText);
  // Content-Length counts encoded bytes: it is the file size only when no encoding was applied.
  const length = response.headers.get("Content-Length");
  const encoded = (response.headers.get("Content-Encoding") ?? "identity") !== "identity";
  const size = length !== null && !encoded && /^\d+$/.test(length) ? Number(length) : undefined;
  return readGGUF(response.body, { source: url, size });
}
