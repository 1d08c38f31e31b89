// The browser engine with an f16 KV cache, on a device that has shader-f16, against the Python GPU
// engine's f16 KV cache on lavapipe: the same greedy and seeded tokens, logits within
// gpu_tolerances.MODEL_LOGITS_REL; forceF32 gives kvCacheType "f32" and Python's force_f32 tokens.
// LlmInference on its own device (createWebGpuDevice asks for shader-f16), on SmolLM2-135M, reports
// kvCacheType "f16" and answers as Python's LlmInference does; with forceF32, "f32" and Python's
// force_f32 answer.
//
// Not in Chromium: Chromium 156 here gives WebGPU only on SwiftShader (no shader-f16). Checked:
// Debian 12's lavapipe (Mesa 22.3) is refused by Dawn ("Vulkan shaderUniform*ArrayDynamicIndexing
// required"); bookworm-backports' Mesa 25.0 lavapipe (VK_ICD_FILENAMES) passes Dawn, and with
// --use-angle=vulkan Chromium even reports WebGPU "Hardware accelerated", but its adapter choice
// (WebGPUDecoderImpl::CreatePreferredAdapter) takes a non-SwiftShader adapter only when it can
// import external images (VK_KHR_external_semaphore_fd, VK_EXT_image_drm_format_modifier), which
// lavapipe lacks, so requestAdapter() still answers SwiftShader; the Dawn OpenGLES adapter over
// ANGLE-on-lavapipe (--use-webgpu-adapter=opengles) has no shader-f16. So the same bundle runs in
// Node on Dawn itself (the `webgpu` npm package: Chromium's WebGPU implementation, built
// standalone) with that Mesa 25.0 lavapipe, fetched by scripts/lavapipe-for-dawn.sh without
// installing it. tests/browser/dawn_engine.mjs does the runs, in its own process.

import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { expect, test } from "@playwright/test";
import { runFixtures, runOnDawn } from "./helpers";
import { DATA_DIR, REPO } from "./paths";

const OUT = path.join(DATA_DIR, "kv_f16");
const LAVAPIPE = path.join(REPO, "build", "lavapipe-dawn");
let expected: any;

test.beforeAll(() => {
  test.setTimeout(600_000); // a fresh checkout converts the models and runs the Python engine once
  execFileSync("bash", [path.join(REPO, "scripts", "lavapipe-for-dawn.sh"), LAVAPIPE], { stdio: "inherit", timeout: 300_000 });
  runFixtures("kv_f16_fixtures.py", [OUT]);
  expected = JSON.parse(readFileSync(path.join(OUT, "expected.json"), "utf8"));
});

interface Run {
  file: string;
  maxTokens: number;
  forceF32: boolean;
  allLogits?: boolean;
  prompt: number[];
  greedy?: number;
  sampled?: { n: number; topK: number; temperature: number; seed: number };
  logitSteps?: number[][];
}

/** The runs on Dawn + lavapipe in a Node process of their own (dawn_engine.mjs). */
function onDawn(name: string, runs: Run[], api?: { file: string; prompt: string; maxTokens: number }): { adapter: any; runs: any[]; api?: any } {
  return runOnDawn(LAVAPIPE, OUT, name, { runs, api });
}

function maxRelError(got: number[], want: number[]): number {
  expect(got.length).toBe(want.length);
  const bad = got.findIndex((x) => !Number.isFinite(x));
  expect(bad, `logit ${bad} is ${got[bad]}`).toBe(-1);
  let err = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    err = Math.max(err, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return err / scale;
}

test("f16 KV cache on a shader-f16 device: the Python engine's f16 tokens and logits; forceF32 its f32 ones", async () => {
  test.setTimeout(300_000);
  const s = expected.sampling;
  const files = Object.keys(expected.tiny);
  expect(files.length).toBe(4);
  const runs: Run[] = [];
  for (const file of files) {
    const want = expected.tiny[file];
    const { prompt } = want;
    const common = { file: path.join(OUT, file), prompt };
    const logitSteps = [prompt.slice(0, 4), [prompt[4]], [prompt[5]]];
    runs.push(
      { ...common, forceF32: false, maxTokens: want.f16.greedy.length + prompt.length, greedy: want.f16.greedy.length,
        sampled: { n: want.f16.sampled.length, topK: s.top_k, temperature: s.temperature, seed: s.seed } },
      { ...common, forceF32: false, maxTokens: prompt.length, allLogits: true, logitSteps },
      { ...common, forceF32: true, maxTokens: want.f32.greedy.length + prompt.length, greedy: want.f32.greedy.length },
      { ...common, forceF32: true, maxTokens: prompt.length, allLogits: true, logitSteps },
    );
  }
  const api = expected.api;
  const got = onDawn("runs", runs, { file: path.join(OUT, "smollm2.gguf"), prompt: api.prompt, maxTokens: api.max_tokens });
  console.log(`Dawn adapter: ${JSON.stringify(got.adapter)}`);
  expect(got.adapter.shaderF16, "Dawn's lavapipe adapter has shader-f16").toBe(true);

  let i = 0;
  for (const file of files) {
    const want = expected.tiny[file];
    const [tokens16, logits16, tokens32, logits32] = got.runs.slice(i, i + 4);
    i += 4;
    expect([tokens16.kvCacheType, logits16.kvCacheType, tokens32.kvCacheType, logits32.kvCacheType], file).toEqual(["f16", "f16", "f32", "f32"]);
    expect(tokens16.greedy, `${file} greedy, f16 KV`).toEqual(want.f16.greedy);
    expect(tokens16.sampled, `${file} sampled (top_k ${s.top_k}, temperature ${s.temperature}, seed ${s.seed}), f16 KV`).toEqual(want.f16.sampled);
    expect(tokens32.greedy, `${file} greedy, forceF32`).toEqual(want.f32.greedy);
    const rel16 = maxRelError(logits16.logits, want.f16.logits);
    const rel32 = maxRelError(logits32.logits, want.f32.logits);
    // the f16 cache is really in use: its logits are not the f32 cache's (K and V rounded to f16)
    const moved = maxRelError(logits16.logits, logits32.logits);
    console.log(`${file}: logits vs Python f16 ${rel16.toExponential(2)}, f32 ${rel32.toExponential(2)}; f16 vs f32 cache ${moved.toExponential(2)}`);
    expect(rel16, `${file} logits vs the Python engine's, f16 KV`).toBeLessThan(expected.logits_rel);
    expect(rel32, `${file} logits vs the Python engine's, forceF32`).toBeLessThan(expected.logits_rel);
    expect(moved, `${file}: f16 and f32 KV caches give different logits`).toBeGreaterThan(0);
  }
  expect(got.runs.length).toBe(i);
  // SmolLM2-135M through LlmInference: its greedy answers, f16 KV and forceF32
  expect(got.api).toEqual({ f16: { kvCacheType: "f16", answer: api.f16 }, f32: { kvCacheType: "f32", answer: api.f32 } });
});
