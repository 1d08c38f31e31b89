// The generation loop shared by the page-thread and worker modes: prefill, then decode one token
// at a time until an end-of-generation token, maxTokens, a stop string or cancellation — the same
// loop as Python's wgllm.generation.run_generation, so the same ids come out. Stop strings are
// matched on the decoded text across token boundaries (sampling.ts StopFilter: the stop string and
// what follows are not returned, and onPiece never receives text that may still start one).
//
// The KV cache survives between calls: a prompt that starts with the tokens the previous call
// fed (a chat's history plus the new turn) runs only its new tokens. Positions before the shared
// prefix hold exactly the keys and values a full run would compute (attention is causal), so
// only the new suffix is prefilled; the first sampled token still uses step 0 of the seed's
// random stream, as a fresh run does.
//
// Structured output (RunRequest.responseFormat, OpenAI's response_format): the grammar (grammar.ts)
// masks every step in the sampler, the state advances by each token's bytes, and the answer ends
// ("stop") once the document is whole and nothing but the end may follow, as run_generation does.

import type { SampledToken } from "./engine";
import { WgllmError } from "./errors";
import { type GrammarState, type GrammarTokenizer, GrammarVocabulary, type JsonGrammar, grammarForResponseFormat, tokenMask } from "./grammar";
import { type SamplingChecked, StopFilter, type TokenLogprob, penalized } from "./sampling";

export interface SamplingSettings {
  topK: number;
  temperature: number;
  seed: number;
  /** The rest of the chain (sampling.ts checkSampling's result); none: top-k and temperature alone. */
  extras?: SamplingChecked;
  /** Stop strings (checkStop's result): the text ends before the first one found. */
  stop?: string[];
}

/** The tokenizer's GrammarVocabulary, made once per tokenizer (its tables take a moment for a large vocabulary). */
const vocabularies = new WeakMap<GrammarTokenizer, GrammarVocabulary>();
export function grammarVocabulary(tokenizer: GrammarTokenizer): GrammarVocabulary {
  let vocab = vocabularies.get(tokenizer);
  if (!vocab) vocabularies.set(tokenizer, (vocab = GrammarVocabulary.fromTokenizer(tokenizer)));
  return vocab;
}

/** What the loop needs from the engine (web/src/engine.ts). */
export interface SamplingEngine {
  readonly maxTokens: number;
  sampleToken(
    ids: number[],
    pos0: number,
    s: Omit<SamplingSettings, "stop"> & { step: number; lora?: unknown; history?: readonly number[]; mask?: Uint8Array },
  ): Promise<SampledToken>;
}

/** What the loop needs from the tokenizer (web/src/tokenizer.ts): the grammar's mask reads its token bytes. */
export interface DecodingTokenizer extends GrammarTokenizer {
  isEndOfGeneration(id: number): boolean;
}

/** OpenAI's response_format (grammar.ts grammarForResponseFormat): plain JSON, so it crosses to a worker. */
export type ResponseFormat =
  | { type: "text" }
  | { type: "json_object" }
  | { type: "json_schema"; json_schema: { name?: string; description?: string; schema: unknown; strict?: boolean } };

export interface PieceDecoder {
  push(id: number): string;
  flush(): string;
}

export interface RunRequest extends SamplingSettings {
  ids: number[];
  maxTokens: number;
  /** An adapter handle the engine understands; the cached prefix is kept per adapter. */
  lora?: unknown;
  /** At most this many tokens generated (undefined: up to maxTokens, which counts the prompt too). */
  maxNewTokens?: number;
  /** Constrain the answer to JSON (a schema's documents): checked by the caller, compiled here. */
  responseFormat?: ResponseFormat;
}

export interface RunResult {
  text: string;
  /** Tokens fed to the model (prompt and generated, not the final sampled one). */
  fed: number;
  /** Prompt tokens whose KV came from the previous call. */
  reused: number;
  /** Tokens sampled (including an end-of-generation token). */
  sampled: number;
  /** The generated ids (an end-of-generation token excluded) and, with extras.logprobs, their logprobs. */
  tokens: number[];
  logprobs?: TokenLogprob[];
  /** "stop": an end-of-generation token, a stop string (then `stop` is it) or the grammar's document
   * complete; "length": maxTokens or maxNewTokens. */
  finishReason: "stop" | "length" | "cancelled";
  stop?: string;
  /** The prefill step: from the call to its first token sampled (the time to first token). */
  prefillSeconds: number;
  /** The decode steps after it, each feeding one token and sampling the next. */
  decodeSeconds: number;
}

