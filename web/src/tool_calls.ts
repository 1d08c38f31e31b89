// Tool calls written in the model's own format, parsed out of its answer (OpenAI's tool_choice
// "auto"): the port of py/wgllm/tool_calls.py, whose docstring says which formats there are, how
// one is picked from the chat template's text (llama.cpp's markers) and what falls back to plain
// content. The two answer tests/data/tool_call_vectors.json alike (tests/py/test_tool_calls.py runs
// both). Arguments come back as compact JSON (JSON.stringify); a number may be spelled differently
// from Python's json.dumps (-3e2: -300 here, -300.0 there), the same value.

export type ToolCallFormat = "hermes" | "llama3" | "mistral";

/** A call as the model wrote it: its name, its arguments as JSON text, the id it gave (Mistral). */
export interface ParsedCall {
  name: string;
  arguments: string;
  id?: string;
}

/** OpenAI's message.tool_calls entry. */
export interface ToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

const MARKERS: Record<string, string> = { hermes: "<tool_call>", mistral: "[TOOL_CALLS]" };
const HERMES_CLOSE = "</tool_call>";
const LLAMA_TAG = "<|python_tag|>";
const WHITE = " \t\r\n";

/** The tool-call format `template` teaches its model, or null (its answers are never parsed). */
export function detectToolCallFormat(template: string | null | undefined): ToolCallFormat | null {
  if (!template) return null;
  if (template.includes("<tool_call>")) return "hermes";
  if (template.includes("<|start_header_id|>ipython<|end_header_id|>")) return "llama3";
  if (template.includes("[TOOL_CALLS]")) return "mistral";
  return null;
}

