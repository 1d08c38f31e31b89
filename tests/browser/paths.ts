// Where the browser tests find things, on disk and on the test server (which serves REPO at "/").

import { readFileSync } from "node:fs";
import path from "node:path";

export const REPO = path.resolve(__dirname, "..", "..");
export const DATA_DIR = path.join(REPO, "build", "browser-test-data");
export const DATA_URL = "/build/browser-test-data";
export const SHADERS_DIR = path.join(REPO, "shaders");
export const BUNDLE_URL = "/web/dist/genai_bundle.mjs";

/** summary.json written by gguf_fixtures.py: what Python's GGUFFile reads from each fixture. */
export function pythonSummary(): any {
  return JSON.parse(readFileSync(path.join(DATA_DIR, "summary.json"), "utf8"));
}
