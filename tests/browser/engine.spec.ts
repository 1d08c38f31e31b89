// The TypeScript WebGPU engine (web/src/engine.ts, through the built bundle) in Chromium against the
// PYTHON GPU engine (wgllm.gpu.engine.GpuEngine on lavapipe) running the same shaders on the same
// files: greedy and seeded sampled tokens identical, all-row and decode logits within
// gpu_tolerances.MODEL_LOGITS_REL, for tiny models of all twelve architectures (F32/F16/Q8_0/Q4_0
// each at least twice; the StableLM's F16 ffn_down rows of 80 are not whole 32-element units), a tiny Llama with
// Llama-3's RoPE scaling (rope_freqs), a tiny Mistral (window 5) and a tiny Llama of n_embd 80 (F16 rows of 80 and 112), the real SmolLM2
// (Q4_1), Gemma-3 (Q4_K, Q6_K) and Qwen2.5-Coder (qwen2; Q5_0, Q8_0 too); weights split into many binding chunks; and the refusals:
// unsupported architecture (gemma4: its decoder, with what is missing) or tensor type, rows the kernels cannot take, a qwen2 file missing a bias,
// a qwen3 file missing a head norm, phi3 files with a mis-shaped ffn_up or rope factors (before any GPU
// buffer exists), limits, token ids, top_k, a lost device.
// Expected values come from tests/browser/engine_fixtures.py (run in beforeAll, cached by digest).

import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { expect, test, type Page } from "@playwright/test";
import { BUNDLE_URL, DATA_DIR, DATA_URL, REPO } from "./paths";

const OUT = path.join(DATA_DIR, "engine");
const URL = `${DATA_URL}/engine`;
let expected: any;

test.beforeAll(() => {
  test.setTimeout(600_000); // a fresh checkout converts the models and runs the Python engine once
  const venv = path.join(REPO, ".venv", "bin", "python");
  const python = process.env.WGLLM_PYTHON ?? (existsSync(venv) ? venv : "python3");
  execFileSync(python, [path.join(REPO, "tests", "browser", "engine_fixtures.py"), OUT], { stdio: "inherit", cwd: REPO, timeout: 600_000 });
  expected = JSON.parse(readFileSync(path.join(OUT, "expected.json"), "utf8"));
});

test.beforeEach(async ({ page }) => {
  await page.goto("/");
});

interface RunSpec {
  url: string;
  maxTokens: number;
  allLogits?: boolean;
  maxWeightBinding?: number;
  kernels?: "gpu" | "cpu";
  prompt: number[];
  greedy?: number; // tokens of a greedy continuation
  sampled?: { n: number; topK: number; temperature: number; seed: number };
  logitSteps?: number[][]; // run these id groups in turn (prefill, then decodes) and return their logits
  top1Only?: boolean; // return [argmax, max] of each logits row instead of the row
  subgroups?: boolean; // on a device with the subgroups feature (else one without: the workgroup-memory paths)
}

/** Load `url` with fetchGGUF + Engine.load and run `spec` in the page, on one adapter-limits device
 * per page (its compiled pipelines are reused by every model: SwiftShader compiles slowly). */
