// web/src/grammar.ts against Python's answers (run by tests/py/test_grammar.py):
//   node tests/py/grammar_vectors.mjs GRAMMAR.mjs VECTORS.json [MODEL_JOB.json]
// GRAMMAR.mjs is web/src/grammar.ts bundled for Node by esbuild. VECTORS is
// tests/data/grammar_vectors.json: for every byte string the first rejected byte, whether the rest
// is accepted, the mask over its small vocabulary; the refused schemas with their JSON pointers.
// MODEL_JOB (optional): {file, gguf: path of web/src/gguf.ts's bundle, tokenizer: of tokenizer.ts's,
// runs: [{schema, ids, masks: [hex]}]}: masks over a real GGUF vocabulary after each prefix of ids.
// Prints {"checked": n, "failures": [...]} and exits 1 when any failed.

import { openAsBlob, readFileSync } from "node:fs";
import path from "node:path";

const [grammarPath, vectorsPath, jobPath] = process.argv.slice(2);
const g = await import(path.resolve(grammarPath));
const vectors = JSON.parse(readFileSync(vectorsPath, "utf8"));
const hexBytes = (h) => Uint8Array.from(h.match(/../g) ?? [], (x) => parseInt(x, 16));
const maskHex = (mask) => {
  const out = new Uint8Array(Math.ceil(mask.length / 8));
  mask.forEach((m, i) => { if (m) out[i >> 3] |= 1 << (i & 7); });
  return Buffer.from(out).toString("hex");
};
const failures = [];
let checked = 0;

const vocab = new g.GrammarVocabulary(vectors.vocab.map(hexBytes), [vectors.eos], [vectors.control]);
for (const c of vectors.cases) {
  const grammar = g.JsonGrammar.fromSchema(c.schema, { maxDepth: c.options.max_depth, maxWhitespace: c.options.max_whitespace });
  for (const s of c.strings) {
    const data = hexBytes(s.hex);
    let state = grammar.start(), reject = -1;
    for (let i = 0; i < data.length; i++) {
      const next = state.advance(data.subarray(i, i + 1));
      if (!next) { reject = i; break; }
      state = next;
    }
    const got = { reject };
    if (reject < 0) {
      got.accepting = state.isAccepting();
      got.mask = maskHex(g.tokenMask(state, vocab));
    }
    const want = { reject: s.reject, accepting: s.accepting, mask: s.mask };
    if (JSON.stringify(got) !== JSON.stringify(want)) failures.push({ name: c.name, options: c.options, text: Buffer.from(data).toString("latin1"), got, want });
    checked++;
  }
}
for (const e of vectors.errors) {
  try {
    g.JsonGrammar.fromSchema(e.schema);
    failures.push({ schema: e.schema, want: e.path, got: "no error" });
  } catch (err) {
    if (!(err instanceof g.SchemaError) || err.path !== e.path) failures.push({ schema: e.schema, want: e.path, got: `${err.name}: ${err.message}` });
  }
  checked++;
}

if (jobPath) {
  const job = JSON.parse(readFileSync(jobPath, "utf8"));
  const { readGGUF } = await import(path.resolve(job.gguf));
  const { Tokenizer } = await import(path.resolve(job.tokenizer));
  const blob = await openAsBlob(job.file);
  const gguf = await readGGUF(blob.stream(), { source: path.basename(job.file), size: blob.size });
  const tok = Tokenizer.fromHeader(gguf.header);
  await gguf.cancel(); // the tensors are not needed
  const real = g.GrammarVocabulary.fromTokenizer(tok);
  for (const run of job.runs) {
    let state = g.JsonGrammar.fromSchema(run.schema).start();
    run.masks.forEach((want, k) => {
      const got = maskHex(g.tokenMask(state, real));
      if (got !== want) failures.push({ file: job.file, schema: run.schema, step: k, differ: "mask" });
      checked++;
      if (k < run.ids.length) state = state.advance(tok.tokenBytes(run.ids[k]));
    });
  }
}

console.log(JSON.stringify({ checked, failures: failures.slice(0, 20), failed: failures.length }));
process.exit(failures.length ? 1 : 0);
