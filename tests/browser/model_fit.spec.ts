// A model the device cannot hold is refused from its header, before the download goes on: the
// engine plans every buffer from the header and allocates them all before it reads a weight, so the
// out-of-memory error (GpuOutOfMemoryError: the bytes the model needs, what the device allocated
// before refusing) comes while the fetch has delivered little more than the header, and the fetch is
// cancelled. The model is 7B Llama-shape Q4_0 (4.1 GB, bench/synth_model.py's llama-7b preset): its
// header is real (tests/browser/fit_fixtures.py), its tensor bytes are zeros made up by this spec's
// server as they are asked for, which counts what it sent and sees the connection closed.
// The device is given a memory budget as in llm_inference.spec.ts's out-of-memory test: past it,
// the device's own out-of-memory error (a maxBufferSize buffer SwiftShader refuses) answers.

import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { expect, test } from "@playwright/test";
import { errorOf, inPage, runFixtures } from "./helpers";
import { DATA_DIR } from "./paths";

const OUT = path.join(DATA_DIR, "fit");
const ZEROS = Buffer.alloc(1 << 20);
const CAP = 512 << 20; // a load that does not stop early is cut off here (and fails the test) instead of reading 4 GB

let header: Buffer;
let summary: { data_start: number; file_size: number; weight_bytes: number };

test.beforeAll(() => {
  runFixtures("fit_fixtures.py", [OUT]);
  header = readFileSync(path.join(OUT, "llama-7b-q4_0.header"));
  summary = JSON.parse(readFileSync(path.join(OUT, "llama-7b-q4_0.json"), "utf8"));
});

/** Serves the model at /llama-7b-q4_0.gguf (CORS open: the page is on the test server's origin). */
async function modelServer() {
  const served = { bytes: 0, requests: 0, closedEarly: false, finished: false };
  const server = http.createServer((req, res) => {
    served.requests += 1;
    res.writeHead(200, {
      "Content-Type": "application/octet-stream",
      "Content-Length": String(summary.file_size),
      "Access-Control-Allow-Origin": "*",
      "Cache-Control": "no-store",
    });
    res.on("close", () => (served.closedEarly = !res.writableFinished));
    served.bytes += header.length;
    res.write(header);
    const pump = () => {
      while (!res.destroyed) {
        const left = summary.file_size - served.bytes;
        if (left <= 0) return res.end(() => (served.finished = true));
        if (served.bytes >= CAP) return res.destroy();
        const chunk = ZEROS.subarray(0, Math.min(left, ZEROS.length));
        served.bytes += chunk.length;
        if (!res.write(chunk)) return res.once("drain", pump);
      }
    };
    pump();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/llama-7b-q4_0.gguf`;
  return { url, served, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

for (const cacheModel of [false, true]) {
test(`a model larger than the device's memory is refused from its header, the download cancelled${cacheModel ? " (cacheModel: before the download into the cache starts)" : ""}`, async ({ page }) => {
  await page.goto("/");
  const server = await modelServer();
  try {
    const got = await inPage(
      page,
      async (w, { model, errorOf, cacheModel }) => {
        const catching = new Function(`return (${errorOf});`)();
        if (cacheModel) await w.deleteCachedModel();
        const device: GPUDevice = await w.LlmInference.createWebGpuDevice();
        const real = device.createBuffer.bind(device);
        const budget = 64 << 20; // a device with 64 MiB to give (see the header comment)
        let given = 0;
        (device as any).createBuffer = (d: GPUBufferDescriptor) => {
          if (!(d.usage & (GPUBufferUsage.STORAGE | GPUBufferUsage.MAP_READ))) return real(d);
          if (given + d.size > budget) real({ size: device.limits.maxBufferSize, usage: GPUBufferUsage.STORAGE }).destroy();
          else given += d.size;
          return real(d);
        };
        let loaded = 0;
        const fileset = await w.FilesetResolver.forGenAiTasks();
        const error = await catching(() =>
          w.LlmInference.createFromOptions(fileset, {
            baseOptions: { modelAssetPath: model, gpuOptions: { device } },
            maxTokens: 64,
            cacheModel,
            onLoadProgress: (n: number) => (loaded = n),
          }),
        );
        const cached = await (await caches.open(w.MODEL_CACHE_NAME)).match(model);
        return { error, loaded, left: w.GpuContext.of(device).allocated, cached: !!cached };
      },
      { model: server.url, errorOf, cacheModel },
    );
    expect(got.cached, "nothing was put in the cache").toBe(false);
    // the server sees the connection closed: wait a moment for its close event
    for (let i = 0; i < 50 && !server.served.closedEarly; i++) await new Promise((r) => setTimeout(r, 100));
    const m = /^GpuOutOfMemoryError: (\S+) \(weights (\d+) bytes, activations and KV cache for maxTokens = 64 (\d+) bytes\) needs (\d+) bytes of GPU buffers; the device allocated (\d+) bytes of them, then refused (\d+) bytes for \S+: tensor (\S+) \(.*OUT_OF_DEVICE_MEMORY/s.exec(got.error);
    expect(m, got.error).not.toBeNull();
    const [, source, weights, activations, needed, allocated, refused, tensor] = m!;
    expect(source).toBe(server.url);
    expect(Number(weights), "the weights' bytes are the file's tensor bytes (Python's count)").toBe(summary.weight_bytes);
    expect(Number(needed)).toBe(Number(weights) + Number(activations));
    expect(Number(allocated)).toBeLessThanOrEqual(64 << 20);
    expect(Number(allocated) + Number(refused)).toBeGreaterThan(64 << 20);
    expect(tensor, "the first weight allocated is the token embedding").toBe("token_embd.weight");
    expect(got.error).toContain("WebGPU does not report a GPU's memory size");
    expect(got.left, "the failed load freed what it had allocated").toBe(0);
    // the download: little past the header was read or even sent, and the connection was dropped
    expect(got.loaded, "bytes the loader read").toBeLessThan(summary.data_start + (16 << 20));
    expect(server.served.requests).toBe(1);
    expect(server.served.closedEarly, "the fetch was cancelled").toBe(true);
    expect(server.served.finished).toBe(false);
    expect(server.served.bytes, `bytes sent of ${summary.file_size}`).toBeLessThan(64 << 20);
  } finally {
    await server.close();
  }
});
}
