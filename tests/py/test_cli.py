"""The `wgllm` command, run as a subprocess on real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from wgllm.gguf_io import GGUFFile
from wgllm.tokenizer import Tokenizer

PROMPT = "The capital of France is"
TEXTS = ["Hello world", " leading space", "<|im_start|>user\nHi<|im_end|>", "wörld 123 🙂", ""]
SEPARATOR = "\n__ggml_vocab_test__\n"


def wgllm(*args: str | Path, ok: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "wgllm.cli", *map(str, args)], capture_output=True, text=True, encoding="utf-8", env=env, timeout=300
    )
    if ok:
        assert run.returncode == 0, run.stderr
    return run


def assert_error(run: subprocess.CompletedProcess, *fragments: str) -> None:
    assert run.returncode == 2, (run.returncode, run.stderr)
    assert run.stderr.startswith("wgllm: error: ") and "Traceback" not in run.stderr, run.stderr
    for fragment in fragments:
        assert fragment in run.stderr, run.stderr


@pytest.fixture(scope="module")
def smollm2_tokenizer(smollm2_path) -> Tokenizer:
    return Tokenizer.from_gguf(GGUFFile(smollm2_path))


def test_inspect_smollm2(smollm2_path):
    out = wgllm("inspect", smollm2_path).stdout
    g = GGUFFile(smollm2_path)
    n_params = sum(t.n_elements for t in g.tensors.values())
    n_bytes = sum(t.n_bytes for t in g.tensors.values())
    assert "architecture:   llama" in out
    assert f"parameters:     {n_params:,}" in out and f"tensor data:    {n_bytes:,} bytes" in out
    assert n_params > 130_000_000  # SmolLM2-135M
    assert "block_count                              30" in out  # its config.json: num_hidden_layers 30
    assert "embedding_length                         576" in out  # hidden_size 576
    for name in {t.ggml_type.name for t in g.tensors.values()}:
        count = sum(t.ggml_type.name == name for t in g.tensors.values())
        assert any(line.split()[:2] == [name, str(count)] for line in out.splitlines()), name
    assert "model            gpt2" in out and "vocab size       49152" in out
    assert "eos id           2  '<|im_end|>'" in out
    assert "chat template (" in out and "<|im_start|>" in out


def test_tokenize_detokenize_round_trip(smollm2_path, smollm2_tokenizer):
    text = "Hello wörld, <|im_start|>user 🙂"
    plain = json.loads(wgllm("tokenize", "--model", smollm2_path, "--text", text).stdout)
    assert plain == smollm2_tokenizer.encode(text)
    special = json.loads(wgllm("tokenize", "--model", smollm2_path, "--text", text, "--parse-special").stdout)
    assert special == smollm2_tokenizer.encode(text, parse_special=True)
    assert 1 in special and 1 not in plain  # <|im_start|> is id 1, split out only with --parse-special
    for ids in (plain, special):
        assert wgllm("detokenize", "--model", smollm2_path, "--ids", json.dumps(ids)).stdout == text + "\n"


def test_tokenize_texts_json_add_special(llama_vocab_dir, tmp_path):
    model = llama_vocab_dir / "ggml-vocab-llama-spm.gguf"  # SentencePiece, adds BOS
    texts_file = tmp_path / "texts.json"
    texts_file.write_text(json.dumps(TEXTS), encoding="utf-8")
    got = json.loads(wgllm("tokenize", "--model", model, "--texts-json", texts_file, "--add-special").stdout)
    tok = Tokenizer.from_gguf(GGUFFile(model))
    assert got == [tok.encode(t, add_special=True) for t in TEXTS]
    assert all(ids[0] == 1 for ids in got)  # Llama's <s>
    assert got[0][1:] == tok.encode(TEXTS[0])


@pytest.mark.parametrize("vocab", ["llama-spm", "gpt-2"])
def test_tokenize_matches_llama_cpp_test_cases(vocab, llama_vocab_dir, tmp_path):
    """llama.cpp's own tokenizer wrote the .out files for the .inp texts (no BOS, no special parsing)."""
    model = llama_vocab_dir / f"ggml-vocab-{vocab}.gguf"
    raw = Path(f"{model}.inp").read_text(encoding="utf-8")
    texts = raw.split(SEPARATOR)
    if raw.endswith(SEPARATOR):
        texts.pop()
    expected = [[int(t) for t in line.split()] for line in Path(f"{model}.out").read_text(encoding="utf-8").split("\n")[: len(texts)]]
    texts_file = tmp_path / "inp.json"
    texts_file.write_text(json.dumps(texts), encoding="utf-8")
    assert json.loads(wgllm("tokenize", "--model", model, "--texts-json", texts_file).stdout) == expected


