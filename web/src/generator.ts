// The generation loop shared by the page-thread and worker modes: prefill, then decode one token
// at a time until an end-of-generation token, maxTokens or cancellation — the same loop as
// Python's wgllm.generation.run_session, so the same ids come out.
//
// The KV cache survives between calls: a prompt that starts with the tokens the previous call
// fed (a chat's history plus the new turn) runs only its new tokens. Positions before the shared
// prefix hold exactly the keys and values a full run would compute (attention is causal), so
// only the new suffix is prefilled; the first sampled token still uses step 0 of the seed's
// random stream, as a fresh run does.

export interface SamplingSettings {
  topK: number;
  temperature: number;
  seed: number;
}

/** What the loop needs from the engine (web/src/engine.ts). */
export interface SamplingEngine {
  readonly maxTokens: number;
  sample(ids: number[], pos0: number, s: SamplingSettings & { step: number; lora?: unknown }): Promise<number>;
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
    const sampling = { topK: req.topK, temperature: req.temperature, seed: req.seed, lora: req.lora };
    const pieces: string[] = [];
    const decoder = this.decoder();
    let step = 0;
    const t0 = performance.now();
    let token = await this.engine.sample(ids.slice(start), start, { ...sampling, step: step++ });
    const t1 = performance.now();
    const fed = [...ids];
    this.cached = fed;
    let total = ids.length;
    while (!this.tokenizer.isEndOfGeneration(token) && !cancelled()) {
      const piece = decoder.push(token);
      total += 1;
      if (piece) {
        pieces.push(piece);
        onPiece(piece);
      }
      if (total >= maxTokens) break;
      const next = await this.engine.sample([token], fed.length, { ...sampling, step: step++ });
      fed.push(token);
      token = next;
    }
    const tail = decoder.flush();
    if (tail) {
      pieces.push(tail);
      onPiece(tail);
    }
    const prefillSeconds = (t1 - t0) / 1000;
    return { text: pieces.join(""), fed: fed.length, reused: start, sampled: step, prefillSeconds, decodeSeconds: (performance.now() - t1) / 1000 };
  }
}
