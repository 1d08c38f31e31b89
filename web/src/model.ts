// ModelConfig from GGUF metadata: the TypeScript twin of py/wgllm/model.py (ModelConfig.from_gguf,
// _ARCH_RECIPES), with the same keys, defaults and messages, so both engines run the same flags.

import { ModelFormatError } from "./errors";
import type { GGUFHeader, GGUFTensorInfo, GGUFValue } from "./gguf";

export interface ArchRecipe {
  readonly norm: "rms" | "layer";
  readonly ffn: "swiglu" | "geglu" | "gelu" | "gelu_erf";
  readonly rope: "norm" | "neox" | "none";
  readonly parallel: boolean; // attention and MLP read the same normed input (Phi-2)
  readonly postNorms: boolean; // Gemma-2/3: norms after attention and after the MLP
  readonly qkNorm: boolean; // Gemma-3, Qwen3: RMSNorm over each head of Q and K
  readonly embedScale: boolean; // Gemma: embeddings times sqrt(n_embd)
  readonly learnedPos: boolean; // GPT-2: position_embd added to the token embeddings
  readonly swaPattern: number; // every swaPattern-th layer is global, the others sliding (0: none)
  readonly alibi: boolean; // Falcon-RW: ALiBi instead of RoPE
  readonly qkvBias: boolean; // Qwen2: Q, K and V biases on every layer (required, as llama.cpp requires them)
  readonly fusedGateUp: boolean; // Phi-3: ffn_up holds the gate's n_ff rows, then up's (split into two views at load)
  readonly swaAll: boolean; // Phi-3, llama (Mistral): every layer slides when the file sets attention.sliding_window
  readonly nopeEvery: number; // SmolLM3: every nopeEvery-th layer skips RoPE (llama.cpp hard-codes 4; no GGUF key)
}

function recipe(r: Pick<ArchRecipe, "norm" | "ffn" | "rope"> & Partial<ArchRecipe>): ArchRecipe {
  return { parallel: false, postNorms: false, qkNorm: false, embedScale: false, learnedPos: false, swaPattern: 0, alibi: false, qkvBias: false, fusedGateUp: false, swaAll: false, nopeEvery: 0, ...r };
}

export const ARCH_RECIPES: Readonly<Record<string, ArchRecipe>> = {
  llama: recipe({ norm: "rms", ffn: "swiglu", rope: "norm", swaAll: true }), // Mistral-7B v0.1: a window on every layer when set
  gemma: recipe({ norm: "rms", ffn: "geglu", rope: "neox", embedScale: true }),
  gemma2: recipe({ norm: "rms", ffn: "geglu", rope: "neox", embedScale: true, postNorms: true, swaPattern: 2 }),
  gemma3: recipe({ norm: "rms", ffn: "geglu", rope: "neox", embedScale: true, postNorms: true, qkNorm: true, swaPattern: 6 }),
  phi2: recipe({ norm: "layer", ffn: "gelu", rope: "neox", parallel: true }),
  falcon: recipe({ norm: "layer", ffn: "gelu_erf", rope: "none", alibi: true }),
  stablelm: recipe({ norm: "layer", ffn: "swiglu", rope: "neox" }),
  gpt2: recipe({ norm: "layer", ffn: "gelu", rope: "none", learnedPos: true }),
  qwen2: recipe({ norm: "rms", ffn: "swiglu", rope: "neox", qkvBias: true }),
  qwen3: recipe({ norm: "rms", ffn: "swiglu", rope: "neox", qkNorm: true }),
  phi3: recipe({ norm: "rms", ffn: "swiglu", rope: "neox", fusedGateUp: true, swaAll: true }),
  smollm3: recipe({ norm: "rms", ffn: "swiglu", rope: "norm", nopeEvery: 4 }),
};
export const SUPPORTED_ARCHITECTURES = Object.keys(ARCH_RECIPES);
// Architectures llama.cpp runs whose text decoder needs more than a recipe: what is missing, named
// when such a file is refused (Python's _NOT_YET_SUPPORTED, word for word; docs/gemma4.md).
const NOT_YET_SUPPORTED: Readonly<Record<string, readonly string[]>> = {
  gemma4: [
    "head size and KV head count per layer (global heads of 512 > the attention kernels' 256)",
    "KV cache shared across layers (attention.shared_kv_layers)",
    "per-layer token embeddings (per_layer_token_embd)",
    "mixture-of-experts FFN (ffn_gate_inp, ffn_gate_up_exps, ffn_down_exps)",
    "FFN width per layer",
  ],
};