/** The JSON value at text[i..] (after white space) and the index after it; throws if there is none. */
function jsonAt(text: string, i: number): [unknown, number] {
  while (i < text.length && WHITE.includes(text[i])) i++;
  let end = i;
  const c = text[i];
  if (c === "{" || c === "[" || c === '"') {
    let depth = 0;
    let inString = false;
    for (; end < text.length; end++) {
      const ch = text[end];
      if (inString) {
        if (ch === "\\") end++;
        else if (ch === '"') {
          inString = false;
          if (depth === 0) break;
        }
      } else if (ch === '"') inString = true;
      else if (ch === "{" || ch === "[") depth++;
      else if (ch === "}" || ch === "]") {
        if (--depth === 0) break;
      }
    }
    if (end >= text.length) throw new SyntaxError("unterminated JSON value");
    end++;
  } else {
    const m = /^(?:-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)/.exec(text.slice(i));
    if (!m) throw new SyntaxError("no JSON value");
    end = i + m[0].length;
  }
  return [JSON.parse(text.slice(i, end)), end];
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

function argumentsText(value: unknown): string | null {
  if (typeof value === "string") {
    try {
      value = JSON.parse(value);
    } catch {
      return null;
    }
  }
  return isObject(value) ? JSON.stringify(value) : null;
}

function callOf(obj: unknown, argsKey: string): ParsedCall | null {
  if (!isObject(obj) || typeof obj.name !== "string" || !obj.name || !(argsKey in obj)) return null;
  const args = argumentsText(obj[argsKey]);
  if (args === null) return null;
  const call: ParsedCall = { name: obj.name, arguments: args };
  if (typeof obj.id === "string") call.id = obj.id;
  return call;
}

type Split = [string, ParsedCall[]] | null;

function parseHermes(text: string): Split {
  const content: string[] = [];
  const calls: ParsedCall[] = [];
  const marker = MARKERS.hermes;
  let i = 0;
  for (let start = text.indexOf(marker, i); start >= 0; start = text.indexOf(marker, i)) {
    content.push(text.slice(i, start));
    let obj: unknown, end: number;
    try {
      [obj, end] = jsonAt(text, start + marker.length);
    } catch {
      return null;
    }
    const call = callOf(obj, "arguments");
    if (!call) return null;
    calls.push(call);
    const rest = text.slice(end);
    const stripped = rest.replace(/^[ \t\r\n]+/, "");
    if (stripped.startsWith(HERMES_CLOSE)) i = end + rest.length - stripped.length + HERMES_CLOSE.length;
    else if (!stripped) i = text.length; // the answer ended before the closing tag
    else return null;
  }
  content.push(text.slice(i));
  return [content.join(""), calls];
}

function parseLlama3(text: string): Split {
  let i = text.length - text.replace(/^[ \t\r\n]+/, "").length;
  if (text.startsWith(LLAMA_TAG, i)) i += LLAMA_TAG.length;
  const calls: ParsedCall[] = [];
  for (;;) {
    let obj: unknown, end: number;
    try {
      [obj, end] = jsonAt(text, i);
    } catch {
      break;
    }
    const call = callOf(obj, isObject(obj) && "parameters" in obj ? "parameters" : "arguments");
    if (!call || ((obj as Record<string, unknown>).type ?? "function") !== "function") return null;
    calls.push(call);
    i = end;
    const m = /^[ \t\r\n]*;/.exec(text.slice(i));
    if (m) i += m[0].length;
  }
  return calls.length ? [text.slice(i), calls] : null;
}

function parseMistral(text: string): Split {
  const start = text.indexOf(MARKERS.mistral);
  if (start < 0) return null;
  let objs: unknown, end: number;
  try {
    [objs, end] = jsonAt(text, start + MARKERS.mistral.length);
  } catch {
    return null;
  }
  if (isObject(objs)) objs = [objs];
  if (!Array.isArray(objs) || !objs.length) return null;
  const calls = objs.map((o) => callOf(o, "arguments"));
  if (calls.some((c) => c === null)) return null;
  return [text.slice(0, start) + text.slice(end), calls as ParsedCall[]];
}

const PARSERS: Record<ToolCallFormat, (text: string) => Split> = { hermes: parseHermes, llama3: parseLlama3, mistral: parseMistral };

/** [the content outside the calls, as written; the calls] when `text` holds calls in `format` that all parse, else null. */
export function splitToolCalls(format: ToolCallFormat | null, text: string): Split {
  if (format === null) return null;
  const split = PARSERS[format](text);
  return split && split[1].length ? split : null;
}

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/** An id for a parsed call: Mistral's templates want 9 letters or digits (the model's own if it wrote one), the rest call_ + 24 hex digits. */
export function toolCallId(format: ToolCallFormat | null, modelId?: string): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  if (format === "mistral") {
    if (typeof modelId === "string" && /^[A-Za-z0-9]{9}$/.test(modelId)) return modelId;
    return Array.from(bytes.slice(0, 9), (b) => ALNUM[b % ALNUM.length]).join("");
  }
  return "call_" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function openaiToolCalls(format: ToolCallFormat | null, calls: ParsedCall[]): ToolCall[] {
  return calls.map((c) => ({ id: toolCallId(format, c.id), type: "function", function: { name: c.name, arguments: c.arguments } }));
}

/** OpenAI's content and tool_calls for a whole answer: the text outside the calls, trimmed (null when
 * nothing is left), and the calls ([] when the answer holds none that parse: then content is the text). */
export function parseToolCalls(format: ToolCallFormat | null, text: string): { content: string | null; toolCalls: ToolCall[] } {
  const split = splitToolCalls(format, text);
  if (split === null) return { content: text, toolCalls: [] };
  return { content: split[0].trim() || null, toolCalls: openaiToolCalls(format, split[1]) };
}

/** Streamed text with the part where a call may begin held back: push(piece) gives the text to send
 * now; finish() gives the held text that is content and the calls, once the answer is whole. */
export class ToolCallStream {
  private text = "";
  private sent = 0;
  private released: boolean;

  constructor(readonly format: ToolCallFormat | null) {
    this.released = format !== "llama3"; // llama3: a call can only start the answer
  }

  private holdFrom(): number {
    const text = this.text;
    if (this.format === null) return text.length;
    if (this.format === "llama3") {
      if (this.released) return text.length;
      const head = text.replace(/^[ \t\r\n]+/, "");
      if (!head || head.startsWith("{") || head.startsWith(LLAMA_TAG) || LLAMA_TAG.startsWith(head)) return 0;
      this.released = true;
      return text.length;
    }
    const marker = MARKERS[this.format];
    const at = text.indexOf(marker, this.sent);
    if (at >= 0) return at;
    for (let k = Math.min(marker.length - 1, text.length - this.sent); k > 0; k--) {
      if (text.endsWith(marker.slice(0, k))) return text.length - k; // a marker's beginning at the end
    }
    return text.length;
  }

  push(piece: string): string {
    this.text += piece;
    const hold = Math.max(this.holdFrom(), this.sent);
    const out = this.text.slice(this.sent, hold);
    this.sent = hold;
    return out;
  }

  finish(): { content: string; toolCalls: ToolCall[] } {
    const held = this.text.slice(this.sent);
    this.sent = this.text.length;
    const split = splitToolCalls(this.format, held);
    if (split === null) return { content: held, toolCalls: [] };
    return { content: split[0], toolCalls: openaiToolCalls(this.format, split[1]) };
  }
}
