// The bundle's error classes: recognisable by name and class, with actionable messages.

import { expect, test } from "@playwright/test";

test("error classes carry their name and an actionable message", async ({ page }) => {
  await page.goto("/");
  const errors = await page.evaluate(async () => {
    const w = await import("/web/dist/genai_bundle.mjs");
    const made = [
      new w.WebGpuUnavailableError("no-adapter"),
      new w.DeviceLimitError("maxStorageBufferBindingSize", 268435456, 134217728),
      new w.BusyError(),
      new w.PromptTooLongError(1200, 1024),
      new w.ModelFetchError("https://example.com/m.gguf", 403, "Forbidden"),
      new w.ModelFormatError("m.gguf: missing tensor output.weight"),
      new w.DeviceLostError("unknown", "GPU hung"),
    ];
    return made.map((e) => ({ name: e.name, message: e.message, isError: e instanceof Error, isOurs: e instanceof w.WgllmError }));
  });
  expect(errors.map((e) => e.name)).toEqual([
    "WebGpuUnavailableError", "DeviceLimitError", "BusyError", "PromptTooLongError",
    "ModelFetchError", "ModelFormatError", "DeviceLostError",
  ]);
  for (const e of errors) expect([e.isError, e.isOurs], e.name).toEqual([true, true]);
  const [gpu, limit, busy, prompt, fetchError, , lost] = errors.map((e) => e.message);
  expect(gpu).toContain("--enable-unsafe-webgpu");
  expect(limit).toContain("needs maxStorageBufferBindingSize >= 268435456, adapter has 134217728");
  expect(busy).toBe("Previous invocation or loading is still ongoing."); // MediaPipe's wording
  expect(prompt).toMatch(/1200 tokens.*maxTokens is 1024/);
  expect(fetchError).toContain("https://example.com/m.gguf answered HTTP 403 Forbidden");
  expect(lost).toContain("GPU hung");
});
