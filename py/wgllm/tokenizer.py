"""Tokenizers built from GGUF metadata alone, token for token like llama.cpp's llama-vocab.cpp.

Vocabulary types, chosen by `tokenizer.ggml.model`:
  "llama":  SentencePiece-style (llama, gemma, gemma3). Spaces become U+2581, adjacent symbols are
            merged greedily by token score, characters without a token fall back to <0xXX> tokens.
  "gpt2":   byte-level BPE. A pre-tokenizer (chosen by `tokenizer.ggml.pre`) splits the text into
            words, each word's UTF-8 bytes are mapped to printable characters (GPT-2's byte table),
            then adjacent symbols are merged by merge rank.
  "gemma4": SPM-style BPE (its pre-tokenizer is always "gemma4"): spaces become U+2581, the text is
            cut only between newline runs and the rest, symbols are merged by merge rank on their
            own characters, characters without a token fall back to <0xXX> tokens.
Before any of them runs, occurrences of special token texts are split out as single ids
(llama.cpp's tokenizer_st_partition): user-defined tokens always, control tokens when
parse_special=True.

The pre-tokenizers (llama.cpp's regexes and splitters) are in wgllm.pretokenizer.

Decoding is llama.cpp's token_to_piece: special and user-defined tokens give their text, byte
tokens their byte, normal tokens their text with U+2581 -> space (SPM) or the GPT-2 byte table
reversed (BPE). llama.cpp's BPE "clean_spaces" pass is not applied: it would break
decode(encode(s)) == s (" ," -> ",").
"""

from __future__ import annotations

import heapq
import re

import numpy as np
from gguf import Keys, TokenType

from wgllm.errors import ModelFormatError
from wgllm.gguf_io import GGUFFile
from wgllm.pretokenizer import PRE_TOKENIZERS, PreTokenizer, codepoint_flags, pre_tokenize

__all__ = ["BYTE_CHARS", "PRE_TOKENIZERS", "PreTokenizer", "SPM_SPACE", "Tokenizer", "codepoint_flags", "pre_tokenize"]


def _gpt2_byte_chars() -> list[str]:
    """GPT-2's byte -> printable character table: printable Latin-1 bytes stand for themselves,
    the other 68 bytes take U+0100, U+0101, ... in byte order."""
    keep = {*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)}
    chars, n = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + n))
            n += 1
    return chars


BYTE_CHARS = _gpt2_byte_chars()
_CHAR_TO_BYTE = {c: b for b, c in enumerate(BYTE_CHARS)}
SPM_SPACE = "\u2581"

# texts llama.cpp's vocab loader treats as end of generation (besides eos/eot/eom and fim pad/rep/sep)
_EOG_TEXTS = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
    "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
    "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[",
}
# special ids llama.cpp finds by text when the metadata does not give them (it takes the first
# match in hash order, here the lowest id)
_FOUND_BY_TEXT = {
    Keys.Tokenizer.EOT_ID: ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
                            "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>"),
    Keys.Tokenizer.EOM_ID: ("<|eom_id|>",),
    Keys.Tokenizer.FIM_PAD_ID: ("<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"),
    Keys.Tokenizer.FIM_REP_ID: ("<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"),
    Keys.Tokenizer.FIM_SEP_ID: ("<|file_sep|>",),
}
_SPECIAL = (TokenType.CONTROL, TokenType.UNKNOWN, TokenType.USER_DEFINED)
SUPPORTED_MODELS = ("llama", "gpt2", "gemma4")


