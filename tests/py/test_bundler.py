"""wgllm.bundler: MediaPipe's bundle options applied to a GGUF copy.

The copies are checked with llama.cpp's own GGUF reader (gguf.GGUFReader) and the chat templates
rendered with jinja2, the way Hugging Face's apply_chat_template renders them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import jinja2
import numpy as np
import pytest
import sentencepiece as spm
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter, Keys, quants
from tokenizers import decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from wgllm.bundler import BundleConfig, create_bundle
from wgllm.errors import ModelFormatError
from wgllm.gguf_io import GGUFFile
from wgllm.tokenizer import Tokenizer
from wgllm.vocab import load_vocab, read_vocab, write_vocab

N_VOCAB, DIM = 300, 64
PREFIXES = dict(prompt_prefix_user="<start_of_turn>user\n", prompt_suffix_user="<end_of_turn>\n",
                prompt_prefix_model="<start_of_turn>model\n", prompt_suffix_model="<end_of_turn>\n")


def corpus(n: int = 400, seed: int = 0) -> list[str]:
    words = "model user turn hello world bundle token prompt prefix suffix über café 42 7 ! ? , .".split()
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) for _ in range(n)]


def render(template: str, messages: list[dict], add_generation_prompt: bool = True) -> str:
    def raise_exception(message):
        raise jinja2.TemplateError(message)

    env = jinja2.Environment()
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt)


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("spm")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()), model_prefix=str(folder / "tokenizer"), vocab_size=N_VOCAB - 4,
        model_type="bpe", byte_fallback=True, character_coverage=1.0, normalization_rule_name="identity",
        remove_extra_whitespaces=False, control_symbols=["<start_of_turn>", "<end_of_turn>"], minloglevel=2)
    return folder / "tokenizer.model"


@pytest.fixture(scope="module")
def model_gguf(spm_model, tmp_path_factory) -> Path:
    """A tiny llama GGUF: a padded SentencePiece vocabulary and tensors of four types."""
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    rng = np.random.default_rng(0)
    writer = GGUFWriter(path, "llama")
    writer.add_block_count(1)
    writer.add_embedding_length(DIM)
    writer.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    writer.add_uint64("test.some_uint64", 7)  # types other than the usual must survive the copy
    writer.add_array("test.int16s", [1, -2, 3])
    writer.add_key_value("test.int16s_typed", [1, -2, 3], GGUFValueType.ARRAY, sub_type=GGUFValueType.INT16)
    write_vocab(writer, load_vocab(spm_model, architecture="llama", vocab_size=N_VOCAB))
    writer.add_tensor("token_embd.weight", rng.standard_normal((N_VOCAB, DIM)).astype(np.float16))
    q8 = quants.quantize(rng.standard_normal((DIM, DIM)).astype(np.float32), GGMLQuantizationType.Q8_0)
    writer.add_tensor("blk.0.attn_q.weight", q8, raw_dtype=GGMLQuantizationType.Q8_0)
    q4 = quants.quantize(rng.standard_normal((DIM, DIM)).astype(np.float32), GGMLQuantizationType.Q4_0)
    writer.add_tensor("blk.0.attn_k.weight", q4, raw_dtype=GGMLQuantizationType.Q4_0)
    writer.add_tensor("output_norm.weight", (rng.standard_normal(DIM) + 1).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def fields(path: Path) -> dict:
    """key -> (value types, contents), by llama.cpp's reader."""
    return {k: (f.types, f.contents()) for k, f in GGUFReader(path).fields.items()}


def assert_same_tensors(a: Path, b: Path) -> None:
    ra, rb = GGUFReader(a), GGUFReader(b)
    assert [t.name for t in ra.tensors] == [t.name for t in rb.tensors]
    for ta, tb in zip(ra.tensors, rb.tensors):
        assert (ta.tensor_type, list(ta.shape), ta.n_bytes) == (tb.tensor_type, list(tb.shape), tb.n_bytes), ta.name
        assert ta.data.tobytes() == tb.data.tobytes(), ta.name


