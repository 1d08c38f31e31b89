"""MediaPipe's LLM bundler (`mediapipe.tasks.python.genai.bundler`) for GGUF models.

MediaPipe packs a TFLite model, a tokenizer and an LlmParameters proto (start token, stop tokens,
prompt template) into a `.task` zip. Here the model is a GGUF file, which already has a place for
each of those, so the bundle is a copy of the GGUF with:
  - the tokenizer replaced, when `tokenizer_model` is given (a tokenizer.model, tokenizer.json or
    checkpoint folder, read by wgllm.vocab);
  - `start_token` as tokenizer.ggml.bos_token_id, added to every prompt (add_bos_token = true);
  - `stop_tokens` as eos (the first), eot and eom token ids: the three end-of-generation keys
    llama.cpp reads, so at most three stop tokens, each one token of the vocabulary;
  - a Hugging Face style Jinja chat template built from the prompt prefixes and suffixes, so a
    conversation renders as MediaPipe's prompt template would assemble it.
Every other key is copied byte for byte, as are the tensor descriptions and the tensor data
(streamed, never held in memory whole). The output is written to a temporary name and renamed.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from gguf import GGUFValueType, Keys

from wgllm.errors import ModelFormatError
from wgllm.gguf_io import DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUFFile, _Cursor, atomic_output
from wgllm.vocab import BPE, VocabSpec, load_vocab, read_vocab, vocab_fields

_COPY_CHUNK = 16 << 20
_STOP_KEYS = (Keys.Tokenizer.EOS_ID, Keys.Tokenizer.EOT_ID, Keys.Tokenizer.EOM_ID)


@dataclass(frozen=True)
class BundleConfig:
    """MediaPipe's BundleConfig, for a GGUF model.

    model: the GGUF file to bundle (MediaPipe's `tflite_model` is accepted as another name for it).
    tokenizer_model: a tokenizer to put in place of the model's own (optional).
    start_token: the token that begins every sequence.
    stop_tokens: the tokens that end generation (one to three).
    output_filename: the GGUF file to write.
    enable_bytes_to_unicode_mapping: GPT-2's byte-to-unicode mapping; in a GGUF it follows from the
      tokenizer (byte-level BPE has it, SentencePiece does not), so True is checked against it.
    system_prompt: text put at the start of every conversation (MediaPipe's session prefix);
      excludes prompt_prefix_system / prompt_suffix_system, as in MediaPipe.
    prompt_prefix_* / prompt_suffix_*: text around each user, model and system turn.
    """

    model: str | os.PathLike[str] | None = None
    tokenizer_model: str | os.PathLike[str] | None = None
    start_token: str = ""
    stop_tokens: Sequence[str] = field(default_factory=list)
    output_filename: str | os.PathLike[str] = ""
    enable_bytes_to_unicode_mapping: bool | None = None
    system_prompt: str | None = None
    prompt_prefix_user: str = ""
    prompt_suffix_user: str = ""
    prompt_prefix_model: str = ""
    prompt_suffix_model: str = ""
    prompt_prefix_system: str = ""
    prompt_suffix_system: str = ""
    tflite_model: str | os.PathLike[str] | None = None

    def __post_init__(self) -> None:
        if self.model is not None and self.tflite_model is not None and Path(self.model) != Path(self.tflite_model):
            raise ValueError(f"BundleConfig: model={self.model!s} and tflite_model={self.tflite_model!s} differ; give one")
        if self.model is None:
            if self.tflite_model is None:
                raise ValueError("BundleConfig: model (the GGUF file to bundle) is required")
            object.__setattr__(self, "model", self.tflite_model)
        if not isinstance(self.start_token, str) or not self.start_token:
            raise ValueError("BundleConfig: start_token must be a non-empty string")
        if isinstance(self.stop_tokens, str) or not isinstance(self.stop_tokens, Sequence):
            raise ValueError(f"BundleConfig: stop_tokens must be a list of strings, got {self.stop_tokens!r}")
        if not self.stop_tokens or not all(isinstance(t, str) and t for t in self.stop_tokens):
            raise ValueError(f"BundleConfig: stop_tokens must be a non-empty list of non-empty strings, got {list(self.stop_tokens)!r}")
        if len(self.stop_tokens) > len(_STOP_KEYS):
            raise ValueError(
                f"BundleConfig: {len(self.stop_tokens)} stop_tokens {list(self.stop_tokens)!r}; a GGUF records at most "
                f"{len(_STOP_KEYS)} ({', '.join(_STOP_KEYS)})")
        if not self.output_filename:
            raise ValueError("BundleConfig: output_filename is required")
        if self.system_prompt and (self.prompt_prefix_system or self.prompt_suffix_system):
            raise ValueError("BundleConfig: system_prompt and prompt_prefix_system/prompt_suffix_system are mutually exclusive")


def _literal(text: str) -> str:
    """A Jinja string literal for `text` (JSON's escapes are a subset of what Jinja reads)."""
    return json.dumps(text, ensure_ascii=False)


def _turn(prefix: str, suffix: str) -> str:
    parts = [_literal(prefix)] if prefix else []
    parts.append("message['content']")
    if suffix:
        parts.append(_literal(suffix))
    return "{{- " + " + ".join(parts) + " -}}"


def chat_template(config: BundleConfig) -> str:
    """The Jinja chat template (Hugging Face conventions: `messages` of role/content,
    `add_generation_prompt`) that assembles turns from the config's prefixes and suffixes."""
    lines = []
    if config.system_prompt:
        lines.append("{{- " + _literal(config.system_prompt) + " -}}")
    lines += [
        "{%- for message in messages -%}",
        "{%- if message['role'] == 'user' -%}",
        _turn(config.prompt_prefix_user, config.prompt_suffix_user),
        "{%- elif message['role'] == 'assistant' or message['role'] == 'model' -%}",
        _turn(config.prompt_prefix_model, config.prompt_suffix_model),
        "{%- elif message['role'] == 'system' -%}",
        _turn(config.prompt_prefix_system, config.prompt_suffix_system),
        "{%- else -%}",
        "{{- raise_exception('unknown role ' + message['role'] + ': expected user, assistant, model or system') -}}",
        "{%- endif -%}",
        "{%- endfor -%}",
        "{%- if add_generation_prompt -%}",
        "{{- " + _literal(config.prompt_prefix_model) + " -}}",
        "{%- endif -%}",
    ]
    return "\n".join(lines)


# -- GGUF layout ----------------------------------------------------------------------------------
_SCALAR_FORMATS = {
    GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H", GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i", GGUFValueType.FLOAT32: "<f", GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q", GGUFValueType.INT64: "<q", GGUFValueType.FLOAT64: "<d",
}


def _pack_string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _pack_kv(key: str, value: Any, vtype: GGUFValueType, sub_type: GGUFValueType | None) -> bytes:
    head = _pack_string(key) + struct.pack("<I", vtype)
    if vtype == GGUFValueType.STRING:
        return head + _pack_string(value)
    if vtype in _SCALAR_FORMATS:
        return head + struct.pack(_SCALAR_FORMATS[vtype], value)
    assert vtype == GGUFValueType.ARRAY and sub_type is not None, (key, vtype)
    head += struct.pack("<IQ", sub_type, len(value))
    if sub_type == GGUFValueType.STRING:
        return head + b"".join(_pack_string(v) for v in value)
    return head + np.asarray(value, dtype=np.dtype(_SCALAR_FORMATS[sub_type])).tobytes()


@dataclass(frozen=True)
class _Layout:
    version: int
    n_tensors: int
    kv_ranges: dict[str, tuple[int, int]]  # key -> [start, end) of its bytes, in file order
    tensor_info: tuple[int, int]  # [start, end) of the tensor descriptions
    data_start: int
    alignment: int


def _layout(src: GGUFFile) -> _Layout:
    """Where each part of an already validated GGUF file lies."""
    buf = np.memmap(src.path, dtype=np.uint8, mode="r")
    try:
        cur = _Cursor(buf, src.path)
        if cur.take(4, "magic").tobytes() != GGUF_MAGIC:
            raise cur.fail("magic changed while bundling")
        version, n_tensors, n_kv = cur.u32("version"), cur.u64("tensor count"), cur.u64("metadata count")
        kv_ranges = {}
        for _ in range(n_kv):
            start = cur.pos
            key = cur.string("metadata key")
            cur.value(cur.u32(f"value type of {key}"), key)
            kv_ranges[key] = (start, cur.pos)
        info_start = cur.pos
        for _ in range(n_tensors):
            name = cur.string("tensor name")
            for _ in range(cur.u32(f"dimension count of {name}")):
                cur.u64(f"dimension of {name}")
            cur.u32(f"type of {name}")
            cur.u64(f"offset of {name}")
        alignment = src.metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        return _Layout(version, n_tensors, kv_ranges, (info_start, cur.pos), -(-cur.pos // alignment) * alignment, alignment)
    finally:
        del buf


def _write_gguf(src: GGUFFile, out: Path, drop: set[str], drop_prefix: str | None, new_kvs: list[bytes]) -> None:
    """`src` with the keys in `drop` (and those starting with `drop_prefix`) removed and `new_kvs` appended."""
    lay = _layout(src)
    kept = [r for key, r in lay.kv_ranges.items()
            if key not in drop and not (drop_prefix and key.startswith(drop_prefix))]
    with open(src.path, "rb") as fin, open(out, "wb") as fout:
        fout.write(GGUF_MAGIC + struct.pack("<IQQ", lay.version, lay.n_tensors, len(kept) + len(new_kvs)))

        def copy(start: int, end: int) -> None:
            fin.seek(start)
            while start < end:
                chunk = fin.read(min(_COPY_CHUNK, end - start))
                if not chunk:
                    raise ModelFormatError(f"{src.path}: the file shrank while it was being bundled")
                fout.write(chunk)
                start += len(chunk)

        for start, end in kept:
            copy(start, end)
        for kv in new_kvs:
            fout.write(kv)
        copy(*lay.tensor_info)
        fout.write(b"\0" * (-fout.tell() % lay.alignment))
        # tensor offsets are relative to the data section, so its bytes carry over unchanged
        fin.seek(lay.data_start)
        shutil.copyfileobj(fin, fout, _COPY_CHUNK)


def _n_vocab(src: GGUFFile) -> int | None:
    if "token_embd.weight" in src.tensors:
        return src.tensors["token_embd.weight"].shape[0]
    n = src.get(f"{src.architecture}.vocab_size")
    return n if isinstance(n, int) else None


def _lookup(vocab: VocabSpec, text: str, what: str, source: str) -> int:
    tid = vocab.token_id(text)
    if tid is None:
        raise ModelFormatError(f"{what} {text!r} is not a token of the vocabulary in {source}: it must be one whole token")
    return tid


def create_bundle(config: BundleConfig) -> Path:
    """Write the bundled GGUF that `config` describes; returns its path."""
    src = GGUFFile(config.model)  # type: ignore[arg-type]
    try:
        if config.tokenizer_model is not None:
            source = str(config.tokenizer_model)
            vocab = load_vocab(config.tokenizer_model, architecture=src.architecture, vocab_size=_n_vocab(src))
        else:
            source = str(src.path)
            if Keys.Tokenizer.MODEL not in src.metadata:
                raise ModelFormatError(f"{src.path}: the model has no tokenizer; give tokenizer_model")
            vocab = read_vocab(src)
        if config.enable_bytes_to_unicode_mapping and vocab.model != BPE:
            raise ValueError(
                f"enable_bytes_to_unicode_mapping is set, but the tokenizer in {source} is {vocab.model!r} (SentencePiece), "
                "which has no byte-to-unicode mapping")
        vocab.bos_id = _lookup(vocab, config.start_token, "start_token", source)
        vocab.add_bos = True
        stops = [_lookup(vocab, t, "stop token", source) for t in config.stop_tokens] + [None, None]
        vocab.eos_id, vocab.eot_id, vocab.eom_id = stops[:3]
        vocab.chat_template = chat_template(config)
        vocab.validate(source)

        changed = {Keys.Tokenizer.BOS_ID, Keys.Tokenizer.ADD_BOS, Keys.Tokenizer.CHAT_TEMPLATE, *_STOP_KEYS}
        fields = vocab_fields(vocab)
        if config.tokenizer_model is None:  # keep the model's tokenizer keys, bytes and all, but those set here
            fields = [f for f in fields if f[0] in changed]
            drop, drop_prefix = changed, None
        else:  # a new tokenizer: none of the old one's keys may remain
            drop, drop_prefix = set(), "tokenizer."
        new_kvs = [_pack_kv(*f) for f in fields]
        out = Path(config.output_filename)
        with atomic_output(out) as tmp:
            _write_gguf(src, tmp, drop, drop_prefix, new_kvs)
        return out
    finally:
        src.close()


__all__ = ["BundleConfig", "chat_template", "create_bundle"]
