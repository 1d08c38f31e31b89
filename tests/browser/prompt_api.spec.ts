// The Prompt API's shape (web/src/prompt_api.ts: LanguageModel, installLanguageModel) against
// Python's LlmInference.generate and tokenizer on the same GGUF file (openai_fixtures.py's tiny
// Phi-2 with a ChatML template) for the same rendered conversations (prompt_api_fixtures.py): a page
// written in the Prompt API's documented style runs with only wgllm's installation added (monitor's
// progress from 0 to 1, prompt, promptStreaming's chunks adding up, the usage numbers); multi-turn,
// clone, append, a prefix and responseConstraint give Python's answers and counts; an overflow drops
// the oldest turn and fires its events, a prompt that cannot fit is a QuotaExceededError; aborts and
// destroy() end calls with AbortError / InvalidStateError (page and worker mode); bad options are
// refused with the spec's exception, naming the option.

import { readFileSync } from "node:fs";
import path from "node:path";
import { expect, test } from "@playwright/test";
import Ajv from "ajv";
import { inPage, runFixtures } from "./helpers";
import { DATA_DIR, DATA_URL } from "./paths";

const OUT = path.join(DATA_DIR, "prompt_api");
const EXPECTED_URL = `${DATA_URL}/prompt_api/expected.json`;
let expected: any;
let MODEL: string;

// The Prompt API's documented usage (its explainer's "Download progress", "N-shot prompting",
// "Tokenization, context window length limits" and streaming examples); wgllm's import and
// installLanguageModel(...) are the only additions. The prompts come from the fixture so that
// Python answers the same conversation.
const PROMPT_API_PAGE = `<!doctype html>
<meta charset="utf-8">
<title>Prompt API sample on wgllm</title>
<script type="module">
// added: wgllm provides LanguageModel where the browser has none, or one without a model
import { installLanguageModel } from "/web/dist/genai_bundle.mjs";
const query = new URLSearchParams(location.search);
const fixture = await (await fetch(query.get("expected"))).json();
await installLanguageModel({ modelUrl: query.get("model"), maxTokens: fixture.context, maxResponseTokens: fixture.max_response, forceF32: true });

const result = { progress: [] };
if (!("LanguageModel" in self)) {
  document.title = "no LanguageModel";
  throw new Error("The Prompt API is not supported in this browser.");
}
const availability = await LanguageModel.availability();
result.availability = availability;
if (availability === "unavailable") {
  document.title = "unavailable";
  throw new Error("No language model for us :(");
}

const session = await LanguageModel.create({
  monitor(m) {
    m.addEventListener("downloadprogress", (e) => {
      console.log(\`Downloaded \${e.loaded * 100}%\`);
      result.progress.push(e.loaded);
    });
  },
  initialPrompts: fixture.initial,
});
result.availabilityAfter = await LanguageModel.availability();
result.usage0 = session.inputUsage;
result.quota = session.inputQuota;

result.first = await session.prompt(fixture.q1);
result.usage1 = session.inputUsage;
result.measured = await session.measureInputUsage(fixture.q2);

const stream = session.promptStreaming(fixture.q2);
result.chunks = [];
for await (const chunk of stream) {
  result.chunks.push(chunk);
}
console.log(\`\${session.inputUsage} tokens used, out of \${session.inputQuota} tokens available.\`);
result.usage2 = session.inputUsage;
result.contextUsage = session.contextUsage;
result.contextWindow = session.contextWindow;
result.measured3 = await session.measureContextUsage(fixture.q3);
session.destroy();
window.result = result;
document.title = "done";
</script>
`;

test.beforeAll(() => {
  test.setTimeout(600_000);
  runFixtures("prompt_api_fixtures.py", [OUT]);
  expected = JSON.parse(readFileSync(path.join(OUT, "expected.json"), "utf8"));
  MODEL = `${DATA_URL}/${expected.model}`;
});

test.beforeEach(async ({ page }) => {
  page.on("pageerror", (e) => console.log(`page error: ${e.message}`));
  await page.goto("/");
});

const config = (fx: any, extra: object = {}) => ({ maxTokens: fx.context, maxResponseTokens: fx.max_response, forceF32: true, ...extra });

