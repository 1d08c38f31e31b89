// Chromium started without --enable-unsafe-webgpu: navigator.gpu exists but gives no adapter (a
// browser where WebGPU is off), and a page without navigator.gpu at all (taken away here, as in a
// browser that never had it). LlmInference must say what is missing and how to get it.

import { expect, test } from "@playwright/test";
import { errorOf, inPage } from "./helpers";
import { DATA_URL } from "./paths";

test.use({
  launchOptions: {
    executablePath: process.env.WGLLM_CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  },
});

const MODEL = `${DATA_URL}/api/tiny-gemma2-q8.gguf`; // never fetched: there is no GPU to load it on
test("no adapter and no navigator.gpu give WebGpuUnavailableError with what to do", async ({ page }) => {
  await page.goto("/");
  const got = await inPage(
    page,
    async (w, { model, errorOf }) => {
      const catching = new Function(`return (${errorOf});`)();
      const fileset = await w.FilesetResolver.forGenAiTasks();
      const noAdapter = await catching(() => w.LlmInference.createFromModelPath(fileset, model));
      Object.defineProperty(navigator, "gpu", { value: undefined, configurable: true });
      const noGpu = await catching(() => w.LlmInference.createFromModelPath(fileset, model));
      return { noAdapter, noGpu };
    },
    { model: MODEL, errorOf },
  );
  expect(got.noAdapter).toMatch(/^WebGpuUnavailableError: WebGPU is present but navigator\.gpu\.requestAdapter\(\) returned no adapter.*--enable-unsafe-webgpu/);
  expect(got.noGpu).toMatch(/^WebGpuUnavailableError: this browser exposes no WebGPU \(navigator\.gpu is undefined\)/);
});
