// LoRA adapters in llama.cpp's GGUF adapter format, read in the browser: the twin of
// py/wgllm/lora.py's load_lora + check_lora, with the same checks and messages.
//
//   general.type = "adapter", adapter.type = "lora", adapter.lora.alpha (float)
//   <base tensor>.lora_a  (r, n_in)   <base tensor>.lora_b  (n_out, r)   (numpy order), F32 or F16
//
// A projection y = W x becomes y = W x + scale * B (A x), scale = alpha / r (1 when alpha is 0, as
// in llama.cpp). The factors are small (r is 4..64): they are read whole, as float32.

import { ModelFormatError } from "./errors";
import type { GGUFHeader, GGUFStream, GGUFTensorInfo } from "./gguf";
import { dequantize } from "./weights";

export interface LoraFactor {
  /** The adapted weight's name, e.g. blk.0.attn_q.weight. */
  base: string;
  a: Float32Array; // (r, n_in)
  b: Float32Array; // (n_out, r)
  nIn: number;
  nOut: number;
}

export interface LoraHeaderInfo {
  source: string;
  arch: string;
  alpha: number;
  rank: number;
  baseModel?: string;
  /** base name -> [lora_a info, lora_b info], in header order. */
  pairs: Map<string, [GGUFTensorInfo, GGUFTensorInfo]>;
}

const show = (v: unknown) => (v === undefined ? "none" : JSON.stringify(v));

/** The adapter's own consistency, from its header alone (load_lora's checks). */
export function readLoraHeader(h: GGUFHeader): LoraHeaderInfo {
  const where = h.source;
  const type = h.get("general.type");
  const adapterType = h.get("adapter.type");
  if (type !== "adapter" || adapterType !== "lora") {
    throw new ModelFormatError(
      `${where}: not a LoRA adapter (general.type = ${show(type)}, adapter.type = ${show(adapterType)}; expected "adapter" and "lora")`,
    );
  }
  const alpha = h.get("adapter.lora.alpha") ?? 0;
  if (typeof alpha !== "number" || !Number.isFinite(alpha)) throw new ModelFormatError(`${where}: adapter.lora.alpha is ${show(alpha)}, expected a number`);
  const halves = new Map<string, { a?: GGUFTensorInfo; b?: GGUFTensorInfo }>();
  for (const t of h.tensors) {
    const m = /^(.*)\.lora_([ab])$/.exec(t.name);
    if (!m) throw new ModelFormatError(`${where}: tensor ${t.name} is not a LoRA factor (expected names ending in .lora_a or .lora_b)`);
    const pair = halves.get(m[1]) ?? {};
    pair[m[2] as "a" | "b"] = t;
    halves.set(m[1], pair);
  }
  if (!halves.size) throw new ModelFormatError(`${where}: the adapter holds no tensors`);
  let rank: number | undefined;
  const pairs = new Map<string, [GGUFTensorInfo, GGUFTensorInfo]>();
  for (const [base, { a, b }] of halves) {
    for (const [t, suffix] of [[a, ".lora_a"], [b, ".lora_b"]] as const) {
      if (!t) throw new ModelFormatError(`${where}: tensor ${base}${suffix} is missing (its pair is present)`);
    }
    if (a!.shape.length !== 2 || b!.shape.length !== 2 || a!.shape[0] !== b!.shape[1]) {
      throw new ModelFormatError(`${where}: ${base}.lora_a has shape [${a!.shape}] and ${base}.lora_b [${b!.shape}]; expected (r, n_in) and (n_out, r)`);
    }
    if (a!.typeName !== "F32" && a!.typeName !== "F16") throw new ModelFormatError(`${where}: ${base}.lora_a is ${a!.typeName}, expected F32 or F16`);
    if (b!.typeName !== "F32" && b!.typeName !== "F16") throw new ModelFormatError(`${where}: ${base}.lora_b is ${b!.typeName}, expected F32 or F16`);
    if (rank !== undefined && a!.shape[0] !== rank) {
      throw new ModelFormatError(`${where}: ${base}.lora_a has rank ${a!.shape[0]}, other tensors rank ${rank}; wgllm needs one rank per adapter`);
    }
    rank = a!.shape[0];
    pairs.set(base, [a!, b!]);
  }
  const baseModel = h.get("general.base_model.0.name");
  return { source: where, arch: h.architecture, alpha, rank: rank!, baseModel: typeof baseModel === "string" ? baseModel : undefined, pairs };
}

/** Refuse an adapter made for another base model (check_lora's checks): the architecture, weights
 * the model lacks or that are not layer projections, and shapes. `model` is the base's header. */
export function checkLoraAgainst(lora: LoraHeaderInfo, model: GGUFHeader, nLayer: number): void {
  const where = lora.source;
  const arch = model.architecture;
  if (lora.arch !== arch) {
    throw new ModelFormatError(
      `${where}: the LoRA adapter is for a ${lora.arch} model${lora.baseModel ? ` (${lora.baseModel})` : ""}, but ${model.source} is a ${arch} model`,
    );
  }
  const tensors = new Map(model.tensors.map((t) => [t.name, t]));
  for (const [base, [a, b]] of lora.pairs) {
    const w = tensors.get(base);
    if (!w) {
      throw new ModelFormatError(
        `${where}: tensors ${base}.lora_a/.lora_b adapt ${base}, which ${model.source} does not have ` +
          `(a ${arch} model with ${nLayer} layers, blk.0 to blk.${nLayer - 1})`,
      );
    }
    if (!base.startsWith("blk.")) throw new ModelFormatError(`${where}: tensor ${base}.lora_a adapts ${base}; wgllm applies LoRA to the layers' projections only`);
    const s = w.shape;
    if (s.length !== 2 || a.shape[1] !== s[1] || b.shape[0] !== s[0]) {
      throw new ModelFormatError(
        `${where}: tensor ${base}.lora_a has shape [${a.shape}] and ${base}.lora_b [${b.shape}], but ${model.source}'s ` +
          `${base} has shape [${s}]: expected (r, ${s[s.length - 1]}) and (${s[0]}, r); the adapter is for another base model`,
      );
    }
  }
}

/** Every factor's values, read from the stream (whose header readLoraHeader checked). */
export async function readLoraFactors(stream: GGUFStream, info: LoraHeaderInfo): Promise<LoraFactor[]> {
  const bytes = new Map<string, Uint8Array>();
  for await (const chunk of stream) {
    let buf = bytes.get(chunk.tensor.name);
    if (!buf) bytes.set(chunk.tensor.name, (buf = new Uint8Array(chunk.tensor.nBytes)));
    buf.set(chunk.bytes, chunk.offset);
  }
  return [...info.pairs].map(([base, [a, b]]) => ({
    base,
    a: dequantize(info.source, a, bytes.get(a.name)!),
    b: dequantize(info.source, b, bytes.get(b.name)!),
    nIn: a.shape[1],
    nOut: b.shape[0],
  }));
}