test("a page in the Prompt API's documented style runs with only wgllm's installation added", async ({ page }) => {
  test.setTimeout(180_000);
  await page.route("**/prompt_api_sample.html*", (route) => route.fulfill({ body: PROMPT_API_PAGE, contentType: "text/html; charset=utf-8" }));
  await page.goto(`/prompt_api_sample.html?model=${encodeURIComponent(MODEL)}&expected=${encodeURIComponent(EXPECTED_URL)}`);
  await expect(page).toHaveTitle("done", { timeout: 150_000 });
  const got = await page.evaluate(() => (window as any).result);
  const want = expected.page;
  expect(got.availability).toBe("downloadable");
  expect(got.availabilityAfter).toBe("available");
  const progress: number[] = got.progress;
  expect(progress[0]).toBe(0);
  expect(progress[progress.length - 1]).toBe(1);
  expect(progress.length, "progress between 0 and 1 while the model downloads").toBeGreaterThan(2);
  progress.slice(1).forEach((p, i) => expect(p, `event ${i + 1} grows`).toBeGreaterThan(progress[i]));
  expect(got.usage0).toBe(want.usage0);
  expect(got.quota).toBe(expected.context);
  expect(got.first).toBe(want.a1.text);
  expect(got.usage1).toBe(want.usage1);
  expect(got.measured).toBe(want.measure_q2);
  expect(got.chunks.join(""), "the chunks add up to the second answer").toBe(want.a2.text);
  expect(got.chunks.length, "a chunk per piece of text, each the new text only").toBeGreaterThan(4);
  expect(got.usage2).toBe(want.usage2);
  expect(got.contextUsage).toBe(want.usage2);
  expect(got.contextWindow).toBe(expected.context);
  expect(got.measured3).toBe(want.measure_q3);
});

test("clone, append, a prefix and responseConstraint give Python's answers and counts", async ({ page }) => {
  test.setTimeout(240_000);
  const got = await inPage(
    page,
    async (w, { url, fx, cfg }) => {
      const LM = w.LanguageModel;
      LM.configure({ modelUrl: url, ...cfg });
      const out: any = { params: await LM.params(), maxTopK: w.MAX_TOP_K };
      const s = await LM.create({ initialPrompts: fx.initial });
      out.defaults = [s.topK, s.temperature, s.samplingMode];
      out.a1 = await s.prompt(fx.q1);
      const loaded = LM.inference;
      await w.installLanguageModel({ modelUrl: url, ...cfg }); // the same configuration again
      out.keptModel = LM.inference === loaded && loaded !== undefined;
      const c = await s.clone();
      out.cloneUsageAtClone = c.inputUsage;
      out.c3 = await c.prompt(fx.q3);
      out.a2 = await s.prompt(fx.q2);
      out.a2Stats = LM.inference.lastStats;
      out.cloneUsage = c.inputUsage;
      out.sourceUsage = s.inputUsage;

      const b = await LM.create({ initialPrompts: [fx.system] });
      await b.append([{ role: "user", content: fx.append_parts.map((value: string) => ({ type: "text", value })) }]);
      out.appendUsage = b.inputUsage;
      out.b = await b.prompt(fx.q3);
      out.appendAfter = b.inputUsage;

      const p = await LM.create({ initialPrompts: fx.initial });
      out.prefix = await p.prompt([{ role: "user", content: fx.q3 }, { role: "assistant", content: fx.prefix_text, prefix: true }]);
      out.prefixUsage = p.inputUsage;

      const json = { initialPrompts: [fx.system], topK: 40, temperature: 1 };
      const j = await LM.create(json);
      out.guidedMeasure = await j.measureInputUsage(fx.qj, { responseConstraint: fx.color });
      out.plainMeasure = await j.measureInputUsage(fx.qj, { responseConstraint: fx.color, omitResponseConstraintInput: true });
      out.guided = await j.prompt(fx.qj, { responseConstraint: fx.color });
      out.omitted = await (await LM.create(json)).prompt(fx.qj, { responseConstraint: fx.color, omitResponseConstraintInput: true });
      out.free = await (await LM.create(json)).prompt(fx.qj + fx.guidance + JSON.stringify(fx.color));
      return out;
    },
    { url: MODEL, fx: expected, cfg: config(expected) },
  );
  expect(got.params).toEqual({ defaultTopK: expected.params.defaultTopK, maxTopK: got.maxTopK, defaultTemperature: expected.params.defaultTemperature, maxTemperature: 2 });
  expect(got.defaults).toEqual([expected.params.defaultTopK, expected.params.defaultTemperature, "balanced"]);
  expect(got.a1).toBe(expected.page.a1.text);
  expect(got.keptModel, "configuring the same model again keeps it loaded").toBe(true);
  expect(got.cloneUsageAtClone).toBe(expected.page.usage1);
  expect(got.c3, "the clone's turn follows the history it copied").toBe(expected.clone.c3.text);
  expect(got.a2, "the source's turn ignores the clone's").toBe(expected.page.a2.text);
  expect(got.a2Stats.promptTokens).toBe(expected.page.a2.prompt_tokens);
  expect(got.a2Stats.reusedPromptTokens, "the turn after the clone's reuses the cached initial prompts at least").toBeGreaterThanOrEqual(expected.page.usage0);
  expect(got.cloneUsage).toBe(expected.clone.usage_c3);
  expect(got.sourceUsage).toBe(expected.page.usage2);
  expect(got.appendUsage).toBe(expected.append.usage);
  expect(got.b).toBe(expected.append.b.text);
  expect(got.appendAfter).toBe(expected.append.usage_after);
  expect(got.prefix).toBe(expected.prefix.answer.text);
  expect(got.prefixUsage).toBe(expected.prefix.usage);

  const j = expected.json;
  expect(got.guidedMeasure).toBe(j.guided_measure);
  expect(got.plainMeasure).toBeLessThan(got.guidedMeasure);
  expect(got.guided).toBe(j.guided.text);
  expect(got.omitted).toBe(j.omitted.text);
  const validate = new Ajv({ strict: true }).compile(expected.color);
  for (const [name, text] of [["guided", got.guided], ["omitted", got.omitted]]) {
    const value = JSON.parse(text);
    expect(validate(value), `${name}: ${JSON.stringify(validate.errors)}`).toBe(true);
  }
  expect(got.free).toBe(j.free.text);
  expect(() => JSON.parse(got.free), "without the constraint the same prompt is not JSON").toThrow();
});

