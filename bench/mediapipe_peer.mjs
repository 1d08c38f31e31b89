// The MediaPipe peer benchmark (issue 14): MediaPipe's @mediapipe/tasks-genai and wgllm's drop-in
// on the same random-weight Gemma-2B, in one headless Chromium (Debian's, WebGPU on SwiftShader),
// from one page (bench/mediapipe/peer.html) whose import line is the only difference. Engines
// alternate (mediapipe, wgllm, mediapipe, wgllm, ...), each in a fresh browser, and every run
// reports load s, time to first token s, decode tok/s and the peak resident memory of the browser's
// whole process tree (sampled from /proc every 250 ms).
//
//   node bench/mediapipe_peer.mjs [--cache DIR] [--bundle DIST --bundle-commit SHA] [--rounds 2]
//                                 [--gen-tokens 12] [--engines mediapipe,wgllm] [--json OUT]
//
// DIR (default $WGLLM_BENCH_CACHE or ~/.cache/wgllm/mediapipe-peer) holds what
// bench/mediapipe_peer.sh made: the .bin, the GGUF, npm/node_modules/@mediapipe/tasks-genai. DIST
// (default web/dist; the script builds one from the committed HEAD) is copied into DIR at the start,
// so a rebuild during the run changes nothing. Nothing here asserts a speed; it exits 1
// when a page did not answer or gave another number of tokens than asked for.

import { spawn, execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(path.join(repo, "web", "package.json"));
const { chromium } = require("@playwright/test");

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
}
const cache = path.resolve(arg("--cache", process.env.WGLLM_BENCH_CACHE ?? path.join(process.env.WGLLM_CACHE ?? path.join(os.homedir(), ".cache", "wgllm"), "mediapipe-peer")));
const bundle = path.resolve(arg("--bundle", path.join(repo, "web", "dist")));
const bundleCommit = arg("--bundle-commit");
const rounds = Number(arg("--rounds", 2));
const genTokens = Number(arg("--gen-tokens", 12));
const engines = arg("--engines", "mediapipe,wgllm").split(",");
// 16 pieces of the trained tokenizer (17 with the start token): maxTokens is 17 + genTokens, so
// another --prompt must be 16 pieces too
const prompt = arg("--prompt", "The quick brown fox jumps over the lazy dog, and then it runs home.");
const day = new Date().toISOString().slice(0, 10);
const out = arg("--json", path.join(repo, "bench", "results", `${day}-chromium-swiftshader-gemma2b-mediapipe-peer.json`));
const models = {
  mediapipe: "gemma-2b-random-mediapipe-gpu-int4-int8.bin",
  wgllm: "gemma-2b-random-q4_0-q8_0.gguf",
};
const mediapipeDir = path.join(cache, "npm", "node_modules", "@mediapipe", "tasks-genai");
for (const f of [...Object.values(models).map((m) => path.join(cache, m)), path.join(mediapipeDir, "genai_bundle.mjs"), path.join(bundle, "genai_bundle.mjs")]) {
  if (!existsSync(f)) {
    console.error(`missing ${f}: run bench/mediapipe_peer.sh (it makes the models and installs the packages)`);
    process.exit(2);
  }
}

// The served folder: four links and a copy of the bundle.
const www = path.join(cache, "www");
rmSync(www, { recursive: true, force: true });
mkdirSync(www);
rmSync(path.join(cache, "wgllm-dist"), { recursive: true, force: true });
cpSync(bundle, path.join(cache, "wgllm-dist"), { recursive: true });
symlinkSync(path.join(cache, "wgllm-dist"), path.join(www, "wgllm"));
symlinkSync(mediapipeDir, path.join(www, "mediapipe"));
symlinkSync(path.join(repo, "bench", "mediapipe"), path.join(www, "peer"));
symlinkSync(cache, path.join(www, "models"));

