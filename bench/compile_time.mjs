// Pipeline compile time in headless Chromium (SwiftShader here): for each SHADER:ENTRY[:NAME=VALUE,...]
// given, a freshly launched browser (no shader or pipeline cache carries over) creates a device,
// compiles a trivial pipeline (device start-up out of the figure), then times one
// createComputePipelineAsync of the shader's entry point with those override constants. Rounds
// alternate over the shaders. Prints seconds per round and the median. Nothing here asserts a speed.
//
//   node bench/compile_time.mjs shaders/attention.wgsl:main shaders/sample.wgsl:main:WG_SIZE=256 [--rounds 3] [--json OUT]
//
// A SHADER path may be any WGSL file (a variant made for a probe). Shaders are compiled as written:
// the f16 KV variants and the engine's other text edits are not applied.

import { readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const { chromium } = createRequire(path.join(repo, "web", "package.json"))("@playwright/test");

const argv = process.argv.slice(2);
const value = (name, fallback) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : fallback);
const rounds = Number(value("--rounds", 3));
const out = value("--json");
const specs = argv.filter((a, i) => !a.startsWith("--") && !argv[i - 1]?.startsWith("--")).map((spec) => {
  const [file, entry = "main", consts = ""] = spec.split(":");
  const constants = Object.fromEntries(consts.split(",").filter(Boolean).map((kv) => {
    const [k, v] = kv.split("=");
    if (!k || v === undefined || !Number.isFinite(Number(v))) throw new Error(`${spec}: constants are NAME=NUMBER,...`);
    return [k, Number(v)];
  }));
  return { spec, code: readFileSync(file, "utf8"), entry, constants };
});
if (!specs.length) {
  console.error("usage: node bench/compile_time.mjs SHADER.wgsl:ENTRY[:NAME=VALUE,...] ... [--rounds 3] [--json OUT]");
  process.exit(2);
}

const server = http.createServer((_, res) => res.end("<!doctype html><title>compile time</title>"));
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const url = `http://127.0.0.1:${server.address().port}/`;
const seconds = Object.fromEntries(specs.map((s) => [s.spec, []]));
try {
  for (let r = 0; r < rounds; r++) {
    for (const s of r % 2 ? [...specs].reverse() : specs) {
      const browser = await chromium.launch({
        executablePath: process.env.WGLLM_CHROMIUM ?? "/usr/bin/chromium",
        args: ["--enable-unsafe-webgpu", "--enable-features=Vulkan", "--enable-unsafe-swiftshader", "--no-sandbox"],
      });
      try {
        const page = await browser.newPage();
        await page.goto(url);
        const ms = await page.evaluate(async ({ code, entry, constants }) => {
          const adapter = await navigator.gpu.requestAdapter();
          const device = await adapter.requestDevice({ requiredLimits: { maxStorageBuffersPerShaderStage: adapter.limits.maxStorageBuffersPerShaderStage } });
          const warm = device.createShaderModule({ code: "@compute @workgroup_size(1) fn main() {}" });
          await device.createComputePipelineAsync({ layout: "auto", compute: { module: warm, entryPoint: "main" } });
          const t0 = performance.now();
          const module = device.createShaderModule({ code });
          await device.createComputePipelineAsync({ layout: "auto", compute: { module, entryPoint: entry, constants } });
          return performance.now() - t0;
        }, s);
        seconds[s.spec].push(ms / 1000);
      } finally {
        await browser.close();
      }
    }
  }
} finally {
  server.close();
}
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
for (const [spec, v] of Object.entries(seconds)) console.log(`${spec.padEnd(48)} ${v.map((x) => x.toFixed(3)).join(" ")}   median ${median(v).toFixed(3)} s`);
if (out) writeFileSync(out, JSON.stringify({ rounds, seconds, median: Object.fromEntries(Object.entries(seconds).map(([k, v]) => [k, median(v)])) }, null, 2));
