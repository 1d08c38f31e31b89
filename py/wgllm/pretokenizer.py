"""llama.cpp's pre-tokenizers for byte-level BPE vocabularies (llama-vocab.cpp, unicode.cpp).

A pre-tokenizer is a list of regexes applied one after the other, each splitting every piece left
by the previous one further (matches and the gaps between them both become pieces). The GPT-2,
llama3, qwen2 and qwen35 regexes have hand-written splitters in llama.cpp (unicode.cpp) with their
own small departures from PCRE; `_split_gpt2` and `_split_llama3` mirror those. Every other regex
runs the way llama.cpp runs it:
  - with \\p{..} classes, on a "collapsed" copy of the text where each non-ASCII character is
    replaced by one byte standing for its Unicode category, with \\p{L} etc. rewritten to match
    those bytes (std::regex);
  - without them, on the text's code points with non-ASCII whitespace replaced by \\v
    (std::wregex in the C locale: \\s is ASCII whitespace, `$` the piece's end).
Unicode categories come from Python's unicodedata (llama.cpp ships its own table, built from a
possibly newer Unicode version: characters assigned since may split differently).
web/src/pretokenizer.ts is the browser twin of this module.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

# -- Unicode category flags, as llama.cpp's unicode_cpt_flags --------------------------------------
UNDEFINED, NUMBER, LETTER, SEPARATOR, MARK, PUNCTUATION, SYMBOL, CONTROL = (1 << i for i in range(8))
WHITESPACE = 0x100
_CATEGORY_FLAG = {"C": CONTROL, "L": LETTER, "M": MARK, "N": NUMBER, "P": PUNCTUATION, "S": SYMBOL, "Z": SEPARATOR}
# llama.cpp's whitespace set (Unicode White_Space), narrower than Python's str.isspace()
_WHITESPACE = set(range(0x09, 0x0E)) | set(range(0x2000, 0x200B)) | {
    0x20, 0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000}


@lru_cache(maxsize=65536)
def codepoint_flags(ch: str) -> int:
    """Category flag (one of the eight) | WHITESPACE; never 0 (0 means 'outside the piece')."""
    cat = unicodedata.category(ch)
    flags = UNDEFINED if cat == "Cn" else _CATEGORY_FLAG[cat[0]]
    return flags | (WHITESPACE if ord(ch) in _WHITESPACE else 0)


# -- pre-tokenizer regexes (llama.cpp's, verbatim) ----------------------------------------------
RE_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
RE_LLAMA3 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
             r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
RE_QWEN2 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
            r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
RE_QWEN35 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}"
             r"| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


# gpt-4o (o200k): its tokenizer.json's regex, with (?i:...) and the \p{Lu}-style classes rewritten
# by llama.cpp as lookaheads that the collapsed text can run (a non-ASCII letter counts as both cases)
RE_GPT4O = (r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+"
            r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?"
            r"|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*"
            r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?"
            r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# deepseek-llm and deepseek-coder: regexes without a \p class run on the code points (the CJK ranges
# are literal). Characters that Unicode normalisation would change are written as escapes.
RE_DEEPSEEK_LETTERS = (
    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\u1f7dᾀ-ᾴᾶ-ᾼ"
    "\u1fbeῂ-ῄῆ-ῌῐ-\u1fd3ῖ-\u1fdbῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\u2126ℨ\u212a-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-"
    "𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+")
RE_CJK = "[一-龥ࠀ-一가-퟿]+"


@dataclass(frozen=True)
class PreTokenizer:
    regexes: tuple[str, ...]
    ignore_merges: bool = False  # a word that is itself a token is not split into merges
    add_bos: bool = False  # llama.cpp's default when tokenizer.ggml.add_bos_token is absent
    # False: SPM-style BPE (gemma4): spaces become U+2581 before splitting, words are merged on
    # their own characters (no GPT-2 byte table), characters without a token become <0xXX> tokens
    byte_level: bool = True
    always_bos: bool = False  # gemma4: llama.cpp adds bos even when add_bos_token is false
    whole_newline_words: bool = False  # gemma4: a word of newlines that is itself a token stays one


_DEFAULT = PreTokenizer((r"[\p{P}\$\+<=>\^~\|]+", RE_GPT2, r"\p{N}+", "[0-9][0-9][0-9]"))
_GPT2 = PreTokenizer((RE_GPT2,))
_STARCODER = PreTokenizer((r"\p{N}", RE_GPT2))
_LLAMA3 = PreTokenizer((RE_LLAMA3,), ignore_merges=True, add_bos=True)
_QWEN2 = PreTokenizer((RE_QWEN2,))

# tokenizer.ggml.pre -> pre-tokenizer, the names llama.cpp maps to the same LLAMA_VOCAB_PRE_TYPE
PRE_TOKENIZERS: dict[str, PreTokenizer] = {
    "default": _DEFAULT,
    **dict.fromkeys(("gpt-2", "phi-2", "mpt", "olmo", "jais", "trillion", "granite-docling", "exaone4"), _GPT2),
    "falcon": PreTokenizer((r"[\p{P}\$\+<=>\^~\|`]+", RE_GPT2, "[0-9][0-9][0-9]")),
    **dict.fromkeys(("starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b",
                     "mellum2"), _STARCODER),
    **dict.fromkeys(("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
                     "jina-v5-nano"), _LLAMA3),
    **dict.fromkeys(("dbrx", "smaug-bpe"), PreTokenizer((RE_LLAMA3,))),
    **dict.fromkeys(("qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2", "hunyuan",
                     "solar-open", "grok-2"), _QWEN2),
    "qwen35": PreTokenizer((RE_QWEN35,)),
    **dict.fromkeys(("gpt-4o", "llama4", "kanana2", "talkie"), PreTokenizer((RE_GPT4O,))),
    "deepseek-llm": PreTokenizer(("[\r\n]", RE_DEEPSEEK_LETTERS, "\\s?[!-/:-~！-／：-～‘-‟\u3000-。]+", "\\s+$", RE_CJK,
                                  r"\p{N}+")),
    "deepseek-coder": PreTokenizer(("[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", RE_CJK, r"\p{N}")),
    # gemma4 (also chosen by tokenizer.ggml.model = gemma4, whatever the file's pre says)
    "gemma4": PreTokenizer((r"[^\n]+|[\n]+",), add_bos=True, byte_level=False, always_bos=True,
                           whole_newline_words=True),
}

# -- splitting ----------------------------------------------------------------------------------
# A splitter takes the text's characters, their flags and one piece [start, end) and returns the
# end offsets of the sub-pieces it cuts the piece into.


def _split_gpt2(cps: str, flags: list[int], start: int, end: int) -> list[int]:
    """llama.cpp's unicode_regex_split_custom_gpt2 (RE_GPT2)."""
    def flag(p: int) -> int:
        return flags[p] if p < end else 0

    ends, pos = [], start
    while pos < end:
        c, f = cps[pos], flags[pos]
        if c == "'" and pos + 1 < end:  # 's|'t|'re|'ve|'m|'ll|'d
            if cps[pos + 1] in "stmd":
                pos += 2
                ends.append(pos)
                continue
            if pos + 2 < end and cps[pos + 1 : pos + 3] in ("re", "ve", "ll"):
                pos += 3
                ends.append(pos)
                continue
        f2 = flag(pos + 1) if c == " " else f  # the class of the word, after an optional space
        if f2 & (LETTER | NUMBER):  # ' ?\p{L}+' | ' ?\p{N}+'
            cls = f2 & (LETTER | NUMBER)
            pos += c == " "
            while flag(pos) & cls:
                pos += 1
        elif f2 and not f2 & (WHITESPACE | LETTER | NUMBER):  # ' ?[^\s\p{L}\p{N}]+'
            pos += c == " "
            while flag(pos) and not flag(pos) & (WHITESPACE | LETTER | NUMBER):
                pos += 1
        else:
            pos = _whitespace_run(cps, flags, pos, end, newlines=False)
        ends.append(pos)
    return ends


