// The engine's buffer plan, found from the header and the limits before any GPU work: which GPU
// weights and f32 vectors the forward pass reads (separate attn_q/k/v stacked into one weight and a
// gated MLP's gate and up paired where they can be, as Python's stack_qkv and pair_glu), where each
// file tensor goes, and the activation and KV cache buffers for maxTokens rows; then the tensors'
// bytes streamed into those buffers.

import { DeviceLimitError, ModelFormatError } from "./errors";
import type { GGUFHeader, GGUFStream, GGUFTensorInfo } from "./gguf";
import { type GpuContext, type KernelFamily, shaderConstant } from "./gpu";
import type { ModelConfig } from "./model";
import { type GpuWeight, WeightPlan, dequantize } from "./weights";

/** What the model needs from the file, found from the header before any GPU work. */
export interface Needs {
  mats: Map<string, WeightPlan>; // GPU weights by name (a stacked QKV as blk.N.attn_q+k+v.weight)
  vecs: Map<string, number>; // f32 buffers by name: their length
  tensors: Map<string, Part>; // the file's tensors the pass reads, each with where it goes
}

/** Where a file tensor goes: rows of a GPU weight, or floats of an f32 buffer (its own, or a stacked bias). */
type Part = { mat: string; row: number; half?: 0 | 1 } | { vec: string; info: GGUFTensorInfo; at: number };

/** How the layers' projections run, decided by the plan. */
export interface Layout {
  /** The file has Phi-2-style fused attn_qkv weights. */
  fused: boolean;
  /** Per layer: attn_q, attn_k, attn_v run as one matmul of their stacked rows (Python's qkv_stacked). */
  qkvStacked: boolean[];
  /** Per layer: ffn_gate and ffn_up run as one matmul of (gate, up) row pairs (Python's glu_paired). */
  gluPaired: boolean[];
}

/** The GPU weights and vectors of `h`'s model, weights bound in chunks of at most `binding` bytes;
 * no gate/up pairing when `loraRanks` declares any. `fuse`: stackQkv false keeps attn_q/k/v apart,
 * fuseGlu false keeps ffn_gate and ffn_up apart (Python's stack_qkv and fuse_glu; the A/B). */