test("an overflow drops the oldest turn and fires its events; a prompt that cannot fit is a QuotaExceededError", async ({ page }) => {
  test.setTimeout(180_000);
  const got = await inPage(
    page,
    async (w, { url, fx, cfg }) => {
      w.LanguageModel.configure({ modelUrl: url, ...cfg });
      const s = await w.LanguageModel.create({ initialPrompts: fx.initial });
      const events: string[] = [];
      s.addEventListener("contextoverflow", () => events.push("contextoverflow"));
      s.onquotaoverflow = () => events.push("onquotaoverflow");
      await s.prompt(fx.q1);
      const beforeLong = [...events];
      const measured = await s.measureInputUsage(fx.overflow.long);
      const answer = await s.prompt(fx.overflow.long);
      const usage = s.inputUsage;
      let error: any = "no error";
      try {
        await s.prompt(fx.overflow.too_long);
      } catch (e: any) {
        error = { name: e.name, isDOMException: e instanceof DOMException, requested: e.requested, quota: e.quota, message: e.message };
      }
      return { beforeLong, events, measured, answer, usage, error, usageAfterError: s.inputUsage, quota: s.inputQuota };
    },
    { url: MODEL, fx: expected, cfg: config(expected) },
  );
  const o = expected.overflow;
  expect(got.beforeLong).toEqual([]);
  expect(got.measured + expected.page.usage1 + 1, "the long prompt does not fit after the first turn").toBeGreaterThan(got.quota);
  expect(got.events).toEqual(["contextoverflow", "onquotaoverflow"]);
  expect(got.answer).toBe(o.answer.text);
  expect(got.usage).toBe(o.usage_after);
  expect(got.error).toMatchObject({ name: "QuotaExceededError", isDOMException: true, requested: o.too_long_requested, quota: expected.context });
  expect(got.usageAfterError, "nothing dropped by a prompt that cannot fit").toBe(o.usage_after);
});

