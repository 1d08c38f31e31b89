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

// The one variation of shader text, as py/wgllm/gpu/runtime.py's kv_f16_variant: a shader that touches
// the KV cache declares its element type with KV_ALIAS, and its "f16 KV" variant (for devices with
// shader-f16) is the same text with `enable f16;` first and the alias made f16.
export const KV_ALIAS = "alias kv_t = f32;";
const KV_ALIAS_F16 = "alias kv_t = f16;";

/** shaders/<op>.wgsl with its KV cache in f16; an op without exactly one KV_ALIAS line has no such variant. */
export function kvF16Variant(op: string, source: string = shaderSource(op)): string {
  if (source.split(KV_ALIAS).length !== 2) {
    throw new Error(`shaders/${op}.wgsl has no f16 KV variant: it needs exactly one line \`${KV_ALIAS}\``);
  }
  return "enable f16;\n" + source.replace(KV_ALIAS, KV_ALIAS_F16);
}

// The second variation, as runtime.py's subgroup_variant: for devices with subgroups, lines ending in
// SG_DROP (the workgroup-memory path) are dropped and lines starting with SG_LINE (the subgroup path,
// commented out in the file) are kept without that prefix, with `enable subgroups;` first (Chrome
// needs it; naga, in the Python engine, refuses it). Only the entries in SUBGROUP_ENTRIES use it.
export const SG_DROP = "// !sg";
export const SG_LINE = "//sg ";
export const SUBGROUP_ENTRIES: readonly string[] = ["matvec_split"];

/** shaders/<op>.wgsl's subgroup variant of `source`; an op without SG_LINE lines has none. */
export function subgroupVariant(op: string, source: string = shaderSource(op)): string {
  const lines = source.split("\n");
  if (!lines.some((line) => line.startsWith(SG_LINE))) {
    throw new Error(`shaders/${op}.wgsl has no subgroup variant: it has no lines starting \`${SG_LINE}\``);
  }
  const kept = lines.filter((line) => !line.trimEnd().endsWith(SG_DROP)).map((line) => (line.startsWith(SG_LINE) ? line.slice(SG_LINE.length) : line));
  return "enable subgroups;\n" + kept.join("\n");
}