const port = await new Promise((resolve) => {
  const s = net.createServer();
  s.listen(0, "127.0.0.1", () => {
    const p = s.address().port;
    s.close(() => resolve(p));
  });
});
const server = spawn(process.execPath, [path.join(repo, "tests", "browser", "server.mjs"), "--port", String(port), "--root", www], { stdio: "ignore" });
const base = `http://127.0.0.1:${port}`;
let serverTree = [];
for (let i = 0; ; i++) {
  try {
    if ((await fetch(`${base}/`)).ok) break;
  } catch {
    if (i > 100) throw new Error("the server did not start");
    await new Promise((r) => setTimeout(r, 100));
  }
}
serverTree = tree(server.pid);

function tree(root) {
  const children = new Map();
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push(Number(pid));
    } catch {} // gone
  }
  const pids = [root];
  for (let i = 0; i < pids.length; i++) pids.push(...(children.get(pids[i]) ?? []));
  return pids;
}
// Resident memory of the browser's process tree, summed over its processes: RSS from statm (cheap:
// every 250 ms) counts shared pages once per process; PSS from smaps_rollup shares them out (the
// tree's real footprint) but walks page tables (0.1 s for a GPU process holding 2 GB, as much CPU as
// the engines get), so it is read every 4 s only, when the tree's process ids are listed again.
const PAGE = 4096;
function memory(pids, withPss) {
  let rss = 0, pss = withPss ? 0 : null, gpu = 0, renderer = 0;
  for (const pid of pids) {
    try {
      const resident = Number(readFileSync(`/proc/${pid}/statm`, "utf8").split(" ")[1]) * PAGE;
      rss += resident;
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      if (cmd.includes("--type=gpu-process")) gpu += resident;
      if (cmd.includes("--type=renderer")) renderer += resident;
      if (withPss) pss += Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"))?.[1] ?? 0) * 1024;
    } catch {} // gone
  }
  return { rss, pss, gpu, renderer };
}

const flags = ["--enable-unsafe-webgpu", "--enable-features=Vulkan", "--enable-unsafe-swiftshader", "--no-sandbox",
  "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"];

async function runOnce(engine) {
  const browser = await chromium.launch({ executablePath: process.env.WGLLM_CHROMIUM ?? "/usr/bin/chromium", args: flags });
  // Playwright starts Chromium as this process's child; the server's subtree is left out.
  const pid = process.pid;
  const peak = { rss: 0, pss: 0, gpu: 0, renderer: 0 };
  let ticks = 0;
  let pids = [];
  const sample = () => {
    const full = ticks++ % 16 === 0;
    if (full) pids = tree(pid).filter((p) => p !== pid && !serverTree.includes(p));
    const m = memory(pids, full);
    for (const k of Object.keys(peak)) if (m[k] !== null) peak[k] = Math.max(peak[k], m[k]);
  };
  const timer = setInterval(sample, 250);
  const load = os.loadavg();
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(0);
    page.on("response", (res) => res.status() >= 400 && console.error(`  [${engine} page] ${res.status()} ${res.url()}`));
    page.on("console", (m) => m.type() === "error" && console.error(`  [${engine} page] ${m.text()}`));
    const q = new URLSearchParams({ engine, model: `/models/${models[engine]}`, maxTokens: String(17 + genTokens), prompt });
    await page.goto(`${base}/peer/peer.html?${q}`);
    await page.waitForFunction(() => window.peerResult !== undefined);
    const r = await page.evaluate(() => window.peerResult);
    ticks = 0;
    sample();
    if (r.error) return { engine, error: r.error };
    // Tokens per listener call: wgllm calls once a token (and says how many ids it sampled).
    // MediaPipe's .bin path hands over its text every few decode steps (3 here), not per token; its
    // calls can be counted in tokens only when every generated token is one character, which holds
    // when its answer has genTokens characters (checked against wgllm's ids in the notes).
    const steps = r.calls.filter(([, chars, done]) => !done || chars > 0); // the last call may be an empty "done"
    const perCall = engine === "wgllm" ? steps.map(() => 1) : r.answer.length === genTokens ? steps.map(([, chars]) => chars) : null;
    const generated = engine === "wgllm" ? r.tokens : perCall ? perCall.reduce((a, b) => a + b, 0) : null;
    const [firstMs] = steps[0] ?? [null];
    const lastMs = steps.at(-1)?.[0];
    const decodeTokS = perCall && steps.length > 1 ? (generated - perCall[0]) / ((lastMs - firstMs) / 1000) : null;
    return {
      engine,
      browser: `chromium ${browser.version()}`,
      load_s: r.loadS,
      // the first text the page gets; for MediaPipe that is its first 3 tokens
      time_to_first_text_s: firstMs / 1000,
      // the first token alone: the first call less the decode steps it carried beyond one
      time_to_first_token_s: perCall && decodeTokS ? firstMs / 1000 - (perCall[0] - 1) / decodeTokS : null,
      decode_tok_s: decodeTokS,
      tokens_per_call: perCall,
      generate_s: r.totalS,
      prompt_size_in_tokens: r.promptTokens,
      generated_tokens: generated,
      token_ids: r.ids,
      listener_calls: r.calls.length,
      calls_ms_chars_done: r.calls.map(([ms, chars, done]) => [Math.round(ms), chars, done]),
      answer: r.answer,
      answer_size_in_tokens: r.answerTokens,
      peak_rss_bytes_all_processes: peak.rss,
      peak_pss_bytes_all_processes: peak.pss, // sampled every 4 s
      peak_rss_bytes_gpu_process: peak.gpu,
      peak_rss_bytes_renderers: peak.renderer,
      load_average_before: load.map((x) => +x.toFixed(2)),
      load_average_after: os.loadavg().map((x) => +x.toFixed(2)),
      answered: r.answer.length > 0 && generated === genTokens,
    };
  } finally {
    clearInterval(timer);
    await browser.close();
  }
}