test("abort and destroy: AbortError for calls under way, InvalidStateError after destroy, the session intact", async ({ page }) => {
  test.setTimeout(180_000);
  const got = await inPage(
    page,
    async (w, { url, fx, cfg }) => {
      const LM = w.LanguageModel;
      LM.configure({ modelUrl: url, ...cfg });
      const name = async (p: () => Promise<unknown>) => p().then(() => "no error", (e: Error) => e.name);
      const out: any = {};
      const early = new AbortController();
      early.abort();
      out.createAborted = await name(() => LM.create({ signal: early.signal, initialPrompts: fx.initial }));
      const s = await LM.create({ initialPrompts: fx.initial });
      out.promptAborted = await name(() => s.prompt(fx.q1, { signal: early.signal }));
      out.cloneAborted = await name(() => s.clone({ signal: early.signal }));
      const controller = new AbortController();
      const chunks: string[] = [];
      out.streamAborted = await name(async () => {
        for await (const chunk of s.promptStreaming(fx.q1, { signal: controller.signal })) {
          chunks.push(chunk);
          if (chunks.length === 2) controller.abort();
        }
      });
      out.chunks = chunks.length;
      await s.clone(); // queued behind the aborted generation: runs once it has stopped
      out.streamResult = { finish: LM.inference.lastResults[0].finishReason, tokens: LM.inference.lastResults[0].tokens.length };
      for await (const chunk of s.promptStreaming(fx.q1)) if (chunk) break; // leaving the loop cancels the stream
      await s.clone();
      out.breakResult = { finish: LM.inference.lastResults[0].finishReason, tokens: LM.inference.lastResults[0].tokens.length };
      const late = new AbortController();
      const call = s.prompt(fx.q1, { signal: late.signal });
      setTimeout(() => late.abort(), 30);
      out.callAborted = await name(() => call);
      out.usageAfterAborts = s.inputUsage;
      out.again = await s.prompt(fx.q1); // the aborted turns left no trace

      const d = await LM.create({ initialPrompts: fx.initial });
      const running = d.prompt(fx.q1);
      const queued = d.prompt(fx.q2);
      d.destroy();
      out.running = await name(() => running);
      out.queued = await name(() => queued);
      out.after = {
        prompt: await name(() => d.prompt(fx.q1)),
        append: await name(() => d.append(fx.q1)),
        measure: await name(() => d.measureInputUsage(fx.q1)),
        clone: await name(() => d.clone()),
        streaming: await name(async () => d.promptStreaming(fx.q1)),
      };
      out.afterDestroy = await s.prompt(fx.q2); // other sessions go on
      const creation = new AbortController();
      const e = await LM.create({ initialPrompts: fx.initial, signal: creation.signal });
      creation.abort();
      out.createSignalLater = await name(() => e.prompt(fx.q1));
      return out;
    },
    { url: MODEL, fx: expected, cfg: config(expected) },
  );
  expect(got.createAborted).toBe("AbortError");
  expect(got.promptAborted).toBe("AbortError");
  expect(got.cloneAborted).toBe("AbortError");
  expect(got.streamAborted).toBe("AbortError");
  expect(got.chunks).toBe(2);
  expect(got.streamResult.finish).toBe("cancelled");
  expect(got.streamResult.tokens, "the generation stopped soon after the abort").toBeLessThan(expected.max_response / 2);
  expect(got.breakResult.finish, "a loop left early cancels the generation").toBe("cancelled");
  expect(got.breakResult.tokens).toBeLessThan(expected.max_response / 2);
  expect(got.callAborted).toBe("AbortError");
  expect(got.usageAfterAborts).toBe(expected.page.usage0);
  expect(got.again).toBe(expected.page.a1.text);
  expect(got.running).toBe("AbortError");
  expect(got.queued).toBe("AbortError");
  expect(got.after).toEqual({ prompt: "InvalidStateError", append: "InvalidStateError", measure: "InvalidStateError", clone: "InvalidStateError", streaming: "InvalidStateError" });
  expect(got.afterDestroy).toBe(expected.page.a2.text);
  expect(got.createSignalLater, "create's signal aborted later destroys the session").toBe("InvalidStateError");
});

