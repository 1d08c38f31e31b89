// A chat request's messages and tools, checked, as the chat template gets them (openai.ts's part that
// reads OpenAI's chat fields; the port of py/wgllm/openai_messages.py, whose docstring has the rules:
// text parts joined, an assistant's tool_calls and a tool's answer passed on as they are, each call's
// arguments (JSON text in OpenAI's API) turned into the object they hold, as templates write them
// with tojson). A bad field is a ChatRequestError naming it.

import type { ChatMessage } from "./chat";
import { WgllmError } from "./errors";

/** A request refused before it ran: `param` names the field (OpenAI's error's param). */
export class ChatRequestError extends WgllmError {
  constructor(readonly param: string | null, message: string, readonly code: string | null = null) {
    super(message);
  }
}

export const show = (v: unknown) => (JSON.stringify(v) ?? String(v)).slice(0, 200);
export const bad = (param: string | null, message: string, code: string | null = null) => new ChatRequestError(param, message, code);

const isObject = (v: unknown): v is Record<string, any> => typeof v === "object" && v !== null && !Array.isArray(v);

/** A call with its arguments (JSON text) as the object they hold (text that is not a JSON object stays). */
function parsedArguments(call: unknown): unknown {
  if (!isObject(call) || !isObject(call.function) || typeof call.function.arguments !== "string") return call;
  try {
    const value = JSON.parse(call.function.arguments);
    return isObject(value) ? { ...call, function: { ...call.function, arguments: value } } : call;
  } catch {
    return call;
  }
}

/** The request's messages, checked, as the template gets them (content null becomes ""). */
export function checkMessages(messages: unknown): ChatMessage[] {
  if (!Array.isArray(messages) || !messages.length) throw bad("messages", "'messages' must be a non-empty list of {role, content} objects");
  return messages.map((m, i) => {
    if (!isObject(m) || typeof m.role !== "string") throw bad(`messages[${i}]`, `messages[${i}] must be an object with a string role, got ${show(m)}`);
    let content = m.content;
    if (Array.isArray(content)) {
      content.forEach((part, j) => {
        if (part?.type !== "text" || typeof part?.text !== "string") {
          throw bad(`messages[${i}].content[${j}]`, `messages[${i}].content[${j}] must be a text part {type: "text", text}: this model reads text only`);
        }
      });
      content = content.map((part: { text: string }) => part.text).join("");
    } else if (content === null || content === undefined) content = "";
    else if (typeof content !== "string") throw bad(`messages[${i}].content`, `messages[${i}].content must be a string or a list of text parts, got ${show(content)}`);
    const turn: ChatMessage = { ...m, role: m.role, content };
    if (m.tool_calls !== undefined && m.tool_calls !== null) {
      if (m.role !== "assistant" || !Array.isArray(m.tool_calls)) throw bad(`messages[${i}].tool_calls`, `messages[${i}].tool_calls must be a list, in an assistant's message`);
      m.tool_calls.forEach((c: unknown, j: number) => {
        const f = isObject(c) && (c.type ?? "function") === "function" ? c.function : undefined;
        if (!isObject(f) || typeof f.name !== "string" || typeof f.arguments !== "string") {
          throw bad(`messages[${i}].tool_calls[${j}]`, `messages[${i}].tool_calls[${j}] must be {id, type: "function", function: {name, arguments: JSON text}}, got ${show(c)}`);
        }
      });
      turn.tool_calls = m.tool_calls.map(parsedArguments);
    }
    if (m.role === "tool" && typeof m.tool_call_id !== "string") {
      throw bad(`messages[${i}].tool_call_id`, `messages[${i}]: a tool's message needs tool_call_id, the id of the call it answers`);
    }
    return turn;
  });
}

/** The tools the template sees, and the JSON schema a forced call follows (tool_choice "required": any
 * one tool's {"name", "arguments"}; a named function: that one's; otherwise null). "none": no tools. */
export function checkTools(body: Record<string, unknown>): { tools: unknown[] | null; toolSchema: Record<string, unknown> | null } {
  const tools = body.tools, choice = body.tool_choice;
  if (tools === undefined || tools === null) {
    if (choice !== undefined && choice !== null) throw bad("tool_choice", "'tool_choice' is only allowed when tools are given");
    return { tools: null, toolSchema: null };
  }
  if (!Array.isArray(tools) || !tools.length) throw bad("tools", "'tools' must be a non-empty list of {type: 'function', function: {name, description, parameters}}");
  const calls = new Map<string, Record<string, unknown>>();
  tools.forEach((t, i) => {
    const f = isObject(t) && t.type === "function" ? t.function : undefined;
    if (!isObject(f) || typeof f.name !== "string" || !f.name) throw bad(`tools[${i}]`, `tools[${i}] must be {type: 'function', function: {name, description, parameters}}`);
    const parameters = f.parameters ?? { type: "object", properties: {} };
    if (!isObject(parameters)) throw bad(`tools[${i}].function.parameters`, `tools[${i}].function.parameters must be a JSON schema object`);
    calls.set(f.name, { type: "object", properties: { name: { const: f.name }, arguments: parameters }, required: ["name", "arguments"], additionalProperties: false });
  });
  if (choice === undefined || choice === null || choice === "auto") return { tools, toolSchema: null };
  if (choice === "none") return { tools: null, toolSchema: null }; // the model is not to call tools: the template does not offer them
  if (choice === "required") {
    const all = [...calls.values()];
    return { tools, toolSchema: all.length === 1 ? all[0] : { anyOf: all } };
  }
  const name = isObject(choice) && choice.type === "function" && isObject(choice.function) ? choice.function.name : undefined;
  if (typeof name !== "string") throw bad("tool_choice", `'tool_choice' must be "none", "auto", "required" or {type: "function", function: {name}}, got ${show(choice)}`);
  const schema = calls.get(name);
  if (!schema) throw bad("tool_choice", `'tool_choice' names the function ${show(name)}, which is not among the tools (${[...calls.keys()].join(", ")})`);
  return { tools, toolSchema: schema };
}
