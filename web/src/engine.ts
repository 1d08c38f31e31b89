// The WebGPU forward pass in the browser: the twin of py/wgllm/gpu/engine.py, running the same
// shaders/*.wgsl with the same Params, the same dispatch program and the same GPU sampler, so a
// model gives the Python GPU engine's tokens. Weights are uploaded once while the file streams in;
// buffers are allocated once for maxTokens rows; each step writes the ids, positions and the
// Params uniforms that changed, encodes every dispatch, the sampler's included, into one compute
// pass of one command buffer (the last row is copied by a kv_store launch, so nothing breaks the
// pass, as in Python), and reads back only the sampled id (or the logits).
// The plan of weights and buffers is buffer_plan.ts's; the launch bookkeeping is program.ts's.
//
// KV cache (as in Python's engine): on a device with shader-f16, unless forceF32, it holds f16 (2
// bytes an element): the rope of K and the kv_store of V write it and attention reads it through the
// shaders' "f16 KV" variant (shaders.ts kvF16Variant). Every sum, score and softmax stays f32; only
// the stored K and V are rounded. Otherwise it is f32; kvCacheType says which.
//
// LoRA (as in Python's engine; the GPU side in lora_gpu.ts): the ranks are declared up front
// (loraRanks). With any, each layer matmul is followed by a LoRA step that, for the adapter chosen per
// call, runs lora_shrink then lora_expand into the matmul's output (nothing without one). Adapters are
// uploaded by loadLora with their uniforms and bind groups, once, and stay resident together:
// switching costs no rebuild.
//
// The residual adds after the attention output and ffn_down matmuls run in those matmuls' epilogue
// (Python's fuse_residual), except where a post-norm sits between the matmul and the add (Gemma-2/3);
// a gated MLP's ffn_gate and ffn_up run as one matmul of (gate, up) row pairs that writes
// act(gate) * up (Python's fuse_glu), where pair_glu allows and no LoRA ranks are declared.

import { type Layout, type Needs, activationSizes, decodeHeadGroups, decodeSplits, planBuffers, uploadTensors } from "./buffer_plan";
import { DeviceLimitError } from "./errors";
import type { GGUFHeader, GGUFStream } from "./gguf";
import { GpuContext, GpuOutOfMemoryError, type KernelFamily, ShaderError, type TracedLaunch, TracingPass, resolveKernels, shaderConstant } from "./gpu";
import { type EngineLora, LoraSites } from "./lora_gpu";
import { type ModelConfig, layerNRot, layerRope, modelConfigFromHeader, ropeFactorsName } from "./model";
import { type Grid, type Launch, type Params, Program, gridRows, pack } from "./program";
import { MAX_LOGIT_BIAS, MAX_TOP_LOGPROBS, SAMPLING_DEFAULTS, type SamplingChecked, adjustEntries, maskWords } from "./sampling";
import { GpuWeight, embeddingGroupSize, matmulGeometry } from "./weights";

export interface EngineOptions {
  maxTokens: number;
  allLogits?: boolean;
  /** Tests: bind weights in chunks no larger than this (at most the device's maxStorageBufferBindingSize). */
  maxWeightBinding?: number;
  /** The ranks LoRA adapters may have (MediaPipe's loraRanks): declared here, checked by loadLora. */
  loraRanks?: number[];
  /** Keep the KV cache in f32 even on a device with shader-f16 (kvCacheType is then "f32"). */
  forceF32?: boolean;
  /** The kernel family, "gpu" or "cpu"; undefined chooses from the device's adapter (gpu.ts
   * resolveKernels: "cpu" on CPU-emulated WebGPU such as SwiftShader, "gpu" on real GPUs). */
  kernels?: KernelFamily;
  /** The fusions, each on by default (Python's GpuEngine switches of the same names; false is the A/B
   * of bench/ and the tests): attn_q/k/v as one matmul of their stacked rows; the residual adds in the
   * epilogue of the attn_output and ffn_down matmuls; ffn_gate and ffn_up as one matmul writing
   * act(gate) * up; RoPE of Q and K and the V store in one launch after a stacked or fused Q/K/V. */
  stackQkv?: boolean;
  fuseResidual?: boolean;
  fuseGlu?: boolean;
  fuseRopeKv?: boolean;
  /** A decode step's RMSNorms inside the matmuls after them: undefined is on in the gpu family and off
   * in the cpu family, true with the cpu family is refused (its matvec has no norm); never with LoRA
   * ranks, LayerNorm or a parallel block. */
  fuseNorm?: boolean;
}

/** Where Engine.load's seconds went, in seconds (bench/NOTES.md, "Load time"). The pipelines compile
 * in the GPU process while the weights upload, so pipelines and upload overlap; the load waits for
 * whichever ends last. */
export interface LoadTimings {
  /** Planning, then the activation, KV cache and weight buffers allocated. */
  allocate: number;
  /** The weights streamed in: the stream's bytes read, repacked and written to the GPU's queue. */
  upload: number;
  /** Of upload: waiting for the stream's next bytes (download or file read). */
  uploadRead: number;
  /** From the first pipeline asked for to the last one ready. */
  pipelines: number;
  /** What the load still waited for the pipelines after the upload: the part the upload did not hide. */
  pipelineWait: number;
  /** The GPU's queue finishing the upload's writes. */
  queue: number;
  total: number;
  /** Each distinct pipeline ("op:entry", its constants and variant) with the seconds from the first
   * pipeline asked for to it being ready, in the order they got ready. All are asked for at once; where
   * they compile one after another (Chromium on SwiftShader), a gap is that pipeline's own cost. */
  pipelineList: [string, number][];
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
  /** The rest of the chain (sampling.ts; checkSampling's result): top-p, min-p, penalties, bias, logprobs. */
  extras?: SamplingChecked;
  /** Every id fed so far, this call's included: the penalties' window is its tail. */
  history?: readonly number[];
  /** A grammar's mask (grammar.ts tokenMask: 1 = allowed, one per id): uploaded as bits, applied in the sampler. */
  mask?: Uint8Array;
}

