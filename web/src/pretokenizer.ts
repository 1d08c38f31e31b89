// llama.cpp's pre-tokenizers for byte-level BPE vocabularies, in the browser: Unicode category
// flags (unicode_cpt_flags), the regexes named by tokenizer.ggml.pre, and the hand-written
// splitters llama.cpp uses for the common ones — the twin of py/wgllm/pretokenizer.py (whose
// docstring explains the rules). Text is handled in code points; categories come from the
// browser's regex engine (\p{..}), see tokenizer.ts's header.

// -- Unicode category flags, as llama.cpp's unicode_cpt_flags --------------------------------------
const UNDEFINED = 1, NUMBER = 2, LETTER = 4, SEPARATOR = 8, MARK = 16, PUNCTUATION = 32, SYMBOL = 64, CONTROL = 128;
const WHITESPACE = 0x100;
// llama.cpp's whitespace set (Unicode White_Space), narrower than JS's \s
const WHITESPACE_CPS = new Set([
  0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20, 0x85, 0xa0, 0x1680, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000,
  ...Array.from({ length: 11 }, (_, i) => 0x2000 + i),
]);
const CATEGORY_TESTS: [RegExp, number][] = [
  [/\p{Cn}/u, UNDEFINED], [/\p{L}/u, LETTER], [/\p{N}/u, NUMBER], [/\p{P}/u, PUNCTUATION],
  [/\p{S}/u, SYMBOL], [/\p{M}/u, MARK], [/\p{Z}/u, SEPARATOR],
];
let flagTable: Uint16Array | undefined; // code point -> flags, 0 until computed

/** Category flag (one of the eight) | WHITESPACE of code point `cp`; never 0. */
export function codepointFlags(cp: number): number {
  flagTable ??= new Uint16Array(0x110000);
  let flags = flagTable[cp];
  if (flags === 0) {
    const ch = String.fromCodePoint(cp);
    flags = CATEGORY_TESTS.find(([re]) => re.test(ch))?.[1] ?? CONTROL; // Cc, Cf, Cs, Co
    if (WHITESPACE_CPS.has(cp)) flags |= WHITESPACE;
    flagTable[cp] = flags;
  }
  return flags;
}

// -- pre-tokenizer regexes (llama.cpp's, verbatim) ----------------------------------------------
const RE_GPT2 = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`;
const RE_LLAMA3 = String.raw`(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}` +
  String.raw`| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
const RE_QWEN2 = String.raw`(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}` +
  String.raw`| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
const RE_QWEN35 = String.raw`(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}` +
  String.raw`| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
