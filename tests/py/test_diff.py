"""Named checkpoints (reference.forward(checkpoints=), GpuEngine.checkpoints) and `wgllm diff`.

Every architecture's tiny model, both kernel families: the GPU engine's intermediate tensors are the
reference's at every checkpoint, in the same order and under the same names -- so a test that fails
on the logits can say where (wgllm.diff.explain, used by test_gpu_engine). A broken weight is found
at the first checkpoint after its launch. The browser engine's checkpoints are compared with these
in tests/browser/trace_dawn.spec.ts (Node on Dawn)."""

from __future__ import annotations

import json
import os

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")

import numpy as np
import pytest
from gpu_tolerances import MODEL_LOGITS_REL
from tiny_models import PHI3_LONGROPE, convert_tiny

from wgllm import reference
from wgllm.cli import main
from wgllm.diff import compare, summary
from wgllm.gpu.engine import GpuEngine
from wgllm.model import load_model

ARCHS = ["llama", "gemma", "gemma2", "gemma3", "phi2", "falcon", "stablelm", "gpt2", "qwen2", "qwen3", "phi3", "smollm3"]
OVERRIDES = {"stablelm": {"intermediate_size": 96}, "phi3": PHI3_LONGROPE}


@pytest.fixture(scope="module")
def tiny_q8(tmp_path_factory):
    made: dict[str, str] = {}

    def get(arch: str) -> str:
        if arch not in made:
            made[arch] = str(convert_tiny(arch, 8, tmp_path_factory.mktemp("diff") / f"{arch}-8.gguf", **OVERRIDES.get(arch, {})))
        return made[arch]

    return get


def expected_names(model) -> list[str]:
    c = model.config
    per_layer = ["attn_norm", "q", "k", "v", "attn", "attn_residual", *([] if c.recipe.parallel else ["ffn_norm"]), "x"]
    return ["embd", *(f"blk.{i}.{p}" for i in range(c.n_layer) for p in per_layer), "output_norm", "logits"]


@pytest.mark.parametrize("kernels", ["cpu", "gpu"])
@pytest.mark.parametrize("arch", ARCHS)
def test_every_checkpoint_of_the_gpu_engine_is_the_references(arch, kernels, tiny_q8):
    model = load_model(tiny_q8(arch))
    ids = [int(i) for i in np.random.default_rng(3).integers(3, model.config.n_vocab, 7)]
    ref: dict = {}
    logits = reference.forward(model, ids, cache=reference.KVCache(n_ctx=8), checkpoints=ref)  # phi3: the engine's context picks LongRoPE's factors
    engine = GpuEngine(model, max_tokens=8, all_logits=True, force_f32=True, kernels=kernels)
    got = engine.checkpoints(ids)
    engine.close()
    assert list(ref) == expected_names(model)
    assert list(got) == list(ref)
    np.testing.assert_array_equal(ref["logits"], logits)
    for name, value in ref.items():
        assert got[name].shape == value.shape == (len(ids), value.shape[1]), name
    report = compare({"reference": ref, "python": got}, tol=MODEL_LOGITS_REL)
    assert report["first_beyond_tol"]["reference~python"] is None, summary(report)


def test_a_broken_weight_is_named_at_the_first_checkpoint_after_it(tiny_q8):
    model = load_model(tiny_q8("llama"))
    ids = [int(i) for i in np.random.default_rng(4).integers(3, model.config.n_vocab, 6)]
    ref: dict = {}
    reference.forward(model, ids, checkpoints=ref)
    engine = GpuEngine(model, max_tokens=6, all_logits=True, force_f32=True)
    for chunk in engine.mat("blk.1.ffn_down.weight").chunks:  # the layer-1 MLP's output projection, zeroed
        for buf in chunk.buffers:
            engine.ctx.write(buf, np.zeros(buf.size // 4, np.uint32))
    got = engine.checkpoints(ids)
    engine.close()
    report = compare({"reference": ref, "python": got}, tol=MODEL_LOGITS_REL)
    assert report["first_beyond_tol"]["reference~python"] == "blk.1.x", summary(report)
    assert "first beyond 0.0001 at blk.1.x" in summary(report)[0]


def test_checkpoints_need_a_prefill_and_every_rows_logits(tiny_q8):
    model = load_model(tiny_q8("llama"))
    engine = GpuEngine(model, max_tokens=6, all_logits=False)
    with pytest.raises(ValueError, match="all_logits=True"):
        engine.checkpoints([3, 4, 5])
    engine.close()
    engine = GpuEngine(model, max_tokens=6, all_logits=True)
    with pytest.raises(ValueError, match="at least 2 ids"):
        engine.checkpoints([3])
    engine.close()


def test_wgllm_diff_reports_and_exits_by_the_tolerance(tiny_q8, tmp_path, capsys):
    path = tiny_q8("gemma3")
    out = tmp_path / "diff.json"
    assert main(["diff", "--model", path, "--ids", "[3, 5, 7, 9, 11]", "--kernels", "cpu", "--no-browser", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "reference vs python: within 0.001 at every checkpoint" in text and "blk.4.attn_residual" in text
    report = json.loads(out.read_text())
    assert [r["name"] for r in report["rows"]][:3] == ["embd", "blk.0.attn_norm", "blk.0.q"] and report["browser_absent"] is None
    # sums in another order than numpy's: not within 1e-12 of the reference, so exit 1 and say where
    assert main(["diff", "--model", path, "--ids", "[3, 5, 7, 9, 11]", "--no-browser", "--tol", "1e-12"]) == 1
    first = capsys.readouterr().out.splitlines()[-1]
    assert first.startswith("reference vs python: first beyond 1e-12 at blk.0.")
    assert main(["diff", "--model", path, "--ids", "[3]", "--no-browser"]) == 2
    assert "at least 2 token ids" in capsys.readouterr().err
