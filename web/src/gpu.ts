// The WebGPU runtime under the engine: the browser twin of py/wgllm/gpu/runtime.py. One GpuContext
// per GPUDevice (shared by every Engine on it): shader modules and pipelines cached by (shader,
// entry, constants, f16 KV variant or not), compile and validation errors named by their .wgsl file
// (and the variant), buffers made inside an out-of-memory error scope with a running total, and the
// device's loss turned into DeviceLostError for every pending and later call.

import { DeviceLimitError, DeviceLostError, WgllmError } from "./errors";
import { kvF16Variant, shaderSource, SUBGROUP_ENTRIES, subgroupVariant } from "./shaders";

/** A shaders/<op>.wgsl file failed to compile or its pipeline failed validation. */
export class ShaderError extends WgllmError {}

/** A buffer the adapter could not allocate: WebGPU tells no memory size, so this is the "model
 * larger than the GPU's memory" check, with the bytes asked and the total allocated before; with
 * `planned` (Engine.load's plan of every buffer of the load), the bytes the whole model needs. */
export class GpuOutOfMemoryError extends DeviceLimitError {
  constructor(
    readonly what: string,
    readonly asked: number,
    readonly allocatedBefore: number,
    readonly detail: string,
    planned?: { bytes: number; of: string; maxBuffer: number },
  ) {
    super("GPU memory", planned?.bytes ?? allocatedBefore + asked, allocatedBefore, what);
    const advice = "Use a smaller or more strongly quantised model, or lower maxTokens.";
    this.message = planned
      ? `${planned.of} needs ${planned.bytes} bytes of GPU buffers; the device allocated ${allocatedBefore} bytes of them, ` +
        `then refused ${asked} bytes for ${what} (${detail}). WebGPU does not report a GPU's memory size: what this device ` +
        `offers is known only from that refusal (buffers of up to maxBufferSize = ${planned.maxBuffer} bytes each, ` +
        `${allocatedBefore} bytes in all before it). The model does not fit in this GPU's memory; this was found ` +
        `before any weight was read. ${advice}`
      : `${what}: allocating ${asked} bytes failed with ${allocatedBefore} bytes already allocated (${detail}); ` +
        `the model does not fit in this GPU's memory. ${advice}`;
  }
}

/** The value of `const NAME: u32 = Nu;` or `override NAME: u32 = Nu;` in shaders/<op>.wgsl: kernel
 * geometry the host must match, read from the source so the two cannot drift. */
export function shaderConstant(op: string, name: string): number {
  const key = `${op}:${name}`; // grids ask at every step: parsed once
  let value = constantCache.get(key);
  if (value === undefined) {
    const m = new RegExp(`(?:const|override)\\s+${name}\\s*:\\s*u32\\s*=\\s*(\\d+)u?\\s*;`).exec(shaderSource(op));
    if (!m) throw new Error(`shaders/${op}.wgsl has no 'const ${name}: u32 = ...;' (the host reads its kernel geometry from it)`);
    constantCache.set(key, (value = Number(m[1])));
  }
  return value;
}
const constantCache = new Map<string, number>();

export type Constants = Record<string, number>;

/** The two kernel families (as py/wgllm/gpu/runtime.py): `cpu` is shaped for CPU-emulated WebGPU
 * (SwiftShader, lavapipe/llvmpipe: a thread owns whole weight rows, no workgroup memory, few
 * barriers), `gpu` for real GPUs (the reduction dimension split over neighbouring threads so that
 * loads coalesce, workgroup-memory reductions and tiles). */
export type KernelFamily = "gpu" | "cpu";
export const KERNEL_FAMILIES: readonly KernelFamily[] = ["gpu", "cpu"];
const CPU_ADAPTER_WORDS = ["llvmpipe", "lavapipe", "swiftshader", "softpipe", "software"];

/** Whether an adapter is CPU-emulated WebGPU: a fallback adapter, or SwiftShader / Mesa's software
 * rasterisers named in its vendor, architecture or description. */
export function isCpuAdapter(info: Partial<GPUAdapterInfo> | undefined): boolean {
  if (!info) return false;
  if (info.isFallbackAdapter) return true;
  const text = [info.vendor, info.architecture, info.device, info.description].join(" ").toLowerCase();
  return CPU_ADAPTER_WORDS.some((w) => text.includes(w));
}

