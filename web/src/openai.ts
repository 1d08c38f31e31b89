// OpenAI's chat and completions API over one LlmInference, in the shape WebLLM offers in the
// browser: a page written for WebLLM's `CreateMLCEngine` runs with `createChatEngine` instead.
//
//   const engine = await createChatEngine("/models/SmolLM2-135M-Instruct.Q4_1.gguf", { maxTokens: 2048 });
//   const reply = await engine.chat.completions.create({ messages: [{ role: "user", content: "Hi" }] });
//   for await (const chunk of await engine.chat.completions.create({ messages, stream: true })) ...
//
// Requests map onto LlmInference.generate, whose options apply to the one call (the instance's
// options stay as they are): max_tokens / max_completion_tokens -> maxNewTokens, seed -> randomSeed,
// n, stop, response_format, temperature, top_p, top_k, min_p, frequency_penalty, presence_penalty,
// repetition_penalty, logit_bias, logprobs / top_logprobs (chat) or an integer logprobs (completions'
// legacy shape). A field left out takes the LlmInference's option (createChatEngine's `options`,
// MediaPipe's defaults otherwise); completions' max_tokens defaults to 16, as OpenAI's. Messages go
// through the model's own chat template (chat.ts); a follow-up turn reuses the KV cache of the
// history already run (llm.lastStats.reusedPromptTokens). Every field is checked before anything
// runs: a bad one is a ChatRequestError naming it (`param`). Aborting `{signal}` ends the answer and
// the call (or the stream) throws an AbortError DOMException. The answers and stream chunks are
// OpenAI's objects; in a stream, an answer's logprobs come in its last chunk. One request runs at a
// time: another while one runs is a BusyError, as LlmInference's calls are.
//
// Tools, as serve-models has them (py/wgllm/openai_api.py's docstring): `tools` go to the template,
// and so do an assistant's earlier tool_calls and the tools' answers (openai_messages.ts);
// tool_choice "required" or a named function constrains the answer to {"name", "arguments"} by
// the function's parameters schema (the responseFormat mask) and returns it as tool_calls; "auto"
// (the default) parses calls written in the template's own format (tool_calls.ts) out of the free
// answer, holding a stream's text back from where a call may begin and sending each call as one
// tool_calls delta once the answer is whole; "none" leaves the tools out of the template.

import { LlmChat, chatTemplateOf } from "./chat";
import { PromptTooLongError } from "./errors";
import { FilesetResolver } from "./fileset_resolver";
import type { ResponseFormat } from "./generator";
import { SchemaError } from "./grammar";
import {
  type GenerateOptions,
  type GenerationResult,
  LlmInference,
  type LlmInferenceOptions,
  MAX_N,
} from "./llm_inference";
import { ChatRequestError, bad, checkMessages, checkTools, show } from "./openai_messages";
import { MAX_TOP_LOGPROBS } from "./sampling";
import { type ToolCall, type ToolCallFormat, ToolCallStream, detectToolCallFormat, openaiToolCalls, parseToolCalls } from "./tool_calls";

export { ChatRequestError } from "./openai_messages";
export type { ToolCall } from "./tool_calls";

export interface ChatCompletionMessageParam {
  role: string;
  content: string | { type: "text"; text: string }[] | null;
  name?: string;
  tool_calls?: ToolCall[];
  tool_call_id?: string;
}

export interface ChatCompletionTool {
  type: "function";
  function: { name: string; description?: string; parameters?: Record<string, unknown> };
}

interface CommonRequest {
  model?: string | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
  max_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  min_p?: number | null;
  frequency_penalty?: number | null;
  presence_penalty?: number | null;
  repetition_penalty?: number | null;
  logit_bias?: Record<string, number> | null;
  stop?: string | string[] | null;
  seed?: number | null;
  n?: number | null;
  response_format?: ResponseFormat | null;
  user?: string;
}