/** A sampled token, with its log-probability and the best alternatives when extras.logprobs asks. */
export interface SampledToken {
  token: number;
  logprob?: number;
  top?: [number, number][];
}

const GLU_KINDS = { swiglu: 1, geglu: 2 }; // Params.glu of the matmul kernels

/** A matmul input that is an RMSNorm's output a decode step does not make (Python's fuse_norm): the
 * norm weight and the un-normed rows that a decode step reads and norms in the kernel (Params.norm);
 * `prefill`: the rows the other steps read and norm too (the head's last row), else they read the
 * norm launch's output. */
interface Normed {
  w: GPUBuffer;
  decode: GPUBuffer;
  prefill?: GPUBuffer;
}
export const MAX_TOP_K = shaderConstant("sample", "MAX_K");
const SAMPLE_PARAMS = "IIIfIIfffIIII"; // sample.wgsl's Params
// grid geometry from the shaders' own constants (as Python's engine reads them)
const ROPE_WG = shaderConstant("rope", "WG_SIZE");
const KV_STORE_WG = shaderConstant("kv_store", "WG_SIZE");
const EMBEDDING_WG = shaderConstant("embedding", "WG_SIZE");
const SOFTCAP_WG = shaderConstant("softcap", "WG_SIZE");
const ATTENTION_QUERIES = 4 * shaderConstant("attention", "WG_SIZE"); // the cpu family's prefill: a vec4 of queries per invocation

interface Src {
  buf: GPUBuffer;
  stride: number;
  offset: number;
}

export class Engine {
  readonly config: ModelConfig;
  readonly maxTokens: number;
  readonly allLogits: boolean;
  /** Declared LoRA ranks, ascending, without repeats. */
  readonly loraRanks: number[];
  /** The KV cache's element type (see EngineOptions.forceF32). */
  readonly kvCacheType: KvCacheType;
  /** The kernel family that runs (see EngineOptions.kernels). */
  readonly kernels: KernelFamily;
  private readonly ctx: GpuContext;
  private readonly owned: GPUBuffer[] = [];
  private readonly weights = new Map<string, GpuWeight>();
  private readonly vecs = new Map<string, GPUBuffer>();
  private readonly program: Program;
  private sampler!: Launch;
  /** The sampler's Adjust entries (logit_bias, penalties), its logprobs output and that one's readback. */
  private sampleAdjust!: GPUBuffer;
  private sampleLogprobs!: GPUBuffer;
  private sampleLogprobsRead!: GPUBuffer;
  /** A grammar's token mask, a bit per id (sample.wgsl's binding 5). */
  private sampleMask!: GPUBuffer;
  private finalLogits!: GPUBuffer;
  private busy: Promise<unknown> = Promise.resolve();
  private buildErrors: Promise<GPUError | null> = Promise.resolve(null);
  /** Where Engine.load's seconds went (set once it returns). */
  loadTimings?: LoadTimings;
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
  private readonly lora: LoraSites; // the layer matmuls' LoRA sites and the resident adapters
  private readonly options: EngineOptions;

  private constructor(readonly header: GGUFHeader, device: GPUDevice, options: EngineOptions) {
    this.ctx = GpuContext.of(device);
    this.config = modelConfigFromHeader(header);
    this.maxTokens = options.maxTokens;
    this.allLogits = options.allLogits ?? false;
    this.loraRanks = [...new Set(options.loraRanks ?? [])].sort((a, b) => a - b);
    this.kvCacheType = this.ctx.hasF16 && !options.forceF32 ? "f16" : "f32";
    this.kernels = resolveKernels(options.kernels, device);
    this.options = options;
    this.program = new Program(this.ctx, this.owned);
    this.lora = new LoraSites(this.ctx);
  }

  /** The KV cache is f16: rope-K, kv_store-V and attention run the shaders' f16 KV variant. */
  private get kvF16(): boolean {
    return this.kvCacheType === "f16";
  }

  /** Everything a load does before it reads a weight: the options checked, the plan made from the
   * header and the limits, every buffer allocated (GpuOutOfMemoryError with the bytes needed where the
   * device refuses); on failure what was allocated is freed. t0/t1 time the allocation. */
  private static async allocated(device: GPUDevice, header: GGUFStream["header"], options: EngineOptions): Promise<{ engine: Engine; needs: Needs; t0: number; t1: number }> {
    const maxTokens = options.maxTokens;
    if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new RangeError(`maxTokens = ${maxTokens}, expected a positive integer`);
    const ranks = options.loraRanks ?? [];
    if (!Array.isArray(ranks) || !ranks.every((r) => Number.isInteger(r) && r >= 1)) {
      throw new RangeError(`loraRanks = ${JSON.stringify(ranks)}, expected a list of positive integers`);
    }
    const engine = new Engine(header, device, options);
    try {
      if (options.fuseNorm && engine.kernels !== "gpu") {
        throw new RangeError(`fuseNorm: true needs the gpu kernel family (the cpu family's matvec has no norm), got kernels "${engine.kernels}"`);
      }
      engine.ctx.checkAlive();
      const needs = engine.plan(options.maxWeightBinding);
      engine.checkLimits();
      const t0 = performance.now();
      await engine.allocateOrExplain(needs);
      return { engine, needs, t0, t1: performance.now() };
    } catch (e) {
      engine.destroy();
      throw e;
    }
  }

  /** Whether a model of this header fits the device with these options: what Engine.load checks and
   * allocates before it reads a weight (the same errors), the buffers freed again. For a load whose
   * bytes would be downloaded whole before being read (cacheModel), so that a model too large is
   * refused first. */
  static async checkFits(device: GPUDevice, header: GGUFStream["header"], options: EngineOptions): Promise<void> {
    (await Engine.allocated(device, header, options)).engine.destroy();
  }

