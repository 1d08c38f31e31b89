"""Fixtures for tests/browser/lora.spec.ts: tiny models, PEFT adapters and what the oracles say.

    python tests/browser/lora_fixtures.py OUT_DIR

For tiny random Gemma, Phi-2, Llama, Qwen2, Qwen3, Phi-3 and SmolLM3 models (F32 GGUF), a random non-zero PEFT
adapter A (rank 4, alpha 8) converted to llama.cpp's GGUF adapter format; Phi-2 also gets B (rank 2, alpha 3). The
oracle for logits is transformers + PEFT (the adapter attached, not merged, float32): every row of
one prompt with each adapter and with none. Each adapter is also merged into its base by PEFT
(merge_and_unload) and that checkpoint converted to F32 GGUF (merged-<name>.gguf): the browser
engine on it computes the same function with no LoRA code, and the same SwiftShader rounding of
exp/sin/cos that keeps it ~1e-4 from transformers. The oracle for text is wgllm.inference.LlmInference on
the WebGPU backend (lavapipe) with the same adapter and options. Also adapters the browser must
refuse, and the answer the demo page must give with adapter A. Work already done (same stamp:
this script, tests/py's model and adapter makers, the shaders, py/wgllm) is kept.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests" / "py"))  # tiny_models, test_lora, gpu_tolerances

ARCHS = ("gemma", "phi2", "llama", "qwen2", "qwen3", "phi3", "smollm3")  # phi3: one adapter on the fused attn_qkv
ADAPTERS = {"A": dict(r=4, alpha=8.0, seed=0), "B": dict(r=2, alpha=3.0, seed=1)}
TEXT_ARCH = "phi2"  # its random logits give a different greedy answer per adapter (tests/py/test_lora.py)
PROMPT = "the quick brown fox"
GREEDY = dict(max_tokens=20, top_k=1, temperature=0.0, random_seed=0)
SAMPLED = dict(max_tokens=20, top_k=40, temperature=0.8, random_seed=7)
DEMO = dict(max_tokens=24, top_k=1, temperature=0.0, random_seed=0)
DEMO_QUESTION = "A small model runs"
N_IDS = 8


def _stamp() -> str:
    h = hashlib.sha256(Path(__file__).read_bytes())
    files = [REPO / "tests/py/tiny_models.py", REPO / "tests/py/test_lora.py", REPO / "tests/py/gpu_tolerances.py"]
    for f in sorted([*(REPO / "shaders").glob("*.wgsl"), *(REPO / "py" / "wgllm").rglob("*.py")]) + files:
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:16]


def _synthetic_adapter(path: Path, arch: str, tensors: dict[str, tuple[int, ...]]) -> str:
    from test_lora import _synthetic_adapter as write

    write(path, arch, tensors)
    return path.name


def convert_tiny_folder(folder: Path, out: Path) -> None:
    from wgllm.convert import ConversionConfig, convert_checkpoint

    convert_checkpoint(ConversionConfig(str(folder), "safetensors", output_file=str(out), attention_quant_bits=32, feedforward_quant_bits=32, embedding_quant_bits=32))


def _opts(o: dict) -> dict:
    return {"maxTokens": o["max_tokens"], "topK": o["top_k"], "temperature": o["temperature"], "randomSeed": o["random_seed"]}


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    expected_path = out / "expected.json"
    if expected_path.is_file() and json.loads(expected_path.read_text()).get("stamp") == _stamp():
        return
    from gpu_tolerances import MODEL_LOGITS_REL
    from test_lora import make_adapter, peft_logits, token_ids, unload
    from tiny_models import convert_tiny, copy_tokenizer, tiny_model

    from wgllm.convert import ConversionConfig, convert_checkpoint
    from wgllm.inference import LlmInference
    from wgllm.model import load_model

    results: dict = {"stamp": _stamp(), "logits_rel": MODEL_LOGITS_REL, "models": {}}
    for arch in ARCHS:
        folder = out / arch
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()
        base = convert_tiny(arch, 32, folder / "base.gguf")
        ids = token_ids(load_model(base).config.n_vocab, N_IDS)
        entry = {"ids": ids, "vocab": load_model(base).config.n_vocab, "adapters": {}}
        for name, spec in ADAPTERS.items():
            if name == "B" and arch != TEXT_ARCH:
                continue
            peft_model, st = make_adapter(arch, folder / f"peft-{name}", r=spec["r"], alpha=spec["alpha"], seed=spec["seed"])
            want = peft_logits(peft_model, ids)
            merged_dir = folder / f"merged-{name}"
            copy.deepcopy(peft_model).merge_and_unload().save_pretrained(merged_dir)  # a copy: the base keeps its weights
            copy_tokenizer(tiny_model(arch).folder, merged_dir)
            convert_tiny_folder(merged_dir, folder / f"merged-{name}.gguf")
            unload(peft_model)  # tiny_model(arch).model is the plain base again
            gguf_path = folder / f"lora-{name}.gguf"
            convert_checkpoint(ConversionConfig(str(tiny_model(arch).folder), "safetensors", lora_ckpt=str(st), lora_rank=spec["r"], lora_output_file=str(gguf_path)))
            entry["adapters"][name] = {"file": gguf_path.name, "rank": spec["r"], "logits": want.ravel().tolist()}
        entry["plain_logits"] = peft_logits(tiny_model(arch).model, ids).ravel().tolist()  # transformers without an adapter
        results["models"][arch] = entry

    # Text: Python's LlmInference on WebGPU with the same adapter files and options, and the f32 KV
    # cache the browser (SwiftShader: no shader-f16) has.
    base = out / TEXT_ARCH / "base.gguf"
    text: dict = {"prompt": PROMPT, "greedy": {"options": _opts(GREEDY)}, "sampled": {"options": _opts(SAMPLED)}}
    for key, o in (("greedy", GREEDY), ("sampled", SAMPLED)):
        with LlmInference.create_from_options(str(base), lora_ranks=[4, 2], backend="gpu", force_f32=True, **o) as llm:
            loras = {name: llm.load_lora_model(str(out / TEXT_ARCH / f"lora-{name}.gguf")) for name in ("A", "B")}
            text[key]["A"] = llm.generate_response(PROMPT, loras["A"])
            text[key]["B"] = llm.generate_responses(PROMPT, loras["B"])[0]
            text[key]["none"] = llm.generate_response(PROMPT)
    results["text"] = text

    # The demo page: serve-models with this base, adapter A copied in while the page is open.
    with LlmInference.create_from_options(str(base), lora_ranks=[4], backend="gpu", force_f32=True, **DEMO) as llm:
        demo_answer = llm.generate_response(DEMO_QUESTION, llm.load_lora_model(str(out / TEXT_ARCH / "lora-A.gguf")))
    results["demo"] = {"question": DEMO_QUESTION, "options": _opts(DEMO), "answer": demo_answer}

    # Adapters the browser must refuse (written directly with gguf's GGUFWriter).
    refuse = out / "refuse"
    refuse.mkdir(exist_ok=True)
    results["refuse"] = {
        "narrow": _synthetic_adapter(refuse / "narrow.gguf", "llama", {"blk.0.attn_q.weight.lora_a": (4, 32), "blk.0.attn_q.weight.lora_b": (64, 4)}),
        "unpaired": _synthetic_adapter(refuse / "unpaired.gguf", "llama", {"blk.0.attn_q.weight.lora_a": (4, 64)}),
    }
    assert len({text["greedy"][k] for k in ("A", "B", "none")}) == 3, "the adapters must show in the greedy text"
    tmp = expected_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results))
    tmp.rename(expected_path)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
