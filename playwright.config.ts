// Browser tests (tests/browser) on Debian's Chromium with WebGPU on SwiftShader, headless.
// Run through scripts/web-test.sh, which builds web/dist first; @playwright/test lives in
// web/node_modules (the script puts it on NODE_PATH). Never `playwright install`: no browser downloads.
//
// WebGPU flags, checked on Chromium 156 headless here: --enable-unsafe-webgpu alone gives an
// adapter (Google SwiftShader: no shader-f16, maxStorageBufferBindingSize 1 GiB) once the page is a
// secure context (http://127.0.0.1 is; about:blank and data: URLs have no navigator.gpu). Without
// it there is no adapter; --enable-features=Vulkan, --enable-unsafe-swiftshader,
// --use-angle=swiftshader and --use-webgpu-adapter=swiftshader change nothing on their own or
// with it. Vulkan and unsafe-swiftshader are kept: they select a real Vulkan GPU where one exists
// and keep the SwiftShader fallback allowed.

import { execFileSync } from "node:child_process";
import { defineConfig } from "@playwright/test";

// One free port for the whole run: the config is evaluated again in each worker, which inherit env.
process.env.WGLLM_TEST_PORT ??= execFileSync(process.execPath, [
  "-e",
  "const s = require('net').createServer(); s.listen(0, '127.0.0.1', () => { console.log(s.address().port); s.close(); });",
]).toString().trim();
const baseURL = `http://127.0.0.1:${process.env.WGLLM_TEST_PORT}`;

export default defineConfig({
  testDir: "tests/browser",
  outputDir: "test-results/browser",
  globalSetup: "./tests/browser/global_setup.ts",
  workers: 1,
  fullyParallel: false,
  forbidOnly: true,
  retries: 0,
  timeout: 90_000,
  reporter: [["list"]],
  use: {
    baseURL,
    headless: true,
    screenshot: "only-on-failure",
    trace: "retain-on-failure",
    launchOptions: {
      executablePath: process.env.WGLLM_CHROMIUM ?? "/usr/bin/chromium",
      args: [
        "--enable-unsafe-webgpu",
        "--enable-features=Vulkan",
        "--enable-unsafe-swiftshader",
        "--no-sandbox",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
      ],
    },
  },
  webServer: {
    command: `node tests/browser/server.mjs --port ${process.env.WGLLM_TEST_PORT}`,
    url: `${baseURL}/`,
    reuseExistingServer: false,
    timeout: 20_000,
    stdout: "ignore",
  },
});
