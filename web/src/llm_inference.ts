// LlmInference: the public API, a drop-in for @mediapipe/tasks-genai's class of the same name
// (its llm_inference.ts and llm_inference_options.d.ts are the reference for names, overloads,
// defaults and messages), running GGUF models on wgllm's WebGPU engine.
//
// Extras beyond MediaPipe's options, all optional: `onLoadProgress(loaded, total, stage)`,
// `cacheModel` (keep the download in the Cache Storage API), `useWorker` / `workerUrl` (run the
// engine in a Web Worker with the same API), `responseFormat` (OpenAI's: JSON output that parses and
// validates against a schema, generator.ts), and `generate(prompt, options)`, the per-call form the
// OpenAI shape (openai.ts) uses: options for one call only, n answers, maxNewTokens, an AbortSignal.
//
// LoRA, as in MediaPipe: declare `loraRanks` at creation (changing them reloads the model, as
// maxTokens does), load adapters with loadLoraModel(url | Uint8Array | Blob) — several may be
// resident at once — and pass the LoraModel to generateResponse(s). Adapters loaded before a reload
// of the same model (new maxTokens, loraRanks, ...) are loaded again so their handles stay valid.

import { BusyError, DeviceLostError, PromptTooLongError, WgllmError } from "./errors";
import type { WasmFileset } from "./fileset_resolver";
import type { GGUFValue } from "./gguf";
import type { ResponseFormat, RunRequest, RunResult } from "./generator";
import { grammarForResponseFormat } from "./grammar";
import { requestWebGpuDevice } from "./device";
import type { LoadProgressCallback, ModelAsset } from "./model_source";
import { LocalRunner, headerOf, type LoraAsset, type ModelInfo, type ModelLoadTimings, type Runner } from "./runner";
import type { KvCacheType } from "./engine";
import { KERNEL_FAMILIES, type KernelFamily } from "./gpu";
import { LORA_OWNER_MESSAGE } from "./lora_gpu";
import { SAMPLING_EXTRA_NAMES, type SamplingChecked, type SamplingExtras, type TokenLogprob, checkSampling, checkStop } from "./sampling";
import { Tokenizer } from "./tokenizer";
import { WorkerRunner } from "./worker_client";

export const DEFAULT_MAX_TOKENS = 512;
export const DEFAULT_TOP_K = 40;
export const DEFAULT_TEMPERATURE = 0.8;
export const DEFAULT_RANDOM_SEED = 0;
export const DEFAULT_NUM_RESPONSES = 1;
/** The most answers one generate() call gives (Python's inference.MAX_N). */
export const MAX_N = 16;

export interface WebGpuOptions {
  device?: GPUDevice;
  adapterInfo?: GPUAdapterInfo;
}

export interface LlmBaseOptions {
  modelAssetPath?: string;
  modelAssetBuffer?: Uint8Array | ReadableStreamDefaultReader<Uint8Array>;
  gpuOptions?: WebGpuOptions;
  delegate?: "CPU" | "GPU";
}

/** wgllm extras (SamplingExtras): topP, minP, repetitionPenalty, frequencyPenalty, presencePenalty,
 * penaltyLastN, logitBias, logprobs, topLogprobs (sampling.ts has the chain), and stop. OpenAI's
 * `seed` is randomSeed and its `n` is numResponses (generateResponses: the i-th answer drawn with
 * randomSeed + i, one after another, each with the whole maxTokens). */