/** The kernel family to run: `requested` when given ("gpu" or "cpu"), else the device's adapter's. */
export function resolveKernels(requested: unknown, device: GPUDevice): KernelFamily {
  if (requested === undefined || requested === null || requested === "auto") {
    return isCpuAdapter(device.adapterInfo) ? "cpu" : "gpu"; // a device without adapterInfo (older browsers): gpu
  }
  if (!KERNEL_FAMILIES.includes(requested as KernelFamily)) {
    throw new RangeError(`kernels = ${JSON.stringify(requested)}: expected "gpu", "cpu" or "auto" (undefined: chosen from the adapter)`);
  }
  return requested as KernelFamily;
}
const STORAGE = 0x80; // GPUBufferUsage.STORAGE etc., spelled out so this module loads outside a browser too
const UNIFORM = 0x40;
const COPY_SRC = 0x04;
const COPY_DST = 0x08;
const MAP_READ = 0x01;

const contexts = new WeakMap<GPUDevice, GpuContext>();

export class GpuContext {
  readonly maxBinding: number;
  readonly maxBuffer: number;
  readonly maxGroups: number;
  /** The gpu family's workgroups are sized within this (a device may allow as few as 128 or 256). */
  readonly maxInvocations: number;
  /** Set once the device is lost; every call checks it. */
  lostError: DeviceLostError | undefined;
  /** Rejects with DeviceLostError when the device is lost (never resolves otherwise). */
  readonly lost: Promise<never>;
  /** Bytes of the buffers made through this context and not yet destroyed. */
  allocated = 0;
  private readonly modules = new Map<string, Promise<GPUShaderModule>>();
  private readonly pipelines = new Map<string, Promise<GPUComputePipeline>>();
  // What a launch trace (TracingPass) names: each pipeline's shader, entry, constants and variant;
  // each bind group's buffers; each uniform's bytes as last written (Python's GpuContext keeps the same).
  private readonly pipelineMeta = new WeakMap<GPUComputePipeline, PipelineMeta>();
  private readonly bindMeta = new WeakMap<GPUBindGroup, GPUBuffer[]>();
  private readonly uniformBytes = new WeakMap<GPUBuffer, ArrayBuffer>();

  static of(device: GPUDevice): GpuContext {
    let ctx = contexts.get(device);
    if (!ctx) contexts.set(device, (ctx = new GpuContext(device)));
    return ctx;
  }

  private constructor(readonly device: GPUDevice) {
    this.maxBinding = device.limits.maxStorageBufferBindingSize;
    this.maxBuffer = device.limits.maxBufferSize;
    this.maxGroups = device.limits.maxComputeWorkgroupsPerDimension;
    this.maxInvocations = device.limits.maxComputeInvocationsPerWorkgroup;
    this.lost = device.lost.then((info) => {
      this.lostError = new DeviceLostError(String(info.reason ?? "unknown"), info.message);
      throw this.lostError;
    });
    this.lost.catch(() => undefined); // observed by whoever races it; no unhandled rejection
  }

  checkAlive(): void {
    if (this.lostError) throw this.lostError;
  }

  /** `work`, or DeviceLostError if the device goes first; an error after the loss becomes it too. */
  async guard<T>(work: Promise<T>): Promise<T> {
    try {
      return await Promise.race([work, this.lost]);
    } catch (e) {
      throw this.lostError ?? e;
    }
  }

  // -- shaders and pipelines -------------------------------------------------------------------
  /** Whether the device has shader-f16, which the shaders' f16 KV variant needs. */
  get hasF16(): boolean {
    return this.device.features.has("shader-f16");
  }

  /** Whether the device has subgroups: the entries in SUBGROUP_ENTRIES then run their subgroup variant. */
  get hasSubgroups(): boolean {
    return this.device.features.has("subgroups");
  }

