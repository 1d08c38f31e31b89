// The KV cache's element type in the browser engine (issue 3: shader-f16 when the device has it,
// f32 otherwise, forceF32 forces f32). Chromium here runs WebGPU on SwiftShader, which has no
// shader-f16, so these run the f32 side and the f16 side's text and refusals:
// - the bundle's kvF16Variant gives exactly the text of Python's runtime.kv_f16_variant for every
//   shaders/*.wgsl, and refuses the same files with the same message (kv_cache_fixtures.py);
// - Engine.kvCacheType and LlmInference.modelInfo.kvCacheType: "f16" only on a device with
//   shader-f16 and without forceF32; a page's own device without the feature gives "f32";
// - GpuContext refuses to build an f16 KV pipeline on a device without shader-f16, naming the file
//   and the variant, and that refusal leaves the f32 pipeline of the same file working.

import { readFileSync } from "node:fs";
import path from "node:path";
import { expect, test } from "@playwright/test";
import { errorOf, inPage, runFixtures } from "./helpers";
import { DATA_DIR, DATA_URL } from "./paths";

const OUT = path.join(DATA_DIR, "kv_cache");
let python: any;
let MODEL: string;

test.beforeAll(() => {
  runFixtures("kv_cache_fixtures.py", [OUT]);
  python = JSON.parse(readFileSync(path.join(OUT, "kv_f16_variants.json"), "utf8"));
  runFixtures("api_fixtures.py", [path.join(DATA_DIR, "api")]); // the tiny model llm_inference.spec.ts uses
  const api = JSON.parse(readFileSync(path.join(DATA_DIR, "api", "expected.json"), "utf8"));
  MODEL = `${DATA_URL}/api/${api.model}`;
});

test.beforeEach(async ({ page }) => {
  page.on("pageerror", (e) => console.log(`page error: ${e.message}`));
  await page.goto("/");
});

test("kvF16Variant gives Python's kv_f16_variant text for every shader, and the same refusals", async ({ page }) => {
  const got = await inPage(
    page,
    async (w, { twice }) => {
      const outcome = (op: string, source?: string) => {
        try {
          return { variant: w.kvF16Variant(op, source) };
        } catch (e) {
          return { error: (e as Error).message };
        }
      };
      const shaders: Record<string, unknown> = {};
      for (const op of Object.keys(w.SHADERS).sort()) shaders[op] = outcome(op);
      return { alias: w.KV_ALIAS, shaders, twice: outcome(twice.name, twice.source) };
    },
    { twice: python.twice },
  );
  expect(got.alias).toBe(python.alias);
  expect(Object.keys(got.shaders)).toEqual(Object.keys(python.shaders));
  for (const op of Object.keys(python.shaders)) expect(got.shaders[op], `shaders/${op}.wgsl`).toEqual(python.shaders[op]);
  // the three shaders that touch the cache have the variant; the rest are refused by name
  expect(Object.keys(got.shaders).filter((op) => "variant" in got.shaders[op])).toEqual(["attention", "kv_store", "rope"]);
  expect(got.shaders.add).toEqual({ error: "shaders/add.wgsl has no f16 KV variant: it needs exactly one line `alias kv_t = f32;`" });
  expect(got.twice).toEqual({ error: python.twice.error });
  expect(python.twice.error).toContain("shaders/twice.wgsl has no f16 KV variant");
});

