// A loaded model and its generation loop, behind one small interface that LlmInference drives
// the same way whether the work happens on the page's thread (LocalRunner) or in a Web Worker
// (WorkerRunner in worker_client.ts, which forwards these calls to a LocalRunner in the worker).

import { requestWebGpuDevice } from "./device";
import { Engine, type KvCacheType, type LoadTimings } from "./engine";
import type { KernelFamily } from "./gpu";
import { type EngineLora, LORA_OWNER_MESSAGE } from "./lora_gpu";
import { WgllmError } from "./errors";
import { GGUFHeader, type GGUFStream, type GGUFValue, readGGUF } from "./gguf";
import { Generator, type RunRequest, type RunResult } from "./generator";
import { modelConfigFromHeader } from "./model";
import { absoluteUrl, openModel, type LoadProgressCallback, type ModelAsset } from "./model_source";
import { StreamingDecoder, Tokenizer } from "./tokenizer";

export interface LoadRequest {
  asset: ModelAsset;
  maxTokens: number;
  /** Keep the KV cache in f32 even on a device with shader-f16. */
  forceF32: boolean;
  /** The kernel family ("gpu" or "cpu"); undefined: chosen from the adapter. */
  kernels?: KernelFamily;
  cacheModel: boolean;
  /** The model file's SHA-256 (model_source.ts: the cross-origin storage's key, checked on download). */
  modelSha256?: string;
  /** LoRA ranks adapters may have (declared at load, as in MediaPipe). */
  loraRanks?: number[];
}

/** Where a LoRA adapter's GGUF bytes come from: a URL, the bytes, or a Blob (a File). */
export type LoraAsset = string | URL | Uint8Array | Blob;

/** What the caller's thread needs of a loaded model: enough of the header to tokenize. */
export interface ModelInfo {
  source: string;
  version: number;
  /** general.* and tokenizer.* metadata, with their GGUF value types. */
  metadata: [string, GGUFValue, number][];
  alignment: number;
  architecture: string;
  nVocab: number;
  loadSeconds: number;
  /** Where loadSeconds went, in seconds: the device, the model file's header (download or cache
   * read, and parse), the tokenizer, then the engine's load (LoadTimings). */
  loadTimings: ModelLoadTimings;
  /** The KV cache's element type: "f16" on a device with shader-f16 unless forceF32. */
  kvCacheType: KvCacheType;
  /** The kernel family that runs. */
  kernels: KernelFamily;
}

export interface ModelLoadTimings extends LoadTimings {
  device: number;
  header: number;
  tokenizer: number;
}

export interface Runner {
  load(req: LoadRequest, progress?: LoadProgressCallback): Promise<ModelInfo>;
  /** Load a LoRA adapter onto the loaded model; the id goes in RunRequest.lora. */
  loadLora(asset: LoraAsset): Promise<number>;
  run(req: RunRequest, onPiece: (piece: string) => void): Promise<RunResult>;
  cancel(): void;
  close(): void;
}

/** Rebuild a tokenizer-only GGUFHeader from ModelInfo (on the caller's thread). */
export function headerOf(info: ModelInfo): GGUFHeader {
  const metadata = new Map(info.metadata.map(([k, v]) => [k, v] as const));
  const types = new Map(info.metadata.map(([k, , t]) => [k, t] as const));
  return new GGUFHeader(info.source, info.version, metadata, types, [], info.alignment, 0);
}

export class LocalRunner implements Runner {
  private engine?: Engine;
  private generator?: Generator;
  private cancelled = false;
  private ownsDevice = false;
  private readonly loras = new Map<number, EngineLora>();
  private nextLoraId = 1;

  constructor(private device?: GPUDevice) {}

