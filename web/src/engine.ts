// The WebGPU forward pass in the browser: the twin of py/wgllm/gpu/engine.py, running the same
// shaders/*.wgsl with the same Params, the same dispatch program and the same GPU sampler, so a
// model gives the Python GPU engine's tokens. Weights are uploaded once while the file streams in;
// buffers are allocated once for maxTokens rows; each step writes the ids, positions and the
// Params uniforms that changed, encodes every dispatch, the sampler's included, into one compute
// pass of one command buffer (the last row is copied by a kv_store launch, so nothing breaks the
// pass, as in Python), and reads back only the sampled id (or the logits).
//
// KV cache (as in Python's engine): on a device with shader-f16, unless forceF32, it holds f16 (2
// bytes an element): the rope of K and the kv_store of V write it and attention reads it through the
// shaders' "f16 KV" variant (shaders.ts kvF16Variant). Every sum, score and softmax stays f32; only
// the stored K and V are rounded. Otherwise it is f32; kvCacheType says which.
//
// LoRA (as in Python's engine): the ranks are declared up front (loraRanks). With any, each layer
// matmul is followed by a LoRA step that, for the adapter chosen per call, runs lora_shrink then
// lora_expand into the matmul's output (nothing without one). Adapters are uploaded by loadLora with
// their uniforms and bind groups, once, and stay resident together: switching costs no rebuild.
//
// The residual adds after the attention output and ffn_down matmuls run in those matmuls' epilogue
// (Python's fuse_residual), except where a post-norm sits between the matmul and the add (Gemma-2/3);
// a gated MLP's ffn_gate and ffn_up run as one matmul of (gate, up) row pairs that writes
// act(gate) * up (Python's fuse_glu), where pair_glu allows and no LoRA ranks are declared.

import { DeviceLimitError, ModelFormatError, WgllmError } from "./errors";
import type { GGUFHeader, GGUFStream, GGUFTensorInfo } from "./gguf";
import { type Constants, GpuContext, ShaderError, shaderConstant } from "./gpu";
import { checkLoraAgainst, readLoraFactors, readLoraHeader } from "./lora";
import { type ModelConfig, layerRope, modelConfigFromHeader } from "./model";
import { GpuWeight, WeightPlan, dequantize, embeddingGroupSize, matmulGeometry } from "./weights";

export interface EngineOptions {
  maxTokens: number;
  allLogits?: boolean;
  /** Tests: bind weights in chunks no larger than this (at most the device's maxStorageBufferBindingSize). */
  maxWeightBinding?: number;
  /** The ranks LoRA adapters may have (MediaPipe's loraRanks): declared here, checked by loadLora. */
  loraRanks?: number[];
  /** Keep the KV cache in f32 even on a device with shader-f16 (kvCacheType is then "f32"). */
  forceF32?: boolean;
}

/** The KV cache's element type: f16 on a device with shader-f16 unless forceF32, else f32. */
export type KvCacheType = "f16" | "f32";

export interface SampleSettings {
  topK: number;
  temperature: number;
  seed: number;
  step: number;
  /** The adapter applied to this call (from loadLora); none when undefined. */
  lora?: EngineLora;
}

/** MediaPipe's message for an adapter handle that belongs to another instance (or was destroyed). */
export const LORA_OWNER_MESSAGE = "The LoRA model was not loaded by this LLM Inference task.";
const LORA_EXPAND_WG = 64; // lora_expand.wgsl's default WG_SIZE
const GLU_KINDS = { swiglu: 1, geglu: 2 }; // Params.glu of the matmul kernels

/** One adapted weight of a resident adapter: its factors, uniforms and bind groups, made once. */
export interface LoraWeight {
  rank: number; // the adapter's rank, or a multiple of it for a stacked QKV (one part per adapted projection)
  nOut: number;
  k: number;
  buffers: GPUBuffer[];
  shrink: { uniform: GPUBuffer; bindGroup: GPUBindGroup };
  expand: { uniform: GPUBuffer; bindGroup: GPUBindGroup };
  written?: number; // the n its uniforms hold
}

/** A LoRA adapter resident on one Engine (pass it to sample / logits). */
export class EngineLora {
  private live = true;

  constructor(
    readonly engine: Engine,
    readonly source: string,
    readonly rank: number,
    readonly alpha: number,
    readonly baseModel: string | undefined,
    /** @internal */ readonly weights: Map<string, LoraWeight>,
    private readonly release: (lora: EngineLora) => void,
  ) {}

  /** alpha / r, or 1 when alpha is 0 (llama.cpp's rule). */
  get scale(): number {
    return this.alpha ? this.alpha / this.rank : 1;
  }

  get destroyed(): boolean {
    return !this.live;
  }

  /** Free the adapter's GPU buffers; the handle cannot be used afterwards. */
  destroy(): void {
    if (!this.live) return;
    this.live = false;
    this.release(this);
  }
}

const MAX_GROUPS = 65535;

/** An adapter's factors by the matmul they follow (Python's load_lora): a stacked QKV's q, k and v
 * factors become one pair of rank r times the parts, A their A's stacked, B block-diagonal (each
 * part's B in its columns' rows and its own r columns, zeros elsewhere), so that each projection's
 * columns get exactly their own update. */
