// LoRA adapters in the browser bundle (web/src/lora.ts, lora_gpu.ts, engine.ts, llm_inference.ts) against the
// oracles of tests/browser/lora_fixtures.py: tiny random Gemma, Phi-2 and Llama models with random
// non-zero PEFT adapters give transformers + PEFT's logits within the engine tolerance (prefill and
// decode rows), and those of the same models with the adapter merged into the weights by PEFT;
// adapters switch per call in one engine (A -> B -> none
// -> A) with each one's own logits, as fresh engines give, and no pipeline or bind group made;
// LlmInference's answers with an adapter equal Python's LlmInference (WebGPU) in page and worker
// mode, and its handles survive a reload; every refusal names the problem; and the demo page picks
// up an adapter copied into serve-models' --loras-dir while it is open, reloads with its rank
// declared and answers as Python does.
//
// PEFT's merged weights are a second oracle: the same engine on the adapter merged into the base
// weights differs from the unmerged path only by the f32 rounding of the update.

import { copyFileSync, mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect, test, type Page } from "@playwright/test";
import { inPage as inCurrentPage, runFixtures, startServeModels } from "./helpers";
import { DATA_DIR, DATA_URL } from "./paths";

const OUT = path.join(DATA_DIR, "lora");
const URL_BASE = `${DATA_URL}/lora`;
let expected: any;

test.beforeAll(() => {
  test.setTimeout(300_000); // a fresh checkout builds the models and runs PEFT and the Python engine once
  runFixtures("lora_fixtures.py", [OUT], 300_000);
  expected = JSON.parse(readFileSync(path.join(OUT, "expected.json"), "utf8"));
});

/** Run `fn(bundle, arg)` in a fresh page of the test server. */
async function inPage<T>(page: Page, fn: (w: any, arg: any) => Promise<T>, arg: any = {}): Promise<T> {
  await page.goto("/");
  return inCurrentPage(page, fn, arg);
}

/** max |got - want| / max |want|, after checking every value is finite. */
function maxRel(got: number[], want: number[]): number {
  expect(got.length).toBe(want.length);
  expect(got.every(Number.isFinite), "every logit is finite").toBe(true);
  let err = 0;
  let scale = 0;
  want.forEach((w, i) => {
    err = Math.max(err, Math.abs(got[i] - w));
    scale = Math.max(scale, Math.abs(w));
  });
  return err / scale;
}

/** engine.spec.ts's browser bound: twice gpu_tolerances.MODEL_LOGITS_REL (SwiftShader's exp). */
const browserRel = () => expected.logits_rel; // tests/py/gpu_tolerances.py's MODEL_LOGITS_REL
/** The same engine on the same function (adapter applied vs merged by PEFT): only the f32 rounding
 * of the unmerged update differs (measured <= 7e-7). */
const mergedRel = () => expected.logits_rel / 10;

/** A page-wide device with the adapter's limits (pipelines compiled once per page). */
const DEVICE = `(globalThis.loraTestDevice ??= navigator.gpu.requestAdapter().then((a) => a.requestDevice({
  requiredLimits: { maxStorageBufferBindingSize: a.limits.maxStorageBufferBindingSize, maxBufferSize: a.limits.maxBufferSize } })))`;