// gpt-4o (o200k): its tokenizer.json's regex, with (?i:...) and the \p{Lu}-style classes rewritten
// by llama.cpp as lookaheads that the collapsed text can run (a non-ASCII letter counts as both cases)
const RE_GPT4O = String.raw`[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+` +
  String.raw`(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?` +
  String.raw`|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*` +
  String.raw`(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?` +
  String.raw`|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
// deepseek-llm and deepseek-coder: regexes without a \p class run on the code points (the CJK ranges
// are literal). Characters that Unicode normalisation would change are written as escapes.
const RE_DEEPSEEK_LETTERS =
  "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\u1f7dᾀ-ᾴᾶ-ᾼ" +
  "\u1fbeῂ-ῄῆ-ῌῐ-\u1fd3ῖ-\u1fdbῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\u2126ℨ\u212a-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ" +
  "𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+";
const RE_CJK = "[一-龥ࠀ-一가-퟿]+";

export interface PreTokenizer {
  readonly regexes: readonly string[];
  readonly ignoreMerges: boolean; // a word that is itself a token is not split into merges
  readonly addBos: boolean; // llama.cpp's default when tokenizer.ggml.add_bos_token is absent
  // false: SPM-style BPE (gemma4): spaces become U+2581 before splitting, words are merged on
  // their own characters (no GPT-2 byte table), characters without a token become <0xXX> tokens
  readonly byteLevel: boolean;
  readonly alwaysBos: boolean; // gemma4: llama.cpp adds bos even when add_bos_token is false
  readonly wholeNewlineWords: boolean; // gemma4: a word of newlines that is itself a token stays one
}
const pre = (regexes: string[], ignoreMerges = false, addBos = false): PreTokenizer =>
  ({ regexes, ignoreMerges, addBos, byteLevel: true, alwaysBos: false, wholeNewlineWords: false });
const DEFAULT = pre([String.raw`[\p{P}\$\+<=>\^~\|]+`, RE_GPT2, String.raw`\p{N}+`, "[0-9][0-9][0-9]"]);
const GPT2 = pre([RE_GPT2]);
const STARCODER = pre([String.raw`\p{N}`, RE_GPT2]);
const LLAMA3 = pre([RE_LLAMA3], true, true);
const QWEN2 = pre([RE_QWEN2]);
const named = (names: string[], p: PreTokenizer) => Object.fromEntries(names.map((n) => [n, p]));

/** tokenizer.ggml.pre -> pre-tokenizer: the names llama.cpp maps to the same LLAMA_VOCAB_PRE_TYPE. */
export const PRE_TOKENIZERS: Readonly<Record<string, PreTokenizer>> = {
  default: DEFAULT,
  ...named(["gpt-2", "phi-2", "mpt", "olmo", "jais", "trillion", "granite-docling", "exaone4"], GPT2),
  falcon: pre([String.raw`[\p{P}\$\+<=>\^~\|` + "`]+", RE_GPT2, "[0-9][0-9][0-9]"]),
  ...named(["starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b", "mellum2"], STARCODER),
  ...named(["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano"], LLAMA3),
  ...named(["dbrx", "smaug-bpe"], pre([RE_LLAMA3])),
  ...named(["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2", "hunyuan", "solar-open", "grok-2"], QWEN2),
  qwen35: pre([RE_QWEN35]),
  ...named(["gpt-4o", "llama4", "kanana2", "talkie"], pre([RE_GPT4O])),
  "deepseek-llm": pre(["[\r\n]", RE_DEEPSEEK_LETTERS, "\\s?[!-/:-~！-／：-～‘-‟\u3000-。]+", "\\s+$", RE_CJK, String.raw`\p{N}+`]),
  "deepseek-coder": pre(["[\r\n]", String.raw`\s?\p{L}+`, String.raw`\s?\p{P}+`, RE_CJK, String.raw`\p{N}`]),
  // gemma4 (also chosen by tokenizer.ggml.model = gemma4, whatever the file's pre says)
  gemma4: { ...pre([String.raw`[^\n]+|[\n]+`], false, true), byteLevel: false, alwaysBos: true, wholeNewlineWords: true },
};

// -- splitting ----------------------------------------------------------------------------------
// A splitter takes the text's code points, their flags and one piece [start, end) and returns the
// end offsets of the sub-pieces it cuts the piece into.
type Splitter = (cps: string[], flags: number[], start: number, end: number) => number[];

/** llama.cpp's unicode_regex_split_custom_gpt2 (RE_GPT2). */
function splitGpt2(cps: string[], flags: number[], start: number, end: number): number[] {
  const flag = (p: number) => (p < end ? flags[p] : 0);
  const ends: number[] = [];
  let pos = start;
  while (pos < end) {
    const c = cps[pos], f = flags[pos];
    if (c === "'" && pos + 1 < end) { // 's|'t|'re|'ve|'m|'ll|'d
      if ("stmd".includes(cps[pos + 1])) {
        ends.push((pos += 2));
        continue;
      }
      if (pos + 2 < end && ["re", "ve", "ll"].includes(cps[pos + 1] + cps[pos + 2])) {
        ends.push((pos += 3));
        continue;
      }
    }
    const f2 = c === " " ? flag(pos + 1) : f; // the class of the word, after an optional space
    if (f2 & (LETTER | NUMBER)) { // ' ?\p{L}+' | ' ?\p{N}+'
      const cls = f2 & (LETTER | NUMBER);
      if (c === " ") pos++;
      while (flag(pos) & cls) pos++;
    } else if (f2 && !(f2 & (WHITESPACE | LETTER | NUMBER))) { // ' ?[^\s\p{L}\p{N}]+'
      if (c === " ") pos++;
      while (flag(pos) && !(flag(pos) & (WHITESPACE | LETTER | NUMBER))) pos++;
    } else {
      pos = whitespaceRun(cps, flags, pos, end, false);
    }
    ends.push(pos);
  }
  return ends;
}

/**
 * The end of '\s*[\r\n]+' (when `newlines`) | '\s+(?!\S)' | '\s+' | any one character.
 * llama.cpp's '\s+(?!\S)' leaves the last whitespace for the next word only when a character
 * follows inside the piece; at the piece's end the whole run is taken.
 */