def _whitespace_run(cps: str, flags: list[int], pos: int, end: int, newlines: bool) -> int:
    """The end of '\\s*[\\r\\n]+' (when `newlines`) | '\\s+(?!\\S)' | '\\s+' | any one character.

    llama.cpp's '\\s+(?!\\S)' leaves the last whitespace for the next word only when a character
    follows inside the piece; at the piece's end the whole run is taken.
    """
    n, last_newline_end = 0, 0
    while pos + n < end and flags[pos + n] & WHITESPACE:
        if newlines and cps[pos + n] in "\r\n":
            last_newline_end = pos + n + 1
        n += 1
    if last_newline_end:
        return last_newline_end
    if n > 1 and pos + n < end:
        return pos + n - 1
    return pos + max(n, 1)


def _split_llama3(cps: str, flags: list[int], start: int, end: int, max_digits: int, marks: bool) -> list[int]:
    """llama.cpp's custom llama3 (max_digits=3), qwen2 (1) and qwen35 (1, marks=True) splitters."""
    def flag(p: int) -> int:
        return flags[p] if p < end else 0

    word = LETTER | (MARK if marks else 0)
    other = WHITESPACE | NUMBER | word
    ends, pos = [], start
    while pos < end:
        c, f = cps[pos], flags[pos]
        if c == "'" and pos + 1 < end:  # (?i:'s|'t|'re|'ve|'m|'ll|'d)
            if cps[pos + 1].lower() in "stmd":
                pos += 2
                ends.append(pos)
                continue
            if pos + 2 < end and cps[pos + 1 : pos + 3].lower() in ("re", "ve", "ll"):
                pos += 3
                ends.append(pos)
                continue
        if c not in "\r\n" and not f & NUMBER and (f & word or flag(pos + 1) & word):
            pos += 1  # [^\r\n\p{L}\p{N}]?\p{L}+
            while flag(pos) & word:
                pos += 1
            ends.append(pos)
            continue
        if f & NUMBER:  # \p{N}{1,max_digits}: a digit run cut into groups from the left
            run_start = pos
            while flag(pos) & NUMBER:
                pos += 1
            ends.extend(range(run_start + max_digits, pos, max_digits))
            ends.append(pos)
            continue
        f2 = flag(pos + 1) if c == " " else f
        if not f2 & other:  # ' ?[^\s\p{L}\p{N}]+[\r\n]*'
            pos += c == " "
            while flag(pos) and not flag(pos) & other:
                pos += 1
            while pos < end and cps[pos] in "\r\n":
                pos += 1
        else:
            pos = _whitespace_run(cps, flags, pos, end, newlines=True)
        ends.append(pos)
    return ends


