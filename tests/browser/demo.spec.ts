// The demo chat page (web/demo) as a person meets it: `serve-models` (real uvicorn, default model
// SmolLM2-135M-Instruct) serves it, the page loads the model with a progress bar, one question is
// asked through the composer, and the streamed answer equals what Python's LlmInference answers
// to the same chat-formatted prompt with the same options. A screenshot is kept as an artifact.
// Then the same site exported with `serve-models --export-static` and served by a plain static
// file server (python -m http.server: no server logic, no special headers) chats the same way.

import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect, test, type Page } from "@playwright/test";
import { freePort, python, runFixtures, startServeModels, venvBin, waitFor } from "./helpers";
import { REPO } from "./paths";

const QUESTION = "What is the capital of France?";
const MAX_TOKENS = 64;
let stopServer: (() => void) | undefined;
let base = "";
let loras = "";
let expected: { model: string; answer: string };

test.beforeAll(async () => {
  test.setTimeout(300_000);
  const out = path.join(REPO, "build", "browser-test-data", "demo-expected.json");
  runFixtures("demo_fixtures.py", [out, QUESTION, String(MAX_TOKENS)]);
  expected = JSON.parse(readFileSync(out, "utf8"));
  loras = mkdtempSync(path.join(tmpdir(), "wgllm-demo-loras-"));
  const server = await startServeModels(["--loras-dir", loras]);
  base = server.base;
  stopServer = server.stop;
});

test.afterAll(() => {
  stopServer?.();
  if (loras) rmSync(loras, { recursive: true, force: true });
});

/** Load the page at `url`, ask QUESTION, and return the answer shown (after checking no error). */
async function chatOnce(page: Page, url: string): Promise<string> {
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
  // the stats line: the time to first token (prefill), then the decode rate, as lastStats measured them
  const stats = (await page.locator("#stats").textContent()) ?? "";
  const s = await page.evaluate(() => (window as any).wgllmDemo.llm.lastStats);
  const shown = /^First token after (\d+\.\d\d) s \(prefill of (\d+) prompt tokens at (\d+\.\d) tokens\/s, 0 reused from the previous turn\), then (\d+) tokens at (\d+\.\d) tokens\/s \(decode\)/.exec(stats);
  expect(shown, stats).not.toBeNull();
  const [ttft, prefillTokens, prefillRate, decodeTokens, decodeRate] = shown!.slice(1).map(Number);
  expect(prefillTokens).toBe(s.promptTokens); // a first turn reuses nothing
  expect(decodeTokens).toBe(s.generatedTokens - 1); // the first token comes from the prefill
  expect(ttft).toBeCloseTo(s.firstTokenSeconds, 2);
  expect(prefillRate).toBeCloseTo(s.prefillTokens / s.prefillSeconds, 1);
  expect(decodeRate).toBeCloseTo(s.decodeTokens / s.decodeSeconds, 1);
  expect(ttft).toBeGreaterThan(0);
  expect(decodeRate).toBeGreaterThan(0);
  expect(s.prefillSeconds + s.decodeSeconds).toBeLessThanOrEqual(s.seconds); // parts of the call's time
  expect(s.firstTokenSeconds).toBe(s.prefillSeconds); // one response: its prefill is the first token's wait
  expect(errors).toEqual([]);
  await page.screenshot({ path: testInfo.outputPath("demo-chat.png"), fullPage: true });
  await testInfo.attach("demo-chat", { path: testInfo.outputPath("demo-chat.png"), contentType: "image/png" });
});

test("the site exported for static hosting works from a plain static file server", async ({ page }) => {
  test.setTimeout(300_000);
  const site = path.join(mkdtempSync(path.join(tmpdir(), "wgllm-static-")), "site");
  execFileSync(venvBin("serve-models"), ["--export-static", site], { cwd: REPO, stdio: "inherit" });
  const port = await freePort();
  const statics = spawn(python(), ["-m", "http.server", "--bind", "127.0.0.1", "--directory", site, String(port)], { stdio: "ignore" });
  try {
    await waitFor(`http://127.0.0.1:${port}/api/models`, "python -m http.server", () => statics.exitCode === null);
    expect(await chatOnce(page, `http://127.0.0.1:${port}/?maxTokens=${MAX_TOKENS}`)).toBe(expected.answer);
  } finally {
    statics.kill();
    rmSync(path.dirname(site), { recursive: true, force: true });
  }
});
