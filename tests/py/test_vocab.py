"""wgllm.vocab against the tokenizer libraries themselves.

Tiny tokenizers are trained here (sentencepiece, Hugging Face tokenizers), converted to GGUF
metadata, written with gguf.GGUFWriter and read back; the vocabularies are checked against the
libraries' own view of them, and wgllm's Tokenizer on the GGUF must give the libraries' own ids.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
from gguf import GGUFReader, GGUFWriter, TokenType
from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from wgllm.errors import ModelFormatError
from wgllm.gguf_io import GGUFFile
from wgllm.tokenizer import Tokenizer
from wgllm.vocab import VocabSpec, load_vocab, read_vocab, write_vocab


WORDS = ("the quick brown fox jumps over lazy dog tokenizer vocabulary merge byte piece model "
         "über façade naïve straße señor café déjà vu 12 345 6789 hello world it's we're "
         "don't (parens) [brackets] {braces} a+b=c x*y hello_world foo.bar -- ... !? #tag @user").split()

TEXTS = [
    "Hello world",
    "the quick brown fox jumps over the lazy dog.",
    "  two leading spaces and trailing  ",
    "tabs\tand\nnew lines\n\nand    runs   of spaces",
    "über façade naïve — déjà vu, señor!",
    "numbers 12345 and 3.14159 and 1,000,000",
    "emoji 🦙🚀 and 中文字符 and Ελληνικά",
    "it's we're don't I'VE 'quoted'",
    "x",
    " ",
    "",
    "a <custom> symbol inside",
]


def corpus(n: int = 600, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14))) for _ in range(n)]


def train_spm(folder: Path, add_dummy_prefix: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()), model_prefix=str(folder / "tokenizer"), vocab_size=360, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, normalization_rule_name="identity",
        remove_extra_whitespaces=False, add_dummy_prefix=add_dummy_prefix, user_defined_symbols=["<custom>"],
        control_symbols=["<ctrl>"], minloglevel=2)
    return folder / "tokenizer.model"


def write_gguf(path: Path, spec: VocabSpec) -> Path:
    writer = GGUFWriter(path, "llama")
    writer.add_block_count(1)
    write_vocab(writer, spec)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory) -> Path:
    return train_spm(tmp_path_factory.mktemp("spm"))


# -- SentencePiece ------------------------------------------------------------------------------
def test_spm_vocab_matches_sentencepiece(spm_model, tmp_path):
    spec = load_vocab(spm_model)
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    n = sp.get_piece_size()
    assert spec.model == "llama" and spec.pre == "default" and spec.merges is None
    assert spec.tokens == [sp.id_to_piece(i) for i in range(n)]
    assert spec.scores == [sp.get_score(i) for i in range(n)]
    expected_types = [
        TokenType.UNKNOWN if sp.is_unknown(i) else TokenType.CONTROL if sp.is_control(i)
        else TokenType.BYTE if sp.is_byte(i) else TokenType.UNUSED if sp.is_unused(i)
        else TokenType.USER_DEFINED if sp.id_to_piece(i) == "<custom>" else TokenType.NORMAL
        for i in range(n)]
    assert spec.token_types == [int(t) for t in expected_types]
    assert spec.token_types.count(TokenType.BYTE) == 256
    assert (spec.bos_id, spec.eos_id, spec.unk_id) == (sp.bos_id(), sp.eos_id(), sp.unk_id())
    assert spec.pad_id is None and sp.pad_id() == -1
    assert spec.add_space_prefix is True

    back = read_vocab(GGUFFile(write_gguf(tmp_path / "v.gguf", spec)))
    assert back == spec


def test_spm_add_dummy_prefix_off(tmp_path):
    spec = load_vocab(train_spm(tmp_path / "nodummy", add_dummy_prefix=False))
    assert spec.add_space_prefix is False
    back = read_vocab(GGUFFile(write_gguf(tmp_path / "v.gguf", spec)))
    assert back.add_space_prefix is False


def test_spm_ids_match_sentencepiece(spm_model, tmp_path):
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    tok = Tokenizer.from_gguf(GGUFFile(write_gguf(tmp_path / "v.gguf", load_vocab(spm_model))))
    # llama.cpp (and so wgllm) puts a space before the text that follows a user-defined token,
    # sentencepiece does not: texts with one are checked apart
    texts = [t for t in TEXTS if "<custom>" not in t] + corpus(40, seed=1)
    for text in texts:
        assert tok.encode(text, add_special=False, parse_special=False) == sp.encode(text), text
    custom = sp.piece_to_id("<custom>")
    ids = tok.encode("a <custom> symbol", add_special=False, parse_special=False)
    assert ids.count(custom) == 1 and sp.encode("a <custom> symbol").count(custom) == 1
    assert ids[: ids.index(custom)] == sp.encode("a ")
    # byte fallback really happens (characters the 360-piece model has never seen)
    assert any(sp.is_byte(i) for i in sp.encode("中文字符"))


def test_spm_folder_with_configs(spm_model, tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "tokenizer.model").write_bytes(spm_model.read_bytes())
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    n = sp.get_piece_size()
    template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<s>", "eos_token": {"content": "<ctrl>"}, "pad_token": "<unk>", "add_bos_token": True,
        "add_eos_token": False, "chat_template": template,
        "added_tokens_decoder": {str(n): {"content": "<|turn|>", "special": True},
                                 str(n + 1): {"content": "\u2581hi", "special": False}},
    }))
    spec = load_vocab(folder, vocab_size=n + 4)
    assert len(spec.tokens) == n + 4
    assert spec.tokens[:n] == [sp.id_to_piece(i) for i in range(n)]
    assert spec.tokens[n:] == ["<|turn|>", " hi", f"[PAD{n + 2}]", f"[PAD{n + 3}]"]
    assert spec.token_types[n:] == [TokenType.CONTROL, TokenType.USER_DEFINED, TokenType.UNUSED, TokenType.UNUSED]
    assert spec.bos_id == sp.piece_to_id("<s>") and spec.eos_id == sp.piece_to_id("<ctrl>")
    assert spec.pad_id == sp.piece_to_id("<unk>")
    assert (spec.add_bos, spec.add_eos, spec.chat_template) == (True, False, template)

    # the file itself names the same folder's configs; chat_template.jinja stands in for the key
    config = json.loads((folder / "tokenizer_config.json").read_text())
    del config["chat_template"]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "chat_template.jinja").write_text(template + "!")
    assert load_vocab(folder / "tokenizer.model", vocab_size=n + 4).chat_template == template + "!"


# -- byte-level BPE -----------------------------------------------------------------------------
HF_LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                   r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# GPT-4o's (o200k) as Phi-4-mini's tokenizer.json has it
HF_GPT4O_REGEX = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
                  r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
                  r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# pre-tokenizer structure as in GPT-2's, SmolLM's, Llama-3's, SmolLM3's and Phi-4-mini's tokenizer.json,
# and llama.cpp's name for it
def _split_then_bytes(regex: str):
    return lambda: pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(regex), behavior="isolated"),
                                            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])


PRE_TOKENIZERS = {
    "gpt-2": lambda: pre_tokenizers.ByteLevel(add_prefix_space=False),
    "smollm": lambda: pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                pre_tokenizers.ByteLevel(add_prefix_space=False)]),
    "llama-bpe": _split_then_bytes(HF_LLAMA3_REGEX),  # with the BPE model's ignore_merges
    "smaug-bpe": _split_then_bytes(HF_LLAMA3_REGEX),
    "gpt-4o": _split_then_bytes(HF_GPT4O_REGEX),
}


def train_bpe(folder: Path, pre: str, vocab_size: int = 420) -> HFTokenizer:
    folder.mkdir(parents=True, exist_ok=True)
    tok = HFTokenizer(models.BPE(ignore_merges=pre == "llama-bpe"))
    tok.pre_tokenizer = PRE_TOKENIZERS[pre]()
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer)
    tok.add_tokens(["<custom>"])
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "unk_token": None, "add_bos_token": False,
        "chat_template": "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}",
    }))
    return tok


@pytest.mark.parametrize("pre", sorted(PRE_TOKENIZERS))
def test_bpe_matches_tokenizers(pre, tmp_path):
    folder = tmp_path / "bpe"
    hf = train_bpe(folder, pre)
    n = hf.get_vocab_size()
    spec = load_vocab(folder, architecture="llama", vocab_size=n + 3)
    assert spec.model == "gpt2" and spec.pre == pre and spec.scores is None
    vocab = hf.get_vocab()
    assert spec.tokens[:n] == sorted(vocab, key=vocab.__getitem__)
    assert spec.tokens[n:] == [f"[PAD{i}]" for i in range(n, n + 3)]
    special_ids = {hf.token_to_id(t) for t in SPECIALS}
    custom = hf.token_to_id("<custom>")
    for i, t in enumerate(spec.token_types):
        expected = (TokenType.CONTROL if i in special_ids else TokenType.USER_DEFINED if i == custom
                    else TokenType.UNUSED if i >= n else TokenType.NORMAL)
        assert t == expected, (i, spec.tokens[i])
    assert (spec.bos_id, spec.eos_id) == (hf.token_to_id("<|im_start|>"), hf.token_to_id("<|im_end|>"))
    assert spec.add_bos is False and spec.chat_template.startswith("{% for m in messages %}")

    path = write_gguf(tmp_path / "v.gguf", spec)
    assert read_vocab(GGUFFile(path)) == spec
    tok = Tokenizer.from_gguf(GGUFFile(path))
    for text in TEXTS + corpus(40, seed=2):
        ids = hf.encode(text, add_special_tokens=False).ids
        assert tok.encode(text, add_special=False, parse_special=False) == ids, text
        assert tok.decode(ids) == hf.decode(ids, skip_special_tokens=False) == text
    chat = "<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n"
    assert tok.encode(chat, parse_special=True) == hf.encode(chat, add_special_tokens=False).ids


def test_bpe_merges_in_both_forms(tmp_path):
    folder = tmp_path / "bpe"
    train_bpe(folder, "gpt-2")
    data = json.loads((folder / "tokenizer.json").read_text())
    pairs = data["model"]["merges"]
    assert isinstance(pairs[0], list)  # tokenizers writes the pair form
    from_pairs = load_vocab(folder).merges
    assert load_vocab(folder / "tokenizer.json") == load_vocab(folder)  # the file itself, its folder's configs beside it
    assert from_pairs == [" ".join(p) for p in pairs]
    data["model"]["merges"] = [" ".join(p) for p in pairs]
    (folder / "tokenizer.json").write_text(json.dumps(data))
    assert load_vocab(folder).merges == from_pairs
    # a space inside a pair is written as U+0120, as gguf-py does
    data["model"]["merges"] = [["a b", "c"]] + pairs
    (folder / "tokenizer.json").write_text(json.dumps(data))
    assert load_vocab(folder).merges[0] == "a\u0120b c"


# -- errors -------------------------------------------------------------------------------------
def test_unigram_and_wordpiece_are_refused(tmp_path):
    for kind, model in (("Unigram", {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0.0], ["a", -1.0]]}),
                        ("WordPiece", {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {"[UNK]": 0, "a": 1}})):
        folder = tmp_path / kind
        folder.mkdir()
        (folder / "tokenizer.json").write_text(json.dumps({"model": model, "added_tokens": []}))
        with pytest.raises(ModelFormatError) as e:
            load_vocab(folder)
        assert str(folder / "tokenizer.json") in str(e.value) and kind in str(e.value)


def test_vocabulary_larger_than_the_model(spm_model, tmp_path):
    with pytest.raises(ModelFormatError) as e:
        load_vocab(spm_model, vocab_size=300)
    assert str(spm_model) in str(e.value) and "vocab_size of 300" in str(e.value)
    folder = tmp_path / "bpe"
    train_bpe(folder, "gpt-2")
    with pytest.raises(ModelFormatError) as e:
        load_vocab(folder, vocab_size=100)
    assert str(folder / "tokenizer.json") in str(e.value) and "vocab_size of 100" in str(e.value)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ModelFormatError, match="no such tokenizer file or folder"):
        load_vocab(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFormatError) as e:
        load_vocab(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(e.value) and "tokenizer.model" in str(e.value) and "tokenizer.json" in str(e.value)
    bad = tmp_path / "tokenizer.model"
    bad.write_bytes(b"\x00\x01 not a protobuf at all" * 10)
    with pytest.raises(ModelFormatError) as e:
        load_vocab(bad)
    assert str(bad) in str(e.value) and "SentencePiece" in str(e.value)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "tokenizer.json").write_text("{ not json")
    with pytest.raises(ModelFormatError, match="not a readable JSON file"):
        load_vocab(tmp_path / "broken")


def test_config_naming_an_unknown_token(tmp_path):
    folder = tmp_path / "bpe"
    train_bpe(folder, "gpt-2")
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|no such token|>"}))
    with pytest.raises(ModelFormatError) as e:
        load_vocab(folder)
    assert str(folder / "tokenizer_config.json") in str(e.value) and "<|no such token|>" in str(e.value)


def test_unknown_pre_tokenizer(tmp_path):
    folder = tmp_path / "bpe"
    train_bpe(folder, "gpt-2")
    data = json.loads((folder / "tokenizer.json").read_text())
    data["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [{"type": "Whitespace"}, data["pre_tokenizer"]]}
    (folder / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(ModelFormatError) as e:
        load_vocab(folder)
    assert "unknown BPE pre-tokenizer" in str(e.value) and "Whitespace" in str(e.value)
    data["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581"}
    (folder / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(ModelFormatError, match="SentencePiece-style BPE"):
        load_vocab(folder)


# -- a real model -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smollm2_gguf(smollm2_path) -> Path:
    """SmolLM2-135M-Instruct, fetched and cached by tests/py/assets.py."""
    return smollm2_path


def test_read_vocab_smollm2(smollm2_gguf, tmp_path):
    spec = read_vocab(GGUFFile(smollm2_gguf))
    reader = GGUFReader(smollm2_gguf)  # llama.cpp's own reader as the oracle

    def field(key):
        return reader.fields[key].contents()

    assert spec.model == field("tokenizer.ggml.model") == "gpt2"
    assert spec.pre == field("tokenizer.ggml.pre")
    assert spec.tokens == field("tokenizer.ggml.tokens")
    assert spec.merges == field("tokenizer.ggml.merges")
    assert spec.token_types == field("tokenizer.ggml.token_type")
    assert spec.chat_template == field("tokenizer.chat_template")
    assert (spec.bos_id, spec.eos_id, spec.unk_id, spec.pad_id) == tuple(
        field(f"tokenizer.ggml.{k}_token_id") for k in ("bos", "eos", "unknown", "padding"))
    assert len(spec.tokens) == reader.fields["llama.vocab_size"].contents()
    # and it writes back to the same values
    written = GGUFFile(write_gguf(tmp_path / "v.gguf", spec))
    assert read_vocab(written) == spec
    original = GGUFFile(smollm2_gguf).metadata
    for key in ("tokenizer.ggml.token_type", "tokenizer.ggml.tokens", "tokenizer.ggml.merges"):
        assert np.array_equal(written.metadata[key], original[key]), key
    assert written.metadata["tokenizer.ggml.token_type"].dtype == original["tokenizer.ggml.token_type"].dtype == np.int32
