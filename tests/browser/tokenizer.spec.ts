// The browser tokenizer (web/src/tokenizer.ts, through the built bundle) against Python's
// wgllm.tokenizer on the same GGUF headers: llama.cpp's test vocabularies (with llama.cpp's own
// .out ids for its .inp texts) and the real SmolLM2 and Gemma-3 270M models. The cases are written
// by tests/browser/tokenizer_fixtures.py: Python's ids for llama.cpp's texts and seeded random
// Unicode texts under every add_special/parse_special combination, Python's decode of them, and
// the pieces Python's incremental UTF-8 decoder gives token by token (what StreamingDecoder must
// return). The browser reads only each file's header (fetchGGUF, then cancel).

import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { expect, test, type Page } from "@playwright/test";
import { BUNDLE_URL, DATA_DIR, DATA_URL, REPO } from "./paths";

const OUT_DIR = path.join(DATA_DIR, "tokenizer");
const OUT_URL = `${DATA_URL}/tokenizer`;
// tokenizer_fixtures.py writes one <name>.json per vocabulary; the test below checks this list
// against its index so that neither side can drop one silently.
const VOCABS = [
  "llama-spm", "phi-3", "gpt-2", "falcon", "mpt", "starcoder", "refact", "llama-bpe", "qwen2", "qwen35", "deepseek-llm",
  "deepseek-coder", "gemma-4", "smollm2", "gemma3",
];

test.beforeAll(() => {
  test.setTimeout(300_000); // the first run tokenizes every case in Python (~1 minute); later runs reuse them
  const venv = path.join(REPO, ".venv", "bin", "python");
  const python = process.env.WGLLM_PYTHON ?? (existsSync(venv) ? venv : "python3");
  execFileSync(python, [path.join(REPO, "tests", "browser", "tokenizer_fixtures.py"), OUT_DIR], { stdio: "inherit", cwd: REPO });
});

test.beforeEach(async ({ page }) => {
  await page.goto("/");
});

function fixture(name: string): any {
  return JSON.parse(readFileSync(path.join(OUT_DIR, `${name}.json`), "utf8"));
}

/** In the page: build the tokenizer from the file's header and check every case of <name>.json. */
async function checkVocab(page: Page, name: string, file: string): Promise<any> {
  return page.evaluate(
    async ({ bundle, casesUrl, fileUrl }) => {
      const wgllm = await import(bundle);
      const data = await (await fetch(casesUrl)).json();
      const gguf = await wgllm.fetchGGUF(fileUrl);
      await gguf.cancel(); // the header is all a tokenizer needs
      const tok = wgllm.Tokenizer.fromHeader(gguf.header);
      const same = (a: unknown[], b: unknown[]) => a.length === b.length && a.every((x, i) => x === b[i]);
      const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
      const problems: object[] = [];
      const counts = { encoded: 0, llamaCpp: 0, decoded: 0, streamed: 0, tokenBytes: 0 };

      // decode and stream Python's ids (not ours), so decoding is checked apart from encoding
      const checkDecode = (where: object, ids: number[], decoded: string, pieces: string[]) => {
        const got = tok.decode(ids);
        if (got !== decoded) problems.push({ ...where, what: "decode", ids, got, expected: decoded });
        counts.decoded++;
        const stream = new wgllm.StreamingDecoder(tok);
        const streamed = [...ids.map((id) => stream.push(id)), stream.flush()];
        if (!same(streamed, pieces)) problems.push({ ...where, what: "stream", ids, got: streamed, expected: pieces });
        if (streamed.join("") !== got) problems.push({ ...where, what: "stream joined != decode", ids });
        counts.streamed++;
      };
      for (const c of data.cases) {
        const options = { addSpecial: c.add_special, parseSpecial: c.parse_special };
        const ids = tok.encode(c.text, options);
        if (!same(ids, c.ids)) problems.push({ what: "encode", text: c.text, options, got: ids, expected: c.ids });
        counts.encoded++;
        if (c.llama_cpp) {
          if (!same(ids, c.llama_cpp)) problems.push({ what: "llama.cpp", text: c.text, got: ids, expected: c.llama_cpp });
          counts.llamaCpp++;
        }
        checkDecode({ text: c.text, options }, c.ids, c.decoded, c.pieces);
      }
      for (const s of data.id_sequences) checkDecode({ sequence: true }, s.ids, s.decoded, s.pieces);
      for (const [id, bytes] of Object.entries(data.token_bytes)) {
        const got = hex(tok.tokenBytes(Number(id)));
        if (got !== bytes) problems.push({ what: "tokenBytes", id, got, expected: bytes });
        counts.tokenBytes++;
      }
      const eog = [...tok.endOfGenerationIds].sort((a, b) => a - b);
      const notEog = Array.from({ length: tok.nVocab }, (_, i) => i).find((i) => !tok.endOfGenerationIds.has(i));
      return {
        problems: problems.slice(0, 4),
        nProblems: problems.length,
        counts,
        meta: {
          n_vocab: tok.nVocab, bos_id: tok.bosId ?? null, eos_id: tok.eosId ?? null, add_bos: tok.addBos,
          add_eos: tok.addEos, add_space_prefix: tok.addSpacePrefix, eog_ids: eog,
        },
        isEog: eog.every((i) => tok.isEndOfGeneration(i)) && !tok.isEndOfGeneration(notEog),
      };
    },
    { bundle: BUNDLE_URL, casesUrl: `${OUT_URL}/${name}.json`, fileUrl: `${OUT_URL}/${file}` },
  );
}

