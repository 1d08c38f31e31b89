// The browser's Prompt API (`LanguageModel`, https://github.com/webmachinelearning/prompt-api) over
// wgllm's engine, so a page written for Chrome's built-in model runs on any browser with WebGPU:
//
//   await installLanguageModel({ modelUrl: "/models/SmolLM2-135M-Instruct.Q4_1.gguf", maxTokens: 2048 });
//   // ...then the page as written for the Prompt API:
//   const session = await LanguageModel.create({ initialPrompts: [{ role: "system", content: "Be terse." }] });
//   console.log(await session.prompt("Hi"));
//
// The model: the Prompt API has no model argument, so `LanguageModel.configure(config)` names it
// (`modelUrl` plus LlmInference's options: maxTokens is the context window, useWorker, cacheModel,
// randomSeed ...; `maxResponseTokens` bounds an answer). `await installLanguageModel(config)`
// configures it and makes it globalThis.LanguageModel where the browser has none, or has one that
// answers availability() "unavailable" (Chromium without its on-device model); `{force: true}` always.
// Every session shares one LlmInference, loaded by the first create() (the "download": `monitor`
// gets `downloadprogress` ProgressEvents, `loaded` in [0, 1], the first 0 and the last 1);
// availability() is "downloadable" before, "downloading" during, "available" after that load, and
// "unavailable" without WebGPU, without a configuration, or for non-text expectedInputs/Outputs.
//
// What the spec leaves to implementations, as chosen here:
// - The conversation is rendered with the model's own chat template (chat.ts's formatChat, LlmChat's
//   BOS rule); each prompt runs the whole history, and LlmInference reuses the KV cache of the
//   prefix already run, so a turn costs its new tokens. Prompts queue: one runs at a time over all
//   sessions. A prompt draws with the configuration's randomSeed (default 0), as MediaPipe's calls do.
// - contextUsage (inputUsage) is the token count of the session's messages rendered without the
//   assistant opening (0 for none); measureContextUsage(input) is what prompt(input) would add
//   before its answer: the tokens of history + input rendered with the assistant opening, less
//   contextUsage. contextWindow (inputQuota) is maxTokens. A prompt must leave one token for its
//   answer; when it does not, the oldest user/assistant turns after initialPrompts are dropped
//   ("contextoverflow" and "quotaoverflow" events), and if that is not enough, QuotaExceededError.
// - append() records and counts its messages; they are run with the next prompt.
// - responseConstraint (a JSON schema) goes through the JSON grammar mask (responseFormat, strict:
//   a keyword the grammar lacks is a NotSupportedError); unless omitResponseConstraintInput, the
//   last user message gets "\n\nRespond with JSON that matches this JSON schema: <schema as
//   JSON.stringify writes it>" (a user message of that text when the input has none). A RegExp is a
//   NotSupportedError.
// - promptStreaming's chunks are the new text (as current Chrome's are), not the text so far.
// - topK/temperature: both or neither (NotSupportedError), topK < 1 or temperature < 0 a
//   RangeError, values above params()'s maxima clamped and topK rounded down, as the explainer says;
//   samplingMode picks a pair from SAMPLING_MODES (with topK or temperature: TypeError).
// - destroy() (or aborting create()'s signal later): later calls throw InvalidStateError, calls
//   running or queued reject with AbortError. LanguageModel.inference is the shared LlmInference.
// - tools, and image/audio inputs: NotSupportedError (the engine reads text).

import { LlmChat, chatTemplateOf, formatChat } from "./chat";
import { MAX_TOP_K } from "./engine";
import { ModelFetchError, WebGpuUnavailableError } from "./errors";
import { FilesetResolver } from "./fileset_resolver";
import type { ResponseFormat } from "./generator";
import { SchemaError, grammarForResponseFormat } from "./grammar";
import { DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE, DEFAULT_TOP_K, LlmInference, type LlmInferenceOptions } from "./llm_inference";
import {
  type Availability,
  type LanguageModelCreateCoreOptions,
  type LanguageModelCreateOptions,
  type LanguageModelExpected,
  type LanguageModelParams,
  type LanguageModelPrompt,
  type LanguageModelPromptOptions,
  type LanguageModelSamplingMode,
  MAX_TEMPERATURE,
  type Message,
  SAMPLING_MODES,
  abortReason,
  canonicalize,
  dom,
  quotaError,
  show,
  unsupportedTypes,
  withGuidance,
} from "./prompt_api_input";