export interface ChatCompletionRequest extends CommonRequest {
  messages: ChatCompletionMessageParam[];
  max_completion_tokens?: number | null;
  logprobs?: boolean | null;
  top_logprobs?: number | null;
  tools?: ChatCompletionTool[] | null;
  tool_choice?: "none" | "auto" | "required" | { type: "function"; function: { name: string } } | null;
  /** Accepted and ignored: calls are parsed however many the model writes. */
  parallel_tool_calls?: boolean | null;
}

export interface CompletionRequest extends CommonRequest {
  prompt: string | number[] | [string] | [number[]];
  /** The legacy shape: the best `logprobs` alternatives of each token (0..20). */
  logprobs?: number | null;
  echo?: boolean | null;
  suffix?: string | null;
  best_of?: number | null;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

export interface CompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

type FinishReason = "stop" | "length" | "tool_calls";

export interface ChatCompletionTokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  system_fingerprint: null;
  choices: {
    index: number;
    message: { role: "assistant"; content: string | null; tool_calls?: ToolCall[]; refusal: null };
    logprobs: { content: ChatCompletionTokenLogprob[]; refusal: null } | null;
    finish_reason: FinishReason;
  }[];
  usage: CompletionUsage;
}

export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  system_fingerprint: null;
  choices: {
    index: number;
    delta: { role?: "assistant"; content?: string; tool_calls?: (ToolCall & { index: number })[] };
    logprobs: { content: ChatCompletionTokenLogprob[]; refusal: null } | null;
    finish_reason: FinishReason | null;
  }[];
  usage?: CompletionUsage | null;
}

export interface LegacyLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Record<string, number>[];
  text_offset: number[];
}

export interface Completion {
  id: string;
  object: "text_completion";
  created: number;
  model: string;
  system_fingerprint: null;
  choices: { index: number; text: string; logprobs: LegacyLogprobs | null; finish_reason: FinishReason | null }[];
  usage?: CompletionUsage | null;
}

const COMMON_FIELDS = ["model", "stream", "stream_options", "max_tokens", "temperature", "top_p", "top_k", "min_p", "frequency_penalty",
  "presence_penalty", "repetition_penalty", "logit_bias", "stop", "seed", "n", "response_format", "logprobs", "user"];
const CHAT_FIELDS = new Set([...COMMON_FIELDS, "messages", "max_completion_tokens", "top_logprobs", "tools", "tool_choice", "parallel_tool_calls"]);
const COMPLETION_FIELDS = new Set([...COMMON_FIELDS, "prompt", "echo", "suffix", "best_of"]);
/** LlmInference's option names, as a request spells them (for the errors of its checks). */
const FIELD_OF: Record<string, string> = {
  topK: "top_k", temperature: "temperature", topP: "top_p", minP: "min_p", repetitionPenalty: "repetition_penalty",
  frequencyPenalty: "frequency_penalty", presencePenalty: "presence_penalty", logitBias: "logit_bias", logprobs: "logprobs",
  topLogprobs: "top_logprobs", randomSeed: "seed", stop: "stop", n: "n", maxNewTokens: "max_tokens",
};

const CAMEL_NAMES = new RegExp(`\\b(${Object.keys(FIELD_OF).filter((k) => k !== FIELD_OF[k]).join("|")})\\b`, "g");


function int(body: Record<string, unknown>, name: string, lo?: number, hi?: number): number | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (!Number.isInteger(v) || (lo !== undefined && (v as number) < lo) || (hi !== undefined && (v as number) > hi)) {
    const where = hi !== undefined ? ` in [${lo}, ${hi}]` : lo !== undefined ? ` >= ${lo}` : "";
    throw bad(name, `'${name}' must be an integer${where}, got ${show(v)}`);
  }
  return v as number;
}

function bool(body: Record<string, unknown>, name: string): boolean {
  const v = body[name];
  if (v === undefined || v === null) return false;
  if (typeof v !== "boolean") throw bad(name, `'${name}' must be true or false, got ${show(v)}`);
  return v;
}

function abortError(): DOMException {
  return new DOMException("the request was aborted", "AbortError");
}