const git = (...a) => { try { return execFileSync("git", ["-C", repo, ...a]).toString().trim(); } catch { return null; } };
const runs = [];
try {
  for (let round = 1; round <= rounds; round++) {
    for (const engine of engines) {
      const r = { round, ...(await runOnce(engine)) };
      runs.push(r);
      const gb = (b) => (b / 1e9).toFixed(2);
      console.log(r.error ? `round ${round} ${engine}: ${r.error}` :
        `round ${round} ${engine}: load ${r.load_s.toFixed(1)} s, first token ${r.time_to_first_token_s?.toFixed(1)} s ` +
        `(first text ${r.time_to_first_text_s.toFixed(1)} s), ` +
        `decode ${r.decode_tok_s?.toFixed(3)} tok/s, ${r.generated_tokens} tokens, peak RSS ${gb(r.peak_rss_bytes_all_processes)} GB ` +
        `(PSS ${gb(r.peak_pss_bytes_all_processes)} GB), answered: ${r.answered}`);
    }
  }
} finally {
  server.kill();
}
const report = {
  what: "issue 14's MediaPipe peer: same random-weight Gemma-2B (int4 attention/FFN, int8 embedding), one page, import line switched",
  date: new Date().toISOString(),
  machine: `${os.cpus().length} x ${os.cpus()[0]?.model}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB`,
  wgllm_commit: git("rev-parse", "HEAD"),
  // the bundle: built from a commit (the script's), or the work tree's web/dist and its changes
  wgllm_bundle: bundleCommit ? { built_from_commit: bundleCommit } :
    { dir: bundle, worktree_changes: git("status", "--porcelain", "--", "web/src", "shaders") },
  mediapipe_npm: JSON.parse(readFileSync(path.join(mediapipeDir, "package.json"), "utf8")).version,
  models: Object.fromEntries(Object.entries(models).map(([k, f]) => [k, { file: f, bytes: statSync(path.join(cache, f)).size }])),
  prompt,
  gen_tokens: genTokens,
  max_tokens: 17 + genTokens,
  runs,
  // the two engines' answers, per round: the same text means the same greedy tokens in practice
  answers_equal_by_round: Array.from({ length: rounds }, (_, i) => {
    const [a, b] = ["mediapipe", "wgllm"].map((e) => runs.find((r) => r.round === i + 1 && r.engine === e)?.answer);
    return a !== undefined && a === b;
  }),
};
mkdirSync(path.dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify(report, null, 2) + "\n");
console.log(`wrote ${out}`);
process.exit(runs.every((r) => r.answered) ? 0 : 1);