  /** shaders/<op>.wgsl compiled, or its f16 KV variant (kvF16Variant; needs shader-f16), or its
   * subgroup variant (subgroupVariant; needs subgroups). */
  private module(op: string, kvF16: boolean, subgroups = false): Promise<GPUShaderModule> {
    const key = `${op}:${kvF16 ? "kv_f16" : "f32"}${subgroups ? ":subgroups" : ""}`;
    let m = this.modules.get(key);
    if (!m) {
      m = (async () => {
        const what = `shaders/${op}.wgsl` + (kvF16 ? " (f16 KV variant)" : "") + (subgroups ? " (subgroup variant)" : "");
        if (kvF16 && !this.hasF16) throw new ShaderError(`${what} needs the shader-f16 feature, which this device lacks`);
        if (subgroups && !this.hasSubgroups) throw new ShaderError(`${what} needs the subgroups feature, which this device lacks`);
        let code = kvF16 ? kvF16Variant(op) : shaderSource(op);
        code = subgroups ? subgroupVariant(op, code) : code;
        const device = this.device;
        device.pushErrorScope("validation");
        const module = device.createShaderModule({ label: `${op}.wgsl` + (kvF16 ? " (f16 KV)" : "") + (subgroups ? " (subgroups)" : ""), code });
        const [info, error] = await Promise.all([module.getCompilationInfo(), device.popErrorScope()]);
        const errors = info.messages.filter((msg) => msg.type === "error");
        if (errors.length || error) {
          // the f16 variant's line numbers are one more than the file's (its `enable f16;` comes first);
          // the subgroup variant's are its own (lines dropped)
          const file = subgroups ? `shaders/${op}.wgsl (subgroup variant)` : `shaders/${op}.wgsl`;
          const where = errors.map((msg) => `${file}:${msg.lineNum - (kvF16 && !subgroups ? 1 : 0)}:${msg.linePos}: ${msg.message}`);
          throw new ShaderError(`${what} failed to compile: ${where.join("; ") || error?.message}`);
        }
        return module;
      })();
      m.catch(() => this.modules.delete(key));
      this.modules.set(key, m);
    }
    return m;
  }

  /** The compute pipeline of shaders/<op>.wgsl's `entry` with these override constants (cached);
   * kvF16: of its f16 KV variant (the KV cache binding holds f16). */
  pipeline(op: string, entry = "main", constants?: Constants, kvF16 = false): Promise<GPUComputePipeline> {
    const key = `${op}:${entry}:${JSON.stringify(Object.entries(constants ?? {}).sort())}:${kvF16 ? "kv_f16" : "f32"}`;
    let p = this.pipelines.get(key);
    if (!p) {
      p = (async () => {
        const module = await this.module(op, kvF16, this.hasSubgroups && SUBGROUP_ENTRIES.includes(entry));
        const compute: GPUProgrammableStage = { module, entryPoint: entry };
        if (constants && Object.keys(constants).length) compute.constants = constants;
        try {
          const made = await this.device.createComputePipelineAsync({ label: `${op}.wgsl:${entry}${kvF16 ? " (f16 KV)" : ""}`, layout: "auto", compute });
          const sorted = Object.entries(constants ?? {}).sort(([a], [b]) => (a < b ? -1 : 1));
          this.pipelineMeta.set(made, { shader: op, entry, constants: sorted.length ? Object.fromEntries(sorted) : null, kv_f16: kvF16 });
          return made;
        } catch (e) {
          this.checkAlive();
          const msg = e instanceof Error ? e.message : String(e);
          const variant = kvF16 ? ", f16 KV variant" : "";
          throw new ShaderError(`shaders/${op}.wgsl (entry ${entry}, constants ${JSON.stringify(constants ?? {})}${variant}) failed validation: ${msg}`);
        }
      })();
      p.catch(() => this.pipelines.delete(key));
      this.pipelines.set(key, p);
    }
    return this.guard(p);
  }

  // -- buffers ---------------------------------------------------------------------------------
  /** A storage (or uniform) buffer of at least `bytes` (padded to 4, uniforms to 16). */
  buffer(bytes: number, label: string, opts: { uniform?: boolean; readback?: boolean } = {}): GPUBuffer {
    let size = Math.max(4, Math.ceil(bytes / 4) * 4);
    if (opts.uniform) size = Math.ceil(size / 16) * 16;
    if (size > this.maxBuffer) throw new DeviceLimitError("maxBufferSize", size, this.maxBuffer, `buffer ${label}`);
    const usage = opts.readback ? MAP_READ | COPY_DST : (opts.uniform ? UNIFORM : STORAGE) | COPY_DST | COPY_SRC;
    const buf = this.device.createBuffer({ label, size, usage });
    this.allocated += size;
    if (opts.uniform) this.uniformBytes.set(buf, new ArrayBuffer(0));
    return buf;
  }