function stackLoraFactors(
  factors: { base: string; a: Float32Array; b: Float32Array; nOut: number; nIn: number }[],
  r: number,
  parts: Map<string, { site: string; col: number }>,
  sites: Map<string, { nOut: number }>,
): { site: string; rank: number; a: Float32Array; b: Float32Array }[] {
  const bySite = new Map<string, { col: number; a: Float32Array; b: Float32Array; nOut: number }[]>();
  for (const f of factors) {
    const { site, col } = parts.get(f.base) ?? { site: f.base, col: 0 };
    if (!bySite.has(site)) bySite.set(site, []);
    bySite.get(site)!.push({ col, a: f.a, b: f.b, nOut: f.nOut });
  }
  return [...bySite].map(([site, list]) => {
    if (list.length === 1 && list[0].col === 0 && list[0].nOut === sites.get(site)!.nOut) return { site, rank: r, a: list[0].a, b: list[0].b };
    list.sort((x, y) => x.col - y.col);
    const rank = r * list.length;
    const a = new Float32Array(list.reduce((s, p) => s + p.a.length, 0));
    const b = new Float32Array(sites.get(site)!.nOut * rank);
    let at = 0;
    list.forEach((p, j) => {
      a.set(p.a, at);
      at += p.a.length;
      for (let o = 0; o < p.nOut; o++) for (let q = 0; q < r; q++) b[(p.col + o) * rank + j * r + q] = p.b[o * r + q];
    });
    return { site, rank, a, b };
  });
}
export const MAX_TOP_K = shaderConstant("sample", "MAX_K");

type Grid = [number, number, number];
type Params = (n: number, pos0: number) => ArrayBuffer;

function gridRows(groups: number): Grid {
  const gx = Math.max(1, Math.min(groups, MAX_GROUPS));
  return [gx, Math.ceil(groups / gx), 1];
}

/** Little-endian Params: `fmt` letters I (u32) and f (f32), as Python's struct.pack("<" + fmt). */
function pack(fmt: string, ...values: number[]): ArrayBuffer {
  const buf = new ArrayBuffer(4 * fmt.length);
  const v = new DataView(buf);
  [...fmt].forEach((c, i) => (c === "I" ? v.setUint32(4 * i, values[i] >>> 0, true) : v.setFloat32(4 * i, values[i], true)));
  return buf;
}

function sameBytes(a: ArrayBuffer | undefined, b: ArrayBuffer): boolean {
  if (!a || a.byteLength !== b.byteLength) return false;
  const x = new Uint32Array(a);
  const y = new Uint32Array(b);
  return x.every((w, i) => w === y[i]);
}

/** One kernel launch: its Params depend on (n, pos0); its buffers never change. `pipelines` and
 * `bindGroups` are per entry point (matmuls use `matvec` for n = 1 and `main` otherwise). */
interface Launch {
  op: string;
  entry: (n: number) => string;
  pipelines: Map<string, GPUComputePipeline>;
  bindGroups: Map<string, GPUBindGroup>;
  uniform: GPUBuffer;
  written?: ArrayBuffer;
  params: Params;
  grid: (n: number, pos0: number) => Grid;
}

/** The LoRA update of one layer matmul's output, for the adapter of the running call. */
interface LoraStep {
  loraSite: string;
}

type Step = Launch | LoraStep;

interface Src {
  buf: GPUBuffer;
  stride: number;
  offset: number;
}

/** What the model needs from the file, found from the header before any GPU work. */
interface Needs {
  mats: Map<string, WeightPlan>; // GPU weights by name (a stacked QKV as blk.N.attn_q+k+v.weight)
  vecs: Map<string, number>; // f32 buffers by name: their length
  tensors: Map<string, Part>; // the file's tensors the pass reads, each with where it goes
}

/** Where a file tensor goes: rows of a GPU weight, or floats of an f32 buffer (its own, or a stacked bias). */
type Part = { mat: string; row: number; half?: 0 | 1 } | { vec: string; info: GGUFTensorInfo; at: number };

export class Engine {
  readonly config: ModelConfig;
  readonly maxTokens: number;
  readonly allLogits: boolean;
  /** Declared LoRA ranks, ascending, without repeats. */
  readonly loraRanks: number[];
  /** The KV cache's element type (see EngineOptions.forceF32). */
  readonly kvCacheType: KvCacheType;
  private readonly ctx: GpuContext;
  private readonly owned: GPUBuffer[] = [];
  private readonly weights = new Map<string, GpuWeight>();
  private readonly vecs = new Map<string, GPUBuffer>();
  private readonly steps: Step[] = [];
  private sampler!: Launch;
  private finalLogits!: GPUBuffer;
  private busy: Promise<unknown> = Promise.resolve();
  private destroyed = false;
  // activations, allocated once for maxTokens rows
  private b!: Record<string, GPUBuffer>;
  private kCache: GPUBuffer[] = [];
  private vCache: GPUBuffer[] = [];
  private fused = false;
  /** Per layer: attn_q, attn_k, attn_v run as one matmul of their stacked rows (Python's qkv_stacked). */
  qkvStacked: boolean[] = [];
  /** Per layer: ffn_gate and ffn_up run as one matmul of (gate, up) row pairs (Python's glu_paired). */
  gluPaired: boolean[] = [];
  private readonly loraParts = new Map<string, { site: string; col: number }>(); // attn_q/k/v of a stacked layer -> its site
  // LoRA: weight name -> the buffers of its matmul; resident adapters; the call's adapter
  private readonly loraSites = new Map<string, { x: GPUBuffer; y: GPUBuffer; k: number; nOut: number }>();
  private readonly loras = new Set<EngineLora>();
  private activeLora: EngineLora | undefined;
  private loraPipelines?: { shrink: GPUComputePipeline; expand: GPUComputePipeline };

  private constructor(readonly header: GGUFHeader, device: GPUDevice, options: EngineOptions) {
    this.ctx = GpuContext.of(device);
    this.config = modelConfigFromHeader(header);
    this.maxTokens = options.maxTokens;
    this.allLogits = options.allLogits ?? false;
    this.loraRanks = [...new Set(options.loraRanks ?? [])].sort((a, b) => a - b);
    this.kvCacheType = this.ctx.hasF16 && !options.forceF32 ? "f16" : "f32";
  }