  /** Upload the model arriving on `stream` to `device`. */
  static async load(device: GPUDevice, stream: GGUFStream, options: EngineOptions): Promise<Engine> {
    let engine: Engine | undefined;
    try {
      const made = await Engine.allocated(device, stream.header, options);
      engine = made.engine;
      const { needs, t0, t1 } = made;
      engine.build(); // every pipeline starts compiling (in the GPU process) ...
      const { readSeconds } = await uploadTensors(engine.ctx, stream, needs, engine.weights, engine.vecs); // ... while the weights stream in
      const t2 = performance.now();
      await engine.settleProgram();
      const t3 = performance.now();
      await engine.ctx.guard(device.queue.onSubmittedWorkDone());
      engine.loadTimings = engine.timings([t0, t1, t2, t3, performance.now()], readSeconds);
      return engine;
    } catch (e) {
      engine?.destroy();
      await stream.cancel();
      throw e;
    }
  }

  // -- planning: every check that needs only the header and the limits --------------------------
  private plan(maxWeightBinding?: number): Needs {
    const binding = Math.min(maxWeightBinding ?? Infinity, this.ctx.maxBinding, this.ctx.maxBuffer);
    const { needs, layout } = planBuffers(this.config, this.header, binding, this.loraRanks, this.options);
    this.fused = layout.fused;
    this.qkvStacked = layout.qkvStacked;
    this.gluPaired = layout.gluPaired;
    return needs;
  }

  private activationSizes(): [string, number][] {
    const layout: Layout = { fused: this.fused, qkvStacked: this.qkvStacked, gluPaired: this.gluPaired };
    return activationSizes(this.config, layout, { rows: this.maxTokens, allLogits: this.allLogits, loraRanks: this.loraRanks, kvF16: this.kvF16, kernels: this.kernels });
  }

  private checkLimits(): void {
    const binding = Math.min(this.ctx.maxBinding, this.ctx.maxBuffer);
    for (const [name, bytes] of this.activationSizes()) {
      const what = `${this.header.source}: the ${name} buffer for maxTokens = ${this.maxTokens}${name === "logits" && this.allLogits ? " (allLogits)" : ""}`;
      if (bytes > this.ctx.maxBuffer) throw new DeviceLimitError("maxBufferSize", bytes, this.ctx.maxBuffer, what);
      if (bytes > binding) throw new DeviceLimitError("maxStorageBufferBindingSize", bytes, this.ctx.maxBinding, what);
    }
  }

