// The sampler chain in the browser (web/src/sampling.ts, Engine.sampleToken, the Generator's stop
// strings, LlmInference's options) against the PYTHON GPU engine on lavapipe with the same files:
// per option (top-p, min-p, the three penalties, logit bias, logprobs, greedy with penalties) and
// all together, the same tokens and logprobs on the tiny Phi-2 and on SmolLM2; through LlmInference
// (page and worker), two responses with every option and a stop string spanning a token boundary
// give Python's texts, tokens, finish reasons and logprobs, and the listener never hears the stop
// string; bad options are refused by name before anything runs.
// Expected values come from tests/browser/sampling_fixtures.py (run in beforeAll, cached by digest).

import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { expect, test, type Page } from "@playwright/test";
import { BUNDLE_URL, DATA_DIR, DATA_URL, REPO } from "./paths";

const OUT = path.join(DATA_DIR, "sampling");
const URL = `${DATA_URL}/sampling`;
let expected: any;

test.beforeAll(() => {
  test.setTimeout(600_000);
  const venv = path.join(REPO, ".venv", "bin", "python");
  const python = process.env.WGLLM_PYTHON ?? (existsSync(venv) ? venv : "python3");
  execFileSync(python, [path.join(REPO, "tests", "browser", "sampling_fixtures.py"), OUT], { stdio: "inherit", cwd: REPO, timeout: 600_000 });
  expected = JSON.parse(readFileSync(path.join(OUT, "expected.json"), "utf8"));
});

test.beforeEach(async ({ page }) => {
  await page.goto("/");
});

type Run = { tokens: number[]; logprobs: { logprob: number; top: [number, number][] }[] | null };

/** Load `url` and run each option set as a continuation of `prompt` with Engine.sampleToken, the
 * history kept as the Generator keeps it. */
async function continuations(page: Page, url: string, prompt: number[], n: number, sets: Record<string, any>): Promise<Record<string, Run>> {
  return page.evaluate(
    async ({ bundle, url, prompt, n, sets }) => {
      const w = await import(bundle);
      const adapter = await navigator.gpu.requestAdapter();
      const limits = adapter!.limits as unknown as Record<string, number>;
      const device = await adapter!.requestDevice({
        requiredLimits: { maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize, maxBufferSize: limits.maxBufferSize },
      });
      const engine = await w.Engine.load(device, await w.fetchGGUF(url), { maxTokens: prompt.length + n });
      const out: Record<string, Run> = {};
      for (const [name, o] of Object.entries(sets) as [string, any][]) {
        const { topK, temperature, seed, ...rest } = o;
        const extras = w.checkSampling(rest, engine.config.nVocab);
        const history = [...prompt];
        const run: Run = { tokens: [], logprobs: extras.logprobs ? [] : null };
        let next = await engine.sampleToken(prompt, 0, { topK, temperature, seed, step: 0, extras, history });
        for (;;) {
          run.tokens.push(next.token);
          run.logprobs?.push({ logprob: next.logprob, top: next.top });
          if (run.tokens.length === n) break;
          history.push(next.token);
          next = await engine.sampleToken([next.token], history.length - 1, { topK, temperature, seed, step: run.tokens.length, extras, history });
        }
        out[name] = run;
      }
      engine.destroy();
      return out;
    },
    { bundle: BUNDLE_URL, url, prompt, n, sets },
  );
}

function sameLogprobs(label: string, got: Run["logprobs"], want: Run["logprobs"]): void {
  expect(got === null, `${label}: logprobs present`).toBe(want === null);
  if (!got || !want) return;
  expect(got.length).toBe(want.length);
  got.forEach((g, i) => {
    expect(g.top.map(([id]) => id), `${label} step ${i} top ids`).toEqual(want[i].top.map(([id]) => id));
    g.top.forEach(([, v], j) => expect(Math.abs(v - want[i].top[j][1]), `${label} step ${i} top ${j}`).toBeLessThan(1e-4));
    expect(Math.abs(g.logprob - want[i].logprob), `${label} step ${i} logprob`).toBeLessThan(1e-4);
  });
}

test("every option alone and all together give the Python GPU engine's tokens and logprobs (tiny Phi-2)", async ({ page }) => {
  test.setTimeout(180_000);
  const sets: Record<string, any> = { plain: { topK: 40, temperature: 1, seed: 11 } };
  for (const [name, c] of Object.entries(expected.cases) as [string, any][]) sets[name] = c.options;
  const got = await continuations(page, `${URL}/phi2-32.gguf`, expected.prompt, expected.plain.tokens.length, sets);
  expect(got.plain.tokens).toEqual(expected.plain.tokens);
  for (const [name, want] of Object.entries(expected.cases) as [string, any][]) {
    expect(got[name].tokens, name).toEqual(want.tokens);
    sameLogprobs(name, got[name].logprobs, want.logprobs);
    if (name !== "logprobs") expect(got[name].tokens, `${name} changes the tokens`).not.toEqual(got.plain.tokens);
  }
});

test("SmolLM2 with every option gives the Python GPU engine's tokens and logprobs", async ({ page }) => {
  test.setTimeout(300_000);
  const s = expected.smollm2;
  const got = await continuations(page, `${URL}/smollm2.gguf`, s.prompt, s.tokens.length, { all: s.options });
  expect(got.all.tokens).toEqual(s.tokens);
  sameLogprobs("smollm2", got.all.logprobs, s.logprobs);
});

