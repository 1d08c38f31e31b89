// Before the browser tests: write the GGUF fixtures and the Python reader's summary of them
// (tests/browser/gguf_fixtures.py) into build/browser-test-data, which the test server serves.

import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { DATA_DIR, REPO } from "./paths";

export default function globalSetup(): void {
  const venv = path.join(REPO, ".venv", "bin", "python");
  const python = process.env.WGLLM_PYTHON ?? (existsSync(venv) ? venv : "python3");
  execFileSync(python, [path.join(REPO, "tests", "browser", "gguf_fixtures.py"), DATA_DIR], { stdio: "inherit", cwd: REPO });
}
