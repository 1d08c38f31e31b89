// Static file server for the browser tests: serves the repository root (or --root DIR) on 127.0.0.1.
//   node tests/browser/server.mjs --port 8123 [--root DIR]
// Cross-origin isolated (COOP/COEP) like a page that uses SharedArrayBuffer would be. It never
// honours Range and never compresses: the GGUF reader must stream a plain 200 response front to
// back, and Content-Length is the file size. "/" answers an empty page to navigate to.

import { createReadStream, statSync } from "node:fs";
import { createServer } from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";

const arg = (name) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const root = path.resolve(arg("--root") ?? path.join(path.dirname(fileURLToPath(import.meta.url)), "..", ".."));
const port = Number(arg("--port") ?? 0);

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".cjs": "text/javascript; charset=utf-8",
  ".map": "application/json",
  ".json": "application/json",
  ".wgsl": "text/plain; charset=utf-8",
  ".css": "text/css",
  ".wasm": "application/wasm",
};
const ISOLATION = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
  "Cross-Origin-Resource-Policy": "same-origin",
  "Cache-Control": "no-store",
};
const BLANK = "<!doctype html><meta charset=utf-8><title>wgllm browser tests</title>\n";

const server = createServer((req, res) => {
  const url = new URL(req.url ?? "/", "http://localhost");
  const fail = (status, text) => {
    res.writeHead(status, { ...ISOLATION, "Content-Type": "text/plain" });
    res.end(`${text}\n`);
  };
  if (req.method !== "GET" && req.method !== "HEAD") return fail(405, "only GET and HEAD");
  if (url.pathname === "/") {
    res.writeHead(200, { ...ISOLATION, "Content-Type": TYPES[".html"] });
    return res.end(req.method === "HEAD" ? undefined : BLANK);
  }
  const file = path.join(root, decodeURIComponent(url.pathname));
  if (file !== root && !file.startsWith(root + path.sep)) return fail(403, "outside the served folder");
  let stat;
  try {
    stat = statSync(file);
  } catch {
    return fail(404, `no such file: ${url.pathname}`);
  }
  if (!stat.isFile()) return fail(404, `not a file: ${url.pathname}`);
  res.writeHead(200, {
    ...ISOLATION,
    "Content-Type": TYPES[path.extname(file)] ?? "application/octet-stream",
    "Content-Length": String(stat.size),
  });
  if (req.method === "HEAD") return res.end();
  createReadStream(file).on("error", () => res.destroy()).pipe(res);
});

server.listen(port, "127.0.0.1", () => {
  console.log(`serving ${root} on http://127.0.0.1:${server.address().port}/`);
});
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => server.close(() => process.exit(0)));
