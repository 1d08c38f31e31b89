// The demo chat page (web/demo) as a person meets it: `serve-models` (real uvicorn, default model
// SmolLM2-135M-Instruct) serves it, the page loads the model with a progress bar, one question is
// asked through the composer, and the streamed answer equals what Python's LlmInference answers
// to the same chat-formatted prompt with the same options. A screenshot is kept as an artifact.
// Then the same site exported with `serve-models --export-static` and served by a plain static
// file server (python -m http.server: no server logic, no special headers) chats the same way.

import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect, test } from "@playwright/test";
import { REPO } from "./paths";

const QUESTION = "What is the capital of France?";
const MAX_TOKENS = 64;
const venvBin = (name: string) => path.join(REPO, ".venv", "bin", name);

let server: ChildProcess | undefined;
let base = "";
let loras = "";
let expected: { answer: string };

async function freePort(): Promise<number> {
  const net = await import("node:net");
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

test.beforeAll(async () => {
  test.setTimeout(300_000);
  const python = existsSync(venvBin("python")) ? venvBin("python") : "python3";
  const out = path.join(REPO, "build", "browser-test-data", "demo-expected.json");
  execFileSync(python, [path.join(REPO, "tests", "browser", "demo_fixtures.py"), out, QUESTION, String(MAX_TOKENS)], { stdio: "inherit", cwd: REPO });
  expected = JSON.parse(readFileSync(out, "utf8"));
  loras = mkdtempSync(path.join(tmpdir(), "wgllm-demo-loras-"));
  const port = await freePort();
  server = spawn(venvBin("serve-models"), ["--port", String(port), "--loras-dir", loras], { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  server.stdout!.on("data", (d) => (log += d));
  server.stderr!.on("data", (d) => (log += d));
  base = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${base}/api/models`)).ok) break;
    } catch {
      /* not up yet */
    }
    if (i > 600 || server.exitCode !== null) throw new Error(`serve-models did not start:\n${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
});

test.afterAll(() => {
  server?.kill();
  if (loras) rmSync(loras, { recursive: true, force: true });
});

/** Load the page at `url`, ask QUESTION, and return the answer shown (after checking no error). */
async function chatOnce(page: import("@playwright/test").Page, url: string): Promise<string> {
  await page.goto(url);
  await page.waitForFunction(() => (window as any).wgllmDemo.ready || (window as any).wgllmDemo.error, null, { timeout: 240_000 });
  expect(await page.evaluate(() => (window as any).wgllmDemo.error)).toBeNull();
  await page.locator("#prompt").fill(QUESTION);
  await page.locator("#prompt").press("Enter");
  await page.waitForFunction(() => (window as any).wgllmDemo.turns === 1 || (window as any).wgllmDemo.error, null, { timeout: 240_000 });
  expect(await page.evaluate(() => (window as any).wgllmDemo.error)).toBeNull();
  return (await page.locator("#messages li.assistant").textContent()) ?? "";
}

test("the demo loads SmolLM2, chats one turn and shows tokens/s", async ({ page }, testInfo) => {
  test.setTimeout(300_000);
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${base}/?maxTokens=${MAX_TOKENS}`);
  await expect(page.locator("#model option")).toHaveCount(1);
  expect(await page.locator("#model option").first().textContent()).toContain(expected.model.replace(/\.gguf$/, ""));
  await page.waitForFunction(() => (window as any).wgllmDemo.ready || (window as any).wgllmDemo.error, null, { timeout: 240_000 });
  expect(await page.evaluate(() => (window as any).wgllmDemo.error)).toBeNull();
  await expect(page.locator("#status")).toContainText("Ready");

  await page.locator("#prompt").fill(QUESTION);
  await page.locator("#prompt").press("Enter");
  await expect(page.locator("#stop")).toBeEnabled(); // a stop button while it answers
  await page.waitForFunction(() => (window as any).wgllmDemo.turns === 1 || (window as any).wgllmDemo.error, null, { timeout: 240_000 });
  expect(await page.evaluate(() => (window as any).wgllmDemo.error)).toBeNull();

  await expect(page.locator("#messages li.user")).toHaveText(QUESTION);
  expect(await page.locator("#messages li.assistant").textContent()).toBe(expected.answer);
  await expect(page.locator("#stats")).toContainText(/tokens\/s/);
  expect(errors).toEqual([]);
  await page.screenshot({ path: testInfo.outputPath("demo-chat.png"), fullPage: true });
  await testInfo.attach("demo-chat", { path: testInfo.outputPath("demo-chat.png"), contentType: "image/png" });
});

test("the site exported for static hosting works from a plain static file server", async ({ page }) => {
  test.setTimeout(300_000);
  const site = path.join(mkdtempSync(path.join(tmpdir(), "wgllm-static-")), "site");
  const python = existsSync(venvBin("python")) ? venvBin("python") : "python3";
  execFileSync(venvBin("serve-models"), ["--export-static", site], { cwd: REPO, stdio: "inherit" });
  const port = await freePort();
  const statics = spawn(python, ["-m", "http.server", "--bind", "127.0.0.1", "--directory", site, String(port)], { stdio: "ignore" });
  try {
    for (let i = 0; ; i++) {
      try {
        if ((await fetch(`http://127.0.0.1:${port}/api/models`)).ok) break;
      } catch {
        /* not up yet */
      }
      if (i > 100) throw new Error("python -m http.server did not start");
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(await chatOnce(page, `http://127.0.0.1:${port}/?maxTokens=${MAX_TOKENS}`)).toBe(expected.answer);
  } finally {
    statics.kill();
    rmSync(path.dirname(site), { recursive: true, force: true });
  }
});
