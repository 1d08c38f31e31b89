// LoRA on the GPU, for one Engine (as in Python's engine): the ranks are declared up front
// (loraRanks). With any, each layer matmul is a LoRA site: the program follows it with a LoRA step
// that, for the adapter chosen per call, runs lora_shrink then lora_expand into the matmul's output
// (nothing without one). Adapters are read and checked by lora.ts, uploaded here with their uniforms
// and bind groups, once, and stay resident together: switching costs no rebuild.

import { ModelFormatError, WgllmError } from "./errors";
import type { Engine } from "./engine";
import type { GGUFStream } from "./gguf";
import type { GpuContext } from "./gpu";
import { checkLoraAgainst, readLoraFactors, readLoraHeader } from "./lora";
import { type Grid, pack } from "./program";

/** MediaPipe's message for an adapter handle that belongs to another instance (or was destroyed). */
export const LORA_OWNER_MESSAGE = "The LoRA model was not loaded by this LLM Inference task.";
const LORA_EXPAND_WG = 64; // lora_expand.wgsl's default WG_SIZE

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

/** The LoRA side of one Engine: its sites (the layer matmuls' buffers), the stacked-QKV parts that map
 * onto a site, the resident adapters and the two pipelines. */
export class LoraSites {
  /** weight name -> the buffers of its matmul */
  readonly sites = new Map<string, { x: GPUBuffer; y: GPUBuffer; k: number; nOut: number }>();
  /** attn_q/k/v of a stacked layer -> its site and first column */
  readonly parts = new Map<string, { site: string; col: number }>();
  private readonly loras = new Set<EngineLora>();
  private pipelines?: { shrink: GPUComputePipeline; expand: GPUComputePipeline };

  constructor(private readonly ctx: GpuContext) {}

  /** Make the shrink and expand pipelines (build() awaits it with the program's). */
  async makePipelines(): Promise<void> {
    const [shrink, expand] = await Promise.all([this.ctx.pipeline("lora_shrink"), this.ctx.pipeline("lora_expand")]);
    this.pipelines = { shrink, expand };
  }

  /** Refuse a handle this engine did not load (or has released). */
  checkOwner(lora: EngineLora, engine: Engine): void {
    if (!(lora instanceof EngineLora) || lora.engine !== engine || !this.loras.has(lora)) {
      throw new WgllmError(LORA_OWNER_MESSAGE);
    }
  }

  /**
   * Read the adapter arriving on `stream`, check it against `engine`'s model (architecture, weights,
   * shapes, a declared rank of `ranks`) and upload its factors, uniforms and bind groups, once.
   * `scratch` is the (n, r) buffer between shrink and expand; `checkLive` throws once the engine is destroyed.
   */
  async load(stream: GGUFStream, engine: Engine, ranks: number[], scratch: GPUBuffer, checkLive: () => void): Promise<EngineLora> {
    const info = readLoraHeader(stream.header);
    checkLoraAgainst(info, engine.header, engine.config.nLayer);
    if (!ranks.includes(info.rank)) {
      const declared = ranks.length ? ranks.join(", ") : "none";
      throw new WgllmError(
        `${info.source}: LoRA rank ${info.rank} was not declared when this model was created ` +
          `(loraRanks: ${declared}); create it with loraRanks including ${info.rank}`,
      );
    }
    for (const base of info.pairs.keys()) {
      if (!this.sites.has(this.parts.get(base)?.site ?? base)) {
        throw new ModelFormatError(`${info.source}: tensor ${base}.lora_a adapts ${base}, which the GPU engine does not run as a layer matmul`);
      }
    }
    const factors = stackLoraFactors(await readLoraFactors(stream, info), info.rank, this.parts, this.sites);
    checkLive();
    const ctx = this.ctx;
    const made = await ctx.allocating(`${info.source}: LoRA factors`, () =>
      factors.flatMap((f) => [
        ctx.buffer(4 * f.a.length, `${f.site}.lora_a`),
        ctx.buffer(4 * f.b.length, `${f.site}.lora_b`),
        ctx.buffer(16, `${f.site} lora_shrink params`, { uniform: true }),
        ctx.buffer(16, `${f.site} lora_expand params`, { uniform: true }),
      ]),
    );
    const { shrink, expand } = this.pipelines!;
    const weights = new Map<string, LoraWeight>();
    factors.forEach((f, i) => {
      const [a, b, uShrink, uExpand] = made.slice(4 * i, 4 * i + 4);
      ctx.write(a, 0, f.a);
      ctx.write(b, 0, f.b);
      const site = this.sites.get(f.site)!;
      weights.set(f.site, {
        rank: f.rank,
        nOut: site.nOut,
        k: site.k,
        buffers: [a, b, uShrink, uExpand],
        shrink: { uniform: uShrink, bindGroup: ctx.bindGroup(shrink, [uShrink, site.x, a, scratch], `${f.site} lora_shrink`) },
        expand: { uniform: uExpand, bindGroup: ctx.bindGroup(expand, [uExpand, scratch, b, site.y], `${f.site} lora_expand`) },
      });
    });
    const lora = new EngineLora(engine, info.source, info.rank, info.alpha, info.baseModel, weights, (l) => this.release(l));
    this.loras.add(lora);
    return lora;
  }

  /** shrink t = x A^T, then expand y += scale * t B^T, for `lora`'s factors of `name`. */
  dispatch(pass: GPUComputePassEncoder, lora: EngineLora, name: string, n: number): void {
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
    const { shrink, expand } = this.pipelines!;
    pass.setPipeline(shrink);
    pass.setBindGroup(0, w.shrink.bindGroup);
    pass.dispatchWorkgroups(...shrinkGrid);
    pass.setPipeline(expand);
    pass.setBindGroup(0, w.expand.bindGroup);
    pass.dispatchWorkgroups(...expandGrid);
  }

  private release(lora: EngineLora): void {
    if (!this.loras.delete(lora)) return;
    for (const w of lora.weights.values()) for (const buf of w.buffers) this.ctx.destroyBuffer(buf);
    lora.weights.clear();
  }

  /** Destroy every resident adapter (the engine's destroy). */
  destroyAll(): void {
    for (const lora of [...this.loras]) lora.destroy();
  }
}