export { MAX_TEMPERATURE, SAMPLING_MODES } from "./prompt_api_input";
export type {
  Availability,
  LanguageModelCreateCoreOptions,
  LanguageModelCreateOptions,
  LanguageModelExpected,
  LanguageModelMessage,
  LanguageModelMessageContent,
  LanguageModelParams,
  LanguageModelPrompt,
  LanguageModelPromptOptions,
  LanguageModelSamplingMode,
} from "./prompt_api_input";

/** What LanguageModel runs: the model's URL and LlmInference's options (maxTokens: the context window). */
export interface LanguageModelConfig extends Omit<LlmInferenceOptions, "baseOptions"> {
  modelUrl?: string | URL;
  baseOptions?: LlmInferenceOptions["baseOptions"];
  /** wgllm extra: at most this many tokens an answer (default: up to the end of the context). */
  maxResponseTokens?: number;
}

// -- the shared model -------------------------------------------------------------------------------

let config: LanguageModelConfig | undefined;
let llm: LlmInference | undefined;
let loading: Promise<LlmInference> | undefined;
const progressListeners = new Set<(fraction: number) => void>();
let queue: Promise<unknown> = Promise.resolve();

function engineParams(): LanguageModelParams {
  return {
    defaultTopK: Math.min(config?.topK ?? DEFAULT_TOP_K, MAX_TOP_K),
    maxTopK: MAX_TOP_K,
    defaultTemperature: config?.temperature ?? DEFAULT_TEMPERATURE,
    maxTemperature: MAX_TEMPERATURE,
  };
}

/** Whether two configurations load the same model the same way (values equal, functions the same). */
function sameConfig(a: LanguageModelConfig, b: LanguageModelConfig): boolean {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]) as Set<keyof LanguageModelConfig>;
  const plain = (v: unknown) => (v instanceof URL ? String(v) : v);
  return [...keys].every((k) => a[k] === b[k] || (typeof a[k] !== "function" && JSON.stringify(plain(a[k])) === JSON.stringify(plain(b[k]))));
}