  /** allocate(), an out-of-memory failure told against the bytes the whole load needs. */
  private async allocateOrExplain(needs: Needs): Promise<void> {
    try {
      await this.allocate(needs);
    } catch (e) {
      if (!(e instanceof GpuOutOfMemoryError)) throw e;
      const pad = (n: number) => Math.max(4, Math.ceil(n / 4) * 4); // as GpuContext.buffer
      const activations = this.activationSizes().reduce((s, [, n]) => s + pad(n), 0);
      const weights = [...needs.mats.values()].reduce((s, p) => s + p.chunkSizes().reduce((t, c) => t + c.sizes.reduce((u, n) => u + pad(n), 0), 0), 0);
      const vectors = [...needs.vecs.values()].reduce((s, n) => s + pad(4 * n), 0);
      const readback = this.samplerSizes().reduce((s, [, n]) => s + pad(n), 0);
      const of = `${this.header.source} (weights ${weights + vectors} bytes, activations and KV cache for maxTokens = ${this.maxTokens} ${activations + readback} bytes)`;
      const planned = { bytes: weights + vectors + activations + readback, of, maxBuffer: this.ctx.maxBuffer };
      throw new GpuOutOfMemoryError(e.what, e.asked, e.allocatedBefore, e.detail, planned);
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
    if (this.b.rope_ones) ctx.write(this.b.rope_ones, 0, new Float32Array(this.b.rope_ones.size / 4).fill(1));
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
    const [readback, sampledRead, adjust, logprobs, logprobsRead, mask] = await ctx.allocating("readback and sampler buffers", () =>
      this.samplerSizes().map(([label, bytes, readback]) => ctx.buffer(bytes, label, { readback })),
    );
    this.owned.push(readback, sampledRead, adjust, logprobs, logprobsRead, mask);
    this.sampleMask = mask;
    this.b.readback = readback;
    this.b.sampledRead = sampledRead;
    this.sampleAdjust = adjust;
    this.sampleLogprobs = logprobs;
    this.sampleLogprobsRead = logprobsRead;
  }

  /** The readback buffers and the sampler's own (label, bytes, readback), in allocate()'s order: the
   * sampler's Adjust entries (one per id with a bias or a count in the penalty window: at most the
   * context's ids and MAX_LOGIT_BIAS) and its logprobs output with that one's readback. */
  private samplerSizes(): [string, number, boolean][] {
    const logprobBytes = 4 * (2 + 2 * MAX_TOP_LOGPROBS);
    return [
      ["logits readback", (this.allLogits ? this.maxTokens : 1) * this.config.nVocab * 4, true],
      ["sampled readback", 4, true],
      ["sampler adjust entries", 16 * (this.maxTokens + MAX_LOGIT_BIAS), false],
      ["sampler logprobs", logprobBytes, false],
      ["sampler logprobs readback", logprobBytes, true],
      ["sampler token mask", Math.max(16, 4 * Math.ceil(this.config.nVocab / 32)), false],
    ];
  }

  // -- the program ------------------------------------------------------------------------------
  /** y = x W^T (+ bias) (+ residual, added in the kernel's epilogue; never y itself), or with glu (a
   * pairs weight) act(gate) * up. */
  private matmul(
    name: string, x: GPUBuffer, y: GPUBuffer, biasName?: string, rows?: (n: number) => number, residual?: GPUBuffer, glu?: "swiglu" | "geglu",
    norm?: Normed,
  ): void {
    const w = this.weights.get(name)!;
    const bias = biasName ? this.vecs.get(biasName) : undefined;
    const rowsOf = rows ?? ((n: number) => n);
    const op = `matmul_${w.plan.shader}`;
    const geo = matmulGeometry(w.plan.shader);
    const { k, nOut } = w.plan;
    // the family's kernels (Python's weights._matmul_entry): gpu splits k over a workgroup in decode
    // and stages workgroup-memory tiles in prefill
    const split = this.kernels === "gpu";
    const matvec = split ? "matvec_split" : "matvec";
    const matvecRows = split ? geo.splitRows : geo.matvecRows;
    const prefill = split ? "main_tiled" : "main";
    const [tileRows, tileN] = split ? [geo.tiledRows, geo.tiledN] : [geo.tile, geo.tile];
    const mvWg = Math.min(geo.splitThreads, this.ctx.maxInvocations);
    const constants = (e: string) => (e === "matvec_split" ? { MV_WG: mvWg } : undefined);
    // a matmul of one row at every n (the head on the last row) never runs, so never compiles, its prefill kernel
    const entries = rowsOf(this.maxTokens) === 1 ? [matvec] : [matvec, prefill];
    const entry = (n: number) => (rowsOf(n) === 1 ? matvec : prefill);
    const none: Grid = [0, 0, 0];
    for (const chunk of w.chunks) {
      const grid = (n: number): Grid =>
        rowsOf(n) === 1 ? gridRows(Math.ceil(chunk.rows / matvecRows)) : [Math.ceil(chunk.rows / tileRows), Math.ceil(rowsOf(n) / tileN), 1];
      const flags = [bias ? 1 : 0, residual ? 1 : 0, glu ? GLU_KINDS[glu] : 0];
      const params = (n: number, normed: boolean) =>
        pack("IIIIIIIIIf", k, nOut, chunk.rows, chunk.rowStart, rowsOf(n), ...flags, normed ? 1 : 0, normed ? this.config.normEps : 0);
      const add = (input: GPUBuffer, normed: boolean, when: (n: number) => boolean, es: string[]) =>
        this.program.add(op, [...chunk.buffers, input, bias ?? this.b.zeros, normed ? norm!.w : (residual ?? this.b.zeros), y],
          (n) => params(n, normed), (n) => (when(n) ? grid(n) : none), es, entry, constants);
      if (!norm) {
        add(x, false, () => true, entries);
        continue;
      }
      // a decode step reads the un-normed rows and norms them in the kernel, the norm weight bound where
      // the residual is (Python's _matmul norm=); other steps read x, the norm launch's output, or with
      // norm.prefill (the head: one row at every n) that row, normed in the kernel too
      add(norm.decode, true, (n) => n === 1, [matvec]);
      if (norm.prefill) add(norm.prefill, true, (n) => n > 1, [matvec]);
      else add(x, false, (n) => n > 1, [prefill]);
    }
    if (this.loraRanks.length && name.startsWith("blk.")) {
      this.lora.sites.set(name, { x, y, k, nOut });
      this.program.addLoraStep(name);
    }
  }

  /** Norm rows(n) rows of x into y; decode false: not in a decode step, whose matmuls norm x themselves
   * (fuseNorm), which gets what they need (Python's _norm). */
  private norm(prefix: string, x: GPUBuffer, y: GPUBuffer, rows: (n: number) => number = (n) => n, dim?: number, decode = true): Normed | undefined {
    const c = this.config;
    const d = dim ?? c.nEmbd;
    const w = this.vecs.get(`${prefix}.weight`)!;
    const params: Params = (n) => pack("IIf", rows(n), d, c.normEps);
    const grid = (n: number): Grid => (n === 1 && !decode ? [0, 0, 0] : gridRows(rows(n)));
    const constants = this.rowConstants();
    if (c.recipe.norm === "rms") this.program.add("rms_norm", [x, w, y], params, grid, ["main"], undefined, constants);
    else this.program.add("layer_norm", [x, w, this.vecs.get(`${prefix}.bias`) ?? this.b.zeros, y], params, grid, ["main"], undefined, constants);
    return decode ? undefined : { w, decode: x };
  }

  /** A decode step's RMSNorms run inside the matmuls after them (Python's fuse_norm): in the gpu family
   * only (a cpu-family matvec invocation would redo the norm over all of x for its rows: slower on
   * llvmpipe, bench/NOTES.md), not with LoRA ranks (the adapters' shrink reads the normed rows),
   * LayerNorm or a parallel block. */
  private get fuseNorm(): boolean {
    const r = this.config.recipe;
    return (this.options.fuseNorm ?? this.kernels === "gpu") && this.loraRanks.length === 0 && r.norm === "rms" && !r.parallel;
  }

  /** Override constants of the row kernels (norms) and the sampler: the cpu family keeps the shaders'
   * defaults (8 threads a norm row, one llvmpipe SIMD vector; 64 for the sampler); the gpu family a
   * workgroup of up to 256 (Python's _row_constants). */
  private rowConstants(): Record<string, number> | undefined {
    return this.kernels === "gpu" ? { WG_SIZE: Math.min(256, this.ctx.maxInvocations) } : undefined;
  }

  private addOp(a: GPUBuffer, b: GPUBuffer, y: GPUBuffer, width: number): void {
    const wg = shaderConstant("add", "WG_SIZE");
    this.program.add("add", [a, b, y], (n) => pack("I", n * width), (n) => [Math.ceil((n * width) / wg), 1, 1]);
  }

  private elementwise(op: string, inputs: GPUBuffer[], y: GPUBuffer, width: number): void {
    const wg = shaderConstant(op, "WG_SIZE");
    this.program.add(op, [...inputs, y], (n) => pack("I", n * width), (n) => gridRows(Math.ceil((n * width) / wg)));
  }

  /** rope.wgsl's divisors of the rotary frequencies: the file's rope_freqs (llama-3), LongRoPE's long or
   * short factors (long when maxTokens, the context, passes the original one: llama.cpp's choice), else ones. */
  private ropeFactors(): GPUBuffer {
    const name = ropeFactorsName(this.config, this.maxTokens);
    return (name !== undefined ? this.vecs.get(name) : undefined) ?? this.b.rope_ones;
  }

  /** Rotate the first nRot dims of each head (0: copy them all, without RoPE or on a NoPE layer). */
  private rope(src: Src, dst: GPUBuffer, dstStride: number, intoCache: boolean, heads: number, base: number, posScale: number, neox: number, nRot: number): void {
    const c = this.config;
    this.program.add(
      "rope",
      [this.b.positions, src.buf, dst, this.ropeFactors()],
      (n, p) => pack("IIIIIIIIffIf", n, heads, c.headDim, nRot, src.stride, src.offset, dstStride, intoCache ? p * dstStride : 0, base, posScale, neox, c.ropeAttnFactor),
      (n) => [Math.ceil((heads * c.headDim) / 2 / ROPE_WG), n, 1],
      ["main"], undefined, undefined,
      intoCache && this.kvF16, // K rotated straight into the cache, in its element type; Q stays f32
    );
  }

  /** After a layer's one Q/K/V matmul (the qkv buffer): Q rotated into qOut, K rotated into the K cache
   * and V copied into the V cache at row pos0, in one launch (rope.wgsl's qkv entry; Python's _rope_qkv). */
  private ropeQkv(qOut: GPUBuffer, i: number, base: number, posScale: number, neox: number): void {
    const c = this.config;
    const qDim = c.nHead * c.headDim;
    const kvDim = c.nHeadKv * c.headDim;
    const vDim = c.nHeadKv * c.headDimV;
    const items = (qDim + kvDim) / 2 + vDim;
    const wg = shaderConstant("rope", "WG_SIZE");
    this.program.add(
      "rope",
      [this.b.positions, this.b.qkv, this.kCache[i], qOut, this.vCache[i], this.ropeFactors()],
      (_n, p) => pack("IIIIIIIIffIf", c.nHead, c.nHeadKv, c.headDim, vDim, layerNRot(c, i), qDim + kvDim + vDim, p * kvDim, p * vDim, base, posScale, neox, c.ropeAttnFactor),
      (n) => [Math.ceil(items / wg), n, 1],
      ["qkv"], () => "qkv", undefined,
      this.kvF16,
    );
  }

  /** This step's rows of V into the cache (in its element type) at row pos0. */
  private kvStore(src: Src, cache: GPUBuffer, rowLen: number): void {
    this.program.add(
      "kv_store",
      [src.buf, cache],
      (_n, p) => pack("IIIII", rowLen, src.stride, src.offset, rowLen, p * rowLen),
      (n) => [Math.ceil(rowLen / KV_STORE_WG), n, 1],
      ["main"], undefined, undefined,
      this.kvF16,
    );
  }

  private ffn(i: number, h: GPUBuffer, out: GPUBuffer, residual?: GPUBuffer, norm?: Normed): void {
    const c = this.config;
    const b = this.b;
    const blk = `blk.${i}.`;
    const kind = c.recipe.ffn;
    if (this.gluPaired[i] && (kind === "swiglu" || kind === "geglu")) {
      this.matmul(blk + "ffn_gate+up.weight", h, b.act, undefined, undefined, undefined, kind, norm); // one launch writes act(gate) * up
    } else if (kind === "swiglu" || kind === "geglu") {
      this.matmul(blk + "ffn_up.weight", h, b.up, blk + "ffn_up.bias", undefined, undefined, undefined, norm);
      this.matmul(blk + "ffn_gate.weight", h, b.gate, blk + "ffn_gate.bias", undefined, undefined, undefined, norm);
      this.elementwise(kind, [b.gate, b.up], b.act, c.nFf);
    } else {
      this.matmul(blk + "ffn_up.weight", h, b.up, blk + "ffn_up.bias", undefined, undefined, undefined, norm);
      this.elementwise(kind === "gelu" ? "gelu_tanh" : "gelu_erf", [b.up], b.act, c.nFf);
    }
    this.matmul(blk + "ffn_down.weight", b.act, out, blk + "ffn_down.bias", undefined, residual);
  }

  /** Layer i's attention in the gpu family (Python's _attention_gpu): prefill (n > 1) is one launch of
   * prefill_tiled; decode is decode_split over the keys in splits into attn_splits, then
   * attention_combine into attn. Each launch's grid is empty, so it is not recorded, at the other n. */
  private attentionGpu(q: GPUBuffer, i: number, window: number): void {
    const c = this.config;
    const b = this.b;
    const params = (n: number, p: number, direct = 0) =>
      pack("IIIIIIfffII", c.nHead, c.nHeadKv, c.headDim, c.headDimV, p + n, window, c.attnScale, c.attnSoftcap, c.alibiMaxBias, n, direct);
    const inputs = [q, this.kCache[i], this.vCache[i], b.positions];
    const qTile = shaderConstant("attention", "Q_TILE");
    const groups = decodeHeadGroups(c.nHead, c.nHeadKv);
    const none: Grid = [0, 0, 0];
    const prefillGrid = (n: number): Grid => (n > 1 ? [c.nHead, Math.ceil(n / qTile), 1] : none);
    // while the keys are one split, decode_split alone writes the output (Params.direct; Python's _attention_gpu)
    const oneSplit = (n: number, p: number) => n === 1 && decodeSplits(p + n, window) === 1;
    const splitGrid = (n: number, p: number): Grid => (n === 1 && !oneSplit(n, p) ? [groups, decodeSplits(p + n, window), 1] : none);
    this.program.add("attention", [...inputs, b.attn], (n, p) => params(n, p), prefillGrid, ["prefill_tiled"], () => "prefill_tiled", undefined, this.kvF16);
    this.program.add("attention", [...inputs, b.attn], (n, p) => params(n, p, 1), (n, p) => (oneSplit(n, p) ? [groups, 1, 1] : none), ["decode_split"], () => "decode_split", undefined, this.kvF16);
    this.program.add("attention", [...inputs, b.attn_splits], (n, p) => params(n, p), splitGrid, ["decode_split"], () => "decode_split", undefined, this.kvF16);
    this.program.add(
      "attention_combine",
      [b.attn_splits, b.attn],
      (n, p) => pack("III", c.nHead, c.headDimV, decodeSplits(p + n, window)),
      (n, p) => (n === 1 && !oneSplit(n, p) ? [c.nHead, 1, 1] : none),
    );
  }

  /** Add every launch; their pipelines compile in the background until settleProgram(). */
  private build(): void {
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
      this.program.add(`embedding_${embd.plan.shader}`, [...chunk.buffers, b.ids, x[0]], () => pack("IIIf", embd.plan.k, chunk.rowStart, chunk.rows, scale), (n) => [groupsX, n, 1]);
    }
    if (c.recipe.learnedPos) {
      const posTable = this.vecs.get("position_embd.weight")!;
      this.program.add("embedding", [posTable, b.positions, b.h], () => pack("If", c.nEmbd, 1.0), (n) => [Math.ceil(c.nEmbd / EMBEDDING_WG), n, 1]);
      this.addOp(x[0], b.h, x[1], c.nEmbd);
      cur = 1;
    }
    this.program.mark("embd", x[cur], c.nEmbd);
    for (let i = 0; i < c.nLayer; i++) {
      const blk = `blk.${i}.`;
      const [xc, xn] = [x[cur], x[1 - cur]];
      const attnNormed = this.norm(blk + "attn_norm", xc, b.h, undefined, undefined, !this.fuseNorm); // for the matmuls reading h
      this.program.mark(blk + "attn_norm", b.h, c.nEmbd);
      let srcQ: Src;
      let srcK: Src;
      let srcV: Src;
      const oneMatmul = this.fused || this.qkvStacked[i];
      if (oneMatmul) {
        if (this.fused) this.matmul(blk + "attn_qkv.weight", b.h, b.qkv, blk + "attn_qkv.bias", undefined, undefined, undefined, attnNormed);
        else {
          const site = blk + "attn_q+k+v.weight";
          this.matmul(site, b.h, b.qkv, blk + "attn_q+k+v.bias", undefined, undefined, undefined, attnNormed);
          ["q", "k", "v"].forEach((p, j) => this.lora.parts.set(`${blk}attn_${p}.weight`, { site, col: [0, qDim, qDim + kvDim][j] }));
        }
        const row = qDim + kvDim + vDim;
        srcQ = { buf: b.qkv, stride: row, offset: 0 };
        srcK = { buf: b.qkv, stride: row, offset: qDim };
        srcV = { buf: b.qkv, stride: row, offset: qDim + kvDim };
        if (c.recipe.qkNorm) {
          // both norms in place on the stacked rows, one launch (Python's qk_norm step)
          const heads = c.nHead + c.nHeadKv;
          this.program.add(
            "qk_norm",
            [b.qkv, this.vecs.get(`${blk}attn_q_norm.weight`)!, this.vecs.get(`${blk}attn_k_norm.weight`)!],
            (n) => pack("IIfIII", n * heads, c.headDim, c.normEps, c.nHead, heads, row),
            (n) => gridRows(n * heads),
            ["main"], undefined, this.rowConstants(),
          );
        }
      } else {
        this.matmul(blk + "attn_q.weight", b.h, b.q, blk + "attn_q.bias", undefined, undefined, undefined, attnNormed);
        this.matmul(blk + "attn_k.weight", b.h, b.k, blk + "attn_k.bias", undefined, undefined, undefined, attnNormed);
        this.matmul(blk + "attn_v.weight", b.h, b.v, blk + "attn_v.bias", undefined, undefined, undefined, attnNormed);
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
      if (oneMatmul && this.options.fuseRopeKv !== false) {
        this.ropeQkv(qOut, i, base, posScale, neox); // Q, K and V in one buffer: one launch for all three (Python's fuse_rope_kv)
      } else {
        this.rope(srcQ, qOut, qDim, false, c.nHead, base, posScale, neox, layerNRot(c, i));
        this.rope(srcK, this.kCache[i], kvDim, true, c.nHeadKv, base, posScale, neox, layerNRot(c, i));
        this.kvStore(srcV, this.vCache[i], vDim);
      }
      this.program.mark(blk + "q", qOut, qDim);
      this.program.mark(blk + "k", this.kCache[i], kvDim, this.kvF16);
      this.program.mark(blk + "v", this.vCache[i], vDim, this.kvF16);
      const window = c.swaLayers[i] ? c.slidingWindow : 0;
      if (this.kernels === "gpu") {
        this.attentionGpu(qOut, i, window);
      } else {
        this.program.add(
          "attention",
          [qOut, this.kCache[i], this.vCache[i], b.positions, b.attn],
          (n, p) => pack("IIIIIIfffII", c.nHead, c.nHeadKv, c.headDim, c.headDimV, p + n, window, c.attnScale, c.attnSoftcap, c.alibiMaxBias, n, 0),
          (n) => [c.nHead, Math.ceil(n / ATTENTION_QUERIES), 1],
          ["main"], undefined, undefined,
          this.kvF16,
        );
      }
      this.program.mark(blk + "attn", b.attn, c.nHead * c.headDimV);
      if (!c.recipe.postNorms && this.options.fuseResidual !== false) {
        // xn = xc + attention out, then xc = xn + ffn out (parallel: the ffn of the same h), each add
        // in the epilogue of the matmul before it (Python's fuse_residual)
        this.matmul(blk + "attn_output.weight", b.attn, xn, blk + "attn_output.bias", undefined, xc);
        this.program.mark(blk + "attn_residual", xn, c.nEmbd);
        const ffnNormed = c.recipe.parallel ? attnNormed : this.norm(blk + "ffn_norm", xn, b.h, undefined, undefined, !this.fuseNorm);
        if (!c.recipe.parallel) this.program.mark(blk + "ffn_norm", b.h, c.nEmbd);
        this.ffn(i, b.h, xc, xn, ffnNormed);
        this.program.mark(blk + "x", xc, c.nEmbd);
        continue; // x[cur] holds the result again
      }
      // the adds as launches: Gemma-2/3 (a norm between each of the two matmuls and its residual add),
      // or fuseResidual false (Python's path for both)
      this.matmul(blk + "attn_output.weight", b.attn, b.o, blk + "attn_output.bias");
      let attnOut = b.o;
      if (c.recipe.postNorms) {
        this.norm(blk + "post_attention_norm", b.o, b.ffn);
        attnOut = b.ffn;
      }
      this.addOp(xc, attnOut, xn, c.nEmbd);
      this.program.mark(blk + "attn_residual", xn, c.nEmbd);
      let ffnNormed = attnNormed;
      if (!c.recipe.parallel) {
        ffnNormed = this.norm(blk + "ffn_norm", xn, b.h, undefined, undefined, !this.fuseNorm);
        this.program.mark(blk + "ffn_norm", b.h, c.nEmbd); // the ffn's matmuls do not write h
      }
      let ffnOut = c.recipe.parallel ? b.o : b.ffn;
      this.ffn(i, b.h, ffnOut, undefined, ffnNormed);
      if (c.recipe.postNorms && !c.recipe.parallel) {
        // as the reference: no post_ffw_norm in a parallel block
        this.norm(blk + "post_ffw_norm", b.ffn, b.o);
        ffnOut = b.o;
      }
      this.addOp(xn, ffnOut, xc, c.nEmbd);
      this.program.mark(blk + "x", xc, c.nEmbd);
    }
    // The head runs on the last row only, or on every row with allLogits.
    const xf = x[cur];
    const outName = c.tiedOutput ? "token_embd.weight" : "output.weight";
    const logitRows = (n: number) => (this.allLogits ? n : 1);
    if (this.allLogits) {
      this.norm("output_norm", xf, b.h);
      this.program.mark("output_norm", b.h, c.nEmbd);
      this.matmul(outName, b.h, b.logits, "output.bias");
    } else {
      // the last row to b.last by a kernel (kv_store's strided row copy), not copyBufferToBuffer,
      // which would end the step's compute pass
      const fuse = this.fuseNorm; // the head norms its one row itself, a decode step's one row read in place (Python's fuse_norm)
      this.program.add("kv_store", [xf, b.last], (n) => pack("IIIII", c.nEmbd, c.nEmbd, (n - 1) * c.nEmbd, c.nEmbd, 0), (n) => [Math.ceil(c.nEmbd / KV_STORE_WG), fuse && n === 1 ? 0 : 1, 1]);
      if (fuse) {
        const normed: Normed = { w: this.vecs.get("output_norm.weight")!, decode: xf, prefill: b.last };
        this.matmul(outName, b.last, b.logits, "output.bias", () => 1, undefined, undefined, normed);
      } else {
        this.norm("output_norm", b.last, b.last_norm, () => 1);
        this.matmul(outName, b.last_norm, b.logits, "output.bias", () => 1);
      }
    }
    this.finalLogits = b.logits;
    if (c.finalSoftcap) {
      this.program.add(
        "softcap",
        [b.logits, b.logits_capped],
        (n) => pack("If", logitRows(n) * c.nVocab, c.finalSoftcap),
        (n) => gridRows(Math.ceil((logitRows(n) * c.nVocab) / SOFTCAP_WG)),
      );
      this.finalLogits = b.logits_capped;
    }
    if (this.allLogits) this.program.mark("logits", this.finalLogits, c.nVocab);
    this.sampler = this.program.add("sample", [this.sampleAdjust, this.finalLogits, b.sampled, this.sampleLogprobs, this.sampleMask], () => pack(SAMPLE_PARAMS, ...Array(13).fill(0)), () => [1, 1, 1],
      ["main"], undefined, this.rowConstants());
    this.program.steps.pop(); // the sampler runs only from sample()
    if (this.loraRanks.length) this.program.defer(this.lora.makePipelines());
    this.buildErrors = this.ctx.guard(device.popErrorScope());
    this.buildErrors.catch(() => undefined); // awaited by settleProgram(); a failed upload never gets there
  }

  /** Wait for the pipelines build() started and make the launches' bind groups. */
  private async settleProgram(): Promise<void> {
    const device = this.ctx.device;
    device.pushErrorScope("validation");
    const results = await this.program.settle();
    const errors = [await this.buildErrors, await this.ctx.guard(device.popErrorScope())];
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
    const error = errors.find((e) => e);
    if (error) throw new ShaderError(`${this.header.source}: building the dispatch program failed validation: ${error.message}`);
  }

  /** loadTimings from Engine.load's marks (performance.now(): start, allocated, uploaded, pipelines
   * ready, queue done) and the upload's time waiting for the stream. */
  private timings(marks: number[], readSeconds: number): LoadTimings {
    const [t0, allocated, uploaded, ready, done] = marks;
    const times = [...this.program.pipelineTimes].map(([label, t]) => [label, t.start, t.end ?? ready] as const);
    const first = Math.min(...times.map(([, start]) => start));
    const last = Math.max(...times.map(([, , end]) => end));
    return {
      allocate: (allocated - t0) / 1000,
      upload: (uploaded - allocated) / 1000,
      uploadRead: readSeconds,
      pipelines: (last - first) / 1000,
      pipelineWait: (ready - uploaded) / 1000,
      queue: (done - ready) / 1000,
      total: (done - t0) / 1000,
      pipelineList: times.map(([label, , end]): [string, number] => [label, (end - first) / 1000]).sort((a, b) => a[1] - b[1]),
    };
  }

  // -- running ----------------------------------------------------------------------------------
  /** Record a step into one compute pass of a new command encoder; the pass is left open (for the sampler). */
  private encode(ids: number[], pos0: number, lora?: EngineLora): { enc: GPUCommandEncoder; pass: GPUComputePassEncoder } {
    if (lora !== undefined) this.lora.checkOwner(lora, this);
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
    const enc = ctx.device.createCommandEncoder({ label: "wgllm step" });
    const pass = enc.beginComputePass();
    for (const s of this.program.steps) {
      if ("loraSite" in s) {
        if (lora) this.lora.dispatch(pass, lora, s.loraSite, n);
        continue;
      }
      this.program.dispatch(pass, s, n, pos0);
    }
    return { enc, pass };
  }

  /** The launches of one forward step of n tokens at pos0, the sampler's not included, as
   * GpuContext.describeLaunch names them: the program recorded into a pass that runs nothing (the
   * uniforms are written as a step would). Python's GpuEngine.trace is its twin; the trace parity
   * test compares the two. */
  trace(n: number, pos0: number): Promise<TracedLaunch[]> {
    return this.serial(async () => {
      const tracer = new TracingPass(this.ctx);
      for (const s of this.program.steps) {
        if (!("loraSite" in s)) this.program.dispatch(tracer as unknown as GPUComputePassEncoder, s, n, pos0);
      }
      return tracer.launches;
    });
  }

  /** The named intermediate tensors of a prefill of `ids` at position 0 (at least 2 ids, so that every
   * norm runs as a launch; an engine with allLogits, so that the head runs on every row), in program
   * order, each (n rows of width) as f32: Python's GpuEngine.checkpoints, with the names
   * reference.forward(checkpoints=) records (wgllm diff). The program runs in pieces, each submitted
   * and its checkpoint read back before the next (slow; for diffs and tests). */
  checkpoints(ids: number[]): Promise<{ name: string; width: number; values: Float32Array }[]> {
    if (ids.length < 2 || !this.allLogits) {
      return Promise.reject(new RangeError(`checkpoints need at least 2 ids (got ${ids.length}) and an engine with allLogits (got ${this.allLogits})`));
    }
    return this.serial(async () => {
      this.encode(ids, 0).pass.end(); // checks the ids and writes them and the positions; the encoder is dropped unsubmitted
      const n = ids.length;
      const out: { name: string; width: number; values: Float32Array }[] = [];
      let done = 0;
      for (const m of this.program.marks) {
        const enc = this.ctx.device.createCommandEncoder({ label: "wgllm checkpoint" });
        const pass = enc.beginComputePass();
        for (const s of this.program.steps.slice(done, m.at)) if (!("loraSite" in s)) this.program.dispatch(pass, s, n, 0);
        pass.end();
        done = m.at;
        const bytes = Math.ceil((n * m.width * (m.f16 ? 2 : 4)) / 4) * 4;
        const read = this.ctx.buffer(bytes, `checkpoint ${m.name}`, { readback: true });
        try {
          const raw = await this.readback(m.buf, read, bytes, enc, (b) => b.slice(0));
          const values = m.f16 ? Float32Array.from(new Uint16Array(raw, 0, n * m.width), halfToFloat) : new Float32Array(raw, 0, n * m.width);
          out.push({ name: m.name, width: m.width, values });
        } finally {
          this.ctx.destroyBuffer(read);
        }
      }
      return out;
    });
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
    return this.sampleToken(ids, pos0, s).then((t) => t.token);
  }

  /** sample() with its logprobs when s.extras.logprobs asks (read back then, and only then). */
  sampleToken(ids: number[], pos0: number, s: SampleSettings): Promise<SampledToken> {
    if (s.topK > MAX_TOP_K && s.temperature > 0) {
      return Promise.reject(new RangeError(`top_k = ${s.topK} is above the GPU sampler's maximum of ${MAX_TOP_K}`));
    }
    const x = s.extras ?? SAMPLING_DEFAULTS;
    const entries = adjustEntries(x, s.history ?? []);
    if (entries.byteLength > this.sampleAdjust.size) {
      return Promise.reject(new RangeError(`${entries.length / 4} logit_bias and penalty entries do not fit the sampler's ${this.sampleAdjust.size / 16}`));
    }
    if (s.mask && s.mask.length !== this.config.nVocab) {
      return Promise.reject(new RangeError(`the token mask has ${s.mask.length} entries, expected ${this.config.nVocab}: one per vocabulary id`));
    }
    return this.serial(async () => {
      const { enc, pass } = this.encode(ids, pos0, s.lora);
      const c = this.config;
      const offset = this.allLogits ? (ids.length - 1) * c.nVocab : 0;
      if (entries.length) this.ctx.write(this.sampleAdjust, 0, entries);
      if (s.mask) this.ctx.write(this.sampleMask, 0, maskWords(s.mask));
      const nTop = x.logprobs ? x.topLogprobs : 0;
      this.ctx.write(
        this.sampler.uniform,
        0,
        pack(SAMPLE_PARAMS, c.nVocab, offset, Math.max(0, s.topK), s.temperature, s.seed, s.step, x.topP, x.minP, x.repetitionPenalty, entries.length / 4, nTop, x.logprobs ? 1 : 0, s.mask ? 1 : 0),
      );
      const pipeline = this.sampler.pipelines.get("main")!;
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, this.sampler.bindGroups.get("main")!);
      pass.dispatchWorkgroups(1, 1, 1);
      pass.end();
      if (!x.logprobs) return { token: await this.readback(this.b.sampled, this.b.sampledRead, 4, enc, (m) => new Uint32Array(m)[0]) };
      const n = Math.min(nTop, c.nVocab);
      const bytes = 4 * (2 + 2 * n);
      enc.copyBufferToBuffer(this.b.sampled, 0, this.b.sampledRead, 0, 4);
      const lp = await this.readback(this.sampleLogprobs, this.sampleLogprobsRead, bytes, enc, (m) => m.slice(0));
      await this.b.sampledRead.mapAsync(1 /* GPUMapMode.READ */, 0, 4);
      const token = new Uint32Array(this.b.sampledRead.getMappedRange(0, 4))[0];
      this.b.sampledRead.unmap();
      const words = new Uint32Array(lp);
      const floats = new Float32Array(lp);
      const top = Array.from({ length: n }, (_, j): [number, number] => [words[2 + 2 * j], floats[3 + 2 * j]]);
      return { token, logprob: floats[0], top };
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
      return await this.lora.load(stream, this, this.loraRanks, this.b.lora_t, () => {
        if (this.destroyed) throw new Error("this Engine was destroyed");
      });
    } catch (e) {
      await stream.cancel();
      throw e;
    }
  }

  /** Free every GPU buffer of the model (its adapters' too). */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.lora.destroyAll();
    for (const buf of this.owned) this.ctx.destroyBuffer(buf);
    this.owned.length = 0;
    this.weights.clear();
    this.vecs.clear();
  }
}

/** An IEEE half's bits as a number. */
function halfToFloat(h: number): number {
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  const sign = h & 0x8000 ? -1 : 1;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}
