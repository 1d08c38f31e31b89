// Every shaders/*.wgsl (globbed now, so new files are covered) compiles in Chromium's Tint, which
// is stricter than naga (wgpu-py's compiler): shader module and a `layout: "auto"` compute
// pipeline for each entry point, with the pipeline overrides' defaults, on a device with the
// adapter's own limits (as the engine requests). Files that `enable f16;` can only compile where
// the adapter has shader-f16; elsewhere they are reported, not counted.
// The bundle must carry the same files, byte for byte (build.mjs globs the same folder).

import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { expect, test } from "@playwright/test";
import { BUNDLE_URL, SHADERS_DIR } from "./paths";

interface ShaderFile {
  file: string;
  code: string;
  entries: string[];
  f16: boolean;
}

function shaderFiles(): ShaderFile[] {
  return readdirSync(SHADERS_DIR)
    .filter((f) => f.endsWith(".wgsl"))
    .sort()
    .map((file) => {
      const code = readFileSync(path.join(SHADERS_DIR, file), "utf8");
      const noComments = code.replace(/\/\/[^\n]*/g, "");
      const entries = [...noComments.matchAll(/@compute\b[\s\S]*?\bfn\s+([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1]);
      return { file, code, entries, f16: /^\s*enable\s+[^;]*\bf16\b/m.test(noComments) };
    });
}

test("every shaders/*.wgsl compiles in Chromium (Tint)", async ({ page }, testInfo) => {
  test.setTimeout(240_000); // SwiftShader compiles every entry point of both kernel families
  const files = shaderFiles();
  expect(files.length).toBeGreaterThan(0);
  for (const f of files) expect(f.entries, `${f.file} has no @compute entry point`).not.toEqual([]);

  await page.goto("/");
  const run = await page.evaluate(async (files: ShaderFile[]) => {
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) throw new Error("no WebGPU adapter");
    const hasF16 = adapter.features.has("shader-f16");
    const requiredLimits: Record<string, number> = {};
    for (const key in adapter.limits) requiredLimits[key] = (adapter.limits as any)[key];
    const device = await adapter.requestDevice({ requiredFeatures: hasF16 ? ["shader-f16"] : [], requiredLimits });
    const results: { file: string; f16: boolean; errors: string[] }[] = [];
    for (const f of files) {
      const errors: string[] = [];
      device.pushErrorScope("validation");
      const module = device.createShaderModule({ code: f.code, label: f.file });
      const info = await module.getCompilationInfo();
      for (const m of info.messages) {
        if (m.type === "error") errors.push(`${f.file}:${m.lineNum}:${m.linePos}: ${m.message}`);
      }
      if (errors.length === 0) {
        // a file's entry points compile at the same time (the matmul files have four, two per kernel family)
        const made = await Promise.allSettled(
          f.entries.map((entryPoint) => device.createComputePipelineAsync({ label: `${f.file}:${entryPoint}`, layout: "auto", compute: { module, entryPoint } })),
        );
        made.forEach((r, i) => {
          if (r.status === "rejected") errors.push(`${f.file} entry ${f.entries[i]}: ${(r.reason as Error).message}`);
        });
      }
      const scope = await device.popErrorScope();
      if (scope && errors.length === 0) errors.push(`${f.file}: ${scope.message}`);
      results.push({ file: f.file, f16: f.f16, errors });
    }
    device.destroy();
    return { hasF16, results };
  }, files);

  const f16Waived = run.results.filter((r) => r.f16 && !run.hasF16);
  const counted = run.results.filter((r) => !(r.f16 && !run.hasF16));
  const failures = counted.filter((r) => r.errors.length > 0);
  console.log(
    `compiled ${counted.length - failures.length}/${counted.length} shader files in Tint` +
      ` (${files.reduce((n, f) => n + f.entries.length, 0)} entry points); adapter shader-f16: ${run.hasF16}`,
  );
  for (const r of f16Waived) {
    const status = r.errors.length ? `rejected: ${r.errors[0].slice(0, 200)}` : "compiled";
    console.log(`needs shader-f16, which this adapter lacks, not counted: ${r.file} (${status})`);
    testInfo.annotations.push({ type: "needs shader-f16", description: r.file });
  }
  expect(failures.flatMap((r) => r.errors), "Tint errors").toEqual([]);
  expect(counted.length).toBeGreaterThan(0);
});

test("the bundle carries every shaders/*.wgsl verbatim", async ({ page }) => {
  const onDisk = Object.fromEntries(shaderFiles().map((f) => [f.file.slice(0, -".wgsl".length), f.code]));
  await page.goto("/");
  const inBundle = await page.evaluate(async (url) => (await import(url)).SHADERS, BUNDLE_URL);
  expect(Object.keys(inBundle).sort(), "run `npm run build` in web/ after adding a shader").toEqual(Object.keys(onDisk).sort());
  for (const [op, code] of Object.entries(onDisk)) expect(inBundle[op], `shaders/${op}.wgsl in the bundle`).toBe(code);
});
