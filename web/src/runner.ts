// A loaded model and its generation loop, behind one small interface that LlmInference drives
// the same way whether the work happens on the page's thread (LocalRunner) or in a Web Worker
// (WorkerRunner in worker_client.ts, which forwards these calls to a LocalRunner in the worker).

import { requestWebGpuDevice } from "./device";
import { Engine } from "./engine";
import { GGUFHeader, type GGUFValue } from "./gguf";
import { Generator, type RunRequest, type RunResult } from "./generator";
import { modelConfigFromHeader } from "./model";
import { openModel, type LoadProgressCallback, type ModelAsset } from "./model_source";
import { StreamingDecoder, Tokenizer } from "./tokenizer";

export interface LoadRequest {
  asset: ModelAsset;
  maxTokens: number;
  forceF32: boolean;
  cacheModel: boolean;
}

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
}

export interface Runner {
  load(req: LoadRequest, progress?: LoadProgressCallback): Promise<ModelInfo>;
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

  constructor(private device?: GPUDevice) {}

  async load(req: LoadRequest, progress?: LoadProgressCallback): Promise<ModelInfo> {
    const t0 = performance.now();
    if (!this.device) {
      this.device = await requestWebGpuDevice();
      this.ownsDevice = true;
    }
    const device = this.device;
    const stream = await openModel(req.asset, { cache: req.cacheModel, progress });
    let tokenizer: Tokenizer;
    try {
      modelConfigFromHeader(stream.header); // an unsupported architecture is named first,
      tokenizer = Tokenizer.fromHeader(stream.header); // then vocabulary problems, before any GPU work
    } catch (e) {
      await stream.cancel();
      throw e;
    }
    this.freeEngine(); // a reload: the old model's buffers go before the new ones are made
    const engine = await Engine.load(device, stream, { maxTokens: req.maxTokens });
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
    };
  }

  async run(req: RunRequest, onPiece: (piece: string) => void): Promise<RunResult> {
    if (!this.generator) throw new Error("no model is loaded");
    this.cancelled = false;
    try {
      return await this.generator.run(req, onPiece, () => this.cancelled);
    } catch (e) {
      this.generator.reset();
      throw e;
    }
  }

  cancel(): void {
    this.cancelled = true;
  }

  private freeEngine(): void {
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