  /** The KV cache is f16: rope-K, kv_store-V and attention run the shaders' f16 KV variant. */
  private get kvF16(): boolean {
    return this.kvCacheType === "f16";
  }

  /** Upload the model arriving on `stream` to `device`. */
  static async load(device: GPUDevice, stream: GGUFStream, options: EngineOptions): Promise<Engine> {
    let engine: Engine | undefined;
    try {
      const maxTokens = options.maxTokens;
      if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new RangeError(`maxTokens = ${maxTokens}, expected a positive integer`);
      const ranks = options.loraRanks ?? [];
      if (!Array.isArray(ranks) || !ranks.every((r) => Number.isInteger(r) && r >= 1)) {
        throw new RangeError(`loraRanks = ${JSON.stringify(ranks)}, expected a list of positive integers`);
      }
      engine = new Engine(stream.header, device, options);
      engine.ctx.checkAlive();
      const needs = engine.plan(options.maxWeightBinding);
      engine.checkLimits();
      await engine.allocate(needs);
      await engine.build();
      await engine.upload(stream, needs);
      await engine.ctx.guard(device.queue.onSubmittedWorkDone());
      return engine;
    } catch (e) {
      engine?.destroy();
      await stream.cancel();
      throw e;
    }
  }

  // -- planning: every check that needs only the header and the limits --------------------------
  private plan(maxWeightBinding?: number): Needs {
    const c = this.config;
    const h = this.header;
    const src = h.source;
    if (Math.max(c.headDim, c.headDimV) > shaderConstant("attention", "MAX_HEAD_DIM")) {
      throw new DeviceLimitError("attention.wgsl's MAX_HEAD_DIM", Math.max(c.headDim, c.headDimV), shaderConstant("attention", "MAX_HEAD_DIM"), `${src}: head dimension`);
    }
    const binding = Math.min(maxWeightBinding ?? Infinity, this.ctx.maxBinding, this.ctx.maxBuffer);
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
    // separate attn_q/k/v of one type and width, without q/k norms, stacked into one weight (and
    // their biases into one vector, zeros for an absent one); rows in even counts keep writes aligned
    const stack = (blk: string, dims: number[]): boolean => {
      const parts = ["q", "k", "v"].map((p) => `${blk}attn_${p}.weight`);
      if (c.recipe.qkNorm || !parts.every(has) || dims.some((d) => d % 2)) return false;
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
      if (!(c.recipe.ffn === "swiglu" || c.recipe.ffn === "geglu") || this.loraRanks.length || c.nFf % 2) return false;
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
    this.fused = has("blk.0.attn_qkv.weight");
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
      this.qkvStacked.push(!this.fused && stack(blk, [qDim, kvDim, vDim]));
      if (this.fused) linear(blk + "attn_qkv", qDim + kvDim + vDim, c.nEmbd);
      else if (!this.qkvStacked[i]) {
        linear(blk + "attn_q", qDim, c.nEmbd);
        linear(blk + "attn_k", kvDim, c.nEmbd);
        linear(blk + "attn_v", vDim, c.nEmbd);
        if (c.recipe.qkNorm) {
          norm(blk + "attn_q_norm", c.headDim);
          norm(blk + "attn_k_norm", c.headDim);
        }
      }
      linear(blk + "attn_output", c.nEmbd, c.nHead * c.headDimV);
      if (c.recipe.postNorms) {
        norm(blk + "post_attention_norm", c.nEmbd);
        norm(blk + "post_ffw_norm", c.nEmbd);
      }
      if (!c.recipe.parallel) norm(blk + "ffn_norm", c.nEmbd);
      this.gluPaired.push(pair(blk));
      if (!this.gluPaired[i]) {
        linear(blk + "ffn_up", c.nFf, c.nEmbd);
        if (c.recipe.ffn === "swiglu" || c.recipe.ffn === "geglu") linear(blk + "ffn_gate", c.nFf, c.nEmbd);
      }
      linear(blk + "ffn_down", c.nEmbd, c.nFf);
    }
    norm("output_norm", c.nEmbd);
    if (!c.tiedOutput) mat("output.weight", [c.nVocab, c.nEmbd]);
    vec("output.bias", [c.nVocab]);
    return needs;
  }

  /** Activation sizes in bytes, by name (KV caches per layer: 2 bytes an element when f16, padded to 4). */
  private activationSizes(): [string, number][] {
    const c = this.config;
    const rows = this.maxTokens;
    const qDim = c.nHead * c.headDim;
    const kvDim = c.nHeadKv * c.headDim;
    const vDim = c.nHeadKv * c.headDimV;
    const logitRows = this.allLogits ? rows : 1;
    const sizes: [string, number][] = [
      ["ids", rows], ["positions", rows],
      ["x0", rows * c.nEmbd], ["x1", rows * c.nEmbd], ["h", rows * c.nEmbd],
      ["q_rot", rows * qDim], ["attn", rows * c.nHead * c.headDimV], ["o", rows * c.nEmbd],
      ["up", rows * c.nFf], ["gate", rows * c.nFf], ["act", rows * c.nFf], ["ffn", rows * c.nEmbd],
      ["last", c.nEmbd], ["last_norm", c.nEmbd], ["logits", logitRows * c.nVocab],
      ["zeros", Math.max(c.nEmbd, c.nFf)], ["sampled", 4],
    ];
    const stacked = this.qkvStacked.some((s) => s);
    if (this.fused || stacked) sizes.push(["qkv", rows * (qDim + kvDim + vDim)]);
    if (!this.fused && !this.qkvStacked.every((s) => s)) sizes.push(["q", rows * qDim], ["k", rows * kvDim], ["v", rows * vDim]);
    if (c.finalSoftcap) sizes.push(["logits_capped", logitRows * c.nVocab]);
    // (n, r) scratch; a stacked QKV's adapter has up to three ranks' worth of columns
    if (this.loraRanks.length) sizes.push(["lora_t", rows * this.loraRanks[this.loraRanks.length - 1] * (stacked ? 3 : 1)]);
    const bytes: [string, number][] = sizes.map(([name, floats]) => [name, 4 * floats]);
    const kvBytes = (elements: number) => (this.kvF16 ? Math.ceil((2 * elements) / 4) * 4 : 4 * elements);
    for (let i = 0; i < c.nLayer; i++) bytes.push([`k_cache.${i}`, kvBytes(rows * kvDim)], [`v_cache.${i}`, kvBytes(rows * vDim)]);
    return bytes;
  }