export interface LlmInferenceOptions extends SamplingExtras {
  /** wgllm extra: strings that end the answer (not returned), matched across token boundaries; at most 16. */
  stop?: string | string[];
  /**
   * wgllm extra, OpenAI's response_format: `{type: "json_object"}` (any JSON object) or
   * `{type: "json_schema", json_schema: {name, schema, strict}}` (a document of the schema): every
   * step is masked to what continues a valid document, and the answer ends when it is whole, so it
   * parses and validates unless maxTokens or a stop string cuts it short (finishReason "length" / a
   * stop). `{type: "text"}` or undefined: free text. A bad schema is refused here, naming its field.
   */
  responseFormat?: ResponseFormat | null;
  baseOptions?: LlmBaseOptions;
  /** Maximum number of the combined input and output tokens. */
  maxTokens?: number;
  topK?: number;
  temperature?: number;
  randomSeed?: number;
  loraRanks?: number[];
  numResponses?: number;
  /**
   * Keep the KV cache in f32. Without it the cache is f16 (2 bytes an element, half the memory and
   * traffic; all arithmetic stays f32) when the device has shader-f16: the adapter's, or
   * gpuOptions.device's own features. modelInfo.kvCacheType says which was used. Changing it
   * reloads the model.
   */
  forceF32?: boolean;
  /**
   * wgllm extra: the WebGPU kernel family, "gpu" (real GPUs) or "cpu" (CPU-emulated WebGPU such as
   * SwiftShader); undefined chooses from the adapter. modelInfo.kernels says which runs. Changing it
   * reloads the model.
   */
  kernels?: KernelFamily;
  /** wgllm extra: bytes loaded so far and the file size (undefined when unknown). */
  onLoadProgress?: LoadProgressCallback;
  /**
   * wgllm extra: keep the model so a reload does not download it again: in the browser's cross-origin
   * storage (navigator.crossOriginStorage, shared between sites by SHA-256) where it exists, else in
   * this site's Cache Storage (README "Caching the model").
   */
  cacheModel?: boolean;
  /** wgllm extra: the model file's SHA-256 (64 hex digits): with cacheModel, found in the cross-origin
   * storage before any download, and checked against the download. Reset by a new model asset. */
  modelSha256?: string;
  /** wgllm extra: run the engine in a Web Worker (the page never blocks on it). */
  useWorker?: boolean;
  /** wgllm extra: where dist/genai_worker.mjs is (default: next to this bundle). */
  workerUrl?: string | URL;
}

export type Prompt = string | string[];
export type ProgressListener = (partialResult: string, done: boolean) => void;
export type MultiResponseProgressListener = (partialResults: string[], done: boolean) => void;

/** A LoRA adapter loaded by one LlmInference, for its generateResponse(). */
export class LoraModel {
  private static nextId = 1;
  readonly loraModelId: number;

  constructor(readonly owner: LlmInference) {
    this.loraModelId = LoraModel.nextId++;
  }
}

/** One answer of the last generateResponse(s) call (a wgllm extra): its ids, their logprobs when
 * the logprobs option asks, and why it ended ("stop": end-of-generation token or a stop string, then
 * `stop` names it; "length": maxTokens; "cancelled"). */
export interface GenerationResult {
  text: string;
  /** The prompt's tokens (BOS included when the model adds one). */
  promptTokens: number;
  tokens: number[];
  logprobs?: TokenLogprob[];
  finishReason: "stop" | "length" | "cancelled";
  stop?: string;
}

/** Statistics of the last generateResponse(s) call (a wgllm extra, used by the demo page). Each
 * response is a prefill step (its prompt less the reused prefix, sampling its first token) then
 * decode steps (one token in, the next out); with several responses the prefill figures add up. */
export interface GenerationStats {
  promptTokens: number;
  reusedPromptTokens: number;
  generatedTokens: number;
  seconds: number;
  /** The time to first token: the first response's prefill step, from the call to its first token. */
  firstTokenSeconds: number;
  /** Prompt tokens the prefill steps ran and their seconds. */
  prefillTokens: number;
  prefillSeconds: number;
  /** Tokens sampled by the decode steps (generatedTokens less each response's first) and their seconds. */
  decodeTokens: number;
  decodeSeconds: number;
}

const BUSY = "Previous invocation or loading is still ongoing.";
const LORA_BUSY = "Cannot load LoRA model while loading or processing.";

/** What an instance knows of each LoraModel it made: how to load it again, and its runner id. */
interface LoraEntry {
  asset: LoraAsset;
  id?: number;
  /** Why the handle can no longer be used (its model was replaced, or reloading it failed). */
  stale?: string;
}

const sortedRanks = (r: number[]) => [...new Set(r)].sort((a, b) => a - b).join(",");

/** Options of one generate() call (a wgllm extra): each one given applies to this call only; the
 * others are the instance's (setOptions). */
