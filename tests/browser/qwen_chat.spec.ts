// Qwen's chat templates in the browser (formatChat and LlmChat through the built bundle, rendered by
// @huggingface/jinja) against transformers' own renderer: Qwen2.5's template as the real
// Qwen2.5-Coder GGUF stores it, Qwen3's, Phi-3.5-mini's (tests/data/phi3/) and SmolLM3's (tests/data/smollm3/), on every case of tests/py/qwen_chat.py (system,
// multi-turn, reasoning, tools, a tool call and its answer); then LlmChat on a tiny Qwen3 whose
// GGUF carries Qwen3's template: its prompt is the one Python's chat helper renders from the same
// file, and its greedy answer is Python's LlmInference's. Fixtures: tests/browser/qwen_chat_fixtures.py.

import { readFileSync } from "node:fs";
import path from "node:path";
import { expect, test } from "@playwright/test";
import { inPage, runFixtures } from "./helpers";
import { DATA_DIR, DATA_URL } from "./paths";

const OUT = path.join(DATA_DIR, "qwen_chat");
let expected: any;

test.beforeAll(() => {
  test.setTimeout(600_000); // the first run renders every case in Python and runs the tiny model
  runFixtures("qwen_chat_fixtures.py", [OUT]);
  expected = JSON.parse(readFileSync(path.join(OUT, "expected.json"), "utf8"));
});

test.beforeEach(async ({ page }) => {
  page.on("pageerror", (e) => console.log(`page error: ${e.message}`));
  await page.goto("/");
});

test("Qwen2.5's, Qwen3's, Phi-3.5-mini's and SmolLM3's templates render every case as transformers renders it", async ({ page }) => {
  const got = await inPage(
    page,
    async (w, { templates, cases }) => {
      const out: Record<string, string[]> = {};
      for (const [name, template] of Object.entries(templates as Record<string, string>)) {
        out[name] = cases.map((c: any) => w.formatChat(template, c.messages, { tools: c.tools, addGenerationPrompt: c.add_generation_prompt }));
      }
      return out;
    },
    { templates: expected.templates, cases: expected.cases },
  );
  expect(Object.keys(got).sort()).toEqual(["phi3.5", "qwen2.5", "qwen3", "smollm3"]);
  for (const name of Object.keys(got)) {
    expected.cases.forEach((c: any, i: number) => expect(got[name][i], `${name}: ${c.name}`).toBe(expected.rendered[name][i]));
  }
});

test("LlmChat on a Qwen3 GGUF uses the file's own template: Python's prompt and Python's greedy answer", async ({ page }) => {
  test.setTimeout(180_000);
  const chat = expected.chat;
  const got = await inPage(
    page,
    async (w, { model, chat }) => {
      const opts = { baseOptions: { modelAssetPath: model }, maxTokens: chat.options.max_tokens, topK: chat.options.top_k };
      const llm = await w.LlmInference.createFromOptions(await w.FilesetResolver.forGenAiTasks(), opts);
      const c = new w.LlmChat(llm, { systemPrompt: chat.conversation[0].content });
      c.messages.push(chat.conversation[1]);
      const prompt = c.prompt();
      c.messages.pop();
      const answer = await c.send(chat.conversation[1].content);
      llm.close();
      return { prompt, answer, messages: c.messages };
    },
    { model: `${DATA_URL}/qwen_chat/${chat.model}`, chat },
  );
  expect(got.prompt).toBe(chat.prompt);
  expect(got.prompt).toContain("<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n");
  expect(got.answer).toBe(chat.answer);
  expect(got.messages).toEqual([...chat.conversation, { role: "assistant", content: chat.answer }]);
});