  private checkLimits(): void {
    const binding = Math.min(this.ctx.maxBinding, this.ctx.maxBuffer);
    for (const [name, bytes] of this.activationSizes()) {
      const what = `${this.header.source}: the ${name} buffer for maxTokens = ${this.maxTokens}${name === "logits" && this.allLogits ? " (allLogits)" : ""}`;
      if (bytes > this.ctx.maxBuffer) throw new DeviceLimitError("maxBufferSize", bytes, this.ctx.maxBuffer, what);
      if (bytes > binding) throw new DeviceLimitError("maxStorageBufferBindingSize", bytes, this.ctx.maxBinding, what);
    }
  }

  private async allocate(needs: Needs): Promise<void> {
    const ctx = this.ctx;
    const sizes = this.activationSizes();
    const act = await ctx.allocating(`${this.header.source}: activations and KV cache for maxTokens = ${this.maxTokens}`, () =>
      sizes.map(([name, bytes]) => ctx.buffer(bytes, name)),
    );
    this.owned.push(...act);
    this.b = Object.fromEntries(sizes.map(([name], i) => [name, act[i]]));
    this.kCache = act.filter((b) => b.label.startsWith("k_cache."));
    this.vCache = act.filter((b) => b.label.startsWith("v_cache."));
    ctx.write(this.b.zeros, 0, new Float32Array(this.b.zeros.size / 4));
    for (const [name, plan] of needs.mats) {
      const w = await GpuWeight.allocate(ctx, plan);
      this.weights.set(name, w);
      this.owned.push(...w.buffers);
    }
    for (const [name, floats] of needs.vecs) {
      const [buf] = await ctx.allocating(`${this.header.source}: tensor ${name}`, () => [ctx.buffer(4 * floats, name)]); // zeros until written
      this.vecs.set(name, buf);
      this.owned.push(buf);
    }
    const logitBytes = (this.allLogits ? this.maxTokens : 1) * this.config.nVocab * 4;
    const [readback, sampledRead] = await ctx.allocating("readback buffers", () => [
      ctx.buffer(logitBytes, "logits readback", { readback: true }),
      ctx.buffer(4, "sampled readback", { readback: true }),
    ]);
    this.owned.push(readback, sampledRead);
    this.b.readback = readback;
    this.b.sampledRead = sampledRead;
  }

  /** Stream the tensors' bytes to their buffers, repacking matrices a few MiB of rows at a time. */
  private async upload(stream: GGUFStream, needs: Needs): Promise<void> {
    const ctx = this.ctx;
    let current: string | undefined;
    let feed: ((bytes: Uint8Array | null) => void) | undefined;
    let vecBytes: Uint8Array | undefined;
    const done = new Set<string>();
    const finish = () => {
      if (current === undefined) return;
      if (feed) feed(null);
      const part = needs.tensors.get(current)!;
      if (vecBytes && "vec" in part) ctx.write(this.vecs.get(part.vec)!, 4 * part.at, dequantize(this.header.source, part.info, vecBytes));
      done.add(current);
      current = feed = vecBytes = undefined;
    };
    for await (const chunk of stream) {
      ctx.checkAlive();
      const name = chunk.tensor.name;
      if (name !== current) {
        finish();
        const part = needs.tensors.get(name);
        if (part === undefined) continue; // a tensor the forward pass does not use
        current = name;
        if ("mat" in part) feed = this.weights.get(part.mat)!.uploader(ctx, part.row, chunk.tensor.shape[0], part.half);
        else vecBytes = new Uint8Array(chunk.tensor.nBytes); // a vector or a position table: small
      }
      if (feed) feed(chunk.bytes);
      else vecBytes!.set(chunk.bytes, chunk.offset);
    }
    finish();
    const missing = [...needs.tensors.keys()].filter((n) => !done.has(n));
    if (missing.length) throw new ModelFormatError(`${this.header.source}: the stream ended without tensor ${missing[0]}`);
  }

  // -- the program ------------------------------------------------------------------------------
  private pending: Promise<void>[] = [];

  /** Add a launch of shaders/<op>.wgsl (kvF16: of its f16 KV variant); pipelines and bind groups are made in build(). */
  private add(
    op: string, bindings: GPUBuffer[], params: Params, grid: Launch["grid"],
    entries: string[] = ["main"], entry?: Launch["entry"], constants?: Constants, kvF16 = false,
  ): Launch {
    const launch: Launch = {
      op,
      entry: entry ?? (() => "main"),
      pipelines: new Map(),
      bindGroups: new Map(),
      uniform: this.ctx.buffer(Math.max(16, params(1, 0).byteLength), `${op} params`, { uniform: true }),
      params,
      grid,
    };
    this.owned.push(launch.uniform);
    for (const e of entries) {
      this.pending.push(
        this.ctx.pipeline(op, e, constants, kvF16).then((p) => {
          launch.pipelines.set(e, p);
          launch.bindGroups.set(e, this.ctx.bindGroup(p, [launch.uniform, ...bindings], `${op}:${e}`));
        }),
      );
    }
    this.steps.push(launch);
    return launch;
  }

