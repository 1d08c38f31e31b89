// Tokenizers built from GGUF metadata alone: the browser twin of py/wgllm/tokenizer.py, which
// follows llama.cpp's llama-vocab.cpp token for token. Same algorithms, same tie-breaking, same
// messages where they can be the same; the Python module's docstring explains the rules.
//   "llama":  SentencePiece-style; spaces become U+2581, symbols merge greedily by score, byte fallback.
//   "gpt2":   byte-level BPE; a pre-tokenizer (tokenizer.ggml.pre) splits words, merges by rank.
//   "gemma4": SPM-style BPE; spaces become U+2581, newline runs split apart, merges by rank, byte fallback.
// Text is handled in code points (as Python's str is), never in UTF-16 units, wherever an offset
// decides a split. Unicode categories come from the browser's regex engine (\p{..}), which follows
// a newer Unicode than Python 3.11's unicodedata (14.0): characters assigned since then are
// UNDEFINED in Python and get their real category here (llama.cpp, with its own newer table,
// agrees with the browser). Every other code point has the same flags on both sides
// (tests/browser/tokenizer.spec.ts compares the full tables).

import { ModelFormatError } from "./errors";
import type { GGUFHeader, GGUFValue } from "./gguf";
import { PRE_TOKENIZERS, preTokenize, type PreTokenizer } from "./pretokenizer";

export { PRE_TOKENIZERS, codepointFlags, preTokenize } from "./pretokenizer";

/** GPT-2's byte -> printable character table: printable Latin-1 bytes stand for themselves,
 * the other 68 bytes take U+0100, U+0101, ... in byte order. */
const BYTE_CHARS: readonly string[] = (() => {
  let n = 0;
  return Array.from({ length: 256 }, (_, b) =>
    (b >= 0x21 && b < 0x7f) || (b >= 0xa1 && b < 0xad) || b >= 0xae ? String.fromCharCode(b) : String.fromCharCode(256 + n++));
})();
const CHAR_TO_BYTE = new Map(BYTE_CHARS.map((c, b) => [c, b]));
const SPM_SPACE = "\u2581";

// -- a binary min-heap over tuples compared element by element (Python's heapq on tuples) --------
type Entry = (number | string)[];

function less(a: Entry, b: Entry): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] < b[i];
  return false;
}

class Heap {
  private items: Entry[] = [];
  get size(): number {
    return this.items.length;
  }
  push(e: Entry): void {
    const h = this.items;
    let i = h.push(e) - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(h[i], h[p])) break;
      [h[i], h[p]] = [h[p], h[i]];
      i = p;
    }
  }
  pop(): Entry {
    const h = this.items, top = h[0], last = h.pop()!;
    if (h.length) {
      h[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < h.length && less(h[l], h[m])) m = l;
        if (r < h.length && less(h[r], h[m])) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m], h[i]];
        i = m;
      }
    }
    return top;
  }
}

// -- metadata keys and token types (gguf.Keys.Tokenizer, gguf.TokenType) --------------------------
const KEY = {
  MODEL: "tokenizer.ggml.model", PRE: "tokenizer.ggml.pre", LIST: "tokenizer.ggml.tokens",
  TOKEN_TYPE: "tokenizer.ggml.token_type", SCORES: "tokenizer.ggml.scores", MERGES: "tokenizer.ggml.merges",
  BOS_ID: "tokenizer.ggml.bos_token_id", EOS_ID: "tokenizer.ggml.eos_token_id", UNK_ID: "tokenizer.ggml.unknown_token_id",
  EOT_ID: "tokenizer.ggml.eot_token_id", EOM_ID: "tokenizer.ggml.eom_token_id",
  FIM_PAD_ID: "tokenizer.ggml.fim_pad_token_id", FIM_REP_ID: "tokenizer.ggml.fim_rep_token_id",
  FIM_SEP_ID: "tokenizer.ggml.fim_sep_token_id",
  ADD_BOS: "tokenizer.ggml.add_bos_token", ADD_EOS: "tokenizer.ggml.add_eos_token", ADD_PREFIX: "tokenizer.ggml.add_space_prefix",
} as const;
const NORMAL = 1, UNKNOWN = 2, CONTROL_TOKEN = 3, USER_DEFINED = 4, BYTE = 6;
const VALID_TYPES = new Set([1, 2, 3, 4, 5, 6]);
const isSpecialType = (t: number) => t === CONTROL_TOKEN || t === UNKNOWN || t === USER_DEFINED;