async function runInPage(page: Page, spec: RunSpec): Promise<{ greedy?: number[]; sampled?: number[]; logits?: number[]; top1?: number[][] }> {
  return page.evaluate(
    async ({ bundle, spec }) => {
      const w = await import(bundle);
      const g = globalThis as unknown as { engineTestDevices?: Record<string, Promise<GPUDevice>> };
      const key = spec.subgroups ? "subgroups" : "plain";
      (g.engineTestDevices ??= {})[key] ??= navigator.gpu.requestAdapter().then((adapter) => {
        const limits = adapter!.limits as unknown as Record<string, number>;
        if (spec.subgroups && !adapter!.features.has("subgroups")) throw new Error("this adapter has no subgroups");
        return adapter!.requestDevice({
          requiredLimits: { maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize, maxBufferSize: limits.maxBufferSize },
          requiredFeatures: spec.subgroups ? ["subgroups"] : [],
        });
      });
      const device = await g.engineTestDevices[key];
      if (w.GpuContext.of(device).hasSubgroups !== !!spec.subgroups) throw new Error(`the device's subgroups: ${w.GpuContext.of(device).hasSubgroups}`);
      const engine = await w.Engine.load(device, await w.fetchGGUF(spec.url), {
        maxTokens: spec.maxTokens, allLogits: spec.allLogits, maxWeightBinding: spec.maxWeightBinding, kernels: spec.kernels,
      });
      if (engine.kernels !== (spec.kernels ?? "cpu")) throw new Error(`ran the ${engine.kernels} kernels, expected ${spec.kernels ?? "cpu (SwiftShader's own)"}`);
      const run = async (n: number, s: { topK: number; temperature: number; seed: number }) => {
        const out = [await engine.sample(spec.prompt, 0, { ...s, step: 0 })];
        while (out.length < n) out.push(await engine.sample([out[out.length - 1]], spec.prompt.length + out.length - 1, { ...s, step: out.length }));
        return out;
      };
      const result: { greedy?: number[]; sampled?: number[]; logits?: number[]; top1?: number[][] } = {};
      if (spec.greedy) result.greedy = await run(spec.greedy, { topK: 1, temperature: 0, seed: 0 });
      if (spec.sampled) result.sampled = await run(spec.sampled.n, spec.sampled);
      if (spec.logitSteps) {
        const rows: Float32Array[] = [];
        let pos = 0;
        for (const ids of spec.logitSteps) {
          rows.push(await engine.logits(ids, pos));
          pos += ids.length;
        }
        if (spec.top1Only) {
          const all = rows.flatMap((r) => Array.from({ length: (r.length / engine.config.nVocab) }, (_, i) => r.subarray(i * engine.config.nVocab, (i + 1) * engine.config.nVocab)));
          result.top1 = all.map((row) => {
            let best = 0;
            for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
            return [best, row[best], row.length];
          });
        } else result.logits = rows.flatMap((r) => Array.from(r));
      }
      engine.destroy();
      return result;
    },
    { bundle: BUNDLE_URL, spec },
  );
}

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

/** gpu_tolerances.MODEL_LOGITS_REL holds here too since rope.wgsl computes its own sin/cos
 * (SwiftShader's builtins are off by ~2e-4; see shader_precision.spec.ts): measured <= 1.2e-6. */
const BROWSER_LOGITS_REL = () => expected.logits_rel;

function checkLogits(file: string, got: number[], want: any): void {
  expect(maxRelError(got, want.reference_logits), `${file} logits vs wgllm.reference`).toBeLessThan(BROWSER_LOGITS_REL());
  expect(maxRelError(got, want.logits), `${file} logits vs the Python GPU engine`).toBeLessThan(BROWSER_LOGITS_REL());
}

for (const kernels of ["cpu", "gpu"] as const) {
  test(`tiny models of all twelve architectures (Phi-3 with LongRoPE and a window, SmolLM3's NoPE layer), Llama-3's RoPE scaling, a Mistral (llama with a window of 5) and float rows not in 32-element units (StableLM n_ff 80, Llama n_embd 80) give the Python GPU engine's tokens and logits (${kernels} kernels)`, async ({ page }) => {
    test.setTimeout(300_000); // 15 models: the gpu family's took 165 s on SwiftShader on a loaded 2-core machine
    const table = kernels === "cpu" ? expected.tiny : expected.tiny_gpu;
    const files = Object.keys(table);
    expect(files.length).toBe(15);
    expect(files).toContain("stablelm-8.gguf"); // n_ff 80: ffn_down's F16 rows zero-padded to 96
    expect(files).toContain("llama80-16.gguf");
    for (const file of files) {
      const want = table[file];
      const { prompt } = want;
      const s = expected.sampling;
      const tokens = await runInPage(page, {
        url: `${URL}/${file}`,
        maxTokens: want.greedy.length + prompt.length,
        kernels,
        prompt,
        greedy: want.greedy.length,
        sampled: { n: want.sampled.length, topK: s.top_k, temperature: s.temperature, seed: s.seed },
      });
      expect(tokens.greedy, `${file} greedy`).toEqual(want.greedy);
      expect(tokens.sampled, `${file} sampled (top_k ${s.top_k}, temperature ${s.temperature}, seed ${s.seed})`).toEqual(want.sampled);
      const rows = await runInPage(page, {
        url: `${URL}/${file}`, maxTokens: prompt.length, allLogits: true, kernels, prompt, logitSteps: [prompt.slice(0, 4), [prompt[4]], [prompt[5]]],
      });
      checkLogits(file, rows.logits!, want);
    }
  });
}