# Everywhere else llama.cpp runs std::regex on a collapsed text: ASCII stays, other characters
# become one byte per category (whitespace: \v), and \p{X} in the regex matches that byte plus the
# category's ASCII members. Python's re with re.ASCII matches like std::regex in the C locale.
_COLLAPSED = {NUMBER: "\xd1", LETTER: "\xd2", PUNCTUATION: "\xd3", MARK: "\xd4", SYMBOL: "\xd5"}
_CATEGORY_CLASS = {
    "N": "\xd10-9",
    "L": "\xd2A-Za-z",
    "P": "\xd3!-#%-*,-/:-;?-@\\[-\\]_\\{\\}",
    "M": "\xd4",
    "S": "\xd5\\$\\+<->\\^`\\|~",
}
_CATEGORY_NAMES = {**{c: c for c in _CATEGORY_CLASS}, **dict.fromkeys(("Lu", "Ll", "Lt", "Lm", "Lo"), "L")}


def _collapse(text: str, flags: list[int]) -> str:
    return "".join(
        c if c < "\x80" else "\x0b" if f & WHITESPACE else _COLLAPSED.get(f & 0xFF, "\xd0") for c, f in zip(text, flags)
    )


@lru_cache(maxsize=None)
def _collapsed_regex(regex: str) -> re.Pattern[str]:
    out, inside, i = [], False, 0
    while i < len(regex):
        c = regex[i]
        if c == "[" and (i == 0 or regex[i - 1] != "\\"):
            inside = True
        elif c == "]" and inside and regex[i - 1] != "\\":
            inside = False
        elif regex.startswith("\\p{", i):
            close = regex.index("}", i)
            cls = _CATEGORY_CLASS[_CATEGORY_NAMES[regex[i + 3 : close]]]
            out.append(cls if inside else f"[{cls}]")
            i = close + 1
            continue
        out.append(c)
        i += 1
    return re.compile("".join(out), re.ASCII)