  /** y = x W^T (+ bias) (+ residual, added in the kernel's epilogue; never y itself), or with glu (a
   * pairs weight) act(gate) * up. */
  private matmul(name: string, x: GPUBuffer, y: GPUBuffer, biasName?: string, rows?: (n: number) => number, residual?: GPUBuffer, glu?: "swiglu" | "geglu"): void {
    const w = this.weights.get(name)!;
    const bias = biasName ? this.vecs.get(biasName) : undefined;
    const rowsOf = rows ?? ((n: number) => n);
    const op = `matmul_${w.plan.shader}`;
    const geo = matmulGeometry(w.plan.shader);
    const { k, nOut } = w.plan;
    for (const chunk of w.chunks) {
      this.add(
        op,
        [...chunk.buffers, x, bias ?? this.b.zeros, residual ?? this.b.zeros, y],
        (n) => pack("IIIIIIII", k, nOut, chunk.rows, chunk.rowStart, rowsOf(n), bias ? 1 : 0, residual ? 1 : 0, glu ? GLU_KINDS[glu] : 0),
        (n) => (rowsOf(n) === 1 ? gridRows(Math.ceil(chunk.rows / geo.matvecRows)) : [Math.ceil(chunk.rows / geo.tile), Math.ceil(rowsOf(n) / geo.tile), 1]),
        ["matvec", "main"],
        (n) => (rowsOf(n) === 1 ? "matvec" : "main"),
      );
    }
    if (this.loraRanks.length && name.startsWith("blk.")) {
      this.loraSites.set(name, { x, y, k, nOut });
      this.steps.push({ loraSite: name });
    }
  }

  private norm(prefix: string, x: GPUBuffer, y: GPUBuffer, rows: (n: number) => number = (n) => n, dim?: number): void {
    const c = this.config;
    const d = dim ?? c.nEmbd;
    const w = this.vecs.get(`${prefix}.weight`)!;
    const params: Params = (n) => pack("IIf", rows(n), d, c.normEps);
    const grid = (n: number) => gridRows(rows(n));
    if (c.recipe.norm === "rms") this.add("rms_norm", [x, w, y], params, grid);
    else this.add("layer_norm", [x, w, this.vecs.get(`${prefix}.bias`) ?? this.b.zeros, y], params, grid);
  }

  private addOp(a: GPUBuffer, b: GPUBuffer, y: GPUBuffer, width: number): void {
    this.add("add", [a, b, y], (n) => pack("I", n * width), (n) => [Math.ceil((n * width) / 256), 1, 1]);
  }

  private elementwise(op: string, inputs: GPUBuffer[], y: GPUBuffer, width: number): void {
    this.add(op, [...inputs, y], (n) => pack("I", n * width), (n) => gridRows(Math.ceil((n * width) / 256)));
  }

  private rope(src: Src, dst: GPUBuffer, dstStride: number, intoCache: boolean, heads: number, base: number, posScale: number, neox: number): void {
    const c = this.config;
    this.add(
      "rope",
      [this.b.positions, src.buf, dst],
      (n, p) => pack("IIIIIIIIffI", n, heads, c.headDim, c.nRot, src.stride, src.offset, dstStride, intoCache ? p * dstStride : 0, base, posScale, neox),
      (n) => [Math.ceil((heads * c.headDim) / 2 / 64), n, 1],
      ["main"], undefined, undefined,
      intoCache && this.kvF16, // K rotated straight into the cache, in its element type; Q stays f32
    );
  }

  /** This step's rows of V into the cache (in its element type) at row pos0. */
  private kvStore(src: Src, cache: GPUBuffer, rowLen: number): void {
    this.add(
      "kv_store",
      [src.buf, cache],
      (_n, p) => pack("IIIII", rowLen, src.stride, src.offset, rowLen, p * rowLen),
      (n) => [Math.ceil(rowLen / 256), n, 1],
      ["main"], undefined, undefined,
      this.kvF16,
    );
  }

  private ffn(i: number, h: GPUBuffer, out: GPUBuffer, residual?: GPUBuffer): void {
    const c = this.config;
    const b = this.b;
    const blk = `blk.${i}.`;
    const kind = c.recipe.ffn;
    if (this.gluPaired[i] && (kind === "swiglu" || kind === "geglu")) {
      this.matmul(blk + "ffn_gate+up.weight", h, b.act, undefined, undefined, undefined, kind); // one launch writes act(gate) * up
    } else if (kind === "swiglu" || kind === "geglu") {
      this.matmul(blk + "ffn_up.weight", h, b.up, blk + "ffn_up.bias");
      this.matmul(blk + "ffn_gate.weight", h, b.gate, blk + "ffn_gate.bias");
      this.elementwise(kind, [b.gate, b.up], b.act, c.nFf);
    } else {
      this.matmul(blk + "ffn_up.weight", h, b.up, blk + "ffn_up.bias");
      this.elementwise(kind === "gelu" ? "gelu_tanh" : "gelu_erf", [b.up], b.act, c.nFf);
    }
    this.matmul(blk + "ffn_down.weight", b.act, out, blk + "ffn_down.bias", undefined, residual);
  }