test("with an adapter, logits equal transformers + PEFT and PEFT's merged weights on this engine: tiny Gemma, Phi-2, Llama, Qwen2, Qwen3, Phi-3 (fused attn_qkv), SmolLM3 (prefill and decode)", async ({ page }) => {
  test.setTimeout(120_000);
  const cases = Object.entries(expected.models).map(([arch, m]: [string, any]) => ({ arch, ids: m.ids, url: `${URL_BASE}/${arch}`, file: m.adapters.A.file }));
  const got = await inPage(
    page,
    async (w, { cases, device }) => {
      const dev = await new Function(`return ${device}`)();
      const out: Record<string, { lora: number[]; plain: number[]; merged: number[] }> = {};
      for (const c of cases) {
        const engine = await w.Engine.load(dev, await w.fetchGGUF(`${c.url}/base.gguf`), { maxTokens: c.ids.length, allLogits: true, loraRanks: [4] });
        const lora = await engine.loadLora(await w.fetchGGUF(`${c.url}/${c.file}`));
        const rows: number[] = [];
        rows.push(...(await engine.logits(c.ids.slice(0, 5), 0, lora))); // prefill
        for (let j = 5; j < c.ids.length; j++) rows.push(...(await engine.logits([c.ids[j]], j, lora))); // decode against the KV cache
        const plain = Array.from(await engine.logits(c.ids, 0));
        engine.destroy();
        const m = await w.Engine.load(dev, await w.fetchGGUF(`${c.url}/merged-A.gguf`), { maxTokens: c.ids.length, allLogits: true });
        const merged = Array.from(await m.logits(c.ids, 0));
        m.destroy();
        out[c.arch] = { lora: rows, plain, merged };
      }
      return out;
    },
    { cases, device: DEVICE },
  );
  for (const [arch, m] of Object.entries(expected.models) as [string, any][]) {
    const g = got[arch];
    expect(maxRel(g.lora, g.merged), `${arch}: adapter A vs PEFT's merged weights on this engine`).toBeLessThan(mergedRel());
    const engineOwn = maxRel(g.merged, m.adapters.A.logits);
    const withLora = maxRel(g.lora, m.adapters.A.logits);
    test.info().annotations.push({ type: arch, description: `vs transformers + PEFT: with the adapter ${withLora.toExponential(2)}, merged weights ${engineOwn.toExponential(2)}` });
    expect(withLora, `${arch}: vs transformers + PEFT`).toBeLessThan(browserRel());
    expect(engineOwn, `${arch}: the merged model vs transformers + PEFT`).toBeLessThan(browserRel());
    expect(maxRel(g.plain, m.plain_logits), `${arch}: logits without an adapter vs transformers`).toBeLessThan(browserRel());
    expect(maxRel(m.plain_logits, m.adapters.A.logits), `${arch}: the adapter moves the logits far beyond the bound`).toBeGreaterThan(100 * browserRel());
  }
});

