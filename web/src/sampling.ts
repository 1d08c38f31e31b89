// Sampling options beyond MediaPipe's topK / temperature / randomSeed, as Python's wgllm.sampling
// (its docstring has the chain and its order; the GPU runs it in shaders/sample.wgsl):
// logitBias, then the penalties over the last penaltyLastN ids fed (repetitionPenalty as llama.cpp,
// frequencyPenalty / presencePenalty as OpenAI), top-k, topP and minP at temperature 1, temperature,
// the draw. logprobs: the log-softmax over the vocabulary of the logits after bias and penalties.
// Stop strings end the text at their first match, across token boundaries; StopFilter holds back
// what may still become one, so a listener never receives any of it.

export const MAX_TOP_LOGPROBS = 20;
export const MAX_STOP = 16;
export const MAX_STOP_CHARS = 256;
export const MAX_LOGIT_BIAS = 1024;
export const LOGIT_BIAS_LIMIT = 100;
export const DEFAULT_PENALTY_LAST_N = 64;

/** The extra sampling options (all optional; undefined is the default that changes nothing). */
export interface SamplingExtras {
  /** Nucleus sampling over the top-k candidates, in (0, 1]; 1 is off. */
  topP?: number;
  /** Keep candidates at least minP times as likely as the best, in [0, 1]; 0 is off. */
  minP?: number;
  /** llama.cpp's: divides a positive logit, multiplies a negative one, of ids in the window; > 0, 1 is off. */
  repetitionPenalty?: number;
  /** OpenAI's: logit -= count * frequencyPenalty, in [-2, 2]. */
  frequencyPenalty?: number;
  /** OpenAI's: logit -= presencePenalty for an id seen in the window, in [-2, 2]. */
  presencePenalty?: number;
  /** The penalty window: the last penaltyLastN ids fed (prompt included); -1 all, 0 none. Default 64. */
  penaltyLastN?: number;
  /** Token id (a number or its decimal string, as OpenAI's JSON keys) to a bias in [-100, 100]. */
  logitBias?: Record<string, number>;
  /** Report each generated token's log-probability (GenerationResult.logprobs). */
  logprobs?: boolean;
  /** With logprobs, also the best topLogprobs (0..20) ids and their log-probabilities. */
  topLogprobs?: number;
}

/** SamplingExtras checked, with defaults filled and logitBias as sorted [id, bias] pairs. */
export interface SamplingChecked {
  topP: number;
  minP: number;
  repetitionPenalty: number;
  frequencyPenalty: number;
  presencePenalty: number;
  penaltyLastN: number;
  logitBias: [number, number][];
  logprobs: boolean;
  topLogprobs: number;
}

export const SAMPLING_DEFAULTS: SamplingChecked = {
  topP: 1, minP: 0, repetitionPenalty: 1, frequencyPenalty: 0, presencePenalty: 0,
  penaltyLastN: DEFAULT_PENALTY_LAST_N, logitBias: [], logprobs: false, topLogprobs: 0,
};

export const SAMPLING_EXTRA_NAMES = ["topP", "minP", "repetitionPenalty", "frequencyPenalty", "presencePenalty", "penaltyLastN", "logitBias", "logprobs", "topLogprobs"] as const;

/** One generated token's log-probability and the best alternatives (id, log-probability). */
export interface TokenLogprob {
  token: number;
  logprob: number;
  top: [number, number][];
}

function fail(name: string, value: unknown, expected: string): never {
  throw new RangeError(`'${name}' must be ${expected}, got ${typeof value === "number" && !Number.isFinite(value) ? String(value) : JSON.stringify(value)}`);
}

const isNumber = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);

/** Check `o` (each error names its option and what was expected); nVocab bounds logitBias's ids. */
export function checkSampling(o: SamplingExtras, nVocab?: number): SamplingChecked {
  const d = SAMPLING_DEFAULTS;
  const s = { ...d, ...Object.fromEntries(Object.entries(o).filter(([k, v]) => v !== undefined && k !== "logitBias")) } as SamplingChecked;
  if (!isNumber(s.topP) || !(s.topP > 0 && s.topP <= 1)) fail("topP", s.topP, "a number in (0, 1]");
  if (!isNumber(s.minP) || !(s.minP >= 0 && s.minP <= 1)) fail("minP", s.minP, "a number in [0, 1]");
  if (!isNumber(s.repetitionPenalty) || !(s.repetitionPenalty > 0)) fail("repetitionPenalty", s.repetitionPenalty, "a number > 0 (1 = off)");
  for (const name of ["frequencyPenalty", "presencePenalty"] as const) {
    if (!isNumber(s[name]) || !(s[name] >= -2 && s[name] <= 2)) fail(name, s[name], "a number in [-2, 2] (0 = off)");
  }
  if (!Number.isInteger(s.penaltyLastN) || s.penaltyLastN < -1) fail("penaltyLastN", s.penaltyLastN, "an integer >= -1 (-1: the whole context, 0: off)");
  if (typeof s.logprobs !== "boolean") fail("logprobs", s.logprobs, "true or false");
  if (!Number.isInteger(s.topLogprobs) || s.topLogprobs < 0 || s.topLogprobs > MAX_TOP_LOGPROBS) fail("topLogprobs", s.topLogprobs, `an integer in [0, ${MAX_TOP_LOGPROBS}]`);
  if (s.topLogprobs && !s.logprobs) throw new RangeError(`'topLogprobs' = ${s.topLogprobs} needs 'logprobs': true`);
  s.logitBias = checkLogitBias(o.logitBias, nVocab);
  return s;
}

