// What several browser specs share: the venv's Python for fixture scripts, running a function of
// the bundle in the page, a free loopback port, and a real `serve-models` started for a spec.

import { execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import type { Page } from "@playwright/test";
import { BUNDLE_URL, REPO } from "./paths";

export const venvBin = (name: string) => path.join(REPO, ".venv", "bin", name);

/** The Python that writes the fixtures: $WGLLM_PYTHON, else the repo's .venv, else python3. */
export function python(): string {
  return process.env.WGLLM_PYTHON ?? (existsSync(venvBin("python")) ? venvBin("python") : "python3");
}

/** Run tests/browser/<script> with `args` (fixture scripts keep work already done). */
export function runFixtures(script: string, args: string[], timeoutMs = 600_000): void {
  execFileSync(python(), [path.join(REPO, "tests", "browser", script), ...args], { stdio: "inherit", cwd: REPO, timeout: timeoutMs });
}

/**
 * Run `fn(bundle, arg)` in the page (which must be on the test server) and return its result.
 * `fn` travels as source text, so it may use only its arguments and browser globals.
 */
export async function inPage<T>(page: Page, fn: (w: any, arg: any) => Promise<T>, arg: any = {}): Promise<T> {
  return page.evaluate(
    async ({ src, bundle, arg }) => {
      const w = await import(bundle);
      return new Function(`return (${src});`)()(w, arg);
    },
    { src: fn.toString(), bundle: BUNDLE_URL, arg },
  );
}

/** Page-side helper, as source text: `await catching(fn)` gives "Name: message" or "no error". */
export const errorOf = `async (p) => { try { await p(); return "no error"; } catch (e) { return e.name + ": " + e.message; } }`;

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** Poll `url` until it answers 200; `alive()` false or the deadline fails with `what` and `log()`. */
export async function waitFor(url: string, what: string, alive: () => boolean = () => true, log: () => string = () => "", tries = 600): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      /* not up yet */
    }
    if (i > tries || !alive()) throw new Error(`${what} did not start${log() ? `:\n${log()}` : ""}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A real `serve-models` (uvicorn) on a free loopback port, with `args`. */
export async function startServeModels(args: string[]): Promise<{ base: string; stop: () => void }> {
  const port = await freePort();
  const server = spawn(venvBin("serve-models"), ["--port", String(port), ...args], { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  server.stdout!.on("data", (d) => (log += d));
  server.stderr!.on("data", (d) => (log += d));
  const base = `http://127.0.0.1:${port}`;
  await waitFor(`${base}/api/models`, "serve-models", () => server.exitCode === null, () => log);
  return { base, stop: () => server.kill() };
}

/** Run tests/browser/dawn_engine.mjs on `job` ({runs, api?, traces?}) in a Node process of its own, on
 * Dawn (the `webgpu` npm package) over the lavapipe that scripts/lavapipe-for-dawn.sh put in
 * `lavapipe`; the job and its result are `out`/`name`.job.json and .result.json. */
export function runOnDawn(lavapipe: string, out: string, name: string, job: object): any {
  const jobFile = path.join(out, `${name}.job.json`);
  const result = path.join(out, `${name}.result.json`);
  writeFileSync(jobFile, JSON.stringify({ runs: [], ...job }));
  execFileSync(process.execPath, [path.join(REPO, "tests", "browser", "dawn_engine.mjs"), jobFile, result], {
    stdio: "inherit",
    timeout: 300_000,
    env: { ...process.env, VK_ICD_FILENAMES: path.join(lavapipe, "lvp_icd.json"), XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? "/tmp" },
  });
  return JSON.parse(readFileSync(result, "utf8"));
}
