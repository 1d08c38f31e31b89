// Structured output in the browser (LlmInference's responseFormat, the Generator's grammar mask on
// Engine.sampleToken) against the PYTHON GPU engine: for schemas of tests/data/grammar_schemas.json
// and {type: "json_object"}, the tiny Phi-2's answers have LlmInference.generate(...,
// response_format=...)'s tokens for the same seed and options, in the page and in a worker; every
// answer parses and validates (ajv); the same prompts and seeds without the format do not (the
// mask does the work); GrammarState.canContinue answers as Python's can_continue; a bad schema is
// refused by its field before the model loads. Expected values come from structured_fixtures.py.

import { readFileSync } from "node:fs";
import path from "node:path";
import { expect, test } from "@playwright/test";
import Ajv from "ajv";
import { inPage, runFixtures } from "./helpers";
import { DATA_DIR, DATA_URL } from "./paths";

const OUT = path.join(DATA_DIR, "structured");
const MODEL = `${DATA_URL}/structured/phi2-32.gguf`;
let expected: any;

test.beforeAll(() => {
  test.setTimeout(600_000);
  runFixtures("structured_fixtures.py", [OUT]);
  expected = JSON.parse(readFileSync(path.join(OUT, "expected.json"), "utf8"));
});

test.beforeEach(async ({ page }) => {
  await page.goto("/");
});

const schemaOf = (rf: any) => (rf.type === "json_object" ? { type: "object" } : rf.json_schema.schema);

/** Why `text` is not a document of the format's schema ("" when it is one). */
function invalid(text: string, rf: any): string {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    return `does not parse: ${(e as Error).message}`;
  }
  // validateSchema off: const_numbers lists 0 and -0.0, one value once parsed, which Ajv calls a duplicate
  const validate = new Ajv({ strict: false, validateSchema: false }).compile(schemaOf(rf));
  return validate(doc) ? "" : `does not validate: ${JSON.stringify(validate.errors)}`;
}

test("answers with responseFormat are Python's, parse and validate; without it they do not (page)", async ({ page }) => {
  test.setTimeout(300_000);
  const cases = expected.cases;
  expect(cases.length, `schemas skipped by the fixture: ${expected.skipped}`).toBeGreaterThanOrEqual(7);
  const got = await inPage(
    page,
    async (w, { url, prompt, options, cases }) => {
      const llm = await w.LlmInference.createFromOptions(await w.FilesetResolver.forGenAiTasks(), {
        baseOptions: { modelAssetPath: url }, forceF32: true, ...options, responseFormat: cases[0].responseFormat, randomSeed: cases[0].seed,
      });
      const out: any[] = [];
      for (const c of cases) {
        await llm.setOptions({ responseFormat: c.responseFormat, randomSeed: c.seed });
        const text = await llm.generateResponse(prompt);
        const r = llm.lastResults[0];
        // the same prompt and seed without the format, for this call only (the instance keeps its own)
        const [free] = await llm.generate(prompt, { responseFormat: null, randomSeed: c.seed, maxNewTokens: 40 });
        out.push({ text, tokens: r.tokens, finish: r.finishReason, free: { text: free.text, tokens: free.tokens } });
      }
      const again = await llm.generateResponse(prompt); // the last case's format and seed still hold
      llm.close();
      return { out, again };
    },
    { url: MODEL, prompt: expected.prompt, options: expected.options, cases },
  );
  let freeInvalid = 0;
  cases.forEach((c: any, i: number) => {
    const g = got.out[i];
    expect(g.tokens, `${c.name}: Python's tokens`).toEqual(c.tokens);
    expect(g.text, c.name).toBe(c.text);
    expect(g.finish, c.name).toBe("stop");
    expect(invalid(g.text, c.responseFormat), `${c.name}: ${JSON.stringify(g.text)}`).toBe("");
    expect(g.free.tokens, `${c.name} without the format: Python's first tokens`).toEqual(c.free.tokens.slice(0, 40));
    if (invalid(g.free.text, c.responseFormat)) freeInvalid++;
  });
  expect(freeInvalid, "answers without responseFormat that fail to parse or validate").toBeGreaterThan(0);
  expect(got.again).toBe(cases[cases.length - 1].text);
});

test("responseFormat in a worker gives the page's (Python's) answer", async ({ page }) => {
  test.setTimeout(180_000);
  const c = expected.cases.find((x: any) => x.name === "weather_tool") ?? expected.cases[0];
  const got = await inPage(
    page,
    async (w, { url, prompt, options, c }) => {
      const llm = await w.LlmInference.createFromOptions(await w.FilesetResolver.forGenAiTasks(), {
        baseOptions: { modelAssetPath: url }, useWorker: true, forceF32: true, ...options, responseFormat: c.responseFormat, randomSeed: c.seed,
      });
      const text = await llm.generateResponse(prompt);
      const r = llm.lastResults[0];
      llm.close();
      return { text, tokens: r.tokens, finish: r.finishReason };
    },
    { url: MODEL, prompt: expected.prompt, options: expected.options, c },
  );
  expect(got.tokens).toEqual(c.tokens);
  expect(got.text).toBe(c.text);
  expect(got.finish).toBe("stop");
  expect(invalid(got.text, c.responseFormat)).toBe("");
});

test("canContinue is Python's can_continue", async ({ page }) => {
  const got = await inPage(
    page,
    async (w, { vectors }) =>
      vectors.map((v: any) => {
        const state = w.grammarForResponseFormat(v.responseFormat).start().advance(new TextEncoder().encode(v.prefix));
        return { accepting: state.isAccepting(), canContinue: state.canContinue() };
      }),
    { vectors: expected.continue },
  );
  expect(got).toEqual(expected.continue.map((v: any) => ({ accepting: v.accepting, canContinue: v.canContinue })));
});

test("a bad responseFormat is refused by its field before the model loads", async ({ page }) => {
  const got = await inPage(
    page,
    async (w, { url }) => {
      const fileset = await w.FilesetResolver.forGenAiTasks();
      const caught = async (f: () => Promise<unknown>) => {
        try {
          await f();
          return "no error";
        } catch (e) {
          return `${(e as Error).name}: ${(e as Error).message}`;
        }
      };
      const create = (responseFormat: unknown) => caught(() => w.LlmInference.createFromOptions(fileset, { baseOptions: { modelAssetPath: url }, responseFormat }));
      return {
        type: await create({ type: "xml" }),
        keyword: await create({ type: "json_schema", json_schema: { schema: { type: "object", properties: { a: { type: "strin" } } } } }),
        strict: await create({ type: "json_schema", json_schema: { schema: {}, strict: "yes" } }),
      };
    },
    { url: `${DATA_URL}/structured/no-such-model.gguf` }, // a load would fail with ModelFetchError
  );
  expect(got.type).toBe('SchemaError: JSON schema response_format: expected {"type": "text" | "json_object" | "json_schema", ...}');
  expect(got.keyword).toMatch(/^SchemaError: JSON schema #\/properties\/a\/type: expected one of/);
  expect(got.strict).toBe("SchemaError: JSON schema response_format.json_schema.strict: expected a boolean, got \"yes\"");
});