test("on a device with subgroups the gpu family's matvec runs its subgroupAdd variant (SwiftShader: 4 lanes) and gives the Python GPU engine's tokens and logits", async ({ page }) => {
  test.setTimeout(180_000);
  const variants = await page.evaluate(async (bundle) => {
    const w = await import(bundle);
    return Object.keys(w.SHADERS).filter((op: string) => op.startsWith("matmul_")).map((op: string) => {
      const text: string = w.subgroupVariant(op);
      return { op, enable: text.startsWith("enable subgroups;\n"), add: text.includes("subgroupAdd(acc)"), left: text.split("\n").filter((l: string) => l.trimEnd().endsWith("// !sg") || l.startsWith("//sg ")).length };
    });
  }, BUNDLE_URL);
  // every weight type's matmul: the composed files on disk (shaders/matmul_<type>.wgsl)
  const matmuls = readdirSync(path.join(REPO, "shaders")).filter((f) => /^matmul_\w+\.wgsl$/.test(f));
  expect(variants.map((v) => `${v.op}.wgsl`).sort()).toEqual(matmuls.sort());
  expect(variants.length).toBeGreaterThanOrEqual(15);
  for (const v of variants) expect(v, v.op).toEqual({ op: v.op, enable: true, add: true, left: 0 });
  for (const file of Object.keys(expected.tiny_gpu).slice(0, 3)) {
    const want = expected.tiny_gpu[file];
    const { prompt } = want;
    const tokens = await runInPage(page, { url: `${URL}/${file}`, maxTokens: want.greedy.length + prompt.length, kernels: "gpu", subgroups: true, prompt, greedy: want.greedy.length });
    expect(tokens.greedy, `${file} greedy`).toEqual(want.greedy);
    const rows = await runInPage(page, {
      url: `${URL}/${file}`, maxTokens: prompt.length, allLogits: true, kernels: "gpu", subgroups: true, prompt, logitSteps: [prompt.slice(0, 4), [prompt[4]], [prompt[5]]],
    });
    checkLogits(file, rows.logits!, want);
  }
});

test("the kernel family: cpu on SwiftShader by default, an unknown kernels value refused by name", async ({ page }) => {
  const got = await page.evaluate(async ({ bundle }) => {
    const w = await import(bundle);
    const adapter = (await navigator.gpu.requestAdapter())!;
    const device = await adapter.requestDevice();
    let refused = "";
    try {
      w.resolveKernels("fast", device);
    } catch (e) {
      refused = `${(e as Error).name}: ${(e as Error).message}`;
    }
    const info = adapter.info;
    return { chosen: w.resolveKernels(undefined, device), forced: w.resolveKernels("gpu", device), refused, cpu: w.isCpuAdapter(info), arch: info.architecture };
  }, { bundle: BUNDLE_URL });
  expect(got.arch).toBe("swiftshader");
  expect(got.cpu).toBe(true);
  expect(got.chosen).toBe("cpu");
  expect(got.forced).toBe("gpu");
  expect(got.refused).toContain('kernels = "fast"');
});

test("weights split into many binding chunks give the same tokens and logits", async ({ page }) => {
  // 2 KiB bindings: token_embd (320 x 64 F32 rows of 256 bytes) becomes 40 chunks, each matrix several
  for (const [file, kernels] of [["gemma2-32.gguf", "cpu"], ["stablelm-8.gguf", "cpu"], ["llama-4.gguf", "gpu"]] as const) {
    const want = (kernels === "cpu" ? expected.tiny : expected.tiny_gpu)[file];
    const { prompt } = want;
    const got = await runInPage(page, {
      url: `${URL}/${file}`, maxTokens: prompt.length, allLogits: true, maxWeightBinding: 2048, kernels, prompt,
      greedy: 1, logitSteps: [prompt.slice(0, 4), [prompt[4]], [prompt[5]]],
    });
    expect(got.greedy, file).toEqual(want.greedy.slice(0, 1));
    checkLogits(file, got.logits!, want);
  }
  const sizes = await page.evaluate(async ({ bundle, url }) => {
    const w = await import(bundle);
    const stream = await w.fetchGGUF(url);
    await stream.cancel();
    return stream.header.tensors.filter((t: any) => t.shape.length === 2).map((t: any) => t.nBytes);
  }, { bundle: BUNDLE_URL, url: `${URL}/gemma2-32.gguf` });
  expect(Math.min(...sizes), "every matrix spans several 2 KiB chunks").toBeGreaterThan(2 * 2048);
});