export interface GenerateOptions extends SamplingExtras {
  topK?: number;
  temperature?: number;
  randomSeed?: number;
  stop?: string | string[] | null;
  responseFormat?: ResponseFormat | null;
  /** Answers, the i-th drawn with randomSeed + i, one after another: 1..16 (default 1). */
  n?: number;
  /** At most this many tokens an answer; the prompt plus n x maxNewTokens must fit maxTokens. */
  maxNewTokens?: number;
  lora?: LoraModel;
  /** Answer `index`'s text, piece by piece. */
  onPiece?: (index: number, piece: string) => void;
  /** Aborting ends the running answer ("cancelled") and skips the ones not begun. */
  signal?: AbortSignal;
}

const GENERATE_OPTION_NAMES = new Set<string>([
  ...SAMPLING_EXTRA_NAMES, "topK", "temperature", "randomSeed", "stop", "responseFormat", "n", "maxNewTokens", "lora", "onPiece", "signal",
]);

/** One call's settings, checked: what each answer's RunRequest needs beyond its ids and seed. */
interface CallSettings {
  topK: number;
  temperature: number;
  randomSeed: number;
  extras: SamplingChecked;
  stop: string[];
  responseFormat?: ResponseFormat;
  maxNewTokens?: number;
  lora?: number;
}

/** `format` checked (a bad schema throws SchemaError naming its field) and copied as plain JSON. */
function checkResponseFormat(format: unknown): ResponseFormat | undefined {
  if (grammarForResponseFormat(format) === null) return undefined;
  return JSON.parse(JSON.stringify(format)) as ResponseFormat;
}

function check(name: string, value: unknown, ok: boolean, expected: string): void {
  if (!ok) throw new RangeError(`'${name}' must be ${expected}, got ${JSON.stringify(value)}`);
}

export class LlmInference {
  private runner?: Runner;
  private tokenizer?: Tokenizer;
  private info?: ModelInfo;
  private processing = false;
  private lost?: Error;
  private closed = false;
  private lastAsset?: ModelAsset;
  private maxTokens = DEFAULT_MAX_TOKENS;
  private topK = DEFAULT_TOP_K;
  private temperature = DEFAULT_TEMPERATURE;
  private randomSeed = DEFAULT_RANDOM_SEED;
  private numResponses = DEFAULT_NUM_RESPONSES;
  private sampling: SamplingExtras = {};
  private stop: string[] = [];
  private responseFormat?: ResponseFormat;
  private loraRanks: number[] = [];
  private forceF32 = false;
  private kernels?: KernelFamily;
  private cacheModel = false;
  private modelSha256?: string;
  private onLoadProgress?: LoadProgressCallback;
  private device?: GPUDevice;
  private useWorker = false;
  private workerUrl?: string | URL;
  private readonly loraModels = new Map<LoraModel, LoraEntry>();
  /** Statistics of the last generation. */
  lastStats?: GenerationStats;
  /** The answers of the last generation, with their tokens, logprobs and finish reasons. */
  lastResults?: GenerationResult[];

  private constructor() {}

  // -- creation ---------------------------------------------------------------------------------

  /** A new LlmInference with `options`; baseOptions must name the model. */
  static async createFromOptions(_fileset: WasmFileset, options: LlmInferenceOptions): Promise<LlmInference> {
    const llm = new LlmInference();
    await llm.setOptions(options);
    return llm;
  }

  static async createFromModelBuffer(
    fileset: WasmFileset,
    modelAssetBuffer: Uint8Array | ReadableStreamDefaultReader<Uint8Array>,
  ): Promise<LlmInference> {
    return LlmInference.createFromOptions(fileset, { baseOptions: { modelAssetBuffer } });
  }

  static async createFromModelPath(fileset: WasmFileset, modelAssetPath: string): Promise<LlmInference> {
    return LlmInference.createFromOptions(fileset, { baseOptions: { modelAssetPath } });
  }

  /** A WebGPU device with the adapter's own limits (for gpuOptions.device). */
  static async createWebGpuDevice(): Promise<GPUDevice> {
    return requestWebGpuDevice();
  }