def test_errors_exit_2_with_a_message(smollm2_path, tmp_path):
    missing = tmp_path / "missing.gguf"
    assert_error(wgllm("inspect", missing, ok=False), str(missing), "no such model file")
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("these are notes, not a model\n")
    assert_error(wgllm("inspect", not_gguf, ok=False), str(not_gguf), "not a GGUF file")
    assert_error(wgllm("detokenize", "--model", smollm2_path, "--ids", "[1, 2", ok=False), "--ids", "not valid JSON")
    assert_error(wgllm("detokenize", "--model", smollm2_path, "--ids", '["a"]', ok=False), "--ids", "integer token ids")
    assert_error(wgllm("detokenize", "--model", smollm2_path, "--ids", "[1, 49152]", ok=False), "token id 49152", str(smollm2_path))
    assert_error(wgllm("tokenize", "--model", smollm2_path, "--texts-json", tmp_path / "none.json", ok=False), "none.json")
    bad_list = tmp_path / "bad.json"
    bad_list.write_text('["a", 1]')
    assert_error(wgllm("tokenize", "--model", smollm2_path, "--texts-json", bad_list, ok=False), str(bad_list), "list of strings")
    assert_error(wgllm("logits", "--model", smollm2_path, "--ids", "[1, 49152]", "--backend", "gpu", "--out", tmp_path / "x.npy", ok=False),
                 "49152")
    assert not (tmp_path / "x.npy").exists()
    assert_error(wgllm("convert", "--input-ckpt", tmp_path / "nothing", "--vocab-model-file", tmp_path, "--output", tmp_path / "o.gguf", ok=False),
                 "nothing", "--ckpt-format")
    assert_error(wgllm("convert", "--input-ckpt", tmp_path / "none.safetensors", "--vocab-model-file", tmp_path, "--output", tmp_path / "o.gguf", ok=False),
                 "none.safetensors")
    assert_error(wgllm("logits", "--model", smollm2_path, "--ids", "[1]", "--kernels", "gpu", "--out", tmp_path / "x.npy", ok=False),
                 "--kernels gpu", "--backend gpu")
    bad_family = wgllm("generate", "--model", smollm2_path, "--prompt", "Hi", "--backend", "gpu", "--kernels", "fast", ok=False)
    assert bad_family.returncode == 2 and "--kernels" in bad_family.stderr and "'fast'" in bad_family.stderr
    usage = wgllm("tokenize", "--model", smollm2_path, ok=False)  # neither --text nor --texts-json
    assert usage.returncode == 2 and "--text" in usage.stderr


def test_convert_matches_the_python_api(tmp_path):
    """The CLI's options reach ConversionConfig as given (the format is found from the file names)."""
    from tiny_models import tiny_model

    from wgllm.convert import ConversionConfig, convert_checkpoint

    tm = tiny_model("phi2")
    out = tmp_path / "cli.gguf"
    run = wgllm("convert", "--input-ckpt", tm.folder, "--vocab-model-file", tm.vocab_file, "--output", out,
                "--attention-quant-bits", "4", "--feedforward-quant-bits", "8", "--embedding-quant-bits", "16")
    assert str(out) in run.stderr
    api = convert_checkpoint(ConversionConfig(
        input_ckpt=str(tm.folder), ckpt_format="safetensors", vocab_model_file=str(tm.vocab_file),
        output_file=str(tmp_path / "api.gguf"), attention_quant_bits=4, feedforward_quant_bits=8, embedding_quant_bits=16,
    ))
    assert out.read_bytes() == api.read_bytes()
    types = {name: t.ggml_type.name for name, t in GGUFFile(out).tensors.items()}
    assert (types["blk.0.attn_q.weight"], types["blk.0.ffn_up.weight"], types["token_embd.weight"]) == ("Q4_0", "Q8_0", "F16")


@pytest.fixture(scope="module")
def smollm2_model(smollm2_path):
    from wgllm.model import load_model

    return load_model(smollm2_path)


def test_logits_reference(smollm2_path, smollm2_model, tmp_path):
    from wgllm import reference

    ids = smollm2_model.tokenizer.encode(PROMPT)
    out = tmp_path / "logits.npy"
    wgllm("logits", "--model", smollm2_path, "--ids", json.dumps(ids), "--backend", "reference", "--out", out)
    got = np.load(out)
    assert got.dtype == np.float32 and got.shape == (len(ids), 49152)
    np.testing.assert_array_equal(got, reference.forward(smollm2_model, ids))
    assert smollm2_model.tokenizer.decode([int(got[-1].argmax())]) == " Paris"
    assert [p.name for p in tmp_path.iterdir()] == ["logits.npy"]  # no temporary file left


@pytest.mark.parametrize("kernels", [None, "gpu"])
@pytest.mark.parametrize("force_f32", [False, True])
def test_logits_gpu_agree_with_reference(smollm2_path, smollm2_model, tmp_path, force_f32, kernels):
    """By default (lavapipe has shader-f16) the engine's KV cache is f16, as the reference's with
    KVCache(np.float16); --force-f32 keeps it f32, as the plain reference's. --kernels gpu runs the
    real-GPU kernel family on lavapipe (whose own is cpu)."""
    from gpu_tolerances import KV_F16_LOGITS_REL, MODEL_LOGITS_REL

    from wgllm import reference

    ids = smollm2_model.tokenizer.encode(PROMPT)
    out = tmp_path / "logits.npy"
    wgllm("logits", "--model", smollm2_path, "--ids", json.dumps(ids), "--backend", "gpu", "--out", out, *(["--force-f32"] if force_f32 else []),
           *(["--kernels", kernels] if kernels else []))
    got, want = np.load(out), reference.forward(smollm2_model, ids, cache=reference.KVCache(None if force_f32 else np.float16))
    assert got.shape == want.shape
    assert np.abs(got - want).max() / np.abs(want).max() < (MODEL_LOGITS_REL if force_f32 else KV_F16_LOGITS_REL)
    np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))


def test_generate_streams_the_reference_answer(smollm2_path, smollm2_model):
    from wgllm.generation import generate

    run = wgllm("generate", "--model", smollm2_path, "--prompt", PROMPT, "--top-k", "1", "--max-tokens", "9", "--backend", "reference")
    expected = generate(smollm2_model, PROMPT, max_tokens=9, top_k=1)
    assert run.stdout == expected + "\n"
    assert expected.startswith(" Paris")
    bad = wgllm("generate", "--model", smollm2_path, "--prompt", PROMPT, "--top-k", "0", ok=False)
    assert_error(bad, "top_k")