// texts llama.cpp's vocab loader treats as end of generation (besides eos/eot/eom and fim pad/rep/sep)
const EOG_TEXTS = [
  "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
  "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
  "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[",
];
// special ids llama.cpp finds by text when the metadata does not give them (the lowest id)
const FOUND_BY_TEXT: [string, string[]][] = [
  [KEY.EOT_ID, ["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
    "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>"]],
  [KEY.EOM_ID, ["<|eom_id|>"]],
  [KEY.FIM_PAD_ID, ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"]],
  [KEY.FIM_REP_ID, ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"]],
  [KEY.FIM_SEP_ID, ["<|file_sep|>"]],
];
const SUPPORTED_MODELS = ["llama", "gpt2", "gemma4"];

type NumericArray = Exclude<GGUFValue, number | bigint | boolean | string | boolean[] | string[]>;
const isNumericArray = (v: GGUFValue | undefined): v is NumericArray => ArrayBuffer.isView(v);
/** A metadata value for a message: numbers and bools as they are, strings quoted, arrays by kind. */
const describe = (v: GGUFValue): string =>
  Array.isArray(v) ? "a list" : isNumericArray(v) ? `a ${v.constructor.name}` : typeof v === "string" ? JSON.stringify(v.slice(0, 60)) : String(v);

const utf8 = new TextEncoder();
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export interface EncodeOptions {
  /** bos/eos as the model asks (addBos, addEos). */
  addSpecial?: boolean;
  /** control-token texts in the text (e.g. <|im_start|>) become their ids. */
  parseSpecial?: boolean;
}

/** A GGUF file's tokenizer. Build it with `Tokenizer.fromHeader`. */
export class Tokenizer {
  readonly kind: "spm" | "bpe";
  readonly nVocab: number;
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  readonly unkId: number | undefined;
  /** whether encode({addSpecial: true}) starts with bos */
  readonly addBos: boolean;
  readonly addEos: boolean;
  /** SPM: a space is put before text that starts the input or follows a special token */
  readonly addSpacePrefix: boolean;
  /** ids that end generation, as llama.cpp's vocab loader derives them */
  readonly endOfGenerationIds: ReadonlySet<number>;
  private readonly tokens: string[];
  private readonly types: number[];
  private readonly tokenToId = new Map<string, number>();
  private readonly scores: Float32Array | undefined;
  private readonly bpeRanks = new Map<string, number>(); // "left\0right" -> rank
  private readonly pre: PreTokenizer | undefined;
  private readonly special: [number, string, boolean][]; // [id, text, is control], longest first
  private readonly byteIds: (number | undefined)[]; // SPM byte fallback
  private readonly spmStyleBpe: boolean;
  private readonly tokenBytesCache: (Uint8Array | undefined)[];

  static fromHeader(header: GGUFHeader): Tokenizer {
    return new Tokenizer(header.metadata, header.source);
  }

  constructor(metadata: ReadonlyMap<string, GGUFValue>, readonly source = "<metadata>") {
    const model = metadata.get(KEY.MODEL);
    const supported = SUPPORTED_MODELS.join(", ");
    if (model === undefined) throw this.error(`missing metadata key ${KEY.MODEL}; supported: ${supported}`);
    if (typeof model !== "string" || !SUPPORTED_MODELS.includes(model)) {
      throw this.error(`${KEY.MODEL} = '${String(model)}' is not supported; supported: ${supported}`);
    }
    this.kind = model === "llama" ? "spm" : "bpe";

    const tokens = metadata.get(KEY.LIST);
    if (!Array.isArray(tokens) || !tokens.length || !tokens.every((t) => typeof t === "string")) {
      throw this.error(`missing or invalid ${KEY.LIST} (expected a non-empty array of strings)`);
    }
    const n = (this.nVocab = tokens.length);
    // llama.cpp renames empty tokens so that every text maps back to one id
    this.tokens = (tokens as string[]).map((t, i) => t || `[EMPTY_${i}]`);
    this.tokens.forEach((t, i) => {
      if (this.tokenToId.has(t)) throw this.error(`${KEY.LIST} holds '${t}' more than once`);
      this.tokenToId.set(t, i);
    });
    const scores = this.array(metadata, KEY.SCORES, n, false);
    this.scores = scores && Float32Array.from(scores as ArrayLike<number>, Number); // llama.cpp reads them as float
    const types = this.array(metadata, KEY.TOKEN_TYPE, n, true);
    this.types = types ? Array.from(types as ArrayLike<number>, (t) => (VALID_TYPES.has(Number(t)) ? Number(t) : 0)) : new Array(n).fill(NORMAL);
    this.types.forEach((t, i) => {
      if (t === BYTE && !/^<0x[0-9A-Fa-f]{2}>$/.test(this.tokens[i])) {
        throw this.error(`byte token ${i} is '${this.tokens[i]}', expected the form <0xXX>`);
      }
    });

    let defaults: [number | undefined, number | undefined, number | undefined];
    if (this.kind === "bpe") {
      // llama.cpp: a missing pre means default; the gemma4 model always has the gemma4 pre
      const preName = model === "gemma4" ? "gemma4" : metadata.get(KEY.PRE) || "default";
      if (typeof preName !== "string" || !Object.hasOwn(PRE_TOKENIZERS, preName)) {
        throw this.error(`${KEY.PRE} = '${String(preName)}' is not a supported pre-tokenizer; supported: ${Object.keys(PRE_TOKENIZERS).sort().join(", ")}`);
      }
      this.pre = PRE_TOKENIZERS[preName];
      this.loadMerges(metadata);
      defaults = model === "gemma4" ? [undefined, undefined, undefined] : [11, 11, undefined]; // llama.cpp's BPE defaults (gemma4: none)
    } else {
      if (!this.scores) throw this.error(`SentencePiece vocabulary without ${KEY.SCORES}`);
      defaults = [1, 2, 0];
    }
    this.bosId = this.specialId(metadata, KEY.BOS_ID, defaults[0]);
    this.eosId = this.specialId(metadata, KEY.EOS_ID, defaults[1]);
    this.unkId = this.specialId(metadata, KEY.UNK_ID, defaults[2]);
    this.addBos = this.flag(metadata, KEY.ADD_BOS, this.kind === "spm" || this.pre!.addBos) || (this.pre?.alwaysBos ?? false);
    this.addEos = this.flag(metadata, KEY.ADD_EOS, false);
    this.addSpacePrefix = this.kind === "spm" && this.flag(metadata, KEY.ADD_PREFIX, true);
    this.endOfGenerationIds = this.endOfGeneration(metadata);
    // special tokens are split out of the text longest first (llama.cpp sorts by byte length)
    const special = this.types.flatMap((t, i) => (isSpecialType(t) ? [i] : []));
    const len = special.map((i) => utf8.encode(this.tokens[i]).length);
    const order = special.map((_, k) => k).sort((a, b) => len[b] - len[a] || special[a] - special[b]);
    this.special = order.map((k) => [special[k], this.tokens[special[k]], this.types[special[k]] !== USER_DEFINED]);
    // SPM: characters without a token fall back to one token per UTF-8 byte
    this.byteIds = this.kind === "spm" ? Array.from({ length: 256 }, (_, b) => this.findByteToken(b)) : [];
    // BPE on the text's own characters (gemma4): spaces are U+2581, bytes without a token <0xXX>
    this.spmStyleBpe = this.kind === "bpe" && !this.pre!.byteLevel;
    this.tokenBytesCache = new Array(n);
  }

  // -- loading ---------------------------------------------------------------------------------
  private error(what: string): ModelFormatError {
    return new ModelFormatError(`${this.source}: tokenizer: ${what}`);
  }

  private array(metadata: ReadonlyMap<string, GGUFValue>, key: string, n: number, integer: boolean): NumericArray | undefined {
    const value = metadata.get(key);
    if (value === undefined) return undefined;
    if (!isNumericArray(value) || (integer && (value instanceof Float32Array || value instanceof Float64Array))) {
      throw this.error(`${key} is ${describe(value)}, expected a numeric array`);
    }
    if (value.length !== n) throw this.error(`${key} has ${value.length} entries but ${KEY.LIST} has ${n}`);
    return value;
  }

  private loadMerges(metadata: ReadonlyMap<string, GGUFValue>): void {
    const merges = metadata.get(KEY.MERGES);
    if (!Array.isArray(merges) || merges.some((m) => typeof m !== "string")) {
      throw this.error(`byte-level BPE needs ${KEY.MERGES} (an array of 'left right' strings)`);
    }
    (merges as string[]).forEach((merge, rank) => {
      const cut = merge.indexOf(" ", 1);
      const [left, right] = cut > 0 ? [merge.slice(0, cut), merge.slice(cut + 1)] : ["", ""];
      for (const part of [left, right, left + right]) {
        if (!this.tokenToId.has(part)) {
          throw this.error(`merge ${rank} ('${merge}') refers to '${part}', which is not in ${KEY.LIST}`);
        }
      }
      const key = `${left}\0${right}`;
      if (!this.bpeRanks.has(key)) this.bpeRanks.set(key, rank); // a repeated merge keeps its first rank
    });
  }

  private specialId(metadata: ReadonlyMap<string, GGUFValue>, key: string, fallback: number | undefined): number | undefined {
    const value = metadata.get(key);
    if (value === undefined) { // llama.cpp's per-model default, dropped when the vocabulary is smaller
      return fallback !== undefined && fallback < this.nVocab ? fallback : undefined;
    }
    if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value >= this.nVocab) {
      throw this.error(`${key} = ${describe(value)} is not a token id (the vocabulary has ${this.nVocab} tokens)`);
    }
    return value;
  }

  private flag(metadata: ReadonlyMap<string, GGUFValue>, key: string, fallback: boolean): boolean {
    const value = metadata.get(key) ?? fallback;
    if (typeof value !== "boolean") throw this.error(`${key} = ${describe(value)}, expected a bool`);
    return value;
  }

  /** llama.cpp's special_eog_ids; tokens it marks this way also become CONTROL tokens. */
  private endOfGeneration(metadata: ReadonlyMap<string, GGUFValue>): Set<number> {
    const eog = new Set<number>();
    for (const [key, texts] of FOUND_BY_TEXT) {
      let id = this.specialId(metadata, key, undefined);
      if (id === undefined) {
        const found = texts.flatMap((t) => this.tokenToId.get(t) ?? []);
        if (found.length) {
          id = Math.min(...found);
          this.types[id] = CONTROL_TOKEN;
        }
      }
      if (id !== undefined) eog.add(id); // eot, eom, fim pad/rep/sep all end generation
    }
    for (const text of EOG_TEXTS) {
      const id = this.tokenToId.get(text);
      if (id !== undefined) {
        eog.add(id);
        this.types[id] = CONTROL_TOKEN;
      }
    }
    if (this.eosId !== undefined) eog.add(this.eosId);
    const texts = new Map([...eog].map((i) => [this.tokens[i], i]));
    // o200k_harmony / solar-open: <|end|> ends a message, not the generation
    const end = texts.get("<|end|>");
    if (end !== undefined && ((texts.has("<|return|>") && texts.has("<|call|>")) || (texts.has("<|calls|>") && texts.has("<|flush|>")))) {
      eog.delete(end);
      this.types[end] = USER_DEFINED;
    }
    // gemma4 and plamo2 have a normal </s> token
    const eos = texts.get("</s>");
    if (eos !== undefined && (texts.has("<|tool_response>") || texts.has("<|plamo:eos|>"))) {
      eog.delete(eos);
      this.types[eos] = NORMAL;
    }
    return eog;
  }

  /** llama.cpp's SPM byte_to_token: the token <0xXX>, else the byte itself as a token. */
  private findByteToken(b: number): number | undefined {
    return this.tokenToId.get(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`) ??
      (b < 0x80 ? this.tokenToId.get(String.fromCharCode(b)) : undefined);
  }

  // -- encoding --------------------------------------------------------------------------------
  isEndOfGeneration(id: number): boolean {
    return this.endOfGenerationIds.has(id);
  }

  /** Token ids of `text`, as Python's Tokenizer.encode gives them. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    if (typeof text !== "string") throw new TypeError(`encode expects a string, got ${typeof text}`);
    const lone = LONE_SURROGATE.exec(text);
    if (lone) throw new RangeError(`text is not valid Unicode: lone surrogate U+${lone[0].charCodeAt(0).toString(16).toUpperCase()} at index ${lone.index}`);
    const out: number[] = [];
    if (options.addSpecial && this.addBos) out.push(this.required(this.bosId, "bos"));
    let prevSpecial = true; // SPM: the first text fragment gets the space prefix too
    for (const fragment of this.partition(text, options.parseSpecial ?? false)) {
      if (typeof fragment === "number") {
        out.push(fragment);
        prevSpecial = true;
      } else if (this.kind === "spm") {
        const prefix = this.addSpacePrefix && prevSpecial ? " " : "";
        this.encodeSpm((prefix + fragment).replaceAll(" ", SPM_SPACE), out);
        prevSpecial = false;
      } else if (this.spmStyleBpe) {
        for (const word of preTokenize(fragment.replaceAll(" ", SPM_SPACE), this.pre!)) this.encodeBpeWord(word, out);
      } else {
        for (const word of preTokenize(fragment, this.pre!)) {
          this.encodeBpeWord(Array.from(utf8.encode(word), (b) => BYTE_CHARS[b]).join(""), out);
        }
      }
    }
    if (options.addSpecial && this.addEos) out.push(this.required(this.eosId, "eos"));
    return out;
  }

  private required(id: number | undefined, name: string): number {
    if (id === undefined) throw new RangeError(`${this.source}: the model asks for a ${name} token but its vocabulary has none`);
    return id;
  }

  /** Split out special token texts, longest first (llama.cpp's tokenizer_st_partition).
   * User-defined tokens are always split out, control and unknown ones only with parseSpecial. */
  private partition(text: string, parseSpecial: boolean): (string | number)[] {
    let fragments: (string | number)[] = text ? [text] : [];
    for (const [id, token, isControl] of this.special) {
      if (isControl && !parseSpecial) continue;
      if (!fragments.some((f) => typeof f === "string" && f.includes(token))) continue;
      fragments = fragments.flatMap((f) => {
        if (typeof f === "number" || !f.includes(token)) return [f];
        return f.split(token).flatMap((piece, k) => [...(k ? [id] : []), ...(piece ? [piece] : [])]);
      });
    }
    return fragments;
  }

  /** llama.cpp's SPM: start from single characters, repeatedly merge the adjacent pair whose
   * concatenation is the token with the highest score (ties: the leftmost pair). Offsets are in
   * UTF-16 units but always on code point boundaries, so the order matches Python's. */
  private encodeSpm(text: string, out: number[]): void {
    if (!text) return;
    const starts = Array.from(text, (c) => c.length); // symbol lengths, one per code point
    const n = text.length;
    // length[i] > 0 where a symbol starts at unit i; 0 once merged into its left neighbour
    const length = new Int32Array(n), prev = new Int32Array(n), next = new Int32Array(n);
    let last = -1;
    for (let i = 0, k = 0; k < starts.length; i += starts[k++]) {
      length[i] = starts[k];
      prev[i] = last;
      if (last >= 0) next[last] = i;
      last = i;
    }
    next[last] = -1;
    const heap = new Heap();
    const push = (left: number, right: number) => {
      if (left < 0 || right < 0) return;
      const size = length[left] + length[right];
      const id = this.tokenToId.get(text.slice(left, left + size));
      if (id !== undefined) heap.push([-this.scores![id], left, right, size]);
    };
    for (let i = next[0]; i >= 0; i = next[i]) push(prev[i], i);
    while (heap.size) {
      const [, left, right, size] = heap.pop() as number[];
      if (!length[left] || !length[right] || length[left] + length[right] !== size) continue; // stale
      length[left] = size;
      length[right] = 0;
      next[left] = next[right];
      if (next[right] >= 0) prev[next[right]] = left;
      push(prev[left], left);
      push(left, next[left]);
    }
    for (let i = 0; i >= 0; i = next[i]) {
      const piece = text.slice(i, i + length[i]);
      const id = this.tokenToId.get(piece);
      if (id !== undefined) out.push(id);
      else for (const b of utf8.encode(piece)) out.push(this.byteToken(b, piece)); // a single character
    }
  }

  /** llama.cpp's BPE on one byte-encoded word: repeatedly merge the adjacent pair with the
   * lowest merge rank (ties: the leftmost pair). */
  private encodeBpeWord(word: string, out: number[]): void {
    const whole = this.pre!.ignoreMerges || (this.pre!.wholeNewlineWords && /^\n+$/.test(word));
    if (whole && this.tokenToId.has(word)) {
      out.push(this.tokenToId.get(word)!);
      return;
    }
    const symbols = Array.from(word); // "" once merged into the left neighbour
    const n = symbols.length;
    const prev = symbols.map((_, i) => i - 1), next = symbols.map((_, i) => (i + 1 < n ? i + 1 : -1));
    const heap = new Heap();
    const push = (left: number, right: number) => {
      if (left < 0 || right < 0) return;
      const rank = this.bpeRanks.get(`${symbols[left]}\0${symbols[right]}`);
      if (rank !== undefined) heap.push([rank, left, right, symbols[left] + symbols[right]]);
    };
    for (let i = 1; i < n; i++) push(i - 1, i);
    while (heap.size) {
      const [, left, right, merged] = heap.pop() as [number, number, number, string];
      if (!symbols[left] || !symbols[right] || symbols[left] + symbols[right] !== merged) continue; // stale
      symbols[left] = merged;
      symbols[right] = "";
      next[left] = next[right];
      if (next[right] >= 0) prev[next[right]] = left;
      push(prev[left], left);
      push(left, next[left]);
    }
    for (const symbol of symbols) {
      // a symbol without a token is a byte the vocabulary lacks: llama.cpp leaves it out
      const id = symbol ? this.tokenToId.get(symbol) : undefined;
      if (id !== undefined) out.push(id);
      else if (symbol && this.spmStyleBpe) { // a character without a token: its bytes' <0xXX> tokens, where they exist
        for (const b of utf8.encode(symbol)) {
          const byteId = this.tokenToId.get(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
          if (byteId !== undefined) out.push(byteId);
        }
      }
    }
  }

  /** SPM byte fallback; a vocabulary without <0xXX> tokens gives its unknown token instead. */
  private byteToken(b: number, text: string): number {
    const id = this.byteIds[b] ?? this.unkId;
    if (id === undefined) {
      throw new RangeError(`${this.source}: no token for byte 0x${b.toString(16).toUpperCase().padStart(2, "0")} of '${text}' and no unknown token`);
    }
    return id;
  }

  // -- decoding --------------------------------------------------------------------------------
  /** The bytes token `id` stands for (llama.cpp's token_to_piece with special=true). Special and
   * user-defined tokens give their text; unused tokens give nothing. Do not modify the result. */
  tokenBytes(id: number): Uint8Array {
    if (!Number.isInteger(id) || id < 0 || id >= this.nVocab) {
      throw new RangeError(`token id ${id} is outside the vocabulary (0..${this.nVocab - 1}) of ${this.source}`);
    }
    let bytes = this.tokenBytesCache[id];
    if (!bytes) {
      const text = this.tokens[id], kind = this.types[id];
      if (isSpecialType(kind)) bytes = utf8.encode(text);
      else if (kind === BYTE) bytes = Uint8Array.of(parseInt(text.slice(3, 5), 16));
      else if (kind !== NORMAL) bytes = new Uint8Array(0);
      else if (this.kind === "spm" || this.spmStyleBpe) bytes = utf8.encode(text.replaceAll(SPM_SPACE, " "));
      else {
        // characters outside GPT-2's byte table (none in a well-formed vocabulary) stand for themselves
        bytes = Uint8Array.from(Array.from(text).flatMap((c) => {
          const b = CHAR_TO_BYTE.get(c);
          return b !== undefined ? [b] : [...utf8.encode(c)];
        }));
      }
      this.tokenBytesCache[id] = bytes;
    }
    return bytes;
  }

  /** Token `id`'s GGUF token type (gguf.TokenType: 1 normal, 2 unknown, 3 control, 4 user-defined,
   * 5 unused, 6 byte; 0 for a value outside those), after end-of-generation tokens became control. */
  tokenType(id: number): number {
    if (!Number.isInteger(id) || id < 0 || id >= this.nVocab) {
      throw new RangeError(`token id ${id} is outside the vocabulary (0..${this.nVocab - 1}) of ${this.source}`);
    }
    return this.types[id];
  }

  /** The text of `ids`; invalid UTF-8 becomes U+FFFD. With addSpacePrefix (SPM), one leading
   * space of the first token is dropped, as encode put it there. */
  decode(ids: readonly number[]): string {
    const parts = ids.map((id) => this.tokenBytes(id));
    if (this.addSpacePrefix && parts.length && parts[0][0] === 0x20) parts[0] = parts[0].subarray(1);
    const data = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    parts.reduce((at, p) => (data.set(p, at), at + p.length), 0);
    return new TextDecoder("utf-8", { ignoreBOM: true }).decode(data); // a leading U+FEFF is text
  }
}

/** Text of each new token as soon as its UTF-8 bytes are complete (a token may end inside a
 * character); the pieces joined equal Tokenizer.decode of all the ids. */
export class StreamingDecoder {
  private decoder = new TextDecoder("utf-8", { ignoreBOM: true }); // a leading U+FEFF is text
  private first = true;

  constructor(private readonly tok: Tokenizer) {}

  push(id: number): string {
    let bytes = this.tok.tokenBytes(id);
    if (this.first) {
      this.first = false;
      if (this.tok.addSpacePrefix && bytes[0] === 0x20) bytes = bytes.subarray(1);
    }
    return this.decoder.decode(bytes, { stream: true });
  }

  /** The replacement for an unfinished character at the end, if any; the decoder starts afresh. */
  flush(): string {
    this.first = true;
    return this.decoder.decode();
  }
}
