// Build the browser bundle: web/src/index.ts -> dist/genai_bundle.mjs (ESM) and .cjs, plus .d.ts,
// and web/src/worker.ts -> dist/genai_worker.mjs (the engine's side of worker mode).
// The WGSL kernels are not copied: the virtual module "wgllm:shaders" imports every
// ../shaders/*.wgsl found at build time as text, so the bundle carries the Python engine's files.
//   node build.mjs            build once
//   node build.mjs --watch    rebuild on change (new shader files need a restart)

import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = path.dirname(fileURLToPath(import.meta.url));
const shadersDir = path.resolve(here, "..", "shaders");
const dist = path.join(here, "dist");
// the one version of wgllm (setup.py gives the wheel the same), exported by the bundle as VERSION
const { version } = JSON.parse(readFileSync(path.join(here, "package.json"), "utf8"));

/** "wgllm:shaders" -> `export default {op: source}` over shaders/*.wgsl, each loaded as text. */
const shaderTable = {
  name: "wgllm-shaders",
  setup(build) {
    build.onResolve({ filter: /^wgllm:shaders$/ }, () => ({ path: shadersDir, namespace: "wgllm-shaders" }));
    build.onLoad({ filter: /.*/, namespace: "wgllm-shaders" }, () => {
      const files = readdirSync(shadersDir).filter((f) => f.endsWith(".wgsl")).sort();
      if (files.length === 0) return { errors: [{ text: `no .wgsl files in ${shadersDir}` }] };
      const bad = files.filter((f) => !/^[a-z][a-z0-9_]*\.wgsl$/.test(f));
      if (bad.length) return { errors: [{ text: `shader file names must be <op>.wgsl with op in [a-z0-9_]: ${bad.join(", ")}` }] };
      const imports = files.map((f, i) => `import s${i} from ${JSON.stringify(path.join(shadersDir, f))};`);
      const entries = files.map((f, i) => `  ${JSON.stringify(f.slice(0, -5))}: s${i},`);
      return {
        contents: `${imports.join("\n")}\nexport default Object.freeze({\n${entries.join("\n")}\n});\n`,
        resolveDir: shadersDir,
        loader: "js",
        watchDirs: [shadersDir],
      };
    });
  },
};

const common = {
  entryPoints: [path.join(here, "src", "index.ts")],
  bundle: true,
  platform: "neutral",
  target: "es2022",
  loader: { ".wgsl": "text" },
  plugins: [shaderTable],
  define: { __WGLLM_VERSION__: JSON.stringify(version) },
  sourcemap: true,
  logLevel: "warning",
  metafile: true,
};
const targets = [
  { ...common, format: "esm", outfile: path.join(dist, "genai_bundle.mjs") },
  // CommonJS has no import.meta: worker mode there needs the workerUrl option
  { ...common, format: "cjs", outfile: path.join(dist, "genai_bundle.cjs"), define: { ...common.define, "import.meta.url": "undefined" } },
  // worker mode (LlmInference option useWorker): the engine's side, found next to the ES bundle
  { ...common, entryPoints: [path.join(here, "src", "worker.ts")], format: "esm", outfile: path.join(dist, "genai_worker.mjs") },
];

function declarations() {
  const tsc = path.join(here, "node_modules", "typescript", "bin", "tsc");
  execFileSync(process.execPath, [tsc, "-p", path.join(here, "tsconfig.json"), "--emitDeclarationOnly"], { stdio: "inherit" });
  // Types beside each bundle file, so `import ... from ".../genai_bundle.mjs"` finds them.
  for (const name of ["genai_bundle.d.ts", "genai_bundle.d.mts", "genai_bundle.d.cts"]) {
    writeFileSync(path.join(dist, name), 'export * from "./index.js";\n');
  }
}

if (process.argv.includes("--watch")) {
  for (const options of targets) await (await esbuild.context(options)).watch();
  console.log("watching web/src and shaders/ ...");
} else {
  const results = await Promise.all(targets.map((options) => esbuild.build(options)));
  declarations();
  const shaders = Object.keys(results[0].metafile.inputs).filter((f) => f.endsWith(".wgsl"));
  console.log(`built web/dist/genai_bundle.{mjs,cjs} and .d.ts, version ${version}, with ${shaders.length} shaders`);
}