export class Generator {
  private cached: number[] = []; // ids whose K/V sit in the cache at positions 0..n-1
  private cachedLora: unknown = undefined;
  private grammar?: { key: string; grammar: JsonGrammar | null }; // the last response format compiled

  constructor(
    private readonly engine: SamplingEngine,
    private readonly tokenizer: DecodingTokenizer,
    private readonly decoder: () => PieceDecoder,
  ) {}

  /** Forget the cached prefix (after an error the cache content is unknown). */
  reset(): void {
    this.cached = [];
    this.cachedLora = undefined;
  }

  /** The grammar of `format` (null: free text); the last one is kept, so n answers compile it once. */
  private grammarFor(format: ResponseFormat | undefined): JsonGrammar | null {
    const key = JSON.stringify(format ?? null);
    if (this.grammar?.key !== key) this.grammar = { key, grammar: grammarForResponseFormat(format) };
    return this.grammar.grammar;
  }

  async run(req: RunRequest, onPiece: (piece: string) => void, cancelled: () => boolean): Promise<RunResult> {
    const { ids, maxTokens, maxNewTokens } = req;
    const grammar = this.grammarFor(req.responseFormat);
    const vocab = grammar ? grammarVocabulary(this.tokenizer) : undefined;
    let state: GrammarState | null = grammar ? grammar.start() : null;
    const mask = () => (state ? tokenMask(state, vocab!) : undefined);
    let start = 0;
    if (this.cachedLora === req.lora) {
      const n = Math.min(this.cached.length, ids.length - 1); // at least one token runs, to get logits
      while (start < n && this.cached[start] === ids[start]) start++;
    }
    this.cached = ids.slice(0, start);
    this.cachedLora = req.lora;
    const sampling = { topK: req.topK, temperature: req.temperature, seed: req.seed, extras: req.extras, lora: req.lora };
    const pieces: string[] = [];
    const stops = new StopFilter(req.stop ?? []);
    const emit = (text: string) => {
      if (!text) return;
      pieces.push(text);
      onPiece(text);
    };
    const decoder = this.decoder();
    const tokens: number[] = [];
    const logprobs: TokenLogprob[] | undefined = req.extras?.logprobs ? [] : undefined;
    let finishReason: RunResult["finishReason"] = "length";
    let step = 0;
    const t0 = performance.now();
    let sampled = await this.engine.sampleToken(ids.slice(start), start, { ...sampling, step: step++, history: ids, mask: mask() });
    const t1 = performance.now();
    const fed = [...ids];
    this.cached = fed;
    let total = ids.length;
    for (;;) {
      const token = sampled.token;
      if (this.tokenizer.isEndOfGeneration(token)) {
        finishReason = "stop";
        break;
      }
      if (cancelled()) {
        finishReason = "cancelled";
        break;
      }
      tokens.push(token);
      logprobs?.push({ token, logprob: sampled.logprob!, top: sampled.top ?? [] });
      emit(stops.push(decoder.push(token)));
      total += 1;
      if (stops.stopped !== undefined) {
        finishReason = "stop";
        break;
      }
      if (total >= maxTokens || (maxNewTokens !== undefined && tokens.length >= maxNewTokens)) break;
      if (state) {
        state = state.advance(this.tokenizer.tokenBytes(token));
        // the sampler drew a token its mask left out: a bug, never a silent wrong answer
        if (!state) throw new WgllmError(`internal error: token ${token} does not continue the grammar's document (the mask was not applied)`);
        if (state.isAccepting() && !state.canContinue()) {
          finishReason = "stop"; // the document is whole and nothing may follow it
          break;
        }
      }
      const history = req.extras && penalized(req.extras) ? [...fed, token] : [];
      const next = await this.engine.sampleToken([token], fed.length, { ...sampling, step: step++, history, mask: mask() });
      fed.push(token);
      sampled = next;
    }
    if (stops.stopped === undefined) {
      emit(stops.push(decoder.flush()));
      emit(stops.flush());
    }
    const prefillSeconds = (t1 - t0) / 1000;
    return { text: pieces.join(""), fed: fed.length, reused: start, sampled: step, tokens, logprobs, finishReason, stop: stops.stopped, prefillSeconds, decodeSeconds: (performance.now() - t1) / 1000 };
  }
}
