// The WGSL kernels, one per op: shaders/<op>.wgsl, the same files the Python engine runs. The table
// is generated at build time (build.mjs globs ../shaders/*.wgsl into the virtual module
// "wgllm:shaders"), so a new shader file is in the next bundle without any edit here.

import SHADER_SOURCES from "wgllm:shaders";

/** WGSL source of every shaders/<op>.wgsl, keyed by op name (the file name without ".wgsl"). */
export const SHADERS: Readonly<Record<string, string>> = SHADER_SOURCES;

/** The source of shaders/<op>.wgsl; an unknown op is a bug in the caller, named in the message. */
export function shaderSource(op: string): string {
  const source = Object.hasOwn(SHADERS, op) ? SHADERS[op] : undefined;
  if (source === undefined) {
    throw new Error(`no shader named ${op}: the bundle has shaders/{${Object.keys(SHADERS).join(",")}}.wgsl`);
  }
  return source;
}
