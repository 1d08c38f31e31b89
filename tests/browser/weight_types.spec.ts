// The GGUF types wgllm reads but (Q5_1 aside) does not write, in Chromium: a tiny Llama whose weights
// are Q5_1, Q2_K, Q3_K, Q5_K, IQ4_NL and IQ4_XS (tests/browser/weight_types_fixtures.py: random valid
// blocks, q/k/v and gate/up mixed in layer 0, stacked and paired in layer 1, a Q3_K tied embedding)
// through the bundle's fetchGGUF + Engine.load (web/src/weights.ts's repacking, its Q3_K and
// Q4_K-style scale decodes, the composed kernels) gives the PYTHON GPU engine's greedy and sampled
// tokens, and all-row and decode logits within gpu_tolerances.MODEL_LOGITS_REL of it and of
// wgllm.reference (the numpy dequantisers), with both kernel families; and the 1-D dequantiser
// (web/src/weights.ts: norms, biases, position tables) bit-identical to quant.dequantize for every type.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { expect, test } from "@playwright/test";
import { BUNDLE_URL, DATA_DIR, DATA_URL, REPO } from "./paths";

const OUT = path.join(DATA_DIR, "weight_types");
const URL = `${DATA_URL}/weight_types/llama-types.gguf`;
let expected: any;

test.beforeAll(() => {
  test.setTimeout(300_000); // a fresh checkout converts the model and runs the Python engine once
  const venv = path.join(REPO, ".venv", "bin", "python");
  const python = process.env.WGLLM_PYTHON ?? (existsSync(venv) ? venv : "python3");
  execFileSync(python, [path.join(REPO, "tests", "browser", "weight_types_fixtures.py"), OUT], { stdio: "inherit", cwd: REPO, timeout: 300_000 });
  expected = JSON.parse(readFileSync(path.join(OUT, "expected.json"), "utf8"));
});

test.beforeEach(async ({ page }) => {
  await page.goto("/");
});

function maxRelError(got: number[], want: number[]): number {
  expect(got.length).toBe(want.length);
  const bad = got.findIndex((x) => !Number.isFinite(x));
  expect(bad, `logit ${bad} is ${got[bad]}`).toBe(-1);
  let err = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    err = Math.max(err, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return err / scale;
}

test("the 1-D dequantiser (norms, biases, position tables) reads every type Python's does, bit-identical to quant.dequantize on random valid blocks", async ({ page }) => {
  const cases: { type: string; n: number; raw: number[]; bits: number[] }[] = expected.dequantize;
  expect(cases.map((c) => c.type)).toEqual(["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"]);
  const got = await page.evaluate(
    async ({ bundle, cases }) => {
      const w = await import(bundle);
      const bits = cases.map((c) => {
        const out: Float32Array = w.dequantize("t.gguf", { name: `v.${c.type}`, typeName: c.type, nElements: c.n }, new Uint8Array(c.raw));
        return Array.from(new Uint32Array(out.buffer, out.byteOffset, out.length));
      });
      let refused = "";
      try {
        w.dequantize("t.gguf", { name: "v.weight", typeName: "Q8_1", nElements: 32 }, new Uint8Array(36));
      } catch (e) {
        refused = (e as Error).message;
      }
      return { bits, types: w.DEQUANTIZED_TYPES, refused };
    },
    { bundle: BUNDLE_URL, cases },
  );
  expect(new Set(got.types)).toEqual(new Set(cases.map((c) => c.type)));
  cases.forEach((c, i) => {
    const bad = got.bits[i].findIndex((b: number, j: number) => b !== c.bits[j]);
    expect(got.bits[i].length, c.type).toBe(c.n);
    expect(bad, `${c.type} element ${bad}: bits ${got.bits[i][bad]}, Python's ${c.bits[bad]}`).toBe(-1);
  });
  expect(got.refused).toBe(`t.gguf: tensor v.weight is Q8_1; wgllm dequantises 1-D tensors and position tables from ${got.types.join(", ")}`);
});

for (const kernels of ["cpu", "gpu"] as const) {
  test(`a tiny Llama of Q5_1, Q2_K, Q3_K, Q5_K, IQ4_NL and IQ4_XS weights gives the Python GPU engine's tokens and logits (${kernels} kernels)`, async ({ page }) => {
    test.setTimeout(120_000);
    expect(new Set(Object.values(expected.types))).toEqual(new Set(["Q5_1", "Q2_K", "Q3_K", "Q5_K", "IQ4_NL", "IQ4_XS"]));
    const want = expected[kernels];
    const s = expected.sampling;
    const got = await page.evaluate(
      async ({ bundle, url, kernels, want, s }) => {
        const w = await import(bundle);
        const adapter = (await navigator.gpu.requestAdapter())!;
        const limits = adapter.limits as unknown as Record<string, number>;
        const device = await adapter.requestDevice({
          requiredLimits: { maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize, maxBufferSize: limits.maxBufferSize },
        });
        const prompt: number[] = want.prompt;
        const load = async (opts: object) => w.Engine.load(device, await w.fetchGGUF(url), { kernels, ...opts });
        let engine = await load({ maxTokens: want.greedy.length + prompt.length });
        if (engine.kernels !== kernels) throw new Error(`ran the ${engine.kernels} kernels, expected ${kernels}`);
        const run = async (n: number, o: { topK: number; temperature: number; seed: number }) => {
          const out = [await engine.sample(prompt, 0, { ...o, step: 0 })];
          while (out.length < n) out.push(await engine.sample([out[out.length - 1]], prompt.length + out.length - 1, { ...o, step: out.length }));
          return out;
        };
        const greedy = await run(want.greedy.length, { topK: 1, temperature: 0, seed: 0 });
        const sampled = await run(want.sampled.length, { topK: s.top_k, temperature: s.temperature, seed: s.seed });
        engine.destroy();
        // every row of a 4-token prefill, then two decode steps (engine_fixtures.tiny_expected)
        engine = await load({ maxTokens: prompt.length, allLogits: true });
        const logits: number[] = [];
        let pos = 0;
        for (const ids of [prompt.slice(0, 4), [prompt[4]], [prompt[5]]]) {
          logits.push(...(await engine.logits(ids, pos)));
          pos += ids.length;
        }
        engine.destroy();
        device.destroy();
        return { greedy, sampled, logits };
      },
      { bundle: BUNDLE_URL, url: URL, kernels, want, s },
    );
    expect(got.greedy, "greedy").toEqual(want.greedy);
    expect(got.sampled, `sampled (top_k ${s.top_k}, temperature ${s.temperature}, seed ${s.seed})`).toEqual(want.sampled);
    expect(maxRelError(got.logits, want.reference_logits), "logits vs wgllm.reference").toBeLessThan(expected.logits_rel);
    expect(maxRelError(got.logits, want.logits), "logits vs the Python GPU engine").toBeLessThan(expected.logits_rel);
  });
}
