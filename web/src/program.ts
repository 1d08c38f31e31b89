// The engine's dispatch program (Python's _Program in py/wgllm/gpu/engine.py): an ordered list of
// kernel launches, each with its Params uniform, its pipelines and bind groups made once, and the
// LoRA steps between them; a step encodes them all into one open compute pass.

import { type Constants, GpuContext } from "./gpu";

const MAX_GROUPS = 65535;

export type Grid = [number, number, number];
export type Params = (n: number, pos0: number) => ArrayBuffer;

export function gridRows(groups: number): Grid {
  const gx = Math.max(1, Math.min(groups, MAX_GROUPS));
  return [gx, Math.ceil(groups / gx), 1];
}

/** Little-endian Params: `fmt` letters I (u32) and f (f32), as Python's struct.pack("<" + fmt). */
export function pack(fmt: string, ...values: number[]): ArrayBuffer {
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
export interface Launch {
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
export interface LoraStep {
  loraSite: string;
}

export type Step = Launch | LoraStep;

export class Program {
  readonly steps: Step[] = [];
  /** Named checkpoints: after the first `at` steps, `buf`'s first n rows of `width` hold the tensor
   * `name` (f16: as f16 elements); Engine.checkpoints reads them (Python's _Program.marks). */
  readonly marks: { at: number; name: string; buf: GPUBuffer; width: number; f16: boolean }[] = [];
  private pending: Promise<void>[] = [];
  private unbound: { launch: Launch; bindings: GPUBuffer[] }[] = [];
  /** performance.now() when each distinct pipeline (op:entry, constants, variant) was first asked
   * for and when it was ready; one already in the GpuContext's cache is ready at once. */
  readonly pipelineTimes = new Map<string, { start: number; end?: number }>();

  /** Launches' uniforms go to `owned` (the engine's buffers, freed by its destroy). */
  constructor(private readonly ctx: GpuContext, private readonly owned: GPUBuffer[]) {}

  /** Add a launch of shaders/<op>.wgsl (kvF16: of its f16 KV variant); its pipelines start compiling
   * now (createComputePipelineAsync) and are awaited, and its bind groups made, by settle(). `constants`:
   * the override constants of every entry, or per entry (a matmul's matvec_split has MV_WG, its
   * prefill entry none, as in Python). */
  add(
    op: string, bindings: GPUBuffer[], params: Params, grid: Launch["grid"],
    entries: string[] = ["main"], entry?: Launch["entry"], constants?: Constants | ((entry: string) => Constants | undefined), kvF16 = false,
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
      const overrides = typeof constants === "function" ? constants(e) : constants;
      const label = `${op}:${e}${overrides ? JSON.stringify(overrides) : ""}${kvF16 ? " (f16 KV)" : ""}`;
      let time = this.pipelineTimes.get(label);
      if (!time) this.pipelineTimes.set(label, (time = { start: performance.now() }));
      const ready = this.ctx.pipeline(op, e, overrides, kvF16).then((p) => {
        launch.pipelines.set(e, p);
        time.end ??= performance.now();
      });
      ready.catch(() => undefined); // reported by settle(); a load that fails first never calls it
      this.pending.push(ready);
    }
    this.unbound.push({ launch, bindings });
    this.steps.push(launch);
    return launch;
  }

  /** Name what `buf`'s first n rows of `width` hold after the steps so far (f16: its elements are f16). */
  mark(name: string, buf: GPUBuffer, width: number, f16 = false): void {
    this.marks.push({ at: this.steps.length, name, buf, width, f16 });
  }

  /** Run the LoRA step of layer matmul `site` here (see lora_gpu.ts). */
  addLoraStep(site: string): void {
    this.steps.push({ loraSite: site });
  }

  /** Other GPU work the program needs before it runs (the LoRA pipelines), awaited by settle(). */
  defer(work: Promise<void>): void {
    work.catch(() => undefined); // reported by settle()
    this.pending.push(work);
  }

  /** Wait for every pipeline started so far, then make the bind groups of the launches added since
   * (here, not as each pipeline arrives, so that they fall in the caller's validation scope and
   * not in whatever the page does while the pipelines compile). */
  async settle(): Promise<PromiseSettledResult<void>[]> {
    const pending = this.pending;
    this.pending = [];
    const results = await Promise.allSettled(pending);
    for (const { launch, bindings } of this.unbound.splice(0)) {
      for (const [e, p] of launch.pipelines) {
        launch.bindGroups.set(e, this.ctx.bindGroup(p, [launch.uniform, ...bindings], `${launch.op}:${e}`));
      }
    }
    return results;
  }

  /** Record launch `s` for a step of n tokens at pos0; one whose grid is empty at this n (the gpu
   * family's attention: prefill or decode launches) is not recorded. */
  dispatch(pass: GPUComputePassEncoder, s: Launch, n: number, pos0: number): void {
    const grid = s.grid(n, pos0);
    if (grid.includes(0)) return;
    const params = s.params(n, pos0);
    if (!sameBytes(s.written, params)) {
      this.ctx.write(s.uniform, 0, params); // most launches' params do not move between decode steps
      s.written = params;
    }
    this.ctx.checkGrid(s.op, grid);
    const entry = s.entry(n);
    pass.setPipeline(s.pipelines.get(entry)!);
    pass.setBindGroup(0, s.bindGroups.get(entry)!);
    pass.dispatchWorkgroups(...grid);
  }
}