test("the fixtures cover every vocabulary the spec checks", () => {
  const index = fixture("index");
  expect(index.vocabs).toEqual(VOCABS);
});

for (const name of VOCABS) {
  test(`${name}: ids, decode and streamed pieces as Python's`, async ({ page }) => {
    const expected = fixture(name);
    const got = await checkVocab(page, name, expected.file);
    expect(got.problems, `${got.nProblems} problems`).toEqual([]);
    const { cases, id_sequences, token_bytes } = expected;
    const llamaCpp = cases.filter((c: any) => c.llama_cpp).length;
    expect(got.counts).toEqual({
      encoded: cases.length, llamaCpp, decoded: cases.length + id_sequences.length,
      streamed: cases.length + id_sequences.length, tokenBytes: Object.keys(token_bytes).length,
    });
    expect(cases.length).toBeGreaterThanOrEqual(800);
    if (name.startsWith("smollm2") || name.startsWith("gemma3")) expect(llamaCpp).toBe(0);
    else expect(llamaCpp).toBeGreaterThanOrEqual(40);
    const { n_vocab, bos_id, eos_id, add_bos, add_eos, add_space_prefix, eog_ids } = expected;
    expect(got.meta).toEqual({ n_vocab, bos_id, eos_id, add_bos, add_eos, add_space_prefix, eog_ids });
    expect(got.isEog).toBe(true);
  });
}

test("the pre-tokenizer table (tokenizer.ggml.pre -> regexes and flags) is Python's", async ({ page }) => {
  const expected = fixture("pre_tokenizers").pre_tokenizers;
  const got = await page.evaluate(async (bundle) => (await import(bundle)).PRE_TOKENIZERS, BUNDLE_URL);
  expect(Object.keys(got).sort()).toEqual(Object.keys(expected).sort());
  for (const name of Object.keys(expected)) expect(got[name], name).toEqual(expected[name]);
  for (const name of ["qwen2", "llama-bpe", "gpt-4o", "smaug-bpe", "deepseek-llm", "deepseek-coder", "gemma4"]) {
    expect(Object.keys(got)).toContain(name);
  }
});

test("every pre-tokenizer splits texts into Python's words", async ({ page }) => {
  const { texts, splits } = fixture("pre_tokenizers");
  const got = await page.evaluate(
    async ({ bundle, texts, names }) => {
      const wgllm = await import(bundle);
      return Object.fromEntries(names.map((name: string) => [name, texts.map((t: string) => wgllm.preTokenize(t, wgllm.PRE_TOKENIZERS[name]))]));
    },
    { bundle: BUNDLE_URL, texts, names: Object.keys(splits) },
  );
  expect(texts.length).toBeGreaterThanOrEqual(70);
  for (const name of Object.keys(splits)) expect(got[name], name).toEqual(splits[name]);
});

test("Unicode category flags agree with Python's except where Python's Unicode is older", async ({ page }) => {
  const { runs, unidata_version } = fixture("flags");
  const got = await page.evaluate(
    async ({ bundle, runs }) => {
      const wgllm = await import(bundle);
      const differ: [number, number, number][] = []; // [code point, python, browser]
      let checked = 0;
      runs.forEach(([start, flags]: [number, number], k: number) => {
        const end = k + 1 < runs.length ? runs[k + 1][0] : 0x110000;
        for (let cp = start; cp < end; cp++, checked++) {
          const mine = wgllm.codepointFlags(cp);
          if (mine !== flags) differ.push([cp, flags, mine]);
        }
      });
      return { checked, differ };
    },
    { bundle: BUNDLE_URL, runs },
  );
  expect(got.checked).toBe(0x110000);
  test.info().annotations.push({ type: "newer Unicode", description: `${got.differ.length} code points unassigned in Python's Unicode ${unidata_version} have a category here` });
  // characters assigned after Python's Unicode (unassigned there: flags 1) may have a category here
  const UNDEFINED = 1;
  const other = got.differ.filter(([, python]: number[]) => python !== UNDEFINED);
  expect(other.map(([cp, p, b]: number[]) => `U+${cp.toString(16)}: python ${p}, browser ${b}`), `Unicode ${unidata_version}`).toEqual([]);
});