  /**
   * Change options. A subset changes only those; an option set to undefined returns to its
   * default. A new model (baseOptions.modelAssetPath/Buffer) is loaded; changing maxTokens,
   * loraRanks or forceF32 reloads the current model (from its URL; a buffer must be passed again).
   */
  async setOptions(options: LlmInferenceOptions): Promise<void> {
    if (this.processing) throw new Error("Cannot set options while loading or processing.");
    this.assertUsable();
    const base = options.baseOptions;
    if (base?.modelAssetPath && base?.modelAssetBuffer) {
      throw new Error("Cannot set both baseOptions.modelAssetPath and baseOptions.modelAssetBuffer");
    }
    if (base?.delegate === "CPU") throw new Error("wgllm runs on WebGPU only: baseOptions.delegate 'CPU' is not supported");
    const next = {
      maxTokens: "maxTokens" in options ? (options.maxTokens ?? DEFAULT_MAX_TOKENS) : this.maxTokens,
      topK: "topK" in options ? (options.topK ?? DEFAULT_TOP_K) : this.topK,
      temperature: "temperature" in options ? (options.temperature ?? DEFAULT_TEMPERATURE) : this.temperature,
      randomSeed: "randomSeed" in options ? (options.randomSeed ?? DEFAULT_RANDOM_SEED) : this.randomSeed,
      numResponses: "numResponses" in options ? (options.numResponses ?? DEFAULT_NUM_RESPONSES) : this.numResponses,
      loraRanks: "loraRanks" in options ? (options.loraRanks ?? []) : this.loraRanks,
      forceF32: "forceF32" in options ? !!options.forceF32 : this.forceF32,
      kernels: "kernels" in options ? options.kernels : this.kernels,
    };
    check("kernels", next.kernels, next.kernels === undefined || KERNEL_FAMILIES.includes(next.kernels), '"gpu", "cpu" or undefined');
    check("maxTokens", next.maxTokens, Number.isInteger(next.maxTokens) && next.maxTokens >= 1, "an integer >= 1");
    check("topK", next.topK, Number.isInteger(next.topK) && next.topK >= 1, "an integer >= 1");
    check("temperature", next.temperature, typeof next.temperature === "number" && next.temperature >= 0, "a number >= 0");
    check("randomSeed", next.randomSeed, Number.isInteger(next.randomSeed), "an integer");
    if (!(Number.isInteger(next.numResponses) && next.numResponses >= 1)) throw new Error("'numResponses' must be at least 1.");
    check("loraRanks", next.loraRanks, Array.isArray(next.loraRanks) && next.loraRanks.every((r) => Number.isInteger(r) && r >= 1), "a list of integers >= 1");
    const sampling: SamplingExtras = { ...this.sampling };
    for (const name of SAMPLING_EXTRA_NAMES) if (name in options) (sampling as Record<string, unknown>)[name] = options[name];
    checkSampling(sampling, base?.modelAssetPath || base?.modelAssetBuffer ? undefined : this.info?.nVocab);
    const stop = "stop" in options ? checkStop(options.stop) : this.stop;
    const responseFormat = "responseFormat" in options ? checkResponseFormat(options.responseFormat) : this.responseFormat;
    if (next.numResponses > 1 && (next.topK <= 1 || next.temperature <= 0)) {
      console.warn(
        "To generate multiple responses, it is expected topK > 1 and temperature > 0; otherwise, all the generated responses may be the same.",
      );
    }
    if ("onLoadProgress" in options) this.onLoadProgress = options.onLoadProgress;
    if ("cacheModel" in options) this.cacheModel = !!options.cacheModel;
    if ("modelSha256" in options) this.modelSha256 = options.modelSha256;
    else if (base?.modelAssetPath || base?.modelAssetBuffer) this.modelSha256 = undefined;
    const workerChange = ("useWorker" in options && !!options.useWorker !== this.useWorker) || "workerUrl" in options;
    if ("useWorker" in options) this.useWorker = !!options.useWorker;
    if ("workerUrl" in options) this.workerUrl = options.workerUrl;
    if (base?.gpuOptions?.device) {
      if (this.useWorker) throw new Error("baseOptions.gpuOptions.device cannot be used with useWorker: a GPUDevice cannot move to a worker");
      this.device = base.gpuOptions.device;
    }

    let asset: ModelAsset | undefined = base?.modelAssetPath ?? base?.modelAssetBuffer;
    const reshape =
      next.maxTokens !== this.maxTokens ||
      next.forceF32 !== this.forceF32 ||
      next.kernels !== this.kernels ||
      sortedRanks(next.loraRanks) !== sortedRanks(this.loraRanks) ||
      workerChange ||
      !!base?.gpuOptions?.device;
    const sameModel = asset === undefined;
    if (asset === undefined && this.runner && reshape) {
      if (typeof this.lastAsset !== "string") {
        throw new Error("changing maxTokens, loraRanks, forceF32, kernels or the device reloads the model: pass baseOptions.modelAssetBuffer again");
      }
      asset = this.lastAsset;
    }
    if (asset === undefined && !this.runner) throw new Error("No model asset provided.");
    Object.assign(this, next);
    this.sampling = sampling;
    this.stop = stop;
    this.responseFormat = responseFormat;
    if (asset !== undefined) await this.load(asset, workerChange, sameModel);
  }

