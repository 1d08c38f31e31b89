// Chat on top of LlmInference (a wgllm extra): messages formatted with the model's own
// `tokenizer.chat_template` (rendered by @huggingface/jinja), and follow-up turns that reuse the
// KV cache of the history already run — LlmInference keeps the cache of the previous call and
// runs only the tokens after the shared prefix, so turn n costs its new tokens, not the history.

import { Template } from "@huggingface/jinja";
import type { LlmInference, LoraModel, ProgressListener } from "./llm_inference";

export interface ChatMessage {
  role: string; // "system" | "user" | "assistant" (| "tool") as the template knows them
  content: string;
  /** An assistant's calls, as the template expects them (OpenAI's shape, arguments usually an object). */
  tool_calls?: unknown[];
  /** A tool's answer: the id of the call it answers. */
  tool_call_id?: string;
  name?: string;
}

export interface FormatOptions {
  /** End with the template's opening of the assistant's turn (default true). */
  addGenerationPrompt?: boolean;
  bosToken?: string;
  eosToken?: string;
  /** The tools the template may describe (OpenAI's [{type: "function", function: {...}}]); none: null, as transformers passes. */
  tools?: unknown[] | null;
}

/** `messages` rendered with `template` (a Hugging Face chat template). */
export function formatChat(template: string, messages: ChatMessage[], options: FormatOptions = {}): string {
  for (const [i, m] of messages.entries()) {
    if (typeof m?.role !== "string" || typeof m?.content !== "string") {
      throw new TypeError(`chat message ${i} must be {role: string, content: string}, got ${JSON.stringify(m)}`);
    }
  }
  let compiled: Template;
  try {
    compiled = new Template(template);
  } catch (e) {
    throw new Error(`the chat template does not parse: ${e instanceof Error ? e.message : String(e)}`);
  }
  return compiled.render({
    messages,
    tools: options.tools ?? null,
    add_generation_prompt: options.addGenerationPrompt ?? true,
    bos_token: options.bosToken ?? "",
    eos_token: options.eosToken ?? "",
  });
}

/** The chat template stored in the model, if any. */
export function chatTemplateOf(llm: LlmInference): string | undefined {
  const t = llm.modelMetadata("tokenizer.chat_template");
  return typeof t === "string" ? t : undefined;
}

/** A conversation with one model: send() adds the user's turn and the model's answer. */
export class LlmChat {
  readonly messages: ChatMessage[] = [];
  /** The adapter the next answers use (undefined: the base model). */
  lora?: LoraModel;
  private readonly template: string;

  constructor(
    private readonly llm: LlmInference,
    options: { systemPrompt?: string; template?: string } = {},
  ) {
    const template = options.template ?? chatTemplateOf(llm);
    if (!template) {
      throw new Error("this model has no tokenizer.chat_template in its GGUF metadata: pass options.template to LlmChat");
    }
    this.template = template;
    if (options.systemPrompt) this.messages.push({ role: "system", content: options.systemPrompt });
  }

  /** The prompt text for the history plus the opening of the assistant's turn (with `tools` described, if given). */
  prompt(tools?: unknown[] | null): string {
    const tok = this.llm.modelTokenizer;
    const text = (id: number | undefined) => (tok && id !== undefined ? new TextDecoder().decode(tok.tokenBytes(id)) : "");
    let out = formatChat(this.template, this.messages, { bosToken: text(tok?.bosId), eosToken: text(tok?.eosId), tools });
    // The tokenizer adds BOS itself when the model asks for it: keep one, as llama.cpp does.
    const bos = text(tok?.bosId);
    if (tok?.addBos && bos && out.startsWith(bos)) out = out.slice(bos.length);
    return out;
  }

  /** Add `content` as the user's turn and generate the answer (streamed to `listener`). */
  async send(content: string, listener?: ProgressListener): Promise<string> {
    this.messages.push({ role: "user", content });
    let answer: string;
    try {
      answer = this.lora
        ? await this.llm.generateResponse(this.prompt(), this.lora, listener)
        : await this.llm.generateResponse(this.prompt(), listener);
    } catch (e) {
      this.messages.pop();
      throw e;
    }
    this.messages.push({ role: "assistant", content: answer });
    return answer;
  }

  /** Forget the conversation (the system prompt stays). */
  reset(): void {
    this.messages.splice(this.messages[0]?.role === "system" ? 1 : 0);
  }
}