test("worker mode: the same answers, and an abort reaches the worker", async ({ page }) => {
  test.setTimeout(120_000);
  const got = await inPage(
    page,
    async (w, { url, fx, cfg }) => {
      const installed = await w.installLanguageModel({ modelUrl: url, ...cfg });
      const LM = (globalThis as any).LanguageModel;
      const s = await LM.create({ initialPrompts: fx.initial });
      const first = await s.prompt(fx.q1);
      let streamed = "";
      for await (const chunk of s.promptStreaming(fx.q2)) streamed += chunk;
      const controller = new AbortController();
      let error = "no error";
      try {
        for await (const chunk of s.promptStreaming(fx.q3, { signal: controller.signal })) if (chunk) controller.abort();
      } catch (e) {
        error = (e as Error).name;
      }
      const usage = s.inputUsage;
      await s.clone(); // queued behind the aborted generation: runs once the worker has stopped it
      const last = LM.inference.lastResults[0];
      return { finish: last.finishReason, tokens: last.tokens.length, same: LM === w.LanguageModel && installed === LM, first, streamed, error, usage };
    },
    { url: MODEL, fx: expected, cfg: config(expected, { useWorker: true }) },
  );
  expect(got.same).toBe(true);
  expect(got.first).toBe(expected.page.a1.text);
  expect(got.streamed).toBe(expected.page.a2.text);
  expect(got.error).toBe("AbortError");
  expect(got.finish).toBe("cancelled");
  expect(got.tokens, "the worker stopped soon after the abort").toBeLessThan(expected.max_response / 2);
  expect(got.usage).toBe(expected.page.usage2);
});