test("bad metadata and bad arguments give errors naming the key or value", async ({ page }) => {
  const got = await page.evaluate(
    async ({ bundle, spmUrl, bpeUrl }) => {
      const wgllm = await import(bundle);
      const header = async (url: string) => {
        const gguf = await wgllm.fetchGGUF(url);
        await gguf.cancel();
        return gguf.header;
      };
      const spm = await header(spmUrl), bpe = await header(bpeUrl);
      const attempt = (fn: () => unknown) => {
        try {
          fn();
          return { error: null };
        } catch (e: any) {
          return { error: { name: e.name, message: e.message, isModelFormatError: e instanceof wgllm.ModelFormatError } };
        }
      };
      const changed = (base: any, change: Record<string, unknown>) => {
        const metadata = new Map(base.metadata);
        for (const [key, value] of Object.entries(change)) {
          if (value === null) metadata.delete(key);
          else if (value === "trim") metadata.set(key, (metadata.get(key) as any).slice(0, -1));
          else metadata.set(key, value);
        }
        return new wgllm.GGUFHeader("bad.gguf", 3, metadata, base.valueTypes, [], 32, 0);
      };
      const merges = bpe.get("tokenizer.ggml.merges").slice(0, 5);
      const changes: [string, any, Record<string, unknown>][] = [
        ["spm", spm, { "tokenizer.ggml.bos_token_id": 32000 }],
        ["spm", spm, { "tokenizer.ggml.eos_token_id": -1 }],
        ["spm", spm, { "tokenizer.ggml.tokens": null }],
        ["spm", spm, { "tokenizer.ggml.scores": "trim" }],
        ["spm", spm, { "tokenizer.ggml.token_type": "trim" }],
        ["spm", spm, { "tokenizer.ggml.scores": null }],
        ["spm", spm, { "tokenizer.ggml.model": "t5" }],
        ["spm", spm, { "tokenizer.ggml.add_bos_token": 1 }],
        ["bpe", bpe, { "tokenizer.ggml.merges": [...merges, "Ġ qwertyuiop"] }],
        ["bpe", bpe, { "tokenizer.ggml.pre": "no-such-pre" }],
        ["bpe", bpe, { "tokenizer.ggml.merges": null }],
      ];
      const empty = new wgllm.GGUFHeader("no-tokenizer.gguf", 3, new Map([["general.architecture", "llama"]]), new Map(), [], 32, 0);
      const tok = wgllm.Tokenizer.fromHeader(spm);
      return {
        noKeys: attempt(() => wgllm.Tokenizer.fromHeader(empty)),
        changed: changes.map(([, base, change]) => attempt(() => wgllm.Tokenizer.fromHeader(changed(base, change)))),
        loneSurrogate: attempt(() => tok.encode("ok \ud83d then")),
        outOfRange: attempt(() => tok.tokenBytes(tok.nVocab)),
        negative: attempt(() => tok.decode([1, -1])),
      };
    },
    { bundle: BUNDLE_URL, spmUrl: `${OUT_URL}/ggml-vocab-llama-spm.gguf`, bpeUrl: `${OUT_URL}/ggml-vocab-gpt-2.gguf` },
  );
  expect(got.noKeys.error).toEqual({
    name: "ModelFormatError", isModelFormatError: true,
    message: "no-tokenizer.gguf: tokenizer: missing metadata key tokenizer.ggml.model; supported: llama, gpt2, gemma4",
  });
  const expected = [
    "tokenizer.ggml.bos_token_id = 32000 is not a token id (the vocabulary has 32000 tokens)",
    "tokenizer.ggml.eos_token_id = -1 is not a token id",
    "missing or invalid tokenizer.ggml.tokens",
    "tokenizer.ggml.scores has 31999 entries but tokenizer.ggml.tokens has 32000",
    "tokenizer.ggml.token_type has 31999 entries but tokenizer.ggml.tokens has 32000",
    "SentencePiece vocabulary without tokenizer.ggml.scores",
    "tokenizer.ggml.model = 't5' is not supported; supported: llama, gpt2, gemma4",
    "tokenizer.ggml.add_bos_token = 1, expected a bool",
    "merge 5 ('Ġ qwertyuiop') refers to 'qwertyuiop', which is not in tokenizer.ggml.tokens",
    `tokenizer.ggml.pre = 'no-such-pre' is not a supported pre-tokenizer; supported: ${Object.keys(fixture("pre_tokenizers").pre_tokenizers).sort().join(", ")}`,
    "byte-level BPE needs tokenizer.ggml.merges",
  ];
  expect(got.changed.length).toBe(expected.length);
  got.changed.forEach((result: any, i: number) => {
    expect(result.error?.isModelFormatError, expected[i]).toBe(true);
    expect(result.error.message).toContain("bad.gguf: tokenizer: ");
    expect(result.error.message).toContain(expected[i]);
  });
  expect(got.loneSurrogate.error).toEqual({
    name: "RangeError", isModelFormatError: false, message: "text is not valid Unicode: lone surrogate U+D83D at index 3",
  });
  expect(got.outOfRange.error.message).toMatch(/^token id 32000 is outside the vocabulary \(0\.\.31999\) of .*ggml-vocab-llama-spm\.gguf$/);
  expect(got.negative.error.name).toBe("RangeError");
  expect(got.negative.error.message).toContain("token id -1 is outside the vocabulary");
});