// llama.cpp scales Gemma-2/3 queries by 1/sqrt(n_embd/n_head) for the 27B models only (known by
// their layer count); every other size uses 1/sqrt(head_dim).
const GEMMA_27B_LAYERS: Record<string, number> = { gemma2: 46, gemma3: 62 };
const GEMMA3_LOCAL_ROPE_BASE = 10000.0; // hard-coded in llama.cpp, not stored in GGUF

export interface ModelConfig {
  readonly arch: string;
  readonly recipe: ArchRecipe;
  readonly nVocab: number;
  readonly nCtxTrain: number;
  readonly nEmbd: number;
  readonly nLayer: number;
  readonly nHead: number;
  readonly nHeadKv: number;
  readonly headDim: number; // of Q and K
  readonly headDimV: number;
  readonly nFf: number;
  readonly normEps: number;
  readonly nRot: number; // rotary dimensions per head (0 without RoPE)
  readonly ropeBase: number; // global layers
  readonly ropeBaseLocal: number; // sliding-window layers (Gemma-3)
  readonly ropeScale: number; // positions divided by this on global layers (linear scaling)
  readonly attnScale: number;
  readonly attnSoftcap: number; // 0: off
  readonly finalSoftcap: number; // 0: off
  readonly slidingWindow: number; // 0: off
  readonly swaLayers: readonly boolean[];
  readonly alibiMaxBias: number;
  readonly tiedOutput: boolean;
  readonly hasOutputBias: boolean;
  readonly ropeFreqs: boolean; // rope_freqs.weight (llama-3's RoPE scaling): each rotary frequency divided by its factor
  // LongRoPE (Phi-3): rope_factors_long/short.weight, the long ones for a context above ropeCtxOrig
  readonly longrope: boolean;
  readonly ropeCtxOrig: number;
  readonly ropeAttnFactor: number; // rope.scaling.attn_factor: cos and sin multiplied by it (llama.cpp's mscale)
}

/** The tensor dividing the rotary frequencies for a context of nCtx tokens (llama.cpp's get_rope_factors:
 * LongRoPE's long factors when nCtx > the original context), or undefined. Python's rope_factors_name. */
export function ropeFactorsName(c: ModelConfig, nCtx: number): string | undefined {
  if (c.ropeFreqs) return "rope_freqs.weight";
  if (c.longrope) return nCtx > c.ropeCtxOrig ? "rope_factors_long.weight" : "rope_factors_short.weight";
  return undefined;
}

/** Each layer's fused ffn_up (2 * nFf rows: the gate's, then up's) becomes two views of its bytes,
 * ffn_gate and ffn_up of nFf rows (whole rows are whole quant blocks), so the engine runs the SwiGLU
 * of separate tensors; the stream then hands out each half as its own tensor. Done once. */
function splitGateUp(h: GGUFHeader, arch: string, nLayer: number, nFf: number): void {
  if (h.tensors.some((t) => t.name === "blk.0.ffn_gate.weight")) return;
  const out: GGUFTensorInfo[] = [];
  for (const t of h.tensors) {
    const m = /^blk\.(\d+)\.ffn_up\.weight$/.exec(t.name);
    if (!m || Number(m[1]) >= nLayer) {
      out.push(t);
      continue;
    }
    if (t.shape.length !== 2 || t.shape[0] !== 2 * nFf) {
      throw new ModelFormatError(
        `${h.source}: tensor ${t.name} has shape (${t.shape.join(", ")}), expected (${2 * nFf}, n_embd): ${arch}'s gate and up rows (2 x feed_forward_length ${nFf})`,
      );
    }
    const half = { ...t, shape: [nFf, t.shape[1]], nBytes: t.nBytes / 2, nElements: t.nElements / 2 };
    out.push({ ...half, name: `blk.${m[1]}.ffn_gate.weight` }, { ...half, offset: t.offset + t.nBytes / 2 });
  }
  (h as { tensors: readonly GGUFTensorInfo[] }).tensors = out;
}

/** Rotary dims of `layer`: 0 on SmolLM3's NoPE layers (every nopeEvery-th: 3, 7, ...). Python's layer_n_rot. */
export function layerNRot(c: ModelConfig, layer: number): number {
  const every = c.recipe.nopeEvery;
  return every && (layer + 1) % every === 0 ? 0 : c.nRot;
}

/** (base, position scale) of the RoPE used by `layer`. */
export function layerRope(c: ModelConfig, layer: number): [number, number] {
  if (c.arch === "gemma3" && c.swaLayers[layer]) return [c.ropeBaseLocal, 1.0];
  return [c.ropeBase, c.ropeScale];
}