test("A -> B -> none -> A in one engine: each call gets its own adapter's logits, as fresh engines do, with nothing rebuilt", async ({ page }) => {
  test.setTimeout(120_000);
  const m = expected.models.phi2;
  const got = await inPage(
    page,
    async (w, { url, ids, device }) => {
      const dev: GPUDevice = await new Function(`return ${device}`)();
      const load = (ranks: number[]) => w.fetchGGUF(`${url}/base.gguf`).then((s: unknown) => w.Engine.load(dev, s, { maxTokens: ids.length, allLogits: true, loraRanks: ranks }));
      const adapter = (engine: any, name: string) => w.fetchGGUF(`${url}/lora-${name}.gguf`).then((s: unknown) => engine.loadLora(s));
      const run = async (engine: any, lora?: unknown) => Array.from(await engine.logits(ids, 0, lora)) as number[];
      // fresh engines, one adapter each (and none)
      const fresh: Record<string, number[]> = {};
      for (const [name, ranks] of [["A", [4]], ["B", [2]]] as const) {
        const e = await load([...ranks]);
        fresh[name] = await run(e, await adapter(e, name));
        e.destroy();
      }
      const e0 = await load([]);
      fresh.none = await run(e0);
      e0.destroy();
      const merged: Record<string, number[]> = {};
      for (const name of ["A", "B"]) {
        const e = await w.Engine.load(dev, await w.fetchGGUF(`${url}/merged-${name}.gguf`), { maxTokens: ids.length, allLogits: true });
        merged[name] = await run(e);
        e.destroy();
      }
      // one engine, both adapters resident
      const engine = await load([2, 4]);
      const A = await adapter(engine, "A");
      const B = await adapter(engine, "B");
      let made = 0;
      const count = (name: "createBindGroup" | "createComputePipeline" | "createComputePipelineAsync") => {
        const original = (dev as any)[name].bind(dev);
        (dev as any)[name] = (...args: unknown[]) => (made++, original(...args));
      };
      count("createBindGroup");
      count("createComputePipeline");
      count("createComputePipelineAsync");
      const seq = [await run(engine, A), await run(engine, B), await run(engine), await run(engine, A)];
      const madeDuringSwitches = made;
      // a destroyed adapter and one from another engine are refused
      const other = await load([4]);
      const foreign = await adapter(other, "A");
      const errors: string[] = [];
      for (const bad of [foreign, (B.destroy(), B)]) {
        try {
          await engine.logits(ids, 0, bad);
          errors.push("no error");
        } catch (e: any) {
          errors.push(`${e.name}: ${e.message}`);
        }
      }
      other.destroy();
      engine.destroy();
      return { fresh, merged, seq, madeDuringSwitches, errors };
    },
    { url: `${URL_BASE}/phi2`, ids: m.ids, device: DEVICE },
  );
  const order = ["A", "B", "none", "A"];
  got.seq.forEach((logits, i) => {
    expect(logits, `call ${i + 1} (${order[i]}) gives what a fresh engine gives`).toEqual(got.fresh[order[i]]);
  });
  expect(maxRel(got.fresh.A, got.merged.A), "A vs PEFT's merged weights").toBeLessThan(mergedRel());
  expect(maxRel(got.fresh.B, got.merged.B), "B vs PEFT's merged weights").toBeLessThan(mergedRel());
  expect(maxRel(got.fresh.none, m.plain_logits), "none vs transformers").toBeLessThan(browserRel());
  expect(maxRel(m.adapters.A.logits, m.adapters.B.logits), "A and B differ far beyond the bound").toBeGreaterThan(100 * browserRel());
  expect(got.madeDuringSwitches, "no pipeline or bind group is made when switching adapters").toBe(0);
  expect(got.errors).toEqual(Array(2).fill("WgllmError: The LoRA model was not loaded by this LLM Inference task."));
});

for (const useWorker of [false, true]) {
  test(`LlmInference with adapters answers as Python's LlmInference (${useWorker ? "worker" : "page"} mode)`, async ({ page }) => {
    test.setTimeout(120_000);
    const t = expected.text;
    const got = await inPage(
      page,
      async (w, { url, t, useWorker }) => {
        const fileset = await w.FilesetResolver.forGenAiTasks();
        const llm = await w.LlmInference.createFromOptions(fileset, {
          baseOptions: { modelAssetPath: `${url}/base.gguf` }, ...t.greedy.options, loraRanks: [4, 2], useWorker,
        });
        const bytesB = new Uint8Array(await (await fetch(`${url}/lora-B.gguf`)).arrayBuffer());
        const A = await llm.loadLoraModel(`${url}/lora-A.gguf`); // a URL
        const B = await llm.loadLoraModel(useWorker ? new Blob([bytesB]) : bytesB); // a Blob crosses to the worker; bytes in the page
        const pieces: string[] = [];
        const greedy = {
          A: await llm.generateResponse(t.prompt, A, (p: string) => pieces.push(p)),
          B: (await llm.generateResponses(t.prompt, B))[0],
          none: await llm.generateResponse(t.prompt),
        };
        await llm.setOptions(t.sampled.options);
        const sampled = { A: await llm.generateResponse(t.prompt, A), B: await llm.generateResponse(t.prompt, B), none: await llm.generateResponse(t.prompt) };
        await llm.setOptions({ loraRanks: [2, 4, 8] }); // new ranks reload the model; the handles are loaded again
        const afterReload = { A: await llm.generateResponse(t.prompt, A), B: await llm.generateResponse(t.prompt, B) };
        llm.close();
        const merged: Record<string, string> = {}; // the same sampling on PEFT's merged weights, on this engine
        for (const name of ["A", "B"]) {
          const m = await w.LlmInference.createFromOptions(fileset, { baseOptions: { modelAssetPath: `${url}/merged-${name}.gguf` }, ...t.sampled.options, useWorker });
          merged[name] = await m.generateResponse(t.prompt);
          m.close();
        }
        return { greedy, sampled, streamed: pieces.join(""), afterReload, merged };
      },
      { url: `${URL_BASE}/phi2`, t, useWorker },
    );
    expect(got.greedy, "greedy answers equal Python's").toEqual({ A: t.greedy.A, B: t.greedy.B, none: t.greedy.none });
    expect(got.streamed, "the streamed pieces add up to the answer").toBe(t.greedy.A);
    expect(got.sampled, "seeded sampling with and without adapters equals Python's").toEqual({ A: t.sampled.A, B: t.sampled.B, none: t.sampled.none });
    expect(got.merged, "and the merged models sample the same text").toEqual({ A: t.sampled.A, B: t.sampled.B });
    expect(got.afterReload, "the handles work after the reload, with the same answers").toEqual({ A: t.sampled.A, B: t.sampled.B });
    expect(new Set([got.sampled.A, got.sampled.B, got.sampled.none]).size, "each adapter shows in the text").toBe(3);
  });
}

