// The npm package as a user gets it: `npm pack` of web/ gives a tarball with the ES and CommonJS
// bundles, the worker, the types and a README, and no runtime dependencies; a fresh folder outside
// the repository installs it (`npm install ./wgllm-web-*.tgz`, offline), a page there imports it by
// name through esbuild, and Chromium runs a model with it (worker mode, the worker copied from the
// package) to the answer Python's LlmInference gives (tests/browser/api_fixtures.py). The package
// exports VERSION, web/package.json's version, which the wheel carries too (tests/py/test_wheel.py).

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect, test } from "@playwright/test";
import { freePort, runFixtures, waitFor } from "./helpers";
import { DATA_DIR, REPO } from "./paths";

const WEB = path.join(REPO, "web");
const PACKAGE = JSON.parse(readFileSync(path.join(WEB, "package.json"), "utf8"));
const FIXTURES = path.join(DATA_DIR, "api");
let tmp = "";
let packed: { filename: string; files: { path: string }[] };
let server: ChildProcess | undefined;
let base = "";

const npm = (args: string[], cwd: string) => execFileSync("npm", [...args, "--no-audit", "--no-fund"], { cwd, encoding: "utf8", timeout: 120_000 });

test.beforeAll(async () => {
  test.setTimeout(300_000);
  runFixtures("api_fixtures.py", [FIXTURES]);
  tmp = mkdtempSync(path.join(tmpdir(), "wgllm-npm-"));
  // scripts/web-test.sh has just built web/dist: --ignore-scripts skips the prepack rebuild
  packed = JSON.parse(npm(["pack", "--ignore-scripts", "--json", "--pack-destination", tmp], WEB))[0];

  const app = path.join(tmp, "app");
  const site = path.join(app, "site");
  mkdirSync(site, { recursive: true });
  writeFileSync(path.join(app, "package.json"), JSON.stringify({ name: "wgllm-npm-test", private: true }));
  npm(["install", "--offline", path.join(tmp, packed.filename)], app);
  writeFileSync(
    path.join(app, "main.js"),
    `import { FilesetResolver, LlmInference, VERSION } from "wgllm-web";
window.runModel = async ({ model, prompt }) => {
  const genai = await FilesetResolver.forGenAiTasks("https://cdn.jsdelivr.net/npm/@mediapipe/tasks-genai/wasm");
  const llm = await LlmInference.createFromOptions(genai, {
    baseOptions: { modelAssetPath: model }, maxTokens: 48, topK: 1, temperature: 0,
    useWorker: true, workerUrl: "./genai_worker.mjs", // the worker, copied beside the bundled page
  });
  try {
    return { version: VERSION, answer: await llm.generateResponse(prompt) };
  } finally {
    llm.close();
  }
};
`,
  );
  execFileSync(path.join(WEB, "node_modules", ".bin", "esbuild"), ["main.js", "--bundle", "--format=esm", "--outfile=site/app.js", "--log-level=warning"], { cwd: app });
  copyFileSync(path.join(app, "node_modules", "wgllm-web", "dist", "genai_worker.mjs"), path.join(site, "genai_worker.mjs"));
  const expected = JSON.parse(readFileSync(path.join(FIXTURES, "expected.json"), "utf8"));
  copyFileSync(path.join(FIXTURES, expected.model), path.join(site, "model.gguf"));
  writeFileSync(path.join(site, "index.html"), '<!doctype html><meta charset=utf-8><title>wgllm-web from npm</title><script type="module" src="./app.js"></script>\n');

  const port = await freePort();
  server = spawn(process.execPath, [path.join(REPO, "tests", "browser", "server.mjs"), "--port", String(port), "--root", site], { stdio: "ignore" });
  base = `http://127.0.0.1:${port}`;
  await waitFor(`${base}/index.html`, "the page's static server", () => server!.exitCode === null);
});

test.afterAll(() => {
  server?.kill();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

test("npm pack gives the bundles, the worker, the types and a README, and no runtime dependencies", () => {
  expect(packed.filename).toBe(`wgllm-web-${PACKAGE.version}.tgz`);
  const files = packed.files.map((f) => f.path);
  for (const f of ["README.md", "package.json", "dist/genai_bundle.mjs", "dist/genai_bundle.cjs", "dist/genai_worker.mjs", "dist/genai_bundle.d.ts", "dist/index.d.ts", "dist/llm_inference.d.ts"]) {
    expect(files, f).toContain(f);
  }
  expect(files.filter((f) => !f.startsWith("dist/") && f !== "README.md" && f !== "package.json")).toEqual([]);
  const installed = JSON.parse(readFileSync(path.join(tmp, "app", "node_modules", "wgllm-web", "package.json"), "utf8"));
  expect(installed.private).toBeUndefined();
  expect(installed.dependencies ?? {}, "the bundles carry their dependencies (esbuild bundles @huggingface/jinja)").toEqual({});
  // both entry points resolve by name from the installed package, in Node too
  const app = path.join(tmp, "app");
  const node = (args: string[]) => execFileSync(process.execPath, args, { cwd: app, encoding: "utf8" }).trim();
  expect(node(["-e", 'console.log(require("wgllm-web").VERSION)'])).toBe(PACKAGE.version);
  expect(node(["--input-type=module", "-e", 'const m = await import("wgllm-web"); console.log(m.VERSION, typeof m.LlmInference)'])).toBe(`${PACKAGE.version} function`);
});

test("a page that imports the installed package through esbuild runs a model in the browser", async ({ page }) => {
  test.setTimeout(180_000);
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  const expected = JSON.parse(readFileSync(path.join(FIXTURES, "expected.json"), "utf8"));
  await page.goto(`${base}/index.html`);
  await page.waitForFunction(() => typeof (window as any).runModel === "function");
  const got = await page.evaluate(({ prompt }) => (window as any).runModel({ model: "./model.gguf", prompt }), { prompt: expected.prompts[0] });
  expect(got.version).toBe(PACKAGE.version);
  expect(got.answer).toBe(expected.greedy[0]);
  expect(errors).toEqual([]);
});