  private async build(): Promise<void> {
    const c = this.config;
    const b = this.b;
    const device = this.ctx.device;
    device.pushErrorScope("validation");
    const qDim = c.nHead * c.headDim;
    const kvDim = c.nHeadKv * c.headDim;
    const vDim = c.nHeadKv * c.headDimV;
    const x = [b.x0, b.x1];
    let cur = 0;
    // embeddings, one launch per row chunk of the table (an id outside a chunk is written by none)
    const embd = this.weights.get("token_embd.weight")!;
    const scale = c.recipe.embedScale ? Math.sqrt(c.nEmbd) : 1.0;
    const groupsX = Math.ceil(embd.plan.k / 4 / embeddingGroupSize(embd.plan.shader));
    for (const chunk of embd.chunks) {
      this.add(`embedding_${embd.plan.shader}`, [...chunk.buffers, b.ids, x[0]], () => pack("IIIf", embd.plan.k, chunk.rowStart, chunk.rows, scale), (n) => [groupsX, n, 1]);
    }
    if (c.recipe.learnedPos) {
      const posTable = this.vecs.get("position_embd.weight")!;
      this.add("embedding", [posTable, b.positions, b.positions, posTable, b.h], () => pack("IIf", c.nEmbd, 0, 1.0), (n) => [Math.ceil(c.nEmbd / 256), n, 1]);
      this.addOp(x[0], b.h, x[1], c.nEmbd);
      cur = 1;
    }
    for (let i = 0; i < c.nLayer; i++) {
      const blk = `blk.${i}.`;
      const [xc, xn] = [x[cur], x[1 - cur]];
      this.norm(blk + "attn_norm", xc, b.h);
      let srcQ: Src;
      let srcK: Src;
      let srcV: Src;
      const oneMatmul = this.fused || this.qkvStacked[i];
      if (oneMatmul) {
        if (this.fused) this.matmul(blk + "attn_qkv.weight", b.h, b.qkv, blk + "attn_qkv.bias");
        else {
          const site = blk + "attn_q+k+v.weight";
          this.matmul(site, b.h, b.qkv, blk + "attn_q+k+v.bias");
          ["q", "k", "v"].forEach((p, j) => this.loraParts.set(`${blk}attn_${p}.weight`, { site, col: [0, qDim, qDim + kvDim][j] }));
        }
        const row = qDim + kvDim + vDim;
        srcQ = { buf: b.qkv, stride: row, offset: 0 };
        srcK = { buf: b.qkv, stride: row, offset: qDim };
        srcV = { buf: b.qkv, stride: row, offset: qDim + kvDim };
      } else {
        this.matmul(blk + "attn_q.weight", b.h, b.q, blk + "attn_q.bias");
        this.matmul(blk + "attn_k.weight", b.h, b.k, blk + "attn_k.bias");
        this.matmul(blk + "attn_v.weight", b.h, b.v, blk + "attn_v.bias");
        if (c.recipe.qkNorm) {
          this.norm(blk + "attn_q_norm", b.q, b.q_rot, (n) => n * c.nHead, c.headDim);
          this.norm(blk + "attn_k_norm", b.k, b.attn, (n) => n * c.nHeadKv, c.headDim);
          srcQ = { buf: b.q_rot, stride: qDim, offset: 0 };
          srcK = { buf: b.attn, stride: kvDim, offset: 0 };
        } else {
          srcQ = { buf: b.q, stride: qDim, offset: 0 };
          srcK = { buf: b.k, stride: kvDim, offset: 0 };
        }
        srcV = { buf: b.v, stride: vDim, offset: 0 };
      }
      const [base, posScale] = layerRope(c, i);
      const neox = c.recipe.rope === "neox" ? 1 : 0;
      const qOut = c.recipe.qkNorm && !oneMatmul ? b.q : b.q_rot;
      this.rope(srcQ, qOut, qDim, false, c.nHead, base, posScale, neox);
      this.rope(srcK, this.kCache[i], kvDim, true, c.nHeadKv, base, posScale, neox);
      this.kvStore(srcV, this.vCache[i], vDim);
      const window = c.swaLayers[i] ? c.slidingWindow : 0;
      this.add(
        "attention",
        [qOut, this.kCache[i], this.vCache[i], b.positions, b.attn],
        (n, p) => pack("IIIIIIfffI", c.nHead, c.nHeadKv, c.headDim, c.headDimV, p + n, window, c.attnScale, c.attnSoftcap, c.alibiMaxBias, n),
        (n) => [c.nHead, Math.ceil(n / 32), 1], // 32 queries a workgroup (4 per invocation)
        ["main"], undefined, undefined,
        this.kvF16,
      );
      if (!c.recipe.postNorms) {
        // xn = xc + attention out, then xc = xn + ffn out (parallel: the ffn of the same h), each add
        // in the epilogue of the matmul before it (Python's fuse_residual)
        this.matmul(blk + "attn_output.weight", b.attn, xn, blk + "attn_output.bias", undefined, xc);
        if (!c.recipe.parallel) this.norm(blk + "ffn_norm", xn, b.h);
        this.ffn(i, b.h, xc, xn);
        continue; // x[cur] holds the result again
      }
      // Gemma-2/3: a norm between each of the two matmuls and its residual add, so the adds stay launches
      this.matmul(blk + "attn_output.weight", b.attn, b.o, blk + "attn_output.bias");
      this.norm(blk + "post_attention_norm", b.o, b.ffn);
      this.addOp(xc, b.ffn, xn, c.nEmbd);
      this.norm(blk + "ffn_norm", xn, b.h);
      this.ffn(i, b.h, b.ffn);
      this.norm(blk + "post_ffw_norm", b.ffn, b.o);
      this.addOp(xn, b.o, xc, c.nEmbd);
    }
    // The head runs on the last row only, or on every row with allLogits.
    const xf = x[cur];
    const outName = c.tiedOutput ? "token_embd.weight" : "output.weight";
    const logitRows = (n: number) => (this.allLogits ? n : 1);
    if (this.allLogits) {
      this.norm("output_norm", xf, b.h);
      this.matmul(outName, b.h, b.logits, "output.bias");
    } else {
      // the last row to b.last by a kernel (kv_store's strided row copy), not copyBufferToBuffer,
      // which would end the step's compute pass
      this.add("kv_store", [xf, b.last], (n) => pack("IIIII", c.nEmbd, c.nEmbd, (n - 1) * c.nEmbd, c.nEmbd, 0), () => [Math.ceil(c.nEmbd / 256), 1, 1]);
      this.norm("output_norm", b.last, b.last_norm, () => 1);
      this.matmul(outName, b.last_norm, b.logits, "output.bias", () => 1);
    }
    this.finalLogits = b.logits;
    if (c.finalSoftcap) {
      this.add(
        "softcap",
        [b.logits, b.logits_capped],
        (n) => pack("If", logitRows(n) * c.nVocab, c.finalSoftcap),
        (n) => gridRows(Math.ceil((logitRows(n) * c.nVocab) / 256)),
      );
      this.finalLogits = b.logits_capped;
    }
    this.sampler = this.add("sample", [this.finalLogits, b.sampled], () => pack("IIIfII", 0, 0, 0, 0, 0, 0), () => [1, 1, 1]);
    this.steps.pop(); // the sampler runs only from sample()
    if (this.loraRanks.length) {
      this.pending.push(
        Promise.all([this.ctx.pipeline("lora_shrink"), this.ctx.pipeline("lora_expand")]).then(([shrink, expand]) => {
          this.loraPipelines = { shrink, expand };
        }),
      );
    }
    const pending = this.pending;
    this.pending = [];
    const results = await Promise.allSettled(pending);
    const error = await this.ctx.guard(device.popErrorScope());
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
    if (error) throw new ShaderError(`${this.header.source}: building the dispatch program failed validation: ${error.message}`);
  }

