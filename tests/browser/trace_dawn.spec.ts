// One program in two engines, checked where it is made: for every tiny fixture model (every
// architecture) and a spread of options (both kernel families, LoRA ranks, allLogits, an f32 KV
// cache, weights bound in row chunks, the fusions switched off), the browser engine's model config and launch trace (Engine.trace: every launch's shader,
// entry, constants, f16-KV variant, grid, Params words and bindings by buffer name and size, for a
// prefill and two decode steps) must be the Python engine's (GpuEngine.trace), launch for launch.
// A difference is reported by case, step, launch index and field, so a drift names its place instead
// of showing up as a wrong token. The TS engine runs in Node on Dawn (dawn_engine.mjs) over the same
// kind of adapter as Python's (lavapipe, shader-f16), so limits and the KV type agree.

import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { expect, test } from "@playwright/test";
import { python, runFixtures, runOnDawn } from "./helpers";
import { DATA_DIR, REPO } from "./paths";

const OUT = path.join(DATA_DIR, "trace");
const LAVAPIPE = path.join(REPO, "build", "lavapipe-dawn");

const snake = (key: string) => key.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase());

/** JSON with object keys in snake_case (the TS config's camelCase names as Python's). */
function snakeKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(snakeKeys);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [snake(k), snakeKeys(x)]));
  return v;
}

/** JSON with object keys sorted (Python's dataclass order and the TS object's may differ). */
const show = (v: unknown): string =>
  JSON.stringify(v, (_k, x) => (x && typeof x === "object" && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : 1))) : x));

/** The first place two configs differ: "config.<key>: Python … browser …", or null. */
function configDifference(py: Record<string, unknown>, ts: Record<string, unknown>): string | null {
  for (const key of new Set([...Object.keys(py), ...Object.keys(ts)])) {
    if (show(py[key]) !== show(ts[key])) return `config.${key}: Python ${show(py[key])}, browser ${show(ts[key])}`;
  }
  return null;
}

/** The first launch where two traces differ, with the field and the shaders around it, or null. */
function traceDifference(py: any[], ts: any[]): string | null {
  const around = (t: any[], i: number) => t.slice(Math.max(0, i - 2), i + 3).map((l) => `${l.shader}:${l.entry}`).join(", ");
  for (let i = 0; i < Math.max(py.length, ts.length); i++) {
    if (!py[i] || !ts[i]) return `launch ${i}: only ${py[i] ? "Python" : "the browser"} has it (${show(py[i] ?? ts[i])}); Python has ${py.length} launches, the browser ${ts.length}`;
    for (const field of ["shader", "entry", "constants", "kv_f16", "grid", "params", "bindings"]) {
      if (show(py[i][field]) !== show(ts[i][field])) {
        return `launch ${i} (Python ${around(py, i)} | browser ${around(ts, i)}) ${field}: Python ${show(py[i][field])}, browser ${show(ts[i][field])}`;
      }
    }
  }
  return null;
}

test.beforeAll(() => {
  execFileSync("bash", [path.join(REPO, "scripts", "lavapipe-for-dawn.sh"), LAVAPIPE], { stdio: "inherit", timeout: 300_000 });
  runFixtures("trace_fixtures.py", [OUT], 900_000);
});

test("every fixture model and option: the browser engine's config and launch trace are the Python engine's", async () => {
  test.setTimeout(600_000);
  const expected = JSON.parse(readFileSync(path.join(OUT, "expected.json"), "utf8"));
  const cases: any[] = expected.cases;
  expect(cases.length).toBeGreaterThanOrEqual(2 * 14);
  const traces = cases.map((c) => ({
    file: path.join(OUT, c.file),
    options: { maxTokens: c.max_tokens, kernels: c.options.kernels, loraRanks: c.options.lora_ranks, allLogits: c.options.all_logits, forceF32: c.options.force_f32, maxWeightBinding: c.options.max_weight_binding,
      stackQkv: c.options.stack_qkv, fuseResidual: c.options.fuse_residual, fuseGlu: c.options.fuse_glu, fuseRopeKv: c.options.fuse_rope_kv, fuseNorm: c.options.fuse_norm },
    steps: expected.steps,
  }));
  const got = runOnDawn(LAVAPIPE, OUT, "traces", { traces });
  expect(got.adapter.shaderF16, "Dawn's adapter has shader-f16, as Python's lavapipe does").toBe(true);
  const differences: string[] = [];
  cases.forEach((c, j) => {
    const name = `${c.file} ${show(c.options)}`;
    const ts = got.traces[j];
    const config = configDifference(c.config, snakeKeys(ts.config) as Record<string, unknown>);
    if (config) differences.push(`${name}: ${config}`);
    for (const step of Object.keys(c.traces)) {
      expect(c.traces[step].length, `${name} step ${step}: Python traced launches`).toBeGreaterThan(5);
      const d = traceDifference(c.traces[step], ts.traces[step]);
      if (d) differences.push(`${name} step n,pos0 = ${step}: ${d}`);
    }
  });
  expect(differences, differences.join("\n")).toEqual([]);
});

// The named checkpoints of a prefill (Engine.checkpoints, what wgllm diff compares), per model and
// kernel family: every one bit-identical to the Python engine's (the same WGSL on the same kind of
// adapter), the first that is not named.
test("every fixture model, both families: the browser engine's checkpoints are the Python engine's, bit for bit", async () => {
  test.setTimeout(600_000);
  const expected = JSON.parse(readFileSync(path.join(OUT, "expected.json"), "utf8"));
  const cases: any[] = expected.checkpoints;
  expect(cases.length).toBe(2 * 14);
  const jobs = cases.map((c) => ({ file: path.join(OUT, c.file), options: { maxTokens: c.options.max_tokens, kernels: c.options.kernels, allLogits: true }, ids: c.ids }));
  const got = runOnDawn(LAVAPIPE, OUT, "checkpoints", { checkpoints: jobs });
  const differences: string[] = [];
  cases.forEach((c, j) => {
    const ts: { name: string; width: number; f32: string }[] = got.checkpoints[j];
    expect(ts.map((t) => t.name), c.file).toEqual(Object.keys(c.digests));
    const digest = (t: { f32: string }) => createHash("sha256").update(Buffer.from(t.f32, "base64")).digest("hex");
    const first = ts.find((t) => digest(t) !== c.digests[t.name]);
    if (first) differences.push(`${c.file} ${c.options.kernels}: first checkpoint not bit-identical: ${first.name}`);
  });
  expect(differences, differences.join("\n")).toEqual([]);
});

// wgllm diff as a user runs it, the browser engine included: one line per pair, the engines equal.
test("wgllm diff runs the reference, the Python engine and the browser engine and names no difference", async () => {
  test.setTimeout(300_000);
  const json = path.join(OUT, "diff.json");
  execFileSync(python(), ["-m", "wgllm.cli", "diff", "--model", path.join(OUT, "gemma3-8.gguf"), "--ids", "[3, 17, 5, 29, 11, 8]", "--kernels", "gpu", "--json", json], { cwd: REPO, stdio: "inherit", timeout: 240_000 });
  const report = JSON.parse(readFileSync(json, "utf8"));
  expect(report.browser_absent).toBeNull();
  expect(report.runs).toEqual(["reference", "python", "browser"]);
  expect(report.first_beyond_tol).toEqual({ "reference~python": null, "reference~browser": null, "python~browser": null });
  expect(report.first_not_identical["python~browser"]).toBeNull();
  expect(report.rows.map((r: any) => r.name)).toContain("blk.5.attn_residual");
});