function checkLogitBias(bias: unknown, nVocab?: number): [number, number][] {
  if (bias === undefined || bias === null) return [];
  if (typeof bias !== "object" || Array.isArray(bias)) throw new RangeError(`'logitBias' must be an object of token id to bias, got ${JSON.stringify(bias)}`);
  const entries = Object.entries(bias as Record<string, unknown>);
  if (entries.length > MAX_LOGIT_BIAS) throw new RangeError(`'logitBias' has ${entries.length} entries, at most ${MAX_LOGIT_BIAS} are allowed`);
  const out: [number, number][] = [];
  for (const [key, value] of entries) {
    const id = /^\s*\d+\s*$/.test(key) ? Number(key) : NaN;
    if (!Number.isInteger(id) || (nVocab !== undefined && id >= nVocab)) {
      const expected = nVocab !== undefined ? `0..${nVocab - 1}` : "an integer >= 0";
      throw new RangeError(`'logitBias': token id ${JSON.stringify(key)} is outside the vocabulary (expected ${expected})`);
    }
    if (!isNumber(value) || Math.abs(value) > LOGIT_BIAS_LIMIT) throw new RangeError(`'logitBias[${key}]' must be a number in [-100, 100], got ${JSON.stringify(value)}`);
    out.push([id, value]);
  }
  return out.sort((a, b) => a[0] - b[0]);
}

/** The stop strings as a list (one string is a list of one). */
export function checkStop(stop: unknown): string[] {
  if (stop === undefined || stop === null) return [];
  const stops = typeof stop === "string" ? [stop] : stop;
  if (!Array.isArray(stops)) throw new RangeError(`'stop' must be a string or a list of strings, got ${JSON.stringify(stop)}`);
  if (stops.length > MAX_STOP) throw new RangeError(`'stop' has ${stops.length} strings, at most ${MAX_STOP} are allowed`);
  for (const s of stops) {
    if (typeof s !== "string" || !s || s.length > MAX_STOP_CHARS) {
      throw new RangeError(`'stop' strings must be non-empty strings of at most ${MAX_STOP_CHARS} characters, got ${JSON.stringify(s)}`);
    }
  }
  return [...stops];
}

export function penalized(s: SamplingChecked): boolean {
  return s.penaltyLastN !== 0 && (s.repetitionPenalty !== 1 || s.frequencyPenalty !== 0 || s.presencePenalty !== 0);
}

/** sample.wgsl's Adjust entries (id, penalized, bias, count * frequency + presence as f32), one per
 * id with a bias or a count in the penalty window of `history` (every id fed), by id. */
export function adjustEntries(s: SamplingChecked, history: readonly number[]): Uint32Array {
  const counts = new Map<number, number>();
  if (penalized(s)) {
    const from = s.penaltyLastN < 0 ? 0 : Math.max(0, history.length - s.penaltyLastN);
    for (let i = from; i < history.length; i++) counts.set(history[i], (counts.get(history[i]) ?? 0) + 1);
  }
  const bias = new Map(s.logitBias);
  const ids = [...new Set([...counts.keys(), ...bias.keys()])].sort((a, b) => a - b);
  const words = new Uint32Array(4 * ids.length);
  const floats = new Float32Array(words.buffer);
  const f = Math.fround;
  ids.forEach((id, e) => {
    const n = counts.get(id) ?? 0;
    words[4 * e] = id;
    words[4 * e + 1] = n > 0 ? 1 : 0;
    floats[4 * e + 2] = bias.get(id) ?? 0;
    // reference.penalty_offset: float32(float32(n) * float32(frequency)) + float32(presence), in float32
    floats[4 * e + 3] = f(f(n * f(s.frequencyPenalty)) + f(s.presencePenalty));
  });
  return words;
}

/** Cuts streamed text at the first stop string; holds back the longest suffix that may start one. */
export class StopFilter {
  private held = "";
  /** The stop string found, once found. */
  stopped?: string;

  constructor(private readonly stops: string[]) {}

  /** The text that is safe to pass on after `piece`. */
  push(piece: string): string {
    const text = this.held + piece;
    let at = -1;
    for (const s of this.stops) {
      const i = text.indexOf(s);
      if (i >= 0 && (at < 0 || i < at || (i === at && s < this.stopped!))) {
        at = i;
        this.stopped = s;
      }
    }
    if (at >= 0) {
      this.held = "";
      return text.slice(0, at);
    }
    let keep = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, text.length); n > keep; n--) {
        if (text.endsWith(s.slice(0, n))) {
          keep = n;
          break;
        }
      }
    }
    this.held = text.slice(text.length - keep);
    return text.slice(0, text.length - keep);
  }

  /** At the end of generation: what was held back (it never became a stop string). */
  flush(): string {
    const held = this.held;
    this.held = "";
    return held;
  }
}

/** A token mask (1 = allowed, one per id) as sample.wgsl's bits: bit i % 32 of word i / 32 is id i
 * (Python's sampling.mask_words). */
export function maskWords(mask: Uint8Array): Uint32Array {
  const words = new Uint32Array(Math.max(1, Math.ceil(mask.length / 32)));
  for (let i = 0; i < mask.length; i++) if (mask[i]) words[i >>> 5] |= 1 << (i & 31);
  return words;
}
