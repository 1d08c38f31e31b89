// Modules that exist only at build time (see build.mjs).

declare module "wgllm:shaders" {
  /** op name -> WGSL source of shaders/<op>.wgsl */
  const sources: Readonly<Record<string, string>>;
  export default sources;
}

/** web/package.json's version, put in by build.mjs (esbuild `define`). */
declare const __WGLLM_VERSION__: string;