test("bad options are refused with the spec's exception, naming the option", async ({ page }) => {
  test.setTimeout(120_000);
  const got = await inPage(
    page,
    async (w, { url, fx, cfg }) => {
      const LM = w.LanguageModel;
      const caught = async (p: () => unknown) => {
        try {
          await p();
          return "no error";
        } catch (e: any) {
          return `${e.name}: ${e.message}`;
        }
      };
      const out: Record<string, unknown> = {
        unconfigured: await LM.availability(),
        unconfiguredParams: await LM.params(),
        unconfiguredCreate: await caught(() => LM.create()),
        construct: await caught(() => new LM()),
        noModel: await caught(() => LM.configure({ maxTokens: 64 })),
      };
      // installLanguageModel: a browser's own LanguageModel stays unless it is unavailable (or force)
      const g = globalThis as any;
      const usable = { availability: async () => "available" };
      const without = { availability: async () => "unavailable" };
      const install = async (native: unknown, force = false) => {
        g.LanguageModel = native;
        return (await w.installLanguageModel({ modelUrl: url, ...cfg }, { force })) === LM && g.LanguageModel === LM;
      };
      out.installed = [await install(usable), await install(without), await install(usable, true), await install(undefined)];
      delete g.LanguageModel;
      out.installedWhenAbsent = (await w.installLanguageModel({ modelUrl: url, ...cfg })) === LM && g.LanguageModel === LM;
      LM.configure({ modelUrl: url, ...cfg });
      const image = { expectedInputs: [{ type: "image" }] };
      out.imageAvailability = await LM.availability(image);
      out.image = await caught(() => LM.create(image));
      out.audioOut = await caught(() => LM.create({ expectedOutputs: [{ type: "audio" }] }));
      out.video = await caught(() => LM.create({ expectedInputs: [{ type: "video" }] }));
      out.language = await caught(() => LM.create({ expectedInputs: [{ type: "text", languages: ["en", "not a tag!"] }] }));
      out.onlyTemperature = await caught(() => LM.create({ temperature: 0.5 }));
      out.onlyTopK = await caught(() => LM.create({ topK: 3 }));
      out.topK0 = await caught(() => LM.create({ topK: 0, temperature: 1 }));
      out.negativeTemperature = await caught(() => LM.create({ topK: 3, temperature: -1 }));
      out.modeAndTopK = await caught(() => LM.create({ samplingMode: "creative", topK: 3, temperature: 1 }));
      out.badMode = await caught(() => LM.create({ samplingMode: "wild" }));
      out.tools = await caught(() => LM.create({ tools: [] }));
      out.lateSystem = await caught(() => LM.create({ initialPrompts: [{ role: "user", content: "hi" }, { role: "system", content: "x" }] }));
      out.badRole = await caught(() => LM.create({ initialPrompts: [{ role: "robot", content: "x" }] }));
      const clamped = await LM.create({ topK: 1000, temperature: 5 });
      const floored = await LM.create({ topK: 7.9, temperature: 0.5 });
      const mode = await LM.create({ samplingMode: "most-predictable" });
      out.clamped = [clamped.topK === w.MAX_TOP_K, clamped.temperature, floored.topK, mode.samplingMode, mode.topK, mode.temperature];
      const s = await LM.create({ initialPrompts: fx.initial });
      out.prefixNotLast = await caught(() => s.prompt([{ role: "user", content: "x", prefix: true }]));
      out.omitAlone = await caught(() => s.prompt("x", { omitResponseConstraintInput: true }));
      out.regexp = await caught(() => s.prompt("x", { responseConstraint: /a+/ }));
      out.unsupportedKeyword = await caught(() => s.prompt("x", { responseConstraint: { type: "number", minimum: 0 } }));
      out.notSchema = await caught(() => s.prompt("x", { responseConstraint: 5 }));
      out.imagePart = await caught(() => s.prompt([{ role: "user", content: [{ type: "image", value: "x" }] }]));
      out.systemLater = await caught(() => s.prompt([{ role: "system", content: "x" }]));
      out.streamingBadInput = await caught(() => s.promptStreaming(42));
      out.usage = s.inputUsage;
      return out;
    },
    { url: MODEL, fx: expected, cfg: config(expected) },
  );
  expect(got.unconfigured).toBe("unavailable");
  expect(got.unconfiguredParams).toBeNull();
  expect(got.unconfiguredCreate).toMatch(/^NotSupportedError: no model is configured: call LanguageModel.configure/);
  expect(got.construct).toBe("TypeError: Illegal constructor: use LanguageModel.create()");
  expect(got.noModel).toBe("TypeError: LanguageModel.configure: 'modelUrl' (the GGUF model's URL) is required");
  expect(got.installed, "kept when usable, replaced when unavailable, with force, or when absent").toEqual([false, true, true, true]);
  expect(got.installedWhenAbsent).toBe(true);
  expect(got.imageAvailability).toBe("unavailable");
  expect(got.image).toBe('NotSupportedError: expectedInputs[0].type "image": this model reads and writes text only');
  expect(got.audioOut).toBe('NotSupportedError: expectedOutputs[0].type "audio": this model reads and writes text only');
  expect(got.video).toBe('TypeError: expectedInputs[0].type must be one of text, image, audio, tool-call, tool-response, got "video"');
  expect(got.language).toMatch(/^RangeError: .*not a tag!/);
  expect(got.onlyTemperature).toBe("NotSupportedError: 'topK' and 'temperature' must be given both or neither (got only 'temperature')");
  expect(got.onlyTopK).toBe("NotSupportedError: 'topK' and 'temperature' must be given both or neither (got only 'topK')");
  expect(got.topK0).toBe("RangeError: 'topK' must be a number >= 1, got 0");
  expect(got.negativeTemperature).toBe("RangeError: 'temperature' must be a number >= 0, got -1");
  expect(got.modeAndTopK).toBe("TypeError: 'samplingMode' cannot be given with 'topK' or 'temperature'");
  expect(got.badMode).toBe('TypeError: \'samplingMode\' must be one of most-predictable, predictable, balanced, creative, most-creative, got "wild"');
  expect(got.tools).toBe("NotSupportedError: 'tools' is not supported: the model calls no tools here");
  expect(got.lateSystem).toMatch(/^TypeError: initialPrompts\[1\] is a system message: the system prompt must be the session's first message/);
  expect(got.badRole).toBe('TypeError: initialPrompts[0].role must be "system", "user" or "assistant", got "robot"');
  expect(got.clamped, "topK and temperature above the maxima are clamped, topK rounded down (the explainer)").toEqual([true, 2, 7, "most-predictable", 1, 0]);
  expect(got.prefixNotLast).toBe("SyntaxError: input[0].prefix: only the last message, an assistant one, may be a prefix");
  expect(got.omitAlone).toBe("TypeError: 'omitResponseConstraintInput' needs a 'responseConstraint'");
  expect(got.regexp).toBe("NotSupportedError: 'responseConstraint': a RegExp is not supported, only a JSON schema");
  expect(got.unsupportedKeyword).toMatch(/^NotSupportedError: 'responseConstraint': .*minimum/);
  expect(got.notSchema).toBe("TypeError: 'responseConstraint' must be a JSON schema object or a RegExp, got 5");
  expect(got.imagePart).toBe("NotSupportedError: input[0].content[0] is image: this model reads text only");
  expect(got.systemLater).toMatch(/^TypeError: input\[0\] is a system message/);
  expect(got.streamingBadInput).toBe("TypeError: input must be a string or a list of {role, content} messages, got 42");
  expect(got.usage, "refused prompts change nothing").toBe(expected.page.usage0);
});