function requestId(prefix: string): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** One request, checked: what generate() gets and how the answer is shaped. */
interface Plan {
  kind: "chat" | "completion";
  prompt: string | number[];
  options: GenerateOptions;
  stream: boolean;
  includeUsage: boolean;
  /** chat: logprobs with top_logprobs alternatives; completion: the legacy logprobs (top count). */
  logprobs: boolean;
  topLogprobs: number;
  /** The field that bounds an answer's tokens: max_tokens or max_completion_tokens. */
  maxField: string;
  /** The answer is a forced tool call ({"name", "arguments"} JSON), returned as tool_calls. */
  forcedCall: boolean;
  /** tool_choice "auto": the format calls are parsed from (null: none are). */
  toolFormat: ToolCallFormat | null;
  id: string;
  created: number;
}

/** The chunks a generation pushes, as an async iterable (read once); leaving the loop early runs `cancel`. */
class ChunkStream<T> implements AsyncIterable<T> {
  private readonly queue: T[] = [];
  private wake?: () => void;
  private finished = false;
  private failed = false;
  private failure: unknown;
  private taken = false;
  private running: Promise<void> = Promise.resolve();

  constructor(private readonly cancel: () => void) {}

  push(chunk: T): void {
    this.queue.push(chunk);
    this.wake?.();
  }

  /** The generation's end: the stream ends there, or throws its error once the chunks before it are read. */
  follow(done: Promise<void>): void {
    this.running = done
      .then(
        () => void (this.finished = true),
        (e) => void ((this.finished = this.failed = true), (this.failure = e)),
      )
      .finally(() => this.wake?.());
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    if (this.taken) throw new Error("a stream can be read once");
    this.taken = true;
    try {
      for (;;) {
        if (this.queue.length) yield this.queue.shift()!;
        else if (this.finished) {
          if (this.failed) throw this.failure;
          return;
        } else await new Promise<void>((resolve) => (this.wake = resolve));
      }
    } finally {
      if (!this.finished) {
        this.cancel();
        await this.running;
      }
    }
  }
}

/** OpenAI's API over `llm`: `chat.completions.create` and `completions.create`. */
export class ChatEngine {
  readonly chat: { completions: { create: ChatEngine["createChat"] } };
  readonly completions: { create: ChatEngine["createCompletion"] };
  private lastMessage = "";

  private constructor(readonly llm: LlmInference) {
    this.chat = { completions: { create: this.createChat.bind(this) as ChatEngine["createChat"] } };
    this.completions = { create: this.createCompletion.bind(this) as ChatEngine["createCompletion"] };
  }

  /** The API over an LlmInference already made (its options are the requests' defaults). */
  static fromLlmInference(llm: LlmInference): ChatEngine {
    if (!(llm instanceof LlmInference)) throw new TypeError("ChatEngine.fromLlmInference needs an LlmInference");
    return new ChatEngine(llm);
  }

