// web/src/tool_calls.ts against tests/data/tool_call_vectors.json (run by tests/py/test_tool_calls.py):
//   node tests/py/tool_call_vectors.mjs TOOL_CALLS.mjs VECTORS.json
// TOOL_CALLS.mjs is web/src/tool_calls.ts bundled for Node by esbuild. Each case's text is parsed
// whole, and streamed in pieces of 1, 2, 5 and 13 characters through ToolCallStream: the calls and
// the content must be the vectors'. Prints {"checked": n, "failures": [...]}; exits 1 when any failed.

import { readFileSync } from "node:fs";
import path from "node:path";

const [modulePath, vectorsPath] = process.argv.slice(2);
const t = await import(path.resolve(modulePath));
const vectors = JSON.parse(readFileSync(vectorsPath, "utf8"));
const failures = [];
let checked = 0;
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
// a call as the vectors write it: [name, arguments (compared parsed), the model's id for Mistral]
const shape = (calls, want) => calls.map((c, i) => [c.function.name, JSON.parse(c.function.arguments), ...(want[i]?.length > 2 ? [c.id] : [])]);
const wanted = (want) => want.map(([name, args, ...id]) => [name, JSON.parse(args), ...id]);

for (const [template, format] of vectors.templates) {
  checked++;
  if (t.detectToolCallFormat(template) !== format) failures.push({ template, format, got: t.detectToolCallFormat(template) });
}
for (const c of vectors.cases) {
  checked++;
  const got = t.parseToolCalls(c.format, c.text);
  if (got.content !== c.content || !same(shape(got.toolCalls, c.calls), wanted(c.calls))) failures.push({ case: c.about, got });
  for (const call of got.toolCalls) {
    const ok = c.format === "mistral" ? /^[A-Za-z0-9]{9}$/.test(call.id) : /^call_[0-9a-f]{24}$/.test(call.id);
    if (!ok || call.type !== "function") failures.push({ case: c.about, id: call.id });
  }
  for (const k of [1, 2, 5, 13]) {
    checked++;
    const s = new t.ToolCallStream(c.format);
    let sent = "";
    for (let i = 0; i < c.text.length; i += k) sent += s.push(c.text.slice(i, i + k));
    const end = s.finish();
    const content = c.calls.length ? (sent + end.content).trim() || null : sent + end.content;
    if (content !== c.content || !same(shape(end.toolCalls, c.calls), wanted(c.calls))) failures.push({ case: c.about, piece: k, sent, end });
  }
}
console.log(JSON.stringify({ checked, failures }));
process.exit(failures.length ? 1 : 0);