for (const kernels of ["cpu", "gpu"] as const) {
  // the gpu family on SwiftShader (barriers and workgroup memory emulated on the CPU) is several times
  // slower than the cpu family: 8 tokens of it
  test(`SmolLM2-135M Q4_1: greedy tokens as the Python GPU engine (${kernels} kernels)`, async ({ page }) => {
    test.setTimeout(kernels === "cpu" ? 150_000 : 300_000);
    const want = expected.smollm2;
    const greedy = kernels === "cpu" ? want.greedy : want.greedy_gpu.slice(0, 8);
    const got = await runInPage(page, {
      url: `${URL}/smollm2.gguf`, maxTokens: want.prompt.length + greedy.length, kernels, prompt: want.prompt, greedy: greedy.length,
    });
    expect(got.greedy).toEqual(greedy);
  });

  for (const [stem, title] of [["gemma3", "Gemma-3 270M Q4_K_M (Q4_K, Q6_K)"], ["qwen25", "Qwen2.5-Coder-0.5B Q4_K_M (qwen2: Q/K/V biases; Q4_K, Q6_K, Q5_0, Q8_0)"]]) {
    test(`${title}: top-1 at every prompt position as the Python GPU engine (${kernels} kernels)`, async ({ page }) => {
      test.setTimeout(kernels === "cpu" ? 150_000 : 300_000);
      const want = kernels === "cpu" ? expected[stem] : expected[`${stem}_gpu`];
      const n = want.prompt.length;
      const got = await runInPage(page, {
        url: `${URL}/${stem}.gguf`, maxTokens: n, allLogits: true, kernels, prompt: want.prompt, logitSteps: [want.prompt], top1Only: true,
      });
      expect(got.top1!.length).toBe(n);
      got.top1!.forEach(([best, value, vocab], r) => {
        expect(vocab).toBe(want.vocab);
        expect(best, `position ${r}`).toBe(want.top1[r]);
        expect(Math.abs(value - want.top1_logit[r]) / want.row_max_abs[r], `position ${r}`).toBeLessThan(BROWSER_LOGITS_REL());
      });
    });
  }
}