  async load(req: LoadRequest, progress?: LoadProgressCallback): Promise<ModelInfo> {
    const t0 = performance.now();
    if (!this.device) {
      this.device = await requestWebGpuDevice();
      this.ownsDevice = true;
    }
    const device = this.device;
    const t1 = performance.now();
    const engineOptions = { maxTokens: req.maxTokens, loraRanks: req.loraRanks, forceF32: req.forceF32, kernels: req.kernels };
    const beforeDownload = async (header: GGUFStream["header"]) => {
      modelConfigFromHeader(header);
      Tokenizer.fromHeader(header);
      this.freeEngine(); // as before a load: the old model's buffers go before the check allocates
      await Engine.checkFits(device, header, engineOptions);
    };
    const stream = await openModel(req.asset, { cache: req.cacheModel, progress, sha256: req.modelSha256, beforeDownload });
    const t2 = performance.now();
    let tokenizer: Tokenizer;
    try {
      modelConfigFromHeader(stream.header); // an unsupported architecture is named first,
      tokenizer = Tokenizer.fromHeader(stream.header); // then vocabulary problems, before any GPU work
    } catch (e) {
      await stream.cancel();
      throw e;
    }
    const t3 = performance.now();
    this.freeEngine(); // a reload: the old model's buffers go before the new ones are made
    const engine = await Engine.load(device, stream, engineOptions);
    this.engine = engine;
    this.generator = new Generator(engine, tokenizer, () => new StreamingDecoder(tokenizer));
    const h = stream.header;
    const keep = [...h.metadata.keys()].filter((k) => k.startsWith("general.") || k.startsWith("tokenizer."));
    return {
      source: h.source,
      version: h.version,
      metadata: keep.map((k) => [k, h.metadata.get(k)!, h.valueTypes.get(k)!]),
      alignment: h.alignment,
      architecture: h.architecture,
      nVocab: tokenizer.nVocab,
      loadSeconds: (performance.now() - t0) / 1000,
      loadTimings: { device: (t1 - t0) / 1000, header: (t2 - t1) / 1000, tokenizer: (t3 - t2) / 1000, ...engine.loadTimings! },
      kvCacheType: engine.kvCacheType,
      kernels: engine.kernels,
    };
  }

  async loadLora(asset: LoraAsset): Promise<number> {
    if (!this.engine) throw new Error("no model is loaded");
    const lora = await this.engine.loadLora(await openLora(asset));
    const id = this.nextLoraId++;
    this.loras.set(id, lora);
    return id;
  }

  async run(req: RunRequest, onPiece: (piece: string) => void): Promise<RunResult> {
    if (!this.generator) throw new Error("no model is loaded");
    let lora: EngineLora | undefined;
    if (req.lora !== undefined) {
      lora = this.loras.get(req.lora as number);
      if (!lora) throw new WgllmError(LORA_OWNER_MESSAGE);
    }
    this.cancelled = false;
    try {
      return await this.generator.run({ ...req, lora }, onPiece, () => this.cancelled);
    } catch (e) {
      this.generator.reset();
      throw e;
    }
  }

  cancel(): void {
    this.cancelled = true;
  }

  private freeEngine(): void {
    this.loras.clear(); // the engine frees its adapters' buffers
    this.engine?.destroy();
    this.engine = undefined;
    this.generator = undefined;
  }

  /** Free the model's GPU buffers, and the device when this runner created it. */
  close(): void {
    this.freeEngine();
    if (this.ownsDevice) this.device?.destroy();
    this.device = undefined;
    this.ownsDevice = false;
  }
}

/** The GGUF stream of a LoRA adapter; bytes and Blobs are named as the option that gave them. */
async function openLora(asset: LoraAsset): Promise<GGUFStream> {
  if (typeof asset === "string" || asset instanceof URL) return openModel(absoluteUrl(asset));
  if (asset instanceof Uint8Array) return readGGUF(new Blob([asset as Uint8Array<ArrayBuffer>]).stream(), { source: "LoRA model buffer", size: asset.length });
  if (typeof Blob !== "undefined" && asset instanceof Blob) {
    const name = (asset as File).name;
    return readGGUF(asset.stream(), { source: name ? `LoRA file ${name}` : "LoRA model Blob", size: asset.size });
  }
  throw new TypeError(`the LoRA model asset must be a URL string, a Uint8Array or a Blob; got ${Object.prototype.toString.call(asset)}`);
}