for (const useWorker of [false, true]) {
  test(`LlmInference options, stop strings and numResponses give Python's answers (${useWorker ? "worker" : "page"})`, async ({ page }) => {
    test.setTimeout(180_000);
    const want = expected.llm;
    const got = await page.evaluate(
      async ({ bundle, url, want, useWorker }) => {
        const w = await import(bundle);
        const llm = await w.LlmInference.createFromOptions(await w.FilesetResolver.forGenAiTasks(), {
          baseOptions: { modelAssetPath: url }, useWorker, forceF32: true, ...want.options,
        });
        const heard: string[] = want.texts.map(() => "");
        const texts = await llm.generateResponses(want.prompt, (parts: string[]) => parts.forEach((p, i) => (heard[i] += p)));
        const results = llm.lastResults;
        llm.close();
        return { texts, heard, results };
      },
      { bundle: BUNDLE_URL, url: `${URL}/phi2-32.gguf`, want, useWorker },
    );
    expect(got.texts).toEqual(want.texts);
    expect(got.heard, "the listener heard exactly the answers: nothing of the stop string").toEqual(want.texts);
    expect(got.results.map((r: any) => r.tokens)).toEqual(want.tokens);
    expect(got.results.map((r: any) => r.finishReason)).toEqual(want.finish);
    expect(got.results.map((r: any) => r.stop ?? null)).toEqual(want.stops);
    expect(want.stops[0]).toBeTruthy(); // the fixture's first answer does end at the stop string
    got.results.forEach((r: any, i: number) => sameLogprobs(`response ${i}`, r.logprobs.map((l: any) => ({ logprob: l.logprob, top: l.top })), want.logprobs[i]));
  });
}

test("the stop filter holds back what may start a stop string", async ({ page }) => {
  const got = await page.evaluate(async (bundle) => {
    const w = await import(bundle);
    const f = new w.StopFilter(["</end>", "xyz"]);
    const out = [f.push("hello <"), f.push("/en"), f.push("x and more"), f.push(" x"), f.push("yz tail"), f.stopped];
    const g = new w.StopFilter(["ab"]);
    return [...out, g.push("a"), g.flush()];
  }, BUNDLE_URL);
  expect(got).toEqual(["hello ", "", "</enx and more", " ", "", "xyz", "", "a"]);
});

test("bad sampling options are refused by name before anything runs", async ({ page }) => {
  test.setTimeout(120_000);
  const got = await page.evaluate(
    async ({ bundle, url }) => {
      const w = await import(bundle);
      const fileset = await w.FilesetResolver.forGenAiTasks();
      const caught = async (f: () => Promise<unknown>) => {
        try {
          await f();
          return "no error";
        } catch (e) {
          return `${(e as Error).name}: ${(e as Error).message}`;
        }
      };
      const create = (o: object) => caught(() => w.LlmInference.createFromOptions(fileset, { baseOptions: { modelAssetPath: url }, ...o }));
      const out: Record<string, string> = {
        topP: await create({ topP: 1.5 }),
        minP: await create({ minP: -0.1 }),
        repetitionPenalty: await create({ repetitionPenalty: 0 }),
        frequencyPenalty: await create({ frequencyPenalty: 3 }),
        penaltyLastN: await create({ penaltyLastN: -2 }),
        topLogprobs: await create({ logprobs: true, topLogprobs: 21 }),
        topLogprobsAlone: await create({ topLogprobs: 2 }),
        biasValue: await create({ logitBias: { "3": 200 } }),
        biasKey: await create({ logitBias: { x: 1 } }),
        stopCount: await create({ stop: Array.from({ length: 17 }, () => "a") }),
        stopEmpty: await create({ stop: [""] }),
      };
      const llm = await w.LlmInference.createFromOptions(fileset, { baseOptions: { modelAssetPath: url }, maxTokens: 16 });
      out.biasVocab = await caught(() => llm.setOptions({ logitBias: { "100000": 1 } }));
      out.stillWorks = typeof (await llm.generateResponse("hi"));
      llm.close();
      return out;
    },
    { bundle: BUNDLE_URL, url: `${URL}/phi2-32.gguf` },
  );
  expect(got.topP).toBe("RangeError: 'topP' must be a number in (0, 1], got 1.5");
  expect(got.minP).toBe("RangeError: 'minP' must be a number in [0, 1], got -0.1");
  expect(got.repetitionPenalty).toBe("RangeError: 'repetitionPenalty' must be a number > 0 (1 = off), got 0");
  expect(got.frequencyPenalty).toBe("RangeError: 'frequencyPenalty' must be a number in [-2, 2] (0 = off), got 3");
  expect(got.penaltyLastN).toBe("RangeError: 'penaltyLastN' must be an integer >= -1 (-1: the whole context, 0: off), got -2");
  expect(got.topLogprobs).toBe("RangeError: 'topLogprobs' must be an integer in [0, 20], got 21");
  expect(got.topLogprobsAlone).toBe("RangeError: 'topLogprobs' = 2 needs 'logprobs': true");
  expect(got.biasValue).toBe("RangeError: 'logitBias[3]' must be a number in [-100, 100], got 200");
  expect(got.biasKey).toBe('RangeError: \'logitBias\': token id "x" is outside the vocabulary (expected an integer >= 0)');
  expect(got.stopCount).toBe("RangeError: 'stop' has 17 strings, at most 16 are allowed");
  expect(got.stopEmpty).toBe("RangeError: 'stop' strings must be non-empty strings of at most 256 characters, got \"\"");
  expect(got.biasVocab).toBe(`RangeError: 'logitBias': token id "100000" is outside the vocabulary (expected 0..${expected.vocab - 1})`);
  expect(got.stillWorks).toBe("string");
});