  private async load(asset: ModelAsset, newRunner: boolean, sameModel = false): Promise<void> {
    this.processing = true;
    try {
      if (newRunner || !this.runner) {
        this.runner?.close();
        this.runner = this.useWorker ? new WorkerRunner(this.workerUrl ?? defaultWorkerUrl()) : new LocalRunner(this.device);
      }
      this.tokenizer = undefined;
      this.info = undefined;
      const info = await this.runner.load(
        { asset, maxTokens: this.maxTokens, forceF32: this.forceF32, kernels: this.kernels, cacheModel: this.cacheModel, modelSha256: this.modelSha256, loraRanks: this.loraRanks },
        this.onLoadProgress,
      );
      this.tokenizer = Tokenizer.fromHeader(headerOf(info));
      this.info = info;
      this.lastAsset = typeof asset === "string" || asset instanceof URL ? String(asset) : undefined;
      await this.reloadLoras(this.runner, sameModel);
    } catch (e) {
      for (const entry of this.loraModels.values()) {
        entry.id = undefined;
        entry.stale ??= `This LoRA model's base model failed to load (${e instanceof Error ? e.message : String(e)}); load a model and the adapter again.`;
      }
      this.noteLoss(e);
      throw e;
    } finally {
      this.processing = false;
    }
  }

  /** After a load: the same model again brings its adapters back; a new model leaves them stale. */
  private async reloadLoras(runner: Runner, sameModel: boolean): Promise<void> {
    for (const entry of this.loraModels.values()) {
      entry.id = undefined;
      if (entry.stale) continue;
      if (!sameModel) {
        entry.stale = "This LoRA model was loaded for a model this LLM Inference task has since replaced; load it again with loadLoraModel().";
        continue;
      }
      try {
        entry.id = await runner.loadLora(entry.asset);
      } catch (e) {
        this.noteLoss(e);
        entry.stale = `This LoRA model could not be loaded again when the model was reloaded: ${e instanceof Error ? e.message : String(e)}`;
      }
    }
  }

  // -- generation -------------------------------------------------------------------------------

  /** Whether no load or generation is running. */
  get isIdle(): boolean {
    return !this.processing;
  }

  /** Architecture, vocabulary size, load time (and where it went: loadTimings), KV cache type ("f16"
   * or "f32", see forceF32) and kernel family of the loaded model (a wgllm extra). */
  get modelInfo():
    | { source: string; architecture: string; nVocab: number; loadSeconds: number; loadTimings: ModelLoadTimings; kvCacheType: KvCacheType; kernels: KernelFamily }
    | undefined {
    const i = this.info;
    return i && { source: i.source, architecture: i.architecture, nVocab: i.nVocab, loadSeconds: i.loadSeconds, loadTimings: i.loadTimings, kvCacheType: i.kvCacheType, kernels: i.kernels };
  }

  /** A general.* or tokenizer.* metadata value of the loaded model (a wgllm extra). */
  modelMetadata(key: string): GGUFValue | undefined {
    return this.info?.metadata.find(([k]) => k === key)?.[1];
  }

  /** The tokenizer of the loaded model (a wgllm extra, used by the chat helper). */
  get modelTokenizer(): Tokenizer | undefined {
    return this.tokenizer;
  }

  generateResponse(query: Prompt): Promise<string>;
  generateResponse(query: Prompt, progressListener?: ProgressListener): Promise<string>;
  generateResponse(query: Prompt, loraModel?: LoraModel): Promise<string>;
  generateResponse(query: Prompt, loraModel?: LoraModel, progressListener?: ProgressListener): Promise<string>;
  generateResponse(query: Prompt, loraOrListener?: LoraModel | ProgressListener, listener?: ProgressListener): Promise<string> {
    if (this.numResponses > 1) {
      console.warn(
        "'numResponses' is set larger than 1 and this function only returns the first response, so we recommend either " +
          "using 'generateResponses()' to obtain multiple responses, or else setting 'numResponses' to 1 for better performance.",
      );
    }
    const progress = typeof loraOrListener === "function" ? loraOrListener : listener;
    const lora = typeof loraOrListener === "function" ? undefined : loraOrListener;
    const multi = progress ? (parts: string[], done: boolean) => progress(parts[0], done) : undefined;
    return this.respond(query, lora, multi, 1).then((r) => r[0]);
  }

