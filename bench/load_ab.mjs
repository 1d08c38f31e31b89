// Load time, same-run A/B: the browser engine's Engine.load of one model with bundles built from
// different revisions, in alternating rounds, each load in a freshly launched headless Chromium (so
// no pipeline or shader cache carries over), then two 8-token prefill steps (the first is what a
// first token costs on top of the load; the second, the same work once everything is warm). Where the bundle reports them (Engine.loadTimings), the load's parts.
//
//   node bench/load_ab.mjs MODEL.gguf --variant old=REV --variant new=worktree [--rounds 4] [--json OUT]
//
// A variant is NAME=REV (a git revision: its web/ and shaders/ are archived into build/load-ab/ and
// built there once), NAME=worktree (web/dist as built now: cd web && npm run build) or NAME=FILE.mjs
// (a bundle inside the repository). Round r runs
// the variants in order, reversed on odd rounds. Nothing here asserts a speed.

import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(path.join(repo, "web", "package.json"));
const { chromium } = require("@playwright/test");

const argv = process.argv.slice(2);
const model = argv[0];
const usage = "usage: node bench/load_ab.mjs MODEL.gguf --variant NAME=REV|worktree|FILE.mjs [--variant ...] [--rounds 4] [--json OUT]";
if (!model || model.startsWith("--") || !existsSync(model)) {
  console.error(model && !model.startsWith("--") ? `${model}: no such file\n${usage}` : usage);
  process.exit(2);
}
const values = (name) => argv.flatMap((a, i) => (a === name ? [argv[i + 1]] : []));
const rounds = Number(values("--rounds")[0] ?? 4);
const out = values("--json")[0];
const variants = values("--variant").map((v) => {
  const m = /^([\w.-]+)=(.+)$/.exec(v ?? "");
  if (!m) {
    console.error(`--variant ${v}: expected NAME=REV or NAME=worktree\n${usage}`);
    process.exit(2);
  }
  return { name: m[1], rev: m[2] };
});
if (variants.length < 1 || !Number.isInteger(rounds) || rounds < 1) {
  console.error(usage);
  process.exit(2);
}

/** The bundle of a variant, as a path under the repository (the test server serves the repository). */
function bundle(rev) {
  if (rev === "worktree") return "web/dist/genai_bundle.mjs";
  if (rev.endsWith(".mjs")) {
    if (!existsSync(path.resolve(repo, rev))) throw new Error(`--variant ...=${rev}: no such bundle`);
    return path.relative(repo, path.resolve(repo, rev));
  }
  const sha = execFileSync("git", ["rev-parse", "--verify", `${rev}^{commit}`], { cwd: repo, encoding: "utf8" }).trim();
  const dir = path.join(repo, "build", "load-ab", sha.slice(0, 12));
  const out = path.join(dir, "web", "dist", "genai_bundle.mjs");
  if (!existsSync(out)) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const tar = execFileSync("git", ["archive", sha, "web/src", "web/build.mjs", "web/package.json", "web/tsconfig.json", "shaders"], { cwd: repo, maxBuffer: 1 << 28 });
    execFileSync("tar", ["-x", "-C", dir], { input: tar });
    symlinkSync(path.join(repo, "web", "node_modules"), path.join(dir, "web", "node_modules"));
    execFileSync(process.execPath, [path.join(dir, "web", "build.mjs")], { cwd: path.join(dir, "web"), stdio: "inherit" });
  }
  return path.relative(repo, out);
}
for (const v of variants) v.bundle = bundle(v.rev);

const port = await new Promise((resolve) => {
  const s = net.createServer();
  s.listen(0, "127.0.0.1", () => {
    const p = s.address().port;
    s.close(() => resolve(p));
  });
});
const linkDir = path.join(repo, "build", "bench-models");
mkdirSync(linkDir, { recursive: true });
const link = path.join(linkDir, `load-ab-${process.pid}-${path.basename(model)}`);
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

async function loadOnce(v) {
  const browser = await chromium.launch({
    executablePath: process.env.WGLLM_CHROMIUM ?? "/usr/bin/chromium",
    args: ["--enable-unsafe-webgpu", "--enable-features=Vulkan", "--enable-unsafe-swiftshader", "--no-sandbox",
      "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(0);
    await page.goto(`${base}/`);
    return await page.evaluate(
      async ({ bundleUrl, url }) => {
        const w = await import(bundleUrl);
        const device = await w.LlmInference.createWebGpuDevice();
        const t0 = performance.now();
        const stream = await w.fetchGGUF(url);
        const t1 = performance.now();
        const engine = await w.Engine.load(device, stream, { maxTokens: 64 });
        const t2 = performance.now();
        await engine.sample(Array.from({ length: 8 }, (_, i) => 100 + i), 0, { topK: 1, temperature: 0, seed: 0, step: 0 });
        const t3 = performance.now();
        await engine.sample(Array.from({ length: 8 }, (_, i) => 200 + i), 8, { topK: 1, temperature: 0, seed: 0, step: 1 });
        const t4 = performance.now();
        const timings = engine.loadTimings;
        engine.destroy();
        device.destroy();
        return { load_s: (t2 - t0) / 1000, header_s: (t1 - t0) / 1000, engine_s: (t2 - t1) / 1000, first_step_s: (t3 - t2) / 1000, second_step_s: (t4 - t3) / 1000, timings };
      },
      { bundleUrl: `/${v.bundle}`, url: `/build/bench-models/${path.basename(link)}` },
    );
  } finally {
    await browser.close();
  }
}

const runs = [];
try {
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 ? [...variants].reverse() : variants;
    for (const v of order) {
      const result = await loadOnce(v);
      const run = { round: r, variant: v.name, load_avg: os.loadavg()[0], ...result };
      runs.push(run);
      const t = result.timings;
      const parts = t
        ? ` (allocate ${t.allocate.toFixed(2)}, upload ${t.upload.toFixed(2)} of which read ${t.uploadRead.toFixed(2)}, pipelines ${t.pipelines.toFixed(2)}, waited ${t.pipelineWait.toFixed(2)}, queue ${t.queue.toFixed(2)})`
        : "";
      console.log(`round ${r} ${v.name}: load ${result.load_s.toFixed(2)} s = header ${result.header_s.toFixed(2)} + engine ${result.engine_s.toFixed(2)}${parts}; first step ${result.first_step_s.toFixed(2)} s, second ${result.second_step_s.toFixed(2)} s; load average ${run.load_avg.toFixed(1)}`);
    }
  }
} finally {
  server.kill();
  rmSync(link, { force: true });
}
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const summary = Object.fromEntries(
  variants.map((v) => {
    const mine = runs.filter((x) => x.variant === v.name);
    return [v.name, { rev: v.rev, load_s_median: median(mine.map((x) => x.load_s)), load_s: mine.map((x) => x.load_s), first_step_s_median: median(mine.map((x) => x.first_step_s)) }];
  }),
);
const result = { model, rounds, variants: summary, runs };
console.log(JSON.stringify(summary, null, 2));
if (out) writeFileSync(out, JSON.stringify(result, null, 2) + "\n");