function whitespaceRun(cps: string[], flags: number[], pos: number, end: number, newlines: boolean): number {
  let n = 0, lastNewlineEnd = 0;
  while (pos + n < end && flags[pos + n] & WHITESPACE) {
    if (newlines && (cps[pos + n] === "\r" || cps[pos + n] === "\n")) lastNewlineEnd = pos + n + 1;
    n++;
  }
  if (lastNewlineEnd) return lastNewlineEnd;
  if (n > 1 && pos + n < end) return pos + n - 1;
  return pos + Math.max(n, 1);
}

const isNewline = (c: string | undefined) => c === "\r" || c === "\n";

/** llama.cpp's custom llama3 (maxDigits=3), qwen2 (1) and qwen35 (1, marks) splitters. */
function splitLlama3(maxDigits: number, marks: boolean): Splitter {
  const word = LETTER | (marks ? MARK : 0);
  const other = WHITESPACE | NUMBER | word;
  return (cps, flags, start, end) => {
    const flag = (p: number) => (p < end ? flags[p] : 0);
    const ends: number[] = [];
    let pos = start;
    while (pos < end) {
      const c = cps[pos], f = flags[pos];
      if (c === "'" && pos + 1 < end) { // (?i:'s|'t|'re|'ve|'m|'ll|'d)
        if ("stmd".includes(cps[pos + 1].toLowerCase())) {
          ends.push((pos += 2));
          continue;
        }
        if (pos + 2 < end && ["re", "ve", "ll"].includes((cps[pos + 1] + cps[pos + 2]).toLowerCase())) {
          ends.push((pos += 3));
          continue;
        }
      }
      if (!isNewline(c) && !(f & NUMBER) && (f & word || flag(pos + 1) & word)) {
        pos++; // [^\r\n\p{L}\p{N}]?\p{L}+
        while (flag(pos) & word) pos++;
        ends.push(pos);
        continue;
      }
      if (f & NUMBER) { // \p{N}{1,maxDigits}: a digit run cut into groups from the left
        const runStart = pos;
        while (flag(pos) & NUMBER) pos++;
        for (let e = runStart + maxDigits; e < pos; e += maxDigits) ends.push(e);
        ends.push(pos);
        continue;
      }
      const f2 = c === " " ? flag(pos + 1) : f;
      if (!(f2 & other)) { // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
        if (c === " ") pos++;
        while (flag(pos) && !(flag(pos) & other)) pos++;
        while (pos < end && isNewline(cps[pos])) pos++;
      } else {
        pos = whitespaceRun(cps, flags, pos, end, true);
      }
      ends.push(pos);
    }
    return ends;
  };
}

// A regex with \p classes llama.cpp runs with std::regex on a collapsed text: ASCII stays, other characters
// become one byte per category (whitespace: \v), and \p{X} in the regex matches that byte plus the
// category's ASCII members. The collapsed text has one UTF-16 unit per code point, so a JS regex
// (without the u flag, where \s and classes are only ever asked about these 133 characters)
// matches it as std::regex in the C locale does.
const COLLAPSED: Record<number, string> = { [NUMBER]: "\xd1", [LETTER]: "\xd2", [PUNCTUATION]: "\xd3", [MARK]: "\xd4", [SYMBOL]: "\xd5" };
const CATEGORY_CLASS: Record<string, string> = {
  N: "\xd10-9",
  L: "\xd2A-Za-z",
  P: "\xd3!-#%-*,-/:-;?-@\\[-\\]_\\{\\}",
  M: "\xd4",
  S: "\xd5\\$\\+<->\\^`\\|~",
};
const CATEGORY_NAMES: Record<string, string> = { N: "N", L: "L", P: "P", M: "M", S: "S", Lu: "L", Ll: "L", Lt: "L", Lm: "L", Lo: "L" };

function collapse(cps: string[], flags: number[]): string {
  return cps
    .map((c, i) => (c < "\x80" ? c : flags[i] & WHITESPACE ? "\x0b" : (COLLAPSED[flags[i] & 0xff] ?? "\xd0")))
    .join("");
}

const collapsedRegexes = new Map<string, RegExp>();

function collapsedRegex(regex: string): RegExp {
  let compiled = collapsedRegexes.get(regex);
  if (compiled) return compiled;
  let out = "", inside = false;
  for (let i = 0; i < regex.length; ) {
    const c = regex[i];
    if (c === "[" && (i === 0 || regex[i - 1] !== "\\")) inside = true;
    else if (c === "]" && inside && regex[i - 1] !== "\\") inside = false;
    else if (regex.startsWith("\\p{", i)) {
      const close = regex.indexOf("}", i);
      const cls = CATEGORY_CLASS[CATEGORY_NAMES[regex.slice(i + 3, close)]];
      out += inside ? cls : `[${cls}]`;
      i = close + 1;
      continue;
    }
    out += c;
    i++;
  }
  compiled = new RegExp(out, "g");
  collapsedRegexes.set(regex, compiled);
  return compiled;
}