def test_bundle_sets_tokens_and_template(model_gguf, spm_model, tmp_path):
    out = tmp_path / "bundled.gguf"
    config = BundleConfig(model=model_gguf, start_token="<s>", stop_tokens=["</s>", "<end_of_turn>"],
                          output_filename=out, **PREFIXES)
    assert create_bundle(config) == out
    assert_same_tensors(model_gguf, out)

    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    before, after = fields(model_gguf), fields(out)
    K = Keys.Tokenizer
    assert after[K.BOS_ID] == ([GGUFValueType.UINT32], sp.piece_to_id("<s>"))
    assert after[K.EOS_ID] == ([GGUFValueType.UINT32], sp.piece_to_id("</s>"))
    assert after[K.EOT_ID] == ([GGUFValueType.UINT32], sp.piece_to_id("<end_of_turn>"))
    assert K.EOM_ID not in after
    assert after[K.ADD_BOS][1] is True
    changed = {K.BOS_ID, K.EOS_ID, K.EOT_ID, K.ADD_BOS, K.CHAT_TEMPLATE, "GGUF.kv_count"}
    for key in before.keys() - changed:  # everything else is the same, types included
        assert after[key][0] == before[key][0], key
        assert np.array_equal(np.asarray(after[key][1], dtype=object), np.asarray(before[key][1], dtype=object)), key
    assert set(after) - set(before) <= changed

    template = after[K.CHAT_TEMPLATE][1]
    user = {"role": "user", "content": "Why is the sky blue?"}
    assert render(template, [user]) == (PREFIXES["prompt_prefix_user"] + user["content"] + PREFIXES["prompt_suffix_user"]
                                        + PREFIXES["prompt_prefix_model"])
    turns = [user, {"role": "assistant", "content": "Rayleigh."}, {"role": "user", "content": "Thanks"}]
    assert render(template, turns, add_generation_prompt=False) == (
        "<start_of_turn>user\nWhy is the sky blue?<end_of_turn>\n<start_of_turn>model\nRayleigh.<end_of_turn>\n"
        "<start_of_turn>user\nThanks<end_of_turn>\n")
    with pytest.raises(jinja2.TemplateError, match="unknown role tool"):
        render(template, [{"role": "tool", "content": "x"}])

    # the bundle's tokenizer adds the start token and ends generation at both stop tokens
    tok = Tokenizer.from_gguf(GGUFFile(out))
    assert tok.encode("hello world", add_special=True)[0] == sp.piece_to_id("<s>")
    assert {sp.piece_to_id("</s>"), sp.piece_to_id("<end_of_turn>")} <= tok.eog_ids


def test_system_prompt_and_mediapipe_names(model_gguf, tmp_path):
    out = tmp_path / "b.gguf"
    create_bundle(BundleConfig(tflite_model=str(model_gguf), tokenizer_model=None, start_token="<s>",
                               stop_tokens=["</s>"], output_filename=str(out), system_prompt="Be brief.\n", **PREFIXES))
    template = read_vocab(GGUFFile(out)).chat_template
    assert render(template, [{"role": "user", "content": "Hi"}]) == (
        "Be brief.\n<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n")
    # quotes, backslashes and braces in the prompt text stay literal
    tricky = dict(PREFIXES, prompt_prefix_user="{{ '\"\\ }}\t")
    create_bundle(BundleConfig(model=model_gguf, start_token="<s>", stop_tokens=["</s>"], output_filename=out, **tricky))
    template = read_vocab(GGUFFile(out)).chat_template
    assert render(template, [{"role": "user", "content": "x"}], False) == "{{ '\"\\ }}\tx<end_of_turn>\n"


