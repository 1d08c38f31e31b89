"""LoRA: PEFT adapters converted to llama.cpp's GGUF adapter format, applied unmerged by the numpy
reference and by the WebGPU engine, checked against transformers + PEFT on tiny random models.

Oracle: transformers runs the tiny model with the PEFT adapter attached (PeftModel, not merged) in
float32; the reference and the GPU engine run the converted F32 base GGUF with the converted adapter.
Bounds: the same F32 bound as test_reference_oracle (1e-4 relative to max |logit|) for the
reference, MODEL_LOGITS_REL (gpu_tolerances) for the GPU engine against the reference.
"""

from __future__ import annotations

import json
import os
import struct

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")

import numpy as np
import pytest
import torch
from gguf import GGUFWriter
from gpu_tolerances import ATOL_FLOOR, MODEL_LOGITS_REL, TOLERANCES
from tiny_models import convert_tiny, tiny_model

from wgllm import reference
from wgllm.convert import ConversionConfig, convert_checkpoint
from wgllm.errors import ConversionError, ModelFormatError
from wgllm.gguf_io import GGUFFile
from wgllm.lora import load_lora
from wgllm.model import load_model

F32_BOUND = 1e-4
LORA_ARCHS = ("gemma", "phi2", "llama", "gemma3", "qwen2", "qwen3", "phi3", "smollm3")
TARGETS = {"gemma": ["q_proj", "k_proj", "v_proj", "o_proj"], "gemma3": ["q_proj", "k_proj", "v_proj", "o_proj"], "llama": ["q_proj", "k_proj", "v_proj", "o_proj"], "phi2": ["q_proj", "k_proj", "v_proj", "dense"], "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"], "qwen3": ["q_proj", "k_proj", "v_proj", "o_proj"], "phi3": ["qkv_proj", "o_proj"], "smollm3": ["q_proj", "k_proj", "v_proj", "o_proj"]}
NAN_BITS = 0x7FC00001


def make_adapter(arch: str, folder, *, r: int = 4, alpha: float = 8.0, seed: int = 0, targets=None):
    """A PEFT adapter with random non-zero A and B on the tiny `arch` model, saved with save_pretrained;
    returns (PeftModel, path of adapter_model.safetensors)."""
    from peft import LoraConfig, get_peft_model

    base = tiny_model(arch).model
    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=targets or TARGETS[arch], init_lora_weights=False, lora_dropout=0.0)
    peft_model = get_peft_model(base, config, adapter_name=f"a{seed}")
    with torch.no_grad():  # B ~ 1/sqrt(r) keeps the update the size of the base projection's output
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape) / p.shape[1] ** 0.5)
    peft_model.eval()
    peft_model.save_pretrained(folder)
    path = folder / f"a{seed}" / "adapter_model.safetensors"
    if not path.is_file():
        path = folder / "adapter_model.safetensors"
    return peft_model, path


