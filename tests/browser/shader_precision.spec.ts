// The position-dependent and transcendental kernels (rope main, attention, softcap,
// gelu_tanh/gelu_erf, swiglu/geglu, rms_norm/layer_norm) run in Chromium's WebGPU
// (SwiftShader here) through plain WebGPU calls on the bundle's shaderSource(op), with the
// bindings, Params and grids of tests/py/test_shaders.py, on random inputs written by
// tests/browser/shader_precision_fixtures.py, and are held to the same tolerance table
// (gpu_tolerances.TOLERANCES) against the float64 reference as on lavapipe.
// Why: SwiftShader's builtins are looser than lavapipe's, within what WGSL allows. Measured here
// on 65536 points per range (max error against JS's float64 Math): sin/cos are off by up to
// 1.9e-4 absolute on [-pi, pi] and anywhere beyond (WGSL allows 2^-11), tanh by 2.6e-3 relative
// near 0, while exp (6e-7 relative on [-10, 0]), exp2, log2, pow, sqrt, inverseSqrt and division
// stay within ~1e-6. rope's sin/cos made the browser engine drift from the reference with the
// position (row 0 has angle 0); rope now reduces the angle and evaluates its own polynomials.

import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { expect, test } from "@playwright/test";
import { BUNDLE_URL, DATA_DIR, DATA_URL, REPO } from "./paths";

const OUT = path.join(DATA_DIR, "shader_precision");
const URL = `${DATA_URL}/shader_precision`;

interface CaseResult {
  name: string;
  op: string;
  maxRel: number; // max |gpu - ref| / max |ref|
  excess: number; // max |gpu - ref| / (rtol |ref| + atol): the test_shaders.check criterion is excess <= 1
  nonFinite: number; // outputs that are NaN/inf where the reference is finite
  poisonChanged: number; // words outside the output rows that the kernel overwrote
}

test.beforeAll(() => {
  const venv = path.join(REPO, ".venv", "bin", "python");
  const python = process.env.WGLLM_PYTHON ?? (existsSync(venv) ? venv : "python3");
  execFileSync(python, [path.join(REPO, "tests", "browser", "shader_precision_fixtures.py"), OUT], { stdio: "inherit", cwd: REPO });
});

test("position-dependent kernels match the float64 reference within the lavapipe tolerances", async ({ page }) => {
  test.setTimeout(120_000);
  await page.goto("/");
  const results: CaseResult[] = await page.evaluate(
    async ({ bundle, url }) => {
      const w = await import(bundle);
      const adapter = await navigator.gpu.requestAdapter();
      const limits = adapter!.limits as unknown as Record<string, number>;
      const device = await adapter!.requestDevice({ requiredLimits: { maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize } });
      const cases = await (await fetch(`${url}/cases.json`)).json();
      const modules = new Map<string, GPUShaderModule>();
      const out: CaseResult[] = [];
      for (const c of cases) {
        const blob = await (await fetch(`${url}/${c.file}`)).arrayBuffer();
        if (!modules.has(c.op)) modules.set(c.op, device.createShaderModule({ code: w.shaderSource(c.op), label: c.op }));
        device.pushErrorScope("validation");
        const pipeline = device.createComputePipeline({ layout: "auto", compute: { module: modules.get(c.op)!, entryPoint: c.entry } });
        const buffers: GPUBuffer[] = [];
        const reads: { buffer: GPUBuffer; readback: GPUBuffer; binding: any }[] = [];
        for (const b of c.bindings) {
          const usage = b.role === "uniform" ? GPUBufferUsage.UNIFORM : GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC;
          const buffer = device.createBuffer({ size: b.bytes, usage: usage | GPUBufferUsage.COPY_DST });
          device.queue.writeBuffer(buffer, 0, blob, b.offset, b.bytes);
          buffers.push(buffer);
          if (b.role === "output") {
            reads.push({ buffer, readback: device.createBuffer({ size: b.bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST }), binding: b });
          }
        }
        const enc = device.createCommandEncoder();
        const pass = enc.beginComputePass();
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, device.createBindGroup({
          layout: pipeline.getBindGroupLayout(0),
          entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
        }));
        pass.dispatchWorkgroups(c.grid[0], c.grid[1], c.grid[2]);
        pass.end();
        for (const r of reads) enc.copyBufferToBuffer(r.buffer, 0, r.readback, 0, r.binding.bytes);
        device.queue.submit([enc.finish()]);
        const err = await device.popErrorScope();
        if (err) throw new Error(`${c.name}: ${err.message}`);
        let maxErr = 0, maxRef = 0, excess = 0, nonFinite = 0, poisonChanged = 0;
        for (const r of reads) {
          await r.readback.mapAsync(GPUMapMode.READ);
          const bits = new Uint32Array(r.readback.getMappedRange().slice(0, r.binding.words * 4));
          const got = new Float32Array(bits.buffer);
          const want = new Float32Array(blob, r.binding.want.offset, r.binding.words);
          const initial = new Uint32Array(blob, r.binding.offset, r.binding.words);
          for (let i = 0; i < want.length; i++) if (!Number.isNaN(want[i])) maxRef = Math.max(maxRef, Math.abs(want[i]));
          const atol = Math.max(c.atol_rel * maxRef, c.atol_floor);
          for (let i = 0; i < want.length; i++) {
            if (Number.isNaN(want[i])) {
              if (bits[i] !== initial[i]) poisonChanged++;
            } else if (!Number.isFinite(got[i])) {
              nonFinite++;
            } else {
              const e = Math.abs(got[i] - want[i]);
              maxErr = Math.max(maxErr, e);
              excess = Math.max(excess, e / (c.rtol * Math.abs(want[i]) + atol));
            }
          }
        }
        for (const b of buffers) b.destroy();
        for (const r of reads) r.readback.destroy();
        out.push({ name: c.name, op: c.op, maxRel: maxErr / maxRef, excess, nonFinite, poisonChanged });
      }
      device.destroy();
      return out;
    },
    { bundle: BUNDLE_URL, url: URL },
  );

  const perOp = new Map<string, CaseResult>();
  for (const r of results) if (r.maxRel >= (perOp.get(r.op)?.maxRel ?? -1)) perOp.set(r.op, r);
  console.log("max relative error per op (max |gpu - ref| / max |ref|), its share of the tolerance, and where:");
  for (const [op, r] of perOp) console.log(`  ${op} ${r.maxRel.toExponential(2)} (${r.excess.toFixed(2)}x) ${r.name}`);
  // the cases held per element (atol only the floor): excess * rtol is their largest error relative to the element itself
  for (const r of results) if (r.name.endsWith("per element")) console.log(`  ${r.name}: ${r.excess.toFixed(3)}x its tolerance`);
  const failing = results.filter((r) => r.excess > 1 || r.nonFinite > 0 || r.poisonChanged > 0);
  for (const r of failing) console.log(`  ${r.name}: max rel ${r.maxRel.toExponential(2)}, ${r.excess.toFixed(2)}x the tolerance, ${r.nonFinite} non-finite, ${r.poisonChanged} words written outside`);
  const written = JSON.parse(readFileSync(path.join(OUT, "cases.json"), "utf8")); // every case the fixture script wrote ran
  expect(results.length).toBe(written.length);
  expect(results.length).toBeGreaterThan(30);
  expect(perOp.size, "ops covered").toBe(9);
  expect(failing.map((r) => `${r.name}: ${r.excess.toFixed(2)}x tolerance, ${r.nonFinite} non-finite, ${r.poisonChanged} outside`)).toEqual([]);
});
