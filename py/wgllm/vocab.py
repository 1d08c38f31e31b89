"""Tokenizer files -> GGUF tokenizer metadata, with the conventions of llama.cpp's converter.

Two vocabulary types, named by `tokenizer.ggml.model`:
  "llama": a SentencePiece `tokenizer.model` (read with the `sentencepiece` package). Piece types
           carry over one to one (SentencePiece and llama.cpp number them alike); add_space_prefix
           is the model's own normalizer flag add_dummy_prefix.
  "gpt2":  a byte-level BPE `tokenizer.json` (vocab + merges). Added tokens become CONTROL when
           marked special (or when they look special, as llama.cpp judges it) and USER_DEFINED
           otherwise. `tokenizer.ggml.pre`, the name of llama.cpp's pre-tokenizer, is read off the
           tokenizer.json pre_tokenizer structure (llama.cpp hashes the ids of a probe text instead,
           which needs the `transformers` tokenizer at hand); the architecture only separates
           structures that are the same for several names (phi-2's GPT-2 tokenizer).
The tokenizer_config.json beside either supplies the special tokens (bos/eos/unk/pad, looked up
by their text), add_bos/add_eos and the chat template (or a chat_template.jinja file); config.json's
*_token_id fill in what it leaves out. A vocabulary smaller than the model's embedding table is
padded with `[PAD{id}]` tokens of type UNUSED, as llama.cpp does.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf import GGUFValueType, GGUFWriter, Keys, TokenType

from wgllm.errors import ModelFormatError
from wgllm.gguf_io import GGUFFile

log = logging.getLogger(__name__)

SPM, BPE = "llama", "gpt2"
_TOKEN_TYPES = frozenset(int(t) for t in TokenType)
_PAD_SCORE = -1000.0  # llama.cpp's score for added and padding tokens

# Hugging Face's Split regexes (tokenizer.json) for the llama.cpp pre-tokenizers they stand for
_HF_REGEX_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_HF_REGEX_QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                   r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# o200k (GPT-4o, Phi-4-mini)
_HF_REGEX_GPT4O = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
                   r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
                   r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")


@dataclass
class VocabSpec:
    """Everything the GGUF holds about a tokenizer (llama.cpp's tokenizer.* keys)."""

    model: str  # "llama" (SentencePiece) or "gpt2" (byte-level BPE)
    pre: str  # tokenizer.ggml.pre: "default" for SentencePiece, llama.cpp's pre-tokenizer name for BPE
    tokens: list[str]
    scores: list[float] | None  # SentencePiece only
    token_types: list[int]  # gguf.TokenType values
    merges: list[str] | None  # BPE only: "left right", in rank order
    bos_id: int | None = None
    eos_id: int | None = None
    unk_id: int | None = None
    pad_id: int | None = None
    add_bos: bool | None = None
    add_eos: bool | None = None
    add_space_prefix: bool | None = None
    chat_template: str | None = None
    eot_id: int | None = None  # end of turn, also ends generation
    eom_id: int | None = None  # end of message, also ends generation

    def validate(self, source: str) -> None:
        """Raise a ModelFormatError naming `source` if the fields do not fit together."""
        n = len(self.tokens)
        if self.model not in (SPM, BPE):
            raise ModelFormatError(f"{source}: tokenizer model {self.model!r}, expected {SPM!r} or {BPE!r}")
        if n == 0:
            raise ModelFormatError(f"{source}: the vocabulary is empty")
        if len(self.token_types) != n:
            raise ModelFormatError(f"{source}: {len(self.token_types)} token types for {n} tokens")
        bad = next((t for t in self.token_types if t not in _TOKEN_TYPES), None)
        if bad is not None:
            raise ModelFormatError(f"{source}: token type {bad} is not one of llama.cpp's {sorted(_TOKEN_TYPES)}")
        if self.scores is not None and len(self.scores) != n:
            raise ModelFormatError(f"{source}: {len(self.scores)} token scores for {n} tokens")
        if self.model == SPM and self.scores is None:
            raise ModelFormatError(f"{source}: a SentencePiece vocabulary needs token scores")
        if self.model == BPE and not self.merges:
            raise ModelFormatError(f"{source}: a byte-level BPE vocabulary needs merges")
        for name in ("bos_id", "eos_id", "unk_id", "pad_id", "eot_id", "eom_id"):
            tid = getattr(self, name)
            if tid is not None and not 0 <= tid < n:
                raise ModelFormatError(f"{source}: {name} = {tid} is outside the vocabulary of {n} tokens")

    def token_id(self, text: str) -> int | None:
        """The id of the token whose text is exactly `text` (the lowest if several), else None."""
        try:
            return self.tokens.index(text)
        except ValueError:
            return None


# -- loading --------------------------------------------------------------------------------------
def load_vocab(path: str | Path, *, architecture: str | None = None, vocab_size: int | None = None) -> VocabSpec:
    """The vocabulary in `path`: a SentencePiece tokenizer.model, a tokenizer.json, or a folder
    holding either (tokenizer.model wins, as in llama.cpp's converter). `vocab_size` is the
    model's embedding rows: a larger vocabulary is an error, a smaller one is padded."""
    path = Path(path)
    if not path.exists():
        raise ModelFormatError(f"{path}: no such tokenizer file or folder")
    if path.is_dir():
        folder = path
        if (path / "tokenizer.model").is_file():
            spec = _load_spm(path / "tokenizer.model", vocab_size)
        elif (path / "tokenizer.json").is_file():
            spec = _load_bpe(path / "tokenizer.json", architecture, vocab_size)
        else:
            raise ModelFormatError(f"{path}: no tokenizer.model (SentencePiece) or tokenizer.json (byte-level BPE) in this folder")
    else:
        # the files beside a tokenizer file describe the same tokenizer (an HF checkpoint folder)
        folder = path.parent
        if path.suffix == ".json":
            spec = _load_bpe(path, architecture, vocab_size)
        else:
            spec = _load_spm(path, vocab_size)
    _apply_configs(spec, folder, vocab_size)
    spec.validate(str(path))
    return spec


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFormatError(f"{path}: not a readable JSON file ({e})") from None


def _fill(entries: dict[int, tuple[str, float, int]], vocab_size: int | None, where: Path) -> tuple[list[str], list[float], list[int]]:
    """Dense token/score/type lists from id -> entry, padded up to vocab_size."""
    top = max(entries)
    if vocab_size is not None and top >= vocab_size:
        raise ModelFormatError(
            f"{where}: token id {top} ({entries[top][0]!r}) does not fit the model's vocab_size of {vocab_size}: "
            f"the vocabulary ({len(entries)} tokens) is larger than the model's embedding table; is it the model's own tokenizer?"
        )
    n = vocab_size if vocab_size is not None else top + 1
    tokens, scores, types = [], [], []
    for i in range(n):
        text, score, ttype = entries.get(i, (f"[PAD{i}]", _PAD_SCORE, int(TokenType.UNUSED)))
        tokens.append(text)
        scores.append(score)
        types.append(ttype)
    return tokens, scores, types


# SentencePiece's model file is a protobuf ModelProto; only three of its fields matter here, so a
# minimal wire-format reader stands in for the protobuf package (not a runtime dependency).
def _proto_fields(buf: bytes, where: Path) -> list[tuple[int, int | bytes]]:
    out, pos = [], 0

    def varint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            if pos >= len(buf):
                raise ModelFormatError(f"{where}: truncated SentencePiece model protobuf")
            b = buf[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value

    while pos < len(buf):
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            out.append((field, varint()))
        elif wire == 1 or wire == 5:
            size = 8 if wire == 1 else 4
            out.append((field, buf[pos : pos + size]))
            pos += size
        elif wire == 2:
            size = varint()
            out.append((field, buf[pos : pos + size]))
            pos += size
        else:
            raise ModelFormatError(f"{where}: unexpected protobuf wire type {wire} in the SentencePiece model")
        if pos > len(buf):
            raise ModelFormatError(f"{where}: truncated SentencePiece model protobuf")
    return out


def _load_spm(model_file: Path, vocab_size: int | None) -> VocabSpec:
    import numpy as np
    from sentencepiece import SentencePieceProcessor

    sp = SentencePieceProcessor()
    try:
        sp.LoadFromFile(str(model_file))
    except (OSError, RuntimeError) as e:
        raise ModelFormatError(f"{model_file}: not a SentencePiece model ({e})") from None
    entries: dict[int, tuple[str, float, int]] = {}
    add_dummy_prefix = True  # NormalizerSpec's default
    for field, value in _proto_fields(sp.serialized_model_proto(), model_file):
        if field == 1:  # ModelProto.pieces: SentencePiece {piece = 1, score = 2, type = 3 (default NORMAL)}
            piece, score, ptype = "", 0.0, int(TokenType.NORMAL)
            for f, v in _proto_fields(value, model_file):
                if f == 1:
                    piece = v.decode("utf-8")
                elif f == 2:
                    score = float(np.frombuffer(v, "<f4")[0])
                elif f == 3:
                    ptype = v
            if ptype not in _TOKEN_TYPES:
                raise ModelFormatError(f"{model_file}: piece {piece!r} has unknown type {ptype}")
            entries[len(entries)] = (piece, score, ptype)  # SentencePiece's types are numbered as llama.cpp's
        elif field == 3:  # ModelProto.normalizer_spec {add_dummy_prefix = 3}
            for f, v in _proto_fields(value, model_file):
                if f == 3:
                    add_dummy_prefix = bool(v)
    if len(entries) != sp.get_piece_size():
        raise ModelFormatError(f"{model_file}: read {len(entries)} pieces, sentencepiece reports {sp.get_piece_size()}")
    tokens, scores, types = _fill(entries, vocab_size, model_file)
    ids = {name: (tid if tid >= 0 else None) for name, tid in
           (("bos", sp.bos_id()), ("eos", sp.eos_id()), ("unk", sp.unk_id()), ("pad", sp.pad_id()))}
    return VocabSpec(SPM, "default", tokens, scores, types, None, bos_id=ids["bos"], eos_id=ids["eos"],
                     unk_id=ids["unk"], pad_id=ids["pad"], add_space_prefix=add_dummy_prefix)


def _looks_special(text: str) -> bool:
    """llama.cpp's does_token_look_special: added tokens some models forget to mark special."""
    return (text in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
            or (text.startswith("<|") and text.endswith("|>"))
            or (text.startswith("<｜") and text.endswith("｜>"))
            or (text.startswith("<unused") and text.endswith(">")))


def _added_token(text: str, special: bool) -> tuple[str, float, int]:
    if special or _looks_special(text):
        return text, _PAD_SCORE, int(TokenType.CONTROL)
    # llama.cpp matches user-defined tokens in the raw text, so SentencePiece's space mark goes
    return text.replace("\u2581", " "), _PAD_SCORE, int(TokenType.USER_DEFINED)


def _pre_steps(node: Any) -> list[dict]:
    if not node:
        return []
    if node.get("type") == "Sequence":
        return [s for child in node.get("pretokenizers", []) for s in _pre_steps(child)]
    return [node]


def _split_pattern(step: dict) -> str | None:
    pattern = step.get("pattern") or {}
    return pattern.get("Regex", pattern.get("String"))


def _bpe_pre(tj: dict, file: Path, architecture: str | None) -> str:
    """llama.cpp's name for the pre-tokenizer that tokenizer.json describes."""
    steps = _pre_steps(tj.get("pre_tokenizer"))
    kinds = [s.get("type") for s in steps]
    byte_level = [s for s in steps if s.get("type") == "ByteLevel"]
    if not byte_level:
        raise ModelFormatError(
            f"{file}: BPE without a ByteLevel pre-tokenizer (pre_tokenizer types {kinds}): this is a SentencePiece-style "
            "BPE, which wgllm reads from its tokenizer.model; give that file instead")
    if byte_level[0].get("add_prefix_space", False):
        raise ModelFormatError(f"{file}: ByteLevel add_prefix_space = true, which llama.cpp's BPE tokenizer cannot reproduce")
    use_regex = byte_level[0].get("use_regex", True)
    arch = architecture or ""
    if kinds == ["ByteLevel"] and use_regex:
        if arch == "phi2":
            return "phi-2"
        normalizer = tj.get("normalizer") or {}
        return "mpt" if normalizer.get("type") == "NFC" else "gpt-2"  # NFC: the GPT-NeoX tokenizer
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and use_regex:
        return "starcoder" if arch.startswith("starcoder") else "smollm"
    if (kinds == ["Punctuation", "ByteLevel", "Digits", "Split"] and use_regex
            and _split_pattern(steps[3]) == "[0-9][0-9][0-9]"):
        return "falcon"
    if kinds == ["Split", "ByteLevel"] and not use_regex:
        pattern = _split_pattern(steps[0])
        if pattern == _HF_REGEX_LLAMA3:
            # llama-bpe keeps a word that is itself a token whole (the BPE model's ignore_merges);
            # smaug-bpe (Smaug-Llama-3, SmolLM3) is the same regex without it
            return "llama-bpe" if (tj.get("model") or {}).get("ignore_merges") else "smaug-bpe"
        if pattern == _HF_REGEX_GPT4O:
            return "gpt-4o"
        if pattern == _HF_REGEX_QWEN2:
            return "stablelm2" if arch == "stablelm" else "qwen2"
    raise ModelFormatError(
        f"{file}: unknown BPE pre-tokenizer (types {kinds}, split regex {next((_split_pattern(s) for s in steps if s.get('type') == 'Split'), None)!r}); "
        "wgllm knows GPT-2 style ByteLevel, Digits+ByteLevel (smollm), falcon's, llama-3's, qwen2's and gpt-4o's")


def _load_bpe(file: Path, architecture: str | None, vocab_size: int | None) -> VocabSpec:
    tj = _read_json(file)
    model = tj.get("model") if isinstance(tj, dict) else None
    if not isinstance(model, dict):
        raise ModelFormatError(f"{file}: no 'model' object: not a Hugging Face tokenizer.json")
    mtype = model.get("type")
    if mtype != "BPE":
        raise ModelFormatError(
            f"{file}: tokenizer model type {mtype!r}; wgllm converts byte-level BPE tokenizer.json files and "
            "SentencePiece tokenizer.model files only (a Unigram or WordPiece vocabulary has no GGUF form it can run)")
    vocab, merges = model.get("vocab"), model.get("merges")
    if not isinstance(vocab, dict) or not vocab:
        raise ModelFormatError(f"{file}: model.vocab is missing or empty")
    if not isinstance(merges, list) or not merges:
        raise ModelFormatError(f"{file}: model.merges is missing or empty")
    pre = _bpe_pre(tj, file, architecture)
    entries: dict[int, tuple[str, float, int]] = {}
    for text, tid in vocab.items():
        if not isinstance(tid, int) or tid < 0:
            raise ModelFormatError(f"{file}: token {text!r} has id {tid!r}, expected a non-negative integer")
        entries[tid] = (text, 0.0, int(TokenType.NORMAL))
    for tok in tj.get("added_tokens") or []:
        tid, text = tok.get("id"), tok.get("content")
        if not isinstance(tid, int) or tid < 0 or not isinstance(text, str):
            raise ModelFormatError(f"{file}: added token {tok!r} needs an integer id and a string content")
        entries[tid] = _added_token(text, bool(tok.get("special")))
    tokens, _, types = _fill(entries, vocab_size, file)
    spec = VocabSpec(BPE, pre, tokens, None, types, [_merge_text(m, file) for m in merges])
    _bpe_post_processor(spec, tj.get("post_processor"), tj.get("added_tokens") or [])
    return spec


def _merge_text(merge: Any, file: Path) -> str:
    if isinstance(merge, str):
        return merge
    if isinstance(merge, list) and len(merge) == 2 and all(isinstance(p, str) for p in merge):
        # the pair form may hold spaces; GGUF's "a b" form writes them as U+0120, like the byte map
        return " ".join(p.replace(" ", "\u0120") for p in merge)
    raise ModelFormatError(f"{file}: merge {merge!r} is neither 'a b' nor ['a', 'b']")


def _bpe_post_processor(spec: VocabSpec, node: Any, added: list[dict]) -> None:
    """add_bos/add_eos as the post-processor implies (gguf-py's SpecialVocab does the same, roughly)."""
    if not node:
        return
    by_text = {t.get("content"): t.get("id") for t in added}
    for proc in node.get("processors", [node]):
        if proc.get("type") == "ByteLevel":
            spec.add_bos = False if spec.add_bos is None else spec.add_bos
            spec.add_eos = False if spec.add_eos is None else spec.add_eos
        elif proc.get("type") == "TemplateProcessing":
            single = proc.get("single") or []
            first = single[0].get("SpecialToken", {}).get("id") if single else None
            last = single[-1].get("SpecialToken", {}).get("id") if len(single) > 1 else None
            spec.add_bos = first is not None
            spec.add_eos = last is not None
            # the template's tokens are the ones added: they name bos/eos when tokenizer_config does not
            if first is not None and by_text.get(first) is not None:
                spec.bos_id = by_text[first]
            if last is not None and by_text.get(last) is not None:
                spec.eos_id = by_text[last]


def _token_text(entry: Any) -> str | None:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict) and isinstance(entry.get("content"), str):
        return entry["content"]
    return None


def _apply_configs(spec: VocabSpec, folder: Path, vocab_size: int | None) -> None:
    """tokenizer_config.json, added_tokens.json, chat_template.jinja and config.json beside the vocabulary."""
    config_file = folder / "tokenizer_config.json"
    config = _read_json(config_file) if config_file.is_file() else {}
    if not isinstance(config, dict):
        raise ModelFormatError(f"{config_file}: expected a JSON object")
    if spec.model == SPM:  # tokens added on top of the SentencePiece model, as llama.cpp's converter adds them
        added_file = folder / "added_tokens.json"
        added = _read_json(added_file) if added_file.is_file() else {}
        overrides = [(added_file, tid, text, False) for text, tid in added.items()]
        for tid, tok in (config.get("added_tokens_decoder") or {}).items():
            if not isinstance(tok, dict) or not str(tid).isdigit():
                raise ModelFormatError(f"{config_file}: added_tokens_decoder entry {tid!r}: {tok!r}, expected id -> {{content, special}}")
            overrides.append((config_file, int(tid), tok.get("content"), bool(tok.get("special"))))
        for where, tid, text, special in overrides:
            if not isinstance(tid, int) or not isinstance(text, str):
                raise ModelFormatError(f"{where}: added token {text!r} with id {tid!r}: expected a string and an integer id")
            if not 0 <= tid < len(spec.tokens):
                raise ModelFormatError(
                    f"{where}: added token {text!r} has id {tid}, outside the vocabulary of {len(spec.tokens)} tokens"
                    + (f" (the model's vocab_size)" if vocab_size is not None else f" ({len(spec.tokens)} pieces in tokenizer.model)"))
            spec.tokens[tid], spec.scores[tid], spec.token_types[tid] = _added_token(text, special)  # type: ignore[index]

    template = config.get("chat_template")
    if template is None and (folder / "chat_template.jinja").is_file():
        template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    if template is None and (folder / "chat_template.json").is_file():
        template = _read_json(folder / "chat_template.json").get("chat_template")
    if isinstance(template, list):  # named templates: GGUF's tokenizer.chat_template is the default one
        named = {t.get("name"): t.get("template") for t in template}
        if "default" not in named:
            raise ModelFormatError(f"{config_file}: chat_template lists {sorted(named)} but no 'default' template")
        if len(named) > 1:
            log.warning("%s: only the default chat template is kept, not %s", config_file, sorted(set(named) - {"default"}))
        template = named["default"]
    if template is not None and not isinstance(template, str):
        raise ModelFormatError(f"{config_file}: chat_template is {type(template).__name__}, expected a string")
    spec.chat_template = template

    for name in ("bos", "eos", "unk", "pad"):
        text = _token_text(config.get(f"{name}_token"))
        if text is not None:
            tid = spec.token_id(text)
            if tid is None:
                raise ModelFormatError(f"{config_file}: {name}_token {text!r} is not a token of the vocabulary")
            setattr(spec, f"{name}_id", tid)
        flag = config.get(f"add_{name}_token")
        if name in ("bos", "eos") and isinstance(flag, bool) and getattr(spec, f"add_{name}") is None:
            setattr(spec, f"add_{name}", flag)

    model_config_file = folder / "config.json"
    if model_config_file.is_file():  # the model's own ids, where tokenizer_config names none
        model_config = _read_json(model_config_file)
        for name in ("bos", "eos", "pad"):
            tid = model_config.get(f"{name}_token_id") if isinstance(model_config, dict) else None
            if isinstance(tid, int) and 0 <= tid < len(spec.tokens) and _token_text(config.get(f"{name}_token")) is None:
                setattr(spec, f"{name}_id", tid)


# -- GGUF -----------------------------------------------------------------------------------------
def vocab_fields(spec: VocabSpec) -> list[tuple[str, Any, GGUFValueType, GGUFValueType | None]]:
    """The GGUF key/values of `spec`: (key, value, value type, array element type)."""
    K, V = Keys.Tokenizer, GGUFValueType
    fields: list[tuple[str, Any, GGUFValueType, GGUFValueType | None]] = [
        (K.MODEL, spec.model, V.STRING, None),
        (K.PRE, spec.pre, V.STRING, None),
        (K.LIST, list(spec.tokens), V.ARRAY, V.STRING),
        (K.TOKEN_TYPE, [int(t) for t in spec.token_types], V.ARRAY, V.INT32),
    ]
    if spec.scores is not None:
        fields.append((K.SCORES, [float(s) for s in spec.scores], V.ARRAY, V.FLOAT32))
    if spec.merges:
        fields.append((K.MERGES, list(spec.merges), V.ARRAY, V.STRING))
    for key, tid in ((K.BOS_ID, spec.bos_id), (K.EOS_ID, spec.eos_id), (K.EOT_ID, spec.eot_id), (K.EOM_ID, spec.eom_id),
                     (K.UNK_ID, spec.unk_id), (K.PAD_ID, spec.pad_id)):
        if tid is not None:
            fields.append((key, int(tid), V.UINT32, None))
    for key, flag in ((K.ADD_BOS, spec.add_bos), (K.ADD_EOS, spec.add_eos), (K.ADD_PREFIX, spec.add_space_prefix)):
        if flag is not None:
            fields.append((key, bool(flag), V.BOOL, None))
    if spec.chat_template is not None:
        fields.append((K.CHAT_TEMPLATE, spec.chat_template, V.STRING, None))
    return fields


def write_vocab(writer: GGUFWriter, spec: VocabSpec) -> None:
    """Add the tokenizer keys of `spec` to a GGUF being written."""
    spec.validate(str(writer.path) if getattr(writer, "path", None) else "GGUF being written")
    for key, value, vtype, sub_type in vocab_fields(spec):
        writer.add_key_value(key, value, vtype, sub_type=sub_type)


def read_vocab(gguf_file: GGUFFile) -> VocabSpec:
    """The tokenizer stored in a GGUF file (the inverse of write_vocab)."""
    K, md = Keys.Tokenizer, gguf_file.metadata
    model = gguf_file.require(K.MODEL, str)
    tokens = gguf_file.require(K.LIST, list)

    def numbers(key: str, kind: type) -> list | None:
        if key not in md:
            return None
        value = md[key]
        if not hasattr(value, "dtype") or value.ndim != 1:
            raise ModelFormatError(f"{gguf_file.path}: metadata key {key} is {type(value).__name__}, expected a numeric array")
        return [kind(v) for v in value.tolist()]

    def optional(key: str, kind: type) -> Any:
        return gguf_file.require(key, kind) if key in md else None

    types = numbers(K.TOKEN_TYPE, int)
    if types is None:  # llama.cpp reads a vocabulary without types as all NORMAL
        types = [int(TokenType.NORMAL)] * len(tokens)
    spec = VocabSpec(
        model=model,
        pre=optional(K.PRE, str) or "default",
        tokens=tokens,
        scores=numbers(K.SCORES, float),
        token_types=types,
        merges=optional(K.MERGES, list),
        bos_id=optional(K.BOS_ID, int),
        eos_id=optional(K.EOS_ID, int),
        unk_id=optional(K.UNK_ID, int),
        pad_id=optional(K.PAD_ID, int),
        add_bos=optional(K.ADD_BOS, bool),
        add_eos=optional(K.ADD_EOS, bool),
        add_space_prefix=optional(K.ADD_PREFIX, bool),
        chat_template=optional(K.CHAT_TEMPLATE, str),
        eot_id=optional(K.EOT_ID, int),
        eom_id=optional(K.EOM_ID, int),
    )
    spec.validate(str(gguf_file.path))
    return spec


__all__ = ["BPE", "SPM", "VocabSpec", "load_vocab", "read_vocab", "vocab_fields", "write_vocab"]