  generateResponses(query: Prompt): Promise<string[]>;
  generateResponses(query: Prompt, progressListener: MultiResponseProgressListener): Promise<string[]>;
  generateResponses(query: Prompt, loraModel: LoraModel): Promise<string[]>;
  generateResponses(query: Prompt, loraModel: LoraModel, progressListener: MultiResponseProgressListener): Promise<string[]>;
  generateResponses(
    query: Prompt,
    loraOrListener?: LoraModel | MultiResponseProgressListener,
    listener?: MultiResponseProgressListener,
  ): Promise<string[]> {
    const progress = typeof loraOrListener === "function" ? loraOrListener : listener;
    const lora = typeof loraOrListener === "function" ? undefined : loraOrListener;
    return this.respond(query, lora, progress, this.numResponses);
  }

  private promptIds(query: Prompt): number[] {
    const tok = this.tokenizer!;
    const text = Array.isArray(query) ? query.map((q) => {
      if (typeof q !== "string") throw new TypeError("wgllm prompts are text: images and audio are not supported");
      return q;
    }).join("") : query;
    if (typeof text !== "string") throw new TypeError(`the prompt must be a string, got ${typeof text}`);
    return tok.encode(text, { addSpecial: true, parseSpecial: true });
  }

  /** The runner id of `lora` (undefined: none), or an error naming why it cannot be used. */
  private loraId(lora: LoraModel | undefined): number | undefined {
    if (lora === undefined) return undefined;
    if (!(lora instanceof LoraModel) || lora.owner !== this) throw new Error(LORA_OWNER_MESSAGE);
    const entry = this.loraModels.get(lora);
    if (entry?.id === undefined) throw new WgllmError(entry?.stale ?? LORA_OWNER_MESSAGE);
    return entry.id;
  }

  private checkPrompt(ids: number[]): void {
    if (ids.length === 0) throw new Error("the prompt is empty and the model adds no BOS token: nothing to generate from");
    if (ids.length >= this.maxTokens) throw new PromptTooLongError(ids.length, this.maxTokens);
  }

  // Synchronous checks throw (as MediaPipe's do); the generation itself is the returned promise.
  private respond(query: Prompt, lora: LoraModel | undefined, listener: MultiResponseProgressListener | undefined, n: number): Promise<string[]> {
    this.assertUsable();
    if (this.processing) throw new BusyError();
    if (!this.runner || !this.tokenizer) throw new Error("No model is loaded.");
    const loraId = this.loraId(lora);
    const ids = this.promptIds(query);
    this.checkPrompt(ids);
    const extras = checkSampling(this.sampling, this.info?.nVocab); // logitBias's ids against this model's vocabulary
    const settings: CallSettings = {
      topK: this.topK, temperature: this.temperature, randomSeed: this.randomSeed, extras, stop: this.stop, responseFormat: this.responseFormat, lora: loraId,
    };
    const parts = (i: number, piece: string) => Array.from({ length: n }, (_, j) => (j === i ? piece : ""));
    return this.answers(ids, settings, n, listener && ((i, piece) => listener(parts(i, piece), false))).then((answers) => {
      listener?.(Array.from({ length: n }, () => ""), true);
      return answers.map((a) => a.text);
    });
  }

