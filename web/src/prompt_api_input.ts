// The Prompt API's input side (prompt_api.ts): its types, the spec's "validate and canonicalize a
// prompt" and option checks, the exceptions it throws, and the schema guidance a responseConstraint
// adds to the prompt.

import type { ChatMessage } from "./chat";
import { MAX_TOP_K } from "./engine";

export type Availability = "unavailable" | "downloadable" | "downloading" | "available";
export type LanguageModelSamplingMode = "most-predictable" | "predictable" | "balanced" | "creative" | "most-creative";
export type Role = "system" | "user" | "assistant";
export type LanguageModelMessageContent = { type: string; value: unknown };
export type LanguageModelMessage = { role: Role; content: string | LanguageModelMessageContent[]; prefix?: boolean };
export type LanguageModelPrompt = string | LanguageModelMessage[];

export interface LanguageModelExpected {
  type: string;
  languages?: string[];
}

export interface LanguageModelCreateCoreOptions {
  topK?: number;
  temperature?: number;
  samplingMode?: LanguageModelSamplingMode;
  expectedInputs?: LanguageModelExpected[];
  expectedOutputs?: LanguageModelExpected[];
  tools?: unknown[];
}

export interface LanguageModelCreateOptions extends LanguageModelCreateCoreOptions {
  signal?: AbortSignal;
  monitor?: (monitor: EventTarget) => void;
  initialPrompts?: LanguageModelMessage[];
}

export interface LanguageModelPromptOptions {
  responseConstraint?: object;
  omitResponseConstraintInput?: boolean;
  signal?: AbortSignal;
}

export interface LanguageModelParams {
  defaultTopK: number;
  maxTopK: number;
  defaultTemperature: number;
  maxTemperature: number;
}

/** The explainer's temperatures run up to this (OpenAI's maximum). */
export const MAX_TEMPERATURE = 2;
/** samplingMode -> [topK, temperature] (the spec leaves the mapping to implementations). */
export const SAMPLING_MODES: Record<LanguageModelSamplingMode, [number, number] | null> = {
  "most-predictable": [1, 0],
  predictable: [10, 0.4],
  balanced: null, // the configuration's topK and temperature
  creative: [MAX_TOP_K, 1.0],
  "most-creative": [MAX_TOP_K, 1.5],
};
const MESSAGE_TYPES = ["text", "image", "audio", "tool-call", "tool-response"];
const ROLES = ["system", "user", "assistant"];
const CONSTRAINT_GUIDANCE = "\n\nRespond with JSON that matches this JSON schema: ";

export const dom = (name: string, message: string) => new DOMException(message, name);
export const show = (v: unknown) => (typeof v === "function" ? "a function" : (JSON.stringify(v) ?? String(v)).slice(0, 120));
export const abortReason = (signal: AbortSignal) => signal.reason ?? dom("AbortError", "the operation was aborted");

/** A QuotaExceededError (the browser's class where it has one) with `requested` and `quota`. */
export function quotaError(requested: number, quota: number, spare = 0): DOMException {
  const answer = spare ? `, ${spare} of them for the answer's first token` : "";
  const message = `the input needs ${requested} tokens of context${answer}; the context window (maxTokens) holds ${quota}`;
  const Quota = (globalThis as { QuotaExceededError?: new (m: string, o: object) => DOMException }).QuotaExceededError;
  if (typeof Quota === "function") {
    try {
      return new Quota(message, { requested, quota });
    } catch {
      /* an older shape of the class: fall back to a plain DOMException */
    }
  }
  return Object.assign(dom("QuotaExceededError", message), { requested, quota });
}

export interface Message extends ChatMessage {
  role: Role;
  prefix: boolean;
}