function isNumber(v: GGUFValue | undefined): v is number | bigint {
  return typeof v === "number" || typeof v === "bigint";
}

function show(v: GGUFValue | undefined): string {
  if (typeof v === "string") return `'${v}'`;
  if (typeof v === "object" && v !== null) return `[${Array.from(v as ArrayLike<unknown>).slice(0, 16).join(", ")}]`;
  return String(v);
}

/** A hyperparameter that GGUF may store per layer (an array); wgllm needs it constant. */
function perLayerConstant(h: GGUFHeader, key: string, fallback?: number): number {
  let value: GGUFValue | undefined = h.get(key);
  if (value === undefined) {
    if (fallback !== undefined) return fallback;
    h.require(key); // throws, naming the file and the key
  }
  if (typeof value === "object" && value !== null && "length" in value && typeof value !== "string") {
    const items = Array.from(value as ArrayLike<number | bigint | boolean | string>);
    if (items.length === 0 || items.some((x) => x !== items[0])) {
      throw new ModelFormatError(`${h.source}: ${key} varies per layer (${show(value)}); wgllm needs one value`);
    }
    value = items[0] as GGUFValue;
  }
  if (!isNumber(value)) throw new ModelFormatError(`${h.source}: metadata key ${key} is ${show(value)}, expected a number`);
  return Number(value);
}