test("refusals: architecture, tensor type, rows, a missing bias or head norm, mis-shaped ffn_up or rope factors, limits, token ids, top_k, a lost device", async ({ page }) => {
  const result = await page.evaluate(async ({ bundle, url }) => {
    const w = await import(bundle);
    const adapter = (await navigator.gpu.requestAdapter())!;
    const limits = adapter.limits as unknown as Record<string, number>;
    const device = await adapter.requestDevice({
      requiredLimits: { maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize, maxBufferSize: limits.maxBufferSize },
    });
    let created = 0;
    const createBuffer = device.createBuffer.bind(device);
    device.createBuffer = (d: GPUBufferDescriptor) => {
      created++;
      return createBuffer(d);
    };
    const caught = async (f: () => Promise<unknown>) => {
      try {
        await f();
        return { name: "none", message: "resolved" };
      } catch (e: any) {
        return { name: e.name, message: e.message, limit: e.limit, required: e.required, available: e.available };
      }
    };
    const load = (file: string, maxTokens = 16, allLogits = false, dev: GPUDevice = device) =>
      caught(async () => w.Engine.load(dev, await w.fetchGGUF(`${url}/${file}`), { maxTokens, allLogits }));
    const out: Record<string, any> = {};
    out.arch = await load("unsupported_arch.gguf");
    out.gemma4 = await load("gemma4.gguf");
    out.type = await load("unsupported_type.gguf");
    out.rows = await load("stablelm-78.gguf");
    out.noBias = await load("qwen2-no-bias.gguf");
    out.badUp = await load("phi3-bad-up.gguf");
    out.noKNorm = await load("qwen3-no-knorm.gguf");
    out.badFactors = await load("phi3-bad-factors.gguf");
    out.buffersBeforeRefusal = created;
    // a device on WebGPU's default limits (maxStorageBufferBindingSize 128 MiB): 400000 rows of
    // 320 logits (512 MB) cannot be bound; refused before anything is allocated
    const small = await (await navigator.gpu.requestAdapter())!.requestDevice();
    out.smallBinding = small.limits.maxStorageBufferBindingSize;
    out.logitsLimit = await load("llama-4.gguf", 400_000, true, small);
    small.destroy();
    const engine = await w.Engine.load(device, await w.fetchGGUF(`${url}/llama-4.gguf`), { maxTokens: 8 });
    const greedy = { topK: 1, temperature: 0, seed: 0, step: 0 };
    out.badId = await caught(() => engine.sample([1, engine.config.nVocab], 0, greedy));
    out.negativeId = await caught(() => engine.sample([-1], 0, greedy));
    out.tooLong = await caught(() => engine.sample([1, 2, 3], 6, greedy));
    out.topK = await caught(() => engine.sample([1], 0, { topK: 65, temperature: 0.8, seed: 1, step: 0 }));
    out.afterErrors = await engine.sample([5, 6, 7], 0, greedy); // still usable
    const pending = engine.sample([5, 6, 7], 0, greedy);
    device.destroy();
    out.pending = await caught(() => pending);
    out.later = await caught(() => engine.logits([1], 0));
    return out;
  }, { bundle: BUNDLE_URL, url: URL });

  const file = (name: string) => `${URL}/${name}`;
  expect(result.arch.name).toBe("ModelFormatError");
  expect(result.arch.message).toContain(file("unsupported_arch.gguf"));
  expect(result.arch.message).toContain("unsupported architecture 'mamba'");
  // the same message as Python's load_model (tests/py/test_gemma4.py)
  expect(result.gemma4.name).toBe("ModelFormatError");
  expect(result.gemma4.message).toBe(
    `${file("gemma4.gguf")}: the gemma4 text decoder is not supported yet; missing: ` +
      "head size and KV head count per layer (global heads of 512 > the attention kernels' 256); " +
      "KV cache shared across layers (attention.shared_kv_layers); per-layer token embeddings (per_layer_token_embd); " +
      "mixture-of-experts FFN (ffn_gate_inp, ffn_gate_up_exps, ffn_down_exps); FFN width per layer (see docs/gemma4.md)",
  );
  expect(result.type.name).toBe("ModelFormatError");
  expect(result.type.message).toContain(file("unsupported_type.gguf"));
  expect(result.type.message).toMatch(/token_embd\.weight.*Q8_1/);
  expect(result.rows.name).toBe("ModelFormatError");
  // float rows of any k % 4 == 0 run (stablelm-8.gguf's 80 above); 78 is not whole vec4s of x (Python: test_gpu_engine.py)
  expect(result.rows.message).toBe(
    `${file("stablelm-78.gguf")}: tensor blk.0.ffn_down.weight: F16 weight of shape [64, 78]: k = 78 is not a multiple of 4 (the kernels read x rows of k as vec4s)`,
  );
  expect(result.noBias.name).toBe("ModelFormatError");
  expect(result.noBias.message).toBe(`${file("qwen2-no-bias.gguf")}: tensor blk.1.attn_k.bias is missing; qwen2 has Q, K and V biases on every layer`);
  expect(result.badUp.name).toBe("ModelFormatError");
  expect(result.badUp.message).toBe(
    `${file("phi3-bad-up.gguf")}: tensor blk.1.ffn_up.weight has shape (128, 64), expected (256, n_embd): phi3's gate and up rows (2 x feed_forward_length 128)`,
  );
  // the same messages as Python's load_model (tests/py/test_qwen.py, test_phi3.py)
  expect(result.noKNorm.name).toBe("ModelFormatError");
  expect(result.noKNorm.message).toBe(`${file("qwen3-no-knorm.gguf")}: tensor blk.1.attn_k_norm.weight is missing; qwen3 has an RMSNorm over each head of Q and K on every layer`);
  expect(result.badFactors.name).toBe("ModelFormatError");
  expect(result.badFactors.message).toBe(`${file("phi3-bad-factors.gguf")}: tensor rope_factors_long.weight has shape (3,), expected (6,) (half of phi3's 12 rotary dimensions)`);
  expect(result.buffersBeforeRefusal, "no GPU buffer is made for a refused file").toBe(0);

  expect(result.smallBinding).toBe(134217728);
  expect(result.logitsLimit.name).toBe("DeviceLimitError");
  expect(["maxStorageBufferBindingSize", "maxBufferSize"]).toContain(result.logitsLimit.limit);
  expect(result.logitsLimit.required).toBeGreaterThan(result.logitsLimit.available);
  expect(result.logitsLimit.message).toContain("maxTokens = 400000");
  expect(result.logitsLimit.message).toContain(file("llama-4.gguf"));

  expect(result.badId.message).toBe(`token id ${expected.tiny["llama-4.gguf"].vocab} is outside the vocabulary of ${expected.tiny["llama-4.gguf"].vocab}`);
  expect(result.negativeId.message).toContain("token id -1 is outside the vocabulary");
  expect(result.tooLong.message).toBe("9 tokens do not fit in maxTokens=8");
  expect(result.topK.message).toBe("top_k = 65 is above the GPU sampler's maximum of 64");
  expect(typeof result.afterErrors).toBe("number");
  expect(result.pending.name).toBe("DeviceLostError");
  expect(result.later.name).toBe("DeviceLostError");
});