def _raw(text: str, flags: list[int]) -> str:
    """The text std::wregex sees: non-ASCII whitespace becomes \\v (its \\s is ASCII only)."""
    return "".join("\x0b" if c >= "\x80" and f & WHITESPACE else c for c, f in zip(text, flags))


@lru_cache(maxsize=None)
def _raw_regex(regex: str) -> re.Pattern[str]:
    """A regex without \\p classes as std::wregex runs it: \\s ASCII only, `$` only at the end."""
    out, inside, i = [], False, 0
    while i < len(regex):
        c = regex[i]
        if c == "\\":
            out.append(regex[i : i + 2])
            i += 2
            continue
        if c == "[":
            inside = True
        elif c == "]":
            inside = False
        out.append("\\Z" if c == "$" and not inside else c)
        i += 1
    return re.compile("".join(out), re.ASCII)


def _split_regex(pattern: re.Pattern[str], text: str, start: int, end: int) -> list[int]:
    """Matches and the gaps between them, as std::regex_iterator over the piece sees them."""
    ends, prev = [], 0
    for m in pattern.finditer(text[start:end]):
        s, e = m.span()
        if s > prev:
            ends.append(start + s)
        if e > s:
            ends.append(start + e)
        prev = max(prev, e)
    if start + prev < end:
        ends.append(end)
    return ends


_CUSTOM_SPLITTERS = {
    RE_GPT2: _split_gpt2,
    RE_LLAMA3: lambda t, f, s, e: _split_llama3(t, f, s, e, max_digits=3, marks=False),
    RE_QWEN2: lambda t, f, s, e: _split_llama3(t, f, s, e, max_digits=1, marks=False),
    RE_QWEN35: lambda t, f, s, e: _split_llama3(t, f, s, e, max_digits=1, marks=True),
}


def pre_tokenize(text: str, pre: PreTokenizer) -> list[str]:
    """Split `text` into words, each regex of `pre` cutting every piece the previous ones left."""
    flags = [codepoint_flags(c) for c in text]
    collapsed = raw = None
    ends = [len(text)] if text else []
    for regex in pre.regexes:
        splitter = _CUSTOM_SPLITTERS.get(regex)
        if splitter is None:
            if "\\p{" in regex:
                collapsed = _collapse(text, flags) if collapsed is None else collapsed
                target, pattern = collapsed, _collapsed_regex(regex)
            else:
                raw = _raw(text, flags) if raw is None else raw
                target, pattern = raw, _raw_regex(regex)
        new_ends, start = [], 0
        for end in ends:
            if splitter is not None:
                new_ends += splitter(text, flags, start, end)
            else:
                new_ends += _split_regex(pattern, target, start, end)
            start = end
        ends = new_ends
    return [text[a:b] for a, b in zip([0, *ends], ends)]
