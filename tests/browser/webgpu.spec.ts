// WebGPU is there: an adapter, its limits (reported), and a real dispatch of shaders/add.wgsl
// taken from the bundle, checked against JavaScript's own sums.

import { expect, test } from "@playwright/test";
import { BUNDLE_URL } from "./paths";

test("navigator.gpu gives an adapter and runs a compute shader from the bundle", async ({ page }, testInfo) => {
  await page.goto("/");
  const result = await page.evaluate(async (bundleUrl) => {
    if (!("gpu" in navigator)) return { error: "navigator.gpu is undefined" };
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) return { error: "requestAdapter() returned null" };
    const limits: Record<string, number> = {};
    for (const key in adapter.limits) limits[key] = (adapter.limits as any)[key];
    const info = { vendor: adapter.info.vendor, architecture: adapter.info.architecture, description: adapter.info.description };

    const { SHADERS } = await import(bundleUrl);
    const device = await adapter.requestDevice();
    const n = 1000;
    const a = Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 100 + 0.25);
    const b = Float32Array.from({ length: n }, (_, i) => i / 7 - 50);
    const buffer = (data: ArrayBufferView | null, size: number, usage: number) => {
      const buf = device.createBuffer({ size, usage, mappedAtCreation: data !== null });
      if (data) {
        new Uint8Array(buf.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
        buf.unmap();
      }
      return buf;
    };
    const params = buffer(new Uint32Array([n, 0, 0, 0]), 16, GPUBufferUsage.UNIFORM);
    const ga = buffer(a, 4 * n, GPUBufferUsage.STORAGE);
    const gb = buffer(b, 4 * n, GPUBufferUsage.STORAGE);
    const poison = new Float32Array(n).fill(NaN);
    const gy = buffer(poison, 4 * n, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
    const readback = buffer(null, 4 * n, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
    device.pushErrorScope("validation");
    const module = device.createShaderModule({ code: SHADERS.add, label: "add.wgsl" });
    const pipeline = device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
    const bindGroup = device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [params, ga, gb, gy].map((buf, binding) => ({ binding, resource: { buffer: buf } })),
    });
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(Math.ceil(n / 256));
    pass.end();
    encoder.copyBufferToBuffer(gy, 0, readback, 0, 4 * n);
    device.queue.submit([encoder.finish()]);
    const validation = await device.popErrorScope();
    await readback.mapAsync(GPUMapMode.READ);
    const y = new Float32Array(readback.getMappedRange().slice(0));
    let worst = 0;
    for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(y[i] - Math.fround(a[i] + b[i])));
    device.destroy();
    return { info, limits, features: [...adapter.features].sort(), validation: validation?.message ?? null, worst };
  }, BUNDLE_URL);

  expect(result.error, "WebGPU adapter").toBeUndefined();
  console.log(`WebGPU adapter: ${JSON.stringify(result.info)} features: ${result.features.join(", ") || "(none)"}`);
  console.log(`limits: ${JSON.stringify(result.limits)}`);
  await testInfo.attach("adapter.json", { body: JSON.stringify(result, null, 2), contentType: "application/json" });
  // the WebGPU spec guarantees at least its default limit (128 MiB) on every adapter
  expect(result.limits.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(128 * 1024 * 1024);
  expect(result.validation).toBeNull();
  expect(result.worst).toBe(0); // f32 addition is exact to the rounding both sides do
});