test("refusals: undeclared rank, another base, another instance's handle, not an adapter, busy", async ({ page }) => {
  test.setTimeout(120_000);
  const got = await inPage(
    page,
    async (w, { root, refuse }) => {
      const fileset = await w.FilesetResolver.forGenAiTasks();
      const llm = await w.LlmInference.createFromOptions(fileset, { baseOptions: { modelAssetPath: `${root}/llama/base.gguf` }, maxTokens: 16, topK: 1, loraRanks: [2] });
      const other = await w.LlmInference.createFromOptions(fileset, { baseOptions: { modelAssetPath: `${root}/llama/base.gguf` }, maxTokens: 16, topK: 1, loraRanks: [4] });
      const errorOf = async (f: () => Promise<unknown>) => {
        try {
          await f();
          return "no error";
        } catch (e: any) {
          return `${e.name}: ${e.message}`;
        }
      };
      const foreign = await other.loadLoraModel(`${root}/llama/lora-A.gguf`);
      const out = {
        rank: await errorOf(() => llm.loadLoraModel(`${root}/llama/lora-A.gguf`)),
        arch: await errorOf(() => llm.loadLoraModel(`${root}/gemma/lora-A.gguf`)),
        shape: await errorOf(() => llm.loadLoraModel(`${root}/refuse/${refuse.narrow}`)),
        unpaired: await errorOf(() => llm.loadLoraModel(`${root}/refuse/${refuse.unpaired}`)),
        model: await errorOf(() => llm.loadLoraModel(`${root}/llama/base.gguf`)),
        garbage: await errorOf(() => llm.loadLoraModel(new Blob(["<!doctype html> not a GGUF file at all"]))),
        foreign: await errorOf(() => llm.generateResponse("the", foreign)),
        foreignMulti: await errorOf(() => llm.generateResponses("the", foreign)),
        busy: "",
        stillWorks: "",
      };
      const running = llm.generateResponse("the quick");
      out.busy = await errorOf(() => llm.loadLoraModel(`${root}/llama/lora-A.gguf`));
      await running;
      out.stillWorks = typeof (await other.generateResponse("the", foreign));
      llm.close();
      other.close();
      return out;
    },
    { root: URL_BASE, refuse: expected.refuse },
  );
  expect(got.rank).toMatch(/^WgllmError: http:\/\/.*\/llama\/lora-A\.gguf: LoRA rank 4 was not declared when this model was created \(loraRanks: 2\); create it with loraRanks including 4$/);
  expect(got.arch).toMatch(/^ModelFormatError: .*\/gemma\/lora-A\.gguf: the LoRA adapter is for a gemma model \(tiny-gemma\), but .*\/llama\/base\.gguf is a llama model$/);
  expect(got.shape).toMatch(
    /^ModelFormatError: .*narrow\.gguf: tensor blk\.0\.attn_q\.weight\.lora_a has shape \[4,32\] and blk\.0\.attn_q\.weight\.lora_b \[64,4\], but .*\/llama\/base\.gguf's blk\.0\.attn_q\.weight has shape \[64,64\]: expected \(r, 64\) and \(64, r\); the adapter is for another base model$/,
  );
  expect(got.unpaired).toMatch(/^ModelFormatError: .*unpaired\.gguf: tensor blk\.0\.attn_q\.weight\.lora_b is missing \(its pair is present\)$/);
  expect(got.model).toMatch(/^ModelFormatError: .*\/llama\/base\.gguf: not a LoRA adapter \(general\.type = .*, adapter\.type = none; expected "adapter" and "lora"\)$/);
  expect(got.garbage).toMatch(/^ModelFormatError: LoRA model Blob: /);
  expect(got.foreign).toBe("Error: The LoRA model was not loaded by this LLM Inference task.");
  expect(got.foreignMulti).toBe("Error: The LoRA model was not loaded by this LLM Inference task.");
  expect(got.busy).toBe("Error: Cannot load LoRA model while loading or processing.");
  expect(got.stillWorks).toBe("string");
});

