// The demo page as a person meets it, for tests that run outside Playwright's test runner
// (tests/py/test_wheel.py, which starts `serve-models` from a freshly installed wheel): Chromium
// loads URL, waits for the model, asks QUESTION through the composer, and this prints one JSON line
// {models, answer, version, error, pageErrors}: the model picker's entries, the streamed answer, the
// VERSION the served bundle exports, and the page's error (null when none).
//   node tests/browser/demo_chat.mjs URL QUESTION
// Chromium and its WebGPU flags are those of playwright.config.ts (see there why these flags).

import { createRequire } from "node:module";

const require = createRequire(new URL("../../web/package.json", import.meta.url)); // web/node_modules
const { chromium } = require("playwright-core");

const [url, question] = process.argv.slice(2);
if (!url || !question) {
  console.error("usage: node tests/browser/demo_chat.mjs URL QUESTION");
  process.exit(2);
}
const TIMEOUT_MS = 240_000;

const browser = await chromium.launch({
  executablePath: process.env.WGLLM_CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--enable-unsafe-webgpu", "--enable-features=Vulkan", "--enable-unsafe-swiftshader", "--no-sandbox",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});
try {
  const page = await browser.newPage();
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  const done = (key) => page.waitForFunction((k) => window.wgllmDemo[k] || window.wgllmDemo.error, key, { timeout: TIMEOUT_MS });
  await page.goto(url);
  await done("ready");
  let error = await page.evaluate(() => window.wgllmDemo.error);
  let answer = null;
  if (error === null) {
    await page.locator("#prompt").fill(question);
    await page.locator("#prompt").press("Enter");
    await done("turns");
    error = await page.evaluate(() => window.wgllmDemo.error);
    answer = await page.locator("#messages li.assistant").textContent();
  }
  const models = await page.locator("#model option").allTextContents();
  const version = await page.evaluate(async () => (await import("/dist/genai_bundle.mjs")).VERSION);
  console.log(JSON.stringify({ models, answer, version, error: error === null ? null : String(error), pageErrors }));
} finally {
  await browser.close();
}