class Tokenizer:
    """A GGUF file's tokenizer. Build it with `Tokenizer.from_gguf`."""

    vocab_size: int
    bos_id: int | None
    eos_id: int | None
    unk_id: int | None
    eog_ids: set[int]  # ids that end generation, as llama.cpp's vocab loader derives them
    add_bos: bool  # whether encode(add_special=True) starts with bos
    add_eos: bool
    add_space_prefix: bool  # SPM: a space is put before text that starts the input or follows a special token
    model: str  # tokenizer.ggml.model
    pre_name: str | None  # tokenizer.ggml.pre, None where the file has none

    @classmethod
    def from_gguf(cls, gguf: GGUFFile) -> "Tokenizer":
        return cls(gguf.metadata, str(gguf.path))

    def __init__(self, metadata: dict, source: str = "<metadata>"):
        self.source = source
        model = metadata.get(Keys.Tokenizer.MODEL)
        if model is None:
            raise self._error(f"missing metadata key {Keys.Tokenizer.MODEL}; supported: {', '.join(SUPPORTED_MODELS)}")
        if model not in SUPPORTED_MODELS:
            raise self._error(f"{Keys.Tokenizer.MODEL} = {model!r} is not supported; supported: {', '.join(SUPPORTED_MODELS)}")
        self.kind = "spm" if model == "llama" else "bpe"
        self.model, self.pre_name = model, metadata.get(Keys.Tokenizer.PRE)  # as the file names them
        self._load_vocab(metadata)
        if self.kind == "bpe":
            # llama.cpp: a missing pre means default; the gemma4 model always has the gemma4 pre
            pre_name = "gemma4" if model == "gemma4" else metadata.get(Keys.Tokenizer.PRE) or "default"
            if pre_name not in PRE_TOKENIZERS:
                raise self._error(f"{Keys.Tokenizer.PRE} = {pre_name!r} is not a supported pre-tokenizer; "
                                  f"supported: {', '.join(sorted(PRE_TOKENIZERS))}")
            self.pre: PreTokenizer | None = PRE_TOKENIZERS[pre_name]
            self._load_merges(metadata)
            # llama.cpp's BPE defaults (gemma4: none, the file names them)
            defaults = dict.fromkeys(("bos", "eos", "unk")) if model == "gemma4" else {"bos": 11, "eos": 11, "unk": None}
        else:
            self.pre = None
            if self.scores is None:
                raise self._error(f"SentencePiece vocabulary without {Keys.Tokenizer.SCORES}")
            defaults = {"bos": 1, "eos": 2, "unk": 0}
        self.bos_id = self._special_id(metadata, Keys.Tokenizer.BOS_ID, defaults["bos"])
        self.eos_id = self._special_id(metadata, Keys.Tokenizer.EOS_ID, defaults["eos"])
        self.unk_id = self._special_id(metadata, Keys.Tokenizer.UNK_ID, defaults["unk"])
        self.add_bos = self._flag(metadata, Keys.Tokenizer.ADD_BOS, self.kind == "spm" or self.pre.add_bos)
        self.add_bos = self.add_bos or (self.pre is not None and self.pre.always_bos)
        self.add_eos = self._flag(metadata, Keys.Tokenizer.ADD_EOS, False)
        self.add_space_prefix = self.kind == "spm" and self._flag(metadata, Keys.Tokenizer.ADD_PREFIX, True)
        self.eog_ids = self._end_of_generation_ids(metadata)
        # special tokens are split out of the text longest first (llama.cpp sorts by byte length)
        special = [i for i, t in enumerate(self.types) if t in _SPECIAL]
        special.sort(key=lambda i: (-len(self.tokens[i].encode()), i))
        self._special = [(i, self.tokens[i], self.types[i] != TokenType.USER_DEFINED) for i in special]
        # SPM: characters without a token fall back to one token per UTF-8 byte
        self._byte_ids = [self._find_byte_token(b) for b in range(256)] if self.kind == "spm" else []
        # BPE on the text's own characters (gemma4): spaces are U+2581, bytes without a token <0xXX>
        self.spm_style_bpe = self.kind == "bpe" and not self.pre.byte_level

    # -- loading ---------------------------------------------------------------------------------
    def _error(self, what: str) -> ModelFormatError:
        return ModelFormatError(f"{self.source}: tokenizer: {what}")

    def _load_vocab(self, metadata: dict) -> None:
        tokens = metadata.get(Keys.Tokenizer.LIST)
        if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
            raise self._error(f"missing or invalid {Keys.Tokenizer.LIST} (expected a non-empty array of strings)")
        n = len(tokens)
        # llama.cpp renames empty tokens so that every text maps back to one id
        self.tokens = [t if t else f"[EMPTY_{i}]" for i, t in enumerate(tokens)]
        self.vocab_size = n
        self.token_to_id = {t: i for i, t in enumerate(self.tokens)}
        if len(self.token_to_id) != n:
            seen: set[str] = set()
            dup = next(t for t in self.tokens if t in seen or seen.add(t))
            raise self._error(f"{Keys.Tokenizer.LIST} holds {dup!r} more than once")
        self.scores = self._array(metadata, Keys.Tokenizer.SCORES, n, np.number)  # float32 or int32
        types = self._array(metadata, Keys.Tokenizer.TOKEN_TYPE, n, np.integer)
        valid = {int(t) for t in TokenType}
        self.types = [TokenType.NORMAL] * n if types is None else [TokenType(t) if t in valid else 0 for t in types.tolist()]
        for i, t in enumerate(self.types):
            if t == TokenType.BYTE and not re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", self.tokens[i]):
                raise self._error(f"byte token {i} is {self.tokens[i]!r}, expected the form <0xXX>")
        if self.scores is not None:
            self.scores = self.scores.astype(np.float32).tolist()

    def _array(self, metadata: dict, key: str, n: int, kind: type) -> np.ndarray | None:
        value = metadata.get(key)
        if value is None:
            return None
        if not isinstance(value, np.ndarray) or not np.issubdtype(value.dtype, kind):
            raise self._error(f"{key} is {type(value).__name__}, expected a numeric array")
        if len(value) != n:
            raise self._error(f"{key} has {len(value)} entries but {Keys.Tokenizer.LIST} has {n}")
        return value

    def _load_merges(self, metadata: dict) -> None:
        merges = metadata.get(Keys.Tokenizer.MERGES)
        if not isinstance(merges, list):
            raise self._error(f"byte-level BPE needs {Keys.Tokenizer.MERGES} (an array of 'left right' strings)")
        # split at the first space after the first character (llama.cpp's rule); no space: ("", "")
        pairs = [(m[:c], m[c + 1 :]) if isinstance(m, str) and (c := m.find(" ", 1)) > 0 else ("", "") for m in merges]
        tokens = self.token_to_id
        if not tokens.keys() >= {part for pair in pairs for part in pair} | {a + b for a, b in pairs}:
            for rank, (merge, (left, right)) in enumerate(zip(merges, pairs)):  # the first bad merge, for the message
                for part in (left, right, left + right):
                    if part not in tokens:
                        raise self._error(f"merge {rank} ({merge!r}) refers to {part!r}, which is not in {Keys.Tokenizer.LIST}")
        # a repeated merge keeps its first rank: written last, in reversed order
        self.bpe_ranks: dict[tuple[str, str], int] = dict(zip(reversed(pairs), range(len(pairs) - 1, -1, -1)))

    def _special_id(self, metadata: dict, key: str, default: int | None) -> int | None:
        value = metadata.get(key)
        if value is None:  # llama.cpp's per-model default, dropped when the vocabulary is smaller
            return default if default is not None and default < self.vocab_size else None
        if not isinstance(value, int) or not 0 <= value < self.vocab_size:
            raise self._error(f"{key} = {value!r} is not a token id (the vocabulary has {self.vocab_size} tokens)")
        return value

    def _flag(self, metadata: dict, key: str, default: bool) -> bool:
        value = metadata.get(key, default)
        if not isinstance(value, bool):
            raise self._error(f"{key} = {value!r}, expected a bool")
        return value

    def _end_of_generation_ids(self, metadata: dict) -> set[int]:
        """llama.cpp's special_eog_ids; tokens it marks this way also become CONTROL tokens."""
        eog = set()
        for key, texts in _FOUND_BY_TEXT.items():
            tid = self._special_id(metadata, key, None)
            if tid is None:
                found = [self.token_to_id[t] for t in texts if t in self.token_to_id]
                tid = min(found) if found else None
                if tid is not None:
                    self.types[tid] = TokenType.CONTROL
            if tid is not None:  # eot, eom, fim pad/rep/sep all end generation
                eog.add(tid)
        for text in _EOG_TEXTS:
            tid = self.token_to_id.get(text)
            if tid is not None:
                eog.add(tid)
                self.types[tid] = TokenType.CONTROL
        if self.eos_id is not None:
            eog.add(self.eos_id)
        texts = {self.tokens[i]: i for i in eog}
        # o200k_harmony / solar-open: <|end|> ends a message, not the generation
        if "<|end|>" in texts and (("<|return|>" in texts and "<|call|>" in texts)
                                   or ("<|calls|>" in texts and "<|flush|>" in texts)):
            eog.discard(texts["<|end|>"])
            self.types[texts["<|end|>"]] = TokenType.USER_DEFINED
        # gemma4 and plamo2 have a normal </s> token
        if "</s>" in texts and ("<|tool_response>" in texts or "<|plamo:eos|>" in texts):
            eog.discard(texts["</s>"])
            self.types[texts["</s>"]] = TokenType.NORMAL
        return eog

    def _find_byte_token(self, b: int) -> int | None:
        """llama.cpp's SPM byte_to_token: the token <0xXX>, else the byte itself as a token."""
        for text in (f"<0x{b:02X}>", chr(b) if b < 0x80 else None):
            if text is not None and text in self.token_to_id:
                return self.token_to_id[text]
        return None

    # -- encoding --------------------------------------------------------------------------------
    def encode(self, text: str, add_special: bool = False, parse_special: bool = False) -> list[int]:
        """Token ids of `text`. add_special: bos/eos as the model asks (add_bos, add_eos).
        parse_special: control-token texts in `text` (e.g. <|im_start|>) become their ids."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(f"text is not valid Unicode: {e.reason} at index {e.start}") from None
        out: list[int] = []
        if add_special and self.add_bos:
            out.append(self._required(self.bos_id, "bos"))
        prev_special = True  # SPM: the first text fragment gets the space prefix too
        for fragment in self._partition(text, parse_special):
            if isinstance(fragment, int):
                out.append(fragment)
                prev_special = True
            elif self.kind == "spm":
                prefix = " " if self.add_space_prefix and prev_special else ""
                self._encode_spm((prefix + fragment).replace(" ", SPM_SPACE), out)
                prev_special = False
            elif self.spm_style_bpe:
                for word in pre_tokenize(fragment.replace(" ", SPM_SPACE), self.pre):
                    self._encode_bpe_word(word, out)
            else:
                for word in pre_tokenize(fragment, self.pre):
                    self._encode_bpe_word("".join(BYTE_CHARS[b] for b in word.encode()), out)
        if add_special and self.add_eos:
            out.append(self._required(self.eos_id, "eos"))
        return out

    def _required(self, tid: int | None, name: str) -> int:
        if tid is None:
            raise ValueError(f"{self.source}: the model asks for a {name} token but its vocabulary has none")
        return tid

    def _partition(self, text: str, parse_special: bool) -> list[str | int]:
        """Split out special token texts, longest first (llama.cpp's tokenizer_st_partition).
        User-defined tokens are always split out, control and unknown ones only with parse_special."""
        fragments: list[str | int] = [text] if text else []
        for tid, token, is_control in self._special:
            if is_control and not parse_special:
                continue
            if not any(isinstance(f, str) and token in f for f in fragments):
                continue
            new: list[str | int] = []
            for f in fragments:
                if isinstance(f, int) or token not in f:
                    new.append(f)
                    continue
                pieces = f.split(token)
                for k, piece in enumerate(pieces):
                    if k:
                        new.append(tid)
                    if piece:
                        new.append(piece)
            fragments = new
        return fragments

    def _encode_spm(self, text: str, out: list[int]) -> None:
        """llama.cpp's SPM: start from single characters, repeatedly merge the adjacent pair whose
        concatenation is the token with the highest score (ties: the leftmost pair)."""
        n = len(text)
        if not n:
            return
        # symbol i starts at character i; length[i] == 0 once merged into its left neighbour
        length, prev, nxt = [1] * n, list(range(-1, n - 1)), [*range(1, n), -1]
        heap: list[tuple[float, int, int, int]] = []

        def push(left: int, right: int) -> None:
            if left < 0 or right < 0:
                return
            size = length[left] + length[right]
            tid = self.token_to_id.get(text[left : left + size])
            if tid is not None:
                heapq.heappush(heap, (-self.scores[tid], left, right, size))

        for i in range(1, n):
            push(i - 1, i)
        while heap:
            _, left, right, size = heapq.heappop(heap)
            if not length[left] or not length[right] or length[left] + length[right] != size:
                continue  # one side changed since this pair was queued
            length[left], length[right] = size, 0
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prev[nxt[right]] = left
            push(prev[left], left)
            push(left, nxt[left])
        i = 0
        while i >= 0:
            piece = text[i : i + length[i]]
            tid = self.token_to_id.get(piece)
            if tid is not None:
                out.append(tid)
            else:  # only single characters can be left without a token
                out.extend(self._byte_token(b, piece) for b in piece.encode())
            i = nxt[i]

    def _encode_bpe_word(self, word: str, out: list[int]) -> None:
        """llama.cpp's BPE on one byte-encoded word: repeatedly merge the adjacent pair with the
        lowest merge rank (ties: the leftmost pair)."""
        if (self.pre.ignore_merges or (self.pre.whole_newline_words and not word.strip("\n"))) and word in self.token_to_id:
            out.append(self.token_to_id[word])
            return
        symbols = list(word)  # "" once merged into the left neighbour
        n = len(symbols)
        prev, nxt = list(range(-1, n - 1)), [*range(1, n), -1]
        heap: list[tuple[int, int, int, str]] = []

        def push(left: int, right: int) -> None:
            if left < 0 or right < 0:
                return
            rank = self.bpe_ranks.get((symbols[left], symbols[right]))
            if rank is not None:
                heapq.heappush(heap, (rank, left, right, symbols[left] + symbols[right]))

        for i in range(1, n):
            push(i - 1, i)
        while heap:
            _, left, right, merged = heapq.heappop(heap)
            if not symbols[left] or not symbols[right] or symbols[left] + symbols[right] != merged:
                continue  # one side changed since this pair was queued
            symbols[left], symbols[right] = merged, ""
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prev[nxt[right]] = left
            push(prev[left], left)
            push(left, nxt[left])
        for symbol in symbols:
            if not symbol:
                continue
            # merges only make tokens, so a symbol without one is a byte the vocabulary lacks
            # (SmolLM2 has no 0x04 or 0xF1): llama.cpp and transformers both leave it out
            tid = self.token_to_id.get(symbol)
            if tid is not None:
                out.append(tid)
            elif self.spm_style_bpe:  # a character without a token: its bytes' <0xXX> tokens, where they exist
                out.extend(t for t in (self.token_to_id.get(f"<0x{b:02X}>") for b in symbol.encode()) if t is not None)

    def _byte_token(self, b: int, text: str) -> int:
        """SPM byte fallback; a vocabulary without <0xXX> tokens gives its unknown token instead."""
        tid = self._byte_ids[b] if self._byte_ids[b] is not None else self.unk_id
        if tid is None:
            raise ValueError(f"{self.source}: no token for byte 0x{b:02X} of {text!r} and no unknown token")
        return tid

    # -- decoding --------------------------------------------------------------------------------
    def token_bytes(self, id: int) -> bytes:
        """The bytes token `id` stands for (llama.cpp's token_to_piece with special=true).
        Special and user-defined tokens give their text; unused tokens give nothing."""
        if not isinstance(id, (int, np.integer)) or not 0 <= id < self.vocab_size:
            raise ValueError(f"token id {id!r} is outside the vocabulary (0..{self.vocab_size - 1}) of {self.source}")
        text, kind = self.tokens[id], self.types[id]
        if kind in _SPECIAL:
            return text.encode()
        if kind == TokenType.BYTE:
            return bytes([int(text[3:5], 16)])
        if kind != TokenType.NORMAL:
            return b""
        if self.kind == "spm" or self.spm_style_bpe:
            return text.replace(SPM_SPACE, " ").encode()
        # characters outside GPT-2's byte table (none in a well-formed vocabulary) stand for themselves
        return b"".join(bytes([_CHAR_TO_BYTE[c]]) if c in _CHAR_TO_BYTE else c.encode() for c in text)

    def decode(self, ids: list[int]) -> str:
        """The text of `ids`; invalid UTF-8 becomes U+FFFD. With add_space_prefix (SPM), one
        leading space of the first token is dropped, as encode put it there."""
        data = b"".join(self.token_bytes(i) for i in ids)
        if self.add_space_prefix and ids and data.startswith(b" ") and self.token_bytes(ids[0]).startswith(b" "):
            data = data[1:]
        return data.decode("utf-8", errors="replace")