def peft_logits(peft_model, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        out = peft_model(torch.tensor([ids])).logits[0].numpy().astype(np.float32)
    return out


def unload(peft_model) -> None:
    """Take the LoRA layers out again so tiny_model(arch).model stays the plain base for other tests."""
    peft_model.unload()


def token_ids(n_vocab: int, n: int = 20, seed: int = 7) -> list[int]:
    return [int(i) for i in np.random.default_rng(seed).integers(3, n_vocab, n)]


def rel(got: np.ndarray, want: np.ndarray) -> float:
    assert np.all(np.isfinite(got))
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.fixture(scope="module")
def lora_case(tmp_path_factory):
    """(base GGUF path, {seed: (adapter GGUF path, PEFT logits, peft folder)}) per arch, built once."""
    made = {}

    def get(arch: str):
        if arch not in made:
            root = tmp_path_factory.mktemp(f"lora-{arch}")
            base = convert_tiny(arch, 32, root / "base.gguf")
            n_vocab = load_model(base).config.n_vocab
            ids = token_ids(n_vocab)
            adapters = {}
            for seed, r, alpha in ((0, 4, 8.0), (1, 2, 3.0)):
                peft_model, st = make_adapter(arch, root / f"peft{seed}", r=r, alpha=alpha, seed=seed)
                want = peft_logits(peft_model, ids)
                unload(peft_model)
                out = root / f"lora{seed}.gguf"
                convert_checkpoint(
                    ConversionConfig(str(tiny_model(arch).folder), "safetensors", lora_ckpt=str(st), lora_rank=r, lora_output_file=str(out))
                )
                adapters[seed] = (out, want, st)
            made[arch] = (base, ids, adapters)
        return made[arch]

    return get


# -- the converter -------------------------------------------------------------------------------


def test_adapter_file_follows_llama_cpp(lora_case):
    base, _, adapters = lora_case("llama")
    path, _, st = adapters[0]
    g = GGUFFile(path)
    assert g.get("general.type") == "adapter" and g.get("adapter.type") == "lora"
    assert g.get("general.architecture") == "llama"
    assert g.get("adapter.lora.alpha") == pytest.approx(8.0)
    assert g.get("general.base_model.count") == 1
    assert g.get("general.base_model.0.name") == tiny_model("llama").folder.name
    c = load_model(base).config
    q_dim, kv_dim = c.n_head * c.head_dim, c.kv_dim
    want = {}
    for i in range(c.n_layer):
        for proj, n_out, n_in in (("attn_q", q_dim, c.n_embd), ("attn_k", kv_dim, c.n_embd), ("attn_v", kv_dim, c.n_embd), ("attn_output", c.n_embd, q_dim)):
            want[f"blk.{i}.{proj}.weight.lora_a"] = (4, n_in)
            want[f"blk.{i}.{proj}.weight.lora_b"] = (n_out, 4)
    assert {n: t.shape for n, t in g.tensors.items()} == want
    # lora_b of Q takes the same row permutation as the base weight (HF halves -> llama.cpp pairs)
    from safetensors.numpy import load_file

    from wgllm.arch.base import permute_rope_rows

    peft = load_file(str(st))
    b_hf = next(v for k, v in peft.items() if k.endswith("layers.0.self_attn.q_proj.lora_B.weight"))
    np.testing.assert_array_equal(g.dequantize("blk.0.attn_q.weight.lora_b"), permute_rope_rows(b_hf, c.n_head))
    assert not np.array_equal(permute_rope_rows(b_hf, c.n_head), b_hf)


# -- the reference -------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", LORA_ARCHS)
def test_reference_with_adapter_matches_peft(arch, lora_case):
    base, ids, adapters = lora_case(arch)
    model = load_model(base)
    plain = reference.forward(model, ids)
    for seed in adapters:
        path, want, _ = adapters[seed]
        got = reference.forward(model, ids, lora=load_lora(path))
        assert rel(got, want) <= F32_BOUND
        assert rel(plain, want) > 100 * F32_BOUND  # the adapter really moves the logits


# -- the shaders against numpy -------------------------------------------------------------------


def _check(op: str, got: np.ndarray, want: np.ndarray) -> None:
    rtol, atol_rel = TOLERANCES[op]
    assert np.all(np.isfinite(got)), f"{op}: unwritten or non-finite outputs"
    np.testing.assert_allclose(got, want.astype(np.float32), rtol=rtol, atol=max(atol_rel * float(np.abs(want).max()), ATOL_FLOOR), err_msg=op)


@pytest.mark.parametrize("n,k,r,n_out", [(1, 7, 1, 5), (7, 130, 4, 127), (33, 4099, 16, 300)])
def test_lora_shaders_match_reference(n, k, r, n_out):
    from wgllm.gpu.runtime import get_context

    ctx = get_context()
    rng = np.random.default_rng(n * 31 + k)
    x = (rng.standard_normal((n, k)) * 3.0 - 1.0).astype(np.float32)
    a = (rng.standard_normal((r, k)) / np.sqrt(k)).astype(np.float32)
    b = (rng.standard_normal((n_out, r)) + 0.5).astype(np.float32)
    y0 = (rng.standard_normal((n, n_out)) * 2.0).astype(np.float32)
    scale = 1.75
    t_buf = ctx.buffer(np.full(n * r, NAN_BITS, np.uint32))  # poisoned: every t must be written
    y_buf = ctx.buffer(y0)
    ctx.run("lora_shrink.wgsl", [ctx.buffer(struct.pack("<3I", n, k, r), uniform=True), ctx.buffer(x), ctx.buffer(a), t_buf], (r, n, 1))
    t = ctx.read(t_buf, np.float32, (n, r))
    t_want = reference.lora_shrink(x.astype(np.float64), a.astype(np.float64))
    _check("matmul", t, t_want)
    ctx.run("lora_expand.wgsl", [ctx.buffer(struct.pack("<3If", n, n_out, r, scale), uniform=True), t_buf, ctx.buffer(b), y_buf], (-(-n_out // 64), n, 1))
    y = ctx.read(y_buf, np.float32, (n, n_out))
    _check("matmul", y, reference.lora_expand(y0.astype(np.float64), t.astype(np.float64), b.astype(np.float64), scale))
    assert not np.allclose(y, y0)  # the update is not negligible: the check above has something to see


# -- the GPU engine ------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", LORA_ARCHS)
def test_gpu_engine_with_adapter_matches_reference_and_peft(arch, lora_case):
    from wgllm.gpu.engine import GpuEngine

    base, ids, adapters = lora_case(arch)
    model = load_model(base)
    engine = GpuEngine(model, max_tokens=len(ids), all_logits=True, lora_ranks=[4], force_f32=True)  # the f32 path: as the f32 reference
    path, want, _ = adapters[0]
    adapter = load_lora(path)
    lora = engine.load_lora(adapter)
    ref = reference.forward(model, ids, lora=adapter)
    got = engine.forward_logits(ids[:13], 0, lora)  # prefill
    assert rel(got, ref[:13]) < MODEL_LOGITS_REL
    for j in range(13, len(ids)):  # decode against the KV cache, adapter on every step
        assert rel(engine.forward_logits([ids[j]], j, lora)[0], ref[j]) < MODEL_LOGITS_REL
    assert rel(engine.forward_logits(ids, 0, lora), want) <= F32_BOUND  # and so PEFT's, within the oracle bound


def test_gpu_adapters_switch_per_call_without_rebuild(lora_case):
    """A -> B -> none -> A on one engine: each call gives that adapter's own logits, as a fresh
    engine does; no pipeline or bind group is created after the adapters are loaded."""
    from wgllm.gpu.engine import GpuEngine

    base, ids, adapters = lora_case("gemma")
    model = load_model(base)
    engine = GpuEngine(model, max_tokens=len(ids), all_logits=True, lora_ranks=[2, 4], force_f32=True)
    loaded = {seed: engine.load_lora(load_lora(adapters[seed][0])) for seed in adapters}
    ctx = engine.ctx
    engine.forward_logits(ids, 0, loaded[0])  # every pipeline and per-size uniform exists after one call of each kind
    engine.forward_logits(ids, 0, loaded[1])
    engine.forward_logits(ids, 0)
    pipelines = len(ctx._pipelines)
    create_bind_group = ctx.device.create_bind_group
    made = []
    ctx.device.create_bind_group = lambda **kw: made.append(kw) or create_bind_group(**kw)
    try:
        runs = [(seed, engine.forward_logits(ids, 0, None if seed is None else loaded[seed])) for seed in (0, 1, None, 0)]
    finally:
        ctx.device.create_bind_group = create_bind_group
    assert len(ctx._pipelines) == pipelines and not made
    fresh = {}
    for seed in (0, 1, None):
        other = GpuEngine(model, max_tokens=len(ids), all_logits=True, lora_ranks=[2, 4], force_f32=True)
        fresh[seed] = other.forward_logits(ids, 0, None if seed is None else other.load_lora(load_lora(adapters[seed][0])))
        other.close()
    for seed, got in runs:
        np.testing.assert_array_equal(got, fresh[seed])
    assert rel(runs[0][1], runs[1][1]) > 1e-2 and rel(runs[0][1], runs[2][1]) > 1e-2  # three different answers
    assert rel(runs[1][1], adapters[1][1]) <= F32_BOUND and rel(runs[2][1], reference.forward(model, ids)) < MODEL_LOGITS_REL


# -- errors --------------------------------------------------------------------------------------


def test_converter_errors(lora_case, tmp_path):
    base, _, adapters = lora_case("llama")
    _, _, st = adapters[0]
    folder = str(tiny_model("llama").folder)

    def convert(input_ckpt=folder, **kw):
        args = dict(lora_ckpt=str(st), lora_output_file=str(tmp_path / "lora.gguf"))
        args.update(kw)
        return convert_checkpoint(ConversionConfig(input_ckpt, "safetensors", **args))

    with pytest.raises(ConversionError, match=r"lora_rank = 3 does not match the adapter's rank r = 4 in .*adapter_config\.json"):
        convert(lora_rank=3, output_file=str(tmp_path / "base.gguf"))
    assert not (tmp_path / "base.gguf").exists()  # the adapter is checked before the base is written

    mlp_peft, mlp_st = make_adapter("llama", tmp_path / "mlp", r=2, targets=["q_proj", "gate_proj"], seed=5)
    unload(mlp_peft)
    with pytest.raises(ConversionError, match=r"LoRA target module model\.layers\.\d\.mlp\.gate_proj is not supported for llama; .*q_proj, k_proj, v_proj, o_proj"):
        convert(lora_ckpt=str(mlp_st))

    with pytest.raises(ConversionError, match=r"LoRA conversion is not supported for the falcon architecture; supported: gemma, gemma2, gemma3, llama, phi2"):
        convert(input_ckpt=str(tiny_model("falcon").folder))

    lonely = tmp_path / "lonely"
    lonely.mkdir()
    (lonely / "adapter_model.safetensors").write_bytes(st.read_bytes())
    with pytest.raises(ConversionError, match=r"missing adapter_config\.json"):
        convert(lora_ckpt=str(lonely / "adapter_model.safetensors"))

    with pytest.raises(ConversionError, match=r"lora_ckpt needs lora_output_file"):
        ConversionConfig(folder, "safetensors", output_file="m.gguf", lora_ckpt=str(st))
    with pytest.raises(ConversionError, match=r"lora_rank was given without lora_ckpt"):
        ConversionConfig(folder, "safetensors", output_file="m.gguf", lora_rank=4)
    assert not list(tmp_path.glob(".*.partial")) and not (tmp_path / "lora.gguf").exists()


def test_base_and_adapter_in_one_run(lora_case, tmp_path):
    base, _, adapters = lora_case("phi2")
    path, _, st = adapters[0]
    out = convert_checkpoint(
        ConversionConfig(str(tiny_model("phi2").folder), "safetensors", output_file=str(tmp_path / "base.gguf"), attention_quant_bits=32,
                         feedforward_quant_bits=32, embedding_quant_bits=32, lora_ckpt=str(st), lora_rank=4, lora_output_file=str(tmp_path / "lora.gguf"))
    )
    assert out == tmp_path / "base.gguf"
    assert out.read_bytes() == base.read_bytes()  # the same base file as a plain conversion
    assert (tmp_path / "lora.gguf").read_bytes() == path.read_bytes()  # and the same adapter as a LoRA-only run


def _synthetic_adapter(path, arch: str, tensors: dict[str, tuple[int, ...]], alpha: float = 4.0):
    """An adapter written directly with gguf's GGUFWriter (not wgllm's converter)."""
    w = GGUFWriter(str(path), arch)
    w.add_type("adapter")
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", alpha)
    rng = np.random.default_rng(0)
    for name, shape in tensors.items():
        w.add_tensor(name, rng.standard_normal(shape).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_runtime_errors(lora_case, tmp_path):
    from wgllm.inference import LlmInference

    base, ids, adapters = lora_case("llama")
    gemma_adapter = lora_case("gemma")[2][0][0]
    model = load_model(base)
    with pytest.raises(ModelFormatError, match=r"the LoRA adapter is for a gemma model \(tiny-gemma\), but .*base\.gguf is a llama model"):
        reference.forward(model, ids, lora=load_lora(gemma_adapter))
    narrow = _synthetic_adapter(tmp_path / "narrow.gguf", "llama", {"blk.0.attn_q.weight.lora_a": (4, 32), "blk.0.attn_q.weight.lora_b": (64, 4)})
    with pytest.raises(ModelFormatError, match=r"tensor blk\.0\.attn_q\.weight\.lora_a has shape \(4, 32\) and blk\.0\.attn_q\.weight\.lora_b \(64, 4\), but .*'s blk\.0\.attn_q\.weight has shape \(64, 64\)"):
        reference.forward(model, ids, lora=load_lora(narrow))
    deep = _synthetic_adapter(tmp_path / "deep.gguf", "llama", {"blk.5.attn_q.weight.lora_a": (4, 64), "blk.5.attn_q.weight.lora_b": (64, 4)})
    with pytest.raises(ModelFormatError, match=r"adapt blk\.5\.attn_q\.weight, which .* does not have \(a llama model with 2 layers, blk\.0 to blk\.1\)"):
        reference.forward(model, ids, lora=load_lora(deep))
    phi_base = lora_case("phi2")[0]
    gate = _synthetic_adapter(tmp_path / "gate.gguf", "phi2", {"blk.0.ffn_gate.weight.lora_a": (4, 64), "blk.0.ffn_gate.weight.lora_b": (128, 4)})
    with pytest.raises(ModelFormatError, match=r"adapt blk\.0\.ffn_gate\.weight, which .* does not have"):
        LlmInference.create_from_options(str(phi_base), backend="reference", lora_ranks=[4]).load_lora_model(str(gate))
    unpaired = _synthetic_adapter(tmp_path / "unpaired.gguf", "llama", {"blk.0.attn_q.weight.lora_a": (4, 64)})
    with pytest.raises(ModelFormatError, match=r"tensor blk\.0\.attn_q\.weight\.lora_b is missing"):
        load_lora(unpaired)
    with pytest.raises(ModelFormatError, match=r"not a LoRA adapter \(general\.type = None"):
        load_lora(base)

    rank4 = str(adapters[0][0])
    for backend in ("reference", "gpu"):
        with LlmInference.create_from_options(str(base), max_tokens=24, top_k=1, backend=backend, lora_ranks=[2]) as llm:
            with pytest.raises(ValueError, match=r"LoRA rank 4 was not declared when this LlmInference was created \(lora_ranks: 2\)"):
                llm.load_lora_model(rank4)
            other = LlmInference.create_from_options(str(base), max_tokens=24, top_k=1, backend=backend, lora_ranks=[4])
            foreign = other.load_lora_model(rank4)
            with pytest.raises(ValueError, match=r"^The LoRA model was not loaded by this LLM Inference task\.$"):
                llm.generate_response("hello", foreign)
            with pytest.raises(ValueError, match=r"^The LoRA model was not loaded by this LLM Inference task\.$"):
                llm.generate_responses("hello", foreign)
            other.close()
    with LlmInference.create_from_options(str(base), max_tokens=24, top_k=1, backend="reference") as llm:
        with pytest.raises(ValueError, match=r"LoRA rank 4 was not declared .*\(lora_ranks: none\)"):
            llm.load_lora_model(rank4)


def test_gpu_engine_refuses_foreign_handle_and_undeclared_rank(lora_case):
    from wgllm.gpu.engine import GpuEngine

    base, ids, adapters = lora_case("llama")
    model = load_model(base)
    a, b = GpuEngine(model, max_tokens=8, lora_ranks=[4]), GpuEngine(model, max_tokens=8, lora_ranks=[2])
    handle = a.load_lora(load_lora(adapters[0][0]))
    with pytest.raises(ValueError, match=r"^The LoRA model was not loaded by this LLM Inference task\.$"):
        b.forward_logits(ids[:4], 0, handle)
    with pytest.raises(ValueError, match=r"LoRA rank 4 was not declared when this model was created \(lora_ranks: 2\)"):
        b.load_lora(load_lora(adapters[0][0]))


# -- the public API and the command line ---------------------------------------------------------


@pytest.mark.parametrize("backend", ["reference", "gpu"])
def test_llm_inference_generates_with_each_adapter(backend, lora_case):
    from wgllm.generation import generate
    from wgllm.inference import LlmInference

    base, _, adapters = lora_case("phi2")  # its random logits give three different greedy answers
    model = load_model(base)
    want = {seed: generate(model, "the quick brown fox", max_tokens=20, top_k=1, lora=None if seed is None else load_lora(adapters[seed][0])) for seed in (0, 1, None)}
    assert len(set(want.values())) == 3  # three different answers: each adapter shows in the text
    # force_f32: the GPU's f32 path, as the f32 reference's text
    with LlmInference.create_from_options(str(base), max_tokens=20, top_k=1, backend=backend, lora_ranks=[4, 2], force_f32=True) as llm:
        loras = {seed: llm.load_lora_model(str(adapters[seed][0])) for seed in (0, 1)}
        for seed in (0, 1, None, 0):
            pieces = []
            text = llm.generate_response("the quick brown fox", loras.get(seed), lambda p, done: pieces.append(p))
            assert text == want[seed] == "".join(pieces)
        assert llm.generate_responses("the quick brown fox", loras[1]) == [want[1]]


def _wgllm(*args) -> "subprocess.CompletedProcess":
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "wgllm.cli", *map(str, args)], capture_output=True, text=True, timeout=300)
    return run


def test_cli_convert_then_logits_and_generate_with_lora(lora_case, tmp_path):
    base, ids, adapters = lora_case("phi2")
    _, want, st = adapters[0]
    out = tmp_path / "cli-lora.gguf"
    run = _wgllm("convert", "--input-ckpt", tiny_model("phi2").folder, "--lora-ckpt", st, "--lora-rank", 4, "--lora-output", out)
    assert run.returncode == 0, run.stderr
    assert f"wrote {out}" in run.stderr and out.read_bytes() == adapters[0][0].read_bytes()
    for backend in ("reference", "gpu"):
        npy = tmp_path / f"{backend}.npy"
        run = _wgllm("logits", "--model", base, "--ids", json.dumps(ids), "--lora", out, "--backend", backend, "--out", npy, "--force-f32")
        assert run.returncode == 0, run.stderr
        assert rel(np.load(npy), want) <= F32_BOUND
    from wgllm.generation import generate

    run = _wgllm("generate", "--model", base, "--prompt", "hello world", "--max-tokens", 16, "--top-k", 1, "--lora", out)
    assert run.returncode == 0, run.stderr
    assert run.stdout == generate(load_model(base), "hello world", max_tokens=16, top_k=1, lora=load_lora(out)) + "\n"
    run = _wgllm("logits", "--model", lora_case("llama")[0], "--ids", "[5, 6]", "--lora", out, "--out", tmp_path / "x.npy")
    assert run.returncode == 2 and run.stderr.startswith("wgllm: error: ") and "the LoRA adapter is for a phi2 model" in run.stderr
    run = _wgllm("convert", "--input-ckpt", tiny_model("phi2").folder, "--lora-ckpt", st, "--lora-rank", 8, "--lora-output", tmp_path / "bad.gguf")
    assert run.returncode == 2 and "lora_rank = 8 does not match the adapter's rank r = 4" in run.stderr
