// The browser bundle's Engine (web/dist/genai_bundle.mjs) in Node on Dawn (the `webgpu` npm
// package, Chromium's WebGPU implementation) with a device that has shader-f16: what
// tests/browser/kv_f16_dawn.spec.ts runs, in its own process, with VK_ICD_FILENAMES naming the
// lavapipe of scripts/lavapipe-for-dawn.sh.
//   node tests/browser/dawn_engine.mjs JOB.json RESULT.json
// JOB: {"runs": [{file, maxTokens, forceF32, allLogits?, prompt, greedy?: n, sampled?: {n, topK,
// temperature, seed}, logitSteps?: [[ids], ...]}], api?: {file, prompt, maxTokens}}. RESULT: the
// adapter; per run the engine's kvCacheType, greedy / sampled tokens and the logits of each logit
// step, concatenated; for `api`, LlmInference's greedy answer and modelInfo.kvCacheType on its own
// device (createWebGpuDevice, from navigator.gpu) without and with forceF32. JOB.traces (trace_dawn.spec):
// [{file, options: {maxTokens, kernels, loraRanks, allLogits, forceF32}, steps: [[n, pos0], ...]}] gives
// RESULT.traces: per entry the engine's config and Engine.trace(n, pos0) of each step by "n,pos0".
// JOB.checkpoints (wgllm diff): [{file, options, ids}] gives RESULT.checkpoints: per entry
// [{name, width, f32: base64 of the values' f32 bytes}] from Engine.checkpoints(ids) (options must have allLogits).

import { openAsBlob, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const { create, globals } = await import(path.join(repo, "web", "node_modules", "webgpu", "index.js"));
Object.assign(globalThis, globals); // GPUBufferUsage, GPUMapMode, ...
const w = await import(path.join(repo, "web", "dist", "genai_bundle.mjs"));

const [jobPath, resultPath] = process.argv.slice(2);
const job = JSON.parse(readFileSync(jobPath, "utf8"));

const gpu = create([]); // kept: the adapter and device die with it
const adapter = await gpu.requestAdapter();
if (!adapter) throw new Error("Dawn found no WebGPU adapter: is VK_ICD_FILENAMES the lavapipe of scripts/lavapipe-for-dawn.sh?");
const hasF16 = adapter.features.has("shader-f16");
// as requestWebGpuDevice (web/src/device.ts) asks: shader-f16 when the adapter has it, its binding limits
const device = await adapter.requestDevice({
  requiredFeatures: hasF16 ? ["shader-f16"] : [],
  requiredLimits: { maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize, maxBufferSize: adapter.limits.maxBufferSize },
});

const runs = [];
for (const run of job.runs) {
  const blob = await openAsBlob(run.file);
  const stream = await w.readGGUF(blob.stream(), { source: path.basename(run.file), size: blob.size });
  const engine = await w.Engine.load(device, stream, { maxTokens: run.maxTokens, allLogits: run.allLogits, forceF32: run.forceF32 });
  const sample = async (n, s) => {
    const out = [await engine.sample(run.prompt, 0, { ...s, step: 0 })];
    while (out.length < n) out.push(await engine.sample([out[out.length - 1]], run.prompt.length + out.length - 1, { ...s, step: out.length }));
    return out;
  };
  const result = { kvCacheType: engine.kvCacheType };
  if (run.greedy) result.greedy = await sample(run.greedy, { topK: 1, temperature: 0, seed: 0 });
  if (run.sampled) result.sampled = await sample(run.sampled.n, run.sampled);
  if (run.logitSteps) {
    const logits = [];
    let pos = 0;
    for (const ids of run.logitSteps) {
      logits.push(...(await engine.logits(ids, pos)));
      pos += ids.length;
    }
    result.logits = logits;
  }
  engine.destroy();
  runs.push(result);
}
const traces = [];
for (const t of job.traces ?? []) {
  const blob = await openAsBlob(t.file);
  const stream = await w.readGGUF(blob.stream(), { source: path.basename(t.file), size: blob.size });
  const engine = await w.Engine.load(device, stream, t.options);
  const steps = {};
  for (const [n, pos0] of t.steps) steps[`${n},${pos0}`] = await engine.trace(n, pos0);
  traces.push({ config: engine.config, traces: steps });
  engine.destroy();
}
const checkpoints = [];
for (const t of job.checkpoints ?? []) {
  const blob = await openAsBlob(t.file);
  const stream = await w.readGGUF(blob.stream(), { source: path.basename(t.file), size: blob.size });
  const engine = await w.Engine.load(device, stream, t.options);
  // values as base64 of their f32 bytes: JSON numbers would lose the sign of -0
  checkpoints.push((await engine.checkpoints(t.ids)).map((c) => ({ name: c.name, width: c.width, f32: Buffer.from(c.values.buffer, c.values.byteOffset, c.values.byteLength).toString("base64") })));
  engine.destroy();
}
device.destroy();

let api;
if (job.api) {
  globalThis.navigator = { gpu }; // where requestWebGpuDevice (web/src/device.ts) looks
  const modelAssetBuffer = new Uint8Array(readFileSync(job.api.file));
  const fileset = await w.FilesetResolver.forGenAiTasks();
  const llm = await w.LlmInference.createFromOptions(fileset, { baseOptions: { modelAssetBuffer }, maxTokens: job.api.maxTokens, topK: 1, temperature: 0 });
  api = {};
  api.f16 = { kvCacheType: llm.modelInfo.kvCacheType, answer: await llm.generateResponse(job.api.prompt) };
  await llm.setOptions({ forceF32: true, baseOptions: { modelAssetBuffer } });
  api.f32 = { kvCacheType: llm.modelInfo.kvCacheType, answer: await llm.generateResponse(job.api.prompt) };
  llm.close();
}
const info = adapter.info;
writeFileSync(resultPath, JSON.stringify({ adapter: { vendor: info.vendor, architecture: info.architecture, description: info.description, shaderF16: hasF16 }, runs, api, traces, checkpoints }));
process.exit(0); // dawn.node keeps the event loop alive
