// The bundle's streaming load of a model larger than 2 GiB or 4 GiB in headless Chromium (WebGPU on
// whatever adapter Chromium gives: SwiftShader here), with the page's memory sampled from outside
// the page every 250 ms through the DevTools protocol (Runtime.getHeapUsage: the V8 heap and the
// ArrayBuffer backing stores, which hold the stream's chunks) and the renderer's and GPU process's
// resident memory from /proc. The buffers the engine makes are observed (not changed) through the
// page's device: how many, the largest, the total, against the device's binding and buffer limits.
//
//   node bench/big_model_load.mjs MODEL.gguf [--limits adapter|default] [--generate] [--max-tokens 64] [--json OUT]
//
// Random-weight models of Llama shape come from bench/synth_model.py, e.g.
//   python bench/synth_model.py --preset llama-7b --type Q4_0 --out build/bigmodels/llama-7b-q4_0.gguf  (3.8 GiB)
//   python bench/synth_model.py --preset llama-7b --type Q5_0 --out build/bigmodels/llama-7b-q5_0.gguf  (4.7 GiB)
// --limits default asks the device for WebGPU's default limits (128 MiB bindings, 256 MiB buffers)
// instead of the adapter's; --generate runs the prompt and stops after the first token. Not a test:
// nothing here asserts; bench/NOTES.md ("Big models") reads the figures.

import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(path.join(repo, "web", "package.json"));
const { chromium } = require("@playwright/test");

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const model = process.argv[2];
if (!model || model.startsWith("--")) {
  console.error("usage: node bench/big_model_load.mjs MODEL.gguf [--limits adapter|default] [--generate] [--max-tokens 64] [--json OUT]");
  process.exit(2);
}
const limits = arg("--limits", "adapter");
if (!["adapter", "default"].includes(limits)) throw new Error(`--limits ${limits}: expected adapter or default`);
const generate = process.argv.includes("--generate");
const maxTokens = Number(arg("--max-tokens", 64));
const out = arg("--json");

const port = await new Promise((resolve) => {
  const s = net.createServer();
  s.listen(0, "127.0.0.1", () => {
    const p = s.address().port;
    s.close(() => resolve(p));
  });
});
// the test server serves the repository: the model is linked into build/ for the run
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
  args: ["--enable-unsafe-webgpu", "--enable-features=Vulkan", "--enable-unsafe-swiftshader", "--no-sandbox"],
});

/** Resident bytes of Chromium's processes of `type` (renderer, gpu-process), summed. */
function rss(type) {
  let total = 0;
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      if (!cmd.startsWith("/usr/lib/chromium/chromium") || !cmd.includes(`--type=${type}`)) continue;
      if (!cmd.includes(`--user-data-dir=${userDataDir}`) && userDataDir) continue;
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
      if (m) total += Number(m[1]) * 1024;
    } catch {
      /* the process ended */
    }
  }
  return total;
}
// Playwright's Chromium runs with a temporary --user-data-dir: its processes are this run's
const browserPid = browser.process?.()?.pid;
const userDataDir = browserPid ? (/--user-data-dir=(\S+)/.exec(readFileSync(`/proc/${browserPid}/cmdline`, "utf8").replaceAll("\0", " "))?.[1] ?? "") : "";