  destroyBuffer(buf: GPUBuffer): void {
    this.allocated -= buf.size;
    buf.destroy();
  }

  /** Run `make` (which creates `bytes` worth of buffers for `what`) inside an out-of-memory
   * scope; an allocation failure destroys what it made and throws GpuOutOfMemoryError. */
  async allocating<T extends GPUBuffer[]>(what: string, make: () => T): Promise<T> {
    this.checkAlive();
    const before = this.allocated;
    this.device.pushErrorScope("out-of-memory");
    let made: T | undefined;
    let thrown: unknown;
    try {
      made = make();
    } catch (e) {
      thrown = e;
    }
    const error = await this.guard(this.device.popErrorScope());
    if (error || thrown) {
      const asked = this.allocated - before;
      for (const b of made ?? []) this.destroyBuffer(b);
      if (thrown) throw thrown;
      throw new GpuOutOfMemoryError(what, asked, before, error!.message);
    }
    return made!;
  }

  /** `data` into `buf` at `offset`; the byte count is padded to 4 from the bytes after it in `data`'s buffer. */
  write(buf: GPUBuffer, offset: number, data: ArrayBufferView | ArrayBuffer): void {
    this.device.queue.writeBuffer(buf, offset, data as ArrayBuffer);
    if (offset === 0 && this.uniformBytes.has(buf)) {
      const bytes = ArrayBuffer.isView(data) ? data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) : data.slice(0);
      this.uniformBytes.set(buf, bytes as ArrayBuffer);
    }
  }

  /** Fail with the limit's name when a grid exceeds maxComputeWorkgroupsPerDimension. */
  checkGrid(op: string, grid: readonly [number, number, number]): void {
    for (const g of grid) {
      if (g > this.maxGroups) throw new DeviceLimitError("maxComputeWorkgroupsPerDimension", g, this.maxGroups, `shaders/${op}.wgsl's dispatch grid [${grid}]`);
    }
  }

  bindGroup(pipeline: GPUComputePipeline, buffers: GPUBuffer[], label: string): GPUBindGroup {
    const group = this.device.createBindGroup({
      label,
      layout: pipeline.getBindGroupLayout(0),
      entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    this.bindMeta.set(group, buffers);
    return group;
  }

  /** One launch as a trace names it (TracingPass): shader, entry, constants, kv_f16, grid, the Params
   * uniform's words as last written (u32, floats by their bits) and the other bindings as [label,
   * bytes]; the twin of Python's GpuContext.describe_launch. */
  describeLaunch(pipeline: GPUComputePipeline, group: GPUBindGroup, grid: number[]): TracedLaunch {
    const meta = this.pipelineMeta.get(pipeline);
    const buffers = this.bindMeta.get(group);
    if (!meta || !buffers) throw new Error("describeLaunch: a pipeline or bind group not made through this GpuContext");
    const raw = this.uniformBytes.get(buffers[0]);
    const params = raw === undefined ? null : [...new Uint32Array(raw, 0, raw.byteLength >> 2)];
    const bindings = (raw === undefined ? buffers : buffers.slice(1)).map((b): [string, number] => [b.label, b.size]);
    return { ...meta, grid: [...grid], params, bindings };
  }
}

interface PipelineMeta {
  shader: string;
  entry: string;
  constants: Record<string, number> | null;
  kv_f16: boolean;
}

/** A launch of a trace (Engine.trace; Python's GpuEngine.trace gives the same JSON). */
export interface TracedLaunch extends PipelineMeta {
  grid: number[];
  params: number[] | null;
  bindings: [string, number][];
}

/** Stands in for a compute pass: records each launch as GpuContext.describeLaunch names it and runs
 * none (Python's runtime.TracingPass). */
export class TracingPass {
  readonly launches: TracedLaunch[] = [];
  private pipeline?: GPUComputePipeline;
  private group?: GPUBindGroup;
  constructor(private readonly ctx: GpuContext) {}
  setPipeline(pipeline: GPUComputePipeline): void {
    this.pipeline = pipeline;
  }
  setBindGroup(_index: number, group: GPUBindGroup): void {
    this.group = group;
  }
  dispatchWorkgroups(x: number, y = 1, z = 1): void {
    this.launches.push(this.ctx.describeLaunch(this.pipeline!, this.group!, [x, y, z]));
  }
}
