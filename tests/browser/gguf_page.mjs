// In-page side of gguf.spec.ts: reads a GGUF through the bundle's streaming reader and describes
// it the way gguf_fixtures.py describes Python's reading (same JSON encoding), plus how it streamed.

import * as wgllm from "/web/dist/genai_bundle.mjs";

const CRC_TABLE = new Uint32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c;
});

/** CRC-32 (zlib's polynomial) continued over `bytes`; start from 0. */
function crc32(crc, bytes) {
  let c = ~crc;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

const DTYPES = new Map([
  [Uint8Array, "|u1"], [Int8Array, "|i1"], [Uint16Array, "<u2"], [Int16Array, "<i2"],
  [Uint32Array, "<u4"], [Int32Array, "<i4"], [Float32Array, "<f4"], [Float64Array, "<f8"],
  [BigUint64Array, "<u8"], [BigInt64Array, "<i8"],
]);
const V = wgllm.GGUFValueType;
const FLOAT_TYPES = new Set([V.FLOAT32, V.FLOAT64]);

function encode(value, vtype) {
  if (typeof value === "boolean") return { t: "bool", v: value };
  if (typeof value === "string") return { t: "str", v: value };
  if (typeof value === "bigint") return { t: "int", v: String(value) };
  if (typeof value === "number") return FLOAT_TYPES.has(vtype) ? { t: "float", v: value } : { t: "int", v: String(value) };
  if (Array.isArray(value)) {
    if (value.length > 0 && value.every((x) => typeof x === "boolean")) return { t: "array", dtype: "|b1", v: value };
    return { t: "strings", v: value };
  }
  const dtype = DTYPES.get(value.constructor);
  if (!dtype) return { t: `unexpected ${value.constructor.name}` };
  const floats = value instanceof Float32Array || value instanceof Float64Array;
  return { t: "array", dtype, v: Array.from(value, (x) => (floats ? x : String(x))) };
}

/** A ReadableStream handing out `bytes` in chunks of `size` (fresh copies, as a network would). */
function rechunked(bytes, size) {
  let pos = 0;
  return new ReadableStream({
    pull(controller) {
      if (pos >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(pos, pos + size));
      pos += size;
    },
  });
}

/**
 * Read `url` with the streaming reader and summarise it.
 * mode.chunk: re-chunk the body into pieces of this many bytes; mode.knownSize: tell the reader
 * the file size (fetchGGUF does, from Content-Length); otherwise it sees only the stream.
 */
export async function summarize(url, mode) {
  try {
    let gguf;
    if (mode.chunk) {
      const bytes = new Uint8Array(await (await fetch(url)).arrayBuffer());
      gguf = await wgllm.readGGUF(rechunked(bytes, mode.chunk), { source: url, size: mode.knownSize ? bytes.length : undefined });
    } else if (mode.knownSize) {
      gguf = await wgllm.fetchGGUF(url);
    } else {
      gguf = await wgllm.readGGUF((await fetch(url)).body, { source: url });
    }
    const h = gguf.header;
    const crcs = new Map();
    const order = [];
    const problems = [];
    let chunks = 0;
    let maxChunkBuffer = 0;
    for await (const { tensor, offset, bytes } of gguf) {
      const done = crcs.get(tensor.name);
      if (!done) order.push(tensor.name);
      const [crc, next] = done ?? [0, 0];
      if (offset !== next) problems.push(`${tensor.name}: chunk at ${offset}, expected ${next}`);
      crcs.set(tensor.name, [crc32(crc, bytes), next + bytes.length]);
      chunks += 1;
      maxChunkBuffer = Math.max(maxChunkBuffer, bytes.buffer.byteLength);
    }
    const tensors = h.tensors.map((t) => {
      const [crc, n] = crcs.get(t.name) ?? [0, 0];
      if (n !== t.nBytes) problems.push(`${t.name}: got ${n} bytes, expected ${t.nBytes}`);
      return { name: t.name, type: t.type, type_name: t.typeName, shape: [...t.shape], offset: t.offset, n_bytes: t.nBytes, crc32: crc };
    });
    const metadata = {};
    for (const [key, value] of h.metadata) metadata[key] = encode(value, h.valueTypes.get(key));
    return {
      file: { version: h.version, metadata, tensors },
      order,
      problems,
      chunks,
      maxChunkBuffer,
      architecture: h.metadata.has("general.architecture") ? h.architecture : null,
    };
  } catch (e) {
    return { error: { name: e.name, message: e.message, isModelFormatError: e instanceof wgllm.ModelFormatError } };
  }
}

export const tables = {
  ggmlTypeNames: wgllm.GGML_TYPE_NAMES,
  supportedTypes: wgllm.SUPPORTED_TENSOR_TYPES,
  valueTypes: wgllm.GGUFValueType,
};