/** The loaded model; the first call loads it, reporting fractions of the download to the listeners. */
function loadModel(): Promise<LlmInference> {
  if (llm) return Promise.resolve(llm);
  if (loading) return loading;
  const c = config!;
  const { modelUrl, maxResponseTokens: _, ...options } = c;
  const baseOptions = { ...options.baseOptions, ...(modelUrl !== undefined ? { modelAssetPath: String(modelUrl) } : {}) };
  loading = (async () => {
    const onLoadProgress: LlmInferenceOptions["onLoadProgress"] = (loaded, total, stage) => {
      options.onLoadProgress?.(loaded, total, stage);
      if (total) for (const listener of progressListeners) listener(loaded / total);
    };
    try {
      const loaded = await LlmInference.createFromOptions(await FilesetResolver.forGenAiTasks(), { ...options, baseOptions, onLoadProgress });
      if (config !== c) loaded.close(); // reconfigured while loading
      else llm = loaded;
      return loaded;
    } catch (e) {
      if (e instanceof ModelFetchError) throw dom("NetworkError", e.message);
      if (e instanceof WebGpuUnavailableError) throw dom("NotSupportedError", e.message);
      throw dom("OperationError", `loading the model failed: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
    } finally {
      if (config === c) loading = undefined;
    }
  })();
  return loading;
}

/** Run `fn` when the operations queued before it are done; an abort while waiting rejects at once. */
function exclusive<T>(signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
  const run = queue.then(() => {
    if (signal.aborted) throw abortReason(signal);
    return fn();
  });
  queue = run.catch(() => undefined);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortReason(signal));
    signal.addEventListener("abort", onAbort, { once: true });
    run.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

function anySignal(signals: (AbortSignal | undefined)[]): AbortSignal {
  const given = signals.filter((s): s is AbortSignal => s !== undefined);
  for (const s of given) if (!(s instanceof AbortSignal)) throw new TypeError(`'signal' must be an AbortSignal, got ${show(s)}`);
  return AbortSignal.any(given);
}

const CREATED = Symbol("LanguageModel.create");

interface SessionState {
  llm: LlmInference;
  template: string;
  initial: Message[];
  history: Message[];
  topK: number;
  temperature: number;
  samplingMode: LanguageModelSamplingMode;
  expectedInputs: LanguageModelExpected[];
  expectedOutputs: LanguageModelExpected[];
  contextWindow: number;
}

/** A Prompt API session (the browser's LanguageModel) on wgllm's engine. */
export class LanguageModel extends EventTarget {
  oncontextoverflow: ((event: Event) => void) | null = null;
  onquotaoverflow: ((event: Event) => void) | null = null;
  #s: SessionState;
  #usage: number;
  readonly #destruction = new AbortController();
  #destroyed = false;

  private constructor(token: symbol, state: SessionState) {
    super();
    if (token !== CREATED) throw new TypeError("Illegal constructor: use LanguageModel.create()");
    this.#s = state;
    this.#usage = this.#count(state.initial, false);
  }

  /** Which model the sessions run (the Prompt API has no model argument); a new one unloads the old. */
  static configure(next: LanguageModelConfig): void {
    if (typeof next !== "object" || next === null) throw new TypeError(`LanguageModel.configure needs {modelUrl, ...LlmInference options}, got ${show(next)}`);
    if (next.modelUrl === undefined && !next.baseOptions?.modelAssetPath && !next.baseOptions?.modelAssetBuffer) {
      throw new TypeError("LanguageModel.configure: 'modelUrl' (the GGUF model's URL) is required");
    }
    const m = next.maxResponseTokens;
    if (m !== undefined && !(Number.isInteger(m) && m >= 1)) throw new RangeError(`'maxResponseTokens' must be an integer >= 1, got ${show(m)}`);
    if (config && sameConfig(config, next)) return; // installing twice keeps the loaded model
    llm?.close();
    llm = loading = undefined;
    config = { ...next };
  }

  /** wgllm extra: the LlmInference the sessions share (undefined until a create() has loaded it),
   * for its lastStats and lastResults. */
  static get inference(): LlmInference | undefined {
    return llm;
  }

  static async availability(options: LanguageModelCreateCoreOptions = {}): Promise<Availability> {
    if (unsupportedTypes(options).length || !config) return "unavailable";
    if (llm) return "available";
    if (loading) return "downloading";
    const gpu = (navigator as { gpu?: GPU }).gpu;
    if (!gpu || !(await gpu.requestAdapter().catch(() => null))) return "unavailable";
    return "downloadable";
  }

  static async params(): Promise<LanguageModelParams | null> {
    return config && (navigator as { gpu?: GPU }).gpu ? engineParams() : null;
  }

  static async create(options: LanguageModelCreateOptions = {}): Promise<LanguageModel> {
    if (typeof options !== "object" || options === null) throw new TypeError(`LanguageModel.create's options must be an object, got ${show(options)}`);
    const unsupported = unsupportedTypes(options);
    if (unsupported.length) throw dom("NotSupportedError", `${unsupported.join(", ")}: this model reads and writes text only`);
    if (options.tools !== undefined) throw dom("NotSupportedError", "'tools' is not supported: the model calls no tools here");
    const [topK, temperature, samplingMode] = samplingOf(options);
    const initial = options.initialPrompts === undefined ? [] : canonicalize(options.initialPrompts, false, "initialPrompts", false);
    const signal = anySignal([options.signal]);
    if (options.monitor !== undefined && typeof options.monitor !== "function") throw new TypeError(`'monitor' must be a function, got ${show(options.monitor)}`);
    const c = config;
    if (!c) throw dom("NotSupportedError", "no model is configured: call LanguageModel.configure({modelUrl, ...}) (or installLanguageModel) first");
    if (signal.aborted) throw abortReason(signal);

    const monitor = new EventTarget() as EventTarget & { ondownloadprogress: ((e: ProgressEvent) => void) | null };
    monitor.ondownloadprogress = null;
    let last = -1;
    const report = (fraction: number) => {
      const loaded = Math.floor(Math.min(fraction, 1) * 65536) / 65536; // coarse, as the spec asks
      if (loaded <= last || signal.aborted) return;
      last = loaded;
      const event = new ProgressEvent("downloadprogress", { loaded, total: 1, lengthComputable: true });
      monitor.dispatchEvent(event);
      monitor.ondownloadprogress?.(event);
    };
    options.monitor?.(monitor);
    report(0);
    const listener = (fraction: number) => report(Math.min(fraction, 1 - 1 / 65536));
    progressListeners.add(listener);
    let model: LlmInference;
    try {
      model = await new Promise<LlmInference>((resolve, reject) => {
        const onAbort = () => reject(abortReason(signal));
        signal.addEventListener("abort", onAbort, { once: true });
        loadModel().then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
      });
    } finally {
      progressListeners.delete(listener);
    }
    report(1);
    const template = chatTemplateOf(model);
    if (!template) throw dom("NotSupportedError", `the model ${model.modelInfo?.source} has no chat template (GGUF tokenizer.chat_template), which the Prompt API's messages need`);
    const session = new LanguageModel(CREATED, {
      llm: model, template, initial, history: [], topK, temperature, samplingMode, contextWindow: c.maxTokens ?? DEFAULT_MAX_TOKENS,
      expectedInputs: structuredClone(options.expectedInputs ?? []), expectedOutputs: structuredClone(options.expectedOutputs ?? []),
    });
    if (session.#usage > session.contextWindow) throw quotaError(session.#usage, session.contextWindow);
    options.signal?.addEventListener("abort", () => session.destroy(), { once: true }); // create's signal destroys the session
    return session;
  }

  get contextUsage(): number {
    return this.#usage;
  }
  get inputUsage(): number {
    return this.#usage;
  }
  get contextWindow(): number {
    return this.#s.contextWindow;
  }
  get inputQuota(): number {
    return this.contextWindow;
  }
  get topK(): number {
    return this.#s.topK;
  }
  get temperature(): number {
    return this.#s.temperature;
  }
  get samplingMode(): LanguageModelSamplingMode {
    return this.#s.samplingMode;
  }

  async prompt(input: LanguageModelPrompt, options: LanguageModelPromptOptions = {}): Promise<string> {
    const call = this.#check(input, options);
    return exclusive(call.signal, () => this.#respond(call, undefined));
  }

  /** The answer as a stream of string chunks, each the text that is new (Chrome's current behaviour). */
  promptStreaming(input: LanguageModelPrompt, options: LanguageModelPromptOptions = {}): ReadableStream<string> {
    const call = this.#check(input, options);
    const cancel = new AbortController();
    const signal = AbortSignal.any([call.signal, cancel.signal]);
    return new ReadableStream<string>({
      start: (controller) => {
        exclusive(signal, () => this.#respond({ ...call, signal }, (piece) => void (piece && !signal.aborted && controller.enqueue(piece)))).then(
          () => controller.close(),
          (e) => controller.error(e),
        );
      },
      cancel: (reason) => cancel.abort(reason ?? dom("AbortError", "the stream was cancelled")),
    });
  }

  async append(input: LanguageModelPrompt, options: { signal?: AbortSignal } = {}): Promise<void> {
    this.#usable();
    const messages = canonicalize(input, this.#hasInput(), "input", false);
    const signal = anySignal([options.signal, this.#destruction.signal]);
    if (signal.aborted) throw abortReason(signal);
    await exclusive(signal, async () => {
      const added = this.#claimSystem(messages);
      this.#keep([...this.#fit(added, 0), ...added]);
    });
  }

  async measureContextUsage(input: LanguageModelPrompt, options: LanguageModelPromptOptions = {}): Promise<number> {
    const call = this.#check(input, options);
    if (call.signal.aborted) throw abortReason(call.signal);
    return this.#count([...this.#s.initial, ...this.#s.history, ...call.messages], true) - this.#usage;
  }

  measureInputUsage(input: LanguageModelPrompt, options: LanguageModelPromptOptions = {}): Promise<number> {
    return this.measureContextUsage(input, options);
  }

  async clone(options: { signal?: AbortSignal } = {}): Promise<LanguageModel> {
    this.#usable();
    const signal = anySignal([options.signal, this.#destruction.signal]);
    if (signal.aborted) throw abortReason(signal);
    return exclusive(signal, async () => {
      const copy = new LanguageModel(CREATED, { ...this.#s, initial: [...this.#s.initial], history: [...this.#s.history] });
      copy.#usage = this.#usage;
      return copy;
    });
  }

  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#destruction.abort(dom("AbortError", "the session was destroyed"));
  }

  // -- internals -----------------------------------------------------------------------------------

  #usable(): void {
    if (this.#destroyed) throw dom("InvalidStateError", "the session has been destroyed: create a new one with LanguageModel.create()");
  }

  #hasInput(): boolean {
    return this.#s.initial.length + this.#s.history.length > 0;
  }

  /** A prompt's arguments checked (synchronously, as the browser's are): its messages, grammar and signal. */
  #check(input: LanguageModelPrompt, options: LanguageModelPromptOptions): { messages: Message[]; format?: ResponseFormat; signal: AbortSignal } {
    this.#usable();
    if (typeof options !== "object" || options === null) throw new TypeError(`the prompt's options must be an object, got ${show(options)}`);
    const constraint = options.responseConstraint;
    if (options.omitResponseConstraintInput && constraint === undefined) throw new TypeError("'omitResponseConstraintInput' needs a 'responseConstraint'");
    let messages = canonicalize(input, this.#hasInput(), "input", true);
    let format: ResponseFormat | undefined;
    if (constraint !== undefined && constraint !== null) {
      if (constraint instanceof RegExp) throw dom("NotSupportedError", "'responseConstraint': a RegExp is not supported, only a JSON schema");
      if (typeof constraint !== "object" || Array.isArray(constraint)) throw new TypeError(`'responseConstraint' must be a JSON schema object or a RegExp, got ${show(constraint)}`);
      format = { type: "json_schema", json_schema: { name: "response", schema: constraint, strict: true } };
      try {
        grammarForResponseFormat(format);
      } catch (e) {
        if (e instanceof SchemaError) throw dom("NotSupportedError", `'responseConstraint': ${e.message}`);
        throw e;
      }
      format = JSON.parse(JSON.stringify(format)) as ResponseFormat;
      if (!options.omitResponseConstraintInput) messages = withGuidance(messages, JSON.stringify(constraint));
    }
    return { messages, format, signal: anySignal([options.signal, this.#destruction.signal]) };
  }

  /** Prefill and generate: the answer, the session's history advanced (left as it was on abort or error). */
  async #respond(call: { messages: Message[]; format?: ResponseFormat; signal: AbortSignal }, onPiece?: (piece: string) => void): Promise<string> {
    const s = this.#s;
    const added = this.#claimSystem(call.messages);
    this.#keep(this.#fit(added, 1)); // an overflow's drop stays, even when the prompt is aborted
    const text = this.#render([...s.initial, ...s.history, ...added], true);
    const room = s.contextWindow - this.#tokens(text);
    let results;
    try {
      results = await s.llm.generate(text, {
        topK: s.topK, temperature: s.temperature, randomSeed: config?.randomSeed, maxNewTokens: Math.min(config?.maxResponseTokens ?? room, room),
        responseFormat: call.format ?? null, signal: call.signal, onPiece: onPiece && ((_, piece) => onPiece(piece)),
      });
    } catch (e) {
      if (call.signal.aborted) throw abortReason(call.signal);
      if (e instanceof DOMException) throw e;
      throw dom("UnknownError", `the model failed to answer: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
    }
    if (call.signal.aborted || results[0].finishReason === "cancelled") throw abortReason(call.signal);
    const answer = results[0].text;
    const last = added[added.length - 1];
    const turn = last.prefix ? [...added.slice(0, -1), { role: "assistant" as const, content: last.content + answer, prefix: false }] : [...added, { role: "assistant" as const, content: answer, prefix: false }];
    this.#keep([...s.history, ...turn]);
    return answer;
  }

  /** A leading system message of the session's first input joins initialPrompts (never dropped). */
  #claimSystem(messages: Message[]): Message[] {
    if (this.#hasInput() || messages[0]?.role !== "system") return messages;
    this.#s.initial = [messages[0]];
    return messages.slice(1);
  }

  #keep(history: Message[]): void {
    this.#s.history = history;
    this.#usage = this.#count([...this.#s.initial, ...history], false);
  }

  /** The history after initialPrompts, its oldest turns dropped until `added` fits with `spare`
   * tokens to spare (an overflow fires its events); QuotaExceededError, nothing dropped, when even
   * initialPrompts and `added` alone do not fit. */
  #fit(added: Message[], spare: number): Message[] {
    const s = this.#s;
    const needed = (past: Message[]) => this.#count([...s.initial, ...past, ...added], spare > 0) + spare;
    let past = s.history;
    while (needed(past) > s.contextWindow) {
      const end = past.findIndex((m) => m.role === "assistant");
      if (end < 0) throw quotaError(needed([]), s.contextWindow, spare);
      past = past.slice(end + 1);
    }
    if (past !== s.history) {
      for (const type of ["contextoverflow", "quotaoverflow"] as const) {
        const event = new Event(type);
        this.dispatchEvent(event);
        (type === "contextoverflow" ? this.oncontextoverflow : this.onquotaoverflow)?.call(this, event);
      }
    }
    return past;
  }

  /** The messages as the model's template writes them; a last prefix message is the answer's start. */
  #render(messages: Message[], addGenerationPrompt: boolean): string {
    const last = messages[messages.length - 1];
    if (addGenerationPrompt && last?.prefix) return this.#render(messages.slice(0, -1), true) + last.content;
    const chat = new LlmChat(this.#s.llm, { template: this.#s.template });
    chat.messages.push(...messages.map(({ role, content }) => ({ role, content })));
    if (addGenerationPrompt) return chat.prompt();
    // LlmChat's rendering (its BOS rule) without the opening of the assistant's turn
    const tok = this.#s.llm.modelTokenizer!;
    const text = (id: number | undefined) => (id !== undefined ? new TextDecoder().decode(tok.tokenBytes(id)) : "");
    const out = formatChat(this.#s.template, chat.messages, { addGenerationPrompt: false, bosToken: text(tok.bosId), eosToken: text(tok.eosId) });
    return tok.addBos && text(tok.bosId) && out.startsWith(text(tok.bosId)) ? out.slice(text(tok.bosId).length) : out;
  }

  #tokens(text: string): number {
    return this.#s.llm.modelTokenizer!.encode(text, { addSpecial: true, parseSpecial: true }).length;
  }

  #count(messages: Message[], addGenerationPrompt: boolean): number {
    return messages.length ? this.#tokens(this.#render(messages, addGenerationPrompt)) : 0;
  }
}

/** topK, temperature and samplingMode of create()'s options, checked as the explainer says. */
function samplingOf(options: LanguageModelCreateCoreOptions): [number, number, LanguageModelSamplingMode] {
  const { topK, temperature, samplingMode } = options;
  const p = engineParams();
  if (samplingMode !== undefined) {
    if (!(samplingMode in SAMPLING_MODES)) throw new TypeError(`'samplingMode' must be one of ${Object.keys(SAMPLING_MODES).join(", ")}, got ${show(samplingMode)}`);
    if (topK !== undefined || temperature !== undefined) throw new TypeError("'samplingMode' cannot be given with 'topK' or 'temperature'");
    const [k, t] = SAMPLING_MODES[samplingMode] ?? [p.defaultTopK, p.defaultTemperature];
    return [k, t, samplingMode];
  }
  if ((topK === undefined) !== (temperature === undefined)) {
    throw dom("NotSupportedError", `'topK' and 'temperature' must be given both or neither (got only '${topK === undefined ? "temperature" : "topK"}')`);
  }
  if (topK === undefined || temperature === undefined) return [p.defaultTopK, p.defaultTemperature, "balanced"];
  if (typeof topK !== "number" || Number.isNaN(topK) || topK < 1) throw new RangeError(`'topK' must be a number >= 1, got ${show(topK)}`);
  if (typeof temperature !== "number" || Number.isNaN(temperature) || temperature < 0) throw new RangeError(`'temperature' must be a number >= 0, got ${show(temperature)}`);
  return [Math.min(Math.floor(topK), p.maxTopK), Math.min(temperature, p.maxTemperature), "balanced"];
}

/** Configure LanguageModel and make it the page's `LanguageModel` where the browser has none, or
 * where the browser's own answers availability() with "unavailable" (Chromium builds without the
 * on-device model do), or with `force`. Resolves to the `LanguageModel` the page now sees. */
export async function installLanguageModel(next: LanguageModelConfig, options: { force?: boolean } = {}): Promise<unknown> {
  LanguageModel.configure(next);
  const g = globalThis as { LanguageModel?: { availability?: () => Promise<unknown> } | typeof LanguageModel };
  const native = g.LanguageModel;
  let replace = options.force || native === undefined;
  if (!replace && native !== LanguageModel) {
    replace = await Promise.resolve()
      .then(() => (native as { availability: () => Promise<unknown> }).availability())
      .then((a) => a === "unavailable", () => true);
  }
  if (replace) g.LanguageModel = LanguageModel;
  return g.LanguageModel;
}