  /**
   * n answers to `prompt` (text, tokenized as generateResponse does, or token ids) with options for
   * this call only (a wgllm extra; Python's LlmInference.generate): the instance's options are not
   * changed. Every option is checked, each error naming it, before anything runs. The answers (and
   * lastResults) carry their tokens, logprobs and finish reasons; aborting `signal` ends the running
   * answer with finishReason "cancelled" and skips the rest. Greedy decoding (topK 1 or temperature
   * 0) with n > 1 gives n equal answers, as OpenAI's API does at temperature 0 (numResponses, an
   * option of the instance as in MediaPipe, still needs sampling).
   */
  generate(prompt: string | number[], options: GenerateOptions = {}): Promise<GenerationResult[]> {
    this.assertUsable();
    if (this.processing) throw new BusyError();
    if (!this.runner || !this.tokenizer) throw new Error("No model is loaded.");
    const unknown = Object.keys(options).filter((k) => !GENERATE_OPTION_NAMES.has(k));
    if (unknown.length) throw new TypeError(`unknown generate option(s) ${unknown.join(", ")}`);
    const o = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as GenerateOptions;
    const topK = o.topK ?? this.topK, temperature = o.temperature ?? this.temperature, randomSeed = o.randomSeed ?? this.randomSeed;
    check("topK", topK, Number.isInteger(topK) && topK >= 1, "an integer >= 1");
    check("temperature", temperature, typeof temperature === "number" && temperature >= 0, "a number >= 0");
    check("randomSeed", randomSeed, Number.isInteger(randomSeed), "an integer");
    const sampling: SamplingExtras = { ...this.sampling };
    for (const name of SAMPLING_EXTRA_NAMES) if (name in o) (sampling as Record<string, unknown>)[name] = o[name];
    const extras = checkSampling(sampling, this.info?.nVocab);
    const stop = "stop" in o ? checkStop(o.stop) : this.stop;
    const responseFormat = "responseFormat" in options ? checkResponseFormat(options.responseFormat) : this.responseFormat;
    const n = o.n ?? 1;
    check("n", n, Number.isInteger(n) && n >= 1 && n <= MAX_N, `an integer in [1, ${MAX_N}]`);
    const maxNewTokens = o.maxNewTokens;
    check("maxNewTokens", maxNewTokens, maxNewTokens === undefined || (Number.isInteger(maxNewTokens) && maxNewTokens >= 1), "an integer >= 1");
    if (o.onPiece !== undefined && typeof o.onPiece !== "function") throw new TypeError("'onPiece' must be a function");
    if (o.signal !== undefined && !(typeof AbortSignal !== "undefined" && o.signal instanceof AbortSignal)) throw new TypeError("'signal' must be an AbortSignal");
    const loraId = this.loraId(o.lora);
    let ids: number[];
    if (typeof prompt === "string") ids = this.promptIds(prompt);
    else {
      const nVocab = this.info!.nVocab;
      if (!Array.isArray(prompt) || !prompt.length || !prompt.every((t) => Number.isInteger(t) && t >= 0 && t < nVocab)) {
        throw new RangeError(`the prompt must be text or a non-empty list of token ids in [0, ${nVocab})`);
      }
      ids = [...prompt];
    }
    this.checkPrompt(ids);
    if (maxNewTokens !== undefined && ids.length + n * maxNewTokens > this.maxTokens) {
      const e = new PromptTooLongError(ids.length, this.maxTokens);
      e.message = `the prompt (${ids.length} tokens) plus n (${n}) x maxNewTokens (${maxNewTokens}) = ${ids.length + n * maxNewTokens} tokens is past the context of maxTokens = ${this.maxTokens}`;
      throw e;
    }
    return this.answers(ids, { topK, temperature, randomSeed, extras, stop, responseFormat, maxNewTokens, lora: loraId }, n, o.onPiece, o.signal);
  }