  /** The model's name in the answers: its file's name. */
  get modelName(): string {
    const source = this.llm.modelInfo?.source ?? "";
    return source.split(/[?#]/)[0].split("/").pop() || source;
  }

  /** The first answer of the last request (WebLLM's getMessage). */
  async getMessage(): Promise<string> {
    return this.lastMessage;
  }

  /** Free the model (WebLLM's unload). */
  async unload(): Promise<void> {
    this.llm.close();
  }

  createChat(request: ChatCompletionRequest & { stream?: false | null }, options?: RequestOptions): Promise<ChatCompletion>;
  createChat(request: ChatCompletionRequest & { stream: true }, options?: RequestOptions): Promise<AsyncIterable<ChatCompletionChunk>>;
  createChat(request: ChatCompletionRequest, options?: RequestOptions): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>>;
  async createChat(request: ChatCompletionRequest, options: RequestOptions = {}): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>> {
    const plan = this.plan(request as unknown as Record<string, unknown>, "chat");
    return this.start(plan, options.signal) as Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>>;
  }

  createCompletion(request: CompletionRequest & { stream?: false | null }, options?: RequestOptions): Promise<Completion>;
  createCompletion(request: CompletionRequest & { stream: true }, options?: RequestOptions): Promise<AsyncIterable<Completion>>;
  createCompletion(request: CompletionRequest, options?: RequestOptions): Promise<Completion | AsyncIterable<Completion>>;
  async createCompletion(request: CompletionRequest, options: RequestOptions = {}): Promise<Completion | AsyncIterable<Completion>> {
    const plan = this.plan(request as unknown as Record<string, unknown>, "completion");
    return this.start(plan, options.signal) as Promise<Completion | AsyncIterable<Completion>>;
  }

  // -- checking a request ------------------------------------------------------------------------

  private plan(body: Record<string, unknown>, kind: "chat" | "completion"): Plan {
    if (typeof body !== "object" || body === null || Array.isArray(body)) throw bad(null, `the request must be an object, got ${show(body)}`);
    const known = kind === "chat" ? CHAT_FIELDS : COMPLETION_FIELDS;
    for (const name of Object.keys(body)) {
      if (!known.has(name) && body[name] !== undefined) throw bad(name, `Unrecognized request argument supplied: ${name}`, "unknown_parameter");
    }
    if (body.model !== undefined && body.model !== null && typeof body.model !== "string") throw bad("model", `'model' must be a string, got ${show(body.model)}`);
    let prompt: string | number[];
    let maxNewTokens: number | undefined;
    let maxField = "max_tokens";
    let logprobs: boolean;
    let topLogprobs: number;
    let toolSchema: Record<string, unknown> | null = null;
    let toolFormat: ToolCallFormat | null = null;
    if (kind === "chat") {
      const tools = checkTools(body);
      toolSchema = tools.toolSchema;
      prompt = this.chatPrompt(body.messages, tools.tools);
      if (tools.tools && !toolSchema) toolFormat = detectToolCallFormat(chatTemplateOf(this.llm));
      maxNewTokens = int(body, "max_completion_tokens", 1);
      if (maxNewTokens !== undefined) maxField = "max_completion_tokens";
      else maxNewTokens = int(body, "max_tokens", 1);
      logprobs = bool(body, "logprobs");
      topLogprobs = int(body, "top_logprobs", 0, MAX_TOP_LOGPROBS) ?? 0;
      if (topLogprobs && !logprobs) throw bad("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    } else {
      prompt = this.completionPrompt(body.prompt);
      maxNewTokens = int(body, "max_tokens", 1) ?? 16; // OpenAI's default for completions
      const k = int(body, "logprobs", 0, MAX_TOP_LOGPROBS);
      logprobs = k !== undefined;
      topLogprobs = k ?? 0;
      if (bool(body, "echo")) throw bad("echo", "'echo' is not supported");
      if (body.suffix !== undefined && body.suffix !== null) throw bad("suffix", "'suffix' is not supported: there is no fill-in-the-middle mode here");
    }
    const n = int(body, "n", 1, MAX_N) ?? 1;
    if (kind === "completion" && (int(body, "best_of", 1, MAX_N) ?? n) !== n) throw bad("best_of", "'best_of' must equal n: answers are not ranked here");
    const stream = bool(body, "stream");
    let includeUsage = false;
    const so = body.stream_options;
    if (so !== undefined && so !== null) {
      if (!stream) throw bad("stream_options", "'stream_options' is only allowed when stream is true");
      if (typeof so !== "object" || Array.isArray(so) || Object.keys(so).some((k) => k !== "include_usage")) {
        throw bad("stream_options", `'stream_options' must be {"include_usage": boolean}, got ${show(so)}`);
      }
      includeUsage = bool(so as Record<string, unknown>, "include_usage");
    }
    const numbers: [string, keyof GenerateOptions][] = [
      ["temperature", "temperature"], ["top_p", "topP"], ["top_k", "topK"], ["min_p", "minP"], ["frequency_penalty", "frequencyPenalty"],
      ["presence_penalty", "presencePenalty"], ["repetition_penalty", "repetitionPenalty"], ["seed", "randomSeed"],
    ];
    const options: GenerateOptions = { n, maxNewTokens, logprobs, topLogprobs };
    for (const [field, name] of numbers) {
      const v = body[field];
      if (v === undefined || v === null) continue;
      if (typeof v !== "number" || !Number.isFinite(v)) throw bad(field, `'${field}' must be a number, got ${show(v)}`);
      (options as Record<string, unknown>)[name] = v;
    }
    if (body.logit_bias !== undefined && body.logit_bias !== null) options.logitBias = body.logit_bias as Record<string, number>;
    if (body.stop !== undefined) options.stop = body.stop as string | string[] | null;
    if (body.response_format !== undefined) options.responseFormat = body.response_format as ResponseFormat | null;
    if (toolSchema) { // a forced call: the answer is {"name", "arguments"} as the tool's schema says
      const format = body.response_format as { type?: unknown } | null | undefined;
      if (format !== undefined && format !== null && format.type !== "text") throw bad("response_format", "'response_format' cannot be combined with a tool_choice that forces a call");
      options.responseFormat = { type: "json_schema", json_schema: { name: "tool_call", schema: toolSchema, strict: true } } as ResponseFormat;
    }
    const created = Math.floor(Date.now() / 1000);
    const id = requestId(kind === "chat" ? "chatcmpl-" : "cmpl-");
    return { kind, prompt, options, stream, includeUsage, logprobs, topLogprobs, maxField, forcedCall: toolSchema !== null, toolFormat, id, created };
  }

  /** An error of generate()'s own checks with LlmInference's option names spelled as the request's fields. */
  private requestError(e: unknown, plan: Plan): unknown {
    if (!(e instanceof Error)) return e;
    const promptField = plan.kind === "chat" ? "messages" : "prompt";
    const field = (name: string) => (name === "maxNewTokens" ? plan.maxField : FIELD_OF[name]);
    const message = e.message.replace(CAMEL_NAMES, field).replace("context of maxTokens = ", "context of ");
    if (e instanceof SchemaError) return new ChatRequestError("response_format", message);
    if (e instanceof PromptTooLongError) {
      return new ChatRequestError(e.message.includes("maxNewTokens") ? plan.maxField : promptField, message, "context_length_exceeded");
    }
    const named = /'([A-Za-z]+)'/.exec(e.message)?.[1];
    if (named && FIELD_OF[named] && (e instanceof RangeError || e instanceof TypeError)) return new ChatRequestError(field(named), message);
    if (/^the prompt /.test(e.message)) return new ChatRequestError(promptField, message);
    return e;
  }

  private chatPrompt(messages: unknown, tools: unknown[] | null): string {
    const turns = checkMessages(messages);
    const template = chatTemplateOf(this.llm);
    if (!template) {
      throw bad("messages", `the model ${this.modelName} has no chat template (GGUF tokenizer.chat_template): use completions.create with a prompt in its format`, "no_chat_template");
    }
    const chat = new LlmChat(this.llm, { template });
    chat.messages.push(...turns);
    try {
      return chat.prompt(tools);
    } catch (e) {
      throw bad("messages", e instanceof Error ? e.message : String(e));
    }
  }

  private completionPrompt(prompt: unknown): string | number[] {
    if (Array.isArray(prompt) && prompt.length === 1 && (typeof prompt[0] === "string" || Array.isArray(prompt[0]))) prompt = prompt[0];
    if (typeof prompt === "string") return prompt;
    if (Array.isArray(prompt) && prompt.length && prompt.every((t) => Number.isInteger(t))) return prompt as number[];
    throw bad("prompt", "'prompt' must be a string or a list of token ids (one prompt per request)");
  }

  // -- answers ---------------------------------------------------------------------------------

  /** Generate (generate() checks the rest of the request first, synchronously) and shape the answer. */
  private start(plan: Plan, signal?: AbortSignal): Promise<unknown> {
    if (signal?.aborted) return Promise.reject(abortError());
    const envelope = (chunk: boolean) => ({
      id: plan.id,
      object: plan.kind === "chat" ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion",
      created: plan.created,
      model: this.modelName,
      system_fingerprint: null,
    });
    const generate = (options: GenerateOptions) => {
      let answers: Promise<GenerationResult[]>;
      try {
        answers = this.llm.generate(plan.prompt, { ...plan.options, ...options });
      } catch (e) {
        throw this.requestError(e, plan);
      }
      return answers.then((answers) => {
        if (options.signal?.aborted || answers.some((a) => a.finishReason === "cancelled")) throw abortError();
        this.lastMessage = answers[0]?.text ?? "";
        return answers;
      });
    };
    if (!plan.stream) {
      return generate({ signal }).then((answers) => ({ ...envelope(false), choices: answers.map((a, i) => this.choice(plan, i, a)), usage: usage(answers) }));
    }
    // the stream's own signal: the caller's abort, or a loop left early, cancels the generation
    const controller = new AbortController();
    const abort = () => controller.abort();
    signal?.addEventListener("abort", abort);
    const stream = new ChunkStream<Record<string, unknown>>(abort);
    const usageField = plan.includeUsage ? { usage: null } : {};
    const chunk = (choice: Record<string, unknown>) => ({ ...envelope(true), choices: [choice], ...usageField });
    const begun = new Set<number>();
    const begin = (i: number) => {
      if (plan.kind === "chat" && !begun.has(i)) stream.push(chunk({ index: i, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }));
      begun.add(i);
    };
    const held = new Map<number, ToolCallStream>();
    const onPiece = (i: number, piece: string) => {
      begin(i);
      if (plan.forcedCall) return; // the call's JSON comes whole, as tool_calls, when it is done
      if (plan.toolFormat) { // text where a call may begin waits for the answer's end
        if (!held.has(i)) held.set(i, new ToolCallStream(plan.toolFormat));
        piece = held.get(i)!.push(piece);
        if (!piece) return;
      }
      stream.push(chunk(plan.kind === "chat" ? { index: i, delta: { content: piece }, logprobs: null, finish_reason: null } : { index: i, text: piece, logprobs: null, finish_reason: null }));
    };
    let answers: Promise<GenerationResult[]>;
    try {
      answers = generate({ signal: controller.signal, onPiece });
    } catch (e) {
      signal?.removeEventListener("abort", abort);
      return Promise.reject(e);
    }
    stream.follow(
      answers
        .then((answers) => {
          answers.forEach((a, i) => {
            begin(i);
            const logprobs = this.logprobs(plan, a);
            let finish: FinishReason = a.finishReason as FinishReason;
            const delta = (d: Record<string, unknown>) => stream.push(chunk({ index: i, delta: d, logprobs: null, finish_reason: null }));
            if (plan.forcedCall) {
              const calls = this.forcedCall(a.text);
              delta(calls ? { tool_calls: [{ index: 0, ...calls[0] }] } : { content: a.text });
              if (calls) finish = "tool_calls";
            } else if (plan.toolFormat) {
              const end = (held.get(i) ?? new ToolCallStream(plan.toolFormat)).finish();
              if (end.content && (end.content.trim() || !end.toolCalls.length)) delta({ content: end.content });
              end.toolCalls.forEach((call, k) => delta({ tool_calls: [{ index: k, ...call }] }));
              if (end.toolCalls.length) finish = "tool_calls";
            }
            stream.push(chunk(plan.kind === "chat" ? { index: i, delta: {}, logprobs, finish_reason: finish } : { index: i, text: "", logprobs, finish_reason: finish }));
          });
          if (plan.includeUsage) stream.push({ ...envelope(true), choices: [], usage: usage(answers) });
        })
        .finally(() => signal?.removeEventListener("abort", abort)),
    );
    return Promise.resolve(stream);
  }

  /** A forced call's answer as OpenAI's tool_calls (null when max_tokens cut the JSON short). */
  private forcedCall(text: string): ToolCall[] | null {
    try {
      const call = JSON.parse(text);
      return openaiToolCalls(null, [{ name: call.name, arguments: JSON.stringify(call.arguments) }]);
    } catch {
      return null;
    }
  }

  private choice(plan: Plan, i: number, a: GenerationResult): Record<string, unknown> {
    const logprobs = this.logprobs(plan, a);
    if (plan.kind === "chat") {
      const { content, toolCalls } = plan.forcedCall ? { content: null, toolCalls: this.forcedCall(a.text) ?? [] } : parseToolCalls(plan.toolFormat, a.text);
      if (toolCalls.length) return { index: i, message: { role: "assistant", content, tool_calls: toolCalls, refusal: null }, logprobs, finish_reason: "tool_calls" };
      return { index: i, message: { role: "assistant", content: a.text, refusal: null }, logprobs, finish_reason: a.finishReason };
    }
    return { index: i, text: a.text, logprobs, finish_reason: a.finishReason };
  }

  /** An answer's logprobs in OpenAI's shape: chat's content list, or completions' legacy lists. */
  private logprobs(plan: Plan, a: GenerationResult): ChatCompletion["choices"][number]["logprobs"] | LegacyLogprobs | null {
    if (!plan.logprobs || !a.logprobs) return null;
    const tok = this.llm.modelTokenizer!;
    const textBytes = new TextEncoder().encode(a.text).length;
    const kept = [];
    let start = 0;
    for (const lp of a.logprobs) {
      if (a.stop !== undefined && start >= textBytes) break; // tokens of the stop string, cut from the text
      kept.push(lp);
      start += tok.tokenBytes(lp.token).length;
    }
    const text = (id: number) => new TextDecoder().decode(tok.tokenBytes(id));
    if (plan.kind === "chat") {
      const entry = (id: number, logprob: number) => ({ token: text(id), logprob, bytes: Array.from(tok.tokenBytes(id)) });
      const content = kept.map((lp) => ({ ...entry(lp.token, lp.logprob), top_logprobs: lp.top.slice(0, plan.topLogprobs).map(([id, v]) => entry(id, v)) }));
      return { content, refusal: null };
    }
    const decoder = new TextDecoder();
    const out: LegacyLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
    const chars = (t: string) => [...t].length; // code points, as Python's len
    let offset = chars(typeof plan.prompt === "string" ? plan.prompt : tok.decode(plan.prompt));
    for (const lp of kept) {
      out.tokens.push(text(lp.token));
      out.token_logprobs.push(lp.logprob);
      out.top_logprobs.push(Object.fromEntries(lp.top.slice(0, plan.topLogprobs).map(([id, v]) => [text(id), v])));
      out.text_offset.push(offset);
      offset += chars(decoder.decode(tok.tokenBytes(lp.token), { stream: true }));
    }
    return out;
  }
}

function usage(answers: GenerationResult[]): CompletionUsage {
  const prompt = answers[0]?.promptTokens ?? 0;
  const completion = answers.reduce((n, a) => n + a.tokens.length, 0);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/** Load `modelUrl` (a GGUF file) and serve OpenAI's API over it (WebLLM's CreateMLCEngine). `options`:
 * LlmInference's (maxTokens is the context, shared by the prompt and the n answers; topK,
 * temperature, randomSeed ... are the requests' defaults; useWorker, cacheModel, onLoadProgress ...). */
export async function createChatEngine(modelUrl: string | URL, options: Omit<LlmInferenceOptions, "baseOptions"> & { baseOptions?: LlmInferenceOptions["baseOptions"] } = {}): Promise<ChatEngine> {
  if (typeof modelUrl !== "string" && !(modelUrl instanceof URL)) throw new TypeError(`createChatEngine needs the model's URL, got ${show(modelUrl)}`);
  const llm = await LlmInference.createFromOptions(await FilesetResolver.forGenAiTasks(), { ...options, baseOptions: { ...options.baseOptions, modelAssetPath: String(modelUrl) } });
  return ChatEngine.fromLlmInference(llm);
}
