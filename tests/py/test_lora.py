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
LORA_ARCHS = ("gemma", "phi2", "llama")
TARGETS = {"gemma": ["q_proj", "k_proj", "v_proj", "o_proj"], "llama": ["q_proj", "k_proj", "v_proj", "o_proj"], "phi2": ["q_proj", "k_proj", "v_proj", "dense"]}
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
    engine = GpuEngine(model, max_tokens=len(ids), all_logits=True, lora_ranks=[4])
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
    engine = GpuEngine(model, max_tokens=len(ids), all_logits=True, lora_ranks=[2, 4])
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
        other = GpuEngine(model, max_tokens=len(ids), all_logits=True, lora_ranks=[2, 4])
        fresh[seed] = other.forward_logits(ids, 0, None if seed is None else other.load_lora(load_lora(adapters[seed][0])))
        other.close()
    for seed, got in runs:
        np.testing.assert_array_equal(got, fresh[seed])
    assert rel(runs[0][1], runs[1][1]) > 1e-2 and rel(runs[0][1], runs[2][1]) > 1e-2  # three different answers
    assert rel(runs[1][1], adapters[1][1]) <= F32_BOUND and rel(runs[2][1], reference.forward(model, ids)) < MODEL_LOGITS_REL
