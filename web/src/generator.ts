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

import type { SampledToken } from "./engine";
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

/** What the loop needs from the engine (web/src/engine.ts). */
export interface SamplingEngine {
  readonly maxTokens: number;
  sampleToken(
    ids: number[],
    pos0: number,
    s: Omit<SamplingSettings, "stop"> & { step: number; lora?: unknown; history?: readonly number[] },
  ): Promise<SampledToken>;
}

/** What the loop needs from the tokenizer (web/src/tokenizer.ts). */
export interface DecodingTokenizer {
  isEndOfGeneration(id: number): boolean;
}

export interface PieceDecoder {
  push(id: number): string;
  flush(): string;
}

export interface RunRequest extends SamplingSettings {
  ids: number[];
  maxTokens: number;
  /** An adapter handle the engine understands; the cached prefix is kept per adapter. */
  lora?: unknown;
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
  /** "stop": an end-of-generation token or a stop string (then `stop` is it); "length": maxTokens. */
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

  async run(req: RunRequest, onPiece: (piece: string) => void, cancelled: () => boolean): Promise<RunResult> {
    const { ids, maxTokens } = req;
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
    let sampled = await this.engine.sampleToken(ids.slice(start), start, { ...sampling, step: step++, history: ids });
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
      if (total >= maxTokens) break;
      const history = req.extras && penalized(req.extras) ? [...fed, token] : [];
      const next = await this.engine.sampleToken([token], fed.length, { ...sampling, step: step++, history });
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