def test_bundle_replaces_tokenizer(model_gguf, tmp_path):
    folder = tmp_path / "bpe"
    folder.mkdir()
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.train_from_iterator(corpus(), trainers.BpeTrainer(
        vocab_size=280, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": "old template"}))

    out = tmp_path / "b.gguf"
    create_bundle(BundleConfig(model=model_gguf, tokenizer_model=folder, start_token="<|im_start|>",
                               stop_tokens=["<|im_end|>", "<|endoftext|>"], output_filename=out,
                               enable_bytes_to_unicode_mapping=True,
                               prompt_prefix_user="<|im_start|>user\n", prompt_suffix_user="<|im_end|>\n",
                               prompt_prefix_model="<|im_start|>assistant\n"))
    assert_same_tensors(model_gguf, out)
    after = fields(out)
    K = Keys.Tokenizer
    assert after[K.MODEL][1] == "gpt2" and after[K.PRE][1] == "gpt-2"
    assert K.SCORES not in after  # nothing of the SentencePiece vocabulary is left
    assert len(after[K.LIST][1]) == N_VOCAB  # padded to the embedding rows
    assert after[K.BOS_ID][1] == hf.token_to_id("<|im_start|>")
    assert (after[K.EOS_ID][1], after[K.EOT_ID][1]) == (hf.token_to_id("<|im_end|>"), hf.token_to_id("<|endoftext|>"))
    assert render(after[K.CHAT_TEMPLATE][1], [{"role": "user", "content": "hi"}]) == (
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    tok = Tokenizer.from_gguf(GGUFFile(out))
    text = "hello bundle world 42"
    assert tok.encode(text) == hf.encode(text, add_special_tokens=False).ids


def test_failures_leave_no_file(model_gguf, tmp_path):
    out = tmp_path / "never.gguf"
    with pytest.raises(ModelFormatError) as e:
        create_bundle(BundleConfig(model=model_gguf, start_token="<bos>", stop_tokens=["</s>"], output_filename=out))
    assert "start_token '<bos>'" in str(e.value) and str(model_gguf) in str(e.value)
    with pytest.raises(ModelFormatError) as e:
        create_bundle(BundleConfig(model=model_gguf, start_token="<s>", stop_tokens=["</s>", "<eot>"], output_filename=out))
    assert "stop token '<eot>'" in str(e.value)
    with pytest.raises(ValueError, match="SentencePiece"):
        create_bundle(BundleConfig(model=model_gguf, start_token="<s>", stop_tokens=["</s>"], output_filename=out,
                                   enable_bytes_to_unicode_mapping=True))
    with pytest.raises(ModelFormatError, match="no such model file"):
        create_bundle(BundleConfig(model=tmp_path / "missing.gguf", start_token="<s>", stop_tokens=["</s>"],
                                   output_filename=out))
    assert list(tmp_path.iterdir()) == []  # neither the output nor a temporary file


def test_config_checks():
    base = dict(model="m.gguf", start_token="<s>", stop_tokens=["</s>"], output_filename="o.gguf")
    for bad, message in ((dict(stop_tokens="</s>"), "list of strings"), (dict(stop_tokens=[]), "non-empty"),
                         (dict(stop_tokens=["a", "b", "c", "d"]), "at most 3"), (dict(start_token=""), "start_token"),
                         (dict(model=None), "model"), (dict(output_filename=""), "output_filename"),
                         (dict(system_prompt="s", prompt_prefix_system="p"), "mutually exclusive"),
                         (dict(tflite_model="other.gguf"), "differ")):
        with pytest.raises(ValueError, match=message):
            BundleConfig(**{**base, **bad})


@pytest.fixture(scope="module")
def smollm2_gguf(smollm2_path) -> Path:
    """SmolLM2-135M-Instruct, fetched and cached by tests/py/assets.py."""
    return smollm2_path


def test_smollm2_chat_template(smollm2_gguf, tmp_path):
    """ChatML prefixes bundled onto SmolLM2 render conversations exactly as its own template does."""
    original = GGUFFile(smollm2_gguf)
    own_template = read_vocab(original).chat_template
    out = tmp_path / "smollm2.gguf"
    create_bundle(BundleConfig(
        model=smollm2_gguf, start_token="<|im_start|>", stop_tokens=["<|im_end|>", "<|endoftext|>"], output_filename=out,
        prompt_prefix_user="<|im_start|>user\n", prompt_suffix_user="<|im_end|>\n",
        prompt_prefix_model="<|im_start|>assistant\n", prompt_suffix_model="<|im_end|>\n",
        prompt_prefix_system="<|im_start|>system\n", prompt_suffix_system="<|im_end|>\n"))
    bundled = GGUFFile(out)
    vocab = read_vocab(bundled)
    conversation = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2+2?"},
                    {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?"}]
    for n in (2, 4):
        for gen in (True, False):
            assert render(vocab.chat_template, conversation[:n], gen) == render(own_template, conversation[:n], gen)
    # the tokens are SmolLM2's: the bundle only moved ids, not the vocabulary
    assert vocab.tokens == read_vocab(original).tokens
    assert (vocab.bos_id, vocab.eos_id, vocab.eot_id) == tuple(
        vocab.tokens.index(t) for t in ("<|im_start|>", "<|im_end|>", "<|endoftext|>"))
    assert bundled.tensors.keys() == original.tensors.keys()
    for name, t in original.tensors.items():
        assert np.array_equal(t.raw, bundled.tensors[name].raw), name