// -- served hot swap: serve-models + the demo page ----------------------------------------------

test.describe("served hot swap", () => {
  let stopServer: (() => void) | undefined;
  let base = "";
  let loras = "";

  test.beforeAll(async () => {
    loras = mkdtempSync(path.join(tmpdir(), "wgllm-lora-spec-"));
    const server = await startServeModels(["--model", path.join(OUT, "phi2", "base.gguf"), "--loras-dir", loras]);
    base = server.base;
    stopServer = server.stop;
  });

  test.afterAll(() => {
    stopServer?.();
    if (loras) rmSync(loras, { recursive: true, force: true });
  });

  test("an adapter copied into --loras-dir while the demo is open appears, reloads the model with its rank and answers as Python does", async ({ page }) => {
    test.setTimeout(120_000);
    const d = expected.demo;
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    const query = new URLSearchParams(Object.entries(d.options).map(([k, v]) => [k, String(v)]));
    await page.goto(`${base}/?${query}`);
    await page.waitForFunction(() => (window as any).wgllmDemo.ready || (window as any).wgllmDemo.error, null, { timeout: 60_000 });
    expect(await page.evaluate(() => (window as any).wgllmDemo.error)).toBeNull();
    await expect(page.locator("#lora option")).toHaveCount(1); // "none": the folder is empty
    expect(await page.evaluate(() => (window as any).wgllmDemo.loraRanks)).toEqual([]);

    // written under a temporary name, then renamed: the server never lists a half-copied file
    const tmp = path.join(loras, "tiny-phi2-lora-A.gguf.tmp");
    copyFileSync(path.join(OUT, "phi2", "lora-A.gguf"), tmp);
    renameSync(tmp, path.join(loras, "tiny-phi2-lora-A.gguf"));
    await expect(page.locator("#lora option")).toHaveCount(2, { timeout: 30_000 }); // the SSE update
    await page.locator("#lora").selectOption({ label: "tiny-phi2-lora-A.gguf (rank 4, for tiny-phi2)" });

    await page.locator("#prompt").fill(d.question);
    await page.locator("#prompt").press("Enter");
    await page.waitForFunction(() => (window as any).wgllmDemo.turns === 1 || (window as any).wgllmDemo.error, null, { timeout: 90_000 });
    expect(await page.evaluate(() => (window as any).wgllmDemo.error)).toBeNull();
    expect(await page.locator("#messages li.assistant").textContent()).toBe(d.answer);
    const log: string[] = await page.evaluate(() => (window as any).wgllmDemo.statusLog);
    expect(log).toContain("Reloading the model to declare LoRA ranks 4 (tiny-phi2-lora-A.gguf has rank 4)…");
    expect(await page.evaluate(() => (window as any).wgllmDemo.loraRanks)).toEqual([4]);
    expect(errors).toEqual([]);
  });
});