/** Matches and the gaps between them, as std::regex_iterator over the piece sees them. */
function splitRegex(regex: string, collapsed: string, start: number, end: number): number[] {
  const ends: number[] = [];
  let prev = 0;
  for (const m of collapsed.slice(start, end).matchAll(collapsedRegex(regex))) {
    const s = m.index!, e = s + m[0].length;
    if (s > prev) ends.push(start + s);
    if (e > s) ends.push(start + e);
    prev = Math.max(prev, e);
  }
  if (start + prev < end) ends.push(end);
  return ends;
}

// A regex without \p classes llama.cpp runs with std::wregex (C locale) on the code points, non-ASCII
// whitespace replaced by \v: \s is ASCII whitespace only, `$` the piece's end. Here it runs with
// the u flag (for astral ranges), \s and \S spelled out as ASCII classes.
const ASCII_SPACE = "\\t-\\r ";
const rawRegexes = new Map<string, RegExp>();

function rawRegex(regex: string): RegExp {
  let compiled = rawRegexes.get(regex);
  if (compiled) return compiled;
  let out = "", inside = false;
  for (let i = 0; i < regex.length; i++) {
    const c = regex[i];
    if (c === "\\") {
      const e = regex[++i];
      if (e === "s") out += inside ? ASCII_SPACE : `[${ASCII_SPACE}]`;
      else if (e === "S" && !inside) out += `[^${ASCII_SPACE}]`;
      else out += c + e;
      continue;
    }
    if (c === "[") inside = true;
    else if (c === "]") inside = false;
    out += c;
  }
  compiled = new RegExp(out, "gu");
  rawRegexes.set(regex, compiled);
  return compiled;
}

/** splitRegex for a regex without \p classes: matched on the piece's code points (UTF-16 inside). */
function splitRawRegex(regex: string, raw: string[], start: number, end: number): number[] {
  const piece = raw.slice(start, end);
  const cpAt: number[] = []; // UTF-16 offset -> code point offset, for every offset a match can have
  piece.forEach((c, k) => {
    for (let u = 0; u < c.length; u++) cpAt.push(k);
  });
  cpAt.push(piece.length);
  const ends: number[] = [];
  let prev = 0;
  for (const m of piece.join("").matchAll(rawRegex(regex))) {
    const s = cpAt[m.index!], e = cpAt[m.index! + m[0].length];
    if (s > prev) ends.push(start + s);
    if (e > s) ends.push(start + e);
    prev = Math.max(prev, e);
  }
  if (start + prev < end) ends.push(end);
  return ends;
}

const CUSTOM_SPLITTERS = new Map<string, Splitter>([
  [RE_GPT2, splitGpt2],
  [RE_LLAMA3, splitLlama3(3, false)],
  [RE_QWEN2, splitLlama3(1, false)],
  [RE_QWEN35, splitLlama3(1, true)],
]);

/** Split `text` into words, each regex of `pre` cutting every piece the previous ones left. */
export function preTokenize(text: string, pre: PreTokenizer): string[] {
  const cps = Array.from(text);
  const flags = cps.map((c) => codepointFlags(c.codePointAt(0)!));
  let collapsed: string | undefined, raw: string[] | undefined;
  let ends = cps.length ? [cps.length] : [];
  for (const regex of pre.regexes) {
    let split = CUSTOM_SPLITTERS.get(regex);
    if (!split && regex.includes("\\p{")) {
      const text = (collapsed ??= collapse(cps, flags));
      split = (_, __, start, end) => splitRegex(regex, text, start, end);
    } else if (!split) {
      const text = (raw ??= cps.map((c, i) => (c >= "\x80" && flags[i] & WHITESPACE ? "\x0b" : c)));
      split = (_, __, start, end) => splitRawRegex(regex, text, start, end);
    }
    const newEnds: number[] = [];
    let start = 0;
    for (const end of ends) {
      for (const e of split(cps, flags, start, end)) newEnds.push(e);
      start = end;
    }
    ends = newEnds;
  }
  return ends.map((e, i) => cps.slice(i ? ends[i - 1] : 0, e).join(""));
}