  // -- running ----------------------------------------------------------------------------------
  /** Record a step into one compute pass of a new command encoder; the pass is left open (for the sampler). */
  private encode(ids: number[], pos0: number, lora?: EngineLora): { enc: GPUCommandEncoder; pass: GPUComputePassEncoder } {
    if (lora !== undefined && (!(lora instanceof EngineLora) || lora.engine !== this || !this.loras.has(lora))) {
      throw new WgllmError(LORA_OWNER_MESSAGE);
    }
    const c = this.config;
    const n = ids.length;
    if (n < 1) throw new RangeError("no token ids to run");
    if (!Number.isInteger(pos0) || pos0 < 0) throw new RangeError(`pos0 = ${pos0}, expected an integer >= 0`);
    if (pos0 + n > this.maxTokens) throw new RangeError(`${pos0 + n} tokens do not fit in maxTokens=${this.maxTokens}`);
    const bad = ids.find((t) => !Number.isInteger(t) || t < 0 || t >= c.nVocab);
    if (bad !== undefined) throw new RangeError(`token id ${bad} is outside the vocabulary of ${c.nVocab}`);
    const ctx = this.ctx;
    ctx.write(this.b.ids, 0, new Uint32Array(ids));
    ctx.write(this.b.positions, 0, Uint32Array.from(ids, (_, i) => pos0 + i));
    this.activeLora = lora;
    const enc = ctx.device.createCommandEncoder({ label: "wgllm step" });
    const pass = enc.beginComputePass();
    for (const s of this.steps) {
      if ("loraSite" in s) {
        if (lora) this.dispatchLora(pass, s.loraSite, n);
        continue;
      }
      this.dispatch(pass, s, n, pos0);
    }
    return { enc, pass };
  }

  private dispatch(pass: GPUComputePassEncoder, s: Launch, n: number, pos0: number): void {
    const params = s.params(n, pos0);
    if (!sameBytes(s.written, params)) {
      this.ctx.write(s.uniform, 0, params); // most launches' params do not move between decode steps
      s.written = params;
    }
    const grid = s.grid(n, pos0);
    this.ctx.checkGrid(s.op, grid);
    const entry = s.entry(n);
    pass.setPipeline(s.pipelines.get(entry)!);
    pass.setBindGroup(0, s.bindGroups.get(entry)!);
    pass.dispatchWorkgroups(...grid);
  }

  /** shrink t = x A^T, then expand y += scale * t B^T, for the active adapter's factors of `name`. */
  private dispatchLora(pass: GPUComputePassEncoder, name: string, n: number): void {
    const lora = this.activeLora!;
    const w = lora.weights.get(name);
    if (!w) return; // a weight this adapter leaves alone
    if (w.written !== n) {
      this.ctx.write(w.shrink.uniform, 0, pack("III", n, w.k, w.rank));
      this.ctx.write(w.expand.uniform, 0, pack("IIIf", n, w.nOut, w.rank, lora.scale));
      w.written = n;
    }
    const shrinkGrid: Grid = [w.rank, n, 1];
    const expandGrid: Grid = [Math.ceil(w.nOut / LORA_EXPAND_WG), n, 1];
    this.ctx.checkGrid("lora_shrink", shrinkGrid);
    this.ctx.checkGrid("lora_expand", expandGrid);
    const { shrink, expand } = this.loraPipelines!;
    pass.setPipeline(shrink);
    pass.setBindGroup(0, w.shrink.bindGroup);
    pass.dispatchWorkgroups(...shrinkGrid);
    pass.setPipeline(expand);
    pass.setBindGroup(0, w.expand.bindGroup);
    pass.dispatchWorkgroups(...expandGrid);
  }

  /** Calls run one at a time: they share the step buffers and the readback buffers. */
  private serial<T>(work: () => Promise<T>): Promise<T> {
    const run = this.busy.then(() => {
      if (this.destroyed) throw new Error("this Engine was destroyed");
      this.ctx.checkAlive();
      return this.ctx.guard(work());
    });
    this.busy = run.catch(() => undefined);
    return run;
  }