  /** The n answers, one after another; sets lastResults and lastStats. */
  private answers(
    ids: number[],
    s: CallSettings,
    n: number,
    onPiece?: (index: number, piece: string) => void,
    signal?: AbortSignal,
  ): Promise<GenerationResult[]> {
    this.processing = true;
    const runner = this.runner!;
    const abort = () => runner.cancel();
    signal?.addEventListener("abort", abort);
    return (async () => {
      const t0 = performance.now();
      const answers: GenerationResult[] = [];
      let generated = 0;
      let reused = 0;
      const steps = { firstTokenSeconds: 0, prefillTokens: 0, prefillSeconds: 0, decodeTokens: 0, decodeSeconds: 0 };
      try {
        for (let i = 0; i < n && !signal?.aborted; i++) {
          const req: RunRequest = {
            ids, maxTokens: this.maxTokens, topK: s.topK, temperature: s.temperature, seed: s.randomSeed + i, lora: s.lora, extras: s.extras,
            stop: s.stop, responseFormat: s.responseFormat, maxNewTokens: s.maxNewTokens,
          };
          const r: RunResult = await runner.run(req, (piece) => onPiece?.(i, piece));
          answers.push({ text: r.text, promptTokens: ids.length, tokens: r.tokens, logprobs: r.logprobs, finishReason: r.finishReason, stop: r.stop });
          generated += r.sampled;
          if (i === 0) {
            reused = r.reused;
            steps.firstTokenSeconds = r.prefillSeconds;
          }
          steps.prefillTokens += ids.length - r.reused;
          steps.prefillSeconds += r.prefillSeconds;
          steps.decodeTokens += r.sampled - 1;
          steps.decodeSeconds += r.decodeSeconds;
        }
        this.lastResults = answers;
        this.lastStats = { promptTokens: ids.length, reusedPromptTokens: reused, generatedTokens: generated, seconds: (performance.now() - t0) / 1000, ...steps };
        return answers;
      } catch (e) {
        this.noteLoss(e);
        throw e;
      } finally {
        signal?.removeEventListener("abort", abort);
        this.processing = false;
      }
    })();
  }

  /**
   * The number of tokens `query` takes as a prompt, not counting the start token the model adds
   * (MediaPipe's count: 16 for a 16-token prompt whose run is BOS + 16). Synchronous, as
   * MediaPipe's is. maxTokens still holds the start token: a prompt fits when sizeInTokens + 1 (with
   * a BOS) is below it.
   */
  sizeInTokens(query: Prompt): number | undefined {
    this.assertUsable();
    if (this.processing) throw new Error(BUSY);
    if (!this.tokenizer) return undefined;
    const ids = this.promptIds(query);
    return this.tokenizer.addBos && ids.length > 0 && ids[0] === this.tokenizer.bosId ? ids.length - 1 : ids.length;
  }

  /** Stop the running generation; its promise resolves with the text so far. */
  cancelProcessing(): void {
    this.runner?.cancel();
  }

  /**
   * Load a LoRA adapter (a GGUF adapter file: `wgllm convert --lora-ckpt ...`, or llama.cpp's
   * convert_lora_to_gguf.py with F32/F16 factors) for this instance's generateResponse(s). Its rank
   * must be one of loraRanks; it must adapt this model (architecture, tensor names and shapes).
   */
  async loadLoraModel(modelAsset: string | URL | Uint8Array | Blob): Promise<LoraModel> {
    this.assertUsable();
    if (this.processing) throw new Error(LORA_BUSY);
    if (!this.runner || !this.tokenizer) throw new Error("No model is loaded.");
    const ok = typeof modelAsset === "string" || modelAsset instanceof URL || modelAsset instanceof Uint8Array || (typeof Blob !== "undefined" && modelAsset instanceof Blob);
    if (!ok) throw new TypeError(`the LoRA model asset must be a URL string, a Uint8Array or a Blob; got ${Object.prototype.toString.call(modelAsset)}`);
    this.processing = true;
    try {
      const id = await this.runner.loadLora(modelAsset);
      const handle = new LoraModel(this);
      this.loraModels.set(handle, { asset: modelAsset, id });
      return handle;
    } catch (e) {
      this.noteLoss(e);
      throw e;
    } finally {
      this.processing = false;
    }
  }

  /** Free the model's GPU memory (and the worker); the instance cannot be used afterwards. */
  close(): void {
    this.runner?.close();
    this.runner = undefined;
    this.tokenizer = undefined;
    this.loraModels.clear();
    this.closed = true;
  }

  private assertUsable(): void {
    if (this.closed) throw new Error("This LlmInference has been closed; create a new one.");
    if (this.lost) throw this.lost;
  }

  private noteLoss(e: unknown): void {
    if (e instanceof DeviceLostError || (e instanceof Error && e.name === "DeviceLostError")) this.lost = e as Error;
  }
}

/** dist/genai_worker.mjs beside the ES module bundle. */
function defaultWorkerUrl(): URL {
  // import.meta.url is the bundle's own URL in the ES module build; the CommonJS build has none.
  const here = (import.meta as { url?: string }).url;
  if (!here) throw new Error("useWorker needs workerUrl (the URL of genai_worker.mjs) when the bundle is not loaded as an ES module");
  return new URL("./genai_worker.mjs", here);
}