/** The spec's "validate and canonicalize a prompt": longhand messages, text parts joined. */
export function canonicalize(input: unknown, hasAppendedInput: boolean, where: string, allowPrefix: boolean): Message[] {
  if (typeof input === "string") return [{ role: "user", content: input, prefix: false }];
  if (!Array.isArray(input)) throw new TypeError(`${where} must be a string or a list of {role, content} messages, got ${show(input)}`);
  if (!input.length) return [{ role: "user", content: "", prefix: false }];
  return input.map((m, i) => {
    const at = `${where}[${i}]`;
    if (typeof m !== "object" || m === null) throw new TypeError(`${at} must be a {role, content} object, got ${show(m)}`);
    if (!ROLES.includes(m.role)) throw new TypeError(`${at}.role must be "system", "user" or "assistant", got ${show(m.role)}`);
    let content: string;
    if (typeof m.content === "string") content = m.content;
    else if (Array.isArray(m.content)) {
      content = m.content.map((part: LanguageModelMessageContent, j: number) => {
        if (!MESSAGE_TYPES.includes(part?.type)) throw new TypeError(`${at}.content[${j}].type must be one of ${MESSAGE_TYPES.join(", ")}, got ${show(part?.type)}`);
        if (part.type !== "text") throw dom("NotSupportedError", `${at}.content[${j}] is ${part.type}: this model reads text only`);
        if (typeof part.value !== "string") throw new TypeError(`${at}.content[${j}].value must be a string for type "text", got ${show(part.value)}`);
        return part.value;
      }).join("");
    } else throw new TypeError(`${at}.content must be a string or a list of {type, value} parts, got ${show(m.content)}`);
    const prefix = m.prefix === undefined ? false : !!m.prefix;
    if (prefix && !allowPrefix) throw dom("NotSupportedError", `${at}.prefix: a prefix message is only taken by prompt() and promptStreaming()`);
    if (prefix && (m.role !== "assistant" || i !== input.length - 1)) throw dom("SyntaxError", `${at}.prefix: only the last message, an assistant one, may be a prefix`);
    if (m.role === "system" && (hasAppendedInput || i > 0)) {
      throw new TypeError(`${at} is a system message: the system prompt must be the session's first message (initialPrompts[0], or the first message of the first prompt/append)`);
    }
    return { role: m.role as Role, content, prefix };
  });
}

/** expectedInputs / expectedOutputs checked: the unsupported types found (TypeError / RangeError for malformed ones). */
export function unsupportedTypes(options: LanguageModelCreateCoreOptions): string[] {
  const found: string[] = [];
  for (const key of ["expectedInputs", "expectedOutputs"] as const) {
    const list = options[key];
    if (list === undefined) continue;
    if (!Array.isArray(list)) throw new TypeError(`${key} must be a list of {type, languages} objects, got ${show(list)}`);
    list.forEach((e, i) => {
      if (!MESSAGE_TYPES.includes(e?.type)) throw new TypeError(`${key}[${i}].type must be one of ${MESSAGE_TYPES.join(", ")}, got ${show(e?.type)}`);
      if (e.languages !== undefined) {
        if (!Array.isArray(e.languages) || e.languages.some((l) => typeof l !== "string")) throw new TypeError(`${key}[${i}].languages must be a list of BCP 47 tags`);
        Intl.getCanonicalLocales(e.languages); // a RangeError names a malformed tag
      }
      if (e.type !== "text") found.push(`${key}[${i}].type "${e.type}"`);
    });
  }
  return found;
}

/** The schema's guidance added to the input's last user message (or as a user message of its own). */
export function withGuidance(messages: Message[], schema: string): Message[] {
  const out = [...messages];
  const end = out[out.length - 1]?.prefix ? out.length - 1 : out.length;
  if (out[end - 1]?.role === "user") out[end - 1] = { ...out[end - 1], content: out[end - 1].content + CONSTRAINT_GUIDANCE + schema };
  else out.splice(end, 0, { role: "user", content: CONSTRAINT_GUIDANCE.trimStart() + schema, prefix: false });
  return out;
}