  private async readback<T>(src: GPUBuffer, dst: GPUBuffer, bytes: number, enc: GPUCommandEncoder, read: (b: ArrayBuffer) => T): Promise<T> {
    enc.copyBufferToBuffer(src, 0, dst, 0, bytes);
    this.ctx.device.queue.submit([enc.finish()]);
    await dst.mapAsync(1 /* GPUMapMode.READ */, 0, bytes);
    try {
      return read(dst.getMappedRange(0, bytes));
    } finally {
      dst.unmap();
    }
  }

  /** Run `ids` at positions pos0.. (prefill when ids.length > 1, decode when 1), sample on the GPU, read back only the id. */
  sample(ids: number[], pos0: number, s: SampleSettings): Promise<number> {
    if (s.topK > MAX_TOP_K && s.temperature > 0) {
      return Promise.reject(new RangeError(`top_k = ${s.topK} is above the GPU sampler's maximum of ${MAX_TOP_K}`));
    }
    return this.serial(async () => {
      const { enc, pass } = this.encode(ids, pos0, s.lora);
      const c = this.config;
      const offset = this.allLogits ? (ids.length - 1) * c.nVocab : 0;
      this.ctx.write(this.sampler.uniform, 0, pack("IIIfII", c.nVocab, offset, Math.max(0, s.topK), s.temperature, s.seed, s.step));
      const pipeline = this.sampler.pipelines.get("main")!;
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, this.sampler.bindGroups.get("main")!);
      pass.dispatchWorkgroups(1, 1, 1);
      pass.end();
      return this.readback(this.b.sampled, this.b.sampledRead, 4, enc, (m) => new Uint32Array(m)[0]);
    });
  }

  /** Run `ids` (with `lora` applied, if given) and return the logits of the last row (or, with
   * allLogits, all rows, row-major). */
  logits(ids: number[], pos0: number, lora?: EngineLora): Promise<Float32Array> {
    return this.serial(async () => {
      const { enc, pass } = this.encode(ids, pos0, lora);
      pass.end();
      const rows = this.allLogits ? ids.length : 1;
      return this.readback(this.finalLogits, this.b.readback, rows * this.config.nVocab * 4, enc, (m) => new Float32Array(m.slice(0)));
    });
  }

  // -- LoRA ---------------------------------------------------------------------------------------

  /**
   * Read the LoRA adapter arriving on `stream`, check it against this model (architecture, weights,
   * shapes, a declared rank) and upload its factors, uniforms and bind groups, once.
   */
  async loadLora(stream: GGUFStream): Promise<EngineLora> {
    try {
      if (this.destroyed) throw new Error("this Engine was destroyed");
      this.ctx.checkAlive();
      const info = readLoraHeader(stream.header);
      checkLoraAgainst(info, this.header, this.config.nLayer);
      if (!this.loraRanks.includes(info.rank)) {
        const declared = this.loraRanks.length ? this.loraRanks.join(", ") : "none";
        throw new WgllmError(
          `${info.source}: LoRA rank ${info.rank} was not declared when this model was created ` +
            `(loraRanks: ${declared}); create it with loraRanks including ${info.rank}`,
        );
      }
      for (const base of info.pairs.keys()) {
        if (!this.loraSites.has(this.loraParts.get(base)?.site ?? base)) {
          throw new ModelFormatError(`${info.source}: tensor ${base}.lora_a adapts ${base}, which the GPU engine does not run as a layer matmul`);
        }
      }
      const factors = stackLoraFactors(await readLoraFactors(stream, info), info.rank, this.loraParts, this.loraSites);
      if (this.destroyed) throw new Error("this Engine was destroyed");
      const ctx = this.ctx;
      const made = await ctx.allocating(`${info.source}: LoRA factors`, () =>
        factors.flatMap((f) => [
          ctx.buffer(4 * f.a.length, `${f.site}.lora_a`),
          ctx.buffer(4 * f.b.length, `${f.site}.lora_b`),
          ctx.buffer(16, `${f.site} lora_shrink params`, { uniform: true }),
          ctx.buffer(16, `${f.site} lora_expand params`, { uniform: true }),
        ]),
      );
      const { shrink, expand } = this.loraPipelines!;
      const weights = new Map<string, LoraWeight>();
      factors.forEach((f, i) => {
        const [a, b, uShrink, uExpand] = made.slice(4 * i, 4 * i + 4);
        ctx.write(a, 0, f.a);
        ctx.write(b, 0, f.b);
        const site = this.loraSites.get(f.site)!;
        weights.set(f.site, {
          rank: f.rank,
          nOut: site.nOut,
          k: site.k,
          buffers: [a, b, uShrink, uExpand],
          shrink: { uniform: uShrink, bindGroup: ctx.bindGroup(shrink, [uShrink, site.x, a, this.b.lora_t], `${f.site} lora_shrink`) },
          expand: { uniform: uExpand, bindGroup: ctx.bindGroup(expand, [uExpand, this.b.lora_t, b, site.y], `${f.site} lora_expand`) },
        });
      });
      const lora = new EngineLora(this, info.source, info.rank, info.alpha, info.baseModel, weights, (l) => this.releaseLora(l));
      this.loras.add(lora);
      return lora;
    } catch (e) {
      await stream.cancel();
      throw e;
    }
  }

  private releaseLora(lora: EngineLora): void {
    if (!this.loras.delete(lora)) return;
    for (const w of lora.weights.values()) for (const buf of w.buffers) this.ctx.destroyBuffer(buf);
    lora.weights.clear();
  }

  /** Free every GPU buffer of the model (its adapters' too). */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const lora of [...this.loras]) lora.destroy();
    for (const buf of this.owned) this.ctx.destroyBuffer(buf);
    this.owned.length = 0;
    this.weights.clear();
    this.vecs.clear();
  }
}