try {
  const page = await browser.newPage();
  page.on("console", (m) => console.log(`page: ${m.text()}`));
  await page.goto(`${base}/`);
  const cdp = await page.context().newCDPSession(page);
  const samples = [];
  const t0 = Date.now();
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const heap = await cdp.send("Runtime.getHeapUsage").catch(() => undefined);
      const progress = await page.evaluate(() => globalThis.__progress ?? null).catch(() => null);
      if (heap) {
        samples.push({
          t: (Date.now() - t0) / 1000,
          heapUsed: heap.usedSize,
          heapTotal: heap.totalSize,
          backingStore: heap.backingStorageSize ?? null,
          rendererRss: rss("renderer"),
          gpuRss: rss("gpu-process"),
          progress,
        });
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  })();
  const result = await page.evaluate(
    async ({ bundle, model, limits, generate, maxTokens }) => {
      const w = await import(bundle);
      const adapter = await navigator.gpu.requestAdapter();
      const device =
        limits === "adapter"
          ? await w.LlmInference.createWebGpuDevice()
          : await adapter.requestDevice({ label: "wgllm (default limits)" });
      const made = { count: 0, bytes: 0, largest: 0 };
      const real = device.createBuffer.bind(device);
      device.createBuffer = (d) => {
        made.count += 1;
        made.bytes += d.size;
        made.largest = Math.max(made.largest, d.size);
        return real(d);
      };
      const t = performance.now();
      const llm = await w.LlmInference.createFromOptions(await w.FilesetResolver.forGenAiTasks(), {
        baseOptions: { modelAssetPath: model, gpuOptions: { device } },
        maxTokens,
        topK: 1,
        onLoadProgress: (loaded, total, stage) => (globalThis.__progress = { loaded, total, stage }),
      });
      const loadSeconds = (performance.now() - t) / 1000;
      let first;
      if (generate) {
        const g = performance.now();
        let pieces = 0;
        const text = await llm.generateResponse("The quick brown fox", (piece) => {
          pieces += 1;
          if (pieces === 1) llm.cancelProcessing();
        });
        first = { seconds: (performance.now() - g) / 1000, text, stats: llm.lastStats };
      }
      const info = llm.modelInfo ?? null;
      llm.close();
      return {
        loadSeconds,
        first,
        buffers: made,
        limits: { maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize, maxBufferSize: device.limits.maxBufferSize },
        adapter: { vendor: adapter.info.vendor, architecture: adapter.info.architecture },
        kernels: info?.kernels,
        timings: info?.loadTimings ?? null,
      };
    },
    { bundle: "/web/dist/genai_bundle.mjs", model: `/build/bench-models/${path.basename(model)}`, limits, generate, maxTokens },
  );
  sampling = false;
  await sampler;
  const peak = (key) => Math.max(...samples.map((s) => s[key] ?? 0));
  const report = {
    model: path.basename(model),
    fileBytes: statSync(model).size,
    limitsAsked: limits,
    ...result,
    peak: {
      heapUsed: peak("heapUsed"),
      heapTotal: peak("heapTotal"),
      backingStore: peak("backingStore"),
      rendererRss: peak("rendererRss"),
      gpuRss: peak("gpuRss"),
    },
    samples,
    chromium: execFileSync(process.env.WGLLM_CHROMIUM ?? "/usr/bin/chromium", ["--version"]).toString().trim(),
    date: new Date().toISOString(),
  };
  const mib = (n) => `${(n / 2 ** 20).toFixed(0)} MiB`;
  console.log(
    `${report.model}: ${(report.fileBytes / 2 ** 30).toFixed(2)} GiB loaded in ${result.loadSeconds.toFixed(1)} s; ` +
      `${result.buffers.count} buffers, largest ${mib(result.buffers.largest)} (maxStorageBufferBindingSize ${mib(result.limits.maxStorageBufferBindingSize)}), ` +
      `${mib(result.buffers.bytes)} in all; peak JS heap ${mib(report.peak.heapUsed)} used / ${mib(report.peak.heapTotal)}, ` +
      `ArrayBuffers ${report.peak.backingStore === null ? "n/a" : mib(report.peak.backingStore)}, renderer RSS ${mib(report.peak.rendererRss)}, GPU process RSS ${mib(report.peak.gpuRss)}` +
      (result.first ? `; first token after ${result.first.seconds.toFixed(1)} s: ${JSON.stringify(result.first.text)}` : ""),
  );
  if (out) {
    mkdirSync(path.dirname(out), { recursive: true });
    writeFileSync(out, `${JSON.stringify(report, null, 1)}\n`);
  }
} finally {
  await browser.close();
  server.kill();
  rmSync(link, { force: true });
}