test("the KV cache is f16 only with shader-f16 and without forceF32 (Engine and LlmInference)", async ({ page }) => {
  test.setTimeout(300_000); // SwiftShader compiles every pipeline of each load
  const got = await inPage(
    page,
    async (w, { model }) => {
      const adapter = (await navigator.gpu.requestAdapter())!;
      const adapterF16 = adapter.features.has("shader-f16");
      const limits = adapter.limits as unknown as Record<string, number>;
      // a device without shader-f16 whatever the adapter has, as a page may pass in gpuOptions.device
      const plain = await adapter.requestDevice({
        requiredLimits: { maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize, maxBufferSize: limits.maxBufferSize },
      });
      const engineType = async (device: GPUDevice, forceF32?: boolean) => {
        const engine = await w.Engine.load(device, await w.fetchGGUF(model), { maxTokens: 16, forceF32 });
        const type = engine.kvCacheType;
        const token = await engine.sample([1, 2, 3], 0, { topK: 1, temperature: 0, seed: 0, step: 0 });
        engine.destroy();
        return { type, token };
      };
      const ownDevice = await w.LlmInference.createWebGpuDevice();
      const engine = {
        plain: await engineType(plain),
        plainForced: await engineType(plain, true),
        own: await engineType(ownDevice),
        ownForced: await engineType(ownDevice, true),
      };
      const fileset = await w.FilesetResolver.forGenAiTasks("https://cdn.jsdelivr.net/npm/@mediapipe/tasks-genai/wasm");
      const llm = await w.LlmInference.createFromOptions(fileset, { baseOptions: { modelAssetPath: model }, maxTokens: 32, topK: 1, temperature: 0 });
      const api: Record<string, string> = { default: llm.modelInfo.kvCacheType };
      await llm.setOptions({ forceF32: true });
      api.forceF32 = llm.modelInfo.kvCacheType;
      await llm.setOptions({ forceF32: false, baseOptions: { gpuOptions: { device: plain } } });
      api.pageDevice = llm.modelInfo.kvCacheType;
      llm.close();
      return { adapterF16, ownF16: ownDevice.features.has("shader-f16"), plainF16: plain.features.has("shader-f16"), engine, api };
    },
    { model: MODEL },
  );
  console.log(`adapter shader-f16: ${got.adapterF16}; engine ${JSON.stringify(got.engine)}; LlmInference ${JSON.stringify(got.api)}`);
  const f16 = got.adapterF16 ? "f16" : "f32";
  expect(got.plainF16, "a device requested without the feature has none").toBe(false);
  expect(got.ownF16, "createWebGpuDevice requests shader-f16 when the adapter has it").toBe(got.adapterF16);
  expect(got.engine.plain.type).toBe("f32");
  expect(got.engine.plainForced.type).toBe("f32");
  expect(got.engine.own.type).toBe(f16);
  expect(got.engine.ownForced.type).toBe("f32");
  expect(got.api).toEqual({ default: f16, forceF32: "f32", pageDevice: "f32" });
  // the f32 loads on either device run the same program: the same greedy token
  for (const run of [got.engine.plainForced, got.engine.ownForced]) expect(run.token).toBe(got.engine.plain.token);
});

test("an f16 KV pipeline on a device without shader-f16 is refused by file and variant; the f32 one still builds", async ({ page }) => {
  const got = await inPage(
    page,
    async (w, { errorOf }) => {
      const catching = new Function(`return (${errorOf});`)();
      const adapter = (await navigator.gpu.requestAdapter())!;
      const device = await adapter.requestDevice();
      const ctx = w.GpuContext.of(device);
      const refused = await catching(() => ctx.pipeline("kv_store", "main", undefined, true));
      const f32 = await catching(() => ctx.pipeline("kv_store", "main", undefined, false));
      const refusedAgain = await catching(() => ctx.pipeline("attention", "main", undefined, true));
      device.destroy();
      return { refused, f32, refusedAgain, hasF16: ctx.hasF16 };
    },
    { errorOf },
  );
  expect(got.hasF16).toBe(false);
  expect(got.refused).toBe("ShaderError: shaders/kv_store.wgsl (f16 KV variant) needs the shader-f16 feature, which this device lacks");
  expect(got.refusedAgain).toBe("ShaderError: shaders/attention.wgsl (f16 KV variant) needs the shader-f16 feature, which this device lacks");
  expect(got.f32).toBe("no error");
});