export function planBuffers(
  c: ModelConfig, h: GGUFHeader, binding: number, loraRanks: number[], fuse: { stackQkv?: boolean; fuseGlu?: boolean } = {},
): { needs: Needs; layout: Layout } {
  const src = h.source;
  if (Math.max(c.headDim, c.headDimV) > shaderConstant("attention", "MAX_HEAD_DIM")) {
    throw new DeviceLimitError("attention.wgsl's MAX_HEAD_DIM", Math.max(c.headDim, c.headDimV), shaderConstant("attention", "MAX_HEAD_DIM"), `${src}: head dimension`);
  }
  const names = new Map(h.tensors.map((t) => [t.name, t]));
  const needs: Needs = { mats: new Map(), vecs: new Map(), tensors: new Map() };
  const has = (name: string) => names.has(name);
  const mat = (name: string, shape: number[]) => {
    const t = h.tensor(name, shape);
    needs.mats.set(name, new WeightPlan(src, t, binding));
    needs.tensors.set(name, { mat: name, row: 0 });
  };
  const vec = (name: string, shape: number[], optional = true) => {
    if (!has(name) && optional) return;
    const t = h.tensor(name, shape);
    needs.vecs.set(name, t.nElements);
    needs.tensors.set(name, { vec: name, info: t, at: 0 });
  };
  // separate attn_q/k/v of one type and width stacked into one weight (and their biases into one
  // vector, zeros for an absent one; q/k norms then run in place on the stacked rows, qk_norm.wgsl);
  // rows in even counts keep writes aligned
  const stack = (blk: string, dims: number[]): boolean => {
    const parts = ["q", "k", "v"].map((p) => `${blk}attn_${p}.weight`);
    if (!parts.every(has) || dims.some((d) => d % 2)) return false;
    const infos = parts.map((name, j) => h.tensor(name, [dims[j], c.nEmbd]));
    if (infos.some((t) => t.type !== infos[0].type)) return false;
    const name = `${blk}attn_q+k+v.weight`;
    needs.mats.set(name, WeightPlan.stacked(src, name, infos, binding));
    const bias = `${blk}attn_q+k+v.bias`;
    let row = 0;
    infos.forEach((t, j) => {
      needs.tensors.set(t.name, { mat: name, row });
      const b = `${blk}attn_${"qkv"[j]}.bias`;
      if (has(b)) {
        needs.vecs.set(bias, dims[0] + dims[1] + dims[2]);
        needs.tensors.set(b, { vec: bias, info: h.tensor(b, [dims[j]]), at: row });
      }
      row += dims[j];
    });
    return true;
  };
  // a gated MLP's ffn_gate and ffn_up of one type and shape, without biases and with an even n_ff,
  // as one weight of (gate, up) row pairs (Python's pair_glu); not with LoRA ranks
  const pair = (blk: string): boolean => {
    const [gate, up] = ["gate", "up"].map((p) => `${blk}ffn_${p}.weight`);
    if (!(c.recipe.ffn === "swiglu" || c.recipe.ffn === "geglu") || loraRanks.length || c.nFf % 2) return false;
    if (!has(gate) || !has(up) || has(`${blk}ffn_gate.bias`) || has(`${blk}ffn_up.bias`)) return false;
    const [g, u] = [gate, up].map((name) => h.tensor(name, [c.nFf, c.nEmbd]));
    if (g.type !== u.type) return false;
    const name = `${blk}ffn_gate+up.weight`;
    needs.mats.set(name, WeightPlan.pairs(src, name, g, u, binding));
    needs.tensors.set(gate, { mat: name, row: 0, half: 0 });
    needs.tensors.set(up, { mat: name, row: 0, half: 1 });
    return true;
  };
  const qDim = c.nHead * c.headDim;
  const kvDim = c.nHeadKv * c.headDim;
  const vDim = c.nHeadKv * c.headDimV;
  const layout: Layout = { fused: has("blk.0.attn_qkv.weight"), qkvStacked: [], gluPaired: [] };
  const fused = layout.fused;
  mat("token_embd.weight", [c.nVocab, c.nEmbd]);
  if (c.recipe.learnedPos) {
    const t = h.tensor("position_embd.weight");
    vec("position_embd.weight", [t.shape[0], c.nEmbd], false);
  }
  const norm = (prefix: string, dim: number) => {
    vec(`${prefix}.weight`, [dim], false);
    if (c.recipe.norm === "layer") vec(`${prefix}.bias`, [dim]);
  };
  const linear = (name: string, nOut: number, k: number) => {
    mat(`${name}.weight`, [nOut, k]);
    vec(`${name}.bias`, [nOut]);
  };
  for (let i = 0; i < c.nLayer; i++) {
    const blk = `blk.${i}.`;
    norm(blk + "attn_norm", c.nEmbd);
    layout.qkvStacked.push(!fused && fuse.stackQkv !== false && stack(blk, [qDim, kvDim, vDim]));
    if (fused) linear(blk + "attn_qkv", qDim + kvDim + vDim, c.nEmbd);
    else if (!layout.qkvStacked[i]) {
      linear(blk + "attn_q", qDim, c.nEmbd);
      linear(blk + "attn_k", kvDim, c.nEmbd);
      linear(blk + "attn_v", vDim, c.nEmbd);
    }
    if (c.recipe.qkNorm) {
      norm(blk + "attn_q_norm", c.headDim);
      norm(blk + "attn_k_norm", c.headDim);
    }
    linear(blk + "attn_output", c.nEmbd, c.nHead * c.headDimV);
    if (c.recipe.postNorms) {
      norm(blk + "post_attention_norm", c.nEmbd);
      norm(blk + "post_ffw_norm", c.nEmbd);
    }
    if (!c.recipe.parallel) norm(blk + "ffn_norm", c.nEmbd);
    layout.gluPaired.push(fuse.fuseGlu !== false && pair(blk));
    if (!layout.gluPaired[i]) {
      linear(blk + "ffn_up", c.nFf, c.nEmbd);
      if (c.recipe.ffn === "swiglu" || c.recipe.ffn === "geglu") linear(blk + "ffn_gate", c.nFf, c.nEmbd);
    }
    linear(blk + "ffn_down", c.nEmbd, c.nFf);
  }
  if (c.ropeFreqs) vec("rope_freqs.weight", [c.nRot / 2], false); // llama-3's divisors of the rotary frequencies
  if (c.longrope) {
    // LongRoPE's divisors: both sets are planned (tiny); the engine binds the one its context picks
    vec("rope_factors_long.weight", [c.nRot / 2], false);
    vec("rope_factors_short.weight", [c.nRot / 2], false);
  }
  norm("output_norm", c.nEmbd);
  if (!c.tiedOutput) mat("output.weight", [c.nVocab, c.nEmbd]);
  vec("output.bias", [c.nVocab]);
  return { needs, layout };
}

/** The gpu family's decode attention (Python's engine.decode_splits): how many splits of SPLIT_KEYS
 * keys (attention.wgsl's decode_split workgroups per head group, attention_combine.wgsl's n_splits)
 * cover the keys the query at position nKv - 1 sees (all nKv, or the last `window` of them). */
export function decodeSplits(nKv: number, window: number): number {
  const visible = window ? Math.min(nKv, window) : nKv;
  return Math.ceil(visible / shaderConstant("attention", "SPLIT_KEYS"));
}

/** decode_split workgroups per split: one per KV head and chunk of up to G_MAX of its query heads. */
export function decodeHeadGroups(nHead: number, nHeadKv: number): number {
  return nHeadKv * Math.ceil(Math.floor(nHead / nHeadKv) / shaderConstant("attention", "G_MAX"));
}