export function modelConfigFromHeader(h: GGUFHeader): ModelConfig {
  const src = h.source;
  const arch = h.architecture;
  const r = ARCH_RECIPES[arch];
  const missing = Object.hasOwn(NOT_YET_SUPPORTED, arch) ? NOT_YET_SUPPORTED[arch] : undefined;
  if (missing) {
    throw new ModelFormatError(`${src}: the ${arch} text decoder is not supported yet; missing: ${missing.join("; ")} (see docs/${arch}.md)`);
  }
  if (!Object.hasOwn(ARCH_RECIPES, arch) || !r) {
    throw new ModelFormatError(`${src}: unsupported architecture '${arch}'; supported: ${SUPPORTED_ARCHITECTURES.join(", ")}`);
  }
  const key = (name: string, fallback?: number): number => {
    const full = `${arch}.${name}`;
    const value = h.get(full);
    if (value === undefined) {
      if (fallback !== undefined) return fallback;
      throw new ModelFormatError(`${src}: missing metadata key ${full}`);
    }
    if (!isNumber(value)) throw new ModelFormatError(`${src}: metadata key ${full} is ${show(value)}, expected a number`);
    return Number(value);
  };
  // a fractional, infinite or NaN value (a corrupt file's) is refused where a count is expected
  const wholeOf = (full: string, value: number): number => {
    if (!Number.isInteger(value)) throw new ModelFormatError(`${src}: metadata key ${full} is ${value}, expected a whole number`);
    return value;
  };
  const whole = (name: string, fallback?: number): number => wholeOf(`${arch}.${name}`, key(name, fallback));

  const nEmbd = whole("embedding_length");
  const nLayer = whole("block_count");
  if (!(nLayer >= 1 && nLayer <= h.tensors.length)) {
    // every layer has tensors of its own
    throw new ModelFormatError(`${src}: ${arch}.block_count = ${nLayer}, expected 1..${h.tensors.length} (the file's tensor count)`);
  }
  const nHead = wholeOf(`${arch}.attention.head_count`, perLayerConstant(h, `${arch}.attention.head_count`));
  const nHeadKv = wholeOf(`${arch}.attention.head_count_kv`, perLayerConstant(h, `${arch}.attention.head_count_kv`, nHead));
  if (nHead <= 0 || nHeadKv <= 0 || nHead % nHeadKv) {
    throw new ModelFormatError(`${src}: ${nHead} attention heads cannot be shared by ${nHeadKv} KV heads`);
  }
  const headDim = whole("attention.key_length", Math.floor(nEmbd / nHead));
  const headDimV = whole("attention.value_length", headDim);
  const nFf = wholeOf(`${arch}.feed_forward_length`, perLayerConstant(h, `${arch}.feed_forward_length`));
  if (Math.min(nEmbd, headDim, headDimV, nFf) <= 0) {
    throw new ModelFormatError(`${src}: ${arch} sizes embedding ${nEmbd}, head ${headDim} (values ${headDimV}), feed-forward ${nFf}: expected positive ones`);
  }
  const normEps = key(r.norm === "rms" ? "attention.layer_norm_rms_epsilon" : "attention.layer_norm_epsilon");
  const nRot = r.rope === "none" ? 0 : whole("rope.dimension_count", headDim);
  if (nRot % 2 || nRot > headDim) {
    throw new ModelFormatError(`${src}: ${arch}.rope.dimension_count = ${nRot}, expected an even number <= ${headDim}`);
  }
  let ropeScale = 1.0;
  const scaling = h.get(`${arch}.rope.scaling.type`);
  if (scaling !== undefined && scaling !== "none") {
    if (scaling !== "linear") {
      throw new ModelFormatError(`${src}: ${arch}.rope.scaling.type = ${show(scaling)}; only 'linear' is supported`);
    }
    ropeScale = key("rope.scaling.factor", 1.0);
  }
  const headForScale = GEMMA_27B_LAYERS[arch] === nLayer ? Math.floor(nEmbd / nHead) : headDim;
  const window = r.swaPattern || r.swaAll ? whole("attention.sliding_window", 0) : 0;
  const swaLayers = Array.from({ length: nLayer }, (_, layer) => window !== 0 && (r.swaAll || layer % r.swaPattern < r.swaPattern - 1));
  if (r.fusedGateUp) splitGateUp(h, arch, nLayer, nFf);
  const names = new Set(h.tensors.map((t) => t.name));
  // what the recipe needs on every layer, named before any weight is read (Python's _required)
  const required: [string, string][] = [
    ...(r.qkvBias ? [..."qkv"].map((p): [string, string] => [`attn_${p}.bias`, "Q, K and V biases"]) : []),
    ...(r.qkNorm ? [..."qk"].map((p): [string, string] => [`attn_${p}_norm.weight`, "an RMSNorm over each head of Q and K"]) : []),
  ];
  for (let layer = 0; layer < nLayer; layer++) {
    for (const [name, why] of required) {
      if (!names.has(`blk.${layer}.${name}`)) throw new ModelFormatError(`${src}: tensor blk.${layer}.${name} is missing; ${arch} has ${why} on every layer`);
    }
  }
  const ropeFreqs = names.has("rope_freqs.weight");
  if (ropeFreqs) {
    const shape = h.tensor("rope_freqs.weight").shape;
    if (!nRot || shape.length !== 1 || shape[0] !== nRot / 2) {
      throw new ModelFormatError(
        `${src}: tensor rope_freqs.weight has shape (${shape.join(", ")}${shape.length === 1 ? "," : ""}), expected (${nRot / 2},) (half of ${arch}'s ${nRot} rotary dimensions)`,
      );
    }
  }
  const longrope = names.has("rope_factors_long.weight") || names.has("rope_factors_short.weight");
  if (longrope) {
    for (const name of ["rope_factors_long.weight", "rope_factors_short.weight"]) {
      const shape = h.tensor(name).shape;
      if (!nRot || shape.length !== 1 || shape[0] !== nRot / 2) {
        throw new ModelFormatError(
          `${src}: tensor ${name} has shape (${shape.join(", ")}${shape.length === 1 ? "," : ""}), expected (${nRot / 2},) (half of ${arch}'s ${nRot} rotary dimensions)`,
        );
      }
    }
  }
  const embd = h.tensor("token_embd.weight");
  const nVocab = embd.shape[0];
  const tokens = h.get("tokenizer.ggml.tokens");
  if (Array.isArray(tokens) && tokens.length !== nVocab) {
    throw new ModelFormatError(`${src}: the tokenizer has ${tokens.length} tokens but token_embd.weight has ${nVocab} rows`);
  }
  return {
    arch,
    recipe: r,
    nVocab,
    nCtxTrain: whole("context_length", 0),
    nEmbd,
    nLayer,
    nHead,
    nHeadKv,
    headDim,
    headDimV,
    nFf,
    normEps,
    nRot,
    ropeBase: key("rope.freq_base", 10000.0),
    ropeBaseLocal: GEMMA3_LOCAL_ROPE_BASE,
    ropeScale,
    attnScale: 1.0 / Math.sqrt(headForScale),
    attnSoftcap: arch === "gemma2" ? key("attn_logit_softcapping", 0.0) : 0.0,
    finalSoftcap: arch === "gemma2" ? key("final_logit_softcapping", 0.0) : 0.0,
    slidingWindow: window,
    swaLayers,
    alibiMaxBias: r.alibi ? key("attention.max_alibi_bias", 8.0) : 0.0,
    tiedOutput: !names.has("output.weight"),
    hasOutputBias: names.has("output.bias"),
    ropeFreqs,
    longrope,
    ropeCtxOrig: whole("rope.scaling.original_context_length", whole("context_length", 0)),
    ropeAttnFactor: key("rope.scaling.attn_factor", 1.0),
  };
}
