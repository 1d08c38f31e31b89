// The browser run of `wgllm bench`: load time, prefill and decode tokens/s of the bundle's engine
// in headless Chromium (WebGPU on whatever adapter Chromium gives: SwiftShader here), and the
// adapter's copy bandwidth measured in the same page by shaders/copy.wgsl — the same JSON keys as
// the Python bench (py/wgllm/bench.py), so the two compare line by line.
//
//   node bench/browser_bench.mjs MODEL.gguf [--prompt-tokens 128] [--gen-tokens 128] [--json OUT]
//
// Needs the bundle built (cd web && npm run build) and /usr/bin/chromium. Nothing here asserts a
// speed.

import { spawn } from "node:child_process";
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(path.join(repo, "web", "package.json"));
const { chromium } = require("@playwright/test");

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
}
const model = process.argv[2];
if (!model || model.startsWith("--")) {
  console.error("usage: node bench/browser_bench.mjs MODEL.gguf [--prompt-tokens 128] [--gen-tokens 128] [--json OUT]");
  process.exit(2);
}
const promptTokens = Number(arg("--prompt-tokens", 128));
const genTokens = Number(arg("--gen-tokens", 128));
const out = arg("--json");

const port = await new Promise((resolve) => {
  const s = net.createServer();
  s.listen(0, "127.0.0.1", () => {
    const p = s.address().port;
    s.close(() => resolve(p));
  });
});
// The test server serves the repository: the model is linked into build/ for the run.
const linkDir = path.join(repo, "build", "bench-models");
mkdirSync(linkDir, { recursive: true });
const link = path.join(linkDir, path.basename(model));
rmSync(link, { force: true });
symlinkSync(path.resolve(model), link);
const server = spawn(process.execPath, [path.join(repo, "tests", "browser", "server.mjs"), "--port", String(port)], { stdio: "ignore" });
const base = `http://127.0.0.1:${port}`;
for (let i = 0; ; i++) {
  try {
    if ((await fetch(`${base}/`)).ok) break;
  } catch {
    if (i > 100) throw new Error("the test server did not start");
    await new Promise((r) => setTimeout(r, 100));
  }
}

const browser = await chromium.launch({
  executablePath: process.env.WGLLM_CHROMIUM ?? "/usr/bin/chromium",
  args: ["--enable-unsafe-webgpu", "--enable-features=Vulkan", "--enable-unsafe-swiftshader", "--no-sandbox",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(0);
  await page.goto(`${base}/`);
  const result = await page.evaluate(
    async ({ url, promptTokens, genTokens }) => {
      const w = await import("/web/dist/genai_bundle.mjs");
      const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
      const device = await w.LlmInference.createWebGpuDevice();
      const info = adapter.info ?? {};
      const t0 = performance.now();
      const engine = await w.Engine.load(device, await w.fetchGGUF(url), { maxTokens: promptTokens + genTokens });
      const loadS = (performance.now() - t0) / 1000;
      const nVocab = engine.config.nVocab;
      let seed = 12345;
      const ids = Array.from({ length: promptTokens }, () => ((seed = (seed * 1103515245 + 12345) >>> 0) % nVocab));
      const greedy = (step) => ({ topK: 1, temperature: 0, seed: 0, step });
      await engine.sample([await engine.sample(ids.slice(0, 8), 0, greedy(0))], 8, greedy(1)); // warm-up
      let t = performance.now();
      let token = await engine.sample(ids, 0, greedy(0));
      const prefillS = (performance.now() - t) / 1000;
      t = performance.now();
      for (let i = 0; i < genTokens; i++) token = await engine.sample([token], promptTokens + i, greedy(i + 1));
      const decodeS = (performance.now() - t) / 1000;

      // copy bandwidth: bytes read + written by shaders/copy.wgsl, reps in one submission
      const n4 = Math.floor(Math.min(64 << 20, device.limits.maxStorageBufferBindingSize) / 16);
      const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;
      const src = device.createBuffer({ size: n4 * 16, usage });
      const dst = device.createBuffer({ size: n4 * 16, usage });
      const params = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
      device.queue.writeBuffer(params, 0, new Uint32Array([n4, 0, 0, 0]));
      const pipeline = device.createComputePipeline({
        layout: "auto",
        compute: { module: device.createShaderModule({ code: w.shaderSource("copy") }), entryPoint: "main" },
      });
      const bindGroup = device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [params, src, dst].map((buffer, binding) => ({ binding, resource: { buffer } })),
      });
      const groups = Math.ceil(n4 / 256);
      const gx = Math.min(groups, 65535);
      const run = async (reps) => {
        const enc = device.createCommandEncoder();
        for (let i = 0; i < reps; i++) {
          const pass = enc.beginComputePass();
          pass.setPipeline(pipeline);
          pass.setBindGroup(0, bindGroup);
          pass.dispatchWorkgroups(gx, Math.ceil(groups / gx), 1);
          pass.end();
        }
        const start = performance.now();
        device.queue.submit([enc.finish()]);
        await device.queue.onSubmittedWorkDone();
        return (performance.now() - start) / 1000 / reps;
      };
      await run(1);
      const copyGbS = (2 * n4 * 16) / (await run(10)) / 1e9;

      const tied = !engine.header.tensors.some((x) => x.name === "output.weight");
      const perToken = engine.header.tensors.filter((x) => tied || x.name !== "token_embd.weight").reduce((a, x) => a + x.nBytes, 0);
      const decodeTokS = genTokens / decodeS;
      const prefillTokS = promptTokens / prefillS;
      engine.destroy();
      return {
        adapter: [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(" ") || "unknown",
        prompt_tokens: promptTokens,
        gen_tokens: genTokens,
        load_s: loadS,
        prefill_tok_s: prefillTokS,
        decode_tok_s: decodeTokS,
        weight_bytes_per_token: perToken,
        copy_bandwidth_gb_s: copyGbS,
        decode_bandwidth_fraction: (perToken * decodeTokS) / 1e9 / copyGbS,
        prefill_over_decode: prefillTokS / decodeTokS,
      };
    },
    { url: `/build/bench-models/${path.basename(model)}`, promptTokens, genTokens },
  );
  const full = { model, browser: `chromium ${browser.version()}`, ...result };
  console.log(JSON.stringify(full, null, 2));
  if (out) writeFileSync(out, JSON.stringify(full, null, 2) + "\n");
} finally {
  await browser.close();
  server.kill();
  rmSync(link, { force: true });
}