/** Activation sizes in bytes, by name, for `rows` = maxTokens (KV caches per layer: 2 bytes an
 * element when kvF16, padded to 4; the gpu family's attn_splits for decodeSplits(rows) splits). */
export function activationSizes(
  c: ModelConfig, layout: Layout, o: { rows: number; allLogits: boolean; loraRanks: number[]; kvF16: boolean; kernels: KernelFamily },
): [string, number][] {
  const rows = o.rows;
  const qDim = c.nHead * c.headDim;
  const kvDim = c.nHeadKv * c.headDim;
  const vDim = c.nHeadKv * c.headDimV;
  const logitRows = o.allLogits ? rows : 1;
  const sizes: [string, number][] = [
    ["ids", rows], ["positions", rows],
    ["x0", rows * c.nEmbd], ["x1", rows * c.nEmbd], ["h", rows * c.nEmbd],
    ["q_rot", rows * qDim], ["attn", rows * c.nHead * c.headDimV], ["o", rows * c.nEmbd],
    ["up", rows * c.nFf], ["gate", rows * c.nFf], ["act", rows * c.nFf], ["ffn", rows * c.nEmbd],
    ["last", c.nEmbd], ["last_norm", c.nEmbd], ["logits", logitRows * c.nVocab],
    ["zeros", Math.max(c.nEmbd, c.nFf)], ["sampled", 4],
  ];
  if (!c.ropeFreqs && !c.longrope) sizes.push(["rope_ones", Math.max(1, c.nRot / 2)]); // rope.wgsl's factors of a model without rope_freqs
  const stacked = layout.qkvStacked.some((s) => s);
  if (layout.fused || stacked) sizes.push(["qkv", rows * (qDim + kvDim + vDim)]);
  if (!layout.fused && !layout.qkvStacked.every((s) => s)) sizes.push(["q", rows * qDim], ["k", rows * kvDim], ["v", rows * vDim]);
  if (c.finalSoftcap) sizes.push(["logits_capped", logitRows * c.nVocab]);
  // the gpu family's decode attention: each split's (max, sum, output) per head
  if (o.kernels === "gpu") sizes.push(["attn_splits", decodeSplits(rows, 0) * c.nHead * (c.headDimV + 2)]);
  // (n, r) scratch; a stacked QKV's adapter has up to three ranks' worth of columns
  if (o.loraRanks.length) sizes.push(["lora_t", rows * o.loraRanks[o.loraRanks.length - 1] * (stacked ? 3 : 1)]);
  const bytes: [string, number][] = sizes.map(([name, floats]) => [name, 4 * floats]);
  const kvBytes = (elements: number) => (o.kvF16 ? Math.ceil((2 * elements) / 4) * 4 : 4 * elements);
  for (let i = 0; i < c.nLayer; i++) bytes.push([`k_cache.${i}`, kvBytes(rows * kvDim)], [`v_cache.${i}`, kvBytes(rows * vDim)]);
  return bytes;
}

/** Stream the tensors' bytes to their buffers (`weights` and `vecs`, allocated from `needs`),
 * repacking matrices a few MiB of rows at a time; readSeconds: the time spent waiting for the stream. */
export async function uploadTensors(
  ctx: GpuContext, stream: GGUFStream, needs: Needs, weights: Map<string, GpuWeight>, vecs: Map<string, GPUBuffer>,
): Promise<{ readSeconds: number }> {
  const source = stream.header.source;
  let current: string | undefined;
  let feed: ((bytes: Uint8Array | null) => void) | undefined;
  let vecBytes: Uint8Array | undefined;
  const done = new Set<string>();
  const finish = () => {
    if (current === undefined) return;
    if (feed) feed(null);
    const part = needs.tensors.get(current)!;
    if (vecBytes && "vec" in part) ctx.write(vecs.get(part.vec)!, 4 * part.at, dequantize(source, part.info, vecBytes));
    done.add(current);
    current = feed = vecBytes = undefined;
  };
  let read = 0;
  let mark = performance.now();
  for await (const chunk of stream) {
    read += performance.now() - mark;
    ctx.checkAlive();
    const name = chunk.tensor.name;
    if (name !== current) {
      finish();
      const part = needs.tensors.get(name);
      if (part === undefined) {
        mark = performance.now();
        continue; // a tensor the forward pass does not use
      }
      current = name;
      if ("mat" in part) feed = weights.get(part.mat)!.uploader(ctx, part.row, chunk.tensor.shape[0], part.half);
      else vecBytes = new Uint8Array(chunk.tensor.nBytes); // a vector or a position table: small
    }
    if (feed) feed(chunk.bytes);
    else vecBytes!.set(chunk.bytes, chunk.offset);
    mark = performance.now();
  }
  read += performance.now() - mark;
  finish();
  const missing = [...needs.tensors.keys()].filter((n) => !done.has(n));
  if (missing.length) throw new ModelFormatError(`${source}: the stream ended without tensor ${missing[0]}`);
  return { readSeconds: read / 1000 };
}
